//! Turning input lines into events: decoding, classifying bad lines, run statistics.
//!
//! Bad lines are counted per [`BadLineCause`] and logged with their line number and cause
//! only. Neither the line nor the decoder's message is logged: events carry header values,
//! query strings and bodies, and an error message could echo part of them (R-OPS-3).

use std::collections::BTreeMap;
use std::fmt;

use apitap_schema::{ApiEvent, SchemaError, decode_event};
use serde::Serialize;

use apitap_detect::EventContext;
use apitap_detect::weak::EndpointKey;
use apitap_labels::facts::EventFacts;

use crate::config::IngestConfig;
use crate::dead_letter::{DeadLetter, InFlight, Kept};
use crate::detection::Detection;
use crate::inventory::Inventory;
use crate::labelling::{Labelling, weak_key};
use crate::reader::{Line, is_blank};
use crate::summary::{EndpointKey as SummaryKey, Recorded, Summary};

/// Bad lines logged individually at most; later ones are only counted.
pub const MAX_LOGGED_BAD_LINES: u64 = 1000;

/// Why an input line was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BadLineCause {
    /// Not JSON at all (syntax error, invalid UTF-8, trailing garbage).
    NotJson,
    /// JSON that stops early (a cut-off line).
    TruncatedJson,
    /// `schema_version` with a major version this build does not read.
    UnsupportedVersion,
    /// Valid JSON but not a v1 event (missing field, wrong type, not an object).
    InvalidEvent,
    /// Longer than the line limit (16 MiB by default); discarded unread.
    TooLong,
}

impl BadLineCause {
    /// Every cause, in reporting order.
    pub const ALL: [BadLineCause; 5] = [
        BadLineCause::NotJson,
        BadLineCause::TruncatedJson,
        BadLineCause::UnsupportedVersion,
        BadLineCause::InvalidEvent,
        BadLineCause::TooLong,
    ];

    /// Stable snake_case name used in logs and stats.
    pub fn as_str(self) -> &'static str {
        match self {
            BadLineCause::NotJson => "not_json",
            BadLineCause::TruncatedJson => "truncated_json",
            BadLineCause::UnsupportedVersion => "unsupported_version",
            BadLineCause::InvalidEvent => "invalid_event",
            BadLineCause::TooLong => "too_long",
        }
    }

    /// Classifies a decode failure of `line`.
    fn of(error: &SchemaError, line: &[u8]) -> Self {
        match error {
            SchemaError::UnsupportedVersion { .. } => BadLineCause::UnsupportedVersion,
            SchemaError::BadBase64 | SchemaError::UnknownBodyEncoding => BadLineCause::InvalidEvent,
            // The schema crate describes malformed input in prose; re-parse the line as
            // untyped JSON to tell "not JSON" and "cut off" from "JSON of the wrong shape".
            SchemaError::Malformed(_) => {
                match serde_json::from_slice::<serde::de::IgnoredAny>(line) {
                    Ok(_) => BadLineCause::InvalidEvent,
                    Err(e) if e.is_eof() => BadLineCause::TruncatedJson,
                    Err(_) => BadLineCause::NotJson,
                }
            }
        }
    }
}

impl fmt::Display for BadLineCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Counters for one run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunStats {
    /// Lines read, including blank and bad ones.
    pub lines: u64,
    /// Blank lines (skipped, not bad).
    pub blank_lines: u64,
    /// Valid events decoded.
    pub events: u64,
    /// Valid events not summarised because the endpoint limit was reached.
    pub events_over_endpoint_limit: u64,
    /// Bad lines per cause.
    pub bad_lines: BTreeMap<BadLineCause, u64>,
    /// Events carrying each anomaly code (an event counts once per code).
    pub anomalies: BTreeMap<String, u64>,
    /// Events whose analysis failed (a panic, isolated): skipped, see [`crate::dead_letter`].
    pub events_failed: u64,
    /// Failed events written to `ingest.dead_letter_path`.
    pub events_dead_lettered: u64,
    /// Failed events not written (no dead-letter file, its byte limit, or a write error).
    pub events_dead_letter_dropped: u64,
    /// Events skipped unanalysed because `ingest.max_event_crashes` processes died on them.
    pub events_crash_skipped: u64,
    /// Events dated further ahead of the wall clock than `ingest.max_future_skew_secs`,
    /// taken in with their times moved back to the clock plus that skew.
    pub events_future_clamped: u64,
}

