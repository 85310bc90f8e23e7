//! Network interface properties from sysfs, /sys/class/net/<device>/ (`node_network_up`,
//! `node_network_info`, `node_network_speed_bytes`, `node_network_mtu_bytes`, ...), as
//! node_exporter's netclass collector reads them without `--collector.netclass.netlink`.
//! An attribute the driver does not answer (a down link's `carrier` and `speed` give EINVAL)
//! is left out for that device.

use crate::kept_file::KeptFile;
use crate::paths::{entries_if_present, Paths};
use common::{log, BlockingCollector, CollectResult, MetricFamily, MetricType};
use regex_lite::Regex;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

pub struct Netclass {
    paths: Paths,
    ignored: Regex,
    ignore_invalid_speed: bool,
    /// Each device's attribute files, kept open; devices gone are dropped (containers create
    /// and delete veth interfaces all the time).
    devices: Mutex<HashMap<String, DeviceFiles>>,
}

/// node_exporter's default for `--collector.netclass.ignored-devices`: none.
pub const DEFAULT_IGNORED_DEVICES: &str = "^$";

/// (sysfs attribute, family, help, type), numbers. `speed` is Mbit/s and becomes bytes per
/// second.
const NUMERIC: [(&str, &str, &str, MetricType); 17] = [
    (
        "addr_assign_type",
        "node_network_address_assign_type",
        "Network device property: address_assign_type",
        MetricType::Gauge,
    ),
    (
        "carrier",
        "node_network_carrier",
        "Network device property: carrier",
        MetricType::Gauge,
    ),
    (
        "carrier_changes",
        "node_network_carrier_changes_total",
        "Network device property: carrier_changes_total",
        MetricType::Counter,
    ),
    (
        "carrier_up_count",
        "node_network_carrier_up_changes_total",
        "Network device property: carrier_up_changes_total",
        MetricType::Counter,
    ),
    (
        "carrier_down_count",
        "node_network_carrier_down_changes_total",
        "Network device property: carrier_down_changes_total",
        MetricType::Counter,
    ),
    (
        "dev_id",
        "node_network_device_id",
        "Network device property: device_id",
        MetricType::Gauge,
    ),
    (
        "dormant",
        "node_network_dormant",
        "Network device property: dormant",
        MetricType::Gauge,
    ),
    (
        "flags",
        "node_network_flags",
        "Network device property: flags",
        MetricType::Gauge,
    ),
    (
        "ifindex",
        "node_network_iface_id",
        "Network device property: iface_id",
        MetricType::Gauge,
    ),
    (
        "iflink",
        "node_network_iface_link",
        "Network device property: iface_link",
        MetricType::Gauge,
    ),
    (
        "link_mode",
        "node_network_iface_link_mode",
        "Network device property: iface_link_mode",
        MetricType::Gauge,
    ),
    (
        "mtu",
        "node_network_mtu_bytes",
        "Network device property: mtu_bytes",
        MetricType::Gauge,
    ),
    (
        "name_assign_type",
        "node_network_name_assign_type",
        "Network device property: name_assign_type",
        MetricType::Gauge,
    ),
    (
        "netdev_group",
        "node_network_net_dev_group",
        "Network device property: net_dev_group",
        MetricType::Gauge,
    ),
    (
        "speed",
        "node_network_speed_bytes",
        "Network device property: speed_bytes",
        MetricType::Gauge,
    ),
    (
        "tx_queue_len",
        "node_network_transmit_queue_length",
        "Network device property: transmit_queue_length",
        MetricType::Gauge,
    ),
    (
        "type",
        "node_network_protocol_type",
        "Network device property: protocol_type",
        MetricType::Gauge,
    ),
];
const SPEED: usize = 14;
const FLAGS: usize = 7;

/// Text attributes, the labels of `node_network_info`.
const TEXT: [&str; 5] = ["address", "broadcast", "duplex", "operstate", "ifalias"];
const OPERSTATE: usize = 3;

struct DeviceFiles {
    numeric: Vec<KeptFile>,
    text: Vec<KeptFile>,
}

impl DeviceFiles {
    fn new(dir: &Path) -> Self {
        DeviceFiles {
            numeric: NUMERIC
                .iter()
                .map(|(file, _, _, _)| KeptFile::new(dir.join(file)))
                .collect(),
            text: TEXT
                .iter()
                .map(|file| KeptFile::new(dir.join(file)))
                .collect(),
        }
    }
}

