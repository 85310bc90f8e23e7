//! Golden end-to-end tests in node_exporter's style: the real binary on a checked-in /proc and
//! /sys tree, scraped over HTTP, compared with a checked-in exposition.

use common::testing::{
    assert_golden, check_exposition, promtool_check_metrics, stable_exposition, ExporterProcess,
};
use std::path::{Path, PathBuf};

const BINARY: &str = env!("CARGO_BIN_EXE_host-exporter");

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The expected exposition of a fixture tree.
fn golden(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

/// Directories of the broken tree that must exist and be empty (edge cases: a device without
/// its files). Git keeps no empty directory, so they are made here.
const EMPTY_DIRS: [&str; 4] = [
    "broken/proc/net/stat",
    "broken/sys/class/infiniband/mlx4_0/ports/1/counters",
    "broken/sys/class/infiniband/nofw0",
    "broken/sys/class/scsi_tape/st1",
];

fn start_on(name: &str, extra: &[&str]) -> ExporterProcess {
    for dir in EMPTY_DIRS {
        std::fs::create_dir_all(fixture(dir)).unwrap();
    }
    let root = fixture(name);
    let mut args = vec![
        format!("--path.procfs={}", root.join("proc").display()),
        format!("--path.sysfs={}", root.join("sys").display()),
        format!("--path.rootfs={}", root.join("rootfs").display()),
        format!("--path.udev.data={}", root.join("udev").display()),
        format!(
            "--collector.textfile.directory={}",
            root.join("textfile").display()
        ),
    ];
    pin_textfile_mtimes(&root.join("textfile"));
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ExporterProcess::start(BINARY, &args, &[])
}

/// The textfile fixture's files get a fixed mtime, so `node_textfile_mtime_seconds` is stable.
fn pin_textfile_mtimes(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_733_540_000);
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_file()) {
            let file = std::fs::File::options().write(true).open(entry.path());
            file.and_then(|f| f.set_modified(at)).unwrap();
        }
    }
}

/// The exposition with the host-dependent families and the fixture's absolute path removed.
fn stable(text: &str, name: &str) -> String {
    let root = fixture(name);
    stable_exposition(
        text,
        &[
            "node_time_seconds",
            "node_time_zone_offset_seconds",
            "node_uname_info",
        ],
    )
    .replace(&root.display().to_string(), "FIXTURE")
    .lines()
    // timex reads the live kernel clock (one adjtimex call), which no fixture can stand for:
    // its families are checked for shape in `timex_reports_the_live_clock` and for values
    // against node_exporter in node_exporter_compat.rs.
    .filter(|line| !line.contains("node_timex_"))
    .map(|line| [line, "\n"].concat())
    .collect()
}

