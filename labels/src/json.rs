//! The one JSON walk of a body (issue 13): a [`JsonTape`] lexes a JSON text (RFC 8259) once
//! into a flat list of borrowed tokens (byte ranges of the body, nothing copied) that every
//! reader of the body shares through [`crate::facts::EventFacts::request_json`] /
//! [`crate::facts::EventFacts::response_json`]:
//!
//! - the labeller walks the tokens as they come, tolerantly: a truncated or malformed
//!   document is read as far as it goes (`body::json`);
//! - the inventory's shape learning and response fingerprint read the tokens as a document
//!   ([`JsonDoc::root`]), only when the whole text is valid JSON by exactly the rules
//!   `serde_json::from_slice` applies (RFC 8259 grammar, string escapes and surrogates
//!   §7, UTF-8 §8.1, finite numbers §6, at most 127 levels of nesting), object members in
//!   key order with the last of duplicated keys winning, as a `serde_json::Value` had them.
//!
//! Bounds: one token per JSON token, each at least one byte of the body, so a tape is at
//! most 12 bytes per body byte (a `serde_json::Value` of the same text needs more); texts
//! longer than [`MAX_TAPE_BYTES`] are lexed up to that length.
use std::borrow::Cow;
use std::cell::OnceCell;

use memchr::memchr;

/// Longest text a tape lexes (token offsets are 32-bit).
pub const MAX_TAPE_BYTES: usize = u32::MAX as usize - 1;

/// `serde_json`'s recursion limit: a 128th level of nesting makes the text invalid.
const MAX_VALID_NESTING: usize = 127;

/// Kind of one token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokKind {
    /// `{`; `end` is the index of the matching close token (or [`NO_END`]).
    Object,
    /// `[`; `end` is the index of the matching close token (or [`NO_END`]).
    Array,
    /// `}` or `]`.
    Close,
    /// `,`.
    Comma,
    /// `:`.
    Colon,
    /// A string without escapes; `start..end` is its content (without the quotes).
    Str,
    /// A string with backslash escapes; `start..end` is its raw content.
    EscStr,
    /// A run of other bytes (a number, a literal, or garbage): `start..end`.
    Scalar,
}

/// `end` of an open token without a matching close.
pub const NO_END: u32 = u32::MAX;

/// One token of a [`JsonTape`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tok {
    /// What it is.
    pub kind: TokKind,
    /// Byte offset (content start for strings).
    pub start: u32,
    /// Content end (strings, scalars), index of the matching close (open tokens), or the
    /// offset after the byte (punctuation).
    pub end: u32,
}

impl Tok {
    /// The token's bytes in `b` (strings: the raw content).
    #[inline]
    pub fn bytes<'b>(&self, b: &'b [u8]) -> &'b [u8] {
        match self.kind {
            TokKind::Object | TokKind::Array => &b[self.start as usize..self.start as usize + 1],
            _ => &b[self.start as usize..self.end as usize],
        }
    }
}

/// Eight copies of a byte (for the word-at-a-time searches below).
const fn splat(b: u8) -> u64 {
    0x0101_0101_0101_0101u64 * b as u64
}
const LO_BITS: u64 = splat(0x01);
const HI_BITS: u64 = splat(0x80);

/// High bit set in each byte of `w` that is zero. Only the lowest set bit is exact (a borrow
/// can mark bytes above a zero byte), which is all the callers use.
#[inline(always)]
fn zero_bytes(w: u64) -> u64 {
    w.wrapping_sub(LO_BITS) & !w & HI_BITS
}

