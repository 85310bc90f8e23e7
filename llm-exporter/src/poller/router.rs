//! Polling a llama-server in router mode (`--models-dir`: one server, many models, each loaded on
//! demand in a process of its own). Its `/props` is a stub (`"role":"router"`, `n_ctx` 0), and
//! `/metrics` and `/slots` answer 400 unless `?model=` names a model. `/v1/models` lists every
//! model with its state (`status.value`: `unloaded`, `loading`, `loaded`, `failed`).
//!
//! The router loads a model when anything asks for it, `/metrics?model=` included (recorded in
//! b11312: `router-metrics-tiny-b-unloaded`, then `router-v1-models-final`), so only models the
//! list says are `loaded` are ever asked for their `/props`, `/metrics` and `/slots`; polling
//! every model would load every model on the disk.

use super::llama_cpp::{
    backend_info, check_status, get, meta_families, model_size, read_model, ModelMeta, Outcome,
    Props,
};
use super::models::{loaded_gauge, ModelTracker, OTHER};
use super::{json, lock, Failure};
use crate::config::Backend;
use crate::model_name;
use crate::upstream::Upstream;
use common::MetricFamily;
use serde::Deserialize;
use std::collections::BTreeSet;
use std::sync::Mutex;
use tokio::task::JoinSet;
use tokio::time::Instant;

#[derive(Deserialize, Default)]
#[serde(default)]
struct Models {
    data: Vec<Entry>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Entry {
    id: String,
    status: Option<Status>,
    /// Present for loaded models.
    meta: Option<ModelMeta>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Status {
    value: String,
}

impl Entry {
    fn loaded(&self) -> bool {
        self.status.as_ref().is_some_and(|s| s.value == "loaded")
    }
}

pub async fn poll(
    upstream: &Upstream,
    props: &Props,
    models: &Mutex<ModelTracker>,
    deadline: Instant,
    format_errors: &mut Vec<&'static str>,
) -> Outcome {
    match poll_inner(upstream, props, models, deadline, format_errors).await {
        Ok(outcome) => outcome,
        Err(failure) => (Vec::new(), Some(failure), false),
    }
}

async fn poll_inner(
    upstream: &Upstream,
    props: &Props,
    models: &Mutex<ModelTracker>,
    deadline: Instant,
    format_errors: &mut Vec<&'static str>,
) -> Result<Outcome, Failure> {
    let name = upstream.name();
    let reply = get(upstream, "/v1/models", deadline).await?;
    check_status("/v1/models", &reply)?;
    let list: Models = json("/v1/models", &reply, format_errors)?;
    let entries: Vec<(String, Entry)> = list
        .data
        .into_iter()
        .map(|e| (model_name::normalize(Some(Backend::LlamaCpp), &e.id), e))
        .collect();
    let loaded: BTreeSet<String> = entries
        .iter()
        .filter(|(_, e)| e.loaded())
        .map(|(n, _)| n.clone())
        .collect();

    let mut families = vec![
        backend_info(name, props.build_info.as_deref().unwrap_or(""), "", ""),
        MetricFamily::gauge("llm_models_installed", "Models available on the server.")
            .with(&[("upstream", name)], entries.len() as f64),
        MetricFamily::gauge("llm_models_loaded", "Models loaded in memory now.").with(
            &[("upstream", name)],
            entries.iter().filter(|(_, e)| e.loaded()).count() as f64,
        ),
    ];
    // The loaded models with a label of their own: the ones read below. (`id` as the router
    // knows it for `?model=`, the label as the poller writes it.)
    let mut to_read: Vec<(String, String)> = Vec::new();
    {
        let mut tracker = lock(models);
        tracker.observe(
            loaded.iter().map(String::as_str),
            entries.iter().map(|(n, _)| n.as_str()),
            Instant::now(),
        );
        tracker.count_transitions(loaded.clone());
        let all: BTreeSet<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
        families.push(loaded_gauge(name, &tracker, &all, &loaded));
        let split = tracker.split(&entries);
        let mut size = model_size();
        for (label, entry) in &split.own {
            if let Some(meta) = entry.meta.as_ref().filter(|_| entry.loaded()) {
                families.extend(meta_families(meta, &[("upstream", name), ("model", label)]));
            }
            if entry.loaded() {
                to_read.push((entry.id.clone(), label.to_string()));
            }
        }
        let other_sizes: Vec<f64> = split
            .other
            .iter()
            .filter(|e| e.loaded())
            .filter_map(|e| e.meta.as_ref().and_then(|m| m.size))
            .collect();
        if !other_sizes.is_empty() {
            size.push(
                &[("upstream", name), ("model", OTHER)],
                other_sizes.iter().sum(),
            );
            families.push(size);
        }
        families.extend(tracker.counter_families(name));
    }

    // Each loaded model's own series, all models at once.
    let mut reads = JoinSet::new();
    for (id, label) in to_read {
        let upstream = upstream.clone();
        reads.spawn(async move { read_one(&upstream, &id, &label, deadline).await });
    }
    let mut failure = None;
    while let Some(done) = reads.join_next().await {
        let (outcome, errors) = match done {
            Ok(read) => read,
            Err(e) => (
                (
                    Vec::new(),
                    Some(Failure::new(
                        super::Reason::Error,
                        format!("reading a model: {e}"),
                    )),
                    false,
                ),
                Vec::new(),
            ),
        };
        let (model_families, model_failure, _) = outcome;
        families.extend(model_families);
        format_errors.extend(errors);
        // The first failure decides llm_up's reason; the others are in the log line's model.
        if failure.is_none() {
            failure = model_failure;
        }
    }
    Ok((families, failure, false))
}

/// One loaded model: its `/props`, then its `/metrics` and `/slots`, each with `?model=`.
async fn read_one(
    upstream: &Upstream,
    id: &str,
    label: &str,
    deadline: Instant,
) -> (Outcome, Vec<&'static str>) {
    let query = format!("?model={}", query_value(id));
    let mut format_errors = Vec::new();
    let props_path = format!("/props{query}");
    let props = match get(upstream, &props_path, deadline)
        .await
        .and_then(|reply| {
            check_status(&props_path, &reply)?;
            json::<Props>("/props", &reply, &mut format_errors)
        }) {
        Ok(props) => props,
        Err(failure) => return ((Vec::new(), Some(failure), false), format_errors),
    };
    let read = read_model(upstream, &props, &query, label, None, deadline).await;
    format_errors.extend(read.format_errors);
    (read.outcome, format_errors)
}

/// Percent-encodes a query value: everything but RFC 3986's unreserved characters.
fn query_value(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for b in raw.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_names_are_encoded_for_the_query() {
        assert_eq!(query_value("tiny-a"), "tiny-a");
        assert_eq!(
            query_value("org/Qwen3 8B:Q4_K_M&x=1"),
            "org%2FQwen3%208B%3AQ4_K_M%26x%3D1"
        );
        assert_eq!(query_value("é"), "%C3%A9");
    }

    #[test]
    fn states_from_the_recorded_list() {
        let list: Models = serde_json::from_str(include_str!(
            "../../tests/fixtures/llama-server/router-v1-models-after.body"
        ))
        .unwrap();
        let states: Vec<(&str, bool)> = list
            .data
            .iter()
            .map(|e| (e.id.as_str(), e.loaded()))
            .collect();
        assert_eq!(states, [("tiny-a", true), ("tiny-b", false)]);
        assert!(list.data[0].meta.is_some() && list.data[1].meta.is_none());
    }
}
