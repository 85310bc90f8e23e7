//! Per-process GPU memory and utilisation, with the process name. Cardinality is bounded: per
//! GPU the `top_n` processes by memory get their own series and the rest are summed into one
//! `pid="other"` series. Series of a process vanish with the first sample after it exits.

use crate::snapshot::{GpuSample, ProcessSample, Snapshot};
use common::metrics::MetricFamily;

pub fn families(snapshot: &Snapshot, top_n: usize) -> Vec<MetricFamily> {
    let mut families = Families::new();
    for g in &snapshot.gpus {
        families.add(g, top_n);
    }
    families.into_families()
}

/// The per-process families, one field per family: a family is named once, in
/// [`Families::new`], and one left out of [`Families::into_families`] does not compile.
struct Families {
    count: MetricFamily,
    memory: MetricFamily,
    utilization: MetricFamily,
}

impl Families {
    fn new() -> Self {
        Families {
            count: MetricFamily::gauge(
                "nvidia_processes",
                "Processes using the GPU (compute and graphics); absent when the list could not be read.",
            ),
            memory: MetricFamily::gauge(
                "nvidia_process_memory_used_bytes",
                "GPU memory used by a process, in bytes; the processes beyond the top N are summed under pid=\"other\".",
            ),
            utilization: MetricFamily::gauge(
                "nvidia_process_utilization_ratio",
                "Fraction of the last sampling period a process kept a GPU engine busy, 0 to 1, by engine (sm, memory, encoder, decoder).",
            ),
        }
    }

    /// Adds one GPU's processes: the `top_n` by memory and the rest summed.
    fn add(&mut self, g: &GpuSample, top_n: usize) {
        let Some(list) = &g.processes else { return };
        let index = g.identity.index.to_string();
        self.count.push(
            &[("gpu", index.as_str()), ("id", g.identity.id.as_str())],
            list.len() as f64,
        );
        for p in capped(list, top_n) {
            self.add_process(g, &index, &p);
        }
    }

    /// One process's memory and per-engine utilisation.
    fn add_process(&mut self, g: &GpuSample, index: &str, p: &ProcessSample) {
        let pid = if p.kind == "other" {
            "other".to_string()
        } else {
            p.pid.to_string()
        };
        let labels = [
            ("gpu", index),
            ("id", g.identity.id.as_str()),
            ("pid", pid.as_str()),
            ("name", p.name.as_str()),
            ("type", p.kind),
        ];
        if let Some(bytes) = p.used_memory_bytes {
            self.memory.push(&labels, bytes as f64);
        }
        for (engine, pct) in [
            ("sm", p.sm_percent),
            ("memory", p.memory_percent),
            ("encoder", p.encoder_percent),
            ("decoder", p.decoder_percent),
        ] {
            if let Some(pct) = pct {
                let mut with_engine = labels.to_vec();
                with_engine.push(("engine", engine));
                self.utilization.push(&with_engine, f64::from(pct) / 100.0);
            }
        }
    }

    fn into_families(self) -> Vec<MetricFamily> {
        let Families {
            count,
            memory,
            utilization,
        } = self;
        vec![count, memory, utilization]
    }
}

/// The `top_n` largest processes by memory (ties by PID), in PID order, then the rest summed.
pub fn capped(list: &[ProcessSample], top_n: usize) -> Vec<ProcessSample> {
    let mut by_memory: Vec<&ProcessSample> = list.iter().collect();
    by_memory.sort_by(|a, b| {
        b.used_memory_bytes
            .unwrap_or(0)
            .cmp(&a.used_memory_bytes.unwrap_or(0))
            .then(a.pid.cmp(&b.pid))
    });
    let mut kept: Vec<ProcessSample> = by_memory.iter().take(top_n).map(|p| (*p).clone()).collect();
    kept.sort_by_key(|p| p.pid);
    let rest = &by_memory[top_n.min(by_memory.len())..];
    if !rest.is_empty() {
        let sum = |f: fn(&ProcessSample) -> Option<u32>| -> Option<u32> {
            // Saturating: a driver reporting nonsense must not overflow (a panic in debug).
            rest.iter().filter_map(|p| f(p)).reduce(u32::saturating_add)
        };
        kept.push(ProcessSample {
            pid: 0,
            name: "other".into(),
            kind: "other",
            used_memory_bytes: rest
                .iter()
                .filter_map(|p| p.used_memory_bytes)
                .reduce(u64::saturating_add),
            sm_percent: sum(|p| p.sm_percent),
            memory_percent: sum(|p| p.memory_percent),
            encoder_percent: sum(|p| p.encoder_percent),
            decoder_percent: sum(|p| p.decoder_percent),
        });
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_other_bucket_saturates_instead_of_overflowing() {
        let mut huge = process(3, 0, u32::MAX);
        huge.used_memory_bytes = Some(u64::MAX);
        let list = [process(1, 1, 1), huge, process(2, 1, 1)];
        let capped = capped(&list, 0);
        let other = capped.last().unwrap();
        assert_eq!(other.name, "other");
        assert_eq!(other.used_memory_bytes, Some(u64::MAX));
        assert_eq!(other.sm_percent, Some(u32::MAX));
    }

    fn process(pid: u32, mib: u64, sm: u32) -> ProcessSample {
        ProcessSample {
            pid,
            name: format!("p{pid}"),
            kind: "C",
            used_memory_bytes: Some(mib << 20),
            sm_percent: Some(sm),
            ..Default::default()
        }
    }

    #[test]
    fn keeps_the_largest_and_sums_the_rest() {
        let list = vec![
            process(5, 10, 1),
            process(3, 300, 2),
            process(9, 200, 3),
            process(1, 20, 4),
        ];
        let kept = capped(&list, 2);
        let pids: Vec<u32> = kept.iter().map(|p| p.pid).collect();
        assert_eq!(pids, vec![3, 9, 0]);
        let other = &kept[2];
        assert_eq!(other.name, "other");
        assert_eq!(other.used_memory_bytes, Some(30 << 20));
        assert_eq!(other.sm_percent, Some(5));
    }

    #[test]
    fn no_other_bucket_when_under_the_cap() {
        let list = vec![process(2, 1, 0), process(1, 2, 0)];
        let kept = capped(&list, 10);
        assert_eq!(kept.iter().map(|p| p.pid).collect::<Vec<_>>(), vec![1, 2]);
        assert!(capped(&[], 3).is_empty());
    }
}
