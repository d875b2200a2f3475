//! Detection configuration (`[detect]` table of the analyzer configuration). Every field has a
//! default; unknown fields are rejected (`deny_unknown_fields`) so a typo never silently
//! disables a detection. [`DetectConfig::validate`] names the offending field.
//!
//! Thresholds: each detector has fixed floors (`min_*`) that its signal must always reach;
//! with `adaptive = true` the effective threshold is raised to `baseline_factor` × the learned
//! baseline once the baseline has `baseline.min_samples` samples (R-THR-5). With
//! `adaptive = false` only the fixed values apply (fixed-threshold override).
//!
//! Each detector's section ([`CrawlingConfig`], …) is defined and validated beside the
//! detector, in its module of [`crate::detections`], and re-exported here.
use std::path::PathBuf;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::DetectError;

pub use crate::detections::abnormal_access::AbnormalConfig;
pub use crate::detections::brute_force::BruteForceConfig;
pub use crate::detections::crawling::CrawlingConfig;
pub use crate::detections::credential_stuffing::StuffingConfig;
pub use crate::detections::enumeration::EnumerationConfig;
pub use crate::detections::otp_guessing::OtpConfig;

/// The whole detection configuration.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectConfig {
    /// Proxies and load balancers (CIDR, e.g. `"10.0.0.0/8"`, or single addresses) whose
    /// `X-Forwarded-For` / `X-Real-IP` headers are believed. Requests from other peers are
    /// attributed to the peer address; the headers are attacker-controlled otherwise.
    pub trusted_proxies: Vec<String>,
    /// Working hours for the off-hours check of abnormal access; none: the check is off.
    pub working_hours: Option<WorkingHours>,
    /// GeoIP (MaxMind DB format) for foreign access to internal APIs.
    pub geoip: GeoIpConfig,
    /// State bounds (R-THR: all state bounded).
    pub limits: Limits,
    /// Alert lifecycle.
    pub lifecycle: Lifecycle,
    /// Baselines (R-THR-5).
    pub baseline: BaselineConfig,
    /// Login / OTP outcome inference.
    pub login: LoginConfig,
    /// Crawling / scraping (OAT-011).
    pub crawling: CrawlingConfig,
    /// Enumeration / BOLA (API1:2023).
    pub enumeration: EnumerationConfig,
    /// Credential stuffing (OAT-008).
    pub credential_stuffing: StuffingConfig,
    /// Brute force / credential cracking (OAT-007) and account takeover.
    pub brute_force: BruteForceConfig,
    /// OTP / SMS-code guessing (OAT-002).
    pub otp_guessing: OtpConfig,
    /// Abnormal data access.
    pub abnormal_access: AbnormalConfig,
}

/// Working hours: days and a half-open local hour range `[start_hour, end_hour)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkingHours {
    /// Working days, `mon` … `sun`.
    pub days: Vec<String>,
    /// First working hour (local time, 0–23).
    pub start_hour: u8,
    /// First hour after work (local time, 1–24).
    pub end_hour: u8,
    /// Offset of local time from UTC in minutes (e.g. 480 for UTC+8).
    pub utc_offset_minutes: i32,
}

impl Default for WorkingHours {
    fn default() -> Self {
        WorkingHours {
            days: ["mon", "tue", "wed", "thu", "fri"]
                .map(String::from)
                .to_vec(),
            start_hour: 8,
            end_hour: 20,
            utc_offset_minutes: 0,
        }
    }
}

/// GeoIP lookups for "foreign access to internal APIs".
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GeoIpConfig {
    /// Path of a MaxMind DB (GeoLite2/GeoIP2 Country or City, or any MMDB with
    /// `country.iso_code`). None: the check is off.
    pub database_path: Option<PathBuf>,
    /// ISO 3166-1 alpha-2 codes of the home countries (e.g. `["CN"]`); others are foreign.
    pub home_countries: Vec<String>,
    /// Services (Host header values) that are internal APIs.
    pub internal_services: Vec<String>,
    /// Path prefixes that are internal APIs (e.g. `"/internal/"`, `"/admin/"`).
    pub internal_path_prefixes: Vec<String>,
}

/// Bounds on state; what does not fit is evicted (least recently seen of a sample) and
/// counted (`apitap_detect_evicted_total`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Tracked keys per detector table (actors, (actor, template) pairs, user names, …).
    pub max_keys_per_table: usize,
    /// Endpoints with a baseline.
    pub max_endpoints: usize,
    /// Open campaigns; new campaigns beyond it are dropped and counted.
    pub max_campaigns: usize,
    /// Sample requests kept per campaign.
    pub max_samples_per_campaign: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_keys_per_table: 200_000,
            max_endpoints: 5_000,
            max_campaigns: 10_000,
            max_samples_per_campaign: 3,
        }
    }
}

