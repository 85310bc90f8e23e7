//! The `textfile` collector: the `*.prom` files in each `--collector.textfile.directory` (a glob
//! pattern, repeatable), served as they are, with `node_textfile_mtime_seconds{file}` for each
//! file read and `node_textfile_scrape_error`. It is how people add smartctl, nvme-cli and their
//! own cron jobs' metrics, so it keeps node_exporter's rules (its `collector/textfile.go`):
//!
//! - A file that does not parse, or has a sample with a timestamp, is left out whole: logged
//!   with its path, and `node_textfile_scrape_error` is 1. So is a directory that cannot be read
//!   (a pattern that matches nothing is read as a directory name).
//! - A family named in several files is one family. The first HELP text of a name wins; a later
//!   family with another HELP is left out (an error, as above). A family without HELP gets
//!   "Metric read from <the files>". Then the rules of the common runner's join apply (as
//!   client_golang's registry does them for node_exporter, without a scrape error): a later
//!   family of another type or help is dropped, and so is a later sample with the same labels.
//! - Within one file's family, a label that some samples lack is added to them with value "";
//!   a repeated label set is dropped.
//! - The exporter's own families win over a file's family of the same name, and a family whose
//!   name is another's `_count`, `_sum` or `_bucket` series is dropped (the registry's rule).
//! - A label name with the reserved `__` prefix refuses its file (node_exporter panics on it).
//!
//! Reads never block a scrape: a file is opened non-blocking and must be a regular file (a FIFO
//! named `x.prom` would otherwise wait for a writer), and at most 8 MiB of it is read.

mod glob;
pub mod parser;

