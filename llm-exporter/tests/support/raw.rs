//! A raw-TCP fake upstream that answers with the exact bytes a test gives it (malformed heads,
//! odd framing, connections closed at chosen moments), and a raw client for the proxy: what a
//! general HTTP library would refuse to send or tidy up on the way. Responses are read by
//! `common::testing::read_response`.

#![allow(dead_code)]

use common::testing::{read_response, HttpResponse};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the fake does with one request it read.
pub enum Reply {
    /// Send these bytes and wait for the next request on the connection.
    Keep(Vec<u8>),
    /// Send these bytes (possibly none) and close the connection.
    Close(Vec<u8>),
}

/// (connection number from 1, request number on that connection from 1, raw request bytes)
pub type RawHandler = Arc<dyn Fn(usize, usize, &[u8]) -> Reply + Send + Sync>;

/// Every request read: connection number and the raw bytes (head and body as framed).
pub type RawSeen = Arc<Mutex<Vec<(usize, Vec<u8>)>>>;

pub struct RawFake {
    pub addr: SocketAddr,
    pub seen: RawSeen,
}

impl RawFake {
    pub fn start(handler: RawHandler) -> RawFake {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        std::thread::spawn(move || {
            for (id, conn) in listener.incoming().enumerate() {
                let Ok(conn) = conn else { continue };
                let (s, h) = (s.clone(), handler.clone());
                std::thread::spawn(move || serve(conn, id + 1, &s, &*h));
            }
        });
        RawFake { addr, seen }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The request lines seen, in order.
    pub fn request_lines(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|(_, r)| {
                let line = r.split(|b| *b == b'\n').next().unwrap_or_default();
                String::from_utf8_lossy(line).trim_end().to_string()
            })
            .collect()
    }
}

fn serve(
    mut conn: TcpStream,
    id: usize,
    seen: &RawSeen,
    handler: &(dyn Fn(usize, usize, &[u8]) -> Reply + Send + Sync),
) {
    let _ = conn.set_nodelay(true);
    let mut buf = Vec::new();
    let mut n = 0;
    while let Some(request) = read_request(&mut conn, &mut buf) {
        n += 1;
        seen.lock().unwrap().push((id, request.clone()));
        match handler(id, n, &request) {
            Reply::Keep(bytes) => {
                if conn.write_all(&bytes).is_err() {
                    return;
                }
            }
            Reply::Close(bytes) => {
                let _ = conn.write_all(&bytes);
                return;
            }
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The value of a header in a raw head (case-insensitive name), first occurrence.
pub fn header<'a>(head: &'a [u8], name: &str) -> Option<&'a str> {
    let text = std::str::from_utf8(head).ok()?;
    text.split("\r\n").skip(1).find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then_some(v.trim())
    })
}

/// One request as a simple server would frame it: a head, then a body by Content-Length or
/// chunked coding (none without either), the rest kept in `buf` for the next request.
fn read_request(conn: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    let head_end = loop {
        if let Some(i) = find(buf, b"\r\n\r\n") {
            break i + 4;
        }
        fill(conn, buf)?;
    };
    let head = buf[..head_end].to_vec();
    let chunked = header(&head, "transfer-encoding").is_some_and(|v| v.contains("chunked"));
    let end = if chunked {
        loop {
            if let Some(i) = find(&buf[head_end..], b"0\r\n\r\n") {
                break head_end + i + 5;
            }
            fill(conn, buf)?;
        }
    } else {
        let len: usize = header(&head, "content-length").map_or(0, |v| v.parse().unwrap());
        while buf.len() < head_end + len {
            fill(conn, buf)?;
        }
        head_end + len
    };
    Some(buf.drain(..end).collect())
}

fn fill(conn: &mut TcpStream, buf: &mut Vec<u8>) -> Option<()> {
    let mut chunk = [0u8; 16 << 10];
    match conn.read(&mut chunk) {
        Ok(0) | Err(_) => None,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            Some(())
        }
    }
}

/// Sends `request` on `conn` and reads one response (`common::testing::read_response`: framed
/// by Content-Length or chunked coding, a response with neither read to the close), leaving the
/// next pipelined one in the stream. None if the connection ends before a whole response.
pub fn exchange(conn: &mut TcpStream, request: &[u8]) -> Option<HttpResponse> {
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    conn.write_all(request).ok()?;
    read_response(conn).ok()
}

/// One request on a new connection to the proxy.
pub fn request(port: u16, request: &[u8]) -> Option<HttpResponse> {
    let mut conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
    exchange(&mut conn, request)
}
