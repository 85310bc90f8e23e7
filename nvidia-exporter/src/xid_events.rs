//! XID errors, counted per GPU and XID code by a thread that waits on an NVML event set. It runs
//! beside the sampling worker so that an XID is seen when it happens, not at the next scrape,
//! and it keeps running whatever the scrapes do. Counts survive a driver reload.

use crate::snapshot::GpuIdentity;
use common::log;
use common::metrics::MetricFamily;
use nvml_wrapper::bitmasks::event::EventTypes;
use nvml_wrapper::enums::event::XidError;
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::{EventSet, Nvml};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

/// How long one wait on the event set lasts; bounds how late the thread notices it must stop.
const WAIT_MS: u32 = 250;

#[derive(Clone, Debug, PartialEq)]
pub struct XidRecord {
    pub count: u64,
    /// Unix time of the latest occurrence, in seconds.
    pub last_seen: f64,
}

/// XID occurrences by (GPU index, XID code), and which GPUs an event thread is watching now.
#[derive(Default)]
pub struct XidCounts {
    by_gpu_and_code: Mutex<BTreeMap<(u32, u64), XidRecord>>,
    /// GPU indices registered for XID events, by watcher. Keyed by watcher so that an old
    /// thread that exits late cannot clear what a newer session's thread watches.
    watched: Mutex<BTreeMap<u64, BTreeSet<u32>>>,
    next_watcher: AtomicU64,
}

impl XidCounts {
    fn set_watched(&self, watcher: u64, gpus: BTreeSet<u32>) {
        self.watched
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(watcher, gpus);
    }

    fn clear_watched(&self, watcher: u64) {
        self.watched
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&watcher);
    }

    /// GPUs whose XIDs are being watched right now. Only for these does "no XID" mean anything.
    pub fn watched(&self) -> BTreeSet<u32> {
        self.watched
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .flatten()
            .copied()
            .collect()
    }

    pub fn record(&self, gpu: u32, xid: u64) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        let mut map = self
            .by_gpu_and_code
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let entry = map.entry((gpu, xid)).or_insert(XidRecord {
            count: 0,
            last_seen: now,
        });
        entry.count += 1;
        entry.last_seen = now;
    }

    pub fn all(&self) -> BTreeMap<(u32, u64), XidRecord> {
        self.by_gpu_and_code
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The most recent XID per GPU (what `DCGM_FI_DEV_XID_ERRORS` reports): 0 for a watched GPU
    /// without one; a GPU nobody watches and that had none is left out, since "no XID" would be
    /// a claim nobody checked.
    pub fn last_per_watched_gpu(&self) -> BTreeMap<u32, u64> {
        let watched = self.watched();
        let mut last: BTreeMap<u32, (f64, u64)> =
            watched.iter().map(|&g| (g, (f64::MIN, 0))).collect();
        for ((gpu, xid), record) in self.all() {
            let e = last.entry(gpu).or_insert((record.last_seen, xid));
            if record.last_seen >= e.0 {
                *e = (record.last_seen, xid);
            }
        }
        last.into_iter().map(|(g, (_, x))| (g, x)).collect()
    }
}

/// The running event thread of one NVML session; dropping it asks the thread to stop (it is
/// not joined, so a wedged wait cannot block the worker) and stops reporting its GPUs as
/// watched at once.
pub struct XidWatcher {
    stop: Arc<AtomicBool>,
    id: u64,
    counts: Arc<XidCounts>,
}

impl Drop for XidWatcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        self.counts.clear_watched(self.id);
    }
}

/// Clears the thread's watched GPUs however it ends, a panic included.
struct WatchedGuard<'a> {
    counts: &'a XidCounts,
    id: u64,
}

impl Drop for WatchedGuard<'_> {
    fn drop(&mut self) {
        self.counts.clear_watched(self.id);
    }
}

impl XidWatcher {
    pub fn start(
        nvml: Arc<Nvml>,
        gpus: &[Arc<GpuIdentity>],
        counts: Arc<XidCounts>,
    ) -> Option<XidWatcher> {
        let stop = Arc::new(AtomicBool::new(false));
        let indices: Vec<u32> = gpus.iter().map(|g| g.index).collect();
        let flag = stop.clone();
        let id = counts.next_watcher.fetch_add(1, Ordering::Relaxed);
        let thread_counts = counts.clone();
        let (ready, registered) = std::sync::mpsc::channel::<()>();
        let spawned = std::thread::Builder::new()
            .name("nvml-xid-events".into())
            .spawn(move || {
                let _guard = WatchedGuard {
                    counts: &thread_counts,
                    id,
                };
                watch(&nvml, &indices, &thread_counts, &flag, id, ready)
            });
        match spawned {
            Ok(_) => {
                // The first sample should already know which GPUs are watched (where "no XID"
                // is a claim); registration takes microseconds, a wedged one is not waited for.
                let _ = registered.recv_timeout(REGISTRATION_WAIT);
                Some(XidWatcher { stop, id, counts })
            }
            Err(e) => {
                log::error(
                    "cannot start the XID event thread",
                    &[("err", &e.to_string())],
                );
                None
            }
        }
    }
}

