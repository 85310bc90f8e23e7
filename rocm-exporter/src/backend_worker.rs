//! Keeps a backend off the request path: the backend runs on its own thread, one collection at a
//! time, so a collection that never returns can never be joined by a second one. How a scrape
//! gets its sample depends on the backend's [`Refresh`]: it waits (at most `wait`) for a sample
//! taken for it, or, for a backend that takes seconds, it answers at once from the last sample
//! and starts a refresh in the background. When the backend is slow, wedged or failing, the
//! scrape is answered from the last good sample, with its age and the reason it is not fresh.

use crate::model::{Backend, Failure, Reason, Snapshot};
use std::collections::BTreeMap;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// What a scrape gets.
#[derive(Clone, Debug)]
pub struct Reading {
    /// The newest good snapshot, fresh or not.
    pub snapshot: Option<Arc<Snapshot>>,
    /// When `snapshot` was taken.
    pub taken: Option<Instant>,
    /// `None` when the latest collection succeeded; otherwise why it failed (or why none
    /// finished in time).
    pub failure: Option<Failure>,
    /// Whether `snapshot` was taken for this scrape (its age is then reported as 0).
    pub current: bool,
    /// Failed collections by reason, since start.
    pub errors: BTreeMap<Reason, u64>,
    /// Collections that ran into their timeout, since start.
    pub timeouts: u64,
}

impl Reading {
    pub fn is_fresh(&self) -> bool {
        self.failure.is_none() && self.snapshot.is_some()
    }

    /// Seconds since the snapshot served was taken; 0 when it was taken for this scrape.
    pub fn age_seconds(&self, now: Instant) -> Option<f64> {
        if self.current && self.is_fresh() {
            return Some(0.0);
        }
        self.taken
            .map(|t| now.saturating_duration_since(t).as_secs_f64())
    }
}

#[derive(Default)]
struct State {
    in_flight_since: Option<Instant>,
    finished: u64,
    last_good: Option<(Arc<Snapshot>, Instant)>,
    /// The failure of the latest finished collection, if it failed.
    last_failure: Option<Failure>,
    errors: BTreeMap<Reason, u64>,
    timeouts: u64,
}

struct Shared {
    state: Mutex<State>,
    finished: watch::Sender<u64>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; keep serving it.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// How scrapes get their sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refresh {
    /// Every scrape waits (at most `wait`) for a sample taken for it: for a backend that
    /// answers in microseconds (sysfs).
    Wait,
    /// Once a good sample exists, a scrape starts a refresh in the background (unless one is
    /// running) and answers at once from the last sample with its age: for a backend that takes
    /// seconds (rocm-smi). Only a scrape with no sample at all waits (at most `wait`). A
    /// collection running for longer than `overdue` is reported as a timeout.
    Background { overdue: Duration },
}

/// The backend's own thread and what scrapes read from it (the role `nvml_worker::NvmlWorker`
/// has in nvidia-exporter).
pub struct BackendWorker {
    backend: &'static str,
    shared: Arc<Shared>,
    requests: mpsc::Sender<()>,
    wait: Duration,
    refresh: Refresh,
}

