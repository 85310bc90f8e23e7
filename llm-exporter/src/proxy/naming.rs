//! Whose spelling the proxy's `model` label takes. llama-server names its model by a file path
//! (the label is the file name), Ollama by `name` with `:latest` implied (the label adds it, as
//! the poller's does); every other server (vLLM, SGLang, LM Studio, llama-swap, ...) keeps the
//! name exactly as it gave it. So the label needs the upstream's backend: the configured one, a
//! `Server: llama.cpp` header on the answer, or, for `auto`, the proxy's own detection (the
//! poller's detection, run once per upstream for all proxy threads, started by the first
//! measured answer without that header, and again after the upstream was unreachable, since the
//! port may then be served by another server). The answers that end while it runs are recorded
//! when it has answered; if it finds nothing, the answer's own signs stand in: Ollama's own API
//! (`/api/...`) or Ollama's `system_fingerprint` `fp_ollama`.

use crate::config::{Backend, BackendChoice, UpstreamConfig};
use crate::{detect, model_name, upstream};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

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

/// What decides one answer's model label.
pub struct Naming {
    pub choice: BackendChoice,
    /// The answer carried `Server: llama.cpp`.
    pub says_llama: bool,
    /// The route is Ollama's own API (`/api/...`): its names are Ollama's.
    pub ollama_route: bool,
    pub detected: Arc<Detected>,
}

impl Naming {
    /// When this answer's label waits for a detection still running: the wait (bounded by the
    /// detection's own deadline). `None`: the label can be made now.
    pub fn pending(&self) -> Option<impl Future<Output = ()> + Send + 'static> {
        if self.says_llama || self.choice != BackendChoice::Auto {
            return None;
        }
        let state = self.detected.lock();
        if state.backend.is_some() || !state.running {
            return None;
        }
        drop(state);
        let detected = self.detected.clone();
        Some(async move {
            let _ = tokio::time::timeout(DETECT_TIMEOUT, detected.settled()).await;
        })
    }

    /// The label value for the model name the server gave; `ollama_sign`: the answer carried
    /// Ollama's `system_fingerprint`.
    pub fn label(&self, raw: &str, ollama_sign: bool) -> String {
        let backend = backend(
            self.choice,
            self.says_llama,
            self.ollama_route || ollama_sign,
            self.detected.get(),
        );
        model_name::normalize(backend, raw)
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
