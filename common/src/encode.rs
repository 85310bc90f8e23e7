//! Writers for the two exposition formats Prometheus reads, and the choice between them from a
//! request's `Accept` header.
//!
//! We keep our own encoder rather than prometheus-client's because that crate writes only
//! OpenMetrics, while node_exporter users (and `promtool check metrics`) expect the classic text
//! format 0.0.4 by default.

use crate::metrics::{LabelName, MetricFamily, MetricType, Sample};
use std::fmt::Write;

pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text exposition format 0.0.4.
    Text,
    /// OpenMetrics 1.0.0 text.
    OpenMetrics,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => TEXT_CONTENT_TYPE,
            Format::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
        }
    }

    /// Picks the format from an `Accept` header the way Prometheus' client libraries do:
    /// OpenMetrics when the client lists `application/openmetrics-text` with a quality at least
    /// that of every text/plain or wildcard entry, text 0.0.4 otherwise.
    pub fn negotiate(accept: Option<&str>) -> Format {
        let Some(accept) = accept else {
            return Format::Text;
        };
        let mut best_openmetrics: f32 = -1.0;
        let mut best_other: f32 = -1.0;
        for range in accept.split(',') {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or("").to_ascii_lowercase();
            let mut quality = 1.0f32;
            for param in parts {
                if let Some(q) = param.strip_prefix("q=") {
                    quality = q.trim().parse().unwrap_or(0.0);
                }
            }
            if quality <= 0.0 {
                continue;
            }
            if media == "application/openmetrics-text" {
                best_openmetrics = best_openmetrics.max(quality);
            } else {
                best_other = best_other.max(quality);
            }
        }
        if best_openmetrics > 0.0 && best_openmetrics >= best_other {
            Format::OpenMetrics
        } else {
            Format::Text
        }
    }
}

/// Writes all families in the chosen format. Families are written in the order given; callers
/// pass them sorted by name so output is stable.
pub fn encode(families: &[MetricFamily], format: Format) -> String {
    let mut out = String::with_capacity(families.len() * 160);
    for family in families {
        if family.samples.is_empty() {
            continue;
        }
        match format {
            Format::Text => write_text_family(&mut out, family),
            Format::OpenMetrics => write_openmetrics_family(&mut out, family),
        }
    }
    if format == Format::OpenMetrics {
        out.push_str("# EOF\n");
    }
    out
}

fn write_text_family(out: &mut String, family: &MetricFamily) {
    let kind = match family.kind {
        MetricType::Counter => "counter",
        MetricType::Gauge => "gauge",
        MetricType::Histogram => "histogram",
        MetricType::Summary => "summary",
        MetricType::Untyped => "untyped",
    };
    out.push_str("# HELP ");
    out.push_str(&family.name);
    out.push(' ');
    escape_help(out, &family.help);
    out.push_str("\n# TYPE ");
    out.push_str(&family.name);
    out.push(' ');
    out.push_str(kind);
    out.push('\n');
    write_samples(out, &family.name, family, "");
}

fn write_openmetrics_family(out: &mut String, family: &MetricFamily) {
    // OpenMetrics names a counter family without `_total` and requires that suffix on the
    // sample; a counter whose name lacks it cannot be expressed and goes out as `unknown`.
    let (family_name, kind, sample_suffix) = match family.kind {
        MetricType::Counter => match family.name.strip_suffix("_total") {
            Some(base) => (base, "counter", "_total"),
            None => (&*family.name, "unknown", ""),
        },
        MetricType::Gauge => (&*family.name, "gauge", ""),
        MetricType::Histogram => (&*family.name, "histogram", ""),
        MetricType::Summary => (&*family.name, "summary", ""),
        MetricType::Untyped => (&*family.name, "unknown", ""),
    };
    out.push_str("# TYPE ");
    out.push_str(family_name);
    out.push(' ');
    out.push_str(kind);
    out.push_str("\n# HELP ");
    out.push_str(family_name);
    out.push(' ');
    escape_openmetrics_help(out, &family.help);
    out.push('\n');
    write_samples(out, family_name, family, sample_suffix);
}

fn write_samples(out: &mut String, base: &str, family: &MetricFamily, suffix: &str) {
    for sample in &family.samples {
        match (&sample.histogram, &sample.summary) {
            (Some(h), _) => write_histogram(out, base, sample, h),
            (None, Some(s)) => write_summary(out, base, sample, s),
            (None, None) => {
                out.push_str(base);
                out.push_str(suffix);
                write_labels(out, &sample.labels, None);
                out.push(' ');
                write_value(out, sample.value);
                out.push('\n');
            }
        }
    }
}

