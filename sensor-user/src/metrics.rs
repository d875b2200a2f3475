//! Prometheus text exposition and `/healthz` (R-OPS-2), served by `apitap-admin-http`: the
//! hardened server the analyzer uses too (connection cap, whole-head and write deadlines, one
//! request per connection, `GET`/`HEAD` only; issue 22, R-OPS-3). With `metrics.token_file`
//! `/metrics` needs `Authorization: Bearer <token>`; `/healthz` stays open for probes.
//!
//! Written with `apitap-metrics` (every family once, with `# HELP` and `# TYPE`). Metric names
//! follow `apitap_<subsystem>_<name>_total` (gauges without `_total`); drops carry a `cause`
//! label. The server's own refusals are
//! `apitap_sensor_http_rejected_connections_total{server,cause}`.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use apitap_admin_http::{Handler, HttpStats, KeyFileError, Limits, Options, Response, Token};
use apitap_common::Counter;
use apitap_decode::Stats;
use apitap_decode::h2::H2Stats;
use apitap_metrics::{Exposition, Kind};
use apitap_schema::PayloadMode;
use tokio::net::TcpListener;

use crate::attribution::AttributionStats;
use crate::config::ConfigError;
use crate::minimise::PayloadStats;
use crate::tls::TlsStats;
use apitap_common::tls::TlsCounter;

/// Everything the agent counts, as of the last refresh.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    /// Kernel counters indexed like [`Counter::ALL`].
    pub kernel: [u64; Counter::COUNT as usize],
    /// Decoder counters.
    pub decode: Stats,
    /// HTTP/2 decoder counters summed over connections (`apitap_decode_h2_*`).
    pub h2: H2Stats,
    /// Ring records the agent could not parse.
    pub bad_records: u64,
    /// Ring records read.
    pub records: u64,
    /// Times the kernel woke the agent to read the ring (`capture.wakeup_bytes` crossed, or
    /// every record with `wakeup_bytes = 0`).
    pub ring_wakeups: u64,
    /// Timer drains of the ring (`capture.poll_interval_ms`) that found records.
    pub ring_timer_drains: u64,
    /// Events written to the sink.
    pub events: u64,
    /// Connections tracked now.
    pub connections: usize,
    /// Bytes held by the decoder now.
    pub held_bytes: usize,
    /// The event bus's counters (`apitap_bus_*`), when the sink is the bus.
    pub bus: Option<std::sync::Arc<apitap_bus::BusMetrics>>,
    /// Data minimisation counters (`apitap_payload_*`, R-CAP-8).
    pub payload: PayloadStats,
    /// The configured payload mode.
    pub payload_mode: PayloadMode,
    /// Attribution counters (`apitap_attribution_*`, `apitap_kubernetes_*`), when it is on.
    pub attribution: Option<AttributionStats>,
    /// TLS plaintext capture (`apitap_tls_*`), when `[tls]` is on.
    pub tls: Option<TlsSnapshot>,
}

/// TLS capture's counters (R-CAP-4).
#[derive(Debug, Default, Clone)]
pub struct TlsSnapshot {
    /// Kernel counters indexed like [`TlsCounter::ALL`].
    pub kernel: [u64; TlsCounter::COUNT as usize],
    /// The agent's TLS decoder counters.
    pub stats: TlsStats,
    /// Decoder counters of the TLS sessions.
    pub decode: Stats,
    /// HTTP/2 decoder counters of the TLS sessions (`apitap_tls_decode_h2_*`).
    pub h2: H2Stats,
    /// TLS connections open now.
    pub connections: usize,
    /// Bytes the TLS sessions hold now.
    pub held_bytes: usize,
    /// Processes whose TLS is not captured, by (library, reason): at start and since.
    pub unsupported: Vec<(&'static str, &'static str, u64)>,
    /// Checks of processes started after the sensor.
    pub exec_checks: crate::tls::watch::WatchStats,
    /// The attach helper's outcomes: files attached, failed, detached.
    pub late_probes: [u64; 3],
    /// Exec notices the attach helper could not be sent.
    pub late_notices_dropped: u64,
}

