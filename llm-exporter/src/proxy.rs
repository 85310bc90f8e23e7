//! The measuring proxy (the `llm-proxy` crate) started for the `--proxy` upstreams, and whose
//! spelling its `model` label takes. llama-server names its model by a file path
//! (the label is the file name), Ollama by `name` with `:latest` implied (the label adds it, as
//! the poller's does); every other server (vLLM, SGLang, LM Studio, llama-swap, ...) keeps the
//! name exactly as it gave it. So the label needs the upstream's backend: the configured one, a
//! `Server: llama.cpp` header on the answer, or, for `auto`, the proxy's own detection (the
//! poller's detection, run once per upstream for all proxy threads, started by the first
//! measured answer without that header, and again after the upstream was unreachable, since the
//! port may then be served by another server). The answers that end while it runs are recorded
//! when it has answered; if it finds nothing, the answer's own signs stand in: Ollama's own API
//! (`/api/...`) or Ollama's `system_fingerprint` `fp_ollama`.

use crate::config::{Backend, BackendChoice, Config, UpstreamConfig};
use crate::{detect, model_name, upstream};
use llm_proxy::measure::naming::{Signs, Wait};
use llm_proxy::{Listener, ModelNames, ProxyMetrics, Settings};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Starts a proxy for every upstream with `--proxy`: their listeners are bound when this returns.
pub fn start(config: &Config, metrics: Arc<ProxyMetrics>) -> Result<(), String> {
    let listeners: Vec<Listener> = config
        .upstreams
        .iter()
        .filter_map(|upstream| {
            let listen = upstream.proxy_listen.clone()?;
            let names: Arc<dyn ModelNames> =
                Arc::new(UpstreamNames(Arc::new(Detected::new(upstream.clone()))));
            Some(Listener {
                upstream: upstream.name.clone(),
                listen,
                base_url: upstream.base_url.clone(),
                names,
            })
        })
        .collect();
    let settings = Settings {
        header_timeout: config.proxy.header_timeout,
        idle_timeout: config.proxy.idle_timeout,
        client_timeout: config.proxy.client_timeout,
        threads: config.proxy.threads,
    };
    llm_proxy::start(&listeners, &settings, metrics)
}

/// How long one detection may take.
const DETECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Least time between two detections that found nothing (an upstream that is down).
const RETRY: Duration = Duration::from_secs(5);

/// An upstream's backend as the proxy detected it, shared by every proxy thread.
pub struct Detected {
    config: UpstreamConfig,
    state: Mutex<State>,
    /// Woken when a detection ends.
    ended: Notify,
}

#[derive(Default)]
struct State {
    backend: Option<Backend>,
    running: bool,
    last_try: Option<Instant>,
}

impl Detected {
    pub fn new(config: UpstreamConfig) -> Self {
        Detected {
            config,
            state: Mutex::new(State::default()),
            ended: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self) -> Option<Backend> {
        self.lock().backend
    }

    /// Starts a detection on the current runtime unless the backend is configured or known, one
    /// is running, or the last one failed less than RETRY ago.
    pub fn ensure(self: &Arc<Self>) {
        if self.config.backend != BackendChoice::Auto {
            return;
        }
        {
            let mut state = self.lock();
            let recent = state.last_try.is_some_and(|t| t.elapsed() < RETRY);
            if state.backend.is_some() || state.running || recent {
                return;
            }
            state.running = true;
            state.last_try = Some(Instant::now());
        }
        let this = self.clone();
        tokio::spawn(async move {
            let client = upstream::Upstream::new(this.config.clone());
            let found = detect::detect(&client, Instant::now() + DETECT_TIMEOUT).await;
            {
                let mut state = this.lock();
                state.running = false;
                if let Ok(backend) = found {
                    if state.backend != Some(backend) {
                        common::log::info(
                            "proxy: upstream backend detected",
                            &[
                                ("upstream", &this.config.name),
                                ("backend", backend.label()),
                            ],
                        );
                    }
                    state.backend = Some(backend);
                }
            }
            this.ended.notify_waiters();
        });
    }

    /// Completes when no detection is running (at once when none is).
    async fn settled(&self) {
        loop {
            // Registered before the look, so that an end in between is not missed.
            let ended = self.ended.notified();
            if !self.lock().running {
                return;
            }
            ended.await;
        }
    }

    /// The upstream could not be reached: whatever answers next may be another server.
    pub fn forget(&self) {
        self.lock().backend = None;
    }
}

/// One upstream's model names for the proxy: its configured backend, or the one detected.
struct UpstreamNames(Arc<Detected>);

impl ModelNames for UpstreamNames {
    fn learn(&self) {
        self.0.ensure();
    }

