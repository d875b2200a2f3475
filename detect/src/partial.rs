//! Mergeable partial aggregates of the global detectors (issue 18, two-stage processing):
//! stage 1 (each analyzer, on its events partitions) folds what the global detectors need
//! into one [`Partial`] per global key and event-time slice; stage 2 ([`crate::global`], the
//! one owner of the key) merges every analyzer's partials and runs the detectors' conditions
//! on the whole site's traffic.
//!
//! Global keys are the campaign keys the single-instance detectors use: credential stuffing
//! `distributed` per endpoint (service, method, template), crawling `distributed` per
//! (service, non-browser client fingerprint), abnormal access `account_sharing` per
//! (service, account), brute force `distributed_on_account` per (user name tried, login
//! endpoint). Accounts and user names are keyed hashes (the campaign key and
//! [`Partial::account`]); no clear value is in a partial.
//!
//! [`Partial::merge`] is associative and commutative: counts add, distinct sets union (exact
//! up to 8 values, then HyperLogLog registers by maximum — the same registers as one sketch
//! over all values), the listed sources are the union's [`MAX_SOURCES`] smallest keys, the
//! baseline is the one that learnt most, thresholds the largest. A source's light/heavy
//! split is decided in stage 1: a client's events are all on one events partition, so its
//! per-source window there is complete.
//!
//! A partial holds the events of one slice *since the previous flush*: an analyzer that
//! flushes twice within a slice produces two partials of that slice, and stage 2 adds them
//! (their events are disjoint). Wire form: versioned MessagePack ([`crate::checkpoint`]),
//! validated on decode (bounded lists and strings; a bad record is an error, never a panic).
use std::collections::HashMap;
use std::net::IpAddr;

use foldhash::fast::RandomState;
use serde::{Deserialize, Serialize};

use crate::actor::Account;
use crate::baseline::Ewma;
use crate::campaign::campaign_key;
use crate::checkpoint::{self, StateError};
use crate::engine::Obs;
use crate::finding::Detector;
use crate::keys::Keyer;
use crate::sketch::{Distinct, DistinctParts};

/// Source addresses listed per partial (the campaign's evidence; the distinct count is the
/// sketch's).
pub const MAX_SOURCES: usize = 16;
/// Longest service, method or template string a partial carries (bytes).
pub const MAX_NAME_BYTES: usize = 1_024;

/// Which global detector a partial feeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GlobalKind {
    /// Credential stuffing `distributed`, per login endpoint.
    StuffingDistributed,
    /// Crawling `distributed`, per (service, non-browser fingerprint).
    CrawlingDistributed,
    /// Abnormal access `account_sharing`, per (service, account).
    AccountSharing,
    /// Brute force `distributed_on_account`, per (user name tried, login endpoint).
    BruteForceOnAccount,
}

impl GlobalKind {
    /// The detector and kind of the campaigns it raises.
    pub fn detector(self) -> (Detector, &'static str) {
        match self {
            GlobalKind::StuffingDistributed => (Detector::CredentialStuffing, "distributed"),
            GlobalKind::CrawlingDistributed => (Detector::Crawling, "distributed"),
            GlobalKind::AccountSharing => (Detector::AbnormalAccess, "account_sharing"),
            GlobalKind::BruteForceOnAccount => (Detector::BruteForce, "distributed_on_account"),
        }
    }
}

/// Counters of a partial (all add on merge).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Counts {
    /// Login attempts with a known outcome (stuffing) or requests (crawling).
    pub attempts: u64,
    /// Failed attempts.
    pub failures: u64,
    /// Successful attempts.
    pub successes: u64,
    /// Attempts from light sources (not heavy hitters of their per-source window).
    pub light_attempts: u64,
    /// Failures from light sources.
    pub light_failures: u64,
    /// Crawling: requests carrying an account.
    pub authenticated: u64,
}

impl Counts {
    fn add(&mut self, o: &Counts) {
        self.attempts = self.attempts.saturating_add(o.attempts);
        self.failures = self.failures.saturating_add(o.failures);
        self.successes = self.successes.saturating_add(o.successes);
        self.light_attempts = self.light_attempts.saturating_add(o.light_attempts);
        self.light_failures = self.light_failures.saturating_add(o.light_failures);
        self.authenticated = self.authenticated.saturating_add(o.authenticated);
    }
}

