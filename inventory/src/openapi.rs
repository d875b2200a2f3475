//! OpenAPI 3.1 export of the inventory, one document per service (R-INV-5).
//!
//! Paths are the endpoint templates; operations carry the observed parameters (path, query,
//! header, cookie, with required/optional from their presence ratio), request bodies and
//! responses per status code with JSON Schemas inferred from the learned fields, and security
//! schemes for the auth seen. Observations that OpenAPI has no field for (hits, lifecycle,
//! spec status, exposure, example shapes) go into `x-apitap*` extensions. Example *shapes*
//! are never put in `example`, which would claim to be a real value.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::engine::OVERFLOW_TEMPLATE;
use super::learn::{BodyShape, EndpointData, FieldStats, Fields};
use super::record::EndpointRecord;
use super::sensitive::SensitiveData;
use super::shape::type_names;
use super::spec::SpecStatus;

const OPENAPI_METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// Header parameters OpenAPI ignores or that only describe transport.
const SKIPPED_HEADERS: [&str; 16] = [
    "accept",
    "content-type",
    "authorization",
    "cookie",
    "host",
    "content-length",
    "connection",
    "transfer-encoding",
    "accept-encoding",
    "user-agent",
    "te",
    "upgrade",
    "keep-alive",
    "proxy-authorization",
    "accept-language",
    "expect",
];

/// A presence ratio at or above this makes a parameter `required`.
const REQUIRED_RATIO: f64 = 0.999;

#[derive(Debug, Default)]
struct SchemaNode {
    types: u8,
    formats: Vec<String>,
    seen: u64,
    shapes: Vec<String>,
    props: BTreeMap<String, SchemaNode>,
    items: Option<Box<SchemaNode>>,
}

impl SchemaNode {
    fn insert(&mut self, path: &str, stats: &FieldStats) {
        let mut node = self;
        for token in tokens(path) {
            node = if token == "[]" {
                node.items.get_or_insert_with(Default::default)
            } else {
                node.props.entry(token.to_owned()).or_default()
            };
        }
        node.types |= stats.types;
        node.seen = node.seen.max(stats.seen);
        for f in &stats.formats {
            if !node.formats.contains(f) {
                node.formats.push(f.clone());
            }
        }
        for e in &stats.examples {
            if !node.shapes.contains(e) && node.shapes.len() < 3 {
                node.shapes.push(e.clone());
            }
        }
    }

    fn to_schema(&self, parent_seen: u64) -> Value {
        let mut s = Map::new();
        let mut types = self.types;
        if !self.props.is_empty() {
            types |= super::shape::ValueType::Object.bit();
        }
        if self.items.is_some() {
            types |= super::shape::ValueType::Array.bit();
        }
        let names = type_names(types);
        match names.len() {
            0 => {}
            1 => {
                s.insert("type".into(), json!(names[0]));
            }
            _ => {
                s.insert("type".into(), json!(names));
            }
        }
        if self.formats.len() == 1 && names.contains(&"string") {
            s.insert("format".into(), json!(self.formats[0]));
        }
        if !self.props.is_empty() {
            let mut props = Map::new();
            let mut required = Vec::new();
            let mut additional = None;
            for (name, child) in &self.props {
                if name == "*" {
                    additional = Some(child.to_schema(child.seen));
                    continue;
                }
                if self.seen > 0 && child.seen >= self.seen.max(parent_seen.min(self.seen)) {
                    required.push(json!(name));
                }
                props.insert(name.clone(), child.to_schema(self.seen));
            }
            if !props.is_empty() {
                s.insert("properties".into(), Value::Object(props));
            }
            if !required.is_empty() {
                s.insert("required".into(), Value::Array(required));
            }
            if let Some(a) = additional {
                s.insert("additionalProperties".into(), a);
            }
        }
        if let Some(items) = &self.items {
            s.insert("items".into(), items.to_schema(0));
        }
        if !self.shapes.is_empty() {
            s.insert("x-apitap-shapes".into(), json!(self.shapes));
        }
        Value::Object(s)
    }
}

