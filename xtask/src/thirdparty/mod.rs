//! Issue 14's evaluation harness: real attack tools against THIRD-PARTY applications from
//! the package registries (httpbin, Django's admin, Flask-AppBuilder, Datasette from PyPI;
//! deluge-web from Debian), each with its own login style.
//!
//! `cargo xtask record-thirdparty [--app A] [--scenario S]` sets an application up in a
//! network namespace (data and accounts from `tests/thirdparty/`, Faker zh_CN), runs a benign
//! population (`tests/thirdparty/population.py`) and an attack tool against it, captures the
//! server's veth with dumpcap (`tcp port <app port>`), and writes
//! `tests/fixtures/thirdparty/<scenario>.pcapng[.gz]`, the request-level ground truth derived
//! from the capture with tshark (`<scenario>.truth.jsonl[.gz]`) and the scenario's entry in
//! `tests/fixtures/thirdparty/manifest.json`. CI only replays these files
//! (`tests/tests/thirdparty_fixtures.rs`, `tests/tests/thirdparty_detections.rs`).
//!
//! Helpers (namespaces, tool runner, word lists, dumpcap, storage) are the attack lab's
//! (`crate::attacks`). Every tool run is bounded in count (its word list) and time
//! (`timeout`); all traffic stays inside the namespaces created here.

mod apps;
mod scenarios;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use apitap_tests::{SERVER_IP, Topology, workspace_root};
use serde_json::{Value, json};

use crate::attacks::lab::{
    Account, Background, Rng, kill_child, run_curl, run_tool, shell_line, stop_child, strings,
};
use crate::attacks::scenarios::{Attack, Dumpcap};
use crate::attacks::{
    TAIL_S, WARMUP_S, benign_addrs, capture_span, require_root, round3, store, store_above,
    tool_version,
};

use apps::*;
use scenarios::*;

/// Benign people (one address each, each in its own /24) and the monitoring poller.
const PEOPLE: usize = 24;

const POLLER: &str = "10.213.99.5";

/// The distributed campaign's three /16 networks (50 addresses in each).
const CAMPAIGN_NETS: [&str; 3] = ["10.61", "10.87", "10.133"];

/// Length of the benign-only captures (real time).
const BENIGN_S: u64 = 420;

/// Length of the distributed campaigns (real time).
const CAMPAIGN_S: u64 = 600;

/// deluge-web's password in the lab: entry 190 of John's list (the brute force's list holds
/// it); the default `deluge` is changed before the capture starts.
const DELUGE_JOHN_INDEX: usize = 190;

pub(crate) fn fixtures_dir() -> PathBuf {
    workspace_root().join("tests/fixtures/thirdparty")
}

/// 150 addresses, 50 in each of [`CAMPAIGN_NETS`] (/16), scattered over their /24s.
fn campaign_addrs() -> Vec<String> {
    let mut rng = Rng::new(0x5EED_0014);
    let mut out: Vec<String> = Vec::new();
    for net in CAMPAIGN_NETS {
        let mut n = 0;
        while n < 50 {
            let a = format!("{net}.{}.{}", 1 + rng.below(254), 1 + rng.below(254));
            if !out.contains(&a) {
                out.push(a);
                n += 1;
            }
        }
    }
    out
}

/// The benign people's addresses.
fn people_addrs() -> Vec<String> {
    benign_addrs(PEOPLE)
}

/// The accounts the application was set up with (`gen_data.py accounts`).
fn read_accounts(path: &Path) -> anyhow::Result<Vec<Account>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let v: Value = serde_json::from_str(&text).context("accounts.json")?;
    v.as_array()
        .context("accounts.json: not a list")?
        .iter()
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

/// One application in its namespaces, with its data.
struct TLab {
    topo: Topology,
    app: &'static App,
    dir: PathBuf,
    accounts: Vec<Account>,
    /// deluge-web's password (empty for the other applications).
    web_password: String,
    server: Option<Child>,
    server_command: String,
}

