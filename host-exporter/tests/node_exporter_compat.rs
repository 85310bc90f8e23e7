//! Compatibility with Debian's prometheus-node-exporter, run side by side on this host: for every
//! family host-exporter emits under a `node_` name, the same type, the same label sets, and the
//! same values (exact for sizes and identities; for values that move, between two node_exporter
//! scrapes taken before and after ours, with a small tolerance for gauges that wander).

use common::testing::{parse_text, ExporterProcess, NodeExporter, ParsedFamily};
use std::collections::{BTreeMap, BTreeSet};

const BINARY: &str = env!("CARGO_BIN_EXE_host-exporter");

/// Collectors both have: our default ones but those Debian's node_exporter lacks. node_exporter
/// is limited to these.
fn shared_collectors() -> impl Iterator<Item = &'static str> {
    host_exporter::default_collectors().filter(|c| !COLLECTORS_NEWER_THAN_DEBIAN.contains(c))
}

/// Default collectors that Debian's 1.5.0 does not have (node_exporter added them later): their
/// `node_scrape_collector_*` series are ours alone. watchdog came in 1.7.
const COLLECTORS_NEWER_THAN_DEBIAN: [&str; 1] = ["watchdog"];

/// Flags given to both, so that families off by default are compared too: cpuinfo with a few
/// flags and bugs every x86-64 CPU has.
const SHARED_FLAGS: [&str; 3] = [
    "--collector.cpu.info",
    "--collector.cpu.info.flags-include=^(fpu|sse2|lm)$",
    "--collector.cpu.info.bugs-include=^spectre_v[12]$",
];

/// Families that node_exporter added after Debian's 1.5.0 and that we already emit.
const NEWER_THAN_DEBIAN: &[&str] = &[
    "node_pressure_cpu_stalled_seconds_total",
    "node_pressure_irq_stalled_seconds_total",
    // Debian's 1.5.0 reads only the first three softnet columns; upstream reads them all.
    "node_softnet_backlog_len",
    "node_softnet_cpu_collision_total",
    "node_softnet_flow_limit_count_total",
    "node_softnet_received_rps_total",
    // The hw_counters of mlx5 and irdma InfiniBand/RoCE ports, which 1.5.0 does not read.
    "node_infiniband_duplicate_requests_packets_total",
    "node_infiniband_implied_nak_seq_errors_total",
    "node_infiniband_lifespan_seconds",
    "node_infiniband_local_ack_timeout_errors_total",
    "node_infiniband_np_cnp_packets_sent_total",
    "node_infiniband_np_ecn_marked_roce_packets_received_total",
    "node_infiniband_out_of_buffer_drops_total",
    "node_infiniband_out_of_sequence_packets_received_total",
    "node_infiniband_packet_sequence_errors_total",
    "node_infiniband_req_cqes_errors_total",
    "node_infiniband_req_cqes_flush_errors_total",
    "node_infiniband_req_remote_access_errors_total",
    "node_infiniband_req_remote_invalid_request_errors_total",
    "node_infiniband_resp_cqes_errors_total",
    "node_infiniband_resp_cqes_flush_errors_total",
    "node_infiniband_resp_local_length_errors_total",
    "node_infiniband_resp_remote_access_errors_total",
    "node_infiniband_rnr_nak_retry_packets_received_total",
    "node_infiniband_roce_adp_retransmits_timeout_total",
    "node_infiniband_roce_adp_retransmits_total",
    "node_infiniband_roce_slow_restart_cnps_total",
    "node_infiniband_roce_slow_restart_total",
    "node_infiniband_roce_slow_restart_used_total",
    "node_infiniband_rp_cnp_ignored_packets_received_total",
    "node_infiniband_rp_cnp_packets_handled_total",
    "node_infiniband_rx_atomic_requests_total",
    "node_infiniband_rx_dct_connect_requests_total",
    "node_infiniband_rx_icrc_encapsulated_errors_total",
    "node_infiniband_rx_read_requests_total",
    "node_infiniband_rx_write_requests_total",
    // timex: counts |offset| > 4 s readings, the kernel's overflow artefact (upstream issue 3764).
    "node_timex_offset_overflow_total",
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

/// Labels that node_exporter added after Debian's 1.5.0, by family: removed from ours before
/// the label sets are compared. Upstream's node_network_info has adminstate (from the IFF_UP
/// flag), 1.5.0's not.
/// `cntlid` on node_nvme_info came with 1.10.
const NEWER_LABELS_THAN_DEBIAN: [(&str, &str); 2] = [
    ("node_network_info", "adminstate"),
    ("node_nvme_info", "cntlid"),
];

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
            | "node_nf_conntrack_entries_limit"
            | "node_network_info"
            | "node_network_mtu_bytes"
            | "node_network_speed_bytes"
            | "node_network_flags"
            | "node_network_iface_id"
            | "node_network_protocol_type"
            | "node_cpu_info"
            | "node_cpu_flag_info"
            | "node_cpu_bug_info"
            | "node_cpu_isolated"
            | "node_cpu_frequency_max_hertz"
            | "node_cpu_frequency_min_hertz"
            | "node_cpu_scaling_governor"
            | "node_dmi_info"
            | "node_os_info"
            | "node_os_version"
            | "node_selinux_enabled"
            | "node_selinux_config_mode"
            | "node_selinux_current_mode"
            | "node_entropy_pool_size_bits"
            | "node_filefd_maximum"
            | "node_timex_tick_seconds"
            | "node_timex_status"
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
    } else if name.starts_with("node_sockstat_") && name.ends_with("_bytes") {
        // Socket buffer pages, moved by every connection on the host (parallel builds).
        64.0 * 4096.0
    } else if name.starts_with("node_sockstat_")
        || name == "node_nf_conntrack_entries"
        || name == "node_netstat_Tcp_CurrEstab"
        || name == "node_arp_entries"
    {
        // Socket and connection counts: TIME_WAIT sockets expire and appear on their own.
        64.0
    } else if name == "node_udp_queues" {
        // Bytes waiting in UDP sockets: a point sample.
        1024.0 * 1024.0
    } else if name == "node_filefd_allocated" {
        // Open files system-wide: our own process and any parallel build are in it.
        256.0
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
        .map(|(n, l, v)| ((n.clone(), l.clone()), *v))
        .collect()
}

