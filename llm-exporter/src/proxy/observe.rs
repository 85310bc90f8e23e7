//! Reading a response as it passes, without holding it back: SSE (`data: {…}` events, `:` pings,
//! `[DONE]`), Ollama's NDJSON, or one JSON document. It notes when the first content token came
//! (not the role-only chunk, not a ping), the gaps between content chunks, the model the server
//! named, the token counts the server reported, and error lines.

use super::chunk::{self, Chunk};
use tokio::time::Instant;

/// Longest line or document kept for parsing; longer ones pass through unread.
const MAX_KEPT: usize = 8 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    Sse,
    Ndjson,
    Json,
}

impl Framing {
    pub fn from_content_type(content_type: &str) -> Option<Framing> {
        let mime = content_type.split(';').next().unwrap_or("").trim();
        let is = |name: &str| mime.eq_ignore_ascii_case(name);
        if is("text/event-stream") {
            Some(Framing::Sse)
        } else if is("application/x-ndjson") || is("application/ndjson") || is("application/jsonl")
        {
            Some(Framing::Ndjson)
        } else if is("application/json") {
            Some(Framing::Json)
        } else {
            None
        }
    }
}

/// What one response told us.
#[derive(Debug)]
pub struct Observer {
    framing: Framing,
    started: Instant,
    kept: Vec<u8>,
    /// The current line or document grew past MAX_KEPT: skip it.
    overflow: bool,
    first_content: Option<Instant>,
    last_content: Option<Instant>,
    pub inter_token: Vec<f64>,
    pub model: Option<String>,
    pub error_line: bool,
    usage: (Option<u64>, Option<u64>),
    timings: (Option<u64>, Option<u64>),
    ollama: (Option<u64>, Option<u64>),
    native: (Option<u64>, Option<u64>),
    pub server_prefill: Option<f64>,
}

impl Observer {
    pub fn new(framing: Framing, started: Instant) -> Self {
        Observer {
            framing,
            started,
            kept: Vec::new(),
            overflow: false,
            first_content: None,
            last_content: None,
            inter_token: Vec::new(),
            model: None,
            error_line: false,
            usage: (None, None),
            timings: (None, None),
            ollama: (None, None),
            native: (None, None),
            server_prefill: None,
        }
    }

    /// Whether lines are read as they come (streams), rather than one document at the end.
    pub fn reads_lines(&self) -> bool {
        self.framing != Framing::Json
    }

    /// Takes the bytes of one body frame, arriving at `now`. Lines that lie whole in the frame
    /// are read where they are; only a line split across frames is copied.
    pub fn feed(&mut self, mut data: &[u8], now: Instant) {
        if self.framing == Framing::Json {
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
    }

    fn line(&mut self, line: &[u8], now: Instant) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let payload = match self.framing {
            Framing::Sse => match line.strip_prefix(b"data:") {
                Some(p) => p.strip_prefix(b" ").unwrap_or(p),
                // Pings (`:`), `event:`/`id:` fields and blank separators carry no tokens.
                None => return,
            },
            Framing::Ndjson | Framing::Json => line,
        };
        if payload.is_empty() || payload == b"[DONE]" {
            return;
        }
        // A line that is not the JSON we expect carries nothing we can count; it passes anyway.
        if let Some(chunk) = chunk::parse(payload) {
            self.chunk(&chunk, now);
        }
    }

