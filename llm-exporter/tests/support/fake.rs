//! A fake model server on loopback that serves recorded answers: the exact bodies and headers
//! captured from llama-server (tests/fixtures/llama-server), and Ollama's documented shapes
//! (tests/fixtures/ollama). Streams go out one event per HTTP chunk with a gap between them, as the
//! real servers send them; a gate can hold a stream until the test lets it go on.

#![allow(dead_code)]

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, Incoming};
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, Semaphore};

pub fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

pub fn fixture(name: &str) -> Bytes {
    let path = fixture_dir().join(name);
    Bytes::from(std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

/// What the fake answers to one request.
#[derive(Clone)]
pub enum Answer {
    Full {
        status: u16,
        headers: Vec<(String, String)>,
        body: Bytes,
    },
    /// Events sent one per chunk, `gap` apart. With a gate, every event after the first waits
    /// for a permit. With `stall_after`, the stream stops after that many events and never ends.
    /// With `cut_after`, the connection is dropped after that many events, mid-body (no last
    /// chunk), as when the server process dies.
    Stream {
        status: u16,
        headers: Vec<(String, String)>,
        events: Vec<Bytes>,
        gap: Duration,
        gate: Option<Arc<Semaphore>>,
        stall_after: Option<usize>,
        cut_after: Option<usize>,
    },
    /// Never answer.
    Hang,
}

impl Answer {
    /// A llama-server capture: `NAME.headers` (status line and headers) and `NAME.body`.
    pub fn recorded(stem: &str) -> Answer {
        let (status, headers) = recorded_head(stem);
        Answer::Full {
            status,
            headers,
            body: fixture(&format!("llama-server/{stem}.body")),
        }
    }

    /// A recorded llama-server stream, split into its SSE events.
    pub fn recorded_stream(stem: &str, gap: Duration) -> Answer {
        let (status, headers) = recorded_head(stem);
        Answer::Stream {
            status,
            headers,
            events: split_after(&fixture(&format!("llama-server/{stem}.body")), b"\n\n"),
            gap,
            gate: None,
            stall_after: None,
            cut_after: None,
        }
    }

    /// An Ollama answer: Go's net/http headers with the given content type.
    pub fn ollama(status: u16, content_type: &str, body: Bytes) -> Answer {
        Answer::Full {
            status,
            headers: ollama_headers(content_type),
            body,
        }
    }

    pub fn ollama_json(stem: &str) -> Answer {
        Answer::ollama(
            200,
            "application/json; charset=utf-8",
            fixture(&format!("ollama/{stem}.body")),
        )
    }

    /// An Ollama NDJSON stream, one line per chunk.
    pub fn ollama_stream(stem: &str, gap: Duration) -> Answer {
        Answer::Stream {
            status: 200,
            headers: ollama_headers("application/x-ndjson"),
            events: split_after(&fixture(&format!("ollama/{stem}.body")), b"\n"),
            gap,
            gate: None,
            stall_after: None,
            cut_after: None,
        }
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Answer {
        match &mut self {
            Answer::Full { headers, .. } | Answer::Stream { headers, .. } => {
                headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
                headers.push((name.to_string(), value.to_string()));
            }
            Answer::Hang => {}
        }
        self
    }

    /// Every event after the first waits for a permit of `gate`.
    pub fn gated(mut self, new: Arc<Semaphore>) -> Answer {
        if let Answer::Stream { gate, .. } = &mut self {
            *gate = Some(new);
        }
        self
    }

    /// The stream sends `n` events and then stays open and silent.
    pub fn stalling_after(mut self, n: usize) -> Answer {
        if let Answer::Stream { stall_after, .. } = &mut self {
            *stall_after = Some(n);
        }
        self
    }

    /// The stream sends `n` events and then the connection breaks.
    pub fn cut_after(mut self, n: usize) -> Answer {
        if let Answer::Stream { cut_after, .. } = &mut self {
            *cut_after = Some(n);
        }
        self
    }

    pub fn with_body(mut self, new: Bytes) -> Answer {
        if let Answer::Full { body, .. } = &mut self {
            *body = new;
        }
        self
    }
}

fn ollama_headers(content_type: &str) -> Vec<(String, String)> {
    vec![
        ("Content-Type".into(), content_type.into()),
        ("Date".into(), "Mon, 23 Nov 2026 09:00:00 GMT".into()),
    ]
}

/// Reads a curl `-D` header file; framing headers are left to the HTTP library.
fn recorded_head(stem: &str) -> (u16, Vec<(String, String)>) {
    let text = String::from_utf8(fixture(&format!("llama-server/{stem}.headers")).to_vec())
        .expect("headers are text");
    let mut lines = text.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let headers = lines
        .filter_map(|l| l.trim_end_matches('\r').split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .filter(|(n, _)| {
            ![
                "content-length",
                "transfer-encoding",
                "keep-alive",
                "connection",
            ]
            .contains(&n.to_ascii_lowercase().as_str())
        })
        .collect();
    (status, headers)
}

/// Splits after each separator, keeping it: `a\n\nb\n\n` -> [`a\n\n`, `b\n\n`].
pub fn split_after(body: &[u8], sep: &[u8]) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i + sep.len() <= body.len() {
        if &body[i..i + sep.len()] == sep {
            out.push(Bytes::copy_from_slice(&body[start..i + sep.len()]));
            start = i + sep.len();
            i = start;
        } else {
            i += 1;
        }
    }
    if start < body.len() {
        out.push(Bytes::copy_from_slice(&body[start..]));
    }
    out
}

/// One request the fake received.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

pub type Handler = Arc<dyn Fn(&Seen) -> Answer + Send + Sync>;

pub struct Fake {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    handler: Arc<Mutex<Handler>>,
    /// Streams the fake could not finish because the client went away.
    pub aborted_streams: Arc<Mutex<u32>>,
    /// Client connections open now (accepted and not yet closed by either side).
    pub open_connections: Arc<AtomicUsize>,
    /// Ends the fake's runtime: the listener and every open connection close.
    stop: Mutex<
        Option<(
            tokio::sync::oneshot::Sender<()>,
            std::thread::JoinHandle<()>,
        )>,
    >,
}

impl Fake {
    pub fn start(handler: Handler) -> Fake {
        Fake::start_on(0, handler)
    }

    /// The POSTs received so far, in order (the proxy's backend detection may GET meanwhile).
    pub fn posts(&self) -> Vec<Seen> {
        let seen = self.seen.lock().unwrap();
        seen.iter()
            .filter(|s| s.method == "POST")
            .cloned()
            .collect()
    }

    /// The last POST received.
    pub fn last_post(&self) -> Seen {
        self.posts().pop().expect("the fake received a POST")
    }

    /// On a given loopback port (0: any free one).
    pub fn start_on(port: u16, handler: Handler) -> Fake {
        let std_listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let handler = Arc::new(Mutex::new(handler));
        let aborted = Arc::new(Mutex::new(0));
        let open = Arc::new(AtomicUsize::new(0));
        let (s, h, a, o) = (seen.clone(), handler.clone(), aborted.clone(), open.clone());
        let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
                loop {
                    let accepted = tokio::select! {
                        accepted = listener.accept() => accepted,
                        _ = &mut stop_rx => return,
                    };
                    let Ok((stream, _)) = accepted else {
                        continue;
                    };
                    // Without it, Nagle and delayed ACKs hold small stream chunks ~40 ms.
                    let _ = stream.set_nodelay(true);
                    let (s, h, a, o) = (s.clone(), h.clone(), a.clone(), o.clone());
                    o.fetch_add(1, Ordering::SeqCst);
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(move |req| {
                            let (s, h, a) = (s.clone(), h.clone(), a.clone());
                            async move { Ok::<_, Infallible>(answer(req, &s, &h, &a).await) }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                        o.fetch_sub(1, Ordering::SeqCst);
                    });
                }
            });
        });
        Fake {
            addr,
            seen,
            handler,
            aborted_streams: aborted,
            open_connections: open,
            stop: Mutex::new(Some((stop_tx, thread))),
        }
    }

    /// Stops serving, as a server that exits: its port refuses connections from now on, and
    /// kept-alive connections are closed (dropping the runtime drops their tasks).
    pub fn stop(&self) {
        if let Some((tx, thread)) = self.stop.lock().unwrap().take() {
            let _ = tx.send(());
            let _ = thread.join();
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set(&self, handler: Handler) {
        *self.handler.lock().unwrap() = handler;
    }

    pub fn paths(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|s| s.path.clone())
            .collect()
    }
}

