//! Reads one sample of every GPU through nvml-wrapper. Runs only on the NVML worker thread.
//!
//! Each NVML function is called through [`Calls::call`], which keeps the rules in one place: a
//! function a GPU does not support (or a symbol the library lacks) is remembered and not asked
//! again until NVML is re-initialised; `GPU_IS_LOST` stops querying that GPU for this sample;
//! errors that mean the whole session is gone (driver reload) abort the sample so the worker
//! can re-initialise. Every error is counted by function and code.

use crate::snapshot::{
    Gpm, GpuIdentity, GpuSample, Memory, MigInstance, NvLink, Pcie, ProcessSample, RemappedRows,
};
use common::log;
use nvml_wrapper::enum_wrappers::device::{
    Clock, EccCounter, MemoryError, PerformancePolicy, TemperatureSensor,
};
use nvml_wrapper::enums::device::UsedGpuMemory;
use nvml_wrapper::enums::gpm::GpmMetricId;
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::gpm::gpm_metrics_get;
use nvml_wrapper::GpmSample;
use nvml_wrapper::{Device, Nvml};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsStr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Calls slower than this are logged at debug level, to find what makes a sample slow.
const SLOW_CALL: Duration = Duration::from_millis(1);

/// An initialised NVML with the identities of its GPUs.
pub struct Session {
    pub nvml: Arc<Nvml>,
    pub identities: Vec<Arc<GpuIdentity>>,
    pub driver_version: String,
    pub cuda_version: String,
}

/// Which optional parts to read (each costs NVML calls).
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    pub processes: bool,
    pub mig: bool,
}

