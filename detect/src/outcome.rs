//! Outcome inference for login and OTP-verify attempts (issue 7 "Login outcome inference",
//! issue 14 "Login outcome without help"): what the application itself did with the
//! credentials, read from the answer's structure, and learnt per endpoint where the answer
//! alone does not say. Every verdict names the [`Signal`] that decided it.
//!
//! Rules, first match wins ([`OutcomeRules::read`] is the stateless part, shared with the
//! weak-point rules; [`OutcomeLearner`] adds what each endpoint taught):
//! 1. no response, or 5xx → unknown (the server failed, not the credential); a `GET`/`HEAD`
//!    without credentials (the login page itself) is not an attempt;
//! 2. a per-endpoint status list matches (`[[detect.login.endpoints]]`) → that outcome;
//! 3. 400, 401 (RFC 9110 §15.5.2), 403, 422, 429 → failure;
//! 4. a per-endpoint success cookie is set → success;
//! 5. the body says failure in its structure: a JSON status-like field (`success`/`ok`/
//!    `result`/`authenticated` false, `status`/`result` "fail"/"error"/…), a non-empty `error`/
//!    `errors` member (JSON-RPC 2.0 §5, GraphQL §7.1.2 errors at any of the first three
//!    levels), an XML-RPC `<fault>` → failure;
//! 6. an HTML answer with a password input (the login form shown again) → failure;
//! 7. a 3xx back to a login or error page, or to the request's own path → failure;
//! 8. a token issued in the body (a `*token*`/`jwt` member holding a long string, or a JWT,
//!    RFC 7519 §3) → success; the JSON says success (`success: true`, `status: "ok"`) → success;
//! 9. a failure body marker (`invalid`, `incorrect`, `failed`, `错误`, … in the first 4 KiB;
//!    the endpoint's own markers replace these) → failure;
//! 10. a session cookie issued (the labels crate's session-cookie names, CSRF cookies
//!     excluded, deletions ignored) that this endpoint does not also set on failed attempts
//!     (learnt) → success; a success marker → success;
//! 11. any other 3xx → success (into the application);
//! 12. HTTP Basic credentials answered with 2xx → success (RFC 7617: the server accepted them);
//! 13. any other 2xx: the answer's *shape* (status, media type, JSON member names, redirect
//!     target, length class) decides: a shape this endpoint answered with a success → success;
//!     otherwise failure: an application that logged someone in hands the client something
//!     (a session, a token, a redirect into the application), and this answer handed nothing
//!     ([`Signal::DiffersFromSuccess`] once the endpoint's success answer is known,
//!     [`Signal::NoCredentialIssued`] before).
//!
//! The per-endpoint memory is bounded ([`OutcomeLearner`]: a few shapes and cookie names per
//! endpoint, endpoints evicted oldest first and counted).
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::LazyLock;

use apitap_labels::facts::{EventFacts, header, is_session_cookie};
use apitap_labels::json::{JsonDoc, JsonTape, JsonType, JsonValue};
use memchr::memmem::Finder;
use serde::Serialize;

use crate::bounded::{BoundedMap, Touched};
use crate::config::{EndpointOutcomeRule, LoginConfig};

/// Outcome of an authentication attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Credentials accepted.
    Success,
    /// Credentials rejected (or the attempt was blocked).
    Failure,
    /// Cannot tell.
    Unknown,
}

/// What decided an outcome (alerts say it, so an analyst can check the inference).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Signal {
    /// No response was captured.
    NoResponse,
    /// The server failed (5xx).
    ServerError,
    /// A `GET`/`HEAD` without credentials: the login page, not an attempt.
    NotAnAttempt,
    /// A `[[detect.login.endpoints]]` status list.
    ConfiguredStatus,
    /// A `[[detect.login.endpoints]]` success cookie.
    ConfiguredCookie,
    /// A rejecting status (400, 401, 403, 422, 429).
    Status,
    /// A JSON status-like member, an `error(s)` member or an XML-RPC fault says failure.
    BodySaysFailure,
    /// The HTML login form was shown again.
    LoginFormAgain,
    /// A redirect back to a login or error page.
    RedirectToLogin,
    /// A token in the body.
    TokenIssued,
    /// A JSON status-like member says success.
    BodySaysSuccess,
    /// A failure body marker.
    FailureMarker,
    /// A session cookie this endpoint does not set on failures.
    SessionIssued,
    /// A success body marker.
    SuccessMarker,
    /// A redirect into the application.
    RedirectIntoApp,
    /// HTTP Basic credentials answered with 2xx.
    BasicAccepted,
    /// The same answer shape as an earlier success on this endpoint.
    SameAnswerAsSuccess,
    /// A 2xx handing out nothing, unlike this endpoint's known success answer.
    DiffersFromSuccess,
    /// A 2xx handing out no session, token or redirect (no success answer known yet).
    NoCredentialIssued,
}

impl Signal {
    /// Every signal, `ALL[s as usize] == s`.
    pub const ALL: [Signal; 19] = [
        Signal::NoResponse,
        Signal::ServerError,
        Signal::NotAnAttempt,
        Signal::ConfiguredStatus,
        Signal::ConfiguredCookie,
        Signal::Status,
        Signal::BodySaysFailure,
        Signal::LoginFormAgain,
        Signal::RedirectToLogin,
        Signal::TokenIssued,
        Signal::BodySaysSuccess,
        Signal::FailureMarker,
        Signal::SessionIssued,
        Signal::SuccessMarker,
        Signal::RedirectIntoApp,
        Signal::BasicAccepted,
        Signal::SameAnswerAsSuccess,
        Signal::DiffersFromSuccess,
        Signal::NoCredentialIssued,
    ];

