//! Issue 7's evaluation traffic: real attack tools (hydra, ffuf, wfuzz, patator, gobuster,
//! wget, curl) and benign clients (scripted user sessions, siege, wrk) against a real
//! login/data API server (`tests/testapi/server.py`) in network namespaces.
//!
//! - `cargo xtask record-attacks [--scenario NAME]` captures each scenario with dumpcap on the
//!   server's veth and writes `tests/fixtures/attacks/<scenario>.pcapng[.gz]`, the server's own
//!   access log `<scenario>.access.jsonl[.gz]` (the ground truth) and the scenario's entry in
//!   `tests/fixtures/attacks/manifest.json` (tool, version, command, addresses, times, request
//!   counts, expected detection). CI only replays these files (`tests/tests/attack_fixtures.rs`).
//! - `cargo xtask attack-demo [--scenario NAME]` runs the same scenarios live through the
//!   sensor (eBPF) and prints scenario × requests × events; [`demo`] returns the event files so
//!   that a detection stage can be appended.
//!
//! Every tool run is bounded in count (its word list) and in time (`timeout`); all traffic
//! stays inside the namespaces created here, which are removed on exit and on failure.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use apitap_tests::{SERVER_IP, SERVER_PORT, Topology, workspace_root};
use serde_json::{Value, json};

/// The server's seed and size (accounts, PII, orders, OTP codes are derived from them).
const SEED: u32 = 7;
const USERS: u32 = 1000;
/// Single-source attackers use the client namespace's primary address.
const ATTACKER: &str = apitap_tests::CLIENT_IP;
/// Seconds of benign background before an attack starts, and after it ends.
const WARMUP_S: u64 = 20;
const TAIL_S: u64 = 5;
/// Benign background sessions during attack scenarios: addresses, mean gap, think scale.
const BACKGROUND_ADDRS: usize = 4;
/// Pcaps and access logs above this size are stored gzipped.
const GZIP_ABOVE: u64 = 1 << 20;
/// Length of the benign recording (issue 7: 10 minutes of stream time).
pub const BENIGN_SECONDS: u64 = 600;

fn fixtures_dir() -> PathBuf {
    workspace_root().join("tests/fixtures/attacks")
}

fn testapi(file: &str) -> String {
    workspace_root()
        .join("tests/testapi")
        .join(file)
        .to_string_lossy()
        .into_owned()
}

/// Addresses of the distributed campaign: one /24, each address ≤ 5 attempts.
fn distributed_addrs() -> Vec<String> {
    (1..=60).map(|i| format!("10.213.1.{i}")).collect()
}

/// Benign client addresses, each in its own /24 (users of a public service come from
/// unrelated networks).
fn benign_addrs(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("10.213.{}.{}", 100 + i, 10 + 7 * i))
        .collect()
}

/// What a scenario is expected to raise (the golden alert tests read this from the manifest).
struct Expect {
    detector: &'static str,
    /// Primary actor key and value; `alt` lists other acceptable (key, value) pairs.
    actor_key: &'static str,
    actor: &'static str,
    alt: &'static [(&'static str, &'static str)],
}

/// One scenario of the evaluation.
struct Spec {
    name: &'static str,
    description: &'static str,
    /// Extra server arguments (e.g. `--authz strict`).
    server_args: &'static [&'static str],
    expect: Expect,
    /// Benign background sessions around the attack (0 for the benign scenario itself).
    background: usize,
    traffic: fn(&Lab, &Opts) -> anyhow::Result<Attack>,
}

/// Run-time knobs (the live demo shortens the benign scenario).
#[derive(Clone, Copy)]
struct Opts {
    benign_seconds: u64,
}

/// What the traffic function did.
struct Attack {
    tool: &'static str,
    /// Debian package of the tool (for its version).
    package: &'static str,
    command: String,
    attackers: Vec<String>,
    benign: Vec<String>,
    notes: String,
}

impl Attack {
    /// A run by the one attacker host, with no benign clients beside it.
    fn by_attacker(
        tool: &'static str,
        package: &'static str,
        command: String,
        notes: impl Into<String>,
    ) -> Attack {
        Attack {
            tool,
            package,
            command,
            attackers: vec![ATTACKER.into()],
            benign: Vec::new(),
            notes: notes.into(),
        }
    }
}

