//! The rules that say where a message's body ends and whether its connection carries another
//! message, for both sides of the proxy, written once: Content-Length reconciliation (RFC 9110
//! §8.6), the body length (RFC 9112 §6.3), connection persistence (RFC 9112 §9.3) and the
//! hop-by-hop fields (RFC 9110 §7.6.1). Each side then adds its policy: a request the proxy could
//! read differently from the server behind it is refused (that is how requests are smuggled),
//! an upstream's answer is read as long as it can be framed exactly (the proxy reframes it for the
//! client anyway).

use super::fields::Fields;
use hyper::StatusCode;

/// How a message's body ends: one type for what is read and what is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// No body follows the head (a request without a length, HEAD, 1xx, 204, 304).
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// Until the connection closes (a response without a length).
    Close,
}

impl Framing {
    /// A connection whose message ends with its close carries nothing after it.
    pub fn ends_connection(self) -> bool {
        self == Framing::Close
    }
}

/// The `Content-Length` of a message, as RFC 9110 §8.6 reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContentLength {
    /// No `Content-Length` field.
    Absent,
    /// One field of one well-formed value: the only form that may be passed on as it is.
    Plain(u64),
    /// Repeated fields or a list, every value the same: one length, written anew when passed on.
    Repeated(u64),
}

impl ContentLength {
    pub fn value(self) -> Option<u64> {
        match self {
            ContentLength::Absent => None,
            ContentLength::Plain(n) | ContentLength::Repeated(n) => Some(n),
        }
    }
}

/// A `Content-Length` that is not one number: values that differ, or one that is not digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadLength;

/// Reads the `Content-Length` fields: repeated or listed values are one length only if they are
/// all the same (RFC 9110 §8.6); any value that is not digits makes the length unknown.
pub fn content_length(headers: &Fields) -> Result<ContentLength, BadLength> {
    let mut values = headers.get_all("content-length");
    let Some(first) = values.next() else {
        return Ok(ContentLength::Absent);
    };
    let single = values.next().is_none();
    if single {
        if let Some(n) = digits(first) {
            return Ok(ContentLength::Plain(n));
        }
    }
    let mut length = None;
    for value in headers.get_all("content-length") {
        for part in value.split(|b| *b == b',') {
            let n = digits(part.trim_ascii()).ok_or(BadLength)?;
            if length.is_some_and(|l| l != n) {
                return Err(BadLength);
            }
            length = Some(n);
        }
    }
    length.map(ContentLength::Repeated).ok_or(BadLength)
}

/// A decimal number of digits only (no sign, no spaces), at most 18 of them (no overflow).
pub fn digits(text: &[u8]) -> Option<u64> {
    if text.is_empty() || text.len() > 18 {
        return None;
    }
    text.iter().try_fold(0u64, |n, d| {
        d.is_ascii_digit().then(|| n * 10 + u64::from(d - b'0'))
    })
}

/// The `Transfer-Encoding` of a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransferCoding {
    /// No `Transfer-Encoding` field.
    Absent,
    /// `chunked`, once, and nothing else.
    Chunked,
    /// A coding other than chunked: the body cannot be read (or passed on) without decoding it.
    Unsupported,
    /// No coding at all, or chunked more than once: where two readers could disagree.
    Malformed,
}

/// Reads the `Transfer-Encoding` fields as one list (empty elements ignored, RFC 9110 §5.6.1).
pub fn transfer_coding(headers: &Fields) -> TransferCoding {
    let mut present = false;
    let mut chunked = 0;
    for value in headers.get_all("transfer-encoding") {
        present = true;
        for coding in value.split(|b| *b == b',') {
            let coding = coding.trim_ascii();
            if coding.is_empty() {
                continue;
            }
            if !coding.eq_ignore_ascii_case(b"chunked") {
                return TransferCoding::Unsupported;
            }
            chunked += 1;
        }
    }
    match (present, chunked) {
        (false, _) => TransferCoding::Absent,
        (true, 1) => TransferCoding::Chunked,
        (true, _) => TransferCoding::Malformed,
    }
}

/// Why a request is refused before anything of it is passed on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// A framing two servers could read differently (400).
    Ambiguous,
    /// A transfer coding the proxy cannot read (501).
    Unsupported,
}

impl Refusal {
    pub fn status(self) -> StatusCode {
        match self {
            Refusal::Ambiguous => StatusCode::BAD_REQUEST,
            Refusal::Unsupported => StatusCode::NOT_IMPLEMENTED,
        }
    }
}