/// Finds the end of a JSON string whose content starts at `i`: (content end, had escapes,
/// index after the closing quote). An unterminated string ends at the end of `b`.
#[inline]
fn string_end(b: &[u8], mut i: usize) -> (usize, bool, usize) {
    let mut esc = false;
    // Most strings are short: eight bytes at a time (one word compare for `"` and `\`), the
    // vectorised search once a string is long.
    let quick = (i + 32).min(b.len());
    while i < quick {
        if let Some(chunk) = b[i..].first_chunk::<8>() {
            let w = u64::from_le_bytes(*chunk);
            let hit = zero_bytes(w ^ splat(b'"')) | zero_bytes(w ^ splat(b'\\'));
            if hit == 0 {
                i += 8;
                continue;
            }
            i += (hit.trailing_zeros() / 8) as usize;
        }
        match b[i] {
            b'"' => return (i, esc, i + 1),
            b'\\' => {
                esc = true;
                i += 2;
            }
            _ => i += 1,
        }
    }
    while i < b.len() {
        match memchr::memchr2(b'"', b'\\', &b[i..]) {
            Some(p) if b[i + p] == b'"' => return (i + p, esc, i + p + 1),
            Some(p) => {
                esc = true;
                i += p + 2;
            }
            None => break,
        }
    }
    (b.len(), esc, b.len())
}

fn hex4(b: &[u8]) -> Option<u32> {
    if b.len() < 4 {
        return None;
    }
    let mut v = 0u32;
    for &c in &b[..4] {
        v = v * 16 + (c as char).to_digit(16)?;
    }
    Some(v)
}

/// RFC 8259 §7 unescaping (invalid escapes are kept verbatim, lone surrogates become U+FFFD).
pub fn unescape_json(raw: &[u8], out: &mut Vec<u8>) {
    out.clear();
    let mut i = 0;
    while i < raw.len() {
        let Some(p) = memchr(b'\\', &raw[i..]) else {
            out.extend_from_slice(&raw[i..]);
            break;
        };
        out.extend_from_slice(&raw[i..i + p]);
        i += p;
        let Some(&e) = raw.get(i + 1) else {
            break;
        };
        i += 2;
        match e {
            b'"' | b'\\' | b'/' => out.push(e),
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'u' => {
                let Some(hi) = hex4(&raw[i..]) else {
                    out.extend_from_slice(b"\\u");
                    continue;
                };
                i += 4;
                let cp = if (0xD800..0xDC00).contains(&hi)
                    && raw.get(i) == Some(&b'\\')
                    && raw.get(i + 1) == Some(&b'u')
                {
                    match hex4(&raw[i + 2..]) {
                        Some(lo) if (0xDC00..0xE000).contains(&lo) => {
                            i += 6;
                            0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                        }
                        _ => 0xFFFD,
                    }
                } else {
                    hi
                };
                let ch = char::from_u32(cp).unwrap_or('\u{FFFD}');
                let mut tmp = [0u8; 4];
                out.extend_from_slice(ch.encode_utf8(&mut tmp).as_bytes());
            }
            other => {
                out.push(b'\\');
                out.push(other);
            }
        }
    }
}

/// Lexes `b` (at most [`MAX_TAPE_BYTES`] of it) into `out` (cleared first): whitespace
/// skipped, punctuation one token each, strings by their quotes (an unterminated one runs
/// to the end), every other run of bytes up to the next delimiter one [`TokKind::Scalar`].
/// Open tokens get the index of their matching close.
pub fn lex_into(b: &[u8], out: &mut Vec<Tok>) {
    out.clear();
    let b = &b[..b.len().min(MAX_TAPE_BYTES)];
    // The open containers form a chain through their `end` fields (each links to the one
    // around it) until their close is found: no stack to allocate.
    let mut top = NO_END;
    let n = b.len();
    let mut i = 0;
    let at = |i: usize| i as u32;
    while i < n {
        let c = b[i];
        match c {
            b' ' | b'\t' | b'\r' | b'\n' => i += 1,
            b'{' | b'[' => {
                let here = at(out.len());
                out.push(Tok {
                    kind: if c == b'{' {
                        TokKind::Object
                    } else {
                        TokKind::Array
                    },
                    start: at(i),
                    end: top,
                });
                top = here;
                i += 1;
            }
            b'}' | b']' => {
                let here = at(out.len());
                if let Some(t) = out.get_mut(top as usize) {
                    top = std::mem::replace(&mut t.end, here);
                }
                out.push(Tok {
                    kind: TokKind::Close,
                    start: at(i),
                    end: at(i + 1),
                });
                i += 1;
            }
            b',' | b':' => {
                out.push(Tok {
                    kind: if c == b',' {
                        TokKind::Comma
                    } else {
                        TokKind::Colon
                    },
                    start: at(i),
                    end: at(i + 1),
                });
                i += 1;
            }
            b'"' => {
                let (ce, esc, next) = string_end(b, i + 1);
                out.push(Tok {
                    kind: if esc { TokKind::EscStr } else { TokKind::Str },
                    start: at(i + 1),
                    end: at(ce),
                });
                i = next;
            }
            _ => {
                let st = i;
                while i < n
                    && !matches!(
                        b[i],
                        b',' | b'}'
                            | b']'
                            | b' '
                            | b'\t'
                            | b'\r'
                            | b'\n'
                            | b':'
                            | b'"'
                            | b'{'
                            | b'['
                    )
                {
                    i += 1;
                }
                out.push(Tok {
                    kind: TokKind::Scalar,
                    start: at(st),
                    end: at(i),
                });
            }
        }
    }
    // Containers never closed.
    while let Some(t) = out.get_mut(top as usize) {
        top = std::mem::replace(&mut t.end, NO_END);
    }
}

