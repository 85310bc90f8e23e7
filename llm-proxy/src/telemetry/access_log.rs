//! The JSON access log: one line per finished inference request, written by a thread of its
//! own. The proxy only hands a record to a bounded queue (`try_send`, never a wait), so a slow,
//! full or blocked disk (or a FIFO nobody reads) never slows a request or a stream; when the
//! writer falls behind, the queue stays bounded and the lines that do not fit are counted in
//! `llm_proxy_access_log_lines_dropped_total` instead.
//!
//! The line's fields and their order are a contract with the log collectors (the compose
//! stack's Alloy pipeline parses them): see `Line`. No prompt, answer or header value is ever
//! in a record; the request id is held to a safe alphabet by `request_id`, and every string is
//! escaped by serde_json.

use super::record::RequestRecord;
use serde::Serialize;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::time::Duration;

/// Where the lines go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Destination {
    Stdout,
    Stderr,
    /// A file, opened for appending (created when missing) and opened anew when it is moved
    /// away or deleted (log rotation).
    File(PathBuf),
}

impl Destination {
    /// `--proxy.access-log`: empty is off, `stdout` and `stderr` are the streams, anything
    /// else a file path.
    pub fn parse(raw: &str) -> Option<Destination> {
        match raw {
            "" => None,
            "stdout" | "-" => Some(Destination::Stdout),
            "stderr" => Some(Destination::Stderr),
            path => Some(Destination::File(PathBuf::from(path))),
        }
    }
}

/// One access log line. Field names and order are the log's schema; `None` is written as
/// `null`, except `trace_id`, which is left out when the request has no trace.
#[derive(Serialize)]
struct Line<'a> {
    time: String,
    request_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    trace_id: Option<String>,
    upstream: &'a str,
    backend: Option<&'a str>,
    model: Option<&'a str>,
    route: &'a str,
    code: u16,
    outcome: &'static str,
    error_kind: Option<&'a str>,
    finish_reason: Option<&'a str>,
    stream: bool,
    duration_seconds: f64,
    ttft_seconds: Option<f64>,
    queue_seconds: Option<f64>,
    prompt_tokens: Option<u64>,
    generated_tokens: Option<u64>,
}

/// Seconds with microsecond precision: enough for a log, and short.
fn seconds(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e6
}

/// Appends the record's line, newline included, to `out`.
pub fn write_line(record: &RequestRecord, out: &mut Vec<u8>) {
    let line = Line {
        time: common::log::timestamp(record.end_time),
        request_id: &record.request_id,
        trace_id: record.trace.map(|t| t.trace_id_hex()),
        upstream: &record.upstream,
        backend: record.backend,
        model: record.model.as_deref(),
        route: record.route,
        code: record.code,
        outcome: record.outcome(),
        error_kind: record.error_kind,
        finish_reason: record.finish_reason,
        stream: record.stream,
        duration_seconds: seconds(record.duration),
        ttft_seconds: record.ttft.map(seconds),
        queue_seconds: record.queue.map(seconds),
        prompt_tokens: record.prompt_tokens,
        generated_tokens: record.generated_tokens,
    };
    // Serializing plain strings and numbers into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, &line);
    out.push(b'\n');
}

/// The lines that could not be written: the queue was full, or the write failed.
#[derive(Default)]
pub struct AccessLogCounters {
    dropped: AtomicU64,
}

impl AccessLogCounters {
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    fn drop_lines(&self, n: u64) {
        self.dropped.fetch_add(n, Ordering::Relaxed);
    }
}

/// The proxy's handle on the access log: cheap to share between proxy threads.
pub struct AccessLog {
    queue: SyncSender<RequestRecord>,
    counters: Arc<AccessLogCounters>,
}

/// How long `start` waits for the file to open before going on without knowing: opening a FIFO
/// waits for a reader, and that must not hold up the exporter's start.
const OPEN_WAIT: Duration = Duration::from_secs(1);

/// Lines the writer takes from the queue for one write.
const BATCH_LINES: usize = 256;

impl AccessLog {
    /// Starts the writer thread. A file that cannot be opened (no such directory, no
    /// permission) is an error now; one whose opening blocks (a FIFO without a reader) is
    /// opened by the writer when it can, the queue filling and counting drops meanwhile.
    pub fn start(destination: Destination, queue_size: usize) -> Result<AccessLog, String> {
        let (queue, records) = mpsc::sync_channel(queue_size);
        let counters = Arc::new(AccessLogCounters::default());
        let (opened_tx, opened) = mpsc::sync_channel(1);
        let writer_counters = counters.clone();
        std::thread::Builder::new()
            .name("llm-proxy-access-log".into())
            .spawn(move || {
                let sink = match Sink::open(destination) {
                    Ok(sink) => {
                        let _ = opened_tx.send(Ok(()));
                        sink
                    }
                    Err(e) => {
                        let _ = opened_tx.send(Err(e));
                        return;
                    }
                };
                run(sink, records, &writer_counters);
            })
            .map_err(|e| format!("cannot start the access log writer: {e}"))?;
        match opened.recv_timeout(OPEN_WAIT) {
            Ok(Err(e)) => Err(e),
            Ok(Ok(())) | Err(_) => Ok(AccessLog { queue, counters }),
        }
    }

