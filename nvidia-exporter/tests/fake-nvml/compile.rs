//! Compiles the fake libnvidia-ml (`fake_nvml.c` next to this file) with the system C compiler
//! (`$CC`, else `cc`). Shared by the tests and the benchmark through `#[path]`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Builds `<out_dir>/libnvidia-ml.so.1` with the given `-D` flags and returns its path.
pub fn compile(out_dir: &Path, defines: &[&str]) -> PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fake-nvml/fake_nvml.c");
    std::fs::create_dir_all(out_dir).expect("cannot create the output directory");
    let out = out_dir.join("libnvidia-ml.so.1");
    // Several test binaries may build at once: build under a private name, then rename.
    let tmp = out_dir.join(format!("libnvidia-ml.so.1.{}", std::process::id()));
    let compiler = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let status = Command::new(&compiler)
        .args([
            "-shared", "-fPIC", "-O1", "-Wall", "-Wextra", "-Werror", "-pthread",
        ])
        // Keeps "once per process" state in the fake across nvml-wrapper's dlclose.
        .arg("-Wl,-z,nodelete")
        .args(defines)
        .arg("-o")
        .arg(&tmp)
        .arg(&source)
        .status()
        .unwrap_or_else(|e| panic!("cannot run the C compiler {compiler}: {e}"));
    assert!(status.success(), "building the fake libnvidia-ml failed");
    std::fs::rename(&tmp, &out).expect("cannot move the fake library into place");
    out
}
