//! The watchdog collector: hardware and software watchdogs from /sys/class/watchdog, one gauge
//! per numeric attribute and `node_watchdog_info` labelled by the text ones, as node_exporter
//! names them. Attributes a driver does not provide are left out.

use crate::kept_file::KeptFileSet;
use crate::paths::{entries_if_present, if_present, Paths};
use common::{log, BlockingCollector, CollectResult, MetricFamily};
use std::path::PathBuf;

pub struct Watchdog {
    dir: PathBuf,
    files: KeptFileSet,
}

impl Watchdog {
    pub fn new(paths: &Paths) -> Self {
        Watchdog {
            dir: paths.sys("class/watchdog"),
            files: KeptFileSet::default(),
        }
    }
}

/// (file, family), in family-name order.
const NUMBERS: [(&str, &str); 7] = [
    ("access_cs0", "node_watchdog_access_cs0"),
    ("bootstatus", "node_watchdog_bootstatus"),
    ("fw_version", "node_watchdog_fw_version"),
    ("nowayout", "node_watchdog_nowayout"),
    ("pretimeout", "node_watchdog_pretimeout_seconds"),
    ("timeleft", "node_watchdog_timeleft_seconds"),
    ("timeout", "node_watchdog_timeout_seconds"),
];

impl BlockingCollector for Watchdog {
    fn collect(&self) -> CollectResult {
        let Some(entries) = entries_if_present(&self.dir)? else {
            return Ok(vec![]);
        };
        let mut families: Vec<MetricFamily> = NUMBERS
            .iter()
            .map(|(file, name)| {
                MetricFamily::gauge(
                    *name,
                    ["Value of /sys/class/watchdog/<watchdog>/", file].concat(),
                )
            })
            .collect();
        let mut info = MetricFamily::gauge(
            "node_watchdog_info",
            "Info of /sys/class/watchdog/<watchdog>",
        );
        let mut files = self.files.scrape();
        for (name, path) in entries {
            let mut read = |file: &str| -> Option<String> {
                let attr = path.join(file);
                match if_present(files.read_trimmed(&attr)) {
                    Ok(value) => value,
                    Err(e) => {
                        log::debug(
                            "skipping unreadable watchdog attribute",
                            &[
                                ("path", &attr.display().to_string()),
                                ("err", &e.to_string()),
                            ],
                        );
                        None
                    }
                }
            };
            for ((file, _), family) in NUMBERS.iter().zip(families.iter_mut()) {
                let Some(raw) = read(file) else { continue };
                match raw.parse::<i64>() {
                    Ok(v) => family.push(&[("name", name.as_str())], v as f64),
                    Err(_) => log::warn(
                        "skipping unparsable watchdog value",
                        &[
                            ("path", &path.join(file).display().to_string()),
                            ("value", &raw),
                        ],
                    ),
                }
            }
            let mut text = |file: &str| read(file).unwrap_or_default();
            info.push(
                &[
                    ("identity", text("identity")),
                    ("name", name.clone()),
                    ("options", text("options")),
                    ("pretimeout_governor", text("pretimeout_governor")),
                    ("state", text("state")),
                    ("status", text("status")),
                ],
                1.0,
            );
        }
        families.push(info);
        Ok(families)
    }
}
