//! OTLP/HTTP span export (<https://opentelemetry.io/docs/specs/otlp/#otlphttp>): protobuf
//! bodies POSTed to the configured endpoint by a thread of its own, in batches of up to
//! `batch_size` spans or every `interval`, whichever comes first, each POST under `timeout`.
//! The proxy only hands a finished request to a bounded queue (`try_send`, never a wait); the
//! span is built on the exporter's thread. Nothing is retried: a batch the collector refused,
//! or that did not reach it in time, is counted as dropped, so an unreachable collector costs
//! the proxy one failed connection per batch and a counter, never memory or latency.
//!
//! A hand-made exporter instead of `opentelemetry-otlp`: that crate brings the OpenTelemetry
//! SDK and either tonic or reqwest, a large share of the build for one POST per batch (the POST
//! itself: `otlp_http`). Plain `http://` only: a collector on this host or network (Alloy, the
//! OpenTelemetry Collector, Jaeger) forwards further, with TLS where it must.

use super::otlp_http::{self, Endpoint};
use super::otlp_proto::{
    ExportTraceServiceRequest, ExportTraceServiceResponse, InstrumentationScope, KeyValue,
    Resource, ResourceSpans, ScopeSpans, Span,
};
use super::record::RequestRecord;
use super::span;
use hyper::Uri;
use prost::Message;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::{self, error::TrySendError};

/// How the exporter runs; the flags' defaults are those of OpenTelemetry's batch span
/// processor (`OTEL_BSP_*`).
#[derive(Clone, Debug)]
pub struct OtlpConfig {
    /// The full URL, path included: `http://127.0.0.1:4318/v1/traces`.
    pub endpoint: String,
    /// The `service.name` resource attribute.
    pub service_name: String,
    /// Requests waiting for export at most; more are dropped.
    pub queue_size: usize,
    /// Spans in one POST at most.
    pub batch_size: usize,
    /// A batch goes out at least this often while spans wait.
    pub interval: Duration,
    /// One POST's deadline, connection included.
    pub timeout: Duration,
}

impl OtlpConfig {
    pub fn new(endpoint: &str) -> OtlpConfig {
        OtlpConfig {
            endpoint: endpoint.to_owned(),
            service_name: "llm-exporter".to_owned(),
            queue_size: 2048,
            batch_size: 512,
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(10),
        }
    }
}

/// Checks an endpoint URL: absolute `http://` with a host; the error says why not.
pub fn parse_endpoint(raw: &str) -> Result<Uri, String> {
    let uri: Uri = raw.parse().map_err(|e| format!("not a URL: {e}"))?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http"), Some(_)) => Ok(uri),
        (Some("https"), _) => {
            Err("https is not supported; send to a local collector over http".into())
        }
        _ => Err("expected http://HOST:PORT/v1/traces".into()),
    }
}

/// Spans exported and dropped, by why.
#[derive(Default)]
pub struct SpanCounters {
    exported: AtomicU64,
    queue_full: AtomicU64,
    export_failed: AtomicU64,
    rejected: AtomicU64,
}

/// Why spans were dropped: the `reason` label values.
pub const DROP_REASONS: [&str; 3] = ["queue_full", "export_failed", "rejected"];

impl SpanCounters {
    pub fn exported(&self) -> u64 {
        self.exported.load(Ordering::Relaxed)
    }

    /// Dropped spans by reason, in `DROP_REASONS`' order: the queue was full; the POST failed
    /// (unreachable, timed out, or a non-2xx answer); the collector took the batch but
    /// rejected some of its spans (OTLP partial success).
    pub fn dropped(&self) -> [(&'static str, u64); 3] {
        [
            (DROP_REASONS[0], self.queue_full.load(Ordering::Relaxed)),
            (DROP_REASONS[1], self.export_failed.load(Ordering::Relaxed)),
            (DROP_REASONS[2], self.rejected.load(Ordering::Relaxed)),
        ]
    }
}

/// The proxy's handle on the exporter: cheap to share between proxy threads.
pub struct SpanExporter {
    queue: mpsc::Sender<RequestRecord>,
    counters: Arc<SpanCounters>,
}

impl SpanExporter {
    /// Checks the endpoint and starts the exporter's thread.
    pub fn start(config: OtlpConfig) -> Result<SpanExporter, String> {
        let endpoint = parse_endpoint(&config.endpoint)
            .map_err(|e| format!("--proxy.otlp-endpoint={}: {e}", config.endpoint))?;
        let (queue, records) = mpsc::channel(config.queue_size.max(1));
        let counters = Arc::new(SpanCounters::default());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the span exporter's runtime: {e}"))?;
        let thread_counters = counters.clone();
        std::thread::Builder::new()
            .name("llm-proxy-otlp".into())
            .spawn(move || {
                runtime.block_on(run(
                    config,
                    Endpoint::new(&endpoint),
                    records,
                    &thread_counters,
                ));
            })
            .map_err(|e| format!("cannot start the span exporter: {e}"))?;
        Ok(SpanExporter { queue, counters })
    }

