//! The cpu collector: `node_cpu_seconds_total` and `node_cpu_guest_seconds_total` from the
//! per-CPU lines of /proc/stat, in seconds (the kernel counts in USER_HZ ticks); with
//! `--collector.cpu.info`, `node_cpu_info` per CPU from /proc/cpuinfo and, where asked by
//! `--collector.cpu.info.flags-include` / `bugs-include`, `node_cpu_flag_info` and
//! `node_cpu_bug_info` from the first CPU; the thermal throttle counters, isolated CPUs and
//! online states from /sys/devices/system/cpu, as node_exporter emits them.

use crate::kept_file::{KeptFile, KeptFileSet};
use crate::paths::{read_sysfs_value, sorted_entries, Paths};
use crate::shared_read::SharedRead;
use common::{log, BlockingCollector, CollectResult, MetricFamily};
use regex_lite::Regex;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// node_exporter's cpu flags: guest seconds on by default, cpuinfo off unless asked for.
#[derive(Clone)]
pub struct CpuOptions {
    pub guest: bool,
    pub info: bool,
    pub flags_include: Option<Regex>,
    pub bugs_include: Option<Regex>,
}

pub struct Cpu {
    proc_stat: SharedRead,
    cpuinfo: KeptFile,
    cpu_dir: PathBuf,
    options: CpuOptions,
    /// Isolated CPUs are set on the kernel command line: read once, as node_exporter does.
    isolated: Vec<u32>,
    /// Topology, throttle and online files, read every scrape: kept open.
    files: KeptFileSet,
    ticks_per_second: f64,
}

impl Cpu {
    pub fn new(proc_stat: SharedRead, paths: &Paths, mut options: CpuOptions) -> Self {
        // SAFETY: sysconf has no preconditions.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        // Asking for flags or bugs implies --collector.cpu.info, as in node_exporter.
        options.info |= options.flags_include.is_some() || options.bugs_include.is_some();
        let cpu_dir = paths.sys("devices/system/cpu");
        let isolated_path = cpu_dir.join("isolated");
        let isolated = match read_sysfs_value(&isolated_path) {
            Ok(text) => parse_cpu_list(&text).unwrap_or_else(|| {
                log::warn(
                    "ignoring unparsable isolated CPU list",
                    &[
                        ("path", &isolated_path.display().to_string()),
                        ("value", &text),
                    ],
                );
                Vec::new()
            }),
            Err(_) => Vec::new(),
        };
        Cpu {
            proc_stat,
            cpuinfo: KeptFile::new(paths.proc("cpuinfo")),
            cpu_dir,
            options,
            isolated,
            files: KeptFileSet::default(),
            ticks_per_second: if ticks > 0 { ticks as f64 } else { 100.0 },
        }
    }

    fn stat(&self, families: &mut Vec<MetricFamily>) -> anyhow::Result<()> {
        let text = self.proc_stat.read()?;
        let mut seconds = MetricFamily::counter(
            "node_cpu_seconds_total",
            "Seconds the CPUs spent in each mode.",
        );
        let mut guest = MetricFamily::counter(
            "node_cpu_guest_seconds_total",
            "Seconds the CPUs spent in guests (VMs) for each mode.",
        );
        for line in text.lines() {
            let Some((cpu, fields)) = numbered_cpu_line(line) else {
                continue;
            };
            let values: Vec<f64> = fields.map_while(|f| f.parse::<f64>().ok()).collect();
            if values.len() < 4 {
                anyhow::bail!("/proc/stat: cpu{cpu} line has {} fields", values.len());
            }
            let mut modes: Vec<(&str, f64)> = MODES
                .iter()
                .zip(&values)
                .map(|(mode, ticks)| (*mode, ticks / self.ticks_per_second))
                .collect();
            modes.sort_by(|a, b| a.0.cmp(b.0));
            for (mode, value) in modes {
                seconds.push(&[("cpu", cpu), ("mode", mode)], value);
            }
            if let (true, Some(user), Some(nice)) =
                (self.options.guest, values.get(8), values.get(9))
            {
                guest.push(
                    &[("cpu", cpu), ("mode", "nice")],
                    nice / self.ticks_per_second,
                );
                guest.push(
                    &[("cpu", cpu), ("mode", "user")],
                    user / self.ticks_per_second,
                );
            }
        }
        if seconds.is_empty() {
            anyhow::bail!("/proc/stat: no per-CPU lines");
        }
        families.push(seconds);
        families.push(guest);
        Ok(())
    }