/// State kept across samples of one session.
#[derive(Default)]
pub struct Reader {
    /// (GPU index, NVML function) pairs known not to work: not asked again.
    unsupported: HashSet<(u32, &'static str)>,
    /// Process names by PID; a PID keeps its name while it runs.
    process_names: HashMap<u32, String>,
    /// Per GPU, the newest process-utilisation timestamp seen, so NVML returns only newer ones.
    utilization_seen: HashMap<u32, u64>,
    /// Per GPU, the previous GPM sample (a raw NVML handle, freed by [`Reader::release`] or
    /// when the next one replaces it): GPM metrics are computed between two samples.
    /// Keyed by GPU index and, for a MIG GPU instance, its id.
    gpm_previous: HashMap<(u32, Option<u32>), usize>,
    /// Per GPU, the previous NVLink reading (KiB sent + received, µs timestamp), from which
    /// DCGM's NVLink bandwidth is computed.
    nvlink_previous: HashMap<u32, (u64, i64)>,
}

/// Errors counted over the exporter's life, by (function, error code).
pub type ErrorCounts = BTreeMap<(&'static str, &'static str), u64>;

const FIELD_MEMORY_TEMP: u32 = 82;
const FIELD_NVLINK_DATA_TX: u32 = 138;
const FIELD_NVLINK_DATA_RX: u32 = 139;
const FIELD_REMAPPED_COR: u32 = 142;
const FIELD_REMAPPED_UNC: u32 = 143;
const FIELD_REMAPPED_PENDING: u32 = 144;
const FIELD_REMAPPED_FAILURE: u32 = 145;
const FIELD_PCIE_TX_BYTES: u32 = 197;
const FIELD_PCIE_RX_BYTES: u32 = 198;
/// nvml.h: "A scopeId of UINT_MAX returns aggregate value summed up across all links".
const ALL_LINKS: u32 = u32::MAX;

/// The field values read in one `nvmlDeviceGetFieldValues` call: field id, scope, and the
/// name under which the field's own errors are counted and its lack of support remembered.
/// All ids are below 251, where nvml-wrapper's `FieldIdScheme` remaps nothing, so they are
/// passed to NVML as they are.
const FIELDS: [(u32, u32, &str); 9] = [
    (
        FIELD_MEMORY_TEMP,
        0,
        "nvmlDeviceGetFieldValues(MEMORY_TEMP)",
    ),
    (
        FIELD_NVLINK_DATA_TX,
        ALL_LINKS,
        "nvmlDeviceGetFieldValues(NVLINK_THROUGHPUT_DATA_TX)",
    ),
    (
        FIELD_NVLINK_DATA_RX,
        ALL_LINKS,
        "nvmlDeviceGetFieldValues(NVLINK_THROUGHPUT_DATA_RX)",
    ),
    (
        FIELD_REMAPPED_COR,
        0,
        "nvmlDeviceGetFieldValues(REMAPPED_COR)",
    ),
    (
        FIELD_REMAPPED_UNC,
        0,
        "nvmlDeviceGetFieldValues(REMAPPED_UNC)",
    ),
    (
        FIELD_REMAPPED_PENDING,
        0,
        "nvmlDeviceGetFieldValues(REMAPPED_PENDING)",
    ),
    (
        FIELD_REMAPPED_FAILURE,
        0,
        "nvmlDeviceGetFieldValues(REMAPPED_FAILURE)",
    ),
    (
        FIELD_PCIE_TX_BYTES,
        0,
        "nvmlDeviceGetFieldValues(PCIE_COUNT_TX_BYTES)",
    ),
    (
        FIELD_PCIE_RX_BYTES,
        0,
        "nvmlDeviceGetFieldValues(PCIE_COUNT_RX_BYTES)",
    ),
];

const GRID_LICENSE: &str = "nvmlDeviceGetGridLicensableFeatures_v4";

/// Loads the library (the system's `libnvidia-ml.so.1` unless a path is given), initialises
/// NVML and reads what does not change while the driver stays loaded.
pub fn open_session(
    library: Option<&OsStr>,
    errors: &mut ErrorCounts,
) -> Result<Session, NvmlError> {
    let mut builder = Nvml::builder();
    if let Some(path) = library {
        builder.lib_path(path);
    }
    let nvml = builder.init()?;
    // nvml-wrapper's Drop calls nvmlShutdown unchecked and panics when the library lacks it;
    // such a library is refused (and leaked rather than dropped).
    if let Err(e) = nvml.lib().nvmlShutdown.as_ref() {
        let message = format!("nvmlShutdown: {e}");
        std::mem::forget(nvml);
        return Err(NvmlError::FailedToLoadSymbol(message));
    }
    let driver_version = nvml.sys_driver_version().unwrap_or_default();
    let cuda_version = nvml
        .sys_cuda_driver_version()
        .map(|v| {
            format!(
                "{}.{}",
                nvml_wrapper::cuda_driver_version_major(v),
                nvml_wrapper::cuda_driver_version_minor(v)
            )
        })
        .unwrap_or_default();
    let count = nvml.device_count()?;
    let mut identities = Vec::with_capacity(count as usize);
    for index in 0..count {
        identities.push(Arc::new(read_identity(&nvml, index, errors)));
    }
    Ok(Session {
        nvml: Arc::new(nvml),
        identities,
        driver_version,
        cuda_version,
    })
}

fn read_identity(nvml: &Nvml, index: u32, errors: &mut ErrorCounts) -> GpuIdentity {
    let mut identity = GpuIdentity {
        index,
        ..Default::default()
    };
    let mut unsupported = HashSet::new();
    let mut calls = Calls::new(index, &mut unsupported, errors);
    let Some(device) = calls.call("nvmlDeviceGetHandleByIndex_v2", || {
        nvml.device_by_index(index)
    }) else {
        return identity;
    };
    identity.uuid = calls
        .call("nvmlDeviceGetUUID", || device.uuid())
        .unwrap_or_default();
    identity.name = calls
        .call("nvmlDeviceGetName", || device.name())
        .unwrap_or_default();
    if let Some(pci) = calls.call("nvmlDeviceGetPciInfo_v3", || device.pci_info()) {
        identity.id = common::gpu::normalize_pci_address(&pci.bus_id);
        identity.pci_bus_id = pci.bus_id;
    }
    identity.minor_number = calls.call("nvmlDeviceGetMinorNumber", || device.minor_number());
    identity.vbios_version = calls
        .call("nvmlDeviceGetVbiosVersion", || device.vbios_version())
        .unwrap_or_default();
    // Without nvmlGpmSampleFree a GPM sample could not be freed (nvml-wrapper's Drop would panic).
    identity.gpm_supported = nvml.lib().nvmlGpmSampleFree.is_ok()
        && calls
            .call("nvmlGpmQueryDeviceSupport", || device.gpm_support())
            .unwrap_or(false);
    identity.supported_throttle_reasons = calls
        .call("nvmlDeviceGetSupportedClocksThrottleReasons", || {
            device.supported_throttle_reasons()
        })
        .map(|r| r.bits());
    identity.vgpu_licensing = calls
        .call(GRID_LICENSE, || grid_license(&device))
        .map(|l| l.supported);
    identity
}

impl Reader {
    /// Samples every GPU. An `Err` means the session is unusable (driver reloaded or gone).
    pub fn sample(
        &mut self,
        session: &Session,
        plan: Plan,
        errors: &mut ErrorCounts,
    ) -> Result<Vec<GpuSample>, NvmlError> {
        let nvml = &session.nvml;
        let count = match nvml.device_count() {
            Ok(count) => count,
            Err(e) => {
                count_error(errors, "nvmlDeviceGetCount_v2", &e);
                return Err(e);
            }
        };
        if count as usize != session.identities.len() {
            // A GPU appeared or vanished: identities are stale, start a new session.
            return Err(NvmlError::Unknown);
        }
        let mut gpus = Vec::with_capacity(session.identities.len());
        let mut seen_pids = HashSet::new();
        for identity in &session.identities {
            let mut calls = Calls::new(identity.index, &mut self.unsupported, errors);
            let mut gpu = GpuSample {
                identity: identity.clone(),
                ..Default::default()
            };
            let device = calls.call("nvmlDeviceGetHandleByIndex_v2", || {
                nvml.device_by_index(identity.index)
            });
            if let Some(device) = &device {
                read_gpu(&mut calls, device, &mut gpu);
                if let Some(link) = &gpu.nvlink {
                    let sum = link.transmit_kib.saturating_add(link.receive_kib);
                    let at = if link.timestamp_us != 0 {
                        link.timestamp_us
                    } else {
                        now_us()
                    };
                    let previous = self.nvlink_previous.insert(identity.index, (sum, at));
                    gpu.dcgm_nvlink_bandwidth = Some(dcgm_nvlink_bandwidth(previous, (sum, at)));
                }
                if identity.gpm_supported {
                    let key = (identity.index, None);
                    let previous = self.gpm_previous.remove(&key);
                    let (gpm, next) = read_gpm(
                        &mut calls,
                        nvml,
                        "nvmlGpmSampleGet",
                        || device.gpm_sample(),
                        previous,
                    );
                    gpu.gpm = gpm;
                    if let Some(next) = next {
                        self.gpm_previous.insert(key, next);
                    }
                }
                if plan.mig {
                    read_mig(&mut calls, device, &mut gpu);
                    if identity.gpm_supported {
                        read_mig_gpm(&mut calls, nvml, device, &mut gpu, &mut self.gpm_previous);
                    }
                }
            }
            let (lost, fatal) = (calls.lost, calls.fatal.take());
            if let Some(e) = fatal {
                return Err(e);
            }
            if lost {
                // Values read before the GPU was lost are not worth serving beside gpu_up 0.
                gpu = GpuSample {
                    identity: identity.clone(),
                    ..Default::default()
                };
            }
            gpu.up = device.is_some() && !lost;
            if plan.processes && gpu.up {
                if let Some(device) = &device {
                    let mut calls = Calls::new(identity.index, &mut self.unsupported, errors);
                    let processes = read_processes(
                        &mut calls,
                        nvml,
                        device,
                        &mut self.process_names,
                        self.utilization_seen.entry(identity.index).or_default(),
                    );
                    if let Some(e) = calls.fatal.take() {
                        return Err(e);
                    }
                    if calls.lost {
                        // The rule above: nothing of this sample is served beside gpu_up 0.
                        gpu = GpuSample {
                            identity: identity.clone(),
                            ..Default::default()
                        };
                    } else {
                        if let Some(list) = &processes {
                            seen_pids.extend(list.iter().map(|p| p.pid));
                        }
                        gpu.processes = processes;
                    }
                }
            }
            gpus.push(gpu);
        }
        // Forget names of processes that have exited, so the cache cannot grow without bound.
        self.process_names.retain(|pid, _| seen_pids.contains(pid));
        Ok(gpus)
    }
}

impl Reader {
    /// Frees what the reader holds inside NVML; call before the session shuts NVML down.
    pub fn release(&mut self, nvml: &Nvml) {
        for (_, raw) in self.gpm_previous.drain() {
            // SAFETY: the handle came from `into_handle` on this NVML and was not freed since.
            drop(unsafe { GpmSample::from_handle(nvml, raw as _) });
        }
    }
}

const GPM_METRICS: [GpmMetricId; 7] = [
    GpmMetricId::GraphicsUtil,
    GpmMetricId::SmUtil,
    GpmMetricId::SmOccupancy,
    GpmMetricId::AnyTensorUtil,
    GpmMetricId::DramBwUtil,
    GpmMetricId::PcieTxPerSec,
    GpmMetricId::PcieRxPerSec,
];

/// Takes a GPM sample and computes the metrics since `previous`. Returns the metrics (none on
/// the first sample) and the new sample's handle, to be kept for the next call.
fn read_gpm<'nvml>(
    calls: &mut Calls,
    nvml: &'nvml Nvml,
    function: &'static str,
    take: impl FnOnce() -> Result<GpmSample<'nvml>, NvmlError>,
    previous: Option<usize>,
) -> (Option<Gpm>, Option<usize>) {
    // SAFETY: handles in `previous` come from `into_handle` on this NVML and are freed once,
    // when this value drops.
    let previous = previous.map(|raw| unsafe { GpmSample::from_handle(nvml, raw as _) });
    let Some(current) = calls.call(function, take) else {
        return (None, None);
    };
    let gpm = previous.and_then(|previous| {
        let results = calls.call("nvmlGpmMetricsGet", || {
            gpm_metrics_get(nvml, &previous, &current, &GPM_METRICS)
        })?;
        let value = |i: usize| {
            results
                .get(i)
                .and_then(|r| r.as_ref().ok())
                .map(|r| r.value)
        };
        const MIB: f64 = 1024.0 * 1024.0;
        Some(Gpm {
            graphics_active: value(0).map(|p| p / 100.0),
            sm_active: value(1).map(|p| p / 100.0),
            sm_occupancy: value(2).map(|p| p / 100.0),
            tensor_active: value(3).map(|p| p / 100.0),
            dram_active: value(4).map(|p| p / 100.0),
            pcie_transmit_bytes_per_second: value(5).map(|v| v * MIB),
            pcie_receive_bytes_per_second: value(6).map(|v| v * MIB),
        })
    });
    (gpm, Some(current.into_handle() as usize))
}

