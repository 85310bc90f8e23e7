//! Per-interface traffic counters from /proc/net/dev (`node_network_receive_bytes_total`, ...),
//! plus `receive_nohandler` from sysfs where the kernel has it, as node_exporter's netlink
//! reader reports it.

use crate::filter::DeviceFilter;
use crate::paths::{read, read_sysfs_value, Paths};
use common::{BlockingCollector, CollectResult, MetricFamily};

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
            for field in counters.split_whitespace() {
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
            let nohandler = self
                .paths
                .sys(&format!("class/net/{device}/statistics/rx_nohandler"));
            if let Some(v) = read_sysfs_value(&nohandler)
                .ok()
                .and_then(|v| v.parse::<f64>().ok())
            {
                nohandler_family.push(&[("device", device)], v);
            }
        }
        columns.push(nohandler_family);
        Ok(columns)
    }
}
