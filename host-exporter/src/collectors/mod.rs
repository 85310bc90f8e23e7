//! One file per collector, named for what it reads.

pub mod cpu;
pub mod diskstats;
pub mod filesystem;
pub mod hwmon;
pub mod loadavg;
pub mod meminfo;
pub mod netdev;
pub mod pressure;
pub mod rapl;
pub mod stat;
pub mod textfile;
pub mod thermal_zone;
pub mod time;
pub mod uname;
// Network: node_exporter's arp, conntrack, netstat, sockstat, softnet, udp_queues, ipvs,
// netclass, bonding, infiniband and fibrechannel collectors.
pub mod arp;
pub mod bonding;
pub mod conntrack;
pub mod fibrechannel;
pub mod infiniband;
pub mod ipvs;
pub mod netclass;
pub mod netstat;
pub mod sockstat;
pub mod softnet;
pub mod udp_queues;
// System collectors (issue 12).
pub mod cpufreq;
pub mod dmi;
pub mod edac;
pub mod entropy;
pub mod filefd;
pub mod kernel_hung;
pub mod os;
pub mod powersupplyclass;
pub mod schedstat;
pub mod selinux;
pub mod timex;
pub mod vmstat;
pub mod watchdog;
// Storage collectors.
pub mod bcache;
pub mod btrfs;
pub mod dmmultipath;
pub mod mdadm;
pub mod nfs;
pub mod nfsd;
pub mod nvme;
pub mod tapestats;
pub mod xfs;
pub mod zfs;
