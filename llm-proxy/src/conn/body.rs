//! The response body the client gets: read from the upstream's socket and handed on the moment
//! it arrives, all of one read at once (nothing is held back or changed), observed on the way,
//! with a limit on how long the upstream may stay silent. When the body ends, fails, or the
//! client drops it, the request is recorded; a body read whole frees its connection for reuse.

use super::client::{Conn, Upstream};
use crate::codec::decode::Decoder;
use crate::codec::fields::Fields;
use crate::measure::metrics::{ErrorKind, Finished, ProxyMetrics};
use crate::measure::naming::Naming;
use crate::measure::observe::Observer;
use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What to record when a metered request ends.
pub struct Record {
    pub metrics: Arc<ProxyMetrics>,
    pub finished: Finished,
    pub started: Instant,
    pub observer: Option<Observer>,
    /// Turns the server's model name into the label value.
    pub naming: Naming,
}

impl Record {
    /// Records the request as it ended at `now`.
    fn finish(mut self, error: Option<ErrorKind>, now: Instant) {
        let f = &mut self.finished;
        f.duration = (now - self.started).as_secs_f64();
        if f.error.is_none() {
            f.error = error;
        }
        if let Some(mut o) = self.observer.take() {
            o.finish(now);
            if o.error_line && f.error.is_none() {
                f.error = Some(ErrorKind::StreamError);
            }
            f.ttft = o.ttft();
            f.inter_token = std::mem::take(&mut o.inter_token);
            let (prompt, generated) = o.tokens();
            f.prompt_tokens = prompt;
            f.generated_tokens = generated;
            f.server_prefill = o.server_prefill;
            f.reasoning_tokens = o.reasoning_tokens();
            f.finish_reason = o.finish_reason();
            f.load_duration = o.load_duration;
            if let Some(model) = o.model.take() {
                let sign = o.ollama_fingerprint;
                // The first answers of an upstream being detected wait for the detection (a
                // few loopback requests, bounded), so that they get the label every later
                // answer gets; the client already has its answer.
                if let Some(wait) = self.naming.pending() {
                    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                        let (metrics, naming, mut finished) =
                            (self.metrics, self.naming, self.finished);
                        runtime.spawn(async move {
                            wait.await;
                            finished.model = Some(naming.label(&model, sign));
                            metrics.finished(finished);
                        });
                        return;
                    }
                }
                f.model = Some(self.naming.label(&model, sign));
            }
        }
        self.metrics.finished(self.finished);
    }
}

#[derive(Debug)]
struct IdleTimeout(Duration);

impl std::fmt::Display for IdleTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the upstream sent nothing for {:.1}s; ending the response",
            self.0.as_secs_f64()
        )
    }
}

impl std::error::Error for IdleTimeout {}

pub struct MeteredBody {
    /// Until the body has been read whole (then back to the idle list) or has failed.
    conn: Option<Conn>,
    decoder: Decoder,
    /// Body bytes decoded with the head, not yet handed on.
    first: Option<Bytes>,
    upstream: Arc<Upstream>,
    record: Option<Record>,
    idle_timeout: Duration,
    /// When the upstream last sent something; the timer is moved on only when it fires.
    last_data: Instant,
    /// Made the first time the body has to wait: most short answers never do.
    idle: Option<Pin<Box<Sleep>>>,
    /// Stream data handed on but not yet read, with when it arrived: it is read at the next
    /// poll, which the server makes once it has written the data out, so the client never waits
    /// for the reading.
    unread: Option<(Bytes, Instant)>,
}

impl MeteredBody {
    pub fn new(
        conn: Conn,
        decoder: Decoder,
        first: Bytes,
        upstream: Arc<Upstream>,
        record: Option<Record>,
        idle_timeout: Duration,
    ) -> Self {
        let now = Instant::now();
        let mut body = MeteredBody {
            conn: Some(conn),
            decoder,
            first: (!first.is_empty()).then_some(first),
            upstream,
            record,
            idle_timeout,
            last_data: now,
            idle: None,
            unread: None,
        };
        body.release_if_done();
        body
    }

    /// Records the request. The server has written out every byte handed on by now (it writes
    /// each piece before it polls again, and drops the body after its last write), so the
    /// reading and counting left here never delay the client.
    fn end(&mut self, error: Option<ErrorKind>) {
        let Some(mut record) = self.record.take() else {
            return;
        };
        let now = Instant::now();
        if let (Some((data, at)), Some(observer)) = (self.unread.take(), record.observer.as_mut()) {
            observer.feed(&data, at);
        }
        record.finish(error, now);
    }

    /// Once the body is read whole, its connection can carry the next request at once.
    fn release_if_done(&mut self) {
        if !self.decoder.is_done() {
            return;
        }
        if let Some(conn) = self.conn.take() {
            if conn.reusable && conn.buf.is_empty() {
                self.upstream.give_back(conn.stream);
            }
        }
    }

