//! Durable detection state (R-THR-5, issue 18 "durable detection state"): the part of the
//! engine that must survive a restart or a partition reassignment to keep exactly one Create
//! per campaign and the learnt baselines — open campaigns (uid, activity, last Update, counters,
//! sources) and endpoint baselines (the EWMAs overall and per hour of the week).
//!
//! Each piece of state is one record: a string key (`c/<campaign key>`, `b/<endpoint key>`,
//! both keyed hashes) and a versioned, bounded MessagePack value ([`VERSION`]); a closed
//! campaign is a delete (a tombstone on a compacted topic). What stores the records is the
//! caller's choice (the analyzer uses a compacted Kafka topic). Decoding never panics: a
//! corrupt, oversized or incompatible record is an error the caller counts and skips.
//!
//! Not checkpointed: the detectors' sliding windows (seconds to minutes of per-actor counts,
//! rebuilt by the events that follow) and campaign samples (evidence already sent with the
//! alerts; a restored campaign collects new ones, so the state store holds no request data).
use std::sync::{Mutex, OnceLock};

use serde::{Deserialize, Serialize};

/// Version of the record format; a record of another version is incompatible (skipped).
pub const VERSION: u16 = 1;

/// Largest record decoded (bytes); larger ones are rejected.
pub const MAX_RECORD_BYTES: usize = 256 * 1024;

/// Prefix of campaign records' keys.
pub const CAMPAIGN_PREFIX: &str = "c/";
/// Prefix of baseline records' keys.
pub const BASELINE_PREFIX: &str = "b/";

/// Why a record was not restored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// Not a record of any version (garbage, truncated).
    #[error("corrupt detection state record")]
    Corrupt,
    /// A record of another format version.
    #[error("detection state record of version {0}, this analyzer reads version {VERSION}")]
    Incompatible(u16),
    /// Larger than [`MAX_RECORD_BYTES`].
    #[error("detection state record of {0} bytes is over the limit")]
    TooLarge(usize),
    /// A name (detector, kind, counter) this analyzer does not know, or too many of them.
    #[error("detection state record names an unknown {0}")]
    Unknown(&'static str),
}

impl StateError {
    /// Short cause for metrics labels.
    pub fn cause(&self) -> &'static str {
        match self {
            StateError::Corrupt => "corrupt",
            StateError::Incompatible(_) => "incompatible",
            StateError::TooLarge(_) => "too_large",
            StateError::Unknown(_) => "unknown_name",
        }
    }
}

/// The record header every version starts with.
#[derive(Deserialize)]
struct Header {
    version: u16,
}

/// A record: version and body.
#[derive(Serialize, Deserialize)]
pub(crate) struct Record<T> {
    pub version: u16,
    pub body: T,
}

/// Encodes `body` as a record of [`VERSION`] (MessagePack with field names, so that a reader
/// can read the version of any record).
pub(crate) fn encode<T: Serialize>(body: &T) -> Option<Vec<u8>> {
    let r = Record {
        version: VERSION,
        body,
    };
    match rmp_serde::to_vec_named(&r) {
        Ok(v) if v.len() <= MAX_RECORD_BYTES => Some(v),
        Ok(v) => {
            tracing::warn!(
                bytes = v.len(),
                "detection state record over the limit; not written"
            );
            None
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot encode a detection state record");
            None
        }
    }
}

/// Decodes a record written by [`encode`].
pub(crate) fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, StateError> {
    if bytes.len() > MAX_RECORD_BYTES {
        return Err(StateError::TooLarge(bytes.len()));
    }
    let h: Header = rmp_serde::from_slice(bytes).map_err(|_| StateError::Corrupt)?;
    if h.version != VERSION {
        return Err(StateError::Incompatible(h.version));
    }
    let r: Record<T> = rmp_serde::from_slice(bytes).map_err(|_| StateError::Corrupt)?;
    Ok(r.body)
}

/// Names interned at most (kinds, counter names, actor key kinds are a few dozen).
const MAX_NAMES: usize = 256;
/// Longest name interned.
const MAX_NAME_BYTES: usize = 64;

/// The `&'static str` for a name read from a record: the detectors' names are static strings
/// and the campaign table keeps them so. Bounded: at most [`MAX_NAMES`] names of at most
/// [`MAX_NAME_BYTES`] bytes are ever leaked; beyond, the record is refused.
pub(crate) fn intern(s: &str) -> Result<&'static str, StateError> {
    static NAMES: OnceLock<Mutex<Vec<&'static str>>> = OnceLock::new();
    if s.len() > MAX_NAME_BYTES {
        return Err(StateError::Unknown("name"));
    }
    let mut names = NAMES
        .get_or_init(|| Mutex::new(Vec::new()))
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(n) = names.iter().find(|n| **n == s) {
        return Ok(n);
    }
    if names.len() >= MAX_NAMES {
        return Err(StateError::Unknown("name"));
    }
    let n: &'static str = Box::leak(s.to_owned().into_boxed_str());
    names.push(n);
    Ok(n)
}

/// Changes to write since the last [`crate::Engine::checkpoint`].
#[derive(Debug, Default)]
pub struct StateChanges {
    /// Records to write (key, value).
    pub put: Vec<(String, Vec<u8>)>,
    /// Keys to delete (closed campaigns).
    pub delete: Vec<String>,
    /// Samples of the baselines written (sum over endpoints of the request-rate EWMA's
    /// sample count): what a restore of these records gives back.
    pub baseline_samples: u64,
}

/// What [`crate::Engine::restore`] did with a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restored {
    /// An open campaign, now open here.
    Campaign,
    /// A campaign already open here, or of a partition not owned: left alone.
    CampaignSkipped,
    /// An endpoint baseline, with its request-rate sample count.
    Baseline(u64),
    /// A baseline that knows less than the one held: left alone.
    BaselineSkipped,
    /// A bucket of a stage-2 window (`g/w/…`, [`crate::global`]).
    Window,
    /// A stage-2 window bucket of a key held live here, or of a partition not owned: left
    /// alone.
    WindowSkipped,
    /// A stage-2 position on the partials topic (`g/o/…`).
    Position,
    /// A position of a partition not owned or read live here: left alone.
    PositionSkipped,
    /// A key of no known kind.
    UnknownKey,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    struct B {
        a: u32,
        s: String,
    }

    #[test]
    fn records_round_trip_and_bad_ones_are_errors() {
        let b = B {
            a: 7,
            s: "x".into(),
        };
        let bytes = encode(&b).unwrap();
        assert_eq!(decode::<B>(&bytes).unwrap(), b);
        assert_eq!(decode::<B>(b"\xc1garbage"), Err(StateError::Corrupt));
        assert_eq!(
            decode::<B>(&bytes[..bytes.len() / 2]),
            Err(StateError::Corrupt)
        );
        let other = rmp_serde::to_vec_named(&Record {
            version: VERSION + 1,
            body: 3u8,
        })
        .unwrap();
        assert_eq!(
            decode::<B>(&other),
            Err(StateError::Incompatible(VERSION + 1))
        );
        let big = vec![0u8; MAX_RECORD_BYTES + 1];
        assert!(matches!(decode::<B>(&big), Err(StateError::TooLarge(_))));
    }

    #[test]
    fn interning_is_bounded() {
        assert!(std::ptr::eq(intern("abc").unwrap(), intern("abc").unwrap()));
        assert!(intern(&"x".repeat(MAX_NAME_BYTES + 1)).is_err());
    }
}
