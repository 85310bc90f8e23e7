//! Turns a [`Reading`] into metric families: the exporter's health (`rocm_up`,
//! `rocm_backend_info`, `rocm_exporter_backend_*`), the vendor-neutral GPU core from `common`
//! (`gpu_*`) and the AMD extras (`amdgpu_*`), all in base units. Every per-GPU series carries
//! `gpu` (position by PCI address) and `id` (PCI address).
//!
//! The health series of the backend worker follow the pattern both GPU exporters share:
//! `<exporter>_exporter_<source>_<what>`, the prefix the exporter's other self-metrics
//! (`rocm_exporter_build_info`, `rocm_exporter_collector_duration_seconds`) already carry, with
//! the source the samples come from (`backend` here, `nvml` in nvidia-exporter) and the same
//! suffixes, HELP wording and meaning: `_sample_age_seconds` (age of the sample this scrape was
//! answered from; here 0 when it was taken for this very scrape), `_timeouts_total` (samples
//! that did not finish within their timeout) and `_errors_total` (errors the source returned, by
//! kind). docs/stack.md lists the names they replaced.

use crate::apu;
use crate::backend_worker::Reading;
use crate::model::{runtime_asleep, Device};
use common::gpu::{core_families, GpuCore};
use common::MetricFamily;
use std::time::Instant;

pub fn render(backend: &str, reading: &Reading, now: Instant) -> Vec<MetricFamily> {
    let mut families = health(backend, reading, now);
    let Some(snapshot) = reading.snapshot.as_deref() else {
        return families;
    };
    let fresh = reading.is_fresh();
    let snapshot_age = reading.age_seconds(now).unwrap_or(0.0);

    let cores: Vec<GpuCore> = snapshot
        .devices
        .iter()
        .enumerate()
        .map(|(index, d)| core(index, d, &snapshot.driver_version, fresh))
        .collect();
    families.extend(core_families(&cores));

    let mut x = Extras::new();
    for (index, d) in snapshot.devices.iter().enumerate() {
        let age = match d.values_taken {
            Some(taken) => now.saturating_duration_since(taken).as_secs_f64(),
            None => snapshot_age,
        };
        x.add(index, d, age);
    }
    families.extend(x.into_families());
    families
}

fn health(backend: &str, reading: &Reading, now: Instant) -> Vec<MetricFamily> {
    let info = MetricFamily::gauge(
        "rocm_backend_info",
        "The backend this exporter reads AMD GPUs with; value is always 1.",
    )
    .with(&[("backend", backend)], 1.0);
    let up = MetricFamily::gauge(
        "rocm_up",
        "Whether the last collection succeeded (1) or not (0, with the reason).",
    );
    let up = match &reading.failure {
        None => up.with(&[("backend", backend)], 1.0),
        Some(f) => up.with(&[("backend", backend), ("reason", f.reason.as_str())], 0.0),
    };
    let mut families = vec![info, up];
    if let Some(age) = reading.age_seconds(now) {
        families.push(
            MetricFamily::gauge(
                "rocm_exporter_backend_sample_age_seconds",
                "Age of the backend sample this scrape was answered from, in seconds.",
            )
            .with(&[("backend", backend)], age),
        );
    }
    families.push(
        MetricFamily::counter(
            "rocm_exporter_backend_timeouts_total",
            "Backend samples that did not finish within their timeout (--rocm-smi.timeout: the run is killed).",
        )
        .with(&[("backend", backend)], reading.timeouts as f64),
    );
    let mut errors = MetricFamily::counter(
        "rocm_exporter_backend_errors_total",
        "Errors returned by the backend, by reason.",
    );
    for (reason, count) in &reading.errors {
        errors.push(
            &[("backend", backend), ("reason", reason.as_str())],
            *count as f64,
        );
    }
    families.push(errors);
    families
}

