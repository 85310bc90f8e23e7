//! The exporter's own `process_*` series (the names Prometheus' client libraries use) and
//! `<exporter>_build_info`.

use crate::metrics::MetricFamily;

pub const REVISION: &str = env!("BUILD_REVISION");
pub const RUSTC_VERSION: &str = env!("BUILD_RUSTC_VERSION");

pub fn build_info(prefix: &str, version: &str) -> MetricFamily {
    MetricFamily::gauge(
        format!("{prefix}_build_info"),
        format!("A metric with a constant '1' value labeled by version, revision and rustc version from which {prefix} was built."),
    )
    .with(
        &[("version", version), ("revision", REVISION), ("rustc", RUSTC_VERSION)],
        1.0,
    )
}

/// Reads this process' figures from procfs. A figure that cannot be read is left out rather than
/// reported as zero.
pub fn process_metrics() -> Vec<MetricFamily> {
    let mut families = Vec::with_capacity(7);
    // SAFETY: sysconf has no preconditions.
    let (ticks, page) = unsafe {
        (
            libc::sysconf(libc::_SC_CLK_TCK),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    if let Some(stat) = read_self_stat() {
        // Fields after the command name, which is in parentheses and may contain spaces.
        if let Some(after) = stat.rsplit_once(')').map(|(_, rest)| rest) {
            let fields: Vec<&str> = after.split_ascii_whitespace().collect();
            let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<f64>().ok());
            if let (Some(utime), Some(stime)) = (field(14), field(15)) {
                families.push(
                    MetricFamily::counter(
                        "process_cpu_seconds_total",
                        "Total user and system CPU time spent in seconds.",
                    )
                    .with_value((utime + stime) / ticks as f64),
                );
            }
            if let (Some(start), Some(boot)) = (field(22), boot_time()) {
                families.push(
                    MetricFamily::gauge(
                        "process_start_time_seconds",
                        "Start time of the process since unix epoch in seconds.",
                    )
                    .with_value(boot + start / ticks as f64),
                );
            }
            if let Some(vsize) = field(23) {
                families.push(
                    MetricFamily::gauge(
                        "process_virtual_memory_bytes",
                        "Virtual memory size in bytes.",
                    )
                    .with_value(vsize),
                );
            }
            if let Some(rss) = field(24) {
                families.push(
                    MetricFamily::gauge(
                        "process_resident_memory_bytes",
                        "Resident memory size in bytes.",
                    )
                    .with_value(rss * page as f64),
                );
            }
        }
    }
    if let Ok(entries) = std::fs::read_dir("/proc/self/fd") {
        families.push(
            MetricFamily::gauge("process_open_fds", "Number of open file descriptors.")
                .with_value(entries.count() as f64),
        );
    }
    if let Some(max) = rlimit(libc::RLIMIT_NOFILE) {
        families.push(
            MetricFamily::gauge(
                "process_max_fds",
                "Maximum number of open file descriptors.",
            )
            .with_value(max),
        );
    }
    if let Some(max) = rlimit(libc::RLIMIT_AS) {
        families.push(
            MetricFamily::gauge(
                "process_virtual_memory_max_bytes",
                "Maximum amount of virtual memory available in bytes.",
            )
            .with_value(max),
        );
    }
    families
}

/// /proc/self/stat, from a file opened once and read again from offset 0 (procfs regenerates
/// it on such a read): no path lookup, open and close per scrape. One read of a few hundred
/// bytes, where `fs::read_to_string` (procfs reports a size of 0) takes six growing ones.
fn read_self_stat() -> Option<String> {
    use std::os::unix::fs::FileExt;
    static FILE: std::sync::Mutex<Option<std::fs::File>> = std::sync::Mutex::new(None);
    let mut kept = FILE.lock().unwrap_or_else(|p| p.into_inner());
    if kept.is_none() {
        *kept = std::fs::File::open("/proc/self/stat").ok();
    }
    let file = kept.as_ref()?;
    let mut buf = [0u8; 4096];
    let mut len = 0;
    while len < buf.len() {
        match file.read_at(&mut buf[len..], len as u64) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    String::from_utf8(buf[..len].to_vec()).ok()
}

/// Boot time from /proc/stat, read once: it does not change, and /proc/stat is costly to
/// generate on hosts with many interrupts.
fn boot_time() -> Option<f64> {
    static BOOT_TIME: std::sync::OnceLock<Option<f64>> = std::sync::OnceLock::new();
    *BOOT_TIME.get_or_init(|| {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        stat.lines()
            .find_map(|l| l.strip_prefix("btime "))
            .and_then(|v| v.trim().parse().ok())
    })
}

/// getrlimit's resource type: glibc has its own enum type, musl a plain int.
#[cfg(target_env = "gnu")]
type RlimitResource = libc::__rlimit_resource_t;
#[cfg(not(target_env = "gnu"))]
type RlimitResource = libc::c_int;

fn rlimit(resource: RlimitResource) -> Option<f64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass and nothing else.
    let rc = unsafe { libc::getrlimit(resource, &mut limit) };
    if rc != 0 {
        return None;
    }
    // Unlimited is reported as the largest value, as the Go client does.
    Some(limit.rlim_cur as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let families = process_metrics();
        let get = |name: &str| {
            families
                .iter()
                .find(|f| f.name == name)
                .map(|f| f.samples[0].value)
                .unwrap_or_else(|| panic!("{name} missing"))
        };
        assert!(get("process_resident_memory_bytes") > 1024.0 * 1024.0);
        assert!(get("process_virtual_memory_bytes") >= get("process_resident_memory_bytes"));
        assert!(get("process_open_fds") >= 3.0);
        assert!(get("process_max_fds") >= get("process_open_fds"));
        let start = get("process_start_time_seconds");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(
            start <= now + 1.0 && start > now - 3600.0,
            "start {start} now {now}"
        );
        // Read afresh each time, though the file stays open: burnt CPU shows (spinning until
        // it does, for up to 5 s, so a loaded machine does not make this fail).
        let before = get("process_cpu_seconds_total");
        let cpu_seconds = || {
            process_metrics()
                .into_iter()
                .find(|f| f.name == "process_cpu_seconds_total")
                .map(|f| f.samples[0].value)
                .unwrap()
        };
        let give_up = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut after = cpu_seconds();
        let mut spins = 0u64;
        while after <= before && std::time::Instant::now() < give_up {
            for _ in 0..1_000_000 {
                spins = std::hint::black_box(spins + 1);
            }
            after = cpu_seconds();
        }
        assert!(after > before, "cpu seconds {before} -> {after}");
    }
}
