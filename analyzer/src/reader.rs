//! Bounded JSON-lines reader.
//!
//! Splits a byte stream into lines without ever holding more than `max_line_bytes` of one line
//! in memory: a longer line is consumed and discarded as it streams past and reported as
//! [`Line::TooLong`], so hostile or corrupt input cannot make the analyzer buffer without bound.

use std::io::{self, BufRead};

/// Default longest line accepted: 16 MiB (the newline and a trailing `\r` are not counted).
pub const DEFAULT_MAX_LINE_BYTES: usize = 16 * 1024 * 1024;

/// Line buffers that grew beyond this are released after use, so one long line does not pin
/// its memory for the rest of the run.
const RETAINED_BUFFER_BYTES: usize = 1024 * 1024;

/// One line of input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line<'a> {
    /// The line's bytes, without the `\n` (and without a `\r` before it).
    Data(&'a [u8]),
    /// The line was longer than the limit; its bytes were discarded.
    TooLong,
}

/// Reads lines of at most `max_line_bytes` from a [`BufRead`].
#[derive(Debug)]
pub struct LineReader<R> {
    inner: R,
    buf: Vec<u8>,
    max_line_bytes: usize,
    line_number: u64,
}

impl<R: BufRead> LineReader<R> {
    /// Wraps `inner`; lines longer than `max_line_bytes` are reported as [`Line::TooLong`].
    pub fn new(inner: R, max_line_bytes: usize) -> Self {
        LineReader {
            inner,
            buf: Vec::new(),
            max_line_bytes,
            line_number: 0,
        }
    }

    /// Reads the next line and returns it with its 1-based line number, or `None` at end of
    /// input. A last line without a trailing newline is still returned.
    pub fn next_line(&mut self) -> io::Result<Option<(u64, Line<'_>)>> {
        if self.buf.capacity() > RETAINED_BUFFER_BYTES {
            self.buf = Vec::new();
        }
        self.buf.clear();
        let mut too_long = false;
        let mut saw_bytes = false;
        loop {
            let available = match self.inner.fill_buf() {
                Ok(bytes) => bytes,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if available.is_empty() {
                if !saw_bytes {
                    return Ok(None);
                }
                break;
            }
            saw_bytes = true;
            let (chunk, consumed, ends_line) = match available.iter().position(|&b| b == b'\n') {
                Some(i) => (&available[..i], i + 1, true),
                None => (available, available.len(), false),
            };
            if !too_long {
                // A `\r` that ends up right before the newline is not part of the line, so allow
                // one byte of slack for it; it is checked again once the line is complete.
                if self.buf.len() + chunk.len() > self.max_line_bytes.saturating_add(1) {
                    too_long = true;
                    self.buf.clear();
                } else {
                    let needed = self.buf.len() + chunk.len();
                    if needed > self.buf.capacity() {
                        // Grow geometrically but never beyond the limit (plus the `\r` slack).
                        let target = (self.buf.capacity() * 2)
                            .max(needed)
                            .min(self.max_line_bytes.saturating_add(1));
                        self.buf.reserve_exact(target - self.buf.len());
                    }
                    self.buf.extend_from_slice(chunk);
                }
            }
            self.inner.consume(consumed);
            if ends_line {
                break;
            }
        }
        self.line_number += 1;
        if !too_long && self.buf.last() == Some(&b'\r') {
            self.buf.pop();
        }
        if too_long || self.buf.len() > self.max_line_bytes {
            return Ok(Some((self.line_number, Line::TooLong)));
        }
        Ok(Some((self.line_number, Line::Data(&self.buf))))
    }
}

/// True when a line holds only ASCII whitespace (such lines are skipped, not counted as bad).
pub fn is_blank(line: &[u8]) -> bool {
    line.iter().all(u8::is_ascii_whitespace)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Collects every line as `Some(bytes)` or `None` for too long.
    fn lines(input: &[u8], max: usize, buffer: usize) -> Vec<(u64, Option<Vec<u8>>)> {
        let mut reader = LineReader::new(io::BufReader::with_capacity(buffer, input), max);
        let mut out = Vec::new();
        while let Some((n, line)) = reader.next_line().unwrap() {
            out.push((
                n,
                match line {
                    Line::Data(d) => Some(d.to_vec()),
                    Line::TooLong => None,
                },
            ));
        }
        out
    }

    #[test]
    fn splits_lines_and_numbers_them() {
        let got = lines(b"a\nbb\r\n\nccc", 100, 4);
        assert_eq!(
            got,
            vec![
                (1, Some(b"a".to_vec())),
                (2, Some(b"bb".to_vec())),
                (3, Some(Vec::new())),
                (4, Some(b"ccc".to_vec())),
            ]
        );
    }

    #[test]
    fn empty_input_has_no_lines() {
        assert!(lines(b"", 10, 4).is_empty());
        assert_eq!(lines(b"\n", 10, 4), vec![(1, Some(Vec::new()))]);
    }

    #[test]
    fn overlong_line_is_reported_and_reading_continues() {
        let mut input = vec![b'x'; 50];
        input.extend_from_slice(b"\nok\n");
        input.extend_from_slice(&[b'y'; 11]);
        let got = lines(&input, 10, 8);
        assert_eq!(got, vec![(1, None), (2, Some(b"ok".to_vec())), (3, None)]);
    }

    #[test]
    fn limit_is_inclusive_and_ignores_crlf() {
        let got = lines(b"0123456789\r\n0123456789\n0123456789\r\r\n", 10, 3);
        assert_eq!(
            got,
            vec![
                (1, Some(b"0123456789".to_vec())),
                (2, Some(b"0123456789".to_vec())),
                (3, None),
            ]
        );
    }

    #[test]
    fn huge_line_does_not_grow_the_buffer_past_the_limit() {
        // 20 MiB line against the real 16 MiB limit, streamed through a small buffer.
        struct Repeat(usize);
        impl io::Read for Repeat {
            fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
                let n = out.len().min(self.0);
                out[..n].fill(b'{');
                self.0 -= n;
                Ok(n)
            }
        }
        let src = io::Read::chain(Repeat(20 * 1024 * 1024), &b"\n{}\n"[..]);
        let mut reader = LineReader::new(io::BufReader::new(src), DEFAULT_MAX_LINE_BYTES);
        let (n, line) = reader.next_line().unwrap().unwrap();
        assert_eq!((n, line), (1, Line::TooLong));
        assert!(reader.buf.capacity() <= DEFAULT_MAX_LINE_BYTES + 1);
        let (n, line) = reader.next_line().unwrap().unwrap();
        assert_eq!((n, line), (2, Line::Data(b"{}")));
        assert!(reader.buf.capacity() <= RETAINED_BUFFER_BYTES);
        assert!(reader.next_line().unwrap().is_none());
    }

    #[test]
    fn blank_means_only_whitespace() {
        assert!(is_blank(b""));
        assert!(is_blank(b" \t "));
        assert!(!is_blank(b" {} "));
    }
}
