//! The inventory's memory budget (issue 22, R-CAP-7, R-OPS-3): one byte budget over
//! everything the inventory holds in memory, whatever the traffic.
//!
//! Per-service caps (nodes, endpoints) and the service cap bound each part, but their product
//! (1000 services × 5000 endpoints × learned shapes) does not fit a machine, and attacker-chosen
//! Host headers and paths decide how much of it is used. So the inventory measures itself:
//!
//! * each endpoint state's size is estimated ([`EndpointData::approx_bytes`]) when it is
//!   created, on each of its first `shape_full_samples` events (every request is inspected
//!   then, and shapes grow) and every [`REMEASURE_EVERY`]-th event after (later samples,
//!   histograms), and the estimates are summed;
//! * tree nodes and services count at a fixed estimate each;
//! * every [`CHECK_EVERY_EVENTS`] events (every [`CHECK_EVERY_EVENTS_UNDER_PRESSURE`] from
//!   three quarters of the budget on) the total is compared with
//!   `inventory.max_memory_bytes`.
//!
//! At three quarters of the budget the inventory asks to be flushed early
//! ([`crate::Inventory::memory_pressure`]): a flush moves what was learned to the store and
//! leaves small states behind, losing nothing. Over the budget it frees memory in this order,
//! down to [`TARGET_PERCENT`] of it, least recently used first:
//!
//! 1. **shed detail**: an endpoint state keeps its counts (hits, first/last seen, clients,
//!    exposure, sensitivity, probes) and drops the shapes learned since the last flush
//!    (parameters, bodies, responses, histograms); counted in
//!    `apitap_inventory_memory_shed_endpoints_total`;
//! 2. **evict services**: a whole service (tree, endpoints) leaves memory; it is learned again
//!    from its next request, and with a store its templates are seeded back on restart;
//!    counted in `apitap_inventory_memory_evicted_services_total`, with the requests whose
//!    learning had not been stored yet in `apitap_inventory_memory_lost_events_total`.
//!
//! Least recently used is by event time, so a flood of new paths or hosts displaces the
//! flood's own leftovers before the endpoints that keep being called: caps are not first come,
//! first served.

use std::mem::size_of;

use crate::learn::{BodyShape, EndpointData, FieldStats, Fields, Histogram};
use crate::sensitive::DataLabel;

/// Events between two comparisons of the total with the budget.
pub const CHECK_EVERY_EVENTS: u64 = 1024;

/// Events between two comparisons once the total is at three quarters of the budget: the
/// most one event can add is a new service with a node and a fully sampled state (a few
/// KiB), so the budget is exceeded by at most this many of those between checks.
pub const CHECK_EVERY_EVENTS_UNDER_PRESSURE: u64 = 64;

/// An endpoint's size is re-estimated at least every this many of its events.
pub const REMEASURE_EVERY: u64 = 256;

/// Freeing memory stops at this share of the budget (hysteresis).
pub const TARGET_PERCENT: usize = 90;

/// Estimated bytes of one tree node (segment label, children map, value statistics).
pub const NODE_BYTES: usize = 320;

/// Estimated bytes of one service besides its nodes and endpoints.
pub const SERVICE_BYTES: usize = 1024;

/// B-tree map overhead per entry (node headers and half-empty nodes, amortised).
const ENTRY: usize = 16;

fn string(s: &String) -> usize {
    size_of::<String>() + s.capacity()
}

fn strings(v: &[String]) -> usize {
    v.iter().map(string).sum()
}

impl FieldStats {
    /// Estimated bytes, heap included.
    pub fn approx_bytes(&self) -> usize {
        size_of::<Self>()
            + strings(&self.formats)
            + strings(&self.examples)
            + self.protobuf.as_ref().map_or(0, |p| {
                size_of::<crate::learn::ProtoFieldShape>()
                    + string(&p.number_path)
                    + strings(&p.wire)
                    + p.declared_type.as_ref().map_or(0, string)
            })
    }
}

impl Fields {
    /// Estimated bytes, heap included.
    pub fn approx_bytes(&self) -> usize {
        size_of::<Self>()
            + self
                .fields
                .iter()
                .map(|(k, v)| ENTRY + string(k) + v.approx_bytes())
                .sum::<usize>()
    }
}

impl BodyShape {
    /// Estimated bytes, heap included.
    pub fn approx_bytes(&self) -> usize {
        size_of::<Self>() + self.fields.approx_bytes() - size_of::<Fields>()
    }
}

impl Histogram {
    /// Estimated bytes, heap included.
    pub fn approx_bytes(&self) -> usize {
        size_of::<Self>() + self.buckets.len() * (ENTRY + 2 + 8)
    }
}

