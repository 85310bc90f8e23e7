//! bcache cache sets from /sys/fs/bcache/<uuid>, in node_exporter's names (`node_bcache_*`):
//! per set its btree and cache figures, per backing device (`bdev<N>`) its dirty data,
//! writeback controller and total hit/miss/bypass counters, per cache device (`cache<N>`) its
//! errors and bytes written, and with `--collector.bcache.priorityStats` the unused and
//! metadata shares of each cache device (priority_stats walks every bucket: costly, hence off).
//!
//! The kernel prints most sizes "humanized" (bch_hprint: `1.2M`, with a fraction in 1024ths
//! written as hundredths); they are read back as node_exporter (procfs) reads them, quirks
//! included, so that both report the same numbers.

use crate::paths::{entries_if_present, read_sysfs_value, sorted_entries, Paths};
use common::{log, BlockingCollector, CollectResult, MetricFamily};
use std::collections::BTreeMap;
use std::path::Path;

pub struct Bcache {
    paths: Paths,
    priority_stats: bool,
}

impl Bcache {
    pub fn new(paths: &Paths, priority_stats: bool) -> Self {
        Bcache {
            paths: paths.clone(),
            priority_stats,
        }
    }
}

/// Families by name, as in node_exporter's output; samples of every cache set go together.
#[derive(Default)]
struct Families(BTreeMap<&'static str, MetricFamily>);

impl Families {
    fn push(
        &mut self,
        name: &'static str,
        help: &'static str,
        counter: bool,
        labels: &[(&'static str, &str)],
        value: f64,
    ) {
        self.0
            .entry(name)
            .or_insert_with(|| {
                if counter {
                    MetricFamily::counter(name, help)
                } else {
                    MetricFamily::gauge(name, help)
                }
            })
            .push(labels, value);
    }
}

impl BlockingCollector for Bcache {
    fn collect(&self) -> CollectResult {
        let dir = self.paths.sys("fs/bcache");
        // No bcache module: nothing to report.
        let Some(entries) = entries_if_present(&dir)? else {
            return Ok(vec![]);
        };
        let mut families = Families::default();
        // A cache set's directory is its UUID; `register` and friends are the module's files.
        for (uuid, path) in entries
            .iter()
            .filter(|(n, p)| n.contains('-') && p.is_dir())
        {
            // Read whole before anything is pushed, so a set is reported whole or not at all.
            let mut set = Families::default();
            match self.cache_set(uuid, path, &mut set) {
                Ok(()) => {
                    for (name, family) in set.0 {
                        match families.0.get_mut(name) {
                            Some(f) => f.samples.extend(family.samples),
                            None => {
                                families.0.insert(name, family);
                            }
                        }
                    }
                }
                Err(e) => log::warn(
                    "skipping bcache set",
                    &[("path", &path.display().to_string()), ("err", &e)],
                ),
            }
        }
        Ok(families.0.into_values().collect())
    }
}

impl Bcache {
    fn cache_set(&self, uuid: &str, dir: &Path, f: &mut Families) -> Result<(), String> {
        let set = [("uuid", uuid)];
        let top: [(&str, &str, &str); 6] = [
            ("average_key_size", "node_bcache_average_key_size_sectors", "Average data per key in the btree (sectors)."),
            ("btree_cache_size", "node_bcache_btree_cache_size_bytes", "Amount of memory currently used by the btree cache."),
            ("cache_available_percent", "node_bcache_cache_available_percent", "Percentage of cache device without dirty data, usable for writeback (may contain clean cached data)."),
            ("congested", "node_bcache_congested", "Congestion."),
            ("root_usage_percent", "node_bcache_root_usage_percent", "Percentage of the root btree node in use (tree depth increases if too high)."),
            ("tree_depth", "node_bcache_tree_depth", "Depth of the btree."),
        ];
        for (file, name, help) in top {
            f.push(name, help, false, &set, value(&dir.join(file))? as f64);
        }
        let internal = dir.join("internal");
        f.push(
            "node_bcache_active_journal_entries",
            "Number of journal entries that are newer than the index.",
            false,
            &set,
            value(&internal.join("active_journal_entries"))? as f64,
        );
        f.push(
            "node_bcache_btree_nodes",
            "Total nodes in the btree.",
            false,
            &set,
            value(&internal.join("btree_nodes"))? as f64,
        );
        // The file is in microseconds; node_exporter scales it as nanoseconds, and so do we.
        f.push(
            "node_bcache_btree_read_average_duration_seconds",
            "Average btree read duration.",
            false,
            &set,
            value(&internal.join("btree_read_average_duration_us"))? as f64 * 1e-9,
        );
        f.push("node_bcache_cache_read_races_total", "Counts instances where while data was being read from the cache, the bucket was reused and invalidated - i.e. where the pointer was stale after the read completed.", true, &set, value(&internal.join("cache_read_races"))? as f64);
        // The set's own period counters are read (a set without them is malformed) but, as in
        // node_exporter, only the backing devices' are reported.
        for period in ["stats_five_minute", "stats_total"] {
            period_stats(&dir.join(period))?;
        }

        let members = sorted_entries(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for (name, path) in members.iter().filter(|(n, _)| numbered(n, "bdev")) {
            let labels = [("uuid", uuid), ("backing_device", name.as_str())];
            let wb = writeback_rate_debug(&path.join("writeback_rate_debug"))?;
            period_stats(&path.join("stats_five_minute"))?;
            let total = period_stats(&path.join("stats_total"))?;
            f.push(
                "node_bcache_dirty_data_bytes",
                "Amount of dirty data for this backing device in the cache.",
                false,
                &labels,
                value(&path.join("dirty_data"))? as f64,
            );
            f.push(
                "node_bcache_dirty_target_bytes",
                "Current dirty data target threshold for this backing device in bytes.",
                false,
                &labels,
                wb.target as f64,
            );
            f.push(
                "node_bcache_writeback_rate",
                "Current writeback rate for this backing device in bytes.",
                false,
                &labels,
                wb.rate as f64,
            );
            f.push(
                "node_bcache_writeback_rate_proportional_term",
                "Current result of proportional controller, part of writeback rate",
                false,
                &labels,
                wb.proportional as f64,
            );
            f.push(
                "node_bcache_writeback_rate_integral_term",
                "Current result of integral controller, part of writeback rate",
                false,
                &labels,
                wb.integral as f64,
            );
            f.push(
                "node_bcache_writeback_change",
                "Last writeback rate change step for this backing device.",
                false,
                &labels,
                wb.change as f64,
            );
            let [bypassed, hits, misses, bypass_hits, bypass_misses, collisions, readaheads] =
                total;
            f.push(
                "node_bcache_bypassed_bytes_total",
                "Amount of IO (both reads and writes) that has bypassed the cache.",
                true,
                &labels,
                bypassed as f64,
            );
            f.push(
                "node_bcache_cache_hits_total",
                "Hits counted per individual IO as bcache sees them.",
                true,
                &labels,
                hits as f64,
            );
            f.push(
                "node_bcache_cache_misses_total",
                "Misses counted per individual IO as bcache sees them.",
                true,
                &labels,
                misses as f64,
            );
            f.push(
                "node_bcache_cache_bypass_hits_total",
                "Hits for IO intended to skip the cache.",
                true,
                &labels,
                bypass_hits as f64,
            );
            f.push(
                "node_bcache_cache_bypass_misses_total",
                "Misses for IO intended to skip the cache.",
                true,
                &labels,
                bypass_misses as f64,
            );
            f.push("node_bcache_cache_miss_collisions_total", "Instances where data insertion from cache miss raced with write (data already present).", true, &labels, collisions as f64);
            // Reported only when non-zero, as node_exporter does (kernels since 4.x count 0).
            if readaheads != 0 {
                f.push(
                    "node_bcache_cache_readaheads_total",
                    "Count of times readahead occurred.",
                    true,
                    &labels,
                    readaheads as f64,
                );
            }
        }
        for (name, path) in members.iter().filter(|(n, _)| numbered(n, "cache")) {
            let labels = [("uuid", uuid), ("cache_device", name.as_str())];
            f.push(
                "node_bcache_io_errors",
                "Number of errors that have occurred, decayed by io_error_halflife.",
                false,
                &labels,
                value(&path.join("io_errors"))? as f64,
            );
            f.push(
                "node_bcache_metadata_written_bytes_total",
                "Sum of all non data writes (btree writes and all other metadata).",
                true,
                &labels,
                value(&path.join("metadata_written"))? as f64,
            );
            f.push(
                "node_bcache_written_bytes_total",
                "Sum of all data that has been written to the cache.",
                true,
                &labels,
                value(&path.join("written"))? as f64,
            );
            if self.priority_stats {
                let (unused, metadata) = priority_stats(&path.join("priority_stats"))?;
                f.push(
                    "node_bcache_priority_stats_unused_percent",
                    "The percentage of the cache that doesn't contain any data.",
                    false,
                    &labels,
                    unused as f64,
                );
                f.push(
                    "node_bcache_priority_stats_metadata_percent",
                    "Bcache's metadata overhead.",
                    false,
                    &labels,
                    metadata as f64,
                );
            }
        }
        Ok(())
    }
}

/// `bdev0`, `cache12`: a prefix and at least one digit (node_exporter's `bdev[0-9]*` glob).
fn numbered(name: &str, prefix: &str) -> bool {
    name.strip_prefix(prefix)
        .is_some_and(|n| n.starts_with(|c: char| c.is_ascii_digit()))
}

/// One humanized value from a sysfs file.
fn value(path: &Path) -> Result<u64, String> {
    let raw = read_sysfs_value(path).map_err(|e| format!("{}: {e}", path.display()))?;
    dehumanize(&raw).ok_or_else(|| format!("{}: unparsable value {raw:?}", path.display()))
}

/// bypassed, cache hits, misses, bypass hits, bypass misses, miss collisions, readaheads.
fn period_stats(dir: &Path) -> Result<[u64; 7], String> {
    let mut out = [0; 7];
    let files = [
        "bypassed",
        "cache_hits",
        "cache_misses",
        "cache_bypass_hits",
        "cache_bypass_misses",
        "cache_miss_collisions",
        "cache_readaheads",
    ];
    for (slot, file) in out.iter_mut().zip(files) {
        *slot = value(&dir.join(file))?;
    }
    Ok(out)
}

/// bch_hprint's output as a number: `123`, `1.5k`, `12.3M`. The digit after the point is the
/// remainder in 1024ths times 10 / 1024; procfs divides it by 10.24, and truncates the result
/// to an integer: so do we.
pub fn dehumanize(text: &str) -> Option<u64> {
    let last = text.chars().last()?;
    if last.is_ascii_digit() {
        let v: f64 = text.parse().ok()?;
        return (v >= 0.0).then_some(v as u64);
    }
    let multiplier = match last {
        'k' => 1u64 << 10,
        'M' => 1 << 20,
        'G' => 1 << 30,
        'T' => 1 << 40,
        'P' => 1 << 50,
        'E' => 1 << 60,
        // Z and Y do not fit 64 bits; procfs' float gives them, a u64 saturates.
        'Z' | 'Y' => u64::MAX,
        _ => return None,
    } as f64;
    let number = &text[..text.len() - last.len_utf8()];
    let (int, frac) = match number.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (number, None),
    };
    let mut mantissa: f64 = int.parse().ok()?;
    if let Some(frac) = frac {
        let frac: f64 = frac.parse().ok()?;
        mantissa += frac / 10.24;
    }
    let v = mantissa * multiplier;
    (v >= 0.0).then_some(v as u64)
}

/// A signed humanized value (`-5.1M`).
fn dehumanize_signed(text: &str) -> Option<i64> {
    match text.strip_prefix('-') {
        Some(rest) => dehumanize(rest).map(|v| (v as i64).wrapping_neg()),
        None => dehumanize(text).map(|v| v as i64),
    }
}

#[derive(Debug, Default, PartialEq)]
struct WritebackRate {
    rate: u64,
    target: u64,
    proportional: i64,
    integral: i64,
    change: i64,
}

/// The `rate:`, `target:`, `proportional:`, `integral:` and `change:` lines of
/// writeback_rate_debug; others (`dirty:`, `next io:`) are not reported.
fn writeback_rate_debug(path: &Path) -> Result<WritebackRate, String> {
    let text = crate::paths::read_whole(path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse_writeback_rate_debug(&text).map_err(|e| format!("{}: {e}", path.display()))
}

fn parse_writeback_rate_debug(text: &str) -> Result<WritebackRate, String> {
    let mut w = WritebackRate::default();
    for line in text.lines() {
        let Some((key, _)) = line.split_once(':') else {
            continue;
        };
        let last = line.split_ascii_whitespace().last().unwrap_or("");
        let bad = || format!("unparsable line {line:?}");
        match key {
            "rate" => w.rate = dehumanize(last.trim_end_matches("/sec")).ok_or_else(bad)?,
            "target" => w.target = dehumanize(last).ok_or_else(bad)?,
            "proportional" => w.proportional = dehumanize_signed(last).ok_or_else(bad)?,
            "integral" => w.integral = dehumanize_signed(last).ok_or_else(bad)?,
            "change" => {
                w.change = dehumanize_signed(last.trim_end_matches("/sec")).ok_or_else(bad)?
            }
            _ => {}
        }
    }
    Ok(w)
}

/// The `Unused:` and `Metadata:` percentages of priority_stats.
fn priority_stats(path: &Path) -> Result<(u64, u64), String> {
    let text = crate::paths::read_whole(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = (0, 0);
    for line in text.lines() {
        let slot = if line.starts_with("Unused:") {
            &mut out.0
        } else if line.starts_with("Metadata:") {
            &mut out.1
        } else {
            continue;
        };
        let last = line.split_ascii_whitespace().last().unwrap_or("");
        *slot = last
            .trim_end_matches('%')
            .parse()
            .map_err(|_| format!("{}: unparsable line {line:?}", path.display()))?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn humanized_values_read_as_procfs_reads_them() {
        assert_eq!(dehumanize("0"), Some(0));
        assert_eq!(dehumanize("4096"), Some(4096));
        assert_eq!(dehumanize("512k"), Some(512 * 1024));
        // bch_hprint writes the fraction as one digit (1024ths times 10 / 1024); procfs
        // divides that digit by 10.24.
        assert_eq!(
            dehumanize("1.5M"),
            Some(((1.0 + 5.0 / 10.24) * 1048576.0) as u64)
        );
        assert_eq!(
            dehumanize("3.2G"),
            Some(((3.0 + 2.0 / 10.24) * 1073741824.0) as u64)
        );
        assert_eq!(dehumanize(""), None);
        assert_eq!(dehumanize("lots"), None);
        assert_eq!(dehumanize("1.xM"), None);
        assert_eq!(
            dehumanize_signed("-5.1M"),
            Some(-(((5.0 + 1.0 / 10.24) * 1048576.0) as i64))
        );
    }

    #[test]
    fn writeback_debug_and_priority_lines() {
        let w = parse_writeback_rate_debug(
            "rate:\t\t1.1M/sec\ndirty:\t\t1.2G\ntarget:\t\t4.1G\nproportional:\t-5.1M\n\
             integral:\t0\nchange:\t\t-3.2k/sec\nnext io:\t-100ms\n",
        )
        .unwrap();
        assert_eq!(w.rate, ((1.0 + 1.0 / 10.24) * 1048576.0) as u64);
        assert_eq!(w.target, ((4.0 + 1.0 / 10.24) * 1073741824.0) as u64);
        assert!(w.proportional < 0);
        assert_eq!(w.integral, 0);
        assert_eq!(w.change, -(((3.0 + 2.0 / 10.24) * 1024.0) as i64));
        assert!(parse_writeback_rate_debug("rate:\tfast\n").is_err());
        assert!(numbered("bdev0", "bdev"));
        assert!(!numbered("bdev", "bdev"));
        assert!(!numbered("cache_available_percent", "cache"));
    }
}
