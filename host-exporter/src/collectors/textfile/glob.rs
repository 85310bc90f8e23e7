//! Go's `filepath.Glob` and `filepath.Join`, as node_exporter applies them to each
//! `--collector.textfile.directory` and to the files in it: `*` (any run of bytes but `/`), `?`
//! (one byte but `/`), `[a-z]`/`[^...]` classes and `\` escapes; no `**` and no `{a,b}`; matches
//! sorted by name at each level; the paths cleaned as Go cleans them (`./d/` is `d`). Paths are
//! bytes, so a directory whose name is not UTF-8 still works. The `glob` crate differs (`**`,
//! no byte paths), and this is a few dozen lines.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

/// A malformed pattern: an unclosed `[`, a trailing `\`, a bad range.
#[derive(Debug, PartialEq)]
pub struct BadPattern;

pub fn has_meta(pattern: &[u8]) -> bool {
    pattern
        .iter()
        .any(|b| matches!(b, b'*' | b'?' | b'[' | b'\\'))
}

/// The paths that match `pattern`, as Go's `filepath.Glob` finds them: directories that cannot
/// be read are skipped.
pub fn glob(pattern: &[u8]) -> Result<Vec<Vec<u8>>, BadPattern> {
    check(pattern)?;
    if !has_meta(pattern) {
        let exists = std::fs::symlink_metadata(OsStr::from_bytes(pattern)).is_ok();
        return Ok(if exists {
            vec![pattern.to_vec()]
        } else {
            vec![]
        });
    }
    let split = pattern
        .iter()
        .rposition(|&b| b == b'/')
        .map_or(0, |i| i + 1);
    let (dir, file) = pattern.split_at(split);
    let dir: &[u8] = match dir {
        b"" => b".",
        b"/" => b"/",
        d => &d[..d.len() - 1],
    };
    if !has_meta(dir) {
        return Ok(matches_in(dir, file));
    }
    if dir == pattern {
        return Err(BadPattern);
    }
    Ok(glob(dir)?
        .iter()
        .flat_map(|d| matches_in(d, file))
        .collect())
}

fn matches_in(dir: &[u8], pattern: &[u8]) -> Vec<Vec<u8>> {
    let Ok(entries) = std::fs::read_dir(OsStr::from_bytes(dir)) else {
        return Vec::new();
    };
    let mut names: Vec<Vec<u8>> = entries
        .filter_map(Result::ok)
        .map(|e| e.file_name().as_bytes().to_vec())
        .collect();
    names.sort();
    names
        .into_iter()
        .filter(|name| matches(pattern, name))
        .map(|name| join(dir, &name))
        .collect()
}

/// Checks that every `[...]` closes and every `\` escapes something.
fn check(pattern: &[u8]) -> Result<(), BadPattern> {
    let mut rest = pattern;
    while let Some(&b) = rest.first() {
        rest = match b {
            b'\\' => rest.get(2..).ok_or(BadPattern)?,
            b'[' => class(&rest[1..])?.2,
            _ => &rest[1..],
        };
    }
    Ok(())
}

/// A class after its `[`: whether it is negated, its ranges, and the pattern after its `]`.
type Class<'a> = (bool, Vec<(u8, u8)>, &'a [u8]);

fn class(mut p: &[u8]) -> Result<Class<'_>, BadPattern> {
    let negated = p.first() == Some(&b'^');
    if negated {
        p = &p[1..];
    }
    let mut ranges = Vec::new();
    loop {
        if p.first() == Some(&b']') && !ranges.is_empty() {
            return Ok((negated, ranges, &p[1..]));
        }
        let (lo, after) = class_char(p)?;
        p = after;
        let mut hi = lo;
        if p.first() == Some(&b'-') {
            (hi, p) = class_char(&p[1..])?;
            if hi < lo {
                return Err(BadPattern);
            }
        }
        ranges.push((lo, hi));
    }
}

fn class_char(p: &[u8]) -> Result<(u8, &[u8]), BadPattern> {
    match p {
        [] | [b'-' | b']', ..] => Err(BadPattern),
        [b'\\', c, rest @ ..] => Ok((*c, rest)),
        [b'\\'] => Err(BadPattern),
        [c, rest @ ..] => Ok((*c, rest)),
    }
}

