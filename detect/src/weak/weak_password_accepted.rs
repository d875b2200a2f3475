//! Weak password accepted ([`WeakKind::WeakPasswordAccepted`], high): a password or Basic
//! credential from the common-password list (note `weak_password`) in a login (function class
//! `login`, or any request with Basic) that succeeded ([`login_succeeded`]). No label.
use apitap_labels::classify::FunctionClass;
use apitap_labels::facts::EventFacts;
use apitap_labels::{Direction, EventLabels, Finding, Label, Notes};

use super::{Cx, Hits, Severity, WeakKind, WeakRule};

/// The rule.
pub(crate) struct WeakPasswordAccepted;

impl WeakRule for WeakPasswordAccepted {
    fn kind(&self) -> WeakKind {
        WeakKind::WeakPasswordAccepted
    }

    fn check(&mut self, cx: &Cx<'_, '_>, out: &mut Hits) {
        let weak: Vec<&Finding> = cx
            .labels
            .in_direction(Direction::Request)
            .filter(|f| {
                matches!(f.label, Label::Password | Label::BasicAuth)
                    && f.notes.contains(Notes::WEAK_PASSWORD)
            })
            .collect();
        if !weak.is_empty()
            && (cx.function == FunctionClass::Login
                || weak.iter().any(|f| f.label == Label::BasicAuth))
            && login_succeeded(cx.facts, cx.labels)
        {
            let e = cx.evidence("successful login with a common password".into(), &weak);
            out.hit(Severity::High, None, e);
        }
    }
}

/// A failure marker in the first 2 KiB of the (decoded) response body.
fn failure_markers(facts: &EventFacts<'_>) -> bool {
    let d: &[u8] = facts.response_body().map_or(&[], |b| &b.bytes);
    let head = &d[..d.len().min(2048)];
    let lower = head.to_ascii_lowercase();
    const MARKERS: &[&str] = &[
        "\"success\":false",
        "\"success\": false",
        "\"error\"",
        "fail",
        "invalid",
        "incorrect",
        "wrong",
        "denied",
        "unauthorized",
        "错误",
        "失败",
        "不正确",
        "不存在",
    ];
    MARKERS
        .iter()
        .any(|m| memchr::memmem::find(&lower, m.as_bytes()).is_some())
}

/// Did a login succeed? 2xx/3xx, and either a session/token was issued, or no failure marker
/// in the response body (read decoded from the event's facts).
pub fn login_succeeded(facts: &EventFacts<'_>, labels: &EventLabels) -> bool {
    let Some(r) = &facts.event.response else {
        return false;
    };
    if r.status >= 400 {
        return false;
    }
    let issued = labels.in_direction(Direction::Response).any(|f| {
        matches!(
            f.label,
            Label::SessionId | Label::Jwt | Label::ApiToken | Label::BearerToken
        )
    });
    issued || r.status == 302 || !failure_markers(facts)
}
