//! The analyzer's Prometheus metrics and health endpoint (`[metrics] listen`, R-OPS-2):
//! `GET /metrics` (text exposition format: run statistics, inventory, labelling, detections
//! `apitap_detect_*`, and the event bus `apitap_bus_*`) and `GET /healthz` (`ok`).
//!
//! Counters only; no label carries traffic content (causes and anomaly codes are fixed
//! vocabularies). The admin HTTP servers' own counters are here too:
//! `apitap_analyzer_http_rejected_connections_total{server,cause}` (connection cap, head
//! deadline, head size, method, token, write deadline; issue 22, R-OPS-3),
//! `apitap_analyzer_http_requests_total{server}` and `apitap_analyzer_http_open_connections`,
//! for `server="metrics"` and `server="inventory_api"`.
//!
//! Written with `apitap-metrics` (every family once, with `# HELP` and `# TYPE`; content type
//! `text/plain; version=0.0.4`) and served by `apitap-admin-http`; `metrics.token_file` makes
//! `/metrics` require a bearer token (`/healthz` stays open for probes).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use apitap_admin_http::{Handler, HttpStats, Options, Response};
use apitap_bus::BusMetrics;
use apitap_metrics::{CONTENT_TYPE, Exposition, Kind};

use crate::error::Error;
use crate::ingest::{BadLineCause, Ingestor};

/// The exposition text for the analyzer's state and (when consuming a bus) its counters.
pub fn render(ing: &Ingestor, bus: Option<&BusMetrics>) -> String {
    let mut out = Exposition::new();
    render_into(&mut out, ing, bus);
    out.finish()
}