/// The tokens of one JSON text, and (computed on first use) whether the text is valid JSON.
#[derive(Debug, Default)]
pub struct JsonTape {
    toks: Vec<Tok>,
    valid: OnceCell<bool>,
}

impl JsonTape {
    /// Lexes `b` ([`lex_into`]).
    pub fn lex(b: &[u8]) -> JsonTape {
        let mut toks = Vec::with_capacity((b.len() / 6).clamp(4, 1 << 16));
        lex_into(b, &mut toks);
        JsonTape {
            toks,
            valid: OnceCell::new(),
        }
    }

    /// The tokens.
    pub fn toks(&self) -> &[Tok] {
        &self.toks
    }

    /// The tape read as a document of `b`, the bytes it was lexed from.
    pub fn doc<'d>(&'d self, b: &'d [u8]) -> JsonDoc<'d> {
        JsonDoc { b, tape: self }
    }
}

/// A [`JsonTape`] with the bytes it was lexed from, read as a document.
#[derive(Debug, Clone, Copy)]
pub struct JsonDoc<'d> {
    b: &'d [u8],
    tape: &'d JsonTape,
}

/// The type of a JSON value, as `serde_json` would have parsed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonType {
    /// `null`.
    Null,
    /// `true` or `false`.
    Boolean,
    /// A number `serde_json` keeps as an `i64` or `u64` (no fraction or exponent, in range,
    /// not `-0`).
    Integer,
    /// Any other number (an `f64`).
    Number,
    /// A string.
    String,
    /// An array.
    Array,
    /// An object.
    Object,
}

/// One value of a valid [`JsonDoc`].
#[derive(Debug, Clone, Copy)]
pub struct JsonValue<'d> {
    doc: JsonDoc<'d>,
    at: usize,
}

impl<'d> JsonDoc<'d> {
    /// The tokens.
    pub fn toks(&self) -> &'d [Tok] {
        &self.tape.toks
    }

    /// The bytes.
    pub fn bytes(&self) -> &'d [u8] {
        self.b
    }

    /// Whether the whole text is one valid JSON value as `serde_json::from_slice` accepts it.
    pub fn is_valid(&self) -> bool {
        *self
            .tape
            .valid
            .get_or_init(|| validate(self.b, &self.tape.toks))
    }

    /// The root value, when the text is valid JSON.
    pub fn root(&self) -> Option<JsonValue<'d>> {
        self.is_valid().then_some(JsonValue { doc: *self, at: 0 })
    }
}

impl<'d> JsonValue<'d> {
    fn tok(&self) -> Tok {
        self.doc.tape.toks[self.at]
    }

    /// Index of the value's last token.
    fn last(&self) -> usize {
        let t = self.tok();
        match t.kind {
            TokKind::Object | TokKind::Array => t.end as usize,
            _ => self.at,
        }
    }

