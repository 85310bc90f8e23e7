//! The measuring reverse proxy: `--proxy NAME=LISTEN_ADDR` serves upstream NAME's API unchanged
//! at another address. Requests and responses pass through as they come (bodies are never
//! modified or buffered, so SSE and NDJSON streams reach the client chunk by chunk); inference
//! requests are measured on the way. The proxies run on threads of their own (`--proxy.threads`)
//! so that a slow scrape and a busy stream never wait on each other.

pub mod body;
pub mod chunk;
pub mod client;
pub mod collector;
pub mod decode;
pub mod fields;
pub mod finish;
pub mod metrics;
pub mod naming;
pub mod observe;
pub mod route;
mod server;

use crate::config::{BackendChoice, Config, ProxyConfig, UpstreamConfig};
use body::{MeteredBody, ProxyBody, Record};
use bytes::Bytes;
use client::{SendError, Upstream};
use fields::Fields;
use hyper::body::Body;
use hyper::{Method, StatusCode, Uri};
use metrics::{ErrorKind, Finished, ProxyMetrics};
use naming::{Detected, Naming};
use observe::{Framing, Observer};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Headers that belong to one connection, not to the message (RFC 9110 §7.6.1), and `Expect`,
/// which the proxy answers itself (an upstream's own `100 Continue` would only add a wait).
const HOP_BY_HOP: [&str; 10] = [
    "connection",
    "expect",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Headers that `Connection` may not name away.
const FRAMING: [&str; 3] = ["content-length", "transfer-encoding", "host"];

/// A client's request head, as the server read and checked it.
pub struct RequestHead {
    pub method: Method,
    pub uri: Uri,
    pub headers: Fields,
}

/// What the server writes back: the upstream's answer or the proxy's own.
pub struct Answer {
    pub status: StatusCode,
    pub headers: Fields,
    pub body: ProxyBody,
}

/// One proxy listener's view of its upstream.
struct Target {
    name: Arc<str>,
    backend: BackendChoice,
    /// The backend the proxy detected, shared by every proxy thread.
    detected: Arc<Detected>,
    /// This thread's connections to the upstream.
    upstream: Arc<Upstream>,
    settings: ProxyConfig,
    metrics: Arc<ProxyMetrics>,
}

/// Binds every `--proxy` listener now (so a busy port is a start-up error), then serves them on
/// `--proxy.threads` threads of their own. Each thread runs its own single-threaded runtime that
/// accepts on every listener (a shared socket: whichever thread is free takes the connection)
/// and keeps its own pool of upstream connections, so a request is served start to end on one
/// thread, as nginx's workers do, with no hand-over between threads.
pub fn start(config: &Config, metrics: Arc<ProxyMetrics>) -> Result<(), String> {
    let mut bound = Vec::new();
    for upstream in &config.upstreams {
        let Some(listen) = &upstream.proxy_listen else {
            continue;
        };
        let listener = bind(listen)
            .map_err(|e| format!("--proxy {}={listen}: cannot listen: {e}", upstream.name))?;
        let detected = Arc::new(Detected::new(upstream.clone()));
        bound.push((listener, upstream, detected));
    }
    if bound.is_empty() {
        return Ok(());
    }
    for (listener, upstream, _) in &bound {
        let address = listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        common::log::info(
            "proxy listening",
            &[
                ("upstream", &upstream.name),
                ("address", &address),
                ("threads", &config.proxy.threads.to_string()),
            ],
        );
    }
    for i in 0..config.proxy.threads {
        let mut serving = Vec::new();
        for (listener, upstream, detected) in &bound {
            let listener = listener.try_clone().map_err(|e| {
                format!("--proxy {}: cannot share the listener: {e}", upstream.name)
            })?;
            let target = target(upstream, &config.proxy, metrics.clone(), detected.clone())?;
            serving.push((listener, target));
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the proxy runtime: {e}"))?;
        std::thread::Builder::new()
            .name(format!("llm-proxy-{i}"))
            .spawn(move || runtime.block_on(serve_all(serving)))
            .map_err(|e| format!("cannot start a proxy thread: {e}"))?;
    }
    Ok(())
}

/// One proxy thread: every listener, until the process ends.
async fn serve_all(serving: Vec<(std::net::TcpListener, Target)>) {
    let mut tasks = Vec::new();
    for (listener, target) in serving {
        match tokio::net::TcpListener::from_std(listener) {
            Ok(listener) => {
                tokio::spawn({
                    let upstream = target.upstream.clone();
                    async move { upstream.close_idle_on_time().await }
                });
                tasks.push(tokio::spawn(serve(listener, Arc::new(target))))
            }
            Err(e) => common::log::error(
                "proxy cannot listen",
                &[("upstream", &target.name), ("err", &e.to_string())],
            ),
        }
    }
    tokio::spawn(keep_timer_armed());
    for task in tasks {
        let _ = task.await;
    }
}

/// Every request sets timers (the header read, header and idle timeouts, 30 s and more away).
/// A timer earlier than any the runtime has pending makes it re-arm its wait with a write to its
/// wake-up descriptor, one system call per request when none is pending; this one, always
/// nearer, keeps the others from being the earliest.
async fn keep_timer_armed() {
    loop {
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
}

fn bind(listen: &str) -> std::io::Result<std::net::TcpListener> {
    let listener = match listen.strip_prefix(':') {
        Some(port) => std::net::TcpListener::bind(format!("[::]:{port}"))
            .or_else(|_| std::net::TcpListener::bind(format!("0.0.0.0:{port}")))?,
        None => std::net::TcpListener::bind(listen)?,
    };
    listener.set_nonblocking(true)?;
    Ok(listener)
}

fn target(
    upstream: &UpstreamConfig,
    settings: &ProxyConfig,
    metrics: Arc<ProxyMetrics>,
    detected: Arc<Detected>,
) -> Result<Target, String> {
    let client = Upstream::new(&upstream.base_url)
        .map_err(|e| format!("upstream {}: {e}", upstream.name))?;
    Ok(Target {
        name: Arc::from(upstream.name.as_str()),
        backend: upstream.backend,
        detected,
        upstream: Arc::new(client),
        settings: settings.clone(),
        metrics,
    })
}

async fn serve(listener: tokio::net::TcpListener, target: Arc<Target>) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                common::log::error("proxy accept failed", &[("err", &e.to_string())]);
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let target = target.clone();
        tokio::spawn(async move {
            let timeout = target.settings.client_timeout;
            server::serve_connection(stream, &target, timeout).await;
        });
    }
}

/// The status recorded for a request whose client left before any response was sent (nginx's
/// "client closed request"); no client ever receives it.
pub const CLIENT_CLOSED: u16 = 499;

/// Holds an inference request's place in `llm_active_requests` until someone else takes over
/// recording it (an answer made here, or the response body). The server drops `forward` when
/// the client goes away before the response headers exist; the guard then records the request as a
/// client disconnect, so the gauge never leaks.
struct InFlight<'a> {
    target: &'a Target,
    route: Option<&'static str>,
    started: Instant,
}

