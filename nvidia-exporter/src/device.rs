//! Per-GPU series in our own names: the vendor-neutral core shared with rocm-exporter
//! (`gpu_*`, defined in `common`) and the NVIDIA extras (`nvidia_*`), all in base units.

use crate::snapshot::{GpuSample, Snapshot};
use common::gpu::{core_families, GpuCore};
use common::metrics::MetricFamily;

/// NVML's clock-throttle reason bits and the label values we give them.
const THROTTLE_REASONS: [(u64, &str); 9] = [
    (0x1, "gpu_idle"),
    (0x2, "applications_clocks_setting"),
    (0x4, "sw_power_cap"),
    (0x8, "hw_slowdown"),
    (0x10, "sync_boost"),
    (0x20, "sw_thermal_slowdown"),
    (0x40, "hw_thermal_slowdown"),
    (0x80, "hw_power_brake_slowdown"),
    (0x100, "display_clock_setting"),
];

pub fn families(snapshot: &Snapshot) -> Vec<MetricFamily> {
    let cores: Vec<GpuCore> = snapshot.gpus.iter().map(|g| core(snapshot, g)).collect();
    let mut out = core_families(&cores);
    out.extend(extras(snapshot));
    out
}

/// `gpu_memory_used_bytes` counts NVML's reserved memory as used, so that the core identity
/// total = used + free holds; `nvidia_memory_reserved_bytes` gives the reserved part.
fn core(snapshot: &Snapshot, g: &GpuSample) -> GpuCore {
    let mut temperatures = Vec::new();
    if let Some(t) = g.temperature_celsius {
        temperatures.push(("gpu".to_string(), f64::from(t)));
    }
    if let Some(t) = g.memory_temperature_celsius {
        temperatures.push(("memory".to_string(), t as f64));
    }
    GpuCore {
        index: g.identity.index,
        id: g.identity.id.clone(),
        vendor: "nvidia",
        model: g.identity.name.clone(),
        driver_version: snapshot.driver_version.clone(),
        up: g.up,
        utilization_ratio: g.utilization_percent.map(|p| f64::from(p) / 100.0),
        memory_total_bytes: g.memory.as_ref().map(|m| m.total as f64),
        memory_used_bytes: g
            .memory
            .as_ref()
            .map(|m| m.total.saturating_sub(m.free) as f64),
        temperatures_celsius: temperatures,
        power_watts: g.power_milliwatts.map(|mw| f64::from(mw) / 1000.0),
        energy_joules: g.energy_millijoules.map(|mj| mj as f64 / 1000.0),
    }
}

/// The NVIDIA extras, one field per family: a family is named once, in [`Extras::new`], and a
/// field left out of [`Extras::into_families`] does not compile (the same shape as
/// rocm-exporter's `amdgpu_*` families).
struct Extras {
    info: MetricFamily,
    reserved: MetricFamily,
    allocated: MetricFamily,
    mem_util: MetricFamily,
    encoder: MetricFamily,
    decoder: MetricFamily,
    clock: MetricFamily,
    fan: MetricFamily,
    pstate: MetricFamily,
    power_limit: MetricFamily,
    enforced_limit: MetricFamily,
    throttle: MetricFamily,
    violation: MetricFamily,
    link_gen: MetricFamily,
    link_width: MetricFamily,
    max_gen: MetricFamily,
    max_width: MetricFamily,
    replays: MetricFamily,
    tx: MetricFamily,
    rx: MetricFamily,
    nvlink_tx: MetricFamily,
    nvlink_rx: MetricFamily,
    vgpu_licensed: MetricFamily,
    ecc_enabled: MetricFamily,
    ecc: MetricFamily,
    ecc_aggregate: MetricFamily,
    remapped: MetricFamily,
    remap_pending: MetricFamily,
    remap_failure: MetricFamily,
    graphics_active: MetricFamily,
    sm_active: MetricFamily,
    sm_occupancy: MetricFamily,
    tensor_active: MetricFamily,
    dram_active: MetricFamily,
}

