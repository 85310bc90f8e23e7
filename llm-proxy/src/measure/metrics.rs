//! What the proxies measured, kept between scrapes: counters, histograms and the active-request
//! gauge, by upstream, model and route. A request's measurements are added in one step when it
//! ends, so a scrape never sees half a request.

use super::finish::FinishReason;
use super::histogram::{self, Histogram};
use crate::telemetry::{Measured, RequestContext, Telemetry};
use common::MetricFamily;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

/// Why a proxied inference request did not succeed; the `kind` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ErrorKind {
    /// The upstream answered with a non-2xx status (e.g. 503 loading or queue full, 404 model).
    UpstreamStatus,
    /// The stream carried an error line (`data: {"error":…}` or an NDJSON `{"error":…}`).
    StreamError,
    /// The client went away before the response ended.
    ClientDisconnect,
    /// The client's request body could not be read: malformed chunked coding (answered 400),
    /// or nothing more of it within --proxy.client-timeout (answered 408).
    ClientError,
    /// No response headers within --proxy.header-timeout, or a body silent for
    /// --proxy.idle-timeout.
    UpstreamTimeout,
    /// The upstream could not be reached.
    UpstreamUnreachable,
    /// The upstream broke the connection or sent malformed HTTP.
    UpstreamBroken,
    /// The proxy itself lacked a resource to reach the upstream (no file descriptor left:
    /// EMFILE/ENFILE; no memory for a socket): the cause is local, the upstream may be fine.
    LocalResource,
}

impl ErrorKind {
    pub fn label(self) -> &'static str {
        match self {
            ErrorKind::UpstreamStatus => "upstream_status",
            ErrorKind::StreamError => "stream_error",
            ErrorKind::ClientDisconnect => "client_disconnect",
            ErrorKind::ClientError => "client_error",
            ErrorKind::UpstreamTimeout => "upstream_timeout",
            ErrorKind::UpstreamUnreachable => "upstream_unreachable",
            ErrorKind::UpstreamBroken => "upstream_broken",
            ErrorKind::LocalResource => "local_resource",
        }
    }
}

/// One finished inference request, as the proxy saw it.
#[derive(Debug, Default)]
pub struct Finished {
    pub upstream: Arc<str>,
    pub route: &'static str,
    /// The model the server named in its answer, already normalized; `None` when it named none.
    pub model: Option<String>,
    /// The HTTP status the client got.
    pub code: u16,
    pub error: Option<ErrorKind>,
    pub duration: f64,
    /// Streaming only: from the request to the first content token.
    pub ttft: Option<f64>,
    /// Gaps between content chunks after the first.
    pub inter_token: Vec<f64>,
    pub prompt_tokens: Option<u64>,
    pub generated_tokens: Option<u64>,
    /// Prefill (and load) time the server reports; with TTFT it gives the queue time.
    pub server_prefill: Option<f64>,
    /// Reasoning tokens, where the server reports them apart (part of `generated_tokens`).
    pub reasoning_tokens: Option<u64>,
    /// Why the generation ended, as the server said it.
    pub finish_reason: Option<FinishReason>,
    /// Ollama's `load_duration` when it loaded the model for this request.
    pub load_duration: Option<f64>,
    /// The request's id and trace when the access log or spans are on: the request is then
    /// also handed to them.
    pub request: Option<RequestContext>,
    /// The upstream's backend label as known when the answer began; for the access log and
    /// spans only (the metrics' model label has its own spelling rules).
    pub backend: Option<&'static str>,
    /// The answer was a stream (SSE or NDJSON).
    pub stream: bool,
}

impl Finished {
    /// What the access log and the span get of this request.
    fn measured(&self) -> Measured {
        Measured {
            upstream: self.upstream.clone(),
            backend: self.backend,
            model: self.model.clone(),
            route: self.route,
            code: self.code,
            error_kind: self.error.map(ErrorKind::label),
            finish_reason: self.finish_reason.map(FinishReason::label),
            stream: self.stream,
            duration: self.duration,
            ttft: self.ttft,
            queue: self.queue(),
            prompt_tokens: self.prompt_tokens,
            generated_tokens: self.generated_tokens,
        }
    }

