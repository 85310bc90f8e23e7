//! The selinux collector: `node_selinux_enabled`, and where SELinux is enabled
//! `node_selinux_config_mode` (from the rootfs's /etc/selinux/config) and
//! `node_selinux_current_mode` (from selinuxfs's `enforce`): 1 enforcing, 0 permissive,
//! -1 disabled. SELinux counts as enabled when selinuxfs is mounted at <sysfs>/fs/selinux and
//! answers `enforce`.

use crate::paths::{if_present, read_sysfs_value, read_whole, Paths};
use common::{BlockingCollector, CollectResult, MetricFamily};
use std::path::PathBuf;

pub struct Selinux {
    enforce: PathBuf,
    config: PathBuf,
}

impl Selinux {
    pub fn new(paths: &Paths) -> Self {
        Selinux {
            enforce: paths.sys("fs/selinux/enforce"),
            config: paths.rooted("/etc/selinux/config"),
        }
    }
}

/// SELINUX= in the config file; a missing file or key reads as disabled, as in libselinux.
fn config_mode(text: &str) -> f64 {
    let value = text
        .lines()
        .rev()
        .filter_map(|l| l.trim().strip_prefix("SELINUX="))
        .next()
        .map(|v| v.trim().trim_matches('"'))
        .unwrap_or("");
    match value {
        "enforcing" => 1.0,
        "permissive" => 0.0,
        _ => -1.0,
    }
}

impl BlockingCollector for Selinux {
    fn collect(&self) -> CollectResult {
        let enabled = MetricFamily::gauge(
            "node_selinux_enabled",
            "SELinux is enabled, 1 is true, 0 is false",
        );
        let Some(enforce) = if_present(read_sysfs_value(&self.enforce))
            .map_err(|e| anyhow::anyhow!("{}: {e}", self.enforce.display()))?
        else {
            return Ok(vec![enabled.with_value(0.0)]);
        };
        let current = match enforce.as_str() {
            "1" => 1.0,
            "0" => 0.0,
            other => anyhow::bail!("{}: not 0 or 1: {other:?}", self.enforce.display()),
        };
        let config = match if_present(read_whole(&self.config))
            .map_err(|e| anyhow::anyhow!("{}: {e}", self.config.display()))?
        {
            Some(text) => config_mode(&text),
            None => -1.0,
        };
        Ok(vec![
            enabled.with_value(1.0),
            MetricFamily::gauge(
                "node_selinux_config_mode",
                "Configured SELinux enforcement mode",
            )
            .with_value(config),
            MetricFamily::gauge(
                "node_selinux_current_mode",
                "Current SELinux enforcement mode",
            )
            .with_value(current),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::config_mode;

    #[test]
    fn config_modes() {
        assert_eq!(
            config_mode("# c\nSELINUX=enforcing\nSELINUXTYPE=targeted\n"),
            1.0
        );
        assert_eq!(config_mode("SELINUX=permissive"), 0.0);
        assert_eq!(config_mode("SELINUX=disabled"), -1.0);
        assert_eq!(config_mode("garbage"), -1.0);
    }
}
