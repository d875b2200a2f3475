//! HTTP/2 and gRPC-Web on the real kernel (issue 17, R-CAP-3; ALPN h2 of issue 16, R-CAP-4): nghttp2's own
//! server (`nghttpd`) and client (`nghttp`), in network namespaces.
//!
//! - Prior-knowledge h2c captured from packets (XDP/TC): every stream nghttp requested on its
//!   one connection is one event, `http_version: "2"`, with its stream id, path and the status
//!   nghttp printed.
//! - h2 over TLS (ALPN `h2`) read out of nghttpd's OpenSSL calls by the uprobes: the same
//!   plaintext goes through the same session, which recognises the connection preface.
//! - gRPC (grpcio server and client) and gRPC-Web (sonora 0.2.3 under hypercorn; binary and
//!   text, HTTP/1.1 and h2c): one event per call with the client's counts.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use apitap_schema::ApiEvent;
use apitap_tests::{
    CLIENT_IP, Killed, Netns, SERVER_IP, SERVER_PORT, Sensor, Topology, make_test_certificate,
    read_events, require, require_privileges,
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
/// `extra` are more nghttp options (`-u`: `Upgrade: h2c`); also returns nghttp's output.
fn nghttp(
    topo: &Topology,
    base: &str,
    paths: &[&str],
    extra: &[&str],
) -> anyhow::Result<(BTreeMap<u32, u16>, String)> {
    let urls: Vec<String> = paths.iter().map(|p| format!("{base}{p}")).collect();
    let mut args = vec!["-v", "-n"];
    args.extend(extra);
    args.extend(urls.iter().map(String::as_str));
    let out = topo
        .client
        .cmd("nghttp", &args)
        .output()
        .context("nghttp")?;
    if !out.status.success() {
        bail!("nghttp: {}", String::from_utf8_lossy(&out.stderr));
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    Ok((printed_statuses(&text)?, text))
}

/// The status `nghttp -v` printed per stream id: "[  0.002] recv (stream_id=13) :status: 200".
fn printed_statuses(text: &str) -> anyhow::Result<BTreeMap<u32, u16>> {
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
/// connection from the client, and the events of this test's streams with the sensor's
/// metrics.
type Metrics = Vec<(String, u64)>;
fn run(test: &str, tag: &str, tls: bool) -> anyhow::Result<Option<(Vec<ApiEvent>, Metrics)>> {
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
    let (printed, _) = nghttp(&topo, &format!("{scheme}://{SERVER_IP}:{port}"), PATHS, &[])?;
    assert_eq!(printed.len(), PATHS.len(), "{printed:?}");
    sensor.wait_for_metric(
        "apitap_sensor_events_total",
        PATHS.len() as u64,
        Duration::from_secs(30),
    )?;
    let metrics = sensor.metrics()?;
    sensor.stop()?;
    let events: Vec<ApiEvent> = read_events(&sensor.events)?
        .into_iter()
        .filter(|e| e.tls == tls && e.server.port == port)
        .collect();
    assert_streams(&events, &printed, PATHS);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(Some((events, metrics)))
}

#[test]
fn h2c_streams_from_packets_are_one_event_each() -> anyhow::Result<()> {
    let Some((_, m)) = run("h2c_streams_from_packets_are_one_event_each", "h2c", false)? else {
        return Ok(());
    };
    // The HTTP/2 decoder's counters, summed over connections (issue 17).
    let h2 = |n: &str| apitap_tests::metric(&m, &format!("apitap_decode_h2_{n}_total"));
    assert!(h2("streams") >= PATHS.len() as u64, "{m:?}");
    assert_eq!((h2("framing_errors"), h2("hpack_errors")), (0, 0));
    Ok(())
}

#[test]
fn h2_over_tls_from_the_uprobes_is_decoded_by_the_same_session() -> anyhow::Result<()> {
    let test = "h2_over_tls_from_the_uprobes_is_decoded_by_the_same_session";
    let Some((events, m)) = run(test, "h2tls", true)? else {
        return Ok(());
    };
    // The TLS sessions' HTTP/2 counters are exported under `apitap_tls_decode_h2_*`.
    let h2 = |n: &str| apitap_tests::metric(&m, &format!("apitap_tls_decode_h2_{n}_total"));
    assert!(h2("streams") >= PATHS.len() as u64, "{m:?}");
    assert!(h2("header_blocks") >= 2 * PATHS.len() as u64, "{m:?}");
    for e in &events {
        assert_eq!(e.tls_library.as_deref(), Some("openssl"));
        assert_eq!(e.process.as_ref().map(|p| p.comm.as_str()), Some("nghttpd"));
    }
    Ok(())
}

/// What the gRPC client printed for one call: method, status, (request, response) messages.
type Reported = (String, u32, Option<(u32, u32)>);

/// A gRPC server (grpcio) on the captured port in the server namespace, with the stubs
/// generated from `bank.proto` into a fresh directory.
struct GrpcLab {
    topo: Topology,
    dir: std::path::PathBuf,
    fixtures: std::path::PathBuf,
    /// The client waits for this file (in `dir`) after its first calls.
    pause: Option<&'static str>,
    _server: Option<Killed>,
}

impl GrpcLab {
    fn start(tag: &str, pause: Option<&'static str>) -> anyhow::Result<GrpcLab> {
        let mut lab = GrpcLab::stubs(tag, pause)?;
        let port = SERVER_PORT.to_string();
        let server = lab
            .py(&lab.topo.server, "grpc_server.py", &[&port, "120"])
            .stdout(Stdio::null())
            .spawn()?;
        lab._server = Some(Killed(server));
        wait_listening(&lab.topo, "the gRPC server")?;
        Ok(lab)
    }

    /// sonora's gRPC-Web WSGI app (`grpcweb_app.py`) under hypercorn on the captured port
    /// (HTTP/1.1 and h2c on one port).
    fn web(tag: &str) -> anyhow::Result<GrpcLab> {
        let mut lab = GrpcLab::stubs(tag, None)?;
        let path = format!("{}:{}", lab.dir.display(), lab.fixtures.display());
        lab._server = Some(hypercorn(&lab.topo.server, &path, "grpcweb_app:app")?);
        wait_listening(&lab.topo, "the gRPC-Web server")?;
        Ok(lab)
    }

    /// The namespaces and the stubs, no server yet.
    fn stubs(tag: &str, pause: Option<&'static str>) -> anyhow::Result<GrpcLab> {
        let dir = std::env::temp_dir().join(format!("apitap-test-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let fixtures = apitap_tests::workspace_root().join("tests/fixtures/h2");
        let out = Command::new("python3")
            .args(["-m", "grpc_tools.protoc", "-I"])
            .arg(&fixtures)
            .arg(format!("--python_out={}", dir.display()))
            .arg(format!("--grpc_python_out={}", dir.display()))
            .arg(fixtures.join("bank.proto"))
            .output()?;
        if !out.status.success() {
            bail!("protoc: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(GrpcLab {
            topo: Topology::new(tag)?,
            dir,
            fixtures,
            pause,
            _server: None,
        })
    }

    /// The sensor capturing the server's port from packets.
    fn sensor(&self) -> anyhow::Result<Sensor> {
        Sensor::start_with(
            &self.topo.server,
            &self.topo.server_if,
            &[SERVER_PORT],
            "",
            &self.dir.join("sensor"),
        )
    }

    /// `python3 <fixture script> args` in `ns` with the stubs and the server's address.
    fn py(&self, ns: &Netns, script: &str, args: &[&str]) -> Command {
        let mut c = ns.cmd("env", &[]);
        c.arg(format!("PYTHONPATH={}", self.dir.display()))
            .arg(format!("APITAP_GRPC_HOST={SERVER_IP}"));
        if let Some(p) = self.pause {
            c.arg(format!(
                "APITAP_GRPC_PAUSE_FILE={}",
                self.dir.join(p).display()
            ));
        }
        c.arg("python3").arg(self.fixtures.join(script)).args(args);
        c
    }
}

/// Waits (at most 20 s) until `what` accepts TCP connections on the server's port.
fn wait_listening(topo: &Topology, what: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !topo
        .client
        .cmd(
            "bash",
            &["-c", &format!("echo > /dev/tcp/{SERVER_IP}/{SERVER_PORT}")],
        )
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
    {
        if Instant::now() > deadline {
            bail!("{what} did not listen");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

fn grpc_problem() -> Option<String> {
    let ok = Command::new("python3")
        .args(["-c", "import grpc, grpc_tools"])
        .output()
        .is_ok_and(|o| o.status.success());
    (!ok).then(|| "grpcio and grpcio-tools are needed (run `cargo xtask setup`)".to_owned())
}

/// A real gRPC server and client (Python grpcio, `tests/fixtures/h2/grpc_*.py`; the stubs are
/// generated from `bank.proto` here): unary calls, a NOT_FOUND, server-, client- and
/// bidi-streaming on one channel (one connection), captured from packets. Every call the
/// client reports is one event with its service, method, status and message counts.
#[test]
fn grpc_calls_from_a_real_client_are_reported_with_status_and_counts() -> anyhow::Result<()> {
    let test = "grpc_calls_from_a_real_client_are_reported_with_status_and_counts";
    if !require_privileges(test) || !require(test, "gRPC test", grpc_problem()) {
        return Ok(());
    }
    let lab = GrpcLab::start("grpc", None)?;
    let (topo, dir, port) = (&lab.topo, &lab.dir, SERVER_PORT.to_string());
    let mut sensor = lab.sensor()?;
    let out = lab
        .py(&topo.client, "grpc_client.py", &[&port, "5"])
        .output()?;
    if !out.status.success() {
        bail!("grpc client: {}", String::from_utf8_lossy(&out.stderr));
    }
    // "rpc unary GetAccount status=0 req_msgs=1 resp_msgs=1 account=acc-0000"
    let mut reported: Vec<Reported> = Vec::new();
    for l in String::from_utf8(out.stdout)?.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        let field = |k: &str| {
            f.iter()
                .find_map(|x| x.strip_prefix(k))
                .and_then(|v| v.parse::<u32>().ok())
        };
        let status = field("status=").context("status")?;
        let counts = field("req_msgs=").zip(field("resp_msgs="));
        reported.push((f[2].to_owned(), status, counts));
    }
    assert_eq!(reported.len(), 10, "{reported:?}");
    sensor.wait_for_metric(
        "apitap_sensor_events_total",
        reported.len() as u64,
        Duration::from_secs(30),
    )?;
    sensor.stop()?;
    let mut events: Vec<ApiEvent> = read_events(&sensor.events)?
        .into_iter()
        .filter(|e| e.client.ip.to_string() == CLIENT_IP && e.grpc.is_some())
        .collect();
    events.sort_by_key(|e| e.stream_id);
    assert_eq!(events.len(), reported.len());
    for (e, (method, status, counts)) in events.iter().zip(&reported) {
        let g = e.grpc.as_ref().unwrap();
        assert_eq!(e.http_version, "2");
        assert_eq!(
            (g.service.as_str(), &g.method),
            ("bank.v1.Accounts", method)
        );
        assert_eq!(g.status, Some(*status), "{method}");
        if let Some((req, resp)) = counts {
            assert_eq!(
                (g.request_messages, g.response_messages),
                (*req, *resp),
                "{method}"
            );
        }
        assert!(
            e.connection_id == events[0].connection_id,
            "one channel, one connection"
        );
        assert_eq!(e.unknown_header_fields, 0);
    }
    let not_found = events
        .iter()
        .find(|e| e.grpc.as_ref().is_some_and(|g| g.status == Some(5)))
        .context("the NOT_FOUND call")?;
    assert_eq!(
        not_found.grpc.as_ref().unwrap().message.as_deref(),
        Some("no such account: missing")
    );
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}

/// Joining a gRPC connection already open (issue 17): the client makes its first calls, the
/// sensor starts, then the client goes on on the same connection. The sensor's session begins
/// mid-connection, recognises HTTP/2 frames and keeps decoding with unknown HPACK state:
/// methods first called after the join are reported with their service and method, and
/// whatever refers to header fields indexed before the join is counted as unknown, never
/// invented (grpcio's C-core client indexes `:path` once: later calls of a method called
/// before the join keep an unknown path; its `grpc-status: 0` trailer was indexed before too).
#[test]
fn grpc_connection_joined_mid_way_reports_the_next_calls_without_inventing() -> anyhow::Result<()> {
    let test = "grpc_connection_joined_mid_way_reports_the_next_calls_without_inventing";
    if !require_privileges(test) || !require(test, "gRPC test", grpc_problem()) {
        return Ok(());
    }
    let lab = GrpcLab::start("grpcj", Some("go-on"))?;
    let (topo, dir, port) = (&lab.topo, &lab.dir, SERVER_PORT.to_string());
    let pause = dir.join("go-on");
    // The client's first calls, before the sensor.
    let mut client = lab
        .py(&topo.client, "grpc_client.py", &[&port, "5"])
        .stdout(Stdio::piped())
        .spawn()?;
    let mut stdout = std::io::BufReader::new(client.stdout.take().context("stdout")?);
    let mut before = Vec::new();
    loop {
        let mut line = String::new();
        if std::io::BufRead::read_line(&mut stdout, &mut line)? == 0 {
            bail!("the client ended before pausing: {before:?}");
        }
        if line.trim() == "paused" {
            break;
        }
        before.push(line);
    }
    assert_eq!(before.len(), 5, "{before:?}");
    let mut sensor = lab.sensor()?;
    std::fs::write(&pause, "")?;
    let mut after = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut after)?;
    assert!(client.wait()?.success());
    let after: Vec<&str> = after.lines().collect();
    assert_eq!(after.len(), 5, "{after:?}");
    sensor.wait_for_metric("apitap_sensor_events_total", 5, Duration::from_secs(30))?;
    // The HTTP/2 decoder's counters are metrics (summed over connections): the join shows
    // in them on this real traffic.
    let m = sensor.metrics()?;
    let h2 = |name: &str| apitap_tests::metric(&m, &format!("apitap_decode_h2_{name}_total"));
    assert!(h2("hpack_unknown_fields") > 0, "{m:?}");
    assert!(h2("streams") >= 5 && h2("header_blocks") > 0, "{m:?}");
    assert!(h2("frames") > h2("header_blocks"));
    sensor.stop()?;
    let events: Vec<ApiEvent> = read_events(&sensor.events)?
        .into_iter()
        .filter(|e| e.client.ip.to_string() == CLIENT_IP)
        .collect();
    assert_eq!(
        events.len(),
        after.len(),
        "one event per call after the join"
    );
    for e in &events {
        assert_eq!(e.http_version, "2");
        assert!(e.stream_id.is_some());
    }
    // Methods first called after the join: exact service, method and counts.
    for (method, counts) in [
        ("ListTransfers", (1, 4)),
        ("UploadTransfers", (3, 1)),
        ("Chat", (3, 3)),
    ] {
        let e = events
            .iter()
            .find(|e| e.grpc.as_ref().is_some_and(|g| g.method == method))
            .with_context(|| format!("{method} after the join"))?;
        let g = e.grpc.as_ref().unwrap();
        assert_eq!(g.service, "bank.v1.Accounts");
        assert_eq!(
            (g.request_messages, g.response_messages),
            counts,
            "{method}"
        );
        // Its status is exact or unknown, never another value.
        assert!(g.status.is_none_or(|s| s == 0), "{method}: {:?}", g.status);
        if g.status.is_none() {
            assert!(
                e.unknown_header_fields > 0
                    && e.anomalies
                        .contains(&apitap_schema::Anomaly::HpackUnknownField)
            );
        }
    }
    // GetAccount was indexed before the join: its calls are reported, marked, not invented.
    for e in events
        .iter()
        .filter(|e| e.grpc.is_none() || e.grpc.as_ref().is_some_and(|g| g.method == "GetAccount"))
    {
        if e.grpc.is_none() {
            assert!(e.unknown_header_fields > 0, "{e:?}");
            assert!(
                e.anomalies
                    .contains(&apitap_schema::Anomaly::HpackUnknownField)
            );
        }
    }
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}

/// `Upgrade: h2c` (RFC 7540 §3.2) on the real kernel: hypercorn (PyPI; nghttpd speaks only
/// prior-knowledge h2c) serves `tests/fixtures/h2/h2c_app.py`; `nghttp -u` and `curl --http2`
/// send an HTTP/1.1 upgrade request, get `101`, then speak HTTP/2. Each upgrade request is
/// stream 1 of its connection, with the status the client printed; nghttp's later streams
/// are one event each, as nghttp printed them.
#[test]
fn h2c_upgrade_request_is_stream_1_and_later_streams_follow() -> anyhow::Result<()> {
    let test = "h2c_upgrade_request_is_stream_1_and_later_streams_follow";
    let has_hypercorn = runs("python3", &["-c", "import hypercorn"]);
    let curl = runs("curl", &["--version"]);
    let problem = tool_problem()
        .or_else(|| (!has_hypercorn).then(|| "hypercorn is needed (pip install hypercorn)".into()))
        .or_else(|| (!curl).then(|| "curl is needed".into()));
    if !require_privileges(test) || !require(test, "h2c upgrade test", problem) {
        return Ok(());
    }
    let dir = std::env::temp_dir().join(format!("apitap-test-h2cup-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let topo = Topology::new("h2cup")?;
    let fixtures = apitap_tests::workspace_root().join("tests/fixtures/h2");
    let bind = format!("{SERVER_IP}:{SERVER_PORT}");
    let _server = hypercorn(&topo.server, &fixtures.display().to_string(), "h2c_app:app")?;
    wait_listening(&topo, "hypercorn")?;
    let mut sensor = Sensor::start_with(
        &topo.server,
        &topo.server_if,
        &[SERVER_PORT],
        "",
        &dir.join("sensor"),
    )?;
    let base = format!("http://{bind}");
    // nghttp: the first URL is the upgrade request, the others follow in HTTP/2.
    let (printed, text) = nghttp(&topo, &base, PATHS, &["-u"])?;
    assert!(text.contains("HTTP Upgrade success"), "{text}");
    assert_eq!(printed.len(), PATHS.len(), "{text}");
    assert_eq!(
        printed.get(&1),
        Some(&200),
        "the upgrade request is stream 1"
    );
    // curl: one upgraded request; it prints the status and the HTTP version it used.
    let curl_url = format!("{base}/api/user2.json");
    let out = topo
        .client
        .cmd(
            "curl",
            &[
                "-s",
                "--http2",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code} %{http_version}",
                &curl_url,
            ],
        )
        .output()
        .context("curl")?;
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "200 2",
        "curl upgraded"
    );
    sensor.wait_for_metric(
        "apitap_sensor_events_total",
        PATHS.len() as u64 + 1,
        Duration::from_secs(30),
    )?;
    let m = sensor.metrics()?;
    let upgrades = apitap_tests::metric(&m, "apitap_decode_upgrades_total");
    // The HTTP/2 decoders' own count of upgraded connections, and no stream cut short.
    assert_eq!(
        apitap_tests::metric(&m, "apitap_decode_h2_upgrades_total"),
        2
    );
    assert_eq!(
        apitap_tests::metric(&m, "apitap_decode_h2_upgrade_settings_invalid_total"),
        0
    );
    assert_eq!(
        apitap_tests::metric(&m, "apitap_decode_h2_streams_reset_total"),
        0
    );
    assert!(apitap_tests::metric(&m, "apitap_decode_h2_streams_total") >= PATHS.len() as u64);
    sensor.stop()?;
    let events: Vec<ApiEvent> = read_events(&sensor.events)?
        .into_iter()
        .filter(|e| e.server.port == SERVER_PORT)
        .collect();
    let mut conns: BTreeMap<String, Vec<ApiEvent>> = BTreeMap::new();
    for e in events {
        conns.entry(e.connection_id.clone()).or_default().push(e);
    }
    assert_eq!(conns.len(), 2, "{conns:?}");
    let (nghttp, curl): (Vec<_>, Vec<_>) = conns
        .into_values()
        .partition(|evs| evs.len() == PATHS.len());
    assert_eq!((nghttp.len(), curl.len()), (1, 1));
    assert_streams(&nghttp[0], &printed, PATHS);
    let one = nghttp[0].iter().find(|e| e.stream_id == Some(1)).unwrap();
    assert_eq!(one.request.path, PATHS[0]);
    assert_eq!(
        one.request
            .headers
            .get("user-agent")
            .map(|u| u.starts_with("nghttp2/")),
        Some(true)
    );
    let c = &curl[0];
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].stream_id, Some(1));
    assert_eq!(c[0].http_version, "2");
    assert_eq!(c[0].request.path, "/api/user2.json");
    assert_eq!(c[0].response.as_ref().map(|r| r.status), Some(200));
    assert_eq!(
        c[0].response.as_ref().unwrap().body.bytes().unwrap(),
        b"{\"id\":2,\"name\":\"user2\"}".to_vec()
    );
    assert!(c[0].anomalies.is_empty(), "{:?}", c[0].anomalies);
    assert_eq!(upgrades, 2, "both connections counted as upgraded");
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// `program args` exits with success.
fn runs(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// hypercorn in `ns` serving `app` (`module:attr`, found on `pythonpath`) on the captured
/// port, HTTP/1.1 and h2c.
fn hypercorn(ns: &Netns, pythonpath: &str, app: &str) -> anyhow::Result<Killed> {
    let bind = format!("{SERVER_IP}:{SERVER_PORT}");
    let server = ns
        .cmd("env", &[])
        .arg(format!("PYTHONPATH={pythonpath}"))
        .args(["python3", "-m", "hypercorn", "--bind", &bind, app])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting hypercorn")?;
    Ok(Killed(server))
}

fn grpc_web_problem() -> Option<String> {
    let ok = runs("python3", &["-c", "import sonora, hypercorn, grpc_tools"]);
    let curl = runs("curl", &["--version"]);
    (!ok || !curl).then(|| {
        "sonora, hypercorn, grpcio-tools and curl are needed (run `cargo xtask setup`)".to_owned()
    })
}

/// One call as `grpcweb_client.py` printed it.
#[derive(Debug)]
struct WebCall {
    method: String,
    mode: String,
    status: u32,
    request_messages: u32,
    response_messages: u32,
    message: Option<String>,
}

/// gRPC-Web on the real kernel (issue 17, PROTOCOL-WEB) with a real third-party server:
/// sonora 0.2.3's WSGI app under hypercorn in the server namespace, captured from packets.
/// Clients: sonora's own (binary, HTTP/1.1), grpc-web-text built by the client script over
/// http.client (HTTP/1.1; the server's base64 answers are sonora's), and both through curl
/// with prior-knowledge h2c. Unary calls, a NOT_FOUND, server streaming, a stream ended by
/// FAILED_PRECONDITION: every call the client reports is one event with its service, method,
/// status and message from the in-body trailers frame, the client's message counts, and
/// binary or text as sent.
#[test]
fn grpc_web_binary_and_text_from_sonora_are_one_event_per_call() -> anyhow::Result<()> {
    let test = "grpc_web_binary_and_text_from_sonora_are_one_event_per_call";
    if !require_privileges(test) || !require(test, "gRPC-Web test", grpc_web_problem()) {
        return Ok(());
    }
    let lab = GrpcLab::web("grpcweb")?;
    let (topo, dir, port) = (&lab.topo, &lab.dir, SERVER_PORT.to_string());
    let mut sensor = lab.sensor()?;
    let modes = "binary,text,h2c-binary,h2c-text";
    let out = lab
        .py(&topo.client, "grpcweb_client.py", &[&port, modes])
        .output()?;
    if !out.status.success() {
        bail!("grpc-web client: {}", String::from_utf8_lossy(&out.stderr));
    }
    // "rpc unary GetAccount mode=text status=5 req_msgs=1 resp_msgs=0 message='no such …'"
    let mut reported = Vec::new();
    for l in String::from_utf8(out.stdout)?.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        let field = |k: &str| f.iter().find_map(|x| x.strip_prefix(k)).context("field");
        let num = |k: &str| -> anyhow::Result<u32> { Ok(field(k)?.parse()?) };
        reported.push(WebCall {
            method: f[2].to_owned(),
            mode: field("mode=")?.to_owned(),
            status: num("status=")?,
            request_messages: num("req_msgs=")?,
            response_messages: num("resp_msgs=")?,
            message: l
                .split_once("message='")
                .map(|(_, m)| m.trim_end_matches('\'').to_owned()),
        });
    }
    assert_eq!(reported.len(), 24, "{reported:?}");
    sensor.wait_for_metric(
        "apitap_sensor_events_total",
        reported.len() as u64,
        Duration::from_secs(30),
    )?;
    let m = sensor.metrics()?;
    sensor.stop()?;
    // The HTTP/1.1 calls are counted by the HTTP/1 decoder, none with broken framing.
    let http1 = reported
        .iter()
        .filter(|c| !c.mode.starts_with("h2c"))
        .count();
    assert_eq!(
        apitap_tests::metric(&m, "apitap_decode_grpc_web_calls_total"),
        http1 as u64,
        "{m:?}"
    );
    assert_eq!(
        apitap_tests::metric(&m, "apitap_decode_grpc_web_framing_errors_total"),
        0
    );
    assert_eq!(
        apitap_tests::metric(&m, "apitap_decode_h2_framing_errors_total"),
        0
    );
    let mut events: Vec<ApiEvent> = read_events(&sensor.events)?
        .into_iter()
        .filter(|e| e.client.ip.to_string() == CLIENT_IP)
        .collect();
    // The client calls one after the other: start times order the events as it printed.
    events.sort_by_key(|e| e.request_start_unix_us);
    assert_eq!(events.len(), reported.len(), "one event per call");
    for (e, c) in events.iter().zip(&reported) {
        let g = e.grpc.as_ref().with_context(|| format!("{c:?}: {e:?}"))?;
        let what = format!("{c:?}");
        let h2c = c.mode.starts_with("h2c");
        assert_eq!(e.http_version, if h2c { "2" } else { "1.1" }, "{what}");
        assert_eq!(e.request.method, "POST");
        assert_eq!(
            (g.service.as_str(), g.method.as_str()),
            ("bank.v1.Accounts", c.method.as_str()),
            "{what}"
        );
        assert!(g.web, "{what}");
        assert_eq!(g.text, c.mode.ends_with("text"), "{what}");
        let ct = if g.text {
            "application/grpc-web-text"
        } else {
            "application/grpc-web+proto"
        };
        assert_eq!(e.request.headers.get("content-type"), Some(ct), "{what}");
        assert_eq!(g.status, Some(c.status), "{what}");
        assert_eq!(g.message, c.message, "{what}");
        assert_eq!(
            (g.request_messages, g.response_messages),
            (c.request_messages, c.response_messages),
            "{what}"
        );
        assert_eq!(e.response.as_ref().map(|r| r.status), Some(200), "{what}");
    }
    // sonora's client keeps its one connection for its six calls.
    let binary: Vec<&ApiEvent> = events
        .iter()
        .zip(&reported)
        .filter(|(_, c)| c.mode == "binary")
        .map(|(e, _)| e)
        .collect();
    assert!(
        binary
            .iter()
            .all(|e| e.connection_id == binary[0].connection_id)
    );
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}
