//! Reading a message body as its framing says (`Content-Length`, chunked transfer coding, or the
//! end of the connection, RFC 9112 §6.3), for request and response bodies alike; chunked coding
//! is read strictly in requests and leniently in answers (see `Decoder::for_request`). Written
//! here rather than taken from hyper, whose decoder lives inside its connection type. Decoding
//! takes whatever has been read, however it is split, and hands on all the body bytes in it at
//! once as one piece: a read that brought several chunks becomes one write to the client, as
//! nginx does, not one per chunk.

use super::framing::Framing;
use bytes::{Buf, Bytes, BytesMut};

/// Where in the chunked coding the next byte falls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Chunk {
    Size {
        value: u64,
        digits: u8,
    },
    Extension(u64),
    SizeLf(u64),
    /// Strict: whitespace after the size, before an extension or the line's end.
    SizeWs(u64),
    Data(u64),
    DataCr,
    DataLf,
    /// After the last chunk: trailer lines up to an empty one; `empty` while the line is, and
    /// `colon` once it has one.
    Trailer {
        empty: bool,
        colon: bool,
    },
    /// Strict: the CR that ends a trailer line came.
    TrailerLf {
        empty: bool,
        colon: bool,
    },
}

/// Strict: most bytes of chunk extensions and trailer fields taken per body (hyper's limit).
const MAX_META: usize = 16 << 10;

#[derive(Debug)]
pub struct BadChunk;

impl std::fmt::Display for BadChunk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("malformed chunked body from the upstream")
    }
}

impl std::error::Error for BadChunk {}

#[derive(Debug)]
pub struct Decoder {
    framing: Framing,
    remaining: u64,
    chunk: Chunk,
    done: bool,
    /// Chunked coding exactly as RFC 9112 §7.1 writes it, for bodies from clients.
    strict: bool,
    /// Strict: bytes of extensions and trailer fields so far.
    meta: usize,
}

impl Decoder {
    pub fn new(framing: Framing) -> Self {
        let (remaining, done) = match framing {
            Framing::Empty => (0, true),
            Framing::Length(n) => (n, n == 0),
            Framing::Chunked | Framing::Close => (0, false),
        };
        Decoder {
            framing,
            remaining,
            chunk: Chunk::Size {
                value: 0,
                digits: 0,
            },
            done,
            strict: false,
            meta: 0,
        }
    }

    /// A decoder for a request body. Chunked coding must then be exactly as RFC 9112 §7.1
    /// writes it: CRLF line ends, nothing but whitespace between the size and an extension,
    /// no control bytes in extensions, a colon in every trailer field, and at most 16 KiB of
    /// extensions and trailers (what a lenient reader takes for a line end, a proxy in front
    /// may not: that is how requests are smuggled). Upstream answers are read leniently, as
    /// clients do.
    pub fn for_request(framing: Framing) -> Self {
        Decoder {
            strict: true,
            ..Decoder::new(framing)
        }
    }

    /// The whole body has been decoded.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Exact length still to come, where the framing tells it.
    pub fn remaining(&self) -> Option<u64> {
        match self.framing {
            Framing::Empty | Framing::Length(_) => Some(self.remaining),
            Framing::Chunked | Framing::Close => None,
        }
    }

