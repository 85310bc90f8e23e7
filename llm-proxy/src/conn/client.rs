//! The proxy's side of the upstream connection: HTTP/1.1 over plain TCP, written for this one
//! job. The response body is read straight from the socket by the task that writes to the
//! client (see `body.rs`), so a read of several chunks goes out as one write, with no task or
//! channel in between (a general client, hyper's, runs each connection as a task of its own and
//! hands each chunk over). Each proxy thread keeps its own idle connections, as nginx's workers
//! do.

use crate::codec::decode::Decoder;
use crate::codec::fields::Fields;
use crate::codec::framing::{self, Framing};
use crate::codec::head::{front, head_end, parse_response, Front, ResponseHead, MAX_HEAD};
use crate::codec::write;
use bytes::{Buf, Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame};
use hyper::header::HeaderValue;
use hyper::{Method, StatusCode, Uri};
use std::future::poll_fn;
use std::io::ErrorKind as IoKind;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::Poll;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Idle connections older than this are closed rather than used: less than llama-server's own
/// keep-alive timeout (cpp-httplib closes idle connections after 5 s), so that the proxy rarely
/// takes a connection the upstream is closing (that race is retried once, see `send`).
const IDLE_TIMEOUT: Duration = Duration::from_secs(4);
/// Idle connections kept per proxy thread (nginx's `keepalive` in the bench is 256).
const MAX_IDLE: usize = 256;
/// Request bytes gathered before a write.
const WRITE_BATCH: usize = 64 << 10;

/// Why no response head came.
#[derive(Debug)]
pub enum SendError {
    /// No connection could be made.
    Unreachable(String),
    /// The proxy could not open a connection for want of its own resources (no file descriptor
    /// left): the upstream was never tried.
    Local(String),
    /// The connection broke or the answer was not HTTP/1.1.
    Broken(String),
    /// The client's request body failed: the client went away while sending it, its chunked
    /// coding was malformed (`InvalidData`), or it stalled (`TimedOut`).
    ClientBody(std::io::Error),
}

/// An upstream's response head, and the connection its body is still to be read from.
pub struct Response {
    pub status: StatusCode,
    pub headers: Fields,
    /// The body's decoder, past the body bytes read with the head.
    pub decoder: Decoder,
    /// The body bytes read with the head, decoded (possibly none).
    pub first: Bytes,
    /// The upstream sent a `Content-Length` that is not one well-formed value the body is
    /// framed by: the proxy must not pass it on.
    pub drop_length: bool,
    pub conn: Conn,
}

/// A connection with the bytes read past the response head.
pub struct Conn {
    pub stream: TcpStream,
    pub buf: BytesMut,
    /// The connection may carry another request once this response has been read.
    pub reusable: bool,
}

/// One upstream as one proxy thread sees it.
pub struct Upstream {
    host: String,
    port: u16,
    /// Prepended to every request path (`http://host:port/prefix`).
    prefix: String,
    authority: HeaderValue,
    idle: Mutex<Vec<(TcpStream, Instant)>>,
}

