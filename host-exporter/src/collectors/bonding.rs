//! Bonded interfaces from sysfs: per master in /sys/class/net/bonding_masters, the number of
//! slaves (`node_bonding_slaves`) and of slaves whose MII status is up (`node_bonding_active`),
//! as node_exporter reports them. Without the bonding driver the list is absent and nothing is
//! reported.

use crate::kept_file::{KeptFile, KeptFileScrape, KeptFileSet};
use crate::paths::Paths;
use common::{log, BlockingCollector, CollectResult, MetricFamily};
use std::path::Path;

pub struct Bonding {
    paths: Paths,
    masters: KeptFile,
    /// Each master's slave list and each slave's status, kept open.
    files: KeptFileSet,
}

impl Bonding {
    pub fn new(paths: &Paths) -> Self {
        Bonding {
            paths: paths.clone(),
            masters: KeptFile::new(paths.sys("class/net/bonding_masters")),
            files: KeptFileSet::default(),
        }
    }
}

impl BlockingCollector for Bonding {
    fn collect(&self) -> CollectResult {
        let root = self.paths.sys("class/net");
        let Some(masters) = self.masters.read_if_present()? else {
            return Ok(vec![]);
        };
        let mut slaves_family = MetricFamily::gauge(
            "node_bonding_slaves",
            "Number of configured slaves per bonding interface.",
        );
        let mut active_family = MetricFamily::gauge(
            "node_bonding_active",
            "Number of active slaves per bonding interface.",
        );
        let mut files = self.files.scrape();
        let mut masters: Vec<&str> = masters.split_ascii_whitespace().collect();
        masters.sort_unstable();
        masters.dedup();
        for master in masters {
            let slaves_path = root.join(master).join("bonding/slaves");
            let slaves = match files.read(&slaves_path) {
                Ok(s) => s,
                Err(e) => {
                    // A master deleted between the two reads, or a damaged tree: skip it.
                    log::warn(
                        "skipping bonding master",
                        &[
                            ("path", &slaves_path.display().to_string()),
                            ("err", &e.to_string()),
                        ],
                    );
                    continue;
                }
            };
            let (mut configured, mut active) = (0.0, 0.0);
            for slave in slaves.split_ascii_whitespace() {
                configured += 1.0;
                if mii_status(&mut files, &root.join(master), slave).as_deref() == Some("up") {
                    active += 1.0;
                }
            }
            slaves_family.push(&[("master", master)], configured);
            active_family.push(&[("master", master)], active);
        }
        Ok(vec![slaves_family, active_family])
    }
}

/// A slave's MII status, found through the master's `lower_<slave>` link (`slave_<slave>` on
/// older kernels). `None`, logged, when neither can be read: the slave counts as not active.
fn mii_status(files: &mut KeptFileScrape, master: &Path, slave: &str) -> Option<String> {
    let mut last_error = None;
    for prefix in ["lower_", "slave_"] {
        let path = master
            .join(format!("{prefix}{slave}"))
            .join("bonding_slave/mii_status");
        match files.read(&path) {
            Ok(status) => return Some(status.trim().to_string()),
            Err(e) => last_error = Some((path, e)),
        }
    }
    if let Some((path, e)) = last_error {
        log::warn(
            "cannot read bonding slave status",
            &[
                ("path", &path.display().to_string()),
                ("err", &e.to_string()),
            ],
        );
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slaves_are_counted_and_only_those_up_are_active() {
        let root = std::env::temp_dir().join(format!("bonding-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let net = root.join("sys/class/net");
        let paths = Paths {
            procfs: root.join("proc"),
            sysfs: root.join("sys"),
            rootfs: root.clone(),
            udev_data: root.join("udev"),
        };
        let bonding = Bonding::new(&paths);
        assert!(bonding.collect().unwrap().is_empty(), "no bonding driver");

        std::fs::create_dir_all(&net).unwrap();
        std::fs::write(net.join("bonding_masters"), "bond1 bond0 gone\n").unwrap();
        for (master, slaves) in [("bond0", "eth0 eth1 eth2\n"), ("bond1", "\n")] {
            std::fs::create_dir_all(net.join(master).join("bonding")).unwrap();
            std::fs::write(net.join(master).join("bonding/slaves"), slaves).unwrap();
        }
        for (link, status) in [("lower_eth0", "up"), ("slave_eth1", "down")] {
            let dir = net.join("bond0").join(link).join("bonding_slave");
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("mii_status"), format!("{status}\n")).unwrap();
        }
        // eth2 has no status file at all.
        let families = bonding.collect().unwrap();
        let values = |i: usize| -> Vec<(String, f64)> {
            families[i]
                .samples
                .iter()
                .map(|s| (s.labels[0].1.clone(), s.value))
                .collect()
        };
        assert_eq!(
            values(0),
            [("bond0".to_string(), 3.0), ("bond1".to_string(), 0.0)]
        );
        assert_eq!(
            values(1),
            [("bond0".to_string(), 1.0), ("bond1".to_string(), 0.0)]
        );
        std::fs::remove_dir_all(&root).unwrap();
    }
}
