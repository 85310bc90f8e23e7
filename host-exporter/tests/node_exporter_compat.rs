//! Compatibility with Debian's prometheus-node-exporter, run side by side on this host: for every
//! family host-exporter emits under a `node_` name, the same type, the same label sets, and the
//! same values (exact for sizes and identities; for values that move, between two node_exporter
//! scrapes taken before and after ours, with a small tolerance for gauges that wander).

use common::testing::{parse_text, ExporterProcess, ParsedFamily};
use std::collections::{BTreeMap, BTreeSet};

const BINARY: &str = env!("CARGO_BIN_EXE_host-exporter");
const NODE_EXPORTER: &str = "prometheus-node-exporter";

/// Collectors both have; node_exporter is limited to these.
const COLLECTORS: [&str; 22] = [
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
];

/// Families that node_exporter added after Debian's 1.5.0 and that we already emit.
const NEWER_THAN_DEBIAN: [&str; 13] = [
    "node_pressure_cpu_stalled_seconds_total",
    "node_pressure_irq_stalled_seconds_total",
    // NVMe namespaces (node_exporter 1.10).
    "node_nvme_namespace_info",
    "node_nvme_namespace_capacity_bytes",
    "node_nvme_namespace_size_bytes",
    "node_nvme_namespace_used_bytes",
    "node_nvme_namespace_logical_block_size_bytes",
    // Signed (int64) ZFS kstats: node_exporter reads them since 1.7.
    "node_zfs_arc_memory_available_bytes",
    "node_zfs_arc_memory_free_bytes",
    // btrfs commit statistics (node_exporter 1.7, Linux 6.0+).
    "node_btrfs_commits_total",
    "node_btrfs_commit_seconds_total",
    "node_btrfs_last_commit_seconds",
    "node_btrfs_max_commit_seconds",
];

/// Labels that node_exporter added to a family after Debian's 1.5.0: left out of our series
/// before they are compared. `cntlid` on node_nvme_info came with 1.10.
const LABELS_NEWER_THAN_DEBIAN: [(&str, &str); 1] = [("node_nvme_info", "cntlid")];

/// Series left out of the comparison because node_exporter changed them after Debian's 1.5.0:
/// ZFS's `suspended` pool state came with 1.6; 1.5.0's procfs read the last three NFSv4 server
/// operations two places early (it skipped SETCLIENTID and SETCLIENTID_CONFIRM; fixed since,
/// and the kernel numbers them VERIFY 37, WRITE 38, RELEASE_LOCKOWNER 39).
const SERIES_NEWER_THAN_DEBIAN: [(&str, &str, &str); 4] = [
    ("node_zfs_zpool_state", "state", "suspended"),
    ("node_nfsd_requests_total", "method", "Verify"),
    ("node_nfsd_requests_total", "method", "Write"),
    ("node_nfsd_requests_total", "method", "RelLockOwner"),
];

/// Families whose values must be identical.
fn exact(name: &str) -> bool {
    matches!(
        name,
        "node_filesystem_size_bytes"
            | "node_filesystem_files"
            | "node_filesystem_readonly"
            | "node_filesystem_device_error"
            | "node_memory_MemTotal_bytes"
            | "node_memory_SwapTotal_bytes"
            | "node_memory_HugePages_Total"
            | "node_memory_Hugepagesize_bytes"
            | "node_boot_time_seconds"
            | "node_uname_info"
            | "node_disk_info"
            | "node_time_zone_offset_seconds"
            | "node_time_clocksource_available_info"
            | "node_time_clocksource_current_info"
    )
}

/// Allowed distance outside the bracket for gauges that move on their own.
fn tolerance(name: &str, value: f64) -> f64 {
    if name.starts_with("node_memory_") || name.starts_with("node_filesystem_") {
        (value.abs() * 0.02).max(256.0 * 1024.0 * 1024.0)
    } else if name.starts_with("node_procs_") {
        // A point sample of the run queue: our own collector threads and any parallel build
        // are in it.
        64.0
    } else if name.starts_with("node_load") {
        0.5
    } else if name == "node_disk_io_now" {
        4.0
    } else {
        1e-9
    }
}

type Series = BTreeMap<(String, Vec<(String, String)>), f64>;

