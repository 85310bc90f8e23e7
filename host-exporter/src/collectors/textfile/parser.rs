//! The Prometheus text format 0.0.4, read as node_exporter's textfile collector reads it (with
//! expfmt's `TextParser`): a file it refuses must be refused here, and one it takes must give
//! the same families. So this follows that parser's rules rather than the format's prose:
//! samples of a family may be apart, `TYPE` must come before the family's first sample, one
//! `HELP` and one `TYPE` per family, a histogram's or summary's lines are grouped by their labels
//! without `le`/`quantile`, a missing `+Inf` bucket is no error, blanks after a value are (an
//! empty timestamp), the last line needs its newline, label values must be UTF-8.
//!
//! Why not a crate: `prometheus-parse` skips lines it cannot match (a garbage file reads as
//! fine), splits labels on `,` and `=` (escaped values break) and keys histograms by name only;
//! `openmetrics-parser` implements OpenMetrics' grammar (a pest build) rather than this
//! parser's acceptance. Agreement with node_exporter is checked against Debian's binary in
//! `tests/node_exporter_compat.rs`.

use std::collections::HashMap;

/// A family's type as a `# TYPE` line names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Untyped,
    Summary,
    Histogram,
    /// Accepted in `# TYPE`, but a sample of it is an error (expfmt has no reader for it).
    GaugeHistogram,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Simple(f64),
    /// Quantiles in file order (a repeated quantile appears twice), sum and count.
    Summary {
        quantiles: Vec<(f64, f64)>,
        sum: f64,
        count: u64,
    },
    /// Buckets (upper bound, cumulative count) in file order, sum and count.
    Histogram {
        buckets: Vec<(f64, u64)>,
        sum: f64,
        count: u64,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Metric {
    /// In file order; without `le` (histograms) and `quantile` (summaries).
    pub labels: Vec<(String, String)>,
    pub value: Value,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Family {
    pub name: String,
    pub help: Option<String>,
    pub kind: Kind,
    pub metrics: Vec<Metric>,
}

/// What a file holds: its families with samples, in the order they were first named, and
/// whether any sample carried a timestamp.
#[derive(Debug, Default)]
pub struct Parsed {
    pub families: Vec<Family>,
    pub has_timestamps: bool,
}

#[derive(Debug, PartialEq)]
pub struct ParseError {
    pub line: usize,
    pub msg: String,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "text format parsing error in line {}: {}",
            self.line, self.msg
        )
    }
}

impl std::error::Error for ParseError {}

pub fn parse(input: &[u8]) -> Result<Parsed, ParseError> {
    let mut parser = Parser::default();
    let mut lines = input.split(|&b| b == b'\n').enumerate().peekable();
    while let Some((index, line)) = lines.next() {
        let fail = |msg: String| ParseError {
            line: index + 1,
            msg,
        };
        if lines.peek().is_none() {
            // What follows the last newline: only blanks may end the input.
            if line.iter().all(|&b| is_blank(b)) {
                break;
            }
            return Err(fail("unexpected end of input stream".into()));
        }
        parser.line(line).map_err(fail)?;
    }
    let mut families: Vec<Family> = Vec::with_capacity(parser.families.len());
    for family in parser.families {
        if family.metrics.is_empty() {
            continue;
        }
        families.push(Family {
            name: family.name,
            help: family.help,
            kind: family.kind.unwrap_or(Kind::Untyped),
            metrics: family.metrics,
        });
    }
    Ok(Parsed {
        families,
        has_timestamps: parser.has_timestamps,
    })
}

struct PendingFamily {
    name: String,
    help: Option<String>,
    kind: Option<Kind>,
    metrics: Vec<Metric>,
}

/// Which part of a summary or histogram a sample name stands for.
#[derive(Clone, Copy, PartialEq)]
enum Part {
    Plain,
    Count,
    Sum,
}

#[derive(Default)]
struct Parser {
    families: Vec<PendingFamily>,
    by_name: HashMap<String, usize>,
    /// Summary and histogram metrics by family and labels (without `le`/`quantile`).
    groups: HashMap<(usize, Vec<(String, String)>), usize>,
    has_timestamps: bool,
}

type LineResult = Result<(), String>;

