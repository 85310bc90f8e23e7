//! Golden end-to-end tests: the real binary, the real nvml-wrapper, a fake libnvidia-ml driven
//! by a scenario file, `/metrics` over HTTP compared with a checked-in exposition.
//! `UPDATE_GOLDEN=1 cargo test -p nvidia-exporter` rewrites the expected files.

mod support;

use common::testing::{assert_no_panic, promtool_check_metrics, value};
use std::time::{Duration, Instant};
use support::{golden, next_sample, start, Fake};

/// The second sample (GPM metrics need two), scraped again until the XID the scenario injects
/// has been counted (the event thread runs beside the NVML reader).
fn metrics_after_xid(exporter: &common::testing::ExporterProcess) -> String {
    let first = exporter.metrics();
    assert!(
        !first.contains("DCGM_FI_PROF_GR_ENGINE_ACTIVE{"),
        "GPM values need two samples"
    );
    next_sample();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = exporter.metrics();
        if text.contains("nvidia_xid_errors_total{") || Instant::now() > deadline {
            return text;
        }
        next_sample();
    }
}

#[test]
fn fleet_with_dcgm_names() {
    let exporter = start(Fake::Full, "fleet", &[]);
    let text = metrics_after_xid(&exporter);
    golden("fleet_dcgm", &text);
    assert_eq!(
        value(&text, "DCGM_FI_PROF_PCIE_TX_BYTES{gpu=\"0\""),
        Some(1024.0 * 1048576.0)
    );
    assert_eq!(
        value(&text, "DCGM_FI_PROF_GR_ENGINE_ACTIVE{gpu=\"0\""),
        Some(0.855)
    );
    assert!(value(&text, "nvidia_xid_last_timestamp_seconds{gpu=\"1\"").unwrap() > 1.7e9);
    assert_no_panic(&exporter);
}

#[test]
fn fleet_with_native_names_only() {
    let exporter = start(Fake::Full, "fleet", &["--no-compat.dcgm"]);
    let text = metrics_after_xid(&exporter);
    assert!(!text.contains("DCGM_FI_"));
    golden("fleet_native", &text);
    assert_no_panic(&exporter);
}

/// NVLink (DCGM's bandwidth is a rate between two samples) and vGPU licensing, in both naming
/// modes. The golden is the second sample: the first from which DCGM's NVLink value is a rate.
/// The fake moves its NVLink counters and timestamps by exactly one second per sample.
#[test]
fn nvlink_and_vgpu_license() {
    for (flags, suffix) in [(&[][..], ""), (&["--no-compat.dcgm"][..], "_native")] {
        let exporter = start(Fake::Full, "nvlink_vgpu", flags);
        let first = exporter.metrics();
        next_sample();
        let text = exporter.metrics();
        golden(&format!("nvlink_vgpu{suffix}"), &text);
        // NVML counts KiB; one step of the fake's rates since the first sample.
        assert_eq!(
            value(&text, "nvidia_nvlink_transmit_bytes_total{gpu=\"0\""),
            Some((1073741824u64 + 52428800) as f64 * 1024.0)
        );
        assert_eq!(
            value(&text, "nvidia_nvlink_receive_bytes_total{gpu=\"0\""),
            Some((536870912u64 + 26214400) as f64 * 1024.0)
        );
        assert!(!text.contains("nvidia_nvlink_transmit_bytes_total{gpu=\"1\""));
        assert_eq!(value(&text, "nvidia_vgpu_licensed{gpu=\"1\""), Some(1.0));
        if suffix.is_empty() {
            let nvlink = "DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL{gpu=\"0\"";
            assert_eq!(value(&first, nvlink), Some(0.0), "DCGM's first value is 0");
            // (52428800 + 26214400) KiB in 1 s, divided by 1000 and truncated, as DCGM does.
            assert_eq!(value(&text, nvlink), Some(78643.0));
            assert!(!text.contains("DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL{gpu=\"1\""));
            let license = |gpu: u32| {
                value(
                    &text,
                    &format!("DCGM_FI_DEV_VGPU_LICENSE_STATUS{{gpu=\"{gpu}\""),
                )
            };
            // No vGPU licensing (bare metal): 0, as DCGM reports it; licensed guest: 1;
            // unlicensed guest: 0; NVML answers NOT_SUPPORTED: absent.
            assert_eq!(
                [license(0), license(1), license(2), license(3)],
                [Some(0.0), Some(1.0), Some(0.0), None]
            );
        } else {
            assert!(!text.contains("DCGM_FI_"));
        }
        assert_no_panic(&exporter);
    }
}

