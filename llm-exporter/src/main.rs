//! llm-exporter: watches llama-server, Ollama, KoboldCpp and other OpenAI-compatible servers. It
//! polls each upstream's API on every scrape and, where asked, puts a measuring reverse proxy in
//! front of it for per-request latency and token metrics that the servers do not offer.

mod config;
mod detect;
mod model_name;
mod poller;
mod prom_text;
mod proxy;
mod upstream;

use common::cli::{CollectorSpec, ExporterSpec};
use common::{AnyCollector, CliOutcome};
use std::process::ExitCode;
use std::sync::Arc;

static SPEC: ExporterSpec<Context> = ExporterSpec {
    name: "llm-exporter",
    metric_prefix: "llm_exporter",
    collector_metrics_prefix: "llm_exporter",
    about: "Prometheus exporter for llama-server, Ollama, KoboldCpp and OpenAI-compatible servers: an API poller and a measuring proxy",
    default_port: 10473,
    collectors: &[
        CollectorSpec {
            name: "upstream",
            default_enabled: true,
            help: "poll each upstream's API (health, metrics, slots, models)",
            // The poller: one scrape, every upstream, each under --upstream.timeout.
            new: |c| {
                AnyCollector::asynchronous(poller::Poller::new(
                    &c.config.upstreams,
                    c.config.poll_timeout,
                    c.config.poll_max_models,
                ))
            },
        },
        CollectorSpec {
            name: "proxy",
            default_enabled: true,
            help: "request metrics measured by the --proxy listeners",
            new: |c| {
                AnyCollector::asynchronous(llm_proxy::ProxyCollector::new(
                    c.measurements.clone(),
                ))
            },
        },
    ],
};

/// What the collectors are built from: the configuration, and what the proxies measure.
struct Context {
    config: config::Config,
    measurements: Arc<llm_proxy::ProxyMetrics>,
}

fn main() -> ExitCode {
    common::run(
        &SPEC,
        env!("CARGO_PKG_VERSION"),
        config::args(),
        |settings, _| {
            let config = config::load(settings)?;
            if config.upstreams.is_empty() {
                return Err(CliOutcome::Error(
                    "no upstream to watch: give --upstream NAME=URL (e.g. local=http://127.0.0.1:8080)"
                        .into(),
                ));
            }

            // The proxies run on their own runtime; their measurements are read per scrape.
            // With their access log and spans, when --proxy.access-log or
            // --proxy.otlp-endpoint turns them on.
            let telemetry = llm_proxy::telemetry::Telemetry::start(config.telemetry.clone())
                .map_err(CliOutcome::Error)?;
            let measurements = Arc::new(
                llm_proxy::ProxyMetrics::new(config.proxy.max_models)
                    .with_telemetry(Arc::new(telemetry)),
            );
            proxy::start(&config, measurements.clone()).map_err(CliOutcome::Error)?;
            Ok(Context {
                config,
                measurements,
            })
        },
    )
}
