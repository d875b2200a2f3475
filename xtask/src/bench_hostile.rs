//! `cargo xtask bench hostile`: the sensor (and then the analyzer) under hostile traffic on the
//! real kernel (issue 22, R-CAP-7): a spoofed SYN flood, requests sent one byte per segment,
//! a flood of pipelined heads to a server that never answers, a flood of random hosts and
//! paths, and slow clients (one byte a second) against the sensor's own metrics endpoint.
//! Each phase is bounded in packets and time. For each it prints the sensor's CPU, its
//! resident memory, the decoder's peak connections and held bytes, what was counted as
//! dropped or evicted, and whether benign requests sent right after were still all captured —
//! next to the previous run's figures. The analyzer then reads the flood's events, and its
//! peak memory and inventory bounds are printed the same way.
//!
//! Traffic generators are small Python programs (the standard library only) run in the client
//! namespace: raw `AF_PACKET` frames for the spoofed flood, ordinary sockets otherwise.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use apitap_tests::{
    CLIENT_IP, Nginx, SERVER_IP, SERVER_PORT, Sensor, Topology, metric, workspace_root,
};

use crate::cargo;

/// The port of the server that reads requests and never answers (pipelined-head flood).
const SILENT_PORT: u16 = 8081;
/// Spoofed SYNs in the flood: three times the default connection table.
const SYN_FLOOD_PACKETS: u32 = 200_000;
/// Requests sent one byte per segment, and the header bytes of each.
const ONE_BYTE_REQUESTS: u32 = 10;
const ONE_BYTE_HEADER_BYTES: u32 = 6_000;
/// Connections of the pipelined-head flood, requests per connection, header bytes each.
const PIPELINE_CONNECTIONS: u32 = 40;
const PIPELINE_REQUESTS: u32 = 128;
const PIPELINE_HEADER_BYTES: u32 = 16_000;
/// Requests with a random Host and a random path, and how many go on one connection.
const RANDOM_REQUESTS: u32 = 20_000;
/// Benign requests after each phase: all must be captured.
const BENIGN_REQUESTS: u64 = 10;

/// Spoofed SYNs from random 10.64.0.0/10 sources and ports, as Ethernet frames on `iface`.
const SYN_FLOOD_PY: &str = r#"
import random, socket, struct, sys
iface, dst_mac, dst_ip, dst_port, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
def csum(b):
    if len(b) % 2: b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16: s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((iface, 0))
