//! One `node_memory_<Field>[_bytes]` gauge per line of /proc/meminfo, named as node_exporter
//! names them: `Active(anon)` becomes `Active_anon`, kB values become bytes.

use crate::kept_file::KeptFile;
use crate::paths::Paths;
use common::{log, BlockingCollector, CollectResult, MetricFamily};

pub struct Meminfo {
    file: KeptFile,
}

impl Meminfo {
    pub fn new(paths: &Paths) -> Self {
        Meminfo {
            file: KeptFile::new(paths.proc("meminfo")),
        }
    }
}

impl BlockingCollector for Meminfo {
    fn collect(&self) -> CollectResult {
        let path = self.file.path();
        let text = self.file.read()?;
        let mut families = Vec::with_capacity(64);
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            match parse_line(line) {
                Some((name, value)) => families.push(
                    // concat, not format!: a third of this collector's time went to format!.
                    MetricFamily::gauge(
                        ["node_memory_", &name].concat(),
                        ["Memory information field ", &name, "."].concat(),
                    )
                    .with_value(value),
                ),
                None => log::warn(
                    "skipping unparsable meminfo line",
                    &[("path", &path.display().to_string()), ("line", line)],
                ),
            }
        }
        if families.is_empty() {
            anyhow::bail!("{}: no fields", path.display());
        }
        Ok(families)
    }
}

/// The field name as node_exporter spells it (`Active(anon)` -> `Active_anon`, `_bytes` for kB
/// values) and the value in base units. Built in one string: this runs for every line on every
/// scrape.
fn parse_line(line: &str) -> Option<(String, f64)> {
    let (key, rest) = line.split_once(':')?;
    let mut parts = rest.split_ascii_whitespace();
    let value: f64 = parts.next()?.parse().ok()?;
    let (scale, suffix) = match parts.next() {
        Some("kB") => (1024.0, "_bytes"),
        None => (1.0, ""),
        Some(_) => return None,
    };
    let key = key.trim();
    let mut name = String::with_capacity(key.len() + suffix.len());
    for c in key.chars() {
        match c {
            '(' => name.push('_'),
            ')' => {}
            c if c.is_ascii_alphanumeric() || c == '_' => name.push(c),
            _ => return None,
        }
    }
    if name.is_empty() {
        return None;
    }
    name.push_str(suffix);
    Some((name, value * scale))
}

#[cfg(test)]
mod tests {
    use super::parse_line;

    #[test]
    fn names_and_units() {
        assert_eq!(
            parse_line("MemTotal:       24683656 kB"),
            Some(("MemTotal_bytes".into(), 24683656.0 * 1024.0))
        );
        assert_eq!(
            parse_line("Active(anon):     1 kB"),
            Some(("Active_anon_bytes".into(), 1024.0))
        );
        assert_eq!(
            parse_line("HugePages_Total:       0"),
            Some(("HugePages_Total".into(), 0.0))
        );
        assert_eq!(parse_line("garbage"), None);
        assert_eq!(parse_line("MemFree: lots kB"), None);
        assert_eq!(parse_line("Bad Name: 1 kB"), None);
    }
}
