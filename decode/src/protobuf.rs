//! Protocol Buffers wire format (<https://protobuf.dev/programming-guides/encoding/>) decoded
//! without a schema, for the inventory's shapes and the labeller (R-INV-2, issue 17).
//!
//! [`decode`] returns a tree borrowed from the message bytes: field numbers, wire types,
//! varints, fixed32/64, and length-delimited values with a best-effort guess whether they are
//! nested messages (they parse completely as one, and are not printable text). Work is bounded:
//! nesting depth and total fields are capped, and every failure is an error value, never a
//! panic. Packed repeated scalars look like bytes and are left as such.

/// Wire decoding limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Nesting depth at most (messages inside length-delimited fields and groups).
    pub max_depth: usize,
    /// Fields decoded at most, all levels together.
    pub max_fields: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_depth: 16,
            max_fields: 4096,
        }
    }
}

/// Why bytes are not a protobuf message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Ended inside a field.
    #[error("truncated")]
    Truncated,
    /// A varint longer than 10 bytes.
    #[error("varint too long")]
    Varint,
    /// Field number 0 or above 2^29 - 1.
    #[error("invalid field number")]
    FieldNumber,
    /// Wire type 6 or 7, or an end-group without its start.
    #[error("invalid wire type")]
    WireType,
    /// More fields than [`Limits::max_fields`].
    #[error("too many fields")]
    TooManyFields,
    /// Deeper than [`Limits::max_depth`] (groups only; deep length-delimited values are kept
    /// as bytes).
    #[error("too deep")]
    TooDeep,
}

/// A field's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    /// Wire type 0.
    Varint(u64),
    /// Wire type 1 (fixed64, sfixed64, double).
    Fixed64(u64),
    /// Wire type 5 (fixed32, sfixed32, float).
    Fixed32(u32),
    /// Wire type 2: string, bytes, nested message or packed scalars.
    Len {
        /// The bytes.
        raw: &'a [u8],
        /// Parsed as a nested message, when they parse completely as one and are not text.
        nested: Option<Vec<Field<'a>>>,
        /// Valid UTF-8 without control characters (other than tab, CR, LF).
        text: bool,
    },
    /// Wire types 3/4 (deprecated groups).
    Group(Vec<Field<'a>>),
}

/// One field.
#[derive(Debug, Clone, PartialEq)]
pub struct Field<'a> {
    /// Field number.
    pub number: u32,
    /// Value.
    pub value: Value<'a>,
}

/// Decodes one message.
pub fn decode(buf: &[u8], limits: Limits) -> Result<Vec<Field<'_>>, WireError> {
    let mut budget = limits.max_fields;
    let mut pos = 0;
    let fields = parse(buf, &mut pos, limits.max_depth, &mut budget, None)?;
    Ok(fields)
}

