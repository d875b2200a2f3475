//! Per-endpoint traffic summary.
//!
//! Groups events by endpoint — (service, method, path) — and keeps, per endpoint, counters and
//! bounded sketches: a fixed-bucket latency histogram and a distinct-client count that is
//! exact for a few clients and a 256-byte HyperLogLog beyond ([`DistinctClients`]). The
//! number of endpoints is capped too ([`Summary::new`]), so memory stays bounded on hostile
//! input (issue 22: an exact set of up to 10,000 addresses per endpoint could take 300 KB
//! each, gigabytes over the endpoint limit, with IPv6 clients an attacker has plenty of).
//!
//! With the inventory (`process` and `run` always keep one) the path is the endpoint's
//! template (`/users/{user_id}`), so that identifiers in raw paths do not reach the journal
//! through the periodic summary (issue 22) and the endpoint count follows the inventory's
//! bounds; an endpoint first seen before its position became a parameter keeps the row of its
//! literal path. Without one, the raw `request.path`.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use apitap_schema::ApiEvent;
use serde::{Deserialize, Serialize};

/// Distinct client addresses counted exactly per endpoint; beyond, the count is a HyperLogLog
/// estimate (standard error 6.5 %, `distinct_clients_estimated`).
pub const EXACT_DISTINCT_CLIENTS: usize = apitap_detect::sketch::EXACT;

/// Endpoints tracked at most by default; events for further endpoints are counted but not
/// summarised (see [`Recorded::OverEndpointLimit`]).
pub const DEFAULT_MAX_ENDPOINTS: usize = 100_000;

/// Identifies an endpoint. Field order gives the sort order: service, path, method.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EndpointKey {
    /// `request.host` when present and not blank, else `server.ip:server.port`.
    pub service: String,
    /// Raw request path (percent-encoded, no query).
    pub path: String,
    /// Method as sent.
    pub method: String,
}

impl EndpointKey {
    /// The endpoint an event belongs to.
    pub fn of(event: &ApiEvent) -> Self {
        let service = match event.request.host.as_deref() {
            Some(host) if !host.trim().is_empty() => host.to_owned(),
            _ => SocketAddr::new(event.server.ip, event.server.port).to_string(),
        };
        EndpointKey {
            service,
            path: event.request.path.clone(),
            method: event.request.method.clone(),
        }
    }
}

/// Response counts of one endpoint by status class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatusClasses {
    /// 100–199.
    pub informational: u64,
    /// 200–299.
    pub success: u64,
    /// 300–399.
    pub redirection: u64,
    /// 400–499.
    pub client_error: u64,
    /// 500–599.
    pub server_error: u64,
    /// A status outside 100–599.
    pub other: u64,
    /// No response was seen.
    pub no_response: u64,
}

impl StatusClasses {
    fn record(&mut self, status: Option<u16>) {
        let slot = match status {
            None => &mut self.no_response,
            Some(100..=199) => &mut self.informational,
            Some(200..=299) => &mut self.success,
            Some(300..=399) => &mut self.redirection,
            Some(400..=499) => &mut self.client_error,
            Some(500..=599) => &mut self.server_error,
            Some(_) => &mut self.other,
        };
        *slot += 1;
    }
}

/// Distinct client addresses: exact up to [`EXACT_DISTINCT_CLIENTS`], then estimated by a
/// HyperLogLog of 256 one-byte registers (`apitap_detect::sketch::Distinct`). Addresses are
/// hashed with a per-process random key, so an attacker cannot choose addresses that inflate
/// the estimate.
#[derive(Debug, Clone)]
pub struct DistinctClients {
    seen: apitap_detect::sketch::Distinct,
    hasher: std::collections::hash_map::RandomState,
}

impl Default for DistinctClients {
    fn default() -> Self {
        DistinctClients {
            seen: apitap_detect::sketch::Distinct::default(),
            hasher: CLIENT_HASHER.with(Clone::clone),
        }
    }
}

thread_local! {
    /// One random key per thread, shared by its endpoints (a key per endpoint would cost a
    /// random draw per new endpoint).
    static CLIENT_HASHER: std::collections::hash_map::RandomState =
        std::collections::hash_map::RandomState::new();
}

impl DistinctClients {
    /// Counts `ip` if it is new.
    pub fn insert(&mut self, ip: IpAddr) {
        use std::hash::BuildHasher as _;
        self.seen.insert(self.hasher.hash_one(ip));
    }

