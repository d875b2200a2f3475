//! The inventory engine: events in, endpoints and changes out (R-INV-1…4).
//!
//! [`Inventory::observe`] routes each event to its endpoint — an analyst override first, then
//! the operator's OpenAPI document, then discovery by the templating tree — and learns its
//! shape into the endpoint's in-memory *delta*. [`Inventory::flush`] merges the deltas into the
//! store in one transaction (so several analyzers sharing PostgreSQL add up), moves endpoints
//! through their lifecycle, diffs their shape, and returns the change log entries it wrote.
//! Endpoints folded by templating since the last flush have their stored rows merged into the
//! new template's row (`merged` change).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;

use apitap_labels::facts::EventFacts;
use apitap_labels::{Classification, EventLabels};
use apitap_schema::ApiEvent;
use serde::Serialize;

use super::config::{InventoryConfig, ServiceBy};
use super::learn::{
    ClientClassifier, EndpointData, Fields, RequestFacts, learn, response_fingerprint,
};
use super::probe::{ProbeReason, identifier_evidence, operation_rejected, probe_reason};
use super::record::{
    Change, EndpointFilter, EndpointKey, EndpointRecord, Lifecycle, SENSITIVITY_UNKNOWN,
};
use super::shape::SegmentShape;
use super::spec::{CompiledOverride, ServiceSpec, SpecError, SpecStatus};
use super::store::{Store, StoreError, Tx};
use super::tree::{
    NodeId, Observation, PathTree, Payload, Route, method_slot, segments, status_slot,
};

/// Template of the per-service overflow endpoint.
pub const OVERFLOW_TEMPLATE: &str = "/{overflow}";
/// Name of the service that takes events of services beyond `max_services`.
pub const OVERFLOW_SERVICE: &str = "{overflow}";
/// Parameter additions reported per endpoint and flush at most (the rest are counted).
const MAX_REPORTED_NAMES: usize = 20;

/// An endpoint's in-memory state between flushes.
#[derive(Debug, Default)]
pub struct EndpointState {
    /// Learned since the last flush.
    pub delta: EndpointData,
    /// Requests seen by this instance (drives shape sampling).
    pub seen: u64,
    /// Ids under which this endpoint (or endpoints folded into it) was last flushed.
    pub flushed_ids: Vec<String>,
    /// Spec status of the latest request.
    pub spec_status: Option<SpecStatus>,
    /// Answered with a success (2xx/3xx) at least once (seeded endpoints count as such): a
    /// `404` to this method on this path is then the endpoint's answer, not a probe.
    pub succeeded: bool,
    /// Estimated bytes at the last measurement (see [`crate::memory`]).
    pub bytes: usize,
}

impl EndpointState {
    /// Estimated bytes of this state, heap included.
    pub fn approx_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.delta.approx_bytes()
            + self
                .flushed_ids
                .iter()
                .map(|i| 24 + i.capacity())
                .sum::<usize>()
    }
}

impl Payload for EndpointState {
    fn absorb(&mut self, other: Self) {
        self.delta.absorb(&other.delta);
        self.seen += other.seen;
        for id in other.flushed_ids {
            if !self.flushed_ids.contains(&id) {
                self.flushed_ids.push(id);
            }
        }
        if self.spec_status.is_none() {
            self.spec_status = other.spec_status;
        }
        self.succeeded |= other.succeeded;
        // The account keeps both estimates until the merged state is measured again.
        self.bytes += other.bytes;
    }
}

#[derive(Debug)]
struct Service {
    /// Requests (this instance's, plus the stored hits of seeded endpoints).
    hits: u64,
    /// Latest event time, µs.
    last_seen_us: u64,
    tree: PathTree<EndpointState>,
    /// Endpoints with a template from an override or the spec: (template, method, operation).
    fixed: BTreeMap<(String, String, String), EndpointState>,
    /// Per method: requests beyond the tree's bounds.
    overflow: BTreeMap<String, EndpointState>,
}

/// Counters of the inventory (exported as `apitap_inventory_*_total`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct InventoryCounters {
    /// Events observed.
    pub events: u64,
    /// Events counted in an overflow endpoint (a templating bound was reached).
    pub overflow_events: u64,
    /// Events of services beyond `max_services`.
    pub overflow_service_events: u64,
    /// Services dropped from memory to make room for a new one: seen at most
    /// [`JUNK_SERVICE_MAX_HITS`] times, idle for `discovery_grace_secs`, everything stored.
    pub services_evicted: u64,
    /// Events matched by an analyst override.
    pub override_events: u64,
    /// Events matched by an operator spec.
    pub spec_events: u64,
    /// Flushes completed.
    pub flushes: u64,
    /// Changes written to the change log.
    pub changes: u64,
    /// Requests taken as probes (not served: see [`crate::probe`]), not endpoints.
    pub probe_events: u64,
    /// Probes per reason, in the order of [`PROBE_REASONS`].
    pub probes_by_reason: [u64; 8],
    /// Probes whose path is not a known endpoint path (counted here only).
    pub probe_unrouted_events: u64,
}

/// The probe reasons in the order of [`InventoryCounters::probes_by_reason`].
pub const PROBE_REASONS: [ProbeReason; 8] = [
    ProbeReason::MethodNotAllowed,
    ProbeReason::NotImplemented,
    ProbeReason::NotFound,
    ProbeReason::AutoOptions,
    ProbeReason::AutoHead,
    ProbeReason::RejectedOperation,
    ProbeReason::MethodError,
    ProbeReason::NormalizingRedirect,
];

/// Template in the key of a probe whose path is not a known endpoint path.
pub const PROBE_TEMPLATE: &str = "/{probe}";

/// Where an endpoint state lives, for putting a delta back after a failed flush.
#[derive(Debug, Clone)]
enum Loc {
    Tree(NodeId, String, String),
    Fixed(String, String, String),
    Overflow(String),
}

#[derive(Debug)]
struct Item {
    service: String,
    loc: Loc,
    key: EndpointKey,
    spec_status: SpecStatus,
    delta: EndpointData,
    old_ids: Vec<String>,
    flushed_before: Vec<String>,
}

