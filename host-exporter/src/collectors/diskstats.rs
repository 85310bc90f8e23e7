//! Block device I/O counters from /proc/diskstats, in node_exporter's names and units, and
//! `node_disk_info` with the udev properties node_exporter reads (empty where udev has none).

use crate::filter::DeviceFilter;
use crate::kept_file::KeptFile;
use crate::paths::Paths;
use common::{BlockingCollector, CollectResult, MetricFamily};

/// node_exporter's default: whole disks only, no partitions, RAM or loop devices.
pub const DEFAULT_DEVICE_EXCLUDE: &str = r"^(ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\d+n\d+p)\d+$";

pub struct Diskstats {
    file: KeptFile,
    paths: Paths,
    filter: DeviceFilter,
}

impl Diskstats {
    pub fn new(paths: &Paths, filter: DeviceFilter) -> Self {
        Diskstats {
            file: KeptFile::new(paths.proc("diskstats")),
            paths: paths.clone(),
            filter,
        }
    }
}

enum Kind {
    Counter,
    Gauge,
}

/// The columns after major, minor and name, in kernel order: metric name, help, scale, type.
/// Times are kept by the kernel in milliseconds, sizes in 512-byte sectors.
const COLUMNS: [(&str, &str, f64, Kind); 17] = [
    (
        "node_disk_reads_completed_total",
        "The total number of reads completed successfully.",
        1.0,
        Kind::Counter,
    ),
    (
        "node_disk_reads_merged_total",
        "The total number of reads merged.",
        1.0,
        Kind::Counter,
    ),
    (
        "node_disk_read_bytes_total",
        "The total number of bytes read successfully.",
        512.0,
        Kind::Counter,
    ),
    (
        "node_disk_read_time_seconds_total",
        "The total number of seconds spent by all reads.",
        0.001,
        Kind::Counter,
    ),
    (
        "node_disk_writes_completed_total",
        "The total number of writes completed successfully.",
        1.0,
        Kind::Counter,
    ),
    (
        "node_disk_writes_merged_total",
        "The number of writes merged.",
        1.0,
        Kind::Counter,
    ),
    (
        "node_disk_written_bytes_total",
        "The total number of bytes written successfully.",
        512.0,
        Kind::Counter,
    ),
    (
        "node_disk_write_time_seconds_total",
        "This is the total number of seconds spent by all writes.",
        0.001,
        Kind::Counter,
    ),
    (
        "node_disk_io_now",
        "The number of I/Os currently in progress.",
        1.0,
        Kind::Gauge,
    ),
    (
        "node_disk_io_time_seconds_total",
        "Total seconds spent doing I/Os.",
        0.001,
        Kind::Counter,
    ),
    (
        "node_disk_io_time_weighted_seconds_total",
        "The weighted # of seconds spent doing I/Os.",
        0.001,
        Kind::Counter,
    ),
    (
        "node_disk_discards_completed_total",
        "The total number of discards completed successfully.",
        1.0,
        Kind::Counter,
    ),
    (
        "node_disk_discards_merged_total",
        "The total number of discards merged.",
        1.0,
        Kind::Counter,
    ),
    (
        "node_disk_discarded_sectors_total",
        "The total number of sectors discarded successfully.",
        1.0,
        Kind::Counter,
    ),
    (
        "node_disk_discard_time_seconds_total",
        "This is the total number of seconds spent by all discards.",
        0.001,
        Kind::Counter,
    ),
    (
        "node_disk_flush_requests_total",
        "The total number of flush requests completed successfully",
        1.0,
        Kind::Counter,
    ),
    (
        "node_disk_flush_requests_time_seconds_total",
        "This is the total number of seconds spent by all flush requests.",
        0.001,
        Kind::Counter,
    ),
];

/// udev properties reported on `node_disk_info`, by label.
const UDEV_LABELS: [(&str, &str); 5] = [
    ("path", "ID_PATH"),
    ("wwn", "ID_WWN"),
    ("model", "ID_MODEL"),
    ("serial", "ID_SERIAL_SHORT"),
    ("revision", "ID_REVISION"),
];

impl BlockingCollector for Diskstats {
    fn collect(&self) -> CollectResult {
        let path = self.file.path();
        let text = self.file.read()?;
        let mut families: Vec<MetricFamily> = COLUMNS
            .iter()
            .map(|(name, help, _, kind)| match kind {
                Kind::Counter => MetricFamily::counter(*name, *help),
                Kind::Gauge => MetricFamily::gauge(*name, *help),
            })
            .collect();
        let mut info = MetricFamily::gauge("node_disk_info", "Info of /sys/block/<block_device>.");
        // Without a udev database (containers, minimal hosts) skip a failing open per device.
        let have_udev = self.paths.udev_data.is_dir();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let mut fields = line.split_ascii_whitespace();
            let (Some(major), Some(minor), Some(device)) =
                (fields.next(), fields.next(), fields.next())
            else {
                anyhow::bail!("{}: short line {line:?}", path.display());
            };
            // The name first: most lines are excluded devices (loop, ram), not worth parsing.
            if self.filter.ignored(device) {
                continue;
            }
            let values: Vec<f64> = fields
                .map(|v| v.parse::<f64>())
                .collect::<Result<_, _>>()
                .map_err(|e| anyhow::anyhow!("{}: device {device}: {e}", path.display()))?;
            if values.len() < 11 {
                anyhow::bail!("{}: short line {line:?}", path.display());
            }
            for ((family, (_, _, scale, _)), value) in
                families.iter_mut().zip(&COLUMNS).zip(&values)
            {
                family.push(&[("device", device)], value * scale);
            }
            let udev = if have_udev {
                self.udev_properties(major, minor)
            } else {
                Vec::new()
            };
            let mut labels: Vec<(&str, &str)> =
                vec![("device", device), ("major", major), ("minor", minor)];
            for (label, key) in UDEV_LABELS {
                let value = udev
                    .iter()
                    .find(|(k, _)| k == key)
                    .map(|(_, v)| v.as_str())
                    .unwrap_or("");
                labels.push((label, value));
            }
            info.push(&labels, 1.0);
        }
        families.push(info);
        Ok(families)
    }
}

impl Diskstats {
    /// The `E:KEY=value` lines of the udev database entry `b<major>:<minor>` whose keys are in
    /// `UDEV_LABELS`; none when absent.
    fn udev_properties(&self, major: &str, minor: &str) -> Vec<(String, String)> {
        let file = self.paths.udev_data.join(format!("b{major}:{minor}"));
        crate::paths::read_whole(&file)
            .map(|text| {
                text.lines()
                    .filter_map(|l| l.strip_prefix("E:"))
                    .filter_map(|kv| kv.split_once('='))
                    // Only the properties reported: an entry has dozens of lines.
                    .filter(|(k, _)| UDEV_LABELS.iter().any(|(_, key)| key == k))
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect()
            })
            .unwrap_or_default()
    }
}
