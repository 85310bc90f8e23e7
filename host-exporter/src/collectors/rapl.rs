//! Energy counters of the RAPL power zones in /sys/class/powercap (CPU package, cores, DRAM):
//! on an LLM host the power bill matters. Names follow node_exporter:
//! `node_rapl_<zone>_joules_total{index,path}`, where `package-0` is zone `package`, index 0.

use crate::paths::{entries_if_present, read_sysfs_value, Paths};
use common::{log, BlockingCollector, CollectResult, MetricFamily};
use std::collections::BTreeMap;

pub struct Rapl {
    paths: Paths,
}

impl Rapl {
    pub fn new(paths: &Paths) -> Self {
        Rapl {
            paths: paths.clone(),
        }
    }
}

impl BlockingCollector for Rapl {
    fn collect(&self) -> CollectResult {
        let dir = self.paths.sys("class/powercap");
        let Some(entries) = entries_if_present(&dir)? else {
            return Ok(vec![]);
        };
        let mut uses: BTreeMap<String, u32> = BTreeMap::new();
        let mut families: BTreeMap<String, MetricFamily> = BTreeMap::new();
        for (_, path) in entries {
            let Ok(raw_name) = read_sysfs_value(&path.join("name")) else {
                continue;
            };
            let (zone, index) = zone_and_index(&raw_name, &mut uses);
            let energy = path.join("energy_uj");
            let microjoules = match read_sysfs_value(&energy).map(|v| v.parse::<f64>()) {
                Ok(Ok(v)) => v,
                Ok(Err(_)) => {
                    log::warn(
                        "skipping unparsable RAPL counter",
                        &[("path", &energy.display().to_string())],
                    );
                    continue;
                }
                Err(e) => {
                    // Since Linux 5.10 energy_uj is root-only (a side channel); say so once per
                    // scrape at debug level rather than fail.
                    log::debug(
                        "cannot read RAPL counter",
                        &[
                            ("path", &energy.display().to_string()),
                            ("err", &e.to_string()),
                        ],
                    );
                    continue;
                }
            };
            let name = format!("node_rapl_{}_joules_total", sanitize(&zone));
            families
                .entry(name.clone())
                .or_insert_with(|| {
                    MetricFamily::counter(name, format!("Current RAPL {zone} value in joules"))
                })
                .push(
                    &[
                        ("index", index.to_string()),
                        ("path", path.display().to_string()),
                    ],
                    microjoules / 1e6,
                );
        }
        Ok(families.into_values().collect())
    }
}

/// `package-1` → ("package", 1); a name without an index (`dram`) is numbered by how often it
/// has been seen, as procfs does.
fn zone_and_index(raw: &str, uses: &mut BTreeMap<String, u32>) -> (String, u32) {
    let (name, index) = match raw.split_once('-') {
        Some((name, idx)) if !idx.contains('-') && idx.parse::<u32>().is_ok() => {
            (name.to_string(), idx.parse().unwrap_or(0))
        }
        _ => (raw.to_string(), *uses.get(raw).unwrap_or(&0)),
    };
    uses.insert(name.clone(), index + 1);
    (name, index)
}

fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zone_names_and_indices() {
        let mut uses = BTreeMap::new();
        assert_eq!(
            zone_and_index("package-0", &mut uses),
            ("package".into(), 0)
        );
        assert_eq!(zone_and_index("core", &mut uses), ("core".into(), 0));
        assert_eq!(zone_and_index("dram", &mut uses), ("dram".into(), 0));
        assert_eq!(zone_and_index("dram", &mut uses), ("dram".into(), 1));
        assert_eq!(
            zone_and_index("package-1", &mut uses),
            ("package".into(), 1)
        );
        assert_eq!(sanitize("psys-x"), "psys_x");
    }
}
