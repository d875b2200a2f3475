//! apitap's testbed: real network topologies for the demo and the privileged tests.
//!
//! This crate owns the pieces that put the product on a real kernel with real peers: network
//! namespaces joined by a veth pair ([`Topology`]), an nginx JSON API server ([`Nginx`]), the
//! sensor as a child process ([`Sensor`]), and helpers to run real clients (curl) in a
//! namespace. Everything cleans up on drop, also when a test panics. `cargo xtask demo` uses it
//! too, so the demo and the tests exercise the same setup.
//!
//! Privileged tests call [`require_privileges`]: under `CI=true` a missing capability is a
//! failure, never a silent skip.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

pub mod analyzer;
pub mod attacks;
pub mod broker;
pub mod kube_api;
pub mod pg;
pub mod pki;
pub mod state_kafka;

/// Server address inside the server namespace.
pub const SERVER_IP: &str = "10.213.0.1";
/// Client address inside the client namespace.
pub const CLIENT_IP: &str = "10.213.0.2";
/// Port nginx listens on.
pub const SERVER_PORT: u16 = 8080;
/// Port of the same API over TLS ([`Nginx::start_https`]).
pub const HTTPS_PORT: u16 = 8443;
/// Metrics address of the sensor inside the server namespace.
pub const METRICS_ADDR: &str = "127.0.0.1:9464";

/// The workspace root (parent of this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Path of a workspace binary built by `cargo build` (`cargo xtask test` builds them first).
/// `APITAP_BIN_DIR` overrides the directory.
pub fn workspace_bin(name: &str) -> anyhow::Result<PathBuf> {
    let dir = match std::env::var_os("APITAP_BIN_DIR") {
        Some(d) => PathBuf::from(d),
        None => {
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| workspace_root().join("target"));
            target.join("debug")
        }
    };
    let p = dir.join(name);
    if !p.is_file() {
        bail!(
            "{} not found: build the workspace first (`cargo xtask test` does)",
            p.display()
        );
    }
    Ok(p)
}

/// True under CI (`CI=true` or `CI=1`), where every test must run and nothing may skip.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// True when `problem` is `None`. Otherwise, under `CI=true`, panics naming `what` cannot run
/// and why (tests must run in CI, never skip); elsewhere prints why and returns false so the
/// caller skips.
pub fn require(test: &str, what: &str, problem: Option<String>) -> bool {
    match problem {
        None => true,
        Some(why) if in_ci() => panic!("{test}: {what} cannot run in CI: {why}"),
        Some(why) => {
            eprintln!("SKIPPED {test}: {why} (runs in CI, where this is a failure)");
            false
        }
    }
}

/// True when this process can create network namespaces and load BPF programs (see
/// [`require`]: a missing privilege fails in CI, skips elsewhere).
pub fn require_privileges(test: &str) -> bool {
    require(test, "privileged test", privilege_problem())
}

fn privilege_problem() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not running as root".into());
    }
    for tool in ["ip", "nginx", "curl"] {
        if which(tool).is_none() {
            return Some(format!(
                "`{tool}` is not installed (run `cargo xtask setup`)"
            ));
        }
    }
    // Unique per call: privileged tests of one binary run in parallel.
    let name = format!(
        "apitap-probe-{}-{}",
        std::process::id(),
        SERIAL.fetch_add(1, Ordering::Relaxed)
    );
    let ok = Command::new("ip")
        .args(["netns", "add", &name])
        .status()
        .is_ok_and(|s| s.success());
    let _ = Command::new("ip").args(["netns", "del", &name]).status();
    if !ok {
        return Some("cannot create network namespaces (needs CAP_SYS_ADMIN)".into());
    }
    None
}

/// The path of `tool` on `PATH` (or in `/usr/sbin`, `/sbin`).
pub fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

fn run(cmd: &mut Command) -> anyhow::Result<Output> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out)
}

/// A network namespace, deleted on drop.
#[derive(Debug)]
pub struct Netns {
    /// Its name (`ip netns` name).
    pub name: String,
}

