//! Request and response heads (RFC 9112 §3, §4, §5), both read with `httparse`, the tokenizer
//! hyper uses: one parser for the two roles, as hyper's `Http1Transaction` has it. Names and
//! values stay slices of the buffer the head was read into. Line folding, a space before a
//! colon and malformed fields are refused, not guessed at; a line may end in a bare LF, as
//! httparse (and hyper) accept.

use super::fields::Fields;
use super::framing::{self, Framing, Refusal};
use bytes::Bytes;
use hyper::{Method, StatusCode, Uri, Version};

/// Longest head accepted, interim answers before a response included (hyper's default buffer
/// limit was about 400 KiB; nginx's `large_client_header_buffers` allow 4 x 8 KiB).
pub const MAX_HEAD: usize = 64 << 10;
/// Most header fields accepted in a head (hyper's default).
pub const MAX_HEADERS: usize = 100;

/// The length of the head up to and including its empty line, once it is all there.
pub fn head_end(buf: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = memchr::memchr(b'\n', &buf[from..]) {
        let at = from + i + 1;
        match buf.get(at..) {
            Some([b'\n', ..]) => return Some(at + 1),
            Some([b'\r', b'\n', ..]) => return Some(at + 2),
            _ => from = at,
        }
    }
    None
}

/// A client's request head, as the server read and checked it.
pub struct RequestHead {
    pub method: Method,
    pub uri: Uri,
    pub headers: Fields,
}

/// A request head, checked, with what its fields decide.
pub struct Request {
    pub head: RequestHead,
    pub version: Version,
    pub body: Framing,
    pub keep_alive: bool,
    pub expect_continue: bool,
}

/// Parses and checks a whole request head (up to its empty line); the status to refuse it with
/// when it is not acceptable.
pub fn parse_request(head: &Bytes) -> Result<Request, StatusCode> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut slots);
    match req.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Err(httparse::Error::TooManyHeaders) => {
            return Err(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
        }
        Err(httparse::Error::Version) => return Err(StatusCode::HTTP_VERSION_NOT_SUPPORTED),
        _ => return Err(StatusCode::BAD_REQUEST),
    }
    let version = version(req.version).ok_or(StatusCode::HTTP_VERSION_NOT_SUPPORTED)?;
    let method = Method::from_bytes(req.method.unwrap_or_default().as_bytes())
        .map_err(|_| StatusCode::BAD_REQUEST)?;
    if method == Method::CONNECT {
        // A tunnel is not an API call: nothing here can carry one.
        return Err(StatusCode::NOT_IMPLEMENTED);
    }
    let target = req.path.unwrap_or_default();
    let uri = Uri::from_maybe_shared(head.slice_ref(target.as_bytes()))
        .map_err(|_| StatusCode::BAD_REQUEST)?;
    // Origin form (`/path?query`), absolute form (`http://host/path`), or `*` for OPTIONS;
    // never a bare authority.
    if !(target.starts_with('/')
        || uri.scheme().is_some()
        || target == "*" && method == Method::OPTIONS)
    {
        return Err(StatusCode::BAD_REQUEST);
    }
    let headers = fields(head, req.headers);
    let version_11 = version == Version::HTTP_11;
    let body = framing::request_body(&headers, version_11).map_err(Refusal::status)?;
    let keep_alive = framing::persists(&headers, version_11);
    let expect_continue = version_11 && headers.has_token("expect", "100-continue");
    Ok(Request {
        head: RequestHead {
            method,
            uri,
            headers,
        },
        version,
        body,
        keep_alive,
        expect_continue,
    })
}

/// An upstream's response head.
pub struct ResponseHead {
    pub status: StatusCode,
    pub headers: Fields,
    pub version_11: bool,
}

