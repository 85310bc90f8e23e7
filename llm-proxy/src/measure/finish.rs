//! Why a generation ended, as one bounded label value whatever the API calls it: OpenAI's
//! `finish_reason`, Anthropic's `stop_reason`, the Responses API's `status` with
//! `incomplete_details.reason`, Ollama's `done_reason`, llama-server's native `stop_type`. A
//! spelling not listed here is `other`, so a server cannot grow the label's values.

/// The `finish_reason` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum FinishReason {
    /// The model ended its answer (or hit a stop sequence).
    Stop,
    /// Cut by a token limit: the answer is truncated.
    Length,
    /// The model called a tool.
    ToolCalls,
    /// Refused or filtered.
    ContentFilter,
    /// The request failed (any error kind).
    Error,
    /// Anything else a server reported.
    Other,
}

impl FinishReason {
    pub fn label(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::ToolCalls => "tool_calls",
            FinishReason::ContentFilter => "content_filter",
            FinishReason::Error => "error",
            FinishReason::Other => "other",
        }
    }

    /// OpenAI's `finish_reason` (chat and text completions: llama-server, vLLM, Ollama's `/v1`,
    /// LM Studio), and Ollama's native `done_reason`, which uses the same words.
    pub fn openai(raw: &[u8]) -> FinishReason {
        match raw {
            b"stop" => FinishReason::Stop,
            b"length" => FinishReason::Length,
            b"tool_calls" | b"function_call" => FinishReason::ToolCalls,
            b"content_filter" => FinishReason::ContentFilter,
            // vLLM ends an aborted request with `abort`.
            b"error" | b"abort" => FinishReason::Error,
            _ => FinishReason::Other,
        }
    }

    /// The Anthropic Messages API's `stop_reason`.
    pub fn anthropic(raw: &[u8]) -> FinishReason {
        match raw {
            b"end_turn" | b"stop_sequence" => FinishReason::Stop,
            b"max_tokens" | b"model_context_window_exceeded" => FinishReason::Length,
            b"tool_use" => FinishReason::ToolCalls,
            b"refusal" => FinishReason::ContentFilter,
            _ => FinishReason::Other,
        }
    }

    /// llama-server's native `/completion` `stop_type`.
    pub fn llama_stop_type(raw: &[u8]) -> FinishReason {
        match raw {
            b"eos" | b"word" => FinishReason::Stop,
            b"limit" => FinishReason::Length,
            _ => FinishReason::Other,
        }
    }

    /// The Responses API's `status` (with `incomplete_details.reason` when incomplete, and
    /// whether the output holds a function call); `None` while the response is not final.
    pub fn responses(status: &[u8], incomplete: Option<&[u8]>, tool_call: bool) -> Option<Self> {
        Some(match status {
            b"completed" if tool_call => FinishReason::ToolCalls,
            b"completed" => FinishReason::Stop,
            b"incomplete" => match incomplete {
                Some(b"max_output_tokens") => FinishReason::Length,
                Some(b"content_filter") => FinishReason::ContentFilter,
                _ => FinishReason::Other,
            },
            b"failed" => FinishReason::Error,
            b"queued" | b"in_progress" => return None,
            _ => FinishReason::Other,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use FinishReason::*;

    #[test]
    fn every_api_spelling_maps_to_one_bounded_value() {
        for (raw, want) in [
            (&b"stop"[..], Stop),
            (b"length", Length),
            (b"tool_calls", ToolCalls),
            (b"function_call", ToolCalls),
            (b"content_filter", ContentFilter),
            (b"abort", Error),
            (b"load", Other),
            (b"", Other),
        ] {
            assert_eq!(FinishReason::openai(raw), want, "{raw:?}");
        }
        for (raw, want) in [
            (&b"end_turn"[..], Stop),
            (b"stop_sequence", Stop),
            (b"max_tokens", Length),
            (b"tool_use", ToolCalls),
            (b"refusal", ContentFilter),
            (b"pause_turn", Other),
        ] {
            assert_eq!(FinishReason::anthropic(raw), want, "{raw:?}");
        }
        for (raw, want) in [(&b"eos"[..], Stop), (b"word", Stop), (b"limit", Length)] {
            assert_eq!(FinishReason::llama_stop_type(raw), want);
        }
        let r = FinishReason::responses;
        assert_eq!(r(b"completed", None, false), Some(Stop));
        assert_eq!(r(b"completed", None, true), Some(ToolCalls));
        assert_eq!(
            r(b"incomplete", Some(b"max_output_tokens"), false),
            Some(Length)
        );
        assert_eq!(
            r(b"incomplete", Some(b"content_filter"), false),
            Some(ContentFilter)
        );
        assert_eq!(r(b"incomplete", None, false), Some(Other));
        assert_eq!(r(b"failed", None, false), Some(Error));
        assert_eq!(r(b"in_progress", None, false), None);
        let labels: Vec<&str> = [Stop, Length, ToolCalls, ContentFilter, Error, Other]
            .iter()
            .map(|f| f.label())
            .collect();
        assert_eq!(
            labels,
            [
                "stop",
                "length",
                "tool_calls",
                "content_filter",
                "error",
                "other"
            ]
        );
    }
}