    fn info(&self, families: &mut Vec<MetricFamily>) -> anyhow::Result<()> {
        let text = self.cpuinfo.read()?;
        let mut info = MetricFamily::gauge("node_cpu_info", "CPU information from /proc/cpuinfo.");
        let mut flags = MetricFamily::gauge(
            "node_cpu_flag_info",
            "The `flags` field of CPU information from /proc/cpuinfo taken from the first core.",
        );
        let mut bugs = MetricFamily::gauge(
            "node_cpu_bug_info",
            "The `bugs` field of CPU information from /proc/cpuinfo taken from the first core.",
        );
        // One block per logical CPU, separated by blank lines. Other blocks (ARM ends with a
        // Hardware/Revision block) are skipped.
        let mut first = true;
        for block in text.split("\n\n") {
            let mut fields: BTreeMap<&str, &str> = BTreeMap::new();
            for line in block.lines() {
                if let Some((key, value)) = line.split_once(':') {
                    fields.insert(key.trim(), value.trim());
                }
            }
            let Some(processor) = fields.get("processor").filter(|p| p.parse::<u32>().is_ok())
            else {
                continue;
            };
            let get = |key: &str| fields.get(key).copied().unwrap_or("");
            info.push(
                &[
                    ("cachesize", get("cache size")),
                    ("core", get("core id")),
                    ("cpu", processor),
                    ("family", get("cpu family")),
                    ("microcode", get("microcode")),
                    ("model", get("model")),
                    ("model_name", get("model name")),
                    ("package", get("physical id")),
                    ("stepping", get("stepping")),
                    ("vendor", get("vendor_id")),
                ],
                1.0,
            );
            if std::mem::take(&mut first) {
                // ARM names its flags "Features".
                let cpu_flags = fields.get("flags").or(fields.get("Features")).copied();
                for (values, filter, family, label) in [
                    (cpu_flags, &self.options.flags_include, &mut flags, "flag"),
                    (
                        fields.get("bugs").copied(),
                        &self.options.bugs_include,
                        &mut bugs,
                        "bug",
                    ),
                ] {
                    let (Some(values), Some(filter)) = (values, filter) else {
                        continue;
                    };
                    for value in values.split_ascii_whitespace() {
                        if filter.is_match(value) {
                            family.push(&[(label, value)], 1.0);
                        }
                    }
                }
            }
        }
        if info.is_empty() {
            anyhow::bail!("{}: no processor entries", self.cpuinfo.path().display());
        }
        families.extend([info, flags, bugs]);
        Ok(())
    }

    /// Per-CPU sysfs: thermal throttle counts (per core and per package, each read once) and
    /// online states. Absent files (VMs, non-Intel CPUs) give no series.
    fn sysfs(&self, families: &mut Vec<MetricFamily>) {
        let entries = sorted_entries(&self.cpu_dir).unwrap_or_default();
        let mut cpus: Vec<(u32, PathBuf)> = entries
            .into_iter()
            .filter_map(|(name, path)| Some((name.strip_prefix("cpu")?.parse().ok()?, path)))
            .collect();
        cpus.sort();
        let mut files = self.files.scrape();
        let mut read_u64 =
            |path: PathBuf| -> Option<u64> { files.read_trimmed(&path).ok()?.parse().ok() };
        let mut cores: BTreeMap<(u64, u64), Option<u64>> = BTreeMap::new();
        let mut packages: BTreeMap<u64, Option<u64>> = BTreeMap::new();
        for (_, path) in &cpus {
            let throttle = path.join("thermal_throttle");
            if !throttle.is_dir() {
                continue;
            }
            let (Some(package), Some(core)) = (
                read_u64(path.join("topology/physical_package_id")),
                read_u64(path.join("topology/core_id")),
            ) else {
                continue;
            };
            cores
                .entry((package, core))
                .or_insert_with(|| read_u64(throttle.join("core_throttle_count")));
            packages
                .entry(package)
                .or_insert_with(|| read_u64(throttle.join("package_throttle_count")));
        }
        let mut core_family = MetricFamily::counter(
            "node_cpu_core_throttles_total",
            "Number of times this CPU core has been throttled.",
        );
        for ((package, core), count) in cores {
            if let Some(count) = count {
                core_family.push(
                    &[("core", core.to_string()), ("package", package.to_string())],
                    count as f64,
                );
            }
        }
        let mut package_family = MetricFamily::counter(
            "node_cpu_package_throttles_total",
            "Number of times this CPU package has been throttled.",
        );
        for (package, count) in packages {
            if let Some(count) = count {
                package_family.push(&[("package", package.to_string())], count as f64);
            }
        }
        let mut isolated = MetricFamily::gauge(
            "node_cpu_isolated",
            "Whether each core is isolated, information from /sys/devices/system/cpu/isolated.",
        );
        for cpu in &self.isolated {
            isolated.push(&[("cpu", cpu.to_string())], 1.0);
        }
        // As node_exporter: no series at all when the first CPU has no `online` file (on x86
        // cpu0 usually cannot be taken offline); otherwise one per CPU, 0 where unreadable.
        let mut online = MetricFamily::gauge(
            "node_cpu_online",
            "CPUs that are online and being scheduled.",
        );
        if cpus.first().is_some_and(|(_, p)| p.join("online").exists()) {
            for (number, path) in &cpus {
                let value = read_u64(path.join("online")) == Some(1);
                online.push(
                    &[("cpu", number.to_string())],
                    if value { 1.0 } else { 0.0 },
                );
            }
        }
        families.extend([core_family, package_family, isolated, online]);
    }
}

