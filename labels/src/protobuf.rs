//! gRPC bodies as protobuf messages, for the labeller and the inventory (R-SEN-1, R-INV-2,
//! issue 17): one walk over every field of every length-prefixed message of a captured gRPC
//! body ([`walk_body`]), with the field's path, wire kind and, when the operator gave
//! descriptor sets ([`ProtoSchema`], `protoc --descriptor_set_out --include_imports`), its
//! name and declared type.
//!
//! - Framing: `decode::grpc::messages` (PROTOCOL-HTTP2 "Length-Prefixed-Message"); a message
//!   cut by the capture cap is counted `truncated`, not decoded.
//! - Compression: a message with the compressed flag is inflated only when `grpc-encoding` is
//!   `gzip` or `deflate` (PROTOCOL-HTTP2 "Message-Encoding"), at most [`MAX_INFLATED_BYTES`]
//!   per message with `decode::content`'s bomb check; any other encoding is counted
//!   `compressed_skipped`, a failed inflation `invalid`.
//! - Wire decoding: `decode::protobuf` (schema-less, bounded depth and field count). Bodies
//!   are hostile: nothing here panics, every message that is not decoded is counted.
//! - Descriptors are trusted configuration: decoded with `prost-types` (the
//!   `google.protobuf.FileDescriptorSet` message of `descriptor.proto`). With a descriptor a
//!   length-delimited field is read as its declared type (a `string` is never taken for a
//!   nested message, a nested message that happens to be printable is still parsed); fields
//!   the descriptor does not know keep their number in the path.
//!
//! Paths: field names (or numbers) joined by `.`, e.g. `balance.currency` or `3.1`; the
//! number path is always given too. Repeated fields keep one path (no index).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub use apitap_decode::protobuf::Kind;
use apitap_decode::protobuf::{self as wire, Field, Limits, Value};
use prost::Message as _;

/// Inflated bytes per compressed message at most.
pub const MAX_INFLATED_BYTES: usize = 256 * 1024;

/// Declared messages read again as messages (their bytes looked like text) per body at most.
const MAX_REPARSES: u32 = 256;

/// Longest path kept; deeper segments are dropped (the field is still visited).
const MAX_PATH: usize = 256;

/// Why a descriptor-set file was refused.
#[derive(Debug, thiserror::Error)]
pub enum DescriptorError {
    /// The file could not be read.
    #[error("cannot read descriptor set {}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Not a serialised `google.protobuf.FileDescriptorSet`.
    #[error("{} is not a FileDescriptorSet (protoc --descriptor_set_out): {reason}", .path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// One declared field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldInfo {
    /// Field name, e.g. `account_id`.
    pub name: String,
    /// Declared type: a scalar (`string`, `int64`, `fixed32`, …), `message bank.v1.Money` or
    /// `enum bank.v1.Status`.
    pub type_name: String,
    /// `repeated`.
    pub repeated: bool,
    /// Full name of the message type, when the field is a message (or group).
    message: Option<String>,
    /// Declared `string` or `bytes`: never a nested message.
    opaque: bool,
}

#[derive(Debug, Clone, Default)]
struct MessageInfo {
    fields: HashMap<u32, FieldInfo>,
}

/// Message and method declarations from descriptor sets.
#[derive(Debug, Clone, Default)]
pub struct ProtoSchema {
    /// Full name (`bank.v1.Account`, no leading dot) → fields.
    messages: HashMap<String, MessageInfo>,
    /// `service/method` (full service name) → (input type, output type).
    methods: HashMap<String, (String, String)>,
}

fn scalar_name(t: prost_types::field_descriptor_proto::Type) -> &'static str {
    use prost_types::field_descriptor_proto::Type as T;
    match t {
        T::Double => "double",
        T::Float => "float",
        T::Int64 => "int64",
        T::Uint64 => "uint64",
        T::Int32 => "int32",
        T::Fixed64 => "fixed64",
        T::Fixed32 => "fixed32",
        T::Bool => "bool",
        T::String => "string",
        T::Group => "group",
        T::Message => "message",
        T::Bytes => "bytes",
        T::Uint32 => "uint32",
        T::Enum => "enum",
        T::Sfixed32 => "sfixed32",
        T::Sfixed64 => "sfixed64",
        T::Sint32 => "sint32",
        T::Sint64 => "sint64",
    }
}

