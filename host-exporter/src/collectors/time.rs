//! The host's clock: `node_time_seconds`, the local time zone and its offset, and the kernel's
//! clock sources from sysfs.

use crate::kept_file::KeptFile;
use crate::paths::{sorted_entries, Paths};
use common::{BlockingCollector, CollectResult, MetricFamily};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

pub struct Time {
    paths: Paths,
    /// The clock source devices, listed once: they are registered at boot. Listed again after
    /// a read fails.
    clocksources: Mutex<Option<Vec<ClockSource>>>,
}

/// One `clocksourceN` device and its two files, kept open.
struct ClockSource {
    device: String,
    available: KeptFile,
    current: KeptFile,
}

impl Time {
    pub fn new(paths: &Paths) -> Self {
        Time {
            paths: paths.clone(),
            clocksources: Mutex::new(None),
        }
    }

    fn list_clocksources(&self) -> Vec<ClockSource> {
        let Ok(entries) = sorted_entries(&self.paths.sys("devices/system/clocksource")) else {
            return Vec::new();
        };
        entries
            .into_iter()
            .filter_map(|(name, path)| {
                let device = name.strip_prefix("clocksource")?.to_string();
                Some(ClockSource {
                    device,
                    available: KeptFile::new(path.join("available_clocksource")),
                    current: KeptFile::new(path.join("current_clocksource")),
                })
            })
            .collect()
    }
}

impl BlockingCollector for Time {
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
        let mut listed = self.clocksources.lock().unwrap_or_else(|p| p.into_inner());
        let sources = listed.get_or_insert_with(|| self.list_clocksources());
        let mut failed = false;
        for source in sources.iter() {
            let device = source.device.as_str();
            match source.available.read_io() {
                Ok(list) => {
                    for name in list.split_ascii_whitespace() {
                        available.push(&[("clocksource", name), ("device", device)], 1.0);
                    }
                }
                Err(_) => failed = true,
            }
            match source.current.read_io() {
                Ok(name) => {
                    current.push(&[("clocksource", name.trim()), ("device", device)], 1.0);
                }
                Err(_) => failed = true,
            }
        }
        // Nothing listed (no sysfs yet) or a device gone: look again next time.
        if failed || sources.is_empty() {
            *listed = None;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn sources(families: &[MetricFamily], name: &str) -> Vec<String> {
        families
            .iter()
            .find(|f| f.name == name)
            .map(|f| {
                f.samples
                    .iter()
                    .map(|s| format!("{}:{}", s.labels[1].1, s.labels[0].1))
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn clock_sources_are_listed_once_and_again_when_one_goes() {
        let root = std::env::temp_dir().join(format!("time-{}", std::process::id()));
        let dir = root.join("sys/devices/system/clocksource");
        let device = |n: u32, available: &str, current: &str| {
            let d = dir.join(format!("clocksource{n}"));
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("available_clocksource"), available).unwrap();
            std::fs::write(d.join("current_clocksource"), current).unwrap();
        };
        device(0, "tsc hpet \n", "tsc\n");
        let paths = Paths {
            procfs: root.join("proc"),
            sysfs: root.join("sys"),
            rootfs: root.clone(),
            udev_data: root.join("udev"),
        };
        let time = Time::new(&paths);
        let current = "node_time_clocksource_current_info";

        let families = time.collect().unwrap();
        assert_eq!(
            sources(&families, "node_time_clocksource_available_info"),
            ["0:tsc", "0:hpet"]
        );
        assert_eq!(sources(&families, current), ["0:tsc"]);

        // The current source changes: seen at once. A new device: not looked for while the
        // listed ones read fine.
        std::fs::write(dir.join("clocksource0/current_clocksource"), "hpet\n").unwrap();
        device(1, "acpi_pm\n", "acpi_pm\n");
        assert_eq!(sources(&time.collect().unwrap(), current), ["0:hpet"]);

        // A listed device goes: that scrape leaves it out, the next lists the devices again.
        std::fs::remove_dir_all(dir.join("clocksource0")).unwrap();
        assert_eq!(
            sources(&time.collect().unwrap(), current),
            Vec::<String>::new()
        );
        assert_eq!(sources(&time.collect().unwrap(), current), ["1:acpi_pm"]);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
