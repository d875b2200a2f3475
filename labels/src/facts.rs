//! The facts of one event that the labeller, the inventory and the detections all need,
//! computed once per event (issue 13) instead of once per consumer:
//!
//! - [`EventFacts`]: the event with its message bodies as bytes, computed on first use and
//!   then shared — transfer encoding (`base64`) removed and the content coding removed once,
//!   by the decoder's own [`apitap_decode::content::decode`] (gzip, deflate with the raw
//!   deflate fallback, br; decompression bombs capped), unless the sensor already did it
//!   (`Body::content_encoding`, schema 1.1);
//! - each body's one JSON walk ([`EventFacts::request_json`], [`crate::json`]): the labeller
//!   and the inventory read the same tokens;
//! - [`header`]: the one header lookup;
//! - the credential-name rules: [`is_api_key_header`], [`API_KEY_QUERY`],
//!   [`is_session_cookie`];
//! - [`percent_decode`] / [`percent_decode_into`] (RFC 3986 §2.1).
//!
//! Nothing here judges: these are facts about the bytes; labels, endpoints and detections
//! are made from them elsewhere.
use std::borrow::Cow;
use std::cell::OnceCell;

use apitap_schema::{ApiEvent, Body, BodyEncoding, Header};
use base64::Engine as _;

use crate::json::{JsonDoc, JsonTape};

/// Default cap on a body after its content coding is removed (`labels.max_inflated_bytes`).
pub const DEFAULT_MAX_DECODED_BYTES: usize = 4 << 20;

/// The value of the first header field called `name` (ASCII case-insensitive, RFC 9110
/// §5.1).
pub fn header<'a>(headers: &'a [Header], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value.as_str())
}

/// `name` in ASCII lower case (header names are case-insensitive, RFC 9110 §5.1), written
/// into `buf`: the callers lower-case every header of every event, and one reused buffer
/// spares an allocation per field (issue 18).
pub fn lower_into<'b>(name: &str, buf: &'b mut String) -> &'b str {
    buf.clear();
    buf.push_str(name);
    buf.make_ascii_lowercase();
    buf
}

/// Request header fields that carry an API key or access token (lower case).
pub const API_KEY_HEADERS: &[&str] = &[
    "x-api-key",
    "api-key",
    "apikey",
    "x-apikey",
    "x-api-token",
    "x-auth-token",
    "x-access-token",
    "x-token",
    "ocp-apim-subscription-key",
];

/// Whether a header field name is an API-key header ([`API_KEY_HEADERS`]).
pub fn is_api_key_header(name: &str) -> bool {
    API_KEY_HEADERS.iter().any(|k| name.eq_ignore_ascii_case(k))
}

/// Query parameter names that carry an API key or access token (lower case).
pub const API_KEY_QUERY: &[&str] = &[
    "api_key",
    "apikey",
    "api-key",
    "key",
    "access_token",
    "token",
    "auth_token",
];

/// Cookie names that carry sessions or session tokens (lower case), besides the name rules
/// of [`is_session_cookie`].
pub const SESSION_COOKIES: &[&str] = &[
    "jsessionid",
    "phpsessid",
    "asp.net_sessionid",
    "aspsessionid",
    "connect.sid",
    "express.sid",
    "sid",
    "sessid",
    "rack.session",
    "auth",
    "auth_token",
    "access_token",
    "token",
    "sso",
    "ssoid",
    "jwt",
    "remember_me",
];

