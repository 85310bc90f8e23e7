//! NVMe controllers from /sys/class/nvme, in node_exporter's names: `node_nvme_info` per
//! controller, and per namespace of a controller (the `nvme<ctrl>c<path>n<ns>` directories
//! that native NVMe multipath makes) its ANA state, size, use and logical block size.
//!
//! Sizes are computed as node_exporter (procfs) computes them, as the sysfs number times the
//! logical block size, so that both report the same values.

use crate::paths::{entries_if_present, read_sysfs_value, sorted_entries, Paths};
use common::{log, BlockingCollector, CollectResult, MetricFamily};
use std::path::Path;

pub struct Nvme {
    paths: Paths,
}

impl Nvme {
    pub fn new(paths: &Paths) -> Self {
        Nvme {
            paths: paths.clone(),
        }
    }
}

struct Families {
    info: MetricFamily,
    ns_info: MetricFamily,
    capacity: MetricFamily,
    size: MetricFamily,
    used: MetricFamily,
    block_size: MetricFamily,
}

impl BlockingCollector for Nvme {
    fn collect(&self) -> CollectResult {
        let dir = self.paths.sys("class/nvme");
        // No NVMe driver or no controller: nothing to report.
        let Some(entries) = entries_if_present(&dir)? else {
            return Ok(vec![]);
        };
        let mut f = Families {
            info: MetricFamily::gauge(
                "node_nvme_info",
                "Non-numeric data from /sys/class/nvme/<device>, value is always 1.",
            ),
            ns_info: MetricFamily::gauge(
                "node_nvme_namespace_info",
                "Information about NVMe namespaces. Value is always 1",
            ),
            capacity: MetricFamily::gauge(
                "node_nvme_namespace_capacity_bytes",
                "Capacity of the NVMe namespace in bytes. Computed as namespace_size * namespace_logical_block_size",
            ),
            size: MetricFamily::gauge(
                "node_nvme_namespace_size_bytes",
                "Size of the NVMe namespace in bytes. Available in /sys/class/nvme/<device>/<namespace>/size",
            ),
            used: MetricFamily::gauge(
                "node_nvme_namespace_used_bytes",
                "Used space of the NVMe namespace in bytes. Available in /sys/class/nvme/<device>/<namespace>/nuse",
            ),
            block_size: MetricFamily::gauge(
                "node_nvme_namespace_logical_block_size_bytes",
                "Logical block size of the NVMe namespace in bytes. Usually 4Kb. Available in /sys/class/nvme/<device>/<namespace>/queue/logical_block_size",
            ),
        };
        for (name, path) in entries {
            if let Err(e) = controller(&name, &path, &mut f) {
                // A controller being reset or removed: skip it, keep the others.
                log::warn(
                    "skipping nvme controller",
                    &[("path", &path.display().to_string()), ("err", &e)],
                );
            }
        }
        Ok(vec![
            f.info,
            f.ns_info,
            f.capacity,
            f.size,
            f.used,
            f.block_size,
        ])
    }
}

fn controller(name: &str, path: &Path, f: &mut Families) -> Result<(), String> {
    let attr = |file: &str| {
        let p = path.join(file);
        read_sysfs_value(&p).map_err(|e| format!("{}: {e}", p.display()))
    };
    let (firmware, model, serial, state, cntlid) = (
        attr("firmware_rev")?,
        attr("model")?,
        attr("serial")?,
        attr("state")?,
        attr("cntlid")?,
    );
    // Read before anything is pushed, so that a controller is reported whole or not at all.
    let mut namespaces = Vec::new();
    for (entry, ns_path) in sorted_entries(path).map_err(|e| format!("{}: {e}", path.display()))? {
        let Some(nsid) = namespace_id(&entry) else {
            continue;
        };
        let number = |file: &str| -> Result<u64, String> {
            let p = ns_path.join(file);
            let raw = read_sysfs_value(&p).map_err(|e| format!("{}: {e}", p.display()))?;
            // procfs counts a value it cannot parse as 0; so do we, with a log line.
            Ok(raw.parse().unwrap_or_else(|_| {
                log::warn(
                    "unparsable nvme value, counted as 0",
                    &[("path", &p.display().to_string()), ("value", &raw)],
                );
                0
            }))
        };
        let used = number("nuse")?;
        let size = number("size")?;
        let block_size = number("queue/logical_block_size")?;
        // Only multipath-capable controllers have an ANA state.
        let ana = read_sysfs_value(&ns_path.join("ana_state")).unwrap_or_else(|_| "unknown".into());
        namespaces.push((nsid.to_string(), ana, used, size, block_size));
    }
    f.info.push(
        &[
            ("cntlid", cntlid.as_str()),
            ("device", name),
            ("firmware_revision", &firmware),
            ("model", &model),
            ("serial", &serial),
            ("state", &state),
        ],
        1.0,
    );
    for (nsid, ana, used, size, block_size) in namespaces {
        let labels = [("device", name), ("nsid", nsid.as_str())];
        f.ns_info.push(
            &[
                ("ana_state", ana.as_str()),
                ("device", name),
                ("nsid", &nsid),
            ],
            1.0,
        );
        f.capacity
            .push(&labels, size.saturating_mul(block_size) as f64);
        f.size.push(&labels, size.saturating_mul(block_size) as f64);
        f.used.push(&labels, used.saturating_mul(block_size) as f64);
        f.block_size.push(&labels, block_size as f64);
    }
    Ok(())
}

/// `nvme0c1n2` -> `2`: the namespace directories node_exporter counts. Plain `nvme0n1` block
/// devices are not namespaces of the controller directory there.
fn namespace_id(entry: &str) -> Option<&str> {
    let rest = entry.strip_prefix("nvme")?;
    let (ctrl, rest) = rest.split_once('c')?;
    let (path, nsid) = rest.split_once('n')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (digits(ctrl) && digits(path) && digits(nsid)).then_some(nsid)
}

#[cfg(test)]
mod tests {
    use super::namespace_id;

    #[test]
    fn namespace_directories_are_recognised() {
        assert_eq!(namespace_id("nvme0c0n1"), Some("1"));
        assert_eq!(namespace_id("nvme12c3n45"), Some("45"));
        assert_eq!(namespace_id("nvme0n1"), None);
        assert_eq!(namespace_id("nvmexc0n1"), None);
        assert_eq!(namespace_id("nvme0c0n"), None);
        assert_eq!(namespace_id("power"), None);
    }
}
