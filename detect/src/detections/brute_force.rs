//! Brute force / credential cracking (OAT-007, R-THR-3) and possible account takeover.
//!
//! **Actor keys:** the user name tried (keyed hash, login body or Basic) per login endpoint;
//! the campaign is keyed by the client IP when one or two sources drive it (one campaign per
//! attacking tool run, however many user names it cycles through) and by the user name when
//! more sources do (distributed guessing on one account).
//!
//! **Signals:** failed attempts on one user name per window (`brute_force.window_secs`) ≥
//! `min_failures`. Account takeover: a success for a user name that had ≥ `ato_min_failures`
//! failures in the window, from a /24 (/64) subnet that never succeeded for that user before.
//!
//! **State:** one ~90-byte entry per (user name, endpoint) and one ~60-byte history per user
//! name (the last four subnets that logged in successfully); bounded by
//! `limits.max_keys_per_table`.
use serde::{Deserialize, Serialize};

use crate::DetectError;
use crate::bounded::{BoundedMap, Touched};
use crate::campaign::{Hit, Scope};
use crate::config::{DetectConfig, check};
use crate::detections::{Cx, Detection, Wants, roll, us};
use crate::engine::{AuthRole, Obs};
use crate::finding::{Detector, Severity};
use crate::keys::Domain;
use crate::outcome::Outcome;
use crate::sketch::Distinct;

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

impl BruteForceConfig {
    /// Checks the section; an error names the field (`brute_force.window_secs`).
    pub(crate) fn validate(&self) -> Result<(), DetectError> {
        check::positive("brute_force.window_secs", self.window_secs)?;
        check::positive("brute_force.min_failures", self.min_failures.into())?;
        check::positive("brute_force.ato_min_failures", self.ato_min_failures.into())?;
        Ok(())
    }
}

#[derive(Debug, Default)]
struct Target {
    start_us: u64,
    last_us: u64,
    hot_until: u64,
    attempts: u32,
    failures: u32,
    sources: Distinct,
}

impl Touched for Target {
    /// A key in an open campaign stays until the campaign could close.
    fn last_us(&self) -> u64 {
        self.last_us.max(self.hot_until)
    }
}

/// Subnets that logged in successfully for one user name.
#[derive(Debug, Default)]
struct History {
    last_us: u64,
    good: [u64; 4],
    n: u8,
    next: u8,
}

impl Touched for History {
    fn last_us(&self) -> u64 {
        self.last_us
    }
}

impl History {
    fn knows(&self, subnet: u64) -> bool {
        self.good[..usize::from(self.n)].contains(&subnet)
    }
    fn learn(&mut self, subnet: u64) {
        if self.knows(subnet) {
            return;
        }
        self.good[usize::from(self.next)] = subnet;
        self.next = (self.next + 1) % 4;
        self.n = (self.n + 1).min(4);
    }
}

/// The condition on one user name's window, as one engine and stage 2 check it (issue 18).
pub(crate) fn target_holds(c: &BruteForceConfig, failures: u64) -> bool {
    failures >= u64::from(c.min_failures)
}

/// The kind by the window's distinct sources: one or two sources are a tool run keyed by
/// its address, more are guessing distributed on the account.
pub(crate) fn target_kind(sources: u64) -> (&'static str, Scope) {
    if sources <= 2 {
        ("single_source", Scope::Ip)
    } else {
        ("distributed_on_account", Scope::LoginUser)
    }
}

/// The hit of a user name's window.
pub(crate) fn target_hit<'a>(
    kind: &'static str,
    scope: Scope,
    counts: &'a [(&'static str, u64)],
) -> Hit<'a> {
    Hit {
        detector: Detector::BruteForce,
        kind,
        scope,
        any_endpoint: false,
        severity: Severity::Medium,
        confidence: 85,
        counts,
    }
}

/// Stands for the missing user name of a password-only login in keyed hashes.
const NO_USER_NAME: u64 = 0x6e6f_2d75_7365_7200;

/// The brute-force detector.
#[derive(Debug)]
pub struct BruteForce {
    cfg: BruteForceConfig,
    quiet_us: u64,
    targets: BoundedMap<Target>,
    history: BoundedMap<History>,
}

impl Detection for BruteForce {
    fn new(cfg: &DetectConfig) -> Result<Self, DetectError> {
        Ok(BruteForce {
            cfg: cfg.brute_force.clone(),
            quiet_us: us(cfg.lifecycle.quiet_secs),
            targets: BoundedMap::new(cfg.limits.max_keys_per_table),
            history: BoundedMap::new(cfg.limits.max_keys_per_table),
        })
    }