/// The inventory of one analyzer instance.
#[derive(Debug)]
pub struct Inventory {
    cfg: InventoryConfig,
    classifier: ClientClassifier,
    specs: HashMap<String, ServiceSpec>,
    overrides: Vec<CompiledOverride>,
    services: HashMap<String, Service, foldhash::fast::RandomState>,
    clock_us: u64,
    /// Event time before which a full service table is not searched again for a junk
    /// service to evict (one search per second of event time, not one per event of a flood).
    next_junk_scan_us: u64,
    unseen_registered: bool,
    memory: crate::memory::Account,
    /// Counters.
    pub counters: InventoryCounters,
    /// Memory budget counters.
    pub memory_counters: crate::memory::MemoryCounters,
}

/// The method an overflow endpoint is kept under: a standard method, or `OTHER` for any
/// other token, so a flood of invented methods cannot grow the overflow map (issue 22).
pub fn overflow_method(method: &str) -> &str {
    match method {
        "GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "HEAD" | "OPTIONS" | "TRACE" | "CONNECT" => {
            method
        }
        _ => "OTHER",
    }
}

/// A method token as an inventory key: upper case, at most 16 token characters.
pub fn normalize_method(m: &str) -> std::borrow::Cow<'_, str> {
    if matches!(
        m,
        "GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "HEAD" | "OPTIONS" | "TRACE" | "CONNECT"
    ) {
        return std::borrow::Cow::Borrowed(m);
    }
    let s: String = m
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .take(16)
        .collect::<String>()
        .to_ascii_uppercase();
    std::borrow::Cow::Owned(if s.is_empty() { "UNKNOWN".into() } else { s })
}

/// A `Host` value as a service name: lower case, trailing dot removed, only host characters,
/// at most 255 characters.
fn clean_host(h: &str) -> Option<std::borrow::Cow<'_, str>> {
    let ok = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit() || b".-:[]_".contains(&c);
    let trimmed = h.trim().trim_end_matches('.');
    if trimmed.is_empty() {
        return None;
    }
    if trimmed.len() <= 255 && trimmed.bytes().all(ok) {
        return Some(std::borrow::Cow::Borrowed(trimmed));
    }
    let h = trimmed.to_ascii_lowercase();
    Some(std::borrow::Cow::Owned(
        h.chars()
            .take(255)
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']' | '_') {
                    c
                } else {
                    '_'
                }
            })
            .collect(),
    ))
}

impl Inventory {
    /// An empty inventory; loads the configured OpenAPI documents.
    pub fn new(cfg: InventoryConfig) -> Result<Inventory, SpecError> {
        let mut specs = HashMap::new();
        for s in &cfg.specs {
            specs.insert(s.service.clone(), ServiceSpec::load(&s.path)?);
        }
        Ok(Self::with_specs(cfg, specs))
    }

    /// An empty inventory with already parsed specs (service → spec).
    pub fn with_specs(cfg: InventoryConfig, specs: HashMap<String, ServiceSpec>) -> Inventory {
        let classifier = ClientClassifier {
            internal: cfg.internal_cidrs.clone(),
            partners: cfg
                .partners
                .iter()
                .map(|p| (p.name.clone(), p.cidrs.clone()))
                .collect(),
        };
        // Rules were validated with the config; an invalid one is skipped.
        let overrides = cfg
            .overrides
            .iter()
            .filter_map(|o| CompiledOverride::compile(o).ok())
            .collect();
        let memory_counters = crate::memory::MemoryCounters {
            budget_bytes: cfg.max_memory_bytes,
            ..Default::default()
        };
        Inventory {
            cfg,
            classifier,
            specs,
            overrides,
            services: HashMap::default(),
            clock_us: 0,
            next_junk_scan_us: 0,
            unseen_registered: false,
            memory: crate::memory::Account::default(),
            counters: InventoryCounters::default(),
            memory_counters,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &InventoryConfig {
        &self.cfg
    }

    /// Latest event time seen, µs since the epoch (the inventory's clock).
    pub fn clock_us(&self) -> u64 {
        self.clock_us
    }

    /// The service an event belongs to.
    pub fn service_of(&self, ev: &ApiEvent) -> String {
        self.service_ref(ev).into_owned()
    }

    fn service_ref<'a>(&self, ev: &'a ApiEvent) -> std::borrow::Cow<'a, str> {
        let server = || SocketAddr::new(ev.server.ip, ev.server.port).to_string();
        let host = ev.request.host.as_deref().and_then(clean_host);
        match (self.cfg.service_by, host) {
            (ServiceBy::Server, _) | (_, None) => std::borrow::Cow::Owned(server()),
            (ServiceBy::Host, Some(h)) => h,
            (ServiceBy::HostAndServer, Some(h)) => {
                std::borrow::Cow::Owned(format!("{h}@{}", server()))
            }
        }
    }

    fn service_mut(&mut self, name: &str) -> &mut Service {
        service_entry(
            &mut self.services,
            &self.cfg,
            &mut self.counters,
            &mut self.memory,
            name,
            self.clock_us,
            &mut self.next_junk_scan_us,
        )
        .0
    }

    /// Learns one event.
    pub fn observe(&mut self, ev: &ApiEvent) {
        let facts = EventFacts::new(ev, apitap_labels::facts::DEFAULT_MAX_DECODED_BYTES);
        self.observe_labelled(&facts, None);
    }

