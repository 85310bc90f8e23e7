//! IPVS (the kernel's layer-4 load balancer) from /proc/net/ip_vs_stats and /proc/net/ip_vs:
//! totals (`node_ipvs_connections_total`, ...) and per backend connections and weight
//! (`node_ipvs_backend_connections_active`, ...), labelled with `--collector.ipvs.backend-labels`
//! and summed over backends that share those labels, as node_exporter does. Without the ip_vs
//! module the files are absent and nothing is reported.

use crate::kept_file::KeptFile;
use crate::paths::Paths;
use common::{log, BlockingCollector, CollectResult, MetricFamily};
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Every backend label, in node_exporter's order: the default of `--collector.ipvs.backend-labels`.
pub const ALL_BACKEND_LABELS: [&str; 6] = [
    "local_address",
    "local_port",
    "remote_address",
    "remote_port",
    "proto",
    "local_mark",
];

pub struct Ipvs {
    stats: KeptFile,
    backends: KeptFile,
    /// Indices into `ALL_BACKEND_LABELS`, sorted by label name (the output order).
    labels: Vec<usize>,
}

/// The flag's value as label indices; an unknown name is an error naming it.
pub fn parse_backend_labels(flag: &str) -> Result<Vec<usize>, String> {
    let mut labels = Vec::new();
    for name in flag.split(',').filter(|n| !n.is_empty()) {
        match ALL_BACKEND_LABELS.iter().position(|l| *l == name) {
            Some(i) if !labels.contains(&i) => labels.push(i),
            Some(_) => {}
            None => return Err(format!("unknown IPVS backend label {name:?}")),
        }
    }
    labels.sort_by_key(|&i| ALL_BACKEND_LABELS[i]);
    Ok(labels)
}

impl Ipvs {
    pub fn new(paths: &Paths, labels: Vec<usize>) -> Self {
        Ipvs {
            stats: KeptFile::new(paths.proc("net/ip_vs_stats")),
            backends: KeptFile::new(paths.proc("net/ip_vs")),
            labels,
        }
    }
}

const TOTALS: [(&str, &str); 5] = [
    ("connections_total", "The total number of connections made."),
    (
        "incoming_packets_total",
        "The total number of incoming packets.",
    ),
    (
        "outgoing_packets_total",
        "The total number of outgoing packets.",
    ),
    ("incoming_bytes_total", "The total amount of incoming data."),
    ("outgoing_bytes_total", "The total amount of outgoing data."),
];

impl BlockingCollector for Ipvs {
    fn collect(&self) -> CollectResult {
        let Some(stats) = self.stats.read_if_present()? else {
            return Ok(vec![]);
        };
        // Two header lines, then the five totals in hex.
        let totals: Vec<u64> = stats
            .lines()
            .nth(2)
            .map(|l| {
                l.split_ascii_whitespace()
                    .map(|v| u64::from_str_radix(v, 16))
                    .collect::<Result<_, _>>()
            })
            .and_then(Result::ok)
            .filter(|v: &Vec<u64>| v.len() == TOTALS.len())
            .ok_or_else(|| {
                anyhow::anyhow!("{}: corrupt totals line", self.stats.path().display())
            })?;
        let mut families: Vec<MetricFamily> = TOTALS
            .iter()
            .zip(totals)
            .map(|((name, help), v)| {
                MetricFamily::counter(format!("node_ipvs_{name}"), *help).with_value(v as f64)
            })
            .collect();
        let Some(text) = self.backends.read_if_present()? else {
            return Ok(families);
        };
        let path = self.backends.path().display().to_string();
        // Label values (in output order) → active, inactive, weight.
        let mut sums: BTreeMap<Vec<String>, [u64; 3]> = BTreeMap::new();
        for backend in parse_backends(&text, &path) {
            let values = self
                .labels
                .iter()
                .map(|&i| backend.label(ALL_BACKEND_LABELS[i]))
                .collect();
            let sum = sums.entry(values).or_default();
            sum[0] += backend.active;
            sum[1] += backend.inactive;
            sum[2] += backend.weight;
        }
        let mut backend_families = [
            (
                "node_ipvs_backend_connections_active",
                "The current active connections by local and remote address.",
            ),
            (
                "node_ipvs_backend_connections_inactive",
                "The current inactive connections by local and remote address.",
            ),
            (
                "node_ipvs_backend_weight",
                "The current backend weight by local and remote address.",
            ),
        ]
        .map(|(name, help)| MetricFamily::gauge(name, help));
        for (values, sum) in &sums {
            let labels: Vec<(&str, &str)> = self
                .labels
                .iter()
                .zip(values)
                .map(|(&i, v)| (ALL_BACKEND_LABELS[i], v.as_str()))
                .collect();
            for (family, value) in backend_families.iter_mut().zip(sum) {
                family.push(&labels, *value as f64);
            }
        }
        families.extend(backend_families);
        Ok(families)
    }
}

