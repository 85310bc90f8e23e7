//! The timex collector: the kernel clock discipline's state from one `adjtimex(2)` call that
//! changes nothing (modes 0), in node_exporter's names and units.

use common::{BlockingCollector, CollectResult, MetricFamily};
use std::sync::atomic::{AtomicU64, Ordering};

/// adjtimex's return when the clock is not synchronised.
const TIME_ERROR: i32 = 5;
/// Status bit: offsets and jitter are in nanoseconds, not microseconds.
const STA_NANO: i32 = 0x2000;
/// Frequencies are in ppm with a 16-bit fraction (adjtimex(2), NOTES).
const PPM16FRAC: f64 = 1_000_000.0 * 65_536.0;
/// An |offset| above this is the kernel's 2^32 ns overflow artefact (node_exporter issue 3764).
const OFFSET_OVERFLOW_SECONDS: f64 = 4.0;

#[derive(Default)]
pub struct Timex {
    overflows: AtomicU64,
}

impl Timex {
    pub fn new() -> Self {
        Self::default()
    }
}

impl BlockingCollector for Timex {
    fn collect(&self) -> CollectResult {
        // SAFETY: a zeroed timex with modes 0 only reads; the kernel fills the struct we own.
        let mut tx: libc::timex = unsafe { std::mem::zeroed() };
        let state = unsafe { libc::adjtimex(&mut tx) };
        if state < 0 {
            let err = std::io::Error::last_os_error();
            // Forbidden by a seccomp profile: nothing to report, as node_exporter does.
            if err.kind() == std::io::ErrorKind::PermissionDenied {
                return Ok(vec![]);
            }
            anyhow::bail!("adjtimex: {err}");
        }
        Ok(self.families(&tx, state))
    }
}

impl Timex {
    fn families(&self, tx: &libc::timex, state: i32) -> Vec<MetricFamily> {
        let divisor = if tx.status & STA_NANO != 0 { 1e9 } else { 1e6 };
        let offset = tx.offset as f64 / divisor;
        if offset.abs() > OFFSET_OVERFLOW_SECONDS {
            self.overflows.fetch_add(1, Ordering::Relaxed);
        }
        let gauge = |name: &'static str, help: &'static str, v: f64| {
            MetricFamily::gauge(name, help).with_value(v)
        };
        let counter = |name: &'static str, help: &'static str, v: f64| {
            MetricFamily::counter(name, help).with_value(v)
        };
        vec![
            gauge(
                "node_timex_sync_status",
                "Is clock synchronized to a reliable server (1 = yes, 0 = no).",
                if state == TIME_ERROR { 0.0 } else { 1.0 },
            ),
            gauge(
                "node_timex_offset_seconds",
                "Time offset in between local system and reference clock.",
                offset,
            ),
            counter(
                "node_timex_offset_overflow_total",
                "Count of adjtimex() offset readings indicating kernel overflow (|offset| > 4s).",
                self.overflows.load(Ordering::Relaxed) as f64,
            ),
            gauge(
                "node_timex_frequency_adjustment_ratio",
                "Local clock frequency adjustment.",
                1.0 + tx.freq as f64 / PPM16FRAC,
            ),
            gauge(
                "node_timex_maxerror_seconds",
                "Maximum error in seconds.",
                tx.maxerror as f64 / 1e6,
            ),
            gauge(
                "node_timex_estimated_error_seconds",
                "Estimated error in seconds.",
                tx.esterror as f64 / 1e6,
            ),
            gauge(
                "node_timex_status",
                "Value of the status array bits.",
                tx.status as f64,
            ),
            gauge(
                "node_timex_loop_time_constant",
                "Phase-locked loop time constant.",
                tx.constant as f64,
            ),
            gauge(
                "node_timex_tick_seconds",
                "Seconds between clock ticks.",
                tx.tick as f64 / 1e6,
            ),
            gauge(
                "node_timex_pps_frequency_hertz",
                "Pulse per second frequency.",
                tx.ppsfreq as f64 / PPM16FRAC,
            ),
            gauge(
                "node_timex_pps_jitter_seconds",
                "Pulse per second jitter.",
                tx.jitter as f64 / divisor,
            ),
            gauge(
                "node_timex_pps_shift_seconds",
                "Pulse per second interval duration.",
                tx.shift as f64,
            ),
            gauge(
                "node_timex_pps_stability_hertz",
                "Pulse per second stability, average of recent frequency changes.",
                tx.stabil as f64 / PPM16FRAC,
            ),
            counter(
                "node_timex_pps_jitter_total",
                "Pulse per second count of jitter limit exceeded events.",
                tx.jitcnt as f64,
            ),
            counter(
                "node_timex_pps_calibration_total",
                "Pulse per second count of calibration intervals.",
                tx.calcnt as f64,
            ),
            counter(
                "node_timex_pps_error_total",
                "Pulse per second count of calibration errors.",
                tx.errcnt as f64,
            ),
            counter(
                "node_timex_pps_stability_exceeded_total",
                "Pulse per second count of stability limit exceeded events.",
                tx.stbcnt as f64,
            ),
            gauge(
                "node_timex_tai_offset_seconds",
                "International Atomic Time (TAI) offset.",
                tx.tai as f64,
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(families: &[MetricFamily], name: &str) -> f64 {
        families.iter().find(|f| f.name == name).unwrap().samples[0].value
    }

    #[test]
    fn units_follow_the_status_bits() {
        let timex = Timex::new();
        // SAFETY: an all-zero timex is a valid value of the plain C struct.
        let mut tx: libc::timex = unsafe { std::mem::zeroed() };
        tx.offset = 1500;
        tx.jitter = 2000;
        tx.freq = 65_536 * 10; // 10 ppm
        tx.maxerror = 16_000;
        tx.tick = 10_000;
        let micro = timex.families(&tx, TIME_ERROR);
        assert_eq!(value(&micro, "node_timex_offset_seconds"), 0.0015);
        assert_eq!(value(&micro, "node_timex_pps_jitter_seconds"), 0.002);
        assert_eq!(
            value(&micro, "node_timex_frequency_adjustment_ratio"),
            1.00001
        );
        assert_eq!(value(&micro, "node_timex_maxerror_seconds"), 0.016);
        assert_eq!(value(&micro, "node_timex_tick_seconds"), 0.01);
        assert_eq!(value(&micro, "node_timex_sync_status"), 0.0);
        tx.status = STA_NANO;
        let nano = timex.families(&tx, 0);
        assert_eq!(value(&nano, "node_timex_offset_seconds"), 0.0000015);
        assert_eq!(value(&nano, "node_timex_sync_status"), 1.0);
        assert_eq!(value(&nano, "node_timex_offset_overflow_total"), 0.0);
        tx.offset = 4_294_967_296; // 2^32 ns: the overflow artefact
        let overflow = timex.families(&tx, 0);
        assert_eq!(value(&overflow, "node_timex_offset_overflow_total"), 1.0);
    }

    #[test]
    fn the_live_call_answers_every_family() {
        let families = Timex::new().collect().unwrap();
        assert_eq!(families.len(), 18);
        assert!(value(&families, "node_timex_tick_seconds") > 0.0);
    }
}