impl Upstream {
    pub fn new(base_url: &str) -> Result<Upstream, String> {
        let uri: Uri = base_url.parse().map_err(|e| format!("{e}"))?;
        let authority = uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
            .ok_or("the URL has no host")?;
        let host = uri.host().ok_or("the URL has no host")?;
        Ok(Upstream {
            // `[::1]` names an IPv6 address; connecting wants it bare.
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            port: uri.port_u16().unwrap_or(80),
            prefix: uri.path().trim_end_matches('/').to_string(),
            authority,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// Sends a request (its body streamed as the client sends it) and reads the response head.
    pub async fn send<B>(
        &self,
        method: &Method,
        path_and_query: &str,
        headers: &Fields,
        mut body: B,
    ) -> Result<Response, SendError>
    where
        B: Body<Data = Bytes, Error = std::io::Error> + Unpin,
    {
        // The framing is always the proxy's own: the body's exact size, or chunked coding when
        // the client's is not known in advance; never a client's header (RFC 9112 §6.3).
        let length = if body.is_end_stream() {
            Some(0)
        } else {
            body.size_hint().exact()
        };
        let framing = framing::outgoing(length, true);
        let chunked = framing == Framing::Chunked;
        let mut out = Vec::with_capacity(512);
        write::request_head(
            &mut out,
            method,
            [self.prefix.as_bytes(), path_and_query.as_bytes()],
            self.authority.as_bytes(),
            headers,
            framing,
        );
        let (mut stream, mut reused) = match self.take_idle() {
            Some(stream) => (stream, true),
            None => (self.connect().await?, false),
        };
        let mut buf = BytesMut::with_capacity(16 << 10);
        // A failed write can still leave an answer to read (a 413 sent before the whole body),
        // and an answer that begins before the whole body is sent ends the sending.
        let mut whole = true;
        let sent = send_body(&mut stream, &mut out, &mut body, chunked, &mut buf).await;
        let mut write_error = match sent {
            Ok(sent_whole) => {
                whole = sent_whole;
                None
            }
            Err(SendError::ClientBody(e)) => return Err(SendError::ClientBody(e)),
            Err(e) => Some(e),
        };
        let ResponseHead {
            status,
            headers,
            version_11,
        } = loop {
            match read_head(&mut stream, &mut buf).await {
                Ok(head) => break head,
                // An idle connection the upstream closed just as it was taken (llama-server
                // closes them after 5 s): nothing of an answer came, and the whole request is
                // still in `out`, so it goes once more on a fresh connection, as nginx's
                // `proxy_next_upstream` and hyper's pool do. It is never sent twice otherwise.
                Err(HeadError::Nothing(_)) if reused && !out.is_empty() => {
                    reused = false;
                    stream = self.connect().await?;
                    write_error = stream
                        .write_all(&out)
                        .await
                        .err()
                        .map(|e| SendError::Broken(format!("writing the request: {e}")));
                }
                Err(HeadError::Nothing(e) | HeadError::Bad(e)) => {
                    return Err(write_error.unwrap_or(e))
                }
            }
        };
        let (framing, drop_length) =
            framing::response_body(method == Method::HEAD, status, &headers)
                .map_err(|e| SendError::Broken(e.into()))?;
        // A length beside a transfer coding may be a smuggling attempt: this connection ends
        // with this response (RFC 9112 §6.1).
        let both = framing == Framing::Chunked && drop_length;
        let keep_alive = write_error.is_none()
            && whole
            && !framing.ends_connection()
            && !both
            && framing::persists(&headers, version_11);
        // Body bytes that came with the head are decoded now: a framing error in them is still
        // a 502, before any of the response has gone to the client.
        let mut decoder = Decoder::new(framing);
        let first = if buf.is_empty() {
            Bytes::new()
        } else {
            decoder
                .decode(&mut buf)
                .map_err(|e| SendError::Broken(e.to_string()))?
        };
        Ok(Response {
            status,
            headers,
            decoder,
            first,
            drop_length,
            conn: Conn {
                stream,
                buf,
                reusable: keep_alive,
            },
        })
    }

    /// Closes idle connections as they reach IDLE_TIMEOUT, whether or not another request comes
    /// (they are otherwise looked at only when one does): runs for as long as the proxy thread.
    pub async fn close_idle_on_time(&self) {
        loop {
            let next = {
                let now = Instant::now();
                let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
                // The oldest are at the front.
                let stale = idle
                    .iter()
                    .take_while(|(_, since)| now - *since >= IDLE_TIMEOUT)
                    .count();
                idle.drain(..stale);
                idle.first().map_or(now, |(_, since)| *since) + IDLE_TIMEOUT
            };
            tokio::time::sleep_until(next).await;
        }
    }

    /// A connection whose response has been read whole goes back to this thread's idle list.
    pub fn give_back(&self, stream: TcpStream) {
        let now = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        // The oldest are at the front: close those nobody used for a while.
        let stale = idle
            .iter()
            .take_while(|(_, since)| now - *since > IDLE_TIMEOUT)
            .count();
        idle.drain(..stale);
        if idle.len() < MAX_IDLE {
            idle.push((stream, now));
        }
    }

    /// The most recently used idle connection that the upstream has not closed meanwhile.
    fn take_idle(&self) -> Option<TcpStream> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        while let Some((stream, since)) = idle.pop() {
            if since.elapsed() > IDLE_TIMEOUT {
                idle.clear();
                return None;
            }
            // Only "nothing to read" means open: a close (0) or stray bytes rule it out. The
            // runtime knows from its event loop whether anything arrived, mostly with no call.
            if let Err(e) = stream.try_read(&mut [0u8; 1]) {
                if e.kind() == IoKind::WouldBlock {
                    return Some(stream);
                }
            }
        }
        None
    }

    async fn connect(&self) -> Result<TcpStream, SendError> {
        let stream = tokio::time::timeout(
            CONNECT_TIMEOUT,
            TcpStream::connect((&*self.host, self.port)),
        )
        .await
        .map_err(|_| SendError::Unreachable("connect timed out".into()))?
        .map_err(connect_error)?;
        // Small stream chunks must not wait for Nagle's algorithm.
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }
}

/// Why a connection could not be made: the proxy's own lack of file descriptors or memory
/// (EMFILE, ENFILE, ENOMEM: the same numbers on Linux, the BSDs and macOS) is not the upstream's
/// fault, and is told apart so that it is not counted as an unreachable upstream.
fn connect_error(e: std::io::Error) -> SendError {
    const ENOMEM: i32 = 12;
    const ENFILE: i32 = 23;
    const EMFILE: i32 = 24;
    match e.raw_os_error() {
        Some(ENOMEM | ENFILE | EMFILE) => SendError::Local(e.to_string()),
        _ => SendError::Unreachable(e.to_string()),
    }
}

/// Writes the head in `out` and the body after it: what the client has already sent goes in the
/// same write as the head, the rest as it comes. Whether the request went out whole: the sending
/// stops when the upstream begins its answer (or closes) first, as a server with a size limit
/// does with a 413, while the client may still be sending; what it sent is then in `answer`.
async fn send_body<B>(
    stream: &mut TcpStream,
    out: &mut Vec<u8>,
    body: &mut B,
    chunked: bool,
    answer: &mut BytesMut,
) -> Result<bool, SendError>
where
    B: Body<Data = Bytes, Error = std::io::Error> + Unpin,
{
    let broken = |e: std::io::Error| SendError::Broken(format!("writing the request: {e}"));
    let stream = &*stream;
    // Whether some of the request was written before the last write. If not, `out` keeps the
    // whole request (a write error included), for one more try on a fresh connection.
    let mut written = false;
    loop {
        if body.is_end_stream() {
            break;
        }
        // Take what is there without waiting; wait only once everything gathered is written.
        let frame = match poll_fn(|cx| Poll::Ready(Pin::new(&mut *body).poll_frame(cx))).await {
            Poll::Ready(frame) => frame,
            Poll::Pending => {
                if !out.is_empty() {
                    written = true;
                    let sent = write_unless_answered(stream, out, answer).await;
                    out.clear();
                    if !sent.map_err(broken)? {
                        return Ok(false);
                    }
                }
                tokio::select! {
                    biased;
                    frame = body.frame() => frame,
                    began = answer_began(stream, answer) => {
                        began.map_err(|e| SendError::Broken(format!("reading the response: {e}")))?;
                        return Ok(false);
                    }
                }
            }
        };
        let Some(frame) = frame else {
            break;
        };
        let frame: Frame<_> = frame.map_err(SendError::ClientBody)?;
        // Request trailers are not passed on.
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if data.is_empty() {
            continue;
        }
        if chunked {
            out.extend_from_slice(write::chunk_size(data.len(), &mut [0u8; 20]));
            out.extend_from_slice(&data);
            out.extend_from_slice(write::CHUNK_END);
        } else {
            out.extend_from_slice(&data);
        }
        if out.len() >= WRITE_BATCH {
            written = true;
            let sent = write_unless_answered(stream, out, answer).await;
            out.clear();
            if !sent.map_err(broken)? {
                return Ok(false);
            }
        }
    }
    if chunked {
        out.extend_from_slice(write::LAST_CHUNK);
    }
    let sent = write_unless_answered(stream, out, answer).await;
    if written {
        // Part of the request went out earlier: it can no longer be sent again whole.
        out.clear();
    }
    // Stopped in this last write by an answer or a close: `out` still holds the whole request
    // when nothing was written before, as after a failed write, and `send` sends it once more
    // only if no byte of an answer came (the upstream closed a reused connection).
    sent.map_err(broken)
}

/// Writes `bytes` unless the upstream begins to answer (or closes) while it does not take them;
/// whether they were all written.
async fn write_unless_answered(
    stream: &TcpStream,
    mut bytes: &[u8],
    answer: &mut BytesMut,
) -> std::io::Result<bool> {
    while !bytes.is_empty() {
        match stream.try_write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == IoKind::WouldBlock => {
                tokio::select! {
                    biased;
                    began = answer_began(stream, answer) => {
                        began?;
                        return Ok(false);
                    }
                    ready = stream.writable() => ready?,
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// Completes when the upstream has begun its final answer (kept in `answer`) or closed the
/// connection. Interim answers (`100 Continue`, `103 Early Hints`) are dropped: after them the
/// upstream still waits for the body (llama-server's cpp-httplib and Ollama's Go server both
/// send `100 Continue`).
async fn answer_began(stream: &TcpStream, answer: &mut BytesMut) -> std::io::Result<()> {
    loop {
        loop {
            match front(answer) {
                Front::Final => return Ok(()),
                Front::Interim(len) => answer.advance(len),
                Front::Undecided => break,
            }
        }
        stream.readable().await?;
        if answer.capacity() - answer.len() < 4096 {
            answer.reserve(16 << 10);
        }
        match stream.try_read_buf(answer) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) if e.kind() == IoKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
}

/// Reads up to the end of a final (non-1xx) response head and parses it; the bytes after it stay
/// in `buf`.
async fn read_head(stream: &mut TcpStream, buf: &mut BytesMut) -> Result<ResponseHead, HeadError> {
    let bad = |e: String| HeadError::Bad(SendError::Broken(e));
    // Nothing at all has come yet (no interim answer either).
    let mut nothing = true;
    // Bytes of interim answers already taken.
    let mut taken = 0;
    loop {
        if let Some(end) = head_end(buf) {
            nothing = false;
            taken += end;
            if taken > MAX_HEAD {
                return Err(bad("response head too large".into()));
            }
            let head = buf.split_to(end).freeze();
            let response = parse_response(&head).map_err(|e| bad(e.into()))?;
            // The proxy never asks for an upgrade (it strips `Upgrade`) and cannot pass one
            // on: what follows on this connection is not HTTP, so it is an error and the
            // connection is dropped, never reused.
            if response.status == StatusCode::SWITCHING_PROTOCOLS {
                return Err(bad("the upstream switched protocols".into()));
            }
            // Interim answers (100 Continue, 103 Early Hints) are not passed on.
            if response.status.is_informational() {
                continue;
            }
            return Ok(response);
        }
        if taken + buf.len() > MAX_HEAD {
            return Err(bad("response head too large".into()));
        }
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(16 << 10);
        }
        let error = match stream.read_buf(buf).await {
            Ok(0) => "connection closed before a response".to_string(),
            Ok(_) => continue,
            Err(e) => format!("reading the response: {e}"),
        };
        let error = SendError::Broken(error);
        return Err(if nothing && buf.is_empty() {
            HeadError::Nothing(error)
        } else {
            HeadError::Bad(error)
        });
    }
}

/// Why no response head was read.
enum HeadError {
    /// The connection ended or failed before a single byte of an answer.
    Nothing(SendError),
    /// Anything else: part of an answer came, or it was not HTTP.
    Bad(SendError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lack_of_file_descriptors_is_told_from_an_unreachable_upstream() {
        for local in [24, 23, 12] {
            let e = std::io::Error::from_raw_os_error(local);
            assert!(matches!(connect_error(e), SendError::Local(_)), "{local}");
        }
        let refused = std::io::Error::from(IoKind::ConnectionRefused);
        assert!(matches!(connect_error(refused), SendError::Unreachable(_)));
        // ECONNREFUSED and EHOSTUNREACH as the kernel reports them.
        for remote in [111, 113] {
            let e = std::io::Error::from_raw_os_error(remote);
            assert!(
                matches!(connect_error(e), SendError::Unreachable(_)),
                "{remote}"
            );
        }
    }

    #[test]
    fn base_urls_give_host_port_and_prefix() {
        let u = Upstream::new("http://[::1]:8080/prefix").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.prefix.as_str()),
            ("::1", 8080, "/prefix")
        );
        assert_eq!(u.authority, "[::1]:8080");
        let u = Upstream::new("http://localhost").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.prefix.as_str()),
            ("localhost", 80, "")
        );
    }
}