fn varint(b: &[u8], pos: &mut usize) -> Result<u64, WireError> {
    let mut v = 0u64;
    for i in 0..10 {
        let byte = *b.get(*pos).ok_or(WireError::Truncated)?;
        *pos += 1;
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(WireError::Varint)
}

fn is_text(b: &[u8]) -> bool {
    std::str::from_utf8(b).is_ok_and(|s| {
        s.chars()
            .all(|c| !c.is_control() || matches!(c, '\t' | '\n' | '\r'))
    })
}

/// Parses fields until the end of `b`, or until the end-group of `group`.
fn parse<'a>(
    b: &'a [u8],
    pos: &mut usize,
    depth: usize,
    budget: &mut usize,
    group: Option<u32>,
) -> Result<Vec<Field<'a>>, WireError> {
    let mut out = Vec::new();
    while *pos < b.len() {
        let key = varint(b, pos)?;
        let number = u32::try_from(key >> 3).map_err(|_| WireError::FieldNumber)?;
        if number == 0 || number > (1 << 29) - 1 {
            return Err(WireError::FieldNumber);
        }
        if *budget == 0 {
            return Err(WireError::TooManyFields);
        }
        *budget -= 1;
        let value = match key & 7 {
            0 => Value::Varint(varint(b, pos)?),
            1 => {
                let s = b.get(*pos..*pos + 8).ok_or(WireError::Truncated)?;
                *pos += 8;
                Value::Fixed64(u64::from_le_bytes(
                    s.try_into().map_err(|_| WireError::Truncated)?,
                ))
            }
            5 => {
                let s = b.get(*pos..*pos + 4).ok_or(WireError::Truncated)?;
                *pos += 4;
                Value::Fixed32(u32::from_le_bytes(
                    s.try_into().map_err(|_| WireError::Truncated)?,
                ))
            }
            2 => {
                let len = usize::try_from(varint(b, pos)?).map_err(|_| WireError::Truncated)?;
                let end = pos.checked_add(len).ok_or(WireError::Truncated)?;
                let raw = b.get(*pos..end).ok_or(WireError::Truncated)?;
                *pos = end;
                let text = is_text(raw);
                let nested = if depth > 0 && !text && !raw.is_empty() {
                    // A failed guess costs no budget: only a successful parse is kept.
                    let mut trial = *budget;
                    let mut p = 0;
                    match parse(raw, &mut p, depth - 1, &mut trial, None) {
                        Ok(f) => {
                            *budget = trial;
                            Some(f)
                        }
                        Err(_) => None,
                    }
                } else {
                    None
                };
                Value::Len { raw, nested, text }
            }
            3 => {
                if depth == 0 {
                    return Err(WireError::TooDeep);
                }
                Value::Group(parse(b, pos, depth - 1, budget, Some(number))?)
            }
            4 => {
                return if group == Some(number) {
                    Ok(out)
                } else {
                    Err(WireError::WireType)
                };
            }
            _ => return Err(WireError::WireType),
        };
        out.push(Field { number, value });
    }
    if group.is_some() {
        return Err(WireError::Truncated);
    }
    Ok(out)
}

/// Wire-level kind of a field, for shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// Varint.
    Varint,
    /// Fixed 64-bit.
    Fixed64,
    /// Fixed 32-bit.
    Fixed32,
    /// Printable UTF-8 string.
    String,
    /// Bytes that are neither text nor a message (or packed scalars).
    Bytes,
    /// Nested message.
    Message,
    /// Group.
    Group,
}

/// Calls `visit(path, field)` for every field, depth first, the path being field numbers
/// joined by `.` (e.g. `3.1` is field 1 of the message in field 3).
pub fn walk<'a>(fields: &[Field<'a>], visit: &mut impl FnMut(&str, &Field<'a>)) {
    fn go<'a>(fields: &[Field<'a>], prefix: &str, visit: &mut impl FnMut(&str, &Field<'a>)) {
        for f in fields {
            let path = if prefix.is_empty() {
                f.number.to_string()
            } else {
                format!("{prefix}.{}", f.number)
            };
            visit(&path, f);
            match &f.value {
                Value::Len {
                    nested: Some(n), ..
                }
                | Value::Group(n) => go(n, &path, visit),
                _ => {}
            }
        }
    }
    go(fields, "", visit);
}

/// The wire-level kind of a field.
pub fn kind(f: &Field<'_>) -> Kind {
    match &f.value {
        Value::Varint(_) => Kind::Varint,
        Value::Fixed64(_) => Kind::Fixed64,
        Value::Fixed32(_) => Kind::Fixed32,
        Value::Len {
            nested: Some(_), ..
        } => Kind::Message,
        Value::Len { text: true, .. } => Kind::String,
        Value::Len { .. } => Kind::Bytes,
        Value::Group(_) => Kind::Group,
    }
}