/// How a request body ends (RFC 9112 §6.3), or why the request is refused: chunked exactly once,
/// in HTTP/1.1, with no length beside it, or one length; anything else is where two servers in a
/// row could disagree on where the body ends (RFC 9112 §6.1).
pub fn request_body(headers: &Fields, version_11: bool) -> Result<Framing, Refusal> {
    match transfer_coding(headers) {
        TransferCoding::Unsupported => Err(Refusal::Unsupported),
        TransferCoding::Malformed => Err(Refusal::Ambiguous),
        TransferCoding::Chunked if !version_11 || headers.contains("content-length") => {
            Err(Refusal::Ambiguous)
        }
        TransferCoding::Chunked => Ok(Framing::Chunked),
        TransferCoding::Absent => match content_length(headers) {
            Ok(length) => Ok(length.value().map_or(Framing::Empty, Framing::Length)),
            Err(BadLength) => Err(Refusal::Ambiguous),
        },
    }
}

/// Responses that never have a body, whatever their fields say (RFC 9112 §6.3 rule 1).
pub fn bodiless(is_head: bool, status: StatusCode) -> bool {
    is_head
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
}

/// How a response body ends (RFC 9112 §6.3) and whether its `Content-Length` must not be passed
/// on (anything but one plain value the body is framed by).
///
/// Anything the proxy could not frame the client's response by exactly is an error: a length
/// that is not digits or that two values disagree on, a transfer coding other than chunked (its
/// coded bytes would go on without the field that says so).
pub fn response_body(
    is_head: bool,
    status: StatusCode,
    headers: &Fields,
) -> Result<(Framing, bool), &'static str> {
    let length = content_length(headers);
    if bodiless(is_head, status) {
        let plain = matches!(length, Ok(ContentLength::Absent | ContentLength::Plain(_)));
        return Ok((Framing::Empty, !plain));
    }
    match transfer_coding(headers) {
        TransferCoding::Absent => {}
        TransferCoding::Chunked => {
            return Ok((Framing::Chunked, headers.contains("content-length")));
        }
        TransferCoding::Unsupported | TransferCoding::Malformed => {
            return Err("unsupported transfer coding from the upstream")
        }
    }
    match length {
        Ok(ContentLength::Absent) => Ok((Framing::Close, false)),
        Ok(ContentLength::Plain(n)) => Ok((Framing::Length(n), false)),
        Ok(ContentLength::Repeated(n)) => Ok((Framing::Length(n), true)),
        Err(BadLength) => Err("invalid content-length from the upstream"),
    }
}

/// How the proxy frames a body it sends on, from its exact size where that is known: a request
/// always goes with a length or chunked; a response to an HTTP/1.0 client of unknown length
/// ends with the connection.
pub fn outgoing(exact: Option<u64>, chunked_allowed: bool) -> Framing {
    match exact {
        Some(n) => Framing::Length(n),
        None if chunked_allowed => Framing::Chunked,
        None => Framing::Close,
    }
}

/// HTTP/1.1 keeps the connection unless told `close`; HTTP/1.0 only when told `keep-alive`.
pub fn persists(headers: &Fields, version_11: bool) -> bool {
    if version_11 {
        !headers.has_token("connection", "close")
    } else {
        headers.has_token("connection", "keep-alive")
    }
}

