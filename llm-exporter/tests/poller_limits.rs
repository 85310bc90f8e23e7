//! End to end: a model server that lists far too many models, new names on every poll, or names
//! that normalize alike, against the real binary. The model labels stay bounded by
//! `--upstream.max-models` (the rest summed as `other`) and no series is written twice.

mod support;

use common::testing::value;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use support::backends::ollama_lists;
use support::exporter::start_exporter;
use support::fake::Fake;

/// An Ollama `/api/tags` or `/api/ps` body listing `names`, each with a size of 1000 bytes (and
/// nothing else, so that 100,000 of them fit in the poller's 16 MiB body cap).
fn list(names: impl Iterator<Item = String>) -> String {
    let models: Vec<String> = names
        .map(|n| {
            let n = serde_json::to_string(&n).unwrap();
            format!("{{\"name\":{n},\"size\":1000,\"size_vram\":1000}}")
        })
        .collect();
    format!("{{\"models\":[{}]}}", models.join(","))
}

fn count_series(metrics: &str, family: &str) -> usize {
    metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{family}{{")))
        .count()
}

/// Every sample line's name and labels, checked to be unique.
fn assert_no_duplicate_series(metrics: &str) {
    let mut seen = BTreeSet::new();
    for line in metrics.lines().filter(|l| !l.starts_with('#')) {
        let (series, _) = line.rsplit_once(' ').unwrap();
        assert!(
            seen.insert(series.to_string()),
            "twice: {series}\n{metrics}"
        );
    }
}

#[test]
fn a_hundred_thousand_installed_models_stay_within_the_cap() {
    let tags = Arc::new(list((0..100_000).map(|i| format!("m{i:06}:latest"))));
    let ps = list(["m099999:latest".to_string()].into_iter());
    let fake = Fake::start(ollama_lists(move || tags.to_string(), move || ps.clone()));
    let exporter = start_exporter(&[
        format!("--upstream=big={}", fake.url()),
        "--upstream.timeout=30s".into(),
    ]);
    let metrics = exporter.metrics();
    assert_eq!(
        value(&metrics, "llm_up{upstream=\"big\",backend=\"ollama\"}"),
        Some(1.0),
        "{}",
        exporter.stderr()
    );
    // The true count, but at most 100 (the default cap) model labels, and `other` for the rest.
    assert_eq!(
        value(&metrics, "llm_models_installed{upstream=\"big\"}"),
        Some(100_000.0)
    );
    assert_eq!(count_series(&metrics, "llm_model_info"), 100);
    assert_eq!(count_series(&metrics, "llm_model_size_bytes"), 101);
    assert_eq!(count_series(&metrics, "llm_model_loaded"), 101);
    // The loaded model has a label of its own although it sorts last.
    assert_eq!(
        value(
            &metrics,
            "llm_model_loaded{upstream=\"big\",model=\"m099999:latest\"}"
        ),
        Some(1.0)
    );
    // Sums over `other` keep totals true: 99,900 models of 1000 bytes, none of them loaded.
    assert_eq!(
        value(
            &metrics,
            "llm_model_size_bytes{upstream=\"big\",model=\"other\"}"
        ),
        Some(99_900_000.0)
    );
    assert_eq!(
        value(
            &metrics,
            "llm_model_loaded{upstream=\"big\",model=\"other\"}"
        ),
        Some(0.0)
    );
    assert!(metrics.len() < 100_000, "{} bytes", metrics.len());
    assert_no_duplicate_series(&metrics);
}

#[test]
fn new_names_on_every_poll_do_not_pile_up_in_the_load_counters() {
    let poll = Arc::new(AtomicUsize::new(0));
    let counter = poll.clone();
    let fake = Fake::start(ollama_lists(
        || list(std::iter::empty()),
        move || {
            let round = counter.fetch_add(1, Ordering::SeqCst);
            list((0..1000).map(move |i| format!("r{round}-{i}:latest")))
        },
    ));
    let exporter = start_exporter(&[
        format!("--upstream=churn={}", fake.url()),
        "--upstream.max-models=50".into(),
    ]);
    let mut metrics = String::new();
    for _ in 0..40 {
        metrics = exporter.metrics();
    }
    assert!(poll.load(Ordering::SeqCst) >= 40);
    // 40 polls of 1,000 new names: at most 50 labelled names and `other`.
    assert!(
        count_series(&metrics, "llm_model_loads_total") <= 51,
        "{metrics}"
    );
    assert!(count_series(&metrics, "llm_model_unloads_total") <= 51);
    // Every load after the first poll counted, under `other` for the names beyond the cap.
    let other = value(
        &metrics,
        "llm_model_loads_total{upstream=\"churn\",model=\"other\"}",
    )
    .unwrap();
    assert_eq!(other, 39_000.0);
    assert_no_duplicate_series(&metrics);
}

#[test]
fn names_that_normalize_alike_give_one_series() {
    let names = ["llama3", "llama3:latest", "", " ", "\u{7}", "mistral"];
    let tags = list(names.iter().map(|n| n.to_string()));
    let ps = list(
        ["llama3", "llama3:latest", ""]
            .iter()
            .map(|n| n.to_string()),
    );
    let fake = Fake::start(ollama_lists(move || tags.clone(), move || ps.clone()));
    let exporter = start_exporter(&[format!("--upstream=home={}", fake.url())]);
    for _ in 0..2 {
        let metrics = exporter.metrics();
        assert_eq!(
            value(&metrics, "llm_up{upstream=\"home\",backend=\"ollama\"}"),
            Some(1.0),
            "{metrics}"
        );
        assert_no_duplicate_series(&metrics);
        assert_eq!(
            value(
                &metrics,
                "llm_model_loaded{upstream=\"home\",model=\"llama3:latest\"}"
            ),
            Some(1.0)
        );
        assert_eq!(
            value(
                &metrics,
                "llm_model_loaded{upstream=\"home\",model=\"unknown\"}"
            ),
            Some(1.0)
        );
        assert_eq!(count_series(&metrics, "llm_model_info"), 3, "{metrics}");
    }
}
