//! All NVML calls happen on one worker thread, never on the request path. A scrape asks the
//! worker for a sample and waits at most `timeout`; if NVML is wedged the scrape is answered with
//! the last good sample and its age, and no second call is started while one is in flight.
//!
//! The worker learns when scrapes come (the smallest interval between recent ones) and takes
//! the next sample just before the next scrape is due, so a scrape normally finds a fresh
//! sample and answers at once instead of waiting for the driver. Without a known cadence (the
//! first scrapes), or when a scrape finds no fresh sample, it samples on demand; when scrapes
//! stop, so does sampling (one prefetch per scrape at most).
//!
//! The worker also owns the NVML session: it initialises NVML on demand (retrying on every
//! sample while the library or driver is missing, logging only when the state changes),
//! re-initialises after a driver reload, and starts the XID event thread for each session.

use crate::nvml::{self, ErrorCounts, Plan, Reader, Session};
use crate::snapshot::{DownReason, Snapshot};
use crate::xid_events::{XidCounts, XidWatcher};
use common::log;
use nvml_wrapper::error::NvmlError;
use std::collections::VecDeque;
use std::ffi::OsString;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

pub struct WorkerConfig {
    /// `None`: the system's `libnvidia-ml.so.1`.
    pub library: Option<OsString>,
    /// How long a scrape waits for a sample before serving the previous one.
    pub timeout: Duration,
    /// A sample younger than this is served again instead of querying NVML (coalesces the
    /// collectors of one scrape and concurrent scrapes).
    pub min_interval: Duration,
    pub plan: Plan,
    /// Whether to run the XID event thread.
    pub xid_events: bool,
}

/// What a scrape gets: a sample, and whether it is the one just asked for.
pub struct Served {
    pub snapshot: Arc<Snapshot>,
    /// False when the worker did not answer in time and this is an older sample.
    pub fresh: bool,
}

/// Counters about the worker itself, for the exporter's own series.
#[derive(Clone, Debug, Default)]
pub struct WorkerStats {
    pub errors: ErrorCounts,
    pub initializations: u64,
    pub timeouts: u64,
    pub last_sample_duration: Duration,
    /// Samples taken because a scrape found none fresh enough.
    pub scrape_samples: u64,
    /// Samples taken ahead of an expected scrape.
    pub prefetch_samples: u64,
}

/// Scrape calls closer together than this are one scrape (the collectors of one scrape, or
/// two scrapers at the same moment), whatever `--nvml.min-interval` is.
const MERGE_FLOOR: Duration = Duration::from_millis(50);
/// Scrape arrivals remembered to learn the cadence.
const ARRIVALS: usize = 5;
/// No prefetch once this many intervals passed without a scrape.
const MISSED_INTERVALS: u32 = 3;

/// When scrapes come, and whether the sample for the next one was already started.
#[derive(Default)]
struct Cadence {
    arrivals: VecDeque<Instant>,
    /// The scrape arrival a prefetch was started after: at most one prefetch per scrape, so
    /// nothing is sampled in the background once scraping stops.
    prefetched_after: Option<Instant>,
}

impl Cadence {
    /// Records a scrape call; true when it starts a new scrape.
    fn note(&mut self, now: Instant, merge: Duration) -> bool {
        if let Some(&last) = self.arrivals.back() {
            if now.saturating_duration_since(last) < merge.max(MERGE_FLOOR) {
                return false;
            }
        }
        if self.arrivals.len() == ARRIVALS {
            self.arrivals.pop_front();
        }
        self.arrivals.push_back(now);
        true
    }

    /// The smallest interval between recent scrapes: with two Prometheus servers, the time to
    /// the next scrape of either.
    fn interval(&self) -> Option<Duration> {
        self.arrivals
            .iter()
            .zip(self.arrivals.iter().skip(1))
            .map(|(a, b)| b.saturating_duration_since(*a))
            .min()
    }