    /// Queues the request for export when it has a sampled trace; never waits.
    pub fn export(&self, record: RequestRecord) {
        if !record.trace.is_some_and(|t| t.sampled()) {
            return;
        }
        match self.queue.try_send(record) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Closed(_)) => {
                self.counters.queue_full.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    pub fn counters(&self) -> Arc<SpanCounters> {
        self.counters.clone()
    }

    /// Free places in the queue (for tests that must know the exporter took a request).
    #[cfg(test)]
    fn capacity(&self) -> usize {
        self.queue.capacity()
    }
}

async fn run(
    config: OtlpConfig,
    endpoint: Endpoint,
    mut records: mpsc::Receiver<RequestRecord>,
    counters: &SpanCounters,
) {
    let resource = Resource {
        attributes: vec![
            KeyValue::string("service.name", config.service_name.as_str()),
            KeyValue::string("service.version", env!("CARGO_PKG_VERSION")),
        ],
    };
    let mut failing = false;
    let mut closed = false;
    while !closed {
        // A batch: from its first span, until it is full or the interval has passed.
        let Some(first) = records.recv().await else {
            return;
        };
        let deadline = tokio::time::Instant::now() + config.interval;
        let mut spans: Vec<Span> = span::span(&first).into_iter().collect();
        while spans.len() < config.batch_size {
            tokio::select! {
                next = records.recv() => match next {
                    Some(record) => spans.extend(span::span(&record)),
                    None => {
                        closed = true;
                        break;
                    }
                },
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        let n = spans.len() as u64;
        let request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(resource.clone()),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "llm-proxy".into(),
                        version: env!("CARGO_PKG_VERSION").into(),
                    }),
                    spans,
                }],
            }],
        };
        let outcome =
            tokio::time::timeout(config.timeout, export(&endpoint, request.encode_to_vec()))
                .await
                .unwrap_or_else(|_| Err("timed out".into()));
        match outcome {
            Ok(rejected) => {
                let rejected = rejected.min(n);
                counters.exported.fetch_add(n - rejected, Ordering::Relaxed);
                counters.rejected.fetch_add(rejected, Ordering::Relaxed);
                if failing {
                    common::log::info("proxy span export works again", &[]);
                    failing = false;
                }
            }
            Err(e) => {
                counters.export_failed.fetch_add(n, Ordering::Relaxed);
                if !failing {
                    common::log::warn(
                        "proxy span export failed; spans are dropped and counted",
                        &[("endpoint", &config.endpoint), ("err", &e)],
                    );
                    failing = true;
                }
            }
        }
    }
}

/// One POST; the number of spans the collector rejected, or why it failed.
async fn export(endpoint: &Endpoint, body: Vec<u8>) -> Result<u64, String> {
    let answer = otlp_http::post(endpoint, &body).await?;
    if !(200..300).contains(&answer.status) {
        return Err(format!("the collector answered {}", answer.status));
    }
    // An answer that is not a protobuf (a JSON `{}` from a lax receiver) rejected nothing.
    let rejected = ExportTraceServiceResponse::decode(answer.body.as_slice())
        .ok()
        .and_then(|a| a.partial_success)
        .map(|p| u64::try_from(p.rejected_spans).unwrap_or(0))
        .unwrap_or(0);
    Ok(rejected)
}