/// Our series without the labels Debian's node_exporter does not have yet.
fn series_as_debian(name: &str, family: &ParsedFamily) -> Series {
    let newer: Vec<&str> = NEWER_LABELS_THAN_DEBIAN
        .iter()
        .filter(|(family, _)| *family == name)
        .map(|(_, label)| *label)
        .collect();
    series(family)
        .into_iter()
        .map(|((n, labels), v)| {
            let labels = labels
                .into_iter()
                .filter(|(k, _)| !newer.contains(&k.as_str()))
                .collect();
            ((n, labels), v)
        })
        .collect()
}

fn node_exporter_args() -> Vec<String> {
    let mut args = vec![
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
        // Upstream's default, which has more TcpExt fields than 1.5.0's.
        format!("--collector.netstat.fields={}", NETSTAT_FIELDS),
        // Debian's package reads /var/lib/prometheus/node-exporter by default; both read ours.
        textfile_fixture_flag(),
    ];
    args.extend(shared_collectors().map(|c| format!("--collector.{c}")));
    args.extend(SHARED_FLAGS.iter().map(|f| f.to_string()));
    args
}

const NETSTAT_FIELDS: &str = r"^(.*_(InErrors|InErrs)|Ip_Forwarding|Ip(6|Ext)_(InOctets|OutOctets)|Icmp6?_(InMsgs|OutMsgs)|TcpExt_(Listen.*|Syncookies.*|TCPSynRetrans|TCPTimeouts|TCPOFOQueue|TCPRcvQDrop)|Tcp_(ActiveOpens|InSegs|OutSegs|OutRsts|PassiveOpens|RetransSegs|CurrEstab)|Udp6?_(InDatagrams|OutDatagrams|NoPorts|RcvbufErrors|SndbufErrors))$";
const MOUNT_POINTS_EXCLUDE: &str =
    r"^/(dev|proc|run/credentials/.+|sys|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)";
const FS_TYPES_EXCLUDE: &str = r"^(autofs|binfmt_misc|bpf|cgroup2?|configfs|debugfs|devpts|devtmpfs|fusectl|hugetlbfs|iso9660|mqueue|nsfs|overlay|proc|procfs|pstore|rpc_pipefs|securityfs|selinuxfs|squashfs|erofs|sysfs|tracefs)$";

fn scrape(addr: std::net::SocketAddr) -> BTreeMap<String, ParsedFamily> {
    let body = common::testing::http_get(addr, "/metrics", &[])
        .expect("scrape failed")
        .text();
    parse_text(&body).expect("unparsable exposition")
}

