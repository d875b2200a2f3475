//! One module per detection (issue 7). Each module documents the actor keys it uses, its
//! signals, thresholds and state bounds; `docs/detections.md` collects them.
//!
//! Common shape: per-key state in a [`crate::bounded::BoundedMap`] (sampled-LRU eviction,
//! counted), anchored tumbling windows of `window_secs` (a key's window starts at its first
//! event and restarts at the first event after it ends), and a *hot* mark after a hit so that
//! the actor's further events keep feeding the open campaign (counters, time range) until it
//! has been quiet for `lifecycle.quiet_secs`.
//!
//! **Detection and detector.** Each module's detector (`Crawling`, `Enumeration`, …)
//! implements the crate-internal trait `Detection`, which is everything the engine calls on
//! it: build from the configuration, observe an event, expire idle state, report state bytes,
//! tracked keys and evictions. The public enum [`crate::Detector`] is something else: the id a
//! detection stamps on its findings (`Detection::id` returns it; its
//! [`crate::Detector::name`] is the detection's name in metrics and in
//! [`crate::Engine::table_sizes`]). The engine names no detection: it builds the list in `all`
//! once and loops over it for every event, tick and metric, giving an event only to the
//! enabled detections that `wants` its endpoint's role (login, OTP verification, any).
//!
//! **Adding a detector** touches its own module (the detector, its `impl Detection`, and its
//! config section with `Default` and `validate`) with its `pub mod` line here, one line in
//! `all` (and [`COUNT`], which the compiler checks against that list), and docs (the module's
//! `//!`, `docs/detections.md`). The engine does not change. What is public about a detector
//! lives outside this module and needs a line each too: its section's field in
//! [`crate::DetectConfig`] with its `validate()` call and its re-export in [`crate::config`],
//! and its variant of the findings' [`crate::Detector`] (name, OWASP/OAT/ATT&CK mapping).
use crate::DetectError;
use crate::baseline::Baselines;
use crate::bounded::Touched;
use crate::campaign::Campaigns;
use crate::config::DetectConfig;
use crate::engine::{AuthRole, Obs};
use crate::finding::Detector;
use crate::keys::Keyer;
use crate::metrics::EngineMetrics;
use crate::outcome::Outcome;
use crate::sketch::Distinct;

pub mod abnormal_access;
pub mod brute_force;
pub mod crawling;
pub mod credential_stuffing;
pub mod enumeration;
pub mod otp_guessing;

/// Number of detectors: the length of [`crate::Engine::table_sizes`], and of
/// [`crate::EngineMetrics::evicted`] without its last entry (the baselines).
pub const COUNT: usize = 6;

/// Every detector, built from the configuration, in observation order: the engine gives each
/// event to them in this order, which is the order their hits on one event reach the
/// campaigns (keep it: it shows in the findings). Disabled ones are built too (their tables
/// stay empty) so that metrics and table sizes always list every detector.
pub(crate) fn all(cfg: &DetectConfig) -> Result<[Box<dyn Detection>; COUNT], DetectError> {
    Ok([
        Box::new(crawling::Crawling::new(cfg)?),
        Box::new(enumeration::Enumeration::new(cfg)?),
        Box::new(credential_stuffing::CredentialStuffing::new(cfg)?),
        Box::new(brute_force::BruteForce::new(cfg)?),
        Box::new(otp_guessing::OtpGuessing::new(cfg)?),
        Box::new(abnormal_access::AbnormalAccess::new(cfg)?),
    ])
}

/// One detection as the engine drives it (see the module docs; not to be confused with the
/// public [`Detector`] enum, which [`Detection::id`] returns).
pub(crate) trait Detection: std::fmt::Debug + Send {
    /// Builds it from the configuration (abnormal access opens its GeoIP database here).
    fn new(cfg: &DetectConfig) -> Result<Self, DetectError>
    where
        Self: Sized;

    /// The id its findings carry.
    fn id(&self) -> Detector;

