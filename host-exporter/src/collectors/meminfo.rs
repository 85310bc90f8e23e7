//! One `node_memory_<Field>[_bytes]` gauge per line of /proc/meminfo, named as node_exporter
//! names them: `Active(anon)` becomes `Active_anon`, kB values become bytes.

use crate::paths::{read, Paths};
use common::{log, BlockingCollector, CollectResult, MetricFamily};

pub struct Meminfo {
    paths: Paths,
}

impl Meminfo {
    pub fn new(paths: &Paths) -> Self {
        Meminfo {
            paths: paths.clone(),
        }
    }
}

impl BlockingCollector for Meminfo {
    fn name(&self) -> &'static str {
        "meminfo"
    }

    fn collect(&self) -> CollectResult {
        let path = self.paths.proc("meminfo");
        let text = read(&path)?;
        let mut families = Vec::with_capacity(64);
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            match parse_line(line) {
                Some((name, value)) => families.push(
                    MetricFamily::gauge(
                        format!("node_memory_{name}"),
                        format!("Memory information field {name}."),
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

fn parse_line(line: &str) -> Option<(String, f64)> {
    let (key, rest) = line.split_once(':')?;
    let mut parts = rest.split_whitespace();
    let value: f64 = parts.next()?.parse().ok()?;
    let key = key.trim().replace('(', "_").replace(')', "");
    if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return None;
    }
    match parts.next() {
        Some("kB") => Some((format!("{key}_bytes"), value * 1024.0)),
        None => Some((key, value)),
        Some(_) => None,
    }
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
