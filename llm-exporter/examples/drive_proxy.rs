//! Load for counting a proxy's work per request (instructions under callgrind, system calls
//! under strace), where wall-clock figures are too noisy: it serves the bench's fake
//! llama-server on one port, waits for a proxy (started separately, under the counting tool)
//! to accept on another, sends it a fixed number of requests of one kind, and exits.
//!
//!   target/release/examples/drive_proxy UPSTREAM_PORT PROXY_PORT plain|stream|concurrent N
//!
//! `plain`: N non-streaming chat completions one at a time; `stream`: N streaming ones one at a
//! time; `concurrent`: N streaming ones, 64 at a time. Run it twice with different N and divide
//! the difference of the counts by the difference of N: start-up and warm-up costs cancel out.

#[path = "../tests/support/fake.rs"]
mod fake;

use bytes::Bytes;
use fake::{fixture, Answer, Fake, Seen};
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// Streams at once for `concurrent` (the bench's figure).
const CONCURRENT_STREAMS: usize = 64;

/// One request, read to the end; whether it succeeded.
async fn one(client: &HttpClient, url: &str, body: &Bytes) -> bool {
    let Ok(request) = Request::post(url)
        .header("content-type", "application/json")
        .body(Full::new(body.clone()))
    else {
        return false;
    };
    let Ok(response) = client.request(request).await else {
        return false;
    };
    response.status().is_success() && response.into_body().collect().await.is_ok()
}

/// `n` requests from `tasks` tasks at once: how many failed.
async fn drive(url: &str, body: &Bytes, n: usize, tasks: usize) -> usize {
    let client = Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let per_task = n.div_ceil(tasks);
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let (client, url, body) = (client.clone(), url.to_string(), body.clone());
            let count = per_task.min(n.saturating_sub(t * per_task));
            tokio::spawn(async move {
                let mut failed = 0;
                for _ in 0..count {
                    failed += usize::from(!one(&client, &url, &body).await);
                }
                failed
            })
        })
        .collect();
    let mut failed = 0;
    for handle in handles {
        failed += handle.await.unwrap_or(per_task);
    }
    failed
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(upstream), Some(proxy), Some(kind), Some(n)) = (
        args.first().and_then(|a| a.parse::<u16>().ok()),
        args.get(1).and_then(|a| a.parse::<u16>().ok()),
        args.get(2).map(String::as_str),
        args.get(3).and_then(|a| a.parse::<usize>().ok()),
    ) else {
        eprintln!("usage: drive_proxy UPSTREAM_PORT PROXY_PORT plain|stream|concurrent N");
        return ExitCode::FAILURE;
    };
    let (body, tasks) = match kind {
        "plain" => ("v1-chat-completions.request.json", 1),
        "stream" => ("v1-chat-completions-stream.request.json", 1),
        "concurrent" => (
            "v1-chat-completions-stream.request.json",
            CONCURRENT_STREAMS,
        ),
        _ => {
            eprintln!("unknown kind {kind}: plain, stream or concurrent");
            return ExitCode::FAILURE;
        }
    };
    let _fake = Fake::start_on(
        upstream,
        Arc::new(|seen: &Seen| {
            if seen.body.windows(14).any(|w| w == b"\"stream\": true") {
                Answer::recorded_stream("v1-chat-completions-stream", Duration::ZERO)
            } else {
                Answer::recorded("v1-chat-completions")
            }
        }),
    );
    // A proxy under valgrind takes seconds to start.
    let until = Instant::now() + Duration::from_secs(120);
    while std::net::TcpStream::connect(("127.0.0.1", proxy)).is_err() {
        if Instant::now() > until {
            eprintln!("nothing listens on port {proxy}");
            return ExitCode::FAILURE;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let Ok(rt) = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    else {
        eprintln!("cannot start a runtime");
        return ExitCode::FAILURE;
    };
    let body = fixture(&format!("llama-server/{body}"));
    let url = format!("http://127.0.0.1:{proxy}/v1/chat/completions");
    let started = Instant::now();
    let failed = rt.block_on(drive(&url, &body, n, tasks));
    println!(
        "{kind}: {n} requests in {:.2}s, {failed} failed",
        started.elapsed().as_secs_f64()
    );
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