/// The same lines in both formats: one per quantile, then `_sum` and `_count`.
fn write_summary(out: &mut String, base: &str, sample: &Sample, s: &crate::metrics::SummaryValue) {
    let mut quantile = String::new();
    for &(q, value) in &s.quantiles {
        quantile.clear();
        write_value(&mut quantile, q);
        out.push_str(base);
        write_labels(out, &sample.labels, Some(("quantile", &quantile)));
        out.push(' ');
        write_value(out, value);
        out.push('\n');
    }
    out.push_str(base);
    out.push_str("_sum");
    write_labels(out, &sample.labels, None);
    out.push(' ');
    write_value(out, s.sum);
    out.push('\n');
    out.push_str(base);
    out.push_str("_count");
    write_labels(out, &sample.labels, None);
    let _ = writeln!(out, " {}", s.count);
}

fn write_histogram(
    out: &mut String,
    base: &str,
    sample: &Sample,
    h: &crate::metrics::HistogramValue,
) {
    let mut bound = String::new();
    let has_inf = h
        .buckets
        .last()
        .is_some_and(|(upper, _)| *upper == f64::INFINITY);
    let implicit_inf = (!has_inf).then_some((f64::INFINITY, h.count));
    for (upper, count) in h.buckets.iter().copied().chain(implicit_inf) {
        bound.clear();
        write_value(&mut bound, upper);
        out.push_str(base);
        out.push_str("_bucket");
        write_labels(out, &sample.labels, Some(("le", &bound)));
        let _ = writeln!(out, " {count}");
    }
    out.push_str(base);
    out.push_str("_sum");
    write_labels(out, &sample.labels, None);
    out.push(' ');
    write_value(out, h.sum);
    out.push('\n');
    out.push_str(base);
    out.push_str("_count");
    write_labels(out, &sample.labels, None);
    let _ = writeln!(out, " {}", h.count);
}

fn write_labels(out: &mut String, labels: &[(LabelName, String)], extra: Option<(&str, &str)>) {
    if labels.is_empty() && extra.is_none() {
        return;
    }
    out.push('{');
    let mut first = true;
    let pairs = labels
        .iter()
        .map(|(k, v)| (k.as_ref(), v.as_str()))
        .chain(extra);
    for (key, value) in pairs {
        if !first {
            out.push(',');
        }
        first = false;
        out.push_str(key);
        out.push_str("=\"");
        escape_label_value(out, value);
        out.push('"');
    }
    out.push('}');
}

/// Numbers as Prometheus parses them: integers without a fraction where exact, `NaN`, `+Inf`,
/// `-Inf`, otherwise the shortest representation that reads back to the same f64.
pub fn write_value(out: &mut String, value: f64) {
    if value.is_nan() {
        out.push_str("NaN");
    } else if value.is_infinite() {
        out.push_str(if value > 0.0 { "+Inf" } else { "-Inf" });
    } else if value.fract() == 0.0 && value.abs() < 1e15 {
        // Most values are whole numbers (counters, bytes): itoa skips the formatting machinery.
        out.push_str(itoa::Buffer::new().format(value as i64));
    } else if value.abs() >= 1e-4 && value.abs() < 1e15 {
        // Display gives the shortest decimal that reads back to the same f64.
        let _ = write!(out, "{value}");
    } else {
        let _ = write!(out, "{value:e}");
    }
}

