//! Detection configuration (`[detect]` table of the analyzer configuration). Every field has a
//! default; unknown fields are rejected (`deny_unknown_fields`) so a typo never silently
//! disables a detection. [`DetectConfig::validate`] names the offending field.
//!
//! Thresholds: each detector has fixed floors (`min_*`) that its signal must always reach;
//! with `adaptive = true` the effective threshold is raised to `baseline_factor` × the learned
//! baseline once the baseline has `baseline.min_samples` samples (R-THR-5). With
//! `adaptive = false` only the fixed values apply (fixed-threshold override).
use std::path::PathBuf;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::DetectError;

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

/// Crawling / scraping (OAT-011). Actor: client IP; distributed: client fingerprint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CrawlingConfig {
    /// Detection on.
    pub enabled: bool,
    /// Window length in seconds.
    pub window_secs: u64,
    /// Requests per window an actor must reach.
    pub min_requests: u32,
    /// Distinct paths (concrete) per window an actor must reach.
    pub min_distinct_paths: u32,
    /// Distinct endpoint templates per window an actor must reach (unless it walks pages):
    /// breadth over one template is enumeration, reported by that detector instead.
    pub min_distinct_templates: u32,
    /// Machine-likeness signals (non-browser or rotating UA, no Referer, no cookies, regular
    /// timing, pagination walk, many sensitive records) of which at least this many must hold.
    pub min_signals: u32,
    /// Coefficient of variation of inter-request gaps below which timing counts as regular.
    pub regular_timing_cv: f64,
    /// Pagination steps per window that count as a pagination walk.
    pub min_pagination_steps: u32,
    /// Sensitive records per window that count as a signal (when records are known).
    pub records_signal_min: u64,
    /// Distributed crawling: distinct client addresses sharing one fingerprint.
    pub min_distributed_sources: u32,
    /// Adaptive thresholds from the population baseline.
    pub adaptive: bool,
    /// Factor over the baseline mean for adaptive thresholds.
    pub baseline_factor: f64,
}

impl Default for CrawlingConfig {
    fn default() -> Self {
        CrawlingConfig {
            enabled: true,
            window_secs: 60,
            min_requests: 120,
            min_distinct_paths: 60,
            min_distinct_templates: 3,
            min_signals: 2,
            regular_timing_cv: 0.35,
            min_pagination_steps: 20,
            records_signal_min: 500,
            min_distributed_sources: 5,
            adaptive: true,
            baseline_factor: 10.0,
        }
    }
}

/// Enumeration / BOLA (API1:2023). Actor: account, else client IP; per endpoint template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnumerationConfig {
    /// Detection on.
    pub enabled: bool,
    /// Window length in seconds.
    pub window_secs: u64,
    /// Distinct ID values per actor and template per window.
    pub min_distinct_ids: u32,
    /// Fraction of 403/404 answers along the walk that counts as probing.
    pub min_error_ratio: f64,
    /// Fraction of steps of ±1..2 between consecutive numeric IDs that counts as sequential.
    pub min_sequential_ratio: f64,
    /// Distinct numeric IDs / (max − min + 1) that counts as a dense sweep.
    pub min_density: f64,
    /// Fraction of requested IDs never returned to the actor before that counts.
    pub min_unreturned_ratio: f64,
    /// Adaptive threshold from the population baseline.
    pub adaptive: bool,
    /// Factor over the baseline mean for adaptive thresholds.
    pub baseline_factor: f64,
}

impl Default for EnumerationConfig {
    fn default() -> Self {
        EnumerationConfig {
            enabled: true,
            window_secs: 60,
            min_distinct_ids: 40,
            min_error_ratio: 0.3,
            min_sequential_ratio: 0.5,
            min_density: 0.5,
            min_unreturned_ratio: 0.8,
            adaptive: true,
            baseline_factor: 10.0,
        }
    }
}

/// Credential stuffing (OAT-008). Actor: client IP per login endpoint; distributed: the
/// endpoint as a whole.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StuffingConfig {
    /// Detection on.
    pub enabled: bool,
    /// Window length in seconds.
    pub window_secs: u64,
    /// Distinct user names one source tries per window.
    pub min_distinct_usernames: u32,
    /// Largest mean attempts per user name for "about one attempt each".
    pub max_attempts_per_username: f64,
    /// Failure ratio of the source's attempts.
    pub min_failure_ratio: f64,
    /// Distributed: failed attempts on the endpoint per window.
    pub distributed_min_failures: u32,
    /// Distributed: distinct source addresses per window.
    pub distributed_min_sources: u32,
    /// Distributed: distinct user names per window.
    pub distributed_min_usernames: u32,
    /// Distributed: failure ratio floor (raised to `baseline_factor` × baseline when adaptive).
    pub distributed_min_failure_ratio: f64,
    /// Adaptive threshold from the endpoint's failure-ratio baseline.
    pub adaptive: bool,
    /// Factor over the baseline failure ratio.
    pub baseline_factor: f64,
}

