//! A file that two collectors parse in the same scrape, read once: the cpu and stat collectors
//! both read /proc/stat, which the kernel builds anew on every read (a line per CPU and a sum
//! over every CPU for each interrupt: costly on large hosts). node_exporter reads it twice.

use crate::kept_file::KeptFile;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A reading this young is handed out again. A scrape runs its collectors within a few
/// milliseconds; two scrapes closer than this (two Prometheus servers) may share a reading,
/// which is at most this old.
const REUSE_WITHIN: Duration = Duration::from_millis(50);

/// When the file was last read, and what it said.
type Reading = Option<(Instant, Arc<str>)>;

#[derive(Clone)]
pub struct SharedRead {
    file: Arc<KeptFile>,
    last: Arc<Mutex<Reading>>,
}

impl SharedRead {
    pub fn new(path: PathBuf) -> Self {
        SharedRead {
            file: Arc::new(KeptFile::new(path)),
            last: Arc::new(Mutex::new(None)),
        }
    }

    pub fn path(&self) -> &std::path::Path {
        self.file.path()
    }

    /// The file's text, from a recent reading or read now. A failed read is not remembered.
    pub fn read(&self) -> anyhow::Result<Arc<str>> {
        // Held across the read, so that two collectors asking at once cause one read.
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, text)) = last.as_ref() {
            if at.elapsed() < REUSE_WITHIN {
                return Ok(text.clone());
            }
        }
        let text: Arc<str> = self.file.read()?.into();
        *last = Some((Instant::now(), text.clone()));
        Ok(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recent_reading_is_shared_and_an_old_or_failed_one_is_not() {
        let dir = std::env::temp_dir().join(format!("shared-read-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("stat");
        std::fs::write(&path, "first").unwrap();
        let shared = SharedRead::new(path.clone());
        let other = shared.clone();

        assert_eq!(&*shared.read().unwrap(), "first");
        std::fs::write(&path, "second").unwrap();
        assert_eq!(
            &*other.read().unwrap(),
            "first",
            "within the window: one read"
        );

        std::thread::sleep(REUSE_WITHIN + Duration::from_millis(10));
        assert_eq!(
            &*other.read().unwrap(),
            "second",
            "after the window: read again"
        );

        std::fs::remove_file(&path).unwrap();
        std::thread::sleep(REUSE_WITHIN + Duration::from_millis(10));
        let err = shared.read().unwrap_err().to_string();
        assert!(err.contains("stat"), "{err}");
        std::fs::write(&path, "third").unwrap();
        assert_eq!(
            &*shared.read().unwrap(),
            "third",
            "a failure is not remembered"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
