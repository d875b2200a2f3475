//! Body sampling per endpoint (issue 21): every transaction's metadata leaves the host, but
//! the bodies of one endpoint at most `payload.max_bodies_per_endpoint_per_sec` times a
//! second, so that an operator can cap what a very hot endpoint costs the agent (encoding and
//! shipping bodies is most of the agent's work per transaction). Events whose bodies were left
//! out say so (`bodies_sampled_out`, schema 1.4) and keep the bodies' lengths; counters say
//! how many and how many bytes.
//!
//! An "endpoint" here is a rate key, not a judgement (the analyzer owns templating): server
//! address and port, method, and the path's first 6 segments with every segment that holds a
//! digit, or is longer than 32 bytes, counted as one (`/users/17/orders` and
//! `/users/18/orders` share a key). Time is the event's own request time, so that replaying a
//! capture samples as live capture did. The key table is bounded; when full it starts over
//! (counted).

use std::collections::HashMap;
use std::hash::{BuildHasher as _, Hash as _, Hasher as _};

use apitap_schema::{ApiEvent, Body};

/// Path segments that make the key at most.
const KEY_SEGMENTS: usize = 6;
/// Longer segments are counted as identifiers (tokens, hashes, slugs).
const MAX_LITERAL_SEGMENT: usize = 32;

/// Token bucket of one endpoint: up to `rate` bodies in any second.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last_us: u64,
}

/// What sampling did, for metrics and the replay summary.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SamplingStats {
    /// Events shipped without their bodies.
    pub sampled_out_events: u64,
    /// Captured body bytes those events did not ship.
    pub sampled_out_body_bytes: u64,
    /// Endpoints with a bucket now.
    pub endpoints: u64,
    /// Times the endpoint table was full and started over.
    pub table_resets: u64,
}

/// The per-endpoint body rate limiter.
#[derive(Debug)]
pub struct BodySampler {
    rate: f64,
    max_endpoints: usize,
    buckets: HashMap<u64, Bucket>,
    hasher: foldhash::fast::FixedState,
    /// Counters so far.
    pub stats: SamplingStats,
}

impl BodySampler {
    /// Bodies of each endpoint at most `per_sec` a second; at most `max_endpoints` keys.
    pub fn new(per_sec: u32, max_endpoints: usize) -> BodySampler {
        BodySampler {
            rate: f64::from(per_sec.max(1)),
            max_endpoints: max_endpoints.max(1),
            buckets: HashMap::new(),
            hasher: foldhash::fast::FixedState::with_seed(0x5a3b_c0de),
            stats: SamplingStats::default(),
        }
    }

    /// Takes `e`'s bodies out when its endpoint is over the rate; true when it did.
    pub fn apply(&mut self, e: &mut ApiEvent) -> bool {
        let key = self.key(e);
        let now = e.request_start_unix_us;
        if self.buckets.len() >= self.max_endpoints && !self.buckets.contains_key(&key) {
            self.buckets.clear();
            self.stats.table_resets += 1;
        }
        let rate = self.rate;
        let endpoints = self.buckets.len() + usize::from(!self.buckets.contains_key(&key));
        self.stats.endpoints = endpoints as u64;
        let b = self.buckets.entry(key).or_insert(Bucket {
            tokens: rate,
            last_us: now,
        });
        // Refill for the time since the endpoint's last event (events can arrive slightly out
        // of order across connections: never refill backwards).
        let elapsed = now.saturating_sub(b.last_us) as f64 / 1e6;
        b.tokens = (b.tokens + elapsed * rate).min(rate);
        b.last_us = b.last_us.max(now);
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            return false;
        }
        let mut removed = strip(&mut e.request.body);
        if let Some(r) = &mut e.response {
            removed += strip(&mut r.body);
        }
        e.bodies_sampled_out = true;
        self.stats.sampled_out_events += 1;
        self.stats.sampled_out_body_bytes += removed;
        true
    }

    fn key(&self, e: &ApiEvent) -> u64 {
        let mut h = self.hasher.build_hasher();
        e.server.hash(&mut h);
        e.request.method.hash(&mut h);
        let mut n = 0usize;
        for seg in e
            .request
            .path
            .split('/')
            .filter(|s| !s.is_empty())
            .take(KEY_SEGMENTS)
        {
            n += 1;
            if seg.len() > MAX_LITERAL_SEGMENT || seg.bytes().any(|b| b.is_ascii_digit()) {
                // A marker no literal segment can be ('{' never survives percent-encoding).
                "{id}".hash(&mut h);
            } else {
                seg.hash(&mut h);
            }
        }
        // The segment count too: a trailing identifier must not vanish from the key.
        h.write_usize(n);
        h.finish()
    }
}

