//! The collector trait and the per-scrape runner: every enabled collector runs concurrently
//! under a deadline, a failing or slow one costs only its own series, and each reports
//! `<exporter>_collector_success` and `<exporter>_collector_duration_seconds`. A collector's
//! name is its exporter's business: the spec ([`crate::cli::CollectorSpec`]) holds it and hands
//! it over with the collector, so no type here carries one of its own.

use crate::log;
use crate::metrics::MetricFamily;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

pub type CollectResult = anyhow::Result<Vec<MetricFamily>>;
pub type CollectFuture<'a> = Pin<Box<dyn Future<Output = CollectResult> + Send + 'a>>;

/// A source of metrics that does its own I/O asynchronously (HTTP to a model server, a call
/// into a worker thread).
pub trait Collector: Send + Sync + 'static {
    fn collect(&self) -> CollectFuture<'_>;
}

/// A source of metrics that reads files or makes syscalls that may block (procfs, sysfs,
/// statvfs). It runs on a blocking thread so that a stuck read cannot hold up the scrape.
pub trait BlockingCollector: Send + Sync + 'static {
    fn collect(&self) -> CollectResult;
}

/// A collector of either kind, as a spec's constructor returns it.
pub enum AnyCollector {
    Async(Arc<dyn Collector>),
    Blocking(Arc<dyn BlockingCollector>),
}

impl AnyCollector {
    pub fn asynchronous(collector: impl Collector) -> Self {
        AnyCollector::Async(Arc::new(collector))
    }

    pub fn blocking(collector: impl BlockingCollector) -> Self {
        AnyCollector::Blocking(Arc::new(collector))
    }
}

struct Entry {
    name: &'static str,
    kind: AnyCollector,
    /// Set while a blocking collection is running: a scrape that arrives meanwhile (a second
    /// Prometheus of an HA pair, a curl) waits for that collection and gets a copy of its result
    /// instead of starting another. One that outlives its deadline keeps it set (a thread stuck
    /// in a syscall cannot be stopped), so later scrapes wait up to their own deadline and report
    /// failure instead of stacking more stuck threads. Async collections are cancelled at their
    /// deadline and may overlap: those collectors coalesce their own work.
    running: Arc<Mutex<Option<Running>>>,
}

/// Where scrapes that arrive during a blocking collection get its outcome.
type Running = watch::Receiver<Option<Arc<SharedOutcome>>>;

/// A finished collection as later arrivals receive it: errors as text, because
/// `anyhow::Error` cannot be cloned.
struct SharedOutcome {
    result: Result<Vec<MetricFamily>, String>,
}

/// Which collectors one scrape asks for: node_exporter's `collect[]` / `exclude[]` parameters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Selection {
    #[default]
    All,
    Only(Vec<String>),
    Except(Vec<String>),
}

/// The enabled collectors of one exporter, in the order of its spec.
pub struct Collectors {
    prefix: String,
    entries: Vec<Entry>,
}

impl Collectors {
    /// `prefix` is the exporter's metric prefix, e.g. `host_exporter`.
    pub fn new(prefix: &str) -> Self {
        Collectors {
            prefix: prefix.to_string(),
            entries: Vec::new(),
        }
    }

    /// Builds every enabled collector of `spec` from `context`, in the spec's order, each under
    /// the spec's name for it.
    pub fn from_spec<C>(
        spec: &crate::cli::ExporterSpec<C>,
        enabled: &crate::cli::Enabled,
        context: &C,
    ) -> Self {
        let mut collectors = Collectors::new(spec.collector_metrics_prefix);
        for collector in spec.collectors {
            if enabled.contains(collector.name) {
                collectors.add(collector.name, (collector.new)(context));
            }
        }
        collectors
    }

    /// Adds `collector` under `name`, which must be new (the spec's names are checked for
    /// duplicates when the flags are parsed).
    pub fn add(&mut self, name: &'static str, collector: AnyCollector) {
        assert!(
            !self.entries.iter().any(|e| e.name == name),
            "collector {name} added twice"
        );
        self.entries.push(Entry {
            name,
            kind: collector,
            running: Arc::new(Mutex::new(None)),
        });
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.entries.iter().map(|e| e.name).collect()
    }

