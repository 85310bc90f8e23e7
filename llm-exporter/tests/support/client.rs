//! A client of the proxy for the end-to-end tests: requests over real HTTP on loopback, and
//! waits for what the proxy records (it records a request when its body ends, off the request's
//! own path, so tests poll for it).

#![allow(dead_code)]

use bytes::Bytes;
use common::testing::{free_port, value, ExporterProcess};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use std::time::{Duration, Instant};

/// How long a test waits for an answer or a measurement before it fails.
pub const PATIENCE: Duration = Duration::from_secs(20);

pub fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build(HttpConnector::new())
}

/// The `--proxy` flag for upstream `name` on a loopback port.
pub fn proxy_arg(name: &str, port: u16) -> String {
    format!("--proxy={name}=127.0.0.1:{port}")
}

/// Starts the exporter with upstream `name` at `url`, its proxy on a free loopback port, and the
/// `extra` flags; the exporter and the proxy's port.
pub fn start_proxy(name: &str, url: &str, extra: &[String]) -> (ExporterProcess, u16) {
    let port = free_port();
    let mut args = vec![format!("--upstream={name}={url}"), proxy_arg(name, port)];
    args.extend_from_slice(extra);
    (super::exporter::start_exporter(&args), port)
}

/// POSTs a JSON body to the proxy.
pub async fn post(port: u16, path: &str, body: &[u8]) -> Response<Incoming> {
    post_with_headers(port, path, body, &[]).await
}

/// POSTs a JSON body to the proxy with extra header fields.
pub async fn post_with_headers(
    port: u16,
    path: &str,
    body: &[u8],
    headers: &[(&str, &str)],
) -> Response<Incoming> {
    let mut request = Request::post(format!("http://127.0.0.1:{port}{path}"))
        .header("content-type", "application/json");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(Full::new(Bytes::copy_from_slice(body)))
        .unwrap();
    tokio::time::timeout(PATIENCE, client().request(request))
        .await
        .expect("response headers in time")
        .expect("response")
}

pub async fn read_all(response: Response<Incoming>) -> Bytes {
    tokio::time::timeout(PATIENCE, response.into_body().collect())
        .await
        .expect("body in time")
        .expect("body")
        .to_bytes()
}

/// Scrapes until `series` reaches `want`; the exposition that had it.
pub fn wait_for(exporter: &ExporterProcess, series: &str, want: f64) -> String {
    let until = Instant::now() + PATIENCE;
    loop {
        let metrics = exporter.metrics();
        if value(&metrics, series) == Some(want) {
            return metrics;
        }
        assert!(
            Instant::now() < until,
            "{series} never reached {want}:\n{metrics}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
