//! The cpufreq collector: per-CPU current, minimum and maximum frequencies (hardware and
//! scaling) and the scaling governor, from /sys/devices/system/cpu/cpuN/cpufreq, in hertz
//! (sysfs says kHz).

use crate::kept_file::{KeptFileScrape, KeptFileSet};
use crate::paths::{entries_if_present, if_present, Paths};
use common::{log, BlockingCollector, CollectResult, MetricFamily};
use std::path::PathBuf;

pub struct Cpufreq {
    dir: PathBuf,
    /// About eight attributes per CPU, read every scrape: kept open.
    files: KeptFileSet,
}

impl Cpufreq {
    pub fn new(paths: &Paths) -> Self {
        Cpufreq {
            dir: paths.sys("devices/system/cpu"),
            files: KeptFileSet::default(),
        }
    }
}

/// (file, family, help), in the order node_exporter emits them.
const FREQUENCIES: [(&str, &str, &str); 6] = [
    (
        "cpuinfo_cur_freq",
        "node_cpu_frequency_hertz",
        "Current CPU thread frequency in hertz.",
    ),
    (
        "cpuinfo_max_freq",
        "node_cpu_frequency_max_hertz",
        "Maximum CPU thread frequency in hertz.",
    ),
    (
        "cpuinfo_min_freq",
        "node_cpu_frequency_min_hertz",
        "Minimum CPU thread frequency in hertz.",
    ),
    (
        "scaling_cur_freq",
        "node_cpu_scaling_frequency_hertz",
        "Current scaled CPU thread frequency in hertz.",
    ),
    (
        "scaling_max_freq",
        "node_cpu_scaling_frequency_max_hertz",
        "Maximum scaled CPU thread frequency in hertz.",
    ),
    (
        "scaling_min_freq",
        "node_cpu_scaling_frequency_min_hertz",
        "Minimum scaled CPU thread frequency in hertz.",
    ),
];

/// A sysfs attribute, or None where it is absent or unreadable (cpuinfo_cur_freq is root-only).
fn attribute(files: &mut KeptFileScrape, path: PathBuf) -> Option<String> {
    match if_present(files.read_trimmed(&path)) {
        Ok(value) => value,
        Err(e) => {
            log::debug(
                "skipping unreadable cpufreq attribute",
                &[
                    ("path", &path.display().to_string()),
                    ("err", &e.to_string()),
                ],
            );
            None
        }
    }
}

impl BlockingCollector for Cpufreq {
    fn collect(&self) -> CollectResult {
        let Some(entries) = entries_if_present(&self.dir)? else {
            return Ok(vec![]);
        };
        let mut cpus: Vec<(u32, PathBuf)> = entries
            .into_iter()
            .filter_map(|(name, path)| {
                Some((
                    name.strip_prefix("cpu")?.parse().ok()?,
                    path.join("cpufreq"),
                ))
            })
            .filter(|(_, path)| path.is_dir())
            .collect();
        cpus.sort();
        let mut families: Vec<MetricFamily> = FREQUENCIES
            .iter()
            .map(|(_, name, help)| MetricFamily::gauge(*name, *help))
            .collect();
        let mut governors = MetricFamily::gauge(
            "node_cpu_scaling_governor",
            "Current enabled CPU frequency governor.",
        );
        let mut files = self.files.scrape();
        for (number, dir) in cpus {
            let cpu = number.to_string();
            for ((file, _, _), family) in FREQUENCIES.iter().zip(families.iter_mut()) {
                let path = dir.join(file);
                let Some(raw) = attribute(&mut files, path.clone()) else {
                    continue;
                };
                match raw.parse::<u64>() {
                    Ok(khz) => family.push(&[("cpu", cpu.as_str())], khz as f64 * 1000.0),
                    Err(_) => log::warn(
                        "skipping unparsable cpufreq value",
                        &[("path", &path.display().to_string()), ("value", &raw)],
                    ),
                }
            }
            let Some(current) =
                attribute(&mut files, dir.join("scaling_governor")).filter(|g| !g.is_empty())
            else {
                continue;
            };
            let available =
                attribute(&mut files, dir.join("scaling_available_governors")).unwrap_or_default();
            for governor in available.split(' ') {
                governors.push(
                    &[("cpu", cpu.as_str()), ("governor", governor)],
                    if governor == current { 1.0 } else { 0.0 },
                );
            }
        }
        families.push(governors);
        Ok(families)
    }
}
