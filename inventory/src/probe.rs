//! Served operations only (R-INV-1): responses that say the method or the path does not
//! exist are *probes* against the path, not endpoints, and identifier evidence for path
//! words.
//!
//! A schema-driven fuzzer (or an attacker) tries every method on every path; the server
//! answers `405` to all but the real ones. Counting each of those as an endpoint turned a
//! 14-operation API into 146 endpoints. A request is a probe when its response is
//!
//! * `405 Method Not Allowed` or `501 Not Implemented`;
//! * `404 Not Found` on a path that never answered with a success (2xx/3xx) for any
//!   method (a `404` from a served path, `GET /users/{id}` for a missing user, is that
//!   endpoint's answer);
//! * an automatic `OPTIONS` answer: 2xx with `Allow` or `Access-Control-Allow-Methods` and
//!   no body (frameworks add these to every route);
//! * any `HEAD` request: frameworks answer `HEAD` for every `GET` route; it is counted
//!   against the path's `GET`;
//! * a `5xx` to a method that never succeeded on a path where another method did
//!   (frameworks that crash on methods they do not route);
//! * a *normalising redirect*: a `3xx` whose `Location` is the request's own path spelled
//!   differently (escapes, letter case, slashes), on a path whose method never
//!   succeeded: the server canonicalises every URL before routing it, so the redirect says
//!   nothing about a route (Datasette's `/x%5C` → `/x~5C`, `APPEND_SLASH`);
//! * a GraphQL/JSON-RPC operation the server rejected (error status, `errors` without
//!   `data`, a JSON-RPC `error`).
//!
//! Probes are counted per reason ([`crate::engine::InventoryCounters`]) and, when the path
//! is known, in the `probes` of one of its endpoints (by method and reason): visible in
//! `inventory show` and usable by detections, without creating endpoints or tree nodes.

use apitap_labels::facts::{EventFacts, header};
use apitap_labels::json::JsonType;
use serde::{Deserialize, Serialize};

/// Why a request was taken as a probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeReason {
    /// `405`.
    MethodNotAllowed,
    /// `501`.
    NotImplemented,
    /// `404` on a path that never succeeded.
    NotFound,
    /// A framework's automatic `OPTIONS` answer.
    AutoOptions,
    /// `HEAD` (answered by frameworks for every `GET` route).
    AutoHead,
    /// A server error (5xx) to a method that never succeeded on a path that other methods
    /// are served on (frameworks that crash on unknown methods: Datasette's `TRACE`).
    MethodError,
    /// A GraphQL or JSON-RPC operation the server rejected (an error status, GraphQL
    /// `errors` without `data`, a JSON-RPC `error`): operations exist once they are served.
    RejectedOperation,
    /// A `3xx` to the request's own path respelled, on a path that never succeeded: URL
    /// canonicalisation, not a route.
    NormalizingRedirect,
}

impl ProbeReason {
    /// Snake-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeReason::MethodNotAllowed => "method_not_allowed",
            ProbeReason::NotImplemented => "not_implemented",
            ProbeReason::NotFound => "not_found",
            ProbeReason::AutoOptions => "auto_options",
            ProbeReason::AutoHead => "auto_head",
            ProbeReason::RejectedOperation => "rejected_operation",
            ProbeReason::MethodError => "method_error",
            ProbeReason::NormalizingRedirect => "normalizing_redirect",
        }
    }
}

