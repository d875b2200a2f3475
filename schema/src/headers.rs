//! The header fields of a message ([`Headers`]), in one of two representations that read,
//! compare and encode the same (issue 21, R-CAP-7):
//!
//! - **owned**: a `Vec<Header>`, what a reader of events (the analyzer, tests) deserialises
//!   into and what code that builds or edits headers works on;
//! - **in a block**: the message's header block as one refcounted [`Bytes`] and a table of
//!   `(name, value)` ranges into it, which is how the sensor's HTTP/1 decoder keeps them. A
//!   message then costs two allocations (block and table) instead of two `String`s per field,
//!   and dropping the event frees both at once. Encoding ([`crate::encode_event_into`],
//!   MessagePack through `Serialize`) writes straight from the ranges.
//!
//! Every range is checked (inside the block, valid UTF-8) when the value is built, so reading
//! one needs no further check. Code written against `Vec<Header>` keeps working through
//! `Deref`/`DerefMut`: the first borrow as a `Vec` of a block-backed value makes (and keeps)
//! the owned copy, the first mutable borrow turns it into the owned representation. The
//! hot-path reads ([`Headers::fields`], [`Headers::get`], [`Headers::len`]) never do.

use std::ops::{Deref, DerefMut, Range};
use std::sync::OnceLock;

use bytes::Bytes;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Header;

/// Byte ranges of one field within a header block: name and value (`u32` offsets, so a field
/// costs 16 bytes of table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldSpan {
    name: (u32, u32),
    value: (u32, u32),
}

impl FieldSpan {
    /// The field whose name is `block[name]` and value `block[value]`; `None` when an offset
    /// does not fit in 32 bits (a header block is at most `max_header_bytes`, far less).
    pub fn new(name: Range<usize>, value: Range<usize>) -> Option<FieldSpan> {
        let r = |r: Range<usize>| Some((u32::try_from(r.start).ok()?, u32::try_from(r.end).ok()?));
        Some(FieldSpan {
            name: r(name)?,
            value: r(value)?,
        })
    }

    fn name(&self) -> Range<usize> {
        self.name.0 as usize..self.name.1 as usize
    }

    fn value(&self) -> Range<usize> {
        self.value.0 as usize..self.value.1 as usize
    }
}

/// A field range that does not name UTF-8 text inside the block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SpanError {
    /// The range reaches past the end of the block (or ends before it starts).
    #[error("header field {index} is outside its block")]
    OutOfBlock {
        /// Position of the field in the table.
        index: usize,
    },
    /// The bytes are not UTF-8 (obs-text in a value, RFC 9110 §5.5).
    #[error("header field {index} is not UTF-8")]
    NotUtf8 {
        /// Position of the field in the table.
        index: usize,
    },
}

/// Header fields kept as ranges of their message's header block.
struct InBlock {
    block: Bytes,
    fields: Vec<FieldSpan>,
    /// The owned copy, made on the first borrow as `Vec<Header>` (see the module docs).
    owned: OnceLock<Vec<Header>>,
}

impl InBlock {
    fn text(&self, r: Range<usize>) -> &str {
        // SAFETY: every range in `fields` was checked to lie inside `block` and to be UTF-8
        // when this value was built (`Headers::in_block`), and neither `block` (immutable
        // `Bytes`) nor `fields` (private, never changed afterwards) changes since.
        unsafe { std::str::from_utf8_unchecked(self.block.get_unchecked(r)) }
    }

    /// The owned copy, made now unless it was already.
    fn into_owned(mut self) -> Vec<Header> {
        self.owned.take().unwrap_or_else(|| self.materialise())
    }

    fn materialise(&self) -> Vec<Header> {
        self.fields
            .iter()
            .map(|f| Header {
                name: self.text(f.name()).to_owned(),
                value: self.text(f.value()).to_owned(),
            })
            .collect()
    }
}

/// The header fields of a request or response, in wire order (see the module docs for the
/// two representations). Serialises as a sequence of [`Header`] objects either way.
#[derive(Default)]
pub struct Headers {
    /// The fields when `in_block` is `None`; empty otherwise.
    owned: Vec<Header>,
    in_block: Option<InBlock>,
}