fn tls_kernel_help(c: TlsCounter) -> &'static str {
    match c {
        TlsCounter::Calls => "TLS read/write calls of selected processes that returned plaintext.",
        TlsCounter::Records => "Records the TLS probes wrote to the TLS ring buffer.",
        TlsCounter::Bytes => "Plaintext bytes the TLS probes wrote to the TLS ring buffer.",
        TlsCounter::NoSocket => {
            "TLS calls whose socket was not seen (their events carry 0.0.0.0:0 endpoints)."
        }
        TlsCounter::Closes => "TLS connections whose end (SSL_free, gnutls_deinit) was reported.",
        TlsCounter::Execs => "Execs of selected processes reported to the sensor.",
        TlsCounter::ExecsLost => {
            "Execs of selected processes the probes could not report (ring full, or unreadable exec arguments)."
        }
        TlsCounter::RingFull
        | TlsCounter::ReadFailed
        | TlsCounter::TooLong
        | TlsCounter::NoEntry
        | TlsCounter::TailCallFailed => {
            "TLS calls whose plaintext the probes lost in whole or in part, by cause."
        }
    }
}

fn render_tls(out: &mut Exposition, t: &TlsSnapshot) {
    let mut f = out.family(
        "apitap_tls_late_files_total",
        Kind::Counter,
        "Library files first seen after start, by what the attach helper did (tls.attach_later).",
    );
    for (i, outcome) in ["attached", "failed", "detached"].iter().enumerate() {
        f.sample(&[("outcome", outcome)], t.late_probes[i]);
    }
    out.counter(
        "apitap_tls_late_notices_dropped_total",
        "Exec notices the attach helper's socket could not take (the next rescan finds the files).",
        t.late_notices_dropped,
    );
    for c in TlsCounter::ALL {
        let v = t.kernel[c as usize];
        if c.is_drop() {
            out.family(
                "apitap_tls_kernel_lost_calls_total",
                Kind::Counter,
                tls_kernel_help(c),
            )
            .sample(&[("cause", c.name())], v);
        } else {
            out.counter(
                &format!("apitap_tls_kernel_{}_total", c.name()),
                tls_kernel_help(c),
                v,
            );
        }
    }
    let s = &t.stats;
    for (name, help, v) in [
        ("records", "TLS ring records read by the sensor.", s.records),
        (
            "bad_records",
            "TLS ring records the sensor could not parse.",
            s.bad_records,
        ),
        (
            "plaintext_bytes",
            "TLS plaintext bytes decoded.",
            s.plaintext_bytes,
        ),
        ("connections", "TLS connections opened.", s.connections),
        (
            "sni",
            "Server names (SNI) the TLS probes reported (set by a client, read by a server).",
            s.sni,
        ),
        (
            "connections_closed",
            "TLS connections closed by the library's free call.",
            s.connections_closed,
        ),
        (
            "connections_idle",
            "TLS connections closed after tls.idle_timeout_secs without plaintext.",
            s.connections_idle,
        ),
        (
            "connections_evicted",
            "TLS connections closed because tls.max_connections were open.",
            s.connections_evicted,
        ),
        (
            "role_from_content",
            "TLS connections whose socket's establishment was not seen; role taken from the first bytes.",
            s.role_from_content,
        ),
        (
            "unknown_endpoints",
            "TLS connections whose socket was not seen (events carry 0.0.0.0:0).",
            s.unknown_endpoints,
        ),
        (
            "gaps",
            "Gaps in TLS plaintext streams (bytes the probes lost).",
            s.gaps,
        ),
        (
            "gap_bytes",
            "Bytes in gaps of TLS plaintext streams.",
            s.gap_bytes,
        ),
        (
            "restarts",
            "TLS connection objects reused without their free being seen.",
            s.restarts,
        ),
    ] {
        out.counter(&format!("apitap_tls_{name}_total"), help, v);
    }
    for (name, help, v) in t.decode.described() {
        out.counter(&format!("apitap_tls_decode_{name}_total"), help, v);
    }
    for (name, help, v) in t.h2.described() {
        out.counter(&format!("apitap_tls_decode_h2_{name}_total"), help, v);
    }
    // R-CAP-4: every process seen using TLS the sensor cannot capture is counted (a sample
    // per library and reason once there is one).
    if !t.unsupported.is_empty() {
        let mut f = out.family(
            "apitap_tls_unsupported_processes_total",
            Kind::Counter,
            "Processes whose TLS is not captured, by library and reason: a TLS implementation the probes cannot hook (not_hookable: Go, NSS, wolfSSL, mbedTLS), a supported library whose probing failed (attach_failed), or a supported library file first run after the sensor started (not_probed).",
        );
        for (lib, reason, n) in &t.unsupported {
            f.sample(&[("library", lib), ("reason", reason)], *n);
        }
    }
    let w = &t.exec_checks;
    let mut f = out.family(
        "apitap_tls_exec_checks_total",
        Kind::Counter,
        "Execs of selected processes after start whose executable was checked for TLS, or could not be opened as the executed file (unreadable).",
    );
    for (result, v) in [("checked", w.checked), ("unreadable", w.unreadable)] {
        f.sample(&[("result", result)], v);
    }
    out.gauge(
        "apitap_tls_open_connections",
        "TLS connections decoded now.",
        t.connections as u64,
    );
    out.gauge(
        "apitap_tls_held_bytes",
        "Bytes held by the TLS sessions now.",
        t.held_bytes as u64,
    );
}

