//! Shared by the end-to-end tests: builds the fake libnvidia-ml from its C source and starts the
//! real exporter binary against it.
#![allow(dead_code)]

#[path = "../fake-nvml/compile.rs"]
mod compile;

use common::testing::{assert_golden, golden_file, stable_exposition, ExporterProcess};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

pub const BINARY: &str = env!("CARGO_BIN_EXE_nvidia-exporter");

/// Which build of the fake library.
#[derive(Clone, Copy)]
pub enum Fake {
    Full,
    /// Built without a few symbols, to prove a missing symbol costs only its own series.
    MissingSymbols,
    /// Built without nvmlShutdown, which nvml-wrapper's destructor calls unchecked.
    NoShutdown,
}

pub fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn scenario(name: &str) -> PathBuf {
    crate_dir().join(format!("tests/fake-nvml/scenarios/{name}.scn"))
}

/// The fake library, compiled once per test binary into the target's temporary directory.
pub fn fake_library(kind: Fake) -> PathBuf {
    static FULL: OnceLock<PathBuf> = OnceLock::new();
    static MISSING: OnceLock<PathBuf> = OnceLock::new();
    static NO_SHUTDOWN: OnceLock<PathBuf> = OnceLock::new();
    let dir =
        |variant: &str| Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("fake-nvml-{variant}"));
    match kind {
        Fake::Full => FULL
            .get_or_init(|| compile::compile(&dir("full"), &[]))
            .clone(),
        Fake::MissingSymbols => MISSING
            .get_or_init(|| {
                compile::compile(&dir("missing-symbols"), &["-DFAKE_NVML_MISSING_SYMBOLS"])
            })
            .clone(),
        Fake::NoShutdown => NO_SHUTDOWN
            .get_or_init(|| compile::compile(&dir("no-shutdown"), &["-DFAKE_NVML_NO_SHUTDOWN"]))
            .clone(),
    }
}

/// Starts the exporter on the fake library with a scenario, a fixed host name for the DCGM
/// label, and the given extra flags.
pub fn start(kind: Fake, scenario_name: &str, args: &[&str]) -> ExporterProcess {
    start_with_env(kind, scenario_name, args, &[])
}

/// [`start`] with extra environment variables.
pub fn start_with_env(
    kind: Fake,
    scenario_name: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> ExporterProcess {
    let library = fake_library(kind);
    let library_flag = format!("--nvml.library={}", library.display());
    let scenario = scenario(scenario_name);
    let mut all = vec![library_flag.as_str()];
    all.extend_from_slice(args);
    let mut envs = vec![
        ("FAKE_NVML_SCENARIO", scenario.to_str().unwrap()),
        ("NODE_NAME", "gpu-host-1"),
    ];
    envs.extend_from_slice(env);
    ExporterProcess::start(BINARY, &all, &envs)
}

/// Waits longer than the default `--nvml.min-interval`, so the next scrape takes a new sample.
pub fn next_sample() {
    std::thread::sleep(std::time::Duration::from_millis(650));
}

/// Families whose values change from run to run; checked by their own assertions.
pub const VOLATILE: &[&str] = &[
    "nvidia_exporter_nvml_sample_age_seconds",
    "nvidia_exporter_nvml_sample_duration_seconds",
    // How many samples were prefetched depends on the timing of the test's scrapes.
    "nvidia_exporter_nvml_samples_total",
    "nvidia_xid_last_timestamp_seconds",
];

/// Compares the stable lines of `text` with `tests/golden/<name>.prom`.
pub fn golden(name: &str, text: &str) {
    let path = golden_file(env!("CARGO_MANIFEST_DIR"), &format!("{name}.prom"));
    assert_golden(&path, &stable_exposition(text, VOLATILE));
}
