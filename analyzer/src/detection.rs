//! Threat detections in the analyzer (R-THR-1..5): the [`apitap_detect::Engine`] fed with every
//! event and what the analyzer already knows about it (endpoint template and service from the
//! inventory, function class and sensitive record counts from labelling), its campaign
//! findings queued for the alert outputs as OCSF Detection Findings (class 2004).
//!
//! Stream time drives the engine: it is ticked once per second of event time, and when the
//! input is idle the periodic flush advances stream time at wall-clock speed
//! ([`Detection::idle_tick`]) so that quiet campaigns still close in service mode.

use std::time::Instant;

use apitap_detect::checkpoint::{Restored, StateChanges, StateError};
use apitap_detect::global::GlobalEngine;
use apitap_detect::partial::Partial;
use apitap_detect::{DetectConfig, Engine, EventContext, Finding};
use apitap_labels::HashKey;
use apitap_labels::facts::EventFacts;
use apitap_metrics::Exposition;
use apitap_schema::ApiEvent;

use crate::error::Error;

/// Findings held for the alert outputs at most; further ones are counted and dropped.
pub const MAX_PENDING_FINDINGS: usize = 10_000;

/// Event-time interval between engine ticks.
const TICK_US: u64 = 1_000_000;

/// The detection engine and its queue of findings.
#[derive(Debug)]
pub struct Detection {
    engine: Engine,
    pending: Vec<Finding>,
    last_tick_us: u64,
    /// Events observed; the count, wall time and stream time when [`Detection::idle_tick`]
    /// last saw it change: idleness is measured per flush, not with a clock read per event.
    events: u64,
    idle_check: (u64, Instant, u64),
    /// Findings dropped because [`MAX_PENDING_FINDINGS`] were waiting.
    pub dropped_findings: u64,
    /// Counters of the durable state (`[state]`, issue 18).
    pub state: crate::state::StateCounters,
    /// Stage 2 of two-stage processing (`[scale_out]`, issue 18): the global detectors on
    /// the merged partials of every analyzer.
    global: Option<GlobalEngine>,
    /// Counters of two-stage processing.
    pub scale_out: ScaleOutCounters,
}

/// Rejection causes of partials, in the order of [`ScaleOutCounters::rejected`].
const PARTIAL_CAUSES: [&str; 5] = [
    "corrupt",
    "incompatible",
    "too_large",
    "unknown_name",
    "refused",
];

/// Counters of two-stage processing (`apitap_analyzer_partials_*_total`).
#[derive(Debug, Default, Clone)]
pub struct ScaleOutCounters {
    /// Partials on the partials topic.
    pub produced: u64,
    /// Partials merged by stage 2.
    pub merged: u64,
    /// Partials older than the grace (merged into their slice or, outside every window,
    /// dropped).
    pub late: u64,
    /// Of the late partials, those outside every window of their key (dropped).
    pub late_dropped: u64,
    /// Partials not merged, by [`PARTIAL_CAUSES`].
    pub rejected: [u64; PARTIAL_CAUSES.len()],
    /// Productions of a flush's partials that failed (retried at the next flush).
    pub produce_errors: u64,
    /// Partials read again whose effects stage 2's state held already (skipped).
    pub redelivered: u64,
}

impl ScaleOutCounters {
    fn render(&self, out: &mut Exposition) {
        out.counter(
            "apitap_analyzer_partials_produced_total",
            "Partial aggregates produced to the partials topic (stage 1).",
            self.produced,
        );
        out.counter(
            "apitap_analyzer_partials_merged_total",
            "Partial aggregates merged into the global detectors' windows (stage 2).",
            self.merged,
        );
        out.counter(
            "apitap_analyzer_partials_late_total",
            "Partial aggregates that arrived after the grace (merged into their slice while inside a window, else dropped).",
            self.late,
        );
        out.counter(
            "apitap_analyzer_partials_late_dropped_total",
            "Late partial aggregates outside every window of their key (dropped, not merged).",
            self.late_dropped,
        );
        out.counter(
            "apitap_analyzer_partials_redelivered_total",
            "Partial aggregates read again after a rebalance or restart whose effects stage 2's restored state held already (skipped, not merged twice).",
            self.redelivered,
        );
        out.counter(
            "apitap_analyzer_partials_produce_errors_total",
            "Flushes whose partial aggregates could not be produced (retried; their events stay unacknowledged).",
            self.produce_errors,
        );
        let mut f = out.family(
            "apitap_analyzer_partials_rejected_total",
            apitap_metrics::Kind::Counter,
            "Partial aggregates not merged, by cause.",
        );
        for (cause, n) in PARTIAL_CAUSES.iter().zip(self.rejected) {
            f.sample(&[("cause", cause)], n);
        }
    }
}