fn core(index: usize, d: &Device, driver_version: &str, fresh: bool) -> GpuCore {
    let (memory_total_bytes, memory_used_bytes) = apu::usable_memory(d.is_apu, &d.memory);
    GpuCore {
        index: index as u32,
        id: d.id.clone(),
        vendor: "amd",
        model: d.model.clone(),
        driver_version: driver_version.to_string(),
        up: fresh && d.answered,
        utilization_ratio: d.busy_percent.map(|p| (p / 100.0).clamp(0.0, 1.0)),
        memory_total_bytes,
        memory_used_bytes,
        temperatures_celsius: d.temperatures.clone(),
        // The instantaneous reading where there is one, as amd-smi's socket_power does.
        power_watts: d.power_input_watts.or(d.power_average_watts),
        energy_joules: None,
    }
}

/// The `amdgpu_*` families, one field per family, filled device by device: a family is named
/// once, in [`Extras::new`], and one left out of [`Extras::into_families`] does not compile (the
/// same shape as nvidia-exporter's families).
struct Extras {
    info: MetricFamily,
    apu: MetricFamily,
    memory_total: MetricFamily,
    memory_used: MetricFamily,
    power_average: MetricFamily,
    power_input: MetricFamily,
    power_cap: MetricFamily,
    temperature_critical: MetricFamily,
    clock: MetricFamily,
    fan_rpm: MetricFamily,
    fan_pwm: MetricFamily,
    voltage: MetricFamily,
    link_speed: MetricFamily,
    link_width: MetricFamily,
    link_max_speed: MetricFamily,
    link_max_width: MetricFamily,
    suspended: MetricFamily,
    age: MetricFamily,
}

impl Extras {
    fn new() -> Self {
        let g = MetricFamily::gauge;
        Extras {
            info: g("amdgpu_info", "AMD GPU identity; value is always 1."),
            apu: g("amdgpu_apu", "Whether the GPU is integrated in the CPU package (an APU) (1) or discrete (0)."),
            memory_total: g("amdgpu_memory_total_bytes", "Size of each amdgpu memory pool (vram, vis_vram, gtt), in bytes."),
            memory_used: g("amdgpu_memory_used_bytes", "Use of each amdgpu memory pool (vram, vis_vram, gtt), in bytes."),
            power_average: g("amdgpu_power_average_watts", "Average power by sensor (hwmon power1_average); on an APU the whole package, CPU included."),
            power_input: g("amdgpu_power_input_watts", "Instantaneous power by sensor (hwmon power1_input, rocm-smi current socket power)."),
            power_cap: g("amdgpu_power_cap_watts", "Power limit, in watts."),
            temperature_critical: g("amdgpu_temperature_critical_celsius", "Critical temperature by sensor, in degrees Celsius."),
            clock: g("amdgpu_clock_hertz", "Current clock by domain (sclk shader, mclk memory, ...), in hertz."),
            fan_rpm: g("amdgpu_fan_speed_rpm", "Fan speed, in revolutions per minute."),
            fan_pwm: g("amdgpu_fan_pwm_ratio", "Fan PWM duty cycle, 0 to 1."),
            voltage: g("amdgpu_voltage_volts", "Voltage by rail (vddgfx, vddnb), in volts."),
            link_speed: g("amdgpu_pcie_link_speed_transfers_per_second", "Current PCIe link speed per lane, in transfers per second."),
            link_width: g("amdgpu_pcie_link_width_lanes", "Current PCIe link width, in lanes."),
            link_max_speed: g("amdgpu_pcie_link_max_speed_transfers_per_second", "Maximum PCIe link speed per lane, in transfers per second."),
            link_max_width: g("amdgpu_pcie_link_max_width_lanes", "Maximum PCIe link width, in lanes."),
            suspended: g("amdgpu_runtime_suspended", "Whether the GPU sleeps in runtime power management, or is suspending or resuming (1); its values are then those of its last active read."),
            age: g("amdgpu_sample_age_seconds", "Age of this GPU's values; 0 when read for this scrape."),
        }
    }