/// Fields that belong to one connection, not to the message (RFC 9110 §7.6.1), and `Expect`,
/// which the proxy answers itself (an upstream's own `100 Continue` would only add a wait).
const HOP_BY_HOP: [&str; 10] = [
    "connection",
    "expect",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Fields that `Connection` may not name away.
const NEVER_HOP_BY_HOP: [&str; 3] = ["content-length", "transfer-encoding", "host"];

/// The fields without those that belong to the connection they came on.
pub fn without_hop_by_hop(mut headers: Fields) -> Fields {
    let hop = |name: &[u8]| {
        HOP_BY_HOP
            .iter()
            .any(|h| name.eq_ignore_ascii_case(h.as_bytes()))
    };
    // Most messages carry none: then nothing is looked at twice.
    if !headers.iter().any(|(name, _)| hop(name)) {
        return headers;
    }
    // Fields named in `Connection` are hop-by-hop too; the message's framing and target are
    // never a connection option: a client naming them must not strip them (that would let a
    // body pass for a second request).
    let named: Vec<Vec<u8>> = headers
        .get_all("connection")
        .flat_map(|v| v.split(|b| *b == b','))
        .map(|n| n.trim_ascii().to_ascii_lowercase())
        .filter(|n| !n.is_empty() && !NEVER_HOP_BY_HOP.iter().any(|f| n == f.as_bytes()))
        .collect();
    headers.retain(|name| !hop(name) && !named.iter().any(|n| name.eq_ignore_ascii_case(n)));
    headers
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn fields(pairs: &[(&'static str, &'static str)]) -> Fields {
        let mut fields = Fields::default();
        for (n, v) in pairs {
            fields.push(
                Bytes::from_static(n.as_bytes()),
                Bytes::from_static(v.as_bytes()),
            );
        }
        fields
    }

    #[test]
    fn response_framing_and_persistence_follow_rfc_9112() {
        let h = fields;
        let ok = StatusCode::OK;
        let f = |is_head: bool, status, pairs: &[(&'static str, &'static str)]| {
            response_body(is_head, status, &h(pairs))
        };
        assert_eq!(
            f(
                false,
                ok,
                &[("transfer-encoding", "Chunked"), ("content-length", "5")]
            ),
            Ok((Framing::Chunked, true))
        );
        for bad in [
            &[("transfer-encoding", "gzip")][..],
            &[("transfer-encoding", "gzip, chunked")],
            &[
                ("transfer-encoding", "chunked"),
                ("transfer-encoding", "chunked"),
            ],
        ] {
            assert!(f(false, ok, bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            f(false, ok, &[("content-length", "5")]),
            Ok((Framing::Length(5), false))
        );
        assert_eq!(
            f(false, ok, &[("content-length", "007")]),
            Ok((Framing::Length(7), false))
        );
        assert_eq!(
            f(false, ok, &[("content-length", "7, 7")]),
            Ok((Framing::Length(7), true))
        );
        assert_eq!(
            f(
                false,
                ok,
                &[("content-length", "7"), ("content-length", "7")]
            ),
            Ok((Framing::Length(7), true))
        );
        for bad in [
            &[("content-length", "5"), ("content-length", "6")][..],
            &[("content-length", "5, 6")],
            &[("content-length", "abc")],
            &[("content-length", "+5")],
            &[("content-length", "-5")],
            &[("content-length", "")],
            &[("content-length", "5,")],
            &[("content-length", "99999999999999999999999")],
        ] {
            assert!(f(false, ok, bad).is_err(), "{bad:?}");
        }
        assert_eq!(f(false, ok, &[]), Ok((Framing::Close, false)));
        assert_eq!(
            f(true, ok, &[("content-length", "5")]),
            Ok((Framing::Empty, false))
        );
        assert_eq!(
            f(true, ok, &[("content-length", "+5")]),
            Ok((Framing::Empty, true))
        );
        assert_eq!(
            f(false, StatusCode::NO_CONTENT, &[]),
            Ok((Framing::Empty, false))
        );
        assert!(persists(&h(&[]), true));
        assert!(!persists(&h(&[("connection", "x, Close")]), true));
        assert!(!persists(&h(&[]), false));
        assert!(persists(&h(&[("connection", "keep-alive")]), false));
    }

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_stay_behind_but_never_the_framing() {
        let mut fields = Fields::default();
        for (name, value) in [
            ("Host", "x"),
            ("Connection", "X-Private, content-length , HOST"),
            ("connection", "Transfer-Encoding"),
            ("Keep-Alive", "timeout=5"),
            ("Proxy-Connection", "keep-alive"),
            ("TE", "trailers"),
            ("Upgrade", "websocket"),
            ("Expect", "100-continue"),
            ("x-private", "secret"),
            ("Content-Length", "2"),
            ("Content-Type", "application/json"),
            ("Authorization", "Bearer k"),
        ] {
            fields.push(Bytes::from(name), Bytes::from(value));
        }
        let kept = without_hop_by_hop(fields);
        let names: Vec<&[u8]> = kept.iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            [
                &b"Host"[..],
                b"Content-Length",
                b"Content-Type",
                b"Authorization"
            ]
        );
        // Nothing hop-by-hop: the fields come back as they were.
        let mut plain = Fields::default();
        plain.push(Bytes::from("A"), Bytes::from("b"));
        assert_eq!(without_hop_by_hop(plain).len(), 1);
    }
}
