//! The HTTP server end to end on loopback: content negotiation checked by the Prometheus
//! project's own parsers and promtool, gzip, routing, the concurrency cap, slow clients, TLS,
//! basic auth and graceful shutdown.

use common::cli::{CollectorSpec, CommonOptions, ExporterSpec};
use common::log::{Level, LogFormat};
use common::server::{bind, serve, Server};
use common::testing::{check_exposition, http_get, promtool_check_metrics, HttpResponse};
use common::web_config::WebConfig;
use common::{AnyCollector, BlockingCollector, CollectResult, Collectors, MetricFamily};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

static SPEC: ExporterSpec = ExporterSpec {
    name: "demo-exporter",
    metric_prefix: "demo_exporter",
    collector_metrics_prefix: "demo_exporter",
    about: "A demo <exporter>",
    default_port: 0,
    collectors: &[CollectorSpec {
        name: "demo",
        default_enabled: true,
        help: "demo",
        new: |_| {
            AnyCollector::blocking(Demo {
                delay: Duration::ZERO,
            })
        },
    }],
};

const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

struct Demo {
    delay: Duration,
}

impl BlockingCollector for Demo {
    fn collect(&self) -> CollectResult {
        std::thread::sleep(self.delay);
        Ok(vec![
            MetricFamily::counter(
                "demo_requests_total",
                "Requests seen, with \"quotes\" and a \\ backslash.",
            )
            .with(&[("path", "/a b"), ("code", "200")], 12.0)
            .with(&[("path", "/\"quoted\"\n"), ("code", "500")], 1.0),
            MetricFamily::gauge("demo_temperature_celsius", "A temperature.")
                .with(&[("sensor", "edge")], 45.5),
            MetricFamily::gauge("demo_big_bytes", "A large value.").with_value(2.7055317401e11),
        ])
    }
}

fn options(max_requests: usize) -> CommonOptions {
    CommonOptions {
        listen_addresses: vec!["127.0.0.1:0".into()],
        telemetry_path: "/metrics".into(),
        web_config_file: None,
        max_requests,
        scrape_timeout: Duration::from_secs(5),
        disable_exporter_metrics: false,
        log_level: Level::Error,
        log_format: LogFormat::Logfmt,
        collectors: vec!["demo"],
    }
}

struct Running {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    fn stop(mut self) -> Duration {
        let started = Instant::now();
        let _ = self.stop.take().unwrap().send(());
        self.thread.take().unwrap().join().unwrap();
        started.elapsed()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn start_with(
    options: CommonOptions,
    delay: Duration,
    web: WebConfig,
    header_timeout: Duration,
) -> Running {
    start_server(
        options,
        web,
        move |collectors| collectors.add("demo", AnyCollector::blocking(Demo { delay })),
        move |server| server.with_header_read_timeout(header_timeout),
    )
}

fn start_server(
    options: CommonOptions,
    web: WebConfig,
    add: impl FnOnce(&mut Collectors) + Send + 'static,
    configure: impl FnOnce(Server) -> Server + Send + 'static,
) -> Running {
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listeners = bind(&options.listen_addresses).await.unwrap();
            addr_tx.send(listeners[0].local_addr().unwrap()).unwrap();
            let mut collectors = Collectors::new(SPEC.metric_prefix);
            add(&mut collectors);
            let server = configure(Server::new(&SPEC, "1.2.3", options, collectors, web));
            serve(std::sync::Arc::new(server), listeners, async {
                let _ = stop_rx.await;
            })
            .await;
        });
    });
    Running {
        addr: addr_rx.recv().unwrap(),
        stop: Some(stop_tx),
        thread: Some(thread),
    }
}

fn start() -> Running {
    start_with(
        options(40),
        Duration::ZERO,
        WebConfig::none(),
        Duration::from_secs(10),
    )
}

fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> HttpResponse {
    http_get(addr, path, headers).expect("request failed")
}

