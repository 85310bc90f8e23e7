//! The edac collector: correctable and uncorrectable memory error counts per memory controller
//! and chip-select row, from /sys/devices/system/edac/mc. Errors a controller cannot place on a
//! row (`*_noinfo_count`) are reported with `csrow="unknown"`, as node_exporter does.

use crate::kept_file::{KeptFileScrape, KeptFileSet};
use crate::paths::{sorted_entries, Paths};
use common::{BlockingCollector, CollectResult, MetricFamily};
use std::path::{Path, PathBuf};

pub struct Edac {
    dir: PathBuf,
    /// Four counts per controller and two per row, read every scrape: kept open.
    files: KeptFileSet,
}

impl Edac {
    pub fn new(paths: &Paths) -> Self {
        Edac {
            dir: paths.sys("devices/system/edac/mc"),
            files: KeptFileSet::default(),
        }
    }
}

fn count(files: &mut KeptFileScrape, path: PathBuf) -> anyhow::Result<f64> {
    let raw = files
        .read_trimmed(&path)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    raw.parse::<u64>()
        .map(|v| v as f64)
        .map_err(|e| anyhow::anyhow!("{}: {e}: {raw:?}", path.display()))
}

/// Entries named `<prefix><number>`, in numeric order.
fn numbered(dir: &Path, prefix: &str) -> anyhow::Result<Vec<(u32, PathBuf)>> {
    let mut out: Vec<(u32, PathBuf)> = sorted_entries(dir)
        .map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?
        .into_iter()
        .filter_map(|(name, path)| Some((name.strip_prefix(prefix)?.parse().ok()?, path)))
        .collect();
    out.sort();
    Ok(out)
}

impl BlockingCollector for Edac {
    fn collect(&self) -> CollectResult {
        if !self.dir.exists() {
            // No EDAC driver (most desktops and VMs): nothing to report.
            return Ok(vec![]);
        }
        let mut ce = MetricFamily::counter(
            "node_edac_correctable_errors_total",
            "Total correctable memory errors.",
        );
        let mut ue = MetricFamily::counter(
            "node_edac_uncorrectable_errors_total",
            "Total uncorrectable memory errors.",
        );
        let mut row_ce = MetricFamily::counter(
            "node_edac_csrow_correctable_errors_total",
            "Total correctable memory errors for this csrow.",
        );
        let mut row_ue = MetricFamily::counter(
            "node_edac_csrow_uncorrectable_errors_total",
            "Total uncorrectable memory errors for this csrow.",
        );
        let mut files = self.files.scrape();
        let mut count = |path: PathBuf| count(&mut files, path);
        for (number, controller) in numbered(&self.dir, "mc")? {
            let mc = number.to_string();
            ce.push(&[("controller", &mc)], count(controller.join("ce_count"))?);
            ue.push(&[("controller", &mc)], count(controller.join("ue_count"))?);
            let unknown = [("controller", mc.as_str()), ("csrow", "unknown")];
            row_ce.push(&unknown, count(controller.join("ce_noinfo_count"))?);
            row_ue.push(&unknown, count(controller.join("ue_noinfo_count"))?);
            for (row, csrow) in numbered(&controller, "csrow")? {
                let labels = [("controller", mc.clone()), ("csrow", row.to_string())];
                row_ce.push(&labels, count(csrow.join("ce_count"))?);
                row_ue.push(&labels, count(csrow.join("ue_count"))?);
            }
        }
        Ok(vec![ce, ue, row_ce, row_ue])
    }
}
