//! End-to-end tests of `apitap-analyzer process`: the real binary on a JSON-lines fixture
//! built from `apitap_schema` structs plus garbage lines.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use apitap_schema::test_support::EventBuilder;
use apitap_schema::{Anomaly, ApiEvent, Body, encode_event};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_apitap-analyzer");
/// A value that appears only inside event contents; it must never reach the logs.
const SECRET: &str = "hunter2-secret";

fn scratch_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("process_cli-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `method path` from `client` at `start_us` (its id derived from both), carrying [`SECRET`]
/// in the query, an `Authorization` header and the request body; answered
/// `(status, latency)`; `bodies`: the (request, response) body lengths as sent.
#[allow(clippy::too_many_arguments)]
fn event(
    host: Option<&str>,
    method: &str,
    path: &str,
    client: [u8; 4],
    start_us: u64,
    status_latency_us: Option<(u16, u64)>,
    bodies: (u64, u64),
    anomalies: Vec<Anomaly>,
) -> ApiEvent {
    let b = EventBuilder::new(method, path)
        .event_id(format!("{start_us:032x}"))
        .connection_id(format!("{:016x}", u32::from_be_bytes(client)))
        .sensor("sensor-1", "node-1")
        .at_us(start_us)
        .client_ip(client)
        .client_port(50_000)
        .server("192.168.1.10:8080")
        .query(format!("token={SECRET}"))
        .header("Authorization", format!("Bearer {SECRET}"))
        .body_raw(Body::from_bytes(SECRET.as_bytes(), bodies.0))
        .anomalies(anomalies);
    let b = match host {
        Some(h) => b.host(h),
        None => b.no_host(),
    };
    match status_latency_us {
        Some((status, latency)) => b
            .status(status)
            .latency_us(latency)
            .response_body_raw(Body::from_bytes(b"{}", bodies.1)),
        None => b.no_response(),
    }
    .build()
}

/// Five valid events on three endpoints, plus one bad line of each kind and blank lines.
fn fixture() -> Vec<u8> {
    let api = Some("api.example.com");
    let t0 = 1_700_000_000_000_000;
    let events = [
        event(
            api,
            "GET",
            "/v1/users",
            [10, 0, 0, 1],
            t0 + 2_000_000,
            Some((200, 1_000)),
            (0, 100),
            vec![],
        ),
        event(
            api,
            "GET",
            "/v1/users",
            [10, 0, 0, 2],
            t0,
            Some((200, 2_000)),
            (0, 200),
            vec![],
        ),
        event(
            api,
            "GET",
            "/v1/users",
            [10, 0, 0, 1],
            t0 + 1_000_000,
            Some((404, 3_000)),
            (0, 50),
            vec![],
        ),
        event(
            api,
            "POST",
            "/v1/login",
            [10, 0, 0, 3],
            t0,
            None,
            (40, 0),
            vec![Anomaly::NoResponse],
        ),
        event(
            None,
            "GET",
            "/health",
            [10, 0, 0, 4],
            t0,
            Some((503, 500)),
            (0, 0),
            vec![Anomaly::RequestGap],
        ),
    ];
    let mut out = Vec::new();
    for e in &events {
        out.extend(encode_event(e));
        out.push(b'\n');
    }
    let full = encode_event(&events[3]);
    let mut v2: Value = serde_json::from_slice(&full).unwrap();
    v2["schema_version"] = "2.0".into();
    for bad in [
        format!("this is not json {SECRET}").into_bytes(),
        full[..full.len() - 10].to_vec(),
        v2.to_string().into_bytes(),
        format!(r#"{{"schema_version":"1.0","password":"{SECRET}"}}"#).into_bytes(),
        b"   ".to_vec(),
        Vec::new(),
    ] {
        out.extend(bad);
        out.push(b'\n');
    }
    out
}

fn run(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .env("RUST_LOG", "info")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(input).unwrap();
    }
    child.wait_with_output().unwrap()
}

fn row<'a>(rows: &'a [Value], service: &str, method: &str, path: &str) -> &'a Value {
    rows.iter()
        .find(|r| r["service"] == service && r["method"] == method && r["path"] == path)
        .unwrap_or_else(|| panic!("no row {service} {method} {path} in {rows:?}"))
}

