//! The binary event encoding (issue 21, R-BUS-1): the same event model as the JSON encoding,
//! written as MessagePack (<https://github.com/msgpack/msgpack/blob/master/spec.md>).
//!
//! - **Same fields, same names.** Each struct is a MessagePack *map* keyed by the field names
//!   of the JSON encoding (`docs/event-schema.md`), optional fields left out exactly as in
//!   JSON, enums as their JSON strings, addresses and times as the same text. Any MessagePack
//!   library reads it without a schema file, and a consumer that knows the JSON schema knows
//!   this one. `schema_version` versions both the same way: a new minor version only adds
//!   keys, which readers ignore.
//! - **Bodies are not escaped.** A body's `data` is a MessagePack `str` copied as is (the
//!   JSON encoding escapes every `"` and control byte of it), which is where the encoding's
//!   cost went (docs/cpu-profile.md).
//! - **Negotiated by a header.** On the events topic the Kafka header `content-type` says
//!   which encoding a message uses ([`EventEncoding::content_type`]); a message without it is
//!   JSON, so consumers that predate this encoding and sensors that do not use it keep
//!   working. Files and standard output stay JSON lines.

use serde::{Deserialize, Serialize};

use crate::{ApiEvent, SchemaError, VersionProbe, check_major};

/// `content-type` of a JSON event (also what a message without the header is).
pub const CONTENT_TYPE_JSON: &str = "application/json";
/// `content-type` of a MessagePack event.
pub const CONTENT_TYPE_MSGPACK: &str = "application/vnd.apitap.event+msgpack";

/// How an event is encoded on the events topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventEncoding {
    /// One JSON object (the default; what files and standard output always carry).
    #[default]
    Json,
    /// MessagePack, same model ([`crate::msgpack`]).
    Msgpack,
}

impl EventEncoding {
    /// The `content-type` header value naming this encoding.
    pub fn content_type(self) -> &'static str {
        match self {
            EventEncoding::Json => CONTENT_TYPE_JSON,
            EventEncoding::Msgpack => CONTENT_TYPE_MSGPACK,
        }
    }

    /// The encoding a `content-type` header value names (parameters after `;` ignored, case
    /// insensitive), or `None` for one this build does not read.
    pub fn from_content_type(value: &[u8]) -> Option<EventEncoding> {
        let end = value.iter().position(|&b| b == b';').unwrap_or(value.len());
        let mime = value[..end].trim_ascii();
        if mime.eq_ignore_ascii_case(CONTENT_TYPE_JSON.as_bytes()) {
            Some(EventEncoding::Json)
        } else if mime.eq_ignore_ascii_case(CONTENT_TYPE_MSGPACK.as_bytes()) {
            Some(EventEncoding::Msgpack)
        } else {
            None
        }
    }

    /// Appends `event` in this encoding to `out`. On the (unexpected) failure of a field's
    /// serialisation `out` is left as it was, so an empty result says "not encoded".
    pub fn encode_into(self, event: &ApiEvent, out: &mut Vec<u8>) {
        match self {
            EventEncoding::Json => crate::encode_event_into(event, out),
            EventEncoding::Msgpack => encode_event_msgpack_into(event, out),
        }
    }

    /// Parses one event in this encoding ([`crate::decode_event`] for JSON).
    pub fn decode(self, bytes: &[u8]) -> Result<ApiEvent, SchemaError> {
        match self {
            EventEncoding::Json => crate::decode_event(bytes),
            EventEncoding::Msgpack => decode_event_msgpack(bytes),
        }
    }
}

/// Appends `event` as MessagePack to `out` (maps keyed by field name, text addresses).
pub fn encode_event_msgpack_into(event: &ApiEvent, out: &mut Vec<u8>) {
    let start = out.len();
    let mut ser = rmp_serde::Serializer::new(&mut *out)
        .with_struct_map()
        .with_human_readable();
    if event.serialize(&mut ser).is_err() {
        out.truncate(start);
    }
}

