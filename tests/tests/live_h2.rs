//! HTTP/2 on the real kernel (issue 17, R-CAP-3; ALPN h2 of issue 16, R-CAP-4): nghttp2's own
//! server (`nghttpd`) and client (`nghttp`), in network namespaces.
//!
//! - Prior-knowledge h2c captured from packets (XDP/TC): every stream nghttp requested on its
//!   one connection is one event, `http_version: "2"`, with its stream id, path and the status
//!   nghttp printed.
//! - h2 over TLS (ALPN `h2`) read out of nghttpd's OpenSSL calls by the uprobes: the same
//!   plaintext goes through the same session, which recognises the connection preface.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use apitap_schema::ApiEvent;
use apitap_tests::{
    CLIENT_IP, Netns, SERVER_IP, SERVER_PORT, Sensor, Topology, make_test_certificate, read_events,
    require, require_privileges,
};

/// TLS port of nghttpd.
const TLS_PORT: u16 = 8443;

fn tool_problem() -> Option<String> {
    ["nghttpd", "nghttp"]
        .iter()
        .find(|t| {
            !Command::new(t)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .map(|t| {
            format!("`{t}` is not installed (nghttp2-server/-client; run `cargo xtask setup`)")
        })
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// nghttpd in `ns` serving `docroot` on `port` (`tls`: with the test certificate in `certs`,
/// else prior-knowledge h2c), ready when `nghttp` from the same namespace gets an answer.
fn nghttpd(ns: &Netns, docroot: &Path, port: u16, certs: Option<&Path>) -> anyhow::Result<Killed> {
    let port_s = port.to_string();
    let root = docroot.to_string_lossy().into_owned();
    let mut args = vec!["-d", &root, "-a", SERVER_IP];
    let (key, cert);
    match certs {
        Some(c) => {
            key = c.join("key.pem").to_string_lossy().into_owned();
            cert = c.join("cert.pem").to_string_lossy().into_owned();
            args.extend([port_s.as_str(), key.as_str(), cert.as_str()]);
        }
        None => args.extend(["--no-tls", port_s.as_str()]),
    }
    let child = ns
        .cmd("nghttpd", &args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting nghttpd")?;
    let server = Killed(child);
    let scheme = if certs.is_some() { "https" } else { "http" };
    let url = format!("{scheme}://{SERVER_IP}:{port}/ready.txt");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ns
        .cmd("nghttp", &["-n", &url])
        .output()
        .is_ok_and(|o| o.status.success())
    {
        if Instant::now() > deadline {
            bail!("nghttpd did not answer {url}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(server)
}

/// Runs `nghttp -v` for `paths` on one connection from the client namespace; returns the
/// status nghttp printed per stream id.
fn nghttp(topo: &Topology, base: &str, paths: &[&str]) -> anyhow::Result<BTreeMap<u32, u16>> {
    let urls: Vec<String> = paths.iter().map(|p| format!("{base}{p}")).collect();
    let mut args = vec!["-v", "-n"];
    args.extend(urls.iter().map(String::as_str));
    let out = topo
        .client
        .cmd("nghttp", &args)
        .output()
        .context("nghttp")?;
    if !out.status.success() {
        bail!("nghttp: {}", String::from_utf8_lossy(&out.stderr));
    }
    // "[  0.002] recv (stream_id=13) :status: 200"
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut statuses = BTreeMap::new();
    for l in text.lines() {
        let Some(rest) = l.split("recv (stream_id=").nth(1) else {
            continue;
        };
        if let Some((id, v)) = rest.split_once(") :status: ") {
            statuses.insert(id.parse()?, v.trim().parse()?);
        }
    }
    Ok(statuses)
}

fn docroot(dir: &Path) -> anyhow::Result<std::path::PathBuf> {
    let root = dir.join("www");
    std::fs::create_dir_all(root.join("api"))?;
    std::fs::write(root.join("ready.txt"), "ok\n")?;
    for i in 1..=5 {
        std::fs::write(
            root.join(format!("api/user{i}.json")),
            format!("{{\"id\":{i},\"name\":\"user{i}\"}}"),
        )?;
    }
    Ok(root)
}

/// Asserts that the client's events are exactly nghttp's streams.
fn assert_streams(events: &[ApiEvent], printed: &BTreeMap<u32, u16>, paths: &[&str]) {
    let mine: Vec<&ApiEvent> = events
        .iter()
        .filter(|e| e.client.ip.to_string() == CLIENT_IP)
        .collect();
    let got: BTreeMap<u32, u16> = mine
        .iter()
        .map(|e| {
            (
                e.stream_id.expect("an HTTP/2 event has its stream id"),
                e.response.as_ref().map_or(0, |r| r.status),
            )
        })
        .collect();
    assert_eq!(
        &got, printed,
        "one event per stream, statuses as nghttp printed"
    );
    assert_eq!(mine.len(), paths.len());
    let mut got_paths: Vec<&str> = mine.iter().map(|e| e.request.path.as_str()).collect();
    got_paths.sort_unstable();
    let mut want: Vec<&str> = paths.to_vec();
    want.sort_unstable();
    assert_eq!(got_paths, want);
    for e in &mine {
        assert_eq!(e.http_version, "2");
        assert_eq!(e.request.method, "GET");
        assert!(
            e.anomalies.is_empty(),
            "{}: {:?}",
            e.request.path,
            e.anomalies
        );
        assert!(mine.iter().all(|o| o.connection_id == e.connection_id));
        if let Some(r) = &e.response
            && r.status == 200
        {
            let id = e
                .request
                .path
                .trim_start_matches("/api/user")
                .trim_end_matches(".json");
            assert_eq!(
                r.body.bytes().unwrap(),
                format!("{{\"id\":{id},\"name\":\"user{id}\"}}").into_bytes()
            );
        }
    }
}

const PATHS: &[&str] = &[
    "/api/user1.json",
    "/api/user2.json",
    "/api/user3.json",
    "/api/user4.json",
    "/api/user5.json",
    "/api/missing.json",
];

/// nghttpd in the server namespace (`tls`: on [`TLS_PORT`] with the test certificate, its
/// OpenSSL traced by the uprobes; else h2c on the captured port), nghttp's [`PATHS`] on one
/// connection from the client, and the events of this test's streams.
fn run(test: &str, tag: &str, tls: bool) -> anyhow::Result<Option<Vec<ApiEvent>>> {
    if !require_privileges(test) || !require(test, "HTTP/2 test", tool_problem()) {
        return Ok(None);
    }
    let dir = std::env::temp_dir().join(format!("apitap-test-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let certs = dir.join("certs");
    make_test_certificate(&certs)?;
    let topo = Topology::new(tag)?;
    let (port, scheme, config) = if tls {
        (
            TLS_PORT,
            "https",
            "[tls]\nenabled = true\nprocesses = [\"nghttpd\"]\n",
        )
    } else {
        (SERVER_PORT, "http", "")
    };
    let _server = nghttpd(
        &topo.server,
        &docroot(&dir)?,
        port,
        tls.then_some(certs.as_path()),
    )?;
    let mut sensor = Sensor::start_with(
        &topo.server,
        &topo.server_if,
        &[SERVER_PORT],
        config,
        &dir.join("sensor"),
    )?;
    let printed = nghttp(&topo, &format!("{scheme}://{SERVER_IP}:{port}"), PATHS)?;
    assert_eq!(printed.len(), PATHS.len(), "{printed:?}");
    sensor.wait_for_metric(
        "apitap_sensor_events_total",
        PATHS.len() as u64,
        Duration::from_secs(30),
    )?;
    sensor.stop()?;
    let events: Vec<ApiEvent> = read_events(&sensor.events)?
        .into_iter()
        .filter(|e| e.tls == tls && e.server.port == port)
        .collect();
    assert_streams(&events, &printed, PATHS);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(Some(events))
}

#[test]
fn h2c_streams_from_packets_are_one_event_each() -> anyhow::Result<()> {
    run("h2c_streams_from_packets_are_one_event_each", "h2c", false)?;
    Ok(())
}

#[test]
fn h2_over_tls_from_the_uprobes_is_decoded_by_the_same_session() -> anyhow::Result<()> {
    let test = "h2_over_tls_from_the_uprobes_is_decoded_by_the_same_session";
    let Some(events) = run(test, "h2tls", true)? else {
        return Ok(());
    };
    for e in &events {
        assert_eq!(e.tls_library.as_deref(), Some("openssl"));
        assert_eq!(e.process.as_ref().map(|p| p.comm.as_str()), Some("nghttpd"));
    }
    Ok(())
}