/// `items[].id` → `items`, `[]`, `id`.
fn tokens(path: &str) -> Vec<&str> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let mut p = part;
        let mut arrays = 0;
        while let Some(stripped) = p.strip_suffix("[]") {
            p = stripped;
            arrays += 1;
        }
        if !p.is_empty() {
            out.push(p);
        }
        out.extend(std::iter::repeat_n("[]", arrays));
    }
    out
}

/// The JSON Schema of a learned body.
pub fn body_schema(body: &BodyShape) -> Value {
    let mut root = SchemaNode {
        types: body.root_types,
        seen: body.samples.saturating_sub(body.unparsed),
        ..Default::default()
    };
    for (path, stats) in &body.fields.fields {
        root.insert(path, stats);
    }
    root.to_schema(root.seen)
}

fn media_for(kind: &str, content_types: &BTreeMap<String, u64>) -> String {
    let known = content_types
        .keys()
        .find(|ct| super::learn::body_kind(ct) == Some(kind));
    match (known, kind) {
        (Some(ct), _) => ct.clone(),
        (None, "json") => "application/json".into(),
        (None, "form") => "application/x-www-form-urlencoded".into(),
        (None, "multipart") => "multipart/form-data".into(),
        (None, "xml") => "application/xml".into(),
        (None, other) => format!("application/{other}"),
    }
}

/// The protobuf fields of a gRPC body shape: path → number path, wire kinds, declared
/// type, repeated, value types.
pub fn protobuf_fields(body: &BodyShape) -> Value {
    let mut out = Map::new();
    for (path, stats) in &body.fields.fields {
        let mut f = json!({"types": crate::shape::type_names(stats.types)});
        if let Some(p) = &stats.protobuf {
            f["number"] = json!(p.number_path);
            f["wire"] = json!(p.wire);
            if let Some(t) = &p.declared_type {
                f["declared_type"] = json!(t);
            }
            if p.repeated {
                f["repeated"] = json!(true);
            }
        }
        if !stats.examples.is_empty() {
            f["x-apitap-shapes"] = json!(stats.examples);
        }
        out.insert(path.clone(), f);
    }
    Value::Object(out)
}

fn content(
    bodies: &BTreeMap<String, BodyShape>,
    content_types: &BTreeMap<String, u64>,
) -> Map<String, Value> {
    let mut c = Map::new();
    for (kind, body) in bodies {
        if kind == "protobuf" {
            // gRPC (issue 17): protobuf is not JSON, so no JSON Schema; the fields as the
            // inventory API has them, under an extension of the gRPC media type.
            let media = content_types
                .keys()
                .find(|ct| apitap_labels::protobuf::is_protobuf_grpc(ct.as_bytes()))
                .cloned()
                .unwrap_or_else(|| "application/grpc".into());
            c.insert(media, json!({"x-apitap-protobuf": protobuf_fields(body)}));
            continue;
        }
        c.insert(
            media_for(kind, content_types),
            json!({"schema": body_schema(body)}),
        );
    }
    for ct in content_types.keys() {
        if !c.contains_key(ct) && ct.contains('/') {
            c.insert(ct.clone(), json!({}));
        }
    }
    c
}

fn param_schema(stats: &FieldStats) -> Value {
    let mut s = Map::new();
    let names: Vec<&str> = type_names(stats.types)
        .into_iter()
        .filter(|n| *n != "null" && *n != "object" && *n != "array")
        .collect();
    s.insert(
        "type".into(),
        match names.len() {
            0 => json!("string"),
            1 => json!(names[0]),
            _ => json!(names),
        },
    );
    if stats.formats.len() == 1 {
        s.insert("format".into(), json!(stats.formats[0]));
    }
    Value::Object(s)
}