    /// The wait before prefill began: TTFT less the server-reported prompt (and load) time.
    fn queue(&self) -> Option<f64> {
        Some((self.ttft? - self.server_prefill?).max(0.0))
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    upstream: Arc<str>,
    model: String,
    route: &'static str,
}

impl Key {
    fn labels(&self) -> [(&'static str, &str); 3] {
        [
            ("upstream", &self.upstream),
            ("model", self.model.as_str()),
            ("route", self.route),
        ]
    }
}

/// Everything measured for one (upstream, model, route): found with one lookup per request.
struct Series {
    /// By (status, code).
    requests: BTreeMap<(&'static str, u16), u64>,
    errors: BTreeMap<ErrorKind, u64>,
    finished: BTreeMap<FinishReason, u64>,
    /// `None` until a request reported any: no series is shown before then.
    prompt_tokens: Option<u64>,
    generated_tokens: Option<u64>,
    reasoning_tokens: Option<u64>,
    duration: Histogram,
    ttft: Option<Histogram>,
    inter_token: Option<Histogram>,
    queue: Option<Histogram>,
    prompt_hist: Option<Histogram>,
    generated_hist: Option<Histogram>,
}

impl Series {
    fn new() -> Self {
        Series {
            requests: BTreeMap::new(),
            errors: BTreeMap::new(),
            finished: BTreeMap::new(),
            prompt_tokens: None,
            generated_tokens: None,
            reasoning_tokens: None,
            duration: Histogram::new(histogram::DURATION_SECONDS),
            ttft: None,
            inter_token: None,
            queue: None,
            prompt_hist: None,
            generated_hist: None,
        }
    }
}

#[derive(Default)]
struct State {
    models: BTreeSet<String>,
    series: BTreeMap<Key, Series>,
    active: BTreeMap<(Arc<str>, &'static str), i64>,
    /// Model loads by (upstream, model): a load serves whichever route asked first.
    loads: BTreeMap<(Arc<str>, String), Histogram>,
}

pub struct ProxyMetrics {
    state: Mutex<State>,
    max_models: usize,
    /// The access log and span export; off unless `with_telemetry` turned them on.
    telemetry: Arc<Telemetry>,
}

fn observe(h: &mut Option<Histogram>, bounds: &'static [f64], v: f64) {
    h.get_or_insert_with(|| Histogram::new(bounds)).observe(v);
}

impl ProxyMetrics {
    pub fn new(max_models: usize) -> Self {
        ProxyMetrics {
            state: Mutex::new(State::default()),
            max_models,
            telemetry: Arc::new(Telemetry::default()),
        }
    }

    /// Hands every finished request to the access log and span export too, and shows their
    /// counters with the proxy's metrics.
    pub fn with_telemetry(mut self, telemetry: Arc<Telemetry>) -> Self {
        self.telemetry = telemetry;
        self
    }

