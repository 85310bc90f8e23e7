//! The network collectors against Debian's node_exporter 1.5.0 on the same fixture tree: the
//! hand-made parts of the fixture (a bond with a slave down, IPVS services, an InfiniBand HCA,
//! a Fibre Channel host) have no live counterpart on a test machine, so both exporters read the
//! fixture and every family both emit must match exactly: type, label sets and values.

use common::testing::{http_get, parse_text, ExporterProcess, NodeExporter, ParsedFamily};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const BINARY: &str = env!("CARGO_BIN_EXE_host-exporter");

const COLLECTORS: [&str; 11] = [
    "arp",
    "conntrack",
    "netstat",
    "sockstat",
    "softnet",
    "udp_queues",
    "ipvs",
    "netclass",
    "bonding",
    "infiniband",
    "fibrechannel",
];

/// Upstream's `--collector.netstat.fields` default, given to both (1.5.0's has fewer fields).
const NETSTAT_FIELDS: &str = r"^(.*_(InErrors|InErrs)|Ip_Forwarding|Ip(6|Ext)_(InOctets|OutOctets)|Icmp6?_(InMsgs|OutMsgs)|TcpExt_(Listen.*|Syncookies.*|TCPSynRetrans|TCPTimeouts|TCPOFOQueue|TCPRcvQDrop)|Tcp_(ActiveOpens|InSegs|OutSegs|OutRsts|PassiveOpens|RetransSegs|CurrEstab)|Udp6?_(InDatagrams|OutDatagrams|NoPorts|RcvbufErrors|SndbufErrors))$";

/// Families upstream emits and 1.5.0 does not: the later softnet columns and the InfiniBand
/// hw_counters (node_infiniband_ families that 1.5.0 lacks are all hw_counters).
fn newer_than_debian(name: &str, theirs: &BTreeMap<String, ParsedFamily>) -> bool {
    matches!(
        name,
        "node_softnet_backlog_len"
            | "node_softnet_cpu_collision_total"
            | "node_softnet_flow_limit_count_total"
            | "node_softnet_received_rps_total"
    ) || (name.starts_with("node_infiniband_") && !theirs.contains_key(name) && {
        // Only the families read from hw_counters may be missing from 1.5.0.
        let hw_counter_families = [
            "duplicate_requests",
            "implied_nak",
            "lifespan",
            "local_ack_timeout",
            "np_",
            "out_of_",
            "packet_sequence",
            "req_",
            "resp_",
            "rnr_nak",
            "roce_",
            "rp_cnp",
            "rx_",
        ];
        let rest = &name["node_infiniband_".len()..];
        hw_counter_families.iter().any(|p| rest.starts_with(p))
    })
}

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/full")
}

fn scrape(addr: std::net::SocketAddr) -> BTreeMap<String, ParsedFamily> {
    parse_text(&http_get(addr, "/metrics", &[]).expect("scrape").text()).expect("exposition")
}

#[test]
fn the_fixture_reads_as_node_exporter_reads_it() {
    let root = fixture();
    let mut args = vec![
        format!("--path.procfs={}", root.join("proc").display()),
        format!("--path.sysfs={}", root.join("sys").display()),
        format!("--collector.netstat.fields={NETSTAT_FIELDS}"),
        "--web.disable-exporter-metrics".to_string(),
        "--collector.disable-defaults".to_string(),
    ];
    args.extend(COLLECTORS.iter().map(|c| format!("--collector.{c}")));

    let node = NodeExporter::start(&args);
    let node_addr = node.addr;
    let our_args: Vec<&str> = args.iter().map(String::as_str).collect();
    let ours = ExporterProcess::start(BINARY, &our_args, &[]);
    let theirs = scrape(node_addr);
    let mine = scrape(ours.addr);

    let mut problems = Vec::new();
    let mut compared = 0;
    let skip = |name: &str| name.starts_with("node_scrape_collector") || !name.starts_with("node_");
    for (name, family) in mine.iter().filter(|(n, _)| !skip(n)) {
        let Some(their_family) = theirs.get(name) else {
            if !newer_than_debian(name, &theirs) {
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
        let normalize = |f: &ParsedFamily| -> BTreeMap<Vec<(String, String)>, f64> {
            f.samples
                .iter()
                .map(|(_, labels, v)| {
                    // Upstream's node_network_info has adminstate; 1.5.0's does not.
                    let labels = labels
                        .iter()
                        .filter(|(k, _)| !(name == "node_network_info" && k == "adminstate"))
                        .cloned()
                        .collect();
                    (labels, *v)
                })
                .collect()
        };
        let (ours_s, theirs_s) = (normalize(family), normalize(their_family));
        let (a, b): (BTreeSet<_>, BTreeSet<_>) =
            (ours_s.keys().collect(), theirs_s.keys().collect());
        if a != b {
            problems.push(format!(
                "{name}: label sets differ: only ours {:?}, only theirs {:?}",
                a.difference(&b).collect::<Vec<_>>(),
                b.difference(&a).collect::<Vec<_>>()
            ));
            continue;
        }
        for (labels, value) in &ours_s {
            compared += 1;
            if theirs_s[labels] != *value {
                problems.push(format!("{name}{labels:?}: {value} vs {}", theirs_s[labels]));
            }
        }
    }
    for name in theirs
        .keys()
        .filter(|n| !skip(n) && *n != "node_exporter_build_info")
    {
        if !mine.contains_key(name) {
            problems.push(format!("{name}: only node_exporter emits it"));
        }
    }
    assert!(compared > 200, "only {compared} samples compared");
    assert!(
        problems.is_empty(),
        "{} differences:\n{}",
        problems.len(),
        problems.join("\n")
    );
}
