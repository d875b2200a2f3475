//! Weak points (R-SEN-3): a stateful, per-endpoint aggregator that consumes
//! `(endpoint key, event, labels)` and yields each weak point once per endpoint (and label),
//! with evidence that never contains a raw value. Memory is bounded: endpoints and mask shapes
//! are capped and whatever is not tracked is counted.
use std::collections::HashMap;

use apitap_schema::ApiEvent;
use serde::{Deserialize, Serialize};

use crate::classify::{FunctionClass, Sensitivity, function_class, sensitivity_with};
use crate::event::{EventLabels, is_body_part};
use crate::label::{DataClass, Direction, Finding, Label, Location, MaskShape, Notes, Part};
use crate::mask::union_unknown;

/// Identifies an endpoint. The caller chooses the granularity: today method + host + raw
/// path ([`EndpointKey::from_event`]); the inventory will pass path templates
/// ([`EndpointKey::new`] with `/users/{id}`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct EndpointKey {
    /// Upper-case method.
    pub method: String,
    /// Host (as sent, lower-cased), empty when unknown.
    pub host: String,
    /// Path or path template, without query.
    pub path: String,
}

impl EndpointKey {
    /// An endpoint from its parts (e.g. an inventory template).
    pub fn new(method: &str, host: &str, path: &str) -> EndpointKey {
        EndpointKey {
            method: method.to_ascii_uppercase(),
            host: host.to_ascii_lowercase(),
            path: path.to_owned(),
        }
    }

    /// method + host + raw path of the event.
    pub fn from_event(ev: &ApiEvent) -> EndpointKey {
        EndpointKey::new(
            &ev.request.method,
            ev.request.host.as_deref().unwrap_or(""),
            &ev.request.path,
        )
    }
}

impl std::fmt::Display for EndpointKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}{}", self.method, self.host, self.path)
    }
}

/// Kind of weak point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WeakKind {
    /// A password (or Basic credential) sent over plain HTTP (`tls == false`).
    CleartextPassword,
    /// A password, token, key or ID number in the URL path or query.
    CredentialInUrl,
    /// A login performed with GET.
    LoginViaGet,
    /// A successful response with C2/C3 data to a request without any authentication.
    SensitiveWithoutAuth,
    /// A successful login with a password from the common-password list.
    WeakPasswordAccepted,
    /// The same label masked differently by two endpoints, so that together they reveal (almost)
    /// all of it.
    InconsistentMasking,
    /// Too many sensitive records or fields in one response.
    ExcessiveDataExposure,
    /// An identity document, account number or credential returned unmasked.
    UnmaskedSensitiveResponse,
}

impl WeakKind {
    fn index(self) -> usize {
        self as usize
    }
}

/// Severity of a weak point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Low.
    Low,
    /// Medium.
    Medium,
    /// High.
    High,
}

/// Evidence of a weak point: ids, names, counts, masked samples, never raw values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Evidence {
    /// The event that raised it.
    pub event_id: String,
    /// What happened, in words (no values).
    pub summary: String,
    /// Where the data was.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub locations: Vec<Location>,
    /// Masked samples of the data.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub masked_samples: Vec<String>,
    /// Response status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Records or fields counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    /// For inconsistent masking: the other endpoints and their mask shapes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub other_endpoints: Vec<EndpointKey>,
    /// For inconsistent masking: the shapes that combine (this endpoint's first).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mask_shapes: Vec<MaskShape>,
    /// For inconsistent masking: positions still unknown after combining.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unknown_positions: Option<u32>,
}

/// One weak point of one endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WeakFinding {
    /// Kind.
    pub kind: WeakKind,
    /// Severity.
    pub severity: Severity,
    /// Endpoint.
    pub endpoint: EndpointKey,
    /// The label concerned, when the weak point is about one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<Label>,
    /// Evidence.
    pub evidence: Evidence,
}

/// Thresholds and caps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WeakPointConfig {
    /// Endpoints tracked at most; events of further endpoints are counted, not analysed.
    pub max_endpoints: usize,
    /// Distinct mask shapes remembered per label.
    pub max_mask_shapes_per_label: usize,
    /// Sensitive records per response at or above which exposure is excessive.
    pub excessive_records: u32,
    /// Distinct sensitive fields per response at or above which exposure is excessive.
    pub excessive_fields: u32,
    /// Combined masks leaving at most this many unknown positions are a reassembly risk.
    pub reassembly_max_unknown: u32,
    /// Records threshold for high sensitivity (see `classify`).
    pub high_records: u32,
}

