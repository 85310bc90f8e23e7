//! The proxy's side of the client connection: HTTP/1.1 and 1.0, written for this one job in place
//! of hyper's general server, which was most of what the proxy spent beyond nginx on a request
//! (its connection state machine, buffered writer and header encoder). A request head is read
//! and checked, the request goes to the `Handler` (forwarding: upstream, with its body streamed
//! as it arrives), and the answer goes back as it comes: the head with the first body bytes in
//! one write, then one write per read of the upstream, each written out before the next is read.
//!
//! What keeps the proxy from carrying a smuggled request (RFC 9112 §6.1, §6.3): a request with
//! both Transfer-Encoding and Content-Length, with a transfer coding other than one `chunked`,
//! with a Content-Length that is not one number, or with Transfer-Encoding in HTTP/1.0, is
//! refused and its connection closed (the rules: `codec/framing.rs`); the request sent upstream
//! always carries the proxy's own framing (client.rs); a connection whose request body was not
//! read to its end is closed.

use super::body::{error_body, ProxyBody};
use crate::codec::decode::Decoder;
use crate::codec::fields::Fields;
use crate::codec::framing::{self, Framing};
use crate::codec::head::{head_end, parse_request, RequestHead, MAX_HEAD};
use crate::codec::write;
use bytes::{Buf, Bytes, BytesMut};
use hyper::body::{Body, Frame, SizeHint};
use hyper::{Method, StatusCode, Version};
use std::future::{poll_fn, Future};
use std::io::{ErrorKind as IoKind, IoSlice};
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Sleep;

/// Bytes of a next, pipelined request read ahead while the current one is served.
const MAX_READ_AHEAD: usize = 64 << 10;
/// After a refusal, or with a request body left unread, how much the proxy still reads (and
/// throws away) before it closes, so that the client is not sent a reset before it has read
/// the answer (nginx's lingering close).
const LINGER_BYTES: usize = 256 << 10;
const LINGER_TIME: Duration = Duration::from_secs(2);

/// The client connection's bytes read but not yet used, shared between the request body (which
/// reads them) and the watch for a client that leaves while its response is awaited.
struct Inbound {
    buf: BytesMut,
    /// The current request's body has been read to its end (or it has none).
    body_done: bool,
    /// The client ended its side after sending requests still unanswered here: they are
    /// answered, and the connection ends after them.
    half_closed: bool,
}

fn lock(inbound: &Mutex<Inbound>) -> MutexGuard<'_, Inbound> {
    inbound.lock().unwrap_or_else(|e| e.into_inner())
}

/// What the server hands each request to, and gets the answer from (forwarding, here).
pub trait Handler {
    /// The answer to one request; the body is read from the client as the handler reads it.
    /// Dropped unfinished when the client goes away first.
    fn handle<'a>(
        &'a self,
        head: RequestHead,
        body: ClientBody<'a>,
    ) -> impl Future<Output = Answer> + 'a;
}

/// What the server writes back: the upstream's answer or the proxy's own.
pub struct Answer {
    pub status: StatusCode,
    pub headers: Fields,
    pub body: ProxyBody,
}

