//! `node_cpu_seconds_total` and `node_cpu_guest_seconds_total` from the per-CPU lines of
//! /proc/stat, in seconds (the kernel counts in USER_HZ ticks).

use crate::shared_read::SharedRead;
use common::{BlockingCollector, CollectResult, MetricFamily};

pub struct Cpu {
    proc_stat: SharedRead,
    ticks_per_second: f64,
}

impl Cpu {
    pub fn new(proc_stat: SharedRead) -> Self {
        // SAFETY: sysconf has no preconditions.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        Cpu {
            proc_stat,
            ticks_per_second: if ticks > 0 { ticks as f64 } else { 100.0 },
        }
    }
}

const MODES: [&str; 8] = [
    "user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal",
];

impl BlockingCollector for Cpu {
    fn name(&self) -> &'static str {
        "cpu"
    }

    fn collect(&self) -> CollectResult {
        let text = self.proc_stat.read()?;
        let mut seconds = MetricFamily::counter(
            "node_cpu_seconds_total",
            "Seconds the CPUs spent in each mode.",
        );
        let mut guest = MetricFamily::counter(
            "node_cpu_guest_seconds_total",
            "Seconds the CPUs spent in guests (VMs) for each mode.",
        );
        for line in text.lines() {
            let mut fields = line.split_ascii_whitespace();
            let Some(cpu) = fields
                .next()
                .and_then(|f| f.strip_prefix("cpu"))
                .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            else {
                continue;
            };
            let values: Vec<f64> = fields.map_while(|f| f.parse::<f64>().ok()).collect();
            if values.len() < 4 {
                anyhow::bail!("/proc/stat: cpu{cpu} line has {} fields", values.len());
            }
            let mut modes: Vec<(&str, f64)> = MODES
                .iter()
                .zip(&values)
                .map(|(mode, ticks)| (*mode, ticks / self.ticks_per_second))
                .collect();
            modes.sort_by(|a, b| a.0.cmp(b.0));
            for (mode, value) in modes {
                seconds.push(&[("cpu", cpu), ("mode", mode)], value);
            }
            if let (Some(user), Some(nice)) = (values.get(8), values.get(9)) {
                guest.push(
                    &[("cpu", cpu), ("mode", "nice")],
                    nice / self.ticks_per_second,
                );
                guest.push(
                    &[("cpu", cpu), ("mode", "user")],
                    user / self.ticks_per_second,
                );
            }
        }
        if seconds.is_empty() {
            anyhow::bail!("/proc/stat: no per-CPU lines");
        }
        Ok(vec![seconds, guest])
    }
}
