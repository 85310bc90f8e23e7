//! Socket counts and memory per protocol from /proc/net/sockstat and /proc/net/sockstat6
//! (`node_sockstat_TCP_inuse`, `node_sockstat_TCP_mem_bytes`, ...), in node_exporter's names.
//! A host without IPv6 has no sockstat6; what is absent is left out.

use crate::kept_file::KeptFile;
use crate::paths::Paths;
use common::{log, BlockingCollector, CollectResult, MetricFamily};

pub struct Sockstat {
    files: [KeptFile; 2],
    page_size: f64,
}

impl Sockstat {
    pub fn new(paths: &Paths) -> Self {
        // SAFETY: sysconf only reads a system constant.
        let page_size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        Sockstat {
            files: [
                KeptFile::new(paths.proc("net/sockstat")),
                KeptFile::new(paths.proc("net/sockstat6")),
            ],
            page_size: if page_size > 0 {
                page_size as f64
            } else {
                4096.0
            },
        }
    }
}

/// The fields node_exporter reports of each protocol line; others are left out as there.
const FIELDS: [&str; 6] = ["inuse", "orphan", "tw", "alloc", "mem", "memory"];

impl BlockingCollector for Sockstat {
    fn collect(&self) -> CollectResult {
        let mut families = Vec::new();
        for file in &self.files {
            let Some(text) = file.read_if_present()? else {
                continue;
            };
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                if !self.parse_line(line, &mut families) {
                    log::warn(
                        "skipping unparsable sockstat line",
                        &[("path", &file.path().display().to_string()), ("line", line)],
                    );
                }
            }
        }
        Ok(families)
    }
}

impl Sockstat {
    /// `TCP: inuse 9 orphan 0 tw 594 alloc 9 mem 53` → `node_sockstat_TCP_inuse` ...; `mem`
    /// (pages) also as `_mem_bytes`. `sockets: used 51` → `node_sockstat_sockets_used`.
    /// False for a line that is not `name: (key value)*`.
    fn parse_line(&self, line: &str, families: &mut Vec<MetricFamily>) -> bool {
        let Some((protocol, rest)) = line.split_once(':') else {
            return false;
        };
        let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
        if fields.is_empty() || fields.len() % 2 != 0 || protocol.contains(char::is_whitespace) {
            return false;
        }
        let mut parsed = Vec::with_capacity(fields.len() / 2);
        for pair in fields.chunks(2) {
            match pair[1].parse::<u64>() {
                Ok(v) => parsed.push((pair[0], v as f64)),
                Err(_) => return false,
            }
        }
        let gauge = |name: String, value: f64| {
            let help = format!("Number of {name} sockets in state.");
            MetricFamily::gauge(format!("node_sockstat_{name}"), help).with_value(value)
        };
        if protocol == "sockets" {
            if let Some((_, used)) = parsed.iter().find(|(k, _)| *k == "used") {
                families.push(gauge("sockets_used".into(), *used));
            }
            return true;
        }
        for (key, value) in parsed {
            if !FIELDS.contains(&key) {
                continue;
            }
            families.push(gauge(format!("{protocol}_{key}"), value));
            if key == "mem" {
                families.push(gauge(
                    format!("{protocol}_mem_bytes"),
                    value * self.page_size,
                ));
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_lines_become_gauges_and_pages_become_bytes() {
        let sockstat = Sockstat {
            files: [
                KeptFile::new("/nonexistent".into()),
                KeptFile::new("/nonexistent6".into()),
            ],
            page_size: 4096.0,
        };
        let mut families = Vec::new();
        assert!(sockstat.parse_line("sockets: used 51", &mut families));
        assert!(sockstat.parse_line(
            "TCP: inuse 9 orphan 0 tw 594 alloc 9 mem 53 newfield 1",
            &mut families
        ));
        assert!(sockstat.parse_line("FRAG6: inuse 0 memory 1024", &mut families));
        assert!(!sockstat.parse_line("TCP: inuse", &mut families));
        assert!(!sockstat.parse_line("TCP: inuse x", &mut families));
        assert!(!sockstat.parse_line("garbage", &mut families));
        let got: Vec<(&str, f64)> = families
            .iter()
            .map(|f| (f.name.as_ref(), f.samples[0].value))
            .collect();
        assert_eq!(
            got,
            [
                ("node_sockstat_sockets_used", 51.0),
                ("node_sockstat_TCP_inuse", 9.0),
                ("node_sockstat_TCP_orphan", 0.0),
                ("node_sockstat_TCP_tw", 594.0),
                ("node_sockstat_TCP_alloc", 9.0),
                ("node_sockstat_TCP_mem", 53.0),
                ("node_sockstat_TCP_mem_bytes", 53.0 * 4096.0),
                ("node_sockstat_FRAG6_inuse", 0.0),
                ("node_sockstat_FRAG6_memory", 1024.0),
            ]
        );
        // Neither file: nothing, and no failure.
        assert!(sockstat.collect().unwrap().is_empty());
    }
}