    /// Distinct addresses seen (estimated beyond [`EXACT_DISTINCT_CLIENTS`]).
    pub fn count(&self) -> usize {
        usize::try_from(self.seen.count()).unwrap_or(usize::MAX)
    }

    /// True when the count is an estimate.
    pub fn estimated(&self) -> bool {
        self.seen.is_sketch()
    }
}

/// Sub-buckets per power of two in [`LatencyHistogram`] (as a power of two): 16, so a
/// reported percentile is at most 1/16 (6.25 %) off the true value.
const SUB_BUCKET_BITS: u32 = 4;
const SUB_BUCKETS: u64 = 1 << SUB_BUCKET_BITS;

/// Log-linear histogram of latencies in microseconds.
///
/// Values below 32 µs get a bucket each; above, each power of two is split into 16 buckets.
/// There are at most 976 buckets for the whole `u64` range and only non-empty ones are stored,
/// so the state is bounded whatever the input. Each bucket keeps its count and the sum of its
/// values, and a percentile is reported as the mean of its bucket: exact when the bucket holds
/// one distinct value, and always within the bucket (at most 1/16 off). The maximum is exact.
#[derive(Debug, Clone, Default)]
pub struct LatencyHistogram {
    /// Bucket index → (count, sum of values).
    buckets: BTreeMap<u16, (u64, u128)>,
    count: u64,
    max_us: u64,
}

impl LatencyHistogram {
    fn bucket_of(value: u64) -> u16 {
        if value < SUB_BUCKETS {
            return value as u16;
        }
        let exponent = 63 - value.leading_zeros(); // ≥ SUB_BUCKET_BITS
        let shift = exponent - SUB_BUCKET_BITS;
        let sub = (value >> shift) & (SUB_BUCKETS - 1);
        ((u64::from(shift) + 1) * SUB_BUCKETS + sub) as u16
    }

    /// Largest value that falls into `bucket`.
    #[cfg(test)]
    fn upper_bound(bucket: u16) -> u64 {
        let bucket = u64::from(bucket);
        if bucket < SUB_BUCKETS {
            return bucket;
        }
        let shift = bucket / SUB_BUCKETS - 1;
        let sub = bucket % SUB_BUCKETS;
        let lower = (SUB_BUCKETS + sub) << shift;
        lower + ((1u64 << shift) - 1)
    }

    /// Adds one latency.
    pub fn record(&mut self, value_us: u64) {
        let (n, sum) = self
            .buckets
            .entry(Self::bucket_of(value_us))
            .or_insert((0, 0));
        *n += 1;
        *sum = sum.saturating_add(u128::from(value_us));
        self.count += 1;
        self.max_us = self.max_us.max(value_us);
    }

    /// Number of latencies recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Largest latency recorded, `None` when empty.
    pub fn max_us(&self) -> Option<u64> {
        (self.count > 0).then_some(self.max_us)
    }

