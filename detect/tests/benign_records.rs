//! Benign silence for abnormal data access (issue 14): sensitive-record volume counts only
//! new data about other people. Real labeller output in, the engine's findings out.
//!
//! - a monitoring client polling one URL that returns the same 40 customer records every
//!   half second for ten minutes (2 400 polls) raises nothing;
//! - a caller whose own mobile number (sent in the request) is echoed back raises nothing;
//! - a scraper pulling 40 *different* records per request at the same rate is raised.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code
#[path = "../../labels/tests/common/mod.rs"]
mod common;

use apitap_detect::{DetectConfig, Engine, EventContext, Finding};
use apitap_labels::{HashKey, classify_event};
use common::*;

/// A GB 11643 citizen ID number with a valid check digit (ISO 7064 MOD 11-2).
fn prc_id(seq: u32) -> String {
    let body = format!(
        "110105198{:01}{:02}{:02}{:03}",
        seq % 10,
        seq % 12 + 1,
        seq % 28 + 1,
        seq % 1000
    );
    let w = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    let s: u32 = body
        .bytes()
        .zip(w)
        .map(|(b, w)| u32::from(b - b'0') * w)
        .sum();
    let check = b"10X98765432"[(s % 11) as usize] as char;
    format!("{body}{check}")
}

fn customers(first: u32) -> String {
    let rows: Vec<String> = (first..first + 40)
        .map(|i| format!(r#"{{"id":{i},"name":"客户{i}","id_card":"{}"}}"#, prc_id(i)))
        .collect();
    format!(r#"{{"items":[{}]}}"#, rows.join(","))
}

const T0: u64 = 1_704_067_200 * 1_000_000;

fn run(events: impl Iterator<Item = apitap_schema::ApiEvent>) -> Vec<Finding> {
    let mut sc = scanner();
    let mut eng =
        Engine::with_hash_key(DetectConfig::default(), &HashKey::from_secret(b"t")).unwrap();
    let mut out = Vec::new();
    let mut last_tick = 0;
    for ev in events {
        let labels = sc.label_event(&ev);
        let class = classify_event(&ev, &labels);
        eng.observe(&ev, &EventContext::from_labels(&labels, &class, None, None));
        if ev.request_start_unix_us - last_tick >= 1_000_000 {
            last_tick = ev.request_start_unix_us;
            out.extend(eng.tick(last_tick));
        }
    }
    out.extend(eng.finish());
    out.retain(|f| f.detector == apitap_detect::Detector::AbnormalAccess);
    out
}

fn polls(body: impl Fn(u64) -> String) -> impl Iterator<Item = apitap_schema::ApiEvent> {
    (0..2_400u64).map(move |i| {
        let b = body(i);
        let mut ev = event(
            "GET",
            "/api/customers",
            None,
            &[("User-Agent", "check_http/v2.3.3")],
            b"",
            Some(ok_json(&b)).as_ref().map(|(s, h, b)| (*s, *h, &b[..])),
        );
        ev.request_start_unix_us = T0 + i * 250_000;
        ev
    })
}

#[test]
fn the_same_records_polled_are_not_abnormal_access() {
    // Sanity: one response carries 40 sensitive records.
    let ev = polls(|_| customers(0)).next().unwrap();
    let l = scanner().label_event(&ev);
    assert_eq!(l.response.as_ref().unwrap().sensitive_records, 40);

    let found = run(polls(|_| customers(0)));
    assert!(found.is_empty(), "{found:#?}");
    // Two pages polled alternately: still the same records.
    let found = run(polls(|i| customers((i % 2) as u32 * 40)));
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn new_records_every_request_are_abnormal_access() {
    let found = run(polls(|i| customers(i as u32 * 40)));
    assert!(found.iter().any(|f| f.kind == "bulk_records"), "{found:#?}");
}

#[test]
fn the_callers_own_data_echoed_is_not_a_record() {
    let events = (0..2_400u64).map(|i| {
        let resp = format!(
            r#"{{"ok":true,"mobile":"1381234{:04}","id_card":"{}"}}"#,
            i,
            prc_id(i as u32)
        );
        let req_body = format!(
            r#"{{"mobile":"1381234{:04}","id_card":"{}"}}"#,
            i,
            prc_id(i as u32)
        );
        let mut ev = event(
            "POST",
            "/api/profile",
            None,
            &[("Content-Type", "application/json")],
            req_body.as_bytes(),
            Some((
                200,
                &[("Content-Type", "application/json")],
                resp.as_bytes(),
            )),
        );
        ev.request_start_unix_us = T0 + i * 250_000;
        ev
    });
    let found = run(events);
    assert!(found.is_empty(), "{found:#?}");
}
