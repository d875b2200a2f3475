//! Value shapes: what kind of value a path segment, parameter or field holds, without keeping
//! the value (R-INV-1, R-INV-2, R-OPS-3).
//!
//! [`SegmentShape`] classifies one path segment for templating: strongly typed identifiers
//! (integer, UUID, long hex, ObjectId, date, email, phone) become parameters at once; opaque
//! tokens (base64, mixed alphanumerics, percent-encoded or non-ASCII text) after a few
//! distinct values; words only on strong statistical evidence; versions never.
//! [`ValueType`] is the inferred type of a parameter or field value, and [`mask`] renders an
//! example *shape* (`aaaaa`, `9999-99-99`) that shows format, never content.

use serde::{Deserialize, Serialize};

/// The shape of one path segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SegmentShape {
    /// Decimal digits only.
    Int,
    /// A decimal number with a fraction or sign.
    Number,
    /// RFC 4122 textual UUID.
    Uuid,
    /// 24 hex digits (MongoDB ObjectId).
    ObjectId,
    /// At least 16 hex digits.
    Hex,
    /// An ISO-8601 date or date-time.
    Date,
    /// `local@domain.tld`.
    Email,
    /// `+` and 7–15 digits, optionally separated.
    Phone,
    /// `v1`, `v2.1`: an API version, never a parameter.
    Version,
    /// A base64/base64url or JWT-like token, or a long mixed alphanumeric string.
    Token,
    /// Letters and digits mixed (`a1b2c3`), not a word with a short numeric suffix.
    Alnum,
    /// Percent-encoded or non-ASCII text (e.g. CJK names).
    Text,
    /// Letters (and `-`, `_`, `.`), possibly with a short numeric suffix (`oauth2`): looks
    /// like a route name.
    Word,
    /// Anything else (punctuation mixes such as `200,404`).
    Other,
}

/// How readily a segment of a shape becomes a parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Strength {
    /// Never a parameter (versions).
    Never,
    /// A route name unless statistics say otherwise.
    Word,
    /// A value after a few distinct samples.
    Opaque,
    /// A value at once.
    Strong,
}

impl SegmentShape {
    /// Classifies a raw (still percent-encoded) path segment.
    pub fn of(segment: &str) -> SegmentShape {
        let b = segment.as_bytes();
        if b.is_empty() {
            return SegmentShape::Other;
        }
        if b.iter().all(u8::is_ascii_digit) {
            return SegmentShape::Int;
        }
        if is_number(b) {
            return SegmentShape::Number;
        }
        if is_uuid(b) {
            return SegmentShape::Uuid;
        }
        let all_hex = b.iter().all(u8::is_ascii_hexdigit);
        if all_hex && b.len() == 24 {
            return SegmentShape::ObjectId;
        }
        if all_hex && b.len() >= 16 {
            return SegmentShape::Hex;
        }
        if is_date(b) {
            return SegmentShape::Date;
        }
        if b.contains(&b'%') || !segment.is_ascii() {
            let decoded = percent_decode(segment);
            if decoded.contains('@') && is_email(decoded.as_bytes()) {
                return SegmentShape::Email;
            }
            return SegmentShape::Text;
        }
        if b.contains(&b'@') && is_email(b) {
            return SegmentShape::Email;
        }
        if is_phone(b) {
            return SegmentShape::Phone;
        }
        if is_version(b) {
            return SegmentShape::Version;
        }
        let letters = b.iter().filter(|c| c.is_ascii_alphabetic()).count();
        let digits = b.iter().filter(|c| c.is_ascii_digit()).count();
        let word_punct = |c: &u8| matches!(c, b'-' | b'_' | b'.' | b'~');
        if letters > 0 && b.iter().all(|c| c.is_ascii_alphanumeric() || word_punct(c)) {
            // A word with a short numeric suffix (`oauth2`, `sha256`, `utf8`) is a name.
            let trailing_digits = b.iter().rev().take_while(|c| c.is_ascii_digit()).count();
            let body = &b[..b.len() - trailing_digits];
            let body_is_word = !body.is_empty()
                && body
                    .iter()
                    .all(|c| c.is_ascii_alphabetic() || word_punct(c));
            if digits == 0 || (body_is_word && trailing_digits <= 3 && !has_case_noise(body)) {
                if b.len() <= 40 && !has_case_noise(b) {
                    return SegmentShape::Word;
                }
                return SegmentShape::Token;
            }
            if is_token_like(b) {
                return SegmentShape::Token;
            }
            return SegmentShape::Alnum;
        }
        if b.len() >= 16
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || b"+/=_-.".contains(c))
        {
            return SegmentShape::Token;
        }
        SegmentShape::Other
    }

    /// How readily this shape becomes a parameter.
    pub fn strength(self) -> Strength {
        match self {
            SegmentShape::Int
            | SegmentShape::Number
            | SegmentShape::Uuid
            | SegmentShape::ObjectId
            | SegmentShape::Hex
            | SegmentShape::Date
            | SegmentShape::Email
            | SegmentShape::Phone => Strength::Strong,
            SegmentShape::Token
            | SegmentShape::Alnum
            | SegmentShape::Text
            | SegmentShape::Other => Strength::Opaque,
            SegmentShape::Word => Strength::Word,
            SegmentShape::Version => Strength::Never,
        }
    }

    /// Stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            SegmentShape::Int => "int",
            SegmentShape::Number => "number",
            SegmentShape::Uuid => "uuid",
            SegmentShape::ObjectId => "object_id",
            SegmentShape::Hex => "hex",
            SegmentShape::Date => "date",
            SegmentShape::Email => "email",
            SegmentShape::Phone => "phone",
            SegmentShape::Version => "version",
            SegmentShape::Token => "token",
            SegmentShape::Alnum => "alnum",
            SegmentShape::Text => "text",
            SegmentShape::Word => "word",
            SegmentShape::Other => "other",
        }
    }

    /// Bit of this shape in a [`ShapeSet`].
    pub fn bit(self) -> u16 {
        1 << (self as u16)
    }

    /// Every shape, in declaration order.
    pub const ALL: [SegmentShape; 14] = [
        SegmentShape::Int,
        SegmentShape::Number,
        SegmentShape::Uuid,
        SegmentShape::ObjectId,
        SegmentShape::Hex,
        SegmentShape::Date,
        SegmentShape::Email,
        SegmentShape::Phone,
        SegmentShape::Version,
        SegmentShape::Token,
        SegmentShape::Alnum,
        SegmentShape::Text,
        SegmentShape::Word,
        SegmentShape::Other,
    ];
}

