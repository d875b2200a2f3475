//! Data minimisation at the sensor on real traffic (R-CAP-8): `tests/fixtures/pcap/
//! sensitive.pcapng` (curl → nginx, recorded by `cargo xtask record-fixtures --scenario
//! sensitive`) carries PRC ID, mobile and bank card numbers, e-mail addresses, a password, a
//! bearer token and a session cookie in query, headers, a JSON request body and a plain and a
//! gzip JSON response. Replayed with the `[payload]` modes of the sensor configuration:
//! `full` ships them (so the traffic really contains them), `labels` ships none of them but the
//! labels, counts and masked samples, `sample` ships bodies cut to `sample_bytes` and masked.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

mod common;

use std::path::{Path, PathBuf};

use apitap_schema::{ApiEvent, PayloadMode, decode_event};
use apitap_sensor::config::Config;
use apitap_sensor::replay::ReplaySummary;

/// Raw values present in the fixture's traffic.
const RAW: &[&str] = &[
    "440304198506123017",
    "310115199203054572",
    "11010519491231002X",
    "13812345678",
    "15987654321",
    "18611112222",
    "6228480402564890018",
    "6222021234567890128",
    "zhang.wei@example.com",
    "li.na@example.org",
    "Tr0ub4dor-x9Q",
    "tok_9f8e7d6c5b4a39281706",
    "sess4c0ffee5eed1234",
];

fn scratch(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("replay_minimise-{name}"));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Replays the fixture with the `[payload]` section `payload`; returns the output text.
fn run(name: &str, payload: &str) -> (String, ReplaySummary) {
    let dir = scratch(name);
    let key = dir.join("hash-key");
    std::fs::write(&key, "site-secret-for-tests\n").unwrap();
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let cfg = Config::parse(&format!(
        "[payload]\n{payload}\nhash_key_file = {:?}\n[capture]\nports = [8080]\n",
        key.display().to_string()
    ))
    .unwrap();
    common::replay_fixture(&dir, "sensitive", &cfg, "minimise")
}

fn events(text: &str) -> Vec<ApiEvent> {
    text.lines()
        .map(|l| decode_event(l.as_bytes()).unwrap())
        .collect()
}

#[test]
fn full_mode_ships_the_raw_values() {
    let (text, s) = run("full", "mode = \"full\"");
    for raw in RAW {
        assert!(text.contains(raw), "fixture lacks {raw}");
    }
    let ev = events(&text);
    assert_eq!(ev.len(), 3);
    assert!(
        ev.iter()
            .all(|e| e.payload == PayloadMode::Full && e.labels.is_none())
    );
    assert!(!text.contains("\"payload\""));
    assert_eq!(s.payload.minimised_events, 0);
    let gz = ev
        .iter()
        .find(|e| e.request.query.as_deref() == Some("gzip=1"))
        .unwrap();
    assert_eq!(
        gz.response
            .as_ref()
            .unwrap()
            .body
            .content_encoding
            .as_deref(),
        Some("gzip"),
        "one response travelled gzip-coded"
    );
}

