//! Request ids: the client's `X-Request-ID` when it is a plausible id, a new random one
//! otherwise, passed upstream in the same header. The id is the only client-chosen value the
//! access log writes, so it is held to a short safe alphabet: no quote, backslash, space or
//! control character can reach a log line (no JSON or line injection), and no header of any
//! size can make a line long.

use super::random;

/// The header that carries the id, both ways.
pub const HEADER: &str = "x-request-id";

/// The longest id kept from a client (a UUID is 36, a W3C trace id 32).
pub const MAX_LEN: usize = 128;

/// Characters an id may have: what UUIDs, hex, base64 and the usual `prefix:id` or `a.b-c_d`
/// forms use.
fn allowed(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'+' | b'/' | b'=')
}

/// The client's id when it is 1 to `MAX_LEN` allowed characters.
pub fn valid(raw: &[u8]) -> Option<&str> {
    if raw.is_empty() || raw.len() > MAX_LEN || !raw.iter().all(|b| allowed(*b)) {
        return None;
    }
    std::str::from_utf8(raw).ok()
}

/// A new id: 128 random bits in hex.
pub fn generate() -> String {
    random::hex(&random::bytes::<16>())
}

/// The id for a request: the client's when valid, else a new one (a client's invalid id is
/// replaced, upstream too, so the log and the upstream see the same id).
pub fn accept(client: Option<&[u8]>) -> String {
    client
        .and_then(valid)
        .map(str::to_owned)
        .unwrap_or_else(generate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plausible_client_id_is_kept() {
        for id in [
            "f47ac10b-58cc-4372-a567-0e02b2c3d479",
            "req_01HZ.x:y+z/w=",
            "a",
        ] {
            assert_eq!(accept(Some(id.as_bytes())), id);
        }
        let longest = "x".repeat(MAX_LEN);
        assert_eq!(accept(Some(longest.as_bytes())), longest);
    }

    #[test]
    fn injection_overlong_and_empty_ids_are_replaced() {
        for bad in [
            &b"a\"b"[..],
            b"a\\b",
            b"a\nb",
            b"a\rb",
            b"a b",
            b"\"},{\"code\":1",
            b"caf\xc3\xa9",
            b"\xff",
            b"",
        ] {
            let id = accept(Some(bad));
            assert_ne!(id.as_bytes(), bad);
            assert_eq!(id.len(), 32, "{id}");
            assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        }
        let overlong = "x".repeat(MAX_LEN + 1);
        assert_ne!(accept(Some(overlong.as_bytes())), overlong);
    }

    #[test]
    fn no_client_id_gets_a_fresh_random_one() {
        let (a, b) = (accept(None), accept(None));
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
    }
}
