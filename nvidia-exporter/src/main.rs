//! nvidia-exporter: NVIDIA GPU metrics through NVML (nvml-wrapper), in our own names and in
//! dcgm-exporter's. All NVML calls run on one worker thread under a deadline; see
//! `nvml_worker.rs`.

mod collectors;
mod dcgm_compat;
mod device;
mod mig;
mod nvml;
mod nvml_worker;
mod options;
mod processes;
mod snapshot;
mod status;
mod xid_events;

/// Builds the fake libnvidia-ml for the unit tests that need a real NVML session.
#[cfg(test)]
#[path = "../tests/fake-nvml/compile.rs"]
mod fake_nvml;

use common::cli::{CollectorSpec, ExporterSpec};
use common::CliOutcome;
use std::process::ExitCode;

static SPEC: ExporterSpec = ExporterSpec {
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
        },
        CollectorSpec {
            name: "processes",
            default_enabled: true,
            help: "per-process GPU memory and utilisation (top N per GPU)",
        },
        CollectorSpec {
            name: "mig",
            default_enabled: true,
            help: "MIG mode and per-instance memory",
        },
        CollectorSpec {
            name: "xid",
            default_enabled: true,
            help: "XID error counters from an NVML event thread",
        },
    ],
};

fn main() -> ExitCode {
    common::run(
        &SPEC,
        env!("CARGO_PKG_VERSION"),
        options::args(),
        |settings, list| {
            let options = options::Options::from_settings(settings, |name| list.is_enabled(name))?;
            let timeout_secs = options.worker.timeout.as_secs_f64();
            let xid_events = options.worker.xid_events;
            let worker = nvml_worker::NvmlWorker::start(options.worker)
                .map_err(|e| CliOutcome::Error(format!("cannot start the NVML worker: {e}")))?;

            list.add(collectors::Gpu {
                worker: worker.clone(),
                dcgm: options.dcgm,
                xid_events,
                timeout_secs,
            });
            list.add(collectors::Processes {
                worker: worker.clone(),
                top_n: options.top_n,
            });
            list.add(collectors::Mig {
                worker: worker.clone(),
            });
            list.add(collectors::Xid { worker });
            Ok(())
        },
    )
}
