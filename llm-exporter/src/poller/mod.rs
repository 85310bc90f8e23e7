//! The `upstream` collector: on each scrape, every upstream is polled concurrently under its own
//! deadline, and reports `llm_up`, the reason when it is down, its identity and what its backend
//! module reads (`llama_cpp` and its `router` mode, `ollama`, `koboldcpp`, `openai`). One upstream
//! failing never costs another's series.

pub mod koboldcpp;
pub mod llama_cpp;
pub mod models;
pub mod ollama;
pub mod openai;
pub mod router;

use crate::config::{Backend, BackendChoice, UpstreamConfig};
use crate::detect::{self, DetectError};
use crate::upstream::{FetchError, Reply, Upstream};
use common::collector::{CollectFuture, Collector};
use common::MetricFamily;
use hyper::StatusCode;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// Why `llm_up` is 0; the value of the `reason` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// Nothing answers at the address.
    Down,
    /// No complete answer within `--upstream.timeout`.
    Timeout,
    /// llama-server answers 503 `Loading model`.
    Loading,
    /// 503 from Ollama (queue full) or another unavailable answer.
    Unavailable,
    /// 401/403: the API key is missing or wrong.
    Unauthorized,
    /// llama-server started without `--metrics` (501).
    MetricsDisabled,
    /// Anything else: 500, an unexpected status, garbage or truncated bodies, unknown backend.
    Error,
}

impl Reason {
    pub fn label(self) -> &'static str {
        match self {
            Reason::Down => "down",
            Reason::Timeout => "timeout",
            Reason::Loading => "loading",
            Reason::Unavailable => "unavailable",
            Reason::Unauthorized => "unauthorized",
            Reason::MetricsDisabled => "metrics_disabled",
            Reason::Error => "error",
        }
    }

    pub fn from_fetch(e: &FetchError) -> Reason {
        match e {
            FetchError::Down(_) => Reason::Down,
            FetchError::Timeout => Reason::Timeout,
            FetchError::Broken(_) => Reason::Error,
        }
    }
}

/// A failed step of a poll: the reason for `llm_up` and a message for the log.
#[derive(Debug)]
pub struct Failure {
    pub reason: Reason,
    pub message: String,
}

impl Failure {
    pub fn new(reason: Reason, message: impl Into<String>) -> Self {
        Failure {
            reason,
            message: message.into(),
        }
    }

    pub fn fetch(path: &str, e: &FetchError) -> Self {
        Failure::new(Reason::from_fetch(e), format!("GET {path}: {e}"))
    }

    /// A non-2xx answer, classified by its status.
    pub fn status(path: &str, reply: &Reply) -> Self {
        let reason = match reply.status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Reason::Unauthorized,
            StatusCode::SERVICE_UNAVAILABLE => Reason::Unavailable,
            _ => Reason::Error,
        };
        Failure::new(
            reason,
            format!("GET {path}: HTTP {}", reply.status.as_u16()),
        )
    }
}

/// What one poll of one upstream produced.
pub struct Polled {
    pub families: Vec<MetricFamily>,
    /// `None` when everything needed was read.
    pub failure: Option<Failure>,
    /// Evidence that the upstream restarted since the previous poll.
    pub restarted: bool,
    /// Bodies that could not be parsed, by endpoint.
    pub format_errors: Vec<&'static str>,
}

impl Polled {
    pub fn failed(failure: Failure) -> Self {
        Polled {
            families: Vec::new(),
            failure: Some(failure),
            restarted: false,
            format_errors: Vec::new(),
        }
    }

    /// A backend's poll as one value: its families and whether the upstream restarted, or why
    /// it failed; the bodies that could not be parsed either way.
    pub fn from_result(
        result: Result<(Vec<MetricFamily>, bool), Failure>,
        format_errors: Vec<&'static str>,
    ) -> Self {
        match result {
            Ok((families, restarted)) => Polled {
                families,
                failure: None,
                restarted,
                format_errors,
            },
            Err(failure) => Polled {
                format_errors,
                ..Polled::failed(failure)
            },
        }
    }
}

