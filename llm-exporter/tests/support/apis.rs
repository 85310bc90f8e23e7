//! Fakes for the proxy's tests of the APIs and servers people run today: llama-server with its
//! recorded Messages, Responses and `include_usage` answers (b11312, tests/fixtures/llama-server);
//! Ollama's `/v1` with reasoning and its error in the middle of a stream, as Ollama's OpenAI
//! middleware writes them (the role in every delta, `system_fingerprint` `fp_ollama`, usage only
//! when asked, `[DONE]` only after the last chunk); and a generic OpenAI-compatible server in
//! vLLM's shapes (no `Server` header, a 404 at `/`, the role only in the first chunk, usage only
//! when `stream_options.include_usage` asks). Included by the proxy tests with `#[path]`, beside
//! `support`.

#![allow(dead_code)]

use crate::support::fake::{Answer, Handler, Seen};
use crate::support::servers::{llama, Llama, TOKEN_GAP};
use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;

fn body(seen: &Seen) -> serde_json::Value {
    serde_json::from_slice(&seen.body).unwrap_or_default()
}

fn wants_stream(seen: &Seen) -> bool {
    body(seen)["stream"].as_bool() == Some(true)
}

fn wants_usage(seen: &Seen) -> bool {
    body(seen)["stream_options"]["include_usage"].as_bool() == Some(true)
}

/// llama-server answering `/v1/messages`, `/v1/responses` and an `include_usage` chat stream
/// with its recordings; everything else as `servers::llama`.
pub fn llama_apis() -> Handler {
    let base = llama(Llama::default());
    Arc::new(move |seen: &Seen| {
        let path = seen.path.split('?').next().unwrap_or("");
        let stream = wants_stream(seen);
        match (seen.method.as_str(), path) {
            ("POST", "/v1/messages") if stream => {
                Answer::recorded_stream("messages-stream", TOKEN_GAP)
            }
            ("POST", "/v1/messages") => Answer::recorded("messages"),
            ("POST", "/v1/responses") if stream => {
                Answer::recorded_stream("responses-stream", TOKEN_GAP)
            }
            ("POST", "/v1/responses") => Answer::recorded("responses"),
            ("POST", "/v1/chat/completions") if stream && wants_usage(seen) => {
                Answer::recorded_stream("v1-chat-completions-stream-include-usage", TOKEN_GAP)
            }
            _ => base(seen),
        }
    })
}

/// A stream of SSE events, as a server that writes each one as it is made.
fn sse(headers: Vec<(String, String)>, events: Vec<String>) -> Answer {
    Answer::Stream {
        status: 200,
        headers,
        events: events
            .into_iter()
            .map(|e| Bytes::from(format!("data: {e}\n\n")))
            .collect(),
        gap: TOKEN_GAP,
        gate: None,
        stall_after: None,
        cut_after: None,
    }
}

/// What Ollama's `/v1/chat/completions` streams for a thinking model: `reasoning` deltas, then
/// `content` deltas, the finish chunk, the usage chunk when asked, `[DONE]`. With `fail_after`,
/// the generation fails after that many deltas: Ollama's middleware reads the native error line
/// as an empty response and sends a chunk with an empty delta and `"model":""`, and no `[DONE]`.
pub struct OllamaV1 {
    pub model: &'static str,
    pub reasoning: &'static [&'static str],
    pub content: &'static [&'static str],
    pub fail_after: Option<usize>,
    /// `GET /` sends "Ollama is" and the rest after this long (a busy host): detection waits.
    pub slow_root: Option<Duration>,
}