fn read_gpu(calls: &mut Calls, device: &Device, gpu: &mut GpuSample) {
    if let Some(u) = calls.call("nvmlDeviceGetUtilizationRates", || {
        device.utilization_rates()
    }) {
        gpu.utilization_percent = Some(u.gpu);
        gpu.memory_utilization_percent = Some(u.memory);
    }
    gpu.memory = memory(calls, device, "nvmlDeviceGetMemoryInfo_v2");
    gpu.temperature_celsius = calls.call("nvmlDeviceGetTemperature", || {
        device.temperature(TemperatureSensor::Gpu)
    });
    gpu.power_milliwatts = calls.call("nvmlDeviceGetPowerUsage", || device.power_usage());
    gpu.energy_millijoules = calls.call("nvmlDeviceGetTotalEnergyConsumption", || {
        device.total_energy_consumption()
    });
    gpu.power_limit_milliwatts = calls.call("nvmlDeviceGetPowerManagementLimit", || {
        device.power_management_limit()
    });
    gpu.enforced_power_limit_milliwatts = calls.call("nvmlDeviceGetEnforcedPowerLimit", || {
        device.enforced_power_limit()
    });
    gpu.encoder_percent = calls
        .call("nvmlDeviceGetEncoderUtilization", || {
            device.encoder_utilization()
        })
        .map(|u| u.utilization);
    gpu.decoder_percent = calls
        .call("nvmlDeviceGetDecoderUtilization", || {
            device.decoder_utilization()
        })
        .map(|u| u.utilization);
    // Support differs by argument (a GPU may lack the video clock only), so each argument is
    // its own entry in the not-supported cache.
    for (name, function, clock) in [
        (
            "graphics",
            "nvmlDeviceGetClockInfo(GRAPHICS)",
            Clock::Graphics,
        ),
        ("sm", "nvmlDeviceGetClockInfo(SM)", Clock::SM),
        ("memory", "nvmlDeviceGetClockInfo(MEM)", Clock::Memory),
        ("video", "nvmlDeviceGetClockInfo(VIDEO)", Clock::Video),
    ] {
        if let Some(mhz) = calls.call(function, || device.clock_info(clock)) {
            gpu.clocks_mhz.push((name, mhz));
        }
    }
    if let Some(fans) = calls.call("nvmlDeviceGetNumFans", || device.num_fans()) {
        for fan in 0..fans {
            if let Some(pct) = calls.call("nvmlDeviceGetFanSpeed_v2", || device.fan_speed(fan)) {
                gpu.fan_speed_percent.push((fan, pct));
            }
        }
    }
    gpu.performance_state = calls
        .call("nvmlDeviceGetPerformanceState", || {
            device.performance_state()
        })
        .map(|p| p.as_c());
    if gpu.identity.supported_throttle_reasons.is_some() {
        gpu.throttle_reasons = calls
            .call("nvmlDeviceGetCurrentClocksThrottleReasons", || {
                device.current_throttle_reasons()
            })
            .map(|r| r.bits());
    }
    for (name, function, policy) in [
        (
            "power",
            "nvmlDeviceGetViolationStatus(POWER)",
            PerformancePolicy::Power,
        ),
        (
            "thermal",
            "nvmlDeviceGetViolationStatus(THERMAL)",
            PerformancePolicy::Thermal,
        ),
        (
            "sync_boost",
            "nvmlDeviceGetViolationStatus(SYNC_BOOST)",
            PerformancePolicy::SyncBoost,
        ),
        (
            "board_limit",
            "nvmlDeviceGetViolationStatus(BOARD_LIMIT)",
            PerformancePolicy::BoardLimit,
        ),
        (
            "low_utilization",
            "nvmlDeviceGetViolationStatus(LOW_UTILIZATION)",
            PerformancePolicy::LowUtilization,
        ),
        (
            "reliability",
            "nvmlDeviceGetViolationStatus(RELIABILITY)",
            PerformancePolicy::Reliability,
        ),
    ] {
        if let Some(v) = calls.call(function, || device.violation_status(policy)) {
            gpu.violation_ns.push((name, v.violation_time));
        }
    }
    gpu.pcie = Pcie {
        link_generation: calls.call("nvmlDeviceGetCurrPcieLinkGeneration", || {
            device.current_pcie_link_gen()
        }),
        link_width: calls.call("nvmlDeviceGetCurrPcieLinkWidth", || {
            device.current_pcie_link_width()
        }),
        max_link_generation: calls.call("nvmlDeviceGetMaxPcieLinkGeneration", || {
            device.max_pcie_link_gen()
        }),
        max_link_width: calls.call("nvmlDeviceGetMaxPcieLinkWidth", || {
            device.max_pcie_link_width()
        }),
        replay_errors: calls.call("nvmlDeviceGetPcieReplayCounter", || {
            device.pcie_replay_counter()
        }),
        ..Default::default()
    };
    gpu.ecc_enabled = calls
        .call("nvmlDeviceGetEccMode", || device.is_ecc_enabled())
        .map(|m| m.currently_enabled);
    if gpu.ecc_enabled == Some(true) {
        for (counter, out, functions) in [
            (
                EccCounter::Volatile,
                &mut gpu.ecc_volatile,
                [
                    "nvmlDeviceGetTotalEccErrors(CORRECTED,VOLATILE)",
                    "nvmlDeviceGetTotalEccErrors(UNCORRECTED,VOLATILE)",
                ],
            ),
            (
                EccCounter::Aggregate,
                &mut gpu.ecc_aggregate,
                [
                    "nvmlDeviceGetTotalEccErrors(CORRECTED,AGGREGATE)",
                    "nvmlDeviceGetTotalEccErrors(UNCORRECTED,AGGREGATE)",
                ],
            ),
        ] {
            for ((name, kind), function) in [
                ("corrected", MemoryError::Corrected),
                ("uncorrected", MemoryError::Uncorrected),
            ]
            .into_iter()
            .zip(functions)
            {
                if let Some(n) = calls.call(function, || device.total_ecc_errors(kind, counter)) {
                    out.push((name, n));
                }
            }
        }
    }
    gpu.vgpu_licensed = match gpu.identity.vgpu_licensing {
        // No vGPU licensing on this GPU: DCGM reports 0, and NVML is not asked again.
        Some(false) => Some(0),
        Some(true) => calls
            .call(GRID_LICENSE, || grid_license(device))
            .and_then(|l| l.vgpu_state)
            .map(|state| u32::from(state > 0)),
        None => None,
    };
    read_fields(calls, device, gpu);
}