src_mac = s.getsockname()[4]
eth = bytes.fromhex(dst_mac.replace(":", "")) + src_mac + b"\x08\x00"
dst = socket.inet_aton(dst_ip)
rnd = random.Random(22)
for i in range(count):
    src = bytes([10, 64 + rnd.randrange(64), rnd.randrange(256), 1 + rnd.randrange(254)])
    sport = 1024 + rnd.randrange(60000)
    tcp = struct.pack("!HHIIBBHHH", sport, dst_port, rnd.getrandbits(32), 0, 5 << 4, 0x02, 64240, 0, 0)
    pseudo = src + dst + struct.pack("!BBH", 0, 6, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", csum(pseudo + tcp)) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), i & 0xffff, 0, 64, 6, 0, src, dst)
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    s.send(eth + ip + tcp)
"#;

/// Requests with a long header, written one byte per segment (TCP_NODELAY, a pause per byte).
const ONE_BYTE_PY: &str = r#"
import socket, sys, time
ip, port, n, hdr = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
for i in range(n):
    c = socket.create_connection((ip, port), timeout=10)
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    req = ("GET /api/v1/slow/%d HTTP/1.1\r\nHost: bench\r\nX-Pad: %s\r\nConnection: close\r\n\r\n" % (i, "p" * hdr)).encode()
    for k in range(len(req)):
        c.send(req[k:k + 1])
        if k % 8 == 0: time.sleep(0.0002)
    while c.recv(65536): pass
    c.close()
"#;

/// Connections that each pipeline many requests with large heads (2 MiB per connection, twice
/// the per-connection limit) to a server that never answers, then wait.
const PIPELINE_PY: &str = r#"
import socket, sys, time
ip, port, conns, per, hdr = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
head = ("GET /api/v1/pipe HTTP/1.1\r\nHost: bench\r\nX-Pad: %s\r\n\r\n" % ("q" * hdr)).encode()
socks = []
for i in range(conns):
    c = socket.create_connection((ip, port), timeout=5)
    c.settimeout(0.5)
    try:
        c.sendall(head * per)
    except socket.timeout:
        pass
    socks.append(c)
time.sleep(3)
for c in socks: c.close()
"#;

/// Requests with a random Host and a random path (1–6 segments, up to 120 characters each),
/// pipelined 100 per connection, responses read.
const RANDOM_PY: &str = r#"
import random, socket, sys
ip, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rnd = random.Random(22)
alpha = "abcdefghijklmnopqrstuvwxyz0123456789-_."
def word(k): return "".join(rnd.choice(alpha) for _ in range(k))
sent = 0
while sent < n:
    batch = min(100, n - sent)
    reqs = []
    for _ in range(batch):
        path = "/" + "/".join(word(rnd.randrange(1, 120)) for _ in range(rnd.randrange(1, 7)))
        reqs.append("GET %s HTTP/1.1\r\nHost: %s.example\r\n\r\n" % (path, word(12)))
    reqs[-1] = reqs[-1][:-2] + "Connection: close\r\n\r\n"
    c = socket.create_connection((ip, port), timeout=10)
    c.sendall("".join(reqs).encode())
    while c.recv(1 << 16): pass
    c.close()
    sent += batch
"#;

/// Reads and discards whatever its clients send and never answers.
const SILENT_PY: &str = r#"
import socket, sys, threading
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(4096)
def drain(c):
    while c.recv(1 << 16): pass
while True:
    c, _ = s.accept()
    threading.Thread(target=drain, args=(c,), daemon=True).start()
"#;

/// One phase's figures (name → value), in display order.
type Figures = Vec<(String, f64)>;

/// A named phase: runs its traffic generator.
/// Slow clients against the sensor's own metrics endpoint, from its namespace: many
/// connections each sending its request head one byte per second, never finishing it
/// (slowloris). The server's connection cap and whole-head deadline must bound them.
const SLOW_CLIENTS_PY: &str = r#"
import socket, sys, time
host, port, n, secs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
socks = []
for _ in range(n):
    try:
        s = socket.create_connection((host, port), timeout=2)
        s.setblocking(False)
        socks.append(s)
    except OSError:
        pass
head = b"GET /metrics HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: " + b"a" * 200
for i in range(secs):
    for s in socks:
        try:
            s.send(head[i:i + 1])
        except OSError:
            pass
    time.sleep(1)
for s in socks:
    s.close()
"#;
/// Slow clients, and seconds each trickles.
const SLOW_CLIENTS: u32 = 200;
const SLOW_CLIENT_SECS: u32 = 8;

type Phase<'a> = (&'static str, Box<dyn Fn() -> anyhow::Result<()> + 'a>);

/// Runs every phase and prints the table next to the previous run.
pub fn run() -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the hostile benchmark needs root (network namespaces, eBPF)");
    }
    crate::setup::install_tools(&[("python3", "python3")], "for the hostile benchmark")?;
    cargo(&[
        "build",
        "--release",
        "-p",
        "apitap-sensor",
        "-p",
        "apitap-analyzer",
    ])?;
    let bin_dir = workspace_root().join("target/release");
    // SAFETY: single-threaded here; the testbed reads it when starting the sensor.
    unsafe { std::env::set_var("APITAP_BIN_DIR", &bin_dir) };

    let dir = workspace_root().join("target/bench-hostile");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let topo = Topology::new("hostile")?;
    let _nginx = Nginx::start(&topo.server, &dir.join("nginx"))?;
    let mut silent = topo
        .server
        .cmd(
            "timeout",
            &[
                "600",
                "python3",
                "-c",
                SILENT_PY,
                SERVER_IP,
                &SILENT_PORT.to_string(),
            ],
        )
        .spawn()
        .context("starting the silent server")?;
    let sensor = Sensor::start(
        &topo.server,
        &topo.server_if,
        &[SERVER_PORT, SILENT_PORT],
        &dir.join("sensor"),
    )?;
    let pid = sensor.pid().context("sensor pid")?;
    let server_mac = mac_of(&topo)?;

    let mut results: Vec<(&str, Figures)> = Vec::new();
    let phases: [Phase<'_>; 5] = [
        (
            "syn_flood",
            Box::new(|| {
                py(
                    &topo,
                    SYN_FLOOD_PY,
                    &[
                        &topo.client_if,
                        &server_mac,
                        SERVER_IP,
                        &SERVER_PORT.to_string(),
                        &SYN_FLOOD_PACKETS.to_string(),
                    ],
                )
            }),
        ),
        (
            "one_byte_segments",
            Box::new(|| {
                py(
                    &topo,
                    ONE_BYTE_PY,
                    &[
                        SERVER_IP,
                        &SERVER_PORT.to_string(),
                        &ONE_BYTE_REQUESTS.to_string(),
                        &ONE_BYTE_HEADER_BYTES.to_string(),
                    ],
                )
            }),
        ),
        (
            "pipelined_heads",
            Box::new(|| {
                py(
                    &topo,
                    PIPELINE_PY,
                    &[
                        SERVER_IP,
                        &SILENT_PORT.to_string(),
                        &PIPELINE_CONNECTIONS.to_string(),
                        &PIPELINE_REQUESTS.to_string(),
                        &PIPELINE_HEADER_BYTES.to_string(),
                    ],
                )
            }),
        ),
        (
            "random_hosts_paths",
            Box::new(|| {
                py(
                    &topo,
                    RANDOM_PY,
                    &[
                        SERVER_IP,
                        &SERVER_PORT.to_string(),
                        &RANDOM_REQUESTS.to_string(),
                    ],
                )
            }),
        ),
        (
            "slow_admin_clients",
            Box::new(|| {
                let (host, port) = apitap_tests::METRICS_ADDR
                    .rsplit_once(':')
                    .context("metrics address")?;
                py_in(
                    &topo.server,
                    SLOW_CLIENTS_PY,
                    &[
                        host,
                        port,
                        &SLOW_CLIENTS.to_string(),
                        &SLOW_CLIENT_SECS.to_string(),
                    ],
                )
            }),
        ),
    ];
    for (name, phase) in &phases {
        eprintln!("bench hostile: {name}");
        let figures = measure(&topo, &sensor, pid, phase.as_ref())?;
        results.push((name, figures));
    }
    let _ = silent.kill();
    let _ = silent.wait();
    let mut sensor = sensor;
    sensor.stop()?;
    results.push((
        "analyzer_on_all_events",
        analyzer_run(&bin_dir, &dir, &sensor.events)?,
    ));
    print_table(&dir, &results)
}

