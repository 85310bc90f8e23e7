//! Reading a response as it passes, without holding it back: SSE (`data: {…}` events, `:` pings,
//! `[DONE]`), Ollama's NDJSON, or one JSON document. It notes when the first content token came
//! of any kind (text, reasoning or a tool call; not the role-only chunk, not a ping), the gaps
//! between content chunks, the model the server named, the token counts the server reported, why
//! the generation ended, and error lines.

use super::finish::FinishReason;
use super::json::{self, Chunk, Usage};
use tokio::time::Instant;

/// Longest line or document kept for parsing; longer ones pass through unread.
const MAX_KEPT: usize = 8 << 20;

/// How a response body is laid out, as its `Content-Type` says: read line by line (SSE, NDJSON)
/// or as one document.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamFormat {
    Sse,
    Ndjson,
    Json,
}

impl StreamFormat {
    pub fn from_content_type(content_type: &str) -> Option<StreamFormat> {
        let mime = content_type.split(';').next().unwrap_or("").trim();
        let is = |name: &str| mime.eq_ignore_ascii_case(name);
        if is("text/event-stream") {
            Some(StreamFormat::Sse)
        } else if is("application/x-ndjson") || is("application/ndjson") || is("application/jsonl")
        {
            Some(StreamFormat::Ndjson)
        } else if is("application/json") {
            Some(StreamFormat::Json)
        } else {
            None
        }
    }
}

/// What one response told us.
#[derive(Debug)]
pub struct Observer {
    format: StreamFormat,
    started: Instant,
    kept: Vec<u8>,
    /// The current line or document grew past MAX_KEPT: skip it.
    overflow: bool,
    first_content: Option<Instant>,
    last_content: Option<Instant>,
    pub inter_token: Vec<f64>,
    pub model: Option<String>,
    pub error_line: bool,
    /// Every `usage` field seen, the latest value of each (Anthropic sends the input count at
    /// the start and the output count at the end).
    usage: Usage,
    timings: (Option<u64>, Option<u64>),
    ollama: (Option<u64>, Option<u64>),
    native: (Option<u64>, Option<u64>),
    pub server_prefill: Option<f64>,
    /// Ollama's `load_duration` of this request, where it was above zero.
    pub load_duration: Option<f64>,
    finish: Option<FinishReason>,
    tool_call: bool,
    /// The stream ended with `data: [DONE]`.
    done_marker: bool,
    /// A chunk named the model `""`: what Ollama's `/v1` sends in place of an error.
    empty_model: bool,
    /// The answer carried Ollama's `system_fingerprint` (its `/v1` answers do).
    pub ollama_fingerprint: bool,
}

impl Observer {
    pub fn new(format: StreamFormat, started: Instant) -> Self {
        Observer {
            format,
            started,
            kept: Vec::new(),
            overflow: false,
            first_content: None,
            last_content: None,
            inter_token: Vec::new(),
            model: None,
            error_line: false,
            usage: Usage::default(),
            timings: (None, None),
            ollama: (None, None),
            native: (None, None),
            server_prefill: None,
            load_duration: None,
            finish: None,
            tool_call: false,
            done_marker: false,
            empty_model: false,
            ollama_fingerprint: false,
        }
    }

    /// Whether lines are read as they come (streams), rather than one document at the end.
    pub fn reads_lines(&self) -> bool {
        self.format != StreamFormat::Json
    }

    /// Takes the bytes of one body frame, arriving at `now`. Lines that lie whole in the frame
    /// are read where they are; only a line split across frames is copied.
    pub fn feed(&mut self, mut data: &[u8], now: Instant) {
        if self.format == StreamFormat::Json {
            self.keep(data);
            return;
        }
        while let Some(newline) = memchr::memchr(b'\n', data) {
            if self.kept.is_empty() && !self.overflow && newline <= MAX_KEPT {
                self.line(&data[..newline], now);
            } else {
                self.keep(&data[..newline]);
                let line = std::mem::take(&mut self.kept);
                if !std::mem::take(&mut self.overflow) {
                    self.line(&line, now);
                }
                self.kept = line;
                self.kept.clear();
            }
            data = &data[newline + 1..];
        }
        self.keep(data);
    }