impl Netns {
    fn create(name: String) -> anyhow::Result<Netns> {
        // A leftover from a killed run of the same name is removed first.
        let _ = Command::new("ip")
            .args(["netns", "del", &name])
            .stderr(Stdio::null())
            .status();
        run(Command::new("ip").args(["netns", "add", &name]))?;
        let ns = Netns { name };
        ns.cmd("ip", &["link", "set", "lo", "up"]).status()?;
        Ok(ns)
    }

    /// A command that runs `program args` inside this namespace.
    pub fn cmd(&self, program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name])
            .arg(program)
            .args(args);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stderr(Stdio::null())
            .status();
    }
}

static SERIAL: AtomicU32 = AtomicU32::new(0);

/// Every thread of process `pid` with a capability in one of `sets` (`CapEff`, `CapPrm`,
/// `CapInh`, `CapAmb`, `CapBnd`), as `tid name: CapEff=... ...` lines (empty: none).
pub fn threads_with_capabilities(pid: u32, sets: &[&str]) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let entry = entry?;
        let Ok(status) = std::fs::read_to_string(entry.path().join("status")) else {
            continue;
        };
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .map(str::trim)
                .unwrap_or("?")
                .to_owned()
        };
        let held: Vec<String> = sets
            .iter()
            .map(|set| (set, field(set)))
            .filter(|(_, v)| v.chars().any(|c| c != '0'))
            .map(|(set, v)| format!("{set}={v}"))
            .collect();
        if !held.is_empty() {
            out.push(format!(
                "{} {}: {}",
                entry.file_name().to_string_lossy(),
                field("Name"),
                held.join(" ")
            ));
        }
    }
    Ok(out)
}

/// A cgroup v2 made for a test (with its parents), removed on drop; processes started with
/// [`Cgroup::place`] run in it from their first instruction, so their sockets belong to it.
/// Drop it after the processes in it have exited (declare it before them).
#[derive(Debug)]
pub struct Cgroup {
    /// Its directory, `<cgroup2 mount>/<relative path>`.
    pub dir: PathBuf,
    /// Its path relative to the hierarchy's root, as the kernel and the sensor name it.
    pub path: String,
    /// The topmost directory the test created, removed last.
    top: PathBuf,
}

impl Cgroup {
    /// A mount of the cgroup v2 hierarchy that processes in test namespaces see too:
    /// `ip netns exec` mounts a fresh `/sys` for the namespace, which hides
    /// `/sys/fs/cgroup`, so the tests mount the (one, shared) hierarchy again at
    /// `/run/apitap-test-cgroup2` and give the sensor that path (`attribution.cgroup_root`).
    pub fn root() -> anyhow::Result<PathBuf> {
        static ONCE: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one_at_a_time = ONCE.lock();
        let mount = PathBuf::from("/run/apitap-test-cgroup2");
        if mount.join("cgroup.controllers").is_file() {
            return Ok(mount);
        }
        let host = ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
            .into_iter()
            .find(|p| Path::new(p).join("cgroup.controllers").is_file());
        std::fs::create_dir_all(&mount)?;
        match host {
            // libmount refuses a second mount of a mounted cgroup2: bind the existing one.
            Some(h) => run(Command::new("mount").args(["--bind", h]).arg(&mount))?,
            None => run(Command::new("mount")
                .args(["-t", "cgroup2", "cgroup2"])
                .arg(&mount))?,
        };
        if !mount.join("cgroup.controllers").is_file() {
            bail!("{} is not a cgroup v2 mount", mount.display());
        }
        Ok(mount)
    }

    /// The sensor's `[attribution]` section for processes in test namespaces: the hierarchy
    /// where they see it ([`Cgroup::root`]).
    pub fn sensor_section() -> anyhow::Result<String> {
        Ok(format!(
            "\n[attribution]\ncgroup_root = \"{}\"\n",
            Self::root()?.display()
        ))
    }

