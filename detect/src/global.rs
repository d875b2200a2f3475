//! Stage 2 of two-stage processing (issue 18): the global detectors on merged partial
//! aggregates. One [`GlobalEngine`] owns a set of global keys (in the analyzer: the
//! partitions of the partials topic assigned to it); it merges every stage-1 analyzer's
//! [`Partial`]s per key into windows of slices and runs the *same* conditions, with the same
//! `[detect]` thresholds, as the single-instance detectors
//! ([`crate::detections::credential_stuffing::distributed_holds`],
//! [`crate::detections::crawling::fleet_holds`]), then raises campaigns through the same
//! [`Campaigns`] machinery: one Create per campaign, rate-limited Updates, one Close. The
//! account kinds (abnormal access `account_sharing`, brute force `distributed_on_account`)
//! run `abnormal_access::sharing_holds` and `brute_force::target_holds` the same way.
//!
//! Windows slide by slice (the single-instance windows tumble from a key's first event): a
//! window is the merged slices whose start lies within its length of the key's newest slice.
//! The stuffing long window uses buckets of 1/30 of its length. A partial older than every
//! window of its key is *late*: dropped and counted; one older than the grace but inside a
//! window is merged into its own slice and counted as late too.
//!
//! Durable state: the campaigns, as `g/c/<campaign key>` records ([`GLOBAL_PREFIX`]), with
//! the partition of the partials topic their last partial came from, restored by that
//! partition's next owner. The windows are not kept (like stage 1's): after a hand-over the
//! condition must hold again before the restored campaign gets hits.
use std::collections::{HashMap, VecDeque};

use apitap_labels::HashKey;
use foldhash::fast::RandomState;

use crate::DetectError;
use crate::campaign::Scope;
use crate::campaign::{Campaigns, MergedHit};
use crate::checkpoint::{CAMPAIGN_PREFIX, Restored, StateChanges, StateError};
use crate::config::DetectConfig;
use crate::detections::abnormal_access::{sharing_hit, sharing_holds};
use crate::detections::brute_force::{target_hit, target_holds, target_kind};
use crate::detections::crawling::{fleet_hit, fleet_holds};
use crate::detections::credential_stuffing::{
    Floors, WindowTotals, distributed_counts, distributed_hit, distributed_holds,
};
use crate::finding::{ActorKey, EndpointRef, Finding};
use crate::keys::Keyer;
use crate::partial::{GlobalKind, Partial};

/// Prefix of stage 2's state records (`g/c/<campaign key>`).
pub const GLOBAL_PREFIX: &str = "g/";

/// Buckets of the stuffing long window.
const LONG_BUCKETS: u64 = 30;

/// Counters of stage 2.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GlobalMetrics {
    /// Partials merged into a window.
    pub merged: u64,
    /// Partials older than the grace (merged into their slice) or than every window
    /// (dropped).
    pub late: u64,
    /// Of the late ones, those dropped.
    pub late_dropped: u64,
    /// Partials refused: of a kind whose detector is disabled, or of a new key beyond
    /// `limits.max_keys_per_table`.
    pub rejected: u64,
}

/// One window of merged slices (oldest first).
#[derive(Debug)]
struct Window {
    bucket_us: u64,
    span_us: u64,
    buckets: VecDeque<Partial>,
}

impl Window {
    fn new(bucket_us: u64, span_us: u64) -> Window {
        Window {
            bucket_us: bucket_us.max(1),
            span_us,
            buckets: VecDeque::new(),
        }
    }

    /// Merges `p` into its bucket; false when it is older than the window (dropped).
    fn add(&mut self, p: &Partial) -> bool {
        let start = p.slice_start_us - p.slice_start_us % self.bucket_us;
        let newest = self
            .buckets
            .back()
            .map_or(start, |b| b.slice_start_us.max(start));
        if start + self.span_us <= newest {
            return false;
        }
        match self.buckets.iter().position(|b| b.slice_start_us >= start) {
            Some(i) if self.buckets[i].slice_start_us == start => {
                self.buckets[i].merge_into_bucket(p);
            }
            at => {
                let mut b = p.clone();
                b.slice_start_us = start;
                b.slice_us = self.bucket_us;
                self.buckets.insert(at.unwrap_or(self.buckets.len()), b);
            }
        }
        while self
            .buckets
            .front()
            .is_some_and(|b| b.slice_start_us + self.span_us <= newest)
        {
            self.buckets.pop_front();
        }
        true
    }

    /// The window's merged total and the baseline of its oldest bucket (p₀).
    fn total(&self) -> Option<(Partial, crate::baseline::Ewma)> {
        let mut it = self.buckets.iter();
        let mut t = it.next()?.clone();
        let p0 = t.base;
        for b in it {
            t.merge_into_bucket(b);
        }
        Some((t, p0))
    }