impl RunStats {
    /// Bad lines of every cause.
    pub fn bad_lines_total(&self) -> u64 {
        self.bad_lines.values().sum()
    }

    /// Bad lines of one cause.
    pub fn bad(&self, cause: BadLineCause) -> u64 {
        self.bad_lines.get(&cause).copied().unwrap_or(0)
    }

    /// `code=count` pairs, comma-separated, or `none`.
    pub fn anomalies_text(&self) -> String {
        if self.anomalies.is_empty() {
            return "none".into();
        }
        self.anomalies
            .iter()
            .map(|(code, n)| format!("{code}={n}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Logs the one-line statistics summary at info level (stderr).
    pub fn log(&self, message: &str) {
        tracing::info!(
            lines = self.lines,
            events = self.events,
            blank_lines = self.blank_lines,
            bad_lines = self.bad_lines_total(),
            bad_not_json = self.bad(BadLineCause::NotJson),
            bad_truncated_json = self.bad(BadLineCause::TruncatedJson),
            bad_unsupported_version = self.bad(BadLineCause::UnsupportedVersion),
            bad_invalid_event = self.bad(BadLineCause::InvalidEvent),
            bad_too_long = self.bad(BadLineCause::TooLong),
            events_over_endpoint_limit = self.events_over_endpoint_limit,
            events_failed = self.events_failed,
            events_dead_lettered = self.events_dead_lettered,
            events_dead_letter_dropped = self.events_dead_letter_dropped,
            events_crash_skipped = self.events_crash_skipped,
            events_future_clamped = self.events_future_clamped,
            anomalies = %self.anomalies_text(),
            "{message}"
        );
    }
}

/// Result of feeding one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineOutcome {
    /// A valid event, summarised.
    Event,
    /// A blank line, skipped.
    Blank,
    /// A bad line, counted.
    Bad(BadLineCause),
}

/// The analyzer's state for one run: the summary, the inventory (when kept) and the run
/// statistics.
#[derive(Debug, Default)]
pub struct Ingestor {
    /// Per-endpoint summary.
    pub summary: Summary,
    /// The API inventory, when a store is configured.
    pub inventory: Option<Inventory>,
    /// Sensitive-data labelling and weak points (`process` and `run` always set it).
    pub labelling: Option<Labelling>,
    /// Threat detections (`process` and `run` always set it).
    pub detect: Option<Detection>,
    /// Run statistics.
    pub stats: RunStats,
    /// Guards around each event: clock skew and failure isolation.
    pub guard: EventGuard,
    /// The trace-back store's writer (`[trace]`).
    pub trace: Option<crate::trace::Tracer>,
    /// The web console (issue 20), when on: it counts hits per hour per endpoint, and
    /// `/metrics` renders its counters.
    pub console: Option<std::sync::Arc<crate::console::Console>>,
}

/// How [`Ingestor::ingest_event`] guards each event (issue 22, `[ingest]`).
#[derive(Debug)]
pub struct EventGuard {
    /// µs an event may be ahead of the wall clock before its times are clamped.
    pub max_future_skew_us: u64,
    /// Where failed events go; `None`: counted and logged by `event_id` only.
    pub dead_letter: Option<DeadLetter>,
    /// The event under analysis, surviving a crash (with `dead_letter`).
    pub in_flight: Option<InFlight>,
    /// Processes that may die on one event before it is skipped.
    pub max_event_crashes: u8,
    /// The wall clock, µs since the epoch (a parameter for tests).
    pub now_us: fn() -> u64,
    /// Tests: analysing the event with this id panics (a stand-in for a bug).
    #[cfg(test)]
    fail_event_id: Option<String>,
}

impl Default for EventGuard {
    fn default() -> Self {
        EventGuard {
            max_future_skew_us: 300 * 1_000_000,
            dead_letter: None,
            in_flight: None,
            max_event_crashes: 2,
            now_us: wall_clock_us,
            #[cfg(test)]
            fail_event_id: None,
        }
    }
}

impl EventGuard {
    /// The guard `[ingest]` describes (opens the dead-letter file).
    pub fn from_config(config: &IngestConfig) -> Result<EventGuard, crate::Error> {
        Ok(EventGuard {
            max_future_skew_us: config.max_future_skew_secs.saturating_mul(1_000_000),
            dead_letter: config
                .dead_letter_path
                .as_deref()
                .map(|p| DeadLetter::open(p, config.dead_letter_max_bytes))
                .transpose()?,
            in_flight: config
                .dead_letter_path
                .as_deref()
                .map(|p| {
                    let mut name = p.as_os_str().to_owned();
                    name.push(".inflight");
                    InFlight::open(std::path::Path::new(&name))
                })
                .transpose()?,
            max_event_crashes: config.max_event_crashes,
            now_us: wall_clock_us,
            #[cfg(test)]
            fail_event_id: None,
        })
    }

    /// `event` with its times moved back so that it starts no later than the wall clock
    /// plus the allowed skew, or `None` when it is not that far ahead. Durations are kept.
    fn clamp(&self, event: &ApiEvent) -> Option<ApiEvent> {
        let latest = (self.now_us)().saturating_add(self.max_future_skew_us);
        let shift = event.request_start_unix_us.checked_sub(latest)?;
        if shift == 0 {
            return None;
        }
        let mut clamped = event.clone();
        clamped.request_start_unix_us = latest;
        clamped.response_end_unix_us = event.response_end_unix_us.map(|t| t.saturating_sub(shift));
        Some(clamped)
    }
}

fn wall_clock_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

impl Ingestor {
    /// Empty state with the given summary (and its endpoint limit).
    pub fn new(summary: Summary) -> Self {
        Ingestor {
            summary,
            inventory: None,
            labelling: None,
            detect: None,
            stats: RunStats::default(),
            guard: EventGuard::default(),
            trace: None,
            console: None,
        }
    }

    /// Feeds one input line (`line_number` is used for logging only).
    pub fn ingest_line(&mut self, line_number: u64, line: Line<'_>) -> LineOutcome {
        self.stats.lines += 1;
        let outcome = match line {
            Line::TooLong => LineOutcome::Bad(BadLineCause::TooLong),
            Line::Data(bytes) if is_blank(bytes) => LineOutcome::Blank,
            Line::Data(bytes) => match decode_event(bytes) {
                Ok(event) => {
                    self.ingest_event(&event);
                    LineOutcome::Event
                }
                Err(e) => LineOutcome::Bad(BadLineCause::of(&e, bytes)),
            },
        };
        match outcome {
            LineOutcome::Blank => self.stats.blank_lines += 1,
            LineOutcome::Bad(cause) => self.count_bad(line_number, cause),
            LineOutcome::Event => {}
        }
        outcome
    }

    fn count_bad(&mut self, line_number: u64, cause: BadLineCause) {
        let total = self.stats.bad_lines_total() + 1;
        *self.stats.bad_lines.entry(cause).or_insert(0) += 1;
        // Line number and cause only: never the line, never the decoder's message.
        if total <= MAX_LOGGED_BAD_LINES {
            tracing::warn!(
                line = line_number,
                cause = cause.as_str(),
                "skipping bad input line"
            );
        }
        if total == MAX_LOGGED_BAD_LINES {
            tracing::warn!(
                "{MAX_LOGGED_BAD_LINES} bad lines logged; further bad lines are only counted"
            );
        }
    }

    /// Feeds one decoded event: clamped if dated too far ahead, analysed in isolation (a
    /// panic skips the event, counted and dead-lettered; see [`crate::dead_letter`]).
    /// Returns whether the analysis completed.
    pub fn ingest_event(&mut self, event: &ApiEvent) -> bool {
        self.stats.events += 1;
        let clamped = self.guard.clamp(event);
        if clamped.is_some() {
            if self.stats.events_future_clamped == 0 {
                tracing::warn!(
                    event_id = %event.event_id,
                    "event dated ahead of the clock by more than ingest.max_future_skew_secs; \
                     its times are clamped (further ones are only counted)"
                );
            }
            self.stats.events_future_clamped += 1;
        }
        let event = clamped.as_ref().unwrap_or(event);
        let max_crashes = self.guard.max_event_crashes;
        if let Some(marker) = self.guard.in_flight.as_mut()
            && marker.begin(&event.event_id) >= max_crashes
        {
            // Processes died on this very event: keep it for the developers, go on without it.
            marker.end();
            self.stats.events_crash_skipped += 1;
            let kept = self.guard.dead_letter.as_mut().map(|d| d.keep(event));
            match kept {
                Some(Kept::Written) => self.stats.events_dead_lettered += 1,
                Some(Kept::Dropped) | None => self.stats.events_dead_letter_dropped += 1,
            }
            tracing::error!(
                event_id = %event.event_id,
                crashes = max_crashes,
                "the analyzer died on this event before; it is dead-lettered unanalysed"
            );
            return false;
        }
        let analysed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            #[cfg(test)]
            if self.guard.fail_event_id.as_deref() == Some(event.event_id.as_str()) {
                panic!("injected failure for {}", event.event_id);
            }
            self.analyse(event);
        }));
        if let Some(marker) = self.guard.in_flight.as_mut() {
            marker.end();
        }
        if analysed.is_ok() {
            return true;
        }
        // The state may hold part of this event's effects; every structure stays bounded and
        // consistent enough to go on (the same reasoning as a poisoned lock, see `app::lock`).
        self.stats.events_failed += 1;
        let kept = self.guard.dead_letter.as_mut().map(|d| d.keep(event));
        match kept {
            Some(Kept::Written) => self.stats.events_dead_lettered += 1,
            Some(Kept::Dropped) | None => self.stats.events_dead_letter_dropped += 1,
        }
        if self.stats.events_failed <= MAX_LOGGED_BAD_LINES {
            // The event id only: the panic message is withheld by the panic hook.
            tracing::error!(
                event_id = %event.event_id,
                dead_lettered = kept == Some(Kept::Written),
                "analysis of an event failed; the event is skipped"
            );
        }
        false
    }

    fn analyse(&mut self, event: &ApiEvent) {
        for (i, anomaly) in event.anomalies.iter().enumerate() {
            if event.anomalies[..i].contains(anomaly) {
                continue;
            }
            *self
                .stats
                .anomalies
                .entry(anomaly_code(*anomaly))
                .or_insert(0) += 1;
        }
        let mut templated = None;
        // One set of facts (decoded bodies, request-header scan) for every analysis of the
        // event, each fact computed on first use.
        let max_decoded = self
            .labelling
            .as_ref()
            .map_or(apitap_labels::facts::DEFAULT_MAX_DECODED_BYTES, |l| {
                l.max_decoded_bytes()
            });
        let facts = EventFacts::new(event, max_decoded)
            .with_protobuf(self.labelling.as_ref().and_then(Labelling::protobuf));
        match self.labelling.as_mut() {
            Some(labelling) => {
                // Labelled once; the inventory records it per endpoint, the detections and
                // the weak-point tracker key on the endpoint's template (without an
                // inventory: their own templating, the raw path).
                let (labels, class) = labelling.label_facts(&facts);
                let endpoint = match self.inventory.as_mut() {
                    Some(inventory) => inventory.observe_labelled(&facts, Some((&labels, &class))),
                    None => None,
                };
                let ctx = EventContext::from_labels(
                    &labels,
                    &class,
                    endpoint.as_ref().map(|k| k.template.as_str()),
                    endpoint.as_ref().map(|k| k.service.as_str()),
                )
                .with_operation(endpoint.as_ref().map(|k| k.operation.as_str()));
                if let Some(detect) = self.detect.as_mut() {
                    detect.observe_facts(&facts, &ctx);
                }
                if let Some(trace) = &self.trace {
                    trace.record(
                        &facts,
                        crate::trace::Seen {
                            endpoint: endpoint.as_ref().map(|k| {
                                (
                                    k.service.as_str(),
                                    k.method.as_str(),
                                    k.template.as_str(),
                                    k.operation.as_str(),
                                )
                            }),
                            actor: self.detect.as_ref().and_then(|d| d.last_actor()),
                            labels: Some(&labels),
                            records: ctx.sensitive_records.unwrap_or(0),
                        },
                    );
                }
                if let (Some(console), Some(k)) = (&self.console, endpoint.as_ref()) {
                    console.traffic.hit(&k.id(), event.request_start_unix_us);
                }
                let key = endpoint
                    .as_ref()
                    .map_or_else(|| EndpointKey::from_event(event), weak_key);
                labelling.observe(&key, &facts, &labels, &class);
                templated = endpoint;
            }
            None => {
                if let Some(inventory) = self.inventory.as_mut() {
                    inventory.observe_labelled(&facts, None);
                }
                if let Some(detect) = self.detect.as_mut() {
                    detect.observe_facts(&facts, &EventContext::default());
                }
            }
        }
        // Summarised under the inventory's template: the summary goes to the journal, and
        // raw paths carry identifiers (issue 22); templates also bound its cardinality.
        let key = templated.map(|k| SummaryKey {
            service: k.service,
            path: k.template,
            method: k.method,
        });
        if self.summary.record_as(event, key) == Recorded::OverEndpointLimit {
            if self.stats.events_over_endpoint_limit == 0 {
                tracing::warn!(
                    endpoints = self.summary.len(),
                    "endpoint limit reached; events for further endpoints are counted but not \
                     summarised"
                );
            }
            self.stats.events_over_endpoint_limit += 1;
        }
    }
}