/// Adds the analyzer's state and (when consuming a bus) the bus's counters to `out`.
pub fn render_into(out: &mut Exposition, ing: &Ingestor, bus: Option<&BusMetrics>) {
    let s = &ing.stats;
    for (name, help, value) in [
        (
            "apitap_analyzer_lines_total",
            "Input lines read (file input).",
            s.lines,
        ),
        (
            "apitap_analyzer_events_total",
            "Valid events analysed.",
            s.events,
        ),
        (
            "apitap_analyzer_events_over_endpoint_limit_total",
            "Events not summarised because the endpoint limit was reached.",
            s.events_over_endpoint_limit,
        ),
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
            "apitap_analyzer_events_crash_skipped_total",
            "Events skipped unanalysed because analyzer processes died on them.",
            s.events_crash_skipped,
        ),
        (
            "apitap_analyzer_events_future_clamped_total",
            "Events dated beyond ingest.max_future_skew_secs, clamped to the clock.",
            s.events_future_clamped,
        ),
    ] {
        out.counter(name, help, value);
    }
    let mut f = out.family(
        "apitap_analyzer_bad_lines_total",
        Kind::Counter,
        "Input lines rejected, by cause.",
    );
    for cause in BadLineCause::ALL {
        f.sample(&[("cause", cause.as_str())], s.bad(cause));
    }
    // Codes are the schema's fixed vocabulary (`unknown` for newer ones).
    let mut f = out.family(
        "apitap_analyzer_anomaly_events_total",
        Kind::Counter,
        "Events carrying each anomaly code.",
    );
    for (code, n) in &s.anomalies {
        f.sample(&[("code", code)], *n);
    }
    if let Some(t) = &ing.trace {
        use std::sync::atomic::Ordering::Relaxed;
        let st = t.stats();
        out.counter(
            "apitap_trace_records_written_total",
            "Trace-back access records stored.",
            st.records_written.load(Relaxed),
        );
        let mut f = out.family(
            "apitap_trace_records_dropped_total",
            Kind::Counter,
            "Trace-back records not stored, by cause.",
        );
        f.sample(
            &[("cause", "queue_full")],
            st.records_dropped_queue_full.load(Relaxed),
        );
        f.sample(
            &[("cause", "write_failed")],
            st.records_dropped_write_failed.load(Relaxed),
        );
        f.sample(
            &[("cause", "outside_retention")],
            st.records_dropped_outside_retention.load(Relaxed),
        );
        out.counter(
            "apitap_trace_values_dropped_total",
            "Sensitive values left out of trace-back records over trace.max_values_per_record.",
            st.values_dropped_record_cap.load(Relaxed),
        );
        out.counter(
            "apitap_trace_partitions_evicted_total",
            "Trace-back partitions deleted by retention (days or bytes).",
            st.partitions_evicted.load(Relaxed),
        );
        out.counter(
            "apitap_trace_records_evicted_total",
            "Trace-back records deleted by retention.",
            st.records_evicted.load(Relaxed),
        );
        out.gauge(
            "apitap_trace_records",
            "Trace-back records held.",
            st.records_held.load(Relaxed),
        );
        out.gauge(
            "apitap_trace_bytes",
            "Bytes the trace-back store uses on disk.",
            st.bytes_held.load(Relaxed),
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
                "services_evicted",
                "Services seen a few times, stored and idle, evicted for a new one.",
                c.services_evicted,
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
            out.counter(&format!("apitap_inventory_{name}_total"), help, v);
        }
        let m = inv.memory_counters;
        out.gauge(
            "apitap_inventory_memory_bytes",
            "Estimated bytes the inventory holds in memory (at the last check).",
            m.bytes,
        );
        out.gauge(
            "apitap_inventory_memory_budget_bytes",
            "inventory.max_memory_bytes.",
            m.budget_bytes,
        );
        out.counter(
            "apitap_inventory_memory_shed_endpoints_total",
            "Endpoint states that dropped their unstored shapes to stay within the memory budget.",
            m.shed_endpoints,
        );
        out.counter(
            "apitap_inventory_memory_evicted_services_total",
            "Services evicted from memory to stay within the memory budget.",
            m.evicted_services,
        );
        out.counter(
            "apitap_inventory_memory_lost_events_total",
            "Requests whose learning was in an evicted service and not yet stored.",
            m.lost_events,
        );
        out.counter(
            "apitap_inventory_probe_unrouted_events_total",
            "Probes whose path is not a known endpoint path.",
            c.probe_unrouted_events,
        );
        let mut f = out.family(
            "apitap_inventory_probe_events_total",
            Kind::Counter,
            "Requests answered as not served (probes), not counted as endpoints, by reason.",
        );
        for (reason, n) in apitap_inventory::engine::PROBE_REASONS
            .iter()
            .zip(c.probes_by_reason)
        {
            f.sample(&[("reason", reason.as_str())], n);
        }
    }
    if let Some(l) = &ing.labelling {
        out.counter(
            "apitap_weak_points_total",
            "Weak-point findings raised.",
            l.raised(),
        );
        out.counter(
            "apitap_weak_points_dropped_total",
            "Weak-point findings dropped (alert queue full).",
            l.dropped_findings,
        );
        out.counter(
            "apitap_labels_shipped_events_total",
            "Events labelled from the labels their sensor shipped.",
            l.shipped_labels,
        );
        out.counter(
            "apitap_labels_foreign_hash_key_events_total",
            "Shipped labels hashed with another key than the analyzer's (hash_key_id differs).",
            l.foreign_key_labels,
        );
    }
    if let Some(d) = &ing.detect {
        d.render(out);
    }
    if let Some(c) = &ing.console {
        c.render(out);
    }
    if let Some(b) = bus {
        b.render(out);
    }
}

