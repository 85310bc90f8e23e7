//! Bytes queued in UDP sockets, summed over sockets, from /proc/net/udp and /proc/net/udp6
//! (`node_udp_queues{ip,queue}`), as node_exporter sums them. A host without IPv6 has no udp6;
//! what is absent is left out.

use crate::kept_file::KeptFile;
use crate::paths::Paths;
use common::{log, BlockingCollector, CollectResult, MetricFamily};

pub struct UdpQueues {
    /// (ip label, file)
    files: [(&'static str, KeptFile); 2],
}

impl UdpQueues {
    pub fn new(paths: &Paths) -> Self {
        UdpQueues {
            files: [
                ("v4", KeptFile::new(paths.proc("net/udp"))),
                ("v6", KeptFile::new(paths.proc("net/udp6"))),
            ],
        }
    }
}

impl BlockingCollector for UdpQueues {
    fn collect(&self) -> CollectResult {
        let mut queues = MetricFamily::gauge(
            "node_udp_queues",
            "Number of allocated memory in the kernel for UDP datagrams in bytes.",
        );
        for (ip, file) in &self.files {
            let Some(text) = file.read_if_present()? else {
                continue;
            };
            let (mut tx, mut rx) = (0.0, 0.0);
            // The first line is the header.
            for line in text.lines().skip(1).filter(|l| !l.trim().is_empty()) {
                match parse_queues(line) {
                    Some((t, r)) => {
                        tx += t as f64;
                        rx += r as f64;
                    }
                    None => log::warn(
                        "skipping unparsable udp socket line",
                        &[("path", &file.path().display().to_string()), ("line", line)],
                    ),
                }
            }
            queues.push(&[("ip", *ip), ("queue", "tx")], tx);
            queues.push(&[("ip", *ip), ("queue", "rx")], rx);
        }
        Ok(vec![queues])
    }
}

/// `sl local rem st tx_queue:rx_queue ...` → the two queues, hex.
fn parse_queues(line: &str) -> Option<(u64, u64)> {
    let mut fields = line.split_ascii_whitespace();
    let slot = fields.next()?;
    if !slot.ends_with(':') {
        return None;
    }
    let (tx, rx) = fields.nth(3)?.split_once(':')?;
    Some((
        u64::from_str_radix(tx, 16).ok()?,
        u64::from_str_radix(rx, 16).ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queues_are_summed_over_sockets_per_ip_version() {
        let dir = std::env::temp_dir().join(format!("udp-queues-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("proc/net")).unwrap();
        let header = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n";
        std::fs::write(
            dir.join("proc/net/udp"),
            format!("{header}  0: 3500007F:0035 00000000:0000 07 00000010:00000200 00:00000000 00000000   101        0 19101 2 0000000000000000 0\n\
              1: 00000000:0044 00000000:0000 07 00000001:00000002 00:00000000 00000000     0        0 19102 2 0000000000000000 5\n\
              2: garbage\n"),
        )
        .unwrap();
        let paths = Paths {
            procfs: dir.join("proc"),
            sysfs: dir.join("sys"),
            rootfs: dir.clone(),
            udev_data: dir.join("udev"),
        };
        let families = UdpQueues::new(&paths).collect().unwrap();
        let got: Vec<(String, String, f64)> = families[0]
            .samples
            .iter()
            .map(|s| (s.labels[0].1.clone(), s.labels[1].1.clone(), s.value))
            .collect();
        // No udp6 (IPv6 off): only v4.
        assert_eq!(
            got,
            [
                ("v4".to_string(), "tx".to_string(), 17.0),
                ("v4".to_string(), "rx".to_string(), 514.0)
            ]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
