//! `node_entropy_available_bits` and `node_entropy_pool_size_bits` from
//! /proc/sys/kernel/random.

use crate::kept_file::KeptFile;
use crate::paths::Paths;
use common::{BlockingCollector, CollectResult, MetricFamily};

pub struct Entropy {
    available: KeptFile,
    pool_size: KeptFile,
}

impl Entropy {
    pub fn new(paths: &Paths) -> Self {
        Entropy {
            available: KeptFile::new(paths.proc("sys/kernel/random/entropy_avail")),
            pool_size: KeptFile::new(paths.proc("sys/kernel/random/poolsize")),
        }
    }
}

/// One unsigned number, naming the file when it is not one.
pub fn parse_number(file: &KeptFile, text: &str) -> anyhow::Result<f64> {
    text.trim()
        .parse::<u64>()
        .map(|v| v as f64)
        .map_err(|e| anyhow::anyhow!("{}: {e}: {:?}", file.path().display(), text.trim()))
}

impl BlockingCollector for Entropy {
    fn collect(&self) -> CollectResult {
        // No random sysctls (a procfs without them): nothing to report.
        let Some(text) = self.available.read_if_present()? else {
            return Ok(vec![]);
        };
        let available = parse_number(&self.available, &text)?;
        let pool_size = parse_number(&self.pool_size, &self.pool_size.read()?)?;
        Ok(vec![
            MetricFamily::gauge("node_entropy_available_bits", "Bits of available entropy.")
                .with_value(available),
            MetricFamily::gauge("node_entropy_pool_size_bits", "Bits of entropy pool.")
                .with_value(pool_size),
        ])
    }
}
