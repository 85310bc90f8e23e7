//! The collectors the exporter registers with `common`. Each one asks the NVML worker for the
//! current sample (shared by all collectors of one scrape) and renders its part of it.

use crate::dcgm_compat::{self, DcgmOptions};
use crate::nvml_worker::NvmlWorker;
use crate::{device, mig, processes, status, xid_events};
use common::collector::{CollectFuture, Collector};

/// `gpu`: NVML status, the vendor-neutral core, the NVIDIA extras and the DCGM names.
pub struct Gpu {
    pub worker: NvmlWorker,
    pub dcgm: Option<DcgmOptions>,
    /// Whether XID events are watched (the DCGM XID family needs them).
    pub xid_events: bool,
    pub timeout_secs: f64,
}

impl Collector for Gpu {
    fn name(&self) -> &'static str {
        "gpu"
    }
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
    fn name(&self) -> &'static str {
        "processes"
    }
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
    fn name(&self) -> &'static str {
        "mig"
    }
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
    fn name(&self) -> &'static str {
        "xid"
    }
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