    /// Adds one event with its sensitive-data labels and classification (when labelled), and
    /// returns the key of the endpoint it was counted in when labels were given (the weak-point
    /// tracker keys on it).
    pub fn observe_labelled(
        &mut self,
        shared: &EventFacts<'_>,
        labelled: Option<(&EventLabels, &Classification)>,
    ) -> Option<EndpointKey> {
        let ev = shared.event;
        let want_key = labelled.is_some();
        self.counters.events += 1;
        let every = if self.memory_pressure() {
            crate::memory::CHECK_EVERY_EVENTS_UNDER_PRESSURE
        } else {
            crate::memory::CHECK_EVERY_EVENTS
        };
        if self.counters.events.is_multiple_of(every) {
            self.check_memory();
        }
        self.clock_us = self.clock_us.max(ev.request_start_unix_us);
        let service = self.service_ref(ev);
        let facts = RequestFacts::of(shared);
        let method = normalize_method(&ev.request.method);
        let op = facts.style.operation.clone();
        let segs: Vec<&str> = segments(&ev.request.path).collect();
        let spec_match = self
            .specs
            .get(service.as_ref())
            .map(|s| s.match_request(&method, &segs));
        let spec_status = spec_match.as_ref().map_or(SpecStatus::NoSpec, |m| m.status);
        let over = self
            .overrides
            .iter()
            .find_map(|o| o.apply(&service, &segs))
            .map(|(t, caps)| (t.to_owned(), caps));
        if over.is_some() {
            self.counters.override_events += 1;
        }
        // Documented operations and overrides are served by definition; anything else
        // answered "no such method / path" is a probe (see `crate::probe`).
        let declared = over.is_some()
            || matches!(spec_status, SpecStatus::Documented | SpecStatus::Deprecated);
        let probe = if declared {
            None
        } else if !op.is_empty() && operation_rejected(shared) {
            Some(ProbeReason::RejectedOperation)
        } else {
            probe_reason(&method, shared)
        };
        let fixed = over.or_else(|| {
            spec_match
                .and_then(|m| m.template.map(|t| (t, m.captures)))
                .inspect(|_| self.counters.spec_events += 1)
        });
        let full_samples = self.cfg.shape_full_samples;
        let every = self.cfg.shape_sample_every;
        let max_endpoints = self.cfg.templating.max_endpoints_per_service;
        let (svc, own) = service_entry(
            &mut self.services,
            &self.cfg,
            &mut self.counters,
            &mut self.memory,
            &service,
            self.clock_us,
            &mut self.next_junk_scan_us,
        );
        // The key names where the request was counted: the overflow service beyond the cap.
        let service_name = want_key.then(|| {
            if own {
                service.to_string()
            } else {
                OVERFLOW_SERVICE.to_owned()
            }
        });
        if let Some(reason) = probe {
            let node = if fixed.is_none() {
                svc.tree.lookup(&segs).map(|(n, _)| n)
            } else {
                None
            };
            // A 404 to a method that has succeeded on this path before is that endpoint's
            // answer (`GET /users/{id}` for a missing user).
            let method_succeeded = |n: NodeId| {
                svc.tree
                    .endpoint(n, &method, &op)
                    .is_some_and(|e| e.succeeded)
            };
            let served = match reason {
                // So is a normalising redirect on a served path (the answer of
                // `GET /shop/customers/{handle}.json` to a handle it re-encodes).
                ProbeReason::NotFound | ProbeReason::NormalizingRedirect => {
                    node.is_some_and(method_succeeded)
                }
                // A server error is a probe only against a path served by other methods.
                ProbeReason::MethodError => node.is_none_or(|n| {
                    method_succeeded(n) || !svc.tree.endpoints_at(n).any(|e| e.succeeded)
                }),
                _ => false,
            };
            if !served {
                self.counters.probe_events += 1;
                if let Some(i) = PROBE_REASONS.iter().position(|r| *r == reason) {
                    self.counters.probes_by_reason[i] += 1;
                }
                let pm = overflow_method(&method);
                let target = node.and_then(|n| svc.tree.probe_target(n, pm).map(|e| (e, n)));
                let template = match target {
                    Some((state, n)) => {
                        state.delta.record_probe(pm, reason);
                        Some(n)
                    }
                    None => {
                        self.counters.probe_unrouted_events += 1;
                        None
                    }
                }
                .map(|n| svc.tree.template(n));
                let service = service_name?;
                return Some(EndpointKey {
                    service,
                    method: pm.to_owned(),
                    template: template.unwrap_or_else(|| PROBE_TEMPLATE.into()),
                    operation: op,
                });
            }
        }
        svc.hits += 1;
        svc.last_seen_us = svc.last_seen_us.max(ev.request_start_unix_us);
        let mut overflowed = false;
        let mut template: Option<String> = None;
        let (state, caps): (&mut EndpointState, Vec<u16>) = match fixed {
            Some((t, caps)) => {
                let k = (t, method.to_string(), op.clone());
                if svc.fixed.contains_key(&k) || svc.fixed.len() < max_endpoints {
                    if want_key {
                        template = Some(k.0.clone());
                    }
                    (svc.fixed.entry(k).or_default(), caps)
                } else {
                    overflowed = true;
                    (
                        svc.overflow
                            .entry(overflow_method(&method).to_owned())
                            .or_default(),
                        Vec::new(),
                    )
                }
            }
            None => {
                let obs = Observation {
                    method: method_slot(&method),
                    status: status_slot(ev.response.as_ref().map(|r| r.status)),
                };
                // An error answer to a path an existing template covers belongs to that
                // endpoint: it does not grow the tree (`DELETE /posts/AAA` answered 500 is
                // `DELETE /posts/{post_id}` rejecting a value, not a route `AAA`).
                let status = ev.response.as_ref().map_or(0, |r| r.status);
                let known = (status >= 400)
                    .then(|| svc.tree.lookup(&segs))
                    .flatten()
                    .filter(|(n, _)| svc.tree.endpoint(*n, &method, &op).is_some());
                let route = match known {
                    Some((n, caps)) => Route::Node(
                        n,
                        caps.into_iter().map(|i| (i, SegmentShape::Other)).collect(),
                    ),
                    None => svc.tree.route_with(
                        &segs,
                        &obs,
                        &mut || response_fingerprint(shared),
                        &mut |seg| identifier_evidence(shared, seg),
                    ),
                };
                match route {
                    Route::Node(n, caps) => {
                        let caps: Vec<u16> = caps.into_iter().map(|(i, _)| i).collect();
                        if want_key {
                            template = Some(svc.tree.template(n));
                        }
                        if svc.tree.endpoint_mut(n, &method, &op).is_some() {
                            match svc.tree.endpoint_mut(n, &method, &op) {
                                Some(s) => (s, caps),
                                None => unreachable!("endpoint exists"),
                            }
                        } else {
                            overflowed = true;
                            (
                                svc.overflow
                                    .entry(overflow_method(&method).to_owned())
                                    .or_default(),
                                Vec::new(),
                            )
                        }
                    }
                    Route::Overflow => {
                        overflowed = true;
                        (
                            svc.overflow
                                .entry(overflow_method(&method).to_owned())
                                .or_default(),
                            Vec::new(),
                        )
                    }
                }
            }
        };
        if ev
            .response
            .as_ref()
            .is_some_and(|r| (200..400).contains(&r.status))
        {
            state.succeeded = true;
        }
        let sample = state.seen < full_samples || state.seen % every == 0;
        state.seen += 1;
        state.spec_status = Some(spec_status);
        let values: Vec<(u16, &str)> = caps
            .iter()
            .filter_map(|&i| segs.get(usize::from(i)).map(|s| (i, *s)))
            .collect();
        learn(
            &mut state.delta,
            ev,
            &facts,
            &values,
            &self.classifier,
            sample,
        );
        if let Some((labels, class)) = labelled {
            state.delta.sensitive.record(labels, class);
        }
        // Shapes grow mostly while every request is inspected; later samples and the
        // histograms are caught by the periodic re-measure.
        let remeasure = (sample && state.seen <= full_samples)
            || state.bytes == 0
            || state.seen.is_multiple_of(crate::memory::REMEASURE_EVERY);
        if remeasure {
            let b = state.approx_bytes();
            self.memory.states = (self.memory.states + b).saturating_sub(state.bytes);
            state.bytes = b;
        }
        if overflowed {
            self.counters.overflow_events += 1;
            template = None;
        }
        let service = service_name?;
        Some(EndpointKey {
            service,
            method: if overflowed {
                overflow_method(&method).to_owned()
            } else {
                method.into_owned()
            },
            template: template.unwrap_or_else(|| OVERFLOW_TEMPLATE.into()),
            operation: op,
        })
    }

