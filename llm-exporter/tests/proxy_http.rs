//! The proxy's own HTTP/1.1 upstream client against a raw-TCP fake upstream that sends exact
//! bytes: request framing, retries on a reused connection, malformed or odd answers.

mod support;

use common::testing::{free_port, ExporterProcess};
use std::net::TcpStream;
use std::sync::Arc;
use support::client::wait_for;
use support::exporter::start_exporter;
use support::raw::{exchange, header, request, RawFake, RawHandler, Reply};

const GET: &[u8] = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n";

fn start(fake: &RawFake) -> (ExporterProcess, u16) {
    let port = free_port();
    let exporter = start_exporter(&[
        format!("--upstream=up={}", fake.url()),
        format!("--proxy=up=127.0.0.1:{port}"),
        "--proxy.threads=1".to_string(),
    ]);
    (exporter, port)
}

/// Answers every request with its own request line, keeping the connection.
fn echo_line() -> RawHandler {
    Arc::new(|_, _, req: &[u8]| {
        let line = req.split(|b| *b == b'\r').next().unwrap_or_default();
        let body = [&b"you asked: "[..], line].concat();
        let mut out =
            format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
        out.extend_from_slice(&body);
        Reply::Keep(out)
    })
}

#[test]
fn a_client_cannot_strip_the_request_framing_with_connection() {
    let fake = RawFake::start(echo_line());
    let (_exporter, port) = start(&fake);
    let inner = b"GET /admin/secret HTTP/1.1\r\nHost: x\r\n\r\n";
    let attack = [
        format!(
            "POST /v1/completions HTTP/1.1\r\nHost: x\r\nConnection: content-length\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            inner.len()
        )
        .as_bytes(),
        inner,
    ]
    .concat();
    let answer = request(port, &attack).expect("an answer to the attacker");
    assert_eq!(answer.body, b"you asked: POST /v1/completions HTTP/1.1");
    let victim = request(port, GET).expect("an answer to the next client");
    assert_eq!(victim.body, b"you asked: GET /health HTTP/1.1");
    assert_eq!(
        fake.request_lines(),
        ["POST /v1/completions HTTP/1.1", "GET /health HTTP/1.1"]
    );
    let seen = fake.seen.lock().unwrap()[0].1.clone();
    assert_eq!(header(&seen, "content-length"), Some("39"));
    assert!(seen.ends_with(inner));

    // A chunked client body goes on chunked, whatever Connection names.
    let chunked =
        b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nConnection: transfer-encoding, host\r\n\
                    Transfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n";
    let answer = request(port, chunked).expect("an answer");
    assert_eq!(answer.body, b"you asked: POST /v1/completions HTTP/1.1");
    let seen = fake.seen.lock().unwrap()[2].1.clone();
    assert_eq!(header(&seen, "transfer-encoding"), Some("chunked"));
    assert_eq!(header(&seen, "content-length"), None);
    assert!(header(&seen, "host").is_some());
    assert!(seen.ends_with(b"4\r\nabcd\r\n0\r\n\r\n"));
    assert_eq!(fake.request_lines().len(), 3);
}

const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi";
const POST: &[u8] = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";

#[test]
fn a_reused_connection_closed_before_any_answer_is_retried_once_on_a_fresh_one() {
    // The first connection answers once, then closes on reading the second request, as an
    // upstream whose keep-alive timeout ran out just as the proxy reused the connection.
    let fake = RawFake::start(Arc::new(|conn, n, _: &[u8]| match (conn, n) {
        (1, 2) => Reply::Close(Vec::new()),
        _ => Reply::Keep(OK.to_vec()),
    }));
    let (_exporter, port) = start(&fake);
    let mut client = TcpStream::connect(("127.0.0.1", port)).unwrap();
    for _ in 0..3 {
        let answer = exchange(&mut client, POST).expect("an answer");
        assert_eq!((answer.status, &answer.body[..]), (200, &b"hi"[..]));
    }
    let conns: Vec<usize> = fake.seen.lock().unwrap().iter().map(|(c, _)| *c).collect();
    assert_eq!(conns, [1, 1, 2, 2]);
}

#[test]
fn a_request_is_not_sent_again_when_a_fresh_connection_fails_or_an_answer_began() {
    // Fresh connections that close on every request: a 502, the request sent once.
    let fake = RawFake::start(Arc::new(|_, _, _: &[u8]| Reply::Close(Vec::new())));
    let (_exporter, port) = start(&fake);
    assert_eq!(request(port, POST).expect("an answer").status, 502);
    assert_eq!(fake.request_lines().len(), 1);

    // A reused connection that breaks after part of an answer: a 502, not sent again.
    let fake = RawFake::start(Arc::new(|_, n, _: &[u8]| match n {
        1 => Reply::Keep(OK.to_vec()),
        _ => Reply::Close(b"HTTP/1.1 200 OK\r\nContent-".to_vec()),
    }));
    let (_exporter, port) = start(&fake);
    assert_eq!(request(port, POST).expect("an answer").status, 200);
    assert_eq!(request(port, POST).expect("an answer").status, 502);
    assert_eq!(fake.request_lines().len(), 2);
}

/// A POST to an inference route whose query names the fake's answer.
fn post_case(case: usize) -> Vec<u8> {
    format!(
        "POST /v1/chat/completions?case={case} HTTP/1.1\r\nHost: x\r\n\
         Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{{}}"
    )
    .into_bytes()
}

/// Answers `?case=N` with `answers[N]`, closing the connection after it.
fn cases(answers: &'static [&'static [u8]]) -> RawHandler {
    Arc::new(move |_, _, req: &[u8]| {
        let line = String::from_utf8_lossy(req.split(|b| *b == b'\r').next().unwrap()).to_string();
        let case: usize = line
            .split("case=")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap();
        Reply::Close(answers[case].to_vec())
    })
}