#[test]
fn text_format_by_default_valid_for_parser_and_promtool() {
    let server = start();
    let r = get(server.addr, "/metrics", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let body = r.text();
    let families = check_exposition("text", &body).unwrap_or_else(|e| panic!("{e}\n{body}"));
    assert!(families.contains("demo_requests counter 2"), "{families}");
    assert!(
        families.contains("demo_exporter_build_info gauge 1"),
        "{families}"
    );
    let (code, output) = promtool_check_metrics(&body);
    assert_eq!(code, 0, "promtool check metrics: {output}\n{body}");
    // An invalid body is caught by the same checks: they can fail.
    assert!(check_exposition("text", "demo_x{a=\"b} 1\n").is_err());
    assert_ne!(promtool_check_metrics("demo_x{a=\"b} 1\n").0, 0);
}

#[test]
fn openmetrics_when_the_scraper_asks_for_it() {
    let server = start();
    let r = get(server.addr, "/metrics", &[("Accept", PROMETHEUS_ACCEPT)]);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    let body = r.text();
    assert!(body.ends_with("# EOF\n"));
    let families = check_exposition("openmetrics", &body).unwrap_or_else(|e| panic!("{e}\n{body}"));
    assert!(families.contains("demo_requests counter 2"), "{families}");
    assert!(
        families.contains("demo_exporter_collector_success gauge 1"),
        "{families}"
    );
    assert!(
        check_exposition("openmetrics", body.trim_end_matches("# EOF\n")).is_err(),
        "a missing EOF must be caught"
    );
}

#[test]
fn gzip_when_asked() {
    let server = start();
    let plain = get(server.addr, "/metrics", &[]);
    let r = get(server.addr, "/metrics", &[("Accept-Encoding", "gzip")]);
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    let mut decoded = String::new();
    flate2::read::GzDecoder::new(&r.body[..])
        .read_to_string(&mut decoded)
        .unwrap();
    let strip = |s: &str| common::testing::stable_exposition(s, &[]);
    assert_eq!(strip(&decoded), strip(&plain.text()));
    assert!(r.body.len() < plain.body.len());
    assert_eq!(
        get(server.addr, "/metrics", &[("Accept-Encoding", "gzip;q=0")]).header("content-encoding"),
        None
    );
}

#[test]
fn landing_page_health_and_unknown_paths() {
    let server = start();
    let landing = get(server.addr, "/", &[]);
    assert_eq!(landing.status, 200);
    assert!(landing
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    assert!(landing.text().contains("href=\"/metrics\""));
    assert!(
        landing.text().contains("A demo &lt;exporter&gt;"),
        "escaped"
    );
    assert_eq!(get(server.addr, "/-/healthy", &[]).status, 200);
    assert_eq!(get(server.addr, "/-/ready", &[]).status, 200);
    assert_eq!(get(server.addr, "/nope", &[]).status, 404);
    assert_eq!(
        get(server.addr, "/metrics?collect[]=unknown", &[]).status,
        400
    );

    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream
        .write_all(
            b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )
        .unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    assert!(raw.starts_with("HTTP/1.1 405"), "{raw}");
}

#[test]
fn exporter_metrics_can_be_turned_off() {
    let server = start();
    let body = get(server.addr, "/metrics", &[]).text();
    for name in [
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
        "process_virtual_memory_bytes",
        "demo_exporter_build_info{version=\"1.2.3\"",
    ] {
        assert!(body.contains(name), "{name} missing");
    }
    let mut quiet = options(40);
    quiet.disable_exporter_metrics = true;
    let server = start_with(
        quiet,
        Duration::ZERO,
        WebConfig::none(),
        Duration::from_secs(10),
    );
    let body = get(server.addr, "/metrics", &[]).text();
    assert!(!body.contains("process_") && !body.contains("build_info"));
    assert!(body.contains("demo_requests_total"));
}

#[test]
fn scrapes_above_the_cap_get_503() {
    let server = start_with(
        options(1),
        Duration::from_millis(600),
        WebConfig::none(),
        Duration::from_secs(10),
    );
    let addr = server.addr;
    let first = std::thread::spawn(move || get(addr, "/metrics", &[]).status);
    std::thread::sleep(Duration::from_millis(200));
    let second = get(addr, "/metrics", &[]);
    assert_eq!(second.status, 503, "{}", second.text());
    assert_eq!(first.join().unwrap(), 200);
    assert_eq!(
        get(addr, "/metrics", &[]).status,
        200,
        "the slot is free again"
    );
}

#[test]
fn slow_clients_are_disconnected() {
    let server = start_with(
        options(40),
        Duration::ZERO,
        WebConfig::none(),
        Duration::from_millis(300),
    );
    for partial in [&b""[..], &b"GET /metrics HTTP/1.1\r\nHost: x\r\n"[..]] {
        let mut stream = TcpStream::connect(server.addr).unwrap();
        stream.write_all(partial).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let started = Instant::now();
        let mut raw = Vec::new();
        // The server closes the connection (perhaps after a 408): read ends, it does not time out.
        let result = stream.read_to_end(&mut raw);
        assert!(result.is_ok(), "connection held open: {result:?}");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "took {:?}",
            started.elapsed()
        );
    }
    assert_eq!(
        get(server.addr, "/metrics", &[]).status,
        200,
        "still serving others"
    );
}

#[test]
fn graceful_shutdown_finishes_in_flight_scrapes() {
    let server = start_with(
        options(40),
        Duration::from_millis(500),
        WebConfig::none(),
        Duration::from_secs(10),
    );
    let addr = server.addr;
    let in_flight = std::thread::spawn(move || get(addr, "/metrics", &[]).status);
    std::thread::sleep(Duration::from_millis(150));
    let took = server.stop();
    assert!(took < Duration::from_secs(4), "shutdown took {took:?}");
    assert_eq!(in_flight.join().unwrap(), 200);
    assert!(
        TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_err(),
        "still listening"
    );
}

// --- TLS and basic auth, with files made by openssl and checked by promtool ---

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("http-test-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, a server certificate for 127.0.0.1 signed by it, and a client certificate.
fn make_pki(dir: &Path) {
    let openssl = |args: &[&str]| run(Command::new("openssl").args(args).current_dir(dir));
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=test-ca",
    ]);
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    for name in ["server", "client"] {
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            &format!("/CN={name}"),
        ]);
        openssl(&[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &format!("{name}.crt"),
            "-days",
            "2",
            "-extfile",
            "san.ext",
        ]);
    }
}