/// How long starting a session waits for the XID thread to register its GPUs.
const REGISTRATION_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

/// Watches until `stop`; `ready` is dropped once the GPUs are registered or watching gave up.
fn watch(
    nvml: &Nvml,
    indices: &[u32],
    counts: &XidCounts,
    stop: &AtomicBool,
    id: u64,
    ready: std::sync::mpsc::Sender<()>,
) {
    // An EventSet's Drop calls nvmlEventSetFree unchecked (it panics when the symbol is missing).
    if nvml.lib().nvmlEventSetFree.is_err() {
        log::warn(
            "XID events unavailable: the library lacks nvmlEventSetFree",
            &[],
        );
        return;
    }
    // Without the wait nothing is watched; registering anyway would claim "no XID".
    if nvml.lib().nvmlEventSetWait_v2.is_err() {
        log::warn(
            "XID events unavailable: the library lacks nvmlEventSetWait_v2",
            &[],
        );
        return;
    }
    let Some((mut set, mut registered)) = register(nvml, indices) else {
        return;
    };
    if stop.load(Ordering::Acquire) {
        return;
    }
    counts.set_watched(id, registered.iter().map(|&(_, i)| i).collect());
    drop(ready);
    let mut warned = false;
    while !stop.load(Ordering::Acquire) {
        match set.wait(WAIT_MS) {
            Ok(event) => {
                let Some(XidError::Value(xid)) = event.event_data else {
                    continue;
                };
                // SAFETY: compared as a number only.
                let handle = unsafe { event.device.handle() } as usize;
                if let Some(&(_, index)) = registered.iter().find(|(h, _)| *h == handle) {
                    counts.record(index, xid);
                    log::warn(
                        "XID error",
                        &[("gpu", &index.to_string()), ("xid", &xid.to_string())],
                    );
                }
            }
            Err(NvmlError::Timeout) => {}
            Err(e @ NvmlError::FailedToLoadSymbol(_)) => {
                log::warn("XID events unavailable", &[("err", &e.to_string())]);
                return;
            }
            Err(e) if crate::nvml::ends_session(&e) => {
                // The worker starts a new thread with the next session.
                log::debug("XID event thread stopped", &[("err", &e.to_string())]);
                return;
            }
            Err(NvmlError::GpuLost) => {
                // A lost GPU can fail every wait on the set: watch the others in a new set
                // (registering the lost one fails, so it is left out).
                log::warn(
                    "a GPU watched for XID events is lost; watching the others",
                    &[],
                );
                let indices: Vec<u32> = registered.iter().map(|&(_, i)| i).collect();
                let Some((fresh, kept)) = register(nvml, &indices) else {
                    return;
                };
                if kept.len() == registered.len() {
                    // Nothing was left out: do not spin on a set that keeps failing.
                    std::thread::sleep(std::time::Duration::from_millis(u64::from(WAIT_MS)));
                }
                set = fresh;
                registered = kept;
                counts.set_watched(id, registered.iter().map(|&(_, i)| i).collect());
            }
            Err(e) => {
                if !warned {
                    log::warn("waiting for XID events failed", &[("err", &e.to_string())]);
                    warned = true;
                }
                std::thread::sleep(std::time::Duration::from_millis(u64::from(WAIT_MS)));
            }
        }
    }
}

/// An event set with XID events registered on every GPU of `indices` that supports them, and
/// the (handle, index) of those GPUs; `None` when no GPU could be registered.
fn register<'n>(nvml: &'n Nvml, indices: &[u32]) -> Option<(EventSet<'n>, Vec<(usize, u32)>)> {
    // Handles of the registered GPUs, to map an event back to its index without another call.
    let mut registered: Vec<(usize, u32)> = Vec::new();
    let mut set = match nvml.create_event_set() {
        Ok(set) => set,
        Err(e) => {
            log::warn("XID events unavailable", &[("err", &e.to_string())]);
            return None;
        }
    };
    for &index in indices {
        let Ok(device) = nvml.device_by_index(index) else {
            continue;
        };
        let supported = device
            .supported_event_types()
            .map(|t| t.contains(EventTypes::CRITICAL_XID_ERROR))
            .unwrap_or(false);
        if !supported {
            continue;
        }
        match device.register_events(EventTypes::CRITICAL_XID_ERROR, set) {
            Ok(s) => {
                set = s;
                // SAFETY: only compared as a number, never dereferenced.
                registered.push((unsafe { device.handle() } as usize, index));
            }
            Err(e) => {
                // A failed registration frees the set; start again with the GPUs that worked.
                log::warn(
                    "cannot watch XID events on a GPU",
                    &[("gpu", &index.to_string()), ("err", &e.to_string())],
                );
                set = nvml.create_event_set().ok()?;
                let mut kept = Vec::new();
                for &(handle, i) in &registered {
                    if let Ok(d) = nvml.device_by_index(i) {
                        if let Ok(s) = d.register_events(EventTypes::CRITICAL_XID_ERROR, set) {
                            set = s;
                            kept.push((handle, i));
                            continue;
                        }
                    }
                    set = nvml.create_event_set().ok()?;
                }
                registered = kept;
            }
        }
    }
    if registered.is_empty() {
        return None;
    }
    Some((set, registered))
}

