//! Reading a scraped text-format exposition in tests: the lines that stay the same from run to
//! run (for golden files), and the value of one series.

/// The family or sample name a line is about: the name after `# HELP ` / `# TYPE `, or the
/// sample's name before its labels.
fn line_name(line: &str) -> &str {
    if let Some(rest) = line
        .strip_prefix("# HELP ")
        .or_else(|| line.strip_prefix("# TYPE "))
    {
        rest.split(' ').next().unwrap_or("")
    } else {
        line.split(['{', ' ']).next().unwrap_or("")
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
        .filter(|line| !volatile(line_name(line)))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// Replaces the value of every sample of the given families (values that follow the clock, such
/// as a time left) by `<dynamic>`, so that a golden file still shows that the series is there.
pub fn mask_values(text: &str, families: &[&str]) -> String {
    text.lines()
        .map(|line| {
            let masked = !line.starts_with('#') && families.contains(&line_name(line));
            match line.rsplit_once(' ') {
                Some((series, _)) if masked => format!("{series} <dynamic>\n"),
                _ => format!("{line}\n"),
            }
        })
        .collect()
}

/// The value of the first sample line that begins with `series`, written as the exposition
/// prints it. A whole series (`llm_up{upstream="a"}`) must be the line's whole series; a bare
/// name (`rocm_exporter_backend_sample_age_seconds`) picks the first sample of that name, whatever its labels;
/// anything cut shorter (`gpu_up{`, `gpu_up{gpu="0"`, `nvidia_up `) picks the first line it
/// begins.
pub fn value(text: &str, series: &str) -> Option<f64> {
    let then: &[char] = if series.ends_with('}') {
        &[' ']
    } else if !series.contains('{') && !series.ends_with(' ') {
        &['{', ' ']
    } else {
        &[]
    };
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| {
            l.strip_prefix(series)
                .is_some_and(|rest| then.is_empty() || rest.starts_with(then))
        })
        .and_then(|l| l.rsplit_once(' '))
        .and_then(|(_, v)| v.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volatile_lines_are_dropped() {
        let text = "# HELP a_collector_duration_seconds x\n# TYPE a_collector_duration_seconds gauge\na_collector_duration_seconds{collector=\"c\"} 0.1\nprocess_open_fds 5\nnode_load1 1\n";
        assert_eq!(stable_exposition(text, &[]), "node_load1 1\n");
        assert_eq!(stable_exposition(text, &["node_load1"]), "");
    }

    #[test]
    fn masked_values_keep_their_series() {
        let text = "# HELP t_left Time left.\n# TYPE t_left gauge\nt_left{m=\"a\"} 299.7\nt_left_total 3\nother 1\n";
        assert_eq!(
            mask_values(text, &["t_left"]),
            "# HELP t_left Time left.\n# TYPE t_left gauge\nt_left{m=\"a\"} <dynamic>\nt_left_total 3\nother 1\n"
        );
    }

    #[test]
    fn values_are_found_by_whole_series_name_or_prefix() {
        let text = "# HELP up_total x\nup_total 9\nup{a=\"1\",b=\"2\"} 1\nup{a=\"1\"} 2\nup 3\nage{g=\"0\"} 0.5\n";
        // A whole series matches only itself, not a longer one it begins.
        assert_eq!(value(text, "up{a=\"1\"}"), Some(2.0));
        assert_eq!(value(text, "up{a=\"1\",b=\"2\"}"), Some(1.0));
        assert_eq!(value(text, "up{a=\"2\"}"), None);
        // A bare name: the first sample of that name, not of a name it begins.
        assert_eq!(value(text, "up"), Some(1.0));
        assert_eq!(value(text, "age"), Some(0.5));
        assert_eq!(value(text, "ag"), None);
        // Cut short: the first line it begins.
        assert_eq!(value(text, "up{a=\"1\""), Some(1.0));
        assert_eq!(value(text, "up "), Some(3.0));
        assert_eq!(value("up x\n", "up"), None);
    }
}