impl ProtoSchema {
    /// Reads and merges the descriptor sets at `paths`.
    pub fn load<P: AsRef<Path>>(paths: &[P]) -> Result<ProtoSchema, DescriptorError> {
        let mut schema = ProtoSchema::default();
        for p in paths {
            let path = p.as_ref();
            let bytes = std::fs::read(path).map_err(|source| DescriptorError::Read {
                path: path.to_owned(),
                source,
            })?;
            schema
                .add(&bytes)
                .map_err(|reason| DescriptorError::Invalid {
                    path: path.to_owned(),
                    reason,
                })?;
        }
        Ok(schema)
    }

    /// Adds one serialised `FileDescriptorSet`.
    pub fn add(&mut self, bytes: &[u8]) -> Result<(), String> {
        let set = prost_types::FileDescriptorSet::decode(bytes).map_err(|e| e.to_string())?;
        if set.file.is_empty() {
            return Err("no file descriptor in the set".into());
        }
        let before = self.messages.len();
        for file in &set.file {
            let package = file.package();
            let scope = if package.is_empty() {
                String::new()
            } else {
                format!("{package}.")
            };
            for m in &file.message_type {
                self.add_message(&scope, m);
            }
            for s in &file.service {
                let service = format!("{scope}{}", s.name());
                for m in &s.method {
                    let strip = |t: &str| t.trim_start_matches('.').to_owned();
                    self.methods.insert(
                        format!("{service}/{}", m.name()),
                        (strip(m.input_type()), strip(m.output_type())),
                    );
                }
            }
        }
        if self.messages.len() == before && set.file.iter().all(|f| f.service.is_empty()) {
            return Err("the set declares no message and no service".into());
        }
        Ok(())
    }

    fn add_message(&mut self, scope: &str, m: &prost_types::DescriptorProto) {
        use prost_types::field_descriptor_proto::{Label, Type};
        let full = format!("{scope}{}", m.name());
        let mut info = MessageInfo::default();
        for f in &m.field {
            let Ok(number) = u32::try_from(f.number()) else {
                continue;
            };
            let t = f.r#type();
            let named = f.type_name().trim_start_matches('.').to_owned();
            let (type_name, message) = match t {
                Type::Message | Type::Group => (format!("message {named}"), Some(named)),
                Type::Enum => (format!("enum {named}"), None),
                other => (scalar_name(other).to_owned(), None),
            };
            info.fields.insert(
                number,
                FieldInfo {
                    name: f.name().to_owned(),
                    type_name,
                    repeated: f.label() == Label::Repeated,
                    message,
                    opaque: matches!(t, Type::String | Type::Bytes),
                },
            );
        }
        self.messages.insert(full.clone(), info);
        let inner = format!("{full}.");
        for n in &m.nested_type {
            self.add_message(&inner, n);
        }
    }

    /// Messages declared.
    pub fn message_count(&self) -> usize {
        self.messages.len()
    }

    /// Methods declared.
    pub fn method_count(&self) -> usize {
        self.methods.len()
    }

    /// The (request, response) message types of `service/method` (full service name).
    pub fn method(&self, service: &str, method: &str) -> Option<(&str, &str)> {
        // One lookup key without allocating per call would need a two-level map; methods
        // are few and this runs once per gRPC body.
        self.methods
            .get(&format!("{service}/{method}"))
            .map(|(i, o)| (i.as_str(), o.as_str()))
    }
}

/// One field of a walked message.
#[derive(Debug, Clone, Copy)]
pub struct ProtoField<'a> {
    /// Path with names where the descriptor knows them, numbers elsewhere (`balance.currency`,
    /// `3.1`, `balance.7`).
    pub path: &'a str,
    /// The same path in field numbers (`3.1`).
    pub numbers: &'a str,
    /// Wire-level kind (for a declared field, as read per its declaration).
    pub kind: Kind,
    /// The declaration, when a descriptor set declares the field.
    pub declared: Option<&'a FieldInfo>,
    /// The value, when the field is printable text (string, or bytes that are text).
    pub text: Option<&'a str>,
    /// Offset of `text` in the walked body, when the message was not inflated (for masking
    /// in place).
    pub offset: Option<usize>,
    /// The field occurred more than once in its message (or is declared repeated).
    pub repeated: bool,
    /// The field's name (last path segment) when declared.
    pub name: Option<&'a str>,
}

/// What [`walk_body`] did with a body's messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WalkStats {
    /// Length-prefixed messages in the captured body.
    pub messages: u32,
    /// Of those, decoded and walked.
    pub decoded: u32,
    /// Cut by the capture cap (not decoded).
    pub truncated: u32,
    /// Compressed with an encoding this build does not inflate.
    pub compressed_skipped: u32,
    /// Not a protobuf message (wire error), or a corrupt or over-cap compressed message.
    pub invalid: u32,
    /// Captured bytes of the messages not decoded (truncated, skipped, invalid).
    pub skipped_bytes: u64,
    /// A message was decoded without a known type although a descriptor set was given (the
    /// method is not declared in it).
    pub untyped: u32,
}