impl Extras {
    fn new() -> Self {
        let gpm_help = " averaged since the previous sample, 0 to 1 (GPM, Hopper and newer).";
        Extras {
            info: MetricFamily::gauge(
                "nvidia_gpu_info",
                "NVIDIA GPU identity; value is always 1.",
            ),
            reserved: MetricFamily::gauge(
                "nvidia_memory_reserved_bytes",
                "GPU memory reserved by the driver and firmware, in bytes (counted as used in gpu_memory_used_bytes).",
            ),
            allocated: MetricFamily::gauge(
                "nvidia_memory_allocated_bytes",
                "GPU memory allocated by processes, in bytes (NVML's used, without the reserved part).",
            ),
            mem_util: MetricFamily::gauge(
                "nvidia_memory_controller_utilization_ratio",
                "Fraction of time the memory controller was busy reading or writing, 0 to 1.",
            ),
            encoder: MetricFamily::gauge(
                "nvidia_encoder_utilization_ratio",
                "Fraction of time the video encoder was busy, 0 to 1.",
            ),
            decoder: MetricFamily::gauge(
                "nvidia_decoder_utilization_ratio",
                "Fraction of time the video decoder was busy, 0 to 1.",
            ),
            clock: MetricFamily::gauge(
                "nvidia_clock_hertz",
                "Current clock frequency, in hertz.",
            ),
            fan: MetricFamily::gauge(
                "nvidia_fan_speed_ratio",
                "Fan speed as a fraction of its maximum, 0 to 1.",
            ),
            pstate: MetricFamily::gauge(
                "nvidia_performance_state",
                "Performance state, 0 (P0, maximum) to 15 (P15, minimum).",
            ),
            power_limit: MetricFamily::gauge(
                "nvidia_power_limit_watts",
                "Power management limit, in watts.",
            ),
            enforced_limit: MetricFamily::gauge(
                "nvidia_power_enforced_limit_watts",
                "Power limit the driver enforces (the lowest of all limits), in watts.",
            ),
            throttle: MetricFamily::gauge(
                "nvidia_clock_throttle_reason_active",
                "Whether a clock-throttle reason is active (1) or not (0); only reasons the GPU supports.",
            ),
            violation: MetricFamily::counter(
                "nvidia_clock_throttle_seconds_total",
                "Time clocks were held below their target by a policy, in seconds.",
            ),
            link_gen: MetricFamily::gauge(
                "nvidia_pcie_link_generation",
                "Current PCIe link generation.",
            ),
            link_width: MetricFamily::gauge(
                "nvidia_pcie_link_width",
                "Current PCIe link width (lanes).",
            ),
            max_gen: MetricFamily::gauge(
                "nvidia_pcie_link_max_generation",
                "Maximum PCIe link generation of the GPU and system.",
            ),
            max_width: MetricFamily::gauge(
                "nvidia_pcie_link_max_width",
                "Maximum PCIe link width (lanes) of the GPU and system.",
            ),
            replays: MetricFamily::counter(
                "nvidia_pcie_replay_errors_total",
                "PCIe replays (retransmissions after link errors).",
            ),
            tx: MetricFamily::counter(
                "nvidia_pcie_transmit_bytes_total",
                "Bytes the GPU sent over PCIe (free-running counter).",
            ),
            rx: MetricFamily::counter(
                "nvidia_pcie_receive_bytes_total",
                "Bytes the GPU received over PCIe (free-running counter).",
            ),
            nvlink_tx: MetricFamily::counter(
                "nvidia_nvlink_transmit_bytes_total",
                "Data bytes the GPU sent over all its NVLinks, without protocol overhead (free-running counter).",
            ),
            nvlink_rx: MetricFamily::counter(
                "nvidia_nvlink_receive_bytes_total",
                "Data bytes the GPU received over all its NVLinks, without protocol overhead (free-running counter).",
            ),
            vgpu_licensed: MetricFamily::gauge(
                "nvidia_vgpu_licensed",
                "Whether the vGPU license is held (1) or not (0); 0 also on GPUs without vGPU licensing.",
            ),
            ecc_enabled: MetricFamily::gauge(
                "nvidia_ecc_enabled",
                "Whether ECC is enabled (1) or not (0).",
            ),
            ecc: MetricFamily::counter(
                "nvidia_ecc_errors_total",
                "ECC errors since the driver loaded, by type (corrected, uncorrected).",
            ),
            ecc_aggregate: MetricFamily::counter(
                "nvidia_ecc_errors_aggregate_total",
                "ECC errors over the GPU's lifetime, by type (corrected, uncorrected).",
            ),
            remapped: MetricFamily::counter(
                "nvidia_remapped_rows_total",
                "Memory rows remapped, by the kind of error that caused it (correctable, uncorrectable).",
            ),
            remap_pending: MetricFamily::gauge(
                "nvidia_remapped_rows_pending",
                "Whether a row remapping is pending until the next GPU reset (1) or not (0).",
            ),
            remap_failure: MetricFamily::gauge(
                "nvidia_remapped_rows_failure",
                "Whether a row remapping has failed (1) or not (0).",
            ),
            graphics_active: MetricFamily::gauge(
                "nvidia_graphics_engine_active_ratio",
                format!("Fraction of time the graphics/compute engine was active,{gpm_help}"),
            ),
            sm_active: MetricFamily::gauge(
                "nvidia_sm_active_ratio",
                format!("Fraction of time SMs had at least one warp assigned,{gpm_help}"),
            ),
            sm_occupancy: MetricFamily::gauge(
                "nvidia_sm_occupancy_ratio",
                format!("Resident warps as a fraction of the maximum,{gpm_help}"),
            ),
            tensor_active: MetricFamily::gauge(
                "nvidia_tensor_active_ratio",
                format!("Fraction of time the tensor cores were active,{gpm_help}"),
            ),
            dram_active: MetricFamily::gauge(
                "nvidia_dram_active_ratio",
                format!("Fraction of the memory bandwidth used,{gpm_help}"),
            ),
        }
    }