/// Whether `name` matches the whole of a well-formed `pattern`.
pub fn matches(pattern: &[u8], name: &[u8]) -> bool {
    let Some(&first) = pattern.first() else {
        return name.is_empty();
    };
    match first {
        b'*' => {
            for skip in 0..=name.len() {
                if skip > 0 && name[skip - 1] == b'/' {
                    break;
                }
                if matches(&pattern[1..], &name[skip..]) {
                    return true;
                }
            }
            false
        }
        b'?' => name.first().is_some_and(|&c| c != b'/') && matches(&pattern[1..], &name[1..]),
        b'[' => {
            let Ok((negated, ranges, rest)) = class(&pattern[1..]) else {
                return false;
            };
            name.first().is_some_and(|&c| {
                c != b'/' && ranges.iter().any(|&(lo, hi)| (lo..=hi).contains(&c)) != negated
            }) && matches(rest, &name[1..])
        }
        b'\\' => {
            pattern.get(1).is_some_and(|c| name.first() == Some(c))
                && matches(&pattern[2..], &name[1..])
        }
        c => name.first() == Some(&c) && matches(&pattern[1..], &name[1..]),
    }
}

/// `dir/name` cleaned as Go's `filepath.Join` does.
pub fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut joined = dir.to_vec();
    if !joined.is_empty() {
        joined.push(b'/');
    }
    joined.extend_from_slice(name);
    clean(&joined)
}

/// Go's `filepath.Clean`: no repeated or trailing `/`, no `.`, `..` resolved lexically.
pub fn clean(path: &[u8]) -> Vec<u8> {
    let rooted = path.first() == Some(&b'/');
    let mut parts: Vec<&[u8]> = Vec::new();
    for part in path.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => match parts.last() {
                Some(&last) if last != b".." => {
                    parts.pop();
                }
                _ if rooted => {}
                _ => parts.push(part),
            },
            _ => parts.push(part),
        }
    }
    let mut out = if rooted { b"/".to_vec() } else { Vec::new() };
    out.extend_from_slice(&parts.join(&b'/'));
    if out.is_empty() {
        out.push(b'.');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_as_in_go() {
        for (pattern, name, expected) in [
            ("*.prom", "a.prom", true),
            ("*.prom", ".hidden.prom", true),
            ("*.prom", "a.prom.tmp", false),
            ("a?c", "abc", true),
            ("a?c", "a/c", false),
            ("*", "a/b", false),
            ("[a-c]x", "bx", true),
            ("[^a-c]x", "bx", false),
            ("[^a-c]x", "dx", true),
            ("\\*", "*", true),
            ("\\*", "a", false),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "aXbY", false),
            ("", "", true),
        ] {
            assert_eq!(
                matches(pattern.as_bytes(), name.as_bytes()),
                expected,
                "{pattern} {name}"
            );
        }
        for bad in ["[", "[a", "[]", "[z-a]", "a\\", "[-]"] {
            assert_eq!(check(bad.as_bytes()), Err(BadPattern), "{bad}");
        }
        assert_eq!(check(b"[a-z]*\\?"), Ok(()));
    }

    #[test]
    fn paths_are_cleaned_as_in_go() {
        for (path, expected) in [
            ("a//b/", "a/b"),
            ("./a/./b", "a/b"),
            ("a/../b", "b"),
            ("../a", "../a"),
            ("/../a", "/a"),
            ("", "."),
            ("/", "/"),
            ("a/b/../..", "."),
        ] {
            assert_eq!(clean(path.as_bytes()), expected.as_bytes(), "{path}");
        }
        assert_eq!(join(b"./dir/", b"x.prom"), b"dir/x.prom");
        assert_eq!(join(b"", b"x.prom"), b"x.prom");
    }

    #[test]
    fn glob_walks_directories_in_name_order() {
        let root = std::env::temp_dir().join(format!("textfile-glob-{}", std::process::id()));
        for dir in ["b1", "a1", "a2/sub", "c"] {
            std::fs::create_dir_all(root.join(dir)).unwrap();
        }
        std::fs::write(root.join("a3"), "a file").unwrap();
        let base = root.to_str().unwrap();
        let found = |pattern: &str| -> Vec<String> {
            glob(format!("{base}/{pattern}").as_bytes())
                .unwrap()
                .into_iter()
                .map(|p| String::from_utf8(p).unwrap().replace(base, "R"))
                .collect()
        };
        assert_eq!(found("?1"), ["R/a1", "R/b1"]);
        assert_eq!(found("a*"), ["R/a1", "R/a2", "R/a3"]);
        assert_eq!(found("*/sub"), ["R/a2/sub"]);
        assert_eq!(found("c"), ["R/c"]);
        assert!(found("missing").is_empty());
        assert!(found("z*").is_empty());
        assert_eq!(glob(b"[").unwrap_err(), BadPattern);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
