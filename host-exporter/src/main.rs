//! host-exporter: the host's CPU, memory, filesystems, disks, network, load, pressure and
//! sensors from procfs and sysfs, in node_exporter's metric names.

mod collectors;
mod filter;
mod kept_file;
mod paths;
mod shared_read;

use clap::Arg;
use collectors::*;
use common::cli::{parse_duration, CollectorSpec, ExporterSpec};
use common::{CliOutcome, Collectors, Settings};
use filter::DeviceFilter;
use paths::Paths;
use std::path::PathBuf;
use std::process::ExitCode;

static SPEC: ExporterSpec = ExporterSpec {
    name: "host-exporter",
    metric_prefix: "host_exporter",
    // node_exporter's names for the collector health series, as its dashboards query them.
    collector_metrics_prefix: "node_scrape",
    about: "Host metrics (CPU, memory, filesystems, disks, network, load, pressure, sensors) in node_exporter's names.",
    default_port: 10470,
    collectors: &[
        CollectorSpec { name: "cpu", default_enabled: true, help: "seconds per CPU and mode" },
        CollectorSpec { name: "meminfo", default_enabled: true, help: "every line of /proc/meminfo" },
        CollectorSpec { name: "filesystem", default_enabled: true, help: "size, free space and inodes per mount" },
        CollectorSpec { name: "netdev", default_enabled: true, help: "network interface counters" },
        CollectorSpec { name: "diskstats", default_enabled: true, help: "block device I/O counters" },
        CollectorSpec { name: "loadavg", default_enabled: true, help: "load averages" },
        CollectorSpec { name: "pressure", default_enabled: true, help: "pressure stall information" },
        CollectorSpec { name: "stat", default_enabled: true, help: "boot time, context switches, forks, interrupts, processes" },
        CollectorSpec { name: "uname", default_enabled: true, help: "kernel and host name" },
        CollectorSpec { name: "time", default_enabled: true, help: "system time, time zone, clock sources" },
        CollectorSpec { name: "hwmon", default_enabled: true, help: "hardware sensors" },
        CollectorSpec { name: "thermal_zone", default_enabled: true, help: "thermal zones and cooling devices" },
        CollectorSpec { name: "rapl", default_enabled: true, help: "RAPL energy counters" },
        CollectorSpec { name: "mdadm", default_enabled: true, help: "software RAID arrays from /proc/mdstat" },
        CollectorSpec { name: "nfs", default_enabled: true, help: "NFS client RPC statistics" },
        CollectorSpec { name: "nfsd", default_enabled: true, help: "NFS server RPC statistics" },
        CollectorSpec { name: "xfs", default_enabled: true, help: "XFS statistics per filesystem" },
        CollectorSpec { name: "nvme", default_enabled: true, help: "NVMe controllers and namespaces" },
        CollectorSpec { name: "tapestats", default_enabled: true, help: "SCSI tape drive statistics" },
        CollectorSpec { name: "bcache", default_enabled: true, help: "bcache cache sets, backing and cache devices" },
        CollectorSpec { name: "dmmultipath", default_enabled: false, help: "device-mapper multipath maps and their paths" },
        CollectorSpec { name: "btrfs", default_enabled: true, help: "btrfs space, commits and device errors" },
        CollectorSpec { name: "zfs", default_enabled: true, help: "ZFS ARC and module statistics, pool I/O, datasets and state" },
    ],
};

fn own_args() -> Vec<Arg> {
    let opt = |key: &'static str, default: Option<&'static str>, help: &'static str| {
        let arg = Arg::new(key).long(key).help(help);
        match default {
            Some(d) => arg.default_value(d),
            None => arg,
        }
    };
    vec![
        opt("path.procfs", Some("/proc"), "procfs mountpoint"),
        opt("path.sysfs", Some("/sys"), "sysfs mountpoint"),
        opt(
            "path.rootfs",
            Some("/"),
            "rootfs mountpoint (the host's / inside a container)",
        ),
        opt("path.udev.data", Some("/run/udev/data"), "udev data path"),
        opt(
            "collector.filesystem.mount-points-exclude",
            Some(filesystem::DEFAULT_MOUNT_POINTS_EXCLUDE),
            "Regexp of mount points to exclude",
        ),
        opt(
            "collector.filesystem.mount-points-include",
            None,
            "Regexp of mount points to include (instead of the exclude)",
        ),
        opt(
            "collector.filesystem.fs-types-exclude",
            Some(filesystem::DEFAULT_FS_TYPES_EXCLUDE),
            "Regexp of filesystem types to exclude",
        ),
        opt(
            "collector.filesystem.fs-types-include",
            None,
            "Regexp of filesystem types to include (instead of the exclude)",
        ),
        opt(
            "collector.filesystem.mount-timeout",
            Some("5s"),
            "How long to wait for a mount to answer statvfs before marking it stuck",
        ),
        opt(
            "collector.netdev.device-exclude",
            None,
            "Regexp of network devices to exclude",
        ),
        opt(
            "collector.netdev.device-include",
            None,
            "Regexp of network devices to include",
        ),
        opt(
            "collector.diskstats.device-exclude",
            Some(diskstats::DEFAULT_DEVICE_EXCLUDE),
            "Regexp of block devices to exclude",
        ),
        opt(
            "collector.diskstats.device-include",
            None,
            "Regexp of block devices to include (instead of the exclude)",
        ),
        opt(
            "collector.tapestats.ignored-devices",
            Some(tapestats::DEFAULT_IGNORED_DEVICES),
            "Regexp of devices to ignore for tapestats.",
        ),
        Arg::new("collector.bcache.priorityStats")
            .long("collector.bcache.priorityStats")
            .action(clap::ArgAction::SetTrue)
            .help("Expose expensive priority stats."),
    ]
}

