//! Telling llama-server from Ollama. llama-server also answers Ollama's `/api/tags` and
//! `/api/chat`, so those prove nothing; what does: llama-server sends `Server: llama.cpp` on every
//! answer and has `/props`, Ollama answers `GET /` with `Ollama is running` and has
//! `/api/version`.

use crate::config::Backend;
use crate::upstream::{FetchError, Reply, Upstream};
use hyper::StatusCode;
use tokio::time::Instant;

#[derive(Debug, PartialEq)]
pub enum DetectError {
    Fetch(FetchError),
    /// The upstream answered 401/403: it sits behind auth we lack the key for.
    Unauthorized,
    /// It answered, but like neither backend.
    Unrecognized(String),
}

fn says_llama(reply: &Reply) -> bool {
    reply
        .header("server")
        .is_some_and(|s| s.to_ascii_lowercase().contains("llama.cpp"))
}

pub async fn detect(upstream: &Upstream, deadline: Instant) -> Result<Backend, DetectError> {
    let root = upstream
        .get("/", deadline)
        .await
        .map_err(DetectError::Fetch)?;
    if says_llama(&root) {
        return Ok(Backend::LlamaCpp);
    }
    if root.body.starts_with(b"Ollama is running") {
        return Ok(Backend::Ollama);
    }
    if matches!(
        root.status,
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
    ) {
        return Err(DetectError::Unauthorized);
    }
    // Behind a reverse proxy that hides the Server header or serves its own `/`.
    let version = upstream
        .get("/api/version", deadline)
        .await
        .map_err(DetectError::Fetch)?;
    if says_llama(&version) {
        return Ok(Backend::LlamaCpp);
    }
    if version.status == StatusCode::OK {
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&version.body) {
            if v.get("version").is_some_and(|v| v.is_string()) {
                return Ok(Backend::Ollama);
            }
        }
    }
    let props = upstream
        .get("/props", deadline)
        .await
        .map_err(DetectError::Fetch)?;
    if says_llama(&props) {
        return Ok(Backend::LlamaCpp);
    }
    if props.status == StatusCode::OK {
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&props.body) {
            if v.get("build_info").is_some() || v.get("total_slots").is_some() {
                return Ok(Backend::LlamaCpp);
            }
        }
    }
    Err(DetectError::Unrecognized(format!(
        "neither llama-server nor Ollama: GET / answered {}, /api/version {}, /props {}",
        root.status.as_u16(),
        version.status.as_u16(),
        props.status.as_u16()
    )))
}