type FakeBody = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

async fn answer(
    req: Request<Incoming>,
    seen: &Mutex<Vec<Seen>>,
    handler: &Mutex<Handler>,
    aborted: &Arc<Mutex<u32>>,
) -> Response<FakeBody> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let request = Seen {
        method: parts.method.to_string(),
        path: parts
            .uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        headers: parts.headers,
        body,
    };
    seen.lock().unwrap().push(request.clone());
    let handler = handler.lock().unwrap().clone();
    match handler(&request) {
        Answer::Full {
            status,
            headers,
            body,
        } => respond(
            status,
            &headers,
            Full::new(body).map_err(|never| match never {}).boxed(),
        ),
        Answer::Stream {
            status,
            headers,
            events,
            gap,
            gate,
            stall_after,
            cut_after,
        } => {
            let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(1);
            let aborted = aborted.clone();
            tokio::spawn(async move {
                for (i, event) in events.into_iter().enumerate() {
                    if cut_after == Some(i) {
                        // A body error makes hyper drop the connection without the last chunk.
                        let cut = std::io::Error::other("the fake server died mid-stream");
                        let _ = tx.send(Err(cut)).await;
                        return;
                    }
                    if stall_after == Some(i) {
                        // Keep the connection open and silent until the client gives up.
                        tx.closed().await;
                        return;
                    }
                    if i > 0 {
                        if let Some(gate) = &gate {
                            gate.acquire().await.unwrap().forget();
                        }
                        if !gap.is_zero() {
                            tokio::time::sleep(gap).await;
                        }
                    }
                    if tx.send(Ok(Frame::data(event))).await.is_err() {
                        *aborted.lock().unwrap() += 1;
                        return;
                    }
                }
            });
            respond(status, &headers, ChannelBody(rx).boxed())
        }
        Answer::Hang => {
            std::future::pending::<()>().await;
            unreachable!()
        }
    }
}

fn respond(status: u16, headers: &[(String, String)], body: FakeBody) -> Response<FakeBody> {
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::from_u16(status).unwrap();
    for (name, value) in headers {
        response.headers_mut().append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    response
}

/// An mpsc receiver as a body: each message is one frame, sent as one HTTP chunk.
struct ChannelBody(mpsc::Receiver<Result<Frame<Bytes>, std::io::Error>>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        self.0.poll_recv(cx)
    }
}