/// Parses one MessagePack event, rejecting unknown major versions before interpreting any
/// other field. Error messages never include the input (R-OPS-3).
pub fn decode_event_msgpack(bytes: &[u8]) -> Result<ApiEvent, SchemaError> {
    // An event is a map: fixmap (0x80..=0x8f), map 16 (0xde) or map 32 (0xdf).
    match bytes.first() {
        Some(0x80..=0x8f | 0xde | 0xdf) => {}
        Some(_) => {
            return Err(SchemaError::Malformed(
                "syntax error: not a MessagePack map".into(),
            ));
        }
        None => return Err(SchemaError::Malformed("truncated input".into())),
    }
    let mut probe_de = rmp_serde::Deserializer::from_read_ref(bytes).with_human_readable();
    let probe = VersionProbe::deserialize(&mut probe_de).map_err(|e| classify(&e))?;
    check_major(probe)?;
    let mut de = rmp_serde::Deserializer::from_read_ref(bytes).with_human_readable();
    ApiEvent::deserialize(&mut de).map_err(|e| classify(&e))
}

/// Describes a MessagePack decoding error by kind only, never by content.
fn classify(e: &rmp_serde::decode::Error) -> SchemaError {
    use rmp_serde::decode::Error as E;
    let kind = match e {
        E::InvalidMarkerRead(_) | E::InvalidDataRead(_) => "truncated input",
        E::TypeMismatch(_) => "syntax error: not a MessagePack event map",
        E::OutOfRange | E::LengthMismatch(_) => "wrong field type or missing field",
        E::Uncategorized(_) | E::Syntax(_) => "wrong field type or missing field",
        E::Utf8Error(_) => "syntax error: invalid UTF-8 in a string",
        E::DepthLimitExceeded => "syntax error: nested too deeply",
    };
    SchemaError::Malformed(kind.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::EventBuilder;
    use crate::{Body, encode_event};

    fn sample() -> ApiEvent {
        EventBuilder::post("/v1/users/42")
            .query("expand=1")
            .body(
                "application/json",
                "{\"name\":\"ada \\\"quoted\\\"\",\"n\":[1,2,3]}",
            )
            .response_headers(&[("Content-Type", "application/octet-stream")])
            .response_body_raw(Body::from_bytes(&[0, 159, 146, 150, 255], 5))
            .build()
    }

    #[test]
    fn round_trips_to_the_same_event_and_is_smaller_than_json() {
        let e = sample();
        let mut out = Vec::new();
        encode_event_msgpack_into(&e, &mut out);
        assert!(!out.is_empty());
        assert_eq!(decode_event_msgpack(&out).unwrap(), e);
        assert!(out.len() < encode_event(&e).len());
        assert_eq!(EventEncoding::Msgpack.decode(&out).unwrap(), e);
    }

    #[test]
    fn is_a_map_keyed_by_the_json_field_names() {
        // Read back generically, without the event type: the keys are the JSON keys, the
        // addresses text (what a third-party MessagePack reader sees).
        let e = sample();
        let mut out = Vec::new();
        encode_event_msgpack_into(&e, &mut out);
        let generic: serde_json::Value = rmp_serde::from_slice(&out).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&encode_event(&e)).unwrap();
        assert_eq!(generic, json);
    }

    #[test]
    fn rejects_other_majors_garbage_and_truncation_without_echoing_input() {
        let mut e = sample();
        e.schema_version = "9.0".into();
        let mut out = Vec::new();
        encode_event_msgpack_into(&e, &mut out);
        assert!(matches!(
            decode_event_msgpack(&out),
            Err(SchemaError::UnsupportedVersion { .. })
        ));
        let mut good = Vec::new();
        encode_event_msgpack_into(&sample(), &mut good);
        for bad in [
            &good[..good.len() / 2],
            b"\xc1\xc1secret-value",
            b"",
            b"{\"a\":1}",
        ] {
            let err = decode_event_msgpack(bad).unwrap_err().to_string();
            assert!(!err.contains("secret"), "{err}");
            assert!(matches!(
                decode_event_msgpack(bad),
                Err(SchemaError::Malformed(_))
            ));
        }
    }

    #[test]
    fn content_types_name_their_encoding() {
        for enc in [EventEncoding::Json, EventEncoding::Msgpack] {
            assert_eq!(
                EventEncoding::from_content_type(enc.content_type().as_bytes()),
                Some(enc)
            );
        }
        assert_eq!(
            EventEncoding::from_content_type(b" Application/JSON; charset=utf-8"),
            Some(EventEncoding::Json)
        );
        assert_eq!(EventEncoding::from_content_type(b"text/csv"), None);
    }
}
