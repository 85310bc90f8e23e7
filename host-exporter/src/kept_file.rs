//! A procfs or sysfs file opened once and read again from its start on each scrape. The kernel
//! regenerates such a file on a read at offset 0, so the content is as fresh as after a new
//! open, without the path lookup, open and close (a third of the exporter's kernel time per
//! scrape went to openat and close: perf, 3000 scrapes). Files on other filesystems (the test
//! fixtures, a copied tree) are opened anew each time, since they can be replaced.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub struct KeptFile {
    path: PathBuf,
    file: Mutex<Option<File>>,
}

impl KeptFile {
    pub fn new(path: PathBuf) -> Self {
        KeptFile {
            path,
            file: Mutex::new(None),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The whole file, naming the path in the error.
    pub fn read(&self) -> anyhow::Result<String> {
        self.read_io()
            .map_err(|e| anyhow::anyhow!("{}: {e}", self.path.display()))
    }

    /// The whole file, or `None` if it does not exist: a kernel interface the host lacks (no
    /// md driver, no IPv4), for which a collector reports nothing and succeeds, as
    /// node_exporter's do. Any other error names the path.
    pub fn read_if_present(&self) -> anyhow::Result<Option<String>> {
        crate::paths::if_present(self.read_io())
            .map_err(|e| anyhow::anyhow!("{}: {e}", self.path.display()))
    }

    /// The whole file. A kept file that fails to read (its device or process gone) is closed
    /// and the path opened again, once.
    pub fn read_io(&self) -> std::io::Result<String> {
        let mut kept = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(file) = kept.as_ref() {
            match read_from_start(file) {
                Ok(text) => return Ok(text),
                Err(_) => *kept = None,
            }
        }
        let file = File::open(&self.path)?;
        let text = read_from_start(&file)?;
        if is_kernel_generated(&file) {
            *kept = Some(file);
        }
        Ok(text)
    }
}

/// Reads from offset 0 with positioned reads, so the file's own offset never matters.
fn read_from_start(file: &File) -> std::io::Result<String> {
    crate::paths::with_scratch(|buf| {
        let mut len = 0;
        loop {
            crate::paths::grow_for_next_read(buf, len)?;
            match file.read_at(&mut buf[len..], len as u64) {
                Ok(0) => break,
                Ok(n) => len += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(len)
    })
}

/// procfs and sysfs: their files are generated on read and are never replaced by another file.
fn is_kernel_generated(file: &File) -> bool {
    use std::os::fd::AsRawFd;
    const PROC_SUPER_MAGIC: i64 = 0x9fa0;
    const SYSFS_MAGIC: i64 = 0x6265_6572;
    // SAFETY: fstatfs writes only into the zeroed struct we pass; the fd is open.
    let mut stats: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstatfs(file.as_raw_fd(), &mut stats) } != 0 {
        return false;
    }
    matches!(stats.f_type as i64, PROC_SUPER_MAGIC | SYSFS_MAGIC)
}

/// Files whose paths are found anew on each scrape (a device's counters, listed from its
/// directory), kept open between scrapes by path. A file not read during a scrape is closed at
/// its end, so devices that go away do not hold descriptors.
#[derive(Default)]
pub struct KeptFileSet {
    files: Mutex<std::collections::HashMap<PathBuf, KeptFile>>,
}

/// One scrape's use of a [`KeptFileSet`]; the files it did not read are closed on drop.
pub struct KeptFileScrape<'a> {
    kept: std::sync::MutexGuard<'a, std::collections::HashMap<PathBuf, KeptFile>>,
    previous: std::collections::HashMap<PathBuf, KeptFile>,
}

impl KeptFileSet {
    pub fn scrape(&self) -> KeptFileScrape<'_> {
        let mut kept = self.files.lock().unwrap_or_else(|p| p.into_inner());
        let previous = std::mem::take(&mut *kept);
        KeptFileScrape { kept, previous }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.files.lock().unwrap().len()
    }
}

impl KeptFileScrape<'_> {
    /// The whole file, read through the file kept for this path, or a new one.
    pub fn read(&mut self, path: &Path) -> std::io::Result<String> {
        if let Some(file) = self.kept.get(path) {
            return file.read_io();
        }
        let file = self
            .previous
            .remove(path)
            .unwrap_or_else(|| KeptFile::new(path.to_path_buf()));
        let text = file.read_io();
        self.kept.insert(path.to_path_buf(), file);
        text
    }

