//! One OTLP/HTTP export: a protobuf POST to the collector and its answer, on a connection of its
//! own (`Connection: close`: one batch every few seconds needs no pool).
//!
//! Written here on a plain `TcpStream`, the answer's head read by httparse (hyper's own
//! tokenizer, already in the tree for the proxy's codec), instead of with hyper's client:
//! measured on the release binary, hyper's client for this one body type added 336 KB
//! (`cargo build --release -p llm-exporter`, 6.83 MB against 6.49 MB), for a request that is
//! always one head and one body of known length, and an answer of which only the status and a
//! few bytes of body matter.

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

/// The collector's answer: its status and body (empty when it was chunked).
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
    let mut answer = Vec::with_capacity(1024);
    let mut buf = [0u8; 4096];
    loop {
        if let Some(done) = parse(&answer)? {
            return Ok(done);
        }
        let n = stream
            .read(&mut buf)
            .await
            .map_err(|e| format!("reading the answer: {e}"))?;
        if n == 0 {
            return match parse_at_end(&answer)? {
                Some(done) => Ok(done),
                None => Err("the collector closed the connection without an answer".into()),
            };
        }
        if answer.len() + n > MAX_ANSWER {
            return Err(format!("the answer is over {MAX_ANSWER} bytes"));
        }
        answer.extend_from_slice(&buf[..n]);
    }
}

/// The whole answer when `bytes` hold its head and all of a body of known length; `None`: read
/// on.
fn parse(bytes: &[u8]) -> Result<Option<Answer>, String> {
    let Some((status, body_start, length)) = head(bytes)? else {
        return Ok(None);
    };
    match length {
        Length::Known(n) if bytes.len() >= body_start + n => Ok(Some(Answer {
            status,
            body: bytes[body_start..body_start + n].to_vec(),
        })),
        // A chunked body is not decoded: the status is what counts.
        Length::Chunked => Ok(Some(Answer {
            status,
            body: Vec::new(),
        })),
        _ => Ok(None),
    }
}

/// The answer once the collector closed the connection: a body without a length ends there.
fn parse_at_end(bytes: &[u8]) -> Result<Option<Answer>, String> {
    match head(bytes)? {
        Some((status, body_start, Length::UntilClose)) => Ok(Some(Answer {
            status,
            body: bytes[body_start..].to_vec(),
        })),
        Some(_) => Err("the answer's body was cut short".into()),
        None => Ok(None),
    }
}

enum Length {
    Known(usize),
    Chunked,
    UntilClose,
}

/// The status, where the body starts and how long it is; `None` while the head is incomplete.
fn head(bytes: &[u8]) -> Result<Option<(u16, usize, Length)>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let body_start = match response.parse(bytes) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("a malformed answer: {e}")),
    };
    let status = response.code.unwrap_or(0);
    let mut length = Length::UntilClose;
    for header in response.headers.iter() {
        if header.name.eq_ignore_ascii_case("transfer-encoding") {
            length = Length::Chunked;
        } else if header.name.eq_ignore_ascii_case("content-length")
            && !matches!(length, Length::Chunked)
        {
            let n = std::str::from_utf8(header.value)
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .ok_or("a malformed Content-Length")?;
            length = Length::Known(n);
        }
    }
    // Interim answers (100 Continue) are not expected: the request sends no Expect.
    Ok(Some((status, body_start, length)))
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
        assert_eq!(run(post(&endpoint, b"abc")).unwrap().status, 200);
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