    /// Nearest-rank percentile (`quantile` in 0..=1), reported as the mean of the bucket that
    /// holds it (never above the maximum); `None` when empty.
    pub fn quantile_us(&self, quantile: f64) -> Option<u64> {
        if self.count == 0 {
            return None;
        }
        let rank = ((quantile.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        if rank >= self.count {
            return Some(self.max_us);
        }
        let mut seen = 0u64;
        for &(n, sum) in self.buckets.values() {
            seen += n;
            if seen >= rank {
                let mean = sum / u128::from(n.max(1));
                return Some(u64::try_from(mean).unwrap_or(u64::MAX).min(self.max_us));
            }
        }
        Some(self.max_us)
    }
}

/// Everything kept about one endpoint.
#[derive(Debug, Clone, Default)]
pub struct EndpointStats {
    /// Requests seen.
    pub requests: u64,
    /// Responses by status class.
    pub statuses: StatusClasses,
    /// Distinct client addresses.
    pub clients: DistinctClients,
    /// Request-to-response latencies.
    pub latency: LatencyHistogram,
    /// Sum of request `body.length_bytes`.
    pub request_body_bytes: u64,
    /// Sum of response `body.length_bytes`.
    pub response_body_bytes: u64,
    /// Smallest `request_start_unix_us`.
    pub first_seen_unix_us: u64,
    /// Largest `request_start_unix_us`.
    pub last_seen_unix_us: u64,
    /// Names of the workloads that served it ([`apitap_schema::Workload::name`], schema 1.4
    /// `server_workload`), first [`MAX_SERVED_BY`] in order of appearance.
    pub served_by: Vec<String>,
    /// Requests served by a workload beyond those.
    pub served_by_other: u64,
}

/// Workload names kept per endpoint.
pub const MAX_SERVED_BY: usize = 4;

impl EndpointStats {
    /// `scratch` is a reused buffer for the serving workload's name.
    fn record(&mut self, event: &ApiEvent, scratch: &mut String) {
        let start = event.request_start_unix_us;
        if self.requests == 0 {
            self.first_seen_unix_us = start;
            self.last_seen_unix_us = start;
        } else {
            self.first_seen_unix_us = self.first_seen_unix_us.min(start);
            self.last_seen_unix_us = self.last_seen_unix_us.max(start);
        }
        self.requests += 1;
        self.statuses
            .record(event.response.as_ref().map(|r| r.status));
        self.clients.insert(event.client.ip);
        let latency = event.latency_us.or_else(|| {
            event
                .response_end_unix_us
                .map(|end| end.saturating_sub(start))
        });
        if let Some(latency) = latency {
            self.latency.record(latency);
        }
        self.request_body_bytes = self
            .request_body_bytes
            .saturating_add(event.request.body.length_bytes);
        if let Some(response) = &event.response {
            self.response_body_bytes = self
                .response_body_bytes
                .saturating_add(response.body.length_bytes);
        }
        if let Some(w) = &event.server_workload {
            // Named into a reused buffer: an allocation only for a new name kept.
            w.write_name(scratch);
            if !self.served_by.iter().any(|n| n == scratch) {
                if self.served_by.len() < MAX_SERVED_BY {
                    self.served_by.push(scratch.clone());
                } else {
                    self.served_by_other += 1;
                }
            }
        }
    }
}

/// What [`Summary::record`] did with an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// Added to its endpoint.
    Counted,
    /// Its endpoint is new and the endpoint limit is reached: not summarised.
    OverEndpointLimit,
}

/// The per-endpoint summary of a run.
#[derive(Debug, Clone)]
pub struct Summary {
    endpoints: BTreeMap<EndpointKey, EndpointStats>,
    max_endpoints: usize,
    /// Reused by [`EndpointStats::record`].
    scratch: String,
}

impl Default for Summary {
    fn default() -> Self {
        Summary::new(DEFAULT_MAX_ENDPOINTS)
    }
}

impl Summary {
    /// An empty summary tracking at most `max_endpoints` endpoints.
    pub fn new(max_endpoints: usize) -> Self {
        Summary {
            endpoints: BTreeMap::new(),
            max_endpoints,
            scratch: String::new(),
        }
    }

    /// Adds one event to its endpoint (service, raw path, method).
    pub fn record(&mut self, event: &ApiEvent) -> Recorded {
        self.record_as(event, None)
    }

    /// Adds one event to the endpoint `key` (the inventory's service and path template), or
    /// to its raw endpoint when `None`.
    pub fn record_as(&mut self, event: &ApiEvent, key: Option<EndpointKey>) -> Recorded {
        let key = key.unwrap_or_else(|| EndpointKey::of(event));
        if let Some(stats) = self.endpoints.get_mut(&key) {
            stats.record(event, &mut self.scratch);
            return Recorded::Counted;
        }
        if self.endpoints.len() >= self.max_endpoints {
            return Recorded::OverEndpointLimit;
        }
        self.endpoints
            .entry(key)
            .or_default()
            .record(event, &mut self.scratch);
        Recorded::Counted
    }

    /// Number of endpoints tracked.
    pub fn len(&self) -> usize {
        self.endpoints.len()
    }

    /// True when no event was recorded.
    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty()
    }

    /// The stats of one endpoint.
    pub fn get(&self, key: &EndpointKey) -> Option<&EndpointStats> {
        self.endpoints.get(key)
    }

    /// One report row per endpoint, sorted by service, path, method.
    pub fn reports(&self) -> Vec<EndpointReport> {
        self.endpoints
            .iter()
            .map(|(key, stats)| EndpointReport::new(key, stats))
            .collect()
    }
}

