//! The host's clock: `node_time_seconds`, the local time zone and its offset, and the kernel's
//! clock sources from sysfs.

use crate::paths::{read_sysfs_value, sorted_entries, Paths};
use common::{BlockingCollector, CollectResult, MetricFamily};
use std::time::{SystemTime, UNIX_EPOCH};

pub struct Time {
    paths: Paths,
}

impl Time {
    pub fn new(paths: &Paths) -> Self {
        Time {
            paths: paths.clone(),
        }
    }
}

impl BlockingCollector for Time {
    fn name(&self) -> &'static str {
        "time"
    }

    fn collect(&self) -> CollectResult {
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?;
        let mut families = vec![MetricFamily::gauge(
            "node_time_seconds",
            "System time in seconds since epoch (1970).",
        )
        .with_value(now.as_secs_f64())];
        if let Some((zone, offset)) = local_zone(now.as_secs() as i64) {
            families.push(
                MetricFamily::gauge(
                    "node_time_zone_offset_seconds",
                    "System time zone offset in seconds.",
                )
                .with(&[("time_zone", zone)], offset),
            );
        }
        let mut available = MetricFamily::gauge(
            "node_time_clocksource_available_info",
            "Available clocksources read from '/sys/devices/system/clocksource'.",
        );
        let mut current = MetricFamily::gauge(
            "node_time_clocksource_current_info",
            "Current clocksource read from '/sys/devices/system/clocksource'.",
        );
        if let Ok(entries) = sorted_entries(&self.paths.sys("devices/system/clocksource")) {
            for (name, path) in entries {
                let Some(device) = name.strip_prefix("clocksource") else {
                    continue;
                };
                if let Ok(list) = read_sysfs_value(&path.join("available_clocksource")) {
                    for source in list.split_ascii_whitespace() {
                        available.push(&[("clocksource", source), ("device", device)], 1.0);
                    }
                }
                if let Ok(source) = read_sysfs_value(&path.join("current_clocksource")) {
                    current.push(&[("clocksource", source.as_str()), ("device", device)], 1.0);
                }
            }
        }
        families.push(available);
        families.push(current);
        Ok(families)
    }
}

/// The local zone's abbreviation and UTC offset at `t`, from the C library (which reads TZ and
/// /etc/localtime as the host configures them).
// libc marks time_t deprecated on musl only (its width changed in musl 1.2); it is what
// localtime_r takes.
#[allow(deprecated)]
fn local_zone(t: i64) -> Option<(String, f64)> {
    let t = t as libc::time_t;
    // SAFETY: localtime_r writes only into `tm`; tm_zone points into static libc storage that
    // stays valid until the next tzset, and is copied at once.
    unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&t, &mut tm).is_null() || tm.tm_zone.is_null() {
            return None;
        }
        let zone = std::ffi::CStr::from_ptr(tm.tm_zone)
            .to_string_lossy()
            .into_owned();
        Some((zone, tm.tm_gmtoff as f64))
    }
}
