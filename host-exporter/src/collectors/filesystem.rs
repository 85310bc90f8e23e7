//! Filesystem sizes, free space and inodes for every mount in /proc/1/mountinfo, by statvfs(2).
//!
//! statvfs on a dead NFS server or a wedged FUSE daemon blocks forever. As node_exporter does,
//! each call gets `--collector.filesystem.mount-timeout`; a mount that does not answer in time is
//! "stuck": it is reported with `device_error` 1 and not asked again until the stuck call returns.
//! The calls run on one long-lived worker thread, replaced when it hangs.

use crate::filter::DeviceFilter;
use crate::kept_file::KeptFile;
use crate::paths::Paths;
use common::{log, BlockingCollector, CollectResult, MetricFamily};
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const DEFAULT_MOUNT_POINTS_EXCLUDE: &str =
    r"^/(dev|proc|run/credentials/.+|sys|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)";
pub const DEFAULT_FS_TYPES_EXCLUDE: &str = r"^(autofs|binfmt_misc|bpf|cgroup2?|configfs|debugfs|devpts|devtmpfs|fusectl|hugetlbfs|iso9660|mqueue|nsfs|overlay|proc|procfs|pstore|rpc_pipefs|securityfs|selinuxfs|squashfs|erofs|sysfs|tracefs)$";

/// What statvfs tells about one mount.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FsStats {
    pub size: f64,
    pub free: f64,
    pub avail: f64,
    pub files: f64,
    pub files_free: f64,
}

/// The call that may hang; replaceable in tests.
pub type StatFn = Arc<dyn Fn(&std::path::Path) -> std::io::Result<FsStats> + Send + Sync>;

pub fn statvfs(path: &std::path::Path) -> std::io::Result<FsStats> {
    let s = rustix::fs::statvfs(path)?;
    let unit = s.f_frsize as f64;
    Ok(FsStats {
        size: s.f_blocks as f64 * unit,
        free: s.f_bfree as f64 * unit,
        avail: s.f_bavail as f64 * unit,
        files: s.f_files as f64,
        files_free: s.f_ffree as f64,
    })
}

pub struct Filesystem {
    paths: Paths,
    /// pid 1's mountinfo (the host's, under `--pid=host`) and our own, the fallback.
    init_mountinfo: KeptFile,
    own_mountinfo: KeptFile,
    mount_points: DeviceFilter,
    fs_types: DeviceFilter,
    mount_timeout: Duration,
    stat: StatFn,
    /// Mount points whose statvfs has not returned yet.
    stuck: Arc<Mutex<HashSet<String>>>,
    worker: Mutex<Option<StatWorker>>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Mount {
    pub device: String,
    pub mount_point: String,
    pub fs_type: String,
    pub read_only: bool,
}

impl Filesystem {
    pub fn new(
        paths: &Paths,
        mount_points: DeviceFilter,
        fs_types: DeviceFilter,
        mount_timeout: Duration,
    ) -> Self {
        Self::with_stat(
            paths,
            mount_points,
            fs_types,
            mount_timeout,
            Arc::new(statvfs),
        )
    }

    pub fn with_stat(
        paths: &Paths,
        mount_points: DeviceFilter,
        fs_types: DeviceFilter,
        mount_timeout: Duration,
        stat: StatFn,
    ) -> Self {
        Filesystem {
            paths: paths.clone(),
            init_mountinfo: KeptFile::new(paths.proc("1/mountinfo")),
            own_mountinfo: KeptFile::new(paths.proc("self/mountinfo")),
            mount_points,
            fs_types,
            mount_timeout,
            stat,
            stuck: Arc::new(Mutex::new(HashSet::new())),
            worker: Mutex::new(None),
        }
    }

    /// Mounts from pid 1's mountinfo (the host's, under `--pid=host`), else our own.
    fn mounts(&self) -> anyhow::Result<Vec<Mount>> {
        let text = match self.init_mountinfo.read_io() {
            Ok(t) => t,
            Err(_) => self.own_mountinfo.read()?,
        };
        let mut mounts = Vec::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            match parse_mountinfo_line(line) {
                Some(mut m) => {
                    m.mount_point = self.paths.host_mount_point(&m.mount_point);
                    mounts.push(m);
                }
                None => log::warn("skipping unparsable mountinfo line", &[("line", line)]),
            }
        }
        Ok(mounts)
    }
}

/// Parses one mountinfo line:
/// `36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue`.
pub fn parse_mountinfo_line(line: &str) -> Option<Mount> {
    let (before, after) = line.split_once(" - ")?;
    // Fields 5 and 6: the mount point and its options.
    let mut fields = before.split(' ');
    let mount_point = fields.nth(4)?;
    let mount_options = fields.next()?;
    let mut rest = after.split(' ');
    let fs_type = unescape(rest.next()?);
    let device = unescape(rest.next()?);
    let super_options = rest.next().unwrap_or("");
    let has_ro = |opts: &str| opts.split(',').any(|o| o == "ro");
    Some(Mount {
        device,
        mount_point: unescape(mount_point),
        fs_type,
        read_only: has_ro(mount_options) || has_ro(super_options),
    })
}

