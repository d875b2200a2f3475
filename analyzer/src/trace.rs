//! Trace-back in the analyzer (R-THR-6, `docs/trace-back.md`): each analysed event becomes
//! an [`AccessRecord`] for the `apitap-trace` store (`[trace]`), and questions come from the
//! CLI (`apitap-analyzer trace`, which hashes a typed value with the site key locally) and
//! from the HTTP API (`GET /v1/trace`, which takes only keyed hashes, so no sensitive value
//! travels in a URL or lands in a proxy log).
//!
//! The record is built from what the analysis already computed: the inventory's endpoint,
//! the detections' actor keys (trusted-proxy client address, account and User-Agent keyed
//! hashes), the labeller's value hashes and the sensitive record count.

use std::net::IpAddr;
use std::sync::Arc;

use apitap_admin_http::{Handler, Request, Response};
use apitap_detect::Keyer;
use apitap_detect::actor::ActorKeys;
use apitap_labels::facts::{EventFacts, percent_decode};
use apitap_labels::{EventLabels, HashKey, Label, ValueHash};
use apitap_schema::ApiEvent;
use apitap_trace::{
    AccessRecord, AccountRef, Answer, EndpointRef, MAX_LIMIT, PgTraceStore, Query, Selector,
    TraceReader, TraceStore, TraceWriter, TracedValue, WriterStats,
};

use crate::config::{TraceConfig, TracePostgresConfig};
use crate::error::Error;

/// Hits of a question when it gives no limit.
pub const DEFAULT_LIMIT: usize = 100;

/// The analyzer's side of the store: the writer thread and its counters.
#[derive(Debug)]
pub struct Tracer {
    writer: TraceWriter,
}

impl Tracer {
    /// Opens the store of `[trace]` and starts its writer; `None` without `trace.path` or
    /// `[trace.postgres]`. An unreachable PostgreSQL does not stop the analysis: the writer
    /// retries and counts what it cannot write.
    pub fn open(config: &TraceConfig) -> Result<Option<Tracer>, Error> {
        let start = |e| Error::Start {
            what: "trace writer thread",
            source: e,
        };
        let writer = if let Some(pg) = &config.postgres {
            // Connects in the writer thread (see `PgTraceStore::new`).
            let store = PgTraceStore::new(pg_connect(pg)?, config.retention());
            tracing::info!("trace-back store in PostgreSQL");
            TraceWriter::start(store, config.queue_records).map_err(start)?
        } else if let Some(path) = &config.path {
            let store = TraceStore::open(path, config.retention()).map_err(Error::Trace)?;
            tracing::info!(path = %path.display(), "trace-back store open");
            TraceWriter::start(store, config.queue_records).map_err(start)?
        } else {
            return Ok(None);
        };
        Ok(Some(Tracer { writer }))
    }

    /// The writer's counters (for `/metrics`).
    pub fn stats(&self) -> Arc<WriterStats> {
        self.writer.stats()
    }

    /// Records one analysed event.
    pub fn record(&self, facts: &EventFacts<'_>, seen: Seen<'_>) {
        if let Some(l) = seen.labels
            && l.traced_dropped > 0
        {
            self.writer.stats().values_dropped_record_cap.fetch_add(
                u64::from(l.traced_dropped),
                std::sync::atomic::Ordering::Relaxed,
            );
        }
        self.writer.record(access_record(facts.event, seen));
    }

    /// Writes what is queued and stops the writer.
    pub fn finish(self) {
        self.writer.finish();
    }
}

/// What the analysis knew about an event.
#[derive(Debug, Clone, Copy, Default)]
pub struct Seen<'a> {
    /// The inventory's endpoint: service, method, template, operation.
    pub endpoint: Option<(&'a str, &'a str, &'a str, &'a str)>,
    /// The detections' actor keys.
    pub actor: Option<ActorKeys>,
    /// The labeller's findings.
    pub labels: Option<&'a EventLabels>,
    /// Sensitive records about others in the response.
    pub records: u32,
}