    /// The value's type.
    pub fn json_type(&self) -> JsonType {
        let t = self.tok();
        match t.kind {
            TokKind::Object => JsonType::Object,
            TokKind::Array => JsonType::Array,
            TokKind::Str | TokKind::EscStr => JsonType::String,
            _ => match t.bytes(self.doc.b) {
                b"null" => JsonType::Null,
                b"true" | b"false" => JsonType::Boolean,
                n if is_integer(n) => JsonType::Integer,
                _ => JsonType::Number,
            },
        }
    }

    /// The value of `true` or `false`, else `None`.
    pub fn as_bool(&self) -> Option<bool> {
        let t = self.tok();
        match (t.kind, t.bytes(self.doc.b)) {
            (TokKind::Scalar, b"true") => Some(true),
            (TokKind::Scalar, b"false") => Some(false),
            _ => None,
        }
    }

    /// An object without members or an array without elements.
    pub fn is_empty_container(&self) -> bool {
        let t = self.tok();
        matches!(t.kind, TokKind::Object | TokKind::Array) && t.end as usize == self.at + 1
    }

    /// The text of a string value (escapes removed), else `None`.
    pub fn as_str(&self) -> Option<Cow<'d, str>> {
        let t = self.tok();
        string_text(t, self.doc.b)
    }

    /// The members of an object in key order, the last of duplicated keys winning (empty for
    /// other values).
    pub fn members(&self) -> Vec<(Cow<'d, str>, JsonValue<'d>)> {
        let t = self.tok();
        let mut out = Vec::new();
        if t.kind != TokKind::Object {
            return out;
        }
        let toks = &self.doc.tape.toks;
        let end = t.end as usize;
        let mut j = self.at + 1;
        // Valid: key, colon, value, then a comma or the close.
        while j < end {
            let Some(key) = string_text(toks[j], self.doc.b) else {
                break;
            };
            let v = JsonValue {
                doc: self.doc,
                at: j + 2,
            };
            out.push((key, v));
            j = v.last() + 2;
        }
        if !out.is_sorted_by(|a, b| a.0 < b.0) {
            // Stable: of equal keys the last stays last, and is the one kept.
            out.sort_by(|a, b| a.0.cmp(&b.0));
            let mut k = 0;
            for i in 0..out.len() {
                if i + 1 < out.len() && out[i].0 == out[i + 1].0 {
                    continue;
                }
                out.swap(k, i);
                k += 1;
            }
            out.truncate(k);
        }
        out
    }

    /// The value of the member `key` of an object (the last one of that key).
    pub fn get(&self, key: &str) -> Option<JsonValue<'d>> {
        let t = self.tok();
        if t.kind != TokKind::Object {
            return None;
        }
        let toks = &self.doc.tape.toks;
        let end = t.end as usize;
        let mut j = self.at + 1;
        let mut found = None;
        while j < end {
            let k = string_text(toks[j], self.doc.b)?;
            let v = JsonValue {
                doc: self.doc,
                at: j + 2,
            };
            if k == key {
                found = Some(v);
            }
            j = v.last() + 2;
        }
        found
    }

    /// The elements of an array (nothing for other values).
    pub fn items(&self) -> impl Iterator<Item = JsonValue<'d>> + use<'d> {
        let t = self.tok();
        let doc = self.doc;
        let end = if t.kind == TokKind::Array {
            t.end as usize
        } else {
            self.at
        };
        let mut j = self.at + 1;
        std::iter::from_fn(move || {
            if j >= end {
                return None;
            }
            let v = JsonValue { doc, at: j };
            j = v.last() + 2;
            Some(v)
        })
    }
}

/// The text of a string token, escapes removed; `None` for other tokens and invalid UTF-8.
fn string_text(t: Tok, b: &[u8]) -> Option<Cow<'_, str>> {
    match t.kind {
        TokKind::Str => std::str::from_utf8(t.bytes(b)).ok().map(Cow::Borrowed),
        TokKind::EscStr => {
            let mut out = Vec::new();
            unescape_json(t.bytes(b), &mut out);
            String::from_utf8(out).ok().map(Cow::Owned)
        }
        _ => None,
    }
}

