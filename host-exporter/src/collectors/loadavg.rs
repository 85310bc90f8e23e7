//! `node_load1`, `node_load5`, `node_load15` from /proc/loadavg.

use crate::kept_file::KeptFile;
use crate::paths::Paths;
use common::{BlockingCollector, CollectResult, MetricFamily};

pub struct Loadavg {
    file: KeptFile,
}

impl Loadavg {
    pub fn new(paths: &Paths) -> Self {
        Loadavg {
            file: KeptFile::new(paths.proc("loadavg")),
        }
    }
}

impl BlockingCollector for Loadavg {
    fn collect(&self) -> CollectResult {
        let path = self.file.path();
        let text = self.file.read()?;
        let values: Vec<f64> = text
            .split_ascii_whitespace()
            .take(3)
            .map(|f| f.parse::<f64>())
            .collect::<Result<_, _>>()
            .map_err(|e| anyhow::anyhow!("{}: {e}: {:?}", path.display(), text.trim()))?;
        if values.len() != 3 {
            anyhow::bail!(
                "{}: expected three load averages: {:?}",
                path.display(),
                text.trim()
            );
        }
        Ok(vec![
            MetricFamily::gauge("node_load1", "1m load average.").with_value(values[0]),
            MetricFamily::gauge("node_load5", "5m load average.").with_value(values[1]),
            MetricFamily::gauge("node_load15", "15m load average.").with_value(values[2]),
        ])
    }
}
