//! Boot time, context switches, forks, interrupts and running/blocked processes from
//! /proc/stat.

use crate::shared_read::SharedRead;
use common::{BlockingCollector, CollectResult, MetricFamily};

pub struct Stat {
    proc_stat: SharedRead,
}

impl Stat {
    pub fn new(proc_stat: SharedRead) -> Self {
        Stat { proc_stat }
    }
}

impl BlockingCollector for Stat {
    fn collect(&self) -> CollectResult {
        let path = self.proc_stat.path();
        let text = self.proc_stat.read()?;
        let field = |key: &str| -> anyhow::Result<f64> {
            text.lines()
                .find_map(|l| l.strip_prefix(key).filter(|r| r.starts_with(' ')))
                .and_then(|rest| rest.split_ascii_whitespace().next())
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| anyhow::anyhow!("{}: no valid '{key}' line", path.display()))
        };
        Ok(vec![
            MetricFamily::gauge("node_boot_time_seconds", "Node boot time, in unixtime.")
                .with_value(field("btime")?),
            MetricFamily::counter(
                "node_context_switches_total",
                "Total number of context switches.",
            )
            .with_value(field("ctxt")?),
            MetricFamily::counter("node_forks_total", "Total number of forks.")
                .with_value(field("processes")?),
            MetricFamily::counter("node_intr_total", "Total number of interrupts serviced.")
                .with_value(field("intr")?),
            MetricFamily::gauge(
                "node_procs_running",
                "Number of processes in runnable state.",
            )
            .with_value(field("procs_running")?),
            MetricFamily::gauge(
                "node_procs_blocked",
                "Number of processes blocked waiting for I/O to complete.",
            )
            .with_value(field("procs_blocked")?),
        ])
    }
}
