//! Golden replay tests (R-CAP-3, R-CAP-6): pcap fixtures recorded from real clients and nginx
//! on a real kernel (`cargo xtask record-fixtures`) are decoded and compared with
//! (1) the committed expected events, byte for byte, and (2) nginx's own access log for the
//! same traffic, the ground truth for method, URI, status and response size.
//! `APITAP_UPDATE_GOLDEN=1 cargo test -p apitap-sensor --test replay_golden` rewrites (1)
//! after an intended change; (2) is never rewritten.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use std::path::{Path, PathBuf};

use apitap_decode::ReassemblyConfig;
use apitap_schema::{Anomaly, ApiEvent, SensorInfo, decode_event};
use apitap_sensor::config::{SinkKind, SinkSection};
use apitap_sensor::replay::{ReplaySummary, replay};
use apitap_sensor::sink::Sink;

fn fixtures() -> PathBuf {
    Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/pcap"
    ))
    .to_path_buf()
}

struct Log {
    method: String,
    uri: String,
    status: u16,
    body_bytes_sent: u64,
}

fn access_log(name: &str) -> Vec<Log> {
    std::fs::read_to_string(fixtures().join(format!("{name}.access.log")))
        .unwrap()
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            Log {
                method: f[0].into(),
                uri: f[1].into(),
                status: f[2].parse().unwrap(),
                body_bytes_sent: f[4].parse().unwrap(),
            }
        })
        .collect()
}

fn run(name: &str) -> (Vec<ApiEvent>, ReplaySummary) {
    let out =
        std::env::temp_dir().join(format!("apitap-golden-{name}-{}.jsonl", std::process::id()));
    let _ = std::fs::remove_file(&out);
    let mut sink = Sink::open(&SinkSection {
        kind: SinkKind::File,
        path: Some(out.clone()),
    })
    .unwrap();
    let sensor = SensorInfo {
        id: "golden".into(),
        host: "golden".into(),
        node: None,
    };
    let cfg = ReassemblyConfig {
        server_ports: vec![8080],
        ..ReassemblyConfig::default()
    };
    let summary = replay(
        &fixtures().join(format!("{name}.pcapng")),
        cfg,
        sensor,
        &mut sink,
    )
    .unwrap();
    drop(sink);
    let text = std::fs::read_to_string(&out).unwrap();
    let _ = std::fs::remove_file(&out);
    let events: Vec<ApiEvent> = text
        .lines()
        .map(|l| decode_event(l.as_bytes()).unwrap())
        .collect();

    let golden = fixtures().join(format!("{name}.events.jsonl"));
    if std::env::var_os("APITAP_UPDATE_GOLDEN").is_some() {
        std::fs::write(&golden, &text).unwrap();
    }
    let expected = std::fs::read_to_string(&golden).unwrap_or_else(|_| {
        panic!(
            "{} missing: run with APITAP_UPDATE_GOLDEN=1",
            golden.display()
        )
    });
    assert!(
        text == expected,
        "{name}: events differ from {}",
        golden.display()
    );
    (events, summary)
}

fn uri(e: &ApiEvent) -> String {
    match &e.request.query {
        Some(q) => format!("{}?{q}", e.request.path),
        None => e.request.path.clone(),
    }
}

/// Every access-log line is matched by its own clean event (same method, URI and status; and
/// for responses that are neither chunked nor preceded by `100 Continue`, which nginx counts
/// in `$body_bytes_sent`, the same body size), and no event is left over.
fn assert_matches_log(name: &str, events: &[ApiEvent]) {
    let log = access_log(name);
    assert_eq!(events.len(), log.len(), "{name}: event count vs nginx");
    let mut used = vec![false; events.len()];
    for l in &log {
        let found = events.iter().enumerate().position(|(i, e)| {
            !used[i]
                && e.request.method == l.method
                && uri(e) == l.uri
                && e.response.as_ref().is_some_and(|r| r.status == l.status)
        });
        let i = found
            .unwrap_or_else(|| panic!("{name}: no event for {} {} {}", l.method, l.uri, l.status));
        used[i] = true;
        let e = &events[i];
        let r = e.response.as_ref().unwrap();
        assert!(
            e.anomalies.is_empty(),
            "{name}: {} {:?}",
            l.uri,
            e.anomalies
        );
        let chunked = r
            .headers
            .iter()
            .any(|h| h.name.eq_ignore_ascii_case("transfer-encoding"));
        let expect = e
            .request
            .headers
            .iter()
            .any(|h| h.name.eq_ignore_ascii_case("expect"));
        if !chunked && !expect && l.method != "HEAD" {
            assert_eq!(
                r.body.length_bytes, l.body_bytes_sent,
                "{name}: {} body size",
                l.uri
            );
        }
    }
}