/// The message's shape: `(path, kind)` for every field (see [`walk`]), sorted and
/// de-duplicated (repeated fields appear once), for the inventory (R-INV-2).
pub fn shape(fields: &[Field<'_>]) -> Vec<(String, Kind)> {
    let mut out = Vec::new();
    walk(fields, &mut |path, f| out.push((path.to_owned(), kind(f))));
    out.sort();
    out.dedup();
    out
}

/// Every text field with its path, in wire order: what the labeller scans for sensitive data.
pub fn strings<'a>(fields: &[Field<'a>]) -> Vec<(String, &'a str)> {
    let mut out = Vec::new();
    walk(fields, &mut |path, f| {
        if let Value::Len {
            raw,
            text: true,
            nested: None,
        } = f.value
            && let Ok(s) = std::str::from_utf8(raw)
        {
            out.push((path.to_owned(), s));
        }
    });
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn scalars_strings_and_nested() {
        // Account{account_id:"acc-1", balance: Money{currency:"EUR", units:1250, nanos:5},
        // tags:["a"], rate: 0.0125}
        let mut money = vec![0x0a, 3];
        money.extend_from_slice(b"EUR");
        money.extend_from_slice(&[0x10, 0xe2, 0x09, 0x1d, 5, 0, 0, 0]);
        let mut m = vec![0x0a, 5];
        m.extend_from_slice(b"acc-1");
        m.extend_from_slice(&[0x12, 1, b'A']);
        m.push(0x1a);
        m.push(money.len() as u8);
        m.extend_from_slice(&money);
        m.extend_from_slice(&[0x22, 1, b'a', 0x29]);
        m.extend_from_slice(&0.0125f64.to_le_bytes());
        let f = decode(&m, Limits::default()).unwrap();
        assert_eq!(f.len(), 5);
        assert!(
            matches!(f[0].value, Value::Len { text: true, nested: None, raw } if raw == b"acc-1")
        );
        let Value::Len {
            nested: Some(n), ..
        } = &f[2].value
        else {
            panic!("{:?}", f[2])
        };
        assert_eq!(n[1].value, Value::Varint(1250));
        assert_eq!(n[2].value, Value::Fixed32(5));
        assert_eq!(f[4].value, Value::Fixed64(0.0125f64.to_bits()));
        assert_eq!(shape(&f), account_shape());
        assert_eq!(
            strings(&f),
            vec![
                ("1".to_owned(), "acc-1"),
                ("2".to_owned(), "A"),
                ("3.1".to_owned(), "EUR"),
                ("4".to_owned(), "a")
            ]
        );
    }

    /// The shape of `bank.v1.Account` (tests/fixtures/h2/bank.proto).
    pub(crate) fn account_shape() -> Vec<(String, Kind)> {
        [
            ("1", Kind::String),
            ("2", Kind::String),
            ("3", Kind::Message),
            ("3.1", Kind::String),
            ("3.2", Kind::Varint),
            ("3.3", Kind::Fixed32),
            ("4", Kind::String),
            ("5", Kind::Fixed64),
        ]
        .into_iter()
        .map(|(p, k)| (p.to_owned(), k))
        .collect()
    }

    #[test]
    fn invalid_and_bounded() {
        assert_eq!(
            decode(&[0x08], Limits::default()),
            Err(WireError::Truncated)
        );
        assert_eq!(
            decode(&[0x00, 0x01], Limits::default()),
            Err(WireError::FieldNumber)
        );
        assert_eq!(decode(&[0x0e], Limits::default()), Err(WireError::WireType));
        assert_eq!(decode(&[0x0c], Limits::default()), Err(WireError::WireType));
        assert_eq!(
            decode(
                &[
                    0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01
                ],
                Limits::default()
            ),
            Err(WireError::Varint)
        );
        // Groups: 1 start, field 2 varint, 1 end.
        let g = decode(&[0x0b, 0x10, 0x01, 0x0c], Limits::default()).unwrap();
        assert_eq!(
            g[0].value,
            Value::Group(vec![Field {
                number: 2,
                value: Value::Varint(1)
            }])
        );
        // Deep nesting: kept as bytes past the depth limit, no recursion blow-up.
        let mut m = vec![0x08, 0x01];
        for _ in 0..100 {
            let mut outer = vec![0x0a];
            let mut len = m.len();
            loop {
                let b = (len & 0x7f) as u8;
                len >>= 7;
                outer.push(if len > 0 { b | 0x80 } else { b });
                if len == 0 {
                    break;
                }
            }
            outer.extend_from_slice(&m);
            m = outer;
        }
        let f = decode(
            &m,
            Limits {
                max_depth: 4,
                max_fields: 4096,
            },
        )
        .unwrap();
        assert_eq!(shape(&f).len(), 5);
        assert_eq!(
            decode(
                &[0x08, 0x01].repeat(10),
                Limits {
                    max_depth: 4,
                    max_fields: 5
                }
            ),
            Err(WireError::TooManyFields)
        );
    }
}