fn render_attribution(out: &mut Exposition, a: &AttributionStats) {
    let mut f = out.family(
        "apitap_attribution_events_total",
        Kind::Counter,
        "Events by side and whether that side's socket owner was found on this host (R-CAP-5).",
    );
    for (side, result, v) in [
        ("server", "attributed", a.server_attributed),
        ("server", "not_recorded", a.server_not_recorded),
        ("client", "attributed", a.client_attributed),
        ("client", "not_recorded", a.client_not_recorded),
    ] {
        f.sample(&[("side", side), ("result", result)], v);
    }
    out.counter(
        "apitap_attribution_cgroup_gone_total",
        "Socket owners whose cgroup no longer existed when resolved (workload exited first).",
        a.cgroup_gone,
    );
    out.counter(
        "apitap_attribution_owner_lookups_total",
        "Lookups in the kernel's flow owner map.",
        a.owner_lookups,
    );
    out.counter(
        "apitap_attribution_cache_resets_total",
        "Times the per-connection owner cache was full and started over.",
        a.cache_resets,
    );
    out.counter(
        "apitap_attribution_cgroup_scans_total",
        "Scans of the cgroup v2 hierarchy for unknown cgroup ids.",
        a.cgroup_scans,
    );
    if let Some(k) = &a.kubernetes {
        let mut f = out.family(
            "apitap_attribution_pods_total",
            Kind::Counter,
            "Attributions to a pod, by whether the Kubernetes API knew the pod.",
        );
        f.sample(&[("result", "found")], a.pod_found);
        f.sample(&[("result", "unknown")], a.pod_unknown);
        out.gauge(
            "apitap_kubernetes_pods",
            "Pods of this node known from the Kubernetes API now.",
            k.pods,
        );
        out.gauge(
            "apitap_kubernetes_synced",
            "1 once the first complete list of this node's pods arrived.",
            u64::from(k.synced),
        );
        out.counter(
            "apitap_kubernetes_watch_errors_total",
            "Errors of the Kubernetes pod watch (it retries with backoff).",
            k.watch_errors,
        );
        out.counter(
            "apitap_kubernetes_pods_overflow_total",
            "Pods not kept because the index held its maximum (10000).",
            k.overflow,
        );
    }
}

/// `# HELP` of a kernel counter (every drop cause shares the one family `dropped_packets`).
fn kernel_help(c: Counter) -> &'static str {
    match c {
        Counter::Packets => "Packets the eBPF programs ran on.",
        Counter::Matched => "TCP packets on a configured port with payload or SYN/FIN/RST.",
        Counter::Records => "Records the eBPF programs wrote to the ring buffer.",
        Counter::PayloadBytes => "Payload bytes the eBPF programs wrote to the ring buffer.",
        Counter::RingFull
        | Counter::Truncated
        | Counter::NonLinear
        | Counter::ParseError
        | Counter::LoadFailed
        | Counter::Ipv6ExtHeaders
        | Counter::IpFragment => "Packets the eBPF programs lost or captured in part, by cause.",
        Counter::OwnerFlows => {
            "Flows whose owning cgroup the cgroup egress program recorded (new or changed owner)."
        }
        Counter::OwnerUpdateFailed => {
            "Flow owners the cgroup egress program could not record; their events carry no workload."
        }
    }
}

