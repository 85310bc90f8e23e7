//! Route tables of the fakes for the servers beyond a single-model llama-server and Ollama: a
//! router-mode llama-server (the b11312 `router-*` captures, with the router's autoload: asking
//! an unloaded model's `/metrics`, `/slots` or `/props` loads it, as recorded), KoboldCpp (its
//! answers as `koboldcpp.py` writes them, Python's `json.dumps` spacing included), a generic
//! OpenAI-compatible server (vLLM's `/v1/models` shape, no `Server` header), and an Ollama whose
//! model lists the test makes up.

#![allow(dead_code)]

use super::fake::{fixture, Answer, Handler, Seen};
use bytes::Bytes;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

/// The router's models (`--models-dir` with `tiny-a.gguf` and `tiny-b.gguf`) and which are
/// loaded; shared with the test, which can load and unload them.
#[derive(Clone, Default)]
pub struct RouterState {
    pub loaded: Arc<Mutex<BTreeSet<&'static str>>>,
}

impl RouterState {
    pub fn with_loaded(models: &[&'static str]) -> Self {
        let state = RouterState::default();
        state.loaded.lock().unwrap().extend(models);
        state
    }

    pub fn is_loaded(&self, model: &str) -> bool {
        self.loaded.lock().unwrap().contains(model)
    }
}

const ROUTER_MODELS: [&str; 2] = ["tiny-a", "tiny-b"];

/// The `model` query parameter, as the router reads it.
fn model_param(path: &str) -> Option<String> {
    let query = path.split_once('?')?.1;
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == "model").then(|| v.to_string())
    })
}

pub fn router(state: RouterState) -> Handler {
    Arc::new(move |seen: &Seen| {
        let path = seen.path.split('?').next().unwrap_or("");
        let model = model_param(&seen.path);
        let per_model = matches!(path, "/metrics" | "/slots" | "/props");
        if per_model {
            if let Some(m) = &model {
                let Some(known) = ROUTER_MODELS.iter().find(|k| **k == m.as_str()) else {
                    return Answer::recorded("router-chat-unknown-model");
                };
                // Autoload: the router starts the model's process to answer.
                state.loaded.lock().unwrap().insert(known);
            }
        }
        let loaded = state.loaded.lock().unwrap().clone();
        match (seen.method.as_str(), path, model.as_deref()) {
            // Not captured: the web UI, with the router's headers.
            ("GET", "/", _) => Answer::recorded("router-health")
                .with_header("Content-Type", "text/html")
                .with_body(Bytes::from_static(
                    b"<!doctype html><title>llama.cpp</title>",
                )),
            ("GET", "/health" | "/v1/health", _) => Answer::recorded("router-health"),
            ("GET", "/props", None) => Answer::recorded("router-props"),
            ("GET", "/props", Some(m)) => per_model_answer("router-props-tiny-a", m),
            ("GET", "/metrics", None) => Answer::recorded("router-metrics-no-model"),
            ("GET", "/metrics", Some("tiny-a")) => Answer::recorded("router-metrics-tiny-a"),
            ("GET", "/metrics", Some(_)) => Answer::recorded("router-metrics-tiny-b-unloaded"),
            ("GET", "/slots", None) => Answer::recorded("router-slots-no-model"),
            ("GET", "/slots", Some(m)) => per_model_answer("router-slots-tiny-a", m),
            ("GET", "/v1/models" | "/models", _) => {
                let stem = match (loaded.contains("tiny-a"), loaded.contains("tiny-b")) {
                    (false, false) => "router-v1-models-before",
                    (true, false) => "router-v1-models-after",
                    (true, true) => "router-v1-models-final",
                    // Not captured: the "after" list with the two models' states swapped.
                    (false, true) => {
                        let body = fixture("llama-server/router-v1-models-after.body");
                        let text = String::from_utf8(body.to_vec()).unwrap();
                        let swapped = text
                            .replacen("\"tiny-a\"", "\"tiny-x\"", 1)
                            .replacen("\"tiny-b\"", "\"tiny-a\"", 1)
                            .replacen("\"tiny-x\"", "\"tiny-b\"", 1);
                        return Answer::recorded("router-v1-models-after")
                            .with_body(Bytes::from(swapped));
                    }
                };
                Answer::recorded(stem)
            }
            _ => Answer::recorded("unknown-path-404"),
        }
    })
}

/// tiny-a's recorded answer, with its name changed for the other model (only tiny-a's own
/// answers were captured; the two models are the same file under two names).
fn per_model_answer(stem: &str, model: &str) -> Answer {
    if model == "tiny-a" {
        return Answer::recorded(stem);
    }
    let body = fixture(&format!("llama-server/{stem}.body"));
    let text = String::from_utf8(body.to_vec()).unwrap();
    Answer::recorded(stem).with_body(Bytes::from(text.replace("tiny-a", model)))
}

