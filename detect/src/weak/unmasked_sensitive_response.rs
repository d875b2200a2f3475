//! Unmasked sensitive response ([`WeakKind::UnmaskedSensitiveResponse`]): a response value of
//! a label that must be masked in responses (ID documents, account numbers, credentials,
//! mobiles) returned unmasked outside a cookie; medium for a mobile, else high. The evidence
//! counts its occurrences. Per label.
use apitap_labels::{Direction, Label, Part};

use super::{Cx, Hits, Severity, WeakKind, WeakRule};

/// The rule.
pub(crate) struct UnmaskedSensitiveResponse;

impl WeakRule for UnmaskedSensitiveResponse {
    fn kind(&self) -> WeakKind {
        WeakKind::UnmaskedSensitiveResponse
    }

    fn check(&mut self, cx: &Cx<'_, '_>, out: &mut Hits) {
        for f in cx.labels.in_direction(Direction::Response) {
            if f.mask.is_none()
                && f.label.must_be_masked_in_responses()
                && f.location.part != Part::Cookie
            {
                let sev = if f.label == Label::Mobile {
                    Severity::Medium
                } else {
                    Severity::High
                };
                let mut e = cx.evidence(format!("{} returned unmasked", f.label), &[f]);
                e.count = Some(f.count);
                out.hit(sev, Some(f.label), e);
            }
        }
    }
}