impl<'a> InFlight<'a> {
    fn start(target: &'a Target, route: Option<&'static str>, started: Instant) -> Self {
        if let Some(route) = route {
            target.metrics.started(&target.name, route);
        }
        InFlight {
            target,
            route,
            started,
        }
    }

    /// Someone else records the end of the request from now on.
    fn disarm(mut self) {
        self.route = None;
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Some(route) = self.route.take() {
            self.target.metrics.finished(Finished {
                upstream: self.target.name.clone(),
                route,
                code: CLIENT_CLOSED,
                error: Some(ErrorKind::ClientDisconnect),
                duration: self.started.elapsed().as_secs_f64(),
                ..Default::default()
            });
        }
    }
}

async fn forward<B>(target: &Target, head: RequestHead, body: B) -> Answer
where
    B: Body<Data = Bytes, Error = std::io::Error> + Unpin,
{
    let started = Instant::now();
    let route = route::inference_route(&head.method, head.uri.path());
    let in_flight = InFlight::start(target, route, started);
    let finished = |code: u16, error: Option<ErrorKind>| Finished {
        upstream: target.name.clone(),
        route: route.unwrap_or(""),
        code,
        error,
        ..Default::default()
    };

    let path = head.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let headers = without_hop_by_hop(head.headers);
    let response = tokio::time::timeout(
        target.settings.header_timeout,
        target.upstream.send(&head.method, path, &headers, body),
    )
    .await;
    let response = match response {
        Ok(Ok(response)) => response,
        Ok(Err(SendError::ClientBody(e))) => {
            common::log::warn(
                "proxy: the client's request body failed",
                &[("upstream", &target.name), ("err", &e.to_string())],
            );
            in_flight.disarm();
            // The client's fault (a body that cannot be read, or stalled) is answered and
            // counted as such; a client that went away got nothing.
            let (status, kind, message) = match e.kind() {
                std::io::ErrorKind::InvalidData => (
                    StatusCode::BAD_REQUEST,
                    ErrorKind::ClientError,
                    "malformed request body",
                ),
                std::io::ErrorKind::TimedOut => (
                    StatusCode::REQUEST_TIMEOUT,
                    ErrorKind::ClientError,
                    "the request body stalled",
                ),
                _ => (
                    StatusCode::BAD_REQUEST,
                    ErrorKind::ClientDisconnect,
                    "the request body failed",
                ),
            };
            let code = match kind {
                ErrorKind::ClientDisconnect => CLIENT_CLOSED,
                _ => status.as_u16(),
            };
            return local(
                target,
                route,
                started,
                finished(code, Some(kind)),
                status,
                message,
            );
        }
        Ok(Err(SendError::Local(e))) => {
            // The proxy's own shortage (no file descriptor left): the upstream was not tried,
            // and the answer says the service, not the gateway behind it, is unavailable now.
            common::log::error(
                "proxy: no resources to reach the upstream",
                &[("upstream", &target.name), ("err", &e)],
            );
            in_flight.disarm();
            return local(
                target,
                route,
                started,
                finished(503, Some(ErrorKind::LocalResource)),
                StatusCode::SERVICE_UNAVAILABLE,
                "out of resources (open files)",
            );
        }
        Ok(Err(e)) => {
            let (kind, message, err) = match e {
                SendError::Unreachable(e) => {
                    // Whatever answers on its port next may be another server.
                    target.detected.forget();
                    (ErrorKind::UpstreamUnreachable, "upstream unreachable", e)
                }
                SendError::Broken(e) => (ErrorKind::UpstreamBroken, "upstream answered badly", e),
                SendError::ClientBody(e) => (
                    ErrorKind::UpstreamBroken,
                    "upstream answered badly",
                    e.to_string(),
                ),
                SendError::Local(e) => (ErrorKind::LocalResource, "out of resources", e),
            };
            common::log::warn(
                "proxy: upstream request failed",
                &[("upstream", &target.name), ("err", &err)],
            );
            in_flight.disarm();
            return local(
                target,
                route,
                started,
                finished(502, Some(kind)),
                StatusCode::BAD_GATEWAY,
                message,
            );
        }
        Err(_) => {
            common::log::warn(
                "proxy: no response headers in time",
                &[("upstream", &target.name)],
            );
            in_flight.disarm();
            return local(
                target,
                route,
                started,
                finished(504, Some(ErrorKind::UpstreamTimeout)),
                StatusCode::GATEWAY_TIMEOUT,
                "upstream timed out",
            );
        }
    };

    // From here the response body records the request, however it ends.
    in_flight.disarm();
    let status = response.status;
    let record = route.map(|_| {
        let ok = status.is_success();
        let framing = response
            .headers
            .get_str("content-type")
            .and_then(Framing::from_content_type);
        let says_llama = response
            .headers
            .get_str("server")
            .is_some_and(|s| s.contains("llama.cpp"));
        let observer = framing.filter(|_| ok).map(|f| Observer::new(f, started));
        if observer.is_some() && !says_llama {
            // An answer that may name a model, from a server not yet recognized: detect it
            // while the body comes (once; again after the upstream was unreachable).
            target.detected.ensure();
        }
        Record {
            metrics: target.metrics.clone(),
            finished: finished(status.as_u16(), (!ok).then_some(ErrorKind::UpstreamStatus)),
            started,
            // Error answers are passed on but not read: their bodies carry no tokens.
            observer,
            naming: Naming {
                choice: target.backend,
                says_llama,
                ollama_route: route.is_some_and(|r| r.starts_with("/api/")),
                detected: target.detected.clone(),
            },
        }
    });
    let mut headers = without_hop_by_hop(response.headers);
    if response.drop_length {
        // The length the client gets is the one the proxy frames by (the server writes it from
        // the body's exact size): never a void, listed or malformed upstream value.
        headers.retain(|name| !name.eq_ignore_ascii_case(b"content-length"));
    }
    let body = MeteredBody::new(
        response.conn,
        response.decoder,
        response.first,
        target.upstream.clone(),
        record,
        target.settings.idle_timeout,
    );
    Answer {
        status,
        headers,
        body: ProxyBody::Upstream(Box::new(body)),
    }
}

