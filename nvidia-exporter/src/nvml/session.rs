//! Opening an NVML session: loads the library, initialises NVML and reads what does not change
//! while the driver stays loaded (versions, and per GPU its identity and what it supports).

use super::calls::{Calls, ErrorCounts};
use super::ffi::{grid_license, GRID_LICENSE};
use crate::snapshot::GpuIdentity;
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::Nvml;
use std::collections::HashSet;
use std::ffi::OsStr;
use std::sync::Arc;

/// An initialised NVML with the identities of its GPUs.
pub struct Session {
    pub nvml: Arc<Nvml>,
    pub identities: Vec<Arc<GpuIdentity>>,
    pub driver_version: String,
    pub cuda_version: String,
}

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