const MODES: [&str; 8] = [
    "user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal",
];

/// The kernel's CPU list format: `0-3,8,10-11`; empty for none.
fn parse_cpu_list(text: &str) -> Option<Vec<u32>> {
    let mut cpus = Vec::new();
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u32, u32) = (a.parse().ok()?, b.parse().ok()?);
                // A range larger than any real CPU count is garbage, not a loop to run.
                if b < a || b - a > 65_536 {
                    return None;
                }
                cpus.extend(a..=b);
            }
            None => cpus.push(part.parse().ok()?),
        }
    }
    Some(cpus)
}

impl BlockingCollector for Cpu {
    fn collect(&self) -> CollectResult {
        let mut families = Vec::with_capacity(9);
        if self.options.info {
            self.info(&mut families)?;
        }
        self.stat(&mut families)?;
        self.sysfs(&mut families);
        Ok(families)
    }
}

/// A `cpuN ...` line of /proc/stat or /proc/schedstat: the CPU's number and the fields after it
/// (`None` for the `cpu` total line and every other line).
pub(crate) fn numbered_cpu_line(line: &str) -> Option<(&str, std::str::SplitAsciiWhitespace<'_>)> {
    let mut fields = line.split_ascii_whitespace();
    let cpu = fields
        .next()?
        .strip_prefix("cpu")
        .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))?;
    Some((cpu, fields))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect_with_cpuinfo(name: &str, cpuinfo: &str) -> anyhow::Result<Vec<MetricFamily>> {
        let dir = std::env::temp_dir().join(format!("cpuinfo-{name}-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("proc")).unwrap();
        std::fs::write(dir.join("proc/cpuinfo"), cpuinfo).unwrap();
        std::fs::write(dir.join("proc/stat"), "cpu0 1 2 3 4 5 6 7 8 9 10\n").unwrap();
        let paths = Paths {
            procfs: dir.join("proc"),
            sysfs: dir.join("sys"),
            rootfs: dir.clone(),
            udev_data: dir.join("udev"),
        };
        let options = CpuOptions {
            guest: true,
            info: false,
            flags_include: Regex::new("^(neon|vfp)$").ok(),
            bugs_include: None,
        };
        let cpu = Cpu::new(SharedRead::new(paths.proc("stat")), &paths, options);
        let result = cpu.collect();
        std::fs::remove_dir_all(&dir).unwrap();
        result
    }

    #[test]
    fn arm_cpuinfo_and_garbage() {
        // A Raspberry Pi's: "Features" for flags, a trailing block without a processor.
        let arm = "processor\t: 0\nmodel name\t: ARMv7 Processor rev 4 (v7l)\nFeatures\t: half thumb fastmult vfp edsp neon\n\nprocessor\t: 1\nmodel name\t: ARMv7 Processor rev 4 (v7l)\n\nHardware\t: BCM2835\nRevision\t: a02082\n";
        let families = collect_with_cpuinfo("arm", arm).unwrap();
        let family = |name: &str| families.iter().find(|f| f.name == name).unwrap();
        assert_eq!(family("node_cpu_info").samples.len(), 2);
        let flags: Vec<&str> = family("node_cpu_flag_info")
            .samples
            .iter()
            .map(|s| s.labels[0].1.as_str())
            .collect();
        assert_eq!(flags, ["vfp", "neon"]);
        let err = collect_with_cpuinfo("garbage", "\u{0}\u{1}garbage\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("cpuinfo: no processor entries"), "{err}");
    }

    #[test]
    fn cpu_lists() {
        use super::parse_cpu_list;
        assert_eq!(parse_cpu_list(""), Some(vec![]));
        assert_eq!(parse_cpu_list("1-3,8\n"), Some(vec![1, 2, 3, 8]));
        assert_eq!(parse_cpu_list("3-1"), None);
        assert_eq!(parse_cpu_list("0-4294967295"), None);
        assert_eq!(parse_cpu_list("x"), None);
    }
}