/// Parses a whole response head (up to its empty line).
pub fn parse_response(head: &Bytes) -> Result<ResponseHead, &'static str> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut res = httparse::Response::new(&mut slots);
    match res.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err("incomplete response head"),
        Err(httparse::Error::Version) => return Err("the upstream did not answer HTTP/1.x"),
        Err(httparse::Error::Status) => return Err("malformed status line"),
        Err(httparse::Error::TooManyHeaders) => return Err("too many header fields"),
        Err(httparse::Error::HeaderName) => return Err("malformed header name"),
        Err(httparse::Error::HeaderValue) => return Err("malformed header value"),
        Err(_) => return Err("malformed response head"),
    }
    let version = version(res.version).ok_or("the upstream did not answer HTTP/1.x")?;
    let status = res
        .code
        .and_then(|code| StatusCode::from_u16(code).ok())
        .ok_or("malformed status line")?;
    Ok(ResponseHead {
        status,
        headers: fields(head, res.headers),
        version_11: version == Version::HTTP_11,
    })
}

fn version(minor: Option<u8>) -> Option<Version> {
    match minor {
        Some(1) => Some(Version::HTTP_11),
        Some(0) => Some(Version::HTTP_10),
        _ => None,
    }
}

/// The parsed fields as slices of the head (httparse has checked that names are tokens and
/// values have no control characters).
fn fields(head: &Bytes, parsed: &[httparse::Header<'_>]) -> Fields {
    let mut fields = Fields::with_capacity(parsed.len());
    for field in parsed {
        fields.push(
            head.slice_ref(field.name.as_bytes()),
            head.slice_ref(field.value.trim_ascii()),
        );
    }
    fields
}

/// What the bytes an upstream sent before the whole request went out are.
#[derive(Debug, PartialEq, Eq)]
pub enum Front {
    /// Not yet enough to tell (nothing at all, or part of a status line or interim head).
    Undecided,
    /// A whole interim head of this length.
    Interim(usize),
    /// The final answer (or not HTTP at all: for the response head's parser to refuse).
    Final,
}

/// Tells an interim answer (`100 Continue`, `103 Early Hints`) from the final one.
pub fn front(answer: &[u8]) -> Front {
    const START: &[u8] = b"HTTP/1.";
    let known = answer.len().min(START.len());
    if answer[..known] != START[..known] {
        return Front::Final;
    }
    // The status code is at 9..12; 101 is final here (the client refuses it).
    match answer.get(9..12) {
        None if answer.get(9).is_some_and(|b| *b != b'1') => Front::Final,
        None => Front::Undecided,
        Some(b"101") => Front::Final,
        Some([b'1', ..]) => match head_end(answer) {
            Some(len) => Front::Interim(len),
            None => Front::Undecided,
        },
        Some(_) => Front::Final,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(head: &str) -> Result<Request, StatusCode> {
        parse_request(&Bytes::copy_from_slice(head.as_bytes()))
    }

    fn framing(head: &str) -> Result<Framing, StatusCode> {
        parse(head).map(|p| p.body)
    }

    #[test]
    fn request_framing_follows_rfc_9112_and_refuses_what_could_smuggle() {
        let bad = Err(StatusCode::BAD_REQUEST);
        for (head, want) in [
            ("GET / HTTP/1.1\r\n\r\n", Ok(Framing::Empty)),
            (
                "POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n",
                Ok(Framing::Length(5)),
            ),
            (
                "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5, 5\r\n\r\n",
                Ok(Framing::Length(5)),
            ),
            (
                "POST / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n",
                Ok(Framing::Chunked),
            ),
            (
                "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
                bad,
            ),
            ("POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n", bad),
            ("POST / HTTP/1.1\r\nContent-Length: 5 5\r\n\r\n", bad),
            ("POST / HTTP/1.1\r\nContent-Length:\r\n\r\n", bad),
            (
                "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
                bad,
            ),
            (
                "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
                bad,
            ),
            ("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", bad),
            ("POST / HTTP/1.1\r\nTransfer-Encoding: \r\n\r\n", bad),
            (
                "POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
                Err(StatusCode::NOT_IMPLEMENTED),
            ),
            // Malformed heads: line folding, a space before the colon, a bare authority.
            ("GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n", bad),
            ("GET / HTTP/1.1\r\nContent-Length : 5\r\n\r\n", bad),
            ("GET example.com:80 HTTP/1.1\r\n\r\n", bad),
            (
                "GET / HTTP/2.0\r\n\r\n",
                Err(StatusCode::HTTP_VERSION_NOT_SUPPORTED),
            ),
            (
                "CONNECT example.com:443 HTTP/1.1\r\n\r\n",
                Err(StatusCode::NOT_IMPLEMENTED),
            ),
            ("GET * HTTP/1.1\r\n\r\n", bad),
            ("OPTIONS * HTTP/1.1\r\n\r\n", Ok(Framing::Empty)),
        ] {
            assert_eq!(framing(head), want, "{head:?}");
        }
        let many = format!("GET / HTTP/1.1\r\n{}\r\n", "X: y\r\n".repeat(101));
        assert_eq!(
            framing(&many),
            Err(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
        );
    }

    #[test]
    fn persistence_and_expectations_follow_the_version() {
        let p = parse("GET /a?b HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        assert!(p.keep_alive && !p.expect_continue);
        assert_eq!(p.head.uri.path_and_query().unwrap().as_str(), "/a?b");
        assert!(
            !parse("GET / HTTP/1.1\r\nConnection: Close\r\n\r\n")
                .unwrap()
                .keep_alive
        );
        assert!(!parse("GET / HTTP/1.0\r\n\r\n").unwrap().keep_alive);
        assert!(
            parse("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
                .unwrap()
                .keep_alive
        );
        assert!(
            parse("POST / HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n")
                .unwrap()
                .expect_continue
        );
        let absolute = parse("GET http://h/p?q HTTP/1.1\r\n\r\n").unwrap();
        assert_eq!(absolute.head.uri.path_and_query().unwrap(), "/p?q");
    }

    #[test]
    fn interim_answers_are_told_from_the_final_one() {
        assert_eq!(front(b""), Front::Undecided);
        assert_eq!(front(b"HTTP/1.1 1"), Front::Undecided);
        assert_eq!(front(b"HTTP/1.1 100 Continue\r\n"), Front::Undecided);
        assert_eq!(
            front(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 2"),
            Front::Interim(25)
        );
        assert_eq!(
            front(b"HTTP/1.1 103 Early Hints\r\nLink: x\r\n\r\n"),
            Front::Interim(37)
        );
        for last in [
            &b"HTTP/1.1 2"[..],
            b"HTTP/1.1 413",
            b"HTTP/1.1 101 Switching",
            b"garbage",
        ] {
            assert_eq!(front(last), Front::Final, "{last:?}");
        }
    }

    #[test]
    fn heads_parse_and_odd_ones_are_refused() {
        let head = b"HTTP/1.1 200 OK\r\nServer: llama.cpp\r\nContent-Type: text/event-stream\r\nX-A:  b c \r\nX-A: d\r\n\r\nbody";
        let end = head_end(head).unwrap();
        assert_eq!(&head[end..], b"body");
        let r = parse_response(&Bytes::from_static(&head[..end])).unwrap();
        assert_eq!((r.status, r.version_11), (StatusCode::OK, true));
        assert_eq!(r.headers.get_str("server"), Some("llama.cpp"));
        let values: Vec<_> = r.headers.get_all("x-a").collect();
        assert_eq!(values, [&b"b c"[..], b"d"]);
        assert_eq!(head_end(b"HTTP/1.0 204\n\nx"), Some(14));
        assert_eq!(head_end(b"HTTP/1.1 200 OK\r\nA: b\r\n"), None);
        let r = parse_response(&Bytes::from_static(b"HTTP/1.0 204\n\n")).unwrap();
        assert_eq!((r.status, r.version_11), (StatusCode::NO_CONTENT, false));
        for bad in [
            &b"HTTP/2 200 OK\r\n\r\n"[..],
            b"HTTP/1.1 20 OK\r\n\r\n",
            b"HTTP/1.1 2000\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nbad name: x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\n folded: x\r\n\r\n",
        ] {
            assert!(parse_response(&Bytes::from_static(bad)).is_err(), "{bad:?}");
        }
    }
}
