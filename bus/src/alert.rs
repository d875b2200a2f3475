//! Alerts on their own topic (R-BUS-3): a minimal [`Alert`] document and its producer, keyed by
//! alert id. The detections that fill in real content (who, which API, when, how much, sample
//! requests) arrive with later issues; the transport is here now.
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
use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::BusError;
use crate::config::{ClientRole, KafkaConfig};
use crate::kafka::{client_config, describe};
use crate::metrics::{BusMetrics, LogLimiter};

/// Version of the alert document written by this build (`MAJOR.MINOR`, same rules as events).
pub const ALERT_SCHEMA_VERSION: &str = "0.1";
/// Header carrying the alert schema version.
pub const HEADER_ALERT_SCHEMA_VERSION: &str = "apitap-alert-schema-version";

/// How urgent an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// For the record.
    Info,
    /// Low.
    Low,
    /// Medium.
    Medium,
    /// High.
    High,
    /// Critical.
    Critical,
}

/// A minimal alert. Must not carry raw sensitive values (masked samples only, R-OPS-3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// [`ALERT_SCHEMA_VERSION`] of the writer.
    pub schema_version: String,
    /// Unique, stable id: the message key and the SIEM's deduplication key.
    pub alert_id: String,
    /// When the alert was raised, microseconds since the Unix epoch.
    pub created_unix_us: u64,
    /// Detection that raised it, e.g. `"credential_stuffing"`.
    pub kind: String,
    /// How urgent.
    pub severity: Severity,
    /// One line for a human, without sensitive values.
    pub summary: String,
    /// `event_id`s of the evidence.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub event_ids: Vec<String>,
}

impl Alert {
    /// An alert of this build's schema version.
    pub fn new(
        alert_id: impl Into<String>,
        created_unix_us: u64,
        kind: impl Into<String>,
        severity: Severity,
        summary: impl Into<String>,
    ) -> Alert {
        Alert {
            schema_version: ALERT_SCHEMA_VERSION.into(),
            alert_id: alert_id.into(),
            created_unix_us,
            kind: kind.into(),
            severity,
            summary: summary.into(),
            event_ids: Vec::new(),
        }
    }
}

/// Serialises an alert as one JSON object.
pub fn encode_alert(alert: &Alert) -> Vec<u8> {
    serde_json::to_vec(alert).unwrap_or_default()
}

/// Parses an alert (messages never echo the input).
pub fn decode_alert(bytes: &[u8]) -> Result<Alert, BusError> {
    serde_json::from_slice(bytes)
        .map_err(|e| BusError::Decode(format!("alert: {:?}", e.classify())))
}

/// Where the analyzer sends alerts: Kafka, or any sink the analyzer implements (a file in the
/// embedded mode).
pub trait AlertPublisher: Send {
    /// Queues one alert. May wait (bounded) when the client's queue is full; never drops.
    fn publish(&mut self, alert: &Alert) -> Result<(), BusError>;
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
        let mut c = client_config(cfg, ClientRole::Producer);
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
    fn publish(&mut self, alert: &Alert) -> Result<(), BusError> {
        let value = encode_alert(alert);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let headers = OwnedHeaders::new().insert(Header {
                key: HEADER_ALERT_SCHEMA_VERSION,
                value: Some(alert.schema_version.as_str()),
            });
            let rec = BaseRecord::to(&self.topic)
                .key(alert.alert_id.as_bytes())
                .payload(value.as_slice())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alert_round_trips_and_decode_errors_do_not_echo_input() {
        let mut a = Alert::new(
            "a-1",
            5,
            "enumeration",
            Severity::High,
            "id sweep on /users/{id}",
        );
        a.event_ids.push("0".repeat(32));
        assert_eq!(decode_alert(&encode_alert(&a)).unwrap(), a);
        let err = decode_alert(b"{\"alert_id\":\"secret-value\"").unwrap_err();
        assert!(!err.to_string().contains("secret-value"));
    }
}
