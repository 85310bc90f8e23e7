//! End-to-end tests of the rocm-smi backend: the real binary runs a fake `rocm-smi` that replays
//! recorded outputs of every version and plays the failure modes (hang, garbage, truncated JSON,
//! driver missing, exit codes).

mod support;

use common::testing::{http_get, promtool_check_metrics, value, ExporterProcess, Scratch};
use std::time::{Duration, Instant};
use support::{fixtures, golden, start};

fn fake() -> String {
    fixtures().join("fake-rocm-smi").display().to_string()
}

fn recorded(name: &str) -> String {
    fixtures().join("rocm-smi").join(name).display().to_string()
}

fn args(extra: &[&str]) -> Vec<String> {
    let mut args = vec![
        "--backend=rocm-smi".to_string(),
        format!("--rocm-smi.path={}", fake()),
        "--no-collector.processes".to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

fn replay(fixture: &str, mode: &str) -> ExporterProcess {
    start(
        &args(&[]),
        &[
            ("FAKE_ROCM_SMI_FIXTURE", recorded(fixture)),
            ("FAKE_ROCM_SMI_MODE", mode.to_string()),
        ],
    )
}

#[test]
fn every_recorded_version_matches_its_golden_file() {
    for (fixture, golden_name) in [
        ("rx6700xt-rocm-4.3.0.json", "rocm-smi-4.3.0-rx6700xt"),
        ("vega10xt-rocm-5.x.json", "rocm-smi-5.x-vega10xt"),
        ("mi100-rocm-5.7.1.json", "rocm-smi-5.7.1-mi100"),
        ("mi100-rocm-6.0.2.json", "rocm-smi-6.0.2-mi100"),
        ("rx6700xt-rocm-6.1.2.json", "rocm-smi-6.1.2-rx6700xt"),
        ("radeon-780m-rocm-6.2.4.json", "rocm-smi-6.2.4-radeon-780m"),
        ("rx7900xt-rocm-6.x.json", "rocm-smi-6.x-rx7900xt"),
        (
            "strix-halo-and-rx7900xtx-rocm-7.0.json",
            "rocm-smi-7.0-strix-halo-and-rx7900xtx",
        ),
    ] {
        let exporter = replay(fixture, "normal");
        let body = exporter.metrics();
        assert_eq!(
            value(&body, "rocm_up{backend=\"rocm-smi\"}"),
            Some(1.0),
            "{fixture}"
        );
        golden(golden_name, &body);
        let (code, lint) = promtool_check_metrics(&body);
        assert!(code == 0 && lint.trim().is_empty(), "{fixture}: {lint}");
    }
}

#[test]
fn stray_lines_around_the_json_change_nothing() {
    let exporter = replay("mi100-rocm-6.0.2.json", "stray");
    golden("rocm-smi-6.0.2-mi100", &exporter.metrics());
}

#[test]
fn both_backends_name_the_same_gpu_the_same_way() {
    let smi = replay("strix-halo-and-rx7900xtx-rocm-7.0.json", "normal").metrics();
    let sysfs = start(
        &[
            "--backend=sysfs".to_string(),
            format!(
                "--path.sysfs={}",
                fixtures().join("sysfs/strix-halo").display()
            ),
            "--no-collector.processes".to_string(),
        ],
        &[],
    )
    .metrics();
    // rocm-smi calls the APU card0 and the dGPU card1; sysfs has the APU on card1. Both sort by
    // PCI address, so the APU is gpu 1 (0000:c3) after the dGPU (0000:03) in rocm-smi's view...
    let apu = "gpu_memory_total_bytes{gpu=\"1\",id=\"0000:c3:00.0\"}";
    assert_eq!(value(&smi, apu), Some(536870912.0 + 103079215104.0));
    // ...and the APU's id and memory rule are the same in the sysfs view.
    assert_eq!(
        value(
            &sysfs,
            "gpu_memory_total_bytes{gpu=\"0\",id=\"0000:c3:00.0\"}"
        ),
        value(&smi, apu)
    );
    // So are the identity labels: the APU from the Strix Halo tree, the RX 7900 XTX
    // (0000:03:00.0, unique id 0x3a1b2c3d4e5f6071 in rocm-smi) from the dGPU tree.
    let dgpu = start(
        &[
            "--backend=sysfs".to_string(),
            format!("--path.sysfs={}", fixtures().join("sysfs/dgpu").display()),
            "--no-collector.processes".to_string(),
        ],
        &[],
    )
    .metrics();
    for (from_sysfs, id) in [(&sysfs, "0000:c3:00.0"), (&dgpu, "0000:03:00.0")] {
        for (family, keys) in [
            ("gpu_info", &["vendor", "model"][..]),
            ("amdgpu_info", &["device_id", "revision", "unique_id"][..]),
        ] {
            let smi_labels = info_labels(&smi, family, id, keys);
            assert_eq!(info_labels(from_sysfs, family, id, keys), smi_labels);
            assert!(smi_labels
                .iter()
                .any(|(k, _)| k == "device_id" || k == "model"));
        }
    }
}

/// The given labels of the `family` sample for PCI address `id`, in the order given; absent
/// labels are left out.
fn info_labels(body: &str, family: &str, id: &str, keys: &[&str]) -> Vec<(String, String)> {
    let prefix = format!("{family}{{");
    let id_label = format!("id=\"{id}\"");
    let line = body
        .lines()
        .find(|l| l.starts_with(&prefix) && l.contains(&id_label))
        .unwrap_or_else(|| panic!("no {family} for {id} in:\n{body}"));
    let labels = &line[prefix.len()..line.rfind('}').unwrap()];
    keys.iter()
        .filter_map(|key| {
            let start = labels.find(&format!("{key}=\""))? + key.len() + 2;
            let end = start + labels[start..].find('"')?;
            Some((key.to_string(), labels[start..end].to_string()))
        })
        .collect()
}

/// Each failure: rocm_up 0 with its reason, one log line saying why, the scrape still served.
#[test]
fn failures_are_reported_with_a_reason_and_one_log_line() {
    for (mode, reason, log) in [
        ("garbage", "bad_output", "printed no JSON"),
        ("partial", "bad_output", "invalid or truncated JSON"),
        (
            "driver-missing",
            "driver_not_loaded",
            "Driver not initialized",
        ),
        ("no-devices", "no_devices", "No JSON data to report"),
        ("library-missing", "library_missing", "librocm_smi64"),
        ("not-found", "not_found", "exit 127"),
        ("exit:8", "exit_status", "exited with 8"),
    ] {
        let exporter = replay("mi100-rocm-6.0.2.json", mode);
        let body = exporter.metrics();
        let up = format!("rocm_up{{backend=\"rocm-smi\",reason=\"{reason}\"}}");
        assert_eq!(value(&body, &up), Some(0.0), "{mode}: {body}");
        assert_eq!(
            value(&body, "rocm_exporter_collector_success{collector=\"gpu\"}"),
            Some(1.0)
        );
        assert!(
            !body.contains("gpu_up{"),
            "{mode}: no sample, no GPU series"
        );
        let line = exporter.wait_for_log(&["level=warn", &format!("reason={reason}"), log]);
        assert!(line.is_some(), "{mode}: {:?}", exporter.log_lines());
        // A second scrape with the same failure does not log again.
        exporter.metrics();
        let count = exporter
            .log_lines()
            .iter()
            .filter(|l| l.contains("collection failed"))
            .count();
        assert_eq!(count, 1, "{mode}: {:?}", exporter.log_lines());
    }
}

#[test]
fn driver_missing_golden() {
    let exporter = replay("mi100-rocm-6.0.2.json", "driver-missing");
    golden("rocm-smi-driver-missing", &exporter.metrics());
}

#[test]
fn missing_binary() {
    let exporter = start(
        &[
            "--backend=rocm-smi".to_string(),
            "--rocm-smi.path=/nonexistent/rocm-smi".to_string(),
            "--no-collector.processes".to_string(),
        ],
        &[],
    );
    let body = exporter.metrics();
    assert_eq!(
        value(&body, "rocm_up{backend=\"rocm-smi\",reason=\"not_found\"}"),
        Some(0.0)
    );
    assert!(exporter
        .wait_for_log(&["reason=not_found", "/nonexistent/rocm-smi"])
        .is_some());
}

#[test]
fn auto_falls_back_to_rocm_smi_without_amdgpu_in_sysfs() {
    let exporter = start(
        &[
            "--backend=auto".to_string(),
            format!(
                "--path.sysfs={}",
                fixtures().join("sysfs/nvidia-only").display()
            ),
            format!("--rocm-smi.path={}", fake()),
            "--no-collector.processes".to_string(),
        ],
        &[
            (
                "FAKE_ROCM_SMI_FIXTURE",
                recorded("rx6700xt-rocm-6.1.2.json"),
            ),
            ("FAKE_ROCM_SMI_MODE", "normal".into()),
        ],
    );
    let body = exporter.metrics();
    assert_eq!(
        value(&body, "rocm_backend_info{backend=\"rocm-smi\"}"),
        Some(1.0)
    );
    assert_eq!(value(&body, "rocm_up{backend=\"rocm-smi\"}"), Some(1.0));
}

fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

fn wait_gone(pid: u32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    !alive(pid)
}

/// Scrapes until `done` holds for the exposition (at most `within`); returns the last one.
fn scrape_until(
    exporter: &ExporterProcess,
    within: Duration,
    done: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + within;
    loop {
        let body = exporter.metrics();
        if done(&body) || Instant::now() > deadline {
            return body;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn hang_is_killed_and_the_last_good_sample_is_served_with_its_age() {
    let scratch = Scratch::new("hang");
    let mode = scratch.path("mode");
    let log = scratch.path("log");
    std::fs::write(&mode, "normal").unwrap();
    let exporter = start(
        &args(&["--rocm-smi.timeout=500ms"]),
        &[
            ("FAKE_ROCM_SMI_FIXTURE", recorded("mi100-rocm-6.0.2.json")),
            ("FAKE_ROCM_SMI_MODE_FILE", mode.display().to_string()),
            ("FAKE_ROCM_SMI_LOG", log.display().to_string()),
        ],
    );
    let good = exporter.metrics();
    assert_eq!(value(&good, "rocm_up{backend=\"rocm-smi\"}"), Some(1.0));
    assert_eq!(
        value(&good, "rocm_exporter_backend_sample_age_seconds"),
        Some(0.0)
    );

    // The next scrape starts the hanging run in the background and answers at once from the
    // good sample; once the run is killed at its timeout, scrapes report it.
    std::fs::write(&mode, "hang").unwrap();
    let started = Instant::now();
    let first = exporter.metrics();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "the scrape waited for rocm-smi"
    );
    assert_eq!(value(&first, "rocm_up{backend=\"rocm-smi\"}"), Some(1.0));
    let timeout = "rocm_up{backend=\"rocm-smi\",reason=\"timeout\"}";
    let stale = scrape_until(&exporter, Duration::from_secs(10), |b| {
        value(b, timeout).is_some()
    });
    assert_eq!(value(&stale, timeout), Some(0.0), "{stale}");
    // The last good sample, marked stale.
    assert!(value(&stale, "rocm_exporter_backend_sample_age_seconds").unwrap() >= 0.5);
    assert_eq!(
        value(&stale, "gpu_up{gpu=\"0\",id=\"0000:83:00.0\"}"),
        Some(0.0)
    );
    assert_eq!(
        value(&stale, "gpu_power_watts{gpu=\"0\",id=\"0000:83:00.0\"}"),
        Some(36.0)
    );
    // One clear log line for the timeout, however many scrapes see it.
    assert!(exporter
        .wait_for_log(&[
            "level=warn",
            "reason=timeout",
            "did not finish within 500ms"
        ])
        .is_some());
    exporter.metrics();
    let timeouts_logged = exporter
        .log_lines()
        .iter()
        .filter(|l| l.contains("collection failed") && l.contains("reason=timeout"))
        .count();
    assert_eq!(timeouts_logged, 1, "{:?}", exporter.log_lines());

    // The whole process group was killed: rocm-smi and what it started.
    let child: u32 = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(wait_gone(child), "rocm-smi survived its timeout");
    std::fs::write(&mode, "normal").unwrap();
    let grandchild: u32 = std::fs::read_to_string(scratch.path("log.grandchild"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        wait_gone(grandchild),
        "rocm-smi's child survived the timeout"
    );

    // A run started after the switch back succeeds; a hanging one started before it is killed
    // first (never two at once), so this takes at most about one timeout.
    let up = "rocm_up{backend=\"rocm-smi\"}";
    let recovered = scrape_until(&exporter, Duration::from_secs(10), |b| {
        value(b, up) == Some(1.0)
    });
    assert_eq!(value(&recovered, up), Some(1.0), "{recovered}");
    // Each hanging run was counted as a timeout before the next one could start.
    let hanging_runs = std::fs::read_to_string(&log).unwrap().lines().count() as f64 - 2.0;
    let timeouts = value(
        &recovered,
        "rocm_exporter_backend_timeouts_total{backend=\"rocm-smi\"}",
    )
    .unwrap();
    assert!(timeouts >= 1.0 && timeouts <= hanging_runs, "{recovered}");
    assert_eq!(
        value(
            &recovered,
            "rocm_exporter_backend_errors_total{backend=\"rocm-smi\",reason=\"timeout\"}"
        ),
        Some(timeouts)
    );
    assert!(exporter.wait_for_log(&["collection recovered"]).is_some());
}

/// The target: a scrape never waits for a slow rocm-smi once there is a sample.
#[test]
fn a_slow_rocm_smi_is_refreshed_in_the_background() {
    let scratch = Scratch::new("slow");
    let log = scratch.path("log");
    let exporter = start(
        &args(&[]),
        &[
            ("FAKE_ROCM_SMI_FIXTURE", recorded("mi100-rocm-6.0.2.json")),
            ("FAKE_ROCM_SMI_MODE", "slow:2".to_string()),
            ("FAKE_ROCM_SMI_LOG", log.display().to_string()),
        ],
    );
    // The very first scrape has nothing to serve and waits for the first run.
    let first = exporter.metrics();
    assert_eq!(value(&first, "rocm_up{backend=\"rocm-smi\"}"), Some(1.0));
    assert_eq!(
        value(&first, "rocm_exporter_backend_sample_age_seconds"),
        Some(0.0)
    );

    // Then every scrape answers at once, up 1, with the real age, from two scrapers at once.
    let window = Instant::now();
    // Both start together: async collections of overlapping scrapes both run.
    let scrapers: Vec<_> = (0..2)
        .map(|_| {
            let address = exporter.addr;
            std::thread::spawn(move || {
                (0..5)
                    .map(|_| {
                        let started = Instant::now();
                        let response = http_get(address, "/metrics", &[]).unwrap();
                        assert_eq!(response.status, 200);
                        let body = response.text();
                        std::thread::sleep(Duration::from_millis(100));
                        (started.elapsed() - Duration::from_millis(100), body)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for scraper in scrapers {
        for (took, body) in scraper.join().unwrap() {
            assert!(took < Duration::from_secs(1), "a scrape took {took:?}");
            assert_eq!(
                value(&body, "rocm_up{backend=\"rocm-smi\"}"),
                Some(1.0),
                "{body}"
            );
            assert!(!body.contains("reason=\"busy\""), "{body}");
            assert_eq!(
                value(&body, "gpu_up{gpu=\"0\",id=\"0000:83:00.0\"}"),
                Some(1.0)
            );
            assert!(value(&body, "rocm_exporter_backend_sample_age_seconds").unwrap() > 0.0);
        }
    }
    // One run at a time, each taking 2 s: the first one plus one background refresh per 2 s
    // of scraping (one in about half a second of scrapes, unless the machine is very loaded).
    let window = window.elapsed().as_secs_f64();
    let runs = std::fs::read_to_string(&log).unwrap().lines().count();
    assert!(
        runs >= 2 && runs <= 2 + (window / 2.0) as usize,
        "{runs} rocm-smi runs in {window:.1}s"
    );
}

#[test]
fn never_more_than_one_rocm_smi_in_flight() {
    let scratch = Scratch::new("one-child");
    let log = scratch.path("log");
    // rocm-smi's own timeout is far away; each scrape waits at most 0.8 s of its 1 s deadline.
    let exporter = start(
        &args(&["--rocm-smi.timeout=60s", "--scrape.timeout=1s"]),
        &[
            ("FAKE_ROCM_SMI_MODE", "hang".to_string()),
            ("FAKE_ROCM_SMI_LOG", log.display().to_string()),
        ],
    );
    let first = exporter.metrics();
    assert_eq!(
        value(&first, "rocm_up{backend=\"rocm-smi\",reason=\"timeout\"}"),
        Some(0.0),
        "{first}"
    );
    for _ in 0..3 {
        let next = exporter.metrics();
        assert_eq!(
            value(&next, "rocm_up{backend=\"rocm-smi\",reason=\"busy\"}"),
            Some(0.0),
            "{next}"
        );
    }
    let runs = std::fs::read_to_string(&log).unwrap();
    assert_eq!(runs.lines().count(), 1, "rocm-smi started again: {runs}");
    // Clean up the hanging fake (the exporter would kill it only after 60 s).
    let pid: u32 = runs.split_whitespace().next().unwrap().parse().unwrap();
    rocm_exporter::child::kill_process_group(pid);
    assert!(wait_gone(pid));
}

#[test]
fn a_hanging_rocm_smi_dies_with_the_exporter() {
    let scratch = Scratch::new("dies-with");
    let log = scratch.path("log");
    let exporter = start(
        &args(&["--rocm-smi.timeout=60s", "--scrape.timeout=1s"]),
        &[
            ("FAKE_ROCM_SMI_MODE", "hang".to_string()),
            ("FAKE_ROCM_SMI_LOG", log.display().to_string()),
        ],
    );
    exporter.metrics();
    let runs = std::fs::read_to_string(&log).unwrap();
    let pid: u32 = runs.split_whitespace().next().unwrap().parse().unwrap();
    assert!(alive(pid));
    drop(exporter); // SIGKILL to the exporter
    assert!(wait_gone(pid), "rocm-smi outlived the exporter");
    // What the fake started in the background is not our child; clean it up.
    if let Ok(grandchild) = std::fs::read_to_string(scratch.path("log.grandchild")) {
        if let Ok(pid) = grandchild.trim().parse::<i32>() {
            // SAFETY: kill(2) on a process this test started; no memory involved.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
}
