//! Scrape latency and memory of the real exporter binary on the fake libnvidia-ml with 8 GPUs
//! and 50 processes.
//!
//! ```text
//! cargo build --release -p nvidia-exporter --examples
//! target/release/examples/bench_nvidia [path/to/nvidia-exporter] [scrapes]
//! ```
//!
//! It compiles the fake library with `$CC`/`cc`, or uses the one `$BENCH_FAKE_NVML` names.
//!
//! Three runs: back to back with the default `--nvml.min-interval=500ms` (scrapes mostly reuse
//! one sample, as concurrent scrapes do); back to back with `--nvml.min-interval=0s` (a fresh
//! NVML sample of all 8 GPUs and their processes for almost every scrape, taken while the
//! scrape waits); and paced like Prometheus, one scrape every 100 ms with
//! `--nvml.min-interval=0s`, where the worker learns the cadence and takes each scrape's fresh
//! sample just before it arrives (at most 300 scrapes; the first few sample on demand).

#[path = "../tests/fake-nvml/compile.rs"]
mod compile;

use common::testing::{http_get, ExporterProcess};
use std::path::PathBuf;
use std::time::{Duration, Instant};

const GPUS: usize = 8;
const PROCESSES: usize = 50;

fn main() {
    let mut args = std::env::args().skip(1);
    let binary = args
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(sibling_binary);
    let scrapes: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(2000);
    assert!(
        binary.exists(),
        "{} not found; build it first",
        binary.display()
    );

    let dir = std::env::temp_dir().join(format!("nvidia-exporter-bench-{}", std::process::id()));
    // A prebuilt fake library may be given where no C compiler is installed; `system` measures
    // the system's real libnvidia-ml instead (on a GPU machine).
    let library = match std::env::var("BENCH_FAKE_NVML") {
        Ok(system) if system == "system" => None,
        Ok(path) => Some(PathBuf::from(path)),
        Err(_) => Some(compile::compile(&dir, &[])),
    };
    std::fs::create_dir_all(&dir).unwrap();
    let scenario = dir.join("bench.scn");
    std::fs::write(&scenario, scenario_text()).unwrap();

    match &library {
        Some(_) => println!(
            "nvidia-exporter benchmark: {GPUS} fake GPUs, {PROCESSES} processes, {scrapes} sequential scrapes"
        ),
        None => println!("nvidia-exporter benchmark: system libnvidia-ml, {scrapes} sequential scrapes"),
    }
    for min_interval in ["500ms", "0s"] {
        run(
            &binary,
            library.as_deref(),
            &scenario,
            min_interval,
            scrapes,
            None,
        );
    }
    run(
        &binary,
        library.as_deref(),
        &scenario,
        "0s",
        scrapes.min(300),
        Some(Duration::from_millis(100)),
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn run(
    binary: &std::path::Path,
    library: Option<&std::path::Path>,
    scenario: &std::path::Path,
    min_interval: &str,
    scrapes: usize,
    pace: Option<Duration>,
) {
    let mut args = vec![format!("--nvml.min-interval={min_interval}")];
    if let Some(library) = library {
        args.push(format!("--nvml.library={}", library.display()));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let exporter = ExporterProcess::start(
        binary.to_str().unwrap(),
        &args,
        &[("FAKE_NVML_SCENARIO", scenario.to_str().unwrap())],
    );
    // Warm up: NVML initialisation, first sample, allocator steady state.
    let mut body = String::new();
    for _ in 0..50 {
        body = http_get(exporter.addr, "/metrics", &[]).unwrap().text();
    }
    assert!(body.contains("nvidia_up 1"), "exporter not up:\n{body}");
    let mut latencies = Vec::with_capacity(scrapes);
    let mut ages = Vec::with_capacity(scrapes);
    let mut next = Instant::now();
    for _ in 0..scrapes {
        if let Some(pace) = pace {
            // A fixed schedule, as Prometheus keeps, whatever each scrape took.
            next += pace;
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
        }
        let started = Instant::now();
        let response = http_get(exporter.addr, "/metrics", &[]).unwrap();
        latencies.push(started.elapsed());
        assert_eq!(response.status, 200);
        body = response.text();
        ages.extend(sample_age(&body));
    }
    ages.sort_by(f64::total_cmp);
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 - 1.0) * p).round() as usize];
    let series = body.lines().filter(|l| !l.starts_with('#')).count();
    let (rss, peak) = memory_kib(exporter.child.id());
    let mode = match pace {
        Some(p) => format!("every {} ms", p.as_millis()),
        None => "back to back".to_string(),
    };
    println!(
        "{mode:<13} --nvml.min-interval={min_interval:<6} median {:>8.3} ms  p99 {:>8.3} ms  max {:>8.3} ms  | sample age median {:.1} ms | {} series, {} KiB body | RSS {:.1} MiB (peak {:.1} MiB) | samples {}",
        ms(pct(0.5)),
        ms(pct(0.99)),
        ms(*latencies.last().unwrap()),
        ages.get(ages.len() / 2).copied().unwrap_or(f64::NAN) * 1000.0,
        series,
        body.len() / 1024,
        rss as f64 / 1024.0,
        peak as f64 / 1024.0,
        body.lines()
            .filter(|l| l.starts_with("nvidia_exporter_nvml_samples_total{"))
            .map(|l| l.replace("nvidia_exporter_nvml_samples_total", ""))
            .collect::<Vec<_>>()
            .join(" "),
    );
}

/// `nvidia_exporter_nvml_sample_age_seconds` of a scrape.
fn sample_age(body: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix("nvidia_exporter_nvml_sample_age_seconds "))
        .and_then(|v| v.trim().parse().ok())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// VmRSS and VmHWM of a process, in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// `target/<profile>/examples/bench_nvidia` → `target/<profile>/nvidia-exporter`.
fn sibling_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .and_then(|examples| examples.parent())
        .map(|profile| profile.join("nvidia-exporter"))
        .unwrap()
}

fn scenario_text() -> String {
    let mut text = String::from("driver_version 550.54.15\ncuda_version 12040\n");
    for gpu in 0..GPUS {
        text.push_str(&format!(
            "gpu\n  name NVIDIA H100 80GB HBM3\n  pci 00000000:{:02X}:00.0\n  memory 85520809984 566231040 42949672960\n  util 87 41\n  temp 61\n  memtemp 68\n  power 512345\n  energy 123456789\n  power_limit 700000\n  enforced_limit 700000\n  enc 0\n  dec 0\n  clocks 1755 1980 2619 1545\n  pstate 0\n  throttle 0x4\n  throttle_supported 0x1ff\n  violation 0 1500000000\n  violation 1 0\n  violation 2 0\n  violation 3 0\n  violation 4 0\n  violation 5 0\n  pcie 5 16 5 16 2\n  pcie_bytes 1099511627776 549755813888\n  ecc 1 0 0 0 0\n  remap 0 0 0 0\n  nvlink 1073741824 536870912 52428800 26214400\n  vgpu_license 0 0\n  gpm 85 80 40 60 35 1024 512\n",
            0x10 + gpu * 0x10
        ));
        for p in (0..PROCESSES).filter(|p| p % GPUS == gpu) {
            text.push_str(&format!(
                "  process {} C {} 10 5 0 0 0 /usr/bin/worker-{p}\n",
                10_000 + p,
                (p as u64 + 1) << 28
            ));
        }
    }
    text
}
