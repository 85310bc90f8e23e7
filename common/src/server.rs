//! The HTTP side of every exporter: `/metrics` with content negotiation and gzip, a landing page,
//! health endpoints, optional TLS and basic auth, a cap on concurrent scrapes, a header-read
//! timeout, and graceful shutdown.

use crate::cli::{CommonOptions, ExporterSpec};
use crate::collector::{Collectors, Selection};
use crate::encode::{encode, Format};
use crate::log;
use crate::process;
use crate::web_config::WebConfig;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::future::Future;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// How long a client may take to send a request's headers, and a TLS handshake.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long in-flight requests get to finish after SIGTERM.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How long one write may wait for a client that does not read: without it, such a client held
/// its connection and 2 MB of buffers for ever. nginx's `send_timeout` is 60 s; a scrape is
/// over long before 30 s.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// What Go's net/http answers to plain HTTP on a TLS port (Prometheus users know it).
const PLAIN_HTTP_ON_TLS: &[u8] =
    b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n";

pub struct Server {
    /// The spec's names: binary, metric prefix, description.
    name: &'static str,
    metric_prefix: &'static str,
    about: &'static str,
    version: String,
    options: CommonOptions,
    collectors: Collectors,
    web: WebConfig,
    scrape_slots: Option<Semaphore>,
    header_read_timeout: Duration,
    write_timeout: Duration,
    refusals: RateLimitedLog,
}

impl Server {
    pub fn new<C>(
        spec: &ExporterSpec<C>,
        version: &str,
        options: CommonOptions,
        collectors: Collectors,
        web: WebConfig,
    ) -> Self {
        let scrape_slots = (options.max_requests > 0).then(|| Semaphore::new(options.max_requests));
        Server {
            name: spec.name,
            metric_prefix: spec.metric_prefix,
            about: spec.about,
            version: version.to_string(),
            options,
            collectors,
            web,
            scrape_slots,
            header_read_timeout: HEADER_READ_TIMEOUT,
            write_timeout: WRITE_TIMEOUT,
            refusals: RateLimitedLog::new(REFUSAL_LOG_INTERVAL),
        }
    }

    /// Shortens the write timeout (tests use this to check clients that stop reading).
    pub fn with_write_timeout(mut self, timeout: Duration) -> Self {
        self.write_timeout = timeout;
        self
    }

    /// Shortens the header-read timeout (tests use this to check slow clients quickly).
    pub fn with_header_read_timeout(mut self, timeout: Duration) -> Self {
        self.header_read_timeout = timeout;
        self
    }

    pub fn collectors(&self) -> &Collectors {
        &self.collectors
    }

