//! rocm-exporter: AMD GPUs and APUs (Radeon, Instinct, Ryzen AI Max "Strix Halo") for
//! Prometheus, read from amdgpu sysfs or rocm-smi. See README.md.

use common::cli::{CollectorSpec, ExporterSpec};
use common::AnyCollector;
use rocm_exporter::backend::rocm_smi::RocmSmiBackend;
use rocm_exporter::backend::sysfs::SysfsBackend;
use rocm_exporter::backend::{Choice, Source};
use rocm_exporter::backend_worker::{BackendWorker, Refresh};
use rocm_exporter::config::{self, Config};
use rocm_exporter::gpu_collector::GpuCollector;
use rocm_exporter::processes::ProcessesCollector;
use std::process::ExitCode;
use std::time::Duration;

static SPEC: ExporterSpec<Config> = ExporterSpec {
    name: "rocm-exporter",
    metric_prefix: "rocm_exporter",
    collector_metrics_prefix: "rocm_exporter",
    about: "Prometheus exporter for AMD GPUs and APUs: amdgpu sysfs or rocm-smi, hang-proof",
    default_port: 10472,
    collectors: &[
        CollectorSpec {
            name: "gpu",
            default_enabled: true,
            help: "GPU utilisation, memory per pool, power, temperatures, clocks, fans (gpu_*, amdgpu_*)",
            new: |config| AnyCollector::asynchronous(gpu_collector(config)),
        },
        CollectorSpec {
            name: "processes",
            default_enabled: true,
            help: "VRAM and GTT per process from /proc/*/fdinfo",
            new: |config| {
                AnyCollector::blocking(ProcessesCollector::new(
                    &config.procfs,
                    config.processes_max_series,
                ))
            },
        },
    ],
};

fn main() -> ExitCode {
    common::run(
        &SPEC,
        env!("CARGO_PKG_VERSION"),
        config::flags(),
        |settings, _| Config::from_settings(settings),
    )
}

/// How often `auto`, having fallen back to rocm-smi, looks for amdgpu devices in sysfs again.
const AUTO_RECHECK: Duration = Duration::from_secs(30);

/// Picks the backend (`auto`: sysfs where amdgpu devices are found) and starts its worker. On
/// the rocm-smi fallback of `auto`, the collector keeps looking for amdgpu devices in sysfs.
fn gpu_collector(config: &Config) -> GpuCollector {
    let source = config.backend.resolve(&config.sysfs);
    common::log::info("reading AMD GPUs", &[("backend", source.name())]);
    let worker = start_backend(config, source);
    if config.backend == Choice::Auto && source == Source::RocmSmi {
        let config = config.clone();
        return GpuCollector::falling_back(worker, config.sysfs.clone(), AUTO_RECHECK, move || {
            start_backend(&config, Source::Sysfs)
        });
    }
    GpuCollector::new(worker)
}

fn start_backend(config: &Config, source: Source) -> BackendWorker {
    match source {
        Source::Sysfs => BackendWorker::start(
            SysfsBackend::new(&config.sysfs, &config.procfs),
            config.scrape_wait(config.sysfs_timeout),
            Refresh::Wait,
        ),
        Source::RocmSmi => BackendWorker::start(
            RocmSmiBackend::new(&config.rocm_smi_path, config.rocm_smi_timeout),
            config.scrape_wait(config.rocm_smi_timeout),
            // rocm-smi takes seconds: scrapes never wait for it once there is a sample. A run
            // is killed at its timeout and reaped within the runner's 1 s grace; past that
            // (plus a margin) the worker itself is wedged.
            Refresh::Background {
                overdue: config.rocm_smi_timeout + Duration::from_secs(2),
            },
        ),
    }
}