    /// Checks a selection against the enabled collectors; the error names the unknown ones.
    pub fn check_selection(&self, selection: &Selection) -> Result<(), String> {
        let listed = match selection {
            Selection::All => return Ok(()),
            Selection::Only(names) | Selection::Except(names) => names,
        };
        let unknown: Vec<&str> = listed
            .iter()
            .filter(|n| !self.entries.iter().any(|e| e.name == n.as_str()))
            .map(String::as_str)
            .collect();
        if unknown.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "unknown or disabled collector(s): {}",
                unknown.join(", ")
            ))
        }
    }

    /// Runs the selected collectors and returns their families merged by name and sorted,
    /// followed by the per-collector success and duration series.
    ///
    /// Async collectors each get a task. Blocking collectors share worker threads: one worker
    /// takes them in turn from a queue, and whenever no result has arrived for `STALL`, another
    /// worker joins, so a stuck collector delays only itself. One thread hand-off per scrape
    /// instead of one per collector keeps a scrape cheap.
    pub async fn collect(&self, selection: &Selection, deadline: Duration) -> Vec<MetricFamily> {
        let started = Instant::now();
        let selected: Vec<&Entry> = self
            .entries
            .iter()
            .filter(|entry| match selection {
                Selection::All => true,
                Selection::Only(names) => names.iter().any(|n| n == entry.name),
                Selection::Except(names) => !names.iter().any(|n| n == entry.name),
            })
            .collect();
        let mut outcomes: Vec<Option<(Duration, CollectResult)>> =
            selected.iter().map(|_| None).collect();

        let done = Arc::new(Finished::default());
        let mut queue: VecDeque<BlockingJob> = VecDeque::new();
        for (index, entry) in selected.iter().enumerate() {
            match &entry.kind {
                AnyCollector::Async(collector) => {
                    spawn_async(index, collector.clone(), deadline, done.clone())
                }
                AnyCollector::Blocking(collector) => {
                    let mut running = lock(&entry.running);
                    match &*running {
                        Some(outcome) => {
                            spawn_waiter(index, outcome.clone(), deadline, done.clone())
                        }
                        None => {
                            let (share, outcome) = watch::channel(None);
                            *running = Some(outcome);
                            queue.push_back(BlockingJob {
                                index,
                                collector: collector.clone(),
                                running: entry.running.clone(),
                                share,
                            });
                        }
                    }
                }
            }
        }
        let queue = Arc::new(Mutex::new(queue));
        let unstarted = DropUnstarted(queue.clone());
        if !lock(&queue).is_empty() {
            spawn_worker(queue.clone(), done.clone());
        }

        let mut pending = outcomes.iter().filter(|o| o.is_none()).count();
        while pending > 0 {
            let remaining = deadline.saturating_sub(started.elapsed());
            if remaining.is_zero() {
                break;
            }
            let woken = tokio::time::timeout(remaining.min(STALL), done.notify.notified()).await;
            for (index, elapsed, result) in lock(&done.results).drain(..) {
                outcomes[index] = Some((elapsed, result));
                pending -= 1;
            }
            if woken.is_err() && !lock(&queue).is_empty() {
                spawn_worker(queue.clone(), done.clone());
            }
        }
        drop(unstarted);

        let mut families: Vec<MetricFamily> = Vec::new();
        let mut duration = MetricFamily::gauge(
            format!("{}_collector_duration_seconds", self.prefix),
            "Duration of a collector scrape.",
        );
        let mut success = MetricFamily::gauge(
            format!("{}_collector_success", self.prefix),
            "Whether a collector succeeded.",
        );
        for (entry, outcome) in selected.iter().zip(outcomes) {
            let (elapsed, result) =
                outcome.unwrap_or_else(|| (started.elapsed(), Err(timeout_error(deadline))));
            let ok = match result {
                Ok(collected) => {
                    families.extend(collected.into_iter().filter(|f| !f.samples.is_empty()));
                    true
                }
                Err(err) => {
                    log::error(
                        "collector failed",
                        &[("collector", entry.name), ("err", &format!("{err:#}"))],
                    );
                    false
                }
            };
            duration.push(&[("collector", entry.name)], elapsed.as_secs_f64());
            success.push(&[("collector", entry.name)], if ok { 1.0 } else { 0.0 });
        }
        let mut families = merge_families(families);
        // The health series are the runner's own: a collector's family of the same name (a
        // file of the textfile collector can name anything) would make the name appear twice.
        families.retain(|f| {
            let own = f.name == duration.name || f.name == success.name;
            if own {
                log::error(
                    "dropping a collected family that has the name of a health series",
                    &[("family", &f.name)],
                );
            }
            !own
        });
        families.push(duration);
        families.push(success);
        families
    }
}

