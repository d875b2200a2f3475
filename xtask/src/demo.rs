//! The demo: real nginx in one network namespace, real curl in another, the sensor's eBPF
//! programs on the server's veth, then the captured events and the analyzer's summary.
//! Everything it creates is removed on exit, on failure and on Ctrl-C.

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context as _, bail};
use apitap_tests::{
    CLIENT_IP, Nginx, SERVER_IP, SERVER_PORT, Sensor, Topology, read_events, workspace_bin,
    workspace_root,
};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

fn check_interrupt() -> anyhow::Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted; cleaned up");
    }
    Ok(())
}

/// Runs the demo.
pub fn run() -> anyhow::Result<()> {
    // SAFETY: installing an async-signal-safe handler that only stores to an atomic.
    unsafe { libc::signal(libc::SIGINT, on_sigint as *const () as libc::sighandler_t) };
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the demo creates network namespaces and loads eBPF programs: run it as root");
    }
    let dir = workspace_root().join("target/apitap-demo");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;

    let topo = Topology::new("demo")?;
    let nginx = Nginx::start(&topo.server, &dir.join("nginx"))?;
    println!("== apitap demo ==");
    println!(
        "client {CLIENT_IP} [netns {}] --veth-- server {SERVER_IP}:{SERVER_PORT} nginx [netns {}]",
        topo.client.name, topo.server.name
    );
    let mut sensor = Sensor::start(
        &topo.server,
        &topo.server_if,
        &[SERVER_PORT],
        &dir.join("sensor"),
    )?;
    println!(
        "sensor attached to {} (XDP ingress + TC egress), capturing port {SERVER_PORT}",
        topo.server_if
    );
    check_interrupt()?;

    let body = dir.join("upload.json");
    std::fs::write(
        &body,
        format!(
            "{{\"items\":[{}]}}",
            vec!["{\"sku\":\"A-100\",\"qty\":2}"; 200].join(",")
        ),
    )?;
    let upload = format!("@{}", body.display());
    let requests: Vec<Vec<String>> = vec![
        vec![topo.url("/api/v1/users?page=1&size=20")],
        vec![
            topo.url("/api/v1/users/1001"),
            topo.url("/api/v1/users/1002"),
            topo.url("/api/v1/users/1003"),
        ],
        vec![
            "-H".into(),
            "Content-Type: application/json".into(),
            "--data-binary".into(),
            "{\"username\":\"alice\",\"password\":\"not-a-real-one\"}".into(),
            topo.url("/api/v1/login"),
        ],
        vec![
            "-H".into(),
            "Content-Type: application/json".into(),
            "--data-binary".into(),
            "{\"sku\":\"A-100\",\"qty\":1}".into(),
            topo.url("/api/v1/orders"),
        ],
        vec![
            "-H".into(),
            "Transfer-Encoding: chunked".into(),
            "-H".into(),
            "Content-Type: application/json".into(),
            "--data-binary".into(),
            upload,
            topo.url("/api/v1/orders?bulk=true"),
        ],
        vec![
            "--compressed".into(),
            topo.url("/api/v1/report?format=json"),
        ],
        vec![topo.url("/api/v1/report")],
        vec![
            "-X".into(),
            "PUT".into(),
            "--data-binary".into(),
            "{\"name\":\"Alice\"}".into(),
            topo.url("/api/v1/users/1001"),
        ],
        vec!["-X".into(), "DELETE".into(), topo.url("/api/v1/users/1002")],
        vec!["-I".into(), topo.url("/api/v1/report")],
        vec![topo.url("/admin/debug?verbose=1")],
    ];
    let mut sent = 0u64;
    for args in &requests {
        let mut full = vec!["-o", "/dev/null"];
        for a in args {
            full.push(a);
            if a.starts_with("http://") && !std::ptr::eq(a, args.last().unwrap_or(a)) {
                full.extend(["-o", "/dev/null"]);
            }
        }
        topo.curl(&full)?;
        sent += args.iter().filter(|a| a.starts_with("http://")).count() as u64;
        check_interrupt()?;
    }
    println!(
        "sent {sent} requests with curl over {} connections",
        requests.len()
    );

    let metrics =
        sensor.wait_for_metric("apitap_sensor_events_total", sent, Duration::from_secs(15))?;
    sensor.stop()?;
    let events = read_events(&sensor.events)?;

    println!("\n== captured API events ({}) ==", events.len());
    println!(
        "{:<7} {:<36} {:>6} {:>9} {:>10} {:>10}  ANOMALIES",
        "METHOD", "TARGET", "STATUS", "REQ_BYTES", "RESP_BYTES", "LATENCY_MS"
    );
    for e in &events {
        let target = match &e.request.query {
            Some(q) => format!("{}?{q}", e.request.path),
            None => e.request.path.clone(),
        };
        let (status, resp) = e.response.as_ref().map_or(("-".into(), 0), |r| {
            (r.status.to_string(), r.body.length_bytes)
        });
        println!(
            "{:<7} {:<36} {:>6} {:>9} {:>10} {:>10.3}  {:?}",
            e.request.method,
            target,
            status,
            e.request.body.length_bytes,
            resp,
            e.latency_us.unwrap_or(0) as f64 / 1000.0,
            e.anomalies
        );
    }
    if let Some(e) = events
        .iter()
        .find(|e| e.request.path == "/api/v1/orders" && e.request.query.is_none())
    {
        println!("\n== one event in full (schema {}) ==", e.schema_version);
        println!("{}", serde_json_pretty(e)?);
    }

    println!("\n== analyzer: per-endpoint summary ==");
    let analyzer = workspace_bin("apitap-analyzer")?;
    let store = format!("sqlite:{}", dir.join("inventory.db").display());
    let status = Command::new(&analyzer)
        .args(["process", "--store", &store, "--input"])
        .arg(&sensor.events)
        .env("RUST_LOG", "warn")
        .status()
        .context("running apitap-analyzer")?;
    if !status.success() {
        bail!("apitap-analyzer failed ({status})");
    }
    println!("\n== analyzer: API inventory (templated endpoints) ==");
    let status = Command::new(&analyzer)
        .args(["inventory", "list", "--store", &store])
        .env("RUST_LOG", "warn")
        .status()
        .context("running apitap-analyzer inventory list")?;
    if !status.success() {
        bail!("apitap-analyzer inventory list failed ({status})");
    }

    let get = |name: &str| metrics.iter().find(|(k, _)| k == name).map_or(0, |m| m.1);
    let drops: u64 = metrics
        .iter()
        .filter(|(k, _)| k.starts_with("apitap_kernel_dropped_packets_total"))
        .map(|m| m.1)
        .sum();
    println!("\n== sensor counters ==");
    println!(
        "kernel: {} packets seen, {} records, {} payload bytes, {} dropped | decoder: {} transactions, {} gaps | events file: {}",
        get("apitap_kernel_packets_total"),
        get("apitap_kernel_records_total"),
        get("apitap_kernel_payload_bytes_total"),
        drops,
        get("apitap_decode_transactions_total"),
        get("apitap_decode_stream_gaps_total"),
        sensor.events.display()
    );
    if events.len() as u64 != sent {
        bail!("captured {} events for {sent} requests", events.len());
    }
    drop(nginx);
    Ok(())
}

fn serde_json_pretty(e: &apitap_schema::ApiEvent) -> anyhow::Result<String> {
    let v: serde_json::Value = serde_json::from_slice(&apitap_schema::encode_event(e))?;
    Ok(serde_json::to_string_pretty(&v)?)
}