    fn id(&self) -> Detector {
        Detector::BruteForce
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
        // A login without a user name (a password-only or token form: Deluge, Jupyter,
        // code-server) guards one account; guessing it is counted per source, so that a
        // client retrying a stale password does not add up with other users.
        let user = match o.actor.login_user {
            Some(u) => u,
            None => cx
                .keyer
                .pair(Domain::Username, o.actor.ip_key, NO_USER_NAME),
        };
        let now = o.now;
        let key = cx.keyer.pair(Domain::Username, user, o.endpoint_key);
        let t = self.targets.entry(key, || Target {
            start_us: now,
            ..Target::default()
        });
        if roll(&mut t.start_us, now, us(self.cfg.window_secs)) {
            let hot = t.hot_until;
            *t = Target {
                start_us: now,
                hot_until: hot,
                ..Target::default()
            };
        }
        t.last_us = t.last_us.max(now);
        t.attempts += 1;
        t.sources.insert(o.actor.ip_key);
        let failures_before = t.failures;
        if o.outcome == Outcome::Failure {
            t.failures += 1;
        }
        let sources = t.sources.count();
        let triggered = target_holds(&self.cfg, u64::from(t.failures));
        // Two-stage processing (issue 18): a user name tried from many sources is checked on
        // the merged partials ([`crate::global`]); here only a source's own campaign is.
        let global = match (cx.partials.as_deref_mut(), o.actor.login_user) {
            (Some(sink), Some(u)) => {
                sink.brute_force(o, cx.keyer, u);
                true
            }
            _ => false,
        };
        let (kind, scope) = target_kind(sources);
        if (triggered || t.hot_until >= now) && !(global && scope == Scope::LoginUser) {
            if triggered {
                t.hot_until = now + self.quiet_us;
            }
            let counts = [
                ("attempts", u64::from(t.attempts)),
                ("failures_on_user", u64::from(t.failures)),
                ("distinct_sources", sources),
            ];
            cx.campaigns
                .hit(&target_hit(kind, scope, &counts), o, cx.keyer);
            cx.baselines.poison(o.endpoint_key);
        }
        if o.outcome == Outcome::Success {
            let h = self.history.entry(user, History::default);
            h.last_us = now;
            let new_source = !h.knows(o.actor.subnet_key);
            if new_source && failures_before >= self.cfg.ato_min_failures {
                let counts = [
                    ("failures_before_success", u64::from(failures_before)),
                    ("distinct_sources", sources),
                ];
                cx.campaigns.hit(
                    &Hit {
                        detector: Detector::BruteForce,
                        kind: "possible_account_takeover",
                        scope: if o.actor.login_user.is_some() {
                            Scope::LoginUser
                        } else {
                            Scope::Ip
                        },
                        any_endpoint: false,
                        severity: Severity::Critical,
                        confidence: 70,
                        counts: &counts,
                    },
                    o,
                    cx.keyer,
                );
            }
            h.learn(o.actor.subnet_key);
        }
    }

    fn expire(&mut self, now: u64) {
        let keep = now.saturating_sub(us(self.cfg.window_secs));
        self.targets.expire(keep);
        // Known-good subnets are kept for 30 days of inactivity.
        self.history.expire(now.saturating_sub(us(30 * 86_400)));
    }

    fn evicted(&self) -> u64 {
        self.targets.evicted + self.history.evicted
    }

    fn tracked_keys(&self) -> usize {
        self.targets.len() + self.history.len()
    }