    /// Queues the request's line; never waits. A full queue (or a writer that has stopped)
    /// counts the line as dropped.
    pub fn log(&self, record: RequestRecord) {
        match self.queue.try_send(record) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.counters.drop_lines(1)
            }
        }
    }

    pub fn counters(&self) -> Arc<AccessLogCounters> {
        self.counters.clone()
    }
}

/// The open destination.
enum Sink {
    Stdout,
    Stderr,
    File {
        path: PathBuf,
        file: std::fs::File,
        /// Device and inode of the open file, to see it rotated away.
        id: Option<(u64, u64)>,
    },
}

fn open_append(path: &PathBuf) -> Result<(std::fs::File, Option<(u64, u64)>), String> {
    use std::os::unix::fs::MetadataExt;
    let file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map_err(|e| format!("--proxy.access-log={}: {e}", path.display()))?;
    let id = file.metadata().ok().map(|m| (m.dev(), m.ino()));
    Ok((file, id))
}

impl Sink {
    fn open(destination: Destination) -> Result<Sink, String> {
        Ok(match destination {
            Destination::Stdout => Sink::Stdout,
            Destination::Stderr => Sink::Stderr,
            Destination::File(path) => {
                let (file, id) = open_append(&path)?;
                Sink::File { path, file, id }
            }
        })
    }

    /// Opens the file anew when the path no longer names the open file (moved away or deleted
    /// by a log rotation); a failure keeps the old one.
    fn follow_rotation(&mut self) {
        use std::os::unix::fs::MetadataExt;
        if let Sink::File { path, file, id } = self {
            let now = std::fs::metadata(&*path).ok().map(|m| (m.dev(), m.ino()));
            if now.is_none() || now != *id {
                if let Ok((new_file, new_id)) = open_append(path) {
                    *file = new_file;
                    *id = new_id;
                }
            }
        }
    }

    fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            // The std handles' locks keep a batch whole against the exporter's own log lines.
            Sink::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(bytes)?;
                out.flush()
            }
            Sink::Stderr => std::io::stderr().lock().write_all(bytes),
            Sink::File { file, .. } => file.write_all(bytes),
        }
    }
}

