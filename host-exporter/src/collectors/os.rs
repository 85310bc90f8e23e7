//! The os collector: `node_os_info`, `node_os_version` and `node_os_support_end_timestamp_seconds`
//! from os-release under the rootfs (`/etc/os-release`, else `/usr/lib/os-release`). The file
//! is parsed again only when its path or modification time changes.

use crate::paths::{if_present, read_whole, Paths};
use common::{BlockingCollector, CollectResult, MetricFamily};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::SystemTime;

pub struct Os {
    candidates: [PathBuf; 2],
    cache: Mutex<Option<(PathBuf, SystemTime, Vec<MetricFamily>)>>,
}

impl Os {
    pub fn new(paths: &Paths) -> Self {
        Os {
            candidates: [
                paths.rooted("/etc/os-release"),
                paths.rooted("/usr/lib/os-release"),
            ],
            cache: Mutex::new(None),
        }
    }
}

const INFO_LABELS: [(&str, &str); 12] = [
    ("build_id", "BUILD_ID"),
    ("id", "ID"),
    ("id_like", "ID_LIKE"),
    ("image_id", "IMAGE_ID"),
    ("image_version", "IMAGE_VERSION"),
    ("name", "NAME"),
    ("pretty_name", "PRETTY_NAME"),
    ("variant", "VARIANT"),
    ("variant_id", "VARIANT_ID"),
    ("version", "VERSION"),
    ("version_codename", "VERSION_CODENAME"),
    ("version_id", "VERSION_ID"),
];

impl BlockingCollector for Os {
    fn collect(&self) -> CollectResult {
        for path in &self.candidates {
            let Some(meta) = if_present(std::fs::metadata(path))
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
            else {
                continue;
            };
            let mtime = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((cached, at, families)) = cache.as_ref() {
                if cached == path && *at == mtime {
                    return Ok(families.clone());
                }
            }
            let text = read_whole(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            let families = families(&parse_os_release(&text))
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            *cache = Some((path.clone(), mtime, families.clone()));
            return Ok(families);
        }
        // No os-release at all (a minimal container): nothing to report.
        Ok(vec![])
    }
}

fn families(env: &HashMap<String, String>) -> anyhow::Result<Vec<MetricFamily>> {
    let get = |key: &str| env.get(key).map(String::as_str).unwrap_or("");
    let labels: Vec<(&str, &str)> = INFO_LABELS.iter().map(|(l, k)| (*l, get(k))).collect();
    let mut out = vec![MetricFamily::gauge(
        "node_os_info",
        "A metric with a constant '1' value labeled by build_id, id, id_like, image_id, image_version, name, pretty_name, variant, variant_id, version, version_codename, version_id.",
    )
    .with(&labels, 1.0)];
    // The leading major.minor of VERSION_ID ("22.04.3" -> 22.04, "12" -> 12); none if it has none.
    let version_id = get("VERSION_ID");
    let digits = version_id.bytes().take_while(u8::is_ascii_digit).count();
    if digits > 0 {
        let rest = &version_id[digits..];
        let minor = rest
            .strip_prefix('.')
            .map(|r| 1 + r.bytes().take_while(u8::is_ascii_digit).count())
            .unwrap_or(0);
        let version: f64 = version_id[..digits + minor].trim_end_matches('.').parse()?;
        if version > 0.0 {
            out.push(
                MetricFamily::gauge(
                    "node_os_version",
                    "Metric containing the major.minor part of the OS version.",
                )
                .with(
                    &[
                        ("id", get("ID")),
                        ("id_like", get("ID_LIKE")),
                        ("name", get("NAME")),
                    ],
                    version,
                ),
            );
        }
    }
    let support_end = get("SUPPORT_END");
    if !support_end.is_empty() {
        let seconds = date_to_unix(support_end).ok_or_else(|| {
            anyhow::anyhow!("SUPPORT_END is not a YYYY-MM-DD date: {support_end:?}")
        })?;
        out.push(
            MetricFamily::gauge(
                "node_os_support_end_timestamp_seconds",
                "Metric containing the end-of-life date timestamp of the OS.",
            )
            .with_value(seconds as f64),
        );
    }
    Ok(out)
}

/// Seconds since the epoch at midnight UTC of a `YYYY-MM-DD` date.
fn date_to_unix(date: &str) -> Option<i64> {
    let mut parts = date.split('-');
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    let (y, m, d): (i64, i64, i64) = (y.parse().ok()?, m.parse().ok()?, d.parse().ok()?);
    let month_days = [
        31,
        28 + i64::from(y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)),
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&m) || d < 1 || d > month_days[(m - 1) as usize] {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some((era * 146_097 + doe - 719_468) * 86_400)
}

/// os-release is a shell-compatible `KEY=value` file: values may be in single or double quotes,
/// with backslash escapes inside double quotes; `#` lines are comments.
fn parse_os_release(text: &str) -> HashMap<String, String> {
    let mut env = HashMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, raw)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim();
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            continue;
        }
        env.insert(key.to_string(), unquote(raw.trim()));
    }
    env
}