struct Backend {
    proto: String,
    local_address: String,
    local_port: u16,
    local_mark: String,
    remote_address: String,
    remote_port: u16,
    weight: u64,
    active: u64,
    inactive: u64,
}

impl Backend {
    fn label(&self, name: &str) -> String {
        match name {
            "local_address" => self.local_address.clone(),
            "local_port" => self.local_port.to_string(),
            "remote_address" => self.remote_address.clone(),
            "remote_port" => self.remote_port.to_string(),
            "proto" => self.proto.clone(),
            _ => self.local_mark.clone(),
        }
    }
}

/// `C0A80016:0CEA` (IPv4 in hex) or `[2620:0000:...:0001]:0050` (IPv6) → address text and port.
fn parse_address(text: &str) -> Option<(String, u16)> {
    let (address, port) = text.rsplit_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let address = match address.strip_prefix('[').and_then(|a| a.strip_suffix(']')) {
        Some(v6) => v6.parse::<Ipv6Addr>().ok()?.to_string(),
        None if address.len() == 8 => {
            Ipv4Addr::from(u32::from_str_radix(address, 16).ok()?).to_string()
        }
        None => return None,
    };
    Some((address, port))
}

/// The backends of /proc/net/ip_vs: each `->` line under its service's `TCP`, `UDP` or `FWM`
/// line. A line that does not parse is skipped and logged; so are the backends of a service
/// line that does not parse.
fn parse_backends(text: &str, path: &str) -> Vec<Backend> {
    let mut backends = Vec::new();
    // (proto, local address, local port, mark) of the current service.
    let mut service: Option<(String, String, u16, String)> = None;
    let skip = |line: &str| {
        log::warn(
            "skipping unparsable ip_vs line",
            &[("path", path), ("line", line)],
        );
    };
    for line in text.lines() {
        let fields: Vec<&str> = line.split_ascii_whitespace().collect();
        match fields.as_slice() {
            [] | ["IP", ..] | ["Prot", ..] | ["->", "RemoteAddress:Port", ..] => {}
            [proto @ ("TCP" | "UDP" | "SCTP"), address, ..] => {
                service =
                    parse_address(address).map(|(a, p)| (proto.to_string(), a, p, String::new()));
                if service.is_none() {
                    skip(line);
                }
            }
            ["FWM", mark, ..] => {
                service = Some(("FWM".into(), String::new(), 0, mark.to_string()));
            }
            ["->", remote, _forward, weight, active, inactive, ..] => {
                let parsed = (
                    service.as_ref(),
                    parse_address(remote),
                    weight.parse::<u64>(),
                    active.parse::<u64>(),
                    inactive.parse::<u64>(),
                );
                match parsed {
                    (
                        Some((proto, local_address, local_port, local_mark)),
                        Some((remote_address, remote_port)),
                        Ok(weight),
                        Ok(active),
                        Ok(inactive),
                    ) => backends.push(Backend {
                        proto: proto.clone(),
                        local_address: local_address.clone(),
                        local_port: *local_port,
                        local_mark: local_mark.clone(),
                        remote_address,
                        remote_port,
                        weight,
                        active,
                        inactive,
                    }),
                    _ => skip(line),
                }
            }
            _ => skip(line),
        }
    }
    backends
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP_VS: &str = "IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port Forward Weight ActiveConn InActConn
TCP  C0A80016:0CEA wlc
  -> C0A85216:0CEA      Tunnel  100    248        2
  -> C0A85318:0CEA      Tunnel  100    248        2
TCP  C0A80039:0CEA wlc
  -> C0A85216:0CEA      Tunnel  0      0          0
FWM  10001000 wlc
  -> C0A8321A:0CEA      Route   0      0          1
  -> C0A83215:0CEA      Route   0      0          2
UDP  [2620:0000:0000:0000:0000:0000:0000:0001]:0050 sh
  -> [2620:0000:0000:0000:0000:0000:0000:0002]:0050      Route   1      0          0
  -> C0A8321A:zz      Route   0      0          1
TCP  nothex:0050 wlc
  -> C0A85216:0CEA      Tunnel  100    248        2
";

    const STATS: &str = "   Total Incoming Outgoing         Incoming         Outgoing
   Conns  Packets  Packets            Bytes            Bytes
 16AA370 E33656E5        0    51D8C8883AB3        0
";

    fn collect(labels: &str, stats: Option<&str>) -> Vec<MetricFamily> {
        let dir =
            std::env::temp_dir().join(format!("ipvs-{}-{}", std::process::id(), labels.len()));
        std::fs::create_dir_all(dir.join("proc/net")).unwrap();
        if let Some(stats) = stats {
            std::fs::write(dir.join("proc/net/ip_vs_stats"), stats).unwrap();
            std::fs::write(dir.join("proc/net/ip_vs"), IP_VS).unwrap();
        }
        let paths = Paths {
            procfs: dir.join("proc"),
            sysfs: dir.join("sys"),
            rootfs: dir.clone(),
            udev_data: dir.join("udev"),
        };
        let result = Ipvs::new(&paths, parse_backend_labels(labels).unwrap()).collect();
        std::fs::remove_dir_all(&dir).unwrap();
        result.unwrap()
    }

    fn rows(family: &MetricFamily) -> Vec<String> {
        family
            .samples
            .iter()
            .map(|s| {
                let labels: Vec<String> =
                    s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!("{} {}", labels.join(","), s.value)
            })
            .collect()
    }

    #[test]
    fn totals_and_backends_with_every_label() {
        let families = collect(&ALL_BACKEND_LABELS.join(","), Some(STATS));
        assert_eq!(families[0].name, "node_ipvs_connections_total");
        assert_eq!(families[0].samples[0].value, 23765872.0);
        assert_eq!(families[3].samples[0].value, 89991519156915.0);
        let active = families
            .iter()
            .find(|f| f.name == "node_ipvs_backend_connections_active")
            .unwrap();
        assert_eq!(
            rows(active),
            [
                "local_address=,local_mark=10001000,local_port=0,proto=FWM,remote_address=192.168.50.21,remote_port=3306 0",
                "local_address=,local_mark=10001000,local_port=0,proto=FWM,remote_address=192.168.50.26,remote_port=3306 0",
                "local_address=192.168.0.22,local_mark=,local_port=3306,proto=TCP,remote_address=192.168.82.22,remote_port=3306 248",
                "local_address=192.168.0.22,local_mark=,local_port=3306,proto=TCP,remote_address=192.168.83.24,remote_port=3306 248",
                "local_address=192.168.0.57,local_mark=,local_port=3306,proto=TCP,remote_address=192.168.82.22,remote_port=3306 0",
                "local_address=2620::1,local_mark=,local_port=80,proto=UDP,remote_address=2620::2,remote_port=80 0",
            ]
        );
    }

    #[test]
    fn fewer_labels_sum_the_backends_that_share_them() {
        let families = collect("proto,local_port", Some(STATS));
        let inactive = families
            .iter()
            .find(|f| f.name == "node_ipvs_backend_connections_inactive")
            .unwrap();
        assert_eq!(
            rows(inactive),
            [
                "local_port=0,proto=FWM 3",
                "local_port=3306,proto=TCP 4",
                "local_port=80,proto=UDP 0"
            ]
        );
        let weight = families
            .iter()
            .find(|f| f.name == "node_ipvs_backend_weight")
            .unwrap();
        assert_eq!(rows(weight)[1], "local_port=3306,proto=TCP 200");
    }

    #[test]
    fn no_module_reports_nothing_and_bad_flags_or_totals_fail() {
        assert!(collect("proto", None).is_empty());
        assert!(parse_backend_labels("proto,nosuch")
            .unwrap_err()
            .contains("nosuch"));
        let dir = std::env::temp_dir().join(format!("ipvs-bad-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("proc/net")).unwrap();
        std::fs::write(dir.join("proc/net/ip_vs_stats"), "truncated\n").unwrap();
        let paths = Paths {
            procfs: dir.join("proc"),
            sysfs: dir.join("sys"),
            rootfs: dir.clone(),
            udev_data: dir.join("udev"),
        };
        let err = Ipvs::new(&paths, vec![]).collect().unwrap_err().to_string();
        assert!(err.contains("ip_vs_stats"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
