//! Label vocabulary and the types a scan produces: [`Label`], [`DataClass`], [`Location`],
//! [`MaskShape`], [`Notes`], [`ValueHash`] and [`Finding`]. None of them can hold a raw value:
//! a finding carries a masked sample and keyed hashes only (R-SEN-1, R-OPS-3).
use std::fmt;

use serde::{Deserialize, Serialize};

/// JR/T 0171-2020 (Personal financial information protection technical specification) class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum DataClass {
    /// C1: other information (e.g. private IP addresses, gender).
    C1,
    /// C2: identity and account information (ID numbers, mobile, card numbers, names …).
    C2,
    /// C3: user authentication information (passwords, SMS codes, CVN, keys and tokens).
    C3,
}

macro_rules! labels {
    ($( $(#[$doc:meta])* $v:ident = $name:literal, $class:ident; )*) => {
        /// A kind of sensitive data (R-SEN-1). Serialised as its snake_case name.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        #[repr(u8)]
        pub enum Label { $( $(#[$doc])* $v, )* }

        impl Label {
            /// Every label, in declaration order.
            pub const ALL: &'static [Label] = &[$(Label::$v,)*];
            /// The snake_case name used in JSON, docs and metrics.
            pub fn name(self) -> &'static str {
                match self { $(Label::$v => $name,)* }
            }
            /// JR/T 0171 class of the data (unmasked).
            pub fn class(self) -> DataClass {
                match self { $(Label::$v => DataClass::$class,)* }
            }
            /// Parses a snake_case name.
            pub fn from_name(s: &str) -> Option<Label> {
                match s { $($name => Some(Label::$v),)* _ => None }
            }
        }
    };
}

labels! {
    /// PRC resident identity number, GB 11643-1999 (18 digits; 15-digit legacy with context).
    PrcId = "prc_id", C2;
    /// Unified social credit code of an organisation, GB 32100-2015.
    Uscc = "uscc", C1;
    /// Mainland China mobile number (13x–19x), with or without +86.
    Mobile = "mobile", C2;
    /// Mainland China landline number.
    Landline = "landline", C2;
    /// Bank card of a Chinese issuer or UnionPay (Luhn + IIN, ISO/IEC 7812).
    BankCard = "bank_card", C2;
    /// International payment card (Visa, Mastercard, Amex, JCB, Discover, Diners, Maestro, Mir).
    CreditCard = "credit_card", C2;
    /// International bank account number, ISO 13616.
    Iban = "iban", C2;
    /// US Social Security number.
    UsSsn = "us_ssn", C2;
    /// PRC passport number (context required).
    CnPassport = "cn_passport", C2;
    /// Mainland travel permit for Hong Kong/Macau or home-return permit (context required).
    HkMacauPermit = "hk_macau_permit", C2;
    /// E-mail address.
    Email = "email", C2;
    /// Globally routable IP address (v4 or v6; `ipv6` note for v6).
    IpPublic = "ip_public", C1;
    /// Private, loopback, link-local or documentation IP address.
    IpPrivate = "ip_private", C1;
    /// Password (by field name, incl. 密码/口令).
    Password = "password", C3;
    /// Card verification value CVV2/CVC2/CVN2 (by field name).
    CardCvv = "card_cvv", C3;
    /// SMS / one-time verification code (by field name).
    OtpCode = "otp_code", C3;
    /// JSON Web Token (RFC 7519) whose decoded header has `alg`.
    Jwt = "jwt", C3;
    /// Opaque bearer token in `Authorization: Bearer` (RFC 6750).
    BearerToken = "bearer_token", C3;
    /// HTTP Basic credentials (RFC 7617): user name and password.
    BasicAuth = "basic_auth", C3;
    /// API key, access token or client secret (by field/header name).
    ApiToken = "api_token", C3;
    /// AWS access key id.
    AwsAccessKey = "aws_access_key", C3;
    /// PEM private key block (RFC 7468).
    PrivateKey = "private_key", C3;
    /// Session identifier cookie or field.
    SessionId = "session_id", C3;
    /// Person name (Chinese surname list or key hint).
    PersonName = "person_name", C2;
    /// Postal address.
    Address = "address", C2;
    /// Birth date.
    BirthDate = "birth_date", C2;
    /// Gender.
    Gender = "gender", C1;
    /// Mainland China vehicle licence plate (GA 36-2018).
    LicensePlate = "license_plate", C2;
}

impl Label {
    /// Index in [`Label::ALL`] (< 64, used for bitsets).
    pub fn index(self) -> usize {
        self as usize
    }

    /// Labels whose raw presence in a response is a weak point (R-SEN-3): identity documents,
    /// account numbers and authentication data that a response should mask.
    pub fn must_be_masked_in_responses(self) -> bool {
        matches!(
            self,
            Label::PrcId
                | Label::BankCard
                | Label::CreditCard
                | Label::Iban
                | Label::UsSsn
                | Label::CnPassport
                | Label::HkMacauPermit
                | Label::Password
                | Label::CardCvv
                | Label::PrivateKey
                | Label::Mobile
        )
    }

    /// Credentials whose presence in a URL is a weak point.
    pub fn is_credential(self) -> bool {
        self.class() == DataClass::C3
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Request or response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Client to server.
    Request,
    /// Server to client.
    Response,
}

/// Where in the message a value was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Part {
    /// A URL path segment; `path` is its 0-based index, e.g. `[2]`.
    PathSegment,
    /// A query parameter; `path` is its name.
    QueryParam,
    /// A header (other than `Cookie`/`Set-Cookie`); `path` is its lower-cased name.
    Header,
    /// A cookie (`Cookie` or `Set-Cookie`); `path` is the cookie name.
    Cookie,
    /// A JSON body value; `path` like `$.data.list[*].mobile`.
    JsonPath,
    /// An `application/x-www-form-urlencoded` field; `path` is its name.
    FormField,
    /// An XML element or attribute; `path` like `/Envelope/Body/user/@id`.
    XmlElement,
    /// A `multipart/form-data` part; `path` is `part-name` or `part-name$.json.path`.
    MultipartPart,
    /// A CSV column; `path` is the header cell.
    CsvColumn,
    /// A protobuf string/bytes field of a gRPC message (issue 17); `path` is the field path,
    /// names from the descriptor sets where declared, numbers elsewhere (`owner`,
    /// `balance.currency`, `3.1`).
    ProtobufField,
    /// Unstructured text (plain text, HTML, unknown); `path` is empty.
    Text,
}

/// Where a finding was made.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Location {
    /// Request or response.
    pub direction: Direction,
    /// Which part of the message.
    pub part: Part,
    /// Field path within the part (see [`Part`]); never contains values, only names and indices.
    pub path: String,
}

/// Which character positions of a masked value are kept (visible), e.g. `138****5678` keeps
/// 0–2 and 7–10 of 11. Positions are counted on the value without separators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MaskShape {
    /// Length in characters (≤ 64).
    pub len: u8,
    /// Bit `i` set when position `i` is visible.
    pub kept: u64,
}

impl MaskShape {
    /// Number of visible positions.
    pub fn kept_count(&self) -> u32 {
        self.kept.count_ones()
    }

    /// Visible ranges as half-open `[start, end)` pairs.
    pub fn kept_ranges(&self) -> Vec<[u8; 2]> {
        let mut out = Vec::new();
        let mut i = 0u8;
        while i < self.len {
            if self.kept & (1u64 << i) != 0 {
                let s = i;
                while i < self.len && self.kept & (1u64 << i) != 0 {
                    i += 1;
                }
                out.push([s, i]);
            } else {
                i += 1;
            }
        }
        out
    }

    /// Pattern with `K` for kept and `*` for masked positions, e.g. `KKK****KKKK`.
    pub fn pattern(&self) -> String {
        (0..self.len)
            .map(|i| {
                if self.kept & (1u64 << i) != 0 {
                    'K'
                } else {
                    '*'
                }
            })
            .collect()
    }
}

#[derive(Serialize, Deserialize)]
struct MaskShapeRepr {
    len: u8,
    kept: Vec<[u8; 2]>,
}

impl Serialize for MaskShape {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        MaskShapeRepr {
            len: self.len,
            kept: self.kept_ranges(),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for MaskShape {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let r = MaskShapeRepr::deserialize(d)?;
        let len = r.len.min(64);
        let mut kept = 0u64;
        for [a, b] in r.kept {
            for i in a.min(len)..b.min(len) {
                kept |= 1u64 << i;
            }
        }
        Ok(MaskShape { len, kept })
    }
}

macro_rules! notes {
    ($( $(#[$doc:meta])* $c:ident = $bit:expr, $name:literal; )*) => {
        /// Qualifiers of a finding (a small bitset, serialised as a list of names).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
        pub struct Notes(pub u16);
        impl Notes {
            $( $(#[$doc])* pub const $c: Notes = Notes(1 << $bit); )*
            const NAMES: &'static [(u16, &'static str)] = &[$((1 << $bit, $name),)*];
        }
    };
}

notes! {
    /// JWT with `alg: none` (unsigned, RFC 7519 §6).
    JWT_ALG_NONE = 0, "jwt_alg_none";
    /// JWT without an `exp` claim (never expires).
    JWT_NO_EXP = 1, "jwt_no_exp";
    /// 15-digit first-generation resident ID.
    LEGACY_ID15 = 2, "legacy_id15";
    /// The password (or Basic credential) is on the common-password list.
    WEAK_PASSWORD = 3, "weak_password";
    /// IPv6 address.
    IPV6 = 4, "ipv6";
    /// Found by key name only (no value validation possible).
    BY_KEY = 5, "by_key";
    /// Value found inside a JSON document embedded in a string or form field.
    NESTED = 6, "nested";
}

impl Notes {
    /// No notes.
    pub const NONE: Notes = Notes(0);
    /// True when every bit of `other` is set.
    pub fn contains(self, other: Notes) -> bool {
        self.0 & other.0 == other.0 && other.0 != 0
    }
    /// Union.
    pub fn with(self, other: Notes) -> Notes {
        Notes(self.0 | other.0)
    }
}

impl Serialize for Notes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = s.serialize_seq(None)?;
        for (bit, name) in Notes::NAMES {
            if self.0 & bit != 0 {
                seq.serialize_element(name)?;
            }
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for Notes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let names = Vec::<String>::deserialize(d)?;
        let mut n = 0;
        for name in names {
            if let Some((bit, _)) = Notes::NAMES.iter().find(|(_, x)| *x == name) {
                n |= bit;
            }
        }
        Ok(Notes(n))
    }
}

/// 128-bit keyed hash (BLAKE3 keyed mode) of a normalised value, for correlation and
/// trace-back (R-THR-6) without storing the value. Serialised as 32 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ValueHash(pub [u8; 16]);

impl fmt::Debug for ValueHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for ValueHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl Serialize for ValueHash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ValueHash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let b = s.as_bytes();
        if b.len() != 32 {
            return Err(serde::de::Error::custom("value hash must be 32 hex digits"));
        }
        let mut out = [0u8; 16];
        for (i, o) in out.iter_mut().enumerate() {
            let hex = |c: u8| (c as char).to_digit(16);
            match (hex(b[2 * i]), hex(b[2 * i + 1])) {
                (Some(h), Some(l)) => *o = (h * 16 + l) as u8,
                _ => return Err(serde::de::Error::custom("value hash must be hex")),
            }
        }
        Ok(ValueHash(out))
    }
}

/// One kind of sensitive value at one location of one event, with how often it occurred.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// What was found.
    pub label: Label,
    /// Confidence 0–100 (pattern + validation + context), the highest over the occurrences.
    pub confidence: u8,
    /// Where.
    pub location: Location,
    /// Number of occurrences at this location (for `[*]` paths: records).
    pub count: u32,
    /// A masked rendering of the first occurrence (policy in `docs/sensitive-data.md`).
    pub masked_sample: String,
    /// Present when the value was already masked by the application: its kept positions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask: Option<MaskShape>,
    /// Qualifiers (`jwt_alg_none`, `weak_password`, …).
    #[serde(default, skip_serializing_if = "is_no_notes")]
    pub notes: Notes,
    /// Keyed hashes of the distinct occurrences (capped; never for passwords, CVV or SMS codes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hashes: Vec<ValueHash>,
}

fn is_no_notes(n: &Notes) -> bool {
    n.0 == 0
}

impl Finding {
    /// True when the value was already masked by the application.
    pub fn is_masked(&self) -> bool {
        self.mask.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_fit_a_u64_bitset_and_round_trip_names() {
        assert!(Label::ALL.len() <= 64);
        for l in Label::ALL {
            assert_eq!(Label::from_name(l.name()), Some(*l));
            assert_eq!(
                serde_json::to_string(l).unwrap(),
                format!("\"{}\"", l.name())
            );
        }
    }

    #[test]
    fn mask_shape_serialises_as_ranges() {
        let m = MaskShape {
            len: 11,
            kept: 0b111_1000_0111,
        };
        assert_eq!(m.pattern(), "KKK****KKKK");
        let j = serde_json::to_string(&m).unwrap();
        assert_eq!(j, r#"{"len":11,"kept":[[0,3],[7,11]]}"#);
        let back: MaskShape = serde_json::from_str(&j).unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn notes_and_hash_round_trip() {
        let n = Notes::JWT_ALG_NONE.with(Notes::JWT_NO_EXP);
        let j = serde_json::to_string(&n).unwrap();
        assert_eq!(j, r#"["jwt_alg_none","jwt_no_exp"]"#);
        assert_eq!(serde_json::from_str::<Notes>(&j).unwrap(), n);
        let h = ValueHash([0xab; 16]);
        let j = serde_json::to_string(&h).unwrap();
        assert_eq!(serde_json::from_str::<ValueHash>(&j).unwrap(), h);
    }
}