/// The server veth's MAC address, for the spoofed frames.
fn mac_of(topo: &Topology) -> anyhow::Result<String> {
    let out = topo
        .server
        .cmd(
            "cat",
            &[&format!("/sys/class/net/{}/address", topo.server_if)],
        )
        .output()?;
    let mac = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if mac.len() != 17 {
        bail!("no MAC address for {}: {mac:?}", topo.server_if);
    }
    Ok(mac)
}

/// Runs a traffic generator in the client namespace, bounded to two minutes.
fn py(topo: &Topology, script: &str, args: &[&str]) -> anyhow::Result<()> {
    py_in(&topo.client, script, args)
}

/// Runs a traffic generator in namespace `ns`, at most 120 s.
fn py_in(ns: &apitap_tests::Netns, script: &str, args: &[&str]) -> anyhow::Result<()> {
    let mut all = vec!["120", "python3", "-c", script];
    all.extend_from_slice(args);
    let status = ns
        .cmd("timeout", &all)
        .stdout(Stdio::null())
        .status()
        .context("running a traffic generator")?;
    if !status.success() {
        bail!("traffic generator failed: {status}");
    }
    Ok(())
}

/// Counters whose increase a phase reports.
const COUNTERS: [(&str, &str); 11] = [
    ("segments", "apitap_decode_segments_total"),
    ("events", "apitap_sensor_events_total"),
    (
        "evicted_table_full",
        "apitap_decode_connections_evicted_table_full_total",
    ),
    (
        "refused_table_full",
        "apitap_decode_connections_table_full_total",
    ),
    (
        "evicted_memory",
        "apitap_decode_connections_evicted_memory_total",
    ),
    ("pipeline_overflow", "apitap_decode_pipeline_overflow_total"),
    (
        "responses_after_overflow",
        "apitap_decode_responses_after_overflow_total",
    ),
    ("parse_errors", "apitap_decode_request_parse_errors_total"),
    ("gaps", "apitap_decode_stream_gaps_total"),
    ("kernel_drops", "apitap_kernel_dropped_packets_total"),
    (
        "http_rejected",
        "apitap_sensor_http_rejected_connections_total",
    ),
];

