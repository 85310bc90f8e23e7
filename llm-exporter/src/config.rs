//! The exporter's own flags, and how they become a list of upstreams. Every per-upstream setting
//! is a repeatable `NAME=VALUE` flag, so that the same settings also work from the environment
//! and from TOML as arrays of strings (`[upstream] url = ["local=http://127.0.0.1:8080"]`). The
//! TOML file may instead describe each upstream in one `[[upstream]]` table:
//!
//! ```toml
//! [[upstream]]
//! name = "llama"
//! url = "http://127.0.0.1:8080"
//! backend = "llama.cpp"              # auto (default), llama.cpp, ollama, koboldcpp or openai
//! api-key-file = "/etc/llm-exporter/llama.key"
//! proxy = "127.0.0.1:8081"           # listen address of a measuring proxy in front of it
//! ```

use clap::{Arg, ArgAction};
use common::{CliOutcome, Settings};
use llm_proxy::telemetry::{span_export, Destination, OtlpConfig, TelemetryConfig};
use std::collections::BTreeMap;
use std::time::Duration;

/// Which API an upstream speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    LlamaCpp,
    Ollama,
    /// KoboldCpp: it imitates Ollama's and llama-server's routes with made-up values, so it is
    /// read through its own.
    KoboldCpp,
    /// Any other server with the OpenAI API (vLLM, SGLang, LM Studio, llama-swap, LocalAI, ...):
    /// only `/v1/models` is common to them all.
    OpenAi,
}

impl Backend {
    pub fn label(self) -> &'static str {
        match self {
            Backend::LlamaCpp => "llama.cpp",
            Backend::Ollama => "ollama",
            Backend::KoboldCpp => "koboldcpp",
            Backend::OpenAi => "openai",
        }
    }
}

/// What the operator asked for: a fixed backend, or detection on first contact.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendChoice {
    Auto,
    Fixed(Backend),
}

#[derive(Clone, Debug)]
pub struct UpstreamConfig {
    pub name: String,
    /// `http://host:port` without a trailing slash.
    pub base_url: String,
    pub backend: BackendChoice,
    /// Read from a file at start-up; sent as a bearer token, never logged.
    pub api_key: Option<String>,
    pub proxy_listen: Option<String>,
}