/// One endpoint of the summary as written out: the JSON output is an array of these, and the
/// table shows the same fields. Field names are part of the analyzer's output contract.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndpointReport {
    /// `request.host`, or `server.ip:server.port` when the request had no host.
    pub service: String,
    /// Request method as sent.
    pub method: String,
    /// Raw request path (not templated yet).
    pub path: String,
    /// Requests seen.
    pub requests: u64,
    /// Responses with status 100–199.
    pub status_1xx: u64,
    /// Responses with status 200–299.
    pub status_2xx: u64,
    /// Responses with status 300–399.
    pub status_3xx: u64,
    /// Responses with status 400–499.
    pub status_4xx: u64,
    /// Responses with status 500–599.
    pub status_5xx: u64,
    /// Responses with a status outside 100–599.
    pub status_other: u64,
    /// Requests for which no response was seen.
    pub no_response: u64,
    /// Distinct client IP addresses: exact up to 8, a HyperLogLog estimate (standard error
    /// 6.5 %) beyond.
    pub distinct_clients: u64,
    /// True when `distinct_clients` is an estimate (shown as `~N` in the table).
    pub distinct_clients_estimated: bool,
    /// Number of latencies behind the percentiles (transactions with a response).
    pub latency_samples: u64,
    /// Median latency in milliseconds (within 6.25 % of the true value); null without samples.
    pub latency_p50_ms: Option<f64>,
    /// 95th percentile latency in milliseconds (within 6.25 %); null without samples.
    pub latency_p95_ms: Option<f64>,
    /// Largest latency in milliseconds (exact); null without samples.
    pub latency_max_ms: Option<f64>,
    /// Sum of request body lengths (`request.body.length_bytes`).
    pub request_body_bytes: u64,
    /// Sum of response body lengths (`response.body.length_bytes`).
    pub response_body_bytes: u64,
    /// Earliest `request_start_unix_us`.
    pub first_seen_unix_us: u64,
    /// Latest `request_start_unix_us`.
    pub last_seen_unix_us: u64,
    /// The workloads that served it, as the sensor attributed them (R-CAP-5): e.g.
    /// `shop/Deployment/web`, `nginx.service`; at most 4, in order of appearance. Empty when
    /// the sensor did not attribute (the server is not on its host, or attribution is off).
    pub served_by: Vec<String>,
    /// Requests served by other workloads than those in `served_by`.
    pub served_by_other: u64,
}

fn us_to_ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