/// Campaign lifecycle: one Create, then Updates at most every `update_interval_secs`, then a
/// Close once the campaign was quiet for `quiet_secs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Lifecycle {
    /// Minimum seconds between two Updates of one campaign.
    pub update_interval_secs: u64,
    /// Seconds without a matching event after which a campaign is closed.
    pub quiet_secs: u64,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Lifecycle {
            update_interval_secs: 60,
            quiet_secs: 300,
        }
    }
}

/// Baselines (R-THR-5).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BaselineConfig {
    /// Length of one baseline bucket in seconds (per-endpoint metrics are folded per bucket).
    pub bucket_secs: u64,
    /// EWMA weight of a new bucket (0 < alpha ≤ 1).
    pub alpha: f64,
    /// Samples a baseline needs before it may raise a threshold.
    pub min_samples: u32,
    /// Keep one baseline per hour of the week as well as the overall one.
    pub hour_of_week: bool,
    /// Standard deviations above the mean that count as "far above".
    pub sigmas: f64,
}

impl Default for BaselineConfig {
    fn default() -> Self {
        BaselineConfig {
            bucket_secs: 60,
            alpha: 0.1,
            min_samples: 30,
            hour_of_week: true,
            sigmas: 4.0,
        }
    }
}

/// Outcome inference for login and OTP-verify endpoints (`outcome.rs`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoginConfig {
    /// Extra case-insensitive body markers of a failed attempt (added to the defaults).
    pub failure_markers: Vec<String>,
    /// Extra case-insensitive body markers of a successful attempt (added to the defaults).
    pub success_markers: Vec<String>,
    /// Per-endpoint rules, matched on the endpoint template; first match wins.
    pub endpoints: Vec<EndpointOutcomeRule>,
}

/// Outcome rule of one endpoint.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EndpointOutcomeRule {
    /// Endpoint template (`/api/login`) this rule applies to.
    pub template: String,
    /// Status codes that mean success (empty: the defaults).
    pub success_status: Vec<u16>,
    /// Status codes that mean failure (empty: the defaults).
    pub failure_status: Vec<u16>,
    /// Body markers of success (replace the defaults when non-empty).
    pub success_markers: Vec<String>,
    /// Body markers of failure (replace the defaults when non-empty).
    pub failure_markers: Vec<String>,
    /// A `Set-Cookie` of this name means success.
    pub success_cookie: Option<String>,
    /// This detection treats the endpoint as a login (`login`) or OTP verification (`otp`)
    /// regardless of classification; empty: use the classification.
    pub kind: Option<String>,
}

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// Checks shared by every section's validation; `field` is the dotted path the error names.
pub(crate) mod check {
    use crate::DetectError;

    /// Greater than 0.
    pub(crate) fn positive(field: &str, v: u64) -> Result<(), DetectError> {
        if v == 0 {
            return Err(DetectError::config(field, "must be greater than 0"));
        }
        Ok(())
    }

    /// Between 0 and 1.
    pub(crate) fn ratio(field: &str, v: f64) -> Result<(), DetectError> {
        if !(0.0..=1.0).contains(&v) || v.is_nan() {
            return Err(DetectError::config(field, "must be between 0 and 1"));
        }
        Ok(())
    }

    /// A finite factor ≥ 1.
    pub(crate) fn factor(field: &str, v: f64) -> Result<(), DetectError> {
        if !(v >= 1.0 && v.is_finite()) {
            return Err(DetectError::config(field, "must be a finite number ≥ 1"));
        }
        Ok(())
    }
}

/// Parses a trusted-proxy entry: CIDR or single address.
pub fn parse_net(s: &str) -> Option<IpNet> {
    s.parse::<IpNet>()
        .ok()
        .or_else(|| s.parse::<std::net::IpAddr>().ok().map(IpNet::from))
}