fn paths(settings: &Settings) -> Result<Paths, CliOutcome> {
    let path = |key: &str| -> Result<PathBuf, CliOutcome> {
        Ok(PathBuf::from(settings.value(key)?.unwrap_or_default()))
    };
    Ok(Paths {
        procfs: path("path.procfs")?,
        sysfs: path("path.sysfs")?,
        rootfs: path("path.rootfs")?,
        udev_data: path("path.udev.data")?,
    })
}

fn build(settings: &Settings, collectors: &mut Collectors) -> Result<(), CliOutcome> {
    let paths = paths(settings)?;
    let mount_timeout = settings
        .parsed("collector.filesystem.mount-timeout", parse_duration)?
        .unwrap_or(std::time::Duration::from_secs(5));
    let filter = |prefix: &str, what: &str| {
        DeviceFilter::from_settings(
            settings,
            &format!("{prefix}-include"),
            &format!("{prefix}-exclude"),
        )
        .map_err(|e| match e {
            CliOutcome::Error(m) => CliOutcome::Error(format!("{what}: {m}")),
            other => other,
        })
    };

    // cpu and stat both parse /proc/stat: one read serves both.
    let proc_stat = shared_read::SharedRead::new(paths.proc("stat"));
    collectors.add_blocking(cpu::Cpu::new(proc_stat.clone()));
    collectors.add_blocking(meminfo::Meminfo::new(&paths));
    collectors.add_blocking(filesystem::Filesystem::new(
        &paths,
        filter("collector.filesystem.mount-points", "filesystem")?,
        filter("collector.filesystem.fs-types", "filesystem")?,
        mount_timeout,
    ));
    collectors.add_blocking(netdev::Netdev::new(
        &paths,
        filter("collector.netdev.device", "netdev")?,
    ));
    collectors.add_blocking(diskstats::Diskstats::new(
        &paths,
        filter("collector.diskstats.device", "diskstats")?,
    ));
    collectors.add_blocking(loadavg::Loadavg::new(&paths));
    collectors.add_blocking(pressure::Pressure::new(&paths));
    collectors.add_blocking(stat::Stat::new(proc_stat));
    collectors.add_blocking(uname::Uname);
    collectors.add_blocking(time::Time::new(&paths));
    collectors.add_blocking(hwmon::Hwmon::new(&paths));
    collectors.add_blocking(thermal_zone::ThermalZone::new(&paths));
    collectors.add_blocking(rapl::Rapl::new(&paths));
    collectors.add_blocking(mdadm::Mdadm::new(&paths));
    collectors.add_blocking(nfs::Nfs::new(&paths));
    collectors.add_blocking(nfsd::Nfsd::new(&paths));
    collectors.add_blocking(xfs::Xfs::new(&paths));
    collectors.add_blocking(nvme::Nvme::new(&paths));
    collectors.add_blocking(zfs::Zfs::new(&paths));
    collectors.add_blocking(btrfs::Btrfs::new(&paths));
    collectors.add_blocking(dmmultipath::DmMultipath::new(&paths));
    collectors.add_blocking(bcache::Bcache::new(
        &paths,
        settings.flag("collector.bcache.priorityStats")?,
    ));
    let key = "collector.tapestats.ignored-devices";
    let raw = settings.value(key)?.unwrap_or_default();
    let ignored_tapes =
        regex_lite::Regex::new(&raw).map_err(|e| settings.invalid(key, &raw, &e.to_string()))?;
    collectors.add_blocking(tapestats::Tapestats::new(&paths, ignored_tapes));
    Ok(())
}

fn main() -> ExitCode {
    common::run(&SPEC, env!("CARGO_PKG_VERSION"), own_args(), build)
}
