//! Whose spelling the proxy's `model` label takes depends on the server behind the upstream:
//! llama-server names its model by a file path, Ollama by `name` with `:latest` implied, every
//! other server keeps its own. llm-exporter knows the servers (its detection, and one spelling
//! per model shared with its poller), so the proxy asks it through `ModelNames`, telling it what
//! each answer showed of the server.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// A wait for a detection still running.
pub type Wait = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// One upstream's model names, as the exporter spells them.
pub trait ModelNames: Send + Sync {
    /// An answer that may name a model came from a server not yet recognized (it carried no
    /// `Server: llama.cpp`): find out which server the upstream is, in the background, unless
    /// that is configured, known, under way, or failed a moment ago.
    fn learn(&self);
    /// The upstream could not be reached: whatever answers on its port next may be another
    /// server.
    fn forget(&self);
    /// When an answer's label must wait for a detection still running: the wait (bounded).
    /// `None`: the label can be made now.
    fn pending(&self, says_llama: bool) -> Option<Wait>;
    /// The label value for the model name the server gave.
    fn label(&self, raw: &str, signs: Signs) -> String;
    /// The upstream's backend as known now (`llama.cpp`, `ollama`, ...), for the access log
    /// and spans; `None` while it is not known.
    fn backend(&self, _signs: Signs) -> Option<&'static str> {
        None
    }
}

/// What one answer showed of the server behind it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Signs {
    /// The answer carried `Server: llama.cpp`.
    pub says_llama: bool,
    /// The route was Ollama's own API (`/api/...`), or the answer carried Ollama's
    /// `system_fingerprint` `fp_ollama`.
    pub ollama: bool,
}

/// What decides one answer's model label.
pub struct Naming {
    /// The answer carried `Server: llama.cpp`.
    pub says_llama: bool,
    /// The route is Ollama's own API (`/api/...`): its names are Ollama's.
    pub ollama_route: bool,
    pub names: Arc<dyn ModelNames>,
}

impl Naming {
    /// When this answer's label waits for a detection still running: the wait.
    pub fn pending(&self) -> Option<Wait> {
        self.names.pending(self.says_llama)
    }

    /// The label value for the model name the server gave; `ollama_fingerprint`: the answer
    /// carried Ollama's `system_fingerprint`.
    pub fn label(&self, raw: &str, ollama_fingerprint: bool) -> String {
        let signs = Signs {
            says_llama: self.says_llama,
            ollama: self.ollama_route || ollama_fingerprint,
        };
        self.names.label(raw, signs)
    }
}
