//! Takes one sample of every GPU of a session and keeps what must last from one sample to the
//! next (unsupported functions, process names, the previous GPM and NVLink readings); decides
//! what a lost GPU or a fatal error does to the sample.

use super::calls::{count_error, Calls, ErrorCounts};
use super::gpu::{dcgm_nvlink_bandwidth, now_us, read_gpm, read_gpu};
use super::mig::{read_mig, read_mig_gpm};
use super::processes::read_processes;
use super::session::Session;
use crate::snapshot::GpuSample;
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::GpmSample;
use nvml_wrapper::Nvml;
use std::collections::{HashMap, HashSet};

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
