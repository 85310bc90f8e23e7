//! End to end: clients talk to fake model servers through the real binary's proxy. Bytes must
//! come out as they went in, stream chunks must reach the client before the upstream sends the
//! next one, and every request must show up in /metrics with the right outcome.

#[path = "support/apis.rs"]
mod apis;
mod support;

use apis::{generic_openai, llama_apis, ollama_v1, OllamaV1, GENERIC_MODEL};
use bytes::Bytes;
use common::testing::{assert_no_panic, free_port, http_get, value, ExporterProcess};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::client::{client, post, proxy_arg, read_all, start_proxy, wait_for, PATIENCE};
use support::exporter::start_exporter;
use support::fake::{fixture, split_after, Answer, Fake, Seen};
use support::servers::{llama, ollama, Llama, Ollama, OllamaMode, TOKEN_GAP};
use tokio::sync::Semaphore;

/// Longest a test waits for anything; a hang fails the test instead of stalling CI.
async fn next_data(body: &mut Incoming) -> Option<Result<Bytes, String>> {
    loop {
        let frame = tokio::time::timeout(PATIENCE, body.frame())
            .await
            .expect("a frame in time")?;
        match frame {
            Ok(f) => {
                if let Ok(data) = f.into_data() {
                    return Some(Ok(data));
                }
            }
            Err(e) => return Some(Err(e.to_string())),
        }
    }
}

const CHAT_STREAM_REQ: &str = "llama-server/v1-chat-completions-stream.request.json";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn llama_server_traffic_passes_unchanged_and_is_measured() {
    let fake = Fake::start(llama(Llama::default()));
    let (exporter, port) = start_proxy("local", &fake.url(), &[]);

    // Streaming chat: SSE events in, the same bytes out, headers kept.
    let request = fixture(CHAT_STREAM_REQ);
    let response = post(port, "/v1/chat/completions", &request).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["server"], "llama.cpp");
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    assert_eq!(response.headers()["x-accel-buffering"], "no");
    let body = read_all(response).await;
    assert_eq!(
        body,
        fixture("llama-server/v1-chat-completions-stream.body")
    );
    assert_eq!(fake.last_post().body, request);

    // Native streaming completion (no [DONE]), and a plain JSON chat answer.
    let request = fixture("llama-server/completion-stream.request.json");
    let body = read_all(post(port, "/completion", &request).await).await;
    assert_eq!(body, fixture("llama-server/completion-stream.body"));
    let request = fixture("llama-server/v1-chat-completions.request.json");
    let response = post(port, "/v1/chat/completions", &request).await;
    assert_eq!(response.headers()["content-length"], "803");
    assert_eq!(
        read_all(response).await,
        fixture("llama-server/v1-chat-completions.body")
    );

    // Not an inference route: passed on, not measured.
    let response = post(port, "/tokenize", b"{}").await;
    assert_eq!(response.status(), 404);
    assert_eq!(
        read_all(response).await,
        fixture("llama-server/unknown-path-404.body")
    );

    let labels = "upstream=\"local\",model=\"tiny-random-llama.gguf\"";
    let chat = format!("{labels},route=\"/v1/chat/completions\"");
    let native = format!("{labels},route=\"/completion\"");
    let metrics = wait_for(
        &exporter,
        &format!("llm_requests_total{{{native},status=\"success\",code=\"200\"}}"),
        1.0,
    );
    assert_eq!(
        value(
            &metrics,
            &format!("llm_requests_total{{{chat},status=\"success\",code=\"200\"}}")
        ),
        Some(2.0),
        "{metrics}"
    );
    // Streamed: 8 cached + 23 prompt tokens, 12 generated; plain: 52 and 24 (from usage).
    assert_eq!(
        value(&metrics, &format!("llm_prompt_tokens_total{{{chat}}}")),
        Some(31.0 + 52.0)
    );
    assert_eq!(
        value(&metrics, &format!("llm_tokens_generated_total{{{chat}}}")),
        Some(12.0 + 24.0)
    );
    assert_eq!(
        value(&metrics, &format!("llm_tokens_generated_total{{{native}}}")),
        Some(8.0)
    );
    // TTFT and the queue estimate exist for the streamed request only.
    assert_eq!(
        value(
            &metrics,
            &format!("llm_time_to_first_token_seconds_count{{{chat}}}")
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &metrics,
            &format!("llm_request_queue_time_seconds_count{{{chat}}}")
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &metrics,
            &format!("llm_request_duration_seconds_count{{{chat}}}")
        ),
        Some(2.0)
    );
    // 12 content chunks in the recorded stream: 11 gaps.
    assert_eq!(
        value(
            &metrics,
            &format!("llm_inter_token_latency_seconds_count{{{chat}}}")
        ),
        Some(11.0)
    );
    assert_eq!(
        value(
            &metrics,
            &format!("llm_request_generation_tokens_bucket{{{chat},le=\"20\"}}")
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &metrics,
            "llm_active_requests{upstream=\"local\",route=\"/v1/chat/completions\"}"
        ),
        Some(0.0)
    );
    assert!(!metrics.contains("/tokenize"));
    // The first content token came no sooner than one event gap after the role chunk.
    let ttft_sum = value(
        &metrics,
        &format!("llm_time_to_first_token_seconds_sum{{{chat}}}"),
    )
    .unwrap();
    assert!(ttft_sum >= TOKEN_GAP.as_secs_f64(), "{ttft_sum}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ollama_traffic_passes_unchanged_and_is_measured() {
    let fake = Fake::start(ollama(Ollama::default()));
    let (exporter, port) = start_proxy("home", &fake.url(), &[]);
    // Ollama streams when `stream` is absent.
    let request = b"{\"model\":\"llama3.2\",\"prompt\":\"Why is the sky blue?\"}";
    let response = post(port, "/api/generate", request).await;
    assert_eq!(response.headers()["content-type"], "application/x-ndjson");
    assert_eq!(
        read_all(response).await,
        fixture("ollama/generate-stream.body")
    );
    assert_eq!(fake.last_post().body, Bytes::from_static(request));
    let request = b"{\"model\":\"llama3.2\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
    assert_eq!(
        read_all(post(port, "/api/chat", request).await).await,
        fixture("ollama/chat-stream.body")
    );
    let request = b"{\"model\":\"llama3.2\",\"messages\":[],\"stream\":false}";
    assert_eq!(
        read_all(post(port, "/api/chat", request).await).await,
        fixture("ollama/chat.body")
    );
    let request = b"{\"model\":\"nomic-embed-text\",\"input\":\"x\"}";
    assert_eq!(
        read_all(post(port, "/api/embed", request).await).await,
        fixture("ollama/embed.body")
    );

    let request = b"{\"model\":\"llama3.2\",\"messages\":[],\"stream\":true,\"stream_options\":{\"include_usage\":true}}";
    assert_eq!(
        read_all(post(port, "/v1/chat/completions", request).await).await,
        fixture("ollama/v1-chat-completions-stream.body")
    );

    let openai = "upstream=\"home\",model=\"llama3.2:latest\",route=\"/v1/chat/completions\"";
    let chat = "upstream=\"home\",model=\"llama3.2:latest\",route=\"/api/chat\"";
    let generate = "upstream=\"home\",model=\"llama3.2:latest\",route=\"/api/generate\"";
    let embed = "upstream=\"home\",model=\"nomic-embed-text:latest\",route=\"/api/embed\"";
    let metrics = wait_for(
        &exporter,
        &format!("llm_requests_total{{{openai},status=\"success\",code=\"200\"}}"),
        1.0,
    );
    assert_eq!(
        value(
            &metrics,
            &format!("llm_requests_total{{{chat},status=\"success\",code=\"200\"}}")
        ),
        Some(2.0)
    );
    assert_eq!(
        value(&metrics, &format!("llm_prompt_tokens_total{{{generate}}}")),
        Some(26.0)
    );
    assert_eq!(
        value(
            &metrics,
            &format!("llm_tokens_generated_total{{{generate}}}")
        ),
        Some(5.0)
    );
    assert_eq!(
        value(&metrics, &format!("llm_tokens_generated_total{{{chat}}}")),
        Some(30.0)
    );
    assert_eq!(
        value(&metrics, &format!("llm_prompt_tokens_total{{{embed}}}")),
        Some(8.0)
    );
    assert_eq!(
        value(
            &metrics,
            &format!("llm_inter_token_latency_seconds_count{{{generate}}}")
        ),
        Some(4.0)
    );
    assert_eq!(
        value(
            &metrics,
            &format!("llm_time_to_first_token_seconds_count{{{chat}}}")
        ),
        Some(1.0)
    );
    // Ollama's /v1 has no timings: the counts come from the include_usage chunk.
    let openai_value = |name: &str| value(&metrics, &format!("{name}{{{openai}}}"));
    assert_eq!(openai_value("llm_tokens_generated_total"), Some(3.0));
    assert_eq!(openai_value("llm_prompt_tokens_total"), Some(26.0));
    assert_eq!(
        openai_value("llm_inter_token_latency_seconds_count"),
        Some(2.0)
    );
    // Why each generation ended: `done_reason` natively, `finish_reason` on /v1.
    for labels in [generate, chat, openai] {
        assert_eq!(
            value(
                &metrics,
                &format!("llm_requests_finished_total{{{labels},finish_reason=\"stop\"}}")
            ),
            Some(if labels == chat { 2.0 } else { 1.0 }),
            "{labels}"
        );
    }
    assert!(!metrics.contains(&format!("llm_requests_finished_total{{{embed}")));
    // The model loads the answers reported (`load_duration`; absent when already loaded): the
    // generate stream's and the plain chat's 41.3 ms, the embedding's 1.0 ms.
    let loads = "llm_model_load_duration_seconds";
    let llama = "upstream=\"home\",model=\"llama3.2:latest\"";
    assert_eq!(
        value(&metrics, &format!("{loads}_count{{{llama}}}")),
        Some(2.0)
    );
    let sum = value(&metrics, &format!("{loads}_sum{{{llama}}}")).unwrap();
    assert!((sum - 2.0 * 0.041295167).abs() < 1e-9, "{sum}");
    assert_eq!(
        value(&metrics, &format!("{loads}_bucket{{{llama},le=\"0.05\"}}")),
        Some(2.0)
    );
    let embed_model = "upstream=\"home\",model=\"nomic-embed-text:latest\"";
    assert_eq!(
        value(&metrics, &format!("{loads}_count{{{embed_model}}}")),
        Some(1.0)
    );
}