    /// Endpoints currently held in memory (templated, spec/override-matched and overflow).
    pub fn endpoint_keys(&self) -> Vec<EndpointKey> {
        let mut out = Vec::new();
        for (service, svc) in &self.services {
            for (node, method, op, _) in svc.tree.endpoints() {
                out.push(EndpointKey {
                    service: service.clone(),
                    method: method.to_owned(),
                    template: svc.tree.template(node),
                    operation: op.to_owned(),
                });
            }
            for (template, method, op) in svc.fixed.keys() {
                out.push(EndpointKey {
                    service: service.clone(),
                    method: method.clone(),
                    template: template.clone(),
                    operation: op.clone(),
                });
            }
            for method in svc.overflow.keys() {
                out.push(EndpointKey {
                    service: service.clone(),
                    method: method.clone(),
                    template: OVERFLOW_TEMPLATE.into(),
                    operation: String::new(),
                });
            }
        }
        out.sort();
        out
    }

    /// Estimated bytes held (endpoint states as last measured, services and tree nodes).
    pub fn memory_bytes(&self) -> usize {
        self.memory.states
            + self
                .services
                .values()
                .map(Service::base_bytes)
                .sum::<usize>()
    }

    /// At three quarters of `max_memory_bytes` at the last check: flush now, so that the
    /// learning moves to the store before the budget has to drop any (see [`crate::memory`]).
    pub fn memory_pressure(&self) -> bool {
        let budget = usize::try_from(self.cfg.max_memory_bytes).unwrap_or(usize::MAX);
        // The running sum of the states and the service count are current; nodes are
        // counted at the checks.
        let now = self.memory.states + self.services.len() * crate::memory::SERVICE_BYTES;
        self.memory.last_total.max(now) >= budget / 4 * 3
    }

    /// Measures every endpoint state again (the running sum drifts when states merge or
    /// leave with their node).
    fn remeasure(&mut self) {
        let mut total = 0;
        for svc in self.services.values_mut() {
            let states = svc
                .tree
                .endpoints_mut()
                .map(|(_, _, _, e)| e)
                .chain(svc.fixed.values_mut())
                .chain(svc.overflow.values_mut());
            for e in states {
                e.bytes = e.approx_bytes();
                total += e.bytes;
            }
        }
        self.memory.states = total;
    }

    /// Compares the estimate with the budget and frees memory over it: shapes of the least
    /// recently used endpoints first, then whole least recently used services.
    fn check_memory(&mut self) {
        let budget = usize::try_from(self.cfg.max_memory_bytes).unwrap_or(usize::MAX);
        let mut total = self.memory_bytes();
        if total > budget {
            self.remeasure();
            total = self.memory_bytes();
        }
        let target = budget / 100 * crate::memory::TARGET_PERCENT;
        if total > budget {
            total = self.shed_detail(total, target);
        }
        if total > budget {
            total = self.evict_services(total, target);
        }
        self.memory.last_total = total;
        self.memory_counters.bytes = total as u64;
        self.memory_counters.budget_bytes = self.cfg.max_memory_bytes;
    }

    fn shed_detail(&mut self, mut total: usize, target: usize) -> usize {
        #[derive(PartialEq, Eq, PartialOrd, Ord)]
        enum At {
            Tree(NodeId, String, String),
            Fixed((String, String, String)),
            Overflow(String),
        }
        // Only states holding more than an empty state's worth are worth shedding.
        let floor = EndpointState::default().approx_bytes() * 2;
        let mut lru: Vec<(u64, String, At)> = Vec::new();
        for (name, svc) in &self.services {
            for (n, m, o, e) in svc.tree.endpoints() {
                if e.bytes > floor {
                    let at = At::Tree(n, m.to_owned(), o.to_owned());
                    lru.push((e.delta.last_seen_unix_us, name.clone(), at));
                }
            }
            for (k, e) in &svc.fixed {
                if e.bytes > floor {
                    lru.push((
                        e.delta.last_seen_unix_us,
                        name.clone(),
                        At::Fixed(k.clone()),
                    ));
                }
            }
            for (k, e) in &svc.overflow {
                if e.bytes > floor {
                    lru.push((
                        e.delta.last_seen_unix_us,
                        name.clone(),
                        At::Overflow(k.clone()),
                    ));
                }
            }
        }
        lru.sort_unstable();
        for (_, name, at) in lru {
            if total <= target {
                break;
            }
            let Some(svc) = self.services.get_mut(&name) else {
                continue;
            };
            let state = match &at {
                At::Tree(n, m, o) => svc.tree.endpoint_mut(*n, m, o),
                At::Fixed(k) => svc.fixed.get_mut(k),
                At::Overflow(k) => svc.overflow.get_mut(k),
            };
            if let Some(e) = state {
                e.delta.shed_detail();
                let b = e.approx_bytes();
                total = (total + b).saturating_sub(e.bytes);
                self.memory.states = (self.memory.states + b).saturating_sub(e.bytes);
                e.bytes = b;
                self.memory_counters.shed_endpoints += 1;
            }
        }
        total
    }

