//! The measuring reverse proxy that llm-exporter starts with `--proxy NAME=LISTEN_ADDR`.
pub mod telemetry;
