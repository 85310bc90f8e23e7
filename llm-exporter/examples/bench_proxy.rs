//! Benchmark: what the measuring proxy adds to a request, side by side with a direct connection
//! and with Debian's nginx as the reverse proxy, in the same run against the same upstream.
//!
//! A fake llama-server on loopback serves the recorded answers with no token pacing (so what is
//! left is the cost of the path in between). For each of the three paths it measures:
//! - non-streaming chat completions one at a time: latency p50 and p99;
//! - streaming chat completions one at a time: time to the first body byte, p50 and p99
//!   (both interleaved: each round sends one request down every path, so noise from other work
//!   on the machine falls on all three alike);
//! - streaming chat completions 64 at a time: completed streams per second, the median of 7
//!   rounds that take the three paths in turn;
//! - memory: RSS of the proxy process(es) with many streams held open, per stream.
//!
//!   cargo build --release -p llm-exporter --bins --examples
//!   target/release/examples/bench_proxy [requests] [held-streams]
//!
//! It starts `llm-exporter` from the same target directory (target/release/llm-exporter), and
//! `nginx` (apt-get install nginx-light) with a generated configuration (`proxy_buffering off`,
//! `proxy_request_buffering off`, upstream keep-alive, two workers like the proxy's two threads)
//! in the foreground on a loopback port, stopping both at the end. Without nginx its rows are
//! left out.

#[path = "../tests/support/fake.rs"]
mod fake;

use bytes::Bytes;
use fake::{fixture, Answer, Fake, Seen};
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// Streams at once for the throughput figure (the number).
const CONCURRENT_STREAMS: usize = 64;
/// Rounds of the throughput figure, each taking every path in turn; the median round counts.
const ROUNDS: usize = 7;

/// The `p`-quantile of sorted durations, in microseconds; `None` for an empty run.
fn pct(sorted: &[Duration], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() as f64 - 1.0) * p.clamp(0.0, 1.0)).round() as usize;
    Some(sorted[i].as_secs_f64() * 1e6)
}

fn show(v: Option<f64>) -> String {
    v.map(|v| format!("{v:8.1}"))
        .unwrap_or_else(|| "     n/a".into())
}

fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build(HttpConnector::new())
}

/// One request: total time and time to the first body byte.
async fn one(client: &HttpClient, url: &str, body: &Bytes) -> Option<(Duration, Duration)> {
    let started = Instant::now();
    let request = Request::post(url)
        .header("content-type", "application/json")
        .body(Full::new(body.clone()))
        .ok()?;
    let mut response = client.request(request).await.ok()?;
    if !response.status().is_success() {
        return None;
    }
    let mut first = None;
    while let Some(frame) = response.body_mut().frame().await {
        let frame = frame.ok()?;
        if frame.is_data() && first.is_none() {
            first = Some(started.elapsed());
        }
    }
    Some((started.elapsed(), first.unwrap_or_default()))
}

/// `requests` requests from `concurrency` tasks: sorted totals, sorted first bytes, wall time,
/// failures.
async fn run(
    url: &str,
    body: &Bytes,
    requests: usize,
    concurrency: usize,
) -> (Vec<Duration>, Vec<Duration>, Duration, usize) {
    let client = client();
    for _ in 0..50 {
        one(&client, url, body).await;
    }
    let started = Instant::now();
    let per_task = requests / concurrency;
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, url, body) = (client.clone(), url.to_string(), body.clone());
            tokio::spawn(async move {
                let mut out = Vec::with_capacity(per_task);
                for _ in 0..per_task {
                    out.push(one(&client, &url, &body).await);
                }
                out
            })
        })
        .collect();
    let (mut totals, mut firsts, mut failed) = (Vec::new(), Vec::new(), 0);
    for task in tasks {
        for result in task.await.unwrap_or_default() {
            match result {
                Some((total, first)) => {
                    totals.push(total);
                    firsts.push(first);
                }
                None => failed += 1,
            }
        }
    }
    let wall = started.elapsed();
    totals.sort();
    firsts.sort();
    (totals, firsts, wall, failed)
}

