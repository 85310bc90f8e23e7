//! Protocol counters from /proc/net/netstat, /proc/net/snmp and /proc/net/snmp6
//! (`node_netstat_Tcp_InSegs`, `node_netstat_Ip6_InOctets`, ...), untyped as in node_exporter,
//! limited to the fields matching `--collector.netstat.fields` (node_exporter's default).

use crate::kept_file::KeptFile;
use crate::paths::Paths;
use common::{log, BlockingCollector, CollectResult, MetricFamily, MetricType};
use regex_lite::Regex;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

/// node_exporter's default for `--collector.netstat.fields`.
pub const DEFAULT_FIELDS: &str = r"^(.*_(InErrors|InErrs)|Ip_Forwarding|Ip(6|Ext)_(InOctets|OutOctets)|Icmp6?_(InMsgs|OutMsgs)|TcpExt_(Listen.*|Syncookies.*|TCPSynRetrans|TCPTimeouts|TCPOFOQueue|TCPRcvQDrop)|Tcp_(ActiveOpens|InSegs|OutSegs|OutRsts|PassiveOpens|RetransSegs|CurrEstab)|Udp6?_(InDatagrams|OutDatagrams|NoPorts|RcvbufErrors|SndbufErrors))$";

pub struct Netstat {
    /// netstat and snmp: pairs of header and value lines. snmp6: a name and a value per line.
    pairs: [KeptFile; 2],
    snmp6: KeptFile,
    fields: Regex,
    /// Verdicts by field: the same few hundred names come every scrape, and regex-lite is slow.
    verdicts: Mutex<HashMap<String, bool>>,
}

impl Netstat {
    pub fn new(paths: &Paths, fields: Regex) -> Self {
        Netstat {
            pairs: [
                KeptFile::new(paths.proc("net/netstat")),
                KeptFile::new(paths.proc("net/snmp")),
            ],
            snmp6: KeptFile::new(paths.proc("net/snmp6")),
            fields,
            verdicts: Mutex::new(HashMap::new()),
        }
    }

    fn wanted(&self, key: &str) -> bool {
        let mut verdicts = self.verdicts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(v) = verdicts.get(key) {
            return *v;
        }
        let verdict = self.fields.is_match(key);
        // The kernel's field names are a fixed set; a bound all the same.
        if verdicts.len() < 4096 {
            verdicts.insert(key.to_string(), verdict);
        }
        verdict
    }
}

