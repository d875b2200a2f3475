//! etcd, a real gRPC service, on the real kernel (issue 17, R-CAP-3): Debian's `etcd` server
//! (Go, grpc-go over h2c on its client URL) in a server namespace, driven by `etcdctl` from
//! a client namespace, captured from packets by the sensor.
//!
//! - Fresh connections (`etcdctl` opens one per invocation): every `put`/`get`/`del` is one
//!   event with service `etcdserverpb.KV`, method `Put`/`Range`/`DeleteRange`, status 0 and one
//!   message each way; a `watch` (bidirectional streaming) over the puts and deletes is one
//!   event `etcdserverpb.Watch/Watch` whose message counts equal what etcd itself counted
//!   (`grpc_server_msg_{received,sent}_total` on its metrics URL), at least one response per
//!   event `etcdctl watch` printed. The calls per (service, method, status) equal etcd's own
//!   `grpc_server_handled_total`.
//! - Joined mid-way: an `etcdctl watch` and an `etcdctl lock` (a lease keep-alive bidi stream,
//!   then `DeleteRange` on the same connection at SIGINT) are already open when the sensor
//!   starts. What the decoder can recover is tested exactly: calls *opened* after the join on
//!   the old connection have service and method (grpc-go sends a new `:path` as a literal);
//!   streams opened before the join are reported, flagged `midstream_start`, with no service or
//!   method (their HEADERS are never sent again) and their bytes seen since the join (the watch
//!   events' values), never invented.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use std::collections::BTreeMap;
use std::io::BufRead as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use apitap_schema::{Anomaly, ApiEvent};
use apitap_tests::{
    CLIENT_IP, Killed, SERVER_IP, SERVER_PORT, Sensor, Topology, read_events, require,
    require_privileges,
};

/// etcd's metrics URL inside the server namespace (not on the captured interface).
const METRICS_URL: &str = "http://127.0.0.1:2381";
/// Bound on every wait of these tests.
const WAIT: Duration = Duration::from_secs(30);

