//! Talking to one model server for the poller: GET with a deadline, the bearer token, a cap on the
//! body size, and failures sorted into the reasons `llm_up` reports.

use crate::config::UpstreamConfig;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::header::{HeaderMap, AUTHORIZATION};
use hyper::{Request, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::time::Duration;
use tokio::time::Instant;

/// Bodies larger than this are refused: no model server's status answer comes near it.
const MAX_BODY: usize = 16 << 20;

/// One answer from an upstream.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Why a request got no usable answer.
#[derive(Debug, Clone, PartialEq)]
pub enum FetchError {
    /// Nothing listening, connection refused or reset, name not resolved.
    Down(String),
    /// No complete answer before the deadline.
    Timeout,
    /// An answer that is not HTTP, or a body cut short or too large.
    Broken(String),
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::Down(e) => write!(f, "unreachable: {e}"),
            FetchError::Timeout => write!(f, "timed out"),
            FetchError::Broken(e) => write!(f, "bad answer: {e}"),
        }
    }
}

/// An upstream as the poller sees it: where it is, and a client with its token.
#[derive(Clone)]
pub struct Upstream {
    pub config: UpstreamConfig,
    client: Client<HttpConnector, Empty<Bytes>>,
}

impl Upstream {
    pub fn new(config: UpstreamConfig) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(3)));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(4)
            .build(connector);
        Upstream { config, client }
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// GETs `path` (which starts with `/`), finishing by `deadline` or failing with `Timeout`.
    pub async fn get(&self, path: &str, deadline: Instant) -> Result<Reply, FetchError> {
        match tokio::time::timeout_at(deadline, self.get_unbounded(path)).await {
            Ok(result) => result,
            Err(_) => Err(FetchError::Timeout),
        }
    }

    async fn get_unbounded(&self, path: &str) -> Result<Reply, FetchError> {
        let url = format!("{}{}", self.config.base_url, path);
        let mut request = Request::get(&url);
        if let Some(key) = &self.config.api_key {
            request = request.header(AUTHORIZATION, format!("Bearer {key}"));
        }
        let request = request
            .body(Empty::new())
            .map_err(|e| FetchError::Broken(format!("cannot build request for {path}: {e}")))?;
        let response = self.client.request(request).await.map_err(|e| {
            if e.is_connect() {
                FetchError::Down(error_chain(&e))
            } else {
                FetchError::Broken(error_chain(&e))
            }
        })?;
        let (parts, body) = response.into_parts();
        let body = Limited::new(body, MAX_BODY)
            .collect()
            .await
            .map_err(|e| FetchError::Broken(format!("body of {path}: {e}")))?
            .to_bytes();
        Ok(Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }
}

/// The error and its causes in one line ("client error (Connect): tcp connect error: ...").
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
