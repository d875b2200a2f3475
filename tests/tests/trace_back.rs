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
use apitap_tests::{prc_ids, run_analyzer_on, workspace_bin};
use apitap_trace::{Query, Selector, TraceReader};
use serde_json::Value;

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

fn write_config(dir: &Path, extra: &str) -> PathBuf {
    let key = dir.join("site.key");
    private(&key, &format!("{SECRET}\n"));
    let config = dir.join("analyzer.toml");
    std::fs::write(
        &config,
        format!(
            "[labels]\nhash_key_file = {:?}\n\n[trace]\npath = {:?}\n{extra}",
            key.display().to_string(),
            dir.join("trace").display().to_string()
        ),
    )
    .unwrap();
    config
}

#[test]
fn every_question_finds_exactly_the_transactions_that_match() {
    let dir = scratch("process");
    let (events_file, events) = events(&dir);
    let config = write_config(&dir, "");
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
    let reader = TraceReader::open(&dir.join("trace")).unwrap();
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
    let dir = scratch("http");
    let (events_file, events) = events(&dir);
    let token = "a bearer token of more than 16 bytes";
    let token_file = dir.join("api.token");
    private(&token_file, token);
    let port = 20_000 + (std::process::id() % 20_000) as u16;
    let addr = format!("127.0.0.1:{port}");
    let config = write_config(
        &dir,
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
