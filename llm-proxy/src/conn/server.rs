//! The proxy's side of the client connection: HTTP/1.1 and 1.0, written for this one job in place
//! of hyper's general server, which was most of what the proxy spent beyond nginx on a request
//! (its connection state machine, buffered writer and header encoder). A request head is read
//! and checked, the request goes upstream with its body streamed as it arrives, and the response
//! goes back as it comes: the head with the first body bytes in one write, then one write per
//! read of the upstream, each written out before the next is read.
//!
//! What keeps the proxy from carrying a smuggled request (RFC 9112 §6.1, §6.3): a request with
//! both Transfer-Encoding and Content-Length, with a transfer coding other than one `chunked`,
//! with a Content-Length that is not one number, or with Transfer-Encoding in HTTP/1.0, is
//! refused and its connection closed; the request sent upstream always carries the proxy's own
//! framing (client.rs); a connection whose request body was not read to its end is closed.

use super::body::ProxyBody;
use super::client::head_end;
use crate::codec::decode::{Decoder, Framing};
use crate::codec::fields::{self, Fields};
use crate::forward::{error_body, forward, Answer, RequestHead, Target};
use bytes::{Buf, Bytes, BytesMut};
use hyper::body::{Body, Frame, SizeHint};
use hyper::{Method, StatusCode, Uri, Version};
use std::cell::RefCell;
use std::future::{poll_fn, Future};
use std::io::{ErrorKind as IoKind, IoSlice};
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Sleep;

/// Longest request head accepted (hyper's default buffer limit was about 400 KiB; nginx's
/// `large_client_header_buffers` allow 4 x 8 KiB).
const MAX_HEAD: usize = 64 << 10;
/// Most header fields accepted in a request head (hyper's default).
const MAX_HEADERS: usize = 100;
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

/// Serves one client connection until it closes, breaks, times out, or a request or response
/// leaves it unusable. `client_timeout` bounds the wait for a request head (an idle keep-alive
/// connection included), for each next piece of a request body, and for the client to take each
/// write.
pub async fn serve_connection(stream: TcpStream, target: &Target, client_timeout: Duration) {
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
            let forwarding = forward(target, parsed.head, body);
            tokio::pin!(forwarding);
            tokio::select! {
                biased;
                response = &mut forwarding => response,
                // Dropping the request on the way records it as a client disconnect.
                () = client_gone(&stream, &inbound) => return,
            }
        };

        let Answer {
            status,
            headers,
            mut body,
        } = response;
        let framing = ResponseFraming::choose(status, is_head, &body, version_11);
        // The upstream answered before the whole request body came (a 413, or its connection
        // broke): what is left of the body cannot be told from a next request, so the answer
        // says the connection closes. By now the upstream request is over: the body stays as
        // it is.
        let body_done = lock(&inbound).body_done;
        keep_alive &= framing != ResponseFraming::Close && body_done;
        out.clear();
        write_head(&mut out, status, &headers, version_11, framing, keep_alive);
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

/// A request head, checked.
struct Parsed {
    head: RequestHead,
    version: Version,
    body: Framing,
    keep_alive: bool,
    expect_continue: bool,
}

