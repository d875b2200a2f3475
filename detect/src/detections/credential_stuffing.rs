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
use crate::bounded::BoundedMap;
use crate::campaign::{Hit, Scope};
use crate::config::{BaselineConfig, DetectConfig, check};
use crate::detections::{Attempts, Cx, Detection, Wants, ratio, us};
use crate::engine::{AuthRole, Obs};
use crate::finding::{Detector, Severity};
use crate::keys::Domain;
use crate::outcome::Outcome;

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
    per_endpoint: BoundedMap<Attempts>,
}

impl Detection for CredentialStuffing {
    fn new(cfg: &DetectConfig) -> Result<Self, DetectError> {
        Ok(CredentialStuffing {
            cfg: cfg.credential_stuffing.clone(),
            base: cfg.baseline.clone(),
            quiet_us: us(cfg.lifecycle.quiet_secs),
            per_source: BoundedMap::new(cfg.limits.max_keys_per_table),
            per_endpoint: BoundedMap::new(cfg.limits.max_keys_per_table),
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

        // Distributed, low-and-slow: the endpoint as a whole.
        let base = cx.baselines.get(o.endpoint_key, Metric::FailureRatio, now);
        let thr_ratio = if c.adaptive {
            base.threshold(
                c.distributed_min_failure_ratio,
                c.baseline_factor,
                self.base.sigmas,
                self.base.min_samples,
            )
            .min(0.95)
        } else {
            c.distributed_min_failure_ratio
        };
        let e = self
            .per_endpoint
            .entry(o.endpoint_key, || Attempts::starting(now));
        e.add(o, now, len, o.actor.login_user);
        let sources = e.sources.count();
        let attempts = u64::from(e.attempts);
        let users = e.values.count();
        let fail_ratio = ratio(u64::from(e.failures), attempts);
        let per_source = attempts as f64 / sources.max(1) as f64;
        let triggered = u64::from(e.failures) >= u64::from(c.distributed_min_failures)
            && sources >= u64::from(c.distributed_min_sources)
            && users >= u64::from(c.distributed_min_usernames)
            && per_source < f64::from(c.min_distinct_usernames)
            && fail_ratio >= thr_ratio;
        if triggered || e.hot_until >= now {
            if triggered {
                e.hot_until = now + self.quiet_us;
            }
            let counts = [
                ("attempts", attempts),
                ("failures", u64::from(e.failures)),
                ("successes", u64::from(e.successes)),
                ("distinct_usernames", users),
                ("distinct_sources", sources),
                ("failure_ratio_pct", (fail_ratio * 100.0).round() as u64),
                (
                    "baseline_failure_ratio_pct",
                    (f64::from(base.mean) * 100.0).round() as u64,
                ),
            ];
            cx.campaigns.hit(
                &Hit {
                    detector: Detector::CredentialStuffing,
                    kind: "distributed",
                    scope: Scope::Endpoint,
                    any_endpoint: false,
                    severity: if e.successes > 0 {
                        Severity::High
                    } else {
                        Severity::Medium
                    },
                    confidence: 80,
                    counts: &counts,
                },
                o,
                cx.keyer,
            );
            cx.baselines.poison(o.endpoint_key);
        }
    }

    fn expire(&mut self, now: u64) {
        let keep = now.saturating_sub(us(self.cfg.window_secs));
        self.per_source.expire(keep);
        self.per_endpoint.expire(keep);
    }

    fn evicted(&self) -> u64 {
        self.per_source.evicted + self.per_endpoint.evicted
    }

    fn tracked_keys(&self) -> usize {
        self.per_source.len() + self.per_endpoint.len()
    }

    fn state_bytes(&self) -> usize {
        self.per_source.table_bytes()
            + self.per_endpoint.table_bytes()
            + self
                .per_source
                .values()
                .chain(self.per_endpoint.values())
                .map(Attempts::heap_bytes)
                .sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detections::testkit::*;
    use crate::finding::Activity;

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
}