/// The `server` label and counters of each admin HTTP server, rendered on `/metrics`.
pub type HttpServers = Vec<(&'static str, Arc<HttpStats>)>;

/// Serves `/metrics` and `/healthz` on `addr` in the background; `options.stats` should be
/// among `http` to be rendered.
pub async fn serve(
    addr: SocketAddr,
    state: Arc<Mutex<Ingestor>>,
    bus: Option<Arc<BusMetrics>>,
    http: HttpServers,
    options: Options,
) -> Result<SocketAddr, Error> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| Error::MetricsListen { addr, source })?;
    let local = listener.local_addr().unwrap_or(addr);
    let handler: Handler = Arc::new(move |req| match req.path() {
        "/healthz" => Response::text(200, "ok\n"),
        "/metrics" => {
            let mut out = Exposition::new();
            {
                let ing = state.lock().unwrap_or_else(PoisonError::into_inner);
                render_into(&mut out, &ing, bus.as_deref());
            }
            let servers: Vec<(&str, &HttpStats)> =
                http.iter().map(|(name, s)| (*name, s.as_ref())).collect();
            HttpStats::render(&mut out, "apitap_analyzer", &servers);
            Response::new(200, CONTENT_TYPE, out.finish().into_bytes())
        }
        _ => Response::json(404, "{\"error\":\"no such route\"}\n"),
    });
    tokio::spawn(apitap_admin_http::serve(listener, handler, options));
    tracing::info!(listen = %local, "metrics endpoint listening");
    Ok(local)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::summary::tests::event;

    async fn get(addr: SocketAddr, path: &str, extra: &str) -> String {
        apitap_admin_http::get_once(addr, path, extra)
            .await
            .unwrap()
    }

    /// The endpoint over a real socket: the token guards `/metrics` (not `/healthz`), and the
    /// refusal shows in the HTTP counters of both servers.
    #[tokio::test]
    async fn token_guards_metrics_and_rejections_are_counted() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = std::env::temp_dir().join(format!("apitap-metrics-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("token");
        std::fs::write(&p, "metrics-token-0123456789abcdef\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        let token = apitap_admin_http::Token::from_file(&p).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let stats = Arc::new(HttpStats::default());
        let api = Arc::new(HttpStats::default());
        let options = Options {
            name: "metrics",
            limits: apitap_admin_http::Limits::default(),
            token: Some(token),
            stats: Arc::clone(&stats),
            self_authenticated: &[],
            tls: None,
        };
        let addr = serve(
            "127.0.0.1:0".parse().unwrap(),
            Arc::new(Mutex::new(Ingestor::default())),
            None,
            vec![("metrics", stats), ("inventory_api", api)],
            options,
        )
        .await
        .unwrap();
        let denied = get(addr, "/metrics", "").await;
        assert!(denied.starts_with("HTTP/1.1 401 "), "{denied}");
        assert!(!denied.contains("apitap_analyzer_events_total"), "{denied}");
        assert!(get(addr, "/healthz", "").await.starts_with("HTTP/1.1 200 "));
        let text = get(
            addr,
            "/metrics",
            "Authorization: Bearer metrics-token-0123456789abcdef\r\n",
        )
        .await;
        assert!(text.starts_with("HTTP/1.1 200 "), "{text}");
        assert!(
            text.contains(
                "apitap_analyzer_http_rejected_connections_total{server=\"metrics\",cause=\"unauthorized\"} 1\n"
            ),
            "{text}"
        );
        assert!(text.contains(
            "apitap_analyzer_http_rejected_connections_total{server=\"inventory_api\",cause=\"connection_limit\"} 0\n"
        ));
        assert!(text.contains("apitap_analyzer_http_open_connections{server=\"metrics\"} 1\n"));
    }

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

    /// Everything `/metrics` serves, with every part present (inventory, labelling, detections
    /// and the engine's own text, bus, both HTTP servers): each family once with `# HELP` and
    /// `# TYPE`, every name by the house rule.
    #[test]
    fn every_family_once_with_help_and_type_named_by_the_house_rule() {
        let mut ing = Ingestor::default();
        let key = apitap_labels::HashKey::from_secret(b"k");
        ing.detect = Some(
            crate::detection::Detection::new(&apitap_detect::DetectConfig::default(), &key)
                .unwrap(),
        );
        ing.labelling = Some(crate::labelling::Labelling::new(key).unwrap());
        ing.inventory = Some(
            crate::inventory::Inventory::new(crate::inventory::InventoryConfig::default()).unwrap(),
        );
        ing.ingest_event(&event(Some("api"), "GET", "/x"));
        ing.stats.anomalies.insert("midstream_start".into(), 2);
        let bus = BusMetrics::default();
        let mut out = Exposition::new();
        render_into(&mut out, &ing, Some(&bus));
        let http = HttpStats::default();
        HttpStats::render(
            &mut out,
            "apitap_analyzer",
            &[("metrics", &http), ("inventory_api", &http)],
        );
        let text = out.finish();
        apitap_metrics::check_exposition(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert!(
            text.contains("apitap_analyzer_anomaly_events_total{code=\"midstream_start\"} 2\n")
        );
        for family in [
            "apitap_analyzer_anomaly_events_total",
            "apitap_inventory_events_total",
            "apitap_weak_points_total",
            "apitap_detect_findings_dropped_total",
            "apitap_detect_state_bytes",
            "apitap_bus_spooling",
            "apitap_analyzer_http_open_connections",
        ] {
            assert!(
                text.contains(&format!("# TYPE {family} ")),
                "{family}\n{text}"
            );
        }
    }
}
