//! Login via GET ([`WeakKind::LoginViaGet`], medium): a GET whose URL carries the
//! credentials: an unmasked password in the query, or on a login endpoint (function class
//! `login`) any unmasked C3 secret in the query (token, key, SMS code). Loading a login page
//! (`GET /admin/login/`, its stylesheet) is not a login. No label.
use apitap_labels::classify::FunctionClass;
use apitap_labels::{DataClass, Direction, Finding, Label, Part};

use super::{Cx, Hits, Severity, WeakKind, WeakRule};

/// The rule.
pub(crate) struct LoginViaGet;

impl WeakRule for LoginViaGet {
    fn kind(&self) -> WeakKind {
        WeakKind::LoginViaGet
    }

    fn check(&mut self, cx: &Cx<'_, '_>, out: &mut Hits) {
        if !cx.event().request.method.eq_ignore_ascii_case("GET") {
            return;
        }
        let in_query: Vec<&Finding> = cx
            .labels
            .in_direction(Direction::Request)
            .filter(|f| {
                f.location.part == Part::QueryParam
                    && f.mask.is_none()
                    && (f.label == Label::Password
                        || (cx.function == FunctionClass::Login
                            && f.label.class() == DataClass::C3))
            })
            .collect();
        if !in_query.is_empty() {
            let fs = in_query;
            let e = cx.evidence("login performed with GET".into(), &fs);
            out.hit(Severity::Medium, None, e);
        }
    }
}
