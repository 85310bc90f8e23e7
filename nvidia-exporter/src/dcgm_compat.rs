//! dcgm-exporter's default `DCGM_FI_*` families with its names, units (MiB, W, mJ, MHz, %),
//! types and labels, plus `DCGM_FI_DEV_FB_TOTAL`, so existing DCGM dashboards and alerts work
//! unchanged. Labels, in dcgm-exporter's order: `gpu`, `UUID`, `pci_bus_id`, `device`,
//! `modelName`, on MIG instances `GPU_I_PROFILE` and `GPU_I_ID`, the host name label, and
//! `DCGM_FI_DRIVER_VERSION`.
//!
//! With MIG on, dcgm-exporter reports each GPU instance instead of the GPU ("flex" mode): the
//! framebuffer and profiling (GPM) series are the instance's, GPU-wide values (clocks,
//! temperature, power) repeat the parent's, and the utilisation fields are absent, as DCGM does
//! not have them per instance.

use crate::snapshot::{Gpm, GpuSample, Memory, Snapshot};
use crate::xid_events;
use common::metrics::{LabelName, MetricFamily, MetricType};
use std::collections::BTreeMap;

#[derive(Clone, Debug)]
pub struct DcgmOptions {
    /// The host name label's name (`Hostname` in dcgm-exporter's latest release, `hostname` on
    /// its main branch); `None` leaves it out (dcgm-exporter's `--no-hostname`).
    pub hostname_label: Option<String>,
    /// `$NODE_NAME`, else the host name, as dcgm-exporter takes it.
    pub hostname: String,
}

const MIB: f64 = 1024.0 * 1024.0;

/// The families in dcgm-exporter's default-counters.csv order.
const FAMILIES: [(&str, MetricType, &str); 26] = [
    (
        "DCGM_FI_DEV_SM_CLOCK",
        MetricType::Gauge,
        "SM clock frequency (in MHz).",
    ),
    (
        "DCGM_FI_DEV_MEM_CLOCK",
        MetricType::Gauge,
        "Memory clock frequency (in MHz).",
    ),
    (
        "DCGM_FI_DEV_MEMORY_TEMP",
        MetricType::Gauge,
        "Memory temperature (in C).",
    ),
    (
        "DCGM_FI_DEV_GPU_TEMP",
        MetricType::Gauge,
        "GPU temperature (in C).",
    ),
    (
        "DCGM_FI_DEV_POWER_USAGE",
        MetricType::Gauge,
        "Power draw (in W).",
    ),
    (
        "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
        MetricType::Counter,
        "Total energy consumption since boot (in mJ).",
    ),
    (
        "DCGM_FI_DEV_PCIE_REPLAY_COUNTER",
        MetricType::Counter,
        "Total number of PCIe retries.",
    ),
    (
        "DCGM_FI_DEV_GPU_UTIL",
        MetricType::Gauge,
        "GPU utilization (in %).",
    ),
    (
        "DCGM_FI_DEV_MEM_COPY_UTIL",
        MetricType::Gauge,
        "Memory utilization (in %).",
    ),
    (
        "DCGM_FI_DEV_ENC_UTIL",
        MetricType::Gauge,
        "Encoder utilization (in %).",
    ),
    (
        "DCGM_FI_DEV_DEC_UTIL",
        MetricType::Gauge,
        "Decoder utilization (in %).",
    ),
    (
        "DCGM_FI_DEV_XID_ERRORS",
        MetricType::Gauge,
        "Value of the last XID error encountered.",
    ),
    (
        "DCGM_FI_DEV_FB_FREE",
        MetricType::Gauge,
        "Framebuffer memory free (in MiB).",
    ),
    (
        "DCGM_FI_DEV_FB_USED",
        MetricType::Gauge,
        "Framebuffer memory used (in MiB).",
    ),
    (
        "DCGM_FI_DEV_FB_RESERVED",
        MetricType::Gauge,
        "Framebuffer memory reserved (in MiB).",
    ),
    (
        "DCGM_FI_DEV_FB_TOTAL",
        MetricType::Gauge,
        "Framebuffer memory total (in MiB).",
    ),
    // Typed counter as in dcgm-exporter, though DCGM's value is a rate (see the README).
    (
        "DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL",
        MetricType::Counter,
        "Total number of NVLink bandwidth counters for all lanes.",
    ),
    (
        "DCGM_FI_DEV_VGPU_LICENSE_STATUS",
        MetricType::Gauge,
        "vGPU License status",
    ),
    (
        "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS",
        MetricType::Counter,
        "Number of remapped rows for uncorrectable errors",
    ),
    (
        "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS",
        MetricType::Counter,
        "Number of remapped rows for correctable errors",
    ),
    (
        "DCGM_FI_DEV_ROW_REMAP_FAILURE",
        MetricType::Gauge,
        "Whether remapping of rows has failed",
    ),
    (
        "DCGM_FI_PROF_GR_ENGINE_ACTIVE",
        MetricType::Gauge,
        "Ratio of time the graphics engine is active.",
    ),
    (
        "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE",
        MetricType::Gauge,
        "Ratio of cycles the tensor (HMMA) pipe is active.",
    ),
    (
        "DCGM_FI_PROF_DRAM_ACTIVE",
        MetricType::Gauge,
        "Ratio of cycles the device memory interface is active sending or receiving data.",
    ),
    (
        "DCGM_FI_PROF_PCIE_TX_BYTES",
        MetricType::Gauge,
        "The rate of data transmitted over the PCIe bus - including both protocol headers and data payloads - in bytes per second.",
    ),
    (
        "DCGM_FI_PROF_PCIE_RX_BYTES",
        MetricType::Gauge,
        "The rate of data received over the PCIe bus - including both protocol headers and data payloads - in bytes per second.",
    ),
];