/// Whether a cookie name is a session cookie: a [`SESSION_COOKIES`] name, any name containing
/// `session`, or one ending in `sessid`, `_sid`, `_sess` or `_token` (but not a CSRF token,
/// which anonymous visitors get too).
pub fn is_session_cookie(name: &[u8]) -> bool {
    let ends = |suffix: &[u8]| {
        name.len() >= suffix.len() && name[name.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
    };
    SESSION_COOKIES
        .iter()
        .any(|s| name.eq_ignore_ascii_case(s.as_bytes()))
        || contains_ci(name, b"session")
        || ends(b"sessid")
        || ends(b"_sid")
        || ends(b"_sess")
        || (ends(b"_token") && !contains_ci(name, b"csrf") && !contains_ci(name, b"xsrf"))
}

fn contains_ci(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

fn hexval(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

/// Percent-decoding (RFC 3986 §2.1) into `out`, `+` as a space when `plus` (form encoding,
/// WHATWG URL §5.1); invalid escapes stay as they are. Returns false, leaving `out`
/// untouched, when `raw` has nothing to decode.
pub fn percent_decode_into(raw: &[u8], plus: bool, out: &mut Vec<u8>) -> bool {
    if !raw.iter().any(|b| *b == b'%' || (plus && *b == b'+')) {
        return false;
    }
    out.clear();
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'%' if i + 2 < raw.len() => match (hexval(raw[i + 1]), hexval(raw[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 3;
                }
                _ => {
                    out.push(b'%');
                    i += 1;
                }
            },
            b'+' if plus => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    true
}

/// [`percent_decode_into`] of a string; invalid UTF-8 in the result is replaced (U+FFFD).
pub fn percent_decode(s: &str, plus: bool) -> Cow<'_, str> {
    let mut out = Vec::new();
    if !percent_decode_into(s.as_bytes(), plus, &mut out) {
        return Cow::Borrowed(s);
    }
    match String::from_utf8(out) {
        Ok(s) => Cow::Owned(s),
        Err(e) => Cow::Owned(String::from_utf8_lossy(e.as_bytes()).into_owned()),
    }
}

/// The request header fields the analyses look at, found in one pass over the request's
/// headers ([`EventFacts::request_headers`]). Values are borrowed from the event.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestHeaders<'a> {
    /// The first `Authorization` value (RFC 9110 §11.6.2).
    pub authorization: Option<&'a str>,
    /// An API-key header ([`is_api_key_header`]) is present.
    pub api_key_header: bool,
    /// The value of the last non-empty API-key header.
    pub api_key: Option<&'a str>,
    /// A session cookie ([`is_session_cookie`]) is present.
    pub session_cookie: bool,
    /// The value of the first session cookie at least 8 bytes long (a session token, not a
    /// flag such as `auth=1`).
    pub session_token: Option<&'a str>,
    /// `Upgrade: websocket` (RFC 6455 §4.1).
    pub upgrade_websocket: bool,
    /// The first `Content-Type` value.
    pub content_type: Option<&'a str>,
    /// The first `SOAPAction` value.
    pub soap_action: Option<&'a str>,
}

impl<'a> RequestHeaders<'a> {
    /// Scans `headers` once.
    pub fn of(headers: &'a [Header]) -> RequestHeaders<'a> {
        let mut scan = RequestHeaders::default();
        for h in headers {
            let name = h.name.as_bytes();
            // Dispatch on length and first byte before comparing whole names.
            match (name.len(), name.first().map(u8::to_ascii_lowercase)) {
                (13, Some(b'a')) if h.name.eq_ignore_ascii_case("authorization") => {
                    scan.authorization.get_or_insert(&h.value);
                }
                (6, Some(b'c')) if h.name.eq_ignore_ascii_case("cookie") => {
                    for (n, v) in cookie_pairs(&h.value) {
                        if is_session_cookie(n.as_bytes()) {
                            scan.session_cookie = true;
                            if scan.session_token.is_none() && v.len() >= 8 {
                                scan.session_token = Some(v);
                            }
                        }
                    }
                }
                (12, Some(b'c')) if h.name.eq_ignore_ascii_case("content-type") => {
                    scan.content_type.get_or_insert(&h.value);
                }
                (7, Some(b'u')) if h.name.eq_ignore_ascii_case("upgrade") => {
                    scan.upgrade_websocket |= h.value.eq_ignore_ascii_case("websocket");
                }
                (10, Some(b's')) if h.name.eq_ignore_ascii_case("soapaction") => {
                    scan.soap_action.get_or_insert(&h.value);
                }
                // Every API_KEY_HEADERS name starts with `a`, `x` or `o`.
                (6..=25, Some(b'a' | b'x' | b'o')) if is_api_key_header(&h.name) => {
                    scan.api_key_header = true;
                    if !h.value.is_empty() {
                        scan.api_key = Some(&h.value);
                    }
                }
                _ => {}
            }
        }
        scan
    }
}

/// `name=value` pairs of a `Cookie` header (RFC 6265 §4.2.1), trimmed; a pair without `=` is
/// a name with an empty value.
pub fn cookie_pairs(v: &str) -> impl Iterator<Item = (&str, &str)> {
    v.split(';')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
}

/// `name=value` pairs of a query string or form body (raw, not decoded).
pub fn query_pairs(q: &str) -> impl Iterator<Item = (&str, &str)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
}

/// A message body as the analyses read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyBytes<'a> {
    /// The payload bytes (at most the decode cap when `content_decoded`).
    pub bytes: Cow<'a, [u8]>,
    /// The content coding (or gRPC-Web text's base64) was removed here: offsets in `bytes`
    /// do not map to the event's `data` (a sensor-decoded body is not counted here: its
    /// `data` is `bytes`).
    pub content_decoded: bool,
    /// gRPC-Web text: base64 characters left undecoded from the first invalid quantum on
    /// (RFC 4648 §4), counted unscanned.
    pub invalid_text_chars: u64,
}

/// Why a body has no bytes to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// The body is empty.
    #[error("empty body")]
    Empty,
    /// The event's `data` is not valid for its `encoding` (bad base64, unknown encoding).
    #[error("body data cannot be decoded from its transfer encoding")]
    Undecodable,
    /// A content coding this build does not remove.
    #[error("unsupported content coding")]
    UnsupportedCoding,
    /// The coded bytes are corrupt.
    #[error("corrupt content coding")]
    CorruptCoding,
}