/// Collectors that never got a thread before the scrape ended must not run late, and must not
/// stay marked as running: dropped when the scrape ends, at its deadline or because its future
/// was dropped (a client that left mid-scrape), this empties the queue and clears their marks.
/// Scrapes waiting for them see the channel close and report it.
struct DropUnstarted(Arc<Mutex<VecDeque<BlockingJob>>>);

impl Drop for DropUnstarted {
    fn drop(&mut self) {
        for job in lock(&self.0).drain(..) {
            lock(&job.running).take();
        }
    }
}

/// How long the runner waits for the next blocking result before adding a worker thread.
const STALL: Duration = Duration::from_millis(50);

/// Results handed back by workers and async tasks. Workers wake the runner only when they run
/// out of work, not after every collector: one wake-up per scrape instead of one per collector.
#[derive(Default)]
struct Finished {
    results: Mutex<Vec<(usize, Duration, CollectResult)>>,
    notify: tokio::sync::Notify,
}

struct BlockingJob {
    index: usize,
    collector: Arc<dyn BlockingCollector>,
    running: Arc<Mutex<Option<Running>>>,
    share: watch::Sender<Option<Arc<SharedOutcome>>>,
}

impl BlockingJob {
    /// Marks the collector idle and hands a copy of the result to the scrapes that waited for
    /// it. Copies are made only when someone waits: the entry's receiver is dropped first,
    /// under its lock, so the receivers left are exactly the waiters.
    fn finish(self, elapsed: Duration, result: CollectResult, done: &Finished) {
        lock(&self.running).take();
        if self.share.receiver_count() > 0 {
            let result = match &result {
                Ok(families) => Ok(families.clone()),
                Err(err) => Err(format!("{err:#}")),
            };
            self.share
                .send_replace(Some(Arc::new(SharedOutcome { result })));
        }
        lock(&done.results).push((self.index, elapsed, result));
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A worker thread that runs queued blocking collectors until the queue is empty.
fn spawn_worker(queue: Arc<Mutex<VecDeque<BlockingJob>>>, done: Arc<Finished>) {
    tokio::task::spawn_blocking(move || loop {
        let Some(job) = lock(&queue).pop_front() else {
            done.notify.notify_one();
            return;
        };
        let began = Instant::now();
        let result =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job.collector.collect()))
                .unwrap_or_else(|panic| {
                    Err(anyhow::anyhow!(
                        "collector panicked: {}",
                        panic_message(panic.as_ref())
                    ))
                });
        job.finish(began.elapsed(), result, &done);
    });
}

/// A scrape that found its collector already running: waits, up to its own deadline, for that
/// collection's outcome and takes a copy of it.
fn spawn_waiter(index: usize, mut outcome: Running, deadline: Duration, done: Arc<Finished>) {
    tokio::spawn(async move {
        let began = Instant::now();
        let wait = async {
            loop {
                if let Some(shared) = outcome.borrow_and_update().clone() {
                    return shared.result.clone().map_err(anyhow::Error::msg);
                }
                if outcome.changed().await.is_err() {
                    return match outcome.borrow().clone() {
                        Some(shared) => shared.result.clone().map_err(anyhow::Error::msg),
                        None => Err(anyhow::anyhow!(
                            "the collection this scrape waited for was cancelled at its deadline"
                        )),
                    };
                }
            }
        };
        let result = match tokio::time::timeout(deadline, wait).await {
            Ok(result) => result,
            Err(_) => Err(anyhow::anyhow!(
                "timed out after {:.3}s waiting for the collection a previous scrape started",
                deadline.as_secs_f64()
            )),
        };
        lock(&done.results).push((index, began.elapsed(), result));
        done.notify.notify_one();
    });
}

