//! Property and differential tests of the HTTP/1.1 codec: random and mutated request heads,
//! response heads and chunked bodies, each checked against a reference written here apart from
//! the codec (httparse's own reading of a head; straightforward line-by-line chunked decoders, one
//! strict and one lenient, as the codec's rules say). Whatever the input, the codec does not
//! panic, does not take a byte past the end of a body, and never accepts a framing that a reader
//! going by the RFC would read differently: Content-Length beside Transfer-Encoding, lengths that
//! differ, a request coding other than one `chunked`, line folding, bare line ends in a request's
//! chunked coding. A fixed number of cases from a fixed seed keeps the run bounded (a few seconds
//! in a debug build) and the same on every run.

use bytes::{Bytes, BytesMut};
use hyper::StatusCode;
use llm_proxy::codec::decode::Decoder;
use llm_proxy::codec::fields::Fields;
use llm_proxy::codec::framing::{self, Framing};
use llm_proxy::codec::head::{head_end, parse_request, parse_response, MAX_HEADERS};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};

fn config(cases: u32) -> Config {
    Config {
        cases,
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(17),
        ..Config::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Heads
// ---------------------------------------------------------------------------------------------

/// Each part of a head is mostly well-formed (so that many heads get as far as the framing
/// rules, and in combinations that could smuggle), sometimes not.
fn part(
    good: &'static [&'static str],
    bad: &'static [&'static str],
) -> BoxedStrategy<&'static str> {
    prop_oneof![
        6 => prop::sample::select(good),
        1 => prop::sample::select(bad),
    ]
    .boxed()
}

/// Field names: the framing ones in several spellings, others, and malformed ones.
const NAMES: &[&str] = &[
    "Content-Length",
    "content-length",
    "CONTENT-LENGTH",
    "Transfer-Encoding",
    "transfer-encoding",
    "Connection",
    "Host",
    "Expect",
    "Server",
    "X-A",
];
const BAD_NAMES: &[&str] = &["Content-Length ", "Bad Name", "", "X\u{e9}", " X"];

/// Field values: lengths, codings, lists.
const VALUES: &[&str] = &[
    "0",
    "5",
    "007",
    "5, 5",
    "5, 6",
    "chunked",
    "Chunked",
    " chunked ",
    "chunked, ",
    "chunked, chunked",
    "gzip, chunked",
    "chunked, gzip",
    "gzip",
    "close",
    "keep-alive",
    "Keep-Alive, x",
    "100-continue",
    "llama.cpp",
];
/// And malformed ones: signs, controls, obs-fold, an overflow, obs-text.
const BAD_VALUES: &[&str] = &[
    "5,5,",
    "+5",
    "-1",
    "5 5",
    "",
    " ",
    "99999999999999999999",
    ", chunked",
    "identity",
    "a\u{e9}b",
    "a\tb",
    "a\u{1}b",
    "a\r\n b",
    "a\r\n\tb",
];

const METHODS: &[&str] = &["GET", "POST", "HEAD", "OPTIONS", "PUT"];
const BAD_METHODS: &[&str] = &["CONNECT", "get", "P@ST", ""];
const TARGETS: &[&str] = &["/", "/v1/chat/completions?x=1", "*", "http://h/p?q"];
const BAD_TARGETS: &[&str] = &["example.com:80", "/a b", "", "a://b"];
const VERSIONS: &[&str] = &["HTTP/1.1", "HTTP/1.0"];
const BAD_VERSIONS: &[&str] = &["HTTP/2.0", "HTTP/1.2", "http/1.1", "HTTP/1.1 "];
const STATUS_LINES: &[&str] = &[
    "HTTP/1.1 200 OK",
    "HTTP/1.0 200 OK",
    "HTTP/1.1 204 No Content",
    "HTTP/1.1 304 Not Modified",
    "HTTP/1.1 100 Continue",
    "HTTP/1.1 404",
];
const BAD_STATUS_LINES: &[&str] = &[
    "HTTP/1.1 099 Low",
    "HTTP/1.1 20 OK",
    "HTTP/1.1 2000",
    "HTTP/2 200 OK",
    "HTTP/1.1 200 O\u{1}K",
];
const LINE_ENDS: &[&str] = &["\r\n", "\r\n", "\r\n", "\n"];

