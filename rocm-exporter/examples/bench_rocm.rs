//! Scrape latency and memory of the real binary on the sysfs backend with 8 fake GPUs, or on
//! the rocm-smi backend with a fake rocm-smi that takes seconds per run.
//!
//!     cargo build --release -p rocm-exporter --bins --examples
//!     target/release/examples/bench_rocm [--scrapes N] [--gpus N] [--bin PATH] [--with-processes]
//!                                   [--fixture tests/fixtures/sysfs/dgpu]
//!     target/release/examples/bench_rocm --rocm-smi-delay 2 [--scrapes N] [--interval-ms MS]
//!
//! Set TMPDIR=/dev/shm to keep the fake tree in memory, as sysfs is.
//!
//! It builds a fake sysfs tree (copies of the RX 7900 XTX fixture at different PCI addresses),
//! starts `rocm-exporter --backend=sysfs` on a free loopback port, scrapes /metrics over HTTP
//! (one connection per scrape, as Prometheus does after an idle interval) and prints the median,
//! p99 and maximum scrape time and the exporter's resident memory (VmRSS, peak VmHWM).
//!
//! With `--rocm-smi-delay S` it starts `--backend=rocm-smi` on `tests/fixtures/fake-rocm-smi`
//! in its `slow:S` mode (each run sleeps S seconds, then prints the recorded MI100 output) and
//! times the first scrape (which has to wait for a run) apart from the rest (which must not),
//! scraping every `--interval-ms` (default 10) so that background refreshes happen meanwhile.

use common::testing::copy_tree;
use rocm_exporter::backend::sysfs::SysfsBackend;
use rocm_exporter::model::Backend;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn main() {
    let mut scrapes = 2000usize;
    let mut gpus = 8usize;
    let mut binary: Option<PathBuf> = None;
    let mut with_processes = false;
    let mut fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sysfs/dgpu");
    let mut rocm_smi_delay: Option<f64> = None;
    let mut interval = Duration::from_millis(10);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--scrapes" => {
                scrapes = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--scrapes N")
            }
            "--gpus" => gpus = args.next().and_then(|v| v.parse().ok()).expect("--gpus N"),
            "--bin" => binary = args.next().map(PathBuf::from),
            "--with-processes" => with_processes = true,
            "--fixture" => fixture = args.next().map(PathBuf::from).expect("--fixture DIR"),
            "--rocm-smi-delay" => {
                rocm_smi_delay = Some(
                    args.next()
                        .and_then(|v| v.parse().ok())
                        .expect("--rocm-smi-delay SECONDS"),
                )
            }
            "--interval-ms" => {
                interval = Duration::from_millis(
                    args.next()
                        .and_then(|v| v.parse().ok())
                        .expect("--interval-ms MS"),
                )
            }
            other => panic!("unknown argument {other}"),
        }
    }
    // target/<profile>/examples/bench_rocm → target/<profile>/rocm-exporter
    let binary = binary.unwrap_or_else(|| {
        let exe = std::env::current_exe().expect("own path");
        exe.parent()
            .and_then(Path::parent)
            .map(|dir| dir.join("rocm-exporter"))
            .expect("binary next to the examples directory")
    });
    assert!(
        binary.exists(),
        "{} not found; build it first or pass --bin",
        binary.display()
    );

    if let Some(delay) = rocm_smi_delay {
        bench_rocm_smi(&binary, delay, scrapes, interval);
        return;
    }

    let tree = std::env::temp_dir().join(format!("rocm-exporter-bench-{}", std::process::id()));
    build_tree(&fixture, &tree, gpus);

    // The backend alone, without HTTP: what one collection of all GPUs costs.
    let mut backend = SysfsBackend::new(&tree, "/proc");
    let mut collect_times: Vec<Duration> = (0..scrapes)
        .map(|_| {
            let started = Instant::now();
            let snapshot = backend.sample().expect("sample");
            assert_eq!(snapshot.devices.len(), gpus);
            started.elapsed()
        })
        .collect();
    collect_times.sort();

    let address = free_address();
    let mut command = Command::new(&binary);
    command
        .arg(format!("--web.listen-address={address}"))
        .arg("--backend=sysfs")
        .arg(format!("--path.sysfs={}", tree.display()))
        .arg("--log.level=warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    if !with_processes {
        command.arg("--no-collector.processes");
    }
    let mut child = command.spawn().expect("start the exporter");

    wait_listening(&address);
    let first = scrape(&address);
    let gpu_series = first.lines().filter(|l| l.starts_with("gpu_up{")).count();
    assert_eq!(gpu_series, gpus, "expected {gpus} GPUs in:\n{first}");

    for _ in 0..50 {
        scrape(&address);
    }
    let mut times = Vec::with_capacity(scrapes);
    for _ in 0..scrapes {
        let started = Instant::now();
        let body = scrape(&address);
        times.push(started.elapsed());
        assert!(body.contains("rocm_up{backend=\"sysfs\"} 1"));
    }
    times.sort();
    let at = |q: f64| times[((times.len() as f64 - 1.0) * q).round() as usize];
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map(|kb| kb / 1024.0)
            .unwrap_or(f64::NAN)
    };
    println!(
        "rocm-exporter sysfs backend, {gpus} GPUs, {scrapes} scrapes, {} bytes per scrape{}",
        first.len(),
        if with_processes {
            ", processes collector on the host /proc"
        } else {
            ""
        }
    );
    println!(
        "sysfs collection alone: median {:.3} ms, p99 {:.3} ms",
        ms(collect_times[collect_times.len() / 2]),
        ms(collect_times[(collect_times.len() - 1) * 99 / 100])
    );
    println!(
        "scrape latency: median {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        ms(at(0.5)),
        ms(at(0.99)),
        ms(times[times.len() - 1])
    );
    println!(
        "memory: VmRSS {:.1} MiB, VmHWM (peak) {:.1} MiB",
        field("VmRSS:"),
        field("VmHWM:")
    );

    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&tree);
}

