//! SCSI tape drive statistics from /sys/class/scsi_tape/st<N>/stats, in node_exporter's names
//! (`node_tape_*{device}`), with its `--collector.tapestats.ignored-devices` regular expression.
//! Only the `st<N>` entries are drives; `nst<N>` and the mode variants (`st0a`) are the same
//! drive again.

use crate::paths::{entries_if_present, if_present, read_sysfs_value, Paths};
use common::{log, BlockingCollector, CollectResult, MetricFamily};
use regex_lite::Regex;
use std::path::Path;

pub struct Tapestats {
    paths: Paths,
    ignored: Regex,
}

/// node_exporter's default: ignore nothing.
pub const DEFAULT_IGNORED_DEVICES: &str = "^$";

impl Tapestats {
    pub fn new(paths: &Paths, ignored: Regex) -> Self {
        Tapestats {
            paths: paths.clone(),
            ignored,
        }
    }
}

/// (stats file, family, help, scale to base units, counter?)
const STATS: [(&str, &str, &str, f64, bool); 10] = [
    ("in_flight", "node_tape_io_now", "The number of I/Os currently outstanding to this device.", 1.0, false),
    ("io_ns", "node_tape_io_time_seconds_total", "The amount of time spent waiting for all I/O to complete (including read and write). This includes tape movement commands such as seeking between file or set marks and implicit tape movement such as when rewind on close tape devices are used.", 1e-9, true),
    ("other_cnt", "node_tape_io_others_total", "The number of I/Os issued to the tape drive other than read or write commands. The time taken to complete these commands uses the following calculation io_time_seconds_total-read_time_seconds_total-write_time_seconds_total", 1.0, true),
    ("read_byte_cnt", "node_tape_read_bytes_total", "The number of bytes read from the tape drive.", 1.0, true),
    ("read_cnt", "node_tape_reads_completed_total", "The number of read requests issued to the tape drive.", 1.0, true),
    ("read_ns", "node_tape_read_time_seconds_total", "The amount of time spent waiting for read requests to complete.", 1e-9, true),
    ("resid_cnt", "node_tape_residual_total", "The number of times during a read or write we found the residual amount to be non-zero. This should mean that a program is issuing a read larger thean the block size on tape. For write not all data made it to tape.", 1.0, true),
    ("write_byte_cnt", "node_tape_written_bytes_total", "The number of bytes written to the tape drive.", 1.0, true),
    ("write_cnt", "node_tape_writes_completed_total", "The number of write requests issued to the tape drive.", 1.0, true),
    ("write_ns", "node_tape_write_time_seconds_total", "The amount of time spent waiting for write requests to complete.", 1e-9, true),
];

impl BlockingCollector for Tapestats {
    fn collect(&self) -> CollectResult {
        let dir = self.paths.sys("class/scsi_tape");
        // No st driver: nothing to report.
        let Some(entries) = entries_if_present(&dir)? else {
            return Ok(vec![]);
        };
        let mut families: Vec<MetricFamily> = STATS
            .iter()
            .map(|(_, name, help, _, counter)| {
                if *counter {
                    MetricFamily::counter(*name, *help)
                } else {
                    MetricFamily::gauge(*name, *help)
                }
            })
            .collect();
        for (name, path) in &entries {
            if !is_drive(name) || self.ignored.is_match(name) {
                continue;
            }
            match read_drive(path) {
                Ok(values) => {
                    for (family, value) in families.iter_mut().zip(values) {
                        family.push(&[("device", name.as_str())], value);
                    }
                }
                Err(e) => log::warn(
                    "skipping tape drive",
                    &[("path", &path.display().to_string()), ("err", &e)],
                ),
            }
        }
        Ok(families)
    }
}

/// `st<digits>`.
fn is_drive(name: &str) -> bool {
    name.strip_prefix("st")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// The values of [`STATS`] for one drive, in base units. A file that is absent counts 0 (as
/// node_exporter reads only the files there are); one that cannot be read or parsed skips the
/// drive.
fn read_drive(path: &Path) -> Result<Vec<f64>, String> {
    let stats = path.join("stats");
    if !stats.is_dir() {
        return Err(format!("{}: no statistics", stats.display()));
    }
    STATS
        .iter()
        .map(|(file, _, _, scale, _)| {
            let p = path.join("stats").join(file);
            match if_present(read_sysfs_value(&p)) {
                Ok(Some(raw)) => raw
                    .parse::<u64>()
                    .map(|v| v as f64 * scale)
                    .map_err(|_| format!("{}: not a number: {raw:?}", p.display())),
                Ok(None) => Ok(0.0),
                Err(e) => Err(format!("{}: {e}", p.display())),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::is_drive;

    #[test]
    fn only_st_numbers_are_drives() {
        assert!(is_drive("st0"));
        assert!(is_drive("st12"));
        assert!(!is_drive("nst0"));
        assert!(!is_drive("st0a"));
        assert!(!is_drive("st"));
    }
}
