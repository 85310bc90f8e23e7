//! The powersupplyclass collector: batteries, mains adapters and UPSes from
//! /sys/class/power_supply, one `node_power_supply_<attribute>` gauge per numeric attribute in
//! base units (sysfs gives µA, µV, µW, µWh, µAh and tenths of a degree) and
//! `node_power_supply_info` labelled by the text attributes. Supplies whose name matches
//! `--collector.powersupply.ignored-supplies` are left out.

use crate::kept_file::KeptFileSet;
use crate::paths::{entries_if_present, if_present, sorted_entries, Paths};
use common::{log, BlockingCollector, CollectResult, MetricFamily};
use regex_lite::Regex;
use std::collections::BTreeMap;
use std::path::PathBuf;

pub struct PowerSupplyClass {
    dir: PathBuf,
    ignored: Option<Regex>,
    /// Up to 60 attributes per supply, read every scrape: kept open.
    files: KeptFileSet,
}

impl PowerSupplyClass {
    pub fn new(paths: &Paths, ignored: Option<Regex>) -> Self {
        PowerSupplyClass {
            dir: paths.sys("class/power_supply"),
            ignored,
            files: KeptFileSet::default(),
        }
    }
}

/// (sysfs file, metric name after `node_power_supply_`, divisor), as node_exporter maps them.
const NUMBERS: [(&str, &str, f64); 49] = [
    ("authentic", "authentic", 1.0),
    ("calibrate", "calibrate", 1.0),
    ("capacity", "capacity", 1.0),
    ("capacity_alert_max", "capacity_alert_max", 1.0),
    ("capacity_alert_min", "capacity_alert_min", 1.0),
    ("cycle_count", "cyclecount", 1.0),
    ("online", "online", 1.0),
    ("present", "present", 1.0),
    ("time_to_empty_now", "time_to_empty_seconds", 1.0),
    ("time_to_full_now", "time_to_full_seconds", 1.0),
    ("current_boot", "current_boot", 1e6),
    ("current_max", "current_max", 1e6),
    ("current_now", "current_ampere", 1e6),
    ("energy_empty", "energy_empty", 1e6),
    ("energy_empty_design", "energy_empty_design", 1e6),
    ("energy_full", "energy_full", 1e6),
    ("energy_full_design", "energy_full_design", 1e6),
    ("energy_now", "energy_watthour", 1e6),
    ("voltage_boot", "voltage_boot", 1e6),
    ("voltage_max", "voltage_max", 1e6),
    ("voltage_max_design", "voltage_max_design", 1e6),
    ("voltage_min", "voltage_min", 1e6),
    ("voltage_min_design", "voltage_min_design", 1e6),
    ("voltage_now", "voltage_volt", 1e6),
    ("voltage_ocv", "voltage_ocv", 1e6),
    ("charge_control_limit", "charge_control_limit", 1e6),
    ("charge_control_limit_max", "charge_control_limit_max", 1e6),
    ("charge_counter", "charge_counter", 1e6),
    ("charge_empty", "charge_empty", 1e6),
    ("charge_empty_design", "charge_empty_design", 1e6),
    ("charge_full", "charge_full", 1e6),
    ("charge_full_design", "charge_full_design", 1e6),
    ("charge_now", "charge_ampere", 1e6),
    ("charge_term_current", "charge_term_current", 1e6),
    ("constant_charge_current", "constant_charge_current", 1e6),
    (
        "constant_charge_current_max",
        "constant_charge_current_max",
        1e6,
    ),
    ("constant_charge_voltage", "constant_charge_voltage", 1e6),
    (
        "constant_charge_voltage_max",
        "constant_charge_voltage_max",
        1e6,
    ),
    ("precharge_current", "precharge_current", 1e6),
    ("input_current_limit", "input_current_limit", 1e6),
    ("power_now", "power_watt", 1e6),
    ("temp", "temp_celsius", 10.0),
    ("temp_alert_max", "temp_alert_max_celsius", 10.0),
    ("temp_alert_min", "temp_alert_min_celsius", 10.0),
    ("temp_ambient", "temp_ambient_celsius", 10.0),
    ("temp_ambient_max", "temp_ambient_max_celsius", 10.0),
    ("temp_ambient_min", "temp_ambient_min_celsius", 10.0),
    ("temp_max", "temp_max_celsius", 10.0),
    ("temp_min", "temp_min_celsius", 10.0),
];

/// The text attributes that label `node_power_supply_info`, in label-name order.
const TEXTS: [&str; 11] = [
    "capacity_level",
    "charge_type",
    "health",
    "manufacturer",
    "model_name",
    "scope",
    "serial_number",
    "status",
    "technology",
    "type",
    "usb_type",
];

impl BlockingCollector for PowerSupplyClass {
    fn collect(&self) -> CollectResult {
        let Some(entries) = entries_if_present(&self.dir)? else {
            return Ok(vec![]);
        };
        let mut families: BTreeMap<&str, MetricFamily> = BTreeMap::new();
        let mut info = MetricFamily::gauge(
            "node_power_supply_info",
            "info of /sys/class/power_supply/<power_supply>.",
        );
        let mut files = self.files.scrape();
        for (supply, path) in entries {
            if self.ignored.as_ref().is_some_and(|r| r.is_match(&supply)) {
                continue;
            }
            // Listing the directory once costs less than failing to open the ~40 attributes
            // a given supply does not have.
            let present: std::collections::HashSet<String> = sorted_entries(&path)
                .map(|e| e.into_iter().map(|(name, _)| name).collect())
                .unwrap_or_default();
            let mut read = |file: &str| -> Option<String> {
                if !present.contains(file) {
                    return None;
                }
                let attr = path.join(file);
                // Absent, or a driver that cannot answer now (ENODATA, EIO): skip it.
                match if_present(files.read_trimmed(&attr)) {
                    Ok(value) => value,
                    Err(e) => {
                        log::debug(
                            "skipping unreadable power supply attribute",
                            &[
                                ("path", &attr.display().to_string()),
                                ("err", &e.to_string()),
                            ],
                        );
                        None
                    }
                }
            };
            for (file, name, divisor) in &NUMBERS {
                let Some(raw) = read(file) else { continue };
                let Ok(value) = raw.parse::<i64>() else {
                    log::warn(
                        "skipping unparsable power supply value",
                        &[
                            ("path", &path.join(file).display().to_string()),
                            ("value", &raw),
                        ],
                    );
                    continue;
                };
                families
                    .entry(name)
                    .or_insert_with(|| {
                        MetricFamily::gauge(
                            ["node_power_supply_", name].concat(),
                            [name, " value of /sys/class/power_supply/<power_supply>."].concat(),
                        )
                    })
                    .push(&[("power_supply", supply.as_str())], value as f64 / divisor);
            }
            let mut labels: Vec<(&str, String)> = Vec::with_capacity(TEXTS.len() + 1);
            for file in TEXTS {
                if let Some(value) = read(file).filter(|v| !v.is_empty()) {
                    labels.push((file, value));
                }
            }
            let at = labels.partition_point(|(k, _)| *k < "power_supply");
            labels.insert(at, ("power_supply", supply.clone()));
            info.push(&labels, 1.0);
        }
        let mut out: Vec<MetricFamily> = families.into_values().collect();
        out.push(info);
        Ok(out)
    }
}
