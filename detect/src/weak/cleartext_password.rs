//! Cleartext password ([`WeakKind::CleartextPassword`], high): an unmasked password or Basic
//! credential in a request sent over plain HTTP (`tls == false`). No label: once per
//! endpoint.
use apitap_labels::{Finding, Label};

use super::{Cx, Hits, Severity, WeakKind, WeakRule};

/// The rule.
pub(crate) struct CleartextPassword;

impl WeakRule for CleartextPassword {
    fn kind(&self) -> WeakKind {
        WeakKind::CleartextPassword
    }

    fn check(&mut self, cx: &Cx<'_, '_>, out: &mut Hits) {
        if cx.event().tls {
            return;
        }
        let fs: Vec<&Finding> = cx
            .request_unmasked(Label::Password)
            .chain(cx.request_unmasked(Label::BasicAuth))
            .collect();
        if !fs.is_empty() {
            let e = cx.evidence("password sent over plain HTTP (not TLS)".into(), &fs);
            out.hit(Severity::High, None, e);
        }
    }
}
