//! The in-memory transport of the embedded, single-process mode: with no broker configured,
//! the sensor's capture loop and the analyzer run in one process connected by a bounded
//! channel, behind the same [`EventPublisher`] and [`EventSource`] traits as Kafka, so
//! everything after the bus boundary is the same code (decoding, rejection, dedupe, acks).
//!
//! The channel carries encoded events, exactly as Kafka would, so the consumer's checks run on
//! the same bytes. It never blocks the capture loop: when the analyzer falls behind by
//! `capacity_events`, new events are dropped and counted
//! (`apitap_bus_events_dropped_total{cause="memory_full"}`). There is no durability: offsets
//! are tracked (for the same ack contract) but committing is a no-op.

use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apitap_schema::{ApiEvent, SCHEMA_VERSION, encode_event_into};

use crate::config::ConsumerConfig;
use crate::consumer::{EventConsumer, RawMessage, Tracker, Transport};
use crate::metrics::{BusMetrics, DropCause, LogLimiter};
use crate::{BusError, CloseReport, EventPublisher, Publish};

static DROP_LOG: LogLimiter = LogLimiter::new(10, 10_000);

/// Sensor side of the in-memory transport.
pub struct MemoryPublisher {
    tx: Option<SyncSender<RawMessage>>,
    next_offset: i64,
    buf: Vec<u8>,
    metrics: Arc<BusMetrics>,
}

/// Analyzer side of the in-memory transport.
pub struct MemoryTransport {
    rx: Receiver<RawMessage>,
}

/// The in-memory implementation of [`crate::EventSource`].
pub type MemoryEventConsumer = EventConsumer<MemoryTransport>;

/// Creates a connected publisher and consumer holding at most `capacity_events` events in
/// between. Both sides count into `metrics`.
pub fn channel(
    capacity_events: usize,
    consumer: &ConsumerConfig,
    metrics: Arc<BusMetrics>,
) -> (MemoryPublisher, MemoryEventConsumer) {
    let (tx, rx) = std::sync::mpsc::sync_channel(capacity_events.max(1));
    let publisher = MemoryPublisher {
        tx: Some(tx),
        next_offset: 0,
        buf: Vec::with_capacity(16 * 1024),
        metrics: metrics.clone(),
    };
    let consumer = EventConsumer::with_transport(
        MemoryTransport { rx },
        Arc::new(Mutex::new(Tracker::default())),
        consumer,
        metrics,
    );
    (publisher, consumer)
}

impl EventPublisher for MemoryPublisher {
    fn publish(&mut self, event: &ApiEvent) -> Publish {
        let m = &self.metrics;
        m.events_published.fetch_add(1, Ordering::Relaxed);
        self.buf.clear();
        encode_event_into(event, &mut self.buf);
        if self.buf.is_empty() {
            m.dropped(DropCause::Encode, 1);
            return Publish::Dropped(DropCause::Encode);
        }
        let Some(tx) = &self.tx else {
            m.dropped(DropCause::MemoryFull, 1);
            return Publish::Dropped(DropCause::MemoryFull);
        };
        let msg = RawMessage {
            partition: 0,
            offset: self.next_offset,
            payload: Some(self.buf.clone()),
            schema_header: Some(SCHEMA_VERSION.as_bytes().to_vec()),
            content_type: None,
        };
        match tx.try_send(msg) {
            Ok(()) => {
                self.next_offset += 1;
                m.events_enqueued.fetch_add(1, Ordering::Relaxed);
                m.events_delivered.fetch_add(1, Ordering::Relaxed);
                Publish::Queued
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                m.dropped(DropCause::MemoryFull, 1);
                let (log, n) = DROP_LOG.tick();
                if log {
                    tracing::warn!(
                        dropped = n,
                        "embedded analyzer is behind: event dropped (counted)"
                    );
                }
                Publish::Dropped(DropCause::MemoryFull)
            }
        }
    }

    fn close(&mut self, _timeout: Duration) -> Result<CloseReport, BusError> {
        // Dropping the sender ends the stream once the analyzer has read what is queued.
        self.tx = None;
        Ok(CloseReport {
            delivered: BusMetrics::get(&self.metrics.events_delivered),
            left_in_spool: 0,
            dropped: self.metrics.dropped_all(),
        })
    }

    fn metrics(&self) -> Arc<BusMetrics> {
        self.metrics.clone()
    }
}

impl Transport for MemoryTransport {
    fn recv(&mut self, timeout: Duration) -> Result<Option<RawMessage>, BusError> {
        match self.rx.recv_timeout(timeout) {
            Ok(m) => Ok(Some(m)),
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => Err(BusError::Closed),
        }
    }

    fn commit(&mut self, _offsets: &[(i32, i64)], _sync: bool) -> Result<(), BusError> {
        Ok(())
    }

    fn pause(&mut self, _paused: bool) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EventSource;

    #[test]
    fn events_cross_in_order_with_the_same_checks_as_kafka() {
        let metrics = Arc::new(BusMetrics::default());
        let (mut p, mut c) = channel(100, &ConsumerConfig::default(), metrics.clone());
        for i in 0..10 {
            let e = crate::producer::tests::event(i, "10.1.1.1");
            assert_eq!(p.publish(&e), Publish::Queued);
        }
        // A repeat (same event_id) is delivered by the transport but skipped by the consumer.
        let dup = crate::producer::tests::event(3, "10.1.1.1");
        assert_eq!(p.publish(&dup), Publish::Queued);
        p.close(Duration::ZERO).unwrap();
        let mut got = Vec::new();
        loop {
            match c.poll(Duration::from_millis(100)) {
                Ok(Some(r)) => {
                    got.push(r.event.request_start_unix_us - 1_700_000_000_000_000);
                    c.ack(r.ack);
                }
                Ok(None) => continue,
                Err(BusError::Closed) => break,
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(got, (0..10).collect::<Vec<_>>());
        assert_eq!(BusMetrics::get(&metrics.duplicate_events), 1);
        assert_eq!(BusMetrics::get(&metrics.events_consumed), 10);
    }

    #[test]
    fn a_full_channel_drops_and_counts_instead_of_blocking() {
        let metrics = Arc::new(BusMetrics::default());
        let (mut p, _c) = channel(2, &ConsumerConfig::default(), metrics.clone());
        let outcomes: Vec<Publish> = (0..5)
            .map(|i| p.publish(&crate::producer::tests::event(i, "10.1.1.1")))
            .collect();
        assert_eq!(outcomes[..2], [Publish::Queued, Publish::Queued]);
        assert!(
            outcomes[2..]
                .iter()
                .all(|o| *o == Publish::Dropped(DropCause::MemoryFull))
        );
        assert_eq!(metrics.dropped_total(DropCause::MemoryFull), 3);
    }
}
