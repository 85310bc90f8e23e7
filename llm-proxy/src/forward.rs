//! Forwarding one request: the client's head goes upstream without its hop-by-hop fields, the
//! upstream's answer (or the proxy's own, when the upstream fails) comes back, and an inference
//! request is measured from its start to the end of its response body.

use crate::codec::fields::Fields;
use crate::codec::framing::without_hop_by_hop;
use crate::codec::head::RequestHead;
use crate::conn::body::{error_body, MeteredBody, ProxyBody, Record};
use crate::conn::client::{SendError, Upstream};
use crate::conn::server::{Answer, ClientBody, Handler};
use crate::measure::metrics::{ErrorKind, Finished, ProxyMetrics};
use crate::measure::naming::{ModelNames, Naming, Signs};
use crate::measure::observe::{Observer, StreamFormat};
use crate::measure::route;
use crate::start::Settings;
use crate::telemetry::{self, RequestContext, Server};
use bytes::Bytes;
use hyper::body::Body;
use hyper::StatusCode;
use std::future::Future;
use std::sync::Arc;
use tokio::time::Instant;

/// One proxy listener's view of its upstream.
pub struct Target {
    pub name: Arc<str>,
    /// How the upstream's model names become labels, shared by every proxy thread.
    pub names: Arc<dyn ModelNames>,
    /// This thread's connections to the upstream.
    pub upstream: Arc<Upstream>,
    pub settings: Settings,
    pub metrics: Arc<ProxyMetrics>,
    /// Where the upstream listens, for the spans.
    pub server: Server,
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
    request: Option<RequestContext>,
}

impl<'a> InFlight<'a> {
    fn start(
        target: &'a Target,
        route: Option<&'static str>,
        started: Instant,
        request: Option<RequestContext>,
    ) -> Self {
        if let Some(route) = route {
            target.metrics.started(&target.name, route);
        }
        InFlight {
            target,
            route,
            started,
            request,
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
                request: self.request.take(),
                backend: self.target.names.backend(Signs::default()),
                ..Default::default()
            });
        }
    }
}

impl Handler for Target {
    fn handle<'a>(
        &'a self,
        head: RequestHead,
        body: ClientBody<'a>,
    ) -> impl Future<Output = Answer> + 'a {
        forward(self, head, body)
    }
}

async fn forward<B>(target: &Target, head: RequestHead, body: B) -> Answer
where
    B: Body<Data = Bytes, Error = std::io::Error> + Unpin,
{
    let started = Instant::now();
    let route = route::inference_route(&head.method, head.uri.path());
    // The access log and spans (when on) get an id and a trace for each inference request.
    let telemetry = target.metrics.telemetry();
    let request = route.filter(|_| telemetry.enabled()).map(|_| {
        telemetry.begin(
            head.headers.get_all(telemetry::request_id::HEADER).next(),
            head.headers
                .get_all(telemetry::trace_context::HEADER)
                .next(),
            &target.server,
        )
    });
    let in_flight = InFlight::start(target, route, started, request.clone());
    let finished = |code: u16, error: Option<ErrorKind>| Finished {
        upstream: target.name.clone(),
        route: route.unwrap_or(""),
        code,
        error,
        request: request.clone(),
        backend: target.names.backend(Signs::default()),
        ..Default::default()
    };

    let path = head.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut headers = without_hop_by_hop(head.headers);
    if let Some(request) = &request {
        with_request_ids(&mut headers, request);
    }
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
                    target.names.forget();
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
        let format = response
            .headers
            .get_str("content-type")
            .and_then(StreamFormat::from_content_type);
        let says_llama = response
            .headers
            .get_str("server")
            .is_some_and(|s| s.contains("llama.cpp"));
        let observer = format.filter(|_| ok).map(|f| Observer::new(f, started));
        let signs = Signs {
            says_llama,
            ollama: route.is_some_and(|r| r.starts_with("/api/")),
        };
        if observer.is_some() && !says_llama {
            // An answer that may name a model, from a server not yet recognized: detect it
            // while the body comes (once; again after the upstream was unreachable).
            target.names.learn();
        }
        Record {
            metrics: target.metrics.clone(),
            finished: Finished {
                stream: matches!(format, Some(StreamFormat::Sse | StreamFormat::Ndjson)),
                backend: target.names.backend(signs),
                ..finished(status.as_u16(), (!ok).then_some(ErrorKind::UpstreamStatus))
            },
            started,
            // Error answers are passed on but not read: their bodies carry no tokens.
            observer,
            naming: Naming {
                says_llama,
                ollama_route: route.is_some_and(|r| r.starts_with("/api/")),
                names: target.names.clone(),
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

/// The request's id (and, with spans on, the proxy's `traceparent`) in place of the client's.
fn with_request_ids(headers: &mut Fields, request: &RequestContext) {
    let ids = request.upstream_headers();
    headers.retain(|name| {
        !ids.iter()
            .any(|(id, _)| name.eq_ignore_ascii_case(id.as_bytes()))
    });
    for (name, value) in ids {
        headers.push(Bytes::from_static(name.as_bytes()), Bytes::from(value));
    }
}