/// A byte-level change to a generated head or body: what a fuzzer does to find the corners.
#[derive(Clone, Debug)]
enum Mutation {
    Flip(usize, u8),
    Insert(usize, u8),
    Delete(usize),
}

/// Bytes that matter to HTTP's syntax, more often than chance would pick them.
fn interesting_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        prop::sample::select(vec![
            b'\r', b'\n', b' ', b'\t', b':', b';', b',', b'0', b'9', b'a', b'f', b'"', 0, 0x7f,
            0xe9,
        ]),
        any::<u8>(),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), interesting_byte()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<usize>(), interesting_byte()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<usize>().prop_map(Mutation::Delete),
    ]
}

/// Mostly none: a head with a changed byte is mostly refused before its framing is read.
fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    prop_oneof![
        2 => Just(Vec::new()),
        1 => prop::collection::vec(mutation(), 1..3),
    ]
}

fn mutate(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        match *m {
            Mutation::Flip(i, b) if !bytes.is_empty() => {
                let i = i % bytes.len();
                bytes[i] = b;
            }
            Mutation::Insert(i, b) => {
                let i = i % (bytes.len() + 1);
                bytes.insert(i, b);
            }
            Mutation::Delete(i) if !bytes.is_empty() => {
                let i = i % bytes.len();
                bytes.remove(i);
            }
            _ => {}
        }
    }
    bytes
}

fn fields_strategy() -> impl Strategy<Value = Vec<(&'static str, &'static str)>> {
    prop::collection::vec((part(NAMES, BAD_NAMES), part(VALUES, BAD_VALUES)), 0..5)
}

/// A head made of a start line, fields and an empty line, then mutated; sometimes with more
/// fields than the codec takes.
fn head(start: String, fields: &[(&str, &str)], eol: &str, many: bool) -> Vec<u8> {
    let mut head = format!("{start}{eol}");
    for (name, value) in fields {
        head.push_str(&format!("{name}: {value}{eol}"));
    }
    if many {
        head.push_str(&format!("X: y{eol}").repeat(MAX_HEADERS));
    }
    head.push_str(eol);
    head.into_bytes()
}

fn request_heads() -> impl Strategy<Value = Vec<u8>> {
    (
        part(METHODS, BAD_METHODS),
        part(TARGETS, BAD_TARGETS),
        part(VERSIONS, BAD_VERSIONS),
        fields_strategy(),
        prop::sample::select(LINE_ENDS),
        prop::bool::weighted(0.02),
        mutations(),
    )
        .prop_map(|(method, target, version, fields, eol, many, muts)| {
            let start = format!("{method} {target} {version}");
            mutate(head(start, &fields, eol, many), &muts)
        })
}

fn response_heads() -> impl Strategy<Value = Vec<u8>> {
    (
        part(STATUS_LINES, BAD_STATUS_LINES),
        fields_strategy(),
        prop::sample::select(LINE_ENDS),
        prop::bool::weighted(0.02),
        mutations(),
    )
        .prop_map(|(status, fields, eol, many, muts)| {
            mutate(head(status.to_string(), &fields, eol, many), &muts)
        })
}

/// Where the first empty line ends, found the plain way.
fn reference_head_end(buf: &[u8]) -> Option<usize> {
    (0..buf.len()).find_map(|i| {
        if buf[i..].starts_with(b"\n\n") {
            Some(i + 2)
        } else if buf[i..].starts_with(b"\n\r\n") {
            Some(i + 3)
        } else {
            None
        }
    })
}

