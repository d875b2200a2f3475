//! Live capture on the real kernel (R-CAP-1, R-CAP-2, R-CAP-3, R-CAP-7): the sensor's eBPF
//! programs attached to a veth in a network namespace, nginx serving a JSON API, curl sending
//! varied requests from another namespace. Every request must be reported exactly once with
//! the right method, path, query, status, body lengths and pairing, and the kernel must have
//! dropped nothing. Once attached the sensor holds no capability, and exiting without any
//! still detaches its programs (R-OPS-3).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use std::collections::HashMap;

use anyhow::Context as _;
use apitap_schema::{ApiEvent, BodyEncoding};
use apitap_tests::{
    Nginx, REPORT_BYTES, SERVER_PORT, Sensor, Topology, read_events, require_privileges,
    threads_with_capabilities,
};

/// Every capability set of a thread.
const ALL_SETS: [&str; 5] = ["CapInh", "CapPrm", "CapEff", "CapAmb", "CapBnd"];

/// One request the test sends and what nginx must answer.
struct Expect {
    method: &'static str,
    uri: String,
    status: u16,
    request_body: u64,
}

fn key(e: &ApiEvent) -> String {
    match &e.request.query {
        Some(q) => format!("{} {}?{q}", e.request.method, e.request.path),
        None => format!("{} {}", e.request.method, e.request.path),
    }
}