    fn state_bytes(&self) -> usize {
        self.targets.table_bytes()
            + self.history.table_bytes()
            + self
                .targets
                .values()
                .map(|t| t.sources.heap_bytes())
                .sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detections::testkit::*;
    use crate::finding::Activity;
    use base64::Engine as _;

    fn basic(ip: &str, user: &str, pw: &str, ok: bool, t: u64) -> Req {
        let cred = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"));
        let r = Req::get(ip, "/basic/login", t)
            .header("Authorization", &format!("Basic {cred}"))
            .ua("Mozilla/4.0 (Hydra)");
        if ok { r } else { r.status(401) }
    }

    #[test]
    fn hydra_basic_auth_on_one_user_is_one_campaign_then_takeover() {
        let mut eng = engine(DetectConfig::default());
        let mut reqs: Vec<Req> = (0..300u64)
            .map(|i| {
                basic(
                    "203.0.113.66",
                    "admin",
                    &format!("guess{i}"),
                    false,
                    T0 + i * 50_000,
                )
            })
            .collect();
        // The password is found.
        reqs.push(basic(
            "203.0.113.66",
            "admin",
            "letmein",
            true,
            T0 + 300 * 50_000,
        ));
        let out = run(&mut eng, reqs, no_ctx);
        let c = creates(&out);
        assert_eq!(c.len(), 2, "{c:#?}");
        let bf = c.iter().find(|f| f.kind == "single_source").unwrap();
        assert_eq!(bf.detector, Detector::BruteForce);
        assert_eq!(bf.actor_key("client_ip"), Some("203.0.113.66"));
        assert!(bf.time_us - T0 <= 10 * SEC);
        let ato = c
            .iter()
            .find(|f| f.kind == "possible_account_takeover")
            .unwrap();
        assert_eq!(ato.severity, Severity::Critical);
        assert!(
            ato.actor_key("login_user")
                .unwrap()
                .starts_with("login_user:")
        );
        let json = serde_json::to_string(&out).unwrap();
        assert!(!json.contains("admin"), "user name in clear: {json}");
        assert!(!json.contains("letmein"));
        assert_eq!(
            out.iter().filter(|f| f.activity == Activity::Close).count(),
            2
        );
    }

    #[test]
    fn typos_then_success_from_a_known_subnet_are_not_takeover() {
        let mut eng = engine(DetectConfig::default());
        let mut reqs = vec![basic("198.51.100.4", "bob", "right", true, T0)];
        for i in 0..6u64 {
            reqs.push(basic(
                "198.51.100.4",
                "bob",
                "typo",
                false,
                T0 + (10 + i) * SEC,
            ));
        }
        reqs.push(basic("198.51.100.9", "bob", "right", true, T0 + 20 * SEC));
        let out = run(&mut eng, reqs, no_ctx);
        assert!(creates(&out).is_empty(), "{:#?}", creates(&out));
    }

    #[test]
    fn history_ring_keeps_four_subnets() {
        let mut h = History::default();
        for s in 1..=6u64 {
            h.learn(s);
        }
        assert!(h.knows(6) && h.knows(5) && h.knows(4) && h.knows(3));
        assert!(!h.knows(1));
        h.learn(6);
        assert!(h.knows(3));
    }

    /// A password-only JSON-RPC login (Deluge: `auth.login` with the password as its only
    /// parameter, `{"result": false}` with 200 on failure): ffuf guessing it from one source
    /// is brute force by that source; a user who mistypes twice is not. The endpoint is the
    /// RPC method (`/json auth.login`).
    #[test]
    fn password_only_login_guessing_is_brute_force_by_source() {
        let mut eng = engine(DetectConfig::default());
        let mut reqs = Vec::new();
        let rpc = |ip: &str, pw: &str, ok: bool, t: u64| {
            let r = Req::post(
                ip,
                "/json",
                &format!(r#"{{"method":"auth.login","params":["{pw}"],"id":1}}"#),
                t,
            );
            if ok {
                r.resp(r#"{"result": true, "error": null, "id": 1}"#)
                    .resp_header("Set-Cookie", "_session_id=abcdef0123456789; Path=/json")
            } else {
                r.resp(r#"{"result": false, "error": null, "id": 1}"#)
            }
        };
        for i in 0..3u64 {
            reqs.push(rpc("198.51.100.4", "typo", i == 2, T0 + i * 5 * SEC));
        }
        for i in 0..200u64 {
            reqs.push(rpc(
                "203.0.113.9",
                &format!("pw{i}"),
                false,
                T0 + 60 * SEC + i * 50_000,
            ));
        }
        // The labeller classifies `POST /json` by its method (create); the JSON-RPC method
        // read from the body (`auth.login`) makes it a login.
        let out = run(&mut eng, reqs, |_| {
            (
                Some("/json"),
                Some(apitap_labels::FunctionClass::Create),
                None,
            )
        });
        let c = creates(&out);
        assert_eq!(c.len(), 1, "{c:#?}");
        assert_eq!(c[0].detector, Detector::BruteForce);
        assert_eq!(c[0].kind, "single_source");
        assert_eq!(c[0].actor_key("client_ip"), Some("203.0.113.9"));
        assert_eq!(c[0].endpoint.template, "/json auth.login");
    }
}
