//! `cargo xtask bench h2`: what decoding HTTP/2 costs the agent next to HTTP/1 (issue 17,
//! R-CAP-3, R-CAP-7), in one table next to the previous run's (`target/bench-h2/last.json`):
//!
//! - the sensor process's CPU (utime + stime from `/proc/<pid>/stat`, from its start until
//!   every event is out) per 10k requests, for a bounded `h2load` run (`REQUESTS` requests,
//!   `CLIENTS` connections) of the same 1 KiB JSON document: prior-knowledge h2c to nghttpd
//!   (nghttp2's server) and to nginx, and HTTP/1.1 to the same nginx (`h2load --h1`, one request
//!   in flight per connection, and pipelined); a fresh sensor per run, median of `ROUNDS`;
//! - the same for gRPC unary calls (`GetAccount`, one length-prefixed protobuf message POSTed
//!   by h2load with `content-type: application/grpc`) to the fixtures' grpcio server; an
//!   event counts when the sensor saw `grpc-status: 0`;
//! - events the sensor emitted per request `h2load` reports succeeded (and per request nginx
//!   logged), the requests missing and the sensor's own kernel-drop and stream-gap counters
//!   over the runs, so that loss shows: a cheap sensor that reports nothing measures nothing;
//! - the criterion decode benches (`decode/benches/h2.rs` and the HTTP/1 `decode.rs`): h2
//!   throughput on the real captures next to HTTP/1 framing and the HTTP/1 pipeline.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use apitap_tests::{
    Nginx, SERVER_IP, SERVER_PORT, Sensor, Topology, bench_document, nginx_preamble, workspace_root,
};

use crate::bench::{USER_HZ, bench_meta_all, count_log, cpu_ticks, estimate_ns, stderr_of};
use crate::bench_overhead::{median, prepare_bench};

/// Requests per `h2load` run.
const REQUESTS: u32 = 50_000;
/// Connections per run.
const CLIENTS: u32 = 4;
/// Concurrent streams per connection (HTTP/2), pipelined requests (HTTP/1.1 pipelined).
const STREAMS: u32 = 8;
/// Runs per row; the median is printed.
const ROUNDS: usize = 3;
/// nginx's h2c port (HTTP/1.1 is on [`SERVER_PORT`]).
const NGINX_H2C_PORT: u16 = 8081;
/// nghttpd's h2c port.
const NGHTTPD_PORT: u16 = 8082;
/// The grpcio server's port (`tests/fixtures/h2/grpc_server.py`).
const GRPC_PORT: u16 = 8083;
/// Calls per gRPC run (the Python server makes a few thousand per second here).
const GRPC_REQUESTS: u32 = 10_000;
/// The gRPC method the gRPC row calls.
const GRPC_PATH: &str = "/bank.v1.Accounts/GetAccount";
/// The document every other row fetches.
const PATH: &str = "/api/v1/bench";
/// Bound on waiting for the sensor to report a run's events.
const DRAIN: Duration = Duration::from_secs(30);

/// One load: where, and how h2load speaks.
struct Row {
    label: &'static str,
    port: u16,
    h1: bool,
    streams: u32,
    nginx: bool,
    /// gRPC unary `GetAccount` to the grpcio server rather than [`PATH`].
    grpc: bool,
    requests: u32,
}

const ROWS: [Row; 5] = [
    Row {
        label: "h2c nghttpd",
        port: NGHTTPD_PORT,
        h1: false,
        streams: STREAMS,
        nginx: false,
        grpc: false,
        requests: REQUESTS,
    },
    Row {
        label: "h2c nginx",
        port: NGINX_H2C_PORT,
        h1: false,
        streams: STREAMS,
        nginx: true,
        grpc: false,
        requests: REQUESTS,
    },
    Row {
        label: "http/1.1 nginx",
        port: SERVER_PORT,
        h1: true,
        streams: 1,
        nginx: true,
        grpc: false,
        requests: REQUESTS,
    },
    Row {
        label: "http/1.1 nginx pipelined",
        port: SERVER_PORT,
        h1: true,
        streams: STREAMS,
        nginx: true,
        grpc: false,
        requests: REQUESTS,
    },
    Row {
        label: "grpc unary grpcio",
        port: GRPC_PORT,
        h1: false,
        streams: STREAMS,
        nginx: false,
        grpc: true,
        requests: GRPC_REQUESTS,
    },
];

