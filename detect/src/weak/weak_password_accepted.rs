//! Weak password accepted ([`WeakKind::WeakPasswordAccepted`], high): a password or Basic
//! credential from the common-password list (note `weak_password`) in a login (function class
//! `login`, or any request with Basic) that succeeded (the detection engine's outcome rules read on the answer alone,
//! [`crate::outcome::login_succeeded`]). No label.
use apitap_labels::classify::FunctionClass;
use apitap_labels::{Direction, Finding, Label, Notes};

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
            && crate::outcome::login_succeeded(cx.facts)
        {
            let e = cx.evidence("successful login with a common password".into(), &weak);
            out.hit(Severity::High, None, e);
        }
    }
}