/// The probe reason of a request by its method and response alone. `NotFound`,
/// `MethodError` and `NormalizingRedirect` are only candidates: the caller decides from the
/// path's history.
pub fn probe_reason(method: &str, facts: &EventFacts<'_>) -> Option<ProbeReason> {
    let resp = facts.event.response.as_ref()?;
    match resp.status {
        405 => return Some(ProbeReason::MethodNotAllowed),
        501 => return Some(ProbeReason::NotImplemented),
        _ => {}
    }
    if method == "HEAD" {
        return Some(ProbeReason::AutoHead);
    }
    // Frameworks answer OPTIONS on every route (CORS preflight, `Allow`, a bare "ok"); only
    // an answer with a structured body describes a resource.
    if method == "OPTIONS" && (200..300).contains(&resp.status) {
        let ct = header(&resp.headers, "content-type").unwrap_or_default();
        let structured = resp.body.length_bytes > 0 && (ct.contains("json") || ct.contains("xml"));
        if !structured {
            return Some(ProbeReason::AutoOptions);
        }
    }
    if (300..400).contains(&resp.status)
        && let Some(loc) = header(&resp.headers, "location")
        && respelled(
            &facts.event.request.path,
            loc,
            facts.event.request.host.as_deref(),
        )
    {
        return Some(ProbeReason::NormalizingRedirect);
    }
    match resp.status {
        404 => Some(ProbeReason::NotFound),
        500..=599 => Some(ProbeReason::MethodError),
        _ => None,
    }
}

/// The path of a `Location` value on the request's own server: `/a/b` of `/a/b?x=1`, of
/// `http://host/a/b#f`. `None` for another host or a relative reference (`b`, `../b`).
fn location_path<'a>(loc: &'a str, host: Option<&str>) -> Option<&'a str> {
    let loc = loc.trim();
    let loc = loc.split(['?', '#']).next().unwrap_or_default();
    let rest = if let Some((scheme, rest)) = loc.split_once("://")
        && !scheme.is_empty()
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
    {
        Some(rest)
    } else {
        loc.strip_prefix("//")
    };
    match rest {
        Some(rest) => {
            let (authority, path) = rest.find('/').map_or((rest, "/"), |i| rest.split_at(i));
            host.is_some_and(|h| h.eq_ignore_ascii_case(authority))
                .then_some(path)
        }
        None => loc.starts_with('/').then_some(loc),
    }
}

/// A path segment as the bytes it stands for, whatever the escaping: `%XX` and the `~XX`
/// that some servers use decoded, ASCII letters lower-cased (an iterator: no allocation on
/// the per-event path).
fn unescaped(seg: &str) -> impl Iterator<Item = u8> + '_ {
    let b = seg.as_bytes();
    let hex = |c: Option<&u8>| c.and_then(|&c| char::from(c).to_digit(16));
    let mut i = 0;
    std::iter::from_fn(move || {
        let c = *b.get(i)?;
        if matches!(c, b'%' | b'~')
            && let (Some(hi), Some(lo)) = (hex(b.get(i + 1)), hex(b.get(i + 2)))
        {
            i += 3;
            // Two hex digits: at most 0xFF.
            return Some(
                u8::try_from(hi * 16 + lo)
                    .unwrap_or(u8::MAX)
                    .to_ascii_lowercase(),
            );
        }
        i += 1;
        Some(c.to_ascii_lowercase())
    })
}

/// Whether `loc` (a `Location` value) is the request path `path` spelled differently: same
/// server, same segments up to escapes (`%XX`, `~XX`), letter case and empty segments, but
/// not the same text (a redirect to the very same path, Post/Redirect/Get, is an answer).
pub fn respelled(path: &str, loc: &str, host: Option<&str>) -> bool {
    let Some(target) = location_path(loc, host) else {
        return false;
    };
    if target == path {
        return false;
    }
    let mut a = path.split('/').filter(|s| !s.is_empty());
    let mut b = target.split('/').filter(|s| !s.is_empty());
    loop {
        match (a.next(), b.next()) {
            (None, None) => return true,
            (Some(x), Some(y)) if unescaped(x).eq(unescaped(y)) => {}
            _ => return false,
        }
    }
}

/// Whether the server rejected the GraphQL/JSON-RPC operation of the request in `facts`.
pub fn operation_rejected(facts: &EventFacts<'_>) -> bool {
    let Some(resp) = facts.event.response.as_ref() else {
        return false;
    };
    if resp.status >= 400 {
        return true;
    }
    if !(200..300).contains(&resp.status) {
        return false;
    }
    // The body's shared tokens (the one walk of the body), read as `serde_json` would.
    let Some(o) = facts.response_json().and_then(|d| d.root()) else {
        return false;
    };
    if o.json_type() != JsonType::Object {
        return false;
    }
    let failed_graphql = o.get("errors").is_some()
        && o.get("data")
            .is_none_or(|d| d.json_type() == JsonType::Null);
    let failed_rpc = o.get("error").is_some() && o.get("result").is_none();
    failed_graphql || failed_rpc
}