/// The rocm-smi backend with a rocm-smi that takes `delay` seconds per run: the first scrape
/// waits for a run, every later one must answer from the last sample without waiting.
fn bench_rocm_smi(binary: &Path, delay: f64, scrapes: usize, interval: Duration) {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let runs = std::env::temp_dir().join(format!("rocm-exporter-bench-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&runs);
    let address = free_address();
    let mut child = Command::new(binary)
        .arg(format!("--web.listen-address={address}"))
        .arg("--backend=rocm-smi")
        .arg(format!(
            "--rocm-smi.path={}",
            fixtures.join("fake-rocm-smi").display()
        ))
        .arg("--no-collector.processes")
        .arg("--log.level=warn")
        .env(
            "FAKE_ROCM_SMI_FIXTURE",
            fixtures.join("rocm-smi/mi100-rocm-6.0.2.json"),
        )
        .env("FAKE_ROCM_SMI_MODE", format!("slow:{delay}"))
        .env("FAKE_ROCM_SMI_LOG", &runs)
        .env_remove("FAKE_ROCM_SMI_MODE_FILE")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the exporter");
    wait_listening(&address);

    let started = Instant::now();
    let first = scrape(&address);
    let first_took = started.elapsed();
    assert!(first.contains("rocm_up{backend=\"rocm-smi\"} 1"), "{first}");

    let mut times = Vec::with_capacity(scrapes);
    let mut oldest = 0.0f64;
    let window = Instant::now();
    for _ in 0..scrapes {
        let started = Instant::now();
        let body = scrape(&address);
        times.push(started.elapsed());
        assert!(body.contains("rocm_up{backend=\"rocm-smi\"} 1"), "{body}");
        let age = body
            .lines()
            .find_map(|l| {
                l.strip_prefix("rocm_exporter_backend_sample_age_seconds{backend=\"rocm-smi\"} ")
            })
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(f64::NAN);
        oldest = oldest.max(age);
        std::thread::sleep(interval);
    }
    let window = window.elapsed();
    times.sort();
    let at = |q: f64| times[((times.len() as f64 - 1.0) * q).round() as usize];
    let count = std::fs::read_to_string(&runs)
        .map(|r| r.lines().count())
        .unwrap_or(0);
    println!(
        "rocm-exporter rocm-smi backend, fake rocm-smi taking {delay} s per run, {scrapes} scrapes every {} ms over {:.1} s",
        interval.as_millis(),
        window.as_secs_f64()
    );
    println!(
        "first scrape (no sample yet, waits for a run): {:.3} ms",
        ms(first_took)
    );
    println!(
        "scrape latency after it: median {:.3} ms, p99 {:.3} ms, max {:.3} ms; oldest sample served {oldest:.2} s; rocm-smi runs {count}",
        ms(at(0.5)),
        ms(at(0.99)),
        ms(times[times.len() - 1])
    );
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_file(&runs);
}

fn free_address() -> String {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port");
    format!("127.0.0.1:{port}")
}

fn wait_listening(address: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(address).is_err() {
        assert!(Instant::now() < deadline, "exporter did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn scrape(address: &str) -> String {
    let mut stream = TcpStream::connect(address).expect("connect");
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let (head, body) = response.split_once("\r\n\r\n").expect("HTTP response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.to_string()
}

/// `gpus` copies of the dGPU fixture, each at its own PCI address.
fn build_tree(fixture: &Path, root: &Path, gpus: usize) {
    let _ = std::fs::remove_dir_all(root);
    copy_tree(&fixture.join("module"), &root.join("module"));
    for n in 0..gpus {
        let card = root.join(format!("class/drm/card{n}"));
        copy_tree(&fixture.join("class/drm/card0"), &card);
        std::fs::write(
            card.join("device/uevent"),
            format!("DRIVER=amdgpu\nPCI_SLOT_NAME=0000:{:02x}:00.0\n", n + 3),
        )
        .unwrap();
    }
}
