//! The analyzer's detection-state topic (issue 18, R-THR-5): a compacted topic of
//! `(key, record)` pairs where the analyzer checkpoints its open campaigns and baselines
//! (`apitap_detect::checkpoint`), the Kafka Streams changelog pattern. Compaction keeps the
//! latest record per key; a closed campaign is a tombstone (a record without a value).
//!
//! [`StateTopic::write`] produces a batch and waits for its delivery (idempotent, `acks=all`,
//! like the events): the analyzer commits event offsets only after the state they produced is
//! on the topic. [`StateTopic::read_all`] reads the topic from its beginning to the high
//! watermark of each partition as of the call, with a manual assignment (no group), and keeps
//! the latest value per key; bounded by a record count, beyond which keys are dropped and
//! counted.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tracing::warn;

use crate::BusError;
use crate::config::{ClientRole, KafkaConfig};
use crate::kafka::{client_config, describe};
use crate::metrics::LogLimiter;

static STATE_LOG: LogLimiter = LogLimiter::new(20, 100);

/// Counts failed deliveries of state records.
struct StateCtx {
    failed: Arc<AtomicU64>,
}

impl ClientContext for StateCtx {
    fn error(&self, error: KafkaError, reason: &str) {
        let (log, n) = STATE_LOG.tick();
        if log {
            warn!(error = %describe(&error), reason, occurrence = n, "kafka state producer");
        }
    }
}

impl ProducerContext for StateCtx {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            self.failed.fetch_add(1, Ordering::Relaxed);
            let (log, n) = STATE_LOG.tick();
            if log {
                warn!(error = %describe(e), occurrence = n, "a state record could not be delivered");
            }
        }
    }
}

/// What [`StateTopic::read_all`] found.
#[derive(Debug, Default)]
pub struct StateSnapshot {
    /// The latest value of each key (tombstoned keys removed).
    pub records: HashMap<String, Vec<u8>>,
    /// Messages read.
    pub messages: u64,
    /// Keys dropped because the snapshot held its maximum of records.
    pub dropped: u64,
    /// Messages whose key is not UTF-8 (skipped).
    pub bad_keys: u64,
    /// Every partition was read up to its high watermark (false: the timeout came first).
    pub complete: bool,
}

/// Producer and reader of the state topic.
pub struct StateTopic {
    cfg: KafkaConfig,
    topic: String,
    producer: BaseProducer<StateCtx>,
    failed: Arc<AtomicU64>,
    reported_failed: u64,
}

impl StateTopic {
    /// A producer for `topic` with the brokers and security settings of `cfg`.
    pub fn new(cfg: &KafkaConfig, topic: &str) -> Result<StateTopic, BusError> {
        cfg.validate()?;
        let failed = Arc::new(AtomicU64::new(0));
        let mut c = client_config(cfg, ClientRole::Producer)?;
        c.set("linger.ms", "5");
        c.set("client.id", format!("{}-state", cfg.producer.client_id));
        let producer = c
            .create_with_context(StateCtx {
                failed: failed.clone(),
            })
            .map_err(|e| BusError::kafka("creating the state producer", &e))?;
        Ok(StateTopic {
            cfg: cfg.clone(),
            topic: topic.to_owned(),
            producer,
            failed,
            reported_failed: 0,
        })
    }