const SCENARIOS: &[Spec] = &[
    Spec {
        name: "stuffing_hydra_form",
        description: "Credential stuffing against the HTML login form: hydra http-post-form with a leaked combo list (one attempt per username, a few reused passwords succeed).",
        server_args: &[],
        expect: Expect {
            detector: "credential_stuffing",
            actor_key: "ip",
            actor: ATTACKER,
            alt: &[("subnet", "10.213.0.0/24")],
        },
        background: BACKGROUND_ADDRS,
        traffic: stuffing_hydra_form,
    },
    Spec {
        name: "brute_hydra_basic",
        description: "Password cracking of one account over HTTP Basic auth: hydra http-get with John's password list; succeeds at the account's password and stops (-f).",
        server_args: &[],
        expect: Expect {
            detector: "brute_force",
            actor_key: "ip",
            actor: ATTACKER,
            alt: &[("account", "alice")],
        },
        background: BACKGROUND_ADDRS,
        traffic: brute_hydra_basic,
    },
    Spec {
        name: "stuffing_ffuf_json",
        description: "Credential stuffing against the JSON login API: ffuf pitchfork over username and password lists, POST application/json.",
        server_args: &[],
        expect: Expect {
            detector: "credential_stuffing",
            actor_key: "ip",
            actor: ATTACKER,
            alt: &[
                ("subnet", "10.213.0.0/24"),
                ("fingerprint", "Fuzz Faster U Fool"),
            ],
        },
        background: BACKGROUND_ADDRS,
        traffic: stuffing_ffuf_json,
    },
    Spec {
        name: "brute_patator_json",
        description: "Password cracking of one account on the JSON login API: patator http_fuzz with John's password list (no success).",
        server_args: &[],
        expect: Expect {
            detector: "brute_force",
            actor_key: "ip",
            actor: ATTACKER,
            alt: &[("account", "bob")],
        },
        background: BACKGROUND_ADDRS,
        traffic: brute_patator_json,
    },
    Spec {
        name: "stuffing_distributed",
        description: "Distributed low-and-slow credential stuffing: 60 source addresses in one /24, 3-5 JSON login attempts each (curl, one campaign, one attempt per username).",
        server_args: &[],
        expect: Expect {
            detector: "credential_stuffing",
            actor_key: "subnet",
            actor: "10.213.1.0/24",
            alt: &[("fingerprint", "curl")],
        },
        background: BACKGROUND_ADDRS,
        traffic: stuffing_distributed,
    },
    Spec {
        name: "otp_guessing",
        description: "SMS code guessing: one OTP send, then wfuzz over 500 six-digit codes on /api/otp/verify (no success).",
        server_args: &[],
        expect: Expect {
            detector: "otp_guessing",
            actor_key: "ip",
            actor: ATTACKER,
            alt: &[],
        },
        background: BACKGROUND_ADDRS,
        traffic: otp_guessing,
    },
    Spec {
        name: "enum_ffuf",
        description: "BOLA enumeration: a logged-in account walks /api/users/1..2000 with ffuf; the server does not check ownership (1000 × 200 with PII, 1000 × 404).",
        server_args: &[],
        expect: Expect {
            detector: "enumeration",
            actor_key: "ip",
            actor: ATTACKER,
            alt: &[("account", "bob")],
        },
        background: BACKGROUND_ADDRS,
        traffic: enum_ffuf,
    },
    Spec {
        name: "enum_wfuzz",
        description: "Enumeration against an ownership-checking server (--authz strict): wfuzz over /api/users/1..1200 (403 for others' ids, 404 beyond).",
        server_args: &["--authz", "strict"],
        expect: Expect {
            detector: "enumeration",
            actor_key: "ip",
            actor: ATTACKER,
            alt: &[("account", "alice")],
        },
        background: BACKGROUND_ADDRS,
        traffic: enum_wfuzz,
    },
    Spec {
        name: "crawl_wget",
        description: "Crawling/scraping the site: wget --mirror bounded by depth and quota (robots.txt honoured).",
        server_args: &[],
        expect: Expect {
            detector: "crawling",
            actor_key: "ip",
            actor: ATTACKER,
            alt: &[("fingerprint", "Wget")],
        },
        background: BACKGROUND_ADDRS,
        traffic: crawl_wget,
    },
    Spec {
        name: "crawl_gobuster",
        description: "Forced browsing: gobuster dir with dirb's common.txt word list (mostly 404).",
        server_args: &[],
        expect: Expect {
            detector: "crawling",
            actor_key: "ip",
            actor: ATTACKER,
            alt: &[("fingerprint", "gobuster")],
        },
        background: BACKGROUND_ADDRS,
        traffic: crawl_gobuster,
    },
    Spec {
        name: "bulk_export",
        description: "Abnormal data access (bulk export): one account pulls all 1000 user records with PII through /api/export in 20 pages (curl URL globbing); benign users export one record now and then.",
        server_args: &[],
        expect: Expect {
            detector: "abnormal_access",
            actor_key: "account",
            actor: "bob",
            alt: &[("ip", ATTACKER)],
        },
        background: BACKGROUND_ADDRS,
        traffic: bulk_export,
    },
    Spec {
        name: "benign_10min",
        description: "Benign only: 10 minutes of scripted user sessions from 20 addresses (login, profile, orders, logout, think times, OTP logins, an occasional typo) plus light siege and wrk bursts.",
        server_args: &[],
        expect: Expect {
            detector: "none",
            actor_key: "none",
            actor: "",
            alt: &[],
        },
        background: 0,
        traffic: benign,
    },
];

/// Tools the scenarios run: (program or file that proves presence, Debian package).
const TOOLS: &[(&str, &str)] = &[
    ("hydra", "hydra"),
    ("ffuf", "ffuf"),
    ("wfuzz", "wfuzz"),
    ("patator", "patator"),
    ("gobuster", "gobuster"),
    ("/usr/share/dirb/wordlists/common.txt", "dirb"),
    ("/usr/share/john/password.lst", "john-data"),
    ("wget", "wget"),
    ("curl", "curl"),
    ("siege", "siege"),
    ("wrk", "wrk"),
    ("dumpcap", "tshark"),
    ("tshark", "tshark"),
    ("gzip", "gzip"),
    ("timeout", "coreutils"),
];

/// Installs the attack and load tools when missing. Recording and the live demo only: CI
/// replays the recorded pcaps and needs none of them.
pub fn install_tools() -> anyhow::Result<()> {
    crate::setup::install_tools(TOOLS, "for the attack recordings and demo").map(drop)
}

/// A small deterministic generator (splitmix64) for word lists and schedules.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i + 1);
            v.swap(i, j);
        }
    }
}

/// One account of the server (from `server.py --dump-users`).
#[derive(Clone)]
struct Account {
    id: u64,
    username: String,
    password: String,
    phone: String,
}