/// An async collector in its own task, under the deadline; a panic is caught by the join.
fn spawn_async(
    index: usize,
    collector: Arc<dyn Collector>,
    deadline: Duration,
    done: Arc<Finished>,
) {
    tokio::spawn(async move {
        let began = Instant::now();
        let inner = tokio::spawn(async move { collector.collect().await });
        let abort = inner.abort_handle();
        let result = match tokio::time::timeout(deadline, inner).await {
            Ok(Ok(result)) => result,
            Ok(Err(join_error)) => Err(anyhow::anyhow!("collector task failed: {join_error}")),
            Err(_) => {
                abort.abort();
                Err(timeout_error(deadline))
            }
        };
        lock(&done.results).push((index, began.elapsed(), result));
        done.notify.notify_one();
    });
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

fn timeout_error(deadline: Duration) -> anyhow::Error {
    anyhow::anyhow!("timed out after {:.3}s", deadline.as_secs_f64())
}

/// Sorts the families by name and joins those that two collectors both emitted, so that each
/// family appears once in the output, as both formats require. Joined samples keep the order of
/// the collectors. Indices are sorted rather than the families themselves (large structs) or a
/// map keyed by a copy of each name.
///
/// Files passed through (host-exporter's textfile collector) can name any family, so a join
/// follows client_golang's registry, whose rules node_exporter's users know: the first family of
/// a name, in collector order, sets its type and help; a later one that differs in either is
/// dropped whole, and a later sample with a label set already present is dropped. Each drop is
/// logged.
fn merge_families(families: Vec<MetricFamily>) -> Vec<MetricFamily> {
    let mut order: Vec<usize> = (0..families.len()).collect();
    order.sort_unstable_by(|&a, &b| families[a].name.cmp(&families[b].name).then(a.cmp(&b)));
    let mut slots: Vec<Option<MetricFamily>> = families.into_iter().map(Some).collect();
    let mut merged: Vec<MetricFamily> = Vec::with_capacity(slots.len());
    for index in order {
        let Some(family) = slots[index].take() else {
            continue;
        };
        match merged.last_mut() {
            Some(last) if last.name == family.name => join_family(last, family),
            _ => merged.push(family),
        }
    }
    merged
}

/// Adds `from`'s samples to `into` (same name) under the rules of [`merge_families`].
fn join_family(into: &mut MetricFamily, from: MetricFamily) {
    if into.kind != from.kind || into.help != from.help {
        log::error(
            "dropping a family that an earlier collector emits with another type or help",
            &[
                ("family", &from.name),
                ("type", &format!("{:?}", from.kind)),
                ("earlier_type", &format!("{:?}", into.kind)),
            ],
        );
        return;
    }
    let key = |s: &crate::metrics::Sample| {
        let mut pairs: Vec<(String, String)> = s
            .labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        pairs.sort();
        pairs
    };
    let mut seen: std::collections::HashSet<Vec<(String, String)>> =
        into.samples.iter().map(key).collect();
    for sample in from.samples {
        if seen.insert(key(&sample)) {
            into.samples.push(sample);
        } else {
            log::error(
                "dropping a sample collected before with the same name and labels",
                &[
                    ("family", &from.name),
                    ("labels", &format!("{:?}", sample.labels)),
                ],
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn families_are_sorted_and_each_name_appears_once_with_samples_in_collector_order() {
        let gauge = |name: &str, from: &str| {
            MetricFamily::gauge(name.to_string(), "h").with(&[("from", from)], 1.0)
        };
        let merged = merge_families(vec![
            gauge("z_last", "a"),
            gauge("m_shared", "a"),
            gauge("b_first", "b"),
            gauge("m_shared", "b"),
            gauge("m_shared", "c"),
        ]);
        let names: Vec<&str> = merged.iter().map(|f| &*f.name).collect();
        assert_eq!(names, ["b_first", "m_shared", "z_last"]);
        let froms: Vec<&str> = merged[1]
            .samples
            .iter()
            .map(|s| s.labels[0].1.as_str())
            .collect();
        assert_eq!(froms, ["a", "b", "c"]);
    }

    #[test]
    fn a_later_family_with_another_type_or_help_and_repeated_label_sets_are_dropped() {
        let merged = merge_families(vec![
            MetricFamily::gauge("m", "h")
                .with(&[("a", "1")], 1.0)
                .with(&[("a", "2")], 2.0),
            // Another type: dropped whole.
            MetricFamily::counter("m", "h").with(&[("a", "3")], 3.0),
            // Another help: dropped whole.
            MetricFamily::gauge("m", "other").with(&[("a", "4")], 4.0),
            // Same type and help: joined, but the label set a=2 is there already.
            MetricFamily::gauge("m", "h")
                .with(&[("a", "2")], 20.0)
                .with(&[("a", "5")], 5.0),
        ]);
        assert_eq!(merged.len(), 1);
        let values: Vec<f64> = merged[0].samples.iter().map(|s| s.value).collect();
        assert_eq!(values, [1.0, 2.0, 5.0]);
        assert_eq!(merged[0].kind, crate::MetricType::Gauge);
    }

    struct Fixed(&'static str, f64);
    impl BlockingCollector for Fixed {
        fn collect(&self) -> CollectResult {
            Ok(vec![
                MetricFamily::gauge("demo_value", "A value.").with(&[("from", self.0)], self.1)
            ])
        }
    }

    struct Failing;
    impl BlockingCollector for Failing {
        fn collect(&self) -> CollectResult {
            anyhow::bail!("cannot read /nowhere")
        }
    }

    /// Sleeps, counting its calls.
    struct Sleeping(Duration, Arc<AtomicUsize>);
    impl BlockingCollector for Sleeping {
        fn collect(&self) -> CollectResult {
            self.1.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(self.0);
            Ok(vec![])
        }
    }

    /// An async collector that waits, counting the calls running at once.
    struct Waiting(Duration, Arc<AtomicUsize>, Arc<AtomicUsize>);
    impl Collector for Waiting {
        fn collect(&self) -> CollectFuture<'_> {
            Box::pin(async move {
                let now = self.1.fetch_add(1, Ordering::SeqCst) + 1;
                self.2.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(self.0).await;
                self.1.fetch_sub(1, Ordering::SeqCst);
                Ok(vec![
                    MetricFamily::gauge("demo_value", "A value.").with(&[("from", "waiting")], 1.0)
                ])
            })
        }
    }

    struct Panicking;
    impl Collector for Panicking {
        fn collect(&self) -> CollectFuture<'_> {
            Box::pin(async { panic!("boom") })
        }
    }

    fn value(families: &[MetricFamily], name: &str, label: &str) -> Option<f64> {
        families
            .iter()
            .find(|f| f.name == name)?
            .samples
            .iter()
            .find(|s| s.labels.iter().any(|(_, v)| v == label))
            .map(|s| s.value)
    }

    /// Emits a family with the name of the runner's success series.
    struct Impostor;
    impl BlockingCollector for Impostor {
        fn collect(&self) -> CollectResult {
            Ok(vec![MetricFamily::gauge("demo_collector_success", "Fake.")
                .with(&[("collector", "nothing")], 1.0)])
        }
    }

    #[tokio::test]
    async fn a_collected_family_named_like_a_health_series_is_dropped() {
        let mut collectors = Collectors::new("demo");
        collectors.add("impostor", AnyCollector::blocking(Impostor));
        let families = collectors
            .collect(&Selection::All, Duration::from_secs(5))
            .await;
        let named: Vec<&MetricFamily> = families
            .iter()
            .filter(|f| f.name == "demo_collector_success")
            .collect();
        assert_eq!(named.len(), 1, "{families:?}");
        assert_eq!(named[0].help, "Whether a collector succeeded.");
        assert_eq!(value(&families, "demo_collector_success", "nothing"), None);
    }

    #[tokio::test]
    async fn failures_slowness_and_panics_cost_only_their_own_series() {
        let mut collectors = Collectors::new("demo");
        collectors.add("a", AnyCollector::blocking(Fixed("a", 1.0)));
        collectors.add("failing", AnyCollector::blocking(Failing));
        let sleeps = Arc::new(AtomicUsize::new(0));
        collectors.add(
            "sleeping",
            AnyCollector::blocking(Sleeping(Duration::from_secs(3), sleeps.clone())),
        );
        collectors.add("panicking", AnyCollector::asynchronous(Panicking));
        collectors.add("b", AnyCollector::blocking(Fixed("b", 2.0)));

        let started = Instant::now();
        let families = collectors
            .collect(&Selection::All, Duration::from_millis(600))
            .await;
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "deadline not applied"
        );

        assert_eq!(value(&families, "demo_value", "a"), Some(1.0));
        assert_eq!(value(&families, "demo_value", "b"), Some(2.0));
        for (name, expected) in [
            ("a", 1.0),
            ("failing", 0.0),
            ("sleeping", 0.0),
            ("panicking", 0.0),
            ("b", 1.0),
        ] {
            assert_eq!(
                value(&families, "demo_collector_success", name),
                Some(expected),
                "{name}"
            );
        }

        // The stuck collector is still running: the next scrape must not start another.
        let again = collectors
            .collect(
                &Selection::Only(vec!["sleeping".into()]),
                Duration::from_millis(200),
            )
            .await;
        assert_eq!(
            value(&again, "demo_collector_success", "sleeping"),
            Some(0.0)
        );
        assert_eq!(
            sleeps.load(Ordering::SeqCst),
            1,
            "a second stuck thread was started"
        );
    }

    #[tokio::test]
    async fn a_scrape_during_a_blocking_collection_shares_its_result() {
        let runs = Arc::new(AtomicUsize::new(0));
        let mut collectors = Collectors::new("demo");
        collectors.add(
            "sleeping",
            AnyCollector::blocking(Sleeping(Duration::from_millis(300), runs.clone())),
        );
        collectors.add("failing", AnyCollector::blocking(Failing));
        collectors.add("a", AnyCollector::blocking(Fixed("a", 1.0)));
        let collectors = Arc::new(collectors);
        let scrape = |c: Arc<Collectors>| async move {
            c.collect(&Selection::All, Duration::from_secs(5)).await
        };
        // Two scrapes at once, as an HA pair of Prometheus servers makes them.
        let first = tokio::spawn(scrape(collectors.clone()));
        tokio::time::sleep(Duration::from_millis(50)).await;
        let second = scrape(collectors.clone()).await;
        let first = first.await.unwrap();
        for families in [&first, &second] {
            assert_eq!(
                value(families, "demo_collector_success", "sleeping"),
                Some(1.0)
            );
            assert_eq!(value(families, "demo_collector_success", "a"), Some(1.0));
            assert_eq!(value(families, "demo_value", "a"), Some(1.0));
            assert_eq!(
                value(families, "demo_collector_success", "failing"),
                Some(0.0)
            );
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1, "the collection ran twice");
        // Once it has finished, the next scrape runs it again.
        let third = scrape(collectors.clone()).await;
        assert_eq!(
            value(&third, "demo_collector_success", "sleeping"),
            Some(1.0)
        );
        assert_eq!(runs.load(Ordering::SeqCst), 2);
    }

    /// A second blocking collector, queued behind one that blocks.
    struct Quick;
    impl BlockingCollector for Quick {
        fn collect(&self) -> CollectResult {
            Ok(vec![
                MetricFamily::gauge("demo_value", "A value.").with(&[("from", "quick")], 1.0)
            ])
        }
    }

    #[tokio::test]
    async fn a_scrape_dropped_midway_leaves_no_collector_marked_running() {
        let blocked = Arc::new(AtomicUsize::new(0));
        let mut collectors = Collectors::new("demo");
        collectors.add(
            "sleeping",
            AnyCollector::blocking(Sleeping(Duration::from_secs(3), blocked)),
        );
        collectors.add("quick", AnyCollector::blocking(Quick));
        // The scrape's future is dropped while its only worker is stuck and `quick` is queued
        // (hyper drops it when the client leaves).
        let dropped = tokio::time::timeout(
            Duration::from_millis(20),
            collectors.collect(&Selection::All, Duration::from_secs(5)),
        )
        .await;
        assert!(dropped.is_err());
        let again = collectors
            .collect(
                &Selection::Only(vec!["quick".into()]),
                Duration::from_millis(500),
            )
            .await;
        assert_eq!(value(&again, "demo_collector_success", "quick"), Some(1.0));
        assert_eq!(value(&again, "demo_value", "quick"), Some(1.0));
    }

    #[tokio::test]
    async fn async_collections_of_two_scrapes_overlap() {
        let (running, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let mut collectors = Collectors::new("demo");
        collectors.add(
            "waiting",
            AnyCollector::asynchronous(Waiting(Duration::from_millis(300), running, most.clone())),
        );
        let collectors = Arc::new(collectors);
        let first = tokio::spawn({
            let c = collectors.clone();
            async move { c.collect(&Selection::All, Duration::from_secs(5)).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let second = collectors
            .collect(&Selection::All, Duration::from_secs(5))
            .await;
        let first = first.await.unwrap();
        // A second Prometheus scraping while the first collection runs gets data too.
        for families in [&first, &second] {
            assert_eq!(
                value(families, "demo_collector_success", "waiting"),
                Some(1.0)
            );
            assert_eq!(value(families, "demo_value", "waiting"), Some(1.0));
        }
        assert_eq!(most.load(Ordering::SeqCst), 2);
    }

    /// The context of a demo exporter: the value each `Fixed` reports.
    struct Values {
        a: f64,
        b: f64,
    }

    static DEMO: crate::cli::ExporterSpec<Values> = crate::cli::ExporterSpec {
        name: "demo-exporter",
        metric_prefix: "demo",
        collector_metrics_prefix: "demo",
        about: "Demo",
        default_port: 0,
        collectors: &[
            crate::cli::CollectorSpec {
                name: "b",
                default_enabled: true,
                help: "b",
                new: |values| AnyCollector::blocking(Fixed("b", values.b)),
            },
            crate::cli::CollectorSpec {
                name: "off",
                default_enabled: false,
                help: "never built",
                new: |_| panic!("a disabled collector was built"),
            },
            crate::cli::CollectorSpec {
                name: "a",
                default_enabled: true,
                help: "a",
                new: |values| AnyCollector::blocking(Fixed("a", values.a)),
            },
        ],
    };

    #[tokio::test]
    async fn the_spec_names_and_builds_the_enabled_collectors_in_its_order() {
        let on = ["b", "a"];
        let enabled = crate::cli::Enabled::new(&DEMO, &on);
        let collectors = Collectors::from_spec(&DEMO, &enabled, &Values { a: 1.0, b: 2.0 });
        assert_eq!(collectors.names(), ["b", "a"]);
        let families = collectors
            .collect(&Selection::All, Duration::from_secs(5))
            .await;
        assert_eq!(value(&families, "demo_value", "a"), Some(1.0));
        assert_eq!(value(&families, "demo_value", "b"), Some(2.0));
        let labels: Vec<&str> = families
            .iter()
            .find(|f| f.name == "demo_collector_success")
            .unwrap()
            .samples
            .iter()
            .map(|s| s.labels[0].1.as_str())
            .collect();
        assert_eq!(labels, ["b", "a"]);
    }

    #[test]
    #[should_panic(expected = "no collector named")]
    fn asking_whether_an_unknown_collector_is_enabled_is_a_bug() {
        crate::cli::Enabled::new(&DEMO, &["a"]).contains("c");
    }

    #[tokio::test]
    async fn selection_filters_and_rejects_unknown_names() {
        let mut collectors = Collectors::new("demo");
        collectors.add("a", AnyCollector::blocking(Fixed("a", 1.0)));
        collectors.add("b", AnyCollector::blocking(Fixed("b", 2.0)));
        let only_a = collectors
            .collect(&Selection::Only(vec!["a".into()]), Duration::from_secs(1))
            .await;
        assert_eq!(value(&only_a, "demo_value", "a"), Some(1.0));
        assert_eq!(value(&only_a, "demo_value", "b"), None);
        let not_a = collectors
            .collect(&Selection::Except(vec!["a".into()]), Duration::from_secs(1))
            .await;
        assert_eq!(value(&not_a, "demo_value", "a"), None);
        assert_eq!(value(&not_a, "demo_value", "b"), Some(2.0));
        assert!(collectors
            .check_selection(&Selection::Only(vec!["zzz".into()]))
            .unwrap_err()
            .contains("zzz"));
    }
}
