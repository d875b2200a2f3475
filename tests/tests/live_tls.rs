//! TLS plaintext capture on the real kernel (R-CAP-4, R-CAP-5, issue 16): nginx terminates
//! HTTPS with the system's OpenSSL 3 (`libssl.so.3`, dynamically linked) and a certificate
//! made by `openssl` for the test; curl talks to it from another namespace. The sensor's
//! uprobes read the plaintext out of nginx's `SSL_read`/`SSL_write` calls. Every transaction
//! in nginx's access logs must be reported exactly once, paired, with its 1 MiB bodies
//! intact, `tls: true`, the library and the nginx process, from a server running before the
//! sensor started and from one started after it; the probes lost nothing, and the sensor
//! holds no capability once attached.
//!
//! 1 000 requests over 50 parallel kept-alive connections (curl `--parallel`) are each reported
//! once with their own body, and Python `requests` is a second client of nginx.
//!
//! The same holds for a server with OpenSSL linked in statically
//! (`tests/fixtures/tls/https_server.c`, built here with `-l:libssl.a -l:libcrypto.a`; no
//! `libssl.so` is mapped: the sensor finds `SSL_read` in the executable's symbol table), and
//! for GnuTLS (`libgnutls.so.30`) on both sides: GnuTLS's own `gnutls-serv` serving curl, and
//! `gnutls-cli` as the client of the static server, compared with what each server logged;
//! for Go's own `crypto/tls` (`tests/fixtures/tls/go_https`) as server and as client; and for
//! BoringSSL (the static server's source built against Debian's shared BoringSSL).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use std::collections::{HashMap, HashSet};
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use apitap_schema::ApiEvent;
use apitap_tests::{
    CLIENT_IP, Netns, Nginx, SERVER_IP, SERVER_PORT, Sensor, Topology, make_test_certificate,
    metric, nginx_preamble, read_events, require, require_privileges, threads_with_capabilities,
    workspace_root,
};

/// HTTPS port of the nginx running before the sensor.
const EARLY_PORT: u16 = 8443;
/// HTTPS port of the nginx started after the sensor.
const LATE_PORT: u16 = 9443;
/// HTTPS port of a copy of the static server started after the sensor.
const COPY_PORT: u16 = 10443;
/// The server name one request is sent to (resolved by curl itself).
const SNI_NAME: &str = "api.apitap.test";
/// Size of the large response and of the large upload.
const BIG: usize = 1024 * 1024;

fn tempdir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("apitap-test-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// Deterministic printable text of `n` bytes, different per `seed`.
fn text(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| b'a' + ((i * 7 + i / 991 + seed as usize) % 26) as u8)
        .collect()
}

/// An HTTPS nginx on `port` (and plain HTTP on `plain_port` for nothing but the readiness
/// probe), with a JSON API, a 1 MiB document and an upload endpoint that reads the body.
fn https_conf(dir: &Path, certs: &Path, port: u16, plain_port: u16) -> String {
    let d = dir.display();
    let c = certs.display();
    format!(
        r#"{preamble}  default_type application/json;
  client_max_body_size 4m;
  client_body_buffer_size 2m;
  server {{
    listen {SERVER_IP}:{plain_port};
    location = /healthz {{ return 204; }}
  }}
  server {{
    listen {SERVER_IP}:{port} ssl;
    ssl_certificate {c}/cert.pem;
    ssl_certificate_key {c}/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    location ~ ^/api/v1/users/(\d+)$ {{ return 200 '{{"id":$1,"name":"user$1"}}'; }}
    location = /big {{ alias {d}/big.txt; }}
    # nginx reads (and discards) the body: every byte goes through SSL_read.
    location = /upload {{ return 201 '{{"status":"created"}}'; }}
    location = /healthz {{ return 204; }}
  }}
}}
"#,
        preamble = nginx_preamble(dir, 64)
    )
}

/// What nginx logged for one request: `method uri status`.
fn logged(n: &Nginx) -> anyhow::Result<Vec<String>> {
    Ok(n.access_log()?
        .iter()
        .map(|l| format!("{} {} {}", l.method, l.uri, l.status))
        .collect())
}

fn key(e: &ApiEvent) -> String {
    format!(
        "{} {} {}",
        e.request.method,
        e.request.path,
        e.response.as_ref().map_or(0, |r| r.status)
    )
}

