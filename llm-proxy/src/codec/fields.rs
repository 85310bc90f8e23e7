//! One message's header fields as they came: names and values are slices of the buffer the head
//! was read into (no copy and no allocation per field), passed on with their bytes and case
//! unchanged, as nginx does. A message has a handful of fields, so a list searched with
//! case-insensitive comparisons costs less than a hash map of parsed names (which the proxy
//! built twice per request, for the client's request and the upstream's answer).

use bytes::Bytes;

#[derive(Clone, Debug, Default)]
pub struct Fields(Vec<(Bytes, Bytes)>);

impl Fields {
    pub fn with_capacity(n: usize) -> Self {
        Fields(Vec::with_capacity(n))
    }

    /// Adds a field; the value without the whitespace around it.
    pub fn push(&mut self, name: Bytes, value: Bytes) {
        self.0.push((name, value));
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Names and values in the order they came.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.0.iter().map(|(n, v)| (&n[..], &v[..]))
    }

    /// The values of every field called `name` (any case).
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.0
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| &v[..])
    }

    /// The first value of a field called `name`, as text.
    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    pub fn contains(&self, name: &str) -> bool {
        self.get_all(name).next().is_some()
    }

    /// Whether the comma-separated lists of the fields called `name` hold `token` (any case).
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.get_all(name).any(|v| {
            v.split(|b| *b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
        })
    }

    /// Keeps the fields whose name `keep` accepts.
    pub fn retain(&mut self, mut keep: impl FnMut(&[u8]) -> bool) {
        self.0.retain(|(n, _)| keep(n));
    }
}

/// Appends one field line to a head being written.
pub fn write_line(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// A field name: one or more token characters (RFC 9110 §5.6.2).
pub fn is_name(name: &[u8]) -> bool {
    !name.is_empty() && name.iter().all(|b| TOKEN[usize::from(*b)])
}

/// Which bytes are token characters, looked up rather than tested one rule after another.
const TOKEN: [bool; 256] = {
    let mut table = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        table[i] = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            );
        i += 1;
    }
    table
};

/// A field value: no control characters but the tab (obs-text passes, as in hyper's and
/// httparse's checks).
pub fn is_value(value: &[u8]) -> bool {
    value
        .iter()
        .all(|b| *b == b'\t' || (*b >= 0x20 && *b != 0x7f))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_ignore_case_and_keep_every_value_in_order() {
        let mut f = Fields::default();
        for (n, v) in [
            ("Content-Type", "text/plain"),
            ("Connection", "Keep-Alive, X-Thing"),
            ("set-cookie", "a"),
            ("Set-Cookie", "b"),
        ] {
            f.push(Bytes::from(n), Bytes::from(v));
        }
        assert_eq!(f.get_str("content-type"), Some("text/plain"));
        assert_eq!(f.get_all("SET-COOKIE").collect::<Vec<_>>(), [b"a", b"b"]);
        assert!(f.has_token("connection", "x-thing") && f.has_token("connection", "keep-alive"));
        assert!(!f.has_token("connection", "close") && !f.contains("host"));
        f.retain(|n| !n.eq_ignore_ascii_case(b"set-cookie"));
        assert_eq!(f.len(), 2);
        assert_eq!(
            f.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            [&b"Content-Type"[..], b"Connection"]
        );
    }

    #[test]
    fn names_are_tokens_and_values_have_no_control_characters() {
        assert!(is_name(b"X-Accel_Buffering.1~") && !is_name(b"") && !is_name(b"a b"));
        assert!(!is_name(b"a:b") && !is_name(b"\xe9") && !is_name(b"a\"b") && !is_name(b"(x)"));
        let tokens = (0..=255u8).filter(|b| is_name(&[*b])).count();
        assert_eq!(tokens, 62 + 15);
        assert!(
            is_value(b"") && is_value(b"a\tb \xe9") && !is_value(b"a\rb") && !is_value(b"\x7f")
        );
    }
}
