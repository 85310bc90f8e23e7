//! Shared by the integration tests: fake model servers and a harness for the real binary.

pub mod backends;
pub mod client;
pub mod exporter;
pub mod fake;
pub mod raw;
pub mod servers;