impl EndpointReport {
    fn new(key: &EndpointKey, stats: &EndpointStats) -> Self {
        let s = &stats.statuses;
        EndpointReport {
            service: key.service.clone(),
            method: key.method.clone(),
            path: key.path.clone(),
            requests: stats.requests,
            status_1xx: s.informational,
            status_2xx: s.success,
            status_3xx: s.redirection,
            status_4xx: s.client_error,
            status_5xx: s.server_error,
            status_other: s.other,
            no_response: s.no_response,
            distinct_clients: stats.clients.count() as u64,
            distinct_clients_estimated: stats.clients.estimated(),
            latency_samples: stats.latency.count(),
            latency_p50_ms: stats.latency.quantile_us(0.50).map(us_to_ms),
            latency_p95_ms: stats.latency.quantile_us(0.95).map(us_to_ms),
            latency_max_ms: stats.latency.max_us().map(us_to_ms),
            request_body_bytes: stats.request_body_bytes,
            response_body_bytes: stats.response_body_bytes,
            first_seen_unix_us: stats.first_seen_unix_us,
            last_seen_unix_us: stats.last_seen_unix_us,
            served_by: stats.served_by.clone(),
            served_by_other: stats.served_by_other,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use apitap_schema::Body;
    use apitap_schema::test_support::EventBuilder;

    /// The builder of [`event`], for tests that set more fields.
    pub(crate) fn builder(host: Option<&str>, method: &str, path: &str) -> EventBuilder {
        let b = EventBuilder::new(method, path)
            .at_us(1_000_000)
            .latency_us(2_000)
            .client("10.0.0.2:40000")
            .body_bytes("abc")
            .response_body_raw(Body::from_bytes(b"hello", 100));
        match host {
            Some(h) => b.host(h),
            None => b.no_host(),
        }
    }

    /// A minimal event (2 ms, 200 with 5 of 100 body bytes captured); tests adjust the
    /// fields they care about.
    pub(crate) fn event(host: Option<&str>, method: &str, path: &str) -> ApiEvent {
        builder(host, method, path).build()
    }

    fn with_status(status: Option<u16>) -> ApiEvent {
        let b = builder(Some("api"), "GET", "/x");
        match status {
            Some(code) => b.status(code),
            None => b.no_response(),
        }
        .build()
    }

    /// The workloads the sensor attributed an endpoint's requests to (schema 1.4): named,
    /// deduplicated, bounded; requests without one count nowhere.
    #[test]
    fn served_by_names_the_workloads_bounded() {
        let mut s = Summary::new(100);
        let with = |name: &str| {
            let mut e = event(Some("api"), "GET", "/x");
            e.server_workload = Some(std::sync::Arc::new(apitap_schema::Workload {
                cgroup: format!("/system.slice/{name}"),
                unit: Some(name.to_owned()),
                ..Default::default()
            }));
            e
        };
        s.record(&event(Some("api"), "GET", "/x"));
        for name in [
            "a.service",
            "a.service",
            "b.service",
            "c.service",
            "d.service",
            "e.service",
            "f.service",
        ] {
            s.record(&with(name));
        }
        let r = &s.reports()[0];
        assert_eq!(
            r.served_by,
            ["a.service", "b.service", "c.service", "d.service"]
        );
        assert_eq!(r.served_by_other, 2);
        assert_eq!(r.requests, 8);
    }

    #[test]
    fn groups_by_service_method_path_and_sorts() {
        let mut s = Summary::default();
        s.record(&event(Some("b.example"), "GET", "/a"));
        s.record(&event(Some("a.example"), "POST", "/z"));
        s.record(&event(Some("a.example"), "GET", "/z"));
        s.record(&event(Some("a.example"), "GET", "/z"));
        s.record(&event(Some("a.example"), "GET", "/b"));
        // No host (or a blank one): the server address is the service.
        s.record(&event(None, "GET", "/a"));
        s.record(&event(Some("  "), "GET", "/a"));
        let mut v6 = event(None, "GET", "/a");
        v6.server.ip = "::1".parse().unwrap();
        s.record(&v6);
        let rows: Vec<(String, String, String, u64)> = s
            .reports()
            .into_iter()
            .map(|r| (r.service, r.path, r.method, r.requests))
            .collect();
        let row = |s: &str, p: &str, m: &str, n| (s.to_string(), p.to_string(), m.to_string(), n);
        assert_eq!(
            rows,
            vec![
                row("10.0.0.1:8080", "/a", "GET", 2),
                row("[::1]:8080", "/a", "GET", 1),
                row("a.example", "/b", "GET", 1),
                row("a.example", "/z", "GET", 2),
                row("a.example", "/z", "POST", 1),
                row("b.example", "/a", "GET", 1),
            ]
        );
    }

    #[test]
    fn counts_status_classes_and_missing_responses() {
        let mut s = Summary::default();
        for status in [
            Some(101),
            Some(200),
            Some(204),
            Some(302),
            Some(404),
            Some(500),
            Some(503),
            Some(99),
            Some(600),
            None,
        ] {
            s.record(&with_status(status));
        }
        let r = &s.reports()[0];
        assert_eq!(r.requests, 10);
        assert_eq!(
            (
                r.status_1xx,
                r.status_2xx,
                r.status_3xx,
                r.status_4xx,
                r.status_5xx
            ),
            (1, 2, 1, 1, 2)
        );
        assert_eq!((r.status_other, r.no_response), (2, 1));
        // The event without a response has no latency.
        assert_eq!(r.latency_samples, 9);
    }

    #[test]
    fn sums_body_bytes_and_tracks_first_and_last_seen() {
        let mut s = Summary::default();
        for start in [5_000_000, 1_000_000, 9_000_000] {
            let mut e = event(Some("api"), "GET", "/x");
            e.request_start_unix_us = start;
            s.record(&e);
        }
        s.record(&with_status(None));
        let r = &s.reports()[0];
        // length_bytes, not captured bytes: 3 per request, 100 per response (3 responses).
        assert_eq!((r.request_body_bytes, r.response_body_bytes), (12, 300));
        assert_eq!(
            (r.first_seen_unix_us, r.last_seen_unix_us),
            (1_000_000, 9_000_000)
        );
    }

    #[test]
    fn percentiles_are_close_and_max_is_exact() {
        let mut h = LatencyHistogram::default();
        assert_eq!(h.quantile_us(0.5), None);
        assert_eq!(h.max_us(), None);
        // 1..=100 ms, shuffled order does not matter.
        for ms in (1..=100u64).rev() {
            h.record(ms * 1000 + 7);
        }
        let p50 = h.quantile_us(0.50).unwrap() as f64;
        let p95 = h.quantile_us(0.95).unwrap() as f64;
        assert!((p50 - 50_007.0).abs() <= 50_007.0 / 16.0, "{p50}");
        assert!((p95 - 95_007.0).abs() <= 95_007.0 / 16.0, "{p95}");
        // A bucket holding one value reports it exactly.
        let mut exact = LatencyHistogram::default();
        for v in [1_000, 2_000, 3_000] {
            exact.record(v);
        }
        assert_eq!(exact.quantile_us(0.5), Some(2_000));
        assert_eq!(exact.quantile_us(0.95), Some(3_000));
        assert_eq!(h.max_us(), Some(100_007));
        assert_eq!(h.quantile_us(1.0), Some(100_007));
        assert_eq!(h.count(), 100);
    }

    #[test]
    fn small_latencies_are_exact_and_one_sample_is_its_own_percentile() {
        let mut h = LatencyHistogram::default();
        h.record(0);
        h.record(31);
        assert_eq!(h.quantile_us(0.5), Some(0));
        assert_eq!(h.quantile_us(0.95), Some(31));
        let mut one = LatencyHistogram::default();
        one.record(123_456_789);
        assert_eq!(one.quantile_us(0.5), Some(123_456_789));
    }

    #[test]
    fn histogram_buckets_cover_the_whole_range_monotonically() {
        let mut last = 0u16;
        for value in (0..64)
            .flat_map(|bit| {
                [
                    1u64 << bit,
                    (1u64 << bit) + 1,
                    (1u64 << bit).wrapping_sub(1),
                ]
            })
            .chain([u64::MAX])
        {
            let b = LatencyHistogram::bucket_of(value);
            assert!(LatencyHistogram::upper_bound(b) >= value, "{value}");
            assert!(b < 976, "{value} -> {b}");
            last = last.max(b);
        }
        assert_eq!(LatencyHistogram::upper_bound(last), u64::MAX);
        // Bucket width stays within 1/16 of its lower bound.
        for value in [100u64, 12_345, 9_999_999, 1 << 40] {
            let upper = LatencyHistogram::upper_bound(LatencyHistogram::bucket_of(value));
            assert!((upper - value) as f64 <= value as f64 / 16.0, "{value}");
        }
    }

    #[test]
    fn latency_falls_back_to_response_end() {
        let mut s = Summary::default();
        let mut e = event(Some("api"), "GET", "/x");
        e.latency_us = None;
        e.response_end_unix_us = Some(e.request_start_unix_us + 4_000);
        s.record(&e);
        assert_eq!(s.reports()[0].latency_max_ms, Some(4.0));
    }

    #[test]
    fn distinct_clients_are_exact_then_estimated_in_bounded_memory() {
        let mut c = DistinctClients::default();
        for i in 0..EXACT_DISTINCT_CLIENTS as u32 {
            c.insert(IpAddr::from((0x0a00_0000 + i).to_be_bytes()));
            c.insert(IpAddr::from((0x0a00_0000 + i).to_be_bytes()));
        }
        assert_eq!((c.count(), c.estimated()), (EXACT_DISTINCT_CLIENTS, false));
        // 100,000 IPv6 clients: an estimate within a few standard errors, in 256 registers.
        for i in 0..100_000u128 {
            c.insert(IpAddr::from((0x2001_0db8u128 << 96 | i).to_be_bytes()));
        }
        assert!(c.estimated());
        let n = c.count() as f64;
        assert!((n - 100_008.0).abs() / 100_008.0 < 0.25, "{n}");
        assert!(std::mem::size_of::<DistinctClients>() <= 64);
    }

    #[test]
    fn summary_counts_distinct_clients_per_endpoint() {
        let mut s = Summary::default();
        for last in [1u8, 2, 2, 3] {
            let mut e = event(Some("api"), "GET", "/x");
            e.client.ip = IpAddr::from([10, 0, 0, last]);
            s.record(&e);
        }
        let r = &s.reports()[0];
        assert_eq!(
            (r.distinct_clients, r.distinct_clients_estimated),
            (3, false)
        );
    }

    #[test]
    fn endpoint_limit_bounds_the_summary() {
        let mut s = Summary::new(2);
        assert_eq!(
            s.record(&event(Some("api"), "GET", "/1")),
            Recorded::Counted
        );
        assert_eq!(
            s.record(&event(Some("api"), "GET", "/2")),
            Recorded::Counted
        );
        assert_eq!(
            s.record(&event(Some("api"), "GET", "/3")),
            Recorded::OverEndpointLimit
        );
        // Known endpoints keep counting.
        assert_eq!(
            s.record(&event(Some("api"), "GET", "/1")),
            Recorded::Counted
        );
        assert_eq!(s.len(), 2);
    }
}