/// A set of [`SegmentShape`]s as a bit mask.
pub type ShapeSet = u16;

/// Names of the shapes in a set.
pub fn shape_names(set: ShapeSet) -> Vec<&'static str> {
    SegmentShape::ALL
        .iter()
        .filter(|s| set & s.bit() != 0)
        .map(|s| s.as_str())
        .collect()
}

/// Upper-case letters mixed into lower-case ones in a way words do not have
/// (`aB3xQ`): `Word`, `word`, `WORD`, `camelCase` and `PascalCase` are words.
fn has_case_noise(b: &[u8]) -> bool {
    let lower = b.iter().filter(|c| c.is_ascii_lowercase()).count();
    let upper = b.iter().filter(|c| c.is_ascii_uppercase()).count();
    if upper == 0 || lower == 0 {
        return false;
    }
    // Lower-to-upper changes: camelCase has one per word part (of three or more letters),
    // random tokens one every other letter.
    let mut changes = 0;
    let mut prev_lower = false;
    for c in b.iter().filter(|c| c.is_ascii_alphabetic()) {
        if prev_lower && c.is_ascii_uppercase() {
            changes += 1;
        }
        prev_lower = c.is_ascii_lowercase();
    }
    changes * 3 > b.len()
}

fn is_token_like(b: &[u8]) -> bool {
    if b.len() < 8 {
        return false;
    }
    let digits = b.iter().filter(|c| c.is_ascii_digit()).count();
    let letters = b.iter().filter(|c| c.is_ascii_alphabetic()).count();
    digits >= 2 && letters >= 2
}

fn is_number(b: &[u8]) -> bool {
    let s = b.strip_prefix(b"-").unwrap_or(b);
    let mut parts = s.splitn(2, |&c| c == b'.');
    let int = parts.next().unwrap_or_default();
    let frac = parts.next();
    !int.is_empty()
        && int.iter().all(u8::is_ascii_digit)
        && frac.is_none_or(|f| !f.is_empty() && f.iter().all(u8::is_ascii_digit))
        && (frac.is_some() || s.len() != b.len())
}

