//! The `model` labels of one upstream, bounded. A server lists whatever models it has (an attack
//! once listed 100,000 in Ollama's `/api/tags`: a 35 MB exposition), so each upstream keeps at most
//! `--upstream.max-models` names with a label of their own; further models are summed into
//! `model="other"`, as the proxy does beyond `--proxy.max-models`. A name no poll has listed for
//! [`FORGET_AFTER`] gives its place back, with its load and unload counters, so that names once
//! seen do not pile up. Names that normalize alike (`llama3` and `llama3:latest`, an empty name
//! and a blank one) are one model to the label: the first entry counts, never two series.
//!
//! Load and unload counts (Ollama's `/api/ps`, a llama-server router's model states) are kept
//! here too, by comparing the loaded set between polls.

use common::MetricFamily;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use tokio::time::Instant;

/// The label of every model beyond the cap.
pub const OTHER: &str = "other";

/// How long a name keeps its label after the last poll that listed it: long enough for an outage
/// or a model being re-pulled, short enough that a churning list does not fill the cap for good.
pub const FORGET_AFTER: Duration = Duration::from_secs(600);

pub struct ModelTracker {
    max: usize,
    /// Names with a label of their own, and when a poll last listed them.
    admitted: BTreeMap<String, Instant>,
    /// The loaded names at the previous poll; `None` before the first.
    loaded_before: Option<BTreeSet<String>>,
    loads: BTreeMap<String, u64>,
    unloads: BTreeMap<String, u64>,
}

/// One list's entries, one per name, split by label.
pub struct Split<'a, T> {
    /// Names with their own label, in name order.
    pub own: Vec<(&'a str, &'a T)>,
    /// Entries summed into `other`.
    pub other: Vec<&'a T>,
}

impl ModelTracker {
    pub fn new(max: usize) -> Self {
        ModelTracker {
            max: max.max(1),
            admitted: BTreeMap::new(),
            loaded_before: None,
            loads: BTreeMap::new(),
            unloads: BTreeMap::new(),
        }
    }

    /// Takes in one poll's names: those already labelled are marked seen, new ones get a label
    /// while there is room (loaded models first: they are the ones worth watching), and names
    /// unseen for [`FORGET_AFTER`] are dropped.
    pub fn observe<'a>(
        &mut self,
        loaded: impl IntoIterator<Item = &'a str>,
        listed: impl IntoIterator<Item = &'a str>,
        now: Instant,
    ) {
        let mut new: Vec<&str> = Vec::new();
        let mut new_listed: BTreeSet<&str> = BTreeSet::new();
        for name in loaded {
            match self.admitted.get_mut(name) {
                Some(seen) => *seen = now,
                None => new.push(name),
            }
        }
        for name in listed {
            match self.admitted.get_mut(name) {
                Some(seen) => *seen = now,
                None => {
                    new_listed.insert(name);
                }
            }
        }
        let stale: Vec<String> = self
            .admitted
            .iter()
            .filter(|(_, seen)| now.saturating_duration_since(**seen) >= FORGET_AFTER)
            .map(|(name, _)| name.clone())
            .collect();
        for name in stale {
            self.admitted.remove(&name);
            self.loads.remove(&name);
            self.unloads.remove(&name);
        }
        new.sort_unstable();
        new.extend(new_listed);
        for name in new {
            if self.admitted.len() >= self.max {
                break;
            }
            if name != OTHER {
                self.admitted.insert(name.to_string(), now);
            }
        }
    }

    /// The label of a name: itself when it has a place, else `other`.
    pub fn label<'a>(&self, name: &'a str) -> &'a str {
        if self.admitted.contains_key(name) {
            name
        } else {
            OTHER
        }
    }

    pub fn has_own_label(&self, name: &str) -> bool {
        self.admitted.contains_key(name)
    }

    /// One entry per name (the first one listed), split into labelled names and the rest.
    pub fn split<'a, T>(&self, entries: &'a [(String, T)]) -> Split<'a, T> {
        let mut own: BTreeMap<&str, &T> = BTreeMap::new();
        let mut other_names: BTreeSet<&str> = BTreeSet::new();
        let mut other = Vec::new();
        for (name, entry) in entries {
            if self.has_own_label(name) {
                own.entry(name.as_str()).or_insert(entry);
            } else if other_names.insert(name.as_str()) {
                other.push(entry);
            }
        }
        Split {
            own: own.into_iter().collect(),
            other,
        }
    }

    /// Counts the models that appeared in and left the loaded set since the previous poll.
    /// Call after [`ModelTracker::observe`] for the same poll.
    pub fn count_transitions(&mut self, loaded: BTreeSet<String>) {
        if let Some(before) = self.loaded_before.take() {
            for name in loaded.difference(&before) {
                let label = self.label(name).to_string();
                *self.loads.entry(label).or_insert(0) += 1;
            }
            for name in before.difference(&loaded) {
                let label = self.label(name).to_string();
                *self.unloads.entry(label).or_insert(0) += 1;
            }
        }
        self.loaded_before = Some(loaded);
    }

    /// `llm_model_loads_total` and `llm_model_unloads_total`: one series per labelled name (and
    /// `other` once it counted something), both present for each.
    pub fn counter_families(&self, upstream: &str) -> [MetricFamily; 2] {
        let mut loads = MetricFamily::counter(
            "llm_model_loads_total",
            "Times the exporter saw the model become loaded between two polls.",
        );
        let mut unloads = MetricFamily::counter(
            "llm_model_unloads_total",
            "Times the exporter saw the model stop being loaded between two polls.",
        );
        let mut names: BTreeSet<&str> = self.admitted.keys().map(String::as_str).collect();
        names.extend(self.loads.keys().map(String::as_str));
        names.extend(self.unloads.keys().map(String::as_str));
        for name in names {
            let labels = [("upstream", upstream), ("model", name)];
            let count = |m: &BTreeMap<String, u64>| *m.get(name).unwrap_or(&0) as f64;
            loads.push(&labels, count(&self.loads));
            unloads.push(&labels, count(&self.unloads));
        }
        [loads, unloads]
    }
}