    async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let mut response = self.route(req).await;
        for (name, value) in &self.web.headers {
            response.headers_mut().insert(name.clone(), value.clone());
        }
        response
    }

    async fn route(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        if let Some(auth) = &self.web.auth {
            let header = req
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok());
            if !auth.check(header).await {
                let mut r = text_response(StatusCode::UNAUTHORIZED, "Unauthorized\n");
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"exporter\""),
                );
                return r;
            }
        }
        if req.method() != Method::GET && req.method() != Method::HEAD {
            let mut r = text_response(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed\n");
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return r;
        }
        let path = req.uri().path();
        if path == self.options.telemetry_path {
            return self.metrics(&req).await;
        }
        match path {
            "/" => html_response(self.landing_page()),
            "/-/healthy" => text_response(StatusCode::OK, "Healthy\n"),
            "/-/ready" => text_response(StatusCode::OK, "Ready\n"),
            _ => text_response(StatusCode::NOT_FOUND, "Not found\n"),
        }
    }

    async fn metrics(&self, req: &Request<Incoming>) -> Response<Full<Bytes>> {
        let selection = match parse_selection(req.uri().query().unwrap_or("")) {
            Ok(s) => s,
            Err(e) => return text_response(StatusCode::BAD_REQUEST, &format!("{e}\n")),
        };
        if let Err(e) = self.collectors.check_selection(&selection) {
            return text_response(StatusCode::BAD_REQUEST, &format!("{e}\n"));
        }
        let _permit = match &self.scrape_slots {
            Some(slots) => match slots.try_acquire() {
                Ok(p) => Some(p),
                Err(_) => {
                    if let Some(suppressed) = self.refusals.allow(Instant::now()) {
                        log::warn(
                            "too many concurrent scrapes; answering 503",
                            &[
                                ("limit", &self.options.max_requests.to_string()),
                                ("also_refused_since_last_line", &suppressed.to_string()),
                            ],
                        );
                    }
                    return text_response(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "Too many concurrent scrapes\n",
                    );
                }
            },
            None => None,
        };
        let deadline = scrape_deadline(self.options.scrape_timeout, req.headers());
        let mut families = self.collectors.collect(&selection, deadline).await;
        if !self.options.disable_exporter_metrics {
            let mut own = process::process_metrics();
            own.push(process::build_info(self.metric_prefix, &self.version));
            // The exporter's own series win over a collected family of the same name (a file
            // of host-exporter's textfile collector can name anything), as in node_exporter.
            families.retain(|f| {
                let clash = own.iter().any(|o| o.name == f.name);
                if clash {
                    log::error(
                        "dropping a collected family that has the name of the exporter's own",
                        &[("family", &f.name)],
                    );
                }
                !clash
            });
            families.extend(own);
        }
        let format = Format::negotiate(
            req.headers()
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok()),
        );
        let body = encode(&families, format);
        let gzip = accepts_gzip(
            req.headers()
                .get(header::ACCEPT_ENCODING)
                .and_then(|v| v.to_str().ok()),
        );
        let mut builder = Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, format.content_type())
            .header(header::VARY, "Accept-Encoding");
        let bytes = if gzip {
            match gzip_bytes(body.as_bytes()) {
                Ok(compressed) => {
                    builder = builder.header(header::CONTENT_ENCODING, "gzip");
                    Bytes::from(compressed)
                }
                Err(_) => Bytes::from(body),
            }
        } else {
            Bytes::from(body)
        };
        builder
            .body(Full::new(bytes))
            .unwrap_or_else(|_| text_response(StatusCode::INTERNAL_SERVER_ERROR, "error\n"))
    }

    fn landing_page(&self) -> String {
        let path = html_escape(&self.options.telemetry_path);
        format!(
            "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{name}</title></head>\n<body>\n<h1>{name}</h1>\n<p>{about}</p>\n<p>Version {version} (revision {revision})</p>\n<ul>\n<li><a href=\"{path}\">Metrics</a></li>\n<li><a href=\"/-/healthy\">Health</a></li>\n<li><a href=\"/-/ready\">Readiness</a></li>\n</ul>\n<p>Enabled collectors: {collectors}</p>\n</body></html>\n",
            name = self.name,
            about = html_escape(self.about),
            version = html_escape(&self.version),
            revision = process::REVISION,
            collectors = self.collectors.names().join(", "),
        )
    }
}

/// The 503 warning, at most once per interval: under load, one line per refusal wrote 285,000
/// lines (34 MB) in 30 s. Each line says how many refusals it stands for.
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

struct RateLimitedLog {
    interval: Duration,
    /// When the last line was written, and the events since then that wrote none.
    state: std::sync::Mutex<(Option<Instant>, u64)>,
}

impl RateLimitedLog {
    fn new(interval: Duration) -> Self {
        RateLimitedLog {
            interval,
            state: std::sync::Mutex::new((None, 0)),
        }
    }

    /// Whether to write a line for an event at `now`; if so, the number of events left
    /// unwritten since the last line.
    fn allow(&self, now: Instant) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (last, suppressed) = &mut *state;
        if last.is_some_and(|at| now.duration_since(at) < self.interval) {
            *suppressed += 1;
            return None;
        }
        *last = Some(now);
        Some(std::mem::take(suppressed))
    }
}

/// Prometheus tells us its scrape timeout; finish the collectors a little before it.
fn scrape_deadline(configured: Duration, headers: &hyper::HeaderMap) -> Duration {
    headers
        .get("x-prometheus-scrape-timeout-seconds")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        // The header is the client's: a value too large for a Duration (1e308) means "no
        // shorter than configured", never a panic.
        .and_then(|s| Duration::try_from_secs_f64(s * 0.9).ok())
        .map(|d| configured.min(d))
        .unwrap_or(configured)
}

fn accepts_gzip(accept_encoding: Option<&str>) -> bool {
    accept_encoding.is_some_and(|v| {
        v.split(',').any(|part| {
            let mut pieces = part.split(';').map(str::trim);
            let coding = pieces.next().unwrap_or("");
            let refused = pieces.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            coding.eq_ignore_ascii_case("gzip") && !refused
        })
    })
}

fn gzip_bytes(data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(data.len() / 4),
        flate2::Compression::fast(),
    );
    encoder.write_all(data)?;
    encoder.finish()
}