/// The access record of an event.
pub fn access_record(ev: &ApiEvent, seen: Seen<'_>) -> AccessRecord {
    let endpoint = match seen.endpoint {
        Some((service, method, template, operation)) => EndpointRef {
            service: service.to_owned(),
            method: method.to_owned(),
            template: if operation.is_empty() {
                template.to_owned()
            } else {
                format!("{template} {operation}")
            },
        },
        None => EndpointRef {
            service: ev.request.host.clone().unwrap_or_else(|| {
                std::net::SocketAddr::new(ev.server.ip, ev.server.port).to_string()
            }),
            method: ev.request.method.clone(),
            template: ev.request.path.clone(),
        },
    };
    let mut values: Vec<TracedValue> = Vec::new();
    if let Some(labels) = seen.labels {
        // Every value when the labeller collected them for trace-back; a sensor's shipped
        // labels carry only the findings' first hashes.
        for t in &labels.traced {
            values.push(TracedValue {
                hash: t.hash,
                label: t.label,
                direction: t.direction,
            });
        }
        for f in labels.findings.iter().filter(|_| labels.traced.is_empty()) {
            for h in &f.hashes {
                let v = TracedValue {
                    hash: *h,
                    label: f.label,
                    direction: f.location.direction,
                };
                if !values.contains(&v) {
                    values.push(v);
                }
            }
        }
    }
    let (client_ip, account, ua_family, ua_key) = match seen.actor {
        Some(a) => (
            a.ip,
            a.account.map(|acc| AccountRef {
                kind: acc.kind.name(),
                key: acc.key,
            }),
            a.ua.name(),
            a.ua_key,
        ),
        None => (ev.client.ip, None, "other", 0),
    };
    AccessRecord {
        time_us: ev.request_start_unix_us,
        event_id: ev.event_id.clone(),
        endpoint,
        status: ev.response.as_ref().map(|r| r.status),
        client_ip,
        account,
        ua_family: ua_family.to_owned(),
        ua_key,
        records: seen.records,
        values,
    }
}

/// A question as the CLI takes it: exactly one selector, values typed in clear are hashed
/// here with the site key.
#[derive(Debug, Clone, Default)]
pub struct Question {
    /// A sensitive value as an analyst would type it (hashed per label, locally).
    pub value: Option<String>,
    /// Restricts `value` to one label's normalisation.
    pub label: Option<Label>,
    /// A value hash (32 hex digits), as findings carry it.
    pub value_hash: Option<String>,
    /// A client address.
    pub ip: Option<IpAddr>,
    /// An account: a user name or credential value (hashed locally), or `kind:hash` as
    /// alerts render it.
    pub account: Option<String>,
    /// An exact User-Agent value (hashed locally) or its key (16 hex digits) with `ua_key`.
    pub ua: Option<String>,
    /// A User-Agent key (16 hex digits).
    pub ua_key: Option<String>,
    /// An endpoint: `METHOD service template`.
    pub endpoint: Option<String>,
    /// Earliest time, µs since the epoch.
    pub since_us: Option<u64>,
    /// Latest time, µs since the epoch.
    pub until_us: Option<u64>,
    /// Hits at most.
    pub limit: Option<usize>,
}

/// Why a question is not understood. The message never repeats a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadQuestion(pub &'static str);

/// Parses a 128-bit value hash (32 hex digits).
pub fn parse_value_hash(s: &str) -> Result<ValueHash, BadQuestion> {
    let s = s.trim();
    if s.len() != 32 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(BadQuestion("a value hash is 32 hex digits"));
    }
    let mut out = [0u8; 16];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16)
            .map_err(|_| BadQuestion("a value hash is 32 hex digits"))?;
    }
    Ok(ValueHash(out))
}

fn parse_key64(s: &str, what: &'static str) -> Result<u64, BadQuestion> {
    let s = s.trim();
    if s.len() != 16 {
        return Err(BadQuestion(what));
    }
    u64::from_str_radix(s, 16).map_err(|_| BadQuestion(what))
}

/// The hashes of a typed value: one per distinct normalisation over the labels asked (all
/// labels when none is), so `138 1234 5678`, `+8613812345678` and `13812345678` meet.
pub fn value_hashes(key: &HashKey, value: &str, label: Option<Label>) -> Vec<ValueHash> {
    let labels: Vec<Label> = match label {
        Some(l) => vec![l],
        None => Label::ALL.to_vec(),
    };
    let mut out: Vec<ValueHash> = Vec::new();
    for l in labels {
        let h = key.hash_value(l, value.as_bytes());
        if !out.contains(&h) {
            out.push(h);
        }
    }
    out
}

