//! OTP / SMS-code guessing (OAT-002 Token Cracking, R-THR-3).
//!
//! **Actor keys:** the account being verified (session, JWT `sub`, API key) or the phone /
//! user name in the request body (keyed hash), else the client IP; per OTP-verify endpoint
//! (function class `sms_verify`, or a `kind = "otp"` endpoint rule).
//!
//! **Signals per window** (`otp_guessing.window_secs`): failed verifications ≥ `min_failures`
//! and, when the code field can be read (`code`, `otp`, `smsCode`, `verifyCode`, `captcha`,
//! `yzm`, … in a JSON or form body or the query), distinct codes ≥ `min_distinct_codes`
//! (codes are counted by keyed hash, never kept).
//!
//! **State:** one ~100-byte entry per (actor, endpoint), + 256 bytes beyond 8 distinct codes;
//! bounded by `limits.max_keys_per_table`.
use serde::{Deserialize, Serialize};

use crate::DetectError;
use crate::bounded::BoundedMap;
use crate::campaign::{Hit, Scope};
use crate::config::{DetectConfig, check};
use crate::detections::{Attempts, Cx, Detection, Wants, us};
use crate::engine::{AuthRole, Obs};
use crate::finding::{Detector, Severity};
use crate::keys::Domain;
use crate::outcome::Outcome;

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

impl OtpConfig {
    /// Checks the section; an error names the field (`otp_guessing.window_secs`).
    pub(crate) fn validate(&self) -> Result<(), DetectError> {
        check::positive("otp_guessing.window_secs", self.window_secs)?;
        check::positive("otp_guessing.min_failures", self.min_failures.into())?;
        check::positive(
            "otp_guessing.min_distinct_codes",
            self.min_distinct_codes.into(),
        )?;
        Ok(())
    }
}

const CODE_FIELDS: &[&str] = &[
    "code",
    "otp",
    "otpcode",
    "otp_code",
    "smscode",
    "sms_code",
    "verifycode",
    "verify_code",
    "verificationcode",
    "verification_code",
    "vcode",
    "captcha",
    "yzm",
    "token",
    "pin",
];

/// The code tried, from a JSON or form body or the query (first code-like field).
fn code_of(o: &Obs) -> Option<String> {
    let body = o.ev.request.body.data.trim();
    if body.len() <= 4096 && body.starts_with('{') {
        let v: serde_json::Map<String, serde_json::Value> = serde_json::from_str(body).ok()?;
        for (k, v) in &v {
            if CODE_FIELDS.iter().any(|f| k.eq_ignore_ascii_case(f)) {
                return match v {
                    serde_json::Value::String(s) => Some(s.clone()),
                    serde_json::Value::Number(n) => Some(n.to_string()),
                    _ => None,
                };
            }
        }
        return None;
    }
    let from_pairs = |s: &str| {
        s.split('&').find_map(|p| {
            let (k, v) = p.split_once('=')?;
            CODE_FIELDS
                .iter()
                .any(|f| k.eq_ignore_ascii_case(f))
                .then(|| v.to_owned())
        })
    };
    if body.len() <= 4096
        && let Some(c) = from_pairs(body)
    {
        return Some(c);
    }
    o.ev.request.query.as_deref().and_then(from_pairs)
}

/// The OTP-guessing detector.
#[derive(Debug)]
pub struct OtpGuessing {
    cfg: OtpConfig,
    quiet_us: u64,
    wins: BoundedMap<Attempts>,
}

impl Detection for OtpGuessing {
    fn new(cfg: &DetectConfig) -> Result<Self, DetectError> {
        Ok(OtpGuessing {
            cfg: cfg.otp_guessing.clone(),
            quiet_us: us(cfg.lifecycle.quiet_secs),
            wins: BoundedMap::new(cfg.limits.max_keys_per_table),
        })
    }

    fn id(&self) -> Detector {
        Detector::OtpGuessing
    }

    fn enabled(&self) -> bool {
        self.cfg.enabled
    }

    fn wants(&self) -> Wants {
        Wants::Role(AuthRole::Otp)
    }

