//! Credential stuffing (OAT-008, R-THR-3).
//!
//! **Actor keys:** client IP per login endpoint (per-source); the login endpoint as a whole
//! (distributed, low-and-slow), reported with the sources seen. User names (login body or
//! Basic) are counted by keyed hash only.
//!
//! **Per source, per window** (`credential_stuffing.window_secs`): distinct user names ≥
//! `min_distinct_usernames`, attempts per user name ≤ `max_attempts_per_username` (about one
//! each: a list of leaked pairs, not guessing), failure ratio ≥ `min_failure_ratio`.
//!
//! **Distributed, per endpoint and window:** failures ≥ `distributed_min_failures`, distinct
//! sources ≥ `distributed_min_sources`, distinct user names ≥ `distributed_min_usernames`,
//! the mean attempts per source below the per-source user-name threshold (each source stays
//! under any per-IP threshold), and the failure ratio ≥ `distributed_min_failure_ratio`,
//! raised to `baseline_factor` × the endpoint's failure-ratio baseline (hour-of-week aware)
//! when adaptive. All of it is one campaign per endpoint.
//!
//! **State:** one ~100-byte entry per (source, login endpoint) and one per login endpoint,
//! plus 256-byte sketches beyond 8 distinct values; bounded by `limits.max_keys_per_table`.
use serde::{Deserialize, Serialize};

use crate::DetectError;
use crate::baseline::Metric;
use crate::bounded::{BoundedMap, Touched};
use crate::campaign::{Hit, Scope};
use crate::config::{BaselineConfig, DetectConfig, check};
use crate::detections::{Attempts, Cx, Detection, Wants, ratio, us};
use crate::engine::{AuthRole, Obs};
use crate::finding::{Detector, Sample, Severity};
use crate::keys::Domain;
use crate::outcome::Outcome;
use crate::sketch::Bloom;

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
    /// Distributed, slow: a second, longer window per endpoint for campaigns spread over
    /// hours (0: off). Same failure-ratio and attempts-per-source rules.
    pub distributed_long_window_secs: u64,
    /// Distributed, slow: failed attempts on the endpoint per long window.
    pub distributed_long_min_failures: u32,
    /// Distributed, slow: distinct source addresses per long window.
    pub distributed_long_min_sources: u32,
    /// Distributed, slow: distinct user names per long window.
    pub distributed_long_min_usernames: u32,
    /// Distributed, slow: failure-ratio floor over the long window (raised to
    /// `baseline_factor` × baseline when adaptive). Lower than the short window's: over an
    /// hour a slow campaign is mixed with the endpoint's ordinary logins.
    pub distributed_long_min_failure_ratio: f64,
    /// Distributed, slow: binomial z-score of the long window's failures over the endpoint's
    /// baseline failure ratio (when adaptive and the baseline has its samples).
    pub distributed_long_min_z: f64,
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
            distributed_long_window_secs: 3_600,
            distributed_long_min_failures: 100,
            distributed_long_min_sources: 30,
            distributed_long_min_usernames: 60,
            distributed_long_min_failure_ratio: 0.25,
            distributed_long_min_z: 6.0,
            adaptive: true,
            baseline_factor: 3.0,
        }
    }
}