    /// When to start the sample for the next expected scrape: its expected arrival less the
    /// last sample's duration and a margin. `None`: no cadence known yet, already started for
    /// this scrape, or scraping seems to have stopped.
    fn prefetch_at(&self, now: Instant, sample_duration: Duration) -> Option<Instant> {
        let interval = self.interval()?;
        let last = *self.arrivals.back()?;
        if self.prefetched_after == Some(last)
            || now.saturating_duration_since(last) > interval * MISSED_INTERVALS
        {
            return None;
        }
        let lead = sample_duration + margin(interval);
        Some(
            (last + interval)
                .checked_sub(lead)
                .unwrap_or(last)
                .max(last),
        )
    }
}

/// Slack for scheduling jitter: 5% of the interval, within 5-250 ms.
fn margin(interval: Duration) -> Duration {
    (interval / 20).clamp(Duration::from_millis(5), Duration::from_millis(250))
}

#[derive(Clone, Copy)]
enum Trigger {
    Scrape,
    Prefetch,
}

#[derive(Default)]
struct State {
    last: Option<Arc<Snapshot>>,
    requested: bool,
    /// When the sample being taken was asked for; `None` when the worker is idle.
    in_flight_since: Option<Instant>,
    /// Sequence number of the sample being taken; a timeout is counted once per sample.
    sample_seq: u64,
    timed_out_seq: u64,
    waiters: Vec<oneshot::Sender<Arc<Snapshot>>>,
    stats: WorkerStats,
    cadence: Cadence,
    /// The latest sample was prefetched for the next scrape.
    last_prefetched: bool,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

#[derive(Clone)]
pub struct NvmlWorker {
    shared: Arc<Shared>,
    timeout: Duration,
    min_interval: Duration,
    pub xid: Arc<XidCounts>,
}

impl NvmlWorker {
    /// Starts the worker thread. NVML is first touched when the first scrape asks for a sample.
    pub fn start(config: WorkerConfig) -> std::io::Result<NvmlWorker> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
        });
        let xid = Arc::new(XidCounts::default());
        let worker = NvmlWorker {
            shared: shared.clone(),
            timeout: config.timeout,
            min_interval: config.min_interval,
            xid: xid.clone(),
        };
        std::thread::Builder::new()
            .name("nvml-worker".into())
            .spawn(move || run(shared, config, xid))?;
        Ok(worker)
    }

    /// A sample no older than `min_interval`, or, if NVML does not answer within `timeout`,
    /// the last one taken (or a "down" placeholder before the first one).
    pub async fn snapshot(&self) -> Served {
        let (receiver, wait) = {
            let mut state = lock(&self.shared.state);
            if state.cadence.note(Instant::now(), self.min_interval) {
                // The worker plans the next prefetch from this arrival.
                self.shared.wake.notify_one();
            }
            if let Some(last) = state.last.clone() {
                let age = last.taken_at.elapsed();
                // A sample prefetched for this scrape may be older than min_interval (the
                // margin, a late scrape) but is still the one meant for it, for all of the
                // scrape's collectors.
                let prefetched =
                    state.last_prefetched && state.cadence.interval().is_some_and(|i| age < i / 2);
                if age < self.min_interval || prefetched {
                    return Served {
                        snapshot: last,
                        fresh: true,
                    };
                }
            }
            // A call already stuck past the deadline: answer at once instead of waiting again.
            let wait = match state.in_flight_since {
                Some(since) => self.timeout.saturating_sub(since.elapsed()),
                None => {
                    state.in_flight_since = Some(Instant::now());
                    state.requested = true;
                    state.sample_seq += 1;
                    self.shared.wake.notify_one();
                    self.timeout
                }
            };
            let (sender, receiver) = oneshot::channel();
            if !wait.is_zero() {
                state.waiters.push(sender);
            }
            (receiver, wait)
        };
        if !wait.is_zero() {
            if let Ok(Ok(snapshot)) = tokio::time::timeout(wait, receiver).await {
                return Served {
                    snapshot,
                    fresh: true,
                };
            }
        }
        let mut state = lock(&self.shared.state);
        if state.timed_out_seq != state.sample_seq {
            state.timed_out_seq = state.sample_seq;
            state.stats.timeouts += 1;
            log::warn(
                "NVML did not answer in time; serving the previous sample",
                &[("timeout", &format!("{:?}", self.timeout))],
            );
        }
        let snapshot = state.last.clone().unwrap_or_else(|| {
            Arc::new(Snapshot::down(DownReason {
                reason: "timeout",
                message: "the first NVML sample has not finished yet".into(),
            }))
        });
        Served {
            snapshot,
            fresh: false,
        }
    }

    pub fn stats(&self) -> WorkerStats {
        lock(&self.shared.state).stats.clone()
    }
}