/// The partial aggregate of one global key over (part of) one event-time slice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Partial {
    /// The global detector.
    pub kind: GlobalKind,
    /// The global key: the campaign key of the single-instance detector (keyed hash).
    pub key: u64,
    /// Start of the slice, µs of event time (a multiple of `slice_us`).
    pub slice_start_us: u64,
    /// Slice length, µs.
    pub slice_us: u64,
    /// Earliest and latest event folded in, µs.
    pub first_us: u64,
    /// Latest event folded in, µs.
    pub last_us: u64,
    /// Service of the endpoint.
    pub service: String,
    /// Method (`*` for crawling: every endpoint of the service).
    pub method: String,
    /// Template (`*` for crawling).
    pub template: String,
    /// Crawling: the client fingerprint (keyed hash); 0 for stuffing.
    pub fingerprint: u64,
    /// Crawling: the fingerprint's User-Agent family name.
    pub ua_family: String,
    /// Counters.
    pub counts: Counts,
    /// Distinct sources (client address keys).
    #[serde(with = "distinct_wire")]
    pub sources: Distinct,
    /// Distinct values: user names tried (stuffing), paths (crawling).
    #[serde(with = "distinct_wire")]
    pub values: Distinct,
    /// Up to [`MAX_SOURCES`] sources (address, keyed hash), smallest keys first.
    pub listed: Vec<(IpAddr, u64)>,
    /// Stuffing: the endpoint's failure-ratio baseline as stage 1 knew it (the one that
    /// learnt most wins a merge).
    pub base: Ewma,
    /// Crawling: stage 1's request and distinct-path thresholds (adaptive population
    /// baselines); the largest wins a merge.
    pub thr_requests: f64,
    /// See `thr_requests`.
    pub thr_paths: f64,
    /// Account kinds: the account as alerts render it (`jwt_sub:<keyed hash>`,
    /// `login_user:<keyed hash>`); never a clear value.
    #[serde(default)]
    pub account: String,
    /// Stuffing: a detection on the endpoint marked stage 1's baseline bucket of these events
    /// as an attack (stage 2 does not learn its failure-ratio baseline from them).
    #[serde(default)]
    pub poisoned: bool,
}

/// Why two partials do not merge.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MergeError {
    /// Different kind, key or slice.
    #[error("partials of different keys or slices do not merge")]
    Mismatch,
}

impl Partial {
    /// An empty partial of `key` for the slice holding `now`.
    pub(crate) fn empty(kind: GlobalKind, key: u64, now: u64, slice_us: u64) -> Partial {
        Partial {
            kind,
            key,
            slice_start_us: now - now % slice_us,
            slice_us,
            first_us: now,
            last_us: now,
            service: String::new(),
            method: String::new(),
            template: String::new(),
            fingerprint: 0,
            ua_family: String::new(),
            counts: Counts::default(),
            sources: Distinct::default(),
            values: Distinct::default(),
            listed: Vec::new(),
            base: Ewma::default(),
            thr_requests: 0.0,
            thr_paths: 0.0,
            account: String::new(),
            poisoned: false,
        }
    }

    /// Folds `other` (same kind, key and slice) in. Associative and commutative.
    pub fn merge(&mut self, other: &Partial) -> Result<(), MergeError> {
        if (self.kind, self.key, self.slice_start_us, self.slice_us)
            != (other.kind, other.key, other.slice_start_us, other.slice_us)
        {
            return Err(MergeError::Mismatch);
        }
        self.merge_into_bucket(other);
        Ok(())
    }

