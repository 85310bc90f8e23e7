//! Golden end-to-end tests of the sysfs backend: the real binary against fake sysfs trees.

mod support;

use support::{assert_golden, fixtures, value, Exporter};

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
    let exporter = Exporter::start(&sysfs_args("strix-halo", true), &[]);
    let body = exporter.metrics();
    assert_golden("sysfs-strix-halo", &body);
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
    let exporter = Exporter::start(&sysfs_args("dgpu", false), &[]);
    assert_golden("sysfs-dgpu", &exporter.metrics());
}

#[test]
fn runtime_suspended_gpu_is_not_woken() {
    let exporter = Exporter::start(&sysfs_args("suspended", false), &[]);
    let body = exporter.metrics();
    assert_golden("sysfs-suspended", &body);
    // The sensor files hold 99 % busy and 99 °C: they must not have been read.
    assert!(!body.contains("gpu_utilization_ratio{"));
    assert!(!body.contains("gpu_temperature_celsius{"));
}

#[test]
fn nvidia_only_host_reports_no_devices() {
    let exporter = Exporter::start(&sysfs_args("nvidia-only", false), &[]);
    let body = exporter.metrics();
    assert_golden("sysfs-nvidia-only", &body);
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
    let exporter = Exporter::start(&sysfs_args("unreadable", false), &[]);
    let body = exporter.metrics();
    assert_golden("sysfs-unreadable", &body);
    assert_eq!(value(&body, "rocm_up{backend=\"sysfs\"}"), Some(1.0));
}

#[test]
fn landing_page_and_health() {
    let exporter = Exporter::start(&sysfs_args("dgpu", false), &[]);
    assert_eq!(exporter.get("/-/healthy").0, 200);
    let (status, page) = exporter.get("/");
    assert_eq!(status, 200);
    assert!(page.contains("rocm-exporter"));
}
