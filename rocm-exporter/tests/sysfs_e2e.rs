//! Golden end-to-end tests of the sysfs backend: the real binary against fake sysfs trees.

mod support;

use common::testing::{copy_tree, promtool_check_metrics, value, Scratch};
use support::{fixtures, golden, start};

fn sysfs_args(tree: &str, processes: bool) -> Vec<String> {
    let mut args = vec![
        "--backend=sysfs".to_string(),
        format!(
            "--path.sysfs={}",
            fixtures().join("sysfs").join(tree).display()
        ),
        format!("--path.procfs={}", fixtures().join("proc").display()),
    ];
    if !processes {
        args.push("--no-collector.processes".into());
    }
    args
}

#[test]
fn strix_halo_apu_with_processes_and_an_nvidia_card_ignored() {
    let exporter = start(&sysfs_args("strix-halo", true), &[]);
    let body = exporter.metrics();
    golden("sysfs-strix-halo", &body);
    // The APU rule: carve-out plus GTT, never the 90 %-full carve-out alone.
    let total = value(&body, "gpu_memory_total_bytes{").unwrap();
    let used = value(&body, "gpu_memory_used_bytes{").unwrap();
    assert_eq!(total, 536870912.0 + 103079215104.0);
    assert!(used / total < 0.7);
    assert!(
        !body.contains("0000:01:00.0\""),
        "the NVIDIA card leaked in"
    );
}

#[test]
fn discrete_gpu_with_every_sensor() {
    let exporter = start(&sysfs_args("dgpu", false), &[]);
    golden("sysfs-dgpu", &exporter.metrics());
}

#[test]
fn runtime_suspended_gpu_is_not_woken() {
    let exporter = start(&sysfs_args("suspended", false), &[]);
    let body = exporter.metrics();
    golden("sysfs-suspended", &body);
    // The sensor files hold 99 % busy and 99 °C: they must not have been read.
    assert!(!body.contains("gpu_utilization_ratio{"));
    assert!(!body.contains("gpu_temperature_celsius{"));
}

#[test]
fn nvidia_only_host_reports_no_devices() {
    let exporter = start(&sysfs_args("nvidia-only", false), &[]);
    let body = exporter.metrics();
    golden("sysfs-nvidia-only", &body);
    assert_eq!(
        value(&body, "rocm_up{backend=\"sysfs\",reason=\"no_devices\"}"),
        Some(0.0)
    );
    assert!(exporter
        .wait_for_log(&["level=warn", "reason=no_devices"])
        .is_some());
}

#[test]
fn unreadable_files_cost_only_their_values() {
    let exporter = start(&sysfs_args("unreadable", false), &[]);
    let body = exporter.metrics();
    golden("sysfs-unreadable", &body);
    assert_eq!(value(&body, "rocm_up{backend=\"sysfs\"}"), Some(1.0));
}

#[test]
fn landing_page_and_health() {
    let exporter = start(&sysfs_args("dgpu", false), &[]);
    assert_eq!(exporter.get("/-/healthy").status, 200);
    let page = exporter.get("/");
    assert_eq!(page.status, 200);
    assert!(page.text().contains("rocm-exporter"));
}

/// A sysfs read that blocks (a wedged SMU) must not hang the scrape: the last good sample is
/// served with its age, no second read is started, and the values come back once it unblocks.
#[test]
fn blocked_sysfs_read_serves_the_last_good_sample() {
    let scratch = Scratch::new("blocked-sysfs");
    let tree = scratch.path("sys");
    copy_tree(&fixtures().join("sysfs/dgpu"), &tree);
    // A FIFO stands in for the sensor: the exporter keeps the file open, so its first read gets
    // the value written here and the next one blocks until another value comes, as a read
    // from a wedged GPU does. Opened for reading and writing, it waits for no other end.
    let busy = tree.join("class/drm/card0/device/gpu_busy_percent");
    std::fs::remove_file(&busy).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(&busy)
        .status()
        .unwrap();
    assert!(made.success());
    let mut writer = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&busy)
        .unwrap();
    std::io::Write::write_all(&mut writer, b"37\n").unwrap();

    let exporter = start(
        &[
            "--backend=sysfs".to_string(),
            format!("--path.sysfs={}", tree.display()),
            "--sysfs.timeout=300ms".to_string(),
            "--no-collector.processes".to_string(),
        ],
        &[],
    );
    let good = exporter.metrics();
    assert_eq!(value(&good, "rocm_up{backend=\"sysfs\"}"), Some(1.0));
    assert_eq!(value(&good, "gpu_utilization_ratio{"), Some(0.37), "{good}");

    let started = std::time::Instant::now();
    let stale = exporter.metrics();
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
    assert_eq!(
        value(&stale, "rocm_up{backend=\"sysfs\",reason=\"timeout\"}"),
        Some(0.0),
        "{stale}"
    );
    assert_eq!(
        value(
            &stale,
            "gpu_utilization_ratio{gpu=\"0\",id=\"0000:03:00.0\"}"
        ),
        Some(0.37)
    );
    assert_eq!(
        value(&stale, "gpu_up{gpu=\"0\",id=\"0000:03:00.0\"}"),
        Some(0.0)
    );
    assert!(value(&stale, "rocm_exporter_backend_sample_age_seconds").unwrap() >= 0.3);
    let again = exporter.metrics();
    assert_eq!(
        value(&again, "rocm_up{backend=\"sysfs\",reason=\"busy\"}"),
        Some(0.0),
        "{again}"
    );

    // The read completes (a value arrives); with the writer gone, the reads after it find the
    // file empty and skip that one value instead of blocking.
    std::io::Write::write_all(&mut writer, b"55\n").unwrap();
    drop(writer);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let fresh = loop {
        let body = exporter.metrics();
        if value(&body, "rocm_up{backend=\"sysfs\"}") == Some(1.0)
            || std::time::Instant::now() > deadline
        {
            break body;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(
        value(&fresh, "rocm_up{backend=\"sysfs\"}"),
        Some(1.0),
        "{fresh}"
    );
    assert_eq!(
        value(&fresh, "gpu_up{gpu=\"0\",id=\"0000:03:00.0\"}"),
        Some(1.0)
    );
}

#[test]
fn bad_flags_stop_the_start_with_a_clear_error() {
    for (flag, named) in [
        ("--backend=nvml", "--backend"),
        ("--rocm-smi.timeout=0s", "--rocm-smi.timeout"),
        ("--sysfs.timeout=soon", "--sysfs.timeout"),
        (
            "--collector.processes.max-series=-1",
            "--collector.processes.max-series",
        ),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_rocm-exporter"))
            .args(["--web.listen-address=127.0.0.1:0", flag])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{flag}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(named), "{flag}: {stderr}");
    }
}