impl BackendWorker {
    /// Starts the worker thread. `wait` is how long a scrape waits for a fresh sample.
    pub fn start(mut backend: impl Backend, wait: Duration, refresh: Refresh) -> Self {
        let name = backend.name();
        let (finished, _) = watch::channel(0u64);
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            finished,
        });
        let (requests, incoming) = mpsc::channel::<()>();
        let worker = shared.clone();
        let spawned = thread::Builder::new()
            .name(format!("{name}-worker"))
            .spawn(move || {
                while incoming.recv().is_ok() {
                    // A panic would leave the collection "in flight" for ever; report it instead.
                    let result =
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| backend.sample()))
                            .unwrap_or_else(|_| {
                                Err(Failure::new(Reason::Internal, "the backend panicked"))
                            });
                    record(&worker, name, result);
                }
            });
        if let Err(e) = spawned {
            // Without the thread every scrape reports a timeout; say why once.
            common::log::error(
                "cannot start the backend worker thread",
                &[("backend", name), ("err", &e.to_string())],
            );
        }
        BackendWorker {
            backend: name,
            shared,
            requests,
            wait,
            refresh,
        }
    }

    pub fn backend(&self) -> &'static str {
        self.backend
    }

    /// Starts a collection unless one is already running, then returns what the scrape gets:
    /// under [`Refresh::Wait`], or while there is no good sample yet, it waits for the
    /// collection at most `wait`; under [`Refresh::Background`] with a sample, at once.
    pub async fn read(&self) -> Reading {
        let started = Instant::now();
        let target = {
            let mut state = self.shared.lock();
            // The answer is what was there when the scrape came, before the refresh it starts.
            let answer = match self.refresh {
                Refresh::Background { overdue } if state.last_good.is_some() => {
                    Some(self.without_waiting(&state, started, overdue))
                }
                _ => None,
            };
            let target = match state.in_flight_since {
                Some(since) => Err((since, state.finished + 1)),
                None => {
                    state.in_flight_since = Some(started);
                    let target = state.finished + 1;
                    if self.requests.send(()).is_err() {
                        state.in_flight_since = None;
                    }
                    Ok(target)
                }
            };
            if let Some(answer) = answer {
                return answer;
            }
            target
        };
        let waited = match target {
            Ok(target) => self.wait_for(target).await.map_err(|()| {
                Failure::new(
                    Reason::Timeout,
                    format!(
                        "the {} collection did not finish within {:?}",
                        self.backend, self.wait
                    ),
                )
            }),
            // With nothing to serve, join the running collection rather than start another.
            Err((since, target)) if matches!(self.refresh, Refresh::Background { .. }) => self
                .wait_for(target)
                .await
                .map_err(|()| busy(self.backend, started, since)),
            Err((since, _)) => Err(busy(self.backend, started, since)),
        };
        let state = self.shared.lock();
        let (failure, current) = match waited {
            Ok(()) => (state.last_failure.clone(), true),
            Err(f) => (Some(f), false),
        };
        Reading {
            snapshot: state.last_good.as_ref().map(|(s, _)| s.clone()),
            taken: state.last_good.as_ref().map(|(_, t)| *t),
            failure,
            current,
            errors: state.errors.clone(),
            timeouts: state.timeouts,
        }
    }

    /// Waits at most `wait` for the collection numbered `target` to finish.
    async fn wait_for(&self, target: u64) -> Result<(), ()> {
        let mut finished = self.shared.finished.subscribe();
        let done = tokio::time::timeout(self.wait, finished.wait_for(|n| *n >= target)).await;
        match done {
            Ok(Ok(_)) => Ok(()),
            _ => Err(()),
        }
    }

    /// The last good sample with the outcome of the latest finished collection; a collection
    /// still running past `overdue` counts as a timeout (the child runner kills it before then,
    /// so this means the worker itself is wedged).
    fn without_waiting(&self, state: &State, now: Instant, overdue: Duration) -> Reading {
        let failure = match state.in_flight_since {
            Some(since) if now.saturating_duration_since(since) > overdue => Some(Failure::new(
                Reason::Timeout,
                format!(
                    "a {} collection started {:.1}s ago has not finished",
                    self.backend,
                    now.saturating_duration_since(since).as_secs_f64()
                ),
            )),
            _ => state.last_failure.clone(),
        };
        Reading {
            snapshot: state.last_good.as_ref().map(|(s, _)| s.clone()),
            taken: state.last_good.as_ref().map(|(_, t)| *t),
            failure,
            current: false,
            errors: state.errors.clone(),
            timeouts: state.timeouts,
        }
    }
}

fn busy(backend: &str, now: Instant, since: Instant) -> Failure {
    Failure::new(
        Reason::Busy,
        format!(
            "a {backend} collection started {:.1}s ago is still running; not starting another",
            now.saturating_duration_since(since).as_secs_f64()
        ),
    )
}

