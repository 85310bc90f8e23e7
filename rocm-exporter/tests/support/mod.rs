//! How the end-to-end tests start rocm-exporter (the fake rocm-smi's switches cleared from the
//! environment, so only what a test sets reaches it) and compare its exposition with
//! `tests/golden/`. The harness itself is `common::testing`.

#![allow(dead_code)]

use common::testing::{assert_golden, golden_file, stable_exposition, ExporterProcess};
use std::path::{Path, PathBuf};
use std::process::Command;

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Starts the binary with `args` (plus a listen address on a free port) and `env`.
pub fn start(args: &[String], env: &[(&str, String)]) -> ExporterProcess {
    let mut command = Command::new(env!("CARGO_BIN_EXE_rocm-exporter"));
    command.args(args);
    for key in [
        "FAKE_ROCM_SMI_MODE",
        "FAKE_ROCM_SMI_MODE_FILE",
        "FAKE_ROCM_SMI_LOG",
    ] {
        command.env_remove(key);
    }
    command.envs(env.iter().map(|(k, v)| (k, v)));
    ExporterProcess::spawn(command)
}

/// Compares the stable lines of `body` with `tests/golden/<name>.prom`.
pub fn golden(name: &str, body: &str) {
    let path = golden_file(env!("CARGO_MANIFEST_DIR"), &format!("{name}.prom"));
    assert_golden(&path, &stable_exposition(body, &[]));
}
