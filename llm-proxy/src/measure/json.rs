//! One JSON line or document of a response, read for the few fields the observer needs, in one
//! pass over its bytes with nothing allocated (serde_json spent about 90% of the proxy's own
//! work on a stream walking every event through its generic machinery). The line must still be
//! JSON as a whole and every field read must have its type, as serde's checks had it: a line
//! that is not what we expect counts for nothing. Unknown fields are checked for JSON syntax
//! and skipped; a known field twice, or of the wrong type, refuses the line; `null` is absent.

use super::finish::FinishReason;
use std::borrow::Cow;

/// What one line told.
#[derive(Default, Debug)]
pub struct Chunk<'a> {
    /// The model the server named, decoded only when asked (it rarely changes in a stream).
    pub model: Option<Text<'a>>,
    /// Whether it carries generated output of any kind: text, reasoning (`reasoning`,
    /// `reasoning_content`, `thinking`), or a tool call, in any of the APIs' shapes.
    pub content: bool,
    /// It carries a tool call (for the APIs whose finish reason does not say so).
    pub tool_call: bool,
    /// `system_fingerprint` is Ollama's (`fp_ollama`).
    pub ollama_fingerprint: bool,
    /// `error` is present and not null, or the event's `type` is `error`.
    pub error: bool,
    /// Token counts, as each API names them.
    pub usage: Option<Usage>,
    /// llama-server `timings`.
    pub timings: Option<Timings>,
    /// Why the generation ended, where this line says it.
    pub finish: Option<FinishReason>,
    /// Ollama's final line (zero values are left out: omitempty).
    pub done: Option<bool>,
    pub prompt_eval_count: Option<u64>,
    pub eval_count: Option<u64>,
    pub load_duration: Option<u64>,
    pub prompt_eval_duration: Option<u64>,
    /// llama-server's native final chunk.
    pub tokens_predicted: Option<u64>,
    pub tokens_evaluated: Option<u64>,
    pub stop: Option<bool>,
}

/// `usage` in any of its spellings; every field as the server sent it.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct Usage {
    /// OpenAI chat and text completions (cached tokens included).
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
    /// Anthropic Messages (cached tokens left out) and the Responses API (included).
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    /// Anthropic only: the cached parts of the prompt, beside `input_tokens`.
    pub cache_read_input_tokens: Option<u64>,
    pub cache_creation_input_tokens: Option<u64>,
    /// `completion_tokens_details` or `output_tokens_details`: `reasoning_tokens`.
    pub reasoning_tokens: Option<u64>,
}

/// A string as it stands in the line, quotes included.
#[derive(Clone, Copy, Debug)]
pub struct Text<'a> {
    quoted: &'a [u8],
    escapes: bool,
}

impl<'a> Text<'a> {
    /// The bytes between the quotes, where they are the text itself (no escapes).
    pub fn undecoded(&self) -> Option<&'a [u8]> {
        let inner = &self.quoted[1..self.quoted.len() - 1];
        (!self.escapes).then_some(inner)
    }

    /// The text; `None` when it is not valid UTF-8 (the line is then not JSON).
    pub fn decode(&self) -> Option<Cow<'a, str>> {
        match self.undecoded() {
            Some(raw) => std::str::from_utf8(raw).ok().map(Cow::Borrowed),
            // Rare: serde_json decodes escapes (and surrogate pairs) exactly.
            None => serde_json::from_slice::<String>(self.quoted)
                .ok()
                .map(Cow::Owned),
        }
    }

    /// The empty string.
    pub fn is_empty(&self) -> bool {
        self.quoted.len() == 2
    }
}

#[derive(Default, Debug)]
pub struct Timings {
    pub prompt_n: Option<u64>,
    pub cache_n: Option<u64>,
    pub predicted_n: Option<u64>,
    pub prompt_ms: Option<f64>,
}

