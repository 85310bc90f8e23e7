//! The exporter's own flags, and turning them (with the enabled collectors) into settings.

use crate::dcgm_compat::DcgmOptions;
use crate::nvml::Plan;
use crate::nvml_worker::WorkerConfig;
use clap::{Arg, ArgAction};
use common::cli::parse_duration;
use common::{CliOutcome, Settings};
use std::ffi::OsString;
use std::time::Duration;

pub struct Options {
    pub worker: WorkerConfig,
    pub dcgm: Option<DcgmOptions>,
    pub top_n: usize,
}

pub fn args() -> Vec<Arg> {
    vec![
        Arg::new("nvml.library")
            .long("nvml.library")
            .help("Path of the libnvidia-ml.so to load (default: the system's libnvidia-ml.so.1)"),
        Arg::new("nvml.timeout")
            .long("nvml.timeout")
            .default_value("2s")
            .help("How long a scrape waits for NVML before serving the previous sample"),
        Arg::new("nvml.min-interval")
            .long("nvml.min-interval")
            .default_value("500ms")
            .help("Serve a sample younger than this again instead of querying NVML"),
        Arg::new("compat.dcgm")
            .long("compat.dcgm")
            .action(ArgAction::SetTrue)
            .overrides_with("no-compat.dcgm")
            .help("Also expose dcgm-exporter's DCGM_FI_* names (default: on)"),
        Arg::new("no-compat.dcgm")
            .long("no-compat.dcgm")
            .action(ArgAction::SetTrue)
            .overrides_with("compat.dcgm")
            .help("Do not expose the DCGM_FI_* names"),
        Arg::new("compat.dcgm.hostname-label")
            .long("compat.dcgm.hostname-label")
            .default_value("Hostname")
            .help("Name of the host label on DCGM_FI_* series (dcgm-exporter 4.5: Hostname; its main branch: hostname); empty to leave it out"),
        Arg::new("processes.top-n")
            .long("processes.top-n")
            .default_value("10")
            .help("Per GPU, processes with their own series (largest memory first); the rest are summed as pid=\"other\""),
    ]
}

impl Options {
    pub fn from_settings(
        settings: &Settings,
        enabled: impl Fn(&str) -> bool,
    ) -> Result<Options, CliOutcome> {
        let duration = |key: &str| -> Result<Duration, CliOutcome> {
            Ok(settings.parsed(key, parse_duration)?.unwrap_or_default())
        };
        let timeout = duration("nvml.timeout")?;
        if timeout.is_zero() {
            return Err(settings.invalid("nvml.timeout", "0", "must be above zero"));
        }
        let top_n = settings
            .parsed("processes.top-n", |s| {
                s.parse::<usize>()
                    .map_err(|_| "expected a whole number".to_string())
            })?
            .unwrap_or(10);
        let compat = if settings.flag("no-compat.dcgm")? {
            false
        } else if settings.is_explicit("compat.dcgm") {
            settings.flag("compat.dcgm")?
        } else {
            true
        };
        let dcgm = if compat {
            let label = settings
                .value("compat.dcgm.hostname-label")?
                .unwrap_or_default();
            if !label.is_empty() && !is_label_name(&label) {
                return Err(settings.invalid(
                    "compat.dcgm.hostname-label",
                    &label,
                    "not a valid Prometheus label name",
                ));
            }
            Some(DcgmOptions {
                hostname_label: (!label.is_empty()).then_some(label),
                hostname: hostname(),
            })
        } else {
            None
        };
        Ok(Options {
            worker: WorkerConfig {
                library: settings.value("nvml.library")?.map(OsString::from),
                timeout,
                min_interval: duration("nvml.min-interval")?,
                plan: Plan {
                    processes: enabled("processes"),
                    mig: enabled("mig") || compat,
                },
                xid_events: enabled("xid"),
            },
            dcgm,
            top_n,
        })
    }
}

fn is_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `$NODE_NAME`, else the kernel's host name, as dcgm-exporter does.
fn hostname() -> String {
    if let Ok(name) = std::env::var("NODE_NAME") {
        if !name.is_empty() {
            return name;
        }
    }
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it on
    // success (we also stop at the end of the buffer).
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return String::new();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}