/// KoboldCpp 1.102's model as its `friendlymodelname`.
pub const KOBOLD_MODEL: &str = "koboldcpp/Qwen3-8B-Q4_K_M";

/// Python's `http.server` headers as KoboldCpp sends them: `send_response` adds `Server` (its
/// handler sets `server_version = "KoboldCppServer"`, `sys_version = "1"`) and `Date`, and its
/// `end_headers` adds CORS, `cache-control` and the content type.
fn kobold(status: u16, content_type: &str, body: impl Into<Bytes>) -> Answer {
    Answer::Full {
        status,
        headers: vec![
            ("Server".into(), "KoboldCppServer 1".into()),
            ("Date".into(), "Mon, 07 Dec 2026 09:00:00 GMT".into()),
            ("access-control-allow-origin".into(), "*".into()),
            ("access-control-allow-methods".into(), "*".into()),
            ("access-control-allow-headers".into(), "*, Accept, Content-Type, Content-Length, Cache-Control, Accept-Encoding, X-CSRF-Token, Client-Agent, X-Fields, Content-Type, Authorization, X-Requested-With, X-HTTP-Method-Override, apikey, genkey".into()),
            ("cache-control".into(), "no-store".into()),
            ("content-type".into(), content_type.into()),
        ],
        body: body.into(),
    }
}

pub fn koboldcpp() -> Handler {
    Arc::new(|seen: &Seen| {
        let json = "application/json";
        let path = seen.path.trim_end_matches('/');
        let model = KOBOLD_MODEL;
        // `json.dumps` with its default separators: ", " and ": ".
        let ollama_model = |name: &str| {
            format!("{{\"name\": \"koboldcpp\", \"model\": \"{name}\", \"modified_at\": \"2024-07-19T15:26:55.6122841+08:00\", \"expires_at\": \"2055-06-04T19:06:25.5433636+08:00\", \"size\": 394998579, \"size_vram\": 394998579, \"digest\": \"b5dc5e784f2a3ee1582373093acf69a2f4e2ac1710b253a001712b86a61f88bb\", \"details\": {{\"parent_model\": \"\", \"format\": \"gguf\", \"family\": \"koboldcpp\", \"families\": [\"koboldcpp\"], \"parameter_size\": \"128M\", \"quantization_level\": \"Q4_0\"}}}}")
        };
        match path {
            "" => kobold(200, "text/html", "<!DOCTYPE html><title>KoboldAI Lite</title>"),
            "/api/version" => kobold(200, json, "{\"version\": \"0.7.0\"}"),
            "/api/tags" | "/api/ps" => kobold(
                200,
                json,
                format!(
                    "{{\"models\": [{}, {}]}}",
                    ollama_model(&format!("{model}:latest")),
                    ollama_model(model)
                ),
            ),
            "/api/extra/version" => kobold(
                200,
                json,
                "{\"result\": \"KoboldCpp\", \"version\": \"1.102\", \"protected\": false, \"llm\": true, \"txt2img\": false, \"vision\": false, \"audio\": false, \"transcribe\": false, \"multiplayer\": false, \"websearch\": false, \"tts\": false, \"embeddings\": false, \"savedata\": false, \"admin\": 0, \"guidance\": false, \"jinja\": false}",
            ),
            "/v1/models" | "/models" => kobold(
                200,
                json,
                format!("{{\"object\": \"list\", \"data\": [{{\"id\": \"{model}\", \"object\": \"model\", \"created\": 1796630400, \"owned_by\": \"koboldcpp\", \"permission\": [], \"root\": \"koboldcpp\"}}]}}"),
            ),
            "/api/v1/model" => kobold(200, json, format!("{{\"result\": \"{model}\"}}")),
            "/api/extra/true_max_context_length" => kobold(200, json, "{\"value\": 8192}"),
            "/api/extra/perf" => kobold(
                200,
                json,
                "{\"last_process\": 0.35, \"last_eval\": 21.4, \"last_token_count\": 120, \"last_input_count\": 512, \"last_process_time\": 0.1792, \"last_eval_time\": 2.568, \"last_process_speed\": 2857.14, \"last_eval_speed\": 46.73, \"last_seed\": 4242, \"last_draft_success\": 0, \"last_draft_failed\": 0, \"total_gens\": 17, \"stop_reason\": 1, \"total_img_gens\": 0, \"total_tts_gens\": 0, \"total_transcribe_gens\": 0, \"queue\": 2, \"idle\": 0, \"hordeexitcounter\": -1, \"uptime\": 3600.5, \"idletime\": 0.2, \"quiet\": false}",
            ),
            "/props" => kobold(
                200,
                json,
                format!("{{\"chat_template\": null, \"id\": 0, \"id_task\": -1, \"total_slots\": 1, \"modalities\": {{\"vision\": false, \"audio\": false}}, \"model_path\": \"{model}\", \"n_ctx\": 8192, \"default_generation_settings\": {{\"n_ctx\": 8192}}}}"),
            ),
            "/slots" => kobold(
                501,
                json,
                "{\"error\": {\"code\": 501, \"message\": \"This server does not support slots endpoint.\", \"type\": \"not_supported_error\"}}",
            ),
            _ => kobold(
                404,
                "text/html",
                "Error: KoboldCpp HTTP Server is running, but this endpoint does not exist. Please check the URL.",
            ),
        }
    })
}

