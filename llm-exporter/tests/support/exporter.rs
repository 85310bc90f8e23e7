//! Runs the real `llm-exporter` binary on loopback, scrapes it over HTTP, and compares the
//! exposition with a checked-in golden file (`UPDATE_GOLDEN=1` rewrites the files).

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Exporter {
    child: Child,
    pub port: u16,
    stderr_path: PathBuf,
}

pub use common::testing::free_port;

impl Exporter {
    /// Starts the binary with `args` and waits until it answers `/-/healthy`.
    pub fn start(args: &[String]) -> Exporter {
        let port = free_port();
        let stderr_path = std::env::temp_dir().join(format!(
            "llm-exporter-test-{}-{port}.log",
            std::process::id()
        ));
        let stderr = std::fs::File::create(&stderr_path).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_llm-exporter"))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .args(args)
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start llm-exporter");
        let mut exporter = Exporter {
            child,
            port,
            stderr_path,
        };
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = exporter.child.try_wait() {
                panic!("llm-exporter exited with {status}: {}", exporter.log());
            }
            if http_get(port, "/-/healthy").is_ok_and(|(s, _)| s == 200) {
                return exporter;
            }
            assert!(Instant::now() < until, "llm-exporter did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn metrics(&self) -> String {
        let (status, body) = http_get(self.port, "/metrics").expect("scrape");
        assert_eq!(status, 200, "{body}");
        body
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.stderr_path);
    }
}

/// A plain HTTP/1.1 GET with `Connection: close`, with a generous timeout so that a hung
/// exporter fails the test instead of hanging it.
pub fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(15)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok((status, body.to_string()))
}

/// Families whose values change from run to run.
const DROPPED: &[&str] = &[
    "llm_exporter_collector_duration_seconds",
    "llm_exporter_build_info",
    "llm_upstream_poll_duration_seconds",
    "process_",
];
const DYNAMIC_VALUE: &[&str] = &["llm_model_expires_in_seconds"];

/// The exposition without the nondeterministic lines, and with values that depend on the clock
/// replaced by `<dynamic>`.
pub fn normalize(exposition: &str) -> String {
    let mut out = String::new();
    for line in exposition.lines() {
        let name = line
            .strip_prefix("# HELP ")
            .or_else(|| line.strip_prefix("# TYPE "))
            .unwrap_or(line);
        if DROPPED.iter().any(|d| name.starts_with(d)) {
            continue;
        }
        if !line.starts_with('#') && DYNAMIC_VALUE.iter().any(|d| name.starts_with(d)) {
            let (series, _) = line.rsplit_once(' ').unwrap();
            out.push_str(series);
            out.push_str(" <dynamic>\n");
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

pub fn assert_golden(name: &str, exposition: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    let actual = normalize(exposition);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_GOLDEN=1)", path.display()));
    if expected != actual {
        let mut diff = String::new();
        for line in expected
            .lines()
            .filter(|l| !actual.lines().any(|a| a == *l))
        {
            diff.push_str(&format!("- {line}\n"));
        }
        for line in actual
            .lines()
            .filter(|l| !expected.lines().any(|e| e == *l))
        {
            diff.push_str(&format!("+ {line}\n"));
        }
        panic!("{} differs from the scrape:\n{diff}", path.display());
    }
}

/// The value of the one sample whose line starts with `series` (name and labels as printed).
pub fn value(exposition: &str, series: &str) -> Option<f64> {
    exposition
        .lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit_once(' '))
        .and_then(|(_, v)| v.parse().ok())
}