use crate::paths::MAX_FILE_BYTES;
use common::log;
use common::metrics::{HistogramValue, LabelName, Sample, SummaryValue};
use common::{BlockingCollector, CollectResult, MetricFamily, MetricType};
use parser::{Family, Kind, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

pub struct Textfile {
    /// The flag's values: directories or glob patterns.
    patterns: Vec<String>,
}

impl Textfile {
    pub fn new(patterns: Vec<String>) -> Self {
        Textfile { patterns }
    }
}

/// One file that parsed: its path as the `file` label shows it, mtime, families.
struct ReadFile {
    path: String,
    mtime: f64,
    families: Vec<Family>,
}

impl BlockingCollector for Textfile {
    fn collect(&self) -> CollectResult {
        let mut errored = false;
        let mut files = Vec::new();
        for dir in self.patterns.iter().flat_map(|p| directories(p.as_bytes())) {
            let shown = String::from_utf8_lossy(&dir).into_owned();
            let entries = match sorted_names(&dir) {
                Ok(entries) => entries,
                // node_exporter's default directory is "", read and silently skipped.
                Err(_) if dir.is_empty() => continue,
                Err(e) => {
                    errored = true;
                    log::error(
                        "failed to read textfile collector directory",
                        &[("path", &shown), ("err", &e.to_string())],
                    );
                    continue;
                }
            };
            for name in entries.iter().filter(|n| n.ends_with(b".prom")) {
                let path = glob::join(&dir, name);
                let shown = String::from_utf8_lossy(&path).into_owned();
                match read_file(&path) {
                    Ok((mtime, families)) => files.push(ReadFile {
                        path: shown,
                        mtime,
                        families,
                    }),
                    Err(e) => {
                        errored = true;
                        log::error(
                            "failed to collect textfile data",
                            &[("file", &shown), ("err", &e)],
                        );
                    }
                }
            }
        }

        let mut out = Vec::new();
        let mut mtimes = MetricFamily::gauge(
            "node_textfile_mtime_seconds",
            "Unixtime mtime of textfiles successfully read.",
        );
        // By path, once each: two patterns may name the same directory.
        let by_path: BTreeMap<&str, f64> = files.iter().map(|f| (&*f.path, f.mtime)).collect();
        for (path, mtime) in by_path {
            mtimes.push(&[("file", path)], mtime);
        }
        let families = merge_files(files, &mut errored);
        out.push(mtimes);
        out.push(
            MetricFamily::gauge(
                "node_textfile_scrape_error",
                "1 if there was an error opening or reading a file, 0 otherwise",
            )
            .with_value(if errored { 1.0 } else { 0.0 }),
        );
        // After the collector's own two, so that those win a clash of names (see the runner).
        out.extend(families);
        Ok(out)
    }
}

/// The directories a flag value stands for: the glob's matches, or the value itself when it
/// matches nothing or is not a valid pattern (then reading it fails and is reported).
fn directories(pattern: &[u8]) -> Vec<Vec<u8>> {
    match glob::glob(pattern) {
        Ok(found) if !found.is_empty() => found,
        _ => vec![pattern.to_vec()],
    }
}

fn sorted_names(dir: &[u8]) -> std::io::Result<Vec<Vec<u8>>> {
    let mut names: Vec<Vec<u8>> = std::fs::read_dir(OsStr::from_bytes(dir))?
        .filter_map(Result::ok)
        .map(|e| e.file_name().as_bytes().to_vec())
        .collect();
    names.sort();
    Ok(names)
}

/// Reads and parses one file: its mtime in whole seconds and its families, or why not.
fn read_file(path: &[u8]) -> Result<(f64, Vec<Family>), String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let shown = String::from_utf8_lossy(path);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(OsStr::from_bytes(path))
        .map_err(|e| format!("failed to open textfile data file {shown:?}: {e}"))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("failed to stat {shown:?}: {e}"))?;
    if !meta.is_file() {
        return Err(format!(
            "{shown:?} is not a regular file (a directory, FIFO, socket or device); not read"
        ));
    }
    let mut data = Vec::with_capacity((meta.len() as usize).min(MAX_FILE_BYTES) + 1);
    (&file)
        .take(MAX_FILE_BYTES as u64 + 1)
        .read_to_end(&mut data)
        .map_err(|e| format!("failed to read {shown:?}: {e}"))?;
    if data.len() > MAX_FILE_BYTES {
        return Err(format!(
            "{shown:?} is larger than {} MiB; not read",
            MAX_FILE_BYTES >> 20
        ));
    }
    let parsed = parser::parse(&data)
        .map_err(|e| format!("failed to parse textfile data from {shown:?}: {e}"))?;
    if parsed.has_timestamps {
        return Err(format!(
            "textfile {shown:?} contains unsupported client-side timestamps, skipping entire file"
        ));
    }
    // A label name with the reserved `__` prefix parses, but node_exporter then panics on it
    // (1.5.0: "is not a valid label name", the process exits); here the file is refused.
    let reserved = parsed.families.iter().find_map(|f| {
        f.metrics
            .iter()
            .flat_map(|m| &m.labels)
            .find(|(k, _)| k.starts_with("__"))
            .map(|(k, _)| (f.name.as_str(), k.as_str()))
    });
    if let Some((family, label)) = reserved {
        return Err(format!(
            "textfile {shown:?}: {label:?} is not a valid label name for metric {family:?} (the __ prefix is reserved)"
        ));
    }
    // The mtime after parsing, as node_exporter takes it (so that a failure does not look
    // fresh), of the file that was read even if a writer has renamed a new one over it since.
    let mtime = file
        .metadata()
        .and_then(|m| m.modified())
        .map_err(|e| format!("failed to stat {shown:?}: {e}"))?;
    let seconds = match mtime.duration_since(std::time::UNIX_EPOCH) {
        Ok(after) => after.as_secs() as f64,
        Err(before) => -(before.duration().as_secs() as f64),
    };
    Ok((seconds, parsed.families))
}

