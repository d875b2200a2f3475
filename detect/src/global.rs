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
//! Per-endpoint baselines: the login endpoints' failure-ratio baseline, the one baseline a
//! detector reads, is learnt here from the merged partials of every member (one owner per
//! endpoint), and the distributed stuffing condition reads it once learnt.
//!
//! Durable state: the campaigns, as `g/c/<campaign key>` records ([`GLOBAL_PREFIX`]), with
//! the partition of the partials topic their last partial came from, restored by that
//! partition's next owner; and the windows, one `g/w/<key>/<window>/<bucket start>` record per
//! bucket merged into since the last checkpoint (a merged partial, bounded like one; dropped
//! buckets are deleted), so that after a hand-over mid-window the condition holds when it
//! would have without one; the endpoint baselines (`g/b/<stuffing key>`, when changed); and,
//! last in each checkpoint's batch, the position reached on
//! every partials partition (`g/o/<partition>`): a partial below it is in the records already,
//! so its redelivery (its offset was not committed when the partition moved or the analyzer
//! stopped) is skipped and counted ([`GlobalEngine::first_delivery`]) — every partial's
//! effects are in stage 2's state once.
use std::collections::{BTreeMap, HashMap, VecDeque};

use apitap_labels::HashKey;
use foldhash::fast::RandomState;

use crate::DetectError;
use crate::baseline::{Ewma, hour_of_week};
use crate::campaign::Scope;
use crate::campaign::{Campaigns, MergedHit};
use crate::checkpoint::{self, CAMPAIGN_PREFIX, Restored, StateChanges, StateError};
use crate::config::{BaselineConfig, DetectConfig};
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
    /// Window buckets restored from `g/w/…` records.
    pub window_buckets_restored: u64,
    /// Partials read again (after a rebalance or a restart) whose effects the state held
    /// already: skipped ([`GlobalEngine::first_delivery`]).
    pub redelivered: u64,
    /// Partials-topic positions restored from `g/o/…` records.
    pub positions_restored: u64,
    /// Login endpoints whose stage-2 baseline was not kept (beyond `limits.max_endpoints`).
    pub baselines_dropped: u64,
    /// Window bucket records not written (over the record size limit; cannot happen: a
    /// bucket's lists and names are bounded).
    pub window_records_unwritten: u64,
    /// Deletes of dropped window buckets not recorded (more than 65 536 pending).
    pub window_tombstones_dropped: u64,
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
    /// Starts of the buckets changed since the last checkpoint.
    dirty: Vec<u64>,
    /// Starts of the buckets dropped since the last checkpoint (their records are deleted).
    evicted: Vec<u64>,
}

impl Window {
    fn new(bucket_us: u64, span_us: u64) -> Window {
        Window {
            bucket_us: bucket_us.max(1),
            span_us,
            buckets: VecDeque::new(),
            dirty: Vec::new(),
            evicted: Vec::new(),
        }
    }

    fn touch(&mut self, start: u64) {
        if !self.dirty.contains(&start) {
            self.dirty.push(start);
        }
    }

    /// Drops the buckets older than the window of the newest.
    fn trim(&mut self, newest: u64) {
        while self
            .buckets
            .front()
            .is_some_and(|b| b.slice_start_us + self.span_us <= newest)
        {
            if let Some(b) = self.buckets.pop_front() {
                self.dirty.retain(|s| *s != b.slice_start_us);
                self.evicted.push(b.slice_start_us);
            }
        }
    }

    /// Puts a checkpointed bucket back (replacing the one of its start); false when it is
    /// not on this window's grid or older than the window.
    fn put(&mut self, b: Partial) -> bool {
        if b.slice_us != self.bucket_us || !b.slice_start_us.is_multiple_of(self.bucket_us) {
            return false;
        }
        let start = b.slice_start_us;
        let newest = self
            .buckets
            .back()
            .map_or(start, |x| x.slice_start_us.max(start));
        if start + self.span_us <= newest {
            self.evicted.push(start);
            return false;
        }
        match self.buckets.iter().position(|x| x.slice_start_us >= start) {
            Some(i) if self.buckets[i].slice_start_us == start => self.buckets[i] = b,
            at => self.buckets.insert(at.unwrap_or(self.buckets.len()), b),
        }
        self.trim(newest);
        true
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
        self.touch(start);
        self.trim(newest);
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
    /// Partition of the partials topic its last partial came from (its owner restores it).
    partition: Option<i32>,
    /// Created by a restore pass not finished yet ([`GlobalEngine::restore_done`]).
    restoring: bool,
}

impl KeyState {
    fn windows_mut(&mut self) -> impl Iterator<Item = (u8, &mut Window)> {
        std::iter::once((0, &mut self.short)).chain(self.long.as_mut().map(|w| (1, w)))
    }
}

/// A checkpointed bucket of a stage-2 window (`g/w/<key>/<window>/<bucket start>`): the
/// merged partials of one bucket, as held, with its key's state.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct WindowRecord {
    partition: Option<i32>,
    hot_until: u64,
    last_us: u64,
    bucket: Partial,
}

/// Prefix of the window records under [`GLOBAL_PREFIX`].
const WINDOW_PREFIX: &str = "w/";

/// Prefix of the position records under [`GLOBAL_PREFIX`] (`g/o/<partition>`).
const POSITION_PREFIX: &str = "o/";

/// Prefix of the endpoint baseline records under [`GLOBAL_PREFIX`] (`g/b/<stuffing key>`).
const RATIO_PREFIX: &str = "b/";

