//! Benchmark: what the measuring proxy adds to a request. A fake llama-server on loopback serves
//! the recorded answers with no token pacing (so the proxy's own cost is what is left); the same
//! requests go once straight to it and once through `llm-exporter --proxy`.
//!
//!   cargo build --release -p llm-exporter --bins --examples
//!   target/release/examples/bench_proxy [requests] [concurrency]
//!
//! It starts `llm-exporter` from the same target directory (target/release/llm-exporter).

#[path = "../tests/support/fake.rs"]
mod fake;

use bytes::Bytes;
use fake::{fixture, Answer, Fake, Seen};
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

type HttpClient = Client<HttpConnector, Full<Bytes>>;

struct Run {
    latencies: Vec<Duration>,
    first_chunk: Vec<Duration>,
    wall: Duration,
}

async fn one(client: &HttpClient, url: &str, body: &Bytes) -> (Duration, Duration) {
    let started = Instant::now();
    let request = Request::post(url)
        .header("content-type", "application/json")
        .body(Full::new(body.clone()))
        .unwrap();
    let mut response = client.request(request).await.expect("response");
    let mut first = None;
    while let Some(frame) = response.body_mut().frame().await {
        let frame = frame.expect("frame");
        if frame.is_data() && first.is_none() {
            first = Some(started.elapsed());
        }
    }
    (started.elapsed(), first.unwrap_or_default())
}

async fn run(url: String, body: Bytes, requests: usize, concurrency: usize) -> Run {
    let client: HttpClient = Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    // Warm the connection pools.
    for _ in 0..20 {
        one(&client, &url, &body).await;
    }
    let started = Instant::now();
    let per_task = requests / concurrency;
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, url, body) = (client.clone(), url.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::with_capacity(per_task);
            for _ in 0..per_task {
                out.push(one(&client, &url, &body).await);
            }
            out
        }));
    }
    let mut latencies = Vec::new();
    let mut first_chunk = Vec::new();
    for task in tasks {
        for (total, first) in task.await.unwrap() {
            latencies.push(total);
            first_chunk.push(first);
        }
    }
    let wall = started.elapsed();
    latencies.sort();
    first_chunk.sort();
    Run {
        latencies,
        first_chunk,
        wall,
    }
}

fn pct(v: &[Duration], p: f64) -> f64 {
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i].as_secs_f64() * 1e6
}

fn report(name: &str, direct: &Run, proxied: &Run) {
    println!("{name}");
    for (label, run) in [("direct ", direct), ("proxied", proxied)] {
        println!(
            "  {label}: p50 {:7.1} us  p99 {:7.1} us  first chunk p50 {:7.1} us  {:8.0} req/s",
            pct(&run.latencies, 0.5),
            pct(&run.latencies, 0.99),
            pct(&run.first_chunk, 0.5),
            run.latencies.len() as f64 / run.wall.as_secs_f64()
        );
    }
    println!(
        "  added  : p50 {:7.1} us  p99 {:7.1} us",
        pct(&proxied.latencies, 0.5) - pct(&direct.latencies, 0.5),
        pct(&proxied.latencies, 0.99) - pct(&direct.latencies, 0.99)
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let requests = args.first().copied().unwrap_or(4000);
    let concurrency = args.get(1).copied().unwrap_or(1).max(1);

    let fake = Fake::start(Arc::new(|seen: &Seen| {
        if seen.body.windows(14).any(|w| w == b"\"stream\": true") {
            Answer::recorded_stream("v1-chat-completions-stream", Duration::ZERO)
        } else {
            Answer::recorded("v1-chat-completions")
        }
    }));
    let exe = std::env::current_exe().unwrap();
    let binary = exe.parent().unwrap().parent().unwrap().join("llm-exporter");
    let proxy_port = free_port();
    let mut child = Command::new(&binary)
        .arg(format!("--upstream=bench={}", fake.url()))
        .arg("--upstream.backend=bench=llama.cpp")
        .arg(format!("--proxy=bench=127.0.0.1:{proxy_port}"))
        .arg(format!("--web.listen-address=127.0.0.1:{}", free_port()))
        .arg("--log.level=error")
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e} (build it with --release first)", binary.display()));
    let until = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", proxy_port)).is_err() {
        assert!(Instant::now() < until, "the proxy did not start");
        std::thread::sleep(Duration::from_millis(20));
    }

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!("{requests} requests, {concurrency} at a time, fake llama-server on loopback");
    let direct_url = format!("{}/v1/chat/completions", fake.url());
    let proxy_url = format!("http://127.0.0.1:{proxy_port}/v1/chat/completions");
    for (name, body) in [
        (
            "non-streaming chat completion (803-byte JSON answer)",
            fixture("llama-server/v1-chat-completions.request.json"),
        ),
        (
            "streaming chat completion (14 SSE events, 4.3 KB)",
            fixture("llama-server/v1-chat-completions-stream.request.json"),
        ),
    ] {
        let direct = rt.block_on(run(direct_url.clone(), body.clone(), requests, concurrency));
        let proxied = rt.block_on(run(proxy_url.clone(), body, requests, concurrency));
        report(name, &direct, &proxied);
    }
    let _ = child.kill();
    let _ = child.wait();
}
