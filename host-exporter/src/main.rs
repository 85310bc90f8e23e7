//! host-exporter: the host's CPU, memory, filesystems, disks, network, load, pressure and
//! sensors from procfs and sysfs, in node_exporter's metric names. The collectors and their
//! registry are in the library (`lib.rs`), where the tests and the benchmark read them too.

use host_exporter::{own_args, Context, SPEC};
use std::process::ExitCode;

fn main() -> ExitCode {
    common::run(
        &SPEC,
        env!("CARGO_PKG_VERSION"),
        own_args(),
        |settings, _| Context::from_settings(settings),
    )
}