fn success(text: &str, collector: &str) -> Option<f64> {
    let prefix = format!("node_scrape_collector_success{{collector=\"{collector}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.parse().ok())
}

#[test]
fn full_fixture_matches_golden_output() {
    let exporter = start_on("full", &[]);
    let response = exporter.get("/metrics");
    assert_eq!(response.status, 200);
    let text = response.text();
    assert_golden(&golden("full.prom"), &stable(&text, "full"));
    // Every collector on by default succeeds on the full tree.
    for collector in host_exporter::default_collectors() {
        assert_eq!(
            success(&text, collector),
            Some(1.0),
            "{collector}: {}",
            exporter.stderr()
        );
    }
}

#[test]
fn broken_files_fail_only_their_collector_and_are_logged() {
    let exporter = start_on("broken", &[]);
    let response = exporter.get("/metrics");
    assert_eq!(response.status, 200);
    let text = response.text();
    assert_golden(&golden("broken.prom"), &stable(&text, "broken"));
    let expectations = [
        ("cpu", 0.0),
        ("stat", 0.0),
        ("loadavg", 0.0),
        ("netdev", 0.0),
        ("diskstats", 0.0),
        ("meminfo", 1.0),
        ("pressure", 1.0),
        ("filesystem", 1.0),
        ("hwmon", 1.0),
        ("thermal_zone", 1.0),
        ("rapl", 1.0),
        ("uname", 1.0),
        ("time", 1.0),
        ("conntrack", 0.0),
        ("arp", 1.0),
        ("netstat", 1.0),
        ("sockstat", 1.0),
        ("softnet", 1.0),
        ("udp_queues", 1.0),
        ("ipvs", 0.0),
        ("netclass", 1.0),
        ("bonding", 1.0),
        ("infiniband", 1.0),
        ("fibrechannel", 1.0),
        ("cpufreq", 1.0),
        ("dmi", 1.0),
        ("edac", 0.0),
        ("entropy", 0.0),
        ("filefd", 0.0),
        ("os", 0.0),
        ("powersupplyclass", 1.0),
        ("schedstat", 1.0),
        ("selinux", 0.0),
        ("timex", 1.0),
        ("vmstat", 1.0),
        ("watchdog", 1.0),
        ("textfile", 1.0),
        // Storage: garbage mdstat and nfs files fail their collector; a truncated xfs stats
        // file and an nvme controller missing attributes are skipped, the rest reported.
        ("mdadm", 0.0),
        ("nfs", 0.0),
        ("xfs", 1.0),
        ("nvme", 1.0),
        // Bad kstat files are skipped one by one, the pool's state still reported.
        ("zfs", 1.0),
        // A filesystem with garbage commit_stats is skipped; an unparsable number counts 0.
        ("btrfs", 1.0),
        ("nfsd", 0.0),
        ("tapestats", 1.0),
        ("bcache", 1.0),
    ];
    // Each collector on by default has its expectation here, and only those.
    let mut expected_for: Vec<&str> = expectations.iter().map(|(c, _)| *c).collect();
    let mut defaults: Vec<&str> = host_exporter::default_collectors().collect();
    expected_for.sort_unstable();
    defaults.sort_unstable();
    assert_eq!(expected_for, defaults);
    for (collector, expected) in expectations {
        assert_eq!(success(&text, collector), Some(expected), "{collector}");
    }
    assert!(text.contains("node_xfs_read_calls_total{device=\"sdc1\"} 1976\n"));
    assert!(!text.contains("device=\"sdb1\""));
    assert!(!text.contains("node_nvme_info"));
    assert!(text.contains("node_zfs_abd_linear_cnt 7421\n"));
    assert!(text.contains("node_zfs_zpool_state{zpool=\"bpool\",state=\"suspended\"} 1\n"));
    assert!(!text.contains("node_zfs_arc_"));
    assert!(!text.contains("node_zfs_zpool_nread"));
    assert!(!text.contains("b0b20a59-d456-4e7d-afe4-94e6da0c0fd7"));
    assert!(
        !text.contains("node_tape_"),
        "both tape drives are unreadable"
    );
    assert!(text.contains(
        "node_btrfs_global_rsv_size_bytes{uuid=\"7f3c2b1e-5a6d-4e8f-9a0b-1c2d3e4f5a6b\"} 0\n"
    ));
    // What still parsed is served.
    assert!(
        text.contains("node_memory_MemTotal_bytes 25276063744\n"),
        "{text}"
    );
    assert!(text.contains("node_pressure_cpu_waiting_seconds_total 1.5\n"));
    assert!(
        !text.contains("node_pressure_cpu_stalled"),
        "old kernels have no full cpu line"
    );
    assert!(text.contains("node_filesystem_device_error{device=\"/dev/sdb1\",fstype=\"ext4\",mountpoint=\"/data\"} 1\n"));
    // Each failure is logged with what and where.
    let log = exporter.stderr();
    let root = fixture("broken");
    for expected in [
        format!("{}/loadavg", root.join("proc").display()),
        "collector=cpu".to_string(),
        "skipping unparsable meminfo line".to_string(),
        "skipping unparsable mountinfo line".to_string(),
        "skipping unparsable pressure line".to_string(),
        format!("{}/mdstat", root.join("proc").display()),
        format!("{}/net/rpc/nfs", root.join("proc").display()),
        format!("{}/net/rpc/nfsd", root.join("proc").display()),
        format!(
            "{}/class/scsi_tape/st0/stats/read_cnt",
            root.join("sys").display()
        ),
        format!("{}/class/scsi_tape/st1/stats", root.join("sys").display()),
        format!(
            "{}/fs/bcache/0a1b2c3d-c735-46d5-868e-f331c5fd7c74/bdev0/stats_total/cache_hits",
            root.join("sys").display()
        ),
        format!("{}/fs/xfs/sdb1/stats/stats", root.join("sys").display()),
        format!("{}/class/nvme/nvme0/", root.join("sys").display()),
        format!("{}/spl/kstat/zfs/arcstats", root.join("proc").display()),
        format!("{}/spl/kstat/zfs/bpool/io", root.join("proc").display()),
        format!(
            "{}/spl/kstat/zfs/bpool/objset-0x36",
            root.join("proc").display()
        ),
        format!(
            "{}/sys/net/netfilter/nf_conntrack_count",
            root.join("proc").display()
        ),
        "skipping unparsable arp line".to_string(),
        "skipping unparsable netstat lines".to_string(),
        "skipping unparsable sockstat line".to_string(),
        "skipping unparsable softnet_stat line".to_string(),
        "skipping unparsable udp socket line".to_string(),
        format!("{}/net/ip_vs_stats", root.join("proc").display()),
        format!("{}/class/net/loop0", root.join("sys").display()),
        format!(
            "{}/class/net/bond9/bonding/slaves",
            root.join("sys").display()
        ),
        format!(
            "{}/sys/kernel/random/entropy_avail",
            root.join("proc").display()
        ),
        format!("{}/sys/fs/file-nr", root.join("proc").display()),
        format!(
            "{}/devices/system/edac/mc/mc0/ue_count",
            root.join("sys").display()
        ),
        format!("{}/fs/selinux/enforce", root.join("sys").display()),
        format!("{}/etc/os-release", root.join("rootfs").display()),
        "skipping unparsable vmstat line".to_string(),
        "skipping short schedstat line".to_string(),
        "skipping unparsable cpufreq value".to_string(),
        "skipping unparsable power supply value".to_string(),
        "skipping unparsable watchdog value".to_string(),
        // Each textfile that is left out, with its path.
        format!("{}/garbage.prom", root.join("textfile").display()),
        format!("{}/timestamps.prom", root.join("textfile").display()),
        format!("{}/truncated.prom", root.join("textfile").display()),
        format!("{}/bad_escape.prom", root.join("textfile").display()),
        format!("{}/directory.prom", root.join("textfile").display()),
        "inconsistent metric help text".to_string(),
    ] {
        assert!(log.contains(&expected), "log lacks {expected:?}:\n{log}");
    }
}

#[test]
fn missing_procfs_fails_every_procfs_collector_but_the_scrape_answers() {
    let exporter = ExporterProcess::start(
        BINARY,
        &[
            "--path.procfs=/nonexistent/proc",
            "--path.sysfs=/nonexistent/sys",
        ],
        &[],
    );
    let response = exporter.get("/metrics");
    assert_eq!(response.status, 200);
    let text = response.text();
    for collector in [
        "cpu",
        "meminfo",
        "filesystem",
        "netdev",
        "diskstats",
        "loadavg",
        "pressure",
        "stat",
    ] {
        assert_eq!(success(&text, collector), Some(0.0), "{collector}");
    }
    assert!(text.contains("process_resident_memory_bytes"));
}

#[test]
fn collect_and_exclude_parameters_filter_collectors() {
    let exporter = start_on("full", &[]);
    let only = exporter
        .get("/metrics?collect[]=loadavg&collect[]=meminfo")
        .text();
    assert!(only.contains("node_load1 "));
    assert!(only.contains("node_memory_MemTotal_bytes"));
    assert!(!only.contains("node_cpu_seconds_total"));
    assert_eq!(success(&only, "cpu"), None);

    let except = exporter.get("/metrics?exclude[]=cpu").text();
    assert!(!except.contains("node_cpu_seconds_total"));
    assert!(except.contains("node_load1 "));

    let unknown = exporter.get("/metrics?collect[]=nosuch");
    assert_eq!(unknown.status, 400);
    assert!(unknown.text().contains("nosuch"));
    assert_eq!(
        exporter
            .get("/metrics?collect[]=cpu&exclude[]=meminfo")
            .status,
        400
    );
}

#[test]
fn both_formats_are_valid_for_the_reference_parsers_and_promtool() {
    let exporter = start_on("full", &[]);
    let text = exporter.get("/metrics").text();
    if let Err(e) = check_exposition("text", &text) {
        panic!("{e}");
    }
    // promtool lints node_exporter's own meminfo and netstat names (`MemTotal`, `Tcp_InSegs`)
    // as camelCase and its entropy names' unit, as it does for node_exporter; anything else it
    // reports is a real problem.
    let (code, output) = promtool_check_metrics(&text);
    let problems: Vec<&str> = output
        .lines()
        .filter(|l| {
            let camel = (l.starts_with("node_memory_") || l.starts_with("node_netstat_"))
                && l.ends_with("should be written in 'snake_case' not 'camelCase'");
            // node_exporter's entropy names count bits, which promtool would have in bytes.
            let entropy_bits = l.starts_with("node_entropy_") && l.ends_with("instead of \"bits\"");
            !(camel || entropy_bits)
        })
        .collect();
    assert!(code == 0 || code == 3, "promtool failed ({code}): {output}");
    assert!(problems.is_empty(), "promtool check metrics: {problems:?}");

    let openmetrics = common::testing::http_get(
        exporter.addr,
        "/metrics",
        &[("Accept", "application/openmetrics-text; version=1.0.0")],
    )
    .unwrap();
    assert!(openmetrics
        .header("content-type")
        .unwrap()
        .starts_with("application/openmetrics-text"));
    let output =
        check_exposition("openmetrics", &openmetrics.text()).unwrap_or_else(|e| panic!("{e}"));
    assert!(output.contains("node_cpu_seconds counter"), "{output}");
}

/// EACCES on a procfs file: the collector fails with the path and the reason in the log, the
/// rest is served. Root reads any file, so as root the binary runs as nobody for this test.
#[test]
fn an_unreadable_file_fails_its_collector_with_a_clear_log_line() {
    let dir = std::env::temp_dir().join(format!("host-eacces-{}", std::process::id()));
    let proc_dir = dir.join("proc");
    std::fs::create_dir_all(&proc_dir).unwrap();
    for file in ["stat", "meminfo", "loadavg"] {
        std::fs::copy(fixture("full").join("proc").join(file), proc_dir.join(file)).unwrap();
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&proc_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(
        proc_dir.join("loadavg"),
        std::fs::Permissions::from_mode(0o000),
    )
    .unwrap();

    let procfs = format!("--path.procfs={}", proc_dir.display());
    let args = [
        "--collector.disable-defaults",
        "--collector.loadavg",
        "--collector.meminfo",
        &procfs,
    ];
    // SAFETY: geteuid has no preconditions.
    let exporter = if unsafe { libc::geteuid() } == 0 {
        let mut wrapped = vec!["--reuid=65534", "--regid=65534", "--clear-groups", BINARY];
        wrapped.extend_from_slice(&args);
        ExporterProcess::start_command("setpriv", &wrapped, &[])
    } else {
        ExporterProcess::start(BINARY, &args, &[])
    };
    let text = exporter.get("/metrics").text();
    assert_eq!(success(&text, "loadavg"), Some(0.0), "{text}");
    assert_eq!(success(&text, "meminfo"), Some(1.0));
    let log = exporter.stderr();
    assert!(
        log.contains(&format!(
            "{}/loadavg: Permission denied",
            proc_dir.display()
        )),
        "{log}"
    );
    drop(exporter);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Names anyone can make (a FUSE mount point, a tun interface) that are not UTF-8 keep their
/// entries, with U+FFFD for the bad bytes, as node_exporter writes them; a file pointing at an
/// endless device fails only its collector.
#[test]
fn names_that_are_not_utf8_keep_their_series_and_endless_files_are_refused() {
    use std::io::Write;
    let root = fixture("full");
    let proc_dir = std::env::temp_dir().join(format!("golden-hostile-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&proc_dir);
    common::testing::copy_tree(&root.join("proc"), &proc_dir);
    let append = |rel: &str, line: &[u8]| {
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(proc_dir.join(rel))
            .unwrap();
        file.write_all(line).unwrap();
    };
    append(
        "net/dev",
        b"  tun\xff0:     100       1    0    0    0     0          0         0      200       2    0    0    0     0       0          0\n",
    );
    append(
        "diskstats",
        b"   8      32 sd\xfez 5 0 40 3 0 0 0 0 0 4 3 0 0 0 0 0 0\n",
    );
    append(
        "1/mountinfo",
        b"63 27 0:60 / /mnt/fuse\xff rw - fuse.sshfs host:/ rw\n",
    );
    std::fs::remove_file(proc_dir.join("loadavg")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", proc_dir.join("loadavg")).unwrap();

    let args = [
        format!("--path.procfs={}", proc_dir.display()),
        format!("--path.sysfs={}", root.join("sys").display()),
        format!("--path.rootfs={}", root.join("rootfs").display()),
        format!("--path.udev.data={}", root.join("udev").display()),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let exporter = ExporterProcess::start(BINARY, &args, &[]);
    let text = exporter.get("/metrics").text();
    for collector in ["netdev", "diskstats", "filesystem"] {
        assert_eq!(success(&text, collector), Some(1.0), "{collector}");
    }
    assert!(text.contains("node_network_receive_bytes_total{device=\"tun\u{fffd}0\"} 100"));
    assert!(text.contains("node_disk_reads_completed_total{device=\"sd\u{fffd}z\"} 5"));
    assert!(text.contains("mountpoint=\"/mnt/fuse\u{fffd}\""));
    // The entries that were there before are all still there.
    assert!(text.contains("node_network_receive_bytes_total{device=\"lo\"} 92491"));
    assert!(text.contains("mountpoint=\"/mnt/models and weights\""));

    assert_eq!(success(&text, "loadavg"), Some(0.0));
    assert!(
        exporter.stderr().contains("loadavg"),
        "{}",
        exporter.stderr()
    );
    assert!(exporter.stderr().contains("larger than 8 MiB"));
    // Still serving.
    assert_eq!(exporter.get("/-/healthy").status, 200);
    drop(exporter);
    std::fs::remove_dir_all(&proc_dir).unwrap();
}

/// The system collectors' flags, with node_exporter's names: cpuinfo and its flag/bug filters,
/// guest seconds off, kernel_hung on, another vmstat field set, an ignored power supply.
#[test]
fn system_collector_flags_change_what_is_reported() {
    let exporter = start_on(
        "full",
        &[
            "--collector.cpu.info.flags-include=^(aes|avx2)$",
            "--collector.cpu.info.bugs-include=^spectre_v1$",
            "--no-collector.cpu.guest",
            "--collector.kernel_hung",
            "--collector.vmstat.fields=^nr_(free_pages|dirty)$",
            "--collector.powersupply.ignored-supplies=^AC$",
        ],
    );
    let text = exporter.get("/metrics").text();
    // flags-include implies --collector.cpu.info.
    for expected in [
        "node_cpu_info{cachesize=\"1024 KB\",core=\"1\",cpu=\"1\",family=\"25\",microcode=\"0x1000065\",model=\"17\",model_name=\"AMD EPYC\",package=\"0\",stepping=\"1\",vendor=\"AuthenticAMD\"} 1\n",
        "node_cpu_flag_info{flag=\"aes\"} 1\n",
        "node_cpu_flag_info{flag=\"avx2\"} 1\n",
        "node_cpu_bug_info{bug=\"spectre_v1\"} 1\n",
        "node_kernel_hung_task_detect_count 0\n",
        "node_vmstat_nr_free_pages ",
        "node_vmstat_nr_dirty ",
        "node_power_supply_info{capacity_level=\"Normal\"",
    ] {
        assert!(text.contains(expected), "lacks {expected:?}:\n{text}");
    }
    assert_eq!(text.matches("node_cpu_flag_info{").count(), 2, "{text}");
    assert_eq!(text.matches("node_cpu_bug_info{").count(), 1);
    for absent in [
        "node_cpu_guest_seconds_total{",
        "node_vmstat_pgfault",
        "power_supply=\"AC\"",
    ] {
        assert!(!text.contains(absent), "has {absent:?}:\n{text}");
    }
    assert_eq!(success(&text, "kernel_hung"), Some(1.0));

    // collector.cpu.guest=false from the environment turns guest seconds off too; by default
    // they are on.
    let root = fixture("full");
    let procfs = format!("--path.procfs={}", root.join("proc").display());
    let off = ExporterProcess::start(
        BINARY,
        &[&procfs],
        &[("HOST_EXPORTER_COLLECTOR_CPU_GUEST", "false")],
    );
    assert!(!off
        .get("/metrics")
        .text()
        .contains("node_cpu_guest_seconds_total{"));
    let on = ExporterProcess::start(BINARY, &[&procfs], &[]);
    assert!(on
        .get("/metrics")
        .text()
        .contains("node_cpu_guest_seconds_total{"));

    // A bad regular expression is refused at startup, naming the flag.
    let bad = std::process::Command::new(BINARY)
        .args([
            "--collector.vmstat.fields=(",
            "--web.listen-address=127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("collector.vmstat.fields"));
}

/// timex has no fixture (one adjtimex call on the live clock): every family is there with a
/// plausible value; node_exporter_compat.rs compares the values with node_exporter's.
#[test]
fn timex_reports_the_live_clock() {
    let exporter = start_on("full", &[]);
    let text = exporter.get("/metrics").text();
    let families = common::testing::parse_text(&text).unwrap();
    let value = |name: &str| families[name].samples[0].2;
    for name in [
        "node_timex_offset_seconds",
        "node_timex_offset_overflow_total",
        "node_timex_frequency_adjustment_ratio",
        "node_timex_maxerror_seconds",
        "node_timex_estimated_error_seconds",
        "node_timex_status",
        "node_timex_loop_time_constant",
        "node_timex_tick_seconds",
        "node_timex_pps_frequency_hertz",
        "node_timex_pps_jitter_seconds",
        "node_timex_pps_shift_seconds",
        "node_timex_pps_stability_hertz",
        "node_timex_pps_jitter_total",
        "node_timex_pps_calibration_total",
        "node_timex_pps_error_total",
        "node_timex_pps_stability_exceeded_total",
        "node_timex_tai_offset_seconds",
        "node_timex_sync_status",
    ] {
        assert!(families.contains_key(name), "no {name}");
    }
    // USER_HZ-independent kernel tick: 1/HZ seconds, between 1/1000 and 1/24.
    assert!((0.0009..0.05).contains(&value("node_timex_tick_seconds")));
    assert!((0.99..1.01).contains(&value("node_timex_frequency_adjustment_ratio")));
    assert!([0.0, 1.0].contains(&value("node_timex_sync_status")));
}

/// Where the kernel interfaces are absent (an empty sysfs and a procfs without them), the
/// system collectors report nothing and succeed, except those node_exporter fails too
/// (filefd, vmstat: every Linux has them).
#[test]
fn absent_system_interfaces_report_nothing_and_succeed() {
    let dir = std::env::temp_dir().join(format!("golden-absent-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    for sub in ["proc", "sys", "rootfs"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    let args = [
        format!("--path.procfs={}", dir.join("proc").display()),
        format!("--path.sysfs={}", dir.join("sys").display()),
        format!("--path.rootfs={}", dir.join("rootfs").display()),
        "--collector.kernel_hung".to_string(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let exporter = ExporterProcess::start(BINARY, &args, &[]);
    let text = exporter.get("/metrics").text();
    for collector in [
        "cpufreq",
        "dmi",
        "edac",
        "entropy",
        "kernel_hung",
        "os",
        "powersupplyclass",
        "schedstat",
        "selinux",
        "watchdog",
    ] {
        assert_eq!(success(&text, collector), Some(1.0), "{collector}");
    }
    for collector in ["filefd", "vmstat"] {
        assert_eq!(success(&text, collector), Some(0.0), "{collector}");
    }
    for prefix in [
        "node_cpu_frequency",
        "node_dmi_",
        "node_edac_",
        "node_entropy_",
        "node_kernel_hung_",
        "node_os_",
        "node_power_supply_",
        "node_schedstat_",
        "node_watchdog_",
        "node_cpu_online",
    ] {
        assert!(!text.contains(prefix), "{prefix}:\n{text}");
    }
    // SELinux absent reads as disabled, as node_exporter reports it.
    assert!(text.contains("node_selinux_enabled 0\n"));
    drop(exporter);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Hostile files where the system collectors' files should be: a symlink loop, an endless
/// device, a huge file, a directory, a FIFO. Each fails or skips only its own entry, the
/// scrape answers, and the log names the file.
#[test]
fn hostile_system_files_fail_only_their_collector() {
    let root = fixture("full");
    let dir = std::env::temp_dir().join(format!("golden-hostile-sys-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let proc_dir = dir.join("proc");
    let sys_dir = dir.join("sys");
    common::testing::copy_tree(&root.join("proc"), &proc_dir);
    common::testing::copy_tree(&root.join("rootfs"), &dir.join("rootfs"));
    for part in [
        "class/power_supply",
        "devices/system/edac",
        "devices/system/cpu",
    ] {
        common::testing::copy_tree(&root.join("sys").join(part), &sys_dir.join(part));
    }
    let replace_with_link = |path: std::path::PathBuf, target: &std::path::Path| {
        std::fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink(target, &path).unwrap();
    };
    // A symlink loop for entropy_avail.
    let entropy = proc_dir.join("sys/kernel/random/entropy_avail");
    replace_with_link(entropy.clone(), &entropy);
    // /dev/zero for vmstat: refused at 8 MiB.
    replace_with_link(proc_dir.join("vmstat"), std::path::Path::new("/dev/zero"));
    // A 9 MiB schedstat.
    std::fs::write(proc_dir.join("schedstat"), vec![b'x'; 9 << 20]).unwrap();
    // A directory where file-nr should be.
    std::fs::remove_file(proc_dir.join("sys/fs/file-nr")).unwrap();
    std::fs::create_dir(proc_dir.join("sys/fs/file-nr")).unwrap();
    // A FIFO where an EDAC count should be: the read would block until a writer comes.
    let fifo = sys_dir.join("devices/system/edac/mc/mc0/ce_count");
    std::fs::remove_file(&fifo).unwrap();
    let c_path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo reads a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
    // A battery attribute that loops: that attribute is skipped, the battery stays.
    let capacity = sys_dir.join("class/power_supply/BAT0/capacity");
    replace_with_link(capacity.clone(), &capacity);
    // A supply whose name is not UTF-8: kept, with U+FFFD in its label.
    use std::os::unix::ffi::OsStrExt;
    let odd = sys_dir
        .join("class/power_supply")
        .join(std::ffi::OsStr::from_bytes(b"BAT\xff1"));
    std::fs::create_dir(&odd).unwrap();
    std::fs::write(odd.join("type"), "Battery\n").unwrap();
    std::fs::write(odd.join("capacity"), "55\n").unwrap();

    let args = [
        format!("--path.procfs={}", proc_dir.display()),
        format!("--path.sysfs={}", sys_dir.display()),
        format!("--path.rootfs={}", dir.join("rootfs").display()),
        "--scrape.timeout=2s".to_string(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let exporter = ExporterProcess::start(BINARY, &args, &[]);
    let text = exporter.get("/metrics").text();
    for (collector, expected) in [
        ("entropy", 0.0),
        ("vmstat", 0.0),
        ("schedstat", 0.0),
        ("filefd", 0.0),
        ("edac", 0.0),
        ("powersupplyclass", 1.0),
        ("cpufreq", 1.0),
        ("os", 1.0),
    ] {
        assert_eq!(success(&text, collector), Some(expected), "{collector}");
    }
    assert!(text.contains("node_power_supply_voltage_volt{power_supply=\"BAT0\"} 12.543"));
    assert!(!text.contains("node_power_supply_capacity{power_supply=\"BAT0\"}"));
    assert!(text.contains("node_power_supply_capacity{power_supply=\"BAT\u{fffd}1\"} 55\n"));
    assert!(
        text.contains("node_power_supply_info{power_supply=\"BAT\u{fffd}1\",type=\"Battery\"} 1\n")
    );
    let log = exporter.stderr();
    for expected in [
        format!("{}", entropy.display()),
        format!("{}/vmstat", proc_dir.display()),
        format!("{}/schedstat", proc_dir.display()),
        format!("{}/sys/fs/file-nr", proc_dir.display()),
        "larger than 8 MiB".to_string(),
        "collector=edac".to_string(),
    ] {
        assert!(log.contains(&expected), "log lacks {expected:?}:\n{log}");
    }
    assert_eq!(exporter.get("/-/healthy").status, 200);
    drop(exporter);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The storage collectors on hostile files: a symlink loop, an endless file, a FIFO nobody
/// writes, names that are not UTF-8. Each fails only itself (or skips the entry) with the
/// path in the log, keeps the entries that are fine, and the scrape answers.
#[test]
fn storage_collectors_survive_hostile_files() {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::symlink;
    let root = fixture("full");
    let dir = std::env::temp_dir().join(format!("golden-storage-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (proc_dir, sys_dir) = (dir.join("proc"), dir.join("sys"));
    std::fs::create_dir_all(&dir).unwrap();
    // cp -a: the sys tree holds symlinks, as the real one does.
    let copied = std::process::Command::new("cp")
        .arg("-a")
        .args([root.join("proc"), root.join("sys")])
        .arg(&dir)
        .status()
        .unwrap();
    assert!(copied.success());

    // mdstat: a symlink loop (ELOOP). nfs: endless. nfsd: a FIFO without a writer.
    std::fs::remove_file(proc_dir.join("mdstat")).unwrap();
    symlink("mdstat", proc_dir.join("mdstat")).unwrap();
    std::fs::remove_file(proc_dir.join("net/rpc/nfs")).unwrap();
    symlink("/dev/zero", proc_dir.join("net/rpc/nfs")).unwrap();
    let fifo = proc_dir.join("net/rpc/nfsd");
    std::fs::remove_file(&fifo).unwrap();
    let c_path = std::ffi::CString::new(fifo.as_os_str().as_bytes()).unwrap();
    // SAFETY: mkfifo reads a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
    // zfs: arcstats endless, a pool whose name is not UTF-8.
    let zfs = proc_dir.join("spl/kstat/zfs");
    std::fs::remove_file(zfs.join("arcstats")).unwrap();
    symlink("/dev/zero", zfs.join("arcstats")).unwrap();
    let odd = |name: &[u8]| std::ffi::OsStr::from_bytes(name).to_os_string();
    std::fs::rename(zfs.join("tank"), zfs.join(odd(b"ta\xffnk"))).unwrap();
    // xfs and nvme: device names that are not UTF-8; an nvme attribute that loops.
    let xfs = sys_dir.join("fs/xfs");
    std::fs::rename(xfs.join("vda2"), xfs.join(odd(b"vd\xfea2"))).unwrap();
    let nvme = sys_dir.join("class/nvme");
    std::fs::rename(nvme.join("nvme1"), nvme.join(odd(b"nvme\xff1"))).unwrap();
    std::fs::remove_file(nvme.join("nvme0/model")).unwrap();
    symlink("model", nvme.join("nvme0/model")).unwrap();
    // btrfs: a label that is not UTF-8.
    std::fs::write(
        sys_dir.join("fs/btrfs/b0b20a59-d456-4e7d-afe4-94e6da0c0fd7/label"),
        b"mod\xffels\n",
    )
    .unwrap();

    let args = [
        format!("--path.procfs={}", proc_dir.display()),
        format!("--path.sysfs={}", sys_dir.display()),
        format!("--path.rootfs={}", root.join("rootfs").display()),
        "--scrape.timeout=1s".to_string(),
        "--collector.disable-defaults".to_string(),
    ];
    let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
    let collectors = ["mdadm", "nfs", "nfsd", "xfs", "nvme", "zfs", "btrfs"];
    let flags: Vec<String> = collectors
        .iter()
        .map(|c| format!("--collector.{c}"))
        .collect();
    args.extend(flags.iter().map(String::as_str));
    let exporter = ExporterProcess::start(BINARY, &args, &[]);
    let text = exporter.get("/metrics").text();
    for (collector, expected) in [
        ("mdadm", 0.0),
        ("nfs", 0.0),
        ("nfsd", 0.0),
        ("xfs", 1.0),
        ("nvme", 1.0),
        ("zfs", 1.0),
        ("btrfs", 1.0),
    ] {
        assert_eq!(
            success(&text, collector),
            Some(expected),
            "{collector}\n{text}"
        );
    }
    assert!(text.contains("node_xfs_read_calls_total{device=\"vd\u{fffd}a2\"} 1976\n"));
    assert!(text.contains("device=\"nvme\u{fffd}1\""), "{text}");
    assert!(
        !text.contains("device=\"nvme0\""),
        "a controller that cannot be read is skipped"
    );
    assert!(text.contains("node_zfs_zpool_state{zpool=\"ta\u{fffd}nk\",state=\"degraded\"} 1\n"));
    assert!(!text.contains("node_zfs_arc_"));
    assert!(text.contains("node_zfs_abd_linear_cnt 7421\n"));
    assert!(text.contains("node_btrfs_info{label=\"mod\u{fffd}els\","));
    let log = exporter.stderr();
    for expected in [
        format!("{}/mdstat", proc_dir.display()),
        format!("{}/net/rpc/nfs:", proc_dir.display()),
        format!("{}/arcstats", zfs.display()),
        format!("{}/nvme0/model", nvme.display()),
        "larger than 8 MiB".to_string(),
    ] {
        assert!(log.contains(&expected), "log lacks {expected:?}:\n{log}");
    }
    assert_eq!(exporter.get("/-/healthy").status, 200);
    drop(exporter);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn tapestats_ignores_the_devices_its_flag_names() {
    let exporter = start_on(
        "full",
        &[
            "--collector.disable-defaults",
            "--collector.tapestats",
            "--collector.tapestats.ignored-devices=^st1$",
        ],
    );
    let text = exporter.get("/metrics").text();
    assert!(
        text.contains("node_tape_io_now{device=\"st0\"} 1\n"),
        "{text}"
    );
    assert!(!text.contains("device=\"st1\""), "{text}");
    // The variants of st0 (nst0, st0a) are the same drive, never reported apart.
    assert!(!text.contains("device=\"nst0\""));
    assert!(!text.contains("device=\"st0a\""));
    // A regular expression that does not compile stops the exporter at start, naming the flag.
    let bad = std::process::Command::new(BINARY)
        .arg("--collector.tapestats.ignored-devices=(")
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("collector.tapestats.ignored-devices"),
        "{stderr}"
    );
}

/// dmmultipath is off by default, as in node_exporter: its golden lines are checked here. A
/// multipath map with one path up and one offline; an LVM volume is not a map; a map with an
/// unparsable attribute is skipped with a log line.
#[test]
fn dmmultipath_reports_maps_and_their_paths_when_enabled() {
    let text = start_on("full", &[]).get("/metrics").text();
    assert!(!text.contains("node_dmmultipath"), "off by default");

    let exporter = start_on(
        "full",
        &["--collector.disable-defaults", "--collector.dmmultipath"],
    );
    let text = exporter.get("/metrics").text();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("node_dmmultipath"))
        .collect();
    assert_eq!(
        lines,
        [
            "node_dmmultipath_device_active{device=\"mpatha\",sysfs_name=\"dm-0\"} 1",
            "node_dmmultipath_device_info{device=\"mpatha\",sysfs_name=\"dm-0\",uuid=\"mpath-3600508b400105e210000900000490000\"} 1",
            "node_dmmultipath_device_paths{device=\"mpatha\",sysfs_name=\"dm-0\"} 2",
            "node_dmmultipath_device_paths_active{device=\"mpatha\",sysfs_name=\"dm-0\"} 1",
            "node_dmmultipath_device_paths_failed{device=\"mpatha\",sysfs_name=\"dm-0\"} 1",
            "node_dmmultipath_device_size_bytes{device=\"mpatha\",sysfs_name=\"dm-0\"} 2147483648000",
            "node_dmmultipath_path_state{device=\"mpatha\",path=\"sdb\",state=\"running\"} 1",
            "node_dmmultipath_path_state{device=\"mpatha\",path=\"sdc\",state=\"offline\"} 1",
        ]
    );

    let exporter = start_on(
        "broken",
        &["--collector.disable-defaults", "--collector.dmmultipath"],
    );
    let text = exporter.get("/metrics").text();
    assert_eq!(success(&text, "dmmultipath"), Some(1.0));
    assert!(!text.contains("node_dmmultipath_device"));
    let root = fixture("broken");
    let log = exporter.stderr();
    assert!(
        log.contains(&format!(
            "{}/block/dm-0/dm/suspended",
            root.join("sys").display()
        )),
        "{log}"
    );
}
