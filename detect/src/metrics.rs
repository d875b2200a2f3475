//! Engine counters, rendered as Prometheus text (`apitap_detect_<name>_total`, R-OPS-2).
use std::fmt::Write as _;

/// Counters and gauges of one engine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineMetrics {
    /// Events observed.
    pub events: u64,
    /// Login / OTP attempts with a known outcome.
    pub auth_attempts: u64,
    /// … of which failed.
    pub auth_failures: u64,
    /// Findings emitted with activity Create.
    pub findings_created: u64,
    /// … Update.
    pub findings_updated: u64,
    /// … Close.
    pub findings_closed: u64,
    /// Campaigns not opened because `limits.max_campaigns` were open.
    pub campaigns_dropped: u64,
    /// Entries evicted from full tables, per table: each detector's (as in
    /// [`crate::Engine::table_sizes`]), then `baseline`.
    pub evicted: [(&'static str, u64); crate::detections::COUNT + 1],
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
        let mut s = String::new();
        let mut counter = |name: &str, help: &str, v: u64| {
            let _ = writeln!(s, "# HELP apitap_detect_{name}_total {help}");
            let _ = writeln!(s, "# TYPE apitap_detect_{name}_total counter");
            let _ = writeln!(s, "apitap_detect_{name}_total {v}");
        };
        counter(
            "events",
            "API events observed by the detection engine.",
            self.events,
        );
        counter(
            "auth_attempts",
            "Login and OTP attempts with a known outcome.",
            self.auth_attempts,
        );
        counter(
            "auth_failures",
            "Failed login and OTP attempts.",
            self.auth_failures,
        );
        counter(
            "campaigns_dropped",
            "Campaigns not opened because the campaign table was full.",
            self.campaigns_dropped,
        );
        counter(
            "geoip_errors",
            "GeoIP lookups that failed.",
            self.geoip_errors,
        );
        let _ = writeln!(
            s,
            "# HELP apitap_detect_findings_total Findings emitted, by OCSF activity."
        );
        let _ = writeln!(s, "# TYPE apitap_detect_findings_total counter");
        for (a, v) in [
            ("create", self.findings_created),
            ("update", self.findings_updated),
            ("close", self.findings_closed),
        ] {
            let _ = writeln!(s, "apitap_detect_findings_total{{activity=\"{a}\"}} {v}");
        }
        let _ = writeln!(
            s,
            "# HELP apitap_detect_evicted_total State entries evicted from full tables."
        );
        let _ = writeln!(s, "# TYPE apitap_detect_evicted_total counter");
        for (t, v) in self.evicted {
            let _ = writeln!(s, "apitap_detect_evicted_total{{table=\"{t}\"}} {v}");
        }
        let _ = writeln!(s, "# HELP apitap_detect_open_campaigns Open campaigns.");
        let _ = writeln!(s, "# TYPE apitap_detect_open_campaigns gauge");
        let _ = writeln!(s, "apitap_detect_open_campaigns {}", self.open_campaigns);
        let _ = writeln!(
            s,
            "# HELP apitap_detect_state_bytes Bytes of detection state."
        );
        let _ = writeln!(s, "# TYPE apitap_detect_state_bytes gauge");
        let _ = writeln!(s, "apitap_detect_state_bytes {}", self.state_bytes);
        s
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
