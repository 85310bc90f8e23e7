//! Btrfs filesystems, in node_exporter's names: from /sys/fs/btrfs/<uuid> the label, global
//! reserve, commit statistics and space per block group type and profile; and, for each
//! mounted filesystem, per device its size, unused bytes and I/O error counters from the
//! BTRFS_IOC_DEV_INFO and BTRFS_IOC_GET_DEV_STATS ioctls (as node_exporter gets them). Where
//! the ioctls cannot be made (not mounted, or not permitted) the device size comes from sysfs,
//! without the `btrfs_dev_uuid` label, as node_exporter falls back.
//!
//! Mount points are opened anew on each scrape and closed: a descriptor kept open would make
//! the filesystem busy and stop it being unmounted.

use crate::collectors::filesystem::parse_mountinfo_line;
use crate::kept_file::KeptFile;
use crate::paths::{entries_if_present, if_present, read_sysfs_value, sorted_entries, Paths};
use common::{log, BlockingCollector, CollectResult, MetricFamily};
use std::collections::{BTreeMap, HashSet};
use std::path::Path;

pub struct Btrfs {
    paths: Paths,
    /// pid 1's mountinfo (the host's, under `--pid=host`) and our own, the fallback.
    init_mountinfo: KeptFile,
    own_mountinfo: KeptFile,
}

impl Btrfs {
    pub fn new(paths: &Paths) -> Self {
        Btrfs {
            paths: paths.clone(),
            init_mountinfo: KeptFile::new(paths.proc("1/mountinfo")),
            own_mountinfo: KeptFile::new(paths.proc("self/mountinfo")),
        }
    }
}

/// One filesystem as sysfs describes it.
#[derive(Debug, Default, PartialEq)]
struct FsStats {
    uuid: String,
    label: String,
    global_rsv_size: u64,
    /// commits, last, max and total commit time in milliseconds (zero before Linux 6.0).
    commits: [u64; 4],
    /// Per block group type (data, metadata, system): reserved bytes, and per profile
    /// (single, dup, raid1 ...) used bytes, total bytes and the allocation ratio.
    groups: Vec<(&'static str, u64, Vec<Layout>)>,
    /// Device name and size in bytes.
    devices: Vec<(String, u64)>,
}

/// A profile of a block group type: mode, used bytes, total bytes, allocation ratio.
type Layout = (String, u64, u64, f64);

/// One device as the ioctls describe it.
#[derive(Debug, PartialEq)]
struct DevStats {
    name: String,
    uuid: String,
    total_bytes: u64,
    used_bytes: u64,
    /// write, read, flush, corruption and generation errors, in the kernel's order.
    errors: [u64; 5],
}

const ERROR_TYPES: [&str; 5] = ["write", "read", "flush", "corruption", "generation"];

impl BlockingCollector for Btrfs {
    fn collect(&self) -> CollectResult {
        let dir = self.paths.sys("fs/btrfs");
        // No btrfs module: nothing to report.
        let Some(entries) = entries_if_present(&dir)? else {
            return Ok(vec![]);
        };
        let ioctl_stats = self.ioctl_stats();
        let mut f = Families::new();
        // A filesystem's directory is its UUID; `features` is the module's.
        for (name, path) in entries
            .iter()
            .filter(|(n, p)| n.contains('-') && p.is_dir())
        {
            let stats = match read_fs(name, path) {
                Ok(s) => s,
                Err(e) => {
                    log::warn(
                        "skipping btrfs filesystem",
                        &[("path", &path.display().to_string()), ("err", &e)],
                    );
                    continue;
                }
            };
            let devices = ioctl_stats.get(&stats.uuid.replace('-', ""));
            f.push(&stats, devices.map(Vec::as_slice));
        }
        Ok(f.into_vec())
    }
}

struct Families {
    info: MetricFamily,
    rsv: MetricFamily,
    commits: MetricFamily,
    last_commit: MetricFamily,
    max_commit: MetricFamily,
    commit_seconds: MetricFamily,
    reserved: MetricFamily,
    used: MetricFamily,
    size: MetricFamily,
    ratio: MetricFamily,
    device_size: MetricFamily,
    device_unused: MetricFamily,
    device_errors: MetricFamily,
}

impl Families {
    fn new() -> Self {
        let g = MetricFamily::gauge;
        let c = MetricFamily::counter;
        Families {
            info: g("node_btrfs_info", "Filesystem information"),
            rsv: g(
                "node_btrfs_global_rsv_size_bytes",
                "Size of global reserve.",
            ),
            commits: c(
                "node_btrfs_commits_total",
                "The total number of commits that have occurred.",
            ),
            last_commit: g(
                "node_btrfs_last_commit_seconds",
                "Duration of the most recent commit, in seconds.",
            ),
            max_commit: g(
                "node_btrfs_max_commit_seconds",
                "Duration of the slowest commit, in seconds.",
            ),
            commit_seconds: c(
                "node_btrfs_commit_seconds_total",
                "Sum of the duration of all commits, in seconds.",
            ),
            reserved: g(
                "node_btrfs_reserved_bytes",
                "Amount of space reserved for a data type",
            ),
            used: g(
                "node_btrfs_used_bytes",
                "Amount of used space by a layout/data type",
            ),
            size: g(
                "node_btrfs_size_bytes",
                "Amount of space allocated for a layout/data type",
            ),
            ratio: g(
                "node_btrfs_allocation_ratio",
                "Data allocation ratio for a layout/data type",
            ),
            device_size: g(
                "node_btrfs_device_size_bytes",
                "Size of a device that is part of the filesystem.",
            ),
            device_unused: g(
                "node_btrfs_device_unused_bytes",
                "Unused bytes unused on a device that is part of the filesystem.",
            ),
            device_errors: c(
                "node_btrfs_device_errors_total",
                "Errors reported for the device",
            ),
        }
    }