    /// Stable snake_case name, as in metrics (`apitap_detect_evicted_total{table="…"}`) and
    /// [`crate::Engine::table_sizes`]; also the name of its config section.
    fn name(&self) -> &'static str {
        self.id().name()
    }

    /// Whether the detection runs (its section's `enabled`; read once, when the engine is
    /// built). A disabled detection observes nothing but still reports its (empty) state.
    fn enabled(&self) -> bool;

    /// The events it is given (read once, when the engine is built).
    fn wants(&self) -> Wants {
        Wants::All
    }

    /// Consumes one event it [`Detection::wants`]; hits go to `cx.campaigns`.
    fn observe(&mut self, o: &Obs, cx: &mut Cx);

    /// Drops state idle at stream time `now` (called about once per second of stream time).
    fn expire(&mut self, now: u64);

    /// Bytes of state held (tables by capacity, sketches).
    fn state_bytes(&self) -> usize;

    /// Keys tracked across its tables.
    fn tracked_keys(&self) -> usize;

    /// Entries evicted from its full tables so far.
    fn evicted(&self) -> u64;

    /// Adds counters of its own to `m` (abnormal access: GeoIP lookup errors).
    fn add_metrics(&self, _m: &mut EngineMetrics) {}
}

/// The events a detection is given, by the authentication role of their endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wants {
    /// Every event.
    All,
    /// Only events on endpoints of this role (login attempts, OTP verifications).
    Role(AuthRole),
}

impl Wants {
    /// Whether an event on an endpoint of `role` is given.
    pub(crate) fn admits(self, role: AuthRole) -> bool {
        match self {
            Wants::All => true,
            Wants::Role(r) => r == role,
        }
    }
}

/// What a detector may touch while observing one event.
pub(crate) struct Cx<'a> {
    pub campaigns: &'a mut Campaigns,
    pub keyer: &'a Keyer,
    pub baselines: &'a mut Baselines,
    /// Two-stage processing on (issue 18): the global detectors' events go here as partial
    /// aggregates instead of into their own distributed windows.
    pub partials: Option<&'a mut crate::partial::PartialSink>,
}

/// Microseconds of a seconds value.
pub(crate) const fn us(secs: u64) -> u64 {
    secs.saturating_mul(1_000_000)
}

/// A tumbling window anchored at a key's first event. Returns true when `now` starts a new
/// window (the caller resets its counters then).
pub(crate) fn roll(start_us: &mut u64, now: u64, len_us: u64) -> bool {
    if now >= start_us.saturating_add(len_us) || now < start_us.saturating_sub(len_us) {
        *start_us = now;
        return true;
    }
    false
}

/// One key's login-style attempts in its window, shared by the detectors that count them:
/// attempts by outcome, the distinct values the detector tracks (user names for credential
/// stuffing, codes for OTP guessing) and the distinct sources.
#[derive(Debug, Default)]
pub(crate) struct Attempts {
    pub start_us: u64,
    pub last_us: u64,
    /// The key is in an open campaign until then.
    pub hot_until: u64,
    pub attempts: u32,
    pub failures: u32,
    pub successes: u32,
    pub values: Distinct,
    pub sources: Distinct,
}

impl Touched for Attempts {
    /// A key in an open campaign stays until the campaign could close.
    fn last_us(&self) -> u64 {
        self.last_us.max(self.hot_until)
    }
}

impl Attempts {
    /// A window opened by an event at `now`.
    pub(crate) fn starting(now: u64) -> Attempts {
        Attempts {
            start_us: now,
            ..Attempts::default()
        }
    }

    /// Counts `o` at `now`, restarting the window of `len_us` first if it ended (the hot mark
    /// survives); `value` is the event's tracked value, when it has one.
    pub(crate) fn add(&mut self, o: &Obs, now: u64, len_us: u64, value: Option<u64>) {
        if roll(&mut self.start_us, now, len_us) {
            *self = Attempts {
                hot_until: self.hot_until,
                ..Attempts::starting(now)
            };
        }
        self.last_us = self.last_us.max(now);
        self.attempts += 1;
        self.failures += u32::from(o.outcome == Outcome::Failure);
        self.successes += u32::from(o.outcome == Outcome::Success);
        if let Some(v) = value {
            self.values.insert(v);
        }
        self.sources.insert(o.actor.ip_key);
    }

    /// Heap bytes of the distinct-value sketches.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.values.heap_bytes() + self.sources.heap_bytes()
    }
}

/// Ratio with a zero denominator as 0.
pub(crate) fn ratio(n: u64, d: u64) -> f64 {
    if d == 0 { 0.0 } else { n as f64 / d as f64 }
}

#[cfg(test)]
pub(crate) mod testkit {
    //! Synthetic event streams built from the schema types.
    use apitap_labels::{FunctionClass, HashKey};
    use apitap_schema::ApiEvent;
    use apitap_schema::test_support::EventBuilder;

