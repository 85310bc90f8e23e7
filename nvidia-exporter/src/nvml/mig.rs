//! MIG: whether MIG mode is on, each MIG device's identity, profile and memory, and GPM per
//! MIG GPU instance (freeing the GPM samples of instances that are gone).

use super::calls::Calls;
use super::gpu::{memory, read_gpm};
use crate::snapshot::{GpuSample, MigInstance};
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::GpmSample;
use nvml_wrapper::{Device, Nvml};
use std::collections::HashMap;

pub(super) fn read_mig(calls: &mut Calls, device: &Device, gpu: &mut GpuSample) {
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
pub(super) fn read_mig_gpm(
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
fn mig_profile(name: &str) -> String {
    match name.rfind("MIG ") {
        Some(at) => name[at + 4..].trim().to_string(),
        None => String::new(),
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
}