    fn evict_services(&mut self, mut total: usize, target: usize) -> usize {
        let mut lru: Vec<(u64, String)> = self
            .services
            .iter()
            .map(|(name, svc)| (svc.last_seen_us, name.clone()))
            .collect();
        lru.sort_unstable();
        for (_, name) in lru {
            if total <= target {
                break;
            }
            if let Some(gone) = self.services.remove(&name) {
                let bytes = gone.state_bytes();
                total = total.saturating_sub(bytes + gone.base_bytes());
                self.memory.states = self.memory.states.saturating_sub(bytes);
                self.memory_counters.evicted_services += 1;
                self.memory_counters.lost_events += gone.unflushed_hits();
            }
        }
        total
    }

    /// Templating counters summed over services.
    pub fn tree_counters(&self) -> super::tree::TreeCounters {
        let mut c = super::tree::TreeCounters::default();
        for svc in self.services.values() {
            let t = svc.tree.counters;
            c.params_created += t.params_created;
            c.folded_children += t.folded_children;
            c.split_out += t.split_out;
            c.overflow_requests += t.overflow_requests;
        }
        c
    }

    /// Re-creates the templates of stored endpoints, so that templates and parameter names
    /// stay stable across restarts. Returns how many endpoints were seeded.
    pub fn seed(&mut self, store: &mut dyn Store) -> Result<usize, StoreError> {
        let records = store.endpoints(&EndpointFilter::default())?;
        let mut n = 0;
        for r in records {
            if r.key.template == OVERFLOW_TEMPLATE || r.spec_status == SpecStatus::Unseen {
                continue;
            }
            self.clock_us = self.clock_us.max(r.data.last_seen_unix_us);
            let svc = self.service_mut(&r.key.service);
            svc.hits = svc.hits.saturating_add(r.data.hits);
            svc.last_seen_us = svc.last_seen_us.max(r.data.last_seen_unix_us);
            if let Some(node) = svc.tree.seed(&r.key.template, r.data.hits)
                && svc.tree.template(node) == r.key.template
                && let Some(state) = svc.tree.endpoint_mut(node, &r.key.method, &r.key.operation)
            {
                if !state.flushed_ids.contains(&r.id) {
                    state.flushed_ids.push(r.id.clone());
                }
                state.seen = state.seen.max(r.data.hits);
                state.succeeded = true;
                n += 1;
            }
        }
        Ok(n)
    }

    fn take_items(&mut self, hold_after_us: Option<u64>) -> Vec<Item> {
        let mut items = Vec::new();
        for (service, svc) in &mut self.services {
            let nodes: Vec<(NodeId, String, String, String)> = svc
                .tree
                .endpoints()
                .map(|(n, m, o, _)| (n, m.to_owned(), o.to_owned(), svc.tree.template(n)))
                .collect();
            for (node, method, op, template) in nodes {
                if let Some(state) = svc.tree.endpoint_mut(node, &method, &op) {
                    let key = EndpointKey {
                        service: service.clone(),
                        method: method.clone(),
                        template,
                        operation: op.clone(),
                    };
                    push_item(
                        &mut items,
                        service,
                        Loc::Tree(node, method, op),
                        key,
                        state,
                        hold_after_us,
                    );
                }
            }
            for ((template, method, op), state) in &mut svc.fixed {
                let key = EndpointKey {
                    service: service.clone(),
                    method: method.clone(),
                    template: template.clone(),
                    operation: op.clone(),
                };
                let loc = Loc::Fixed(template.clone(), method.clone(), op.clone());
                push_item(&mut items, service, loc, key, state, hold_after_us);
            }
            for (method, state) in &mut svc.overflow {
                let key = EndpointKey {
                    service: service.clone(),
                    method: method.clone(),
                    template: OVERFLOW_TEMPLATE.into(),
                    operation: String::new(),
                };
                push_item(
                    &mut items,
                    service,
                    Loc::Overflow(method.clone()),
                    key,
                    state,
                    hold_after_us,
                );
            }
        }
        items
    }

    fn restore(&mut self, items: Vec<Item>) {
        for item in items {
            let Some(svc) = self.services.get_mut(&item.service) else {
                continue;
            };
            let state = match item.loc {
                Loc::Tree(node, method, op) => svc.tree.endpoint_mut(node, &method, &op),
                Loc::Fixed(t, m, o) => svc.fixed.get_mut(&(t, m, o)),
                Loc::Overflow(m) => svc.overflow.get_mut(&m),
            };
            if let Some(state) = state {
                state.delta.absorb(&item.delta);
                state.flushed_ids = item.flushed_before;
            }
        }
    }

    /// Documented operations of every spec, to register as `unseen` zombie candidates.
    fn unseen_keys(&self) -> Vec<EndpointKey> {
        let mut out = Vec::new();
        for (service, spec) in &self.specs {
            for p in &spec.paths {
                for op in &p.operations {
                    out.push(EndpointKey {
                        service: service.clone(),
                        method: op.method.clone(),
                        template: p.pattern.template.clone(),
                        operation: String::new(),
                    });
                }
            }
        }
        out
    }

    /// Writes everything learned since the last flush to `store` in one transaction, moves
    /// endpoints through their lifecycle, and returns the changes written (with their `seq`).
    /// On failure the deltas are kept for the next flush.
    pub fn flush(&mut self, store: &mut dyn Store) -> Result<Vec<Change>, StoreError> {
        self.flush_inner(store, None)
    }

    /// Like [`Inventory::flush`], but endpoints never stored yet whose first request is less
    /// than `discovery_grace_secs` old (event time) wait for a later flush: the periodic flush
    /// of `run`, so that values are not announced as endpoints just before their position
    /// becomes a parameter.
    pub fn flush_settled(&mut self, store: &mut dyn Store) -> Result<Vec<Change>, StoreError> {
        let hold = self.settled_before_us();
        self.flush_inner(store, Some(hold))
    }

