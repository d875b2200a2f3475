//! The analyzer's Prometheus metrics and health endpoint (`[metrics] listen`, R-OPS-2):
//! `GET /metrics` (text exposition format: run statistics, inventory, labelling, detections
//! `apitap_detect_*`, and the event bus `apitap_bus_*`) and `GET /healthz` (`ok`).
//!
//! Counters only; no label carries traffic content (causes and anomaly codes are fixed
//! vocabularies).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use apitap_bus::BusMetrics;
use serde_json::Value;

use crate::error::Error;
use crate::ingest::{BadLineCause, Ingestor};
use crate::inventory::api::{Handler, reply, serve_with};

fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
    );
}

/// The exposition text for the analyzer's state and (when consuming a bus) its counters.
pub fn render(ing: &Ingestor, bus: Option<&BusMetrics>) -> String {
    let mut out = String::new();
    let s = &ing.stats;
    counter(
        &mut out,
        "apitap_analyzer_lines_total",
        "Input lines read (file input).",
        s.lines,
    );
    counter(
        &mut out,
        "apitap_analyzer_events_total",
        "Valid events analysed.",
        s.events,
    );
    counter(
        &mut out,
        "apitap_analyzer_events_over_endpoint_limit_total",
        "Events not summarised because the endpoint limit was reached.",
        s.events_over_endpoint_limit,
    );
    for (name, help, value) in [
        (
            "apitap_analyzer_events_failed_total",
            "Events whose analysis failed (isolated and skipped).",
            s.events_failed,
        ),
        (
            "apitap_analyzer_events_dead_lettered_total",
            "Failed events written to ingest.dead_letter_path.",
            s.events_dead_lettered,
        ),
        (
            "apitap_analyzer_events_dead_letter_dropped_total",
            "Failed events not written to a dead-letter file.",
            s.events_dead_letter_dropped,
        ),
        (
            "apitap_analyzer_events_future_clamped_total",
            "Events dated beyond ingest.max_future_skew_secs, clamped to the clock.",
            s.events_future_clamped,
        ),
    ] {
        counter(&mut out, name, help, value);
    }
    let _ = writeln!(
        out,
        "# HELP apitap_analyzer_bad_lines_total Input lines rejected, by cause.\n\
         # TYPE apitap_analyzer_bad_lines_total counter"
    );
    for cause in BadLineCause::ALL {
        let _ = writeln!(
            out,
            "apitap_analyzer_bad_lines_total{{cause=\"{}\"}} {}",
            cause.as_str(),
            s.bad(cause)
        );
    }
    let _ = writeln!(
        out,
        "# HELP apitap_analyzer_anomaly_events_total Events carrying each anomaly code.\n\
         # TYPE apitap_analyzer_anomaly_events_total counter"
    );
    for (code, n) in &s.anomalies {
        // Codes are the schema's fixed vocabulary (`unknown` for newer ones).
        let code: String = code
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let _ = writeln!(
            out,
            "apitap_analyzer_anomaly_events_total{{code=\"{code}\"}} {n}"
        );
    }
    if let Some(inv) = &ing.inventory {
        let c = inv.counters;
        let t = inv.tree_counters();
        for (name, help, v) in [
            ("events", "Events observed by the inventory.", c.events),
            (
                "overflow_events",
                "Events folded into an overflow endpoint.",
                c.overflow_events,
            ),
            (
                "overflow_service_events",
                "Events of services beyond the limit.",
                c.overflow_service_events,
            ),
            (
                "spec_events",
                "Events matched to an operator OpenAPI document.",
                c.spec_events,
            ),
            (
                "override_events",
                "Events matched to an override.",
                c.override_events,
            ),
            ("flushes", "Inventory flushes to the store.", c.flushes),
            ("changes", "Inventory changes recorded.", c.changes),
            (
                "params_created",
                "Path positions turned into parameters.",
                t.params_created,
            ),
            (
                "folded_children",
                "Path values folded into parameters.",
                t.folded_children,
            ),
            (
                "split_out",
                "Values split out of parameters again.",
                t.split_out,
            ),
        ] {
            counter(&mut out, &format!("apitap_inventory_{name}_total"), help, v);
        }
    }
    if let Some(l) = &ing.labelling {
        counter(
            &mut out,
            "apitap_weak_points_total",
            "Weak-point findings raised.",
            l.raised(),
        );
        counter(
            &mut out,
            "apitap_weak_points_dropped_total",
            "Weak-point findings dropped (alert queue full).",
            l.dropped_findings,
        );
        counter(
            &mut out,
            "apitap_labels_shipped_events_total",
            "Events labelled from the labels their sensor shipped.",
            l.shipped_labels,
        );
    }
    if let Some(d) = &ing.detect {
        out.push_str(&d.render());
    }
    if let Some(b) = bus {
        b.render(&mut out);
    }
    out
}

/// Serves `/metrics` and `/healthz` on `addr` in the background.
pub async fn serve(
    addr: SocketAddr,
    state: Arc<Mutex<Ingestor>>,
    bus: Option<Arc<BusMetrics>>,
) -> Result<SocketAddr, Error> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| Error::MetricsListen { addr, source })?;
    let local = listener.local_addr().unwrap_or(addr);
    let handler: Handler = Arc::new(move |method: &str, target: &str| {
        if method != "GET" && method != "HEAD" {
            return reply(405, serde_json::json!({"error": "GET only"}));
        }
        match target {
            "/healthz" => reply(200, Value::String("ok".into())),
            "/metrics" => {
                let ing = state.lock().unwrap_or_else(PoisonError::into_inner);
                reply(200, Value::String(render(&ing, bus.as_deref())))
            }
            _ => reply(404, serde_json::json!({"error": "no such route"})),
        }
    });
    tokio::spawn(serve_with(listener, handler, "metrics"));
    tracing::info!(listen = %local, "metrics endpoint listening");
    Ok(local)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::summary::tests::event;

    #[test]
    fn renders_run_detection_and_bus_counters() {
        let mut ing = Ingestor::default();
        let key = apitap_labels::HashKey::from_secret(b"k");
        ing.detect = Some(
            crate::detection::Detection::new(&apitap_detect::DetectConfig::default(), &key)
                .unwrap(),
        );
        ing.ingest_event(&event(Some("api"), "GET", "/x"));
        let bus = BusMetrics::default();
        let text = render(&ing, Some(&bus));
        assert!(text.contains("apitap_analyzer_events_total 1\n"), "{text}");
        assert!(text.contains("apitap_analyzer_bad_lines_total{cause=\"not_json\"} 0"));
        assert!(text.contains("apitap_detect_events_total 1"), "{text}");
        assert!(text.contains("apitap_bus_"), "{text}");
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (name, value) = line.rsplit_once(' ').unwrap();
            assert!(name.starts_with("apitap_"), "{line}");
            value.parse::<f64>().unwrap();
        }
    }
}
