//! Route tables of the fakes: a llama-server (b11312 captures) and an Ollama (v0.33 shapes), each
//! with the fault modes the tests need.

#![allow(dead_code)]

use super::fake::{fixture, split_after, Answer, Handler, Seen};
use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;

/// Realistic pacing between streamed events (a small model on a laptop).
pub const TOKEN_GAP: Duration = Duration::from_millis(5);

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LlamaMode {
    Ready,
    /// 503 `Loading model` on every path, as while the model loads.
    Loading,
    /// Started without `--metrics` and with `--no-slots`.
    MetricsDisabled,
    /// `/metrics` as a JSON-quoted string (llama.cpp issue #17384).
    QuotedMetrics,
    /// `/metrics` cut off in the middle of a line.
    TruncatedMetrics,
    /// `/props` cut off in the middle of the JSON.
    TruncatedProps,
    /// 500 on every path but `/health` and `/`.
    ServerError,
    /// `/slots` answers an empty array (its recorded headers, body `[]`).
    EmptySlots,
    /// Every path answers 200 with an HTML page, as a web server or captive portal on the port.
    Html,
    /// Never answers.
    Hang,
}

/// A web server's default page: neither llama-server's nor Ollama's answer to anything.
pub const HTML_PAGE: &[u8] =
    b"<!DOCTYPE html>\n<html>\n<head>\n<title>Welcome to nginx!</title>\n</head>\n<body>\n<h1>Welcome to nginx!</h1>\n</body>\n</html>\n";

#[derive(Clone)]
pub struct Llama {
    pub mode: LlamaMode,
    pub metrics: &'static str,
    pub slots: &'static str,
    pub props: &'static str,
    pub api_key: Option<&'static str>,
    /// Overrides the `Process-Start-Time-Unix` header of `/metrics`.
    pub start_marker: Option<&'static str>,
}

impl Default for Llama {
    fn default() -> Self {
        Llama {
            mode: LlamaMode::Ready,
            metrics: "metrics-after-4-requests",
            slots: "slots-busy",
            props: "props",
            api_key: None,
            start_marker: None,
        }
    }
}

fn wants_stream(seen: &Seen) -> Option<bool> {
    serde_json::from_slice::<serde_json::Value>(&seen.body)
        .ok()
        .and_then(|v| v.get("stream").and_then(|s| s.as_bool()))
}

fn authorized(seen: &Seen, key: &str) -> bool {
    let bearer = seen
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.strip_prefix("Bearer ").unwrap_or(v));
    let x_api = seen.headers.get("x-api-key").and_then(|v| v.to_str().ok());
    bearer == Some(key) || x_api == Some(key)
}

/// llama-server's own answer shape for an error status.
fn llama_error(status: u16, message: &str, kind: &str) -> Answer {
    Answer::recorded("unknown-path-404")
        .with_body(Bytes::from(format!(
            "{{\"error\":{{\"message\":\"{message}\",\"type\":\"{kind}\",\"code\":{status}}}}}"
        )))
        .with_status(status)
}

impl Answer {
    pub fn with_status(self, new: u16) -> Answer {
        match self {
            Answer::Full { headers, body, .. } => Answer::Full {
                status: new,
                headers,
                body,
            },
            other => other,
        }
    }
}

