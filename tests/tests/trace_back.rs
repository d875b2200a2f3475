//! Trace-back on recorded captures (issue 20, R-THR-6): captures of our test API (a bulk
//! export, an ID walk, ten minutes of benign users) and of a third-party application
//! (httpbin under hydra's Basic brute force) are replayed through `apitap-sensor replay` and
//! `apitap-analyzer process` with a `[trace]` store, then every question is checked against a
//! brute-force scan of the events:
//!
//! * every PRC ID number the responses and requests carried (found by pattern and checksum
//!   in the event text, not by the labeller) finds exactly the transactions that carried it,
//!   including the bulk export's later records;
//! * every client address, every exact User-Agent and every Basic user finds exactly its
//!   transactions;
//! * the CLI (`apitap-analyzer trace`, hashing the typed value itself) and the HTTP API of
//!   `apitap-analyzer run` (`GET /v1/trace`, hashes only, behind the bearer token) answer the
//!   same; unauthenticated and value-in-the-URL requests are refused.
//!
//! Each test body runs against both stores (R-THR-6, issue 20): the embedded directory
//! (`[trace] path`) and PostgreSQL (`[trace.postgres]`, a real server started for the test
//! by [`apitap_tests::pg::PgCluster`]), so the CLI and `GET /v1/trace` are proven unchanged
//! against either. The store-level properties (time windows and limits against a brute-force
//! filter of the records written; retention by days and by bytes with evictions counted) run
//! the same way through [`apitap_trace::TraceSink`].
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use apitap_labels::{HashKey, Label};
use apitap_schema::ApiEvent;
use apitap_tests::attacks::{fixture_pcap_in, fixtures_dir, replay_to, thirdparty_dir};
use apitap_tests::pg::PgCluster;
use apitap_tests::{prc_ids, run_analyzer_on, workspace_bin};
use apitap_trace::{Query, Selector, TraceReader};
use serde_json::Value;

/// The store a test body runs against.
enum Backend {
    Embedded,
    Postgres {
        /// Kept running for the test; stopped and removed on drop.
        _cluster: PgCluster,
        url: String,
    },
}

impl Backend {
    /// PostgreSQL for `test` (a fresh cluster and database), or `None` when it cannot run
    /// here outside CI (in CI a missing PostgreSQL fails the test).
    fn postgres(test: &str) -> Option<Backend> {
        let cluster = PgCluster::start(test)?;
        let url = cluster.database("trace");
        Some(Backend::Postgres {
            _cluster: cluster,
            url,
        })
    }

    /// The `[trace]` section for a store under `dir`; the captures are from 2025, so the
    /// retention reaches back ten years (PostgreSQL partitions by the record's day and
    /// leaves out records older than the retention).
    fn config(&self, dir: &Path) -> String {
        match self {
            Backend::Embedded => format!(
                "[trace]\nretention_days = 3650\npath = {:?}\n",
                dir.join("trace").display().to_string()
            ),
            Backend::Postgres { url, .. } => {
                format!("[trace]\nretention_days = 3650\n\n[trace.postgres]\nurl = {url:?}\n")
            }
        }
    }

    fn reader(&self, dir: &Path) -> TraceReader {
        match self {
            Backend::Embedded => TraceReader::open(&dir.join("trace")).unwrap(),
            Backend::Postgres { url, .. } => TraceReader::postgres(connect(url)),
        }
    }
}

fn connect(url: &str) -> apitap_trace::Connect {
    let url = url.to_owned();
    std::sync::Arc::new(move || postgres::Client::connect(&url, postgres::NoTls))
}

const SECRET: &str = "apitap trace-back test site key";

