//! Durable detection state in the analyzer service (`[state]`, issue 18, R-THR-5): the
//! engine's checkpoint records ([`apitap_detect::checkpoint`]) on a compacted Kafka topic
//! ([`apitap_bus::state::StateTopic`]).
//!
//! - Campaign records are written at every flush of the consumer, after the alerts are on the
//!   alert topic and before the events' offsets are committed, and on shutdown: a Create that
//!   reached the alert topic is in the state before its events are acknowledged. Baselines are
//!   written every `state.baseline_interval_secs` and on shutdown and revocation.
//! - On partition assignment (the first one at start included), the topic is read to its
//!   end: campaigns last hit from an assigned partition are reopened (no second Create;
//!   Updates go on with the same uid), baselines that know more than the ones held replace
//!   them.
//! - On revocation, before the partitions' offsets are committed, everything changed is
//!   written and the campaigns of the revoked partitions are forgotten without a Close: their
//!   new owner restores them.
//!
//! Records that are corrupt, of another version or beyond the limits are counted by cause
//! (`apitap_detect_state_records_rejected_total{cause}`) and skipped: never a crash.
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use apitap_bus::state::{StateSnapshot, StateTopic};
use apitap_bus::{BusError, KafkaConfig, RebalanceHook};
use apitap_detect::checkpoint::Restored;
use apitap_detect::global::GLOBAL_PREFIX;
use apitap_metrics::{Exposition, Kind};

use crate::config::StateConfig;
use crate::ingest::Ingestor;

/// Rejection causes, in the order of [`StateCounters::rejected`].
const CAUSES: [&str; 6] = [
    "corrupt",
    "incompatible",
    "too_large",
    "unknown_name",
    "over_limit",
    "bad_key",
];

/// Counters of the state checkpoints (`apitap_detect_state_*`).
#[derive(Debug, Default, Clone)]
pub struct StateCounters {
    /// Campaigns reopened from the topic.
    pub campaigns_restored: u64,
    /// Endpoint baselines restored.
    pub baselines_restored: u64,
    /// Request-rate samples of the restored baselines.
    pub baseline_samples_restored: u64,
    /// Records skipped, by [`CAUSES`].
    pub rejected: [u64; CAUSES.len()],
    /// Records (and tombstones) written.
    pub records_written: u64,
    /// Checkpoint writes that failed.
    pub write_errors: u64,
    /// Restores that did not reach the end of the topic in time.
    pub restores_incomplete: u64,
    /// Campaigns forgotten at revocation (restored by the new owner).
    pub campaigns_handed_over: u64,
    /// Stage-2 window buckets restored (`g/w/…`, `[scale_out]`).
    pub window_buckets_restored: u64,
}

impl StateCounters {
    fn reject(&mut self, cause: &str) {
        if let Some(i) = CAUSES.iter().position(|c| *c == cause) {
            self.rejected[i] += 1;
        }
    }

    /// Adds the counters to `out`.
    pub fn render(&self, out: &mut Exposition) {
        for (name, help, v) in [
            (
                "apitap_detect_state_campaigns_restored_total",
                "Open campaigns restored from the state topic.",
                self.campaigns_restored,
            ),
            (
                "apitap_detect_state_baselines_restored_total",
                "Endpoint baselines restored from the state topic.",
                self.baselines_restored,
            ),
            (
                "apitap_detect_state_baseline_samples_restored_total",
                "Request-rate samples of the endpoint baselines restored.",
                self.baseline_samples_restored,
            ),
            (
                "apitap_detect_state_records_written_total",
                "State records and tombstones written to the state topic.",
                self.records_written,
            ),
            (
                "apitap_detect_state_write_errors_total",
                "Checkpoint writes to the state topic that failed (retried at the next flush).",
                self.write_errors,
            ),
            (
                "apitap_detect_state_restores_incomplete_total",
                "Restores that did not reach the end of the state topic in time.",
                self.restores_incomplete,
            ),
            (
                "apitap_detect_state_window_buckets_restored_total",
                "Stage-2 window buckets restored from the state topic (two-stage processing).",
                self.window_buckets_restored,
            ),
            (
                "apitap_detect_state_campaigns_handed_over_total",
                "Campaigns of revoked partitions forgotten for their new owner.",
                self.campaigns_handed_over,
            ),
        ] {
            out.counter(name, help, v);
        }
        let mut f = out.family(
            "apitap_detect_state_records_rejected_total",
            Kind::Counter,
            "State records skipped, by cause.",
        );
        for (cause, n) in CAUSES.iter().zip(self.rejected) {
            f.sample(&[("cause", cause)], n);
        }
    }
}

