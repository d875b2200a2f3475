//! Body shape learning: media types, and the JSON, XML, form and multipart field walkers.

use super::*;
use apitap_labels::json::{JsonDoc, JsonTape, JsonType, JsonValue};

/// Media type of a `Content-Type` value: lower-cased, parameters removed.
pub fn media_type(content_type: &str) -> std::borrow::Cow<'_, str> {
    let m = content_type
        .split_once(';')
        .map_or(content_type, |(m, _)| m)
        .trim();
    if m.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(m.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(m)
    }
}

/// Body kind of a media type: `json`, `form`, `multipart`, `xml`, or `None` (not inspected).
pub fn body_kind(media: &str) -> Option<&'static str> {
    if media == "application/json" || media.ends_with("+json") || media.ends_with("/json") {
        Some("json")
    } else if media == "application/x-www-form-urlencoded" {
        Some("form")
    } else if media.starts_with("multipart/") {
        Some("multipart")
    } else if media.ends_with("/xml") || media.ends_with("+xml") {
        Some("xml")
    } else {
        None
    }
}

/// A body's bytes for shape learning: the event's shared decoded body, of which at most
/// [`MAX_INFLATED_BYTES`] are inspected when this analyzer removed the coding (a longer JSON
/// document is cut and then not learned).
pub(crate) fn learn_bytes<'x>(body: Result<&'x BodyBytes<'_>, BodyError>) -> Option<&'x [u8]> {
    let b = body.ok()?;
    let cap = usize::try_from(MAX_INFLATED_BYTES).unwrap_or(usize::MAX);
    Some(if b.content_decoded && b.bytes.len() > cap {
        &b.bytes[..cap]
    } else {
        &b.bytes
    })
}

/// A JSON object key as a field name: keys that look like values (numbers, UUIDs, emails,
/// tokens) become `*`, so maps keyed by IDs neither explode the field list nor store values.
pub(crate) fn key_name(key: &str) -> &str {
    // Most keys are short names: no need to classify them.
    if key.len() < 16
        && key
            .bytes()
            .all(|b| b.is_ascii_alphabetic() || b == b'_' || b == b'-')
    {
        return key;
    }
    match SegmentShape::of(key).strength() {
        crate::shape::Strength::Strong | crate::shape::Strength::Opaque => "*",
        _ => key,
    }
}

/// The inventory's type of a JSON value.
pub(crate) fn json_type(v: &JsonValue<'_>) -> ValueType {
    match v.json_type() {
        JsonType::Null => ValueType::Null,
        JsonType::Boolean => ValueType::Boolean,
        JsonType::Integer => ValueType::Integer,
        JsonType::Number => ValueType::Number,
        JsonType::String => ValueType::String,
        JsonType::Array => ValueType::Array,
        JsonType::Object => ValueType::Object,
    }
}

/// Records the fields of `v` below `path`: object members in key order (the last of
/// duplicated keys), the first three elements of arrays (`[]`), at most [`MAX_DEPTH`] deep.
pub(crate) fn walk_json(
    v: JsonValue<'_>,
    path: &mut String,
    depth: usize,
    out: &mut Fields,
    now: u64,
) {
    match v.json_type() {
        JsonType::Object => {
            if depth >= MAX_DEPTH {
                return;
            }
            for (k, child) in v.members() {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key_name(&k));
                let text = child.as_str();
                out.observe(path, json_type(&child), text.as_deref(), now, MAX_FIELDS);
                walk_json(child, path, depth + 1, out, now);
                path.truncate(len);
            }
        }
        JsonType::Array => {
            if depth >= MAX_DEPTH {
                return;
            }
            let len = path.len();
            path.push_str("[]");
            // Element structure from the first few elements.
            for item in v.items().take(3) {
                if !matches!(item.json_type(), JsonType::Object | JsonType::Array) {
                    let text = item.as_str();
                    out.observe(path, json_type(&item), text.as_deref(), now, MAX_FIELDS);
                }
                walk_json(item, path, depth + 1, out, now);
            }
            path.truncate(len);
        }
        _ => {}
    }
}

/// The JSON document of `bytes`: the event's shared tokens `shared` when they are the tokens
/// of `bytes` (the one walk of the body), else `bytes` lexed into `local` (a body cut to
/// [`MAX_INFLATED_BYTES`]).
pub(crate) fn json_doc<'d>(
    bytes: &'d [u8],
    shared: Option<JsonDoc<'d>>,
    local: &'d mut Option<JsonTape>,
) -> JsonDoc<'d> {
    match shared {
        Some(d) if std::ptr::eq(d.bytes(), bytes) => d,
        _ => local.insert(JsonTape::lex(bytes)).doc(bytes),
    }
}

