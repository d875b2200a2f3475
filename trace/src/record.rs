//! What the store keeps per transaction ([`AccessRecord`]) and what a question asks
//! ([`Query`]) and gets back ([`Hit`]).

use std::collections::HashMap;
use std::net::IpAddr;

use apitap_labels::{Direction, Label, ValueHash};
use serde::Serialize;

/// The compact access record of one transaction (R-THR-6). It holds no value the API
/// carried: sensitive values are their keyed hashes, the account and the User-Agent are keyed
/// hashes too, and the endpoint is its template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessRecord {
    /// When the request started (µs since the Unix epoch, the event's time).
    pub time_us: u64,
    /// The event's id (`ApiEvent::event_id`), to fetch the whole event from the events topic.
    pub event_id: String,
    /// The endpoint that served it.
    pub endpoint: EndpointRef,
    /// Response status; `None` when no response was seen.
    pub status: Option<u16>,
    /// Client address (after trusted-proxy resolution).
    pub client_ip: IpAddr,
    /// The account, when one was identified: its kind (`jwt_sub`, `session`, `api_key`,
    /// `basic`, `login_user`) and keyed hash, as alerts render it.
    pub account: Option<AccountRef>,
    /// User-Agent family (`browser`, `curl`, `ffuf`, …).
    pub ua_family: String,
    /// Keyed hash of the exact User-Agent value (0: none sent).
    pub ua_key: u64,
    /// Sensitive records about other people in the response (the largest count of one
    /// unmasked C2/C3 body label, not counting the caller's own values).
    pub records: u32,
    /// The keyed hashes of the sensitive values sent and served.
    pub values: Vec<TracedValue>,
}

/// An endpoint as the inventory names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct EndpointRef {
    /// Service (Host, or server address).
    pub service: String,
    /// Method.
    pub method: String,
    /// Path template (`/customers/{id}`).
    pub template: String,
}

/// An identified account: kind and keyed hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountRef {
    /// How it was identified (a stable snake_case name).
    pub kind: &'static str,
    /// Keyed hash (the detections' account key).
    pub key: u64,
}

/// The account kinds, in their stored order (the stored code is the index).
pub const ACCOUNT_KINDS: [&str; 5] = ["jwt_sub", "session", "api_key", "basic", "login_user"];

impl AccountRef {
    /// `kind:hash` as alerts render it (`login_user:00ab…`).
    pub fn render(&self) -> String {
        format!("{}:{:016x}", self.kind, self.key)
    }

    /// Parses [`AccountRef::render`]'s form.
    pub fn parse(s: &str) -> Option<AccountRef> {
        let (kind, hex) = s.split_once(':')?;
        let kind = ACCOUNT_KINDS.iter().find(|k| **k == kind)?;
        if hex.len() != 16 {
            return None;
        }
        Some(AccountRef {
            kind,
            key: u64::from_str_radix(hex, 16).ok()?,
        })
    }

    pub(crate) fn code(&self) -> i64 {
        ACCOUNT_KINDS
            .iter()
            .position(|k| *k == self.kind)
            .map_or(-1, |p| p as i64)
    }

    pub(crate) fn from_code(code: i64, key: i64) -> Option<AccountRef> {
        let kind = ACCOUNT_KINDS.get(usize::try_from(code).ok()?)?;
        Some(AccountRef {
            kind,
            key: key as u64,
        })
    }
}

/// One sensitive value of a transaction, by its keyed hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TracedValue {
    /// The keyed hash (`apitap_labels::HashKey::hash_value`).
    pub hash: ValueHash,
    /// What the value is.
    pub label: Label,
    /// Sent by the client (request) or served (response).
    pub direction: Direction,
}

/// The stored key of a value hash: its first 64 bits. Two distinct values share a key with
/// probability 2⁻⁶⁴ per pair; a query over 10 M stored values meets a false match with
/// probability below 10⁻¹², and saves half of the index.
pub fn value_key(hash: &ValueHash) -> i64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&hash.0[..8]);
    i64::from_be_bytes(b)
}

/// What a question selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// Transactions that carried any of these values (several hashes: one value typed by an
    /// analyst, normalised per label).
    Values(Vec<ValueHash>),
    /// Transactions from one client address.
    Ip(IpAddr),
    /// Transactions of any of these accounts (keyed hashes, any kind).
    Accounts(Vec<u64>),
    /// Transactions with this exact User-Agent (keyed hash).
    UserAgent(u64),
    /// Transactions of one endpoint.
    Endpoint(EndpointRef),
}

/// A trace-back question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// What to select.
    pub selector: Selector,
    /// Earliest request time (µs since the epoch, inclusive).
    pub since_us: u64,
    /// Latest request time (µs since the epoch, inclusive).
    pub until_us: u64,
    /// Most hits returned (oldest first); more are reported as `truncated`.
    pub limit: usize,
}

/// Largest [`Query::limit`] accepted.
pub const MAX_LIMIT: usize = 10_000;

/// A sensitive value a hit carried that the question asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MatchedValue {
    /// The label.
    pub label: &'static str,
    /// `request` or `response`.
    pub direction: &'static str,
}

