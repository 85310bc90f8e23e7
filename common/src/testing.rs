//! Helpers for the exporters' end-to-end tests: start the real binary on a free loopback port,
//! wait until it answers, and speak plain HTTP/1.1 to it without pulling in a client crate.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A loopback port nobody listens on right now, below the kernel's ephemeral range (32768 and
/// up on Linux), so that an outgoing connection of a parallel test cannot take it between now
/// and the moment the exporter binds it (port 0 would hand out exactly such ports). Ports are
/// handed out in turn from a start that depends on the process id.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const COUNT: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(7919) % COUNT,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    for _ in 0..COUNT {
        let port = (FIRST + NEXT.fetch_add(1, Ordering::Relaxed) % COUNT) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!(
        "no free loopback port between {FIRST} and {}",
        FIRST + COUNT
    )
}

/// A response as the tests look at it: status, headers (lower-case names), body bytes.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// GET `path` with extra headers; the connection is closed after the response.
pub fn http_get(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<HttpResponse> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> std::io::Result<HttpResponse> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of headers"))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no status line"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"))
    {
        body = dechunk(&body).ok_or_else(|| bad("bad chunked body"))?;
    }
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&data[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

/// A running exporter binary, killed when dropped.
pub struct ExporterProcess {
    pub child: Child,
    pub addr: SocketAddr,
    pub stderr_path: std::path::PathBuf,
}

impl ExporterProcess {
    /// Starts `binary` listening on a free loopback port with `args`, and waits (up to 10 s) for
    /// `/-/ready`. Its stderr goes to a temporary file, read back by [`Self::stderr`].
    pub fn start(binary: &str, args: &[&str], envs: &[(&str, &str)]) -> ExporterProcess {
        Self::start_command(binary, args, envs)
    }

    /// Like [`Self::start`], for a binary started through a wrapper (`setpriv`, `env`): the
    /// listen address flag goes at the end of `args`.
    pub fn start_command(program: &str, args: &[&str], envs: &[(&str, &str)]) -> ExporterProcess {
        let port = free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let stderr_path =
            std::env::temp_dir().join(format!("exporter-{}-{port}.log", std::process::id()));
        let stderr = std::fs::File::create(&stderr_path).expect("cannot create log file");
        let mut command = Command::new(program);
        command
            .args(args)
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(stderr);
        for (k, v) in envs {
            command.env(k, v);
        }
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
        let mut process = ExporterProcess {
            child,
            addr,
            stderr_path,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = process.child.try_wait() {
                panic!("{program} exited with {status}: {}", process.stderr());
            }
            if http_get(addr, "/-/ready", &[])
                .map(|r| r.status == 200)
                .unwrap_or(false)
            {
                return process;
            }
            if Instant::now() > deadline {
                panic!("{program} did not become ready: {}", process.stderr());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn get(&self, path: &str) -> HttpResponse {
        http_get(self.addr, path, &[]).expect("request failed")
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }
}

impl Drop for ExporterProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.stderr_path);
    }
}

/// Debian's `prometheus-node-exporter`, the oracle of host-exporter's comparison tests, on a free
/// loopback port; killed when dropped.
pub struct NodeExporter {
    child: Child,
    pub addr: SocketAddr,
}

impl NodeExporter {
    /// Starts it with `args` (the listen address is added) and waits, up to 10 s, until it
    /// answers `/metrics` (it has no `/-/ready`).
    pub fn start(args: &[String]) -> NodeExporter {
        const PROGRAM: &str = "prometheus-node-exporter";
        let port = free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let child = Command::new(PROGRAM)
            .args(args)
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("{PROGRAM} is needed (apt-get install prometheus-node-exporter): {e}")
            });
        let node = NodeExporter { child, addr };
        let deadline = Instant::now() + Duration::from_secs(10);
        while http_get(addr, "/metrics", &[]).is_err() {
            assert!(Instant::now() < deadline, "{PROGRAM} did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        node
    }
}

impl Drop for NodeExporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Removes the lines that change from run to run (durations, process figures, build info) and
/// the given families, so an exposition can be compared with a checked-in one.
pub fn stable_exposition(text: &str, also_drop: &[&str]) -> String {
    let volatile = |name: &str| {
        name.ends_with("_collector_duration_seconds")
            || name.starts_with("process_")
            || name.ends_with("_build_info")
            || also_drop.contains(&name)
    };
    text.lines()
        .filter(|line| {
            let name = if let Some(rest) = line
                .strip_prefix("# HELP ")
                .or_else(|| line.strip_prefix("# TYPE "))
            {
                rest.split(' ').next().unwrap_or("")
            } else {
                line.split(['{', ' ']).next().unwrap_or("")
            };
            !volatile(name)
        })
        .map(|l| format!("{l}\n"))
        .collect()
}

/// Copies a fixture tree (directories and files) to `to`, e.g. to alter a copy in a test.
pub fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

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

/// `promtool check metrics` (Debian package `prometheus`) on a text-format exposition.
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

/// Compares `actual` with the file at `path`; with `UPDATE_GOLDEN=1` rewrites the file instead.
pub fn assert_golden(path: &std::path::Path, actual: &str) {
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(path, actual).expect("cannot write golden file");
        return;
    }
    let expected = std::fs::read_to_string(path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with UPDATE_GOLDEN=1 to create it)",
            path.display()
        )
    });
    if expected != actual {
        let diff: Vec<String> = diff_lines(&expected, actual);
        panic!(
            "{} differs from the scrape ({} lines differ; UPDATE_GOLDEN=1 rewrites it):\n{}",
            path.display(),
            diff.len(),
            diff.iter().take(40).cloned().collect::<Vec<_>>().join("\n")
        );
    }
}

