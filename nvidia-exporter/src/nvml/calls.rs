//! The error policy of every NVML call, kept in one place: [`Calls::call`] remembers a function a
//! GPU does not support (not asked again until NVML is re-initialised), stops querying a GPU
//! that answered `GPU_IS_LOST`, aborts the sample on errors that end the session, counts every
//! error by function and code, and logs slow calls.

use common::log;
use nvml_wrapper::error::NvmlError;
use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

/// Calls slower than this are logged at debug level, to find what makes a sample slow.
const SLOW_CALL: Duration = Duration::from_millis(1);

/// Errors counted over the exporter's life, by (function, error code).
pub type ErrorCounts = BTreeMap<(&'static str, &'static str), u64>;

/// The error-handling rules for the NVML calls on one GPU.
pub(super) struct Calls<'a> {
    gpu: u32,
    unsupported: &'a mut HashSet<(u32, &'static str)>,
    errors: &'a mut ErrorCounts,
    /// The GPU answered `GPU_IS_LOST`: no more calls on it in this sample.
    pub(super) lost: bool,
    /// An error that ends the NVML session: no more calls, the sample is aborted.
    pub(super) fatal: Option<NvmlError>,
}

impl<'a> Calls<'a> {
    pub(super) fn new(
        gpu: u32,
        unsupported: &'a mut HashSet<(u32, &'static str)>,
        errors: &'a mut ErrorCounts,
    ) -> Self {
        Calls {
            gpu,
            unsupported,
            errors,
            lost: false,
            fatal: None,
        }
    }

    pub(super) fn call<T>(
        &mut self,
        function: &'static str,
        f: impl FnOnce() -> Result<T, NvmlError>,
    ) -> Option<T> {
        if self.lost || self.fatal.is_some() || self.unsupported.contains(&(self.gpu, function)) {
            return None;
        }
        let started = log::enabled(log::Level::Debug).then(Instant::now);
        let result = f();
        let took = started.map(|s| s.elapsed()).unwrap_or_default();
        if took >= SLOW_CALL {
            log::debug(
                "slow NVML call",
                &[
                    ("function", function),
                    ("gpu", &self.gpu.to_string()),
                    ("ms", &format!("{:.3}", took.as_secs_f64() * 1000.0)),
                ],
            );
        }
        match result {
            Ok(value) => Some(value),
            Err(e) => {
                self.record(function, e);
                None
            }
        }
    }

    pub(super) fn is_unsupported(&self, function: &'static str) -> bool {
        self.unsupported.contains(&(self.gpu, function))
    }

    pub(super) fn mark_unsupported(&mut self, function: &'static str) {
        self.unsupported.insert((self.gpu, function));
    }

    pub(super) fn record(&mut self, function: &'static str, e: NvmlError) {
        count_error(self.errors, function, &e);
        match e {
            NvmlError::NotSupported
            | NvmlError::FailedToLoadSymbol(_)
            | NvmlError::FunctionNotFound => {
                self.unsupported.insert((self.gpu, function));
            }
            NvmlError::GpuLost => self.lost = true,
            e if ends_session(&e) => self.fatal = Some(e),
            _ => {}
        }
    }
}

/// Errors after which the NVML session must be re-initialised.
pub fn ends_session(e: &NvmlError) -> bool {
    matches!(
        e,
        NvmlError::LibRmVersionMismatch | NvmlError::Uninitialized | NvmlError::DriverNotLoaded
    )
}

pub fn count_error(errors: &mut ErrorCounts, function: &'static str, e: &NvmlError) {
    *errors.entry((function, error_code(e))).or_default() += 1;
}

/// A short, stable name for an NVML error, usable as a label value.
pub fn error_code(e: &NvmlError) -> &'static str {
    match e {
        NvmlError::Utf8Error(_) => "invalid_utf8",
        NvmlError::NulError(_) => "nul_in_string",
        NvmlError::LibloadingError(_) => "library_not_found",
        NvmlError::FailedToLoadSymbol(_) => "symbol_not_found",
        NvmlError::StringTooLong { .. } => "string_too_long",
        NvmlError::IncorrectBits(_) => "incorrect_bits",
        NvmlError::UnexpectedVariant(_) => "unexpected_value",
        NvmlError::Uninitialized => "uninitialized",
        NvmlError::InvalidArg => "invalid_argument",
        NvmlError::NotSupported => "not_supported",
        NvmlError::NoPermission => "no_permission",
        NvmlError::NotFound => "not_found",
        NvmlError::InsufficientSize(_) => "insufficient_size",
        NvmlError::DriverNotLoaded => "driver_not_loaded",
        NvmlError::Timeout => "timeout",
        NvmlError::LibraryNotFound => "library_not_found",
        NvmlError::FunctionNotFound => "function_not_found",
        NvmlError::GpuLost => "gpu_is_lost",
        NvmlError::ResetRequired => "reset_required",
        NvmlError::LibRmVersionMismatch => "driver_version_mismatch",
        NvmlError::InsufficientMemory => "insufficient_memory",
        NvmlError::NoData => "no_data",
        NvmlError::Unknown => "unknown",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsupported_functions_are_asked_once_and_lost_gpus_stop_querying() {
        let mut unsupported = HashSet::new();
        let mut errors = ErrorCounts::new();
        let mut asked = 0;
        for _ in 0..3 {
            let mut calls = Calls::new(0, &mut unsupported, &mut errors);
            let got: Option<u32> = calls.call("nvmlDeviceGetFanSpeed_v2", || {
                asked += 1;
                Err(NvmlError::NotSupported)
            });
            assert_eq!(got, None);
        }
        assert_eq!(asked, 1);
        assert_eq!(errors[&("nvmlDeviceGetFanSpeed_v2", "not_supported")], 1);

        let mut calls = Calls::new(1, &mut unsupported, &mut errors);
        assert_eq!(calls.call("a", || Err::<u32, _>(NvmlError::GpuLost)), None);
        assert!(calls.lost);
        assert_eq!(
            calls.call("b", || Ok(1u32)),
            None,
            "no call after GPU_IS_LOST"
        );

        let mut calls = Calls::new(2, &mut unsupported, &mut errors);
        assert_eq!(
            calls.call("c", || Err::<u32, _>(NvmlError::LibRmVersionMismatch)),
            None
        );
        assert!(matches!(calls.fatal, Some(NvmlError::LibRmVersionMismatch)));
        // A transient error is counted but not cached.
        let mut calls = Calls::new(3, &mut unsupported, &mut errors);
        assert_eq!(calls.call("d", || Err::<u32, _>(NvmlError::Unknown)), None);
        assert_eq!(calls.call("d", || Ok(7u32)), Some(7));
    }
}