/// The kernel writes space, tab, newline and backslash in mount fields as `\040`, `\011`,
/// `\012` and `\134`.
fn unescape(field: &str) -> String {
    if !field.contains('\\') {
        return field.to_string();
    }
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 4 <= bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let value =
                (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0');
            out.push(value);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

enum Outcome {
    Stats(FsStats),
    Error(std::io::Error),
    Stuck,
}

/// One statvfs request: the mount point (for the stuck set), the path to ask, and a flag the
/// worker sets when the call has returned.
type Job = (String, PathBuf, Arc<AtomicBool>);

/// A long-lived thread that runs statvfs calls one at a time, so a scrape does not pay for a
/// new thread. When a call hangs the worker is abandoned; it exits once the call returns.
struct StatWorker {
    jobs: mpsc::Sender<Job>,
    results: mpsc::Receiver<std::io::Result<FsStats>>,
}

impl Filesystem {
    fn start_worker(&self) -> std::io::Result<StatWorker> {
        let (jobs_tx, jobs_rx) = mpsc::channel::<Job>();
        let (results_tx, results_rx) = mpsc::channel();
        let stat = self.stat.clone();
        let stuck = self.stuck.clone();
        std::thread::Builder::new()
            .name("statvfs".into())
            .spawn(move || {
                for (mount_point, path, finished) in jobs_rx {
                    let result = stat(&path);
                    {
                        let mut stuck = stuck.lock().unwrap_or_else(|p| p.into_inner());
                        finished.store(true, Ordering::Release);
                        if stuck.remove(&mount_point) {
                            log::info(
                                "stuck mount answered again",
                                &[("mountpoint", &mount_point)],
                            );
                        }
                    }
                    if results_tx.send(result).is_err() {
                        return;
                    }
                }
            })?;
        Ok(StatWorker {
            jobs: jobs_tx,
            results: results_rx,
        })
    }

    /// statvfs for each mount, waiting at most `mount_timeout` for each. All calls are queued
    /// at once, so the worker runs them back to back instead of waking once per mount; when one
    /// hangs, the worker is abandoned and the mounts after it go to a new one.
    fn stat_all(&self, targets: &[(String, PathBuf)]) -> Vec<Outcome> {
        let mut worker = self.worker.lock().unwrap_or_else(|p| p.into_inner());
        let mut outcomes = Vec::with_capacity(targets.len());
        while outcomes.len() < targets.len() {
            let remaining = &targets[outcomes.len()..];
            let w = match worker.take() {
                Some(w) => w,
                None => match self.start_worker() {
                    Ok(w) => w,
                    Err(e) => {
                        let message = e.to_string();
                        outcomes.push(Outcome::Error(e));
                        outcomes.extend(
                            remaining[1..]
                                .iter()
                                .map(|_| Outcome::Error(std::io::Error::other(message.clone()))),
                        );
                        break;
                    }
                },
            };
            let mut finished = Vec::with_capacity(remaining.len());
            for (mount_point, path) in remaining {
                let done = Arc::new(AtomicBool::new(false));
                // A send fails only when the worker is gone; the receive below then reports it.
                let _ = w
                    .jobs
                    .send((mount_point.clone(), path.clone(), done.clone()));
                finished.push(done);
            }
            let mut healthy = true;
            for ((mount_point, _), done) in remaining.iter().zip(&finished) {
                match w.results.recv_timeout(self.mount_timeout) {
                    Ok(Ok(stats)) => outcomes.push(Outcome::Stats(stats)),
                    Ok(Err(e)) => outcomes.push(Outcome::Error(e)),
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        {
                            // Under the same lock as the worker's, so a call that returns right
                            // now cannot leave the mount marked stuck for ever.
                            let mut stuck = self.stuck.lock().unwrap_or_else(|p| p.into_inner());
                            if !done.load(Ordering::Acquire) {
                                stuck.insert(mount_point.clone());
                            }
                        }
                        log::error(
                            "statvfs did not answer in time; marking the mount as stuck",
                            &[
                                ("mountpoint", mount_point),
                                ("timeout", &format!("{:?}", self.mount_timeout)),
                            ],
                        );
                        outcomes.push(Outcome::Stuck);
                        healthy = false;
                        break;
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => {
                        outcomes.push(Outcome::Error(std::io::Error::other(
                            "statvfs worker ended",
                        )));
                        healthy = false;
                        break;
                    }
                }
            }
            if healthy {
                *worker = Some(w);
            }
        }
        outcomes
    }
}

impl BlockingCollector for Filesystem {
    fn collect(&self) -> CollectResult {
        let mut seen = HashSet::new();
        let mut selected = Vec::new();
        for m in self.mounts()? {
            if self.mount_points.ignored(&m.mount_point) || self.fs_types.ignored(&m.fs_type) {
                continue;
            }
            // Bind mounts of the same device at the same place would repeat a label set.
            if !seen.insert((m.device.clone(), m.mount_point.clone(), m.fs_type.clone())) {
                continue;
            }
            selected.push(m);
        }
        let stuck_now: HashSet<String> = self.stuck.lock().map(|s| s.clone()).unwrap_or_default();
        let (to_stat, already_stuck): (Vec<&Mount>, Vec<&Mount>) = selected
            .iter()
            .partition(|m| !stuck_now.contains(&m.mount_point));
        let targets: Vec<(String, PathBuf)> = to_stat
            .iter()
            .map(|m| (m.mount_point.clone(), self.paths.rooted(&m.mount_point)))
            .collect();
        let outcomes = self.stat_all(&targets);

        let mut size =
            MetricFamily::gauge("node_filesystem_size_bytes", "Filesystem size in bytes.");
        let mut free = MetricFamily::gauge(
            "node_filesystem_free_bytes",
            "Filesystem free space in bytes.",
        );
        let mut avail = MetricFamily::gauge(
            "node_filesystem_avail_bytes",
            "Filesystem space available to non-root users in bytes.",
        );
        let mut files =
            MetricFamily::gauge("node_filesystem_files", "Filesystem total file nodes.");
        let mut files_free = MetricFamily::gauge(
            "node_filesystem_files_free",
            "Filesystem total free file nodes.",
        );
        let mut readonly =
            MetricFamily::gauge("node_filesystem_readonly", "Filesystem read-only status.");
        let mut device_error = MetricFamily::gauge(
            "node_filesystem_device_error",
            "Whether an error occurred while getting statistics for the given device.",
        );

        let labels = |m: &Mount| {
            [
                ("device", m.device.clone()),
                ("fstype", m.fs_type.clone()),
                ("mountpoint", m.mount_point.clone()),
            ]
        };
        for (m, outcome) in to_stat.iter().zip(outcomes) {
            let l = labels(m);
            match outcome {
                Outcome::Stats(s) => {
                    size.push(&l, s.size);
                    free.push(&l, s.free);
                    avail.push(&l, s.avail);
                    files.push(&l, s.files);
                    files_free.push(&l, s.files_free);
                    readonly.push(&l, if m.read_only { 1.0 } else { 0.0 });
                    device_error.push(&l, 0.0);
                }
                Outcome::Error(e) => {
                    log::debug(
                        "statvfs failed",
                        &[("mountpoint", &m.mount_point), ("err", &e.to_string())],
                    );
                    readonly.push(&l, if m.read_only { 1.0 } else { 0.0 });
                    device_error.push(&l, 1.0);
                }
                Outcome::Stuck => {
                    readonly.push(&l, if m.read_only { 1.0 } else { 0.0 });
                    device_error.push(&l, 1.0);
                }
            }
        }
        for m in already_stuck {
            log::debug("skipping stuck mount", &[("mountpoint", &m.mount_point)]);
            let l = labels(m);
            readonly.push(&l, if m.read_only { 1.0 } else { 0.0 });
            device_error.push(&l, 1.0);
        }
        Ok(vec![
            size,
            free,
            avail,
            files,
            files_free,
            readonly,
            device_error,
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn mountinfo_lines_with_escapes_and_options() {
        let m = parse_mountinfo_line(
            r"36 35 98:0 / /mnt/my\040disk\011tab rw,noatime master:1 - ext4 /dev/sd\134b1 rw,errors=continue",
        )
        .unwrap();
        assert_eq!(m.mount_point, "/mnt/my disk\ttab");
        assert_eq!(m.device, r"/dev/sd\b1");
        assert_eq!(m.fs_type, "ext4");
        assert!(!m.read_only);
        let ro = parse_mountinfo_line("1 2 0:1 / /ro ro,relatime - ext4 /dev/x rw").unwrap();
        assert!(ro.read_only);
        let super_ro =
            parse_mountinfo_line("1 2 0:1 / /sro rw shared:5 - squashfs /dev/loop0 ro").unwrap();
        assert!(super_ro.read_only);
        assert!(parse_mountinfo_line("garbage line").is_none());
        assert!(parse_mountinfo_line("1 2 - x").is_none());
        // Five fields before the separator: no mount options.
        assert!(parse_mountinfo_line("1 2 0:1 / /five - ext4 /dev/x rw").is_none());
        // An escape that is not UTF-8 is replaced, not a reason to drop the mount.
        let bad = parse_mountinfo_line(r"1 2 0:1 / /bad\377 rw - ext4 /dev/x rw").unwrap();
        assert_eq!(bad.mount_point, "/bad\u{FFFD}");
    }

    fn fixture(dir: &std::path::Path, mountinfo: &str) -> Paths {
        std::fs::create_dir_all(dir.join("proc/1")).unwrap();
        std::fs::write(dir.join("proc/1/mountinfo"), mountinfo).unwrap();
        Paths {
            procfs: dir.join("proc"),
            sysfs: dir.join("sys"),
            rootfs: "/".into(),
            udev_data: dir.join("udev"),
        }
    }

    fn value(families: &[MetricFamily], name: &str, mount_point: &str) -> Option<f64> {
        families
            .iter()
            .find(|f| f.name == name)?
            .samples
            .iter()
            .find(|s| {
                s.labels
                    .iter()
                    .any(|(k, v)| k == "mountpoint" && v == mount_point)
            })
            .map(|s| s.value)
    }

    #[test]
    fn a_hanging_statvfs_marks_the_mount_stuck_and_the_rest_is_served() {
        let dir = std::env::temp_dir().join(format!("fs-stuck-{}", std::process::id()));
        let paths = fixture(
            &dir,
            "1 0 8:1 / / rw - ext4 /dev/sda1 rw\n2 1 0:50 / /mnt/nfs rw - nfs4 server:/export rw\n3 1 8:2 / /data rw - xfs /dev/sda2 rw\n4 1 0:5 / /proc rw - proc proc rw\n",
        );
        let release = Arc::new(AtomicBool::new(false));
        let released = release.clone();
        let stat: StatFn = Arc::new(move |path| {
            if path.ends_with("nfs") {
                while !released.load(Ordering::Acquire) {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
            Ok(FsStats {
                size: 100.0,
                free: 50.0,
                avail: 40.0,
                files: 10.0,
                files_free: 5.0,
            })
        });
        let fs = Filesystem::with_stat(
            &paths,
            DeviceFilter::exclude(DEFAULT_MOUNT_POINTS_EXCLUDE),
            DeviceFilter::exclude(DEFAULT_FS_TYPES_EXCLUDE),
            Duration::from_millis(100),
            stat,
        );
        let started = Instant::now();
        let families = fs.collect().unwrap();
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(
            value(&families, "node_filesystem_size_bytes", "/"),
            Some(100.0)
        );
        assert_eq!(
            value(&families, "node_filesystem_avail_bytes", "/data"),
            Some(40.0)
        );
        assert_eq!(
            value(&families, "node_filesystem_size_bytes", "/mnt/nfs"),
            None
        );
        assert_eq!(
            value(&families, "node_filesystem_device_error", "/mnt/nfs"),
            Some(1.0)
        );
        assert_eq!(
            value(&families, "node_filesystem_device_error", "/proc"),
            None,
            "excluded fs type"
        );

        // While stuck, the mount is not asked again: the next scrape is immediate.
        let started = Instant::now();
        let families = fs.collect().unwrap();
        assert!(
            started.elapsed() < Duration::from_millis(90),
            "stuck mount was retried"
        );
        assert_eq!(
            value(&families, "node_filesystem_device_error", "/mnt/nfs"),
            Some(1.0)
        );

        // Once the call returns, the mount is served again.
        release.store(true, Ordering::Release);
        let deadline = Instant::now() + Duration::from_secs(5);
        while fs.stuck.lock().unwrap().contains("/mnt/nfs") && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let families = fs.collect().unwrap();
        assert_eq!(
            value(&families, "node_filesystem_size_bytes", "/mnt/nfs"),
            Some(100.0)
        );
        assert_eq!(
            value(&families, "node_filesystem_device_error", "/mnt/nfs"),
            Some(0.0)
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn statvfs_errors_set_device_error_and_drop_sizes() {
        let dir = std::env::temp_dir().join(format!("fs-err-{}", std::process::id()));
        let paths = fixture(&dir, "1 0 8:1 / /gone rw - ext4 /dev/sda1 ro\n");
        let stat: StatFn = Arc::new(|_| Err(std::io::Error::from_raw_os_error(libc::EACCES)));
        let fs = Filesystem::with_stat(
            &paths,
            DeviceFilter::default(),
            DeviceFilter::default(),
            Duration::from_secs(1),
            stat,
        );
        let families = fs.collect().unwrap();
        assert_eq!(
            value(&families, "node_filesystem_device_error", "/gone"),
            Some(1.0)
        );
        assert_eq!(
            value(&families, "node_filesystem_readonly", "/gone"),
            Some(1.0)
        );
        assert_eq!(
            value(&families, "node_filesystem_size_bytes", "/gone"),
            None
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
