//! Inconsistent masking across endpoints ([`WeakKind::InconsistentMasking`], high): a
//! response value masked with a shape this label has not shown before, which together with
//! the shape of one other endpoint — or else with all shapes of the same length from other
//! endpoints — leaves at most `reassembly_max_unknown` positions unknown. Per label.
//!
//! State: per label, the distinct mask shapes seen and the first endpoint showing each, at
//! most `max_mask_shapes_per_label` (further shapes are checked but not remembered, and
//! counted as `mask_shapes_dropped`).
use std::collections::HashMap;

use apitap_labels::{Direction, Finding, Label, MaskShape, union_unknown};

use super::{Cx, Evidence, Hits, Severity, WeakKind, WeakRule};

/// The rule, with the mask shapes seen.
#[derive(Default)]
pub(crate) struct InconsistentMasking {
    /// Per label: distinct mask shapes and the first endpoint (index) showing each.
    masks: HashMap<Label, Vec<(MaskShape, u32)>>,
}

impl WeakRule for InconsistentMasking {
    fn kind(&self) -> WeakKind {
        WeakKind::InconsistentMasking
    }

    fn check(&mut self, cx: &Cx<'_, '_>, out: &mut Hits) {
        for f in cx.labels.in_direction(Direction::Response) {
            if let Some(shape) = f.mask {
                self.masking(cx, f, shape, out);
            }
        }
    }
}

impl InconsistentMasking {
    fn masking(&mut self, cx: &Cx<'_, '_>, f: &Finding, shape: MaskShape, out: &mut Hits) {
        let idx = cx.endpoint;
        let max_unknown = cx.cfg.reassembly_max_unknown;
        let known = self.masks.entry(f.label).or_default();
        if known.iter().any(|(s, _)| *s == shape) {
            return;
        }
        // Pairs first, then all shapes of this length together.
        let mut hit: Option<(Vec<(MaskShape, u32)>, u32)> = None;
        for (s, ep) in known.iter() {
            if *ep == idx || s.len != shape.len {
                continue;
            }
            if let Some(unknown) = union_unknown(&[shape, *s])
                && unknown <= max_unknown
            {
                hit = Some((vec![(*s, *ep)], unknown));
                break;
            }
        }
        if hit.is_none() {
            let same: Vec<(MaskShape, u32)> = known
                .iter()
                .filter(|(s, ep)| s.len == shape.len && *ep != idx)
                .copied()
                .collect();
            if same.len() >= 2 {
                let mut all: Vec<MaskShape> = same.iter().map(|(s, _)| *s).collect();
                all.push(shape);
                if let Some(unknown) = union_unknown(&all)
                    && unknown <= max_unknown
                {
                    hit = Some((same, unknown));
                }
            }
        }
        if known.len() < cx.cfg.max_mask_shapes_per_label {
            known.push((shape, idx));
        } else {
            out.mask_shapes_dropped += 1;
        }
        if let Some((others, unknown)) = hit {
            let mut shapes = vec![shape];
            shapes.extend(others.iter().map(|(s, _)| *s));
            let patterns: Vec<String> = shapes.iter().map(MaskShape::pattern).collect();
            let e = Evidence {
                event_id: cx.event().event_id.clone(),
                summary: format!(
                    "{} masked as {} here and {} elsewhere: combined, {} position(s) remain unknown",
                    f.label,
                    patterns[0],
                    patterns[1..].join(", "),
                    unknown
                ),
                locations: vec![f.location.clone()],
                masked_samples: vec![f.masked_sample.clone()],
                other_endpoints: others
                    .iter()
                    .filter_map(|(_, ep)| cx.endpoints.get(*ep as usize).cloned())
                    .collect(),
                mask_shapes: shapes,
                unknown_positions: Some(unknown),
                ..Default::default()
            };
            out.hit(Severity::High, Some(f.label), e);
        }
    }
}
