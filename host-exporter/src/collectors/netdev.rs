//! Per-interface traffic counters from /proc/net/dev (`node_network_receive_bytes_total`, ...),
//! plus `receive_nohandler` from sysfs where the kernel has it, as node_exporter's netlink
//! reader reports it.

use crate::filter::DeviceFilter;
use crate::kept_file::KeptFile;
use crate::paths::Paths;
use common::{BlockingCollector, CollectResult, MetricFamily};
use std::collections::HashMap;
use std::sync::Mutex;

pub struct Netdev {
    file: KeptFile,
    paths: Paths,
    filter: DeviceFilter,
    /// Each device's rx_nohandler file, kept open; devices gone from /proc/net/dev are dropped
    /// (containers create and delete veth interfaces all the time).
    nohandler_files: Mutex<HashMap<String, KeptFile>>,
}

impl Netdev {
    pub fn new(paths: &Paths, filter: DeviceFilter) -> Self {
        Netdev {
            file: KeptFile::new(paths.proc("net/dev")),
            paths: paths.clone(),
            filter,
            nohandler_files: Mutex::new(HashMap::new()),
        }
    }
}

/// Column names of /proc/net/dev, receive side then transmit side.
const RECEIVE: [&str; 8] = [
    "bytes",
    "packets",
    "errs",
    "drop",
    "fifo",
    "frame",
    "compressed",
    "multicast",
];
const TRANSMIT: [&str; 8] = [
    "bytes",
    "packets",
    "errs",
    "drop",
    "fifo",
    "colls",
    "carrier",
    "compressed",
];

impl BlockingCollector for Netdev {
    fn collect(&self) -> CollectResult {
        let path = self.file.path();
        let text = self.file.read()?;
        // One family per column, made once per scrape; each device adds a sample to each.
        let family = |direction: &str, stat: &str| {
            MetricFamily::counter(
                format!("node_network_{direction}_{stat}_total"),
                format!("Network device statistic {direction}_{stat}."),
            )
        };
        let mut columns: Vec<MetricFamily> = RECEIVE
            .iter()
            .map(|stat| family("receive", stat))
            .chain(TRANSMIT.iter().map(|stat| family("transmit", stat)))
            .collect();
        let mut nohandler_family = family("receive", "nohandler");
        let mut kept = self
            .nohandler_files
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let mut previous_files = std::mem::take(&mut *kept);
        let mut nohandler_files = HashMap::with_capacity(previous_files.len());
        for line in text.lines().skip(2) {
            let Some((device, counters)) = line.split_once(':') else {
                anyhow::bail!("{}: unexpected line {line:?}", path.display());
            };
            let device = device.trim();
            if self.filter.ignored(device) {
                continue;
            }
            let mut values = [0.0f64; 16];
            let mut count = 0;
            for field in counters.split_ascii_whitespace() {
                let value = field
                    .parse::<f64>()
                    .map_err(|e| anyhow::anyhow!("{}: device {device}: {e}", path.display()))?;
                if let Some(slot) = values.get_mut(count) {
                    *slot = value;
                }
                count += 1;
            }
            if count != values.len() {
                anyhow::bail!(
                    "{}: device {device}: {count} columns, expected 16",
                    path.display()
                );
            }
            for (column, value) in columns.iter_mut().zip(values) {
                column.push(&[("device", device)], value);
            }
            let nohandler = previous_files.remove(device).unwrap_or_else(|| {
                KeptFile::new(
                    self.paths
                        .sys(&format!("class/net/{device}/statistics/rx_nohandler")),
                )
            });
            let value = nohandler
                .read_io()
                .ok()
                .and_then(|v| v.trim().parse::<f64>().ok());
            nohandler_files.insert(device.to_string(), nohandler);
            if let Some(v) = value {
                nohandler_family.push(&[("device", device)], v);
            }
        }
        *kept = nohandler_files;
        columns.push(nohandler_family);
        Ok(columns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n";

    fn value(families: &[MetricFamily], name: &str, device: &str) -> Option<f64> {
        families
            .iter()
            .find(|f| f.name == name)?
            .samples
            .iter()
            .find(|s| s.labels[0].1 == device)
            .map(|s| s.value)
    }

    #[test]
    fn nohandler_files_follow_the_devices_of_each_scrape() {
        let root = std::env::temp_dir().join(format!("netdev-{}", std::process::id()));
        let paths = Paths {
            procfs: root.join("proc"),
            sysfs: root.join("sys"),
            rootfs: root.clone(),
            udev_data: root.join("udev"),
        };
        std::fs::create_dir_all(root.join("proc/net")).unwrap();
        for (device, nohandler) in [("eth0", "7\n"), ("veth1", "3\n")] {
            let dir = root.join(format!("sys/class/net/{device}/statistics"));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("rx_nohandler"), nohandler).unwrap();
        }
        let line = |device: &str, first: u64| {
            format!("{device}: {first} 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n")
        };
        let write_dev = |lines: &[String]| {
            std::fs::write(
                root.join("proc/net/dev"),
                [HEADER, &lines.concat()].concat(),
            )
            .unwrap()
        };
        let netdev = Netdev::new(&paths, DeviceFilter::exclude("^lo$"));

        write_dev(&[line("eth0", 100), line("veth1", 200)]);
        let families = netdev.collect().unwrap();
        assert_eq!(
            value(&families, "node_network_receive_bytes_total", "veth1"),
            Some(200.0)
        );
        assert_eq!(
            value(&families, "node_network_receive_nohandler_total", "eth0"),
            Some(7.0)
        );
        assert_eq!(
            value(&families, "node_network_receive_nohandler_total", "veth1"),
            Some(3.0)
        );
        assert_eq!(netdev.nohandler_files.lock().unwrap().len(), 2);

        // veth1 is deleted: its file is dropped; eth0's counter moves and is read anew.
        write_dev(&[line("eth0", 101)]);
        std::fs::write(
            root.join("sys/class/net/eth0/statistics/rx_nohandler"),
            "8\n",
        )
        .unwrap();
        let families = netdev.collect().unwrap();
        assert_eq!(
            value(&families, "node_network_receive_bytes_total", "eth0"),
            Some(101.0)
        );
        assert_eq!(
            value(&families, "node_network_receive_nohandler_total", "eth0"),
            Some(8.0)
        );
        assert_eq!(
            value(&families, "node_network_receive_nohandler_total", "veth1"),
            None
        );
        let kept = netdev.nohandler_files.lock().unwrap();
        assert_eq!(kept.keys().collect::<Vec<_>>(), ["eth0"]);
        drop(kept);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
