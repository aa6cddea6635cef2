//! Reading PostgreSQL's binary `COPY ... TO STDOUT` format: what a full load streams.
//!
//! A full load reads every served row. Through `COPY (SELECT ...) TO STDOUT (FORMAT binary)`
//! the server sends bare tuples (no per-row protocol message to decode into a driver row, no
//! per-column type negotiation), and this parser reads each column in place from the bytes the
//! driver received. BENCHMARKS.md compares it with the same SELECT fetched as driver rows.
//!
//! Format (<https://www.postgresql.org/docs/current/sql-copy.html#id-1.9.3.55.9.4>): a header
//! (`PGCOPY\n\xff\r\n\0`, flags `i32`, extension length `i32` and extension), then tuples
//! (`i16` field count, then per field an `i32` length, -1 for NULL, and the value in the type's
//! binary send format, big-endian), then the trailer (`i16` -1). The server sends one tuple per
//! CopyData message, but nothing in the format says so: a tuple split across messages is
//! reassembled here.

/// The header's fixed signature.
const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";

/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01 UTC).
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// A malformed stream.
#[derive(Debug, thiserror::Error)]
#[error("malformed binary COPY data: {0}")]
pub struct CopyError(pub &'static str);

/// Most fields a tuple may have (the full load selects 12).
const MAX_FIELDS: usize = 16;

/// One tuple's fields, borrowed from the received bytes (no allocation per tuple).
pub struct Tuple<'a> {
    fields: [Option<&'a [u8]>; MAX_FIELDS],
    len: usize,
}

impl<'a> Tuple<'a> {
    fn field(&self, i: usize) -> Result<Option<&'a [u8]>, CopyError> {
        self.fields[..self.len].get(i).copied().ok_or(CopyError(
            "a tuple has fewer fields than the statement selects",
        ))
    }

    fn fixed<const N: usize>(&self, i: usize) -> Result<[u8; N], CopyError> {
        let bytes = self.field(i)?.ok_or(CopyError("unexpected NULL"))?;
        bytes
            .try_into()
            .map_err(|_| CopyError("a fixed-size value has the wrong length"))
    }

    /// A `bigint`.
    pub fn i64(&self, i: usize) -> Result<i64, CopyError> {
        Ok(i64::from_be_bytes(self.fixed(i)?))
    }

    /// A `double precision`.
    pub fn f64(&self, i: usize) -> Result<f64, CopyError> {
        Ok(f64::from_be_bytes(self.fixed(i)?))
    }

    /// A `timestamptz`, as microseconds since the Unix epoch.
    pub fn timestamp_micros(&self, i: usize) -> Result<i64, CopyError> {
        Ok(i64::from_be_bytes(self.fixed(i)?).saturating_add(PG_EPOCH_MICROS))
    }

    /// A `text` that may be NULL.
    pub fn opt_str(&self, i: usize) -> Result<Option<&'a str>, CopyError> {
        self.field(i)?
            .map(|b| std::str::from_utf8(b).map_err(|_| CopyError("text is not UTF-8")))
            .transpose()
    }

    /// A `text`.
    pub fn str(&self, i: usize) -> Result<&'a str, CopyError> {
        self.opt_str(i)?.ok_or(CopyError("unexpected NULL"))
    }
}

/// Splits a stream of CopyData payloads into tuples.
#[derive(Default)]
pub struct Parser {
    /// Whether the header was read.
    header_done: bool,
    /// Whether the trailer was read.
    done: bool,
    /// Bytes of an incomplete tuple (or header) carried over to the next chunk.
    pending: Vec<u8>,
}

/// What parsing from the start of `buf` found. Returned by value on purpose: boxing the tuple
/// would allocate once per row, which is what this module avoids.
#[allow(clippy::large_enum_variant)]
enum Step<'a> {
    /// A tuple, and the bytes it used.
    Tuple(Tuple<'a>, usize),
    /// The trailer, and its length.
    End(usize),
    /// `buf` ends inside the next item.
    Incomplete,
}

fn be_i16(b: &[u8]) -> i16 {
    i16::from_be_bytes([b[0], b[1]])
}