/// The fields as httparse read them, values trimmed as the codec passes them on.
fn reference_fields(headers: &[httparse::Header<'_>]) -> Vec<(Vec<u8>, Vec<u8>)> {
    headers
        .iter()
        .map(|h| (h.name.as_bytes().to_vec(), h.value.trim_ascii().to_vec()))
        .collect()
}

fn codec_fields(fields: &Fields) -> Vec<(Vec<u8>, Vec<u8>)> {
    fields
        .iter()
        .map(|(n, v)| (n.to_vec(), v.to_vec()))
        .collect()
}

/// The list elements of every field called `name`, trimmed, empty ones left out.
fn list(fields: &[(Vec<u8>, Vec<u8>)], name: &str) -> Vec<Vec<u8>> {
    fields
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
        .flat_map(|(_, v)| v.split(|b| *b == b',').map(|e| e.trim_ascii().to_vec()))
        .collect()
}

/// A Content-Length value as RFC 9110 §8.6 has it: digits only (and, here, at most 18).
fn reference_length(value: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(value).ok()?;
    if text.is_empty() || text.len() > 18 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// One length from every Content-Length element, or `Err` when they are not one number.
fn reference_content_length(fields: &[(Vec<u8>, Vec<u8>)]) -> Result<Option<u64>, ()> {
    let elements = list(fields, "content-length");
    let mut lengths = elements.iter().map(|e| reference_length(e));
    let Some(first) = lengths.next() else {
        return Ok(None);
    };
    let first = first.ok_or(())?;
    if lengths.all(|l| l == Some(first)) {
        Ok(Some(first))
    } else {
        Err(())
    }
}

/// A request body's framing by RFC 9112 §6.1 and §6.3 with the proxy's refusals: only one
/// `chunked` coding, only in HTTP/1.1, never beside a length.
fn reference_request_framing(
    fields: &[(Vec<u8>, Vec<u8>)],
    version_11: bool,
) -> Result<Framing, StatusCode> {
    let te_present = fields
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case(b"transfer-encoding"));
    if te_present {
        let codings: Vec<Vec<u8>> = list(fields, "transfer-encoding")
            .into_iter()
            .filter(|c| !c.is_empty())
            .collect();
        if codings.iter().any(|c| !c.eq_ignore_ascii_case(b"chunked")) {
            return Err(StatusCode::NOT_IMPLEMENTED);
        }
        let cl_present = fields
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(b"content-length"));
        if codings.len() != 1 || !version_11 || cl_present {
            return Err(StatusCode::BAD_REQUEST);
        }
        return Ok(Framing::Chunked);
    }
    match reference_content_length(fields) {
        Ok(Some(n)) => Ok(Framing::Length(n)),
        Ok(None) => Ok(Framing::Empty),
        Err(()) => Err(StatusCode::BAD_REQUEST),
    }
}

