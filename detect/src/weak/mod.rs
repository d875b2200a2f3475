//! Weak points (R-SEN-3; issue 13): a stateful, per-endpoint aggregator that consumes
//! `(endpoint key, event facts, labels)` and yields each weak point once per endpoint (and
//! label), with evidence that never contains a raw value. Memory is bounded: endpoints and
//! mask shapes are capped and whatever is not tracked is counted. `docs/sensitive-data.md`
//! documents the rules.
//!
//! **Tracker and rules.** This module is the tracker: the endpoint table and its bound, the
//! per-endpoint summary (events, function-class votes, highest sensitivity, unauthenticated
//! events), the counters, and raising with deduplication (each endpoint, kind and label
//! once). It names no rule. Each weak point is one rule in its own file, a unit implementing
//! the crate-internal trait `WeakRule`: `WeakRule::kind` is the kind its findings carry, and
//! `WeakRule::check` reads what the tracker worked out about one event (a `Cx`: the event's
//! shared [`EventFacts`], its labels, function class, sensitivity, status, authentication)
//! and pushes its hits (severity, label, evidence) to a `Hits`. The tracker
//! raises each hit the first time its (endpoint, kind, label) is seen. Rules are `&mut self`
//! so that a rule may keep state of its own (inconsistent masking remembers the mask shapes
//! seen per label across endpoints); the others are unit structs.
//!
//! The rules run in the order of the list in `rules`, which is the order their findings on
//! one event come out (keep it: it shows in the alerts output):
//!
//! 1. `cleartext_password` — a password or Basic credential over plain HTTP.
//! 2. `credential_in_url` — a credential or ID number in the path or query.
//! 3. `login_via_get` — a login performed with GET.
//! 4. `sensitive_without_auth` — C2/C3 data served to a request without authentication.
//! 5. `weak_password_accepted` — a successful login with a common password.
//! 6. `excessive_data_exposure` — too many sensitive records or fields in one response.
//! 7. `unmasked_sensitive_response` — an ID document, account number or credential
//!    returned unmasked.
//! 8. `inconsistent_masking` — one label masked differently by endpoints that together
//!    reveal (almost) all of it.
//!
//! **Adding a weak-point rule** touches its own file (a unit struct, its `impl WeakRule` and
//! its `//!` docs) with its `mod` line here, one line in `rules`, its [`WeakKind`] variant
//! (and `KINDS` when the variant count grows), and `docs/sensitive-data.md`. The tracker
//! does not change. The analyzer gives each kind its alert title and OCSF class
//! (`analyzer/src/labelling.rs`).
use std::collections::HashMap;

use apitap_labels::classify::{FunctionClass, Sensitivity, function_class, sensitivity_with};
use apitap_labels::facts::{DEFAULT_MAX_DECODED_BYTES, EventFacts};
use apitap_labels::{
    DataClass, Direction, EventLabels, Finding, Label, Location, MaskShape, is_body_part,
};
use apitap_schema::ApiEvent;
use serde::{Deserialize, Serialize};

mod cleartext_password;
mod credential_in_url;
mod excessive_data_exposure;
mod inconsistent_masking;
mod login_via_get;
mod sensitive_without_auth;
mod unmasked_sensitive_response;
mod weak_password_accepted;

pub use crate::outcome::login_succeeded;

/// Every weak-point rule, in check order: the order their findings on one event come out
/// (keep it). One line per rule.
fn rules() -> Vec<Box<dyn WeakRule>> {
    vec![
        Box::new(cleartext_password::CleartextPassword),
        Box::new(credential_in_url::CredentialInUrl),
        Box::new(login_via_get::LoginViaGet),
        Box::new(sensitive_without_auth::SensitiveWithoutAuth),
        Box::new(weak_password_accepted::WeakPasswordAccepted),
        Box::new(excessive_data_exposure::ExcessiveDataExposure),
        Box::new(unmasked_sensitive_response::UnmaskedSensitiveResponse),
        Box::new(inconsistent_masking::InconsistentMasking::default()),
    ]
}