    /// Event time before which everything observed is stored by [`Inventory::flush_settled`]:
    /// only endpoints first seen at or after it may be held back. An event older than this is
    /// durable once that flush commits, so its bus offset may be committed (at-least-once).
    pub fn settled_before_us(&self) -> u64 {
        let grace_us = self.cfg.discovery_grace_secs.saturating_mul(1_000_000);
        self.clock_us.saturating_sub(grace_us)
    }

    fn flush_inner(
        &mut self,
        store: &mut dyn Store,
        hold_after_us: Option<u64>,
    ) -> Result<Vec<Change>, StoreError> {
        let now = self.clock_us;
        let items = self.take_items(hold_after_us);
        let unseen = if self.unseen_registered {
            Vec::new()
        } else {
            self.unseen_keys()
        };
        let inactive_us = self.cfg.inactive_after_secs.saturating_mul(1_000_000);
        let new_us = self.cfg.new_period_secs.saturating_mul(1_000_000);
        let mut changes = Vec::new();
        let result = store.transaction(&mut |tx| {
            changes.clear();
            for key in &unseen {
                if tx.get(&key.id())?.is_none() {
                    let mut rec = EndpointRecord::new(key.clone(), SpecStatus::Unseen, now);
                    rec.lifecycle = Lifecycle::Inactive;
                    tx.put(&rec)?;
                }
            }
            for item in &items {
                apply_item(tx, item, now, inactive_us, &mut changes)?;
            }
            if now > 0 {
                for mut rec in
                    tx.due(now.saturating_sub(inactive_us), now.saturating_sub(new_us))?
                {
                    let from = rec.lifecycle;
                    let to = if rec.lifecycle != Lifecycle::Inactive
                        && rec.data.last_seen_unix_us < now.saturating_sub(inactive_us)
                    {
                        Lifecycle::Inactive
                    } else if matches!(rec.lifecycle, Lifecycle::New | Lifecycle::Revived) {
                        Lifecycle::Active
                    } else {
                        continue;
                    };
                    rec.lifecycle = to;
                    rec.lifecycle_since_unix_us = now;
                    rec.updated_unix_us = now;
                    tx.put(&rec)?;
                    changes.push(change(&rec, now, "lifecycle", lifecycle_detail(from, to)));
                }
            }
            for c in changes.iter_mut() {
                c.seq = tx.add_change(c)?;
            }
            Ok(())
        });
        let out = match result {
            Ok(()) => {
                self.unseen_registered = true;
                self.counters.flushes += 1;
                self.counters.changes += changes.len() as u64;
                Ok(changes)
            }
            Err(e) => {
                self.restore(items);
                Err(e)
            }
        };
        // Flushed deltas are empty now: the account starts again from what is left.
        self.remeasure();
        self.memory.last_total = self.memory_bytes();
        self.memory_counters.bytes = self.memory.last_total as u64;
        out
    }
}

impl Service {
    /// Every endpoint state, wherever it lives.
    fn states(&self) -> impl Iterator<Item = &EndpointState> {
        self.tree
            .endpoints()
            .map(|(_, _, _, e)| e)
            .chain(self.fixed.values())
            .chain(self.overflow.values())
    }

    /// The sum of its states' last estimates.
    fn state_bytes(&self) -> usize {
        self.states().map(|e| e.bytes).sum()
    }

    /// Requests learned and not yet stored.
    fn unflushed_hits(&self) -> u64 {
        self.states().map(|e| e.delta.hits).sum()
    }

    /// Estimated bytes besides the endpoint states.
    fn base_bytes(&self) -> usize {
        crate::memory::SERVICE_BYTES + self.tree.len() * crate::memory::NODE_BYTES
    }
}

/// A service seen at most this many times may be evicted to make room for a new one.
pub const JUNK_SERVICE_MAX_HITS: u64 = 3;

/// Whether everything `svc` learned is in the store (no endpoint holds an unflushed delta).
fn is_stored(svc: &Service) -> bool {
    svc.tree.endpoints().all(|(_, _, _, e)| e.delta.hits == 0)
        && svc.fixed.values().all(|e| e.delta.hits == 0)
        && svc.overflow.values().all(|e| e.delta.hits == 0)
}

/// The service to evict for a new one, if any: caps are not first come, first served (issue
/// 22). A flood of invented `Host` headers fills the table with services seen once or
/// twice; once they are stored and idle for the discovery grace period, a new service takes
/// the slot of the least used, oldest of them, so real services deployed after the flood are
/// still inventoried rather than lumped into the overflow service.
fn junk_service(
    services: &HashMap<String, Service, foldhash::fast::RandomState>,
    idle_before_us: u64,
) -> Option<String> {
    services
        .iter()
        .filter(|(name, svc)| {
            name.as_str() != OVERFLOW_SERVICE
                && svc.hits <= JUNK_SERVICE_MAX_HITS
                && svc.last_seen_us < idle_before_us
                && is_stored(svc)
        })
        .min_by_key(|(_, svc)| (svc.hits, svc.last_seen_us))
        .map(|(name, _)| name.clone())
}

#[allow(clippy::too_many_arguments)] // the disjoint parts of `Inventory` it updates
fn service_entry<'a>(
    services: &'a mut HashMap<String, Service, foldhash::fast::RandomState>,
    cfg: &InventoryConfig,
    counters: &mut InventoryCounters,
    memory: &mut crate::memory::Account,
    name: &str,
    now_us: u64,
    next_junk_scan_us: &mut u64,
) -> (&'a mut Service, bool) {
    let new_service = || Service {
        hits: 0,
        last_seen_us: now_us,
        tree: PathTree::new(cfg.templating.clone()),
        fixed: BTreeMap::new(),
        overflow: BTreeMap::new(),
    };
    let grace_us = cfg.discovery_grace_secs.saturating_mul(1_000_000);
    let key = if services.contains_key(name) {
        name
    } else if services.len() < cfg.max_services {
        services.insert(name.to_owned(), new_service());
        name
    } else if let Some(junk) = (now_us >= *next_junk_scan_us)
        .then(|| junk_service(services, now_us.saturating_sub(grace_us)))
        .flatten()
    {
        if let Some(gone) = services.remove(&junk) {
            memory.states = memory.states.saturating_sub(gone.state_bytes());
        }
        counters.services_evicted += 1;
        services.insert(name.to_owned(), new_service());
        name
    } else {
        if now_us >= *next_junk_scan_us {
            *next_junk_scan_us = now_us.saturating_add(1_000_000);
        }
        counters.overflow_service_events += 1;
        services
            .entry(OVERFLOW_SERVICE.to_owned())
            .or_insert_with(new_service);
        OVERFLOW_SERVICE
    };
    let own = key == name;
    match services.get_mut(key) {
        Some(svc) => (svc, own),
        None => unreachable!("service inserted above"),
    }
}

