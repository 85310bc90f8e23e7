//! Logs and traces of every inference request the proxy measures (issue 18): a JSON access log
//! and OpenTelemetry spans over OTLP/HTTP, both off by default. The proxy asks `begin` for a
//! request's id and trace context when the request comes, sends `upstream_headers` upstream,
//! and hands `finish` a `RequestRecord` when the request ends; both outputs are written by
//! threads of their own from bounded queues, so neither can slow a request or a stream.
//!
//! With everything off the proxy behaves as before: no id is made, no header is changed.
//! With the access log alone, requests get an `X-Request-ID` (the client's, or a new one) and a
//! client's `traceparent` passes untouched; with spans on, the proxy also makes a span of its
//! own per request and sends upstream a `traceparent` that names it.

pub mod access_log;
pub mod otlp_http;
pub mod otlp_proto;
pub mod random;
pub mod record;
pub mod request_id;
pub mod span;
pub mod span_export;
pub mod trace_context;

pub use access_log::{AccessLog, Destination};
pub use record::RequestRecord;
pub use span_export::{OtlpConfig, SpanExporter};
pub use trace_context::{SpanContext, TraceParent};

use common::MetricFamily;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// What to turn on.
#[derive(Clone, Debug, Default)]
pub struct TelemetryConfig {
    pub access_log: Option<Destination>,
    /// Lines waiting for the writer at most.
    pub access_log_queue: usize,
    pub otlp: Option<OtlpConfig>,
}

/// The running telemetry, shared by every proxy thread.
#[derive(Default)]
pub struct Telemetry {
    access_log: Option<AccessLog>,
    spans: Option<SpanExporter>,
}

/// Where an upstream listens, for the spans' `server.address` and `server.port`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Server {
    pub address: Arc<str>,
    pub port: Option<u16>,
}

impl Server {
    /// From the upstream's `http://host:port[/prefix]`; the port is 80 when the URL names none.
    pub fn from_base_url(base_url: &str) -> Server {
        match base_url.parse::<hyper::Uri>() {
            Ok(uri) => Server {
                address: Arc::from(
                    uri.host()
                        .unwrap_or_default()
                        .trim_start_matches('[')
                        .trim_end_matches(']'),
                ),
                port: uri.port_u16().or(Some(80)),
            },
            Err(_) => Server::default(),
        }
    }
}

/// One request's identity, fixed when it comes in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestContext {
    pub request_id: String,
    /// The proxy's span, when spans are exported.
    pub trace: Option<SpanContext>,
    /// When the request came (the wall clock: log and span times).
    pub started_at: SystemTime,
    pub server: Server,
}

/// What the proxy measured of one finished request, for `RequestContext::record`.
#[derive(Clone, Debug, Default)]
pub struct Measured {
    pub upstream: Arc<str>,
    pub backend: Option<&'static str>,
    pub model: Option<String>,
    pub route: &'static str,
    pub code: u16,
    pub error_kind: Option<&'static str>,
    pub finish_reason: Option<&'static str>,
    pub stream: bool,
    pub duration: f64,
    pub ttft: Option<f64>,
    pub queue: Option<f64>,
    pub prompt_tokens: Option<u64>,
    pub generated_tokens: Option<u64>,
}

/// Seconds measured as `f64` back to a `Duration`; a negative or absurd value (a clock gone
/// wrong) becomes zero rather than a panic.
fn duration(seconds: f64) -> Duration {
    Duration::try_from_secs_f64(seconds).unwrap_or_default()
}

impl RequestContext {
    /// The finished request's record: its identity and what was measured.
    pub fn record(self, m: Measured) -> RequestRecord {
        let duration = duration(m.duration);
        RequestRecord {
            end_time: self.started_at + duration,
            request_id: self.request_id,
            trace: self.trace,
            upstream: m.upstream,
            backend: m.backend,
            model: m.model,
            route: m.route,
            server_address: self.server.address,
            server_port: self.server.port,
            code: m.code,
            error_kind: m.error_kind,
            finish_reason: m.finish_reason,
            stream: m.stream,
            duration,
            ttft: m.ttft.map(self::duration),
            queue: m.queue.map(self::duration),
            prompt_tokens: m.prompt_tokens,
            generated_tokens: m.generated_tokens,
        }
    }

    /// The headers sent upstream in place of the client's `X-Request-ID` (and, with spans on,
    /// `traceparent`): lowercase names, values the proxy made or checked.
    pub fn upstream_headers(&self) -> Vec<(&'static str, String)> {
        let mut headers = vec![(request_id::HEADER, self.request_id.clone())];
        if let Some(trace) = &self.trace {
            headers.push((trace_context::HEADER, trace.traceparent()));
        }
        headers
    }
}

impl Telemetry {
    /// Starts the writers that are turned on; an access log file that cannot be opened, or an
    /// endpoint that is not an http URL, is an error.
    pub fn start(config: TelemetryConfig) -> Result<Telemetry, String> {
        let access_log = config
            .access_log
            .map(|d| AccessLog::start(d, config.access_log_queue.max(1)))
            .transpose()?;
        let spans = config.otlp.map(SpanExporter::start).transpose()?;
        Ok(Telemetry { access_log, spans })
    }

