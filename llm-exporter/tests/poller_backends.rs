//! End to end: the real binary polls the servers beyond a single-model llama-server and Ollama:
//! a router-mode llama-server on its recorded answers, KoboldCpp and a generic OpenAI-compatible
//! server; detected, read through their own routes, and never through the routes they imitate.

mod support;

use common::testing::value;
use support::backends::{koboldcpp, openai, openai_with_key, router, RouterState, KOBOLD_MODEL};
use support::exporter::{golden, start_exporter};
use support::fake::Fake;

fn upstream(name: &str, fake: &Fake) -> String {
    format!("--upstream={name}={}", fake.url())
}

/// Paths the fake was asked that name `model` in their query, or that carry no `?model=` on the
/// routes that need one.
fn asked_about(fake: &Fake, model: &str) -> Vec<String> {
    fake.paths()
        .into_iter()
        .filter(|p| p.contains(&format!("model={model}")))
        .collect()
}

#[test]
fn router_mode_reads_loaded_models_and_never_asks_unloaded_ones() {
    let state = RouterState::with_loaded(&["tiny-a"]);
    let fake = Fake::start(router(state.clone()));
    let exporter = start_exporter(&[upstream("router", &fake)]);
    let metrics = exporter.metrics();
    golden("router.prom", &metrics);
    let v = |series: &str| value(&metrics, series);
    assert_eq!(
        v("llm_up{upstream=\"router\",backend=\"llama.cpp\"}"),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(v("llm_models_installed{upstream=\"router\"}"), Some(2.0));
    assert_eq!(v("llm_models_loaded{upstream=\"router\"}"), Some(1.0));
    assert_eq!(
        v("llm_model_loaded{upstream=\"router\",model=\"tiny-a\"}"),
        Some(1.0)
    );
    assert_eq!(
        v("llm_model_loaded{upstream=\"router\",model=\"tiny-b\"}"),
        Some(0.0)
    );
    // tiny-a's own series, read with ?model=tiny-a.
    assert_eq!(
        v("llamacpp_prompt_tokens_total{upstream=\"router\",model=\"tiny-a\"}"),
        Some(31.0)
    );
    assert_eq!(
        v("llm_context_size{upstream=\"router\",model=\"tiny-a\"}"),
        Some(256.0)
    );
    assert_eq!(
        v("llm_slot_context_used_ratio{upstream=\"router\",model=\"tiny-a\",slot=\"1\"}"),
        Some(38.0 / 256.0)
    );
    assert_eq!(
        v("llm_model_size_bytes{upstream=\"router\",model=\"tiny-a\"}"),
        Some(8_520_960.0)
    );
    // The router stub's n_ctx 0 and model "llama-server" are no model's.
    assert!(!metrics.contains("model=\"llama-server\""), "{metrics}");

    // Every request was recorded: tiny-b's /metrics, /slots, /props were never asked (the
    // router would have loaded it), nor the routes that answer 400 without a model.
    let paths = fake.paths();
    assert!(asked_about(&fake, "tiny-b").is_empty(), "{paths:?}");
    for bare in ["/metrics", "/slots"] {
        assert!(!paths.iter().any(|p| p == bare), "{paths:?}");
    }
    for asked in [
        "/metrics?model=tiny-a",
        "/slots?model=tiny-a",
        "/props?model=tiny-a",
    ] {
        assert!(paths.iter().any(|p| p == asked), "{asked} in {paths:?}");
    }
    assert!(!state.is_loaded("tiny-b"));

    // A second scrape changes nothing of that: still not loaded.
    exporter.metrics();
    assert!(
        asked_about(&fake, "tiny-b").is_empty(),
        "{:?}",
        fake.paths()
    );
    assert!(!state.is_loaded("tiny-b"));
}

#[test]
fn router_models_loaded_and_unloaded_between_polls() {
    let state = RouterState::with_loaded(&[]);
    let fake = Fake::start(router(state.clone()));
    let exporter = start_exporter(&[upstream("router", &fake)]);
    let loads = "llm_model_loads_total{upstream=\"router\",model=\"tiny-b\"}";
    let unloads = "llm_model_unloads_total{upstream=\"router\",model=\"tiny-a\"}";
    let first = exporter.metrics();
    assert_eq!(
        value(&first, "llm_up{upstream=\"router\",backend=\"llama.cpp\"}"),
        Some(1.0),
        "{first}"
    );
    assert_eq!(
        value(&first, "llm_models_loaded{upstream=\"router\"}"),
        Some(0.0)
    );
    // Nothing loaded: no model was asked anything.
    assert!(
        !fake.paths().iter().any(|p| p.contains("model=")),
        "{:?}",
        fake.paths()
    );
    assert!(state.loaded.lock().unwrap().is_empty());

    // Something (a client) loads both models: both are read, and counted as loads.
    state.loaded.lock().unwrap().extend(["tiny-a", "tiny-b"]);
    let second = exporter.metrics();
    assert_eq!(value(&second, loads), Some(1.0), "{second}");
    assert_eq!(
        value(
            &second,
            "llamacpp_tokens_predicted_total{upstream=\"router\",model=\"tiny-b\"}"
        ),
        Some(0.0)
    );
    assert!(fake.paths().iter().any(|p| p == "/metrics?model=tiny-b"));

    // tiny-a is unloaded (idle timeout, or `POST /models/unload`): counted, and no longer asked.
    state.loaded.lock().unwrap().remove("tiny-a");
    let before = asked_about(&fake, "tiny-a").len();
    let third = exporter.metrics();
    assert_eq!(value(&third, unloads), Some(1.0), "{third}");
    assert_eq!(
        value(
            &third,
            "llm_model_loaded{upstream=\"router\",model=\"tiny-a\"}"
        ),
        Some(0.0)
    );
    assert_eq!(
        asked_about(&fake, "tiny-a").len(),
        before,
        "{:?}",
        fake.paths()
    );
    assert!(!state.is_loaded("tiny-a"));
    assert!(!third.contains("llamacpp_prompt_tokens_total{upstream=\"router\",model=\"tiny-a\"}"));
}

#[test]
fn koboldcpp_is_not_taken_for_ollama_and_its_invented_values_are_not_exported() {
    let fake = Fake::start(koboldcpp());
    let exporter = start_exporter(&[upstream("kobold", &fake)]);
    let metrics = exporter.metrics();
    golden("koboldcpp.prom", &metrics);
    assert_eq!(
        value(
            &metrics,
            "llm_up{upstream=\"kobold\",backend=\"koboldcpp\"}"
        ),
        Some(1.0),
        "{metrics}"
    );
    // Its own version (not the 0.7.0 it gives as Ollama) and its model, named once.
    assert!(
        metrics.contains(&format!(
            "llm_backend_info{{upstream=\"kobold\",backend=\"koboldcpp\",version=\"1.102\",model=\"{KOBOLD_MODEL}\",quant=\"\"}} 1"
        )),
        "{metrics}"
    );
    assert!(!metrics.contains("0.7.0"), "{metrics}");
    // The made-up size (394998579 bytes) and 2055 expiry of its /api/tags and /api/ps.
    for invented in [
        "llm_model_expires_in_seconds",
        "llm_model_size_bytes",
        "llm_model_memory_bytes",
        "llm_model_vram_bytes",
        ":latest",
        "394998579",
    ] {
        assert!(!metrics.contains(invented), "{invented} in:\n{metrics}");
    }
    let paths = fake.paths();
    assert!(
        !paths.iter().any(|p| p == "/api/tags" || p == "/api/ps"),
        "{paths:?}"
    );
    assert_eq!(
        value(
            &metrics,
            &format!("llm_queue_depth{{upstream=\"kobold\",model=\"{KOBOLD_MODEL}\"}}")
        ),
        Some(2.0)
    );
}

#[test]
fn a_generic_openai_server_is_up_with_its_models_named_as_it_names_them() {
    let auto = Fake::start(openai());
    let fixed = Fake::start(openai());
    let exporter = start_exporter(&[
        upstream("vllm", &auto),
        upstream("fixed", &fixed),
        "--upstream.backend=fixed=openai".into(),
    ]);
    let metrics = exporter.metrics();
    golden("openai.prom", &metrics);
    for name in ["vllm", "fixed"] {
        assert_eq!(
            value(
                &metrics,
                &format!("llm_up{{upstream=\"{name}\",backend=\"openai\"}}")
            ),
            Some(1.0),
            "{metrics}"
        );
        assert_eq!(
            value(
                &metrics,
                &format!("llm_models_installed{{upstream=\"{name}\"}}")
            ),
            Some(2.0)
        );
    }
    // Names as the server gives them: no Ollama `:latest` on a name without a tag.
    assert!(metrics.contains("model=\"sql-lora\""), "{metrics}");
    assert!(!metrics.contains(":latest"), "{metrics}");
    assert_eq!(
        value(
            &metrics,
            "llm_context_size{upstream=\"vllm\",model=\"Qwen/Qwen3-8B\"}"
        ),
        Some(32768.0)
    );
    // A fixed backend is not detected: /v1/models is all it is asked.
    assert!(
        fixed.paths().iter().all(|p| p == "/v1/models"),
        "{:?}",
        fixed.paths()
    );
}

#[test]
fn a_generic_openai_server_behind_an_api_key() {
    let guarded = Fake::start(openai_with_key(Some("v11m-key")));
    let keyed = Fake::start(openai_with_key(Some("v11m-key")));
    let dir = std::env::temp_dir().join(format!("llm-exporter-openai-key-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key_file = dir.join("key");
    std::fs::write(&key_file, "v11m-key\n").unwrap();
    let exporter = start_exporter(&[
        upstream("nokey", &guarded),
        upstream("keyed", &keyed),
        format!("--upstream.api-key-file=keyed={}", key_file.display()),
    ]);
    let metrics = exporter.metrics();
    // Detection gets as far as /v1/models, which refuses: unauthorized, not "unknown server".
    assert_eq!(
        value(
            &metrics,
            "llm_down_reason{upstream=\"nokey\",reason=\"unauthorized\"}"
        ),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        value(&metrics, "llm_up{upstream=\"keyed\",backend=\"openai\"}"),
        Some(1.0),
        "{metrics}"
    );
    assert!(!metrics.contains("v11m-key") && !exporter.stderr().contains("v11m-key"));
    std::fs::remove_dir_all(&dir).unwrap();
}