/// node_exporter's HELP rules across files, then each family converted; see the module doc.
fn merge_files(files: Vec<ReadFile>, errored: &mut bool) -> Vec<MetricFamily> {
    // Per name: the first HELP seen, and whether a later one differed (then every later family
    // of the name is left out).
    let mut helps: HashMap<String, (String, bool)> = HashMap::new();
    let mut paths_of: HashMap<String, Vec<String>> = HashMap::new();
    let mut kept: Vec<Family> = Vec::new();
    for file in files {
        for family in file.families {
            if let Some((first, conflicted)) = helps.get_mut(&family.name) {
                let differs = family.help.as_ref().is_some_and(|h| h != first);
                if differs || *conflicted {
                    *conflicted = true;
                    *errored = true;
                    log::error(
                        "inconsistent metric help text",
                        &[
                            ("metric", &family.name),
                            ("original_help_text", first),
                            ("new_help_text", family.help.as_deref().unwrap_or("")),
                            ("file", &file.path),
                        ],
                    );
                    continue;
                }
            }
            if let Some(help) = &family.help {
                helps.insert(family.name.clone(), (help.clone(), false));
            }
            paths_of
                .entry(family.name.clone())
                .or_default()
                .push(file.path.clone());
            kept.push(family);
        }
    }
    let mut registered: BTreeMap<String, MetricType> = BTreeMap::new();
    let mut out = Vec::with_capacity(kept.len());
    for family in kept {
        let help = match &family.help {
            Some(help) => help.clone(),
            None => format!("Metric read from {}", paths_of[&family.name].join(", ")),
        };
        let converted = convert(family, help);
        if let Some(clash) = suffix_clash(&converted, &registered) {
            log::error(
                "dropping a textfile family whose name clashes with a histogram's or summary's series",
                &[("family", &converted.name), ("clashes_with", &clash)],
            );
            continue;
        }
        registered
            .entry(converted.name.to_string())
            .or_insert(converted.kind);
        out.push(converted);
    }
    out
}

/// A name that collides with the series of a histogram or summary already there (`x_count`
/// beside a summary `x`, or a histogram `x` beside a family `x_bucket`), as client_golang's
/// registry refuses it: both in one exposition could not be told apart.
fn suffix_clash(
    family: &MetricFamily,
    registered: &BTreeMap<String, MetricType>,
) -> Option<String> {
    let name = &*family.name;
    for suffix in ["_count", "_sum", "_bucket"] {
        let Some(base) = name.strip_suffix(suffix).filter(|b| !b.is_empty()) else {
            continue;
        };
        match registered.get(base) {
            Some(MetricType::Histogram) => return Some(base.to_string()),
            Some(MetricType::Summary) if suffix != "_bucket" => return Some(base.to_string()),
            _ => {}
        }
    }
    let suffixes: &[&str] = match family.kind {
        MetricType::Histogram => &["_count", "_sum", "_bucket"],
        MetricType::Summary => &["_count", "_sum"],
        _ => &[],
    };
    suffixes
        .iter()
        .map(|s| format!("{name}{s}"))
        .find(|n| registered.contains_key(n))
}

