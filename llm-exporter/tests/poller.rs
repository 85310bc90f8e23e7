//! End to end: the real binary polls fake llama-servers and Ollamas on loopback; its /metrics is
//! compared with golden files (UPDATE_GOLDEN=1 rewrites them).

mod support;

use support::exporter::{assert_golden, free_port, value, Exporter};
use support::fake::Fake;
use support::servers::{llama, ollama, Llama, LlamaMode, Ollama, OllamaMode};

fn arg(flag: &str, name: &str, value: &str) -> String {
    format!("--{flag}={name}={value}")
}

#[test]
fn llama_server_ready_golden() {
    let fake = Fake::start(llama(Llama::default()));
    let exporter = Exporter::start(&[arg("upstream", "local", &fake.url())]);
    let metrics = exporter.metrics();
    assert_golden("llama-ready.prom", &metrics);
    // The windowed throughput gauges are never passed on.
    assert!(!metrics.contains("tokens_seconds"), "{metrics}");
}

#[test]
fn ollama_ready_golden() {
    let fake = Fake::start(ollama(Ollama::default()));
    let exporter = Exporter::start(&[arg("upstream", "home", &fake.url())]);
    let metrics = exporter.metrics();
    assert_golden("ollama-ready.prom", &metrics);
    // The far-future expiry of keep_alive=-1 and a near one both read as seconds from now.
    let far = value(
        &metrics,
        "llm_model_expires_in_seconds{upstream=\"home\",model=\"mistral:latest\"}",
    )
    .unwrap();
    assert!(far > 9e9, "{far}");
}

/// Every fault at once: one exporter, one upstream per fault. Each reports `llm_up 0` with its
/// reason, nothing else is lost, and the scrape comes back in time although one upstream hangs.
#[test]
fn faults_golden() {
    let fakes: Vec<(&str, Fake)> = vec![
        (
            "loading",
            Fake::start(llama(Llama {
                mode: LlamaMode::Loading,
                ..Default::default()
            })),
        ),
        (
            "metrics-off",
            Fake::start(llama(Llama {
                mode: LlamaMode::MetricsDisabled,
                ..Default::default()
            })),
        ),
        (
            "unauthorized",
            Fake::start(llama(Llama {
                api_key: Some("secret"),
                ..Default::default()
            })),
        ),
        (
            "quoted",
            Fake::start(llama(Llama {
                mode: LlamaMode::QuotedMetrics,
                ..Default::default()
            })),
        ),
        (
            "truncated",
            Fake::start(llama(Llama {
                mode: LlamaMode::TruncatedMetrics,
                ..Default::default()
            })),
        ),
        (
            "bad-props",
            Fake::start(llama(Llama {
                mode: LlamaMode::TruncatedProps,
                ..Default::default()
            })),
        ),
        (
            "error500",
            Fake::start(llama(Llama {
                mode: LlamaMode::ServerError,
                ..Default::default()
            })),
        ),
        (
            "slow",
            Fake::start(llama(Llama {
                mode: LlamaMode::Hang,
                ..Default::default()
            })),
        ),
        (
            "ollama-503",
            Fake::start(ollama(Ollama {
                mode: OllamaMode::Unavailable,
                ..Default::default()
            })),
        ),
        (
            "ollama-truncated",
            Fake::start(ollama(Ollama {
                mode: OllamaMode::TruncatedTags,
                ..Default::default()
            })),
        ),
        (
            "ollama-500",
            Fake::start(ollama(Ollama {
                mode: OllamaMode::ServerError,
                ..Default::default()
            })),
        ),
    ];
    let mut args: Vec<String> = fakes
        .iter()
        .map(|(name, fake)| arg("upstream", name, &fake.url()))
        .collect();
    // Nothing listens on a port just freed.
    args.push(arg(
        "upstream",
        "down",
        &format!("http://127.0.0.1:{}", free_port()),
    ));
    // The hanging one is given its backend, so the timeout is that of polling, not detection.
    args.push(arg("upstream.backend", "slow", "llama.cpp"));
    args.push("--upstream.timeout=700ms".into());
    let exporter = Exporter::start(&args);
    let started = std::time::Instant::now();
    let metrics = exporter.metrics();
    let took = started.elapsed();
    assert_golden("faults.prom", &metrics);
    assert!(
        took < std::time::Duration::from_secs(8),
        "the scrape waited on the hanging upstream for {took:?}"
    );
    // A second scrape: the hanging upstream does not block it either, and reasons hold.
    let again = exporter.metrics();
    assert_eq!(
        value(
            &again,
            "llm_down_reason{upstream=\"slow\",reason=\"timeout\"}"
        ),
        Some(1.0)
    );
    assert!(!exporter.log().contains("panicked"), "{}", exporter.log());
}