    /// Takes the body bytes in `buf` (possibly none), consuming the framing around them. Bytes
    /// after the end of the body stay in `buf`.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Bytes, BadChunk> {
        match self.framing {
            Framing::Empty => Ok(Bytes::new()),
            Framing::Close => Ok(buf.split().freeze()),
            Framing::Length(_) => {
                let take = self.remaining.min(buf.len() as u64);
                self.remaining -= take;
                self.done = self.remaining == 0;
                // `take` is at most buf.len(), so it fits in usize.
                Ok(buf.split_to(take as usize).freeze())
            }
            Framing::Chunked => self.chunked(buf),
        }
    }

    /// The connection ended: fine only where the end of the connection is the end of the body.
    pub fn at_eof(&mut self) -> bool {
        if self.framing == Framing::Close {
            self.done = true;
        }
        self.done
    }

    fn chunked(&mut self, buf: &mut BytesMut) -> Result<Bytes, BadChunk> {
        // The chunks' data are moved together in place: `start..end` holds what is decoded.
        let (mut r, mut start, mut end) = (0, None::<usize>, 0);
        while r < buf.len() && !self.done {
            let b = buf[r];
            self.chunk = match self.chunk {
                Chunk::Data(n) => {
                    let take = n.min((buf.len() - r) as u64) as usize;
                    match start {
                        None => {
                            start = Some(r);
                            end = r + take;
                        }
                        Some(_) => {
                            buf.copy_within(r..r + take, end);
                            end += take;
                        }
                    }
                    r += take;
                    let left = n - take as u64;
                    if left == 0 {
                        Chunk::DataCr
                    } else {
                        Chunk::Data(left)
                    }
                }
                Chunk::Size { value, digits } => {
                    r += 1;
                    match (b as char).to_digit(16) {
                        // 15 hex digits: chunks of up to 1 PiB, and no overflow.
                        Some(d) if digits < 15 => Chunk::Size {
                            value: value * 16 + u64::from(d),
                            digits: digits + 1,
                        },
                        None if digits > 0 && self.strict && matches!(b, b' ' | b'\t') => {
                            Chunk::SizeWs(value)
                        }
                        None if digits > 0 && matches!(b, b';' | b' ' | b'\t') => {
                            Chunk::Extension(value)
                        }
                        None if digits > 0 && b == b'\r' => Chunk::SizeLf(value),
                        None if digits > 0 && b == b'\n' && !self.strict => self.size_done(value),
                        _ => return Err(BadChunk),
                    }
                }
                Chunk::SizeWs(value) => {
                    r += 1;
                    match b {
                        b' ' | b'\t' => Chunk::SizeWs(value),
                        b';' => Chunk::Extension(value),
                        b'\r' => Chunk::SizeLf(value),
                        _ => return Err(BadChunk),
                    }
                }
                Chunk::Extension(value) => {
                    r += 1;
                    if self.strict {
                        self.meta += 1;
                        match b {
                            b'\r' => Chunk::SizeLf(value),
                            _ if self.meta > MAX_META || is_control(b) => return Err(BadChunk),
                            _ => Chunk::Extension(value),
                        }
                    } else {
                        match b {
                            b'\n' => self.size_done(value),
                            _ => Chunk::Extension(value),
                        }
                    }
                }
                Chunk::SizeLf(value) => {
                    r += 1;
                    if b != b'\n' {
                        return Err(BadChunk);
                    }
                    self.size_done(value)
                }
                Chunk::DataCr => {
                    r += 1;
                    match b {
                        b'\r' => Chunk::DataLf,
                        b'\n' if !self.strict => Chunk::Size {
                            value: 0,
                            digits: 0,
                        },
                        _ => return Err(BadChunk),
                    }
                }
                Chunk::DataLf => {
                    r += 1;
                    if b != b'\n' {
                        return Err(BadChunk);
                    }
                    Chunk::Size {
                        value: 0,
                        digits: 0,
                    }
                }
                Chunk::Trailer { empty, colon } if self.strict => {
                    r += 1;
                    self.meta += 1;
                    match b {
                        b'\r' => Chunk::TrailerLf { empty, colon },
                        _ if self.meta > MAX_META || is_control(b) => return Err(BadChunk),
                        _ => Chunk::Trailer {
                            empty: false,
                            colon: colon || b == b':',
                        },
                    }
                }
                Chunk::Trailer { empty, .. } => {
                    r += 1;
                    let line_end = Chunk::Trailer {
                        empty: true,
                        colon: false,
                    };
                    match b {
                        b'\n' if empty => {
                            self.done = true;
                            line_end
                        }
                        b'\n' => line_end,
                        b'\r' => self.chunk,
                        _ => Chunk::Trailer {
                            empty: false,
                            colon: false,
                        },
                    }
                }
                Chunk::TrailerLf { empty, colon } => {
                    r += 1;
                    if b != b'\n' || !(empty || colon) {
                        return Err(BadChunk);
                    }
                    self.done = empty;
                    Chunk::Trailer {
                        empty: true,
                        colon: false,
                    }
                }
            };
        }
        let data = match start {
            Some(start) => {
                buf.advance(start);
                let data = buf.split_to(end - start).freeze();
                buf.advance(r - end);
                data
            }
            None => {
                buf.advance(r);
                Bytes::new()
            }
        };
        Ok(data)
    }

    fn size_done(&self, value: u64) -> Chunk {
        if value == 0 {
            Chunk::Trailer {
                empty: true,
                colon: false,
            }
        } else {
            Chunk::Data(value)
        }
    }
}

