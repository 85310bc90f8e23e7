//! Bad input for the network collectors, on copies of the full fixture: a FIFO or a symlink
//! loop where a file should be, a file pointing at an endless device, an interface whose name
//! is not UTF-8. Each costs at most its own collector (success 0, the file named in the log) or
//! its own entry; the scrape always answers.

use common::testing::ExporterProcess;
use std::path::{Path, PathBuf};

const BINARY: &str = env!("CARGO_BIN_EXE_host-exporter");

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/full")
}

fn success(text: &str, collector: &str) -> Option<f64> {
    let prefix = format!("node_scrape_collector_success{{collector=\"{collector}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.parse().ok())
}

/// A copy of the full fixture's proc and sys trees under a fresh directory.
fn copy(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("net-bad-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // cp -a: the sysfs tree has symlinks (hwmon), which copy_tree does not copy.
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(fixture().join("proc"))
        .arg(fixture().join("sys"))
        .arg(&dir)
        .status()
        .unwrap();
    assert!(status.success());
    dir
}

fn start(dir: &Path, extra: &[&str]) -> ExporterProcess {
    let mut args = vec![
        format!("--path.procfs={}", dir.join("proc").display()),
        format!("--path.sysfs={}", dir.join("sys").display()),
        "--collector.disable-defaults".to_string(),
    ];
    for c in [
        "arp",
        "conntrack",
        "netstat",
        "sockstat",
        "softnet",
        "udp_queues",
        "ipvs",
        "netclass",
        "bonding",
        "infiniband",
        "fibrechannel",
    ] {
        args.push(format!("--collector.{c}"));
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ExporterProcess::start(BINARY, &args, &[])
}

fn mkfifo(path: &Path) {
    let _ = std::fs::remove_file(path);
    let c_path = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo reads a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
}

#[test]
fn a_fifo_fails_only_its_collector_within_the_scrape_timeout() {
    let dir = copy("fifo");
    // Opening a FIFO blocks until a writer comes, which never does.
    mkfifo(&dir.join("proc/net/arp"));
    mkfifo(&dir.join("sys/class/net/bonding_masters"));
    let exporter = start(&dir, &["--scrape.timeout=1s"]);
    let text = exporter.get("/metrics").text();
    assert_eq!(success(&text, "arp"), Some(0.0), "{text}");
    assert_eq!(success(&text, "bonding"), Some(0.0), "{text}");
    for collector in ["netstat", "sockstat", "softnet", "netclass", "conntrack"] {
        assert_eq!(success(&text, collector), Some(1.0), "{collector}");
    }
    assert!(text.contains("node_network_up{device=\"eth0\"} 1"));
    let log = exporter.stderr();
    assert!(log.contains("collector=arp"), "{log}");
    drop(exporter);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn symlink_loops_endless_files_and_names_that_are_not_utf8() {
    use std::os::unix::ffi::OsStrExt;
    let dir = copy("hostile");
    // A loop where a file should be: ELOOP, the collector fails naming the file.
    std::fs::remove_file(dir.join("proc/net/sockstat")).unwrap();
    std::os::unix::fs::symlink("sockstat", dir.join("proc/net/sockstat")).unwrap();
    // An endless file: refused at 8 MiB.
    std::fs::remove_file(dir.join("proc/net/snmp")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", dir.join("proc/net/snmp")).unwrap();
    // An interface whose name is not UTF-8 (anyone with CAP_NET_ADMIN can make one), and a
    // sysfs attribute that is a directory.
    let bad = dir
        .join("sys/class/net")
        .join(std::ffi::OsStr::from_bytes(b"tun\xff0"));
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::write(bad.join("operstate"), "up\n").unwrap();
    std::fs::write(bad.join("mtu"), "1500\n").unwrap();
    std::fs::remove_file(dir.join("sys/class/net/lo/mtu")).unwrap();
    std::fs::create_dir(dir.join("sys/class/net/lo/mtu")).unwrap();

    let exporter = start(&dir, &[]);
    let text = exporter.get("/metrics").text();
    assert_eq!(success(&text, "sockstat"), Some(0.0), "{text}");
    assert_eq!(success(&text, "netstat"), Some(0.0), "{text}");
    assert_eq!(success(&text, "netclass"), Some(1.0), "{text}");
    assert!(text.contains("node_network_mtu_bytes{device=\"tun\u{fffd}0\"} 1500"));
    assert!(text.contains("node_network_up{device=\"tun\u{fffd}0\"} 1"));
    assert!(!text.contains("node_network_mtu_bytes{device=\"lo\"}"));
    assert!(text.contains("node_network_mtu_bytes{device=\"eth0\"} 1400"));
    let log = exporter.stderr();
    assert!(
        log.contains(&format!("{}/net/sockstat", dir.join("proc").display())),
        "{log}"
    );
    assert!(log.contains("larger than 8 MiB"), "{log}");
    assert_eq!(exporter.get("/-/healthy").status, 200);
    drop(exporter);
    std::fs::remove_dir_all(&dir).unwrap();
}
