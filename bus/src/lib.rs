//! apitap's event bus: everything between the sensor's decoder and the analyzer's logic
//! (R-BUS-1, R-BUS-2, R-BUS-3, R-OPS-1).
//!
//! This crate owns the transport of [`apitap_schema::ApiEvent`]s and alerts:
//!
//! - the `[kafka]` configuration section shared by sensor and analyzer ([`config`]), with the
//!   `librdkafka_options` passthrough and the checks that keep the product's guarantees;
//! - the sensor-side [`EventPublisher`] trait and its Kafka implementation
//!   ([`producer::KafkaEventPublisher`]: idempotent, batched, lz4/zstd, keyed, headers) with the
//!   bounded on-disk [`spool`] that keeps events while the broker is slow or down;
//! - the analyzer-side [`EventSource`] trait and its Kafka consumer-group implementation
//!   ([`consumer::KafkaEventConsumer`]): at-least-once with explicit acknowledgments, dedupe by
//!   `event_id`, bad input counted and skipped;
//! - the in-memory transport of the embedded single-process mode ([`memory`]), behind the same
//!   two traits;
//! - the alert type and producer ([`alert`]), topic creation ([`admin`]) and counters
//!   ([`metrics`], `apitap_bus_<name>_total`);
//! - the analyzer's compacted detection-state topic ([`state`], issue 18).
//!
//! Only the standard Kafka protocol is used (Apache Kafka, Redpanda, MSK, …); nothing depends
//! on the broker used by the tests. Event contents never reach a log line (R-OPS-3).

pub mod admin;
pub mod alert;
pub mod config;
pub mod consumer;
pub mod kafka;
pub mod memory;
pub mod metrics;
pub mod producer;
pub mod spool;
pub mod state;

use std::sync::Arc;
use std::time::Duration;

use apitap_schema::ApiEvent;

pub use alert::{AlertDocument, AlertPublisher, KafkaAlertPublisher};
pub use config::{ConfigError, KafkaConfig};
pub use consumer::{AckToken, EventConsumer, KafkaEventConsumer, RebalanceHook, Received};
pub use memory::{MemoryEventConsumer, MemoryPublisher};
pub use metrics::{BusMetrics, DropCause, RejectCause};
pub use producer::KafkaEventPublisher;

/// What [`EventPublisher::publish`] did with an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Publish {
    /// Handed to the transport's memory queue.
    Queued,
    /// On its way to the on-disk spool (broker slow or down, or older events still spooled).
    Spooled,
    /// Lost, for the given cause (counted in `apitap_bus_events_dropped_total{cause}`).
    Dropped(DropCause),
}

/// What a publisher left behind when it closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CloseReport {
    /// Events acknowledged by the transport over the publisher's life.
    pub delivered: u64,
    /// Events left in the spool for the next start.
    pub left_in_spool: u64,
    /// Events lost over the publisher's life (all causes).
    pub dropped: u64,
}

/// The sensor side of the bus boundary. Implementations never block on the network: the
/// capture loop calls [`EventPublisher::publish`] once per event and must not wait.
pub trait EventPublisher: Send {
    /// Hands one event to the transport.
    fn publish(&mut self, event: &ApiEvent) -> Publish;
    /// Delivers what it can within `timeout`, keeps the rest (spool) and stops. Idempotent.
    fn close(&mut self, timeout: Duration) -> Result<CloseReport, BusError>;
    /// The counters this publisher updates.
    fn metrics(&self) -> Arc<BusMetrics>;
}

/// The analyzer side of the bus boundary: see [`consumer`] for the at-least-once contract.
pub trait EventSource: Send {
    /// The next event, waiting at most `timeout`; `Ok(None)` when none arrived in time.
    /// Rejected messages and duplicates are skipped (counted) and never returned.
    /// `Err(BusError::Closed)` when the source has ended for good (embedded mode: the sensor
    /// stopped and everything was read); other errors are fatal to the consumer.
    fn poll(&mut self, timeout: Duration) -> Result<Option<Received>, BusError>;
    /// Declares the effects of the event behind `token` durable; its offset may be committed.
    fn ack(&mut self, token: AckToken);
    /// Commits every acknowledged position now (also done every `commit_interval_ms` in
    /// `poll`).
    fn commit(&mut self) -> Result<(), BusError>;
    /// Commits what is acknowledged; call before dropping (dropping leaves the group).
    fn close(&mut self) -> Result<(), BusError>;
    /// Installs a hook told of partition assignments and revocations (issue 18); false when
    /// the source has no consumer group (the in-memory transport).
    fn set_rebalance_hook(&mut self, _hook: Arc<dyn consumer::RebalanceHook>) -> bool {
        false
    }
    /// The counters this consumer updates.
    fn metrics(&self) -> Arc<BusMetrics>;
}

/// Errors of the bus. Messages never include event contents or configuration values.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// Invalid configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A Kafka client operation failed.
    #[error("kafka: {context}: {detail}")]
    Kafka {
        /// What was being done.
        context: &'static str,
        /// The client's error (code and description).
        detail: String,
    },
    /// The spool failed.
    #[error(transparent)]
    Spool(#[from] spool::SpoolError),
    /// The source ended (the in-memory publisher closed and everything was read).
    #[error("the event source is closed")]
    Closed,
    /// Alerts could not be delivered.
    #[error("{failed} alert(s) could not be delivered")]
    AlertsUndelivered {
        /// How many since the last flush.
        failed: u64,
    },
    /// A document did not parse (kind and position only).
    #[error("malformed {0}")]
    Decode(String),
    /// A background thread could not start or panicked.
    #[error("bus thread: {0}")]
    Thread(String),
}

impl BusError {
    pub(crate) fn kafka(context: &'static str, e: &rdkafka::error::KafkaError) -> BusError {
        BusError::Kafka {
            context,
            detail: kafka::describe(e),
        }
    }
}

#[cfg(test)]
mod mock_tests;
