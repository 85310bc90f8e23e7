//! W3C Trace Context (<https://www.w3.org/TR/trace-context/>): the client's `traceparent` read,
//! a span of the proxy's own made for each request, and the `traceparent` that names that span
//! sent upstream, so the model server's own spans (where it makes any) hang under the proxy's.
//! Written here rather than taken from the `opentelemetry` crate: the format is one fixed-width
//! line, and the crate would bring its whole API for these forty lines.

use super::random;

/// The header, both ways.
pub const HEADER: &str = "traceparent";

/// The sampled bit of the trace flags.
const SAMPLED: u8 = 0x01;

/// A client's `traceparent`: the trace it belongs to and its own span, the proxy's parent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: [u8; 16],
    pub parent_id: [u8; 8],
    pub flags: u8,
}

impl TraceParent {
    /// Reads a `traceparent` value; `None` for anything the specification calls invalid (the
    /// header is then ignored and a new trace begins). Version `00` is exactly 55 characters;
    /// a later version may add fields after a dash, which are skipped; `ff` is invalid.
    pub fn parse(raw: &[u8]) -> Option<TraceParent> {
        let raw = raw.trim_ascii();
        if raw.len() < 55 {
            return None;
        }
        let version = lower_hex::<1>(&raw[0..2])?[0];
        if version == 0xff
            || (version == 0 && raw.len() != 55)
            || (raw.len() > 55 && raw[55] != b'-')
        {
            return None;
        }
        if raw[2] != b'-' || raw[35] != b'-' || raw[52] != b'-' {
            return None;
        }
        let trace_id = lower_hex::<16>(&raw[3..35])?;
        let parent_id = lower_hex::<8>(&raw[36..52])?;
        let flags = lower_hex::<1>(&raw[53..55])?[0];
        if trace_id == [0; 16] || parent_id == [0; 8] {
            return None;
        }
        Some(TraceParent {
            trace_id,
            parent_id,
            flags,
        })
    }
}

/// `N` bytes from exactly `2N` lowercase hex digits (the specification forbids uppercase).
fn lower_hex<const N: usize>(digits: &[u8]) -> Option<[u8; N]> {
    if digits.len() != 2 * N {
        return None;
    }
    let nibble = |d: u8| match d {
        b'0'..=b'9' => Some(d - b'0'),
        b'a'..=b'f' => Some(d - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; N];
    for (i, pair) in digits.chunks_exact(2).enumerate() {
        out[i] = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

/// The proxy's span for one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpanContext {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    /// The client's span, when it sent a valid `traceparent`.
    pub parent_span_id: Option<[u8; 8]>,
    pub flags: u8,
}

impl SpanContext {
    /// A new span: in the client's trace, under the client's span and with its flags, when it
    /// sent one; otherwise the root of a new, sampled trace.
    pub fn start(parent: Option<TraceParent>) -> SpanContext {
        let span_id = nonzero(random::bytes::<8>);
        match parent {
            Some(p) => SpanContext {
                trace_id: p.trace_id,
                span_id,
                parent_span_id: Some(p.parent_id),
                flags: p.flags,
            },
            None => SpanContext {
                trace_id: nonzero(random::bytes::<16>),
                span_id,
                parent_span_id: None,
                flags: SAMPLED,
            },
        }
    }

    /// Whether the trace is being recorded: a client that did not sample its trace gets no span
    /// exported either (the parent's decision, as OpenTelemetry's default sampler takes it).
    pub fn sampled(&self) -> bool {
        self.flags & SAMPLED != 0
    }

    /// The `traceparent` sent upstream: this span as the parent. Always version 00, the only
    /// one the proxy knows how to write.
    pub fn traceparent(&self) -> String {
        format!(
            "00-{}-{}-{:02x}",
            random::hex(&self.trace_id),
            random::hex(&self.span_id),
            self.flags
        )
    }

    pub fn trace_id_hex(&self) -> String {
        random::hex(&self.trace_id)
    }
}

/// Random ids, all-zero ones (invalid) drawn again.
fn nonzero<const N: usize>(draw: fn() -> [u8; N]) -> [u8; N] {
    loop {
        let id = draw();
        if id != [0; N] {
            return id;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_traceparent_is_read() {
        let p = TraceParent::parse(VALID.as_bytes()).unwrap();
        assert_eq!(random::hex(&p.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(random::hex(&p.parent_id), "00f067aa0ba902b7");
        assert_eq!(p.flags, 1);
        // A later version may carry more after a dash.
        let future = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09-what-next";
        assert_eq!(TraceParent::parse(future.as_bytes()).unwrap().flags, 9);
    }

    #[test]
    fn invalid_traceparents_are_refused() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            // All-zero ids.
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            // Uppercase, non-hex, the forbidden version, extra data on version 00.
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
            "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
            // Wrong separators.
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7_01",
        ] {
            assert_eq!(TraceParent::parse(bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn a_span_under_the_client_keeps_its_trace_and_names_itself_upstream() {
        let parent = TraceParent::parse(VALID.as_bytes()).unwrap();
        let span = SpanContext::start(Some(parent));
        assert_eq!(span.trace_id, parent.trace_id);
        assert_eq!(span.parent_span_id, Some(parent.parent_id));
        assert_ne!(span.span_id, parent.parent_id);
        let upstream = span.traceparent();
        let sent = TraceParent::parse(upstream.as_bytes()).unwrap();
        assert_eq!(
            sent,
            TraceParent {
                trace_id: parent.trace_id,
                parent_id: span.span_id,
                flags: 1
            }
        );
        assert!(upstream.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        assert!(upstream.ends_with("-01"));
    }

    #[test]
    fn without_a_parent_a_new_sampled_trace_begins() {
        let (a, b) = (SpanContext::start(None), SpanContext::start(None));
        assert_ne!(a.trace_id, b.trace_id);
        assert_eq!(a.parent_span_id, None);
        assert!(a.sampled());
        let unsampled = TraceParent {
            flags: 0,
            ..TraceParent::parse(VALID.as_bytes()).unwrap()
        };
        let span = SpanContext::start(Some(unsampled));
        assert!(!span.sampled());
        assert!(span.traceparent().ends_with("-00"));
    }
}