fn promtool_web_config(path: &Path) {
    run(Command::new("promtool")
        .args(["check", "web-config"])
        .arg(path));
}

fn curl(args: &[&str]) -> (i32, String) {
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "10",
        ])
        .args(args)
        .output()
        .expect("curl is needed");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn tls_with_and_without_client_certificates() {
    let dir = temp_dir("tls");
    make_pki(&dir);
    let plain = dir.join("tls.yml");
    std::fs::write(
        &plain,
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n",
    )
    .unwrap();
    promtool_web_config(&plain);
    let server = start_with(
        options(40),
        Duration::ZERO,
        WebConfig::load(&plain).unwrap(),
        Duration::from_secs(10),
    );
    let url = format!("https://127.0.0.1:{}/metrics", server.addr.port());
    let ca = dir.join("ca.crt");
    assert_eq!(curl(&["--cacert", ca.to_str().unwrap(), &url]).1, "200");
    assert_ne!(
        curl(&[&url]).0,
        0,
        "an unknown CA must be refused by the client"
    );
    let plain_http = format!("http://127.0.0.1:{}/metrics", server.addr.port());
    // Plain HTTP on a TLS port gets Go's 400 rather than a raw TLS alert.
    assert_eq!(curl(&[&plain_http]).1, "400", "plain HTTP on a TLS port");
    drop(server);

    let mutual = dir.join("mtls.yml");
    std::fs::write(&mutual, "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n  min_version: TLS12\n").unwrap();
    promtool_web_config(&mutual);
    let server = start_with(
        options(40),
        Duration::ZERO,
        WebConfig::load(&mutual).unwrap(),
        Duration::from_secs(10),
    );
    let url = format!("https://127.0.0.1:{}/metrics", server.addr.port());
    assert_ne!(
        curl(&["--cacert", ca.to_str().unwrap(), &url]).1,
        "200",
        "no client certificate"
    );
    let cert = dir.join("client.crt");
    let key = dir.join("client.key");
    assert_eq!(
        curl(&[
            "--cacert",
            ca.to_str().unwrap(),
            "--cert",
            cert.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
            &url
        ])
        .1,
        "200"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn tls_config_errors_are_clear() {
    let dir = temp_dir("tlsbad");
    make_pki(&dir);
    let cases = [
        ("mismatch.yml", "tls_server_config:\n  cert_file: server.crt\n  key_file: client.key\n", "do not match"),
        ("nocafile.yml", "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_auth_type: RequireAndVerifyClientCert\n", "client_ca_file"),
        ("badauth.yml", "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_auth_type: Sometimes\n", "Sometimes"),
        ("notpem.yml", "tls_server_config:\n  cert_file: san.ext\n  key_file: server.key\n", "san.ext"),
    ];
    for (name, text, expected) in cases {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        let err = WebConfig::load(&path)
            .err()
            .unwrap_or_else(|| panic!("{name} loaded"));
        assert!(err.contains(expected), "{name}: {err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn basic_auth_needs_the_right_password() {
    let dir = temp_dir("auth");
    let hash = bcrypt::hash("open sesame", 5).unwrap();
    let path = dir.join("web.yml");
    std::fs::write(&path, format!("basic_auth_users:\n  prometheus: '{hash}'\nhttp_server_config:\n  headers:\n    X-Frame-Options: deny\n")).unwrap();
    promtool_web_config(&path);
    let server = start_with(
        options(40),
        Duration::ZERO,
        WebConfig::load(&path).unwrap(),
        Duration::from_secs(10),
    );
    use base64::Engine;
    let basic = |user: &str, pass: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
        )
    };
    let none = get(server.addr, "/metrics", &[]);
    assert_eq!(none.status, 401);
    assert!(none
        .header("www-authenticate")
        .unwrap()
        .starts_with("Basic"));
    assert_eq!(
        get(
            server.addr,
            "/metrics",
            &[("Authorization", &basic("prometheus", "wrong"))]
        )
        .status,
        401
    );
    assert_eq!(
        get(
            server.addr,
            "/metrics",
            &[("Authorization", &basic("nobody", "open sesame"))]
        )
        .status,
        401
    );
    assert_eq!(
        get(server.addr, "/", &[]).status,
        401,
        "every path is protected"
    );
    let ok = get(
        server.addr,
        "/metrics",
        &[("Authorization", &basic("prometheus", "open sesame"))],
    );
    assert_eq!(ok.status, 200);
    assert_eq!(ok.header("x-frame-options"), Some("deny"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_flood_of_wrong_passwords_does_not_hold_up_a_known_login() {
    let dir = temp_dir("auth-flood");
    let hash = bcrypt::hash("open sesame", 11).unwrap();
    let path = dir.join("web.yml");
    std::fs::write(
        &path,
        format!("basic_auth_users:\n  prometheus: '{hash}'\n"),
    )
    .unwrap();
    let server = start_with(
        options(0),
        Duration::ZERO,
        WebConfig::load(&path).unwrap(),
        Duration::from_secs(10),
    );
    use base64::Engine;
    let basic = |user: &str, pass: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
        )
    };
    let good = basic("prometheus", "open sesame");
    assert_eq!(
        get(server.addr, "/metrics", &[("Authorization", &good)]).status,
        200
    );

    // Twelve clients with new wrong passwords (known and unknown users) at once: each costs a
    // bcrypt check, and they are checked one at a time.
    const FLOOD: usize = 12;
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let flood: Vec<_> = (0..FLOOD)
        .map(|i| {
            let (addr, answered) = (server.addr, answered.clone());
            let header = basic(
                if i % 2 == 0 { "prometheus" } else { "mallory" },
                &format!("guess {i}"),
            );
            std::thread::spawn(move || {
                let r = get(addr, "/metrics", &[("Authorization", &header)]);
                answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                r.status
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(150));
    // The remembered login and the health check answer without waiting for those checks.
    let scrape = get(server.addr, "/metrics", &[("Authorization", &good)]);
    let healthy = get(server.addr, "/-/healthy", &[("Authorization", &good)]);
    let answered_before = answered.load(std::sync::atomic::Ordering::SeqCst);
    for client in flood {
        assert_eq!(client.join().unwrap(), 401);
    }
    assert_eq!(scrape.status, 200);
    assert_eq!(healthy.status, 200);
    assert!(
        answered_before < FLOOD / 2,
        "the good scrape waited behind {answered_before} of {FLOOD} bcrypt checks"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A collector whose exposition is far larger than the socket buffers of a loopback connection.
struct Big;

impl BlockingCollector for Big {
    fn collect(&self) -> CollectResult {
        let mut family = MetricFamily::gauge("demo_big_family", "Many series.");
        for i in 0..400_000 {
            family.push(
                &[("series", format!("number-{i:08}-of-a-large-family"))],
                i as f64,
            );
        }
        Ok(vec![family])
    }
}

#[test]
fn a_client_that_stops_reading_is_disconnected_after_the_write_timeout() {
    let server = start_server(
        options(40),
        WebConfig::none(),
        |collectors| collectors.add("demo", AnyCollector::blocking(Big)),
        |server| server.with_write_timeout(Duration::from_millis(300)),
    );
    let mut client = TcpStream::connect(server.addr).unwrap();
    client
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    // Once the answer has begun (building 400,000 series can take seconds in a debug build on a
    // busy machine), read nothing for a while: the server's writes block, and it gives up after
    // its timeout.
    client
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    client.peek(&mut [0u8; 1]).expect("no answer began");
    std::thread::sleep(Duration::from_secs(3));
    client
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut received = Vec::new();
    let ended = client.read_to_end(&mut received);
    let head_end = received
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("no head");
    let head = String::from_utf8_lossy(&received[..head_end]).to_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .expect("no content-length")
        .trim()
        .parse()
        .unwrap();
    let body = received.len() - head_end - 4;
    assert!(
        body < length,
        "the whole body ({length} bytes) arrived; the connection was not cut ({ended:?})"
    );
}

#[test]
fn a_request_followed_by_a_half_close_is_answered() {
    let server = start();
    let mut client = TcpStream::connect(server.addr).unwrap();
    client
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    client.shutdown(std::net::Shutdown::Write).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut received = Vec::new();
    let _ = client.read_to_end(&mut received);
    let text = String::from_utf8_lossy(&received);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("demo_requests_total"), "{text}");
}