    fn bytes(&self) -> usize {
        self.buckets
            .iter()
            .map(|b| {
                std::mem::size_of::<Partial>() + b.sources.heap_bytes() + b.values.heap_bytes()
            })
            .sum()
    }
}

/// One global key's windows.
#[derive(Debug)]
struct KeyState {
    kind: GlobalKind,
    short: Window,
    long: Option<Window>,
    /// The key is in an open campaign until then.
    hot_until: u64,
    last_us: u64,
}

/// The stage-2 engine.
#[derive(Debug)]
pub struct GlobalEngine {
    cfg: DetectConfig,
    keyer: Keyer,
    slice_us: u64,
    grace_us: u64,
    quiet_us: u64,
    keys: HashMap<u64, KeyState, RandomState>,
    campaigns: Campaigns,
    /// Newest slice start merged (the stage's watermark).
    watermark_us: u64,
    now_us: u64,
    metrics: GlobalMetrics,
}

impl GlobalEngine {
    /// A stage-2 engine with the site's hash key (the stage-1 engines' key: the partials'
    /// keys are campaign keys), partials of `slice_secs`, late after `grace_secs`.
    pub fn new(
        cfg: DetectConfig,
        key: &HashKey,
        slice_secs: u64,
        grace_secs: u64,
    ) -> Result<GlobalEngine, DetectError> {
        cfg.validate()?;
        if slice_secs == 0 || slice_secs > cfg.credential_stuffing.window_secs {
            return Err(DetectError::config(
                "scale_out.slice_secs",
                "must be > 0 and at most credential_stuffing.window_secs",
            ));
        }
        Ok(GlobalEngine {
            keyer: Keyer::new(key),
            slice_us: slice_secs * 1_000_000,
            grace_us: grace_secs.saturating_mul(1_000_000),
            quiet_us: cfg.lifecycle.quiet_secs.saturating_mul(1_000_000),
            keys: HashMap::with_hasher(RandomState::default()),
            campaigns: Campaigns::new(cfg.lifecycle.clone(), &cfg.limits),
            watermark_us: 0,
            now_us: 0,
            metrics: GlobalMetrics::default(),
            cfg,
        })
    }

    /// Merges one partial (from the partials topic's `partition`, when on a bus) and runs
    /// its detector's condition on the key's windows.
    pub fn merge(&mut self, p: &Partial, partition: Option<i32>) {
        let enabled = match p.kind {
            GlobalKind::StuffingDistributed => self.cfg.credential_stuffing.enabled,
            GlobalKind::CrawlingDistributed => self.cfg.crawling.enabled,
            GlobalKind::AccountSharing => self.cfg.abnormal_access.enabled,
            GlobalKind::BruteForceOnAccount => self.cfg.brute_force.enabled,
        };
        if !enabled
            || (!self.keys.contains_key(&p.key)
                && self.keys.len() >= self.cfg.limits.max_keys_per_table)
        {
            self.metrics.rejected += 1;
            return;
        }
        if p.slice_start_us + p.slice_us + self.grace_us + self.slice_us <= self.watermark_us {
            self.metrics.late += 1;
        }
        let c = &self.cfg.credential_stuffing;
        let slice_us = self.slice_us;
        let k = self.keys.entry(p.key).or_insert_with(|| {
            let (short, long) = match p.kind {
                GlobalKind::StuffingDistributed => {
                    let long_us = c.distributed_long_window_secs * 1_000_000;
                    (
                        Window::new(slice_us, c.window_secs * 1_000_000),
                        (long_us > 0)
                            .then(|| Window::new((long_us / LONG_BUCKETS).max(slice_us), long_us)),
                    )
                }
                GlobalKind::CrawlingDistributed => (
                    Window::new(slice_us, self.cfg.crawling.window_secs * 1_000_000),
                    None,
                ),
                GlobalKind::AccountSharing => (
                    Window::new(slice_us, self.cfg.abnormal_access.window_secs * 1_000_000),
                    None,
                ),
                GlobalKind::BruteForceOnAccount => (
                    Window::new(slice_us, self.cfg.brute_force.window_secs * 1_000_000),
                    None,
                ),
            };
            KeyState {
                kind: p.kind,
                short,
                long,
                hot_until: 0,
                last_us: 0,
            }
        });
        if k.kind != p.kind {
            // Another kind under the same key: a key collision or a forged record.
            self.metrics.rejected += 1;
            return;
        }
        let in_short = k.short.add(p);
        let in_long = k.long.as_mut().is_some_and(|w| w.add(p));
        if !in_short && !in_long {
            self.metrics.late_dropped += 1;
            self.metrics.late += u64::from(
                p.slice_start_us + p.slice_us + self.grace_us + self.slice_us > self.watermark_us,
            );
            return;
        }
        self.metrics.merged += 1;
        self.watermark_us = self.watermark_us.max(p.slice_start_us);
        self.now_us = self.now_us.max(p.last_us);
        k.last_us = k.last_us.max(p.last_us);
        self.campaigns.set_partition(partition);
        match p.kind {
            GlobalKind::StuffingDistributed => self.stuffing(p),
            GlobalKind::CrawlingDistributed => self.crawling(p),
            GlobalKind::AccountSharing | GlobalKind::BruteForceOnAccount => self.account(p),
        }
    }