impl StuffingConfig {
    /// Checks the section; an error names the field (`credential_stuffing.window_secs`).
    pub(crate) fn validate(&self) -> Result<(), DetectError> {
        check::positive("credential_stuffing.window_secs", self.window_secs)?;
        if self.min_distinct_usernames < 2 {
            return Err(DetectError::config(
                "credential_stuffing.min_distinct_usernames",
                "must be ≥ 2",
            ));
        }
        if !(self.max_attempts_per_username >= 1.0 && self.max_attempts_per_username.is_finite()) {
            return Err(DetectError::config(
                "credential_stuffing.max_attempts_per_username",
                "must be a finite number ≥ 1",
            ));
        }
        check::ratio(
            "credential_stuffing.min_failure_ratio",
            self.min_failure_ratio,
        )?;
        check::positive(
            "credential_stuffing.distributed_min_failures",
            self.distributed_min_failures.into(),
        )?;
        if self.distributed_min_sources < 2 {
            return Err(DetectError::config(
                "credential_stuffing.distributed_min_sources",
                "must be ≥ 2",
            ));
        }
        check::positive(
            "credential_stuffing.distributed_min_usernames",
            self.distributed_min_usernames.into(),
        )?;
        check::ratio(
            "credential_stuffing.distributed_min_failure_ratio",
            self.distributed_min_failure_ratio,
        )?;
        check::factor("credential_stuffing.baseline_factor", self.baseline_factor)?;
        if self.distributed_long_window_secs != 0 {
            if self.distributed_long_window_secs <= self.window_secs {
                return Err(DetectError::config(
                    "credential_stuffing.distributed_long_window_secs",
                    "must be 0 (off) or longer than window_secs",
                ));
            }
            check::positive(
                "credential_stuffing.distributed_long_min_failures",
                self.distributed_long_min_failures.into(),
            )?;
            if self.distributed_long_min_sources < 2 {
                return Err(DetectError::config(
                    "credential_stuffing.distributed_long_min_sources",
                    "must be ≥ 2",
                ));
            }
            check::positive(
                "credential_stuffing.distributed_long_min_usernames",
                self.distributed_long_min_usernames.into(),
            )?;
            check::ratio(
                "credential_stuffing.distributed_long_min_failure_ratio",
                self.distributed_long_min_failure_ratio,
            )?;
            if !(self.distributed_long_min_z > 0.0 && self.distributed_long_min_z.is_finite()) {
                return Err(DetectError::config(
                    "credential_stuffing.distributed_long_min_z",
                    "must be a finite number > 0",
                ));
            }
        }
        Ok(())
    }
}

/// The credential-stuffing detector.
#[derive(Debug)]
pub struct CredentialStuffing {
    cfg: StuffingConfig,
    base: BaselineConfig,
    quiet_us: u64,
    per_source: BoundedMap<Attempts>,
    per_endpoint: BoundedMap<EndpointWindow>,
    /// The long window per endpoint (`distributed_long_window_secs`).
    per_endpoint_long: BoundedMap<EndpointWindow>,
}

/// One login endpoint's window of the distributed check.
#[derive(Debug, Default)]
struct EndpointWindow {
    attempts: Attempts,
    /// Sources that failed in the window: a later success from one of them belongs to the
    /// campaign (the account it broke into); other sources' successes are ordinary logins.
    failed: Bloom<64>,
    /// Failing sources per network (/16, /48) in the window, at most [`FAILING_NETS`]: a
    /// success from a network the campaign attacks from is called out with it.
    failing_nets: Vec<(ipnet::IpNet, u32)>,
    /// (source, user name) pairs that failed in the window: a success of such a pair is a
    /// user retrying after a typo, not a campaign's catch.
    failed_pairs: Bloom<64>,
    /// Successes from the attacking sources or networks before the campaign was raised
    /// (at most [`MAX_SUCCESS_SAMPLES`]), added to it when it is.
    early_successes: Vec<Sample>,
    /// Attempts and failures in the window from sources that are not heavy hitters.
    light_attempts: u32,
    light_failures: u32,
    /// The endpoint's failure-ratio baseline when the window started (before the attack it
    /// may contain was learnt into the fast-moving baseline).
    p0: crate::baseline::Ewma,
}

impl Touched for EndpointWindow {
    fn last_us(&self) -> u64 {
        self.attempts.last_us()
    }
}

/// Successes kept per window until a campaign is raised.
const MAX_SUCCESS_SAMPLES: usize = 4;

/// Networks tracked per distributed window.
const FAILING_NETS: usize = 16;
/// Failing sources that make a network one the campaign attacks from (and at least a fifth
/// of the window's failing sources, once the window has the campaign's floor of sources).
const ATTACKING_NET_SOURCES: u32 = 3;

/// One distributed window's thresholds.
pub(crate) struct Floors {
    window_us: u64,
    failure_ratio: f64,
    /// The baseline factor (short window); `None`: the binomial z-test (long window).
    factor: Option<f64>,
    failures: u32,
    sources: u32,
    usernames: u32,
}