/// Control bytes other than a tab: never in an extension or a trailer field.
fn is_control(b: u8) -> bool {
    (b < 0x20 && b != b'\t') || b == 0x7f
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `wire` in pieces of `size`: the body decoded, whether it ended, what was left over.
    fn decode(
        framing: Framing,
        wire: &[u8],
        size: usize,
    ) -> (Result<Vec<u8>, BadChunk>, bool, Vec<u8>) {
        let mut d = Decoder::new(framing);
        let mut buf = BytesMut::new();
        let mut body = Vec::new();
        for piece in wire.chunks(size.max(1)) {
            buf.extend_from_slice(piece);
            match d.decode(&mut buf) {
                Ok(data) => body.extend_from_slice(&data),
                Err(e) => return (Err(e), d.is_done(), buf.to_vec()),
            }
        }
        (Ok(body), d.is_done(), buf.to_vec())
    }

    #[test]
    fn chunked_bodies_split_anywhere_decode_the_same() {
        let wire = b"5\r\nhello\r\n1;name=\"x\"\r\n \r\nB\r\nworld\r\n\r\nok\r\n0\r\nTrailer: t\r\n\r\nNEXT";
        for size in 1..wire.len() + 1 {
            let (body, done, rest) = decode(Framing::Chunked, wire, size);
            assert_eq!(body.unwrap(), b"hello world\r\n\r\nok", "{size}");
            assert!(done, "{size}");
            assert_eq!(rest, b"NEXT", "{size}");
        }
        // Bare LF line ends, and a read holding several chunks comes out as one piece.
        let mut d = Decoder::new(Framing::Chunked);
        let mut buf = BytesMut::from(&b"2\na\n\n3\r\nbcd\r\n0\n\n"[..]);
        assert_eq!(&d.decode(&mut buf).unwrap()[..], b"a\nbcd");
        assert!(d.is_done() && buf.is_empty());
    }

    #[test]
    fn bad_chunk_framing_is_an_error_and_an_early_end_is_not_the_end() {
        for wire in [
            &b"x\r\n"[..],
            b"\r\n",
            b"5\r\nhelloX",
            b"10000000000000000\r\n",
            b"5\rX",
        ] {
            assert!(decode(Framing::Chunked, wire, 64).0.is_err(), "{wire:?}");
        }
        let mut d = Decoder::new(Framing::Chunked);
        let mut buf = BytesMut::from(&b"5\r\nhel"[..]);
        assert_eq!(&d.decode(&mut buf).unwrap()[..], b"hel");
        assert!(!d.at_eof());
    }

    #[test]
    fn request_bodies_must_be_chunked_exactly_as_rfc_9112_writes_it() {
        let strict = |wire: &[u8], size: usize| {
            let mut d = Decoder::for_request(Framing::Chunked);
            let mut buf = BytesMut::new();
            let mut body = Vec::new();
            for piece in wire.chunks(size.max(1)) {
                buf.extend_from_slice(piece);
                body.extend_from_slice(&d.decode(&mut buf).map_err(|_| buf.to_vec())?);
            }
            Ok::<_, Vec<u8>>((body, d.is_done(), buf.to_vec()))
        };
        let good = b"5 ;a=1;b=\"q r\"\r\nhello\r\n6\t\r\n world\r\n0\r\nX-T: t\r\nY:\r\n\r\nNEXT";
        for size in 1..good.len() + 1 {
            let (body, done, rest) = strict(good, size).unwrap();
            assert_eq!(
                (&body[..], done, &rest[..]),
                (&b"hello world"[..], true, &b"NEXT"[..])
            );
        }
        let long_extension = [&b"1;"[..], &[b'x'; 17 << 10], b"\r\na\r\n0\r\n\r\n"].concat();
        let long_trailer = [&b"0\r\nX: "[..], &[b'x'; 17 << 10], b"\r\n\r\n"].concat();
        for wire in [
            &b"3;a\nabc\r\n0\r\n\r\n"[..],
            b"3;a\rXYZ\nabc\r\n0\r\n\r\n",
            b"3 junk\r\nabc\r\n0\r\n\r\n",
            b"3\nabc\r\n0\r\n\r\n",
            b"3\r\nabc\n0\r\n\r\n",
            b"0\r\nGET /hidden HTTP/1.1\r\nHost: x\r\n\r\n",
            b"0\r\nX: a\nb\r\n\r\n",
            b"0\r\n\n",
            b"3;\x01\r\nabc\r\n0\r\n\r\n",
            &long_extension,
            &long_trailer,
        ] {
            assert!(
                strict(wire, 64 << 10).is_err(),
                "{:?}",
                String::from_utf8_lossy(wire)
            );
        }
        // Upstream answers are still read leniently.
        assert!(decode(Framing::Chunked, b"3;a\nabc\n0\n\n", 64).0.is_ok());
    }

    #[test]
    fn length_close_and_empty_bodies() {
        let (body, done, rest) = decode(Framing::Length(5), b"helloEXTRA", 3);
        assert_eq!((body.unwrap(), done), (b"hello".to_vec(), true));
        assert_eq!(rest, b"EXTRA");
        let mut d = Decoder::new(Framing::Length(5));
        let mut buf = BytesMut::from(&b"hel"[..]);
        assert_eq!(&d.decode(&mut buf).unwrap()[..], b"hel");
        assert_eq!(d.remaining(), Some(2));
        assert!(!d.at_eof());
        let (body, done, _) = decode(Framing::Close, b"all of it", 4);
        assert_eq!((body.unwrap(), done), (b"all of it".to_vec(), false));
        let mut d = Decoder::new(Framing::Close);
        assert!(d.at_eof());
        assert!(Decoder::new(Framing::Empty).is_done());
        assert!(Decoder::new(Framing::Length(0)).is_done());
    }
}