impl Default for StuffingConfig {
    fn default() -> Self {
        StuffingConfig {
            enabled: true,
            window_secs: 300,
            min_distinct_usernames: 10,
            max_attempts_per_username: 2.0,
            min_failure_ratio: 0.5,
            distributed_min_failures: 40,
            distributed_min_sources: 10,
            distributed_min_usernames: 20,
            distributed_min_failure_ratio: 0.5,
            adaptive: true,
            baseline_factor: 3.0,
        }
    }
}

/// Brute force (OAT-007): many attempts on one user name; success after failures from a new
/// source (possible account takeover).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BruteForceConfig {
    /// Detection on.
    pub enabled: bool,
    /// Window length in seconds.
    pub window_secs: u64,
    /// Failed attempts on one user name per window.
    pub min_failures: u32,
    /// Failures before a success (from a source that never succeeded for that user) that make
    /// it a possible account takeover.
    pub ato_min_failures: u32,
}

impl Default for BruteForceConfig {
    fn default() -> Self {
        BruteForceConfig {
            enabled: true,
            window_secs: 300,
            min_failures: 10,
            ato_min_failures: 5,
        }
    }
}

/// OTP / SMS-code guessing (OAT-002). Actor: the account or session verified (else client IP).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OtpConfig {
    /// Detection on.
    pub enabled: bool,
    /// Window length in seconds.
    pub window_secs: u64,
    /// Failed verifications per actor per window.
    pub min_failures: u32,
    /// Distinct codes tried per actor per window.
    pub min_distinct_codes: u32,
}

impl Default for OtpConfig {
    fn default() -> Self {
        OtpConfig {
            enabled: true,
            window_secs: 300,
            min_failures: 8,
            min_distinct_codes: 6,
        }
    }
}

/// Abnormal data access. Actor: account, else client IP.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AbnormalConfig {
    /// Detection on.
    pub enabled: bool,
    /// Window length in seconds.
    pub window_secs: u64,
    /// Sensitive records per actor per window (floor).
    pub min_records: u64,
    /// Sensitive records in one response of an export endpoint that count as a bulk export.
    pub export_min_records: u64,
    /// Adaptive threshold from the actor's own and the population baseline.
    pub adaptive: bool,
    /// Factor over the baseline mean.
    pub baseline_factor: f64,
    /// Off-hours: sensitive records an account must fetch outside working hours per window.
    pub off_hours_min_records: u64,
    /// Sharing: distinct client addresses using one account per window.
    pub sharing_min_addresses: u32,
    /// Sharing: count distinct /24 (IPv4) or /64 (IPv6) subnets instead of addresses.
    pub sharing_by_subnet: bool,
}

impl Default for AbnormalConfig {
    fn default() -> Self {
        AbnormalConfig {
            enabled: true,
            window_secs: 600,
            min_records: 500,
            export_min_records: 5_000,
            adaptive: true,
            baseline_factor: 10.0,
            off_hours_min_records: 200,
            sharing_min_addresses: 5,
            sharing_by_subnet: true,
        }
    }
}

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

fn positive(field: &str, v: u64) -> Result<(), DetectError> {
    if v == 0 {
        return Err(DetectError::config(field, "must be greater than 0"));
    }
    Ok(())
}

fn ratio(field: &str, v: f64) -> Result<(), DetectError> {
    if !(0.0..=1.0).contains(&v) || v.is_nan() {
        return Err(DetectError::config(field, "must be between 0 and 1"));
    }
    Ok(())
}