/// A number `serde_json` parses to an `i64`/`u64`: no fraction or exponent, a positive value
/// up to `u64::MAX`, or a negative one down to `-2^63` (`-0` is an `f64`).
fn is_integer(n: &[u8]) -> bool {
    let (neg, digits) = match n.split_first() {
        Some((b'-', d)) => (true, d),
        _ => (false, n),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let mut v: u64 = 0;
    for d in digits {
        match v
            .checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(d - b'0')))
        {
            Some(x) => v = x,
            None => return false,
        }
    }
    !neg || (1..=1u64 << 63).contains(&v)
}

/// RFC 8259 §6 number grammar, and finite (`serde_json` rejects numbers out of range).
fn valid_number(n: &[u8]) -> bool {
    let digits = |s: &[u8]| s.iter().take_while(|c| c.is_ascii_digit()).count();
    let mut i = usize::from(n.first() == Some(&b'-'));
    match n.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => i += digits(&n[i..]),
        _ => return false,
    }
    let mut float = false;
    if n.get(i) == Some(&b'.') {
        let d = digits(&n[i + 1..]);
        if d == 0 {
            return false;
        }
        i += 1 + d;
        float = true;
    }
    if matches!(n.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(n.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let d = digits(&n[i..]);
        if d == 0 {
            return false;
        }
        i += d;
        float = true;
    }
    if i != n.len() {
        return false;
    }
    // Integers that fit stay integers; others become an f64, which must be finite.
    if !float && is_integer(n) {
        return true;
    }
    std::str::from_utf8(n)
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .is_some_and(f64::is_finite)
}

/// RFC 8259 §7 as `serde_json` checks a string: terminated, no control characters, known
/// escapes only, `\u` surrogates paired, UTF-8 (§8.1).
fn valid_string(t: Tok, b: &[u8]) -> bool {
    let (s, e) = (t.start as usize, t.end as usize);
    if b.get(e) != Some(&b'"') {
        return false;
    }
    let raw = &b[s..e];
    if raw.iter().any(|c| *c < 0x20) || std::str::from_utf8(raw).is_err() {
        return false;
    }
    if t.kind == TokKind::Str {
        return true;
    }
    let mut i = 0;
    while let Some(p) = memchr(b'\\', &raw[i..]) {
        i += p + 1;
        match raw.get(i) {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => i += 1,
            Some(b'u') => {
                let Some(hi) = hex4(&raw[i + 1..]) else {
                    return false;
                };
                i += 5;
                if (0xDC00..0xE000).contains(&hi) {
                    return false;
                }
                if (0xD800..0xDC00).contains(&hi) {
                    if raw.get(i..i + 2) != Some(b"\\u") {
                        return false;
                    }
                    match hex4(&raw[i + 2..]) {
                        Some(lo) if (0xDC00..0xE000).contains(&lo) => i += 6,
                        _ => return false,
                    }
                }
            }
            _ => return false,
        }
    }
    true
}