impl Detection {
    /// An engine with `cfg`, keyed like the labels (actor hashes and campaign ids correlate
    /// across restarts and analyzer instances when `labels.hash_key_file` is set).
    pub fn new(cfg: &DetectConfig, key: &HashKey) -> Result<Detection, Error> {
        let engine = Engine::with_hash_key(cfg.clone(), key).map_err(Error::Detect)?;
        Ok(Detection {
            engine,
            pending: Vec::new(),
            last_tick_us: 0,
            events: 0,
            idle_check: (0, Instant::now(), 0),
            dropped_findings: 0,
            state: crate::state::StateCounters::default(),
            global: None,
            scale_out: ScaleOutCounters::default(),
        })
    }

    /// Two-stage processing on (`[scale_out]`, issue 18): the engine produces partials of
    /// `slice_secs` instead of raising the distributed kinds, and a stage-2 engine keyed like
    /// it raises them from the merged partials ([`Detection::merge_partial`]).
    pub fn enable_scale_out(
        &mut self,
        cfg: &DetectConfig,
        key: &HashKey,
        slice_secs: u64,
        grace_secs: u64,
    ) -> Result<(), Error> {
        let global =
            GlobalEngine::new(cfg.clone(), key, slice_secs, grace_secs).map_err(Error::Detect)?;
        self.engine.enable_partials(slice_secs);
        self.global = Some(global);
        Ok(())
    }

    /// The partials folded since the last call, as partials-topic records (key, value).
    pub fn take_partials(&mut self) -> Vec<(String, Vec<u8>)> {
        (self.engine.take_partials().iter())
            .filter_map(|p| Some((p.message_key(), p.encode()?)))
            .collect()
    }

    /// Merges the partials-topic record at `offset` of `partition` into stage 2 (a bad one is
    /// counted and skipped; one whose effects the state holds already is skipped and counted
    /// as redelivered).
    pub fn merge_partial(&mut self, value: &[u8], partition: i32, offset: i64) {
        let Some(global) = self.global.as_mut() else {
            return;
        };
        if !global.first_delivery(partition, offset) {
            self.scale_out.redelivered += 1;
            return;
        }
        match Partial::decode(value) {
            Ok(p) => {
                let before = global.metrics();
                global.merge(&p, Some(partition));
                let after = global.metrics();
                self.scale_out.merged += after.merged - before.merged;
                self.scale_out.late += after.late - before.late;
                self.scale_out.late_dropped += after.late_dropped - before.late_dropped;
                self.scale_out.rejected[4] += after.rejected - before.rejected;
            }
            Err(e) => {
                if let Some(i) = PARTIAL_CAUSES.iter().position(|c| *c == e.cause()) {
                    self.scale_out.rejected[i] += 1;
                }
            }
        }
    }

    /// Ticks stage 2 with the stream time and queues its findings.
    fn tick_global(&mut self, now: u64) {
        if let Some(g) = self.global.as_mut() {
            let out = g.tick(now);
            self.queue(out);
        }
    }

    /// Restores one stage-2 record (`g/…`) if `owned` accepts its partials partition.
    pub fn restore_global(
        &mut self,
        key: &str,
        value: &[u8],
        owned: &dyn Fn(Option<i32>) -> bool,
    ) -> Result<Restored, StateError> {
        match self.global.as_mut() {
            Some(g) => g.restore(key, value, owned),
            None => Ok(Restored::UnknownKey),
        }
    }