proptest! {
    #![proptest_config(config(3000))]

    /// A request head the codec accepts is the one httparse reads, field for field, framed as
    /// the RFC says, and never ambiguous.
    #[test]
    fn request_heads_agree_with_httparse_and_never_smuggle(wire in request_heads()) {
        prop_assert_eq!(head_end(&wire), reference_head_end(&wire));
        let Some(end) = head_end(&wire) else {
            return Ok(());
        };
        let head = Bytes::copy_from_slice(&wire[..end]);
        let ours = parse_request(&head);
        let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut theirs = httparse::Request::new(&mut slots);
        let parsed = theirs.parse(&head);
        let Ok(request) = ours else {
            return Ok(());
        };
        prop_assert!(matches!(parsed, Ok(httparse::Status::Complete(n)) if n == head.len()));
        prop_assert_eq!(request.head.method.as_str(), theirs.method.unwrap());
        let target = theirs.path.unwrap();
        prop_assert!(target.starts_with('/') || target.contains("://") || target == "*");
        let fields = reference_fields(theirs.headers);
        prop_assert_eq!(codec_fields(&request.head.headers), fields.clone());
        let version_11 = theirs.version == Some(1);
        prop_assert_eq!(Ok(request.body), reference_request_framing(&fields, version_11));
        // What could be read two ways is never accepted.
        let te = fields.iter().any(|(n, _)| n.eq_ignore_ascii_case(b"transfer-encoding"));
        let cl = fields.iter().any(|(n, _)| n.eq_ignore_ascii_case(b"content-length"));
        prop_assert!(!(te && cl), "Content-Length beside Transfer-Encoding");
        prop_assert!(!te || version_11, "Transfer-Encoding in HTTP/1.0");
        prop_assert!(fields.iter().all(|(_, v)| !v.contains(&b'\n') && !v.contains(&b'\r')));
        let folded = head
            .split(|b| *b == b'\n')
            .skip(1)
            .any(|line| matches!(line.first(), Some(b' ' | b'\t')));
        prop_assert!(!folded, "a folded line");
    }

    /// A response head the codec accepts is the one httparse reads; its body's framing follows
    /// RFC 9112 §6.3 and is an error wherever the proxy could not frame it exactly.
    #[test]
    fn response_heads_agree_with_httparse(wire in response_heads(), is_head in any::<bool>()) {
        prop_assert_eq!(head_end(&wire), reference_head_end(&wire));
        let Some(end) = head_end(&wire) else {
            return Ok(());
        };
        let head = Bytes::copy_from_slice(&wire[..end]);
        let ours = parse_response(&head);
        let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut theirs = httparse::Response::new(&mut slots);
        let complete = matches!(theirs.parse(&head), Ok(httparse::Status::Complete(n)) if n == head.len());
        let acceptable = complete
            && matches!(theirs.version, Some(0 | 1))
            && theirs.code.is_some_and(|c| c >= 100);
        prop_assert_eq!(ours.is_ok(), acceptable);
        let Ok(response) = ours else {
            return Ok(());
        };
        prop_assert_eq!(response.status.as_u16(), theirs.code.unwrap());
        prop_assert_eq!(response.version_11, theirs.version == Some(1));
        let fields = reference_fields(theirs.headers);
        prop_assert_eq!(codec_fields(&response.headers), fields.clone());

        let status = response.status;
        let framed = framing::response_body(is_head, status, &response.headers);
        let bodiless = is_head || status.is_informational() || status.as_u16() == 204 || status.as_u16() == 304;
        let te: Vec<Vec<u8>> = list(&fields, "transfer-encoding").into_iter().filter(|c| !c.is_empty()).collect();
        let te_present = fields.iter().any(|(n, _)| n.eq_ignore_ascii_case(b"transfer-encoding"));
        let cl_present = fields.iter().any(|(n, _)| n.eq_ignore_ascii_case(b"content-length"));
        let cl_fields = fields.iter().filter(|(n, _)| n.eq_ignore_ascii_case(b"content-length")).count();
        let length = reference_content_length(&fields);
        let plain = cl_fields == 1 && length.is_ok() && !fields.iter().any(|(n, v)| n.eq_ignore_ascii_case(b"content-length") && v.contains(&b','));
        let want = if bodiless {
            Ok((Framing::Empty, cl_present && !plain))
        } else if te_present {
            if te.len() == 1 && te[0].eq_ignore_ascii_case(b"chunked") {
                Ok((Framing::Chunked, cl_present))
            } else {
                Err(())
            }
        } else {
            match length {
                Ok(None) => Ok((Framing::Close, false)),
                Ok(Some(n)) => Ok((Framing::Length(n), !plain)),
                Err(()) => Err(()),
            }
        };
        prop_assert_eq!(framed.map_err(|_| ()), want);
    }
}

// ---------------------------------------------------------------------------------------------
// Chunked bodies
// ---------------------------------------------------------------------------------------------

/// What a reference decoder made of a whole wire.
#[derive(Debug, PartialEq, Eq)]
enum Decoded {
    /// The body, and where it ended in the wire.
    Complete(Vec<u8>, usize),
    /// The wire ends before the body does.
    Incomplete,
    Error,
}

/// The codec's limit on extension and trailer bytes in a request body.
const MAX_META: usize = 16 << 10;

fn is_control(b: u8) -> bool {
    (b < 0x20 && b != b'\t') || b == 0x7f
}

/// The hex chunk size at the start of `line`, 1 to 15 digits; the rest of the line.
fn chunk_size(line: &[u8]) -> Option<(u64, &[u8])> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 15 {
        return None;
    }
    let size = u64::from_str_radix(std::str::from_utf8(&line[..digits]).ok()?, 16).ok()?;
    Some((size, &line[digits..]))
}