/// One file's family as the exporter serves it: labels that some samples lack added as "",
/// labels sorted by name, samples sorted by label values, repeated label sets dropped (the first
/// kept), quantiles and buckets sorted with the last of a repeated bound kept.
fn convert(family: Family, help: String) -> MetricFamily {
    let kind = match family.kind {
        Kind::Counter => MetricType::Counter,
        Kind::Gauge => MetricType::Gauge,
        Kind::Summary => MetricType::Summary,
        Kind::Histogram => MetricType::Histogram,
        // The parser refuses samples of a gauge histogram; only untyped is left.
        Kind::Untyped | Kind::GaugeHistogram => MetricType::Untyped,
    };
    let all_names: HashSet<&str> = family
        .metrics
        .iter()
        .flat_map(|m| m.labels.iter().map(|(k, _)| k.as_str()))
        .collect();
    let mut samples: Vec<Sample> = Vec::with_capacity(family.metrics.len());
    for metric in &family.metrics {
        let mut labels: Vec<(LabelName, String)> = metric
            .labels
            .iter()
            .map(|(k, v)| (LabelName::from(k.clone()), v.clone()))
            .collect();
        for name in &all_names {
            if !metric.labels.iter().any(|(k, _)| k == name) {
                labels.push((LabelName::from(name.to_string()), String::new()));
            }
        }
        labels.sort_by(|a, b| a.0.cmp(&b.0));
        let mut sample = Sample {
            labels,
            value: 0.0,
            histogram: None,
            summary: None,
        };
        match &metric.value {
            Value::Simple(v) => sample.value = *v,
            Value::Summary {
                quantiles,
                sum,
                count,
            } => {
                sample.summary = Some(SummaryValue {
                    quantiles: last_of_each(quantiles),
                    sum: *sum,
                    count: *count,
                })
            }
            Value::Histogram {
                buckets,
                sum,
                count,
            } => {
                sample.histogram = Some(HistogramValue {
                    buckets: last_of_each(buckets),
                    sum: *sum,
                    count: *count,
                })
            }
        }
        samples.push(sample);
    }
    // client_golang's order: fewer labels first, then by label values in label-name order. The
    // sort is stable, and every sample now has the same label names: repeated label sets are
    // neighbours, the first of them from the file's first line.
    samples.sort_by(|a, b| {
        let values_b = b.labels.iter().map(|(_, v)| v);
        a.labels
            .len()
            .cmp(&b.labels.len())
            .then_with(|| a.labels.iter().map(|(_, v)| v).cmp(values_b))
    });
    samples.dedup_by(|later, earlier| {
        let repeated = later.labels == earlier.labels;
        if repeated {
            log::error(
                "dropping a sample collected before with the same name and labels",
                &[
                    ("family", &family.name),
                    ("labels", &format!("{:?}", later.labels)),
                ],
            );
        }
        repeated
    });
    MetricFamily {
        name: family.name.into(),
        help: help.into(),
        kind,
        samples,
    }
}

/// Pairs sorted by their first value; of pairs with the same first value, the last in the
/// file is kept (client_golang builds a map from them).
fn last_of_each<T: Copy>(pairs: &[(f64, T)]) -> Vec<(f64, T)> {
    let mut sorted: Vec<(usize, (f64, T))> = pairs.iter().copied().enumerate().collect();
    sorted.sort_by(|a, b| a.1 .0.total_cmp(&b.1 .0).then(b.0.cmp(&a.0)));
    sorted.dedup_by(|later, earlier| later.1 .0 == earlier.1 .0);
    sorted.into_iter().map(|(_, pair)| pair).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_bounds_keep_the_last_and_come_out_sorted() {
        let pairs = [(1.0, 10u64), (f64::INFINITY, 30), (0.5, 5), (1.0, 11)];
        assert_eq!(
            last_of_each(&pairs),
            [(0.5, 5), (1.0, 11), (f64::INFINITY, 30)]
        );
    }

    #[test]
    fn a_pattern_that_matches_nothing_or_is_malformed_is_taken_as_a_directory() {
        assert_eq!(
            directories(b"/nonexistent/*/x"),
            [b"/nonexistent/*/x".to_vec()]
        );
        assert_eq!(directories(b"/tmp/[unclosed"), [b"/tmp/[unclosed".to_vec()]);
        assert_eq!(directories(b""), [Vec::<u8>::new()]);
    }

    #[test]
    fn no_directory_gives_no_error_and_no_mtimes() {
        let families = Textfile::new(Vec::new()).collect().unwrap();
        let error = families
            .iter()
            .find(|f| f.name == "node_textfile_scrape_error")
            .unwrap();
        assert_eq!(error.samples[0].value, 0.0);
        assert!(families
            .iter()
            .all(|f| f.name == "node_textfile_scrape_error" || f.samples.is_empty()));
    }
}