pub fn ollama_v1(cfg: OllamaV1) -> Handler {
    let cfg = Arc::new(cfg);
    Arc::new(move |seen: &Seen| {
        let path = seen.path.split('?').next().unwrap_or("");
        let headers = |content_type: &str| {
            vec![
                ("Content-Type".to_string(), content_type.to_string()),
                (
                    "Date".to_string(),
                    "Mon, 23 Nov 2026 09:00:00 GMT".to_string(),
                ),
            ]
        };
        match (seen.method.as_str(), path) {
            ("GET" | "HEAD", "/") => match cfg.slow_root {
                Some(gap) => Answer::Stream {
                    status: 200,
                    headers: headers("text/plain; charset=utf-8"),
                    events: vec![Bytes::from_static(b"Ollama is"), Bytes::from_static(b" running")],
                    gap,
                    gate: None,
                    stall_after: None,
                    cut_after: None,
                },
                None => Answer::Full {
                    status: 200,
                    headers: headers("text/plain; charset=utf-8"),
                    body: Bytes::from_static(b"Ollama is running"),
                },
            },
            // Ollama's Anthropic-compatible answer, not streamed: no fingerprint in it.
            ("POST", "/v1/messages") => Answer::Full {
                status: 200,
                headers: headers("application/json; charset=utf-8"),
                body: Bytes::from(format!(
                    "{{\"id\":\"msg_7\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"{}\",\"content\":[{{\"type\":\"text\",\"text\":\"Hi\"}}],\"stop_reason\":\"end_turn\",\"stop_sequence\":null,\"usage\":{{\"input_tokens\":11,\"output_tokens\":2}}}}",
                    cfg.model
                )),
            },
            ("POST", "/v1/chat/completions") => {
                let chunk = |model: &str, delta: String, finish: &str| {
                    format!(
                        "{{\"id\":\"chatcmpl-7\",\"object\":\"chat.completion.chunk\",\"created\":1796611510,\"model\":\"{model}\",\"system_fingerprint\":\"fp_ollama\",\"choices\":[{{\"index\":0,\"delta\":{delta},\"finish_reason\":{finish}}}]}}"
                    )
                };
                let deltas = cfg
                    .reasoning
                    .iter()
                    .map(|r| {
                        format!("{{\"role\":\"assistant\",\"content\":\"\",\"reasoning\":\"{r}\"}}")
                    })
                    .chain(
                        cfg.content
                            .iter()
                            .map(|c| format!("{{\"role\":\"assistant\",\"content\":\"{c}\"}}")),
                    );
                let mut events: Vec<String> = deltas.map(|d| chunk(cfg.model, d, "null")).collect();
                let empty = "{\"role\":\"assistant\",\"content\":\"\"}".to_string();
                if let Some(n) = cfg.fail_after {
                    events.truncate(n);
                    events.push(chunk("", empty, "null"));
                    return sse(headers("text/event-stream"), events);
                }
                events.push(chunk(cfg.model, empty, "\"stop\""));
                if wants_usage(seen) {
                    let n = cfg.reasoning.len() + cfg.content.len();
                    events.push(format!(
                        "{{\"id\":\"chatcmpl-7\",\"object\":\"chat.completion.chunk\",\"created\":1796611510,\"model\":\"{}\",\"system_fingerprint\":\"fp_ollama\",\"choices\":[],\"usage\":{{\"prompt_tokens\":11,\"completion_tokens\":{n},\"total_tokens\":{}}}}}",
                        cfg.model,
                        11 + n
                    ));
                }
                events.push("[DONE]".to_string());
                sse(headers("text/event-stream"), events)
            }
            _ => Answer::Full {
                status: 404,
                headers: headers("text/plain"),
                body: Bytes::from_static(b"404 page not found"),
            },
        }
    })
}

/// The model a generic OpenAI-compatible server names, with the organisation part vLLM keeps.
pub const GENERIC_MODEL: &str = "Qwen/Qwen3-8B";

/// A generic OpenAI-compatible server in vLLM's shapes: no `Server` header, FastAPI's 404 on
/// everything but `/v1/models` and `/v1/chat/completions`, a stream whose first chunk carries
/// only the role, 3 reasoning deltas, 5 content deltas, a finish chunk (`length`), the usage
/// chunk (with `completion_tokens_details.reasoning_tokens`, as OpenAI reports it) only when
/// `include_usage` asks, and `[DONE]`.
pub fn generic_openai() -> Handler {
    Arc::new(|seen: &Seen| {
        let path = seen.path.split('?').next().unwrap_or("");
        let headers = vec![
            ("content-type".to_string(), "application/json".to_string()),
            (
                "date".to_string(),
                "Mon, 23 Nov 2026 09:00:00 GMT".to_string(),
            ),
        ];
        match (seen.method.as_str(), path) {
            ("GET", "/v1/models") => Answer::Full {
                status: 200,
                headers,
                body: Bytes::from(format!(
                    "{{\"object\":\"list\",\"data\":[{{\"id\":\"{GENERIC_MODEL}\",\"object\":\"model\",\"created\":1796611510,\"owned_by\":\"vllm\",\"root\":\"{GENERIC_MODEL}\",\"parent\":null,\"max_model_len\":32768}}]}}"
                )),
            },
            ("POST", "/v1/chat/completions") => {
                let chunk = |choices: String| {
                    format!(
                        "{{\"id\":\"chatcmpl-9\",\"object\":\"chat.completion.chunk\",\"created\":1796611510,\"model\":\"{GENERIC_MODEL}\",\"choices\":{choices}}}"
                    )
                };
                let choice = |delta: &str, finish: &str| {
                    format!(
                        "[{{\"index\":0,\"delta\":{delta},\"logprobs\":null,\"finish_reason\":{finish}}}]"
                    )
                };
                let mut events = vec![chunk(choice(
                    "{\"role\":\"assistant\",\"content\":\"\"}",
                    "null",
                ))];
                for r in ["Okay", ",", " the"] {
                    events.push(chunk(choice(&format!("{{\"reasoning\":\"{r}\"}}"), "null")));
                }
                for c in ["The", " sky", " is", " blue", "."] {
                    events.push(chunk(choice(&format!("{{\"content\":\"{c}\"}}"), "null")));
                }
                events.push(chunk(choice("{\"content\":\"\"}", "\"length\"")));
                if wants_usage(seen) {
                    events.push(format!(
                        "{{\"id\":\"chatcmpl-9\",\"object\":\"chat.completion.chunk\",\"created\":1796611510,\"model\":\"{GENERIC_MODEL}\",\"choices\":[],\"usage\":{{\"prompt_tokens\":12,\"total_tokens\":20,\"completion_tokens\":8,\"completion_tokens_details\":{{\"reasoning_tokens\":3}}}}}}"
                    ));
                }
                events.push("[DONE]".to_string());
                let mut headers = headers;
                headers[0].1 = "text/event-stream; charset=utf-8".to_string();
                sse(headers, events)
            }
            _ => Answer::Full {
                status: 404,
                headers,
                body: Bytes::from_static(b"{\"detail\":\"Not Found\"}"),
            },
        }
    })
}