#[test]
fn keepalive_chunked_gzip_expect_http10() {
    let (events, s) = run("keepalive");
    assert_matches_log("keepalive", &events);
    assert_eq!(s.decode.stream_gaps, 0);
    let gz = events
        .iter()
        .find(|e| uri(e) == "/api/v1/report?gzip=1")
        .unwrap();
    assert_eq!(
        gz.response
            .as_ref()
            .unwrap()
            .body
            .content_encoding
            .as_deref(),
        Some("gzip")
    );
    assert_eq!(
        gz.response.as_ref().unwrap().body.decoded_length_bytes,
        Some(20_000)
    );
    let chunked = events
        .iter()
        .find(|e| uri(e) == "/api/v1/orders?chunked=1")
        .unwrap();
    assert_eq!(chunked.request.body.length_bytes, 6011);
    let expect = events
        .iter()
        .find(|e| uri(e) == "/api/v1/orders?expect=1")
        .unwrap();
    assert_eq!(
        expect.response.as_ref().unwrap().status,
        201,
        "final status after 100 Continue"
    );
    let h10 = events
        .iter()
        .find(|e| uri(e) == "/api/v1/users/9?http10=1")
        .unwrap();
    assert_eq!(h10.http_version, "1.0");
}

#[test]
fn pipelined_requests_pair_in_order() {
    let (events, _) = run("pipelining");
    assert_matches_log("pipelining", &events);
    // 5 then 8 requests written back to back on two connections.
    let mut conns: Vec<&str> = events.iter().map(|e| e.connection_id.as_str()).collect();
    conns.dedup();
    assert_eq!(conns.len(), 2);
    for e in &events {
        let n: u64 = e
            .request
            .query
            .as_deref()
            .unwrap()
            .trim_start_matches("pipe=")
            .parse()
            .unwrap();
        assert_eq!(
            e.transaction_index, n,
            "pipelined request paired with the wrong response"
        );
    }
}

#[test]
fn real_loss_and_retransmissions_are_recovered() {
    let (events, s) = run("lossy");
    assert_matches_log("lossy", &events);
    assert!(
        s.decode.segments_retransmitted + s.decode.segments_overlapping > 0,
        "fixture has retransmissions"
    );
    assert_eq!(s.decode.stream_gaps, 0);
}

#[test]
fn missing_segments_are_gaps_not_misattributions() {
    let (events, s) = run("missing");
    let log = access_log("missing");
    assert_eq!(s.decode.stream_gaps, 3, "three data frames were removed");
    assert!(events.len() < log.len());
    // Nothing invented: every event is a request nginx served, with nginx's status when a
    // response was reported, and every incomplete one says why.
    for e in &events {
        let l = log
            .iter()
            .find(|l| l.method == e.request.method && l.uri == uri(e))
            .expect("event not in nginx log");
        match &e.response {
            Some(r) => assert_eq!(r.status, l.status, "{}", l.uri),
            None => assert!(
                e.anomalies.contains(&Anomaly::NoResponse),
                "{:?}",
                e.anomalies
            ),
        }
    }
    // Requests lost entirely are counted, not silently dropped.
    let lost = log.len() as u64 - events.len() as u64;
    assert_eq!(s.decode.unsolicited_responses, lost);
}
