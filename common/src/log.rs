//! One line per event on stderr, as logfmt or JSON, filtered by level. Small on purpose: the
//! exporters log rarely (start-up, failures), and a line must never carry secrets or prompts.

use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Debug = 0,
    Info = 1,
    Warn = 2,
    Error = 3,
}

impl Level {
    pub fn parse(s: &str) -> Option<Level> {
        match s {
            "debug" => Some(Level::Debug),
            "info" => Some(Level::Info),
            "warn" => Some(Level::Warn),
            "error" => Some(Level::Error),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Logfmt,
    Json,
}

static LEVEL: AtomicU8 = AtomicU8::new(Level::Info as u8);
static JSON: AtomicU8 = AtomicU8::new(0);

pub fn init(level: Level, format: LogFormat) {
    LEVEL.store(level as u8, Ordering::Relaxed);
    JSON.store((format == LogFormat::Json) as u8, Ordering::Relaxed);
}

pub fn debug(msg: &str, fields: &[(&str, &str)]) {
    emit(Level::Debug, msg, fields);
}
pub fn info(msg: &str, fields: &[(&str, &str)]) {
    emit(Level::Info, msg, fields);
}
pub fn warn(msg: &str, fields: &[(&str, &str)]) {
    emit(Level::Warn, msg, fields);
}
pub fn error(msg: &str, fields: &[(&str, &str)]) {
    emit(Level::Error, msg, fields);
}

pub fn enabled(level: Level) -> bool {
    level as u8 >= LEVEL.load(Ordering::Relaxed)
}

fn emit(level: Level, msg: &str, fields: &[(&str, &str)]) {
    if !enabled(level) {
        return;
    }
    let json = JSON.load(Ordering::Relaxed) == 1;
    let line = format_line(json, &timestamp(SystemTime::now()), level, msg, fields);
    // A closed stderr must not take the exporter down.
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

fn format_line(json: bool, ts: &str, level: Level, msg: &str, fields: &[(&str, &str)]) -> String {
    let mut line = String::with_capacity(128);
    let all = [("ts", ts), ("level", level.as_str()), ("msg", msg)];
    if json {
        line.push('{');
        for (i, (k, v)) in all.iter().chain(fields.iter()).enumerate() {
            if i > 0 {
                line.push(',');
            }
            json_string(&mut line, k);
            line.push(':');
            json_string(&mut line, v);
        }
        line.push('}');
    } else {
        for (i, (k, v)) in all.iter().chain(fields.iter()).enumerate() {
            if i > 0 {
                line.push(' ');
            }
            line.push_str(k);
            line.push('=');
            logfmt_value(&mut line, v);
        }
    }
    line.push('\n');
    line
}

fn json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn logfmt_value(out: &mut String, s: &str) {
    let needs_quotes = s.is_empty()
        || s.chars()
            .any(|c| c == ' ' || c == '=' || c == '"' || c.is_control());
    if needs_quotes {
        json_string(out, s);
    } else {
        out.push_str(s);
    }
}

/// RFC 3339 UTC with milliseconds, computed without a date crate.
pub fn timestamp(now: SystemTime) -> String {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        since.subsec_millis()
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + if month <= 2 { 1 } else { 0 };
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_are_rfc3339() {
        let t = UNIX_EPOCH + Duration::from_millis(1_795_424_390_035);
        assert_eq!(timestamp(t), "2026-11-23T08:59:50.035Z");
        assert_eq!(timestamp(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(&timestamp(leap)[..10], "2000-02-29");
    }

    #[test]
    fn logfmt_quotes_only_when_needed() {
        let line = format_line(
            false,
            "T",
            Level::Warn,
            "collector failed",
            &[("collector", "cpu"), ("err", "a \"b\"\nc"), ("path", "")],
        );
        assert_eq!(
            line,
            "ts=T level=warn msg=\"collector failed\" collector=cpu err=\"a \\\"b\\\"\\nc\" path=\"\"\n"
        );
    }

    #[test]
    fn json_lines_are_valid_objects() {
        let line = format_line(true, "T", Level::Info, "hi\t", &[("k", "\u{1}")]);
        assert_eq!(
            line,
            "{\"ts\":\"T\",\"level\":\"info\",\"msg\":\"hi\\t\",\"k\":\"\\u0001\"}\n"
        );
    }
}