/// Walks every field of every message of the gRPC `body` (the DATA of one direction, with
/// the 5-byte prefixes), typed as `root` (full message name) when `schema` declares it.
/// `encoding` is the direction's `grpc-encoding`.
pub fn walk_body(
    body: &[u8],
    encoding: Option<&str>,
    root: Option<&str>,
    schema: Option<&ProtoSchema>,
    visit: &mut dyn FnMut(&ProtoField<'_>),
) -> WalkStats {
    let mut stats = WalkStats::default();
    let mut w = Walker {
        schema,
        visit,
        named: String::new(),
        numbers: String::new(),
        base: body.as_ptr() as usize,
        base_len: body.len(),
        inflated: false,
        reparses: 0,
    };
    for m in apitap_decode::grpc::messages(body) {
        if m.trailer {
            continue;
        }
        stats.messages += 1;
        let skipped = m.data.len() as u64;
        if !m.complete {
            stats.truncated += 1;
            stats.skipped_bytes += skipped;
            continue;
        }
        let inflated;
        let data: &[u8] = if m.compressed {
            let coding = encoding.unwrap_or("identity").trim();
            if !(coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("deflate")) {
                stats.compressed_skipped += 1;
                stats.skipped_bytes += skipped;
                continue;
            }
            match apitap_decode::content::decode(coding, m.data, MAX_INFLATED_BYTES, true) {
                Ok(d) if d.complete && !d.bomb => {
                    inflated = d.data;
                    &inflated
                }
                _ => {
                    stats.invalid += 1;
                    stats.skipped_bytes += skipped;
                    continue;
                }
            }
        } else {
            m.data
        };
        let Ok(fields) = wire::decode(data, Limits::default()) else {
            stats.invalid += 1;
            stats.skipped_bytes += skipped;
            continue;
        };
        stats.decoded += 1;
        let typed = root.filter(|r| schema.is_some_and(|s| s.messages.contains_key(*r)));
        if schema.is_some() && typed.is_none() {
            stats.untyped += 1;
        }
        w.inflated = m.compressed;
        w.named.clear();
        w.numbers.clear();
        w.message(&fields, typed, Limits::default().max_depth);
    }
    stats
}

struct Walker<'v, 's> {
    schema: Option<&'s ProtoSchema>,
    visit: &'v mut dyn FnMut(&ProtoField<'_>),
    named: String,
    numbers: String,
    base: usize,
    base_len: usize,
    inflated: bool,
    reparses: u32,
}

fn push_seg(path: &mut String, seg: &str) {
    if path.len() + seg.len() + 1 > MAX_PATH {
        return;
    }
    if !path.is_empty() {
        path.push('.');
    }
    path.push_str(seg);
}

