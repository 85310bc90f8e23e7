//! The `gpu` collector: asks the backend worker for a sample and renders it. It never blocks the
//! scrape longer than the worker's wait, whatever the backend does.
//!
//! When `--backend=auto` found no amdgpu device at start and fell back to rocm-smi, the devices
//! may simply not be there yet (amdgpu loads after the exporter at boot, or is reloaded): the
//! collector then looks for them again from time to time and moves to sysfs once they appear.

use crate::backend::sysfs;
use crate::backend_worker::BackendWorker;
use crate::families;
use common::{CollectFuture, Collector};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub struct GpuCollector {
    worker: Mutex<Arc<BackendWorker>>,
    /// Set while on the rocm-smi fallback of `auto`; cleared once switched to sysfs.
    recheck: Mutex<Option<Recheck>>,
}

struct Recheck {
    sysfs: PathBuf,
    every: Duration,
    last: Instant,
    start_sysfs: Box<dyn Fn() -> BackendWorker + Send>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl GpuCollector {
    pub fn new(worker: BackendWorker) -> Self {
        GpuCollector {
            worker: Mutex::new(Arc::new(worker)),
            recheck: Mutex::new(None),
        }
    }

    /// The rocm-smi fallback of `auto`: every `every`, a scrape looks for amdgpu devices under
    /// `sysfs` and, once there are some, replaces `worker` with `start_sysfs()` for good. The
    /// old worker's thread ends after its current run (rocm-smi keeps its timeout).
    pub fn falling_back(
        worker: BackendWorker,
        sysfs: impl Into<PathBuf>,
        every: Duration,
        start_sysfs: impl Fn() -> BackendWorker + Send + 'static,
    ) -> Self {
        GpuCollector {
            worker: Mutex::new(Arc::new(worker)),
            recheck: Mutex::new(Some(Recheck {
                sysfs: sysfs.into(),
                every,
                last: Instant::now(),
                start_sysfs: Box::new(start_sysfs),
            })),
        }
    }

    fn current(&self) -> Arc<BackendWorker> {
        let mut recheck = lock(&self.recheck);
        if let Some(r) = recheck.as_mut() {
            if r.last.elapsed() >= r.every {
                r.last = Instant::now();
                // A few small PCI attributes (uevent, vendor) of the DRM cards present, which
                // are not amdgpu's: they do not wake or wait for a GPU.
                let found = sysfs::find_cards(&r.sysfs).len();
                if found > 0 {
                    common::log::info(
                        "amdgpu devices appeared in sysfs; switching from rocm-smi to sysfs",
                        &[("gpus", &found.to_string())],
                    );
                    *lock(&self.worker) = Arc::new((r.start_sysfs)());
                    *recheck = None;
                }
            }
        }
        drop(recheck);
        lock(&self.worker).clone()
    }
}

impl Collector for GpuCollector {
    fn collect(&self) -> CollectFuture<'_> {
        Box::pin(async move {
            let worker = self.current();
            let reading = worker.read().await;
            Ok(families::render(worker.backend(), &reading, Instant::now()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::rocm_smi::RocmSmiBackend;
    use crate::backend::sysfs::SysfsBackend;
    use crate::backend_worker::Refresh;
    use common::testing::copy_tree;
    use common::MetricFamily;
    use std::path::Path;

    fn backend_of(families: &[MetricFamily]) -> String {
        let info = families
            .iter()
            .find(|f| f.name == "rocm_backend_info")
            .unwrap();
        let labels = &info.samples[0].labels;
        labels
            .iter()
            .find(|(k, _)| k == "backend")
            .unwrap()
            .1
            .clone()
    }

    #[tokio::test]
    async fn auto_moves_to_sysfs_when_amdgpu_devices_appear() {
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let root = std::env::temp_dir().join(format!("rocm-auto-recheck-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        let rocm_smi = BackendWorker::start(
            RocmSmiBackend::new("/nonexistent/rocm-smi", Duration::from_secs(1)),
            Duration::from_secs(2),
            Refresh::Wait,
        );
        let sysfs_root = root.clone();
        let collector = GpuCollector::falling_back(rocm_smi, &root, Duration::ZERO, move || {
            BackendWorker::start(
                SysfsBackend::new(&sysfs_root, fixtures.join("proc")),
                Duration::from_secs(2),
                Refresh::Wait,
            )
        });
        assert_eq!(backend_of(&collector.collect().await.unwrap()), "rocm-smi");

        // amdgpu loads: its cards show up in sysfs.
        copy_tree(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sysfs/dgpu"),
            &root,
        );
        let after = collector.collect().await.unwrap();
        assert_eq!(backend_of(&after), "sysfs");
        assert!(after
            .iter()
            .any(|f| f.name == "gpu_up" && f.samples.iter().any(|s| s.value == 1.0)));
        assert!(lock(&collector.recheck).is_none(), "switched for good");
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[tokio::test]
    async fn auto_stays_on_rocm_smi_between_checks() {
        let root = std::env::temp_dir().join(format!("rocm-auto-wait-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        copy_tree(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sysfs/dgpu"),
            &root,
        );
        let rocm_smi = BackendWorker::start(
            RocmSmiBackend::new("/nonexistent/rocm-smi", Duration::from_secs(1)),
            Duration::from_secs(2),
            Refresh::Wait,
        );
        let sysfs_root = root.clone();
        let collector =
            GpuCollector::falling_back(rocm_smi, &root, Duration::from_secs(3600), move || {
                BackendWorker::start(
                    SysfsBackend::new(&sysfs_root, "/proc"),
                    Duration::from_secs(2),
                    Refresh::Wait,
                )
            });
        // Cards are there, but the next look is an hour away.
        assert_eq!(backend_of(&collector.collect().await.unwrap()), "rocm-smi");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