    fn chunk(&mut self, chunk: &Chunk, now: Instant) {
        if let Some(model) = &chunk.model {
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
        if self.framing != Framing::Json && chunk.content {
            match self.last_content {
                None => self.first_content = Some(now),
                Some(last) => self.inter_token.push((now - last).as_secs_f64()),
            }
            self.last_content = Some(now);
        }
        if let Some(u) = chunk.usage {
            self.usage = u;
        }
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
        if chunk.stop == Some(true) {
            self.native = (chunk.tokens_evaluated, chunk.tokens_predicted);
        }
    }

    pub fn ttft(&self) -> Option<f64> {
        self.first_content.map(|t| (t - self.started).as_secs_f64())
    }

    /// The server's own counts: `usage`, else `timings`, else Ollama's final line, else
    /// llama-server's native final chunk.
    pub fn tokens(&self) -> (Option<u64>, Option<u64>) {
        let sources = [self.usage, self.timings, self.ollama, self.native];
        let prompt = sources.iter().find_map(|s| s.0);
        let generated = sources.iter().find_map(|s| s.1);
        (prompt, generated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// Feeds a body event by event (split at blank lines or newlines), 10 ms apart.
    fn run(framing: Framing, body: &[u8], split: &[u8]) -> Observer {
        let t0 = Instant::now();
        let mut o = Observer::new(framing, t0);
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
        let o = run(Framing::Sse, &body, b"\n\n");
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
        let mut o = Observer::new(Framing::Sse, t0);
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
            Framing::Ndjson,
            &fixture("ollama/generate-stream.body"),
            b"\n",
        );
        assert_eq!(o.tokens(), (Some(26), Some(5)));
        assert_eq!(o.ttft(), Some(0.01));
        assert_eq!(o.inter_token.len(), 4);
        assert!((o.server_prefill.unwrap() - 0.065868333).abs() < 1e-9);
        let o = run(
            Framing::Ndjson,
            &fixture("ollama/chat-stream-error.body"),
            b"\n",
        );
        assert!(o.error_line);
        assert_eq!(o.tokens(), (None, None));
    }

    #[test]
    fn whole_json_documents_count_tokens_but_no_ttft() {
        let o = run(
            Framing::Json,
            &fixture("llama-server/v1-chat-completions.body"),
            b"\n",
        );
        assert_eq!(o.tokens(), (Some(52), Some(24)));
        assert_eq!(o.ttft(), None);
        let o = run(Framing::Json, &fixture("ollama/chat.body"), b"\n");
        assert_eq!(o.tokens(), (Some(169), Some(15)));
        let o = run(Framing::Json, b"{\"truncated\": [1,2", b"\n");
        assert_eq!(o.tokens(), (None, None));
    }

    #[test]
    fn hostile_numbers_saturate_instead_of_overflowing() {
        let max = u64::MAX;
        let body = format!(
            "data: {{\"choices\":[{{\"delta\":{{\"content\":\"x\"}}}}],\"timings\":{{\"prompt_n\":{max},\"cache_n\":{max},\"predicted_n\":{max},\"prompt_ms\":1e308}}}}\n\n"
        );
        let o = run(Framing::Sse, body.as_bytes(), b"\n\n");
        assert_eq!(o.tokens(), (Some(max), Some(max)));
        let line = format!(
            "{{\"model\":\"m\",\"done\":true,\"prompt_eval_count\":{max},\"eval_count\":{max},\"load_duration\":{max},\"prompt_eval_duration\":{max}}}\n"
        );
        let o = run(Framing::Ndjson, line.as_bytes(), b"\n");
        assert_eq!(o.tokens(), (Some(max), Some(max)));
        assert!(o.server_prefill.unwrap() > 1.8e10);
        // Beyond u64: not the JSON we expect, so nothing is counted, and nothing breaks.
        let o = run(
            Framing::Ndjson,
            b"{\"done\":true,\"eval_count\":1e400,\"prompt_eval_count\":-1}\n",
            b"\n",
        );
        assert_eq!(o.tokens(), (None, None));
        // A negative prompt time is no prompt time.
        let body = b"data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}],\"timings\":{\"prompt_ms\":-5000}}\n\n";
        let o = run(Framing::Sse, body, b"\n\n");
        assert_eq!(o.server_prefill, None);
    }

    #[test]
    fn content_kinds_escapes_and_type_checks() {
        // Each line alone: is it a content event, and which model does it name?
        let content = |line: &str| {
            let o = run(Framing::Ndjson, format!("{line}\n").as_bytes(), b"\n");
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
    fn lines_split_anywhere_read_the_same() {
        let body = fixture("llama-server/v1-chat-completions-stream.body");
        let whole = run(Framing::Sse, &body, b"\n\n");
        let t0 = Instant::now();
        for size in [1, 3, 8, 9, 64, 4096] {
            let mut o = Observer::new(Framing::Sse, t0);
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
        let o = run(Framing::Sse, body, b"\n\n");
        assert_eq!(o.ttft(), Some(0.04));
        assert_eq!(
            Framing::from_content_type("text/event-stream; charset=utf-8"),
            Some(Framing::Sse)
        );
        assert_eq!(
            Framing::from_content_type(" Application/X-NDJSON ;charset=utf-8"),
            Some(Framing::Ndjson)
        );
        assert_eq!(Framing::from_content_type("text/html"), None);
    }
}