/// An attribute's text, or `None` where it cannot be read (EINVAL on a down link, absent on
/// old kernels).
fn read_attribute(file: &KeptFile) -> Option<String> {
    match file.read_io() {
        Ok(text) => Some(text.trim().to_string()),
        Err(e) => {
            log::debug(
                "network device attribute not read",
                &[
                    ("path", &file.path().display().to_string()),
                    ("err", &e.to_string()),
                ],
            );
            None
        }
    }
}

/// Decimal, or hex with 0x (`flags` is `0x1003`), as strconv.ParseInt with base 0 reads them.
fn parse_number(text: &str) -> Option<i64> {
    let text = text.trim();
    match text.strip_prefix("0x") {
        Some(hex) => i64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

impl Netclass {
    pub fn new(paths: &Paths, ignored: Regex, ignore_invalid_speed: bool) -> Self {
        Netclass {
            paths: paths.clone(),
            ignored,
            ignore_invalid_speed,
            devices: Mutex::new(HashMap::new()),
        }
    }
}

impl BlockingCollector for Netclass {
    fn collect(&self) -> CollectResult {
        let dir = self.paths.sys("class/net");
        let Some(entries) = entries_if_present(&dir)? else {
            return Ok(vec![]);
        };
        let mut up = MetricFamily::gauge(
            "node_network_up",
            "Value is 1 if operstate is 'up', 0 otherwise.",
        );
        let mut info = MetricFamily::gauge(
            "node_network_info",
            "Non-numeric data from /sys/class/net/<iface>, value is always 1.",
        );
        let mut numeric: Vec<MetricFamily> = NUMERIC
            .iter()
            .map(|(_, name, help, kind)| MetricFamily::new(*name, *help, *kind))
            .collect();
        let mut kept = self.devices.lock().unwrap_or_else(|p| p.into_inner());
        let mut previous = std::mem::take(&mut *kept);
        for (device, path) in entries {
            // Devices are directories (symlinks to them); bonding_masters is a file.
            match std::fs::metadata(&path) {
                Ok(meta) if meta.is_dir() => {}
                Ok(_) => continue,
                Err(e) => {
                    log::warn(
                        "skipping network device",
                        &[
                            ("path", &path.display().to_string()),
                            ("err", &e.to_string()),
                        ],
                    );
                    continue;
                }
            }
            if self.ignored.is_match(&device) {
                continue;
            }
            let files = previous
                .remove(&device)
                .unwrap_or_else(|| DeviceFiles::new(&path));
            let text: Vec<String> = files
                .text
                .iter()
                .map(|f| read_attribute(f).unwrap_or_default())
                .collect();
            let values: Vec<Option<i64>> = files
                .numeric
                .iter()
                .map(|f| read_attribute(f).and_then(|t| parse_number(&t)))
                .collect();
            let device_label = [("device", device.as_str())];
            up.push(
                &device_label,
                if text[OPERSTATE] == "up" { 1.0 } else { 0.0 },
            );
            let adminstate = match values[FLAGS] {
                None => "unknown",
                Some(flags) if flags & libc::IFF_UP as i64 != 0 => "up",
                Some(_) => "down",
            };
            info.push(
                &[
                    ("address", text[0].as_str()),
                    ("adminstate", adminstate),
                    ("broadcast", text[1].as_str()),
                    ("device", device.as_str()),
                    ("duplex", text[2].as_str()),
                    ("ifalias", text[4].as_str()),
                    ("operstate", text[3].as_str()),
                ],
                1.0,
            );
            for (index, (family, value)) in numeric.iter_mut().zip(values).enumerate() {
                let Some(value) = value else { continue };
                if index == SPEED {
                    // Some drivers answer -1 for an unknown speed; node_exporter reports it
                    // (as -125000) unless told to ignore it.
                    if value < 0 && self.ignore_invalid_speed {
                        continue;
                    }
                    family.push(&device_label, (value * 1000 * 1000 / 8) as f64);
                } else {
                    family.push(&device_label, value as f64);
                }
            }
            kept.insert(device, files);
        }
        let mut families = vec![up, info];
        families.append(&mut numeric);
        Ok(families)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_device(root: &Path, device: &str, attributes: &[(&str, &str)]) {
        let dir = root.join("sys/class/net").join(device);
        std::fs::create_dir_all(&dir).unwrap();
        for (name, value) in attributes {
            std::fs::write(dir.join(name), format!("{value}\n")).unwrap();
        }
    }

    fn value(families: &[MetricFamily], name: &str, device: &str) -> Option<f64> {
        families
            .iter()
            .find(|f| f.name == name)?
            .samples
            .iter()
            .find(|s| s.labels.iter().any(|(k, v)| k == "device" && v == device))
            .map(|s| s.value)
    }

    #[test]
    fn attributes_become_families_and_unreadable_ones_are_left_out() {
        let root = std::env::temp_dir().join(format!("netclass-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        write_device(
            &root,
            "eth0",
            &[
                ("operstate", "up"),
                ("address", "02:fc:00:00:00:01"),
                ("broadcast", "ff:ff:ff:ff:ff:ff"),
                ("duplex", "full"),
                ("flags", "0x1003"),
                ("mtu", "1500"),
                ("speed", "1000"),
                ("carrier_changes", "2"),
                ("type", "1"),
            ],
        );
        write_device(
            &root,
            "veth9",
            &[
                ("operstate", "down"),
                ("flags", "0x1002"),
                ("speed", "-1"),
                ("mtu", "x"),
            ],
        );
        std::fs::write(root.join("sys/class/net/bonding_masters"), "bond0\n").unwrap();
        let paths = Paths {
            procfs: root.join("proc"),
            sysfs: root.join("sys"),
            rootfs: root.clone(),
            udev_data: root.join("udev"),
        };
        let netclass = Netclass::new(&paths, Regex::new(DEFAULT_IGNORED_DEVICES).unwrap(), false);
        let families = netclass.collect().unwrap();
        assert_eq!(value(&families, "node_network_up", "eth0"), Some(1.0));
        assert_eq!(value(&families, "node_network_up", "veth9"), Some(0.0));
        assert_eq!(value(&families, "node_network_flags", "eth0"), Some(4099.0));
        assert_eq!(
            value(&families, "node_network_mtu_bytes", "eth0"),
            Some(1500.0)
        );
        assert_eq!(
            value(&families, "node_network_mtu_bytes", "veth9"),
            None,
            "garbage"
        );
        assert_eq!(
            value(&families, "node_network_speed_bytes", "eth0"),
            Some(125e6)
        );
        assert_eq!(
            value(&families, "node_network_speed_bytes", "veth9"),
            Some(-125000.0)
        );
        assert_eq!(
            value(&families, "node_network_carrier", "eth0"),
            None,
            "absent"
        );
        let counter = families
            .iter()
            .find(|f| f.name == "node_network_carrier_changes_total")
            .unwrap();
        assert_eq!(counter.kind, MetricType::Counter);
        let info = &families
            .iter()
            .find(|f| f.name == "node_network_info")
            .unwrap()
            .samples;
        assert_eq!(info.len(), 2, "bonding_masters is not a device");
        let labels = |i: usize| -> Vec<(&str, &str)> {
            info[i]
                .labels
                .iter()
                .map(|(k, v)| (k.as_ref(), v.as_str()))
                .collect()
        };
        assert_eq!(
            labels(0),
            [
                ("address", "02:fc:00:00:00:01"),
                ("adminstate", "up"),
                ("broadcast", "ff:ff:ff:ff:ff:ff"),
                ("device", "eth0"),
                ("duplex", "full"),
                ("ifalias", ""),
                ("operstate", "up"),
            ]
        );
        assert_eq!(labels(1)[1], ("adminstate", "down"));
        assert_eq!(netclass.devices.lock().unwrap().len(), 2);

        // Invalid speeds ignored on request; ignored devices left out; a deleted device's
        // files are dropped.
        let netclass = Netclass::new(&paths, Regex::new("^eth").unwrap(), true);
        let families = netclass.collect().unwrap();
        assert_eq!(value(&families, "node_network_speed_bytes", "veth9"), None);
        assert_eq!(value(&families, "node_network_up", "eth0"), None);
        std::fs::remove_dir_all(root.join("sys/class/net/veth9")).unwrap();
        let families = netclass.collect().unwrap();
        assert_eq!(value(&families, "node_network_up", "veth9"), None);
        assert!(netclass.devices.lock().unwrap().is_empty());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