const BROKEN: &str = "llm_request_errors_total{upstream=\"up\",model=\"unknown\",route=\"/v1/chat/completions\",kind=\"upstream_broken\"}";

#[test]
fn conflicting_or_malformed_upstream_lengths_are_a_502_and_never_passed_on() {
    static BAD: [&[u8]; 7] = [
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\nhello!",
        b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\nhello",
        b"HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\nhello",
        b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999999\r\n\r\nhello",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nhello",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    ];
    let fake = RawFake::start(cases(&BAD));
    let (exporter, port) = start(&fake);
    for case in 0..BAD.len() {
        let answer = request(port, &post_case(case)).expect("an answer");
        assert_eq!(answer.status, 502, "case {case}: {answer:?}");
    }
    wait_for(&exporter, BROKEN, BAD.len() as f64);

    // The same length repeated is one length; it reaches the client as one value.
    static SAME: [&[u8]; 3] = [
        b"HTTP/1.1 200 OK\r\nContent-Length: 7, 7\r\n\r\nhello!!",
        b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\nContent-Length: 7\r\n\r\nhello!!",
        // A length beside chunked coding is void: not passed on.
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n7\r\nhello!!\r\n0\r\n\r\n",
    ];
    let fake = RawFake::start(cases(&SAME));
    let (_exporter, port) = start(&fake);
    for case in 0..SAME.len() {
        let answer = request(port, &post_case(case)).expect("an answer");
        assert_eq!(
            (answer.status, &answer.body[..]),
            (200, &b"hello!!"[..]),
            "case {case}"
        );
        let length = header(answer.head.as_bytes(), "content-length");
        assert!(
            matches!(length, None | Some("7")),
            "case {case}: {answer:?}"
        );
        assert_eq!(
            answer.head.matches("ontent-").count(),
            usize::from(length.is_some())
        );
    }
}

#[test]
fn a_switching_protocols_answer_is_a_502_and_its_connection_is_not_reused() {
    let fake = RawFake::start(Arc::new(|conn, n, _: &[u8]| {
        match (conn, n) {
        (1, 1) => Reply::Keep(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
                .to_vec(),
        ),
        _ => Reply::Keep(OK.to_vec()),
    }
    }));
    let (exporter, port) = start(&fake);
    assert_eq!(request(port, &post_case(0)).expect("an answer").status, 502);
    let answer = request(port, POST).expect("an answer");
    assert_eq!((answer.status, &answer.body[..]), (200, &b"hi"[..]));
    let conns: Vec<usize> = fake.seen.lock().unwrap().iter().map(|(c, _)| *c).collect();
    assert_eq!(conns, [1, 2]);
    wait_for(&exporter, BROKEN, 1.0);
}

#[test]
fn response_heads_over_100_fields_or_64_kib_are_a_502() {
    fn head(fields: usize, pad: usize) -> &'static [u8] {
        let mut head = String::from("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n");
        for i in 1..fields {
            head.push_str(&format!("X-F{i}: v\r\n"));
        }
        if pad > 0 {
            head.push_str(&format!("X-Pad: {}\r\n", "p".repeat(pad)));
        }
        head.push_str("\r\nhi");
        Box::leak(head.into_bytes().into_boxed_slice())
    }
    // 100 fields and a head just under 64 KiB pass; 101 fields, or a head just over, do not.
    let fits = 1 + 65536 - 10 - (head(99, 1).len() - 2);
    let over = 1 + 65536 + 10 - (head(1, 1).len() - 2);
    let answers: &'static [&'static [u8]] = Box::leak(Box::new([
        head(100, 0),
        head(99, fits),
        head(101, 0),
        head(1, over),
    ]));
    assert_eq!(answers[1].len() - 2, 65536 - 10);
    assert_eq!(answers[3].len() - 2, 65536 + 10);
    let fake = RawFake::start(cases(answers));
    let (exporter, port) = start(&fake);
    for (case, want) in [200, 200, 502, 502].into_iter().enumerate() {
        let answer = request(port, &post_case(case)).expect("an answer");
        assert_eq!(answer.status, want, "case {case}");
    }
    wait_for(&exporter, BROKEN, 2.0);
}

#[test]
fn bad_chunk_framing_read_with_the_head_is_a_502() {
    static ANSWERS: [&[u8]; 2] = [
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
    ];
    let fake = RawFake::start(cases(&ANSWERS));
    let (exporter, port) = start(&fake);
    assert_eq!(request(port, &post_case(0)).expect("an answer").status, 502);
    let answer = request(port, &post_case(1)).expect("an answer");
    assert_eq!((answer.status, &answer.body[..]), (200, &b"hi"[..]));
    wait_for(&exporter, BROKEN, 1.0);
}

#[test]
fn a_connection_that_sent_chunked_coding_beside_a_length_is_not_reused() {
    let fake = RawFake::start(Arc::new(|conn, n, _: &[u8]| {
        match (conn, n) {
        (1, 1) => Reply::Keep(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n2\r\nhi\r\n0\r\n\r\n"
                .to_vec(),
        ),
        _ => Reply::Keep(OK.to_vec()),
    }
    }));
    let (_exporter, port) = start(&fake);
    for _ in 0..2 {
        let answer = request(port, POST).expect("an answer");
        assert_eq!((answer.status, &answer.body[..]), (200, &b"hi"[..]));
    }
    let conns: Vec<usize> = fake.seen.lock().unwrap().iter().map(|(c, _)| *c).collect();
    assert_eq!(conns, [1, 2]);
}