/// What one run measured.
struct Run {
    rps: f64,
    succeeded: u64,
    cpu_ms_per_10k: f64,
    cpu_ms_per_10k_events: f64,
    events: u64,
    logged: Option<u64>,
    /// Packets the kernel side could not hand over, and TCP stream gaps, as the sensor counted.
    kernel_drops: u64,
    gaps: u64,
}

/// Parses h2load's summary: requests succeeded and requests per second.
fn parse_h2load(text: &str) -> anyhow::Result<(u64, f64)> {
    // "requests: 20000 total, 20000 started, 20000 done, 20000 succeeded, 0 failed, ..."
    let succeeded = text
        .lines()
        .find_map(|l| l.strip_prefix("requests: "))
        .and_then(|l| l.split(", ").find_map(|p| p.strip_suffix(" succeeded")))
        .and_then(|v| v.trim().parse().ok())
        .context("h2load printed no requests line")?;
    // "finished in 1.23s, 16260.16 req/s, 17.50MB/s"
    let rps = text
        .lines()
        .find_map(|l| l.strip_prefix("finished in "))
        .and_then(|l| l.split(", ").find_map(|p| p.strip_suffix(" req/s")))
        .and_then(|v| v.trim().parse().ok())
        .context("h2load printed no req/s")?;
    Ok((succeeded, rps))
}

/// Events in the sensor's file for [`PATH`] on `port` (HTTP/2 ones when `h2`).
fn count_events(path: &Path, row: &Row) -> anyhow::Result<u64> {
    let events = apitap_tests::read_events(path)?;
    let want = if row.grpc { GRPC_PATH } else { PATH };
    Ok(events
        .iter()
        .filter(|e| e.server.port == row.port && e.request.path == want)
        .filter(|e| (e.http_version == "2") != row.h1)
        // gRPC: only calls the sensor saw succeed.
        .filter(|e| !row.grpc || e.grpc.as_ref().is_some_and(|g| g.status == Some(0)))
        .count() as u64)
}