/// A poisoned lock only means another thread panicked while holding it; the state is still
/// usable, and the exporter must keep answering.
fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The NVML session with the event thread that belongs to it.
struct Live {
    session: Session,
    reader: Reader,
    _xid: Option<XidWatcher>,
}

fn run(shared: Arc<Shared>, config: WorkerConfig, xid: Arc<XidCounts>) {
    let mut live: Option<Live> = None;
    let mut last_down: Option<DownReason> = None;
    let mut gpus_down: Vec<u32> = Vec::new();
    let mut refused: Option<DownReason> = None;
    loop {
        let trigger = next_trigger(&shared);
        let started = Instant::now();
        // Errors are counted into a local map and merged after, so the lock is never held
        // across an NVML call.
        let mut errors = ErrorCounts::new();
        let mut inits = 0;
        // A panic (in nvml-wrapper or here) must not kill the worker: every later scrape would
        // time out. The session it happened in is abandoned without running its destructors.
        let sampled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            take_sample(
                &config,
                &xid,
                &mut live,
                &mut refused,
                &mut errors,
                &mut inits,
            )
        }));
        let snapshot = sampled.unwrap_or_else(|_| abandon(&mut live));
        log_transition(&mut last_down, &snapshot);
        log_gpu_transitions(&mut gpus_down, &snapshot);
        let snapshot = Arc::new(snapshot);
        let mut state = lock(&shared.state);
        for (key, n) in errors {
            *state.stats.errors.entry(key).or_default() += n;
        }
        state.stats.initializations += inits;
        state.stats.last_sample_duration = started.elapsed();
        match trigger {
            Trigger::Scrape => state.stats.scrape_samples += 1,
            Trigger::Prefetch => state.stats.prefetch_samples += 1,
        }
        state.last_prefetched = matches!(trigger, Trigger::Prefetch);
        state.last = Some(snapshot.clone());
        state.in_flight_since = None;
        for waiter in state.waiters.drain(..) {
            let _ = waiter.send(snapshot.clone());
        }
    }
}

/// Waits until a scrape asks for a sample, or until it is time to prefetch one.
fn next_trigger(shared: &Shared) -> Trigger {
    let mut state = lock(&shared.state);
    loop {
        if state.requested {
            state.requested = false;
            return Trigger::Scrape;
        }
        let now = Instant::now();
        let at = state
            .cadence
            .prefetch_at(now, state.stats.last_sample_duration);
        match at {
            Some(at) if at <= now => {
                // Scrapes arriving now wait for this sample instead of starting another.
                state.cadence.prefetched_after = state.cadence.arrivals.back().copied();
                state.in_flight_since = Some(now);
                state.sample_seq += 1;
                return Trigger::Prefetch;
            }
            Some(at) => {
                state = match shared.wake.wait_timeout(state, at - now) {
                    Ok((s, _)) => s,
                    Err(p) => p.into_inner().0,
                }
            }
            None => state = shared.wake.wait(state).unwrap_or_else(|p| p.into_inner()),
        }
    }
}

