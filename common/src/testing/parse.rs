//! A parser of the Prometheus text format for comparisons between exporters (host-exporter with
//! node_exporter): families with their samples, labels sorted. Hand written and lenient on
//! purpose: the comparisons need only names, labels and values, while the strict checks of an
//! exposition are the Prometheus project's own parsers, through [`super::check_exposition`], and
//! `promtool`.

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
