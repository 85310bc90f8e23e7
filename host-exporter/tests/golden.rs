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

fn start_on(name: &str, extra: &[&str]) -> ExporterProcess {
    let root = fixture(name);
    let mut args = vec![
        format!("--path.procfs={}", root.join("proc").display()),
        format!("--path.sysfs={}", root.join("sys").display()),
        format!("--path.rootfs={}", root.join("rootfs").display()),
        format!("--path.udev.data={}", root.join("udev").display()),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ExporterProcess::start(BINARY, &args, &[])
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
    assert_golden(&fixture("full.prom"), &stable(&text, "full"));
    for collector in [
        "cpu",
        "meminfo",
        "filesystem",
        "netdev",
        "diskstats",
        "loadavg",
        "pressure",
        "stat",
        "uname",
        "time",
        "hwmon",
        "thermal_zone",
        "rapl",
        "mdadm",
        "nfs",
        "xfs",
        "nvme",
        "zfs",
        "btrfs",
        "nfsd",
        "tapestats",
        "bcache",
    ] {
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
    assert_golden(&fixture("broken.prom"), &stable(&text, "broken"));
    for (collector, expected) in [
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
    ] {
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
    // promtool lints node_exporter's own meminfo names (`MemTotal`) as camelCase, as it does for
    // node_exporter; anything else it reports is a real problem.
    let (code, output) = promtool_check_metrics(&text);
    let problems: Vec<&str> = output
        .lines()
        .filter(|l| {
            !(l.starts_with("node_memory_")
                && l.ends_with("should be written in 'snake_case' not 'camelCase'"))
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