    /// The snake-case name alerts use.
    pub fn as_str(self) -> &'static str {
        match self {
            Signal::NoResponse => "no_response",
            Signal::ServerError => "server_error",
            Signal::NotAnAttempt => "not_an_attempt",
            Signal::ConfiguredStatus => "configured_status",
            Signal::ConfiguredCookie => "configured_cookie",
            Signal::Status => "status",
            Signal::BodySaysFailure => "body_says_failure",
            Signal::LoginFormAgain => "login_form_again",
            Signal::RedirectToLogin => "redirect_to_login",
            Signal::TokenIssued => "token_issued",
            Signal::BodySaysSuccess => "body_says_success",
            Signal::FailureMarker => "failure_marker",
            Signal::SessionIssued => "session_issued",
            Signal::SuccessMarker => "success_marker",
            Signal::RedirectIntoApp => "redirect_into_app",
            Signal::BasicAccepted => "basic_accepted",
            Signal::SameAnswerAsSuccess => "same_answer_as_success",
            Signal::DiffersFromSuccess => "differs_from_success",
            Signal::NoCredentialIssued => "no_credential_issued",
        }
    }
}

const _: () = {
    let mut i = 0;
    while i < Signal::ALL.len() {
        assert!(Signal::ALL[i] as usize == i);
        i += 1;
    }
};

/// An outcome and the signal that decided it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// The outcome.
    pub outcome: Outcome,
    /// What decided it.
    pub signal: Signal,
}

impl Verdict {
    const fn new(outcome: Outcome, signal: Signal) -> Verdict {
        Verdict { outcome, signal }
    }
}

/// What the answer alone says ([`OutcomeRules::read`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reading {
    /// Decided by the answer itself.
    Decided {
        /// The verdict.
        verdict: Verdict,
        /// The answer's shape.
        shape: u64,
        /// Keyed names of the session cookies the answer set.
        cookies: Vec<u64>,
    },
    /// A 2xx/3xx whose meaning depends on what the endpoint answered before.
    Undecided(Undecided),
}

/// An answer the rules alone do not decide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Undecided {
    /// The answer's shape.
    pub shape: u64,
    /// Hashed names of the session cookies the answer set.
    pub cookies: Vec<u64>,
    /// A success marker was found (used when no session cookie decides).
    pub success_marker: bool,
    /// A 3xx into the application.
    pub redirect: bool,
    /// Basic credentials answered with 2xx.
    pub basic: bool,
}

const FAILURE_MARKERS: &[&str] = &[
    "invalid",
    "incorrect",
    "wrong",
    "failed",
    "failure",
    "denied",
    "unauthorized",
    "not match",
    "mismatch",
    "expired",
    "locked",
    "\"success\":false",
    "\"success\": false",
    "\"ok\":false",
    "错误",
    "失败",
    "不正确",
    "无效",
    "过期",
];

const SUCCESS_MARKERS: &[&str] = &[
    "access_token",
    "accesstoken",
    "\"token\"",
    "\"jwt\"",
    "\"success\":true",
    "\"success\": true",
    "welcome",
    "成功",
];

/// Outcome rules compiled from the configuration (markers lower-cased once).
#[derive(Debug, Clone)]
pub struct OutcomeRules {
    failure: Vec<Finder<'static>>,
    success: Vec<Finder<'static>>,
    endpoints: Vec<CompiledRule>,
}

#[derive(Debug, Clone)]
struct CompiledRule {
    rule: EndpointOutcomeRule,
    failure: Vec<Finder<'static>>,
    success: Vec<Finder<'static>>,
}

/// Searchers for the markers, lower-cased, built once (building one per search cost more
/// than searching a short login answer).
fn lower(v: &[String], defaults: &[&str]) -> Vec<Finder<'static>> {
    defaults
        .iter()
        .map(|s| s.as_bytes().to_ascii_lowercase())
        .chain(v.iter().map(|s| s.as_bytes().to_ascii_lowercase()))
        .filter(|m| !m.is_empty())
        .map(|m| Finder::new(&m).into_owned())
        .collect()
}

/// Bytes of the response body searched for markers.
const MARKER_WINDOW: usize = 4096;
/// Bytes of an HTML answer searched for a password input.
const FORM_WINDOW: usize = 32 << 10;
/// Largest JSON answer parsed for its structure (login answers are small).
const JSON_WINDOW: usize = 64 << 10;

/// The default rules, for callers without a `[login]` section (the weak-point rules).
static DEFAULT_RULES: LazyLock<OutcomeRules> =
    LazyLock::new(|| OutcomeRules::new(&LoginConfig::default()));

/// Whether a login attempt succeeded by the default rules and the answer alone (no
/// per-endpoint history): the weak-point rules' view of a login.
pub fn login_succeeded(facts: &EventFacts<'_>) -> bool {
    let basic = basic_credentials(facts);
    DEFAULT_RULES.infer_facts_basic(facts, "", basic).outcome == Outcome::Success
}

/// Whether the request carries HTTP Basic credentials (`Authorization: Basic …`, RFC 7617).
pub(crate) fn basic_credentials(facts: &EventFacts<'_>) -> bool {
    facts
        .request_headers()
        .authorization
        .is_some_and(|v| v.get(..6).is_some_and(|s| s.eq_ignore_ascii_case("basic ")))
}

