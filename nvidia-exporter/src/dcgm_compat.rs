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

/// dcgm-exporter's default families, one field per family (named after the field id) in its
/// default-counters.csv order: a family is named once, in [`Families::new`], a misspelt field
/// does not compile, and one left out of [`Families::into_families`] neither.
struct Families {
    dev_sm_clock: MetricFamily,
    dev_mem_clock: MetricFamily,
    dev_memory_temp: MetricFamily,
    dev_gpu_temp: MetricFamily,
    dev_power_usage: MetricFamily,
    dev_total_energy_consumption: MetricFamily,
    dev_pcie_replay_counter: MetricFamily,
    dev_gpu_util: MetricFamily,
    dev_mem_copy_util: MetricFamily,
    dev_enc_util: MetricFamily,
    dev_dec_util: MetricFamily,
    dev_xid_errors: MetricFamily,
    dev_fb_free: MetricFamily,
    dev_fb_used: MetricFamily,
    dev_fb_reserved: MetricFamily,
    dev_fb_total: MetricFamily,
    dev_nvlink_bandwidth_total: MetricFamily,
    dev_vgpu_license_status: MetricFamily,
    dev_uncorrectable_remapped_rows: MetricFamily,
    dev_correctable_remapped_rows: MetricFamily,
    dev_row_remap_failure: MetricFamily,
    prof_gr_engine_active: MetricFamily,
    prof_pipe_tensor_active: MetricFamily,
    prof_dram_active: MetricFamily,
    prof_pcie_tx_bytes: MetricFamily,
    prof_pcie_rx_bytes: MetricFamily,
}

impl Families {
    fn new() -> Self {
        Families {
            dev_sm_clock: MetricFamily::new(
                "DCGM_FI_DEV_SM_CLOCK",
                "SM clock frequency (in MHz).",
                MetricType::Gauge,
            ),
            dev_mem_clock: MetricFamily::new(
                "DCGM_FI_DEV_MEM_CLOCK",
                "Memory clock frequency (in MHz).",
                MetricType::Gauge,
            ),
            dev_memory_temp: MetricFamily::new(
                "DCGM_FI_DEV_MEMORY_TEMP",
                "Memory temperature (in C).",
                MetricType::Gauge,
            ),
            dev_gpu_temp: MetricFamily::new(
                "DCGM_FI_DEV_GPU_TEMP",
                "GPU temperature (in C).",
                MetricType::Gauge,
            ),
            dev_power_usage: MetricFamily::new(
                "DCGM_FI_DEV_POWER_USAGE",
                "Power draw (in W).",
                MetricType::Gauge,
            ),
            dev_total_energy_consumption: MetricFamily::new(
                "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
                "Total energy consumption since boot (in mJ).",
                MetricType::Counter,
            ),
            dev_pcie_replay_counter: MetricFamily::new(
                "DCGM_FI_DEV_PCIE_REPLAY_COUNTER",
                "Total number of PCIe retries.",
                MetricType::Counter,
            ),
            dev_gpu_util: MetricFamily::new(
                "DCGM_FI_DEV_GPU_UTIL",
                "GPU utilization (in %).",
                MetricType::Gauge,
            ),
            dev_mem_copy_util: MetricFamily::new(
                "DCGM_FI_DEV_MEM_COPY_UTIL",
                "Memory utilization (in %).",
                MetricType::Gauge,
            ),
            dev_enc_util: MetricFamily::new(
                "DCGM_FI_DEV_ENC_UTIL",
                "Encoder utilization (in %).",
                MetricType::Gauge,
            ),
            dev_dec_util: MetricFamily::new(
                "DCGM_FI_DEV_DEC_UTIL",
                "Decoder utilization (in %).",
                MetricType::Gauge,
            ),
            dev_xid_errors: MetricFamily::new(
                "DCGM_FI_DEV_XID_ERRORS",
                "Value of the last XID error encountered.",
                MetricType::Gauge,
            ),
            dev_fb_free: MetricFamily::new(
                "DCGM_FI_DEV_FB_FREE",
                "Framebuffer memory free (in MiB).",
                MetricType::Gauge,
            ),
            dev_fb_used: MetricFamily::new(
                "DCGM_FI_DEV_FB_USED",
                "Framebuffer memory used (in MiB).",
                MetricType::Gauge,
            ),
            dev_fb_reserved: MetricFamily::new(
                "DCGM_FI_DEV_FB_RESERVED",
                "Framebuffer memory reserved (in MiB).",
                MetricType::Gauge,
            ),
            dev_fb_total: MetricFamily::new(
                "DCGM_FI_DEV_FB_TOTAL",
                "Framebuffer memory total (in MiB).",
                MetricType::Gauge,
            ),
            dev_nvlink_bandwidth_total: MetricFamily::new(
                "DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL",
                "Total number of NVLink bandwidth counters for all lanes.",
                MetricType::Counter,
            ),
            dev_vgpu_license_status: MetricFamily::new(
                "DCGM_FI_DEV_VGPU_LICENSE_STATUS",
                "vGPU License status",
                MetricType::Gauge,
            ),
            dev_uncorrectable_remapped_rows: MetricFamily::new(
                "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS",
                "Number of remapped rows for uncorrectable errors",
                MetricType::Counter,
            ),
            dev_correctable_remapped_rows: MetricFamily::new(
                "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS",
                "Number of remapped rows for correctable errors",
                MetricType::Counter,
            ),
            dev_row_remap_failure: MetricFamily::new(
                "DCGM_FI_DEV_ROW_REMAP_FAILURE",
                "Whether remapping of rows has failed",
                MetricType::Gauge,
            ),
            prof_gr_engine_active: MetricFamily::new(
                "DCGM_FI_PROF_GR_ENGINE_ACTIVE",
                "Ratio of time the graphics engine is active.",
                MetricType::Gauge,
            ),
            prof_pipe_tensor_active: MetricFamily::new(
                "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE",
                "Ratio of cycles the tensor (HMMA) pipe is active.",
                MetricType::Gauge,
            ),
            prof_dram_active: MetricFamily::new(
                "DCGM_FI_PROF_DRAM_ACTIVE",
                "Ratio of cycles the device memory interface is active sending or receiving data.",
                MetricType::Gauge,
            ),
            prof_pcie_tx_bytes: MetricFamily::new(
                "DCGM_FI_PROF_PCIE_TX_BYTES",
                "The rate of data transmitted over the PCIe bus - including both protocol headers and data payloads - in bytes per second.",
                MetricType::Gauge,
            ),
            prof_pcie_rx_bytes: MetricFamily::new(
                "DCGM_FI_PROF_PCIE_RX_BYTES",
                "The rate of data received over the PCIe bus - including both protocol headers and data payloads - in bytes per second.",
                MetricType::Gauge,
            ),
        }
    }