/// Parses a body of `kind` into `shape`; a JSON body is read from `json`, the event's shared
/// tokens of the body ([`json_doc`]).
pub(crate) fn learn_body(
    kind: &str,
    bytes: &[u8],
    json: Option<JsonDoc<'_>>,
    content_type: &str,
    shape: &mut BodyShape,
    now: u64,
) {
    shape.samples += 1;
    match kind {
        "json" => {
            let mut local = None;
            match json_doc(bytes, json, &mut local).root() {
                Some(v) => {
                    shape.root_types |= json_type(&v).bit();
                    walk_json(v, &mut String::new(), 0, &mut shape.fields, now);
                }
                None => shape.unparsed += 1,
            }
        }
        "form" => {
            shape.root_types |= ValueType::Object.bit();
            let text = String::from_utf8_lossy(bytes);
            for (name, value) in query_pairs(&text) {
                let value = percent_decode(value, true).into_owned();
                let name = percent_decode(name, false).into_owned();
                shape.fields.observe(
                    key_name(&name),
                    ValueType::of_text(&value),
                    Some(&value),
                    now,
                    MAX_FIELDS,
                );
            }
        }
        "multipart" => {
            shape.root_types |= ValueType::Object.bit();
            learn_multipart(bytes, content_type, shape, now);
        }
        "xml" => {
            shape.root_types |= ValueType::Object.bit();
            if !learn_xml(bytes, shape, now) {
                shape.unparsed += 1;
            }
        }
        _ => {}
    }
}

pub(crate) fn learn_multipart(bytes: &[u8], content_type: &str, shape: &mut BodyShape, now: u64) {
    let Some(boundary) = content_type.split(';').find_map(|p| {
        let p = p.trim();
        p.strip_prefix("boundary=")
            .map(|b| b.trim_matches('"').to_owned())
    }) else {
        shape.unparsed += 1;
        return;
    };
    let text = String::from_utf8_lossy(bytes);
    let delim = format!("--{boundary}");
    for part in text.split(delim.as_str()).skip(1) {
        let Some((head, _)) = part.split_once("\r\n\r\n") else {
            continue;
        };
        let mut name = None;
        let mut file = false;
        for line in head.lines() {
            let lower = line.to_ascii_lowercase();
            if lower.starts_with("content-disposition:") {
                for attr in line.split(';').map(str::trim) {
                    if let Some(v) = attr.strip_prefix("name=") {
                        name = Some(v.trim_matches('"').to_owned());
                    }
                    if attr.starts_with("filename=") {
                        file = true;
                    }
                }
            }
        }
        if let Some(name) = name {
            // Part contents are never looked at: only the part's name and whether it is a
            // file.
            shape.fields.observe(
                key_name(&name),
                ValueType::String,
                file.then_some("<file>"),
                now,
                MAX_FIELDS,
            );
        }
    }
}

/// Element paths of an XML document (`Envelope.Body.GetBalance`), by a tolerant tag scanner
/// that needs no DTD or namespace processing. Returns false when no element was found.
pub(crate) fn learn_xml(bytes: &[u8], shape: &mut BodyShape, now: u64) -> bool {
    let text = String::from_utf8_lossy(bytes);
    let mut stack: Vec<String> = Vec::new();
    let mut found = false;
    let mut rest = text.as_ref();
    while let Some(lt) = rest.find('<') {
        rest = &rest[lt + 1..];
        let Some(gt) = rest.find('>') else { break };
        let tag = &rest[..gt];
        rest = &rest[gt + 1..];
        if tag.starts_with('?') || tag.starts_with('!') {
            continue;
        }
        if let Some(close) = tag.strip_prefix('/') {
            let name = local_name(close);
            if let Some(pos) = stack.iter().rposition(|s| *s == name) {
                stack.truncate(pos);
            }
            continue;
        }
        let self_closing = tag.ends_with('/');
        let name = local_name(tag.trim_end_matches('/'));
        if name.is_empty() || stack.len() >= MAX_DEPTH {
            continue;
        }
        stack.push(name);
        found = true;
        let path = stack.join(".");
        // Text content up to the next tag: typed, shape only.
        let text_end = rest.find('<').unwrap_or(rest.len());
        let content = rest[..text_end].trim();
        let t = if content.is_empty() {
            ValueType::Object
        } else {
            ValueType::of_text(content)
        };
        shape.fields.observe(
            &path,
            t,
            (!content.is_empty()).then_some(content),
            now,
            MAX_FIELDS,
        );
        if self_closing {
            stack.pop();
        }
    }
    found
}

