//! The measuring reverse proxy that llm-exporter starts with `--proxy NAME=LISTEN_ADDR`: it serves
//! an upstream's API unchanged at another address. Requests and responses pass through as they
//! come (bodies are never modified or buffered, so SSE and NDJSON streams reach the client chunk
//! by chunk); inference requests are measured on the way. The proxies run on threads of their own
//! (`--proxy.threads`) so that a slow scrape and a busy stream never wait on each other.
//!
//! The layers, each using only those above it:
//! - `codec`: HTTP/1.1 with no I/O: heads, the framing rules, body decoding, head writing;
//! - `telemetry`: the access log and OpenTelemetry spans of each inference request (the spans'
//!   export reads its collector's answer with `codec`);
//! - `measure`: what a response tells (stream formats, the JSON scanner), routes, metrics (which
//!   hand each finished request to `telemetry`);
//! - `conn`: the client-facing server (it hands each request to a `Handler`), the upstream
//!   client and its pool, the metered body;
//! - `forward`: the `Handler` that takes a request from client to upstream and back;
//!   `start`: the listeners and their threads.

pub mod codec;
pub mod conn;
mod forward;
pub mod measure;
mod start;
pub mod telemetry;

pub use measure::collector::ProxyCollector;
pub use measure::metrics::ProxyMetrics;
pub use measure::naming::ModelNames;
pub use start::{start, Listener, Settings};
