//! Process limits set at start.
//!
//! The soft open-file limit stays at 1024 under systemd unless a unit raises it, and a Rust
//! binary keeps what it is given (Go programs such as node_exporter raise it to the hard limit at
//! start). At 1024, 1,100 idle connections made good scrapes take 7 to 9 s and made the proxy
//! answer 502 to 325 of 700 streams. Every connection is one descriptor, so take the hard limit.

use crate::log;

const MAX_OPEN_FILES: libc::rlim_t = 1 << 20;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (at most 1,048,576). A refusal (a seccomp filter without
/// `setrlimit`, as the shipped units have: they set `LimitNOFILE` instead) is logged, not fatal.
pub fn raise_open_file_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed to them.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return;
    }
    // Under some container runtimes the hard limit is about a billion; children (rocm-smi)
    // inherit the soft one, and some programs walk every possible fd. A million is plenty.
    let target = limit.rlim_max.min(MAX_OPEN_FILES);
    if limit.rlim_cur >= target {
        return;
    }
    let was = limit.rlim_cur;
    limit.rlim_cur = target;
    // SAFETY: as above.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } == 0 {
        log::debug(
            "raised the open-file limit",
            &[("from", &was.to_string()), ("to", &target.to_string())],
        );
    } else {
        log::warn(
            "cannot raise the open-file limit; set LimitNOFILE or ulimit -n",
            &[
                ("soft", &was.to_string()),
                ("err", &std::io::Error::last_os_error().to_string()),
            ],
        );
    }
}