    /// [`Partial::merge`] without the slice check: stage 2 folds slices into its coarser
    /// window buckets.
    pub(crate) fn merge_into_bucket(&mut self, other: &Partial) {
        self.first_us = self.first_us.min(other.first_us);
        self.last_us = self.last_us.max(other.last_us);
        // Names are the same for one key; an empty one (a fresh accumulator) takes the other's,
        // and of two that differ the smaller wins (order-independent).
        for (a, b) in [
            (&mut self.service, &other.service),
            (&mut self.method, &other.method),
            (&mut self.template, &other.template),
            (&mut self.ua_family, &other.ua_family),
            (&mut self.account, &other.account),
        ] {
            if a.is_empty() || (!b.is_empty() && *b < *a) {
                a.clone_from(b);
            }
        }
        self.fingerprint = self.fingerprint.max(other.fingerprint);
        self.counts.add(&other.counts);
        self.sources.merge(&other.sources);
        self.values.merge(&other.values);
        for s in &other.listed {
            list_source(&mut self.listed, s.0, s.1);
        }
        if (
            other.base.n,
            other.base.mean.to_bits(),
            other.base.var.to_bits(),
        ) > (
            self.base.n,
            self.base.mean.to_bits(),
            self.base.var.to_bits(),
        ) {
            self.base = other.base;
        }
        self.thr_requests = self.thr_requests.max(other.thr_requests);
        self.thr_paths = self.thr_paths.max(other.thr_paths);
        self.poisoned |= other.poisoned;
    }

    /// The record of the partial (versioned MessagePack); `None` if it would be over
    /// [`checkpoint::MAX_RECORD_BYTES`] (it cannot be: lists and strings are bounded).
    pub fn encode(&self) -> Option<Vec<u8>> {
        checkpoint::encode(self)
    }

    /// The partial of a record [`Partial::encode`] wrote, validated: a garbage, truncated,
    /// oversized or inconsistent record is an error (count it and skip it).
    pub fn decode(bytes: &[u8]) -> Result<Partial, StateError> {
        let p: Partial = checkpoint::decode(bytes)?;
        p.validate()?;
        Ok(p)
    }

    /// The bounds [`Partial::decode`] enforces (a stage-2 window record's bucket too).
    pub(crate) fn validate(&self) -> Result<(), StateError> {
        let p = self;
        let names_ok = [&p.service, &p.method, &p.template, &p.ua_family, &p.account]
            .iter()
            .all(|s| s.len() <= MAX_NAME_BYTES);
        if !names_ok
            || p.listed.len() > MAX_SOURCES
            || p.slice_us == 0
            || !p.slice_start_us.is_multiple_of(p.slice_us)
            || p.first_us > p.last_us
            || !(p.thr_requests.is_finite() && p.thr_paths.is_finite())
        {
            return Err(StateError::Corrupt);
        }
        Ok(())
    }

    /// The partials topic's message key: the global key in hex (the partition is the key's
    /// hash, so one stage-2 member owns it).
    pub fn message_key(&self) -> String {
        format!("{:016x}", self.key)
    }
}

/// Adds a source to a listed set: at most [`MAX_SOURCES`], the smallest keys (so that the
/// list of a merge does not depend on the order of its parts).
fn list_source(listed: &mut Vec<(IpAddr, u64)>, ip: IpAddr, key: u64) {
    match listed.binary_search_by_key(&key, |s| s.1) {
        Ok(_) => {}
        Err(i) if i < MAX_SOURCES => {
            listed.insert(i, (ip, key));
            listed.truncate(MAX_SOURCES);
        }
        Err(_) => {}
    }
}

/// Serde of a [`Distinct`] through its [`DistinctParts`].
mod distinct_wire {
    use super::{Distinct, DistinctParts};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(d: &Distinct, s: S) -> Result<S::Ok, S::Error> {
        d.to_parts().serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Distinct, D::Error> {
        let parts = DistinctParts::deserialize(d)?;
        Distinct::from_parts(&parts).ok_or_else(|| serde::de::Error::custom("invalid distinct set"))
    }
}

/// Stage 1's partials: one per (global key, slice) touched since the last
/// [`PartialSink::take`], at most `max` (beyond, contributions are dropped and counted).
#[derive(Debug)]
pub(crate) struct PartialSink {
    slice_us: u64,
    max: usize,
    held: HashMap<(u64, u64), Partial, RandomState>,
    /// Contributions dropped because `max` partials were held.
    pub dropped: u64,
    /// Partials handed out by [`PartialSink::take`].
    pub produced: u64,
}

impl PartialSink {
    pub(crate) fn new(slice_us: u64, max: usize) -> PartialSink {
        PartialSink {
            slice_us: slice_us.max(1),
            max,
            held: HashMap::with_hasher(RandomState::default()),
            dropped: 0,
            produced: 0,
        }
    }