#[test]
fn same_names_types_labels_and_values_as_node_exporter() {
    let node = NodeExporter::start(&node_exporter_args());
    let node_addr = node.addr;
    let textfile = textfile_fixture_flag();
    let mut our_args = vec!["--web.disable-exporter-metrics", textfile.as_str()];
    our_args.extend(SHARED_FLAGS);
    let ours = ExporterProcess::start(BINARY, &our_args, &[]);

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
        let (mut ours_s, first, second) = (
            series_as_debian(name, family),
            series(theirs),
            series(&after[name]),
        );
        if name.starts_with("node_scrape_collector_") {
            ours_s.retain(|(_, labels), _| {
                !labels.iter().any(|(k, v)| {
                    k == "collector" && COLLECTORS_NEWER_THAN_DEBIAN.contains(&v.as_str())
                })
            });
        }
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

fn textfile_fixture_flag() -> String {
    format!(
        "--collector.textfile.directory={}/tests/fixtures/full/textfile",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// Files for the textfile comparison that the fixtures do not have: node_exporter's edge cases
/// (each checked here against Debian's binary, which is the judge of what parses).
const TEXTFILE_EDGE_CASES: &[(&str, &str)] = &[
    ("trailing_blank.prom", "after_value 1 \n"),
    ("no_newline.prom", "no_newline 1"),
    ("carriage_return.prom", "cr 1\r\n"),
    ("out_of_range.prom", "big 1e999\n"),
    ("plus_nan.prom", "p +NaN\n"),
    ("timestamps.prom", "stamped 1 123\n"),
    ("type_after_sample.prom", "late 1\n# TYPE late gauge\n"),
    ("second_help.prom", "# HELP twice a\n# HELP twice b\ntwice 1\n"),
    ("hist_no_inf.prom", "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_sum 3\nh_count 4\n"),
    (
        "hist_own_inf.prom",
        "# TYPE h2 histogram\nh2_bucket{le=\"1\"} 2\nh2_bucket{le=\"+Inf\"} 3\nh2_sum 3\nh2_count 4\n",
    ),
    (
        "summary_repeated_quantile.prom",
        "# TYPE s summary\ns{quantile=\"0.5\"} 1\ns{quantile=\"0.5\"} 2\ns_sum 3\ns_count 4.9\n",
    ),
    ("gauge_histogram_type_only.prom", "# TYPE gh gauge_histogram\n"),
    ("labels_filled.prom", "mix{a=\"1\"} 1\nmix{b=\"2\"} 2\nmix 3\n"),
    ("duplicate.prom", "dup{a=\"1\"} 1\ndup{a=\"1\"} 2\n"),
    ("empty_value.prom", "emptyval{a=\"\"} 1\nemptyval 2\n"),
    ("escapes.prom", "# HELP esc a\\\\b\\nc\nesc{v=\"q\\\"\\\\\\n\"} 1\n"),
    ("spacing.prom", "  spaced { a = \"1\" , }\t2\n#HELP spaced Tight.\n"),
    ("numbers.prom", "n{k=\"a\"} .5\nn{k=\"b\"} -Inf\nn{k=\"c\"} 1E3\nn{k=\"d\"} +7\n"),
    ("t1_cross.prom", "# HELP cross_total X.\n# TYPE cross_total counter\ncross_total{f=\"1\"} 1\n"),
    ("t2_cross.prom", "# HELP cross_total X.\n# TYPE cross_total gauge\ncross_total{f=\"2\"} 2\n"),
    ("t3_cross.prom", "# HELP cross_total Y.\n# TYPE cross_total counter\ncross_total{f=\"3\"} 3\n"),
    ("u1_nohelp.prom", "merged{f=\"1\"} 1\n"),
    ("u2_nohelp.prom", "merged{f=\"2\"} 2\n"),
    ("v1_help.prom", "# HELP halfhelp H.\nhalfhelp{f=\"1\"} 1\n"),
    ("v2_nohelp.prom", "halfhelp{f=\"2\"} 2\n"),
];

/// HELP text per family name.
fn helps(body: &str) -> BTreeMap<String, String> {
    body.lines()
        .filter_map(|l| l.strip_prefix("# HELP "))
        .filter_map(|rest| rest.split_once(' '))
        .map(|(name, help)| (name.to_string(), help.to_string()))
        .collect()
}

/// The textfile collector alone, on the fixtures and the edge cases above, reached through one
/// glob over three directories: the same families, types, HELP texts, label sets and values as
/// Debian's node_exporter. Left out because 1.5.0 differs from current node_exporter or fails
/// hard: `\"` in HELP (1.5.0 refuses it, current accepts; we accept), a directory named x.prom
/// (1.5.0 reads it as empty, current refuses it; we refuse it), a label named `__x` and a file
/// name that is not UTF-8 (1.5.0 panics and exits; we refuse the file / write U+FFFD).
#[test]
fn textfile_families_match_node_exporter_on_the_same_files() {
    let root = std::env::temp_dir().join(format!("textfile-compat-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    common::testing::copy_tree(&fixtures.join("full/textfile"), &root.join("1-full"));
    common::testing::copy_tree(&fixtures.join("broken/textfile"), &root.join("2-broken"));
    // 1.5.0 reads a directory named x.prom as an empty file (its parser took any read error at
    // a line's start for the end); current node_exporter and we refuse it.
    std::fs::remove_dir_all(root.join("2-broken/directory.prom")).unwrap();
    std::fs::create_dir_all(root.join("3-edge")).unwrap();
    for (name, content) in TEXTFILE_EDGE_CASES {
        std::fs::write(root.join("3-edge").join(name), content).unwrap();
    }
    let directory = format!("--collector.textfile.directory={}/*", root.display());

    let node = NodeExporter::start(&[
        "--web.disable-exporter-metrics".to_string(),
        "--collector.disable-defaults".to_string(),
        "--collector.textfile".to_string(),
        directory.clone(),
    ]);
    let theirs_body = common::testing::http_get(node.addr, "/metrics", &[])
        .expect("scrape failed")
        .text();
    let ours = ExporterProcess::start(
        BINARY,
        &[
            "--web.disable-exporter-metrics",
            "--collector.disable-defaults",
            "--collector.textfile",
            &directory,
        ],
        &[],
    );
    let ours_body = ours.get("/metrics").text();
    let mut theirs = parse_text(&theirs_body).expect("node_exporter's exposition");
    let mut mine = parse_text(&ours_body).expect("our exposition");
    // Exporter self-metrics that 1.5.0 keeps despite --web.disable-exporter-metrics.
    for own in [
        "node_exporter_build_info",
        "promhttp_metric_handler_errors_total",
    ] {
        theirs.remove(own);
        mine.remove(own);
    }
    let (their_helps, our_helps) = (helps(&theirs_body), helps(&ours_body));

    let mut problems = Vec::new();
    let names = |m: &BTreeMap<String, ParsedFamily>| m.keys().cloned().collect::<BTreeSet<_>>();
    if names(&mine) != names(&theirs) {
        problems.push(format!(
            "families: only ours {:?}, only theirs {:?}",
            names(&mine).difference(&names(&theirs)).collect::<Vec<_>>(),
            names(&theirs).difference(&names(&mine)).collect::<Vec<_>>()
        ));
    }
    for (name, family) in mine.iter().filter(|(n, _)| theirs.contains_key(*n)) {
        let other = &theirs[name];
        if family.kind != other.kind {
            problems.push(format!("{name}: type {} vs {}", family.kind, other.kind));
        }
        // node_exporter prefixes its health series' help with "node_exporter: ".
        let their_help = their_helps
            .get(name)
            .map(|h| h.trim_start_matches("node_exporter: "));
        if our_helps.get(name).map(String::as_str) != their_help {
            problems.push(format!(
                "{name}: help {:?} vs {their_help:?}",
                our_helps.get(name)
            ));
        }
        if name == "node_scrape_collector_duration_seconds" {
            continue;
        }
        let (a, b) = (series(family), series(other));
        let same = a.len() == b.len()
            && a.iter().all(|(k, v)| {
                b.get(k)
                    .is_some_and(|w| v == w || (v.is_nan() && w.is_nan()))
            });
        if !same {
            problems.push(format!("{name}: ours {a:?}\n  theirs {b:?}"));
        }
    }
    assert!(
        mine.len() > 20 && theirs_body.contains("node_textfile_scrape_error 1"),
        "too little compared:\n{ours_body}"
    );
    assert!(
        problems.is_empty(),
        "{} differences:\n{}",
        problems.len(),
        problems.join("\n")
    );
    drop(ours);
    std::fs::remove_dir_all(&root).unwrap();
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
    let node = NodeExporter::start(&args);
    let node_addr = node.addr;
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
        let (a, mut b) = (series_as_debian(name, family), series(their_family));
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

/// Defaults against defaults, as a user swaps one for the other: every family Debian's
/// node_exporter emits with its default collectors on this machine, host-exporter emits too,
/// under the same type. The only families it may lack are node_exporter's own runtime and
/// handler series, which describe the Go program, not the host (host-exporter has `process_*`
/// and `host_exporter_build_info` for itself). Values are compared in the test above.
#[test]
fn defaults_against_defaults_every_node_exporter_family_is_ours() {
    let not_ours = |name: &str| {
        name.starts_with("go_")
            || name.starts_with("promhttp_")
            || name == "node_exporter_build_info"
    };
    let node = NodeExporter::start(&[]);
    let node_addr = node.addr;
    let ours = ExporterProcess::start(BINARY, &[], &[]);
    let theirs = scrape(node_addr);
    let mine = scrape(ours.addr);
    let mut problems = Vec::new();
    for (name, family) in theirs.iter().filter(|(n, _)| !not_ours(n)) {
        match mine.get(name) {
            None => problems.push(format!("{name}: only node_exporter has it")),
            Some(f) if f.kind != family.kind => problems.push(format!(
                "{name}: type {} vs node_exporter's {}",
                f.kind, family.kind
            )),
            Some(_) => {}
        }
    }
    let compared = theirs.keys().filter(|n| !not_ours(n)).count();
    assert!(compared > 100, "only {compared} families compared");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