fn counts(m: &std::collections::BTreeMap<String, u64>) -> usize {
    m.keys().map(|k| ENTRY + string(k) + 8).sum()
}

fn bodies(m: &std::collections::BTreeMap<String, BodyShape>) -> usize {
    m.iter()
        .map(|(k, v)| ENTRY + string(k) + v.approx_bytes())
        .sum()
}

impl EndpointData {
    /// Estimated bytes of everything learned, heap included (within a few tens of percent:
    /// allocator rounding and B-tree node slack are averaged, not measured).
    pub fn approx_bytes(&self) -> usize {
        let r = &self.request;
        let request = r.query.approx_bytes()
            + r.headers.approx_bytes()
            + r.cookies.approx_bytes()
            + counts(&r.content_types)
            + bodies(&r.bodies);
        let responses: usize = self
            .responses
            .values()
            .map(|x| {
                ENTRY
                    + size_of::<crate::learn::ResponseShape>()
                    + counts(&x.content_types)
                    + x.headers.approx_bytes()
                    + bodies(&x.bodies)
            })
            .sum();
        let sensitive: usize = self
            .sensitive
            .labels
            .iter()
            .map(|d: &DataLabel| {
                size_of::<DataLabel>()
                    + d.field.capacity()
                    + d.mask_example.as_ref().map_or(0, String::capacity)
            })
            .sum::<usize>()
            + self.sensitive.functions.len() * (ENTRY + 8);
        let probes: usize = self
            .probes
            .iter()
            .map(|(m, r)| ENTRY + string(m) + counts(r))
            .sum();
        size_of::<Self>()
            + counts(&self.styles)
            + counts(&self.auth)
            + self
                .path_params
                .iter()
                .map(|(k, v)| ENTRY + string(k) + v.approx_bytes())
                .sum::<usize>()
            + request
            + responses
            + counts(&self.exposure.partners)
            + self.latency_us.approx_bytes()
            + self.request_bytes.approx_bytes()
            + self.response_bytes.approx_bytes()
            + sensitive
            + probes
    }

    /// Drops the learned shapes (parameters, bodies, responses, size and latency
    /// histograms) and keeps the counts: hits, first/last seen, requests without a response,
    /// styles, auth schemes, clients, exposure, sensitive data, probes. What the store holds
    /// from earlier flushes is untouched; the next flush adds the counts.
    pub fn shed_detail(&mut self) {
        let responses = std::mem::take(&mut self.responses);
        self.path_params.clear();
        self.request = Default::default();
        self.latency_us = Histogram::default();
        self.request_bytes = Histogram::default();
        self.response_bytes = Histogram::default();
        // Status counts stay (status codes seen are part of the endpoint's facts).
        for (status, r) in responses {
            self.responses.insert(
                status,
                crate::learn::ResponseShape {
                    count: r.count,
                    ..Default::default()
                },
            );
        }
    }
}

/// The running account.
#[derive(Debug, Default)]
pub(crate) struct Account {
    /// Sum of the endpoint states' last estimates.
    pub states: usize,
    /// The total at the last check.
    pub last_total: usize,
}

/// Counters of the budget (exported as `apitap_inventory_memory_*`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct MemoryCounters {
    /// Estimated bytes at the last check.
    pub bytes: u64,
    /// The budget.
    pub budget_bytes: u64,
    /// Endpoint states whose unflushed shapes were dropped to stay within the budget.
    pub shed_endpoints: u64,
    /// Services evicted from memory to stay within the budget.
    pub evicted_services: u64,
    /// Requests whose learning was in an evicted service and not yet stored.
    pub lost_events: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shape::ValueType;

    #[test]
    fn estimates_grow_with_content_and_shedding_keeps_counts() {
        let mut d = EndpointData {
            hits: 7,
            first_seen_unix_us: 1,
            last_seen_unix_us: 2,
            ..EndpointData::default()
        };
        let empty = d.approx_bytes();
        for i in 0..50 {
            d.request
                .query
                .observe(&format!("param_{i}"), ValueType::String, Some("abc"), 3, 64);
        }
        for v in 0..500u64 {
            d.latency_us.record(v * 37);
        }
        d.responses.entry(200).or_default().count = 7;
        let full = d.approx_bytes();
        assert!(full > empty + 50 * 100, "{empty} → {full}");
        d.shed_detail();
        assert_eq!(
            (d.hits, d.first_seen_unix_us, d.last_seen_unix_us),
            (7, 1, 2)
        );
        assert_eq!(d.responses[&200].count, 7);
        assert!(d.request.query.is_empty());
        assert!(
            d.approx_bytes() < full / 4,
            "{} of {full}",
            d.approx_bytes()
        );
    }
}
