//! The exporter's own flags (the shared ones come from `common`), read back into one struct.

use crate::backend::Choice;
use clap::Arg;
use common::cli::parse_duration;
use common::{CliOutcome, Settings};
use std::path::PathBuf;
use std::time::Duration;

pub fn flags() -> Vec<Arg> {
    vec![
        Arg::new("backend")
            .long("backend")
            .default_value("auto")
            .help("How to read the GPUs: auto (sysfs where amdgpu devices are found, else rocm-smi), sysfs or rocm-smi"),
        Arg::new("path.sysfs")
            .long("path.sysfs")
            .default_value("/sys")
            .help("sysfs mount point"),
        Arg::new("path.procfs")
            .long("path.procfs")
            .default_value("/proc")
            .help("procfs mount point (per-process GPU memory, kernel release)"),
        Arg::new("rocm-smi.path")
            .long("rocm-smi.path")
            .default_value("rocm-smi")
            .help("rocm-smi program, a path or a name looked up in PATH"),
        Arg::new("rocm-smi.timeout")
            .long("rocm-smi.timeout")
            .default_value("5s")
            .help("Hard limit for one rocm-smi run; its process group is killed after it"),
        Arg::new("sysfs.timeout")
            .long("sysfs.timeout")
            .default_value("2s")
            .help("How long a scrape waits for the sysfs reads (a wedged GPU can block them)"),
        Arg::new("collector.processes.max-series")
            .long("collector.processes.max-series")
            .default_value("200")
            .help("Most amdgpu_process_* series; the largest memory users are kept"),
    ]
}

#[derive(Clone, Debug)]
pub struct Config {
    pub backend: Choice,
    pub sysfs: PathBuf,
    pub procfs: PathBuf,
    pub rocm_smi_path: String,
    pub rocm_smi_timeout: Duration,
    pub sysfs_timeout: Duration,
    pub scrape_timeout: Duration,
    pub processes_max_series: usize,
}

fn positive_duration(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d.is_zero() {
        Err("must be above zero".into())
    } else {
        Ok(d)
    }
}

impl Config {
    pub fn from_settings(settings: &Settings) -> Result<Config, CliOutcome> {
        let text = |key: &str| -> Result<String, CliOutcome> {
            Ok(settings.value(key)?.unwrap_or_default())
        };
        let duration = |key: &str, default: u64| -> Result<Duration, CliOutcome> {
            Ok(settings
                .parsed(key, positive_duration)?
                .unwrap_or(Duration::from_secs(default)))
        };
        Ok(Config {
            backend: settings
                .parsed("backend", Choice::parse)?
                .unwrap_or(Choice::Auto),
            sysfs: PathBuf::from(text("path.sysfs")?),
            procfs: PathBuf::from(text("path.procfs")?),
            rocm_smi_path: text("rocm-smi.path")?,
            rocm_smi_timeout: duration("rocm-smi.timeout", 5)?,
            sysfs_timeout: duration("sysfs.timeout", 2)?,
            scrape_timeout: duration("scrape.timeout", 9)?,
            processes_max_series: settings
                .parsed("collector.processes.max-series", |s| {
                    s.parse::<usize>()
                        .map_err(|_| "expected a whole number".to_string())
                })?
                .unwrap_or(200),
        })
    }

    /// How long a scrape waits for a fresh sample: the backend's own limit plus a moment for
    /// the kill to be reported, but well inside the scrape deadline, so that a slow backend
    /// still leaves time to serve the last good sample.
    pub fn scrape_wait(&self, backend_timeout: Duration) -> Duration {
        (backend_timeout + Duration::from_millis(250)).min(self.scrape_timeout.mul_f64(0.8))
    }
}