fn is_uuid(b: &[u8]) -> bool {
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

fn is_date(b: &[u8]) -> bool {
    // YYYY-MM-DD, optionally followed by T or space and a time.
    if b.len() < 10 {
        return false;
    }
    let d = |i: usize| b[i].is_ascii_digit();
    let date = d(0)
        && d(1)
        && d(2)
        && d(3)
        && b[4] == b'-'
        && d(5)
        && d(6)
        && b[7] == b'-'
        && d(8)
        && d(9);
    date && (b.len() == 10 || matches!(b[10], b'T' | b't' | b' ' | b'_'))
}

fn is_email(b: &[u8]) -> bool {
    let Some(at) = b.iter().position(|&c| c == b'@') else {
        return false;
    };
    let (local, domain) = (&b[..at], &b[at + 1..]);
    !local.is_empty()
        && domain.contains(&b'.')
        && !domain.starts_with(b".")
        && !domain.ends_with(b".")
        && domain
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-'))
}

fn is_phone(b: &[u8]) -> bool {
    let Some(rest) = b.strip_prefix(b"+") else {
        return false;
    };
    let digits = rest.iter().filter(|c| c.is_ascii_digit()).count();
    (7..=15).contains(&digits)
        && rest
            .iter()
            .all(|c| c.is_ascii_digit() || matches!(c, b'-' | b' ' | b'.'))
}

fn is_version(b: &[u8]) -> bool {
    let Some(rest) = b.strip_prefix(b"v").or_else(|| b.strip_prefix(b"V")) else {
        return false;
    };
    !rest.is_empty()
        && rest[0].is_ascii_digit()
        && rest.len() <= 8
        && rest.iter().all(|c| c.is_ascii_digit() || *c == b'.')
}

/// Percent-decodes `s` (RFC 3986 §2.1; invalid escapes are kept as they are); invalid UTF-8
/// is replaced.
pub fn percent_decode(s: &str) -> String {
    apitap_labels::facts::percent_decode(s, false).into_owned()
}

/// The inferred type of a parameter or field value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueType {
    /// JSON `null` or an empty value.
    Null,
    /// `true`/`false`.
    Boolean,
    /// A whole number.
    Integer,
    /// A number with a fraction or exponent.
    Number,
    /// Text.
    String,
    /// A JSON object.
    Object,
    /// A JSON array.
    Array,
}

impl ValueType {
    /// Bit of this type in a [`TypeSet`].
    pub fn bit(self) -> u8 {
        1 << (self as u8)
    }

    /// JSON Schema / OpenAPI type name.
    pub fn schema_name(self) -> &'static str {
        match self {
            ValueType::Null => "null",
            ValueType::Boolean => "boolean",
            ValueType::Integer => "integer",
            ValueType::Number => "number",
            ValueType::String => "string",
            ValueType::Object => "object",
            ValueType::Array => "array",
        }
    }

    /// Every type, in declaration order.
    pub const ALL: [ValueType; 7] = [
        ValueType::Null,
        ValueType::Boolean,
        ValueType::Integer,
        ValueType::Number,
        ValueType::String,
        ValueType::Object,
        ValueType::Array,
    ];

    /// Infers the type of a textual value (query, form field, header, XML text).
    pub fn of_text(s: &str) -> ValueType {
        let b = s.as_bytes();
        if b.is_empty() {
            return ValueType::Null;
        }
        if b.iter().all(u8::is_ascii_digit) && b.len() <= 18 {
            return ValueType::Integer;
        }
        if matches!(s, "true" | "false") {
            return ValueType::Boolean;
        }
        if is_number(b) {
            if b.contains(&b'.') {
                return ValueType::Number;
            }
            return ValueType::Integer;
        }
        ValueType::String
    }
}

/// A set of [`ValueType`]s as a bit mask.
pub type TypeSet = u8;

/// Names of the types in a set, for JSON Schema `type`.
pub fn type_names(set: TypeSet) -> Vec<&'static str> {
    let mut names: Vec<&'static str> = ValueType::ALL
        .iter()
        .filter(|t| set & t.bit() != 0)
        .map(|t| t.schema_name())
        .collect();
    // integer ⊂ number in JSON Schema: keep only `number` when both appear.
    if names.contains(&"integer") && names.contains(&"number") {
        names.retain(|n| *n != "integer");
    }
    names
}

