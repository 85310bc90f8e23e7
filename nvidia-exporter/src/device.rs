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

struct Family(MetricFamily);

impl Family {
    fn gauge(name: &'static str, help: impl Into<common::metrics::Text>) -> Family {
        Family(MetricFamily::gauge(name, help))
    }
    fn counter(name: &'static str, help: impl Into<common::metrics::Text>) -> Family {
        Family(MetricFamily::counter(name, help))
    }
    /// One sample for a GPU, with `gpu`, `id` and any extra labels.
    fn put(&mut self, g: &GpuSample, extra: &[(&'static str, &str)], value: Option<f64>) {
        let Some(value) = value else { return };
        let index = g.identity.index.to_string();
        let mut labels: Vec<(&'static str, &str)> = vec![("gpu", &index), ("id", &g.identity.id)];
        labels.extend_from_slice(extra);
        self.0.push(&labels, value);
    }
}

fn extras(snapshot: &Snapshot) -> Vec<MetricFamily> {
    let mut info = Family::gauge("nvidia_gpu_info", "NVIDIA GPU identity; value is always 1.");
    let mut reserved = Family::gauge(
        "nvidia_memory_reserved_bytes",
        "GPU memory reserved by the driver and firmware, in bytes (counted as used in gpu_memory_used_bytes).",
    );
    let mut allocated = Family::gauge(
        "nvidia_memory_allocated_bytes",
        "GPU memory allocated by processes, in bytes (NVML's used, without the reserved part).",
    );
    let mut mem_util = Family::gauge(
        "nvidia_memory_controller_utilization_ratio",
        "Fraction of time the memory controller was busy reading or writing, 0 to 1.",
    );
    let mut encoder = Family::gauge(
        "nvidia_encoder_utilization_ratio",
        "Fraction of time the video encoder was busy, 0 to 1.",
    );
    let mut decoder = Family::gauge(
        "nvidia_decoder_utilization_ratio",
        "Fraction of time the video decoder was busy, 0 to 1.",
    );
    let mut clock = Family::gauge("nvidia_clock_hertz", "Current clock frequency, in hertz.");
    let mut fan = Family::gauge(
        "nvidia_fan_speed_ratio",
        "Fan speed as a fraction of its maximum, 0 to 1.",
    );
    let mut pstate = Family::gauge(
        "nvidia_performance_state",
        "Performance state, 0 (P0, maximum) to 15 (P15, minimum).",
    );
    let mut power_limit = Family::gauge(
        "nvidia_power_limit_watts",
        "Power management limit, in watts.",
    );
    let mut enforced_limit = Family::gauge(
        "nvidia_power_enforced_limit_watts",
        "Power limit the driver enforces (the lowest of all limits), in watts.",
    );
    let mut throttle = Family::gauge(
        "nvidia_clock_throttle_reason_active",
        "Whether a clock-throttle reason is active (1) or not (0); only reasons the GPU supports.",
    );
    let mut violation = Family::counter(
        "nvidia_clock_throttle_seconds_total",
        "Time clocks were held below their target by a policy, in seconds.",
    );
    let mut link_gen = Family::gauge(
        "nvidia_pcie_link_generation",
        "Current PCIe link generation.",
    );
    let mut link_width =
        Family::gauge("nvidia_pcie_link_width", "Current PCIe link width (lanes).");
    let mut max_gen = Family::gauge(
        "nvidia_pcie_link_max_generation",
        "Maximum PCIe link generation of the GPU and system.",
    );
    let mut max_width = Family::gauge(
        "nvidia_pcie_link_max_width",
        "Maximum PCIe link width (lanes) of the GPU and system.",
    );
    let mut replays = Family::counter(
        "nvidia_pcie_replay_errors_total",
        "PCIe replays (retransmissions after link errors).",
    );
    let mut tx = Family::counter(
        "nvidia_pcie_transmit_bytes_total",
        "Bytes the GPU sent over PCIe (free-running counter).",
    );
    let mut rx = Family::counter(
        "nvidia_pcie_receive_bytes_total",
        "Bytes the GPU received over PCIe (free-running counter).",
    );
    let mut nvlink_tx = Family::counter(
        "nvidia_nvlink_transmit_bytes_total",
        "Data bytes the GPU sent over all its NVLinks, without protocol overhead (free-running counter).",
    );
    let mut nvlink_rx = Family::counter(
        "nvidia_nvlink_receive_bytes_total",
        "Data bytes the GPU received over all its NVLinks, without protocol overhead (free-running counter).",
    );
    let mut vgpu_licensed = Family::gauge(
        "nvidia_vgpu_licensed",
        "Whether the vGPU license is held (1) or not (0); 0 also on GPUs without vGPU licensing.",
    );
    let mut ecc_enabled = Family::gauge(
        "nvidia_ecc_enabled",
        "Whether ECC is enabled (1) or not (0).",
    );
    let mut ecc = Family::counter(
        "nvidia_ecc_errors_total",
        "ECC errors since the driver loaded, by type (corrected, uncorrected).",
    );
    let mut ecc_aggregate = Family::counter(
        "nvidia_ecc_errors_aggregate_total",
        "ECC errors over the GPU's lifetime, by type (corrected, uncorrected).",
    );
    let mut remapped = Family::counter(
        "nvidia_remapped_rows_total",
        "Memory rows remapped, by the kind of error that caused it (correctable, uncorrectable).",
    );
    let mut remap_pending = Family::gauge(
        "nvidia_remapped_rows_pending",
        "Whether a row remapping is pending until the next GPU reset (1) or not (0).",
    );
    let mut remap_failure = Family::gauge(
        "nvidia_remapped_rows_failure",
        "Whether a row remapping has failed (1) or not (0).",
    );

    let gpm_help = " averaged since the previous sample, 0 to 1 (GPM, Hopper and newer).";
    let mut graphics_active = Family::gauge(
        "nvidia_graphics_engine_active_ratio",
        format!("Fraction of time the graphics/compute engine was active,{gpm_help}"),
    );
    let mut sm_active = Family::gauge(
        "nvidia_sm_active_ratio",
        format!("Fraction of time SMs had at least one warp assigned,{gpm_help}"),
    );
    let mut sm_occupancy = Family::gauge(
        "nvidia_sm_occupancy_ratio",
        format!("Resident warps as a fraction of the maximum,{gpm_help}"),
    );
    let mut tensor_active = Family::gauge(
        "nvidia_tensor_active_ratio",
        format!("Fraction of time the tensor cores were active,{gpm_help}"),
    );
    let mut dram_active = Family::gauge(
        "nvidia_dram_active_ratio",
        format!("Fraction of the memory bandwidth used,{gpm_help}"),
    );
    let cuda = snapshot.cuda_version.as_str();
    for g in &snapshot.gpus {
        let id = &g.identity;
        // The N of /dev/nvidiaN.
        let minor = id.minor_number.map(|m| m.to_string()).unwrap_or_default();
        info.put(
            g,
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
                reserved.put(g, &[], Some(r as f64));
                allocated.put(g, &[], Some(m.used as f64));
            }
        }
        mem_util.put(g, &[], ratio(g.memory_utilization_percent));
        encoder.put(g, &[], ratio(g.encoder_percent));
        decoder.put(g, &[], ratio(g.decoder_percent));
        for (name, mhz) in &g.clocks_mhz {
            clock.put(g, &[("clock", name)], Some(f64::from(*mhz) * 1e6));
        }
        for (index, pct) in &g.fan_speed_percent {
            fan.put(g, &[("fan", &index.to_string())], ratio(Some(*pct)));
        }
        pstate.put(g, &[], g.performance_state.map(f64::from));
        power_limit.put(g, &[], watts(g.power_limit_milliwatts));
        enforced_limit.put(g, &[], watts(g.enforced_power_limit_milliwatts));
        if let (Some(supported), Some(active)) = (id.supported_throttle_reasons, g.throttle_reasons)
        {
            for (bit, name) in THROTTLE_REASONS {
                if supported & bit != 0 {
                    let on = if active & bit != 0 { 1.0 } else { 0.0 };
                    throttle.put(g, &[("reason", name)], Some(on));
                }
            }
        }
        for (policy, ns) in &g.violation_ns {
            violation.put(g, &[("reason", policy)], Some(*ns as f64 / 1e9));
        }
        link_gen.put(g, &[], g.pcie.link_generation.map(f64::from));
        link_width.put(g, &[], g.pcie.link_width.map(f64::from));
        max_gen.put(g, &[], g.pcie.max_link_generation.map(f64::from));
        max_width.put(g, &[], g.pcie.max_link_width.map(f64::from));
        replays.put(g, &[], g.pcie.replay_errors.map(f64::from));
        tx.put(g, &[], g.pcie.transmit_bytes.map(|b| b as f64));
        rx.put(g, &[], g.pcie.receive_bytes.map(|b| b as f64));
        if let Some(link) = &g.nvlink {
            // NVML counts KiB.
            nvlink_tx.put(g, &[], Some(link.transmit_kib as f64 * 1024.0));
            nvlink_rx.put(g, &[], Some(link.receive_kib as f64 * 1024.0));
        }
        vgpu_licensed.put(g, &[], g.vgpu_licensed.map(f64::from));
        ecc_enabled.put(g, &[], g.ecc_enabled.map(|e| if e { 1.0 } else { 0.0 }));
        for (kind, n) in &g.ecc_volatile {
            ecc.put(g, &[("type", kind)], Some(*n as f64));
        }
        for (kind, n) in &g.ecc_aggregate {
            ecc_aggregate.put(g, &[("type", kind)], Some(*n as f64));
        }
        if let Some(gpm) = &g.gpm {
            graphics_active.put(g, &[], gpm.graphics_active);
            sm_active.put(g, &[], gpm.sm_active);
            sm_occupancy.put(g, &[], gpm.sm_occupancy);
            tensor_active.put(g, &[], gpm.tensor_active);
            dram_active.put(g, &[], gpm.dram_active);
        }
        let rows = &g.remapped_rows;
        remapped.put(
            g,
            &[("type", "correctable")],
            rows.correctable.map(|v| v as f64),
        );
        remapped.put(
            g,
            &[("type", "uncorrectable")],
            rows.uncorrectable.map(|v| v as f64),
        );
        remap_pending.put(g, &[], rows.pending.map(|v| v as f64));
        remap_failure.put(g, &[], rows.failure.map(|v| v as f64));
    }
    [
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
    .into_iter()
    .map(|f| f.0)
    .collect()
}

fn ratio(percent: Option<u32>) -> Option<f64> {
    percent.map(|p| f64::from(p) / 100.0)
}

fn watts(milliwatts: Option<u32>) -> Option<f64> {
    milliwatts.map(|mw| f64::from(mw) / 1000.0)
}