/// Chunked coding exactly as RFC 9112 §7.1 writes it, line by line: CRLF line ends, only
/// whitespace between a size and its extensions, no control bytes in extensions or trailers,
/// a colon in every trailer field, at most MAX_META bytes of extensions and trailers.
fn reference_strict(wire: &[u8]) -> Decoded {
    let mut at = 0;
    let mut body = Vec::new();
    let mut meta = 0usize;
    // Counts a line of extension or trailer bytes (its CR too); false past the limit.
    let mut count = |len: usize| {
        if len > 0 && meta + len > MAX_META {
            return false;
        }
        meta += len + 1;
        true
    };
    let line = |at: usize| -> Option<usize> {
        wire[at..]
            .windows(2)
            .position(|w| w == b"\r\n")
            .map(|i| at + i)
    };
    loop {
        let Some(eol) = line(at) else {
            return Decoded::Incomplete;
        };
        let size_line = &wire[at..eol];
        if size_line.iter().any(|b| is_control(*b)) {
            return Decoded::Error;
        }
        let Some((size, rest)) = chunk_size(size_line) else {
            return Decoded::Error;
        };
        let rest = rest.trim_ascii_start();
        if !rest.is_empty() {
            let Some(extension) = rest.strip_prefix(b";") else {
                return Decoded::Error;
            };
            if !count(extension.len()) {
                return Decoded::Error;
            }
        }
        at = eol + 2;
        if size == 0 {
            loop {
                let Some(eol) = line(at) else {
                    return Decoded::Incomplete;
                };
                let trailer = &wire[at..eol];
                if trailer.iter().any(|b| is_control(*b)) || !count(trailer.len()) {
                    return Decoded::Error;
                }
                at = eol + 2;
                if trailer.is_empty() {
                    return Decoded::Complete(body, at);
                }
                if !trailer.contains(&b':') {
                    return Decoded::Error;
                }
            }
        }
        let size = size as usize;
        if wire.len() < at + size + 2 {
            if wire.len() > at + size && wire[at + size] != b'\r' {
                return Decoded::Error;
            }
            return Decoded::Incomplete;
        }
        body.extend_from_slice(&wire[at..at + size]);
        if &wire[at + size..at + size + 2] != b"\r\n" {
            return Decoded::Error;
        }
        at += size + 2;
    }
}

/// Chunked coding as clients read answers: a line may end in a bare LF, anything may follow a
/// size after `;` or whitespace, trailers are skipped up to a line of nothing (or only CRs).
fn reference_lenient(wire: &[u8]) -> Decoded {
    let mut at = 0;
    let mut body = Vec::new();
    loop {
        let Some(eol) = wire[at..].iter().position(|b| *b == b'\n').map(|i| at + i) else {
            return Decoded::Incomplete;
        };
        let Some((size, rest)) = chunk_size(&wire[at..eol]) else {
            return Decoded::Error;
        };
        let rest_ok =
            rest.is_empty() || rest == b"\r" || matches!(rest.first(), Some(b';' | b' ' | b'\t'));
        if !rest_ok {
            return Decoded::Error;
        }
        at = eol + 1;
        if size == 0 {
            loop {
                let Some(eol) = wire[at..].iter().position(|b| *b == b'\n').map(|i| at + i) else {
                    return Decoded::Incomplete;
                };
                let trailer = &wire[at..eol];
                at = eol + 1;
                if trailer.iter().all(|b| *b == b'\r') {
                    return Decoded::Complete(body, at);
                }
            }
        }
        let size = size as usize;
        if wire.len() < at + size + 1 {
            return Decoded::Incomplete;
        }
        body.extend_from_slice(&wire[at..at + size]);
        at += size;
        match &wire[at..] {
            [b'\n', ..] => at += 1,
            [b'\r', b'\n', ..] => at += 2,
            [b'\r'] => return Decoded::Incomplete,
            _ => return Decoded::Error,
        }
    }
}

