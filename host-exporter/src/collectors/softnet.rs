//! Per-CPU packet processing counters from /proc/net/softnet_stat (`node_softnet_processed_total`,
//! `node_softnet_dropped_total`, ...). The file is a line of hex columns per CPU; kernels since
//! 5.10 add the backlog length and the CPU's number (CPUs that are offline have no line, so the
//! line number is not the CPU); before that the line number is used, as node_exporter does.

use crate::kept_file::KeptFile;
use crate::paths::Paths;
use common::{log, BlockingCollector, CollectResult, MetricFamily};
use std::fmt::Write;

pub struct Softnet {
    file: KeptFile,
}

impl Softnet {
    pub fn new(paths: &Paths) -> Self {
        Softnet {
            file: KeptFile::new(paths.proc("net/softnet_stat")),
        }
    }
}

/// (family, help, column, the fewest columns a line has when the kernel writes it). Counters
/// but the last.
const COLUMNS: [(&str, &str, usize, usize); 7] = [
    (
        "node_softnet_processed_total",
        "Number of processed packets",
        0,
        9,
    ),
    (
        "node_softnet_dropped_total",
        "Number of dropped packets",
        1,
        9,
    ),
    (
        "node_softnet_times_squeezed_total",
        "Number of times processing packets ran out of quota",
        2,
        9,
    ),
    (
        "node_softnet_cpu_collision_total",
        "Number of collision occur while obtaining device lock while transmitting",
        8,
        9,
    ),
    (
        "node_softnet_received_rps_total",
        "Number of times cpu woken up received_rps",
        9,
        10,
    ),
    (
        "node_softnet_flow_limit_count_total",
        "Number of times flow limit has been reached",
        10,
        11,
    ),
    ("node_softnet_backlog_len", "Softnet backlog status", 11, 13),
];
const CPU_COLUMN: usize = 12;

impl BlockingCollector for Softnet {
    fn collect(&self) -> CollectResult {
        let Some(text) = self.file.read_if_present()? else {
            return Ok(vec![]);
        };
        let mut families: Vec<MetricFamily> = COLUMNS
            .iter()
            .map(|(name, help, column, _)| {
                if *column == 11 {
                    MetricFamily::gauge(*name, *help)
                } else {
                    MetricFamily::counter(*name, *help)
                }
            })
            .collect();
        let mut cpu_text = String::new();
        for (index, line) in text.lines().enumerate() {
            let Some(values) = parse_line(line) else {
                log::warn(
                    "skipping unparsable softnet_stat line",
                    &[
                        ("path", &self.file.path().display().to_string()),
                        ("line", line),
                    ],
                );
                continue;
            };
            let cpu = values
                .get(CPU_COLUMN)
                .map_or(index as u64, |&c| u64::from(c));
            cpu_text.clear();
            let _ = write!(cpu_text, "{cpu}");
            for (family, (_, _, column, needed)) in families.iter_mut().zip(COLUMNS) {
                if values.len() >= needed {
                    family.push(&[("cpu", cpu_text.as_str())], f64::from(values[column]));
                }
            }
        }
        Ok(families)
    }
}

/// The hex columns of one line; `None` when it has fewer than 9 or one is not hex.
fn parse_line(line: &str) -> Option<Vec<u32>> {
    let values: Vec<u32> = line
        .split_ascii_whitespace()
        .map(|v| u32::from_str_radix(v, 16).ok())
        .collect::<Option<_>>()?;
    (values.len() >= 9).then_some(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(text: &str) -> Vec<MetricFamily> {
        let path =
            std::env::temp_dir().join(format!("softnet-{}-{}", std::process::id(), text.len()));
        std::fs::write(&path, text).unwrap();
        let families = Softnet {
            file: KeptFile::new(path.clone()),
        }
        .collect()
        .unwrap();
        std::fs::remove_file(&path).unwrap();
        families
    }

    fn samples(families: &[MetricFamily], name: &str) -> Vec<(String, f64)> {
        families
            .iter()
            .find(|f| f.name == name)
            .unwrap()
            .samples
            .iter()
            .map(|s| (s.labels[0].1.clone(), s.value))
            .collect()
    }

    #[test]
    fn the_cpu_column_names_the_cpu_where_the_kernel_has_it() {
        // CPU 1 offline: the second line is CPU 2. A garbage line is skipped.
        let text = "0001d2d8 00000002 00000001 00000000 00000000 00000000 00000000 00000000 00000003 00000004 00000005 00000006 00000000 00000000 00000000\n\
                    000199b5 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000002 00000000 00000000\n\
                    zz 00000000\n";
        let families = collect(text);
        assert_eq!(
            samples(&families, "node_softnet_processed_total"),
            [("0".to_string(), 119512.0), ("2".to_string(), 104885.0)]
        );
        assert_eq!(samples(&families, "node_softnet_dropped_total")[0].1, 2.0);
        assert_eq!(
            samples(&families, "node_softnet_cpu_collision_total")[0].1,
            3.0
        );
        assert_eq!(
            samples(&families, "node_softnet_received_rps_total")[0].1,
            4.0
        );
        assert_eq!(
            samples(&families, "node_softnet_flow_limit_count_total")[0].1,
            5.0
        );
        assert_eq!(samples(&families, "node_softnet_backlog_len")[0].1, 6.0);
    }

    #[test]
    fn old_kernels_number_cpus_by_line_and_lack_newer_columns() {
        let text = "00000010 00000000 00000001 00000000 00000000 00000000 00000000 00000000 00000000 00000007\n\
                    00000020 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000008\n";
        let families = collect(text);
        assert_eq!(
            samples(&families, "node_softnet_received_rps_total"),
            [("0".to_string(), 7.0), ("1".to_string(), 8.0)]
        );
        assert!(samples(&families, "node_softnet_backlog_len").is_empty());
        assert!(samples(&families, "node_softnet_flow_limit_count_total").is_empty());
    }
}