/// node_exporter's `collect[]=a&collect[]=b` or `exclude[]=c`; the two cannot be mixed.
pub fn parse_selection(query: &str) -> Result<Selection, String> {
    let mut collect = Vec::new();
    let mut exclude = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = percent_decode(key)?;
        let value = percent_decode(value)?;
        match key.as_str() {
            "collect[]" if !value.is_empty() => collect.push(value),
            "exclude[]" if !value.is_empty() => exclude.push(value),
            _ => {}
        }
    }
    match (collect.is_empty(), exclude.is_empty()) {
        (true, true) => Ok(Selection::All),
        (false, true) => Ok(Selection::Only(collect)),
        (true, false) => Ok(Selection::Except(exclude)),
        (false, false) => Err("collect[] and exclude[] cannot be used together".into()),
    }
}

fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| format!("bad percent-encoding in query: {s}"))?;
                out.push(hex);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| format!("query is not UTF-8: {s}"))
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn text_response(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn html_response(body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r
}

/// Checks a listen address: `host:port`, `[v6]:port` or `:port` (all interfaces).
pub fn parse_listen_address(address: &str) -> Result<(), String> {
    let (host, port) = address
        .rsplit_once(':')
        .ok_or("expected host:port or :port")?;
    port.parse::<u16>()
        .map_err(|_| format!("'{port}' is not a port number"))?;
    if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
        return Err("IPv6 addresses need brackets, e.g. [::1]:10470".into());
    }
    Ok(())
}

/// Binds every listen address; `:port` means all interfaces, IPv6 and IPv4 where available.
pub async fn bind(addresses: &[String]) -> Result<Vec<TcpListener>, String> {
    let mut listeners = Vec::new();
    for address in addresses {
        parse_listen_address(address)
            .map_err(|e| format!("--web.listen-address {address}: {e}"))?;
        let listener = if let Some(port) = address.strip_prefix(':') {
            match TcpListener::bind(format!("[::]:{port}")).await {
                Ok(l) => l,
                Err(_) => TcpListener::bind(format!("0.0.0.0:{port}"))
                    .await
                    .map_err(|e| format!("--web.listen-address {address}: cannot listen: {e}"))?,
            }
        } else {
            TcpListener::bind(address.as_str())
                .await
                .map_err(|e| format!("--web.listen-address {address}: cannot listen: {e}"))?
        };
        listeners.push(listener);
    }
    Ok(listeners)
}

/// Serves on the given listeners until `shutdown` completes, then lets in-flight requests finish
/// for a few seconds.
pub async fn serve(
    server: Arc<Server>,
    listeners: Vec<TcpListener>,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let (conn_tx, mut conn_rx) =
        tokio::sync::mpsc::channel::<(tokio::net::TcpStream, SocketAddr)>(64);
    let mut accept_tasks = Vec::new();
    for listener in listeners {
        let tx = conn_tx.clone();
        accept_tasks.push(tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok(conn) => {
                        if tx.send(conn).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        // Out of fds and the like: wait a moment rather than spin.
                        log::error("accept failed", &[("err", &e.to_string())]);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        }));
    }
    drop(conn_tx);

    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            conn = conn_rx.recv() => {
                let Some((stream, peer)) = conn else { break };
                spawn_connection(server.clone(), &graceful, stream, peer);
            }
            _ = &mut shutdown => break,
        }
    }
    for task in accept_tasks {
        task.abort();
    }
    log::info("shutting down", &[]);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        log::warn("some connections did not close in time", &[]);
    }
}

