//! rocm-exporter: AMD GPUs and APUs through amdgpu sysfs or rocm-smi, hang-proof. The binary in
//! `main.rs` wires these parts together; they are a library so that tests and the benchmark can
//! use them one by one.

pub mod apu;
pub mod backend;
pub mod backend_worker;
pub mod child;
pub mod config;
pub mod families;
pub mod gpu_collector;
pub mod model;
pub mod processes;