/// Feeds `wire` to a decoder in pieces cut at `cuts`: the body, whether it ended, and what was
/// left in the buffer, or `None` at an error.
fn decode(mut decoder: Decoder, wire: &[u8], cuts: &[usize]) -> Option<(Vec<u8>, bool, Vec<u8>)> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (wire.len() + 1)).collect();
    points.push(wire.len());
    points.sort_unstable();
    let mut buf = BytesMut::new();
    let mut body = Vec::new();
    let mut from = 0;
    for to in points {
        buf.extend_from_slice(&wire[from..to]);
        from = to;
        let before = buf.len();
        let data = decoder.decode(&mut buf).ok()?;
        // Never more out than went in.
        assert!(data.len() <= before);
        body.extend_from_slice(&data);
        if decoder.is_done() {
            // Whatever follows the body stays for the next message.
            buf.extend_from_slice(&wire[from..]);
            return Some((body, true, buf.to_vec()));
        }
    }
    Some((body, decoder.is_done(), buf.to_vec()))
}

/// A well-formed chunked body with extensions and trailers, and what follows it.
#[derive(Clone, Debug)]
struct ChunkedBody {
    chunks: Vec<Vec<u8>>,
    extensions: Vec<Option<String>>,
    trailers: Vec<String>,
    after: Vec<u8>,
    /// Upper-case hex digits and leading zeros in sizes.
    upper: bool,
    zeros: usize,
}

impl ChunkedBody {
    fn wire(&self) -> Vec<u8> {
        let mut wire = Vec::new();
        for (chunk, extension) in self.chunks.iter().zip(&self.extensions) {
            let size = if self.upper {
                format!("{:X}", chunk.len())
            } else {
                format!("{:x}", chunk.len())
            };
            wire.extend_from_slice("0".repeat(self.zeros).as_bytes());
            wire.extend_from_slice(size.as_bytes());
            if let Some(extension) = extension {
                wire.extend_from_slice(extension.as_bytes());
            }
            wire.extend_from_slice(b"\r\n");
            wire.extend_from_slice(chunk);
            wire.extend_from_slice(b"\r\n");
        }
        wire.extend_from_slice(b"0\r\n");
        for trailer in &self.trailers {
            wire.extend_from_slice(trailer.as_bytes());
            wire.extend_from_slice(b"\r\n");
        }
        wire.extend_from_slice(b"\r\n");
        wire.extend_from_slice(&self.after);
        wire
    }

    fn body(&self) -> Vec<u8> {
        self.chunks.concat()
    }
}

fn chunked_bodies() -> impl Strategy<Value = ChunkedBody> {
    let chunk = prop::collection::vec(any::<u8>(), 1..40);
    let extension = prop::option::weighted(
        0.3,
        prop::sample::select(vec![
            ";a=1".to_string(),
            "; a=\"q r\"".to_string(),
            " ;x".to_string(),
            "\t;".to_string(),
            ";".to_string(),
        ]),
    );
    (
        prop::collection::vec((chunk, extension), 0..5),
        prop::collection::vec(
            prop::sample::select(vec!["X-T: t".to_string(), "Y:".to_string()]),
            0..2,
        ),
        prop::sample::select(vec![
            b"".to_vec(),
            b"GET /next HTTP/1.1\r\n\r\n".to_vec(),
            b"\r\n".to_vec(),
        ]),
        any::<bool>(),
        0usize..3,
    )
        .prop_map(|(chunks, trailers, after, upper, zeros)| {
            let (chunks, extensions) = chunks.into_iter().unzip();
            ChunkedBody {
                chunks,
                extensions,
                trailers,
                after,
                upper,
                zeros,
            }
        })
}

