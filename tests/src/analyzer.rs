//! The analyzer service as a child process (`apitap-analyzer run`), its JSON summary read back
//! from the file it replaces atomically, and synthetic events for feeding a topic directly.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::{Netns, workspace_bin};

/// A running `apitap-analyzer run --config …`.
pub struct AnalyzerProcess {
    child: Option<Child>,
    /// Its directory: config, log, summary.
    pub dir: PathBuf,
    /// Where its logs go.
    pub log: PathBuf,
    /// The JSON summary it rewrites every second (`output.summary_path`).
    pub summary: PathBuf,
}

impl AnalyzerProcess {
    /// Writes a config into `dir`: `sections` (TOML: the event source, `[inventory]`, …)
    /// followed by an `[output]` table writing a JSON summary every second into `dir`, plus
    /// `output_extra` lines in that table. Starts the service, in `ns` when given.
    pub fn start(
        ns: Option<&Netns>,
        dir: &Path,
        sections: &str,
        output_extra: &str,
    ) -> anyhow::Result<AnalyzerProcess> {
        let bin = workspace_bin("apitap-analyzer")?;
        std::fs::create_dir_all(dir)?;
        let summary = dir.join("summary.json");
        let config = dir.join("analyzer.toml");
        std::fs::write(
            &config,
            format!(
                "{sections}\n[output]\nsummary_path = {:?}\nsummary_format = \"json\"\n\
                 summary_interval_secs = 1\n{output_extra}\n",
                summary.display().to_string()
            ),
        )?;
        let config_arg = config.to_string_lossy().into_owned();
        let args = ["run", "--config", config_arg.as_str()];
        let mut cmd = match ns {
            Some(ns) => ns.cmd(&bin, &args),
            None => {
                let mut c = Command::new(&bin);
                c.args(args);
                c
            }
        };
        // Appended, so that a restarted analyzer's log follows the killed one's.
        let log = dir.join("analyzer.log");
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)?;
        let child = cmd
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .context("starting apitap-analyzer")?;
        Ok(AnalyzerProcess {
            child: Some(child),
            dir: dir.to_path_buf(),
            log,
            summary,
        })
    }

    /// Requests per `service method path` in the latest summary (empty before the first).
    pub fn requests(&self) -> anyhow::Result<BTreeMap<String, u64>> {
        let text = match std::fs::read_to_string(&self.summary) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
            Err(e) => return Err(e).context("reading the analyzer summary"),
        };
        if text.trim().is_empty() {
            // Created at start, first written after a second.
            return Ok(BTreeMap::new());
        }
        let rows: Vec<serde_json::Value> =
            serde_json::from_str(text.trim()).context("parsing the analyzer summary")?;
        let mut out = BTreeMap::new();
        for r in rows {
            let key = format!(
                "{} {} {}",
                r["service"].as_str().unwrap_or_default(),
                r["method"].as_str().unwrap_or_default(),
                r["path"].as_str().unwrap_or_default()
            );
            *out.entry(key).or_default() += r["requests"].as_u64().unwrap_or_default();
        }
        Ok(out)
    }

    /// Total requests in the latest summary.
    pub fn total_requests(&self) -> anyhow::Result<u64> {
        Ok(self.requests()?.values().sum())
    }

    /// Waits (bounded) until the summary's total reaches `want`; fails if the process exits.
    pub fn wait_total(&mut self, want: u64, timeout: Duration) -> anyhow::Result<u64> {
        let deadline = Instant::now() + timeout;
        loop {
            let total = self.total_requests()?;
            if total >= want {
                return Ok(total);
            }
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!("apitap-analyzer exited with {status}: {}", self.log_text());
            }
            if Instant::now() > deadline {
                bail!(
                    "analyzer summary stayed at {total} of {want} requests for {timeout:?}: {}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits (bounded) until the log contains `needle` at least `times` times.
    pub fn wait_log(&self, needle: &str, times: usize, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        while self.log_text().matches(needle).count() < times {
            if Instant::now() > deadline {
                bail!(
                    "no {needle:?} ×{times} in the analyzer log: {}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    /// The log so far (all starts in this directory).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM: it makes its work durable, commits and exits; waits for a successful exit.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        let log = self.log.clone();
        crate::stop_child(
            "apitap-analyzer",
            self.child.take(),
            libc::SIGTERM,
            Duration::from_secs(60),
            || std::fs::read_to_string(&log).unwrap_or_default(),
        )
    }

    /// SIGKILL: no chance to flush or commit.
    pub fn kill(&mut self) {
        crate::kill_child(self.child.take());
    }
}

impl Drop for AnalyzerProcess {
    fn drop(&mut self) {
        crate::kill_child(self.child.take());
    }
}

/// A valid event of the current schema: request `i` (its time is
/// [`SYNTHETIC_BASE_US`]` + i` µs, its id derived from `i`) from `client` to `host`'s
/// `GET path` with a request body holding a test card number (`4111111111111111`, which must
/// never reach a log), answered 200. Built through the
/// schema's own decoder, so fields added later take their defaults.
pub fn synthetic_event(i: u64, client: &str, host: &str, path: &str) -> apitap_schema::ApiEvent {
    let start = SYNTHETIC_BASE_US + i;
    let doc = serde_json::json!({
        "schema_version": apitap_schema::SCHEMA_VERSION,
        "event_id": format!("{:032x}", 0xabc0_0000_0000u64 + i),
        "sensor": {"id": "synthetic", "host": "synthetic"},
        "connection_id": format!("{i:016x}"),
        "transaction_index": 0,
        "request_start_unix_us": start,
        "response_end_unix_us": start + 500,
        "latency_us": 500,
        "client": {"ip": client, "port": 40000 + (i % 1000)},
        "server": {"ip": "10.0.0.1", "port": 8080},
        "tls": false,
        "http_version": "1.1",
        "request": {
            "method": "GET", "host": host, "path": path, "headers": [],
            "body": {"length_bytes": 27, "captured_bytes": 27, "truncated": false,
                     "encoding": "utf8", "data": "{\"card\":\"4111111111111111\"}"}
        },
        "response": {
            "status": 200, "reason": "OK",
            "headers": [{"name": "Content-Type", "value": "application/json"}],
            "body": {"length_bytes": 2, "captured_bytes": 2, "truncated": false,
                     "encoding": "utf8", "data": "{}"}
        },
        "anomalies": []
    });
    let bytes = serde_json::to_vec(&doc).unwrap_or_default();
    match apitap_schema::decode_event(&bytes) {
        Ok(e) => e,
        Err(e) => panic!("synthetic event does not match the schema: {e}"),
    }
}

/// Request time of [`synthetic_event`] 0, µs since the Unix epoch.
pub const SYNTHETIC_BASE_US: u64 = 1_700_000_000_000_000;