/// One request at a time, `requests` rounds, each round one request to every URL in turn, so that
/// noise from other work on the machine falls on all paths alike: per URL, sorted totals and
/// sorted first bytes, and failures.
async fn interleaved(
    urls: &[String],
    body: &Bytes,
    requests: usize,
) -> Vec<(Vec<Duration>, Vec<Duration>, usize)> {
    let client = client();
    for url in urls {
        for _ in 0..50 {
            one(&client, url, body).await;
        }
    }
    let mut out: Vec<(Vec<Duration>, Vec<Duration>, usize)> =
        urls.iter().map(|_| (Vec::new(), Vec::new(), 0)).collect();
    for _ in 0..requests {
        for (url, (totals, firsts, failed)) in urls.iter().zip(out.iter_mut()) {
            match one(&client, url, body).await {
                Some((total, first)) => {
                    totals.push(total);
                    firsts.push(first);
                }
                None => *failed += 1,
            }
        }
    }
    for (totals, firsts, _) in &mut out {
        totals.sort();
        firsts.sort();
    }
    out
}

/// Resident memory of the processes, in KiB.
fn rss_kib(pids: &[u32]) -> Option<u64> {
    let mut total = 0;
    for pid in pids {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        total += line.split_whitespace().nth(1)?.parse::<u64>().ok()?;
    }
    Some(total)
}

/// A process and its children (nginx's master and workers).
fn with_children(pid: u32) -> Vec<u32> {
    let mut pids = vec![pid];
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(child) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
                continue;
            };
            // After the parenthesized name: state, then the parent's pid.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            if ppid == Some(pid) {
                pids.push(child);
            }
        }
    }
    pids
}