impl Default for WeakPointConfig {
    fn default() -> Self {
        WeakPointConfig {
            max_endpoints: 10_000,
            max_mask_shapes_per_label: 32,
            excessive_records: 100,
            excessive_fields: 12,
            reassembly_max_unknown: 2,
            high_records: crate::classify::HIGH_RECORDS,
        }
    }
}

/// Counters (R-CAP-7: what is not tracked is counted).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeakStats {
    /// Events observed.
    pub events: u64,
    /// Endpoints tracked.
    pub endpoints: u64,
    /// Events of endpoints not tracked because `max_endpoints` was reached.
    pub events_untracked: u64,
    /// Mask shapes not remembered because `max_mask_shapes_per_label` was reached.
    pub mask_shapes_dropped: u64,
    /// Weak points raised.
    pub raised: u64,
}

/// What the tracker knows about one endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointSummary {
    /// Events seen.
    pub events: u64,
    /// Most frequent function class other than `other` (or `other`).
    pub function: Option<FunctionClass>,
    /// Highest sensitivity seen.
    pub sensitivity: Option<Sensitivity>,
    /// Events without any authentication.
    pub unauthenticated_events: u64,
}

struct EpState {
    idx: u32,
    /// Raised (kind, label) pairs: bit `label index` of `raised[kind]`; bit 63 for no label.
    raised: [u64; 8],
    events: u64,
    unauth: u64,
    votes: [u32; 15],
    max_sens: Sensitivity,
}

/// The weak-point aggregator. Not thread-safe by design: one per analyzer partition.
pub struct WeakPointTracker {
    cfg: WeakPointConfig,
    eps: HashMap<EndpointKey, EpState>,
    keys: Vec<EndpointKey>,
    /// Per label: distinct mask shapes and the first endpoint (index into `keys`) showing each.
    masks: HashMap<Label, Vec<(MaskShape, u32)>>,
    stats: WeakStats,
}

impl std::fmt::Debug for WeakPointTracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WeakPointTracker")
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

const NO_LABEL: u32 = 63;

/// Labels whose presence in a URL is a weak point (credentials and ID numbers).
fn url_sensitive(l: Label) -> bool {
    l.class() == DataClass::C3 || l == Label::PrcId
}