impl Parser {
    fn line(&mut self, line: &[u8]) -> LineResult {
        let mut c = Cursor { line, pos: 0 };
        c.skip_blanks();
        match c.peek() {
            None => Ok(()),
            Some(b'#') => {
                c.pos += 1;
                self.comment(&mut c)
            }
            _ => self.sample(&mut c),
        }
    }

    /// `# HELP name text`, `# TYPE name type`; any other comment is ignored, and so is a
    /// HELP or TYPE line that ends early.
    fn comment(&mut self, c: &mut Cursor) -> LineResult {
        c.skip_blanks();
        let keyword = c.until_blank();
        if c.at_end() || (keyword != b"HELP" && keyword != b"TYPE") {
            return Ok(());
        }
        c.skip_blanks();
        let name = c.metric_name();
        if c.at_end() {
            return Ok(());
        }
        if !c.peek().is_some_and(is_blank) {
            return Err("invalid metric name in comment".into());
        }
        let (index, _) = self.family_for(name);
        c.skip_blanks();
        if c.at_end() {
            return Ok(());
        }
        let family = &mut self.families[index];
        if keyword == b"HELP" {
            if family.help.is_some() {
                return Err(format!(
                    "second HELP line for metric name {:?}",
                    family.name
                ));
            }
            family.help = Some(unescape_help(c.rest())?);
        } else {
            if family.kind.is_some() {
                return Err(format!(
                    "second TYPE line for metric name {:?}, or TYPE reported after samples",
                    family.name
                ));
            }
            let word = c.rest();
            family.kind = Some(match word.to_ascii_uppercase().as_slice() {
                b"COUNTER" => Kind::Counter,
                b"GAUGE" => Kind::Gauge,
                b"UNTYPED" => Kind::Untyped,
                b"SUMMARY" => Kind::Summary,
                b"HISTOGRAM" => Kind::Histogram,
                b"GAUGE_HISTOGRAM" => Kind::GaugeHistogram,
                _ => {
                    return Err(format!(
                        "unknown metric type {:?}",
                        String::from_utf8_lossy(word)
                    ))
                }
            });
        }
        Ok(())
    }