impl Question {
    /// The store query; `keyer` and `key` hash typed values.
    pub fn query(&self, key: &HashKey, keyer: &Keyer) -> Result<Query, BadQuestion> {
        let mut selectors = Vec::new();
        if let Some(v) = &self.value {
            selectors.push(Selector::Values(value_hashes(key, v, self.label)));
        }
        if let Some(h) = &self.value_hash {
            selectors.push(Selector::Values(vec![parse_value_hash(h)?]));
        }
        if let Some(ip) = self.ip {
            selectors.push(Selector::Ip(ip));
        }
        if let Some(a) = &self.account {
            selectors.push(Selector::Accounts(match AccountRef::parse(a) {
                Some(r) => vec![r.key],
                None => {
                    let mut keys = vec![keyer.user_name_key(a), keyer.credential_key(a)];
                    keys.dedup();
                    keys
                }
            }));
        }
        if let Some(ua) = &self.ua {
            selectors.push(Selector::UserAgent(keyer.user_agent_key(ua)));
        }
        if let Some(k) = &self.ua_key {
            selectors.push(Selector::UserAgent(parse_key64(
                k,
                "a User-Agent key is 16 hex digits",
            )?));
        }
        if let Some(e) = &self.endpoint {
            selectors.push(Selector::Endpoint(parse_endpoint(e)?));
        }
        if self.label.is_some() && self.value.is_none() {
            return Err(BadQuestion("--label only narrows --value"));
        }
        finish(selectors, self.since_us, self.until_us, self.limit)
    }
}

fn parse_endpoint(e: &str) -> Result<EndpointRef, BadQuestion> {
    let mut parts = e.splitn(3, ' ');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(m), Some(s), Some(t)) if !m.is_empty() && !s.is_empty() && !t.is_empty() => {
            Ok(EndpointRef {
                service: s.to_owned(),
                method: m.to_owned(),
                template: t.to_owned(),
            })
        }
        _ => Err(BadQuestion("an endpoint is `METHOD service template`")),
    }
}

fn finish(
    mut selectors: Vec<Selector>,
    since_us: Option<u64>,
    until_us: Option<u64>,
    limit: Option<usize>,
) -> Result<Query, BadQuestion> {
    if selectors.len() != 1 {
        return Err(BadQuestion(
            "ask exactly one of value, value_hash, ip, account, ua, ua_key, endpoint",
        ));
    }
    let since_us = since_us.unwrap_or(0);
    let until_us = until_us.unwrap_or(u64::MAX);
    if since_us > until_us {
        return Err(BadQuestion("since is after until"));
    }
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 {
        return Err(BadQuestion("limit must be at least 1"));
    }
    Ok(Query {
        selector: selectors.remove(0),
        since_us,
        until_us,
        limit: limit.min(MAX_LIMIT),
    })
}

/// Parses the query string of `GET /v1/trace`: hashes only (`value_hash`, `account` as
/// `kind:hash`, `ua_key`), or `ip`, or `service` + `method` + `template`; `since_us`,
/// `until_us`, `limit`.
pub fn http_query(query: &str) -> Result<Query, BadQuestion> {
    let mut selectors = Vec::new();
    let (mut since, mut until, mut limit) = (None, None, None);
    let (mut service, mut method, mut template) = (None, None, None);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_decode(v, true);
        let num = |what| v.parse::<u64>().map_err(|_| BadQuestion(what));
        match k {
            "value_hash" => {
                let hashes = v
                    .split(',')
                    .map(parse_value_hash)
                    .collect::<Result<Vec<_>, _>>()?;
                if hashes.len() > 64 {
                    return Err(BadQuestion("at most 64 value hashes"));
                }
                selectors.push(Selector::Values(hashes));
            }
            "ip" => selectors.push(Selector::Ip(
                v.parse().map_err(|_| BadQuestion("ip is not an address"))?,
            )),
            "account" => selectors.push(Selector::Accounts(vec![
                AccountRef::parse(&v)
                    .ok_or(BadQuestion("account is `kind:hash` as alerts render it"))?
                    .key,
            ])),
            "ua_key" => selectors.push(Selector::UserAgent(parse_key64(
                &v,
                "ua_key is 16 hex digits",
            )?)),
            "service" => service = Some(v.into_owned()),
            "method" => method = Some(v.into_owned()),
            "template" => template = Some(v.into_owned()),
            "since_us" => since = Some(num("since_us is a number")?),
            "until_us" => until = Some(num("until_us is a number")?),
            "limit" => {
                limit = Some(
                    usize::try_from(num("limit is a number")?)
                        .map_err(|_| BadQuestion("limit is a number"))?,
                )
            }
            _ => return Err(BadQuestion("unknown parameter")),
        }
    }
    match (service, method, template) {
        (None, None, None) => {}
        (Some(service), Some(method), Some(template)) => {
            selectors.push(Selector::Endpoint(EndpointRef {
                service,
                method,
                template,
            }))
        }
        _ => {
            return Err(BadQuestion(
                "an endpoint needs service, method and template",
            ));
        }
    }
    finish(selectors, since, until, limit)
}

