//! Reads one sample of every GPU through nvml-wrapper. Runs only on the NVML worker thread
//! (`nvml_worker.rs`), which owns the session and the reader and puts a deadline on them.
//!
//! One concern per file: [`session`] opens NVML and reads what stays while the driver is loaded;
//! [`reader`] takes a sample and keeps what must last between samples; [`gpu`] reads one GPU,
//! [`fields`] its field values, [`mig`] its MIG instances and [`processes`] its processes;
//! [`ffi`] holds the nvml.h structs and calls nvml-wrapper does not wrap; [`calls`] is the error
//! policy every NVML call goes through: a function a GPU does not support (or a symbol the
//! library lacks) is remembered and not asked again until NVML is re-initialised;
//! `GPU_IS_LOST` stops querying that GPU for this sample; errors that mean the whole session is
//! gone (driver reload) abort the sample so the worker can re-initialise. Every error is
//! counted by function and code.

mod calls;
mod ffi;
mod fields;
mod gpu;
mod mig;
mod processes;
mod reader;
mod session;

pub use calls::{ends_session, error_code, ErrorCounts};
pub use reader::{Plan, Reader};
pub use session::{open_session, Session};
