//! InfiniBand (and RoCE) adapters from /sys/class/infiniband: per device `node_infiniband_info`,
//! per port state, rate and the port counters (`node_infiniband_port_data_received_bytes_total`,
//! ...), named and scaled as node_exporter reports them. Hosts without such adapters have no
//! class directory and report nothing.

use crate::kept_file::{KeptFileScrape, KeptFileSet};
use crate::paths::{entries_if_present, parse_counter, sorted_entries, Paths};
use common::{log, BlockingCollector, CollectResult, MetricFamily, MetricType};
use std::collections::BTreeMap;
use std::path::Path;

pub struct Infiniband {
    paths: Paths,
    files: KeptFileSet,
}

impl Infiniband {
    pub fn new(paths: &Paths) -> Self {
        Infiniband {
            paths: paths.clone(),
            files: KeptFileSet::default(),
        }
    }
}

/// (directory under the port, file, family without `node_infiniband_`, multiplier). The data
/// counters count 4-byte words per lane: node_exporter multiplies them by 4.
const COUNTERS: [(&str, &str, &str, u64); 60] = [
    (
        "counters_ext",
        "port_multicast_rcv_packets",
        "legacy_multicast_packets_received_total",
        1,
    ),
    (
        "counters_ext",
        "port_multicast_xmit_packets",
        "legacy_multicast_packets_transmitted_total",
        1,
    ),
    (
        "counters_ext",
        "port_rcv_data_64",
        "legacy_data_received_bytes_total",
        4,
    ),
    (
        "counters_ext",
        "port_rcv_packets_64",
        "legacy_packets_received_total",
        1,
    ),
    (
        "counters_ext",
        "port_unicast_rcv_packets",
        "legacy_unicast_packets_received_total",
        1,
    ),
    (
        "counters_ext",
        "port_unicast_xmit_packets",
        "legacy_unicast_packets_transmitted_total",
        1,
    ),
    (
        "counters_ext",
        "port_xmit_data_64",
        "legacy_data_transmitted_bytes_total",
        4,
    ),
    (
        "counters_ext",
        "port_xmit_packets_64",
        "legacy_packets_transmitted_total",
        1,
    ),
    (
        "counters",
        "excessive_buffer_overrun_errors",
        "excessive_buffer_overrun_errors_total",
        1,
    ),
    ("counters", "link_downed", "link_downed_total", 1),
    (
        "counters",
        "link_error_recovery",
        "link_error_recovery_total",
        1,
    ),
    (
        "counters",
        "local_link_integrity_errors",
        "local_link_integrity_errors_total",
        1,
    ),
    (
        "counters",
        "multicast_rcv_packets",
        "multicast_packets_received_total",
        1,
    ),
    (
        "counters",
        "multicast_xmit_packets",
        "multicast_packets_transmitted_total",
        1,
    ),
    (
        "counters",
        "port_rcv_constraint_errors",
        "port_constraint_errors_received_total",
        1,
    ),
    (
        "counters",
        "port_xmit_constraint_errors",
        "port_constraint_errors_transmitted_total",
        1,
    ),
    (
        "counters",
        "port_rcv_data",
        "port_data_received_bytes_total",
        4,
    ),
    (
        "counters",
        "port_xmit_data",
        "port_data_transmitted_bytes_total",
        4,
    ),
    (
        "counters",
        "port_rcv_discards",
        "port_discards_received_total",
        1,
    ),
    (
        "counters",
        "port_xmit_discards",
        "port_discards_transmitted_total",
        1,
    ),
    (
        "counters",
        "port_rcv_errors",
        "port_errors_received_total",
        1,
    ),
    (
        "counters",
        "port_rcv_packets",
        "port_packets_received_total",
        1,
    ),
    (
        "counters",
        "port_xmit_packets",
        "port_packets_transmitted_total",
        1,
    ),
    ("counters", "port_xmit_wait", "port_transmit_wait_total", 1),
    (
        "counters",
        "unicast_rcv_packets",
        "unicast_packets_received_total",
        1,
    ),
    (
        "counters",
        "unicast_xmit_packets",
        "unicast_packets_transmitted_total",
        1,
    ),
    (
        "counters",
        "port_rcv_remote_physical_errors",
        "port_receive_remote_physical_errors_total",
        1,
    ),
    (
        "counters",
        "port_rcv_switch_relay_errors",
        "port_receive_switch_relay_errors_total",
        1,
    ),
    ("counters", "symbol_error", "symbol_error_total", 1),
    ("counters", "VL15_dropped", "vl15_dropped_total", 1),
    (
        "hw_counters",
        "duplicate_request",
        "duplicate_requests_packets_total",
        1,
    ),
    (
        "hw_counters",
        "implied_nak_seq_err",
        "implied_nak_seq_errors_total",
        1,
    ),
    (
        "hw_counters",
        "local_ack_timeout_err",
        "local_ack_timeout_errors_total",
        1,
    ),
    ("hw_counters", "np_cnp_sent", "np_cnp_packets_sent_total", 1),
    (
        "hw_counters",
        "np_ecn_marked_roce_packets",
        "np_ecn_marked_roce_packets_received_total",
        1,
    ),
    (
        "hw_counters",
        "out_of_buffer",
        "out_of_buffer_drops_total",
        1,
    ),
    (
        "hw_counters",
        "out_of_sequence",
        "out_of_sequence_packets_received_total",
        1,
    ),
    (
        "hw_counters",
        "packet_seq_err",
        "packet_sequence_errors_total",
        1,
    ),
    ("hw_counters", "req_cqe_error", "req_cqes_errors_total", 1),
    (
        "hw_counters",
        "req_cqe_flush_error",
        "req_cqes_flush_errors_total",
        1,
    ),
    (
        "hw_counters",
        "req_remote_access_errors",
        "req_remote_access_errors_total",
        1,
    ),
    (
        "hw_counters",
        "req_remote_invalid_request",
        "req_remote_invalid_request_errors_total",
        1,
    ),
    ("hw_counters", "resp_cqe_error", "resp_cqes_errors_total", 1),
    (
        "hw_counters",
        "resp_cqe_flush_error",
        "resp_cqes_flush_errors_total",
        1,
    ),
    (
        "hw_counters",
        "resp_local_length_error",
        "resp_local_length_errors_total",
        1,
    ),
    (
        "hw_counters",
        "resp_remote_access_errors",
        "resp_remote_access_errors_total",
        1,
    ),
    (
        "hw_counters",
        "rnr_nak_retry_err",
        "rnr_nak_retry_packets_received_total",
        1,
    ),
    (
        "hw_counters",
        "roce_adp_retrans",
        "roce_adp_retransmits_total",
        1,
    ),
    (
        "hw_counters",
        "roce_adp_retrans_to",
        "roce_adp_retransmits_timeout_total",
        1,
    ),
    (
        "hw_counters",
        "roce_slow_restart",
        "roce_slow_restart_used_total",
        1,
    ),
    (
        "hw_counters",
        "roce_slow_restart_cnps",
        "roce_slow_restart_cnps_total",
        1,
    ),
    (
        "hw_counters",
        "roce_slow_restart_trans",
        "roce_slow_restart_total",
        1,
    ),
    (
        "hw_counters",
        "rp_cnp_handled",
        "rp_cnp_packets_handled_total",
        1,
    ),
    (
        "hw_counters",
        "rp_cnp_ignored",
        "rp_cnp_ignored_packets_received_total",
        1,
    ),
    (
        "hw_counters",
        "rx_atomic_requests",
        "rx_atomic_requests_total",
        1,
    ),
    (
        "hw_counters",
        "rx_dct_connect",
        "rx_dct_connect_requests_total",
        1,
    ),
    (
        "hw_counters",
        "rx_read_requests",
        "rx_read_requests_total",
        1,
    ),
    (
        "hw_counters",
        "rx_write_requests",
        "rx_write_requests_total",
        1,
    ),
    (
        "hw_counters",
        "rx_icrc_encapsulated",
        "rx_icrc_encapsulated_errors_total",
        1,
    ),
    // Milliseconds; node_exporter reports whole seconds.
    ("hw_counters", "lifespan", "lifespan_seconds", 0),
];