    fn observe(&mut self, o: &Obs, cx: &mut Cx) {
        if o.outcome == Outcome::Unknown {
            return;
        }
        let now = o.now;
        let a = &o.actor;
        let account = a
            .account
            .filter(|x| x.kind != crate::actor::AccountKind::LoginBody);
        let (actor, scope) = match (account, a.login_user) {
            (Some(acc), _) => (acc.key, Scope::Account),
            (None, Some(u)) => (u, Scope::LoginUser),
            (None, None) => (a.ip_key, Scope::Ip),
        };
        let key = cx.keyer.pair(Domain::Code, actor, o.endpoint_key);
        let code = code_of(o).map(|c| cx.keyer.hash(Domain::Code, c.as_bytes()));
        let w = self.wins.entry(key, || Attempts::starting(now));
        w.add(o, now, us(self.cfg.window_secs), code);
        let codes = w.values.count();
        let triggered = w.failures >= self.cfg.min_failures
            && (codes == 0 || codes >= u64::from(self.cfg.min_distinct_codes));
        if triggered || w.hot_until >= now {
            if triggered {
                w.hot_until = now + self.quiet_us;
            }
            let counts = [
                ("attempts", u64::from(w.attempts)),
                ("failures", u64::from(w.failures)),
                ("successes", u64::from(w.successes)),
                ("distinct_codes", codes),
                ("distinct_sources", w.sources.count()),
            ];
            cx.campaigns.hit(
                &Hit {
                    detector: Detector::OtpGuessing,
                    kind: "code_guessing",
                    scope,
                    any_endpoint: false,
                    severity: if w.successes > 0 {
                        Severity::Critical
                    } else {
                        Severity::High
                    },
                    confidence: 85,
                    counts: &counts,
                },
                o,
                cx.keyer,
            );
            cx.baselines.poison(o.endpoint_key);
        }
    }

    fn expire(&mut self, now: u64) {
        self.wins
            .expire(now.saturating_sub(us(self.cfg.window_secs)));
    }

    fn evicted(&self) -> u64 {
        self.wins.evicted
    }

    fn tracked_keys(&self) -> usize {
        self.wins.len()
    }

    fn state_bytes(&self) -> usize {
        self.wins.table_bytes() + self.wins.values().map(Attempts::heap_bytes).sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detections::testkit::*;

    fn verify(ip: &str, phone: &str, code: u32, ok: bool, t: u64) -> Req {
        let r = Req::post(
            ip,
            "/api/sms/verify",
            &format!(r#"{{"mobile":"{phone}","smsCode":"{code:06}"}}"#),
            t,
        );
        if ok {
            r.resp(r#"{"success":true}"#)
        } else {
            r.resp(r#"{"success":false,"msg":"验证码错误"}"#)
        }
    }

    #[test]
    fn guessing_codes_for_one_phone_is_otp_guessing() {
        let mut eng = engine(DetectConfig::default());
        let reqs: Vec<Req> = (0..50u32)
            .map(|i| {
                verify(
                    "203.0.113.30",
                    "13812345678",
                    100_000 + i,
                    false,
                    T0 + u64::from(i) * 200_000,
                )
            })
            .collect();
        let out = run(&mut eng, reqs, no_ctx);
        let c = creates(&out);
        assert_eq!(c.len(), 1, "{c:#?}");
        assert_eq!(c[0].detector, Detector::OtpGuessing);
        assert!(c[0].actor_key("login_user").is_some());
        let json = serde_json::to_string(&out).unwrap();
        assert!(!json.contains("13812345678"), "{json}");
        assert!(json.contains("138****5678"), "{json}");
        assert!(!json.contains("100001"));
    }

    #[test]
    fn a_few_mistyped_codes_are_fine() {
        let mut eng = engine(DetectConfig::default());
        let mut reqs = Vec::new();
        for u in 0..30u64 {
            let phone = format!("139{:08}", u);
            for k in 0..3u64 {
                reqs.push(verify(
                    "198.51.100.8",
                    &phone,
                    111_111 + k as u32,
                    k == 2,
                    T0 + (u * 10 + k) * SEC,
                ));
            }
        }
        let out = run(&mut eng, reqs, no_ctx);
        assert!(creates(&out).is_empty(), "{:#?}", creates(&out));
    }
}