#[test]
fn exposition_passes_promtool() {
    let exporter = start(&sysfs_args("strix-halo", true), &[]);
    let body = exporter.metrics();
    let (code, output) = promtool_check_metrics(&body);
    assert_eq!(code, 0, "{output}");
    assert!(output.trim().is_empty(), "promtool lint: {output}");
    // And it does fail on a broken one, so the check means something.
    assert_ne!(promtool_check_metrics("amdgpu_x{a=\"b} 1\n").0, 0);
}

/// A GPU that goes to sleep keeps its last values, marked suspended and aged, and its sensors
/// are not read while it sleeps.
#[test]
fn gpu_going_to_sleep_keeps_its_last_values() {
    let scratch = Scratch::new("sleep");
    let tree = scratch.path("sys");
    copy_tree(&fixtures().join("sysfs/dgpu"), &tree);
    let exporter = start(
        &[
            "--backend=sysfs".to_string(),
            format!("--path.sysfs={}", tree.display()),
            "--no-collector.processes".to_string(),
        ],
        &[],
    );
    let awake = exporter.metrics();
    assert_eq!(value(&awake, "amdgpu_runtime_suspended{"), Some(0.0));

    let device = tree.join("class/drm/card0/device");
    std::fs::write(device.join("power/runtime_status"), "suspended\n").unwrap();
    std::fs::write(device.join("gpu_busy_percent"), "99\n").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(100));
    let asleep = exporter.metrics();
    assert_eq!(value(&asleep, "amdgpu_runtime_suspended{"), Some(1.0));
    assert_eq!(value(&asleep, "gpu_utilization_ratio{"), Some(0.37));
    assert_eq!(value(&asleep, "gpu_up{"), Some(1.0));
    assert_eq!(value(&asleep, "rocm_up{backend=\"sysfs\"}"), Some(1.0));
    assert!(value(&asleep, "amdgpu_sample_age_seconds{").unwrap() >= 0.1);
}

/// The exporter's own flags also come from the environment and the TOML file, as the shared ones do.
#[test]
fn own_settings_from_environment_and_config_file() {
    let scratch = Scratch::new("settings");
    let config = scratch.path("rocm-exporter.toml");
    std::fs::write(
        &config,
        format!(
            "backend = \"sysfs\"\n[path]\nsysfs = \"{}\"\n[collector]\nprocesses = false\n",
            fixtures().join("sysfs/dgpu").display()
        ),
    )
    .unwrap();
    let from_file = start(&[format!("--config.file={}", config.display())], &[]);
    let body = from_file.metrics();
    assert_eq!(
        value(&body, "rocm_backend_info{backend=\"sysfs\"}"),
        Some(1.0)
    );
    assert_eq!(
        value(&body, "gpu_up{gpu=\"0\",id=\"0000:03:00.0\"}"),
        Some(1.0)
    );

    let from_env = start(
        &["--no-collector.processes".to_string()],
        &[
            ("ROCM_EXPORTER_BACKEND", "sysfs".to_string()),
            (
                "ROCM_EXPORTER_PATH_SYSFS",
                fixtures().join("sysfs/strix-halo").display().to_string(),
            ),
        ],
    );
    let body = from_env.metrics();
    assert_eq!(
        value(&body, "amdgpu_apu{gpu=\"0\",id=\"0000:c3:00.0\"}"),
        Some(1.0)
    );
}