/// One weak-point rule as the tracker drives it (see the module docs).
pub(crate) trait WeakRule: Send {
    /// The kind its findings carry (and are deduplicated under, with the endpoint and label).
    fn kind(&self) -> WeakKind;

    /// Checks one event of a tracked endpoint; pushes a [`Hit`] per weak point seen (the
    /// tracker drops the ones already raised for the endpoint).
    fn check(&mut self, cx: &Cx<'_, '_>, out: &mut Hits);
}

/// What a rule reads about one event: the shared facts, the labels, and what the tracker
/// worked out once for every rule.
pub(crate) struct Cx<'e, 'a> {
    /// The event's shared facts (decoded bodies, request-header scan).
    pub facts: &'e EventFacts<'a>,
    /// The event's labels.
    pub labels: &'e EventLabels,
    /// Thresholds and caps.
    pub cfg: &'e WeakPointConfig,
    /// The endpoint's index into `endpoints`.
    pub endpoint: u32,
    /// Every tracked endpoint by index (in order of first event).
    pub endpoints: &'e [EndpointKey],
    /// Function class of the event.
    pub function: FunctionClass,
    /// Sensitivity of the event.
    pub sensitivity: Sensitivity,
    /// Response status.
    pub status: Option<u16>,
    /// The response is 2xx or 3xx.
    pub ok: bool,
    /// The request carries no authentication at all.
    pub unauthenticated: bool,
    /// Unmasked C2/C3 values in the response body.
    pub sensitive_response: Vec<&'e Finding>,
}

impl<'e, 'a> Cx<'e, 'a> {
    /// The event.
    pub fn event(&self) -> &'a ApiEvent {
        self.facts.event
    }

    /// Unmasked request findings of `label`.
    pub fn request_unmasked(&self, label: Label) -> impl Iterator<Item = &'e Finding> + use<'e> {
        self.labels
            .in_direction(Direction::Request)
            .filter(move |f| f.label == label && f.mask.is_none())
    }

    /// Evidence of the event: its id and status, what happened, and where and as what (masked)
    /// the findings `fs` were.
    pub fn evidence(&self, summary: String, fs: &[&Finding]) -> Evidence {
        Evidence {
            event_id: self.event().event_id.clone(),
            summary,
            locations: fs.iter().map(|f| f.location.clone()).collect(),
            masked_samples: fs.iter().map(|f| f.masked_sample.clone()).collect(),
            status: self.status,
            ..Default::default()
        }
    }
}

/// One weak point a rule saw.
pub(crate) struct Hit {
    /// Severity.
    pub severity: Severity,
    /// The label concerned, when the weak point is about one (deduplicated per label).
    pub label: Option<Label>,
    /// Evidence.
    pub evidence: Evidence,
}

/// What rules report about one event.
#[derive(Default)]
pub(crate) struct Hits {
    found: Vec<Hit>,
    /// Mask shapes not remembered because `max_mask_shapes_per_label` was reached.
    pub mask_shapes_dropped: u64,
}

impl Hits {
    /// A weak point seen.
    pub fn hit(&mut self, severity: Severity, label: Option<Label>, evidence: Evidence) {
        self.found.push(Hit {
            severity,
            label,
            evidence,
        });
    }
}
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
            high_records: apitap_labels::classify::HIGH_RECORDS,
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

/// Kinds of weak point: the length of an endpoint's raised-bits table, indexed by
/// [`WeakKind`] (bump it with a new variant; a unit test checks every rule's kind fits).
const KINDS: usize = 8;