fn failure_markers(ev: &ApiEvent) -> bool {
    let Some(r) = &ev.response else { return false };
    let d = r.body.data.as_bytes();
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

/// Did a login succeed? 2xx/3xx, and either a session/token was issued, or no failure marker.
pub fn login_succeeded(ev: &ApiEvent, labels: &EventLabels) -> bool {
    let Some(r) = &ev.response else { return false };
    if r.status >= 400 {
        return false;
    }
    let issued = labels.in_direction(Direction::Response).any(|f| {
        matches!(
            f.label,
            Label::SessionId | Label::Jwt | Label::ApiToken | Label::BearerToken
        )
    });
    issued || r.status == 302 || !failure_markers(ev)
}

impl WeakPointTracker {
    /// A tracker.
    pub fn new(cfg: WeakPointConfig) -> WeakPointTracker {
        WeakPointTracker {
            cfg,
            eps: HashMap::new(),
            keys: Vec::new(),
            masks: HashMap::new(),
            stats: WeakStats::default(),
        }
    }

    /// Counters.
    pub fn stats(&self) -> &WeakStats {
        &self.stats
    }

    /// What the tracker knows about an endpoint.
    pub fn endpoint(&self, key: &EndpointKey) -> Option<EndpointSummary> {
        let e = self.eps.get(key)?;
        let best = e
            .votes
            .iter()
            .enumerate()
            .take(14)
            .max_by_key(|(_, v)| **v)
            .filter(|(_, v)| **v > 0)
            .map(|(i, _)| FunctionClass::ALL[i])
            .unwrap_or(FunctionClass::Other);
        Some(EndpointSummary {
            events: e.events,
            function: Some(best),
            sensitivity: Some(e.max_sens),
            unauthenticated_events: e.unauth,
        })
    }

    /// Consumes one event and its labels; returns the weak points raised for the first time.
    pub fn observe(
        &mut self,
        key: &EndpointKey,
        ev: &ApiEvent,
        labels: &EventLabels,
    ) -> Vec<WeakFinding> {
        self.stats.events += 1;
        if !self.eps.contains_key(key) {
            if self.eps.len() >= self.cfg.max_endpoints {
                self.stats.events_untracked += 1;
                return Vec::new();
            }
            let idx = self.keys.len() as u32;
            self.keys.push(key.clone());
            self.eps.insert(
                key.clone(),
                EpState {
                    idx,
                    raised: [0; 8],
                    events: 0,
                    unauth: 0,
                    votes: [0; 15],
                    max_sens: Sensitivity::None,
                },
            );
            self.stats.endpoints += 1;
        }
        let function = function_class(ev, labels);
        let sens = sensitivity_with(labels, self.cfg.high_records);
        let mut out = Vec::new();
        let status = ev.response.as_ref().map(|r| r.status);
        let ok = status.is_some_and(|s| (200..400).contains(&s));
        let (idx, unauth) = {
            let Some(e) = self.eps.get_mut(key) else {
                return out;
            };
            e.events += 1;
            e.votes[FunctionClass::ALL
                .iter()
                .position(|c| *c == function)
                .unwrap_or(14)] += 1;
            e.max_sens = e.max_sens.max(sens);
            let unauth = labels.auth.is_empty();
            if unauth {
                e.unauth += 1;
            }
            (e.idx, unauth)
        };
        let req = |l: Label| {
            labels
                .in_direction(Direction::Request)
                .filter(move |f| f.label == l && f.mask.is_none())
        };
        let evidence = |summary: String, fs: &[&Finding]| Evidence {
            event_id: ev.event_id.clone(),
            summary,
            locations: fs.iter().map(|f| f.location.clone()).collect(),
            masked_samples: fs.iter().map(|f| f.masked_sample.clone()).collect(),
            status,
            ..Default::default()
        };

        // Cleartext password.
        if !ev.tls {
            let fs: Vec<&Finding> = req(Label::Password).chain(req(Label::BasicAuth)).collect();
            if !fs.is_empty() {
                let e = evidence("password sent over plain HTTP (not TLS)".into(), &fs);
                self.raise(
                    key,
                    &mut out,
                    WeakKind::CleartextPassword,
                    Severity::High,
                    None,
                    e,
                );
            }
        }
        // Credentials / ID numbers in the URL.
        for f in labels.in_direction(Direction::Request) {
            if matches!(f.location.part, Part::PathSegment | Part::QueryParam)
                && f.mask.is_none()
                && url_sensitive(f.label)
            {
                let sev = if f.label.class() == DataClass::C3 {
                    Severity::High
                } else {
                    Severity::Medium
                };
                let e = evidence(format!("{} in the URL", f.label), &[f]);
                self.raise(
                    key,
                    &mut out,
                    WeakKind::CredentialInUrl,
                    sev,
                    Some(f.label),
                    e,
                );
            }
        }
        // Login via GET.
        if ev.request.method.eq_ignore_ascii_case("GET")
            && (function == FunctionClass::Login
                || req(Label::Password).any(|f| f.location.part == Part::QueryParam))
        {
            let fs: Vec<&Finding> = req(Label::Password).collect();
            let e = evidence("login performed with GET".into(), &fs);
            self.raise(
                key,
                &mut out,
                WeakKind::LoginViaGet,
                Severity::Medium,
                None,
                e,
            );
        }
        // Sensitive API without authentication.
        let resp_sensitive: Vec<&Finding> = labels
            .in_direction(Direction::Response)
            .filter(|f| {
                f.mask.is_none()
                    && f.label.class() >= DataClass::C2
                    && is_body_part(f.location.part)
            })
            .collect();
        if unauth
            && ok
            && sens >= Sensitivity::Medium
            && !function.is_pre_auth()
            && !resp_sensitive.is_empty()
        {
            let e = evidence(
                format!(
                    "{sens:?} sensitivity response served to a request without any authentication"
                )
                .to_lowercase(),
                &resp_sensitive,
            );
            self.raise(
                key,
                &mut out,
                WeakKind::SensitiveWithoutAuth,
                Severity::High,
                None,
                e,
            );
        }
        // Weak password accepted.
        let weak: Vec<&Finding> = labels
            .in_direction(Direction::Request)
            .filter(|f| {
                matches!(f.label, Label::Password | Label::BasicAuth)
                    && f.notes.contains(Notes::WEAK_PASSWORD)
            })
            .collect();
        if !weak.is_empty()
            && (function == FunctionClass::Login
                || weak.iter().any(|f| f.label == Label::BasicAuth))
            && login_succeeded(ev, labels)
        {
            let e = evidence("successful login with a common password".into(), &weak);
            self.raise(
                key,
                &mut out,
                WeakKind::WeakPasswordAccepted,
                Severity::High,
                None,
                e,
            );
        }
        // Excessive data exposure.
        if let Some(shape) = &labels.response
            && ok
            && (shape.sensitive_records >= self.cfg.excessive_records
                || shape.sensitive_fields >= self.cfg.excessive_fields)
        {
            let mut e = evidence(
                format!(
                    "{} sensitive records, {} sensitive fields in one response",
                    shape.sensitive_records, shape.sensitive_fields
                ),
                &resp_sensitive,
            );
            e.count = Some(shape.sensitive_records.max(shape.sensitive_fields));
            let sev = if shape.sensitive_records >= self.cfg.excessive_records * 10 {
                Severity::High
            } else {
                Severity::Medium
            };
            self.raise(key, &mut out, WeakKind::ExcessiveDataExposure, sev, None, e);
        }
        // Unmasked high-sensitivity values in responses.
        for f in labels.in_direction(Direction::Response) {
            if f.mask.is_none()
                && f.label.must_be_masked_in_responses()
                && f.location.part != Part::Cookie
            {
                let sev = if f.label == Label::Mobile {
                    Severity::Medium
                } else {
                    Severity::High
                };
                let mut e = evidence(format!("{} returned unmasked", f.label), &[f]);
                e.count = Some(f.count);
                self.raise(
                    key,
                    &mut out,
                    WeakKind::UnmaskedSensitiveResponse,
                    sev,
                    Some(f.label),
                    e,
                );
            }
        }
        // Inconsistent masking across endpoints.
        for f in labels.in_direction(Direction::Response) {
            if let Some(shape) = f.mask {
                self.masking(key, idx, ev, f, shape, &mut out);
            }
        }
        out
    }

    fn masking(
        &mut self,
        key: &EndpointKey,
        idx: u32,
        ev: &ApiEvent,
        f: &Finding,
        shape: MaskShape,
        out: &mut Vec<WeakFinding>,
    ) {
        let max_unknown = self.cfg.reassembly_max_unknown;
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
        if known.len() < self.cfg.max_mask_shapes_per_label {
            known.push((shape, idx));
        } else {
            self.stats.mask_shapes_dropped += 1;
        }
        if let Some((others, unknown)) = hit {
            let mut shapes = vec![shape];
            shapes.extend(others.iter().map(|(s, _)| *s));
            let patterns: Vec<String> = shapes.iter().map(MaskShape::pattern).collect();
            let e = Evidence {
                event_id: ev.event_id.clone(),
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
                    .filter_map(|(_, ep)| self.keys.get(*ep as usize).cloned())
                    .collect(),
                mask_shapes: shapes,
                unknown_positions: Some(unknown),
                ..Default::default()
            };
            self.raise(
                key,
                out,
                WeakKind::InconsistentMasking,
                Severity::High,
                Some(f.label),
                e,
            );
        }
    }

    fn raise(
        &mut self,
        key: &EndpointKey,
        out: &mut Vec<WeakFinding>,
        kind: WeakKind,
        severity: Severity,
        label: Option<Label>,
        evidence: Evidence,
    ) {
        let Some(e) = self.eps.get_mut(key) else {
            return;
        };
        let bit = 1u64 << label.map_or(NO_LABEL, |l| l.index() as u32);
        let slot = &mut e.raised[kind.index()];
        if *slot & bit != 0 {
            return;
        }
        *slot |= bit;
        self.stats.raised += 1;
        out.push(WeakFinding {
            kind,
            severity,
            endpoint: key.clone(),
            label,
            evidence,
        });
    }
}
