//! host-exporter's collectors, each registered once with its name, default, description and
//! constructor, as node_exporter's `registerCollector` does. The table's order is the order the
//! health series are reported in. The tests, the benchmark and the README check read the
//! collector names from here.

use crate::collectors::*;
use crate::settings::Context;
use common::cli::{CollectorSpec, ExporterSpec};
use common::AnyCollector;

pub static SPEC: ExporterSpec<Context> = ExporterSpec {
    name: "host-exporter",
    metric_prefix: "host_exporter",
    // node_exporter's names for the collector health series, as its dashboards query them.
    collector_metrics_prefix: "node_scrape",
    about: "Host metrics (CPU, memory, filesystems, disks, network, load, pressure, sensors) in node_exporter's names.",
    default_port: 10470,
    collectors: &[
        CollectorSpec {
            name: "cpu",
            default_enabled: true,
            help: "seconds per CPU and mode",
            new: |c| AnyCollector::blocking(cpu::Cpu::new(c.proc_stat.clone(), &c.paths, c.cpu.clone())),
        },
        CollectorSpec {
            name: "meminfo",
            default_enabled: true,
            help: "every line of /proc/meminfo",
            new: |c| AnyCollector::blocking(meminfo::Meminfo::new(&c.paths)),
        },
        CollectorSpec {
            name: "filesystem",
            default_enabled: true,
            help: "size, free space and inodes per mount",
            new: |c| AnyCollector::blocking(filesystem::Filesystem::new(&c.paths, c.mount_points.clone(), c.fs_types.clone(), c.mount_timeout)),
        },
        CollectorSpec {
            name: "netdev",
            default_enabled: true,
            help: "network interface counters",
            new: |c| AnyCollector::blocking(netdev::Netdev::new(&c.paths, c.netdev_devices.clone())),
        },
        CollectorSpec {
            name: "diskstats",
            default_enabled: true,
            help: "block device I/O counters",
            new: |c| AnyCollector::blocking(diskstats::Diskstats::new(&c.paths, c.diskstats_devices.clone())),
        },
        CollectorSpec {
            name: "loadavg",
            default_enabled: true,
            help: "load averages",
            new: |c| AnyCollector::blocking(loadavg::Loadavg::new(&c.paths)),
        },
        CollectorSpec {
            name: "pressure",
            default_enabled: true,
            help: "pressure stall information",
            new: |c| AnyCollector::blocking(pressure::Pressure::new(&c.paths)),
        },
        CollectorSpec {
            name: "stat",
            default_enabled: true,
            help: "boot time, context switches, forks, interrupts, processes",
            new: |c| AnyCollector::blocking(stat::Stat::new(c.proc_stat.clone())),
        },
        CollectorSpec {
            name: "uname",
            default_enabled: true,
            help: "kernel and host name",
            new: |_| AnyCollector::blocking(uname::Uname),
        },
        CollectorSpec {
            name: "time",
            default_enabled: true,
            help: "system time, time zone, clock sources",
            new: |c| AnyCollector::blocking(time::Time::new(&c.paths)),
        },
        CollectorSpec {
            name: "hwmon",
            default_enabled: true,
            help: "hardware sensors",
            new: |c| AnyCollector::blocking(hwmon::Hwmon::new(&c.paths)),
        },
        CollectorSpec {
            name: "thermal_zone",
            default_enabled: true,
            help: "thermal zones and cooling devices",
            new: |c| AnyCollector::blocking(thermal_zone::ThermalZone::new(&c.paths)),
        },
        CollectorSpec {
            name: "rapl",
            default_enabled: true,
            help: "RAPL energy counters",
            new: |c| AnyCollector::blocking(rapl::Rapl::new(&c.paths)),
        },
        CollectorSpec {
            name: "mdadm",
            default_enabled: true,
            help: "software RAID arrays from /proc/mdstat",
            new: |c| AnyCollector::blocking(mdadm::Mdadm::new(&c.paths)),
        },
        CollectorSpec {
            name: "nfs",
            default_enabled: true,
            help: "NFS client RPC statistics",
            new: |c| AnyCollector::blocking(nfs::Nfs::new(&c.paths)),
        },
        CollectorSpec {
            name: "nfsd",
            default_enabled: true,
            help: "NFS server RPC statistics",
            new: |c| AnyCollector::blocking(nfsd::Nfsd::new(&c.paths)),
        },
        CollectorSpec {
            name: "xfs",
            default_enabled: true,
            help: "XFS statistics per filesystem",
            new: |c| AnyCollector::blocking(xfs::Xfs::new(&c.paths)),
        },
        CollectorSpec {
            name: "nvme",
            default_enabled: true,
            help: "NVMe controllers and namespaces",
            new: |c| AnyCollector::blocking(nvme::Nvme::new(&c.paths)),
        },
        CollectorSpec {
            name: "zfs",
            default_enabled: true,
            help: "ZFS ARC and module statistics, pool I/O, datasets and state",
            new: |c| AnyCollector::blocking(zfs::Zfs::new(&c.paths)),
        },
        CollectorSpec {
            name: "btrfs",
            default_enabled: true,
            help: "btrfs space, commits and device errors",
            new: |c| AnyCollector::blocking(btrfs::Btrfs::new(&c.paths)),
        },
        CollectorSpec {
            name: "dmmultipath",
            default_enabled: false,
            help: "device-mapper multipath maps and their paths",
            new: |c| AnyCollector::blocking(dmmultipath::DmMultipath::new(&c.paths)),
        },
        CollectorSpec {
            name: "bcache",
            default_enabled: true,
            help: "bcache cache sets, backing and cache devices",
            new: |c| AnyCollector::blocking(bcache::Bcache::new(&c.paths, c.bcache_priority_stats)),
        },
        CollectorSpec {
            name: "tapestats",
            default_enabled: true,
            help: "SCSI tape drive statistics",
            new: |c| AnyCollector::blocking(tapestats::Tapestats::new(&c.paths, c.ignored_tapes.clone())),
        },
        CollectorSpec {
            name: "arp",
            default_enabled: true,
            help: "ARP entries per device",
            new: |c| AnyCollector::blocking(arp::Arp::new(&c.paths, c.arp_devices.clone())),
        },
        CollectorSpec {
            name: "conntrack",
            default_enabled: true,
            help: "connection tracking table size and statistics",
            new: |c| AnyCollector::blocking(conntrack::Conntrack::new(&c.paths)),
        },
        CollectorSpec {
            name: "netstat",
            default_enabled: true,
            help: "IP, TCP, UDP and ICMP counters from /proc/net/{netstat,snmp,snmp6}",
            new: |c| AnyCollector::blocking(netstat::Netstat::new(&c.paths, c.netstat_fields.clone())),
        },
        CollectorSpec {
            name: "sockstat",
            default_enabled: true,
            help: "sockets in use and their memory per protocol",
            new: |c| AnyCollector::blocking(sockstat::Sockstat::new(&c.paths)),
        },
        CollectorSpec {
            name: "softnet",
            default_enabled: true,
            help: "per-CPU packet processing counters",
            new: |c| AnyCollector::blocking(softnet::Softnet::new(&c.paths)),
        },
        CollectorSpec {
            name: "udp_queues",
            default_enabled: true,
            help: "bytes queued in UDP sockets",
            new: |c| AnyCollector::blocking(udp_queues::UdpQueues::new(&c.paths)),
        },
        CollectorSpec {
            name: "netclass",
            default_enabled: true,
            help: "network interface state, speed, MTU and properties from sysfs",
            new: |c| AnyCollector::blocking(netclass::Netclass::new(&c.paths, c.netclass_ignored.clone(), c.netclass_ignore_invalid_speed)),
        },
        CollectorSpec {
            name: "ipvs",
            default_enabled: true,
            help: "IPVS load balancer totals and backends",
            new: |c| AnyCollector::blocking(ipvs::Ipvs::new(&c.paths, c.ipvs_labels.clone())),
        },
        CollectorSpec {
            name: "bonding",
            default_enabled: true,
            help: "bonded interfaces and their active slaves",
            new: |c| AnyCollector::blocking(bonding::Bonding::new(&c.paths)),
        },
        CollectorSpec {
            name: "infiniband",
            default_enabled: true,
            help: "InfiniBand and RoCE port state, rate and counters",
            new: |c| AnyCollector::blocking(infiniband::Infiniband::new(&c.paths)),
        },
        CollectorSpec {
            name: "fibrechannel",
            default_enabled: true,
            help: "Fibre Channel host ports and their counters",
            new: |c| AnyCollector::blocking(fibrechannel::Fibrechannel::new(&c.paths)),
        },
        CollectorSpec {
            name: "cpufreq",
            default_enabled: true,
            help: "CPU frequencies and scaling governors",
            new: |c| AnyCollector::blocking(cpufreq::Cpufreq::new(&c.paths)),
        },
        CollectorSpec {
            name: "dmi",
            default_enabled: true,
            help: "DMI (BIOS, board, product) identity",
            new: |c| AnyCollector::blocking(dmi::Dmi::new(&c.paths)),
        },
        CollectorSpec {
            name: "edac",
            default_enabled: true,
            help: "memory error counts (EDAC)",
            new: |c| AnyCollector::blocking(edac::Edac::new(&c.paths)),
        },
        CollectorSpec {
            name: "entropy",
            default_enabled: true,
            help: "available entropy",
            new: |c| AnyCollector::blocking(entropy::Entropy::new(&c.paths)),
        },
        CollectorSpec {
            name: "filefd",
            default_enabled: true,
            help: "allocated and maximum file descriptors",
            new: |c| AnyCollector::blocking(filefd::Filefd::new(&c.paths)),
        },
        CollectorSpec {
            name: "kernel_hung",
            default_enabled: false,
            help: "hung tasks detected by the kernel",
            new: |c| AnyCollector::blocking(kernel_hung::KernelHung::new(&c.paths)),
        },
        CollectorSpec {
            name: "os",
            default_enabled: true,
            help: "OS release from os-release",
            new: |c| AnyCollector::blocking(os::Os::new(&c.paths)),
        },
        CollectorSpec {
            name: "powersupplyclass",
            default_enabled: true,
            help: "batteries and power supplies",
            new: |c| AnyCollector::blocking(powersupplyclass::PowerSupplyClass::new(&c.paths, c.ignored_supplies.clone())),
        },
        CollectorSpec {
            name: "schedstat",
            default_enabled: true,
            help: "scheduler run and wait time per CPU",
            new: |c| AnyCollector::blocking(schedstat::Schedstat::new(&c.paths)),
        },
        CollectorSpec {
            name: "selinux",
            default_enabled: true,
            help: "SELinux state",
            new: |c| AnyCollector::blocking(selinux::Selinux::new(&c.paths)),
        },
        CollectorSpec {
            name: "timex",
            default_enabled: true,
            help: "clock synchronisation state (adjtimex)",
            new: |_| AnyCollector::blocking(timex::Timex::new()),
        },
        CollectorSpec {
            name: "vmstat",
            default_enabled: true,
            help: "paging, swapping and OOM counters from /proc/vmstat",
            new: |c| AnyCollector::blocking(vmstat::Vmstat::new(&c.paths, c.vmstat_fields.clone())),
        },
        CollectorSpec {
            name: "watchdog",
            default_enabled: true,
            help: "watchdog devices",
            new: |c| AnyCollector::blocking(watchdog::Watchdog::new(&c.paths)),
        },
        CollectorSpec {
            name: "textfile",
            default_enabled: true,
            help: "metrics from *.prom files in --collector.textfile.directory",
            new: |c| AnyCollector::blocking(textfile::Textfile::new(c.textfile_directories.clone())),
        },
    ],
};

/// Every collector's name, in the spec's order.
pub fn collector_names() -> impl Iterator<Item = &'static str> {
    SPEC.collectors.iter().map(|c| c.name)
}

/// The collectors on by default, in the spec's order.
pub fn default_collectors() -> impl Iterator<Item = &'static str> {
    SPEC.collectors
        .iter()
        .filter(|c| c.default_enabled)
        .map(|c| c.name)
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_collector_has_one_usable_name() {
        assert_eq!(common::cli::check_collector_names(&super::SPEC), Ok(()));
    }
}
