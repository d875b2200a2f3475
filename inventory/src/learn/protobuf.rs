//! Shapes of gRPC bodies (R-INV-2, issue 17): every protobuf field of every length-prefixed
//! message ([`apitap_labels::protobuf::walk_body`]) recorded like a JSON field, under the
//! body kind `protobuf`, with its number path, wire kinds, declared type and repetition
//! ([`ProtoFieldShape`]). Fields are named from the operator's descriptor sets when the
//! call's method is declared there; unknown fields stay numbered. Same bounds as JSON
//! shapes ([`MAX_FIELDS`] per body; excess counted in `Fields::dropped`); messages not
//! decoded are counted in [`BodyShape::skipped_messages`]. String values contribute example
//! *shapes* only ([`mask`]), never values.

use super::*;
use apitap_labels::protobuf::{Kind, ProtoField, ProtoSchema, kind_name, walk_body};

/// The inventory's type of a protobuf field: from its declared type when known, else from
/// its wire kind (fixed-width values may be integers or floats: `number`).
pub(crate) fn proto_type(f: &ProtoField<'_>) -> ValueType {
    if let Some(d) = f.declared {
        let t = d.type_name.as_str();
        return match t {
            "double" | "float" => ValueType::Number,
            "bool" => ValueType::Boolean,
            "string" | "bytes" => ValueType::String,
            _ if t.starts_with("message ") => ValueType::Object,
            // Enums are numbers on the wire (and in the shape).
            _ => ValueType::Integer,
        };
    }
    match f.kind {
        Kind::Varint => ValueType::Integer,
        Kind::Fixed32 | Kind::Fixed64 => ValueType::Number,
        Kind::String | Kind::Bytes => ValueType::String,
        Kind::Message | Kind::Group => ValueType::Object,
    }
}

/// Learns one gRPC body (`bytes`: the DATA of one direction) into `shape`. `encoding` is
/// the direction's `grpc-encoding`, `root` the message type the descriptor sets give.
pub(crate) fn learn_grpc_body(
    bytes: &[u8],
    encoding: Option<&str>,
    root: Option<&str>,
    schema: Option<&ProtoSchema>,
    shape: &mut BodyShape,
    now: u64,
) {
    shape.samples += 1;
    shape.root_types |= ValueType::Object.bit();
    let fields = &mut shape.fields;
    let stats = walk_body(bytes, encoding, root, schema, &mut |f| {
        // Bytes are not shown even as a shape: they may be keys or images.
        let text = f.text.filter(|_| f.kind == Kind::String);
        if fields.observe(f.path, proto_type(f), text, now, MAX_FIELDS)
            && let Some(st) = fields.fields.get_mut(f.path)
        {
            let p = st.protobuf.get_or_insert_with(|| {
                Box::new(ProtoFieldShape {
                    number_path: f.numbers.to_owned(),
                    ..ProtoFieldShape::default()
                })
            });
            p.add_wire(kind_name(f.kind));
            p.repeated |= f.repeated;
            if p.declared_type.is_none() {
                p.declared_type = f.declared.map(|d| d.type_name.clone());
            }
        }
    });
    let skipped = stats.truncated + stats.compressed_skipped + stats.invalid;
    shape.skipped_messages += u64::from(skipped);
    if stats.decoded == 0 && stats.messages > 0 {
        shape.unparsed += 1;
    }
}

