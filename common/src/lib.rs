//! Shared plumbing for the exporters: the collector trait and its per-scrape runner, the HTTP
//! server, flags and config, the exposition formats, self-metrics and logs. An exporter
//! describes itself and registers its collectors in an [`cli::ExporterSpec`], and its `main.rs`
//! calls [`run`].

pub mod cli;
pub mod collector;
pub mod encode;
pub mod gpu;
pub mod limits;
pub mod log;
pub mod metrics;
pub mod process;
pub mod server;
#[cfg(feature = "testing")]
pub mod testing;
pub mod web_config;

pub use cli::{CliOutcome, CollectorSpec, CommonOptions, Enabled, ExporterSpec, Settings};
pub use collector::{
    AnyCollector, BlockingCollector, CollectFuture, CollectResult, Collector, Collectors,
};
pub use metrics::{MetricFamily, MetricType};

use std::process::ExitCode;
use std::sync::Arc;

/// Parses flags, sets up logging, builds the exporter's context with `context` and from it the
/// enabled collectors of `spec`, and serves until SIGTERM or SIGINT. Any configuration error is
/// printed with the setting it concerns and the process exits with status 1 before listening.
pub fn run<C>(
    spec: &'static ExporterSpec<C>,
    version: &str,
    own_args: Vec<clap::Arg>,
    context: impl FnOnce(&Settings, &Enabled) -> Result<C, CliOutcome>,
) -> ExitCode {
    let (options, settings) = match cli::parse(spec, version, own_args, std::env::args_os()) {
        Ok(parsed) => parsed,
        Err(CliOutcome::Exit(text)) => {
            print!("{text}");
            return ExitCode::SUCCESS;
        }
        Err(CliOutcome::Error(message)) => return startup_error(&message),
    };
    log::init(options.log_level, options.log_format);
    limit_malloc_arenas();
    limits::raise_open_file_limit();

    let web = match &options.web_config_file {
        Some(path) => match web_config::WebConfig::load(path) {
            Ok(web) => web,
            Err(message) => return startup_error(&message),
        },
        None => web_config::WebConfig::none(),
    };
    let enabled = Enabled::new(spec, &options.collectors);
    let collectors = match context(&settings, &enabled) {
        Ok(context) => Collectors::from_spec(spec, &enabled, &context),
        Err(CliOutcome::Error(message) | CliOutcome::Exit(message)) => {
            return startup_error(&message)
        }
    };

    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(64)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return startup_error(&format!("cannot start the runtime: {e}")),
    };
    let status = runtime.block_on(async move {
        let listeners = match server::bind(&options.listen_addresses).await {
            Ok(l) => l,
            Err(message) => return startup_error(&message),
        };
        let addresses: Vec<String> = listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .map(|a| a.to_string())
            .collect();
        log::info(
            &format!("starting {}", spec.name),
            &[
                ("version", version),
                ("revision", process::REVISION),
                ("address", &addresses.join(",")),
                ("tls", if web.tls.is_some() { "true" } else { "false" }),
                ("collectors", &collectors.names().join(",")),
            ],
        );
        let server = Arc::new(server::Server::new(spec, version, options, collectors, web));
        server::serve(server, listeners, server::shutdown_signal()).await;
        ExitCode::SUCCESS
    });
    // Dropping the runtime would wait for every blocking thread, and one stuck in a read (a
    // FIFO in place of a procfs file) never returns: the process would live on after
    // "shutting down". The grace for connections has passed; leave such threads behind.
    runtime.shutdown_timeout(EXIT_GRACE);
    status
}

/// How long, after the server stopped, blocking threads get to finish before the process exits.
const EXIT_GRACE: std::time::Duration = std::time::Duration::from_millis(500);

/// glibc gives every thread that allocates its own arena; with a few worker threads that
/// multiplies the resident memory of a process that needs a few MiB. Two arenas are plenty.
fn limit_malloc_arenas() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only changes allocator tuning; called before other threads start.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

fn startup_error(message: &str) -> ExitCode {
    log::error(message, &[]);
    ExitCode::FAILURE
}