/// One transaction found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Hit {
    /// Request time, µs since the epoch.
    pub time_us: u64,
    /// The event id.
    pub event_id: String,
    /// The endpoint.
    pub endpoint: EndpointRef,
    /// Response status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Client address.
    pub client_ip: IpAddr,
    /// The account as alerts render it (`kind:hash`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// User-Agent family.
    pub ua_family: String,
    /// Keyed hash of the User-Agent (hex).
    pub ua_key: String,
    /// Sensitive records served about other people.
    pub records: u32,
    /// For value questions: which of the asked values it carried, and where.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub matched: Vec<MatchedValue>,
}

/// The answer to a [`Query`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Answer {
    /// The hits, oldest first, at most the query's limit.
    pub hits: Vec<Hit>,
    /// More transactions matched than the limit.
    pub truncated: bool,
    /// Partitions whose time range met the question and were searched.
    pub partitions_searched: usize,
}

/// Label of a stored code (its position in [`Label::ALL`]).
pub(crate) fn label_of(code: i64) -> Option<Label> {
    Label::ALL.get(usize::try_from(code).ok()?).copied()
}

pub(crate) fn label_code(label: Label) -> i64 {
    Label::ALL
        .iter()
        .position(|l| *l == label)
        .map_or(-1, |p| p as i64)
}

pub(crate) fn direction_name(d: Direction) -> &'static str {
    match d {
        Direction::Request => "request",
        Direction::Response => "response",
    }
}

/// The stored code of a direction (0 request, 1 response), the same in both backends.
pub(crate) fn direction_code(d: Direction) -> i16 {
    matches!(d, Direction::Response) as i16
}

/// The rendered account of a stored kind code and key.
pub(crate) fn account_of(kind: Option<i64>, key: Option<i64>) -> Option<String> {
    match (kind, key) {
        (Some(k), Some(v)) => AccountRef::from_code(k, v).map(|a| a.render()),
        _ => None,
    }
}

/// The matched value of a stored label code and direction code (`None`: a label this build
/// does not know, written by a newer one).
pub(crate) fn matched_of(label: i64, direction: i64) -> Option<MatchedValue> {
    Some(MatchedValue {
        label: label_of(label)?.name(),
        direction: direction_name(if direction == 1 {
            Direction::Response
        } else {
            Direction::Request
        }),
    })
}

/// The value hashes of a record as stored: (key, label code, direction code), each once.
pub(crate) fn stored_values(record: &AccessRecord) -> Vec<(i64, i16, i16)> {
    let mut v: Vec<(i64, i16, i16)> = record
        .values
        .iter()
        .map(|t| {
            (
                value_key(&t.hash),
                label_code(t.label) as i16,
                direction_code(t.direction),
            )
        })
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// The hits one partition (or one table) gave a question, before they join the answer:
/// several index ranges (hashes, accounts) are merged in time order, and a transaction that
/// carried several asked values is one hit listing each. Both backends collect through it.
#[derive(Debug, Default)]
pub(crate) struct Rows {
    rows: Vec<(i64, Hit)>,
    by_id: HashMap<i64, usize>,
}

impl Rows {
    /// A hit of a selector other than values.
    pub(crate) fn push(&mut self, id: i64, hit: Hit) {
        self.rows.push((id, hit));
    }

    /// A hit of a value question, with the value it matched.
    pub(crate) fn push_value(&mut self, id: i64, hit: Hit, m: Option<MatchedValue>) {
        let Some(m) = m else { return };
        let rows = &mut self.rows;
        let i = *self.by_id.entry(id).or_insert_with(|| {
            rows.push((id, hit));
            rows.len() - 1
        });
        if !rows[i].1.matched.contains(&m) {
            rows[i].1.matched.push(m);
        }
    }

    /// The first `want` hits in time order, appended to `out`.
    pub(crate) fn finish(mut self, want: usize, out: &mut Vec<Hit>) {
        self.rows.sort_by_key(|(id, h)| (h.time_us, *id));
        self.rows.truncate(want);
        out.extend(self.rows.into_iter().map(|(_, h)| h));
    }
}

impl Answer {
    /// Orders the hits oldest first and cuts them at `limit`, saying when more matched.
    pub(crate) fn finish(&mut self, limit: usize) {
        self.hits.sort_by_key(|h| h.time_us);
        if self.hits.len() > limit {
            self.hits.truncate(limit);
            self.truncated = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_renders_and_parses_back() {
        let a = AccountRef {
            kind: "login_user",
            key: 0xab,
        };
        assert_eq!(a.render(), "login_user:00000000000000ab");
        assert_eq!(AccountRef::parse(&a.render()), Some(a));
        assert_eq!(AccountRef::parse("nobody:00000000000000ab"), None);
        assert_eq!(AccountRef::parse("basic:ab"), None);
        assert_eq!(AccountRef::from_code(a.code(), a.key as i64), Some(a));
    }

    #[test]
    fn label_codes_round_trip() {
        for l in Label::ALL {
            assert_eq!(label_of(label_code(*l)), Some(*l));
        }
    }
}
