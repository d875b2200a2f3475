//! Body sampling per endpoint (issue 21) on real traffic: `tests/fixtures/pcap/
//! keepalive.pcapng` (curl → nginx on keep-alive connections, recorded by `cargo xtask
//! record-fixtures`) replayed with `payload.max_bodies_per_endpoint_per_sec = 1`. Every
//! transaction still leaves as an event with its metadata; per endpoint (server, method,
//! path with ids merged) the first body in a second is shipped and the rest are left out,
//! flagged and counted, their lengths kept.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

mod common;

use std::path::Path;

use apitap_schema::{ApiEvent, decode_event};
use apitap_sensor::config::Config;
use apitap_sensor::replay::ReplaySummary;

fn run(name: &str, payload: &str) -> (Vec<ApiEvent>, ReplaySummary) {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("replay_sampling-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = Config::parse(&format!(
        "[payload]\n{payload}\n[capture]\nports = [8080]\n"
    ))
    .unwrap();
    let (text, summary) = common::replay_fixture(&dir, "keepalive", &cfg, "sampling");
    let events = text
        .lines()
        .map(|l| decode_event(l.as_bytes()).unwrap())
        .collect();
    (events, summary)
}

fn key(e: &ApiEvent) -> String {
    format!(
        "{} {} #{}",
        e.request.method, e.request.path, e.request_start_unix_us
    )
}

#[test]
fn hot_endpoints_ship_metadata_and_one_body_a_second() {
    let (full, _) = run("full", "");
    let (sampled, summary) = run("sampled", "max_bodies_per_endpoint_per_sec = 1");
    assert_eq!(full.len(), 10);
    assert_eq!(
        sampled.len(),
        full.len(),
        "every transaction is still reported"
    );
    let out: Vec<String> = sampled
        .iter()
        .filter(|e| e.bodies_sampled_out)
        .map(|e| format!("{} {}", e.request.method, e.request.path))
        .collect();
    // All within 60 ms: the second and later of each endpoint lose their bodies.
    assert_eq!(
        out,
        [
            "POST /api/v1/orders",
            "GET /api/v1/report",
            "POST /api/v1/orders",
            "GET /api/v1/users/9",
        ]
    );
    for (f, s) in full.iter().zip(&sampled) {
        assert_eq!(key(f), key(s));
        if !s.bodies_sampled_out {
            assert_eq!(f, s, "kept events are untouched");
            continue;
        }
        let (fr, sr) = (f.response.as_ref().unwrap(), s.response.as_ref().unwrap());
        assert_eq!(fr.status, sr.status);
        assert_eq!(fr.headers, sr.headers, "metadata stays");
        assert_eq!(f.request.headers, s.request.headers);
        assert_eq!(fr.body.length_bytes, sr.body.length_bytes, "lengths stay");
        assert!(sr.body.data.is_empty() && sr.body.captured_bytes == 0 && sr.body.truncated);
        assert!(s.request.body.data.is_empty());
    }
    let sm = summary.payload.sampling.unwrap();
    assert_eq!(sm.sampled_out_events, 4);
    let not_shipped: u64 = full
        .iter()
        .zip(&sampled)
        .filter(|(_, s)| s.bodies_sampled_out)
        .map(|(f, _)| {
            f.request.body.captured_bytes + f.response.as_ref().unwrap().body.captured_bytes
        })
        .sum();
    assert_eq!(sm.sampled_out_body_bytes, not_shipped);
    assert!(not_shipped > 3474, "the report body is among them");
}
