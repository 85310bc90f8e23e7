//! The NFS server's statistics from /proc/net/rpc/nfsd, in node_exporter's names: reply
//! cache, stale file handles, bytes read and written, threads, read-ahead cache, packets and
//! connections, RPC errors, and `node_nfsd_requests_total{method,proto}` for the NFSv2, v3
//! procedures and NFSv4 operations node_exporter reports (zero where the kernel has no line).
//! The file exists once nfsd is loaded; without it there is nothing to report.

use crate::kept_file::KeptFile;
use crate::paths::Paths;
use common::{log, BlockingCollector, CollectResult, MetricFamily};

pub struct Nfsd {
    file: KeptFile,
}

impl Nfsd {
    pub fn new(paths: &Paths) -> Self {
        Nfsd {
            file: KeptFile::new(paths.proc("net/rpc/nfsd")),
        }
    }
}

/// Procedure names by their position on the `proc2` / `proc3` lines (after the count);
/// node_exporter leaves out `Null`.
const V2: [(usize, &str); 17] = [
    (1, "GetAttr"),
    (2, "SetAttr"),
    (3, "Root"),
    (4, "Lookup"),
    (5, "ReadLink"),
    (6, "Read"),
    (7, "WrCache"),
    (8, "Write"),
    (9, "Create"),
    (10, "Remove"),
    (11, "Rename"),
    (12, "Link"),
    (13, "SymLink"),
    (14, "MkDir"),
    (15, "RmDir"),
    (16, "ReadDir"),
    (17, "FsStat"),
];
const V3: [(usize, &str); 21] = [
    (1, "GetAttr"),
    (2, "SetAttr"),
    (3, "Lookup"),
    (4, "Access"),
    (5, "ReadLink"),
    (6, "Read"),
    (7, "Write"),
    (8, "Create"),
    (9, "MkDir"),
    (10, "SymLink"),
    (11, "MkNod"),
    (12, "Remove"),
    (13, "RmDir"),
    (14, "Rename"),
    (15, "Link"),
    (16, "ReadDir"),
    (17, "ReadDirPlus"),
    (18, "FsStat"),
    (19, "FsInfo"),
    (20, "PathConf"),
    (21, "Commit"),
];
/// NFSv4 operations by operation number (the position on `proc4ops`), the ones
/// node_exporter reports, in its spelling.
const V4: [(usize, &str); 33] = [
    (3, "Access"),
    (4, "Close"),
    (5, "Commit"),
    (6, "Create"),
    (7, "DelegPurge"),
    (8, "DelegReturn"),
    (9, "GetAttr"),
    (10, "GetFH"),
    (11, "Link"),
    (12, "Lock"),
    (13, "Lockt"),
    (14, "Locku"),
    (15, "Lookup"),
    (16, "LookupRoot"),
    (17, "Nverify"),
    (18, "Open"),
    (19, "OpenAttr"),
    (20, "OpenConfirm"),
    (21, "OpenDgrd"),
    (22, "PutFH"),
    (25, "Read"),
    (26, "ReadDir"),
    (27, "ReadLink"),
    (28, "Remove"),
    (29, "Rename"),
    (30, "Renew"),
    (31, "RestoreFH"),
    (32, "SaveFH"),
    (33, "SecInfo"),
    (34, "SetAttr"),
    (37, "Verify"),
    (38, "Write"),
    (39, "RelLockOwner"),
];

/// What /proc/net/rpc/nfsd says; a line the kernel did not write counts zeros.
#[derive(Debug, PartialEq)]
pub struct ServerStats {
    /// hits, misses, nocache.
    pub reply_cache: [u64; 3],
    pub stale_file_handles: u64,
    /// bytes read, bytes written.
    pub io: [u64; 2],
    pub threads: u64,
    /// cache size, not found.
    pub read_ahead: [u64; 2],
    /// udp, tcp, tcp connections.
    pub net: [u64; 3],
    /// calls, bad format, bad auth, bad client.
    pub rpc: [u64; 4],
    /// By operation number, as counted on the line (index 0 is the first value).
    pub v2: Vec<u64>,
    pub v3: Vec<u64>,
    pub v4: Vec<u64>,
}