/// `nvidia_xid_errors_total` and `nvidia_xid_last_timestamp_seconds` for every XID seen. Only
/// watched GPUs get events, and a count that was seen stays: a GPU lost after its XID 79 (fallen
/// off the bus) keeps the series the alert needs.
pub fn families(counts: &XidCounts, gpus: &[Arc<GpuIdentity>]) -> Vec<MetricFamily> {
    let mut total = MetricFamily::counter(
        "nvidia_xid_errors_total",
        "XID errors reported by the driver, by XID code.",
    );
    let mut last = MetricFamily::gauge(
        "nvidia_xid_last_timestamp_seconds",
        "Unix time of the latest XID error of this code.",
    );
    for ((gpu, xid), record) in counts.all() {
        let id = gpus
            .iter()
            .find(|g| g.index == gpu)
            .map(|g| g.id.as_str())
            .unwrap_or("");
        let gpu = gpu.to_string();
        let xid = xid.to_string();
        let labels = [("gpu", gpu.as_str()), ("id", id), ("xid", xid.as_str())];
        total.push(&labels, record.count as f64);
        last.push(&labels, record.last_seen);
    }
    vec![total, last]
}

/// Short descriptions of the most common XIDs, for dcgm-exporter's `err_msg` label.
pub fn description(xid: u64) -> &'static str {
    match xid {
        0 => "No Error",
        13 => "Graphics Engine Exception",
        31 => "GPU memory page fault",
        43 => "GPU stopped processing",
        45 => "Preemptive cleanup, due to previous errors",
        48 => "Double Bit ECC Error",
        61 => "Internal micro-controller breakpoint/warning",
        62 => "Internal micro-controller halt",
        63 => "ECC page retirement or row remapping recording event",
        64 => "ECC page retirement or row remapper recording failure",
        68 => "NVDEC0 Exception",
        69 => "Graphics Engine class error",
        74 => "NVLINK Error",
        79 => "GPU has fallen off the bus",
        92 => "High single-bit ECC error rate",
        94 => "Contained ECC error",
        95 => "Uncontained ECC error",
        109 => "Context Switch Timeout Error",
        119 => "GSP RPC Timeout",
        120 => "GSP Error",
        _ => "Unknown Error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_the_latest_xid_per_gpu() {
        let counts = XidCounts::default();
        counts.record(0, 13);
        counts.record(0, 13);
        std::thread::sleep(std::time::Duration::from_millis(2));
        counts.record(0, 79);
        counts.record(2, 48);
        let all = counts.all();
        assert_eq!(all[&(0, 13)].count, 2);
        assert_eq!(all[&(0, 79)].count, 1);
        let unwatched = XidCounts::default();
        unwatched.record(3, 31);
        // Nobody watches: no GPU may claim "no XID", but an XID seen is reported.
        assert_eq!(unwatched.last_per_watched_gpu(), [(3, 31)].into());
        assert!(XidCounts::default().last_per_watched_gpu().is_empty());
        assert!(families(&XidCounts::default(), &[])
            .iter()
            .all(|f| f.is_empty()));
        counts.set_watched(7, [0, 1, 2].into());
        let last = counts.last_per_watched_gpu();
        assert_eq!(last.get(&0), Some(&79));
        assert_eq!(last.get(&2), Some(&48));
        assert_eq!(last.get(&1), Some(&0), "watched without an XID");
        // Another watcher ending does not clear this one's GPUs; this one ending does.
        counts.clear_watched(8);
        assert_eq!(counts.watched().len(), 3);
        // Once unwatched (the GPU lost, the session over), the XIDs seen stay; the GPU without
        // one drops out.
        counts.clear_watched(7);
        assert_eq!(counts.last_per_watched_gpu(), [(0, 79), (2, 48)].into());
        assert_eq!(families(&counts, &[])[0].samples.len(), 3);
        assert_eq!(description(79), "GPU has fallen off the bus");
        assert_eq!(description(0), "No Error");
    }
}
