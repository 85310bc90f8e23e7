//! Linux software RAID (md) arrays from /proc/mdstat, in node_exporter's names: the array's
//! state (`node_md_state{state}`, one of active, inactive, recovering, resync, check), its
//! disks by state, the disks it needs, and its size and synced blocks.
//!
//! node_exporter reads only /proc/mdstat for these (through procfs' MDStat); so do we, so that
//! the values agree. Without md support there is no /proc/mdstat: nothing to report.

use crate::kept_file::KeptFile;
use crate::paths::Paths;
use common::{log, BlockingCollector, CollectResult, MetricFamily};

pub struct Mdadm {
    file: KeptFile,
}

impl Mdadm {
    pub fn new(paths: &Paths) -> Self {
        Mdadm {
            file: KeptFile::new(paths.proc("mdstat")),
        }
    }
}

/// One array as /proc/mdstat describes it.
#[derive(Debug, PartialEq)]
pub struct Array<'a> {
    pub name: &'a str,
    /// `active`, `inactive`, `recovering`, `resyncing` or `checking`.
    pub state: &'a str,
    pub disks_active: u64,
    pub disks_required: u64,
    pub disks_failed: u64,
    pub disks_spare: u64,
    pub blocks: u64,
    pub blocks_synced: u64,
}

/// The label values of `node_md_state`, with the activity state each one stands for.
const STATES: [(&str, &str); 5] = [
    ("active", "active"),
    ("inactive", "inactive"),
    ("recovering", "recovering"),
    ("resync", "resyncing"),
    ("check", "checking"),
];

impl BlockingCollector for Mdadm {
    fn collect(&self) -> CollectResult {
        // No md driver loaded: no arrays, not a failure.
        let Some(text) = self.file.read_if_present()? else {
            return Ok(vec![]);
        };
        let arrays = parse(&text).map_err(|e| {
            log::warn(
                "cannot parse mdstat",
                &[
                    ("path", &self.file.path().display().to_string()),
                    ("err", &e),
                ],
            );
            anyhow::anyhow!("{}: {e}", self.file.path().display())
        })?;
        let mut required =
            MetricFamily::gauge("node_md_disks_required", "Total number of disks of device.");
        let mut disks = MetricFamily::gauge(
            "node_md_disks",
            "Number of active/failed/spare disks of device.",
        );
        let mut state = MetricFamily::gauge("node_md_state", "Indicates the state of md-device.");
        let mut blocks = MetricFamily::gauge("node_md_blocks", "Total number of blocks on device.");
        let mut synced = MetricFamily::gauge(
            "node_md_blocks_synced",
            "Number of blocks synced on device.",
        );
        for a in &arrays {
            required.push(&[("device", a.name)], a.disks_required as f64);
            for (label, n) in [
                ("active", a.disks_active),
                ("failed", a.disks_failed),
                ("spare", a.disks_spare),
            ] {
                disks.push(&[("device", a.name), ("state", label)], n as f64);
            }
            for (label, activity) in STATES {
                let value = if a.state == activity { 1.0 } else { 0.0 };
                state.push(&[("device", a.name), ("state", label)], value);
            }
            blocks.push(&[("device", a.name)], a.blocks as f64);
            synced.push(&[("device", a.name)], a.blocks_synced as f64);
        }
        Ok(vec![blocks, synced, disks, required, state])
    }
}

/// Parses /proc/mdstat. An array whose lines do not have the expected shape fails the whole
/// file, as in node_exporter: half a RAID picture would hide the array an alert is about.
pub fn parse(text: &str) -> Result<Vec<Array<'_>>, String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut arrays = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty()
            || line.starts_with([' ', '\t'])
            || line.starts_with("Personalities")
            || line.starts_with("unused")
        {
            continue;
        }
        // md0 : active raid1 sdb1[1] sda1[0](F)
        let fields: Vec<&str> = line.split_ascii_whitespace().collect();
        if fields.len() < 3 {
            return Err(format!("too few fields in array line {line:?}"));
        }
        let name = fields[0];
        let mut state = fields[2];
        // The kernel always writes a status line and at least one more after each array.
        if lines.len() <= i + 2 {
            return Err(format!("{name}: too few lines"));
        }
        let status = lines[i + 1];
        let (active, required, blocks) = status_line(line, status)
            .ok_or_else(|| format!("{name}: unexpected status line {status:?}"))?;
        let mut sync_line = lines[i + 2];
        if sync_line.contains("bitmap") {
            sync_line = lines.get(i + 3).copied().unwrap_or("");
        }
        let mut blocks_synced = blocks;
        let activity = if sync_line.contains("recovery") {
            Some("recovering")
        } else if sync_line.contains("check") {
            Some("checking")
        } else if sync_line.contains("resync") {
            Some("resyncing")
        } else {
            None
        };
        if let Some(activity) = activity {
            state = activity;
            // resync=PENDING or resync=DELAYED: queued behind another array, nothing done yet.
            blocks_synced = if sync_line.contains("PENDING") || sync_line.contains("DELAYED") {
                0
            } else {
                synced_blocks(sync_line)
                    .ok_or_else(|| format!("{name}: unexpected sync line {sync_line:?}"))?
            };
        }
        arrays.push(Array {
            name,
            state,
            disks_active: active,
            disks_required: required,
            disks_failed: line.matches("(F)").count() as u64,
            disks_spare: line.matches("(S)").count() as u64,
            blocks,
            blocks_synced,
        });
    }
    Ok(arrays)
}