/// The wire name of an anomaly (`request_gap`, …; `unknown` for codes from a newer minor).
pub fn anomaly_code(anomaly: apitap_schema::Anomaly) -> String {
    match serde_json::to_value(anomaly) {
        Ok(serde_json::Value::String(code)) => code,
        _ => format!("{anomaly:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::summary::tests::event;
    use apitap_schema::{Anomaly, encode_event};

    fn feed(ingestor: &mut Ingestor, line: &[u8]) -> LineOutcome {
        let n = ingestor.stats.lines + 1;
        ingestor.ingest_line(n, Line::Data(line))
    }

    #[test]
    fn classifies_bad_lines_by_cause() {
        let mut ing = Ingestor::default();
        let good = encode_event(&event(Some("api"), "GET", "/x"));
        assert_eq!(feed(&mut ing, &good), LineOutcome::Event);
        assert_eq!(feed(&mut ing, b""), LineOutcome::Blank);
        assert_eq!(feed(&mut ing, b"  \t"), LineOutcome::Blank);
        let bad = |c| LineOutcome::Bad(c);
        assert_eq!(feed(&mut ing, b"hello"), bad(BadLineCause::NotJson));
        assert_eq!(feed(&mut ing, b"{} trailing"), bad(BadLineCause::NotJson));
        assert_eq!(feed(&mut ing, b"\xff\xfe"), bad(BadLineCause::NotJson));
        assert_eq!(
            feed(&mut ing, &good[..good.len() / 2]),
            bad(BadLineCause::TruncatedJson)
        );
        assert_eq!(feed(&mut ing, b"{}"), bad(BadLineCause::InvalidEvent));
        assert_eq!(feed(&mut ing, b"[1,2]"), bad(BadLineCause::InvalidEvent));
        assert_eq!(
            feed(&mut ing, br#"{"schema_version":"1.0","event_id":7}"#),
            bad(BadLineCause::InvalidEvent)
        );
        let mut v: serde_json::Value = serde_json::from_slice(&good).unwrap();
        v["schema_version"] = "2.0".into();
        assert_eq!(
            feed(&mut ing, v.to_string().as_bytes()),
            bad(BadLineCause::UnsupportedVersion)
        );
        assert_eq!(
            ing.ingest_line(99, Line::TooLong),
            bad(BadLineCause::TooLong)
        );
        let s = &ing.stats;
        assert_eq!((s.lines, s.events, s.blank_lines), (12, 1, 2));
        assert_eq!(s.bad(BadLineCause::NotJson), 3);
        assert_eq!(s.bad(BadLineCause::TruncatedJson), 1);
        assert_eq!(s.bad(BadLineCause::InvalidEvent), 3);
        assert_eq!(s.bad(BadLineCause::UnsupportedVersion), 1);
        assert_eq!(s.bad(BadLineCause::TooLong), 1);
        assert_eq!(s.bad_lines_total(), 9);
        assert_eq!(ing.summary.len(), 1);
    }

    #[test]
    fn newer_minor_versions_are_accepted() {
        let mut ing = Ingestor::default();
        let mut v = serde_json::to_value(event(Some("api"), "GET", "/x")).unwrap();
        v["schema_version"] = "1.9".into();
        v["new_field"] = serde_json::json!({"x": 1});
        v["anomalies"] = serde_json::json!(["brand_new_code"]);
        assert_eq!(feed(&mut ing, v.to_string().as_bytes()), LineOutcome::Event);
        assert_eq!(ing.stats.anomalies_text(), "unknown=1");
    }

    #[test]
    fn counts_events_per_anomaly_code() {
        let mut ing = Ingestor::default();
        let mut e = event(Some("api"), "GET", "/x");
        e.anomalies = vec![
            Anomaly::RequestGap,
            Anomaly::NoResponse,
            Anomaly::RequestGap,
        ];
        ing.ingest_event(&e);
        e.anomalies = vec![Anomaly::NoResponse];
        ing.ingest_event(&e);
        ing.ingest_event(&event(Some("api"), "GET", "/x"));
        assert_eq!(ing.stats.anomalies_text(), "no_response=2,request_gap=1");
        assert_eq!(ing.stats.events, 3);
        assert_eq!(RunStats::default().anomalies_text(), "none");
    }

    #[test]
    fn anomaly_codes_use_wire_names() {
        assert_eq!(
            anomaly_code(Anomaly::ContentLengthWithChunked),
            "content_length_with_chunked"
        );
        assert_eq!(anomaly_code(Anomaly::Unknown), "unknown");
    }

    #[test]
    fn counts_events_over_the_endpoint_limit() {
        let mut ing = Ingestor::new(Summary::new(1));
        ing.ingest_event(&event(Some("api"), "GET", "/1"));
        ing.ingest_event(&event(Some("api"), "GET", "/2"));
        ing.ingest_event(&event(Some("api"), "GET", "/3"));
        assert_eq!(ing.stats.events, 3);
        assert_eq!(ing.stats.events_over_endpoint_limit, 2);
    }

    fn analysed() -> Ingestor {
        Ingestor {
            inventory: Some(Inventory::new(Default::default()).unwrap()),
            labelling: Some(Labelling::new(apitap_labels::HashKey::random().unwrap()).unwrap()),
            ..Ingestor::default()
        }
    }

    #[test]
    fn a_failing_event_is_skipped_counted_and_dead_lettered() {
        let dir = std::env::temp_dir().join(format!("apitap-ingest-dl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("dead.jsonl");
        let mut ing = analysed();
        ing.guard = EventGuard::from_config(&IngestConfig {
            dead_letter_path: Some(path.clone()),
            ..IngestConfig::default()
        })
        .unwrap();
        let mut poison = event(Some("api"), "GET", "/poison");
        poison.event_id = "00000000000000000000000000000bad".into();
        ing.guard.fail_event_id = Some(poison.event_id.clone());
        assert!(ing.ingest_event(&event(Some("api"), "GET", "/before")));
        assert!(!ing.ingest_event(&poison));
        assert!(ing.ingest_event(&event(Some("api"), "GET", "/after")));
        assert_eq!(ing.stats.events, 3);
        assert_eq!(ing.stats.events_failed, 1);
        assert_eq!(ing.stats.events_dead_lettered, 1);
        assert_eq!(ing.stats.events_dead_letter_dropped, 0);
        // The events around it were analysed.
        assert_eq!(ing.summary.len(), 2);
        let text = std::fs::read_to_string(&path).unwrap();
        let kept = apitap_schema::decode_event(text.trim_end().as_bytes()).unwrap();
        assert_eq!(kept.event_id, poison.event_id);
        // Without a dead-letter file the failure is still counted.
        ing.guard.dead_letter = None;
        assert!(!ing.ingest_event(&poison));
        assert_eq!(ing.stats.events_failed, 2);
        assert_eq!(ing.stats.events_dead_letter_dropped, 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_future_dated_event_cannot_move_the_clock_ahead() {
        const NOW_US: u64 = 1_800_000_000_000_000;
        let mut ing = analysed();
        ing.guard.now_us = || NOW_US;
        let skew = ing.guard.max_future_skew_us;
        let mut e = event(Some("api"), "GET", "/x");
        e.request_start_unix_us = NOW_US - 1_000;
        e.response_end_unix_us = Some(NOW_US + 4_000);
        e.latency_us = Some(5_000);
        assert!(ing.ingest_event(&e));
        assert_eq!(ing.stats.events_future_clamped, 0);
        // A year ahead: taken in at the clock plus the skew, its duration kept.
        let year_us = 365 * 86_400 * 1_000_000;
        e.request_start_unix_us = NOW_US + year_us;
        e.response_end_unix_us = Some(NOW_US + year_us + 5_000);
        assert!(ing.ingest_event(&e));
        assert_eq!(ing.stats.events_future_clamped, 1);
        let clock = ing.inventory.as_ref().unwrap().clock_us();
        assert_eq!(clock, NOW_US + skew);
        let report = &ing.summary.reports()[0];
        assert!(report.last_seen_unix_us <= NOW_US + skew, "{report:?}");
        assert_eq!(report.latency_max_ms, Some(5.0));
        let end = ing.guard.clamp(&e).unwrap().response_end_unix_us;
        assert_eq!(end, Some(NOW_US + skew + 5_000));
    }

    #[test]
    fn the_summary_shows_templates_not_identifiers() {
        let mut ing = analysed();
        for id in 0..200u32 {
            let mut e = event(
                Some("api"),
                "GET",
                &format!("/users/{}", 7_000_000 + id * 7919),
            );
            e.request_start_unix_us = 1_700_000_000_000_000 + u64::from(id);
            assert!(ing.ingest_event(&e));
        }
        let rows = ing.summary.reports();
        let templated: u64 = rows
            .iter()
            .filter(|r| r.path.contains('{'))
            .map(|r| r.requests)
            .sum();
        // Identifiers fold into a parameter after a few values: nearly every request is
        // summarised under the template, and only those first few rows are literal.
        assert!(templated >= 190, "{rows:?}");
        assert!(rows.len() <= 11, "{} rows", rows.len());
    }

    #[test]
    fn the_summary_follows_the_service_cap() {
        let cfg = crate::inventory::InventoryConfig {
            max_services: 5,
            ..Default::default()
        };
        let mut ing = Ingestor {
            inventory: Some(Inventory::new(cfg).unwrap()),
            ..analysed()
        };
        for i in 0..50u64 {
            let mut e = event(Some(&format!("h{i}.example")), "GET", "/x");
            e.request_start_unix_us = 1_700_000_000_000_000 + i;
            assert!(ing.ingest_event(&e));
        }
        let services: std::collections::BTreeSet<String> = ing
            .summary
            .reports()
            .into_iter()
            .map(|r| r.service)
            .collect();
        // Five services and the overflow service that took the other 45 hosts.
        assert_eq!(services.len(), 6, "{services:?}");
        assert!(services.contains("{overflow}"), "{services:?}");
    }

    #[test]
    fn an_event_that_killed_the_analyzer_twice_is_dead_lettered_unanalysed() {
        let dir = std::env::temp_dir().join(format!("apitap-crash-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = IngestConfig {
            dead_letter_path: Some(dir.join("dead.jsonl")),
            ..IngestConfig::default()
        };
        let mut poison = event(Some("api"), "GET", "/poison");
        poison.event_id = "000000000000000000000000000dead01".into();
        // Two processes die while analysing it (an abort is not caught): the marker is left
        // set, as the kernel keeps the shared mapping's page.
        for _ in 0..2 {
            let mut guard = EventGuard::from_config(&cfg).unwrap();
            guard.in_flight.as_mut().unwrap().begin(&poison.event_id);
            drop(guard);
        }
        let mut ing = analysed();
        ing.guard = EventGuard::from_config(&cfg).unwrap();
        assert!(!ing.ingest_event(&poison), "skipped, not analysed");
        assert_eq!(ing.stats.events_crash_skipped, 1);
        assert_eq!(ing.stats.events_dead_lettered, 1);
        assert_eq!(ing.summary.len(), 0);
        assert!(ing.ingest_event(&event(Some("api"), "GET", "/next")));
        assert_eq!(ing.summary.len(), 1);
        let text = std::fs::read_to_string(dir.join("dead.jsonl")).unwrap();
        assert!(text.contains(&poison.event_id));
        // One death only: analysed again when redelivered.
        drop(ing);
        let mut guard = EventGuard::from_config(&cfg).unwrap();
        guard.in_flight.as_mut().unwrap().begin(&poison.event_id);
        drop(guard);
        let mut ing = analysed();
        ing.guard = EventGuard::from_config(&cfg).unwrap();
        assert!(ing.ingest_event(&poison));
        assert_eq!(ing.stats.events_crash_skipped, 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
