//! The processes the end-to-end tests run: an exporter binary on a free loopback port, started,
//! waited for until it is ready, scraped, its log read, and killed when the test drops it; and
//! Debian's node_exporter, the oracle of host-exporter's comparison tests.

use super::http::{free_port, http_get, HttpResponse};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long an exporter gets to answer `/-/ready` after its start (a loaded CI machine builds
/// and starts several at once).
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// How long [`ExporterProcess::wait_for_log`] waits for a line.
const LOG_TIMEOUT: Duration = Duration::from_secs(5);

/// A running exporter binary, killed when dropped.
pub struct ExporterProcess {
    pub child: Child,
    pub addr: SocketAddr,
    pub stderr_path: PathBuf,
}

impl ExporterProcess {
    /// Starts `binary` listening on a free loopback port with `args` and `envs`, and waits for
    /// `/-/ready`. Its stderr goes to a temporary file, read back by [`Self::stderr`].
    pub fn start(binary: &str, args: &[&str], envs: &[(&str, &str)]) -> ExporterProcess {
        Self::start_command(binary, args, envs)
    }

    /// Like [`Self::start`], for a binary started through a wrapper (`setpriv`, `env`): the
    /// listen address flag goes at the end of `args`.
    pub fn start_command(program: &str, args: &[&str], envs: &[(&str, &str)]) -> ExporterProcess {
        let mut command = Command::new(program);
        command.args(args).envs(envs.iter().copied());
        Self::spawn(command)
    }

    /// Starts a prepared command (program, arguments, environment, e.g. with variables removed)
    /// with the listen address flag added last, and waits until it answers `/-/ready`. Panics
    /// with the log if it exits or does not become ready in time.
    pub fn spawn(mut command: Command) -> ExporterProcess {
        let program = command.get_program().to_string_lossy().into_owned();
        let port = free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let stderr_path =
            std::env::temp_dir().join(format!("exporter-{}-{port}.log", std::process::id()));
        let stderr = std::fs::File::create(&stderr_path).expect("cannot create log file");
        command
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
        let mut process = ExporterProcess {
            child,
            addr,
            stderr_path,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = process.child.try_wait() {
                panic!("{program} exited with {status}: {}", process.stderr());
            }
            if http_get(addr, "/-/ready", &[]).is_ok_and(|r| r.status == 200) {
                return process;
            }
            if Instant::now() > deadline {
                panic!("{program} did not become ready: {}", process.stderr());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn get(&self, path: &str) -> HttpResponse {
        http_get(self.addr, path, &[]).expect("request failed")
    }

    /// The body of `/metrics`, which must answer 200.
    pub fn metrics(&self) -> String {
        let response = self.get("/metrics");
        assert_eq!(response.status, 200, "{}", response.text());
        response.text()
    }

    /// Everything the exporter logged so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// The log lines so far.
    pub fn log_lines(&self) -> Vec<String> {
        self.stderr().lines().map(str::to_string).collect()
    }

    /// Waits a few seconds for a log line that contains every one of `pieces`.
    pub fn wait_for_log(&self, pieces: &[&str]) -> Option<String> {
        let deadline = Instant::now() + LOG_TIMEOUT;
        loop {
            let found = self
                .log_lines()
                .into_iter()
                .find(|l| pieces.iter().all(|p| l.contains(p)));
            if found.is_some() || Instant::now() > deadline {
                return found;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Whatever the test did to it, the exporter did not panic (a panic caught inside a worker is
/// still a bug; it only keeps the exporter serving).
pub fn assert_no_panic(exporter: &ExporterProcess) {
    assert_no_panic_in(&exporter.stderr());
}

/// [`assert_no_panic`] for a log read some other way.
pub fn assert_no_panic_in(log: &str) {
    assert!(!log.contains("panicked"), "the exporter panicked:\n{log}");
}

impl Drop for ExporterProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.stderr_path);
    }
}

/// Debian's `prometheus-node-exporter`, the oracle of host-exporter's comparison tests, on a free
/// loopback port; killed when dropped.
pub struct NodeExporter {
    child: Child,
    pub addr: SocketAddr,
}

impl NodeExporter {
    /// Starts it with `args` (the listen address is added) and waits, up to 10 s, until it
    /// answers `/metrics` (it has no `/-/ready`).
    pub fn start(args: &[String]) -> NodeExporter {
        const PROGRAM: &str = "prometheus-node-exporter";
        let port = free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let child = Command::new(PROGRAM)
            .args(args)
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("{PROGRAM} is needed (apt-get install prometheus-node-exporter): {e}")
            });
        let node = NodeExporter { child, addr };
        let deadline = Instant::now() + Duration::from_secs(10);
        while http_get(addr, "/metrics", &[]).is_err() {
            assert!(Instant::now() < deadline, "{PROGRAM} did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        node
    }
}

impl Drop for NodeExporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