    /// The account kinds: the single-instance condition on the merged window
    /// ([`sharing_holds`], [`target_holds`] with [`target_kind`]); the campaign's actor is
    /// the account alone, as one engine names it.
    fn account(&mut self, p: &Partial) {
        let Some(k) = self.keys.get_mut(&p.key) else {
            return;
        };
        let Some((t, _)) = k.short.total() else {
            return;
        };
        let sources = t.sources.count();
        let (holds, counts, actor_kind) = match p.kind {
            GlobalKind::AccountSharing => {
                let addresses = t.values.count();
                (
                    sharing_holds(&self.cfg.abnormal_access, addresses),
                    [
                        ("requests", t.counts.attempts),
                        ("distinct_addresses", addresses),
                        ("distinct_sources", sources),
                    ],
                    "account",
                )
            }
            _ => (
                target_holds(&self.cfg.brute_force, t.counts.failures),
                [
                    ("attempts", t.counts.attempts),
                    ("failures_on_user", t.counts.failures),
                    ("distinct_sources", sources),
                ],
                "login_user",
            ),
        };
        if holds {
            k.hot_until = p.last_us + self.quiet_us;
        }
        if !(holds || k.hot_until >= p.last_us) {
            return;
        }
        let h = match p.kind {
            GlobalKind::AccountSharing => sharing_hit(&counts),
            _ => match target_kind(sources) {
                // One or two sources: the source's own campaign, raised by stage 1.
                (kind, Scope::LoginUser) => target_hit(kind, Scope::LoginUser, &counts),
                _ => return,
            },
        };
        self.campaigns.hit_merged(&MergedHit {
            hit: &h,
            key: p.key,
            now: p.last_us,
            actor: vec![ActorKey {
                kind: actor_kind,
                value: p.account.clone(),
            }],
            endpoint: EndpointRef {
                service: p.service.clone(),
                method: p.method.clone(),
                template: p.template.clone(),
            },
            sources: &p.listed,
            source_set: &p.sources,
            events: p.counts.attempts,
        });
    }

    fn stuffing(&mut self, p: &Partial) {
        let c = &self.cfg.credential_stuffing;
        let Some(k) = self.keys.get_mut(&p.key) else {
            return;
        };
        let floors = [Floors::short(c), Floors::long(c)];
        let windows = [Some(&k.short), k.long.as_ref()];
        let mut hit = None;
        for (floors, w) in floors.iter().zip(windows) {
            let Some((t, p0)) = w.and_then(Window::total) else {
                continue;
            };
            let totals = WindowTotals {
                attempts: t.counts.attempts,
                light_attempts: t.counts.light_attempts,
                light_failures: t.counts.light_failures,
                sources: t.sources.count(),
                usernames: t.values.count(),
                base: t.base,
                p0,
            };
            let (holds, fail_ratio) = distributed_holds(c, &self.cfg.baseline, floors, &totals);
            if holds {
                k.hot_until = k.hot_until.max(p.last_us + floors.hot_for(self.quiet_us));
            }
            // The campaign's events are the failures (stage 1 does not tell a catch from an
            // ordinary login: successes are counted, not sampled).
            if (holds || k.hot_until >= p.last_us) && p.counts.failures > 0 && hit.is_none() {
                let counts = distributed_counts(
                    floors,
                    [
                        t.counts.attempts,
                        t.counts.failures,
                        t.counts.successes,
                        totals.usernames,
                        totals.sources,
                    ],
                    fail_ratio,
                    t.base,
                );
                hit = Some((counts, t.counts.successes > 0));
            }
        }
        if let Some((counts, success)) = hit {
            let h = distributed_hit(&counts, success);
            self.campaigns.hit_merged(&MergedHit {
                hit: &h,
                key: p.key,
                now: p.last_us,
                actor: vec![ActorKey {
                    kind: "scope",
                    value: "distributed".into(),
                }],
                endpoint: EndpointRef {
                    service: p.service.clone(),
                    method: p.method.clone(),
                    template: p.template.clone(),
                },
                sources: &p.listed,
                source_set: &p.sources,
                events: p.counts.failures,
            });
        }
    }