fn push_item(
    items: &mut Vec<Item>,
    service: &str,
    loc: Loc,
    key: EndpointKey,
    state: &mut EndpointState,
    hold_after_us: Option<u64>,
) {
    // Endpoints never stored and first seen within the grace period wait: their position may
    // still turn into a parameter, and announcing each value first would be noise.
    if state.flushed_ids.is_empty()
        && hold_after_us.is_some_and(|h| state.delta.first_seen_unix_us > h)
    {
        return;
    }
    let id = key.id();
    let renamed = state.flushed_ids.iter().any(|x| *x != id);
    if state.delta.hits == 0 && state.delta.probes.is_empty() && !renamed {
        return;
    }
    let flushed_before = std::mem::replace(&mut state.flushed_ids, vec![id.clone()]);
    let old_ids = flushed_before
        .iter()
        .filter(|x| **x != id)
        .cloned()
        .collect();
    items.push(Item {
        service: service.to_owned(),
        loc,
        spec_status: state.spec_status.unwrap_or(SpecStatus::NoSpec),
        key,
        delta: std::mem::take(&mut state.delta),
        old_ids,
        flushed_before,
    });
}

fn change(rec: &EndpointRecord, now: u64, kind: &str, detail: serde_json::Value) -> Change {
    Change {
        seq: 0,
        at_unix_us: now,
        endpoint_id: rec.id.clone(),
        key: rec.key.clone(),
        kind: kind.into(),
        detail,
    }
}

fn lifecycle_detail(from: Lifecycle, to: Lifecycle) -> serde_json::Value {
    serde_json::json!({"from": from.as_str(), "to": to.as_str()})
}

fn apply_item(
    tx: &mut dyn Tx,
    item: &Item,
    now: u64,
    inactive_us: u64,
    changes: &mut Vec<Change>,
) -> Result<(), StoreError> {
    let id = item.key.id();
    let existing = tx.get(&id)?;
    let never_seen = existing.as_ref().is_none_or(|r| r.data.hits == 0);
    let mut rec =
        existing.unwrap_or_else(|| EndpointRecord::new(item.key.clone(), item.spec_status, now));
    for old in &item.old_ids {
        if let Some(o) = tx.get(old)? {
            rec.data.absorb(&o.data);
            tx.delete(old)?;
            changes.push(change(
                &rec,
                now,
                "merged",
                serde_json::json!({"from_id": o.id, "from_template": o.key.template}),
            ));
        }
    }
    rec.refresh_sensitive();
    let before = rec.clone();
    rec.data.absorb(&item.delta);
    rec.refresh_sensitive();
    if item.delta.hits > 0 {
        rec.spec_status = item.spec_status;
    }
    rec.updated_unix_us = now;
    if never_seen && rec.data.hits > 0 {
        rec.lifecycle = Lifecycle::New;
        rec.lifecycle_since_unix_us = rec.data.first_seen_unix_us.max(1);
        changes.push(change(
            &rec,
            now,
            "discovered",
            serde_json::json!({
                "lifecycle": "new",
                "style": rec.data.style(),
                "auth": rec.data.auth_schemes(),
                "spec_status": rec.spec_status.as_str(),
                "exposure": rec.data.exposure_class(),
                "sensitivity": rec.sensitivity,
                "function_class": rec.function_class,
                "data_labels": rec.data_labels,
            }),
        ));
    } else if !never_seen {
        if rec.lifecycle == Lifecycle::Inactive && item.delta.hits > 0 {
            rec.lifecycle = Lifecycle::Revived;
            rec.lifecycle_since_unix_us = now;
            changes.push(change(
                &rec,
                now,
                "lifecycle",
                lifecycle_detail(Lifecycle::Inactive, Lifecycle::Revived),
            ));
        }
        for (kind, detail) in diff(&before, &rec) {
            changes.push(change(&rec, now, kind, detail));
        }
    }
    if rec.data.last_seen_unix_us >= now.saturating_sub(inactive_us) {
        for (location, name) in prune_params(&mut rec.data, now.saturating_sub(inactive_us)) {
            changes.push(change(
                &rec,
                now,
                "parameter_removed",
                serde_json::json!({"location": location, "name": name}),
            ));
        }
    }
    tx.put(&rec)
}

/// Headers that every client sends or that only describe transport: not reported as
/// parameter changes.
const TRANSPORT_HEADERS: [&str; 16] = [
    "host",
    "user-agent",
    "accept",
    "accept-encoding",
    "accept-language",
    "connection",
    "content-length",
    "content-type",
    "transfer-encoding",
    "cache-control",
    "pragma",
    "te",
    "upgrade",
    "keep-alive",
    "x-request-id",
    "traceparent",
];

fn param_locations(d: &EndpointData) -> Vec<(String, &Fields)> {
    let mut out = vec![
        ("query".to_owned(), &d.request.query),
        ("header".to_owned(), &d.request.headers),
        ("cookie".to_owned(), &d.request.cookies),
    ];
    for (kind, body) in &d.request.bodies {
        out.push((format!("body.{kind}"), &body.fields));
    }
    out
}

