//! `node_kernel_hung_task_detect_count` from /proc/sys/kernel/hung_task_detect_count (Linux
//! 6.12+): how many tasks the hung task detector has reported since boot. Off by default, as
//! in node_exporter.

use crate::collectors::entropy::parse_number;
use crate::kept_file::KeptFile;
use crate::paths::Paths;
use common::{BlockingCollector, CollectResult, MetricFamily};

pub struct KernelHung {
    file: KeptFile,
}

impl KernelHung {
    pub fn new(paths: &Paths) -> Self {
        KernelHung {
            file: KeptFile::new(paths.proc("sys/kernel/hung_task_detect_count")),
        }
    }
}

impl BlockingCollector for KernelHung {
    fn collect(&self) -> CollectResult {
        // Older kernels, or no hung task detector built in.
        let Some(text) = self.file.read_if_present()? else {
            return Ok(vec![]);
        };
        let count = parse_number(&self.file, &text)?;
        Ok(vec![MetricFamily::counter(
            "node_kernel_hung_task_detect_count",
            "Total number of hung tasks detected.",
        )
        .with_value(count)])
    }
}