impl Floors {
    /// The short window's (`window_secs`, `distributed_min_*`).
    pub(crate) fn short(c: &StuffingConfig) -> Floors {
        Floors {
            window_us: us(c.window_secs),
            failure_ratio: c.distributed_min_failure_ratio,
            factor: Some(c.baseline_factor),
            failures: c.distributed_min_failures,
            sources: c.distributed_min_sources,
            usernames: c.distributed_min_usernames,
        }
    }

    /// The long window's (`distributed_long_*`; `window_us` 0: off).
    pub(crate) fn long(c: &StuffingConfig) -> Floors {
        Floors {
            window_us: us(c.distributed_long_window_secs),
            failure_ratio: c.distributed_long_min_failure_ratio,
            factor: None,
            failures: c.distributed_long_min_failures,
            sources: c.distributed_long_min_sources,
            usernames: c.distributed_long_min_usernames,
        }
    }

    /// How long a triggered window keeps its campaign hot: a slow campaign stays open
    /// across the tumbling window's boundary (its next window needs time to refill).
    pub(crate) fn hot_for(&self, quiet_us: u64) -> u64 {
        quiet_us.max(if self.factor.is_none() {
            self.window_us
        } else {
            0
        })
    }
}

/// One distributed window's totals, as one engine counts them or stage 2 merges them.
pub(crate) struct WindowTotals {
    pub attempts: u64,
    pub light_attempts: u64,
    pub light_failures: u64,
    pub sources: u64,
    pub usernames: u64,
    /// The endpoint's failure-ratio baseline now, and when the window started.
    pub base: crate::baseline::Ewma,
    pub p0: crate::baseline::Ewma,
}