#[test]
fn live_capture_reports_every_transaction_once() -> anyhow::Result<()> {
    if !require_privileges("live_capture_reports_every_transaction_once") {
        return Ok(());
    }
    let dir = tempdir("live");
    let topo = Topology::new("live")?;
    let nginx = Nginx::start(&topo.server, &dir.join("nginx"))?;
    let mut sensor = Sensor::start(
        &topo.server,
        &topo.server_if,
        &[SERVER_PORT],
        &dir.join("sensor"),
    )?;
    // Issue 22, R-OPS-3: attached, the sensor holds no capability in any thread, while the
    // programs stay attached (links are file descriptors).
    let pid = sensor.pid().context("sensor pid")?;
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{pid}/comm"))?.trim(),
        "apitap-sensor"
    );
    let held = threads_with_capabilities(pid, &ALL_SETS)?;
    assert!(held.is_empty(), "capabilities kept after attach: {held:?}");
    let link = |topo: &Topology| -> anyhow::Result<String> {
        let out = topo
            .server
            .cmd("ip", &["link", "show", "dev", &topo.server_if])
            .output()?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    assert!(
        link(&topo)?.contains("xdp"),
        "XDP attached: {}",
        link(&topo)?
    );

    let mut expect: Vec<Expect> = Vec::new();
    let mut push = |method: &'static str, uri: String, status: u16, request_body: u64| {
        expect.push(Expect {
            method,
            uri,
            status,
            request_body,
        })
    };

    // Separate connections, one request each, distinct paths and query strings.
    for i in 0..10 {
        let uri = format!("/api/v1/users/{i}?probe=sep{i}&x=%20y");
        topo.curl(&["-o", "/dev/null", &topo.url(&uri)])?;
        push("GET", uri, 200, 0);
    }
    // Keep-alive: several requests on one connection (curl reuses it for one invocation).
    let ka: Vec<String> = (0..6)
        .map(|i| format!("/api/v1/users?page={i}&probe=ka"))
        .collect();
    let mut args: Vec<String> = vec!["-o".into(), "/dev/null".into()];
    for u in &ka {
        args.push(topo.url(u));
        args.push("-o".into());
        args.push("/dev/null".into());
    }
    args.truncate(args.len() - 2);
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    topo.curl(&argv)?;
    for u in ka {
        push("GET", u, 200, 0);
    }
    // Content-Length request body.
    let small = format!("{{\"item\":\"{}\"}}", "a".repeat(300));
    topo.curl(&[
        "-o",
        "/dev/null",
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        &small,
        &topo.url("/api/v1/orders?probe=cl"),
    ])?;
    push(
        "POST",
        "/api/v1/orders?probe=cl".into(),
        201,
        small.len() as u64,
    );
    // Chunked request body larger than one MTU.
    let big = "b".repeat(5000);
    let big_path = dir.join("big.txt");
    std::fs::write(&big_path, &big)?;
    topo.curl(&[
        "-o",
        "/dev/null",
        "-H",
        "Transfer-Encoding: chunked",
        "--data-binary",
        &format!("@{}", big_path.display()),
        &topo.url("/api/v1/orders?probe=chunked"),
    ])?;
    push("POST", "/api/v1/orders?probe=chunked".into(), 201, 5000);
    // Response larger than one MTU, plain and gzip+chunked.
    topo.curl(&["-o", "/dev/null", &topo.url("/api/v1/report?probe=plain")])?;
    push("GET", "/api/v1/report?probe=plain".into(), 200, 0);
    topo.curl(&[
        "-o",
        "/dev/null",
        "--compressed",
        &topo.url("/api/v1/report?probe=gzip"),
    ])?;
    push("GET", "/api/v1/report?probe=gzip".into(), 200, 0);
    // Other methods and statuses.
    topo.curl(&[
        "-o",
        "/dev/null",
        "-X",
        "PUT",
        "--data-binary",
        "{\"name\":\"z\"}",
        &topo.url("/api/v1/users/7?probe=put"),
    ])?;
    push("PUT", "/api/v1/users/7?probe=put".into(), 200, 12);
    topo.curl(&[
        "-o",
        "/dev/null",
        "-X",
        "DELETE",
        &topo.url("/api/v1/users/8?probe=del"),
    ])?;
    push("DELETE", "/api/v1/users/8?probe=del".into(), 200, 0);
    topo.curl(&[
        "-o",
        "/dev/null",
        "-d",
        "user=a&pass=b",
        &topo.url("/api/v1/login?probe=login"),
    ])?;
    push("POST", "/api/v1/login?probe=login".into(), 401, 13);
    topo.curl(&["-o", "/dev/null", &topo.url("/missing?probe=404")])?;
    push("GET", "/missing?probe=404".into(), 404, 0);
    topo.curl(&[
        "-o",
        "/dev/null",
        "-I",
        &topo.url("/api/v1/report?probe=head"),
    ])?;
    push("HEAD", "/api/v1/report?probe=head".into(), 200, 0);

    // Wait until the sensor reported as many events as requests were sent, then stop it.
    let metrics = sensor.wait_for_metric(
        "apitap_sensor_events_total",
        expect.len() as u64,
        std::time::Duration::from_secs(15),
    )?;
    sensor.stop()?;
    // Without any capability, exiting still detached the programs.
    assert!(
        !link(&topo)?.contains("xdp"),
        "XDP left attached: {}",
        link(&topo)?
    );
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&sensor.events)?.permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the event file holds payloads");
    }
    let events = read_events(&sensor.events)?;
    let log = nginx.access_log()?;

    // Kernel: nothing dropped, and records were produced.
    let drops: Vec<_> = metrics
        .iter()
        .filter(|(k, v)| k.starts_with("apitap_kernel_dropped_packets_total") && *v > 0)
        .collect();
    assert!(drops.is_empty(), "kernel drops: {drops:?}");
    let records = metrics
        .iter()
        .find(|(k, _)| k == "apitap_kernel_records_total")
        .map(|m| m.1);
    assert!(records.is_some_and(|r| r > 0), "no records: {metrics:?}");
    let gaps = metrics
        .iter()
        .find(|(k, _)| k == "apitap_decode_stream_gaps_total")
        .map(|m| m.1);
    assert_eq!(gaps, Some(0), "stream gaps");

    // Every request exactly once.
    let mut by_key: HashMap<String, Vec<&ApiEvent>> = HashMap::new();
    for e in &events {
        by_key.entry(key(e)).or_default().push(e);
    }
    assert_eq!(
        events.len(),
        expect.len(),
        "event count; keys: {:?}",
        by_key.keys().collect::<Vec<_>>()
    );
    for x in &expect {
        let k = format!("{} {}", x.method, x.uri);
        let found = by_key.get(&k).map(Vec::as_slice).unwrap_or_default();
        assert_eq!(found.len(), 1, "{k}: seen {} times", found.len());
        let e = found[0];
        let resp = e
            .response
            .as_ref()
            .unwrap_or_else(|| panic!("{k}: no response ({:?})", e.anomalies));
        assert_eq!(resp.status, x.status, "{k}");
        assert_eq!(
            e.request.body.length_bytes, x.request_body,
            "{k}: request body length"
        );
        assert!(
            !e.request.body.truncated && !resp.body.truncated,
            "{k}: truncated"
        );
        assert!(e.anomalies.is_empty(), "{k}: anomalies {:?}", e.anomalies);
        assert_eq!(e.server.port, SERVER_PORT);
        assert_eq!(e.server.ip.to_string(), apitap_tests::SERVER_IP);
        assert_eq!(e.client.ip.to_string(), apitap_tests::CLIENT_IP);
        assert!(e.latency_us.is_some() && e.response_end_unix_us >= Some(e.request_start_unix_us));
        // Pairing and response size agree with nginx's own log for the same URI.
        let line = log
            .iter()
            .find(|l| l.uri == x.uri && l.method == x.method)
            .unwrap_or_else(|| panic!("{k}: not in nginx access log"));
        assert_eq!(line.status, resp.status, "{k}: status vs nginx");
        if x.method != "HEAD" && !x.uri.contains("probe=gzip") {
            assert_eq!(
                resp.body.length_bytes, line.body_bytes_sent,
                "{k}: response body vs nginx"
            );
        }
    }
    // Specific shapes.
    let plain = by_key["GET /api/v1/report?probe=plain"][0]
        .response
        .as_ref()
        .unwrap();
    assert_eq!(plain.body.length_bytes, REPORT_BYTES as u64);
    assert_eq!(plain.body.captured_bytes, REPORT_BYTES as u64);
    let gz = by_key["GET /api/v1/report?probe=gzip"][0]
        .response
        .as_ref()
        .unwrap();
    assert!(
        gz.headers
            .iter()
            .any(|h| h.name.eq_ignore_ascii_case("transfer-encoding") && h.value == "chunked")
    );
    // De-chunked, then gunzipped: the analyzer sees the JSON document itself.
    assert_eq!(gz.body.content_encoding.as_deref(), Some("gzip"));
    assert_eq!(gz.body.encoding, BodyEncoding::Utf8);
    assert_eq!(gz.body.decoded_length_bytes, Some(REPORT_BYTES as u64));
    assert_eq!(
        gz.body.data.as_bytes(),
        std::fs::read(nginx.dir.join("report.json"))?.as_slice()
    );
    assert!(
        gz.body.length_bytes < REPORT_BYTES as u64 / 2,
        "length_bytes is the compressed size"
    );
    assert!(!gz.body.truncated);
    let chunked = by_key["POST /api/v1/orders?probe=chunked"][0];
    assert_eq!(chunked.request.body.data, big);
    let head = by_key["HEAD /api/v1/report?probe=head"][0]
        .response
        .as_ref()
        .unwrap();
    assert_eq!(head.body.length_bytes, 0);
    // Keep-alive requests share one connection, in order.
    let ka: Vec<&ApiEvent> = (0..6)
        .map(|i| by_key[&format!("GET /api/v1/users?page={i}&probe=ka")][0])
        .collect();
    assert!(ka.iter().all(|e| e.connection_id == ka[0].connection_id));
    assert_eq!(
        ka.iter().map(|e| e.transaction_index).collect::<Vec<_>>(),
        (0..6).collect::<Vec<u64>>()
    );
    // Separate connections have distinct ids; event ids are unique.
    let mut ids: Vec<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), events.len());
    Ok(())
}