/// Stores a finished collection, logs when the outcome changes (one line per change, not one
/// per scrape), and wakes the waiting scrape.
fn record(shared: &Shared, backend: &str, result: Result<Snapshot, Failure>) {
    let finished = {
        let mut state = shared.lock();
        state.in_flight_since = None;
        state.finished += 1;
        let previous = state.last_failure.as_ref().map(|f| f.reason);
        match result {
            Ok(snapshot) => {
                if previous.is_some() {
                    common::log::info(
                        "collection recovered",
                        &[
                            ("backend", backend),
                            ("gpus", &snapshot.devices.len().to_string()),
                        ],
                    );
                }
                state.last_good = Some((Arc::new(snapshot), Instant::now()));
                state.last_failure = None;
            }
            Err(failure) => {
                if previous != Some(failure.reason) {
                    common::log::warn(
                        "collection failed; serving the last good sample if any",
                        &[
                            ("backend", backend),
                            ("reason", failure.reason.as_str()),
                            ("err", &failure.message),
                        ],
                    );
                }
                *state.errors.entry(failure.reason).or_default() += 1;
                if failure.reason == Reason::Timeout {
                    state.timeouts += 1;
                }
                state.last_failure = Some(failure);
            }
        }
        state.finished
    };
    shared.finished.send_replace(finished);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Device;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// One scripted outcome; `None` blocks until released.
    type Step = Option<Result<Snapshot, Failure>>;

    struct Scripted {
        steps: Arc<Mutex<Vec<Step>>>,
        release: Arc<Mutex<mpsc::Receiver<()>>>,
        calls: Arc<AtomicUsize>,
    }

    impl Scripted {
        /// A backend that answers with `steps` in turn, the sender that releases a `None`
        /// (held) step, and the count of its calls.
        fn new(steps: Vec<Step>) -> (Scripted, mpsc::Sender<()>, Arc<AtomicUsize>) {
            let (release_tx, release_rx) = mpsc::channel();
            let calls = Arc::new(AtomicUsize::new(0));
            let backend = Scripted {
                steps: Arc::new(Mutex::new(steps)),
                release: Arc::new(Mutex::new(release_rx)),
                calls: calls.clone(),
            };
            (backend, release_tx, calls)
        }
    }

    impl Backend for Scripted {
        fn name(&self) -> &'static str {
            "scripted"
        }
        fn sample(&mut self) -> Result<Snapshot, Failure> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let step = self.steps.lock().unwrap().remove(0);
            match step {
                Some(result) => result,
                None => {
                    let _ = self.release.lock().unwrap().recv();
                    Err(Failure::new(Reason::Timeout, "released"))
                }
            }
        }
    }

    fn one_gpu() -> Snapshot {
        Snapshot::new(
            vec![Device {
                id: "0000:03:00.0".into(),
                ..Default::default()
            }],
            String::new(),
        )
    }

    #[tokio::test]
    async fn stale_sample_with_age_and_at_most_one_collection() {
        let (backend, release_tx, calls) = Scripted::new(vec![
            Some(Ok(one_gpu())),
            None,
            Some(Err(Failure::new(Reason::BadOutput, "garbage"))),
        ]);
        let worker = BackendWorker::start(backend, Duration::from_millis(200), Refresh::Wait);

        let first = worker.read().await;
        assert!(first.is_fresh());
        assert_eq!(first.age_seconds(Instant::now()), Some(0.0));

        // The backend hangs: the scrape comes back after `wait` with the old sample.
        let second = worker.read().await;
        assert_eq!(second.failure.as_ref().unwrap().reason, Reason::Timeout);
        assert_eq!(second.snapshot.as_ref().unwrap().devices.len(), 1);
        assert!(second.age_seconds(Instant::now()).unwrap() >= 0.2);

        // Still hanging: no second collection is started.
        let third = worker.read().await;
        assert_eq!(third.failure.as_ref().unwrap().reason, Reason::Busy);
        assert_eq!(calls.load(Ordering::SeqCst), 2);

        release_tx.send(()).unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let fourth = worker.read().await;
        assert_eq!(fourth.failure.as_ref().unwrap().reason, Reason::BadOutput);
        assert_eq!(fourth.errors.get(&Reason::BadOutput), Some(&1));
        assert_eq!(fourth.errors.get(&Reason::Timeout), Some(&1));
        assert_eq!(fourth.timeouts, 1);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    struct Panicking(usize);
    impl Backend for Panicking {
        fn name(&self) -> &'static str {
            "panicking"
        }
        fn sample(&mut self) -> Result<Snapshot, Failure> {
            self.0 += 1;
            if self.0 == 1 {
                panic!("a bug");
            }
            Ok(one_gpu())
        }
    }

    #[tokio::test]
    async fn a_panicking_backend_is_reported_and_the_next_collection_runs() {
        let worker = BackendWorker::start(Panicking(0), Duration::from_secs(2), Refresh::Wait);
        let first = worker.read().await;
        assert_eq!(first.failure.unwrap().reason, Reason::Internal);
        assert!(worker.read().await.is_fresh());
    }

    #[tokio::test]
    async fn background_refresh_answers_at_once_with_the_last_sample_and_its_age() {
        let (backend, release_tx, calls) = Scripted::new(vec![
            Some(Ok(one_gpu())),
            None,
            Some(Err(Failure::new(Reason::BadOutput, "garbage"))),
        ]);
        let refresh = Refresh::Background {
            overdue: Duration::from_secs(60),
        };
        let worker = BackendWorker::start(backend, Duration::from_secs(5), refresh);

        // No sample yet: the first scrape waits for one.
        let first = worker.read().await;
        assert!(first.is_fresh());
        assert_eq!(first.age_seconds(Instant::now()), Some(0.0));
        tokio::time::sleep(Duration::from_millis(30)).await;

        // The next collection blocks; scrapes do not wait for it, keep up 1 (the last run
        // succeeded), report the real age, and never report busy nor start a second run.
        for _ in 0..3 {
            let started = Instant::now();
            let r = worker.read().await;
            assert!(started.elapsed() < Duration::from_millis(100));
            assert!(r.failure.is_none(), "{:?}", r.failure);
            assert!(r.age_seconds(Instant::now()).unwrap() >= 0.03);
            assert_eq!(r.snapshot.unwrap().devices.len(), 1);
        }
        // Give the worker time to pick up any (wrongly) queued request before counting.
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert_eq!(calls.load(Ordering::SeqCst), 2);

        // Once the blocked run finishes with a failure, scrapes say so, still at once.
        release_tx.send(()).unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let after = worker.read().await;
        assert_eq!(after.failure.unwrap().reason, Reason::Timeout);
        assert!(after.snapshot.is_some());
    }

    #[tokio::test]
    async fn background_refresh_reports_a_collection_past_overdue_as_a_timeout() {
        let (backend, _release_tx, _calls) = Scripted::new(vec![Some(Ok(one_gpu())), None]);
        let refresh = Refresh::Background {
            overdue: Duration::from_millis(100),
        };
        let worker = BackendWorker::start(backend, Duration::from_secs(5), refresh);
        assert!(worker.read().await.is_fresh());
        assert!(worker.read().await.failure.is_none());
        tokio::time::sleep(Duration::from_millis(150)).await;
        let wedged = worker.read().await;
        assert_eq!(wedged.failure.unwrap().reason, Reason::Timeout);
    }

    #[tokio::test]
    async fn without_a_sample_a_second_scrape_joins_the_running_collection() {
        let (backend, release_tx, calls) = Scripted::new(vec![None, Some(Ok(one_gpu()))]);
        let refresh = Refresh::Background {
            overdue: Duration::from_secs(60),
        };
        let worker = Arc::new(BackendWorker::start(
            backend,
            Duration::from_secs(5),
            refresh,
        ));
        let a = tokio::spawn({
            let s = worker.clone();
            async move { s.read().await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let b = tokio::spawn({
            let s = worker.clone();
            async move { s.read().await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        release_tx.send(()).unwrap();
        let (a, b) = (a.await.unwrap(), b.await.unwrap());
        // Both saw the end of the one run (which failed here), neither saw "busy".
        assert_eq!(a.failure.unwrap().reason, Reason::Timeout);
        assert_eq!(b.failure.unwrap().reason, Reason::Timeout);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