/// A fresh sensor, one bounded h2load run, the sensor's CPU until its events are out.
fn run_once(
    topo: &Topology,
    nginx: &Nginx,
    row: &Row,
    dir: &Path,
    grpc_body: &Path,
) -> anyhow::Result<Run> {
    let ports = [SERVER_PORT, NGINX_H2C_PORT, NGHTTPD_PORT, GRPC_PORT];
    let mut sensor = Sensor::start(&topo.server, &topo.server_if, &ports, dir)?;
    let pid = sensor.pid().context("sensor pid")?;
    if row.nginx {
        crate::bench::truncate_log(nginx, topo)?;
    }
    let t0 = cpu_ticks(pid);
    let url = format!(
        "http://{SERVER_IP}:{}{}",
        row.port,
        if row.grpc { GRPC_PATH } else { PATH }
    );
    let body = grpc_body.to_string_lossy();
    let (n, c, m) = (
        row.requests.to_string(),
        CLIENTS.to_string(),
        row.streams.to_string(),
    );
    let mut args = vec!["-n", &n, "-c", &c, "-m", &m];
    if row.h1 {
        args.push("--h1");
    }
    if row.grpc {
        // A unary call: POST of one length-prefixed message (gRPC over HTTP/2).
        args.extend([
            "-d",
            &body,
            "-H",
            "content-type: application/grpc",
            "-H",
            "te: trailers",
        ]);
    }
    args.push(&url);
    let out = topo.client.cmd("h2load", &args).output()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!("h2load {args:?}: {text}");
    }
    let (succeeded, rps) = parse_h2load(&text)?;
    // Until the sensor has reported them all, or stopped counting (what is missing is loss).
    let deadline = Instant::now() + DRAIN;
    let mut last = (0, Instant::now());
    // A counter summed over its labels (`apitap_kernel_dropped_packets_total{cause=…}`).
    let metric = |m: &[(String, u64)], name: &str| -> u64 {
        m.iter()
            .filter(|(k, _)| {
                k.strip_prefix(name)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('{'))
            })
            .map(|x| x.1)
            .sum()
    };
    let (kernel_drops, gaps) = loop {
        let m = sensor.metrics()?;
        let v = metric(&m, "apitap_sensor_events_total");
        if v >= succeeded || Instant::now() > deadline {
            break (
                metric(&m, "apitap_kernel_dropped_packets_total"),
                metric(&m, "apitap_decode_stream_gaps_total"),
            );
        }
        if v != last.0 {
            last = (v, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(2) {
            break (
                metric(&m, "apitap_kernel_dropped_packets_total"),
                metric(&m, "apitap_decode_stream_gaps_total"),
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let ms = (cpu_ticks(pid) - t0) as f64 / USER_HZ * 1000.0;
    sensor.stop()?;
    let events = count_events(&sensor.events, row)?;
    let _ = std::fs::remove_file(&sensor.events);
    let logged = if row.nginx {
        Some(count_log(nginx)?.1)
    } else {
        None
    };
    Ok(Run {
        rps,
        succeeded,
        cpu_ms_per_10k: ms / (succeeded as f64 / 10_000.0).max(1e-9),
        cpu_ms_per_10k_events: ms / (events as f64 / 10_000.0).max(1e-9),
        events,
        logged,
        kernel_drops,
        gaps,
    })
}

/// nginx serving [`PATH`] over HTTP/1.1 on [`SERVER_PORT`] and h2c on [`NGINX_H2C_PORT`].
fn start_nginx(topo: &Topology, dir: &Path, doc: &Path) -> anyhow::Result<Nginx> {
    let conf = format!(
        r#"{preamble}  default_type application/json;
  keepalive_requests 100000;
  server {{
    listen {SERVER_IP}:{SERVER_PORT};
    listen {SERVER_IP}:{NGINX_H2C_PORT} http2;
    location = /healthz {{ return 204; }}
    location = {PATH} {{ alias {doc}; }}
  }}
}}
"#,
        preamble = nginx_preamble(dir, 256),
        doc = doc.display()
    );
    Nginx::start_conf(&topo.server, dir, &conf, "/healthz")
}

/// nghttpd serving `docroot` (h2c) on [`NGHTTPD_PORT`], ready when h2load gets the document.
fn start_nghttpd(topo: &Topology, docroot: &Path) -> anyhow::Result<KilledChild> {
    let port = NGHTTPD_PORT.to_string();
    let child = topo
        .server
        .cmd(
            "nghttpd",
            &[
                "-d",
                &docroot.to_string_lossy(),
                "-a",
                SERVER_IP,
                "--no-tls",
                &port,
            ],
        )
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .context("starting nghttpd")?;
    let server = KilledChild(child);
    let url = format!("http://{SERVER_IP}:{NGHTTPD_PORT}{PATH}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !topo
        .client
        .cmd("h2load", &["-n", "1", &url])
        .output()
        .is_ok_and(|o| parse_h2load(&String::from_utf8_lossy(&o.stdout)).is_ok_and(|r| r.0 == 1))
    {
        if Instant::now() > deadline {
            bail!("nghttpd did not serve {url}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(server)
}

/// The grpcio server of the h2 fixtures (`tests/fixtures/h2/grpc_server.py`, stubs generated
/// from `bank.proto` into `dir`) on [`GRPC_PORT`], ready when h2load's call succeeds; and the
/// request body file: one length-prefixed `GetAccountRequest { account_id: "acc-0001" }`.
fn start_grpc(topo: &Topology, dir: &Path) -> anyhow::Result<(KilledChild, std::path::PathBuf)> {
    std::fs::create_dir_all(dir)?;
    let fixtures = workspace_root().join("tests/fixtures/h2");
    let out = std::process::Command::new("python3")
        .args(["-m", "grpc_tools.protoc", "-I"])
        .arg(&fixtures)
        .arg(format!("--python_out={}", dir.display()))
        .arg(format!("--grpc_python_out={}", dir.display()))
        .arg(fixtures.join("bank.proto"))
        .output()
        .context("python3 -m grpc_tools.protoc (run `cargo xtask setup`)")?;
    if !out.status.success() {
        bail!("protoc: {}", String::from_utf8_lossy(&out.stderr));
    }
    // gRPC message framing (compressed flag 0, u32 length), then field 1 (tag 0x0a, length 8).
    let body = dir.join("get_account.bin");
    let mut msg = vec![0x0a, 8];
    msg.extend_from_slice(b"acc-0001");
    let mut framed = vec![0, 0, 0, 0, msg.len() as u8];
    framed.extend(msg);
    std::fs::write(&body, framed)?;
    let child = topo
        .server
        .cmd("env", &[])
        .arg(format!("PYTHONPATH={}", dir.display()))
        .arg(format!("APITAP_GRPC_HOST={SERVER_IP}"))
        .arg("python3")
        .arg(fixtures.join("grpc_server.py"))
        .args([GRPC_PORT.to_string().as_str(), "900"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .context("starting the gRPC server")?;
    let server = KilledChild(child);
    let url = format!("http://{SERVER_IP}:{GRPC_PORT}{GRPC_PATH}");
    let body_arg = body.to_string_lossy().into_owned();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !topo
        .client
        .cmd(
            "h2load",
            &[
                "-n",
                "1",
                "-d",
                &body_arg,
                "-H",
                "content-type: application/grpc",
                "-H",
                "te: trailers",
                &url,
            ],
        )
        .output()
        .is_ok_and(|o| parse_h2load(&String::from_utf8_lossy(&o.stdout)).is_ok_and(|r| r.0 == 1))
    {
        if Instant::now() > deadline {
            bail!("the gRPC server did not answer {url}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok((server, body))
}

/// A child process killed on drop.
struct KilledChild(std::process::Child);

impl Drop for KilledChild {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// (label, figures) rows of the table.
type Table = Vec<(String, BTreeMap<String, f64>)>;

/// The live rows: sensor CPU per 10k requests and events per request, per protocol.
fn live(dir: &Path) -> anyhow::Result<Table> {
    let topo = Topology::new("h2b")?;
    let docroot = dir.join("www");
    std::fs::create_dir_all(docroot.join("api/v1"))?;
    let doc = docroot.join("api/v1/bench");
    std::fs::write(&doc, bench_document())?;
    let nginx = start_nginx(&topo, &dir.join("nginx"), &doc)?;
    let _nghttpd = start_nghttpd(&topo, &docroot)?;
    let (_grpc, grpc_body) = start_grpc(&topo, &dir.join("grpc"))?;
    let mut table = Table::new();
    for row in &ROWS {
        let mut runs = Vec::new();
        for round in 0..ROUNDS {
            let tag = format!("{}-{round}", row.label.replace([' ', '/', '.'], "-"));
            runs.push(run_once(&topo, &nginx, row, &dir.join(tag), &grpc_body)?);
        }
        let m = |f: fn(&Run) -> f64| median(runs.iter().map(f).collect());
        let mut figures = BTreeMap::from([
            ("req/s (h2load)".to_owned(), m(|r| r.rps)),
            ("sensor cpu ms/10k req".to_owned(), m(|r| r.cpu_ms_per_10k)),
            (
                "sensor cpu ms/10k events".to_owned(),
                m(|r| r.cpu_ms_per_10k_events),
            ),
            (
                "events/requests".to_owned(),
                m(|r| r.events as f64 / r.succeeded.max(1) as f64),
            ),
            (
                "requests missing (sum)".to_owned(),
                runs.iter()
                    .map(|r| r.succeeded.saturating_sub(r.events) as f64)
                    .sum(),
            ),
            (
                "kernel drops (sum)".to_owned(),
                runs.iter().map(|r| r.kernel_drops as f64).sum(),
            ),
            (
                "stream gaps (sum)".to_owned(),
                runs.iter().map(|r| r.gaps as f64).sum(),
            ),
        ]);
        if row.nginx {
            figures.insert(
                "events/nginx logged".to_owned(),
                m(|r| r.events as f64 / r.logged.unwrap_or(0).max(1) as f64),
            );
        }
        table.push((
            format!(
                "{} (-c {CLIENTS} -m {}, {} req)",
                row.label, row.streams, row.requests
            ),
            figures,
        ));
    }
    drop(nginx);
    Ok(table)
}

/// The criterion decode benches: h2 on the real captures, HTTP/1 framing and pipeline.
fn criterion() -> anyhow::Result<Table> {
    let bench = |name: &str, filter: &[&str]| -> anyhow::Result<String> {
        let mut cmd =
            std::process::Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
        cmd.args([
            "bench",
            "-p",
            "apitap-decode",
            "--bench",
            name,
            "--",
            "--noplot",
        ])
        .args(filter)
        .current_dir(workspace_root());
        stderr_of(&mut cmd, "cargo bench")
    };
    let mut table = Table::new();
    let mib = |bytes: f64, ns: f64| bytes / ns * 1e9 / (1024.0 * 1024.0);
    for (key, meta) in bench_meta_all(&bench("h2", &[])?) {
        let Some(name) = key.strip_prefix("h2/") else {
            continue;
        };
        let ns = estimate_ns("h2", name)?;
        let (bytes, streams) = (meta_get(&meta, "bytes")?, meta_get(&meta, "streams")?);
        table.push((
            format!("criterion h2/{name}"),
            BTreeMap::from([
                ("MiB/s".to_owned(), mib(bytes, ns)),
                ("k streams/s".to_owned(), streams / ns * 1e6),
            ]),
        ));
    }
    let err = bench("decode", &["parse/message_parser|pipeline/decode_only"])?;
    let meta = bench_meta_all(&err)
        .into_iter()
        .next()
        .map(|(_, m)| m)
        .context("decode bench metadata")?;
    for (group, name, bytes) in [
        ("parse", "message_parser", meta_get(&meta, "stream_bytes")?),
        ("pipeline", "decode_only", meta_get(&meta, "wire_bytes")?),
    ] {
        let transactions = meta_get(&meta, "transactions")?;
        let ns = estimate_ns(group, name)?;
        table.push((
            format!("criterion http/1 {group}/{name}"),
            BTreeMap::from([
                ("MiB/s".to_owned(), mib(bytes, ns)),
                ("k transactions/s".to_owned(), transactions / ns * 1e6),
            ]),
        ));
    }
    Ok(table)
}

fn meta_get(meta: &std::collections::HashMap<String, f64>, key: &str) -> anyhow::Result<f64> {
    meta.get(key)
        .copied()
        .with_context(|| format!("bench metadata has no {key}"))
}

/// Prints every figure next to the previous run's, then saves this run's.
fn print_table(saved: &Path, table: &Table) -> anyhow::Result<()> {
    let before: BTreeMap<String, BTreeMap<String, f64>> = std::fs::read(saved)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    println!(
        "\n{:<46} {:<24} {:>12} {:>12} {:>8}",
        "h2 bench", "figure", "this run", "previous", "ratio"
    );
    for (label, figures) in table {
        for (name, v) in figures {
            let prev = before.get(label).and_then(|p| p.get(name));
            let (p, r) = match prev {
                Some(b) if *b != 0.0 => (format!("{b:.3}"), format!("{:.3}x", v / b)),
                Some(b) => (format!("{b:.3}"), "-".into()),
                None => ("-".into(), "-".into()),
            };
            println!("{label:<46} {name:<24} {v:>12.3} {p:>12} {r:>8}");
        }
    }
    let now: BTreeMap<&String, &BTreeMap<String, f64>> =
        table.iter().map(|(l, f)| (l, f)).collect();
    std::fs::write(saved, serde_json::to_vec_pretty(&now)?)?;
    Ok(())
}

/// `bench h2`.
pub fn run() -> anyhow::Result<()> {
    let dir = prepare_bench(
        "h2",
        &[
            ("h2load", "nghttp2-client"),
            ("nghttpd", "nghttp2-server"),
            ("nginx", "nginx-light"),
        ],
        "bench-h2",
    )?;
    let saved = workspace_root().join("target/bench-h2-last.json");
    let mut table = live(&dir)?;
    table.extend(criterion()?);
    println!(
        "\n(1 KiB JSON document; sensor CPU = utime+stime of the sensor process from its start until its events are out, median of {ROUNDS} runs, a fresh sensor each; details in {})",
        dir.display()
    );
    print_table(&saved, &table)
}
