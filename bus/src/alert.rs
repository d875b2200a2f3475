//! Alerts on their own topic (R-BUS-3): [`AlertDocument`]s (the analyzer's OCSF findings, as
//! JSON) keyed by the finding's stable uid, and their producer.
//!
//! Alerts are produced with the same enforced settings as events (idempotent, `acks=all`,
//! compressed, retried without a local timeout). [`AlertPublisher::flush`] reports alerts that
//! could not be delivered, so the analyzer acknowledges the events behind an alert only once
//! the alert is safely on the topic (at-least-once end to end).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use tracing::warn;

use crate::BusError;
use crate::config::{ClientRole, KafkaConfig};
use crate::kafka::{client_config, describe};
use crate::metrics::{BusMetrics, LogLimiter};

/// Header naming the alert document format, e.g. `ocsf/1.3.0`: the analyzer's alerts are
/// OCSF findings (Detection Finding 2004, Data Security Finding 2006, Application Security
/// Posture Finding 2007), which SIEMs parse without an apitap-specific schema.
pub const HEADER_ALERT_FORMAT: &str = "apitap-alert-format";

/// One alert as it goes on the alert topic.
#[derive(Debug, Clone, Copy)]
pub struct AlertDocument<'a> {
    /// Message key: the finding's stable `finding_info.uid`, so every update of one finding
    /// lands on one partition in order and a compacted topic keeps its latest state.
    pub key: &'a str,
    /// The JSON document. Must not carry raw sensitive values (masked samples and keyed
    /// hashes only, R-OPS-3).
    pub json: &'a [u8],
    /// Value of the [`HEADER_ALERT_FORMAT`] header.
    pub format: &'a str,
}

/// Where the analyzer sends alerts: Kafka, or any sink the analyzer implements.
pub trait AlertPublisher: Send {
    /// Queues one alert. May wait (bounded) when the client's queue is full; never drops.
    fn publish(&mut self, alert: AlertDocument<'_>) -> Result<(), BusError>;
    /// Waits until every alert published so far is delivered; an error reports how many could
    /// not be (they are not retried: publish them again).
    fn flush(&mut self, timeout: Duration) -> Result<(), BusError>;
}

struct AlertCtx {
    metrics: Arc<BusMetrics>,
    failed: AtomicU64,
}

static ALERT_LOG: LogLimiter = LogLimiter::new(20, 100);

impl ClientContext for AlertCtx {
    fn error(&self, error: KafkaError, reason: &str) {
        let (log, n) = ALERT_LOG.tick();
        if log {
            warn!(error = %describe(&error), reason, occurrence = n, "kafka alert producer");
        }
    }
}

impl ProducerContext for AlertCtx {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.metrics
                    .alerts_delivered
                    .fetch_add(1, Ordering::Relaxed);
            }
            Err((e, _)) => {
                self.metrics.alerts_failed.fetch_add(1, Ordering::Relaxed);
                self.failed.fetch_add(1, Ordering::Relaxed);
                warn!(error = %describe(e), "an alert could not be delivered");
            }
        }
    }
}

/// The Kafka [`AlertPublisher`].
pub struct KafkaAlertPublisher {
    producer: BaseProducer<AlertCtx>,
    topic: String,
    metrics: Arc<BusMetrics>,
    reported_failed: u64,
}

impl KafkaAlertPublisher {
    /// Creates the producer for `cfg.alerts_topic`.
    pub fn new(cfg: &KafkaConfig, metrics: Arc<BusMetrics>) -> Result<Self, BusError> {
        cfg.validate()?;
        // Alerts are few: deliver promptly rather than batch.
        let mut c = client_config(cfg, ClientRole::Producer)?;
        c.set("linger.ms", "5");
        let producer = c
            .create_with_context(AlertCtx {
                metrics: metrics.clone(),
                failed: AtomicU64::new(0),
            })
            .map_err(|e| BusError::kafka("creating the alert producer", &e))?;
        Ok(KafkaAlertPublisher {
            producer,
            topic: cfg.alerts_topic.clone(),
            metrics,
            reported_failed: 0,
        })
    }
}

impl AlertPublisher for KafkaAlertPublisher {
    fn publish(&mut self, alert: AlertDocument<'_>) -> Result<(), BusError> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let headers = OwnedHeaders::new().insert(Header {
                key: HEADER_ALERT_FORMAT,
                value: Some(alert.format),
            });
            let rec = BaseRecord::to(&self.topic)
                .key(alert.key.as_bytes())
                .payload(alert.json)
                .headers(headers);
            match self.producer.send(rec) {
                Ok(()) => {
                    self.metrics
                        .alerts_published
                        .fetch_add(1, Ordering::Relaxed);
                    self.producer.poll(Duration::ZERO);
                    return Ok(());
                }
                Err((e, _))
                    if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull)
                        && Instant::now() < deadline =>
                {
                    self.producer.poll(Duration::from_millis(50));
                }
                Err((e, _)) => return Err(BusError::kafka("producing an alert", &e)),
            }
        }
    }

    fn flush(&mut self, timeout: Duration) -> Result<(), BusError> {
        self.producer
            .flush(timeout)
            .map_err(|e| BusError::kafka("flushing alerts", &e))?;
        let failed = self.producer.context().failed.load(Ordering::Relaxed);
        let new = failed - self.reported_failed;
        self.reported_failed = failed;
        if new > 0 {
            return Err(BusError::AlertsUndelivered { failed: new });
        }
        Ok(())
    }
}