/// The tokens are exactly one RFC 8259 value (§2) with valid strings and numbers, nested at
/// most [`MAX_VALID_NESTING`] deep.
fn validate(b: &[u8], toks: &[Tok]) -> bool {
    /// What may come next.
    #[derive(PartialEq)]
    enum Want {
        Value,
        /// A value or `]` (just after `[`).
        ValueOrClose,
        /// A key or `}` (just after `{`).
        KeyOrClose,
        Key,
        Colon,
        /// `,` or the close of the container.
        CommaOrClose,
        /// Nothing (the root value is complete).
        End,
    }
    if b.len() > MAX_TAPE_BYTES {
        return false;
    }
    // Containers open: true for objects.
    let mut stack: Vec<bool> = Vec::new();
    let mut want = Want::Value;
    for t in toks {
        match t.kind {
            TokKind::Object | TokKind::Array => {
                if !matches!(want, Want::Value | Want::ValueOrClose) {
                    return false;
                }
                if stack.len() >= MAX_VALID_NESTING {
                    return false;
                }
                let obj = t.kind == TokKind::Object;
                stack.push(obj);
                want = if obj {
                    Want::KeyOrClose
                } else {
                    Want::ValueOrClose
                };
            }
            TokKind::Close => {
                let obj = b[t.start as usize] == b'}';
                let ok = match want {
                    Want::CommaOrClose => true,
                    Want::ValueOrClose => !obj,
                    Want::KeyOrClose => obj,
                    _ => false,
                };
                if !ok || stack.pop() != Some(obj) {
                    return false;
                }
                want = if stack.is_empty() {
                    Want::End
                } else {
                    Want::CommaOrClose
                };
            }
            TokKind::Comma => {
                if want != Want::CommaOrClose {
                    return false;
                }
                want = if stack.last() == Some(&true) {
                    Want::Key
                } else {
                    Want::Value
                };
            }
            TokKind::Colon => {
                if want != Want::Colon {
                    return false;
                }
                want = Want::Value;
            }
            TokKind::Str | TokKind::EscStr => {
                if !valid_string(*t, b) {
                    return false;
                }
                want = match want {
                    Want::Key | Want::KeyOrClose => Want::Colon,
                    Want::Value | Want::ValueOrClose if stack.is_empty() => Want::End,
                    Want::Value | Want::ValueOrClose => Want::CommaOrClose,
                    _ => return false,
                };
            }
            TokKind::Scalar => {
                if !matches!(want, Want::Value | Want::ValueOrClose) {
                    return false;
                }
                let s = t.bytes(b);
                if !(matches!(s, b"null" | b"true" | b"false") || valid_number(s)) {
                    return false;
                }
                want = if stack.is_empty() {
                    Want::End
                } else {
                    Want::CommaOrClose
                };
            }
        }
    }
    want == Want::End
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc_valid(s: &[u8]) -> bool {
        JsonTape::lex(s).doc(s).is_valid()
    }

    /// Every text is valid exactly when `serde_json::from_slice` accepts it.
    #[test]
    fn validity_is_serde_jsons() {
        let cases: &[&[u8]] = &[
            b"",
            b"   ",
            b"{}",
            b"[]",
            b" {\"a\" : 1 , \"b\":[true,false,null]} \n",
            b"{\"a\":1,}",
            b"[1,]",
            b"[,1]",
            b"{\"a\"}",
            b"{\"a\":}",
            b"{1:2}",
            b"{\"a\":1 \"b\":2}",
            b"[1 2]",
            b"1",
            b"-0",
            b"-0.0",
            b"01",
            b"1.",
            b".5",
            b"1e",
            b"1e+",
            b"1E-7",
            b"-",
            b"+1",
            b"1e400",
            b"-1e400",
            b"0e99999999999999999999",
            b"1e-400",
            b"123456789012345678901234567890",
            b"18446744073709551615",
            b"18446744073709551616",
            b"-9223372036854775808",
            b"-9223372036854775809",
            b"truex",
            b"tru",
            b"nul",
            b"\"abc",
            b"\"a\\qb\"",
            b"\"a\\u12\"",
            b"\"a\\u12G4\"",
            b"\"\\ud83d\\ude00\"",
            b"\"\\ud83d\"",
            b"\"\\ud83dx\"",
            b"\"\\ud83d\\u0041\"",
            b"\"\\ude00\"",
            b"\"a\tb\"",
            b"\"\xff\"",
            b"\"\xe5\xbc\xa0\"",
            b"[1]]",
            b"[1}",
            b"{\"a\":1]",
            b"[[1] [2]]",
            b"1 2",
            b"\"a\" \"b\"",
            b"{\"a\":1}x",
            b"\xef\xbb\xbf{}",
            b"{\"a\":\"b\":1}",
            b"[\"a\":1]",
            b"\x0c1",
        ];
        for c in cases {
            let serde = serde_json::from_slice::<serde_json::Value>(c).is_ok();
            assert_eq!(doc_valid(c), serde, "{:?}", String::from_utf8_lossy(c));
        }
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n)).into_bytes();
        for n in [126, 127, 128, 129] {
            let d = deep(n);
            let serde = serde_json::from_slice::<serde_json::Value>(&d).is_ok();
            assert_eq!(doc_valid(&d), serde, "depth {n}");
        }
    }

    fn ty(v: &serde_json::Value) -> JsonType {
        match v {
            serde_json::Value::Null => JsonType::Null,
            serde_json::Value::Bool(_) => JsonType::Boolean,
            serde_json::Value::Number(n) if n.is_i64() || n.is_u64() => JsonType::Integer,
            serde_json::Value::Number(_) => JsonType::Number,
            serde_json::Value::String(_) => JsonType::String,
            serde_json::Value::Array(_) => JsonType::Array,
            serde_json::Value::Object(_) => JsonType::Object,
        }
    }

    /// The document as `serde_json::Value` reads it: types, strings, key order and
    /// duplicated keys.
    fn same(v: JsonValue<'_>, s: &serde_json::Value) {
        assert_eq!(v.json_type(), ty(s));
        assert_eq!(v.as_str().as_deref(), s.as_str());
        match s {
            serde_json::Value::Object(m) => {
                let members = v.members();
                assert_eq!(members.len(), m.len());
                for ((k, mv), (sk, sv)) in members.iter().zip(m) {
                    assert_eq!(k, sk);
                    same(*mv, sv);
                    same(v.get(sk).unwrap(), sv);
                }
                assert!(v.get("\u{0}absent").is_none());
            }
            serde_json::Value::Array(a) => {
                assert_eq!(v.items().count(), a.len());
                for (iv, sv) in v.items().zip(a) {
                    same(iv, sv);
                }
            }
            _ => {
                assert!(v.members().is_empty());
                assert_eq!(v.items().count(), 0);
            }
        }
    }

    #[test]
    fn documents_read_as_serde_values() {
        let cases: &[&str] = &[
            r#"{"b":1,"a":[1,2.5,-3,"x",null,true,{"z":{}}],"c":{"d":"e\u00e9\n"}}"#,
            r#"{"k":1,"k":{"x":2},"a":0,"k":"last"}"#,
            r#"[{"id":-0},{"id":18446744073709551616},{"id":-9223372036854775808}]"#,
            r#"{"\u0062":1,"a":2,"b":3}"#,
            r#""plain""#,
            "17",
            r#"{"":{"":[]}}"#,
        ];
        for c in cases {
            let tape = JsonTape::lex(c.as_bytes());
            let doc = tape.doc(c.as_bytes());
            let serde: serde_json::Value = serde_json::from_str(c).unwrap();
            same(doc.root().expect(c), &serde);
        }
        assert!(JsonTape::lex(b"{\"a\":").doc(b"{\"a\":").root().is_none());
    }

    #[test]
    fn tokens_borrow_the_body() {
        let b = br#" {"a" :[1, "x\"y"]} "#;
        let tape = JsonTape::lex(b);
        let kinds: Vec<TokKind> = tape.toks().iter().map(|t| t.kind).collect();
        use TokKind::*;
        assert_eq!(
            kinds,
            [
                Object, Str, Colon, Array, Scalar, Comma, EscStr, Close, Close
            ]
        );
        assert_eq!(tape.toks()[0].end, 8);
        assert_eq!(tape.toks()[3].end, 7);
        assert_eq!(tape.toks()[6].bytes(b), br#"x\"y"#);
        // Unterminated and unbalanced: read as far as they go.
        let t = JsonTape::lex(br#"{"a":"bc"#);
        assert_eq!(t.toks()[0].end, NO_END);
        assert_eq!(t.toks()[3].kind, Str);
        assert_eq!(t.toks()[3].bytes(br#"{"a":"bc"#), b"bc");
    }
}
