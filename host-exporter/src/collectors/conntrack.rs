//! Connection tracking: the table's size and limit from /proc/sys/net/netfilter, and the
//! per-CPU event counters of /proc/net/stat/nf_conntrack summed over CPUs, in node_exporter's
//! names (`node_nf_conntrack_entries`, `node_nf_conntrack_stat_drop`, ...). Without the
//! nf_conntrack module the files are absent and nothing is reported.

use crate::kept_file::KeptFile;
use crate::paths::Paths;
use common::{log, BlockingCollector, CollectResult, MetricFamily};

pub struct Conntrack {
    count: KeptFile,
    max: KeptFile,
    stat: KeptFile,
}

impl Conntrack {
    pub fn new(paths: &Paths) -> Self {
        Conntrack {
            count: KeptFile::new(paths.proc("sys/net/netfilter/nf_conntrack_count")),
            max: KeptFile::new(paths.proc("sys/net/netfilter/nf_conntrack_max")),
            stat: KeptFile::new(paths.proc("net/stat/nf_conntrack")),
        }
    }
}

/// Columns of /proc/net/stat/nf_conntrack that node_exporter reports, with their help.
const STATS: [(&str, &str); 8] = [
    ("found", "Number of searched entries which were successful."),
    ("invalid", "Number of packets seen which can not be tracked."),
    (
        "ignore",
        "Number of packets seen which are already connected to a conntrack entry.",
    ),
    ("insert", "Number of entries inserted into the list."),
    (
        "insert_failed",
        "Number of entries for which list insertion was attempted but failed.",
    ),
    ("drop", "Number of packets dropped due to conntrack failure."),
    (
        "early_drop",
        "Number of dropped conntrack entries to make room for new ones, if maximum table size was reached.",
    ),
    (
        "search_restart",
        "Number of conntrack table lookups which had to be restarted due to hashtable resizes.",
    ),
];

fn read_number(file: &KeptFile) -> anyhow::Result<Option<f64>> {
    let Some(text) = file.read_if_present()? else {
        return Ok(None);
    };
    text.trim()
        .parse::<u64>()
        .map(|v| Some(v as f64))
        .map_err(|e| anyhow::anyhow!("{}: {:?}: {e}", file.path().display(), text.trim()))
}

impl BlockingCollector for Conntrack {
    fn collect(&self) -> CollectResult {
        let mut families = Vec::new();
        // The module is not loaded: nothing to report.
        let Some(count) = read_number(&self.count)? else {
            return Ok(families);
        };
        families.push(
            MetricFamily::gauge(
                "node_nf_conntrack_entries",
                "Number of currently allocated flow entries for connection tracking.",
            )
            .with_value(count),
        );
        if let Some(max) = read_number(&self.max)? {
            families.push(
                MetricFamily::gauge(
                    "node_nf_conntrack_entries_limit",
                    "Maximum size of connection tracking table.",
                )
                .with_value(max),
            );
        }
        let Some(text) = self.stat.read_if_present()? else {
            return Ok(families);
        };
        let path = self.stat.path().display().to_string();
        let sums = sum_columns(&text, &path)?;
        for ((stat, help), sum) in STATS.iter().zip(sums) {
            if let Some(sum) = sum {
                families.push(
                    MetricFamily::gauge(format!("node_nf_conntrack_stat_{stat}"), *help)
                        .with_value(sum),
                );
            }
        }
        Ok(families)
    }
}

/// Sums each column of `STATS` over the CPU lines, finding columns by the header's names (their
/// positions moved between kernels: `delete_list` became `chainlength`). A column the header
/// lacks is `None`.
fn sum_columns(text: &str, path: &str) -> anyhow::Result<[Option<f64>; STATS.len()]> {
    let mut lines = text.lines();
    let header: Vec<&str> = lines
        .next()
        .ok_or_else(|| anyhow::anyhow!("{path}: empty"))?
        .split_ascii_whitespace()
        .collect();
    let positions = STATS.map(|(stat, _)| header.iter().position(|h| *h == stat));
    if positions.iter().all(Option::is_none) {
        anyhow::bail!("{path}: no known column in header {:?}", header.join(" "));
    }
    let mut sums = positions.map(|p| p.map(|_| 0.0));
    for line in lines.filter(|l| !l.trim().is_empty()) {
        let values: Result<Vec<u64>, _> = line
            .split_ascii_whitespace()
            .map(|v| u64::from_str_radix(v, 16))
            .collect();
        match values {
            Ok(values) if values.len() == header.len() => {
                for (sum, position) in sums.iter_mut().zip(&positions) {
                    if let (Some(sum), Some(p)) = (sum.as_mut(), position) {
                        *sum += values[*p] as f64;
                    }
                }
            }
            _ => log::warn(
                "skipping unparsable conntrack statistics line",
                &[("path", path), ("line", line)],
            ),
        }
    }
    Ok(sums)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "entries  clashres found new invalid ignore delete chainlength insert insert_failed drop early_drop icmp_error  expect_new expect_create expect_delete search_restart\n";

    #[test]
    fn columns_are_found_by_name_and_summed_over_cpus() {
        let text = format!(
            "{HEADER}0000040f  00000000 00000001 00000000 00000002 00000003 00000000 00000000 00000004 00000005 00000006 00000007 00000000  00000000 00000000 00000000 00000008\n\
             0000040f  00000000 00000010 00000000 00000020 00000030 00000000 00000000 00000040 00000050 00000060 00000070 00000000  00000000 00000000 00000000 00000080\n\
             00000001 zz\n"
        );
        let sums = sum_columns(&text, "stat").unwrap();
        assert_eq!(
            sums,
            [17.0, 34.0, 51.0, 68.0, 85.0, 102.0, 119.0, 136.0].map(Some)
        );
        // An older layout, without search_restart and in another order.
        let sums = sum_columns("entries drop found\n1 2 3\n", "stat").unwrap();
        assert_eq!(sums[0], Some(3.0));
        assert_eq!(sums[5], Some(2.0));
        assert_eq!(sums[7], None);
        assert!(sum_columns("", "stat").is_err());
        assert!(sum_columns("nothing known\n1 2\n", "stat").is_err());
    }

    #[test]
    fn without_the_module_nothing_is_reported_and_garbage_fails() {
        let dir = std::env::temp_dir().join(format!("conntrack-{}", std::process::id()));
        let paths = Paths {
            procfs: dir.join("proc"),
            sysfs: dir.join("sys"),
            rootfs: dir.clone(),
            udev_data: dir.join("udev"),
        };
        let conntrack = Conntrack::new(&paths);
        assert!(conntrack.collect().unwrap().is_empty());
        std::fs::create_dir_all(dir.join("proc/sys/net/netfilter")).unwrap();
        std::fs::write(
            dir.join("proc/sys/net/netfilter/nf_conntrack_count"),
            "12\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("proc/sys/net/netfilter/nf_conntrack_max"),
            "262144\n",
        )
        .unwrap();
        let families = conntrack.collect().unwrap();
        let names: Vec<_> = families.iter().map(|f| f.name.as_ref()).collect();
        assert_eq!(
            names,
            [
                "node_nf_conntrack_entries",
                "node_nf_conntrack_entries_limit"
            ]
        );
        assert_eq!(families[0].samples[0].value, 12.0);
        std::fs::write(
            dir.join("proc/sys/net/netfilter/nf_conntrack_count"),
            "lots\n",
        )
        .unwrap();
        let err = conntrack.collect().unwrap_err().to_string();
        assert!(err.contains("nf_conntrack_count"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
