//! Whether NVML answered, why not, and how old the served sample is: `nvidia_up`, its reason,
//! and the worker's own counters.
//!
//! The worker's series follow the pattern both GPU exporters share:
//! `<exporter>_exporter_<source>_<what>`, the prefix the exporter's other self-metrics
//! (`nvidia_exporter_build_info`, `nvidia_exporter_collector_duration_seconds`) carry, with the
//! source the samples come from (`nvml` here, `backend` in rocm-exporter) and the same suffixes,
//! HELP wording and meaning: `_sample_age_seconds` (age of the sample this scrape was answered
//! from), `_timeouts_total` (samples that did not finish within their timeout) and
//! `_errors_total` (errors the source returned, by kind).

use crate::nvml_worker::{Served, WorkerStats};
use common::metrics::MetricFamily;

pub fn families(served: &Served, stats: &WorkerStats, timeout_secs: f64) -> Vec<MetricFamily> {
    let snapshot = &served.snapshot;
    let up = served.fresh && snapshot.down.is_none();
    let mut families = vec![MetricFamily::gauge(
        "nvidia_up",
        "Whether NVML answered the last collection (1) or not (0).",
    )
    .with_value(if up { 1.0 } else { 0.0 })];

    let mut reason = MetricFamily::gauge(
        "nvidia_down_reason_info",
        "Why nvidia_up is 0; present only then, value always 1.",
    );
    match (&snapshot.down, served.fresh) {
        (Some(down), _) => reason.push(
            &[("reason", down.reason), ("error", down.message.as_str())],
            1.0,
        ),
        (None, false) => reason.push(
            &[
                ("reason", "timeout"),
                (
                    "error",
                    &format!(
                        "NVML did not answer within {timeout_secs}s; serving the previous sample"
                    ),
                ),
            ],
            1.0,
        ),
        (None, true) => {}
    }
    families.push(reason);

    families.push(
        MetricFamily::gauge(
            "nvidia_exporter_nvml_sample_age_seconds",
            "Age of the NVML sample this scrape was answered from, in seconds.",
        )
        .with_value(snapshot.taken_at.elapsed().as_secs_f64()),
    );
    families.push(
        MetricFamily::gauge(
            "nvidia_exporter_nvml_sample_duration_seconds",
            "How long the latest finished NVML sample took, in seconds.",
        )
        .with_value(stats.last_sample_duration.as_secs_f64()),
    );
    let mut samples = MetricFamily::counter(
        "nvidia_exporter_nvml_samples_total",
        "NVML samples taken: on demand by a scrape that found none fresh, or ahead of the next expected scrape (prefetch).",
    );
    samples.push(&[("trigger", "scrape")], stats.scrape_samples as f64);
    samples.push(&[("trigger", "prefetch")], stats.prefetch_samples as f64);
    families.push(samples);
    families.push(
        MetricFamily::counter(
            "nvidia_exporter_nvml_timeouts_total",
            "NVML samples that did not finish within their timeout (--nvml.timeout).",
        )
        .with_value(stats.timeouts as f64),
    );
    families.push(
        MetricFamily::counter(
            "nvidia_exporter_nvml_initializations_total",
            "Successful NVML initialisations (more than 1 after a driver reload).",
        )
        .with_value(stats.initializations as f64),
    );
    let mut errors = MetricFamily::counter(
        "nvidia_exporter_nvml_errors_total",
        "Errors returned by NVML functions. A function a GPU does not support is asked (and counted) once per NVML session.",
    );
    for ((function, code), n) in &stats.errors {
        errors.push(&[("function", *function), ("error", *code)], *n as f64);
    }
    families.push(errors);
    families
}
