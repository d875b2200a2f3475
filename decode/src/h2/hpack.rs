//! HPACK header block decoding (RFC 7541) that keeps going when it joined a connection late.
//!
//! # Build, not buy
//! The Rust HPACK crates (`hpack` 0.3 and its forks `fluke-hpack`/`loona-hpack`,
//! `httlib-hpack`; h2's codec is private) all treat an index outside the table as a fatal
//! decoding error (RFC 7541 §2.3.3), which is right for an endpoint and wrong for a monitor that
//! attaches to a long-lived gRPC connection: the first header block it sees refers to entries
//! inserted before it was watching. They also return owned `String`/`Vec` pairs per field. This
//! decoder is written for the monitor's case (R-CAP-3, issue 17): fields are [`Bytes`] slices of
//! the header block when not Huffman-coded, static entries are `'static`, and a decoder created
//! with [`Decoder::joined`] yields a marked [`Field`] for every reference it cannot resolve,
//! never an invented value. Its conformance is tested against the RFC 7541 Appendix C vectors
//! and against real nghttp2 and gRPC C-core encoders (captures under `tests/fixtures/h2/`).
//!
//! # What is exact after a mid-connection join (§2.3, §4)
//! The dynamic table is a FIFO addressed from the newest entry: index 62 is always the entry
//! inserted last. A late decoder therefore knows a *prefix* of the real table — the `k` entries
//! inserted since it joined, newest first — followed by a tail of unknown length and content
//! (the entries inserted before). Eviction removes entries from the oldest end only, so:
//! - a reference to index `62 + i` with `i < k` is exactly the `i`-th entry inserted since the
//!   join (a conforming encoder never references an evicted entry, and eviction never moves the
//!   survivors): **exact**;
//! - a reference with `i >= k` is the pre-join entry `slot = i - k` (numbered from the newest at
//!   join time; the same slot keeps its number as later inserts push it up): reported as
//!   unknown with that slot, so consumers can tell two references to the same unknown entry;
//! - literal fields, static-table references and literal-with-indexing inserts are exact; an
//!   insert whose *name* refers to an unknown entry is stored with an unknown name and its
//!   known value, and its later references say so;
//! - what is *not* known is how many of the known entries eviction has removed, because that
//!   depends on the unknown tail's sizes and, unless a size update was seen, on the table's
//!   maximum size. The decoder keeps known entries until their cumulative size exceeds the best
//!   upper bound of the maximum it has (a size update seen after the join, the receiver's
//!   `SETTINGS_HEADER_TABLE_SIZE`, else its own memory cap); keeping an evicted entry is
//!   harmless (the encoder cannot reference it), dropping a live one only turns an exact field
//!   into a marked one;
//! - the table becomes fully known (references past the known prefix are then errors, as for an
//!   endpoint) once a size update to 0 is seen, or once the known entries leave no room for any
//!   tail entry (cumulative size + 32 > an upper bound of the maximum, §4.1's 32-byte overhead).
//!
//! Every decoding error desynchronises the table (the rest of the block's inserts are lost), so
//! the decoder falls back to join mode rather than guessing.

use std::collections::VecDeque;

use bytes::Bytes;

use super::huffman::{self, HuffmanError};

/// One decoded field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// The field name; `None` when it came from a dynamic entry this decoder does not know.
    pub name: Option<Bytes>,
    /// The field value; `None` when it came from a dynamic entry this decoder does not know.
    pub value: Option<Bytes>,
    /// The pre-join table entry the unknown part referred to (see the module doc), when it was
    /// one; `None` for an entry the decoder dropped under its memory cap.
    pub unknown_slot: Option<u32>,
    /// Sent as "never indexed" (§6.2.3): intermediaries must keep it literal (sensitive).
    pub never_indexed: bool,
}

impl Field {
    /// A field whose name and value are both known.
    pub fn known(name: Bytes, value: Bytes) -> Self {
        Field {
            name: Some(name),
            value: Some(value),
            unknown_slot: None,
            never_indexed: false,
        }
    }

    /// Name and value are both known.
    pub fn is_complete(&self) -> bool {
        self.name.is_some() && self.value.is_some()
    }