    fn push(&mut self, s: &FsStats, devices: Option<&[DevStats]>) {
        let uuid = s.uuid.as_str();
        self.info
            .push(&[("label", s.label.as_str()), ("uuid", uuid)], 1.0);
        self.rsv.push(&[("uuid", uuid)], s.global_rsv_size as f64);
        let [commits, last_ms, max_ms, total_ms] = s.commits;
        self.commits.push(&[("uuid", uuid)], commits as f64);
        self.last_commit
            .push(&[("uuid", uuid)], last_ms as f64 / 1000.0);
        self.max_commit
            .push(&[("uuid", uuid)], max_ms as f64 / 1000.0);
        self.commit_seconds
            .push(&[("uuid", uuid)], total_ms as f64 / 1000.0);
        for (group, reserved, layouts) in &s.groups {
            self.reserved.push(
                &[("block_group_type", *group), ("uuid", uuid)],
                *reserved as f64,
            );
            for (mode, used, total, ratio) in layouts {
                let labels = [
                    ("block_group_type", *group),
                    ("mode", mode.as_str()),
                    ("uuid", uuid),
                ];
                self.used.push(&labels, *used as f64);
                self.size.push(&labels, *total as f64);
                self.ratio.push(&labels, *ratio);
            }
        }
        match devices {
            None => {
                for (name, bytes) in &s.devices {
                    self.device_size
                        .push(&[("device", name.as_str()), ("uuid", uuid)], *bytes as f64);
                }
            }
            Some(devices) => {
                for d in devices {
                    let labels = [
                        ("btrfs_dev_uuid", d.uuid.as_str()),
                        ("device", &d.name),
                        ("uuid", uuid),
                    ];
                    self.device_size.push(&labels, d.total_bytes as f64);
                    self.device_unused
                        .push(&labels, d.total_bytes.saturating_sub(d.used_bytes) as f64);
                    for (kind, value) in ERROR_TYPES.iter().zip(d.errors) {
                        self.device_errors.push(
                            &[
                                ("btrfs_dev_uuid", d.uuid.as_str()),
                                ("device", &d.name),
                                ("type", kind),
                                ("uuid", uuid),
                            ],
                            value as f64,
                        );
                    }
                }
            }
        }
    }

