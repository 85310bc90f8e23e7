//! `node_filefd_allocated` and `node_filefd_maximum` from /proc/sys/fs/file-nr (allocated, free
//! (always 0 since 2.6), maximum).

use crate::kept_file::KeptFile;
use crate::paths::Paths;
use common::{BlockingCollector, CollectResult, MetricFamily};

pub struct Filefd {
    file: KeptFile,
}

impl Filefd {
    pub fn new(paths: &Paths) -> Self {
        Filefd {
            file: KeptFile::new(paths.proc("sys/fs/file-nr")),
        }
    }
}

impl BlockingCollector for Filefd {
    fn collect(&self) -> CollectResult {
        let text = self.file.read()?;
        let fields: Vec<u64> = text
            .split_ascii_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()
            .map_err(|e| {
                anyhow::anyhow!("{}: {e}: {:?}", self.file.path().display(), text.trim())
            })?;
        let [allocated, _, maximum] = fields[..] else {
            anyhow::bail!(
                "{}: expected three numbers: {:?}",
                self.file.path().display(),
                text.trim()
            );
        };
        Ok(vec![
            MetricFamily::gauge(
                "node_filefd_allocated",
                "File descriptor statistics: allocated.",
            )
            .with_value(allocated as f64),
            MetricFamily::gauge(
                "node_filefd_maximum",
                "File descriptor statistics: maximum.",
            )
            .with_value(maximum as f64),
        ])
    }
}
