//! Fibre Channel host adapters from /sys/class/fc_host: `node_fibrechannel_info` with the port's
//! identity and state, and the port's error and traffic counters
//! (`node_fibrechannel_rx_frames_total`, ...), as node_exporter reports them. Hosts without an
//! FC adapter have no class directory and report nothing.

use crate::kept_file::{KeptFileScrape, KeptFileSet};
use crate::paths::{entries_if_present, if_present, parse_counter, Paths};
use common::{log, BlockingCollector, CollectResult, MetricFamily};
use std::path::Path;

pub struct Fibrechannel {
    paths: Paths,
    files: KeptFileSet,
}

impl Fibrechannel {
    pub fn new(paths: &Paths) -> Self {
        Fibrechannel {
            paths: paths.clone(),
            files: KeptFileSet::default(),
        }
    }
}

/// Attributes that label `node_fibrechannel_info` (label, file). The WWN-like ones lose their
/// first two characters (`0x`), as node_exporter removes them.
const INFO: [(&str, &str); 10] = [
    ("dev_loss_tmo", "dev_loss_tmo"),
    ("fabric_name", "fabric_name"),
    ("port_id", "port_id"),
    ("port_name", "port_name"),
    ("port_state", "port_state"),
    ("port_type", "port_type"),
    ("speed", "speed"),
    ("supported_classes", "supported_classes"),
    ("supported_speeds", "supported_speeds"),
    ("symbolic_name", "symbolic_name"),
];
const WITHOUT_PREFIX: [&str; 3] = ["fabric_name", "port_id", "port_name"];

/// (file under statistics/, family without `node_fibrechannel_`, help).
const COUNTERS: [(&str, &str, &str); 14] = [
    (
        "dumped_frames",
        "dumped_frames_total",
        "Number of dumped frames",
    ),
    (
        "error_frames",
        "error_frames_total",
        "Number of errors in frames",
    ),
    (
        "invalid_crc_count",
        "invalid_crc_total",
        "Invalid Cyclic Redundancy Check count",
    ),
    ("rx_frames", "rx_frames_total", "Number of frames received"),
    (
        "rx_words",
        "rx_words_total",
        "Number of words received by host port",
    ),
    (
        "tx_frames",
        "tx_frames_total",
        "Number of frames transmitted by host port",
    ),
    (
        "tx_words",
        "tx_words_total",
        "Number of words transmitted by host port",
    ),
    (
        "seconds_since_last_reset",
        "seconds_since_last_reset_total",
        "Number of seconds since last host port reset",
    ),
    (
        "invalid_tx_word_count",
        "invalid_tx_words_total",
        "Number of invalid words transmitted by host port",
    ),
    (
        "link_failure_count",
        "link_failure_total",
        "Number of times the host port link has failed",
    ),
    (
        "loss_of_sync_count",
        "loss_of_sync_total",
        "Number of failures on either bit or transmission word boundaries",
    ),
    (
        "loss_of_signal_count",
        "loss_of_signal_total",
        "Number of times signal has been lost",
    ),
    (
        "nos_count",
        "nos_total",
        "Number Not_Operational Primitive Sequence received by host port",
    ),
    (
        "fcp_packet_aborts",
        "fcp_packet_aborts_total",
        "Number of aborted packets",
    ),
];