fn parameters(location: &str, fields: &Fields, samples: u64, out: &mut Vec<Value>) {
    for (name, stats) in &fields.fields {
        if location == "header" && SKIPPED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
            continue;
        }
        if name == "*" || name.is_empty() {
            continue;
        }
        let ratio = if samples == 0 {
            0.0
        } else {
            stats.seen as f64 / samples as f64
        };
        let mut p = json!({
            "name": name,
            "in": location,
            "required": ratio >= REQUIRED_RATIO,
            "schema": param_schema(stats),
            "x-apitap-presence-ratio": (ratio * 1000.0).round() / 1000.0,
        });
        if !stats.examples.is_empty() {
            p["x-apitap-shapes"] = json!(stats.examples);
        }
        out.push(p);
    }
}

/// Parameter names in a template, in order (`/a/{x}/b/{y}.json` → `x`, `y`).
pub fn template_params(template: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(o) = rest.find('{') {
        let Some(c) = rest[o..].find('}') else { break };
        out.push(rest[o + 1..o + c].to_owned());
        rest = &rest[o + c + 1..];
    }
    out
}

/// Template with parameter names erased (`/a/{x}/b` → `/a/{}/b`), to detect paths OpenAPI
/// considers identical.
pub fn path_shape(template: &str) -> String {
    let mut out = String::new();
    let mut in_param = false;
    for c in template.chars() {
        match c {
            '{' => {
                in_param = true;
                out.push_str("{}");
            }
            '}' => in_param = false,
            c if !in_param => out.push(c),
            _ => {}
        }
    }
    out
}

