//! End to end: the real binary polls fake llama-servers and Ollamas on loopback; its /metrics is
//! compared with golden files (UPDATE_GOLDEN=1 rewrites them).

mod support;

use common::testing::{assert_no_panic, free_port, value};
use support::exporter::{golden, start_exporter};
use support::fake::Fake;
use support::servers::{llama, ollama, Llama, LlamaMode, Ollama, OllamaMode};

fn arg(flag: &str, name: &str, value: &str) -> String {
    format!("--{flag}={name}={value}")
}

#[test]
fn llama_server_ready_golden() {
    let fake = Fake::start(llama(Llama::default()));
    let exporter = start_exporter(&[arg("upstream", "local", &fake.url())]);
    let metrics = exporter.metrics();
    golden("llama-ready.prom", &metrics);
    // The windowed throughput gauges are never passed on.
    assert!(!metrics.contains("tokens_seconds"), "{metrics}");
}

#[test]
fn ollama_ready_golden() {
    let fake = Fake::start(ollama(Ollama::default()));
    let exporter = start_exporter(&[arg("upstream", "home", &fake.url())]);
    let metrics = exporter.metrics();
    golden("ollama-ready.prom", &metrics);
    // The far-future expiry of keep_alive=-1 and a near one both read as seconds from now.
    let far = value(
        &metrics,
        "llm_model_expires_in_seconds{upstream=\"home\",model=\"mistral:latest\"}",
    )
    .unwrap();
    assert!(far > 9e9, "{far}");
    // llama3.2 is still listed although its expires_at (2026-11-23) has passed: Ollama leaves
    // the time of the previous request's end while a request runs, so it is busy and its expiry
    // unknown, not 0 ("about to unload").
    assert_eq!(
        value(
            &metrics,
            "llm_model_loaded{upstream=\"home\",model=\"llama3.2:latest\"}"
        ),
        Some(1.0)
    );
    assert!(
        !metrics
            .contains("llm_model_expires_in_seconds{upstream=\"home\",model=\"llama3.2:latest\"}"),
        "{metrics}"
    );
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
    let exporter = start_exporter(&args);
    let started = std::time::Instant::now();
    let metrics = exporter.metrics();
    let took = started.elapsed();
    golden("faults.prom", &metrics);
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
    assert_no_panic(&exporter);
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
    let exporter = start_exporter(&[
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
    assert!(!exporter.stderr().contains("s3cr3t"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_empty_slot_list_is_not_read_as_no_free_slot() {
    let fake = Fake::start(llama(Llama {
        mode: LlamaMode::EmptySlots,
        ..Default::default()
    }));
    let exporter = start_exporter(&[arg("upstream", "local", &fake.url())]);
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
    let exporter = start_exporter(&[arg("upstream", "local", &fake.url())]);
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
    let exporter = start_exporter(&[arg("upstream", "local", &fake.url())]);
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
    let exporter = start_exporter(&[arg("upstream", "home", &fake.url())]);
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
    // A port with nothing on it, then Ollama there. From below the ephemeral range (this test
    // failed once with a port from bind(":0")): a port there can be taken by another test's
    // connection, or come back as the exporter's own source port, so that its connection to
    // the closed port connects to itself.
    let port = free_port();
    let exporter = start_exporter(&[arg(
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
        (
            vec!["--upstream=a=http://x:1", "--proxy.threads=0"],
            "invalid value '0' for --proxy.threads",
        ),
        (
            vec!["--upstream=a=http://x:1", "--proxy.threads=many"],
            "--proxy.threads",
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
    let exporter = start_exporter(&[format!("--config.file={}", file.display())]);
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

/// A POST through a proxy on loopback, with `Connection: close`; the status and body.
fn post_through(port: u16, path: &str, headers: &str, body: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(15)))
        .unwrap();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\n{headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (status, body.to_string())
}

#[test]
fn upstream_tables_in_the_toml_config_file() {
    let guarded = Fake::start(llama(Llama {
        api_key: Some("t0ml-key"),
        ..Default::default()
    }));
    let home = Fake::start(ollama(Ollama::default()));
    let dir = std::env::temp_dir().join(format!("llm-exporter-tables-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key_file = dir.join("llama.key");
    std::fs::write(&key_file, "t0ml-key\n").unwrap();
    let proxy_port = free_port();
    let file = dir.join("llm.toml");
    std::fs::write(
        &file,
        format!(
            "[[upstream]]\nname = \"llama\"\nurl = \"{}\"\nbackend = \"llama.cpp\"\napi-key-file = \"{}\"\nproxy = \"127.0.0.1:{proxy_port}\"\n\n[[upstream]]\nname = \"home\"\nurl = \"{}\"\n",
            guarded.url(),
            key_file.display(),
            home.url()
        ),
    )
    .unwrap();
    let exporter = start_exporter(&[format!("--config.file={}", file.display())]);
    let metrics = exporter.metrics();
    assert_eq!(
        value(&metrics, "llm_up{upstream=\"llama\",backend=\"llama.cpp\"}"),
        Some(1.0),
        "{metrics}"
    );
    // Auto-detected: no backend in its table.
    assert_eq!(
        value(&metrics, "llm_up{upstream=\"home\",backend=\"ollama\"}"),
        Some(1.0),
        "{metrics}"
    );
    // The key from the file went out as a bearer token; a fixed backend needs no detection.
    let sent = guarded.seen.lock().unwrap().clone();
    let slots = sent.iter().find(|s| s.path == "/slots").unwrap();
    assert_eq!(slots.headers["authorization"], "Bearer t0ml-key");
    assert!(!sent.iter().any(|s| s.path == "/"));
    // The proxy listens where the table says and measures what passes.
    let (status, _) = post_through(
        proxy_port,
        "/v1/chat/completions",
        "Authorization: Bearer t0ml-key\r\n",
        "{\"messages\":[]}",
    );
    assert_eq!(status, 200);
    let metrics = exporter.metrics();
    assert_eq!(
        value(&metrics, "llm_requests_total{upstream=\"llama\",model=\"tiny-random-llama.gguf\",route=\"/v1/chat/completions\",status=\"success\",code=\"200\"}"),
        Some(1.0),
        "{metrics}"
    );
    assert!(!metrics.contains("t0ml-key") && !exporter.stderr().contains("t0ml-key"));

    // Mistakes in a table are start-up errors that name the setting.
    let refused = |text: &str, expect: &str| {
        std::fs::write(&file, text).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_llm-exporter"))
            .arg(format!("--config.file={}", file.display()))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{text} started");
        assert!(stderr.contains(expect), "{text}: {stderr}");
    };
    refused("[[upstream]]\nurl = \"http://x:1\"\n", "needs a name");
    refused("[[upstream]]\nname = \"a\"\n", "needs a url");
    refused(
        "[[upstream]]\nname = \"a\"\nurl = \"http://x:1\"\nmodel = \"m\"\n",
        "unknown key 'model'",
    );
    refused(
        "[[upstream]]\nname = \"a\"\nurl = \"http://x:1\"\nbackend = \"vllm\"\n",
        "--upstream.backend",
    );
    refused(
        "[[upstream]]\nname = \"a\"\nurl = \"http://x:1\"\n[[upstream]]\nname = \"a\"\nurl = \"http://y:1\"\n",
        "twice",
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The shipped example, with its commented backend and proxy lines switched on, starts and works.
#[test]
fn the_shipped_config_example_is_valid() {
    let llama_fake = Fake::start(llama(Llama::default()));
    let ollama_fake = Fake::start(ollama(Ollama::default()));
    let proxy_port = free_port();
    let shipped = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../packaging/etc/llm-exporter/config.toml"
    ))
    .unwrap();
    let text = shipped
        .replace("# backend = [", "backend = [")
        .replace("# proxy = [", "proxy = [")
        .replace("http://127.0.0.1:8080", &llama_fake.url())
        .replace("http://127.0.0.1:11434", &ollama_fake.url())
        .replace("127.0.0.1:8081", &format!("127.0.0.1:{proxy_port}"));
    assert!(text.contains("\nproxy = [") && text.contains("\nbackend = ["));
    let dir = std::env::temp_dir().join(format!("llm-exporter-shipped-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("config.toml");
    // The exporter started on `text` polls both upstreams and proxies to llama-server.
    let serves_both = |text: &str| {
        std::fs::write(&file, text).unwrap();
        let exporter = start_exporter(&[format!("--config.file={}", file.display())]);
        let metrics = exporter.metrics();
        assert_eq!(
            value(&metrics, "llm_up{upstream=\"llama\",backend=\"llama.cpp\"}"),
            Some(1.0),
            "{text}\n{metrics}"
        );
        assert_eq!(
            value(&metrics, "llm_up{upstream=\"ollama\",backend=\"ollama\"}"),
            Some(1.0),
            "{metrics}"
        );
        let (status, _) = post_through(proxy_port, "/completion", "", "{\"prompt\":\"x\"}");
        assert_eq!(status, 200);
    };
    serves_both(&text);

    // Its commented [[upstream]] form, switched on instead of the [upstream] table.
    let before_table = shipped.split("\n[upstream]\n").next().unwrap();
    let tables: String = shipped
        .split_once("# [[upstream]]")
        .map(|(_, rest)| format!("# [[upstream]]{rest}"))
        .unwrap()
        .lines()
        .map(|l| l.strip_prefix('#').unwrap_or(l).trim_start())
        .map(|l| format!("{l}\n"))
        .collect();
    let text = format!("{before_table}\n{tables}")
        .replace("http://127.0.0.1:8080", &llama_fake.url())
        .replace("http://127.0.0.1:11434", &ollama_fake.url())
        .replace("127.0.0.1:8081", &format!("127.0.0.1:{proxy_port}"));
    // The key file it names does not exist here.
    let text = text.replace("api-key-file = ", "# api-key-file = ");
    assert_eq!(text.matches("[[upstream]]").count(), 2, "{text}");
    serves_both(&text);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A web page where a model server should be: every upstream reports `llm_up 0` with reason
/// `error`, the unparsable bodies are counted, and nothing panics.
#[test]
fn an_html_page_instead_of_a_model_server() {
    let page = || {
        Fake::start(llama(Llama {
            mode: LlamaMode::Html,
            ..Default::default()
        }))
    };
    let (auto, as_llama, as_ollama) = (page(), page(), page());
    let exporter = start_exporter(&[
        arg("upstream", "auto", &auto.url()),
        arg("upstream", "as-llama", &as_llama.url()),
        arg("upstream", "as-ollama", &as_ollama.url()),
        arg("upstream.backend", "as-llama", "llama.cpp"),
        arg("upstream.backend", "as-ollama", "ollama"),
    ]);
    let metrics = exporter.metrics();
    for (name, backend) in [
        ("auto", "unknown"),
        ("as-llama", "llama.cpp"),
        ("as-ollama", "ollama"),
    ] {
        assert_eq!(
            value(
                &metrics,
                &format!("llm_up{{upstream=\"{name}\",backend=\"{backend}\"}}")
            ),
            Some(0.0),
            "{name}: {metrics}"
        );
        assert_eq!(
            value(
                &metrics,
                &format!("llm_down_reason{{upstream=\"{name}\",reason=\"error\"}}")
            ),
            Some(1.0),
            "{name}: {metrics}"
        );
    }
    for name in ["as-llama", "as-ollama"] {
        assert!(
            metrics.contains(&format!(
                "llm_upstream_format_errors_total{{upstream=\"{name}\","
            )),
            "{name}: {metrics}"
        );
    }
    assert_no_panic(&exporter);
}