    /// A failure: the connection is closed, the request recorded, the client's response cut.
    fn fail(
        &mut self,
        kind: ErrorKind,
        error: BoxError,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.conn = None;
        self.end(Some(kind));
        Poll::Ready(Some(Err(error)))
    }

    /// Body data for the client, observed on the way.
    fn hand_on(&mut self, data: Bytes) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let now = Instant::now();
        self.last_data = now;
        if let Some(observer) = self.record.as_mut().and_then(|r| r.observer.as_mut()) {
            if observer.reads_lines() {
                // Cheap: the bytes are shared, not copied.
                self.unread = Some((data.clone(), now));
            } else {
                observer.feed(&data, now);
            }
        }
        Poll::Ready(Some(Ok(Frame::data(data))))
    }

    /// Whether the upstream has been silent for the idle timeout (registering the timer if not).
    fn silent_too_long(&mut self, cx: &mut Context<'_>) -> bool {
        let deadline = self.last_data + self.idle_timeout;
        let idle = self
            .idle
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        loop {
            if idle.as_mut().poll(cx).is_pending() {
                return false;
            }
            let deadline = self.last_data + self.idle_timeout;
            if Instant::now() >= deadline {
                return true;
            }
            idle.as_mut().reset(deadline);
        }
    }
}

impl Body for MeteredBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Some((data, at)) = this.unread.take() {
            if let Some(observer) = this.record.as_mut().and_then(|r| r.observer.as_mut()) {
                observer.feed(&data, at);
            }
        }
        if let Some(data) = this.first.take() {
            return this.hand_on(data);
        }
        loop {
            let Some(conn) = this.conn.as_mut() else {
                // Read whole (the connection went back), or failed and already recorded.
                this.end(None);
                return Poll::Ready(None);
            };
            if !conn.buf.is_empty() {
                let data = match this.decoder.decode(&mut conn.buf) {
                    Ok(data) => data,
                    Err(e) => return this.fail(ErrorKind::UpstreamBroken, Box::new(e)),
                };
                this.release_if_done();
                if !data.is_empty() {
                    return this.hand_on(data);
                }
                continue;
            }
            if conn.buf.capacity() < 4096 {
                conn.buf.reserve(16 << 10);
            }
            match conn.stream.try_read_buf(&mut conn.buf) {
                Ok(0) => {
                    if this.decoder.at_eof() {
                        this.conn = None;
                        continue;
                    }
                    return this.fail(ErrorKind::UpstreamBroken, Box::new(Cut));
                }
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    match conn.stream.poll_read_ready(cx) {
                        Poll::Ready(Ok(())) => {}
                        Poll::Ready(Err(e)) => {
                            return this.fail(ErrorKind::UpstreamBroken, Box::new(e))
                        }
                        Poll::Pending => {
                            if this.silent_too_long(cx) {
                                let timeout = IdleTimeout(this.idle_timeout);
                                return this.fail(ErrorKind::UpstreamTimeout, Box::new(timeout));
                            }
                            return Poll::Pending;
                        }
                    }
                }
                Err(e) => return this.fail(ErrorKind::UpstreamBroken, Box::new(e)),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.first.is_none()
            && self.decoder.is_done()
            && self.conn.as_ref().is_none_or(|c| c.buf.is_empty())
    }

    fn size_hint(&self) -> SizeHint {
        let first = self.first.as_ref().map_or(0, |b| b.len() as u64);
        match self.decoder.remaining() {
            Some(n) => SizeHint::with_exact(n + first),
            None => SizeHint::default(),
        }
    }
}

impl Drop for MeteredBody {
    fn drop(&mut self) {
        // Dropped before the end: the client went away (the server drops the body when it
        // does), unless every byte was already passed on and only the final poll was skipped.
        let error = if self.decoder.is_done() && self.first.is_none() {
            None
        } else {
            Some(ErrorKind::ClientDisconnect)
        };
        self.end(error);
    }
}

/// The upstream closed the connection before the end of the body.
#[derive(Debug)]
struct Cut;

impl std::fmt::Display for Cut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the upstream closed the connection before the end of the response")
    }
}

impl std::error::Error for Cut {}

/// Either the upstream's body or an answer the proxy makes itself (502, 504).
pub enum ProxyBody {
    Upstream(Box<MeteredBody>),
    Local(Option<Bytes>),
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            ProxyBody::Upstream(body) => Pin::new(body.as_mut()).poll_frame(cx),
            ProxyBody::Local(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            // Lets the server end the response in the same write as its last data.
            ProxyBody::Upstream(body) => body.is_end_stream(),
            ProxyBody::Local(bytes) => bytes.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Upstream(body) => body.size_hint(),
            ProxyBody::Local(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
        }
    }
}

/// The header fields and body of an error the proxy answers itself: a JSON object.
pub fn error_body(message: &str) -> (Fields, Bytes) {
    let body = format!("{{\"error\":\"llm-exporter proxy: {message}\"}}");
    let mut headers = Fields::with_capacity(1);
    headers.push(
        Bytes::from_static(b"content-type"),
        Bytes::from_static(b"application/json"),
    );
    (headers, Bytes::from(body))
}