    fn keep(&mut self, data: &[u8]) {
        if self.overflow {
            return;
        }
        if self.kept.len() + data.len() > MAX_KEPT {
            self.overflow = true;
            self.kept.clear();
        } else {
            self.kept.extend_from_slice(data);
        }
    }

    /// The body ended: a last line without a newline, or the whole JSON document.
    pub fn finish(&mut self, now: Instant) {
        let rest = std::mem::take(&mut self.kept);
        if !self.overflow && !rest.is_empty() {
            self.line(&rest, now);
        }
        // Ollama's `/v1` turns an error in the middle of a stream into a chunk with an empty
        // delta and `"model":""`, and ends the stream without `[DONE]`; its streams that
        // succeed always end with `[DONE]`.
        if self.format == StreamFormat::Sse && self.empty_model && !self.done_marker {
            self.error_line = true;
        }
    }

    fn line(&mut self, line: &[u8], now: Instant) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let payload = match self.format {
            StreamFormat::Sse => match line.strip_prefix(b"data:") {
                Some(p) => p.strip_prefix(b" ").unwrap_or(p),
                // Pings (`:`), `event:`/`id:` fields and blank separators carry no tokens.
                None => return,
            },
            StreamFormat::Ndjson | StreamFormat::Json => line,
        };
        if payload == b"[DONE]" {
            self.done_marker = true;
            return;
        }
        if payload.is_empty() {
            return;
        }
        // A line that is not the JSON we expect carries nothing we can count; it passes anyway.
        if let Some(chunk) = json::parse(payload) {
            self.chunk(&chunk, now);
        }
    }

    fn chunk(&mut self, chunk: &Chunk, now: Instant) {
        if chunk.model.is_some_and(|m| m.is_empty()) {
            // Not a name: the model label stays what the stream named before.
            self.empty_model = true;
        } else if let Some(model) = &chunk.model {
            let known = self.model.as_deref().map(str::as_bytes);
            if model.undecoded().is_none() || model.undecoded() != known {
                match model.decode() {
                    Some(name) => self.model = Some(name.into_owned()),
                    // Not UTF-8: not the JSON we expect, so the line counts for nothing.
                    None => return,
                }
            }
        }
        if chunk.error {
            self.error_line = true;
        }
        if self.format != StreamFormat::Json && chunk.content {
            match self.last_content {
                None => self.first_content = Some(now),
                Some(last) => self.inter_token.push((now - last).as_secs_f64()),
            }
            self.last_content = Some(now);
        }
        if let Some(u) = chunk.usage {
            let merge = |into: &mut Option<u64>, from: Option<u64>| {
                if from.is_some() {
                    *into = from;
                }
            };
            let m = &mut self.usage;
            merge(&mut m.prompt_tokens, u.prompt_tokens);
            merge(&mut m.completion_tokens, u.completion_tokens);
            merge(&mut m.input_tokens, u.input_tokens);
            merge(&mut m.output_tokens, u.output_tokens);
            merge(&mut m.cache_read_input_tokens, u.cache_read_input_tokens);
            merge(
                &mut m.cache_creation_input_tokens,
                u.cache_creation_input_tokens,
            );
            merge(&mut m.reasoning_tokens, u.reasoning_tokens);
        }
        if chunk.finish.is_some() {
            self.finish = chunk.finish;
        }
        self.tool_call |= chunk.tool_call;
        self.ollama_fingerprint |= chunk.ollama_fingerprint;
        if let Some(t) = &chunk.timings {
            let prompt = match (t.prompt_n, t.cache_n) {
                (None, None) => None,
                // Hostile numbers saturate rather than overflow.
                (p, c) => Some(p.unwrap_or(0).saturating_add(c.unwrap_or(0))),
            };
            self.timings = (prompt, t.predicted_n);
            // A negative prompt time would inflate the queue-time estimate (TTFT minus it).
            if let Some(ms) = t.prompt_ms.filter(|ms| *ms >= 0.0) {
                self.server_prefill = Some(ms / 1000.0);
            }
        }
        if chunk.done == Some(true) {
            self.ollama = (
                Some(chunk.prompt_eval_count.unwrap_or(0)),
                Some(chunk.eval_count.unwrap_or(0)),
            );
            let ns = chunk
                .load_duration
                .unwrap_or(0)
                .saturating_add(chunk.prompt_eval_duration.unwrap_or(0));
            self.server_prefill = Some(ns as f64 / 1e9);
        } else if chunk.done.is_none() && chunk.prompt_eval_count.is_some() {
            // /api/embed: no `done`, only the prompt count.
            self.ollama.0 = chunk.prompt_eval_count;
        }
        // Ollama's final line, or its /api/embed answer (which has no `done`).
        if let Some(load) = chunk.load_duration.filter(|ns| *ns > 0) {
            self.load_duration = Some(load as f64 / 1e9);
        }
        if chunk.stop == Some(true) {
            self.native = (chunk.tokens_evaluated, chunk.tokens_predicted);
        }
    }

    /// Reasoning tokens, where the server reports them apart.
    pub fn reasoning_tokens(&self) -> Option<u64> {
        self.usage.reasoning_tokens
    }

    /// Why the generation ended, as the server said it. Ollama's native API and the Responses
    /// stream say `stop` after a tool call: a tool call seen makes it `tool_calls`, as Ollama's
    /// own `/v1` does.
    pub fn finish_reason(&self) -> Option<FinishReason> {
        match self.finish {
            Some(FinishReason::Stop) if self.tool_call => Some(FinishReason::ToolCalls),
            other => other,
        }
    }

    pub fn ttft(&self) -> Option<f64> {
        self.first_content.map(|t| (t - self.started).as_secs_f64())
    }

    /// The server's own counts: `usage`, else `timings`, else Ollama's final line, else
    /// llama-server's native final chunk.
    pub fn tokens(&self) -> (Option<u64>, Option<u64>) {
        let u = &self.usage;
        // Anthropic's `input_tokens` leaves the cached part out; the Responses API's has no
        // such fields beside it. Either way the sum is the whole prompt, as `prompt_tokens` is.
        let input = u.input_tokens.map(|n| {
            n.saturating_add(u.cache_read_input_tokens.unwrap_or(0))
                .saturating_add(u.cache_creation_input_tokens.unwrap_or(0))
        });
        let usage = (
            u.prompt_tokens.or(input),
            u.completion_tokens.or(u.output_tokens),
        );
        let sources = [usage, self.timings, self.ollama, self.native];
        let prompt = sources.iter().find_map(|s| s.0);
        let generated = sources.iter().find_map(|s| s.1);
        (prompt, generated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A recorded answer: llm-exporter's fixtures, which its end-to-end proxy tests serve too.
    fn fixture(name: &str) -> Vec<u8> {
        let path = format!(
            "{}/../llm-exporter/tests/fixtures/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// Feeds a body event by event (split at blank lines or newlines), 10 ms apart.
    fn run(format: StreamFormat, body: &[u8], split: &[u8]) -> Observer {
        let t0 = Instant::now();
        let mut o = Observer::new(format, t0);
        let mut at = t0;
        let mut rest = body;
        while !rest.is_empty() {
            let end = rest
                .windows(split.len())
                .position(|w| w == split)
                .map(|p| p + split.len())
                .unwrap_or(rest.len());
            at += Duration::from_millis(10);
            o.feed(&rest[..end], at);
            rest = &rest[end..];
        }
        o.finish(at);
        o
    }

    #[test]
    fn openai_stream_ttft_skips_the_role_chunk_and_counts_from_timings() {
        let body = fixture("llama-server/v1-chat-completions-stream.body");
        let o = run(StreamFormat::Sse, &body, b"\n\n");
        // Chunk 1 is role-only; the first content arrives with the second event.
        assert_eq!(o.ttft(), Some(0.02));
        assert_eq!(o.tokens(), (Some(31), Some(12)));
        assert!((o.server_prefill.unwrap() - 0.002476).abs() < 1e-9);
        assert_eq!(
            o.model.as_deref(),
            Some("/var/lib/llama-server/model/tiny-random-llama.gguf")
        );
        assert!(!o.error_line);
        assert!(!o.inter_token.is_empty());
    }

    #[test]
    fn native_stream_without_done_and_split_mid_line() {
        let body = fixture("llama-server/completion-stream.body");
        let t0 = Instant::now();
        let mut o = Observer::new(StreamFormat::Sse, t0);
        for (i, piece) in body.chunks(7).enumerate() {
            o.feed(piece, t0 + Duration::from_millis(i as u64));
        }
        o.finish(t0 + Duration::from_secs(1));
        assert_eq!(o.tokens(), (Some(6), Some(8)));
        assert!(o.ttft().is_some());
    }

    #[test]
    fn ollama_ndjson_final_line_and_error_line() {
        let o = run(
            StreamFormat::Ndjson,
            &fixture("ollama/generate-stream.body"),
            b"\n",
        );
        assert_eq!(o.tokens(), (Some(26), Some(5)));
        assert_eq!(o.ttft(), Some(0.01));
        assert_eq!(o.inter_token.len(), 4);
        assert!((o.server_prefill.unwrap() - 0.065868333).abs() < 1e-9);
        let o = run(
            StreamFormat::Ndjson,
            &fixture("ollama/chat-stream-error.body"),
            b"\n",
        );
        assert!(o.error_line);
        assert_eq!(o.tokens(), (None, None));
    }

    #[test]
    fn whole_json_documents_count_tokens_but_no_ttft() {
        let o = run(
            StreamFormat::Json,
            &fixture("llama-server/v1-chat-completions.body"),
            b"\n",
        );
        assert_eq!(o.tokens(), (Some(52), Some(24)));
        assert_eq!(o.ttft(), None);
        let o = run(StreamFormat::Json, &fixture("ollama/chat.body"), b"\n");
        assert_eq!(o.tokens(), (Some(169), Some(15)));
        let o = run(StreamFormat::Json, b"{\"truncated\": [1,2", b"\n");
        assert_eq!(o.tokens(), (None, None));
    }

    #[test]
    fn hostile_numbers_saturate_instead_of_overflowing() {
        let max = u64::MAX;
        let body = format!(
            "data: {{\"choices\":[{{\"delta\":{{\"content\":\"x\"}}}}],\"timings\":{{\"prompt_n\":{max},\"cache_n\":{max},\"predicted_n\":{max},\"prompt_ms\":1e308}}}}\n\n"
        );
        let o = run(StreamFormat::Sse, body.as_bytes(), b"\n\n");
        assert_eq!(o.tokens(), (Some(max), Some(max)));
        let line = format!(
            "{{\"model\":\"m\",\"done\":true,\"prompt_eval_count\":{max},\"eval_count\":{max},\"load_duration\":{max},\"prompt_eval_duration\":{max}}}\n"
        );
        let o = run(StreamFormat::Ndjson, line.as_bytes(), b"\n");
        assert_eq!(o.tokens(), (Some(max), Some(max)));
        assert!(o.server_prefill.unwrap() > 1.8e10);
        // Beyond u64: not the JSON we expect, so nothing is counted, and nothing breaks.
        let o = run(
            StreamFormat::Ndjson,
            b"{\"done\":true,\"eval_count\":1e400,\"prompt_eval_count\":-1}\n",
            b"\n",
        );
        assert_eq!(o.tokens(), (None, None));
        // A negative prompt time is no prompt time.
        let body = b"data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}],\"timings\":{\"prompt_ms\":-5000}}\n\n";
        let o = run(StreamFormat::Sse, body, b"\n\n");
        assert_eq!(o.server_prefill, None);
    }

    #[test]
    fn content_kinds_escapes_and_type_checks() {
        // Each line alone: is it a content event, and which model does it name?
        let content = |line: &str| {
            let o = run(StreamFormat::Ndjson, format!("{line}\n").as_bytes(), b"\n");
            (o.ttft().is_some(), o.model.clone())
        };
        let chat = |delta: &str| format!("{{\"choices\":[{{\"delta\":{delta}}}]}}");
        assert!(content(&chat(r#"{"tool_calls":[{"id":"x"}]}"#)).0);
        assert!(!content(&chat(r#"{"tool_calls":[]}"#)).0);
        assert!(content(&chat(r#"{"reasoning_content":"r"}"#)).0);
        assert!(!content(&chat(r#"{"content":null}"#)).0);
        assert!(content(r#"{"choices":[{"text":""},{"text":"t"}]}"#).0);
        assert!(!content(r#"{"choices":[]}"#).0);
        assert!(content(r#"{"message":{"thinking":"t"}}"#).0);
        assert!(content(r#"{"response":"a\nb"}"#).0);
        // A model name with escapes is decoded, one without is taken as it is.
        assert_eq!(
            content(r#"{"model":"a\/b\u00e9","content":"x"}"#),
            (true, Some("a/b\u{e9}".to_string()))
        );
        assert_eq!(
            content(r#"{"model":"m","content":""}"#),
            (false, Some("m".to_string()))
        );
        // A line whose fields have the wrong types is not the JSON we expect: nothing counts.
        for line in [
            r#"{"content":5}"#,
            r#"{"content":"x","model":7}"#,
            r#"{"choices":{"text":"x"}}"#,
            r#"{"choices":[{"delta":{"content":"x","tool_calls":{}}}]}"#,
            r#"{"content":"x","usage":{"prompt_tokens":"1"}}"#,
            r#"{"content":"x","content":"y"}"#,
            r#"{"content":"x""#,
        ] {
            assert_eq!(content(line), (false, None), "{line}");
        }
    }

    #[test]
    fn a_reasoning_token_of_any_spelling_is_the_first_token() {
        // Each API's first reasoning chunk, then an answer chunk: TTFT is at the first (10 ms).
        let chat = |delta: &str| {
            format!("data: {{\"model\":\"m\",\"choices\":[{{\"index\":0,\"delta\":{delta},\"finish_reason\":null}}]}}\n\n")
        };
        for first in [
            // Ollama's /v1 and vLLM.
            chat(r#"{"role":"assistant","content":"","reasoning":"Let"}"#),
            // llama-server.
            chat(r#"{"reasoning_content":"Let"}"#),
            // A tool call before any text.
            chat(
                r#"{"tool_calls":[{"index":0,"id":"c","type":"function","function":{"name":"f","arguments":""}}]}"#,
            ),
        ] {
            let body = [first, chat(r#"{"content":"Hi"}"#)].concat();
            let o = run(StreamFormat::Sse, body.as_bytes(), b"\n\n");
            assert_eq!(o.ttft(), Some(0.01), "{body}");
            assert_eq!(o.inter_token.len(), 1);
        }
        // Ollama's native API: `message.thinking` (chat) and `thinking` (generate).
        for first in [
            r#"{"model":"m","message":{"role":"assistant","content":"","thinking":"Let"},"done":false}"#,
            r#"{"model":"m","response":"","thinking":"Let","done":false}"#,
        ] {
            let body = format!("{first}\n{{\"model\":\"m\",\"response\":\"Hi\",\"done\":false}}\n");
            let o = run(StreamFormat::Ndjson, body.as_bytes(), b"\n");
            assert_eq!(o.ttft(), Some(0.01), "{body}");
        }
        // Anthropic thinking blocks and a Responses reasoning delta.
        for first in [
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"Let"}}"#,
            r#"{"type":"response.reasoning_text.delta","item_id":"r","delta":"Let"}"#,
        ] {
            let body = format!("data: {first}\n\ndata: {{\"type\":\"x\",\"delta\":\"Hi\"}}\n\n");
            let o = run(StreamFormat::Sse, body.as_bytes(), b"\n\n");
            assert_eq!(o.ttft(), Some(0.01), "{body}");
        }
        // The role chunk and empty reasoning are not tokens.
        let body = [
            chat(r#"{"role":"assistant","content":"","reasoning":""}"#),
            chat(r#"{"content":"Hi"}"#),
        ]
        .concat();
        assert_eq!(
            run(StreamFormat::Sse, body.as_bytes(), b"\n\n").ttft(),
            Some(0.02)
        );
    }

    #[test]
    fn reasoning_tokens_are_read_where_the_server_reports_them() {
        let body = b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":40,\"completion_tokens_details\":{\"reasoning_tokens\":31}}}\n\ndata: [DONE]\n\n";
        let o = run(StreamFormat::Sse, body, b"\n\n");
        assert_eq!(
            (o.tokens(), o.reasoning_tokens()),
            ((Some(9), Some(40)), Some(31))
        );
        let body = br#"{"status":"completed","usage":{"input_tokens":5,"output_tokens":20,"output_tokens_details":{"reasoning_tokens":12}}}"#;
        let o = run(StreamFormat::Json, body, b"\n");
        assert_eq!(
            (o.tokens(), o.reasoning_tokens()),
            ((Some(5), Some(20)), Some(12))
        );
        let o = run(
            StreamFormat::Sse,
            &fixture("llama-server/v1-chat-completions-stream.body"),
            b"\n\n",
        );
        assert_eq!(o.reasoning_tokens(), None);
    }

    #[test]
    fn the_recorded_messages_api_answers_are_measured_like_chat() {
        let o = run(
            StreamFormat::Json,
            &fixture("llama-server/messages.body"),
            b"\n",
        );
        assert_eq!(o.tokens(), (Some(31), Some(8)));
        assert_eq!(o.finish_reason(), Some(FinishReason::Length));
        assert_eq!(o.ttft(), None);
        assert_eq!(
            o.model.as_deref(),
            Some("/var/lib/llama-server/model/tiny-random-llama.gguf/////////////")
        );
        // Streamed: the input count (1 + 30 cached) at the start, the output count at the end.
        let o = run(
            StreamFormat::Sse,
            &fixture("llama-server/messages-stream.body"),
            b"\n\n",
        );
        assert_eq!(o.tokens(), (Some(31), Some(8)));
        assert_eq!(o.finish_reason(), Some(FinishReason::Length));
        // Events: message_start, content_block_start, then the first text delta (the 3rd).
        assert_eq!(o.ttft(), Some(0.03));
        assert_eq!(o.inter_token.len(), 7);
        assert!(!o.error_line);
        assert!(o.model.is_some());
        // An error event.
        let body = b"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n";
        assert!(run(StreamFormat::Sse, body, b"\n\n").error_line);
        // A tool call: the input's first piece is a token.
        let body = b"data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"a\"}}\n\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":3}}\n\n";
        let o = run(StreamFormat::Sse, body, b"\n\n");
        assert_eq!(o.ttft(), Some(0.01));
        assert_eq!(o.finish_reason(), Some(FinishReason::ToolCalls));
    }

    #[test]
    fn the_recorded_responses_api_answers_are_measured_like_chat() {
        let o = run(
            StreamFormat::Json,
            &fixture("llama-server/responses.body"),
            b"\n",
        );
        assert_eq!(o.tokens(), (Some(31), Some(8)));
        assert_eq!(o.finish_reason(), Some(FinishReason::Stop));
        assert!(o.model.is_some() && !o.error_line);
        let o = run(
            StreamFormat::Sse,
            &fixture("llama-server/responses-stream.body"),
            b"\n\n",
        );
        assert_eq!(o.tokens(), (Some(31), Some(8)));
        assert_eq!(o.finish_reason(), Some(FinishReason::Stop));
        // created, in_progress, output_item.added, content_part.added, then the first delta.
        assert_eq!(o.ttft(), Some(0.05));
        // 8 deltas; the `done` events repeat the text and are not tokens.
        assert_eq!(o.inter_token.len(), 7);
        assert!((o.server_prefill.unwrap() - 0.000926).abs() < 1e-9);
        assert_eq!(
            o.model.as_deref(),
            Some("/var/lib/llama-server/model/tiny-random-llama.gguf/////////////")
        );
        // Cut by the token limit, failed, or a function call.
        for (end, want) in [
            (
                r#""status":"incomplete","incomplete_details":{"reason":"max_output_tokens"}"#,
                FinishReason::Length,
            ),
            (
                r#""status":"failed","error":{"code":"server_error","message":"x"}"#,
                FinishReason::Error,
            ),
            (
                r#""status":"completed","output":[{"type":"function_call","call_id":"c","name":"f","arguments":"{}"}]"#,
                FinishReason::ToolCalls,
            ),
        ] {
            let body = format!("{{\"object\":\"response\",\"model\":\"m\",{end}}}");
            let o = run(StreamFormat::Json, body.as_bytes(), b"\n");
            assert_eq!(o.finish_reason(), Some(want), "{body}");
            assert_eq!(o.error_line, want == FinishReason::Error, "{body}");
        }
        let body = b"event: response.failed\ndata: {\"type\":\"response.failed\",\"response\":{\"status\":\"failed\",\"error\":{\"code\":\"server_error\",\"message\":\"x\"}}}\n\n";
        let o = run(StreamFormat::Sse, body, b"\n\n");
        assert!(o.error_line);
        assert_eq!(o.finish_reason(), Some(FinishReason::Error));
        let body = b"event: error\ndata: {\"type\":\"error\",\"code\":\"ERR\",\"message\":\"x\",\"param\":null}\n\n";
        assert!(run(StreamFormat::Sse, body, b"\n\n").error_line);
    }

    #[test]
    fn the_recorded_include_usage_chat_stream_counts_its_usage_chunk() {
        let o = run(
            StreamFormat::Sse,
            &fixture("llama-server/v1-chat-completions-stream-include-usage.body"),
            b"\n\n",
        );
        assert_eq!(o.tokens(), (Some(31), Some(8)));
        assert_eq!(o.finish_reason(), Some(FinishReason::Length));
        assert_eq!(o.ttft(), Some(0.02));
        assert_eq!(o.inter_token.len(), 7);
        assert!(!o.error_line);
    }

    #[test]
    fn finish_reasons_and_model_loads_of_each_api() {
        // Ollama: `done_reason`, and the load it waited for (absent when already loaded).
        let o = run(
            StreamFormat::Ndjson,
            &fixture("ollama/generate-stream.body"),
            b"\n",
        );
        assert_eq!(o.finish_reason(), Some(FinishReason::Stop));
        assert!((o.load_duration.unwrap() - 0.041295167).abs() < 1e-12);
        let line = b"{\"model\":\"m\",\"done\":true,\"done_reason\":\"length\",\"eval_count\":3}\n";
        let o = run(StreamFormat::Ndjson, line, b"\n");
        assert_eq!(
            (o.finish_reason(), o.load_duration),
            (Some(FinishReason::Length), None)
        );
        // Ollama's native tool call ends with `stop`: it is a tool call.
        let body = b"{\"model\":\"m\",\"message\":{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":[{\"function\":{\"name\":\"f\",\"arguments\":{}}}]},\"done\":false}\n{\"model\":\"m\",\"message\":{\"role\":\"assistant\",\"content\":\"\"},\"done\":true,\"done_reason\":\"stop\"}\n";
        let o = run(StreamFormat::Ndjson, body, b"\n");
        assert_eq!(o.finish_reason(), Some(FinishReason::ToolCalls));
        // llama-server: OpenAI's `finish_reason`, and `stop_type` natively.
        let o = run(
            StreamFormat::Json,
            &fixture("llama-server/v1-chat-completions.body"),
            b"\n",
        );
        assert!(o.finish_reason().is_some());
        let o = run(
            StreamFormat::Sse,
            &fixture("llama-server/completion-stream.body"),
            b"\n\n",
        );
        assert_eq!(o.finish_reason(), Some(FinishReason::Length));
        // Embeddings name none, but report a load too.
        let o = run(StreamFormat::Json, &fixture("ollama/embed.body"), b"\n");
        assert_eq!(o.finish_reason(), None);
        assert!((o.load_duration.unwrap() - 0.0010195).abs() < 1e-12);
    }

    #[test]
    fn ollama_v1_error_mid_stream_is_a_stream_error_and_keeps_the_model() {
        // What Ollama's /v1 writes when the generation fails after the first chunk: the error
        // becomes a chunk with an empty delta and `"model":""`, and no `[DONE]` follows.
        let chunk = |model: &str, content: &str| {
            format!("data: {{\"id\":\"chatcmpl-7\",\"object\":\"chat.completion.chunk\",\"created\":1751919739,\"model\":\"{model}\",\"system_fingerprint\":\"fp_ollama\",\"choices\":[{{\"index\":0,\"delta\":{{\"role\":\"assistant\",\"content\":\"{content}\"}},\"finish_reason\":null}}]}}\n\n")
        };
        let body = [chunk("qwen3:8b", "Hi"), chunk("", "")].concat();
        let o = run(StreamFormat::Sse, body.as_bytes(), b"\n\n");
        assert!(o.error_line);
        assert_eq!(o.model.as_deref(), Some("qwen3:8b"));
        // The same stream ended by `[DONE]` is not an error.
        let body = [chunk("qwen3:8b", "Hi"), "data: [DONE]\n\n".to_string()].concat();
        assert!(!run(StreamFormat::Sse, body.as_bytes(), b"\n\n").error_line);
    }

    #[test]
    fn lines_split_anywhere_read_the_same() {
        let body = fixture("llama-server/v1-chat-completions-stream.body");
        let whole = run(StreamFormat::Sse, &body, b"\n\n");
        let t0 = Instant::now();
        for size in [1, 3, 8, 9, 64, 4096] {
            let mut o = Observer::new(StreamFormat::Sse, t0);
            for piece in body.chunks(size) {
                o.feed(piece, t0);
            }
            o.finish(t0);
            assert_eq!(o.tokens(), whole.tokens(), "{size}");
            assert_eq!(o.model, whole.model, "{size}");
            assert_eq!(o.inter_token.len(), whole.inter_token.len(), "{size}");
        }
    }

    #[test]
    fn pings_and_garbage_are_ignored() {
        let body = b": ping\n\ndata: not json\n\ndata: {\"choices\":[{\"delta\":{\"content\":\"\"}}]}\n\ndata: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\n\n";
        let o = run(StreamFormat::Sse, body, b"\n\n");
        assert_eq!(o.ttft(), Some(0.04));
        assert_eq!(
            StreamFormat::from_content_type("text/event-stream; charset=utf-8"),
            Some(StreamFormat::Sse)
        );
        assert_eq!(
            StreamFormat::from_content_type(" Application/X-NDJSON ;charset=utf-8"),
            Some(StreamFormat::Ndjson)
        );
        assert_eq!(StreamFormat::from_content_type("text/html"), None);
    }
}