impl DetectConfig {
    /// Checks every value; the error names the field (`crawling.window_secs`).
    pub fn validate(&self) -> Result<(), DetectError> {
        for (i, p) in self.trusted_proxies.iter().enumerate() {
            if parse_net(p).is_none() {
                return Err(DetectError::config(
                    format!("trusted_proxies[{i}]"),
                    "not an IP address or CIDR network",
                ));
            }
        }
        if let Some(w) = &self.working_hours {
            for (i, d) in w.days.iter().enumerate() {
                if !DAYS.contains(&d.to_ascii_lowercase().as_str()) {
                    return Err(DetectError::config(
                        format!("working_hours.days[{i}]"),
                        "expected one of mon, tue, wed, thu, fri, sat, sun",
                    ));
                }
            }
            if w.start_hour > 23 {
                return Err(DetectError::config(
                    "working_hours.start_hour",
                    "must be 0–23",
                ));
            }
            if w.end_hour == 0 || w.end_hour > 24 || w.end_hour <= w.start_hour {
                return Err(DetectError::config(
                    "working_hours.end_hour",
                    "must be 1–24 and after start_hour",
                ));
            }
            if w.utc_offset_minutes.abs() > 14 * 60 {
                return Err(DetectError::config(
                    "working_hours.utc_offset_minutes",
                    "must be within ±840",
                ));
            }
        }
        if self.geoip.database_path.is_some() {
            if self.geoip.home_countries.is_empty() {
                return Err(DetectError::config(
                    "geoip.home_countries",
                    "must list at least one country when geoip.database_path is set",
                ));
            }
            for (i, c) in self.geoip.home_countries.iter().enumerate() {
                if c.len() != 2 || !c.bytes().all(|b| b.is_ascii_alphabetic()) {
                    return Err(DetectError::config(
                        format!("geoip.home_countries[{i}]"),
                        "expected an ISO 3166-1 alpha-2 code",
                    ));
                }
            }
            if self.geoip.internal_services.is_empty()
                && self.geoip.internal_path_prefixes.is_empty()
            {
                return Err(DetectError::config(
                    "geoip.internal_services",
                    "set internal_services or internal_path_prefixes when geoip.database_path is set",
                ));
            }
        }
        let l = &self.limits;
        check::positive("limits.max_keys_per_table", l.max_keys_per_table as u64)?;
        check::positive("limits.max_endpoints", l.max_endpoints as u64)?;
        check::positive("limits.max_campaigns", l.max_campaigns as u64)?;
        if l.max_samples_per_campaign > 20 {
            return Err(DetectError::config(
                "limits.max_samples_per_campaign",
                "must be ≤ 20",
            ));
        }
        check::positive(
            "lifecycle.update_interval_secs",
            self.lifecycle.update_interval_secs,
        )?;
        check::positive("lifecycle.quiet_secs", self.lifecycle.quiet_secs)?;
        let b = &self.baseline;
        check::positive("baseline.bucket_secs", b.bucket_secs)?;
        if !(b.alpha > 0.0 && b.alpha <= 1.0) {
            return Err(DetectError::config("baseline.alpha", "must be in (0, 1]"));
        }
        if !(b.sigmas >= 0.0 && b.sigmas.is_finite()) {
            return Err(DetectError::config(
                "baseline.sigmas",
                "must be a finite number ≥ 0",
            ));
        }
        for (i, r) in self.login.endpoints.iter().enumerate() {
            if !r.template.starts_with('/') {
                return Err(DetectError::config(
                    format!("login.endpoints[{i}].template"),
                    "must start with /",
                ));
            }
            if let Some(k) = &r.kind
                && k != "login"
                && k != "otp"
            {
                return Err(DetectError::config(
                    format!("login.endpoints[{i}].kind"),
                    "expected \"login\" or \"otp\"",
                ));
            }
            for (j, s) in r.success_status.iter().chain(&r.failure_status).enumerate() {
                if !(100..=599).contains(s) {
                    return Err(DetectError::config(
                        format!("login.endpoints[{i}].success_status/failure_status[{j}]"),
                        "not an HTTP status code",
                    ));
                }
            }
        }
        // Each detector's section, validated beside its definition (`detections::*`).
        self.crawling.validate()?;
        self.enumeration.validate()?;
        self.credential_stuffing.validate()?;
        self.brute_force.validate()?;
        self.otp_guessing.validate()?;
        self.abnormal_access.validate()?;
        Ok(())
    }

    /// Parsed trusted proxies (call after [`DetectConfig::validate`]).
    pub fn trusted_nets(&self) -> Vec<IpNet> {
        self.trusted_proxies
            .iter()
            .filter_map(|p| parse_net(p))
            .collect()
    }
}

