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
        CollectorSpec { name: "arp", default_enabled: true, help: "ARP entries per device" },
        CollectorSpec { name: "conntrack", default_enabled: true, help: "connection tracking table size and statistics" },
        CollectorSpec { name: "netstat", default_enabled: true, help: "IP, TCP, UDP and ICMP counters from /proc/net/{netstat,snmp,snmp6}" },
        CollectorSpec { name: "sockstat", default_enabled: true, help: "sockets in use and their memory per protocol" },
        CollectorSpec { name: "softnet", default_enabled: true, help: "per-CPU packet processing counters" },
        CollectorSpec { name: "udp_queues", default_enabled: true, help: "bytes queued in UDP sockets" },
        CollectorSpec { name: "netclass", default_enabled: true, help: "network interface state, speed, MTU and properties from sysfs" },
        CollectorSpec { name: "ipvs", default_enabled: true, help: "IPVS load balancer totals and backends" },
        CollectorSpec { name: "bonding", default_enabled: true, help: "bonded interfaces and their active slaves" },
        CollectorSpec { name: "infiniband", default_enabled: true, help: "InfiniBand and RoCE port state, rate and counters" },
        CollectorSpec { name: "fibrechannel", default_enabled: true, help: "Fibre Channel host ports and their counters" },
        CollectorSpec { name: "cpufreq", default_enabled: true, help: "CPU frequencies and scaling governors" },
        CollectorSpec { name: "dmi", default_enabled: true, help: "DMI (BIOS, board, product) identity" },
        CollectorSpec { name: "edac", default_enabled: true, help: "memory error counts (EDAC)" },
        CollectorSpec { name: "entropy", default_enabled: true, help: "available entropy" },
        CollectorSpec { name: "filefd", default_enabled: true, help: "allocated and maximum file descriptors" },
        CollectorSpec { name: "kernel_hung", default_enabled: false, help: "hung tasks detected by the kernel" },
        CollectorSpec { name: "os", default_enabled: true, help: "OS release from os-release" },
        CollectorSpec { name: "powersupplyclass", default_enabled: true, help: "batteries and power supplies" },
        CollectorSpec { name: "schedstat", default_enabled: true, help: "scheduler run and wait time per CPU" },
        CollectorSpec { name: "selinux", default_enabled: true, help: "SELinux state" },
        CollectorSpec { name: "timex", default_enabled: true, help: "clock synchronisation state (adjtimex)" },
        CollectorSpec { name: "vmstat", default_enabled: true, help: "paging, swapping and OOM counters from /proc/vmstat" },
        CollectorSpec { name: "watchdog", default_enabled: true, help: "watchdog devices" },
        CollectorSpec { name: "textfile", default_enabled: true, help: "metrics from *.prom files in --collector.textfile.directory" },
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

    let regex = |key: &str| -> Result<Option<regex_lite::Regex>, CliOutcome> {
        match settings.value(key)? {
            Some(raw) if !raw.is_empty() => regex_lite::Regex::new(&raw)
                .map(Some)
                .map_err(|e| settings.invalid(key, &raw, &e.to_string())),
            _ => Ok(None),
        }
    };
    let cpu_options = cpu::CpuOptions {
        // On unless --no-collector.cpu.guest, or collector.cpu.guest=false in the environment
        // or the config file.
        guest: !settings.flag("no-collector.cpu.guest")?
            && (!settings.is_explicit("collector.cpu.guest")
                || settings.flag("collector.cpu.guest")?),
        info: settings.flag("collector.cpu.info")?,
        flags_include: regex("collector.cpu.info.flags-include")?,
        bugs_include: regex("collector.cpu.info.bugs-include")?,
    };
    // An empty field regex matches every field, as in Go.
    let vmstat_fields = regex("collector.vmstat.fields")?
        .unwrap_or_else(|| regex_lite::Regex::new("").expect("empty regex"));
    let ignored_supplies = regex("collector.powersupply.ignored-supplies")?;

    // cpu and stat both parse /proc/stat: one read serves both.
    let proc_stat = shared_read::SharedRead::new(paths.proc("stat"));
    collectors.add_blocking(cpu::Cpu::new(proc_stat.clone(), &paths, cpu_options));
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
    let regex = |key: &str| -> Result<regex_lite::Regex, CliOutcome> {
        let raw = settings.value(key)?.unwrap_or_default();
        regex_lite::Regex::new(&raw).map_err(|e| settings.invalid(key, &raw, &e.to_string()))
    };
    collectors.add_blocking(arp::Arp::new(
        &paths,
        filter("collector.arp.device", "arp")?,
    ));
    collectors.add_blocking(conntrack::Conntrack::new(&paths));
    collectors.add_blocking(netstat::Netstat::new(
        &paths,
        regex("collector.netstat.fields")?,
    ));
    collectors.add_blocking(sockstat::Sockstat::new(&paths));
    collectors.add_blocking(softnet::Softnet::new(&paths));
    collectors.add_blocking(udp_queues::UdpQueues::new(&paths));
    collectors.add_blocking(netclass::Netclass::new(
        &paths,
        regex("collector.netclass.ignored-devices")?,
        settings.flag("collector.netclass.ignore-invalid-speed")?,
    ));
    let ipvs_labels = settings
        .parsed("collector.ipvs.backend-labels", ipvs::parse_backend_labels)?
        .unwrap_or_default();
    collectors.add_blocking(ipvs::Ipvs::new(&paths, ipvs_labels));
    collectors.add_blocking(bonding::Bonding::new(&paths));
    collectors.add_blocking(infiniband::Infiniband::new(&paths));
    collectors.add_blocking(fibrechannel::Fibrechannel::new(&paths));
    collectors.add_blocking(cpufreq::Cpufreq::new(&paths));
    collectors.add_blocking(dmi::Dmi::new(&paths));
    collectors.add_blocking(edac::Edac::new(&paths));
    collectors.add_blocking(entropy::Entropy::new(&paths));
    collectors.add_blocking(filefd::Filefd::new(&paths));
    collectors.add_blocking(kernel_hung::KernelHung::new(&paths));
    collectors.add_blocking(os::Os::new(&paths));
    collectors.add_blocking(powersupplyclass::PowerSupplyClass::new(
        &paths,
        ignored_supplies,
    ));
    collectors.add_blocking(schedstat::Schedstat::new(&paths));
    collectors.add_blocking(selinux::Selinux::new(&paths));
    collectors.add_blocking(timex::Timex::new());
    collectors.add_blocking(vmstat::Vmstat::new(&paths, vmstat_fields));
    collectors.add_blocking(watchdog::Watchdog::new(&paths));
    collectors.add_blocking(textfile::Textfile::new(
        settings.values("collector.textfile.directory")?,
    ));
    Ok(())
}

fn main() -> ExitCode {
    common::run(&SPEC, env!("CARGO_PKG_VERSION"), own_args(), build)
}
