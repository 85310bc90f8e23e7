//! host-exporter as a library: its collectors, their registry ([`SPEC`], the one place each
//! collector's name is written) and its flags. `main.rs` runs it; the tests, the benchmark and
//! the README check read the collector list from it.

mod collectors;
mod filter;
mod kept_file;
mod paths;
mod registry;
mod settings;
mod shared_read;

pub use registry::{collector_names, default_collectors, SPEC};
pub use settings::{own_args, Context};