/// DCGM's `DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL` (DcgmCacheManager::ReadAndCacheNvLinkBandwidth):
/// the KiB sent and received over all links since the previous reading, per second, divided by
/// 1000 and truncated; 0 on the first reading, when the counters are 0 or when no time passed.
/// Where DCGM would publish a negative rate (counters reset), 0.
fn dcgm_nvlink_bandwidth(previous: Option<(u64, i64)>, (sum, at): (u64, i64)) -> u64 {
    let Some((previous_sum, previous_at)) = previous else {
        return 0;
    };
    let seconds = (at - previous_at) as f64 / 1e6;
    if sum == 0 || seconds <= 0.0 || sum < previous_sum {
        return 0;
    }
    ((sum - previous_sum) as f64 / seconds / 1000.0) as u64
}

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or_default()
}

/// What nvmlDeviceGetGridLicensableFeatures says about vGPU licensing.
struct GridLicense {
    /// `isGridLicenseSupported`.
    supported: bool,
    /// `featureState` of the vGPU feature (non-zero: licensed), if the GPU lists it.
    vgpu_state: Option<u32>,
}

/// nvml.h's `nvmlGridLicenseExpiry_t`.
#[repr(C)]
#[derive(Clone, Copy)]
struct GridLicenseExpiry {
    year: u32,
    month: u16,
    day: u16,
    hour: u16,
    min: u16,
    sec: u16,
    status: u8,
}

/// nvml.h's `nvmlGridLicensableFeature_t` (v4, with the expiry).
#[repr(C)]
#[derive(Clone, Copy)]
struct GridLicensableFeature {
    feature_code: i32,
    feature_state: u32,
    license_info: [std::ffi::c_char; 128],
    product_name: [std::ffi::c_char; 128],
    feature_enabled: u32,
    license_expiry: GridLicenseExpiry,
}

/// nvml.h's `nvmlGridLicensableFeatures_t` (NVML_GRID_LICENSE_FEATURE_MAX_COUNT = 3).
#[repr(C)]
struct GridLicensableFeatures {
    is_grid_license_supported: i32,
    licensable_features_count: u32,
    features: [GridLicensableFeature; 3],
}

const _: () = assert!(std::mem::size_of::<GridLicensableFeature>() == 284);
const _: () = assert!(std::mem::size_of::<GridLicensableFeatures>() == 860);

/// NVML_GRID_LICENSE_FEATURE_CODE_VGPU.
const GRID_FEATURE_VGPU: i32 = 1;