fn escape_help(out: &mut String, help: &str) {
    if !help.contains(['\\', '\n']) {
        out.push_str(help);
        return;
    }
    for c in help.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn escape_openmetrics_help(out: &mut String, help: &str) {
    if !help.contains(['\\', '\n', '"']) {
        out.push_str(help);
        return;
    }
    for c in help.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

fn escape_label_value(out: &mut String, value: &str) {
    if !value.contains(['\\', '\n', '"']) {
        out.push_str(value);
        return;
    }
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::HistogramValue;

    #[test]
    fn negotiation_follows_accept_and_quality() {
        assert_eq!(Format::negotiate(None), Format::Text);
        assert_eq!(Format::negotiate(Some("*/*")), Format::Text);
        assert_eq!(
            Format::negotiate(Some("text/plain;version=0.0.4")),
            Format::Text
        );
        // What Prometheus 2.x sends by default.
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(Format::negotiate(Some(prometheus)), Format::OpenMetrics);
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text;q=0.2,text/plain;q=0.9")),
            Format::Text
        );
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text;q=0")),
            Format::Text
        );
    }

    #[test]
    fn values_are_written_as_prometheus_parses_them() {
        let cases = [
            (0.0, "0"),
            (42.0, "42"),
            (-3.0, "-3"),
            (-0.0, "0"),
            (999_999_999_999_999.0, "999999999999999"),
            (0.5, "0.5"),
            (1.7954243900353746e9, "1795424390.0353746"),
            (2.0e20, "2e20"),
            (1.5e-7, "1.5e-7"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
        ];
        for (value, expected) in cases {
            let mut s = String::new();
            write_value(&mut s, value);
            assert_eq!(s, expected, "for {value}");
            if value.is_finite() {
                assert_eq!(s.parse::<f64>().unwrap(), value);
            }
        }
    }

    #[test]
    fn text_and_openmetrics_differ_where_the_formats_do() {
        let families = vec![
            MetricFamily::counter("demo_events_total", "Events seen.\nSecond line \\ done")
                .with(&[("path", "a\"b\\c\nd")], 3.0),
            MetricFamily::gauge("demo_temperature_celsius", "A gauge.").with_value(21.5),
            MetricFamily::counter("demo_odd_counter", "A counter without _total.").with_value(1.0),
        ];
        let text = encode(&families, Format::Text);
        assert_eq!(
            text,
            "# HELP demo_events_total Events seen.\\nSecond line \\\\ done\n\
             # TYPE demo_events_total counter\n\
             demo_events_total{path=\"a\\\"b\\\\c\\nd\"} 3\n\
             # HELP demo_temperature_celsius A gauge.\n\
             # TYPE demo_temperature_celsius gauge\n\
             demo_temperature_celsius 21.5\n\
             # HELP demo_odd_counter A counter without _total.\n\
             # TYPE demo_odd_counter counter\n\
             demo_odd_counter 1\n"
        );
        let om = encode(&families, Format::OpenMetrics);
        assert!(om.starts_with("# TYPE demo_events counter\n# HELP demo_events Events seen."));
        assert!(om.contains("\ndemo_events_total{path=\"a\\\"b\\\\c\\nd\"} 3\n"));
        assert!(om.contains("# TYPE demo_odd_counter unknown\n"));
        assert!(om.ends_with("# EOF\n"));
    }

    #[test]
    fn histograms_have_cumulative_buckets_sum_and_count() {
        let mut family = MetricFamily::histogram("demo_seconds", "Latency.");
        family.push_histogram(
            &[("route", "/x")],
            HistogramValue {
                buckets: vec![(0.1, 1), (1.0, 3)],
                sum: 2.5,
                count: 4,
            },
        );
        let text = encode(&[family], Format::Text);
        assert!(text.contains("demo_seconds_bucket{route=\"/x\",le=\"0.1\"} 1\n"));
        assert!(text.contains("demo_seconds_bucket{route=\"/x\",le=\"1\"} 3\n"));
        assert!(text.contains("demo_seconds_bucket{route=\"/x\",le=\"+Inf\"} 4\n"));
        assert!(text.contains("demo_seconds_sum{route=\"/x\"} 2.5\n"));
        assert!(text.contains("demo_seconds_count{route=\"/x\"} 4\n"));

        // A list that ends with +Inf keeps its count, and no second +Inf line is added.
        let mut family = MetricFamily::histogram("demo_seconds", "Latency.");
        family.push_histogram::<&str, &str>(
            &[],
            HistogramValue {
                buckets: vec![(1.0, 3), (f64::INFINITY, 5)],
                sum: 2.5,
                count: 6,
            },
        );
        let text = encode(&[family], Format::Text);
        assert_eq!(text.matches("le=\"+Inf\"").count(), 1, "{text}");
        assert!(text.contains("demo_seconds_bucket{le=\"+Inf\"} 5\n"));
        assert!(text.contains("demo_seconds_count 6\n"));
    }

    #[test]
    fn summaries_have_quantiles_sum_and_count_in_both_formats() {
        let mut family = MetricFamily::new("demo_rpc_seconds", "RPC latency.", MetricType::Summary);
        family.push_summary(
            &[("service", "a")],
            crate::metrics::SummaryValue {
                quantiles: vec![(0.5, 0.25), (0.99, f64::NAN)],
                sum: 12.5,
                count: 40,
            },
        );
        let text = encode(std::slice::from_ref(&family), Format::Text);
        assert_eq!(
            text,
            "# HELP demo_rpc_seconds RPC latency.\n\
             # TYPE demo_rpc_seconds summary\n\
             demo_rpc_seconds{service=\"a\",quantile=\"0.5\"} 0.25\n\
             demo_rpc_seconds{service=\"a\",quantile=\"0.99\"} NaN\n\
             demo_rpc_seconds_sum{service=\"a\"} 12.5\n\
             demo_rpc_seconds_count{service=\"a\"} 40\n"
        );
        let om = encode(&[family], Format::OpenMetrics);
        assert!(om.starts_with("# TYPE demo_rpc_seconds summary\n"), "{om}");
        assert!(om.contains("\ndemo_rpc_seconds_count{service=\"a\"} 40\n# EOF\n"));
    }

    #[test]
    fn empty_families_are_left_out() {
        let families = vec![MetricFamily::gauge("demo_nothing", "None.")];
        assert_eq!(encode(&families, Format::Text), "");
        assert_eq!(encode(&families, Format::OpenMetrics), "# EOF\n");
    }
}