/// A server with only the OpenAI API, as vLLM answers (FastAPI's 404 body), behind nothing
/// that names it: no `Server` header. Two models: a base model and a LoRA adapter on it.
pub fn openai() -> Handler {
    openai_with_key(None)
}

/// The same, started with `--api-key`: `/v1` routes answer 401 without `Authorization: Bearer`.
pub fn openai_with_key(key: Option<&'static str>) -> Handler {
    Arc::new(move |seen: &Seen| {
        let answer = |status: u16, body: &'static str| Answer::Full {
            status,
            headers: vec![
                ("date".into(), "Mon, 07 Dec 2026 09:00:00 GMT".into()),
                ("content-type".into(), "application/json".into()),
            ],
            body: Bytes::from_static(body.as_bytes()),
        };
        let bearer = seen
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if let Some(key) = key {
            if seen.path.starts_with("/v1/") && bearer != Some(key) {
                return answer(401, "{\"error\":\"Unauthorized\"}");
            }
        }
        match (seen.method.as_str(), seen.path.as_str()) {
            ("GET", "/v1/models") => answer(
                200,
                "{\"object\":\"list\",\"data\":[{\"id\":\"Qwen/Qwen3-8B\",\"object\":\"model\",\"created\":1796630400,\"owned_by\":\"vllm\",\"root\":\"Qwen/Qwen3-8B\",\"parent\":null,\"max_model_len\":32768,\"permission\":[{\"id\":\"modelperm-5f3c0d8e2b7a4c1e9d6f0a2b3c4d5e6f\",\"object\":\"model_permission\",\"created\":1796630400,\"allow_create_engine\":false,\"allow_sampling\":true,\"allow_logprobs\":true,\"allow_search_indices\":false,\"allow_view\":true,\"allow_fine_tuning\":false,\"organization\":\"*\",\"group\":null,\"is_blocking\":false}]},{\"id\":\"sql-lora\",\"object\":\"model\",\"created\":1796630400,\"owned_by\":\"vllm\",\"root\":\"/srv/loras/sql-lora\",\"parent\":\"Qwen/Qwen3-8B\",\"max_model_len\":null,\"permission\":[{\"id\":\"modelperm-0a1b2c3d4e5f60718293a4b5c6d7e8f9\",\"object\":\"model_permission\",\"created\":1796630400,\"allow_create_engine\":false,\"allow_sampling\":true,\"allow_logprobs\":true,\"allow_search_indices\":false,\"allow_view\":true,\"allow_fine_tuning\":false,\"organization\":\"*\",\"group\":null,\"is_blocking\":false}]}]}",
            ),
            _ => answer(404, "{\"detail\":\"Not Found\"}"),
        }
    })
}

/// An Ollama whose `/api/tags` and `/api/ps` bodies the test writes (`ps` may change on every
/// call); `/`, `/api/version` as the fixtures have them.
pub fn ollama_lists(
    tags: impl Fn() -> String + Send + Sync + 'static,
    ps: impl Fn() -> String + Send + Sync + 'static,
) -> Handler {
    Arc::new(move |seen: &Seen| {
        let json = "application/json; charset=utf-8";
        match seen.path.as_str() {
            "/" => Answer::ollama(
                200,
                "text/plain; charset=utf-8",
                fixture("ollama/root.body"),
            ),
            "/api/version" => Answer::ollama_json("version"),
            "/api/tags" => Answer::ollama(200, json, Bytes::from(tags())),
            "/api/ps" => Answer::ollama(200, json, Bytes::from(ps())),
            _ => Answer::ollama(404, "text/plain", Bytes::from_static(b"404 page not found")),
        }
    })
}