fn private(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("apitap-trace-back-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The captures, replayed into one events file; returns it and its events.
fn events(dir: &Path) -> (PathBuf, Vec<ApiEvent>) {
    let all = dir.join("events.jsonl");
    let mut out = std::fs::File::create(&all).unwrap();
    for (fixtures, name) in [
        (fixtures_dir(), "bulk_export.pcapng"),
        (fixtures_dir(), "enum_ffuf.pcapng.gz"),
        (fixtures_dir(), "benign_10min.pcapng.gz"),
        (thirdparty_dir(), "httpbin_brute_hydra_basic.pcapng.gz"),
    ] {
        let pcap = fixture_pcap_in(&fixtures, name, dir).unwrap();
        let ev = dir.join(format!("{name}.jsonl"));
        replay_to(&pcap, &ev, "trace-back-test").unwrap();
        out.write_all(&std::fs::read(&ev).unwrap()).unwrap();
    }
    drop(out);
    let events: Vec<ApiEvent> = std::fs::read_to_string(&all)
        .unwrap()
        .lines()
        .map(|l| apitap_schema::decode_event(l.as_bytes()).unwrap())
        .collect();
    assert!(events.len() > 4000, "{} events", events.len());
    (all, events)
}

/// The text of an event the scan searches: request target, header values and bodies.
fn event_text(e: &ApiEvent) -> String {
    let mut t = format!(
        "{}?{}\n",
        e.request.path,
        e.request.query.as_deref().unwrap_or("")
    );
    for h in &e.request.headers {
        t.push_str(&h.value);
        t.push('\n');
    }
    t.push_str(&e.request.body.data);
    if let Some(r) = &e.response {
        for h in &r.headers {
            t.push_str(&h.value);
            t.push('\n');
        }
        t.push('\n');
        t.push_str(&r.body.data);
    }
    t
}

fn header<'a>(e: &'a ApiEvent, name: &str) -> Option<&'a str> {
    e.request
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value.as_str())
}

fn basic_user(e: &ApiEvent) -> Option<String> {
    use base64::Engine as _;
    let v = header(e, "authorization")?.trim();
    let (scheme, cred) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(cred.trim())
        .ok()?;
    let s = String::from_utf8(raw).ok()?;
    let (user, _) = s.split_once(':')?;
    (!user.is_empty()).then(|| user.to_owned())
}

fn all_time(selector: Selector) -> Query {
    Query {
        selector,
        since_us: 0,
        until_us: u64::MAX,
        limit: apitap_trace::MAX_LIMIT,
    }
}

fn ids(reader: &TraceReader, q: &Query) -> BTreeSet<String> {
    let a = reader.query(q).unwrap();
    assert!(!a.truncated);
    a.hits.into_iter().map(|h| h.event_id).collect()
}

/// The analyzer's configuration: the site key, the store of `backend`, then `extra` (whole
/// sections).
fn write_config(dir: &Path, backend: &Backend, extra: &str) -> PathBuf {
    let key = dir.join("site.key");
    private(&key, &format!("{SECRET}\n"));
    let config = dir.join("analyzer.toml");
    std::fs::write(
        &config,
        format!(
            "[labels]\nhash_key_file = {:?}\n\n{}\n{extra}",
            key.display().to_string(),
            backend.config(dir)
        ),
    )
    .unwrap();
    config
}

#[test]
fn every_question_finds_exactly_the_transactions_that_match() {
    every_question_finds(&Backend::Embedded, "process");
}

#[test]
fn every_question_finds_exactly_the_transactions_that_match_in_postgres() {
    let test = "every_question_finds_exactly_the_transactions_that_match_in_postgres";
    if let Some(pg) = Backend::postgres(test) {
        every_question_finds(&pg, "process-pg");
    }
}

