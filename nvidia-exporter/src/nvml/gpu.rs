//! The reads of one GPU: utilisation, memory, temperatures, power, clocks, fans, throttling,
//! PCIe, ECC and vGPU licensing, then its field values (`fields.rs`); GPM metrics between two
//! samples; DCGM's NVLink bandwidth between two readings.

use super::calls::Calls;
use super::ffi::{grid_license, memory_info_v1, GRID_LICENSE};
use super::fields::read_fields;
use crate::snapshot::{Gpm, GpuSample, Memory, Pcie};
use nvml_wrapper::enum_wrappers::device::{
    Clock, EccCounter, MemoryError, PerformancePolicy, TemperatureSensor,
};
use nvml_wrapper::enums::gpm::GpmMetricId;
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::gpm::gpm_metrics_get;
use nvml_wrapper::GpmSample;
use nvml_wrapper::{Device, Nvml};
use std::time::{SystemTime, UNIX_EPOCH};

const GPM_METRICS: [GpmMetricId; 7] = [
    GpmMetricId::GraphicsUtil,
    GpmMetricId::SmUtil,
    GpmMetricId::SmOccupancy,
    GpmMetricId::AnyTensorUtil,
    GpmMetricId::DramBwUtil,
    GpmMetricId::PcieTxPerSec,
    GpmMetricId::PcieRxPerSec,
];

/// Takes a GPM sample and computes the metrics since `previous`. Returns the metrics (none on
/// the first sample) and the new sample's handle, to be kept for the next call.
pub(super) fn read_gpm<'nvml>(
    calls: &mut Calls,
    nvml: &'nvml Nvml,
    function: &'static str,
    take: impl FnOnce() -> Result<GpmSample<'nvml>, NvmlError>,
    previous: Option<usize>,
) -> (Option<Gpm>, Option<usize>) {
    // SAFETY: handles in `previous` come from `into_handle` on this NVML and are freed once,
    // when this value drops.
    let previous = previous.map(|raw| unsafe { GpmSample::from_handle(nvml, raw as _) });
    let Some(current) = calls.call(function, take) else {
        return (None, None);
    };
    let gpm = previous.and_then(|previous| {
        let results = calls.call("nvmlGpmMetricsGet", || {
            gpm_metrics_get(nvml, &previous, &current, &GPM_METRICS)
        })?;
        let value = |i: usize| {
            results
                .get(i)
                .and_then(|r| r.as_ref().ok())
                .map(|r| r.value)
        };
        const MIB: f64 = 1024.0 * 1024.0;
        Some(Gpm {
            graphics_active: value(0).map(|p| p / 100.0),
            sm_active: value(1).map(|p| p / 100.0),
            sm_occupancy: value(2).map(|p| p / 100.0),
            tensor_active: value(3).map(|p| p / 100.0),
            dram_active: value(4).map(|p| p / 100.0),
            pcie_transmit_bytes_per_second: value(5).map(|v| v * MIB),
            pcie_receive_bytes_per_second: value(6).map(|v| v * MIB),
        })
    });
    (gpm, Some(current.into_handle() as usize))
}