#[cfg(test)]
mod tests {
    use super::super::record::sample;
    use super::super::trace_context::{SpanContext, TraceParent};
    use super::*;
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Child, Command, Stdio};

    fn traced(request_id: &str) -> RequestRecord {
        let parent = TraceParent::parse(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        RequestRecord {
            trace: Some(SpanContext::start(parent)),
            request_id: request_id.into(),
            ..sample()
        }
    }

    fn fast(endpoint: &str) -> OtlpConfig {
        OtlpConfig {
            interval: Duration::from_millis(50),
            timeout: Duration::from_secs(2),
            ..OtlpConfig::new(endpoint)
        }
    }

    /// Polls until `done` holds (the exporter is a thread of its own).
    fn wait_until(what: &str, done: impl Fn() -> bool) {
        for _ in 0..1000 {
            if done() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("never happened: {what}");
    }

    fn dropped(counters: &SpanCounters, reason: &str) -> u64 {
        counters
            .dropped()
            .iter()
            .find(|(r, _)| *r == reason)
            .map(|(_, n)| *n)
            .unwrap()
    }

    #[test]
    fn endpoints_must_be_plain_http_urls() {
        assert!(parse_endpoint("http://127.0.0.1:4318/v1/traces").is_ok());
        for bad in [
            "",
            "127.0.0.1:4318",
            "https://x:4318/v1/traces",
            "ftp://x/",
            "http://",
        ] {
            assert!(parse_endpoint(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_unreachable_collector_costs_only_the_drop_counter() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let exporter =
            SpanExporter::start(fast(&format!("http://127.0.0.1:{port}/v1/traces"))).unwrap();
        for i in 0..3 {
            exporter.export(traced(&format!("r{i}")));
        }
        let counters = exporter.counters();
        wait_until("three spans dropped", || {
            dropped(&counters, "export_failed") == 3
        });
        assert_eq!(counters.exported(), 0);
        assert_eq!(dropped(&counters, "queue_full"), 0);
    }

    #[test]
    fn a_stalled_collector_fills_the_queue_and_the_rest_is_counted() {
        // Accepts connections (the kernel's backlog) and never answers.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = silent.local_addr().unwrap().port();
        let config = OtlpConfig {
            queue_size: 4,
            batch_size: 1,
            timeout: Duration::from_secs(600),
            ..fast(&format!("http://127.0.0.1:{port}/v1/traces"))
        };
        let exporter = SpanExporter::start(config).unwrap();
        exporter.export(traced("first"));
        // The exporter took the first and waits on the collector with it.
        wait_until("the first span taken", || exporter.capacity() == 4);
        for i in 0..10 {
            exporter.export(traced(&format!("r{i}")));
        }
        let counters = exporter.counters();
        assert_eq!(dropped(&counters, "queue_full"), 6);
        assert_eq!(counters.exported(), 0);
        drop(silent);
    }

    #[test]
    fn requests_without_a_sampled_trace_are_not_queued() {
        let exporter = SpanExporter::start(OtlpConfig {
            queue_size: 1,
            ..fast("http://127.0.0.1:9/v1/traces")
        })
        .unwrap();
        for _ in 0..5 {
            exporter.export(sample());
        }
        assert_eq!(dropped(&exporter.counters(), "queue_full"), 0);
        assert_eq!(exporter.capacity(), 1);
    }

    /// The test receiver: decodes with the official opentelemetry-proto definitions.
    struct Receiver {
        child: Child,
        lines: std::io::Lines<BufReader<std::process::ChildStdout>>,
        port: u16,
    }

    impl Receiver {
        fn start(args: &[&str]) -> Receiver {
            let script = concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/support/otlp_receiver.py"
            );
            let mut child = Command::new("python3")
                .arg(script)
                .args(args)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("python3 runs the OTLP receiver");
            let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
            let first = lines.next().unwrap().unwrap();
            let port = first
                .strip_prefix("listening ")
                .unwrap_or_else(|| panic!("receiver said {first}"))
                .parse()
                .unwrap();
            Receiver { child, lines, port }
        }

        fn next(&mut self) -> serde_json::Value {
            let line = self
                .lines
                .next()
                .expect("the receiver got a request")
                .unwrap();
            serde_json::from_str(&line).unwrap()
        }
    }

    impl Drop for Receiver {
        fn drop(&mut self) {
            let _ = self.child.stdin.take().map(|mut s| s.flush());
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    #[test]
    fn the_official_definitions_decode_the_batch() {
        let mut receiver = Receiver::start(&[]);
        let config = OtlpConfig {
            service_name: "proxy-under-test".into(),
            interval: Duration::from_secs(600),
            batch_size: 2,
            ..fast(&format!("http://127.0.0.1:{}/v1/traces", receiver.port))
        };
        let exporter = SpanExporter::start(config).unwrap();
        let failed = RequestRecord {
            error_kind: Some("stream_error"),
            finish_reason: None,
            ..traced("b")
        };
        let first = traced("a");
        exporter.export(first.clone());
        exporter.export(failed);
        // A full batch goes out without waiting for the interval.
        let got = receiver.next();
        assert_eq!(got["path"], "/v1/traces");
        assert_eq!(got["content_type"], "application/x-protobuf");
        assert_eq!(got["resource"]["service.name"], "proxy-under-test");
        assert_eq!(got["scope"], "llm-proxy");
        let spans = got["spans"].as_array().unwrap();
        assert_eq!(spans.len(), 2);
        let ok = &spans[0];
        let trace = first.trace.unwrap();
        assert_eq!(ok["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(ok["span_id"], crate::telemetry::random::hex(&trace.span_id));
        assert_eq!(ok["parent_span_id"], "00f067aa0ba902b7");
        assert_eq!(ok["name"], "chat qwen3-8b");
        assert_eq!(ok["kind"], "SPAN_KIND_CLIENT");
        assert_eq!(ok["flags"], 1);
        let a = &ok["attributes"];
        assert_eq!(a["gen_ai.operation.name"], "chat");
        assert_eq!(a["gen_ai.provider.name"], "llama.cpp");
        assert_eq!(a["gen_ai.request.model"], "qwen3-8b");
        assert_eq!(a["gen_ai.response.model"], "qwen3-8b");
        assert_eq!(a["gen_ai.usage.input_tokens"], 12);
        assert_eq!(a["gen_ai.usage.output_tokens"], 34);
        assert_eq!(
            a["gen_ai.response.finish_reasons"],
            serde_json::json!(["stop"])
        );
        assert_eq!(a["gen_ai.request.stream"], true);
        assert_eq!(a["gen_ai.response.time_to_first_chunk"], 0.123);
        assert_eq!(a["server.address"], "127.0.0.1");
        assert_eq!(a["server.port"], 8080);
        assert!(a.get("error.type").is_none());
        assert_eq!(ok["status"]["code"], "STATUS_CODE_UNSET");
        assert_eq!(ok["events"][0]["name"], span::FIRST_CHUNK_EVENT);
        assert_eq!(
            ok["events"][0]["time_unix_nano"].as_u64().unwrap()
                - ok["start_time_unix_nano"].as_u64().unwrap(),
            123_000_000
        );
        assert_eq!(
            ok["end_time_unix_nano"].as_u64().unwrap(),
            1_796_620_200_123_000_000
        );
        let bad = &spans[1];
        assert_eq!(bad["attributes"]["error.type"], "stream_error");
        assert_eq!(bad["status"]["code"], "STATUS_CODE_ERROR");
        let counters = exporter.counters();
        wait_until("two spans counted", || counters.exported() == 2);
    }

    #[test]
    fn error_answers_and_partial_successes_are_counted_as_drops() {
        let mut failing = Receiver::start(&["--status", "503"]);
        let exporter = SpanExporter::start(OtlpConfig {
            batch_size: 2,
            ..fast(&format!("http://127.0.0.1:{}/v1/traces", failing.port))
        })
        .unwrap();
        exporter.export(traced("a"));
        exporter.export(traced("b"));
        failing.next();
        let counters = exporter.counters();
        wait_until("two failed", || dropped(&counters, "export_failed") == 2);

        let mut partial = Receiver::start(&["--reject", "1"]);
        let exporter = SpanExporter::start(OtlpConfig {
            batch_size: 3,
            ..fast(&format!("http://127.0.0.1:{}/v1/traces", partial.port))
        })
        .unwrap();
        for id in ["a", "b", "c"] {
            exporter.export(traced(id));
        }
        partial.next();
        let counters = exporter.counters();
        wait_until("two exported", || counters.exported() == 2);
        assert_eq!(dropped(&counters, "rejected"), 1);
    }
}
