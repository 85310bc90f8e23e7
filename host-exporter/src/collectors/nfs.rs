//! The NFS client's RPC statistics from /proc/net/rpc/nfs, in node_exporter's names: packets
//! by transport, TCP connections, RPC calls, retransmissions and credential refreshes, and
//! `node_nfs_requests_total{method,proto}` for every NFSv2, v3 and v4 procedure (zero for a
//! version the kernel has no line for, as node_exporter reports it).
//! The file exists once the nfs module is loaded; without it there is nothing to report.

use crate::kept_file::KeptFile;
use crate::paths::Paths;
use common::{BlockingCollector, CollectResult, MetricFamily};

pub struct Nfs {
    file: KeptFile,
}

impl Nfs {
    pub fn new(paths: &Paths) -> Self {
        Nfs {
            file: KeptFile::new(paths.proc("net/rpc/nfs")),
        }
    }
}

/// Procedure names in the kernel's order on each `procN` line, spelt as node_exporter's label
/// values (procfs' field names).
const V2: [&str; 18] = [
    "Null", "GetAttr", "SetAttr", "Root", "Lookup", "ReadLink", "Read", "WrCache", "Write",
    "Create", "Remove", "Rename", "Link", "SymLink", "MkDir", "RmDir", "ReadDir", "FsStat",
];
const V3: [&str; 22] = [
    "Null",
    "GetAttr",
    "SetAttr",
    "Lookup",
    "Access",
    "ReadLink",
    "Read",
    "Write",
    "Create",
    "MkDir",
    "SymLink",
    "MkNod",
    "Remove",
    "RmDir",
    "Rename",
    "Link",
    "ReadDir",
    "ReadDirPlus",
    "FsStat",
    "FsInfo",
    "PathConf",
    "Commit",
];
/// The first 59 client NFSv4 operations, in the kernel's order (NFSPROC4_CLNT_*: LAYOUTGET
/// comes before GETDEVICEINFO); newer kernels count more, which node_exporter does not report.
const V4: [&str; 59] = [
    "Null",
    "Read",
    "Write",
    "Commit",
    "Open",
    "OpenConfirm",
    "OpenNoattr",
    "OpenDowngrade",
    "Close",
    "Setattr",
    "FsInfo",
    "Renew",
    "SetClientID",
    "SetClientIDConfirm",
    "Lock",
    "Lockt",
    "Locku",
    "Access",
    "Getattr",
    "Lookup",
    "LookupRoot",
    "Remove",
    "Rename",
    "Link",
    "Symlink",
    "Create",
    "Pathconf",
    "StatFs",
    "ReadLink",
    "ReadDir",
    "ServerCaps",
    "DelegReturn",
    "GetACL",
    "SetACL",
    "FsLocations",
    "ReleaseLockowner",
    "Secinfo",
    "FsidPresent",
    "ExchangeID",
    "CreateSession",
    "DestroySession",
    "Sequence",
    "GetLeaseTime",
    "ReclaimComplete",
    "LayoutGet",
    "GetDeviceInfo",
    "LayoutCommit",
    "LayoutReturn",
    "SecinfoNoName",
    "TestStateID",
    "FreeStateID",
    "GetDeviceList",
    "BindConnToSession",
    "DestroyClientID",
    "Seek",
    "Allocate",
    "DeAllocate",
    "LayoutStats",
    "Clone",
];

/// What /proc/net/rpc/nfs says; a line the kernel did not write counts zeros.
#[derive(Debug, PartialEq)]
pub struct ClientStats {
    /// udp packets, tcp packets, tcp connections.
    pub net: [u64; 3],
    /// calls, retransmissions, credential refreshes.
    pub rpc: [u64; 3],
    pub v2: [u64; 18],
    pub v3: [u64; 22],
    pub v4: [u64; 59],
}

