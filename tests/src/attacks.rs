//! The recorded attack-tool fixtures (`tests/fixtures/attacks/`, recorded by `cargo xtask
//! record-attacks`): their manifest and their replay through the real sensor decoder.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};
use serde_json::Value;

use crate::{workspace_bin, workspace_root};

/// `tests/fixtures/attacks`.
pub fn fixtures_dir() -> PathBuf {
    workspace_root().join("tests/fixtures/attacks")
}

/// The manifest's scenario entries.
pub fn manifest() -> anyhow::Result<Vec<Value>> {
    let path = fixtures_dir().join("manifest.json");
    let text = std::fs::read_to_string(&path).with_context(|| format!("{}", path.display()))?;
    let doc: Value = serde_json::from_str(&text).context("manifest.json is not JSON")?;
    doc["scenarios"]
        .as_array()
        .cloned()
        .context("manifest.json: no scenarios")
}

/// The pcap of `fixture` as a file: the fixture itself, or unpacked (system `gzip`) into
/// `scratch` when it ends in `.gz`.
pub fn fixture_pcap(fixture: &str, scratch: &Path) -> anyhow::Result<PathBuf> {
    let path = fixtures_dir().join(fixture);
    if !fixture.ends_with(".gz") {
        return Ok(path);
    }
    let out = Command::new("gzip")
        .arg("-dc")
        .arg(&path)
        .output()
        .context("running gzip")?;
    if !out.status.success() {
        bail!("gzip -dc {} failed", path.display());
    }
    std::fs::create_dir_all(scratch)?;
    let unpacked = scratch.join(fixture.trim_end_matches(".gz"));
    std::fs::write(&unpacked, out.stdout)?;
    Ok(unpacked)
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
