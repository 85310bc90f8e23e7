//! The direct backend: `/sys/class/drm/card*/device` of amdgpu devices and their amdgpu hwmon.
//! No fork, a few dozen small reads per GPU.
//!
//! Every amdgpu sensor read wakes a runtime-suspended GPU (the driver calls
//! `pm_runtime_get_sync`), so `power/runtime_status` is read first and a suspended GPU is
//! reported as suspended with the values of its last active read, without touching its
//! sensors. A file that is missing, empty, unreadable (EPERM while the GPU is in reset) or
//! garbage costs only its own value.

use crate::apu;
use crate::model::{Backend, Device, Failure, Reason, Snapshot};
use common::gpu::normalize_pci_address;
use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// File access, so that tests can inject errors a fixture tree cannot hold (EPERM as root).
pub trait Files: Send + 'static {
    fn read(&self, path: &Path) -> io::Result<String>;
}

pub struct RealFiles;

impl Files for RealFiles {
    fn read(&self, path: &Path) -> io::Result<String> {
        std::fs::read_to_string(path)
    }
}

pub struct SysfsBackend<F: Files = RealFiles> {
    sysfs: PathBuf,
    procfs: PathBuf,
    files: F,
    /// The last active read of each GPU, served while it is runtime-suspended.
    last_active: HashMap<String, (Device, Instant)>,
}

impl SysfsBackend<RealFiles> {
    pub fn new(sysfs: impl Into<PathBuf>, procfs: impl Into<PathBuf>) -> Self {
        Self::with_files(sysfs, procfs, RealFiles)
    }
}

/// One amdgpu DRM card found under `class/drm`.
#[derive(Clone, Debug, PartialEq)]
pub struct Card {
    pub name: String,
    pub device_dir: PathBuf,
    pub pci_address: String,
}

/// Lists the amdgpu cards: `card<N>` entries (not connectors like `card1-DP-1`, not
/// `renderD*`) whose device has vendor 0x1002 and is bound to the amdgpu driver.
pub fn find_cards(sysfs: &Path) -> Vec<Card> {
    let Ok(entries) = std::fs::read_dir(sysfs.join("class/drm")) else {
        return Vec::new();
    };
    let mut cards = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_card = name
            .strip_prefix("card")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if !is_card {
            continue;
        }
        let device_dir = entry.path().join("device");
        let vendor = std::fs::read_to_string(device_dir.join("vendor")).unwrap_or_default();
        let uevent = std::fs::read_to_string(device_dir.join("uevent")).unwrap_or_default();
        let driver_is_amdgpu = uevent.lines().any(|l| l.trim() == "DRIVER=amdgpu");
        if vendor.trim() != "0x1002" || !driver_is_amdgpu {
            continue;
        }
        let pci_address = uevent
            .lines()
            .find_map(|l| l.trim().strip_prefix("PCI_SLOT_NAME="))
            .map(str::to_string)
            .or_else(|| {
                std::fs::canonicalize(&device_dir)
                    .ok()
                    .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            })
            .map(|a| normalize_pci_address(&a))
            .unwrap_or_else(|| format!("drm:{name}"));
        cards.push(Card {
            name,
            device_dir,
            pci_address,
        });
    }
    cards.sort_by(|a, b| a.pci_address.cmp(&b.pci_address));
    cards.dedup_by(|a, b| a.pci_address == b.pci_address);
    cards
}

impl<F: Files> SysfsBackend<F> {
    pub fn with_files(sysfs: impl Into<PathBuf>, procfs: impl Into<PathBuf>, files: F) -> Self {
        SysfsBackend {
            sysfs: sysfs.into(),
            procfs: procfs.into(),
            files,
            last_active: HashMap::new(),
        }
    }

    /// A file's trimmed content; `None` when missing, unreadable or empty.
    fn text(&self, path: &Path) -> Option<String> {
        match self.files.read(path) {
            Ok(s) => {
                let s = s.trim();
                (!s.is_empty()).then(|| s.to_string())
            }
            Err(e) => {
                if e.kind() != io::ErrorKind::NotFound {
                    common::log::debug(
                        "cannot read sysfs file; value skipped",
                        &[
                            ("path", &path.display().to_string()),
                            ("err", &e.to_string()),
                        ],
                    );
                }
                None
            }
        }
    }

