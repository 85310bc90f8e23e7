//! `node_vmstat_<field>` (untyped, as node_exporter types them) for the /proc/vmstat fields
//! that match `--collector.vmstat.fields`.

use crate::kept_file::KeptFile;
use crate::paths::Paths;
use common::{log, BlockingCollector, CollectResult, MetricFamily, MetricType};
use regex_lite::Regex;
use std::collections::HashMap;
use std::sync::Mutex;

/// node_exporter's default: paging, swapping, page faults and OOM kills.
pub const DEFAULT_FIELDS: &str = "^(oom_kill|pgpg|pswp|pg.*fault).*";

pub struct Vmstat {
    file: KeptFile,
    fields: Regex,
    /// Verdicts by field name: the same ~180 names every scrape, and regex-lite is slow.
    verdicts: Mutex<HashMap<String, bool>>,
}

impl Vmstat {
    pub fn new(paths: &Paths, fields: Regex) -> Self {
        Vmstat {
            file: KeptFile::new(paths.proc("vmstat")),
            fields,
            verdicts: Mutex::new(HashMap::new()),
        }
    }

    fn wanted(&self, name: &str) -> bool {
        let mut verdicts = self.verdicts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(v) = verdicts.get(name) {
            return *v;
        }
        let verdict = self.fields.is_match(name);
        // A file of garbage names must not grow this without bound.
        if verdicts.len() >= 1024 {
            verdicts.clear();
        }
        verdicts.insert(name.to_string(), verdict);
        verdict
    }
}

impl BlockingCollector for Vmstat {
    fn collect(&self) -> CollectResult {
        let text = self.file.read()?;
        let mut families = Vec::with_capacity(16);
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let mut parts = line.split_ascii_whitespace();
            let (Some(name), Some(value), None) = (parts.next(), parts.next(), parts.next()) else {
                log::warn(
                    "skipping unparsable vmstat line",
                    &[
                        ("path", &self.file.path().display().to_string()),
                        ("line", line),
                    ],
                );
                continue;
            };
            let valid_name = name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            let Some(value) = value.parse::<f64>().ok().filter(|_| valid_name) else {
                log::warn(
                    "skipping unparsable vmstat line",
                    &[
                        ("path", &self.file.path().display().to_string()),
                        ("line", line),
                    ],
                );
                continue;
            };
            if !self.wanted(name) {
                continue;
            }
            families.push(
                MetricFamily::new(
                    ["node_vmstat_", name].concat(),
                    ["/proc/vmstat information field ", name, "."].concat(),
                    MetricType::Untyped,
                )
                .with_value(value),
            );
        }
        Ok(families)
    }
}