/// nvml-wrapper 0.13 does not wrap nvmlDeviceGetGridLicensableFeatures_v4 (the function
/// nvml.h's `nvmlDeviceGetGridLicensableFeatures` names, which DCGM calls).
fn grid_license(device: &Device) -> Result<GridLicense, NvmlError> {
    let f = device
        .nvml()
        .lib()
        .nvmlDeviceGetGridLicensableFeatures_v4
        .as_ref()
        .map_err(|e| NvmlError::FailedToLoadSymbol(e.to_string()))?;
    // SAFETY: the struct is plain integers, for which all zero bits are a valid value.
    let mut raw: GridLicensableFeatures = unsafe { std::mem::zeroed() };
    // SAFETY: a valid device handle and a struct with nvmlGridLicensableFeatures_t's layout.
    let code = unsafe {
        f(
            device.handle(),
            &mut raw as *mut GridLicensableFeatures as *mut _,
        )
    };
    if code != 0 {
        return Err(NvmlError::from(code));
    }
    let count = (raw.licensable_features_count as usize).min(raw.features.len());
    Ok(GridLicense {
        supported: raw.is_grid_license_supported != 0,
        vgpu_state: raw.features[..count]
            .iter()
            .find(|f| f.feature_code == GRID_FEATURE_VGPU)
            .map(|f| f.feature_state),
    })
}

/// Memory in bytes: `nvmlDeviceGetMemoryInfo_v2` (with the reserved part), or on drivers older
/// than R510, which lack it, the v1 function nvml-wrapper does not wrap (used then includes
/// the reserved memory, which is unknown).
fn memory(calls: &mut Calls, device: &Device, function: &'static str) -> Option<Memory> {
    let lib = device.nvml().lib();
    if lib.nvmlDeviceGetMemoryInfo_v2.is_ok() {
        return calls
            .call(function, || device.memory_info())
            .map(|m| Memory {
                total: m.total,
                reserved: Some(m.reserved),
                free: m.free,
                used: m.used,
            });
    }
    /// `nvmlMemory_t`: three unsigned long longs.
    #[repr(C)]
    #[derive(Default)]
    struct MemoryV1 {
        total: u64,
        free: u64,
        used: u64,
    }
    let v1 = if function.ends_with("(MIG)") {
        "nvmlDeviceGetMemoryInfo(MIG)"
    } else {
        "nvmlDeviceGetMemoryInfo"
    };
    calls
        .call(v1, || {
            let f = lib
                .nvmlDeviceGetMemoryInfo
                .as_ref()
                .map_err(|e| NvmlError::FailedToLoadSymbol(e.to_string()))?;
            let mut m = MemoryV1::default();
            // SAFETY: a valid device handle and a struct with nvmlMemory_t's layout.
            let code = unsafe { f(device.handle(), &mut m as *mut MemoryV1 as *mut _) };
            match code {
                0 => Ok(m),
                e => Err(NvmlError::from(e)),
            }
        })
        .map(|m| Memory {
            total: m.total,
            reserved: None,
            free: m.free,
            used: m.used,
        })
}