/// The counters a distributed campaign reports: the window's `[attempts, failures,
/// successes, distinct user names, distinct sources]`, failure ratio and baseline.
pub(crate) fn distributed_counts(
    floors: &Floors,
    [attempts, failures, successes, users, sources]: [u64; 5],
    fail_ratio: f64,
    base: crate::baseline::Ewma,
) -> [(&'static str, u64); 8] {
    [
        ("window_secs", floors.window_us / 1_000_000),
        ("attempts", attempts),
        ("failures", failures),
        ("successes", successes),
        ("distinct_usernames", users),
        ("distinct_sources", sources),
        ("failure_ratio_pct", (fail_ratio * 100.0).round() as u64),
        (
            "baseline_failure_ratio_pct",
            (f64::from(base.mean) * 100.0).round() as u64,
        ),
    ]
}

/// The distributed campaign's hit (High once the window has a success).
pub(crate) fn distributed_hit<'a>(counts: &'a [(&'static str, u64)], success: bool) -> Hit<'a> {
    Hit {
        detector: Detector::CredentialStuffing,
        kind: "distributed",
        scope: Scope::Endpoint,
        any_endpoint: false,
        severity: if success {
            Severity::High
        } else {
            Severity::Medium
        },
        confidence: 80,
        counts,
    }
}

/// The distributed condition of one window (both stages use it, issue 18): returns whether
/// it holds and the light sources' failure ratio.
pub(crate) fn distributed_holds(
    c: &StuffingConfig,
    base_cfg: &BaselineConfig,
    floors: &Floors,
    t: &WindowTotals,
) -> (bool, f64) {
    let base = t.base;
    let learnt = c.adaptive && base.n >= base_cfg.min_samples;
    let thr_ratio = match floors.factor {
        // The baseline's spread is per bucket; a window averages many buckets, so its
        // σ term is scaled by √(bucket / window) (the standard error of that mean).
        Some(factor) if learnt => {
            let scale = (base_cfg.bucket_secs as f64 * 1e6 / floors.window_us as f64)
                .sqrt()
                .min(1.0);
            base.threshold(
                floors.failure_ratio,
                factor,
                base_cfg.sigmas * scale,
                base_cfg.min_samples,
            )
            .min(0.95)
        }
        _ => floors.failure_ratio,
    };
    // Ratio and z-test over the light sources' attempts (a heavy hitter is its own
    // campaign).
    let fail_ratio = ratio(t.light_failures, t.light_attempts);
    let per_source = t.attempts as f64 / t.sources.max(1) as f64;
    // The long window tests the failures against the endpoint's baseline failure ratio p₀
    // with a binomial z-score, (failures − n·p₀) / √(n·p₀·(1 − p₀)): over an hour a slow
    // campaign is diluted by ordinary logins, but its excess of failures is not noise.
    let z_ok = floors.factor.is_some() || !learnt || t.p0.n < base_cfg.min_samples || {
        let p0 = f64::from(t.p0.mean).clamp(0.01, 0.9);
        let n = t.light_attempts as f64;
        (t.light_failures as f64 - n * p0) / (n * p0 * (1.0 - p0)).sqrt()
            >= c.distributed_long_min_z
    };
    let holds = z_ok
        && t.light_failures >= u64::from(floors.failures)
        && t.sources >= u64::from(floors.sources)
        && t.usernames >= u64::from(floors.usernames)
        && per_source < f64::from(c.min_distinct_usernames)
        && fail_ratio >= thr_ratio;
    (holds, fail_ratio)
}

impl Detection for CredentialStuffing {
    fn new(cfg: &DetectConfig) -> Result<Self, DetectError> {
        Ok(CredentialStuffing {
            cfg: cfg.credential_stuffing.clone(),
            base: cfg.baseline.clone(),
            quiet_us: us(cfg.lifecycle.quiet_secs),
            per_source: BoundedMap::new(cfg.limits.max_keys_per_table),
            per_endpoint: BoundedMap::new(cfg.limits.max_keys_per_table),
            per_endpoint_long: BoundedMap::new(cfg.limits.max_keys_per_table),
        })
    }

    fn id(&self) -> Detector {
        Detector::CredentialStuffing
    }

    fn enabled(&self) -> bool {
        self.cfg.enabled
    }

    fn wants(&self) -> Wants {
        Wants::Role(AuthRole::Login)
    }

    fn observe(&mut self, o: &Obs, cx: &mut Cx) {
        if o.outcome == Outcome::Unknown {
            return;
        }
        let now = o.now;
        let c = &self.cfg;
        let len = us(c.window_secs);
        let key = cx.keyer.pair(Domain::Ip, o.actor.ip_key, o.endpoint_key);
        let w = self.per_source.entry(key, || Attempts::starting(now));
        w.add(o, now, len, o.actor.login_user);
        let users = w.values.count();
        let attempts = u64::from(w.attempts);
        let fail_ratio = ratio(u64::from(w.failures), attempts);
        // A source that fails more than a per-source campaign needs is that campaign (or
        // brute force on one account), not one of many light sources of a distributed one.
        let heavy = w.failures > c.min_distinct_usernames;
        let triggered = users >= u64::from(c.min_distinct_usernames)
            && attempts as f64 / users.max(1) as f64 <= c.max_attempts_per_username
            && fail_ratio >= c.min_failure_ratio;
        if triggered || w.hot_until >= now {
            if triggered {
                w.hot_until = now + self.quiet_us;
            }
            let severity = if w.successes > 0 {
                Severity::High
            } else {
                Severity::Medium
            };
            let counts = [
                ("attempts", attempts),
                ("failures", u64::from(w.failures)),
                ("successes", u64::from(w.successes)),
                ("distinct_usernames", users),
            ];
            cx.campaigns.hit(
                &Hit {
                    detector: Detector::CredentialStuffing,
                    kind: "per_source",
                    scope: Scope::Ip,
                    any_endpoint: false,
                    severity,
                    confidence: 85,
                    counts: &counts,
                },
                o,
                cx.keyer,
            );
            cx.baselines.poison(o.endpoint_key);
        }

        // Two-stage processing (issue 18): the distributed check runs on the merged partials
        // of every analyzer ([`crate::global`]); this one only contributes its events.
        if let Some(sink) = cx.partials.as_deref_mut() {
            let base = cx.baselines.get(o.endpoint_key, Metric::FailureRatio, now);
            let poisoned = cx.baselines.poisoned(o.endpoint_key);
            sink.stuffing(o, cx.keyer, heavy, base, poisoned);
            return;
        }
        // Distributed, low-and-slow: the endpoint as a whole, over the window and the long
        // window (one campaign for both).
        let (short, long) = (Floors::short(c), Floors::long(c));
        let check = Distributed {
            c,
            base_cfg: &self.base,
            quiet_us: self.quiet_us,
            heavy,
        };
        check.observe(&mut self.per_endpoint, &short, o, cx);
        if long.window_us > 0 {
            check.observe(&mut self.per_endpoint_long, &long, o, cx);
        }
    }

    fn expire(&mut self, now: u64) {
        let keep = now.saturating_sub(us(self.cfg.window_secs));
        self.per_source.expire(keep);
        self.per_endpoint.expire(keep);
        self.per_endpoint_long
            .expire(now.saturating_sub(us(self.cfg.distributed_long_window_secs)));
    }

    fn evicted(&self) -> u64 {
        self.per_source.evicted + self.per_endpoint.evicted + self.per_endpoint_long.evicted
    }

    fn tracked_keys(&self) -> usize {
        self.per_source.len() + self.per_endpoint.len() + self.per_endpoint_long.len()
    }

    fn state_bytes(&self) -> usize {
        self.per_source.table_bytes()
            + self.per_endpoint.table_bytes()
            + self.per_endpoint_long.table_bytes()
            + self
                .per_source
                .values()
                .map(Attempts::heap_bytes)
                .chain(
                    self.per_endpoint
                        .values()
                        .chain(self.per_endpoint_long.values())
                        .map(|w| w.attempts.heap_bytes()),
                )
                .sum::<usize>()
    }
}

/// The distributed check of one event.
struct Distributed<'a> {
    c: &'a StuffingConfig,
    base_cfg: &'a BaselineConfig,
    quiet_us: u64,
    /// The event's source is a heavy hitter (its failures are not counted here).
    heavy: bool,
}

impl Distributed<'_> {
    /// The check of one window of `floors` over `table` (one entry per endpoint).
    fn observe(
        &self,
        table: &mut BoundedMap<EndpointWindow>,
        floors: &Floors,
        o: &Obs,
        cx: &mut Cx,
    ) {
        let (c, base_cfg, quiet_us) = (self.c, self.base_cfg, self.quiet_us);
        let now = o.now;
        let base = cx.baselines.get(o.endpoint_key, Metric::FailureRatio, now);
        let w = table.entry(o.endpoint_key, || EndpointWindow {
            attempts: Attempts::starting(now),
            failed: Bloom::default(),
            failing_nets: Vec::new(),
            failed_pairs: Bloom::default(),
            early_successes: Vec::new(),
            light_attempts: 0,
            light_failures: 0,
            p0: base,
        });
        let window_start = w.attempts.start_us;
        w.attempts.add(o, now, floors.window_us, o.actor.login_user);
        if w.attempts.start_us != window_start {
            w.failed.clear();
            w.p0 = base;
            w.light_failures = 0;
            w.light_attempts = 0;
            w.failing_nets.clear();
            w.failed_pairs.clear();
            w.early_successes.clear();
        }
        if !self.heavy {
            w.light_attempts += 1;
            w.light_failures += u32::from(o.outcome == Outcome::Failure);
        }
        let p0 = w.p0;
        let failed_before = w.failed.contains(o.actor.ip_key);
        let pair = cx.keyer.pair(
            Domain::Username,
            o.actor.ip_key,
            o.actor.login_user.unwrap_or(0),
        );
        let retry = w.failed_pairs.contains(pair);
        if o.outcome == Outcome::Failure {
            w.failed_pairs.insert(pair);
        }
        let net = crate::campaign::network_of(o.actor.ip);
        if o.outcome == Outcome::Failure && !failed_before {
            w.failed.insert(o.actor.ip_key);
            if let Some((_, n)) = w.failing_nets.iter_mut().find(|(x, _)| *x == net) {
                *n += 1;
            } else if w.failing_nets.len() < FAILING_NETS {
                w.failing_nets.push((net, 1));
            }
        }
        // A success from a source that failed here, or from a network many failing sources
        // of the window come from (an address's first attempt can be the valid pair).
        let failing: u32 = w.failing_nets.iter().map(|(_, n)| n).sum();
        let from_attackers = (failed_before && !retry)
            || (failing >= floors.sources
                && w.failing_nets
                    .iter()
                    .any(|(x, n)| *x == net && *n >= ATTACKING_NET_SOURCES && *n * 5 >= failing));
        // While the campaign is open, ordinary logins (successes from sources that never failed
        // here) do not join it: its sources and samples are the campaign's.
        let campaign_event = o.outcome == Outcome::Failure || from_attackers;
        let (light_attempts, light_failures) = (w.light_attempts, w.light_failures);
        let e = &w.attempts;
        let sources = e.sources.count();
        let attempts = u64::from(e.attempts);
        let users = e.values.count();
        let (triggered, fail_ratio) = distributed_holds(
            c,
            base_cfg,
            floors,
            &WindowTotals {
                attempts,
                light_attempts: u64::from(light_attempts),
                light_failures: u64::from(light_failures),
                sources,
                usernames: users,
                base,
                p0,
            },
        );
        if triggered {
            w.attempts.hot_until = now + floors.hot_for(quiet_us);
        }
        let e = &w.attempts;
        if campaign_event && (triggered || e.hot_until >= now) {
            let counts = distributed_counts(
                floors,
                [
                    attempts,
                    e.failures.into(),
                    e.successes.into(),
                    users,
                    sources,
                ],
                fail_ratio,
                base,
            );
            let hit = distributed_hit(&counts, e.successes > 0);
            cx.campaigns.hit(&hit, o, cx.keyer);
            if !w.early_successes.is_empty() {
                let early = std::mem::take(&mut w.early_successes);
                cx.campaigns.add_success_samples(&hit, o, cx.keyer, &early);
            }
            cx.baselines.poison(o.endpoint_key);
        } else if from_attackers
            && o.outcome == Outcome::Success
            && w.early_successes.len() < MAX_SUCCESS_SAMPLES
        {
            // A catch before the campaign is raised: called out with it when it is.
            w.early_successes.push(crate::campaign::sample(o));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detections::testkit::*;
    use crate::finding::{Activity, Finding};

    fn login(ip: &str, user: &str, ok: bool, t: u64) -> Req {
        let r = Req::post(
            ip,
            "/api/login",
            &format!(r#"{{"username":"{user}","password":"pw-{t}"}}"#),
            t,
        )
        .ua("Fuzz Faster U Fool v2.1.0");
        if ok {
            r.resp(r#"{"access_token":"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1In0.c2ln"}"#)
        } else {
            r.status(401).resp(r#"{"error":"invalid credentials"}"#)
        }
    }

    #[test]
    fn one_source_many_usernames_is_stuffing() {
        let mut eng = engine(DetectConfig::default());
        let reqs: Vec<Req> = (0..200u64)
            .map(|i| {
                login(
                    "203.0.113.7",
                    &format!("user{i}@example.com"),
                    i == 150,
                    T0 + i * 100_000,
                )
            })
            .collect();
        let out = run(&mut eng, reqs, no_ctx);
        let c = creates(&out);
        assert_eq!(c.len(), 1, "{c:#?}");
        let f = c[0];
        assert_eq!(f.detector, Detector::CredentialStuffing);
        assert_eq!(f.kind, "per_source");
        assert_eq!(f.actor_key("client_ip"), Some("203.0.113.7"));
        assert_eq!(f.endpoint.template, "/api/login");
        let close = out.iter().find(|x| x.activity == Activity::Close).unwrap();
        assert!(close.count("distinct_usernames").unwrap() >= 150);
        assert_eq!(close.count("successes"), Some(1));
        assert_eq!(close.severity, Severity::High);
        // Samples show masked user names, never raw ones or passwords.
        let json = serde_json::to_string(&out).unwrap();
        assert!(!json.contains("user3@example.com"), "{json}");
        assert!(!json.contains("pw-"), "{json}");
        assert!(json.contains("u****@example.com"), "{json}");
    }

    #[test]
    fn distributed_low_and_slow_is_one_campaign() {
        let mut eng = engine(DetectConfig::default());
        let mut reqs = Vec::new();
        // Benign history: 1 hour of normal logins (10 % failures) from many users.
        for i in 0..3_600u64 {
            reqs.push(login(
                &format!("198.51.{}.{}", i % 50, i % 200 + 1),
                &format!("u{}", i % 300),
                i % 10 != 0,
                T0 + i * SEC,
            ));
        }
        // Attack: 100 addresses, 3 attempts each, over 4 minutes, all failing.
        let start = T0 + 3_600 * SEC;
        for a in 0..100u64 {
            for k in 0..3u64 {
                let t = start + (a * 3 + k) * 800_000;
                reqs.push(login(
                    &format!("203.0.{}.{}", 113 + a / 50, a % 50 + 1),
                    &format!("victim{}", a * 3 + k),
                    false,
                    t,
                ));
            }
        }
        let out = run(&mut eng, reqs, no_ctx);
        let c = creates(&out);
        assert_eq!(c.len(), 1, "{c:#?}");
        let f = c[0];
        assert_eq!(f.kind, "distributed");
        assert_eq!(f.actor_key("scope"), Some("distributed"));
        assert!(
            f.time_us - start <= 60 * SEC,
            "latency {}",
            (f.time_us - start) / SEC
        );
        let close = out.iter().find(|x| x.activity == Activity::Close).unwrap();
        assert!(close.source_count >= 50, "{}", close.source_count);
        assert!(close.sources.len() <= 16);
    }

    #[test]
    fn normal_login_traffic_raises_nothing() {
        let mut eng = engine(DetectConfig::default());
        let reqs: Vec<Req> = (0..6_000u64)
            .map(|i| {
                login(
                    &format!("198.51.{}.{}", i % 40, i % 250 + 1),
                    &format!("u{}", i % 500),
                    i % 7 != 0,
                    T0 + i * 100_000,
                )
            })
            .collect();
        let out = run(&mut eng, reqs, no_ctx);
        assert!(creates(&out).is_empty(), "{:#?}", creates(&out));
    }

    /// The issue-14 campaigns: 150 addresses in three /16 networks, 2 attempts each with
    /// distinct user names and a browser User-Agent, two of them valid, among ordinary logins
    /// (10 % typos) — once over 10 minutes, once over two hours. One campaign each, naming the
    /// three networks, the successes among the samples.
    fn slow_campaign(spread_s: u64) -> (Vec<Finding>, u64) {
        let mut eng = engine(DetectConfig::default());
        let mut reqs = Vec::new();
        // Ordinary users come from many networks (their own ISPs).
        let benign = |i: u64, t: u64| {
            login(
                &format!("{}.51.{}.{}", 20 + i % 60, i % 7, i % 200 + 1),
                &format!("u{}", i % 300),
                !i.is_multiple_of(10),
                t,
            )
            .ua(CHROME)
        };
        // Two hours of ordinary logins before, and during the attack.
        let total = 7_200 + spread_s;
        for i in 0..total / 10 {
            reqs.push(benign(i, T0 + i * 10 * SEC));
        }
        let start = T0 + 7_200 * SEC;
        let nets = ["100.64", "172.20", "192.168"];
        let n = 300u64;
        for k in 0..n {
            let a = k / 2;
            let ip = format!("{}.{}.{}", nets[(a % 3) as usize], a / 3, a % 7 + 1);
            // Second attempts of two addresses (after one failure each) succeed.
            let ok = k == 111 || k == 223;
            reqs.push(
                login(
                    &ip,
                    &format!("victim{k}@example.com"),
                    ok,
                    start + k * spread_s * SEC / n,
                )
                .ua(CHROME),
            );
        }
        (run(&mut eng, reqs, no_ctx), start)
    }

    fn check_slow(out: &[Finding], start: u64, within_s: u64) {
        let c = creates(out);
        assert_eq!(c.len(), 1, "{c:#?}");
        assert_eq!(c[0].kind, "distributed");
        let latency = (c[0].time_us - start) / SEC;
        assert!(latency <= within_s, "latency {latency} s");
        let close = out.iter().find(|x| x.activity == Activity::Close).unwrap();
        let nets: Vec<&str> = close.networks.iter().map(|(n, _)| n.as_str()).collect();
        for n in ["100.64.0.0/16", "172.20.0.0/16", "192.168.0.0/16"] {
            assert!(nets.contains(&n), "{nets:?}");
        }
        // The two accounts broken into are called out among the samples; ordinary logins
        // (x.51.x.x) are not among its successes.
        let successes: Vec<_> = close
            .samples
            .iter()
            .filter(|s| s.outcome.is_some_and(|(o, _)| o == "success"))
            .collect();
        assert_eq!(successes.len(), 2, "{:#?}", close.samples);
        let benign = |ip: &std::net::IpAddr| ip.to_string().contains(".51.");
        assert!(
            !successes.iter().any(|s| benign(&s.client_ip)),
            "{:#?}",
            close.samples
        );
        // An ordinary user's single typo during the campaign looks like any one attempt of
        // it; such sources are a minority of the list, and the three attacking networks
        // lead the network list.
        let listed_benign = close.sources.iter().filter(|ip| benign(ip)).count();
        assert!(
            listed_benign * 2 < close.sources.len(),
            "{:?}",
            close.sources
        );
        let mut top: Vec<&str> = close.networks[..3]
            .iter()
            .map(|(n, _)| n.as_str())
            .collect();
        top.sort_unstable();
        assert_eq!(top, ["100.64.0.0/16", "172.20.0.0/16", "192.168.0.0/16"]);
    }

    #[test]
    fn low_and_slow_over_ten_minutes_is_one_campaign_naming_its_networks() {
        let (out, start) = slow_campaign(600);
        check_slow(&out, start, 300);
    }

    #[test]
    fn low_and_slow_over_two_hours_is_found_by_the_long_window() {
        let (out, start) = slow_campaign(7_200);
        check_slow(&out, start, 3_600);
    }

    /// Three hours of ordinary logins from many networks, the typo rate rising from 10 % to
    /// 20 % in the last hour (a bad day, a password-policy change): silent, the long window
    /// included.
    #[test]
    fn hours_of_ordinary_logins_with_more_typos_raise_nothing() {
        let mut eng = engine(DetectConfig::default());
        let reqs: Vec<Req> = (0..10_800u64 / 5)
            .map(|i| {
                let t = i * 5;
                let fail_every = if t < 7_200 { 10 } else { 5 };
                login(
                    &format!("{}.51.{}.{}", 20 + i % 60, i % 7, i % 200 + 1),
                    &format!("u{}", i % 700),
                    i % fail_every != 0,
                    T0 + t * SEC,
                )
                .ua(CHROME)
            })
            .collect();
        let out = run(&mut eng, reqs, no_ctx);
        assert!(creates(&out).is_empty(), "{:#?}", creates(&out));
    }

    /// One source guessing 230 passwords of one account among ordinary logins is brute
    /// force (its own detector), not a distributed stuffing campaign of the endpoint.
    #[test]
    fn one_heavy_source_is_not_a_distributed_campaign() {
        let mut eng = engine(DetectConfig::default());
        let mut reqs: Vec<Req> = (0..600u64)
            .map(|i| {
                login(
                    &format!("{}.51.{}.{}", 20 + i % 60, i % 7, i % 200 + 1),
                    &format!("u{}", i % 300),
                    !i.is_multiple_of(10),
                    T0 + i * SEC,
                )
            })
            .collect();
        for i in 0..230u64 {
            reqs.push(login(
                "203.0.113.66",
                "admin",
                false,
                T0 + 300 * SEC + i * 200_000,
            ));
        }
        let out = run(&mut eng, reqs, no_ctx);
        let c = creates(&out);
        assert!(
            !c.iter().any(|f| f.detector == Detector::CredentialStuffing),
            "{c:#?}"
        );
    }
}