/// `last_xid` holds the GPUs whose XID events are watched (0 where none was seen); the XID
/// series of any other GPU is left out rather than claiming "no error".
pub fn families(
    snapshot: &Snapshot,
    options: &DcgmOptions,
    last_xid: &BTreeMap<u32, u64>,
) -> Vec<MetricFamily> {
    let mut out: BTreeMap<&str, MetricFamily> = FAMILIES
        .iter()
        .map(|(name, kind, help)| (*name, MetricFamily::new(*name, *help, *kind)))
        .collect();
    for g in snapshot.gpus.iter().filter(|g| g.up) {
        for entity in entities(g) {
            let owned = labels(g, &entity, snapshot, options);
            let base: Vec<(LabelName, &str)> =
                owned.iter().map(|(k, v)| (k.clone(), v.as_str())).collect();
            let mut put = |name: &str, value: Option<f64>, extra: &[(&'static str, &str)]| {
                if let (Some(v), Some(f)) = (value, out.get_mut(name)) {
                    if extra.is_empty() {
                        f.push(&base, v);
                    } else {
                        let mut all = base.clone();
                        all.extend(extra.iter().map(|&(k, v)| (LabelName::from(k), v)));
                        f.push(&all, v);
                    }
                }
            };
            let clock = |name: &str| {
                g.clocks_mhz
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| f64::from(*v))
            };
            put("DCGM_FI_DEV_SM_CLOCK", clock("sm"), &[]);
            put("DCGM_FI_DEV_MEM_CLOCK", clock("memory"), &[]);
            put(
                "DCGM_FI_DEV_MEMORY_TEMP",
                g.memory_temperature_celsius.map(|t| t as f64),
                &[],
            );
            put(
                "DCGM_FI_DEV_GPU_TEMP",
                g.temperature_celsius.map(f64::from),
                &[],
            );
            put(
                "DCGM_FI_DEV_POWER_USAGE",
                g.power_milliwatts.map(|mw| f64::from(mw) / 1000.0),
                &[],
            );
            put(
                "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
                g.energy_millijoules.map(|v| v as f64),
                &[],
            );
            put(
                "DCGM_FI_DEV_PCIE_REPLAY_COUNTER",
                g.pcie.replay_errors.map(f64::from),
                &[],
            );
            if entity.instance.is_none() {
                put(
                    "DCGM_FI_DEV_GPU_UTIL",
                    g.utilization_percent.map(f64::from),
                    &[],
                );
                put(
                    "DCGM_FI_DEV_MEM_COPY_UTIL",
                    g.memory_utilization_percent.map(f64::from),
                    &[],
                );
                put(
                    "DCGM_FI_DEV_ENC_UTIL",
                    g.encoder_percent.map(f64::from),
                    &[],
                );
                put(
                    "DCGM_FI_DEV_DEC_UTIL",
                    g.decoder_percent.map(f64::from),
                    &[],
                );
            }
            // Profiling values come from GPM, of the GPU or of the MIG GPU instance.
            if let Some(gpm) = entity.gpm {
                put("DCGM_FI_PROF_GR_ENGINE_ACTIVE", gpm.graphics_active, &[]);
                put("DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", gpm.tensor_active, &[]);
                put("DCGM_FI_PROF_DRAM_ACTIVE", gpm.dram_active, &[]);
                put(
                    "DCGM_FI_PROF_PCIE_TX_BYTES",
                    gpm.pcie_transmit_bytes_per_second,
                    &[],
                );
                put(
                    "DCGM_FI_PROF_PCIE_RX_BYTES",
                    gpm.pcie_receive_bytes_per_second,
                    &[],
                );
            }
            if let Some(&xid) = last_xid.get(&g.identity.index) {
                let code = xid.to_string();
                put(
                    "DCGM_FI_DEV_XID_ERRORS",
                    Some(xid as f64),
                    &[
                        ("err_code", code.as_str()),
                        ("err_msg", xid_events::description(xid)),
                    ],
                );
            }
            if let Some(m) = entity.memory {
                put("DCGM_FI_DEV_FB_FREE", Some(mib(m.free)), &[]);
                put("DCGM_FI_DEV_FB_USED", Some(mib(m.used)), &[]);
                put("DCGM_FI_DEV_FB_RESERVED", m.reserved.map(mib), &[]);
                put("DCGM_FI_DEV_FB_TOTAL", Some(mib(m.total)), &[]);
            }
            // GPU-wide: repeated on each MIG instance, as dcgm-exporter does.
            put(
                "DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL",
                g.dcgm_nvlink_bandwidth.map(|v| v as f64),
                &[],
            );
            put(
                "DCGM_FI_DEV_VGPU_LICENSE_STATUS",
                g.vgpu_licensed.map(f64::from),
                &[],
            );
            let rows = &g.remapped_rows;
            put(
                "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS",
                rows.uncorrectable.map(|v| v as f64),
                &[],
            );
            put(
                "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS",
                rows.correctable.map(|v| v as f64),
                &[],
            );
            put(
                "DCGM_FI_DEV_ROW_REMAP_FAILURE",
                rows.failure.map(|v| v as f64),
                &[],
            );
        }
    }
    out.into_values().collect()
}