    pub fn telemetry(&self) -> &Telemetry {
        &self.telemetry
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn started(&self, upstream: &Arc<str>, route: &'static str) {
        *self
            .lock()
            .active
            .entry((upstream.clone(), route))
            .or_insert(0) += 1;
    }

    pub fn finished(&self, mut f: Finished) {
        if let Some(request) = f.request.take() {
            self.telemetry.finish(request.record(f.measured()));
        }
        let mut state = self.lock();
        if let Some(active) = state.active.get_mut(&(f.upstream.clone(), f.route)) {
            *active -= 1;
        }
        // A cap on distinct model values: clients choose model names, labels must stay bounded.
        let model = f.model.unwrap_or_else(|| "unknown".into());
        let model = if state.models.contains(&model) {
            model
        } else if state.models.len() < self.max_models {
            state.models.insert(model.clone());
            model
        } else {
            "other".into()
        };
        if let Some(load) = f.load_duration {
            let key = (f.upstream.clone(), model.clone());
            state
                .loads
                .entry(key)
                .or_insert_with(|| Histogram::new(histogram::MODEL_LOAD_SECONDS))
                .observe(load);
        }
        let key = Key {
            upstream: f.upstream,
            model,
            route: f.route,
        };
        // The key is copied only the first time it is seen.
        if !state.series.contains_key(&key) {
            state.series.insert(key.clone(), Series::new());
        }
        let Some(series) = state.series.get_mut(&key) else {
            return;
        };
        let status = if f.error.is_none() {
            "success"
        } else {
            "error"
        };
        *series.requests.entry((status, f.code)).or_insert(0) += 1;
        if let Some(kind) = f.error {
            *series.errors.entry(kind).or_insert(0) += 1;
        }
        // A failed request ended in error whatever the server said before it failed; an
        // answer that names no reason (embeddings) is not counted.
        let finish = match f.error {
            Some(_) => Some(FinishReason::Error),
            None => f.finish_reason,
        };
        if let Some(finish) = finish {
            *series.finished.entry(finish).or_insert(0) += 1;
        }
        series.duration.observe(f.duration);
        if let Some(ttft) = f.ttft {
            observe(&mut series.ttft, histogram::TTFT_SECONDS, ttft);
            if let Some(prefill) = f.server_prefill {
                let queue = (ttft - prefill).max(0.0);
                observe(&mut series.queue, histogram::TTFT_SECONDS, queue);
            }
        }
        if !f.inter_token.is_empty() {
            let h = series
                .inter_token
                .get_or_insert_with(|| Histogram::new(histogram::ITL_SECONDS));
            for gap in &f.inter_token {
                h.observe(*gap);
            }
        }
        if let Some(n) = f.prompt_tokens {
            // A server may report any number: saturate rather than overflow.
            let total = series.prompt_tokens.get_or_insert(0);
            *total = total.saturating_add(n);
            observe(&mut series.prompt_hist, histogram::TOKENS, n as f64);
        }
        if let Some(n) = f.generated_tokens {
            let total = series.generated_tokens.get_or_insert(0);
            *total = total.saturating_add(n);
            observe(&mut series.generated_hist, histogram::TOKENS, n as f64);
        }
        if let Some(n) = f.reasoning_tokens {
            let total = series.reasoning_tokens.get_or_insert(0);
            *total = total.saturating_add(n);
        }
    }

    pub fn families(&self) -> Vec<MetricFamily> {
        let state = self.lock();
        let mut requests = MetricFamily::counter(
            "llm_requests_total",
            "Inference requests through the proxy by outcome (status) and the HTTP code the client got.",
        );
        for (key, series) in &state.series {
            let [u, m, r] = key.labels();
            for ((status, code), n) in &series.requests {
                let code = code.to_string();
                requests.push(&[u, m, r, ("status", status), ("code", &code)], *n as f64);
            }
        }
        let mut errors = MetricFamily::counter(
            "llm_request_errors_total",
            "Failed inference requests by kind: upstream_status, stream_error, client_disconnect, client_error, upstream_timeout, upstream_unreachable, upstream_broken, local_resource.",
        );
        for (key, series) in &state.series {
            let [u, m, r] = key.labels();
            for (kind, n) in &series.errors {
                errors.push(&[u, m, r, ("kind", kind.label())], *n as f64);
            }
        }
        let mut finished = MetricFamily::counter(
            "llm_requests_finished_total",
            "Inference requests by why the generation ended: stop, length (truncated by a token limit), tool_calls, content_filter, error (the request failed), other. Answers that name no reason (embeddings) are not counted.",
        );
        for (key, series) in &state.series {
            let [u, m, r] = key.labels();
            for (reason, n) in &series.finished {
                finished.push(&[u, m, r, ("finish_reason", reason.label())], *n as f64);
            }
        }
        let mut loads = MetricFamily::histogram(
            "llm_model_load_duration_seconds",
            "Model loads a proxied request waited for, as Ollama reports them (load_duration above zero).",
        );
        for ((upstream, model), h) in &state.loads {
            loads.push_histogram(&[("upstream", &**upstream), ("model", model)], h.snapshot());
        }
        let counter =
            |name: &'static str, help: &'static str, value: fn(&Series) -> Option<u64>| {
                let mut family = MetricFamily::counter(name, help);
                for (key, series) in &state.series {
                    if let Some(n) = value(series) {
                        family.push(&key.labels(), n as f64);
                    }
                }
                family
            };
        let hist =
            |name: &'static str, help: &'static str, value: fn(&Series) -> Option<&Histogram>| {
                let mut family = MetricFamily::histogram(name, help);
                for (key, series) in &state.series {
                    if let Some(h) = value(series) {
                        family.push_histogram(&key.labels(), h.snapshot());
                    }
                }
                family
            };
        let mut active = MetricFamily::gauge(
            "llm_active_requests",
            "Inference requests in flight through the proxy (the model is known only from the answer, so this is by route).",
        );
        for ((upstream, route), n) in &state.active {
            active.push(&[("upstream", &**upstream), ("route", route)], *n as f64);
        }
        vec![
            requests,
            errors,
            finished,
            active,
            counter(
                "llm_prompt_tokens_total",
                "Prompt tokens of proxied requests, as the server reported them (usage, timings or prompt_eval_count).",
                |s| s.prompt_tokens,
            ),
            counter(
                "llm_tokens_generated_total",
                "Generated tokens of proxied requests, as the server reported them (usage, timings or eval_count).",
                |s| s.generated_tokens,
            ),
            counter(
                "llm_reasoning_tokens_total",
                "Reasoning tokens of proxied requests, where the server reports them apart (usage completion_tokens_details or output_tokens_details); part of llm_tokens_generated_total.",
                |s| s.reasoning_tokens,
            ),
            hist(
                "llm_request_duration_seconds",
                "Time from the request to the end of the response, as the proxy saw it.",
                |s| Some(&s.duration),
            ),
            hist(
                "llm_time_to_first_token_seconds",
                "Streaming requests: time from the request to the first content token (not the role chunk or a ping).",
                |s| s.ttft.as_ref(),
            ),
            hist(
                "llm_inter_token_latency_seconds",
                "Streaming requests: time between consecutive content chunks.",
                |s| s.inter_token.as_ref(),
            ),
            hist(
                "llm_request_queue_time_seconds",
                "Streaming requests: estimated wait before prefill began (proxy TTFT minus the server-reported prompt and load time).",
                |s| s.queue.as_ref(),
            ),
            hist(
                "llm_request_prompt_tokens",
                "Prompt tokens per request.",
                |s| s.prompt_hist.as_ref(),
            ),
            hist(
                "llm_request_generation_tokens",
                "Generated tokens per request.",
                |s| s.generated_hist.as_ref(),
            ),
            loads,
        ]
        .into_iter()
        .chain(self.telemetry.families())
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finished(model: &str) -> Finished {
        Finished {
            upstream: Arc::from("u"),
            route: "/api/chat",
            model: Some(model.into()),
            code: 200,
            duration: 0.5,
            ..Default::default()
        }
    }

    #[test]
    fn hostile_token_counts_saturate() {
        let m = ProxyMetrics::new(4);
        for _ in 0..2 {
            m.started(&Arc::from("u"), "/api/chat");
            m.finished(Finished {
                prompt_tokens: Some(u64::MAX),
                generated_tokens: Some(u64::MAX - 1),
                ..finished("a")
            });
        }
        let families = m.families();
        let value = |name: &str| {
            families
                .iter()
                .find(|f| f.name == name)
                .map(|f| f.samples[0].value)
        };
        assert_eq!(value("llm_prompt_tokens_total"), Some(u64::MAX as f64));
        assert_eq!(value("llm_tokens_generated_total"), Some(u64::MAX as f64));
    }

    #[test]
    fn finish_reasons_reasoning_tokens_and_loads_are_counted() {
        let m = ProxyMetrics::new(4);
        for (finish, error, reasoning, load) in [
            (Some(FinishReason::Length), None, Some(7), Some(2.0)),
            (Some(FinishReason::Length), None, Some(5), None),
            // A failed request ended in error, whatever the server said before.
            (
                Some(FinishReason::Stop),
                Some(ErrorKind::StreamError),
                None,
                None,
            ),
            // Named no reason (an embedding): not counted.
            (None, None, None, Some(0.5)),
        ] {
            m.started(&Arc::from("u"), "/api/chat");
            m.finished(Finished {
                finish_reason: finish,
                error,
                reasoning_tokens: reasoning,
                load_duration: load,
                ..finished("a")
            });
        }
        let families = m.families();
        let family = |name: &str| families.iter().find(|f| f.name == name).unwrap();
        let finished: Vec<(String, f64)> = family("llm_requests_finished_total")
            .samples
            .iter()
            .map(|s| (s.labels[3].1.clone(), s.value))
            .collect();
        assert_eq!(
            finished,
            [("length".to_string(), 2.0), ("error".to_string(), 1.0)]
        );
        assert_eq!(family("llm_reasoning_tokens_total").samples[0].value, 12.0);
        let loads = &family("llm_model_load_duration_seconds").samples;
        assert_eq!(loads.len(), 1);
        let labels: Vec<(&str, &str)> = loads[0]
            .labels
            .iter()
            .map(|(k, v)| (k.as_ref(), v.as_str()))
            .collect();
        assert_eq!(labels, [("upstream", "u"), ("model", "a")]);
        let h = loads[0].histogram.as_ref().unwrap();
        assert_eq!((h.count, h.sum), (2, 2.5));
    }

    #[test]
    fn model_values_beyond_the_cap_become_other() {
        let m = ProxyMetrics::new(2);
        for model in ["a", "b", "c", "d", "a"] {
            m.started(&Arc::from("u"), "/api/chat");
            m.finished(finished(model));
        }
        let families = m.families();
        let requests = &families[0];
        let models: Vec<(String, f64)> = requests
            .samples
            .iter()
            .map(|s| (s.labels[1].1.clone(), s.value))
            .collect();
        assert_eq!(
            models,
            vec![("a".into(), 2.0), ("b".into(), 1.0), ("other".into(), 2.0)]
        );
        let active = families
            .iter()
            .find(|f| f.name == "llm_active_requests")
            .unwrap();
        assert_eq!(active.samples[0].value, 0.0);
    }
}
