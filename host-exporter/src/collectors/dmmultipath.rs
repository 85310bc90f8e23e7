//! Device-mapper multipath maps from /sys/block/dm-*, in node_exporter's names
//! (`node_dmmultipath_*`, node_exporter 1.10, off by default there and here): per map its
//! identity, whether it is active or suspended, its size and its paths, and per path the
//! state of the underlying device (`running` for SCSI and `live` for NVMe count as active).
//! A dm device is a multipath map when its `dm/uuid` starts with `mpath-`; LVM volumes and
//! crypt devices are passed over.

use crate::paths::{entries_if_present, if_present, read_sysfs_value, sorted_entries, Paths};
use common::{log, BlockingCollector, CollectResult, MetricFamily};
use std::path::Path;

pub struct DmMultipath {
    paths: Paths,
}

impl DmMultipath {
    pub fn new(paths: &Paths) -> Self {
        DmMultipath {
            paths: paths.clone(),
        }
    }
}

#[derive(Debug, PartialEq)]
struct Map {
    name: String,
    sysfs_name: String,
    uuid: String,
    suspended: bool,
    size_bytes: u64,
    /// (device, state)
    paths: Vec<(String, String)>,
}

fn is_path_active(state: &str) -> bool {
    state == "running" || state == "live"
}

impl BlockingCollector for DmMultipath {
    fn collect(&self) -> CollectResult {
        let block = self.paths.sys("block");
        let Some(entries) = entries_if_present(&block)? else {
            return Ok(vec![]);
        };
        let g = MetricFamily::gauge;
        let mut info = g(
            "node_dmmultipath_device_info",
            "Non-numeric information about a DM-multipath device.",
        );
        let mut active = g(
            "node_dmmultipath_device_active",
            "Whether the multipath device-mapper device is active (1) or suspended (0).",
        );
        let mut size = g(
            "node_dmmultipath_device_size_bytes",
            "Size of the multipath device in bytes, read from /sys/block/<dm>/size.",
        );
        let mut paths = g(
            "node_dmmultipath_device_paths",
            "Number of paths for a multipath device.",
        );
        let mut paths_active = g(
            "node_dmmultipath_device_paths_active",
            "Number of paths in active state (SCSI running or NVMe live) for a multipath device.",
        );
        let mut paths_failed = g(
            "node_dmmultipath_device_paths_failed",
            "Number of paths not in active state for a multipath device.",
        );
        let mut path_state = g(
            "node_dmmultipath_path_state",
            "Reports the underlying device state for a multipath path, as read from /sys/block/<dev>/device/state.",
        );
        for (name, path) in entries.iter().filter(|(n, _)| n.starts_with("dm-")) {
            let map = match read_map(&block, name, path) {
                Ok(Some(m)) => m,
                Ok(None) => continue,
                Err(e) => {
                    log::warn(
                        "skipping dm device",
                        &[("path", &path.display().to_string()), ("err", &e)],
                    );
                    continue;
                }
            };
            let labels = [
                ("device", map.name.as_str()),
                ("sysfs_name", map.sysfs_name.as_str()),
            ];
            info.push(
                &[
                    ("device", map.name.as_str()),
                    ("sysfs_name", &map.sysfs_name),
                    ("uuid", &map.uuid),
                ],
                1.0,
            );
            active.push(&labels, if map.suspended { 0.0 } else { 1.0 });
            size.push(&labels, map.size_bytes as f64);
            let up = map.paths.iter().filter(|(_, s)| is_path_active(s)).count();
            for (device, state) in &map.paths {
                path_state.push(
                    &[
                        ("device", map.name.as_str()),
                        ("path", device),
                        ("state", state),
                    ],
                    1.0,
                );
            }
            paths.push(&labels, map.paths.len() as f64);
            paths_active.push(&labels, up as f64);
            paths_failed.push(&labels, (map.paths.len() - up) as f64);
        }
        Ok(vec![
            info,
            active,
            size,
            paths,
            paths_active,
            paths_failed,
            path_state,
        ])
    }
}

/// A multipath map, `None` for any other dm device.
fn read_map(block: &Path, sysfs_name: &str, dir: &Path) -> Result<Option<Map>, String> {
    let read = |p: &Path| read_sysfs_value(p).map_err(|e| format!("{}: {e}", p.display()));
    let number = |p: &Path| -> Result<u64, String> {
        let raw = read(p)?;
        raw.parse()
            .map_err(|_| format!("{}: not a number: {raw:?}", p.display()))
    };
    let uuid_path = dir.join("dm/uuid");
    let Some(uuid) = if_present(read_sysfs_value(&uuid_path))
        .map_err(|e| format!("{}: {e}", uuid_path.display()))?
    else {
        // Not a device-mapper device after all.
        return Ok(None);
    };
    if !uuid.starts_with("mpath-") {
        return Ok(None);
    }
    let name = read(&dir.join("dm/name"))?;
    let suspended = number(&dir.join("dm/suspended"))? == 1;
    // The kernel's `size` is in 512-byte sectors.
    let size_bytes = number(&dir.join("size"))?.saturating_mul(512);
    let mut paths = Vec::new();
    let slaves_dir = dir.join("slaves");
    let slaves = if_present(sorted_entries(&slaves_dir))
        .map_err(|e| format!("{}: {e}", slaves_dir.display()))?;
    for (device, _) in slaves.unwrap_or_default() {
        let state = read(&block.join(&device).join("device/state"))?;
        paths.push((device, state));
    }
    Ok(Some(Map {
        name,
        sysfs_name: sysfs_name.to_string(),
        uuid,
        suspended,
        size_bytes,
        paths,
    }))
}

#[cfg(test)]
mod tests {
    use super::is_path_active;

    #[test]
    fn running_and_live_paths_are_active() {
        assert!(is_path_active("running"));
        assert!(is_path_active("live"));
        assert!(!is_path_active("offline"));
        assert!(!is_path_active("blocked"));
        assert!(!is_path_active("transport-offline"));
    }
}
