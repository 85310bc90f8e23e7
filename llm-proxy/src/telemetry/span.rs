//! One finished request as an OpenTelemetry span, named and attributed as the GenAI semantic
//! conventions ask (<https://opentelemetry.io/docs/specs/semconv/gen-ai/gen-ai-spans/>).
//!
//! Kind CLIENT: the conventions' inference span is "a client call to a Generative AI model or
//! service", and SHOULD be CLIENT when the model runs in another process and is called over
//! HTTP, which is exactly the proxy's position: it calls llama-server or Ollama on the client's
//! behalf, and its `server.*` attributes name that model server. (A SERVER span would describe
//! the proxy's handling of the client's request, with `server.*` naming the proxy itself.)
//!
//! The proxy never reads request bodies (it passes them through unparsed and unbuffered), so
//! the model asked for is not known: `gen_ai.request.model` carries the model the server
//! answered with, which llama-server and Ollama name after the one they were asked for.
//!
//! The first token: the conventions name no span event for it; they define the attribute
//! `gen_ai.response.time_to_first_chunk` (seconds), set here, and the span also carries an
//! event `gen_ai.response.first_chunk` at that instant, so trace views draw it on the timeline.

use super::otlp_proto::{
    AnyValue, ArrayValue, Event, KeyValue, Span, SpanKind, Status, StatusCode, Value,
};
use super::record::RequestRecord;
use std::time::{SystemTime, UNIX_EPOCH};

/// The event marking the first content chunk of a streamed answer.
pub const FIRST_CHUNK_EVENT: &str = "gen_ai.response.first_chunk";

/// `gen_ai.operation.name` for a route label (the conventions' well-known values).
pub fn operation_name(route: &str) -> &'static str {
    match route {
        "/v1/chat/completions" | "/api/chat" | "/v1/messages" | "/v1/responses" => "chat",
        "/v1/embeddings" | "/embedding" | "/api/embed" | "/api/embeddings" => "embeddings",
        // `/v1/completions`, `/completion`, `/infill`, `/api/generate`: text in, text out.
        _ => "text_completion",
    }
}

fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The request's span; `None` when it has no trace or its trace is not sampled.
pub fn span(record: &RequestRecord) -> Option<Span> {
    let trace = record.trace.filter(|t| t.sampled())?;
    let operation = operation_name(record.route);
    let start = record.start_time();
    let name = match &record.model {
        Some(model) => format!("{operation} {model}"),
        None => operation.to_owned(),
    };
    let mut attributes = vec![
        KeyValue::string("gen_ai.operation.name", operation),
        KeyValue::string("gen_ai.provider.name", record.backend.unwrap_or("unknown")),
    ];
    if let Some(model) = &record.model {
        attributes.push(KeyValue::string("gen_ai.request.model", model.as_str()));
        attributes.push(KeyValue::string("gen_ai.response.model", model.as_str()));
    }
    attributes.push(KeyValue::new(
        "gen_ai.request.stream",
        Value::BoolValue(record.stream),
    ));
    if let Some(n) = record.prompt_tokens {
        attributes.push(KeyValue::int("gen_ai.usage.input_tokens", saturating(n)));
    }
    if let Some(n) = record.generated_tokens {
        attributes.push(KeyValue::int("gen_ai.usage.output_tokens", saturating(n)));
    }
    if let Some(reason) = record.finish_reason {
        attributes.push(KeyValue::new(
            "gen_ai.response.finish_reasons",
            Value::ArrayValue(ArrayValue {
                values: vec![AnyValue {
                    value: Some(Value::StringValue(reason.to_owned())),
                }],
            }),
        ));
    }
    if let Some(ttft) = record.ttft {
        attributes.push(KeyValue::new(
            "gen_ai.response.time_to_first_chunk",
            Value::DoubleValue(ttft.as_secs_f64()),
        ));
    }
    attributes.push(KeyValue::string("server.address", &*record.server_address));
    if let Some(port) = record.server_port {
        attributes.push(KeyValue::int("server.port", i64::from(port)));
    }
    attributes.push(KeyValue::int(
        "http.response.status_code",
        i64::from(record.code),
    ));
    let status = match record.error_kind {
        Some(kind) => {
            attributes.push(KeyValue::string("error.type", kind));
            Some(Status {
                message: kind.to_owned(),
                code: StatusCode::Error as i32,
            })
        }
        None => None,
    };
    let events = record
        .ttft
        .map(|ttft| Event {
            time_unix_nano: unix_nanos(start + ttft),
            name: FIRST_CHUNK_EVENT.to_owned(),
            attributes: Vec::new(),
        })
        .into_iter()
        .collect();
    Some(Span {
        trace_id: trace.trace_id.to_vec(),
        span_id: trace.span_id.to_vec(),
        parent_span_id: trace.parent_span_id.map(|p| p.to_vec()).unwrap_or_default(),
        flags: u32::from(trace.flags),
        name,
        kind: SpanKind::Client as i32,
        start_time_unix_nano: unix_nanos(start),
        end_time_unix_nano: unix_nanos(record.end_time),
        attributes,
        events,
        status,
    })
}