fn unquote(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => out.extend(chars.by_ref().take_while(|&c| c != '\'')),
            '"' => {
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => {
                            if let Some(next) = chars.next() {
                                out.push(next);
                            }
                        }
                        c => out.push(c),
                    }
                }
            }
            '\\' => {
                if let Some(next) = chars.next() {
                    out.push(next);
                }
            }
            // An unquoted # after whitespace starts a comment.
            '#' if out.ends_with(char::is_whitespace) || out.is_empty() => break,
            c => out.push(c),
        }
    }
    out.trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etc_wins_over_usr_lib_and_a_changed_file_is_read_again() {
        let dir = std::env::temp_dir().join(format!("os-release-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("usr/lib")).unwrap();
        std::fs::create_dir_all(dir.join("etc")).unwrap();
        let paths = Paths {
            procfs: dir.join("proc"),
            sysfs: dir.join("sys"),
            rootfs: dir.clone(),
            udev_data: dir.join("udev"),
        };
        let os = Os::new(&paths);
        let id = |families: &[MetricFamily]| {
            let labels = &families[0].samples[0].labels;
            labels.iter().find(|(k, _)| k == "id").unwrap().1.clone()
        };
        assert!(os.collect().unwrap().is_empty(), "no os-release: nothing");
        std::fs::write(dir.join("usr/lib/os-release"), "ID=debian\n").unwrap();
        assert_eq!(id(&os.collect().unwrap()), "debian");
        std::fs::write(dir.join("etc/os-release"), "ID=fedora\n").unwrap();
        assert_eq!(id(&os.collect().unwrap()), "fedora");
        // A new modification time: parsed again.
        std::fs::write(dir.join("etc/os-release"), "ID=arch\n").unwrap();
        let later = std::time::SystemTime::now() + std::time::Duration::from_secs(10);
        std::fs::File::options()
            .write(true)
            .open(dir.join("etc/os-release"))
            .unwrap()
            .set_modified(later)
            .unwrap();
        assert_eq!(id(&os.collect().unwrap()), "arch");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn quoting_and_versions() {
        let env = parse_os_release(
            "NAME=\"Ubuntu\"\nVERSION_ID='22.04.3'\n# comment\nID=ubuntu # trailing\nPRETTY_NAME=\"A \\\"quoted\\\" name\"\nbad line\nSUPPORT_END=2027-06-30\n",
        );
        assert_eq!(env["NAME"], "Ubuntu");
        assert_eq!(env["VERSION_ID"], "22.04.3");
        assert_eq!(env["ID"], "ubuntu");
        assert_eq!(env["PRETTY_NAME"], "A \"quoted\" name");
        let built = families(&env).unwrap();
        assert_eq!(built[1].samples[0].value, 22.04);
        assert_eq!(built[2].samples[0].value, 1_814_313_600.0);
        assert_eq!(date_to_unix("1970-01-01"), Some(0));
        assert_eq!(date_to_unix("2024-02-29"), Some(1_709_164_800));
        assert_eq!(date_to_unix("2023-02-29"), None);
        assert_eq!(date_to_unix("soon"), None);
        // Rolling releases have no VERSION_ID: no version series.
        let arch = parse_os_release("NAME=\"Arch Linux\"\nID=arch\nBUILD_ID=rolling\n");
        assert_eq!(families(&arch).unwrap().len(), 1);
        let bad = parse_os_release("SUPPORT_END=never\n");
        assert!(families(&bad).is_err());
    }
}