/// The string format of a textual value, when it has a well-known one (JSON Schema
/// `format`), derived from its segment shape.
pub fn string_format(s: &str) -> Option<&'static str> {
    match SegmentShape::of(s) {
        SegmentShape::Uuid => Some("uuid"),
        SegmentShape::Email => Some("email"),
        SegmentShape::Date if s.len() == 10 => Some("date"),
        SegmentShape::Date => Some("date-time"),
        _ => None,
    }
}

/// Longest example shape kept, in characters.
pub const MAX_MASK_CHARS: usize = 24;

/// The shape of a value with its content removed: ASCII upper-case letters become `A`,
/// lower-case `a`, digits `9`, other non-ASCII characters `U`, ASCII punctuation is kept;
/// longer than [`MAX_MASK_CHARS`] characters it is cut and ends in `…`. Email-, UUID- and
/// JWT-shaped values are named rather than masked.
pub fn mask(value: &str) -> String {
    match SegmentShape::of(value) {
        SegmentShape::Uuid => return "<uuid>".into(),
        SegmentShape::Email => return "<email>".into(),
        SegmentShape::ObjectId => return "<object_id>".into(),
        _ => {}
    }
    if value.len() > 20 && value.matches('.').count() == 2 && value.starts_with("eyJ") {
        return "<jwt>".into();
    }
    let mut out = String::new();
    for (i, c) in value.chars().enumerate() {
        if i == MAX_MASK_CHARS {
            out.push('…');
            break;
        }
        out.push(match c {
            'A'..='Z' => 'A',
            'a'..='z' => 'a',
            '0'..='9' => '9',
            c if c.is_ascii_punctuation() || c == ' ' => c,
            c if c.is_ascii() => '?',
            _ => 'U',
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_segments() {
        use SegmentShape::*;
        let cases = [
            ("1024", Int),
            ("-3", Number),
            ("1.5", Number),
            ("3f2504e0-4f89-11d3-9a0c-0305e82c3301", Uuid),
            ("507f1f77bcf86cd799439011", ObjectId),
            ("deadbeefcafebabe12", Hex),
            ("2024-01-05", Date),
            ("2024-01-05T10:00:00Z", Date),
            ("alice@example.com", Email),
            ("alice%40example.com", Email),
            ("+8613800138000", Phone),
            ("v1", Version),
            ("v2.1", Version),
            ("users", Word),
            ("me", Word),
            ("_debug", Word),
            ("auth-int", Word),
            ("robots.txt", Word),
            ("oauth2", Word),
            ("sha256", Word),
            ("SHA-256", Word),
            ("getUserById", Word),
            ("a1b2c3", Alnum),
            ("x9Kq2LmZ0p", Token),
            ("SGVsbG8gd29ybGQ", Token),
            ("%E5%8C%97%E4%BA%AC", Text),
            ("北京", Text),
            ("200,404", Other),
        ];
        for (s, want) in cases {
            assert_eq!(SegmentShape::of(s), want, "{s}");
        }
    }

    #[test]
    fn strengths() {
        assert_eq!(SegmentShape::Int.strength(), Strength::Strong);
        assert_eq!(SegmentShape::Token.strength(), Strength::Opaque);
        assert_eq!(SegmentShape::Word.strength(), Strength::Word);
        assert_eq!(SegmentShape::Version.strength(), Strength::Never);
    }

    #[test]
    fn masks_hide_content() {
        assert_eq!(mask("alice"), "aaaaa");
        assert_eq!(mask("2024-01-05"), "9999-99-99");
        assert_eq!(mask("Bob Smith"), "Aaa Aaaaa");
        assert_eq!(mask("alice@example.com"), "<email>");
        assert_eq!(mask("北京"), "UU");
        assert_eq!(mask(&"x".repeat(40)).chars().count(), MAX_MASK_CHARS + 1);
    }

    #[test]
    fn text_types() {
        assert_eq!(ValueType::of_text("12"), ValueType::Integer);
        assert_eq!(ValueType::of_text("1.5"), ValueType::Number);
        assert_eq!(ValueType::of_text("true"), ValueType::Boolean);
        assert_eq!(ValueType::of_text("x"), ValueType::String);
        assert_eq!(ValueType::of_text(""), ValueType::Null);
        assert_eq!(
            type_names(ValueType::Integer.bit() | ValueType::Number.bit()),
            vec!["number"]
        );
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b"), "a b");
        assert_eq!(percent_decode("%E5%8C%97"), "北");
        assert_eq!(percent_decode("bad%zz%"), "bad%zz%");
    }
}