    /// A sysfs attribute's value, whitespace (its newline) trimmed.
    pub fn read_trimmed(&mut self, path: &Path) -> std::io::Result<String> {
        self.read(path).map(|text| text.trim().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Absent is `None`; present is its text; any other failure (here: a directory, EISDIR)
    /// is an error that names the path, never taken for absence.
    #[test]
    fn read_if_present_tells_absent_from_failed() {
        let dir = std::env::temp_dir().join(format!("kept-if-present-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("a_directory")).unwrap();
        std::fs::write(dir.join("file"), "text").unwrap();
        let read = |name: &str| KeptFile::new(dir.join(name)).read_if_present();
        assert_eq!(read("missing").unwrap(), None);
        assert_eq!(read("file").unwrap().as_deref(), Some("text"));
        let err = read("a_directory").unwrap_err().to_string();
        assert!(err.contains("a_directory"), "{err}");
        let entries = crate::paths::entries_if_present(&dir.join("missing")).unwrap();
        assert!(entries.is_none());
        let err = crate::paths::entries_if_present(&dir.join("file")).unwrap_err();
        assert!(err.to_string().contains("file"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_kept_procfs_file_shows_fresh_content_on_every_read() {
        let uptime = KeptFile::new("/proc/uptime".into());
        let first = uptime.read().unwrap();
        assert!(
            uptime.file.lock().unwrap().is_some(),
            "procfs file kept open"
        );
        std::thread::sleep(Duration::from_millis(30));
        let second = uptime.read().unwrap();
        assert_ne!(first, second, "the kernel regenerated the file");
        let fresh = std::fs::read_to_string("/proc/uptime").unwrap();
        let seconds = |t: &str| t.split_whitespace().next().unwrap().parse::<f64>().unwrap();
        assert!((seconds(&fresh) - seconds(&second)).abs() < 1.0);
        // A file longer than one read: every byte, in order.
        let mountinfo = KeptFile::new("/proc/self/mountinfo".into());
        for _ in 0..2 {
            assert_eq!(
                mountinfo.read().unwrap(),
                std::fs::read_to_string("/proc/self/mountinfo").unwrap()
            );
        }
    }

    #[test]
    fn a_regular_file_is_opened_anew_and_can_be_replaced() {
        let dir = std::env::temp_dir().join(format!("kept-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("meminfo");
        std::fs::write(&path, "old").unwrap();
        let kept = KeptFile::new(path.clone());
        assert_eq!(kept.read().unwrap(), "old");
        assert!(
            kept.file.lock().unwrap().is_none(),
            "not kept off procfs/sysfs"
        );
        std::fs::write(dir.join("new"), "new").unwrap();
        std::fs::rename(dir.join("new"), &path).unwrap();
        assert_eq!(kept.read().unwrap(), "new");
        std::fs::remove_file(&path).unwrap();
        let err = kept.read().unwrap_err().to_string();
        assert!(err.contains("meminfo"), "{err}");
        assert_eq!(
            kept.read_io().unwrap_err().kind(),
            std::io::ErrorKind::NotFound
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_kept_file_set_keeps_only_the_files_of_the_last_scrape() {
        let set = KeptFileSet::default();
        let mut scrape = set.scrape();
        assert!(scrape.read(Path::new("/proc/uptime")).is_ok());
        assert!(scrape.read(Path::new("/proc/loadavg")).is_ok());
        assert!(scrape.read(Path::new("/nonexistent")).is_err());
        drop(scrape);
        assert_eq!(set.len(), 3);
        let mut scrape = set.scrape();
        assert!(scrape.read(Path::new("/proc/uptime")).is_ok());
        drop(scrape);
        assert_eq!(set.len(), 1, "files not read in the last scrape are closed");
    }

    #[test]
    fn a_kept_file_set_reads_attributes_trimmed() {
        let set = KeptFileSet::default();
        let mut scrape = set.scrape();
        let online = scrape
            .read_trimmed(Path::new("/sys/devices/system/cpu/online"))
            .unwrap();
        assert!(!online.is_empty() && !online.ends_with('\n'), "{online:?}");
    }

    #[test]
    fn a_kept_file_whose_process_ended_is_opened_again() {
        // /proc/<pid>/stat of a child that exits: the kept fd then fails (ESRCH) and the path,
        // which no longer exists either, gives NotFound rather than stale content.
        let mut child = std::process::Command::new("sleep")
            .arg("10")
            .spawn()
            .unwrap();
        let kept = KeptFile::new(format!("/proc/{}/stat", child.id()).into());
        assert!(kept.read().unwrap().contains("(sleep)"));
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(kept.read().is_err());
        assert!(
            kept.file.lock().unwrap().is_none(),
            "the failed file is closed"
        );
    }
}
