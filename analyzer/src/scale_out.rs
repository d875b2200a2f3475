//! Two-stage processing in the analyzer service (`[scale_out]`, issue 18,
//! `docs/scale-out.md`). Both stages run in the consumer thread, so that one flush orders
//! every effect:
//!
//! - **stage 1**: the engine folds the global detectors' events into partial aggregates
//!   ([`apitap_detect::partial`]); each flush produces them to `scale_out.partials_topic`,
//!   keyed by the global key, and waits for their delivery *before* the events' offsets are
//!   committed (a failed production keeps the events unacknowledged and is retried);
//! - **stage 2**: a second consumer group (`scale_out.group_id`) on the partials topic, so
//!   that exactly one member owns each global key; its partials are merged between two
//!   polls of the events ([`ScaleOut::drain`]), its campaigns' alerts go out with stage 1's,
//!   its `g/…` records are checkpointed with the state, and only then are the partials'
//!   offsets committed ([`ScaleOut::commit`]). Its rebalance hook
//!   ([`crate::state::GlobalHook`]) restores and hands over its campaigns.
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use apitap_bus::consumer::{KafkaTransport, Transport};
use apitap_bus::state::StateTopic;
use apitap_bus::{BusError, BusMetrics, KafkaConfig};

use crate::config::ScaleOutConfig;
use crate::error::Error;
use crate::ingest::Ingestor;
use crate::state::{DetectState, GlobalHook};

/// Partials merged at most between two polls of the events.
const MAX_DRAIN: usize = 1_000;

/// Stage 1's producer and stage 2's consumer of the partials topic.
pub struct ScaleOut {
    transport: KafkaTransport,
    producer: StateTopic,
    /// Partials taken from the engine and not yet on the topic.
    pending: Vec<(String, Vec<u8>)>,
    /// Next offset per partials partition merged since the last commit.
    offsets: BTreeMap<i32, i64>,
    timeout: Duration,
}

fn lock(m: &Mutex<Ingestor>) -> std::sync::MutexGuard<'_, Ingestor> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl ScaleOut {
    /// Creates the partials topic if missing, joins stage 2's group with `state`'s hook and
    /// opens stage 1's producer.
    pub fn open(
        cfg: &ScaleOutConfig,
        kafka: &KafkaConfig,
        metrics: Arc<BusMetrics>,
        state: Arc<DetectState>,
    ) -> Result<ScaleOut, Error> {
        let timeout = Duration::from_millis(cfg.timeout_ms);
        let spec = apitap_bus::admin::TopicSpec {
            name: cfg.partials_topic.clone(),
            partitions: cfg.partials_partitions,
            replication: cfg.topic_replication,
        };
        apitap_bus::admin::ensure_topics(kafka, &[spec], timeout)?;
        let group = cfg
            .group_id
            .clone()
            .unwrap_or_else(|| format!("{}-global", kafka.consumer.group_id));
        let mut transport = KafkaTransport::subscribe(kafka, &cfg.partials_topic, &group, metrics)?;
        transport.set_rebalance_hook(Arc::new(GlobalHook(state)));
        tracing::info!(topic = %cfg.partials_topic, group = %group, slice_secs = cfg.slice_secs, "two-stage processing on");
        Ok(ScaleOut {
            transport,
            producer: StateTopic::new(kafka, &cfg.partials_topic)?,
            pending: Vec::new(),
            offsets: BTreeMap::new(),
            timeout,
        })
    }

    /// Merges the partials waiting on stage 2's partitions (at most [`MAX_DRAIN`], without
    /// waiting). The ingestor is not locked while polling: the rebalance hook locks it.
    pub fn drain(&mut self, ingestor: &Mutex<Ingestor>) -> Result<(), Error> {
        for _ in 0..MAX_DRAIN {
            let Some(m) = self.transport.recv(Duration::ZERO)? else {
                return Ok(());
            };
            if let Some(v) = &m.payload
                && let Some(d) = lock(ingestor).detect.as_mut()
            {
                d.merge_partial(v, m.partition, m.offset);
            }
            self.offsets.insert(m.partition, m.offset + 1);
        }
        Ok(())
    }

    /// Takes stage 1's partials and produces them (with those of earlier failed attempts),
    /// waiting for their delivery. An error when they are not all on the topic: the events
    /// behind them must stay unacknowledged.
    pub fn produce(&mut self, ingestor: &Mutex<Ingestor>) -> Result<(), BusError> {
        if let Some(d) = lock(ingestor).detect.as_mut() {
            self.pending.extend(d.take_partials());
        }
        if self.pending.is_empty() {
            return Ok(());
        }
        let result = self.producer.write(&self.pending, &[], self.timeout);
        let mut guard = lock(ingestor);
        let counters = guard.detect.as_mut().map(|d| &mut d.scale_out);
        match result {
            Ok(()) => {
                if let Some(c) = counters {
                    c.produced += self.pending.len() as u64;
                }
                self.pending.clear();
                Ok(())
            }
            Err(e) => {
                if let Some(c) = counters {
                    c.produce_errors += 1;
                }
                Err(e)
            }
        }
    }

    /// Commits the partials merged so far (after their effects — alerts, `g/…` records —
    /// are durable). A failed commit re-reads them after a restart (counted by the bus).
    pub fn commit(&mut self) {
        if self.offsets.is_empty() {
            return;
        }
        let offsets: Vec<(i32, i64)> = self.offsets.iter().map(|(p, o)| (*p, *o)).collect();
        if let Err(e) = self.transport.commit(&offsets, false) {
            tracing::warn!(error = %e, "committing the partials' offsets failed; they are merged again after a restart");
        }
        self.offsets.clear();
    }
}