impl Headers {
    /// No fields.
    pub const fn new() -> Headers {
        Headers {
            owned: Vec::new(),
            in_block: None,
        }
    }

    /// Fields as ranges of `block`. Each range must lie inside the block and be UTF-8;
    /// otherwise the first one that is not is reported (the caller then builds owned fields,
    /// replacing invalid bytes, as [`Request::headers`](crate::Request::headers) documents).
    pub fn in_block(block: Bytes, fields: Vec<FieldSpan>) -> Result<Headers, SpanError> {
        let check = |index: usize, r: Range<usize>, ok: bool| {
            if ok {
                Ok(())
            } else if r.start <= r.end && r.end <= block.len() {
                Err(SpanError::NotUtf8 { index })
            } else {
                Err(SpanError::OutOfBlock { index })
            }
        };
        match std::str::from_utf8(&block) {
            // The usual case, one pass over the block (a check per field cost more than the
            // rest of building the event): a range of UTF-8 text is UTF-8 when it is inside
            // it and starts and ends on character boundaries.
            Ok(text) => {
                for (index, f) in fields.iter().enumerate() {
                    for r in [f.name(), f.value()] {
                        check(index, r.clone(), text.get(r).is_some())?;
                    }
                }
            }
            // Something in the block is not UTF-8 (a value, the target, the reason phrase):
            // each field on its own.
            Err(_) => {
                for (index, f) in fields.iter().enumerate() {
                    for r in [f.name(), f.value()] {
                        let ok = block
                            .get(r.clone())
                            .is_some_and(|b| std::str::from_utf8(b).is_ok());
                        check(index, r, ok)?;
                    }
                }
            }
        }
        Ok(Headers {
            owned: Vec::new(),
            in_block: Some(InBlock {
                block,
                fields,
                owned: OnceLock::new(),
            }),
        })
    }

    /// Number of fields.
    pub fn len(&self) -> usize {
        match &self.in_block {
            Some(b) => b.fields.len(),
            None => self.owned.len(),
        }
    }

    /// True without fields.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The fields as `(name, value)` in wire order, without making owned copies.
    pub fn fields(&self) -> Fields<'_> {
        Fields(match &self.in_block {
            Some(b) => FieldsInner::InBlock(b, b.fields.iter()),
            None => FieldsInner::Owned(self.owned.iter()),
        })
    }

    /// First value of the field named `name` (ASCII case-insensitive, RFC 9110 §5.1).
    pub fn get(&self, name: &str) -> Option<&str> {
        // One loop per representation, not a representation test per field.
        match &self.in_block {
            Some(b) => b
                .fields
                .iter()
                .find(|f| b.text(f.name()).eq_ignore_ascii_case(name))
                .map(|f| b.text(f.value())),
            None => self
                .owned
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .map(|h| h.value.as_str()),
        }
    }

    /// Bytes of heap this value keeps alive (block and table, or the owned strings), for
    /// memory accounting.
    pub fn heap_bytes(&self) -> usize {
        match &self.in_block {
            Some(b) => b.block.len() + b.fields.capacity() * std::mem::size_of::<FieldSpan>(),
            None => self
                .owned
                .iter()
                .map(|h| std::mem::size_of::<Header>() + h.name.len() + h.value.len())
                .sum(),
        }
    }

    /// True when the fields are ranges of a header block (not owned strings).
    pub fn is_in_block(&self) -> bool {
        self.in_block.is_some()
    }

    /// Into a `Vec<Header>` (moved when owned, copied when in a block).
    pub fn into_vec(self) -> Vec<Header> {
        match self.in_block {
            Some(b) => b.into_owned(),
            None => self.owned,
        }
    }
}

/// Iterator over `(name, value)` of [`Headers::fields`].
pub struct Fields<'a>(FieldsInner<'a>);

enum FieldsInner<'a> {
    Owned(std::slice::Iter<'a, Header>),
    InBlock(&'a InBlock, std::slice::Iter<'a, FieldSpan>),
}