/// A Responses API response object's end state, read where it stands (the whole answer, or the
/// `response` of a `response.*` event).
#[derive(Default)]
struct ResponseEnd<'a> {
    status: Option<&'a [u8]>,
    incomplete: Option<&'a [u8]>,
    function_call: bool,
}

impl ResponseEnd<'_> {
    fn finish(&self) -> Option<FinishReason> {
        self.status
            .and_then(|s| FinishReason::responses(s, self.incomplete, self.function_call))
    }
}

/// `None` when the line is not the JSON expected.
pub fn parse(line: &[u8]) -> Option<Chunk<'_>> {
    let mut p = Reader { s: line, i: 0 };
    p.ws();
    let mut c = Chunk::default();
    let mut end = ResponseEnd::default();
    p.object(|p, key| {
        Some(match key {
            b"model" => {
                c.model = p.or_null(Reader::string)?;
                1
            }
            b"choices" => {
                p.or_null(|p| p.choices(&mut c))?;
                1 << 1
            }
            b"content" => {
                c.content |= p.or_null(Reader::content)?.unwrap_or(false);
                1 << 2
            }
            // Ollama's generated text, or a Responses event's response object.
            b"response" => {
                if p.peek() == Some(b'{') {
                    p.response(&mut c)?;
                } else {
                    c.content |= p.or_null(Reader::filled)?.unwrap_or(false);
                }
                1 << 3
            }
            b"thinking" => {
                c.content |= p.or_null(Reader::filled)?.unwrap_or(false);
                1 << 4
            }
            // Ollama's chat message or Anthropic's `message_start`; the text of a Responses
            // error event.
            b"message" => {
                if p.peek() == Some(b'"') {
                    p.raw_string()?;
                } else {
                    p.or_null(|p| p.message(&mut c))?;
                }
                1 << 5
            }
            b"usage" => {
                if let Some(u) = p.or_null(Reader::usage)? {
                    c.usage = Some(u);
                }
                1 << 6
            }
            b"timings" => {
                c.timings = p.or_null(Reader::timings)?;
                1 << 7
            }
            b"error" => {
                c.error |= p.or_null(|p| p.skip(0))?.is_some();
                1 << 8
            }
            b"done" => {
                c.done = p.or_null(Reader::boolean)?;
                1 << 9
            }
            b"stop" => {
                c.stop = p.or_null(Reader::boolean)?;
                1 << 10
            }
            b"prompt_eval_count" => {
                c.prompt_eval_count = p.or_null(Reader::u64)?;
                1 << 11
            }
            b"eval_count" => {
                c.eval_count = p.or_null(Reader::u64)?;
                1 << 12
            }
            b"load_duration" => {
                c.load_duration = p.or_null(Reader::u64)?;
                1 << 13
            }
            b"prompt_eval_duration" => {
                c.prompt_eval_duration = p.or_null(Reader::u64)?;
                1 << 14
            }
            b"tokens_predicted" => {
                c.tokens_predicted = p.or_null(Reader::u64)?;
                1 << 15
            }
            b"tokens_evaluated" => {
                c.tokens_evaluated = p.or_null(Reader::u64)?;
                1 << 16
            }
            // Anthropic content_block_delta / message_delta (an object), or a Responses
            // `*.delta` event (a string: text, reasoning or function-call arguments).
            b"delta" => {
                if p.peek() == Some(b'"') {
                    c.content |= p.filled()?;
                } else {
                    p.or_null(|p| p.anthropic_delta(&mut c))?;
                }
                1 << 17
            }
            b"done_reason" => {
                if let Some((raw, _)) = p.or_null(Reader::raw_string)? {
                    c.finish = Some(FinishReason::openai(raw));
                }
                1 << 18
            }
            b"stop_reason" => {
                if let Some((raw, _)) = p.or_null(Reader::raw_string)? {
                    c.finish = Some(FinishReason::anthropic(raw));
                }
                1 << 19
            }
            b"stop_type" => {
                if let Some((raw, _)) = p.or_null(Reader::raw_string)? {
                    c.finish = Some(FinishReason::llama_stop_type(raw));
                }
                1 << 20
            }
            // An Anthropic or Responses error event.
            b"type" => {
                let kind = p.or_null(Reader::raw_string)?;
                c.error |= kind.is_some_and(|(raw, _)| raw == b"error");
                1 << 21
            }
            b"status" => {
                end.status = p.or_null(Reader::raw_string)?.map(|(raw, _)| raw);
                1 << 22
            }
            b"incomplete_details" => {
                end.incomplete = p.or_null(Reader::incomplete_details)?.flatten();
                1 << 23
            }
            b"output" => {
                end.function_call |= p.or_null(Reader::output)?.unwrap_or(false);
                1 << 24
            }
            b"system_fingerprint" => {
                let raw = p.or_null(Reader::raw_string)?;
                c.ollama_fingerprint = raw.is_some_and(|(raw, _)| raw == b"fp_ollama");
                1 << 25
            }
            _ => {
                p.skip(0)?;
                0
            }
        })
    })?;
    p.ws();
    if let Some(finish) = end.finish() {
        c.finish = Some(finish);
    }
    (p.i == p.s.len()).then_some(c)
}

