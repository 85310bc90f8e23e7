//! Per-process GPU memory and engine time from `/proc/<pid>/fdinfo`: which process holds how
//! much VRAM and GTT on which GPU ("which model server holds 63 GiB of GTT?") and keeps which
//! engine busy.
//!
//! Only file descriptors that point into `/dev/dri/` are read. amdgpu prints, per DRM client,
//! `drm-pdev` (the GPU), `drm-client-id` and `drm-memory-vram` / `drm-memory-gtt` (newer
//! kernels also `drm-resident-*`). One client may be reachable through several descriptors
//! (dup, fork), so each client is counted once. The largest users come first and the number of
//! series is capped; what the cap leaves out is counted.

use common::gpu::normalize_pci_address;
use common::{BlockingCollector, CollectResult, MetricFamily};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

pub struct ProcessesCollector {
    procfs: PathBuf,
    max_series: usize,
}

/// GPU memory of one process on one GPU.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Usage {
    pub pid: u32,
    pub process: String,
    pub id: String,
    pub vram_bytes: Option<f64>,
    pub gtt_bytes: Option<f64>,
    /// Busy time by engine (`gfx`, `compute`, `dma`, `dec`, `enc`...), in seconds.
    pub engine_seconds: BTreeMap<String, f64>,
}

impl ProcessesCollector {
    pub fn new(procfs: impl Into<PathBuf>, max_series: usize) -> Self {
        ProcessesCollector {
            procfs: procfs.into(),
            max_series,
        }
    }
}

impl BlockingCollector for ProcessesCollector {
    fn collect(&self) -> CollectResult {
        let usages = scan(&self.procfs)?;
        Ok(families(usages, self.max_series))
    }
}

/// Reads every process; one that vanishes or denies access mid-scan is skipped.
pub fn scan(procfs: &Path) -> anyhow::Result<Vec<Usage>> {
    let entries = std::fs::read_dir(procfs)
        .map_err(|e| anyhow::anyhow!("cannot list {}: {e}", procfs.display()))?;
    // The exporter itself opens no GPU device (rocm-smi runs as a child, a process of its own),
    // and its sysfs backend keeps ~16 files per GPU open: its own descriptors are not looked at.
    // `self` names this process in that procfs (a fixture tree has none).
    let own_pid = std::fs::read_link(procfs.join("self"))
        .ok()
        .and_then(|p| p.to_str()?.parse::<u32>().ok());
    let mut usages = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if Some(pid) == own_pid {
            continue;
        }
        usages.extend(scan_process(&entry.path(), pid));
    }
    Ok(usages)
}

fn scan_process(dir: &Path, pid: u32) -> Vec<Usage> {
    let Ok(fds) = std::fs::read_dir(dir.join("fd")) else {
        return Vec::new();
    };
    // (GPU, client id) pairs already counted, and the sums per GPU.
    let mut seen = HashSet::new();
    let mut per_gpu: BTreeMap<String, Usage> = BTreeMap::new();
    for fd in fds.flatten() {
        let is_dri =
            std::fs::read_link(fd.path()).is_ok_and(|target| target.starts_with("/dev/dri/"));
        if !is_dri {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(dir.join("fdinfo").join(fd.file_name())) else {
            continue;
        };
        let Some(client) = parse_fdinfo(&text) else {
            continue;
        };
        if let Some(client_id) = &client.client_id {
            if !seen.insert((client.pdev.clone(), client_id.clone())) {
                continue;
            }
        }
        let sums = per_gpu.entry(client.pdev).or_default();
        add(&mut sums.vram_bytes, client.vram);
        add(&mut sums.gtt_bytes, client.gtt);
        for (engine, seconds) in client.engines {
            *sums.engine_seconds.entry(engine).or_default() += seconds;
        }
    }
    if per_gpu.is_empty() {
        return Vec::new();
    }
    // Any process can name itself with bytes that are not UTF-8: keep the name, lossy.
    let process = std::fs::read(dir.join("comm"))
        .map(|c| String::from_utf8_lossy(&c).trim().to_string())
        .unwrap_or_default();
    per_gpu
        .into_iter()
        .map(|(id, usage)| Usage {
            pid,
            process: process.clone(),
            id,
            ..usage
        })
        .collect()
}

fn add(sum: &mut Option<f64>, value: Option<f64>) {
    if let Some(v) = value {
        *sum = Some(sum.unwrap_or(0.0) + v);
    }
}

#[derive(Debug, PartialEq)]
struct Client {
    pdev: String,
    client_id: Option<String>,
    vram: Option<f64>,
    gtt: Option<f64>,
    engines: Vec<(String, f64)>,
}

/// One amdgpu DRM client from an fdinfo file; `None` for other drivers or no GPU address.
fn parse_fdinfo(text: &str) -> Option<Client> {
    let mut driver = None;
    let mut pdev = None;
    let mut client_id = None;
    let (mut vram, mut gtt, mut resident_vram, mut resident_gtt) = (None, None, None, None);
    let mut engines = Vec::new();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match key.trim() {
            "drm-driver" => driver = Some(value),
            "drm-pdev" => pdev = Some(normalize_pci_address(value)),
            "drm-client-id" => client_id = Some(value.to_string()),
            "drm-memory-vram" => vram = bytes(value),
            "drm-memory-gtt" => gtt = bytes(value),
            "drm-resident-vram" => resident_vram = bytes(value),
            "drm-resident-gtt" => resident_gtt = bytes(value),
            key => {
                // `drm-engine-gfx: 9141052384 ns`; `drm-engine-capacity-*` is no time.
                let engine = key
                    .strip_prefix("drm-engine-")
                    .filter(|e| !e.starts_with("capacity"));
                if let (Some(engine), Some(ns)) = (engine, nanoseconds(value)) {
                    engines.push((engine.to_string(), ns / 1e9));
                }
            }
        }
    }
    if driver != Some("amdgpu") {
        return None;
    }
    Some(Client {
        pdev: pdev?,
        client_id,
        vram: vram.or(resident_vram),
        gtt: gtt.or(resident_gtt),
        engines,
    })
}

