//! Start-up behaviour of the real binary: settings from flags, environment and a TOML file;
//! clear errors that stop start-up; SIGTERM.

use common::testing::ExporterProcess;
use std::process::Command;
use std::time::{Duration, Instant};

const BINARY: &str = env!("CARGO_BIN_EXE_host-exporter");

/// Runs the binary expecting it to refuse to start; returns its stderr.
fn refuses(args: &[&str], envs: &[(&str, &str)]) -> String {
    let out = Command::new(BINARY)
        .args(args)
        .envs(envs.iter().copied())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "expected exit 1 for {args:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn bad_settings_stop_start_up_naming_the_setting() {
    assert!(refuses(&["--log.level=chatty"], &[]).contains("--log.level"));
    assert!(refuses(&["--collector.filesystem.mount-timeout=soon"], &[])
        .contains("--collector.filesystem.mount-timeout"));
    assert!(
        refuses(&["--collector.diskstats.device-exclude=(unclosed"], &[])
            .contains("--collector.diskstats.device-exclude")
    );
    assert!(refuses(
        &[
            "--collector.netdev.device-include=a",
            "--collector.netdev.device-exclude=b"
        ],
        &[]
    )
    .contains("mutually exclusive"));
    let env_error = refuses(&[], &[("HOST_EXPORTER_LOG_FORMAT", "xml")]);
    assert!(
        env_error.contains("--log.format") && env_error.contains("HOST_EXPORTER_LOG_FORMAT"),
        "{env_error}"
    );
    assert!(refuses(&[], &[("HOST_EXPORTER_COLLECTOR_CPU", "maybe")])
        .contains("HOST_EXPORTER_COLLECTOR_CPU"));
}

#[test]
fn missing_or_wrong_web_config_stops_start_up() {
    let dir = std::env::temp_dir().join(format!("startup-web-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let missing = refuses(&["--web.config.file=/nonexistent/web.yml"], &[]);
    assert!(missing.contains("/nonexistent/web.yml"), "{missing}");
    let no_cert = dir.join("web.yml");
    std::fs::write(
        &no_cert,
        "tls_server_config:\n  cert_file: absent.crt\n  key_file: absent.key\n",
    )
    .unwrap();
    let err = refuses(&[&format!("--web.config.file={}", no_cert.display())], &[]);
    assert!(err.contains("absent.crt"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_address_in_use_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let err = refuses(&[&format!("--web.listen-address={address}")], &[]);
    assert!(
        err.contains("--web.listen-address") && err.contains(&address),
        "{err}"
    );
}

#[test]
fn settings_from_environment_and_file() {
    let dir = std::env::temp_dir().join(format!("startup-toml-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("host-exporter.toml");
    std::fs::write(
        &file,
        "[web]\ntelemetry-path = \"/from-file\"\n[collector]\nloadavg = false\n",
    )
    .unwrap();
    let config = format!("--config.file={}", file.display());
    let exporter =
        ExporterProcess::start(BINARY, &[&config], &[("HOST_EXPORTER_LOG_FORMAT", "json")]);
    assert_eq!(exporter.get("/from-file").status, 200);
    assert_eq!(exporter.get("/metrics").status, 404);
    let body = exporter.get("/from-file").text();
    assert!(
        !body.contains("node_load1"),
        "loadavg was disabled in the file"
    );
    assert!(body.contains("node_cpu_seconds_total"));
    let first_log_line = exporter
        .stderr()
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    assert!(
        first_log_line.starts_with("{\"ts\":")
            && first_log_line.contains("\"msg\":\"starting host-exporter\""),
        "{first_log_line}"
    );

    // The environment beats the file, and a flag beats both.
    let exporter = ExporterProcess::start(
        BINARY,
        &[&config, "--collector.loadavg"],
        &[("HOST_EXPORTER_WEB_TELEMETRY_PATH", "/from-env")],
    );
    assert_eq!(exporter.get("/from-env").status, 200);
    assert!(exporter.get("/from-env").text().contains("node_load1"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn sigterm_stops_the_exporter_cleanly() {
    let mut exporter = ExporterProcess::start(BINARY, &[], &[]);
    let pid = exporter.child.id() as i32;
    // SAFETY: sending a signal to our own child.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(status) = exporter.child.try_wait().unwrap() {
            assert!(status.success(), "exit status {status}");
            break;
        }
        assert!(Instant::now() < deadline, "did not stop after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(exporter.stderr().contains("shutting down"));
}

#[test]
fn sigterm_stops_the_exporter_even_with_a_collector_stuck_in_a_read() {
    // A FIFO in place of /proc/net/dev: opening it blocks until a writer comes, which never does.
    let dir = std::env::temp_dir().join(format!("startup-fifo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    common::testing::copy_tree(
        std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/full/proc"
        )),
        &dir,
    );
    let fifo = dir.join("net/dev");
    std::fs::remove_file(&fifo).unwrap();
    let c_path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo reads a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
    let procfs = format!("--path.procfs={}", dir.display());
    let mut exporter = ExporterProcess::start(
        BINARY,
        &[
            &procfs,
            "--scrape.timeout=1s",
            "--collector.disable-defaults",
            "--collector.netdev",
        ],
        &[],
    );
    let scrape = exporter.get("/metrics").text();
    assert!(
        scrape.contains("node_scrape_collector_success{collector=\"netdev\"} 0"),
        "{scrape}"
    );
    let pid = exporter.child.id() as i32;
    // SAFETY: sending a signal to our own child.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    // The README promises an exit within 5 s of grace; allow generously more on a busy machine.
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = exporter.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "still running 20 s after SIGTERM: {}",
            exporter.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit status {status}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_soft_open_file_limit_is_raised_to_the_hard_one() {
    let exporter = ExporterProcess::start_command(
        "sh",
        &["-c", "ulimit -Sn 256 && exec \"$0\" \"$@\"", BINARY],
        &[],
    );
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", exporter.child.id())).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let fields: Vec<&str> = line.split_whitespace().collect();
    let (soft, hard) = (fields[3], fields[4]);
    assert_ne!(soft, "256", "{line}");
    // The hard limit, or a million where the hard one is higher (some container runtimes).
    let hard: u64 = hard.parse().unwrap_or(u64::MAX);
    assert_eq!(soft.parse::<u64>().unwrap(), hard.min(1 << 20), "{line}");
}

#[test]
fn help_and_version() {
    let out = Command::new(BINARY).arg("--version").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
    let out = Command::new(BINARY).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--web.listen-address",
        "--collector.filesystem",
        "--path.rootfs",
        "--web.config.file",
        "--config.file",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help");
    }
}

#[test]
fn listens_on_every_address_given() {
    let second = common::testing::free_port();
    let exporter = ExporterProcess::start(
        BINARY,
        &[&format!("--web.listen-address=[::1]:{second}")],
        &[],
    );
    assert_eq!(exporter.get("/-/healthy").status, 200);
    let v6: std::net::SocketAddr = format!("[::1]:{second}").parse().unwrap();
    match common::testing::http_get(v6, "/-/healthy", &[]) {
        Ok(r) => assert_eq!(r.status, 200),
        // A host without IPv6 loopback cannot bind ::1 at all; then start-up would have failed.
        Err(e) => panic!("second address not served: {e}"),
    }
}
