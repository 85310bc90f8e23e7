//! Thermal zones and cooling devices from /sys/class/thermal.

use crate::paths::{entries_if_present, read_sysfs_value, Paths};
use common::{log, BlockingCollector, CollectResult, MetricFamily};

pub struct ThermalZone {
    paths: Paths,
}

impl ThermalZone {
    pub fn new(paths: &Paths) -> Self {
        ThermalZone {
            paths: paths.clone(),
        }
    }
}

impl BlockingCollector for ThermalZone {
    fn collect(&self) -> CollectResult {
        let dir = self.paths.sys("class/thermal");
        // No thermal class at all (many VMs): nothing to report, not a failure.
        let Some(entries) = entries_if_present(&dir)? else {
            return Ok(vec![]);
        };
        let mut temp = MetricFamily::gauge("node_thermal_zone_temp", "Zone temperature in Celsius");
        let mut cur = MetricFamily::gauge(
            "node_cooling_device_cur_state",
            "Current throttle state of the cooling device",
        );
        let mut max = MetricFamily::gauge(
            "node_cooling_device_max_state",
            "Maximum throttle state of the cooling device",
        );
        for (name, path) in entries {
            let read = |file: &str| -> Option<(String, f64)> {
                let kind = read_sysfs_value(&path.join("type")).ok()?;
                let raw = match read_sysfs_value(&path.join(file)) {
                    Ok(v) => v,
                    Err(e) => {
                        // A zone whose sensor is off or in error answers EIO/ENODATA: skip it.
                        log::debug(
                            "skipping thermal entry",
                            &[
                                ("path", &path.join(file).display().to_string()),
                                ("err", &e.to_string()),
                            ],
                        );
                        return None;
                    }
                };
                match raw.parse::<f64>() {
                    Ok(v) => Some((kind, v)),
                    Err(_) => {
                        log::warn(
                            "skipping unparsable thermal value",
                            &[
                                ("path", &path.join(file).display().to_string()),
                                ("value", &raw),
                            ],
                        );
                        None
                    }
                }
            };
            if let Some(zone) = name.strip_prefix("thermal_zone") {
                if let Some((kind, millicelsius)) = read("temp") {
                    temp.push(
                        &[("type", kind.as_str()), ("zone", zone)],
                        millicelsius / 1000.0,
                    );
                }
            } else if let Some(device) = name.strip_prefix("cooling_device") {
                if let Some((kind, value)) = read("cur_state") {
                    cur.push(&[("name", device), ("type", kind.as_str())], value);
                }
                if let Some((kind, value)) = read("max_state") {
                    max.push(&[("name", device), ("type", kind.as_str())], value);
                }
            }
        }
        Ok(vec![temp, cur, max])
    }
}