/// Where in these eight bytes the first one that needs a look in a string is (`"`, `\\` or a
/// control character), or 8 for none. Only the lowest flagged byte is exact, and it is the one
/// wanted.
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
fn first_special(word: [u8; 8]) -> usize {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    const QUOTES: u64 = u64::from_ne_bytes([b'"'; 8]);
    const BACKSLASHES: u64 = u64::from_ne_bytes([b'\\'; 8]);
    let x = u64::from_le_bytes(word);
    let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS;
    // The last term flags bytes below 0x20.
    let flags =
        zero(x ^ QUOTES) | zero(x ^ BACKSLASHES) | (x.wrapping_sub(ONES * 0x20) & !x & HIGHS);
    (flags.trailing_zeros() / 8) as usize
}

/// How many bytes at the start of `s` need no look in a string: all up to the first `"`, `\\`
/// or control character, or, when there is none, all but a tail shorter than a block (the
/// caller goes on byte by byte).
fn skip_plain(s: &[u8]) -> usize {
    #[cfg(target_arch = "x86_64")]
    return skip_plain_sse2(s);
    #[cfg(not(target_arch = "x86_64"))]
    skip_plain_words(s)
}

/// Sixteen bytes per step: a string's end costs one unpredictable branch per block instead of
/// one per word (the reader spent half its time here).
#[cfg(target_arch = "x86_64")]
fn skip_plain_sse2(s: &[u8]) -> usize {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_min_epu8, _mm_movemask_epi8, _mm_or_si128,
        _mm_set1_epi8,
    };
    let mut skipped = 0;
    for block in s.chunks_exact(16) {
        // SAFETY: SSE2 is part of every x86_64 CPU; the load reads the 16 bytes of `block`.
        let mask = unsafe {
            let v = _mm_loadu_si128(block.as_ptr().cast::<__m128i>());
            let quote = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8));
            let backslash = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
            // Below 0x20: the byte is its own minimum with 0x1f.
            let control = _mm_cmpeq_epi8(_mm_min_epu8(v, _mm_set1_epi8(0x1f)), v);
            _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(quote, backslash), control))
        };
        if mask != 0 {
            return skipped + mask.trailing_zeros() as usize;
        }
        skipped += 16;
    }
    skipped
}

/// Eight bytes per step, for other CPUs.
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
fn skip_plain_words(s: &[u8]) -> usize {
    let mut skipped = 0;
    for word in s.chunks_exact(8) {
        let at = first_special(word.try_into().unwrap_or([b'"'; 8]));
        skipped += at;
        if at < 8 {
            break;
        }
    }
    skipped
}

/// serde_json's nesting limit.
const MAX_DEPTH: usize = 128;

