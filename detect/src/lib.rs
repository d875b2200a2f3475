//! apitap-detect owns threat detection over API events (issue 7; R-THR-1..5, R-BUS-3):
//!
//! - **Actors** ([`actor`]): client IP (X-Forwarded-For/X-Real-IP honoured only from trusted
//!   proxies), /24 and /64 subnets, account (JWT `sub`, session cookie, API key, Basic or
//!   login-body user name — keyed hashes only), user-agent family and a client fingerprint.
//! - **Login outcomes** ([`outcome`]): success/failure of login and OTP-verify attempts.
//! - **Detections** ([`detections`]): crawling (OAT-011), enumeration (API1 BOLA), credential
//!   stuffing (OAT-008), brute force and account takeover (OAT-007), OTP guessing (OAT-002),
//!   abnormal data access (bulk records, off-hours, account sharing, foreign access to internal
//!   APIs).
//! - **Weak points** ([`weak`], R-SEN-3): the stateful per-endpoint weak-point tracker
//!   (cleartext passwords, credentials in URLs, login via GET, sensitive data without
//!   authentication, weak passwords accepted, excessive exposure, unmasked and inconsistently
//!   masked responses), one rule per file, over the labels of apitap-labels.
//! - **Baselines** ([`baseline`]): per endpoint (hour-of-week aware) and per actor, EWMA.
//! - **Campaigns** ([`campaign`]): one Create, rate-limited Updates, one Close per campaign.
//! - **Two-stage processing** (issue 18, `docs/scale-out.md`): mergeable partial aggregates
//!   of the global detectors per global key and slice ([`partial`], stage 1, on each
//!   analyzer's events partitions) and the stage-2 engine that merges them and raises the
//!   distributed campaigns ([`global`], one owner per key).
//! - **Alerts** ([`alert`]): the one typed [`Alert`] every apitap finding becomes (detections,
//!   inventory changes, weak points), with the one [`Severity`].
//! - **OCSF** ([`ocsf`]): the one OCSF renderer of alerts (Detection Finding 2004, Data
//!   Security Finding 2006, Application Security Posture Finding 2007) and a schema validator.
//!
//! All state is bounded; evictions and drops are counted in [`EngineMetrics`]. Raw sensitive
//! values (passwords, tokens, user names, IDs) never leave the engine: actor keys are keyed
//! hashes and samples are masked (R-OPS-3). Stream time is event time. `docs/detections.md`
//! documents every detector.
#![warn(missing_docs)]

pub mod actor;
pub mod alert;
pub mod baseline;
mod bounded;
mod cache;
pub mod campaign;
pub mod checkpoint;
pub mod config;
pub mod detections;
pub mod ecs;
mod engine;
pub mod finding;
pub mod global;
mod keys;
mod metrics;
pub mod ocsf;
pub mod outcome;
pub mod partial;
pub mod sketch;
pub mod template;
pub mod weak;

pub use actor::UaFamily;
pub use alert::Alert;
pub use config::DetectConfig;
pub use engine::{Engine, EventContext};
pub use finding::{Activity, Detector, Finding, Sample, Severity};
pub use keys::Keyer;
pub use metrics::EngineMetrics;
pub use outcome::Outcome;

/// Errors of this crate. Messages never contain values from traffic.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    /// A configuration value is invalid; `field` is its dotted path (`crawling.window_secs`).
    #[error("invalid detection config `{field}`: {reason}")]
    Config {
        /// Dotted path of the field.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The GeoIP database could not be opened or is not a MaxMind DB.
    #[error("cannot open GeoIP database `{path}`: {reason}")]
    GeoIp {
        /// The configured path.
        path: String,
        /// Why it failed.
        reason: String,
    },
}

impl DetectError {
    pub(crate) fn config(field: impl Into<String>, reason: impl Into<String>) -> DetectError {
        DetectError::Config {
            field: field.into(),
            reason: reason.into(),
        }
    }
}