pub(super) fn read_gpu(calls: &mut Calls, device: &Device, gpu: &mut GpuSample) {
    if let Some(u) = calls.call("nvmlDeviceGetUtilizationRates", || {
        device.utilization_rates()
    }) {
        gpu.utilization_percent = Some(u.gpu);
        gpu.memory_utilization_percent = Some(u.memory);
    }
    gpu.memory = memory(calls, device, "nvmlDeviceGetMemoryInfo_v2");
    gpu.temperature_celsius = calls.call("nvmlDeviceGetTemperature", || {
        device.temperature(TemperatureSensor::Gpu)
    });
    gpu.power_milliwatts = calls.call("nvmlDeviceGetPowerUsage", || device.power_usage());
    gpu.energy_millijoules = calls.call("nvmlDeviceGetTotalEnergyConsumption", || {
        device.total_energy_consumption()
    });
    gpu.power_limit_milliwatts = calls.call("nvmlDeviceGetPowerManagementLimit", || {
        device.power_management_limit()
    });
    gpu.enforced_power_limit_milliwatts = calls.call("nvmlDeviceGetEnforcedPowerLimit", || {
        device.enforced_power_limit()
    });
    gpu.encoder_percent = calls
        .call("nvmlDeviceGetEncoderUtilization", || {
            device.encoder_utilization()
        })
        .map(|u| u.utilization);
    gpu.decoder_percent = calls
        .call("nvmlDeviceGetDecoderUtilization", || {
            device.decoder_utilization()
        })
        .map(|u| u.utilization);
    // Support differs by argument (a GPU may lack the video clock only), so each argument is
    // its own entry in the not-supported cache.
    for (name, function, clock) in [
        (
            "graphics",
            "nvmlDeviceGetClockInfo(GRAPHICS)",
            Clock::Graphics,
        ),
        ("sm", "nvmlDeviceGetClockInfo(SM)", Clock::SM),
        ("memory", "nvmlDeviceGetClockInfo(MEM)", Clock::Memory),
        ("video", "nvmlDeviceGetClockInfo(VIDEO)", Clock::Video),
    ] {
        if let Some(mhz) = calls.call(function, || device.clock_info(clock)) {
            gpu.clocks_mhz.push((name, mhz));
        }
    }
    if let Some(fans) = calls.call("nvmlDeviceGetNumFans", || device.num_fans()) {
        for fan in 0..fans {
            if let Some(pct) = calls.call("nvmlDeviceGetFanSpeed_v2", || device.fan_speed(fan)) {
                gpu.fan_speed_percent.push((fan, pct));
            }
        }
    }
    gpu.performance_state = calls
        .call("nvmlDeviceGetPerformanceState", || {
            device.performance_state()
        })
        .map(|p| p.as_c());
    if gpu.identity.supported_throttle_reasons.is_some() {
        gpu.throttle_reasons = calls
            .call("nvmlDeviceGetCurrentClocksThrottleReasons", || {
                device.current_throttle_reasons()
            })
            .map(|r| r.bits());
    }
    for (name, function, policy) in [
        (
            "power",
            "nvmlDeviceGetViolationStatus(POWER)",
            PerformancePolicy::Power,
        ),
        (
            "thermal",
            "nvmlDeviceGetViolationStatus(THERMAL)",
            PerformancePolicy::Thermal,
        ),
        (
            "sync_boost",
            "nvmlDeviceGetViolationStatus(SYNC_BOOST)",
            PerformancePolicy::SyncBoost,
        ),
        (
            "board_limit",
            "nvmlDeviceGetViolationStatus(BOARD_LIMIT)",
            PerformancePolicy::BoardLimit,
        ),
        (
            "low_utilization",
            "nvmlDeviceGetViolationStatus(LOW_UTILIZATION)",
            PerformancePolicy::LowUtilization,
        ),
        (
            "reliability",
            "nvmlDeviceGetViolationStatus(RELIABILITY)",
            PerformancePolicy::Reliability,
        ),
    ] {
        if let Some(v) = calls.call(function, || device.violation_status(policy)) {
            gpu.violation_ns.push((name, v.violation_time));
        }
    }
    gpu.pcie = Pcie {
        link_generation: calls.call("nvmlDeviceGetCurrPcieLinkGeneration", || {
            device.current_pcie_link_gen()
        }),
        link_width: calls.call("nvmlDeviceGetCurrPcieLinkWidth", || {
            device.current_pcie_link_width()
        }),
        max_link_generation: calls.call("nvmlDeviceGetMaxPcieLinkGeneration", || {
            device.max_pcie_link_gen()
        }),
        max_link_width: calls.call("nvmlDeviceGetMaxPcieLinkWidth", || {
            device.max_pcie_link_width()
        }),
        replay_errors: calls.call("nvmlDeviceGetPcieReplayCounter", || {
            device.pcie_replay_counter()
        }),
        ..Default::default()
    };
    gpu.ecc_enabled = calls
        .call("nvmlDeviceGetEccMode", || device.is_ecc_enabled())
        .map(|m| m.currently_enabled);
    if gpu.ecc_enabled == Some(true) {
        for (counter, out, functions) in [
            (
                EccCounter::Volatile,
                &mut gpu.ecc_volatile,
                [
                    "nvmlDeviceGetTotalEccErrors(CORRECTED,VOLATILE)",
                    "nvmlDeviceGetTotalEccErrors(UNCORRECTED,VOLATILE)",
                ],
            ),
            (
                EccCounter::Aggregate,
                &mut gpu.ecc_aggregate,
                [
                    "nvmlDeviceGetTotalEccErrors(CORRECTED,AGGREGATE)",
                    "nvmlDeviceGetTotalEccErrors(UNCORRECTED,AGGREGATE)",
                ],
            ),
        ] {
            for ((name, kind), function) in [
                ("corrected", MemoryError::Corrected),
                ("uncorrected", MemoryError::Uncorrected),
            ]
            .into_iter()
            .zip(functions)
            {
                if let Some(n) = calls.call(function, || device.total_ecc_errors(kind, counter)) {
                    out.push((name, n));
                }
            }
        }
    }
    gpu.vgpu_licensed = match gpu.identity.vgpu_licensing {
        // No vGPU licensing on this GPU: DCGM reports 0, and NVML is not asked again.
        Some(false) => Some(0),
        Some(true) => calls
            .call(GRID_LICENSE, || grid_license(device))
            .and_then(|l| l.vgpu_state)
            .map(|state| u32::from(state > 0)),
        None => None,
    };
    read_fields(calls, device, gpu);
}