/// The state topic and the analysis whose state it keeps; the consumer's rebalance hook.
pub struct DetectState {
    topic: Mutex<StateTopic>,
    ingestor: Arc<Mutex<Ingestor>>,
    cfg: StateConfig,
    /// Partitions owned now.
    owned: Mutex<BTreeSet<i32>>,
    last_baselines: Mutex<Instant>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl DetectState {
    /// Creates the topic if missing (compacted) and the producer.
    pub fn open(
        cfg: &StateConfig,
        kafka: &KafkaConfig,
        ingestor: Arc<Mutex<Ingestor>>,
    ) -> Result<Arc<DetectState>, BusError> {
        let timeout = Duration::from_millis(cfg.timeout_ms);
        let spec = apitap_bus::admin::TopicSpec {
            name: cfg.topic.clone(),
            partitions: 1,
            replication: cfg.topic_replication,
        };
        let outcome = apitap_bus::admin::ensure_compacted_topic(kafka, &spec, timeout)?;
        tracing::info!(topic = %cfg.topic, ?outcome, "detection state topic");
        Ok(Arc::new(DetectState {
            topic: Mutex::new(StateTopic::new(kafka, &cfg.topic)?),
            ingestor,
            cfg: cfg.clone(),
            owned: Mutex::new(BTreeSet::new()),
            last_baselines: Mutex::new(Instant::now()),
        }))
    }

    /// Writes what changed since the last checkpoint (baselines too when `all` or when
    /// `state.baseline_interval_secs` passed).
    pub fn checkpoint(&self, all: bool) -> Result<(), BusError> {
        let baselines = {
            let mut last = lock(&self.last_baselines);
            let due = all || last.elapsed() >= Duration::from_secs(self.cfg.baseline_interval_secs);
            if due {
                *last = Instant::now();
            }
            due
        };
        let changes = {
            let mut guard = lock(&self.ingestor);
            let Some(detect) = guard.detect.as_mut() else {
                return Ok(());
            };
            detect.checkpoint(baselines)
        };
        if changes.put.is_empty() && changes.delete.is_empty() {
            return Ok(());
        }
        let n = (changes.put.len() + changes.delete.len()) as u64;
        let result = lock(&self.topic).write(
            &changes.put,
            &changes.delete,
            Duration::from_millis(self.cfg.timeout_ms),
        );
        let mut guard = lock(&self.ingestor);
        let Some(detect) = guard.detect.as_mut() else {
            return result;
        };
        match &result {
            Ok(()) => {
                detect.state.records_written += n;
                tracing::debug!(
                    records = changes.put.len(),
                    deletes = changes.delete.len(),
                    baselines,
                    baseline_samples = changes.baseline_samples,
                    "detection state checkpoint written"
                );
                if baselines {
                    tracing::info!(
                        baseline_samples = changes.baseline_samples,
                        "detection state baselines written"
                    );
                }
            }
            Err(_) => {
                detect.state.write_errors += 1;
                // Written again at the next checkpoint.
                detect.checkpoint_failed(&changes);
            }
        }
        result
    }

    /// The state topic read to its end, its dropped and bad keys counted; `None` when it
    /// cannot be read (counted, the analysis goes on without it).
    fn snapshot(&self) -> Option<StateSnapshot> {
        let snap = match lock(&self.topic).read_all(
            Duration::from_millis(self.cfg.timeout_ms),
            self.cfg.max_records,
        ) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the detection state topic; starting without it");
                if let Some(d) = lock(&self.ingestor).detect.as_mut() {
                    d.state.restores_incomplete += 1;
                }
                return None;
            }
        };
        if let Some(detect) = lock(&self.ingestor).detect.as_mut() {
            for _ in 0..snap.dropped {
                detect.state.reject("over_limit");
            }
            for _ in 0..snap.bad_keys {
                detect.state.reject("bad_key");
            }
            if !snap.complete {
                detect.state.restores_incomplete += 1;
            }
        }
        Some(snap)
    }

    fn restore(&self, partitions: &[i32]) {
        let Some(snap) = self.snapshot() else {
            return;
        };
        let mut guard = lock(&self.ingestor);
        let Some(detect) = guard.detect.as_mut() else {
            return;
        };
        let owned = |p: Option<i32>| p.is_some_and(|p| partitions.contains(&p));
        let (mut campaigns, mut baselines, mut samples) = (0u64, 0u64, 0u64);
        // Stage 2's records are restored by its own hook ([`GlobalHook`]).
        for (k, v) in (snap.records.iter()).filter(|(k, _)| !k.starts_with(GLOBAL_PREFIX)) {
            match detect.restore(k, v, &owned) {
                Ok(Restored::Campaign) => campaigns += 1,
                Ok(Restored::Baseline(n)) => {
                    baselines += 1;
                    samples += n;
                }
                Ok(Restored::UnknownKey) => detect.state.reject("bad_key"),
                Ok(_) => {}
                Err(e) => detect.state.reject(e.cause()),
            }
        }
        detect.state.campaigns_restored += campaigns;
        detect.state.baselines_restored += baselines;
        detect.state.baseline_samples_restored += samples;
        tracing::info!(
            partitions = ?partitions,
            records = snap.records.len(),
            campaigns,
            baselines,
            baseline_samples = samples,
            complete = snap.complete,
            "detection state restored"
        );
    }
}

