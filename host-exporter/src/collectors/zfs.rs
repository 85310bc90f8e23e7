//! OpenZFS statistics from /proc/spl/kstat/zfs, in node_exporter's names:
//! - every integer of the module-wide kstat files (arcstats, abdstats, dbufstats, dmu_tx,
//!   dnodestats, fm, vdev_cache_stats, vdev_mirror_stats, xuio_stats, zfetchstats, zil) as
//!   `node_zfs_<subsystem>_<name>` (`node_zfs_arc_size`), untyped as node_exporter has them;
//! - per pool, its I/O counters (`<pool>/io`: `node_zfs_zpool_nread{zpool}` ...), its datasets'
//!   counters (`<pool>/objset-*`: `node_zfs_zpool_dataset_writes{zpool,dataset}` ...) and its
//!   state (`node_zfs_zpool_state{zpool,state}`, 1 for the pool's state among online, degraded,
//!   faulted, offline, removed, unavail and suspended).
//!
//! Without the zfs module there is no /proc/spl/kstat/zfs: nothing to report. Files are kept
//! open and read again from offset 0 on each scrape; a pool's files are dropped with the pool.

use crate::kept_file::KeptFile;
use crate::paths::{entries_if_present, if_present, sorted_entries, Paths};
use common::{log, BlockingCollector, CollectResult, MetricFamily, MetricType};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub struct Zfs {
    dir: PathBuf,
    files: Mutex<BTreeMap<PathBuf, KeptFile>>,
}

impl Zfs {
    pub fn new(paths: &Paths) -> Self {
        Zfs {
            dir: paths.proc("spl/kstat/zfs"),
            files: Mutex::new(BTreeMap::new()),
        }
    }
}

/// (family subsystem, kstat file).
const SUBSYSTEMS: [(&str, &str); 11] = [
    ("zfs_abd", "abdstats"),
    ("zfs_arc", "arcstats"),
    ("zfs_dbuf", "dbufstats"),
    ("zfs_dmu_tx", "dmu_tx"),
    ("zfs_dnode", "dnodestats"),
    ("zfs_fm", "fm"),
    ("zfs_vdev_cache", "vdev_cache_stats"),
    ("zfs_vdev_mirror", "vdev_mirror_stats"),
    ("zfs_xuio", "xuio_stats"),
    ("zfs_zfetch", "zfetchstats"),
    ("zfs_zil", "zil"),
];

const POOL_STATES: [&str; 7] = [
    "online",
    "degraded",
    "faulted",
    "offline",
    "removed",
    "unavail",
    "suspended",
];

/// kstat data types (sys/kstat.h) that node_exporter reports: int64 and uint64.
const KSTAT_INT64: &str = "3";
const KSTAT_UINT64: &str = "4";

/// Families by name: a pool-level family gathers the samples of every pool and dataset.
#[derive(Default)]
struct Families(BTreeMap<String, MetricFamily>);

impl Families {
    fn push(
        &mut self,
        name: String,
        help: String,
        kind: MetricType,
        labels: &[(&'static str, &str)],
        value: f64,
    ) {
        self.0
            .entry(name)
            .or_insert_with_key(|name| MetricFamily::new(name.clone(), help, kind))
            .push(labels, value);
    }
}

impl BlockingCollector for Zfs {
    fn collect(&self) -> CollectResult {
        let Some(entries) = entries_if_present(&self.dir)? else {
            return Ok(vec![]);
        };
        let mut files = self.files.lock().unwrap_or_else(|p| p.into_inner());
        let mut seen: Vec<PathBuf> = Vec::new();
        let mut read = |path: PathBuf| -> Option<String> {
            let file = files
                .entry(path.clone())
                .or_insert_with(|| KeptFile::new(path.clone()));
            seen.push(path);
            // Absent: a module without this feature, or a pool exported since the listing.
            match if_present(file.read_io()) {
                Ok(text) => text,
                Err(e) => {
                    warn(file.path(), &e.to_string());
                    None
                }
            }
        };
        let mut families = Families::default();

        for (subsystem, file) in SUBSYSTEMS {
            let path = self.dir.join(file);
            let Some(text) = read(path.clone()) else {
                continue;
            };
            match named_values(&text) {
                Ok(values) => {
                    for (name, value) in values {
                        families.push(
                            ["node_", subsystem, "_", &name.replace('-', "_")].concat(),
                            ["kstat.zfs.misc.", file, ".", name].concat(),
                            MetricType::Untyped,
                            &[],
                            value,
                        );
                    }
                }
                Err(e) => warn(&path, &e),
            }
        }

        // Pools are the directories; the module-wide files above are plain files.
        for (pool, dir) in entries.iter().filter(|(_, p)| p.is_dir()) {
            if let Some(text) = read(dir.join("io")) {
                match pool_io(&text) {
                    Ok(values) => {
                        for (name, value) in values {
                            families.push(
                                ["node_zfs_zpool_", name].concat(),
                                ["kstat.zfs.misc.io.", name].concat(),
                                MetricType::Untyped,
                                &[("zpool", pool)],
                                value,
                            );
                        }
                    }
                    Err(e) => warn(&dir.join("io"), &e),
                }
            }
            let objsets = sorted_entries(dir).unwrap_or_default();
            for (_, path) in objsets.iter().filter(|(n, _)| n.starts_with("objset-")) {
                let Some(text) = read(path.clone()) else {
                    continue;
                };
                match objset(&text) {
                    Ok((dataset, values)) => {
                        for (name, value) in values {
                            families.push(
                                ["node_zfs_zpool_dataset_", name].concat(),
                                ["kstat.zfs.misc.objset.", name].concat(),
                                MetricType::Untyped,
                                &[("zpool", pool), ("dataset", dataset)],
                                value,
                            );
                        }
                    }
                    Err(e) => warn(path, &e),
                }
            }
            if let Some(text) = read(dir.join("state")) {
                let state = text.lines().next().unwrap_or("").to_lowercase();
                for name in POOL_STATES {
                    families.push(
                        "node_zfs_zpool_state".into(),
                        "kstat.zfs.misc.state".into(),
                        MetricType::Gauge,
                        &[("zpool", pool), ("state", name)],
                        if state == name { 1.0 } else { 0.0 },
                    );
                }
            }
        }
        files.retain(|path, _| seen.contains(path));
        Ok(families.0.into_values().collect())
    }
}

fn warn(path: &Path, err: &str) {
    log::warn(
        "skipping zfs kstat file",
        &[("path", &path.display().to_string()), ("err", err)],
    );
}

/// (name, value) pairs of one kstat file.
type Values<'a> = Vec<(&'a str, f64)>;

/// The int64 and uint64 values of a named kstat (`name type data` table after a header line).
fn named_values(text: &str) -> Result<Values<'_>, String> {
    let mut lines = text.lines();
    if !lines.any(|l| l.split_ascii_whitespace().eq(["name", "type", "data"])) {
        return Err("no \"name type data\" table".into());
    }
    let mut values = Vec::new();
    for line in lines {
        let parts: Vec<&str> = line.split_ascii_whitespace().collect();
        if parts.len() < 3 {
            continue;
        }
        let value = match parts[1] {
            KSTAT_UINT64 => parts[2].parse::<u64>().map(|v| v as f64),
            KSTAT_INT64 => parts[2].parse::<i64>().map(|v| v as f64),
            _ => continue,
        }
        .map_err(|_| format!("{}: not a number: {:?}", parts[0], parts[2]))?;
        values.push((parts[0], value));
    }
    Ok(values)
}