/// The bytes of `body` sent with `headers`: base64 removed, then the `Content-Encoding`
/// coding removed (at most `max_decoded_bytes` of output) unless the sensor already removed
/// it; then, for gRPC-Web text (`content-type: application/grpc-web-text`), the body's own
/// base64 (PROTOCOL-WEB), so the protobuf walk reads text and binary calls alike (issue 17).
pub fn body_bytes<'a>(
    body: &'a Body,
    headers: &[Header],
    max_decoded_bytes: usize,
) -> Result<BodyBytes<'a>, BodyError> {
    let b = coded_body_bytes(body, headers, max_decoded_bytes)?;
    let text = header(headers, "content-type")
        .is_some_and(|ct| apitap_decode::grpc::is_web_text(ct.as_bytes()));
    if !text {
        return Ok(b);
    }
    let d = apitap_decode::grpc::decode_web_text(&b.bytes, max_decoded_bytes);
    Ok(BodyBytes {
        bytes: Cow::Owned(d.bytes),
        content_decoded: true,
        invalid_text_chars: d.invalid_chars,
    })
}

fn coded_body_bytes<'a>(
    body: &'a Body,
    headers: &[Header],
    max_decoded_bytes: usize,
) -> Result<BodyBytes<'a>, BodyError> {
    if body.data.is_empty() {
        return Err(BodyError::Empty);
    }
    let raw: Cow<'a, [u8]> = match body.encoding {
        BodyEncoding::Utf8 => Cow::Borrowed(body.data.as_bytes()),
        BodyEncoding::Base64 => Cow::Owned(
            base64::engine::general_purpose::STANDARD
                .decode(&body.data)
                .map_err(|_| BodyError::Undecodable)?,
        ),
        BodyEncoding::Unknown => return Err(BodyError::Undecodable),
    };
    // Schema 1.1 sensors remove the content coding themselves.
    if body.content_encoding.is_some() {
        return Ok(BodyBytes {
            bytes: raw,
            content_decoded: false,
            invalid_text_chars: 0,
        });
    }
    let coding = header(headers, "content-encoding")
        .map(str::trim)
        .filter(|c| !c.is_empty() && !c.eq_ignore_ascii_case("identity"));
    let Some(coding) = coding else {
        return Ok(BodyBytes {
            bytes: raw,
            content_decoded: false,
            invalid_text_chars: 0,
        });
    };
    match apitap_decode::content::decode(coding, &raw, max_decoded_bytes, !body.truncated) {
        Ok(d) => Ok(BodyBytes {
            bytes: Cow::Owned(d.data),
            content_decoded: true,
            invalid_text_chars: 0,
        }),
        Err(apitap_decode::content::DecodeError::Unsupported) => Err(BodyError::UnsupportedCoding),
        Err(apitap_decode::content::DecodeError::Corrupt) => Err(BodyError::CorruptCoding),
    }
}