/// The upstream sends one event and then waits for the test; the client must already have it.
/// A proxy that buffered the stream would deliver nothing and the test would fail on PATIENCE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_chunks_are_not_held_back() {
    let gate = Arc::new(Semaphore::new(0));
    let events = split_after(
        &fixture("llama-server/v1-chat-completions-stream.body"),
        b"\n\n",
    );
    let g = gate.clone();
    let fake = Fake::start(Arc::new(move |_: &Seen| {
        Answer::recorded_stream("v1-chat-completions-stream", Duration::ZERO).gated(g.clone())
    }));
    let (_exporter, port) = start_proxy(
        "local",
        &fake.url(),
        &["--upstream.backend=local=llama.cpp".into()],
    );
    let mut body = post(port, "/v1/chat/completions", &fixture(CHAT_STREAM_REQ))
        .await
        .into_body();
    let mut received = Vec::new();
    for event in &events {
        let data = next_data(&mut body)
            .await
            .expect("an event")
            .expect("no error");
        // One upstream chunk, whole, before the upstream may send the next.
        assert_eq!(&data, event);
        received.extend_from_slice(&data);
        gate.add_permits(1);
    }
    assert!(next_data(&mut body).await.is_none());
    assert_eq!(
        received,
        fixture("llama-server/v1-chat-completions-stream.body")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_errors_and_mid_stream_errors_are_counted() {
    let busy = Fake::start(ollama(Ollama {
        mode: OllamaMode::QueueFull,
        ..Default::default()
    }));
    let broken = Fake::start(Arc::new(|_: &Seen| {
        Answer::ollama_stream("chat-stream-error", TOKEN_GAP)
    }));
    let (busy_port, broken_port) = (free_port(), free_port());
    let exporter = start_exporter(&[
        format!("--upstream=busy={}", busy.url()),
        format!("--upstream=broken={}", broken.url()),
        proxy_arg("busy", busy_port),
        proxy_arg("broken", broken_port),
    ]);
    let request = b"{\"model\":\"llama3.2\",\"messages\":[]}";
    let response = post(busy_port, "/api/chat", request).await;
    assert_eq!(response.status(), 503);
    assert_eq!(
        read_all(response).await,
        fixture("ollama/queue-full-503.body")
    );
    let response = post(broken_port, "/api/chat", request).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        read_all(response).await,
        fixture("ollama/chat-stream-error.body")
    );

    let metrics = wait_for(
        &exporter,
        "llm_request_errors_total{upstream=\"broken\",model=\"llama3.2:latest\",route=\"/api/chat\",kind=\"stream_error\"}",
        1.0,
    );
    assert_eq!(
        value(&metrics, "llm_request_errors_total{upstream=\"busy\",model=\"unknown\",route=\"/api/chat\",kind=\"upstream_status\"}"),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        value(&metrics, "llm_requests_total{upstream=\"busy\",model=\"unknown\",route=\"/api/chat\",status=\"error\",code=\"503\"}"),
        Some(1.0)
    );
    assert_eq!(
        value(&metrics, "llm_requests_total{upstream=\"broken\",model=\"llama3.2:latest\",route=\"/api/chat\",status=\"error\",code=\"200\"}"),
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_mid_stream_is_counted_and_the_upstream_released() {
    // A long generation: the role chunk, then the first content event again and again.
    let recorded = split_after(
        &fixture("llama-server/v1-chat-completions-stream.body"),
        b"\n\n",
    );
    let mut events = vec![recorded[0].clone()];
    events.extend(std::iter::repeat_n(recorded[1].clone(), 2000));
    let gate = Arc::new(Semaphore::new(0));
    let g = gate.clone();
    let fake = Fake::start(Arc::new(move |_: &Seen| {
        let mut answer = Answer::recorded_stream("v1-chat-completions-stream", TOKEN_GAP);
        if let Answer::Stream { events: e, .. } = &mut answer {
            *e = events.clone();
        }
        answer.gated(g.clone())
    }));
    let (exporter, port) = start_proxy("local", &fake.url(), &[]);
    let mut body = post(port, "/v1/chat/completions", &fixture(CHAT_STREAM_REQ))
        .await
        .into_body();
    next_data(&mut body).await.unwrap().unwrap();
    drop(body);
    // Let the upstream go on: the proxy's next writes fail and it lets go of the upstream,
    // whose own writes then fail long before the 2000 events are out.
    gate.add_permits(10_000);
    wait_for(
        &exporter,
        // The model is known from the first chunk the client got.
        "llm_request_errors_total{upstream=\"local\",model=\"tiny-random-llama.gguf\",route=\"/v1/chat/completions\",kind=\"client_disconnect\"}",
        1.0,
    );
    let until = Instant::now() + PATIENCE;
    while *fake.aborted_streams.lock().unwrap() == 0 {
        assert!(
            Instant::now() < until,
            "the upstream stream was never released"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        value(
            &exporter.metrics(),
            "llm_active_requests{upstream=\"local\",route=\"/v1/chat/completions\"}"
        ),
        Some(0.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_silent_or_absent_upstream_never_hangs_the_client() {
    let stalled = Fake::start(Arc::new(|_: &Seen| {
        Answer::recorded_stream("v1-chat-completions-stream", TOKEN_GAP).stalling_after(3)
    }));
    let silent = Fake::start(Arc::new(|_: &Seen| Answer::Hang));
    let (stalled_port, silent_port, down_port) = (free_port(), free_port(), free_port());
    let exporter = start_exporter(&[
        format!("--upstream=stalled={}", stalled.url()),
        format!("--upstream=silent={}", silent.url()),
        format!("--upstream=down=http://127.0.0.1:{}", free_port()),
        proxy_arg("stalled", stalled_port),
        proxy_arg("silent", silent_port),
        proxy_arg("down", down_port),
        "--proxy.idle-timeout=300ms".into(),
        "--proxy.header-timeout=300ms".into(),
        // Scrapes also poll these upstreams; the silent one would hold each scrape 5 s.
        "--upstream.timeout=300ms".into(),
    ]);

    // Three events arrive, then the upstream goes quiet: the client gets an error, not a hang.
    let mut body = post(
        stalled_port,
        "/v1/chat/completions",
        &fixture(CHAT_STREAM_REQ),
    )
    .await
    .into_body();
    let mut got = 0;
    let ended_with_error = loop {
        match next_data(&mut body).await {
            Some(Ok(_)) => got += 1,
            Some(Err(_)) => break true,
            None => break false,
        }
    };
    assert_eq!(got, 3);
    assert!(ended_with_error, "a cut-off stream must not look complete");

    let response = post(silent_port, "/api/chat", b"{}").await;
    assert_eq!(response.status(), 504);
    let response = post(down_port, "/api/chat", b"{}").await;
    assert_eq!(response.status(), 502);
    assert!(read_all(response)
        .await
        .starts_with(b"{\"error\":\"llm-exporter proxy:"));

    let metrics = wait_for(
        &exporter,
        "llm_request_errors_total{upstream=\"stalled\",model=\"tiny-random-llama.gguf\",route=\"/v1/chat/completions\",kind=\"upstream_timeout\"}",
        1.0,
    );
    assert_eq!(
        value(&metrics, "llm_request_errors_total{upstream=\"silent\",model=\"unknown\",route=\"/api/chat\",kind=\"upstream_timeout\"}"),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        value(&metrics, "llm_request_errors_total{upstream=\"down\",model=\"unknown\",route=\"/api/chat\",kind=\"upstream_unreachable\"}"),
        Some(1.0)
    );
    assert_eq!(
        value(&metrics, "llm_requests_total{upstream=\"silent\",model=\"unknown\",route=\"/api/chat\",status=\"error\",code=\"504\"}"),
        Some(1.0)
    );
}

#[test]
fn a_busy_proxy_port_is_a_start_up_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_llm-exporter"))
        .args([
            "--upstream=a=http://127.0.0.1:1".to_string(),
            proxy_arg("a", port),
            format!("--web.listen-address=127.0.0.1:{}", free_port()),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot listen"));
}

/// The client gives up while the upstream has not even sent its headers: hyper drops the
/// request's future, and the request must still leave `llm_active_requests` and be counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_before_the_headers_is_counted_and_not_left_active() {
    let silent = Fake::start(Arc::new(|_: &Seen| Answer::Hang));
    let (exporter, port) = start_proxy(
        "silent",
        &silent.url(),
        &[
            "--upstream.backend=silent=ollama".into(),
            "--upstream.timeout=300ms".into(),
        ],
    );
    let request = Request::post(format!("http://127.0.0.1:{port}/api/chat"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(b"{\"model\":\"llama3.2\"}")))
        .unwrap();
    let pending = tokio::spawn(client().request(request));
    // The request reached the upstream: it is in flight.
    let until = Instant::now() + PATIENCE;
    while silent.paths().is_empty() {
        assert!(
            Instant::now() < until,
            "the request never reached the upstream"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let active = "llm_active_requests{upstream=\"silent\",route=\"/api/chat\"}";
    assert_eq!(value(&exporter.metrics(), active), Some(1.0));
    // The client leaves: its connection closes with no response.
    pending.abort();
    let metrics = wait_for(
        &exporter,
        "llm_request_errors_total{upstream=\"silent\",model=\"unknown\",route=\"/api/chat\",kind=\"client_disconnect\"}",
        1.0,
    );
    assert_eq!(value(&metrics, active), Some(0.0), "{metrics}");
    assert_eq!(
        value(&metrics, "llm_requests_total{upstream=\"silent\",model=\"unknown\",route=\"/api/chat\",status=\"error\",code=\"499\"}"),
        Some(1.0)
    );
}

/// Reads a body to its end or its first error: the data received, and whether it ended cleanly.
async fn read_until_end_or_error(response: Response<Incoming>) -> (Vec<u8>, bool) {
    let mut body = response.into_body();
    let mut got = Vec::new();
    loop {
        match next_data(&mut body).await {
            Some(Ok(data)) => got.extend_from_slice(&data),
            Some(Err(_)) => return (got, false),
            None => return (got, true),
        }
    }
}

/// The upstream dies three events into a stream: the client gets those three events and then a
/// broken body (never a clean end that would look complete), and the request counts as
/// `upstream_broken`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_cut_by_the_upstream_reaches_the_client_cut_and_is_counted() {
    let fake = Fake::start(Arc::new(|_: &Seen| {
        Answer::recorded_stream("v1-chat-completions-stream", TOKEN_GAP).cut_after(3)
    }));
    let (exporter, port) = start_proxy(
        "local",
        &fake.url(),
        &["--upstream.backend=local=llama.cpp".into()],
    );
    let response = post(port, "/v1/chat/completions", &fixture(CHAT_STREAM_REQ)).await;
    assert_eq!(response.status(), 200);
    let (got, clean) = read_until_end_or_error(response).await;
    let events = split_after(
        &fixture("llama-server/v1-chat-completions-stream.body"),
        b"\n\n",
    );
    assert_eq!(got, events[..3].concat());
    assert!(!clean, "a cut stream must not end like a complete one");
    let labels =
        "upstream=\"local\",model=\"tiny-random-llama.gguf\",route=\"/v1/chat/completions\"";
    let metrics = wait_for(
        &exporter,
        &format!("llm_request_errors_total{{{labels},kind=\"upstream_broken\"}}"),
        1.0,
    );
    assert_eq!(
        value(
            &metrics,
            &format!("llm_requests_total{{{labels},status=\"error\",code=\"200\"}}")
        ),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        value(
            &metrics,
            "llm_active_requests{upstream=\"local\",route=\"/v1/chat/completions\"}"
        ),
        Some(0.0)
    );
    assert_no_panic(&exporter);
}

/// llama-server reports an error after the first result as `data: {"error":{…}}` and ends the
/// stream without `[DONE]` (reference §1): passed on unchanged, counted as `stream_error`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_llama_server_error_event_mid_stream_is_passed_on_and_counted() {
    let recorded = split_after(
        &fixture("llama-server/v1-chat-completions-stream.body"),
        b"\n\n",
    );
    let mut events = recorded[..3].to_vec();
    events.push(Bytes::from_static(
        b"data: {\"error\":{\"code\":500,\"message\":\"Failed to decode the batch\",\"type\":\"server_error\"}}\n\n",
    ));
    let sent = events.concat();
    let fake = Fake::start(Arc::new(move |_: &Seen| {
        let mut answer = Answer::recorded_stream("v1-chat-completions-stream", TOKEN_GAP);
        if let Answer::Stream { events: e, .. } = &mut answer {
            *e = events.clone();
        }
        answer
    }));
    let (exporter, port) = start_proxy("local", &fake.url(), &[]);
    let response = post(port, "/v1/chat/completions", &fixture(CHAT_STREAM_REQ)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(read_all(response).await, sent);
    let labels =
        "upstream=\"local\",model=\"tiny-random-llama.gguf\",route=\"/v1/chat/completions\"";
    let metrics = wait_for(
        &exporter,
        &format!("llm_request_errors_total{{{labels},kind=\"stream_error\"}}"),
        1.0,
    );
    assert_eq!(
        value(
            &metrics,
            &format!("llm_requests_total{{{labels},status=\"error\",code=\"200\"}}")
        ),
        Some(1.0),
        "{metrics}"
    );
    // The content before the error still gave a first token.
    assert_eq!(
        value(
            &metrics,
            &format!("llm_time_to_first_token_seconds_count{{{labels}}}")
        ),
        Some(1.0)
    );
}

/// 401 (no API key) and 500 reach the client exactly as the upstream sent them, and count as
/// `upstream_status` with their code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_401_and_500_pass_through_unchanged_and_are_counted() {
    let guarded = Fake::start(llama(Llama {
        api_key: Some("k3y"),
        ..Default::default()
    }));
    let failing = Fake::start(llama(Llama {
        mode: support::servers::LlamaMode::ServerError,
        ..Default::default()
    }));
    let (guarded_port, failing_port) = (free_port(), free_port());
    let exporter = start_exporter(&[
        format!("--upstream=guarded={}", guarded.url()),
        format!("--upstream=failing={}", failing.url()),
        "--upstream.backend=guarded=llama.cpp".into(),
        "--upstream.backend=failing=llama.cpp".into(),
        proxy_arg("guarded", guarded_port),
        proxy_arg("failing", failing_port),
    ]);
    let request = fixture("llama-server/v1-chat-completions.request.json");
    let response = post(guarded_port, "/v1/chat/completions", &request).await;
    assert_eq!(response.status(), 401);
    assert_eq!(
        response.headers()["content-type"],
        "application/json; charset=utf-8"
    );
    assert_eq!(
        read_all(response).await,
        fixture("llama-server/apikey-metrics-nokey.body")
    );
    let response = post(failing_port, "/v1/chat/completions", &request).await;
    assert_eq!(response.status(), 500);
    assert_eq!(
        read_all(response).await,
        Bytes::from_static(
            b"{\"error\":{\"message\":\"internal error\",\"type\":\"server_error\",\"code\":500}}"
        )
    );
    let metrics = wait_for(
        &exporter,
        "llm_requests_total{upstream=\"failing\",model=\"unknown\",route=\"/v1/chat/completions\",status=\"error\",code=\"500\"}",
        1.0,
    );
    for upstream in ["guarded", "failing"] {
        assert_eq!(
            value(&metrics, &format!("llm_request_errors_total{{upstream=\"{upstream}\",model=\"unknown\",route=\"/v1/chat/completions\",kind=\"upstream_status\"}}")),
            Some(1.0),
            "{metrics}"
        );
    }
    assert_eq!(
        value(&metrics, "llm_requests_total{upstream=\"guarded\",model=\"unknown\",route=\"/v1/chat/completions\",status=\"error\",code=\"401\"}"),
        Some(1.0)
    );
}

/// nginx's answer when a request is over `client_max_body_size`.
const NGINX_413: &[u8] = b"<html>\r\n<head><title>413 Request Entity Too Large</title></head>\r\n<body>\r\n<center><h1>413 Request Entity Too Large</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";

/// The proxy sets no size limit of its own and never buffers a request: a large body reaches the
/// upstream byte for byte, and where the upstream (or a proxy before it) has a limit, its 413
/// reaches the client unchanged and is counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_request_passes_unchanged_and_an_upstream_413_reaches_the_client() {
    const LIMIT: usize = 1 << 20;
    let limited = Fake::start(Arc::new(|seen: &Seen| {
        if seen.body.len() > LIMIT {
            Answer::Full {
                status: 413,
                headers: vec![
                    ("Server".into(), "nginx".into()),
                    ("Content-Type".into(), "text/html".into()),
                ],
                body: Bytes::from_static(NGINX_413),
            }
        } else {
            Answer::recorded("v1-chat-completions")
        }
    }));
    let (exporter, port) = start_proxy(
        "limited",
        &limited.url(),
        &["--upstream.backend=limited=llama.cpp".into()],
    );
    // Just under the limit: 1 MiB of prompt, passed whole.
    let content = "a".repeat(LIMIT - 100);
    let request = format!("{{\"messages\":[{{\"role\":\"user\",\"content\":\"{content}\"}}]}}");
    let response = post(port, "/v1/chat/completions", request.as_bytes()).await;
    assert_eq!(response.status(), 200);
    read_all(response).await;
    assert_eq!(limited.last_post().body, request.as_bytes());
    // 8 MiB: the upstream refuses it.
    let content = "b".repeat(8 << 20);
    let request = format!("{{\"messages\":[{{\"role\":\"user\",\"content\":\"{content}\"}}]}}");
    let response = post(port, "/v1/chat/completions", request.as_bytes()).await;
    assert_eq!(response.status(), 413);
    assert_eq!(read_all(response).await, Bytes::from_static(NGINX_413));
    assert_eq!(limited.last_post().body.len(), request.len());
    let metrics = wait_for(
        &exporter,
        "llm_requests_total{upstream=\"limited\",model=\"unknown\",route=\"/v1/chat/completions\",status=\"error\",code=\"413\"}",
        1.0,
    );
    assert_eq!(
        value(&metrics, "llm_request_errors_total{upstream=\"limited\",model=\"unknown\",route=\"/v1/chat/completions\",kind=\"upstream_status\"}"),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        value(&metrics, "llm_requests_total{upstream=\"limited\",model=\"tiny-random-llama.gguf\",route=\"/v1/chat/completions\",status=\"success\",code=\"200\"}"),
        Some(1.0),
        "{metrics}"
    );
}

/// Prompts and keys pass through the proxy to the upstream, and never show in the exporter's log
/// (at debug level) or its /metrics, whatever the outcome: success, upstream error, unreachable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prompts_and_keys_never_reach_logs_or_metrics() {
    const PROMPT: &str = "PROMPT-CANARY-the-secret-plan-7f3a";
    const KEY: &str = "KEY-CANARY-sk-91c2";
    let good = Fake::start(llama(Llama::default()));
    let failing = Fake::start(llama(Llama {
        mode: support::servers::LlamaMode::ServerError,
        ..Default::default()
    }));
    let (good_port, failing_port, down_port) = (free_port(), free_port(), free_port());
    let exporter = start_exporter(&[
        format!("--upstream=good={}", good.url()),
        format!("--upstream=failing={}", failing.url()),
        format!("--upstream=down=http://127.0.0.1:{}", free_port()),
        proxy_arg("good", good_port),
        proxy_arg("failing", failing_port),
        proxy_arg("down", down_port),
        "--log.level=debug".into(),
        "--log.format=json".into(),
    ]);
    let request = format!(
        "{{\"model\":\"m\",\"stream\":true,\"messages\":[{{\"role\":\"user\",\"content\":\"{PROMPT}\"}}]}}"
    );
    for (port, path) in [
        (good_port, "/v1/chat/completions"),
        (good_port, "/completion"),
        (failing_port, "/v1/chat/completions"),
        (down_port, "/api/chat"),
    ] {
        let request = Request::post(format!("http://127.0.0.1:{port}{path}?q={PROMPT}"))
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {KEY}"))
            .header("x-api-key", KEY)
            .body(Full::new(Bytes::from(request.clone())))
            .unwrap();
        let response = tokio::time::timeout(PATIENCE, client().request(request))
            .await
            .expect("in time")
            .expect("a response");
        read_all(response).await;
    }
    // The upstream got them (the proxy passes requests unchanged).
    let seen = good.last_post();
    assert!(std::str::from_utf8(&seen.body).unwrap().contains(PROMPT));
    assert_eq!(seen.headers["authorization"], format!("Bearer {KEY}"));
    let metrics = wait_for(
        &exporter,
        "llm_request_errors_total{upstream=\"down\",model=\"unknown\",route=\"/api/chat\",kind=\"upstream_unreachable\"}",
        1.0,
    );
    let log = exporter.stderr();
    for canary in [PROMPT, KEY, "CANARY"] {
        assert!(
            !metrics.contains(canary),
            "{canary} in /metrics:\n{metrics}"
        );
        assert!(!log.contains(canary), "{canary} in the log:\n{log}");
    }
    // The log did record the failures, so it was looked at, not empty.
    assert!(log.contains("upstream"), "{log}");
}

/// Idle upstream connections are closed when they reach their 4 s, not only when another
/// request comes (issue 16: 344 were still open 30 s after a burst).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_upstream_connections_are_closed_on_time_without_another_request() {
    const STREAMS: usize = 6;
    let gate = Arc::new(Semaphore::new(0));
    let g = gate.clone();
    let fake = Fake::start(Arc::new(move |_: &Seen| {
        Answer::recorded_stream("v1-chat-completions-stream", Duration::ZERO).gated(g.clone())
    }));
    let (_exporter, port) = start_proxy(
        "local",
        &fake.url(),
        &[
            "--upstream.backend=local=llama.cpp".into(),
            "--proxy.threads=1".into(),
        ],
    );
    // Streams held open at once: one upstream connection each.
    let mut pending = Vec::new();
    for _ in 0..STREAMS {
        pending.push(tokio::spawn(async move {
            read_all(post(port, "/v1/chat/completions", &fixture(CHAT_STREAM_REQ)).await).await
        }));
    }
    let until = Instant::now() + PATIENCE;
    while fake.paths().len() < STREAMS {
        assert!(
            Instant::now() < until,
            "the streams never reached the upstream"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    gate.add_permits(1000);
    for stream in pending {
        assert_eq!(
            stream.await.unwrap(),
            fixture("llama-server/v1-chat-completions-stream.body")
        );
    }
    let open = || {
        fake.open_connections
            .load(std::sync::atomic::Ordering::SeqCst)
    };
    // Kept for reuse once the streams ended (the clients' own connections are closed).
    assert!(open() > 0, "the proxy kept no connection to reuse");
    // With no request after the burst, they are closed once idle for their 4 s.
    let until = Instant::now() + PATIENCE;
    while open() > 0 {
        assert!(
            Instant::now() < until,
            "{} idle upstream connections still open after {PATIENCE:?}",
            open()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sends a measured request on a fresh connection to the proxy; the connection, with the
/// request written.
fn send_chat(port: u16) -> std::net::TcpStream {
    use std::io::Write;
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let body = fixture(CHAT_STREAM_REQ);
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    conn.write_all(&[head.as_bytes(), &body].concat()).unwrap();
    conn
}

/// The status of the answer on `conn`, if one comes within `wait`.
fn status_within(conn: &mut std::net::TcpStream, wait: Duration) -> Option<u16> {
    use std::io::Read;
    conn.set_read_timeout(Some(wait)).unwrap();
    let mut head = [0u8; 12];
    conn.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// With its file descriptors used up, the proxy cannot open a connection to the upstream: that
/// is the proxy's own shortage, answered 503 and counted as `local_resource`, never as an
/// unreachable upstream (issue 16: 325 such 502s were counted `upstream_unreachable`).
#[test]
fn a_proxy_out_of_file_descriptors_answers_503_and_counts_local_resource() {
    // Every request is held by the upstream: each keeps two descriptors in the proxy.
    let fake = Fake::start(Arc::new(|_: &Seen| Answer::Hang));
    let port = free_port();
    let upstream = format!("--upstream=up={}", fake.url());
    let proxy = proxy_arg("up", port);
    // A hard limit too, so that raising the soft limit to the hard one cannot lift it.
    let exporter = ExporterProcess::start_command(
        "sh",
        &[
            "-c",
            "ulimit -n 64 && exec \"$0\" \"$@\"",
            env!("CARGO_BIN_EXE_llm-exporter"),
            &upstream,
            "--upstream.backend=up=llama.cpp",
            &proxy,
            "--proxy.threads=1",
        ],
        &[],
    );
    // A client connection that holds one descriptor and can give it back.
    let mut spare = Some(std::net::TcpStream::connect(("127.0.0.1", port)).unwrap());
    let mut held = Vec::new();
    let status = loop {
        assert!(held.len() < 64, "the descriptors never ran out");
        let mut conn = send_chat(port);
        let until = Instant::now() + Duration::from_secs(2);
        let answered = loop {
            if fake.paths().len() > held.len() {
                break None;
            }
            if let Some(status) = status_within(&mut conn, Duration::from_millis(20)) {
                break Some(Some(status));
            }
            if Instant::now() > until {
                // Not even accepted (no descriptor left for it): freeing the spare's lets it
                // be accepted, and leaves none for its upstream connection.
                drop(spare.take());
                break Some(status_within(&mut conn, PATIENCE));
            }
        };
        match answered {
            None => held.push(conn),
            Some(status) => break status,
        }
    };
    assert_eq!(status, Some(503));
    // Descriptors back for the scrape.
    drop(held);
    let series = "llm_request_errors_total{upstream=\"up\",model=\"unknown\",route=\"/v1/chat/completions\",kind=\"local_resource\"}";
    let until = Instant::now() + PATIENCE;
    let metrics = loop {
        if let Ok(response) = http_get(exporter.addr, "/metrics", &[]) {
            let metrics = response.text();
            if response.status == 200 && value(&metrics, series) == Some(1.0) {
                break metrics;
            }
        }
        assert!(Instant::now() < until, "{series} never reached 1");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        !metrics.contains("kind=\"upstream_unreachable\""),
        "{metrics}"
    );
    assert_eq!(
        value(&metrics, "llm_requests_total{upstream=\"up\",model=\"unknown\",route=\"/v1/chat/completions\",status=\"error\",code=\"503\"}"),
        Some(1.0)
    );
    let text = exporter.stderr();
    drop(exporter);
    assert!(
        text.contains("no resources to reach the upstream"),
        "{text}"
    );
}

/// The value of `series`, or 0 when the exposition has no such line.
fn count(metrics: &str, series: &str) -> f64 {
    value(metrics, series).unwrap_or(0.0)
}

/// `/v1/messages` (Anthropic) and `/v1/responses` (OpenAI), plain and streamed, and the chat
/// stream with `include_usage`, on llama-server's recorded bytes: passed unchanged, and measured
/// as chat is (tokens, TTFT, inter-token gaps, finish reason, model).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_and_responses_apis_are_measured_like_chat() {
    let fake = Fake::start(llama_apis());
    let (exporter, port) = start_proxy("local", &fake.url(), &[]);
    for (path, stem, streamed) in [
        ("/v1/messages", "messages", false),
        ("/v1/messages", "messages-stream", true),
        ("/v1/responses", "responses", false),
        ("/v1/responses", "responses-stream", true),
        (
            "/v1/chat/completions",
            "v1-chat-completions-stream-include-usage",
            true,
        ),
    ] {
        let request = fixture(&format!("llama-server/{stem}.request.json"));
        let response = post(port, path, &request).await;
        assert_eq!(response.status(), 200, "{stem}");
        let want_type = if streamed {
            "text/event-stream"
        } else {
            "application/json; charset=utf-8"
        };
        assert_eq!(response.headers()["content-type"], want_type, "{stem}");
        assert_eq!(
            read_all(response).await,
            fixture(&format!("llama-server/{stem}.body")),
            "{stem}"
        );
        assert_eq!(fake.last_post().body, request);
    }
    let labels = |route: &str| {
        format!("upstream=\"local\",model=\"tiny-random-llama.gguf\",route=\"{route}\"")
    };
    let messages = labels("/v1/messages");
    let responses = labels("/v1/responses");
    let chat = labels("/v1/chat/completions");
    let metrics = wait_for(
        &exporter,
        &format!("llm_requests_total{{{chat},status=\"success\",code=\"200\"}}"),
        1.0,
    );
    for route in [&messages, &responses] {
        let v = |name: &str| value(&metrics, &format!("{name}{{{route}}}"));
        assert_eq!(
            value(
                &metrics,
                &format!("llm_requests_total{{{route},status=\"success\",code=\"200\"}}")
            ),
            Some(2.0),
            "{metrics}"
        );
        // 31 prompt tokens (30 of them cached) and 8 generated, plain and streamed alike.
        assert_eq!(v("llm_prompt_tokens_total"), Some(62.0), "{route}");
        assert_eq!(v("llm_tokens_generated_total"), Some(16.0), "{route}");
        assert_eq!(
            v("llm_time_to_first_token_seconds_count"),
            Some(1.0),
            "{route}"
        );
        // 8 text deltas in each stream: 7 gaps.
        assert_eq!(
            v("llm_inter_token_latency_seconds_count"),
            Some(7.0),
            "{route}"
        );
    }
    let finished = |route: &str, reason: &str| {
        count(
            &metrics,
            &format!("llm_requests_finished_total{{{route},finish_reason=\"{reason}\"}}"),
        )
    };
    // max_tokens (Messages), completed (Responses), length (chat).
    assert_eq!(finished(&messages, "length"), 2.0, "{metrics}");
    assert_eq!(finished(&responses, "stop"), 2.0, "{metrics}");
    assert_eq!(finished(&chat, "length"), 1.0, "{metrics}");
    // The include_usage chunk's counts (not the plain stream's 12 generated).
    assert_eq!(
        value(&metrics, &format!("llm_tokens_generated_total{{{chat}}}")),
        Some(8.0)
    );
    assert_eq!(
        value(&metrics, &format!("llm_prompt_tokens_total{{{chat}}}")),
        Some(31.0)
    );
    assert!(!metrics.contains("model=\"unknown\""), "{metrics}");
}

/// Ollama's `/v1` streaming a thinking model: its `reasoning` deltas are generated tokens
/// (first token, inter-token gaps), the label keeps Ollama's `:latest`; an error in the middle
/// of a stream (a chunk naming the model `""`, no `[DONE]`) is a stream error of that model.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ollama_v1_reasoning_streams_and_their_mid_stream_errors_are_measured() {
    let thinking = Fake::start(ollama_v1(OllamaV1 {
        model: "qwen3",
        reasoning: &["Okay", ",", " the", " user"],
        content: &["Hi", "!"],
        fail_after: None,
        slow_root: None,
    }));
    let failing = Fake::start(ollama_v1(OllamaV1 {
        model: "qwen3",
        reasoning: &["Okay", ",", " the", " user"],
        content: &["Hi", "!"],
        fail_after: Some(3),
        slow_root: None,
    }));
    let (port, failing_port) = (free_port(), free_port());
    let exporter = start_exporter(&[
        format!("--upstream=home={}", thinking.url()),
        format!("--upstream=broken={}", failing.url()),
        proxy_arg("home", port),
        proxy_arg("broken", failing_port),
    ]);
    let request = b"{\"model\":\"qwen3\",\"stream\":true,\"stream_options\":{\"include_usage\":true},\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
    let body = read_all(post(port, "/v1/chat/completions", request).await).await;
    assert!(body.ends_with(b"data: [DONE]\n\n"));
    let cut = read_all(post(failing_port, "/v1/chat/completions", request).await).await;
    assert!(!cut.windows(6).any(|w| w == b"[DONE]"));
    assert!(cut.windows(11).any(|w| w == b"\"model\":\"\","));

    let home = "upstream=\"home\",model=\"qwen3:latest\",route=\"/v1/chat/completions\"";
    let broken = "upstream=\"broken\",model=\"qwen3:latest\",route=\"/v1/chat/completions\"";
    let metrics = wait_for(
        &exporter,
        &format!("llm_request_errors_total{{{broken},kind=\"stream_error\"}}"),
        1.0,
    );
    // 4 reasoning and 2 answer deltas: 6 tokens, 5 gaps; the first token is the first thought.
    assert_eq!(
        value(
            &metrics,
            &format!("llm_inter_token_latency_seconds_count{{{home}}}")
        ),
        Some(5.0),
        "{metrics}"
    );
    assert_eq!(
        value(
            &metrics,
            &format!("llm_time_to_first_token_seconds_count{{{home}}}")
        ),
        Some(1.0)
    );
    assert_eq!(
        value(&metrics, &format!("llm_tokens_generated_total{{{home}}}")),
        Some(6.0)
    );
    assert_eq!(
        count(
            &metrics,
            &format!("llm_requests_finished_total{{{home},finish_reason=\"stop\"}}")
        ),
        1.0
    );
    assert_eq!(
        value(
            &metrics,
            &format!("llm_requests_total{{{broken},status=\"error\",code=\"200\"}}")
        ),
        Some(1.0)
    );
    assert_eq!(
        count(
            &metrics,
            &format!("llm_requests_finished_total{{{broken},finish_reason=\"error\"}}")
        ),
        1.0
    );
    assert!(!metrics.contains("model=\"unknown\""), "{metrics}");
}

/// Any OpenAI-compatible server (here in vLLM's shapes, no `Server` header): the model label is
/// the server's own name, with no Ollama `:latest`; reasoning deltas are tokens; token counts
/// come only when the client asked for the usage chunk, and reasoning tokens with them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generic_openai_server_keeps_its_model_names_and_is_measured() {
    let fake = Fake::start(generic_openai());
    let (exporter, port) = start_proxy("vllm", &fake.url(), &[]);
    for usage in [false, true] {
        let request = format!(
            "{{\"model\":\"{GENERIC_MODEL}\",\"stream\":true,\"stream_options\":{{\"include_usage\":{usage}}},\"messages\":[{{\"role\":\"user\",\"content\":\"hi\"}}]}}"
        );
        let body = read_all(post(port, "/v1/chat/completions", request.as_bytes()).await).await;
        let has_usage = body.windows(8).any(|w| w == b"\"usage\":");
        assert_eq!(has_usage, usage);
    }
    let labels =
        format!("upstream=\"vllm\",model=\"{GENERIC_MODEL}\",route=\"/v1/chat/completions\"");
    let metrics = wait_for(
        &exporter,
        &format!("llm_requests_total{{{labels},status=\"success\",code=\"200\"}}"),
        2.0,
    );
    assert!(!metrics.contains(":latest"), "{metrics}");
    let v = |name: &str| value(&metrics, &format!("{name}{{{labels}}}"));
    // Only the request that asked for usage reported tokens.
    assert_eq!(v("llm_tokens_generated_total"), Some(8.0));
    assert_eq!(v("llm_prompt_tokens_total"), Some(12.0));
    assert_eq!(v("llm_reasoning_tokens_total"), Some(3.0));
    // The role-only chunk is not a token; 3 reasoning and 5 answer deltas are: 7 gaps each.
    assert_eq!(v("llm_inter_token_latency_seconds_count"), Some(14.0));
    assert_eq!(v("llm_time_to_first_token_seconds_count"), Some(2.0));
    assert_eq!(
        count(
            &metrics,
            &format!("llm_requests_finished_total{{{labels},finish_reason=\"length\"}}")
        ),
        2.0
    );
}

/// The first answers of an upstream whose backend is still being detected are recorded once
/// detection has answered: an Ollama answer with no sign of Ollama in it (`/v1/messages`, not
/// streamed) that ends before detection does still gets Ollama's `:latest`, as every later one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_that_end_while_the_backend_is_detected_get_the_detected_spelling() {
    let fake = Fake::start(ollama_v1(OllamaV1 {
        model: "qwen3",
        reasoning: &[],
        content: &["Hi"],
        fail_after: None,
        slow_root: Some(Duration::from_millis(300)),
    }));
    let (exporter, port) = start_proxy("home", &fake.url(), &[]);
    let request = b"{\"model\":\"qwen3\",\"max_tokens\":8,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
    for _ in 0..2 {
        let response = post(port, "/v1/messages", request).await;
        assert_eq!(response.status(), 200);
        read_all(response).await;
    }
    let labels = "upstream=\"home\",model=\"qwen3:latest\",route=\"/v1/messages\"";
    let metrics = wait_for(
        &exporter,
        &format!("llm_requests_total{{{labels},status=\"success\",code=\"200\"}}"),
        2.0,
    );
    assert!(!metrics.contains("model=\"qwen3\""), "{metrics}");
    assert_eq!(
        value(&metrics, &format!("llm_prompt_tokens_total{{{labels}}}")),
        Some(22.0)
    );
    assert_eq!(
        value(
            &metrics,
            &format!("llm_requests_finished_total{{{labels},finish_reason=\"stop\"}}")
        ),
        Some(2.0)
    );
}