struct EpState {
    idx: u32,
    /// Raised (kind, label) pairs: bit `label index` of `raised[kind]`; bit 63 for no label.
    raised: [u64; KINDS],
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
    rules: Vec<Box<dyn WeakRule>>,
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

impl WeakPointTracker {
    /// A tracker.
    pub fn new(cfg: WeakPointConfig) -> WeakPointTracker {
        WeakPointTracker {
            cfg,
            eps: HashMap::new(),
            keys: Vec::new(),
            rules: rules(),
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
    /// Builds the event's facts; [`WeakPointTracker::observe_facts`] reads shared ones.
    pub fn observe(
        &mut self,
        key: &EndpointKey,
        ev: &ApiEvent,
        labels: &EventLabels,
    ) -> Vec<WeakFinding> {
        let facts = EventFacts::new(ev, DEFAULT_MAX_DECODED_BYTES);
        self.observe_facts(key, &facts, labels, function_class(ev, labels))
    }

    /// [`WeakPointTracker::observe`] reading the event's shared facts and the function class
    /// the labeller already gave it (`classify_event(..).function`): the analyzer's path, one
    /// set of facts and one classification per event for every analysis.
    pub fn observe_facts(
        &mut self,
        key: &EndpointKey,
        facts: &EventFacts<'_>,
        labels: &EventLabels,
        function: FunctionClass,
    ) -> Vec<WeakFinding> {
        let ev = facts.event;
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
                    raised: [0; KINDS],
                    events: 0,
                    unauth: 0,
                    votes: [0; 15],
                    max_sens: Sensitivity::None,
                },
            );
            self.stats.endpoints += 1;
        }
        let sens = sensitivity_with(labels, self.cfg.high_records);
        let mut out = Vec::new();
        let status = ev.response.as_ref().map(|r| r.status);
        let Some(state) = self.eps.get_mut(key) else {
            return out;
        };
        state.events += 1;
        state.votes[FunctionClass::ALL
            .iter()
            .position(|c| *c == function)
            .unwrap_or(14)] += 1;
        state.max_sens = state.max_sens.max(sens);
        let unauthenticated = labels.auth.is_empty();
        if unauthenticated {
            state.unauth += 1;
        }
        let cx = Cx {
            facts,
            labels,
            cfg: &self.cfg,
            endpoint: state.idx,
            endpoints: &self.keys,
            function,
            sensitivity: sens,
            status,
            ok: status.is_some_and(|s| (200..400).contains(&s)),
            unauthenticated,
            sensitive_response: labels
                .in_direction(Direction::Response)
                .filter(|f| {
                    f.mask.is_none()
                        && f.label.class() >= DataClass::C2
                        && is_body_part(f.location.part)
                })
                .collect(),
        };
        let mut hits = Hits::default();
        for rule in &mut self.rules {
            rule.check(&cx, &mut hits);
            let kind = rule.kind();
            for hit in hits.found.drain(..) {
                if raise(state, kind, hit.label) {
                    self.stats.raised += 1;
                    out.push(WeakFinding {
                        kind,
                        severity: hit.severity,
                        endpoint: key.clone(),
                        label: hit.label,
                        evidence: hit.evidence,
                    });
                }
            }
        }
        self.stats.mask_shapes_dropped += hits.mask_shapes_dropped;
        out
    }
}

/// Marks (kind, label) raised for the endpoint; false when it already was.
fn raise(e: &mut EpState, kind: WeakKind, label: Option<Label>) -> bool {
    let bit = 1u64 << label.map_or(NO_LABEL, |l| l.index() as u32);
    let Some(slot) = e.raised.get_mut(kind.index()) else {
        return false;
    };
    if *slot & bit != 0 {
        return false;
    }
    *slot |= bit;
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rule_has_its_own_kind_within_the_raised_table() {
        let kinds: Vec<WeakKind> = rules().iter().map(|r| r.kind()).collect();
        for (i, k) in kinds.iter().enumerate() {
            assert!(k.index() < KINDS, "{k:?}");
            assert!(!kinds[..i].contains(k), "{k:?} twice");
        }
        assert_eq!(kinds.len(), KINDS);
    }
}
