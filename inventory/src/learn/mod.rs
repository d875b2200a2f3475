//! Endpoint shape learning (R-INV-2, R-INV-4): what one endpoint's requests and responses
//! look like, built up event by event.
//!
//! Everything here is mergeable ([`EndpointData::absorb`]): when templating folds two
//! endpoints into one, or two analyzer instances share a store, their data adds up. Nothing
//! keeps a raw value: parameters and fields are kept by name with their inferred types,
//! formats, a presence count and up to [`MAX_EXAMPLES`] example *shapes* ([`mask`]); header
//! and cookie values, query values and bodies are never stored (R-OPS-3). Memory per endpoint
//! is bounded: parameters per location and fields per body are capped and the excess counted.

use std::collections::BTreeMap;
use std::net::IpAddr;

use apitap_labels::facts::{
    API_KEY_HEADERS, API_KEY_QUERY, BodyBytes, BodyError, EventFacts, RequestHeaders, cookie_pairs,
    header, is_session_cookie, percent_decode, query_pairs,
};
use apitap_labels::json::JsonType;
use apitap_schema::ApiEvent;
use serde::{Deserialize, Serialize};

use crate::shape::{SegmentShape, TypeSet, ValueType, mask, string_format};

mod auth;
mod body;
mod clients;
mod model;
mod protobuf;
mod sketch;
mod style;

pub use auth::*;
pub use body::*;
pub use clients::*;
pub use model::*;
pub use sketch::*;
pub use style::*;

/// The response fingerprint used by templating: status class, body kind and the top-level
/// structure (JSON object keys, or element keys of a top-level array; XML root element).
pub fn response_fingerprint(shared: &EventFacts<'_>) -> u64 {
    let event = shared.event;
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    let Some(resp) = &event.response else {
        0u8.hash(&mut h);
        return h.finish();
    };
    (resp.status / 100).hash(&mut h);
    let media = header(&resp.headers, "content-type")
        .map(media_type)
        .unwrap_or_default();
    let kind = body_kind(&media);
    media.split('/').next().unwrap_or_default().hash(&mut h);
    kind.hash(&mut h);
    if kind == Some("json")
        && let Some(bytes) = learn_bytes(shared.response_body())
    {
        let mut local = None;
        if let Some(v) = json_doc(bytes, shared.response_json(), &mut local).root() {
            let obj = match v.json_type() {
                JsonType::Array => {
                    1u8.hash(&mut h);
                    v.items().next()
                }
                JsonType::Object => Some(v),
                _ => None,
            };
            if let Some(o) = obj.filter(|o| o.json_type() == JsonType::Object) {
                let members = o.members();
                let mut keys: Vec<&str> =
                    members.iter().map(|(k, _)| key_name(k)).take(64).collect();
                keys.sort_unstable();
                keys.dedup();
                keys.hash(&mut h);
            }
        }
    }
    h.finish()
}

/// The inventory's per-request facts, computed once and shared by templating and learning,
/// beside the event's shared facts (decoded bodies).
#[derive(Debug, Clone)]
pub struct RequestFacts<'f, 'a> {
    /// The event's shared facts.
    pub shared: &'f EventFacts<'a>,
    /// Auth scheme.
    pub auth: AuthScheme,
    /// Style and operation.
    pub style: StyleInfo,
    /// The request's `Content-Type` value.
    pub content_type: Option<&'a str>,
}

impl<'f, 'a> RequestFacts<'f, 'a> {
    /// Computes the facts of the event (one pass over its request headers).
    pub fn of(shared: &'f EventFacts<'a>) -> RequestFacts<'f, 'a> {
        let event = shared.event;
        let scan = shared.request_headers();
        RequestFacts {
            shared,
            auth: auth_scheme_with(event, scan),
            style: style_with(shared),
            content_type: scan.content_type,
        }
    }
}