#[test]
fn zero_gpus() {
    // Without GPUs both naming modes serve the same exposition.
    for flags in [&[][..], &["--no-compat.dcgm"][..]] {
        let exporter = start(Fake::Full, "zero_gpus", flags);
        let text = exporter.metrics();
        assert_eq!(value(&text, "nvidia_up "), Some(1.0));
        golden("zero_gpus", &text);
        assert_no_panic(&exporter);
    }
}

#[test]
fn missing_symbols_with_native_names_only() {
    let exporter = start(Fake::MissingSymbols, "fleet", &["--no-compat.dcgm"]);
    exporter.metrics();
    next_sample();
    golden("missing_symbols_native", &exporter.metrics());
    assert_no_panic(&exporter);
}

#[test]
fn missing_symbols_cost_only_their_own_series() {
    let exporter = start(Fake::MissingSymbols, "fleet", &[]);
    let first = exporter.metrics();
    next_sample();
    let text = exporter.metrics();
    golden("missing_symbols", &text);
    // A missing symbol is looked up once per GPU, not once per scrape.
    let counted = "nvidia_exporter_nvml_errors_total{function=\"nvmlDeviceGetEncoderUtilization\",error=\"symbol_not_found\"}";
    assert_eq!(value(&first, counted), Some(3.0));
    assert_eq!(value(&text, counted), Some(3.0));
    assert!(!text.contains("nvidia_encoder_utilization_ratio{"));
    assert!(text.contains("nvidia_decoder_utilization_ratio{"));
    // Without nvmlDeviceGetMemoryInfo_v2 (drivers before R510) memory comes from the v1 call,
    // whose used includes the reserved part: the reserved and allocated series are absent.
    assert_eq!(
        value(&text, "gpu_memory_used_bytes{gpu=\"0\""),
        Some((566231040u64 + 42949672960) as f64)
    );
    assert!(!text.contains("nvidia_memory_reserved_bytes{gpu=\"0\""));
    assert!(!text.contains("nvidia_memory_allocated_bytes{gpu=\"0\""));
    // Without nvmlEventSetWait_v2 no GPU is watched: no XID series claims "no error".
    assert!(!text.contains("DCGM_FI_DEV_XID_ERRORS{"), "{text}");
    assert_no_panic(&exporter);
}

/// `promtool check metrics` (Debian package `prometheus`): our own names pass its lint; in DCGM
/// mode the only complaints are about dcgm-exporter's names, which are kept as they are on
/// purpose (upper case, `modelName`/`UUID` labels, counters without `_total`).
#[test]
fn promtool_accepts_the_exposition() {
    let check = |body: &str| {
        let (code, text) = promtool_check_metrics(body);
        (code == 0, text)
    };

    let native = start(Fake::Full, "fleet", &["--no-compat.dcgm"]);
    native.metrics();
    next_sample();
    let (ok, text) = check(&native.metrics());
    assert!(ok && text.trim().is_empty(), "{text}");

    let dcgm = start(Fake::Full, "fleet", &[]);
    let (_, text) = check(&dcgm.metrics());
    assert!(
        !text.trim().is_empty(),
        "expected lint notes on the DCGM names"
    );
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        assert!(
            line.starts_with("DCGM_FI_"),
            "unexpected promtool complaint: {line}"
        );
    }
    assert_no_panic(&native);
    assert_no_panic(&dcgm);
}