/// Largest body searched for identifier evidence.
pub const MAX_IDENT_BODY_BYTES: usize = 64 * 1024;

/// Whether `key` names an identifier (`id`, `userId`, `user_id`, `username`, `slug`, …).
/// Other keys (`type`, `table`, `status`) often hold route names as values.
pub fn identifier_key(key: &[u8]) -> bool {
    let k = key.to_ascii_lowercase();
    k.ends_with(b"id")
        || k.ends_with(b"_key")
        || k.ends_with(b"name")
        || matches!(
            k.as_slice(),
            b"slug"
                | b"handle"
                | b"login"
                | b"email"
                | b"key"
                | b"code"
                | b"title"
                | b"pk"
                | b"uid"
        )
}

/// Whether `word` occurs in `body` as the JSON string value of an identifier member
/// (`"id": "robert.smith"`, `"username":"robert.smith"`): the resource names itself, so the
/// path word is an identifier.
pub fn body_names(body: &[u8], word: &str) -> bool {
    let w = word.as_bytes();
    if w.is_empty() || body.len() < w.len() + 2 {
        return false;
    }
    let body = &body[..body.len().min(MAX_IDENT_BODY_BYTES)];
    let finder = memchr::memmem::Finder::new(w);
    for at in finder.find_iter(body) {
        let end = at + w.len();
        if at == 0 || body[at - 1] != b'"' || body.get(end) != Some(&b'"') {
            continue;
        }
        // Back over `"key"\s*:\s*` before the value's opening quote.
        let mut i = at - 1;
        let skip_ws = |i: &mut usize| {
            while *i > 0 && body[*i - 1].is_ascii_whitespace() {
                *i -= 1;
            }
        };
        skip_ws(&mut i);
        if i == 0 || body[i - 1] != b':' {
            continue;
        }
        i -= 1;
        skip_ws(&mut i);
        if i == 0 || body[i - 1] != b'"' {
            continue;
        }
        let key_end = i - 1;
        let Some(key_start) = body[..key_end].iter().rposition(|&c| c == b'"') else {
            continue;
        };
        if key_end - key_start <= 65 && identifier_key(&body[key_start + 1..key_end]) {
            return true;
        }
    }
    false
}

/// Whether `word` is the user name or the password of the request's own `Authorization:
/// Basic` credentials (`None`: the request has none). A path that names its caller
/// (`/basic-auth/alice/london` requested as `alice:london`, `/users/alice` by `alice`) is
/// about a resource of the caller: the word is a value, not a route.
pub fn credentials_name(facts: &EventFacts<'_>, word: &str) -> Option<bool> {
    use base64::Engine as _;
    let value = facts.request_header("authorization")?;
    let (scheme, rest) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") || rest.len() > 1024 {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let text = std::str::from_utf8(&decoded).ok()?;
    let (user, password) = text.split_once(':').unwrap_or((text, ""));
    Some(!word.is_empty() && (word == user || word == password))
}