/// Opens `n` streams that the upstream holds after their first event, and returns the RSS
/// growth of `pids` per open stream, in KiB.
async fn rss_per_stream(url: &str, body: &Bytes, n: usize, pids: &[u32]) -> Option<f64> {
    let client = client();
    // Warm: the pools, buffers and allocator arenas a first burst creates.
    for _ in 0..2 {
        hold_streams(&client, url, body, n, || None::<()>).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = rss_kib(pids)?;
    let during = hold_streams(&client, url, body, n, || rss_kib(pids)).await?;
    Some(during.saturating_sub(before) as f64 / n as f64)
}

/// Holds `n` streams open (each has had its first chunk), calls `measure`, then lets them go.
async fn hold_streams<T>(
    client: &HttpClient,
    url: &str,
    body: &Bytes,
    n: usize,
    measure: impl FnOnce() -> Option<T>,
) -> Option<T> {
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<bool>(n);
    let release = Arc::new(tokio::sync::Notify::new());
    let mut tasks = Vec::new();
    for _ in 0..n {
        let (client, url, body) = (client.clone(), url.to_string(), body.clone());
        let ready = ready_tx.clone();
        // Registered now, so a release sent before the task gets here still counts.
        let released = release.clone().notified_owned();
        tasks.push(tokio::spawn(async move {
            let request = Request::post(url)
                .header("content-type", "application/json")
                .body(Full::new(body))
                .unwrap();
            let Ok(mut response) = client.request(request).await else {
                let _ = ready.send(false).await;
                return;
            };
            let first = response.body_mut().frame().await;
            let _ = ready.send(matches!(first, Some(Ok(_)))).await;
            released.await;
        }));
    }
    let mut ok = 0;
    for _ in 0..n {
        if ready_rx.recv().await == Some(true) {
            ok += 1;
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let measured = if ok == n { measure() } else { None };
    release.notify_waiters();
    for task in tasks {
        let _ = task.await;
    }
    // Idle keep-alive connections close with the dropped streams' connections.
    tokio::time::sleep(Duration::from_millis(200)).await;
    measured
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for_port(port: u16, what: &str) {
    let until = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < until, "{what} did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// nginx in the foreground with a generated configuration, or `None` when it is not installed.
fn start_nginx(upstream_port: u16, port: u16) -> Option<(Child, PathBuf)> {
    let binary = ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.exists())?;
    let dir = std::env::temp_dir().join(format!("bench-nginx-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("logs")).ok()?;
    let conf = format!(
        "daemon off;
worker_processes 2;
pid {dir}/nginx.pid;
error_log {dir}/logs/error.log error;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    upstream model {{
        server 127.0.0.1:{upstream_port};
        keepalive 256;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://model;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_buffering off;
            proxy_request_buffering off;
            proxy_read_timeout 600s;
        }}
    }}
}}
",
        dir = dir.display()
    );
    let conf_path = dir.join("nginx.conf");
    std::fs::write(&conf_path, conf).ok()?;
    let child = Command::new(binary)
        .arg("-p")
        .arg(&dir)
        .arg("-c")
        .arg(&conf_path)
        .stdout(Stdio::null())
        .spawn()
        .ok()?;
    wait_for_port(port, "nginx");
    Some((child, dir))
}

/// SIGTERM (nginx's fast shutdown: the master stops its workers), then wait.
fn stop(mut child: Child) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

struct Figures {
    name: &'static str,
    plain: Vec<Duration>,
    stream_first: Vec<Duration>,
    concurrent_rate: Option<f64>,
    failed: usize,
    rss_per_stream: Option<f64>,
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let requests = args.first().copied().unwrap_or(3000).max(1);
    let held = args.get(1).copied().unwrap_or(256).max(1);

    // /v1/chat/completions: the recorded answers, as fast as possible. /completion: a stream
    // that sends its first event and then stays open (for the memory figure).
    let fake = Fake::start(Arc::new(|seen: &Seen| {
        if seen.path.starts_with("/completion") {
            Answer::recorded_stream("v1-chat-completions-stream", Duration::ZERO).stalling_after(1)
        } else if seen.body.windows(14).any(|w| w == b"\"stream\": true") {
            Answer::recorded_stream("v1-chat-completions-stream", Duration::ZERO)
        } else {
            Answer::recorded("v1-chat-completions")
        }
    }));
    let upstream_port = fake.addr.port();

    let exe = std::env::current_exe().unwrap();
    let binary = exe.parent().unwrap().parent().unwrap().join("llm-exporter");
    let proxy_port = free_port();
    let exporter = Command::new(&binary)
        .arg(format!("--upstream=bench={}", fake.url()))
        .arg("--upstream.backend=bench=llama.cpp")
        .arg(format!("--proxy=bench=127.0.0.1:{proxy_port}"))
        .arg(format!("--web.listen-address=127.0.0.1:{}", free_port()))
        .arg("--log.level=error")
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e} (build it with --release first)", binary.display()));
    wait_for_port(proxy_port, "llm-exporter");
    let nginx_port = free_port();
    let nginx = start_nginx(upstream_port, nginx_port);
    if nginx.is_none() {
        println!("nginx not found: its rows are left out (apt-get install nginx-light)");
    }

    let mut targets: Vec<(&'static str, u16, Vec<u32>)> = vec![
        ("direct", upstream_port, Vec::new()),
        ("llm-exporter", proxy_port, vec![exporter.id()]),
    ];
    if let Some((child, _)) = &nginx {
        targets.push(("nginx", nginx_port, with_children(child.id())));
    }

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let plain_body = fixture("llama-server/v1-chat-completions.request.json");
    let stream_body = fixture("llama-server/v1-chat-completions-stream.request.json");
    let chats: Vec<String> = targets
        .iter()
        .map(|(_, port, _)| format!("http://127.0.0.1:{port}/v1/chat/completions"))
        .collect();
    let plain_runs = rt.block_on(interleaved(&chats, &plain_body, requests));
    let stream_runs = rt.block_on(interleaved(&chats, &stream_body, requests));
    // Throughput in rounds that take the paths in turn, as the latencies do: a second of other
    // work on the machine then weighs on one round of each path, not on one path's only run.
    let per_round =
        (requests / ROUNDS).max(CONCURRENT_STREAMS) / CONCURRENT_STREAMS * CONCURRENT_STREAMS;
    let mut rates = vec![Vec::new(); chats.len()];
    let mut concurrent_failed = vec![0; chats.len()];
    for _ in 0..ROUNDS {
        for (i, chat) in chats.iter().enumerate() {
            let (done, _, wall, failed) =
                rt.block_on(run(chat, &stream_body, per_round, CONCURRENT_STREAMS));
            if !done.is_empty() {
                rates[i].push(done.len() as f64 / wall.as_secs_f64());
            }
            concurrent_failed[i] += failed;
        }
    }
    let mut figures = Vec::new();
    for (i, (name, port, pids)) in targets.iter().enumerate() {
        let hold = format!("http://127.0.0.1:{port}/completion");
        let (plain, _, f1) = plain_runs[i].clone();
        let (_, stream_first, f2) = stream_runs[i].clone();
        let f3 = concurrent_failed[i];
        rates[i].sort_by(f64::total_cmp);
        let rss = if pids.is_empty() {
            None
        } else {
            rt.block_on(rss_per_stream(&hold, &stream_body, held, pids))
        };
        figures.push(Figures {
            name,
            plain,
            stream_first,
            // The median round.
            concurrent_rate: rates[i].get(rates[i].len() / 2).copied(),
            failed: f1 + f2 + f3,
            rss_per_stream: rss,
        });
    }

    println!(
        "{requests} requests per figure; fake llama-server on loopback (803-byte JSON answer; 14-event, 4.3 KB SSE stream); {held} held streams for memory"
    );
    println!(
        "{:<13} {:>8} {:>8}   {:>8} {:>8}   {:>12}   {:>10}  failed",
        "path", "JSON p50", "p99", "TTFB p50", "p99", "64-stream/s", "KiB/stream"
    );
    for f in &figures {
        println!(
            "{:<13} {} {}   {} {}   {:>12}   {:>10}  {}",
            f.name,
            show(pct(&f.plain, 0.5)),
            show(pct(&f.plain, 0.99)),
            show(pct(&f.stream_first, 0.5)),
            show(pct(&f.stream_first, 0.99)),
            f.concurrent_rate
                .map(|r| format!("{r:.0}"))
                .unwrap_or_else(|| "n/a".into()),
            f.rss_per_stream
                .map(|r| format!("{r:.1}"))
                .unwrap_or_else(|| "-".into()),
            f.failed
        );
    }
    let direct = &figures[0];
    let diff = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| a - b);
    for f in &figures[1..] {
        println!(
            "added by {:<12} JSON p50 {} us  p99 {} us   TTFB p50 {} us  p99 {} us",
            f.name,
            show(diff(pct(&f.plain, 0.5), pct(&direct.plain, 0.5))),
            show(diff(pct(&f.plain, 0.99), pct(&direct.plain, 0.99))),
            show(diff(
                pct(&f.stream_first, 0.5),
                pct(&direct.stream_first, 0.5)
            )),
            show(diff(
                pct(&f.stream_first, 0.99),
                pct(&direct.stream_first, 0.99)
            )),
        );
    }
    println!("(latencies in microseconds)");

    stop(exporter);
    if let Some((child, dir)) = nginx {
        stop(child);
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_an_empty_run_are_absent() {
        assert_eq!(pct(&[], 0.99), None);
        let one = [Duration::from_micros(5)];
        assert_eq!(pct(&one, 0.5), Some(5.0));
        assert_eq!(pct(&one, 0.99), Some(5.0));
    }
}