    fn into_families(self) -> Vec<MetricFamily> {
        // Destructured without `..`: a family added to the struct but not here is a compile error.
        let Families {
            dev_sm_clock,
            dev_mem_clock,
            dev_memory_temp,
            dev_gpu_temp,
            dev_power_usage,
            dev_total_energy_consumption,
            dev_pcie_replay_counter,
            dev_gpu_util,
            dev_mem_copy_util,
            dev_enc_util,
            dev_dec_util,
            dev_xid_errors,
            dev_fb_free,
            dev_fb_used,
            dev_fb_reserved,
            dev_fb_total,
            dev_nvlink_bandwidth_total,
            dev_vgpu_license_status,
            dev_uncorrectable_remapped_rows,
            dev_correctable_remapped_rows,
            dev_row_remap_failure,
            prof_gr_engine_active,
            prof_pipe_tensor_active,
            prof_dram_active,
            prof_pcie_tx_bytes,
            prof_pcie_rx_bytes,
        } = self;
        vec![
            dev_sm_clock,
            dev_mem_clock,
            dev_memory_temp,
            dev_gpu_temp,
            dev_power_usage,
            dev_total_energy_consumption,
            dev_pcie_replay_counter,
            dev_gpu_util,
            dev_mem_copy_util,
            dev_enc_util,
            dev_dec_util,
            dev_xid_errors,
            dev_fb_free,
            dev_fb_used,
            dev_fb_reserved,
            dev_fb_total,
            dev_nvlink_bandwidth_total,
            dev_vgpu_license_status,
            dev_uncorrectable_remapped_rows,
            dev_correctable_remapped_rows,
            dev_row_remap_failure,
            prof_gr_engine_active,
            prof_pipe_tensor_active,
            prof_dram_active,
            prof_pcie_tx_bytes,
            prof_pcie_rx_bytes,
        ]
    }
}

