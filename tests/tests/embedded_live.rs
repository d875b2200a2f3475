//! The embedded single-process mode on the real kernel (R-BUS-1 "embedded default"): `apitap
//! run` attaches the sensor's eBPF programs to the server's veth and analyses the events in
//! the same process over the in-memory bus, with no broker. Real nginx, real curl; on SIGTERM
//! the sensor stops, the analyzer drains the channel and writes its final summary and
//! inventory.
//!
//! Privileged; required under `CI=true`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use apitap_tests::{METRICS_ADDR, Nginx, SERVER_PORT, Topology, require_privileges, workspace_bin};

fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("apitap-embedded-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

#[test]
fn embedded_mode_captures_and_analyses_without_a_broker() -> anyhow::Result<()> {
    if !require_privileges("embedded_mode_captures_and_analyses_without_a_broker") {
        return Ok(());
    }
    let dir = tempdir("live");
    let topo = Topology::new("emb")?;
    let _nginx = Nginx::start(&topo.server, &dir.join("nginx"))?;
    let sensor_cfg = dir.join("sensor.toml");
    std::fs::write(
        &sensor_cfg,
        format!(
            "[sensor]\nid = \"embedded\"\n[capture]\ninterfaces = [\"{}\"]\nports = [{SERVER_PORT}]\n\
             [metrics]\nlisten = \"{METRICS_ADDR}\"\n",
            topo.server_if
        ),
    )?;
    let summary = dir.join("summary.json");
    let store = dir.join("inventory.db");
    let analyzer_cfg = dir.join("analyzer.toml");
    std::fs::write(
        &analyzer_cfg,
        format!(
            "[output]\nsummary_path = {:?}\nsummary_format = \"json\"\nalerts_path = {:?}\n\
             [inventory]\nstore = \"sqlite:{}\"\n",
            summary.display().to_string(),
            dir.join("alerts.jsonl").display().to_string(),
            store.display()
        ),
    )?;
    let log = dir.join("apitap.log");
    let mut child = Some(apitap_tests::spawn_embedded(
        &topo.server,
        &sensor_cfg,
        &analyzer_cfg,
        &log,
    )?);
    // Attached before the analyzer and the sensor thread started: no thread of the process
    // holds a capability (R-OPS-3, issue 22).
    let pid = child
        .as_ref()
        .map(std::process::Child::id)
        .unwrap_or_default();
    let held = apitap_tests::threads_with_capabilities(
        pid,
        &["CapInh", "CapPrm", "CapEff", "CapAmb", "CapBnd"],
    )?;
    assert!(held.is_empty(), "capabilities kept after attach: {held:?}");
    assert!(
        std::fs::read_dir(format!("/proc/{pid}/task"))?.count() > 1,
        "the check covered the analyzer's threads too"
    );

    let mut expect: BTreeMap<String, u64> = BTreeMap::new();
    for i in 0..15 {
        topo.curl(&[
            "-o",
            "/dev/null",
            &topo.url(&format!("/api/v1/users/{i}?probe=emb")),
        ])?;
        *expect.entry(format!("/api/v1/users/{i}")).or_default() += 1;
    }
    topo.curl(&[
        "-o",
        "/dev/null",
        "--data-binary",
        "{\"item\":\"x\"}",
        &topo.url("/api/v1/orders"),
    ])?;
    *expect.entry("/api/v1/orders".into()).or_default() += 1;
    let n: u64 = expect.values().sum();
    // The in-memory bus counts what the analyzer took, on the sensor's /metrics as with Kafka.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let metrics = apitap_tests::parse_metrics(&apitap_tests::sensor_http_get(
            &topo.server.name,
            "/metrics",
        )?);
        let delivered = metrics
            .iter()
            .find(|(k, _)| k == "apitap_bus_events_delivered_total")
            .map_or(0, |(_, v)| *v);
        if delivered >= n {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "apitap_bus_events_delivered_total stayed at {delivered} of {n}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
    apitap_tests::stop_child(
        "apitap",
        child.take(),
        libc::SIGTERM,
        Duration::from_secs(30),
        log_text,
    )?;

    let rows: Vec<serde_json::Value> =
        serde_json::from_str(std::fs::read_to_string(&summary)?.trim())?;
    let mut got: BTreeMap<String, u64> = BTreeMap::new();
    for r in &rows {
        *got.entry(users_folded(r["path"].as_str().unwrap_or_default()))
            .or_default() += r["requests"].as_u64().unwrap_or_default();
    }
    // The summary shows the inventory's templates (issue 22): user ids fold into one path.
    let expect: BTreeMap<String, u64> = expect.iter().fold(BTreeMap::new(), |mut m, (k, v)| {
        *m.entry(users_folded(k)).or_default() += v;
        m
    });
    assert_eq!(
        got,
        expect,
        "every request analysed once, in process: {}",
        log_text()
    );
    assert_eq!(got.values().sum::<u64>(), n);

    // The inventory store (same analyzer code as with Kafka) has the templated endpoints.
    let out = std::process::Command::new(workspace_bin("apitap-analyzer")?)
        .args(["inventory", "export", "--format", "json", "--store"])
        .arg(format!("sqlite:{}", store.display()))
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let endpoints: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout)?;
    let hits: u64 = endpoints
        .iter()
        .map(|e| e["hits"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(hits, n, "{endpoints:?}");
    let text = log_text();
    assert!(!text.contains("probe=emb"), "no event content in logs");
    assert!(text.contains("input finished"), "{text}");
    Ok(())
}

/// `/api/v1/users/<anything>` as one path: the summary lists the endpoint's template once the
/// ids fold into a parameter, and the literal paths seen before.
fn users_folded(path: &str) -> String {
    match path.strip_prefix("/api/v1/users/") {
        Some(_) => "/api/v1/users/*".to_owned(),
        None => path.to_owned(),
    }
}
