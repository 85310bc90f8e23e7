//! Runs a helper program (rocm-smi) with a hard timeout. The child gets its own process group so
//! that a timeout kills it and everything it started; its output is capped so that a runaway
//! child cannot fill our memory. A child that survives SIGKILL (stuck in D state in the driver)
//! is handed back to the caller, who must not start another until it is gone. A child still
//! running when the exporter dies is killed by the kernel (parent-death signal).

use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    /// True when stdout was longer than the cap and was cut.
    pub truncated: bool,
}

#[derive(Debug)]
pub enum RunError {
    Spawn(io::Error),
    /// Killed (with its process group) after the timeout, and reaped.
    TimedOut,
    /// Killed after the timeout but still not gone after the grace period.
    Unreaped(Child),
}

pub struct Runner {
    pub timeout: Duration,
    /// How long to wait for a killed child to disappear before calling it stuck.
    pub kill_grace: Duration,
    pub max_output: usize,
    /// Sends SIGKILL to a process group; replaceable so tests can play a child that ignores it.
    pub kill_group: fn(pgid: u32),
}

pub fn kill_process_group(pgid: u32) {
    if let Ok(pgid) = i32::try_from(pgid) {
        // SAFETY: kill(2) with a negative pid signals that process group; no memory involved.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
    }
}

impl Runner {
    pub fn new(timeout: Duration) -> Self {
        Runner {
            timeout,
            kill_grace: Duration::from_secs(1),
            max_output: 4 << 20,
            kill_group: kill_process_group,
        }
    }

    pub fn run(&self, command: &mut Command) -> Result<Output, RunError> {
        let started = Instant::now();
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent. It makes the
        // kernel kill the child if the thread that started it dies (the exporter exits or is
        // killed), so a hanging rocm-smi does not outlive us.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = command.spawn().map_err(RunError::Spawn)?;
        let deadline = started + self.timeout;
        // The readers stop at the deadline too (plus the wait below): a grandchild that left the
        // process group with the pipes open kept a reader thread and two fds per run otherwise.
        let readers_stop = deadline + Duration::from_millis(100);
        let stdout = read_in_background(child.stdout.take(), self.max_output, readers_stop);
        let stderr = read_in_background(child.stderr.take(), 64 << 10, readers_stop);

        let status = match wait_until(&mut child, deadline) {
            Some(status) => status,
            None => {
                (self.kill_group)(child.id());
                return match wait_until(&mut child, Instant::now() + self.kill_grace) {
                    Some(_) => Err(RunError::TimedOut),
                    None => Err(RunError::Unreaped(child)),
                };
            }
        };
        // The pipes close when the child exits, unless something it started keeps them open.
        let remaining = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(100));
        let collect = |rx: mpsc::Receiver<(Vec<u8>, bool)>| rx.recv_timeout(remaining).ok();
        match (collect(stdout), collect(stderr)) {
            (Some((out, truncated)), Some((err, _))) => Ok(Output {
                status,
                stdout: String::from_utf8_lossy(&out).into_owned(),
                stderr: String::from_utf8_lossy(&err).into_owned(),
                truncated,
            }),
            _ => {
                (self.kill_group)(child.id());
                Err(RunError::TimedOut)
            }
        }
    }
}