    fn sample(&mut self, c: &mut Cursor) -> LineResult {
        let name = c.metric_name();
        if name.is_empty() {
            return Err("invalid metric name".into());
        }
        let (index, part) = self.family_for(name);
        let kind = *self.families[index].kind.get_or_insert(Kind::Untyped);
        let family_name = self.families[index].name.clone();
        c.skip_blanks();

        let mut labels: Vec<(String, String)> = Vec::new();
        let mut group: Vec<(String, String)> = Vec::new();
        let mut quantile = f64::NAN;
        let mut bucket = f64::NAN;
        if c.peek() == Some(b'{') {
            c.pos += 1;
            loop {
                c.skip_blanks();
                if c.peek() == Some(b'}') {
                    c.pos += 1;
                    break;
                }
                let label = c.label_name();
                if label.is_empty() {
                    return Err(format!("invalid label name for metric {family_name:?}"));
                }
                c.skip_blanks();
                if c.peek() != Some(b'=') {
                    return Err(format!(
                        "expected '=' after label name, found {:?}",
                        c.peek().map(char::from)
                    ));
                }
                c.pos += 1;
                if label == "__name__" {
                    return Err("label name \"__name__\" is reserved".into());
                }
                let special = (kind == Kind::Summary && label == "quantile")
                    || (kind == Kind::Histogram && label == "le");
                if !special && labels.iter().any(|(k, _)| *k == label) {
                    return Err(format!("duplicate label names for metric {family_name:?}"));
                }
                c.skip_blanks();
                if c.peek() != Some(b'"') {
                    return Err("expected '\"' at start of label value".into());
                }
                c.pos += 1;
                let value = String::from_utf8(c.label_value()?)
                    .map_err(|e| format!("invalid label value {:?}", e.as_bytes()))?;
                if special {
                    let parsed = parse_float(&value)
                        .ok_or_else(|| format!("expected float as value for {label:?} label"))?;
                    if kind == Kind::Summary {
                        quantile = parsed;
                    } else {
                        bucket = parsed;
                    }
                } else {
                    if matches!(kind, Kind::Summary | Kind::Histogram) {
                        group.push((label.to_string(), value.clone()));
                    }
                    labels.push((label.to_string(), value));
                }
                c.skip_blanks();
                match c.peek() {
                    Some(b',') => c.pos += 1,
                    Some(b'}') => {
                        c.pos += 1;
                        break;
                    }
                    _ => return Err("unexpected end of label value".into()),
                }
            }
            c.skip_blanks();
        }

        let token = c.until_blank();
        let value = std::str::from_utf8(token)
            .ok()
            .and_then(parse_float)
            .ok_or_else(|| {
                format!(
                    "expected float as value, got {:?}",
                    String::from_utf8_lossy(token)
                )
            })?;
        if !c.at_end() {
            c.skip_blanks();
            let stamp = c.until_blank();
            std::str::from_utf8(stamp)
                .ok()
                .and_then(|s| s.parse::<i64>().ok())
                .ok_or("expected integer as timestamp")?;
            if !c.rest().is_empty() {
                return Err("spurious string after timestamp".into());
            }
            self.has_timestamps = true;
        }

        let family = &mut self.families[index];
        match kind {
            Kind::Counter | Kind::Gauge | Kind::Untyped => family.metrics.push(Metric {
                labels,
                value: Value::Simple(value),
            }),
            Kind::GaugeHistogram => {
                return Err(format!("unexpected type for metric name {family_name:?}"))
            }
            Kind::Summary | Kind::Histogram => {
                // A histogram's or summary's lines with the same labels are one metric; it
                // keeps the labels of its first line.
                group.sort();
                let at = *self.groups.entry((index, group)).or_insert_with(|| {
                    family.metrics.push(Metric {
                        labels,
                        value: if kind == Kind::Summary {
                            Value::Summary {
                                quantiles: Vec::new(),
                                sum: 0.0,
                                count: 0,
                            }
                        } else {
                            Value::Histogram {
                                buckets: Vec::new(),
                                sum: 0.0,
                                count: 0,
                            }
                        },
                    });
                    family.metrics.len() - 1
                });
                // Counts are unsigned in client_golang's model: fractions are cut off.
                match (&mut family.metrics[at].value, part) {
                    (
                        Value::Summary { count, .. } | Value::Histogram { count, .. },
                        Part::Count,
                    ) => *count = value as u64,
                    (Value::Summary { sum, .. } | Value::Histogram { sum, .. }, Part::Sum) => {
                        *sum = value
                    }
                    (Value::Summary { quantiles, .. }, Part::Plain) if !quantile.is_nan() => {
                        quantiles.push((quantile, value))
                    }
                    (Value::Histogram { buckets, .. }, Part::Plain) if !bucket.is_nan() => {
                        buckets.push((bucket, value as u64))
                    }
                    // A line of the family with neither le/quantile nor a suffix adds nothing.
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// The family a name belongs to: itself if known, else the summary or histogram whose
    /// `_count`, `_sum` (or `_bucket`) it is, else a new family.
    fn family_for(&mut self, name: &str) -> (usize, Part) {
        if let Some(&index) = self.by_name.get(name) {
            return (index, Part::Plain);
        }
        let part = if is_suffixed(name, "_count") {
            Part::Count
        } else if is_suffixed(name, "_sum") {
            Part::Sum
        } else {
            Part::Plain
        };
        let kind_of = |base: &str| self.by_name.get(base).map(|&i| (i, self.families[i].kind));
        if part != Part::Plain {
            let base = &name[..name.len() - if part == Part::Count { 6 } else { 4 }];
            if let Some((index, Some(Kind::Summary | Kind::Histogram))) = kind_of(base) {
                return (index, part);
            }
        } else if is_suffixed(name, "_bucket") {
            if let Some((index, Some(Kind::Histogram))) = kind_of(&name[..name.len() - 7]) {
                return (index, Part::Plain);
            }
        }
        self.families.push(PendingFamily {
            name: name.to_string(),
            help: None,
            kind: None,
            metrics: Vec::new(),
        });
        self.by_name
            .insert(name.to_string(), self.families.len() - 1);
        (self.families.len() - 1, Part::Plain)
    }
}

/// `name` ends in `suffix` with something before it.
fn is_suffixed(name: &str, suffix: &str) -> bool {
    name.len() > suffix.len() && name.ends_with(suffix)
}

fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// One line (without its newline) and a position in it.
struct Cursor<'a> {
    line: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.line.get(self.pos).copied()
    }

    fn at_end(&self) -> bool {
        self.pos >= self.line.len()
    }

    fn rest(&self) -> &'a [u8] {
        &self.line[self.pos.min(self.line.len())..]
    }

    fn skip_blanks(&mut self) {
        while self.peek().is_some_and(is_blank) {
            self.pos += 1;
        }
    }

    fn until_blank(&mut self) -> &'a [u8] {
        let start = self.pos;
        while self.peek().is_some_and(|b| !is_blank(b)) {
            self.pos += 1;
        }
        &self.line[start..self.pos]
    }

