//! The recorded attack-tool fixtures (`tests/fixtures/attacks/`, recorded by `cargo xtask
//! record-attacks`): their manifest and their replay through the real sensor decoder.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};
use serde_json::Value;

use crate::{workspace_bin, workspace_root};

/// The strings of a JSON array (manifest lists: attackers, networks, …); empty otherwise.
pub fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// `tests/fixtures/attacks`.
pub fn fixtures_dir() -> PathBuf {
    workspace_root().join("tests/fixtures/attacks")
}

/// The manifest's scenario entries.
pub fn manifest() -> anyhow::Result<Vec<Value>> {
    manifest_in(&fixtures_dir())
}

fn manifest_in(dir: &Path) -> anyhow::Result<Vec<Value>> {
    let path = dir.join("manifest.json");
    let text = std::fs::read_to_string(&path).with_context(|| format!("{}", path.display()))?;
    let doc: Value = serde_json::from_str(&text).context("manifest.json is not JSON")?;
    doc["scenarios"]
        .as_array()
        .cloned()
        .context("manifest.json: no scenarios")
}

/// `tests/fixtures/thirdparty` (issue 14: attack tools against third-party applications,
/// recorded by `cargo xtask record-thirdparty`).
pub fn thirdparty_dir() -> PathBuf {
    workspace_root().join("tests/fixtures/thirdparty")
}

/// The third-party manifest's scenario entries.
pub fn thirdparty_manifest() -> anyhow::Result<Vec<Value>> {
    manifest_in(&thirdparty_dir())
}

/// Bytes of a fixture file in `dir`, unpacked (system `gzip`) when it ends in `.gz`.
pub fn read_fixture_in(dir: &Path, name: &str) -> anyhow::Result<Vec<u8>> {
    let path = dir.join(name);
    if !name.ends_with(".gz") {
        return std::fs::read(&path).with_context(|| format!("{}", path.display()));
    }
    let out = Command::new("gzip")
        .arg("-dc")
        .arg(&path)
        .output()
        .context("running gzip")?;
    if !out.status.success() {
        bail!("gzip -dc {} failed", path.display());
    }
    Ok(out.stdout)
}

/// The pcap of `fixture` (in `dir`) as a file: the fixture itself, or unpacked into
/// `scratch` when it ends in `.gz`.
pub fn fixture_pcap_in(dir: &Path, fixture: &str, scratch: &Path) -> anyhow::Result<PathBuf> {
    if !fixture.ends_with(".gz") {
        return Ok(dir.join(fixture));
    }
    let bytes = read_fixture_in(dir, fixture)?;
    std::fs::create_dir_all(scratch)?;
    let unpacked = scratch.join(fixture.trim_end_matches(".gz"));
    std::fs::write(&unpacked, bytes)?;
    Ok(unpacked)
}

/// Runs `apitap-analyzer process` over `events` with a fixed hash key (stable campaign ids
/// and actor hashes) and `--alert-format format`; returns every alert document.
pub fn analyze(events: &Path, dir: &Path, format: &str) -> anyhow::Result<Vec<Value>> {
    let key = dir.join("hash.key");
    std::fs::write(&key, "apitap detections golden test key\n")?;
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))?;
    }
    let config = dir.join("analyzer.toml");
    std::fs::write(
        &config,
        format!(
            "[labels]\nhash_key_file = {:?}\n",
            key.display().to_string()
        ),
    )?;
    let alerts = dir.join("alerts.jsonl");
    let out = Command::new(workspace_bin("apitap-analyzer")?)
        .arg("process")
        .arg("--input")
        .arg(events)
        .arg("--alerts")
        .arg(&alerts)
        .args([
            "--summary",
            "/dev/null",
            "--alert-format",
            format,
            "--config",
        ])
        .arg(&config)
        .env("RUST_LOG", "warn")
        .output()
        .context("running apitap-analyzer process")?;
    if !out.status.success() {
        bail!("analyzer failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    std::fs::read_to_string(&alerts)?
        .lines()
        .map(|l| serde_json::from_str(l).context("alert line"))
        .collect()
}

/// The pcap of `fixture` (in [`fixtures_dir`]) as a file ([`fixture_pcap_in`]).
pub fn fixture_pcap(fixture: &str, scratch: &Path) -> anyhow::Result<PathBuf> {
    fixture_pcap_in(&fixtures_dir(), fixture, scratch)
}

/// A fixture replayed through the sensor decoder: its events and the replay's summary
/// counters (`transactions`, `stream gaps`, …, from its stderr).
pub struct Replayed {
    /// The events, in output order.
    pub events: Vec<apitap_schema::ApiEvent>,
    /// Summary counters by name.
    pub summary: std::collections::BTreeMap<String, u64>,
}

/// Replays `fixture` of `dir` in a scratch directory tagged `tag` ([`replay_to`]).
pub fn replay_fixture(dir: &Path, fixture: &str, tag: &str) -> anyhow::Result<Replayed> {
    let name = fixture.split('.').next().unwrap_or(fixture);
    let tmp = std::env::temp_dir().join(format!("apitap-{tag}-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    let pcap = fixture_pcap_in(dir, fixture, &tmp)?;
    let events_path = tmp.join("events.jsonl");
    let stderr = replay_to(&pcap, &events_path, tag)?;
    let events = crate::read_events(&events_path)?;
    let _ = std::fs::remove_dir_all(&tmp);
    let summary = stderr
        .lines()
        .filter_map(|l| l.rsplit_once(' '))
        .filter_map(|(k, v)| v.trim().parse().ok().map(|v| (k.trim().to_owned(), v)))
        .collect();
    Ok(Replayed { events, summary })
}

/// The request target of an event as a server logs it: path, and `?query` when present.
pub fn request_target(e: &apitap_schema::ApiEvent) -> String {
    match &e.request.query {
        Some(q) => format!("{}?{q}", e.request.path),
        None => e.request.path.clone(),
    }
}

/// Runs `apitap-sensor replay` on `pcap`, writing JSON-lines events to `events`; returns the
/// replay's summary (stderr).
pub fn replay_to(pcap: &Path, events: &Path, sensor_id: &str) -> anyhow::Result<String> {
    let out = Command::new(workspace_bin("apitap-sensor")?)
        .arg("replay")
        .arg(pcap)
        .arg("--events-file")
        .arg(events)
        .args(["--sensor-id", sensor_id])
        .env("RUST_LOG", "warn")
        .env("NO_COLOR", "1")
        .output()
        .context("running apitap-sensor replay")?;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        bail!("replay of {} failed: {stderr}", pcap.display());
    }
    Ok(stderr)
}
