//! Counters of the bus, rendered in the Prometheus text format as `apitap_bus_<name>_total`
//! (gauges without the suffix). Every lost or rejected event is counted by cause (R-BUS-2,
//! R-CAP-7, R-OPS-2). Shared between the hot path, the spool thread and the metrics endpoint
//! through an `Arc`; all updates are relaxed atomic adds.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// Why an event was lost on the producer side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropCause {
    /// The spool was full and `on_full = "drop_oldest"` deleted its oldest segment.
    SpoolFullOldest,
    /// The spool was full and `on_full = "drop_newest"` refused the event.
    SpoolFullNewest,
    /// The spool writer fell behind by more than `spool.backlog_max_bytes`.
    SpoolBacklog,
    /// Writing or reading the spool failed (I/O error).
    SpoolIo,
    /// A spool record failed its checksum or was cut short (counted per damaged region).
    SpoolCorrupt,
    /// The broker will never accept the event (e.g. larger than `message.max.bytes`).
    Rejected,
    /// The in-memory transport's queue was full (embedded mode: the analyzer is behind).
    MemoryFull,
    /// The event could not be encoded.
    Encode,
}

impl DropCause {
    /// Every cause, in rendering order.
    pub const ALL: [DropCause; 8] = [
        DropCause::SpoolFullOldest,
        DropCause::SpoolFullNewest,
        DropCause::SpoolBacklog,
        DropCause::SpoolIo,
        DropCause::SpoolCorrupt,
        DropCause::Rejected,
        DropCause::MemoryFull,
        DropCause::Encode,
    ];

    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            DropCause::SpoolFullOldest => "spool_full_oldest",
            DropCause::SpoolFullNewest => "spool_full_newest",
            DropCause::SpoolBacklog => "spool_backlog",
            DropCause::SpoolIo => "spool_io",
            DropCause::SpoolCorrupt => "spool_corrupt",
            DropCause::Rejected => "rejected",
            DropCause::MemoryFull => "memory_full",
            DropCause::Encode => "encode",
        }
    }
}

/// Why a consumed message was not handed to the caller as an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectCause {
    /// An empty message (no payload).
    Empty,
    /// Not JSON (syntax error, invalid UTF-8, binary garbage).
    NotJson,
    /// JSON cut short.
    TruncatedJson,
    /// An event of a major schema version this build does not read.
    UnsupportedVersion,
    /// JSON, but not a valid event (missing field, wrong type).
    InvalidEvent,
    /// Larger than `consumer.max_message_bytes`; not parsed.
    TooLarge,
}

impl RejectCause {
    /// Every cause, in rendering order.
    pub const ALL: [RejectCause; 6] = [
        RejectCause::Empty,
        RejectCause::NotJson,
        RejectCause::TruncatedJson,
        RejectCause::UnsupportedVersion,
        RejectCause::InvalidEvent,
        RejectCause::TooLarge,
    ];

    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectCause::Empty => "empty",
            RejectCause::NotJson => "not_json",
            RejectCause::TruncatedJson => "truncated_json",
            RejectCause::UnsupportedVersion => "unsupported_version",
            RejectCause::InvalidEvent => "invalid_event",
            RejectCause::TooLarge => "too_large",
        }
    }
}

/// Class of a produce error, as a label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorLabel {
    /// Transient; the event was kept.
    Retryable,
    /// The broker refused the event for good; dropped.
    Rejected,
    /// The producer had to be rebuilt; the event was kept.
    Fatal,
}

