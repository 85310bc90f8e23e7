//! The vendor-neutral GPU series both GPU exporters emit, defined once so that one dashboard and
//! one set of alerts serve AMD and NVIDIA alike. Each exporter fills a [`GpuCore`] per device;
//! values it cannot read stay `None` and their series are left out (never reported as 0).
//!
//! Every series carries `gpu` (the exporter's device index) and `id`, the PCI address in sysfs
//! form (`0000:c4:00.0`, see [`normalize_pci_address`]), so the same card has the same id in
//! both exporters and across reboots.

use crate::metrics::MetricFamily;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct GpuCore {
    pub index: u32,
    /// PCI address, already normalised.
    pub id: String,
    /// `amd` or `nvidia`.
    pub vendor: &'static str,
    pub model: String,
    pub driver_version: String,
    /// Whether the device answered this scrape.
    pub up: bool,
    /// Busy fraction, 0..1.
    pub utilization_ratio: Option<f64>,
    pub memory_total_bytes: Option<f64>,
    pub memory_used_bytes: Option<f64>,
    /// Temperatures by sensor name (`edge`, `junction`, `memory`, `gpu`).
    pub temperatures_celsius: Vec<(String, f64)>,
    pub power_watts: Option<f64>,
    pub energy_joules: Option<f64>,
}

/// Turns `00000000:01:00.0` (NVML) or `0000:C4:00.0` (rocm-smi) into `0000:01:00.0` /
/// `0000:c4:00.0`: lower case, four-digit domain.
pub fn normalize_pci_address(address: &str) -> String {
    let lower = address.trim().to_ascii_lowercase();
    let parts: Vec<&str> = lower.splitn(2, ':').collect();
    match parts.as_slice() {
        [domain, rest] if rest.contains(':') => {
            let value = u32::from_str_radix(domain, 16).unwrap_or(0);
            format!("{value:04x}:{rest}")
        }
        // No domain given (`01:00.0`): domain 0.
        [bus, rest] => format!("0000:{bus}:{rest}"),
        _ => lower,
    }
}

/// Builds the core families for all devices, one family per metric.
pub fn core_families(devices: &[GpuCore]) -> Vec<MetricFamily> {
    let mut info = MetricFamily::gauge("gpu_info", "GPU identity; value is always 1.");
    let mut up = MetricFamily::gauge(
        "gpu_up",
        "Whether the GPU answered the last collection (1) or not (0).",
    );
    let mut utilization = MetricFamily::gauge(
        "gpu_utilization_ratio",
        "Fraction of time the GPU was busy, 0 to 1.",
    );
    let mut total = MetricFamily::gauge(
        "gpu_memory_total_bytes",
        "Memory the GPU can use, in bytes.",
    );
    let mut used = MetricFamily::gauge("gpu_memory_used_bytes", "GPU memory in use, in bytes.");
    let mut free = MetricFamily::gauge("gpu_memory_free_bytes", "GPU memory not in use, in bytes.");
    let mut temperature = MetricFamily::gauge(
        "gpu_temperature_celsius",
        "GPU temperature by sensor, in degrees Celsius.",
    );
    let mut power = MetricFamily::gauge("gpu_power_watts", "GPU power draw, in watts.");
    let mut energy = MetricFamily::counter(
        "gpu_energy_joules_total",
        "Energy used by the GPU since the driver loaded, in joules.",
    );
    for d in devices {
        let index = d.index.to_string();
        let ids = [("gpu", index.as_str()), ("id", d.id.as_str())];
        info.push(
            &[
                ("gpu", index.as_str()),
                ("id", d.id.as_str()),
                ("vendor", d.vendor),
                ("model", d.model.as_str()),
                ("driver_version", d.driver_version.as_str()),
            ],
            1.0,
        );
        up.push(&ids, if d.up { 1.0 } else { 0.0 });
        if let Some(v) = d.utilization_ratio {
            utilization.push(&ids, v);
        }
        if let Some(v) = d.memory_total_bytes {
            total.push(&ids, v);
        }
        if let Some(v) = d.memory_used_bytes {
            used.push(&ids, v);
        }
        if let (Some(t), Some(u)) = (d.memory_total_bytes, d.memory_used_bytes) {
            free.push(&ids, (t - u).max(0.0));
        }
        for (sensor, celsius) in &d.temperatures_celsius {
            temperature.push(
                &[
                    ("gpu", index.as_str()),
                    ("id", d.id.as_str()),
                    ("sensor", sensor.as_str()),
                ],
                *celsius,
            );
        }
        if let Some(v) = d.power_watts {
            power.push(&ids, v);
        }
        if let Some(v) = d.energy_joules {
            energy.push(&ids, v);
        }
    }
    vec![
        info,
        up,
        utilization,
        total,
        used,
        free,
        temperature,
        power,
        energy,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pci_addresses_are_normalised() {
        assert_eq!(normalize_pci_address("00000000:01:00.0"), "0000:01:00.0");
        assert_eq!(normalize_pci_address("0000:C4:00.0"), "0000:c4:00.0");
        assert_eq!(normalize_pci_address("0000:c4:00.0"), "0000:c4:00.0");
        assert_eq!(normalize_pci_address("01:00.0"), "0000:01:00.0");
    }

    #[test]
    fn absent_values_leave_series_out() {
        let devices = [GpuCore {
            index: 0,
            id: "0000:c4:00.0".into(),
            vendor: "amd",
            model: "Radeon 8060S".into(),
            up: true,
            memory_total_bytes: Some(100.0),
            memory_used_bytes: Some(30.0),
            temperatures_celsius: vec![("edge".into(), 45.0)],
            ..Default::default()
        }];
        let families = core_families(&devices);
        let get = |name: &str| families.iter().find(|f| f.name == name).unwrap();
        assert!(get("gpu_utilization_ratio").is_empty());
        assert!(get("gpu_power_watts").is_empty());
        assert_eq!(get("gpu_memory_free_bytes").samples[0].value, 70.0);
        assert_eq!(get("gpu_up").samples[0].value, 1.0);
        assert_eq!(
            get("gpu_temperature_celsius").samples[0].labels,
            vec![
                ("gpu".into(), "0".to_string()),
                ("id".into(), "0000:c4:00.0".to_string()),
                ("sensor".into(), "edge".to_string())
            ]
        );
    }
}
