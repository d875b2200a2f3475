//! Body shape learning: media types, and the JSON, XML, form and multipart field walkers.

use super::*;

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

pub(crate) fn json_type(v: &serde_json::Value) -> ValueType {
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

pub(crate) fn walk_json(
    v: &serde_json::Value,
    path: &mut String,
    depth: usize,
    out: &mut Fields,
    now: u64,
) {
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
                let text = child.as_str();
                out.observe(path, json_type(child), text, now, MAX_FIELDS);
                walk_json(child, path, depth + 1, out, now);
                path.truncate(len);
            }
        }
        serde_json::Value::Array(items) => {
            if depth >= MAX_DEPTH {
                return;
            }
            let len = path.len();
            path.push_str("[]");
            // Element structure from the first few elements.
            for item in items.iter().take(3) {
                if !matches!(
                    item,
                    serde_json::Value::Object(_) | serde_json::Value::Array(_)
                ) {
                    out.observe(path, json_type(item), item.as_str(), now, MAX_FIELDS);
                }
                walk_json(item, path, depth + 1, out, now);
            }
            path.truncate(len);
        }
        _ => {}
    }
}

/// Parses a body of `kind` into `shape`.
pub(crate) fn learn_body(
    kind: &str,
    bytes: &[u8],
    content_type: &str,
    shape: &mut BodyShape,
    now: u64,
) {
    shape.samples += 1;
    match kind {
        "json" => match serde_json::from_slice::<serde_json::Value>(bytes) {
            Ok(v) => {
                shape.root_types |= json_type(&v).bit();
                walk_json(&v, &mut String::new(), 0, &mut shape.fields, now);
            }
            Err(_) => shape.unparsed += 1,
        },
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
