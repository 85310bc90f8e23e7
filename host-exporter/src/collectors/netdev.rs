//! Per-interface traffic counters from /proc/net/dev (`node_network_receive_bytes_total`, ...),
//! plus `receive_nohandler` from sysfs where the kernel has it, as node_exporter's netlink
//! reader reports it.

use crate::filter::DeviceFilter;
use crate::paths::{read, read_sysfs_value, Paths};
use common::{BlockingCollector, CollectResult, MetricFamily};
use std::collections::BTreeMap;

pub struct Netdev {
    paths: Paths,
    filter: DeviceFilter,
}

impl Netdev {
    pub fn new(paths: &Paths, filter: DeviceFilter) -> Self {
        Netdev {
            paths: paths.clone(),
            filter,
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
    fn name(&self) -> &'static str {
        "netdev"
    }

    fn collect(&self) -> CollectResult {
        let path = self.paths.proc("net/dev");
        let text = read(&path)?;
        let mut families: BTreeMap<String, MetricFamily> = BTreeMap::new();
        let mut push = |direction: &str, stat: &str, device: &str, value: f64| {
            let name = format!("node_network_{direction}_{stat}_total");
            families
                .entry(name.clone())
                .or_insert_with(|| {
                    MetricFamily::counter(
                        name,
                        format!("Network device statistic {direction}_{stat}."),
                    )
                })
                .push(&[("device", device)], value);
        };
        for line in text.lines().skip(2) {
            let Some((device, counters)) = line.split_once(':') else {
                anyhow::bail!("{}: unexpected line {line:?}", path.display());
            };
            let device = device.trim();
            if self.filter.ignored(device) {
                continue;
            }
            let values: Vec<f64> = counters
                .split_whitespace()
                .map(|v| v.parse::<f64>())
                .collect::<Result<_, _>>()
                .map_err(|e| anyhow::anyhow!("{}: device {device}: {e}", path.display()))?;
            if values.len() != 16 {
                anyhow::bail!(
                    "{}: device {device}: {} columns, expected 16",
                    path.display(),
                    values.len()
                );
            }
            for (stat, value) in RECEIVE.iter().zip(&values[..8]) {
                push("receive", stat, device, *value);
            }
            for (stat, value) in TRANSMIT.iter().zip(&values[8..]) {
                push("transmit", stat, device, *value);
            }
            let nohandler = self
                .paths
                .sys(&format!("class/net/{device}/statistics/rx_nohandler"));
            if let Some(v) = read_sysfs_value(&nohandler)
                .ok()
                .and_then(|v| v.parse::<f64>().ok())
            {
                push("receive", "nohandler", device, v);
            }
        }
        Ok(families.into_values().collect())
    }
}