impl RebalanceHook for DetectState {
    fn assigned(&self, partitions: &[i32]) {
        lock(&self.owned).extend(partitions.iter().copied());
        self.restore(partitions);
    }

    fn revoked(&self, partitions: &[i32]) {
        if let Err(e) = self.checkpoint(true) {
            tracing::warn!(error = %e, "checkpoint before revocation failed; the new owner restores an older state");
        }
        let mut owned = lock(&self.owned);
        for p in partitions {
            owned.remove(p);
        }
        drop(owned);
        if let Some(d) = lock(&self.ingestor).detect.as_mut() {
            let n = d.forget_partitions(partitions) as u64;
            d.state.campaigns_handed_over += n;
        }
    }
}

/// Stage 2's rebalance hook (`[scale_out]`, issue 18), on the consumer group of the partials
/// topic: on assignment the `g/…` campaigns and window buckets last merged from an assigned
/// partials partition are restored from the state topic; on revocation everything changed is
/// written, then those campaigns and windows are forgotten without a Close for their new
/// owner.
pub struct GlobalHook(pub Arc<DetectState>);

impl RebalanceHook for GlobalHook {
    fn assigned(&self, partitions: &[i32]) {
        let Some(snap) = self.0.snapshot() else {
            return;
        };
        let mut guard = lock(&self.0.ingestor);
        let Some(detect) = guard.detect.as_mut() else {
            return;
        };
        let owned = |p: Option<i32>| p.is_some_and(|p| partitions.contains(&p));
        let (mut campaigns, mut buckets, mut positions) = (0u64, 0u64, 0u64);
        let (mut baselines, mut samples) = (0u64, 0u64);
        for (k, v) in (snap.records.iter()).filter(|(k, _)| k.starts_with(GLOBAL_PREFIX)) {
            match detect.restore_global(k, v, &owned) {
                Ok(Restored::Campaign) => campaigns += 1,
                Ok(Restored::Window) => buckets += 1,
                Ok(Restored::Position) => positions += 1,
                Ok(Restored::Baseline(n)) => {
                    baselines += 1;
                    samples += n;
                }
                Ok(Restored::UnknownKey) => detect.state.reject("bad_key"),
                Ok(_) => {}
                Err(e) => detect.state.reject(e.cause()),
            }
        }
        detect.restore_global_done();
        detect.state.campaigns_restored += campaigns;
        detect.state.window_buckets_restored += buckets;
        detect.state.baselines_restored += baselines;
        detect.state.baseline_samples_restored += samples;
        tracing::info!(partitions = ?partitions, campaigns, window_buckets = buckets, positions, baselines, baseline_samples = samples, "stage-2 detection state restored");
    }

    fn revoked(&self, partitions: &[i32]) {
        if let Err(e) = self.0.checkpoint(true) {
            tracing::warn!(error = %e, "stage-2 checkpoint before revocation failed; the new owner restores an older state");
        }
        if let Some(d) = lock(&self.0.ingestor).detect.as_mut() {
            let n = d.forget_global_partitions(partitions) as u64;
            d.state.campaigns_handed_over += n;
        }
    }
}