impl BlockingCollector for Netstat {
    fn collect(&self) -> CollectResult {
        // By key, so that a name two files share is reported once (snmp's after netstat's, as
        // node_exporter merges them).
        let mut values: BTreeMap<String, f64> = BTreeMap::new();
        let mut add = |key: String, value: &str, path: &std::path::Path| {
            if !self.wanted(&key) {
                return;
            }
            match value.parse::<f64>() {
                Ok(v) => {
                    values.insert(key, v);
                }
                Err(_) => log::warn(
                    "skipping unparsable netstat value",
                    &[
                        ("path", &path.display().to_string()),
                        ("field", &key),
                        ("value", value),
                    ],
                ),
            }
        };
        for file in &self.pairs {
            let Some(text) = file.read_if_present()? else {
                continue;
            };
            let mut lines = text.lines().filter(|l| !l.trim().is_empty());
            while let Some(names) = lines.next() {
                let values_line = lines.next().unwrap_or("");
                let names: Vec<&str> = names.split_ascii_whitespace().collect();
                let numbers: Vec<&str> = values_line.split_ascii_whitespace().collect();
                let protocol = names.first().and_then(|p| p.strip_suffix(':'));
                match protocol {
                    Some(protocol) if names.len() == numbers.len() && numbers[0] == names[0] => {
                        for (name, value) in names.iter().zip(&numbers).skip(1) {
                            add(format!("{protocol}_{name}"), value, file.path());
                        }
                    }
                    _ => log::warn(
                        "skipping unparsable netstat lines",
                        &[
                            ("path", &file.path().display().to_string()),
                            ("line", &names.join(" ")),
                        ],
                    ),
                }
            }
        }
        if let Some(text) = self.snmp6.read_if_present()? {
            for line in text.lines() {
                let mut fields = line.split_ascii_whitespace();
                let (Some(name), Some(value)) = (fields.next(), fields.next()) else {
                    continue;
                };
                // Ip6InReceives → Ip6_InReceives: the protocol ends at its first "6".
                if let Some(six) = name.find('6') {
                    let (protocol, field) = name.split_at(six + 1);
                    add(format!("{protocol}_{field}"), value, self.snmp6.path());
                }
            }
        }
        Ok(values
            .into_iter()
            .map(|(key, value)| {
                let help = format!("Statistic {}.", key.replacen('_', "", 1));
                MetricFamily::new(format!("node_netstat_{key}"), help, MetricType::Untyped)
                    .with_value(value)
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(netstat: &str, snmp: &str, snmp6: Option<&str>, fields: &str) -> Vec<(String, f64)> {
        let dir = std::env::temp_dir().join(format!(
            "netstat-{}-{}",
            std::process::id(),
            netstat.len() + snmp.len() + fields.len()
        ));
        std::fs::create_dir_all(dir.join("proc/net")).unwrap();
        std::fs::write(dir.join("proc/net/netstat"), netstat).unwrap();
        std::fs::write(dir.join("proc/net/snmp"), snmp).unwrap();
        if let Some(snmp6) = snmp6 {
            std::fs::write(dir.join("proc/net/snmp6"), snmp6).unwrap();
        }
        let paths = Paths {
            procfs: dir.join("proc"),
            sysfs: dir.join("sys"),
            rootfs: dir.clone(),
            udev_data: dir.join("udev"),
        };
        let families = Netstat::new(&paths, Regex::new(fields).unwrap())
            .collect()
            .unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        families
            .iter()
            .map(|f| {
                assert_eq!(f.kind, MetricType::Untyped);
                (f.name.to_string(), f.samples[0].value)
            })
            .collect()
    }

    const NETSTAT: &str = "TcpExt: SyncookiesSent ListenDrops TCPTimeouts PruneCalled\nTcpExt: 1 2 3 4\nIpExt: InOctets OutOctets\nIpExt: 100 200\n";
    const SNMP: &str = "Ip: Forwarding DefaultTTL\nIp: 1 64\nTcp: MaxConn CurrEstab InErrs\nTcp: -1 5 x\nUdp: InDatagrams NoPorts\nUdp: 7\n";
    const SNMP6: &str = "Ip6InReceives                   \t31\nIp6InOctets 2960\nUdp6InDatagrams 4\nIcmp6InMsgs 1\n";

    #[test]
    fn the_default_fields_are_reported_and_bad_lines_skipped() {
        let got = collect(NETSTAT, SNMP, Some(SNMP6), DEFAULT_FIELDS);
        let expected: Vec<(String, f64)> = [
            ("node_netstat_Icmp6_InMsgs", 1.0),
            ("node_netstat_Ip6_InOctets", 2960.0),
            ("node_netstat_IpExt_InOctets", 100.0),
            ("node_netstat_IpExt_OutOctets", 200.0),
            ("node_netstat_Ip_Forwarding", 1.0),
            ("node_netstat_TcpExt_ListenDrops", 2.0),
            ("node_netstat_TcpExt_SyncookiesSent", 1.0),
            ("node_netstat_TcpExt_TCPTimeouts", 3.0),
            // InErrs "x" is skipped; Udp's value line is short: the whole pair is skipped.
            ("node_netstat_Tcp_CurrEstab", 5.0),
            ("node_netstat_Udp6_InDatagrams", 4.0),
        ]
        .into_iter()
        .map(|(n, v)| (n.to_string(), v))
        .collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn the_fields_flag_selects_and_snmp6_may_be_absent() {
        let got = collect(NETSTAT, SNMP, None, "^Tcp_.*");
        assert_eq!(
            got,
            [
                ("node_netstat_Tcp_CurrEstab".to_string(), 5.0),
                ("node_netstat_Tcp_MaxConn".to_string(), -1.0)
            ]
        );
        assert!(collect("garbage", "", None, ".*").is_empty());
    }
}