/// One event with its facts, each computed on first use and then shared by every analysis
/// of the event (the analyzer makes one per event and hands it to the labeller, the
/// inventory and the detections).
#[derive(Debug)]
pub struct EventFacts<'a> {
    /// The event.
    pub event: &'a ApiEvent,
    max_decoded_bytes: usize,
    request_headers: OnceCell<RequestHeaders<'a>>,
    request_body: OnceCell<Result<BodyBytes<'a>, BodyError>>,
    response_body: OnceCell<Result<BodyBytes<'a>, BodyError>>,
    request_json: OnceCell<JsonTape>,
    response_json: OnceCell<JsonTape>,
    rpc_method: OnceCell<Option<String>>,
    protobuf: Option<std::sync::Arc<crate::protobuf::ProtoSchema>>,
}

/// Longest RPC method name kept.
pub const MAX_RPC_METHOD_CHARS: usize = 64;

/// The method of a JSON-RPC call in `body`: a JSON object (or the first of a batch) with a
/// string `method` and either `jsonrpc` (JSON-RPC 2.0 §4) or `params` and `id` (JSON-RPC 1.0
/// §1.1), so that an ordinary body with a `method` member is not taken for one. The name
/// is cut to [`MAX_RPC_METHOD_CHARS`] of `[A-Za-z0-9_.:/ -]`.
pub fn json_rpc_method(body: &[u8]) -> Option<String> {
    if !maybe_json_rpc(body) {
        return None;
    }
    json_rpc_method_of(JsonTape::lex(body).doc(body))
}

/// Cheap test before [`json_rpc_method`]: an object or array mentioning `"method"` early.
fn maybe_json_rpc(body: &[u8]) -> bool {
    let head = &body[..body.len().min(1024)];
    head.iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|first| matches!(first, b'{' | b'['))
        && memchr::memmem::find(head, b"\"method\"").is_some()
}

/// [`json_rpc_method`] of a body already lexed.
fn json_rpc_method_of(doc: JsonDoc<'_>) -> Option<String> {
    let root = doc.root()?;
    let call = match root.json_type() {
        crate::json::JsonType::Array => root.items().next()?,
        _ => root,
    };
    let rpc =
        call.get("jsonrpc").is_some() || (call.get("params").is_some() && call.get("id").is_some());
    let m = call.get("method")?.as_str()?;
    rpc.then(|| {
        m.chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | ' ' | '/' | ':'))
            .take(MAX_RPC_METHOD_CHARS)
            .collect()
    })
}

impl<'a> EventFacts<'a> {
    /// The facts of `event`; bodies decode to at most `max_decoded_bytes`.
    pub fn new(event: &'a ApiEvent, max_decoded_bytes: usize) -> EventFacts<'a> {
        EventFacts {
            event,
            max_decoded_bytes,
            request_headers: OnceCell::new(),
            request_body: OnceCell::new(),
            response_body: OnceCell::new(),
            request_json: OnceCell::new(),
            response_json: OnceCell::new(),
            rpc_method: OnceCell::new(),
            protobuf: None,
        }
    }

    /// These facts with the operator's protobuf descriptor sets, which name the fields of
    /// gRPC bodies for the labeller and the inventory (issue 17).
    pub fn with_protobuf(
        mut self,
        schema: Option<std::sync::Arc<crate::protobuf::ProtoSchema>>,
    ) -> EventFacts<'a> {
        self.protobuf = schema;
        self
    }

    /// The protobuf descriptor sets, when configured.
    pub fn protobuf(&self) -> Option<&crate::protobuf::ProtoSchema> {
        self.protobuf.as_deref()
    }