/// `(active, required, blocks)` from the array line and the status line after it, e.g.
/// `1953382400 blocks super 1.2 [2/1] [U_]`. raid0 and linear arrays have no `[n/m]`: every
/// member listed is needed and active; an inactive array has no counts at all.
fn status_line(array_line: &str, status: &str) -> Option<(u64, u64, u64)> {
    let blocks: u64 = status.split_ascii_whitespace().next()?.parse().ok()?;
    if array_line.contains("raid0") || array_line.contains("linear") {
        let members = array_line.matches('[').count() as u64;
        return Some((members, members, blocks));
    }
    if array_line.contains("inactive") {
        return Some((0, 0, blocks));
    }
    // The `[required/active]` that is followed by a `[UU_]` map.
    let words: Vec<&str> = status.split_ascii_whitespace().collect();
    let pair = words.windows(2).find_map(|w| {
        let map = w[1].strip_prefix('[')?.strip_suffix(']')?;
        if map.is_empty() || !map.chars().all(|c| c == 'U' || c == '_') {
            return None;
        }
        let (required, active) = w[0].strip_prefix('[')?.strip_suffix(']')?.split_once('/')?;
        Some((active.parse().ok()?, required.parse().ok()?))
    })?;
    if !status.contains(" blocks ") {
        return None;
    }
    Some((pair.0, pair.1, blocks))
}

/// The `(done/total)` of `[=>....]  recovery = 12.6% (37043392/292945152) finish=...`.
fn synced_blocks(line: &str) -> Option<u64> {
    let start = line.find('(')?;
    let (done, _) = line[start + 1..].split_once('/')?;
    done.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MDSTAT: &str = "Personalities : [raid1] [raid6] [raid5] [raid4] [raid0] [linear]
md127 : active raid1 sdi2[0] sdj2[1]
      312319552 blocks [2/2] [UU]

md0 : active raid1 sdb1[1] sda1[0](F)
      1953382400 blocks super 1.2 [2/1] [_U]
      bitmap: 3/15 pages [12KB], 65536KB chunk

md1 : active raid5 sdd1[3] sdc1[1] sde1[4](S) sdf1[0]
      5860270080 blocks super 1.2 level 5, 512k chunk, algorithm 2 [3/3] [UUU]
      [=>...................]  resync =  8.5% (250000000/2930135040) finish=231.0min speed=193134K/sec

md2 : active raid1 sdg1[2] sdh1[0]
      976630464 blocks super 1.2 [2/1] [U_]
      [==>..................]  recovery = 12.6% (123456789/976630464) finish=127.5min speed=111252K/sec
      bitmap: 1/8 pages [4KB], 65536KB chunk

md3 : active raid6 sdk[0] sdl[1] sdm[2] sdn[3]
      195310848 blocks super 1.2 level 6, 512k chunk, algorithm 2 [4/4] [UUUU]
      [===>.................]  check = 17.3% (16900000/97655424) finish=11.2min speed=120000K/sec

md4 : active raid0 sdo[0] sdp[1]
      1000000 blocks super 1.2 512k chunks

md5 : inactive sdq[0](S)
      2930135048 blocks super 1.2

md6 : active raid1 sdr[0] sds[1]
      1000 blocks super 1.2 [2/2] [UU]
        resync=DELAYED

unused devices: <none>
";

    #[test]
    fn every_array_state_from_a_real_shaped_mdstat() {
        let arrays = parse(MDSTAT).unwrap();
        let by = |n: &str| arrays.iter().find(|a| a.name == n).unwrap();
        assert_eq!(arrays.len(), 8);
        assert_eq!(
            by("md0"),
            &Array {
                name: "md0",
                state: "active",
                disks_active: 1,
                disks_required: 2,
                disks_failed: 1,
                disks_spare: 0,
                blocks: 1953382400,
                blocks_synced: 1953382400,
            }
        );
        let md1 = by("md1");
        assert_eq!(md1.state, "resyncing");
        assert_eq!((md1.disks_active, md1.disks_spare), (3, 1));
        assert_eq!(md1.blocks_synced, 250000000);
        // The recovery line comes before the bitmap line here.
        assert_eq!(by("md2").state, "recovering");
        assert_eq!(by("md2").blocks_synced, 123456789);
        assert_eq!(by("md3").state, "checking");
        assert_eq!(by("md3").blocks_synced, 16900000);
        assert_eq!((by("md4").disks_active, by("md4").disks_required), (2, 2));
        assert_eq!(by("md5").state, "inactive");
        assert_eq!((by("md5").disks_required, by("md5").disks_spare), (0, 1));
        assert_eq!(by("md6").state, "resyncing");
        assert_eq!(by("md6").blocks_synced, 0);
        assert_eq!(by("md127").disks_active, 2);
    }

    #[test]
    fn malformed_mdstat_is_an_error_not_a_panic() {
        assert!(parse("").unwrap().is_empty());
        assert!(parse("Personalities : \nunused devices: <none>\n")
            .unwrap()
            .is_empty());
        for bad in [
            "md0 : active raid1 sda[0]\n",
            "md0 : active raid1 sda[0]\n      lots blocks [2/2] [UU]\n\n",
            "md0 : active raid1 sda[0]\n      100 blocks super 1.2 [2/x] [UU]\n\n",
            "md0 :\n      100 blocks\n\n",
            "md0 : active raid1 sda[0]\n      100 blocks [2/2] [UU]\n      [=>..] recovery = 1% (x/100)\n",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