/// Which counter directories node_exporter (its procfs library) reads for a device: Intel's
/// irdma and NVIDIA's nvs_ devices have no `counters`; only irdma and mlx5 `hw_counters`.
fn reads_directory(device: &str, directory: &str) -> bool {
    let irdma = device.starts_with("irdma");
    match directory {
        "hw_counters" => irdma || device.starts_with("mlx5_"),
        _ => !irdma && !device.starts_with("nvs_"),
    }
}

/// Families by name, made on first use; output sorted by the runner.
#[derive(Default)]
struct Families(BTreeMap<&'static str, MetricFamily>);

impl Families {
    fn push(
        &mut self,
        name: &'static str,
        kind: MetricType,
        labels: &[(&'static str, &str)],
        value: f64,
    ) {
        self.0
            .entry(name)
            .or_insert_with(|| {
                MetricFamily::new(
                    format!("node_infiniband_{name}"),
                    format!("InfiniBand port statistic {name}."),
                    kind,
                )
            })
            .push(labels, value);
    }
}

/// `4: ACTIVE` → 4.
fn parse_state(text: &str) -> Option<u64> {
    let (id, _name) = text.split_once(':')?;
    id.trim().parse().ok()
}

/// `100 Gb/sec (4X EDR)` → bytes per second.
fn parse_rate(text: &str) -> Option<u64> {
    let (gbit, _) = text.trim().split_once(' ')?;
    // node_exporter parses the figure as a 32-bit float before scaling it.
    let gbit: f32 = gbit.parse().ok()?;
    Some((f64::from(gbit) * 125_000_000.0) as u64)
}

impl BlockingCollector for Infiniband {
    fn collect(&self) -> CollectResult {
        let dir = self.paths.sys("class/infiniband");
        let Some(devices) = entries_if_present(&dir)? else {
            return Ok(vec![]);
        };
        let mut files = self.files.scrape();
        let mut families = Families::default();
        let mut info = MetricFamily::gauge(
            "node_infiniband_info",
            "Non-numeric data from /sys/class/infiniband/<device>, value is always 1.",
        );
        for (device, path) in devices {
            // Every driver has had fw_ver since 4.10; a device without it is not one.
            let firmware = match files.read(&path.join("fw_ver")) {
                Ok(v) => v.trim().to_string(),
                Err(e) => {
                    warn_skip(
                        "skipping InfiniBand device",
                        &path.join("fw_ver"),
                        &e.to_string(),
                    );
                    continue;
                }
            };
            let optional = |files: &mut KeptFileScrape, name: &str| {
                files
                    .read(&path.join(name))
                    .map(|v| v.trim().to_string())
                    .unwrap_or_default()
            };
            let board_id = optional(&mut files, "board_id");
            let hca_type = optional(&mut files, "hca_type");
            info.push(
                &[
                    ("board_id", board_id.as_str()),
                    ("device", device.as_str()),
                    ("firmware_version", firmware.as_str()),
                    ("hca_type", hca_type.as_str()),
                ],
                1.0,
            );
            let ports_dir = path.join("ports");
            let mut ports: Vec<(u32, std::path::PathBuf)> = match sorted_entries(&ports_dir) {
                Ok(entries) => entries
                    .into_iter()
                    .filter_map(|(name, path)| Some((name.parse().ok()?, path)))
                    .collect(),
                Err(e) => {
                    warn_skip("skipping InfiniBand ports", &ports_dir, &e.to_string());
                    continue;
                }
            };
            ports.sort();
            for (port, port_path) in ports {
                collect_port(&mut files, &mut families, &device, port, &port_path);
            }
        }
        let mut out = vec![info];
        out.extend(families.0.into_values());
        Ok(out)
    }
}

fn warn_skip(msg: &str, path: &Path, err: &str) {
    log::warn(msg, &[("path", &path.display().to_string()), ("err", err)]);
}

fn collect_port(
    files: &mut KeptFileScrape,
    families: &mut Families,
    device: &str,
    port: u32,
    path: &Path,
) {
    let port_text = port.to_string();
    let labels = [("device", device), ("port", port_text.as_str())];
    // State, physical state and rate are in every port; without them the port is skipped.
    let mut read = |name: &str, parse: fn(&str) -> Option<u64>| -> Option<u64> {
        let file = path.join(name);
        match files.read(&file) {
            Ok(text) => {
                let value = parse(&text);
                if value.is_none() {
                    warn_skip(
                        "skipping InfiniBand port",
                        &file,
                        &format!("unparsable {text:?}"),
                    );
                }
                value
            }
            Err(e) => {
                warn_skip("skipping InfiniBand port", &file, &e.to_string());
                None
            }
        }
    };
    let (Some(state), Some(phys_state), Some(rate)) = (
        read("state", parse_state),
        read("phys_state", parse_state),
        read("rate", parse_rate),
    ) else {
        return;
    };
    families.push("state_id", MetricType::Gauge, &labels, state as f64);
    families.push(
        "physical_state_id",
        MetricType::Gauge,
        &labels,
        phys_state as f64,
    );
    families.push(
        "rate_bytes_per_second",
        MetricType::Gauge,
        &labels,
        rate as f64,
    );
    for (directory, file, family, multiplier) in COUNTERS {
        if !reads_directory(device, directory) {
            continue;
        }
        let file_path = path.join(directory).join(file);
        let text = match files.read(&file_path) {
            Ok(t) => t,
            // Most counters exist only for some drivers.
            Err(_) => continue,
        };
        let Some(value) = parse_counter(&text) else {
            // Old kernels answer "N/A (no PMA)" for counters the adapter lacks.
            if !text.contains("N/A") {
                warn_skip(
                    "skipping InfiniBand counter",
                    &file_path,
                    &format!("unparsable {text:?}"),
                );
            }
            continue;
        };
        if multiplier == 0 {
            families.push(family, MetricType::Gauge, &labels, (value / 1000) as f64);
        } else {
            let value = value.wrapping_mul(multiplier);
            families.push(family, MetricType::Counter, &labels, value as f64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::testing::Scratch;

    fn value(families: &[MetricFamily], name: &str, device: &str, port: &str) -> Option<f64> {
        families
            .iter()
            .find(|f| f.name == name)?
            .samples
            .iter()
            .find(|s| s.labels[0].1 == device && s.labels[1].1 == port)
            .map(|s| s.value)
    }

    #[test]
    fn ports_counters_and_their_scaling() {
        let scratch = Scratch::new("infiniband");
        let root = scratch.0.clone();
        let ib = "sys/class/infiniband";
        scratch.write_line(&format!("{ib}/mlx5_0/fw_ver"), "16.35.2000");
        scratch.write_line(&format!("{ib}/mlx5_0/board_id"), "MT_0000000012");
        scratch.write_line(&format!("{ib}/mlx5_0/hca_type"), "MT4119");
        for (port, state) in [("1", "4: ACTIVE"), ("2", "1: DOWN")] {
            let p = format!("{ib}/mlx5_0/ports/{port}");
            scratch.write_line(&format!("{p}/state"), state);
            scratch.write_line(&format!("{p}/phys_state"), "5: LinkUp");
            scratch.write_line(&format!("{p}/rate"), "100 Gb/sec (4X EDR)");
            scratch.write_line(&format!("{p}/counters/port_rcv_data"), "1000");
            scratch.write_line(&format!("{p}/counters/symbol_error"), "N/A (no PMA)");
            scratch.write_line(&format!("{p}/counters/link_downed"), "garbage");
            scratch.write_line(&format!("{p}/hw_counters/lifespan"), "10999");
            scratch.write_line(&format!("{p}/hw_counters/out_of_buffer"), "7");
        }
        // A port without its rate is skipped; the other ports stay.
        scratch.write_line(&format!("{ib}/mlx5_0/ports/3/state"), "4: ACTIVE");
        // hw_counters are read only for mlx5 and irdma, as node_exporter does.
        scratch.write_line(&format!("{ib}/hfi1_0/fw_ver"), "1.27.0");
        let p = format!("{ib}/hfi1_0/ports/1");
        scratch.write_line(&format!("{p}/state"), "4: ACTIVE");
        scratch.write_line(&format!("{p}/phys_state"), "5: LinkUp");
        scratch.write_line(&format!("{p}/rate"), "2.5 Gb/sec (1X SDR)");
        scratch.write_line(&format!("{p}/hw_counters/out_of_buffer"), "7");
        scratch.write_line(&format!("{p}/counters_ext/port_xmit_data_64"), "5");
        // No fw_ver: not a device.
        std::fs::create_dir_all(root.join(format!("{ib}/broken0"))).unwrap();
        let paths = Paths {
            procfs: root.join("proc"),
            sysfs: root.join("sys"),
            rootfs: root.clone(),
            udev_data: root.join("udev"),
        };
        let collector = Infiniband::new(&paths);
        let families = collector.collect().unwrap();
        let v = |name, device, port| value(&families, name, device, port);
        assert_eq!(v("node_infiniband_state_id", "mlx5_0", "1"), Some(4.0));
        assert_eq!(v("node_infiniband_state_id", "mlx5_0", "2"), Some(1.0));
        assert_eq!(v("node_infiniband_state_id", "mlx5_0", "3"), None);
        assert_eq!(
            v("node_infiniband_rate_bytes_per_second", "mlx5_0", "1"),
            Some(12.5e9)
        );
        assert_eq!(
            v("node_infiniband_rate_bytes_per_second", "hfi1_0", "1"),
            Some(312_500_000.0)
        );
        assert_eq!(
            v(
                "node_infiniband_port_data_received_bytes_total",
                "mlx5_0",
                "1"
            ),
            Some(4000.0)
        );
        assert_eq!(v("node_infiniband_symbol_error_total", "mlx5_0", "1"), None);
        assert_eq!(v("node_infiniband_link_downed_total", "mlx5_0", "1"), None);
        assert_eq!(
            v("node_infiniband_lifespan_seconds", "mlx5_0", "1"),
            Some(10.0)
        );
        assert_eq!(
            v("node_infiniband_out_of_buffer_drops_total", "mlx5_0", "2"),
            Some(7.0)
        );
        assert_eq!(
            v("node_infiniband_out_of_buffer_drops_total", "hfi1_0", "1"),
            None
        );
        assert_eq!(
            v(
                "node_infiniband_legacy_data_transmitted_bytes_total",
                "hfi1_0",
                "1"
            ),
            Some(20.0)
        );
        let kinds: Vec<(&str, MetricType)> = families
            .iter()
            .filter(|f| f.name.ends_with("_total") || f.name.ends_with("_id"))
            .map(|f| (f.name.as_ref(), f.kind))
            .collect();
        for (name, kind) in kinds {
            let expected = if name.ends_with("_total") {
                MetricType::Counter
            } else {
                MetricType::Gauge
            };
            assert_eq!(kind, expected, "{name}");
        }
        let info = &families[0];
        assert_eq!(info.name, "node_infiniband_info");
        assert_eq!(info.samples.len(), 2, "broken0 is skipped");
        assert_eq!(info.samples[1].labels[0].1, "MT_0000000012");
        assert_eq!(info.samples[0].labels[0].1, "", "hfi1_0 has no board_id");
        std::fs::remove_dir_all(&root).unwrap();
        assert!(collector.collect().unwrap().is_empty(), "no class: nothing");
    }
}