    /// A number; garbage is skipped like a missing file.
    fn number(&self, path: &Path) -> Option<f64> {
        let text = self.text(path)?;
        match text.parse::<f64>() {
            Ok(v) if v.is_finite() => Some(v),
            _ => {
                common::log::debug(
                    "sysfs file is not a number; value skipped",
                    &[("path", &path.display().to_string())],
                );
                None
            }
        }
    }

    /// A DKMS amdgpu has its own version; an in-tree one is the kernel's.
    fn driver_version(&self) -> String {
        self.text(&self.sysfs.join("module/amdgpu/version"))
            .or_else(|| self.text(&self.procfs.join("sys/kernel/osrelease")))
            .unwrap_or_default()
    }

    fn read_card(&mut self, card: &Card) -> Device {
        let dir = &card.device_dir;
        let device_id = self.text(&dir.join("device"));
        let mut device = Device {
            id: card.pci_address.clone(),
            card: Some(card.name.clone()),
            model: device_id
                .as_deref()
                .map(apu::model_name)
                .unwrap_or_default(),
            device_id,
            revision: self.text(&dir.join("revision")),
            runtime_status: self.text(&dir.join("power/runtime_status")),
            ..Default::default()
        };
        if device.runtime_status.as_deref() == Some("suspended") {
            return self.suspended(device);
        }

        let mut answered = false;
        let mut num = |this: &Self, path: PathBuf| {
            let v = this.number(&path);
            answered |= v.is_some();
            v
        };
        if let Some(name) = self.text(&dir.join("product_name")) {
            device.model = name;
        }
        device.unique_id = self.text(&dir.join("unique_id"));
        device.busy_percent = num(self, dir.join("gpu_busy_percent"));
        for (pool, prefix) in [
            (&mut device.memory.vram, "mem_info_vram"),
            (&mut device.memory.vis_vram, "mem_info_vis_vram"),
            (&mut device.memory.gtt, "mem_info_gtt"),
        ] {
            pool.total_bytes = num(self, dir.join(format!("{prefix}_total")));
            pool.used_bytes = num(self, dir.join(format!("{prefix}_used")));
        }
        device.pcie.speed_transfers_per_second = self.link_speed(&dir.join("current_link_speed"));
        device.pcie.max_speed_transfers_per_second = self.link_speed(&dir.join("max_link_speed"));
        device.pcie.width = self.number(&dir.join("current_link_width"));
        device.pcie.max_width = self.number(&dir.join("max_link_width"));

        if let Some(hwmon) = self.amdgpu_hwmon(dir) {
            answered |= self.read_hwmon(&hwmon, &mut device);
        }
        device.is_apu = apu::looks_like_apu(&device);
        device.answered = answered;
        if answered {
            self.last_active
                .insert(device.id.clone(), (device.clone(), Instant::now()));
        }
        device
    }

    /// A suspended GPU: the last active values if we have them, else its identity only.
    fn suspended(&self, identity: Device) -> Device {
        match self.last_active.get(&identity.id) {
            Some((last, taken)) => Device {
                runtime_status: identity.runtime_status,
                answered: true,
                values_taken: Some(*taken),
                ..last.clone()
            },
            None => Device {
                answered: true,
                is_apu: identity.device_id.as_deref().is_some_and(apu::is_known_apu),
                ..identity
            },
        }
    }

    /// `16.0 GT/s PCIe` → 16e9 transfers per second.
    fn link_speed(&self, path: &Path) -> Option<f64> {
        let text = self.text(path)?;
        let gts: f64 = text.split_whitespace().next()?.parse().ok()?;
        text.contains("GT/s").then_some(gts * 1e9)
    }

    /// The hwmon directory named `amdgpu` (its index changes across boots).
    fn amdgpu_hwmon(&self, device_dir: &Path) -> Option<PathBuf> {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(device_dir.join("hwmon"))
            .ok()?
            .flatten()
            .map(|e| e.path())
            .collect();
        dirs.sort();
        dirs.into_iter()
            .find(|d| self.text(&d.join("name")).as_deref() == Some("amdgpu"))
    }

