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

use std::process::ExitCode;

fn main() -> ExitCode {
    common::run(
        &collectors::SPEC,
        env!("CARGO_PKG_VERSION"),
        options::args(),
        collectors::Context::start,
    )
}
