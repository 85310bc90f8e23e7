//! Telling the model servers apart. Several imitate each other, so no single route proves
//! anything: llama-server also answers Ollama's `/api/tags` and `/api/chat`; KoboldCpp answers
//! Ollama's `/api/version` (always `0.7.0`), `/api/tags`, `/api/ps` and llama-server's `/props`.
//! What does tell them apart: llama-server sends `Server: llama.cpp` on every answer and has
//! `/props` with its `build_info`; Ollama answers `GET /` with `Ollama is running` and has
//! `/api/version`; KoboldCpp names itself in `/api/extra/version` (`"result":"KoboldCpp"`).
//! Any other server that answers `GET /v1/models` with a model list speaks the OpenAI API
//! (vLLM, SGLang, LM Studio, llama-swap, LocalAI, TabbyAPI, ...).

use crate::config::Backend;
use crate::upstream::{FetchError, Reply, Upstream};
use hyper::StatusCode;
use tokio::time::Instant;

#[derive(Debug, PartialEq)]
pub enum DetectError {
    Fetch(FetchError),
    /// The upstream answered 401/403: it sits behind auth we lack the key for.
    Unauthorized,
    /// It answered, but like none of the backends.
    Unrecognized(String),
}

fn says_llama(reply: &Reply) -> bool {
    reply
        .header("server")
        .is_some_and(|s| s.to_ascii_lowercase().contains("llama.cpp"))
}

fn json_body(reply: &Reply) -> Option<serde_json::Value> {
    if reply.status != StatusCode::OK {
        return None;
    }
    serde_json::from_slice(&reply.body).ok()
}

fn refused(reply: &Reply) -> bool {
    matches!(
        reply.status,
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
    )
}

pub async fn detect(upstream: &Upstream, deadline: Instant) -> Result<Backend, DetectError> {
    let get = |path: &'static str| async move {
        upstream
            .get(path, deadline)
            .await
            .map_err(DetectError::Fetch)
    };
    let root = get("/").await?;
    if says_llama(&root) {
        return Ok(Backend::LlamaCpp);
    }
    if root.body.starts_with(b"Ollama is running") {
        return Ok(Backend::Ollama);
    }
    if refused(&root) {
        return Err(DetectError::Unauthorized);
    }
    // Behind a reverse proxy that hides the Server header or serves its own `/`.
    let version = get("/api/version").await?;
    if says_llama(&version) {
        return Ok(Backend::LlamaCpp);
    }
    if json_body(&version).is_some_and(|v| v.get("version").is_some_and(|v| v.is_string())) {
        // Ollama's answer, or KoboldCpp imitating it.
        let extra = get("/api/extra/version").await?;
        return Ok(if is_koboldcpp(&extra) {
            Backend::KoboldCpp
        } else {
            Backend::Ollama
        });
    }
    let props = get("/props").await?;
    if says_llama(&props) {
        return Ok(Backend::LlamaCpp);
    }
    if json_body(&props)
        .is_some_and(|v| v.get("build_info").is_some() || v.get("total_slots").is_some())
    {
        // KoboldCpp's imitation of /props has `total_slots` too.
        let extra = get("/api/extra/version").await?;
        return Ok(if is_koboldcpp(&extra) {
            Backend::KoboldCpp
        } else {
            Backend::LlamaCpp
        });
    }
    let models = get("/v1/models").await?;
    if says_llama(&models) {
        return Ok(Backend::LlamaCpp);
    }
    if json_body(&models).is_some_and(|v| v.get("data").is_some_and(|d| d.is_array())) {
        return Ok(Backend::OpenAi);
    }
    if refused(&models) {
        return Err(DetectError::Unauthorized);
    }
    Err(DetectError::Unrecognized(format!(
        "no known model server: GET / answered {}, /api/version {}, /props {}, /v1/models {}",
        root.status.as_u16(),
        version.status.as_u16(),
        props.status.as_u16(),
        models.status.as_u16()
    )))
}

/// KoboldCpp's `/api/extra/version`: `{"result":"KoboldCpp","version":"1.102",...}`.
fn is_koboldcpp(reply: &Reply) -> bool {
    json_body(reply).is_some_and(|v| {
        v.get("result")
            .and_then(|r| r.as_str())
            .is_some_and(|r| r.contains("KoboldCpp"))
    })
}