/// Checks a decoder against a reference on one wire, cut in pieces anywhere.
fn agrees(
    decoder: Decoder,
    reference: Decoded,
    wire: &[u8],
    cuts: &[usize],
) -> Result<(), TestCaseError> {
    let ours = decode(decoder, wire, cuts);
    match reference {
        Decoded::Complete(body, end) => {
            prop_assert_eq!(ours, Some((body, true, wire[end..].to_vec())));
        }
        Decoded::Error => prop_assert!(ours.is_none(), "accepted what the reference refuses"),
        // Not ended, whether or not the decoder has already seen an error in the part so far.
        Decoded::Incomplete => prop_assert!(!ours.is_some_and(|(_, done, _)| done)),
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(3000))]

    /// Well-formed bodies, cut anywhere: both decoders give the body and leave what follows.
    #[test]
    fn well_formed_chunked_bodies_decode_whole_however_cut(
        body in chunked_bodies(),
        cuts in prop::collection::vec(any::<usize>(), 0..6),
    ) {
        let wire = body.wire();
        let end = wire.len() - body.after.len();
        let want = Some((body.body(), true, body.after.clone()));
        prop_assert_eq!(reference_strict(&wire), Decoded::Complete(body.body(), end));
        prop_assert_eq!(decode(Decoder::for_request(Framing::Chunked), &wire, &cuts), want.clone());
        prop_assert_eq!(decode(Decoder::new(Framing::Chunked), &wire, &cuts), want);
    }

    /// Mutated bodies: the strict decoder (requests) accepts exactly what the strict reference
    /// does, the lenient one (answers) what the lenient reference does, with the same body and
    /// end; neither panics nor takes a byte past the end.
    #[test]
    fn mutated_chunked_bodies_decode_as_the_references_do(
        body in chunked_bodies(),
        muts in prop::collection::vec(mutation(), 1..4),
        cuts in prop::collection::vec(any::<usize>(), 0..6),
    ) {
        let wire = mutate(body.wire(), &muts);
        agrees(Decoder::for_request(Framing::Chunked), reference_strict(&wire), &wire, &cuts)?;
        agrees(Decoder::new(Framing::Chunked), reference_lenient(&wire), &wire, &cuts)?;
    }

    /// Random bytes, with bytes that matter to the coding more likely.
    #[test]
    fn random_bytes_decode_as_the_references_do(
        wire in prop::collection::vec(interesting_byte(), 0..64),
        cuts in prop::collection::vec(any::<usize>(), 0..4),
    ) {
        agrees(Decoder::for_request(Framing::Chunked), reference_strict(&wire), &wire, &cuts)?;
        agrees(Decoder::new(Framing::Chunked), reference_lenient(&wire), &wire, &cuts)?;
    }

    /// A length-framed body takes exactly its length, however the bytes come.
    #[test]
    fn length_framed_bodies_take_exactly_their_length(
        length in 0u64..64,
        wire in prop::collection::vec(any::<u8>(), 0..96),
        cuts in prop::collection::vec(any::<usize>(), 0..4),
    ) {
        let (body, done, rest) = decode(Decoder::new(Framing::Length(length)), &wire, &cuts).unwrap();
        let n = (length as usize).min(wire.len());
        prop_assert_eq!(&body[..], &wire[..n]);
        prop_assert_eq!(done, wire.len() >= length as usize);
        prop_assert_eq!(&rest[..], &wire[n..]);
    }
}

/// Extensions and trailers past the limit are refused in a request, as the reference says, and
/// a body that stops before its end is not taken for a whole one.
#[test]
fn the_limit_on_extensions_and_trailers_and_early_ends() {
    for len in [MAX_META - 2, MAX_META - 1, MAX_META, MAX_META + 1] {
        let long_extension = [&b"1;"[..], &vec![b'x'; len], b"\r\na\r\n0\r\n\r\n"].concat();
        let long_trailer = [&b"0\r\nX:"[..], &vec![b'x'; len], b"\r\n\r\n"].concat();
        for wire in [long_extension, long_trailer] {
            let reference = reference_strict(&wire);
            agrees(
                Decoder::for_request(Framing::Chunked),
                reference,
                &wire,
                &[],
            )
            .unwrap_or_else(|e| panic!("{len}: {e}"));
        }
    }
    let whole = b"5\r\nhello\r\n0\r\n\r\n";
    for end in 0..whole.len() {
        let wire = &whole[..end];
        assert_eq!(reference_strict(wire), Decoded::Incomplete, "{end}");
        let (_, done, _) = decode(Decoder::for_request(Framing::Chunked), wire, &[]).unwrap();
        assert!(!done, "{end}");
    }
}

