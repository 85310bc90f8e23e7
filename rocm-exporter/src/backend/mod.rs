//! The two ways to read AMD GPUs, behind one model ([`crate::model::Backend`]): amdgpu sysfs
//! directly (the default where it works: no fork, microseconds, right on APUs) or rocm-smi.

pub mod rocm_smi;
pub mod sysfs;

use std::path::Path;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Choice {
    Auto,
    Sysfs,
    RocmSmi,
}

impl Choice {
    pub fn parse(s: &str) -> Result<Choice, String> {
        match s {
            "auto" => Ok(Choice::Auto),
            "sysfs" => Ok(Choice::Sysfs),
            "rocm-smi" => Ok(Choice::RocmSmi),
            _ => Err("expected auto, sysfs or rocm-smi".into()),
        }
    }

    /// `auto` takes sysfs when it finds an amdgpu device under `sysfs`, rocm-smi otherwise.
    pub fn resolve(self, sysfs: &Path) -> Source {
        match self {
            Choice::Sysfs => Source::Sysfs,
            Choice::RocmSmi => Source::RocmSmi,
            Choice::Auto if sysfs::find_cards(sysfs).is_empty() => Source::RocmSmi,
            Choice::Auto => Source::Sysfs,
        }
    }
}

/// The backend actually used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Sysfs,
    RocmSmi,
}

impl Source {
    pub fn name(self) -> &'static str {
        match self {
            Source::Sysfs => "sysfs",
            Source::RocmSmi => "rocm-smi",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_prefers_sysfs_when_it_has_amdgpu_devices() {
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sysfs");
        assert_eq!(
            Choice::Auto.resolve(&fixtures.join("strix-halo")),
            Source::Sysfs
        );
        assert_eq!(
            Choice::Auto.resolve(&fixtures.join("nvidia-only")),
            Source::RocmSmi
        );
        assert_eq!(
            Choice::RocmSmi.resolve(&fixtures.join("dgpu")),
            Source::RocmSmi
        );
        assert!(Choice::parse("nvml").is_err());
    }
}
