//! ARP entries per device from /proc/net/arp (`node_arp_entries`), as node_exporter reads it
//! with `--no-collector.arp.netlink`. Its netlink reader's `node_arp_states` is not made: the
//! neighbour states are not in /proc/net/arp.

use crate::filter::DeviceFilter;
use crate::kept_file::KeptFile;
use crate::paths::Paths;
use common::{log, BlockingCollector, CollectResult, MetricFamily};
use std::collections::BTreeMap;

pub struct Arp {
    file: KeptFile,
    filter: DeviceFilter,
}

impl Arp {
    pub fn new(paths: &Paths, filter: DeviceFilter) -> Self {
        Arp {
            file: KeptFile::new(paths.proc("net/arp")),
            filter,
        }
    }
}

/// IP address, HW type, Flags, HW address, Mask, Device.
const COLUMNS: usize = 6;

impl BlockingCollector for Arp {
    fn collect(&self) -> CollectResult {
        // No IPv4 in this kernel or namespace: nothing to report.
        let Some(text) = self.file.read_if_present()? else {
            return Ok(vec![]);
        };
        let mut counts: BTreeMap<&str, u32> = BTreeMap::new();
        for line in text.lines() {
            let mut fields = line.split_ascii_whitespace();
            // The header, and blank lines.
            let Some(first) = fields.next().filter(|f| *f != "IP") else {
                continue;
            };
            // The device is the last of the columns.
            let (count, device) = fields.fold((1, first), |(n, _), field| (n + 1, field));
            if count != COLUMNS {
                log::warn(
                    "skipping unparsable arp line",
                    &[
                        ("path", &self.file.path().display().to_string()),
                        ("line", line),
                    ],
                );
                continue;
            }
            if !self.filter.ignored(device) {
                *counts.entry(device).or_default() += 1;
            }
        }
        let mut entries = MetricFamily::gauge("node_arp_entries", "ARP entries by device");
        for (device, count) in counts {
            entries.push(&[("device", device)], f64::from(count));
        }
        Ok(vec![entries])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(text: &str, filter: DeviceFilter) -> Vec<(String, f64)> {
        let dir = std::env::temp_dir().join(format!("arp-{}-{}", std::process::id(), text.len()));
        std::fs::create_dir_all(dir.join("proc/net")).unwrap();
        std::fs::write(dir.join("proc/net/arp"), text).unwrap();
        let paths = Paths {
            procfs: dir.join("proc"),
            sysfs: dir.join("sys"),
            rootfs: dir.clone(),
            udev_data: dir.join("udev"),
        };
        let families = Arp::new(&paths, filter).collect().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        families[0]
            .samples
            .iter()
            .map(|s| (s.labels[0].1.clone(), s.value))
            .collect()
    }

    #[test]
    fn entries_are_counted_per_device_and_bad_lines_skipped() {
        let text =
            "IP address       HW type     Flags       HW address            Mask     Device\n\
            192.0.2.1        0x1         0x2         02:fc:00:00:00:05     *        eth0\n\
            192.0.2.7        0x1         0x0         00:00:00:00:00:00     *        eth0\n\
            10.0.0.1         0x1         0x2         02:fc:00:00:00:06     *        wlan0\n\
            garbage\n\
            10.0.0.2 0x1 0x2 02:fc:00:00:00:07 *\n";
        assert_eq!(
            collect(text, DeviceFilter::default()),
            [("eth0".to_string(), 2.0), ("wlan0".to_string(), 1.0)]
        );
        assert_eq!(
            collect(text, DeviceFilter::exclude("^wlan")),
            [("eth0".to_string(), 2.0)]
        );
    }

    #[test]
    fn a_missing_file_reports_nothing() {
        let paths = Paths {
            procfs: "/nonexistent/proc".into(),
            sysfs: "/nonexistent/sys".into(),
            rootfs: "/nonexistent".into(),
            udev_data: "/nonexistent/udev".into(),
        };
        let arp = Arp::new(&paths, DeviceFilter::default());
        assert!(arp.collect().unwrap().is_empty());
    }
}