    /// Reads the hwmon sensors into `device`; true when at least one value was read.
    fn read_hwmon(&self, hwmon: &Path, device: &mut Device) -> bool {
        let mut answered = false;
        let mut num = |file: String| {
            let v = self.number(&hwmon.join(file));
            answered |= v.is_some();
            v
        };
        let label = |file: String| self.text(&hwmon.join(file));

        // temp1 edge, temp2 junction, temp3 mem; millidegrees.
        for n in 1..=3 {
            let default = ["edge", "junction", "mem"][n - 1];
            let sensor = label(format!("temp{n}_label")).unwrap_or_else(|| default.into());
            let sensor = if sensor == "mem" {
                "memory".to_string()
            } else {
                sensor
            };
            if let Some(v) = num(format!("temp{n}_input")) {
                device.temperatures.push((sensor.clone(), v / 1000.0));
            }
            if let Some(v) = num(format!("temp{n}_crit")) {
                device.temperatures_critical.push((sensor, v / 1000.0));
            }
        }
        // Power in microwatts; most dGPUs have only one of average/input, Strix has both.
        // Kernels before power1_label existed used the same sensor, which amdgpu calls PPT.
        device.power_sensor = label("power1_label".into()).unwrap_or_else(|| "PPT".into());
        device.power_average_watts = num("power1_average".into()).map(|v| v / 1e6);
        device.power_input_watts = num("power1_input".into()).map(|v| v / 1e6);
        device.power_cap_watts = num("power1_cap".into()).map(|v| v / 1e6);
        // Clocks already in Hz.
        for n in 1..=2 {
            let default = ["sclk", "mclk"][n - 1];
            if let Some(v) = num(format!("freq{n}_input")) {
                let clock = label(format!("freq{n}_label")).unwrap_or_else(|| default.into());
                device.clocks_hz.push((clock, v));
            }
        }
        // Voltages in millivolts; vddnb only exists on APUs.
        for n in 0..=1 {
            let default = ["vddgfx", "vddnb"][n];
            if let Some(v) = num(format!("in{n}_input")) {
                let rail = label(format!("in{n}_label")).unwrap_or_else(|| default.into());
                device.voltages.push((rail, v / 1000.0));
            }
        }
        device.fan_rpm = num("fan1_input".into());
        if let Some(pwm) = num("pwm1".into()) {
            let max = self
                .number(&hwmon.join("pwm1_max"))
                .filter(|m| *m > 0.0)
                .unwrap_or(255.0);
            // A duty above the maximum is garbage, not a full-speed fan.
            device.fan_pwm_ratio = (0.0..=max).contains(&pwm).then_some(pwm / max);
        }
        answered
    }
}