/// DCGM's `DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL` (DcgmCacheManager::ReadAndCacheNvLinkBandwidth):
/// the KiB sent and received over all links since the previous reading, per second, divided by
/// 1000 and truncated; 0 on the first reading, when the counters are 0 or when no time passed.
/// Where DCGM would publish a negative rate (counters reset), 0.
pub(super) fn dcgm_nvlink_bandwidth(previous: Option<(u64, i64)>, (sum, at): (u64, i64)) -> u64 {
    let Some((previous_sum, previous_at)) = previous else {
        return 0;
    };
    let seconds = (at - previous_at) as f64 / 1e6;
    if sum == 0 || seconds <= 0.0 || sum < previous_sum {
        return 0;
    }
    ((sum - previous_sum) as f64 / seconds / 1000.0) as u64
}

pub(super) fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or_default()
}

/// Memory in bytes: `nvmlDeviceGetMemoryInfo_v2` (with the reserved part), or on drivers older
/// than R510, which lack it, the v1 function nvml-wrapper does not wrap (used then includes
/// the reserved memory, which is unknown).
pub(super) fn memory(calls: &mut Calls, device: &Device, function: &'static str) -> Option<Memory> {
    let lib = device.nvml().lib();
    if lib.nvmlDeviceGetMemoryInfo_v2.is_ok() {
        return calls
            .call(function, || device.memory_info())
            .map(|m| Memory {
                total: m.total,
                reserved: Some(m.reserved),
                free: m.free,
                used: m.used,
            });
    }
    let v1 = if function.ends_with("(MIG)") {
        "nvmlDeviceGetMemoryInfo(MIG)"
    } else {
        "nvmlDeviceGetMemoryInfo"
    };
    calls.call(v1, || memory_info_v1(device)).map(|m| Memory {
        total: m.total,
        reserved: None,
        free: m.free,
        used: m.used,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nvlink_bandwidth_is_dcgms_rate_between_two_readings() {
        // First reading, counters at 0, no time passed, counters gone back: 0, as DCGM has it.
        assert_eq!(dcgm_nvlink_bandwidth(None, (5_000, 1_000_000)), 0);
        assert_eq!(dcgm_nvlink_bandwidth(Some((0, 0)), (0, 1_000_000)), 0);
        assert_eq!(dcgm_nvlink_bandwidth(Some((10, 7)), (5_000, 7)), 0);
        assert_eq!(
            dcgm_nvlink_bandwidth(Some((9_000, 0)), (5_000, 1_000_000)),
            0
        );
        // 1,999,999 KiB in 2 s: 999,999.5 KiB/s, / 1000 and truncated.
        assert_eq!(
            dcgm_nvlink_bandwidth(Some((1, 1_000_000)), (2_000_000, 3_000_000)),
            999
        );
    }
}