impl<'a> Iterator for Fields<'a> {
    type Item = (&'a str, &'a str);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        match &mut self.0 {
            FieldsInner::Owned(it) => it.next().map(|h| (h.name.as_str(), h.value.as_str())),
            FieldsInner::InBlock(b, it) => it.next().map(|f| (b.text(f.name()), b.text(f.value()))),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match &self.0 {
            FieldsInner::Owned(it) => it.size_hint(),
            FieldsInner::InBlock(_, it) => it.size_hint(),
        }
    }
}

impl ExactSizeIterator for Fields<'_> {}

impl Deref for Headers {
    type Target = Vec<Header>;

    fn deref(&self) -> &Vec<Header> {
        match &self.in_block {
            Some(b) => b.owned.get_or_init(|| b.materialise()),
            None => &self.owned,
        }
    }
}

impl DerefMut for Headers {
    fn deref_mut(&mut self) -> &mut Vec<Header> {
        if let Some(b) = self.in_block.take() {
            self.owned = b.into_owned();
        }
        &mut self.owned
    }
}

impl Clone for Headers {
    fn clone(&self) -> Headers {
        Headers {
            owned: self.owned.clone(),
            in_block: self.in_block.as_ref().map(|b| InBlock {
                block: b.block.clone(),
                fields: b.fields.clone(),
                owned: OnceLock::new(),
            }),
        }
    }
}

impl PartialEq for Headers {
    fn eq(&self, other: &Headers) -> bool {
        self.len() == other.len() && self.fields().eq(other.fields())
    }
}

impl Eq for Headers {}

impl PartialEq<Vec<Header>> for Headers {
    fn eq(&self, other: &Vec<Header>) -> bool {
        self.len() == other.len()
            && self
                .fields()
                .zip(other)
                .all(|((n, v), h)| n == h.name && v == h.value)
    }
}

/// Formats like `Vec<Header>` (`[Header { name: .., value: .. }, ..]`).
impl std::fmt::Debug for Headers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.fields().map(|(name, value)| HeaderRef { name, value }))
            .finish()
    }
}

impl From<Vec<Header>> for Headers {
    fn from(owned: Vec<Header>) -> Headers {
        Headers {
            owned,
            in_block: None,
        }
    }
}

impl From<Headers> for Vec<Header> {
    fn from(h: Headers) -> Vec<Header> {
        h.into_vec()
    }
}

impl FromIterator<Header> for Headers {
    fn from_iter<I: IntoIterator<Item = Header>>(iter: I) -> Headers {
        Headers::from(iter.into_iter().collect::<Vec<_>>())
    }
}

impl<'a> IntoIterator for &'a Headers {
    type Item = &'a Header;
    type IntoIter = std::slice::Iter<'a, Header>;

    fn into_iter(self) -> Self::IntoIter {
        self.deref().iter()
    }
}

impl<'a> IntoIterator for &'a mut Headers {
    type Item = &'a mut Header;
    type IntoIter = std::slice::IterMut<'a, Header>;

    fn into_iter(self) -> Self::IntoIter {
        self.deref_mut().iter_mut()
    }
}

impl IntoIterator for Headers {
    type Item = Header;
    type IntoIter = std::vec::IntoIter<Header>;

    fn into_iter(self) -> Self::IntoIter {
        self.into_vec().into_iter()
    }
}

/// A borrowed [`Header`]: serialises and formats exactly as one.
#[derive(Serialize)]
#[serde(rename = "Header")]
struct HeaderRef<'a> {
    name: &'a str,
    value: &'a str,
}

impl std::fmt::Debug for HeaderRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Header")
            .field("name", &self.name)
            .field("value", &self.value)
            .finish()
    }
}

impl Serialize for Headers {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.fields().map(|(name, value)| HeaderRef { name, value }))
    }
}