impl Snapshot {
    /// Adds every counter and gauge, the bus's too, to `out`.
    pub fn render_into(&self, out: &mut Exposition) {
        for c in Counter::ALL {
            let v = self.kernel[c as usize];
            if c.is_drop() {
                out.family(
                    "apitap_kernel_dropped_packets_total",
                    Kind::Counter,
                    kernel_help(c),
                )
                .sample(&[("cause", c.name())], v);
            } else {
                out.counter(
                    &format!("apitap_kernel_{}_total", c.name()),
                    kernel_help(c),
                    v,
                );
            }
        }
        for (name, help, v) in self.decode.described() {
            out.counter(&format!("apitap_decode_{name}_total"), help, v);
        }
        for (name, help, v) in self.h2.described() {
            out.counter(&format!("apitap_decode_h2_{name}_total"), help, v);
        }
        out.counter(
            "apitap_sensor_ring_records_total",
            "Ring buffer records read by the sensor.",
            self.records,
        );
        out.counter(
            "apitap_sensor_ring_wakeups_total",
            "Times the kernel woke the sensor to read the ring buffer.",
            self.ring_wakeups,
        );
        out.counter(
            "apitap_sensor_ring_timer_drains_total",
            "Timer drains of the ring buffer (capture.poll_interval_ms) that found records.",
            self.ring_timer_drains,
        );
        out.counter(
            "apitap_sensor_bad_records_total",
            "Ring buffer records the sensor could not parse.",
            self.bad_records,
        );
        out.counter(
            "apitap_sensor_events_total",
            "API events written to the sink.",
            self.events,
        );
        out.gauge(
            "apitap_decode_connections",
            "Connections tracked by the decoder now.",
            self.connections as u64,
        );
        out.gauge(
            "apitap_decode_held_bytes",
            "Bytes held by the decoder now.",
            self.held_bytes as u64,
        );
        let p = &self.payload;
        out.family(
            "apitap_payload_minimised_events_total",
            Kind::Counter,
            "Events whose payload was minimised, by payload mode.",
        )
        .sample(&[("mode", self.payload_mode.as_str())], p.minimised_events);
        out.counter(
            "apitap_payload_labelled_events_total",
            "Events shipped with a labels summary.",
            p.labelled_events,
        );
        out.counter(
            "apitap_payload_removed_body_bytes_total",
            "Captured body bytes that did not leave the host (removed or cut).",
            p.removed_body_bytes,
        );
        if let Some(sm) = &p.sampling {
            out.counter(
                "apitap_payload_sampled_out_events_total",
                "Events shipped without their bodies: their endpoint was over payload.max_bodies_per_endpoint_per_sec.",
                sm.sampled_out_events,
            );
            out.counter(
                "apitap_payload_sampled_out_body_bytes_total",
                "Captured body bytes of those events that did not leave the host.",
                sm.sampled_out_body_bytes,
            );
            out.gauge(
                "apitap_payload_sampled_endpoints",
                "Endpoints the body sampler tracks now.",
                sm.endpoints,
            );
            out.counter(
                "apitap_payload_sampling_table_resets_total",
                "Times the body sampler's endpoint table was full and started over.",
                sm.table_resets,
            );
        }
        let mut f = out.family(
            "apitap_payload_findings_total",
            Kind::Counter,
            "Sensitive-data findings shipped in event labels, by label.",
        );
        for (label, n) in &p.findings {
            f.sample(&[("label", *label)], *n);
        }
        if let Some(a) = &self.attribution {
            render_attribution(out, a);
        }
        if let Some(t) = &self.tls {
            render_tls(out, t);
        }
        if let Some(bus) = &self.bus {
            bus.render(out);
        }
    }

    /// The Prometheus text exposition of [`Snapshot::render_into`].
    pub fn render(&self) -> String {
        let mut out = Exposition::new();
        self.render_into(&mut out);
        out.finish()
    }

    /// Sum of the kernel drop counters.
    pub fn kernel_drops(&self) -> u64 {
        Counter::ALL
            .iter()
            .filter(|c| c.is_drop())
            .map(|c| self.kernel[*c as usize])
            .sum()
    }
}

/// Shared between the capture loop (writer) and the HTTP endpoint (reader).
#[derive(Debug, Clone)]
pub struct Shared {
    inner: Arc<Mutex<(Snapshot, Instant)>>,
}

impl Default for Shared {
    fn default() -> Self {
        Shared {
            inner: Arc::new(Mutex::new((Snapshot::default(), Instant::now()))),
        }
    }
}

impl Shared {
    /// Publishes a new snapshot.
    pub fn publish(&self, snap: Snapshot) {
        if let Ok(mut g) = self.inner.lock() {
            *g = (snap, Instant::now());
        }
    }

    /// Adds the last snapshot to `out`.
    fn render_into(&self, out: &mut Exposition) {
        if let Ok(g) = self.inner.lock() {
            g.0.render_into(out);
        }
    }