/// Empties a body, keeping its length; returns the captured bytes removed.
fn strip(b: &mut Body) -> u64 {
    let removed = b.captured_bytes;
    if removed == 0 && b.data.is_empty() {
        return 0;
    }
    b.data = String::new();
    b.captured_bytes = 0;
    b.truncated = b.length_bytes > 0;
    removed
}

#[cfg(test)]
mod tests {
    use super::*;
    use apitap_schema::test_support::EventBuilder;

    fn ev(path: &str, t_us: u64) -> ApiEvent {
        EventBuilder::get(path)
            .status(200)
            .response_body("application/json", r#"{"id":1,"name":"ada"}"#)
            .at_us(t_us)
            .build()
    }

    #[test]
    fn each_endpoint_keeps_its_rate_of_bodies() {
        let mut s = BodySampler::new(5, 100);
        let t0 = 1_700_000_000_000_000;
        // 50 requests in 100 ms on one endpoint (ids vary): 5 keep their bodies.
        let mut kept = 0;
        for i in 0..50u64 {
            let mut e = ev(&format!("/api/users/{i}"), t0 + i * 2_000);
            if !s.apply(&mut e) {
                kept += 1;
                assert!(!e.response.as_ref().unwrap().body.data.is_empty());
            } else {
                let b = &e.response.as_ref().unwrap().body;
                assert!(e.bodies_sampled_out && b.data.is_empty() && b.truncated);
                assert_eq!(b.captured_bytes, 0);
                assert_eq!(b.length_bytes, 21, "the length is kept");
            }
        }
        assert_eq!(kept, 5);
        // Another endpoint is not affected.
        assert!(!s.apply(&mut ev("/api/orders", t0 + 100_000)));
        // One second later the endpoint has its rate again.
        let mut again = 0;
        for i in 0..10u64 {
            if !s.apply(&mut ev(&format!("/api/users/{i}"), t0 + 1_200_000 + i)) {
                again += 1;
            }
        }
        assert_eq!(again, 5);
        assert_eq!(s.stats.sampled_out_events, 45 + 5);
        assert_eq!(s.stats.sampled_out_body_bytes, 50 * 21);
        assert_eq!(s.stats.endpoints, 2);
    }

    #[test]
    fn keys_separate_methods_servers_and_literal_paths() {
        let s = BodySampler::new(1, 100);
        let k = |e: &ApiEvent| s.key(e);
        let a = ev("/api/users/17/orders", 0);
        assert_eq!(k(&a), k(&ev("/api/users/18/orders", 0)));
        assert_eq!(
            k(&ev(&format!("/files/{}", "x".repeat(40)), 0)),
            k(&ev(&format!("/files/{}", "y".repeat(40)), 0))
        );
        assert_ne!(k(&a), k(&ev("/api/users/17/invoices", 0)));
        assert_ne!(k(&ev("/api/users", 0)), k(&ev("/api/users/7", 0)));
        let mut post = a.clone();
        post.request.method = "POST".into();
        assert_ne!(k(&a), k(&post));
        let mut other = a.clone();
        other.server.port = 9090;
        assert_ne!(k(&a), k(&other));
    }

    #[test]
    fn the_table_is_bounded() {
        let mut s = BodySampler::new(1, 8);
        for i in 0..100 {
            s.apply(&mut ev(
                &format!("/r{}", char::from(b'a' + (i % 26) as u8)),
                0,
            ));
        }
        assert!(s.buckets.len() <= 8);
        assert!(s.stats.table_resets > 0);
    }
}
