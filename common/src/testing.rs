//! The exporters' end-to-end test harness, one for every crate: start the real binary on a free
//! loopback port and wait until it is ready ([`ExporterProcess`]), speak plain HTTP/1.1 to it
//! ([`http_get`]), make its exposition stable and compare it with a golden file in
//! `tests/golden/` ([`stable_exposition`], [`mask_values`], [`assert_golden`]), look up one
//! value ([`value`]), and check the format with independent oracles ([`promtool_check_metrics`],
//! [`check_exposition`], [`parse_text`]).
//!
//! Behind the `testing` feature, which the crates turn on in their `[dev-dependencies]` only: none
//! of it is built into a release binary.

mod checkers;
mod exposition;
mod files;
mod golden;
mod http;
mod parse;
mod process;

pub use checkers::{check_exposition, promtool_check_metrics, run_with_stdin};
pub use exposition::{mask_values, stable_exposition, value};
pub use files::{copy_tree, Scratch};
pub use golden::{assert_golden, golden_file};
pub use http::{free_port, http_get, read_response, HttpResponse};
pub use parse::{parse_text, Labels, ParsedFamily};
pub use process::{assert_no_panic, assert_no_panic_in, ExporterProcess, NodeExporter};
