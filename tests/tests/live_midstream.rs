//! Attaching to a host with connections already open (R-CAP-3): transactions that follow on an
//! established keep-alive connection are reported, flagged `midstream_start`; the one before
//! attach is not invented.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use apitap_schema::Anomaly;
use apitap_tests::{
    Nginx, SERVER_IP, SERVER_PORT, Sensor, Topology, read_events, require_privileges,
};

const CLIENT: &str = r#"
import os, socket, sys, time
host, port, go = sys.argv[1], int(sys.argv[2]), sys.argv[3]
s = socket.create_connection((host, port))
def req(path):
    s.sendall(("GET %s HTTP/1.1\r\nHost: api\r\n\r\n" % path).encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += s.recv(65536)
    head, rest = buf.split(b"\r\n\r\n", 1)
    cl = [int(l.split(b":")[1]) for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")][0]
    while len(rest) < cl:
        rest += s.recv(65536)
    return head.split(b"\r\n")[0].decode()
print(req("/api/v1/users/1?mid=before"), flush=True)
print("ready", flush=True)
deadline = time.time() + 30
while not os.path.exists(go) and time.time() < deadline:
    time.sleep(0.02)
for i in range(3):
    print(req("/api/v1/users/%d?mid=after%d" % (i, i)), flush=True)
s.close()
print("done", flush=True)
"#;

#[test]
fn attach_to_an_open_connection() -> anyhow::Result<()> {
    if !require_privileges("attach_to_an_open_connection") {
        return Ok(());
    }
    let dir = std::env::temp_dir().join(format!("apitap-test-mid-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let topo = Topology::new("mid")?;
    let _nginx = Nginx::start(&topo.server, &dir.join("nginx"))?;
    let go = dir.join("go");
    let mut client = topo
        .client
        .cmd(
            "python3",
            &[
                "-c",
                CLIENT,
                SERVER_IP,
                &SERVER_PORT.to_string(),
                &go.to_string_lossy(),
            ],
        )
        .stdout(Stdio::piped())
        .spawn()?;
    let mut lines = BufReader::new(client.stdout.take().expect("piped stdout")).lines();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let line = lines.next().transpose()?.unwrap_or_default();
        if line == "ready" {
            break;
        }
        assert!(Instant::now() < deadline, "client never became ready");
    }
    // The connection is open and has carried one transaction: now attach.
    let mut sensor = Sensor::start(
        &topo.server,
        &topo.server_if,
        &[SERVER_PORT],
        &dir.join("sensor"),
    )?;
    std::fs::write(&go, b"")?;
    let rest: Vec<String> = lines.collect::<Result<_, _>>()?;
    assert!(client.wait()?.success());
    assert_eq!(rest.last().map(String::as_str), Some("done"), "{rest:?}");
    sensor.wait_for_metric("apitap_sensor_events_total", 3, Duration::from_secs(15))?;
    sensor.stop()?;
    let events = read_events(&sensor.events)?;
    let got: Vec<(String, u16)> = events
        .iter()
        .map(|e| {
            (
                e.request.query.clone().unwrap_or_default(),
                e.response.as_ref().map_or(0, |r| r.status),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("mid=after0".into(), 200),
            ("mid=after1".into(), 200),
            ("mid=after2".into(), 200)
        ],
        "{:?}",
        events.iter().map(|e| &e.anomalies).collect::<Vec<_>>()
    );
    assert_eq!(events[0].anomalies, vec![Anomaly::MidstreamStart]);
    assert!(events[1..].iter().all(|e| e.anomalies.is_empty()));
    assert!(
        events
            .iter()
            .all(|e| e.connection_id == events[0].connection_id)
    );
    assert_eq!(
        events[0].client.ip.to_string(),
        apitap_tests::CLIENT_IP,
        "roles right without the handshake"
    );
    Ok(())
}