impl<'de> Deserialize<'de> for Headers {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Headers, D::Error> {
        Vec::<Header>::deserialize(d).map(Headers::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owned(fields: &[(&str, &str)]) -> Vec<Header> {
        fields
            .iter()
            .map(|(n, v)| Header {
                name: (*n).into(),
                value: (*v).into(),
            })
            .collect()
    }

    /// `Host: h` and `X-A: 1` as ranges of one block.
    fn sample() -> Headers {
        let block = Bytes::from_static(b"GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n\r\n");
        Headers::in_block(
            block,
            vec![
                FieldSpan::new(16..20, 22..23).unwrap(),
                FieldSpan::new(25..28, 30..31).unwrap(),
            ],
        )
        .unwrap()
    }

    #[test]
    fn both_representations_read_compare_and_serialise_alike() {
        let shared = sample();
        let own = Headers::from(owned(&[("Host", "h"), ("X-A", "1")]));
        assert!(shared.is_in_block() && !own.is_in_block());
        assert_eq!(shared, own);
        assert_eq!(shared, owned(&[("Host", "h"), ("X-A", "1")]));
        assert_ne!(shared, Headers::from(owned(&[("Host", "h")])));
        assert_eq!(shared.get("host"), Some("h"));
        assert_eq!(shared.get("x-b"), None);
        assert_eq!(shared.len(), 2);
        assert_eq!(
            format!("{shared:?}"),
            format!("{:?}", owned(&[("Host", "h"), ("X-A", "1")]))
        );
        let json = serde_json::to_vec(&shared).unwrap();
        assert_eq!(json, serde_json::to_vec(&own).unwrap());
        assert_eq!(json, serde_json::to_vec(&*own).unwrap());
        assert_eq!(msgpack(&shared), msgpack(&own));
        assert_eq!(msgpack(&shared), msgpack(&*own));
        let back: Headers = serde_json::from_slice(&json).unwrap();
        assert!(!back.is_in_block());
        assert_eq!(back, shared);
    }

    fn msgpack<T: Serialize + ?Sized>(v: &T) -> Vec<u8> {
        let mut out = Vec::new();
        v.serialize(
            &mut rmp_serde::Serializer::new(&mut out)
                .with_struct_map()
                .with_human_readable(),
        )
        .unwrap();
        out
    }

    #[test]
    fn vec_access_copies_once_and_mutation_owns() {
        let mut h = sample();
        assert_eq!(h[1].value, "1");
        let first: *const Vec<Header> = &*h;
        assert_eq!(first, &*h as *const _, "the owned copy is made once");
        assert!(h.is_in_block());
        h.push(Header {
            name: "X-B".into(),
            value: "2".into(),
        });
        assert!(!h.is_in_block());
        assert_eq!(h.get("x-b"), Some("2"));
        assert_eq!(h.len(), 3);
        let names: Vec<&str> = (&h).into_iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["Host", "X-A", "X-B"]);
        assert_eq!(sample().into_vec(), owned(&[("Host", "h"), ("X-A", "1")]));
    }

    #[test]
    fn bad_ranges_are_refused() {
        let block = Bytes::from_static(b"A: \xff\r\n");
        assert_eq!(
            Headers::in_block(block.clone(), vec![FieldSpan::new(0..1, 3..4).unwrap()]).err(),
            Some(SpanError::NotUtf8 { index: 0 })
        );
        assert_eq!(
            Headers::in_block(block.clone(), vec![FieldSpan::new(0..1, 3..40).unwrap()]).err(),
            Some(SpanError::OutOfBlock { index: 0 })
        );
        #[allow(clippy::reversed_empty_ranges)]
        let backwards = FieldSpan::new(1..0, 0..0).unwrap();
        assert_eq!(
            Headers::in_block(block, vec![backwards]).err(),
            Some(SpanError::OutOfBlock { index: 0 })
        );
        assert!(FieldSpan::new(0..1, 0..(u32::MAX as usize + 1)).is_none());
        // A UTF-8 block, a range splitting a character.
        let block = Bytes::from("A: é\r\n");
        assert_eq!(
            Headers::in_block(block.clone(), vec![FieldSpan::new(0..1, 3..4).unwrap()]).err(),
            Some(SpanError::NotUtf8 { index: 0 })
        );
        assert!(Headers::in_block(block, vec![FieldSpan::new(0..1, 3..5).unwrap()]).is_ok());
        // Invalid bytes elsewhere in the block do not spoil a clean field.
        let block = Bytes::from_static(b"GET /\xff HTTP/1.1\r\nA: b\r\n");
        let h = Headers::in_block(block, vec![FieldSpan::new(17..18, 20..21).unwrap()]).unwrap();
        assert_eq!(h.get("a"), Some("b"));
    }
}
