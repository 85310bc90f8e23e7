//! Writing heads and chunk framing into a buffer, for both roles: the request the proxy sends
//! upstream and the response it sends the client. The framing fields a message came with are
//! never passed on; the proxy writes its own from the body it sends (RFC 9112 §6.3).

use super::fields::{self, Fields};
use super::framing::Framing;
use hyper::{Method, StatusCode};
use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

/// The request line and header fields of a request sent upstream, with `Host` set to the
/// upstream's authority and the proxy's own framing (`Framing::Length` or `Chunked`).
pub fn request_head(
    out: &mut Vec<u8>,
    method: &Method,
    target: [&[u8]; 2],
    authority: &[u8],
    headers: &Fields,
    framing: Framing,
) {
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target[0]);
    out.extend_from_slice(target[1]);
    out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    out.extend_from_slice(authority);
    out.extend_from_slice(b"\r\n");
    let mut had_length = false;
    for (name, value) in headers.iter() {
        if name.eq_ignore_ascii_case(b"content-length") {
            had_length = true;
            continue;
        }
        if name.eq_ignore_ascii_case(b"host") || name.eq_ignore_ascii_case(b"transfer-encoding") {
            continue;
        }
        fields::write_line(out, name, value);
    }
    match framing {
        // An empty body needs no length unless the client gave one (a POST of nothing).
        Framing::Length(0) if !had_length => {}
        Framing::Length(n) => content_length(out, n),
        Framing::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        Framing::Empty | Framing::Close => {}
    }
    out.extend_from_slice(b"\r\n");
}

/// The status line and header fields of a response to the client, with the proxy's own
/// framing; `Framing::Empty`: no body follows (HEAD, 1xx, 204, 304), the upstream's length
/// stands as it came (where a length may be sent at all).
pub fn response_head(
    out: &mut Vec<u8>,
    status: StatusCode,
    headers: &Fields,
    version_11: bool,
    framing: Framing,
    keep_alive: bool,
) {
    out.extend_from_slice(if version_11 {
        b"HTTP/1.1 "
    } else {
        b"HTTP/1.0 "
    });
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or_default().as_bytes());
    out.extend_from_slice(b"\r\n");
    let no_length = matches!(status.as_u16(), 100..=199 | 204);
    for (name, value) in headers.iter() {
        let framing_field = name.eq_ignore_ascii_case(b"transfer-encoding")
            || (name.eq_ignore_ascii_case(b"content-length")
                && (framing != Framing::Empty || no_length));
        if framing_field {
            continue;
        }
        fields::write_line(out, name, value);
    }
    match framing {
        Framing::Length(n) => content_length(out, n),
        Framing::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        Framing::Empty | Framing::Close => {}
    }
    if !headers.contains("date") {
        out.extend_from_slice(b"date: ");
        with_http_date(|date| out.extend_from_slice(date));
        out.extend_from_slice(b"\r\n");
    }
    if version_11 && !keep_alive {
        out.extend_from_slice(b"connection: close\r\n");
    } else if !version_11 && keep_alive {
        out.extend_from_slice(b"connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

fn content_length(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(b"content-length: ");
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// What ends a chunk's data.
pub const CHUNK_END: &[u8] = b"\r\n";
/// The end of a chunked body: the last chunk, no trailers.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";
/// A chunk's end and the body's, in one piece.
pub const CHUNK_END_LAST: &[u8] = b"\r\n0\r\n\r\n";

/// `n` in hexadecimal with the CRLF after it, as a chunk's size line.
pub fn chunk_size(mut n: usize, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len() - 2;
    buf[i..].copy_from_slice(b"\r\n");
    loop {
        i -= 1;
        buf[i] = b"0123456789abcdef"[n & 15];
        n >>= 4;
        if n == 0 {
            return &buf[i..];
        }
    }
}

/// The current time as an HTTP date, formatted once a second per thread.
fn with_http_date(use_date: impl FnOnce(&[u8])) {
    thread_local! {
        static DATE: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let now = SystemTime::now();
    let second = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    DATE.with(|date| {
        let mut date = date.borrow_mut();
        if date.0 != second {
            *date = (second, httpdate::fmt_http_date(now));
        }
        use_date(date.1.as_bytes());
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_size_lines_are_hexadecimal() {
        let mut buf = [0u8; 20];
        assert_eq!(chunk_size(0, &mut buf), b"0\r\n");
        assert_eq!(chunk_size(255, &mut buf), b"ff\r\n");
        assert_eq!(chunk_size(4096 + 10, &mut buf), b"100a\r\n");
        assert_eq!(chunk_size(usize::MAX, &mut buf), b"ffffffffffffffff\r\n");
    }
}