fn every_question_finds(backend: &Backend, name: &str) {
    let dir = scratch(name);
    let (events_file, events) = events(&dir);
    let config = write_config(&dir, backend, "");
    let out = Command::new(workspace_bin("apitap-analyzer").unwrap())
        .args(["process", "--summary", "/dev/null", "--input"])
        .arg(&events_file)
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reader = backend.reader(&dir);
    let key = HashKey::from_secret(SECRET.as_bytes());
    let keyer = apitap_detect::Keyer::new(&key);

    // Values: every PRC ID in the events.
    let mut carried: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for e in &events {
        for id in prc_ids(&event_text(e)) {
            carried.entry(id).or_default().insert(e.event_id.clone());
        }
    }
    assert!(carried.len() >= 1000, "{} distinct IDs", carried.len());
    let in_bulk = carried.values().filter(|s| s.len() > 1).count();
    assert!(
        in_bulk > 100,
        "IDs seen in more than one transaction: {in_bulk}"
    );
    let mut wrong = Vec::new();
    for (id, want) in &carried {
        let h = key.hash_value(Label::PrcId, id.as_bytes());
        let got = ids(&reader, &all_time(Selector::Values(vec![h])));
        if &got != want {
            wrong.push(format!(
                "{}…: want {} got {}",
                &id[..6],
                want.len(),
                got.len()
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} IDs wrong: {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(10)]
    );

    // Addresses.
    let mut by_ip: BTreeMap<IpAddr, BTreeSet<String>> = BTreeMap::new();
    for e in &events {
        by_ip
            .entry(e.client.ip)
            .or_default()
            .insert(e.event_id.clone());
    }
    assert!(by_ip.len() > 3, "{} addresses", by_ip.len());
    for (ip, want) in &by_ip {
        let mut q = all_time(Selector::Ip(*ip));
        q.limit = apitap_trace::MAX_LIMIT;
        let a = reader.query(&q).unwrap();
        // More than the limit for the busiest addresses: the first page must be theirs.
        let got: BTreeSet<String> = a.hits.iter().map(|h| h.event_id.clone()).collect();
        if a.truncated {
            assert!(got.is_subset(want), "{ip}");
            assert_eq!(got.len(), apitap_trace::MAX_LIMIT);
        } else {
            assert_eq!(&got, want, "{ip}");
        }
    }

    // Exact User-Agents.
    let mut by_ua: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for e in &events {
        if let Some(ua) = header(e, "user-agent") {
            by_ua.entry(ua).or_default().insert(e.event_id.clone());
        }
    }
    assert!(by_ua.len() > 3, "{} User-Agents", by_ua.len());
    for (ua, want) in &by_ua {
        let q = all_time(Selector::UserAgent(keyer.user_agent_key(ua)));
        let a = reader.query(&q).unwrap();
        let got: BTreeSet<String> = a.hits.iter().map(|h| h.event_id.clone()).collect();
        if a.truncated {
            assert!(got.is_subset(want));
        } else {
            assert_eq!(&got, want, "User-Agent {ua:?}");
        }
    }

    // Accounts: hydra's Basic user names against httpbin.
    let mut by_user: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for e in &events {
        if let Some(u) = basic_user(e) {
            by_user.entry(u).or_default().insert(e.event_id.clone());
        }
    }
    assert!(!by_user.is_empty());
    for (user, want) in &by_user {
        let q = all_time(Selector::Accounts(vec![keyer.user_name_key(user)]));
        assert_eq!(&ids(&reader, &q), want, "Basic user");
    }

    // The CLI hashes a typed value itself: the ID typed with spaces, as an analyst would.
    let (id, want) = carried.iter().find(|(_, s)| s.len() > 1).unwrap();
    let typed = format!("{} {} {}", &id[..6], &id[6..14], &id[14..]);
    let cli = |args: &[&str]| -> Value {
        let out = Command::new(workspace_bin("apitap-analyzer").unwrap())
            .arg("trace")
            .arg("--config")
            .arg(&config)
            .args(args)
            .args(["--format", "json"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let answer = cli(&["--value", &typed]);
    let got: BTreeSet<String> = answer["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["event_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(&got, want);
    assert!(
        answer["hits"][0]["matched"][0]["label"] == "prc_id",
        "{answer}"
    );
    let (user, want) = by_user.iter().next().unwrap();
    let answer = cli(&["--account", user]);
    assert_eq!(answer["hits"].as_array().unwrap().len(), want.len());
    // The account as an alert renders it finds the same.
    let rendered = answer["hits"][0]["account"].as_str().unwrap().to_owned();
    assert!(rendered.starts_with("basic:"), "{rendered}");
    let again = cli(&["--account", &rendered]);
    assert_eq!(again["hits"], answer["hits"]);
    // Nothing in the table or JSON output is the typed value.
    assert!(
        !serde_json::to_string(&answer)
            .unwrap()
            .contains(user.as_str())
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn http_get(addr: &str, target: &str, token: Option<&str>) -> (u16, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-o", "-", "-w", "\n%{http_code}", "--max-time", "10"]);
    if let Some(t) = token {
        cmd.args(["-H", &format!("Authorization: Bearer {t}")]);
    }
    let out = cmd.arg(format!("http://{addr}{target}")).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

#[test]
fn the_http_api_answers_from_hashes_behind_the_token() {
    http_api_answers(&Backend::Embedded, "http");
}

#[test]
fn the_http_api_answers_from_hashes_behind_the_token_from_postgres() {
    let test = "the_http_api_answers_from_hashes_behind_the_token_from_postgres";
    if let Some(pg) = Backend::postgres(test) {
        http_api_answers(&pg, "http-pg");
    }
}

fn http_api_answers(backend: &Backend, name: &str) {
    let dir = scratch(name);
    let (events_file, events) = events(&dir);
    let token = "a bearer token of more than 16 bytes";
    let token_file = dir.join("api.token");
    private(&token_file, token);
    let port = 20_000 + (std::process::id() % 20_000) as u16 + u16::from(name.ends_with("pg"));
    let addr = format!("127.0.0.1:{port}");
    let config = write_config(
        &dir,
        backend,
        &format!(
            "\n[input]\npath = \"-\"\n\n[inventory]\nstore = {:?}\napi_listen = {addr:?}\n\
             api_token_file = {:?}\n\n[output]\nsummary_path = {:?}\n",
            format!("sqlite:{}", dir.join("inventory.db").display()),
            token_file.display().to_string(),
            dir.join("summary.txt").display().to_string(),
        ),
    );
    let (mut child, stdin) = run_analyzer_on(&config, &events_file, "warn").unwrap();

    // The busiest client of the benign capture; its transactions, once all are written.
    let key = HashKey::from_secret(SECRET.as_bytes());
    let e = events
        .iter()
        .find(|e| prc_ids(&event_text(e)).len() == 1)
        .unwrap();
    let id = prc_ids(&event_text(e)).into_iter().next().unwrap();
    let want: BTreeSet<String> = events
        .iter()
        .filter(|x| event_text(x).contains(&id))
        .map(|x| x.event_id.clone())
        .collect();
    let hash = key.hash_value(Label::PrcId, id.as_bytes()).to_string();
    let target = format!("/v1/trace?value_hash={hash}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let body = loop {
        let (code, body) = http_get(&addr, &target, Some(token));
        if code == 200 {
            let v: Value = serde_json::from_str(&body).unwrap();
            if v["hits"].as_array().unwrap().len() == want.len() {
                break v;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no complete answer: {code} {body}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let got: BTreeSet<String> = body["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["event_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(got, want);
    // Unauthenticated: refused, and nothing answered.
    let (code, body) = http_get(&addr, &target, None);
    assert_eq!(code, 401, "{body}");
    assert!(!body.contains("event_id"));
    // A value in clear is not a parameter: the API takes hashes only.
    let (code, body) = http_get(&addr, &format!("/v1/trace?value={id}"), Some(token));
    assert_eq!(code, 400, "{body}");
    assert!(!body.contains(&id));
    // Paging bound: a limit beyond the cap is the cap.
    let ip = events[0].client.ip;
    let (code, body) = http_get(&addr, &format!("/v1/trace?ip={ip}&limit=1"), Some(token));
    assert_eq!(code, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["hits"].as_array().unwrap().len(), 1);
    assert_eq!(v["truncated"], true);
    // The inventory API still answers on the same listener.
    let (code, _) = http_get(&addr, "/v1/services", Some(token));
    assert_eq!(code, 200);
    drop(stdin);
    let status = child.wait().unwrap();
    assert!(status.success());
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------------------
// Store-level properties, the same bodies over both stores through `TraceSink`.

use apitap_labels::{Direction, ValueHash};
use apitap_trace::{
    AccessRecord, AccountRef, EndpointRef, PgTraceStore, Retention, TraceSink, TraceStore,
    TracedValue,
};
use std::time::{SystemTime, UNIX_EPOCH};

/// A writer under test and how it starts a new partition (the embedded store seals by
/// wall time or size; PostgreSQL partitions by the record's day, nothing to do).
trait UnderTest: TraceSink {
    fn seal(&mut self) {}
}

impl UnderTest for TraceStore {
    fn seal(&mut self) {
        self.rotate().unwrap();
    }
}

impl UnderTest for PgTraceStore {}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

const DAY_US: u64 = 86_400_000_000;

fn endpoint(i: u64) -> EndpointRef {
    EndpointRef {
        service: "bank".into(),
        method: if i.is_multiple_of(2) { "GET" } else { "POST" }.into(),
        template: format!("/accounts/{{id}}/op{}", i % 4),
    }
}

fn value(v: u64) -> ValueHash {
    ValueHash([v as u8; 16])
}

/// Record `i` at `time_us`: 7 addresses (one IPv4-mapped), 11 accounts (every fifth record
/// has none), 3 User-Agents, 4 endpoints, two of 40 values (in both directions).
fn record(i: u64, time_us: u64) -> AccessRecord {
    let ip = if i % 7 == 6 {
        "::ffff:10.0.6.1".to_owned()
    } else {
        format!("10.0.{}.1", i % 7)
    };
    AccessRecord {
        time_us,
        event_id: format!("{i:032x}"),
        endpoint: endpoint(i),
        status: (!i.is_multiple_of(9)).then_some(200),
        client_ip: ip.parse().unwrap(),
        account: (!i.is_multiple_of(5)).then_some(AccountRef {
            kind: "jwt_sub",
            key: i % 11,
        }),
        ua_family: "curl".into(),
        ua_key: i % 3,
        records: (i % 4) as u32,
        values: vec![
            TracedValue {
                hash: value(i % 17),
                label: Label::PrcId,
                direction: Direction::Response,
            },
            TracedValue {
                hash: value(20 + i % 23),
                label: Label::Mobile,
                direction: if i.is_multiple_of(2) {
                    Direction::Request
                } else {
                    Direction::Response
                },
            },
        ],
    }
}

fn selects(s: &Selector, r: &AccessRecord) -> bool {
    let canon = |ip: IpAddr| match ip {
        IpAddr::V6(v) => v.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    match s {
        Selector::Ip(ip) => canon(*ip) == canon(r.client_ip),
        Selector::Accounts(keys) => r.account.is_some_and(|a| keys.contains(&a.key)),
        Selector::UserAgent(k) => r.ua_key == *k,
        Selector::Endpoint(e) => &r.endpoint == e,
        Selector::Values(hs) => r.values.iter().any(|v| hs.contains(&v.hash)),
    }
}

/// Time windows, limits and every selector, checked against a filter of the records
/// written (times are distinct, so the expected order is total).
fn windows_match_a_brute_force_filter<S: UnderTest>(mut store: S, reader: &TraceReader) {
    let base = now_us() - 2 * DAY_US;
    let all: Vec<AccessRecord> = (0..3000)
        .map(|i| record(i, base + i * 50_000_000))
        .collect();
    for (n, chunk) in all.chunks(500).enumerate() {
        assert_eq!(store.append_batch(chunk).unwrap(), 0);
        if n % 2 == 1 {
            store.seal();
        }
    }
    assert_eq!(store.usage().0, 3000);
    let mut selectors: Vec<Selector> = (0..7)
        .map(|i| Selector::Ip(format!("10.0.{i}.1").parse().unwrap()))
        .collect();
    selectors.push(Selector::Ip("::ffff:10.0.3.1".parse().unwrap()));
    selectors.extend((0..11).map(|k| Selector::Accounts(vec![k])));
    selectors.push(Selector::Accounts(vec![1, 2]));
    selectors.extend((0..4).map(Selector::UserAgent));
    selectors.extend((0..5).map(|i| Selector::Endpoint(endpoint(i))));
    selectors.extend((0..45).map(|v| Selector::Values(vec![value(v)])));
    selectors.push(Selector::Values(vec![value(3), value(25)]));
    let t = |i: usize| all[i].time_us;
    let windows = [
        (0, u64::MAX),
        (t(100), t(900)),
        (t(1500), t(1500)),
        (t(1499) + 1, t(1501) - 1),
        (t(2999) + 1, u64::MAX),
    ];
    let mut checked = 0;
    for s in &selectors {
        for (since, until) in windows {
            for limit in [apitap_trace::MAX_LIMIT, 7] {
                let want: Vec<&AccessRecord> = all
                    .iter()
                    .filter(|r| selects(s, r) && (since..=until).contains(&r.time_us))
                    .collect();
                let q = Query {
                    selector: s.clone(),
                    since_us: since,
                    until_us: until,
                    limit,
                };
                let a = reader.query(&q).unwrap();
                let got: Vec<&str> = a.hits.iter().map(|h| h.event_id.as_str()).collect();
                let expect: Vec<&str> = want
                    .iter()
                    .take(limit)
                    .map(|r| r.event_id.as_str())
                    .collect();
                assert_eq!(got, expect, "{s:?} {since}..{until} limit {limit}");
                assert_eq!(a.truncated, want.len() > limit, "{s:?}");
                for (h, r) in a.hits.iter().zip(&want) {
                    assert_eq!(h.time_us, r.time_us);
                    assert_eq!(h.endpoint, r.endpoint);
                    assert_eq!(h.status, r.status);
                    assert_eq!(h.account, r.account.map(|a| a.render()));
                    assert_eq!(h.records, r.records);
                    if let Selector::Values(hs) = s {
                        let mut m: Vec<(&str, &str)> =
                            h.matched.iter().map(|m| (m.label, m.direction)).collect();
                        m.sort_unstable();
                        let mut e: Vec<(&str, &str)> = r
                            .values
                            .iter()
                            .filter(|v| hs.contains(&v.hash))
                            .map(|v| {
                                (
                                    v.label.name(),
                                    match v.direction {
                                        Direction::Request => "request",
                                        Direction::Response => "response",
                                    },
                                )
                            })
                            .collect();
                        e.sort_unstable();
                        assert_eq!(m, e);
                    }
                }
                checked += 1;
            }
        }
    }
    assert!(checked > 600);
}

/// Retention by days: records of six days, reopened with three days' retention, keep every
/// record younger than three days and none older than four (partitions are dropped whole: a
/// day, or a partition by arrival), and what was dropped is counted.
fn retention_by_days<S: UnderTest>(open: &dyn Fn(u64) -> S, reader: &TraceReader) {
    let now = now_us();
    let mut s = open(10);
    let mut written = 0;
    for d in (0..6u64).rev() {
        let batch: Vec<AccessRecord> = (0..200)
            .map(|i| {
                let mut r = record(
                    d * 1000 + i,
                    now - d * DAY_US - 3_600_000_000 + i * 1_000_000,
                );
                r.client_ip = "10.9.9.9".parse().unwrap();
                r
            })
            .collect();
        assert_eq!(s.append_batch(&batch).unwrap(), 0);
        written += batch.len() as u64;
        s.seal();
    }
    drop(s);
    let mut s = open(3);
    let evicted = s.maintain(SystemTime::now()).unwrap();
    let held = s.usage().0;
    assert!(evicted.partitions >= 2, "{evicted:?}");
    assert_eq!(held + evicted.records, written, "{evicted:?} held {held}");
    let a = reader
        .query(&all_time(Selector::Ip("10.9.9.9".parse().unwrap())))
        .unwrap();
    assert_eq!(a.hits.len() as u64, held);
    for h in &a.hits {
        assert!(
            now - h.time_us < 4 * DAY_US,
            "{} days old",
            (now - h.time_us) / DAY_US
        );
    }
    let young = a
        .hits
        .iter()
        .filter(|h| now - h.time_us < 3 * DAY_US)
        .count();
    assert_eq!(
        young,
        3 * 200,
        "every record younger than the retention is kept"
    );
}

/// Retention by bytes: `days` days of `per_day` records into `budget` bytes evict the
/// oldest partitions, keep the newest day whole, stay near the budget and count what they
/// dropped.
fn retention_by_bytes<S: UnderTest>(mut s: S, reader: &TraceReader, budget: u64, per_day: u64) {
    let now = now_us();
    let days = 12u64;
    let mut written = 0u64;
    let mut evicted = apitap_trace::Evicted::default();
    for d in (0..days).rev() {
        let records: Vec<AccessRecord> = (0..per_day)
            .map(|i| {
                let mut r = record(d * per_day + i, now - d * DAY_US - i * 1_000);
                r.client_ip = "10.8.8.8".parse().unwrap();
                r
            })
            .collect();
        for chunk in records.chunks(1000) {
            assert_eq!(s.append_batch(chunk).unwrap(), 0);
            let e = s.maintain(SystemTime::now()).unwrap();
            evicted.partitions += e.partitions;
            evicted.records += e.records;
        }
        written += per_day;
        s.seal();
        let e = s.maintain(SystemTime::now()).unwrap();
        evicted.partitions += e.partitions;
        evicted.records += e.records;
    }
    let (held, bytes) = s.usage();
    assert!(evicted.partitions > 0, "{evicted:?}");
    assert_eq!(held + evicted.records, written, "{evicted:?}");
    assert!(
        bytes <= budget + budget / 4,
        "{bytes} bytes over a budget of {budget}"
    );
    let mut q = all_time(Selector::Ip("10.8.8.8".parse().unwrap()));
    q.since_us = now - DAY_US + 1;
    let newest = reader.query(&q).unwrap();
    assert_eq!(
        newest.hits.len() as u64,
        per_day,
        "the newest day is kept whole"
    );
    let mut q = all_time(Selector::Ip("10.8.8.8".parse().unwrap()));
    q.until_us = now - (days - 1) * DAY_US;
    assert!(
        reader.query(&q).unwrap().hits.is_empty(),
        "the oldest day is gone"
    );
}

fn embedded(dir: &Path, max_age_days: u64, max_bytes: u64) -> TraceStore {
    let retention = Retention {
        max_age_days,
        max_bytes,
        partition_secs: u64::MAX / 2,
    };
    TraceStore::open(&dir.join("trace"), retention).unwrap()
}

fn in_postgres(url: &str, max_age_days: u64, max_bytes: u64) -> PgTraceStore {
    let retention = Retention {
        max_age_days,
        max_bytes,
        partition_secs: 3600,
    };
    PgTraceStore::new(connect(url), retention)
}

#[test]
fn store_windows_and_limits_match_a_brute_force_filter() {
    let dir = scratch("store-windows");
    windows_match_a_brute_force_filter(
        embedded(&dir, 30, 4 << 30),
        &Backend::Embedded.reader(&dir),
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn store_windows_and_limits_match_a_brute_force_filter_in_postgres() {
    if let Some((_pg, store, reader)) = fresh_postgres("store_windows_and_limits_in_postgres") {
        windows_match_a_brute_force_filter(store, &reader);
    }
}

/// A store in a fresh PostgreSQL cluster (30 days, 4 GiB) and its reader; the cluster runs
/// while the first element lives.
fn fresh_postgres(test: &str) -> Option<(Backend, PgTraceStore, TraceReader)> {
    let pg = Backend::postgres(test)?;
    let Backend::Postgres { url, .. } = &pg else {
        return None;
    };
    let store = in_postgres(url, 30, 4 << 30);
    let reader = pg.reader(Path::new(""));
    Some((pg, store, reader))
}

#[test]
fn store_retention_by_days_and_bytes() {
    let dir = scratch("store-days");
    drop(embedded(&dir, 30, 4 << 30));
    retention_by_days(
        &|days| embedded(&dir, days, 4 << 30),
        &Backend::Embedded.reader(&dir),
    );
    let dir = scratch("store-bytes");
    retention_by_bytes(
        embedded(&dir, 30, 1 << 20),
        &Backend::Embedded.reader(&dir),
        1 << 20,
        2000,
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn store_retention_by_days_and_bytes_in_postgres() {
    let test = "store_retention_by_days_and_bytes_in_postgres";
    let Some(cluster) = PgCluster::start(test) else {
        return;
    };
    for (name, body) in [("days", 0), ("bytes", 1)] {
        let url = cluster.database(name);
        let reader = TraceReader::postgres(connect(&url));
        if body == 0 {
            retention_by_days(&|days| in_postgres(&url, days, 4 << 30), &reader);
        } else {
            retention_by_bytes(in_postgres(&url, 30, 8 << 20), &reader, 8 << 20, 5000);
        }
    }
}

/// Hostile text (a NUL in the Host header or an uninventoried path, which PostgreSQL's
/// `TEXT` cannot hold) neither fails its batch nor hides the record from its endpoint.
fn hostile_text_is_stored_and_found<S: UnderTest>(mut s: S, reader: &TraceReader) {
    let mut bad = record(1, now_us() - 1_000_000);
    bad.endpoint.service = "bank\0evil".into();
    bad.endpoint.template = "/a/\0/b".into();
    bad.ua_family = "cu\0rl".into();
    let good = record(2, now_us());
    assert_eq!(s.append_batch(&[bad.clone(), good]).unwrap(), 0);
    assert_eq!(s.usage().0, 2);
    let a = reader
        .query(&all_time(Selector::Endpoint(bad.endpoint)))
        .unwrap();
    assert_eq!(a.hits.len(), 1);
    assert_eq!(a.hits[0].event_id, bad.event_id);
}

#[test]
fn store_keeps_hostile_text() {
    let dir = scratch("store-hostile");
    hostile_text_is_stored_and_found(embedded(&dir, 30, 4 << 30), &Backend::Embedded.reader(&dir));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn store_keeps_hostile_text_in_postgres() {
    if let Some((_pg, store, reader)) = fresh_postgres("store_keeps_hostile_text_in_postgres") {
        hostile_text_is_stored_and_found(store, &reader);
    }
}

/// An unreachable PostgreSQL (nothing listening) and a hanging one (a listener that never
/// answers) never hold up the records' producer: every record handed to the writer is either
/// written or counted as dropped, here all dropped (`write_failed` while a connection attempt
/// fails, `queue_full` while the writer waits on one), and the writer stops when asked.
#[test]
fn an_unavailable_postgres_drops_and_counts_without_blocking() {
    use std::sync::atomic::Ordering::Relaxed;
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_port = dead.local_addr().unwrap().port();
    drop(dead);
    // Accepts connections (the kernel completes the handshake) and never says a word.
    let hang = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hang_port = hang.local_addr().unwrap().port();
    for port in [dead_port, hang_port] {
        let mut config: postgres::Config = format!("postgres://postgres@127.0.0.1:{port}/trace")
            .parse()
            .unwrap();
        config.connect_timeout(Duration::from_secs(1));
        let connect: apitap_trace::Connect =
            std::sync::Arc::new(move || config.connect(postgres::NoTls));
        let retention = Retention::default();
        let writer =
            apitap_trace::TraceWriter::start(PgTraceStore::new(connect, retention), 64).unwrap();
        let stats = writer.stats();
        let sent = 20_000u64;
        for i in 0..sent {
            writer.record(record(i, now_us()));
            if i % 5000 == 0 {
                // Let the writer try (and fail) a few batches in between.
                std::thread::sleep(Duration::from_millis(300));
            }
        }
        writer.finish();
        let failed = stats.records_dropped_write_failed.load(Relaxed);
        let full = stats.records_dropped_queue_full.load(Relaxed);
        assert_eq!(stats.records_written.load(Relaxed), 0, "port {port}");
        assert_eq!(
            failed + full,
            sent,
            "port {port}: {failed} failed, {full} queue full"
        );
        assert!(failed > 0, "port {port}: no batch was tried");
        assert!(full > 0, "port {port}: the queue of 64 never filled");
    }
    drop(hang);
}