/// The bus's counters and gauges.
#[derive(Debug, Default)]
pub struct BusMetrics {
    /// Events handed to the bus by the sensor.
    pub events_published: AtomicU64,
    /// Events handed to the Kafka client (directly or replayed from the spool).
    pub events_enqueued: AtomicU64,
    /// Events acknowledged by the broker (or taken by the in-memory consumer).
    pub events_delivered: AtomicU64,
    /// Events written to the spool.
    pub events_spooled: AtomicU64,
    /// Spooled events handed to the Kafka client again.
    pub events_replayed: AtomicU64,
    dropped: [AtomicU64; DropCause::ALL.len()],
    produce_errors: [AtomicU64; 3],
    /// Times the broker was found unreachable (new events then go to the spool).
    pub broker_unreachable: AtomicU64,
    /// Times the producer was rebuilt after a fatal error.
    pub producer_rebuilds: AtomicU64,
    /// Alerts handed to the alert producer.
    pub alerts_published: AtomicU64,
    /// Alerts acknowledged by the broker.
    pub alerts_delivered: AtomicU64,
    /// Alerts that could not be delivered.
    pub alerts_failed: AtomicU64,
    /// Messages read from the events topic (or the in-memory transport).
    pub messages_received: AtomicU64,
    /// Events handed to the consumer's caller.
    pub events_consumed: AtomicU64,
    /// Events skipped because their `event_id` was seen within the dedupe window.
    pub duplicate_events: AtomicU64,
    rejected: [AtomicU64; RejectCause::ALL.len()],
    /// Offset commits that succeeded.
    pub commits: AtomicU64,
    /// Offset commits that failed (retried at the next interval).
    pub commit_errors: AtomicU64,
    /// Errors reported while consuming (the consumer keeps going).
    pub consume_errors: AtomicU64,
    /// Partition assignments and revocations seen.
    pub rebalances: AtomicU64,
    /// Gauge: bytes in the spool's segment files.
    pub spool_bytes: AtomicU64,
    /// Gauge: events in the spool not yet delivered.
    pub spool_events: AtomicU64,
    /// Gauge: events in the Kafka client's memory queue.
    pub producer_queue_events: AtomicU64,
    /// Gauge: 1 while new events go to the spool instead of the Kafka client.
    pub spooling: AtomicU64,
    /// Gauge: 1 while the spool could not be opened (events Kafka cannot take now are then
    /// dropped as `spool_io`; opening is retried).
    pub spool_unavailable: AtomicU64,
    /// Failed attempts to open the spool.
    pub spool_open_failures: AtomicU64,
    /// Gauge: events handed to the consumer's caller and not acknowledged yet.
    pub unacked_events: AtomicU64,
}

fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

impl BusMetrics {
    /// Counts `n` events lost for `cause`.
    pub fn dropped(&self, cause: DropCause, n: u64) {
        add(&self.dropped[cause as usize], n);
    }

    /// Events lost for `cause` so far.
    pub fn dropped_total(&self, cause: DropCause) -> u64 {
        self.dropped[cause as usize].load(Ordering::Relaxed)
    }

    /// Events lost for any cause so far.
    pub fn dropped_all(&self) -> u64 {
        DropCause::ALL.iter().map(|c| self.dropped_total(*c)).sum()
    }

    /// Counts a produce error.
    pub fn produce_error(&self, class: ErrorLabel) {
        add(&self.produce_errors[class as usize], 1);
    }

    /// Produce errors of `class` so far.
    pub fn produce_errors_total(&self, class: ErrorLabel) -> u64 {
        self.produce_errors[class as usize].load(Ordering::Relaxed)
    }

    /// Counts a rejected consumed message.
    pub fn rejected(&self, cause: RejectCause) {
        add(&self.rejected[cause as usize], 1);
    }

    /// Rejected messages of `cause` so far.
    pub fn rejected_total(&self, cause: RejectCause) -> u64 {
        self.rejected[cause as usize].load(Ordering::Relaxed)
    }

    /// Rejected messages of any cause so far.
    pub fn rejected_all(&self) -> u64 {
        RejectCause::ALL
            .iter()
            .map(|c| self.rejected_total(*c))
            .sum()
    }