impl WorkingHours {
    /// Is this instant (µs since the epoch, UTC) inside working hours?
    pub fn contains(&self, unix_us: u64) -> bool {
        let local = (unix_us / 1_000_000) as i64 + i64::from(self.utc_offset_minutes) * 60;
        let days = local.div_euclid(86_400);
        let hour = (local.rem_euclid(86_400) / 3_600) as u8;
        // 1970-01-01 was a Thursday (index 3 with Monday = 0).
        let dow = DAYS[(days + 3).rem_euclid(7) as usize];
        self.days.iter().any(|d| d.eq_ignore_ascii_case(dow))
            && hour >= self.start_hour
            && hour < self.end_hour
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_round_trip_through_toml() {
        let cfg = DetectConfig::default();
        cfg.validate().unwrap();
        let text = toml::to_string(&cfg).unwrap();
        let back: DetectConfig = toml::from_str(&text).unwrap();
        assert_eq!(back, cfg);
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let err = toml::from_str::<DetectConfig>("[crawling]\nwindow_sec = 5\n").unwrap_err();
        assert!(err.to_string().contains("window_sec"), "{err}");
    }

    #[test]
    fn errors_name_the_field() {
        let mut cfg = DetectConfig::default();
        cfg.crawling.window_secs = 0;
        let e = cfg.validate().unwrap_err().to_string();
        assert!(e.contains("crawling.window_secs"), "{e}");
        let cfg = DetectConfig {
            trusted_proxies: vec!["10.0.0.0/8".into(), "nope".into()],
            ..DetectConfig::default()
        };
        let e = cfg.validate().unwrap_err().to_string();
        assert!(e.contains("trusted_proxies[1]"), "{e}");
        let mut cfg = DetectConfig::default();
        cfg.enumeration.min_error_ratio = 1.5;
        assert!(
            cfg.validate()
                .unwrap_err()
                .to_string()
                .contains("enumeration.min_error_ratio")
        );
        let mut cfg = DetectConfig::default();
        cfg.geoip.database_path = Some("/x.mmdb".into());
        assert!(
            cfg.validate()
                .unwrap_err()
                .to_string()
                .contains("geoip.home_countries")
        );
        let cfg = DetectConfig {
            working_hours: Some(WorkingHours {
                days: vec!["mon".into(), "funday".into()],
                ..WorkingHours::default()
            }),
            ..DetectConfig::default()
        };
        assert!(
            cfg.validate()
                .unwrap_err()
                .to_string()
                .contains("working_hours.days[1]")
        );
    }

    #[test]
    fn every_detector_section_is_validated_in_order() {
        let mut cfg = DetectConfig::default();
        cfg.abnormal_access.window_secs = 0;
        cfg.otp_guessing.window_secs = 0;
        cfg.brute_force.window_secs = 0;
        cfg.credential_stuffing.window_secs = 0;
        cfg.enumeration.window_secs = 0;
        cfg.crawling.window_secs = 0;
        // The first section in `[detect]` order is named; fix it and the next one is.
        for section in [
            "crawling",
            "enumeration",
            "credential_stuffing",
            "brute_force",
            "otp_guessing",
            "abnormal_access",
        ] {
            let e = cfg.validate().unwrap_err().to_string();
            assert_eq!(
                e,
                format!("invalid detection config `{section}.window_secs`: must be greater than 0")
            );
            match section {
                "crawling" => cfg.crawling.window_secs = 60,
                "enumeration" => cfg.enumeration.window_secs = 60,
                "credential_stuffing" => cfg.credential_stuffing.window_secs = 60,
                "brute_force" => cfg.brute_force.window_secs = 60,
                "otp_guessing" => cfg.otp_guessing.window_secs = 60,
                _ => cfg.abnormal_access.window_secs = 60,
            }
        }
        cfg.validate().unwrap();
        let err =
            toml::from_str::<DetectConfig>("[abnormal_access]\nmin_record = 5\n").unwrap_err();
        assert!(err.to_string().contains("min_record"), "{err}");
    }

    #[test]
    fn working_hours_honour_offset_and_days() {
        let w = WorkingHours {
            utc_offset_minutes: 480,
            ..WorkingHours::default()
        };
        // 2024-01-01 (Monday) 02:00 UTC = 10:00 UTC+8: working.
        let mon_10_local = 1_704_074_400u64 * 1_000_000;
        assert!(w.contains(mon_10_local));
        // 2024-01-01 14:00 UTC = 22:00 UTC+8: not working.
        assert!(!w.contains(mon_10_local + 12 * 3_600 * 1_000_000));
        // 2024-01-06 (Saturday) 10:00 local: not working.
        assert!(!w.contains(mon_10_local + 5 * 86_400 * 1_000_000));
    }
}
