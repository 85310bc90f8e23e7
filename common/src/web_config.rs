//! The exporter-toolkit web configuration file (`--web.config.file`), as node_exporter and
//! Prometheus read it: TLS with an optional client CA, bcrypt basic auth, extra headers.
//! Relative paths are resolved against the file's directory. Any problem stops start-up with a
//! message naming the file and the key.

use base64::Engine;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebConfigFile {
    tls_server_config: Option<TlsServerConfig>,
    #[serde(default)]
    basic_auth_users: BTreeMap<String, String>,
    http_server_config: Option<HttpServerConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsServerConfig {
    cert_file: Option<String>,
    key_file: Option<String>,
    client_auth_type: Option<String>,
    client_ca_file: Option<String>,
    min_version: Option<String>,
    max_version: Option<String>,
    // Accepted for compatibility with existing files; rustls picks safe suites and curves.
    #[allow(dead_code)]
    cipher_suites: Option<Vec<String>>,
    #[allow(dead_code)]
    curve_preferences: Option<Vec<String>>,
    #[allow(dead_code)]
    prefer_server_cipher_suites: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpServerConfig {
    #[allow(dead_code)]
    http2: Option<bool>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

/// What the server needs from the file, checked and loaded.
pub struct WebConfig {
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub auth: Option<BasicAuth>,
    pub headers: Vec<(hyper::header::HeaderName, hyper::header::HeaderValue)>,
}

impl WebConfig {
    pub fn none() -> Self {
        WebConfig {
            tls: None,
            auth: None,
            headers: Vec::new(),
        }
    }

    pub fn load(path: &Path) -> Result<Self, String> {
        let shown = path.display();
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read --web.config.file {shown}: {e}"))?;
        check_shape(&text).map_err(|e| format!("--web.config.file {shown}: {e}"))?;
        let file: WebConfigFile = if text.trim().is_empty() {
            WebConfigFile::default()
        } else {
            serde_yaml_ng::from_str(&text).map_err(|e| format!("--web.config.file {shown}: {e}"))?
        };
        let base = path.parent().unwrap_or(Path::new("."));
        let tls = match &file.tls_server_config {
            Some(tls) => Some(Arc::new(
                build_tls(tls, base).map_err(|e| format!("--web.config.file {shown}: {e}"))?,
            )),
            None => None,
        };
        let auth = if file.basic_auth_users.is_empty() {
            None
        } else {
            for (user, hash) in &file.basic_auth_users {
                hash.parse::<bcrypt::HashParts>().map_err(|e| {
                    format!("--web.config.file {shown}: basic_auth_users.{user}: not a bcrypt hash: {e}")
                })?;
            }
            Some(BasicAuth::new(file.basic_auth_users))
        };
        let mut headers = Vec::new();
        if let Some(http) = file.http_server_config {
            for (name, value) in http.headers {
                let header_name = hyper::header::HeaderName::from_bytes(name.as_bytes())
                    .map_err(|e| format!("--web.config.file {shown}: header '{name}': {e}"))?;
                let header_value = hyper::header::HeaderValue::from_str(&value)
                    .map_err(|e| format!("--web.config.file {shown}: header '{name}': {e}"))?;
                headers.push((header_name, header_value));
            }
        }
        Ok(WebConfig { tls, auth, headers })
    }
}

/// A web config is a few hundred bytes. The YAML parser takes quadratic time in the nesting of
/// flow collections (32,000 `[` took 1.5 s, and more grows fast), so refuse what no real file
/// looks like before parsing: over 64 KiB, or flow collections nested deeper than 32.
fn check_shape(text: &str) -> Result<(), String> {
    const MAX_BYTES: usize = 64 << 10;
    const MAX_FLOW_DEPTH: usize = 32;
    if text.len() > MAX_BYTES {
        return Err(format!("larger than {} KiB", MAX_BYTES >> 10));
    }
    let mut depth = 0usize;
    for byte in text.bytes() {
        match byte {
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_FLOW_DEPTH {
                    return Err(format!("nested deeper than {MAX_FLOW_DEPTH} levels"));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

fn resolve(base: &Path, file: &str) -> PathBuf {
    let p = Path::new(file);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// TLS versions we offer, oldest first; the index orders them.
const TLS_VERSIONS: [&rustls::SupportedProtocolVersion; 2] =
    [&rustls::version::TLS12, &rustls::version::TLS13];

fn tls_version(name: &str, key: &str) -> Result<usize, String> {
    match name {
        "TLS12" => Ok(0),
        "TLS13" => Ok(1),
        "TLS10" | "TLS11" => Err(format!(
            "tls_server_config.{key}: {name} is not supported (TLS12 or TLS13)"
        )),
        other => Err(format!(
            "tls_server_config.{key}: unknown TLS version '{other}'"
        )),
    }
}

fn build_tls(tls: &TlsServerConfig, base: &Path) -> Result<rustls::ServerConfig, String> {
    let cert_file = tls
        .cert_file
        .as_deref()
        .filter(|s| !s.is_empty())
        .ok_or("tls_server_config: missing cert_file")?;
    let key_file = tls
        .key_file
        .as_deref()
        .filter(|s| !s.is_empty())
        .ok_or("tls_server_config: missing key_file")?;
    let cert_path = resolve(base, cert_file);
    let key_path = resolve(base, key_file);
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
        .map_err(|e| format!("tls_server_config.cert_file {}: {e}", cert_path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("tls_server_config.cert_file {}: {e}", cert_path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "tls_server_config.cert_file {}: no certificate found",
            cert_path.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .map_err(|e| format!("tls_server_config.key_file {}: {e}", key_path.display()))?;

    let min = tls_version(tls.min_version.as_deref().unwrap_or("TLS12"), "min_version")?;
    let max = tls_version(tls.max_version.as_deref().unwrap_or("TLS13"), "max_version")?;
    let versions: Vec<&'static rustls::SupportedProtocolVersion> =
        TLS_VERSIONS.get(min..=max).unwrap_or_default().to_vec();
    if versions.is_empty() {
        return Err("tls_server_config: min_version is above max_version".into());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| format!("tls_server_config: {e}"))?;

    let auth_type = tls.client_auth_type.as_deref().unwrap_or("NoClientCert");
    let client_roots = || -> Result<Arc<rustls::RootCertStore>, String> {
        let ca = tls.client_ca_file.as_deref().ok_or_else(|| {
            format!("tls_server_config: client_auth_type {auth_type} needs client_ca_file")
        })?;
        let ca_path = resolve(base, ca);
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(&ca_path).map_err(|e| {
            format!(
                "tls_server_config.client_ca_file {}: {e}",
                ca_path.display()
            )
        })? {
            let cert = cert.map_err(|e| {
                format!(
                    "tls_server_config.client_ca_file {}: {e}",
                    ca_path.display()
                )
            })?;
            roots.add(cert).map_err(|e| {
                format!(
                    "tls_server_config.client_ca_file {}: {e}",
                    ca_path.display()
                )
            })?;
        }
        Ok(Arc::new(roots))
    };
    let verifier = match auth_type {
        "NoClientCert" | "" => None,
        "RequireAndVerifyClientCert" => Some(
            rustls::server::WebPkiClientVerifier::builder_with_provider(client_roots()?, provider)
                .build()
                .map_err(|e| format!("tls_server_config.client_ca_file: {e}"))?,
        ),
        "VerifyClientCertIfGiven" => Some(
            rustls::server::WebPkiClientVerifier::builder_with_provider(client_roots()?, provider)
                .allow_unauthenticated()
                .build()
                .map_err(|e| format!("tls_server_config.client_ca_file: {e}"))?,
        ),
        other => {
            return Err(format!(
                "tls_server_config.client_auth_type: '{other}' is not supported (NoClientCert, VerifyClientCertIfGiven, RequireAndVerifyClientCert)"
            ))
        }
    };
    let builder = match verifier {
        Some(v) => builder.with_client_cert_verifier(v),
        None => builder.with_no_client_auth(),
    };
    builder.with_single_cert(certs, key).map_err(|e| {
        format!("tls_server_config: certificate and key do not match or are invalid: {e}")
    })
}

/// Users with bcrypt hashes, checked as exporter-toolkit checks them.
///
/// bcrypt is slow by design (252 ms per check at cost 12 on the development VM), and the server
/// runs on one thread: checked inline, 8 connections sending wrong passwords pushed good scrapes
/// to 6.3 s and 32 stopped them. So a check runs on a blocking thread, one at a time (a flood costs
/// one core, not the process), and its outcome is remembered per user and password, failures
/// included, so a repeated wrong password costs nothing. Good logins are kept apart from failures,
/// so a flood of new wrong passwords cannot evict them: a known good login never waits behind a
/// bcrypt check. An unknown user is checked against a dummy hash of the same cost, so the answer
/// takes as long as for a known user with a wrong password and does not tell users apart.
pub struct BasicAuth {
    users: BTreeMap<String, String>,
    granted: Mutex<HashSet<(String, String)>>,
    refused: Mutex<HashSet<(String, String)>>,
    one_at_a_time: Arc<tokio::sync::Semaphore>,
    dummy_hash: Arc<OnceLock<String>>,
}

/// Entries each cache holds before it starts over; bounds memory under a flood of new passwords.
const OUTCOME_CACHE_LIMIT: usize = 256;

impl BasicAuth {
    fn new(users: BTreeMap<String, String>) -> Self {
        let auth = BasicAuth {
            users,
            granted: Mutex::new(HashSet::new()),
            refused: Mutex::new(HashSet::new()),
            one_at_a_time: Arc::new(tokio::sync::Semaphore::new(1)),
            dummy_hash: Arc::new(OnceLock::new()),
        };
        // Made now, not at the first unknown user, whose check would otherwise cost two
        // bcrypt runs and so take longer than a known user's.
        let cost = auth.dummy_cost();
        auth.dummy_hash
            .get_or_init(|| bcrypt::hash("not a password of anyone", cost).unwrap_or_default());
        auth
    }

    /// Checks an `Authorization` header value.
    pub async fn check(&self, header: Option<&str>) -> bool {
        let Some(key) = header.and_then(decode_basic) else {
            return false;
        };
        if let Some(known) = self.remembered(&key) {
            return known;
        }
        let Ok(turn) = self.one_at_a_time.clone().acquire_owned().await else {
            return false;
        };
        // Another request may have checked the same login while this one waited its turn.
        if let Some(known) = self.remembered(&key) {
            return known;
        }
        let hash = self.users.get(&key.0).cloned();
        let known_user = hash.is_some();
        let cost = self.dummy_cost();
        let dummy = self.dummy_hash.clone();
        let password = key.1.clone();
        // The permit moves into the blocking task: a client that leaves mid-check does not let
        // a second check start beside the first.
        let verified = tokio::task::spawn_blocking(move || {
            let _turn = turn;
            let hash = hash.unwrap_or_else(|| {
                dummy
                    .get_or_init(|| {
                        bcrypt::hash("not a password of anyone", cost).unwrap_or_default()
                    })
                    .clone()
            });
            bcrypt::verify(password, &hash).unwrap_or(false)
        })
        .await
        .unwrap_or(false);
        let ok = verified && known_user;
        let cache = if ok { &self.granted } else { &self.refused };
        if let Ok(mut outcomes) = cache.lock() {
            if outcomes.len() >= OUTCOME_CACHE_LIMIT {
                outcomes.clear();
            }
            outcomes.insert(key);
        }
        ok
    }

    fn remembered(&self, key: &(String, String)) -> Option<bool> {
        let has = |cache: &Mutex<HashSet<(String, String)>>| {
            cache.lock().map(|c| c.contains(key)).unwrap_or(false)
        };
        if has(&self.granted) {
            Some(true)
        } else if has(&self.refused) {
            Some(false)
        } else {
            None
        }
    }

    /// The dummy hash costs what the users' hashes cost (the highest, if they differ).
    fn dummy_cost(&self) -> u32 {
        self.users
            .values()
            .filter_map(|h| h.parse::<bcrypt::HashParts>().ok())
            .map(|parts| parts.get_cost())
            .max()
            .unwrap_or(bcrypt::DEFAULT_COST)
    }
}

fn decode_basic(header: &str) -> Option<(String, String)> {
    let encoded = header
        .strip_prefix("Basic ")
        .or_else(|| header.strip_prefix("basic "))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("webcfg-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[tokio::test]
    async fn basic_auth_checks_bcrypt_and_rejects_everything_else() {
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        let auth = BasicAuth::new(BTreeMap::from([("prom".to_string(), hash)]));
        let header = |u: &str, p: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
            )
        };
        assert!(auth.check(Some(&header("prom", "s3cret"))).await);
        assert!(
            auth.check(Some(&header("prom", "s3cret"))).await,
            "cached path"
        );
        assert!(!auth.check(Some(&header("prom", "wrong"))).await);
        assert!(
            !auth.check(Some(&header("prom", "wrong"))).await,
            "cached failure"
        );
        assert!(!auth.check(Some(&header("other", "s3cret"))).await);
        assert!(!auth.check(Some("Basic !!!not-base64")).await);
        assert!(!auth.check(Some("Bearer abc")).await);
        assert!(!auth.check(None).await);
        // Failures are remembered apart from good logins: a flood of new wrong passwords
        // cannot push a good login out of its cache.
        for i in 0..OUTCOME_CACHE_LIMIT + 3 {
            auth.refused
                .lock()
                .unwrap()
                .insert(("prom".into(), format!("guess {i}")));
        }
        assert!(!auth.check(Some(&header("prom", "another guess"))).await);
        assert!(auth.remembered(&("prom".into(), "s3cret".into())) == Some(true));
        // An unknown user is checked against a dummy hash of the users' cost.
        assert_eq!(auth.dummy_cost(), 4);
        assert!(auth
            .dummy_hash
            .get()
            .is_some_and(|h| h.starts_with("$2b$04$")));
    }

    #[test]
    fn bad_files_are_clear_errors() {
        let dir = temp_dir("bad");
        let cases = [
            (
                "unknown.yml",
                "tls_server_config:\n  cert_fil: x\n",
                "cert_fil",
            ),
            (
                "nokey.yml",
                "tls_server_config:\n  cert_file: a.crt\n",
                "missing key_file",
            ),
            (
                "missing.yml",
                "tls_server_config:\n  cert_file: a.crt\n  key_file: a.key\n",
                "a.crt",
            ),
            (
                "hash.yml",
                "basic_auth_users:\n  prom: plaintext\n",
                "not a bcrypt hash",
            ),
            (
                "yaml.yml",
                "basic_auth_users: [unclosed\n",
                "web.config.file",
            ),
            (
                "deep.yml",
                &format!("basic_auth_users: {}\n", "[".repeat(32_000)),
                "nested deeper than 32",
            ),
            (
                "huge.yml",
                &format!("basic_auth_users:\n{}", "  # comment\n".repeat(10_000)),
                "larger than 64 KiB",
            ),
        ];
        for (name, text, expected) in cases {
            let path = write(&dir, name, text);
            let err = WebConfig::load(&path)
                .err()
                .unwrap_or_else(|| panic!("{name} loaded"));
            assert!(err.contains(expected), "{name}: {err}");
        }
        let err = WebConfig::load(&dir.join("absent.yml")).err().unwrap();
        assert!(err.contains("absent.yml"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn empty_file_means_plain_http() {
        let dir = temp_dir("empty");
        let config = WebConfig::load(&write(&dir, "web.yml", "")).unwrap();
        assert!(config.tls.is_none() && config.auth.is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