impl<F: Files> Backend for SysfsBackend<F> {
    fn name(&self) -> &'static str {
        "sysfs"
    }

    fn sample(&mut self) -> Result<Snapshot, Failure> {
        let cards = find_cards(&self.sysfs);
        if cards.is_empty() {
            return Err(Failure::new(
                Reason::NoDevices,
                format!(
                    "no amdgpu device under {}",
                    self.sysfs.join("class/drm").display()
                ),
            ));
        }
        let devices = cards.iter().map(|c| self.read_card(c)).collect();
        Ok(Snapshot::new(devices, self.driver_version()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::sync::{Arc, Mutex};

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/sysfs")
            .join(name)
    }

    fn proc() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/proc")
    }

    /// Real files, except the listed ones answer EPERM as amdgpu does during a GPU reset.
    #[derive(Clone, Default)]
    struct Eperm(Arc<Mutex<HashSet<String>>>);
    impl Files for Eperm {
        fn read(&self, path: &Path) -> io::Result<String> {
            let name = path.to_string_lossy();
            if self.0.lock().unwrap().iter().any(|s| name.ends_with(s)) {
                return Err(io::Error::from_raw_os_error(libc::EPERM));
            }
            std::fs::read_to_string(path)
        }
    }

    #[test]
    fn strix_halo_apu() {
        let snapshot = SysfsBackend::new(fixture("strix-halo"), proc())
            .sample()
            .unwrap();
        assert_eq!(snapshot.devices.len(), 1, "the NVIDIA card is ignored");
        let d = &snapshot.devices[0];
        assert_eq!(d.id, "0000:c3:00.0");
        assert_eq!(d.card.as_deref(), Some("card1"));
        assert!(d.is_apu);
        assert_eq!(d.memory.gtt.total_bytes, Some(103079215104.0));
        assert_eq!(d.power_sensor, "PPT");
        assert_eq!(d.power_average_watts, Some(15.0));
        assert_eq!(d.power_input_watts, Some(15.022));
        assert_eq!(d.temperatures, vec![("edge".to_string(), 38.0)]);
        assert_eq!(d.clocks_hz, vec![("sclk".to_string(), 600e6)]);
        assert_eq!(d.unique_id, None, "empty unique_id is no id");
    }

    #[test]
    fn eperm_during_reset_skips_only_that_value() {
        let files = Eperm::default();
        files
            .0
            .lock()
            .unwrap()
            .extend(["gpu_busy_percent".to_string(), "temp1_input".to_string()]);
        let mut backend = SysfsBackend::with_files(fixture("strix-halo"), proc(), files.clone());
        let d = backend.sample().unwrap().devices.remove(0);
        assert_eq!(d.busy_percent, None);
        assert!(d.temperatures.is_empty());
        assert_eq!(d.memory.vram.total_bytes, Some(536870912.0));
        assert!(d.answered);
    }

    #[test]
    fn everything_eperm_means_the_gpu_did_not_answer() {
        struct AllEperm;
        impl Files for AllEperm {
            fn read(&self, path: &Path) -> io::Result<String> {
                let name = path.to_string_lossy();
                // Identity comes from PCI config space, which stays readable in a reset.
                if name.ends_with("/device") || name.ends_with("runtime_status") {
                    return std::fs::read_to_string(path);
                }
                Err(io::Error::from_raw_os_error(libc::EPERM))
            }
        }
        let mut backend = SysfsBackend::with_files(fixture("dgpu"), proc(), AllEperm);
        let d = backend.sample().unwrap().devices.remove(0);
        assert!(!d.answered);
        assert_eq!(d.memory.vram.total_bytes, None);
    }

    #[test]
    fn suspended_gpu_keeps_its_last_values_and_is_not_read() {
        let dir = std::env::temp_dir().join(format!("rocm-sysfs-suspend-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        copy_tree(&fixture("dgpu"), &dir);
        let device_dir = dir.join("class/drm/card0/device");
        let mut backend = SysfsBackend::new(&dir, proc());
        let active = backend.sample().unwrap().devices.remove(0);
        assert_eq!(active.busy_percent, Some(37.0));
        assert!(active.values_taken.is_none());

        std::fs::write(device_dir.join("power/runtime_status"), "suspended\n").unwrap();
        // Were the sensors read while suspended, this new value would show up.
        std::fs::write(device_dir.join("gpu_busy_percent"), "99\n").unwrap();
        let asleep = backend.sample().unwrap().devices.remove(0);
        assert_eq!(asleep.runtime_status.as_deref(), Some("suspended"));
        assert_eq!(asleep.busy_percent, Some(37.0));
        assert!(asleep.values_taken.is_some());
        assert!(asleep.answered);

        std::fs::write(device_dir.join("power/runtime_status"), "active\n").unwrap();
        let awake = backend.sample().unwrap().devices.remove(0);
        assert_eq!(awake.busy_percent, Some(99.0));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn no_amd_card_is_a_failure_with_a_reason() {
        let err = SysfsBackend::new(fixture("nvidia-only"), proc())
            .sample()
            .unwrap_err();
        assert_eq!(err.reason, Reason::NoDevices);
        let err = SysfsBackend::new("/nonexistent", proc())
            .sample()
            .unwrap_err();
        assert_eq!(err.reason, Reason::NoDevices);
    }

    fn copy_tree(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap().flatten() {
            let target = to.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                copy_tree(&entry.path(), &target);
            } else {
                std::fs::copy(entry.path(), &target).unwrap();
            }
        }
    }
}