/// Whether a `GET`/`HEAD` request carries credentials in its query (a login over GET).
fn query_credentials(query: Option<&str>) -> bool {
    query.is_some_and(|q| {
        apitap_labels::facts::query_pairs(q).any(|(k, _)| {
            let k = k.to_ascii_lowercase();
            k.contains("pass") || k == "pwd" || k.contains("token") || k == "code" || k == "otp"
        })
    })
}

fn hash_of(v: impl Hash) -> u64 {
    let mut h = DefaultHasher::new();
    v.hash(&mut h);
    h.finish()
}

/// Media-type family of an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Family {
    Json,
    Html,
    Xml,
    Other,
}

fn family(content_type: Option<&str>, body: &[u8]) -> Family {
    let ct = content_type.unwrap_or("").to_ascii_lowercase();
    let first = body.iter().find(|b| !b.is_ascii_whitespace()).copied();
    if ct.contains("json") || (ct.is_empty() && matches!(first, Some(b'{' | b'['))) {
        Family::Json
    } else if ct.contains("html") || (ct.is_empty() && first == Some(b'<')) {
        Family::Html
    } else if ct.contains("xml") {
        Family::Xml
    } else {
        Family::Other
    }
}

/// Structural facts of a JSON answer.
#[derive(Debug, Default)]
struct JsonFacts {
    says_failure: bool,
    says_success: bool,
    token: bool,
    /// Hash of the sorted top-level member names.
    keys: u64,
}

/// Status-like members and what their values mean.
fn status_member(key: &str, v: &JsonValue<'_>) -> Option<bool> {
    const FAIL: &[&str] = &[
        "fail",
        "failed",
        "failure",
        "error",
        "denied",
        "invalid",
        "unauthorized",
        "ko",
        "false",
        "rejected",
    ];
    const OK: &[&str] = &[
        "ok",
        "success",
        "succeeded",
        "successful",
        "true",
        "authenticated",
    ];
    let k = key.to_ascii_lowercase();
    match v.json_type() {
        JsonType::Boolean
            if matches!(
                k.as_str(),
                "success" | "ok" | "succeeded" | "authenticated" | "result" | "valid" | "status"
            ) =>
        {
            v.as_bool()
        }
        JsonType::String if matches!(k.as_str(), "status" | "result" | "state" | "outcome") => {
            let s = v.as_str().unwrap_or_default().to_ascii_lowercase();
            if FAIL.contains(&s.as_str()) {
                Some(false)
            } else if OK.contains(&s.as_str()) {
                Some(true)
            } else {
                None
            }
        }
        _ => None,
    }
}

/// A JWT (RFC 7519 §3: three base64url parts, the first a JSON object `eyJ…`).
fn looks_like_jwt(s: &str) -> bool {
    s.len() >= 30
        && s.starts_with("eyJ")
        && s.bytes().filter(|&b| b == b'.').count() == 2
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'='))
}

/// Reads the members of `v` (an object), three levels deep, in key order (the last of
/// duplicated keys), as `serde_json` would have had them.
fn walk_json(v: JsonValue<'_>, depth: u32, out: &mut JsonFacts) {
    if v.json_type() != JsonType::Object {
        return;
    }
    for (k, v) in v.members() {
        let kl = k.to_ascii_lowercase();
        match status_member(&k, &v) {
            Some(false) => out.says_failure = true,
            Some(true) => out.says_success = true,
            None => {}
        }
        let text = v.as_str();
        let non_empty = match v.json_type() {
            JsonType::Null => false,
            JsonType::Boolean => v.as_bool() == Some(true),
            JsonType::String => text.as_ref().is_some_and(|s| !s.is_empty()),
            JsonType::Array | JsonType::Object => !v.is_empty_container(),
            JsonType::Integer | JsonType::Number => true,
        };
        if matches!(
            kl.as_str(),
            "error" | "errors" | "error_description" | "errormessage" | "error_message" | "fault"
        ) && non_empty
        {
            out.says_failure = true;
        }
        if let Some(s) = &text
            && (((kl.contains("token") || kl.contains("jwt"))
                && !kl.contains("csrf")
                && !kl.contains("xsrf")
                && s.len() >= 16)
                || looks_like_jwt(s))
        {
            out.token = true;
        }
        if depth < 3 {
            walk_json(v, depth + 1, out);
        }
    }
}

/// The facts of a JSON answer `body` (at most [`JSON_WINDOW`] bytes), read from `doc`, the
/// event's shared tokens of the body (lexed here when they are not `body`'s).
fn json_facts(body: &[u8], doc: Option<JsonDoc<'_>>) -> Option<JsonFacts> {
    if body.is_empty() || body.len() > JSON_WINDOW {
        return None;
    }
    let local;
    let doc = match doc {
        Some(d) if std::ptr::eq(d.bytes(), body) => d,
        _ => {
            local = JsonTape::lex(body);
            local.doc(body)
        }
    };
    let v = doc.root()?;
    let mut out = JsonFacts::default();
    if v.json_type() == JsonType::Object {
        let members = v.members();
        let names: Vec<&str> = members.iter().map(|(k, _)| k.as_ref()).collect();
        out.keys = hash_of(&names);
    }
    walk_json(v, 0, &mut out);
    Some(out)
}