    fn forget(&self) {
        self.0.forget();
    }

    fn pending(&self, says_llama: bool) -> Option<Wait> {
        if says_llama || self.0.config.backend != BackendChoice::Auto {
            return None;
        }
        let state = self.0.lock();
        if state.backend.is_some() || !state.running {
            return None;
        }
        drop(state);
        let detected = self.0.clone();
        Some(Box::pin(async move {
            let _ = tokio::time::timeout(DETECT_TIMEOUT, detected.settled()).await;
        }))
    }

    fn label(&self, raw: &str, signs: Signs) -> String {
        let backend = backend(
            self.0.config.backend,
            signs.says_llama,
            signs.ollama,
            self.0.get(),
        );
        model_name::normalize(backend, raw)
    }

    fn backend(&self, signs: Signs) -> Option<&'static str> {
        backend(
            self.0.config.backend,
            signs.says_llama,
            signs.ollama,
            self.0.get(),
        )
        .map(Backend::label)
    }
}

/// The backend whose spelling applies; `None`: the name as the server gave it.
fn backend(
    choice: BackendChoice,
    says_llama: bool,
    ollama_sign: bool,
    detected: Option<Backend>,
) -> Option<Backend> {
    if says_llama {
        return Some(Backend::LlamaCpp);
    }
    match choice {
        BackendChoice::Fixed(backend) => Some(backend),
        BackendChoice::Auto => detected.or(ollama_sign.then_some(Backend::Ollama)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ollama_names_get_latest_and_only_llama_paths_are_cut() {
        let auto = BackendChoice::Auto;
        let ollama = Some(Backend::Ollama);
        let llama = Some(Backend::LlamaCpp);
        let label = |choice, says_llama, ollama_sign, detected, raw| {
            model_name::normalize(backend(choice, says_llama, ollama_sign, detected), raw)
        };
        // Not (yet) detected, on an OpenAI-style route: exactly as the server named it.
        assert_eq!(
            label(auto, false, false, None, "Qwen/Qwen3-8B"),
            "Qwen/Qwen3-8B"
        );
        assert_eq!(label(auto, false, false, None, "qwen3"), "qwen3");
        // Ollama's own API or fingerprint, or Ollama detected or configured.
        assert_eq!(label(auto, false, true, None, "qwen3"), "qwen3:latest");
        assert_eq!(label(auto, false, false, ollama, "qwen3"), "qwen3:latest");
        let fixed_ollama = BackendChoice::Fixed(Backend::Ollama);
        assert_eq!(
            label(fixed_ollama, false, false, None, "qwen3"),
            "qwen3:latest"
        );
        // Detection wins over the route's guess.
        assert_eq!(label(auto, false, true, llama, "/m/a.gguf"), "a.gguf");
        // llama-server, by header or configuration.
        assert_eq!(label(auto, true, true, None, "/m/a.gguf"), "a.gguf");
        let fixed_llama = BackendChoice::Fixed(Backend::LlamaCpp);
        assert_eq!(
            label(fixed_llama, false, false, None, "/m/a.gguf"),
            "a.gguf"
        );
    }
}