fn accounts() -> anyhow::Result<Vec<Account>> {
    let out = Command::new("python3")
        .args([
            &testapi("server.py"),
            "--dump-users",
            "--seed",
            &SEED.to_string(),
            "--users",
            &USERS.to_string(),
        ])
        .output()
        .context("running server.py --dump-users")?;
    if !out.status.success() {
        bail!(
            "server.py --dump-users: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let v: Value = serde_json::from_slice(&out.stdout).context("parsing the accounts")?;
    let list = v.as_array().context("accounts: not a list")?;
    list.iter()
        .map(|u| {
            let s = |k: &str| {
                u.get(k)
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .with_context(|| format!("account without {k}"))
            };
            Ok(Account {
                id: u.get("id").and_then(Value::as_u64).context("account id")?,
                username: s("username")?,
                password: s("password")?,
                phone: s("phone")?,
            })
        })
        .collect()
}

/// Leak-style passwords that are not the accounts' own (most stuffing attempts fail).
const LEAKED: &[&str] = &[
    "Aa123456",
    "woaini1314",
    "5201314",
    "qwe123",
    "zxcvbnm",
    "1qaz2wsx",
    "a123456789",
    "Passw0rd",
    "iloveyou1",
    "88888888",
    "147258369",
    "asd123456",
    "qq123456",
    "abc@123",
    "Huawei@123",
    "Zz123456",
];

/// Stuffing list: `n` (username, password) pairs, each username once; about 75 % real
/// accounts (ids ≥ 60, not the benign sessions' users), the rest unknown; `hits` real
/// accounts carry their real password (password reuse).
fn combo(
    accounts: &[Account],
    seed: u64,
    n: usize,
    hits: usize,
    fake: &str,
) -> Vec<(String, String)> {
    let mut rng = Rng(seed);
    let mut pool: Vec<&Account> = accounts.iter().filter(|a| a.id >= 60).collect();
    rng.shuffle(&mut pool);
    let real = n * 3 / 4;
    let mut out: Vec<(String, String)> = pool
        .iter()
        .take(real)
        .enumerate()
        .map(|(i, a)| {
            let pw = if i < hits {
                a.password.clone()
            } else {
                LEAKED[rng.below(LEAKED.len())].to_owned()
            };
            (a.username.clone(), pw)
        })
        .collect();
    for i in 0..n - real {
        out.push((
            format!("{fake}{}", 1000 + i * 37 % 9000),
            LEAKED[rng.below(LEAKED.len())].to_owned(),
        ));
    }
    rng.shuffle(&mut out);
    out
}

/// The first `n` entries of John the Ripper's password list (Debian `john-data`).
fn john_passwords(n: usize) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string("/usr/share/john/password.lst")
        .context("reading /usr/share/john/password.lst (apt-get install john-data)")?;
    Ok(text
        .lines()
        .filter(|l| !l.starts_with("#!comment") && !l.is_empty())
        .take(n)
        .map(str::to_owned)
        .collect())
}

fn write_lines(path: &Path, lines: impl IntoIterator<Item = String>) -> anyhow::Result<()> {
    let mut text = String::new();
    for l in lines {
        text.push_str(&l);
        text.push('\n');
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// Shell-quoted command line (what the manifest records).
fn shell_line(program: &str, args: &[String]) -> String {
    let quote = |s: &str| {
        if !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./:=,@%+".contains(c))
        {
            s.to_owned()
        } else {
            format!("'{}'", s.replace('\'', r"'\''"))
        }
    };
    std::iter::once(program)
        .chain(args.iter().map(String::as_str))
        .map(quote)
        .collect::<Vec<_>>()
        .join(" ")
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| (*s).to_owned()).collect()
}

/// Kills a child we started (by its pid) and reaps it.
fn kill_child(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Sends `sig` to a child we started and waits up to `timeout`; kills it after that.
fn stop_child(child: &mut Child, sig: i32, timeout: Duration) -> anyhow::Result<()> {
    // SAFETY: signalling our own child (ip netns exec execs in place).
    unsafe { libc::kill(child.id() as i32, sig) };
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if child.try_wait()?.is_some() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    kill_child(child);
    bail!("process {} did not stop within {timeout:?}", child.id())
}

/// The namespaces, the server and the scenario's working directory.
pub struct Lab {
    /// Server and client namespaces (removed on drop, after the server stops).
    pub topo: Topology,
    /// Working directory: word lists, tool output, the server's access log.
    pub dir: PathBuf,
    /// The server's access log (JSON lines).
    pub access_log: PathBuf,
    server: Option<Child>,
    /// How the server was started (for the manifest).
    pub server_command: String,
}

impl Lab {
    fn new(name: &str, server_args: &[&str], dir: &Path) -> anyhow::Result<Lab> {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let topo = Topology::new("atk")?;
        // Extra client addresses: the distributed campaign and the benign users.
        let ok = topo
            .server
            .cmd(
                "ip",
                &["route", "add", "10.213.0.0/16", "dev", &topo.server_if],
            )
            .status()?
            .success();
        if !ok {
            bail!("adding the server's route to 10.213.0.0/16 failed");
        }
        let mut batch = String::new();
        for a in distributed_addrs().iter().chain(&benign_addrs(20)) {
            batch.push_str(&format!("addr add {a}/32 dev {}\n", topo.client_if));
        }
        let batch_file = dir.join("addrs.ip");
        std::fs::write(&batch_file, batch)?;
        let ok = topo
            .client
            .cmd("ip", &["-batch", &batch_file.to_string_lossy()])
            .status()?
            .success();
        if !ok {
            bail!("adding client addresses failed");
        }
        let access_log = dir.join("access.jsonl");
        let ready = dir.join("server.ready");
        let mut args = strings(&[
            "tests/testapi/server.py",
            "--host",
            SERVER_IP,
            "--port",
            &SERVER_PORT.to_string(),
            "--seed",
            &SEED.to_string(),
            "--users",
            &USERS.to_string(),
        ]);
        args.extend(strings(server_args));
        let server_command = shell_line("python3", &args);
        args.extend([
            "--access-log".into(),
            access_log.to_string_lossy().into_owned(),
            "--ready".into(),
            ready.to_string_lossy().into_owned(),
        ]);
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let log = std::fs::File::create(dir.join("server.log"))?;
        let child = topo
            .server
            .cmd("python3", &argv)
            .current_dir(workspace_root())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting tests/testapi/server.py")?;
        let mut lab = Lab {
            topo,
            dir: dir.to_path_buf(),
            access_log,
            server: Some(child),
            server_command,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !ready.exists() {
            if let Some(c) = lab.server.as_mut()
                && let Some(st) = c.try_wait()?
            {
                bail!(
                    "{name}: server exited with {st}: {}",
                    std::fs::read_to_string(dir.join("server.log")).unwrap_or_default()
                );
            }
            if Instant::now() > deadline {
                bail!("{name}: server did not start");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(lab)
    }

    fn url(&self, path: &str) -> String {
        format!("http://{SERVER_IP}:{SERVER_PORT}{path}")
    }

    /// Runs `program args` in the client namespace (cwd: the working directory), bounded by
    /// `timeout_s` (SIGINT, then SIGKILL 5 s later); output goes to `<label>.out`. Returns the
    /// command line as the manifest records it (without the timeout wrapper).
    fn tool(
        &self,
        label: &str,
        timeout_s: u64,
        program: &str,
        args: &[String],
    ) -> anyhow::Result<String> {
        let out = std::fs::File::create(self.dir.join(format!("{label}.out")))?;
        let err = out.try_clone()?;
        let mut full = strings(&["-s", "INT", "-k", "5", &timeout_s.to_string(), program]);
        full.extend(args.iter().cloned());
        let argv: Vec<&str> = full.iter().map(String::as_str).collect();
        let line = shell_line(program, args);
        eprintln!("  + {line}");
        let status = self
            .topo
            .client
            .cmd("timeout", &argv)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .status()
            .with_context(|| format!("running {program}"))?;
        match status.code() {
            // hydra, ffuf, gobuster, wget: 0; wget also exits 8 on 404s, 3 on quota.
            Some(0 | 1 | 3 | 8) => {}
            Some(124) => eprintln!("  ({program} stopped by its {timeout_s} s time bound)"),
            _ => bail!(
                "{program} failed ({status}); see {}",
                self.dir.join(format!("{label}.out")).display()
            ),
        }
        Ok(line)
    }

    /// curl from `source` (the attacker's own small steps: log in, request an OTP); returns
    /// the response body.
    fn curl(&self, source: &str, args: &[&str]) -> anyhow::Result<String> {
        let mut full = vec!["-sS", "--max-time", "10", "--interface", source];
        full.extend_from_slice(args);
        let out = self
            .topo
            .client
            .cmd("curl", &full)
            .output()
            .context("running curl")?;
        if !out.status.success() {
            bail!("curl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Logs in over the JSON API from `source`; returns the token.
    fn login(&self, source: &str, user: &str, password: &str) -> anyhow::Result<String> {
        let body = json!({"username": user, "password": password}).to_string();
        let out = self.curl(
            source,
            &[
                "-H",
                "Content-Type: application/json",
                "--data-binary",
                &body,
                &self.url("/api/login"),
            ],
        )?;
        let v: Value = serde_json::from_str(&out).with_context(|| format!("login: {out}"))?;
        v.get("token")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .with_context(|| format!("login as {user} failed: {out}"))
    }

    /// Starts scripted benign sessions (tests/testapi/sessions.py) from `sources`.
    fn sessions(
        &self,
        sources: &[String],
        duration_s: u64,
        gap_s: f64,
        think: f64,
        max_requests: u32,
        rng: u32,
    ) -> anyhow::Result<Background> {
        let log = std::fs::File::create(self.dir.join(format!("sessions-{rng}.out")))?;
        let child = self
            .topo
            .client
            .cmd(
                "python3",
                &[
                    &testapi("sessions.py"),
                    "--host",
                    SERVER_IP,
                    "--port",
                    &SERVER_PORT.to_string(),
                    "--seed",
                    &SEED.to_string(),
                    "--users",
                    &USERS.to_string(),
                    "--sources",
                    &sources.join(","),
                    "--duration",
                    &duration_s.to_string(),
                    "--gap",
                    &gap_s.to_string(),
                    "--think",
                    &think.to_string(),
                    "--max-requests",
                    &max_requests.to_string(),
                    "--rng",
                    &rng.to_string(),
                ],
            )
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting sessions.py")?;
        Ok(Background(Some(child)))
    }

    /// Stops the server (SIGTERM: it flushes its log) and waits.
    fn stop_server(&mut self) -> anyhow::Result<()> {
        if let Some(mut c) = self.server.take() {
            stop_child(&mut c, libc::SIGTERM, Duration::from_secs(10))?;
        }
        Ok(())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut c) = self.server.take() {
            kill_child(&mut c);
        }
    }
}

/// Benign sessions running in the background; stopped gracefully (no request cut in half).
struct Background(Option<Child>);

impl Background {
    fn stop(mut self) -> anyhow::Result<()> {
        match self.0.take() {
            Some(mut c) => stop_child(&mut c, libc::SIGTERM, Duration::from_secs(30)),
            None => Ok(()),
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            kill_child(&mut c);
        }
    }
}

// ---- scenarios ------------------------------------------------------------------------------

fn stuffing_hydra_form(lab: &Lab, _: &Opts) -> anyhow::Result<Attack> {
    let accts = accounts()?;
    let list = combo(&accts, 11, 320, 4, "test");
    write_lines(
        &lab.dir.join("combo.txt"),
        list.iter().map(|(u, p)| format!("{u}:{p}")),
    )?;
    let args = strings(&[
        "-I",
        "-C",
        "combo.txt",
        "-t",
        "4",
        "-s",
        &SERVER_PORT.to_string(),
        SERVER_IP,
        "http-post-form",
        "/login:username=^USER^&password=^PASS^:F=Login failed",
    ]);
    let command = lab.tool("hydra", 300, "hydra", &args)?;
    Ok(Attack::by_attacker(
        "hydra",
        "hydra",
        command,
        "combo.txt: 320 username:password pairs, each username once, 240 real accounts (4 with their real password), 80 unknown",
    ))
}

fn brute_hydra_basic(lab: &Lab, _: &Opts) -> anyhow::Result<Attack> {
    write_lines(&lab.dir.join("passwords.txt"), john_passwords(400)?)?;
    let args = strings(&[
        "-I",
        "-f",
        "-l",
        "alice",
        "-P",
        "passwords.txt",
        "-t",
        "4",
        "-s",
        &SERVER_PORT.to_string(),
        SERVER_IP,
        "http-get",
        "/basic/",
    ]);
    let command = lab.tool("hydra", 300, "hydra", &args)?;
    Ok(Attack::by_attacker(
        "hydra",
        "hydra",
        command,
        "passwords.txt: first 400 entries of /usr/share/john/password.lst; alice's password is entry 109, hydra stops there (-f)",
    ))
}

fn stuffing_ffuf_json(lab: &Lab, _: &Opts) -> anyhow::Result<Attack> {
    let accts = accounts()?;
    let list = combo(&accts, 23, 300, 3, "user");
    write_lines(&lab.dir.join("users.txt"), list.iter().map(|c| c.0.clone()))?;
    write_lines(
        &lab.dir.join("passwords.txt"),
        list.iter().map(|c| c.1.clone()),
    )?;
    let args = strings(&[
        "-s",
        "-w",
        "users.txt:USER",
        "-w",
        "passwords.txt:PASS",
        "-mode",
        "pitchfork",
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "-d",
        r#"{"username":"USER","password":"PASS"}"#,
        "-u",
        &lab.url("/api/login"),
        "-mc",
        "200",
        "-t",
        "8",
    ]);
    let command = lab.tool("ffuf", 300, "ffuf", &args)?;
    Ok(Attack::by_attacker(
        "ffuf",
        "ffuf",
        command,
        "users.txt/passwords.txt: 300 pairs (pitchfork), each username once, 225 real accounts (3 with their real password), 75 unknown",
    ))
}

fn brute_patator_json(lab: &Lab, _: &Opts) -> anyhow::Result<Attack> {
    write_lines(&lab.dir.join("passwords.txt"), john_passwords(400)?)?;
    let args = strings(&[
        "http_fuzz",
        &format!("url={}", lab.url("/api/login")),
        "method=POST",
        "header=Content-Type: application/json",
        r#"body={"username":"bob","password":"FILE0"}"#,
        // A JSON body, not form fields to URL-encode.
        "auto_urlencode=0",
        "0=passwords.txt",
        // patator 0.9 with Debian's pycurl rejects its own empty default (`resolve=''`).
        &format!("resolve={SERVER_IP}:{SERVER_IP}"),
        "-x",
        "ignore:code=401",
        "--threads=4",
    ]);
    let command = lab.tool("patator", 300, "patator", &args)?;
    Ok(Attack::by_attacker(
        "patator",
        "patator",
        command,
        "passwords.txt: first 400 entries of /usr/share/john/password.lst; bob's password is not among them",
    ))
}

fn stuffing_distributed(lab: &Lab, _: &Opts) -> anyhow::Result<Attack> {
    let accts = accounts()?;
    let addrs = distributed_addrs();
    let attempts: Vec<usize> = (0..addrs.len()).map(|i| 3 + i * 7 % 3).collect();
    let total: usize = attempts.iter().sum();
    let list = combo(&accts, 37, total, 3, "cn");
    let mut it = list.iter();
    let mut first = String::new();
    let started = Instant::now();
    for (i, (addr, n)) in addrs.iter().zip(&attempts).enumerate() {
        if started.elapsed() > Duration::from_secs(300) {
            bail!("distributed campaign exceeded its 300 s bound");
        }
        let mut args: Vec<String> = Vec::new();
        for k in 0..*n {
            let Some((u, p)) = it.next() else { break };
            if k > 0 {
                args.push("--next".into());
            }
            args.extend(strings(&[
                "-sS",
                "-o",
                "/dev/null",
                "--interface",
                addr,
                "-H",
                "Content-Type: application/json",
                "--data-binary",
                &json!({"username": u, "password": p}).to_string(),
                &lab.url("/api/login"),
            ]));
        }
        let line = lab.tool(&format!("curl-{i}"), 30, "curl", &args)?;
        if first.is_empty() {
            first = line;
        }
        std::thread::sleep(Duration::from_millis(1000));
    }
    Ok(Attack {
        tool: "curl",
        package: "curl",
        command: format!(
            "{first}   # the first of 60 such runs, one per source address 10.213.1.1-60, 1 s apart, 3-5 attempts each (--next)"
        ),
        attackers: addrs,
        benign: Vec::new(),
        notes: format!(
            "{total} attempts over 60 addresses, each username once, 3 real passwords among them"
        ),
    })
}

fn otp_guessing(lab: &Lab, _: &Opts) -> anyhow::Result<Attack> {
    let accts = accounts()?;
    let victim = accts
        .iter()
        .find(|a| a.id == 77)
        .context("account 77 missing")?;
    let body = json!({"phone": victim.phone}).to_string();
    lab.curl(
        ATTACKER,
        &[
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            &body,
            &lab.url("/api/otp/send"),
        ],
    )?;
    let args = strings(&[
        "-c",
        "-t",
        "5",
        "-z",
        "range,100000-100499",
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "-d",
        &format!(r#"{{"phone":"{}","code":"FUZZ"}}"#, victim.phone),
        "--hc",
        "401",
        &lab.url("/api/otp/verify"),
    ]);
    let command = lab.tool("wfuzz", 300, "wfuzz", &args)?;
    Ok(Attack::by_attacker(
        "wfuzz",
        "wfuzz",
        command,
        format!(
            "one POST /api/otp/send for {} first (curl), then 500 codes; the real code is not among them",
            victim.phone
        ),
    ))
}

fn enum_ffuf(lab: &Lab, _: &Opts) -> anyhow::Result<Attack> {
    let token = lab.login(ATTACKER, "bob", "River2024!")?;
    write_lines(&lab.dir.join("ids.txt"), (1..=2000).map(|i| i.to_string()))?;
    let args = strings(&[
        "-s",
        "-w",
        "ids.txt",
        "-u",
        &lab.url("/api/users/FUZZ"),
        "-H",
        &format!("Authorization: Bearer {token}"),
        "-mc",
        "200",
        "-t",
        "10",
    ]);
    let command = lab
        .tool("ffuf", 300, "ffuf", &args)?
        .replace(&token, "$TOKEN");
    Ok(Attack::by_attacker(
        "ffuf",
        "ffuf",
        command,
        "bob logs in first (curl POST /api/login; $TOKEN is his JWT), then ids 1..2000",
    ))
}

fn enum_wfuzz(lab: &Lab, _: &Opts) -> anyhow::Result<Attack> {
    let token = lab.login(ATTACKER, "alice", "sunshine")?;
    let args = strings(&[
        "-c",
        "-t",
        "5",
        "-z",
        "range,1-1200",
        "-H",
        &format!("Authorization: Bearer {token}"),
        "--hc",
        "404",
        &lab.url("/api/users/FUZZ"),
    ]);
    let command = lab
        .tool("wfuzz", 300, "wfuzz", &args)?
        .replace(&token, "$TOKEN");
    Ok(Attack::by_attacker(
        "wfuzz",
        "wfuzz",
        command,
        "alice logs in first (curl POST /api/login; $TOKEN is her JWT); server runs with --authz strict",
    ))
}

fn crawl_wget(lab: &Lab, _: &Opts) -> anyhow::Result<Attack> {
    let args = strings(&[
        "--mirror",
        "-l",
        "3",
        "--quota=5m",
        "--no-verbose",
        "-P",
        "mirror",
        &lab.url("/"),
    ]);
    let command = lab.tool("wget", 300, "wget", &args)?;
    Ok(Attack::by_attacker(
        "wget",
        "wget",
        command,
        "the whole site: /, robots.txt, /docs/, /products/ and 150 product pages",
    ))
}

fn crawl_gobuster(lab: &Lab, _: &Opts) -> anyhow::Result<Attack> {
    let args = strings(&[
        "dir",
        "-q",
        "--no-error",
        "-t",
        "10",
        "-u",
        &lab.url("/"),
        "-w",
        "/usr/share/dirb/wordlists/common.txt",
        "-o",
        "gobuster.txt",
    ]);
    let command = lab.tool("gobuster", 300, "gobuster", &args)?;
    Ok(Attack::by_attacker(
        "gobuster",
        "gobuster",
        command,
        "dirb's common.txt (4614 words); gobuster first probes a random path for wildcard answers",
    ))
}

fn bulk_export(lab: &Lab, _: &Opts) -> anyhow::Result<Attack> {
    let token = lab.login(ATTACKER, "bob", "River2024!")?;
    let args = strings(&[
        "-sS",
        "-o",
        "export_#1.json",
        "-H",
        &format!("Authorization: Bearer {token}"),
        &lab.url("/api/export?from=[1-951:50]&size=50"),
    ]);
    let command = lab
        .tool("curl", 120, "curl", &args)?
        .replace(&token, "$TOKEN");
    Ok(Attack::by_attacker(
        "curl",
        "curl",
        command,
        "bob logs in first (curl POST /api/login; $TOKEN is his JWT), then 20 pages × 50 records = all 1000 accounts with ID numbers, phones, bank cards",
    ))
}

const SIEGE_URLS: &[&str] = &[
    "/",
    "/products/",
    "/products/3.html",
    "/products/17.html",
    "/docs/",
    "/docs/api.html",
    "/about.html",
];

const WRK_PACE: &str = r#"-- One connection, 50 ms between requests, stops after 150 responses (never mid-request).
local n = 0
function delay()
  return 50
end
function response(status, headers, body)
  n = n + 1
  if n >= 150 then
    wrk.thread:stop()
  end
end
"#;

fn benign(lab: &Lab, opts: &Opts) -> anyhow::Result<Attack> {
    let seconds = opts.benign_seconds;
    let sources = benign_addrs(20);
    write_lines(
        &lab.dir.join("urls.txt"),
        SIEGE_URLS.iter().map(|p| lab.url(p)),
    )?;
    std::fs::write(lab.dir.join("pace.lua"), WRK_PACE)?;
    let sessions = lab.sessions(&sources, seconds, 25.0, 2.5, 6000, 1)?;
    let siege_args = strings(&["-q", "-c", "2", "-r", "10", "-d", "1", "-f", "urls.txt"]);
    let wrk_args = strings(&[
        "-t1",
        "-c1",
        "-d30s",
        "-s",
        "pace.lua",
        &lab.url("/products/"),
    ]);
    let start = Instant::now();
    let mut siege_line = String::new();
    let mut wrk_line = String::new();
    // Bursts at fixed offsets (scaled to the run's length): siege at 10 %, 30 %, 50 %, 70 %,
    // 90 %, wrk at 40 % and 80 %.
    let mut plan: Vec<(u64, &str)> = vec![
        (seconds / 10, "siege"),
        (seconds * 3 / 10, "siege"),
        (seconds * 4 / 10, "wrk"),
        (seconds / 2, "siege"),
        (seconds * 7 / 10, "siege"),
        (seconds * 8 / 10, "wrk"),
        (seconds * 9 / 10, "siege"),
    ];
    plan.sort();
    for (i, (at, what)) in plan.iter().enumerate() {
        let wait = Duration::from_secs(*at).saturating_sub(start.elapsed());
        std::thread::sleep(wait);
        if *what == "siege" {
            siege_line = lab.tool(&format!("siege-{i}"), 60, "siege", &siege_args)?;
        } else {
            wrk_line = lab.tool(&format!("wrk-{i}"), 40, "wrk", &wrk_args)?;
        }
    }
    std::thread::sleep(Duration::from_secs(seconds).saturating_sub(start.elapsed()));
    sessions.stop()?;
    let mut benign_addrs = sources;
    benign_addrs.push(ATTACKER.into());
    Ok(Attack {
        tool: "sessions.py+siege+wrk",
        package: "siege",
        command: format!(
            "python3 tests/testapi/sessions.py --sources <20 addresses> --duration {seconds} --gap 25 --think 2.5 --max-requests 6000 --rng 1; {siege_line} (×5, from {ATTACKER}); {wrk_line} (×2, from {ATTACKER})"
        ),
        attackers: Vec::new(),
        benign: benign_addrs,
        notes: "benign only; siege and wrk run from the client namespace's primary address".into(),
    })
}

// ---- recording ------------------------------------------------------------------------------

/// dumpcap on the server's veth (port 8080 only), large buffer: no capture drops.
struct Dumpcap(Option<Child>);

impl Dumpcap {
    fn start(lab: &Lab, out: &Path) -> anyhow::Result<Dumpcap> {
        let _ = std::fs::remove_file(out);
        let log = std::fs::File::create(lab.dir.join("dumpcap.log"))?;
        let child = lab
            .topo
            .server
            .cmd(
                "dumpcap",
                &[
                    "-q",
                    "-B",
                    "64",
                    "-i",
                    &lab.topo.server_if,
                    "-f",
                    &format!("tcp port {SERVER_PORT}"),
                    "-w",
                    &out.to_string_lossy(),
                ],
            )
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting dumpcap (apt-get install tshark)")?;
        let mut cap = Dumpcap(Some(child));
        for _ in 0..100 {
            if out.metadata().is_ok_and(|m| m.len() > 0) {
                std::thread::sleep(Duration::from_millis(300));
                return Ok(cap);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if let Some(mut c) = cap.0.take() {
            kill_child(&mut c);
        }
        bail!("dumpcap did not start")
    }

    fn stop(mut self) -> anyhow::Result<()> {
        std::thread::sleep(Duration::from_millis(700));
        match self.0.take() {
            Some(mut c) => stop_child(&mut c, libc::SIGINT, Duration::from_secs(10)),
            None => Ok(()),
        }
    }
}

impl Drop for Dumpcap {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            kill_child(&mut c);
        }
    }
}

/// Runs a scenario's traffic with its benign background: warm-up, attack, tail.
fn run_traffic(spec: &Spec, lab: &Lab, opts: &Opts) -> anyhow::Result<Attack> {
    if spec.background == 0 {
        return (spec.traffic)(lab, opts);
    }
    let sources: Vec<String> = benign_addrs(20)
        .into_iter()
        .skip(16)
        .take(spec.background)
        .collect();
    let bg = lab.sessions(&sources, 600, 6.0, 1.0, 1500, 2)?;
    std::thread::sleep(Duration::from_secs(WARMUP_S));
    let mut attack = (spec.traffic)(lab, opts)?;
    std::thread::sleep(Duration::from_secs(TAIL_S));
    bg.stop()?;
    attack.benign = sources;
    Ok(attack)
}

/// One line of the server's access log.
struct LogLine {
    time: f64,
    ip: String,
    status: u64,
}

fn read_access_log(path: &Path) -> anyhow::Result<Vec<LogLine>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l).with_context(|| format!("access log: {l}"))?;
            Ok(LogLine {
                time: v.get("time").and_then(Value::as_f64).unwrap_or(0.0),
                ip: v
                    .get("ip")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                status: v.get("status").and_then(Value::as_u64).unwrap_or(0),
            })
        })
        .collect()
}

/// First and last packet time of a capture (tshark).
fn capture_span(pcap: &Path) -> anyhow::Result<(f64, f64, u64)> {
    let out = Command::new("tshark")
        .args([
            "-r",
            &pcap.to_string_lossy(),
            "-T",
            "fields",
            "-e",
            "frame.time_epoch",
        ])
        .output()
        .context("running tshark")?;
    if !out.status.success() {
        bail!("tshark -r {}: failed", pcap.display());
    }
    let times: Vec<f64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    match (times.first(), times.last()) {
        (Some(a), Some(b)) => Ok((*a, *b, times.len() as u64)),
        _ => bail!("{} holds no packets", pcap.display()),
    }
}

/// Version line of a tool and its Debian package version.
fn tool_version(tool: &str, package: &str) -> String {
    let probe: (&str, &[&str], &str) = match tool {
        "hydra" => ("hydra", &["-h"], "Hydra v"),
        "ffuf" => ("ffuf", &["-V"], "version"),
        "wfuzz" => ("wfuzz", &["--version"], "."),
        "patator" => ("patator", &["--version"], "Patator"),
        "gobuster" => ("gobuster", &["version"], "."),
        "wget" => ("wget", &["--version"], "Wget"),
        "curl" => ("curl", &["--version"], "curl"),
        _ => ("siege", &["--version"], "SIEGE"),
    };
    let line = Command::new(probe.0)
        .args(probe.1)
        .output()
        .ok()
        .and_then(|o| {
            let text = format!(
                "{}\n{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
            text.lines()
                .map(str::trim)
                .map(|l| l.split(" (c)").next().unwrap_or(l))
                .find(|l| l.contains(probe.2) && !l.contains("Warning"))
                .map(|l| l.chars().take(100).collect::<String>())
        })
        .unwrap_or_default();
    let deb = Command::new("dpkg-query")
        .args(["-W", "-f", "${Version}", package])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    if tool.contains('+') {
        let wrk = Command::new("dpkg-query")
            .args(["-W", "-f", "${Version}", "wrk"])
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default();
        return format!(
            "Python {}; siege (Debian {deb}); wrk (Debian {wrk})",
            python_version()
        );
    }
    format!("{line} (Debian {package} {deb})")
}

fn python_version() -> String {
    Command::new("python3")
        .arg("--version")
        .output()
        .ok()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .trim()
                .trim_start_matches("Python ")
                .to_owned()
        })
        .unwrap_or_default()
}

/// gzips `path` in place when larger than [`GZIP_ABOVE`]; returns the stored file's name.
fn store(path: &Path, dest_dir: &Path, name: &str) -> anyhow::Result<String> {
    let plain = dest_dir.join(name);
    let gz = dest_dir.join(format!("{name}.gz"));
    let _ = std::fs::remove_file(&plain);
    let _ = std::fs::remove_file(&gz);
    if std::fs::metadata(path)?.len() <= GZIP_ABOVE {
        std::fs::copy(path, &plain)
            .with_context(|| format!("copying {} to {}", path.display(), plain.display()))?;
        // dumpcap creates its files 0600.
        std::fs::set_permissions(&plain, std::fs::Permissions::from_mode(0o644))?;
        return Ok(name.to_owned());
    }
    let out = std::fs::File::create(&gz)?;
    let ok = Command::new("gzip")
        .args(["-9", "-n", "-c"])
        .arg(path)
        .stdout(out)
        .status()
        .context("running gzip")?
        .success();
    if !ok {
        bail!("gzip {} failed", path.display());
    }
    Ok(format!("{name}.gz"))
}

/// Replaces the manifest entry named like `entry` (manifest kept sorted by scenario order);
/// a lock file serialises concurrent recorders.
fn update_manifest(entry: Value) -> anyhow::Result<()> {
    let path = fixtures_dir().join("manifest.json");
    let lock = fixtures_dir().join(".manifest.lock");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&lock)
        {
            Ok(_) => break,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => return Err(e).context("manifest lock (remove a stale .manifest.lock)"),
        }
    }
    let result = (|| -> anyhow::Result<()> {
        let mut doc: Value = match std::fs::read_to_string(&path) {
            Ok(t) => serde_json::from_str(&t).context("parsing manifest.json")?,
            Err(_) => json!({
                "format": 1,
                "description": "Issue 7 evaluation traffic: real attack tools and benign clients against tests/testapi/server.py, captured on the server's veth. Re-record: cargo xtask record-attacks [--scenario NAME] (see README.md).",
                "scenarios": [],
            }),
        };
        let name = entry
            .get("scenario")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let list = doc
            .get_mut("scenarios")
            .and_then(Value::as_array_mut)
            .context("manifest.json: no scenarios list")?;
        list.retain(|e| e.get("scenario").and_then(Value::as_str) != Some(name.as_str()));
        list.push(entry);
        let order = |e: &Value| {
            let n = e
                .get("scenario")
                .and_then(Value::as_str)
                .unwrap_or_default();
            SCENARIOS
                .iter()
                .position(|s| s.name == n)
                .unwrap_or(usize::MAX)
        };
        list.sort_by_key(order);
        let mut text = serde_json::to_string_pretty(&doc)?;
        text.push('\n');
        std::fs::write(&path, text)?;
        Ok(())
    })();
    let _ = std::fs::remove_file(&lock);
    result
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn record_one(spec: &Spec) -> anyhow::Result<()> {
    eprintln!("== recording {} ==", spec.name);
    let work = workspace_root().join("target/attacks").join(spec.name);
    let mut lab = Lab::new(spec.name, spec.server_args, &work)?;
    let pcap = work.join(format!("{}.pcapng", spec.name));
    let cap = Dumpcap::start(&lab, &pcap)?;
    let opts = Opts {
        benign_seconds: BENIGN_SECONDS,
    };
    let attack = run_traffic(spec, &lab, &opts)?;
    cap.stop()?;
    lab.stop_server()?;
    let log = read_access_log(&lab.access_log)?;
    let (stream_start, stream_end, packets) = capture_span(&pcap)?;
    let is_attacker = |ip: &str| attack.attackers.iter().any(|a| a == ip);
    let attack_lines: Vec<&LogLine> = log.iter().filter(|l| is_attacker(&l.ip)).collect();
    let mut by_status: BTreeMap<String, u64> = BTreeMap::new();
    let mut attack_status: BTreeMap<String, u64> = BTreeMap::new();
    for l in &log {
        *by_status.entry(l.status.to_string()).or_default() += 1;
        if is_attacker(&l.ip) {
            *attack_status.entry(l.status.to_string()).or_default() += 1;
        }
    }
    if spec.expect.detector != "none" && attack_lines.len() < 20 {
        bail!(
            "{}: only {} attacker requests reached the server; see {}",
            spec.name,
            attack_lines.len(),
            work.display()
        );
    }
    let unknown: Vec<&str> = log
        .iter()
        .map(|l| l.ip.as_str())
        .filter(|ip| !is_attacker(ip) && !attack.benign.iter().any(|b| b == ip))
        .collect();
    if !unknown.is_empty() {
        bail!(
            "{}: requests from unexpected addresses {:?}",
            spec.name,
            &unknown[..unknown.len().min(5)]
        );
    }
    let pcap_name = store(&pcap, &fixtures_dir(), &format!("{}.pcapng", spec.name))?;
    let log_name = store(
        &lab.access_log,
        &fixtures_dir(),
        &format!("{}.access.jsonl", spec.name),
    )?;
    let fixture_bytes = std::fs::metadata(fixtures_dir().join(&pcap_name))?.len();
    let (ocsf, actor) = if spec.expect.detector == "none" {
        (Value::Null, Value::Null)
    } else {
        (
            json!(2004),
            json!({"key": spec.expect.actor_key, "value": spec.expect.actor}),
        )
    };
    let alt: Vec<Value> = spec
        .expect
        .alt
        .iter()
        .map(|(k, v)| json!({"key": k, "value": v}))
        .collect();
    let entry = json!({
        "scenario": spec.name,
        "description": spec.description,
        "fixture": pcap_name,
        "fixture_bytes": fixture_bytes,
        "access_log": log_name,
        "packets": packets,
        "server": {
            "address": format!("{SERVER_IP}:{SERVER_PORT}"),
            "command": lab.server_command,
        },
        "tool": attack.tool,
        "tool_version": tool_version(attack.tool, attack.package),
        "command": attack.command,
        "notes": attack.notes,
        "attackers": attack.attackers,
        "benign": attack.benign,
        "stream_start": round3(stream_start),
        "stream_end": round3(stream_end),
        "attack_start": attack_lines.first().map(|l| round3(l.time)),
        "attack_end": attack_lines.last().map(|l| round3(l.time)),
        "requests": {
            "total": log.len(),
            "attack": attack_lines.len(),
            "benign": log.len() - attack_lines.len(),
            "by_status": by_status,
            "attack_by_status": attack_status,
        },
        "expected": {
            "detector": spec.expect.detector,
            "ocsf_class": ocsf,
            "actor": actor,
            "also_acceptable": alt,
            "within_s": if spec.expect.detector == "none" { Value::Null } else { json!(60) },
        },
    });
    update_manifest(entry)?;
    eprintln!(
        "recorded {}: {} requests ({} attack), {} packets, {} ({} bytes)",
        spec.name,
        log.len(),
        attack_lines.len(),
        packets,
        pcap_name,
        fixture_bytes
    );
    Ok(())
}

fn select(scenario: Option<&str>) -> anyhow::Result<Vec<&'static Spec>> {
    match scenario {
        None => Ok(SCENARIOS.iter().collect()),
        Some(names) => names
            .split(',')
            .map(|n| {
                SCENARIOS.iter().find(|s| s.name == n).with_context(|| {
                    format!(
                        "unknown scenario {n}; known: {}",
                        SCENARIOS
                            .iter()
                            .map(|s| s.name)
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                })
            })
            .collect(),
    }
}

fn require_root(what: &str) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("{what} needs root (network namespaces, packet capture, eBPF)");
    }
    Ok(())
}

/// `cargo xtask record-attacks [--scenario NAME[,NAME…]]`.
pub fn record(scenario: Option<&str>) -> anyhow::Result<()> {
    require_root("recording attack fixtures")?;
    let specs = select(scenario)?;
    install_tools()?;
    std::fs::create_dir_all(fixtures_dir())?;
    for spec in specs {
        record_one(spec).with_context(|| format!("scenario {}", spec.name))?;
    }
    Ok(())
}

// ---- live demo ------------------------------------------------------------------------------

/// One live scenario's outcome: what the next stage (the analyzer's detections) consumes.
#[derive(Debug)]
pub struct DemoRun {
    /// Scenario name (as in the manifest).
    pub scenario: &'static str,
    /// The sensor's events (JSON lines).
    pub events: PathBuf,
    /// The server's access log (JSON lines): the ground truth.
    pub access_log: PathBuf,
    /// Requests the server answered.
    pub requests: usize,
    /// Events the sensor wrote.
    pub events_captured: usize,
    /// Expected detector (`none` for benign).
    pub detector: &'static str,
    /// Expected actor key and value.
    pub actor: (&'static str, &'static str),
}

/// `cargo xtask attack-demo`: runs the scenarios live through the sensor (eBPF on the server's
/// veth), prints scenario × requests × events, and returns the event files.
pub fn demo(scenario: Option<&str>, benign_seconds: u64) -> anyhow::Result<Vec<DemoRun>> {
    require_root("the attack demo")?;
    let specs = select(scenario)?;
    install_tools()?;
    let opts = Opts { benign_seconds };
    let mut runs = Vec::new();
    for spec in specs {
        eprintln!("== {} ==", spec.name);
        let work = workspace_root().join("target/attack-demo").join(spec.name);
        let mut lab = Lab::new(spec.name, spec.server_args, &work)?;
        let mut sensor = apitap_tests::Sensor::start(
            &lab.topo.server,
            &lab.topo.server_if,
            &[SERVER_PORT],
            &work.join("sensor"),
        )?;
        run_traffic(spec, &lab, &opts).with_context(|| format!("scenario {}", spec.name))?;
        std::thread::sleep(Duration::from_secs(2));
        sensor.stop()?;
        lab.stop_server()?;
        let requests = read_access_log(&lab.access_log)?.len();
        let events = apitap_tests::read_events(&sensor.events)?.len();
        runs.push(DemoRun {
            scenario: spec.name,
            events: sensor.events.clone(),
            access_log: lab.access_log.clone(),
            requests,
            events_captured: events,
            detector: spec.expect.detector,
            actor: (spec.expect.actor_key, spec.expect.actor),
        });
    }
    print_table(&runs)?;
    Ok(runs)
}

fn print_table(runs: &[DemoRun]) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "\n{:<22} {:>9} {:>9} {:>9}  {:<20} expected actor",
        "scenario", "requests", "events", "missing", "expected detector"
    )?;
    for r in runs {
        writeln!(
            out,
            "{:<22} {:>9} {:>9} {:>9}  {:<20} {}",
            r.scenario,
            r.requests,
            r.events_captured,
            r.requests.saturating_sub(r.events_captured),
            r.detector,
            if r.actor.0 == "none" {
                "-".to_owned()
            } else {
                format!("{}={}", r.actor.0, r.actor.1)
            }
        )?;
    }
    for r in runs {
        writeln!(
            out,
            "{}: events {}, server log {}",
            r.scenario,
            r.events.display(),
            r.access_log.display()
        )?;
    }
    Ok(())
}

