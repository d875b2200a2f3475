//! Sensitive API without authentication ([`WeakKind::SensitiveWithoutAuth`], high): a 2xx/3xx
//! response of medium or high sensitivity with unmasked C2/C3 values in its body, to a
//! request carrying no authentication at all, on an endpoint that is not pre-authentication
//! (login, registration, …). No label.
use apitap_labels::classify::Sensitivity;

use super::{Cx, Hits, Severity, WeakKind, WeakRule};

/// The rule.
pub(crate) struct SensitiveWithoutAuth;

impl WeakRule for SensitiveWithoutAuth {
    fn kind(&self) -> WeakKind {
        WeakKind::SensitiveWithoutAuth
    }

    fn check(&mut self, cx: &Cx<'_, '_>, out: &mut Hits) {
        let sens = cx.sensitivity;
        if cx.unauthenticated
            && cx.ok
            && sens >= Sensitivity::Medium
            && !cx.function.is_pre_auth()
            && !cx.sensitive_response.is_empty()
        {
            let e = cx.evidence(
                format!(
                    "{sens:?} sensitivity response served to a request without any authentication"
                )
                .to_lowercase(),
                &cx.sensitive_response,
            );
            out.hit(Severity::High, None, e);
        }
    }
}
