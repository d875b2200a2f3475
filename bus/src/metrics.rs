//! Counters of the bus, added to the sensor's or the analyzer's Prometheus exposition
//! ([`apitap_metrics::Exposition`]) as `apitap_bus_<name>_total` (gauges without the suffix). Every lost or rejected event is counted by cause (R-BUS-2,
//! R-CAP-7, R-OPS-2). Shared between the hot path, the spool thread and the metrics endpoint
//! through an `Arc`; all updates are relaxed atomic adds.

use std::sync::atomic::{AtomicU64, Ordering};

use apitap_metrics::{Exposition, Kind};

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
    /// A `content-type` header naming an encoding this build does not read.
    UnknownEncoding,
    /// Declared MessagePack, but not MessagePack (garbage, cut short).
    NotMsgpack,
}

impl RejectCause {
    /// Every cause, in rendering order.
    pub const ALL: [RejectCause; 8] = [
        RejectCause::Empty,
        RejectCause::NotJson,
        RejectCause::TruncatedJson,
        RejectCause::UnsupportedVersion,
        RejectCause::InvalidEvent,
        RejectCause::TooLarge,
        RejectCause::UnknownEncoding,
        RejectCause::NotMsgpack,
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
            RejectCause::UnknownEncoding => "unknown_encoding",
            RejectCause::NotMsgpack => "not_msgpack",
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

    /// Adds every counter and gauge to `out` (the sensor's or the analyzer's exposition).
    pub fn render(&self, out: &mut Exposition) {
        let counters: [(&str, &str, &AtomicU64); 17] = [
            (
                "apitap_bus_events_published_total",
                "Events handed to the bus by the sensor.",
                &self.events_published,
            ),
            (
                "apitap_bus_events_enqueued_total",
                "Events handed to the Kafka client, directly or replayed from the spool.",
                &self.events_enqueued,
            ),
            (
                "apitap_bus_events_delivered_total",
                "Events acknowledged by the broker or taken by the in-memory consumer.",
                &self.events_delivered,
            ),
            (
                "apitap_bus_events_spooled_total",
                "Events written to the spool.",
                &self.events_spooled,
            ),
            (
                "apitap_bus_events_replayed_total",
                "Spooled events handed to the Kafka client again.",
                &self.events_replayed,
            ),
            (
                "apitap_bus_broker_unreachable_total",
                "Times the broker was found unreachable (new events then go to the spool).",
                &self.broker_unreachable,
            ),
            (
                "apitap_bus_producer_rebuilds_total",
                "Times the Kafka producer was rebuilt after a fatal error.",
                &self.producer_rebuilds,
            ),
            (
                "apitap_bus_alerts_published_total",
                "Alerts handed to the alert producer.",
                &self.alerts_published,
            ),
            (
                "apitap_bus_alerts_delivered_total",
                "Alerts acknowledged by the broker.",
                &self.alerts_delivered,
            ),
            (
                "apitap_bus_alerts_failed_total",
                "Alerts that could not be delivered.",
                &self.alerts_failed,
            ),
            (
                "apitap_bus_messages_received_total",
                "Messages read from the events topic or the in-memory transport.",
                &self.messages_received,
            ),
            (
                "apitap_bus_events_consumed_total",
                "Events handed to the consumer's caller.",
                &self.events_consumed,
            ),
            (
                "apitap_bus_duplicate_events_total",
                "Events skipped because their event_id was seen within the dedupe window.",
                &self.duplicate_events,
            ),
            (
                "apitap_bus_commits_total",
                "Offset commits that succeeded.",
                &self.commits,
            ),
            (
                "apitap_bus_commit_errors_total",
                "Offset commits that failed (retried at the next interval).",
                &self.commit_errors,
            ),
            (
                "apitap_bus_consume_errors_total",
                "Errors reported while consuming (the consumer keeps going).",
                &self.consume_errors,
            ),
            (
                "apitap_bus_rebalances_total",
                "Partition assignments and revocations seen.",
                &self.rebalances,
            ),
        ];
        for (name, help, c) in counters {
            out.counter(name, help, Self::get(c));
        }
        let mut f = out.family(
            "apitap_bus_events_dropped_total",
            Kind::Counter,
            "Events lost on the producer side, by cause.",
        );
        for cause in DropCause::ALL {
            f.sample(&[("cause", cause.as_str())], self.dropped_total(cause));
        }
        let mut f = out.family(
            "apitap_bus_produce_errors_total",
            Kind::Counter,
            "Kafka produce errors, by class (retryable and fatal keep the event, rejected drops it).",
        );
        for (class, name) in [
            (ErrorLabel::Retryable, "retryable"),
            (ErrorLabel::Rejected, "rejected"),
            (ErrorLabel::Fatal, "fatal"),
        ] {
            f.sample(&[("class", name)], self.produce_errors_total(class));
        }
        let mut f = out.family(
            "apitap_bus_rejected_messages_total",
            Kind::Counter,
            "Consumed messages not handed on as events, by cause.",
        );
        for cause in RejectCause::ALL {
            f.sample(&[("cause", cause.as_str())], self.rejected_total(cause));
        }
        out.counter(
            "apitap_bus_spool_open_failures_total",
            "Failed attempts to open the spool.",
            Self::get(&self.spool_open_failures),
        );
        let gauges: [(&str, &str, &AtomicU64); 6] = [
            (
                "apitap_bus_spool_bytes",
                "Bytes in the spool's segment files.",
                &self.spool_bytes,
            ),
            (
                "apitap_bus_spool_events",
                "Events in the spool not yet delivered.",
                &self.spool_events,
            ),
            (
                "apitap_bus_producer_queue_events",
                "Events in the Kafka client's memory queue.",
                &self.producer_queue_events,
            ),
            (
                "apitap_bus_spooling",
                "1 while new events go to the spool instead of the Kafka client.",
                &self.spooling,
            ),
            (
                "apitap_bus_spool_unavailable",
                "1 while the spool cannot be opened (events Kafka cannot take now are dropped as spool_io).",
                &self.spool_unavailable,
            ),
            (
                "apitap_bus_unacked_events",
                "Events handed to the consumer's caller and not acknowledged yet.",
                &self.unacked_events,
            ),
        ];
        for (name, help, g) in gauges {
            out.gauge(name, help, Self::get(g));
        }
    }

    /// The exposition as a string.
    pub fn render_string(&self) -> String {
        let mut out = Exposition::new();
        self.render(&mut out);
        out.finish()
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
            // Samples, and the family named by `# HELP` / `# TYPE` lines.
            let name = line
                .trim_start_matches("# HELP ")
                .trim_start_matches("# TYPE ")
                .split(['{', ' '])
                .next()
                .unwrap();
            assert!(name.starts_with("apitap_bus_"), "{line}");
        }
        assert_eq!(m.dropped_all(), 3);
    }

    #[test]
    fn every_family_once_with_help_and_type_named_by_the_house_rule() {
        let s = BusMetrics::default().render_string();
        apitap_metrics::check_exposition(&s).unwrap();
        // 17 plain counters, 3 labelled ones, spool_open_failures, 6 gauges.
        assert_eq!(s.matches("# TYPE ").count(), 27, "{s}");
        assert_eq!(s.matches(" gauge\n").count(), 6, "{s}");
    }

    #[test]
    fn log_limiter_logs_first_then_sampled() {
        let l = LogLimiter::new(2, 10);
        let logged: Vec<bool> = (0..20).map(|_| l.tick().0).collect();
        assert_eq!(logged.iter().filter(|b| **b).count(), 4); // 1, 2, 10, 20
    }
}