    fn crawling(&mut self, p: &Partial) {
        let Some(k) = self.keys.get_mut(&p.key) else {
            return;
        };
        let Some((t, _)) = k.short.total() else {
            return;
        };
        let sources = t.sources.count();
        let paths = t.values.count();
        let holds = fleet_holds(
            &self.cfg.crawling,
            [sources, t.counts.attempts, paths, t.counts.authenticated],
            t.thr_requests,
            t.thr_paths,
        );
        if holds {
            k.hot_until = p.last_us + self.quiet_us;
        }
        if !(holds || k.hot_until >= p.last_us) {
            return;
        }
        let counts = [
            ("requests", t.counts.attempts),
            ("distinct_paths", paths),
            ("distinct_sources", sources),
        ];
        let h = fleet_hit(&counts);
        self.campaigns.hit_merged(&MergedHit {
            hit: &h,
            key: p.key,
            now: p.last_us,
            actor: vec![
                ActorKey {
                    kind: "fingerprint",
                    value: format!("{:016x}", p.fingerprint),
                },
                ActorKey {
                    kind: "user_agent_family",
                    value: p.ua_family.clone(),
                },
            ],
            endpoint: EndpointRef {
                service: p.service.clone(),
                method: "*".into(),
                template: "*".into(),
            },
            sources: &p.listed,
            source_set: &p.sources,
            events: p.counts.attempts,
        });
    }

    /// Campaign transitions due at `now_us` (event time: the partials' latest event, or the
    /// stage-1 stream time); also forgets keys idle for longer than their windows.
    pub fn tick(&mut self, now_us: u64) -> Vec<Finding> {
        self.now_us = self.now_us.max(now_us);
        let now = self.now_us;
        self.keys.retain(|_, k| {
            let span = k
                .long
                .as_ref()
                .map_or(k.short.span_us, |w| w.span_us.max(k.short.span_us));
            k.last_us.max(k.hot_until) + span > now
        });
        self.campaigns.tick(now)
    }

    /// End of input: every open campaign is reported and closed.
    pub fn finish(&mut self) -> Vec<Finding> {
        self.campaigns.close_all(self.now_us)
    }

    /// Latest event time merged.
    pub fn now_us(&self) -> u64 {
        self.now_us
    }

    /// Counters.
    pub fn metrics(&self) -> GlobalMetrics {
        self.metrics
    }

    /// Open campaigns.
    pub fn open_campaigns(&self) -> usize {
        self.campaigns.len()
    }

    /// Global keys held.
    pub fn keys(&self) -> usize {
        self.keys.len()
    }

    /// Bytes of state held (windows and campaigns).
    pub fn state_bytes(&self) -> usize {
        self.keys
            .values()
            .map(|k| k.short.bytes() + k.long.as_ref().map_or(0, Window::bytes))
            .sum::<usize>()
            + self.campaigns.bytes()
    }

    /// The campaign records changed since the last call (`g/c/…`, deletes of closed ones).
    pub fn checkpoint(&mut self) -> StateChanges {
        let mut out = StateChanges::default();
        self.campaigns.checkpoint(&mut out);
        for (k, _) in &mut out.put {
            k.insert_str(0, GLOBAL_PREFIX);
        }
        for k in &mut out.delete {
            k.insert_str(0, GLOBAL_PREFIX);
        }
        out
    }

    /// Restores one `g/…` record (others are [`Restored::UnknownKey`]): a campaign whose
    /// last partial came from a partition `owned` accepts and that is not open here.
    pub fn restore(
        &mut self,
        key: &str,
        value: &[u8],
        owned: &dyn Fn(Option<i32>) -> bool,
    ) -> Result<Restored, StateError> {
        match key
            .strip_prefix(GLOBAL_PREFIX)
            .and_then(|k| k.strip_prefix(CAMPAIGN_PREFIX))
        {
            Some(k) => self.campaigns.restore(k, value, owned),
            None => Ok(Restored::UnknownKey),
        }
    }

    /// The records of `changes` were not stored: they are part of the next checkpoint.
    pub fn checkpoint_failed(&mut self, changes: &StateChanges) {
        let plain = StateChanges {
            delete: (changes.delete.iter())
                .filter_map(|k| Some(k.strip_prefix(GLOBAL_PREFIX)?.to_owned()))
                .collect(),
            ..StateChanges::default()
        };
        self.campaigns.checkpoint_failed(&plain);
    }

    /// Forgets, without a Close, the campaigns last merged from `partitions` of the partials
    /// topic (revoked), and the windows (the new owner rebuilds them). Returns how many
    /// campaigns.
    pub fn forget_partitions(&mut self, partitions: &[i32]) -> usize {
        self.keys.clear();
        self.campaigns.forget_partitions(partitions)
    }

    /// The keyed hasher.
    pub fn keyer(&self) -> &Keyer {
        &self.keyer
    }
}