#[test]
fn labels_mode_ships_labels_counts_and_masked_samples_only() {
    let (text, s) = run("labels", "mode = \"labels\"");
    for raw in RAW {
        assert!(!text.contains(raw), "raw value {raw} left the host");
    }
    let ev = events(&text);
    assert_eq!(ev.len(), 3);
    assert_eq!(s.events, 3);
    assert_eq!(s.payload.minimised_events, 3);
    assert_eq!(s.payload.labelled_events, 3);
    assert!(s.payload.removed_body_bytes > 2000);
    assert!(s.payload.findings["prc_id"] >= 3);
    for e in &ev {
        assert_eq!(e.payload, PayloadMode::Labels);
        assert!(e.request.body.data.is_empty() && e.request.body.captured_bytes == 0);
        let r = e.response.as_ref().unwrap();
        assert!(r.body.data.is_empty() && r.body.captured_bytes == 0);
        assert!(r.body.length_bytes > 0 && r.body.truncated);
        assert!(e.labels.is_some());
    }
    // The POST: ID number in the query and the body, mobile, card and password in the body,
    // bearer token and session cookie in the headers; the URL and headers are masked, query
    // values travel as their shape only (issue 22).
    let post = ev.iter().find(|e| e.request.method == "POST").unwrap();
    assert_eq!(post.response.as_ref().unwrap().status, 201);
    assert_eq!(post.request.body.length_bytes, 130);
    let q = post.request.query.as_deref().unwrap();
    assert_eq!(q, "sfzh=000000000000000000&page=0");
    let header = |name: &str| {
        post.request
            .headers
            .iter()
            .find(|h| h.name == name)
            .map(|h| h.value.clone())
    };
    assert_eq!(header("Authorization").as_deref(), Some("Bearer ******"));
    assert_eq!(
        header("Cookie").as_deref(),
        Some("JSESSIONID=******; lang=******")
    );
    let l = post.labels.as_deref().unwrap();
    let find = |label: &str, part: &str, path: &str| {
        l.findings
            .iter()
            .find(|f| f.label == label && f.location.part == part && f.location.path == path)
            .unwrap_or_else(|| panic!("no {label} at {part} {path}: {l:?}"))
    };
    assert_eq!(
        find("prc_id", "query_param", "sfzh").masked_sample,
        "31**************72"
    );
    assert_eq!(
        find("mobile", "json_path", "$.mobile").masked_sample,
        "138****5678"
    );
    assert_eq!(
        find("bank_card", "json_path", "$.bankCard").masked_sample,
        "6228***********0018"
    );
    assert_eq!(
        find("password", "json_path", "$.password").masked_sample,
        "******"
    );
    assert!(
        find("password", "json_path", "$.password")
            .hashes
            .is_empty()
    );
    assert_eq!(find("prc_id", "json_path", "$.idCard").hashes.len(), 1);
    assert!(l.request.fields.contains(&"$.idCard".to_owned()));
    assert_eq!(l.query_params, ["sfzh", "page"]);
    assert!(l.auth.contains(&"bearer".to_owned()));
    // Both report responses (plain and gzip) are described the same way: three records.
    for e in ev.iter().filter(|e| e.request.method == "GET") {
        let l = e.labels.as_deref().unwrap();
        let ids = l
            .findings
            .iter()
            .filter(|f| f.label == "prc_id" && f.location.path == "$.data[*].idCard")
            .map(|f| f.count)
            .sum::<u32>();
        assert_eq!(ids, 3, "{:?}", e.request.query);
        // nginx's $body_bytes_sent (access log) for the plain response (the gzip one is
        // chunked, which nginx counts too): the length as sent is kept.
        if e.request.query.as_deref() == Some("plain=1") {
            assert_eq!(e.response.as_ref().unwrap().body.length_bytes, 1005);
        }
        let resp = l.response.as_ref().unwrap();
        assert_eq!(resp.kind, "json");
        assert!(resp.fields.contains(&"$.data[*].mobile".to_owned()));
        assert!(
            l.findings
                .iter()
                .any(|f| f.label == "mobile" && f.mask.is_some()),
            "the application's own masking (186****2222) is recognised"
        );
    }
}

#[test]
fn sample_mode_bodies_are_cut_to_sample_bytes_and_masked() {
    let (text, s) = run("sample", "mode = \"sample\"\nsample_bytes = 64");
    for raw in RAW {
        assert!(!text.contains(raw), "raw value {raw} left the host");
    }
    let ev = events(&text);
    assert_eq!(ev.len(), 3);
    assert_eq!(s.payload.minimised_events, 3);
    assert_eq!(
        s.payload.labelled_events, 0,
        "attach_labels is off by default"
    );
    for e in &ev {
        assert_eq!(e.payload, PayloadMode::Sample);
        assert!(e.labels.is_none());
        for b in [&e.request.body, &e.response.as_ref().unwrap().body] {
            assert!(b.captured_bytes <= 64, "{}", b.captured_bytes);
            assert_eq!(
                b.truncated,
                b.length_bytes > 64 || b.content_encoding.is_some()
            );
        }
    }
    let post = ev.iter().find(|e| e.request.method == "POST").unwrap();
    let body = String::from_utf8(post.request.body.bytes().unwrap()).unwrap();
    assert!(body.starts_with("{\"name\":\""), "{body}");
    assert!(body.contains("\"idCard\":\"44**************17\""), "{body}");
    let (text, s) = run(
        "sample-labels",
        "mode = \"sample\"\nsample_bytes = 64\nattach_labels = true",
    );
    assert_eq!(s.payload.labelled_events, 3);
    assert!(events(&text).iter().all(|e| e.labels.is_some()));
}