/// GET `path`, which must answer 200: anything else is the poll's failure.
pub async fn fetch_ok(
    upstream: &Upstream,
    path: &str,
    deadline: Instant,
) -> Result<Reply, Failure> {
    let reply = upstream
        .get(path, deadline)
        .await
        .map_err(|e| Failure::fetch(path, &e))?;
    if reply.status != StatusCode::OK {
        return Err(Failure::status(path, &reply));
    }
    Ok(reply)
}

/// Parses a JSON body; a bad one is a format error of `endpoint`.
pub fn json<T: serde::de::DeserializeOwned>(
    endpoint: &'static str,
    reply: &Reply,
    format_errors: &mut Vec<&'static str>,
) -> Result<T, Failure> {
    serde_json::from_slice(&reply.body).map_err(|e| {
        format_errors.push(endpoint);
        Failure::new(
            Reason::Error,
            format!("GET {endpoint}: body is not the expected JSON: {e}"),
        )
    })
}

/// What the exporter remembers about one upstream between scrapes.
struct UpstreamState {
    upstream: Upstream,
    detected: Mutex<Option<Backend>>,
    /// The backend last seen, kept for the `backend` label while the upstream is re-detected:
    /// an Ollama that went down stays `llm_up{backend="ollama"} 0`, which the alert watches.
    last_backend: Mutex<Option<Backend>>,
    llama: Mutex<llama_cpp::Memory>,
    ollama: Mutex<ollama::Memory>,
    koboldcpp: Mutex<koboldcpp::Memory>,
    /// The upstream's model labels (bounded) and load counts, whatever the backend.
    models: Mutex<models::ModelTracker>,
    restarts: Mutex<u64>,
    format_errors: Mutex<BTreeMap<&'static str, u64>>,
    /// The last reason logged, so that a lasting outage is logged once, not on every scrape.
    last_reason: Mutex<Option<Reason>>,
}

pub struct Poller {
    upstreams: Vec<Arc<UpstreamState>>,
    timeout: Duration,
}

impl Poller {
    pub fn new(configs: &[UpstreamConfig], timeout: Duration, max_models: usize) -> Self {
        let upstreams = configs
            .iter()
            .map(|config| {
                let detected = match config.backend {
                    BackendChoice::Fixed(b) => Some(b),
                    BackendChoice::Auto => None,
                };
                Arc::new(UpstreamState {
                    upstream: Upstream::new(config.clone()),
                    detected: Mutex::new(detected),
                    last_backend: Mutex::new(detected),
                    llama: Mutex::new(llama_cpp::Memory::default()),
                    ollama: Mutex::new(ollama::Memory::default()),
                    koboldcpp: Mutex::new(koboldcpp::Memory::default()),
                    models: Mutex::new(models::ModelTracker::new(max_models)),
                    restarts: Mutex::new(0),
                    format_errors: Mutex::new(BTreeMap::new()),
                    last_reason: Mutex::new(None),
                })
            })
            .collect();
        Poller { upstreams, timeout }
    }
}

impl Collector for Poller {
    fn collect(&self) -> CollectFuture<'_> {
        Box::pin(async move {
            let tasks: Vec<_> = self
                .upstreams
                .iter()
                .map(|state| {
                    let state = state.clone();
                    let timeout = self.timeout;
                    tokio::spawn(async move { poll_one(&state, timeout).await })
                })
                .collect();
            let mut families = Vec::new();
            for task in tasks {
                families.extend(task.await?);
            }
            Ok(families)
        })
    }
}