    /// The partial of `key` for the slice of `now`, created named after `o`'s endpoint.
    fn entry(
        &mut self,
        kind: GlobalKind,
        key: u64,
        o: &Obs,
        any_endpoint: bool,
    ) -> Option<&mut Partial> {
        let now = o.now;
        let slice = now - now % self.slice_us;
        if !self.held.contains_key(&(key, slice)) && self.held.len() >= self.max {
            self.dropped += 1;
            return None;
        }
        let slice_us = self.slice_us;
        let p = self.held.entry((key, slice)).or_insert_with(|| {
            let mut p = Partial::empty(kind, key, now, slice_us);
            p.service = truncated(o.service);
            if any_endpoint {
                p.method = "*".into();
                p.template = "*".into();
            } else {
                p.method = truncated(o.method);
                p.template = truncated(o.template);
            }
            p
        });
        p.first_us = p.first_us.min(now);
        p.last_us = p.last_us.max(now);
        list_source(&mut p.listed, o.actor.ip, o.actor.ip_key);
        p.sources.insert(o.actor.ip_key);
        Some(p)
    }

    /// A login attempt of the distributed stuffing check: `heavy` when its source is a
    /// heavy hitter of its per-source window, `base` the endpoint's failure-ratio baseline.
    /// `poisoned`: stage 1's baseline bucket of the endpoint is marked as an attack.
    pub(crate) fn stuffing(
        &mut self,
        o: &Obs,
        keyer: &Keyer,
        heavy: bool,
        base: Ewma,
        poisoned: bool,
    ) {
        let (d, kind) = GlobalKind::StuffingDistributed.detector();
        let key = campaign_key(keyer, d, kind, 0, o.endpoint_key);
        let Some(p) = self.entry(GlobalKind::StuffingDistributed, key, o, false) else {
            return;
        };
        let failed = o.outcome == crate::Outcome::Failure;
        p.counts.attempts += 1;
        p.counts.failures += u64::from(failed);
        p.counts.successes += u64::from(o.outcome == crate::Outcome::Success);
        if !heavy {
            p.counts.light_attempts += 1;
            p.counts.light_failures += u64::from(failed);
        }
        if let Some(u) = o.actor.login_user {
            p.values.insert(u);
        }
        if base.n > p.base.n {
            p.base = base;
        }
        p.poisoned |= poisoned;
    }

    /// A request of a non-browser fingerprint (distributed crawling), with stage 1's
    /// thresholds.
    pub(crate) fn crawling(&mut self, o: &Obs, keyer: &Keyer, thr_requests: f64, thr_paths: f64) {
        let (d, kind) = GlobalKind::CrawlingDistributed.detector();
        let key = campaign_key(keyer, d, kind, o.actor.fingerprint, o.service_key);
        let Some(p) = self.entry(GlobalKind::CrawlingDistributed, key, o, true) else {
            return;
        };
        p.fingerprint = o.actor.fingerprint;
        if p.ua_family.is_empty() {
            p.ua_family = o.actor.ua.name().to_owned();
        }
        p.counts.attempts += 1;
        p.counts.authenticated += u64::from(o.actor.account.is_some());
        p.values.insert(o.path_key);
        p.thr_requests = p.thr_requests.max(thr_requests);
        p.thr_paths = p.thr_paths.max(thr_paths);
    }

    /// A request of an account (not a login attempt's user name) for the sharing check:
    /// `address` is the key the condition counts (the subnet's or the address's,
    /// `abnormal_access.sharing_by_subnet`).
    pub(crate) fn sharing(&mut self, o: &Obs, keyer: &Keyer, account: &Account, address: u64) {
        let (d, kind) = GlobalKind::AccountSharing.detector();
        let key = campaign_key(keyer, d, kind, account.key, o.service_key);
        let Some(p) = self.entry(GlobalKind::AccountSharing, key, o, true) else {
            return;
        };
        if p.account.is_empty() {
            p.account = account.render();
        }
        p.counts.attempts += 1;
        p.values.insert(address);
    }

