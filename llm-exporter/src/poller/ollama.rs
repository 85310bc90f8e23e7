//! Polling Ollama, which has no metrics endpoint: `/api/version` for identity, `/api/tags` for the
//! installed models, `/api/ps` for the loaded ones (memory, share in VRAM, time until unload).
//! Loads and unloads are counted by comparing `/api/ps` between polls; model labels are bounded
//! by the upstream's [`ModelTracker`].

use super::llama_cpp::model_size;
use super::models::{loaded_gauge, ModelTracker, OTHER};
use super::{fetch_ok as fetch, json, lock, Failure, Polled};
use crate::config::Backend;
use crate::model_name;
use crate::upstream::Upstream;
use common::MetricFamily;
use serde::Deserialize;
use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::time::Instant;

#[derive(Default)]
pub struct Memory {
    version: Option<String>,
}

#[derive(Deserialize)]
struct Version {
    version: String,
}

#[derive(Deserialize)]
struct ModelList {
    models: Option<Vec<Model>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Model {
    name: String,
    model: String,
    size: Option<f64>,
    size_vram: Option<f64>,
    expires_at: Option<String>,
    context_length: Option<f64>,
    details: Option<Details>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Details {
    format: Option<String>,
    family: Option<String>,
    parameter_size: Option<String>,
    quantization_level: Option<String>,
}

impl Model {
    fn label(&self) -> String {
        let raw = if self.name.is_empty() {
            &self.model
        } else {
            &self.name
        };
        model_name::normalize(Some(Backend::Ollama), raw)
    }
}

/// Each model with its normalized name, in the server's order.
fn named(models: Vec<Model>) -> Vec<(String, Model)> {
    models.into_iter().map(|m| (m.label(), m)).collect()
}

pub async fn poll(
    upstream: &Upstream,
    memory: &Mutex<Memory>,
    models: &Mutex<ModelTracker>,
    deadline: Instant,
) -> Polled {
    let mut format_errors = Vec::new();
    let result = poll_inner(upstream, memory, models, deadline, &mut format_errors).await;
    Polled::from_result(result, format_errors)
}

async fn poll_inner(
    upstream: &Upstream,
    memory: &Mutex<Memory>,
    models: &Mutex<ModelTracker>,
    deadline: Instant,
    format_errors: &mut Vec<&'static str>,
) -> Result<(Vec<MetricFamily>, bool), Failure> {
    let name = upstream.name();
    let version: Version = json(
        "/api/version",
        &fetch(upstream, "/api/version", deadline).await?,
        format_errors,
    )?;
    let (tags, ps) = tokio::join!(
        fetch(upstream, "/api/tags", deadline),
        fetch(upstream, "/api/ps", deadline)
    );
    let installed = named(
        json::<ModelList>("/api/tags", &tags?, format_errors)?
            .models
            .unwrap_or_default(),
    );
    let loaded = named(
        json::<ModelList>("/api/ps", &ps?, format_errors)?
            .models
            .unwrap_or_default(),
    );

    let restarted = {
        let mut memory = lock(memory);
        let restarted = memory
            .version
            .as_ref()
            .is_some_and(|before| *before != version.version);
        memory.version = Some(version.version.clone());
        restarted
    };
    let loaded_names: BTreeSet<String> = loaded.iter().map(|(n, _)| n.clone()).collect();
    let mut tracker = lock(models);
    tracker.observe(
        loaded.iter().map(|(n, _)| n.as_str()),
        installed.iter().map(|(n, _)| n.as_str()),
        Instant::now(),
    );
    tracker.count_transitions(loaded_names.clone());

    let mut families = vec![
        MetricFamily::gauge(
            "llm_backend_info",
            "The upstream's backend, version, model and quantization (value 1).",
        )
        .with(
            &[
                ("upstream", name),
                ("backend", "ollama"),
                ("version", version.version.as_str()),
                ("model", ""),
                ("quant", ""),
            ],
            1.0,
        ),
        MetricFamily::gauge("llm_models_installed", "Models available on the server.")
            .with(&[("upstream", name)], installed.len() as f64),
        MetricFamily::gauge("llm_models_loaded", "Models loaded in memory now.")
            .with(&[("upstream", name)], loaded.len() as f64),
    ];

    let mut info = model_info();
    let mut size = model_size();
    let installed_split = tracker.split(&installed);
    for (label, model) in &installed_split.own {
        let details = model.details.as_ref();
        let d = |f: fn(&Details) -> &Option<String>| {
            details
                .and_then(|d| f(d).as_deref())
                .unwrap_or("")
                .to_string()
        };
        info.push(
            &[
                ("upstream", name),
                ("model", label),
                ("format", d(|d| &d.format).as_str()),
                ("family", d(|d| &d.family).as_str()),
                ("parameter_size", d(|d| &d.parameter_size).as_str()),
                ("quant", d(|d| &d.quantization_level).as_str()),
            ],
            1.0,
        );
        if let Some(bytes) = model.size {
            size.push(&[("upstream", name), ("model", label)], bytes);
        }
    }
    // Beyond the cap: one `other` series holding the sum (no info series: it describes one model).
    if let Some(bytes) = sum(installed_split.other.iter().map(|m| m.size)) {
        size.push(&[("upstream", name), ("model", OTHER)], bytes);
    }
    let all: BTreeSet<&str> = installed
        .iter()
        .chain(loaded.iter())
        .map(|(n, _)| n.as_str())
        .collect();
    families.extend([
        info,
        size,
        loaded_gauge(name, &tracker, &all, &loaded_names),
    ]);
    families.extend(loaded_families(name, &tracker, &loaded));
    families.extend(tracker.counter_families(name));
    Ok((families, restarted))
}

fn model_info() -> MetricFamily {
    MetricFamily::gauge(
        "llm_model_info",
        "An installed model's format, family, size class and quantization (value 1).",
    )
}

/// The sum of the values present, `None` when none is.
fn sum(values: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    values
        .flatten()
        .fold(None, |acc, v| Some(acc.unwrap_or(0.0) + v))
}

fn loaded_families(
    name: &str,
    tracker: &ModelTracker,
    loaded: &[(String, Model)],
) -> Vec<MetricFamily> {
    let mut memory = MetricFamily::gauge(
        "llm_model_memory_bytes",
        "Memory the loaded model takes (weights, KV cache, buffers), in bytes.",
    );
    let mut vram = MetricFamily::gauge(
        "llm_model_vram_bytes",
        "Part of the loaded model's memory in GPU memory, in bytes.",
    );
    let mut offload = MetricFamily::gauge(
        "llm_model_gpu_offload_ratio",
        "Share of the loaded model's memory in GPU memory (1 = fully on the GPU).",
    );
    let mut expires = MetricFamily::gauge(
        "llm_model_expires_in_seconds",
        "Seconds until Ollama unloads the idle model (keep_alive); very large for keep_alive=-1; absent while the model is busy.",
    );
    let mut context = MetricFamily::gauge(
        "llm_context_size",
        "Context length in tokens available to one request (per slot for llama-server).",
    );
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    let split = tracker.split(loaded);
    for (label, model) in &split.own {
        let labels = [("upstream", name), ("model", *label)];
        if let Some(size) = model.size {
            memory.push(&labels, size);
            if let Some(in_vram) = model.size_vram {
                vram.push(&labels, in_vram);
                if size > 0.0 {
                    offload.push(&labels, (in_vram / size).clamp(0.0, 1.0));
                }
            }
        }
        // Ollama sets `expires_at` when a request ends and leaves it while the next one runs:
        // a listed model whose time has passed is busy (an idle one would have been unloaded),
        // and its real expiry is unknown until that request ends.
        if let Some(at) = model.expires_at.as_deref().and_then(parse_rfc3339) {
            if at > now {
                expires.push(&labels, at - now);
            }
        }
        if let Some(n) = model.context_length {
            context.push(&labels, n);
        }
    }
    // Models beyond the cap: their memory summed, the offload of that sum.
    let other = [("upstream", name), ("model", OTHER)];
    let total = sum(split.other.iter().map(|m| m.size));
    let in_vram = sum(split.other.iter().map(|m| m.size_vram));
    if let Some(total) = total {
        memory.push(&other, total);
        if let Some(in_vram) = in_vram {
            vram.push(&other, in_vram);
            if total > 0.0 {
                offload.push(&other, (in_vram / total).clamp(0.0, 1.0));
            }
        }
    }
    vec![memory, vram, offload, expires, context]
}

/// RFC 3339 with optional fraction and a `Z` or `±hh:mm` zone, as Go writes it, to Unix seconds.
pub fn parse_rfc3339(s: &str) -> Option<f64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    let mut rest = &s[19..];
    let mut fraction = 0.0;
    if let Some(after) = rest.strip_prefix('.') {
        let digits = after
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(after.len());
        fraction = format!("0.{}", &after[..digits]).parse().ok()?;
        rest = &after[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let (h, m) = rest[1..].split_once(':')?;
            // Exactly `hh:mm`: a longer number would overflow the arithmetic below.
            let two_digits = |x: &str| x.len() == 2 && x.bytes().all(|b| b.is_ascii_digit());
            if !two_digits(h) || !two_digits(m) {
                return None;
            }
            let (h, m) = (h.parse::<i64>().ok()?, m.parse::<i64>().ok()?);
            if h > 23 || m > 59 {
                return None;
            }
            sign * (h * 3600 + m * 60)
        }
    };
    let days = days_from_civil(year, month, day);
    Some((days * 86_400 + hour * 3600 + minute * 60 + second - offset) as f64 + fraction)
}

/// Howard Hinnant's days_from_civil: days since 1970-01-01.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_timestamps() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0.0));
        assert_eq!(
            parse_rfc3339("2026-11-23T08:59:50.5Z"),
            Some(1_795_424_390.5)
        );
        // -07:00 is seven hours behind UTC.
        assert_eq!(
            parse_rfc3339("2024-06-04T14:38:31-07:00"),
            parse_rfc3339("2024-06-04T21:38:31Z")
        );
        assert!(parse_rfc3339("2318-06-04T14:38:31.83753-07:00").unwrap() > 1e10);
        assert_eq!(parse_rfc3339("yesterday"), None);
        assert_eq!(parse_rfc3339("2024-13-04T14:38:31Z"), None);
        assert_eq!(parse_rfc3339("2024-06-04T14:38:31+7"), None);
        // Hostile offsets are refused, not overflowed.
        assert_eq!(
            parse_rfc3339("2024-06-04T14:38:31+9223372036854775807:00"),
            None
        );
        assert_eq!(
            parse_rfc3339("2024-06-04T14:38:31-00:9223372036854775807"),
            None
        );
        assert_eq!(parse_rfc3339("2024-06-04T14:38:31+99:00"), None);
        assert_eq!(parse_rfc3339("2024-06-04T14:38:31+-1:00"), None);
    }
}
