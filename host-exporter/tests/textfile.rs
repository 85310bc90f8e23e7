//! The textfile collector end to end on files made by the test: what cannot be read or parsed
//! (a FIFO, a symlink loop, a device, a directory, an unreadable or huge file, bad bytes) is
//! left out with a log line naming it and `node_textfile_scrape_error 1`, without blocking the
//! scrape, and the other files are served; directories come from globs and repeated flags; a
//! file cannot take the name of the exporter's own series.

use common::testing::{check_exposition, promtool_check_metrics, ExporterProcess};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

const BINARY: &str = env!("CARGO_BIN_EXE_host-exporter");

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("textfile-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The binary with only the textfile collector (and `extra`), as nobody when run as root, so
/// that a file without read permission cannot be read.
fn start(args: &[String], as_nobody: bool) -> ExporterProcess {
    let mut all: Vec<&str> = vec!["--collector.disable-defaults", "--collector.textfile"];
    all.extend(args.iter().map(String::as_str));
    // SAFETY: geteuid has no preconditions.
    if as_nobody && unsafe { libc::geteuid() } == 0 {
        let mut wrapped = vec!["--reuid=65534", "--regid=65534", "--clear-groups", BINARY];
        wrapped.extend_from_slice(&all);
        ExporterProcess::start_command("setpriv", &wrapped, &[])
    } else {
        ExporterProcess::start(BINARY, &all, &[])
    }
}

fn flag(dir: &Path) -> String {
    format!("--collector.textfile.directory={}", dir.display())
}

/// The text exposition passes promtool and the Python parser, and the OpenMetrics one (asked
/// of the exporter again) the Python OpenMetrics parser.
fn assert_valid_exposition(exporter: &ExporterProcess, text: &str) {
    check_exposition("text", text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let (code, output) = promtool_check_metrics(text);
    assert_eq!(code, 0, "promtool check metrics: {output}\n{text}");
    let openmetrics = common::testing::http_get(
        exporter.addr,
        "/metrics",
        &[("Accept", "application/openmetrics-text; version=1.0.0")],
    )
    .unwrap()
    .text();
    check_exposition("openmetrics", &openmetrics).unwrap_or_else(|e| panic!("{e}\n{openmetrics}"));
}

#[test]
fn unreadable_and_malformed_files_are_left_out_logged_and_never_block() {
    use std::os::unix::fs::PermissionsExt;
    let dir = temp_dir("hostile");
    let write = |name: &[u8], content: &[u8]| {
        std::fs::write(dir.join(OsStr::from_bytes(name)), content).unwrap()
    };
    write(
        b"good.prom",
        b"# HELP good_metric Fine.\n# TYPE good_metric gauge\ngood_metric 1\n",
    );
    // A name that is not UTF-8: read, its label shows U+FFFD.
    write(b"name\xff.prom", b"odd_name_metric 2\n");
    // A histogram without +Inf is no error: node_exporter adds the bucket from the count.
    write(
        b"no_inf.prom",
        b"# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 2\nh_count 3\n",
    );
    write(b"garbage.prom", b"\x00\x01 binary garbage \xfe\n");
    write(b"truncated.prom", b"# TYPE t counter\nt_total{a=\"b");
    write(b"bad_escape.prom", b"e{path=\"C:\\temp\"} 1\n");
    write(b"bad_utf8_value.prom", b"v{name=\"\xff\"} 1\n");
    write(b"timestamps.prom", b"ts_metric 1 1733540000000\n");
    write(b"reserved_label.prom", b"r{__hidden=\"x\"} 1\n");
    write(b"unreadable.prom", b"unreadable_metric 1\n");
    std::fs::set_permissions(
        dir.join("unreadable.prom"),
        std::fs::Permissions::from_mode(0o000),
    )
    .unwrap();
    let huge: Vec<u8> = b"huge_metric 1\n".repeat(700_000);
    assert!(huge.len() > 8 << 20);
    write(b"huge.prom", &huge);
    let fifo = dir.join("fifo.prom");
    let c_path = std::ffi::CString::new(fifo.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o644) }, 0);
    std::os::unix::fs::symlink("loop.prom", dir.join("loop.prom")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", dir.join("zero.prom")).unwrap();
    std::fs::create_dir(dir.join("directory.prom")).unwrap();
    write(b"ignored.txt", b"not a metrics file\n");

    let exporter = start(&[flag(&dir)], true);
    let response = exporter.get("/metrics");
    assert_eq!(response.status, 200);
    let text = response.text();
    assert!(
        text.contains("node_scrape_collector_success{collector=\"textfile\"} 1\n"),
        "the FIFO or /dev/zero held up the collector:\n{text}"
    );
    assert!(text.contains("node_textfile_scrape_error 1\n"), "{text}");
    assert!(text.contains("\ngood_metric 1\n"), "{text}");
    assert!(text.contains("\nodd_name_metric 2\n"), "{text}");
    assert!(text.contains("h_bucket{le=\"+Inf\"} 3\n"), "{text}");
    let shown = dir.display().to_string();
    for file in ["good.prom", "name\u{fffd}.prom", "no_inf.prom"] {
        assert!(
            text.contains(&format!(
                "node_textfile_mtime_seconds{{file=\"{shown}/{file}\"}} "
            )),
            "{file}: {text}"
        );
    }
    let refused = [
        "garbage.prom",
        "truncated.prom",
        "bad_escape.prom",
        "bad_utf8_value.prom",
        "timestamps.prom",
        "reserved_label.prom",
        "unreadable.prom",
        "huge.prom",
        "fifo.prom",
        "loop.prom",
        "zero.prom",
        "directory.prom",
    ];
    let log = exporter.stderr();
    for file in refused {
        let path = format!("{shown}/{file}");
        assert!(
            !text.contains(&format!("file=\"{path}\"")),
            "{file} has an mtime"
        );
        let line = log
            .lines()
            .find(|l| l.contains("failed to collect textfile data") && l.contains(&path))
            .unwrap_or_else(|| panic!("no log line for {file}:\n{log}"));
        assert!(line.contains("level=error"), "{line}");
    }
    for metric in [
        "ts_metric",
        "huge_metric",
        "unreadable_metric",
        "\nr{",
        "\nv{",
    ] {
        assert!(!text.contains(metric), "{metric} served:\n{text}");
    }
    assert!(log.contains("Permission denied"), "{log}");
    assert!(log.contains("larger than 8 MiB"), "{log}");
    assert!(log.contains("not a regular file"), "{log}");
    assert_valid_exposition(&exporter, &text);
    // And again: nothing was left stuck.
    assert!(exporter
        .get("/metrics")
        .text()
        .contains("node_scrape_collector_success{collector=\"textfile\"} 1\n"));
    drop(exporter);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn directories_come_from_globs_and_repeated_flags_and_none_by_default() {
    let root = temp_dir("globs");
    for (rel, content) in [
        ("jobs/a/x.prom", "from_a 1\n"),
        ("jobs/b/y.prom", "from_b 2\n"),
        ("jobs/c.txt/z.prom", "not_matched 3\n"),
        ("other/z.prom", "from_other 4\n"),
    ] {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
    let exporter = start(
        &[
            format!(
                "--collector.textfile.directory={}/jobs/[ab]",
                root.display()
            ),
            flag(&root.join("other")),
            // The same directory twice: its files are read twice, their series appear once.
            flag(&root.join("other")),
            flag(&root.join("missing")),
        ],
        false,
    );
    let text = exporter.get("/metrics").text();
    for line in ["from_a 1\n", "from_b 2\n", "from_other 4\n"] {
        assert!(text.contains(line), "{line}: {text}");
    }
    assert!(!text.contains("not_matched"));
    assert_eq!(text.matches("from_other 4\n").count(), 1, "{text}");
    assert_eq!(text.matches("/other/z.prom\"}").count(), 1, "{text}");
    let shown = root.display().to_string();
    assert!(text.contains(&format!(
        "node_textfile_mtime_seconds{{file=\"{shown}/jobs/a/x.prom\"}} "
    )));
    // The directory that does not exist is an error, logged with its path.
    assert!(text.contains("node_textfile_scrape_error 1\n"), "{text}");
    let log = exporter.stderr();
    assert!(
        log.contains("failed to read textfile collector directory")
            && log.contains(&format!("{shown}/missing")),
        "{log}"
    );
    drop(exporter);

    // No directory given: nothing read, no error, as node_exporter without the flag.
    let exporter = start(&[], false);
    let text = exporter.get("/metrics").text();
    assert!(text.contains("node_textfile_scrape_error 0\n"), "{text}");
    assert!(!text.contains("node_textfile_mtime_seconds"));
    drop(exporter);
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn families_across_files_and_the_exporters_own_names_follow_node_exporter() {
    let dir = temp_dir("clash");
    let write = |name: &str, content: &str| std::fs::write(dir.join(name), content).unwrap();
    write(
        "a.prom",
        concat!(
            "# HELP shared_total A shared family.\n# TYPE shared_total counter\nshared_total{from=\"a\"} 1\n",
            "process_open_fds 99999\n",
            "node_textfile_scrape_error 7\n",
            "node_scrape_collector_success{collector=\"impostor\"} 1\n",
            "# HELP node_load1 Not the load.\nnode_load1 12345\n",
            "filled{x=\"1\"} 1\nfilled{y=\"2\"} 2\nfilled 3\n",
            "dup 1\ndup 2\n",
            "# TYPE s summary\ns_sum 1\ns_count 2\n",
        ),
    );
    write(
        "b.prom",
        concat!(
            // Same HELP, another type: dropped (client_golang's registry does, without an error).
            "# HELP shared_total A shared family.\n# TYPE shared_total gauge\nshared_total{from=\"b\"} 2\n",
            // Same HELP and type: joined; the repeated label set is dropped.
            "s_count 5\n",
        ),
    );
    write(
        "c.prom",
        // Another HELP: the family is left out and the scrape reports an error.
        "# HELP shared_total Something else.\n# TYPE shared_total counter\nshared_total{from=\"c\"} 3\n",
    );
    let exporter = start(&[flag(&dir), "--collector.loadavg".to_string()], false);
    let text = exporter.get("/metrics").text();
    let count = |needle: &str| text.matches(needle).count();
    for name in [
        "shared_total",
        "process_open_fds",
        "node_textfile_scrape_error",
        "node_scrape_collector_success",
        "node_load1",
        "s_count",
    ] {
        assert!(
            count(&format!("# TYPE {name} ")) <= 1,
            "{name} twice:\n{text}"
        );
    }
    assert!(text.contains("shared_total{from=\"a\"} 1\n"));
    assert!(
        !text.contains("from=\"b\"") && !text.contains("from=\"c\""),
        "{text}"
    );
    assert!(!text.contains("99999") && !text.contains("12345") && !text.contains("impostor"));
    assert!(text.contains("node_textfile_scrape_error 1\n"), "{text}");
    assert!(text.contains("# HELP node_load1 1m load average.\n"));
    // Labels that some samples lack are added as "", sorted as client_golang sorts them.
    let filled: Vec<&str> = text.lines().filter(|l| l.starts_with("filled")).collect();
    assert_eq!(
        filled,
        [
            "filled{x=\"\",y=\"\"} 3",
            "filled{x=\"\",y=\"2\"} 2",
            "filled{x=\"1\",y=\"\"} 1"
        ]
    );
    assert!(text.contains("\ndup 1\n") && !text.contains("\ndup 2\n"));
    // s_count in b.prom is a family of its own there, clashing with the summary s: dropped.
    assert!(
        text.contains("\ns_count 2\n") && !text.contains("s_count 5"),
        "{text}"
    );
    assert!(text.contains("process_open_fds "));
    let log = exporter.stderr();
    for expected in [
        "inconsistent metric help text",
        "another type or help",
        "same name and labels",
        "name of the exporter's own",
        "name of a health series",
        "clashes with a histogram's or summary's series",
    ] {
        assert!(log.contains(expected), "log lacks {expected:?}:\n{log}");
    }
    assert_valid_exposition(&exporter, &text);
    drop(exporter);
    std::fs::remove_dir_all(&dir).unwrap();
}
