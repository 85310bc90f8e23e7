//! The direct backend: `/sys/class/drm/card*/device` of amdgpu devices and their amdgpu hwmon.
//! No fork; each sample reads only the ~16 files per GPU whose values change.
//!
//! When a card is first seen awake, a [`Plan`] is made for it: the values that do not change
//! while the driver is loaded (identity, pool sizes, sensor labels, limits) are read once, and
//! the list of changing files that exist is kept. Cards and plans are looked up again every
//! [`REDISCOVER_AFTER`] (hot-plug, driver reload, a changed power cap).
//!
//! The changing files (and `power/runtime_status`) stay open in the plan and each sample reads
//! them again with one `pread` at offset 0: sysfs makes an attribute's value anew for a read at
//! offset 0, so one system call per value instead of open, read and close. That is at most
//! 19 descriptors per card (its two directories, `runtime_status`, 16 values; 8 GPUs: 152,
//! well under the usual limit of 1024 or more), opened at the first sample and closed
//! when the plan is dropped (every [`REDISCOVER_AFTER`], or when the card is gone). A file whose
//! attribute was removed (ENODEV: hot-unplug, driver unbound) is closed and opened again by
//! name, so a re-created attribute is read at once and a vanished one costs one failed open.
//! (On a regular file system, as in the tests' fake trees, a kept file that is removed or
//! replaced keeps its old content until the plan is made again; sysfs answers ENODEV.)
//!
//! Every amdgpu sensor read wakes a runtime-suspended GPU (the driver calls
//! `pm_runtime_get_sync`), so `power/runtime_status` is read first and a suspended GPU is
//! reported as suspended with the values of its last active read, without touching its
//! sensors. A file that is missing, empty, unreadable (EPERM while the GPU is in reset) or
//! garbage costs only its own value.

use crate::apu;
use crate::model::{
    normalize_unique_id, runtime_asleep, Backend, Device, Failure, Pool, Reason, Snapshot,
};
use common::gpu::normalize_pci_address;
use rustix::fd::OwnedFd;
use rustix::fs::{Mode, OFlags};
use std::cell::Cell;
use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long the cards and their plans are reused before looking again.
pub const REDISCOVER_AFTER: Duration = Duration::from_secs(10);

/// File access, so that tests can inject errors a fixture tree cannot hold (EPERM as root).
pub trait Files: Send + 'static {
    fn read(&self, path: &Path) -> io::Result<String>;

    /// Reads `name` inside an open directory; `path` is the same file by its full path.
    fn read_at(&self, dir: &OwnedFd, name: &str, path: &Path) -> io::Result<String> {
        let _ = (dir, name);
        self.read(path)
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }

    /// Opens `name` inside an open directory, to be kept and read again with [`Files::reread`];
    /// `None` where files are not kept (test doubles: their files are read by path each time).
    fn open_at(&self, dir: &OwnedFd, name: &str, path: &Path) -> Option<io::Result<OwnedFd>> {
        let _ = (dir, name, path);
        None
    }

    /// A kept file's content, read again from its start; `path` is the same file by its path.
    fn reread(&self, file: &OwnedFd, path: &Path) -> io::Result<String> {
        let _ = file;
        self.read(path)
    }
}

pub struct RealFiles;

impl Files for RealFiles {
    fn read(&self, path: &Path) -> io::Result<String> {
        let file = rustix::fs::open(path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())?;
        read_small(|buf, _| rustix::io::read(&file, buf))
    }

    fn read_at(&self, dir: &OwnedFd, name: &str, _path: &Path) -> io::Result<String> {
        let file = rustix::fs::openat(dir, name, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())?;
        read_small(|buf, _| rustix::io::read(&file, buf))
    }

