//! MIG: whether MIG mode is on, and per GPU instance its identity and its own memory.

use crate::snapshot::{GpuSample, Snapshot};
use common::metrics::MetricFamily;

pub fn families(snapshot: &Snapshot) -> Vec<MetricFamily> {
    let mut families = Families::new();
    for g in snapshot.gpus.iter().filter(|g| g.up) {
        families.add(g);
    }
    families.into_families()
}

/// The MIG families, one field per family: a family is named once, in [`Families::new`], and
/// one left out of [`Families::into_families`] does not compile.
struct Families {
    enabled: MetricFamily,
    info: MetricFamily,
    total: MetricFamily,
    used: MetricFamily,
    free: MetricFamily,
    graphics_active: MetricFamily,
    sm_active: MetricFamily,
    tensor_active: MetricFamily,
    dram_active: MetricFamily,
}

impl Families {
    fn new() -> Self {
        let gpm_help = ", in a MIG GPU instance, averaged since the previous sample, 0 to 1 (GPM).";
        Families {
            enabled: MetricFamily::gauge(
                "nvidia_mig_enabled",
                "Whether MIG mode is on (1) or off (0).",
            ),
            info: MetricFamily::gauge(
                "nvidia_mig_info",
                "A MIG device (GPU instance and compute instance); value is always 1.",
            ),
            total: MetricFamily::gauge(
                "nvidia_mig_memory_total_bytes",
                "Memory of a MIG GPU instance, in bytes.",
            ),
            used: MetricFamily::gauge(
                "nvidia_mig_memory_used_bytes",
                "Memory in use in a MIG GPU instance, in bytes.",
            ),
            free: MetricFamily::gauge(
                "nvidia_mig_memory_free_bytes",
                "Memory not in use in a MIG GPU instance, in bytes.",
            ),
            graphics_active: MetricFamily::gauge(
                "nvidia_mig_graphics_engine_active_ratio",
                format!("Fraction of time the graphics/compute engine was active{gpm_help}"),
            ),
            sm_active: MetricFamily::gauge(
                "nvidia_mig_sm_active_ratio",
                format!("Fraction of time SMs had at least one warp assigned{gpm_help}"),
            ),
            tensor_active: MetricFamily::gauge(
                "nvidia_mig_tensor_active_ratio",
                format!("Fraction of time the tensor cores were active{gpm_help}"),
            ),
            dram_active: MetricFamily::gauge(
                "nvidia_mig_dram_active_ratio",
                format!("Fraction of the memory bandwidth used{gpm_help}"),
            ),
        }
    }

    /// Adds one GPU's MIG mode and instances.
    fn add(&mut self, g: &GpuSample) {
        let index = g.identity.index.to_string();
        let ids = [("gpu", index.as_str()), ("id", g.identity.id.as_str())];
        let Some(on) = g.mig_enabled else { return };
        self.enabled.push(&ids, if on { 1.0 } else { 0.0 });
        let mut seen = Vec::new();
        for m in &g.mig_instances {
            let gi = m.gpu_instance_id.map(|v| v.to_string()).unwrap_or_default();
            let ci = m
                .compute_instance_id
                .map(|v| v.to_string())
                .unwrap_or_default();
            self.info.push(
                &[
                    ("gpu", index.as_str()),
                    ("id", g.identity.id.as_str()),
                    ("mig_uuid", m.uuid.as_str()),
                    ("gpu_instance_id", gi.as_str()),
                    ("compute_instance_id", ci.as_str()),
                    ("profile", m.profile.as_str()),
                ],
                1.0,
            );
            // Compute instances share their GPU instance's memory: one series per GPU instance.
            if seen.contains(&gi) {
                continue;
            }
            seen.push(gi.clone());
            let labels = [
                ("gpu", index.as_str()),
                ("id", g.identity.id.as_str()),
                ("gpu_instance_id", gi.as_str()),
            ];
            if let Some(gpm) = &m.gpm {
                for (family, value) in [
                    (&mut self.graphics_active, gpm.graphics_active),
                    (&mut self.sm_active, gpm.sm_active),
                    (&mut self.tensor_active, gpm.tensor_active),
                    (&mut self.dram_active, gpm.dram_active),
                ] {
                    if let Some(v) = value {
                        family.push(&labels, v);
                    }
                }
            }
            if let Some(mem) = &m.memory {
                self.total.push(&labels, mem.total as f64);
                self.used.push(&labels, mem.used as f64);
                self.free.push(&labels, mem.free as f64);
            }
        }
    }

    fn into_families(self) -> Vec<MetricFamily> {
        let Families {
            enabled,
            info,
            total,
            used,
            free,
            graphics_active,
            sm_active,
            tensor_active,
            dram_active,
        } = self;
        vec![
            enabled,
            info,
            total,
            used,
            free,
            graphics_active,
            sm_active,
            tensor_active,
            dram_active,
        ]
    }
}