impl BlockingCollector for Nfs {
    fn collect(&self) -> CollectResult {
        let Some(text) = self.file.read_if_present()? else {
            return Ok(vec![]);
        };
        let s = parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", self.file.path().display()))?;
        let mut packets = MetricFamily::counter(
            "node_nfs_packets_total",
            "Total NFSd network packets (sent+received) by protocol type.",
        );
        packets.push(&[("protocol", "udp")], s.net[0] as f64);
        packets.push(&[("protocol", "tcp")], s.net[1] as f64);
        let mut requests = MetricFamily::counter(
            "node_nfs_requests_total",
            "Number of NFS procedures invoked.",
        );
        for (proto, names, values) in [
            ("2", &V2[..], &s.v2[..]),
            ("3", &V3[..], &s.v3[..]),
            ("4", &V4[..], &s.v4[..]),
        ] {
            for (method, value) in names.iter().zip(values) {
                requests.push(&[("method", *method), ("proto", proto)], *value as f64);
            }
        }
        Ok(vec![
            MetricFamily::counter(
                "node_nfs_connections_total",
                "Total number of NFSd TCP connections.",
            )
            .with_value(s.net[2] as f64),
            packets,
            MetricFamily::counter(
                "node_nfs_rpc_authentication_refreshes_total",
                "Number of RPC authentication refreshes performed.",
            )
            .with_value(s.rpc[2] as f64),
            MetricFamily::counter(
                "node_nfs_rpc_retransmissions_total",
                "Number of RPC transmissions performed.",
            )
            .with_value(s.rpc[1] as f64),
            MetricFamily::counter("node_nfs_rpcs_total", "Total number of RPCs performed.")
                .with_value(s.rpc[0] as f64),
            requests,
        ])
    }
}

/// Parses /proc/net/rpc/nfs. As in node_exporter, any line it cannot read fails the whole
/// file rather than report some counters as zero.
pub fn parse(text: &str) -> Result<ClientStats, String> {
    let mut s = ClientStats {
        net: [0; 3],
        rpc: [0; 3],
        v2: [0; 18],
        v3: [0; 22],
        v4: [0; 59],
    };
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut words = line.split_ascii_whitespace();
        let key = words.next().unwrap_or_default();
        let values = words
            .map(str::parse::<u64>)
            .collect::<Result<Vec<u64>, _>>()
            .map_err(|_| format!("not a number in line {line:?}"))?;
        if values.is_empty() {
            return Err(format!("no values in line {line:?}"));
        }
        match key {
            // net <packets> <udp> <tcp> <tcp connections>
            "net" if values.len() == 4 => s.net.copy_from_slice(&values[1..]),
            "rpc" if values.len() == 3 => s.rpc.copy_from_slice(&values),
            "proc2" => counted(&values, 18, &mut s.v2)?,
            "proc3" => counted(&values, 22, &mut s.v3)?,
            "proc4" => counted(&values, 0, &mut s.v4)?,
            _ => return Err(format!("unexpected line {line:?}")),
        }
    }
    Ok(s)
}

/// A `procN <count> <v1> ... <vcount>` line: the count must match, and be at least `min`.
/// Older kernels count fewer v4 operations (the rest stay zero); newer ones count more.
fn counted(values: &[u64], min: usize, into: &mut [u64]) -> Result<(), String> {
    let count = values[0] as usize;
    if values.len() - 1 != count || count < min {
        return Err(format!("procedure count {count} does not match its line"));
    }
    for (slot, v) in into.iter_mut().zip(&values[1..]) {
        *slot = *v;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLIENT: &str = "net 70 70 69 45
rpc 1218785755 374636 1218815394
proc2 18 16 57 74 52 71 73 45 86 0 52 83 61 17 53 50 23 70 82
proc3 22 0 1061909262 48906 4077635 117661341 5 29391916 2570425 2993289 590 0 0 7815 15 1130 0 3983 92385 13332 2 1 23729
proc4 48 98 51 54 83 85 23 24 1 28 73 68 83 12 84 39 68 59 58 88 29 74 69 96 21 84 15 53 86 54 66 56 97 36 49 32 85 81 11 58 32 67 13 28 35 90 1 26 1
";

    #[test]
    fn every_line_lands_in_its_place() {
        let s = parse(CLIENT).unwrap();
        assert_eq!(s.net, [70, 69, 45]);
        assert_eq!(s.rpc, [1218785755, 374636, 1218815394]);
        assert_eq!(s.v2[0], 16);
        assert_eq!(s.v2[17], 82);
        assert_eq!(s.v3[1], 1061909262);
        assert_eq!(s.v3[21], 23729);
        // An older kernel's 48 v4 operations; the rest are zero.
        assert_eq!(s.v4[0], 98);
        assert_eq!(s.v4[47], 1);
        assert_eq!(s.v4[48], 0);
    }

    #[test]
    fn absent_versions_are_zero_and_bad_lines_fail() {
        let s = parse("net 1 0 1 1\nrpc 2 0 0\n").unwrap();
        assert_eq!(s.rpc[0], 2);
        assert_eq!(s.v3, [0; 22]);
        for bad in [
            "net 1 2\n",
            "rpc 1 2 x\n",
            "proc3 22 1 2\n",
            "proc2 3 1 2 3\n",
            "bogus 1 2 3\n",
            "proc4\n",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