/// A DCGM entity: the whole GPU, or one MIG GPU instance of it.
struct Entity<'a> {
    /// (profile, GPU instance id).
    instance: Option<(String, u32)>,
    memory: Option<&'a Memory>,
    gpm: Option<&'a Gpm>,
}

fn entities(g: &GpuSample) -> Vec<Entity<'_>> {
    let mut seen = Vec::new();
    let mut instances = Vec::new();
    if g.mig_enabled == Some(true) {
        for m in &g.mig_instances {
            // Compute instances of one GPU instance share its memory: one entity per GPU instance.
            let Some(gi) = m.gpu_instance_id else {
                continue;
            };
            if seen.contains(&gi) {
                continue;
            }
            seen.push(gi);
            instances.push(Entity {
                instance: Some((m.profile.clone(), gi)),
                memory: m.memory.as_ref(),
                gpm: m.gpm.as_ref(),
            });
        }
    }
    if instances.is_empty() {
        instances.push(Entity {
            instance: None,
            memory: g.memory.as_ref(),
            gpm: g.gpm.as_ref(),
        });
    }
    instances
}

fn labels(
    g: &GpuSample,
    entity: &Entity,
    snapshot: &Snapshot,
    options: &DcgmOptions,
) -> Vec<(LabelName, String)> {
    let id = &g.identity;
    let mut labels: Vec<(LabelName, String)> = vec![
        ("gpu".into(), id.index.to_string()),
        ("UUID".into(), id.uuid.clone()),
        ("pci_bus_id".into(), id.pci_bus_id.clone()),
        // dcgm-exporter names the device after DCGM's GPU id, which follows NVML's index.
        ("device".into(), format!("nvidia{}", id.index)),
        ("modelName".into(), id.name.clone()),
    ];
    if let Some((profile, gi)) = &entity.instance {
        labels.push(("GPU_I_PROFILE".into(), profile.clone()));
        labels.push(("GPU_I_ID".into(), gi.to_string()));
    }
    if let Some(name) = &options.hostname_label {
        labels.push((name.clone().into(), options.hostname.clone()));
    }
    labels.push((
        "DCGM_FI_DRIVER_VERSION".into(),
        snapshot.driver_version.clone(),
    ));
    labels
}

/// Bytes to whole MiB, as DCGM reports framebuffer sizes.
fn mib(bytes: u64) -> f64 {
    (bytes as f64 / MIB).floor()
}
