//! Live histogram state for the proxy's measurements, and the bucket sets it uses. The bounds
//! follow vLLM and the OpenTelemetry GenAI conventions so that dashboards built for those read
//! ours the same way.

use common::metrics::HistogramValue;

/// vLLM's `time_to_first_token_seconds` buckets (also OTel `gen_ai.server.time_to_first_token`
/// up to 10 s).
pub const TTFT_SECONDS: &[f64] = &[
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
];

/// vLLM's `inter_token_latency_seconds` buckets (OTel `time_per_output_token` up to 2.5 s).
pub const ITL_SECONDS: &[f64] = &[
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
    40.0, 80.0,
];

/// OTel `gen_ai.server.request.duration` buckets (0.01 doubling to 81.92 s), continued by three
/// more doublings because long local generations pass 80 s.
pub const DURATION_SECONDS: &[f64] = &[
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92, 163.84,
    327.68, 655.36,
];

/// vLLM's 1-2-5 token-count buckets, up to a million tokens.
pub const TOKENS: &[f64] = &[
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0, 20000.0,
    50000.0, 100000.0, 200000.0, 500000.0, 1000000.0,
];

/// Model load times: Ollama reports `load_duration` only when it loaded the model for the
/// request, from tens of milliseconds (a small model already in the page cache) to minutes (a
/// large one from a slow disk). A 1-2.5-5 series from 10 ms to 500 s.
pub const MODEL_LOAD_SECONDS: &[f64] = &[
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0,
];

#[derive(Clone, Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// Observations per bucket (not cumulative); the last slot is above every bound.
    counts: Vec<u64>,
    sum: f64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: vec![0; bounds.len() + 1],
            sum: 0.0,
        }
    }

    pub fn observe(&mut self, value: f64) {
        if !value.is_finite() {
            return;
        }
        let i = self.bounds.partition_point(|b| *b < value);
        self.counts[i] += 1;
        self.sum += value;
    }

    /// Cumulative counts per bound, as the exposition wants them.
    pub fn snapshot(&self) -> HistogramValue {
        let mut running = 0;
        let buckets = self
            .bounds
            .iter()
            .zip(&self.counts)
            .map(|(bound, count)| {
                running += count;
                (*bound, running)
            })
            .collect();
        HistogramValue {
            buckets,
            sum: self.sum,
            count: self.counts.iter().sum(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_bounds_inclusive() {
        let mut h = Histogram::new(&[0.1, 1.0]);
        for v in [0.05, 0.1, 0.5, 3.0, f64::NAN] {
            h.observe(v);
        }
        let s = h.snapshot();
        assert_eq!(s.buckets, vec![(0.1, 2), (1.0, 3)]);
        assert_eq!(s.count, 4);
        assert!((s.sum - 3.65).abs() < 1e-9);
    }

    /// The lists as the reference (llm.md §3.1 vLLM, §3.2 OpenTelemetry GenAI) writes them,
    /// typed in from there rather than derived, so a changed bound fails here.
    const VLLM_TTFT: &[f64] = &[
        0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
        20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
    ];
    const VLLM_ITL: &[f64] = &[
        0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
        20.0, 40.0, 80.0,
    ];
    const OTEL_SERVER_TTFT: &[f64] = &[
        0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    ];
    const OTEL_SERVER_TPOT: &[f64] = &[
        0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5,
    ];
    const OTEL_DURATION: &[f64] = &[
        0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
    ];

    #[test]
    fn bucket_bounds_are_exactly_the_vllm_and_otel_lists() {
        assert_eq!(TTFT_SECONDS, VLLM_TTFT);
        assert_eq!(&TTFT_SECONDS[..OTEL_SERVER_TTFT.len()], OTEL_SERVER_TTFT);
        assert_eq!(ITL_SECONDS, VLLM_ITL);
        assert_eq!(&ITL_SECONDS[..OTEL_SERVER_TPOT.len()], OTEL_SERVER_TPOT);
        // OTel's request duration, then three more doublings for long local generations.
        assert_eq!(&DURATION_SECONDS[..OTEL_DURATION.len()], OTEL_DURATION);
        assert_eq!(
            &DURATION_SECONDS[OTEL_DURATION.len()..],
            &[163.84, 327.68, 655.36]
        );
        // vLLM's 1-2-5 token series, to a million.
        assert_eq!(
            TOKENS,
            &[
                1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1e3, 2e3, 5e3, 1e4, 2e4, 5e4,
                1e5, 2e5, 5e5, 1e6
            ]
        );
    }

    #[test]
    fn bucket_sets_ascend() {
        for set in [
            TTFT_SECONDS,
            ITL_SECONDS,
            DURATION_SECONDS,
            TOKENS,
            MODEL_LOAD_SECONDS,
        ] {
            assert!(set.windows(2).all(|w| w[0] < w[1]));
        }
    }
}
