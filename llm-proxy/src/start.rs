//! Starting the proxies: every listener bound at once (a busy port is a start-up error), then
//! served on threads of their own, each with its own runtime and upstream connections.

use crate::conn::client::Upstream;
use crate::conn::server;
use crate::forward::Target;
use crate::measure::metrics::ProxyMetrics;
use crate::measure::naming::ModelNames;
use crate::telemetry::Server;
use std::sync::Arc;
use std::time::Duration;

/// What every listener shares (`--proxy.*`).
#[derive(Clone, Debug)]
pub struct Settings {
    /// How long the upstream may take to send its response head.
    pub header_timeout: Duration,
    /// How long a response body may stay silent.
    pub idle_timeout: Duration,
    /// How long the client may take to send a request head or the next piece of a body, and to
    /// take each write.
    pub client_timeout: Duration,
    /// Threads serving the listeners.
    pub threads: usize,
}

/// One `--proxy NAME=LISTEN_ADDR`.
pub struct Listener {
    /// The upstream's name: the `upstream` label.
    pub upstream: String,
    /// `host:port`, or `:port` for every address.
    pub listen: String,
    /// `http://host:port[/prefix]`.
    pub base_url: String,
    /// How the upstream's model names become the `model` label.
    pub names: Arc<dyn ModelNames>,
}

/// Binds every `--proxy` listener now (so a busy port is a start-up error), then serves them on
/// `--proxy.threads` threads of their own. Each thread runs its own single-threaded runtime that
/// accepts on every listener (a shared socket: whichever thread is free takes the connection)
/// and keeps its own pool of upstream connections, so a request is served start to end on one
/// thread, as nginx's workers do, with no hand-over between threads.
pub fn start(
    listeners: &[Listener],
    settings: &Settings,
    metrics: Arc<ProxyMetrics>,
) -> Result<(), String> {
    let mut bound = Vec::new();
    for upstream in listeners {
        let listen = &upstream.listen;
        let listener = bind(listen)
            .map_err(|e| format!("--proxy {}={listen}: cannot listen: {e}", upstream.upstream))?;
        bound.push((listener, upstream));
    }
    if bound.is_empty() {
        return Ok(());
    }
    for (listener, upstream) in &bound {
        let address = listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        common::log::info(
            "proxy listening",
            &[
                ("upstream", &upstream.upstream),
                ("address", &address),
                ("threads", &settings.threads.to_string()),
            ],
        );
    }
    for i in 0..settings.threads {
        let mut serving = Vec::new();
        for (listener, upstream) in &bound {
            let listener = listener.try_clone().map_err(|e| {
                format!(
                    "--proxy {}: cannot share the listener: {e}",
                    upstream.upstream
                )
            })?;
            let target = target(upstream, settings, metrics.clone())?;
            serving.push((listener, target));
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the proxy runtime: {e}"))?;
        std::thread::Builder::new()
            .name(format!("llm-proxy-{i}"))
            .spawn(move || runtime.block_on(serve_all(serving)))
            .map_err(|e| format!("cannot start a proxy thread: {e}"))?;
    }
    Ok(())
}

/// One proxy thread: every listener, until the process ends.
async fn serve_all(serving: Vec<(std::net::TcpListener, Target)>) {
    let mut tasks = Vec::new();
    for (listener, target) in serving {
        match tokio::net::TcpListener::from_std(listener) {
            Ok(listener) => {
                tokio::spawn({
                    let upstream = target.upstream.clone();
                    async move { upstream.close_idle_on_time().await }
                });
                tasks.push(tokio::spawn(serve(listener, Arc::new(target))))
            }
            Err(e) => common::log::error(
                "proxy cannot listen",
                &[("upstream", &target.name), ("err", &e.to_string())],
            ),
        }
    }
    tokio::spawn(keep_timer_armed());
    for task in tasks {
        let _ = task.await;
    }
}

/// Every request sets timers (the header read, header and idle timeouts, 30 s and more away).
/// A timer earlier than any the runtime has pending makes it re-arm its wait with a write to its
/// wake-up descriptor, one system call per request when none is pending; this one, always
/// nearer, keeps the others from being the earliest.
async fn keep_timer_armed() {
    loop {
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
}

fn bind(listen: &str) -> std::io::Result<std::net::TcpListener> {
    let listener = match listen.strip_prefix(':') {
        Some(port) => std::net::TcpListener::bind(format!("[::]:{port}"))
            .or_else(|_| std::net::TcpListener::bind(format!("0.0.0.0:{port}")))?,
        None => std::net::TcpListener::bind(listen)?,
    };
    listener.set_nonblocking(true)?;
    Ok(listener)
}

fn target(
    upstream: &Listener,
    settings: &Settings,
    metrics: Arc<ProxyMetrics>,
) -> Result<Target, String> {
    let client = Upstream::new(&upstream.base_url)
        .map_err(|e| format!("upstream {}: {e}", upstream.upstream))?;
    Ok(Target {
        name: Arc::from(upstream.upstream.as_str()),
        names: upstream.names.clone(),
        upstream: Arc::new(client),
        settings: settings.clone(),
        metrics,
        server: Server::from_base_url(&upstream.base_url),
    })
}

async fn serve(listener: tokio::net::TcpListener, target: Arc<Target>) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                common::log::error("proxy accept failed", &[("err", &e.to_string())]);
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let target = target.clone();
        tokio::spawn(async move {
            let timeout = target.settings.client_timeout;
            server::serve_connection(stream, &*target, timeout).await;
        });
    }
}