/// Shape changes between two versions of a record.
fn diff(before: &EndpointRecord, after: &EndpointRecord) -> Vec<(&'static str, serde_json::Value)> {
    let mut out = Vec::new();
    let old_locs = param_locations(&before.data);
    let mut added = Vec::new();
    for (loc, fields) in param_locations(&after.data) {
        let old = old_locs.iter().find(|(l, _)| *l == loc).map(|(_, f)| *f);
        for name in fields.fields.keys() {
            if loc == "header" && TRANSPORT_HEADERS.contains(&name.as_str()) {
                continue;
            }
            if old.is_none_or(|o| !o.fields.contains_key(name)) {
                added.push((loc.clone(), name.clone()));
            }
        }
    }
    let total = added.len();
    for (loc, name) in added.into_iter().take(MAX_REPORTED_NAMES) {
        out.push((
            "parameter_added",
            serde_json::json!({"location": loc, "name": name}),
        ));
    }
    if total > MAX_REPORTED_NAMES {
        out.push((
            "parameter_added",
            serde_json::json!({"more": total - MAX_REPORTED_NAMES}),
        ));
    }
    // An endpoint stored before labelling existed (`unknown`) is not announced again when
    // first labelled.
    let was_labelled = before.sensitivity != SENSITIVITY_UNKNOWN;
    if was_labelled && before.sensitivity != after.sensitivity {
        out.push((
            "sensitivity_changed",
            serde_json::json!({"from": before.sensitivity, "to": after.sensitivity}),
        ));
    }
    let added_labels: Vec<&String> = after
        .data_labels
        .iter()
        .filter(|l| !before.data_labels.contains(l))
        .collect();
    if was_labelled && !added_labels.is_empty() {
        // Where the new labels appeared (field names only), at most a few per change.
        let fields: Vec<serde_json::Value> = after
            .data
            .sensitive
            .data_map(&after.key.template)
            .into_iter()
            .filter(|d| {
                added_labels
                    .iter()
                    .any(|l| l.as_str() == d.label.label.name())
            })
            .take(MAX_REPORTED_NAMES)
            .map(|d| {
                serde_json::json!({
                    "label": d.label.label,
                    "direction": d.label.direction,
                    "location": d.label.location,
                    "field": d.label.field,
                })
            })
            .collect();
        out.push((
            "data_label_added",
            serde_json::json!({"labels": added_labels, "fields": fields}),
        ));
    }
    let old_auth = before.data.auth_schemes();
    let new_auth = after.data.auth_schemes();
    let added_auth: Vec<&String> = new_auth.iter().filter(|a| !old_auth.contains(a)).collect();
    if !added_auth.is_empty() {
        out.push((
            "auth_changed",
            serde_json::json!({"from": old_auth, "to": new_auth, "added": added_auth}),
        ));
    }
    for status in after.data.responses.keys() {
        if !before.data.responses.contains_key(status) {
            out.push(("status_added", serde_json::json!({"status": status})));
        }
    }
    let cts = |d: &EndpointData| {
        let mut v: Vec<String> = d.request.content_types.keys().cloned().collect();
        for r in d.responses.values() {
            v.extend(r.content_types.keys().cloned());
        }
        v
    };
    let old_ct = cts(&before.data);
    let mut seen_ct = Vec::new();
    for ct in cts(&after.data) {
        if !old_ct.contains(&ct) && !seen_ct.contains(&ct) {
            out.push((
                "content_type_added",
                serde_json::json!({"content_type": ct}),
            ));
            seen_ct.push(ct);
        }
    }
    out
}

/// Removes request parameters last seen before `before_us`; returns (location, name).
fn prune_params(d: &mut EndpointData, before_us: u64) -> Vec<(String, String)> {
    let mut removed = Vec::new();
    let mut prune = |loc: String, f: &mut Fields| {
        f.fields.retain(|name, s| {
            let keep = s.last_seen_unix_us >= before_us;
            if !keep {
                removed.push((loc.clone(), name.clone()));
            }
            keep
        });
    };
    prune("query".into(), &mut d.request.query);
    prune("header".into(), &mut d.request.headers);
    prune("cookie".into(), &mut d.request.cookies);
    for (kind, body) in d.request.bodies.iter_mut() {
        prune(format!("body.{kind}"), &mut body.fields);
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;
    use apitap_schema::test_support::EventBuilder;

    fn redirect(inv: &mut Inventory, path: &str, location: &str) {
        let e = EventBuilder::get(path)
            .host("api.test")
            .status(302)
            .response_header("Location", location)
            .build();
        inv.observe(&e);
    }

    fn templates(inv: &Inventory) -> Vec<String> {
        inv.endpoint_keys()
            .into_iter()
            .map(|k| format!("{} {}", k.method, k.template))
            .collect()
    }

    /// Path words that are the request's own Basic credentials are values, even when the
    /// few answers that succeeded are all the evidence (httpbin's `/hidden-basic-auth/{user}/
    /// {passwd}` answers 404 to any other credentials).
    #[test]
    fn words_that_are_the_callers_credentials_are_values() {
        use base64::Engine as _;
        let mut inv = Inventory::new(InventoryConfig::default()).unwrap();
        for (user, pass) in [("alice", "london"), ("blue", "oscar"), ("berlin", "paris")] {
            let basic = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
            let e = EventBuilder::get(format!("/hidden-basic-auth/{user}/{pass}"))
                .host("api.test")
                .header("Authorization", format!("Basic {basic}"))
                .status(200)
                .response_body("application/json", r#"{"authenticated": true}"#)
                .build();
            inv.observe(&e);
        }
        assert_eq!(
            templates(&inv),
            vec!["GET /hidden-basic-auth/{hidden_basic_auth_id}/{id}"]
        );
    }

    /// A redirect of a path to itself respelled is URL canonicalisation, not a route; a
    /// redirect elsewhere is an endpoint's answer (httpbin's `/redirect/{n}`).
    #[test]
    fn normalising_redirects_are_probes_and_real_redirects_endpoints() {
        let mut inv = Inventory::new(InventoryConfig::default()).unwrap();
        redirect(
            &mut inv,
            "/schemathesis-probe%5C%1B%01",
            "/schemathesis-probe~5C~1B~01",
        );
        redirect(&mut inv, "/redirect/1", "/get");
        assert_eq!(templates(&inv), vec!["GET /redirect/{redirect_id}"]);
        let i = PROBE_REASONS
            .iter()
            .position(|r| *r == ProbeReason::NormalizingRedirect)
            .unwrap();
        assert_eq!(inv.counters.probes_by_reason[i], 1);
        // On a path already served, the same redirect is the endpoint's answer.
        let ok = EventBuilder::get("/docs/")
            .host("api.test")
            .status(200)
            .build();
        inv.observe(&ok);
        redirect(&mut inv, "/docs", "/docs/");
        assert_eq!(inv.counters.probe_events, 1);
    }
}
