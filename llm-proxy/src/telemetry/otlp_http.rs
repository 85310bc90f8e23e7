//! One OTLP/HTTP export: a protobuf POST to the collector and its answer, on a connection of its
//! own (`Connection: close`: one batch every few seconds needs no pool).
//!
//! Written here on a plain `TcpStream` and the proxy's own HTTP/1.1 codec (the answer's head,
//! its framing and its body are read by `crate::codec`, as the proxy reads an upstream's),
//! instead of with hyper's client: measured on the release binary, hyper's client for this one
//! body type added 336 KB (`cargo build --release -p llm-exporter`, 6.83 MB against 6.49 MB),
//! for a request that is always one head and one body of known length, and an answer of which
//! only the status and a few bytes of body matter.

use crate::codec::decode::Decoder;
use crate::codec::framing;
use crate::codec::head::{self, head_end, MAX_HEAD};
use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Where the collector listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    host: String,
    port: u16,
    /// `host[:port]` as the `Host` header writes it.
    authority: String,
    path: String,
}

impl Endpoint {
    /// From an absolute `http://` URL (checked by the caller).
    pub fn new(uri: &hyper::Uri) -> Endpoint {
        let host = uri.host().unwrap_or_default();
        Endpoint {
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port: uri.port_u16().unwrap_or(80),
            authority: uri
                .authority()
                .map(|a| a.as_str().to_owned())
                .unwrap_or_default(),
            path: uri
                .path_and_query()
                .map(|p| p.as_str().to_owned())
                .unwrap_or_else(|| "/".into()),
        }
    }
}

/// The largest answer read (head and body): a partial-success message is a few bytes.
const MAX_ANSWER: usize = 64 * 1024;

/// The collector's answer: its status and body.
#[derive(Debug, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

/// POSTs `body` as `application/x-protobuf`. The caller bounds the time.
pub async fn post(endpoint: &Endpoint, body: &[u8]) -> Result<Answer, String> {
    let mut stream = tokio::net::TcpStream::connect((endpoint.host.as_str(), endpoint.port))
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    let _ = stream.set_nodelay(true);
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-protobuf\r\nContent-Length: {}\r\nUser-Agent: llm-proxy/{}\r\nConnection: close\r\n\r\n",
        endpoint.path,
        endpoint.authority,
        body.len(),
        env!("CARGO_PKG_VERSION"),
    );
    stream
        .write_all(head.as_bytes())
        .await
        .and(stream.write_all(body).await)
        .map_err(|e| format!("sending: {e}"))?;
    read_answer(&mut stream).await
}

/// Reads the collector's answer as the proxy reads an upstream's: the head, then the body as
/// its framing says, at most `MAX_ANSWER` bytes of it.
async fn read_answer(stream: &mut tokio::net::TcpStream) -> Result<Answer, String> {
    let mut buf = BytesMut::with_capacity(4096);
    let head_len = loop {
        if let Some(len) = head_end(&buf) {
            break len;
        }
        if buf.len() > MAX_HEAD {
            return Err(format!("the answer's head is over {MAX_HEAD} bytes"));
        }
        if read_more(stream, &mut buf).await? == 0 {
            return Err("the collector closed the connection without an answer".into());
        }
    };
    let head = head::parse_response(&buf.split_to(head_len).freeze())
        .map_err(|e| format!("a malformed answer: {e}"))?;
    // Interim answers (100 Continue) are not expected: the request sends no Expect.
    let (body_framing, _) = framing::response_body(false, head.status, &head.headers)
        .map_err(|e| format!("a malformed answer: {e}"))?;
    let mut decoder = Decoder::new(body_framing);
    let mut body = Vec::new();
    loop {
        let piece = decoder
            .decode(&mut buf)
            .map_err(|e| format!("a malformed answer: {e}"))?;
        if body.len() + piece.len() > MAX_ANSWER {
            return Err(format!("the answer is over {MAX_ANSWER} bytes"));
        }
        body.extend_from_slice(&piece);
        if decoder.is_done() {
            break;
        }
        if read_more(stream, &mut buf).await? == 0 {
            if decoder.at_eof() {
                break;
            }
            return Err("the answer's body was cut short".into());
        }
    }
    Ok(Answer {
        status: head.status.as_u16(),
        body,
    })
}

async fn read_more(
    stream: &mut tokio::net::TcpStream,
    buf: &mut BytesMut,
) -> Result<usize, String> {
    buf.reserve(4096);
    stream
        .read_buf(buf)
        .await
        .map_err(|e| format!("reading the answer: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// A one-shot collector on loopback that answers `answer` and hands back the request.
    fn collector(answer: &'static [u8]) -> (Endpoint, std::thread::JoinHandle<Vec<u8>>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let thread = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            // The request is the head and a 3-byte body.
            while !request.ends_with(b"\r\n\r\nabc") {
                let n = conn.read(&mut buf).unwrap();
                assert!(n > 0, "the request ended early");
                request.extend_from_slice(&buf[..n]);
            }
            conn.write_all(answer).unwrap();
            request
        });
        let uri: hyper::Uri = format!("http://127.0.0.1:{port}/v1/traces")
            .parse()
            .unwrap();
        (Endpoint::new(&uri), thread)
    }

    fn run<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn the_request_is_one_protobuf_post_and_the_answer_is_read_by_its_length() {
        let (endpoint, collector) =
            collector(b"HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 2\r\n\r\nxy");
        let answer = run(post(&endpoint, b"abc")).unwrap();
        assert_eq!(
            answer,
            Answer {
                status: 200,
                body: b"xy".to_vec()
            }
        );
        let request = String::from_utf8(collector.join().unwrap()).unwrap();
        let port = endpoint.port;
        assert_eq!(
            request,
            format!(
                "POST /v1/traces HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/x-protobuf\r\nContent-Length: 3\r\nUser-Agent: llm-proxy/{}\r\nConnection: close\r\n\r\nabc",
                env!("CARGO_PKG_VERSION")
            )
        );
    }

    #[test]
    fn chunked_and_close_delimited_answers_and_error_statuses() {
        let (endpoint, _c) =
            collector(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nxy\r\n0\r\n\r\n");
        let answer = run(post(&endpoint, b"abc")).unwrap();
        assert_eq!((answer.status, &answer.body[..]), (200, &b"xy"[..]));
        let (endpoint, _c) = collector(b"HTTP/1.0 200 OK\r\n\r\nuntil-close");
        assert_eq!(run(post(&endpoint, b"abc")).unwrap().body, b"until-close");
        let (endpoint, _c) =
            collector(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(run(post(&endpoint, b"abc")).unwrap().status, 503);
    }

    #[test]
    fn malformed_or_cut_answers_are_errors() {
        for answer in [
            &b"nonsense\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
            b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-",
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nxyz",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nxy\r\n0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nxy\r\n",
            b"",
        ] {
            let (endpoint, _c) = collector(answer);
            let got = run(post(&endpoint, b"abc"));
            assert!(
                got.is_err(),
                "{:?}: {got:?}",
                String::from_utf8_lossy(answer)
            );
        }
    }
}
