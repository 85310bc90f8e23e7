//! The processes on one GPU: compute and graphics lists merged by PID, their utilisation since
//! the last one seen, and their names (cached while the PID runs).

use super::calls::Calls;
use crate::snapshot::ProcessSample;
use nvml_wrapper::enums::device::UsedGpuMemory;
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::{Device, Nvml};
use std::collections::{BTreeMap, HashMap};

pub(super) fn read_processes(
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