    /// Bytes while `first` accepts the first and `rest` the others, as text (all ASCII).
    fn token(&mut self, first: fn(u8) -> bool, rest: fn(u8) -> bool) -> &'a str {
        let start = self.pos;
        if self.peek().is_some_and(first) {
            self.pos += 1;
            while self.peek().is_some_and(rest) {
                self.pos += 1;
            }
        }
        std::str::from_utf8(&self.line[start..self.pos]).unwrap_or_default()
    }

    fn metric_name(&mut self) -> &'a str {
        self.token(
            |b| b.is_ascii_alphabetic() || b == b'_' || b == b':',
            |b| b.is_ascii_alphanumeric() || b == b'_' || b == b':',
        )
    }

    fn label_name(&mut self) -> &'a str {
        self.token(
            |b| b.is_ascii_alphabetic() || b == b'_',
            |b| b.is_ascii_alphanumeric() || b == b'_',
        )
    }

    /// A label value after its opening quote, through the closing one: `\"`, `\\` and `\n`
    /// are the only escapes, and the value must close on its line.
    fn label_value(&mut self) -> Result<Vec<u8>, String> {
        let mut value = Vec::new();
        loop {
            let Some(b) = self.peek() else {
                return Err("label value contains unescaped new-line".into());
            };
            self.pos += 1;
            match b {
                b'"' => return Ok(value),
                b'\\' => {
                    let escaped = self.peek();
                    self.pos += 1;
                    match escaped {
                        Some(b'"') => value.push(b'"'),
                        Some(b'\\') => value.push(b'\\'),
                        Some(b'n') => value.push(b'\n'),
                        other => return Err(invalid_escape(other)),
                    }
                }
                b => value.push(b),
            }
        }
    }
}

fn invalid_escape(b: Option<u8>) -> String {
    format!(
        "invalid escape sequence '\\{}'",
        b.map(char::from).unwrap_or('\n')
    )
}

/// A HELP text: `\\`, `\n` and `\"` are escapes (current expfmt; Debian's 1.5.0 refuses `\"`),
/// any other is an error. Bytes that are not UTF-8 become U+FFFD.
fn unescape_help(raw: &[u8]) -> Result<String, String> {
    let mut text = Vec::with_capacity(raw.len());
    let mut bytes = raw.iter().copied();
    while let Some(b) = bytes.next() {
        if b != b'\\' {
            text.push(b);
            continue;
        }
        match bytes.next() {
            Some(b'\\') => text.push(b'\\'),
            Some(b'n') => text.push(b'\n'),
            Some(b'"') => text.push(b'"'),
            other => return Err(invalid_escape(other)),
        }
    }
    Ok(String::from_utf8_lossy(&text).into_owned())
}

