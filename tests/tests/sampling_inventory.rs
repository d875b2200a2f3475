//! Body sampling (issue 21) does not change the inventory: the real capture
//! `tests/fixtures/pcap/keepalive.pcapng` replayed by the sensor binary with and without
//! `payload.max_bodies_per_endpoint_per_sec = 1`, each event file processed by the analyzer
//! binary into its own store: the same endpoints, templates, hits, statuses and labels, while
//! the sampled run shipped fewer body bytes. Events without bodies count as traffic, not as
//! observations of an empty body.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use std::process::Command;

use apitap_tests::{output_of, read_events, workspace_bin, workspace_root};

/// Runs `cmd`; its stdout, or a failure with its stderr.
fn ok(cmd: &mut Command) -> Vec<u8> {
    output_of(cmd).unwrap()
}

fn replay_and_inventory(dir: &std::path::Path, payload: &str) -> (serde_json::Value, u64) {
    std::fs::create_dir_all(dir).unwrap();
    let cfg = dir.join("sensor.toml");
    std::fs::write(
        &cfg,
        format!("[capture]\nports = [8080]\n[payload]\n{payload}\n"),
    )
    .unwrap();
    let events = dir.join("events.jsonl");
    let _ = std::fs::remove_file(&events);
    ok(Command::new(workspace_bin("apitap-sensor").unwrap())
        .arg("replay")
        .arg("--config")
        .arg(&cfg)
        .arg("--events-file")
        .arg(&events)
        .arg(workspace_root().join("tests/fixtures/pcap/keepalive.pcapng")));
    let shipped: u64 = read_events(&events)
        .unwrap()
        .iter()
        .map(|e| {
            e.request.body.captured_bytes + e.response.as_ref().map_or(0, |r| r.body.captured_bytes)
        })
        .sum();
    let store = format!("sqlite:{}", dir.join("inventory.db").display());
    let _ = std::fs::remove_file(dir.join("inventory.db"));
    let analyzer = workspace_bin("apitap-analyzer").unwrap();
    ok(Command::new(&analyzer)
        .args(["process", "--input"])
        .arg(&events)
        .args(["--store", &store, "--summary"])
        .arg(dir.join("summary.json")));
    let out = ok(Command::new(&analyzer).args([
        "inventory",
        "list",
        "--store",
        &store,
        "--format",
        "json",
    ]));
    (serde_json::from_slice(&out).unwrap(), shipped)
}

#[test]
fn sampled_bodies_leave_the_inventory_unchanged() {
    let dir = std::env::temp_dir().join(format!("apitap-sampling-inv-{}", std::process::id()));
    let (full, full_bytes) = replay_and_inventory(&dir.join("full"), "");
    let (sampled, sampled_bytes) =
        replay_and_inventory(&dir.join("sampled"), "max_bodies_per_endpoint_per_sec = 1");
    assert!(full.as_array().is_some_and(|a| a.len() >= 4), "{full}");
    assert_eq!(full, sampled);
    assert!(
        sampled_bytes + 3474 <= full_bytes,
        "sampling shipped {sampled_bytes} of {full_bytes} body bytes"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