fn check_summary(rows: &[Value]) {
    assert_eq!(rows.len(), 3, "{rows:?}");
    // Sorted by service, path, method.
    let keys: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r["service"].as_str().unwrap(), r["path"].as_str().unwrap()))
        .collect();
    assert_eq!(
        keys,
        [
            ("192.168.1.10:8080", "/health"),
            ("api.example.com", "/v1/login"),
            ("api.example.com", "/v1/users"),
        ]
    );

    let users = row(rows, "api.example.com", "GET", "/v1/users");
    assert_eq!(users["requests"], 3);
    assert_eq!(users["status_2xx"], 2);
    assert_eq!(users["status_4xx"], 1);
    assert_eq!(users["no_response"], 0);
    assert_eq!(users["distinct_clients"], 2);
    assert_eq!(users["distinct_clients_estimated"], false);
    assert_eq!(users["latency_samples"], 3);
    assert_eq!(users["latency_p50_ms"], 2.0);
    assert_eq!(users["latency_max_ms"], 3.0);
    assert_eq!(users["response_body_bytes"], 350);
    assert_eq!(users["request_body_bytes"], SECRET.len() * 3);
    assert_eq!(users["first_seen_unix_us"], 1_700_000_000_000_000u64);
    assert_eq!(users["last_seen_unix_us"], 1_700_000_002_000_000u64);

    let login = row(rows, "api.example.com", "POST", "/v1/login");
    assert_eq!(login["requests"], 1);
    assert_eq!(login["no_response"], 1);
    assert_eq!(login["latency_samples"], 0);
    assert_eq!(login["latency_p50_ms"], Value::Null);
    assert_eq!(login["request_body_bytes"], 40);

    let health = row(rows, "192.168.1.10:8080", "GET", "/health");
    assert_eq!(health["status_5xx"], 1);
    assert_eq!(health["latency_max_ms"], 0.5);
}

fn check_stats(stderr: &str) {
    assert!(
        !stderr.contains(SECRET),
        "a secret reached the logs:\n{stderr}"
    );
    let stats = stderr
        .lines()
        .find(|l| l.contains("input finished"))
        .unwrap_or_else(|| panic!("no stats line in:\n{stderr}"));
    for field in [
        "events=5",
        "blank_lines=2",
        "bad_lines=4",
        "bad_not_json=1",
        "bad_truncated_json=1",
        "bad_unsupported_version=1",
        "bad_invalid_event=1",
        "bad_too_long=0",
        "anomalies=no_response=1,request_gap=1",
    ] {
        assert!(stats.contains(field), "{field} missing from {stats}");
    }
    // Each bad line is logged with its number and cause.
    for (line, cause) in [
        (6, "not_json"),
        (7, "truncated_json"),
        (8, "unsupported_version"),
    ] {
        assert!(
            stderr
                .lines()
                .any(|l| l.contains(&format!("line={line}")) && l.contains(cause)),
            "line {line} ({cause}) not logged:\n{stderr}"
        );
    }
}

#[test]
fn file_input_json_summary_to_file_and_empty_alerts() {
    let dir = scratch_dir("file");
    let input = dir.join("events.jsonl");
    std::fs::write(&input, fixture()).unwrap();
    let summary = dir.join("summary.json");
    let alerts = dir.join("alerts.jsonl");
    std::fs::write(&alerts, "stale content from an earlier run\n").unwrap();

    let out = run(
        &[
            "process",
            "--input",
            input.to_str().unwrap(),
            "--summary",
            summary.to_str().unwrap(),
            "--alerts",
            alerts.to_str().unwrap(),
            "--format",
            "json",
        ],
        None,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}:\n{stderr}", out.status);
    assert!(
        out.stdout.is_empty(),
        "summary went to a file, stdout stays empty"
    );

    let rows: Vec<Value> = serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
    check_summary(&rows);
    assert_eq!(
        std::fs::metadata(&alerts).unwrap().len(),
        0,
        "alerts file is truncated"
    );
    check_stats(&stderr);
}

#[test]
fn stdin_input_json_summary_to_stdout() {
    let out = run(
        &["process", "--input", "-", "--format", "json"],
        Some(&fixture()),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}:\n{stderr}", out.status);
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    check_summary(&rows);
    check_stats(&stderr);
}

#[test]
fn default_table_output() {
    let out = run(&["process", "--input", "-"], Some(&fixture()));
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(lines[0].starts_with("SERVICE"), "{text}");
    assert!(lines[1].starts_with("192.168.1.10:8080  GET"), "{text}");
    assert!(lines[3].contains("/v1/users"), "{text}");
    assert!(lines[3].contains("2023-11-14T22:13:20Z"), "{text}");
    assert!(!text.contains(SECRET));
}

#[test]
fn overlong_line_is_bad_and_the_rest_is_read() {
    let mut input = vec![b'['; 17 * 1024 * 1024];
    input.push(b'\n');
    input.extend(fixture());
    let out = run(
        &["process", "--input", "-", "--format", "json"],
        Some(&input),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("bad_too_long=1"), "{stderr}");
    assert!(stderr.contains("events=5"), "{stderr}");
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    check_summary(&rows);
}

#[test]
fn empty_input_gives_an_empty_summary() {
    let out = run(&["process", "--input", "-", "--format", "json"], Some(b""));
    assert!(out.status.success());
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "[]\n");
}

#[test]
fn missing_input_file_fails() {
    let out = run(
        &["process", "--input", "/nonexistent/apitap/events.jsonl"],
        None,
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot open input"), "{stderr}");
}