/// Answers `GET /v1/trace` from `reader`; `None` for other paths.
pub fn answer_http(reader: &TraceReader, req: &Request) -> Option<Response> {
    if req.path() != "/v1/trace" {
        return None;
    }
    let q = match http_query(req.query()) {
        Ok(q) => q,
        Err(e) => {
            let body = serde_json::json!({ "error": e.0 }).to_string();
            return Some(Response::json(400, body));
        }
    };
    Some(match reader.query(&q) {
        Ok(answer) => Response::json(200, answer_json(&answer)),
        Err(e) => {
            // The cause names files: logged here, not answered (issue 22).
            tracing::warn!(error = %e, "trace query failed");
            Response::json(500, r#"{"error":"internal error"}"#)
        }
    })
}

/// An answer as JSON.
pub fn answer_json(answer: &Answer) -> String {
    serde_json::to_string(answer).unwrap_or_else(|_| r#"{"error":"internal error"}"#.to_owned())
}

/// A handler that answers `/v1/trace` from `reader` and everything else with `rest`.
pub fn with_trace(reader: TraceReader, rest: Handler) -> Handler {
    Arc::new(move |req: &Request| answer_http(&reader, req).unwrap_or_else(|| rest(req)))
}

/// How to reach `[trace.postgres]`: the inventory's connection rules (TLS required off
/// loopback and verified, password from an owner-only file), a 5 s connection timeout
/// unless the URL sets one.
pub fn pg_connect(pg: &TracePostgresConfig) -> Result<apitap_trace::Connect, Error> {
    use crate::inventory::store::postgres::{PgAccess, connection_config, tls_connector};
    let access = PgAccess {
        password_file: pg.password_file.as_deref(),
        ca_file: pg.ca_file.as_deref(),
        password_field: "trace.postgres.password_file",
    };
    let mut settings = connection_config(&pg.url, &access).map_err(Error::TracePostgres)?;
    if settings.get_connect_timeout().is_none() {
        settings.connect_timeout(std::time::Duration::from_secs(5));
    }
    let tls = tls_connector(&access).map_err(Error::TracePostgres)?;
    Ok(Arc::new(move || settings.connect(tls.clone())))
}

/// The reader of `[trace]`'s store; `None` when it keeps none.
pub fn reader(config: &TraceConfig) -> Result<Option<TraceReader>, Error> {
    if let Some(pg) = &config.postgres {
        return Ok(Some(TraceReader::postgres(pg_connect(pg)?)));
    }
    match &config.path {
        Some(dir) => TraceReader::open(dir).map(Some).map_err(Error::Trace),
        None => Ok(None),
    }
}

/// `apitap-analyzer trace`: answers a question from the store of `config`'s `[trace]`,
/// hashing typed values with `labels.hash_key_file`'s key.
pub fn ask(config: &crate::Config, question: &Question) -> Result<Answer, Error> {
    if config.trace.path.is_none() && config.trace.postgres.is_none() {
        return Err(Error::ConfigValue {
            field: "trace.path",
            reason: "not set (nor `[trace.postgres]`): this configuration keeps no trace-back store",
        });
    }
    let typed = question.value.is_some() || question.account.is_some() || question.ua.is_some();
    if typed && config.labels.hash_key_file.is_none() {
        return Err(Error::ConfigValue {
            field: "labels.hash_key_file",
            reason: "needed to hash a typed value the way the analyzer did",
        });
    }
    let key = crate::labelling::hash_key(&config.labels)?;
    let keyer = Keyer::new(&key);
    let query = question.query(&key, &keyer).map_err(Error::TraceQuestion)?;
    let Some(reader) = reader(&config.trace)? else {
        return Ok(Answer::default());
    };
    reader.query(&query).map_err(Error::Trace)
}

/// An answer as an aligned table, oldest first.
pub fn render_table(answer: &Answer) -> String {
    use std::fmt::Write as _;
    let header = [
        "TIME", "STATUS", "CLIENT", "ACCOUNT", "UA", "RECORDS", "ENDPOINT", "MATCHED", "EVENT",
    ];
    let rows: Vec<[String; 9]> = answer
        .hits
        .iter()
        .map(|h| {
            [
                apitap_schema::time::format_unix_us(h.time_us),
                h.status.map_or_else(|| "-".to_owned(), |s| s.to_string()),
                h.client_ip.to_string(),
                h.account.clone().unwrap_or_else(|| "-".to_owned()),
                h.ua_family.clone(),
                h.records.to_string(),
                format!(
                    "{} {} {}",
                    h.endpoint.method, h.endpoint.service, h.endpoint.template
                ),
                if h.matched.is_empty() {
                    "-".to_owned()
                } else {
                    h.matched
                        .iter()
                        .map(|m| format!("{}/{}", m.label, m.direction))
                        .collect::<Vec<_>>()
                        .join(",")
                },
                h.event_id.clone(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[&str]| {
        let mut l = String::new();
        for (i, (c, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                l.push_str(c);
            } else {
                let _ = write!(l, "{c:<w$}  ");
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&header);
    for r in &rows {
        line(&r.each_ref().map(String::as_str));
    }
    let _ = writeln!(
        out,
        "{} transaction(s){}; {} partition(s) searched",
        answer.hits.len(),
        if answer.truncated {
            ", more beyond the limit"
        } else {
            ""
        },
        answer.partitions_searched
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> HashKey {
        HashKey::from_secret(b"a site secret of 24 bytes")
    }

    #[test]
    fn typed_values_meet_their_normalised_hash() {
        let k = key();
        let stored = k.hash_value(Label::Mobile, b"13812345678");
        for typed in ["13812345678", "138 1234 5678", "+86 138-1234-5678"] {
            assert!(value_hashes(&k, typed, None).contains(&stored), "{typed}");
            assert!(value_hashes(&k, typed, Some(Label::Mobile)).contains(&stored));
        }
        assert!(!value_hashes(&k, "13812345679", None).contains(&stored));
    }

    #[test]
    fn http_questions_take_hashes_only_and_one_selector() {
        let q = http_query("ip=10.0.0.1&since_us=5&limit=3").unwrap();
        assert_eq!(q.selector, Selector::Ip("10.0.0.1".parse().unwrap()));
        assert_eq!((q.since_us, q.until_us, q.limit), (5, u64::MAX, 3));
        let h = "00112233445566778899aabbccddeeff";
        assert!(matches!(
            http_query(&format!("value_hash={h}")).unwrap().selector,
            Selector::Values(v) if v.len() == 1
        ));
        let ep = http_query("service=api&method=GET&template=%2Fa%2F%7Bid%7D").unwrap();
        assert!(matches!(ep.selector, Selector::Endpoint(e) if e.template == "/a/{id}"));
        assert_eq!(
            http_query("account=login_user:00000000000000ab")
                .unwrap()
                .selector,
            Selector::Accounts(vec![0xab])
        );
        for bad in [
            "",
            "value=13812345678",
            "ip=10.0.0.1&ua_key=0000000000000001",
            "value_hash=xyz",
            "account=bob",
            "service=api",
            "ip=10.0.0.1&limit=0",
            "ip=10.0.0.1&since_us=9&until_us=1",
        ] {
            assert!(http_query(bad).is_err(), "{bad}");
        }
        assert_eq!(
            http_query("ip=10.0.0.1&limit=99999").unwrap().limit,
            MAX_LIMIT
        );
    }
}
