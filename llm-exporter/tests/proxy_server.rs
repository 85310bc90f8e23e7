//! The proxy's own HTTP/1.1 server side, driven by a raw-TCP client (what a general HTTP library
//! would refuse to send), against a raw-TCP fake upstream: request framing and what is refused,
//! pipelining, HTTP/1.0, `Expect: 100-continue`, bodiless answers, and clients that are slow,
//! silent, or gone.

mod support;

use common::testing::{free_port, ExporterProcess};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::exporter::start_exporter;
use support::raw::{exchange, header, RawFake, RawHandler, Reply};

/// Starts the proxy in front of `fake` with a short client timeout.
fn start(fake: &RawFake) -> (ExporterProcess, u16) {
    start_in_front_of(
        &fake.url(),
        &[
            "--upstream.backend=up=llama.cpp",
            "--proxy.client-timeout=400ms",
        ],
    )
}

/// Starts the proxy, one thread, in front of the upstream at `url`, with `extra` flags.
fn start_in_front_of(url: &str, extra: &[&str]) -> (ExporterProcess, u16) {
    let port = free_port();
    let mut args = vec![
        format!("--upstream=up={url}"),
        format!("--proxy=up=127.0.0.1:{port}"),
        "--proxy.threads=1".to_string(),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    (start_exporter(&args), port)
}

/// A fake upstream that reads each request's head, not its body, and hands the connection and
/// the head to `answer`: for upstreams that answer before or while a body comes. Its URL.
fn head_reading_upstream(answer: impl Fn(TcpStream, &[u8]) + Send + Sync + 'static) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let answer = Arc::new(answer);
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let answer = answer.clone();
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && conn.read(&mut byte).unwrap_or(0) == 1 {
                    head.push(byte[0]);
                }
                answer(conn, &head);
            });
        }
    });
    url
}

fn connect(port: u16) -> TcpStream {
    let conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    conn
}

/// Answers every request with its request line and its body (de-chunked), keeping the
/// connection.
fn echo() -> RawHandler {
    Arc::new(|_, _, req: &[u8]| {
        let line = req.split(|b| *b == b'\r').next().unwrap_or_default();
        let head_end = req.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let body = if header(&req[..head_end], "transfer-encoding").is_some() {
            dechunk(&req[head_end..])
        } else {
            req[head_end..].to_vec()
        };
        let answer = [line, b" body=", &body].concat();
        let mut out = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
            answer.len()
        )
        .into_bytes();
        out.extend_from_slice(&answer);
        Reply::Keep(out)
    })
}

fn dechunk(mut coded: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let line_end = coded.windows(2).position(|w| w == b"\r\n").unwrap();
        let size = std::str::from_utf8(&coded[..line_end]).unwrap();
        let size = usize::from_str_radix(size.split(';').next().unwrap(), 16).unwrap();
        if size == 0 {
            return body;
        }
        body.extend_from_slice(&coded[line_end + 2..line_end + 2 + size]);
        coded = &coded[line_end + 2 + size + 2..];
    }
}

/// Reads until the proxy closes the connection; what came, or None if it stayed open for 5 s.
fn read_to_close(conn: &mut TcpStream) -> Option<Vec<u8>> {
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut all = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match conn.read(&mut chunk) {
            Ok(0) => return Some(all),
            Ok(n) => all.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Some(all),
            Err(_) => return None,
        }
    }
}

