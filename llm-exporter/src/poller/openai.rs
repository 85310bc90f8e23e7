//! Polling any other server with the OpenAI API (vLLM, SGLang, LM Studio, llama-swap, LocalAI,
//! TabbyAPI, ...). `GET /v1/models` is the one status route they all share: it gives `llm_up`,
//! the model list and, where the server says it (vLLM's `max_model_len`), the context length.
//! Model names are kept as the server gives them (no Ollama `:latest`). vLLM and SGLang also
//! serve their own Prometheus `/metrics`, which is better scraped by Prometheus directly.

use super::models::ModelTracker;
use super::{fetch_ok, json, lock, Failure, Polled};
use crate::config::Backend;
use crate::model_name;
use crate::upstream::Upstream;
use common::MetricFamily;
use serde::Deserialize;
use std::sync::Mutex;
use tokio::time::Instant;

#[derive(Deserialize)]
struct Models {
    data: Vec<Entry>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Entry {
    id: String,
    /// vLLM's (and SGLang's) context length of the served model.
    max_model_len: Option<f64>,
}

pub async fn poll(upstream: &Upstream, models: &Mutex<ModelTracker>, deadline: Instant) -> Polled {
    let mut format_errors = Vec::new();
    let result = poll_inner(upstream, models, deadline, &mut format_errors).await;
    // A generic server gives no sign of a restart.
    Polled::from_result(result.map(|families| (families, false)), format_errors)
}

async fn poll_inner(
    upstream: &Upstream,
    models: &Mutex<ModelTracker>,
    deadline: Instant,
    format_errors: &mut Vec<&'static str>,
) -> Result<Vec<MetricFamily>, Failure> {
    let name = upstream.name();
    let reply = fetch_ok(upstream, "/v1/models", deadline).await?;
    let list: Models = json("/v1/models", &reply, format_errors)?;
    let entries: Vec<(String, Entry)> = list
        .data
        .into_iter()
        .map(|e| (model_name::normalize(Some(Backend::OpenAi), &e.id), e))
        .collect();

    let mut tracker = lock(models);
    tracker.observe(
        std::iter::empty(),
        entries.iter().map(|(n, _)| n.as_str()),
        Instant::now(),
    );
    let mut info = MetricFamily::gauge(
        "llm_model_info",
        "An installed model's format, family, size class and quantization (value 1).",
    );
    let mut context = MetricFamily::gauge(
        "llm_context_size",
        "Context length in tokens available to one request (per slot for llama-server).",
    );
    // The list says what the server serves, not what it holds in memory (llama-swap and LM
    // Studio list models they would load), so there is no loaded state here; models beyond the
    // cap are only counted.
    for (label, entry) in tracker.split(&entries).own {
        info.push(
            &[
                ("upstream", name),
                ("model", label),
                ("format", ""),
                ("family", ""),
                ("parameter_size", ""),
                ("quant", ""),
            ],
            1.0,
        );
        if let Some(n) = entry.max_model_len {
            context.push(&[("upstream", name), ("model", label)], n);
        }
    }
    Ok(vec![
        MetricFamily::gauge(
            "llm_backend_info",
            "The upstream's backend, version, model and quantization (value 1).",
        )
        .with(
            &[
                ("upstream", name),
                ("backend", "openai"),
                ("version", ""),
                ("model", ""),
                ("quant", ""),
            ],
            1.0,
        ),
        MetricFamily::gauge("llm_models_installed", "Models available on the server.")
            .with(&[("upstream", name)], entries.len() as f64),
        info,
        context,
    ])
}
