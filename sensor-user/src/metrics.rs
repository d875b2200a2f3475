//! Prometheus text exposition and `/healthz` over a minimal HTTP/1.1 server (R-OPS-2).
//!
//! Metric names follow `apitap_<subsystem>_<name>_total`; drops carry a `cause` label.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use apitap_common::Counter;
use apitap_decode::Stats;
use apitap_schema::PayloadMode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tracing::{debug, warn};

use crate::minimise::PayloadStats;

/// Everything the agent counts, as of the last refresh.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    /// Kernel counters indexed like [`Counter::ALL`].
    pub kernel: [u64; Counter::COUNT as usize],
    /// Decoder counters.
    pub decode: Stats,
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
}

impl Snapshot {
    /// Renders the Prometheus text format.
    pub fn render(&self) -> String {
        let mut s = String::with_capacity(4096);
        for c in Counter::ALL {
            let v = self.kernel[c as usize];
            if c.is_drop() {
                let _ = writeln!(
                    s,
                    "apitap_kernel_dropped_packets_total{{cause=\"{}\"}} {v}",
                    c.name()
                );
            } else {
                let _ = writeln!(s, "apitap_kernel_{}_total {v}", c.name());
            }
        }
        for (name, v) in self.decode.fields() {
            let _ = writeln!(s, "apitap_decode_{name}_total {v}");
        }
        let _ = writeln!(s, "apitap_sensor_ring_records_total {}", self.records);
        let _ = writeln!(s, "apitap_sensor_ring_wakeups_total {}", self.ring_wakeups);
        let _ = writeln!(
            s,
            "apitap_sensor_ring_timer_drains_total {}",
            self.ring_timer_drains
        );
        let _ = writeln!(s, "apitap_sensor_bad_records_total {}", self.bad_records);
        let _ = writeln!(s, "apitap_sensor_events_total {}", self.events);
        let _ = writeln!(s, "apitap_decode_connections {}", self.connections);
        let _ = writeln!(s, "apitap_decode_held_bytes {}", self.held_bytes);
        let p = &self.payload;
        let _ = writeln!(
            s,
            "apitap_payload_minimised_events_total{{mode=\"{}\"}} {}",
            self.payload_mode.as_str(),
            p.minimised_events
        );
        let _ = writeln!(
            s,
            "apitap_payload_labelled_events_total {}",
            p.labelled_events
        );
        let _ = writeln!(
            s,
            "apitap_payload_removed_body_bytes_total {}",
            p.removed_body_bytes
        );
        for (label, n) in &p.findings {
            let _ = writeln!(s, "apitap_payload_findings_total{{label=\"{label}\"}} {n}");
        }
        if let Some(bus) = &self.bus {
            bus.render(&mut s);
        }
        s
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

    fn get(&self) -> (String, bool) {
        match self.inner.lock() {
            Ok(g) => (g.0.render(), g.1.elapsed() < Duration::from_secs(10)),
            Err(_) => (String::new(), false),
        }
    }
}

/// Binds the endpoint now (so a bad address fails at startup) and serves it in the background.
pub async fn serve(addr: SocketAddr, shared: Shared) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding metrics.listen {addr}"))?;
    tokio::spawn(async move {
        loop {
            let (mut sock, peer) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    warn!(error = %e, "metrics accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let shared = shared.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let n =
                    match tokio::time::timeout(Duration::from_secs(5), sock.read(&mut buf)).await {
                        Ok(Ok(n)) => n,
                        _ => return,
                    };
                let line = buf[..n].split(|b| *b == b'\n').next().unwrap_or_default();
                let (status, body) = if line.starts_with(b"GET /metrics") {
                    ("200 OK", shared.get().0)
                } else if line.starts_with(b"GET /healthz") {
                    match shared.get().1 {
                        true => ("200 OK", "ok\n".to_owned()),
                        false => (
                            "503 Service Unavailable",
                            "capture loop stalled\n".to_owned(),
                        ),
                    }
                } else {
                    ("404 Not Found", "not found\n".to_owned())
                };
                let resp = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                if let Err(e) = sock.write_all(resp.as_bytes()).await {
                    debug!(%peer, error = %e, "metrics write failed");
                }
            });
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