// ---------------------------------------------------------------------------------------------
// A second server: hyper
// ---------------------------------------------------------------------------------------------

/// The body hyper's HTTP/1.1 server reads from the first request on `wire`, or `None` when it
/// refuses the request (or its body).
fn hyper_reads(wire: Vec<u8>) -> Option<Vec<u8>> {
    use http_body_util::{BodyExt, Empty};
    use hyper::body::Incoming;
    use hyper_util::rt::TokioIo;
    use std::sync::{Arc, Mutex};
    use tokio::io::AsyncWriteExt;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let (mut client, server) = tokio::io::duplex(64 << 10);
        let seen: Arc<Mutex<Option<Option<Vec<u8>>>>> = Arc::default();
        let service = {
            let seen = seen.clone();
            hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
                let seen = seen.clone();
                async move {
                    let body = request.into_body().collect().await.ok();
                    let mut seen = seen.lock().unwrap();
                    if seen.is_none() {
                        *seen = Some(body.map(|b| b.to_bytes().to_vec()));
                    }
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(Empty::<Bytes>::new()))
                }
            })
        };
        // The client half-closes after its request: hyper still answers it.
        let serving = hyper::server::conn::http1::Builder::new()
            .half_close(true)
            .serve_connection(TokioIo::new(server), service);
        let sending = async move {
            let _ = client.write_all(&wire).await;
            let _ = client.shutdown().await;
            // Read the answers until hyper closes, so that it is never blocked on writing.
            let _ = tokio::io::copy(&mut client, &mut tokio::io::sink()).await;
        };
        let limit = std::time::Duration::from_secs(5);
        let _ = tokio::time::timeout(limit, async { tokio::join!(serving, sending) }).await;
        let seen = seen.lock().unwrap().take();
        seen.flatten()
    })
}

/// What the codec reads from the first request on `wire`: its body, or `None` when it refuses
/// the request or its body, or the body does not end within the wire.
fn codec_reads(wire: &[u8]) -> Option<Vec<u8>> {
    let end = head_end(wire)?;
    let request = parse_request(&Bytes::copy_from_slice(&wire[..end])).ok()?;
    let (body, done, _) = decode(Decoder::for_request(request.body), &wire[end..], &[])?;
    done.then_some(body)
}

/// A request head, then a body: chunked (well-formed or mutated) or any bytes.
fn requests_with_bodies() -> impl Strategy<Value = Vec<u8>> {
    let body = prop_oneof![
        chunked_bodies().prop_map(|b| b.wire()),
        (chunked_bodies(), prop::collection::vec(mutation(), 1..3))
            .prop_map(|(b, muts)| mutate(b.wire(), &muts)),
        prop::collection::vec(interesting_byte(), 0..16),
    ];
    (request_heads(), body).prop_map(|(head, body)| [head, body].concat())
}

proptest! {
    #![proptest_config(config(400))]

    /// Whatever request both the codec and hyper's server accept, they read the same body
    /// from: the two never disagree on where a request ends. (Where they differ, hyper refuses
    /// what the codec takes: a Content-Length list of equal values, which RFC 9110 §8.6 lets a
    /// recipient take as one; the proxy sends its own length upstream in any case.)
    #[test]
    fn hyper_reads_the_same_body_from_every_request_both_accept(
        wire in requests_with_bodies(),
    ) {
        let ours = codec_reads(&wire);
        let theirs = hyper_reads(wire.clone());
        if let (Some(ours), Some(theirs)) = (&ours, &theirs) {
            prop_assert_eq!(ours, theirs);
        }
        if ours.is_some() && theirs.is_none() {
            let listed = String::from_utf8_lossy(&wire)
                .lines()
                .any(|l| l.to_ascii_lowercase().starts_with("content-length:") && l.contains(','));
            prop_assert!(listed, "hyper refuses a request the codec takes");
        }
    }
}