/// Runs `phase` while sampling the sensor, then sends benign requests and checks they are
/// all captured.
fn measure(
    topo: &Topology,
    sensor: &Sensor,
    pid: u32,
    phase: &dyn Fn() -> anyhow::Result<()>,
) -> anyhow::Result<Figures> {
    let before = sensor.metrics()?;
    let cpu0 = cpu_ms(pid);
    let started = Instant::now();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (peaks, result) = std::thread::scope(|s| {
        let sampler = s.spawn(|| {
            let mut peak = (0u64, 0u64, 0u64);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(m) = sensor.metrics() {
                    peak.0 = peak.0.max(metric(&m, "apitap_decode_connections"));
                    peak.1 = peak.1.max(metric(&m, "apitap_decode_held_bytes"));
                }
                peak.2 = peak.2.max(rss_kib(pid, "VmRSS:"));
                std::thread::sleep(Duration::from_millis(200));
            }
            peak
        });
        let result = phase();
        // Let the sensor's per-second snapshot catch up.
        std::thread::sleep(Duration::from_millis(2200));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        (sampler.join().unwrap_or_default(), result)
    });
    result?;
    let secs = started.elapsed().as_secs_f64();
    let cpu = cpu_ms(pid) - cpu0;
    let after = sensor.metrics()?;
    let delta = |name: &str| sum(&after, name).saturating_sub(sum(&before, name)) as f64;

    // Benign requests right after: every one must still be captured.
    let events0 = metric(&after, "apitap_sensor_events_total");
    for i in 0..BENIGN_REQUESTS {
        topo.curl(&[
            "-o",
            "/dev/null",
            &topo.url(&format!("/api/v1/users/{i}?benign=1")),
        ])?;
    }
    let benign = match sensor.wait_for_metric(
        "apitap_sensor_events_total",
        events0 + BENIGN_REQUESTS,
        Duration::from_secs(15),
    ) {
        Ok(_) => BENIGN_REQUESTS as f64,
        Err(_) => (metric(&sensor.metrics()?, "apitap_sensor_events_total") - events0) as f64,
    };

    let mut f: Figures = vec![
        ("seconds".into(), secs),
        ("sensor_cpu_ms".into(), cpu),
        ("sensor_rss_peak_kib".into(), peaks.2 as f64),
        ("connections_peak".into(), peaks.0 as f64),
        ("held_bytes_peak".into(), peaks.1 as f64),
    ];
    for (label, name) in COUNTERS {
        f.push((label.into(), delta(name)));
    }
    f.push(("benign_captured".into(), benign));
    Ok(f)
}