impl<'s> Walker<'_, 's> {
    fn message(&mut self, fields: &[Field<'_>], ty: Option<&str>, depth: usize) {
        // Occurrences per field number (sorted numbers; no quadratic scan on hostile input).
        let mut numbers: Vec<u32> = fields.iter().map(|f| f.number).collect();
        numbers.sort_unstable();
        let occurs = |n: u32| {
            let lo = numbers.partition_point(|&x| x < n);
            let hi = numbers.partition_point(|&x| x <= n);
            hi - lo
        };
        // The message's declarations, looked up once per message rather than per field.
        let info = self.schema.zip(ty).and_then(|(s, t)| s.messages.get(t));
        for f in fields {
            let declared = info.and_then(|i| i.fields.get(&f.number));
            let (nl, ml) = (self.named.len(), self.numbers.len());
            let num = itoa(f.number);
            push_seg(&mut self.numbers, num.as_str());
            match declared {
                Some(d) => push_seg(&mut self.named, &d.name),
                None => push_seg(&mut self.named, num.as_str()),
            }
            let reparsed;
            let (kind, nested): (Kind, Option<&[Field<'_>]>) = match (&f.value, declared) {
                (Value::Len { text, .. }, Some(d)) if d.opaque => {
                    (if *text { Kind::String } else { Kind::Bytes }, None)
                }
                (
                    Value::Len {
                        nested: Some(n), ..
                    },
                    _,
                ) => (Kind::Message, Some(n.as_slice())),
                (Value::Len { raw, .. }, Some(d))
                    if d.message.is_some() && depth > 0 && self.reparses < MAX_REPARSES =>
                {
                    self.reparses += 1;
                    let limits = Limits {
                        max_depth: depth - 1,
                        ..Limits::default()
                    };
                    match wire::decode(raw, limits) {
                        Ok(n) => {
                            reparsed = n;
                            (Kind::Message, Some(reparsed.as_slice()))
                        }
                        Err(_) => (wire::kind(f), None),
                    }
                }
                (Value::Group(n), _) => (Kind::Group, Some(n.as_slice())),
                _ => (wire::kind(f), None),
            };
            let (text, offset) = match &f.value {
                Value::Len {
                    raw, text: true, ..
                } if nested.is_none() => {
                    let off = (raw.as_ptr() as usize).wrapping_sub(self.base);
                    let offset =
                        (!self.inflated && off + raw.len() <= self.base_len).then_some(off);
                    (std::str::from_utf8(raw).ok(), offset)
                }
                _ => (None, None),
            };
            (self.visit)(&ProtoField {
                path: &self.named,
                numbers: &self.numbers,
                kind,
                declared,
                text,
                offset,
                repeated: occurs(f.number) > 1 || declared.is_some_and(|d| d.repeated),
                name: declared.map(|d| d.name.as_str()),
            });
            if let Some(n) = nested
                && depth > 0
            {
                let inner = declared.and_then(|d| d.message.as_deref());
                self.message(n, inner, depth - 1);
            }
            self.named.truncate(nl);
            self.numbers.truncate(ml);
        }
    }
}

/// A field number as text without allocating.
fn itoa(n: u32) -> Itoa {
    let mut buf = [0u8; 10];
    let mut i = buf.len();
    let mut v = n;
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    Itoa { buf, start: i }
}

struct Itoa {
    buf: [u8; 10],
    start: usize,
}

impl Itoa {
    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[self.start..]).unwrap_or("0")
    }
}

/// Labels the text fields of a gRPC body (R-SEN-1): each string (or printable bytes) field
/// is one value at its field path, with hints from its declared name; offsets map back to
/// the body unless the message was inflated. Field paths go into the body's shape. Returns
/// the captured bytes of messages not decoded (counted unscanned).
pub(crate) fn scan(
    cx: &mut crate::scan::Ctx<'_>,
    b: &[u8],
    grpc: crate::event::GrpcBody<'_>,
    bc: crate::body::BodyCtx,
) -> u64 {
    use crate::hints::KeyHints;
    use crate::scan::RawMap;
    let stats = walk_body(b, grpc.encoding, grpc.root, grpc.schema, &mut |f| {
        cx.field(bc.dir, f.path.as_bytes());
        let Some(text) = f.text else { return };
        let hints = f.name.map_or(KeyHints::NONE, |n| cx.hints(n.as_bytes()));
        let raw = match (bc.map, f.offset) {
            (RawMap::Direct(o), Some(off)) => RawMap::Direct(o + off),
            _ => RawMap::None,
        };
        let w = bc.at(f.path.as_bytes(), hints, raw);
        cx.scan_value(text.as_bytes(), &w);
    });
    stats.skipped_bytes
}

/// Stable snake_case name of a wire kind (`varint`, `fixed64`, `fixed32`, `string`, `bytes`,
/// `message`, `group`).
pub fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::Varint => "varint",
        Kind::Fixed64 => "fixed64",
        Kind::Fixed32 => "fixed32",
        Kind::String => "string",
        Kind::Bytes => "bytes",
        Kind::Message => "message",
        Kind::Group => "group",
    }
}

/// The (request, response) message types of the event's gRPC call in `schema`.
pub fn call_types<'s>(
    schema: Option<&'s ProtoSchema>,
    grpc: Option<&apitap_schema::Grpc>,
) -> (Option<&'s str>, Option<&'s str>) {
    match (schema, grpc) {
        (Some(s), Some(g)) => s
            .method(&g.service, &g.method)
            .map_or((None, None), |(i, o)| (Some(i), Some(o))),
        _ => (None, None),
    }
}