    /// Adds one GPU's series.
    fn add(&mut self, snapshot: &Snapshot, g: &GpuSample) {
        let id = &g.identity;
        let ids = GpuIds::of(g);
        let cuda = snapshot.cuda_version.as_str();
        // The N of /dev/nvidiaN.
        let minor = id.minor_number.map(|m| m.to_string()).unwrap_or_default();
        ids.put_with(
            &mut self.info,
            &[
                ("uuid", &id.uuid),
                ("name", &id.name),
                ("pci_bus_id", &id.pci_bus_id),
                ("vbios_version", &id.vbios_version),
                ("minor_number", &minor),
                ("driver_version", &snapshot.driver_version),
                ("cuda_version", cuda),
            ],
            Some(1.0),
        );
        if let Some(m) = &g.memory {
            // Without the reserved part (v1 call) NVML's used is not the allocated memory.
            if let Some(r) = m.reserved {
                ids.put(&mut self.reserved, Some(r as f64));
                ids.put(&mut self.allocated, Some(m.used as f64));
            }
        }
        ids.put(&mut self.mem_util, ratio(g.memory_utilization_percent));
        ids.put(&mut self.encoder, ratio(g.encoder_percent));
        ids.put(&mut self.decoder, ratio(g.decoder_percent));
        for (name, mhz) in &g.clocks_mhz {
            ids.put_with(
                &mut self.clock,
                &[("clock", name)],
                Some(f64::from(*mhz) * 1e6),
            );
        }
        for (index, pct) in &g.fan_speed_percent {
            ids.put_with(
                &mut self.fan,
                &[("fan", &index.to_string())],
                ratio(Some(*pct)),
            );
        }
        ids.put(&mut self.pstate, g.performance_state.map(f64::from));
        ids.put(&mut self.power_limit, watts(g.power_limit_milliwatts));
        ids.put(
            &mut self.enforced_limit,
            watts(g.enforced_power_limit_milliwatts),
        );
        if let (Some(supported), Some(active)) = (id.supported_throttle_reasons, g.throttle_reasons)
        {
            for (bit, name) in THROTTLE_REASONS {
                if supported & bit != 0 {
                    let on = if active & bit != 0 { 1.0 } else { 0.0 };
                    ids.put_with(&mut self.throttle, &[("reason", name)], Some(on));
                }
            }
        }
        for (policy, ns) in &g.violation_ns {
            ids.put_with(
                &mut self.violation,
                &[("reason", policy)],
                Some(*ns as f64 / 1e9),
            );
        }
        ids.put(&mut self.link_gen, g.pcie.link_generation.map(f64::from));
        ids.put(&mut self.link_width, g.pcie.link_width.map(f64::from));
        ids.put(&mut self.max_gen, g.pcie.max_link_generation.map(f64::from));
        ids.put(&mut self.max_width, g.pcie.max_link_width.map(f64::from));
        ids.put(&mut self.replays, g.pcie.replay_errors.map(f64::from));
        ids.put(&mut self.tx, g.pcie.transmit_bytes.map(|b| b as f64));
        ids.put(&mut self.rx, g.pcie.receive_bytes.map(|b| b as f64));
        if let Some(link) = &g.nvlink {
            // NVML counts KiB.
            ids.put(&mut self.nvlink_tx, Some(link.transmit_kib as f64 * 1024.0));
            ids.put(&mut self.nvlink_rx, Some(link.receive_kib as f64 * 1024.0));
        }
        ids.put(&mut self.vgpu_licensed, g.vgpu_licensed.map(f64::from));
        ids.put(
            &mut self.ecc_enabled,
            g.ecc_enabled.map(|e| if e { 1.0 } else { 0.0 }),
        );
        for (kind, n) in &g.ecc_volatile {
            ids.put_with(&mut self.ecc, &[("type", kind)], Some(*n as f64));
        }
        for (kind, n) in &g.ecc_aggregate {
            ids.put_with(&mut self.ecc_aggregate, &[("type", kind)], Some(*n as f64));
        }
        if let Some(gpm) = &g.gpm {
            ids.put(&mut self.graphics_active, gpm.graphics_active);
            ids.put(&mut self.sm_active, gpm.sm_active);
            ids.put(&mut self.sm_occupancy, gpm.sm_occupancy);
            ids.put(&mut self.tensor_active, gpm.tensor_active);
            ids.put(&mut self.dram_active, gpm.dram_active);
        }
        let rows = &g.remapped_rows;
        ids.put_with(
            &mut self.remapped,
            &[("type", "correctable")],
            rows.correctable.map(|v| v as f64),
        );
        ids.put_with(
            &mut self.remapped,
            &[("type", "uncorrectable")],
            rows.uncorrectable.map(|v| v as f64),
        );
        ids.put(&mut self.remap_pending, rows.pending.map(|v| v as f64));
        ids.put(&mut self.remap_failure, rows.failure.map(|v| v as f64));
    }

