//! `node_schedstat_{running,waiting}_seconds_total` and `node_schedstat_timeslices_total` per
//! CPU from /proc/schedstat (the last three numbers of each `cpuN` line: nanoseconds running,
//! nanoseconds waiting to run, timeslices run).

use crate::kept_file::KeptFile;
use crate::paths::Paths;
use common::{log, BlockingCollector, CollectResult, MetricFamily};

pub struct Schedstat {
    file: KeptFile,
}

impl Schedstat {
    pub fn new(paths: &Paths) -> Self {
        Schedstat {
            file: KeptFile::new(paths.proc("schedstat")),
        }
    }
}

impl BlockingCollector for Schedstat {
    fn collect(&self) -> CollectResult {
        // Kernels built without CONFIG_SCHEDSTATS have no such file.
        let Some(text) = self.file.read_if_present()? else {
            return Ok(vec![]);
        };
        let mut running = MetricFamily::counter(
            "node_schedstat_running_seconds_total",
            "Number of seconds CPU spent running a process.",
        );
        let mut waiting = MetricFamily::counter(
            "node_schedstat_waiting_seconds_total",
            "Number of seconds spent by processing waiting for this CPU.",
        );
        let mut timeslices = MetricFamily::counter(
            "node_schedstat_timeslices_total",
            "Number of timeslices executed by CPU.",
        );
        for line in text.lines() {
            let Some((cpu, fields)) = super::cpu::numbered_cpu_line(line) else {
                continue;
            };
            let values: Vec<u64> = fields.map_while(|f| f.parse().ok()).collect();
            if values.len() < 9 {
                log::warn(
                    "skipping short schedstat line",
                    &[
                        ("path", &self.file.path().display().to_string()),
                        ("line", line),
                    ],
                );
                continue;
            }
            running.push(&[("cpu", cpu)], values[6] as f64 / 1e9);
            waiting.push(&[("cpu", cpu)], values[7] as f64 / 1e9);
            timeslices.push(&[("cpu", cpu)], values[8] as f64);
        }
        Ok(vec![running, waiting, timeslices])
    }
}