/// `9141052384 ns` → nanoseconds; anything else → `None`.
fn nanoseconds(value: &str) -> Option<f64> {
    let number = value.strip_suffix("ns")?.trim();
    number.parse::<u64>().ok().map(|n| n as f64)
}

/// `460800 KiB`, `2 MiB`, `4096` (bytes) → bytes; garbage → `None`, and so are `NaN`, `inf`
/// and negative numbers, which f64 parsing accepts but no memory size can be.
fn bytes(value: &str) -> Option<f64> {
    let mut parts = value.split_whitespace();
    let number: f64 = parts.next()?.parse().ok()?;
    if !number.is_finite() || number < 0.0 {
        return None;
    }
    let factor = match parts.next() {
        None => 1.0,
        Some("KiB") => 1024.0,
        Some("MiB") => 1024.0 * 1024.0,
        Some("GiB") => 1024.0 * 1024.0 * 1024.0,
        Some(_) => return None,
    };
    Some(number * factor).filter(|b| b.is_finite())
}

/// Largest users first; at most `max_series` series (two per process and GPU).
pub fn families(mut usages: Vec<Usage>, max_series: usize) -> Vec<MetricFamily> {
    let total = |u: &Usage| u.vram_bytes.unwrap_or(0.0) + u.gtt_bytes.unwrap_or(0.0);
    usages.sort_by(|a, b| {
        total(b)
            .total_cmp(&total(a))
            .then(a.pid.cmp(&b.pid))
            .then(a.id.cmp(&b.id))
    });
    let mut memory = MetricFamily::gauge(
        "amdgpu_process_memory_bytes",
        "GPU memory held by a process, by pool (vram, gtt), from /proc/<pid>/fdinfo.",
    );
    let mut engine = MetricFamily::counter(
        "amdgpu_process_engine_seconds_total",
        "Time a process kept a GPU engine (gfx, compute, dma, dec, enc...) busy, from /proc/<pid>/fdinfo.",
    );
    let mut omitted = 0usize;
    for usage in &usages {
        let pools: Vec<(&str, f64)> = [("vram", usage.vram_bytes), ("gtt", usage.gtt_bytes)]
            .into_iter()
            .filter_map(|(pool, v)| v.map(|v| (pool, v)))
            .collect();
        let series = pools.len() + usage.engine_seconds.len();
        if memory.samples.len() + engine.samples.len() + series > max_series {
            omitted += 1;
            continue;
        }
        let pid = usage.pid.to_string();
        let labels = |key: &'static str, value: &str| {
            [
                ("id", usage.id.clone()),
                ("pid", pid.clone()),
                ("process", usage.process.clone()),
                (key, value.to_string()),
            ]
        };
        for (pool, v) in pools {
            memory.push(&labels("pool", pool), v);
        }
        for (name, seconds) in &usage.engine_seconds {
            engine.push(&labels("engine", name), *seconds);
        }
    }
    vec![
        memory,
        engine,
        MetricFamily::gauge(
            "amdgpu_process_omitted",
            "Process and GPU pairs left out of the amdgpu_process_* series by --collector.processes.max-series.",
        )
        .with_value(omitted as f64),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proc() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/proc")
    }

    #[test]
    fn fixture_processes() {
        let mut usages = scan(&proc()).unwrap();
        usages.sort_by_key(|u| u.pid);
        assert_eq!(usages.len(), 3, "{usages:?}");
        // Two descriptors of one client count once; /dev/null is not read.
        assert_eq!(
            usages[0],
            Usage {
                pid: 1234,
                process: "llama-server".into(),
                id: "0000:c3:00.0".into(),
                vram_bytes: Some(460800.0 * 1024.0),
                gtt_bytes: Some(62914560.0 * 1024.0),
                engine_seconds: [("gfx".to_string(), 9.141052384)].into(),
            }
        );
        assert_eq!(usages[1].process, "ollama");
        assert_eq!(usages[1].gtt_bytes, Some(2.0 * 1024.0 * 1024.0));
        // A garbage value is skipped, the rest kept.
        assert_eq!(usages[2].process, "python3");
        assert_eq!(usages[2].vram_bytes, None);
        assert_eq!(usages[2].gtt_bytes, Some(4096.0));
    }

    #[test]
    fn the_exporters_own_process_is_not_scanned() {
        // A procfs whose `self` is llama-server's pid: that process is left out, the rest kept.
        let dir = std::env::temp_dir().join(format!("rocm-procfs-self-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for pid in ["1234", "2345"] {
            std::os::unix::fs::symlink(proc().join(pid), dir.join(pid)).unwrap();
        }
        std::os::unix::fs::symlink("1234", dir.join("self")).unwrap();
        let usages = scan(&dir).unwrap();
        assert_eq!(usages.len(), 1, "{usages:?}");
        assert_eq!(usages[0].process, "ollama");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn cap_keeps_the_largest_and_counts_the_rest() {
        let usages = scan(&proc()).unwrap();
        // llama-server has three series (vram, gtt, gfx time): it fills the cap alone.
        let f = families(usages, 3);
        assert_eq!(f[0].samples.len(), 2);
        assert_eq!(f[1].samples.len(), 1);
        assert!(f[0].samples[0]
            .labels
            .contains(&("process".into(), "llama-server".to_string())));
        assert_eq!(f[2].name, "amdgpu_process_omitted");
        assert_eq!(f[2].samples[0].value, 2.0);
    }

    #[test]
    fn other_drivers_and_units() {
        assert_eq!(
            parse_fdinfo("drm-driver:\ti915\ndrm-pdev:\t0000:00:02.0\n"),
            None
        );
        assert_eq!(parse_fdinfo("drm-driver:\tamdgpu\n"), None);
        let c = parse_fdinfo(
            "drm-driver:\tamdgpu\ndrm-pdev:\t0000:C3:00.0\ndrm-resident-vram:\t1 GiB\n",
        )
        .unwrap();
        assert_eq!(c.pdev, "0000:c3:00.0");
        assert_eq!(c.vram, Some(1024.0 * 1024.0 * 1024.0));
        assert_eq!(bytes("12 TiB"), None);
        let c = parse_fdinfo(
            "drm-driver:\tamdgpu\ndrm-pdev:\t0000:03:00.0\ndrm-engine-compute:\t1500000000 ns\ndrm-engine-capacity-gfx:\t2\ndrm-engine-dma:\tsoon ns\n",
        )
        .unwrap();
        assert_eq!(c.engines, vec![("compute".to_string(), 1.5)]);
    }

    #[test]
    fn missing_procfs_is_an_error() {
        assert!(scan(Path::new("/nonexistent")).is_err());
    }

    #[test]
    fn sizes_that_are_no_sizes_are_skipped() {
        assert_eq!(bytes("460800 KiB"), Some(460800.0 * 1024.0));
        assert_eq!(bytes("0"), Some(0.0));
        for bad in [
            "NaN KiB",
            "nan",
            "inf",
            "-inf MiB",
            "-4096",
            "-0.5 KiB",
            "1e308 GiB",
        ] {
            assert_eq!(bytes(bad), None, "{bad}");
        }
        let client = parse_fdinfo(
            "drm-driver:\tamdgpu\ndrm-pdev:\t0000:c3:00.0\ndrm-memory-vram:\tNaN KiB\ndrm-memory-gtt:\t-8 KiB\ndrm-resident-gtt:\t4 KiB\n",
        )
        .unwrap();
        assert_eq!(client.vram, None);
        // A bad drm-memory-gtt falls back to drm-resident-gtt like a missing one.
        assert_eq!(client.gtt, Some(4096.0));
    }
}