/// `llm_model_loaded` for every model the server named: 1 or 0 for a labelled one, and for
/// `other` the number of its models loaded, so that sums over models stay true.
pub fn loaded_gauge(
    upstream: &str,
    tracker: &ModelTracker,
    all: &BTreeSet<&str>,
    loaded: &BTreeSet<String>,
) -> MetricFamily {
    let mut family = MetricFamily::gauge(
        "llm_model_loaded",
        "Whether the model is loaded in memory (1) or only installed (0); for model=\"other\", how many of the models beyond --upstream.max-models are loaded.",
    );
    let mut others: Option<f64> = None;
    for model in all {
        let value = if loaded.contains(*model) { 1.0 } else { 0.0 };
        if tracker.has_own_label(model) {
            family.push(&[("upstream", upstream), ("model", *model)], value);
        } else {
            *others.get_or_insert(0.0) += value;
        }
    }
    if let Some(value) = others {
        family.push(&[("upstream", upstream), ("model", OTHER)], value);
    }
    family
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize, prefix: &str) -> Vec<String> {
        (0..n).map(|i| format!("{prefix}{i:06}")).collect()
    }

    #[test]
    fn beyond_the_cap_names_are_other_and_loaded_ones_come_first() {
        let mut t = ModelTracker::new(3);
        let now = Instant::now();
        let listed = names(100_000, "m");
        t.observe(["z-loaded"], listed.iter().map(String::as_str), now);
        assert_eq!(t.label("z-loaded"), "z-loaded");
        assert_eq!(t.label("m000000"), "m000000");
        assert_eq!(t.label("m000001"), "m000001");
        assert_eq!(t.label("m000002"), OTHER);
        assert_eq!(t.label("m099999"), OTHER);
        // The cap holds across polls with ever new names.
        for round in 0..40 {
            let fresh = names(1000, &format!("r{round}-"));
            t.observe(
                fresh.iter().map(String::as_str),
                std::iter::empty(),
                now + Duration::from_secs(round),
            );
        }
        assert_eq!(t.admitted.len(), 3);
    }

    #[test]
    fn names_unseen_for_a_while_give_their_place_and_counters_back() {
        let mut t = ModelTracker::new(2);
        let start = Instant::now();
        t.observe(["a"], ["b"], start);
        t.count_transitions(["a".to_string()].into());
        t.observe(["b"], ["a"], start + Duration::from_secs(60));
        t.count_transitions(["b".to_string()].into());
        assert_eq!(t.loads.get("b"), Some(&1));
        assert_eq!(t.unloads.get("a"), Some(&1));
        // "a" disappears for good; "b" stays listed. "c" waits for a place.
        t.observe(["b"], ["c"], start + Duration::from_secs(120));
        assert_eq!(t.label("c"), OTHER);
        t.observe(["b"], ["c"], start + Duration::from_secs(60) + FORGET_AFTER);
        assert_eq!(t.label("a"), OTHER);
        assert_eq!(t.label("c"), "c");
        assert!(!t.unloads.contains_key("a"), "a's counters are forgotten");
        let [loads, _] = t.counter_families("u");
        let models: Vec<&str> = loads
            .samples
            .iter()
            .map(|s| s.labels[1].1.as_str())
            .collect();
        assert_eq!(models, ["b", "c"]);
    }

    #[test]
    fn transitions_of_unlabelled_names_count_as_other() {
        let mut t = ModelTracker::new(1);
        let now = Instant::now();
        t.observe(std::iter::empty(), ["a", "x", "y"], now);
        t.count_transitions(BTreeSet::new());
        t.observe(["x", "y"], ["a"], now);
        t.count_transitions(["x".to_string(), "y".to_string()].into());
        assert_eq!(t.loads.get(OTHER), Some(&2));
        let [loads, unloads] = t.counter_families("u");
        assert_eq!(loads.samples.len(), 2);
        assert_eq!(unloads.samples.len(), 2);
    }

    #[test]
    fn names_that_normalize_alike_are_one_entry() {
        let mut t = ModelTracker::new(1);
        t.observe(std::iter::empty(), ["a:latest", "b", "c"], Instant::now());
        let entries: Vec<(String, u32)> = vec![
            ("a:latest".into(), 1),
            ("a:latest".into(), 2),
            ("b".into(), 3),
            ("b".into(), 4),
            ("c".into(), 5),
        ];
        let split = t.split(&entries);
        assert_eq!(split.own, vec![("a:latest", &1)]);
        assert_eq!(split.other, vec![&3, &5]);
    }

    #[test]
    fn a_model_named_other_never_takes_a_place() {
        let mut t = ModelTracker::new(5);
        t.observe([OTHER], std::iter::empty(), Instant::now());
        assert!(!t.has_own_label(OTHER));
    }
}