/// The writer: takes what is queued (up to a batch), writes it with one call, until the proxy
/// drops its handle.
fn run(mut sink: Sink, records: Receiver<RequestRecord>, counters: &AccessLogCounters) {
    let mut batch = Vec::with_capacity(64 * 1024);
    let mut failing = false;
    while let Ok(first) = records.recv() {
        batch.clear();
        write_line(&first, &mut batch);
        let mut lines = 1u64;
        while (lines as usize) < BATCH_LINES {
            match records.try_recv() {
                Ok(record) => {
                    write_line(&record, &mut batch);
                    lines += 1;
                }
                Err(TryRecvError::Empty) | Err(TryRecvError::Disconnected) => break,
            }
        }
        sink.follow_rotation();
        match sink.write_all(&batch) {
            Ok(()) => {
                if failing {
                    common::log::info("proxy access log writes again", &[]);
                    failing = false;
                }
            }
            Err(e) => {
                counters.drop_lines(lines);
                if !failing {
                    common::log::error(
                        "proxy access log cannot write; lines are dropped and counted",
                        &[("err", &e.to_string())],
                    );
                    failing = true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::record::sample;
    use super::super::trace_context::{SpanContext, TraceParent};
    use super::*;
    use common::testing::Scratch;

    fn line(record: &RequestRecord) -> String {
        let mut out = Vec::new();
        write_line(record, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_success_line_has_every_field_in_order() {
        assert_eq!(
            line(&sample()),
            concat!(
                r#"{"time":"2026-12-07T05:10:00.123Z","request_id":"req-1","upstream":"llama","#,
                r#""backend":"llama.cpp","model":"qwen3-8b","route":"/v1/chat/completions","#,
                r#""code":200,"outcome":"success","error_kind":null,"finish_reason":"stop","#,
                r#""stream":true,"duration_seconds":1.234,"ttft_seconds":0.123,"#,
                r#""queue_seconds":0.01,"prompt_tokens":12,"generated_tokens":34}"#,
                "\n"
            )
        );
    }

    #[test]
    fn unknown_values_are_null_and_a_trace_adds_its_id() {
        let parent = TraceParent::parse(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        let record = RequestRecord {
            trace: Some(SpanContext::start(parent)),
            backend: None,
            model: None,
            code: 502,
            error_kind: Some("upstream_unreachable"),
            finish_reason: None,
            stream: false,
            ttft: None,
            queue: None,
            prompt_tokens: None,
            generated_tokens: None,
            ..sample()
        };
        let text = line(&record);
        assert!(text.ends_with("}\n") && text.matches('\n').count() == 1);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        keys.sort_unstable();
        let mut schema = [
            "time",
            "request_id",
            "trace_id",
            "upstream",
            "backend",
            "model",
            "route",
            "code",
            "outcome",
            "error_kind",
            "finish_reason",
            "stream",
            "duration_seconds",
            "ttft_seconds",
            "queue_seconds",
            "prompt_tokens",
            "generated_tokens",
        ];
        schema.sort_unstable();
        assert_eq!(keys, schema);
        assert_eq!(v["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(v["outcome"], "error");
        assert_eq!(v["error_kind"], "upstream_unreachable");
        assert_eq!(v["code"], 502);
        for null in [
            "backend",
            "model",
            "finish_reason",
            "ttft_seconds",
            "queue_seconds",
            "prompt_tokens",
            "generated_tokens",
        ] {
            assert!(v[null].is_null(), "{null}");
        }
        assert_eq!(v["stream"], false);
    }

    #[test]
    fn a_hostile_model_name_stays_inside_its_string() {
        let model = "m\"},\n{\"code\":1\\\u{7}é";
        let record = RequestRecord {
            model: Some(model.into()),
            ..sample()
        };
        let text = line(&record);
        assert_eq!(text.matches('\n').count(), 1);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["model"], model);
        assert_eq!(v["code"], 200);
    }

    #[test]
    fn lines_are_appended_to_the_file() {
        let scratch = Scratch::new("access-log-append");
        let path = scratch.path("access.log");
        std::fs::write(&path, "earlier line\n").unwrap();
        let log = AccessLog::start(Destination::File(path.clone()), 16).unwrap();
        for id in ["a", "b", "c"] {
            log.log(RequestRecord {
                request_id: id.into(),
                ..sample()
            });
        }
        let counters = log.counters();
        drop(log);
        let text = wait_for_lines(&path, 4);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "earlier line");
        let ids: Vec<String> = lines[1..]
            .iter()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["request_id"].to_string()
            })
            .collect();
        assert_eq!(ids, ["\"a\"", "\"b\"", "\"c\""]);
        assert_eq!(counters.dropped(), 0);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn a_rotated_file_is_opened_anew() {
        let scratch = Scratch::new("access-log-rotate");
        let path = scratch.path("access.log");
        let moved = scratch.path("access.log.1");
        let log = AccessLog::start(Destination::File(path.clone()), 16).unwrap();
        log.log(sample());
        wait_for_lines(&path, 1);
        std::fs::rename(&path, &moved).unwrap();
        log.log(sample());
        wait_for_lines(&path, 1);
        assert_eq!(std::fs::read_to_string(&moved).unwrap().lines().count(), 1);
        let _ = std::fs::remove_file(&path);
        let _ = std::fs::remove_file(&moved);
    }

    /// Polls until the file has `n` lines (the writer is a thread of its own).
    fn wait_for_lines(path: &PathBuf, n: usize) -> String {
        for _ in 0..500 {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            if text.lines().count() >= n {
                return text;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("{} never had {n} lines", path.display());
    }

    #[test]
    fn an_unopenable_file_is_an_error_at_start() {
        let scratch = Scratch::new("access-log-no-dir");
        let path = scratch.path("no-such-dir").join("access.log");
        let err = AccessLog::start(Destination::File(path), 4).err().unwrap();
        assert!(err.contains("--proxy.access-log="), "{err}");
    }

    #[test]
    fn a_blocked_writer_never_blocks_the_proxy_and_counts_what_it_drops() {
        // A FIFO nobody reads: the writer cannot even open it.
        let scratch = Scratch::new("access-log-fifo");
        let path = scratch.path("access.fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&path)
            .status()
            .unwrap();
        assert!(made.success());
        let log = AccessLog::start(Destination::File(path.clone()), 8).unwrap();
        for i in 0..100 {
            log.log(RequestRecord {
                request_id: format!("r{i}"),
                ..sample()
            });
        }
        // The queue held 8; the other 92 were dropped, and logging returned every time.
        assert_eq!(log.counters().dropped(), 92);
        // A reader comes: the queued lines arrive, the first ones logged.
        let mut reader = std::fs::File::open(&path).unwrap();
        drop(log);
        let mut text = String::new();
        std::io::Read::read_to_string(&mut reader, &mut text).unwrap();
        let ids: Vec<String> = text
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["request_id"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert_eq!(ids, (0..8).map(|i| format!("r{i}")).collect::<Vec<_>>());
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn destinations_parse() {
        assert_eq!(Destination::parse(""), None);
        assert_eq!(Destination::parse("stdout"), Some(Destination::Stdout));
        assert_eq!(Destination::parse("stderr"), Some(Destination::Stderr));
        assert_eq!(
            Destination::parse("/var/log/llm/access.log"),
            Some(Destination::File("/var/log/llm/access.log".into()))
        );
    }
}