    /// Reads a counter or gauge.
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }

    /// Appends the Prometheus text exposition of every counter and gauge to `out`.
    pub fn render(&self, out: &mut String) {
        let counters: [(&str, &AtomicU64); 17] = [
            ("events_published", &self.events_published),
            ("events_enqueued", &self.events_enqueued),
            ("events_delivered", &self.events_delivered),
            ("events_spooled", &self.events_spooled),
            ("events_replayed", &self.events_replayed),
            ("broker_unreachable", &self.broker_unreachable),
            ("producer_rebuilds", &self.producer_rebuilds),
            ("alerts_published", &self.alerts_published),
            ("alerts_delivered", &self.alerts_delivered),
            ("alerts_failed", &self.alerts_failed),
            ("messages_received", &self.messages_received),
            ("events_consumed", &self.events_consumed),
            ("duplicate_events", &self.duplicate_events),
            ("commits", &self.commits),
            ("commit_errors", &self.commit_errors),
            ("consume_errors", &self.consume_errors),
            ("rebalances", &self.rebalances),
        ];
        for (name, c) in counters {
            let _ = writeln!(out, "apitap_bus_{name}_total {}", Self::get(c));
        }
        for cause in DropCause::ALL {
            let _ = writeln!(
                out,
                "apitap_bus_events_dropped_total{{cause=\"{}\"}} {}",
                cause.as_str(),
                self.dropped_total(cause)
            );
        }
        for (class, name) in [
            (ErrorLabel::Retryable, "retryable"),
            (ErrorLabel::Rejected, "rejected"),
            (ErrorLabel::Fatal, "fatal"),
        ] {
            let _ = writeln!(
                out,
                "apitap_bus_produce_errors_total{{class=\"{name}\"}} {}",
                self.produce_errors_total(class)
            );
        }
        for cause in RejectCause::ALL {
            let _ = writeln!(
                out,
                "apitap_bus_rejected_messages_total{{cause=\"{}\"}} {}",
                cause.as_str(),
                self.rejected_total(cause)
            );
        }
        let _ = writeln!(
            out,
            "apitap_bus_spool_open_failures_total {}",
            Self::get(&self.spool_open_failures)
        );
        let gauges: [(&str, &AtomicU64); 6] = [
            ("spool_bytes", &self.spool_bytes),
            ("spool_events", &self.spool_events),
            ("producer_queue_events", &self.producer_queue_events),
            ("spooling", &self.spooling),
            ("spool_unavailable", &self.spool_unavailable),
            ("unacked_events", &self.unacked_events),
        ];
        for (name, g) in gauges {
            let _ = writeln!(out, "apitap_bus_{name} {}", Self::get(g));
        }
    }

    /// The exposition as a string.
    pub fn render_string(&self) -> String {
        let mut s = String::with_capacity(2048);
        self.render(&mut s);
        s
    }
}

/// Rate limit for per-item warnings: the first few are logged, then one in `every`, so a
/// flood of bad input cannot flood the logs (every item is still counted).
#[derive(Debug)]
pub(crate) struct LogLimiter {
    seen: AtomicU64,
    first: u64,
    every: u64,
}

impl LogLimiter {
    pub(crate) const fn new(first: u64, every: u64) -> Self {
        LogLimiter {
            seen: AtomicU64::new(0),
            first,
            every,
        }
    }

    /// True when this occurrence should be logged; `n` is its 1-based number.
    pub(crate) fn tick(&self) -> (bool, u64) {
        let n = self.seen.fetch_add(1, Ordering::Relaxed) + 1;
        (n <= self.first || n.is_multiple_of(self.every), n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_with_the_bus_prefix_and_causes_as_labels() {
        let m = BusMetrics::default();
        m.dropped(DropCause::SpoolFullOldest, 3);
        m.rejected(RejectCause::UnsupportedVersion);
        add(&m.events_delivered, 7);
        let s = m.render_string();
        assert!(s.contains("apitap_bus_events_dropped_total{cause=\"spool_full_oldest\"} 3"));
        assert!(s.contains("apitap_bus_rejected_messages_total{cause=\"unsupported_version\"} 1"));
        assert!(s.contains("apitap_bus_events_delivered_total 7"));
        assert!(s.contains("apitap_bus_spool_bytes 0"));
        for line in s.lines() {
            let name = line.split(['{', ' ']).next().unwrap();
            assert!(name.starts_with("apitap_bus_"), "{line}");
        }
        assert_eq!(m.dropped_all(), 3);
    }

    #[test]
    fn log_limiter_logs_first_then_sampled() {
        let l = LogLimiter::new(2, 10);
        let logged: Vec<bool> = (0..20).map(|_| l.tick().0).collect();
        assert_eq!(logged.iter().filter(|b| **b).count(), 4); // 1, 2, 10, 20
    }
}
