//! The README's list of host-exporter's collectors against the registry: the same names, each
//! on or off by default as the README says. A collector added, renamed or switched off in the
//! registry fails here until the README says so too.

use std::collections::BTreeMap;

/// Where the README lists the collectors: the paragraph that starts with the first marker, and
/// the storage paragraph up to the sentence about its flags.
const LISTS: [(&str, &str); 2] = [
    ("Collectors (on by default unless said)", "\n\n"),
    ("Storage collectors, also on by default", "Their flags are"),
];

/// `text` without anything in parentheses (paths, family names, flags: not collectors).
fn without_parentheses(text: &str) -> String {
    let mut depth = 0usize;
    let mut kept = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            c if depth == 0 => kept.push(c),
            _ => {}
        }
    }
    kept
}

/// The collector names of one list, each with whether it is on by default: a clause (between
/// semicolons) that says "off by default" lists collectors that are off.
fn listed(list: &str, into: &mut BTreeMap<String, bool>) {
    for clause in without_parentheses(list).split(';') {
        let on = !clause.contains("off by default");
        for (index, quoted) in clause.split('`').enumerate() {
            let is_name = index % 2 == 1
                && !quoted.is_empty()
                && quoted
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            if is_name {
                let earlier = into.insert(quoted.to_string(), on);
                assert_eq!(earlier, None, "the README lists {quoted} twice");
            }
        }
    }
}

fn readme_collectors(readme: &str) -> BTreeMap<String, bool> {
    let mut collectors = BTreeMap::new();
    for (start, end) in LISTS {
        let from = readme
            .find(start)
            .unwrap_or_else(|| panic!("README has no {start:?}"));
        let rest = &readme[from..];
        let to = rest
            .find(end)
            .unwrap_or_else(|| panic!("README: no {end:?} after {start:?}"));
        listed(&rest[..to], &mut collectors);
    }
    collectors
}

#[test]
fn the_readme_lists_every_collector_and_its_default() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let registered: BTreeMap<String, bool> = host_exporter::SPEC
        .collectors
        .iter()
        .map(|c| (c.name.to_string(), c.default_enabled))
        .collect();
    assert_eq!(readme_collectors(&readme), registered);
}

#[test]
fn the_check_reads_names_defaults_and_skips_what_is_in_parentheses() {
    let readme = "Collectors (on by default unless said), in `src/`: `cpu` (`node_cpu_x`), \
                  `time`;\nand, off by default, `slow`.\n\nStorage collectors, also on by \
                  default: `md` (`node_md_state`); and `dm` (maps), off by default. Their \
                  flags are `--collector.x`, `later`.";
    let expected: BTreeMap<String, bool> = [
        ("cpu", true),
        ("time", true),
        ("slow", false),
        ("md", true),
        ("dm", false),
    ]
    .into_iter()
    .map(|(n, on)| (n.to_string(), on))
    .collect();
    assert_eq!(readme_collectors(readme), expected);
}