/// A number as Go's `strconv.ParseFloat` reads it, less hex floats and underscores (which
/// expfmt refuses): decimal with optional sign and exponent, `Inf`/`Infinity` with an optional
/// sign and `NaN` without one, any case. Out of range is an error, not infinity.
pub fn parse_float(s: &str) -> Option<f64> {
    let unsigned = s.strip_prefix(['+', '-']).unwrap_or(s);
    let negative = s.starts_with('-');
    if unsigned.eq_ignore_ascii_case("inf") || unsigned.eq_ignore_ascii_case("infinity") {
        return Some(if negative {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        });
    }
    if unsigned.eq_ignore_ascii_case("nan") {
        return (unsigned.len() == s.len()).then_some(f64::NAN);
    }
    // Rust would also take "inf"/"nan" spellings (handled above); only decimal syntax is left.
    if !unsigned
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'))
    {
        return None;
    }
    let value: f64 = s.parse().ok()?;
    value.is_finite().then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> Vec<Family> {
        match parse(text.as_bytes()) {
            Ok(parsed) => parsed.families,
            Err(e) => panic!("{e} for {text:?}"),
        }
    }

    fn err(text: &str) -> String {
        match parse(text.as_bytes()) {
            Ok(parsed) => panic!("accepted {text:?}: {:?}", parsed.families),
            Err(e) => e.to_string(),
        }
    }

    fn simple(labels: &[(&str, &str)], value: f64) -> Metric {
        Metric {
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            value: Value::Simple(value),
        }
    }

    #[test]
    fn help_type_labels_escapes_and_families_apart() {
        let families = ok(concat!(
            "# A comment\n",
            "  # HELP smart_temp Temperature \\\\ of \\\"the\\\" disk.\\nSecond line\n",
            "# TYPE smart_temp GAUGE\n",
            "smart_temp{disk=\"sda\",path=\"C:\\\\x \\\"q\\\"\\n\"} 41\n",
            "\n",
            "other_total{a=\"1\",} +Inf\n",
            "smart_temp{ disk = \"sdb\" }\t-3.5e2\n",
            "bare{}7\n",
            "   \t\n",
        ));
        assert_eq!(families.len(), 3);
        assert_eq!(families[0].name, "smart_temp");
        assert_eq!(
            families[0].help.as_deref(),
            Some("Temperature \\ of \"the\" disk.\nSecond line")
        );
        assert_eq!(families[0].kind, Kind::Gauge);
        assert_eq!(
            families[0].metrics,
            [
                simple(&[("disk", "sda"), ("path", "C:\\x \"q\"\n")], 41.0),
                simple(&[("disk", "sdb")], -350.0)
            ]
        );
        assert_eq!(families[1].kind, Kind::Untyped);
        assert_eq!(families[1].help, None);
        assert_eq!(families[1].metrics, [simple(&[("a", "1")], f64::INFINITY)]);
        assert_eq!(families[2].metrics, [simple(&[], 7.0)]);
    }

    #[test]
    fn histograms_and_summaries_group_their_lines_by_labels() {
        let families = ok(concat!(
            "# TYPE lat histogram\n",
            "lat_bucket{op=\"r\",le=\"0.5\"} 3\n",
            "lat_bucket{le=\"+Inf\",op=\"r\"} 5\n",
            "lat_bucket{op=\"w\",le=\"1\"} 1\n",
            "lat_sum{op=\"r\"} 2.5\n",
            "lat_count{op=\"r\"} 5\n",
            "# TYPE rpc summary\n",
            "rpc{quantile=\"0.9\"} 0.2\n",
            "rpc_sum 9\n",
            "rpc_count 12.7\n",
            "# TYPE plain gauge\n",
            "plain_count 1\n",
        ));
        assert_eq!(families[0].kind, Kind::Histogram);
        assert_eq!(families[0].metrics.len(), 2);
        assert_eq!(
            families[0].metrics[0],
            Metric {
                labels: vec![("op".into(), "r".into())],
                value: Value::Histogram {
                    buckets: vec![(0.5, 3), (f64::INFINITY, 5)],
                    sum: 2.5,
                    count: 5
                }
            }
        );
        assert_eq!(
            families[1].metrics[0].value,
            Value::Summary {
                quantiles: vec![(0.9, 0.2)],
                sum: 9.0,
                count: 12
            }
        );
        // plain is a gauge, so plain_count is a family of its own.
        assert_eq!(families[2].name, "plain_count");
        assert_eq!(families[2].kind, Kind::Untyped);
        assert!(ok("# HELP only Nothing else.\n# TYPE only counter\n").is_empty());
    }

    #[test]
    fn timestamps_are_read_and_reported() {
        let parsed = parse(b"a 1 1700000000000\nb 2\n").unwrap();
        assert!(parsed.has_timestamps);
        assert!(!parse(b"a 1\n").unwrap().has_timestamps);
    }

    #[test]
    fn malformed_input_is_refused() {
        for (text, expected) in [
            ("garbage here\n", "expected float as value"),
            ("a 1", "unexpected end of input stream"),
            (
                "# comment without newline",
                "unexpected end of input stream",
            ),
            ("a 1 \n", "expected integer as timestamp"),
            ("a 1 12 x\n", "spurious string after timestamp"),
            ("a 1\r\n", "expected float as value"),
            ("a NaN-\n", "expected float as value"),
            ("a 1e999\n", "expected float as value"),
            ("a 0x10\n", "expected float as value"),
            ("a 1_000\n", "expected float as value"),
            ("a +NaN\n", "expected float as value"),
            ("-a 1\n", "invalid metric name"),
            ("{a=\"b\"} 1\n", "invalid metric name"),
            ("a{b=\"\\t\"} 1\n", "invalid escape sequence"),
            ("a{b=\"x} 1\n", "unescaped new-line"),
            ("a{b=\"1\",b=\"2\"} 1\n", "duplicate label names"),
            ("a{__name__=\"x\"} 1\n", "reserved"),
            ("a{b} 1\n", "expected '='"),
            ("a{1b=\"x\"} 1\n", "invalid label name"),
            ("a{b=x} 1\n", "expected '\"'"),
            ("a{b=\"x\" c=\"y\"} 1\n", "unexpected end of label value"),
            ("# HELP a one\n# HELP a two\n", "second HELP line"),
            ("# HELP a x\\\n", "invalid escape sequence"),
            ("# HELP a \\t\n", "invalid escape sequence"),
            ("a 1\n# TYPE a gauge\n", "TYPE reported after samples"),
            ("# TYPE a gauge \n", "unknown metric type"),
            ("# TYPE a bogus\n", "unknown metric type"),
            ("# HELP a-b x\n", "invalid metric name in comment"),
            ("# TYPE h histogram\nh_bucket{le=\"x\"} 1\n", "'le'"),
            ("# TYPE s summary\ns{quantile=\"\"} 1\n", "'quantile'"),
            ("# TYPE g gauge_histogram\ng 1\n", "unexpected type"),
        ] {
            let message = err(text);
            assert!(
                message.contains(&expected.replace('\'', "\"")) || message.contains(expected),
                "{text:?}: {message}"
            );
        }
        let not_utf8 = parse(b"a{b=\"\xff\"} 1\n").unwrap_err();
        assert!(not_utf8.msg.contains("invalid label value"), "{not_utf8}");
        // Elsewhere bytes that are not UTF-8 do no harm: a comment, a HELP text.
        let help = parse(b"# x \xff\n# HELP a b\xffc\na 1\n").unwrap();
        assert_eq!(help.families[0].help.as_deref(), Some("b\u{fffd}c"));
        assert_eq!(
            parse(b"a 1\nb 2\nc\n").unwrap_err().line,
            3,
            "the line is counted"
        );
    }

    #[test]
    fn comments_that_end_early_and_odd_spacing_are_accepted() {
        for text in [
            "#\n",
            "#HELP\n",
            "# HELP\n",
            "# HELP a\n",
            "# HELP a   \n",
            "# TYPE a\n",
            "# NOTE anything \\q here\n",
            "# TYPE gh gauge_histogram\n",
            "\t\n",
            "",
        ] {
            assert!(ok(text).is_empty(), "{text:?}");
        }
        assert_eq!(ok("#HELP a x\na 1\n")[0].help.as_deref(), Some("x"));
    }

    #[test]
    fn numbers_follow_go() {
        for (text, value) in [
            ("1", 1.0),
            ("-2.5", -2.5),
            ("+3", 3.0),
            (".5", 0.5),
            ("5.", 5.0),
            ("1E3", 1000.0),
            ("inf", f64::INFINITY),
            ("-Infinity", f64::NEG_INFINITY),
        ] {
            assert_eq!(parse_float(text), Some(value), "{text}");
        }
        assert!(parse_float("nan").unwrap().is_nan());
        assert!(parse_float("NaN").unwrap().is_nan());
        for bad in [
            "", "-", "1e", "0x1p3", "1_0", "+nan", "1e400", "one", "1.2.3",
        ] {
            assert_eq!(parse_float(bad), None, "{bad}");
        }
    }
}