/// As root (all capabilities until the sensor drops them after attach).
/// POSTs 1 MiB of text (written to `dir/upload.txt`) to `url` with curl from the client
/// namespace, with `extra` curl arguments; returns the bytes sent.
fn upload_1mib(topo: &Topology, dir: &Path, url: &str, extra: &[&str]) -> anyhow::Result<Vec<u8>> {
    let upload = text(BIG, 11);
    let upload_file = dir.join("upload.txt");
    std::fs::write(&upload_file, &upload)?;
    let at = format!("@{}", upload_file.display());
    let mut args = vec!["-k", "-o", "/dev/null", "-H", "Content-Type: text/plain"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--data-binary", &at, url]);
    topo.curl(&args)?;
    Ok(upload)
}

/// The 1 MiB upload arrived whole, and the five keep-alive requests to `/api/v1/users/1..=5`
/// on [`EARLY_PORT`] share one connection, in order, each answered with `user_body(i)`.
fn assert_upload_and_keepalive(
    events: &[ApiEvent],
    upload: &[u8],
    user_body: impl Fn(usize) -> String,
) -> anyhow::Result<()> {
    let up = events
        .iter()
        .find(|e| e.request.path == "/upload")
        .context("the /upload event")?;
    assert_eq!(up.request.body.length_bytes, BIG as u64);
    assert!(
        up.request.body.bytes()? == upload,
        "1 MiB request body differs"
    );
    let mut users: Vec<&ApiEvent> = events
        .iter()
        .filter(|e| e.server.port == EARLY_PORT && e.request.path.starts_with("/api/v1/users/"))
        .collect();
    users.sort_by_key(|e| e.transaction_index);
    assert_eq!(users.len(), 5);
    assert!(
        users
            .iter()
            .all(|e| e.connection_id == users[0].connection_id)
    );
    for (i, e) in users.iter().enumerate() {
        assert_eq!(e.request.path, format!("/api/v1/users/{}", i + 1));
        assert_eq!(
            e.response.as_ref().unwrap().body.bytes()?,
            user_body(i + 1).into_bytes()
        );
    }
    Ok(())
}

#[test]
fn https_plaintext_from_nginx_matches_its_access_log() -> anyhow::Result<()> {
    let test = "https_plaintext_from_nginx_matches_its_access_log";
    if !require_privileges(test) {
        return Ok(());
    }
    https_capture(test, "tls", None)
}

/// As an unprivileged user granted only the capabilities TLS capture needs at start:
/// CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON, and CAP_SYS_ADMIN, without which this kernel refuses
/// the uprobe perf events (`perf_event_open` EACCES with CAP_PERFMON alone); all are dropped
/// after attach. Such a sensor cannot read `/proc/<pid>/exe` of another user's process that
/// was running before it started, so only the server started after it is named by executable.
#[test]
fn https_capture_as_an_unprivileged_user_with_four_capabilities() -> anyhow::Result<()> {
    let test = "https_capture_as_an_unprivileged_user_with_four_capabilities";
    if !require_privileges(test) {
        return Ok(());
    }
    const NOBODY: u32 = 65534;
    https_capture(test, "tlsu", Some(NOBODY))
}

fn https_capture(test: &str, tag: &str, unprivileged: Option<u32>) -> anyhow::Result<()> {
    let lib = [
        "/usr/lib/x86_64-linux-gnu/libssl.so.3",
        "/usr/lib/aarch64-linux-gnu/libssl.so.3",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists());
    if !require(
        test,
        "TLS test",
        lib.is_none()
            .then(|| "libssl.so.3 is not installed (run `cargo xtask setup`)".to_owned()),
    ) {
        return Ok(());
    }
    let dir = tempdir(tag);
    let certs = dir.join("certs");
    make_test_certificate(&certs)?;
    let topo = Topology::new(tag)?;

    // One server before the sensor starts...
    let early_dir = dir.join("nginx-early");
    std::fs::create_dir_all(&early_dir)?;
    let big = text(BIG, 3);
    std::fs::write(early_dir.join("big.txt"), &big)?;
    let early = Nginx::start_conf_ready(
        &topo.server,
        &early_dir,
        &https_conf(&early_dir, &certs, EARLY_PORT, SERVER_PORT),
        &format!("https://{SERVER_IP}:{EARLY_PORT}/healthz"),
        None,
    )?;

    let sensor_dir = dir.join("sensor");
    std::fs::create_dir_all(&sensor_dir)?;
    let caps = "-all,+bpf,+net_admin,+perfmon,+sys_admin";
    let (uid, inh, amb, bnd) = match unprivileged {
        Some(uid) => {
            std::os::unix::fs::chown(&sensor_dir, Some(uid), Some(uid))?;
            (
                format!("--reuid={uid}"),
                format!("--inh-caps={caps}"),
                format!("--ambient-caps={caps}"),
                format!("--bounding-set={caps}"),
            )
        }
        None => Default::default(),
    };
    let gid = uid.replace("reuid", "regid");
    let wrapper: Vec<&str> = match unprivileged {
        Some(_) => vec![
            "setpriv",
            &uid,
            &gid,
            "--clear-groups",
            &inh,
            &amb,
            &bnd,
            "--",
        ],
        None => Vec::new(),
    };
    let mut sensor = Sensor::start_wrapped(
        &topo.server,
        &topo.server_if,
        &[SERVER_PORT],
        "[decode]\nmax_body_bytes = 2097152\n[tls]\nenabled = true\nprocesses = [\"nginx\"]\n",
        &sensor_dir,
        &wrapper,
    )?;
    // R-OPS-3: TLS capture keeps no capability after attach either.
    let pid = sensor.pid().context("sensor pid")?;
    let held = threads_with_capabilities(pid, &["CapInh", "CapPrm", "CapEff", "CapAmb"])?;
    assert!(held.is_empty(), "capabilities kept after attach: {held:?}");
    // Only the attach helper (a separate process, no traffic) keeps the four it needs.
    let log = sensor.log_text();
    let helper: u32 = log
        .lines()
        .find(|l| l.contains("TLS attach helper started"))
        .and_then(|l| {
            l.split("pid=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .context("the attach helper's pid in the log")?;
    let status = std::fs::read_to_string(format!("/proc/{helper}/status"))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .map(|v| v.trim().to_owned())
            .unwrap_or_default()
    };
    let eff = u64::from_str_radix(&field("CapEff"), 16)?;
    // CAP_SYS_PTRACE 19, CAP_SYS_ADMIN 21, CAP_PERFMON 38, CAP_BPF 39.
    let allowed: u64 = 1 << 19 | 1 << 21 | 1 << 38 | 1 << 39;
    assert!(eff != 0 && eff & !allowed == 0, "the helper holds {eff:#x}");
    assert_eq!(field("NoNewPrivs"), "1");
    assert_eq!(field("PPid"), pid.to_string());

    // ... and one after: the probes are on the library file, nothing is attached for it.
    let late_dir = dir.join("nginx-late");
    std::fs::create_dir_all(&late_dir)?;
    std::fs::write(late_dir.join("big.txt"), text(16, 5))?;
    let late = Nginx::start_conf_ready(
        &topo.server,
        &late_dir,
        &https_conf(&late_dir, &certs, LATE_PORT, SERVER_PORT + 1),
        &format!("https://{SERVER_IP}:{LATE_PORT}/healthz"),
        None,
    )?;

    let url = |port: u16, path: &str| format!("https://{SERVER_IP}:{port}{path}");
    // Keep-alive: five requests on one connection.
    let users: Vec<String> = (1..=5)
        .map(|i| url(EARLY_PORT, &format!("/api/v1/users/{i}")))
        .collect();
    let mut args = vec!["-k", "-o", "/dev/null"];
    for u in &users {
        args.extend_from_slice(&[u.as_str(), "-o", "/dev/null"]);
    }
    args.pop();
    args.pop();
    topo.curl(&args)?;
    // 1 MiB response.
    let got = topo.curl(&["-k", &url(EARLY_PORT, "/big")])?;
    assert_eq!(got.len(), BIG, "curl got the whole document");
    // 1 MiB upload.
    let upload = upload_1mib(&topo, &dir, &url(EARLY_PORT, "/upload"), &[])?;
    // The server started after the sensor: curl, then Python `requests` (CPython's own `ssl`
    // module as the client's TLS stack), two requests on one kept-alive session.
    // By name: curl sends it as the server name (SNI), which nginx reads in its servername
    // callback (`SSL_get_servername`).
    let resolve = format!("{SNI_NAME}:{LATE_PORT}:{SERVER_IP}");
    topo.curl(&[
        "-k",
        "-o",
        "/dev/null",
        "--resolve",
        &resolve,
        &format!("https://{SNI_NAME}:{LATE_PORT}/api/v1/users/7"),
    ])?;
    let script = format!(
        "import requests, urllib3\nurllib3.disable_warnings()\ns = requests.Session()\n\
         for i in (8, 9):\n    r = s.get('{}' % i, verify=False)\n    assert r.json()['id'] == i, r.text\n",
        url(LATE_PORT, "/api/v1/users/%d")
    );
    let out = topo.client.cmd("python3", &["-c", &script]).output()?;
    if !out.status.success() {
        bail!("python requests: {}", String::from_utf8_lossy(&out.stderr));
    }

    // Other tests' servers may use the same addresses in their own namespaces: only this
    // test's nginx processes count.
    let early_pids = early.pids()?;
    let late_pids = late.pids()?;
    let mut expected: Vec<(u16, String)> = Vec::new();
    for (port, n) in [(EARLY_PORT, &early), (LATE_PORT, &late)] {
        for l in logged(n)? {
            expected.push((port, l));
        }
    }
    assert_eq!(
        expected.len(),
        10,
        "nginx logged every request: {expected:?}"
    );
    let m = sensor.wait_for_metric(
        "apitap_sensor_events_total",
        expected.len() as u64,
        std::time::Duration::from_secs(30),
    )?;
    // Closing the connections (nginx frees its SSL objects) before stopping: no pending state.
    drop(early);
    drop(late);
    sensor.stop()?;

    for (name, v) in &m {
        if name.starts_with("apitap_tls_kernel_lost_calls_total") {
            assert_eq!(*v, 0, "{name}");
        }
    }
    assert_eq!(metric(&m, "apitap_tls_gaps_total"), 0);
    assert_eq!(metric(&m, "apitap_tls_bad_records_total"), 0);
    assert!(metric(&m, "apitap_tls_kernel_records_total") > 0);

    let events: Vec<ApiEvent> = read_events(&sensor.events)?
        .into_iter()
        // The readiness probes come from the server's own address; the test's from the client.
        .filter(|e| e.client.ip.to_string() == CLIENT_IP)
        .filter(|e| {
            e.process
                .as_ref()
                .is_some_and(|p| early_pids.contains(&p.pid) || late_pids.contains(&p.pid))
        })
        .collect();
    let mut seen: HashMap<(u16, String), usize> = HashMap::new();
    for e in &events {
        assert!(e.tls, "{e:?}");
        assert_eq!(e.tls_library.as_deref(), Some("openssl"));
        assert_eq!(e.server.ip.to_string(), SERVER_IP);
        assert!(e.anomalies.is_empty(), "{}: {:?}", key(e), e.anomalies);
        let p = e.process.as_deref().context("process")?;
        assert_eq!(p.comm, "nginx");
        if unprivileged.is_none() || late_pids.contains(&p.pid) {
            assert_eq!(p.executable.as_deref(), Some("/usr/sbin/nginx"), "{p:?}");
        }
        assert!(p.pid > 1);
        assert!(e.response.is_some(), "paired: {}", key(e));
        *seen.entry((e.server.port, key(e))).or_default() += 1;
    }
    let mut want: HashMap<(u16, String), usize> = HashMap::new();
    for (port, l) in &expected {
        // The access log has the URI, the event the path; the same for these requests.
        *want.entry((*port, l.clone())).or_default() += 1;
    }
    assert_eq!(seen, want, "every transaction reported once");
    // The server name, where one was sent (and only there: the other clients used addresses).
    for e in &events {
        let want = (e.request.path == "/api/v1/users/7").then_some(SNI_NAME);
        assert_eq!(e.tls_sni.as_deref(), want, "{}", key(e));
    }
    assert!(metric(&m, "apitap_tls_sni_total") >= 1);

    // Bodies intact, byte for byte.
    let big_event = events
        .iter()
        .find(|e| e.request.path == "/big")
        .context("the /big event")?;
    let body = &big_event.response.as_ref().unwrap().body;
    assert_eq!(body.length_bytes, BIG as u64);
    assert!(!body.truncated);
    assert!(body.bytes()? == big, "1 MiB response body differs");
    assert_upload_and_keepalive(&events, &upload, |i| {
        format!("{{\"id\":{i},\"name\":\"user{i}\"}}")
    })?;
    // Python's kept-alive session: both requests on one connection, answered in full.
    let py: Vec<&ApiEvent> = events
        .iter()
        .filter(|e| {
            e.server.port == LATE_PORT
                && ["/api/v1/users/8", "/api/v1/users/9"].contains(&e.request.path.as_str())
        })
        .collect();
    assert_eq!(py.len(), 2, "both Python requests reported");
    assert_eq!(py[0].connection_id, py[1].connection_id);
    for e in py {
        let id = e.request.path.rsplit('/').next().unwrap_or_default();
        assert_eq!(
            e.response.as_ref().unwrap().body.bytes()?,
            format!("{{\"id\":{id},\"name\":\"user{id}\"}}").into_bytes()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// The static server's executable name (its `comm`).
const STATIC_SERVER: &str = "tls-static-srv";

/// What is missing to build the static OpenSSL server, if anything.
fn static_build_problem() -> Option<String> {
    let lib = ["/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu"]
        .iter()
        .any(|d| Path::new(d).join("libssl.a").exists());
    let gcc = Command::new("gcc")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    (!lib || !gcc).then(|| "gcc and libssl-dev are needed (run `cargo xtask setup`)".to_owned())
}

/// Builds `tests/fixtures/tls/https_server.c` with OpenSSL's static archives into
/// `dir/name` (the name is its `comm`: tests running at once use different names, so that
/// one test's sensor does not select another test's server).
fn build_static_server(dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let src = workspace_root().join("tests/fixtures/tls/https_server.c");
    let exe = dir.join(name);
    let out = Command::new("gcc")
        .args(["-O2", "-Wall", "-Wextra", "-Werror", "-o"])
        .arg(&exe)
        .arg(&src)
        .args(["-l:libssl.a", "-l:libcrypto.a"])
        .output()
        .context("running gcc")?;
    if !out.status.success() {
        bail!(
            "gcc {}: {}",
            src.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(exe)
}

/// A server process in a namespace (`ip netns exec` execs it in place: its pid is the
/// server's), killed on drop.
struct Server {
    child: Child,
}

impl Server {
    /// Starts `program args` in `ns` with stdout into `stdout`, and waits until `ready_url`
    /// answers (curl from the server's own namespace).
    fn start(
        ns: &Netns,
        program: &str,
        args: &[&str],
        stdout: &Path,
        ready_url: &str,
    ) -> anyhow::Result<Server> {
        let child = ns
            .cmd(program, args)
            .stdout(std::fs::File::create(stdout)?)
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {program}"))?;
        let server = Server { child };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !ns
            .cmd("curl", &["-s", "-k", "-o", "/dev/null", "-f", ready_url])
            .status()
            .is_ok_and(|s| s.success())
        {
            if Instant::now() > deadline {
                bail!("{program} did not answer {ready_url}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(server)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The static server on `port`, logging into `log`.
fn start_static(
    ns: &Netns,
    exe: &Path,
    certs: &Path,
    port: u16,
    log: &Path,
) -> anyhow::Result<Server> {
    let (cert, key) = (certs.join("cert.pem"), certs.join("key.pem"));
    let port_s = port.to_string();
    let args = [
        cert.to_str().context("path")?,
        key.to_str().context("path")?,
        SERVER_IP,
        &port_s,
        log.to_str().context("path")?,
    ];
    Server::start(
        ns,
        exe.to_str().context("path")?,
        &args,
        &log.with_extension("out"),
        &format!("https://{SERVER_IP}:{port}/healthz"),
    )
}

/// One request the static server logged.
#[derive(Debug, Clone, PartialEq, Eq)]
struct StaticLine {
    peer: String,
    key: String,
    body_len: u64,
    body_fnv: u64,
    response_len: u64,
}

/// The static server's log (`peer method path status body_len body_fnv1a64 response_len`),
/// the test client's requests only (the readiness probes come from the server's address).
fn static_log(path: &Path) -> anyhow::Result<Vec<StaticLine>> {
    let mut out = Vec::new();
    for l in std::fs::read_to_string(path)?.lines() {
        let f: Vec<&str> = l.split(' ').collect();
        if f.len() != 7 {
            bail!("bad log line {l:?}");
        }
        if f[0] != CLIENT_IP {
            continue;
        }
        out.push(StaticLine {
            peer: f[0].to_owned(),
            key: format!("{} {} {}", f[1], f[2], f[3]),
            body_len: f[4].parse()?,
            body_fnv: u64::from_str_radix(f[5], 16)?,
            response_len: f[6].parse()?,
        });
    }
    Ok(out)
}

/// FNV-1a 64, as the static server hashes request bodies.
fn fnv1a(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325, |h, x| {
        (h ^ u64::from(*x)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The sensor in the server namespace with `config` (TOML), once its log says a TLS library
/// was probed whose log line holds every one of `probed`.
fn tls_sensor(
    topo: &Topology,
    dir: &Path,
    config: &str,
    probed: &[&str],
) -> anyhow::Result<Sensor> {
    let sensor = Sensor::start_with(
        &topo.server,
        &topo.server_if,
        &[SERVER_PORT],
        config,
        &dir.join("sensor"),
    )?;
    let log = sensor.log_text();
    if !log
        .lines()
        .any(|l| l.contains("TLS library probed") && probed.iter().all(|p| l.contains(p)))
    {
        bail!("no TLS library probed with {probed:?}:\n{log}");
    }
    Ok(sensor)
}

/// Kernel losses, gaps and unusable records are all zero.
fn assert_nothing_lost(m: &[(String, u64)]) {
    for (name, v) in m {
        if name.starts_with("apitap_tls_kernel_lost_calls_total") {
            assert_eq!(*v, 0, "{name}");
        }
    }
    assert_eq!(metric(m, "apitap_tls_gaps_total"), 0);
    assert_eq!(metric(m, "apitap_tls_bad_records_total"), 0);
    assert!(metric(m, "apitap_tls_kernel_records_total") > 0);
}

/// OpenSSL linked into the server executable: found by its symbols at start, probed by file,
/// so a second process of the same executable started after the sensor is traced too. A copy
/// of the executable (another file) first run after the sensor started is probed by the
/// attach helper (`tls.attach_later`), traced, and detached once it has exited.
#[test]
fn https_plaintext_from_a_server_with_openssl_linked_in_statically() -> anyhow::Result<()> {
    let test = "https_plaintext_from_a_server_with_openssl_linked_in_statically";
    if !require_privileges(test) || !require(test, "static OpenSSL test", static_build_problem()) {
        return Ok(());
    }
    let dir = tempdir("tlss");
    let certs = dir.join("certs");
    make_test_certificate(&certs)?;
    let exe = build_static_server(&dir, STATIC_SERVER)?;
    let topo = Topology::new("tlss")?;
    let early_log = dir.join("early.log");
    let early = start_static(&topo.server, &exe, &certs, EARLY_PORT, &early_log)?;
    // No shared OpenSSL in the process: only the executable's own copy can be probed.
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", early.pid()))?;
    assert!(
        !maps.contains("libssl") && !maps.contains("libcrypto"),
        "the static server maps a shared OpenSSL:\n{maps}"
    );
    assert!(maps.contains(STATIC_SERVER), "{maps}");

    let mut sensor = tls_sensor(
        &topo,
        &dir,
        &format!(
            "[decode]\nmax_body_bytes = 2097152\n[tls]\nenabled = true\nprocesses = [\"{STATIC_SERVER}\"]\nrescan_interval_secs = 1\n"
        ),
        &[STATIC_SERVER, "openssl"],
    )?;
    let attached = "apitap_tls_late_files_total{outcome=\"attached\"}";
    assert_eq!(metric(&sensor.metrics()?, attached), 0);
    let late_log = dir.join("late.log");
    let late = start_static(&topo.server, &exe, &certs, LATE_PORT, &late_log)?;
    // A copy of the executable (another inode) first run after the sensor started: the
    // sensor holds no capability any more; its attach helper probes the new file.
    let copy_dir = dir.join("copy");
    std::fs::create_dir_all(&copy_dir)?;
    let copy = copy_dir.join(STATIC_SERVER);
    std::fs::copy(&exe, &copy)?;
    let copy_log = dir.join("copy.log");
    let copied = start_static(&topo.server, &copy, &certs, COPY_PORT, &copy_log)?;
    sensor.wait_for_metric(attached, 1, Duration::from_secs(10))?;

    let url = |port: u16, path: &str| format!("https://{SERVER_IP}:{port}{path}");
    // Keep-alive: five requests on one connection.
    let users: Vec<String> = (1..=5)
        .map(|i| url(EARLY_PORT, &format!("/api/v1/users/{i}")))
        .collect();
    let mut args = vec!["-k"];
    for u in &users {
        args.extend_from_slice(&["-o", "/dev/null", u.as_str()]);
    }
    topo.curl(&args)?;
    // 1 MiB response.
    let big = text(BIG, 3);
    let got = topo.curl(&["-k", &url(EARLY_PORT, &format!("/bytes/{BIG}"))])?;
    assert!(got.as_bytes() == big, "curl got the whole document");
    // 1 MiB upload.
    let upload = upload_1mib(&topo, &dir, &url(EARLY_PORT, "/upload"), &["-H", "Expect:"])?;
    // The process started after the sensor, from the same executable.
    for i in [7, 8] {
        topo.curl(&[
            "-k",
            "-o",
            "/dev/null",
            &url(LATE_PORT, &format!("/api/v1/users/{i}")),
        ])?;
    }
    topo.curl(&["-k", "-o", "/dev/null", &url(COPY_PORT, "/api/v1/users/9")])?;
    assert_eq!(
        static_log(&copy_log)?.len(),
        1,
        "the copy served its request"
    );

    let mut expected: Vec<(u16, StaticLine)> = Vec::new();
    for (port, log) in [(EARLY_PORT, &early_log), (LATE_PORT, &late_log)] {
        expected.extend(static_log(log)?.into_iter().map(|l| (port, l)));
    }
    assert_eq!(
        expected.len(),
        9,
        "the server logged every request: {expected:?}"
    );
    // The late server's readiness probe is traced too (from the server's own address).
    sensor.wait_for_metric(
        "apitap_sensor_events_total",
        expected.len() as u64 + 1,
        Duration::from_secs(30),
    )?;
    let pids = [early.pid(), late.pid()];
    let copy_pid = copied.pid();
    // The copy gone, no selected process maps its file: detached after three rescans.
    drop(copied);
    let m = sensor.wait_for_metric(
        "apitap_tls_late_files_total{outcome=\"detached\"}",
        1,
        Duration::from_secs(15),
    )?;
    drop(early);
    drop(late);
    sensor.stop()?;
    assert_nothing_lost(&m);
    // R-CAP-4: nothing left uncaptured; both later processes were reported by the exec
    // tracepoint and checked; the helper probed exactly the copy's file.
    assert_eq!(
        metric(
            &m,
            "apitap_tls_unsupported_processes_total{library=\"openssl\",reason=\"not_probed\"}"
        ),
        0
    );
    assert_eq!(metric(&m, attached), 1);
    assert_eq!(
        metric(&m, "apitap_tls_late_files_total{outcome=\"failed\"}"),
        0
    );
    assert!(metric(&m, "apitap_tls_kernel_execs_total") >= 2);
    assert!(metric(&m, "apitap_tls_exec_checks_total{result=\"checked\"}") >= 2);
    let log = sensor.log_text();
    assert!(
        log.lines()
            .any(|l| l.contains("TLS library probed after start")),
        "the helper's probe is not in the log:\n{log}"
    );
    let all = read_events(&sensor.events)?;
    let copy_events: Vec<String> = all
        .iter()
        .filter(|e| e.process.as_ref().is_some_and(|p| p.pid == copy_pid))
        .filter(|e| e.client.ip.to_string() == CLIENT_IP)
        .map(key)
        .collect();
    assert_eq!(
        copy_events,
        ["GET /api/v1/users/9 200"],
        "the copy, probed late"
    );

    let events: Vec<ApiEvent> = read_events(&sensor.events)?
        .into_iter()
        .filter(|e| e.client.ip.to_string() == CLIENT_IP)
        .filter(|e| e.process.as_ref().is_some_and(|p| pids.contains(&p.pid)))
        .collect();
    let exe_path = exe.to_string_lossy().into_owned();
    let mut seen: HashMap<(u16, String), usize> = HashMap::new();
    for e in &events {
        assert!(e.tls, "{e:?}");
        assert_eq!(e.tls_library.as_deref(), Some("openssl"));
        assert_eq!(e.server.ip.to_string(), SERVER_IP);
        assert!(e.anomalies.is_empty(), "{}: {:?}", key(e), e.anomalies);
        let p = e.process.as_deref().context("process")?;
        assert_eq!(p.comm, STATIC_SERVER);
        assert_eq!(p.executable.as_deref(), Some(exe_path.as_str()), "{p:?}");
        assert!(e.response.is_some(), "paired: {}", key(e));
        *seen.entry((e.server.port, key(e))).or_default() += 1;
    }
    let mut want: HashMap<(u16, String), usize> = HashMap::new();
    for (port, l) in &expected {
        *want.entry((*port, l.key.clone())).or_default() += 1;
    }
    assert_eq!(seen, want, "every transaction reported once");
    // Bodies as the server received and sent them, byte for byte.
    for (port, l) in &expected {
        let e = events
            .iter()
            .find(|e| e.server.port == *port && key(e) == l.key)
            .context("event")?;
        let req = e.request.body.bytes()?;
        assert_eq!(
            (req.len() as u64, fnv1a(&req)),
            (l.body_len, l.body_fnv),
            "{}",
            l.key
        );
        let res = e.response.as_ref().unwrap();
        assert_eq!(res.body.length_bytes, l.response_len, "{}", l.key);
        assert!(!res.body.truncated && !e.request.body.truncated);
        assert_eq!(l.peer, e.client.ip.to_string());
    }
    let big_event = events
        .iter()
        .find(|e| e.request.path == format!("/bytes/{BIG}"))
        .context("the 1 MiB response")?;
    assert!(
        big_event.response.as_ref().unwrap().body.bytes()? == big,
        "1 MiB response differs"
    );
    assert_upload_and_keepalive(&events, &upload, |i| {
        format!("{{\"path\":\"/api/v1/users/{i}\",\"received\":0}}")
    })?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// What is missing for the GnuTLS test, if anything.
fn gnutls_problem() -> Option<String> {
    let lib = ["/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu"]
        .iter()
        .any(|d| Path::new(d).join("libgnutls.so.30").exists());
    let tools = ["gnutls-serv", "gnutls-cli"].iter().all(|t| {
        Command::new(t)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    });
    (!lib || !tools)
        .then(|| "gnutls-bin (libgnutls.so.30) is needed (run `cargo xtask setup`)".to_owned())
        .or_else(static_build_problem)
}

/// Runs `gnutls-cli` in `ns` against `port` and sends it `steps` in turn: each step's bytes,
/// then a wait until what it printed contains the step's marker (one request at a time on the
/// connection, as a keep-alive client does). Its input stays open until the server closes the
/// connection (at EOF on its input gnutls-cli would end the session before the responses
/// arrive). Returns its pid and what it printed. Bounded in time.
fn gnutls_client(
    ns: &Netns,
    port: u16,
    steps: Vec<(Vec<u8>, Vec<u8>)>,
) -> anyhow::Result<(u32, Vec<u8>)> {
    let port_s = port.to_string();
    let mut child = ns
        .cmd(
            "gnutls-cli",
            &[
                "--insecure",
                "--sni-hostname",
                SNI_NAME,
                "--port",
                &port_s,
                SERVER_IP,
            ],
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("starting gnutls-cli")?;
    let pid = child.id();
    let printed = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
    let mut stdout = child.stdout.take().context("stdout")?;
    let sink = printed.clone();
    let reader = std::thread::spawn(move || -> std::io::Result<()> {
        let mut buf = [0u8; 65536];
        loop {
            let n = stdout.read(&mut buf)?;
            if n == 0 {
                return Ok(());
            }
            sink.lock().expect("lock").extend_from_slice(&buf[..n]);
        }
    });
    let mut stdin = child.stdin.take().context("stdin")?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut result = Ok(());
    for (bytes, marker) in steps {
        if let Err(e) = stdin.write_all(&bytes) {
            result = Err(anyhow::Error::from(e).context("writing to gnutls-cli"));
            break;
        }
        while !printed
            .lock()
            .expect("lock")
            .windows(marker.len())
            .any(|w| w == marker.as_slice())
        {
            if Instant::now() > deadline || reader.is_finished() {
                result = Err(anyhow::anyhow!(
                    "gnutls-cli never printed {:?}",
                    String::from_utf8_lossy(&marker)
                ));
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if result.is_err() {
            break;
        }
    }
    // The last request asks the server to close: gnutls-cli then exits by itself.
    while result.is_ok() && !reader.is_finished() {
        if Instant::now() > deadline {
            result = Err(anyhow::anyhow!("gnutls-cli did not exit"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if result.is_err() {
        let _ = child.kill();
    }
    drop(stdin);
    let status = child.wait()?;
    let _ = reader.join();
    result?;
    if !status.success() {
        bail!("gnutls-cli: {status}");
    }
    let out = std::mem::take(&mut *printed.lock().expect("lock"));
    Ok((pid, out))
}

/// GnuTLS on both sides (`libgnutls.so.30`): its own `gnutls-serv --http` serving a 1 MiB
/// document to curl (one connection per request), and `gnutls-cli` as the client of the
/// static OpenSSL server, uploading 1 MiB and downloading 1 MiB on one connection. Every
/// connection `gnutls-serv` reports accepting, and every request the static server logged,
/// is one event with `tls_library: gnutls`, the GnuTLS process and intact bodies.
#[test]
fn https_plaintext_from_gnutls_server_and_client() -> anyhow::Result<()> {
    let test = "https_plaintext_from_gnutls_server_and_client";
    if !require_privileges(test) || !require(test, "GnuTLS test", gnutls_problem()) {
        return Ok(());
    }
    let dir = tempdir("tlsg");
    let certs = dir.join("certs");
    make_test_certificate(&certs)?;
    let exe = build_static_server(&dir, "tls-static-peer")?;
    let topo = Topology::new("tlsg")?;
    let served = text(BIG, 5);
    let served_file = dir.join("served.bin");
    std::fs::write(&served_file, &served)?;
    let port_s = EARLY_PORT.to_string();
    let (cert, key_file) = (certs.join("cert.pem"), certs.join("key.pem"));
    let gs_out = dir.join("gnutls-serv.out");
    let gnutls_serv = Server::start(
        &topo.server,
        "gnutls-serv",
        &[
            "--http",
            &format!("--httpdata={}", served_file.display()),
            "--port",
            &port_s,
            "--x509certfile",
            cert.to_str().context("path")?,
            "--x509keyfile",
            key_file.to_str().context("path")?,
        ],
        &gs_out,
        &format!("https://{SERVER_IP}:{EARLY_PORT}/ready"),
    )?;
    // The static server is only gnutls-cli's peer: not traced (not in `tls.processes`).
    let static_log_file = dir.join("static.log");
    let target = start_static(&topo.server, &exe, &certs, LATE_PORT, &static_log_file)?;

    let mut sensor = tls_sensor(
        &topo,
        &dir,
        "[decode]\nmax_body_bytes = 2097152\n[tls]\nenabled = true\nprocesses = [\"gnutls-serv\", \"gnutls-cli\"]\n",
        &["libgnutls.so.30", "gnutls"],
    )?;

    // Server side: three requests, one connection each (gnutls-serv closes after a response).
    let paths = ["/first", "/second?x=1", "/third"];
    for p in paths {
        let got = topo.curl(&["-k", &format!("https://{SERVER_IP}:{EARLY_PORT}{p}")])?;
        assert!(
            got.as_bytes() == served,
            "curl got the document from gnutls-serv"
        );
    }
    // Client side: a 1 MiB upload, its response, then a 1 MiB download on the same
    // connection.
    let upload = text(BIG, 11);
    let mut post = format!(
        "POST /upload HTTP/1.1\r\nHost: {SERVER_IP}\r\nContent-Type: text/plain\r\nContent-Length: {BIG}\r\n\r\n"
    )
    .into_bytes();
    post.extend_from_slice(&upload);
    let get =
        format!("GET /bytes/{BIG} HTTP/1.1\r\nHost: {SERVER_IP}\r\nConnection: close\r\n\r\n");
    let (cli_pid, printed) = gnutls_client(
        &topo.client,
        LATE_PORT,
        vec![
            (post, format!("\"received\":{BIG}}}").into_bytes()),
            (get.into_bytes(), b"Connection: close\r\n\r\n".to_vec()),
        ],
    )?;
    let big = text(BIG, 3);
    assert!(
        printed.windows(big.len()).any(|w| w == big.as_slice()),
        "gnutls-cli printed the 1 MiB response"
    );
    let logged = static_log(&static_log_file)?;
    assert_eq!(
        logged.iter().map(|l| l.key.as_str()).collect::<Vec<_>>(),
        ["POST /upload 201", &format!("GET /bytes/{BIG} 200")],
        "the static server logged both requests"
    );

    // gnutls-serv's own report: the connections it accepted from the client.
    let prefix = format!("* Accepted connection from IPv4 {CLIENT_IP} port ");
    let wait_out = Instant::now() + Duration::from_secs(5);
    let accepted = loop {
        let text = std::fs::read_to_string(&gs_out)?;
        let ports: HashSet<u16> = text
            .lines()
            .filter_map(|l| l.strip_prefix(&prefix))
            .filter_map(|r| r.split_whitespace().next()?.parse().ok())
            .collect();
        if ports.len() >= paths.len() || Instant::now() > wait_out {
            break ports;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        accepted.len(),
        paths.len(),
        "gnutls-serv accepted: {accepted:?}"
    );

    let m = sensor.wait_for_metric(
        "apitap_sensor_events_total",
        (paths.len() + logged.len()) as u64,
        Duration::from_secs(30),
    )?;
    let serv_pid = gnutls_serv.pid();
    drop(gnutls_serv);
    drop(target);
    sensor.stop()?;
    assert_nothing_lost(&m);

    let events: Vec<ApiEvent> = read_events(&sensor.events)?
        .into_iter()
        .filter(|e| e.client.ip.to_string() == CLIENT_IP)
        .filter(|e| {
            e.process
                .as_ref()
                .is_some_and(|p| p.pid == serv_pid || p.pid == cli_pid)
        })
        .collect();
    for e in &events {
        assert!(e.tls, "{e:?}");
        assert_eq!(e.tls_library.as_deref(), Some("gnutls"), "{}", key(e));
        assert_eq!(e.server.ip.to_string(), SERVER_IP);
        assert!(e.anomalies.is_empty(), "{}: {:?}", key(e), e.anomalies);
        assert!(e.response.is_some(), "paired: {}", key(e));
        let res = e.response.as_ref().unwrap();
        assert!(
            !res.body.truncated && !e.request.body.truncated,
            "{}",
            key(e)
        );
    }
    // Server side: one event per accepted connection, from that connection's client port.
    let serv: Vec<&ApiEvent> = events
        .iter()
        .filter(|e| e.process.as_ref().is_some_and(|p| p.pid == serv_pid))
        .collect();
    assert_eq!(
        serv.len(),
        paths.len(),
        "{:?}",
        serv.iter().map(|e| key(e)).collect::<Vec<_>>()
    );
    let ports: HashSet<u16> = serv.iter().map(|e| e.client.port).collect();
    assert_eq!(ports, accepted, "the connections gnutls-serv reported");
    let mut got_paths: Vec<String> = serv
        .iter()
        .map(|e| match &e.request.query {
            Some(q) => format!("{}?{q}", e.request.path),
            None => e.request.path.clone(),
        })
        .collect();
    got_paths.sort();
    let mut want_paths: Vec<String> = paths.iter().map(|p| (*p).to_owned()).collect();
    want_paths.sort();
    assert_eq!(got_paths, want_paths);
    for e in &serv {
        let p = e.process.as_deref().context("process")?;
        assert_eq!(p.comm, "gnutls-serv");
        assert_eq!(
            p.executable.as_deref(),
            Some("/usr/bin/gnutls-serv"),
            "{p:?}"
        );
        assert_eq!(e.server.port, EARLY_PORT);
        assert_eq!(e.request.method, "GET");
        let res = e.response.as_ref().unwrap();
        assert_eq!(res.status, 200);
        assert!(
            res.body.bytes()? == served,
            "{}: 1 MiB response differs",
            key(e)
        );
    }
    // Client side: the two requests on one connection, as the static server logged them.
    let mut cli: Vec<&ApiEvent> = events
        .iter()
        .filter(|e| e.process.as_ref().is_some_and(|p| p.pid == cli_pid))
        .collect();
    cli.sort_by_key(|e| e.transaction_index);
    assert_eq!(
        cli.iter().map(|e| key(e)).collect::<Vec<_>>(),
        logged.iter().map(|l| l.key.clone()).collect::<Vec<_>>()
    );
    assert!(cli.iter().all(|e| e.connection_id == cli[0].connection_id));
    for (e, l) in cli.iter().zip(&logged) {
        let p = e.process.as_deref().context("process")?;
        assert_eq!(p.comm, "gnutls-cli");
        // The client set the server name (`gnutls_server_name_set`).
        assert_eq!(e.tls_sni.as_deref(), Some(SNI_NAME), "{}", l.key);
        assert!(
            p.executable
                .as_deref()
                .is_some_and(|x| x.ends_with("/gnutls-cli")),
            "{p:?}"
        );
        assert_eq!(e.server.port, LATE_PORT);
        let req = e.request.body.bytes()?;
        assert_eq!(
            (req.len() as u64, fnv1a(&req)),
            (l.body_len, l.body_fnv),
            "{}",
            l.key
        );
        assert_eq!(
            e.response.as_ref().unwrap().body.length_bytes,
            l.response_len
        );
    }
    assert!(
        cli[0].request.body.bytes()? == upload,
        "1 MiB upload differs"
    );
    assert!(
        cli[1].response.as_ref().unwrap().body.bytes()? == big,
        "1 MiB download differs"
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Port of the nginx serving many concurrent HTTPS connections.
const CONCURRENT_PORT: u16 = 10443;
/// Requests sent over them, each to its own URI.
const CONCURRENT_REQUESTS: usize = 1000;

/// Many concurrent HTTPS connections (issue 16): curl sends 1 000 requests to 1 000 distinct
/// URIs over up to 50 parallel kept-alive connections to nginx; every one is reported exactly
/// once, paired, with its own body, and the probes lose nothing. The nginx binary runs under a
/// command name of its own (a copy named `nginx-conc`), so that other tests' sensors, which
/// select `nginx`, do not trace it, and this sensor traces only it.
#[test]
fn https_capture_of_many_concurrent_connections() -> anyhow::Result<()> {
    let test = "https_capture_of_many_concurrent_connections";
    if !require_privileges(test) {
        return Ok(());
    }
    let dir = tempdir("tls-conc");
    let certs = dir.join("certs");
    make_test_certificate(&certs)?;
    std::fs::create_dir_all(dir.join("tmp"))?;
    let exe = dir.join("nginx-conc");
    std::fs::copy("/usr/sbin/nginx", &exe).context("copying nginx")?;
    let conf = dir.join("nginx.conf");
    std::fs::write(
        &conf,
        https_conf(&dir, &certs, CONCURRENT_PORT, SERVER_PORT + 2),
    )?;
    let topo = Topology::new("tlsconc")?;
    let _server = Server::start(
        &topo.server,
        &exe.to_string_lossy(),
        &["-c", &conf.to_string_lossy(), "-p", &dir.to_string_lossy()],
        &dir.join("nginx.out"),
        &format!("http://{SERVER_IP}:{}/healthz", SERVER_PORT + 2),
    )?;
    let sensor_dir = dir.join("sensor");
    std::fs::create_dir_all(&sensor_dir)?;
    let mut sensor = Sensor::start_with(
        &topo.server,
        &topo.server_if,
        &[SERVER_PORT],
        "[tls]\nenabled = true\nprocesses = [\"nginx-conc\"]\n",
        &sensor_dir,
    )?;
    let out = topo
        .client
        .cmd(
            "curl",
            &[
                "-s",
                "-k",
                "-f",
                "--parallel",
                "--parallel-max",
                "50",
                &format!(
                    "https://{SERVER_IP}:{CONCURRENT_PORT}/api/v1/users/[1-{CONCURRENT_REQUESTS}]"
                ),
            ],
        )
        .output()?;
    if !out.status.success() {
        bail!("curl: {}", String::from_utf8_lossy(&out.stderr));
    }
    let m = sensor.wait_for_metric(
        "apitap_sensor_events_total",
        CONCURRENT_REQUESTS as u64,
        Duration::from_secs(60),
    )?;
    for (name, v) in &m {
        if name.starts_with("apitap_tls_kernel_lost_calls_total") {
            assert_eq!(*v, 0, "{name}");
        }
    }
    assert_eq!(metric(&m, "apitap_tls_gaps_total"), 0);
    sensor.stop()?;

    let events: Vec<ApiEvent> = read_events(&sensor.events)?
        .into_iter()
        .filter(|e| e.server.port == CONCURRENT_PORT)
        .collect();
    let mut per_path: HashMap<String, usize> = HashMap::new();
    let mut connections = HashSet::new();
    for e in &events {
        assert!(
            e.tls && e.anomalies.is_empty(),
            "{}: {:?}",
            key(e),
            e.anomalies
        );
        assert_eq!(
            e.process.as_ref().map(|p| p.comm.as_str()),
            Some("nginx-conc")
        );
        let id = e
            .request
            .path
            .strip_prefix("/api/v1/users/")
            .context("a users path")?;
        assert_eq!(
            e.response.as_ref().context("paired")?.body.bytes()?,
            format!("{{\"id\":{id},\"name\":\"user{id}\"}}").into_bytes(),
            "{}",
            key(e)
        );
        *per_path.entry(e.request.path.clone()).or_default() += 1;
        connections.insert(e.connection_id.clone());
    }
    for i in 1..=CONCURRENT_REQUESTS {
        assert_eq!(
            per_path.get(&format!("/api/v1/users/{i}")),
            Some(&1),
            "request {i}"
        );
    }
    assert_eq!(events.len(), CONCURRENT_REQUESTS);
    assert!(
        connections.len() > 1,
        "curl ran its connections in parallel: {} connection(s)",
        connections.len()
    );
    eprintln!(
        "{} requests over {} connections, all reported once",
        events.len(),
        connections.len()
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn go_problem() -> Option<String> {
    let go = Command::new("go")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    (!go).then(|| "Go is needed (golang-go; run `cargo xtask setup`)".to_owned())
}

/// Builds `tests/fixtures/tls/go_https` (standard library only, offline) into `dir/name`.
fn build_go(dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let exe = dir.join(name);
    let out = Command::new("go")
        .args(["build", "-o"])
        .arg(&exe)
        .arg(".")
        .current_dir(workspace_root().join("tests/fixtures/tls/go_https"))
        .env("GOCACHE", dir.join("gocache"))
        .env("GOPATH", dir.join("gopath"))
        .env("GOPROXY", "off")
        .env("GOFLAGS", "-mod=mod")
        .env("HOME", dir)
        .output()
        .context("running go build")?;
    if !out.status.success() {
        bail!("go build: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(exe)
}

/// Go's own `crypto/tls` on both sides (no C library): a Go HTTPS server running before the
/// sensor, served by curl and by a Go client started after it (the same executable, probed
/// once by file). The probes enter `(*Conn).Read`/`Write` and leave at their `RET`
/// instructions (Go moves stacks: no uretprobe), keyed by goroutine. Every request the server
/// logged is one server-side event, every request of the Go client one client-side event on
/// one connection, `tls_library: go`, the process named, 1 MiB upload and download intact.
#[test]
fn https_plaintext_from_go_server_and_client() -> anyhow::Result<()> {
    let test = "https_plaintext_from_go_server_and_client";
    if !require_privileges(test) || !require(test, "Go TLS test", go_problem()) {
        return Ok(());
    }
    let dir = tempdir("tlsgo");
    let certs = dir.join("certs");
    make_test_certificate(&certs)?;
    // Its name is its comm, which selects it (and nothing of the other tests).
    let exe = build_go(&dir, "gohttps-t")?;
    let exe_s = exe.to_str().context("path")?;
    let topo = Topology::new("tlsgo")?;
    let log_file = dir.join("go.log");
    let (cert, key_file) = (certs.join("cert.pem"), certs.join("key.pem"));
    let addr = format!("{SERVER_IP}:{EARLY_PORT}");
    let server = Server::start(
        &topo.server,
        exe_s,
        &[
            "server",
            cert.to_str().context("path")?,
            key_file.to_str().context("path")?,
            &addr,
            log_file.to_str().context("path")?,
        ],
        &dir.join("go.out"),
        &format!("https://{addr}/healthz"),
    )?;
    let mut sensor = tls_sensor(
        &topo,
        &dir,
        "[decode]\nmax_body_bytes = 2097152\n[tls]\nenabled = true\nprocesses = [\"gohttps-t\"]\n",
        &["gohttps-t", "go"],
    )?;

    // curl: two requests on one connection.
    let url = format!("https://{addr}");
    let got = topo.curl(&[
        "-k",
        "--http1.1",
        &format!("{url}/json?a=1"),
        &format!("{url}/bytes/4096"),
    ])?;
    assert!(got.contains("\"received\":0"), "{got}");
    // The Go client, started after the sensor: upload, download, a small request, one
    // kept-alive connection.
    let up = format!("POST:{BIG}/upload");
    let big_path = format!("/bytes/{BIG}");
    let out = topo
        .client
        .cmd(exe_s, &["client", &url, &up, &big_path, "/json?b=2"])
        .stderr(Stdio::inherit())
        .output()
        .context("running the Go client")?;
    assert!(out.status.success(), "Go client failed");
    let printed = String::from_utf8(out.stdout)?;
    let big = text(BIG, 3);
    assert_eq!(
        printed
            .lines()
            .map(|l| l.split(' ').next().unwrap_or(""))
            .collect::<Vec<_>>(),
        ["201", "200", "200"],
        "{printed}"
    );
    assert!(
        printed.contains(&format!("200 {BIG} {:016x}", fnv1a(&big))),
        "{printed}"
    );
    let logged = static_log(&log_file)?;
    assert_eq!(logged.len(), 5, "{logged:?}");
    let m = sensor.wait_for_metric("apitap_sensor_events_total", 8, Duration::from_secs(30))?;
    let serv_pid = server.pid();
    drop(server);
    sensor.stop()?;
    assert_nothing_lost(&m);

    let events: Vec<ApiEvent> = read_events(&sensor.events)?
        .into_iter()
        .filter(|e| e.client.ip.to_string() == CLIENT_IP)
        .collect();
    // Method, target as sent (with its query, as the server logs it) and status.
    let key = |e: &ApiEvent| {
        let target = match &e.request.query {
            Some(q) => format!("{}?{q}", e.request.path),
            None => e.request.path.clone(),
        };
        let status = e.response.as_ref().map_or(0, |r| r.status);
        format!("{} {target} {status}", e.request.method)
    };
    for e in &events {
        assert!(e.tls, "{}", key(e));
        assert_eq!(e.tls_library.as_deref(), Some("go"), "{}", key(e));
        assert_eq!(e.server.ip.to_string(), SERVER_IP);
        assert_eq!(e.server.port, EARLY_PORT);
        assert!(e.anomalies.is_empty(), "{}: {:?}", key(e), e.anomalies);
        let res = e.response.as_ref().context("paired")?;
        assert!(
            !res.body.truncated && !e.request.body.truncated,
            "{}",
            key(e)
        );
        let p = e.process.as_deref().context("process")?;
        assert_eq!(p.comm, "gohttps-t");
        assert_eq!(p.executable.as_deref(), Some(exe_s), "{p:?}");
    }
    // Server side: exactly what the server logged, bodies compared by length and hash.
    let mut serv: Vec<&ApiEvent> = events
        .iter()
        .filter(|e| e.process.as_ref().is_some_and(|p| p.pid == serv_pid))
        .collect();
    serv.sort_by_key(|e| (e.connection_id.clone(), e.transaction_index));
    let mut got_keys: Vec<String> = serv.iter().map(|e| key(e)).collect();
    let mut want_keys: Vec<String> = logged.iter().map(|l| l.key.clone()).collect();
    got_keys.sort();
    want_keys.sort();
    assert_eq!(got_keys, want_keys);
    for l in &logged {
        let e = serv
            .iter()
            .find(|e| key(e) == l.key)
            .context("logged request")?;
        let req = e.request.body.bytes()?;
        assert_eq!(
            (req.len() as u64, fnv1a(&req)),
            (l.body_len, l.body_fnv),
            "{}",
            l.key
        );
        assert_eq!(
            e.response.as_ref().unwrap().body.length_bytes,
            l.response_len,
            "{}",
            l.key
        );
    }
    // Client side: the Go client's three requests, in order, on one connection.
    let mut cli: Vec<&ApiEvent> = events
        .iter()
        .filter(|e| e.process.as_ref().is_some_and(|p| p.pid != serv_pid))
        .collect();
    cli.sort_by_key(|e| e.transaction_index);
    assert_eq!(
        cli.iter().map(|e| key(e)).collect::<Vec<_>>(),
        [
            "POST /upload 201",
            &format!("GET {big_path} 200"),
            "GET /json?b=2 200"
        ]
    );
    assert!(cli.iter().all(|e| e.connection_id == cli[0].connection_id));
    assert!(
        cli[0].request.body.bytes()? == text(BIG, 11),
        "1 MiB upload differs"
    );
    assert!(
        cli[1].response.as_ref().unwrap().body.bytes()? == big,
        "1 MiB download differs"
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Debian's BoringSSL (the Android SDK's build, shared).
const BORINGSSL_DIR: &str = "/usr/lib/x86_64-linux-gnu/android";

fn boringssl_problem() -> Option<String> {
    let ok = Path::new("/usr/include/android/openssl/ssl.h").exists()
        && Path::new(BORINGSSL_DIR).join("libssl.so").exists();
    (!ok)
        .then(|| "android-libboringssl-dev is needed (run `cargo xtask setup`)".to_owned())
        .or_else(static_build_problem)
}

/// BoringSSL (`libssl.so.0`, Debian's Android SDK build): the static server's source built
/// against it and dynamically linked. Found among the running process's mappings by its
/// symbols, named `boringssl`; every request the server logged is one event with intact
/// 1 MiB bodies (BoringSSL has no `SSL_read_ex`/`SSL_write_ex`: the plain forms carry all).
#[test]
fn https_plaintext_from_a_boringssl_server() -> anyhow::Result<()> {
    let test = "https_plaintext_from_a_boringssl_server";
    if !require_privileges(test) || !require(test, "BoringSSL test", boringssl_problem()) {
        return Ok(());
    }
    let dir = tempdir("tlsb");
    let certs = dir.join("certs");
    make_test_certificate(&certs)?;
    let name = "tls-boring-srv";
    let exe = dir.join(name);
    let src = workspace_root().join("tests/fixtures/tls/https_server.c");
    let out = Command::new("gcc")
        .args([
            "-O2",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-I/usr/include/android",
            "-o",
        ])
        .arg(&exe)
        .arg(&src)
        .arg(format!("-L{BORINGSSL_DIR}"))
        .arg(format!("-Wl,-rpath,{BORINGSSL_DIR}"))
        .args(["-lssl", "-lcrypto"])
        .output()
        .context("running gcc")?;
    if !out.status.success() {
        bail!("gcc (BoringSSL): {}", String::from_utf8_lossy(&out.stderr));
    }
    let topo = Topology::new("tlsb")?;
    let server_log = dir.join("server.log");
    let server = start_static(&topo.server, &exe, &certs, EARLY_PORT, &server_log)?;
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", server.pid()))?;
    assert!(maps.contains("android/libssl.so.0"), "{maps}");
    let mut sensor = tls_sensor(
        &topo,
        &dir,
        &format!(
            "[decode]\nmax_body_bytes = 2097152\n[tls]\nenabled = true\nprocesses = [\"{name}\"]\n"
        ),
        &["android/libssl.so.0", "boringssl"],
    )?;
    let url = |path: &str| format!("https://{SERVER_IP}:{EARLY_PORT}{path}");
    let mut args = vec!["-k"];
    let users: Vec<String> = (1..=3)
        .map(|i| url(&format!("/api/v1/users/{i}")))
        .collect();
    for u in &users {
        args.extend_from_slice(&["-o", "/dev/null", u.as_str()]);
    }
    topo.curl(&args)?;
    let big = text(BIG, 3);
    let got = topo.curl(&["-k", &url(&format!("/bytes/{BIG}"))])?;
    assert!(got.as_bytes() == big, "curl got the whole document");
    let upload = upload_1mib(&topo, &dir, &url("/upload"), &["-H", "Expect:"])?;
    let logged = static_log(&server_log)?;
    assert_eq!(logged.len(), 5, "{logged:?}");
    let m = sensor.wait_for_metric("apitap_sensor_events_total", 5, Duration::from_secs(30))?;
    let pid = server.pid();
    drop(server);
    sensor.stop()?;
    assert_nothing_lost(&m);
    let events: Vec<ApiEvent> = read_events(&sensor.events)?
        .into_iter()
        .filter(|e| e.client.ip.to_string() == CLIENT_IP)
        .filter(|e| e.process.as_ref().is_some_and(|p| p.pid == pid))
        .collect();
    let mut got_keys: Vec<String> = events.iter().map(key).collect();
    let mut want_keys: Vec<String> = logged.iter().map(|l| l.key.clone()).collect();
    got_keys.sort();
    want_keys.sort();
    assert_eq!(got_keys, want_keys, "every transaction reported once");
    for l in &logged {
        let e = events.iter().find(|e| key(e) == l.key).context("event")?;
        assert!(
            e.tls && e.anomalies.is_empty(),
            "{}: {:?}",
            l.key,
            e.anomalies
        );
        assert_eq!(e.tls_library.as_deref(), Some("boringssl"));
        assert_eq!(e.process.as_deref().context("process")?.comm, name);
        let req = e.request.body.bytes()?;
        assert_eq!(
            (req.len() as u64, fnv1a(&req)),
            (l.body_len, l.body_fnv),
            "{}",
            l.key
        );
        let res = e.response.as_ref().context("paired")?;
        assert_eq!(res.body.length_bytes, l.response_len, "{}", l.key);
        assert!(
            !res.body.truncated && !e.request.body.truncated,
            "{}",
            l.key
        );
    }
    let e = events
        .iter()
        .find(|e| e.request.path == format!("/bytes/{BIG}"))
        .context("1 MiB")?;
    assert!(
        e.response.as_ref().unwrap().body.bytes()? == big,
        "1 MiB response differs"
    );
    let e = events
        .iter()
        .find(|e| e.request.path == "/upload")
        .context("upload")?;
    assert!(e.request.body.bytes()? == upload, "1 MiB upload differs");
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// `tls.executables` and `tls.ports` (issue 16: a busy host is not traced wholesale): two
/// nginx servers run from a copy of the nginx executable whose path alone selects them (its
/// command name is `nginx`, like every other test's nginx, which must not be traced), and
/// only the port listed is captured: every request to it is reported, none to the other.
#[test]
fn https_capture_selected_by_executable_and_port() -> anyhow::Result<()> {
    let test = "https_capture_selected_by_executable_and_port";
    if !require_privileges(test) {
        return Ok(());
    }
    let (selected_port, other_port) = (11443, 12443);
    let dir = tempdir("tls-sel");
    let certs = dir.join("certs");
    make_test_certificate(&certs)?;
    std::fs::create_dir_all(dir.join("bin"))?;
    let exe = dir.join("bin/nginx");
    std::fs::copy("/usr/sbin/nginx", &exe).context("copying nginx")?;
    let exe_s = exe.to_string_lossy().into_owned();
    let topo = Topology::new("tlssel")?;
    let mut servers = Vec::new();
    for (i, port) in [selected_port, other_port].into_iter().enumerate() {
        let d = dir.join(format!("n{i}"));
        std::fs::create_dir_all(d.join("tmp"))?;
        let conf = d.join("nginx.conf");
        let plain = SERVER_PORT + 3 + i as u16;
        std::fs::write(&conf, https_conf(&d, &certs, port, plain))?;
        servers.push(Server::start(
            &topo.server,
            &exe_s,
            &["-c", &conf.to_string_lossy(), "-p", &d.to_string_lossy()],
            &d.join("nginx.out"),
            &format!("http://{SERVER_IP}:{plain}/healthz"),
        )?);
    }
    let mut sensor = Sensor::start_with(
        &topo.server,
        &topo.server_if,
        &[SERVER_PORT],
        &format!("[tls]\nenabled = true\nexecutables = [{exe_s:?}]\nports = [{selected_port}]\n"),
        &dir.join("sensor"),
    )?;
    for port in [selected_port, other_port] {
        let mut args = vec!["-k".to_owned()];
        for i in 1..=3 {
            args.extend([
                "-o".to_owned(),
                "/dev/null".to_owned(),
                format!("https://{SERVER_IP}:{port}/api/v1/users/{i}"),
            ]);
        }
        topo.curl(&args.iter().map(String::as_str).collect::<Vec<_>>())?;
    }
    let m = sensor.wait_for_metric("apitap_sensor_events_total", 3, Duration::from_secs(30))?;
    // The other port's calls had time to arrive too (they came after the selected ones).
    std::thread::sleep(Duration::from_secs(2));
    drop(servers);
    sensor.stop()?;
    assert_nothing_lost(&m);
    let events: Vec<ApiEvent> = read_events(&sensor.events)?
        .into_iter()
        .filter(|e| e.tls)
        .collect();
    for e in &events {
        let p = e.process.as_deref().context("process")?;
        assert_eq!(p.executable.as_deref(), Some(exe_s.as_str()), "{p:?}");
        assert_eq!(e.server.port, selected_port, "{}", key(e));
    }
    let mut got: Vec<String> = events
        .iter()
        .filter(|e| e.client.ip.to_string() == CLIENT_IP)
        .map(key)
        .collect();
    got.sort();
    assert_eq!(
        got,
        (1..=3)
            .map(|i| format!("GET /api/v1/users/{i} 200"))
            .collect::<Vec<_>>()
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
