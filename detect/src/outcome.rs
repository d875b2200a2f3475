//! Outcome inference for login and OTP-verify attempts (issue 7 "Login outcome inference"):
//! from the status code, a session cookie or token issued in the response, and body markers.
//! Per-endpoint rules (`[[detect.login.endpoints]]`) replace the defaults for one template.
//!
//! Default rules, first match wins:
//! 1. no response, or 5xx → unknown (the server failed; not the credential);
//! 2. a per-endpoint status list matches → that outcome;
//! 3. 401, 403, 400, 422, 429 → failure;
//! 4. a per-endpoint success cookie is set → success;
//! 5. a failure body marker (`invalid`, `incorrect`, `wrong`, `failed`, `denied`, `"success":false`,
//!    `错误`, `失败`, …) → failure;
//! 6. a session-like `Set-Cookie`, or a token in the body (`token`, `access_token`, `jwt`) or a
//!    success marker → success;
//! 7. a 3xx redirect back to a login or error page → failure; any other 3xx → success;
//! 8. any other 2xx → success.
use apitap_labels::facts::EventFacts;
use apitap_schema::ApiEvent;
use memchr::memmem::Finder;
use serde::Serialize;

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

    /// The outcome of an attempt on `template`.
    pub fn infer(&self, ev: &ApiEvent, template: &str) -> Outcome {
        let facts = EventFacts::new(ev, apitap_labels::facts::DEFAULT_MAX_DECODED_BYTES);
        self.infer_facts(&facts, template)
    }

    /// [`OutcomeRules::infer`] reading the event's shared facts: body markers are searched
    /// in the decoded response body (a gzip-coded login answer is read, not its coded bytes).
    pub fn infer_facts(&self, facts: &EventFacts<'_>, template: &str) -> Outcome {
        let ev = facts.event;
        let Some(resp) = &ev.response else {
            return Outcome::Unknown;
        };
        let status = resp.status;
        if status >= 500 {
            return Outcome::Unknown;
        }
        let rule = self.endpoints.iter().find(|r| r.rule.template == template);
        if let Some(r) = rule {
            if r.rule.success_status.contains(&status) {
                return Outcome::Success;
            }
            if r.rule.failure_status.contains(&status) {
                return Outcome::Failure;
            }
        }
        if matches!(status, 400 | 401 | 403 | 422 | 429) {
            return Outcome::Failure;
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
            return Outcome::Success;
        }
        let (fail_m, ok_m) = match rule {
            Some(r) if !r.failure.is_empty() || !r.success.is_empty() => {
                (&r.failure[..], &r.success[..])
            }
            _ => (&self.failure[..], &self.success[..]),
        };
        let data: &[u8] = facts.response_body().map_or(&[], |b| &b.bytes);
        let n = data.len().min(MARKER_WINDOW);
        // Lower-cased copy of the window: on the stack for the usual short login answers (a
        // zeroed 4 KiB buffer per attempt cost more than the search), else on the heap.
        let mut small = [0u8; 256];
        let mut large;
        let body: &mut [u8] = if n <= small.len() {
            small[..n].copy_from_slice(&data[..n]);
            &mut small[..n]
        } else {
            large = data[..n].to_vec();
            &mut large
        };
        body.make_ascii_lowercase();
        let body = &*body;
        let has = |ms: &[Finder]| ms.iter().any(|m| m.find(body).is_some());
        if has(fail_m) {
            return Outcome::Failure;
        }
        let session_cookie = resp.headers.iter().any(|h| {
            h.name.eq_ignore_ascii_case("set-cookie")
                && {
                    let name = h.value.split_once('=').map_or("", |(n, _)| n.trim());
                    let l = name.to_ascii_lowercase();
                    l.contains("sess") || l.contains("token") || l == "sid" || l.contains("auth")
                }
                && !h.value.contains("=;")
                && !h.value.to_ascii_lowercase().contains("max-age=0")
        });
        if session_cookie || has(ok_m) {
            return Outcome::Success;
        }
        if (300..400).contains(&status) {
            let back_to_login = apitap_labels::facts::header(&resp.headers, "location")
                .is_some_and(|l| {
                    let l = l.to_ascii_lowercase();
                    l.contains("login")
                        || l.contains("error")
                        || l.contains("signin")
                        || l.contains("fail")
                });
            return if back_to_login {
                Outcome::Failure
            } else {
                Outcome::Success
            };
        }
        if (200..300).contains(&status) {
            return Outcome::Success;
        }
        Outcome::Unknown
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use apitap_schema::{Body, Header, Response};

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
        assert_eq!(r.infer(&with_resp(401, &[], ""), t), Outcome::Failure);
        assert_eq!(r.infer(&with_resp(429, &[], ""), t), Outcome::Failure);
        assert_eq!(r.infer(&with_resp(503, &[], ""), t), Outcome::Unknown);
        assert_eq!(
            r.infer(&crate::actor::tests::ev("1.1.1.1", &[], ""), t),
            Outcome::Unknown
        );
        assert_eq!(
            r.infer(
                &with_resp(200, &[], r#"{"success":false,"msg":"Invalid password"}"#),
                t
            ),
            Outcome::Failure
        );
        assert_eq!(
            r.infer(&with_resp(200, &[], r#"{"code":1,"msg":"密码错误"}"#), t),
            Outcome::Failure
        );
        assert_eq!(
            r.infer(&with_resp(200, &[], r#"{"access_token":"eyJ..."}"#), t),
            Outcome::Success
        );
        assert_eq!(
            r.infer(
                &with_resp(200, &[("Set-Cookie", "SESSIONID=abc; HttpOnly")], "ok"),
                t
            ),
            Outcome::Success
        );
        assert_eq!(
            r.infer(&with_resp(302, &[("Location", "/login?error=1")], ""), t),
            Outcome::Failure
        );
        assert_eq!(
            r.infer(&with_resp(302, &[("Location", "/home")], ""), t),
            Outcome::Success
        );
        assert_eq!(r.infer(&with_resp(200, &[], "{}"), t), Outcome::Success);
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
                kind: Some("otp".into()),
                ..EndpointOutcomeRule::default()
            }],
            ..LoginConfig::default()
        };
        let r = OutcomeRules::new(&cfg);
        assert_eq!(
            r.infer(&with_resp(200, &[], "{}"), "/api/auth"),
            Outcome::Failure
        );
        assert_eq!(
            r.infer(&with_resp(201, &[], "invalid"), "/api/auth"),
            Outcome::Success
        );
        assert_eq!(
            r.infer(
                &with_resp(204, &[("Set-Cookie", "app_sid=1")], ""),
                "/api/auth"
            ),
            Outcome::Success
        );
        assert_eq!(
            r.infer(&with_resp(204, &[], r#"{"code":1001}"#), "/api/auth"),
            Outcome::Failure
        );
        // The endpoint's own markers replace the defaults ("invalid" is not one).
        assert_eq!(
            r.infer(&with_resp(204, &[], "invalid"), "/api/auth"),
            Outcome::Success
        );
        assert_eq!(r.forced_kind("/api/auth"), Some("otp"));
        assert_eq!(r.forced_kind("/other"), None);
        // Other endpoints keep the defaults.
        assert_eq!(
            r.infer(&with_resp(200, &[], "invalid"), "/login"),
            Outcome::Failure
        );
    }
}