/// `last_xid` holds the GPUs whose XID events are watched (0 where none was seen); the XID
/// series of any other GPU is left out rather than claiming "no error".
pub fn families(
    snapshot: &Snapshot,
    options: &DcgmOptions,
    last_xid: &BTreeMap<u32, u64>,
) -> Vec<MetricFamily> {
    let mut out = Families::new();
    for g in snapshot.gpus.iter().filter(|g| g.up) {
        for entity in entities(g) {
            let owned = labels(g, &entity, snapshot, options);
            let base: Vec<(LabelName, &str)> =
                owned.iter().map(|(k, v)| (k.clone(), v.as_str())).collect();
            let put = |f: &mut MetricFamily, value: Option<f64>, extra: &[(&'static str, &str)]| {
                if let Some(v) = value {
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
            put(&mut out.dev_sm_clock, clock("sm"), &[]);
            put(&mut out.dev_mem_clock, clock("memory"), &[]);
            put(
                &mut out.dev_memory_temp,
                g.memory_temperature_celsius.map(|t| t as f64),
                &[],
            );
            put(
                &mut out.dev_gpu_temp,
                g.temperature_celsius.map(f64::from),
                &[],
            );
            put(
                &mut out.dev_power_usage,
                g.power_milliwatts.map(|mw| f64::from(mw) / 1000.0),
                &[],
            );
            put(
                &mut out.dev_total_energy_consumption,
                g.energy_millijoules.map(|v| v as f64),
                &[],
            );
            put(
                &mut out.dev_pcie_replay_counter,
                g.pcie.replay_errors.map(f64::from),
                &[],
            );
            if entity.instance.is_none() {
                put(
                    &mut out.dev_gpu_util,
                    g.utilization_percent.map(f64::from),
                    &[],
                );
                put(
                    &mut out.dev_mem_copy_util,
                    g.memory_utilization_percent.map(f64::from),
                    &[],
                );
                put(&mut out.dev_enc_util, g.encoder_percent.map(f64::from), &[]);
                put(&mut out.dev_dec_util, g.decoder_percent.map(f64::from), &[]);
            }
            // Profiling values come from GPM, of the GPU or of the MIG GPU instance.
            if let Some(gpm) = entity.gpm {
                put(&mut out.prof_gr_engine_active, gpm.graphics_active, &[]);
                put(&mut out.prof_pipe_tensor_active, gpm.tensor_active, &[]);
                put(&mut out.prof_dram_active, gpm.dram_active, &[]);
                put(
                    &mut out.prof_pcie_tx_bytes,
                    gpm.pcie_transmit_bytes_per_second,
                    &[],
                );
                put(
                    &mut out.prof_pcie_rx_bytes,
                    gpm.pcie_receive_bytes_per_second,
                    &[],
                );
            }
            if let Some(&xid) = last_xid.get(&g.identity.index) {
                let code = xid.to_string();
                put(
                    &mut out.dev_xid_errors,
                    Some(xid as f64),
                    &[
                        ("err_code", code.as_str()),
                        ("err_msg", xid_events::description(xid)),
                    ],
                );
            }
            if let Some(m) = entity.memory {
                put(&mut out.dev_fb_free, Some(mib(m.free)), &[]);
                put(&mut out.dev_fb_used, Some(mib(m.used)), &[]);
                put(&mut out.dev_fb_reserved, m.reserved.map(mib), &[]);
                put(&mut out.dev_fb_total, Some(mib(m.total)), &[]);
            }
            // GPU-wide: repeated on each MIG instance, as dcgm-exporter does.
            put(
                &mut out.dev_nvlink_bandwidth_total,
                g.dcgm_nvlink_bandwidth.map(|v| v as f64),
                &[],
            );
            put(
                &mut out.dev_vgpu_license_status,
                g.vgpu_licensed.map(f64::from),
                &[],
            );
            let rows = &g.remapped_rows;
            put(
                &mut out.dev_uncorrectable_remapped_rows,
                rows.uncorrectable.map(|v| v as f64),
                &[],
            );
            put(
                &mut out.dev_correctable_remapped_rows,
                rows.correctable.map(|v| v as f64),
                &[],
            );
            put(
                &mut out.dev_row_remap_failure,
                rows.failure.map(|v| v as f64),
                &[],
            );
        }
    }
    out.into_families()
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
