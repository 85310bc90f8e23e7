//! Golden files: an exposition (made stable by the caller, see [`super::stable_exposition`])
//! compared with a checked-in copy, which `UPDATE_GOLDEN=1` rewrites instead. Every crate keeps
//! its golden files in `tests/golden/`.

use std::path::{Path, PathBuf};

/// `tests/golden/NAME` in the crate at `crate_dir` (its `env!("CARGO_MANIFEST_DIR")`).
pub fn golden_file(crate_dir: &str, name: &str) -> PathBuf {
    Path::new(crate_dir).join("tests/golden").join(name)
}

/// Compares `actual` with the file at `path`; with `UPDATE_GOLDEN=1` rewrites the file instead.
pub fn assert_golden(path: &Path, actual: &str) {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1");
    compare_or_update(path, actual, update);
}

fn compare_or_update(path: &Path, actual: &str, update: bool) {
    if update {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("cannot create the golden directory");
        }
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

/// The lines only in `expected` (`- `) and only in `actual` (`+ `); a line that moved counts as
/// the same (the order of an exposition is checked by the byte comparison, shown by the count).
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
    use crate::testing::Scratch;

    #[test]
    fn a_golden_file_matches_byte_for_byte_or_fails_with_the_difference() {
        let scratch = Scratch::new("golden");
        let path = scratch.path("a.prom");
        std::fs::write(&path, "a 1\nb 2\n").unwrap();
        compare_or_update(&path, "a 1\nb 2\n", false);
        let failed = std::panic::catch_unwind(|| compare_or_update(&path, "a 1\nb 3\n", false))
            .expect_err("a different exposition must fail");
        let message = failed.downcast_ref::<String>().unwrap();
        assert!(message.contains("- b 2\n+ b 3"), "{message}");
        // Updating rewrites the file, and it matches from then on.
        compare_or_update(&path, "a 1\nb 3\n", true);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a 1\nb 3\n");
        compare_or_update(&path, "a 1\nb 3\n", false);
    }
}