pub(crate) fn local_name(tag: &str) -> String {
    let name = tag.split_whitespace().next().unwrap_or_default();
    let local = name.rsplit(':').next().unwrap_or(name);
    key_name(local).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;

    use apitap_labels::facts::{DEFAULT_MAX_DECODED_BYTES, EventFacts};

    /// The `serde_json::Value` walk this module made before the body's shared tokens (issue
    /// 13): the oracle the tape walk must equal.
    fn serde_type(v: &serde_json::Value) -> ValueType {
        match v {
            serde_json::Value::Null => ValueType::Null,
            serde_json::Value::Bool(_) => ValueType::Boolean,
            serde_json::Value::Number(n) if n.is_i64() || n.is_u64() => ValueType::Integer,
            serde_json::Value::Number(_) => ValueType::Number,
            serde_json::Value::String(_) => ValueType::String,
            serde_json::Value::Array(_) => ValueType::Array,
            serde_json::Value::Object(_) => ValueType::Object,
        }
    }

    fn serde_walk(v: &serde_json::Value, path: &mut String, depth: usize, out: &mut Fields) {
        match v {
            serde_json::Value::Object(map) => {
                if depth >= MAX_DEPTH {
                    return;
                }
                for (k, child) in map {
                    let len = path.len();
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(key_name(k));
                    out.observe(path, serde_type(child), child.as_str(), 7, MAX_FIELDS);
                    serde_walk(child, path, depth + 1, out);
                    path.truncate(len);
                }
            }
            serde_json::Value::Array(items) => {
                if depth >= MAX_DEPTH {
                    return;
                }
                let len = path.len();
                path.push_str("[]");
                for item in items.iter().take(3) {
                    if !matches!(
                        item,
                        serde_json::Value::Object(_) | serde_json::Value::Array(_)
                    ) {
                        out.observe(path, serde_type(item), item.as_str(), 7, MAX_FIELDS);
                    }
                    serde_walk(item, path, depth + 1, out);
                }
                path.truncate(len);
            }
            _ => {}
        }
    }

    fn serde_shape(bytes: &[u8]) -> BodyShape {
        let mut shape = BodyShape {
            samples: 1,
            ..BodyShape::default()
        };
        match serde_json::from_slice::<serde_json::Value>(bytes) {
            Ok(v) => {
                shape.root_types |= serde_type(&v).bit();
                serde_walk(&v, &mut String::new(), 0, &mut shape.fields);
            }
            Err(_) => shape.unparsed += 1,
        }
        shape
    }

    /// The shape learned from the body's own tokens, and from tokens of other bytes (which
    /// must be ignored).
    fn tape_shape(bytes: &[u8]) -> BodyShape {
        let tape = JsonTape::lex(bytes);
        let mut shape = BodyShape::default();
        learn_body("json", bytes, Some(tape.doc(bytes)), "", &mut shape, 7);
        let other = JsonTape::lex(b"{\"other\":1}");
        let mut again = BodyShape::default();
        learn_body(
            "json",
            bytes,
            Some(other.doc(b"{\"other\":1}")),
            "",
            &mut again,
            7,
        );
        assert_eq!(again, shape, "tokens of other bytes are not read");
        shape
    }

    /// The top-level key list of the response fingerprint, as the `serde_json` walk made it.
    fn serde_top_keys(bytes: &[u8]) -> Option<(bool, Vec<String>)> {
        let v = serde_json::from_slice::<serde_json::Value>(bytes).ok()?;
        let (arr, obj) = match &v {
            serde_json::Value::Array(a) => (true, a.first().and_then(|x| x.as_object())),
            serde_json::Value::Object(o) => (false, Some(o)),
            _ => (false, None),
        };
        let mut keys: Vec<String> = obj
            .map(|o| o.keys().map(|k| key_name(k).to_owned()).take(64).collect())
            .unwrap_or_default();
        keys.sort_unstable();
        keys.dedup();
        Some((arr, keys))
    }

    fn fixture_events() -> Vec<ApiEvent> {
        let data = concat!(env!("CARGO_MANIFEST_DIR"), "/../analyzer/tests/data");
        let mut out = Vec::new();
        for rel in [
            "httpbin/events.jsonl.gz",
            "inventory_apps/datasette/events.jsonl.gz",
            "inventory_apps/httpbin/events.jsonl.gz",
            "inventory_apps/jsonserver/events.jsonl.gz",
        ] {
            let gz = std::fs::read(format!("{data}/{rel}")).unwrap();
            let mut text = String::new();
            flate2::read::GzDecoder::new(&gz[..])
                .read_to_string(&mut text)
                .unwrap();
            out.extend(
                text.lines()
                    .filter(|l| !l.is_empty())
                    .map(|l| apitap_schema::decode_event(l.as_bytes()).unwrap()),
            );
        }
        out
    }

    /// Texts derived from `b`: cuts and one-byte changes to JSON punctuation.
    fn variants(b: &[u8], seed: usize) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        if b.is_empty() {
            return out;
        }
        for cut in [1, b.len() / 3, b.len() / 2, b.len() - 1] {
            out.push(b[..cut].to_vec());
        }
        const SUBST: &[u8] = b"\"{}[],:\\ 0-.e\x01";
        for k in 0..6 {
            let at = (seed * 7919 + k * 104_729) % b.len();
            let mut v = b.to_vec();
            v[at] = SUBST[(seed + k) % SUBST.len()];
            out.push(v);
        }
        out
    }

    /// On every JSON body of the recorded fixtures (real sensor events of httpbin,
    /// datasette and json-server), and on cut and damaged copies of them, the shapes and the
    /// fingerprint keys read from the shared tokens are the `serde_json` walk's.
    #[test]
    fn tape_walk_is_the_serde_walk_on_recorded_bodies() {
        let events = fixture_events();
        let mut bodies = 0;
        let mut invalid = 0;
        for (n, ev) in events.iter().enumerate() {
            let facts = EventFacts::new(ev, DEFAULT_MAX_DECODED_BYTES);
            for body in [facts.request_body(), facts.response_body()] {
                let Ok(body) = body else { continue };
                let b: &[u8] = &body.bytes;
                if !matches!(b.trim_ascii_start().first(), Some(b'{' | b'[')) {
                    continue;
                }
                bodies += 1;
                for text in std::iter::once(b.to_vec()).chain(variants(b, n)) {
                    let want = serde_shape(&text);
                    invalid += want.unparsed;
                    assert_eq!(
                        tape_shape(&text),
                        want,
                        "{}",
                        String::from_utf8_lossy(&text)
                    );
                    let tape = JsonTape::lex(&text);
                    let got = tape.doc(&text).root().map(|v| {
                        let arr = v.json_type() == JsonType::Array;
                        let obj = if arr { v.items().next() } else { Some(v) };
                        let mut keys: Vec<String> = obj
                            .filter(|o| o.json_type() == JsonType::Object)
                            .map(|o| {
                                o.members()
                                    .iter()
                                    .map(|(k, _)| key_name(k).to_owned())
                                    .take(64)
                                    .collect()
                            })
                            .unwrap_or_default();
                        keys.sort_unstable();
                        keys.dedup();
                        (arr, keys)
                    });
                    assert_eq!(got, serde_top_keys(&text));
                }
            }
        }
        assert!(bodies > 200, "{bodies} JSON bodies in the fixtures");
        assert!(invalid > 100, "damaged copies are invalid ({invalid})");
    }

    /// Hand-made documents for what recorded traffic rarely has: duplicated and escaped
    /// keys, value-like keys, deep nesting, long arrays, edge numbers.
    #[test]
    fn tape_walk_is_the_serde_walk_on_edge_documents() {
        let deep = format!("{}1{}", "{\"a\":".repeat(12), "}".repeat(12));
        let too_deep = format!("{}{}", "[".repeat(130), "]".repeat(130));
        let docs: Vec<&str> = vec![
            r#"{"b":1,"a":{"x":[1,2,3,4,5]},"b":"again","c\u00e9":"\u00e9\"","":null}"#,
            r#"{"users":{"550e8400-e29b-41d4-a716-446655440000":{"n":1},"alice@example.com":2}}"#,
            r#"[[1,2],[3,[4,[5,[6,[7,[8,[9]]]]]]],{"k":1.5e3},-0,18446744073709551616]"#,
            r#"{"k":{"k":{"k":{"k":{"k":{"k":{"k":{"k":{"k":{"k":1}}}}}}}}}}"#,
            r#"{"x":1,"x":{"deep":true}}"#,
            r#"{"x":{"deep":true},"x":1}"#,
            r#""text""#,
            "  [ ]  ",
            "{\"a\":1e400}",
            "{\"a\":\"\\ud800\"}",
            &deep,
            &too_deep,
        ];
        for d in docs {
            assert_eq!(tape_shape(d.as_bytes()), serde_shape(d.as_bytes()), "{d}");
        }
        let many: String = format!(
            "{{{}}}",
            (0..300)
                .map(|i| format!("\"f{i}\":{i}"))
                .collect::<Vec<_>>()
                .join(",")
        );
        let shape = tape_shape(many.as_bytes());
        assert_eq!(shape, serde_shape(many.as_bytes()));
        assert!(shape.fields.dropped > 0, "the field cap applies");
    }
}