/// A password input in an HTML form (`<input type=password>`, HTML §4.10.5.1.7).
fn has_password_input(lower_html: &[u8]) -> bool {
    static FINDERS: LazyLock<[Finder<'static>; 3]> = LazyLock::new(|| {
        [
            Finder::new(b"type=\"password\"").into_owned(),
            Finder::new(b"type='password'").into_owned(),
            Finder::new(b"type=password").into_owned(),
        ]
    });
    FINDERS.iter().any(|f| f.find(lower_html).is_some())
}

/// The path part of a `Location` value (absolute or relative reference, RFC 9110 §10.2.2).
fn location_path(loc: &str) -> &str {
    let rest = match loc.find("://") {
        Some(i) => {
            let after = &loc[i + 3..];
            after.find('/').map_or("/", |j| &after[j..])
        }
        None => loc,
    };
    let end = rest.find(['?', '#']).unwrap_or(rest.len());
    &rest[..end]
}

/// Session cookies an answer sets (not deletions), by hashed lower-case name.
fn issued_session_cookies(headers: &[apitap_schema::Header]) -> Vec<u64> {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("set-cookie"))
        .filter_map(|h| {
            let (name, rest) = h.value.split_once('=')?;
            let name = name.trim();
            let value = rest
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .trim_matches('"');
            let attrs = rest.to_ascii_lowercase();
            let deleted = value.is_empty()
                || value.eq_ignore_ascii_case("deleted")
                || attrs.contains("max-age=0")
                || attrs.contains("expires=thu, 01 jan 1970")
                || attrs.contains("expires=thu, 01-jan-1970");
            (is_session_cookie(name.as_bytes()) && !deleted)
                .then(|| hash_of(name.to_ascii_lowercase()))
        })
        .collect()
}

impl OutcomeRules {
    /// From the `[login]` configuration.
    pub fn new(cfg: &LoginConfig) -> OutcomeRules {
        OutcomeRules {
            failure: lower(&cfg.failure_markers, FAILURE_MARKERS),
            success: lower(&cfg.success_markers, SUCCESS_MARKERS),
            endpoints: cfg
                .endpoints
                .iter()
                .map(|r| CompiledRule {
                    rule: r.clone(),
                    failure: lower(&r.failure_markers, &[]),
                    success: lower(&r.success_markers, &[]),
                })
                .collect(),
        }
    }

    /// The endpoint's forced kind (`login` / `otp`), when a rule sets one.
    pub fn forced_kind(&self, template: &str) -> Option<&str> {
        self.endpoints
            .iter()
            .find(|r| r.rule.template == template)
            .and_then(|r| r.rule.kind.as_deref())
    }

    /// The outcome of an attempt on `template` from the answer alone (no per-endpoint
    /// history; see [`OutcomeLearner`]).
    pub fn infer(&self, ev: &apitap_schema::ApiEvent, template: &str) -> Outcome {
        let facts = EventFacts::new(ev, apitap_labels::facts::DEFAULT_MAX_DECODED_BYTES);
        let basic = basic_credentials(&facts);
        self.infer_facts_basic(&facts, template, basic).outcome
    }

    /// [`OutcomeRules::infer`] reading the event's shared facts, with its signal.
    pub fn infer_facts_basic(
        &self,
        facts: &EventFacts<'_>,
        template: &str,
        basic: bool,
    ) -> Verdict {
        match self.read(facts, template, basic) {
            Reading::Decided { verdict, .. } => verdict,
            Reading::Undecided(u) => resolve(&u, None),
        }
    }

