//! Abnormal data access (R-THR-4).
//!
//! **Actor keys:** account (JWT `sub`, session, API key, Basic user), else client IP; client IP
//! for foreign access.
//!
//! **Kinds and signals:**
//! - `bulk_records`: sensitive records returned to the actor per window
//!   (`abnormal_access.window_secs`) ≥ `min_records`, raised when adaptive to `baseline_factor`
//!   × the actor's own baseline and × the population's per-actor baseline (EWMA of finished
//!   windows that raised nothing);
//! - `bulk_export`: one response of an `export` endpoint with ≥ `export_min_records` records;
//! - `off_hours_access`: with `working_hours` configured, ≥ `off_hours_min_records` sensitive
//!   records to an account outside them;
//! - `account_sharing`: one account (not a login attempt's user name) from ≥
//!   `sharing_min_addresses` distinct addresses, or /24 (/64) subnets with
//!   `sharing_by_subnet`, per window;
//! - `foreign_access_internal_api`: with a MaxMind DB configured, a request to an internal API
//!   (`geoip.internal_services` / `geoip.internal_path_prefixes`) from a public address whose
//!   country is not in `geoip.home_countries`.
//!
//! Record-based kinds need the labeller's record counts (`EventContext::sensitive_records`);
//! without them only sharing and foreign access run.
//!
//! **State:** one ~110-byte entry per actor (+ 256 bytes beyond 8 addresses); bounded by
//! `limits.max_keys_per_table`.
use std::net::IpAddr;

use apitap_labels::FunctionClass;
use serde::{Deserialize, Serialize};

use crate::DetectError;
use crate::actor::AccountKind;
use crate::baseline::Ewma;
use crate::bounded::{BoundedMap, Touched};
use crate::campaign::{Hit, Scope};
use crate::config::{BaselineConfig, DetectConfig, GeoIpConfig, WorkingHours, check};
use crate::detections::{Cx, Detection, roll, us};
use crate::engine::Obs;
use crate::finding::{Detector, Severity};
use crate::metrics::EngineMetrics;
use crate::sketch::Distinct;

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

