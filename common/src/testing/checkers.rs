//! The independent oracles of an exposition's format, run as programs: `promtool check metrics`
//! and the Prometheus project's Python parsers (tools/check_exposition.py).

use std::io::Write;
use std::process::{Command, Stdio};

/// Runs `program args` with `input` on its stdin: (exit code, stdout then stderr).
pub fn run_with_stdin(program: &str, args: &[&str], input: &str) -> (i32, String) {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{program} is needed by this test (see .ci/run): {e}"));
    // A writer thread, so a checker that answers before reading all its input cannot deadlock.
    let mut stdin = child.stdin.take().expect("piped stdin");
    let input = input.to_owned();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(input.as_bytes());
    });
    let out = child.wait_with_output().expect("checker did not run");
    let _ = writer.join();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

/// `promtool check metrics` (Debian package `prometheus`) on a text-format exposition: (exit
/// code, its complaints; empty when it has none).
pub fn promtool_check_metrics(body: &str) -> (i32, String) {
    run_with_stdin("promtool", &["check", "metrics"], body)
}

/// `tools/check_exposition.py FORMAT` (the Prometheus project's Python parsers; FORMAT is `text`
/// or `openmetrics`): Ok(its summary) when the body parses, Err(the parser's complaint).
pub fn check_exposition(format: &str, body: &str) -> Result<String, String> {
    let checker = concat!(env!("CARGO_MANIFEST_DIR"), "/../tools/check_exposition.py");
    match run_with_stdin("python3", &[checker, format], body) {
        (0, out) => Ok(out),
        (_, out) => Err(out),
    }
}
