//! Polling llama-server: `/health`, `/props`, then `/metrics`, `/v1/models` and `/slots` together.
//! Its counters are re-exported as `llamacpp_*` with `upstream` and `model` labels (llama-server
//! has no model label of its own). Its windowed throughput gauges are left out on purpose: every
//! `GET /metrics` resets their window, so they are wrong whenever two parties scrape, and rates
//! belong to `rate()` over the counters.

use super::models::ModelTracker;
use super::router;
use super::{json, lock, Failure, Polled, Reason};
use crate::config::Backend;
use crate::model_name;
use crate::prom_text;
use crate::upstream::{Reply, Upstream};
use common::metrics::LabelName;
use common::{MetricFamily, MetricType};
use hyper::StatusCode;
use serde::Deserialize;
use std::sync::Mutex;
use tokio::time::Instant;

/// The gauges llama-server averages over the time since the previous `/metrics` call.
const WINDOWED: &[&str] = &[
    "llamacpp:prompt_tokens_seconds",
    "llamacpp:predicted_tokens_seconds",
];

/// What restart detection compares between polls.
#[derive(Default)]
pub struct Memory {
    /// `Process-Start-Time-Unix` (really a monotonic microsecond stamp of the start).
    start_marker: Option<String>,
    decode_total: Option<f64>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct Props {
    /// `router` on a server started with `--models-dir` (many models, loaded on demand).
    role: Option<String>,
    pub build_info: Option<String>,
    model_alias: Option<String>,
    model_path: Option<String>,
    model_ftype: Option<String>,
    total_slots: Option<f64>,
    is_sleeping: Option<bool>,
    endpoint_slots: Option<bool>,
    endpoint_metrics: Option<bool>,
    default_generation_settings: Option<GenerationSettings>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct GenerationSettings {
    n_ctx: Option<f64>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Models {
    data: Vec<ModelEntry>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ModelEntry {
    id: String,
    meta: Option<ModelMeta>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct ModelMeta {
    n_params: Option<f64>,
    pub size: Option<f64>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Slot {
    id: i64,
    n_ctx: Option<f64>,
    is_processing: Option<bool>,
    /// Builds from 2024 said `state` (1 = processing) instead.
    state: Option<i64>,
    /// The tokens in the slot's context: the prompt and, while generating, the tokens generated
    /// so far (b11312 records 21 with 6 prompt tokens and `next_token.n_decoded` 15), so nothing
    /// is added to it.
    n_prompt_tokens: Option<f64>,
}

impl Slot {
    fn busy(&self) -> bool {
        self.is_processing.unwrap_or(self.state == Some(1))
    }
}

pub type Outcome = (Vec<MetricFamily>, Option<Failure>, bool);

pub async fn poll(
    upstream: &Upstream,
    memory: &Mutex<Memory>,
    models: &Mutex<ModelTracker>,
    deadline: Instant,
) -> Polled {
    let mut format_errors = Vec::new();
    let result = poll_inner(upstream, memory, models, deadline, &mut format_errors).await;
    let (families, failure, restarted) = match result {
        Ok(ok) => ok,
        Err(failure) => (Vec::new(), Some(failure), false),
    };
    Polled {
        families,
        failure,
        restarted,
        format_errors,
    }
}

pub async fn poll_inner(
    upstream: &Upstream,
    memory: &Mutex<Memory>,
    models: &Mutex<ModelTracker>,
    deadline: Instant,
    format_errors: &mut Vec<&'static str>,
) -> Result<Outcome, Failure> {
    let name = upstream.name();
    let health = get(upstream, "/health", deadline).await?;
    if health.status == StatusCode::SERVICE_UNAVAILABLE {
        return Err(Failure::new(
            Reason::Loading,
            "GET /health: 503 (loading model)",
        ));
    }
    if health.status != StatusCode::OK {
        return Err(Failure::status("/health", &health));
    }

    let props_reply = get(upstream, "/props", deadline).await?;
    check_status("/props", &props_reply)?;
    let props: Props = json("/props", &props_reply, format_errors)?;
    if props.role.as_deref() == Some("router") {
        // One server, many models loaded on demand: its /metrics and /slots answer per model.
        return Ok(router::poll(upstream, &props, models, deadline, format_errors).await);
    }
    let raw_model = props
        .model_alias
        .as_deref()
        .or(props.model_path.as_deref())
        .unwrap_or("");
    let model = model_name::normalize(Some(Backend::LlamaCpp), raw_model);

    let (read, models_reply) = tokio::join!(
        read_model(upstream, &props, "", &model, Some(memory), deadline),
        get(upstream, "/v1/models", deadline)
    );
    let (mut families, failure, restarted) = read.outcome;
    format_errors.extend(read.format_errors);
    let base = [("upstream", name), ("model", model.as_str())];
    families.push(backend_info(
        name,
        props.build_info.as_deref().unwrap_or(""),
        &model,
        props.model_ftype.as_deref().unwrap_or(""),
    ));

    // Model facts from /v1/models are a bonus: their absence costs nothing else.
    if let Ok(reply) = &models_reply {
        if reply.status == StatusCode::OK {
            if let Ok(models) = json::<Models>("/v1/models", reply, format_errors) {
                if let Some(meta) = models
                    .data
                    .iter()
                    .find(|m| model_name::normalize(Some(Backend::LlamaCpp), &m.id) == model)
                    .or(models.data.first())
                    .and_then(|m| m.meta.as_ref())
                {
                    families.extend(meta_families(meta, &base));
                }
            }
        }
    }
    Ok((families, failure, restarted))
}

pub fn backend_info(upstream: &str, version: &str, model: &str, quant: &str) -> MetricFamily {
    MetricFamily::gauge(
        "llm_backend_info",
        "The upstream's backend, version, model and quantization (value 1).",
    )
    .with(
        &[
            ("upstream", upstream),
            ("backend", "llama.cpp"),
            ("version", version),
            ("model", model),
            ("quant", quant),
        ],
        1.0,
    )
}

/// Size and parameter count from a `/v1/models` entry's `meta`.
pub fn meta_families(meta: &ModelMeta, base: &[(&'static str, &str); 2]) -> Vec<MetricFamily> {
    let mut out = Vec::new();
    if let Some(size) = meta.size {
        out.push(model_size().with(base, size));
    }
    if let Some(n) = meta.n_params {
        out.push(
            MetricFamily::gauge("llm_model_parameters", "Number of parameters of the model.")
                .with(base, n),
        );
    }
    out
}

/// What reading one model's `/metrics` and `/slots` gave.
pub struct ModelRead {
    pub outcome: Outcome,
    pub format_errors: Vec<&'static str>,
}

/// Reads one model's series: its slots and counters, and the gauges its `/props` gives. `query`
/// selects the model on a router (`?model=...`), empty otherwise. `memory`, when given, detects
/// restarts of the server from its start marker and counters.
pub async fn read_model(
    upstream: &Upstream,
    props: &Props,
    query: &str,
    model: &str,
    memory: Option<&Mutex<Memory>>,
    deadline: Instant,
) -> ModelRead {
    let mut format_errors = Vec::new();
    let name = upstream.name();
    let sleeping = props.is_sleeping.unwrap_or(false);
    // `/slots` wakes a sleeping server (the model reloads), so it is left alone while asleep.
    let want_slots = !sleeping && props.endpoint_slots != Some(false);
    let metrics_path = format!("/metrics{query}");
    let slots_path = format!("/slots{query}");
    let (metrics, slots) = tokio::join!(get(upstream, &metrics_path, deadline), async {
        if want_slots {
            Some(get(upstream, &slots_path, deadline).await)
        } else {
            None
        }
    });

    let base = [("upstream", name), ("model", model)];
    let mut families = vec![MetricFamily::gauge(
        "llm_model_sleeping",
        "Whether llama-server has unloaded the model after --sleep-idle-seconds (1) or not (0).",
    )
    .with(&base, if sleeping { 1.0 } else { 0.0 })];
    if let Some(n_ctx) = props
        .default_generation_settings
        .as_ref()
        .and_then(|g| g.n_ctx)
    {
        families.push(context_size().with(&base, n_ctx));
    }
    if let Some(total) = props.total_slots {
        families.push(slots_total().with(&base, total));
    }
    if let Some(Ok(reply)) = &slots {
        if reply.status == StatusCode::OK {
            if let Ok(slots) = json::<Vec<Slot>>("/slots", reply, &mut format_errors) {
                families.extend(slot_families(&slots, &base));
            }
        }
    }

    // /metrics decides llm_up: without it the counters are missing.
    let mut failure = None;
    let mut restarted = false;
    match metrics {
        Err(e) => failure = Some(e),
        Ok(reply) if reply.status == StatusCode::NOT_IMPLEMENTED => {
            failure = Some(Failure::new(
                Reason::MetricsDisabled,
                format!("GET {metrics_path}: 501 (llama-server runs without --metrics)"),
            ));
        }
        Ok(reply) if reply.status == StatusCode::SERVICE_UNAVAILABLE => {
            failure = Some(Failure::new(
                Reason::Loading,
                format!("GET {metrics_path}: 503"),
            ));
        }
        Ok(reply) if reply.status != StatusCode::OK => {
            failure = Some(Failure::status(&metrics_path, &reply));
        }
        Ok(reply) => match std::str::from_utf8(&reply.body)
            .map_err(|e| e.to_string())
            .and_then(prom_text::parse)
        {
            Err(e) => {
                format_errors.push("/metrics");
                failure = Some(Failure::new(
                    Reason::Error,
                    format!("GET {metrics_path}: {e}"),
                ));
            }
            Ok(parsed) => {
                if let Some(memory) = memory {
                    restarted = restart_seen(&reply, &parsed, memory);
                }
                families.extend(reexport(&parsed, &base));
            }
        },
    }
    if failure.is_none() && props.endpoint_metrics == Some(false) {
        // Should not happen (the 501 comes first), but /props is the documented source.
        failure = Some(Failure::new(
            Reason::MetricsDisabled,
            "/props: endpoint_metrics false",
        ));
    }
    ModelRead {
        outcome: (families, failure, restarted),
        format_errors,
    }
}

pub async fn get(upstream: &Upstream, path: &str, deadline: Instant) -> Result<Reply, Failure> {
    upstream
        .get(path, deadline)
        .await
        .map_err(|e| Failure::fetch(path, &e))
}

pub fn check_status(path: &str, reply: &Reply) -> Result<(), Failure> {
    match reply.status {
        StatusCode::OK => Ok(()),
        StatusCode::SERVICE_UNAVAILABLE => Err(Failure::new(
            Reason::Loading,
            format!("GET {path}: 503 (loading model)"),
        )),
        _ => Err(Failure::status(path, reply)),
    }
}

fn context_size() -> MetricFamily {
    MetricFamily::gauge(
        "llm_context_size",
        "Context length in tokens available to one request (per slot for llama-server).",
    )
}

fn slots_total() -> MetricFamily {
    MetricFamily::gauge("llm_slots_total", "Parallel request slots of the server.")
}

pub fn model_size() -> MetricFamily {
    MetricFamily::gauge(
        "llm_model_size_bytes",
        "Size of the model's weights in bytes.",
    )
}

fn slot_families(slots: &[Slot], base: &[(&'static str, &str); 2]) -> Vec<MetricFamily> {
    // An empty list says nothing about free slots (a server answering `[]` is not full): no
    // series then, rather than `llm_slots_available 0`, which would fire NoAvailableSlots.
    if slots.is_empty() {
        return Vec::new();
    }
    let busy = slots.iter().filter(|s| s.busy()).count() as f64;
    let total = slots.len() as f64;
    let mut used = MetricFamily::gauge(
        "llm_slot_context_used_ratio",
        "Share of a slot's context taken by its current or last request: (prompt + generated tokens) / n_ctx.",
    );
    for slot in slots {
        let n_ctx = slot.n_ctx.unwrap_or(0.0);
        if n_ctx > 0.0 {
            let tokens = slot.n_prompt_tokens.unwrap_or(0.0);
            let id = slot.id.to_string();
            used.push(
                &[base[0], base[1], ("slot", id.as_str())],
                (tokens / n_ctx).min(1.0),
            );
        }
    }
    vec![
        MetricFamily::gauge("llm_slots_processing", "Slots working on a request now.")
            .with(base, busy),
        MetricFamily::gauge("llm_slots_available", "Slots free for a new request now.")
            .with(base, total - busy),
        used,
    ]
}

/// Detects a restart: the start marker header changed, or (without it) a counter went back.
fn restart_seen(reply: &Reply, parsed: &[prom_text::Family], memory: &Mutex<Memory>) -> bool {
    let marker = reply.header("process-start-time-unix").map(str::to_string);
    let decode = parsed
        .iter()
        .find(|f| f.name == "llamacpp:n_decode_total")
        .and_then(|f| f.samples.first())
        .map(|s| s.value);
    let mut memory = lock(memory);
    let restarted = match (&memory.start_marker, &marker) {
        (Some(before), Some(now)) => before != now,
        _ => matches!((memory.decode_total, decode), (Some(before), Some(now)) if now < before),
    };
    memory.start_marker = marker;
    memory.decode_total = decode;
    restarted
}

/// `llamacpp:x` becomes `llamacpp_x` with `upstream` and `model` first among its labels.
fn reexport(parsed: &[prom_text::Family], base: &[(&'static str, &str); 2]) -> Vec<MetricFamily> {
    let mut out = Vec::new();
    let find = |n: &str| {
        parsed
            .iter()
            .find(|f| f.name == n)
            .and_then(|f| f.samples.first())
            .map(|s| s.value)
    };
    if let Some(deferred) = find("llamacpp:requests_deferred") {
        out.push(
            MetricFamily::gauge(
                "llm_queue_depth",
                "Requests waiting for a free slot, as the server reports it.",
            )
            .with(base, deferred),
        );
    }
    if let (Some(cached), Some(processed)) = (
        find("llamacpp:prompt_tokens_cached_total"),
        find("llamacpp:prompt_tokens_total"),
    ) {
        if cached + processed > 0.0 {
            out.push(
                MetricFamily::gauge(
                    "llm_prompt_cache_hit_ratio",
                    "Share of prompt tokens served from the cache since the server started; use rate() of the llamacpp_prompt_tokens*_total counters for recent values.",
                )
                .with(base, cached / (cached + processed)),
            );
        }
    }
    for family in parsed {
        if WINDOWED.contains(&family.name.as_str()) || family.samples.is_empty() {
            continue;
        }
        let plain = family.name.replace(':', "_");
        let name = if plain.starts_with("llamacpp_") {
            plain
        } else {
            format!("llamacpp_{plain}")
        };
        // Typed counter but a running maximum (n_tokens_max), or an average: a gauge then.
        let kind = match family.kind.as_str() {
            "counter" if name.ends_with("_total") => MetricType::Counter,
            "counter" | "gauge" => MetricType::Gauge,
            _ => MetricType::Untyped,
        };
        let mut exported = MetricFamily::new(name, family.help.clone(), kind);
        for sample in &family.samples {
            // The server's own label names are only known at run time: owned.
            let mut labels: Vec<(LabelName, &str)> =
                base.iter().map(|&(k, v)| (LabelName::from(k), v)).collect();
            labels.extend(
                sample
                    .labels
                    .iter()
                    .filter(|(k, _)| k != "upstream" && k != "model")
                    .map(|(k, v)| (LabelName::from(k.clone()), v.as_str())),
            );
            exported.push(&labels, sample.value);
        }
        out.push(exported);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: [(&str, &str); 2] = [("upstream", "u"), ("model", "m")];

    /// Generation A (2024 to May 2025) as the reference quotes it, with C++ `%g` numbers.
    const GEN_A: &str = "# HELP llamacpp:prompt_tokens_total Number of prompt tokens processed.\n# TYPE llamacpp:prompt_tokens_total counter\nllamacpp:prompt_tokens_total 1.23457e+06\n# HELP llamacpp:n_busy_slots_per_decode Average number of busy slots per llama_decode() call\n# TYPE llamacpp:n_busy_slots_per_decode counter\nllamacpp:n_busy_slots_per_decode 1.5\n# HELP llamacpp:prompt_tokens_seconds Average prompt throughput in tokens/s.\n# TYPE llamacpp:prompt_tokens_seconds gauge\nllamacpp:prompt_tokens_seconds 424.925\n# HELP llamacpp:kv_cache_usage_ratio KV-cache usage. 1 means 100 percent usage.\n# TYPE llamacpp:kv_cache_usage_ratio gauge\nllamacpp:kv_cache_usage_ratio 0.25\n# HELP llamacpp:requests_deferred Number of requests deferred.\n# TYPE llamacpp:requests_deferred gauge\nllamacpp:requests_deferred 3\n";

    /// Generation C's optional labelled family.
    const SPEC: &str = "# HELP llamacpp:spec_decode_num_accepted_tokens_per_pos_total Accepted tokens per draft position\n# TYPE llamacpp:spec_decode_num_accepted_tokens_per_pos_total counter\nllamacpp:spec_decode_num_accepted_tokens_per_pos_total{position=\"0\"} 812\n";

    fn find<'a>(families: &'a [MetricFamily], name: &str) -> Option<&'a MetricFamily> {
        families.iter().find(|f| f.name == name)
    }

    #[test]
    fn generation_a_by_name() {
        let out = reexport(&prom_text::parse(GEN_A).unwrap(), &BASE);
        let prompt = find(&out, "llamacpp_prompt_tokens_total").unwrap();
        assert_eq!(prompt.kind, MetricType::Counter);
        assert_eq!(prompt.samples[0].value, 1_234_570.0);
        assert_eq!(
            prompt.samples[0].labels,
            vec![
                ("upstream".into(), "u".into()),
                ("model".into(), "m".into())
            ]
        );
        // Typed counter without _total: an average, so a gauge.
        assert_eq!(
            find(&out, "llamacpp_n_busy_slots_per_decode").unwrap().kind,
            MetricType::Gauge
        );
        assert_eq!(
            find(&out, "llamacpp_kv_cache_usage_ratio").unwrap().samples[0].value,
            0.25
        );
        assert!(find(&out, "llamacpp_prompt_tokens_seconds").is_none());
        assert_eq!(find(&out, "llm_queue_depth").unwrap().samples[0].value, 3.0);
        // Generation A has no cached-token counter: no hit ratio rather than a wrong one.
        assert!(find(&out, "llm_prompt_cache_hit_ratio").is_none());
    }

    #[test]
    fn labelled_families_keep_their_labels() {
        let out = reexport(&prom_text::parse(SPEC).unwrap(), &BASE);
        let family = find(
            &out,
            "llamacpp_spec_decode_num_accepted_tokens_per_pos_total",
        )
        .unwrap();
        assert_eq!(family.samples[0].labels[2], ("position".into(), "0".into()));
    }

    fn reply_with_marker(marker: Option<&str>) -> Reply {
        let mut headers = hyper::HeaderMap::new();
        if let Some(m) = marker {
            headers.insert("process-start-time-unix", m.parse().unwrap());
        }
        Reply {
            status: StatusCode::OK,
            headers,
            body: bytes::Bytes::new(),
        }
    }

    #[test]
    fn restarts_from_marker_or_counters_going_back() {
        let body = |n: u64| {
            prom_text::parse(&format!(
                "# TYPE llamacpp:n_decode_total counter\nllamacpp:n_decode_total {n}\n"
            ))
            .unwrap()
        };
        let memory = Mutex::new(Memory::default());
        assert!(!restart_seen(&reply_with_marker(None), &body(100), &memory));
        assert!(!restart_seen(&reply_with_marker(None), &body(150), &memory));
        assert!(restart_seen(&reply_with_marker(None), &body(3), &memory));
        // With the marker, the marker decides.
        assert!(!restart_seen(
            &reply_with_marker(Some("7")),
            &body(5),
            &memory
        ));
        assert!(!restart_seen(
            &reply_with_marker(Some("7")),
            &body(0),
            &memory
        ));
        assert!(restart_seen(
            &reply_with_marker(Some("8")),
            &body(0),
            &memory
        ));
    }

    #[test]
    fn an_empty_slot_list_gives_no_slot_series() {
        assert!(slot_families(&[], &BASE).is_empty());
    }

    #[test]
    fn slots_in_every_recorded_and_older_shape() {
        let busy: Vec<Slot> = serde_json::from_str(include_str!(
            "../../tests/fixtures/llama-server/slots-busy.body"
        ))
        .unwrap();
        let out = slot_families(&busy, &BASE);
        assert_eq!(
            find(&out, "llm_slots_processing").unwrap().samples[0].value,
            2.0
        );
        // Slot 0: 21 tokens in its context of 256 (6 of the prompt, 15 generated so far, which
        // `next_token.n_decoded` repeats and must not be added again).
        let used = find(&out, "llm_slot_context_used_ratio").unwrap();
        assert_eq!(used.samples[0].value, 21.0 / 256.0);
        // 2024 builds: `state` instead of `is_processing`, `next_token` an object.
        let old: Vec<Slot> = serde_json::from_str(
            r#"[{"id":0,"n_ctx":100,"state":1,"n_prompt_tokens":10,"next_token":{"n_decoded":5}},{"id":1,"n_ctx":100,"state":0}]"#,
        )
        .unwrap();
        let out = slot_families(&old, &BASE);
        assert_eq!(
            find(&out, "llm_slots_processing").unwrap().samples[0].value,
            1.0
        );
        assert_eq!(
            find(&out, "llm_slots_available").unwrap().samples[0].value,
            1.0
        );
        assert_eq!(
            find(&out, "llm_slot_context_used_ratio").unwrap().samples[0].value,
            0.1
        );
    }
}