impl TLab {
    fn new(app: &'static App, dir: &Path) -> anyhow::Result<TLab> {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let topo = Topology::new("tp")?;
        for net in ["10.213.0.0/16"]
            .into_iter()
            .map(str::to_owned)
            .chain(CAMPAIGN_NETS.iter().map(|n| format!("{n}.0.0/16")))
        {
            let ok = topo
                .server
                .cmd("ip", &["route", "add", &net, "dev", &topo.server_if])
                .status()?
                .success();
            if !ok {
                bail!("adding the server's route to {net} failed");
            }
        }
        let mut batch = String::new();
        for a in people_addrs()
            .iter()
            .chain(std::iter::once(&POLLER.to_owned()))
            .chain(&campaign_addrs())
        {
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
        let cmd = prepare(app, dir)?;
        let accounts = read_accounts(&dir.join("accounts.json"))?;
        let log = std::fs::File::create(dir.join("server.log"))?;
        let argv: Vec<&str> = cmd.args.iter().map(String::as_str).collect();
        let mut c = topo.server.cmd(&cmd.program, &argv);
        c.current_dir(&cmd.cwd)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        for (k, v) in &cmd.env {
            c.env(k, v);
        }
        let child = c
            .spawn()
            .with_context(|| format!("starting {}", cmd.program))?;
        let mut lab = TLab {
            topo,
            app,
            dir: dir.to_path_buf(),
            accounts,
            web_password: String::new(),
            server: Some(child),
            server_command: cmd.shown,
        };
        lab.wait_ready()?;
        if app.name == "deluge" {
            lab.web_password = crate::attacks::lab::john_passwords(DELUGE_JOHN_INDEX + 1)?
                .pop()
                .context("John's list is short")?;
            let sid = lab.client_curl(&[
                "-c",
                "-",
                "-o",
                "/dev/null",
                "-H",
                "Content-Type: application/json",
                "--data-binary",
                r#"{"method":"auth.login","params":["deluge"],"id":1}"#,
                &lab.url("/json"),
            ])?;
            let session = sid
                .lines()
                .find(|l| l.contains("_session_id"))
                .and_then(|l| l.split('\t').next_back())
                .context("deluge-web: default login failed")?
                .to_owned();
            let body = json!({"method": "auth.change_password", "params": ["deluge", lab.web_password], "id": 2}).to_string();
            let out = lab.client_curl(&[
                "-b",
                &format!("_session_id={session}"),
                "-H",
                "Content-Type: application/json",
                "--data-binary",
                &body,
                &lab.url("/json"),
            ])?;
            if !out.contains("\"result\": true") {
                bail!("deluge-web: changing the password failed: {out}");
            }
        }
        Ok(lab)
    }

    /// Polls the application from the client namespace until it answers (before the capture).
    fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let url = self.url("/");
        loop {
            if let Some(c) = self.server.as_mut()
                && let Some(st) = c.try_wait()?
            {
                bail!(
                    "{}: server exited with {st}: {}",
                    self.app.name,
                    std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
                );
            }
            let ok = self
                .topo
                .client
                .cmd("curl", &["-s", "-o", "/dev/null", "--max-time", "2", &url])
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("{}: server did not start", self.app.name);
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{SERVER_IP}:{}{path}", self.app.port)
    }

    /// Runs an attack tool in the client namespace (bounded; see `run_tool`).
    fn tool(
        &self,
        label: &str,
        timeout_s: u64,
        program: &str,
        args: &[String],
    ) -> anyhow::Result<String> {
        run_tool(
            &self.topo.client,
            &self.dir,
            label,
            timeout_s,
            program,
            args,
        )
    }

    /// curl from `source` in the client namespace (10 s bound); the response body.
    fn curl(&self, source: &str, args: &[&str]) -> anyhow::Result<String> {
        run_curl(&self.topo.client, source, args)
    }

    /// curl from the attacker's address (setup steps before a capture, or the attacker's own
    /// small steps).
    fn client_curl(&self, args: &[&str]) -> anyhow::Result<String> {
        self.curl(apitap_tests::CLIENT_IP, args)
    }

    /// Starts the benign population: [`PEOPLE`] people and the poller, for `duration_s`
    /// (stopped earlier by `Background::stop`), arrivals spread over `ramp_s`.
    fn population(&self, duration_s: u64, ramp_s: u64, seed: u32) -> anyhow::Result<Background> {
        let log = std::fs::File::create(self.dir.join(format!("population-{seed}.out")))?;
        let args = vec![
            setup_file("population.py").to_string_lossy().into_owned(),
            "--app".into(),
            self.app.name.into(),
            "--base".into(),
            self.url(""),
            "--sources".into(),
            people_addrs().join(","),
            "--poller".into(),
            POLLER.into(),
            "--poll-path".into(),
            self.app.poll_path.into(),
            "--accounts".into(),
            self.dir
                .join("accounts.json")
                .to_string_lossy()
                .into_owned(),
            "--web-password".into(),
            self.web_password.clone(),
            "--duration".into(),
            duration_s.to_string(),
            "--ramp".into(),
            ramp_s.to_string(),
            "--seed".into(),
            seed.to_string(),
        ];
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let child = self
            .topo
            .client
            .cmd(venv_bin("python"), &argv)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting population.py")?;
        Ok(Background::new(child))
    }

    fn stop_server(&mut self) -> anyhow::Result<()> {
        if let Some(mut c) = self.server.take() {
            stop_child(&mut c, libc::SIGTERM, Duration::from_secs(15))?;
        }
        Ok(())
    }
}

impl Drop for TLab {
    fn drop(&mut self) {
        if let Some(mut c) = self.server.take() {
            kill_child(&mut c);
        }
    }
}

// ---- ground truth from the capture ----------------------------------------------------------

/// One request of the capture, paired with its response (tshark's HTTP dissector).
struct Truth {
    time: f64,
    ip: String,
    port: u64,
    method: String,
    target: String,
    status: u64,
    location: Option<String>,
    cookies: Vec<String>,
    /// A JSON-RPC `auth.login` call (deluge-web: its answer is 200 either way).
    rpc_login: bool,
}

/// Requests and their responses, by tshark (`-d tcp.port==<port>,http`): the request-level
/// truth (the applications do not write apitap's access-log format).
fn truth_of(pcap: &Path, port: u16) -> anyhow::Result<Vec<Truth>> {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(pcap)
        .args([
            "-d",
            &format!("tcp.port=={port},http"),
            "-Y",
            "http",
            "-T",
            "fields",
            "-E",
            "separator=\t",
            "-E",
            "aggregator=/s",
            "-E",
            "quote=n",
        ])
        .args(
            [
                "frame.number",
                "frame.time_epoch",
                "ip.src",
                "ip.dst",
                "tcp.srcport",
                "tcp.dstport",
                "http.request.method",
                "http.request.uri",
                "http.response.code",
                "http.request_in",
                "http.location",
                "http.set_cookie",
                // Last: a body may hold tabs or newlines (only its start is used).
                "http.file_data",
            ]
            .iter()
            .flat_map(|f| ["-e", f]),
        )
        .output()
        .context("running tshark")?;
    if !out.status.success() {
        bail!(
            "tshark -r {}: {}",
            pcap.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut requests: BTreeMap<u64, Truth> = BTreeMap::new();
    // (request frame, status, location, cookies) of each response.
    let mut responses: Vec<(u64, u64, Option<String>, Vec<String>)> = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() < 12 {
            continue;
        }
        let frame: u64 = f[0].parse().unwrap_or(0);
        let time: f64 = f[1].parse().unwrap_or(0.0);
        if !f[6].is_empty() {
            let methods: Vec<&str> = f[6].split(' ').collect();
            let uris: Vec<&str> = f[7].split(' ').collect();
            if methods.len() != 1 || uris.len() != 1 {
                bail!("frame {frame}: {} requests in one frame", methods.len());
            }
            requests.insert(
                frame,
                Truth {
                    time,
                    ip: f[2].to_owned(),
                    port: f[4].parse().unwrap_or(0),
                    method: methods[0].to_owned(),
                    target: uris[0].to_owned(),
                    status: 0,
                    location: None,
                    cookies: Vec::new(),
                    rpc_login: f.get(12).is_some_and(|b| {
                        b.contains("\"method\": \"auth.login\"")
                            || b.contains("\"method\":\"auth.login\"")
                    }),
                },
            );
        }
        if !f[8].is_empty() {
            let codes: Vec<&str> = f[8].split(' ').collect();
            let req_in: Vec<&str> = f[9].split(' ').collect();
            if codes.len() != 1 || req_in.len() != 1 {
                bail!("frame {frame}: {} responses in one frame", codes.len());
            }
            let cookies = f[11]
                .split(' ')
                .filter_map(|c| c.split('=').next())
                .filter(|c| !c.is_empty() && !c.contains(';'))
                .map(str::to_owned)
                .collect();
            responses.push((
                req_in[0].parse().unwrap_or(0),
                codes[0].parse().unwrap_or(0),
                (!f[10].is_empty()).then(|| f[10].to_owned()),
                cookies,
            ));
        }
    }
    for (req, status, location, cookies) in responses {
        if let Some(t) = requests.get_mut(&req) {
            t.status = status;
            t.location = location;
            t.cookies = cookies;
        }
    }
    Ok(requests.into_values().collect())
}

/// Did this request log in successfully (per the application's login style)?
fn login_succeeded(app: &App, t: &Truth) -> Option<bool> {
    let path = t.target.split('?').next().unwrap_or_default();
    match (app.name, t.method.as_str()) {
        ("httpbin", "GET") if path.starts_with("/basic-auth/") => Some(t.status == 200),
        ("django", "POST") if path == "/admin/login/" => Some(t.status == 302),
        ("fab", "POST") if path == "/login/" => Some(
            t.status == 302
                && t.location
                    .as_deref()
                    .is_some_and(|l| !l.contains("/login/")),
        ),
        ("fab", "POST") if path == "/api/v1/security/login" => Some(t.status == 200),
        // deluge's auth.login answers 200 either way; success sets the session cookie.
        ("deluge", "POST") if path == "/json" && t.rpc_login => {
            Some(t.cookies.iter().any(|c| c == "_session_id"))
        }
        _ => None,
    }
}

fn write_truth(path: &Path, truth: &[Truth], attackers: &[String]) -> anyhow::Result<()> {
    let mut text = String::new();
    for t in truth {
        let mut v = json!({
            "time": round6(t.time),
            "ip": t.ip,
            "port": t.port,
            "method": t.method,
            "target": t.target,
            "status": t.status,
            "attacker": attackers.contains(&t.ip),
        });
        if let Some(l) = &t.location {
            v["location"] = json!(l);
        }
        if !t.cookies.is_empty() {
            v["set_cookie"] = json!(t.cookies);
        }
        text.push_str(&v.to_string());
        text.push('\n');
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

fn round6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

// ---- manifest -------------------------------------------------------------------------------

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
                "description": "Issue 14 evaluation traffic: real attack tools and a benign population against third-party applications from PyPI and Debian, captured on the server's veth. Re-record: cargo xtask record-thirdparty [--app A] [--scenario S] (see README.md).",
                "scenarios": [],
            }),
        };
        let name = entry["scenario"].as_str().unwrap_or_default().to_owned();
        let list = doc
            .get_mut("scenarios")
            .and_then(Value::as_array_mut)
            .context("manifest.json: no scenarios list")?;
        list.retain(|e| e["scenario"].as_str() != Some(name.as_str()));
        list.push(entry);
        let order = |e: &Value| {
            let n = e["scenario"].as_str().unwrap_or_default();
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

fn record_one(spec: &TSpec) -> anyhow::Result<()> {
    eprintln!("== recording {} ==", spec.name);
    let app = app(spec.app)?;
    let work = workspace_root().join("target/thirdparty").join(spec.name);
    let mut lab = TLab::new(app, &work)?;
    let pcap = work.join(format!("{}.pcapng", spec.name));
    let cap = Dumpcap::start_on(
        &lab.topo.server,
        &lab.topo.server_if,
        app.port,
        &lab.dir,
        &pcap,
    )?;
    let run = if spec.detector == "none" {
        let pop = lab.population(BENIGN_S, 60, 1)?;
        pop.wait(Duration::from_secs(BENIGN_S + 90))?;
        Run::new(Attack {
            tool: "population.py",
            package: "python3",
            command: format!(
                "python3 tests/thirdparty/population.py --app {} --base {} --sources <{PEOPLE} addresses> --poller {POLLER} --poll-path '{}' --accounts accounts.json --duration {BENIGN_S} --ramp 60 --seed 1",
                app.name,
                lab.url(""),
                app.poll_path
            ),
            attackers: Vec::new(),
            benign: Vec::new(),
            notes: "benign only".into(),
        })
    } else {
        let pop = lab.population(3600, 15, 2)?;
        std::thread::sleep(Duration::from_secs(WARMUP_S));
        let run = (spec.traffic)(&lab)?;
        std::thread::sleep(Duration::from_secs(TAIL_S));
        pop.stop()?;
        run
    };
    let attack = &run.attack;
    cap.stop()?;
    lab.stop_server()?;
    let mut benign = people_addrs();
    benign.push(POLLER.into());
    let truth = truth_of(&pcap, app.port)?;
    let (stream_start, stream_end, packets) = capture_span(&pcap)?;
    let attackers = attack.attackers.clone();
    let is_attacker = |ip: &str| attackers.iter().any(|a| a == ip);
    let unknown: Vec<&str> = truth
        .iter()
        .map(|t| t.ip.as_str())
        .filter(|ip| !is_attacker(ip) && !benign.iter().any(|b| b == ip))
        .collect();
    if !unknown.is_empty() {
        bail!(
            "{}: requests from unexpected addresses {:?}",
            spec.name,
            &unknown[..unknown.len().min(5)]
        );
    }
    // A tool that stops at a success (hydra -f) abandons its other threads' requests: those
    // stay in the truth with status 0. Benign clients always read their responses.
    if let Some(t) = truth.iter().find(|t| t.status == 0 && !is_attacker(&t.ip)) {
        bail!(
            "{}: benign request without response in the capture: {} {} from {}",
            spec.name,
            t.method,
            t.target,
            t.ip
        );
    }
    let attack_lines: Vec<&Truth> = truth.iter().filter(|t| is_attacker(&t.ip)).collect();
    // A bulk pull is a few large pages; the other attacks are hundreds of requests.
    let least = if spec.kind == "bulk" { 10 } else { 20 };
    if spec.detector != "none" && attack_lines.len() < least {
        bail!(
            "{}: only {} attacker requests in the capture; see {}",
            spec.name,
            attack_lines.len(),
            work.display()
        );
    }
    let mut by_status: BTreeMap<String, u64> = BTreeMap::new();
    let mut attack_status: BTreeMap<String, u64> = BTreeMap::new();
    for t in &truth {
        *by_status.entry(t.status.to_string()).or_default() += 1;
        if is_attacker(&t.ip) {
            *attack_status.entry(t.status.to_string()).or_default() += 1;
        }
    }
    let logins = |attacker: bool| {
        let attempts: Vec<bool> = truth
            .iter()
            .filter(|t| is_attacker(&t.ip) == attacker)
            .filter_map(|t| login_succeeded(app, t))
            .collect();
        json!({
            "attempts": attempts.len(),
            "succeeded": attempts.iter().filter(|s| **s).count(),
        })
    };
    let truth_file = work.join("truth.jsonl");
    write_truth(&truth_file, &truth, &attackers)?;
    std::fs::create_dir_all(fixtures_dir())?;
    let pcap_name = store(&pcap, &fixtures_dir(), &format!("{}.pcapng", spec.name))?;
    // The truth compresses tenfold: stored gzipped above 64 KiB.
    let truth_name = store_above(
        &truth_file,
        &fixtures_dir(),
        &format!("{}.truth.jsonl", spec.name),
        64 << 10,
    )?;
    let fixture_bytes = std::fs::metadata(fixtures_dir().join(&pcap_name))?.len();
    let (ocsf, actor) = if spec.detector == "none" {
        (Value::Null, Value::Null)
    } else {
        (
            json!(2004),
            json!({"key": spec.actor_key, "value": spec.actor}),
        )
    };
    let alt: Vec<Value> = spec
        .alt
        .iter()
        .map(|(k, v)| json!({"key": k, "value": v}))
        .collect();
    let networks: Vec<String> = if attackers.len() > 100 {
        CAMPAIGN_NETS
            .iter()
            .map(|n| format!("{n}.0.0/16"))
            .collect()
    } else {
        Vec::new()
    };
    let tool_version = match attack.tool {
        "population.py" => format!("Python {}", crate::attacks::python_version()),
        t => tool_version(t, attack.package),
    };
    let entry = json!({
        "scenario": spec.name,
        "app": app.name,
        "app_title": app.title,
        "app_version": app_version(app),
        "login_style": app.login_style,
        "kind": spec.kind,
        "description": spec.description,
        "fixture": pcap_name,
        "fixture_bytes": fixture_bytes,
        "truth": truth_name,
        "packets": packets,
        "server": {
            "address": format!("{SERVER_IP}:{}", app.port),
            "command": lab.server_command,
        },
        "tool": attack.tool,
        "tool_version": tool_version,
        "command": attack.command,
        "notes": attack.notes,
        "attackers": attackers,
        "attacker_networks": networks,
        "benign": benign,
        "poller": POLLER,
        "stream_start": round3(stream_start),
        "stream_end": round3(stream_end),
        "attack_start": attack_lines.first().map(|t| round3(t.time)),
        "attack_end": attack_lines.last().map(|t| round3(t.time)),
        "requests": {
            "total": truth.len(),
            "attack": attack_lines.len(),
            "benign": truth.len() - attack_lines.len(),
            "unanswered": truth.iter().filter(|t| t.status == 0).count(),
            "by_status": by_status,
            "attack_by_status": attack_status,
        },
        "logins": {"attack": logins(true), "benign": logins(false)},
        "successful_attacker_logins": run.successes,
        "expected": {
            "detector": spec.detector,
            "ocsf_class": ocsf,
            "actor": actor,
            "also_acceptable": alt,
            "within_s": match spec.detector {
                "none" => Value::Null,
                _ if attackers.len() > 100 => json!(300),
                _ => json!(60),
            },
        },
    });
    update_manifest(entry)?;
    eprintln!(
        "recorded {}: {} requests ({} attack), {} packets, {} ({} bytes)",
        spec.name,
        truth.len(),
        attack_lines.len(),
        packets,
        pcap_name,
        fixture_bytes
    );
    Ok(())
}

fn select(app: Option<&str>, scenario: Option<&str>) -> anyhow::Result<Vec<&'static TSpec>> {
    let by_app: Vec<&TSpec> = match app {
        None => SCENARIOS.iter().collect(),
        Some(apps) => {
            let names: Vec<&str> = apps.split(',').map(str::trim).collect();
            for n in &names {
                apps::app(n)?;
            }
            SCENARIOS
                .iter()
                .filter(|s| names.contains(&s.app))
                .collect()
        }
    };
    match scenario {
        None => Ok(by_app),
        Some(names) => names
            .split(',')
            .map(|n| {
                by_app
                    .iter()
                    .copied()
                    .find(|s| s.name == n.trim())
                    .with_context(|| {
                        format!(
                            "unknown scenario {n}; known: {}",
                            by_app.iter().map(|s| s.name).collect::<Vec<_>>().join(", ")
                        )
                    })
            })
            .collect(),
    }
}

/// Debian tools the scenarios run (beside the attack lab's).
const TOOLS: &[(&str, &str)] = &[("httrack", "httrack"), ("deluge-web", "deluge-web")];

/// `cargo xtask record-thirdparty [--app A[,A…]] [--scenario S[,S…]]`.
pub fn record(app: Option<&str>, scenario: Option<&str>) -> anyhow::Result<()> {
    require_root("recording third-party fixtures")?;
    let specs = select(app, scenario)?;
    crate::attacks::scenarios::install_tools()?;
    crate::setup::install_tools(TOOLS, "for the third-party recordings").map(drop)?;
    ensure_venv()?;
    std::fs::create_dir_all(fixtures_dir())?;
    for spec in specs {
        record_one(spec).with_context(|| format!("scenario {}", spec.name))?;
    }
    Ok(())
}