fn tool_problem() -> Option<String> {
    [("etcd", "--version"), ("etcdctl", "version")]
        .iter()
        .map(|(t, v)| (*t, *v))
        .find(|(t, v)| {
            !Command::new(t)
                .arg(v)
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .map(|(t, _)| {
            format!("`{t}` is not installed (etcd-server/-client; run `cargo xtask setup`)")
        })
}

/// A running `etcdctl` whose stdout lines arrive on a channel (read by a thread, so every
/// wait on them is bounded).
struct Streaming {
    child: Killed,
    lines: mpsc::Receiver<String>,
}

impl Streaming {
    fn spawn(mut cmd: Command) -> anyhow::Result<Streaming> {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting etcdctl")?;
        let stdout = child.stdout.take().context("stdout")?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in std::io::BufReader::new(stdout).lines() {
                let Ok(l) = l else { break };
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Ok(Streaming {
            child: Killed(child),
            lines,
        })
    }

    /// The next `n` lines, each within [`WAIT`].
    fn take(&self, n: usize) -> anyhow::Result<Vec<String>> {
        (0..n)
            .map(|_| {
                self.lines
                    .recv_timeout(WAIT)
                    .context("etcdctl printed nothing")
            })
            .collect()
    }

    /// `etcdctl watch` prints each event as three lines: kind, key, value (empty for a delete).
    fn events(&self, n: usize) -> anyhow::Result<Vec<(String, String)>> {
        let mut got = Vec::new();
        for _ in 0..n {
            let l = self.take(2)?;
            if l[0] == "PUT" {
                self.take(1)?;
            } else if l[0] != "DELETE" {
                bail!("unexpected watch output {l:?}");
            }
            got.push((l[0].clone(), l[1].clone()));
        }
        Ok(got)
    }

    fn signal(&self, sig: &str) -> anyhow::Result<()> {
        // `ip netns exec` execs etcdctl in place: the child is etcdctl.
        let ok = Command::new("kill")
            .args([sig, &self.child.0.id().to_string()])
            .status()?
            .success();
        if !ok {
            bail!("kill {sig} etcdctl");
        }
        Ok(())
    }

    /// Waits (bounded) for it to exit.
    fn wait(mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + WAIT;
        while self.child.0.try_wait()?.is_none() {
            if Instant::now() > deadline {
                bail!("etcdctl did not exit");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }
}

/// etcd serving its client URL on the captured port in the server namespace (its data in a
/// fresh directory, its metrics on [`METRICS_URL`] there), and the etcdctl client side.
struct EtcdLab {
    topo: Topology,
    dir: PathBuf,
    _server: Killed,
}

/// `grpc_server_*_total` figures of etcd: (metric, service, method, code or "") -> value.
type GrpcCounts = BTreeMap<(String, String, String, String), u64>;

impl EtcdLab {
    fn start(tag: &str) -> anyhow::Result<EtcdLab> {
        let dir = std::env::temp_dir().join(format!("apitap-test-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let topo = Topology::new(tag)?;
        let client_url = format!("http://{SERVER_IP}:{SERVER_PORT}");
        let data = dir.join("data").to_string_lossy().into_owned();
        let log = std::fs::File::create(dir.join("etcd.log"))?;
        let server = topo
            .server
            .cmd(
                "etcd",
                &[
                    "--name",
                    "apitap",
                    "--data-dir",
                    &data,
                    "--listen-client-urls",
                    &client_url,
                    "--advertise-client-urls",
                    &client_url,
                    "--listen-peer-urls",
                    "http://127.0.0.1:2380",
                    "--initial-advertise-peer-urls",
                    "http://127.0.0.1:2380",
                    "--initial-cluster",
                    "apitap=http://127.0.0.1:2380",
                    "--initial-cluster-state",
                    "new",
                    "--listen-metrics-urls",
                    METRICS_URL,
                ],
            )
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting etcd")?;
        let lab = EtcdLab {
            topo,
            dir,
            _server: Killed(server),
        };
        // Ready when its metrics URL says healthy (no gRPC call on the captured port).
        let deadline = Instant::now() + WAIT;
        while !lab
            .topo
            .server
            .cmd(
                "curl",
                &["-sf", "--max-time", "2", &format!("{METRICS_URL}/health")],
            )
            .output()
            .is_ok_and(|o| o.status.success() && o.stdout.windows(6).any(|w| w == b"\"true\""))
        {
            if Instant::now() > deadline {
                bail!(
                    "etcd did not become healthy: {}",
                    std::fs::read_to_string(lab.dir.join("etcd.log")).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(lab)
    }

    /// `etcdctl args` in the client namespace against etcd's client URL.
    fn etcdctl(&self, args: &[&str]) -> Command {
        let endpoint = format!("--endpoints=http://{SERVER_IP}:{SERVER_PORT}");
        let mut all = vec![endpoint.as_str()];
        all.extend(args);
        self.topo.client.cmd("etcdctl", &all)
    }

    /// Runs `etcdctl args` to completion; its stdout lines.
    fn run(&self, args: &[&str]) -> anyhow::Result<Vec<String>> {
        let out = self.etcdctl(args).output()?;
        if !out.status.success() {
            bail!("etcdctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8(out.stdout)?
            .lines()
            .map(str::to_owned)
            .collect())
    }

    /// etcd's own gRPC counters (go-grpc-prometheus), read from its metrics URL.
    fn grpc_counts(&self) -> anyhow::Result<GrpcCounts> {
        let out = self
            .topo
            .server
            .cmd(
                "curl",
                &["-sf", "--max-time", "5", &format!("{METRICS_URL}/metrics")],
            )
            .output()?;
        if !out.status.success() {
            bail!("etcd metrics: {}", String::from_utf8_lossy(&out.stderr));
        }
        let mut counts = GrpcCounts::new();
        // grpc_server_handled_total{grpc_code="OK",grpc_method="Put",grpc_service="etcdserverpb.KV",grpc_type="unary"} 4
        for l in String::from_utf8(out.stdout)?.lines() {
            let Some((name, rest)) = l.split_once('{') else {
                continue;
            };
            if !name.starts_with("grpc_server_") {
                continue;
            }
            let Some((labels, value)) = rest.split_once("} ") else {
                continue;
            };
            let label = |k: &str| {
                labels
                    .split(',')
                    .find_map(|kv| kv.strip_prefix(&format!("{k}=\"")))
                    .map(|v| v.trim_end_matches('"').to_owned())
                    .unwrap_or_default()
            };
            counts.insert(
                (
                    name.to_owned(),
                    label("grpc_service"),
                    label("grpc_method"),
                    label("grpc_code"),
                ),
                value.trim().parse()?,
            );
        }
        Ok(counts)
    }

    /// The sensor capturing etcd's client port from packets.
    fn sensor(&self) -> anyhow::Result<Sensor> {
        Sensor::start_with(
            &self.topo.server,
            &self.topo.server_if,
            &[SERVER_PORT],
            "",
            &self.dir.join("sensor"),
        )
    }

    /// `etcdctl watch --prefix acct/`, once etcd counts its Watch call started since `before`.
    fn watch(&self, before: &GrpcCounts) -> anyhow::Result<Streaming> {
        let watch = Streaming::spawn(self.etcdctl(&["watch", "--prefix", "acct/"]))?;
        self.wait_counted(
            before,
            "grpc_server_started_total",
            "etcdserverpb.Watch",
            "Watch",
            1,
        )?;
        Ok(watch)
    }

    /// Ends `watch` (its connection closes; etcd counts the call Canceled) and returns etcd's
    /// counts once it has counted the call handled since `before`.
    fn end_watch(&self, watch: Streaming, before: &GrpcCounts) -> anyhow::Result<GrpcCounts> {
        drop(watch);
        self.wait_counted(
            before,
            "grpc_server_handled_total",
            "etcdserverpb.Watch",
            "Watch",
            1,
        )?;
        self.grpc_counts()
    }

    /// Waits (bounded) until etcd counted `n` more `metric` for `service/method` than `before`.
    fn wait_counted(
        &self,
        before: &GrpcCounts,
        metric: &str,
        service: &str,
        method: &str,
        n: u64,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + WAIT;
        while delta(before, &self.grpc_counts()?, metric, service, method, "") < n {
            if Instant::now() > deadline {
                bail!("etcd never counted {n} {metric} of {service}/{method}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }
}

impl Drop for EtcdLab {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// How much `metric` of `service/method` (with `code`, or all codes when empty) grew.
fn delta(
    before: &GrpcCounts,
    after: &GrpcCounts,
    metric: &str,
    service: &str,
    method: &str,
    code: &str,
) -> u64 {
    let sum = |c: &GrpcCounts| -> u64 {
        c.iter()
            .filter(|((m, s, me, co), _)| {
                m == metric && s == service && me == method && (code.is_empty() || co == code)
            })
            .map(|(_, v)| v)
            .sum()
    };
    sum(after).saturating_sub(sum(before))
}

/// The gRPC calls etcd completed between two snapshots, per (service, method, code name).
fn handled(before: &GrpcCounts, after: &GrpcCounts) -> BTreeMap<(String, String, String), u64> {
    after
        .iter()
        .filter(|((m, ..), _)| m == "grpc_server_handled_total")
        .filter_map(|((_, s, me, co), v)| {
            let d = v.saturating_sub(
                *before
                    .get(&(
                        "grpc_server_handled_total".into(),
                        s.clone(),
                        me.clone(),
                        co.clone(),
                    ))
                    .unwrap_or(&0),
            );
            (d > 0).then(|| ((s.clone(), me.clone(), co.clone()), d))
        })
        .collect()
}

fn client_events(sensor: &Sensor) -> anyhow::Result<Vec<ApiEvent>> {
    Ok(read_events(&sensor.events)?
        .into_iter()
        .filter(|e| e.client.ip.to_string() == CLIENT_IP)
        .collect())
}

/// (service, method) of an event's gRPC call, empty when it has none.
fn call(e: &ApiEvent) -> (&str, &str) {
    e.grpc
        .as_ref()
        .map_or(("", ""), |g| (g.service.as_str(), g.method.as_str()))
}

/// Asserts a unary KV call seen from its connection's start: exact, nothing unknown.
fn assert_unary(e: &ApiEvent, method: &str) {
    let g = e.grpc.as_ref().expect("a gRPC call");
    assert_eq!(e.http_version, "2");
    assert_eq!(
        (g.service.as_str(), g.method.as_str()),
        ("etcdserverpb.KV", method)
    );
    assert_eq!(g.status, Some(0), "{method}");
    assert_eq!(
        (g.request_messages, g.response_messages),
        (1, 1),
        "{method}"
    );
    assert_eq!(e.unknown_header_fields, 0, "{method}");
    assert!(e.anomalies.is_empty(), "{method}: {:?}", e.anomalies);
    assert_eq!(e.request.path, format!("/etcdserverpb.KV/{method}"));
}

/// etcdctl from fresh connections: put/get/del one unary event each, a watch over them one
/// bidi-streaming event with etcd's own message counts (R-CAP-3).
#[test]
fn etcdctl_calls_and_a_watch_match_etcds_own_counts() -> anyhow::Result<()> {
    let test = "etcdctl_calls_and_a_watch_match_etcds_own_counts";
    if !require_privileges(test) || !require(test, "etcd test", tool_problem()) {
        return Ok(());
    }
    let lab = EtcdLab::start("etcd")?;
    let mut sensor = lab.sensor()?;
    let before = lab.grpc_counts()?;
    let watch = lab.watch(&before)?;

    const PUTS: usize = 5;
    let mut client = Vec::new(); // (method, what etcdctl printed)
    for i in 0..PUTS {
        let out = lab.run(&["put", &format!("acct/{i}"), &format!("balance-{i}")])?;
        assert_eq!(out, ["OK"]);
        client.push("Put");
    }
    assert_eq!(lab.run(&["get", "acct/1"])?, ["acct/1", "balance-1"]);
    client.push("Range");
    let all = lab.run(&["get", "--prefix", "acct/"])?;
    assert_eq!(all.len(), 2 * PUTS, "{all:?}");
    client.push("Range");
    assert_eq!(lab.run(&["del", "acct/1"])?, ["1"]);
    client.push("DeleteRange");
    assert_eq!(lab.run(&["del", "acct/none"])?, ["0"]);
    client.push("DeleteRange");
    // The watch printed every change: PUTS puts and one delete.
    let watched = watch.events(PUTS + 1)?;
    assert_eq!(watched.iter().filter(|(k, _)| k == "PUT").count(), PUTS);
    assert_eq!(watched[PUTS], ("DELETE".to_owned(), "acct/1".to_owned()));
    // Its connection closes; the sensor reports the open stream.
    let after = lab.end_watch(watch, &before)?;

    let want = client.len() as u64 + 1;
    sensor.wait_for_metric("apitap_sensor_events_total", want, WAIT)?;
    sensor.stop()?;
    let events = client_events(&sensor)?;
    assert_eq!(events.len() as u64, want, "one event per call");

    // Unary calls: each on its own connection, exact.
    let mut unary: Vec<&ApiEvent> = events
        .iter()
        .filter(|e| call(e).0 == "etcdserverpb.KV")
        .collect();
    unary.sort_by_key(|e| e.request_start_unix_us);
    let methods: Vec<&str> = unary.iter().map(|e| call(e).1).collect();
    assert_eq!(methods, client, "the calls etcdctl made, in order");
    for e in &unary {
        assert_unary(e, call(e).1);
    }
    let conns: std::collections::BTreeSet<_> = unary.iter().map(|e| &e.connection_id).collect();
    assert_eq!(
        conns.len(),
        unary.len(),
        "etcdctl opens a connection per call"
    );

    // The watch: one bidi-streaming event; its counts are etcd's.
    let w: Vec<&ApiEvent> = events
        .iter()
        .filter(|e| call(e) == ("etcdserverpb.Watch", "Watch"))
        .collect();
    assert_eq!(w.len(), 1, "{events:?}");
    let g = w[0].grpc.as_ref().unwrap();
    let sent = delta(
        &before,
        &after,
        "grpc_server_msg_sent_total",
        "etcdserverpb.Watch",
        "Watch",
        "",
    );
    let received = delta(
        &before,
        &after,
        "grpc_server_msg_received_total",
        "etcdserverpb.Watch",
        "Watch",
        "",
    );
    assert_eq!(
        (
            u64::from(g.request_messages),
            u64::from(g.response_messages)
        ),
        (received, sent),
        "the watch's messages as etcd counted them"
    );
    // The created response, then at least one per change watched (etcd may batch).
    assert!(g.response_messages as usize > watched.len(), "{g:?}");
    assert_eq!(w[0].unknown_header_fields, 0);
    assert_eq!(w[0].anomalies, [Anomaly::ResponseIncomplete]);
    // No trailers: the client went away; etcd counted it Canceled, the sensor no status.
    assert_eq!(g.status, None, "{g:?}");
    assert_eq!(
        delta(
            &before,
            &after,
            "grpc_server_handled_total",
            "etcdserverpb.Watch",
            "Watch",
            "Canceled"
        ),
        1
    );

    // Every call etcd completed, per service/method/code, is a reported event.
    let mut reported: BTreeMap<(String, String, String), u64> = BTreeMap::new();
    for e in &events {
        let (s, m) = call(e);
        let code = match e.grpc.as_ref().unwrap().status {
            Some(0) => "OK",
            None => "Canceled",
            Some(other) => panic!("status {other}"),
        };
        *reported
            .entry((s.to_owned(), m.to_owned(), code.to_owned()))
            .or_default() += 1;
    }
    assert_eq!(
        reported,
        handled(&before, &after),
        "etcd's grpc_server_handled_total"
    );
    Ok(())
}

/// Joined mid-way: a watch and a lock (lease keep-alive stream) are open before the sensor
/// starts. Later calls on fresh connections are exact; the lock's `DeleteRange` at SIGINT,
/// opened after the join on the old connection, has its service and method; the streams
/// opened before the join are reported `midstream_start` without service or method, with
/// the bytes sent since the join, never invented.
#[test]
fn etcd_connections_open_before_the_sensor_report_what_can_be_known() -> anyhow::Result<()> {
    let test = "etcd_connections_open_before_the_sensor_report_what_can_be_known";
    if !require_privileges(test) || !require(test, "etcd test", tool_problem()) {
        return Ok(());
    }
    let lab = EtcdLab::start("etcdj")?;
    let start = lab.grpc_counts()?;
    let watch = lab.watch(&start)?;
    for i in 0..2 {
        lab.run(&["put", &format!("acct/before-{i}"), &format!("early-{i}")])?;
    }
    assert_eq!(watch.events(2)?.len(), 2);
    // The lock: LeaseGrant, a LeaseKeepAlive stream (every ttl/3 s), Txn, Range; it prints
    // the key it holds and waits; at SIGINT it deletes that key (Unlock) on the same
    // connection and exits.
    let lock = Streaming::spawn(lab.etcdctl(&["lock", "--ttl", "3", "vault"]))?;
    let held = lock.take(1)?;
    assert!(held[0].starts_with("vault/"), "{held:?}");

    let mut sensor = lab.sensor()?;
    let before = lab.grpc_counts()?;
    // Keep-alives go on, on the joined connection.
    lab.wait_counted(
        &before,
        "grpc_server_msg_received_total",
        "etcdserverpb.Lease",
        "LeaseKeepAlive",
        2,
    )?;
    const PUTS: usize = 3;
    for i in 0..PUTS {
        assert_eq!(
            lab.run(&[
                "put",
                &format!("acct/after-{i}"),
                &format!("late-value-{i}")
            ])?,
            ["OK"]
        );
    }
    let watched = watch.events(PUTS)?;
    assert_eq!(watched.len(), PUTS);
    lock.signal("-INT")?;
    lock.wait()?;
    let after = lab.end_watch(watch, &before)?;
    // etcd: the puts, the unlock; the watch and keep-alive streams ended with their clients.
    assert_eq!(
        delta(
            &before,
            &after,
            "grpc_server_handled_total",
            "etcdserverpb.KV",
            "Put",
            "OK"
        ),
        PUTS as u64
    );
    assert_eq!(
        delta(
            &before,
            &after,
            "grpc_server_handled_total",
            "etcdserverpb.KV",
            "DeleteRange",
            "OK"
        ),
        1
    );

    // PUTS puts, the unlock, the watch stream, the keep-alive stream.
    let want = PUTS as u64 + 3;
    sensor.wait_for_metric("apitap_sensor_events_total", want, WAIT)?;
    sensor.stop()?;
    let events = client_events(&sensor)?;
    assert_eq!(events.len() as u64, want, "{events:#?}");

    // Fresh connections after the join: exact.
    let puts: Vec<&ApiEvent> = events
        .iter()
        .filter(|e| call(e) == ("etcdserverpb.KV", "Put"))
        .collect();
    assert_eq!(puts.len(), PUTS);
    for e in &puts {
        assert_unary(e, "Put");
    }

    // The unlock: a stream opened after the join on the lock's old connection. grpc-go sends
    // a `:path` it has not sent on this connection as a literal: service and method exact,
    // one message each way; `grpc-status: 0` (and `content-type`) were indexed before the
    // join, so its status is unknown, counted, never guessed.
    let unlock: Vec<&ApiEvent> = events
        .iter()
        .filter(|e| call(e) == ("etcdserverpb.KV", "DeleteRange"))
        .collect();
    assert_eq!(unlock.len(), 1, "{events:#?}");
    let (u, ug) = (unlock[0], unlock[0].grpc.as_ref().unwrap());
    assert_eq!((ug.request_messages, ug.response_messages), (1, 1));
    assert_eq!(u.request.path, "/etcdserverpb.KV/DeleteRange");
    assert_eq!(ug.status, None, "{ug:?}");
    assert!(u.unknown_header_fields > 0);
    assert_eq!(u.anomalies, [Anomaly::HpackUnknownField]);

    // The streams opened before the join: reported, flagged, no service or method.
    let joined: Vec<&ApiEvent> = events
        .iter()
        .filter(|e| e.anomalies.contains(&Anomaly::MidstreamStart))
        .collect();
    assert_eq!(joined.len(), 2, "the watch and the keep-alive: {events:#?}");
    for e in &joined {
        assert_eq!(call(e), ("", ""), "no :path seen, nothing invented: {e:?}");
        assert_eq!(e.request.path, "");
        assert_eq!(e.request.method, "");
        assert!(e.stream_id.is_some());
        // No message framing either: a gRPC message boundary cannot be found mid-stream.
        assert!(e.grpc.is_none());
        // Never completed: the clients went away without trailers.
        assert!(
            e.anomalies.contains(&Anomaly::ResponseIncomplete),
            "{:?}",
            e.anomalies
        );
    }
    // The keep-alive shares the unlock's connection; the watch has its own.
    let keepalive: Vec<&&ApiEvent> = joined
        .iter()
        .filter(|e| e.connection_id == u.connection_id)
        .collect();
    assert_eq!(keepalive.len(), 1);
    let watch_event = joined
        .iter()
        .find(|e| e.connection_id != u.connection_id)
        .unwrap();
    // The watch's response bytes since the join: the values put after it, not before.
    let body = watch_event
        .response
        .as_ref()
        .context("the watch's response side")?
        .body
        .bytes()
        .context("response body")?;
    let has = |s: &str| body.windows(s.len()).any(|w| w == s.as_bytes());
    for i in 0..PUTS {
        assert!(
            has(&format!("late-value-{i}")),
            "late-value-{i} in the watch's bytes"
        );
    }
    assert!(!has("early-0") && !has("early-1"));
    Ok(())
}