fn be_i32(b: &[u8]) -> i32 {
    i32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// The header's length, if `buf` holds all of it.
fn header(buf: &[u8]) -> Result<Option<usize>, CopyError> {
    if buf.len() < SIGNATURE.len() + 8 {
        return Ok(None);
    }
    if &buf[..SIGNATURE.len()] != SIGNATURE {
        return Err(CopyError("missing the PGCOPY signature"));
    }
    let ext = be_i32(&buf[SIGNATURE.len() + 4..]);
    let ext = usize::try_from(ext).map_err(|_| CopyError("negative header extension"))?;
    let len = SIGNATURE.len() + 8 + ext;
    Ok((buf.len() >= len).then_some(len))
}

fn step(buf: &[u8]) -> Result<Step<'_>, CopyError> {
    if buf.len() < 2 {
        return Ok(Step::Incomplete);
    }
    let n = be_i16(buf);
    if n == -1 {
        return Ok(Step::End(2));
    }
    let n = usize::try_from(n).map_err(|_| CopyError("negative field count"))?;
    if n > MAX_FIELDS {
        return Err(CopyError("more fields than a tuple may have"));
    }
    let mut fields = [None; MAX_FIELDS];
    let mut at = 2;
    for field in fields.iter_mut().take(n) {
        if buf.len() < at + 4 {
            return Ok(Step::Incomplete);
        }
        let len = be_i32(&buf[at..]);
        at += 4;
        if len < 0 {
            continue;
        }
        let len = len as usize;
        if buf.len() < at + len {
            return Ok(Step::Incomplete);
        }
        *field = Some(&buf[at..at + len]);
        at += len;
    }
    Ok(Step::Tuple(Tuple { fields, len: n }, at))
}

impl Parser {
    /// A parser expecting the header.
    pub fn new() -> Self {
        Parser::default()
    }

    /// Whether the trailer was read (the stream is complete).
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Feeds one chunk; calls `each` for every complete tuple.
    pub fn feed<E: From<CopyError>>(
        &mut self,
        chunk: &[u8],
        mut each: impl FnMut(&Tuple<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        if self.pending.is_empty() {
            let used = self.parse(chunk, &mut each)?;
            self.pending.extend_from_slice(&chunk[used..]);
        } else {
            let mut buf = std::mem::take(&mut self.pending);
            buf.extend_from_slice(chunk);
            let used = self.parse(&buf, &mut each)?;
            buf.drain(..used);
            self.pending = buf;
        }
        Ok(())
    }

    /// Parses what `buf` holds completely; returns the bytes used.
    fn parse<E: From<CopyError>>(
        &mut self,
        buf: &[u8],
        each: &mut impl FnMut(&Tuple<'_>) -> Result<(), E>,
    ) -> Result<usize, E> {
        let mut at = 0;
        if !self.header_done {
            match header(buf)? {
                Some(len) => {
                    self.header_done = true;
                    at = len;
                }
                None => return Ok(0),
            }
        }
        while !self.done {
            match step(&buf[at..])? {
                Step::Tuple(t, used) => {
                    each(&t)?;
                    at += used;
                }
                Step::End(used) => {
                    self.done = true;
                    at += used;
                }
                Step::Incomplete => break,
            }
        }
        Ok(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(tuples: &[Vec<Option<&[u8]>>]) -> Vec<u8> {
        let mut out = SIGNATURE.to_vec();
        out.extend_from_slice(&0i32.to_be_bytes());
        out.extend_from_slice(&0i32.to_be_bytes());
        for t in tuples {
            out.extend_from_slice(&(t.len() as i16).to_be_bytes());
            for f in t {
                match f {
                    None => out.extend_from_slice(&(-1i32).to_be_bytes()),
                    Some(b) => {
                        out.extend_from_slice(&(b.len() as i32).to_be_bytes());
                        out.extend_from_slice(b);
                    }
                }
            }
        }
        out.extend_from_slice(&(-1i16).to_be_bytes());
        out
    }

    /// Whatever the chunking, the same tuples come out, and the trailer is seen.
    #[test]
    fn tuples_split_anywhere_are_reassembled() {
        let one = 7i64.to_be_bytes();
        let half = 0.5f64.to_be_bytes();
        let data = stream(&[
            vec![Some(&one), Some(b"ciao"), None, Some(&half)],
            vec![
                Some(&one),
                Some("caffè".as_bytes()),
                Some(b"{}"),
                Some(&half),
            ],
        ]);
        for size in [1, 2, 3, 7, 19, data.len()] {
            let mut p = Parser::new();
            let mut got = Vec::new();
            for chunk in data.chunks(size) {
                p.feed(chunk, |t| {
                    got.push((
                        t.i64(0)?,
                        t.str(1)?.to_owned(),
                        t.opt_str(2)?.map(str::to_owned),
                    ));
                    assert_eq!(t.f64(3)?, 0.5);
                    Ok::<_, CopyError>(())
                })
                .expect("valid");
            }
            assert!(p.is_done(), "chunk size {size}");
            assert_eq!(
                got,
                vec![
                    (7, "ciao".to_owned(), None),
                    (7, "caffè".to_owned(), Some("{}".to_owned()))
                ]
            );
        }
    }

    #[test]
    fn malformed_streams_are_refused() {
        let mut p = Parser::new();
        let err = p
            .feed(b"NOTCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0", |_| {
                Ok::<_, CopyError>(())
            })
            .expect_err("bad signature");
        assert!(err.0.contains("signature"));
        let eight = 1i64.to_be_bytes();
        let data = stream(&[vec![Some(&eight[..4])]]);
        let mut p = Parser::new();
        let err = p
            .feed(&data, |t| t.i64(0).map(|_| ()))
            .expect_err("short bigint");
        assert!(err.0.contains("wrong length"));
    }
}