/// Serves one client connection until it closes, breaks, times out, or a request or response
/// leaves it unusable. `client_timeout` bounds the wait for a request head (an idle keep-alive
/// connection included), for each next piece of a request body, and for the client to take each
/// write.
pub async fn serve_connection(stream: TcpStream, handler: &impl Handler, client_timeout: Duration) {
    let inbound = Mutex::new(Inbound {
        buf: BytesMut::with_capacity(4096),
        body_done: true,
        half_closed: false,
    });
    let mut out = Vec::with_capacity(1024);
    loop {
        let head = match tokio::time::timeout(client_timeout, read_head(&stream, &inbound)).await {
            Ok(Ok(Some(head))) => head,
            // Closed between requests, or quiet for too long: nothing to answer.
            Ok(Ok(None)) | Err(_) => return,
            Ok(Err(status)) => return refuse(stream, &mut out, status, client_timeout).await,
        };
        let parsed = match parse_request(&head) {
            Ok(parsed) => parsed,
            Err(status) => return refuse(stream, &mut out, status, client_timeout).await,
        };
        let decoder = Decoder::for_request(parsed.body);
        lock(&inbound).body_done = decoder.is_done();
        if parsed.expect_continue && !decoder.is_done() {
            // The client waits for this before it sends the body (hyper sent it too).
            let sent = write_all(&stream, &[b"HTTP/1.1 100 Continue\r\n\r\n"], client_timeout);
            if sent.await.is_err() {
                return;
            }
        }
        let is_head = parsed.head.method == Method::HEAD;
        let version_11 = parsed.version == Version::HTTP_11;
        let mut keep_alive = parsed.keep_alive;
        let body = ClientBody {
            stream: &stream,
            inbound: &inbound,
            decoder,
            timeout: client_timeout,
            wait: None,
        };

        let response = {
            let handling = handler.handle(parsed.head, body);
            tokio::pin!(handling);
            tokio::select! {
                biased;
                response = &mut handling => response,
                // Dropping the request on the way records it as a client disconnect.
                () = client_gone(&stream, &inbound) => return,
            }
        };

        let Answer {
            status,
            headers,
            mut body,
        } = response;
        let framing = if framing::bodiless(is_head, status) {
            Framing::Empty
        } else {
            framing::outgoing(body.size_hint().exact(), version_11)
        };
        // The upstream answered before the whole request body came (a 413, or its connection
        // broke): what is left of the body cannot be told from a next request, so the answer
        // says the connection closes. By now the upstream request is over: the body stays as
        // it is.
        let body_done = lock(&inbound).body_done;
        keep_alive &= !framing.ends_connection() && body_done;
        out.clear();
        write::response_head(&mut out, status, &headers, version_11, framing, keep_alive);
        let sent = send_body(
            &stream,
            &inbound,
            &mut out,
            &mut body,
            framing,
            client_timeout,
        );
        let complete = sent.await;
        // The body records the request when dropped: after its last bytes went out.
        drop(body);
        if !complete {
            return;
        }
        if !keep_alive {
            return linger(stream, client_timeout).await;
        }
    }
}

/// Reads up to the end of a request head. `Ok(None)`: the client closed the connection (or it
/// broke) before a whole head came.
async fn read_head(
    stream: &TcpStream,
    inbound: &Mutex<Inbound>,
) -> Result<Option<Bytes>, StatusCode> {
    // Bytes already searched for the head's end: a head that comes a byte at a time is not
    // searched again from its start at every byte.
    let mut searched: usize = 0;
    loop {
        {
            let mut inbound = lock(inbound);
            let buf = &mut inbound.buf;
            // Empty lines before a request line are skipped (RFC 9112 §2.2).
            let blank = buf
                .iter()
                .take_while(|b| matches!(b, b'\r' | b'\n'))
                .count();
            buf.advance(blank);
            searched = searched.saturating_sub(blank);
            // The end (an empty line) is at most 3 bytes before what came new.
            let from = searched.saturating_sub(3);
            if let Some(end) = head_end(&buf[from..]).map(|end| from + end) {
                if end > MAX_HEAD {
                    return Err(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
                }
                return Ok(Some(buf.split_to(end).freeze()));
            }
            searched = buf.len();
            if buf.len() > MAX_HEAD {
                return Err(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
            }
            if buf.capacity() - buf.len() < 1024 {
                buf.reserve(4096);
            }
            match stream.try_read_buf(buf) {
                Ok(0) => return Ok(None),
                Ok(_) => continue,
                Err(e) if e.kind() == IoKind::WouldBlock => {}
                Err(_) => return Ok(None),
            }
        }
        if stream.readable().await.is_err() {
            return Ok(None);
        }
    }
}

/// The request body, read from the client connection as the upstream request takes it.
pub struct ClientBody<'a> {
    stream: &'a TcpStream,
    inbound: &'a Mutex<Inbound>,
    decoder: Decoder,
    /// How long the client may send nothing while more of its body is due.
    timeout: Duration,
    /// The deadline of the current wait for the client, made when the body first waits.
    wait: Option<Pin<Box<Sleep>>>,
}

impl ClientBody<'_> {
    /// Whether the client has been silent for the timeout (arming the deadline if not yet).
    fn silent_too_long(&mut self, cx: &mut Context<'_>) -> bool {
        let timeout = self.timeout;
        let wait = self
            .wait
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        wait.as_mut().poll(cx).is_ready()
    }
}