    /// Creates `<root>/<top>/<rel>` (`top` a single new directory, `rel` any path below it).
    pub fn create(top: &str, rel: &str) -> anyhow::Result<Cgroup> {
        let root = Self::root()?;
        let top_dir = root.join(top);
        let dir = top_dir.join(rel);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("creating cgroup {}", dir.display()))?;
        Ok(Cgroup {
            path: format!("/{top}/{rel}"),
            dir,
            top: top_dir,
        })
    }

    /// Makes `cmd` start in this cgroup (it moves itself in before exec).
    pub fn place(&self, cmd: &mut Command) -> anyhow::Result<()> {
        use std::os::unix::ffi::OsStrExt as _;
        use std::os::unix::process::CommandExt as _;
        let procs = std::ffi::CString::new(self.dir.join("cgroup.procs").as_os_str().as_bytes())?;
        // SAFETY: the closure only makes async-signal-safe system calls (open, write, close)
        // on memory prepared before the fork.
        unsafe {
            cmd.pre_exec(move || {
                let fd = libc::open(procs.as_ptr(), libc::O_WRONLY);
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // "0" moves the writing process itself.
                let ok = libc::write(fd, b"0".as_ptr().cast(), 1) == 1;
                libc::close(fd);
                if ok {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
        Ok(())
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        // Leaf first; a cgroup still holding processes stays (and says so in the test log).
        let mut dir = self.dir.clone();
        loop {
            if let Err(e) = std::fs::remove_dir(&dir) {
                eprintln!("cgroup {} not removed: {e}", dir.display());
            }
            if dir == self.top || !dir.pop() {
                break;
            }
        }
    }
}

/// Two namespaces, a server and a client, joined by a veth pair.
#[derive(Debug)]
pub struct Topology {
    /// Where the server (and the sensor) run.
    pub server: Netns,
    /// Where clients run.
    pub client: Netns,
    /// The server's veth interface.
    pub server_if: String,
    /// The client's veth interface.
    pub client_if: String,
}

impl Topology {
    /// Creates the namespaces and the link; `tag` makes names recognisable (≤ 6 chars).
    pub fn new(tag: &str) -> anyhow::Result<Topology> {
        let n = SERIAL.fetch_add(1, Ordering::Relaxed);
        let id = format!("{}{}", std::process::id() % 100_000, n);
        let server = Netns::create(format!("apitap-{tag}-{id}-srv"))?;
        let client = Netns::create(format!("apitap-{tag}-{id}-cli"))?;
        let server_if = format!("at{id}s");
        let client_if = format!("at{id}c");
        run(Command::new("ip").args([
            "link",
            "add",
            &server_if,
            "netns",
            &server.name,
            "type",
            "veth",
            "peer",
            "name",
            &client_if,
            "netns",
            &client.name,
        ]))?;
        run(&mut server.cmd(
            "ip",
            &["addr", "add", &format!("{SERVER_IP}/24"), "dev", &server_if],
        ))?;
        run(&mut client.cmd(
            "ip",
            &["addr", "add", &format!("{CLIENT_IP}/24"), "dev", &client_if],
        ))?;
        run(&mut server.cmd("ip", &["link", "set", &server_if, "up"]))?;
        run(&mut client.cmd("ip", &["link", "set", &client_if, "up"]))?;
        Ok(Topology {
            server,
            client,
            server_if,
            client_if,
        })
    }

    /// Runs curl in the client namespace; returns its stdout. Fails on a non-zero exit.
    pub fn curl(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut full = vec!["-sS", "--max-time", "10"];
        full.extend_from_slice(args);
        let out = run(&mut self.client.cmd("curl", &full))?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Base URL of the server.
    pub fn url(&self, path: &str) -> String {
        format!("http://{SERVER_IP}:{SERVER_PORT}{path}")
    }
}

/// Size of the `/api/v1/bench` response body.
pub const BENCH_BODY_BYTES: usize = 1024;

/// Size of the static report document nginx serves (larger than one MTU).
pub const REPORT_BYTES: usize = 20_000;

/// The fixed 1 KiB JSON document (`BENCH_BODY_BYTES`) the capture benchmarks fetch.
pub fn bench_document() -> String {
    let mut bench = String::from("{\"accounts\":[");
    let mut k = 0;
    while bench.len() < BENCH_BODY_BYTES - 40 {
        bench.push_str(&format!("{{\"id\":{k},\"bal\":{}}},", k * 37 % 1000));
        k += 1;
    }
    bench.pop();
    bench.push_str("]}");
    while bench.len() < BENCH_BODY_BYTES {
        bench.insert(bench.len() - 1, ' ');
    }
    bench
}

/// nginx serving a small JSON API in the server namespace; stopped on drop.
#[derive(Debug)]
pub struct Nginx {
    child: Child,
    /// Its working directory (config, logs, documents).
    pub dir: PathBuf,
}

impl Nginx {
    /// Writes the configuration into `dir` and starts nginx in `ns`.
    pub fn start(ns: &Netns, dir: &Path) -> anyhow::Result<Nginx> {
        let conf = Self::start_conf_text(dir)?;
        Self::start_conf(ns, dir, &conf, "/healthz")
    }

    /// [`Nginx::start`] serving the same JSON API on [`HTTPS_PORT`] over TLS too (OpenSSL,
    /// with the certificate `cert.pem`/`key.pem` in `certs`, e.g. from
    /// [`make_test_certificate`]).
    pub fn start_https(ns: &Netns, dir: &Path, certs: &Path) -> anyhow::Result<Nginx> {
        let plain = format!("    listen {SERVER_IP}:{SERVER_PORT};\n");
        let conf = Self::start_conf_text(dir)?;
        if !conf.contains(&plain) {
            bail!("the JSON API's configuration has no {plain:?}");
        }
        let c = certs.display();
        let conf = conf.replacen(
            &plain,
            &format!(
                "{plain}    listen {SERVER_IP}:{HTTPS_PORT} ssl;\n    ssl_certificate {c}/cert.pem;\n    ssl_certificate_key {c}/key.pem;\n    ssl_protocols TLSv1.2 TLSv1.3;\n"
            ),
            1,
        );
        Self::start_conf(ns, dir, &conf, "/healthz")
    }

    /// The JSON API's configuration (and its documents, written into `dir`).
    fn start_conf_text(dir: &Path) -> anyhow::Result<String> {
        std::fs::create_dir_all(dir.join("tmp"))?;
        let report: String = {
            let mut s = String::from("{\"rows\":[");
            let mut i = 0;
            while s.len() < REPORT_BYTES - 40 {
                if i > 0 {
                    s.push(',');
                }
                s.push_str(&format!("{{\"id\":{i},\"v\":\"r{i:05}\"}}"));
                i += 1;
            }
            s.push_str("]}");
            while s.len() < REPORT_BYTES {
                s.insert(s.len() - 1, ' ');
            }
            s
        };
        std::fs::write(dir.join("report.json"), &report)?;
        let bench = bench_document();
        let d = dir.display();
        let conf = format!(
            r#"{preamble}  default_type application/json;
  keepalive_requests 1000;
  gzip on;
  gzip_min_length 1000;
  gzip_types application/json;
  server {{
    listen {SERVER_IP}:{SERVER_PORT};
    location = /api/v1/users {{ return 200 '{{"users":[{{"id":1,"name":"ada"}},{{"id":2,"name":"bob"}}]}}'; }}
    location ~ ^/api/v1/users/(\d+)$ {{ return 200 '{{"id":$1,"name":"user$1"}}'; }}
    location = /api/v1/orders {{
      if ($request_method = POST) {{ return 201 '{{"status":"created"}}'; }}
      return 200 '{{"orders":[]}}';
    }}
    location = /api/v1/login {{ return 401 '{{"error":"invalid credentials"}}'; }}
    location = /api/v1/report {{ alias {d}/report.json; }}
    location = /healthz {{ return 204; }}
    location = /api/v1/bench {{ return 200 '{bench}'; }}
    location / {{ return 404 '{{"error":"not found"}}'; }}
  }}
}}
"#,
            preamble = nginx_preamble(dir, 256)
        );
        Ok(conf)
    }

    /// Starts nginx in `ns` with configuration `conf` (written to `<dir>/nginx.conf`; it must
    /// listen on [`SERVER_IP`]:[`SERVER_PORT`] and log to `<dir>/access.log`), ready when
    /// `ready_path` answers 2xx; the access log is emptied after that probe.
    pub fn start_conf(
        ns: &Netns,
        dir: &Path,
        conf: &str,
        ready_path: &str,
    ) -> anyhow::Result<Nginx> {
        Self::start_conf_in(ns, dir, conf, ready_path, None)
    }

    /// [`Nginx::start`] with nginx (master and workers) in `cgroup`.
    pub fn start_in(ns: &Netns, dir: &Path, cgroup: &Cgroup) -> anyhow::Result<Nginx> {
        let conf = Self::start_conf_text(dir)?;
        Self::start_conf_in(ns, dir, &conf, "/healthz", Some(cgroup))
    }

    /// [`Nginx::start_conf`], in `cgroup` when given.
    pub fn start_conf_in(
        ns: &Netns,
        dir: &Path,
        conf: &str,
        ready_path: &str,
        cgroup: Option<&Cgroup>,
    ) -> anyhow::Result<Nginx> {
        let ready = format!("http://{SERVER_IP}:{SERVER_PORT}{ready_path}");
        Self::start_conf_ready(ns, dir, conf, &ready, cgroup)
    }

    /// [`Nginx::start_conf_in`], ready when `ready_url` (fetched with `curl -k` inside `ns`)
    /// answers 2xx: for servers on other addresses or ports, and HTTPS ones.
    pub fn start_conf_ready(
        ns: &Netns,
        dir: &Path,
        conf: &str,
        ready_url: &str,
        cgroup: Option<&Cgroup>,
    ) -> anyhow::Result<Nginx> {
        std::fs::create_dir_all(dir.join("tmp"))?;
        let d = dir.display();
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, conf)?;
        let conf_arg = conf_path.to_string_lossy().into_owned();
        let mut cmd = ns.cmd("nginx", &["-c", &conf_arg, "-p", &dir.to_string_lossy()]);
        if let Some(cg) = cgroup {
            cg.place(&mut cmd)?;
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting nginx")?;
        let nginx = Nginx {
            child,
            dir: dir.to_path_buf(),
        };
        // Ready when it answers.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let probe = ns
                .cmd("curl", &["-s", "-k", "-o", "/dev/null", "-f", ready_url])
                .status();
            if probe.is_ok_and(|s| s.success()) {
                break;
            }
            if Instant::now() > deadline {
                bail!("nginx did not start; see {}/error.log", d);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // The readiness probe ran on the server's loopback: not on the captured interface.
        let _ = std::fs::write(dir.join("access.log"), "");
        let _ = ns
            .cmd(
                "nginx",
                &[
                    "-c",
                    &conf_arg,
                    "-p",
                    &dir.to_string_lossy(),
                    "-s",
                    "reopen",
                ],
            )
            .stderr(Stdio::null())
            .status();
        Ok(nginx)
    }

    /// Process ids of the master (from `<dir>/nginx.pid`) and its workers.
    pub fn pids(&self) -> anyhow::Result<Vec<u32>> {
        let master: u32 = std::fs::read_to_string(self.dir.join("nginx.pid"))?
            .trim()
            .parse()
            .context("nginx.pid")?;
        let mut pids = vec![master];
        for task in std::fs::read_dir(format!("/proc/{master}/task"))? {
            let children = std::fs::read_to_string(task?.path().join("children"))?;
            pids.extend(
                children
                    .split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
        Ok(pids)
    }

    /// Parsed access-log lines: method, uri, status, request length, body bytes sent.
    pub fn access_log(&self) -> anyhow::Result<Vec<AccessLine>> {
        let text = std::fs::read_to_string(self.dir.join("access.log"))?;
        Ok(text
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split(' ').collect();
                (f.len() == 7).then(|| AccessLine {
                    method: f[0].to_owned(),
                    uri: f[1].to_owned(),
                    status: f[2].parse().unwrap_or(0),
                    request_length: f[3].parse().unwrap_or(0),
                    body_bytes_sent: f[4].parse().unwrap_or(0),
                })
            })
            .collect())
    }
}

/// One nginx access-log line (our `apitap` log format).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLine {
    /// Request method.
    pub method: String,
    /// Request URI with query.
    pub uri: String,
    /// Response status.
    pub status: u16,
    /// Request length (line, headers and body).
    pub request_length: u64,
    /// Response body bytes sent.
    pub body_bytes_sent: u64,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SAFETY: signalling our own child's process group leader.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGQUIT) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The sensor running live in a namespace; interrupted on drop.
#[derive(Debug)]
pub struct Sensor {
    child: Option<Child>,
    ns_name: String,
    /// Where it writes events.
    pub events: PathBuf,
    /// Where its logs go.
    pub log: PathBuf,
}

impl Sensor {
    /// Starts `apitap-sensor run` in `ns` on `interface` for `ports`, writing into `dir`, and
    /// waits until its health endpoint answers (programs attached).
    pub fn start(ns: &Netns, interface: &str, ports: &[u16], dir: &Path) -> anyhow::Result<Sensor> {
        Self::start_with(ns, interface, ports, "", dir)
    }

    /// Like [`Sensor::start`], with extra `[capture]` settings (TOML lines, e.g.
    /// `snap_len_bytes = 200`).
    pub fn start_with(
        ns: &Netns,
        interface: &str,
        ports: &[u16],
        capture_extra: &str,
        dir: &Path,
    ) -> anyhow::Result<Sensor> {
        Self::start_wrapped(ns, interface, ports, capture_extra, dir, &[])
    }

    /// Like [`Sensor::start_with`], run through `wrapper` (a program and its arguments that
    /// exec the sensor, e.g. `setpriv … --`).
    pub fn start_wrapped(
        ns: &Netns,
        interface: &str,
        ports: &[u16],
        capture_extra: &str,
        dir: &Path,
        wrapper: &[&str],
    ) -> anyhow::Result<Sensor> {
        let bin = workspace_bin("apitap-sensor")?;
        std::fs::create_dir_all(dir)?;
        let config = dir.join("sensor.toml");
        let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
        std::fs::write(
            &config,
            format!(
                "[sensor]\nid = \"testbed\"\n[capture]\ninterfaces = [\"{interface}\"]\nports = [{}]\n{capture_extra}\n\n[metrics]\nlisten = \"{METRICS_ADDR}\"\n",
                ports.join(", ")
            ),
        )?;
        let events = dir.join("events.jsonl");
        let _ = std::fs::remove_file(&events);
        let log = dir.join("sensor.log");
        let log_file = std::fs::File::create(&log)?;
        let bin = bin.to_string_lossy();
        let (config, events_arg) = (config.to_string_lossy(), events.to_string_lossy());
        let run = [
            &bin,
            "run",
            "--config",
            &config,
            "--events-file",
            &events_arg,
        ];
        let argv: Vec<&str> = wrapper.iter().copied().chain(run).collect();
        let child = ns
            .cmd(argv[0], &argv[1..])
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .context("starting apitap-sensor")?;
        let mut sensor = Sensor {
            child: Some(child),
            ns_name: ns.name.clone(),
            events,
            log,
        };
        wait_healthy(&sensor.ns_name, &mut sensor.child, &sensor.log)?;
        Ok(sensor)
    }

    fn get(&self, path: &str) -> anyhow::Result<String> {
        sensor_http_get(&self.ns_name, path)
    }

    /// Current Prometheus metrics as `(name with labels, value)`.
    pub fn metrics(&self) -> anyhow::Result<Vec<(String, u64)>> {
        Ok(parse_metrics(&self.get("/metrics")?))
    }

    /// Waits (bounded) until metric `name` reaches `at_least`, plus one refresh period so that
    /// the other counters are as fresh; returns the metrics then.
    pub fn wait_for_metric(
        &self,
        name: &str,
        at_least: u64,
        timeout: Duration,
    ) -> anyhow::Result<Vec<(String, u64)>> {
        let deadline = Instant::now() + timeout;
        loop {
            let m = self.metrics()?;
            let v = m.iter().find(|(k, _)| k == name).map_or(0, |x| x.1);
            if v >= at_least {
                std::thread::sleep(Duration::from_millis(1100));
                return self.metrics();
            }
            if Instant::now() > deadline {
                bail!(
                    "{name} stayed at {v} (< {at_least}) for {timeout:?}: {}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Its process id while it runs (`ip netns exec` execs the sensor in place).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The sensor's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops it with SIGINT (it reports pending transactions and flushes) and waits.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        let log = self.log.clone();
        stop_child(
            "apitap-sensor",
            self.child.take(),
            libc::SIGINT,
            Duration::from_secs(15),
            || std::fs::read_to_string(&log).unwrap_or_default(),
        )
    }
}

impl Drop for Sensor {
    fn drop(&mut self) {
        kill_child(self.child.take());
    }
}

/// GET `path` from the sensor's metrics endpoint inside namespace `ns_name`.
pub fn sensor_http_get(ns_name: &str, path: &str) -> anyhow::Result<String> {
    let out = run(Command::new("ip").args([
        "netns",
        "exec",
        ns_name,
        "curl",
        "-sS",
        "--max-time",
        "2",
        &format!("http://{METRICS_ADDR}{path}"),
    ]))?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The value of metric `name` (with its labels, exactly as rendered) in `m`, 0 when absent.
pub fn metric(m: &[(String, u64)], name: &str) -> u64 {
    m.iter().find(|(k, _)| k == name).map_or(0, |x| x.1)
}

/// Prometheus text as `(name with labels, value)` pairs.
pub fn parse_metrics(text: &str) -> Vec<(String, u64)> {
    text.lines()
        .filter_map(|l| l.rsplit_once(' '))
        .filter_map(|(k, v)| v.parse().ok().map(|v| (k.to_owned(), v)))
        .collect()
}

/// Waits (20 s at most) until a just-started sensor's `/healthz` answers, i.e. its programs
/// are attached; fails early, with its log, if it exits.
pub fn wait_healthy(ns_name: &str, child: &mut Option<Child>, log: &Path) -> anyhow::Result<()> {
    let log_text = || std::fs::read_to_string(log).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if sensor_http_get(ns_name, "/healthz").is_ok_and(|b| b.starts_with("ok")) {
            return Ok(());
        }
        if let Some(c) = child.as_mut()
            && let Ok(Some(status)) = c.try_wait()
        {
            bail!("apitap-sensor exited with {status}: {}", log_text());
        }
        if Instant::now() > deadline {
            bail!("apitap-sensor did not become healthy: {}", log_text());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Starts the single-process product (`apitap run`) in `ns` with the two configuration
/// files, logging to `log`, and waits until its capture is attached (`/healthz`); on failure
/// the process is killed and the error carries its log.
pub fn spawn_embedded(
    ns: &Netns,
    sensor_cfg: &Path,
    analyzer_cfg: &Path,
    log: &Path,
) -> anyhow::Result<Child> {
    let bin = workspace_bin("apitap")?;
    let mut child = Some(
        ns.cmd(
            &bin,
            &[
                "run",
                "--sensor-config",
                &sensor_cfg.to_string_lossy(),
                "--analyzer-config",
                &analyzer_cfg.to_string_lossy(),
            ],
        )
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).context("creating the apitap log")?)
        .spawn()
        .context("starting apitap run")?,
    );
    if let Err(e) = wait_healthy(&ns.name, &mut child, log) {
        kill_child(child.take());
        return Err(e);
    }
    child.context("apitap run exited")
}

/// Sends `signal` to a product process (`ip netns exec` execs in place, so the child is the
/// program itself) and waits up to `timeout` for a successful exit; `what` names it and `log`
/// explains a failure.
pub fn stop_child(
    what: &str,
    child: Option<Child>,
    signal: i32,
    timeout: Duration,
    log: impl Fn() -> String,
) -> anyhow::Result<()> {
    let Some(mut child) = child else {
        return Ok(());
    };
    signal_descendants(child.id(), signal);
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            if !status.success() {
                bail!("{what} exited with {status}: {}", log());
            }
            return Ok(());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!("{what} did not stop: {}", log());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Kills a sensor process outright (drop paths) and reaps it.
pub fn kill_child(child: Option<Child>) {
    if let Some(mut child) = child {
        signal_descendants(child.id(), libc::SIGKILL);
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Sends `sig` to `pid` and, since `ip netns exec` execs in place, that is the program itself.
fn signal_descendants(pid: u32, sig: i32) {
    // SAFETY: signalling a child we spawned.
    unsafe { libc::kill(pid as i32, sig) };
}

/// A child process killed and reaped when dropped (servers and clients a test starts, so a
/// failing assertion leaves nothing running).
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `cmd` to completion: its standard output, or an error with its standard error.
pub fn output_of(cmd: &mut Command) -> anyhow::Result<Vec<u8>> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    anyhow::ensure!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(out.stdout)
}

/// Reads a JSON-lines event file with the schema crate's decoder.
pub fn read_events(path: &Path) -> anyhow::Result<Vec<apitap_schema::ApiEvent>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            apitap_schema::decode_event(l.as_bytes())
                .with_context(|| format!("event line {}", i + 1))
        })
        .collect()
}

/// Starts `apitap-analyzer run --config <config>` with `RUST_LOG=<rust_log>` and writes the
/// JSON-lines `events` file to its standard input, which stays open (the analyzer keeps
/// serving its API): drop the returned stdin to end the input.
pub fn run_analyzer_on(
    config: &Path,
    events: &Path,
    rust_log: &str,
) -> anyhow::Result<(Child, std::process::ChildStdin)> {
    use std::io::Write as _;
    let mut child = Command::new(workspace_bin("apitap-analyzer")?)
        .args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", rust_log)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting apitap-analyzer run")?;
    let mut stdin = child.stdin.take().context("analyzer stdin")?;
    stdin
        .write_all(&std::fs::read(events).with_context(|| format!("{}", events.display()))?)
        .context("feeding the analyzer")?;
    stdin.flush()?;
    Ok((child, stdin))
}

/// A self-signed certificate and key (`cert.pem`, `key.pem`) made by the `openssl` tool into
/// `dir`, which is created if needed.
pub fn make_test_certificate(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=apitap.test",
            "-keyout",
        ])
        .arg(dir.join("key.pem"))
        .arg("-out")
        .arg(dir.join("cert.pem"))
        .output()
        .context("running openssl")?;
    if !out.status.success() {
        bail!("openssl req: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// The start of an nginx configuration for a test server whose files live in `dir`: one
/// worker, logs and temporary files under `dir`, an access log of request line, status,
/// sizes and connection (what the tests and the demo compare the sensor's events with), and
/// an open `http {` block for the caller's directives and servers.
pub fn nginx_preamble(dir: &Path, worker_connections: u32) -> String {
    let d = dir.display();
    format!(
        r#"daemon off;
master_process on;
worker_processes 1;
user root;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections {worker_connections}; }}
http {{
  log_format apitap '$request_method $request_uri $status $request_length $body_bytes_sent $connection $connection_requests';
  access_log {d}/access.log apitap;
  client_body_temp_path {d}/tmp/body;
  proxy_temp_path {d}/tmp/proxy;
  fastcgi_temp_path {d}/tmp/fastcgi;
  uwsgi_temp_path {d}/tmp/uwsgi;
  scgi_temp_path {d}/tmp/scgi;
"#
    )
}

/// GB 11643-1999 check character of a PRC resident ID number.
pub fn prc_id_valid(id: &[u8]) -> bool {
    const W: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    if id.len() != 18 || !id[..17].iter().all(u8::is_ascii_digit) {
        return false;
    }
    let sum: u32 = id[..17]
        .iter()
        .zip(W)
        .map(|(d, w)| u32::from(d - b'0') * w)
        .sum();
    id[17] == b"10X98765432"[(sum % 11) as usize]
}

/// The PRC ID numbers in a text: 18-character digit runs (the last may be `X`) with a valid
/// check character, not inside a longer digit run.
pub fn prc_ids(text: &str) -> std::collections::BTreeSet<String> {
    let b = text.as_bytes();
    let mut out = std::collections::BTreeSet::new();
    let mut i = 0;
    while i < b.len() {
        if !b[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let mut end = i;
        if end - start == 17 && i < b.len() && b[i] == b'X' {
            end += 1;
            i += 1;
        }
        if end - start == 18 && prc_id_valid(&b[start..end]) {
            out.insert(text[start..end].to_owned());
        }
    }
    out
}
