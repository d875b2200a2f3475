//! Login via GET ([`WeakKind::LoginViaGet`], medium): a GET to a login endpoint (function
//! class `login`), or a GET with an unmasked password in the query. No label.
use apitap_labels::classify::FunctionClass;
use apitap_labels::{Finding, Label, Part};

use super::{Cx, Hits, Severity, WeakKind, WeakRule};

/// The rule.
pub(crate) struct LoginViaGet;

impl WeakRule for LoginViaGet {
    fn kind(&self) -> WeakKind {
        WeakKind::LoginViaGet
    }

    fn check(&mut self, cx: &Cx<'_, '_>, out: &mut Hits) {
        if cx.event().request.method.eq_ignore_ascii_case("GET")
            && (cx.function == FunctionClass::Login
                || cx
                    .request_unmasked(Label::Password)
                    .any(|f| f.location.part == Part::QueryParam))
        {
            let fs: Vec<&Finding> = cx.request_unmasked(Label::Password).collect();
            let e = cx.evidence("login performed with GET".into(), &fs);
            out.hit(Severity::Medium, None, e);
        }
    }
}
