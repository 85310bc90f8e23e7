//! Polling KoboldCpp through its own routes. It also answers Ollama's `/api/version` (always
//! `0.7.0`), `/api/tags` and `/api/ps` (one model twice, a made-up size of 394998579 bytes and an
//! expiry in 2055) and llama-server's `/props`; none of those values is read. What is real:
//! `/api/extra/version` (its name and version), `/v1/models` (the one loaded model),
//! `/api/extra/true_max_context_length` and `/api/extra/perf` (queue and generation count).

use super::{fetch_ok as fetch, json, lock, Failure, Polled};
use crate::config::Backend;
use crate::model_name;
use crate::upstream::Upstream;
use common::MetricFamily;
use serde::Deserialize;
use std::sync::Mutex;
use tokio::time::Instant;

/// What restart detection compares between polls.
#[derive(Default)]
pub struct Memory {
    version: Option<String>,
    generations: Option<f64>,
}

#[derive(Deserialize)]
struct Version {
    version: String,
}

#[derive(Deserialize)]
struct Models {
    data: Vec<Entry>,
}

#[derive(Deserialize)]
struct Entry {
    id: String,
}

#[derive(Deserialize)]
struct Value {
    value: f64,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Perf {
    queue: Option<f64>,
    total_gens: Option<f64>,
}

pub async fn poll(upstream: &Upstream, memory: &Mutex<Memory>, deadline: Instant) -> Polled {
    let mut format_errors = Vec::new();
    let result = poll_inner(upstream, memory, deadline, &mut format_errors).await;
    Polled::from_result(result, format_errors)
}

async fn poll_inner(
    upstream: &Upstream,
    memory: &Mutex<Memory>,
    deadline: Instant,
    format_errors: &mut Vec<&'static str>,
) -> Result<(Vec<MetricFamily>, bool), Failure> {
    let name = upstream.name();
    let (version, models, context, perf) = tokio::join!(
        fetch(upstream, "/api/extra/version", deadline),
        fetch(upstream, "/v1/models", deadline),
        fetch(upstream, "/api/extra/true_max_context_length", deadline),
        fetch(upstream, "/api/extra/perf", deadline),
    );
    let version: Version = json("/api/extra/version", &version?, format_errors)?;
    let models: Models = json("/v1/models", &models?, format_errors)?;
    let raw_model = models.data.first().map(|e| e.id.as_str()).unwrap_or("");
    let model = model_name::normalize(Some(Backend::KoboldCpp), raw_model);
    let base = [("upstream", name), ("model", model.as_str())];

    let mut families = vec![
        MetricFamily::gauge(
            "llm_backend_info",
            "The upstream's backend, version, model and quantization (value 1).",
        )
        .with(
            &[
                ("upstream", name),
                ("backend", "koboldcpp"),
                ("version", version.version.as_str()),
                ("model", model.as_str()),
                ("quant", ""),
            ],
            1.0,
        ),
        MetricFamily::gauge("llm_models_loaded", "Models loaded in memory now.")
            .with(&[("upstream", name)], 1.0),
        MetricFamily::gauge(
            "llm_model_loaded",
            "Whether the model is loaded in memory (1) or only installed (0).",
        )
        .with(&base, 1.0),
    ];
    // The context length and the queue are extras: without them the rest still holds.
    if let Ok(reply) = &context {
        if let Ok(n) = json::<Value>("/api/extra/true_max_context_length", reply, format_errors) {
            families.push(
                MetricFamily::gauge(
                    "llm_context_size",
                    "Context length in tokens available to one request (per slot for llama-server).",
                )
                .with(&base, n.value),
            );
        }
    }
    let mut generations = None;
    if let Ok(reply) = &perf {
        if let Ok(perf) = json::<Perf>("/api/extra/perf", reply, format_errors) {
            if let Some(queue) = perf.queue {
                families.push(
                    MetricFamily::gauge(
                        "llm_queue_depth",
                        "Requests waiting for a free slot, as the server reports it.",
                    )
                    .with(&base, queue),
                );
            }
            if let Some(total) = perf.total_gens {
                generations = Some(total);
                families.push(
                    MetricFamily::counter(
                        "koboldcpp_generations_total",
                        "Text generations KoboldCpp finished since it started (its /api/extra/perf total_gens).",
                    )
                    .with(&base, total),
                );
            }
        }
    }

    let restarted = {
        let mut memory = lock(memory);
        let version_changed = memory
            .version
            .as_ref()
            .is_some_and(|before| *before != version.version);
        let went_back = matches!((memory.generations, generations), (Some(a), Some(b)) if b < a);
        memory.version = Some(version.version);
        memory.generations = generations;
        version_changed || went_back
    };
    Ok((families, restarted))
}