/// The demo's second stage: each scenario's live events through `apitap-analyzer process`,
/// then scenario × expected detector × raised detections (Create) × latency from the first
/// event, and whether benign traffic stayed quiet.
pub fn detect(runs: &[DemoRun]) -> anyhow::Result<()> {
    let analyzer = apitap_tests::workspace_bin("apitap-analyzer")?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "\n{:<22} {:<20} {:<44} {:>9}  verdict",
        "scenario", "expected", "raised (detector/kind)", "latency s"
    )?;
    writeln!(
        out,
        "(latency: first Create after the scenario's first event; background traffic starts \
         20 s before the attack)"
    )?;
    for r in runs {
        let alerts_path = r.events.with_extension("alerts.jsonl");
        let status = Command::new(&analyzer)
            .arg("process")
            .arg("--input")
            .arg(&r.events)
            .arg("--alerts")
            .arg(&alerts_path)
            .args(["--summary", "/dev/null"])
            .env("RUST_LOG", "error")
            .status()
            .context("running apitap-analyzer process")?;
        if !status.success() {
            bail!("apitap-analyzer process failed on {}", r.events.display());
        }
        let first_event_ms = apitap_tests::read_events(&r.events)?
            .iter()
            .map(|e| e.request_start_unix_us / 1000)
            .min()
            .unwrap_or(0);
        let mut raised = Vec::new();
        let mut latency = None;
        for line in std::fs::read_to_string(&alerts_path)?.lines() {
            let a: Value = serde_json::from_str(line)?;
            if a["class_uid"] != 2004 || a["activity_id"] != 1 {
                continue;
            }
            let detector = a["unmapped"]["apitap"]["detector"].as_str().unwrap_or("?");
            raised.push(format!(
                "{detector}/{}",
                a["unmapped"]["apitap"]["kind"].as_str().unwrap_or("?")
            ));
            if detector == r.detector && latency.is_none() {
                let created = a["finding_info"]["created_time"].as_u64().unwrap_or(0);
                latency = Some(created.saturating_sub(first_event_ms) as f64 / 1000.0);
            }
        }
        let verdict = match (r.detector, latency, raised.is_empty()) {
            ("none", _, true) => "ok (quiet)",
            ("none", _, false) => "FALSE ALERT",
            (_, Some(_), _) => "ok",
            (_, None, _) => "MISSED",
        };
        writeln!(
            out,
            "{:<22} {:<20} {:<44} {:>9}  {verdict}",
            r.scenario,
            r.detector,
            if raised.is_empty() {
                "-".to_owned()
            } else {
                raised.join(" ")
            },
            latency.map_or("-".to_owned(), |l| format!("{l:.1}")),
        )?;
    }
    Ok(())
}