fn spawn_connection(
    server: Arc<Server>,
    graceful: &hyper_util::server::graceful::GracefulShutdown,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
) {
    let _ = stream.set_nodelay(true);
    let timeout = server.header_read_timeout;
    let mut builder = hyper::server::conn::http1::Builder::new();
    // half_close: a request followed at once by the client's shutdown(SHUT_WR) is answered.
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(timeout)
        .half_close(true);
    let mut timed = tokio_io_timeout::TimeoutStream::new(stream);
    timed.set_write_timeout(Some(server.write_timeout));
    let stream = Box::pin(timed);
    let service = {
        let server = server.clone();
        hyper::service::service_fn(move |req| {
            let server = server.clone();
            async move { Ok::<_, std::convert::Infallible>(server.handle(req).await) }
        })
    };
    match server.web.tls.clone() {
        None => {
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            let conn = graceful.watch(conn);
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    log::debug(
                        "connection ended with an error",
                        &[("peer", &peer.to_string()), ("err", &e.to_string())],
                    );
                }
            });
        }
        Some(tls) => {
            let watcher = graceful.watcher();
            tokio::spawn(async move {
                let mut stream = stream;
                if is_plain_http(&stream, timeout).await {
                    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
                    // Take in the request first (briefly): closing with unread bytes makes the
                    // kernel reset the connection, and the client may then lose the answer.
                    let mut request = [0u8; 4096];
                    let _ =
                        tokio::time::timeout(Duration::from_millis(100), stream.read(&mut request))
                            .await;
                    let _ = stream.write_all(PLAIN_HTTP_ON_TLS).await;
                    let _ = stream.shutdown().await;
                    return;
                }
                let acceptor = tokio_rustls::TlsAcceptor::from(tls);
                let stream = match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        log::debug(
                            "TLS handshake failed",
                            &[("peer", &peer.to_string()), ("err", &e.to_string())],
                        );
                        return;
                    }
                    Err(_) => {
                        log::debug("TLS handshake timed out", &[("peer", &peer.to_string())]);
                        return;
                    }
                };
                let conn = builder.serve_connection(TokioIo::new(stream), service);
                if let Err(e) = watcher.watch(conn).await {
                    log::debug(
                        "connection ended with an error",
                        &[("peer", &peer.to_string()), ("err", &e.to_string())],
                    );
                }
            });
        }
    }
}

/// Whether a connection to a TLS port starts like an HTTP request (a method's capital letter)
/// rather than a TLS record (0x16). Waits for the first byte no longer than `timeout`.
async fn is_plain_http(
    stream: &std::pin::Pin<Box<tokio_io_timeout::TimeoutStream<tokio::net::TcpStream>>>,
    timeout: Duration,
) -> bool {
    let mut first = [0u8; 1];
    let peeked = tokio::time::timeout(timeout, stream.get_ref().peek(&mut first)).await;
    matches!(peeked, Ok(Ok(1))) && first[0].is_ascii_uppercase()
}

/// Resolves when SIGTERM or SIGINT arrives.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    let mut int = match signal(SignalKind::interrupt()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_from_query() {
        assert_eq!(parse_selection("").unwrap(), Selection::All);
        assert_eq!(
            parse_selection("collect[]=cpu&collect%5B%5D=meminfo").unwrap(),
            Selection::Only(vec!["cpu".into(), "meminfo".into()])
        );
        assert_eq!(
            parse_selection("exclude[]=netdev").unwrap(),
            Selection::Except(vec!["netdev".into()])
        );
        assert!(parse_selection("collect[]=a&exclude[]=b").is_err());
        assert!(parse_selection("collect[]=%zz").is_err());
    }

    #[test]
    fn gzip_only_when_accepted() {
        assert!(accepts_gzip(Some("gzip")));
        assert!(accepts_gzip(Some("deflate, gzip;q=0.5")));
        assert!(!accepts_gzip(Some("gzip;q=0")));
        assert!(!accepts_gzip(Some("identity")));
        assert!(!accepts_gzip(None));
    }

    #[test]
    fn listen_addresses() {
        for ok in [":10470", "127.0.0.1:1", "[::1]:2", "localhost:3"] {
            assert!(parse_listen_address(ok).is_ok(), "{ok}");
        }
        for bad in ["10470", ":port", "::1:2", "host:99999"] {
            assert!(parse_listen_address(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn refusal_lines_are_rate_limited_and_count_what_they_stand_for() {
        let log = RateLimitedLog::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(log.allow(t0), Some(0));
        for i in 1..=1000 {
            assert_eq!(log.allow(t0 + Duration::from_millis(i)), None);
        }
        assert_eq!(log.allow(t0 + Duration::from_secs(10)), Some(1000));
        assert_eq!(log.allow(t0 + Duration::from_secs(11)), None);
    }

    #[test]
    fn deadline_follows_prometheus_timeout() {
        let mut headers = hyper::HeaderMap::new();
        let configured = Duration::from_secs(9);
        assert_eq!(scrape_deadline(configured, &headers), configured);
        headers.insert(
            "x-prometheus-scrape-timeout-seconds",
            HeaderValue::from_static("2"),
        );
        assert_eq!(
            scrape_deadline(configured, &headers),
            Duration::from_secs_f64(1.8)
        );
        for junk in [
            "junk",
            "1e308",
            "inf",
            "NaN",
            "-5",
            "0",
            "18446744073709551616",
        ] {
            headers.insert(
                "x-prometheus-scrape-timeout-seconds",
                HeaderValue::from_static(junk),
            );
            assert_eq!(scrape_deadline(configured, &headers), configured, "{junk}");
        }
    }
}
