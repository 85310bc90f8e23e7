//! What one finished inference request was, as the proxy measured it: the one value that both
//! the access log and the span exporter are made from, so the two always tell the same story.

use super::trace_context::SpanContext;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// One finished inference request. Holds no prompt, no answer and no header value: the request
/// id (checked by `request_id::accept`) is the only thing in it a client chose.
#[derive(Clone, Debug)]
pub struct RequestRecord {
    /// When the request ended (the response's last byte, or the failure).
    pub end_time: SystemTime,
    pub request_id: String,
    /// The proxy's span for this request; `None` when tracing is off and the client sent no
    /// `traceparent`.
    pub trace: Option<SpanContext>,
    /// The upstream's configured name.
    pub upstream: Arc<str>,
    /// The backend's label (`llama.cpp`, `ollama`, ...); `None` while it is not known.
    pub backend: Option<&'static str>,
    /// The model the server named in its answer, normalized as the metrics' `model` label.
    pub model: Option<String>,
    /// The route label (`/v1/chat/completions`, `/api/chat`, ...).
    pub route: &'static str,
    /// Where the upstream listens: host and port, for the span's `server.*` attributes.
    pub server_address: Arc<str>,
    pub server_port: Option<u16>,
    /// The HTTP status the client got (499 when it left first).
    pub code: u16,
    /// `None`: the request succeeded. Otherwise the metrics' error `kind` label.
    pub error_kind: Option<&'static str>,
    /// The finish reason's label (`stop`, `length`, ...), when the server named one.
    pub finish_reason: Option<&'static str>,
    /// Whether the answer was a stream (SSE or NDJSON).
    pub stream: bool,
    pub duration: Duration,
    pub ttft: Option<Duration>,
    pub queue: Option<Duration>,
    pub prompt_tokens: Option<u64>,
    pub generated_tokens: Option<u64>,
}

impl RequestRecord {
    pub fn outcome(&self) -> &'static str {
        match self.error_kind {
            None => "success",
            Some(_) => "error",
        }
    }

    /// When the request began: its end less its duration.
    pub fn start_time(&self) -> SystemTime {
        self.end_time
            .checked_sub(self.duration)
            .unwrap_or(self.end_time)
    }
}

#[cfg(test)]
pub(crate) fn sample() -> RequestRecord {
    RequestRecord {
        end_time: SystemTime::UNIX_EPOCH + Duration::from_millis(1_796_620_200_123),
        request_id: "req-1".into(),
        trace: None,
        upstream: Arc::from("llama"),
        backend: Some("llama.cpp"),
        model: Some("qwen3-8b".into()),
        route: "/v1/chat/completions",
        server_address: Arc::from("127.0.0.1"),
        server_port: Some(8080),
        code: 200,
        error_kind: None,
        finish_reason: Some("stop"),
        stream: true,
        duration: Duration::from_millis(1234),
        ttft: Some(Duration::from_millis(123)),
        queue: Some(Duration::from_millis(10)),
        prompt_tokens: Some(12),
        generated_tokens: Some(34),
    }
}