    fn into_vec(self) -> Vec<MetricFamily> {
        vec![
            self.info,
            self.rsv,
            self.commits,
            self.last_commit,
            self.max_commit,
            self.commit_seconds,
            self.reserved,
            self.used,
            self.size,
            self.ratio,
            self.device_size,
            self.device_unused,
            self.device_errors,
        ]
    }
}

/// A sysfs file's text; a missing file reads as empty, as procfs treats it (older kernels
/// lack some); any other error fails the filesystem.
fn read_text(path: &Path) -> Result<String, String> {
    if_present(read_sysfs_value(path))
        .map(Option::unwrap_or_default)
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// A number from sysfs; what does not parse counts 0, as in node_exporter.
fn read_number(path: &Path) -> Result<u64, String> {
    Ok(read_text(path)?.parse().unwrap_or(0))
}

fn read_fs(dir_name: &str, dir: &Path) -> Result<FsStats, String> {
    let list = |p: &Path| sorted_entries(p).map_err(|e| format!("{}: {e}", p.display()));
    let mut devices = Vec::new();
    for (name, path) in list(&dir.join("devices"))? {
        // The kernel's `size` is in 512-byte sectors whatever the device's block size.
        devices.push((name, 512 * read_number(&path.join("size"))?));
    }
    let mut uuid = read_text(&dir.join("metadata_uuid"))?;
    if uuid.is_empty() {
        uuid = dir_name.to_string();
    }
    let mut groups = Vec::new();
    for group in ["data", "metadata", "system"] {
        let gdir = dir.join("allocation").join(group);
        let mut layouts = Vec::new();
        for (mode, path) in list(&gdir)?.into_iter().filter(|(_, p)| p.is_dir()) {
            let ratio = allocation_ratio(&mode, devices.len());
            layouts.push((
                mode,
                read_number(&path.join("used_bytes"))?,
                read_number(&path.join("total_bytes"))?,
                ratio,
            ));
        }
        groups.push((group, read_number(&gdir.join("bytes_reserved"))?, layouts));
    }
    Ok(FsStats {
        uuid,
        label: read_text(&dir.join("label"))?,
        global_rsv_size: read_number(&dir.join("allocation/global_rsv_size"))?,
        commits: commit_stats(&dir.join("commit_stats"))?,
        groups,
        devices,
    })
}

/// Copies of the data each profile keeps, as node_exporter (procfs) computes it; 0 for the
/// profiles it does not know (raid1c3, raid1c4).
fn allocation_ratio(mode: &str, devices: usize) -> f64 {
    let n = devices as f64;
    match mode {
        "single" | "raid0" => 1.0,
        "dup" | "raid1" | "raid10" => 2.0,
        "raid5" => n / (n - 1.0),
        "raid6" => n / (n - 2.0),
        _ => 0.0,
    }
}

/// `commits 12\nlast_commit_ms 3\n...` (Linux 6.0+): commits, last, max and total ms.
fn commit_stats(path: &Path) -> Result<[u64; 4], String> {
    let Some(text) = if_present(std::fs::read_to_string(path))
        .map_err(|e| format!("{}: {e}", path.display()))?
    else {
        return Ok([0; 4]);
    };
    let mut values = [0; 4];
    for line in text.lines() {
        let (key, value) = match line.split_ascii_whitespace().collect::<Vec<_>>()[..] {
            [key, value] => (key, value),
            _ => return Err(format!("{}: unexpected line {line:?}", path.display())),
        };
        let value: u64 = value
            .parse()
            .map_err(|_| format!("{}: not a number in {line:?}", path.display()))?;
        let slot = match key {
            "commits" => 0,
            "last_commit_ms" => 1,
            "max_commit_ms" => 2,
            "total_commit_ms" => 3,
            _ => continue,
        };
        values[slot] = value;
    }
    Ok(values)
}

impl Btrfs {
    /// Device statistics of every mounted btrfs filesystem, by filesystem id (hex, no dashes).
    /// Failures are logged at debug level and leave that filesystem to the sysfs fallback.
    fn ioctl_stats(&self) -> BTreeMap<String, Vec<DevStats>> {
        let mut by_fsid = BTreeMap::new();
        let text = match self.init_mountinfo.read_io() {
            Ok(t) => t,
            Err(_) => match self.own_mountinfo.read_io() {
                Ok(t) => t,
                Err(_) => return by_fsid,
            },
        };
        let mut devices_done = HashSet::new();
        for mount in text.lines().filter_map(parse_mountinfo_line) {
            if mount.fs_type != "btrfs" || devices_done.contains(&mount.device) {
                continue;
            }
            let path = self
                .paths
                .rooted(&self.paths.host_mount_point(&mount.mount_point));
            match ioctl::device_stats(&path) {
                Ok((fsid, devices)) => {
                    devices_done.insert(mount.device);
                    by_fsid.entry(fsid).or_insert(devices);
                }
                Err(e) => log::debug(
                    "cannot query btrfs device stats",
                    &[
                        ("path", &path.display().to_string()),
                        ("err", &e.to_string()),
                    ],
                ),
            }
        }
        by_fsid
    }
}

/// The three btrfs ioctls node_exporter makes, with the kernel's argument layouts
/// (include/uapi/linux/btrfs.h).
mod ioctl {
    use super::DevStats;
    use std::os::fd::AsRawFd;
    use std::path::Path;

    const MAGIC: u64 = 0x94;

    #[repr(C)]
    struct FsInfoArgs {
        max_id: u64,
        num_devices: u64,
        fsid: [u8; 16],
        rest: [u8; 1024 - 32],
    }

    #[repr(C)]
    struct DevInfoArgs {
        devid: u64,
        uuid: [u8; 16],
        bytes_used: u64,
        total_bytes: u64,
        fsid: [u8; 16],
        unused: [u64; 377],
        path: [u8; 1024],
    }

    #[repr(C)]
    struct DevStatsArgs {
        devid: u64,
        nr_items: u64,
        flags: u64,
        values: [u64; 5],
        unused: [u64; 121],
    }

    const _: () = assert!(std::mem::size_of::<FsInfoArgs>() == 1024);
    const _: () = assert!(std::mem::size_of::<DevInfoArgs>() == 4096);
    const _: () = assert!(std::mem::size_of::<DevStatsArgs>() == 1032);

    /// `_IOR` / `_IOWR` of asm-generic/ioctl.h.
    const fn request(dir: u64, nr: u64, size: usize) -> u64 {
        (dir << 30) | ((size as u64) << 16) | (MAGIC << 8) | nr
    }
    const FS_INFO: u64 = request(2, 31, std::mem::size_of::<FsInfoArgs>());
    const DEV_INFO: u64 = request(3, 30, std::mem::size_of::<DevInfoArgs>());
    const GET_DEV_STATS: u64 = request(3, 52, std::mem::size_of::<DevStatsArgs>());

    fn call<T>(fd: i32, request: u64, args: &mut T) -> std::io::Result<()> {
        // SAFETY: `args` is a #[repr(C)] struct of the size encoded in `request`, which the
        // kernel reads and writes within; the fd is open.
        let rc = unsafe { libc::ioctl(fd, request as _, args as *mut T) };
        if rc < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// The filesystem id (hex) and its devices' sizes and error counters.
    pub fn device_stats(mount_point: &Path) -> std::io::Result<(String, Vec<DevStats>)> {
        let dir = std::fs::File::open(mount_point)?;
        let fd = dir.as_raw_fd();
        // SAFETY (zeroed): plain integer arrays, for which all-zero is valid.
        let mut info: FsInfoArgs = unsafe { std::mem::zeroed() };
        call(fd, FS_INFO, &mut info)?;
        let fsid: String = info.fsid.iter().map(|b| format!("{b:02x}")).collect();
        let mut devices = Vec::new();
        for devid in 0..=info.max_id {
            let mut dev: Box<DevInfoArgs> = Box::new(unsafe { std::mem::zeroed() });
            dev.devid = devid;
            match call(fd, DEV_INFO, &mut *dev) {
                // Device ids need not start at 0 nor be contiguous.
                Err(e) if e.raw_os_error() == Some(libc::ENODEV) => continue,
                Err(e) => return Err(e),
                Ok(()) => {}
            }
            let mut stats: DevStatsArgs = unsafe { std::mem::zeroed() };
            stats.devid = devid;
            stats.nr_items = 5;
            call(fd, GET_DEV_STATS, &mut stats)?;
            let end = dev
                .path
                .iter()
                .position(|&b| b == 0)
                .unwrap_or(dev.path.len());
            let path = String::from_utf8_lossy(&dev.path[..end]);
            devices.push(DevStats {
                // /dev/sda -> sda, as node_exporter names it.
                name: path.rsplit('/').next().unwrap_or_default().to_string(),
                uuid: dashed_uuid(&dev.uuid),
                total_bytes: dev.total_bytes,
                used_bytes: dev.bytes_used,
                errors: stats.values,
            });
            if devices.len() as u64 == info.num_devices {
                break;
            }
        }
        Ok((fsid, devices))
    }

    /// 8-4-4-4-12 hex digits.
    pub fn dashed_uuid(id: &[u8; 16]) -> String {
        let mut s = String::with_capacity(36);
        for (i, b) in id.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                s.push('-');
            }
            s.push_str(&format!("{b:02x}"));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_uuids_and_commit_stats() {
        assert_eq!(allocation_ratio("single", 1), 1.0);
        assert_eq!(allocation_ratio("dup", 1), 2.0);
        assert_eq!(allocation_ratio("raid5", 4), 4.0 / 3.0);
        assert_eq!(allocation_ratio("raid6", 4), 2.0);
        assert_eq!(allocation_ratio("raid1c3", 3), 0.0);
        let id = [
            0x99, 0x0b, 0x9c, 0xad, 0xcc, 0x80, 0x4d, 0xa3, 0xb8, 0x4d, 0x36, 0x90, 0xae, 0xc7,
            0x7b, 0xe1,
        ];
        assert_eq!(
            ioctl::dashed_uuid(&id),
            "990b9cad-cc80-4da3-b84d-3690aec77be1"
        );

        let dir = std::env::temp_dir().join(format!("btrfs-commit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("commit_stats");
        std::fs::write(
            &path,
            "commits 7\ncur_commit_ms 0\nlast_commit_ms 12\nmax_commit_ms 40\ntotal_commit_ms 95\n",
        )
        .unwrap();
        assert_eq!(commit_stats(&path).unwrap(), [7, 12, 40, 95]);
        std::fs::write(&path, "commits seven\n").unwrap();
        assert!(commit_stats(&path).is_err());
        std::fs::write(&path, "commits\n").unwrap();
        assert!(commit_stats(&path).is_err());
        assert_eq!(commit_stats(&dir.join("absent")).unwrap(), [0; 4]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