#[test]
fn api_key_from_a_file_is_sent_and_never_shown() {
    let fake = Fake::start(llama(Llama {
        api_key: Some("s3cr3t-key"),
        ..Default::default()
    }));
    let dir = std::env::temp_dir().join(format!("llm-exporter-key-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key_file = dir.join("key");
    std::fs::write(&key_file, "s3cr3t-key\n").unwrap();
    let exporter = Exporter::start(&[
        arg("upstream", "guarded", &fake.url()),
        arg(
            "upstream.api-key-file",
            "guarded",
            key_file.to_str().unwrap(),
        ),
        "--log.level=debug".into(),
    ]);
    let metrics = exporter.metrics();
    assert_eq!(
        value(
            &metrics,
            "llm_up{upstream=\"guarded\",backend=\"llama.cpp\"}"
        ),
        Some(1.0),
        "{metrics}"
    );
    let sent = fake.seen.lock().unwrap().clone();
    let metrics_req = sent.iter().find(|s| s.path == "/metrics").unwrap();
    assert_eq!(
        metrics_req.headers.get("authorization").unwrap(),
        "Bearer s3cr3t-key"
    );
    assert!(!metrics.contains("s3cr3t"));
    assert!(!exporter.log().contains("s3cr3t"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_empty_slot_list_is_not_read_as_no_free_slot() {
    let fake = Fake::start(llama(Llama {
        mode: LlamaMode::EmptySlots,
        ..Default::default()
    }));
    let exporter = Exporter::start(&[arg("upstream", "local", &fake.url())]);
    let metrics = exporter.metrics();
    assert_eq!(
        value(&metrics, "llm_up{upstream=\"local\",backend=\"llama.cpp\"}"),
        Some(1.0),
        "{metrics}"
    );
    assert!(fake.paths().iter().any(|p| p == "/slots"));
    for family in [
        "llm_slots_available{",
        "llm_slots_processing{",
        "llm_slot_context_used_ratio{",
    ] {
        assert!(!metrics.contains(family), "{family} in:\n{metrics}");
    }
    // The slot count from /props is still there.
    assert!(metrics.contains("llm_slots_total{"), "{metrics}");
}

#[test]
fn restarts_are_detected_by_the_start_marker() {
    let fake = Fake::start(llama(Llama {
        start_marker: Some("1000"),
        ..Default::default()
    }));
    let exporter = Exporter::start(&[arg("upstream", "local", &fake.url())]);
    let series = "llm_upstream_restarts_total{upstream=\"local\"}";
    assert_eq!(value(&exporter.metrics(), series), Some(0.0));
    assert_eq!(value(&exporter.metrics(), series), Some(0.0));
    fake.set(llama(Llama {
        start_marker: Some("2000"),
        ..Default::default()
    }));
    assert_eq!(value(&exporter.metrics(), series), Some(1.0));
}

#[test]
fn a_sleeping_server_is_not_woken_by_polling_slots() {
    let fake = Fake::start(llama(Llama {
        props: "sleeping-props",
        metrics: "sleeping-metrics",
        ..Default::default()
    }));
    let exporter = Exporter::start(&[arg("upstream", "local", &fake.url())]);
    let metrics = exporter.metrics();
    assert_eq!(
        value(
            &metrics,
            "llm_model_sleeping{upstream=\"local\",model=\"tiny-random-llama.gguf\"}"
        ),
        Some(1.0),
        "{metrics}"
    );
    assert!(
        !fake.paths().iter().any(|p| p == "/slots"),
        "{:?}",
        fake.paths()
    );
}

#[test]
fn ollama_loads_and_unloads_are_counted_between_polls() {
    let fake = Fake::start(ollama(Ollama {
        ps: "ps-empty",
        ..Default::default()
    }));
    let exporter = Exporter::start(&[arg("upstream", "home", &fake.url())]);
    let loads = "llm_model_loads_total{upstream=\"home\",model=\"mistral:latest\"}";
    let unloads = "llm_model_unloads_total{upstream=\"home\",model=\"mistral:latest\"}";
    let first = exporter.metrics();
    assert_eq!(value(&first, loads), Some(0.0));
    assert_eq!(
        value(&first, "llm_models_loaded{upstream=\"home\"}"),
        Some(0.0)
    );
    fake.set(ollama(Ollama::default()));
    let second = exporter.metrics();
    assert_eq!(value(&second, loads), Some(1.0));
    assert_eq!(
        value(&second, "llm_models_loaded{upstream=\"home\"}"),
        Some(2.0)
    );
    fake.set(ollama(Ollama {
        ps: "ps-empty",
        ..Default::default()
    }));
    let third = exporter.metrics();
    assert_eq!(value(&third, unloads), Some(1.0));
    assert_eq!(value(&third, loads), Some(1.0));
}

#[test]
fn an_upstream_that_comes_back_is_detected_again() {
    // Reserve a port, start with nothing on it, then serve Ollama there.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let exporter = Exporter::start(&[arg(
        "upstream",
        "later",
        &format!("http://127.0.0.1:{port}"),
    )]);
    let first = exporter.metrics();
    assert_eq!(
        value(
            &first,
            "llm_down_reason{upstream=\"later\",reason=\"down\"}"
        ),
        Some(1.0),
        "{first}"
    );
    assert_eq!(
        value(&first, "llm_up{upstream=\"later\",backend=\"unknown\"}"),
        Some(0.0)
    );
    let fake = Fake::start_on(port, ollama(Ollama::default()));
    let second = exporter.metrics();
    assert_eq!(
        value(&second, "llm_up{upstream=\"later\",backend=\"ollama\"}"),
        Some(1.0),
        "{second}"
    );

    // Ollama goes away: the series keeps its backend, so `llm_up{backend="ollama"} == 0` (the
    // OllamaDown alert) fires, while the exporter looks again for whatever comes back.
    // Every scrape of the outage, not only the first (the alert waits 1m).
    fake.stop();
    for _ in 0..3 {
        let third = exporter.metrics();
        assert_eq!(
            value(&third, "llm_up{upstream=\"later\",backend=\"ollama\"}"),
            Some(0.0),
            "{third}"
        );
        assert_eq!(
            value(
                &third,
                "llm_down_reason{upstream=\"later\",reason=\"down\"}"
            ),
            Some(1.0)
        );
        assert!(!third.contains("backend=\"unknown\""), "{third}");
    }

    // A llama-server takes the port: detected afresh, not taken for the old Ollama.
    let _llama = Fake::start_on(port, llama(Llama::default()));
    let fourth = exporter.metrics();
    assert_eq!(
        value(&fourth, "llm_up{upstream=\"later\",backend=\"llama.cpp\"}"),
        Some(1.0),
        "{fourth}"
    );
}

#[test]
fn bad_flags_are_refused_at_start() {
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_llm-exporter"))
            .args(args)
            .output()
            .unwrap()
    };
    for (args, expect) in [
        (vec![], "no upstream"),
        (vec!["--upstream=nourl"], "--upstream"),
        (vec!["--upstream=a=https://x"], "https"),
        (
            vec!["--upstream=a=http://x:1", "--proxy=b=:1"],
            "no upstream named 'b'",
        ),
        (
            vec!["--upstream=a=http://x:1", "--upstream.backend=a=vllm"],
            "--upstream.backend",
        ),
        (
            vec![
                "--upstream=a=http://x:1",
                "--upstream.api-key-file=a=/nonexistent",
            ],
            "cannot read",
        ),
        (
            vec!["--upstream=a=http://x:1", "--upstream=a=http://y:1"],
            "twice",
        ),
        (
            vec!["--upstream=a=http://x:1", "--upstream.timeout=0s"],
            "--upstream.timeout",
        ),
    ] {
        let out = run(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} started");
        assert!(stderr.contains(expect), "{args:?}: {stderr}");
    }
}

#[test]
fn upstreams_from_the_toml_config_file() {
    let fake = Fake::start(ollama(Ollama::default()));
    let dir = std::env::temp_dir().join(format!("llm-exporter-toml-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("llm.toml");
    std::fs::write(
        &file,
        format!(
            "[upstream]\nurl = [\"home={}\"]\nbackend = [\"home=ollama\"]\ntimeout = \"2s\"\n",
            fake.url()
        ),
    )
    .unwrap();
    let exporter = Exporter::start(&[format!("--config.file={}", file.display())]);
    let metrics = exporter.metrics();
    assert_eq!(
        value(&metrics, "llm_up{upstream=\"home\",backend=\"ollama\"}"),
        Some(1.0),
        "{metrics}"
    );
    // A fixed backend needs no detection request.
    assert!(!fake.paths().iter().any(|p| p == "/"));
    std::fs::remove_dir_all(&dir).unwrap();
}
