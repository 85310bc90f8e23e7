//! How the end-to-end tests start llm-exporter and compare its exposition with
//! `tests/golden/` (`UPDATE_GOLDEN=1` rewrites the files). The harness itself is
//! `common::testing`.

#![allow(dead_code)]

use common::testing::{
    assert_golden, golden_file, mask_values, stable_exposition, ExporterProcess,
};

/// Starts the binary with `args` on a free loopback port and waits until it is ready.
pub fn start_exporter(args: &[String]) -> ExporterProcess {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ExporterProcess::start(env!("CARGO_BIN_EXE_llm-exporter"), &args, &[])
}

/// Families whose values change from run to run, left out of the golden files.
const VOLATILE: &[&str] = &["llm_upstream_poll_duration_seconds"];

/// Families whose values follow the clock: in the golden files as `<dynamic>`.
const DYNAMIC_VALUE: &[&str] = &["llm_model_expires_in_seconds"];

/// Compares the stable lines of `exposition` with `tests/golden/<name>`.
pub fn golden(name: &str, exposition: &str) {
    let stable = mask_values(&stable_exposition(exposition, VOLATILE), DYNAMIC_VALUE);
    assert_golden(&golden_file(env!("CARGO_MANIFEST_DIR"), name), &stable);
}