/// An answer made by the proxy itself, recorded at once for inference routes.
fn local(
    target: &Target,
    route: Option<&'static str>,
    started: Instant,
    mut finished: Finished,
    status: StatusCode,
    message: &str,
) -> Answer {
    if route.is_some() {
        finished.duration = started.elapsed().as_secs_f64();
        target.metrics.finished(finished);
    }
    let (headers, body) = error_body(message);
    Answer {
        status,
        headers,
        body: ProxyBody::Local(Some(body)),
    }
}

/// The header fields and body of an error the proxy answers itself: a JSON object.
fn error_body(message: &str) -> (Fields, Bytes) {
    let body = format!("{{\"error\":\"llm-exporter proxy: {message}\"}}");
    let mut headers = Fields::with_capacity(1);
    headers.push(
        Bytes::from_static(b"content-type"),
        Bytes::from_static(b"application/json"),
    );
    (headers, Bytes::from(body))
}

fn without_hop_by_hop(mut headers: Fields) -> Fields {
    let hop = |name: &[u8]| {
        HOP_BY_HOP
            .iter()
            .any(|h| name.eq_ignore_ascii_case(h.as_bytes()))
    };
    // Most messages carry none: then nothing is looked at twice.
    if !headers.iter().any(|(name, _)| hop(name)) {
        return headers;
    }
    // Headers named in `Connection` are hop-by-hop too; the message's framing and target are
    // never a connection option: a client naming them must not strip them (that would let a
    // body pass for a second request).
    let named: Vec<Vec<u8>> = headers
        .get_all("connection")
        .flat_map(|v| v.split(|b| *b == b','))
        .map(|n| n.trim_ascii().to_ascii_lowercase())
        .filter(|n| !n.is_empty() && !FRAMING.iter().any(|f| n == f.as_bytes()))
        .collect();
    headers.retain(|name| !hop(name) && !named.iter().any(|n| name.eq_ignore_ascii_case(n)));
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_stay_behind_but_never_the_framing() {
        let mut fields = Fields::default();
        for (name, value) in [
            ("Host", "x"),
            ("Connection", "X-Private, content-length , HOST"),
            ("connection", "Transfer-Encoding"),
            ("Keep-Alive", "timeout=5"),
            ("Proxy-Connection", "keep-alive"),
            ("TE", "trailers"),
            ("Upgrade", "websocket"),
            ("Expect", "100-continue"),
            ("x-private", "secret"),
            ("Content-Length", "2"),
            ("Content-Type", "application/json"),
            ("Authorization", "Bearer k"),
        ] {
            fields.push(Bytes::from(name), Bytes::from(value));
        }
        let kept = without_hop_by_hop(fields);
        let names: Vec<&[u8]> = kept.iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            [
                &b"Host"[..],
                b"Content-Length",
                b"Content-Type",
                b"Authorization"
            ]
        );
        // Nothing hop-by-hop: the fields come back as they were.
        let mut plain = Fields::default();
        plain.push(Bytes::from("A"), Bytes::from("b"));
        assert_eq!(without_hop_by_hop(plain).len(), 1);
    }
}