/// The sum of every series of `family` whose labels contain `labels`.
fn sum(exposition: &str, family: &str, labels: &str) -> f64 {
    exposition
        .lines()
        .filter(|l| l.starts_with(&format!("{family}{{")) && l.contains(labels))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

fn wait_for_sum(exporter: &ExporterProcess, family: &str, labels: &str, want: f64) {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let metrics = exporter.metrics();
        if sum(&metrics, family, labels) == want {
            return;
        }
        assert!(
            Instant::now() < until,
            "{family}{{{labels}}} never reached {want}:\n{metrics}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn pipelined_requests_are_answered_in_order_on_one_connection() {
    let fake = RawFake::start(echo());
    let (_exporter, port) = start(&fake);
    let mut conn = connect(port);
    // Three requests in one write, one with a body, the last after stray empty lines.
    let pipelined = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n\
        POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc\
        \r\n\r\n\nGET /c HTTP/1.1\r\nHost: x\r\n\r\n";
    let first = exchange(&mut conn, pipelined).expect("first answer");
    assert_eq!(first.body, b"GET /a HTTP/1.1 body=");
    let second = exchange(&mut conn, b"").expect("second answer");
    assert_eq!(second.body, b"POST /b HTTP/1.1 body=abc");
    let third = exchange(&mut conn, b"").expect("third answer");
    assert_eq!(third.body, b"GET /c HTTP/1.1 body=");
    // The connection still serves.
    let fourth = exchange(&mut conn, b"GET /d HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert_eq!(fourth.body, b"GET /d HTTP/1.1 body=");
}

#[test]
fn a_head_that_comes_a_byte_at_a_time_is_read_whole() {
    let fake = RawFake::start(echo());
    let (_exporter, port) = start(&fake);
    let mut conn = connect(port);
    conn.set_nodelay(true).unwrap();
    // The empty line that ends it is split too, between every pair of its bytes.
    let head = b"GET /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nok";
    for byte in head {
        conn.write_all(&[*byte]).unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }
    let answer = exchange(&mut conn, b"").unwrap();
    assert_eq!(answer.body, b"GET /slow HTTP/1.1 body=ok");
}

#[test]
fn requests_whose_framing_could_smuggle_are_refused_and_never_reach_the_upstream() {
    let fake = RawFake::start(echo());
    let (_exporter, port) = start(&fake);
    let hidden = "GET /admin HTTP/1.1\r\nHost: x\r\n\r\n";
    let chunked_hidden = format!("0\r\n\r\n{hidden}");
    for (head, body, status) in [
        (
            "POST /v1/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
            chunked_hidden.as_str(),
            400,
        ),
        (
            "POST /v1/completions HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
            chunked_hidden.as_str(),
            400,
        ),
        (
            "POST /v1/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            chunked_hidden.as_str(),
            400,
        ),
        (
            "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 33\r\n\r\n",
            hidden,
            400,
        ),
        (
            "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
            hidden,
            400,
        ),
        (
            "POST /v1/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            chunked_hidden.as_str(),
            501,
        ),
        (
            "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length : 33\r\n\r\n",
            hidden,
            400,
        ),
        (
            "POST /v1/completions HTTP/1.1\r\nHost: x\r\nX: a\r\n folded\r\n\r\n",
            hidden,
            400,
        ),
    ] {
        let mut conn = connect(port);
        conn.write_all(format!("{head}{body}").as_bytes()).unwrap();
        let answer = read_to_close(&mut conn).expect("the connection is closed");
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status} ")),
            "{head:?}: {answer}"
        );
        assert!(answer.contains("connection: close\r\n"), "{answer}");
        // Exactly one answer: nothing after the first body was read as a request.
        assert_eq!(answer.matches("HTTP/1.1 ").count(), 1, "{answer}");
    }
    assert!(
        fake.request_lines().is_empty(),
        "{:?}",
        fake.request_lines()
    );
}

#[test]
fn a_chunked_request_body_reaches_the_upstream_decoded_and_framed_anew() {
    let fake = RawFake::start(echo());
    let (exporter, port) = start(&fake);
    let mut conn = connect(port);
    let request = b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
        5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n";
    let answer = exchange(&mut conn, request).unwrap();
    assert_eq!(
        answer.body,
        b"POST /v1/completions HTTP/1.1 body=hello world"
    );
    let seen = fake.seen.lock().unwrap()[0].1.clone();
    let seen = String::from_utf8_lossy(&seen);
    assert!(seen.contains("transfer-encoding: chunked\r\n"), "{seen}");
    assert!(
        !seen.contains("ext=1") && !seen.contains("X-Trailer"),
        "{seen}"
    );
    // Chunked coding that a lenient reader in front could take for something else (a bare LF
    // in an extension, junk after the size, a trailer line without a colon) ends the request
    // with a 400 and the connection; what follows never reaches the upstream.
    for bad in [
        &b"zz\r\n"[..],
        b"3;a\nabc\r\n0\r\n\r\nGET /hidden HTTP/1.1\r\nHost: x\r\n\r\n",
        b"3 junk\r\nabc\r\n0\r\n\r\nGET /hidden HTTP/1.1\r\nHost: x\r\n\r\n",
        b"0\r\nGET /hidden HTTP/1.1\r\nHost: x\r\n\r\n",
    ] {
        let mut conn = connect(port);
        let head =
            b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
        conn.write_all(&[&head[..], bad].concat()).unwrap();
        let answer = String::from_utf8_lossy(&read_to_close(&mut conn).unwrap()).to_string();
        assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
        assert!(answer.contains("connection: close\r\n"), "{answer}");
        assert_eq!(answer.matches("HTTP/1.1 ").count(), 1, "{answer}");
    }
    let lines = fake.request_lines();
    assert!(!lines.iter().any(|l| l.contains("hidden")), "{lines:?}");
    // Counted as the client's error, with the code it got, not as a client that left.
    wait_for_sum(
        &exporter,
        "llm_request_errors_total",
        "kind=\"client_error\"",
        4.0,
    );
    wait_for_sum(&exporter, "llm_requests_total", "code=\"400\"", 4.0);
}

#[test]
fn requests_sent_before_a_half_close_are_all_answered() {
    let fake = RawFake::start(echo());
    let (_exporter, port) = start(&fake);
    let mut conn = connect(port);
    conn.write_all(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    conn.shutdown(std::net::Shutdown::Write).unwrap();
    let answers = String::from_utf8_lossy(&read_to_close(&mut conn).unwrap()).to_string();
    assert!(answers.contains("GET /a HTTP/1.1 body="), "{answers}");
    assert!(answers.ends_with("GET /b HTTP/1.1 body="), "{answers}");
}

#[test]
fn a_client_that_stops_sending_its_body_gets_an_error_after_the_client_timeout() {
    let fake = RawFake::start(echo());
    let (exporter, port) = start(&fake);
    let mut conn = connect(port);
    conn.write_all(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nab")
        .unwrap();
    let started = Instant::now();
    let answer = String::from_utf8_lossy(&read_to_close(&mut conn).unwrap()).to_string();
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
    assert!(answer.contains("connection: close\r\n"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(3));
    wait_for_sum(
        &exporter,
        "llm_request_errors_total",
        "kind=\"client_error\"",
        1.0,
    );
    wait_for_sum(&exporter, "llm_requests_total", "code=\"408\"", 1.0);
    wait_for_sum(
        &exporter,
        "llm_active_requests",
        "route=\"/v1/completions\"",
        0.0,
    );
    // The scrapes poll the upstream; the request itself never reached it whole.
    let lines = fake.request_lines();
    assert!(!lines.iter().any(|l| l.starts_with("POST")), "{lines:?}");
}

#[test]
fn http_1_0_clients_get_http_1_0_answers_and_keep_alive_only_when_asked() {
    let fake = RawFake::start(echo());
    let (_exporter, port) = start(&fake);
    let mut conn = connect(port);
    conn.write_all(b"GET /a HTTP/1.0\r\n\r\n").unwrap();
    let answer = String::from_utf8_lossy(&read_to_close(&mut conn).unwrap()).to_string();
    assert!(answer.starts_with("HTTP/1.0 200 OK\r\n"), "{answer}");
    assert!(answer.ends_with("GET /a HTTP/1.1 body="), "{answer}");

    let mut conn = connect(port);
    let keep = b"GET /b HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
    let first = exchange(&mut conn, keep).unwrap();
    assert!(
        first.head.contains("connection: keep-alive\r\n"),
        "{}",
        first.head
    );
    let second = exchange(&mut conn, b"GET /c HTTP/1.0\r\n\r\n").unwrap();
    assert_eq!(second.body, b"GET /c HTTP/1.1 body=");
}

#[test]
fn an_upstream_answer_of_unknown_length_reaches_a_1_0_client_closed_and_a_1_1_client_chunked() {
    // An answer framed by the end of the upstream connection.
    let fake = RawFake::start(Arc::new(|_, _, _: &[u8]| {
        Reply::Close(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end".to_vec())
    }));
    let (_exporter, port) = start(&fake);
    let mut conn = connect(port);
    let answer = exchange(&mut conn, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert!(
        answer.head.contains("transfer-encoding: chunked\r\n"),
        "{}",
        answer.head
    );
    assert_eq!(answer.body, b"until the end");
    let mut conn = connect(port);
    conn.write_all(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        .unwrap();
    let answer = String::from_utf8_lossy(&read_to_close(&mut conn).unwrap()).to_string();
    assert!(answer.starts_with("HTTP/1.0 200 OK\r\n"), "{answer}");
    assert!(!answer.contains("transfer-encoding") && !answer.contains("keep-alive"));
    assert!(answer.ends_with("\r\n\r\nuntil the end"), "{answer}");
}

#[test]
fn expect_100_continue_is_answered_before_the_body_is_sent() {
    let fake = RawFake::start(echo());
    let (_exporter, port) = start(&fake);
    let mut conn = connect(port);
    let head =
        b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n";
    conn.write_all(head).unwrap();
    let mut interim = [0u8; 25];
    conn.read_exact(&mut interim).unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    let answer = exchange(&mut conn, b"ping").unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, b"POST /v1/completions HTTP/1.1 body=ping");
    // The proxy answered the expectation; the upstream is not asked to.
    let seen = fake.seen.lock().unwrap()[0].1.clone();
    assert!(
        header(&seen, "expect").is_none(),
        "{}",
        String::from_utf8_lossy(&seen)
    );
}

#[test]
fn an_upstream_100_continue_does_not_stop_the_body_from_being_sent() {
    // As cpp-httplib and Go's server do: `100 Continue` once the head is in, then the body is
    // read, then the answer.
    let url = head_reading_upstream(|mut conn, head| {
        if !head.starts_with(b"POST") {
            return;
        }
        let _ = conn.write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
        let mut body = [0u8; 100_000];
        if conn.read_exact(&mut body).is_ok() {
            let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nread");
        }
    });
    let (_exporter, port) = start_in_front_of(&url, &["--proxy.header-timeout=5s"]);
    let mut conn = connect(port);
    conn.write_all(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
        .unwrap();
    // The body comes after the upstream's 100 has reached the proxy.
    std::thread::sleep(Duration::from_millis(300));
    let answer = exchange(&mut conn, &[b'x'; 100_000]).unwrap();
    assert_eq!((answer.status, &answer.body[..]), (200, &b"read"[..]));
}

#[test]
fn heads_over_64_kib_or_100_fields_are_refused_with_431() {
    let fake = RawFake::start(echo());
    let (_exporter, port) = start(&fake);
    let long = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Long: {}\r\n\r\n",
        "a".repeat(70 << 10)
    );
    let many = format!("GET / HTTP/1.1\r\n{}\r\n", "X-Field: y\r\n".repeat(101));
    for head in [long, many] {
        let mut conn = connect(port);
        // The proxy may answer before it has read all of a long head.
        let _ = conn.write_all(head.as_bytes());
        let answer = String::from_utf8_lossy(&read_to_close(&mut conn).unwrap()).to_string();
        assert!(answer.starts_with("HTTP/1.1 431 "), "{answer}");
    }
    assert!(fake.request_lines().is_empty());
}

#[test]
fn a_slow_head_or_an_idle_connection_is_closed_after_the_client_timeout() {
    let fake = RawFake::start(echo());
    let (_exporter, port) = start(&fake);
    // Half a head, then nothing (a slow-loris client).
    let mut conn = connect(port);
    conn.write_all(b"GET / HTTP/1.1\r\nHo").unwrap();
    let started = Instant::now();
    assert_eq!(read_to_close(&mut conn), Some(Vec::new()));
    assert!(started.elapsed() < Duration::from_secs(3));
    // A keep-alive connection that served a request and then went quiet.
    let mut conn = connect(port);
    exchange(&mut conn, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let started = Instant::now();
    assert_eq!(read_to_close(&mut conn), Some(Vec::new()));
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(fake.request_lines().len() == 1);
}

#[test]
fn answers_to_head_and_204_have_no_body_and_the_connection_goes_on() {
    let fake = RawFake::start(Arc::new(|_, _, req: &[u8]| {
        Reply::Keep(if req.starts_with(b"HEAD") {
            b"HTTP/1.1 200 OK\r\nContent-Length: 803\r\nContent-Type: application/json\r\n\r\n"
                .to_vec()
        } else if req.starts_with(b"DELETE") {
            b"HTTP/1.1 204 No Content\r\n\r\n".to_vec()
        } else {
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec()
        })
    }));
    let (_exporter, port) = start(&fake);
    let mut conn = connect(port);
    conn.write_all(b"HEAD /x HTTP/1.1\r\nHost: x\r\n\r\nDELETE /y HTTP/1.1\r\nHost: x\r\n\r\nGET /z HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    // Read everything the three answers make; the last one ends the wait.
    let mut all = Vec::new();
    let mut chunk = [0u8; 4096];
    while !all.ends_with(b"\r\n\r\nok") {
        let n = conn.read(&mut chunk).unwrap();
        assert!(n > 0, "{}", String::from_utf8_lossy(&all));
        all.extend_from_slice(&chunk[..n]);
    }
    // Field names pass with their case; compared here without it.
    let all = String::from_utf8_lossy(&all).to_ascii_lowercase();
    let answers: Vec<&str> = all.split("http/1.1 ").skip(1).collect();
    assert_eq!(answers.len(), 3, "{all}");
    // HEAD keeps the length the body would have, and nothing follows the head.
    assert!(answers[0].starts_with("200 ok\r\n") && answers[0].contains("content-length: 803\r\n"));
    assert!(answers[0].ends_with("\r\n\r\n"), "{}", answers[0]);
    assert!(answers[1].starts_with("204 no content\r\n") && answers[1].ends_with("\r\n\r\n"));
    assert!(!answers[1].contains("content-length") && !answers[1].contains("transfer-encoding"));
    assert!(answers[2].starts_with("200 ok\r\n") && answers[2].ends_with("\r\n\r\nok"));
}

/// An SSE answer from llama-server: the head and the first content event, then (the fake keeps
/// the connection) nothing more.
fn one_event_then_silence() -> RawHandler {
    Arc::new(|_, _, _: &[u8]| {
        let event = b"data: {\"choices\":[{\"finish_reason\":null,\"index\":0,\"delta\":{\"content\":\"Hi\"}}],\"model\":\"m\",\"object\":\"chat.completion.chunk\"}\n\n";
        let mut out = format!(
            "HTTP/1.1 200 OK\r\nServer: llama.cpp\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n",
            event.len()
        )
        .into_bytes();
        out.extend_from_slice(event);
        out.extend_from_slice(b"\r\n");
        Reply::Keep(out)
    })
}

const STREAM_REQUEST: &[u8] = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";

#[test]
fn a_client_that_leaves_while_the_upstream_is_silent_is_counted_at_once() {
    let fake = RawFake::start(one_event_then_silence());
    let (exporter, port) = start(&fake);
    // Also with the stray empty line some clients send after a body: it is no next request
    // that a client which half-closed would still wait for.
    for (left, request) in [
        (1.0, STREAM_REQUEST.to_vec()),
        (2.0, [STREAM_REQUEST, b"\r\n"].concat()),
    ] {
        leave_mid_stream(&exporter, port, &request, left);
    }
}

fn leave_mid_stream(exporter: &ExporterProcess, port: u16, request: &[u8], left: f64) {
    let mut conn = connect(port);
    conn.write_all(request).unwrap();
    let mut first = Vec::new();
    let mut chunk = [0u8; 4096];
    while !String::from_utf8_lossy(&first).contains("Hi") {
        let n = conn.read(&mut chunk).unwrap();
        assert!(n > 0);
        first.extend_from_slice(&chunk[..n]);
    }
    wait_for_sum(
        exporter,
        "llm_active_requests",
        "route=\"/v1/chat/completions\"",
        1.0,
    );
    drop(conn);
    // The upstream sends nothing more (the idle timeout is minutes away): only watching the
    // client shows that it left.
    wait_for_sum(
        exporter,
        "llm_request_errors_total",
        "kind=\"client_disconnect\"",
        left,
    );
    wait_for_sum(
        exporter,
        "llm_active_requests",
        "route=\"/v1/chat/completions\"",
        0.0,
    );
}

#[test]
fn a_client_that_stops_reading_is_dropped_after_the_client_timeout_and_counted() {
    // A stream far larger than the socket buffers between the proxy and the client hold.
    let fake = RawFake::start(Arc::new(|_, _, _: &[u8]| {
        let event = b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}],\"model\":\"m\"}\n\n";
        let mut out = b"HTTP/1.1 200 OK\r\nServer: llama.cpp\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        let block = event.repeat(4096);
        for _ in 0..160 {
            out.extend_from_slice(format!("{:x}\r\n", block.len()).as_bytes());
            out.extend_from_slice(&block);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"0\r\n\r\n");
        Reply::Close(out)
    }));
    let (exporter, port) = start(&fake);
    let mut conn = connect(port);
    conn.write_all(STREAM_REQUEST).unwrap();
    // Never read.
    wait_for_sum(
        &exporter,
        "llm_request_errors_total",
        "kind=\"client_disconnect\"",
        1.0,
    );
    wait_for_sum(
        &exporter,
        "llm_active_requests",
        "route=\"/v1/chat/completions\"",
        0.0,
    );
    drop(conn);
}

#[test]
fn an_upstream_that_answers_before_the_whole_body_came_ends_the_client_connection() {
    // An upstream with a size limit answers after the head and closes, as nginx and
    // cpp-httplib do with a 413.
    let url = head_reading_upstream(|mut conn, _| {
        let _ = conn.write_all(
            b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 8\r\nConnection: close\r\n\r\ntoo long",
        );
    });
    let (_exporter, port) = start_in_front_of(&url, &[]);
    let mut conn = connect(port);
    // 64 MiB announced, a little sent: the rest never comes.
    conn.write_all(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 67108864\r\n\r\n")
        .unwrap();
    conn.write_all(&[b'a'; 1000]).unwrap();
    let answer = String::from_utf8_lossy(&read_to_close(&mut conn).unwrap()).to_string();
    assert!(
        answer.starts_with("HTTP/1.1 413 Payload Too Large\r\n"),
        "{answer}"
    );
    assert!(answer.contains("connection: close\r\n"), "{answer}");
    assert!(answer.ends_with("\r\n\r\ntoo long"), "{answer}");
}
