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
pub mod thermal_zone;
pub mod time;
pub mod uname;
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