/// Identifier evidence for path word `seg` of the request in `facts`: `Some(true)` when a
/// JSON body of the request or its response carries it as a string value, or it is the
/// user name or password of the request's own Basic credentials that the server accepted
/// (2xx); `Some(false)` when there was a JSON body to look in; `None` otherwise.
pub fn identifier_evidence(facts: &EventFacts<'_>, seg: &str) -> Option<bool> {
    let json = |ct: Option<&str>| ct.is_some_and(|c| c.contains("json"));
    let ev = facts.event;
    // Credentials are positive evidence only, and only once the server accepted them (a
    // 401 to wrong credentials names nobody); a word that is not the caller's name may
    // still be another user's (`/users/bob` fetched by an admin).
    let accepted = ev
        .response
        .as_ref()
        .is_some_and(|r| (200..300).contains(&r.status));
    if accepted && credentials_name(facts, seg) == Some(true) {
        return Some(true);
    }
    let mut looked = false;
    if let Some(resp) = &ev.response
        && (200..300).contains(&resp.status)
        && json(header(&resp.headers, "content-type"))
        && let Ok(b) = facts.response_body()
        && !b.bytes.is_empty()
    {
        looked = true;
        if body_names(&b.bytes, seg) {
            return Some(true);
        }
    }
    if json(facts.request_header("content-type"))
        && let Ok(b) = facts.request_body()
        && !b.bytes.is_empty()
    {
        looked = true;
        if body_names(&b.bytes, seg) {
            return Some(true);
        }
    }
    looked.then_some(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalising_redirects_are_the_path_respelled() {
        let h = Some("127.0.0.1:8001");
        // Datasette re-encodes `%XX` as `~XX`; APPEND_SLASH; letter case; absolute form.
        assert!(respelled(
            "/schemathesis-probe%5C%1B%01",
            "/schemathesis-probe~5C~1B~01",
            h
        ));
        assert!(respelled(
            "/shop/customers/C.i.json",
            "/shop/customers/C~2Ei~2Ejson",
            h
        ));
        assert!(respelled("/users", "/users/", h));
        assert!(respelled(
            "/Users/Me",
            "http://127.0.0.1:8001/users/me?x=1",
            h
        ));
        // Real redirects go elsewhere, to another host, or to the same path (PRG).
        assert!(!respelled("/redirect/3", "/relative-redirect/2", h));
        assert!(!respelled("/redirect/1", "/get", h));
        assert!(!respelled("/login", "/login?next=%2F", h));
        assert!(!respelled("/users", "http://other.example/users/", h));
        assert!(!respelled("/a/b", "b/", h));
        assert!(!respelled("/a/b", "/a/b/c", h));
        assert!(!respelled("/files/%E5", "/files/%E6", h));
        assert!(!respelled("/foo_bar", "/foo-bar", h));
    }

    #[test]
    fn basic_credentials_name_their_path_words() {
        use apitap_schema::test_support::EventBuilder;
        // `alice:london`
        let e = EventBuilder::get("/basic-auth/alice/london")
            .header("Authorization", "Basic YWxpY2U6bG9uZG9u")
            .status(200)
            .build();
        let f = EventFacts::new(&e, 1 << 16);
        assert_eq!(identifier_evidence(&f, "alice"), Some(true));
        assert_eq!(identifier_evidence(&f, "london"), Some(true));
        assert_eq!(credentials_name(&f, "basic-auth"), Some(false));
        // Not the caller's name: no evidence either way (no body to look in).
        assert_eq!(identifier_evidence(&f, "basic-auth"), None);
        // Rejected credentials name nobody.
        let e = EventBuilder::get("/basic-auth/alice/london")
            .header("Authorization", "Basic YWxpY2U6bG9uZG9u")
            .status(401)
            .build();
        let f = EventFacts::new(&e, 1 << 16);
        assert_eq!(identifier_evidence(&f, "alice"), None);
        let e = EventBuilder::get("/basic-auth/alice/london")
            .header("Authorization", "Bearer YWxpY2U6bG9uZG9u")
            .status(200)
            .build();
        let f = EventFacts::new(&e, 1 << 16);
        assert_eq!(credentials_name(&f, "alice"), None);
    }

    #[test]
    fn names_only_identifier_values() {
        assert!(body_names(
            br#"{"username": "robert.smith"}"#,
            "robert.smith"
        ));
        assert!(body_names(
            br#"[{"id":"a"},{"userId" : "robert.smith" }]"#,
            "robert.smith"
        ));
        assert!(!body_names(br#"{"robert.smith": 1}"#, "robert.smith"));
        assert!(!body_names(br#"{"table": "customers"}"#, "customers"));
        assert!(!body_names(br#"{"data": [{"type": "users"}]}"#, "users"));
        assert!(!body_names(br#"["robert.smith"]"#, "robert.smith"));
        assert!(!body_names(br#"{"u": "robert.smithson"}"#, "robert.smith"));
        assert!(!body_names(br#"{"u": "xrobert.smith"}"#, "robert.smith"));
        assert!(!body_names(b"", "a"));
    }
}