impl UpstreamConfig {
    /// An upstream as first named; backend, key and proxy come from the per-upstream settings.
    fn new(name: String, base_url: String) -> Self {
        UpstreamConfig {
            name,
            base_url,
            backend: BackendChoice::Auto,
            api_key: None,
            proxy_listen: None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Config {
    pub upstreams: Vec<UpstreamConfig>,
    /// Deadline for polling one upstream (all its requests together).
    pub poll_timeout: Duration,
    /// Distinct model label values the poller keeps per upstream before the rest count as `other`.
    pub poll_max_models: usize,
    pub proxy: ProxyConfig,
    /// The proxy's access log and span export (`--proxy.access-log`, `--proxy.otlp-*`).
    pub telemetry: TelemetryConfig,
}

#[derive(Clone, Debug)]
pub struct ProxyConfig {
    /// How long the proxy waits for an upstream's response headers.
    pub header_timeout: Duration,
    /// How long a response body may stay silent before the proxy gives up on it.
    pub idle_timeout: Duration,
    /// How long the proxy waits for a client: for a request head (an idle keep-alive
    /// connection included) and for the client to take each write.
    pub client_timeout: Duration,
    /// Distinct model label values kept before new ones are counted as `other`.
    pub max_models: usize,
    /// Threads serving the proxy listeners (`--proxy.threads`; `auto`: one per available core).
    pub threads: usize,
}

pub fn args() -> Vec<Arg> {
    let repeatable = |id: &'static str, help: &'static str| {
        // The empty default is a workaround: common's TOML loader accepts only settings that
        // clap reports as matched, and a repeatable flag without a default is not.
        Arg::new(id)
            .long(id)
            .action(ArgAction::Append)
            .value_delimiter(',')
            .default_value("")
            .hide_default_value(true)
            .help(help)
    };
    vec![
        repeatable(
            "upstream",
            "Model server to watch, NAME=URL (e.g. local=http://127.0.0.1:8080); repeatable",
        ),
        repeatable("upstream.url", "Same as --upstream (for the TOML [upstream] table)"),
        repeatable(
            "upstream.backend",
            "Backend of an upstream, NAME=auto|llama.cpp|ollama|koboldcpp|openai (default auto); repeatable",
        ),
        repeatable(
            "upstream.api-key-file",
            "File holding an upstream's API key, NAME=PATH, sent as a bearer token; repeatable",
        ),
        repeatable(
            "proxy",
            "Serve a measuring reverse proxy for upstream NAME, NAME=LISTEN_ADDR; repeatable",
        ),
        repeatable("upstream.proxy", "Same as --proxy (for the TOML [upstream] table)"),
        Arg::new("upstream.timeout")
            .long("upstream.timeout")
            .default_value("5s")
            .help("Deadline for polling one upstream on a scrape"),
        Arg::new("upstream.max-models")
            .long("upstream.max-models")
            .default_value("100")
            .help("Distinct model label values the poller keeps per upstream before further models are counted as 'other'"),
        Arg::new("proxy.header-timeout")
            .long("proxy.header-timeout")
            .default_value("10m")
            .help("How long the proxy waits for an upstream's response headers (queued requests wait here)"),
        Arg::new("proxy.idle-timeout")
            .long("proxy.idle-timeout")
            .default_value("5m")
            .help("How long a proxied response may send nothing before the proxy ends it"),
        Arg::new("proxy.client-timeout")
            .long("proxy.client-timeout")
            .default_value("30s")
            .help("How long the proxy waits for a client's request head (idle keep-alive connections included) and for a client to take each write"),
        Arg::new("proxy.max-models")
            .long("proxy.max-models")
            .default_value("32")
            .help("Distinct model label values before further models are counted as 'other'"),
        Arg::new("proxy.threads")
            .long("proxy.threads")
            .default_value("auto")
            .help("Threads serving the proxy listeners; auto: one per available core"),
        Arg::new("proxy.access-log")
            .long("proxy.access-log")
            .default_value("")
            .hide_default_value(true)
            .help("JSON access log of proxied inference requests: stdout, stderr or a file path (appended); empty: off"),
        Arg::new("proxy.access-log-queue")
            .long("proxy.access-log-queue")
            .default_value("4096")
            .help("Access log lines waiting for the writer at most; beyond, lines are dropped and counted"),
        Arg::new("proxy.otlp-endpoint")
            .long("proxy.otlp-endpoint")
            .default_value("")
            .hide_default_value(true)
            .help("OTLP/HTTP traces URL to export a span per proxied inference request to (e.g. http://127.0.0.1:4318/v1/traces); empty: off"),
        Arg::new("proxy.otlp-service-name")
            .long("proxy.otlp-service-name")
            .default_value("llm-exporter")
            .help("The spans' service.name resource attribute"),
        Arg::new("proxy.otlp-queue-size")
            .long("proxy.otlp-queue-size")
            .default_value("2048")
            .help("Spans waiting for export at most; beyond, spans are dropped and counted"),
        Arg::new("proxy.otlp-batch-interval")
            .long("proxy.otlp-batch-interval")
            .default_value("5s")
            .help("How often waiting spans are exported (a batch of 512 goes at once)"),
        Arg::new("proxy.otlp-timeout")
            .long("proxy.otlp-timeout")
            .default_value("10s")
            .help("Deadline of one export to the collector; a batch that misses it is dropped and counted"),
    ]
}

/// Splits `NAME=VALUE`; the name is what labels and logs show.
fn split_pair(raw: &str) -> Result<(String, String), String> {
    let (name, value) = raw
        .split_once('=')
        .ok_or("expected NAME=VALUE".to_string())?;
    let name = name.trim();
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(format!(
            "'{name}' is not a valid name (letters, digits, - _ .)"
        ));
    }
    Ok((name.to_string(), value.trim().to_string()))
}

/// Checks an upstream URL: plain `http://host:port[/prefix]`; TLS upstreams are not supported.
pub fn parse_base_url(raw: &str) -> Result<String, String> {
    let rest = raw
        .strip_prefix("http://")
        .ok_or("expected an http:// URL (https is not supported)")?;
    let authority = rest.split('/').next().unwrap_or("");
    if authority.is_empty() {
        return Err("the URL has no host".into());
    }
    let uri: hyper::Uri = raw.parse().map_err(|e| format!("not a URL: {e}"))?;
    if uri.query().is_some() {
        return Err("the URL must not have a query".into());
    }
    Ok(raw.trim_end_matches('/').to_string())
}

fn parse_backend(raw: &str) -> Result<BackendChoice, String> {
    match raw {
        "auto" => Ok(BackendChoice::Auto),
        "llama.cpp" | "llamacpp" | "llama-server" => Ok(BackendChoice::Fixed(Backend::LlamaCpp)),
        "ollama" => Ok(BackendChoice::Fixed(Backend::Ollama)),
        "koboldcpp" => Ok(BackendChoice::Fixed(Backend::KoboldCpp)),
        "openai" => Ok(BackendChoice::Fixed(Backend::OpenAi)),
        _ => Err("expected auto, llama.cpp, ollama, koboldcpp or openai".into()),
    }
}

fn positive_count(s: &str) -> Result<usize, String> {
    s.parse::<usize>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| "expected a whole number above zero".to_string())
}

/// The most lines or spans a telemetry queue may hold: its slots are allocated when it is made
/// (about 300 bytes a line), so a mistyped size must be refused, not tried.
const MAX_QUEUE: usize = 1_000_000;

fn queue_size(s: &str) -> Result<usize, String> {
    s.parse::<usize>()
        .ok()
        .filter(|n| (1..=MAX_QUEUE).contains(n))
        .ok_or_else(|| format!("expected a whole number from 1 to {MAX_QUEUE}"))
}

fn positive_duration(s: &str) -> Result<Duration, String> {
    let d = common::cli::parse_duration(s)?;
    if d.is_zero() {
        Err("must be above zero".into())
    } else {
        Ok(d)
    }
}

/// The keys an `[[upstream]]` table may hold, and the flag each stands for.
const TABLE_KEYS: &[(&str, &str)] = &[
    ("backend", "upstream.backend"),
    ("api-key-file", "upstream.api-key-file"),
    ("proxy", "proxy"),
];

/// One per-upstream setting as given: where it came from (for errors) and its value.
struct Given {
    key: &'static str,
    raw: String,
    value: String,
}

/// The `[[upstream]]` tables of the config file: the upstreams they name, and their
/// per-upstream settings by upstream name.
fn upstream_tables(
    settings: &Settings,
    upstreams: &mut Vec<UpstreamConfig>,
    given: &mut BTreeMap<String, Vec<Given>>,
) -> Result<(), CliOutcome> {
    let Some(tables) = settings.tables("upstream")? else {
        return Ok(());
    };
    for table in tables {
        let shown = format!("{table:?}");
        let invalid = |why: &str| settings.invalid("upstream", &shown, why);
        if let Some(unknown) = table.keys().find(|k| {
            !matches!(k.as_str(), "name" | "url") && !TABLE_KEYS.iter().any(|(t, _)| t == k)
        }) {
            return Err(invalid(&format!(
                "unknown key '{unknown}' in [[upstream]] (name, url, backend, api-key-file, proxy)"
            )));
        }
        let name = table
            .get("name")
            .ok_or_else(|| invalid("[[upstream]] needs a name"))?;
        let url = table
            .get("url")
            .ok_or_else(|| invalid("[[upstream]] needs a url"))?;
        let (name, url) = split_pair(&format!("{name}={url}")).map_err(|e| invalid(&e))?;
        let base_url = parse_base_url(&url).map_err(|e| invalid(&e))?;
        if upstreams.iter().any(|u| u.name == name) {
            return Err(invalid("this upstream name is used twice"));
        }
        for (field, key) in TABLE_KEYS {
            if let Some(value) = table.get(*field) {
                given.entry(name.clone()).or_default().push(Given {
                    key,
                    raw: format!("{field} = {value:?} in [[upstream]] '{name}'"),
                    value: value.trim().to_string(),
                });
            }
        }
        upstreams.push(UpstreamConfig::new(name, base_url));
    }
    Ok(())
}

pub fn load(settings: &Settings) -> Result<Config, CliOutcome> {
    let mut upstreams: Vec<UpstreamConfig> = Vec::new();
    // Per-upstream settings from the [[upstream]] tables and the NAME=VALUE flags, by name.
    let mut given: BTreeMap<String, Vec<Given>> = BTreeMap::new();
    upstream_tables(settings, &mut upstreams, &mut given)?;
    let from_tables = !upstreams.is_empty();
    for key in ["upstream", "upstream.url"] {
        if key == "upstream" && from_tables {
            continue;
        }
        for raw in settings.values(key)?.into_iter().filter(|v| !v.is_empty()) {
            let (name, url) = split_pair(&raw).map_err(|e| settings.invalid(key, &raw, &e))?;
            let base_url = parse_base_url(&url).map_err(|e| settings.invalid(key, &raw, &e))?;
            if upstreams.iter().any(|u| u.name == name) {
                return Err(settings.invalid(key, &raw, "this upstream name is used twice"));
            }
            upstreams.push(UpstreamConfig::new(name, base_url));
        }
    }

    for (key, flag) in [
        ("upstream.backend", "upstream.backend"),
        ("upstream.api-key-file", "upstream.api-key-file"),
        ("proxy", "proxy"),
        ("upstream.proxy", "proxy"),
    ] {
        for raw in settings.values(key)?.into_iter().filter(|v| !v.is_empty()) {
            let (name, value) = split_pair(&raw).map_err(|e| settings.invalid(key, &raw, &e))?;
            if !upstreams.iter().any(|u| u.name == name) {
                return Err(settings.invalid(
                    key,
                    &raw,
                    &format!("no upstream named '{name}' (add --upstream {name}=URL)"),
                ));
            }
            given.entry(name).or_default().push(Given {
                key: flag,
                raw,
                value,
            });
        }
    }

    for upstream in &mut upstreams {
        let settings_of = given.remove(&upstream.name).unwrap_or_default();
        for (i, g) in settings_of.iter().enumerate() {
            if settings_of[..i].iter().any(|earlier| earlier.key == g.key) {
                return Err(settings.invalid(g.key, &g.raw, "given twice for this upstream"));
            }
            let invalid = |why: &str| settings.invalid(g.key, &g.raw, why);
            match g.key {
                "upstream.backend" => {
                    upstream.backend = parse_backend(&g.value).map_err(|e| invalid(&e))?;
                }
                "upstream.api-key-file" => {
                    let text = std::fs::read_to_string(&g.value)
                        .map_err(|e| invalid(&format!("cannot read: {e}")))?;
                    let key = text.trim();
                    if key.is_empty() {
                        return Err(invalid("the file is empty"));
                    }
                    upstream.api_key = Some(key.to_string());
                }
                _ => {
                    common::server::parse_listen_address(&g.value).map_err(|e| invalid(&e))?;
                    upstream.proxy_listen = Some(g.value.clone());
                }
            }
        }
    }

    let poll_timeout = settings
        .parsed("upstream.timeout", positive_duration)?
        .unwrap_or(Duration::from_secs(5));
    let header_timeout = settings
        .parsed("proxy.header-timeout", positive_duration)?
        .unwrap_or(Duration::from_secs(600));
    let idle_timeout = settings
        .parsed("proxy.idle-timeout", positive_duration)?
        .unwrap_or(Duration::from_secs(300));
    let client_timeout = settings
        .parsed("proxy.client-timeout", positive_duration)?
        .unwrap_or(Duration::from_secs(30));
    let max_models = settings
        .parsed("proxy.max-models", positive_count)?
        .unwrap_or(32);
    let poll_max_models = settings
        .parsed("upstream.max-models", positive_count)?
        .unwrap_or(100);
    let threads = settings
        .parsed("proxy.threads", parse_threads)?
        .unwrap_or_else(available_cores);
    let telemetry = telemetry(settings)?;
    Ok(Config {
        upstreams,
        poll_timeout,
        poll_max_models,
        proxy: ProxyConfig {
            header_timeout,
            idle_timeout,
            client_timeout,
            max_models,
            threads,
        },
        telemetry,
    })
}

/// The access log and span export settings; both off unless given.
fn telemetry(settings: &Settings) -> Result<TelemetryConfig, CliOutcome> {
    let access_log = settings
        .value("proxy.access-log")?
        .and_then(|raw| Destination::parse(raw.trim()));
    let access_log_queue = settings
        .parsed("proxy.access-log-queue", queue_size)?
        .unwrap_or(4096);
    let endpoint = settings.value("proxy.otlp-endpoint")?.unwrap_or_default();
    let endpoint = endpoint.trim();
    let otlp = if endpoint.is_empty() {
        None
    } else {
        span_export::parse_endpoint(endpoint)
            .map_err(|e| settings.invalid("proxy.otlp-endpoint", endpoint, &e))?;
        let defaults = OtlpConfig::new(endpoint);
        Some(OtlpConfig {
            service_name: settings
                .value("proxy.otlp-service-name")?
                .filter(|s| !s.trim().is_empty())
                .unwrap_or(defaults.service_name),
            queue_size: settings
                .parsed("proxy.otlp-queue-size", queue_size)?
                .unwrap_or(defaults.queue_size),
            interval: settings
                .parsed("proxy.otlp-batch-interval", positive_duration)?
                .unwrap_or(defaults.interval),
            timeout: settings
                .parsed("proxy.otlp-timeout", positive_duration)?
                .unwrap_or(defaults.timeout),
            ..defaults
        })
    };
    Ok(TelemetryConfig {
        access_log,
        access_log_queue,
        otlp,
    })
}

/// The most `--proxy.threads` accepted: far beyond any useful value, low enough that a typo
/// does not start thousands of threads.
const MAX_PROXY_THREADS: usize = 1024;

fn parse_threads(s: &str) -> Result<usize, String> {
    if s.trim() == "auto" {
        return Ok(available_cores());
    }
    s.trim()
        .parse::<usize>()
        .ok()
        .filter(|n| (1..=MAX_PROXY_THREADS).contains(n))
        .ok_or_else(|| format!("expected 'auto' or a whole number from 1 to {MAX_PROXY_THREADS}"))
}

fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_and_urls() {
        assert_eq!(
            split_pair("local=http://x:1").unwrap(),
            ("local".into(), "http://x:1".into())
        );
        assert!(split_pair("nope").is_err());
        assert!(split_pair("bad name=x").is_err());
        assert!(split_pair("=x").is_err());
        assert_eq!(
            parse_base_url("http://127.0.0.1:8080/").unwrap(),
            "http://127.0.0.1:8080"
        );
        assert!(parse_base_url("https://x").is_err());
        assert!(parse_base_url("http://").is_err());
        assert!(parse_base_url("http://x/?a=1").is_err());
        assert_eq!(
            parse_backend("llama.cpp").unwrap(),
            BackendChoice::Fixed(Backend::LlamaCpp)
        );
        assert_eq!(
            parse_backend("openai").unwrap(),
            BackendChoice::Fixed(Backend::OpenAi)
        );
        assert_eq!(
            parse_backend("koboldcpp").unwrap(),
            BackendChoice::Fixed(Backend::KoboldCpp)
        );
        assert!(parse_backend("vllm").is_err());
    }

    #[test]
    fn proxy_threads() {
        assert_eq!(parse_threads("auto").unwrap(), available_cores());
        assert_eq!(parse_threads("3").unwrap(), 3);
        assert_eq!(parse_threads("1024").unwrap(), 1024);
        for bad in ["0", "-1", "1025", "two", "1.5", ""] {
            assert!(parse_threads(bad).is_err(), "{bad}");
        }
    }
}