/// Is this content type a gRPC body of protobuf messages (`application/grpc`,
/// `application/grpc+proto`, `application/grpc-web`, `application/grpc-web+proto`, and
/// gRPC-Web text `application/grpc-web-text[+proto]`, whose base64
/// [`crate::facts::body_bytes`] removes)? Not `+json`.
pub fn is_protobuf_grpc(content_type: &[u8]) -> bool {
    let ct = content_type
        .split(|&b| b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    let lower = ct.to_ascii_lowercase();
    matches!(
        lower.as_slice(),
        b"application/grpc"
            | b"application/grpc+proto"
            | b"application/grpc-web"
            | b"application/grpc-web+proto"
            | b"application/grpc-web-text"
            | b"application/grpc-web-text+proto"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `bank.v1` of tests/fixtures/h2/bank.proto as a descriptor set, built by hand.
    pub(crate) fn bank_schema() -> ProtoSchema {
        use prost_types::field_descriptor_proto::{Label, Type};
        use prost_types::{
            DescriptorProto, FieldDescriptorProto, FileDescriptorProto, FileDescriptorSet,
            MethodDescriptorProto, ServiceDescriptorProto,
        };
        let field =
            |name: &str, n: i32, t: Type, tn: Option<&str>, rep: bool| FieldDescriptorProto {
                name: Some(name.into()),
                number: Some(n),
                r#type: Some(t as i32),
                type_name: tn.map(str::to_owned),
                label: Some(if rep {
                    Label::Repeated
                } else {
                    Label::Optional
                } as i32),
                ..Default::default()
            };
        let msg = |name: &str, fields: Vec<FieldDescriptorProto>| DescriptorProto {
            name: Some(name.into()),
            field: fields,
            ..Default::default()
        };
        let set = FileDescriptorSet {
            file: vec![FileDescriptorProto {
                name: Some("bank.proto".into()),
                package: Some("bank.v1".into()),
                message_type: vec![
                    msg(
                        "Money",
                        vec![
                            field("currency", 1, Type::String, None, false),
                            field("units", 2, Type::Int64, None, false),
                            field("nanos", 3, Type::Fixed32, None, false),
                        ],
                    ),
                    msg(
                        "Account",
                        vec![
                            field("account_id", 1, Type::String, None, false),
                            field("owner", 2, Type::String, None, false),
                            field("balance", 3, Type::Message, Some(".bank.v1.Money"), false),
                            field("tags", 4, Type::String, None, true),
                        ],
                    ),
                    msg(
                        "GetAccountRequest",
                        vec![field("account_id", 1, Type::String, None, false)],
                    ),
                ],
                service: vec![ServiceDescriptorProto {
                    name: Some("Accounts".into()),
                    method: vec![MethodDescriptorProto {
                        name: Some("GetAccount".into()),
                        input_type: Some(".bank.v1.GetAccountRequest".into()),
                        output_type: Some(".bank.v1.Account".into()),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let mut s = ProtoSchema::default();
        s.add(&set.encode_to_vec()).unwrap();
        s
    }

    fn frame(msg: &[u8], compressed: bool) -> Vec<u8> {
        let mut out = vec![u8::from(compressed)];
        out.extend_from_slice(&(msg.len() as u32).to_be_bytes());
        out.extend_from_slice(msg);
        out
    }

    /// Account{account_id:"acc-1", owner:"Zhang Wei", balance:{currency:"CNY", units:7},
    /// tags:["a","b"], 9: "x"} (field 9 undeclared).
    fn account() -> Vec<u8> {
        let mut m = vec![0x0a, 5];
        m.extend_from_slice(b"acc-1");
        m.extend_from_slice(&[0x12, 9]);
        m.extend_from_slice(b"Zhang Wei");
        m.extend_from_slice(&[0x1a, 7, 0x0a, 3]);
        m.extend_from_slice(b"CNY");
        m.extend_from_slice(&[0x10, 7]);
        m.extend_from_slice(&[0x22, 1, b'a', 0x22, 1, b'b', 0x4a, 1, b'x']);
        m
    }

    /// (path, number path, kind, repeated, text) of each visited field.
    type Visited = Vec<(String, String, Kind, bool, Option<String>)>;

    fn collect(
        body: &[u8],
        enc: Option<&str>,
        root: Option<&str>,
        s: Option<&ProtoSchema>,
    ) -> (Visited, WalkStats) {
        let mut out = Vec::new();
        let st = walk_body(body, enc, root, s, &mut |f| {
            out.push((
                f.path.to_owned(),
                f.numbers.to_owned(),
                f.kind,
                f.repeated,
                f.text.map(str::to_owned),
            ));
            if let (Some(off), Some(t)) = (f.offset, f.text) {
                assert_eq!(&body[off..off + t.len()], t.as_bytes());
            }
        });
        (out, st)
    }

    #[test]
    fn numbers_without_and_names_with_a_descriptor() {
        let body = frame(&account(), false);
        let (plain, st) = collect(&body, None, None, None);
        let paths: Vec<(&str, Kind, bool)> = plain
            .iter()
            .map(|(p, _, k, r, _)| (p.as_str(), *k, *r))
            .collect();
        assert_eq!(
            paths,
            vec![
                ("1", Kind::String, false),
                ("2", Kind::String, false),
                ("3", Kind::Message, false),
                ("3.1", Kind::String, false),
                ("3.2", Kind::Varint, false),
                ("4", Kind::String, true),
                ("4", Kind::String, true),
                ("9", Kind::String, false),
            ]
        );
        assert_eq!(
            st,
            WalkStats {
                messages: 1,
                decoded: 1,
                ..WalkStats::default()
            }
        );
        let s = bank_schema();
        let (named, st) = collect(&body, None, Some("bank.v1.Account"), Some(&s));
        let paths: Vec<(&str, &str)> = named
            .iter()
            .map(|(p, n, ..)| (p.as_str(), n.as_str()))
            .collect();
        assert_eq!(
            paths,
            vec![
                ("account_id", "1"),
                ("owner", "2"),
                ("balance", "3"),
                ("balance.currency", "3.1"),
                ("balance.units", "3.2"),
                ("tags", "4"),
                ("tags", "4"),
                ("9", "9"),
            ]
        );
        assert_eq!(named[1].4.as_deref(), Some("Zhang Wei"));
        assert_eq!(st.untyped, 0);
        // A method the set does not declare: numbers, counted.
        let (_, st) = collect(&body, None, None, Some(&s));
        assert_eq!(st.untyped, 1);
        assert_eq!(
            s.method("bank.v1.Accounts", "GetAccount"),
            Some(("bank.v1.GetAccountRequest", "bank.v1.Account"))
        );
    }

    /// A declared nested message whose bytes are printable is still parsed; a declared
    /// string whose bytes parse as a message stays a string.
    #[test]
    fn declarations_decide_nested_or_text() {
        // balance = Money{units: 0x41 ('A')...}: bytes 0x10 0x41 are `\x10A` (control: not
        // text); use currency "0123" as field 1 → 0x0a 0x04 "0123": `\n\x040123` has a control
        // byte too, so build a printable one: field 6 (wire 2) key 0x32 '2', len 0x20 ' '.
        let inner: Vec<u8> = [&[0x32u8, 0x20][..], &[b'a'; 32][..]].concat();
        assert!(std::str::from_utf8(&inner).is_ok());
        let mut m = vec![0x1a, inner.len() as u8];
        m.extend_from_slice(&inner);
        // account_id holding bytes that parse as a message: 0x08 0x01.
        m.extend_from_slice(&[0x0a, 2, 0x08, 0x01]);
        let body = frame(&m, false);
        let (plain, _) = collect(&body, None, None, None);
        assert_eq!(plain[0].2, Kind::String, "printable: text without a schema");
        assert_eq!(
            plain[1].2,
            Kind::Message,
            "parses: a message without a schema"
        );
        let s = bank_schema();
        let (named, _) = collect(&body, None, Some("bank.v1.Account"), Some(&s));
        assert_eq!(named[0].0, "balance");
        assert_eq!(named[0].2, Kind::Message);
        assert_eq!(named[1].0, "balance.6");
        assert_eq!(named[2].0, "account_id");
        assert_eq!(named[2].2, Kind::Bytes);
        assert_eq!(named.len(), 3);
    }

    #[test]
    fn compression_truncation_and_garbage_are_counted() {
        use std::io::Write as _;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&account()).unwrap();
        let z = gz.finish().unwrap();
        let mut body = frame(&z, true);
        let (f, st) = collect(&body, Some("gzip"), None, None);
        assert_eq!(st.decoded, 1);
        assert_eq!(f[1].4.as_deref(), Some("Zhang Wei"));
        let (_, st) = collect(&body, Some("snappy"), None, None);
        assert_eq!(st.compressed_skipped, 1);
        let (_, st) = collect(&body, Some("deflate"), None, None);
        assert_eq!(st.invalid, 1, "gzip bytes are not a deflate stream");
        body.extend_from_slice(&frame(&[0x0e, 0x01], false));
        body.extend_from_slice(&frame(&account(), false)[..10]);
        let (_, st) = collect(&body, Some("gzip"), None, None);
        assert_eq!(
            st,
            WalkStats {
                messages: 3,
                decoded: 1,
                truncated: 1,
                invalid: 1,
                // 2 invalid bytes, 5 captured of the cut message.
                skipped_bytes: 7,
                ..WalkStats::default()
            }
        );
        // Not a FileDescriptorSet.
        assert!(ProtoSchema::default().add(b"\xff\xff").is_err());
        assert!(ProtoSchema::default().add(b"").is_err());
        assert!(is_protobuf_grpc(b"application/grpc+proto; charset=x"));
        assert!(is_protobuf_grpc(b"application/grpc-web-text"));
        assert!(!is_protobuf_grpc(b"application/grpc+json"));
    }

    /// Arbitrary bytes never panic, and every message is accounted for.
    #[test]
    fn hostile_bodies_are_bounded() {
        let s = bank_schema();
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for n in 0..2000usize {
            let mut b = Vec::new();
            for _ in 0..(n % 97) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                b.push(seed as u8);
            }
            let mut body = frame(&b, false);
            body.extend_from_slice(&frame(&account()[..n % 30], n % 3 == 0));
            let st = walk_body(
                &body,
                Some("gzip"),
                Some("bank.v1.Account"),
                Some(&s),
                &mut |_| {},
            );
            assert_eq!(
                st.messages,
                st.decoded + st.truncated + st.invalid + st.compressed_skipped
            );
        }
    }

    /// A valid PRC resident id (GB 11643 check digit) from its first 17 digits.
    fn prc_id(first17: &str) -> String {
        const W: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
        let sum: u32 = first17
            .bytes()
            .zip(W)
            .map(|(b, w)| u32::from(b - b'0') * w)
            .sum();
        format!("{first17}{}", b"10X98765432"[(sum % 11) as usize] as char)
    }

    /// Labels on protobuf string fields, at their paths: numbers without a descriptor,
    /// names with one; no value in the output; spans map to the body.
    #[test]
    fn labels_on_string_fields() {
        use crate::{Direction, HashKey, Label, Labeller, Part, Scanner};
        let id = prc_id("11010519491231002");
        // Account{account_id:"acc-1", owner:<id>, balance:{currency:"CNY"}, tags:[mobile]}
        let mut m = vec![0x0a, 5];
        m.extend_from_slice(b"acc-1");
        m.extend_from_slice(&[0x12, id.len() as u8]);
        m.extend_from_slice(id.as_bytes());
        m.extend_from_slice(&[0x1a, 5, 0x0a, 3]);
        m.extend_from_slice(b"CNY");
        m.extend_from_slice(&[0x22, 11]);
        m.extend_from_slice(b"13812345678");
        let body = frame(&m, false);
        let mut ev =
            apitap_schema::test_support::EventBuilder::post("/bank.v1.Accounts/GetAccount")
                .header("content-type", "application/grpc")
                .body_bytes(frame(b"\x0a\x05acc-1", false))
                .response_header("content-type", "application/grpc")
                .response_body_bytes(&body)
                .build();
        ev.grpc = Some(apitap_schema::Grpc {
            service: "bank.v1.Accounts".into(),
            method: "GetAccount".into(),
            ..apitap_schema::Grpc::default()
        });
        let lab = std::sync::Arc::new(
            Labeller::new(HashKey::random().unwrap(), crate::LabelConfig::default()).unwrap(),
        );
        let mut sc = Scanner::new(lab);
        let at = |l: &crate::EventLabels, label: Label| {
            l.findings
                .iter()
                .filter(|f| f.label == label)
                .map(|f| {
                    assert_eq!(f.location.part, Part::ProtobufField);
                    assert_eq!(f.location.direction, Direction::Response);
                    f.location.path.clone()
                })
                .collect::<Vec<_>>()
        };
        let plain = sc.label_event(&ev);
        assert_eq!(at(&plain, Label::PrcId), vec!["2"], "{:?}", plain.findings);
        assert_eq!(at(&plain, Label::Mobile), vec!["4"], "{:?}", plain.findings);
        let shape = plain.response.as_ref().unwrap();
        assert_eq!(shape.kind, crate::BodyKind::Protobuf);
        assert_eq!(shape.fields, vec!["1", "2", "3", "3.1", "4"]);
        let text = serde_json::to_string(&plain).unwrap();
        assert!(
            !text.contains(&id) && !text.contains("13812345678"),
            "{text}"
        );
        let schema = std::sync::Arc::new(bank_schema());
        let facts = crate::facts::EventFacts::new(&ev, 1 << 20).with_protobuf(Some(schema));
        let named = sc.label_facts(&facts);
        assert_eq!(at(&named, Label::PrcId), vec!["owner"]);
        assert_eq!(at(&named, Label::Mobile), vec!["tags"]);
        assert_eq!(
            named.response.as_ref().unwrap().fields,
            vec!["account_id", "owner", "balance", "balance.currency", "tags"]
        );
        assert_eq!(named.request.fields, vec!["account_id"]);
        // Masking in place (payload mode labels) keeps the message decodable.
        let (_, spans) = sc.run(&crate::facts::EventFacts::new(&ev, 1 << 20), true);
        assert!(spans.len() >= 2, "{spans:?}");
    }

    /// The events of a capture dump (`tests/fixtures/h2/<name>.h2dump`) through the sensor's
    /// own session decoder.
    fn captured(name: &str) -> Vec<apitap_schema::ApiEvent> {
        use apitap_decode::session::{ConnMeta, Session, SessionConfig};
        let path = format!(
            "{}/../tests/fixtures/h2/{name}.h2dump",
            env!("CARGO_MANIFEST_DIR")
        );
        let b = std::fs::read(path).unwrap();
        let meta = ConnMeta {
            sensor: std::sync::Arc::new(apitap_schema::SensorInfo {
                id: "s".into(),
                host: "h".into(),
                node: None,
            }),
            client: apitap_schema::Endpoint {
                ip: "10.0.0.2".parse().unwrap(),
                port: 5555,
            },
            server: apitap_schema::Endpoint {
                ip: "10.0.0.1".parse().unwrap(),
                port: 80,
            },
            first_seen_ns: 1,
            tls: false,
        };
        let mut s = Session::new(meta, std::sync::Arc::new(SessionConfig::default()), false);
        let (mut st, mut out) = (apitap_decode::stats::Stats::default(), Vec::new());
        for (i, r) in apitap_decode::h2::dump::records(&b).enumerate() {
            let (side, bytes) = r.unwrap();
            s.data(side, i as u64 + 1, bytes, None, &mut st, &mut out);
        }
        s.close(1000, false, &mut st, &mut out);
        out
    }

    /// gRPC-Web text from a real peer (sonora 0.2.3, `grpcweb_text`: ListTransfers answered
    /// in base64, each frame padded on its own): the base64 is removed before the message
    /// walk, so the shape and the labels are those of the same call in binary
    /// (`grpcweb_binary`, sonora's own client): Transfer's id, amount{currency, units},
    /// to_iban (an IBAN), ts.
    #[test]
    fn grpc_web_text_bodies_are_walked_like_binary() {
        use crate::{HashKey, Label, Labeller, Scanner};
        let lab = std::sync::Arc::new(
            Labeller::new(HashKey::random().unwrap(), crate::LabelConfig::default()).unwrap(),
        );
        let mut sc = Scanner::new(lab);
        let text = captured("grpcweb_text");
        assert_eq!(text.len(), 1);
        assert!(text[0].grpc.as_ref().unwrap().text);
        let binary = captured("grpcweb_binary");
        let frozen = binary
            .iter()
            .find(|e| {
                e.grpc
                    .as_ref()
                    .is_some_and(|g| g.method == "ListTransfers" && g.status == Some(9))
            })
            .unwrap();
        let mut shapes = Vec::new();
        for ev in [&text[0], frozen] {
            let l = sc.label_event(ev);
            let resp = l.response.as_ref().unwrap();
            assert_eq!(resp.kind, crate::BodyKind::Protobuf);
            assert_eq!(l.request.kind, crate::BodyKind::Protobuf);
            let iban: Vec<_> = l
                .findings
                .iter()
                .filter(|f| f.label == Label::Iban)
                .map(|f| f.location.path.clone())
                .collect();
            assert_eq!(iban, vec!["3"], "{:?}", l.findings);
            assert_eq!(l.stats.unscanned_bytes, 0);
            shapes.push((l.request.fields.clone(), resp.fields.clone()));
        }
        assert_eq!(shapes[0], shapes[1], "text as binary");
        assert_eq!(shapes[0].0, vec!["1", "2"], "account_id, limit");
        assert_eq!(shapes[0].1, vec!["1", "2", "2.1", "3", "4", "2.2"]);
        // The kept body is sonora's base64; the walk read its decoding.
        let raw = text[0].response.as_ref().unwrap().body.bytes().unwrap();
        assert!(raw.starts_with(b"AAAAA"), "{raw:?}");
        // Invalid base64 part-way: the messages before it are walked, the rest is counted.
        let mut bad = text[0].clone();
        let r = bad.response.as_mut().unwrap();
        let mut b = raw.clone();
        let cut = b.len() - 8;
        b[cut] = b'*';
        r.body = apitap_schema::Body::from_vec(b, raw.len() as u64);
        let l = sc.label_event(&bad);
        assert_eq!(l.stats.unscanned_bytes, 8);
        // (Its two messages come before the damage, in the trailers frame.)
        assert!(
            l.findings
                .iter()
                .any(|f| f.label == Label::Iban && f.location.path == "3")
        );
    }
}
