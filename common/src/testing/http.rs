//! A plain HTTP/1.1 client for the tests: one GET on a fresh connection, read to its close. Hand
//! written rather than a client crate, so the tests see the bytes the exporter sent (status,
//! header names as sent, chunked coding decoded here) and no library tidies them up first.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

/// A loopback port nobody listens on right now, below the kernel's ephemeral range (32768 and
/// up on Linux), so that an outgoing connection of a parallel test cannot take it between now
/// and the moment the exporter binds it (port 0 would hand out exactly such ports). Ports are
/// handed out in turn from a start that depends on the process id.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const COUNT: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(7919) % COUNT,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    for _ in 0..COUNT {
        let port = (FIRST + NEXT.fetch_add(1, Ordering::Relaxed) % COUNT) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!(
        "no free loopback port between {FIRST} and {}",
        FIRST + COUNT
    )
}

/// A response as the tests look at it: status, headers (lower-case names), body bytes (chunked
/// coding removed), and the head as it was sent.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The status line and header lines with their CRLFs, up to and including the empty line.
    pub head: String,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// GET `path` with extra headers; the connection is closed after the response. A hung server
/// fails the request after 30 s instead of hanging the test.
pub fn http_get(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<HttpResponse> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes())?;
    read_response(&mut stream)
}

/// Reads one response to a request other than HEAD from `stream`, and not a byte more, so that
/// the next response on a kept-alive connection stays in the stream: the head up to its empty
/// line, then the body as the head frames it (RFC 9112 section 6.3): none for 1xx, 204 and 304;
/// chunked when Transfer-Encoding ends in `chunked` (trailers read and dropped); else
/// Content-Length bytes; else everything up to the close. A connection that ends early, a head
/// without a status, or a bad chunk size is an error.
pub fn read_response(stream: &mut impl Read) -> std::io::Result<HttpResponse> {
    let head = read_head(stream)?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| invalid("no status line"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let field = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v);
    let body = if (100..200).contains(&status) || status == 204 || status == 304 {
        Vec::new()
    } else if let Some(codings) = field("transfer-encoding") {
        let chunked = codings
            .rsplit(',')
            .next()
            .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"));
        if chunked {
            read_chunked(stream)?
        } else {
            read_to_close(stream)?
        }
    } else if let Some(length) = field("content-length") {
        let length: usize = length.parse().map_err(|_| invalid("bad Content-Length"))?;
        let mut body = vec![0; length];
        stream.read_exact(&mut body)?;
        body
    } else {
        read_to_close(stream)?
    };
    Ok(HttpResponse {
        status,
        headers,
        body,
        head,
    })
}

fn invalid(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string())
}

/// The head, up to and including its empty line.
fn read_head(stream: &mut impl Read) -> std::io::Result<String> {
    let head = read_through(stream, b"\r\n\r\n")?;
    Ok(String::from_utf8_lossy(&head).into_owned())
}

/// A line up to its CRLF, without it.
fn read_line(stream: &mut impl Read) -> std::io::Result<String> {
    let mut line = read_through(stream, b"\r\n")?;
    line.truncate(line.len() - 2);
    String::from_utf8(line).map_err(|_| invalid("a line that is not UTF-8"))
}

/// The bytes up to and including `end`, read one at a time (a test's heads and lines are short)
/// so that nothing after `end` is taken from the stream; at most 1 MiB.
fn read_through(stream: &mut impl Read, end: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut read = Vec::new();
    let mut byte = [0u8; 1];
    while !read.ends_with(end) {
        if read.len() > 1 << 20 {
            return Err(invalid("no end of line within 1 MiB"));
        }
        stream.read_exact(&mut byte)?;
        read.push(byte[0]);
    }
    Ok(read)
}

fn read_chunked(stream: &mut impl Read) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line = read_line(stream)?;
        let size_text = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| invalid("bad chunk size"))?;
        if size == 0 {
            // Trailer fields, if any, up to the empty line.
            while !read_line(stream)?.is_empty() {}
            return Ok(body);
        }
        let start = body.len();
        body.resize(start + size, 0);
        stream.read_exact(&mut body[start..])?;
        if !read_line(stream)?.is_empty() {
            return Err(invalid("no CRLF after a chunk"));
        }
    }
}

fn read_to_close(stream: &mut impl Read) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    stream.read_to_end(&mut body)?;
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &[u8]) -> std::io::Result<HttpResponse> {
        read_response(&mut &raw[..])
    }

    #[test]
    fn responses_parse_plain_and_chunked() {
        let r = parse(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nhello").unwrap();
        assert_eq!(
            (r.status, r.header("content-type"), r.text().as_str()),
            (200, Some("text/plain"), "hello")
        );
        assert_eq!(
            r.head,
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n"
        );
        let r = parse(b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\n\r\n").unwrap();
        assert_eq!((r.status, r.text().as_str()), (404, "abcde"));
        assert!(parse(b"garbage").is_err());
        assert!(parse(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort").is_err());
        assert!(parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n").is_err());
    }

    /// Two responses in one read: the first is read to its framed end and the second stays
    /// for the next call, whatever framing each uses.
    #[test]
    fn one_response_is_read_and_the_next_stays_in_the_stream() {
        let raw: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na\
            HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nb\r\n0\r\nT: x\r\n\r\n\
            HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n\
            HTTP/1.0 200 OK\r\n\r\nto the close";
        let mut stream = raw;
        let bodies: Vec<String> = (0..4)
            .map(|_| read_response(&mut stream).unwrap().text())
            .collect();
        assert_eq!(bodies, ["a", "b", "", "to the close"]);
    }
}