    /// True when a snapshot was published in the last 10 s (the capture loop is alive).
    fn fresh(&self) -> bool {
        match self.inner.lock() {
            Ok(g) => g.1.elapsed() < Duration::from_secs(10),
            Err(_) => false,
        }
    }
}

/// The bearer token of `metrics.token_file`, if set; refused (naming the field, never the
/// token) unless the file is its owner's alone and long enough.
pub fn token(file: Option<&Path>) -> Result<Option<Token>, ConfigError> {
    file.map(|path| {
        Token::from_file(path).map_err(|e| ConfigError {
            field: "metrics.token_file".to_owned(),
            reason: match e {
                KeyFileError::Read(e) => format!("cannot read {}: {e}", path.display()),
                e => format!("{}: {e}", path.display()),
            },
        })
    })
    .transpose()
}

/// Binds the endpoint now (so a bad address or token file fails at startup) and serves it
/// in the background.
pub async fn serve(
    addr: SocketAddr,
    token_file: Option<&Path>,
    shared: Shared,
) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let token = token(token_file)?;
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding metrics.listen {addr}"))?;
    let stats = Arc::new(HttpStats::default());
    let options = Options {
        name: "metrics",
        limits: Limits::default(),
        token,
        stats: Arc::clone(&stats),
        self_authenticated: &[],
        tls: None,
    };
    let handler: Handler = Arc::new(move |req| match req.path() {
        "/metrics" => {
            let mut out = Exposition::new();
            shared.render_into(&mut out);
            HttpStats::render(&mut out, "apitap_sensor", &[("metrics", &stats)]);
            Response::new(200, apitap_metrics::CONTENT_TYPE, out.finish().into_bytes())
        }
        "/healthz" => match shared.fresh() {
            true => Response::text(200, "ok\n"),
            false => Response::text(503, "capture loop stalled\n"),
        },
        _ => Response::text(404, "not found\n"),
    });
    tokio::spawn(apitap_admin_http::serve(listener, handler, options));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token_file(name: &str, mode: u32) -> std::path::PathBuf {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = std::env::temp_dir().join(format!("apitap-sensor-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(name);
        std::fs::write(&p, "Zq7-sensor-secret-0123456789\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    async fn get(addr: SocketAddr, path: &str, extra: &str) -> String {
        apitap_admin_http::get_once(addr, path, extra)
            .await
            .unwrap()
    }

    #[test]
    fn token_file_open_to_others_is_refused_naming_the_field() {
        let p = token_file("open", 0o644);
        let e = token(Some(&p)).unwrap_err();
        assert_eq!(e.field, "metrics.token_file");
        assert!(e.to_string().contains("chmod 600"), "{e}");
        assert!(!e.to_string().contains("Zq7"), "{e}");
        let p = token_file("private", 0o600);
        assert!(token(Some(&p)).unwrap().is_some());
        assert!(token(None).unwrap().is_none());
    }

    /// Over a real socket: `/metrics` needs the token, `/healthz` does not, and the refusal is
    /// counted on `/metrics`.
    #[tokio::test]
    async fn token_guards_metrics_and_rejections_are_counted() {
        // A free port: bind, note it, release it for `serve` to bind.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let p = token_file("serve", 0o600);
        serve(addr, Some(&p), Shared::default()).await.unwrap();
        let denied = get(addr, "/metrics", "").await;
        assert!(denied.starts_with("HTTP/1.1 401 "), "{denied}");
        assert!(denied.contains("WWW-Authenticate: Bearer"), "{denied}");
        assert!(!denied.contains("apitap_kernel"), "{denied}");
        let health = get(addr, "/healthz", "").await;
        assert!(
            health.starts_with("HTTP/1.1 200 ") && health.ends_with("ok\n"),
            "{health}"
        );
        let text = get(
            addr,
            "/metrics",
            "Authorization: Bearer Zq7-sensor-secret-0123456789\r\n",
        )
        .await;
        assert!(text.starts_with("HTTP/1.1 200 "), "{text}");
        assert!(
            text.contains("Content-Type: text/plain; version=0.0.4\r\n"),
            "{text}"
        );
        assert!(text.contains("apitap_kernel_packets_total 0\n"), "{text}");
        assert!(
            text.contains(
                "apitap_sensor_http_rejected_connections_total{server=\"metrics\",cause=\"unauthorized\"} 1\n"
            ),
            "{text}"
        );
        assert!(
            get(
                addr,
                "/nope",
                "Authorization: Bearer Zq7-sensor-secret-0123456789\r\n"
            )
            .await
            .starts_with("HTTP/1.1 404 ")
        );
    }

    #[test]
    fn renders_drop_causes_as_labels() {
        let mut s = Snapshot::default();
        s.kernel[Counter::RingFull as usize] = 3;
        s.kernel[Counter::Packets as usize] = 10;
        let text = s.render();
        assert!(text.contains("apitap_kernel_dropped_packets_total{cause=\"ring_full\"} 3"));
        assert!(text.contains("apitap_kernel_packets_total 10"));
        assert!(text.contains("apitap_decode_stream_gaps_total 0"));
        assert_eq!(s.kernel_drops(), 3);
    }

    #[test]
    fn renders_payload_counters_by_mode_and_label() {
        let mut s = Snapshot {
            payload_mode: PayloadMode::Labels,
            ..Snapshot::default()
        };
        s.payload.minimised_events = 7;
        s.payload.labelled_events = 7;
        s.payload.removed_body_bytes = 4096;
        s.payload.findings.insert("prc_id", 3);
        s.payload.findings.insert("mobile", 2);
        let text = s.render();
        assert!(text.contains("apitap_payload_minimised_events_total{mode=\"labels\"} 7\n"));
        assert!(text.contains("apitap_payload_labelled_events_total 7\n"));
        assert!(text.contains("apitap_payload_removed_body_bytes_total 4096\n"));
        assert!(text.contains("apitap_payload_findings_total{label=\"prc_id\"} 3\n"));
        assert!(text.contains("apitap_payload_findings_total{label=\"mobile\"} 2\n"));
    }

    /// Everything `/metrics` serves, the bus's and the HTTP server's counters too: each family
    /// once with `# HELP` and `# TYPE`, every name by the house rule.
    #[test]
    fn every_family_once_with_help_and_type_named_by_the_house_rule() {
        let mut s = Snapshot {
            bus: Some(std::sync::Arc::new(apitap_bus::BusMetrics::default())),
            tls: Some(TlsSnapshot::default()),
            ..Snapshot::default()
        };
        s.kernel[Counter::IpFragment as usize] = 1;
        if let Some(t) = &mut s.tls {
            t.kernel[TlsCounter::RingFull as usize] = 2;
            t.unsupported = vec![("openssl", "not_probed", 1), ("go", "not_hookable", 4)];
            t.exec_checks.checked = 5;
        }
        s.payload.findings.insert("prc_id", 3);
        let mut out = Exposition::new();
        s.render_into(&mut out);
        HttpStats::render(
            &mut out,
            "apitap_sensor",
            &[("metrics", &HttpStats::default())],
        );
        let text = out.finish();
        apitap_metrics::check_exposition(&text).unwrap();
        assert_eq!(
            text.matches("# TYPE apitap_kernel_dropped_packets_total counter\n")
                .count(),
            1
        );
        assert!(text.contains(
            "# HELP apitap_decode_segments_total TCP segments handed to the reassembler.\n"
        ));
        // The HTTP/2 decoder's counters (issue 17), named by the same rule.
        assert!(text.contains(
            "# HELP apitap_decode_h2_hpack_unknown_fields_total Header fields referring to dynamic table entries"
        ));
        assert!(text.contains("apitap_decode_h2_streams_reset_total 0\n"));
        assert!(text.contains("apitap_tls_decode_h2_streams_reset_total 0\n"));
        assert!(text.contains("apitap_kernel_dropped_packets_total{cause=\"ip_fragment\"} 1\n"));
        assert!(text.contains("apitap_tls_kernel_lost_calls_total{cause=\"ring_full\"} 2\n"));
        assert!(text.contains("# TYPE apitap_tls_open_connections gauge\n"));
        assert!(text.contains(
            "apitap_tls_unsupported_processes_total{library=\"openssl\",reason=\"not_probed\"} 1\n"
        ));
        assert!(text.contains(
            "apitap_tls_unsupported_processes_total{library=\"go\",reason=\"not_hookable\"} 4\n"
        ));
        assert!(text.contains("apitap_tls_exec_checks_total{result=\"checked\"} 5\n"));
        assert!(text.contains("apitap_tls_kernel_execs_lost_total 0\n"));
        assert!(text.contains("# TYPE apitap_decode_connections gauge\n"));
    }
}