    /// The end of a stage-2 restore pass ([`GlobalEngine::restore_done`]).
    pub fn restore_global_done(&mut self) {
        if let Some(g) = self.global.as_mut() {
            g.restore_done();
        }
    }

    /// Forgets stage 2's campaigns and windows of revoked partials partitions. Returns how
    /// many campaigns.
    pub fn forget_global_partitions(&mut self, partitions: &[i32]) -> usize {
        self.global
            .as_mut()
            .map_or(0, |g| g.forget_partitions(partitions))
    }

    /// Feeds one event; ticks the engine when a second of event time has passed.
    pub fn observe(&mut self, ev: &ApiEvent, ctx: &EventContext<'_>) {
        let facts = EventFacts::new(ev, apitap_labels::facts::DEFAULT_MAX_DECODED_BYTES);
        self.observe_facts(&facts, ctx);
    }

    /// The actor keys of the event last observed (for its trace-back record).
    pub fn last_actor(&self) -> Option<apitap_detect::actor::ActorKeys> {
        self.engine.last_actor()
    }

    /// The keyed hasher of actor keys.
    pub fn keyer(&self) -> &apitap_detect::Keyer {
        self.engine.keyer()
    }

    /// [`Detection::observe`] with the event's shared facts.
    pub fn observe_facts(&mut self, facts: &EventFacts<'_>, ctx: &EventContext<'_>) {
        self.engine.observe_facts(facts, ctx);
        self.events += 1;
        let now = self.engine.now_us();
        if now.saturating_sub(self.last_tick_us) >= TICK_US {
            self.last_tick_us = now;
            let out = self.engine.tick(now);
            self.queue(out);
            self.tick_global(now);
        }
    }

    /// With no event between two calls (the periodic flush), stream time moves on at
    /// wall-clock speed from the last event's time: quiet campaigns close and updates go out in
    /// a live service.
    pub fn idle_tick(&mut self) {
        if self.events != self.idle_check.0 {
            // Events arrived since the last look: not idle; measure from now.
            self.idle_check = (self.events, Instant::now(), self.engine.now_us());
            return;
        }
        let (_, since, base_us) = self.idle_check;
        let idle_us = u64::try_from(since.elapsed().as_micros()).unwrap_or(u64::MAX);
        if idle_us < TICK_US || base_us == 0 {
            return;
        }
        let now = base_us.saturating_add(idle_us);
        let out = self.engine.tick(now);
        self.queue(out);
        self.tick_global(now);
    }

    /// End of a finite input: every open campaign is reported and closed.
    pub fn finish(&mut self) {
        let out = self.engine.finish();
        self.queue(out);
        if let Some(g) = self.global.as_mut() {
            let out = g.finish();
            self.queue(out);
        }
    }

    fn queue(&mut self, out: Vec<Finding>) {
        for f in out {
            if self.pending.len() < MAX_PENDING_FINDINGS {
                self.pending.push(f);
            } else {
                self.dropped_findings += 1;
            }
        }
    }

    /// Findings raised since the last call.
    pub fn take_findings(&mut self) -> Vec<Finding> {
        std::mem::take(&mut self.pending)
    }

    /// The bus partition of the events observed from now on (issue 18).
    pub fn set_partition(&mut self, partition: Option<i32>) {
        self.engine.set_partition(partition);
    }

    /// [`Engine::checkpoint`].
    /// With two-stage processing, stage 2's `g/…` records too.
    pub fn checkpoint(&mut self, baselines: bool) -> StateChanges {
        let mut out = self.engine.checkpoint(baselines);
        if let Some(g) = self.global.as_mut() {
            let more = g.checkpoint();
            out.put.extend(more.put);
            out.delete.extend(more.delete);
        }
        out
    }

