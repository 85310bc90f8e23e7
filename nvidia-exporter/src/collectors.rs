//! The collectors the exporter registers with `common`, and the spec that registers them under
//! their names. Each one asks the NVML worker for the current sample (shared by all collectors
//! of one scrape) and renders its part of it.

use crate::dcgm_compat::{self, DcgmOptions};
use crate::nvml_worker::NvmlWorker;
use crate::options::Options;
use crate::{device, mig, processes, status, xid_events};
use common::cli::{CollectorSpec, Enabled, ExporterSpec};
use common::collector::{AnyCollector, CollectFuture, Collector};
use common::{CliOutcome, Settings};

pub static SPEC: ExporterSpec<Context> = ExporterSpec {
    name: "nvidia-exporter",
    metric_prefix: "nvidia_exporter",
    collector_metrics_prefix: "nvidia_exporter",
    about: "NVIDIA GPU metrics through NVML, with dcgm-exporter compatible names",
    default_port: 10471,
    collectors: &[
        CollectorSpec {
            name: "gpu",
            default_enabled: true,
            help: "NVML status, GPU core series, NVIDIA extras, DCGM_FI_* names",
            new: |c| {
                AnyCollector::asynchronous(Gpu {
                    worker: c.worker.clone(),
                    dcgm: c.dcgm.clone(),
                    xid_events: c.xid_events,
                    timeout_secs: c.timeout_secs,
                })
            },
        },
        CollectorSpec {
            name: "processes",
            default_enabled: true,
            help: "per-process GPU memory and utilisation (top N per GPU)",
            new: |c| {
                AnyCollector::asynchronous(Processes {
                    worker: c.worker.clone(),
                    top_n: c.top_n,
                })
            },
        },
        CollectorSpec {
            name: "mig",
            default_enabled: true,
            help: "MIG mode and per-instance memory",
            new: |c| {
                AnyCollector::asynchronous(Mig {
                    worker: c.worker.clone(),
                })
            },
        },
        CollectorSpec {
            name: "xid",
            default_enabled: true,
            help: "XID error counters from an NVML event thread",
            new: |c| {
                AnyCollector::asynchronous(Xid {
                    worker: c.worker.clone(),
                })
            },
        },
    ],
};

/// What the collectors are built from: the one NVML worker they all ask, and their options.
pub struct Context {
    worker: NvmlWorker,
    dcgm: Option<DcgmOptions>,
    xid_events: bool,
    timeout_secs: f64,
    top_n: usize,
}

impl Context {
    /// Reads the settings and starts the NVML worker, which reads only what the enabled
    /// collectors need.
    pub fn start(settings: &Settings, enabled: &Enabled) -> Result<Context, CliOutcome> {
        let options = Options::from_settings(settings, |name| enabled.contains(name))?;
        let timeout_secs = options.worker.timeout.as_secs_f64();
        let xid_events = options.worker.xid_events;
        let worker = NvmlWorker::start(options.worker)
            .map_err(|e| CliOutcome::Error(format!("cannot start the NVML worker: {e}")))?;
        Ok(Context {
            worker,
            dcgm: options.dcgm,
            xid_events,
            timeout_secs,
            top_n: options.top_n,
        })
    }
}

/// `gpu`: NVML status, the vendor-neutral core, the NVIDIA extras and the DCGM names.
pub struct Gpu {
    pub worker: NvmlWorker,
    pub dcgm: Option<DcgmOptions>,
    /// Whether XID events are watched (the DCGM XID family needs them).
    pub xid_events: bool,
    pub timeout_secs: f64,
}

impl Collector for Gpu {
    fn collect(&self) -> CollectFuture<'_> {
        Box::pin(async move {
            let served = self.worker.snapshot().await;
            let mut families = status::families(&served, &self.worker.stats(), self.timeout_secs);
            families.extend(device::families(&served.snapshot));
            if let Some(options) = &self.dcgm {
                let last_xid = if self.xid_events {
                    self.worker.xid.last_per_watched_gpu()
                } else {
                    Default::default()
                };
                families.extend(dcgm_compat::families(&served.snapshot, options, &last_xid));
            }
            Ok(families)
        })
    }
}

/// `processes`: per-process memory and utilisation, top N per GPU.
pub struct Processes {
    pub worker: NvmlWorker,
    pub top_n: usize,
}

impl Collector for Processes {
    fn collect(&self) -> CollectFuture<'_> {
        Box::pin(async move {
            let served = self.worker.snapshot().await;
            Ok(processes::families(&served.snapshot, self.top_n))
        })
    }
}

/// `mig`: MIG mode and per-instance memory.
pub struct Mig {
    pub worker: NvmlWorker,
}

impl Collector for Mig {
    fn collect(&self) -> CollectFuture<'_> {
        Box::pin(async move {
            let served = self.worker.snapshot().await;
            Ok(mig::families(&served.snapshot))
        })
    }
}

/// `xid`: XID error counters from the NVML event thread.
pub struct Xid {
    pub worker: NvmlWorker,
}

impl Collector for Xid {
    fn collect(&self) -> CollectFuture<'_> {
        Box::pin(async move {
            let served = self.worker.snapshot().await;
            let gpus: Vec<_> = served
                .snapshot
                .gpus
                .iter()
                .map(|g| g.identity.clone())
                .collect();
            Ok(xid_events::families(&self.worker.xid, &gpus))
        })
    }
}