/// Memory temperature, NVLink and PCIe byte counters and remapped rows come from one
/// field-values call (the PCIe throughput call would block for 20 ms per direction). Each field
/// answers with its own return code: a field the GPU does not support is counted once and left
/// out of later calls, like an unsupported function; when none is left, no call is made.
fn read_fields(calls: &mut Calls, device: &Device, gpu: &mut GpuSample) {
    let wanted: Vec<&(u32, u32, &'static str)> = FIELDS
        .iter()
        .filter(|(_, _, name)| !calls.is_unsupported(name))
        .collect();
    if wanted.is_empty() {
        return;
    }
    let Some(values) = calls.call("nvmlDeviceGetFieldValues", || field_values(device, &wanted))
    else {
        return;
    };
    let mut remapped = RemappedRows::default();
    let (mut nvlink_tx, mut nvlink_rx) = (None, None);
    for (&&(id, _, name), raw) in wanted.iter().zip(&values) {
        let v = match field_u64(raw) {
            Ok(v) => v,
            Err(e) => {
                // The field id and scope never change, so a field NVML calls invalid stays so.
                let invalid = matches!(e, NvmlError::InvalidArg);
                calls.record(name, e);
                if invalid {
                    calls.mark_unsupported(name);
                }
                continue;
            }
        };
        match id {
            FIELD_MEMORY_TEMP => gpu.memory_temperature_celsius = Some(v),
            FIELD_NVLINK_DATA_TX => nvlink_tx = Some((v, raw.timestamp)),
            FIELD_NVLINK_DATA_RX => nvlink_rx = Some((v, raw.timestamp)),
            FIELD_REMAPPED_COR => remapped.correctable = Some(v),
            FIELD_REMAPPED_UNC => remapped.uncorrectable = Some(v),
            FIELD_REMAPPED_PENDING => remapped.pending = Some(v),
            FIELD_REMAPPED_FAILURE => remapped.failure = Some(v),
            FIELD_PCIE_TX_BYTES => gpu.pcie.transmit_bytes = Some(v),
            FIELD_PCIE_RX_BYTES => gpu.pcie.receive_bytes = Some(v),
            _ => {}
        }
    }
    gpu.remapped_rows = remapped;
    // DCGM needs both directions, and takes the later of the two timestamps.
    if let (Some((tx, tx_at)), Some((rx, rx_at))) = (nvlink_tx, nvlink_rx) {
        gpu.nvlink = Some(NvLink {
            transmit_kib: tx,
            receive_kib: rx,
            timestamp_us: tx_at.max(rx_at),
        });
    }
}

/// nvml.h's `nvmlValue_t`.
#[repr(C)]
#[derive(Clone, Copy)]
union RawValue {
    double: f64,
    unsigned_int: u32,
    /// C `unsigned long`: 64 bits on Linux (LP64), where NVML runs.
    unsigned_long: u64,
    unsigned_long_long: u64,
    signed_long_long: i64,
    signed_int: i32,
    unsigned_short: u16,
}

/// nvml.h's `nvmlFieldValue_t`. nvml-wrapper's `field_values_for` leaves `scopeId` at 0, and
/// the NVLink counters need `UINT_MAX` (all links), so the call is made here.
#[repr(C)]
#[derive(Clone, Copy)]
struct RawFieldValue {
    field_id: u32,
    scope_id: u32,
    timestamp: i64,
    latency_usec: i64,
    value_type: u32,
    nvml_return: u32,
    value: RawValue,
}

const _: () = assert!(std::mem::size_of::<RawFieldValue>() == 40);

fn field_values(
    device: &Device,
    fields: &[&(u32, u32, &'static str)],
) -> Result<Vec<RawFieldValue>, NvmlError> {
    let f = device
        .nvml()
        .lib()
        .nvmlDeviceGetFieldValues
        .as_ref()
        .map_err(|e| NvmlError::FailedToLoadSymbol(e.to_string()))?;
    let mut values: Vec<RawFieldValue> = fields
        .iter()
        .map(|&&(field_id, scope_id, _)| RawFieldValue {
            field_id,
            scope_id,
            timestamp: 0,
            latency_usec: 0,
            value_type: 0,
            nvml_return: 0,
            value: RawValue {
                unsigned_long_long: 0,
            },
        })
        .collect();
    // SAFETY: a valid device handle and `values.len()` structs with nvmlFieldValue_t's layout.
    let code = unsafe {
        f(
            device.handle(),
            values.len() as i32,
            values.as_mut_ptr() as *mut _,
        )
    };
    match code {
        0 => Ok(values),
        e => Err(NvmlError::from(e)),
    }
}

/// The field's value, or its own error. Negative values mean nothing for these fields.
fn field_u64(raw: &RawFieldValue) -> Result<u64, NvmlError> {
    if raw.nvml_return != 0 {
        return Err(NvmlError::from(raw.nvml_return));
    }
    // SAFETY: `value_type` says which member NVML wrote; every member is plain data.
    let value = unsafe {
        match raw.value_type {
            0 => Some(raw.value.double)
                .filter(|v| *v >= 0.0)
                .map(|v| v as u64),
            1 => Some(u64::from(raw.value.unsigned_int)),
            2 => Some(raw.value.unsigned_long),
            3 => Some(raw.value.unsigned_long_long),
            4 => u64::try_from(raw.value.signed_long_long).ok(),
            5 => u64::try_from(raw.value.signed_int).ok(),
            6 => Some(u64::from(raw.value.unsigned_short)),
            other => return Err(NvmlError::UnexpectedVariant(other)),
        }
    };
    value.ok_or(NvmlError::UnexpectedVariant(raw.value_type))
}

fn read_mig(calls: &mut Calls, device: &Device, gpu: &mut GpuSample) {
    let Some(mode) = calls.call("nvmlDeviceGetMigMode", || device.mig_mode()) else {
        return;
    };
    gpu.mig_enabled = Some(mode.current == 1);
    if mode.current != 1 {
        return;
    }
    let Some(max) = calls.call("nvmlDeviceGetMaxMigDeviceCount", || {
        device.mig_device_count()
    }) else {
        return;
    };
    let lib = device.nvml().lib();
    for slot in 0..max {
        // Empty slots answer NOT_FOUND; that is the normal case, not an error worth counting.
        let mig = match device.mig_device_by_index(slot) {
            Ok(mig) => mig,
            Err(NvmlError::NotFound | NvmlError::InvalidArg) => continue,
            Err(e) => {
                calls.record("nvmlDeviceGetMigDeviceHandleByIndex", e);
                continue;
            }
        };
        // MIG devices get their own keys in the not-supported cache: what a MIG device lacks
        // says nothing about its parent.
        let name = calls
            .call("nvmlDeviceGetName(MIG)", || mig.name())
            .unwrap_or_default();
        // SAFETY: the handle comes from NVML and stays valid while `nvml` lives; the two
        // functions only write one integer each. nvml-wrapper does not wrap them.
        let raw_id = |f: &Result<unsafe extern "C" fn(_, *mut u32) -> _, _>| -> Option<u32> {
            let f = f.as_ref().ok()?;
            let mut id = 0u32;
            (unsafe { f(mig.handle(), &mut id) } == 0).then_some(id)
        };
        gpu.mig_instances.push(MigInstance {
            uuid: calls
                .call("nvmlDeviceGetUUID(MIG)", || mig.uuid())
                .unwrap_or_default(),
            gpu_instance_id: raw_id(&lib.nvmlDeviceGetGpuInstanceId),
            compute_instance_id: raw_id(&lib.nvmlDeviceGetComputeInstanceId),
            profile: mig_profile(&name),
            memory: memory(calls, &mig, "nvmlDeviceGetMemoryInfo_v2(MIG)"),
            gpm: None,
        });
    }
}

/// GPM per MIG GPU instance (what DCGM reports as DCGM_FI_PROF_* on MIG entities).
fn read_mig_gpm(
    calls: &mut Calls,
    nvml: &Nvml,
    device: &Device,
    gpu: &mut GpuSample,
    previous: &mut HashMap<(u32, Option<u32>), usize>,
) {
    let index = gpu.identity.index;
    let mut instances: Vec<u32> = gpu
        .mig_instances
        .iter()
        .filter_map(|m| m.gpu_instance_id)
        .collect();
    instances.sort_unstable();
    instances.dedup();
    for gi in &instances {
        let key = (index, Some(*gi));
        let (gpm, next) = read_gpm(
            calls,
            nvml,
            "nvmlGpmMigSampleGet",
            || device.gpm_mig_sample(*gi),
            previous.remove(&key),
        );
        for m in gpu
            .mig_instances
            .iter_mut()
            .filter(|m| m.gpu_instance_id == Some(*gi))
        {
            m.gpm = gpm.clone();
        }
        if let Some(next) = next {
            previous.insert(key, next);
        }
    }
    // Free the samples of GPU instances that no longer exist.
    let gone: Vec<(u32, Option<u32>)> = previous
        .keys()
        .filter(|(g, gi)| *g == index && gi.is_some_and(|gi| !instances.contains(&gi)))
        .copied()
        .collect();
    for key in gone {
        if let Some(raw) = previous.remove(&key) {
            // SAFETY: as in `Reader::release`.
            drop(unsafe { GpmSample::from_handle(nvml, raw as _) });
        }
    }
}

/// `NVIDIA H100 80GB HBM3 MIG 1g.10gb` → `1g.10gb`.
pub fn mig_profile(name: &str) -> String {
    match name.rfind("MIG ") {
        Some(at) => name[at + 4..].trim().to_string(),
        None => String::new(),
    }
}

fn read_processes(
    calls: &mut Calls,
    nvml: &Nvml,
    device: &Device,
    names: &mut HashMap<u32, String>,
    utilization_seen: &mut u64,
) -> Option<Vec<ProcessSample>> {
    let compute = calls.call("nvmlDeviceGetComputeRunningProcesses_v3", || {
        device.running_compute_processes()
    });
    let graphics = calls.call("nvmlDeviceGetGraphicsRunningProcesses_v3", || {
        device.running_graphics_processes()
    });
    if compute.is_none() && graphics.is_none() {
        return None;
    }
    let mut by_pid: BTreeMap<u32, ProcessSample> = BTreeMap::new();
    for (kind, list) in [("C", compute), ("G", graphics)] {
        for info in list.unwrap_or_default() {
            let memory = match info.used_gpu_memory {
                UsedGpuMemory::Used(bytes) => Some(bytes),
                UsedGpuMemory::Unavailable => None,
            };
            let entry = by_pid.entry(info.pid).or_insert_with(|| ProcessSample {
                pid: info.pid,
                kind,
                ..Default::default()
            });
            if entry.kind != kind {
                entry.kind = "C+G";
            }
            // The same context is listed under both kinds with the same memory; keep the larger.
            entry.used_memory_bytes = entry.used_memory_bytes.max(memory);
        }
    }
    // NVML answers NOT_FOUND when no process ran a kernel since `utilization_seen`.
    let utilization = calls
        .call("nvmlDeviceGetProcessUtilization", || {
            match device.process_utilization_stats(*utilization_seen) {
                Err(NvmlError::NotFound) => Ok(Vec::new()),
                other => other,
            }
        })
        .unwrap_or_default();
    for sample in utilization {
        *utilization_seen = (*utilization_seen).max(sample.timestamp);
        if let Some(p) = by_pid.get_mut(&sample.pid) {
            p.sm_percent = Some(sample.sm_util);
            p.memory_percent = Some(sample.mem_util);
            p.encoder_percent = Some(sample.enc_util);
            p.decoder_percent = Some(sample.dec_util);
        }
    }
    for p in by_pid.values_mut() {
        p.name = names
            .entry(p.pid)
            .or_insert_with(|| process_name(nvml, p.pid))
            .clone();
    }
    Some(by_pid.into_values().collect())
}

/// The executable's base name: NVML's answer, else `/proc/<pid>/comm`.
fn process_name(nvml: &Nvml, pid: u32) -> String {
    let full = nvml
        .sys_process_name(pid, 256)
        .ok()
        .filter(|n| !n.is_empty())
        .or_else(|| {
            // Any process can name itself with bytes that are not UTF-8: keep the name, lossy.
            std::fs::read(format!("/proc/{pid}/comm"))
                .ok()
                .map(|s| String::from_utf8_lossy(&s).trim().to_string())
        })
        .unwrap_or_default();
    match full.rsplit('/').next() {
        Some(base) if !base.is_empty() => base.to_string(),
        _ => "unknown".to_string(),
    }
}

/// The error-handling rules for the NVML calls on one GPU.
struct Calls<'a> {
    gpu: u32,
    unsupported: &'a mut HashSet<(u32, &'static str)>,
    errors: &'a mut ErrorCounts,
    lost: bool,
    fatal: Option<NvmlError>,
}

impl<'a> Calls<'a> {
    fn new(
        gpu: u32,
        unsupported: &'a mut HashSet<(u32, &'static str)>,
        errors: &'a mut ErrorCounts,
    ) -> Self {
        Calls {
            gpu,
            unsupported,
            errors,
            lost: false,
            fatal: None,
        }
    }

    fn call<T>(
        &mut self,
        function: &'static str,
        f: impl FnOnce() -> Result<T, NvmlError>,
    ) -> Option<T> {
        if self.lost || self.fatal.is_some() || self.unsupported.contains(&(self.gpu, function)) {
            return None;
        }
        let started = log::enabled(log::Level::Debug).then(Instant::now);
        let result = f();
        let took = started.map(|s| s.elapsed()).unwrap_or_default();
        if took >= SLOW_CALL {
            log::debug(
                "slow NVML call",
                &[
                    ("function", function),
                    ("gpu", &self.gpu.to_string()),
                    ("ms", &format!("{:.3}", took.as_secs_f64() * 1000.0)),
                ],
            );
        }
        match result {
            Ok(value) => Some(value),
            Err(e) => {
                self.record(function, e);
                None
            }
        }
    }

    fn is_unsupported(&self, function: &'static str) -> bool {
        self.unsupported.contains(&(self.gpu, function))
    }

    fn mark_unsupported(&mut self, function: &'static str) {
        self.unsupported.insert((self.gpu, function));
    }

    fn record(&mut self, function: &'static str, e: NvmlError) {
        count_error(self.errors, function, &e);
        match e {
            NvmlError::NotSupported
            | NvmlError::FailedToLoadSymbol(_)
            | NvmlError::FunctionNotFound => {
                self.unsupported.insert((self.gpu, function));
            }
            NvmlError::GpuLost => self.lost = true,
            e if ends_session(&e) => self.fatal = Some(e),
            _ => {}
        }
    }
}