    /// What the answer to an attempt on `template` says by itself (rules 1–12 of the module
    /// docs); `basic` says the request carried Basic credentials.
    pub fn read(&self, facts: &EventFacts<'_>, template: &str, basic: bool) -> Reading {
        let ev = facts.event;
        let decided = |outcome, signal| Reading::Decided {
            verdict: Verdict::new(outcome, signal),
            shape: 0,
            cookies: Vec::new(),
        };
        let Some(resp) = &ev.response else {
            return decided(Outcome::Unknown, Signal::NoResponse);
        };
        let status = resp.status;
        if status >= 500 {
            return decided(Outcome::Unknown, Signal::ServerError);
        }
        let method = ev.request.method.as_str();
        if (method.eq_ignore_ascii_case("GET") || method.eq_ignore_ascii_case("HEAD"))
            && !basic
            && !query_credentials(ev.request.query.as_deref())
        {
            return decided(Outcome::Unknown, Signal::NotAnAttempt);
        }
        let rule = self.endpoints.iter().find(|r| r.rule.template == template);
        if let Some(r) = rule {
            if r.rule.success_status.contains(&status) {
                return decided(Outcome::Success, Signal::ConfiguredStatus);
            }
            if r.rule.failure_status.contains(&status) {
                return decided(Outcome::Failure, Signal::ConfiguredStatus);
            }
        }
        let data: &[u8] = facts.response_body().map_or(&[], |b| &b.bytes);
        let fam = family(header(&resp.headers, "content-type"), data);
        let json = if fam == Family::Json {
            json_facts(data, facts.response_json())
        } else {
            None
        };
        let location = header(&resp.headers, "location").map(location_path);
        // Lower-cased head of the body: markers in the first 4 KiB, the password input of an
        // HTML form in the first 32 KiB.
        let window = if fam == Family::Html {
            FORM_WINDOW
        } else {
            MARKER_WINDOW
        };
        let lower_body = data[..data.len().min(window)].to_ascii_lowercase();
        let password_form = fam == Family::Html && has_password_input(&lower_body);
        let shape = hash_of((
            status,
            fam,
            json.as_ref().map(|j| j.keys),
            location,
            password_form,
            // Length class of non-JSON answers (JSON ones are told apart by their members).
            if json.is_some() {
                0
            } else {
                (data.len() as u64 + 1).ilog2()
            },
        ));
        let cookies = issued_session_cookies(&resp.headers);
        let verdict = |outcome, signal| Reading::Decided {
            verdict: Verdict::new(outcome, signal),
            shape,
            cookies: cookies.clone(),
        };
        if matches!(status, 400 | 401 | 403 | 422 | 429) {
            return verdict(Outcome::Failure, Signal::Status);
        }
        if let Some(r) = rule
            && let Some(name) = &r.rule.success_cookie
            && resp.headers.iter().any(|h| {
                h.name.eq_ignore_ascii_case("set-cookie")
                    && h.value
                        .split_once('=')
                        .is_some_and(|(n, _)| n.trim().eq_ignore_ascii_case(name))
            })
        {
            return verdict(Outcome::Success, Signal::ConfiguredCookie);
        }
        let xml_fault =
            fam == Family::Xml && memchr::memmem::find(&lower_body, b"<fault>").is_some();
        if json.as_ref().is_some_and(|j| j.says_failure) || xml_fault {
            return verdict(Outcome::Failure, Signal::BodySaysFailure);
        }
        if password_form {
            return verdict(Outcome::Failure, Signal::LoginFormAgain);
        }
        let redirect = (300..400).contains(&status);
        if redirect {
            let back = location.is_some_and(|l| {
                let l = l.to_ascii_lowercase();
                l.contains("login")
                    || l.contains("error")
                    || l.contains("signin")
                    || l.contains("fail")
                    || l.trim_end_matches('/') == ev.request.path.trim_end_matches('/')
            });
            if back {
                return verdict(Outcome::Failure, Signal::RedirectToLogin);
            }
        }
        if json.as_ref().is_some_and(|j| j.token) {
            return verdict(Outcome::Success, Signal::TokenIssued);
        }
        if json.as_ref().is_some_and(|j| j.says_success) {
            return verdict(Outcome::Success, Signal::BodySaysSuccess);
        }
        let (fail_m, ok_m) = match rule {
            Some(r) if !r.failure.is_empty() || !r.success.is_empty() => {
                (&r.failure[..], &r.success[..])
            }
            _ => (&self.failure[..], &self.success[..]),
        };
        let head = &lower_body[..lower_body.len().min(MARKER_WINDOW)];
        let has = |ms: &[Finder]| ms.iter().any(|m| m.find(head).is_some());
        if has(fail_m) {
            return verdict(Outcome::Failure, Signal::FailureMarker);
        }
        Reading::Undecided(Undecided {
            shape,
            cookies,
            // A parsed JSON answer is read by its members (rule 8); a marker word in it (a
            // `"token"` member holding a number) is no success.
            success_marker: json.is_none() && has(ok_m),
            redirect,
            basic: basic && (200..300).contains(&status),
        })
    }
}

/// Rules 10–13 for an undecided answer, with the endpoint's memory when there is one.
fn resolve(u: &Undecided, memory: Option<&EndpointOutcomes>) -> Verdict {
    let failure_cookie = |c: &u64| memory.is_some_and(|m| m.failure_cookies.contains(c));
    if u.cookies.iter().any(|c| !failure_cookie(c)) {
        return Verdict::new(Outcome::Success, Signal::SessionIssued);
    }
    if u.success_marker {
        return Verdict::new(Outcome::Success, Signal::SuccessMarker);
    }
    if u.redirect {
        return Verdict::new(Outcome::Success, Signal::RedirectIntoApp);
    }
    if u.basic {
        return Verdict::new(Outcome::Success, Signal::BasicAccepted);
    }
    match memory {
        Some(m) if m.success_shapes.contains(&u.shape) => {
            Verdict::new(Outcome::Success, Signal::SameAnswerAsSuccess)
        }
        Some(m) if m.success_shapes.iter().any(|&s| s != 0) => {
            Verdict::new(Outcome::Failure, Signal::DiffersFromSuccess)
        }
        _ => Verdict::new(Outcome::Failure, Signal::NoCredentialIssued),
    }
}

/// Shapes and cookie names remembered per endpoint.
const REMEMBERED: usize = 4;

/// What one login endpoint taught: the shapes of its success answers and the session
/// cookies it also sets on failed attempts (a framework session that every answer carries).
#[derive(Debug, Default)]
pub(crate) struct EndpointOutcomes {
    last_us: u64,
    success_shapes: [u64; REMEMBERED],
    failure_cookies: [u64; REMEMBERED],
    next_shape: u8,
    next_cookie: u8,
}

impl Touched for EndpointOutcomes {
    fn last_us(&self) -> u64 {
        self.last_us
    }
}

fn remember(slots: &mut [u64; REMEMBERED], next: &mut u8, v: u64) {
    if v != 0 && !slots.contains(&v) {
        slots[usize::from(*next) % REMEMBERED] = v;
        *next = next.wrapping_add(1);
    }
}

/// Per-endpoint outcome learning on top of [`OutcomeRules`] (rules 10 and 13).
#[derive(Debug)]
pub struct OutcomeLearner {
    endpoints: BoundedMap<EndpointOutcomes>,
}

