//! Scrape latency and memory of the real binary on the sysfs backend with 8 fake GPUs.
//!
//!     cargo build --release -p rocm-exporter --examples
//!     target/release/examples/bench [--scrapes N] [--gpus N] [--bin PATH] [--with-processes]
//!                                   [--fixture tests/fixtures/sysfs/dgpu]
//!
//! Set TMPDIR=/dev/shm to keep the fake tree in memory, as sysfs is.
//!
//! It builds a fake sysfs tree (copies of the RX 7900 XTX fixture at different PCI addresses),
//! starts `rocm-exporter --backend=sysfs` on a free loopback port, scrapes /metrics over HTTP
//! (one connection per scrape, as Prometheus does after an idle interval) and prints the median,
//! p99 and maximum scrape time and the exporter's resident memory (VmRSS, peak VmHWM).

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
            other => panic!("unknown argument {other}"),
        }
    }
    // target/<profile>/examples/bench → target/<profile>/rocm-exporter
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

    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port");
    let address = format!("127.0.0.1:{port}");
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

    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(&address).is_err() {
        assert!(Instant::now() < deadline, "exporter did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
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

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}