impl BlockingCollector for Fibrechannel {
    fn collect(&self) -> CollectResult {
        let dir = self.paths.sys("class/fc_host");
        let Some(hosts) = entries_if_present(&dir)? else {
            return Ok(vec![]);
        };
        let mut files = self.files.scrape();
        let mut info = MetricFamily::gauge(
            "node_fibrechannel_info",
            "Non-numeric data from /sys/class/fc_host/<host>, value is always 1.",
        );
        let mut counters: Vec<MetricFamily> = COUNTERS
            .iter()
            .map(|(_, name, help)| {
                MetricFamily::counter(format!("node_fibrechannel_{name}"), *help)
            })
            .collect();
        for (host, path) in hosts {
            let values: Vec<String> = INFO
                .iter()
                .map(|(label, file)| {
                    let value = read_attribute(&mut files, &path.join(file));
                    if WITHOUT_PREFIX.contains(label) && value.len() > 2 {
                        value[2..].to_string()
                    } else {
                        value
                    }
                })
                .collect();
            let mut labels: Vec<(&str, &str)> = vec![("fc_host", host.as_str())];
            labels.extend(INFO.iter().zip(&values).map(|((l, _), v)| (*l, v.as_str())));
            labels.sort_unstable();
            info.push(&labels, 1.0);
            let statistics = path.join("statistics");
            if !statistics.is_dir() {
                log::warn(
                    "no statistics for Fibre Channel host",
                    &[("path", &statistics.display().to_string())],
                );
                continue;
            }
            for ((file, _, _), family) in COUNTERS.iter().zip(counters.iter_mut()) {
                let file_path = statistics.join(file);
                // node_exporter reports a counter the driver lacks as 0.
                let value = match files.read(&file_path) {
                    Ok(text) => match parse_counter(&text) {
                        Some(v) => v,
                        None => {
                            log::warn(
                                "skipping unparsable Fibre Channel counter",
                                &[
                                    ("path", &file_path.display().to_string()),
                                    ("value", text.trim()),
                                ],
                            );
                            continue;
                        }
                    },
                    Err(_) => 0,
                };
                // All ones: the adapter's firmware does not implement this counter.
                if value != u64::MAX {
                    family.push(&[("fc_host", host.as_str())], value as f64);
                }
            }
        }
        let mut families = vec![info];
        families.append(&mut counters);
        Ok(families)
    }
}

/// An attribute's text, or empty where the driver does not have it.
fn read_attribute(files: &mut KeptFileScrape, path: &Path) -> String {
    match if_present(files.read(path)) {
        Ok(text) => text.map(|t| t.trim().to_string()).unwrap_or_default(),
        Err(e) => {
            log::debug(
                "Fibre Channel attribute not read",
                &[
                    ("path", &path.display().to_string()),
                    ("err", &e.to_string()),
                ],
            );
            String::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::testing::Scratch;

    #[test]
    fn info_labels_and_counters_as_node_exporter_reports_them() {
        let scratch = Scratch::new("fibrechannel");
        let root = scratch.0.clone();
        let host = "sys/class/fc_host/host0";
        for (file, value) in [
            ("speed", "16 Gbit"),
            ("port_state", "Online"),
            ("port_type", "Point-To-Point (direct nport connection)"),
            ("port_id", "0x000002"),
            ("port_name", "0x1000e0071bce95f2"),
            ("fabric_name", "0x0"),
            ("dev_loss_tmo", "30"),
            ("supported_classes", "Class 3"),
            ("statistics/rx_frames", "0x1d"),
            ("statistics/error_frames", "0xffffffffffffffff"),
            ("statistics/link_failure_count", "garbage"),
        ] {
            scratch.write_line(&format!("{host}/{file}"), value);
        }
        // A host without statistics: its info only.
        scratch.write_line("sys/class/fc_host/host1/port_state", "Linkdown");
        let paths = Paths {
            procfs: root.join("proc"),
            sysfs: root.join("sys"),
            rootfs: root.clone(),
            udev_data: root.join("udev"),
        };
        let collector = Fibrechannel::new(&paths);
        let families = collector.collect().unwrap();
        let info = &families[0].samples;
        assert_eq!(info.len(), 2);
        let labels: Vec<(&str, &str)> = info[0]
            .labels
            .iter()
            .map(|(k, v)| (k.as_ref(), v.as_str()))
            .collect();
        assert_eq!(
            labels,
            [
                ("dev_loss_tmo", "30"),
                ("fabric_name", "0"),
                ("fc_host", "host0"),
                ("port_id", "000002"),
                ("port_name", "1000e0071bce95f2"),
                ("port_state", "Online"),
                ("port_type", "Point-To-Point (direct nport connection)"),
                ("speed", "16 Gbit"),
                ("supported_classes", "Class 3"),
                ("supported_speeds", ""),
                ("symbolic_name", ""),
            ]
        );
        let value = |name: &str| -> Option<f64> {
            let family = families.iter().find(|f| f.name == name).unwrap();
            family.samples.first().map(|s| s.value)
        };
        assert_eq!(value("node_fibrechannel_rx_frames_total"), Some(29.0));
        assert_eq!(
            value("node_fibrechannel_tx_frames_total"),
            Some(0.0),
            "absent: 0"
        );
        assert_eq!(
            value("node_fibrechannel_error_frames_total"),
            None,
            "unimplemented"
        );
        assert_eq!(
            value("node_fibrechannel_link_failure_total"),
            None,
            "garbage"
        );
        std::fs::remove_dir_all(&root).unwrap();
        assert!(collector.collect().unwrap().is_empty(), "no class: nothing");
    }
}
