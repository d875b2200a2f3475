//! Credential or ID number in the URL ([`WeakKind::CredentialInUrl`]): an unmasked C3 value
//! (password, token, key: high) or PRC ID number (medium) in a path segment or query
//! parameter. Per label.
use apitap_labels::{DataClass, Direction, Label, Part};

use super::{Cx, Hits, Severity, WeakKind, WeakRule};

/// The rule.
pub(crate) struct CredentialInUrl;

/// Labels whose presence in a URL is a weak point (credentials and ID numbers).
fn url_sensitive(l: Label) -> bool {
    l.class() == DataClass::C3 || l == Label::PrcId
}

impl WeakRule for CredentialInUrl {
    fn kind(&self) -> WeakKind {
        WeakKind::CredentialInUrl
    }

    fn check(&mut self, cx: &Cx<'_, '_>, out: &mut Hits) {
        for f in cx.labels.in_direction(Direction::Request) {
            if matches!(f.location.part, Part::PathSegment | Part::QueryParam)
                && f.mask.is_none()
                && url_sensitive(f.label)
            {
                let sev = if f.label.class() == DataClass::C3 {
                    Severity::High
                } else {
                    Severity::Medium
                };
                let e = cx.evidence(format!("{} in the URL", f.label), &[f]);
                out.hit(sev, Some(f.label), e);
            }
        }
    }
}