impl OutcomeLearner {
    /// Remembers at most `max_endpoints` login endpoints.
    pub fn new(max_endpoints: usize) -> OutcomeLearner {
        OutcomeLearner {
            endpoints: BoundedMap::new(max_endpoints),
        }
    }

    /// The verdict for an attempt on the endpoint `endpoint_key` (its `template`) at `now`,
    /// learning from it.
    pub fn infer(
        &mut self,
        rules: &OutcomeRules,
        facts: &EventFacts<'_>,
        template: &str,
        endpoint_key: u64,
        basic: bool,
        now: u64,
    ) -> Verdict {
        let (verdict, shape, cookies) = match rules.read(facts, template, basic) {
            Reading::Decided {
                verdict,
                shape,
                cookies,
            } => {
                if verdict.outcome == Outcome::Unknown {
                    return verdict;
                }
                (verdict, shape, cookies)
            }
            Reading::Undecided(u) => {
                let m = self.endpoints.get(endpoint_key);
                (resolve(&u, m), u.shape, u.cookies)
            }
        };
        let m = self
            .endpoints
            .entry(endpoint_key, EndpointOutcomes::default);
        m.last_us = m.last_us.max(now);
        match verdict.outcome {
            // A cookie every failed attempt also gets is the framework's session, not a
            // login (rule 10 stops trusting it for this endpoint).
            Outcome::Failure if verdict.signal != Signal::DiffersFromSuccess => {
                for c in cookies {
                    remember(&mut m.failure_cookies, &mut m.next_cookie, c);
                }
            }
            Outcome::Success => remember(&mut m.success_shapes, &mut m.next_shape, shape),
            _ => {}
        }
        verdict
    }

    /// Forgets endpoints idle since before `before_us`.
    pub(crate) fn expire(&mut self, before_us: u64) {
        self.endpoints.expire(before_us);
    }

    /// Endpoints evicted because the table was full.
    pub fn evicted(&self) -> u64 {
        self.endpoints.evicted
    }

