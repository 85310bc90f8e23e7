//! The in-memory shape of what an exporter serves: families of samples, built fresh on each
//! scrape. Kept deliberately small so that the encoders in `encode.rs` can write both the
//! Prometheus text format and OpenMetrics from it without a registry in between.

/// The metric types we emit. `Untyped` exists for series whose type is not known (OpenMetrics
/// calls it `unknown`). `Summary` comes only from files passed through (host-exporter's
/// textfile collector): no exporter here computes quantiles itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricType {
    Counter,
    Gauge,
    Histogram,
    Summary,
    Untyped,
}

/// A label name: nearly always a literal, so it is borrowed rather than copied for every sample
/// (a scrape builds thousands of samples).
pub type LabelName = std::borrow::Cow<'static, str>;

/// One sample: the label pairs (in output order) and the value. For a histogram the buckets,
/// sum and count live in `histogram`, for a summary its quantiles, sum and count in `summary`;
/// `value` is then unused.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub labels: Vec<(LabelName, String)>,
    pub value: f64,
    pub histogram: Option<HistogramValue>,
    pub summary: Option<SummaryValue>,
}

/// Cumulative bucket counts by upper bound (ascending), plus sum and count. The `+Inf` bucket
/// is written with `count` unless the list ends with one of its own (a histogram passed through
/// from a file, whose `+Inf` count may differ from its `_count`, as client_golang keeps it).
#[derive(Clone, Debug, PartialEq)]
pub struct HistogramValue {
    pub buckets: Vec<(f64, u64)>,
    pub sum: f64,
    pub count: u64,
}

/// Quantiles (ascending by quantile, each with its value), plus sum and count.
#[derive(Clone, Debug, PartialEq)]
pub struct SummaryValue {
    pub quantiles: Vec<(f64, f64)>,
    pub sum: f64,
    pub count: u64,
}

/// A family name or help text: nearly always a literal, borrowed rather than copied on every
/// scrape; owned where it is built at run time.
pub type Text = std::borrow::Cow<'static, str>;

/// A family: one name, one help text, one type, any number of samples.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricFamily {
    pub name: Text,
    pub help: Text,
    pub kind: MetricType,
    pub samples: Vec<Sample>,
}

impl MetricFamily {
    pub fn new(name: impl Into<Text>, help: impl Into<Text>, kind: MetricType) -> Self {
        MetricFamily {
            name: name.into(),
            help: help.into(),
            kind,
            samples: Vec::new(),
        }
    }

    pub fn gauge(name: impl Into<Text>, help: impl Into<Text>) -> Self {
        Self::new(name, help, MetricType::Gauge)
    }

    /// A counter; its name must already end in `_total`, as node_exporter's do.
    pub fn counter(name: impl Into<Text>, help: impl Into<Text>) -> Self {
        Self::new(name, help, MetricType::Counter)
    }

    pub fn histogram(name: impl Into<Text>, help: impl Into<Text>) -> Self {
        Self::new(name, help, MetricType::Histogram)
    }

    /// Adds one sample with the given label pairs.
    pub fn with<K: Into<LabelName> + Clone, V: AsRef<str>>(
        mut self,
        labels: &[(K, V)],
        value: f64,
    ) -> Self {
        self.push(labels, value);
        self
    }

    /// Adds one sample without labels.
    pub fn with_value(mut self, value: f64) -> Self {
        self.push::<&'static str, &str>(&[], value);
        self
    }

    pub fn push<K: Into<LabelName> + Clone, V: AsRef<str>>(
        &mut self,
        labels: &[(K, V)],
        value: f64,
    ) {
        self.samples.push(Sample {
            labels: owned_labels(labels),
            value,
            histogram: None,
            summary: None,
        });
    }

    pub fn push_histogram<K: Into<LabelName> + Clone, V: AsRef<str>>(
        &mut self,
        labels: &[(K, V)],
        value: HistogramValue,
    ) {
        self.samples.push(Sample {
            labels: owned_labels(labels),
            value: 0.0,
            histogram: Some(value),
            summary: None,
        });
    }

    pub fn push_summary<K: Into<LabelName> + Clone, V: AsRef<str>>(
        &mut self,
        labels: &[(K, V)],
        value: SummaryValue,
    ) {
        self.samples.push(Sample {
            labels: owned_labels(labels),
            value: 0.0,
            histogram: None,
            summary: Some(value),
        });
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }
}

/// A sample's labels, owned, from the borrowed pairs callers pass.
fn owned_labels<K: Into<LabelName> + Clone, V: AsRef<str>>(
    labels: &[(K, V)],
) -> Vec<(LabelName, String)> {
    labels
        .iter()
        .map(|(k, v)| (k.clone().into(), v.as_ref().to_string()))
        .collect()
}