/// Baseline buckets of one endpoint waiting for late partials at most (beyond, the oldest
/// is folded early).
const MAX_OPEN_BUCKETS: usize = 16;

/// A login endpoint idle this long loses its stage-2 baseline (as in one engine).
const RATIO_IDLE_US: u64 = 7 * 86_400 * 1_000_000;

/// One baseline bucket of an endpoint still open in stage 2.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct OpenBucket {
    start_us: u64,
    attempts: u64,
    failures: u64,
    poisoned: bool,
}

/// Stage 2's failure-ratio baseline of one login endpoint (the stuffing key), R-THR-5: the
/// one baseline a detector reads (credential stuffing's adaptive ratio threshold and the long
/// window's p₀), learnt like one engine's ([`crate::baseline`]: per `baseline.bucket_secs`,
/// robust EWMA, overall and per hour of the week, attack buckets not learnt) but from the
/// merged partials of **every** member, by the endpoint's one owner — no member's partial
/// view, no last-writer-wins. A bucket is folded once stage 2's watermark is past its end
/// plus the grace (its late partials had their chance); a bucket is poisoned when stage 1
/// marked its events (a detection on the endpoint) or stage 2's own campaign hit in it.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RatioBaseline {
    overall: Ewma,
    /// Per hour of the week (168) with `baseline.hour_of_week`, else empty.
    hours: Vec<Ewma>,
    /// Buckets starting before this are folded.
    folded_to_us: u64,
    /// Buckets not folded yet, oldest first.
    open: Vec<OpenBucket>,
    /// Partition of the partials topic its key's partials come from.
    partition: Option<i32>,
    /// Latest event merged.
    last_us: u64,
}

impl RatioBaseline {
    fn bucket(&mut self, start: u64) -> Option<&mut OpenBucket> {
        if start < self.folded_to_us {
            return None;
        }
        let i = match self.open.binary_search_by_key(&start, |b| b.start_us) {
            Ok(i) => i,
            Err(i) => {
                self.open.insert(
                    i,
                    OpenBucket {
                        start_us: start,
                        attempts: 0,
                        failures: 0,
                        poisoned: false,
                    },
                );
                i
            }
        };
        Some(&mut self.open[i])
    }

    /// Folds the buckets that end at or before `complete_us` (and the oldest beyond
    /// [`MAX_OPEN_BUCKETS`]), in order. True when something was folded.
    fn fold(&mut self, complete_us: u64, bucket_us: u64, cfg: &BaselineConfig) -> bool {
        let mut folded = false;
        while let Some(b) = self.open.first().copied() {
            if b.start_us + bucket_us > complete_us && self.open.len() <= MAX_OPEN_BUCKETS {
                break;
            }
            self.open.remove(0);
            self.folded_to_us = b.start_us + bucket_us;
            folded = true;
            if b.poisoned || b.attempts == 0 {
                continue;
            }
            let x = b.failures as f64 / b.attempts as f64;
            self.overall
                .update_robust(x, cfg.alpha, cfg.sigmas, cfg.min_samples);
            if cfg.hour_of_week {
                if self.hours.len() != 168 {
                    self.hours = vec![Ewma::default(); 168];
                }
                if let Some(h) = self.hours.get_mut(hour_of_week(b.start_us)) {
                    h.update_robust(x, cfg.alpha, cfg.sigmas, cfg.min_samples);
                }
            }
        }
        folded
    }

    /// The baseline at `now`: its hour-of-week slot when learnt, else the overall one.
    fn get(&self, now: u64, min_samples: u32) -> Ewma {
        match self.hours.get(hour_of_week(now)) {
            Some(h) if h.n >= min_samples => *h,
            _ => self.overall,
        }
    }

    fn validate(&self) -> Result<(), StateError> {
        let finite = |e: &Ewma| e.mean.is_finite() && e.var.is_finite();
        if !(self.hours.is_empty() || self.hours.len() == 168)
            || self.open.len() > MAX_OPEN_BUCKETS + 1
            || !finite(&self.overall)
            || !self.hours.iter().all(finite)
            || !self.open.windows(2).all(|w| w[0].start_us < w[1].start_us)
        {
            return Err(StateError::Corrupt);
        }
        Ok(())
    }
}

/// How far stage 2's state has taken one partition of the partials topic
/// (`g/o/<partition>`): every partial below `next_offset` is in the records written with it.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PositionRecord {
    partition: i32,
    next_offset: i64,
}

/// Deletes of dropped window buckets held between two checkpoints at most.
const MAX_WINDOW_TOMBSTONES: usize = 65_536;

/// Records a delete unless [`MAX_WINDOW_TOMBSTONES`] are pending (then counted).
fn tombstone(list: &mut Vec<String>, dropped: &mut u64, k: String) {
    if list.len() < MAX_WINDOW_TOMBSTONES {
        list.push(k);
    } else {
        *dropped += 1;
    }
}

fn window_key(key: u64, w: u8, start: u64) -> String {
    format!("{GLOBAL_PREFIX}{WINDOW_PREFIX}{key:016x}/{w}/{start:016x}")
}

fn ratio_key(key: u64) -> String {
    format!("{GLOBAL_PREFIX}{RATIO_PREFIX}{key:016x}")
}

fn position_key(partition: i32) -> String {
    format!("{GLOBAL_PREFIX}{POSITION_PREFIX}{partition}")
}

