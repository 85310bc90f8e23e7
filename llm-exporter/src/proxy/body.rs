//! The response body the client gets: the upstream's frames, each handed on the moment it arrives
//! (nothing is held back or changed), observed on the way, with a limit on how long the upstream
//! may stay silent. When the body ends, fails, or the client drops it, the request is recorded.

use super::metrics::{ErrorKind, Finished, ProxyMetrics};
use super::observe::Observer;
use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
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
    pub normalize: fn(&str) -> String,
}

impl Record {
    fn finish(mut self, error: Option<ErrorKind>) {
        let now = Instant::now();
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
            f.model = o.model.as_deref().map(self.normalize);
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
    inner: Incoming,
    record: Option<Record>,
    idle_timeout: Duration,
    idle: Pin<Box<Sleep>>,
}

impl MeteredBody {
    pub fn new(inner: Incoming, record: Option<Record>, idle_timeout: Duration) -> Self {
        MeteredBody {
            inner,
            record,
            idle_timeout,
            idle: Box::pin(tokio::time::sleep(idle_timeout)),
        }
    }

    fn end(&mut self, error: Option<ErrorKind>) {
        if let Some(record) = self.record.take() {
            record.finish(error);
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
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let now = Instant::now();
                if let (Some(data), Some(record)) = (frame.data_ref(), this.record.as_mut()) {
                    if let Some(observer) = record.observer.as_mut() {
                        observer.feed(data, now);
                    }
                }
                this.idle.as_mut().reset(now + this.idle_timeout);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.end(Some(ErrorKind::UpstreamBroken));
                Poll::Ready(Some(Err(Box::new(e))))
            }
            Poll::Ready(None) => {
                this.end(None);
                Poll::Ready(None)
            }
            Poll::Pending => {
                if this.idle.as_mut().poll(cx).is_ready() {
                    this.end(Some(ErrorKind::UpstreamTimeout));
                    return Poll::Ready(Some(Err(Box::new(IdleTimeout(this.idle_timeout)))));
                }
                Poll::Pending
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for MeteredBody {
    fn drop(&mut self) {
        // Dropped before the end: the client went away (hyper drops the body on disconnect),
        // unless every byte was already passed on and only the final poll was skipped.
        let error = if self.inner.is_end_stream() {
            None
        } else {
            Some(ErrorKind::ClientDisconnect)
        };
        self.end(error);
    }
}

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
        matches!(self, ProxyBody::Local(None))
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