    /// Bytes held.
    pub fn state_bytes(&self) -> usize {
        self.endpoints.table_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use apitap_schema::{ApiEvent, Body, Header, Response};

    fn with_resp(status: u16, headers: &[(&str, &str)], body: &str) -> ApiEvent {
        let mut e = crate::actor::tests::ev("1.1.1.1", &[], "{}");
        e.response = Some(Response {
            status,
            reason: String::new(),
            headers: headers
                .iter()
                .map(|(n, v)| Header {
                    name: (*n).into(),
                    value: (*v).into(),
                })
                .collect(),
            body: Body::from_bytes(body.as_bytes(), body.len() as u64),
        });
        e
    }

    fn verdict(r: &OutcomeRules, e: &ApiEvent, t: &str) -> Verdict {
        let f = EventFacts::new(e, apitap_labels::facts::DEFAULT_MAX_DECODED_BYTES);
        r.infer_facts_basic(&f, t, basic_credentials(&f))
    }

    /// A learner fed a sequence of answers on one endpoint; returns the verdicts.
    fn learn(answers: &[ApiEvent]) -> Vec<Verdict> {
        let rules = OutcomeRules::new(&LoginConfig::default());
        let mut l = OutcomeLearner::new(16);
        answers
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let f = EventFacts::new(e, apitap_labels::facts::DEFAULT_MAX_DECODED_BYTES);
                l.infer(&rules, &f, "/login", 7, basic_credentials(&f), i as u64)
            })
            .collect()
    }

    /// The failure marker of a gzip-coded login answer is found in its decoded body (the
    /// event's shared facts), not searched for in the coded bytes.
    #[test]
    fn markers_are_read_in_the_decoded_body() {
        use std::io::Write as _;
        let text = br#"{"status":"fail","message":"invalid password"}"#;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(text).unwrap();
        let gz = gz.finish().unwrap();
        let mut e = with_resp(200, &[("Content-Encoding", "gzip")], "");
        e.response.as_mut().unwrap().body = Body::from_bytes(&gz, gz.len() as u64);
        let rules = OutcomeRules::new(&LoginConfig::default());
        assert_eq!(rules.infer(&e, "/login"), Outcome::Failure);
    }

    #[test]
    fn default_rules() {
        let r = OutcomeRules::new(&LoginConfig::default());
        let t = "/login";
        let v = |e: &ApiEvent| verdict(&r, e, t);
        let sig = |e: &ApiEvent| v(e).signal;
        assert_eq!(sig(&with_resp(401, &[], "")), Signal::Status);
        assert_eq!(v(&with_resp(429, &[], "")).outcome, Outcome::Failure);
        assert_eq!(v(&with_resp(503, &[], "")).outcome, Outcome::Unknown);
        assert_eq!(
            sig(&crate::actor::tests::ev("1.1.1.1", &[], "")),
            Signal::NoResponse
        );
        assert_eq!(
            sig(&with_resp(
                200,
                &[],
                r#"{"success":false,"msg":"Invalid password"}"#
            )),
            Signal::BodySaysFailure
        );
        assert_eq!(
            sig(&with_resp(200, &[], r#"{"code":1,"msg":"密码错误"}"#)),
            Signal::FailureMarker
        );
        assert_eq!(
            sig(&with_resp(
                200,
                &[],
                r#"{"access_token":"eyJhbGciOiJIUzI1NiJ9.e30.abcdefgh"}"#
            )),
            Signal::TokenIssued
        );
        assert_eq!(
            sig(&with_resp(
                200,
                &[("Set-Cookie", "SESSIONID=abc; HttpOnly")],
                "ok"
            )),
            Signal::SessionIssued
        );
        assert_eq!(
            sig(&with_resp(302, &[("Location", "/login?error=1")], "")),
            Signal::RedirectToLogin
        );
        assert_eq!(
            sig(&with_resp(302, &[("Location", "/home")], "")),
            Signal::RedirectIntoApp
        );
        // A 2xx that hands out nothing logged nobody in.
        assert_eq!(
            v(&with_resp(200, &[], "{}")),
            Verdict::new(Outcome::Failure, Signal::NoCredentialIssued)
        );
        // Loading the login page is not an attempt.
        let mut page = with_resp(200, &[("Content-Type", "text/html")], "<form>");
        page.request.method = "GET".into();
        assert_eq!(sig(&page), Signal::NotAnAttempt);
        // … unless it carries credentials (a login over GET).
        page.request.query = Some("user=a&password=b".into());
        assert_eq!(sig(&page), Signal::NoCredentialIssued);
        // A deleted session cookie is no session.
        assert_eq!(
            sig(&with_resp(
                200,
                &[("Set-Cookie", "sid=; Max-Age=0")],
                r#"{"m":"x"}"#
            )),
            Signal::NoCredentialIssued
        );
        // A CSRF cookie is no session.
        assert_eq!(
            sig(&with_resp(200, &[("Set-Cookie", "csrftoken=abc")], "x")),
            Signal::NoCredentialIssued
        );
    }

    /// The failure styles of real applications, without any marker word.
    #[test]
    fn application_styles() {
        let r = OutcomeRules::new(&LoginConfig::default());
        let sig = |e: &ApiEvent| verdict(&r, e, "/login").signal;
        let json = [("Content-Type", "application/json")];
        // VAmPI-style 200 + status member.
        assert_eq!(
            sig(&with_resp(
                200,
                &json,
                r#"{"status": "fail", "message": "Username does not exist"}"#
            )),
            Signal::BodySaysFailure
        );
        // Deluge JSON-RPC: `result: false`, success is `true` with a session cookie.
        assert_eq!(
            sig(&with_resp(
                200,
                &json,
                r#"{"result": false, "error": null, "id": 1}"#
            )),
            Signal::BodySaysFailure
        );
        assert_eq!(
            verdict(
                &r,
                &with_resp(200, &json, r#"{"result": true, "error": null, "id": 1}"#),
                "/json"
            )
            .outcome,
            Outcome::Success
        );
        // JSON-RPC error object, GraphQL errors one level down.
        assert_eq!(
            sig(&with_resp(
                200,
                &json,
                r#"{"jsonrpc":"2.0","error":{"code":-32000,"message":"Access Denied"},"id":1}"#
            )),
            Signal::BodySaysFailure
        );
        assert_eq!(
            sig(&with_resp(
                200,
                &json,
                r#"{"data":{"tokenCreate":{"token":null,"errors":[{"message":"Please, enter valid credentials"}]}}}"#
            )),
            Signal::BodySaysFailure
        );
        // Django admin: the form is shown again with 200 (and a CSRF cookie).
        let django = r#"<html><form method="post"><input type="text" name="username" value="bob"><input type="password" name="password"></form></html>"#;
        assert_eq!(
            sig(&with_resp(
                200,
                &[
                    ("Content-Type", "text/html; charset=utf-8"),
                    ("Set-Cookie", "csrftoken=Zx9; Path=/")
                ],
                django
            )),
            Signal::LoginFormAgain
        );
        assert_eq!(
            sig(&with_resp(
                302,
                &[
                    ("Location", "/admin/"),
                    ("Set-Cookie", "sessionid=abc; HttpOnly")
                ],
                ""
            )),
            Signal::SessionIssued
        );
        // WordPress XML-RPC fault.
        assert_eq!(
            sig(&with_resp(
                200,
                &[("Content-Type", "text/xml")],
                "<methodResponse><fault><value>…</value></fault></methodResponse>"
            )),
            Signal::BodySaysFailure
        );
        // Redirect to the page itself.
        assert_eq!(
            sig(&with_resp(302, &[("Location", "http://h/login/")], "")),
            Signal::RedirectToLogin
        );
        // Basic accepted.
        let mut b = with_resp(200, &json, r#"{"authenticated": true}"#);
        b.request.headers.push(Header {
            name: "Authorization".into(),
            value: "Basic YTpi".into(),
        });
        b.request.method = "GET".into();
        assert_eq!(sig(&b).outcome(), Outcome::Success);
        let mut plain = with_resp(200, &[], "hello");
        plain.request.headers = b.request.headers.clone();
        plain.request.method = "GET".into();
        assert_eq!(sig(&plain), Signal::BasicAccepted);
    }

    impl Signal {
        fn outcome(self) -> Outcome {
            match self {
                Signal::TokenIssued
                | Signal::BodySaysSuccess
                | Signal::SessionIssued
                | Signal::SuccessMarker
                | Signal::RedirectIntoApp
                | Signal::BasicAccepted
                | Signal::SameAnswerAsSuccess
                | Signal::ConfiguredCookie => Outcome::Success,
                Signal::NoResponse | Signal::ServerError | Signal::NotAnAttempt => Outcome::Unknown,
                _ => Outcome::Failure,
            }
        }
    }

    /// A framework session cookie set on every answer (Flask's flash messages, PHP's
    /// `session_start`) stops counting as a login once the endpoint set it on a failure.
    #[test]
    fn a_cookie_set_on_failures_is_learnt_not_to_mean_success() {
        let fail = with_resp(
            302,
            &[
                ("Location", "/login/"),
                ("Set-Cookie", "session=a1; HttpOnly"),
            ],
            "",
        );
        let mystery = with_resp(
            200,
            &[("Content-Type", "text/html"), ("Set-Cookie", "session=a2")],
            "<p>Hello</p>",
        );
        let v = learn(&[mystery.clone(), fail, mystery]);
        assert_eq!(v[0].signal, Signal::SessionIssued);
        assert_eq!(v[1].signal, Signal::RedirectToLogin);
        // The cookie no longer decides; the answer's shape was a success before.
        assert_eq!(
            v[2],
            Verdict::new(Outcome::Success, Signal::SameAnswerAsSuccess)
        );
    }

    /// An endpoint answering 200 either way: the success answer (a token) is learnt, and a
    /// different answer that hands out nothing is a failure.
    #[test]
    fn shapes_are_learnt_per_endpoint() {
        let json = [("Content-Type", "application/json")];
        let ok = with_resp(
            200,
            &json,
            r#"{"user":{"id":3},"auth":"c2VjcmV0LXNlc3Npb24tdmFsdWUtMTIz"}"#,
        );
        let ok_cookie = with_resp(
            200,
            &[
                ("Content-Type", "application/json"),
                ("Set-Cookie", "sid=zz; HttpOnly"),
            ],
            r#"{"user":{"id":3},"auth":"c2VjcmV0"}"#,
        );
        let no = with_resp(200, &json, r#"{"message":"Username does not exist"}"#);
        let v = learn(&[no.clone(), ok_cookie, ok, no]);
        assert_eq!(v[0].signal, Signal::NoCredentialIssued);
        assert_eq!(v[1].signal, Signal::SessionIssued);
        assert_eq!(
            v[2],
            Verdict::new(Outcome::Success, Signal::SameAnswerAsSuccess)
        );
        assert_eq!(
            v[3],
            Verdict::new(Outcome::Failure, Signal::DiffersFromSuccess)
        );
    }

    #[test]
    fn learner_is_bounded() {
        let rules = OutcomeRules::new(&LoginConfig::default());
        let mut l = OutcomeLearner::new(8);
        let e = with_resp(401, &[], "");
        let f = EventFacts::new(&e, 1 << 20);
        for k in 0..100u64 {
            l.infer(&rules, &f, "/login", k, false, k);
        }
        assert!(l.evicted() >= 92);
    }

    #[test]
    fn hostile_answers_do_not_decide_success() {
        let r = OutcomeRules::new(&LoginConfig::default());
        for body in [
            "{".repeat(100_000),
            "\u{0}\u{1}\u{2}".repeat(1000),
            r#"{"token": 5, "jwt": null}"#.to_string(),
            r#"[1,2,3]"#.to_string(),
        ] {
            let v = verdict(
                &r,
                &with_resp(200, &[("Content-Type", "application/json")], &body),
                "/login",
            );
            assert_eq!(v.outcome, Outcome::Failure, "{body:.40}");
        }
    }

    #[test]
    fn location_paths() {
        assert_eq!(location_path("https://a.b/login/?next=/"), "/login/");
        assert_eq!(location_path("https://a.b"), "/");
        assert_eq!(location_path("/x#f"), "/x");
        assert_eq!(location_path("rel/p?q"), "rel/p");
    }

    #[test]
    fn per_endpoint_rules_override() {
        let cfg = LoginConfig {
            endpoints: vec![EndpointOutcomeRule {
                template: "/api/auth".into(),
                success_status: vec![201],
                failure_status: vec![200],
                success_cookie: Some("app_sid".into()),
                failure_markers: vec!["\"code\":1001".into()],
                success_markers: vec!["\"code\":0".into()],
                kind: Some("otp".into()),
            }],
            ..LoginConfig::default()
        };
        let r = OutcomeRules::new(&cfg);
        let o = |e: &ApiEvent, t: &str| verdict(&r, e, t);
        assert_eq!(
            o(&with_resp(200, &[], "{}"), "/api/auth"),
            Verdict::new(Outcome::Failure, Signal::ConfiguredStatus)
        );
        assert_eq!(
            o(&with_resp(201, &[], "invalid"), "/api/auth").outcome,
            Outcome::Success
        );
        assert_eq!(
            o(
                &with_resp(204, &[("Set-Cookie", "app_sid=1")], ""),
                "/api/auth"
            )
            .signal,
            Signal::ConfiguredCookie
        );
        assert_eq!(
            o(&with_resp(204, &[], r#"{"code":1001}"#), "/api/auth").signal,
            Signal::FailureMarker
        );
        // The endpoint's own markers replace the defaults ("invalid" is not one).
        assert_eq!(
            o(&with_resp(204, &[], r#"invalid {"code":0}"#), "/api/auth").signal,
            Signal::SuccessMarker
        );
        assert_eq!(r.forced_kind("/api/auth"), Some("otp"));
        assert_eq!(r.forced_kind("/other"), None);
        // Other endpoints keep the defaults.
        assert_eq!(
            o(&with_resp(200, &[], "invalid"), "/login").outcome,
            Outcome::Failure
        );
    }
}