/// After a panic inside a sample. The session is leaked without its destructors (they call
/// NVML unchecked and may be what panicked), but its XID thread is told to stop first: left
/// running, it would count every XID a second time beside the next session's thread.
fn abandon(live: &mut Option<Live>) -> Snapshot {
    if let Some(Live {
        session,
        reader,
        _xid: watcher,
    }) = live.take()
    {
        drop(watcher);
        std::mem::forget(reader);
        std::mem::forget(session);
    }
    Snapshot::down(DownReason {
        reason: "internal_error",
        message: "the NVML sample panicked; NVML is re-initialised on the next scrape".into(),
    })
}

fn take_sample(
    config: &WorkerConfig,
    xid: &Arc<XidCounts>,
    live: &mut Option<Live>,
    refused: &mut Option<DownReason>,
    errors: &mut ErrorCounts,
    inits: &mut u64,
) -> Snapshot {
    if let Some(reason) = refused {
        return Snapshot::down(reason.clone());
    }
    // One retry: a sample that finds the driver reloaded re-initialises and samples again.
    for _attempt in 0..2 {
        if live.is_none() {
            match nvml::open_session(config.library.as_deref(), errors) {
                Ok(session) => {
                    *inits += 1;
                    log::info(
                        "NVML initialised",
                        &[
                            ("driver_version", &session.driver_version),
                            ("gpus", &session.identities.len().to_string()),
                        ],
                    );
                    let watcher = config
                        .xid_events
                        .then(|| {
                            XidWatcher::start(
                                session.nvml.clone(),
                                &session.identities,
                                xid.clone(),
                            )
                        })
                        .flatten();
                    *live = Some(Live {
                        session,
                        reader: Reader::default(),
                        _xid: watcher,
                    });
                }
                Err(e @ NvmlError::FailedToLoadSymbol(_)) => {
                    // A library without nvmlInit_v2 or nvmlShutdown will not grow one: stop
                    // loading it on every scrape (each load of such a library is leaked).
                    let mut reason = down_reason(&e);
                    reason
                        .message
                        .push_str(" (not retried; restart once the library is fixed)");
                    *refused = Some(reason.clone());
                    return Snapshot::down(reason);
                }
                Err(e) => return Snapshot::down(down_reason(&e)),
            }
        }
        let Some(current) = live.as_mut() else {
            break;
        };
        match current.reader.sample(&current.session, config.plan, errors) {
            Ok(gpus) => {
                return Snapshot {
                    taken_at: Instant::now(),
                    down: None,
                    driver_version: current.session.driver_version.clone(),
                    cuda_version: current.session.cuda_version.clone(),
                    gpus,
                }
            }
            Err(e) => {
                log::warn(
                    "NVML session lost; re-initialising",
                    &[("err", &e.to_string()), ("code", nvml::error_code(&e))],
                );
                // Dropping the session stops its event thread and shuts NVML down.
                current.reader.release(&current.session.nvml);
                *live = None;
            }
        }
    }
    Snapshot::down(DownReason {
        reason: "reinitialising",
        message: "NVML failed again right after re-initialising".into(),
    })
}

fn down_reason(e: &NvmlError) -> DownReason {
    let reason = match e {
        NvmlError::LibloadingError(_) | NvmlError::LibraryNotFound => "library_not_found",
        NvmlError::FailedToLoadSymbol(_) => "symbol_not_found",
        NvmlError::DriverNotLoaded => "driver_not_loaded",
        NvmlError::NoPermission => "no_permission",
        other => nvml::error_code(other),
    };
    DownReason {
        reason,
        message: e.to_string(),
    }
}

/// One log line per change of state, not one per scrape.
fn log_transition(last: &mut Option<DownReason>, snapshot: &Snapshot) {
    if snapshot.down == *last {
        return;
    }
    match &snapshot.down {
        Some(down) => log::error(
            "NVML is not available; serving nvidia_up 0 and retrying on every scrape",
            &[("reason", down.reason), ("err", &down.message)],
        ),
        None => log::info("NVML is available", &[]),
    }
    *last = snapshot.down.clone();
}