/// (global key, window, bucket start) of a window record's key (after `g/w/`).
fn parse_window_key(k: &str) -> Option<(u64, u8, u64)> {
    let mut it = k.split('/');
    let key = u64::from_str_radix(it.next()?, 16).ok()?;
    let w = it.next()?.parse::<u8>().ok().filter(|w| *w <= 1)?;
    let start = u64::from_str_radix(it.next()?, 16).ok()?;
    it.next().is_none().then_some((key, w, start))
}

/// The windows of a new key of `kind`.
fn new_key(
    cfg: &DetectConfig,
    slice_us: u64,
    kind: GlobalKind,
    partition: Option<i32>,
) -> KeyState {
    let c = &cfg.credential_stuffing;

    let (short, long) = match kind {
        GlobalKind::StuffingDistributed => {
            let long_us = c.distributed_long_window_secs * 1_000_000;
            (
                Window::new(slice_us, c.window_secs * 1_000_000),
                (long_us > 0).then(|| Window::new((long_us / LONG_BUCKETS).max(slice_us), long_us)),
            )
        }
        GlobalKind::CrawlingDistributed => (
            Window::new(slice_us, cfg.crawling.window_secs * 1_000_000),
            None,
        ),
        GlobalKind::AccountSharing => (
            Window::new(slice_us, cfg.abnormal_access.window_secs * 1_000_000),
            None,
        ),
        GlobalKind::BruteForceOnAccount => (
            Window::new(slice_us, cfg.brute_force.window_secs * 1_000_000),
            None,
        ),
    };
    KeyState {
        kind,
        short,
        long,
        hot_until: 0,
        last_us: 0,
        partition,
        restoring: false,
    }
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
    /// Deletes of the records of forgotten keys' buckets, until the next checkpoint.
    window_tombstones: Vec<String>,
    /// Per partition of the partials topic owned: the offset after the last partial whose
    /// effects are held (merged here, or in the state restored with a `g/o/…` record).
    positions: BTreeMap<i32, i64>,
    /// A position moved since the last checkpoint.
    positions_dirty: bool,
    /// Failure-ratio baselines of the login endpoints owned, by stuffing key, and whether
    /// each changed since the last checkpoint.
    ratios: HashMap<u64, (RatioBaseline, bool), RandomState>,
    /// Their bucket length: `baseline.bucket_secs` rounded up to whole slices.
    ratio_bucket_us: u64,
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
        // A window holds whole slices: the slice is at most the shortest window of stage 2.
        let shortest = [
            cfg.credential_stuffing.window_secs,
            cfg.crawling.window_secs,
            cfg.abnormal_access.window_secs,
            cfg.brute_force.window_secs,
        ]
        .into_iter()
        .min()
        .unwrap_or(0);
        if slice_secs == 0 || slice_secs > shortest {
            return Err(DetectError::config(
                "scale_out.slice_secs",
                "must be > 0 and at most the shortest window of credential_stuffing, crawling, abnormal_access and brute_force (window_secs)",
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
            window_tombstones: Vec::new(),
            positions: BTreeMap::new(),
            positions_dirty: false,
            ratios: HashMap::with_hasher(RandomState::default()),
            ratio_bucket_us: (cfg.baseline.bucket_secs * 1_000_000)
                .div_ceil(slice_secs * 1_000_000)
                .max(1)
                * slice_secs
                * 1_000_000,
            cfg,
        })
    }

    /// Whether the record at `offset` of the partials topic's `partition` is read for the
    /// first time by the state held (then its position is taken: call before merging it,
    /// whatever the record holds). False for a redelivery — a partial merged before the
    /// last checkpoint and read again because its offset was not committed when the
    /// partition moved or the analyzer stopped: its effects are in the restored windows,
    /// merging it again would count its events twice. This is the Kafka Streams way of
    /// exactly-once state: the position is checkpointed with the state it produced, in the
    /// same ordered batch ([`GlobalEngine::checkpoint`]).
    pub fn first_delivery(&mut self, partition: i32, offset: i64) -> bool {
        if self
            .positions
            .get(&partition)
            .is_some_and(|next| offset < *next)
        {
            self.metrics.redelivered += 1;
            return false;
        }
        self.positions.insert(partition, offset.saturating_add(1));
        self.positions_dirty = true;
        true
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
        let (cfg, slice_us) = (&self.cfg, self.slice_us);
        let k =
            (self.keys.entry(p.key)).or_insert_with(|| new_key(cfg, slice_us, p.kind, partition));
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
        k.partition = partition.or(k.partition);
        self.campaigns.set_partition(partition);
        match p.kind {
            GlobalKind::StuffingDistributed => self.stuffing(p, partition),
            GlobalKind::CrawlingDistributed => self.crawling(p),
            GlobalKind::AccountSharing | GlobalKind::BruteForceOnAccount => self.account(p),
        }
    }

    /// The merged short window of `key`; `None` when the key is not held or its window is
    /// empty.
    fn short_total(&self, key: u64) -> Option<Partial> {
        self.keys.get(&key)?.short.total().map(|(t, _)| t)
    }

    /// Keeps `key` hot for the quiet time while its condition `holds`; whether it is hot at
    /// `now_us` (a campaign goes on getting hits until it has been quiet that long).
    fn keep_hot(&mut self, key: u64, holds: bool, now_us: u64) -> bool {
        let Some(k) = self.keys.get_mut(&key) else {
            return false;
        };
        if holds {
            k.hot_until = now_us + self.quiet_us;
        }
        holds || k.hot_until >= now_us
    }

    /// The account kinds: the single-instance condition on the merged window
    /// ([`sharing_holds`], [`target_holds`] with [`target_kind`]); the campaign's actor is
    /// the account alone, as one engine names it.
    fn account(&mut self, p: &Partial) {
        let Some(t) = self.short_total(p.key) else {
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
        if !self.keep_hot(p.key, holds, p.last_us) {
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
            endpoint: endpoint_of(p),
            sources: &p.listed,
            source_set: &p.sources,
            events: p.counts.attempts,
        });
    }

    /// Folds `p` into its endpoint's failure-ratio baseline and returns the baseline as
    /// learnt (`None` beyond `limits.max_endpoints` baselines: counted).
    fn learn_ratio(&mut self, p: &Partial, partition: Option<i32>) -> Option<Ewma> {
        if !self.ratios.contains_key(&p.key) && self.ratios.len() >= self.cfg.limits.max_endpoints {
            self.metrics.baselines_dropped += 1;
            return None;
        }
        let bucket_us = self.ratio_bucket_us;
        let (r, dirty) = self.ratios.entry(p.key).or_default();
        r.partition = partition.or(r.partition);
        r.last_us = r.last_us.max(p.last_us);
        if let Some(b) = r.bucket(p.slice_start_us - p.slice_start_us % bucket_us) {
            b.attempts = b.attempts.saturating_add(p.counts.attempts);
            b.failures = b.failures.saturating_add(p.counts.failures);
            b.poisoned |= p.poisoned;
        }
        // A bucket is complete once the watermark is past its end plus the grace.
        let complete = self.watermark_us.saturating_sub(self.grace_us);
        r.fold(complete, bucket_us, &self.cfg.baseline);
        *dirty = true;
        Some(r.get(p.last_us, self.cfg.baseline.min_samples))
    }

    /// Distributed stuffing: the single-instance condition on the merged windows, with the
    /// endpoint's baseline learnt here once it has `baseline.min_samples` (before that,
    /// stage 1's most-learnt one, e.g. right after scale-out was turned on).
    fn stuffing(&mut self, p: &Partial, partition: Option<i32>) {
        let own = self
            .learn_ratio(p, partition)
            .filter(|b| b.n >= self.cfg.baseline.min_samples);
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
            let base = own.unwrap_or(t.base);
            let totals = WindowTotals {
                attempts: t.counts.attempts,
                light_attempts: t.counts.light_attempts,
                light_failures: t.counts.light_failures,
                sources: t.sources.count(),
                usernames: t.values.count(),
                base,
                // Not learnt while the campaign hits: the baseline is the one before it.
                p0: own.unwrap_or(p0),
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
                    base,
                );
                hit = Some((counts, t.counts.successes > 0));
            }
        }
        if let Some((counts, success)) = hit {
            // The attack's bucket is not learnt (no baseline poisoning by the campaign).
            let bucket_us = self.ratio_bucket_us;
            if let Some((r, _)) = self.ratios.get_mut(&p.key)
                && let Some(b) = r.bucket(p.slice_start_us - p.slice_start_us % bucket_us)
            {
                b.poisoned = true;
            }
            let h = distributed_hit(&counts, success);
            self.campaigns.hit_merged(&MergedHit {
                hit: &h,
                key: p.key,
                now: p.last_us,
                actor: vec![ActorKey {
                    kind: "scope",
                    value: "distributed".into(),
                }],
                endpoint: endpoint_of(p),
                sources: &p.listed,
                source_set: &p.sources,
                events: p.counts.failures,
            });
        }
    }

    fn crawling(&mut self, p: &Partial) {
        let Some(t) = self.short_total(p.key) else {
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
        if !self.keep_hot(p.key, holds, p.last_us) {
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
        let tombstones = &mut self.window_tombstones;
        let dropped = &mut self.metrics.window_tombstones_dropped;
        self.keys.retain(|key, k| {
            let span = k
                .long
                .as_ref()
                .map_or(k.short.span_us, |w| w.span_us.max(k.short.span_us));
            let keep = k.last_us.max(k.hot_until) + span > now;
            if !keep {
                // Its records go with it.
                for (i, w) in k.windows_mut() {
                    for b in &w.buckets {
                        tombstone(tombstones, dropped, window_key(*key, i, b.slice_start_us));
                    }
                    for start in w.evicted.drain(..) {
                        tombstone(tombstones, dropped, window_key(*key, i, start));
                    }
                }
            }
            keep
        });
        // Endpoints idle for a week lose their baseline (as in one engine).
        self.ratios.retain(|key, (r, _)| {
            let keep = r.last_us + RATIO_IDLE_US > now;
            if !keep {
                tombstone(tombstones, dropped, ratio_key(*key));
            }
            keep
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

    /// Login endpoints with a stage-2 failure-ratio baseline, and their samples (sum).
    pub fn baselines(&self) -> (usize, u64) {
        let samples = (self.ratios.values())
            .map(|(r, _)| u64::from(r.overall.n))
            .sum();
        (self.ratios.len(), samples)
    }

    /// The failure-ratio baseline learnt for the stuffing key `key` (overall).
    pub fn ratio_baseline(&self, key: u64) -> Option<Ewma> {
        self.ratios.get(&key).map(|(r, _)| r.overall)
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
            + (self.ratios.values())
                .map(|(r, _)| {
                    std::mem::size_of::<(u64, RatioBaseline, bool)>()
                        + r.hours.len() * std::mem::size_of::<Ewma>()
                        + r.open.len() * std::mem::size_of::<OpenBucket>()
                })
                .sum::<usize>()
            + self.campaigns.bytes()
    }

    /// The records changed since the last call: campaigns (`g/c/…`, deletes of closed
    /// ones) and the window buckets merged into (`g/w/<key>/<window>/<bucket start>`, one
    /// bounded record each: a bucket is one merged partial), deletes of dropped buckets.
    pub fn checkpoint(&mut self) -> StateChanges {
        let mut out = StateChanges::default();
        self.campaigns.checkpoint(&mut out);
        for (k, _) in &mut out.put {
            k.insert_str(0, GLOBAL_PREFIX);
        }
        for k in &mut out.delete {
            k.insert_str(0, GLOBAL_PREFIX);
        }
        out.delete.append(&mut self.window_tombstones);
        for (key, k) in &mut self.keys {
            let (partition, hot_until, last_us) = (k.partition, k.hot_until, k.last_us);
            for (i, w) in k.windows_mut() {
                for start in w.evicted.drain(..) {
                    out.delete.push(window_key(*key, i, start));
                }
                for start in w.dirty.drain(..) {
                    let Some(b) = w.buckets.iter().find(|b| b.slice_start_us == start) else {
                        continue;
                    };
                    let rec = WindowRecord {
                        partition,
                        hot_until,
                        last_us,
                        bucket: b.clone(),
                    };
                    match checkpoint::encode(&rec) {
                        Some(v) => out.put.push((window_key(*key, i, start), v)),
                        None => self.metrics.window_records_unwritten += 1,
                    }
                }
            }
        }
        for (key, (r, dirty)) in &mut self.ratios {
            if std::mem::take(dirty)
                && let Some(v) = checkpoint::encode(&*r)
            {
                out.put.push((ratio_key(*key), v));
            }
        }
        // Last in the batch: the state topic is one partition written by an idempotent
        // producer, so a position on the topic means the records before it are there too.
        if std::mem::take(&mut self.positions_dirty) {
            for (partition, next_offset) in &self.positions {
                let rec = PositionRecord {
                    partition: *partition,
                    next_offset: *next_offset,
                };
                if let Some(v) = checkpoint::encode(&rec) {
                    out.put.push((position_key(*partition), v));
                }
            }
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
        let Some(k) = key.strip_prefix(GLOBAL_PREFIX) else {
            return Ok(Restored::UnknownKey);
        };
        if let Some(k) = k.strip_prefix(CAMPAIGN_PREFIX) {
            return self.campaigns.restore(k, value, owned);
        }
        if let Some(k) = k.strip_prefix(POSITION_PREFIX) {
            return self.restore_position(k, value, owned);
        }
        if let Some(k) = k.strip_prefix(RATIO_PREFIX) {
            return self.restore_ratio(k, value, owned);
        }
        match k.strip_prefix(WINDOW_PREFIX) {
            Some(k) => self.restore_window(k, value, owned),
            None => Ok(Restored::UnknownKey),
        }
    }

    /// An endpoint baseline record: taken when its partition is owned and the endpoint's
    /// baseline is not learnt live here.
    fn restore_ratio(
        &mut self,
        k: &str,
        value: &[u8],
        owned: &dyn Fn(Option<i32>) -> bool,
    ) -> Result<Restored, StateError> {
        let key = u64::from_str_radix(k, 16).map_err(|_| StateError::Corrupt)?;
        let r: RatioBaseline = checkpoint::decode(value)?;
        r.validate()?;
        if !owned(r.partition) || self.ratios.contains_key(&key) {
            return Ok(Restored::BaselineSkipped);
        }
        if self.ratios.len() >= self.cfg.limits.max_endpoints {
            self.metrics.baselines_dropped += 1;
            return Ok(Restored::BaselineSkipped);
        }
        let n = u64::from(r.overall.n);
        self.ratios.insert(key, (r, false));
        Ok(Restored::Baseline(n))
    }

    /// A position record: taken when its partition is owned and not read live here.
    fn restore_position(
        &mut self,
        k: &str,
        value: &[u8],
        owned: &dyn Fn(Option<i32>) -> bool,
    ) -> Result<Restored, StateError> {
        let partition = k.parse::<i32>().map_err(|_| StateError::Corrupt)?;
        let rec: PositionRecord = checkpoint::decode(value)?;
        if rec.partition != partition || rec.next_offset < 0 {
            return Err(StateError::Corrupt);
        }
        if !owned(Some(partition)) || self.positions.contains_key(&partition) {
            return Ok(Restored::PositionSkipped);
        }
        self.positions.insert(partition, rec.next_offset);
        self.metrics.positions_restored += 1;
        Ok(Restored::Position)
    }

    /// A window bucket record: put back into its key's window when its partition is owned
    /// and the key is not held live here (a key of a partition owned before this
    /// assignment has its windows already).
    fn restore_window(
        &mut self,
        k: &str,
        value: &[u8],
        owned: &dyn Fn(Option<i32>) -> bool,
    ) -> Result<Restored, StateError> {
        let (key, w, start) = parse_window_key(k).ok_or(StateError::Corrupt)?;
        let rec: WindowRecord = checkpoint::decode(value)?;
        rec.bucket.validate()?;
        if rec.bucket.key != key || rec.bucket.slice_start_us != start {
            return Err(StateError::Corrupt);
        }
        if !owned(rec.partition) || self.keys.get(&key).is_some_and(|k| !k.restoring) {
            return Ok(Restored::WindowSkipped);
        }
        if !self.keys.contains_key(&key) && self.keys.len() >= self.cfg.limits.max_keys_per_table {
            self.metrics.rejected += 1;
            return Ok(Restored::WindowSkipped);
        }
        let kind = rec.bucket.kind;
        let (cfg, slice_us) = (&self.cfg, self.slice_us);
        let ks = self.keys.entry(key).or_insert_with(|| {
            let mut ks = new_key(cfg, slice_us, kind, rec.partition);
            ks.restoring = true;
            ks
        });
        if ks.kind != kind {
            return Err(StateError::Corrupt);
        }
        let window = match w {
            0 => &mut ks.short,
            _ => ks.long.as_mut().ok_or(StateError::Corrupt)?,
        };
        if !window.put(rec.bucket) {
            return Ok(Restored::WindowSkipped);
        }
        ks.hot_until = ks.hot_until.max(rec.hot_until);
        ks.last_us = ks.last_us.max(rec.last_us);
        ks.partition = rec.partition;
        self.watermark_us = self.watermark_us.max(start);
        self.now_us = self.now_us.max(rec.last_us);
        self.metrics.window_buckets_restored += 1;
        Ok(Restored::Window)
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
        // Every bucket is written again, the window deletes are pending again.
        for k in changes.delete.iter().filter(|k| {
            k.strip_prefix(GLOBAL_PREFIX)
                .is_some_and(|k| k.starts_with(WINDOW_PREFIX) || k.starts_with(RATIO_PREFIX))
        }) {
            tombstone(
                &mut self.window_tombstones,
                &mut self.metrics.window_tombstones_dropped,
                k.clone(),
            );
        }
        for k in self.keys.values_mut() {
            for (_, w) in k.windows_mut() {
                w.dirty = w.buckets.iter().map(|b| b.slice_start_us).collect();
            }
        }
        self.positions_dirty = !self.positions.is_empty();
        for (_, dirty) in self.ratios.values_mut() {
            *dirty = true;
        }
    }

    /// Forgets, without a Close, the campaigns and the windows of the keys last merged from
    /// `partitions` of the partials topic (revoked: the new owner restores both from the
    /// last checkpoint). Returns how many campaigns.
    pub fn forget_partitions(&mut self, partitions: &[i32]) -> usize {
        self.keys
            .retain(|_, k| !k.partition.is_some_and(|p| partitions.contains(&p)));
        self.positions.retain(|p, _| !partitions.contains(p));
        self.ratios
            .retain(|_, (r, _)| !r.partition.is_some_and(|p| partitions.contains(&p)));
        self.campaigns.forget_partitions(partitions)
    }

    /// The keys restored by the last assignment are live from now on (their next records
    /// of the same assignment's snapshot were all read): call after a restore pass.
    pub fn restore_done(&mut self) {
        for k in self.keys.values_mut() {
            k.restoring = false;
        }
    }

    /// The keyed hasher.
    pub fn keyer(&self) -> &Keyer {
        &self.keyer
    }
}

/// The endpoint a partial is about, as a campaign names it.
fn endpoint_of(p: &Partial) -> EndpointRef {
    EndpointRef {
        service: p.service.clone(),
        method: p.method.clone(),
        template: p.template.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::partial::{Counts, MAX_NAME_BYTES, MAX_SOURCES};
    use std::net::IpAddr;

    fn engine() -> GlobalEngine {
        GlobalEngine::new(
            DetectConfig::default(),
            &HashKey::from_secret(b"global"),
            10,
            20,
        )
        .unwrap()
    }

    /// The largest bucket there can be: both sets sketches, every source listed, every name
    /// at its limit.
    fn worst_bucket(key: u64, start_us: u64) -> Partial {
        let mut p = Partial::empty(GlobalKind::StuffingDistributed, key, start_us, 10_000_000);
        p.counts = Counts {
            attempts: 1,
            failures: 1,
            ..Counts::default()
        };
        let name = "ж".repeat(MAX_NAME_BYTES / 2);
        for s in [
            &mut p.service,
            &mut p.method,
            &mut p.template,
            &mut p.ua_family,
            &mut p.account,
        ] {
            s.clone_from(&name);
        }
        for i in 0..10_000u64 {
            p.sources.insert(i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            p.values.insert(i.wrapping_mul(0xC2B2_AE3D_27D4_EB4F));
        }
        p.listed = (0..MAX_SOURCES as u64)
            .map(|i| (IpAddr::from([0xfd00, 0, 0, 0, 0, 0, 0, i as u16]), i))
            .collect();
        p
    }

    #[test]
    fn window_records_are_bounded_and_round_trip() {
        let mut g = engine();
        let p = worst_bucket(7, 1_000_000_000);
        g.merge(&p, Some(3));
        let changes = g.checkpoint();
        let windows: Vec<&(String, Vec<u8>)> = (changes.put.iter())
            .filter(|(k, _)| k.starts_with("g/w/"))
            .collect();
        // The short and the long window's bucket.
        assert_eq!(windows.len(), 2, "{:?}", changes.put);
        for (k, v) in &windows {
            assert!(v.len() < 16 * 1024, "{k}: {} bytes", v.len());
        }
        // Nothing changed: nothing written again.
        assert!(g.checkpoint().put.is_empty());
        let mut h = engine();
        for (k, v) in &windows {
            // Not owned: skipped.
            assert_eq!(
                h.restore(k, v, &|p| p == Some(1)),
                Ok(Restored::WindowSkipped)
            );
            assert_eq!(h.restore(k, v, &|p| p == Some(3)), Ok(Restored::Window));
        }
        h.restore_done();
        assert_eq!(h.keys(), 1);
        // Live now: a second pass does not count the buckets twice.
        assert_eq!(
            h.restore(&windows[0].0, &windows[0].1, &|_| true),
            Ok(Restored::WindowSkipped)
        );
        // Revoked: the windows go (the new owner restores them).
        h.forget_partitions(&[3]);
        assert_eq!(h.keys(), 0);
    }

    /// A login endpoint's partial of one 10 s slice: `attempts` of which `failures` failed,
    /// from `sources` sources trying `names` user names (numbered from `salt`).
    fn login(
        key: u64,
        start_us: u64,
        attempts: u64,
        failures: u64,
        sources: u64,
        salt: u64,
    ) -> Partial {
        let mut p = Partial::empty(GlobalKind::StuffingDistributed, key, start_us, 10_000_000);
        p.service = "api".into();
        p.method = "POST".into();
        p.template = "/api/login".into();
        p.last_us = start_us + 9_000_000;
        p.counts = Counts {
            attempts,
            failures,
            successes: attempts - failures,
            light_attempts: attempts,
            light_failures: failures,
            authenticated: 0,
        };
        for i in 0..sources {
            p.sources
                .insert((salt + i).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            p.values
                .insert((salt + i).wrapping_mul(0xC2B2_AE3D_27D4_EB4F));
        }
        p
    }

    /// The endpoint's failure-ratio baseline is learnt from every member's partials
    /// (0.3 merged where one member alone sees 0.33 and the other 0.25), not from attack
    /// buckets, survives a hand-over, and is the one the distributed condition reads: an
    /// endpoint that normally fails 30 % of its logins does not alarm at 70 % (threshold
    /// 3 × 0.3), where an owner without the baseline alarms at the 50 % floor.
    #[test]
    fn stage_two_learns_the_endpoint_baseline_from_every_member_and_reads_it() {
        const T0: u64 = 1_800_000_020_000_000 - 1_800_000_020_000_000 % 60_000_000;
        const S: u64 = 10_000_000;
        let mut a = engine();
        let mut slice = 0u64;
        let mut feed = |g: &mut GlobalEngine, parts: &[Partial]| {
            for p in parts {
                assert!(g.first_delivery(0, slice as i64));
                g.merge(p, Some(0));
                slice += 1;
            }
        };
        // 40 minutes of ordinary logins: member 1 sees 6 attempts (2 failures) per slice,
        // member 2 sees 4 (1 failure).
        for i in 0..240 {
            let t = T0 + i * S;
            feed(&mut a, &[login(9, t, 6, 2, 1, 0), login(9, t, 4, 1, 1, 1)]);
        }
        let b = a.ratio_baseline(9).unwrap();
        // Buckets complete once the watermark (T0 + 2 390 s) minus the 20 s grace is past
        // their end: the 39 starting at T0 … T0 + 2 280 s.
        assert_eq!(b.n, 39);
        assert!((f64::from(b.mean) - 0.3).abs() < 1e-4, "{b:?}");
        // Ten minutes marked as an attack by stage 1: not learnt.
        for i in 240..300 {
            let mut p = login(9, T0 + i * S, 10, 9, 1, 2);
            p.poisoned = true;
            feed(&mut a, &[p]);
        }
        let b = a.ratio_baseline(9).unwrap();
        assert_eq!(
            b.n, 40,
            "the last ordinary bucket folded, none of the attack's"
        );
        assert!((f64::from(b.mean) - 0.3).abs() < 1e-4, "{b:?}");
        // A hand-over: the new owner restores it.
        let changes = a.checkpoint();
        let (k, v) = (changes.put.iter())
            .find(|(k, _)| k.starts_with("g/b/"))
            .unwrap();
        assert_eq!(k, &format!("g/b/{:016x}", 9));
        let mut c = engine();
        assert_eq!(
            c.restore(k, v, &|p| p == Some(1)),
            Ok(Restored::BaselineSkipped)
        );
        assert_eq!(
            c.restore(k, v, &|p| p == Some(0)),
            Ok(Restored::Baseline(40))
        );
        assert_eq!(c.ratio_baseline(9), Some(b));
        assert_eq!(c.restore(k, v, &|_| true), Ok(Restored::BaselineSkipped));
        assert!(c.restore(k, &v[..v.len() / 2], &|_| true).is_err());
        let mut bad = a.ratios[&9].0.clone();
        bad.hours = vec![Ewma::default(); 3];
        let bad = checkpoint::encode(&bad).unwrap();
        assert_eq!(
            engine().restore(k, &bad, &|_| true),
            Err(StateError::Corrupt)
        );
        assert_eq!(
            engine().restore("g/b/zz", v, &|_| true),
            Err(StateError::Corrupt)
        );
        // After a quiet 10 minutes, one minute of a distributed stuffing at 70 % failures
        // from 60 sources: the owner with the baseline (threshold 0.9) stays quiet, an owner
        // without one (floor 0.5) raises it.
        let attack: Vec<Partial> = (0..6)
            .map(|i| login(9, T0 + 3_600 * 1_000_000 + i * S, 20, 14, 10, 100 + i * 10))
            .collect();
        let mut fresh = engine();
        let (mut with, mut without) = (Vec::new(), Vec::new());
        for (i, p) in attack.iter().enumerate() {
            c.merge(p, Some(0));
            with.extend(c.tick(p.last_us));
            assert!(fresh.first_delivery(0, i as i64));
            fresh.merge(p, Some(0));
            without.extend(fresh.tick(p.last_us));
        }
        assert!(with.is_empty(), "{with:#?}");
        assert!(
            without
                .iter()
                .any(|f| f.activity == crate::finding::Activity::Create),
            "{without:#?}"
        );
        // The campaign's buckets are not learnt by the owner that raised it (nor the minutes
        // after it while it stays hot and hits).
        let later: Vec<Partial> = (0..12)
            .map(|i| login(9, T0 + 3_660 * 1_000_000 + i * S, 10, 3, 1, 0))
            .collect();
        for p in &later {
            fresh.merge(p, Some(0));
        }
        assert_eq!(
            fresh.ratio_baseline(9).unwrap().n,
            0,
            "the attack minute was poisoned"
        );
    }

    #[test]
    fn a_slice_longer_than_a_window_is_a_config_error_naming_the_field() {
        let key = HashKey::from_secret(b"global");
        let mut cfg = DetectConfig::default();
        cfg.crawling.window_secs = 30;
        let e = GlobalEngine::new(cfg.clone(), &key, 60, 20).unwrap_err();
        assert!(e.to_string().contains("scale_out.slice_secs"), "{e}");
        assert!(GlobalEngine::new(cfg.clone(), &key, 30, 20).is_ok());
        assert!(GlobalEngine::new(cfg, &key, 0, 20).is_err());
    }

    /// A hand-over whose partials' offsets were not committed: the new owner reads them
    /// again after restoring the state they produced, and merges each once.
    #[test]
    fn redelivered_partials_are_merged_once() {
        let mut a = engine();
        let p = |i: u64| {
            let mut p = worst_bucket(7, 1_000_000_000 + i * 10_000_000);
            p.counts.attempts = 1;
            p
        };
        for off in 0..3 {
            assert!(a.first_delivery(3, off));
            a.merge(&p(off as u64), Some(3));
        }
        // Read again on the same member (a fetch rewound before the commit).
        assert!(!a.first_delivery(3, 1));
        let changes = a.checkpoint();
        // The position is the batch's last record.
        let (k, _) = changes.put.last().unwrap();
        assert_eq!(k, "g/o/3");
        // Nothing merged since: no position again.
        assert!(
            !a.checkpoint()
                .put
                .iter()
                .any(|(k, _)| k.starts_with("g/o/"))
        );
        let mut b = engine();
        for (k, v) in &changes.put {
            b.restore(k, v, &|p| p == Some(3)).unwrap();
        }
        b.restore_done();
        assert_eq!(b.metrics().positions_restored, 1);
        let held = b.short_total(7).unwrap().counts.attempts;
        assert_eq!(held, 3);
        // Offsets 0..3 again (not committed), then a new one.
        for off in 0..3 {
            assert!(!b.first_delivery(3, off), "{off}");
        }
        assert!(b.first_delivery(3, 3));
        b.merge(&p(3), Some(3));
        assert_eq!(b.short_total(7).unwrap().counts.attempts, 4);
        assert_eq!(b.metrics().redelivered, 3);
        // Another partition is not limited by it; a revoked one forgets its position.
        assert!(b.first_delivery(2, 0));
        b.forget_partitions(&[3]);
        assert!(b.first_delivery(3, 0));
        // Not owned, or a partition that does not match its key: skipped, or an error.
        let (k, v) = changes.put.last().unwrap();
        let mut c = engine();
        assert_eq!(
            c.restore(k, v, &|p| p == Some(1)),
            Ok(Restored::PositionSkipped)
        );
        assert_eq!(c.restore("g/o/4", v, &|_| true), Err(StateError::Corrupt));
        assert_eq!(c.restore("g/o/x", v, &|_| true), Err(StateError::Corrupt));
        assert!(c.restore(k, &v[..v.len() / 2], &|_| true).is_err());
        // A failed checkpoint writes the position again.
        let failed = b.checkpoint();
        b.checkpoint_failed(&failed);
        assert!(
            b.checkpoint()
                .put
                .iter()
                .any(|(k, _)| k.starts_with("g/o/"))
        );
    }

    #[test]
    fn bad_window_records_are_errors() {
        let mut g = engine();
        g.merge(&worst_bucket(7, 1_000_000_000), Some(0));
        let changes = g.checkpoint();
        let (k, v) = changes
            .put
            .iter()
            .find(|(k, _)| k.starts_with("g/w/"))
            .unwrap();
        let mut h = engine();
        let all = |_: Option<i32>| true;
        for n in [0, 1, v.len() / 2, v.len() - 1] {
            assert!(h.restore(k, &v[..n], &all).is_err(), "{n}");
        }
        // A key that does not name the bucket's key or start.
        let other = k.replacen("0000000000000007", "0000000000000008", 1);
        assert_eq!(h.restore(&other, v, &all), Err(StateError::Corrupt));
        for bad in ["g/w/zz/0/00", "g/w/0000000000000007/9/00", "g/w/7"] {
            assert_eq!(h.restore(bad, v, &all), Err(StateError::Corrupt), "{bad}");
        }
        assert_eq!(h.keys(), 0);
    }
}