    /// Bytes of name and value held.
    pub fn len(&self) -> usize {
        self.name.as_ref().map_or(0, Bytes::len) + self.value.as_ref().map_or(0, Bytes::len)
    }

    /// No bytes held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Why a header block did not decode (RFC 7541 §4, §5, §6); all are COMPRESSION_ERROR for an
/// endpoint (RFC 9113 §4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HpackError {
    /// The block ended inside a representation.
    #[error("header block truncated")]
    Truncated,
    /// An integer does not fit 32 bits (§5.1; this decoder's bound).
    #[error("integer overflow")]
    Integer,
    /// Index 0, or beyond a fully known table (§2.3.3).
    #[error("invalid table index")]
    Index,
    /// Bad Huffman coding (§5.2).
    #[error("huffman: {0}")]
    Huffman(#[from] HuffmanError),
    /// A size update above the protocol maximum, or after the first field (§4.2, §6.3).
    #[error("invalid dynamic table size update")]
    SizeUpdate,
}

/// Outcome of one header block.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BlockInfo {
    /// Fields with an unknown name or value.
    pub unknown: u32,
    /// Fields decoded but not kept because of the field count or byte limits.
    pub dropped: u32,
}

/// Decoder limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Fields kept per block at most (the rest are decoded for table state, then dropped).
    pub max_fields: usize,
    /// Name and value bytes kept per block at most.
    pub max_field_bytes: usize,
    /// Dynamic table bytes (RFC 7541 §4.1 sizes) this decoder stores at most.
    pub max_table_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_fields: 128,
            max_field_bytes: 64 * 1024,
            max_table_bytes: 64 * 1024,
        }
    }
}

/// RFC 9113 §6.5.2: SETTINGS_HEADER_TABLE_SIZE's initial value.
pub const DEFAULT_TABLE_SIZE: usize = 4096;

#[derive(Debug, Clone)]
struct Entry {
    name: Option<Bytes>,
    value: Bytes,
    /// §4.1 size; with an unknown name, a lower bound (the name counted as 1 byte).
    size: usize,
    /// Pre-join slot of the unknown name, if any.
    name_slot: Option<u32>,
}

/// An HPACK decoder for one direction of one connection.
#[derive(Debug, Clone)]
pub struct Decoder {
    limits: Limits,
    /// Known entries, newest first.
    entries: VecDeque<Entry>,
    /// Sum of `entries` sizes.
    size: usize,
    /// Entries inserted since the join (or since the start); pre-join slots are numbered past
    /// them.
    inserted: u64,
    /// The table may hold entries this decoder never saw.
    unknown_tail: bool,
    /// The encoder's current maximum table size, when known exactly.
    max_size: Option<usize>,
    /// The receiver's SETTINGS_HEADER_TABLE_SIZE, when known: the most the encoder may use.
    protocol_max: Option<usize>,
    /// Unknown fields produced so far.
    unknown_fields: u64,
}

impl Decoder {
    /// A decoder that saw the connection from its start (table empty, maximum 4096).
    pub fn new(limits: Limits) -> Self {
        Decoder {
            limits,
            entries: VecDeque::new(),
            size: 0,
            inserted: 0,
            unknown_tail: false,
            max_size: Some(DEFAULT_TABLE_SIZE),
            protocol_max: Some(DEFAULT_TABLE_SIZE),
            unknown_fields: 0,
        }
    }

    /// A decoder that joined a connection already open: the table's content and maximum are
    /// unknown.
    pub fn joined(limits: Limits) -> Self {
        let mut d = Decoder::new(limits);
        d.desync();
        d.protocol_max = None;
        d
    }

    /// Forgets what is known about the table's older part (after a decoding error or lost
    /// bytes): known entries stay (their indices are still exact until further inserts are
    /// missed, so they are dropped too), slots restart.
    pub fn desync(&mut self) {
        self.entries.clear();
        self.size = 0;
        self.inserted = 0;
        self.unknown_tail = true;
        self.max_size = None;
    }

    /// The table's content is fully known: no entry older than those seen, and every entry's
    /// name known (an entry inserted with a pre-join name stays partly unknown).
    pub fn synchronised(&self) -> bool {
        !self.unknown_tail && self.entries.iter().all(|e| e.name.is_some())
    }

