//! Hardware sensors from /sys/class/hwmon (temperatures, fans, voltages, currents, power,
//! energy), named exactly as node_exporter names them: `node_hwmon_<type>[_<property>]_<unit>`
//! with labels `chip` (from the device path, stable across reboots) and `sensor` (`temp1`).

use crate::paths::{entries_if_present, read_sysfs_value, sorted_entries, Paths};
use common::{log, BlockingCollector, CollectResult, MetricFamily};
use std::collections::BTreeMap;
use std::path::Path;

pub struct Hwmon {
    paths: Paths,
}

impl Hwmon {
    pub fn new(paths: &Paths) -> Self {
        Hwmon {
            paths: paths.clone(),
        }
    }
}

const SENSOR_TYPES: [&str; 14] = [
    "vrm",
    "beep_enable",
    "update_interval",
    "in",
    "cpu",
    "fan",
    "pwm",
    "temp",
    "curr",
    "power",
    "energy",
    "humidity",
    "intrusion",
    "freq",
];

/// Families by name, so that every chip adds its samples to the same family.
#[derive(Default)]
struct Families(BTreeMap<String, MetricFamily>);

impl Families {
    fn gauge(&mut self, name: String, help: String, labels: &[(&'static str, &str)], value: f64) {
        self.0
            .entry(name.clone())
            .or_insert_with(|| MetricFamily::gauge(name, help))
            .push(labels, value);
    }

    fn counter(&mut self, name: String, help: String, labels: &[(&'static str, &str)], value: f64) {
        self.0
            .entry(name.clone())
            .or_insert_with(|| MetricFamily::counter(name, help))
            .push(labels, value);
    }
}

impl BlockingCollector for Hwmon {
    fn collect(&self) -> CollectResult {
        let dir = self.paths.sys("class/hwmon");
        // No hwmon class (VMs, containers without /sys): nothing to report.
        let Some(entries) = entries_if_present(&dir)? else {
            return Ok(vec![]);
        };
        let mut families = Families::default();
        for (_, path) in entries {
            if !path.is_dir() {
                continue;
            }
            if let Err(e) = collect_chip(&path, &mut families) {
                log::warn(
                    "skipping hwmon chip",
                    &[
                        ("path", &path.display().to_string()),
                        ("err", &format!("{e:#}")),
                    ],
                );
            }
        }
        Ok(families.0.into_values().collect())
    }
}

fn collect_chip(dir: &Path, families: &mut Families) -> anyhow::Result<()> {
    let chip = chip_name(dir)?;
    // sensor ("temp1") → property ("input", "max", "" for a bare file such as "pwm1") → raw.
    let mut sensors: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    read_sensor_files(dir, &mut sensors)?;
    let device = dir.join("device");
    if device.exists() {
        read_sensor_files(&device, &mut sensors)?;
    }
    if let Ok(raw) = std::fs::read_to_string(dir.join("name")) {
        let human = clean_name(&raw);
        if !human.is_empty() {
            families.gauge(
                "node_hwmon_chip_names".into(),
                "Annotation metric for human-readable chip names".into(),
                &[("chip", &chip), ("chip_name", &human)],
                1.0,
            );
        }
    }
    for (sensor, properties) in &sensors {
        let sensor_type = sensor.trim_end_matches(|c: char| c.is_ascii_digit());
        let labels = [("chip", chip.as_str()), ("sensor", sensor.as_str())];
        if let Some(label) = properties.get("label") {
            families.gauge(
                "node_hwmon_sensor_label".into(),
                "Label for given chip and sensor".into(),
                &[("chip", &chip), ("sensor", sensor), ("label", label)],
                1.0,
            );
        }
        let bare = properties.get("").map(|v| v.parse::<f64>());
        match sensor_type {
            "beep_enable" => {
                let on = properties.get("").is_some_and(|v| v == "1");
                families.gauge(
                    "node_hwmon_beep_enabled".into(),
                    "Hardware beep enabled".into(),
                    &labels,
                    if on { 1.0 } else { 0.0 },
                );
                continue;
            }
            "vrm" => {
                if let Some(Ok(v)) = bare {
                    families.gauge(
                        "node_hwmon_voltage_regulator_version".into(),
                        "Hardware voltage regulator".into(),
                        &labels,
                        v,
                    );
                }
                continue;
            }
            "update_interval" => {
                if let Some(Ok(v)) = bare {
                    families.gauge(
                        "node_hwmon_update_interval_seconds".into(),
                        "Hardware monitor update interval".into(),
                        &labels,
                        v * 0.001,
                    );
                }
                continue;
            }
            _ => {}
        }
        for (element, raw) in properties {
            if element == "label" {
                continue;
            }
            let mut name = format!("node_hwmon_{sensor_type}");
            if element == "input" {
                // A bare file next to `_input` means `_input` needs its own name.
                if properties.contains_key("") {
                    name.push_str("_input");
                }
            } else if !element.is_empty() {
                name.push('_');
                name.push_str(&clean_name(element));
            }
            let Ok(value) = raw.parse::<f64>() else {
                continue;
            };
            emit(
                families,
                name,
                sensor_type,
                element,
                value,
                &labels,
                properties,
            );
        }
    }
    Ok(())
}

/// One sensor value with the unit and scale node_exporter gives its type and property.
fn emit(
    families: &mut Families,
    name: String,
    sensor_type: &str,
    element: &str,
    value: f64,
    labels: &[(&'static str, &str)],
    properties: &BTreeMap<String, String>,
) {
    let shown = if element.is_empty() { "input" } else { element };
    match (sensor_type, element) {
        (_, "fault" | "alarm") => families.gauge(name, format!("Hardware sensor {element} status ({sensor_type})"), labels, value),
        (_, "beep") => families.gauge(format!("{name}_enabled"), "Hardware monitor sensor has beeping enabled".into(), labels, value),
        ("in" | "cpu", _) => families.gauge(format!("{name}_volts"), format!("Hardware monitor for voltage ({element})"), labels, value * 0.001),
        ("temp", e) if e != "type" => families.gauge(format!("{name}_celsius"), format!("Hardware monitor for temperature ({shown})"), labels, value * 0.001),
        ("curr", _) => families.gauge(format!("{name}_amps"), format!("Hardware monitor for current ({element})"), labels, value * 0.001),
        ("energy", _) => families.counter(format!("{name}_joule_total"), format!("Hardware monitor for joules used so far ({element})"), labels, value / 1e6),
        ("power", "accuracy") => families.gauge(name, "Hardware monitor power meter accuracy, as a ratio".into(), labels, value / 1e6),
        ("power", "average_interval" | "average_interval_min" | "average_interval_max") => {
            families.gauge(format!("{name}_seconds"), format!("Hardware monitor power usage update interval ({element})"), labels, value * 0.001)
        }
        ("power", _) => families.gauge(format!("{name}_watt"), format!("Hardware monitor for power usage in watts ({element})"), labels, value / 1e6),
        ("humidity", _) => families.gauge(
            name,
            format!("Hardware monitor for humidity, as a ratio (multiply with 100.0 to get the humidity as a percentage) ({element})"),
            labels,
            value / 1e6,
        ),
        ("fan", "input" | "min" | "max" | "target") => {
            families.gauge(format!("{name}_rpm"), format!("Hardware monitor for fan revolutions per minute ({element})"), labels, value)
        }
        ("freq", "input") => {
            // GPU clocks: node_exporter labels them by their label text instead of `freqN`.
            if let Some(label) = properties.get("label") {
                let sensor = clean_name(label);
                families.gauge(
                    format!("{name}_freq_mhz"),
                    "Hardware monitor for GPU frequency in MHz".into(),
                    &[labels[0], ("sensor", &sensor)],
                    value / 1e6,
                );
            }
        }
        ("freq", _) => {}
        _ => families.gauge(name, format!("Hardware monitor {sensor_type} element {element}"), labels, value),
    }
}

/// Reads every `<type><n>[_<property>]` file of a known sensor type in `dir`. A file that cannot
/// be read (EAGAIN, EIO, EACCES from a sleeping or broken sensor) is skipped.
fn read_sensor_files(
    dir: &Path,
    sensors: &mut BTreeMap<String, BTreeMap<String, String>>,
) -> anyhow::Result<()> {
    let entries = sorted_entries(dir).map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
    for (file, path) in entries {
        let Some((sensor_type, number, property)) = split_sensor_file(&file) else {
            continue;
        };
        if !SENSOR_TYPES.contains(&sensor_type) {
            continue;
        }
        match read_sysfs_value(&path) {
            Ok(value) => {
                sensors
                    .entry(format!("{sensor_type}{number}"))
                    .or_default()
                    .insert(property.to_string(), value);
            }
            Err(e) => log::debug(
                "skipping unreadable sensor file",
                &[
                    ("path", &path.display().to_string()),
                    ("err", &e.to_string()),
                ],
            ),
        }
    }
    Ok(())
}

/// `temp1_input` → ("temp", 1, "input"); `pwm1` → ("pwm", 1, ""); `update_interval` →
/// ("update_interval", 0, ""). A missing number counts as 0, as in node_exporter.
fn split_sensor_file(file: &str) -> Option<(&str, u32, &str)> {
    let type_end = file
        .find(|c: char| c.is_ascii_digit())
        .unwrap_or(file.len());
    let (sensor_type, rest) = file.split_at(type_end);
    if sensor_type.is_empty() {
        return None;
    }
    let digits_end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    let (digits, rest) = rest.split_at(digits_end);
    let number = if digits.is_empty() {
        0
    } else {
        digits.parse().ok()?
    };
    if digits.is_empty() {
        // No number: the whole name is the type (`update_interval`, `beep_enable`).
        return Some((sensor_type, 0, ""));
    }
    let property = match rest.strip_prefix('_') {
        Some(p) => p,
        None if rest.is_empty() => "",
        None => return None,
    };
    Some((sensor_type, number, property))
}

/// node_exporter's chip name: from the device the hwmon belongs to (`platform_coretemp_0`,
/// `0000:00:08_1_0000:c4:00_0`), else its `name` file, else `hwmonN`.
fn chip_name(dir: &Path) -> anyhow::Result<String> {
    if let Ok(device) = std::fs::canonicalize(dir.join("device")) {
        let dev_name = device
            .file_name()
            .map(|n| clean_name(&n.to_string_lossy()))
            .unwrap_or_default();
        let dev_type = device
            .parent()
            .and_then(|p| p.file_name())
            .map(|n| clean_name(&n.to_string_lossy()))
            .unwrap_or_default();
        if !dev_type.is_empty() && !dev_name.is_empty() {
            return Ok(format!("{dev_type}_{dev_name}"));
        }
        if !dev_name.is_empty() {
            return Ok(dev_name);
        }
    }
    if let Ok(raw) = std::fs::read_to_string(dir.join("name")) {
        let name = clean_name(&raw);
        if !name.is_empty() {
            return Ok(name);
        }
    }
    let real = std::fs::canonicalize(dir)?;
    let name = real
        .file_name()
        .map(|n| clean_name(&n.to_string_lossy()))
        .unwrap_or_default();
    if name.is_empty() {
        anyhow::bail!("cannot derive a chip name");
    }
    Ok(name)
}

/// Lower case, anything but `[a-z0-9:_]` as `_`, no leading or trailing `_`.
fn clean_name(raw: &str) -> String {
    let replaced: String = raw
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == ':' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    replaced.trim_matches('_').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sensor_file_names() {
        assert_eq!(split_sensor_file("temp1_input"), Some(("temp", 1, "input")));
        assert_eq!(
            split_sensor_file("temp12_crit_alarm"),
            Some(("temp", 12, "crit_alarm"))
        );
        assert_eq!(split_sensor_file("pwm1"), Some(("pwm", 1, "")));
        assert_eq!(
            split_sensor_file("update_interval"),
            Some(("update_interval", 0, ""))
        );
        assert_eq!(
            split_sensor_file("power1_average_interval"),
            Some(("power", 1, "average_interval"))
        );
        assert_eq!(split_sensor_file("name"), Some(("name", 0, "")));
        assert_eq!(split_sensor_file("1abc"), None);
    }

    #[test]
    fn names_are_cleaned() {
        assert_eq!(clean_name("coretemp\n"), "coretemp");
        assert_eq!(clean_name("Package id 0"), "package_id_0");
        assert_eq!(clean_name("0000:00:18.3"), "0000:00:18_3");
    }
}