/// Parses and checks a request head; the status to refuse it with when it is not acceptable.
fn parse_request(head: &Bytes) -> Result<Parsed, StatusCode> {
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
    let version = match req.version {
        Some(1) => Version::HTTP_11,
        Some(0) => Version::HTTP_10,
        _ => return Err(StatusCode::HTTP_VERSION_NOT_SUPPORTED),
    };
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
    // httparse has checked the names (tokens) and values (no control characters).
    let mut headers = Fields::with_capacity(req.headers.len());
    for field in req.headers.iter() {
        headers.push(
            head.slice_ref(field.name.as_bytes()),
            head.slice_ref(field.value.trim_ascii()),
        );
    }
    let version_11 = version == Version::HTTP_11;
    let body = request_framing(&headers, version_11)?;
    let keep_alive = if version_11 {
        !headers.has_token("connection", "close")
    } else {
        headers.has_token("connection", "keep-alive")
    };
    let expect_continue = version_11 && headers.has_token("expect", "100-continue");
    Ok(Parsed {
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

/// How the request body's end is known (RFC 9112 §6.3), or why the request is refused.
fn request_framing(headers: &Fields, version_11: bool) -> Result<Framing, StatusCode> {
    let bad = StatusCode::BAD_REQUEST;
    let mut codings = 0;
    for value in headers.get_all("transfer-encoding") {
        for coding in value.split(|b| *b == b',') {
            let coding = coding.trim_ascii();
            if coding.is_empty() {
                continue;
            }
            if !coding.eq_ignore_ascii_case(b"chunked") {
                // The body could not be read (or passed on) without decoding it.
                return Err(StatusCode::NOT_IMPLEMENTED);
            }
            codings += 1;
        }
    }
    if headers.contains("transfer-encoding") {
        // Chunked exactly once, in HTTP/1.1, and no length beside it: anything else is where
        // two servers in a row could disagree on where the body ends.
        if codings != 1 || !version_11 || headers.contains("content-length") {
            return Err(bad);
        }
        return Ok(Framing::Chunked);
    }
    // Repeated or listed values are one length only if they are all the same (RFC 9110 §8.6).
    let mut length = None;
    for value in headers.get_all("content-length") {
        for part in value.split(|b| *b == b',') {
            let n = super::client::digits(part.trim_ascii()).ok_or(bad)?;
            if length.is_some_and(|l| l != n) {
                return Err(bad);
            }
            length = Some(n);
        }
    }
    Ok(match length {
        Some(n) => Framing::Length(n),
        None => Framing::Empty,
    })
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

/// How the response body's end is told to the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ResponseFraming {
    /// No body follows the head (HEAD, 1xx, 204, 304): the upstream's headers stand as they are.
    None,
    Length(u64),
    Chunked,
    /// An HTTP/1.0 client and a body of unknown length: it ends with the connection.
    Close,
}

impl ResponseFraming {
    fn choose(status: StatusCode, is_head: bool, body: &ProxyBody, version_11: bool) -> Self {
        if is_head
            || status.is_informational()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED
        {
            return ResponseFraming::None;
        }
        match body.size_hint().exact() {
            Some(n) => ResponseFraming::Length(n),
            None if version_11 => ResponseFraming::Chunked,
            None => ResponseFraming::Close,
        }
    }
}

/// The response's status line and header fields, with the proxy's own framing.
fn write_head(
    out: &mut Vec<u8>,
    status: StatusCode,
    headers: &Fields,
    version_11: bool,
    framing: ResponseFraming,
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
                && (framing != ResponseFraming::None || no_length));
        if framing_field {
            continue;
        }
        fields::write_line(out, name, value);
    }
    match framing {
        ResponseFraming::Length(n) => {
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        ResponseFraming::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        ResponseFraming::None | ResponseFraming::Close => {}
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

/// Writes the head in `out` and the body after it, each piece as soon as it is there; whether
/// the response went out whole.
async fn send_body(
    stream: &TcpStream,
    inbound: &Mutex<Inbound>,
    out: &mut Vec<u8>,
    body: &mut ProxyBody,
    framing: ResponseFraming,
    timeout: Duration,
) -> bool {
    if framing == ResponseFraming::None {
        return write_all(stream, &[out], timeout).await.is_ok();
    }
    let chunked = framing == ResponseFraming::Chunked;
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
                    out.extend_from_slice(b"0\r\n\r\n");
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
            let n = hex(data.len(), &mut size_line);
            (n, if end { b"\r\n0\r\n\r\n" } else { b"\r\n" })
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

/// `n` in hexadecimal with the CRLF after it, as a chunk's size line.
fn hex(mut n: usize, buf: &mut [u8; 20]) -> &[u8] {
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
    let length = ResponseFraming::Length(body.len() as u64);
    out.clear();
    write_head(out, status, &headers, true, length, false);
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

    fn parse(head: &str) -> Result<Parsed, StatusCode> {
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
    fn chunk_size_lines_are_hexadecimal() {
        let mut buf = [0u8; 20];
        assert_eq!(hex(0, &mut buf), b"0\r\n");
        assert_eq!(hex(255, &mut buf), b"ff\r\n");
        assert_eq!(hex(4096 + 10, &mut buf), b"100a\r\n");
        assert_eq!(hex(usize::MAX, &mut buf), b"ffffffffffffffff\r\n");
    }
}