    fn add(&mut self, index: usize, d: &Device, age: f64) {
        let gpu = index.to_string();
        let ids = [("gpu", gpu.as_str()), ("id", d.id.as_str())];
        let with = |key: &'static str, value: &str| {
            [
                ("gpu", gpu.clone()),
                ("id", d.id.clone()),
                (key, value.to_string()),
            ]
        };

        let smi_index = d.smi_index.map(|i| i.to_string()).unwrap_or_default();
        let mut info: Vec<(&str, &str)> = vec![("gpu", &gpu), ("id", &d.id)];
        for (key, value) in [
            ("card", d.card.as_deref()),
            (
                "smi_index",
                Some(smi_index.as_str()).filter(|s| !s.is_empty()),
            ),
            ("device_id", d.device_id.as_deref()),
            ("revision", d.revision.as_deref()),
            ("unique_id", d.unique_id.as_deref()),
            ("gfx_version", d.gfx_version.as_deref()),
        ] {
            if let Some(value) = value {
                info.push((key, value));
            }
        }
        self.info.push(&info, 1.0);
        self.apu.push(&ids, if d.is_apu { 1.0 } else { 0.0 });
        for (pool, name) in [
            (&d.memory.vram, "vram"),
            (&d.memory.vis_vram, "vis_vram"),
            (&d.memory.gtt, "gtt"),
        ] {
            if let Some(v) = pool.total_bytes {
                self.memory_total.push(&with("pool", name), v);
            }
            if let Some(v) = pool.used_bytes {
                self.memory_used.push(&with("pool", name), v);
            }
        }
        if let Some(v) = d.power_average_watts {
            self.power_average.push(&with("sensor", &d.power_sensor), v);
        }
        if let Some(v) = d.power_input_watts {
            self.power_input.push(&with("sensor", &d.power_sensor), v);
        }
        if let Some(v) = d.power_cap_watts {
            self.power_cap.push(&ids, v);
        }
        for (sensor, v) in &d.temperatures_critical {
            self.temperature_critical.push(&with("sensor", sensor), *v);
        }
        for (clock, v) in &d.clocks_hz {
            self.clock.push(&with("clock", clock), *v);
        }
        if let Some(v) = d.fan_rpm {
            self.fan_rpm.push(&ids, v);
        }
        if let Some(v) = d.fan_pwm_ratio {
            self.fan_pwm.push(&ids, v);
        }
        for (rail, v) in &d.voltages {
            self.voltage.push(&with("rail", rail), *v);
        }
        for (family, value) in [
            (&mut self.link_speed, d.pcie.speed_transfers_per_second),
            (&mut self.link_width, d.pcie.width),
            (
                &mut self.link_max_speed,
                d.pcie.max_speed_transfers_per_second,
            ),
            (&mut self.link_max_width, d.pcie.max_width),
        ] {
            if let Some(v) = value {
                family.push(&ids, v);
            }
        }
        let asleep = runtime_asleep(d.runtime_status.as_deref());
        if d.runtime_status.is_some() {
            self.suspended.push(&ids, if asleep { 1.0 } else { 0.0 });
        }
        // A GPU asleep since before our first read has no values, so no age either.
        let asleep_without_values = asleep && d.values_taken.is_none();
        if !asleep_without_values {
            self.age.push(&ids, age);
        }
    }

    fn into_families(self) -> Vec<MetricFamily> {
        // Destructured without `..`: a family added to the struct but not here is a compile error.
        let Extras {
            info,
            apu,
            memory_total,
            memory_used,
            power_average,
            power_input,
            power_cap,
            temperature_critical,
            clock,
            fan_rpm,
            fan_pwm,
            voltage,
            link_speed,
            link_width,
            link_max_speed,
            link_max_width,
            suspended,
            age,
        } = self;
        vec![
            info,
            apu,
            memory_total,
            memory_used,
            power_average,
            power_input,
            power_cap,
            temperature_critical,
            clock,
            fan_rpm,
            fan_pwm,
            voltage,
            link_speed,
            link_width,
            link_max_speed,
            link_max_width,
            suspended,
            age,
        ]
    }
}