    fn into_families(self) -> Vec<MetricFamily> {
        // Destructured without `..`: a family added to the struct but not here is a compile error.
        let Extras {
            info,
            reserved,
            allocated,
            mem_util,
            encoder,
            decoder,
            clock,
            fan,
            pstate,
            power_limit,
            enforced_limit,
            throttle,
            violation,
            link_gen,
            link_width,
            max_gen,
            max_width,
            replays,
            tx,
            rx,
            nvlink_tx,
            nvlink_rx,
            vgpu_licensed,
            ecc_enabled,
            ecc,
            ecc_aggregate,
            remapped,
            remap_pending,
            remap_failure,
            graphics_active,
            sm_active,
            sm_occupancy,
            tensor_active,
            dram_active,
        } = self;
        vec![
            info,
            reserved,
            allocated,
            mem_util,
            encoder,
            decoder,
            clock,
            fan,
            pstate,
            power_limit,
            enforced_limit,
            throttle,
            violation,
            link_gen,
            link_width,
            max_gen,
            max_width,
            replays,
            tx,
            rx,
            nvlink_tx,
            nvlink_rx,
            vgpu_licensed,
            ecc_enabled,
            ecc,
            ecc_aggregate,
            remapped,
            remap_pending,
            remap_failure,
            graphics_active,
            sm_active,
            sm_occupancy,
            tensor_active,
            dram_active,
        ]
    }
}

/// One GPU's `gpu` and `id` labels, made once per GPU and put in front of each sample's own.
struct GpuIds<'a> {
    gpu: String,
    id: &'a str,
}

impl<'a> GpuIds<'a> {
    fn of(g: &'a GpuSample) -> Self {
        GpuIds {
            gpu: g.identity.index.to_string(),
            id: &g.identity.id,
        }
    }

    /// Adds `value`, if there is one, to `family` with the GPU's labels.
    fn put(&self, family: &mut MetricFamily, value: Option<f64>) {
        self.put_with(family, &[], value);
    }

    /// Adds `value`, if there is one, to `family` with the GPU's labels and `extra`.
    fn put_with(
        &self,
        family: &mut MetricFamily,
        extra: &[(&'static str, &str)],
        value: Option<f64>,
    ) {
        let Some(value) = value else { return };
        let mut labels: Vec<(&'static str, &str)> = vec![("gpu", &self.gpu), ("id", self.id)];
        labels.extend_from_slice(extra);
        family.push(&labels, value);
    }
}

fn extras(snapshot: &Snapshot) -> Vec<MetricFamily> {
    let mut extras = Extras::new();
    for g in &snapshot.gpus {
        extras.add(snapshot, g);
    }
    extras.into_families()
}

fn ratio(percent: Option<u32>) -> Option<f64> {
    percent.map(|p| f64::from(p) / 100.0)
}

fn watts(milliwatts: Option<u32>) -> Option<f64> {
    milliwatts.map(|mw| f64::from(mw) / 1000.0)
}