fn series(family: &ParsedFamily) -> Series {
    family
        .samples
        .iter()
        .filter(|(n, l, _)| {
            !SERIES_NEWER_THAN_DEBIAN
                .iter()
                .any(|(f, k, v)| n == f && l.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .map(|(n, l, v)| {
            let labels = l
                .iter()
                .filter(|(k, _)| !LABELS_NEWER_THAN_DEBIAN.contains(&(n.as_str(), k.as_str())))
                .cloned()
                .collect();
            ((n.clone(), labels), *v)
        })
        .collect()
}

fn node_exporter_args(port: u16) -> Vec<String> {
    let mut args = vec![
        format!("--web.listen-address=127.0.0.1:{port}"),
        "--web.disable-exporter-metrics".to_string(),
        "--collector.disable-defaults".to_string(),
        // Our defaults (upstream node_exporter's), so both look at the same mounts and devices.
        format!(
            "--collector.filesystem.mount-points-exclude={}",
            MOUNT_POINTS_EXCLUDE
        ),
        format!(
            "--collector.filesystem.fs-types-exclude={}",
            FS_TYPES_EXCLUDE
        ),
        "--collector.netdev.device-exclude=".to_string(),
    ];
    args.extend(COLLECTORS.iter().map(|c| format!("--collector.{c}")));
    args
}

const MOUNT_POINTS_EXCLUDE: &str =
    r"^/(dev|proc|run/credentials/.+|sys|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)";
const FS_TYPES_EXCLUDE: &str = r"^(autofs|binfmt_misc|bpf|cgroup2?|configfs|debugfs|devpts|devtmpfs|fusectl|hugetlbfs|iso9660|mqueue|nsfs|overlay|proc|procfs|pstore|rpc_pipefs|securityfs|selinuxfs|squashfs|erofs|sysfs|tracefs)$";

struct NodeExporter(std::process::Child);
impl Drop for NodeExporter {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn scrape(addr: std::net::SocketAddr) -> BTreeMap<String, ParsedFamily> {
    let body = common::testing::http_get(addr, "/metrics", &[])
        .expect("scrape failed")
        .text();
    parse_text(&body).expect("unparsable exposition")
}

#[test]
fn same_names_types_labels_and_values_as_node_exporter() {
    let port = common::testing::free_port();
    let child = std::process::Command::new(NODE_EXPORTER)
        .args(node_exporter_args(port))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("{NODE_EXPORTER} is needed (apt-get install prometheus-node-exporter): {e}")
        });
    let _node = NodeExporter(child);
    let node_addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while common::testing::http_get(node_addr, "/metrics", &[]).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "node_exporter did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let ours = ExporterProcess::start(BINARY, &["--web.disable-exporter-metrics"], &[]);

    let before = scrape(node_addr);
    let mine = scrape(ours.addr);
    let after = scrape(node_addr);

    let mut problems = Vec::new();
    let mut compared = 0;
    for (name, family) in mine.iter().filter(|(n, _)| n.starts_with("node_")) {
        let Some(theirs) = before.get(name) else {
            if !NEWER_THAN_DEBIAN.contains(&name.as_str()) {
                problems.push(format!("{name}: node_exporter has no such family"));
            }
            continue;
        };
        if family.kind != theirs.kind {
            problems.push(format!(
                "{name}: type {} vs node_exporter's {}",
                family.kind, theirs.kind
            ));
        }
        let (ours_s, first, second) = (series(family), series(theirs), series(&after[name]));
        let our_sets: BTreeSet<_> = ours_s.keys().collect();
        let their_sets: BTreeSet<_> = first.keys().collect();
        if our_sets != their_sets {
            problems.push(format!(
                "{name}: label sets differ: only ours {:?}, only theirs {:?}",
                our_sets.difference(&their_sets).collect::<Vec<_>>(),
                their_sets.difference(&our_sets).collect::<Vec<_>>()
            ));
            continue;
        }
        for (key, value) in &ours_s {
            let (a, b) = (first[key], second.get(key).copied().unwrap_or(first[key]));
            compared += 1;
            if name == "node_scrape_collector_duration_seconds" {
                // Timings of two programs: names and labels must match, values cannot.
                continue;
            }
            if name == "node_scrape_collector_success" {
                // node_exporter reports 0 for a collector whose kernel interface is absent (its
                // "no data" error, e.g. hwmon and rapl in a VM); host-exporter reports nothing
                // and 1 there. It must never fail where node_exporter succeeds.
                if a == 1.0 && *value != 1.0 {
                    problems.push(format!(
                        "{name}{:?}: failed where node_exporter did not",
                        key.1
                    ));
                }
                continue;
            }
            if exact(name) {
                if *value != a {
                    problems.push(format!("{name}{:?}: {value} vs node_exporter's {a}", key.1));
                }
            } else {
                let tol = tolerance(name, *value);
                let (low, high) = (a.min(b) - tol, a.max(b) + tol);
                if !(low..=high).contains(value) {
                    problems.push(format!(
                        "{name}{:?}: {value} outside node_exporter's [{a}, {b}]",
                        key.1
                    ));
                }
            }
        }
    }
    assert!(compared > 50, "only {compared} samples compared");
    assert!(
        problems.is_empty(),
        "{} differences:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// Collectors whose kernel interfaces this test machine may lack (no md arrays, no NFS mounts,
/// no NVMe, no mounted XFS, no ZFS, no btrfs): both programs read the checked-in fixture tree instead, where
/// every value must be identical.
const FIXTURE_COLLECTORS: [&str; 9] = [
    "mdadm",
    "nfs",
    "nfsd",
    "xfs",
    "nvme",
    "zfs",
    "btrfs",
    "tapestats",
    "bcache",
];

#[test]
fn storage_collectors_read_the_fixture_tree_as_node_exporter_does() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/full");
    let mut args = vec![
        "--web.disable-exporter-metrics".to_string(),
        "--collector.disable-defaults".to_string(),
        format!("--path.procfs={}", root.join("proc").display()),
        format!("--path.sysfs={}", root.join("sys").display()),
        // Off by default; on here so that its families are compared too.
        "--collector.bcache.priorityStats".to_string(),
    ];
    args.extend(
        FIXTURE_COLLECTORS
            .iter()
            .map(|c| format!("--collector.{c}")),
    );
    let port = common::testing::free_port();
    let mut node_args = args.clone();
    node_args.push(format!("--web.listen-address=127.0.0.1:{port}"));
    let child = std::process::Command::new(NODE_EXPORTER)
        .args(&node_args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{NODE_EXPORTER} is needed: {e}"));
    let _node = NodeExporter(child);
    let node_addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while common::testing::http_get(node_addr, "/metrics", &[]).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "node_exporter did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let ours = ExporterProcess::start(BINARY, &arg_refs, &[]);
    let theirs = scrape(node_addr);
    let mine = scrape(ours.addr);

    let mut problems = Vec::new();
    let mut compared = 0;
    let storage = |n: &str| {
        [
            "node_md_",
            "node_nfs_",
            "node_nfsd_",
            "node_xfs_",
            "node_nvme_",
            "node_zfs_",
            "node_btrfs_",
            "node_tape_",
            "node_bcache_",
        ]
        .iter()
        .any(|p| n.starts_with(p))
    };
    for (name, family) in mine.iter().filter(|(n, _)| storage(n)) {
        let Some(their_family) = theirs.get(name) else {
            if !NEWER_THAN_DEBIAN.contains(&name.as_str()) {
                problems.push(format!("{name}: node_exporter has no such family"));
            }
            continue;
        };
        if family.kind != their_family.kind {
            problems.push(format!(
                "{name}: type {} vs {}",
                family.kind, their_family.kind
            ));
        }
        let (a, mut b) = (series(family), series(their_family));
        // node_exporter reports a zero readahead count no more (bcache has counted none since
        // Linux 4.x); 1.5.0 still did.
        if name == "node_bcache_cache_readaheads_total" {
            b.retain(|_, v| *v != 0.0);
        }
        if a.keys().collect::<BTreeSet<_>>() != b.keys().collect::<BTreeSet<_>>() {
            problems.push(format!("{name}: label sets differ:\n{a:?}\n{b:?}"));
            continue;
        }
        for (key, value) in &a {
            compared += 1;
            if b[key] != *value {
                problems.push(format!("{name}{:?}: {value} vs {}", key.1, b[key]));
            }
        }
    }
    // Every family node_exporter makes from the fixture is ours too.
    for name in theirs.keys().filter(|n| storage(n)) {
        if !mine.contains_key(name) {
            problems.push(format!("{name}: only node_exporter has it"));
        }
    }
    assert!(compared > 200, "only {compared} samples compared");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
