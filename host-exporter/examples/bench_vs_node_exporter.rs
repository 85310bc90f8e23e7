//! Benchmark: host-exporter and Debian's node_exporter side by side, both running at once and
//! scraped in turn, each over one keep-alive connection, in two rounds: each with its default
//! collectors (what a user swapping one for the other gets), then both limited to the same
//! explicit list. Prints median and p99 scrape latency, CPU seconds per scrape, peak RSS, and our
//! figures as ratios of theirs.
//!
//!     cargo build --release -p host-exporter
//!     cargo run --release -p host-exporter --example bench_vs_node_exporter [-- SCRAPES]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The explicit round takes the first this many collectors of host-exporter's registry: the
/// ones it had first (cpu to rapl), which node_exporter has too. README's figures are for these.
const EXPLICIT_ROUND: usize = 13;

struct Figures {
    median_ms: f64,
    p99_ms: f64,
    cpu_ms_per_scrape: f64,
    peak_rss_mib: f64,
    bytes: usize,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One GET on a kept-alive connection; returns the body length.
fn scrape(reader: &mut BufReader<TcpStream>) -> usize {
    reader
        .get_mut()
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: bench\r\n\r\n")
        .unwrap();
    let mut content_length = None;
    let mut chunked = false;
    let mut line = String::new();
    loop {
        line.clear();
        reader.read_line(&mut line).unwrap();
        let l = line.trim_end().to_ascii_lowercase();
        if l.is_empty() {
            break;
        }
        if let Some(v) = l.strip_prefix("content-length:") {
            content_length = v.trim().parse::<usize>().ok();
        }
        if l.starts_with("transfer-encoding:") && l.contains("chunked") {
            chunked = true;
        }
    }
    if let Some(n) = content_length {
        let mut body = vec![0; n];
        reader.read_exact(&mut body).unwrap();
        return n;
    }
    assert!(chunked, "neither content-length nor chunked");
    let mut total = 0;
    loop {
        line.clear();
        reader.read_line(&mut line).unwrap();
        let size = usize::from_str_radix(line.trim(), 16).unwrap();
        let mut chunk = vec![0; size + 2];
        reader.read_exact(&mut chunk).unwrap();
        total += size;
        if size == 0 {
            return total;
        }
    }
}

fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = stat.rsplit_once(')').unwrap().1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    kib / 1024.0
}

/// A started exporter with a kept-alive connection to it.
struct Target {
    child: Child,
    reader: BufReader<TcpStream>,
    latencies_ms: Vec<f64>,
    cpu_before: f64,
    bytes: usize,
}

impl Target {
    fn start(program: &str, args: &[String], port: u16) -> Target {
        let child = Command::new(program)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
        let deadline = Instant::now() + Duration::from_secs(10);
        let stream = loop {
            match TcpStream::connect(("127.0.0.1", port)) {
                Ok(s) => break s,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                Err(e) => panic!("{program} on {port} did not start: {e}"),
            }
        };
        stream.set_nodelay(true).unwrap();
        let mut reader = BufReader::new(stream);
        let mut bytes = 0;
        for _ in 0..20 {
            bytes = scrape(&mut reader);
        }
        let cpu_before = cpu_seconds(child.id());
        Target {
            child,
            reader,
            latencies_ms: Vec::new(),
            cpu_before,
            bytes,
        }
    }

    fn scrape_timed(&mut self) {
        let started = Instant::now();
        scrape(&mut self.reader);
        self.latencies_ms
            .push(started.elapsed().as_secs_f64() * 1000.0);
    }

    fn finish(mut self) -> Figures {
        let cpu = cpu_seconds(self.child.id()) - self.cpu_before;
        let peak = peak_rss_mib(self.child.id());
        let _ = self.child.kill();
        let _ = self.child.wait();
        let n = self.latencies_ms.len();
        self.latencies_ms.sort_by(|a, b| a.partial_cmp(b).unwrap());
        Figures {
            median_ms: self.latencies_ms[n / 2],
            p99_ms: self.latencies_ms[(n * 99 / 100).min(n - 1)],
            cpu_ms_per_scrape: cpu * 1000.0 / n as f64,
            peak_rss_mib: peak,
            bytes: self.bytes,
        }
    }
}

fn main() {
    let scrapes: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1000);
    let ours_binary = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("host-exporter");
    assert!(
        ours_binary.exists(),
        "build it first: cargo build --release -p host-exporter ({})",
        ours_binary.display()
    );

    round(
        &format!("defaults against defaults, {scrapes} scrapes each, one keep-alive connection"),
        &[],
        &[],
        &ours_binary,
        scrapes,
    );
    let collectors: Vec<&str> = host_exporter::collector_names()
        .take(EXPLICIT_ROUND)
        .collect();
    let explicit: Vec<String> = std::iter::once("--collector.disable-defaults".to_string())
        .chain(collectors.iter().map(|c| format!("--collector.{c}")))
        .collect();
    round(
        &format!(
            "both limited to {}, {scrapes} scrapes each",
            collectors.join(",")
        ),
        &explicit,
        &explicit,
        &ours_binary,
        scrapes,
    );
}

/// One round: both started with their extra flags, scraped in turn, stopped, figures printed.
fn round(
    title: &str,
    node_extra: &[String],
    our_extra: &[String],
    ours_binary: &std::path::Path,
    scrapes: usize,
) {
    let node_port = free_port();
    let mut node_args = vec![
        format!("--web.listen-address=127.0.0.1:{node_port}"),
        "--log.level=error".to_string(),
    ];
    node_args.extend(node_extra.iter().cloned());
    let mut node = Target::start("prometheus-node-exporter", &node_args, node_port);
    let our_port = free_port();
    let mut our_args = vec![
        format!("--web.listen-address=127.0.0.1:{our_port}"),
        "--log.level=error".to_string(),
    ];
    our_args.extend(our_extra.iter().cloned());
    let mut ours = Target::start(ours_binary.to_str().unwrap(), &our_args, our_port);

    // Alternate the two, so that whatever else the machine does weighs on both alike.
    for _ in 0..scrapes {
        node.scrape_timed();
        ours.scrape_timed();
    }
    let node_figures = node.finish();
    let our_figures = ours.finish();

    println!("{title}");
    println!(
        "{:<16} {:>10} {:>10} {:>14} {:>14} {:>10}",
        "", "median ms", "p99 ms", "CPU ms/scrape", "peak RSS MiB", "bytes"
    );
    for (name, f) in [
        ("node_exporter", &node_figures),
        ("host-exporter", &our_figures),
    ] {
        println!(
            "{:<16} {:>10.3} {:>10.3} {:>14.3} {:>14.1} {:>10}",
            name, f.median_ms, f.p99_ms, f.cpu_ms_per_scrape, f.peak_rss_mib, f.bytes
        );
    }
    println!(
        "{:<16} {:>10.3} {:>10.3} {:>14.3} {:>14.3}",
        "ratio (ours/NE)",
        our_figures.median_ms / node_figures.median_ms,
        our_figures.p99_ms / node_figures.p99_ms,
        our_figures.cpu_ms_per_scrape / node_figures.cpu_ms_per_scrape,
        our_figures.peak_rss_mib / node_figures.peak_rss_mib,
    );
    println!();
}