    /// A login attempt with a known outcome on user name `user` (keyed hash) for the
    /// brute-force check distributed on an account.
    pub(crate) fn brute_force(&mut self, o: &Obs, keyer: &Keyer, user: u64) {
        let (d, kind) = GlobalKind::BruteForceOnAccount.detector();
        let key = campaign_key(keyer, d, kind, user, o.endpoint_key);
        let Some(p) = self.entry(GlobalKind::BruteForceOnAccount, key, o, false) else {
            return;
        };
        if p.account.is_empty() {
            p.account = format!("login_user:{user:016x}");
        }
        p.counts.attempts += 1;
        p.counts.failures += u64::from(o.outcome == crate::Outcome::Failure);
        p.counts.successes += u64::from(o.outcome == crate::Outcome::Success);
    }

    /// Every partial held, in (slice, key) order; the sink starts empty again.
    pub(crate) fn take(&mut self) -> Vec<Partial> {
        let mut out: Vec<Partial> = self.held.drain().map(|(_, p)| p).collect();
        out.sort_by_key(|p| (p.slice_start_us, p.key));
        self.produced += out.len() as u64;
        out
    }

    /// Bytes held (approximate).
    pub(crate) fn bytes(&self) -> usize {
        self.held
            .values()
            .map(|p| {
                std::mem::size_of::<Partial>()
                    + p.sources.heap_bytes()
                    + p.values.heap_bytes()
                    + p.listed.capacity() * 24
                    + p.service.capacity()
                    + p.method.capacity()
                    + p.template.capacity()
                    + p.account.capacity()
            })
            .sum()
    }
}

/// `s`, cut to [`MAX_NAME_BYTES`] on a character boundary.
fn truncated(s: &str) -> String {
    let mut end = s.len().min(MAX_NAME_BYTES);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (source key, value key, failed, heavy, µs into the slice).
    type Ev = (u64, u64, bool, bool, u64);

    /// A partial of one slice with `events`.
    fn partial_of(events: &[Ev]) -> Partial {
        let mut p = Partial::empty(GlobalKind::StuffingDistributed, 7, 10_000_000, 10_000_000);
        for &(src, val, failed, heavy, dt) in events {
            let t = 10_000_000 + dt;
            let one = Partial {
                first_us: t,
                last_us: t,
                service: "bank".into(),
                method: "POST".into(),
                template: "/login".into(),
                counts: Counts {
                    attempts: 1,
                    failures: u64::from(failed),
                    successes: u64::from(!failed),
                    light_attempts: u64::from(!heavy),
                    light_failures: u64::from(failed && !heavy),
                    authenticated: 0,
                },
                sources: {
                    let mut d = Distinct::default();
                    d.insert(src);
                    d
                },
                values: {
                    let mut d = Distinct::default();
                    d.insert(val);
                    d
                },
                listed: vec![(IpAddr::from([10, 0, (src >> 8) as u8, src as u8]), src)],
                base: Ewma {
                    mean: 0.1,
                    var: 0.01,
                    n: (src % 5) as u32,
                },
                ..Partial::empty(GlobalKind::StuffingDistributed, 7, t, 10_000_000)
            };
            p.merge(&one).unwrap();
        }
        p
    }

    /// The exact set (order-free) or the registers.
    fn set_of(d: &Distinct) -> DistinctParts {
        match d.to_parts() {
            DistinctParts::Exact(mut v) => {
                v.sort_unstable();
                DistinctParts::Exact(v)
            }
            regs => regs,
        }
    }

    /// Deterministic pseudo-random events and splits (xorshift), 200 cases.
    #[test]
    fn merge_of_any_split_equals_the_aggregate_of_all_events() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for case in 0..200 {
            let n = (next() % 300) as usize + 1;
            let sources = next() % 80 + 1;
            let events: Vec<Ev> = (0..n)
                .map(|_| {
                    (
                        next() % sources + 1,
                        next() % 500,
                        next() % 4 != 0,
                        next() % 7 == 0,
                        next() % 9_000_000,
                    )
                })
                .collect();
            let all = partial_of(&events);
            // Split into k parts by a random assignment, merge the parts in a random order.
            let k = (next() % 6 + 1) as usize;
            let mut parts = vec![Vec::new(); k];
            for e in &events {
                parts[(next() % k as u64) as usize].push(*e);
            }
            let mut partials: Vec<Partial> = parts.iter().map(|p| partial_of(p)).collect();
            let rot = (next() % k as u64) as usize;
            partials.rotate_left(rot);
            if next() % 2 == 0 {
                partials.reverse();
            }
            // Associativity: merge pairs first, then the pairs.
            let mut merged = partials[0].clone();
            for pair in partials[1..].chunks(2) {
                let mut m = pair[0].clone();
                if let Some(b) = pair.get(1) {
                    m.merge(b).unwrap();
                }
                merged.merge(&m).unwrap();
            }
            assert_eq!(merged.counts, all.counts, "case {case}");
            assert_eq!(merged.listed, all.listed, "case {case}");
            assert_eq!(merged.base, all.base, "case {case}");
            assert_eq!(
                (merged.first_us, merged.last_us),
                (all.first_us, all.last_us)
            );
            // The distinct sets are the same registers (or exact set), so the same counts.
            assert_eq!(merged.sources.count(), all.sources.count(), "case {case}");
            assert_eq!(merged.values.count(), all.values.count(), "case {case}");
            for (m, a) in [
                (&merged.sources, &all.sources),
                (&merged.values, &all.values),
            ] {
                assert_eq!(set_of(m), set_of(a), "case {case}");
            }
            // …and within the sketch's error of the true distinct counts.
            let true_sources = events
                .iter()
                .map(|e| e.0)
                .collect::<std::collections::HashSet<_>>()
                .len() as f64;
            let est = merged.sources.count() as f64;
            assert!(
                (est - true_sources).abs() <= 0.2 * true_sources + 1.0,
                "case {case}: {est} vs {true_sources}"
            );
        }
    }