fn security_scheme(scheme: &str, d: &EndpointData) -> Option<(String, Value)> {
    let header_key = || {
        d.request
            .headers
            .fields
            .keys()
            .find(|h| apitap_labels::facts::is_api_key_header(h))
            .cloned()
            .unwrap_or_else(|| "x-api-key".into())
    };
    Some(match scheme {
        "basic" => (
            "basicAuth".into(),
            json!({"type": "http", "scheme": "basic"}),
        ),
        "bearer" => (
            "bearerAuth".into(),
            json!({"type": "http", "scheme": "bearer"}),
        ),
        "bearer_jwt" => (
            "bearerJwt".into(),
            json!({"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}),
        ),
        "digest" => (
            "digestAuth".into(),
            json!({"type": "http", "scheme": "digest"}),
        ),
        "api_key_header" => {
            let name = header_key();
            (
                format!("apiKeyHeader_{}", sanitize(&name)),
                json!({"type": "apiKey", "in": "header", "name": name}),
            )
        }
        "api_key_query" => {
            let name = d
                .request
                .query
                .fields
                .keys()
                .find(|q| {
                    [
                        "api_key",
                        "apikey",
                        "api-key",
                        "key",
                        "access_token",
                        "token",
                        "auth_token",
                    ]
                    .contains(&q.to_ascii_lowercase().as_str())
                })
                .cloned()
                .unwrap_or_else(|| "api_key".into());
            (
                format!("apiKeyQuery_{}", sanitize(&name)),
                json!({"type": "apiKey", "in": "query", "name": name}),
            )
        }
        "cookie_session" => {
            let name = d
                .request
                .cookies
                .fields
                .keys()
                .find(|c| {
                    let c = c.to_ascii_lowercase();
                    c.contains("session") || c == "sid" || c.ends_with("_sess")
                })
                .cloned()
                .unwrap_or_else(|| "session".into());
            (
                format!("cookieSession_{}", sanitize(&name)),
                json!({"type": "apiKey", "in": "cookie", "name": name}),
            )
        }
        _ => return None,
    })
}

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// One OpenAPI 3.1 document for the records of one service (records of other services are
/// ignored).
pub fn service_document(service: &str, records: &[EndpointRecord]) -> Value {
    // (path shape) → (template, method → records)
    let mut paths: BTreeMap<String, (String, BTreeMap<String, Vec<&EndpointRecord>>)> =
        BTreeMap::new();
    let mut skipped_methods: Vec<String> = Vec::new();
    for r in records.iter().filter(|r| r.key.service == service) {
        if r.key.template == OVERFLOW_TEMPLATE || !r.key.template.starts_with('/') {
            continue;
        }
        let method = r.key.method.to_ascii_lowercase();
        if !OPENAPI_METHODS.contains(&method.as_str()) {
            if !skipped_methods.contains(&r.key.method) {
                skipped_methods.push(r.key.method.clone());
            }
            continue;
        }
        let entry = paths
            .entry(path_shape(&r.key.template))
            .or_insert_with(|| (r.key.template.clone(), BTreeMap::new()));
        entry.1.entry(method).or_default().push(r);
    }
    let mut out_paths = Map::new();
    let mut schemes = Map::new();
    let mut op_ids: Vec<String> = Vec::new();
    for (template, methods) in paths.values() {
        let names = template_params(template);
        let mut item = Map::new();
        for (method, recs) in methods {
            let mut d = EndpointData::default();
            for r in recs {
                d.absorb(&r.data);
            }
            let first = recs[0];
            let mut params = Vec::new();
            for (i, name) in names.iter().enumerate() {
                // Path parameter statistics are kept by segment index.
                let idx = template
                    .split('/')
                    .filter(|s| !s.is_empty())
                    .enumerate()
                    .filter(|(_, s)| s.contains('{'))
                    .nth(i)
                    .map(|(idx, _)| idx.to_string());
                let stats = idx
                    .and_then(|k| d.path_params.get(&k))
                    .cloned()
                    .unwrap_or_default();
                let mut p = json!({
                    "name": name, "in": "path", "required": true,
                    "schema": if stats.types == 0 { json!({"type": "string"}) } else { param_schema(&stats) },
                });
                if !stats.examples.is_empty() {
                    p["x-apitap-shapes"] = json!(stats.examples);
                }
                params.push(p);
            }
            let samples = d.request.samples;
            parameters("query", &d.request.query, samples, &mut params);
            parameters("header", &d.request.headers, samples, &mut params);
            parameters("cookie", &d.request.cookies, samples, &mut params);
            let mut op = Map::new();
            let base_id = format!(
                "{method}{}",
                sanitize(&template.replace(['/', '{', '}'], "_"))
            );
            let mut op_id = base_id.trim_end_matches('_').to_owned();
            let mut n = 2;
            while op_ids.contains(&op_id) {
                op_id = format!("{base_id}_{n}");
                n += 1;
            }
            op_ids.push(op_id.clone());
            op.insert("operationId".into(), json!(op_id));
            op.insert(
                "summary".into(),
                json!(format!(
                    "{} {} (observed by apitap)",
                    method.to_ascii_uppercase(),
                    template
                )),
            );
            if recs.iter().any(|r| r.spec_status == SpecStatus::Deprecated) {
                op.insert("deprecated".into(), json!(true));
            }
            if !params.is_empty() {
                op.insert("parameters".into(), Value::Array(params));
            }
            let req_content = content(&d.request.bodies, &d.request.content_types);
            if !req_content.is_empty() {
                op.insert(
                    "requestBody".into(),
                    json!({"content": Value::Object(req_content)}),
                );
            }
            let mut responses = Map::new();
            for (&code, resp) in &d.responses {
                if !(100..=599).contains(&code) {
                    continue;
                }
                let mut r = json!({"description": format!("Observed {} times", resp.count)});
                let c = content(&resp.bodies, &resp.content_types);
                if !c.is_empty() {
                    r["content"] = Value::Object(c);
                }
                let headers: Map<String, Value> = resp
                    .headers
                    .fields
                    .keys()
                    .filter(|h| {
                        ![
                            "content-type",
                            "content-length",
                            "transfer-encoding",
                            "connection",
                            "date",
                            "server",
                        ]
                        .contains(&h.as_str())
                    })
                    .map(|h| (h.clone(), json!({"schema": {"type": "string"}})))
                    .collect();
                if !headers.is_empty() {
                    r["headers"] = Value::Object(headers);
                }
                responses.insert(code.to_string(), r);
            }
            if responses.is_empty() {
                responses.insert(
                    "default".into(),
                    json!({"description": "No response observed"}),
                );
            }
            op.insert("responses".into(), Value::Object(responses));
            let data_map = annotate_labels(&mut op, template, &d.sensitive);
            let mut security = Vec::new();
            for scheme in d.auth_schemes() {
                if let Some((name, def)) = security_scheme(&scheme, &d) {
                    schemes.insert(name.clone(), def);
                    let mut req = Map::new();
                    req.insert(name, json!([]));
                    security.push(Value::Object(req));
                } else if scheme == "none" || scheme == "none_mtls_unknown" {
                    security.push(json!({}));
                }
            }
            if !security.is_empty() {
                op.insert("security".into(), Value::Array(security));
            }
            let operations: Vec<&str> = recs
                .iter()
                .map(|r| r.key.operation.as_str())
                .filter(|o| !o.is_empty())
                .collect();
            let mut x = json!({
                "hits": d.hits,
                "style": d.style(),
                "auth": d.auth_schemes(),
                "lifecycle": first.lifecycle.as_str(),
                "spec_status": first.spec_status.as_str(),
                "exposure": d.exposure_class(),
                "distinct_clients": d.clients.estimate(),
                "first_seen_unix_us": d.first_seen_unix_us,
                "last_seen_unix_us": d.last_seen_unix_us,
                "endpoint_ids": recs.iter().map(|r| r.id.clone()).collect::<Vec<_>>(),
            });
            if !operations.is_empty() {
                x["operations"] = json!(operations);
            }
            if !data_map.is_empty() {
                x["data_map"] = Value::Array(data_map);
            }
            op.insert("x-apitap".into(), x);
            item.insert(method.clone(), Value::Object(op));
        }
        out_paths.insert(template.clone(), Value::Object(item));
    }
    let mut doc = json!({
        "openapi": "3.1.0",
        "info": {
            "title": service,
            "version": "observed",
            "description": format!("API of service {service} as observed on the wire by apitap: every path, parameter and schema is inferred from traffic."),
        },
        "servers": [{"url": "/", "description": format!("service {service}")}],
        "paths": Value::Object(out_paths),
    });
    if !schemes.is_empty() {
        doc["components"] = json!({"securitySchemes": Value::Object(schemes)});
    }
    if !skipped_methods.is_empty() {
        doc["x-apitap-unexported-methods"] = json!(skipped_methods);
    }
    doc
}

/// `$.data[*].id_card` → the schema tokens `data`, `[]`, `id_card` (see [`tokens`]).
fn label_path_tokens(path: &str) -> Vec<String> {
    let p = path.strip_prefix('$').unwrap_or(path);
    let p = p.strip_prefix('.').unwrap_or(p).replace("[*]", "[]");
    tokens(&p).into_iter().map(str::to_owned).collect()
}

/// Adds `entry` to the `x-apitap-labels` of the schema node at `path` under `schema`, if the
/// learned schema has that node.
fn label_schema_node(schema: &mut Value, path: &[String], entry: &Value) -> bool {
    let mut node = schema;
    for t in path {
        let next = if t == "[]" {
            node.get_mut("items")
        } else {
            node.get_mut("properties")
                .and_then(|p| p.get_mut(t.as_str()))
        };
        match next {
            Some(n) => node = n,
            None => return false,
        }
    }
    push_label(node, entry);
    true
}

fn push_label(node: &mut Value, entry: &Value) {
    if let Some(o) = node.as_object_mut() {
        let list = o
            .entry("x-apitap-labels")
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Some(a) = list.as_array_mut() {
            a.push(entry.clone());
        }
    }
}

/// The field-level data map on the operation (R-SEN-1): each label goes into
/// `x-apitap-labels` of the parameter, header or schema property that carries it, where the
/// learned document has that node; the whole map (with the fields that have no node, such as
/// unstructured text or paths past the field cap) is returned for `x-apitap.data_map`.
fn annotate_labels(op: &mut Map<String, Value>, template: &str, s: &SensitiveData) -> Vec<Value> {
    use apitap_labels::{Direction, Part};
    let segments: Vec<&str> = template.split('/').filter(|x| !x.is_empty()).collect();
    let mut map = Vec::new();
    for (raw, shown) in s.labels.iter().zip(s.data_map(template)) {
        let entry = json!({
            "label": raw.label,
            "events": raw.events,
            "occurrences": raw.occurrences,
            "masked": shown.masked,
        });
        let mut placed = false;
        let param = |location: &str, name: &str, p: &Value| {
            p["in"] == location
                && p["name"]
                    .as_str()
                    .is_some_and(|n| n.eq_ignore_ascii_case(name))
        };
        match (raw.direction, raw.location) {
            (
                Direction::Request,
                Part::QueryParam | Part::Header | Part::Cookie | Part::PathSegment,
            ) => {
                let (location, name) = match raw.location {
                    Part::QueryParam => ("query", raw.field.clone()),
                    Part::Header => ("header", raw.field.clone()),
                    Part::Cookie => ("cookie", raw.field.clone()),
                    _ => {
                        // `[i]` → the parameter of template segment i.
                        let name = raw
                            .field
                            .strip_prefix('[')
                            .and_then(|f| f.strip_suffix(']'))
                            .and_then(|i| i.parse::<usize>().ok())
                            .and_then(|i| segments.get(i))
                            .and_then(|seg| template_params(seg).into_iter().next());
                        ("path", name.unwrap_or_default())
                    }
                };
                if let Some(params) = op.get_mut("parameters").and_then(Value::as_array_mut)
                    && let Some(p) = params.iter_mut().find(|p| param(location, &name, p))
                {
                    push_label(p, &entry);
                    placed = true;
                }
            }
            (Direction::Request, Part::JsonPath | Part::FormField) => {
                let path = label_path_tokens(&raw.field);
                if let Some(content) = op
                    .get_mut("requestBody")
                    .and_then(|b| b.get_mut("content"))
                    .and_then(Value::as_object_mut)
                {
                    for media in content.values_mut() {
                        if let Some(schema) = media.get_mut("schema") {
                            placed |= label_schema_node(schema, &path, &entry);
                        }
                    }
                }
            }
            (Direction::Response, Part::JsonPath | Part::Header) => {
                let path = label_path_tokens(&raw.field);
                if let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) {
                    for r in responses.values_mut() {
                        if raw.location == Part::Header {
                            if let Some(h) = r
                                .get_mut("headers")
                                .and_then(|h| h.get_mut(raw.field.as_str()))
                            {
                                push_label(h, &entry);
                                placed = true;
                            }
                            continue;
                        }
                        if let Some(content) = r.get_mut("content").and_then(Value::as_object_mut) {
                            for media in content.values_mut() {
                                if let Some(schema) = media.get_mut("schema") {
                                    placed |= label_schema_node(schema, &path, &entry);
                                }
                            }
                        }
                    }
                }
            }
            _ => {}
        }
        let mut row = serde_json::to_value(&shown).unwrap_or(Value::Null);
        row["in_schema"] = json!(placed);
        map.push(row);
    }
    map
}

/// One document per service present in `records`, by service name.
pub fn documents(records: &[EndpointRecord]) -> BTreeMap<String, Value> {
    let mut services: Vec<&str> = records.iter().map(|r| r.key.service.as_str()).collect();
    services.sort_unstable();
    services.dedup();
    services
        .into_iter()
        .map(|s| (s.to_owned(), service_document(s, records)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_split_arrays() {
        assert_eq!(tokens("items[].id"), vec!["items", "[]", "id"]);
        assert_eq!(tokens("[]"), vec!["[]"]);
        assert_eq!(tokens("a.b[][]"), vec!["a", "b", "[]", "[]"]);
        assert_eq!(template_params("/a/{x}/b/{y}.json"), vec!["x", "y"]);
        assert_eq!(path_shape("/a/{x}/b/{y}.json"), "/a/{}/b/{}.json");
    }
}
