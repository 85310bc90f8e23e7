//! What one NVML sample holds: plain values, no NVML types, so that rendering the exposition
//! never touches the library and a scrape can be answered from a sample taken earlier.

use std::sync::Arc;
use std::time::Instant;

/// The identity of one GPU, read once per NVML session: it does not change while the driver is
/// loaded, and keeping it lets a GPU that fell off the bus keep its labels.
#[derive(Clone, Debug, Default)]
pub struct GpuIdentity {
    pub index: u32,
    pub uuid: String,
    pub name: String,
    /// As NVML spells it, e.g. `00000000:01:00.0` (dcgm-exporter's `pci_bus_id`).
    pub pci_bus_id: String,
    /// The normalised PCI address shared with rocm-exporter (`0000:01:00.0`).
    pub id: String,
    pub minor_number: Option<u32>,
    pub vbios_version: String,
    /// Throttle reasons this GPU can report (NVML bitmask).
    pub supported_throttle_reasons: Option<u64>,
    /// Whether the GPU has GPM performance counters (Hopper and newer).
    pub gpm_supported: bool,
    /// Whether the GPU has vGPU licensing (`None`: NVML cannot say). Read once: it does not
    /// change while the driver is loaded, so unlicensable GPUs cost no call per sample.
    pub vgpu_licensing: Option<bool>,
}

/// Why NVML could not be used at all.
#[derive(Clone, Debug, PartialEq)]
pub struct DownReason {
    /// A short stable code: `library_not_found`, `driver_not_loaded`, `timeout`, ...
    pub reason: &'static str,
    /// The error as NVML or the loader gave it.
    pub message: String,
}

#[derive(Clone, Debug, Default)]
pub struct Memory {
    pub total: u64,
    /// Absent with the v1 call of drivers before R510, whose `used` includes it.
    pub reserved: Option<u64>,
    pub free: u64,
    pub used: u64,
}

#[derive(Clone, Debug, Default)]
pub struct Pcie {
    pub link_generation: Option<u32>,
    pub link_width: Option<u32>,
    pub max_link_generation: Option<u32>,
    pub max_link_width: Option<u32>,
    pub replay_errors: Option<u32>,
    pub transmit_bytes: Option<u64>,
    pub receive_bytes: Option<u64>,
}

#[derive(Clone, Debug, Default)]
pub struct RemappedRows {
    pub correctable: Option<u64>,
    pub uncorrectable: Option<u64>,
    pub pending: Option<u64>,
    pub failure: Option<u64>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProcessSample {
    pub pid: u32,
    pub name: String,
    /// `C` (compute), `G` (graphics) or `C+G`, as nvidia-smi shows it.
    pub kind: &'static str,
    pub used_memory_bytes: Option<u64>,
    /// Utilisation in percent over NVML's last sampling window, where NVML has it.
    pub sm_percent: Option<u32>,
    pub memory_percent: Option<u32>,
    pub encoder_percent: Option<u32>,
    pub decoder_percent: Option<u32>,
}

/// NVML's free-running NVLink data counters (payload only), summed over all links.
#[derive(Clone, Debug, Default)]
pub struct NvLink {
    pub transmit_kib: u64,
    pub receive_kib: u64,
    /// NVML's timestamp of the reading, in µs since the epoch.
    pub timestamp_us: i64,
}

/// GPM performance metrics averaged between two samples, as fractions (0..1) and bytes/s.
#[derive(Clone, Debug, Default)]
pub struct Gpm {
    pub graphics_active: Option<f64>,
    pub sm_active: Option<f64>,
    pub sm_occupancy: Option<f64>,
    pub tensor_active: Option<f64>,
    pub dram_active: Option<f64>,
    pub pcie_transmit_bytes_per_second: Option<f64>,
    pub pcie_receive_bytes_per_second: Option<f64>,
}

#[derive(Clone, Debug, Default)]
pub struct MigInstance {
    pub uuid: String,
    pub gpu_instance_id: Option<u32>,
    pub compute_instance_id: Option<u32>,
    /// The profile as NVML names it in the device name, e.g. `1g.10gb`.
    pub profile: String,
    pub memory: Option<Memory>,
    /// GPM metrics of the GPU instance (from the second sample on, Hopper and newer).
    pub gpm: Option<Gpm>,
}

/// Everything read from one GPU in one sample. `None` means "not available": not supported,
/// failed, or not asked for; such series are left out rather than reported as 0.
#[derive(Clone, Debug, Default)]
pub struct GpuSample {
    pub identity: Arc<GpuIdentity>,
    /// False when the GPU answered GPU_IS_LOST (or could not be reached) in this sample.
    pub up: bool,
    pub utilization_percent: Option<u32>,
    pub memory_utilization_percent: Option<u32>,
    pub memory: Option<Memory>,
    pub temperature_celsius: Option<u32>,
    pub memory_temperature_celsius: Option<u64>,
    pub power_milliwatts: Option<u32>,
    pub energy_millijoules: Option<u64>,
    pub power_limit_milliwatts: Option<u32>,
    pub enforced_power_limit_milliwatts: Option<u32>,
    pub encoder_percent: Option<u32>,
    pub decoder_percent: Option<u32>,
    /// (clock name, MHz) for `graphics`, `sm`, `memory`, `video`.
    pub clocks_mhz: Vec<(&'static str, u32)>,
    /// (fan index, percent).
    pub fan_speed_percent: Vec<(u32, u32)>,
    pub performance_state: Option<u32>,
    pub throttle_reasons: Option<u64>,
    /// (policy name, nanoseconds of clock throttling since the driver loaded).
    pub violation_ns: Vec<(&'static str, u64)>,
    pub pcie: Pcie,
    pub ecc_enabled: Option<bool>,
    /// (`corrected` | `uncorrected`, count) since the driver loaded.
    pub ecc_volatile: Vec<(&'static str, u64)>,
    /// The same over the GPU's lifetime.
    pub ecc_aggregate: Vec<(&'static str, u64)>,
    pub remapped_rows: RemappedRows,
    /// NVLink data counters summed over all links; `None` on GPUs without NVLink.
    pub nvlink: Option<NvLink>,
    /// DCGM's `DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL`: the data rate since the previous sample,
    /// computed as DCGM does (KiB/s divided by 1000, truncated; 0 on the first sample).
    pub dcgm_nvlink_bandwidth: Option<u64>,
    /// 1 when the vGPU license is held, 0 when not or where the GPU has no vGPU licensing
    /// (DCGM's `DCGM_FI_DEV_VGPU_LICENSE_STATUS`); `None` where NVML cannot say.
    pub vgpu_licensed: Option<u32>,
    /// From the second sample on, on GPUs with GPM.
    pub gpm: Option<Gpm>,
    /// `None` when the process list could not be read (so that a failure never looks idle).
    pub processes: Option<Vec<ProcessSample>>,
    /// `Some(true)` when MIG mode is on.
    pub mig_enabled: Option<bool>,
    pub mig_instances: Vec<MigInstance>,
}

/// One complete sample of every GPU, or the reason there is none.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// When the sample finished.
    pub taken_at: Instant,
    pub down: Option<DownReason>,
    pub driver_version: String,
    /// CUDA driver version as `major.minor`.
    pub cuda_version: String,
    pub gpus: Vec<GpuSample>,
}

impl Snapshot {
    pub fn down(reason: DownReason) -> Snapshot {
        Snapshot {
            taken_at: Instant::now(),
            down: Some(reason),
            driver_version: String::new(),
            cuda_version: String::new(),
            gpus: Vec::new(),
        }
    }
}