/// The deployment's least privilege (R-OPS-3, deploy/systemd, deploy/kubernetes): the sensor
/// runs as an unprivileged user granted only CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON (no
/// CAP_SYS_ADMIN), captures, and holds none of them once attached. The bounding set keeps the
/// three (shrinking it needs CAP_SETPCAP), which `no_new_privs` makes unusable. CAP_PERFMON is
/// needed to load: without it the verifier applies Spectre v1 masking to pointer arithmetic,
/// which it does not support on packet pointers (`R4 has pointer with unsupported alu
/// operation`) — this test is how that was found.
#[test]
fn sensor_captures_as_an_unprivileged_user_with_three_capabilities() -> anyhow::Result<()> {
    if !require_privileges("sensor_captures_as_an_unprivileged_user_with_three_capabilities") {
        return Ok(());
    }
    let dir = tempdir("unpriv");
    let topo = Topology::new("unpriv")?;
    let _nginx = Nginx::start(&topo.server, &dir.join("nginx"))?;
    let sensor_dir = dir.join("sensor");
    std::fs::create_dir_all(&sensor_dir)?;
    const NOBODY: u32 = 65534;
    std::os::unix::fs::chown(&sensor_dir, Some(NOBODY), Some(NOBODY))?;
    let caps = "-all,+bpf,+net_admin,+perfmon";
    let mut sensor = Sensor::start_wrapped(
        &topo.server,
        &topo.server_if,
        &[SERVER_PORT],
        "",
        &sensor_dir,
        &[
            "setpriv",
            &format!("--reuid={NOBODY}"),
            &format!("--regid={NOBODY}"),
            "--clear-groups",
            &format!("--inh-caps={caps}"),
            &format!("--ambient-caps={caps}"),
            &format!("--bounding-set={caps}"),
            "--",
        ],
    )?;
    let pid = sensor.pid().context("sensor pid")?;
    let held = threads_with_capabilities(pid, &ALL_SETS[..4])?;
    assert!(held.is_empty(), "capabilities kept after attach: {held:?}");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("NoNewPrivs:") && l.ends_with('1')),
        "{status}"
    );
    for i in 0..5 {
        topo.curl(&["-o", "/dev/null", &topo.url(&format!("/api/v1/users/{i}"))])?;
    }
    sensor.wait_for_metric(
        "apitap_sensor_events_total",
        5,
        std::time::Duration::from_secs(15),
    )?;
    sensor.stop()?;
    let events = read_events(&sensor.events)?;
    assert_eq!(events.len(), 5, "{}", sensor.log_text());
    Ok(())
}

fn tempdir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("apitap-test-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}
