//! Bad input and faults, end to end: no library, no driver, a GPU lost, a wedged call, a driver
//! reload, processes exiting, and the flags that shape the DCGM names.

mod support;

use common::testing::{assert_no_panic, assert_no_panic_in, value, ExporterProcess};
use std::time::{Duration, Instant};
use support::{fake_library, golden, next_sample, start, start_with_env, Fake, BINARY};

#[test]
fn no_library_serves_nvidia_up_0_and_keeps_retrying() {
    // The common case on an AMD host: no libnvidia-ml at all. The library appears later (a
    // driver installed while the exporter runs) and is picked up without a restart.
    let dir = std::env::temp_dir().join(format!("nvx-nolib-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("libnvidia-ml.so.1");
    let _ = std::fs::remove_file(&path);
    let flag = format!("--nvml.library={}", path.display());
    let scenario = support::scenario("zero_gpus");
    let exporter = ExporterProcess::start(
        BINARY,
        &[&flag],
        &[("FAKE_NVML_SCENARIO", scenario.to_str().unwrap())],
    );
    let text = exporter.metrics();
    assert_eq!(value(&text, "nvidia_up "), Some(0.0));
    let stable = text.replace(&dir.display().to_string(), "<dir>");
    golden("no_library", &stable);
    next_sample();
    assert_eq!(value(&exporter.metrics(), "nvidia_up "), Some(0.0));
    // One clear line in the log, not one per scrape.
    let log = exporter.stderr();
    assert_eq!(log.matches("NVML is not available").count(), 1, "{log}");
    assert!(log.contains("reason=library_not_found"), "{log}");

    std::fs::copy(fake_library(Fake::Full), &path).unwrap();
    next_sample();
    let text = exporter.metrics();
    assert_eq!(value(&text, "nvidia_up "), Some(1.0), "{text}");
    assert!(!text.contains("nvidia_down_reason_info{"));
    std::fs::remove_dir_all(&dir).unwrap();
    assert_no_panic(&exporter);
}

#[test]
fn driver_not_loaded_is_a_reason_not_a_crash() {
    // Without a scenario the fake answers nvmlInit_v2 with NVML_ERROR_DRIVER_NOT_LOADED.
    let flag = format!("--nvml.library={}", fake_library(Fake::Full).display());
    let exporter = ExporterProcess::start(BINARY, &[&flag], &[]);
    let text = exporter.metrics();
    assert_eq!(value(&text, "nvidia_up "), Some(0.0));
    assert!(
        text.contains("nvidia_down_reason_info{reason=\"driver_not_loaded\""),
        "{text}"
    );
    assert!(!text.contains("gpu_up{"));
    assert_no_panic(&exporter);
}

/// Each fault scenario is checked in both naming modes: DCGM names on (the default, golden
/// `<name>`) and off (`<name>_native`).
const MODES: [(&[&str], &str); 2] = [(&[], ""), (&["--no-compat.dcgm"], "_native")];

fn flags<'a>(mode: &[&'a str], more: &[&'a str]) -> Vec<&'a str> {
    mode.iter().chain(more).copied().collect()
}

#[test]
fn a_lost_gpu_goes_down_and_the_others_are_served() {
    for (mode, suffix) in MODES {
        a_lost_gpu(mode, suffix);
    }
}

fn a_lost_gpu(mode: &[&str], suffix: &str) {
    let exporter = start(Fake::Full, "lost", &flags(mode, &["--no-collector.xid"]));
    let first = exporter.metrics();
    assert_eq!(value(&first, "gpu_up{gpu=\"0\""), Some(1.0));
    next_sample();
    let text = exporter.metrics();
    golden(&format!("gpu_lost{suffix}"), &text);
    assert_eq!(value(&text, "nvidia_up "), Some(1.0));
    assert_eq!(value(&text, "gpu_up{gpu=\"0\""), Some(0.0));
    assert_eq!(value(&text, "gpu_up{gpu=\"1\""), Some(1.0));
    assert!(
        text.contains("gpu_info{gpu=\"0\""),
        "a lost GPU keeps its identity"
    );
    assert!(!text.contains("gpu_power_watts{gpu=\"0\""));
    assert!(!text.contains("DCGM_FI_DEV_GPU_TEMP{gpu=\"0\""));
    assert_eq!(
        text.contains("DCGM_FI_DEV_GPU_TEMP{gpu=\"1\""),
        mode.is_empty()
    );
    next_sample();
    exporter.metrics();
    let log = exporter.stderr();
    assert_eq!(log.matches("GPU is not answering").count(), 1, "{log}");
    assert_no_panic(&exporter);
}

#[test]
fn a_wedged_call_is_answered_in_time_with_the_last_sample() {
    for (mode, suffix) in MODES {
        a_wedged_call(mode, suffix);
    }
}

fn a_wedged_call(mode: &[&str], suffix: &str) {
    let exporter = start(Fake::Full, "slow", &flags(mode, &["--nvml.timeout=1s"]));
    let first = exporter.metrics();
    assert_eq!(value(&first, "nvidia_up "), Some(1.0));
    next_sample();

    // The second sample hangs in nvmlDeviceGetPowerUsage for 5 s.
    let started = Instant::now();
    let text = exporter.metrics();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(3), "scrape took {took:?}");
    golden(&format!("slow_call{suffix}"), &text);
    assert_eq!(value(&text, "nvidia_up "), Some(0.0));
    assert!(text.contains("nvidia_down_reason_info{reason=\"timeout\""));
    assert_eq!(
        value(&text, "gpu_power_watts{"),
        Some(200.0),
        "last good value"
    );
    let age = value(&text, "nvidia_exporter_nvml_sample_age_seconds ").unwrap();
    assert!(age >= 0.6, "age {age}");

    // While the call is still stuck no second one is started, the timeout counts once, and
    // the scrape does not wait for a call already past its deadline.
    let started = Instant::now();
    let again = exporter.metrics();
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(700),
        "second stale scrape took {took:?}"
    );
    assert_eq!(
        value(&again, "nvidia_exporter_nvml_timeouts_total "),
        Some(1.0)
    );
    assert_eq!(value(&again, "nvidia_up "), Some(0.0));
    assert_no_panic(&exporter);
}

