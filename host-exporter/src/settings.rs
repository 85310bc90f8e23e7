//! host-exporter's own flags, and the context they resolve to: everything its collectors'
//! constructors need (paths, filters, options), parsed and checked once at start, for every
//! collector whether enabled or not, so that a bad value stops the start either way.

use crate::collectors::{cpu, diskstats, filesystem, ipvs, netclass, netstat, tapestats, vmstat};
use crate::filter::DeviceFilter;
use crate::paths::Paths;
use crate::shared_read::SharedRead;
use clap::Arg;
use common::cli::parse_duration;
use common::{CliOutcome, Settings};
use regex_lite::Regex;
use std::path::PathBuf;
use std::time::Duration;

pub fn own_args() -> Vec<Arg> {
    let opt = |key: &'static str, default: Option<&'static str>, help: &'static str| {
        let arg = Arg::new(key).long(key).help(help);
        match default {
            Some(d) => arg.default_value(d),
            None => arg,
        }
    };
    let switch = |key: &'static str, help: &'static str| {
        Arg::new(key)
            .long(key)
            .help(help)
            .action(clap::ArgAction::SetTrue)
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
        opt(
            "collector.arp.device-include",
            None,
            "Regexp of arp devices to include (mutually exclusive to device-exclude)",
        ),
        opt(
            "collector.arp.device-exclude",
            None,
            "Regexp of arp devices to exclude (mutually exclusive to device-include)",
        ),
        opt(
            "collector.netstat.fields",
            Some(netstat::DEFAULT_FIELDS),
            "Regexp of fields to return for netstat collector",
        ),
        opt(
            "collector.netclass.ignored-devices",
            Some(netclass::DEFAULT_IGNORED_DEVICES),
            "Regexp of net devices to ignore for netclass collector",
        ),
        opt(
            "collector.ipvs.backend-labels",
            Some("local_address,local_port,remote_address,remote_port,proto,local_mark"),
            "Comma separated list for IPVS backend stats labels",
        ),
        Arg::new("collector.netclass.ignore-invalid-speed")
            .long("collector.netclass.ignore-invalid-speed")
            .action(clap::ArgAction::SetTrue)
            .help("Ignore devices where the speed is invalid"),
        // node_exporter's cpu switches: guest seconds on (off with --no-collector.cpu.guest),
        // node_cpu_info off unless asked for.
        switch(
            "collector.cpu.guest",
            "Enables metric node_cpu_guest_seconds_total (default: on)",
        ),
        switch("no-collector.cpu.guest", "Disables metric node_cpu_guest_seconds_total").hide(true),
        switch("collector.cpu.info", "Enables metric node_cpu_info"),
        opt(
            "collector.cpu.info.flags-include",
            None,
            "Regexp of /proc/cpuinfo flags to report as node_cpu_flag_info (implies --collector.cpu.info)",
        ),
        opt(
            "collector.cpu.info.bugs-include",
            None,
            "Regexp of /proc/cpuinfo bugs to report as node_cpu_bug_info (implies --collector.cpu.info)",
        ),
        opt(
            "collector.vmstat.fields",
            Some(vmstat::DEFAULT_FIELDS),
            "Regexp of fields to return for vmstat",
        ),
        opt(
            "collector.powersupply.ignored-supplies",
            Some("^$"),
            "Regexp of power supplies to ignore for powersupplyclass collector",
        ),
        // Repeatable, no default: as node_exporter, which reads nothing until told where.
        Arg::new("collector.textfile.directory")
            .long("collector.textfile.directory")
            .action(clap::ArgAction::Append)
            .help("Directory to read text files with metrics from, supports glob matching (repeatable)"),
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

/// What the collectors are built from: the host's settings, resolved.
pub struct Context {
    pub(crate) paths: Paths,
    /// /proc/stat, which cpu and stat both parse: one read serves both.
    pub(crate) proc_stat: SharedRead,
    pub(crate) cpu: cpu::CpuOptions,
    pub(crate) vmstat_fields: Regex,
    pub(crate) ignored_supplies: Option<Regex>,
    pub(crate) mount_points: DeviceFilter,
    pub(crate) fs_types: DeviceFilter,
    pub(crate) mount_timeout: Duration,
    pub(crate) netdev_devices: DeviceFilter,
    pub(crate) diskstats_devices: DeviceFilter,
    pub(crate) bcache_priority_stats: bool,
    pub(crate) ignored_tapes: Regex,
    pub(crate) arp_devices: DeviceFilter,
    pub(crate) netstat_fields: Regex,
    pub(crate) netclass_ignored: Regex,
    pub(crate) netclass_ignore_invalid_speed: bool,
    pub(crate) ipvs_labels: Vec<usize>,
    pub(crate) textfile_directories: Vec<String>,
}

impl Context {
    /// Reads and checks every host setting; an invalid one names its flag.
    pub fn from_settings(settings: &Settings) -> Result<Context, CliOutcome> {
        let paths = paths(settings)?;
        let mount_timeout = settings
            .parsed("collector.filesystem.mount-timeout", parse_duration)?
            .unwrap_or(Duration::from_secs(5));
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
        let optional_regex = |key: &str| -> Result<Option<Regex>, CliOutcome> {
            match settings.value(key)? {
                Some(raw) if !raw.is_empty() => Regex::new(&raw)
                    .map(Some)
                    .map_err(|e| settings.invalid(key, &raw, &e.to_string())),
                _ => Ok(None),
            }
        };
        let regex = |key: &str| -> Result<Regex, CliOutcome> {
            let raw = settings.value(key)?.unwrap_or_default();
            Regex::new(&raw).map_err(|e| settings.invalid(key, &raw, &e.to_string()))
        };
        // The order of the checks is the order of the messages a start with several bad
        // values gives: the first is reported.
        let cpu = cpu::CpuOptions {
            // On unless --no-collector.cpu.guest, or collector.cpu.guest=false in the
            // environment or the config file.
            guest: !settings.flag("no-collector.cpu.guest")?
                && (!settings.is_explicit("collector.cpu.guest")
                    || settings.flag("collector.cpu.guest")?),
            info: settings.flag("collector.cpu.info")?,
            flags_include: optional_regex("collector.cpu.info.flags-include")?,
            bugs_include: optional_regex("collector.cpu.info.bugs-include")?,
        };
        // An empty field regex matches every field, as in Go.
        let vmstat_fields = optional_regex("collector.vmstat.fields")?
            .unwrap_or_else(|| Regex::new("").expect("empty regex"));
        let ignored_supplies = optional_regex("collector.powersupply.ignored-supplies")?;
        let mount_points = filter("collector.filesystem.mount-points", "filesystem")?;
        let fs_types = filter("collector.filesystem.fs-types", "filesystem")?;
        let netdev_devices = filter("collector.netdev.device", "netdev")?;
        let diskstats_devices = filter("collector.diskstats.device", "diskstats")?;
        let bcache_priority_stats = settings.flag("collector.bcache.priorityStats")?;
        let ignored_tapes = regex("collector.tapestats.ignored-devices")?;
        let arp_devices = filter("collector.arp.device", "arp")?;
        let netstat_fields = regex("collector.netstat.fields")?;
        let netclass_ignored = regex("collector.netclass.ignored-devices")?;
        let netclass_ignore_invalid_speed =
            settings.flag("collector.netclass.ignore-invalid-speed")?;
        let ipvs_labels = settings
            .parsed("collector.ipvs.backend-labels", ipvs::parse_backend_labels)?
            .unwrap_or_default();
        let textfile_directories = settings.values("collector.textfile.directory")?;
        Ok(Context {
            proc_stat: SharedRead::new(paths.proc("stat")),
            paths,
            cpu,
            vmstat_fields,
            ignored_supplies,
            mount_points,
            fs_types,
            mount_timeout,
            netdev_devices,
            diskstats_devices,
            bcache_priority_stats,
            ignored_tapes,
            arp_devices,
            netstat_fields,
            netclass_ignored,
            netclass_ignore_invalid_speed,
            ipvs_labels,
            textfile_directories,
        })
    }
}