    use crate::config::DetectConfig;
    use crate::engine::{Engine, EventContext};
    use crate::finding::{Activity, Finding};

    /// 2024-01-01 00:00 UTC (Monday).
    pub const T0: u64 = 1_704_067_200 * 1_000_000;
    pub const SEC: u64 = 1_000_000;

    pub const CHROME: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36";

    #[derive(Clone)]
    pub struct Req {
        pub ip: String,
        pub method: &'static str,
        pub path: String,
        pub query: Option<String>,
        pub headers: Vec<(String, String)>,
        pub body: String,
        pub status: u16,
        pub resp_headers: Vec<(String, String)>,
        pub resp_body: String,
        /// Send the response body gzip-coded (`Content-Encoding: gzip`), as the sensor
        /// ships it when it does not decode bodies itself.
        pub resp_gzip: bool,
        pub t: u64,
    }

    impl Req {
        pub fn get(ip: &str, path: &str, t: u64) -> Req {
            Req {
                ip: ip.into(),
                method: "GET",
                path: path.into(),
                query: None,
                headers: vec![("Host".into(), "api.example.com".into())],
                body: String::new(),
                status: 200,
                resp_headers: vec![("Content-Type".into(), "application/json".into())],
                resp_body: "{}".into(),
                resp_gzip: false,
                t,
            }
        }
        pub fn post(ip: &str, path: &str, body: &str, t: u64) -> Req {
            let mut r = Req::get(ip, path, t);
            r.method = "POST";
            r.body = body.into();
            r.headers
                .push(("Content-Type".into(), "application/json".into()));
            r
        }
        pub fn ua(mut self, ua: &str) -> Req {
            self.headers.push(("User-Agent".into(), ua.into()));
            self
        }
        pub fn header(mut self, n: &str, v: &str) -> Req {
            self.headers.push((n.into(), v.into()));
            self
        }
        pub fn status(mut self, s: u16) -> Req {
            self.status = s;
            self
        }
        pub fn resp(mut self, body: &str) -> Req {
            self.resp_body = body.into();
            self
        }
        pub fn resp_gzip(mut self) -> Req {
            self.resp_gzip = true;
            self.resp_headers
                .push(("Content-Encoding".into(), "gzip".into()));
            self
        }
        pub fn resp_header(mut self, n: &str, v: &str) -> Req {
            self.resp_headers.push((n.into(), v.into()));
            self
        }
        pub fn query(mut self, q: &str) -> Req {
            self.query = Some(q.into());
            self
        }
        pub fn event(&self) -> ApiEvent {
            let mut b = EventBuilder::new(self.method, self.path.clone())
                .schema_version("1.1")
                .event_id(format!("{:032x}", self.t))
                .sensor("s", "h")
                .at_us(self.t)
                .latency_us(1_000)
                .client_ip(self.ip.parse::<std::net::IpAddr>().expect("test ip"))
                .client_port(40_000)
                .server("10.0.0.1:8080")
                .host("api.example.com")
                .body_bytes(&self.body)
                .status(self.status)
                .reason("")
                .response_body_bytes(if self.resp_gzip {
                    use std::io::Write as _;
                    let mut z = flate2::write::GzEncoder::new(Vec::new(), Default::default());
                    z.write_all(self.resp_body.as_bytes()).expect("gzip");
                    z.finish().expect("gzip")
                } else {
                    self.resp_body.clone().into_bytes()
                });
            if let Some(q) = &self.query {
                b = b.query(q.clone());
            }
            for (n, v) in &self.headers {
                b = b.header(n.clone(), v.clone());
            }
            for (n, v) in &self.resp_headers {
                b = b.response_header(n.clone(), v.clone());
            }
            b.build()
        }
    }

    pub fn engine(cfg: DetectConfig) -> Engine {
        Engine::with_hash_key(cfg, &HashKey::from_secret(b"test-site")).expect("engine")
    }

