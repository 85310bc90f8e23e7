//! Records the git revision and the compiler version for `<exporter>_build_info`.
use std::process::Command;

fn main() {
    let revision = std::env::var("BUILD_REVISION").ok().or_else(|| {
        Command::new("git")
            .args(["rev-parse", "--short=12", "HEAD"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    });
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let rustc_version = Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .and_then(|v| v.split_whitespace().nth(1).map(str::to_string));
    println!(
        "cargo:rustc-env=BUILD_REVISION={}",
        revision.unwrap_or_else(|| "unknown".into())
    );
    println!(
        "cargo:rustc-env=BUILD_RUSTC_VERSION={}",
        rustc_version.unwrap_or_else(|| "unknown".into())
    );
    println!("cargo:rerun-if-env-changed=BUILD_REVISION");
    println!("cargo:rerun-if-changed=../.git/HEAD");
    println!("cargo:rerun-if-changed=../.git/refs/heads");
}