impl AbnormalConfig {
    /// Checks the section; an error names the field (`abnormal_access.window_secs`).
    pub(crate) fn validate(&self) -> Result<(), DetectError> {
        check::positive("abnormal_access.window_secs", self.window_secs)?;
        check::positive("abnormal_access.min_records", self.min_records)?;
        check::positive(
            "abnormal_access.export_min_records",
            self.export_min_records,
        )?;
        check::factor("abnormal_access.baseline_factor", self.baseline_factor)?;
        check::positive(
            "abnormal_access.off_hours_min_records",
            self.off_hours_min_records,
        )?;
        if self.sharing_min_addresses < 2 {
            return Err(DetectError::config(
                "abnormal_access.sharing_min_addresses",
                "must be ≥ 2",
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Default)]
struct Win {
    start_us: u64,
    last_us: u64,
    hot_until: [u64; 3],
    records: u64,
    off_hours_records: u64,
    requests: u32,
    addresses: Distinct,
    own: Ewma,
    /// Digests of the record sets last served to the actor ([`Obs::records_digest`]): the
    /// same records served again (a poller) are not new records.
    served: [u64; SERVED],
    next_served: u8,
}

/// Record sets remembered per actor.
const SERVED: usize = 4;

impl Touched for Win {
    fn last_us(&self) -> u64 {
        self.last_us
    }
}

const BULK: usize = 0;
const OFF: usize = 1;
const SHARE: usize = 2;

/// The sharing condition, as one engine and stage 2 check it (issue 18): distinct
/// addresses (or subnets, `sharing_by_subnet`) using one account in the window.
pub(crate) fn sharing_holds(c: &AbnormalConfig, addresses: u64) -> bool {
    addresses >= u64::from(c.sharing_min_addresses)
}

/// The sharing campaign's hit (the account on every endpoint of the service).
pub(crate) fn sharing_hit<'a>(counts: &'a [(&'static str, u64)]) -> Hit<'a> {
    Hit {
        detector: Detector::AbnormalAccess,
        kind: "account_sharing",
        scope: Scope::Account,
        any_endpoint: true,
        severity: Severity::Medium,
        confidence: 70,
        counts,
    }
}

/// A MaxMind DB country lookup.
pub struct Geo {
    reader: maxminddb::Reader<Vec<u8>>,
    home: Vec<String>,
    internal_services: Vec<String>,
    internal_prefixes: Vec<String>,
    /// Lookups that failed (address not in the database counts as none, not as an error).
    pub errors: u64,
}

impl std::fmt::Debug for Geo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Geo")
            .field("home", &self.home)
            .finish_non_exhaustive()
    }
}

impl Geo {
    /// Opens the database.
    pub fn open(cfg: &GeoIpConfig) -> Result<Option<Geo>, DetectError> {
        let Some(path) = &cfg.database_path else {
            return Ok(None);
        };
        let reader = maxminddb::Reader::open_readfile(path).map_err(|e| DetectError::GeoIp {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        tracing::info!(
            path = %path.display(),
            database_type = %reader.metadata.database_type,
            "GeoIP database loaded"
        );
        Ok(Some(Geo {
            reader,
            home: cfg
                .home_countries
                .iter()
                .map(|c| c.to_ascii_uppercase())
                .collect(),
            internal_services: cfg
                .internal_services
                .iter()
                .map(|s| s.to_ascii_lowercase())
                .collect(),
            internal_prefixes: cfg.internal_path_prefixes.clone(),
            errors: 0,
        }))
    }

    /// ISO country code of an address, when the database has one.
    pub fn country(&mut self, ip: IpAddr) -> Option<String> {
        match self.reader.lookup::<maxminddb::geoip2::Country>(ip) {
            Ok(Some(c)) => c.country.and_then(|c| c.iso_code).map(str::to_owned),
            Ok(None) => None,
            Err(_) => {
                self.errors += 1;
                None
            }
        }
    }

    fn is_internal(&self, o: &Obs) -> bool {
        self.internal_services
            .iter()
            .any(|s| o.service.eq_ignore_ascii_case(s))
            || self
                .internal_prefixes
                .iter()
                .any(|p| o.ev.request.path.starts_with(p.as_str()))
    }
}

fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v) => {
            !(v.is_private()
                || v.is_loopback()
                || v.is_link_local()
                || v.is_unspecified()
                || v.is_documentation()
                || v.octets()[0] == 100 && (v.octets()[1] & 0xC0) == 64)
        }
        IpAddr::V6(v) => {
            let s = v.segments()[0];
            !(v.is_loopback()
                || v.is_unspecified()
                || (s & 0xFE00) == 0xFC00
                || (s & 0xFFC0) == 0xFE80)
        }
    }
}

/// The abnormal-access detector.
#[derive(Debug)]
pub struct AbnormalAccess {
    cfg: AbnormalConfig,
    base: BaselineConfig,
    hours: Option<WorkingHours>,
    quiet_us: u64,
    actors: BoundedMap<Win>,
    pop_records: Ewma,
    geo: Option<Geo>,
}

impl Detection for AbnormalAccess {
    fn new(cfg: &DetectConfig) -> Result<Self, DetectError> {
        Ok(AbnormalAccess {
            cfg: cfg.abnormal_access.clone(),
            base: cfg.baseline.clone(),
            hours: cfg.working_hours.clone(),
            quiet_us: us(cfg.lifecycle.quiet_secs),
            actors: BoundedMap::new(cfg.limits.max_keys_per_table),
            pop_records: Ewma::default(),
            geo: Geo::open(&cfg.geoip)?,
        })
    }

    fn id(&self) -> Detector {
        Detector::AbnormalAccess
    }

    fn enabled(&self) -> bool {
        self.cfg.enabled
    }

    fn observe(&mut self, o: &Obs, cx: &mut Cx) {
        let now = o.now;
        let a = &o.actor;
        let c = &self.cfg;
        let b = &self.base;
        // A login attempt's user name is not an authenticated account.
        let account = a.account.filter(|acc| acc.kind != AccountKind::LoginBody);
        let key = account.map_or(a.ip_key, |acc| acc.key);
        let w = self.actors.entry(key, || Win {
            start_us: now,
            ..Win::default()
        });
        let mut records = o.records.map_or(0, u64::from);
        if records > 0 && o.records_digest != 0 {
            if w.served.contains(&o.records_digest) {
                // Served to this actor before: no new data left the API.
                records = 0;
            } else {
                w.served[usize::from(w.next_served) % SERVED] = o.records_digest;
                w.next_served = w.next_served.wrapping_add(1);
            }
        }
        if roll(&mut w.start_us, now, us(c.window_secs)) {
            if w.hot_until[BULK] < now && w.requests > 0 {
                w.own.update(w.records as f64, b.alpha);
                self.pop_records.update(w.records as f64, b.alpha);
            }
            w.records = 0;
            w.off_hours_records = 0;
            w.requests = 0;
            w.addresses.clear();
        }
        w.last_us = w.last_us.max(now);
        w.requests += 1;
        w.records += records;
        let off_hours = records > 0 && self.hours.as_ref().is_some_and(|h| !h.contains(now));
        if off_hours {
            w.off_hours_records += records;
        }
        if account.is_some() {
            w.addresses.insert(if c.sharing_by_subnet {
                a.subnet_key
            } else {
                a.ip_key
            });
        }
        let scope = if account.is_some() {
            Scope::Account
        } else {
            Scope::Ip
        };
        let mut hits: [Option<(&'static str, Severity, bool, usize)>; 4] = [None; 4];
        let floor = c.min_records as f64;
        let thr = if c.adaptive {
            w.own
                .threshold(floor, c.baseline_factor, b.sigmas, b.min_samples)
                .max(
                    self.pop_records
                        .threshold(floor, c.baseline_factor, b.sigmas, b.min_samples),
                )
        } else {
            floor
        };
        if records > 0 && (w.records as f64 >= thr || w.hot_until[BULK] >= now) {
            if w.records as f64 >= thr {
                w.hot_until[BULK] = now + self.quiet_us;
            }
            hits[0] = Some(("bulk_records", Severity::High, true, BULK));
        }
        if o.function == Some(FunctionClass::Export) && records >= c.export_min_records {
            hits[1] = Some(("bulk_export", Severity::High, false, usize::MAX));
        }
        if account.is_some()
            && off_hours
            && (w.off_hours_records >= c.off_hours_min_records || w.hot_until[OFF] >= now)
        {
            if w.off_hours_records >= c.off_hours_min_records {
                w.hot_until[OFF] = now + self.quiet_us;
            }
            hits[2] = Some(("off_hours_access", Severity::Medium, true, OFF));
        }
        let addresses = w.addresses.count();
        // Two-stage processing (issue 18): an account's requests come from clients of every
        // partition; the sharing check runs on the merged partials ([`crate::global`]).
        let global = match (cx.partials.as_deref_mut(), account) {
            (Some(sink), Some(acc)) => {
                let address = if c.sharing_by_subnet {
                    a.subnet_key
                } else {
                    a.ip_key
                };
                sink.sharing(o, cx.keyer, &acc, address);
                true
            }
            _ => false,
        };
        if account.is_some()
            && !global
            && (sharing_holds(c, addresses) || w.hot_until[SHARE] >= now)
        {
            if sharing_holds(c, addresses) {
                w.hot_until[SHARE] = now + self.quiet_us;
            }
            hits[3] = Some(("account_sharing", Severity::Medium, true, SHARE));
        }
        let (wrecords, woff, wreq) = (w.records, w.off_hours_records, w.requests);
        for (kind, severity, any_endpoint, _) in hits.into_iter().flatten() {
            let counts = [
                ("sensitive_records", wrecords),
                ("off_hours_records", woff),
                ("requests", u64::from(wreq)),
                ("distinct_addresses", addresses),
                ("records_threshold", thr.round() as u64),
            ];
            cx.campaigns.hit(
                &Hit {
                    detector: Detector::AbnormalAccess,
                    kind,
                    scope,
                    any_endpoint,
                    severity,
                    confidence: 70,
                    counts: &counts,
                },
                o,
                cx.keyer,
            );
            if kind == "bulk_records" || kind == "bulk_export" {
                cx.baselines.poison(o.endpoint_key);
            }
        }
        if let Some(geo) = &mut self.geo
            && is_public(a.ip)
            && geo.is_internal(o)
            && let Some(country) = geo.country(a.ip)
            && !geo.home.contains(&country)
        {
            let counts = [("requests", 1)];
            cx.campaigns.hit(
                &Hit {
                    detector: Detector::AbnormalAccess,
                    kind: "foreign_access_internal_api",
                    scope: Scope::Ip,
                    any_endpoint: false,
                    severity: Severity::High,
                    confidence: 80,
                    counts: &counts,
                },
                o,
                cx.keyer,
            );
        }
    }

    fn expire(&mut self, now: u64) {
        // Actor baselines are kept for a day of inactivity.
        self.actors
            .expire(now.saturating_sub(us(86_400).max(self.quiet_us)));
    }

    fn evicted(&self) -> u64 {
        self.actors.evicted
    }

    fn tracked_keys(&self) -> usize {
        self.actors.len()
    }

    fn add_metrics(&self, m: &mut EngineMetrics) {
        m.geoip_errors += self.geo.as_ref().map_or(0, |g| g.errors);
    }

    fn state_bytes(&self) -> usize {
        self.actors.table_bytes()
            + self
                .actors
                .values()
                .map(|w| w.addresses.heap_bytes())
                .sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detections::testkit::*;

    const JWT_ALICE: &str = "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2ln";

    #[test]
    fn bulk_records_far_above_baseline() {
        let mut eng = engine(DetectConfig::default());
        let mut reqs = Vec::new();
        // Alice reads 20 records a minute for two hours, then pulls 100 pages of 100 records.
        for i in 0..240u64 {
            reqs.push(
                Req::get("198.51.100.10", "/api/customers", T0 + i * 30 * SEC)
                    .header("Authorization", JWT_ALICE),
            );
        }
        let start = T0 + 7_200 * SEC;
        for i in 0..100u64 {
            reqs.push(
                Req::get("198.51.100.10", "/api/customers", start + i * SEC)
                    .query(&format!("page={i}"))
                    .header("Authorization", JWT_ALICE),
            );
        }
        let out = run(&mut eng, reqs, |r| {
            let rec = if r.query.is_some() { 100 } else { 10 };
            (
                Some("/api/customers"),
                Some(FunctionClass::SearchList),
                Some(rec),
            )
        });
        let c = creates(&out);
        assert_eq!(c.len(), 1, "{c:#?}");
        assert_eq!(c[0].kind, "bulk_records");
        assert!(c[0].actor_key("account").unwrap().starts_with("jwt_sub:"));
        assert!(c[0].time_us - start <= 60 * SEC);
    }

    #[test]
    fn export_off_hours_and_sharing() {
        let cfg = DetectConfig {
            working_hours: Some(WorkingHours::default()),
            ..DetectConfig::default()
        };
        let mut eng = engine(cfg);
        let mut reqs = Vec::new();
        // Monday 23:00 UTC: an export of 6 000 records (also off hours).
        let night = T0 + 23 * 3_600 * SEC;
        reqs.push(
            Req::get("198.51.100.11", "/api/customers/export", night)
                .header("Authorization", JWT_ALICE),
        );
        // Tuesday 10:00: one session cookie from 6 subnets within a minute.
        let day = T0 + 34 * 3_600 * SEC;
        for i in 0..6u64 {
            reqs.push(
                Req::get(
                    &format!("203.0.{}.5", 100 + i),
                    "/api/profile",
                    day + i * SEC,
                )
                .header("Cookie", "SESSIONID=0123456789abcdef"),
            );
        }
        let out = run(&mut eng, reqs, |r| {
            if r.path.ends_with("export") {
                (
                    Some("/api/customers/export"),
                    Some(FunctionClass::Export),
                    Some(6_000),
                )
            } else {
                (
                    Some("/api/profile"),
                    Some(FunctionClass::QueryById),
                    Some(1),
                )
            }
        });
        let mut kinds: Vec<&str> = creates(&out).iter().map(|f| f.kind).collect();
        kinds.sort_unstable();
        assert_eq!(
            kinds,
            [
                "account_sharing",
                "bulk_export",
                "bulk_records",
                "off_hours_access"
            ],
            "{out:#?}"
        );
    }

    #[test]
    fn without_record_counts_only_sharing_runs() {
        let mut eng = engine(DetectConfig::default());
        let reqs: Vec<Req> = (0..50u64)
            .map(|i| {
                Req::get("198.51.100.12", "/api/customers/export", T0 + i * SEC)
                    .header("Authorization", JWT_ALICE)
            })
            .collect();
        let out = run(&mut eng, reqs, no_ctx);
        assert!(creates(&out).is_empty());
    }

    /// Writes a minimal MaxMind DB (format 2.0, IPv4 tree, 24-bit records) mapping the /24 of
    /// `net` to `foreign` and every other address to `home`.
    fn write_mmdb(path: &std::path::Path, net: std::net::Ipv4Addr, home: &str, foreign: &str) {
        fn str_(s: &str) -> Vec<u8> {
            let mut v = vec![0x40 | s.len() as u8];
            v.extend_from_slice(s.as_bytes());
            v
        }
        fn map(n: u8) -> u8 {
            0xE0 | n
        }
        fn country(code: &str) -> Vec<u8> {
            let mut v = vec![map(1)];
            v.extend(str_("country"));
            v.push(map(1));
            v.extend(str_("iso_code"));
            v.extend(str_(code));
            v
        }
        let prefix: u32 = u32::from(net);
        let nodes = 24u32;
        let home_data = country(home);
        let foreign_data = country(foreign);
        let home_ptr = nodes + 16;
        let foreign_ptr = nodes + 16 + home_data.len() as u32;
        let mut tree = Vec::new();
        let rec = |v: u32, out: &mut Vec<u8>| out.extend_from_slice(&v.to_be_bytes()[1..]);
        for depth in 0..nodes {
            let bit = (prefix >> (31 - depth)) & 1;
            let next = if depth + 1 == nodes {
                foreign_ptr
            } else {
                depth + 1
            };
            let (l, r) = if bit == 0 {
                (next, home_ptr)
            } else {
                (home_ptr, next)
            };
            rec(l, &mut tree);
            rec(r, &mut tree);
        }
        let mut db = tree;
        db.extend_from_slice(&[0u8; 16]);
        db.extend(home_data);
        db.extend(foreign_data);
        db.extend_from_slice(b"\xAB\xCD\xEFMaxMind.com");
        let mut meta = vec![map(9)];
        let u16_ = |v: u16| vec![0xA2, (v >> 8) as u8, v as u8];
        meta.extend(str_("node_count"));
        meta.extend([0xC1, nodes as u8]);
        meta.extend(str_("record_size"));
        meta.extend(u16_(24));
        meta.extend(str_("ip_version"));
        meta.extend(u16_(4));
        meta.extend(str_("database_type"));
        meta.extend(str_("Test-Country"));
        meta.extend(str_("languages"));
        meta.extend([0x00, 0x04]); // empty array (extended type 11)
        meta.extend(str_("binary_format_major_version"));
        meta.extend(u16_(2));
        meta.extend(str_("binary_format_minor_version"));
        meta.extend(u16_(0));
        meta.extend(str_("build_epoch"));
        meta.extend([0x01, 0x02, 0x01]); // uint64 (extended type 9), 1 byte
        meta.extend(str_("description"));
        meta.push(map(0));
        db.extend(meta);
        std::fs::write(path, db).unwrap();
    }

    #[test]
    fn foreign_access_to_internal_api_with_geoip() {
        let dir = std::env::temp_dir().join(format!("apitap-detect-geo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let db = dir.join("test.mmdb");
        write_mmdb(&db, std::net::Ipv4Addr::new(8, 8, 8, 0), "CN", "US");
        let cfg = DetectConfig {
            geoip: GeoIpConfig {
                database_path: Some(db.clone()),
                home_countries: vec!["cn".into()],
                internal_services: vec![],
                internal_path_prefixes: vec!["/internal/".into()],
            },
            ..DetectConfig::default()
        };
        let mut geo = Geo::open(&cfg.geoip).unwrap().unwrap();
        assert_eq!(
            geo.country("8.8.8.8".parse().unwrap()).as_deref(),
            Some("US")
        );
        assert_eq!(
            geo.country("1.2.4.8".parse().unwrap()).as_deref(),
            Some("CN")
        );
        let mut eng = engine(cfg.clone());
        let reqs = vec![
            Req::get("8.8.8.8", "/internal/admin/users", T0),
            Req::get("8.8.8.8", "/internal/admin/users", T0 + SEC),
            // Home country, public API, private address: nothing.
            Req::get("1.2.4.8", "/internal/admin/users", T0 + 2 * SEC),
            Req::get("8.8.8.8", "/public/info", T0 + 3 * SEC),
            Req::get("10.1.2.3", "/internal/admin/users", T0 + 4 * SEC),
        ];
        let out = run(&mut eng, reqs, no_ctx);
        let c = creates(&out);
        assert_eq!(c.len(), 1, "{c:#?}");
        assert_eq!(c[0].kind, "foreign_access_internal_api");
        assert_eq!(c[0].actor_key("client_ip"), Some("8.8.8.8"));
        let close = out
            .iter()
            .find(|f| f.activity == crate::finding::Activity::Close)
            .unwrap();
        assert_eq!(close.events, 2);
        std::fs::remove_dir_all(&dir).unwrap();
        // A missing database is an error naming the path.
        let err = Geo::open(&cfg.geoip).unwrap_err().to_string();
        assert!(err.contains("test.mmdb"), "{err}");
    }
}