    /// Produces `put` records and `delete` tombstones and waits until the broker has them all
    /// (at most `timeout`). An error means some may not be on the topic.
    pub fn write(
        &mut self,
        put: &[(String, Vec<u8>)],
        delete: &[String],
        timeout: Duration,
    ) -> Result<(), BusError> {
        let deadline = Instant::now() + timeout;
        let send = |key: &str, value: Option<&[u8]>| -> Result<(), BusError> {
            loop {
                let mut rec = BaseRecord::<[u8], [u8]>::to(&self.topic).key(key.as_bytes());
                if let Some(v) = value {
                    rec = rec.payload(v);
                }
                match self.producer.send(rec) {
                    Ok(()) => return Ok(()),
                    Err((e, _))
                        if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull)
                            && Instant::now() < deadline =>
                    {
                        self.producer.poll(Duration::from_millis(20));
                    }
                    Err((e, _)) => return Err(BusError::kafka("producing a state record", &e)),
                }
            }
        };
        for (k, v) in put {
            send(k, Some(v))?;
        }
        for k in delete {
            send(k, None)?;
        }
        self.producer
            .flush(deadline.saturating_duration_since(Instant::now()))
            .map_err(|e| BusError::kafka("flushing state records", &e))?;
        let failed = self.failed.load(Ordering::Relaxed);
        let new = failed - self.reported_failed;
        self.reported_failed = failed;
        if new > 0 {
            return Err(BusError::Kafka {
                context: "delivering state records",
                detail: format!("{new} not delivered"),
            });
        }
        Ok(())
    }

    /// Reads every partition of the topic from its beginning to its current high watermark,
    /// within `timeout`; keeps at most `max_records` keys.
    pub fn read_all(
        &self,
        timeout: Duration,
        max_records: usize,
    ) -> Result<StateSnapshot, BusError> {
        let deadline = Instant::now() + timeout;
        let mut c = client_config(&self.cfg, ClientRole::Consumer)?;
        // A manual assignment, outside the event consumers' group: nothing is committed.
        c.set(
            "group.id",
            format!("{}-state-reader", self.cfg.consumer.group_id),
        );
        c.set("enable.auto.commit", "false");
        let consumer: BaseConsumer = c
            .create()
            .map_err(|e| BusError::kafka("creating the state reader", &e))?;
        let left = || deadline.saturating_duration_since(Instant::now());
        let md = consumer
            .fetch_metadata(Some(&self.topic), left())
            .map_err(|e| BusError::kafka("reading the state topic's metadata", &e))?;
        let Some(t) = md.topics().iter().find(|t| t.name() == self.topic) else {
            return Err(BusError::Kafka {
                context: "reading the state topic",
                detail: "topic not found".into(),
            });
        };
        if let Some(e) = t.error() {
            return Err(BusError::Kafka {
                context: "reading the state topic",
                detail: format!("{:?}", RDKafkaErrorCode::from(e)),
            });
        }
        let mut ends: HashMap<i32, i64> = HashMap::new();
        let mut tpl = TopicPartitionList::new();
        for p in t.partitions() {
            let (low, high) = consumer
                .fetch_watermarks(&self.topic, p.id(), left())
                .map_err(|e| BusError::kafka("reading the state topic's watermarks", &e))?;
            if high > low {
                ends.insert(p.id(), high);
                tpl.add_partition_offset(&self.topic, p.id(), Offset::Beginning)
                    .map_err(|e| BusError::kafka("assigning the state topic", &e))?;
            }
        }
        let mut snap = StateSnapshot::default();
        if ends.is_empty() {
            snap.complete = true;
            return Ok(snap);
        }
        consumer
            .assign(&tpl)
            .map_err(|e| BusError::kafka("assigning the state topic", &e))?;
        while !ends.is_empty() && Instant::now() < deadline {
            let Some(m) = consumer.poll(left().min(Duration::from_millis(200))) else {
                continue;
            };
            let m = match m {
                Ok(m) => m,
                Err(e) => {
                    warn!(error = %describe(&e), "reading the state topic; continuing");
                    continue;
                }
            };
            snap.messages += 1;
            if let Some(&end) = ends.get(&m.partition())
                && m.offset() + 1 >= end
            {
                ends.remove(&m.partition());
            }
            let Some(key) = m.key().and_then(|k| std::str::from_utf8(k).ok()) else {
                snap.bad_keys += 1;
                continue;
            };
            match m.payload() {
                None => {
                    snap.records.remove(key);
                }
                Some(v) => {
                    if snap.records.len() >= max_records && !snap.records.contains_key(key) {
                        snap.dropped += 1;
                    } else {
                        snap.records.insert(key.to_owned(), v.to_vec());
                    }
                }
            }
        }
        snap.complete = ends.is_empty();
        Ok(snap)
    }
}