impl BlockingCollector for Nfsd {
    fn collect(&self) -> CollectResult {
        let Some(text) = self.file.read_if_present()? else {
            return Ok(vec![]);
        };
        let s = parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", self.file.path().display()))?;
        let counter = |name: &'static str, help: &'static str, value: u64| {
            MetricFamily::counter(name, help).with_value(value as f64)
        };
        let mut packets = MetricFamily::counter(
            "node_nfsd_packets_total",
            "Total NFSd network packets (sent+received) by protocol type.",
        );
        packets.push(&[("proto", "udp")], s.net[0] as f64);
        packets.push(&[("proto", "tcp")], s.net[1] as f64);
        let mut errors = MetricFamily::counter(
            "node_nfsd_rpc_errors_total",
            "Total number of NFSd RPC errors by error type.",
        );
        for (kind, value) in [("fmt", s.rpc[1]), ("auth", s.rpc[2]), ("cInt", s.rpc[3])] {
            errors.push(&[("error", kind)], value as f64);
        }
        let mut requests = MetricFamily::counter(
            "node_nfsd_requests_total",
            "Total number NFSd Requests by method and protocol.",
        );
        for (proto, names, values) in [
            ("2", &V2[..], &s.v2),
            ("3", &V3[..], &s.v3),
            ("4", &V4[..], &s.v4),
        ] {
            for (index, method) in names {
                let value = values.get(*index).copied().unwrap_or(0);
                requests.push(&[("method", *method), ("proto", proto)], value as f64);
            }
        }
        Ok(vec![
            counter(
                "node_nfsd_connections_total",
                "Total number of NFSd TCP connections.",
                s.net[2],
            ),
            counter(
                "node_nfsd_disk_bytes_read_total",
                "Total NFSd bytes read.",
                s.io[0],
            ),
            counter(
                "node_nfsd_disk_bytes_written_total",
                "Total NFSd bytes written.",
                s.io[1],
            ),
            counter(
                "node_nfsd_file_handles_stale_total",
                "Total number of NFSd stale file handles",
                s.stale_file_handles,
            ),
            packets,
            counter(
                "node_nfsd_read_ahead_cache_not_found_total",
                "Total number of NFSd read ahead cache not found.",
                s.read_ahead[1],
            ),
            MetricFamily::gauge(
                "node_nfsd_read_ahead_cache_size_blocks",
                "How large the read ahead cache is in blocks.",
            )
            .with_value(s.read_ahead[0] as f64),
            counter(
                "node_nfsd_reply_cache_hits_total",
                "Total number of NFSd Reply Cache hits (client lost server response).",
                s.reply_cache[0],
            ),
            counter(
                "node_nfsd_reply_cache_misses_total",
                "Total number of NFSd Reply Cache an operation that requires caching (idempotent).",
                s.reply_cache[1],
            ),
            counter(
                "node_nfsd_reply_cache_nocache_total",
                "Total number of NFSd Reply Cache non-idempotent operations (rename/delete/…).",
                s.reply_cache[2],
            ),
            requests,
            errors,
            counter(
                "node_nfsd_server_rpcs_total",
                "Total number of NFSd RPCs.",
                s.rpc[0],
            ),
            MetricFamily::gauge(
                "node_nfsd_server_threads",
                "Total number of NFSd kernel threads that are running.",
            )
            .with_value(s.threads as f64),
        ])
    }
}

