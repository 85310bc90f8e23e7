//! Where the host's /proc, /sys and / are (`--path.procfs`, `--path.sysfs`, `--path.rootfs`), so
//! the exporter works in a container with the host's `/` mounted at `/host`.

use std::path::{Path, PathBuf};

#[derive(Clone, Debug)]
pub struct Paths {
    pub procfs: PathBuf,
    pub sysfs: PathBuf,
    pub rootfs: PathBuf,
    pub udev_data: PathBuf,
}

impl Paths {
    pub fn proc(&self, rel: &str) -> PathBuf {
        self.procfs.join(rel)
    }

    pub fn sys(&self, rel: &str) -> PathBuf {
        self.sysfs.join(rel)
    }

    /// A host path (a mount point) as seen from inside the rootfs.
    pub fn rooted(&self, host_path: &str) -> PathBuf {
        let rel = host_path.trim_start_matches('/');
        if rel.is_empty() {
            self.rootfs.clone()
        } else {
            self.rootfs.join(rel)
        }
    }

    /// A mount point as the host sees it: mountinfo read through a rootfs prefix (when the
    /// exporter runs without the host's pid namespace) carries that prefix, which is removed.
    pub fn host_mount_point(&self, mount_point: &str) -> String {
        let root = self.rootfs.to_string_lossy();
        if root == "/" {
            return mount_point.to_string();
        }
        match mount_point.strip_prefix(root.trim_end_matches('/')) {
            Some("") => "/".to_string(),
            Some(rest) if rest.starts_with('/') => rest.to_string(),
            _ => mount_point.to_string(),
        }
    }
}

const SCRATCH_SIZE: usize = 32 * 1024;
const MAX_KEPT_SCRATCH: usize = 256 * 1024;
/// The most one procfs/sysfs file may hold. The largest real ones are a mountinfo or diskstats
/// of ten thousand entries (about 2 MB). Without a cap, /proc/loadavg pointing at /dev/zero
/// aborted the process on a 2 GiB allocation, and a 93 MB /proc/stat took 5.2 GB of memory.
pub const MAX_FILE_BYTES: usize = 8 << 20;

/// Makes room for the next read, refusing to grow past [`MAX_FILE_BYTES`].
pub fn grow_for_next_read(buf: &mut Vec<u8>, len: usize) -> std::io::Result<()> {
    if len < buf.len() {
        return Ok(());
    }
    if len > MAX_FILE_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("larger than {} MiB; not read", MAX_FILE_BYTES >> 20),
        ));
    }
    // One byte past the cap, so that a file of exactly the cap reads whole.
    buf.resize((buf.len() * 2).min(MAX_FILE_BYTES + 1), 0);
    Ok(())
}