    #[test]
    fn partials_of_other_keys_or_slices_do_not_merge() {
        let a = Partial::empty(GlobalKind::StuffingDistributed, 1, 5, 10);
        let mut b = a.clone();
        b.key = 2;
        assert_eq!(a.clone().merge(&b), Err(MergeError::Mismatch));
        let mut c = a.clone();
        c.slice_start_us = 10;
        assert_eq!(a.clone().merge(&c), Err(MergeError::Mismatch));
        let mut d = a.clone();
        d.kind = GlobalKind::CrawlingDistributed;
        assert_eq!(a.clone().merge(&d), Err(MergeError::Mismatch));
    }

    #[test]
    fn records_round_trip_and_bad_ones_are_refused() {
        let p = partial_of(
            &(0..40)
                .map(|i| (i, i * 3, i % 3 != 0, false, i))
                .collect::<Vec<_>>(),
        );
        assert!(p.sources.is_sketch());
        let bytes = p.encode().unwrap();
        assert_eq!(Partial::decode(&bytes).unwrap(), p);
        // Truncated, garbage, empty: errors, not panics.
        for n in [0, 1, bytes.len() / 2, bytes.len() - 1] {
            assert!(Partial::decode(&bytes[..n]).is_err(), "{n}");
        }
        assert!(Partial::decode(b"\xff\xfe garbage").is_err());
        // Inconsistent: a slice start that is not on the slice grid, too many sources.
        let mut bad = p.clone();
        bad.slice_start_us += 1;
        assert_eq!(
            Partial::decode(&bad.encode().unwrap()),
            Err(StateError::Corrupt)
        );
        let mut bad = p.clone();
        bad.listed = (0..17)
            .map(|i| (IpAddr::from([10, 0, 0, i as u8]), i))
            .collect();
        assert_eq!(
            Partial::decode(&bad.encode().unwrap()),
            Err(StateError::Corrupt)
        );
    }
}