async fn poll_one(state: &UpstreamState, timeout: Duration) -> Vec<MetricFamily> {
    let started = Instant::now();
    let deadline = started + timeout;
    let name = state.upstream.name().to_string();
    let configured = state.upstream.config.backend;

    let known = *lock(&state.detected);
    let backend = match known {
        Some(b) => Ok(b),
        None => detect::detect(&state.upstream, deadline)
            .await
            .map_err(|e| match e {
                DetectError::Fetch(f) => Failure::fetch("/", &f),
                DetectError::Unauthorized => {
                    Failure::new(Reason::Unauthorized, "GET /: unauthorized")
                }
                DetectError::Unrecognized(m) => Failure::new(Reason::Error, m),
            }),
    };
    let upstream = &state.upstream;
    let (backend, polled) = match backend {
        Ok(b @ Backend::LlamaCpp) => (
            Some(b),
            llama_cpp::poll(upstream, &state.llama, &state.models, deadline).await,
        ),
        Ok(b @ Backend::Ollama) => (
            Some(b),
            ollama::poll(upstream, &state.ollama, &state.models, deadline).await,
        ),
        Ok(b @ Backend::KoboldCpp) => (
            Some(b),
            koboldcpp::poll(upstream, &state.koboldcpp, deadline).await,
        ),
        Ok(b @ Backend::OpenAi) => (
            Some(b),
            openai::poll(upstream, &state.models, deadline).await,
        ),
        Err(failure) => (None, Polled::failed(failure)),
    };
    if known.is_none() {
        *lock(&state.detected) = backend;
    }
    if backend.is_some() {
        *lock(&state.last_backend) = backend;
    }
    // When an auto-detected upstream stops answering, look again next time: the port may be
    // served by the other backend after a restart.
    if configured == BackendChoice::Auto
        && polled
            .failure
            .as_ref()
            .is_some_and(|f| f.reason == Reason::Down)
    {
        *lock(&state.detected) = None;
    }

    if polled.restarted {
        *lock(&state.restarts) += 1;
        common::log::info("upstream restarted", &[("upstream", &name)]);
    }
    for endpoint in &polled.format_errors {
        *lock(&state.format_errors).entry(endpoint).or_insert(0) += 1;
    }
    log_transition(state, &name, polled.failure.as_ref());

    let backend_label = backend
        .or(*lock(&state.last_backend))
        .map(Backend::label)
        .unwrap_or("unknown");
    let mut families = polled.families;
    let up = labels(&[("upstream", &name), ("backend", backend_label)]);
    families.push(
        MetricFamily::gauge(
            "llm_up",
            "Whether the upstream answered and could be read completely (1) or not (0).",
        )
        .with(&up, if polled.failure.is_none() { 1.0 } else { 0.0 }),
    );
    let mut reason = MetricFamily::gauge(
        "llm_down_reason",
        "Why llm_up is 0: down, timeout, loading, unavailable, unauthorized, metrics_disabled or error (1 for the current reason).",
    );
    if let Some(f) = &polled.failure {
        reason.push(
            &[("upstream", name.as_str()), ("reason", f.reason.label())],
            1.0,
        );
    }
    families.push(reason);
    families.push(
        MetricFamily::gauge(
            "llm_upstream_poll_duration_seconds",
            "How long polling the upstream took on this scrape.",
        )
        .with(&[("upstream", &name)], started.elapsed().as_secs_f64()),
    );
    families.push(
        MetricFamily::counter(
            "llm_upstream_restarts_total",
            "Restarts of the upstream seen by the exporter (start marker changed, counters went back, or version changed).",
        )
        .with(&[("upstream", &name)], *lock(&state.restarts) as f64),
    );
    let mut format_errors = MetricFamily::counter(
        "llm_upstream_format_errors_total",
        "Answers from the upstream whose body could not be parsed, by endpoint.",
    );
    for (endpoint, count) in lock(&state.format_errors).iter() {
        format_errors.push(
            &[("upstream", name.as_str()), ("endpoint", endpoint)],
            *count as f64,
        );
    }
    families.push(format_errors);
    families
}

fn log_transition(state: &UpstreamState, name: &str, failure: Option<&Failure>) {
    let mut last = lock(&state.last_reason);
    let now = failure.map(|f| f.reason);
    if *last == now {
        return;
    }
    match failure {
        Some(f) => common::log::warn(
            "upstream not readable",
            &[
                ("upstream", name),
                ("reason", f.reason.label()),
                ("err", &f.message),
            ],
        ),
        None => common::log::info("upstream readable", &[("upstream", name)]),
    }
    *last = now;
}

fn labels<'a>(pairs: &[(&'static str, &'a str)]) -> Vec<(&'static str, &'a str)> {
    pairs.to_vec()
}

/// A poisoned lock only means another scrape panicked mid-update; the data is still usable.
pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