struct Reader<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Reader<'a> {
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.s.get(self.i) {
            self.i += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        if self.s.get(self.i..self.i + word.len()) == Some(word) {
            self.i += word.len();
            Some(())
        } else {
            None
        }
    }

    /// `null` gives `Some(None)`; anything else is read by `read`.
    fn or_null<T>(&mut self, read: impl FnOnce(&mut Self) -> Option<T>) -> Option<Option<T>> {
        if self.peek() == Some(b'n') {
            self.literal(b"null")?;
            return Some(None);
        }
        read(self).map(Some)
    }

    /// An object; `field` reads each value and gives the key's bit when it is a known field
    /// (0 when not), which may then appear only once.
    fn object(&mut self, mut field: impl FnMut(&mut Self, &[u8]) -> Option<u32>) -> Option<()> {
        if self.peek() != Some(b'{') {
            return None;
        }
        self.i += 1;
        self.ws();
        if self.peek() == Some(b'}') {
            self.i += 1;
            return Some(());
        }
        let mut seen = 0u32;
        loop {
            self.ws();
            let key = self.key()?;
            self.ws();
            if self.peek() != Some(b':') {
                return None;
            }
            self.i += 1;
            self.ws();
            let bit = field(self, &key)?;
            if seen & bit != 0 {
                return None;
            }
            seen |= bit;
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// An array, each element read by `element`.
    fn array(&mut self, mut element: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        if self.peek() != Some(b'[') {
            return None;
        }
        self.i += 1;
        self.ws();
        if self.peek() == Some(b']') {
            self.i += 1;
            return Some(());
        }
        loop {
            self.ws();
            element(self)?;
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b']') => {
                    self.i += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// A string's raw bytes between the quotes, checked (escapes, no control characters), and
    /// whether it has escapes.
    fn raw_string(&mut self) -> Option<(&'a [u8], bool)> {
        if self.peek() != Some(b'"') {
            return None;
        }
        let start = self.i + 1;
        let mut i = start;
        let mut escapes = false;
        loop {
            // Straight to the next byte that needs a look, a block at a time; near the end of
            // the line, byte by byte.
            i += skip_plain(&self.s[i..]);
            match *self.s.get(i)? {
                b'"' => {
                    self.i = i + 1;
                    return Some((&self.s[start..i], escapes));
                }
                b'\\' => {
                    escapes = true;
                    match *self.s.get(i + 1)? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => i += 2,
                        b'u' => {
                            let hex = self.s.get(i + 2..i + 6)?;
                            if !hex.iter().all(u8::is_ascii_hexdigit) {
                                return None;
                            }
                            i += 6;
                        }
                        _ => return None,
                    }
                }
                0..=0x1f => return None,
                _ => i += 1,
            }
        }
    }

    /// A string, checked, not yet decoded.
    fn string(&mut self) -> Option<Text<'a>> {
        let start = self.i;
        let (_, escapes) = self.raw_string()?;
        Some(Text {
            quoted: &self.s[start..self.i],
            escapes,
        })
    }

    /// An object key, compared decoded.
    fn key(&mut self) -> Option<Cow<'a, [u8]>> {
        let start = self.i;
        let (raw, escapes) = self.raw_string()?;
        if escapes {
            serde_json::from_slice::<String>(&self.s[start..self.i])
                .ok()
                .map(|k| Cow::Owned(k.into_bytes()))
        } else {
            Some(Cow::Borrowed(raw))
        }
    }

    /// A string of which only whether it is empty counts (an escape is never empty).
    fn filled(&mut self) -> Option<bool> {
        self.raw_string().map(|(raw, _)| !raw.is_empty())
    }

    fn boolean(&mut self) -> Option<bool> {
        match self.peek()? {
            b't' => self.literal(b"true").map(|_| true),
            b'f' => self.literal(b"false").map(|_| false),
            _ => None,
        }
    }

    /// A JSON number's text, its grammar checked; whether it is an integer.
    fn number(&mut self) -> Option<(&'a [u8], bool)> {
        let start = self.i;
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.peek()? {
            b'0' => self.i += 1,
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        let mut integer = true;
        if self.peek() == Some(b'.') {
            self.i += 1;
            integer = false;
            if !self.peek()?.is_ascii_digit() {
                return None;
            }
            self.digits();
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            integer = false;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            if !self.peek()?.is_ascii_digit() {
                return None;
            }
            self.digits();
        }
        Some((&self.s[start..self.i], integer))
    }

    fn digits(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.i += 1;
        }
    }

    /// A non-negative integer that fits: a fraction, an exponent, a sign or overflow refuse
    /// the line, as serde_json's u64 does.
    fn u64(&mut self) -> Option<u64> {
        let (text, integer) = self.number()?;
        if !integer || text.first() == Some(&b'-') {
            return None;
        }
        text.iter().try_fold(0u64, |n, d| {
            n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        })
    }

    fn f64(&mut self) -> Option<f64> {
        let (text, _) = self.number()?;
        let v: f64 = std::str::from_utf8(text).ok()?.parse().ok()?;
        v.is_finite().then_some(v)
    }

    /// Any JSON value, checked and skipped.
    fn skip(&mut self, depth: usize) -> Option<()> {
        if depth >= MAX_DEPTH {
            return None;
        }
        match self.peek()? {
            b'{' => self.object(|p, _| p.skip(depth + 1).map(|_| 0)),
            b'[' => self.array(|p| p.skip(depth + 1)),
            b'"' => self.raw_string().map(|_| ()),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            _ => {
                let (text, _) = self.number()?;
                // serde_json refuses numbers beyond f64 even where it skips them; only an
                // exponent or 300 digits can get there.
                if text.len() < 300 && !text.iter().any(|b| matches!(b, b'e' | b'E')) {
                    return Some(());
                }
                let finite = std::str::from_utf8(text)
                    .ok()?
                    .parse::<f64>()
                    .ok()?
                    .is_finite();
                finite.then_some(())
            }
        }
    }

    /// `content`: a string, whose emptiness is what counts, or an array of content blocks (a
    /// whole Anthropic answer, which has no first token to time: skipped).
    fn content(&mut self) -> Option<bool> {
        if self.peek() == Some(b'[') {
            return self.skip(1).map(|_| false);
        }
        self.filled()
    }

    /// `choices`: content, tool calls and the finish reason of any of them.
    fn choices(&mut self, c: &mut Chunk<'a>) -> Option<()> {
        self.array(|p| {
            p.object(|p, key| {
                Some(match key {
                    b"text" => {
                        c.content |= p.or_null(Reader::filled)?.unwrap_or(false);
                        1
                    }
                    b"delta" => {
                        p.or_null(|p| p.message(c))?;
                        2
                    }
                    b"finish_reason" => {
                        if let Some((raw, _)) = p.or_null(Reader::raw_string)? {
                            c.finish = Some(FinishReason::openai(raw));
                        }
                        4
                    }
                    _ => {
                        p.skip(2)?;
                        0
                    }
                })
            })
        })
    }

    /// A chat delta, an Ollama message, or the message of Anthropic's `message_start`: its
    /// content of any kind, and the model, usage and stop reason where it carries them.
    fn message(&mut self, c: &mut Chunk<'a>) -> Option<()> {
        self.object(|p, key| {
            Some(match key {
                b"content" => {
                    c.content |= p.or_null(Reader::content)?.unwrap_or(false);
                    1
                }
                // llama-server; vLLM and Ollama's `/v1`; Ollama's native API.
                b"reasoning_content" | b"reasoning" | b"thinking" => {
                    c.content |= p.or_null(Reader::filled)?.unwrap_or(false);
                    match key {
                        b"reasoning_content" => 2,
                        b"reasoning" => 4,
                        _ => 8,
                    }
                }
                b"tool_calls" => {
                    let mut calls = false;
                    p.or_null(|p| {
                        p.array(|p| {
                            calls = true;
                            p.skip(3)
                        })
                    })?;
                    c.content |= calls;
                    c.tool_call |= calls;
                    16
                }
                b"model" => {
                    c.model = p.or_null(Reader::string)?;
                    32
                }
                b"usage" => {
                    if let Some(u) = p.or_null(Reader::usage)? {
                        c.usage = Some(u);
                    }
                    64
                }
                b"stop_reason" => {
                    if let Some((raw, _)) = p.or_null(Reader::raw_string)? {
                        c.finish = Some(FinishReason::anthropic(raw));
                    }
                    128
                }
                _ => {
                    p.skip(3)?;
                    0
                }
            })
        })
    }

    /// An Anthropic event's `delta`: generated text, thinking or tool input
    /// (`content_block_delta`), or the stop reason (`message_delta`).
    fn anthropic_delta(&mut self, c: &mut Chunk<'a>) -> Option<()> {
        self.object(|p, key| {
            Some(match key {
                b"text" | b"thinking" => {
                    c.content |= p.or_null(Reader::filled)?.unwrap_or(false);
                    if key == b"text" {
                        1
                    } else {
                        2
                    }
                }
                b"partial_json" => {
                    let filled = p.or_null(Reader::filled)?.unwrap_or(false);
                    c.content |= filled;
                    c.tool_call |= filled;
                    4
                }
                b"stop_reason" => {
                    if let Some((raw, _)) = p.or_null(Reader::raw_string)? {
                        c.finish = Some(FinishReason::anthropic(raw));
                    }
                    8
                }
                _ => {
                    p.skip(2)?;
                    0
                }
            })
        })
    }

    /// The `response` object of a Responses API event: model, usage, and how it ended.
    fn response(&mut self, c: &mut Chunk<'a>) -> Option<()> {
        let mut end = ResponseEnd::default();
        self.object(|p, key| {
            Some(match key {
                b"model" => {
                    c.model = p.or_null(Reader::string)?;
                    1
                }
                b"usage" => {
                    if let Some(u) = p.or_null(Reader::usage)? {
                        c.usage = Some(u);
                    }
                    2
                }
                b"status" => {
                    end.status = p.or_null(Reader::raw_string)?.map(|(raw, _)| raw);
                    4
                }
                b"incomplete_details" => {
                    end.incomplete = p.or_null(Reader::incomplete_details)?.flatten();
                    8
                }
                b"output" => {
                    end.function_call |= p.or_null(Reader::output)?.unwrap_or(false);
                    16
                }
                b"error" => {
                    c.error |= p.or_null(|p| p.skip(2))?.is_some();
                    32
                }
                _ => {
                    p.skip(2)?;
                    0
                }
            })
        })?;
        if let Some(finish) = end.finish() {
            c.finish = Some(finish);
        }
        Some(())
    }

    /// `incomplete_details`: its `reason`.
    fn incomplete_details(&mut self) -> Option<Option<&'a [u8]>> {
        let mut reason = None;
        self.object(|p, key| {
            Some(match key {
                b"reason" => {
                    reason = p.or_null(Reader::raw_string)?.map(|(raw, _)| raw);
                    1
                }
                _ => {
                    p.skip(3)?;
                    0
                }
            })
        })?;
        Some(reason)
    }

    /// A response's `output` items: whether one is a function call.
    fn output(&mut self) -> Option<bool> {
        let mut function_call = false;
        self.array(|p| {
            p.object(|p, key| {
                Some(match key {
                    b"type" => {
                        let kind = p.or_null(Reader::raw_string)?;
                        function_call |= kind.is_some_and(|(raw, _)| raw == b"function_call");
                        1
                    }
                    _ => {
                        p.skip(4)?;
                        0
                    }
                })
            })
        })?;
        Some(function_call)
    }

    fn usage(&mut self) -> Option<Usage> {
        let mut u = Usage::default();
        self.object(|p, key| {
            Some(match key {
                b"prompt_tokens" => {
                    u.prompt_tokens = p.or_null(Reader::u64)?;
                    1
                }
                b"completion_tokens" => {
                    u.completion_tokens = p.or_null(Reader::u64)?;
                    2
                }
                b"input_tokens" => {
                    u.input_tokens = p.or_null(Reader::u64)?;
                    4
                }
                b"output_tokens" => {
                    u.output_tokens = p.or_null(Reader::u64)?;
                    8
                }
                b"cache_read_input_tokens" => {
                    u.cache_read_input_tokens = p.or_null(Reader::u64)?;
                    16
                }
                b"cache_creation_input_tokens" => {
                    u.cache_creation_input_tokens = p.or_null(Reader::u64)?;
                    32
                }
                b"completion_tokens_details" | b"output_tokens_details" => {
                    if let Some(n) = p.or_null(Reader::reasoning_tokens)?.flatten() {
                        u.reasoning_tokens = Some(n);
                    }
                    if key == b"completion_tokens_details" {
                        64
                    } else {
                        128
                    }
                }
                _ => {
                    p.skip(2)?;
                    0
                }
            })
        })?;
        Some(u)
    }

    /// `completion_tokens_details` / `output_tokens_details`: `reasoning_tokens`.
    fn reasoning_tokens(&mut self) -> Option<Option<u64>> {
        let mut n = None;
        self.object(|p, key| {
            Some(match key {
                b"reasoning_tokens" => {
                    n = p.or_null(Reader::u64)?;
                    1
                }
                _ => {
                    p.skip(3)?;
                    0
                }
            })
        })?;
        Some(n)
    }

    fn timings(&mut self) -> Option<Timings> {
        let mut t = Timings::default();
        self.object(|p, key| {
            Some(match key {
                b"prompt_n" => {
                    t.prompt_n = p.or_null(Reader::u64)?;
                    1
                }
                b"cache_n" => {
                    t.cache_n = p.or_null(Reader::u64)?;
                    2
                }
                b"predicted_n" => {
                    t.predicted_n = p.or_null(Reader::u64)?;
                    4
                }
                b"prompt_ms" => {
                    t.prompt_ms = p.or_null(Reader::f64)?;
                    8
                }
                _ => {
                    p.skip(2)?;
                    0
                }
            })
        })?;
        Some(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_byte_needing_a_look_is_found() {
        assert_eq!(first_special(*b"abcdefgh"), 8);
        assert_eq!(first_special(*b"ab\"d\\fgh"), 2);
        assert_eq!(first_special(*b"abcde\\g\""), 5);
        assert_eq!(first_special(*b"\xe2\x80\xa2\x01\"xyz"), 3);
        assert_eq!(first_special(*b"\x7f\xff\x80 !#[]"), 8);
        for i in 0..8 {
            for special in [b'"', b'\\', b'\n', 0] {
                let mut word = [b'a'; 8];
                word[i] = special;
                assert_eq!(first_special(word), i);
            }
        }
    }

    #[test]
    fn plain_runs_in_strings_end_at_the_first_byte_needing_a_look() {
        // A small linear congruential generator: the same cases on every run.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            (state >> 33) as usize
        };
        let special = |b: u8| b == b'"' || b == b'\\' || b < 0x20;
        for _ in 0..20_000 {
            let len = next() % 80;
            let mut s: Vec<u8> = (0..len).map(|_| (0x20 + next() % 0xe0) as u8).collect();
            if len > 0 && next() % 3 > 0 {
                let at = next() % len;
                s[at] = [b'"', b'\\', 0, 0x1f, b'\n'][next() % 5];
            }
            for (skip, block) in [
                (skip_plain as fn(&[u8]) -> usize, 16),
                (skip_plain_words, 8),
            ] {
                let n = skip(&s);
                assert!(n <= len && !s[..n].iter().any(|b| special(*b)), "{s:?}");
                let stopped_at_special = n < len && special(s[n]);
                assert!(stopped_at_special || len - n < block, "{s:?} {n}");
            }
        }
    }

    #[test]
    fn json_syntax_is_checked_everywhere() {
        for bad in [
            &b""[..],
            b"[]",
            b"{\"x\":01}",
            b"{\"x\":1.}",
            b"{\"x\":-}",
            b"{\"x\":1e}",
            b"{\"x\":tru}",
            b"{\"x\":\"a\\q\"}",
            b"{\"x\":\"a\x01\"}",
            b"{\"x\":\"\\u12G4\"}",
            b"{\"x\":[1,]}",
            b"{\"x\":{\"a\":1,}}",
            b"{\"x\":1e400}",
            b"{\"x\":1} x",
            b"{\"x\" 1}",
            b"{x:1}",
        ] {
            assert!(parse(bad).is_none(), "{}", String::from_utf8_lossy(bad));
        }
        let deep = format!("{{\"x\":{}{}}}", "[".repeat(200), "]".repeat(200));
        assert!(parse(deep.as_bytes()).is_none());
        let ok = br#" { "x" : [ 1 , -2.5e+3 , true , false , null , "s\"\u00e9" , { } , [ ] ] , "y":{"a":{"b":0}} } "#;
        assert!(parse(ok).is_some());
    }

    #[test]
    fn fields_are_read_with_their_types() {
        let c = parse(br#"{"model":"m","error":null,"done":true,"eval_count":7,"timings":{"prompt_ms":2.5,"prompt_n":3},"usage":{"prompt_tokens":1,"completion_tokens":null}}"#).unwrap();
        assert_eq!(c.model.and_then(|m| m.decode()).as_deref(), Some("m"));
        assert!(!c.error && !c.content);
        assert_eq!((c.done, c.eval_count), (Some(true), Some(7)));
        let t = c.timings.unwrap();
        assert_eq!(
            (t.prompt_ms, t.prompt_n, t.cache_n),
            (Some(2.5), Some(3), None)
        );
        assert_eq!(
            c.usage,
            Some(Usage {
                prompt_tokens: Some(1),
                ..Default::default()
            })
        );
        assert!(parse(br#"{"error":{"code":500}}"#).unwrap().error);
        // An escaped key is the key it decodes to, duplicates included.
        let escaped = parse(br#"{"mod\u0065l":"\u006d"}"#).unwrap().model.unwrap();
        assert_eq!(escaped.undecoded(), None);
        assert_eq!(escaped.decode().as_deref(), Some("m"));
        let not_utf8 = parse(b"{\"model\":\"\xff\"}").unwrap().model.unwrap();
        assert!(not_utf8.decode().is_none());
        assert!(parse(br#"{"model":"a","mod\u0065l":"b"}"#).is_none());
        // Unknown fields may repeat; known ones, nested too, may not.
        assert!(parse(br#"{"id":1,"id":2}"#).is_some());
        assert!(parse(br#"{"usage":{"prompt_tokens":1,"prompt_tokens":2}}"#).is_none());
        for bad in [
            &br#"{"eval_count":-1}"#[..],
            br#"{"eval_count":1.0}"#,
            br#"{"eval_count":18446744073709551616}"#,
            br#"{"done":"true"}"#,
            br#"{"choices":[null]}"#,
            br#"{"message":[]}"#,
            br#"{"timings":{"prompt_ms":"1"}}"#,
            br#"{"delta":5}"#,
            br#"{"response":7}"#,
            br#"{"content":{}}"#,
            br#"{"choices":[{"finish_reason":1}]}"#,
            br#"{"usage":{"completion_tokens_details":{"reasoning_tokens":"2"}}}"#,
            br#"{"output":[1]}"#,
            br#"{"incomplete_details":{"reason":2}}"#,
            br#"{"status":"completed","status":"failed"}"#,
        ] {
            assert!(parse(bad).is_none(), "{}", String::from_utf8_lossy(bad));
        }
        assert_eq!(
            parse(br#"{"eval_count":18446744073709551615}"#)
                .unwrap()
                .eval_count,
            Some(u64::MAX)
        );
    }
}