    fn open_at(&self, dir: &OwnedFd, name: &str, _path: &Path) -> Option<io::Result<OwnedFd>> {
        Some(
            rustix::fs::openat(dir, name, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
                .map_err(io::Error::from),
        )
    }

    /// `pread` at offset 0: sysfs makes the value anew. A file that cannot be read at an offset
    /// (a FIFO, which the tests stand in for a sensor read that blocks) is read from where it is.
    fn reread(&self, file: &OwnedFd, _path: &Path) -> io::Result<String> {
        read_small(
            |buf, offset| match rustix::io::pread(file, &mut *buf, offset) {
                Err(rustix::io::Errno::SPIPE) => rustix::io::read(file, buf),
                result => result,
            },
        )
    }
}

/// One read: a sysfs attribute arrives whole in its first read (at most a page), so the size
/// probe and the second read of `read_to_string` are skipped. `read_into(buf, offset)` reads
/// at `offset` from the start of the file (a plain `read` ignores it and reads on).
fn read_small(
    mut read_into: impl FnMut(&mut [u8], u64) -> rustix::io::Result<usize>,
) -> io::Result<String> {
    let mut buf = [0u8; 4096];
    let mut len = 0;
    loop {
        let space = buf.len() - len;
        match read_into(&mut buf[len..], len as u64) {
            // A short read is the end of a small file; a full buffer cuts a file longer than
            // any amdgpu attribute.
            Ok(n) => {
                len += n;
                if n == 0 || n < space {
                    break;
                }
            }
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    // Bytes that are not UTF-8 become U+FFFD: a bad byte in one attribute must not lose it.
    Ok(String::from_utf8_lossy(&buf[..len]).into_owned())
}

/// An open directory to read files relative to; `None` when it could not be opened (the full
/// path is used then).
fn open_dir(path: &Path) -> Option<OwnedFd> {
    rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ok()
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

/// A value that changes, and where it goes in the [`Device`].
#[derive(Clone, Debug)]
enum Sensor {
    Busy,
    Used(PoolName),
    LinkSpeed,
    LinkWidth,
    /// Millidegrees.
    Temperature(String),
    /// Microwatts.
    PowerAverage,
    PowerInput,
    /// Hertz.
    Clock(String),
    /// Millivolts.
    Voltage(String),
    FanRpm,
    /// PWM duty out of this maximum.
    FanPwm(f64),
}

#[derive(Clone, Copy, Debug)]
enum PoolName {
    Vram,
    VisVram,
    Gtt,
}

impl PoolName {
    fn of(self, device: &mut Device) -> &mut Pool {
        match self {
            PoolName::Vram => &mut device.memory.vram,
            PoolName::VisVram => &mut device.memory.vis_vram,
            PoolName::Gtt => &mut device.memory.gtt,
        }
    }
}

/// A changing file: in which of the plan's directories, its name there, its full path, and
/// the file kept open once it has been opened.
#[derive(Debug)]
struct Read {
    dir: usize,
    name: String,
    path: PathBuf,
    sensor: Sensor,
    file: Option<OwnedFd>,
}

/// What to read for one card: the fixed values, read once, and the files that change.
#[derive(Debug)]
struct Plan {
    fixed: Device,
    /// Whether any fixed value could be read (a card with no changing files still answers).
    fixed_answered: bool,
    /// False when a fixed read failed in a way that passes (EPERM during a GPU reset): such a
    /// plan is used once and not kept, so the values it lacks are read again next time.
    complete: bool,
    /// The device directory and the amdgpu hwmon directory, kept open.
    dirs: Vec<Option<OwnedFd>>,
    /// `power/runtime_status`, kept open once read through the plan.
    status: Option<OwnedFd>,
    reads: Vec<Read>,
}

pub struct SysfsBackend<F: Files = RealFiles> {
    sysfs: PathBuf,
    procfs: PathBuf,
    files: F,
    /// The last active read of each GPU, served while it is runtime-suspended.
    last_active: HashMap<String, (Device, Instant)>,
    /// The cards, and when they were found.
    discovered: Option<(Vec<Card>, Instant)>,
    /// A plan per card seen awake since the cards were found, by PCI address.
    plans: HashMap<String, Plan>,
    /// Set by [`Self::text`] when a read fails in a way that passes; see [`Plan::complete`].
    transient_failure: Cell<bool>,
}

impl SysfsBackend<RealFiles> {
    pub fn new(sysfs: impl Into<PathBuf>, procfs: impl Into<PathBuf>) -> Self {
        Self::with_files(sysfs, procfs, RealFiles)
    }
}

impl<F: Files> SysfsBackend<F> {
    pub fn with_files(sysfs: impl Into<PathBuf>, procfs: impl Into<PathBuf>, files: F) -> Self {
        SysfsBackend {
            sysfs: sysfs.into(),
            procfs: procfs.into(),
            files,
            last_active: HashMap::new(),
            discovered: None,
            plans: HashMap::new(),
            transient_failure: Cell::new(false),
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
                if is_transient(&e) {
                    self.transient_failure.set(true);
                }
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

    /// `16.0 GT/s PCIe` → 16e9 transfers per second.
    fn link_speed(&self, path: &Path) -> Option<f64> {
        let text = self.text(path)?;
        let gts: f64 = text.split_whitespace().next()?.parse().ok()?;
        text.contains("GT/s").then_some(gts * 1e9)
    }

    /// A DKMS amdgpu has its own version; an in-tree one is the kernel's.
    fn driver_version(&self) -> String {
        self.text(&self.sysfs.join("module/amdgpu/version"))
            .or_else(|| self.text(&self.procfs.join("sys/kernel/osrelease")))
            .unwrap_or_default()
    }

    /// The cards, from the cache while it is recent and not empty; a new look drops the plans.
    fn cards(&mut self) -> Vec<Card> {
        if let Some((cards, when)) = &self.discovered {
            if !cards.is_empty() && when.elapsed() < REDISCOVER_AFTER {
                return cards.clone();
            }
        }
        let cards = find_cards(&self.sysfs);
        self.discovered = Some((cards.clone(), Instant::now()));
        self.plans.clear();
        cards
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

    /// The identity a card shows without waking it: PCI config space, not amdgpu.
    fn identity(&self, card: &Card) -> Device {
        let dir = &card.device_dir;
        let device_id = self.text(&dir.join("device"));
        Device {
            id: card.pci_address.clone(),
            card: Some(card.name.clone()),
            model: apu::model(device_id.as_deref(), None),
            is_apu: device_id.as_deref().is_some_and(apu::is_known_apu),
            device_id,
            revision: self.text(&dir.join("revision")),
            ..Default::default()
        }
    }

    fn make_plan(&self, card: &Card) -> Plan {
        const DEVICE: usize = 0;
        const HWMON: usize = 1;
        let dir = &card.device_dir;
        self.transient_failure.set(false);
        let hwmon = self.amdgpu_hwmon(dir);
        let dir_paths = [Some(dir.clone()), hwmon.clone()];
        let mut fixed = self.identity(card);
        let mut wanted: Vec<(usize, String, Sensor)> = Vec::new();
        let mut answered = false;
        let mut fixed_number = |path: PathBuf| {
            let v = self.number(&path);
            answered |= v.is_some();
            v
        };
        if let Some(name) = self.text(&dir.join("product_name")) {
            fixed.model = apu::model(fixed.device_id.as_deref(), Some(&name));
        }
        fixed.unique_id = self
            .text(&dir.join("unique_id"))
            .and_then(|id| normalize_unique_id(&id));
        for (pool, prefix) in [
            (PoolName::Vram, "mem_info_vram"),
            (PoolName::VisVram, "mem_info_vis_vram"),
            (PoolName::Gtt, "mem_info_gtt"),
        ] {
            pool.of(&mut fixed).total_bytes = fixed_number(dir.join(format!("{prefix}_total")));
            wanted.push((DEVICE, format!("{prefix}_used"), Sensor::Used(pool)));
        }
        wanted.push((DEVICE, "gpu_busy_percent".into(), Sensor::Busy));
        wanted.push((DEVICE, "current_link_speed".into(), Sensor::LinkSpeed));
        wanted.push((DEVICE, "current_link_width".into(), Sensor::LinkWidth));
        fixed.pcie.max_speed_transfers_per_second = self.link_speed(&dir.join("max_link_speed"));
        fixed.pcie.max_width = self.number(&dir.join("max_link_width"));

        if let Some(hwmon) = &hwmon {
            let label = |file: String| self.text(&hwmon.join(file));
            // temp1 edge, temp2 junction, temp3 mem; millidegrees.
            for (n, default) in [(1, "edge"), (2, "junction"), (3, "mem")] {
                let mut sensor = label(format!("temp{n}_label")).unwrap_or_else(|| default.into());
                if sensor == "mem" {
                    sensor = "memory".into();
                }
                if let Some(v) = fixed_number(hwmon.join(format!("temp{n}_crit"))) {
                    fixed
                        .temperatures_critical
                        .push((sensor.clone(), v / 1000.0));
                }
                wanted.push((HWMON, format!("temp{n}_input"), Sensor::Temperature(sensor)));
            }
            // Kernels before power1_label existed used the same sensor, which amdgpu calls PPT.
            fixed.power_sensor = label("power1_label".into()).unwrap_or_else(|| "PPT".into());
            fixed.power_cap_watts = fixed_number(hwmon.join("power1_cap")).map(|v| v / 1e6);
            // Most dGPUs have only one of average/input, Strix Halo has both.
            wanted.push((HWMON, "power1_average".into(), Sensor::PowerAverage));
            wanted.push((HWMON, "power1_input".into(), Sensor::PowerInput));
            for (n, default) in [(1, "sclk"), (2, "mclk")] {
                let clock = label(format!("freq{n}_label")).unwrap_or_else(|| default.into());
                wanted.push((HWMON, format!("freq{n}_input"), Sensor::Clock(clock)));
            }
            // vddnb only exists on APUs.
            for (n, default) in [(0, "vddgfx"), (1, "vddnb")] {
                let rail = label(format!("in{n}_label")).unwrap_or_else(|| default.into());
                wanted.push((HWMON, format!("in{n}_input"), Sensor::Voltage(rail)));
            }
            wanted.push((HWMON, "fan1_input".into(), Sensor::FanRpm));
            let pwm_max = self
                .number(&hwmon.join("pwm1_max"))
                .filter(|m| *m > 0.0)
                .unwrap_or(255.0);
            wanted.push((HWMON, "pwm1".into(), Sensor::FanPwm(pwm_max)));
        }
        // Only files that exist are read on every sample; a file that exists but fails (EPERM
        // in a reset, garbage) stays in the plan and is skipped each time it fails.
        let reads = wanted
            .into_iter()
            .filter_map(|(dir, name, sensor)| {
                let path = dir_paths[dir].as_ref()?.join(&name);
                self.files.exists(&path).then_some(Read {
                    dir,
                    name,
                    path,
                    sensor,
                    file: None,
                })
            })
            .collect();
        Plan {
            fixed,
            fixed_answered: answered,
            complete: !self.transient_failure.get(),
            dirs: dir_paths
                .iter()
                .map(|p| p.as_deref().and_then(open_dir))
                .collect(),
            status: None,
            reads,
        }
    }

    /// A changing file's content: `file` read again where it is open, else `name` opened in
    /// `dir` (and kept in `file`), else read by `path`. A kept file whose attribute was removed
    /// (ENODEV) is closed and opened again by name.
    fn read_kept(
        &self,
        dir: Option<&OwnedFd>,
        file: &mut Option<OwnedFd>,
        name: &str,
        path: &Path,
    ) -> io::Result<String> {
        if let Some(kept) = file {
            match self.files.reread(kept, path) {
                Err(e) if e.raw_os_error() == Some(libc::ENODEV) => *file = None,
                result => return result,
            }
        }
        let Some(dir) = dir else {
            return self.files.read(path);
        };
        match self.files.open_at(dir, name, path) {
            Some(opened) => {
                let opened = opened?;
                let text = self.files.reread(&opened, path);
                *file = Some(opened);
                text
            }
            None => self.files.read_at(dir, name, path),
        }
    }

    /// A changing file's value, through the plan's open directory where there is one.
    fn read_sensor(&self, dirs: &[Option<OwnedFd>], read: &mut Read) -> Option<f64> {
        let text = self.read_kept(
            dirs[read.dir].as_ref(),
            &mut read.file,
            &read.name,
            &read.path,
        );
        let text = match text {
            Ok(text) => text,
            Err(e) => {
                if e.kind() != io::ErrorKind::NotFound {
                    common::log::debug(
                        "cannot read sysfs file; value skipped",
                        &[
                            ("path", &read.path.display().to_string()),
                            ("err", &e.to_string()),
                        ],
                    );
                }
                return None;
            }
        };
        let text = text.trim();
        let value = match read.sensor {
            // `16.0 GT/s PCIe` → 16e9 transfers per second.
            Sensor::LinkSpeed => text
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<f64>().ok())
                .filter(|_| text.contains("GT/s"))
                .map(|gts| gts * 1e9),
            _ => text.parse::<f64>().ok(),
        };
        if value.is_none() && !text.is_empty() {
            common::log::debug(
                "sysfs file is not a number; value skipped",
                &[("path", &read.path.display().to_string())],
            );
        }
        value.filter(|v| v.is_finite())
    }

    fn read_card(&mut self, card: &Card) -> Device {
        let status_path = card.device_dir.join("power/runtime_status");
        // Out of the map while it is used (its kept files are updated); put back when kept.
        let mut plan = self.plans.remove(&card.pci_address);
        let status = match &mut plan {
            Some(plan) => self.read_kept(
                plan.dirs[0].as_ref(),
                &mut plan.status,
                "power/runtime_status",
                &status_path,
            ),
            None => self.files.read(&status_path),
        };
        let runtime_status = match status {
            Ok(s) => Some(s.trim().to_string()).filter(|s| !s.is_empty()),
            Err(e) => {
                let gone = matches!(e.raw_os_error(), Some(libc::ENODEV | libc::ENOENT))
                    && !self.files.exists(&card.device_dir);
                if gone {
                    // Hot-unplugged: its plan (and files) go, the cards are looked up again at
                    // the next sample, and this one reports the GPU as not answering.
                    self.discovered = None;
                    let fixed = plan.map_or_else(|| self.identity(card), |plan| plan.fixed);
                    return Device {
                        answered: false,
                        runtime_status: None,
                        ..fixed
                    };
                }
                if e.kind() != io::ErrorKind::NotFound {
                    common::log::debug(
                        "cannot read sysfs file; value skipped",
                        &[
                            ("path", &status_path.display().to_string()),
                            ("err", &e.to_string()),
                        ],
                    );
                }
                None
            }
        };
        if runtime_asleep(runtime_status.as_deref()) {
            if let Some(plan) = plan {
                self.plans.insert(card.pci_address.clone(), plan);
            }
            return self.suspended(card, runtime_status);
        }
        let mut plan = plan.unwrap_or_else(|| self.make_plan(card));
        let mut device = plan.fixed.clone();
        device.runtime_status = runtime_status;
        let mut answered = plan.fixed_answered && plan.reads.is_empty();
        let Plan { dirs, reads, .. } = &mut plan;
        for read in reads.iter_mut() {
            let Some(v) = self.read_sensor(dirs, read) else {
                continue;
            };
            answered = true;
            match &read.sensor {
                Sensor::Busy => device.busy_percent = Some(v),
                Sensor::Used(pool) => pool.of(&mut device).used_bytes = Some(v),
                Sensor::LinkSpeed => device.pcie.speed_transfers_per_second = Some(v),
                Sensor::LinkWidth => device.pcie.width = Some(v),
                Sensor::Temperature(sensor) => {
                    device.temperatures.push((sensor.clone(), v / 1000.0))
                }
                Sensor::PowerAverage => device.power_average_watts = Some(v / 1e6),
                Sensor::PowerInput => device.power_input_watts = Some(v / 1e6),
                Sensor::Clock(clock) => device.clocks_hz.push((clock.clone(), v)),
                Sensor::Voltage(rail) => device.voltages.push((rail.clone(), v / 1000.0)),
                Sensor::FanRpm => device.fan_rpm = Some(v),
                // A duty above the maximum is garbage, not a full-speed fan.
                Sensor::FanPwm(max) => {
                    device.fan_pwm_ratio = (0.0..=*max).contains(&v).then_some(v / max)
                }
            }
        }
        // A plan made while a fixed read failed in passing is not kept; see [`Plan::complete`].
        if plan.complete {
            self.plans.insert(card.pci_address.clone(), plan);
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
    fn suspended(&self, card: &Card, runtime_status: Option<String>) -> Device {
        match self.last_active.get(&card.pci_address) {
            Some((last, taken)) => Device {
                runtime_status,
                answered: true,
                values_taken: Some(*taken),
                ..last.clone()
            },
            None => Device {
                runtime_status,
                answered: true,
                ..self.identity(card)
            },
        }
    }
}

/// Errors amdgpu returns for a while and then not (EPERM while the GPU is in reset or
/// suspending, EBUSY/EAGAIN from a busy SMU), unlike a missing or unsupported attribute.
fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EPERM | libc::EBUSY | libc::EAGAIN | libc::EINTR)
    )
}

impl<F: Files> Backend for SysfsBackend<F> {
    fn name(&self) -> &'static str {
        super::Source::Sysfs.name()
    }

    fn sample(&mut self) -> Result<Snapshot, Failure> {
        let cards = self.cards();
        if cards.is_empty() {
            return Err(Failure::new(
                Reason::NoDevices,
                format!(
                    "no amdgpu device under {}",
                    self.sysfs.join("class/drm").display()
                ),
            ));
        }
        let devices = cards.iter().map(|card| self.read_card(card)).collect();
        Ok(Snapshot::new(devices, self.driver_version()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_attribute_that_is_not_utf8_is_kept_with_replacement_characters() {
        let mut data: &[u8] = b"Radeon \xff8060S\n";
        let text = read_small(|buf, _| {
            let n = data.len().min(buf.len());
            buf[..n].copy_from_slice(&data[..n]);
            data = &data[n..];
            Ok(n)
        })
        .unwrap();
        assert_eq!(text, "Radeon \u{fffd}8060S\n");
    }
    use common::testing::copy_tree;
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
    fn a_plan_made_during_a_reset_is_not_kept() {
        let files = Eperm::default();
        files.0.lock().unwrap().extend([
            "mem_info_vram_total".to_string(),
            "mem_info_gtt_total".to_string(),
        ]);
        let mut backend = SysfsBackend::with_files(fixture("strix-halo"), proc(), files.clone());
        let during = backend.sample().unwrap().devices.remove(0);
        assert_eq!(during.memory.vram.total_bytes, None);
        assert_eq!(during.memory.gtt.total_bytes, None);

        // The reset is over: the sizes are back at once, not after the plan's 10 s.
        files.0.lock().unwrap().clear();
        let after = backend.sample().unwrap().devices.remove(0);
        assert_eq!(after.memory.vram.total_bytes, Some(536870912.0));
        assert_eq!(after.memory.gtt.total_bytes, Some(103079215104.0));
        assert!(backend.plans[&after.id].complete);
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

        // Going to sleep or waking up: not read either.
        for status in ["suspending", "resuming"] {
            std::fs::write(device_dir.join("power/runtime_status"), status).unwrap();
            let between = backend.sample().unwrap().devices.remove(0);
            assert_eq!(between.runtime_status.as_deref(), Some(status));
            assert_eq!(between.busy_percent, Some(37.0), "{status}");
            assert!(between.values_taken.is_some());
        }

        std::fs::write(device_dir.join("power/runtime_status"), "active\n").unwrap();
        let awake = backend.sample().unwrap().devices.remove(0);
        assert_eq!(awake.busy_percent, Some(99.0));
        // Runtime PM switched off: the GPU is always powered and read.
        std::fs::write(device_dir.join("gpu_busy_percent"), "12\n").unwrap();
        std::fs::write(device_dir.join("power/runtime_status"), "unsupported\n").unwrap();
        let unmanaged = backend.sample().unwrap().devices.remove(0);
        assert_eq!(unmanaged.busy_percent, Some(12.0));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn scratch_copy(fixture_name: &str, test: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("rocm-sysfs-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        copy_tree(&fixture(fixture_name), &dir);
        dir
    }

    #[test]
    fn kept_files_show_the_value_of_each_sample() {
        let dir = scratch_copy("dgpu", "kept");
        let device_dir = dir.join("class/drm/card0/device");
        let hwmon = device_dir.join("hwmon/hwmon3");
        let mut backend = SysfsBackend::new(&dir, proc());
        let first = backend.sample().unwrap().devices.remove(0);
        assert_eq!(first.busy_percent, Some(37.0));
        let plan = &backend.plans[&first.id];
        assert!(
            plan.reads.iter().all(|r| r.file.is_some()),
            "every changing file is kept open: {:?}",
            plan.reads
        );

        // Changed in place, longer and shorter than before: each sample reads the whole value
        // again from the start (a plain read on the kept file would find its end).
        std::fs::write(device_dir.join("gpu_busy_percent"), "100\n").unwrap();
        std::fs::write(device_dir.join("mem_info_vram_used"), "5\n").unwrap();
        std::fs::write(hwmon.join("temp1_input"), "41500\n").unwrap();
        for _ in 0..2 {
            let d = backend.sample().unwrap().devices.remove(0);
            assert_eq!(d.busy_percent, Some(100.0));
            assert_eq!(d.memory.vram.used_bytes, Some(5.0));
            assert_eq!(d.temperatures[0], ("edge".to_string(), 41.5));
        }
        // Read by path before the plan is made, through the plan from then on.
        assert!(
            backend.plans[&first.id].status.is_some(),
            "runtime_status is kept open"
        );
        // Empty and garbage cost only their own value, as before.
        std::fs::write(device_dir.join("gpu_busy_percent"), "").unwrap();
        std::fs::write(device_dir.join("mem_info_vram_used"), "garbage\n").unwrap();
        let d = backend.sample().unwrap().devices.remove(0);
        assert_eq!(d.busy_percent, None);
        assert_eq!(d.memory.vram.used_bytes, None);
        assert_eq!(d.temperatures[0], ("edge".to_string(), 41.5));
        assert!(d.answered);
        // Still read while the GPU is awake only.
        std::fs::write(device_dir.join("power/runtime_status"), "suspended\n").unwrap();
        std::fs::write(device_dir.join("gpu_busy_percent"), "12\n").unwrap();
        let asleep = backend.sample().unwrap().devices.remove(0);
        assert_eq!(
            asleep.busy_percent, None,
            "the last active values are served"
        );
        assert!(asleep.values_taken.is_some());
        std::fs::write(device_dir.join("power/runtime_status"), "active\n").unwrap();
        let awake = backend.sample().unwrap().devices.remove(0);
        assert_eq!(awake.busy_percent, Some(12.0));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Real files kept open, except that the listed paths behave as removed sysfs attributes:
    /// a kept file answers ENODEV, a path ENOENT (hot-unplug, driver unbound).
    #[derive(Clone, Default)]
    struct Removed(Arc<Mutex<Vec<String>>>);
    impl Removed {
        fn check(&self, path: &Path, errno: i32) -> io::Result<()> {
            let path = path.to_string_lossy();
            match self.0.lock().unwrap().iter().any(|s| path.contains(s)) {
                true => Err(io::Error::from_raw_os_error(errno)),
                false => Ok(()),
            }
        }
    }
    impl Files for Removed {
        fn read(&self, path: &Path) -> io::Result<String> {
            self.check(path, libc::ENOENT)?;
            RealFiles.read(path)
        }
        fn open_at(&self, dir: &OwnedFd, name: &str, path: &Path) -> Option<io::Result<OwnedFd>> {
            if let Err(e) = self.check(path, libc::ENOENT) {
                return Some(Err(e));
            }
            RealFiles.open_at(dir, name, path)
        }
        fn reread(&self, file: &OwnedFd, path: &Path) -> io::Result<String> {
            self.check(path, libc::ENODEV)?;
            RealFiles.reread(file, path)
        }
    }

    #[test]
    fn a_removed_attribute_is_skipped_and_opened_again_when_it_is_back() {
        let files = Removed::default();
        let mut backend = SysfsBackend::with_files(fixture("dgpu"), proc(), files.clone());
        let before = backend.sample().unwrap().devices.remove(0);
        assert_eq!(before.busy_percent, Some(37.0));
        let id = before.id.clone();
        let kept = |backend: &SysfsBackend<Removed>| {
            backend.plans[&id]
                .reads
                .iter()
                .find(|r| r.name == "gpu_busy_percent")
                .unwrap()
                .file
                .is_some()
        };
        assert!(kept(&backend));

        files.0.lock().unwrap().push("/gpu_busy_percent".into());
        let removed = backend.sample().unwrap().devices.remove(0);
        assert_eq!(removed.busy_percent, None);
        assert_eq!(
            removed.temperatures, before.temperatures,
            "the rest is served"
        );
        assert_eq!(removed.memory, before.memory);
        assert!(removed.answered);
        assert!(!kept(&backend), "the dead file is closed");

        // Re-created (the driver bound again): opened by name and kept again.
        files.0.lock().unwrap().clear();
        let back = backend.sample().unwrap().devices.remove(0);
        assert_eq!(back.busy_percent, Some(37.0));
        assert!(kept(&backend));
    }

    #[test]
    fn a_vanished_card_drops_its_plan_and_files() {
        let dir = scratch_copy("dgpu", "vanish");
        let files = Removed::default();
        let mut backend = SysfsBackend::with_files(&dir, proc(), files.clone());
        let before = backend.sample().unwrap().devices.remove(0);
        assert!(before.answered);
        assert_eq!(backend.plans.len(), 1);

        // Hot-unplug: the card's directory goes; its kept files answer ENODEV.
        std::fs::remove_dir_all(dir.join("class/drm/card0")).unwrap();
        files.0.lock().unwrap().push("/class/drm/card0/".into());
        let gone = backend.sample().unwrap().devices.remove(0);
        assert!(!gone.answered);
        assert_eq!(gone.id, before.id);
        assert_eq!(
            gone.device_id, before.device_id,
            "same labels while it is reported"
        );
        assert!(backend.plans.is_empty(), "its plan and files are dropped");
        // The cards are looked up again at once, not after REDISCOVER_AFTER.
        let err = backend.sample().unwrap_err();
        assert_eq!(err.reason, Reason::NoDevices);
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
}
