//! One spelling per model for the `model` label, whoever names it: llama-server names its model by
//! the file path it was started with, Ollama by `name:tag` with `:latest` implied. Without this the
//! poller and the proxy would label the same model differently.

use crate::config::Backend;

/// Label values longer than this are cut: a label is for grouping, not for storing names.
const MAX_LEN: usize = 128;

pub fn normalize(backend: Option<Backend>, raw: &str) -> String {
    let raw = raw.trim();
    let name = match backend {
        // A path such as /models/qwen3-8b.gguf: the file name is what people call it (a
        // trailing slash is no part of it).
        Some(Backend::LlamaCpp) => {
            let path = raw.trim_end_matches(['/', '\\']);
            path.rsplit(['/', '\\']).next().unwrap_or(path)
        }
        _ => raw,
    };
    // Printable ASCII (nearly every name) is kept as it is, without a walk over its characters.
    let plain = name.len() <= MAX_LEN && name.bytes().all(|b| (0x20..0x7f).contains(&b));
    let mut name: String = if plain {
        name.to_string()
    } else {
        name.chars()
            .filter(|c| !c.is_control())
            .take(MAX_LEN)
            .collect()
    };
    if backend == Some(Backend::Ollama) && !name.is_empty() && !tag_present(&name) {
        name.push_str(":latest");
    }
    if name.is_empty() {
        "unknown".into()
    } else {
        name
    }
}

/// `library/name:tag` has a tag; `host:port/name` does not (the colon is before the last slash).
fn tag_present(name: &str) -> bool {
    let last = name.rsplit('/').next().unwrap_or(name);
    last.contains(':')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llama_paths_become_file_names() {
        assert_eq!(
            normalize(
                Some(Backend::LlamaCpp),
                "/var/lib/llama-server/model/tiny-random-llama.gguf"
            ),
            "tiny-random-llama.gguf"
        );
        assert_eq!(normalize(Some(Backend::LlamaCpp), "qwen3"), "qwen3");
        // As the recorded Messages and Responses answers of b11312 name it.
        assert_eq!(
            normalize(
                Some(Backend::LlamaCpp),
                "/var/lib/llama-server/model/tiny-random-llama.gguf/////////////"
            ),
            "tiny-random-llama.gguf"
        );
        assert_eq!(normalize(Some(Backend::LlamaCpp), ""), "unknown");
    }

    #[test]
    fn other_servers_names_stay_as_they_are() {
        // vLLM, SGLang, LM Studio: the organisation part and the case are the name.
        assert_eq!(normalize(None, "Qwen/Qwen3-8B"), "Qwen/Qwen3-8B");
        assert_eq!(normalize(None, "qwen3"), "qwen3");
    }

    #[test]
    fn ollama_names_get_their_implied_tag() {
        assert_eq!(
            normalize(Some(Backend::Ollama), "llama3.2"),
            "llama3.2:latest"
        );
        assert_eq!(
            normalize(Some(Backend::Ollama), "llama3.2:1b"),
            "llama3.2:1b"
        );
        assert_eq!(
            normalize(Some(Backend::Ollama), "registry:5000/team/model"),
            "registry:5000/team/model:latest"
        );
        assert_eq!(normalize(None, "x\ny"), "xy");
        assert_eq!(normalize(None, &"a".repeat(500)).len(), MAX_LEN);
        // Control characters (C0, DEL, C1) are dropped, other text is kept.
        assert_eq!(normalize(None, "a\u{7}b\u{7f}c\u{85}dé"), "abcdé");
    }
}