/// Sum of a metric over its label sets (`name` and `name{...}`).
fn sum(m: &[(String, u64)], name: &str) -> u64 {
    m.iter()
        .filter(|(k, _)| k == name || k.strip_prefix(name).is_some_and(|r| r.starts_with('{')))
        .map(|(_, v)| v)
        .sum()
}

/// CPU time of `pid` in milliseconds (user + system).
fn cpu_ms(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |x| x.1);
    let f: Vec<&str> = after.split_whitespace().collect();
    let get = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    (get(11) + get(12)) as f64 * 1000.0 / hz
}

/// A `Vm*` line of `/proc/<pid>/status`, in KiB.
fn rss_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// The analyzer (release build) reads every event of the run; its peak memory, CPU and the
/// inventory's bounds.
fn analyzer_run(bin_dir: &Path, dir: &Path, events: &Path) -> anyhow::Result<Figures> {
    let cfg = dir.join("analyzer.toml");
    let summary = dir.join("summary.json");
    std::fs::write(
        &cfg,
        format!(
            "[input]\npath = \"{}\"\n[output]\nsummary_path = \"{}\"\nsummary_format = \"json\"\n",
            events.display(),
            summary.display()
        ),
    )?;
    let log = std::fs::File::create(dir.join("analyzer.log"))?;
    let started = Instant::now();
    let child = Command::new(bin_dir.join("apitap-analyzer"))
        .args(["run", "--config"])
        .arg(&cfg)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("starting apitap-analyzer")?;
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waiting for our own child with valid pointers.
    let rc = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    if rc < 0 || !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        bail!(
            "apitap-analyzer failed (status {status}): see {}",
            dir.join("analyzer.log").display()
        );
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 * 1000.0 + t.tv_usec as f64 / 1000.0;
    let rows: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(&summary).context("reading the summary")?)?;
    let services: std::collections::BTreeSet<&str> = rows
        .iter()
        .filter_map(|r| r.get("service").and_then(|s| s.as_str()))
        .collect();
    let events_read = std::fs::read_to_string(events)?.lines().count();
    Ok(vec![
        ("seconds".into(), started.elapsed().as_secs_f64()),
        ("events".into(), events_read as f64),
        (
            "analyzer_cpu_ms".into(),
            tv(usage.ru_utime) + tv(usage.ru_stime),
        ),
        ("analyzer_rss_peak_kib".into(), usage.ru_maxrss as f64),
        ("summary_endpoints".into(), rows.len() as f64),
        ("summary_services".into(), services.len() as f64),
    ])
}

/// Prints every phase's figures next to the previous run's, then saves them.
fn print_table(dir: &Path, results: &[(&str, Figures)]) -> anyhow::Result<()> {
    let saved = workspace_root().join("target/bench-hostile-last.json");
    let before: BTreeMap<String, BTreeMap<String, f64>> = std::fs::read(&saved)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    println!(
        "\n{:<24} {:<28} {:>14} {:>14} {:>9}",
        "hostile phase", "figure", "this run", "previous run", "ratio"
    );
    let mut now: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
    for (phase, figures) in results {
        for (name, v) in figures {
            let prev = before.get(*phase).and_then(|p| p.get(name));
            match prev {
                Some(b) if *b != 0.0 => {
                    println!("{phase:<24} {name:<28} {v:>14.1} {b:>14.1} {:>8.3}x", v / b)
                }
                Some(b) => println!("{phase:<24} {name:<28} {v:>14.1} {b:>14.1} {:>9}", "-"),
                None => println!("{phase:<24} {name:<28} {v:>14.1} {:>14} {:>9}", "-", "-"),
            }
            now.entry(phase.to_string())
                .or_default()
                .insert(name.clone(), *v);
        }
    }
    std::fs::write(&saved, serde_json::to_vec_pretty(&now)?)?;
    println!(
        "\n(client {CLIENT_IP} → server {SERVER_IP}; details in {})",
        dir.display()
    );
    Ok(())
}