/// Learns the gRPC body of one direction of the event (`response` or request) into the
/// `protobuf` entry of `bodies`, with the direction's `grpc-encoding` and message type.
pub(crate) fn learn_grpc(
    facts: &RequestFacts<'_, '_>,
    response: bool,
    bodies: &mut BTreeMap<String, BodyShape>,
    now: u64,
) {
    let shared = facts.shared;
    let event = shared.event;
    let (headers, body, captured) = match (&event.response, response) {
        (_, false) => (
            &event.request.headers,
            shared.request_body(),
            event.request.body.captured_bytes,
        ),
        (Some(r), true) => (&r.headers, shared.response_body(), r.body.captured_bytes),
        (None, true) => return,
    };
    // gRPC-Web text: base64 that stopped being valid part-way (the prefix is learned).
    let invalid_text = body.is_ok_and(|b| b.invalid_text_chars > 0);
    let Some(bytes) = learn_bytes(body).filter(|_| captured > 0) else {
        return;
    };
    let schema = shared.protobuf();
    let (req_ty, resp_ty) = apitap_labels::protobuf::call_types(schema, event.grpc.as_ref());
    let root = if response { resp_ty } else { req_ty };
    let encoding = header(headers, "grpc-encoding");
    let shape = bodies.entry("protobuf".to_owned()).or_default();
    learn_grpc_body(bytes, encoding, root, schema, shape, now);
    if invalid_text {
        shape.unparsed += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use apitap_labels::facts::DEFAULT_MAX_DECODED_BYTES;
    use apitap_schema::test_support::EventBuilder;

    fn frame(msg: &[u8]) -> Vec<u8> {
        let mut out = vec![0];
        out.extend_from_slice(&(msg.len() as u32).to_be_bytes());
        out.extend_from_slice(msg);
        out
    }

    /// A unary call: request {1: "acc-1"}, response {1: "acc-1", 3: {1: "CNY", 2: 7},
    /// 4: "a", 4: "b"} and a second response message cut by the capture cap.
    fn call() -> ApiEvent {
        let req = frame(b"\x0a\x05acc-1");
        let mut resp = frame(b"\x0a\x05acc-1\x1a\x07\x0a\x03CNY\x10\x07\x22\x01a\x22\x01b");
        resp.extend_from_slice(&frame(b"\x0a\x05acc-2")[..6]);
        let mut e = EventBuilder::post("/bank.v1.Accounts/GetAccount")
            .header("content-type", "application/grpc")
            .body_bytes(req)
            .response_header("content-type", "application/grpc")
            .response_body_bytes(resp)
            .build();
        e.grpc = Some(apitap_schema::Grpc {
            service: "bank.v1.Accounts".into(),
            method: "GetAccount".into(),
            status: Some(0),
            ..apitap_schema::Grpc::default()
        });
        e
    }

    /// Learns `e` into `d`, inspecting its bodies.
    fn learn_sampled(d: &mut EndpointData, e: &ApiEvent) {
        let shared = EventFacts::new(e, DEFAULT_MAX_DECODED_BYTES);
        let facts = RequestFacts::of(&shared);
        learn(d, e, &facts, &[], &ClientClassifier::default(), true);
    }

    #[test]
    fn grpc_bodies_give_protobuf_shapes() {
        let e = call();
        let mut d = EndpointData::default();
        learn_sampled(&mut d, &e);
        learn_sampled(&mut d, &e);
        assert_eq!(d.style(), "grpc");
        let req = &d.request.bodies["protobuf"];
        assert_eq!(req.samples, 2);
        let f = &req.fields.fields["1"];
        assert_eq!(f.types, ValueType::String.bit());
        assert_eq!(f.examples, vec!["aaa-9"]);
        let resp = &d.responses[&200].bodies["protobuf"];
        assert_eq!(resp.skipped_messages, 2, "the cut message, twice");
        let got: Vec<(&str, &str, Vec<String>, bool)> = resp
            .fields
            .fields
            .iter()
            .map(|(k, v)| {
                let p = v.protobuf.as_ref().unwrap();
                (
                    k.as_str(),
                    p.number_path.as_str(),
                    p.wire.clone(),
                    p.repeated,
                )
            })
            .collect();
        let s = |v: &str| vec![v.to_owned()];
        assert_eq!(
            got,
            vec![
                ("1", "1", s("string"), false),
                ("3", "3", s("message"), false),
                ("3.1", "3.1", s("string"), false),
                ("3.2", "3.2", s("varint"), false),
                ("4", "4", s("string"), true),
            ]
        );
        assert_eq!(resp.fields.fields["3"].types, ValueType::Object.bit());
        assert_eq!(
            resp.fields.fields["4"].seen, 4,
            "two occurrences per message"
        );
        // Merging keeps the protobuf facts; nothing of a value is stored.
        let mut merged = EndpointData::default();
        merged.absorb(&d);
        merged.absorb(&d);
        assert_eq!(
            merged.responses[&200].bodies["protobuf"].fields.fields["4"].protobuf,
            resp.fields.fields["4"].protobuf
        );
        assert_eq!(
            merged.responses[&200].bodies["protobuf"].skipped_messages,
            4
        );
        let text = serde_json::to_string(&d).unwrap();
        for v in ["acc-1", "CNY"] {
            assert!(!text.contains(v), "{v} stored: {text}");
        }
        let back: EndpointData = serde_json::from_str(&text).unwrap();
        assert_eq!(back, d);
        // The OpenAPI-side rendering: the gRPC media type with the fields, no JSON Schema.
        let v = crate::openapi::protobuf_fields(resp);
        assert_eq!(v["3.2"]["wire"], serde_json::json!(["varint"]));
        assert_eq!(v["4"]["repeated"], serde_json::json!(true));
    }

    /// Hostile bodies under a gRPC content type: bounded, counted, never a panic.
    #[test]
    fn garbage_grpc_bodies_are_counted() {
        let mut e = call();
        e.request.body = apitap_schema::Body::from_bytes(&[0, 0, 0, 0, 3, 0x0e, 1, 2], 8);
        let mut d = EndpointData::default();
        learn_sampled(&mut d, &e);
        let req = &d.request.bodies["protobuf"];
        assert_eq!((req.unparsed, req.skipped_messages), (1, 1));
        assert!(req.fields.is_empty());
    }
}
