//! A parser for llama-server's `/metrics` (Prometheus text format 0.0.4). llama-server prints
//! numbers with C++ stream defaults (`1.23457e+06`), has changed its set of families three times,
//! and some builds sent the whole body JSON-quoted; so families are read by name, any number
//! format is accepted, and a body that is not plain exposition text is an error.

use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq)]
pub struct Family {
    pub name: String,
    pub help: String,
    /// As declared by `# TYPE` (`counter`, `gauge`, ...); `untyped` when not declared.
    pub kind: String,
    pub samples: Vec<Sample>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

/// Families in the order they first appear.
pub fn parse(body: &str) -> Result<Vec<Family>, String> {
    let trimmed = body.trim_start();
    if trimmed.starts_with('"') {
        return Err(
            "the body is a JSON-quoted string (llama.cpp issue #17384); expected plain text".into(),
        );
    }
    if trimmed.starts_with('{') || trimmed.starts_with('<') {
        return Err("the body is JSON or HTML, not exposition text".into());
    }
    if !body.is_empty() && !body.ends_with('\n') {
        return Err("the body does not end with a newline (truncated?)".into());
    }
    let mut families: Vec<Family> = Vec::new();
    let mut index: BTreeMap<String, usize> = BTreeMap::new();
    let mut family_for = |name: &str, families: &mut Vec<Family>| -> usize {
        *index.entry(name.to_string()).or_insert_with(|| {
            families.push(Family {
                name: name.to_string(),
                help: String::new(),
                kind: "untyped".into(),
                samples: Vec::new(),
            });
            families.len() - 1
        })
    };
    for (number, line) in body.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let mut words = comment.trim_start().splitn(3, ' ');
            match (words.next(), words.next(), words.next()) {
                (Some("HELP"), Some(name), help) => {
                    let i = family_for(name, &mut families);
                    families[i].help = help.unwrap_or("").to_string();
                }
                (Some("TYPE"), Some(name), Some(kind)) => {
                    let i = family_for(name, &mut families);
                    families[i].kind = kind.trim().to_string();
                }
                _ => {}
            }
            continue;
        }
        let (name, labels, value) =
            parse_sample(line).map_err(|e| format!("line {}: {e}", number + 1))?;
        let i = family_for(name, &mut families);
        families[i].samples.push(Sample { labels, value });
    }
    if families.iter().all(|f| f.samples.is_empty()) {
        return Err("no samples in the body".into());
    }
    Ok(families)
}

type Labels = Vec<(String, String)>;

fn parse_sample(line: &str) -> Result<(&str, Labels, f64), String> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .ok_or("a sample without a value")?;
    let name = &line[..name_end];
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    {
        return Err(format!("'{name}' is not a metric name"));
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(after) = rest.strip_prefix('{') {
        let (parsed, remaining) = parse_labels(after)?;
        labels = parsed;
        rest = remaining;
    }
    let mut fields = rest.split_whitespace();
    let raw = fields.next().ok_or("a sample without a value")?;
    let value = parse_value(raw).ok_or_else(|| format!("'{raw}' is not a number"))?;
    // An optional timestamp may follow; anything after it is garbage.
    if let Some(ts) = fields.next() {
        ts.parse::<i64>()
            .map_err(|_| format!("'{ts}' is not a timestamp"))?;
    }
    if fields.next().is_some() {
        return Err("trailing garbage after the value".into());
    }
    Ok((name, labels, value))
}

/// Parses `k="v",...}` and returns the labels and what follows the closing brace.
fn parse_labels(mut s: &str) -> Result<(Labels, &str), String> {
    let mut labels = Vec::new();
    loop {
        s = s.trim_start();
        if let Some(rest) = s.strip_prefix('}') {
            return Ok((labels, rest));
        }
        let eq = s.find('=').ok_or("a label without '='")?;
        let key = s[..eq].trim().to_string();
        s = s[eq + 1..]
            .trim_start()
            .strip_prefix('"')
            .ok_or("a label value without quotes")?;
        let mut value = String::new();
        let mut chars = s.char_indices();
        let end = loop {
            match chars.next() {
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => return Err("an unterminated label value".into()),
                },
                Some((_, c)) => value.push(c),
                None => return Err("an unterminated label value".into()),
            }
        };
        labels.push((key, value));
        s = s[end + 1..].trim_start();
        if let Some(rest) = s.strip_prefix(',') {
            s = rest;
        }
    }
}

/// Any float the text format allows, including `1.23457e+06`, `+Inf` and `NaN`.
pub fn parse_value(raw: &str) -> Option<f64> {
    match raw {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => raw.parse::<f64>().ok().filter(|v| v.is_finite()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GEN_C: &str =
        include_str!("../tests/fixtures/llama-server/metrics-after-4-requests.body");

    #[test]
    fn reads_the_recorded_generation_c_body() {
        let families = parse(GEN_C).unwrap();
        assert_eq!(families.len(), 15);
        let prompt = families
            .iter()
            .find(|f| f.name == "llamacpp:prompt_tokens_total")
            .unwrap();
        assert_eq!(prompt.kind, "counter");
        assert_eq!(
            prompt.help,
            "Number of prompt tokens processed, excluding cached tokens"
        );
        assert_eq!(prompt.samples[0].value, 87.0);
        let busy = families
            .iter()
            .find(|f| f.name == "llamacpp:n_busy_slots_per_decode")
            .unwrap();
        assert_eq!(busy.kind, "gauge");
    }

    #[test]
    fn exponents_labels_and_timestamps() {
        let body = "# TYPE a counter\na 1.23457e+06\nb{position=\"0\",x=\"q\\\"uote\"} 812 1700000000\nc +Inf\n";
        let families = parse(body).unwrap();
        assert_eq!(families[0].samples[0].value, 1_234_570.0);
        assert_eq!(
            families[1].samples[0].labels,
            vec![
                ("position".to_string(), "0".to_string()),
                ("x".to_string(), "q\"uote".to_string())
            ]
        );
        assert_eq!(families[1].kind, "untyped");
        assert!(families[2].samples[0].value.is_infinite());
    }

    #[test]
    fn refuses_quoted_truncated_and_garbage_bodies() {
        let quoted = format!("{:?}", GEN_C);
        assert!(parse(&quoted).unwrap_err().contains("JSON-quoted"));
        assert!(parse(&GEN_C[..GEN_C.len() - 40])
            .unwrap_err()
            .contains("truncated"));
        assert!(parse("llamacpp:x\n").is_err());
        assert!(parse("llamacpp:x abc\n").is_err());
        assert!(parse("x{a=\"1} 2\n").is_err());
        assert!(parse("").is_err());
        assert!(parse("{\"error\":1}\n").is_err());
        assert!(parse("# HELP only comments\n").is_err());
    }
}