#[test]
fn a_driver_reload_reinitialises_nvml() {
    for (mode, suffix) in MODES {
        a_driver_reload(mode, suffix);
    }
}

fn a_driver_reload(mode: &[&str], suffix: &str) {
    let exporter = start(Fake::Full, "reload", &flags(mode, &["--no-collector.xid"]));
    let first = exporter.metrics();
    assert_eq!(
        value(&first, "nvidia_exporter_nvml_initializations_total "),
        Some(1.0)
    );
    next_sample();
    let text = exporter.metrics();
    golden(&format!("driver_reload{suffix}"), &text);
    assert_eq!(value(&text, "nvidia_up "), Some(1.0));
    assert_eq!(
        value(&text, "nvidia_exporter_nvml_initializations_total "),
        Some(2.0)
    );
    assert_eq!(
        value(
            &text,
            "nvidia_exporter_nvml_errors_total{function=\"nvmlDeviceGetCount_v2\",error=\"driver_version_mismatch\"}"
        ),
        Some(1.0)
    );
    assert!(exporter.stderr().contains("re-initialising"));
    assert_no_panic(&exporter);
}

/// A field value answers with its own return code inside a successful nvmlDeviceGetFieldValues.
/// One the GPU does not support is counted once and not asked again, like an unsupported
/// function; a GPU without any supported field gets no field-values call after the first; a
/// transient error is counted and the field asked again. The fake logs every call it gets.
#[test]
fn a_field_value_without_support_is_asked_once() {
    let log = std::env::temp_dir().join(format!("nvx-calls-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&log);
    let exporter = start_with_env(
        Fake::Full,
        "nvlink_vgpu",
        &["--no-collector.xid", "--no-collector.processes"],
        &[("FAKE_NVML_CALL_LOG", log.to_str().unwrap())],
    );
    let first = exporter.metrics();
    next_sample();
    exporter.metrics();
    next_sample();
    let text = exporter.metrics();
    // The prefetch takes at most one more sample after the last scrape: let it finish.
    std::thread::sleep(Duration::from_secs(2));
    let calls = std::fs::read_to_string(&log).unwrap();
    let count = |line: &str| calls.lines().filter(|l| *l == line).count();
    let samples = |gpu: u32| count(&format!("nvmlDeviceGetUtilizationRates gpu={gpu}"));
    assert!(samples(1) >= 3, "{calls}");

    // The vGPU guest: no NVLink and no remapped rows, asked once; memory temperature each time.
    assert_eq!(count("nvmlDeviceGetFieldValues(138) gpu=1"), 1, "{calls}");
    assert_eq!(count("nvmlDeviceGetFieldValues(143) gpu=1"), 1, "{calls}");
    assert_eq!(count("nvmlDeviceGetFieldValues(82) gpu=1"), samples(1));
    // The L4 supports none of the fields: no call after the first sample.
    assert_eq!(count("nvmlDeviceGetFieldValues gpu=2"), 1, "{calls}");
    // The GeForce's memory temperature fails with an unknown error: asked again every sample.
    assert_eq!(count("nvmlDeviceGetFieldValues(82) gpu=3"), samples(3));
    // Licensing asked once where NVML says the GPU has none or cannot say, each sample where
    // a license can change (once more when the session starts).
    assert_eq!(count("nvmlDeviceGetGridLicensableFeatures_v4 gpu=0"), 1);
    assert_eq!(count("nvmlDeviceGetGridLicensableFeatures_v4 gpu=3"), 1);
    assert_eq!(
        count("nvmlDeviceGetGridLicensableFeatures_v4 gpu=1"),
        1 + samples(1)
    );

    let errors = |text: &str, function: &str, error: &str| {
        value(
            text,
            &format!(
                "nvidia_exporter_nvml_errors_total{{function=\"{function}\",error=\"{error}\"}}"
            ),
        )
    };
    // Three GPUs lack remapped rows: counted once each, however many samples.
    let remap = "nvmlDeviceGetFieldValues(REMAPPED_UNC)";
    assert_eq!(errors(&first, remap, "not_supported"), Some(3.0));
    assert_eq!(errors(&text, remap, "not_supported"), Some(3.0));
    let nvlink = "nvmlDeviceGetFieldValues(NVLINK_THROUGHPUT_DATA_TX)";
    assert_eq!(errors(&text, nvlink, "not_supported"), Some(3.0));
    let temp = "nvmlDeviceGetFieldValues(MEMORY_TEMP)";
    assert_eq!(errors(&first, temp, "unknown"), Some(1.0));
    assert!(errors(&text, temp, "unknown").unwrap() >= 3.0, "{text}");
    // Failing fields are absent, never 0; the GPU's other fields are still served.
    assert!(!text.contains("DCGM_FI_DEV_MEMORY_TEMP{gpu=\"3\""));
    assert!(!text.contains("DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS{gpu=\"1\""));
    assert_eq!(
        value(&text, "nvidia_pcie_transmit_bytes_total{gpu=\"3\""),
        Some(1000.0)
    );
    assert_eq!(
        value(&text, "DCGM_FI_DEV_MEMORY_TEMP{gpu=\"1\""),
        Some(45.0)
    );
    std::fs::remove_file(&log).unwrap();
    assert_no_panic(&exporter);
}

#[test]
fn processes_are_capped_and_removed_when_they_exit() {
    let native = start(
        Fake::Full,
        "processes",
        &["--processes.top-n=2", "--no-compat.dcgm"],
    );
    golden("processes_top2_native", &native.metrics());
    assert_no_panic(&native);

    let exporter = start(Fake::Full, "processes", &["--processes.top-n=2"]);
    let first = exporter.metrics();
    golden("processes_top2", &first);
    assert_eq!(value(&first, "nvidia_processes{"), Some(5.0));
    let other = "nvidia_process_memory_used_bytes{gpu=\"0\",id=\"0000:01:00.0\",pid=\"other\",name=\"other\",type=\"other\"}";
    assert_eq!(
        value(&first, other),
        Some((4u64 + 2 + 1) as f64 * 1073741824.0)
    );
    next_sample();
    let text = exporter.metrics();
    assert_eq!(value(&text, "nvidia_processes{"), Some(4.0));
    assert_eq!(value(&text, other), Some((4u64 + 2) as f64 * 1073741824.0));

    // Without the cap every process has its own series, and the exited one is gone.
    let uncapped = start(Fake::Full, "processes", &[]);
    let first = uncapped.metrics();
    assert!(first.contains("pid=\"500\",name=\"comfyui\""));
    next_sample();
    let text = uncapped.metrics();
    assert!(text.contains("pid=\"400\""));
    assert!(!text.contains("pid=\"500\""), "exited process still served");
    assert_no_panic(&exporter);
    assert_no_panic(&uncapped);
}

#[test]
fn dcgm_flags() {
    let lower = start(
        Fake::Full,
        "lost",
        &["--compat.dcgm.hostname-label=hostname"],
    );
    let text = lower.metrics();
    assert!(text.contains(",hostname=\"gpu-host-1\","), "{text}");
    assert!(!text.contains("Hostname="));

    let none = start(Fake::Full, "lost", &["--compat.dcgm.hostname-label="]);
    let text = none.metrics();
    assert!(text.contains("DCGM_FI_DEV_GPU_TEMP{"));
    assert!(!text.to_lowercase().contains("hostname="));

    // The last of --no-compat.dcgm / --compat.dcgm wins.
    let on = start(Fake::Full, "lost", &["--no-compat.dcgm", "--compat.dcgm"]);
    assert!(on.metrics().contains("DCGM_FI_DEV_FB_USED{"));
    let off = start(Fake::Full, "lost", &["--compat.dcgm", "--no-compat.dcgm"]);
    assert!(!off.metrics().contains("DCGM_FI_"));

    // The same switch from the environment and from the TOML file.
    let env_off = start_with_env(
        Fake::Full,
        "lost",
        &[],
        &[("NVIDIA_EXPORTER_COMPAT_DCGM", "false")],
    );
    assert!(!env_off.metrics().contains("DCGM_FI_"));
    let file = std::env::temp_dir().join(format!("nvx-dcgm-{}.toml", std::process::id()));
    std::fs::write(&file, "[compat]\ndcgm = false\n").unwrap();
    let file_flag = format!("--config.file={}", file.display());
    let file_off = start(Fake::Full, "lost", &[&file_flag]);
    assert!(!file_off.metrics().contains("DCGM_FI_"));
    std::fs::remove_file(&file).unwrap();
    for exporter in [&lower, &none, &on, &off, &env_off, &file_off] {
        assert_no_panic(exporter);
    }
}

#[test]
fn bad_flag_values_are_refused_at_start() {
    for (flag, key) in [
        ("--nvml.timeout=0s", "--nvml.timeout"),
        ("--nvml.timeout=soon", "--nvml.timeout"),
        ("--processes.top-n=-1", "--processes.top-n"),
        (
            "--compat.dcgm.hostname-label=host name",
            "--compat.dcgm.hostname-label",
        ),
    ] {
        let out = std::process::Command::new(BINARY)
            .arg(flag)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{flag} accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(key), "{flag}: {stderr}");
        assert_no_panic_in(&stderr);
    }
}

#[test]
fn a_hang_before_the_first_sample_is_answered_in_time() {
    let exporter = start(Fake::Full, "slow_init", &["--nvml.timeout=300ms"]);
    let started = Instant::now();
    let text = exporter.metrics();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(value(&text, "nvidia_up "), Some(0.0));
    assert!(
        text.contains("nvidia_down_reason_info{reason=\"timeout\""),
        "{text}"
    );
    assert!(!text.contains("gpu_up{"));
    assert_no_panic(&exporter);
}

#[test]
fn a_library_without_nvml_shutdown_is_refused_without_a_panic() {
    let exporter = start(Fake::NoShutdown, "zero_gpus", &[]);
    let text = exporter.metrics();
    assert_eq!(value(&text, "nvidia_up "), Some(0.0));
    assert!(
        text.contains("nvidia_down_reason_info{reason=\"symbol_not_found\""),
        "{text}"
    );
    next_sample();
    assert_eq!(value(&exporter.metrics(), "nvidia_up "), Some(0.0));
    assert_no_panic(&exporter);
}

#[test]
fn the_next_sample_is_taken_before_the_next_scrape() {
    // A sample takes ~150 ms; scrapes come every 300 ms, as from Prometheus. With
    // min-interval 0 only the prefetch lets a scrape (all its collectors) skip the wait.
    let exporter = start(
        Fake::Full,
        "prefetch",
        &["--nvml.min-interval=0s", "--no-collector.xid"],
    );
    let interval = Duration::from_millis(300);
    let mut next = Instant::now();
    let mut scrape = || {
        next += interval;
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        let started = Instant::now();
        let text = exporter.metrics();
        (started.elapsed(), text)
    };
    let (first, _) = scrape();
    assert!(
        first >= Duration::from_millis(150),
        "first scrape samples on demand"
    );
    for _ in 0..3 {
        scrape();
    }
    // From now on each scrape finds the sample taken for it.
    for _ in 0..4 {
        let (took, text) = scrape();
        assert!(took < Duration::from_millis(100), "scrape took {took:?}");
        let age = value(&text, "nvidia_exporter_nvml_sample_age_seconds ").unwrap();
        assert!(age < 0.3, "sample age {age}");
        assert_eq!(value(&text, "nvidia_up "), Some(1.0));
    }
    let samples = |text: &str| {
        value(
            text,
            "nvidia_exporter_nvml_samples_total{trigger=\"scrape\"}",
        )
        .unwrap()
            + value(
                text,
                "nvidia_exporter_nvml_samples_total{trigger=\"prefetch\"}",
            )
            .unwrap()
    };
    let (_, before) = scrape();
    assert!(
        value(
            &before,
            "nvidia_exporter_nvml_samples_total{trigger=\"prefetch\"}"
        )
        .unwrap()
            >= 4.0,
        "{before}"
    );

    // Nobody scrapes for 2 s (over 6 intervals): at most the one sample prepared for the
    // scrape that did not come, then nothing; the next scrape adds its own.
    std::thread::sleep(Duration::from_secs(2));
    let after = exporter.metrics();
    let taken = samples(&after) - samples(&before);
    assert!(taken <= 2.0, "{taken} samples while nobody scraped");
    assert_no_panic(&exporter);
}

#[test]
fn an_xid_is_counted_on_one_gpu_while_another_is_lost() {
    // GPU 0 is lost at the second sample; GPU 1 reports XID 43 about a second later, while
    // every wait on an event set holding GPU 0 answers GPU_IS_LOST.
    let exporter = start(Fake::Full, "lost_xid", &[]);
    exporter.metrics();
    next_sample();
    let text = exporter.metrics();
    assert_eq!(value(&text, "gpu_up{gpu=\"0\""), Some(0.0));
    assert_eq!(value(&text, "gpu_up{gpu=\"1\""), Some(1.0));
    let counted = |text: &str| {
        text.lines().any(|l| {
            l.starts_with("nvidia_xid_errors_total{gpu=\"1\",")
                && l.contains("xid=\"43\"")
                && l.ends_with(" 1")
        })
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut text = exporter.metrics();
    while !counted(&text) && Instant::now() < deadline {
        next_sample();
        text = exporter.metrics();
    }
    assert!(counted(&text), "{text}");
    assert!(
        text.contains("DCGM_FI_DEV_XID_ERRORS{gpu=\"1\"") && text.contains("err_code=\"43\""),
        "{text}"
    );
    assert!(exporter.stderr().contains("watching the others"));
    assert_no_panic(&exporter);
}

#[test]
fn a_gpu_lost_while_its_processes_are_read_serves_no_values() {
    let exporter = start(Fake::Full, "lost_in_processes", &[]);
    let text = exporter.metrics();
    assert_eq!(value(&text, "gpu_up{gpu=\"0\""), Some(0.0), "{text}");
    assert!(
        text.contains("gpu_info{gpu=\"0\""),
        "a lost GPU keeps its identity"
    );
    for family in [
        "gpu_utilization_ratio{",
        "gpu_power_watts{",
        "nvidia_processes{",
        "nvidia_process_memory_used_bytes{",
        "DCGM_FI_DEV_GPU_TEMP{",
    ] {
        assert!(
            !text.contains(family),
            "{family} served for a lost GPU:\n{text}"
        );
    }
    assert_no_panic(&exporter);
}

#[test]
fn a_gpu_lost_in_one_field_value_serves_no_values() {
    let exporter = start(Fake::Full, "lost_in_fields", &["--no-collector.xid"]);
    let text = exporter.metrics();
    assert_eq!(value(&text, "gpu_up{gpu=\"0\""), Some(0.0), "{text}");
    assert_eq!(value(&text, "gpu_up{gpu=\"1\""), Some(1.0), "{text}");
    // Values read before the field said GPU_IS_LOST are not served beside gpu_up 0.
    assert!(!text.contains("gpu_power_watts{gpu=\"0\""), "{text}");
    assert!(
        !text.contains("DCGM_FI_DEV_MEMORY_TEMP{gpu=\"0\""),
        "{text}"
    );
    assert_eq!(
        value(&text, "DCGM_FI_DEV_MEMORY_TEMP{gpu=\"1\""),
        Some(58.0)
    );
    assert_eq!(
        value(
            &text,
            "nvidia_exporter_nvml_errors_total{function=\"nvmlDeviceGetFieldValues(REMAPPED_UNC)\",error=\"gpu_is_lost\"}"
        ),
        Some(1.0)
    );
    assert_no_panic(&exporter);
}