    /// Whether anything is on; when not, the proxy skips ids and records altogether.
    pub fn enabled(&self) -> bool {
        self.access_log.is_some() || self.spans.is_some()
    }

    /// The request's id and span, from the client's `X-Request-ID` and `traceparent`.
    pub fn begin(
        &self,
        request_id: Option<&[u8]>,
        traceparent: Option<&[u8]>,
        server: &Server,
    ) -> RequestContext {
        RequestContext {
            request_id: request_id::accept(request_id),
            trace: self
                .spans
                .as_ref()
                .map(|_| SpanContext::start(traceparent.and_then(TraceParent::parse))),
            started_at: SystemTime::now(),
            server: server.clone(),
        }
    }

    /// Queues the finished request's line and span; never waits.
    pub fn finish(&self, record: RequestRecord) {
        match (&self.spans, &self.access_log) {
            (Some(spans), Some(log)) => {
                spans.export(record.clone());
                log.log(record);
            }
            (Some(spans), None) => spans.export(record),
            (None, Some(log)) => log.log(record),
            (None, None) => {}
        }
    }

    /// The writers' own counters, for the proxy's collector: only those of what is on.
    pub fn families(&self) -> Vec<MetricFamily> {
        let mut families = Vec::new();
        if let Some(log) = &self.access_log {
            families.push(
                MetricFamily::counter(
                    "llm_proxy_access_log_lines_dropped_total",
                    "Access log lines not written: the writer's queue was full (a slow or blocked destination) or the write failed.",
                )
                .with_value(log.counters().dropped() as f64),
            );
        }
        if let Some(spans) = &self.spans {
            let counters = spans.counters();
            families.push(
                MetricFamily::counter(
                    "llm_proxy_spans_exported_total",
                    "Spans the OTLP collector accepted.",
                )
                .with_value(counters.exported() as f64),
            );
            let mut dropped = MetricFamily::counter(
                "llm_proxy_spans_dropped_total",
                "Spans not exported, by reason: queue_full (the exporter fell behind), export_failed (the collector was unreachable, too slow or answered an error), rejected (the collector refused them).",
            );
            for (reason, n) in counters.dropped() {
                dropped.push(&[("reason", reason)], n as f64);
            }
            families.push(dropped);
        }
        families
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_ends_at_the_start_plus_its_duration() {
        let started_at = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let ctx = RequestContext {
            request_id: "r".into(),
            trace: None,
            started_at,
            server: Server::from_base_url("http://llama:8080/prefix"),
        };
        let record = ctx.record(Measured {
            duration: 1.5,
            ttft: Some(0.25),
            queue: Some(-1.0),
            ..Default::default()
        });
        assert_eq!(record.end_time, started_at + Duration::from_millis(1500));
        assert_eq!(record.start_time(), started_at);
        assert_eq!(record.ttft, Some(Duration::from_millis(250)));
        assert_eq!(record.queue, Some(Duration::ZERO));
        assert_eq!(record.server_address.as_ref(), "llama");
        assert_eq!(Server::from_base_url("http://host").port, Some(80));
    }

    #[test]
    fn off_makes_no_trace_and_no_metrics() {
        let telemetry = Telemetry::start(TelemetryConfig::default()).unwrap();
        assert!(!telemetry.enabled());
        assert!(telemetry.families().is_empty());
        let ctx = telemetry.begin(Some(b"abc"), Some(b"junk"), &Server::default());
        assert_eq!(ctx.trace, None);
        assert_eq!(
            ctx.upstream_headers(),
            [("x-request-id", "abc".to_string())]
        );
    }

    #[test]
    fn spans_on_put_the_proxy_span_upstream_and_count() {
        let telemetry = Telemetry::start(TelemetryConfig {
            otlp: Some(OtlpConfig::new("http://127.0.0.1:9/v1/traces")),
            ..Default::default()
        })
        .unwrap();
        let ctx = telemetry.begin(
            Some(b"bad id"),
            Some(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            &Server::from_base_url("http://[::1]:8080"),
        );
        assert_eq!(ctx.server.address.as_ref(), "::1");
        assert_eq!(ctx.server.port, Some(8080));
        assert_eq!(ctx.request_id.len(), 32);
        let trace = ctx.trace.unwrap();
        let headers = ctx.upstream_headers();
        assert_eq!(headers[0], ("x-request-id", ctx.request_id.clone()));
        assert_eq!(headers[1], ("traceparent", trace.traceparent()));
        assert_eq!(
            random::hex(&trace.parent_span_id.unwrap()),
            "00f067aa0ba902b7"
        );
        let names: Vec<String> = telemetry
            .families()
            .iter()
            .map(|f| f.name.to_string())
            .collect();
        assert_eq!(
            names,
            [
                "llm_proxy_spans_exported_total",
                "llm_proxy_spans_dropped_total"
            ]
        );
        let dropped = &telemetry.families()[1];
        assert_eq!(dropped.samples.len(), 3);
    }
}
