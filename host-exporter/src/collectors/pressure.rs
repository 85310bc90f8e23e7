//! Pressure stall information from /proc/pressure/{cpu,io,memory,irq}: the `total` of each
//! `some` line as `..._waiting_seconds_total` and of each `full` line as `..._stalled_seconds_total`.
//! Kernels before 5.13 have no `full` line for cpu, and only some kernels have irq; what is
//! absent is left out.

use crate::kept_file::KeptFile;
use crate::paths::{if_present, Paths};
use common::{log, BlockingCollector, CollectResult, MetricFamily};
use std::path::Path;

pub struct Pressure {
    /// One per entry of `RESOURCES`, in its order.
    files: Vec<KeptFile>,
}

impl Pressure {
    pub fn new(paths: &Paths) -> Self {
        Pressure {
            files: RESOURCES
                .iter()
                .map(|(resource, _, _)| KeptFile::new(paths.proc(&format!("pressure/{resource}"))))
                .collect(),
        }
    }
}

const RESOURCES: [(&str, &str, &str); 4] = [
    (
        "cpu",
        "waited for CPU time",
        "stalled due to CPU contention",
    ),
    (
        "io",
        "waited due to IO congestion",
        "stalled due to IO congestion",
    ),
    (
        "memory",
        "waited for memory",
        "stalled due to memory congestion",
    ),
    ("irq", "", "stalled due to IRQ"),
];

impl BlockingCollector for Pressure {
    fn collect(&self) -> CollectResult {
        let mut families = Vec::new();
        let mut found = 0;
        for ((resource, some_help, full_help), file) in RESOURCES.iter().zip(&self.files) {
            let path = file.path();
            let text = match if_present(file.read_io()) {
                Ok(Some(t)) => t,
                Ok(None) => continue,
                Err(e) => {
                    // EOPNOTSUPP when PSI is compiled in but disabled at boot.
                    log::debug(
                        "cannot read pressure file",
                        &[
                            ("path", &path.display().to_string()),
                            ("err", &e.to_string()),
                        ],
                    );
                    continue;
                }
            };
            found += 1;
            for line in text.lines() {
                let Some((kind, total)) = parse_line(line) else {
                    log::warn(
                        "skipping unparsable pressure line",
                        &[("path", &path.display().to_string()), ("line", line)],
                    );
                    continue;
                };
                let (suffix, help) = match kind {
                    "some" if !some_help.is_empty() => ("waiting", some_help),
                    "full" => ("stalled", full_help),
                    _ => continue,
                };
                families.push(
                    MetricFamily::counter(
                        format!("node_pressure_{resource}_{suffix}_seconds_total"),
                        format!("Total time in seconds that processes have {help}"),
                    )
                    .with_value(total),
                );
            }
        }
        if found == 0 {
            anyhow::bail!(
                "no pressure files under {} (kernel without PSI, or psi=0)",
                self.files[0]
                    .path()
                    .parent()
                    .unwrap_or(Path::new(""))
                    .display()
            );
        }
        Ok(families)
    }
}

/// `some avg10=0.00 avg60=0.00 avg300=0.00 total=12345` → ("some", 0.012345 seconds).
fn parse_line(line: &str) -> Option<(&str, f64)> {
    let mut fields = line.split_ascii_whitespace();
    let kind = fields.next()?;
    let total_us: f64 = fields
        .find_map(|f| f.strip_prefix("total="))?
        .parse()
        .ok()?;
    Some((kind, total_us / 1e6))
}