/// Errors after which the NVML session must be re-initialised.
pub fn ends_session(e: &NvmlError) -> bool {
    matches!(
        e,
        NvmlError::LibRmVersionMismatch | NvmlError::Uninitialized | NvmlError::DriverNotLoaded
    )
}

pub fn count_error(errors: &mut ErrorCounts, function: &'static str, e: &NvmlError) {
    *errors.entry((function, error_code(e))).or_default() += 1;
}

/// A short, stable name for an NVML error, usable as a label value.
pub fn error_code(e: &NvmlError) -> &'static str {
    match e {
        NvmlError::Utf8Error(_) => "invalid_utf8",
        NvmlError::NulError(_) => "nul_in_string",
        NvmlError::LibloadingError(_) => "library_not_found",
        NvmlError::FailedToLoadSymbol(_) => "symbol_not_found",
        NvmlError::StringTooLong { .. } => "string_too_long",
        NvmlError::IncorrectBits(_) => "incorrect_bits",
        NvmlError::UnexpectedVariant(_) => "unexpected_value",
        NvmlError::Uninitialized => "uninitialized",
        NvmlError::InvalidArg => "invalid_argument",
        NvmlError::NotSupported => "not_supported",
        NvmlError::NoPermission => "no_permission",
        NvmlError::NotFound => "not_found",
        NvmlError::InsufficientSize(_) => "insufficient_size",
        NvmlError::DriverNotLoaded => "driver_not_loaded",
        NvmlError::Timeout => "timeout",
        NvmlError::LibraryNotFound => "library_not_found",
        NvmlError::FunctionNotFound => "function_not_found",
        NvmlError::GpuLost => "gpu_is_lost",
        NvmlError::ResetRequired => "reset_required",
        NvmlError::LibRmVersionMismatch => "driver_version_mismatch",
        NvmlError::InsufficientMemory => "insufficient_memory",
        NvmlError::NoData => "no_data",
        NvmlError::Unknown => "unknown",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mig_profiles_come_from_the_device_name() {
        assert_eq!(mig_profile("NVIDIA H100 80GB HBM3 MIG 1g.10gb"), "1g.10gb");
        assert_eq!(mig_profile("NVIDIA A100-SXM4-40GB MIG 3g.20gb "), "3g.20gb");
        assert_eq!(mig_profile("NVIDIA H100 80GB HBM3"), "");
    }

    #[test]
    fn nvlink_bandwidth_is_dcgms_rate_between_two_readings() {
        // First reading, counters at 0, no time passed, counters gone back: 0, as DCGM has it.
        assert_eq!(dcgm_nvlink_bandwidth(None, (5_000, 1_000_000)), 0);
        assert_eq!(dcgm_nvlink_bandwidth(Some((0, 0)), (0, 1_000_000)), 0);
        assert_eq!(dcgm_nvlink_bandwidth(Some((10, 7)), (5_000, 7)), 0);
        assert_eq!(
            dcgm_nvlink_bandwidth(Some((9_000, 0)), (5_000, 1_000_000)),
            0
        );
        // 1,999,999 KiB in 2 s: 999,999.5 KiB/s, / 1000 and truncated.
        assert_eq!(
            dcgm_nvlink_bandwidth(Some((1, 1_000_000)), (2_000_000, 3_000_000)),
            999
        );
    }

    #[test]
    fn a_field_value_carries_its_own_error_and_type() {
        let raw = |value_type: u32, nvml_return: u32, bits: u64| RawFieldValue {
            field_id: FIELD_MEMORY_TEMP,
            scope_id: 0,
            timestamp: 0,
            latency_usec: 0,
            value_type,
            nvml_return,
            value: RawValue {
                unsigned_long_long: bits,
            },
        };
        assert!(matches!(
            field_u64(&raw(3, 3, 7)),
            Err(NvmlError::NotSupported)
        ));
        assert!(matches!(field_u64(&raw(3, 15, 7)), Err(NvmlError::GpuLost)));
        assert_eq!(field_u64(&raw(3, 0, 1 << 40)).unwrap(), 1 << 40);
        assert_eq!(field_u64(&raw(0, 0, 68.5f64.to_bits())).unwrap(), 68);
        assert_eq!(field_u64(&raw(4, 0, 12)).unwrap(), 12);
        assert!(field_u64(&raw(4, 0, (-1i64) as u64)).is_err());
        assert!(matches!(
            field_u64(&raw(42, 0, 1)),
            Err(NvmlError::UnexpectedVariant(42))
        ));
    }

    #[test]
    fn unsupported_functions_are_asked_once_and_lost_gpus_stop_querying() {
        let mut unsupported = HashSet::new();
        let mut errors = ErrorCounts::new();
        let mut asked = 0;
        for _ in 0..3 {
            let mut calls = Calls::new(0, &mut unsupported, &mut errors);
            let got: Option<u32> = calls.call("nvmlDeviceGetFanSpeed_v2", || {
                asked += 1;
                Err(NvmlError::NotSupported)
            });
            assert_eq!(got, None);
        }
        assert_eq!(asked, 1);
        assert_eq!(errors[&("nvmlDeviceGetFanSpeed_v2", "not_supported")], 1);

        let mut calls = Calls::new(1, &mut unsupported, &mut errors);
        assert_eq!(calls.call("a", || Err::<u32, _>(NvmlError::GpuLost)), None);
        assert!(calls.lost);
        assert_eq!(
            calls.call("b", || Ok(1u32)),
            None,
            "no call after GPU_IS_LOST"
        );

        let mut calls = Calls::new(2, &mut unsupported, &mut errors);
        assert_eq!(
            calls.call("c", || Err::<u32, _>(NvmlError::LibRmVersionMismatch)),
            None
        );
        assert!(matches!(calls.fatal, Some(NvmlError::LibRmVersionMismatch)));
        // A transient error is counted but not cached.
        let mut calls = Calls::new(3, &mut unsupported, &mut errors);
        assert_eq!(calls.call("d", || Err::<u32, _>(NvmlError::Unknown)), None);
        assert_eq!(calls.call("d", || Ok(7u32)), Some(7));
    }
}
