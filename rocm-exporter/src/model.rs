//! The one model both backends fill: what we know about each AMD GPU at one moment. A value a
//! backend could not read stays `None` (its series is left out), never 0.

use std::time::Instant;

/// Memory pools as amdgpu names them. On an APU `vram` is only the BIOS carve-out and `gtt` is
/// the system RAM the GPU really fills.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Pool {
    pub total_bytes: Option<f64>,
    pub used_bytes: Option<f64>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Memory {
    pub vram: Pool,
    pub vis_vram: Pool,
    pub gtt: Pool,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct PcieLink {
    pub speed_transfers_per_second: Option<f64>,
    pub width: Option<f64>,
    pub max_speed_transfers_per_second: Option<f64>,
    pub max_width: Option<f64>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Device {
    /// Normalised PCI address (`0000:c3:00.0`): the identity both backends agree on.
    pub id: String,
    /// DRM node name (`card1`), sysfs backend only.
    pub card: Option<String>,
    /// rocm-smi's own index (`card0` in its JSON), rocm-smi backend only.
    pub smi_index: Option<u32>,
    pub model: String,
    /// PCI device id, `0x1586`.
    pub device_id: Option<String>,
    pub revision: Option<String>,
    pub unique_id: Option<String>,
    pub gfx_version: Option<String>,
    pub is_apu: bool,
    /// `power/runtime_status`: `active`, `suspended`, ... (sysfs backend only).
    pub runtime_status: Option<String>,
    /// Whether any value could be read in this sample (or the device sleeps in runtime PM,
    /// which is healthy).
    pub answered: bool,
    /// Set when the values were carried over from an earlier read (a runtime-suspended GPU is
    /// not woken up): when they were taken.
    pub values_taken: Option<Instant>,

    pub busy_percent: Option<f64>,
    pub memory: Memory,
    /// (sensor, celsius): `edge`, `junction`, `memory`, `hbm0`...
    pub temperatures: Vec<(String, f64)>,
    pub temperatures_critical: Vec<(String, f64)>,
    /// hwmon `power1_label`: `PPT` on all but Van Gogh (`slowPPT`).
    pub power_sensor: String,
    pub power_average_watts: Option<f64>,
    pub power_input_watts: Option<f64>,
    pub power_cap_watts: Option<f64>,
    /// (clock, hertz): `sclk`, `mclk`, `fclk`, `socclk`...
    pub clocks_hz: Vec<(String, f64)>,
    pub fan_rpm: Option<f64>,
    /// Fan PWM duty, 0..1.
    pub fan_pwm_ratio: Option<f64>,
    /// (rail, volts): `vddgfx`, `vddnb`.
    pub voltages: Vec<(String, f64)>,
    pub pcie: PcieLink,
}

/// Whether a `power/runtime_status` means the GPU is (going) to sleep or waking up: any amdgpu
/// read would then wake it or wait for it, so its sensors are not read. `unsupported` (runtime
/// PM disabled: always powered) and `error` are read like `active`.
pub fn runtime_asleep(status: Option<&str>) -> bool {
    matches!(status, Some("suspended" | "suspending" | "resuming"))
}

/// A unique id as sysfs writes it (`%016llx`: 16 lower-case hex digits, no `0x`). rocm-smi
/// prints the same number as `0x...` without leading zeros; both are brought to the sysfs form
/// so that the label names the same GPU the same way. `None` for anything that is not such a
/// number (`N/A`, garbage, empty).
pub fn normalize_unique_id(text: &str) -> Option<String> {
    let t = text.trim();
    let hex = t
        .strip_prefix("0x")
        .or_else(|| t.strip_prefix("0X"))
        .unwrap_or(t);
    let value = u64::from_str_radix(hex, 16)
        .ok()
        .filter(|_| !hex.starts_with('+'))?;
    Some(format!("{value:016x}"))
}

/// Everything one collection produced.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Sorted by PCI address; the position is the `gpu` label, the same in both backends.
    pub devices: Vec<Device>,
    pub driver_version: String,
}

impl Snapshot {
    /// Sorts by PCI address and keeps one device per address (the lowest rocm-smi index): two
    /// entries with one address would give duplicate series, and Prometheus rejects the whole
    /// scrape for that.
    pub fn new(mut devices: Vec<Device>, driver_version: String) -> Self {
        devices.sort_by(|a, b| a.id.cmp(&b.id).then(a.smi_index.cmp(&b.smi_index)));
        devices.dedup_by(|later, first| later.id == first.id);
        Snapshot {
            devices,
            driver_version,
        }
    }
}

/// Why a collection failed: a closed set, so that `rocm_up{reason}` stays low-cardinality.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    /// rocm-smi is not installed (spawn ENOENT or exit 127).
    NotFound,
    /// rocm-smi runs but the amdgpu driver is not loaded (it still exits 0).
    DriverNotLoaded,
    /// rocm-smi cannot load librocm_smi64.
    LibraryMissing,
    /// No AMD GPU found.
    NoDevices,
    /// The collection did not finish within its timeout.
    Timeout,
    /// A collection is still running from an earlier scrape; no second one is started.
    Busy,
    /// A killed rocm-smi could not be reaped (D state); no new child until it is gone.
    Stuck,
    /// rocm-smi exited non-zero without usable output.
    ExitStatus,
    /// Garbage, truncated or unexpected output.
    BadOutput,
    /// rocm-smi could not be started for another reason (permissions...).
    SpawnFailed,
    /// The backend panicked: a bug of ours, reported rather than wedging the worker.
    Internal,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::NotFound => "not_found",
            Reason::DriverNotLoaded => "driver_not_loaded",
            Reason::LibraryMissing => "library_missing",
            Reason::NoDevices => "no_devices",
            Reason::Timeout => "timeout",
            Reason::Busy => "busy",
            Reason::Stuck => "stuck",
            Reason::ExitStatus => "exit_status",
            Reason::BadOutput => "bad_output",
            Reason::SpawnFailed => "spawn_failed",
            Reason::Internal => "internal_error",
        }
    }
}

/// A failed collection: the reason for the series, the message for the log.
#[derive(Clone, Debug, PartialEq)]
pub struct Failure {
    pub reason: Reason,
    pub message: String,
}

impl Failure {
    pub fn new(reason: Reason, message: impl Into<String>) -> Self {
        Failure {
            reason,
            message: message.into(),
        }
    }
}

/// A source of snapshots. `sample` may block (it reads files or runs a program); the
/// [`crate::backend_worker::BackendWorker`] runs it on its own thread under a deadline.
pub trait Backend: Send + 'static {
    /// The `backend` label and its worker thread's name (`<name>-worker`); the real backends give their
    /// [`crate::backend::Source`]'s, so each name is written once.
    fn name(&self) -> &'static str;
    fn sample(&mut self) -> Result<Snapshot, Failure>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_ids_take_the_sysfs_form() {
        assert_eq!(
            normalize_unique_id("0x2150e7d042a1124").as_deref(),
            Some("02150e7d042a1124")
        );
        assert_eq!(
            normalize_unique_id("0x79CCD55167A2124A").as_deref(),
            Some("79ccd55167a2124a")
        );
        assert_eq!(
            normalize_unique_id("3a1b2c3d4e5f6071\n").as_deref(),
            Some("3a1b2c3d4e5f6071")
        );
        for bad in ["N/A", "", "0x", "+12", "0x11112222333344445", "zz"] {
            assert_eq!(normalize_unique_id(bad), None, "{bad}");
        }
    }
}
