//! End to end: the proxy's JSON access log (`--proxy.access-log`) and its OpenTelemetry spans
//! (`--proxy.otlp-endpoint`), with the real binary between a client and the fake model servers.
//! Every outcome gets a line with every field; no prompt or header value reaches the log; the
//! request id and the trace context go upstream; a blocked log or an absent collector costs a
//! counter, never a stalled stream. Spans are decoded by a Python receiver that uses the
//! official OTLP protobuf definitions (`opentelemetry-proto` from PyPI).

mod support;

use bytes::Bytes;
use common::testing::{free_port, value, Scratch};
use http_body_util::{BodyExt, Full};
use hyper::Request;
use serde_json::Value;
use std::io::BufRead;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::client::{
    client, post_with_headers, proxy_arg, read_all, start_proxy, wait_for, PATIENCE,
};
use support::exporter::start_exporter;
use support::fake::{fixture, split_after, Answer, Fake, Seen};
use support::servers::{llama, ollama, Llama, Ollama, OllamaMode, TOKEN_GAP};
use tokio::sync::Semaphore;

const CHAT_STREAM_REQ: &str = "llama-server/v1-chat-completions-stream.request.json";

/// A client's trace: its id and the client's own span, the proxy's parent.
const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

/// The access log's lines so far, each parsed (a line that is not JSON fails the test).
fn log_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// Waits for the line of the request with this id (lines are written by a thread of their own).
fn line_of(path: &Path, request_id: &str) -> Value {
    let until = Instant::now() + PATIENCE;
    loop {
        if let Some(line) = log_lines(path)
            .into_iter()
            .find(|l| l["request_id"] == request_id)
        {
            return line;
        }
        assert!(
            Instant::now() < until,
            "no line for {request_id} in {}",
            std::fs::read_to_string(path).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn header(seen: &Seen, name: &str) -> Option<String> {
    seen.headers
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
}

/// The fields every line has, whatever the outcome: the schema's keys, no more.
fn assert_schema(line: &Value, with_trace: bool) {
    let mut keys: Vec<&str> = line
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    keys.sort_unstable();
    let mut want = vec![
        "time",
        "request_id",
        "upstream",
        "backend",
        "model",
        "route",
        "code",
        "outcome",
        "error_kind",
        "finish_reason",
        "stream",
        "duration_seconds",
        "ttft_seconds",
        "queue_seconds",
        "prompt_tokens",
        "generated_tokens",
    ];
    if with_trace {
        want.push("trace_id");
    }
    want.sort_unstable();
    assert_eq!(keys, want, "{line}");
    let time = line["time"].as_str().unwrap();
    assert!(
        time.len() == 24 && time.ends_with('Z') && time.as_bytes()[10] == b'T',
        "{time}"
    );
    assert!(line["duration_seconds"].as_f64().unwrap() >= 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_outcome_gets_a_line_with_every_field_and_the_request_id_goes_upstream() {
    const PROMPT: &str = "PROMPT-CANARY-access-log-5e1d";
    const KEY: &str = "KEY-CANARY-sk-77aa";
    let good = Fake::start(llama(Llama::default()));
    let busy = Fake::start(ollama(Ollama {
        mode: OllamaMode::QueueFull,
        ..Default::default()
    }));
    let broken = Fake::start(Arc::new(|_: &Seen| {
        Answer::ollama_stream("chat-stream-error", TOKEN_GAP)
    }));
    // A long stream held after its first event: the client leaves in the middle.
    let recorded = split_after(
        &fixture("llama-server/v1-chat-completions-stream.body"),
        b"\n\n",
    );
    let mut events = vec![recorded[0].clone()];
    events.extend(std::iter::repeat_n(recorded[1].clone(), 500));
    let gate = Arc::new(Semaphore::new(0));
    let g = gate.clone();
    let long = Fake::start(Arc::new(move |_: &Seen| {
        let mut answer = Answer::recorded_stream("v1-chat-completions-stream", TOKEN_GAP);
        if let Answer::Stream { events: e, .. } = &mut answer {
            *e = events.clone();
        }
        answer.gated(g.clone())
    }));
    let scratch = Scratch::new("telemetry-outcomes");
    let log = scratch.path("access.log");
    let ports: Vec<u16> = (0..4).map(|_| free_port()).collect();
    let exporter = start_exporter(&[
        format!("--upstream=good={}", good.url()),
        format!("--upstream=busy={}", busy.url()),
        format!("--upstream=broken={}", broken.url()),
        format!("--upstream=long={}", long.url()),
        "--upstream.backend=good=llama.cpp".into(),
        "--upstream.backend=busy=ollama".into(),
        "--upstream.backend=broken=ollama".into(),
        "--upstream.backend=long=llama.cpp".into(),
        proxy_arg("good", ports[0]),
        proxy_arg("busy", ports[1]),
        proxy_arg("broken", ports[2]),
        proxy_arg("long", ports[3]),
        format!("--proxy.access-log={}", log.display()),
        "--log.level=debug".into(),
    ]);
    let secret_headers = [
        ("authorization", "Bearer KEY-CANARY-sk-77aa"),
        ("x-api-key", KEY),
        ("cookie", "session=KEY-CANARY-cookie"),
    ];
    let with_id = |id: &'static str| {
        let mut headers = secret_headers.to_vec();
        headers.push(("x-request-id", id));
        headers
    };

    // Success: a streamed chat whose prompt carries the marker.
    let mut chat: Value = serde_json::from_slice(&fixture(CHAT_STREAM_REQ)).unwrap();
    chat["messages"][0]["content"] = Value::from(PROMPT);
    let chat = serde_json::to_vec(&chat).unwrap();
    let response =
        post_with_headers(ports[0], "/v1/chat/completions", &chat, &with_id("ok-1")).await;
    assert_eq!(response.status(), 200);
    read_all(response).await;
    let line = line_of(&log, "ok-1");
    assert_schema(&line, false);
    let metrics = exporter.metrics();
    let labels =
        "upstream=\"good\",model=\"tiny-random-llama.gguf\",route=\"/v1/chat/completions\"";
    let counted = |series: &str| value(&metrics, &format!("{series}{{{labels}}}"));
    assert_eq!(line["upstream"], "good");
    assert_eq!(line["backend"], "llama.cpp");
    assert_eq!(line["model"], "tiny-random-llama.gguf");
    assert_eq!(line["route"], "/v1/chat/completions");
    assert_eq!(line["code"], 200);
    assert_eq!(line["outcome"], "success");
    assert_eq!(line["error_kind"], Value::Null);
    assert_eq!(line["finish_reason"], "length");
    assert_eq!(line["stream"], true);
    // The same measurements as the metrics: the line is made from them.
    assert_eq!(
        line["prompt_tokens"].as_f64(),
        counted("llm_prompt_tokens_total")
    );
    assert_eq!(
        line["generated_tokens"].as_f64(),
        counted("llm_tokens_generated_total")
    );
    let ttft = line["ttft_seconds"].as_f64().unwrap();
    let ttft_sum = counted("llm_time_to_first_token_seconds_sum").unwrap();
    assert!((ttft - ttft_sum).abs() < 1e-5, "{ttft} vs {ttft_sum}");
    assert!(ttft <= line["duration_seconds"].as_f64().unwrap());
    assert!(line["queue_seconds"].as_f64().unwrap() >= 0.0);
    // The client's id went upstream unchanged.
    assert_eq!(
        header(&good.last_post(), "x-request-id").as_deref(),
        Some("ok-1")
    );

    // No id from the client: one is made, logged and sent upstream. An id with characters a
    // log line must not carry is replaced the same way.
    for (sent, headers) in [
        ("none", secret_headers.to_vec()),
        ("bad", with_id("bad\"id},{\"code\":1")),
    ] {
        let response = post_with_headers(ports[0], "/v1/chat/completions", &chat, &headers).await;
        read_all(response).await;
        let upstream_id = header(&good.last_post(), "x-request-id").unwrap();
        assert_eq!(upstream_id.len(), 32, "{sent}: {upstream_id}");
        assert!(upstream_id.bytes().all(|b| b.is_ascii_hexdigit()));
        let line = line_of(&log, &upstream_id);
        assert_eq!(line["code"], 200, "{sent}");
    }

    // Upstream error: Ollama's queue is full (503).
    let response = post_with_headers(
        ports[1],
        "/api/chat",
        b"{\"model\":\"llama3.2\",\"messages\":[]}",
        &with_id("busy-1"),
    )
    .await;
    assert_eq!(response.status(), 503);
    read_all(response).await;
    let line = line_of(&log, "busy-1");
    assert_schema(&line, false);
    assert_eq!(line["upstream"], "busy");
    assert_eq!(line["backend"], "ollama");
    assert_eq!(line["model"], Value::Null);
    assert_eq!(line["route"], "/api/chat");
    assert_eq!(line["code"], 503);
    assert_eq!(line["outcome"], "error");
    assert_eq!(line["error_kind"], "upstream_status");
    assert_eq!(line["stream"], false);
    for null in [
        "finish_reason",
        "ttft_seconds",
        "queue_seconds",
        "prompt_tokens",
        "generated_tokens",
    ] {
        assert_eq!(line[null], Value::Null, "{null}: {line}");
    }

    // Stream error: an NDJSON error line after two tokens.
    let response = post_with_headers(
        ports[2],
        "/api/chat",
        b"{\"model\":\"llama3.2\",\"messages\":[]}",
        &with_id("broken-1"),
    )
    .await;
    assert_eq!(response.status(), 200);
    read_all(response).await;
    let line = line_of(&log, "broken-1");
    assert_schema(&line, false);
    assert_eq!(line["code"], 200);
    assert_eq!(line["outcome"], "error");
    assert_eq!(line["error_kind"], "stream_error");
    assert_eq!(line["model"], "llama3.2:latest");
    assert_eq!(line["stream"], true);
    assert!(line["ttft_seconds"].as_f64().is_some(), "{line}");

    // Client disconnect: the client reads the first event and leaves.
    let response =
        post_with_headers(ports[3], "/v1/chat/completions", &chat, &with_id("gone-1")).await;
    let mut body = response.into_body();
    tokio::time::timeout(PATIENCE, body.frame())
        .await
        .expect("a first frame in time");
    drop(body);
    gate.add_permits(10_000);
    let line = line_of(&log, "gone-1");
    assert_schema(&line, false);
    assert_eq!(line["upstream"], "long");
    assert_eq!(line["code"], 200);
    assert_eq!(line["outcome"], "error");
    assert_eq!(line["error_kind"], "client_disconnect");
    assert_eq!(line["model"], "tiny-random-llama.gguf");

    // Nothing secret anywhere: not in the access log, not in the exporter's own log.
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(text.lines().count(), 6, "{text}");
    for canary in [PROMPT, KEY, "CANARY", "Bearer", "session="] {
        assert!(
            !text.contains(canary),
            "{canary} in the access log:\n{text}"
        );
        assert!(!exporter.stderr().contains(canary), "{canary} in the log");
    }
    // The writer kept up: nothing dropped, and the counter is there to say so.
    assert_eq!(
        value(
            &exporter.metrics(),
            "llm_proxy_access_log_lines_dropped_total"
        ),
        Some(0.0)
    );
    let _ = std::fs::remove_file(&log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_access_log_never_stalls_a_stream_and_counts_its_drops() {
    // A FIFO nobody reads: the writer cannot even open it.
    let scratch = Scratch::new("telemetry-fifo");
    let fifo = scratch.path("access.fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let fake = Fake::start(llama(Llama::default()));
    let (exporter, port) = start_proxy(
        "local",
        &fake.url(),
        &[
            format!("--proxy.access-log={}", fifo.display()),
            "--proxy.access-log-queue=2".into(),
        ],
    );
    let want = fixture("llama-server/v1-chat-completions-stream.body");
    for _ in 0..6 {
        let response =
            post_with_headers(port, "/v1/chat/completions", &fixture(CHAT_STREAM_REQ), &[]).await;
        assert_eq!(read_all(response).await, want);
    }
    // Two lines wait in the queue; the other four were dropped and counted.
    wait_for(&exporter, "llm_proxy_access_log_lines_dropped_total", 4.0);
    wait_for(
        &exporter,
        "llm_requests_total{upstream=\"local\",model=\"tiny-random-llama.gguf\",route=\"/v1/chat/completions\",status=\"success\",code=\"200\"}",
        6.0,
    );
    drop(exporter);
    let _ = std::fs::remove_file(&fifo);
}

/// The test's OTLP/HTTP receiver: the Python script beside the span exporter.
struct Receiver {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    port: u16,
}

impl Receiver {
    fn start() -> Receiver {
        let script = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../llm-proxy/tests/support/otlp_receiver.py");
        let mut child = std::process::Command::new("python3")
            .arg(script)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3 runs the OTLP receiver");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let first = lines
            .recv_timeout(PATIENCE)
            .expect("the receiver starts (is opentelemetry-proto installed?)");
        let port = first
            .strip_prefix("listening ")
            .unwrap_or_else(|| panic!("receiver said {first}"))
            .parse()
            .unwrap();
        Receiver { child, lines, port }
    }

    fn endpoint(&self) -> String {
        format!(
            "--proxy.otlp-endpoint=http://127.0.0.1:{}/v1/traces",
            self.port
        )
    }

    /// The spans of the next export.
    fn next_spans(&self) -> Vec<Value> {
        let line = self
            .lines
            .recv_timeout(PATIENCE)
            .expect("an export in time");
        let export: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(export["content_type"], "application/x-protobuf");
        assert_eq!(export["resource"]["service.name"], "llm-test");
        export["spans"].as_array().unwrap().clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_carry_the_genai_attributes_and_hang_under_the_clients_traceparent() {
    let receiver = Receiver::start();
    let fake = Fake::start(llama(Llama::default()));
    let port = free_port();
    let scratch = Scratch::new("telemetry-traced");
    let log = scratch.path("access.log");
    let exporter = start_exporter(&[
        format!("--upstream=local={}", fake.url()),
        "--upstream.backend=local=llama.cpp".into(),
        proxy_arg("local", port),
        receiver.endpoint(),
        "--proxy.otlp-service-name=llm-test".into(),
        "--proxy.otlp-batch-interval=100ms".into(),
        format!("--proxy.access-log={}", log.display()),
    ]);
    let traceparent = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
    let response = post_with_headers(
        port,
        "/v1/chat/completions",
        &fixture(CHAT_STREAM_REQ),
        &[("traceparent", &traceparent), ("x-request-id", "traced-1")],
    )
    .await;
    read_all(response).await;
    // Upstream: the same trace, the proxy's span as the parent.
    let sent = header(&fake.last_post(), "traceparent").unwrap();
    let parts: Vec<&str> = sent.split('-').collect();
    assert_eq!(parts.len(), 4, "{sent}");
    assert_eq!((parts[0], parts[1], parts[3]), ("00", CLIENT_TRACE, "01"));
    let proxy_span = parts[2].to_string();
    assert_ne!(proxy_span, CLIENT_SPAN);

    let spans = receiver.next_spans();
    assert_eq!(spans.len(), 1, "{spans:?}");
    let span = &spans[0];
    assert_eq!(span["trace_id"], CLIENT_TRACE);
    assert_eq!(span["span_id"], proxy_span.as_str());
    assert_eq!(span["parent_span_id"], CLIENT_SPAN);
    assert_eq!(span["kind"], "SPAN_KIND_CLIENT");
    assert_eq!(span["name"], "chat tiny-random-llama.gguf");
    let a = &span["attributes"];
    assert_eq!(a["gen_ai.operation.name"], "chat");
    assert_eq!(a["gen_ai.provider.name"], "llama.cpp");
    assert_eq!(a["gen_ai.request.model"], "tiny-random-llama.gguf");
    assert_eq!(a["gen_ai.response.model"], "tiny-random-llama.gguf");
    assert_eq!(a["gen_ai.usage.input_tokens"], 31);
    assert_eq!(a["gen_ai.usage.output_tokens"], 12);
    assert_eq!(
        a["gen_ai.response.finish_reasons"],
        serde_json::json!(["length"])
    );
    assert_eq!(a["gen_ai.request.stream"], true);
    assert_eq!(a["server.address"], "127.0.0.1");
    assert_eq!(a["server.port"], fake.addr.port());
    assert_eq!(a["http.response.status_code"], 200);
    assert!(a.get("error.type").is_none());
    let events = span["events"].as_array().unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["name"], "gen_ai.response.first_chunk");
    let start = span["start_time_unix_nano"].as_u64().unwrap();
    let first = events[0]["time_unix_nano"].as_u64().unwrap();
    let end = span["end_time_unix_nano"].as_u64().unwrap();
    assert!(start < first && first <= end, "{start} {first} {end}");
    // The access log names the same trace.
    assert_eq!(line_of(&log, "traced-1")["trace_id"], CLIENT_TRACE);

    // No traceparent from the client: a new trace, the proxy's span its root. An upstream
    // error ends it with error.type and status ERROR.
    fake.set(llama(Llama {
        mode: support::servers::LlamaMode::ServerError,
        ..Default::default()
    }));
    let response =
        post_with_headers(port, "/v1/chat/completions", &fixture(CHAT_STREAM_REQ), &[]).await;
    assert_eq!(response.status(), 500);
    read_all(response).await;
    let sent = header(&fake.last_post(), "traceparent").unwrap();
    let spans = receiver.next_spans();
    let span = &spans[0];
    assert_eq!(
        sent,
        format!(
            "00-{}-{}-01",
            span["trace_id"].as_str().unwrap(),
            span["span_id"].as_str().unwrap()
        )
    );
    assert_ne!(span["trace_id"], CLIENT_TRACE);
    assert_eq!(span["parent_span_id"], "");
    assert_eq!(span["attributes"]["error.type"], "upstream_status");
    assert_eq!(span["attributes"]["http.response.status_code"], 500);
    assert_eq!(span["status"]["code"], "STATUS_CODE_ERROR");
    assert_eq!(span["name"], "chat");
    assert!(span["events"].as_array().unwrap().is_empty());

    let metrics = wait_for(&exporter, "llm_proxy_spans_exported_total", 2.0);
    for reason in ["queue_full", "export_failed", "rejected"] {
        assert_eq!(
            value(
                &metrics,
                &format!("llm_proxy_spans_dropped_total{{reason=\"{reason}\"}}")
            ),
            Some(0.0),
            "{reason}"
        );
    }
    let _ = std::fs::remove_file(&log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_collector_costs_nothing_but_the_drop_counter() {
    let fake = Fake::start(llama(Llama::default()));
    let port = free_port();
    let exporter = start_exporter(&[
        format!("--upstream=local={}", fake.url()),
        proxy_arg("local", port),
        format!(
            "--proxy.otlp-endpoint=http://127.0.0.1:{}/v1/traces",
            free_port()
        ),
        "--proxy.otlp-batch-interval=50ms".into(),
    ]);
    let want = fixture("llama-server/v1-chat-completions-stream.body");
    for _ in 0..3 {
        let response =
            post_with_headers(port, "/v1/chat/completions", &fixture(CHAT_STREAM_REQ), &[]).await;
        assert_eq!(response.status(), 200);
        assert_eq!(read_all(response).await, want);
    }
    let metrics = wait_for(
        &exporter,
        "llm_proxy_spans_dropped_total{reason=\"export_failed\"}",
        3.0,
    );
    assert_eq!(value(&metrics, "llm_proxy_spans_exported_total"), Some(0.0));
    assert_eq!(
        value(
            &metrics,
            "llm_proxy_spans_dropped_total{reason=\"queue_full\"}"
        ),
        Some(0.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_telemetry_off_the_proxy_adds_and_changes_no_header() {
    let fake = Fake::start(llama(Llama::default()));
    let (exporter, port) = start_proxy("local", &fake.url(), &[]);
    let traceparent = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
    let response = post_with_headers(
        port,
        "/v1/chat/completions",
        &fixture(CHAT_STREAM_REQ),
        &[("traceparent", &traceparent)],
    )
    .await;
    read_all(response).await;
    let seen = fake.last_post();
    assert_eq!(header(&seen, "traceparent"), Some(traceparent));
    assert_eq!(header(&seen, "x-request-id"), None);
    assert!(!exporter.metrics().contains("llm_proxy_"));
}

#[test]
fn bad_telemetry_flags_are_start_up_errors() {
    let endpoint = "--proxy.otlp-endpoint=http://127.0.0.1:9/v1/traces".to_string();
    for (flags, why) in [
        (
            vec!["--proxy.otlp-endpoint=https://collector:4318/v1/traces".to_string()],
            "https is not supported",
        ),
        (
            vec!["--proxy.otlp-endpoint=collector:4318".to_string()],
            "expected http://HOST:PORT/v1/traces",
        ),
        (
            vec![format!(
                "--proxy.access-log={}",
                Scratch::new("telemetry-bad-flags")
                    .path("no-such-dir")
                    .join("access.log")
                    .display()
            )],
            "No such file or directory",
        ),
        // Queues are allocated whole when they are made: a huge size is refused, not tried.
        (
            vec!["--proxy.access-log-queue=100000000".to_string()],
            "expected a whole number from 1 to 1000000",
        ),
        (
            vec![
                endpoint.clone(),
                "--proxy.otlp-queue-size=18446744073709551615".to_string(),
            ],
            "expected a whole number from 1 to 1000000",
        ),
        (
            vec![endpoint, "--proxy.otlp-queue-size=0".to_string()],
            "expected a whole number from 1 to 1000000",
        ),
    ] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_llm-exporter"))
            .arg(format!("--web.listen-address=127.0.0.1:{}", free_port()))
            .arg("--upstream=local=http://127.0.0.1:9")
            .arg(format!("--proxy=local=127.0.0.1:{}", free_port()))
            .args(&flags)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{flags:?} was accepted");
        assert!(stderr.contains(why), "{flags:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{flags:?}: {stderr}");
    }
}

/// The requests the proxy ends itself: a client leaving before any response, and an upstream
/// nobody listens on (the proxy answers 502).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_the_proxy_ends_itself_get_their_lines_and_spans() {
    let receiver = Receiver::start();
    let silent = Fake::start(Arc::new(|_: &Seen| Answer::Hang));
    let (silent_port, down_port) = (free_port(), free_port());
    let scratch = Scratch::new("telemetry-local");
    let log = scratch.path("access.log");
    let exporter = start_exporter(&[
        format!("--upstream=silent={}", silent.url()),
        "--upstream.backend=silent=ollama".into(),
        format!("--upstream=down=http://127.0.0.1:{}", free_port()),
        "--upstream.backend=down=llama.cpp".into(),
        proxy_arg("silent", silent_port),
        proxy_arg("down", down_port),
        format!("--proxy.access-log={}", log.display()),
        receiver.endpoint(),
        "--proxy.otlp-service-name=llm-test".into(),
        "--proxy.otlp-batch-interval=100ms".into(),
        "--upstream.timeout=300ms".into(),
    ]);
    let request = Request::post(format!("http://127.0.0.1:{silent_port}/api/chat"))
        .header("content-type", "application/json")
        .header("x-request-id", "left-early")
        .body(Full::new(Bytes::from_static(b"{\"model\":\"llama3.2\"}")))
        .unwrap();
    let pending = tokio::spawn(client().request(request));
    let until = Instant::now() + PATIENCE;
    while silent.posts().is_empty() {
        assert!(
            Instant::now() < until,
            "the request never reached the upstream"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        header(&silent.posts()[0], "x-request-id").as_deref(),
        Some("left-early")
    );
    pending.abort();
    let line = line_of(&log, "left-early");
    assert_schema(&line, true);
    assert_eq!(line["code"], 499);
    assert_eq!(line["outcome"], "error");
    assert_eq!(line["error_kind"], "client_disconnect");
    assert_eq!(line["backend"], "ollama");
    assert_eq!(line["route"], "/api/chat");
    let spans = receiver.next_spans();
    assert_eq!(spans[0]["trace_id"], line["trace_id"]);
    assert_eq!(spans[0]["attributes"]["error.type"], "client_disconnect");

    let response = post_with_headers(
        down_port,
        "/v1/completions",
        b"{\"prompt\":\"x\"}",
        &[("x-request-id", "nobody-home")],
    )
    .await;
    assert_eq!(response.status(), 502);
    read_all(response).await;
    let line = line_of(&log, "nobody-home");
    assert_schema(&line, true);
    assert_eq!(line["code"], 502);
    assert_eq!(line["error_kind"], "upstream_unreachable");
    assert_eq!(line["backend"], "llama.cpp");
    assert_eq!(line["stream"], false);
    let spans = receiver.next_spans();
    let span = &spans[0];
    assert_eq!(span["name"], "text_completion");
    assert_eq!(
        span["attributes"]["gen_ai.operation.name"],
        "text_completion"
    );
    assert_eq!(span["attributes"]["error.type"], "upstream_unreachable");
    assert!(span["attributes"]["server.port"].as_u64().is_some());
    assert_eq!(span["status"]["code"], "STATUS_CODE_ERROR");
    drop(exporter);
    let _ = std::fs::remove_file(&log);
}
