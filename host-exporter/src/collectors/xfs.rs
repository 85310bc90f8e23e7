//! XFS statistics per mounted filesystem from /sys/fs/xfs/<device>/stats/stats, in
//! node_exporter's names (`node_xfs_<category>_<value>_total{device}`), as it reads them.
//! The system-wide sum in /proc/fs/xfs/stat (and /sys/fs/xfs/stats/stats) is not reported
//! by node_exporter, so not here either: it would double every count.
//! Each device's file is kept open and read from offset 0 on each scrape.

use crate::kept_file::KeptFile;
use crate::paths::{entries_if_present, Paths};
use common::{log, BlockingCollector, CollectResult, MetricFamily};
use std::collections::BTreeMap;
use std::sync::Mutex;

pub struct Xfs {
    paths: Paths,
    /// Stats files by device, opened once (filesystems come and go: kept in step with the
    /// directory listing on each scrape).
    files: Mutex<BTreeMap<String, KeptFile>>,
}

impl Xfs {
    pub fn new(paths: &Paths) -> Self {
        Xfs {
            paths: paths.clone(),
            files: Mutex::new(BTreeMap::new()),
        }
    }
}

/// (line key, index of the value on that line, family suffix, help).
type Field = (&'static str, usize, &'static str, &'static str);

/// The values node_exporter reports, in its names. The line layouts are the kernel's
/// (fs/xfs/xfs_stats.c); note that `rw` is write calls first, then read calls.
const FIELDS: [Field; 39] = [
    ("extent_alloc", 0, "extent_allocation_extents_allocated_total", "Number of extents allocated for a filesystem."),
    ("extent_alloc", 1, "extent_allocation_blocks_allocated_total", "Number of blocks allocated for a filesystem."),
    ("extent_alloc", 2, "extent_allocation_extents_freed_total", "Number of extents freed for a filesystem."),
    ("extent_alloc", 3, "extent_allocation_blocks_freed_total", "Number of blocks freed for a filesystem."),
    ("abt", 0, "allocation_btree_lookups_total", "Number of allocation B-tree lookups for a filesystem."),
    ("abt", 1, "allocation_btree_compares_total", "Number of allocation B-tree compares for a filesystem."),
    ("abt", 2, "allocation_btree_records_inserted_total", "Number of allocation B-tree records inserted for a filesystem."),
    ("abt", 3, "allocation_btree_records_deleted_total", "Number of allocation B-tree records deleted for a filesystem."),
    ("blk_map", 0, "block_mapping_reads_total", "Number of block map for read operations for a filesystem."),
    ("blk_map", 1, "block_mapping_writes_total", "Number of block map for write operations for a filesystem."),
    ("blk_map", 2, "block_mapping_unmaps_total", "Number of block unmaps (deletes) for a filesystem."),
    ("blk_map", 3, "block_mapping_extent_list_insertions_total", "Number of extent list insertions for a filesystem."),
    ("blk_map", 4, "block_mapping_extent_list_deletions_total", "Number of extent list deletions for a filesystem."),
    ("blk_map", 5, "block_mapping_extent_list_lookups_total", "Number of extent list lookups for a filesystem."),
    ("blk_map", 6, "block_mapping_extent_list_compares_total", "Number of extent list compares for a filesystem."),
    ("bmbt", 0, "block_map_btree_lookups_total", "Number of block map B-tree lookups for a filesystem."),
    ("bmbt", 1, "block_map_btree_compares_total", "Number of block map B-tree compares for a filesystem."),
    ("bmbt", 2, "block_map_btree_records_inserted_total", "Number of block map B-tree records inserted for a filesystem."),
    ("bmbt", 3, "block_map_btree_records_deleted_total", "Number of block map B-tree records deleted for a filesystem."),
    ("dir", 0, "directory_operation_lookup_total", "Number of file name directory lookups which miss the operating systems directory name lookup cache."),
    ("dir", 1, "directory_operation_create_total", "Number of times a new directory entry was created for a filesystem."),
    ("dir", 2, "directory_operation_remove_total", "Number of times an existing directory entry was created for a filesystem."),
    ("dir", 3, "directory_operation_getdents_total", "Number of times the directory getdents operation was performed for a filesystem."),
    ("ig", 0, "inode_operation_attempts_total", "Number of times the OS looked for an XFS inode in the inode cache."),
    ("ig", 1, "inode_operation_found_total", "Number of times the OS looked for and found an XFS inode in the inode cache."),
    ("ig", 2, "inode_operation_recycled_total", "Number of times the OS found an XFS inode in the cache, but could not use it as it was being recycled."),
    ("ig", 3, "inode_operation_missed_total", "Number of times the OS looked for an XFS inode in the cache, but did not find it."),
    ("ig", 4, "inode_operation_duplicates_total", "Number of times the OS tried to add a missing XFS inode to the inode cache, but found it had already been added by another process."),
    ("ig", 5, "inode_operation_reclaims_total", "Number of times the OS reclaimed an XFS inode from the inode cache to free memory for another purpose."),
    ("ig", 6, "inode_operation_attribute_changes_total", "Number of times the OS explicitly changed the attributes of an XFS inode."),
    ("rw", 1, "read_calls_total", "Number of read(2) system calls made to files in a filesystem."),
    ("rw", 0, "write_calls_total", "Number of write(2) system calls made to files in a filesystem."),
    ("vnodes", 0, "vnode_active_total", "Number of vnodes not on free lists for a filesystem."),
    ("vnodes", 1, "vnode_allocate_total", "Number of times vn_alloc called for a filesystem."),
    ("vnodes", 2, "vnode_get_total", "Number of times vn_get called for a filesystem."),
    ("vnodes", 3, "vnode_hold_total", "Number of times vn_hold called for a filesystem."),
    ("vnodes", 4, "vnode_release_total", "Number of times vn_rele called for a filesystem."),
    ("vnodes", 5, "vnode_reclaim_total", "Number of times vn_reclaim called for a filesystem."),
    ("vnodes", 6, "vnode_remove_total", "Number of times vn_remove called for a filesystem."),
];

impl BlockingCollector for Xfs {
    fn collect(&self) -> CollectResult {
        let dir = self.paths.sys("fs/xfs");
        // No XFS module loaded: nothing to report.
        let Some(entries) = entries_if_present(&dir)? else {
            return Ok(vec![]);
        };
        let mut files = self.files.lock().unwrap_or_else(|p| p.into_inner());
        // Only mounted filesystems have a stats/stats file; the global stats dir has none.
        files.retain(|device, _| entries.iter().any(|(n, _)| n == device));
        let mut families: Vec<MetricFamily> = FIELDS
            .iter()
            .map(|(_, _, suffix, help)| {
                MetricFamily::counter(["node_xfs_", suffix].concat(), *help)
            })
            .collect();
        for (device, path) in &entries {
            let stats = path.join("stats/stats");
            if !stats.is_file() {
                continue;
            }
            let file = files
                .entry(device.clone())
                .or_insert_with(|| KeptFile::new(stats));
            let text = match file.read_io() {
                Ok(t) => t,
                Err(e) => {
                    log::warn(
                        "skipping xfs filesystem",
                        &[
                            ("path", &file.path().display().to_string()),
                            ("err", &e.to_string()),
                        ],
                    );
                    continue;
                }
            };
            match parse(&text) {
                Ok(values) => {
                    for (family, value) in families.iter_mut().zip(values) {
                        family.push(&[("device", device.as_str())], value);
                    }
                }
                Err(e) => log::warn(
                    "skipping unparsable xfs stats",
                    &[("path", &file.path().display().to_string()), ("err", &e)],
                ),
            }
        }
        Ok(families)
    }
}

/// The values of [`FIELDS`], in its order. A line that is missing or short fails the file:
/// every line node_exporter uses has been in the kernel since 2.6.
fn parse(text: &str) -> Result<Vec<f64>, String> {
    let mut lines: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for line in text.lines() {
        let mut words = line.split_ascii_whitespace();
        if let Some(key) = words.next() {
            lines.insert(key, words.collect());
        }
    }
    FIELDS
        .iter()
        .map(|(key, index, _, _)| {
            let raw = lines
                .get(key)
                .ok_or_else(|| format!("no {key} line"))?
                .get(*index)
                .ok_or_else(|| format!("{key} line too short"))?;
            raw.parse::<u64>()
                .map(|v| v as f64)
                .map_err(|_| format!("{key}: not a number: {raw:?}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_come_from_their_lines_and_bad_files_are_refused() {
        let text = "extent_alloc 1 2 3 4\nabt 5 6 7 8\nblk_map 9 10 11 12 13 14 15\nbmbt 16 17 18 19\n\
                    dir 20 21 22 23\ntrans 0 0 0\nig 24 25 26 27 28 29 30\nrw 31 32\nvnodes 33 34 35 36 37 38 39 40\n";
        let values = parse(text).unwrap();
        let value = |suffix: &str| values[FIELDS.iter().position(|f| f.2 == suffix).unwrap()];
        assert_eq!(value("extent_allocation_extents_allocated_total"), 1.0);
        assert_eq!(value("block_mapping_extent_list_compares_total"), 15.0);
        assert_eq!(value("inode_operation_attribute_changes_total"), 30.0);
        assert_eq!(value("write_calls_total"), 31.0);
        assert_eq!(value("read_calls_total"), 32.0);
        assert_eq!(value("vnode_remove_total"), 39.0);
        assert!(parse("").is_err());
        assert!(parse(&text.replace("rw 31 32", "rw 31")).is_err());
        assert!(parse(&text.replace("abt 5", "abt x")).is_err());
    }
}