fn saturating(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::super::record::sample;
    use super::super::trace_context::{SpanContext, TraceParent};
    use super::*;

    fn attribute<'a>(span: &'a Span, key: &str) -> Option<&'a Value> {
        span.attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref())
            .and_then(|v| v.value.as_ref())
    }

    fn traced(record: RequestRecord) -> RequestRecord {
        let parent = TraceParent::parse(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        RequestRecord {
            trace: Some(SpanContext::start(parent)),
            ..record
        }
    }

    #[test]
    fn a_chat_request_is_a_client_span_with_the_genai_attributes() {
        let span = span(&traced(sample())).unwrap();
        assert_eq!(span.name, "chat qwen3-8b");
        assert_eq!(span.kind, SpanKind::Client as i32);
        assert_eq!(
            span.parent_span_id,
            [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]
        );
        assert_eq!(
            span.end_time_unix_nano - span.start_time_unix_nano,
            1_234_000_000
        );
        let s = |v: &str| Some(Value::StringValue(v.into()));
        assert_eq!(
            attribute(&span, "gen_ai.operation.name").cloned(),
            s("chat")
        );
        assert_eq!(
            attribute(&span, "gen_ai.provider.name").cloned(),
            s("llama.cpp")
        );
        assert_eq!(
            attribute(&span, "gen_ai.request.model").cloned(),
            s("qwen3-8b")
        );
        assert_eq!(
            attribute(&span, "gen_ai.response.model").cloned(),
            s("qwen3-8b")
        );
        assert_eq!(
            attribute(&span, "gen_ai.usage.input_tokens"),
            Some(&Value::IntValue(12))
        );
        assert_eq!(
            attribute(&span, "gen_ai.usage.output_tokens"),
            Some(&Value::IntValue(34))
        );
        assert_eq!(
            attribute(&span, "server.port"),
            Some(&Value::IntValue(8080))
        );
        assert_eq!(attribute(&span, "error.type"), None);
        assert_eq!(span.status, None);
        assert_eq!(span.events.len(), 1);
        assert_eq!(span.events[0].name, FIRST_CHUNK_EVENT);
        assert_eq!(
            span.events[0].time_unix_nano - span.start_time_unix_nano,
            123_000_000
        );
    }

    #[test]
    fn a_failure_has_error_type_and_status_error() {
        let record = traced(RequestRecord {
            error_kind: Some("upstream_status"),
            code: 503,
            ttft: None,
            finish_reason: None,
            model: None,
            route: "/api/embed",
            ..sample()
        });
        let span = span(&record).unwrap();
        assert_eq!(span.name, "embeddings");
        assert_eq!(
            attribute(&span, "error.type"),
            Some(&Value::StringValue("upstream_status".into()))
        );
        assert_eq!(span.status.as_ref().unwrap().code, StatusCode::Error as i32);
        assert!(span.events.is_empty());
        assert_eq!(attribute(&span, "gen_ai.response.finish_reasons"), None);
    }

    #[test]
    fn no_trace_or_an_unsampled_one_makes_no_span() {
        assert_eq!(span(&sample()), None);
        let unsampled =
            TraceParent::parse(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00");
        let record = RequestRecord {
            trace: Some(SpanContext::start(unsampled)),
            ..sample()
        };
        assert_eq!(span(&record), None);
    }

    #[test]
    fn routes_name_their_operation() {
        assert_eq!(operation_name("/api/chat"), "chat");
        assert_eq!(operation_name("/v1/messages"), "chat");
        assert_eq!(operation_name("/v1/completions"), "text_completion");
        assert_eq!(operation_name("/api/generate"), "text_completion");
        assert_eq!(operation_name("/v1/embeddings"), "embeddings");
    }
}