impl Body for ClientBody<'_> {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let this = self.get_mut();
        let mut inbound = lock(this.inbound);
        loop {
            if this.decoder.is_done() {
                return Poll::Ready(None);
            }
            if !inbound.buf.is_empty() {
                let data = this.decoder.decode(&mut inbound.buf).map_err(|_| {
                    std::io::Error::new(IoKind::InvalidData, "malformed chunked request body")
                })?;
                inbound.body_done = this.decoder.is_done();
                if !data.is_empty() {
                    // The client sent something: the next wait has a whole timeout again.
                    this.wait = None;
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                // The decoder takes all it is given until the end of the body.
                continue;
            }
            if inbound.buf.capacity() - inbound.buf.len() < 4096 {
                inbound.buf.reserve(16 << 10);
            }
            match this.stream.try_read_buf(&mut inbound.buf) {
                Ok(0) => {
                    let cut = "the client closed the connection before the end of the body";
                    return Poll::Ready(Some(Err(std::io::Error::new(IoKind::UnexpectedEof, cut))));
                }
                Ok(_) => {}
                Err(e) if e.kind() == IoKind::WouldBlock => match this.stream.poll_read_ready(cx) {
                    Poll::Ready(Ok(())) => {}
                    Poll::Ready(Err(e)) => return Poll::Ready(Some(Err(e))),
                    Poll::Pending if this.silent_too_long(cx) => {
                        let silent = "the client sent nothing more of its body in time";
                        return Poll::Ready(Some(Err(std::io::Error::new(
                            IoKind::TimedOut,
                            silent,
                        ))));
                    }
                    Poll::Pending => return Poll::Pending,
                },
                Err(e) => return Poll::Ready(Some(Err(e))),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.decoder.is_done()
    }

    fn size_hint(&self) -> SizeHint {
        match self.decoder.remaining() {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}

/// Completes when the client has closed its connection (or it broke) while it waits for its
/// response. Bytes of a next request that come meanwhile are kept. It watches only once the
/// request body has been read whole; until then the body's reads see the close, and this is
/// polled again whenever the request makes progress, since both run in the same task.
async fn client_gone(stream: &TcpStream, inbound: &Mutex<Inbound>) {
    poll_fn(|cx| {
        let mut inbound = lock(inbound);
        if !inbound.body_done || inbound.half_closed {
            return Poll::Pending;
        }
        loop {
            if inbound.buf.len() >= MAX_READ_AHEAD {
                // Enough read ahead: a close shows at the next write instead.
                return Poll::Pending;
            }
            if inbound.buf.capacity() - inbound.buf.len() < 1024 {
                inbound.buf.reserve(4096);
            }
            match stream.try_read_buf(&mut inbound.buf) {
                // The end of the client's side with a next request already here: a client that
                // sent its requests and half-closed waits for the answers (hyper answers them
                // too). With nothing here, it has left.
                Ok(0) if inbound.buf.iter().any(|b| !matches!(b, b'\r' | b'\n')) => {
                    inbound.half_closed = true;
                    return Poll::Pending;
                }
                Ok(0) => return Poll::Ready(()),
                Ok(_) => {}
                Err(e) if e.kind() == IoKind::WouldBlock => match stream.poll_read_ready(cx) {
                    Poll::Ready(Ok(())) => {}
                    Poll::Ready(Err(_)) => return Poll::Ready(()),
                    Poll::Pending => return Poll::Pending,
                },
                Err(_) => return Poll::Ready(()),
            }
        }
    })
    .await
}

/// Writes the head in `out` and the body after it, each piece as soon as it is there; whether
/// the response went out whole.
async fn send_body(
    stream: &TcpStream,
    inbound: &Mutex<Inbound>,
    out: &mut Vec<u8>,
    body: &mut ProxyBody,
    framing: Framing,
    timeout: Duration,
) -> bool {
    if framing == Framing::Empty {
        return write_all(stream, &[out], timeout).await.is_ok();
    }
    let chunked = framing == Framing::Chunked;
    let mut body = Pin::new(body);
    loop {
        // What is there now goes out with what waits in `out` (the head, at first); only with
        // nothing there is the client watched while the upstream is awaited.
        let frame = match poll_fn(|cx| Poll::Ready(body.as_mut().poll_frame(cx))).await {
            Poll::Ready(frame) => frame,
            Poll::Pending => {
                if !out.is_empty() {
                    if write_all(stream, &[out], timeout).await.is_err() {
                        return false;
                    }
                    out.clear();
                }
                tokio::select! {
                    biased;
                    frame = poll_fn(|cx| body.as_mut().poll_frame(cx)) => frame,
                    () = client_gone(stream, inbound) => return false,
                }
            }
        };
        let data = match frame {
            None => {
                if chunked {
                    out.extend_from_slice(write::LAST_CHUNK);
                }
                return write_all(stream, &[out], timeout).await.is_ok();
            }
            // The upstream failed: what came before goes out, the response stays cut (no last
            // chunk), and the connection closes.
            Some(Err(_)) => {
                let _ = write_all(stream, &[out], timeout).await;
                return false;
            }
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => data,
                // Trailers are not passed on.
                Err(_) => continue,
            },
        };
        if data.is_empty() {
            continue;
        }
        let end = body.is_end_stream();
        let mut size_line = [0u8; 20];
        let (before, after): (&[u8], &[u8]) = if chunked {
            let n = write::chunk_size(data.len(), &mut size_line);
            (
                n,
                if end {
                    write::CHUNK_END_LAST
                } else {
                    write::CHUNK_END
                },
            )
        } else {
            (b"", b"")
        };
        if write_all(stream, &[out, before, &data, after], timeout)
            .await
            .is_err()
        {
            return false;
        }
        out.clear();
        if end {
            return true;
        }
    }
}

/// Writes all the pieces, in as few system calls as the socket takes them; each wait for the
/// client to take more is bounded by `timeout`.
async fn write_all(stream: &TcpStream, pieces: &[&[u8]], timeout: Duration) -> std::io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = pieces
        .iter()
        .filter(|p| !p.is_empty())
        .map(|p| IoSlice::new(p))
        .collect();
    let mut slices = &mut slices[..];
    while !slices.is_empty() {
        match stream.try_write_vectored(slices) {
            Ok(0) => return Err(IoKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut slices, n),
            Err(e) if e.kind() == IoKind::WouldBlock => {
                tokio::time::timeout(timeout, stream.writable())
                    .await
                    .map_err(|_| std::io::Error::from(IoKind::TimedOut))??;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Answers a request the proxy will not pass on, then closes the connection.
async fn refuse(stream: TcpStream, out: &mut Vec<u8>, status: StatusCode, timeout: Duration) {
    let reason = status
        .canonical_reason()
        .unwrap_or("refused")
        .to_lowercase();
    let (headers, body) = error_body(&reason);
    let length = Framing::Length(body.len() as u64);
    out.clear();
    write::response_head(out, status, &headers, true, length, false);
    out.extend_from_slice(&body);
    if write_all(&stream, &[out], timeout).await.is_ok() {
        linger(stream, timeout).await;
    }
}

/// Closes the connection after the proxy's last write: the sending side first, then what the
/// client still sends is read and dropped for a while, so that its unread bytes do not make the
/// kernel reset the connection before the client has read the response.
async fn linger(mut stream: TcpStream, timeout: Duration) {
    if stream.shutdown().await.is_err() {
        return;
    }
    let drain = async {
        let mut scratch = vec![0u8; 16 << 10];
        let mut left = LINGER_BYTES;
        while left > 0 {
            match tokio::io::AsyncReadExt::read(&mut stream, &mut scratch).await {
                Ok(0) | Err(_) => return,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    };
    let _ = tokio::time::timeout(LINGER_TIME.min(timeout), drain).await;
}