fn diff_lines(expected: &str, actual: &str) -> Vec<String> {
    let e: std::collections::BTreeSet<&str> = expected.lines().collect();
    let a: std::collections::BTreeSet<&str> = actual.lines().collect();
    e.difference(&a)
        .map(|l| format!("- {l}"))
        .chain(a.difference(&e).map(|l| format!("+ {l}")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_parse_plain_and_chunked() {
        let r =
            parse_response(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nhello").unwrap();
        assert_eq!(
            (r.status, r.header("content-type"), r.text().as_str()),
            (200, Some("text/plain"), "hello")
        );
        let r = parse_response(b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n").unwrap();
        assert_eq!((r.status, r.text().as_str()), (404, "abcde"));
        assert!(parse_response(b"garbage").is_err());
    }

    #[test]
    fn volatile_lines_are_dropped() {
        let text = "# HELP a_collector_duration_seconds x\n# TYPE a_collector_duration_seconds gauge\na_collector_duration_seconds{collector=\"c\"} 0.1\nprocess_open_fds 5\nnode_load1 1\n";
        assert_eq!(stable_exposition(text, &[]), "node_load1 1\n");
        assert_eq!(stable_exposition(text, &["node_load1"]), "");
    }
}

/// Label pairs sorted by name.
pub type Labels = Vec<(String, String)>;

/// One family of a parsed text-format exposition.
#[derive(Clone, Debug, Default)]
pub struct ParsedFamily {
    pub kind: String,
    /// (sample name, labels, value)
    pub samples: Vec<(String, Labels, f64)>,
}

/// Parses the Prometheus text format 0.0.4 strictly enough for comparisons between exporters:
/// `# TYPE` lines name the families, every sample belongs to the family declared before it.
pub fn parse_text(body: &str) -> Result<std::collections::BTreeMap<String, ParsedFamily>, String> {
    let mut families: std::collections::BTreeMap<String, ParsedFamily> = Default::default();
    let mut current = String::new();
    for (n, line) in body.lines().enumerate() {
        let fail = |why: &str| format!("line {}: {why}: {line:?}", n + 1);
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').ok_or_else(|| fail("bad TYPE"))?;
            current = name.to_string();
            families.entry(current.clone()).or_default().kind = kind.to_string();
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (name, labels, rest) = match line.find('{') {
            Some(open) => {
                let (labels, after) =
                    parse_labels(&line[open + 1..]).ok_or_else(|| fail("bad labels"))?;
                (&line[..open], labels, after)
            }
            None => {
                let (name, rest) = line.split_once(' ').ok_or_else(|| fail("no value"))?;
                (name, Vec::new(), rest)
            }
        };
        let value_text = rest
            .split_whitespace()
            .next()
            .ok_or_else(|| fail("no value"))?;
        let value = match value_text {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v.parse().map_err(|_| fail("bad value"))?,
        };
        let family = if name.starts_with(current.as_str()) && !current.is_empty() {
            current.clone()
        } else {
            name.to_string()
        };
        let mut labels = labels;
        labels.sort();
        families
            .entry(family)
            .or_default()
            .samples
            .push((name.to_string(), labels, value));
    }
    Ok(families)
}

/// Parses `a="x",b="y\"z"} rest` into pairs and the text after `}`.
fn parse_labels(text: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut labels = Vec::new();
    let mut rest = text;
    loop {
        rest = rest.trim_start_matches([',', ' ']);
        if let Some(after) = rest.strip_prefix('}') {
            return Some((labels, after));
        }
        let (key, after_key) = rest.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = after_key.char_indices();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                '"' => break i,
                c => value.push(c),
            }
        };
        labels.push((key.trim().to_string(), value));
        rest = &after_key[end + 1..];
    }
}