/// Polls the child until it exits or the deadline passes; short sleeps first, since most runs
/// are quick.
fn wait_until(child: &mut Child, deadline: Instant) -> Option<ExitStatus> {
    let mut pause = Duration::from_millis(1);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) => {}
            // Cannot happen for our own child; treat it as still running.
            Err(_) => {}
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// Reads a pipe to its end on a thread, keeping at most `cap` bytes and draining the rest so the
/// child never blocks on a full pipe. At `stop` the thread gives up and closes the pipe, so a
/// writer that never closes it cannot keep the thread.
fn read_in_background<R: Read + AsRawFd + Send + 'static>(
    pipe: Option<R>,
    cap: usize,
    stop: Instant,
) -> mpsc::Receiver<(Vec<u8>, bool)> {
    let (tx, rx) = mpsc::channel();
    let Some(mut pipe) = pipe else {
        let _ = tx.send((Vec::new(), false));
        return rx;
    };
    thread::spawn(move || {
        let mut kept = Vec::new();
        let mut truncated = false;
        let mut buf = [0u8; 16 << 10];
        loop {
            if !readable_before(&pipe, stop) {
                break;
            }
            match pipe.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    let room = cap.saturating_sub(kept.len());
                    kept.extend_from_slice(&buf[..n.min(room)]);
                    truncated |= n > room;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        let _ = tx.send((kept, truncated));
    });
    rx
}

/// Waits until `fd` has data or is closed by its writer (true), or `stop` passes (false).
fn readable_before(fd: &impl AsRawFd, stop: Instant) -> bool {
    loop {
        let left = stop.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        let mut poll = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let millis = i32::try_from(left.as_millis().max(1)).unwrap_or(i32::MAX);
        // SAFETY: poll reads and writes only the one pollfd passed.
        match unsafe { libc::poll(&mut poll, 1, millis) } {
            n if n > 0 => return true,
            0 => return false,
            _ if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted => {}
            // An error on our own pipe: let read() report it.
            _ => return true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut c = Command::new("/bin/sh");
        c.arg("-c").arg(script);
        c
    }

    fn alive(pid: u32) -> bool {
        // A zombie left for init to reap counts as gone.
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat) => !stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
            Err(_) => false,
        }
    }

    #[test]
    fn output_and_exit_status() {
        let out = Runner::new(Duration::from_secs(5))
            .run(&mut sh("echo out; echo err >&2; exit 3"))
            .unwrap();
        assert_eq!(out.stdout, "out\n");
        assert_eq!(out.stderr, "err\n");
        assert_eq!(out.status.code(), Some(3));
        assert!(!out.truncated);
    }

    #[test]
    fn missing_program_is_a_spawn_error() {
        let err = Runner::new(Duration::from_secs(1))
            .run(&mut Command::new("/nonexistent/rocm-smi"))
            .unwrap_err();
        assert!(matches!(err, RunError::Spawn(e) if e.kind() == io::ErrorKind::NotFound));
    }

    #[test]
    fn timeout_kills_the_whole_process_group() {
        let dir = std::env::temp_dir().join(format!("child-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pidfile = dir.join("grandchild");
        let script = format!("sleep 30 & echo $! > {}; wait", pidfile.display());
        let started = Instant::now();
        let err = Runner::new(Duration::from_millis(300))
            .run(&mut sh(&script))
            .unwrap_err();
        assert!(matches!(err, RunError::TimedOut), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
        let grandchild: u32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let gone_by = Instant::now() + Duration::from_secs(2);
        while alive(grandchild) && Instant::now() < gone_by {
            thread::sleep(Duration::from_millis(20));
        }
        assert!(!alive(grandchild), "the grandchild survived the timeout");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_grandchild_holding_the_pipes_open_does_not_keep_the_readers() {
        let dir = std::env::temp_dir().join(format!("child-pipes-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let gone = dir.join("reader-gone");
        // The grandchild leaves the process group (setsid) with stdout open, and writes to it
        // until a write fails, which happens only once nobody reads the pipe any more.
        let script = format!(
            "setsid sh -c 'trap \"\" PIPE; while echo x; do sleep 0.05; done; echo > {}' & echo started",
            gone.display()
        );
        let err = Runner::new(Duration::from_millis(300))
            .run(&mut sh(&script))
            .unwrap_err();
        assert!(matches!(err, RunError::TimedOut), "{err:?}");
        let by = Instant::now() + Duration::from_secs(10);
        while !gone.exists() && Instant::now() < by {
            thread::sleep(Duration::from_millis(20));
        }
        let closed = gone.exists();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(closed, "the reader still holds the grandchild's pipe");
    }

    #[test]
    fn a_child_that_survives_the_kill_is_handed_back() {
        fn ignore(_: u32) {}
        let runner = Runner {
            kill_grace: Duration::from_millis(100),
            kill_group: ignore,
            ..Runner::new(Duration::from_millis(100))
        };
        match runner.run(&mut sh("sleep 30")) {
            Err(RunError::Unreaped(mut child)) => {
                assert!(child.try_wait().unwrap().is_none());
                child.kill().unwrap();
                child.wait().unwrap();
            }
            other => panic!("expected Unreaped, got {other:?}"),
        }
    }

    #[test]
    fn output_is_capped_and_the_child_is_not_blocked() {
        let runner = Runner {
            max_output: 1000,
            ..Runner::new(Duration::from_secs(5))
        };
        let out = runner
            .run(&mut sh("head -c 1000000 /dev/zero | tr '\\0' x"))
            .unwrap();
        assert_eq!(out.stdout.len(), 1000);
        assert!(out.truncated);
        assert!(out.status.success());
    }
}