    /// [`Engine::checkpoint_failed`] (and stage 2's).
    pub fn checkpoint_failed(&mut self, changes: &StateChanges) {
        self.engine.checkpoint_failed(changes);
        if let Some(g) = self.global.as_mut() {
            g.checkpoint_failed(changes);
        }
    }

    /// [`Engine::restore`].
    pub fn restore(
        &mut self,
        key: &str,
        value: &[u8],
        owned: &dyn Fn(Option<i32>) -> bool,
    ) -> Result<Restored, StateError> {
        self.engine.restore(key, value, owned)
    }

    /// [`Engine::forget_partitions`].
    pub fn forget_partitions(&mut self, partitions: &[i32]) -> usize {
        self.engine.forget_partitions(partitions)
    }

    /// Adds the engine's counters (`apitap_detect_*`) and the findings dropped here to `out`.
    pub fn render(&self, out: &mut Exposition) {
        self.engine.metrics().render_into(out);
        self.state.render(out);
        if let Some(g) = &self.global {
            self.scale_out.render(out);
            out.gauge(
                "apitap_analyzer_global_open_campaigns",
                "Campaigns open in stage 2 (the global keys this member owns).",
                g.open_campaigns() as u64,
            );
            let (baselines, samples) = g.baselines();
            out.gauge(
                "apitap_analyzer_global_baselines",
                "Login endpoints whose failure-ratio baseline stage 2 learns (owned here).",
                baselines as u64,
            );
            out.gauge(
                "apitap_analyzer_global_baseline_samples",
                "Buckets learnt by those baselines (sum over endpoints).",
                samples,
            );
            out.counter(
                "apitap_analyzer_global_baselines_dropped_total",
                "Login endpoints whose stage-2 baseline was not kept (beyond limits.max_endpoints).",
                g.metrics().baselines_dropped,
            );
        }
        out.gauge(
            "apitap_detect_baseline_samples",
            "Request-rate samples learnt by the endpoint baselines held (sum over endpoints).",
            self.engine.baseline_samples(),
        );
        out.counter(
            "apitap_detect_findings_dropped_total",
            "Findings dropped (alert queue full).",
            self.dropped_findings,
        );
    }

    /// Logs the engine's counters (`apitap_detect_*`).
    pub fn log(&self) {
        let m = self.engine.metrics();
        let evicted: u64 = m.evicted.iter().map(|(_, n)| n).sum();
        tracing::info!(
            apitap_detect_events_total = m.events,
            apitap_detect_auth_attempts_total = m.auth_attempts,
            apitap_detect_auth_failures_total = m.auth_failures,
            apitap_detect_findings_created_total = m.findings_created,
            apitap_detect_findings_updated_total = m.findings_updated,
            apitap_detect_findings_closed_total = m.findings_closed,
            apitap_detect_campaigns_dropped_total = m.campaigns_dropped,
            apitap_detect_evicted_total = evicted,
            apitap_detect_findings_dropped_total = self.dropped_findings,
            open_campaigns = m.open_campaigns,
            state_bytes = m.state_bytes,
            "detections"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::summary::tests::event;

    #[test]
    fn idle_input_moves_stream_time_at_wall_speed_from_the_last_event() {
        let key = HashKey::from_secret(b"k");
        let mut d = Detection::new(&DetectConfig::default(), &key).unwrap();
        let mut e = event(Some("api"), "GET", "/x");
        e.request_start_unix_us = 1_700_000_000_000_000;
        d.observe(&e, &EventContext::default());
        d.idle_tick(); // events arrived since the last look: not idle
        assert_eq!(d.engine.now_us(), e.request_start_unix_us);
        std::thread::sleep(std::time::Duration::from_millis(1100));
        d.idle_tick();
        let advanced = d.engine.now_us() - e.request_start_unix_us;
        assert!((1_000_000..5_000_000).contains(&advanced), "{advanced}");
        // A second idle tick measures from the last event again, not from the advanced clock.
        d.idle_tick();
        assert!(d.engine.now_us() - e.request_start_unix_us < 2 * advanced);
    }
}