    /// The JSON-RPC method the request calls ([`json_rpc_method`] of the decoded request
    /// body, when its content type is JSON or absent).
    pub fn rpc_method(&self) -> Option<&str> {
        self.rpc_method
            .get_or_init(|| {
                let ct = self.request_headers().content_type.unwrap_or("");
                if !(ct.is_empty() || ct.to_ascii_lowercase().contains("json")) {
                    return None;
                }
                let body = self.request_body().ok()?;
                if !maybe_json_rpc(&body.bytes) {
                    return None;
                }
                json_rpc_method_of(self.request_json()?)
            })
            .as_deref()
    }

    /// Cap on a decoded body.
    pub fn max_decoded_bytes(&self) -> usize {
        self.max_decoded_bytes
    }

    /// The request header fields the analyses look at ([`RequestHeaders`]).
    pub fn request_headers(&self) -> &RequestHeaders<'a> {
        self.request_headers
            .get_or_init(|| RequestHeaders::of(&self.event.request.headers))
    }

    /// The request body's bytes ([`body_bytes`]).
    pub fn request_body(&self) -> Result<&BodyBytes<'a>, BodyError> {
        let req = &self.event.request;
        self.request_body
            .get_or_init(|| body_bytes(&req.body, &req.headers, self.max_decoded_bytes))
            .as_ref()
            .map_err(|e| *e)
    }

    /// The response body's bytes ([`body_bytes`]); [`BodyError::Empty`] without a response.
    pub fn response_body(&self) -> Result<&BodyBytes<'a>, BodyError> {
        let Some(resp) = &self.event.response else {
            return Err(BodyError::Empty);
        };
        self.response_body
            .get_or_init(|| body_bytes(&resp.body, &resp.headers, self.max_decoded_bytes))
            .as_ref()
            .map_err(|e| *e)
    }

    /// The request body's bytes ([`EventFacts::request_body`]) lexed as JSON, once for every
    /// reader (whatever the content type says: the reader decides whether it is JSON).
    pub fn request_json(&self) -> Option<JsonDoc<'_>> {
        let body = self.request_body().ok()?;
        let tape = self.request_json.get_or_init(|| JsonTape::lex(&body.bytes));
        Some(tape.doc(&body.bytes))
    }

    /// The response body's bytes lexed as JSON ([`EventFacts::request_json`]).
    pub fn response_json(&self) -> Option<JsonDoc<'_>> {
        let body = self.response_body().ok()?;
        let tape = self
            .response_json
            .get_or_init(|| JsonTape::lex(&body.bytes));
        Some(tape.doc(&body.bytes))
    }

    /// A request header's value ([`header`]).
    pub fn request_header(&self, name: &str) -> Option<&'a str> {
        header(&self.event.request.headers, name)
    }

    /// A response header's value ([`header`]).
    pub fn response_header(&self, name: &str) -> Option<&'a str> {
        self.event
            .response
            .as_ref()
            .and_then(|r| header(&r.headers, name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn json_rpc_methods() {
        let m = |b: &str| json_rpc_method(b.as_bytes());
        assert_eq!(
            m(r#"{"jsonrpc":"2.0","method":"eth_call","id":1}"#).as_deref(),
            Some("eth_call")
        );
        assert_eq!(
            m(r#"{"method":"auth.login","params":["pw"],"id":1}"#).as_deref(),
            Some("auth.login")
        );
        assert_eq!(
            m(r#" [{"jsonrpc":"2.0","method":"a.b"}]"#).as_deref(),
            Some("a.b")
        );
        assert_eq!(m(r#"{"method":"card","amount":5}"#), None);
        assert_eq!(
            m(r#"{"jsonrpc":"2.0","method":"x<script>"}"#).as_deref(),
            Some("xscript")
        );
        assert_eq!(m(r#"{"jsonrpc":"2.0","method":5}"#), None);
        assert_eq!(m("method"), None);
        assert_eq!(
            m(&format!(
                r#"{{"jsonrpc":"2.0","method":"{}"}}"#,
                "a".repeat(500)
            ))
            .map(|s| s.len()),
            Some(64)
        );
    }

    fn h(name: &str, value: &str) -> Header {
        Header {
            name: name.into(),
            value: value.into(),
        }
    }

    fn gzip(b: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(b).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn percent_decoding_keeps_invalid_escapes() {
        let mut out = Vec::new();
        assert!(percent_decode_into(b"a%20b+c%zz%4", true, &mut out));
        assert_eq!(out, b"a b c%zz%4");
        assert!(!percent_decode_into(b"abc", true, &mut out));
        assert_eq!(percent_decode("a%40b+c", true), "a@b c");
        assert_eq!(percent_decode("a%40b+c", false), "a@b+c");
        assert_eq!(percent_decode("100%", true), "100%");
        assert_eq!(percent_decode("%41", false), "A");
        assert_eq!(percent_decode("%ff", false), "\u{fffd}");
    }

    #[test]
    fn credential_names() {
        assert!(is_api_key_header("X-API-Key"));
        assert!(is_api_key_header("Ocp-Apim-Subscription-Key"));
        assert!(!is_api_key_header("x-request-id"));
        for c in [
            "JSESSIONID",
            "laravel_session",
            "ci_session",
            "my_sid",
            "remember_token",
        ] {
            assert!(is_session_cookie(c.as_bytes()), "{c}");
        }
        for c in ["csrf_token", "_xsrf_token", "theme", "lang"] {
            assert!(!is_session_cookie(c.as_bytes()), "{c}");
        }
    }

    #[test]
    fn request_headers_in_one_pass() {
        let headers = [
            h("Authorization", "Digest x"),
            h("authorization", "Basic y"),
            h("Cookie", "theme=dark; auth=1; JSESSIONID=0123456789abcdef"),
            h("X-Api-Key", ""),
            h("x-apikey", "k-123"),
            h("Content-Type", "application/json"),
            h("Upgrade", "WebSocket"),
        ];
        let s = RequestHeaders::of(&headers);
        assert_eq!(s.authorization, Some("Digest x"));
        assert!(s.api_key_header);
        assert_eq!(s.api_key, Some("k-123"));
        assert!(s.session_cookie);
        assert_eq!(s.session_token, Some("0123456789abcdef"));
        assert_eq!(s.content_type, Some("application/json"));
        assert!(s.upgrade_websocket);
        assert_eq!(s.soap_action, None);
        assert_eq!(RequestHeaders::of(&[]), RequestHeaders::default());
    }

    #[test]
    fn bodies_are_decoded_once_with_the_decoders_limits() {
        let json = br#"{"a":1}"#;
        let gz = gzip(json);
        let body = Body::from_bytes(&gz, gz.len() as u64);
        let headers = [h("Content-Encoding", "gzip")];
        let b = body_bytes(&body, &headers, 1 << 20).unwrap();
        assert_eq!(&*b.bytes, json);
        assert!(b.content_decoded);
        // Already decoded by the sensor: read as is.
        let mut sensor = Body::from_bytes(json, gz.len() as u64);
        sensor.content_encoding = Some("gzip".into());
        let b = body_bytes(&sensor, &headers, 1 << 20).unwrap();
        assert_eq!(&*b.bytes, json);
        assert!(!b.content_decoded);
        // A bomb is capped.
        let zeros = gzip(&vec![0u8; 10 << 20]);
        let bomb = Body::from_bytes(&zeros, zeros.len() as u64);
        assert_eq!(body_bytes(&bomb, &headers, 4096).unwrap().bytes.len(), 4096);
        // Corrupt and unsupported codings are told apart.
        let junk = Body::from_bytes(&[0x55; 64], 64);
        assert_eq!(
            body_bytes(&junk, &headers, 4096),
            Err(BodyError::CorruptCoding)
        );
        assert_eq!(
            body_bytes(&junk, &[h("content-encoding", "zstd")], 4096),
            Err(BodyError::UnsupportedCoding)
        );
        assert_eq!(
            body_bytes(&Body::from_bytes(b"", 0), &headers, 4096),
            Err(BodyError::Empty)
        );
    }
}