fn factor(field: &str, v: f64) -> Result<(), DetectError> {
    if !(v >= 1.0 && v.is_finite()) {
        return Err(DetectError::config(field, "must be a finite number ≥ 1"));
    }
    Ok(())
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
        positive("limits.max_keys_per_table", l.max_keys_per_table as u64)?;
        positive("limits.max_endpoints", l.max_endpoints as u64)?;
        positive("limits.max_campaigns", l.max_campaigns as u64)?;
        if l.max_samples_per_campaign > 20 {
            return Err(DetectError::config(
                "limits.max_samples_per_campaign",
                "must be ≤ 20",
            ));
        }
        positive(
            "lifecycle.update_interval_secs",
            self.lifecycle.update_interval_secs,
        )?;
        positive("lifecycle.quiet_secs", self.lifecycle.quiet_secs)?;
        let b = &self.baseline;
        positive("baseline.bucket_secs", b.bucket_secs)?;
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
        let c = &self.crawling;
        positive("crawling.window_secs", c.window_secs)?;
        positive("crawling.min_requests", c.min_requests.into())?;
        positive("crawling.min_distinct_paths", c.min_distinct_paths.into())?;
        if c.min_signals > 6 {
            return Err(DetectError::config(
                "crawling.min_signals",
                "must be ≤ 6 (signals known)",
            ));
        }
        if !(c.regular_timing_cv > 0.0 && c.regular_timing_cv.is_finite()) {
            return Err(DetectError::config(
                "crawling.regular_timing_cv",
                "must be > 0",
            ));
        }
        positive(
            "crawling.min_pagination_steps",
            c.min_pagination_steps.into(),
        )?;
        if c.min_distributed_sources < 2 {
            return Err(DetectError::config(
                "crawling.min_distributed_sources",
                "must be ≥ 2",
            ));
        }
        factor("crawling.baseline_factor", c.baseline_factor)?;
        let e = &self.enumeration;
        positive("enumeration.window_secs", e.window_secs)?;
        if e.min_distinct_ids < 3 {
            return Err(DetectError::config(
                "enumeration.min_distinct_ids",
                "must be ≥ 3",
            ));
        }
        ratio("enumeration.min_error_ratio", e.min_error_ratio)?;
        ratio("enumeration.min_sequential_ratio", e.min_sequential_ratio)?;
        ratio("enumeration.min_density", e.min_density)?;
        ratio("enumeration.min_unreturned_ratio", e.min_unreturned_ratio)?;
        factor("enumeration.baseline_factor", e.baseline_factor)?;
        let s = &self.credential_stuffing;
        positive("credential_stuffing.window_secs", s.window_secs)?;
        if s.min_distinct_usernames < 2 {
            return Err(DetectError::config(
                "credential_stuffing.min_distinct_usernames",
                "must be ≥ 2",
            ));
        }
        if !(s.max_attempts_per_username >= 1.0 && s.max_attempts_per_username.is_finite()) {
            return Err(DetectError::config(
                "credential_stuffing.max_attempts_per_username",
                "must be a finite number ≥ 1",
            ));
        }
        ratio("credential_stuffing.min_failure_ratio", s.min_failure_ratio)?;
        positive(
            "credential_stuffing.distributed_min_failures",
            s.distributed_min_failures.into(),
        )?;
        if s.distributed_min_sources < 2 {
            return Err(DetectError::config(
                "credential_stuffing.distributed_min_sources",
                "must be ≥ 2",
            ));
        }
        positive(
            "credential_stuffing.distributed_min_usernames",
            s.distributed_min_usernames.into(),
        )?;
        ratio(
            "credential_stuffing.distributed_min_failure_ratio",
            s.distributed_min_failure_ratio,
        )?;
        factor("credential_stuffing.baseline_factor", s.baseline_factor)?;
        let bf = &self.brute_force;
        positive("brute_force.window_secs", bf.window_secs)?;
        positive("brute_force.min_failures", bf.min_failures.into())?;
        positive("brute_force.ato_min_failures", bf.ato_min_failures.into())?;
        let o = &self.otp_guessing;
        positive("otp_guessing.window_secs", o.window_secs)?;
        positive("otp_guessing.min_failures", o.min_failures.into())?;
        positive(
            "otp_guessing.min_distinct_codes",
            o.min_distinct_codes.into(),
        )?;
        let a = &self.abnormal_access;
        positive("abnormal_access.window_secs", a.window_secs)?;
        positive("abnormal_access.min_records", a.min_records)?;
        positive("abnormal_access.export_min_records", a.export_min_records)?;
        factor("abnormal_access.baseline_factor", a.baseline_factor)?;
        positive(
            "abnormal_access.off_hours_min_records",
            a.off_hours_min_records,
        )?;
        if a.sharing_min_addresses < 2 {
            return Err(DetectError::config(
                "abnormal_access.sharing_min_addresses",
                "must be ≥ 2",
            ));
        }
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