    /// Unknown fields produced since creation.
    pub fn unknown_fields(&self) -> u64 {
        self.unknown_fields
    }

    /// Known dynamic entries.
    pub fn known_entries(&self) -> usize {
        self.entries.len()
    }

    /// Bytes held by the table (names and values).
    pub fn held_bytes(&self) -> usize {
        self.entries
            .iter()
            .map(|e| e.value.len() + e.name.as_ref().map_or(0, Bytes::len))
            .sum()
    }

    /// The receiver advertised SETTINGS_HEADER_TABLE_SIZE `n` (RFC 9113 §6.5.2): the encoder
    /// may use at most `n` from now on.
    pub fn set_protocol_max(&mut self, n: usize) {
        self.protocol_max = Some(n);
        if let Some(m) = self.max_size
            && m > n
        {
            // The encoder must shrink (RFC 7541 §4.2); apply it even if its update is missed.
            self.max_size = Some(n);
        }
        self.evict();
    }

    /// Best known upper bound of the encoder's maximum table size.
    fn max_upper(&self) -> Option<usize> {
        match (self.max_size, self.protocol_max) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Drops known entries that are certainly evicted (or over this decoder's cap), oldest
    /// first, and notes when no unknown entry can remain.
    fn evict(&mut self) {
        let bound = self
            .max_upper()
            .unwrap_or(usize::MAX)
            .min(self.limits.max_table_bytes);
        while self.size > bound {
            match self.entries.pop_back() {
                Some(e) => self.size -= e.size,
                None => break,
            }
        }
        // §4.1: every entry is at least 32 bytes; no room left means no tail.
        if self.unknown_tail
            && let Some(m) = self.max_upper()
            && self.size + 32 > m
            && m <= self.limits.max_table_bytes
        {
            self.unknown_tail = false;
        }
    }

    fn insert(&mut self, name: Option<Bytes>, name_slot: Option<u32>, value: Bytes) {
        let size = name.as_ref().map_or(1, Bytes::len) + value.len() + 32;
        self.inserted += 1;
        // §4.4: an entry larger than the maximum empties the table and is not added.
        if let Some(m) = self.max_size
            && size > m
        {
            self.entries.clear();
            self.size = 0;
            self.unknown_tail = false;
            return;
        }
        self.entries.push_front(Entry {
            name,
            value,
            size,
            name_slot,
        });
        self.size += size;
        self.evict();
    }

    /// Resolves a 1-based index (§2.3.3).
    fn lookup(&self, index: u64) -> Result<Field, HpackError> {
        if index == 0 {
            return Err(HpackError::Index);
        }
        if let Some(&(n, v)) = STATIC.get((index - 1) as usize) {
            return Ok(Field::known(
                Bytes::from_static(n.as_bytes()),
                Bytes::from_static(v.as_bytes()),
            ));
        }
        let i = index - 62;
        if let Some(e) = usize::try_from(i).ok().and_then(|i| self.entries.get(i)) {
            return Ok(Field {
                name: e.name.clone(),
                value: Some(e.value.clone()),
                unknown_slot: e.name_slot,
                never_indexed: false,
            });
        }
        if !self.unknown_tail {
            // A fully known table: past its end is an error, unless this decoder dropped
            // entries under its own cap (then the reference is merely unknown).
            if i < self.inserted
                && self
                    .max_size
                    .is_none_or(|m| m > self.limits.max_table_bytes)
            {
                return Ok(unknown(None));
            }
            return Err(HpackError::Index);
        }
        // Past the known prefix: a pre-join entry, or a post-join one dropped by the cap.
        let slot = i
            .checked_sub(self.inserted)
            .and_then(|s| u32::try_from(s).ok());
        Ok(unknown(slot))
    }

    /// Decodes one complete header block (the HEADERS/PUSH_PROMISE fragment and its
    /// CONTINUATIONs, RFC 9113 §4.3), appending fields to `out`.
    pub fn decode(&mut self, block: &Bytes, out: &mut Vec<Field>) -> Result<BlockInfo, HpackError> {
        let r = self.decode_inner(block, out);
        if r.is_err() {
            self.desync();
        }
        r
    }

    fn decode_inner(
        &mut self,
        block: &Bytes,
        out: &mut Vec<Field>,
    ) -> Result<BlockInfo, HpackError> {
        let mut info = BlockInfo::default();
        let mut pos = 0usize;
        let mut kept_fields = 0usize;
        let mut kept_bytes = 0usize;
        let mut seen_field = false;
        let b = block.as_ref();
        while pos < b.len() {
            let first = b[pos];
            let mut field = if first & 0x80 != 0 {
                // §6.1 Indexed Header Field.
                let idx = integer(b, &mut pos, 7)?;
                self.lookup(idx)?
            } else if first & 0xc0 == 0x40 {
                // §6.2.1 Literal with Incremental Indexing.
                let idx = integer(b, &mut pos, 6)?;
                let f = self.literal(block, &mut pos, idx)?;
                let value = f.value.clone().unwrap_or_default();
                self.insert(f.name.clone(), f.unknown_slot, value);
                f
            } else if first & 0xe0 == 0x20 {
                // §6.3 Dynamic Table Size Update: only before the first field (§4.2).
                if seen_field {
                    return Err(HpackError::SizeUpdate);
                }
                let n = integer(b, &mut pos, 5)?;
                let n = usize::try_from(n).map_err(|_| HpackError::SizeUpdate)?;
                if self.protocol_max.is_some_and(|p| n > p) {
                    return Err(HpackError::SizeUpdate);
                }
                self.max_size = Some(n);
                if n == 0 {
                    // Everything is evicted: the table is known from here on.
                    self.entries.clear();
                    self.size = 0;
                    self.unknown_tail = false;
                }
                self.evict();
                continue;
            } else {
                // §6.2.2 without indexing (0000) and §6.2.3 never indexed (0001).
                let never = first & 0x10 != 0;
                let idx = integer(b, &mut pos, 4)?;
                let mut f = self.literal(block, &mut pos, idx)?;
                f.never_indexed = never;
                f
            };
            seen_field = true;
            if !field.is_complete() {
                info.unknown += 1;
                self.unknown_fields += 1;
            }
            if kept_fields < self.limits.max_fields
                && kept_bytes + field.len() <= self.limits.max_field_bytes
            {
                kept_fields += 1;
                kept_bytes += field.len();
                out.push(std::mem::replace(&mut field, unknown(None)));
            } else {
                info.dropped += 1;
            }
        }
        Ok(info)
    }

    /// A literal representation's name (indexed when `idx > 0`) and value (§6.2).
    fn literal(&self, block: &Bytes, pos: &mut usize, idx: u64) -> Result<Field, HpackError> {
        let (name, slot) = if idx == 0 {
            (Some(string(block, pos)?), None)
        } else {
            let f = self.lookup(idx)?;
            (f.name, f.unknown_slot)
        };
        let value = string(block, pos)?;
        Ok(Field {
            name,
            value: Some(value),
            unknown_slot: slot,
            never_indexed: false,
        })
    }
}

fn unknown(slot: Option<u32>) -> Field {
    Field {
        name: None,
        value: None,
        unknown_slot: slot,
        never_indexed: false,
    }
}

/// §5.1 integer with an `n`-bit prefix, at most 2^32 - 1 here (larger values are never
/// legitimate for indices, lengths or sizes and would only serve resource exhaustion).
fn integer(b: &[u8], pos: &mut usize, n: u32) -> Result<u64, HpackError> {
    let mask = ((1u16 << n) - 1) as u8;
    let first = *b.get(*pos).ok_or(HpackError::Truncated)? & mask;
    *pos += 1;
    if first < mask {
        return Ok(u64::from(first));
    }
    let mut value = u64::from(mask);
    let mut shift = 0;
    loop {
        let byte = *b.get(*pos).ok_or(HpackError::Truncated)?;
        *pos += 1;
        value += u64::from(byte & 0x7f) << shift;
        if value > u64::from(u32::MAX) {
            return Err(HpackError::Integer);
        }
        if byte & 0x80 == 0 {
            return Ok(value);
        }
        shift += 7;
        // Zero-valued continuation bytes would never overflow `value`: bound their number.
        if shift > 28 {
            return Err(HpackError::Integer);
        }
    }
}

/// §5.2 string literal: a slice of the block, or its Huffman decoding.
fn string(block: &Bytes, pos: &mut usize) -> Result<Bytes, HpackError> {
    let b = block.as_ref();
    let huff = b.get(*pos).ok_or(HpackError::Truncated)? & 0x80 != 0;
    let len = integer(b, pos, 7)?;
    let len = usize::try_from(len).map_err(|_| HpackError::Truncated)?;
    let end = pos.checked_add(len).ok_or(HpackError::Truncated)?;
    if end > b.len() {
        return Err(HpackError::Truncated);
    }
    let raw = block.slice(*pos..end);
    *pos = end;
    if !huff {
        return Ok(raw);
    }
    let mut out = Vec::new();
    huffman::decode(&raw, &mut out)?;
    Ok(Bytes::from(out))
}

/// RFC 7541 Appendix A.
static STATIC: [(&str, &str); 61] = [
    (":authority", ""),
    (":method", "GET"),
    (":method", "POST"),
    (":path", "/"),
    (":path", "/index.html"),
    (":scheme", "http"),
    (":scheme", "https"),
    (":status", "200"),
    (":status", "204"),
    (":status", "206"),
    (":status", "304"),
    (":status", "400"),
    (":status", "404"),
    (":status", "500"),
    ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"),
    ("accept-language", ""),
    ("accept-ranges", ""),
    ("accept", ""),
    ("access-control-allow-origin", ""),
    ("age", ""),
    ("allow", ""),
    ("authorization", ""),
    ("cache-control", ""),
    ("content-disposition", ""),
    ("content-encoding", ""),
    ("content-language", ""),
    ("content-length", ""),
    ("content-location", ""),
    ("content-range", ""),
    ("content-type", ""),
    ("cookie", ""),
    ("date", ""),
    ("etag", ""),
    ("expect", ""),
    ("expires", ""),
    ("from", ""),
    ("host", ""),
    ("if-match", ""),
    ("if-modified-since", ""),
    ("if-none-match", ""),
    ("if-range", ""),
    ("if-unmodified-since", ""),
    ("last-modified", ""),
    ("link", ""),
    ("location", ""),
    ("max-forwards", ""),
    ("proxy-authenticate", ""),
    ("proxy-authorization", ""),
    ("range", ""),
    ("referer", ""),
    ("refresh", ""),
    ("retry-after", ""),
    ("server", ""),
    ("set-cookie", ""),
    ("strict-transport-security", ""),
    ("transfer-encoding", ""),
    ("user-agent", ""),
    ("vary", ""),
    ("via", ""),
    ("www-authenticate", ""),
];

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn hex(s: &str) -> Bytes {
        let s: String = s.split_whitespace().collect();
        Bytes::from(
            (0..s.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
                .collect::<Vec<u8>>(),
        )
    }

    fn pairs(fields: &[Field]) -> Vec<(String, String)> {
        fields
            .iter()
            .map(|f| {
                let s = |b: &Option<Bytes>| {
                    b.as_ref()
                        .map_or("?".into(), |b| String::from_utf8_lossy(b).into_owned())
                };
                (s(&f.name), s(&f.value))
            })
            .collect()
    }

    fn run(d: &mut Decoder, block: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        d.decode(&hex(block), &mut out).unwrap();
        pairs(&out)
    }

    fn p(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn integers_rfc_c1() {
        // C.1.1-C.1.3.
        assert_eq!(integer(&[0x0a], &mut 0, 5), Ok(10));
        assert_eq!(integer(&[0x1f, 0x9a, 0x0a], &mut 0, 5), Ok(1337));
        assert_eq!(integer(&[0x2a], &mut 0, 8), Ok(42));
        assert_eq!(
            integer(&[0x1f, 0x9a], &mut 0, 5),
            Err(HpackError::Truncated)
        );
        assert_eq!(
            integer(&[0x1f, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01], &mut 0, 5),
            Err(HpackError::Integer)
        );
        assert_eq!(
            integer(
                &[
                    0x1f, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01
                ],
                &mut 0,
                5
            ),
            Err(HpackError::Integer)
        );
    }

    /// RFC 7541 C.3 (requests without Huffman) and C.4 (with Huffman): three blocks sharing
    /// one table, with the table state the RFC lists after each.
    #[test]
    fn rfc_c3_c4_requests() {
        for blocks in [
            [
                "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
                "8286 84be 5808 6e6f 2d63 6163 6865",
                "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
            ],
            [
                "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
                "8286 84be 5886 a8eb 1064 9cbf",
                "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
            ],
        ] {
            let mut d = Decoder::new(Limits::default());
            assert_eq!(
                run(&mut d, blocks[0]),
                p(&[
                    (":method", "GET"),
                    (":scheme", "http"),
                    (":path", "/"),
                    (":authority", "www.example.com")
                ])
            );
            assert_eq!(d.size, 57);
            assert_eq!(
                run(&mut d, blocks[1]),
                p(&[
                    (":method", "GET"),
                    (":scheme", "http"),
                    (":path", "/"),
                    (":authority", "www.example.com"),
                    ("cache-control", "no-cache")
                ])
            );
            assert_eq!(d.size, 110);
            assert_eq!(
                run(&mut d, blocks[2]),
                p(&[
                    (":method", "GET"),
                    (":scheme", "https"),
                    (":path", "/index.html"),
                    (":authority", "www.example.com"),
                    ("custom-key", "custom-value")
                ])
            );
            assert_eq!(d.size, 164);
            assert_eq!(d.entries.len(), 3);
            assert!(d.synchronised());
        }
    }

    /// RFC 7541 C.5/C.6: responses with a 256-byte table, so eviction happens.
    #[test]
    fn rfc_c5_c6_responses_with_eviction() {
        for blocks in [
            [
                "4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
                "4803 3330 37c1 c0bf",
                "88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d 54c0 5a04 677a 6970 7738 666f 6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049 5541 5851 5745 4f49 553b 206d 6178 2d61 6765 3d33 3630 303b 2076 6572 7369 6f6e 3d31",
            ],
            [
                "4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6 2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3",
                "4883 640e ffc1 c0bf",
                "88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab 77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f 9587 3160 65c0 03ed 4ee5 b106 3d50 07",
            ],
        ] {
            let mut d = Decoder::new(Limits::default());
            d.set_protocol_max(256);
            assert_eq!(
                run(&mut d, blocks[0]),
                p(&[
                    (":status", "302"),
                    ("cache-control", "private"),
                    ("date", "Mon, 21 Oct 2013 20:13:21 GMT"),
                    ("location", "https://www.example.com")
                ])
            );
            assert_eq!(d.size, 222);
            assert_eq!(
                run(&mut d, blocks[1]),
                p(&[
                    (":status", "307"),
                    ("cache-control", "private"),
                    ("date", "Mon, 21 Oct 2013 20:13:21 GMT"),
                    ("location", "https://www.example.com")
                ])
            );
            assert_eq!(d.size, 222);
            let third = run(&mut d, blocks[2]);
            assert_eq!(third[0], (":status".into(), "200".into()));
            assert_eq!(third[2].0, "date");
            assert_eq!(third[4], ("content-encoding".into(), "gzip".into()));
            assert_eq!(
                third[5].1,
                "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1"
            );
            assert_eq!(d.size, 215);
            assert_eq!(d.entries.len(), 3);
        }
    }

    /// Join mode on the RFC's C.3 stream, joining before the second block: the entry inserted
    /// before the join (`:authority`) is unknown (slot 0), `cache-control` learnt by the
    /// second block is exact in the third, and slot numbering follows inserts.
    #[test]
    fn join_marks_unknown_and_learns() {
        let mut d = Decoder::joined(Limits::default());
        let mut out = Vec::new();
        let info = d
            .decode(&hex("8286 84be 5808 6e6f 2d63 6163 6865"), &mut out)
            .unwrap();
        assert_eq!(info.unknown, 1);
        assert_eq!(out[3].unknown_slot, Some(0));
        assert!(out[3].name.is_none() && out[3].value.is_none());
        assert_eq!(pairs(&out[4..]), p(&[("cache-control", "no-cache")]));
        out.clear();
        // Third block: index 0xbf = 63 is now :authority (slot 0, pushed up by one insert),
        // 0x40 inserts custom-key.
        let info = d
            .decode(
                &hex("8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65"),
                &mut out,
            )
            .unwrap();
        assert_eq!(info.unknown, 1);
        assert_eq!(out[3].unknown_slot, Some(0), "same pre-join entry");
        out.clear();
        // A block indexing both learnt entries (62 = custom-key, 63 = cache-control) is
        // complete; 64 is the pre-join :authority again.
        let info = d.decode(&hex("82 be bf c0"), &mut out).unwrap();
        assert_eq!(info.unknown, 1);
        assert_eq!(
            pairs(&out[..3]),
            p(&[
                (":method", "GET"),
                ("custom-key", "custom-value"),
                ("cache-control", "no-cache")
            ])
        );
        assert_eq!(out[3].unknown_slot, Some(0));
        assert!(!d.synchronised());
        assert_eq!(d.unknown_fields(), 3);
        // A size update to 0 then 4096 empties the table: known from here on.
        out.clear();
        d.decode(&hex("20 3fe1 1f 82"), &mut out).unwrap();
        assert!(d.synchronised());
        assert_eq!(d.decode(&hex("be"), &mut out), Err(HpackError::Index));
    }

    /// An insert whose name refers to an unknown entry keeps its value and says the name is
    /// the pre-join slot's.
    #[test]
    fn joined_literal_with_unknown_name() {
        let mut d = Decoder::joined(Limits::default());
        let mut out = Vec::new();
        // 0x7f 0x03 = literal with indexing, name index 63+3 = 66 (pre-join slot 4), value "v".
        d.decode(&hex("7f03 0176"), &mut out).unwrap();
        assert_eq!(out[0].name, None);
        assert_eq!(out[0].value.as_deref(), Some(&b"v"[..]));
        assert_eq!(out[0].unknown_slot, Some(4));
        out.clear();
        d.decode(&hex("be"), &mut out).unwrap();
        assert_eq!(out[0].value.as_deref(), Some(&b"v"[..]));
        assert_eq!(out[0].unknown_slot, Some(4));
        assert!(!out[0].is_complete());
        // Found by the `hpack` fuzz target: when a small maximum proves there is no pre-join
        // entry left, the table is still not fully known while an entry's name is not.
        let mut d = Decoder::joined(Limits::default());
        d.set_protocol_max(48);
        out.clear();
        d.decode(&hex("7f03 0176"), &mut out).unwrap();
        assert!(!d.unknown_tail && !d.synchronised());
        out.clear();
        d.decode(&hex("be"), &mut out).unwrap();
        assert_eq!((out[0].name.as_ref(), out[0].unknown_slot), (None, Some(4)));
    }

    #[test]
    fn errors_and_limits() {
        let mut d = Decoder::new(Limits::default());
        let mut out = Vec::new();
        assert_eq!(d.decode(&hex("80"), &mut out), Err(HpackError::Index));
        let mut d = Decoder::new(Limits::default());
        assert_eq!(d.decode(&hex("be"), &mut out), Err(HpackError::Index));
        assert!(!d.synchronised(), "an error desynchronises");
        let mut d = Decoder::new(Limits::default());
        assert_eq!(
            d.decode(&hex("82 20"), &mut out),
            Err(HpackError::SizeUpdate)
        );
        let mut d = Decoder::new(Limits::default());
        // Size update above SETTINGS (4096).
        assert_eq!(
            d.decode(&hex("3fe2 1f"), &mut out),
            Err(HpackError::SizeUpdate)
        );
        let mut d = Decoder::new(Limits::default());
        assert_eq!(
            d.decode(&hex("4003 6162"), &mut out),
            Err(HpackError::Truncated)
        );
        // Field limit: decoded (and inserted) but not kept.
        let mut d = Decoder::new(Limits {
            max_fields: 2,
            ..Limits::default()
        });
        out.clear();
        let info = d.decode(&hex("82 86 4001 6101 62 be"), &mut out).unwrap();
        assert_eq!((out.len(), info.dropped), (2, 2));
        assert_eq!(
            d.entries.len(),
            1,
            "the dropped insert still updated the table"
        );
    }
}