/// One line when a GPU stops answering (GPU_IS_LOST) and one when it is back.
fn log_gpu_transitions(down: &mut Vec<u32>, snapshot: &Snapshot) {
    if snapshot.down.is_some() {
        return;
    }
    for gpu in &snapshot.gpus {
        let index = gpu.identity.index;
        let was_down = down.contains(&index);
        if !gpu.up && !was_down {
            down.push(index);
            log::error(
                "GPU is not answering (lost or fallen off the bus); serving gpu_up 0 for it",
                &[("gpu", &index.to_string()), ("uuid", &gpu.identity.uuid)],
            );
        } else if gpu.up && was_down {
            down.retain(|&i| i != index);
            log::info("GPU answers again", &[("gpu", &index.to_string())]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Threads of this process with the given name (as `/proc` shows it, at most 15 bytes).
    fn threads_named(name: &str) -> usize {
        std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
            .filter(|comm| comm.trim_end() == name)
            .count()
    }

    fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn the_cadence_is_the_smallest_recent_interval() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut c = Cadence::default();
        assert!(c.note(t0, ms(500)));
        // The other collectors of the same scrape.
        assert!(!c.note(t0 + ms(2), ms(500)));
        assert_eq!(c.interval(), None, "one scrape: no cadence");
        assert_eq!(c.prefetch_at(t0, ms(100)), None);
        assert!(c.note(t0 + ms(10_000), ms(500)));
        // A second Prometheus, scraping 4 s after the first one.
        assert!(c.note(t0 + ms(14_000), ms(500)));
        assert_eq!(c.interval(), Some(ms(4_000)));
        // min_interval 0 still merges the collectors of one scrape.
        assert!(!c.note(t0 + ms(14_001), Duration::ZERO));
    }

    #[test]
    fn one_prefetch_per_scrape_just_before_the_next_one() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut c = Cadence::default();
        c.note(t0, ms(500));
        c.note(t0 + ms(1_000), ms(500));
        let last = t0 + ms(1_000);
        // Expected at 2000 ms, less the 150 ms a sample takes and a 50 ms margin.
        assert_eq!(c.prefetch_at(last, ms(150)), Some(t0 + ms(1_800)));
        // A sample longer than the interval: start at once.
        assert_eq!(c.prefetch_at(last, ms(5_000)), Some(last));
        c.prefetched_after = Some(last);
        assert_eq!(c.prefetch_at(last, ms(150)), None, "already prefetched");
        // Scraping stopped: no sampling in the background.
        c.prefetched_after = None;
        assert_eq!(c.prefetch_at(last + ms(3_500), ms(150)), None);
    }

    #[test]
    fn a_panic_stops_the_xid_thread_of_the_abandoned_session() {
        let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let dir = std::env::temp_dir().join(format!("nvx-unit-{}", std::process::id()));
        let library = crate::fake_nvml::compile(&dir, &[]);
        // Only this test loads the fake library in this process.
        std::env::set_var(
            "FAKE_NVML_SCENARIO",
            manifest.join("tests/fake-nvml/scenarios/lost.scn"),
        );
        let mut errors = ErrorCounts::new();
        let session = nvml::open_session(Some(library.as_os_str()), &mut errors).unwrap();
        let xid = Arc::new(XidCounts::default());
        let watcher = XidWatcher::start(session.nvml.clone(), &session.identities, xid.clone());
        assert!(watcher.is_some());
        let mut live = Some(Live {
            session,
            reader: Reader::default(),
            _xid: watcher,
        });
        wait_for("the XID thread to watch", || !xid.watched().is_empty());
        assert_eq!(threads_named("nvml-xid-events"), 1);

        let snapshot = abandon(&mut live);
        assert!(live.is_none());
        assert_eq!(snapshot.down.unwrap().reason, "internal_error");
        // Stopped, not merely forgotten: no GPU is reported watched, and the thread ends.
        assert!(xid.watched().is_empty());
        wait_for("the XID thread to end", || {
            threads_named("nvml-xid-events") == 0
        });
        let _ = std::fs::remove_dir_all(&dir);
    }
}
