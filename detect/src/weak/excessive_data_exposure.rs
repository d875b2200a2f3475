//! Excessive data exposure ([`WeakKind::ExcessiveDataExposure`]): a 2xx/3xx response with at
//! least `excessive_records` sensitive records of one label or `excessive_fields` distinct
//! sensitive fields; high from ten times `excessive_records`, else medium. The evidence counts
//! the larger of the two. No label.
use super::{Cx, Hits, Severity, WeakKind, WeakRule};

/// The rule.
pub(crate) struct ExcessiveDataExposure;

impl WeakRule for ExcessiveDataExposure {
    fn kind(&self) -> WeakKind {
        WeakKind::ExcessiveDataExposure
    }

    fn check(&mut self, cx: &Cx<'_, '_>, out: &mut Hits) {
        let Some(shape) = &cx.labels.response else {
            return;
        };
        if !(cx.ok
            && (shape.sensitive_records >= cx.cfg.excessive_records
                || shape.sensitive_fields >= cx.cfg.excessive_fields))
        {
            return;
        }
        let mut e = cx.evidence(
            format!(
                "{} sensitive records, {} sensitive fields in one response",
                shape.sensitive_records, shape.sensitive_fields
            ),
            &cx.sensitive_response,
        );
        e.count = Some(shape.sensitive_records.max(shape.sensitive_fields));
        let sev = if shape.sensitive_records >= cx.cfg.excessive_records * 10 {
            Severity::High
        } else {
            Severity::Medium
        };
        out.hit(sev, None, e);
    }
}
