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

pub(crate) mod lab;
pub(crate) mod scenarios;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use apitap_tests::attacks::fixtures_dir;
use apitap_tests::{SERVER_IP, SERVER_PORT, Topology, workspace_root};
use serde_json::{Value, json};

use lab::*;
use scenarios::*;

/// The server's seed and size (accounts, PII, orders, OTP codes are derived from them).
const SEED: u32 = 7;

const USERS: u32 = 1000;

/// Single-source attackers use the client namespace's primary address.
const ATTACKER: &str = apitap_tests::CLIENT_IP;

/// Seconds of benign background before an attack starts, and after it ends.
pub(crate) const WARMUP_S: u64 = 20;

pub(crate) const TAIL_S: u64 = 5;

/// Benign background sessions during attack scenarios: addresses, mean gap, think scale.
const BACKGROUND_ADDRS: usize = 4;

/// Pcaps and access logs above this size are stored gzipped.
pub(crate) const GZIP_ABOVE: u64 = 1 << 20;

/// Length of the benign recording (issue 7: 10 minutes of stream time).
pub const BENIGN_SECONDS: u64 = 600;

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
pub(crate) fn benign_addrs(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("10.213.{}.{}", 100 + i, 10 + 7 * i))
        .collect()
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
pub(crate) fn capture_span(pcap: &Path) -> anyhow::Result<(f64, f64, u64)> {
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
pub(crate) fn tool_version(tool: &str, package: &str) -> String {
    let probe: (&str, &[&str], &str) = match tool {
        "hydra" => ("hydra", &["-h"], "Hydra v"),
        "ffuf" => ("ffuf", &["-V"], "version"),
        "wfuzz" => ("wfuzz", &["--version"], "."),
        "patator" => ("patator", &["--version"], "Patator"),
        "gobuster" => ("gobuster", &["version"], "."),
        "wget" => ("wget", &["--version"], "Wget"),
        "curl" => ("curl", &["--version"], "curl"),
        "httrack" => ("httrack", &["--version"], "HTTrack"),
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

pub(crate) fn python_version() -> String {
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
pub(crate) fn store(path: &Path, dest_dir: &Path, name: &str) -> anyhow::Result<String> {
    store_above(path, dest_dir, name, GZIP_ABOVE)
}

/// Copies `path` to `dest_dir/name`, gzipped (`name.gz`) when larger than `gzip_above`
/// bytes; returns the stored file's name.
pub(crate) fn store_above(
    path: &Path,
    dest_dir: &Path,
    name: &str,
    gzip_above: u64,
) -> anyhow::Result<String> {
    let plain = dest_dir.join(name);
    let gz = dest_dir.join(format!("{name}.gz"));
    let _ = std::fs::remove_file(&plain);
    let _ = std::fs::remove_file(&gz);
    if std::fs::metadata(path)?.len() <= gzip_above {
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

pub(crate) fn round3(x: f64) -> f64 {
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

pub(crate) fn require_root(what: &str) -> anyhow::Result<()> {
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
