//! `node_uname_info` from the uname(2) system call, as node_exporter reports it.

use common::{BlockingCollector, CollectResult, MetricFamily};

pub struct Uname;

impl BlockingCollector for Uname {
    fn collect(&self) -> CollectResult {
        let u = rustix::system::uname();
        let text = |s: &std::ffi::CStr| s.to_string_lossy().into_owned();
        let labels = [
            ("domainname", text(u.domainname())),
            ("machine", text(u.machine())),
            ("nodename", text(u.nodename())),
            ("release", text(u.release())),
            ("sysname", text(u.sysname())),
            ("version", text(u.version())),
        ];
        Ok(vec![MetricFamily::gauge(
            "node_uname_info",
            "Labeled system information as provided by the uname system call.",
        )
        .with(&labels, 1.0)])
    }
}