    /// Feeds events (sorted by time) with a context function; ticks every simulated second;
    /// finishes. Returns every finding.
    pub fn run(
        eng: &mut Engine,
        mut reqs: Vec<Req>,
        ctx: impl Fn(&Req) -> (Option<&'static str>, Option<FunctionClass>, Option<u32>),
    ) -> Vec<Finding> {
        reqs.sort_by_key(|r| r.t);
        let mut out = Vec::new();
        let mut next_tick = reqs.first().map_or(0, |r| r.t);
        for r in &reqs {
            while r.t >= next_tick {
                out.extend(eng.tick(next_tick));
                next_tick += SEC;
            }
            let (template, function, records) = ctx(r);
            let ev = r.event();
            eng.observe(
                &ev,
                &EventContext {
                    template,
                    function,
                    sensitive_records: records,
                    ..EventContext::default()
                },
            );
        }
        out.extend(eng.finish());
        for f in &out {
            let doc = crate::ocsf::detection_finding(f);
            if let Err(e) = crate::ocsf::validate(&doc) {
                panic!("invalid OCSF: {e:?}\n{doc:#}");
            }
        }
        out
    }

    pub fn creates(out: &[Finding]) -> Vec<&Finding> {
        out.iter()
            .filter(|f| f.activity == Activity::Create)
            .collect()
    }

    pub fn no_ctx(_: &Req) -> (Option<&'static str>, Option<FunctionClass>, Option<u32>) {
        (None, None, None)
    }
}

#[cfg(test)]
mod tests {
    use super::testkit::*;
    use crate::config::DetectConfig;
    use crate::finding::Detector;

    const NAMES: [&str; super::COUNT] = [
        "crawling",
        "enumeration",
        "credential_stuffing",
        "brute_force",
        "otp_guessing",
        "abnormal_access",
    ];

    fn names<T>(v: &[(&'static str, T)]) -> Vec<&'static str> {
        v.iter().map(|(n, _)| *n).collect()
    }

    #[test]
    fn every_detector_is_listed_in_order_even_when_disabled() {
        let mut cfg = DetectConfig::default();
        cfg.crawling.enabled = false;
        cfg.otp_guessing.enabled = false;
        let eng = engine(cfg);
        assert_eq!(names(&eng.table_sizes()), NAMES);
        let mut with_baseline = NAMES.to_vec();
        with_baseline.push("baseline");
        with_baseline.push("login_outcomes");
        assert_eq!(names(&eng.metrics().evicted), with_baseline);
        let ids = super::all(&DetectConfig::default())
            .expect("detectors")
            .map(|d| d.id());
        assert_eq!(
            ids,
            [
                Detector::Crawling,
                Detector::Enumeration,
                Detector::CredentialStuffing,
                Detector::BruteForce,
                Detector::OtpGuessing,
                Detector::AbnormalAccess,
            ]
        );
    }

    fn crawl(n: u64) -> Vec<Req> {
        (0..n)
            .map(|i| {
                Req::get(
                    "203.0.113.5",
                    &format!("/s{}/item-{}", i % 5, i * 7919 % 100_000),
                    T0 + i * 50_000,
                )
                .ua("Wget/1.21.3")
            })
            .collect()
    }

    #[test]
    fn a_disabled_detector_observes_nothing() {
        let mut cfg = DetectConfig::default();
        cfg.crawling.enabled = false;
        let mut eng = engine(cfg);
        let out = run(&mut eng, crawl(600), no_ctx);
        assert!(
            out.iter().all(|f| f.detector != Detector::Crawling),
            "{out:#?}"
        );
        let sizes = eng.table_sizes();
        assert_eq!(sizes[0], ("crawling", 0));
        assert!(sizes[5].1 > 0, "{sizes:?}");
        let mut eng = engine(DetectConfig::default());
        let out = run(&mut eng, crawl(600), no_ctx);
        assert!(out.iter().any(|f| f.detector == Detector::Crawling));
        assert!(eng.table_sizes()[0].1 > 0);
    }

    #[test]
    fn login_and_otp_detectors_see_only_their_endpoints() {
        let mut eng = engine(DetectConfig::default());
        run(&mut eng, crawl(50), no_ctx);
        let sizes = eng.table_sizes();
        assert!(sizes[0].1 > 0, "{sizes:?}");
        assert_eq!(
            &sizes[2..5],
            &[
                ("credential_stuffing", 0),
                ("brute_force", 0),
                ("otp_guessing", 0)
            ]
        );
        let logins = (0..20)
            .map(|i| {
                Req::post(
                    "203.0.113.7",
                    "/api/login",
                    &format!(r#"{{"username":"user{i}","password":"x"}}"#),
                    T0 + i * SEC,
                )
                .status(401)
            })
            .collect();
        let mut eng = engine(DetectConfig::default());
        run(&mut eng, logins, no_ctx);
        let sizes = eng.table_sizes();
        assert!(sizes[2].1 > 0 && sizes[3].1 > 0, "{sizes:?}");
        assert_eq!(sizes[4], ("otp_guessing", 0));
    }
}