/// Parses /proc/net/rpc/nfsd. A known line of the wrong shape fails the file, as in
/// node_exporter; a line newer kernels add (`wdeleg_getattr`) is passed over.
pub fn parse(text: &str) -> Result<ServerStats, String> {
    let mut s = ServerStats {
        reply_cache: [0; 3],
        stale_file_handles: 0,
        io: [0; 2],
        threads: 0,
        read_ahead: [0; 2],
        net: [0; 3],
        rpc: [0; 4],
        v2: Vec::new(),
        v3: Vec::new(),
        v4: Vec::new(),
    };
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut words = line.split_ascii_whitespace();
        let key = words.next().unwrap_or_default();
        // `th <threads> <times all threads were busy> <histogram of floats, in old kernels>`.
        let words: Vec<&str> = if key == "th" {
            words.take(2).collect()
        } else {
            words.collect()
        };
        let values = words
            .iter()
            .map(|w| w.parse::<u64>())
            .collect::<Result<Vec<u64>, _>>()
            .map_err(|_| format!("not a number in line {line:?}"))?;
        let bad = || format!("unexpected line {line:?}");
        match (key, values.len()) {
            ("rc", 3) => s.reply_cache.copy_from_slice(&values),
            ("fh", 5) => s.stale_file_handles = values[0],
            ("io", 2) => s.io.copy_from_slice(&values),
            ("th", 2) => s.threads = values[0],
            ("ra", 12) => s.read_ahead = [values[0], values[11]],
            ("net", 4) => s.net.copy_from_slice(&values[1..]),
            ("rpc", 5) => s.rpc = [values[0], values[2], values[3], values[4]],
            ("proc2", _) => s.v2 = counted(&values, 18).ok_or_else(bad)?,
            ("proc3", _) => s.v3 = counted(&values, 22).ok_or_else(bad)?,
            // `proc4 2 <null> <compound>`: not reported, but checked like the others.
            ("proc4", 3) if values[0] == 2 => {}
            ("proc4ops", _) => s.v4 = counted(&values, 39).ok_or_else(bad)?,
            ("rc" | "fh" | "io" | "th" | "ra" | "net" | "rpc" | "proc4", _) => return Err(bad()),
            _ if !values.is_empty() => log::debug("passing over nfsd line", &[("line", line)]),
            _ => return Err(bad()),
        }
    }
    Ok(s)
}

/// The values of a `<count> <v0> ... <vcount-1>` line whose count matches and is at least
/// `min`.
fn counted(values: &[u64], min: usize) -> Option<Vec<u64>> {
    let (&count, rest) = values.split_first()?;
    (rest.len() as u64 == count && rest.len() >= min).then(|| rest.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recent_and_an_old_kernel() {
        let ops: Vec<String> = (0..72).map(|i| (i * 10).to_string()).collect();
        let recent = format!(
            "rc 0 2123 143987\nfh 4 0 0 0 0\nio 20361283584 100839510016\n\
             th 8 0 0.000 0.000 0.000 0.000 0.000 0.000 0.000 0.000 0.000 0.000\n\
             ra 32 1 2 3 4 5 6 7 8 9 10 11\nnet 146110 0 146110 1207\nrpc 146110 1 2 3 4\n\
             proc3 22 2 3512 61 5830 12408 0 45012 21033 410 52 0 0 380 12 75 0 300 1604 33 2 0 2190\n\
             proc4 2 3 24711\nproc4ops 72 {}\nwdeleg_getattr 0\n",
            ops.join(" ")
        );
        let s = parse(&recent).unwrap();
        assert_eq!(s.reply_cache, [0, 2123, 143987]);
        assert_eq!(s.stale_file_handles, 4);
        assert_eq!(s.threads, 8);
        assert_eq!(s.read_ahead, [32, 11]);
        assert_eq!(s.net, [0, 146110, 1207]);
        assert_eq!(s.rpc, [146110, 2, 3, 4]);
        assert_eq!(s.v3[1], 3512);
        assert!(s.v2.is_empty());
        assert_eq!(s.v4[39], 390);

        // 2.6-era: proc2, and 39 proc4ops (no RELEASE_LOCKOWNER).
        let old = format!(
            "rc 1 2 3\nproc2 18 {}\nproc4ops 39 {}\n",
            vec!["7"; 18].join(" "),
            vec!["1"; 39].join(" ")
        );
        let s = parse(&old).unwrap();
        assert_eq!(s.v2.len(), 18);
        assert_eq!(s.v4.get(39), None);

        for bad in [
            "rc 1 2\n",
            "io x 2\n",
            "th\n",
            "proc3 22 1 2\n",
            "proc4ops 3 1 2 3\n",
            "proc4 3 1 2 3\n",
            "mystery\n",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