pub fn llama(cfg: Llama) -> Handler {
    Arc::new(move |seen: &Seen| {
        let path = seen.path.split('?').next().unwrap_or("");
        match cfg.mode {
            LlamaMode::Hang => return Answer::Hang,
            LlamaMode::Loading => {
                return llama_error(503, "Loading model", "unavailable_error");
            }
            LlamaMode::ServerError if path != "/health" && path != "/" => {
                return llama_error(500, "internal error", "server_error");
            }
            LlamaMode::Html => {
                return Answer::Full {
                    status: 200,
                    headers: vec![("Content-Type".into(), "text/html".into())],
                    body: Bytes::from_static(HTML_PAGE),
                };
            }
            _ => {}
        }
        let public = matches!(path, "/health" | "/v1/health" | "/");
        if let Some(key) = cfg.api_key {
            if !public && !authorized(seen, key) {
                return Answer::recorded("apikey-metrics-nokey");
            }
        }
        let disabled = cfg.mode == LlamaMode::MetricsDisabled;
        match (seen.method.as_str(), path) {
            // Not captured: the real server sends its web UI here, with the same headers.
            ("GET", "/") => Answer::recorded("health")
                .with_header("Content-Type", "text/html")
                .with_body(Bytes::from_static(
                    b"<!doctype html><title>llama.cpp</title>",
                )),
            ("GET", "/health" | "/v1/health") => Answer::recorded("health"),
            ("GET", "/props") if disabled => Answer::recorded("props-metrics-disabled"),
            ("GET", "/props") if cfg.mode == LlamaMode::TruncatedProps => {
                let body = fixture(&format!("llama-server/{}.body", cfg.props));
                Answer::recorded(cfg.props).with_body(body.slice(..body.len() / 2))
            }
            ("GET", "/props") => Answer::recorded(cfg.props),
            ("GET", "/slots") if disabled => Answer::recorded("slots-disabled"),
            ("GET", "/slots") if cfg.mode == LlamaMode::EmptySlots => {
                Answer::recorded(cfg.slots).with_body(Bytes::from_static(b"[]"))
            }
            ("GET", "/slots") => Answer::recorded(cfg.slots),
            ("GET", "/metrics") if disabled => Answer::recorded("metrics-disabled"),
            ("GET", "/metrics") => {
                let mut answer = Answer::recorded(cfg.metrics);
                let body = fixture(&format!("llama-server/{}.body", cfg.metrics));
                match cfg.mode {
                    LlamaMode::QuotedMetrics => {
                        let text = std::str::from_utf8(&body).unwrap();
                        let quoted = serde_json::to_string(text).unwrap();
                        answer = answer.with_body(Bytes::from(quoted));
                    }
                    LlamaMode::TruncatedMetrics => {
                        answer = answer.with_body(body.slice(..body.len() - 30));
                    }
                    _ => {}
                }
                if let Some(marker) = cfg.start_marker {
                    answer = answer.with_header("Process-Start-Time-Unix", marker);
                }
                answer
            }
            ("GET", "/v1/models" | "/models") => Answer::recorded("v1-models"),
            ("POST", "/v1/chat/completions" | "/chat/completions") => {
                if wants_stream(seen) == Some(true) {
                    Answer::recorded_stream("v1-chat-completions-stream", TOKEN_GAP)
                } else {
                    Answer::recorded("v1-chat-completions")
                }
            }
            ("POST", "/completion" | "/completions") => {
                if wants_stream(seen) == Some(true) {
                    Answer::recorded_stream("completion-stream", TOKEN_GAP)
                } else {
                    Answer::recorded("completion")
                }
            }
            ("POST", "/v1/completions") => Answer::recorded("v1-completions"),
            _ => Answer::recorded("unknown-path-404"),
        }
    })
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum OllamaMode {
    Ready,
    /// `/api/ps` answers 503 (as a busy Ollama or a proxy in front of it may).
    Unavailable,
    /// `/api/tags` cut off in the middle of the JSON.
    TruncatedTags,
    /// 500 with Ollama's error shape on `/api/*`.
    ServerError,
    /// Inference routes answer 503 "server busy" (OLLAMA_MAX_QUEUE exceeded).
    QueueFull,
}

#[derive(Clone)]
pub struct Ollama {
    pub mode: OllamaMode,
    pub ps: &'static str,
    pub version: &'static str,
}

impl Default for Ollama {
    fn default() -> Self {
        Ollama {
            mode: OllamaMode::Ready,
            ps: "ps",
            version: "version",
        }
    }
}

fn ollama_error(status: u16, stem: &str) -> Answer {
    Answer::ollama(
        status,
        "application/json; charset=utf-8",
        fixture(&format!("ollama/{stem}.body")),
    )
}

pub fn ollama(cfg: Ollama) -> Handler {
    Arc::new(move |seen: &Seen| {
        let path = seen.path.split('?').next().unwrap_or("");
        let inference = matches!(path, "/api/generate" | "/api/chat" | "/api/embed");
        match cfg.mode {
            OllamaMode::ServerError if path.starts_with("/api/") => {
                return Answer::ollama(
                    500,
                    "application/json; charset=utf-8",
                    Bytes::from_static(b"{\"error\":\"llama runner process has terminated\"}"),
                );
            }
            OllamaMode::QueueFull if inference => return ollama_error(503, "queue-full-503"),
            _ => {}
        }
        let streaming = wants_stream(seen) != Some(false);
        match (seen.method.as_str(), path) {
            ("GET" | "HEAD", "/") => Answer::ollama(
                200,
                "text/plain; charset=utf-8",
                fixture("ollama/root.body"),
            ),
            ("GET", "/api/version") => Answer::ollama_json(cfg.version),
            ("GET", "/api/tags") if cfg.mode == OllamaMode::TruncatedTags => {
                let body = fixture("ollama/tags.body");
                Answer::ollama_json("tags").with_body(body.slice(..body.len() - 100))
            }
            ("GET", "/api/tags") => Answer::ollama_json("tags"),
            ("GET", "/api/ps") if cfg.mode == OllamaMode::Unavailable => {
                ollama_error(503, "queue-full-503")
            }
            ("GET", "/api/ps") => Answer::ollama_json(cfg.ps),
            ("POST", "/api/generate") if streaming => {
                Answer::ollama_stream("generate-stream", TOKEN_GAP)
            }
            ("POST", "/api/chat") if streaming => Answer::ollama_stream("chat-stream", TOKEN_GAP),
            ("POST", "/api/chat") => Answer::ollama_json("chat"),
            ("POST", "/api/embed") => Answer::ollama_json("embed"),
            // The OpenAI-compatible stream, with `stream_options.include_usage` set.
            ("POST", "/v1/chat/completions") => Answer::Stream {
                status: 200,
                headers: vec![
                    ("Content-Type".into(), "text/event-stream".into()),
                    ("Date".into(), "Mon, 23 Nov 2026 09:00:00 GMT".into()),
                ],
                events: split_after(&fixture("ollama/v1-chat-completions-stream.body"), b"\n\n"),
                gap: TOKEN_GAP,
                gate: None,
                stall_after: None,
                cut_after: None,
            },
            _ => Answer::ollama(404, "text/plain", Bytes::from_static(b"404 page not found")),
        }
    })
}
