//! Engine counters, rendered as Prometheus text (`apitap_detect_<name>_total`, R-OPS-2).
use apitap_metrics::{Exposition, Kind};

use crate::outcome::Signal;

/// Counters and gauges of one engine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineMetrics {
    /// Events observed.
    pub events: u64,
    /// Login / OTP attempts with a known outcome.
    pub auth_attempts: u64,
    /// … of which failed.
    pub auth_failures: u64,
    /// Login / OTP requests by the signal that decided their outcome
    /// (index: `Signal as usize`, names in [`Signal::ALL`]).
    pub auth_signals: [u64; Signal::ALL.len()],
    /// Findings emitted with activity Create.
    pub findings_created: u64,
    /// … Update.
    pub findings_updated: u64,
    /// … Close.
    pub findings_closed: u64,
    /// Campaigns not opened because `limits.max_campaigns` were open.
    pub campaigns_dropped: u64,
    /// Entries evicted from full tables, per table: each detector's (as in
    /// [`crate::Engine::table_sizes`]), then `baseline`, then `login_outcomes`.
    pub evicted: [(&'static str, u64); crate::detections::COUNT + 2],
    /// GeoIP lookups that failed.
    pub geoip_errors: u64,
    /// Open campaigns (gauge).
    pub open_campaigns: u64,
    /// Bytes of detection state (gauge).
    pub state_bytes: u64,
}

impl EngineMetrics {
    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = Exposition::new();
        self.render_into(&mut out);
        out.finish()
    }

    /// Adds the engine's families to `out`.
    pub fn render_into(&self, out: &mut Exposition) {
        out.counter(
            "apitap_detect_events_total",
            "API events observed by the detection engine.",
            self.events,
        );
        out.counter(
            "apitap_detect_auth_attempts_total",
            "Login and OTP attempts with a known outcome.",
            self.auth_attempts,
        );
        out.counter(
            "apitap_detect_auth_failures_total",
            "Failed login and OTP attempts.",
            self.auth_failures,
        );
        let mut signals = out.family(
            "apitap_detect_auth_outcome_signals_total",
            Kind::Counter,
            "Login and OTP requests by the signal that decided their outcome.",
        );
        for s in Signal::ALL {
            signals.sample(&[("signal", s.as_str())], self.auth_signals[s as usize]);
        }
        out.counter(
            "apitap_detect_campaigns_dropped_total",
            "Campaigns not opened because the campaign table was full.",
            self.campaigns_dropped,
        );
        out.counter(
            "apitap_detect_geoip_errors_total",
            "GeoIP lookups that failed.",
            self.geoip_errors,
        );
        let mut findings = out.family(
            "apitap_detect_findings_total",
            Kind::Counter,
            "Findings emitted, by OCSF activity.",
        );
        for (a, v) in [
            ("create", self.findings_created),
            ("update", self.findings_updated),
            ("close", self.findings_closed),
        ] {
            findings.sample(&[("activity", a)], v);
        }
        let mut evicted = out.family(
            "apitap_detect_evicted_total",
            Kind::Counter,
            "State entries evicted from full tables.",
        );
        for (t, v) in self.evicted {
            evicted.sample(&[("table", t)], v);
        }
        out.gauge(
            "apitap_detect_open_campaigns",
            "Open campaigns.",
            self.open_campaigns,
        );
        out.gauge(
            "apitap_detect_state_bytes",
            "Bytes of detection state.",
            self.state_bytes,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_names() {
        let m = EngineMetrics {
            events: 7,
            evicted: [
                ("crawling", 3),
                ("a", 0),
                ("b", 0),
                ("c", 0),
                ("d", 0),
                ("e", 0),
                ("f", 0),
                ("g", 0),
            ],
            ..EngineMetrics::default()
        };
        let t = m.render();
        assert!(t.contains("apitap_detect_events_total 7\n"), "{t}");
        assert!(t.contains("apitap_detect_evicted_total{table=\"crawling\"} 3\n"));
        assert!(t.contains("apitap_detect_findings_total{activity=\"create\"} 0\n"));
        for line in t.lines().filter(|l| !l.starts_with('#')) {
            let (name, value) = line.rsplit_once(' ').unwrap();
            assert!(name.starts_with("apitap_detect_"), "{line}");
            value.parse::<u64>().unwrap();
        }
    }
}