/// Records `event` into `data`. `sample` says whether parameters and bodies are inspected
/// this time (shape learning is sampled; counts, timings and clients never are).
pub fn learn(
    data: &mut EndpointData,
    event: &ApiEvent,
    facts: &RequestFacts<'_, '_>,
    path_values: &[(u16, &str)],
    clients: &ClientClassifier,
    sample: bool,
) {
    let now = event.request_start_unix_us;
    // The lower-cased name of each header in turn.
    let mut name_buf = String::new();
    data.hits += 1;
    if data.first_seen_unix_us == 0 || now < data.first_seen_unix_us {
        data.first_seen_unix_us = now;
    }
    data.last_seen_unix_us = data.last_seen_unix_us.max(now);
    bump(&mut data.styles, facts.style.style);
    bump(&mut data.auth, facts.auth.as_str());
    data.clients.insert_ip(event.client.ip);
    if clients.is_internal(event.client.ip) {
        data.exposure.internal_requests += 1;
    } else {
        data.exposure.internet_requests += 1;
    }
    if let Some(p) = clients.partner(event.client.ip) {
        bump(&mut data.exposure.partners, p);
    }
    data.request_bytes.record(event.request.body.length_bytes);
    if let Some(l) = event.latency_us {
        data.latency_us.record(l);
    }
    let req = &event.request;
    let req_ct = facts.content_type.unwrap_or_default();
    let req_media = media_type(req_ct);
    if !req_media.is_empty() {
        bump(&mut data.request.content_types, &req_media);
    }
    if sample {
        let r = &mut data.request;
        r.samples += 1;
        for (index, value) in path_values {
            let decoded = percent_decode(value, false);
            let key = index.to_string();
            if data.path_params.len() < MAX_PARAMS || data.path_params.contains_key(&key) {
                data.path_params.entry(key).or_default().observe(
                    ValueType::of_text(&decoded),
                    Some(&decoded),
                    now,
                );
            }
        }
        if let Some(q) = &req.query {
            for (name, value) in query_pairs(q) {
                let name = percent_decode(name, false).into_owned();
                let value = percent_decode(value, true).into_owned();
                // Keys and tokens in the query are credentials: no shape kept.
                let credential = API_KEY_QUERY.iter().any(|k| name.eq_ignore_ascii_case(k));
                r.query.observe(
                    key_name(&name),
                    ValueType::of_text(&value),
                    (!credential).then_some(value.as_str()),
                    now,
                    MAX_PARAMS,
                );
            }
        }
        for h in &req.headers {
            let lname = apitap_labels::facts::lower_into(&h.name, &mut name_buf);
            match lname {
                "cookie" => {
                    for (name, value) in cookie_pairs(&h.value) {
                        // Session cookies are credentials: not even their shape is kept.
                        let text = (!is_session_cookie(name.as_bytes())).then_some(value);
                        r.cookies.observe(
                            key_name(name),
                            ValueType::of_text(value),
                            text,
                            now,
                            MAX_PARAMS,
                        );
                    }
                }
                // The scheme is the auth scheme; the credential is never looked at further.
                "authorization" | "proxy-authorization" => {
                    r.headers
                        .observe(lname, ValueType::String, None, now, MAX_PARAMS);
                }
                _ => {
                    let t = ValueType::of_text(&h.value);
                    // Shapes of credentials-like headers are not kept either.
                    let text = (!API_KEY_HEADERS.contains(&lname)).then_some(h.value.as_str());
                    r.headers.observe(lname, t, text, now, MAX_PARAMS);
                }
            }
        }
        if let Some(kind) = body_kind(&req_media)
            && req.body.captured_bytes > 0
            && let Some(bytes) = learn_bytes(facts.shared.request_body())
        {
            let shape = r.bodies.entry(kind.to_owned()).or_default();
            let json = (kind == "json")
                .then(|| facts.shared.request_json())
                .flatten();
            learn_body(kind, bytes, json, req_ct, shape, now);
        } else if apitap_labels::protobuf::is_protobuf_grpc(req_ct.as_bytes()) {
            protobuf::learn_grpc(facts, false, &mut r.bodies, now);
        }
    }
    match &event.response {
        None => data.no_response += 1,
        Some(resp) => {
            data.response_bytes.record(resp.body.length_bytes);
            let key = resp.status;
            if !data.responses.contains_key(&key) && data.responses.len() >= MAX_KINDS {
                return;
            }
            let shape = data.responses.entry(key).or_default();
            shape.count += 1;
            let ct = header(&resp.headers, "content-type").unwrap_or_default();
            let media = media_type(ct);
            if !media.is_empty() {
                bump(&mut shape.content_types, &media);
            }
            if sample {
                shape.samples += 1;
                for h in &resp.headers {
                    let lname = apitap_labels::facts::lower_into(&h.name, &mut name_buf);
                    shape.headers.observe(
                        lname,
                        ValueType::of_text(&h.value),
                        None,
                        now,
                        MAX_PARAMS,
                    );
                }
                if let Some(kind) = body_kind(&media)
                    && resp.body.captured_bytes > 0
                    && let Some(bytes) = learn_bytes(facts.shared.response_body())
                {
                    let b = shape.bodies.entry(kind.to_owned()).or_default();
                    let json = (kind == "json")
                        .then(|| facts.shared.response_json())
                        .flatten();
                    learn_body(kind, bytes, json, ct, b, now);
                } else if apitap_labels::protobuf::is_protobuf_grpc(ct.as_bytes()) {
                    protobuf::learn_grpc(facts, true, &mut shape.bodies, now);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use apitap_schema::Header;
    use apitap_schema::test_support::EventBuilder;

    /// `method path?query` with `headers`, a `(content type, text)` request body (no
    /// `Content-Type` header when the type is empty), answered `status` with a
    /// `(content type, text)` body, from an internet client to `api`.
    pub(crate) fn ev(
        method: &str,
        path: &str,
        query: Option<&str>,
        headers: &[(&str, &str)],
        body: (&str, &str),
        status: u16,
        resp: (&str, &str),
    ) -> ApiEvent {
        let mut b = EventBuilder::new(method, path)
            .host("api")
            .client("203.0.113.9:5000")
            .server("10.0.0.1:80")
            .headers(headers)
            .status(status)
            .response_body(resp.0, resp.1);
        if let Some(q) = query {
            b = b.query(q);
        }
        b = match body {
            ("", text) => b.body_bytes(text),
            (ct, text) => b.body(ct, text),
        };
        b.build()
    }

    fn shared(e: &ApiEvent) -> EventFacts<'_> {
        EventFacts::new(e, apitap_labels::facts::DEFAULT_MAX_DECODED_BYTES)
    }

    #[test]
    fn learns_params_bodies_and_responses_without_values() {
        let e = ev(
            "POST",
            "/users/42",
            Some("page=2&q=alice"),
            &[
                (
                    "Authorization",
                    "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln",
                ),
                ("Cookie", "sid=abc; theme=dark"),
                ("X-Trace", "abc123"),
            ],
            (
                "application/json",
                r#"{"name":"Bob Smith","card":{"number":"4111111111111111"},"tags":["a"]}"#,
            ),
            201,
            ("application/json", r#"{"id":7,"email":"bob@example.com"}"#),
        );
        let mut d = EndpointData::default();
        learn(
            &mut d,
            &e,
            &RequestFacts::of(&shared(&e)),
            &[(1, "42")],
            &ClientClassifier::default(),
            true,
        );
        assert_eq!(d.auth_schemes(), vec!["bearer_jwt"]);
        assert_eq!(
            d.request.query.fields["page"].types,
            ValueType::Integer.bit()
        );
        assert!(d.request.cookies.fields.contains_key("sid"));
        let body = &d.request.bodies["json"].fields.fields;
        assert!(body.contains_key("card.number"), "{body:?}");
        assert!(body.contains_key("tags[]"), "{body:?}");
        assert_eq!(body["name"].examples, vec!["Aaa Aaaaa"]);
        let resp = &d.responses[&201].bodies["json"].fields.fields;
        assert_eq!(resp["email"].formats, vec!["email"]);
        assert_eq!(d.exposure_class(), "internet_facing");
        let text = serde_json::to_string(&d).unwrap();
        for secret in ["alice", "Bob", "4111", "abc123", "dark", "eyJ", "bob@"] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
        let back: EndpointData = serde_json::from_str(&text).unwrap();
        assert_eq!(back, d);
    }

    /// The operation of a compressed GraphQL request is read from its decoded body (the
    /// event's shared facts), not from the coded bytes.
    #[test]
    fn styles_read_the_decoded_request_body() {
        use std::io::Write as _;
        let q = br#"{"query":"query Me { me { id } }","operationName":"Me"}"#;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(q).unwrap();
        let e = apitap_schema::test_support::EventBuilder::post("/graphql")
            .header("Content-Type", "application/json")
            .header("Content-Encoding", "gzip")
            .body_bytes(gz.finish().unwrap())
            .build();
        let s = style_of(&e);
        assert_eq!((s.style, s.operation.as_str()), ("graphql", "query Me"));
    }

    #[test]
    fn grpc_operations_come_from_the_decoded_call() {
        let mut e = apitap_schema::test_support::EventBuilder::post("/bank.v1.Accounts/GetAccount")
            .header("Content-Type", "application/grpc")
            .build();
        // Content type alone: gRPC without an operation.
        assert_eq!(
            (style_of(&e).style, style_of(&e).operation.as_str()),
            ("grpc", "")
        );
        e.grpc = Some(apitap_schema::Grpc {
            service: "bank.v1.Accounts".into(),
            method: "GetAccount".into(),
            status: Some(0),
            request_messages: 1,
            response_messages: 1,
            ..apitap_schema::Grpc::default()
        });
        let s = style_of(&e);
        assert_eq!(
            (s.style, s.operation.as_str()),
            ("grpc", "bank.v1.Accounts/GetAccount")
        );
    }

    #[test]
    fn detects_styles_and_operations() {
        let gql = ev(
            "POST",
            "/graphql",
            None,
            &[],
            (
                "application/json",
                r#"{"query":"query GetUser($id: ID!) { user(id: $id) { name } }","variables":{"id":1}}"#,
            ),
            200,
            ("application/json", "{}"),
        );
        assert_eq!(
            style_of(&gql),
            StyleInfo {
                style: "graphql",
                operation: "query GetUser".into()
            }
        );
        let named = ev(
            "POST",
            "/api",
            None,
            &[],
            (
                "application/json",
                r#"{"query":"mutation { x }","operationName":"DoIt"}"#,
            ),
            200,
            ("application/json", "{}"),
        );
        assert_eq!(style_of(&named).operation, "mutation DoIt");
        let rpc = ev(
            "POST",
            "/rpc",
            None,
            &[],
            (
                "application/json",
                r#"{"jsonrpc":"2.0","method":"eth_getBalance","id":1}"#,
            ),
            200,
            ("application/json", "{}"),
        );
        assert_eq!(
            style_of(&rpc),
            StyleInfo {
                style: "json_rpc",
                operation: "eth_getBalance".into()
            }
        );
        // JSON-RPC 1.0 (no version member): Deluge's web API.
        let rpc1 = ev(
            "POST",
            "/json",
            None,
            &[],
            (
                "application/json",
                r#"{"method":"auth.login","params":["pw"],"id":1}"#,
            ),
            200,
            (
                "application/json",
                r#"{"result": false, "error": null, "id": 1}"#,
            ),
        );
        assert_eq!(
            style_of(&rpc1),
            StyleInfo {
                style: "json_rpc",
                operation: "auth.login".into()
            }
        );
        // An ordinary JSON body with a `method` member is not an RPC call.
        let form = ev(
            "POST",
            "/api/payments",
            None,
            &[],
            ("application/json", r#"{"method":"card","amount":5}"#),
            200,
            ("application/json", "{}"),
        );
        assert_eq!(style_of(&form).style, "rest");
        let soap = ev(
            "POST",
            "/ws",
            None,
            &[],
            (
                "text/xml",
                r#"<?xml version="1.0"?><soap:Envelope xmlns:soap="x"><soap:Body><m:GetBalance><m:Acct>1</m:Acct></m:GetBalance></soap:Body></soap:Envelope>"#,
            ),
            200,
            ("text/xml", ""),
        );
        assert_eq!(
            style_of(&soap),
            StyleInfo {
                style: "soap",
                operation: "GetBalance".into()
            }
        );
        let plain_xml = ev(
            "POST",
            "/x",
            None,
            &[],
            ("application/xml", "<order><id>1</id></order>"),
            200,
            ("text/xml", ""),
        );
        assert_eq!(style_of(&plain_xml).style, "rest");
        let grpc = ev(
            "POST",
            "/pkg.Svc/Get",
            None,
            &[],
            ("application/grpc", ""),
            200,
            ("application/grpc", ""),
        );
        assert_eq!(style_of(&grpc).style, "grpc");
        let ws = ev(
            "GET",
            "/ws",
            None,
            &[("Upgrade", "websocket")],
            ("", ""),
            101,
            ("", ""),
        );
        assert_eq!(style_of(&ws).style, "websocket");
    }

    #[test]
    fn auth_schemes() {
        let with = |h: &[(&str, &str)], q: Option<&str>| {
            auth_scheme(&ev("GET", "/", q, h, ("", ""), 200, ("", ""))).as_str()
        };
        assert_eq!(with(&[("Authorization", "Basic dTpw")], None), "basic");
        assert_eq!(with(&[("authorization", "Bearer opaque")], None), "bearer");
        assert_eq!(with(&[("X-API-Key", "k")], None), "api_key_header");
        assert_eq!(with(&[], Some("api_key=k")), "api_key_query");
        assert_eq!(with(&[("Cookie", "JSESSIONID=1")], None), "cookie_session");
        assert_eq!(with(&[("Cookie", "theme=1")], None), "none");
    }

    #[test]
    fn xml_form_and_multipart_fields() {
        let mut s = BodyShape::default();
        learn_body("xml", b"<a><b x=\"1\">7</b><c/></a>", None, "", &mut s, 0);
        assert!(s.fields.fields.contains_key("a.b") && s.fields.fields.contains_key("a.c"));
        let mut f = BodyShape::default();
        learn_body("form", b"user=bob&count=3", None, "", &mut f, 0);
        assert_eq!(f.fields.fields["count"].types, ValueType::Integer.bit());
        let mut m = BodyShape::default();
        let body = b"--XX\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nhi\r\n--XX\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\n\r\ndata\r\n--XX--\r\n";
        learn_body(
            "multipart",
            body,
            None,
            "multipart/form-data; boundary=XX",
            &mut m,
            0,
        );
        assert!(m.fields.fields.contains_key("title") && m.fields.fields.contains_key("file"));
    }

    #[test]
    fn histogram_and_sketch() {
        let mut h = Histogram::default();
        for v in 1..=1000 {
            h.record(v);
        }
        let p50 = h.quantile(0.5).unwrap();
        assert!((470..=530).contains(&p50), "{p50}");
        assert_eq!(h.quantile(1.0), Some(1000));
        let mut s = DistinctSketch::default();
        for i in 0..1000u32 {
            s.insert_ip(IpAddr::from(i.to_be_bytes()));
        }
        let est = s.estimate();
        assert!((900..=1100).contains(&est), "{est}");
        let mut small = DistinctSketch::default();
        for i in 0..10u32 {
            small.insert_ip(IpAddr::from(i.to_be_bytes()));
        }
        assert_eq!(small.estimate(), 10);
        let text = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<DistinctSketch>(&text).unwrap(), s);
    }

    /// A schema 1.1 sensor removes the coding itself and keeps the `Content-Encoding` header:
    /// the body is read as is, not inflated a second time (which failed and left the
    /// endpoint's response shape empty for every gzip-serving API).
    #[test]
    fn bodies_the_sensor_decoded_are_learned() {
        let mut e = ev(
            "GET",
            "/users/7",
            None,
            &[],
            ("", ""),
            200,
            ("application/json", r#"{"id":7,"email":"bob@example.com"}"#),
        );
        let resp = e.response.as_mut().unwrap();
        resp.headers.push(Header {
            name: "Content-Encoding".into(),
            value: "gzip".into(),
        });
        resp.body.content_encoding = Some("gzip".into());
        let mut d = EndpointData::default();
        learn(
            &mut d,
            &e,
            &RequestFacts::of(&shared(&e)),
            &[],
            &ClientClassifier::default(),
            true,
        );
        let fields = &d.responses[&200].bodies["json"].fields.fields;
        assert_eq!(fields["email"].formats, vec!["email"]);
    }

    #[test]
    fn gzip_bodies_are_inflated() {
        use std::io::Write as _;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(br#"{"a":1}"#).unwrap();
        let gz = enc.finish().unwrap();
        let body = apitap_schema::Body::from_bytes(&gz, gz.len() as u64);
        let headers = vec![apitap_schema::Header {
            name: "Content-Encoding".into(),
            value: "gzip".into(),
        }];
        let decoded = apitap_labels::facts::body_bytes(&body, &headers, 1 << 20);
        assert_eq!(
            learn_bytes(decoded.as_ref().map_err(|e| *e)),
            Some(&br#"{"a":1}"#[..])
        );
    }
}