/// Reads a whole procfs/sysfs file. `fs::read_to_string` asks for the size first (procfs says
/// 0) and then reads in small growing steps: more than twice the system calls of this on a
/// typical scrape.
pub fn read_whole(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    with_scratch(|buf| {
        let mut len = 0;
        loop {
            grow_for_next_read(buf, len)?;
            // Plain reads: File::read_to_end would also stat and seek for a size hint.
            match file.read(&mut buf[len..]) {
                Ok(0) => break,
                Ok(n) => len += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(len)
    })
}

/// Runs `fill` on this thread's scratch buffer (kept between calls, so a scrape does not
/// allocate and zero 32 KiB per file); `fill` returns how many bytes it wrote, which are
/// returned as text. Bytes that are not UTF-8 (a mount point or interface name anyone can make)
/// become U+FFFD, as node_exporter now writes them: one such name must not drop the whole file.
pub fn with_scratch(
    fill: impl FnOnce(&mut Vec<u8>) -> std::io::Result<usize>,
) -> std::io::Result<String> {
    use std::cell::RefCell;
    thread_local! {
        static SCRATCH: RefCell<Vec<u8>> = RefCell::new(vec![0u8; SCRATCH_SIZE]);
    }
    SCRATCH.with_borrow_mut(|buf| {
        let text = fill(buf).map(|len| String::from_utf8_lossy(&buf[..len]).into_owned());
        // One huge file (a mountinfo with thousands of mounts, or one refused for its size)
        // should not pin its size.
        if buf.len() > MAX_KEPT_SCRATCH {
            buf.truncate(SCRATCH_SIZE);
            buf.shrink_to_fit();
        }
        text
    })
}

/// Reads a small sysfs attribute with one read(2) call: some hwmon drivers answer EAGAIN
/// forever, and a looping read would spin on them.
pub fn read_sysfs_value(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut buf = [0u8; 256];
    let n = file.read(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf[..n]).trim().to_string())
}

/// Directory entries sorted by name, so output order does not depend on the filesystem.
pub fn sorted_entries(dir: &Path) -> std::io::Result<Vec<(String, PathBuf)>> {
    let mut entries: Vec<(String, PathBuf)> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .collect();
    entries.sort();
    Ok(entries)
}

/// A read of something that may be absent, with absence told apart from failure: `Ok(None)`
/// where the file or directory does not exist (a kernel interface the host lacks, an attribute
/// an older kernel or a driver does not have), the value or the error otherwise. Every
/// collector decides "absent" with this one helper.
pub fn if_present<T>(read: std::io::Result<T>) -> std::io::Result<Option<T>> {
    match read {
        Ok(value) => Ok(Some(value)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// [`sorted_entries`] of a directory that may be absent: a kernel interface the host lacks
/// (no InfiniBand, no RAPL) is `None`, and the collector reports nothing and succeeds, as
/// node_exporter's do; any other error names the directory.
pub fn entries_if_present(dir: &Path) -> anyhow::Result<Option<Vec<(String, PathBuf)>>> {
    if_present(sorted_entries(dir)).map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))
}

/// A sysfs counter written in decimal or, as some drivers do, in hex (`0x1f`).
pub fn parse_counter(text: &str) -> Option<u64> {
    let text = text.trim();
    match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_utf8_becomes_replacement_characters_and_endless_files_are_refused() {
        let path = std::env::temp_dir().join(format!("paths-lossy-{}", std::process::id()));
        std::fs::write(&path, b"eth\xff0: 1 2\n").unwrap();
        assert_eq!(read_whole(&path).unwrap(), "eth\u{fffd}0: 1 2\n");
        std::fs::remove_file(&path).unwrap();
        let endless = read_whole(Path::new("/dev/zero")).unwrap_err();
        assert!(
            endless.to_string().contains("larger than 8 MiB"),
            "{endless}"
        );
        // The scratch buffer is back to its usual size afterwards.
        let mut size = 0;
        with_scratch(|buf| {
            size = buf.len();
            Ok(0)
        })
        .unwrap();
        assert_eq!(size, SCRATCH_SIZE);
    }

    #[test]
    fn absent_directories_and_counters_in_either_base() {
        assert!(entries_if_present(Path::new("/nonexistent/class"))
            .unwrap()
            .is_none());
        assert!(entries_if_present(Path::new("/proc/self"))
            .unwrap()
            .is_some_and(|e| !e.is_empty()));
        // Not a directory: an error naming it.
        let err = entries_if_present(Path::new("/proc/uptime")).unwrap_err();
        assert!(err.to_string().contains("/proc/uptime"), "{err}");
        assert_eq!(parse_counter("0x1f\n"), Some(31));
        assert_eq!(parse_counter(" 31 "), Some(31));
        assert_eq!(parse_counter("N/A"), None);
    }

    #[test]
    fn mount_points_lose_the_rootfs_prefix() {
        let paths = Paths {
            procfs: "/host/proc".into(),
            sysfs: "/host/sys".into(),
            rootfs: "/host".into(),
            udev_data: "/run/udev/data".into(),
        };
        assert_eq!(paths.host_mount_point("/host"), "/");
        assert_eq!(paths.host_mount_point("/host/home"), "/home");
        assert_eq!(paths.host_mount_point("/hostile"), "/hostile");
        assert_eq!(paths.host_mount_point("/data"), "/data");
        assert_eq!(paths.rooted("/"), PathBuf::from("/host"));
        assert_eq!(paths.rooted("/data"), PathBuf::from("/host/data"));
    }

    #[test]
    fn read_whole_returns_each_file_exactly_whatever_was_read_before() {
        let dir = std::env::temp_dir().join(format!("read-whole-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let big: String = (0..100_000).map(|i| format!("line {i}\n")).collect();
        assert!(big.len() > MAX_KEPT_SCRATCH);
        std::fs::write(dir.join("big"), &big).unwrap();
        std::fs::write(dir.join("small"), "MemTotal: 1 kB\n").unwrap();
        std::fs::write(dir.join("empty"), "").unwrap();
        std::fs::write(dir.join("binary"), [0xff, 0xfe]).unwrap();

        assert_eq!(read_whole(&dir.join("big")).unwrap(), big);
        assert_eq!(read_whole(&dir.join("small")).unwrap(), "MemTotal: 1 kB\n");
        assert_eq!(read_whole(&dir.join("empty")).unwrap(), "");
        // Not UTF-8: kept, with replacement characters (issue 16: one bad name dropped a file).
        assert_eq!(read_whole(&dir.join("binary")).unwrap(), "\u{fffd}\u{fffd}");
        assert!(read_whole(&dir.join("missing")).is_err());
        assert_eq!(read_whole(&dir.join("big")).unwrap(), big);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