/// A pool's `io` kstat: a header line of names starting with `nread`, then a line of values.
fn pool_io(text: &str) -> Result<Values<'_>, String> {
    let mut lines = text.lines();
    let header: Vec<&str> = lines
        .by_ref()
        .map(|l| l.split_ascii_whitespace().collect::<Vec<_>>())
        .find(|w| w.len() >= 12 && w[0] == "nread")
        .ok_or("no nread header")?;
    let mut values = Vec::new();
    for line in lines.filter(|l| !l.trim().is_empty()) {
        let row: Vec<&str> = line.split_ascii_whitespace().collect();
        if row.len() != header.len() {
            return Err(format!("{} values for {} names", row.len(), header.len()));
        }
        for (name, raw) in header.iter().zip(row) {
            let v: u64 = raw
                .parse()
                .map_err(|_| format!("{name}: not a number: {raw:?}"))?;
            values.push((*name, v as f64));
        }
    }
    Ok(values)
}

/// A dataset's `objset-0x..` kstat: its name (`dataset_name`, which may contain spaces) and
/// its uint64 counters.
fn objset(text: &str) -> Result<(&str, Values<'_>), String> {
    let mut lines = text.lines();
    if !lines.any(|l| l.split_ascii_whitespace().eq(["name", "type", "data"])) {
        return Err("no \"name type data\" table".into());
    }
    let mut dataset = "";
    let mut values = Vec::new();
    for line in lines {
        let parts: Vec<&str> = line.split_ascii_whitespace().collect();
        if parts.len() < 3 {
            continue;
        }
        if parts[0] == "dataset_name" {
            dataset = line[line.find(parts[2]).unwrap_or(0)..].trim_end();
        } else if parts[1] == KSTAT_UINT64 {
            let v: u64 = parts[2]
                .parse()
                .map_err(|_| format!("{}: not a number: {:?}", parts[0], parts[2]))?;
            values.push((parts[0], v as f64));
        }
    }
    Ok((dataset, values))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_kstats_keep_integers_only() {
        let text = "13 1 0x01 4 1088 4367541766 2291361236627\nname                            type data\n\
                    hits                            4    8772612\nc_min                           4    33554432\n\
                    arc_need_free                   3    -1\nmfu_ghost_hits                  4    0\n\
                    l2_writes_done                  2    7\n";
        assert_eq!(
            named_values(text).unwrap(),
            [
                ("hits", 8772612.0),
                ("c_min", 33554432.0),
                ("arc_need_free", -1.0),
                ("mfu_ghost_hits", 0.0)
            ]
        );
        assert!(named_values("13 1 0x01\nhits 4 1\n").is_err());
        assert!(named_values("name type data\nhits 4 many\n").is_err());
    }

    #[test]
    fn pool_io_and_datasets() {
        let io = "12 3 0x00 1 80 2225326830828 32953097408389\n\
                  nread    nwritten reads    writes   wtime    wlentime wupdate  rtime    rlentime rupdate  wcnt     rcnt\n\
                  1884160  3206144  22       132      7155162  104112268 25347585341 7155162  104112268 25347585341 0        0\n";
        let values = pool_io(io).unwrap();
        assert_eq!(values[0], ("nread", 1884160.0));
        assert_eq!(values[11], ("rcnt", 0.0));
        assert!(pool_io("nread nwritten\n1 2\n").is_err());
        assert!(pool_io(&io.replace("1884160", "x")).is_err());

        let objset = "23 1 0x01 7 2160 5214787391 74985931356512\nname                            type data\n\
                      dataset_name                    7    pool1/my dataset\nwrites                          4    4\n\
                      nwritten                        4    12302\n";
        assert_eq!(
            super::objset(objset).unwrap(),
            (
                "pool1/my dataset",
                vec![("writes", 4.0), ("nwritten", 12302.0)]
            )
        );
    }
}
