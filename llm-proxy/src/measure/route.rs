//! Which requests are inference requests worth measuring, and one route label for each API
//! spelling (llama-server accepts `/chat/completions` and `/v1/chat/completions` alike). The
//! Anthropic Messages API (`/v1/messages`) and the OpenAI Responses API (`/v1/responses`) are
//! served by llama-server, Ollama, vLLM and LM Studio, and used by coding agents.

use hyper::Method;

pub fn inference_route(method: &Method, path: &str) -> Option<&'static str> {
    if method != Method::POST {
        return None;
    }
    let path = path.trim_end_matches('/');
    Some(match path {
        "/v1/chat/completions" | "/chat/completions" => "/v1/chat/completions",
        "/v1/completions" | "/completions" => "/v1/completions",
        "/v1/embeddings" | "/embeddings" => "/v1/embeddings",
        "/v1/messages" => "/v1/messages",
        "/v1/responses" => "/v1/responses",
        "/completion" => "/completion",
        "/embedding" => "/embedding",
        "/infill" => "/infill",
        "/api/generate" => "/api/generate",
        "/api/chat" => "/api/chat",
        "/api/embed" => "/api/embed",
        "/api/embeddings" => "/api/embeddings",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_share_a_label_and_other_routes_pass_unmeasured() {
        assert_eq!(
            inference_route(&Method::POST, "/chat/completions"),
            Some("/v1/chat/completions")
        );
        assert_eq!(
            inference_route(&Method::POST, "/api/chat/"),
            Some("/api/chat")
        );
        assert_eq!(inference_route(&Method::GET, "/api/chat"), None);
        assert_eq!(
            inference_route(&Method::POST, "/v1/messages"),
            Some("/v1/messages")
        );
        assert_eq!(
            inference_route(&Method::POST, "/v1/responses"),
            Some("/v1/responses")
        );
        // Token counting is not a generation.
        assert_eq!(
            inference_route(&Method::POST, "/v1/messages/count_tokens"),
            None
        );
        assert_eq!(inference_route(&Method::POST, "/api/pull"), None);
        assert_eq!(
            inference_route(&Method::POST, "/v1/chat/completionsX"),
            None
        );
    }
}
