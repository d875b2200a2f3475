//! Where results go: the summary (aligned text table or JSON array) and the alert stream.
//!
//! The summary is the analyzer's output, not a log, so it does contain hosts and raw paths
//! (which may themselves carry identifiers); it never contains header values, query strings or
//! bodies. Control characters in hosts and paths are escaped in the table so that hostile
//! input cannot rewrite the terminal.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use apitap_detect::Alert;
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::summary::EndpointReport;

/// A file path, or `-` for standard output/input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `-`: standard output (or standard input for the input).
    Std,
    /// A file.
    File(PathBuf),
}

impl Target {
    /// The file path, or `-`.
    pub fn path(&self) -> PathBuf {
        match self {
            Target::Std => PathBuf::from("-"),
            Target::File(p) => p.clone(),
        }
    }

    /// `-` is standard input/output, anything else a file path.
    pub fn parse(s: &str) -> Self {
        if s == "-" {
            Target::Std
        } else {
            Target::File(PathBuf::from(s))
        }
    }
}

impl From<&Path> for Target {
    fn from(p: &Path) -> Self {
        if p == Path::new("-") {
            Target::Std
        } else {
            Target::File(p.to_path_buf())
        }
    }
}

/// How the summary is written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum SummaryFormat {
    /// Aligned text table for people.
    #[default]
    Table,
    /// One JSON array of per-endpoint objects on one line.
    Json,
}

/// Renders the summary as JSON: an array of [`EndpointReport`] objects, one line, newline
/// terminated.
pub fn render_json(rows: &[EndpointReport]) -> String {
    // Plain structs with string keys: serialisation cannot fail.
    let mut out = serde_json::to_string(rows).unwrap_or_else(|_| "[]".into());
    out.push('\n');
    out
}

const TABLE_HEADER: [&str; 20] = [
    "SERVICE",
    "METHOD",
    "PATH",
    "REQS",
    "1XX",
    "2XX",
    "3XX",
    "4XX",
    "5XX",
    "OTHER",
    "NO_RESP",
    "CLIENTS",
    "P50_MS",
    "P95_MS",
    "MAX_MS",
    "REQ_BYTES",
    "RESP_BYTES",
    "FIRST_SEEN",
    "LAST_SEEN",
    "SERVED_BY",
];

/// Columns 0..3 (service, method, path) are left-aligned text, the others right-aligned.
const TEXT_COLUMNS: usize = 3;

/// Renders the summary as an aligned text table (header row, one row per endpoint).
pub fn render_table(rows: &[EndpointReport]) -> String {
    let ms = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.3}"));
    let cells: Vec<[String; 20]> = rows
        .iter()
        .map(|r| {
            [
                escape_control(&r.service),
                escape_control(&r.method),
                escape_control(&r.path),
                r.requests.to_string(),
                r.status_1xx.to_string(),
                r.status_2xx.to_string(),
                r.status_3xx.to_string(),
                r.status_4xx.to_string(),
                r.status_5xx.to_string(),
                r.status_other.to_string(),
                r.no_response.to_string(),
                if r.distinct_clients_estimated {
                    format!("~{}", r.distinct_clients)
                } else {
                    r.distinct_clients.to_string()
                },
                ms(r.latency_p50_ms),
                ms(r.latency_p95_ms),
                ms(r.latency_max_ms),
                r.request_body_bytes.to_string(),
                r.response_body_bytes.to_string(),
                format_unix_us(r.first_seen_unix_us),
                format_unix_us(r.last_seen_unix_us),
                served_by(r),
            ]
        })
        .collect();
    // Text columns, and the last (SERVED_BY), are left-aligned.
    let right = |i: usize| i >= TEXT_COLUMNS && i + 1 < TABLE_HEADER.len();
    apitap_inventory::text::table(TABLE_HEADER, &cells, right, "(no events)")
}

pub use apitap_inventory::text::{escape_control, format_unix_us};

/// The SERVED_BY cell: the workload names, `+N` for requests served by others, `-` for none.
fn served_by(r: &EndpointReport) -> String {
    let mut s = r
        .served_by
        .iter()
        .map(|n| escape_control(n))
        .collect::<Vec<_>>()
        .join(", ");
    if r.served_by_other > 0 {
        s.push_str(&format!(" +{}", r.served_by_other));
    }
    if s.is_empty() { "-".into() } else { s }
}

/// Writes summaries to standard output or to a file.
///
/// A file is replaced atomically on every write (written beside it, then renamed), so a reader
/// never sees half a summary; standard output gets each summary appended, separated by a blank
/// line.
#[derive(Debug)]
pub struct SummaryWriter {
    target: Target,
    format: SummaryFormat,
    writes: u64,
}

impl SummaryWriter {
    /// Prepares a writer; for a file, checks up front that it can be created.
    pub fn new(target: Target, format: SummaryFormat) -> Result<Self, Error> {
        if let Target::File(path) = &target {
            create_private(path).map_err(|source| Error::Output {
                what: "summary",
                path: path.clone(),
                source,
            })?;
        }
        Ok(SummaryWriter {
            target,
            format,
            writes: 0,
        })
    }

    /// Writes one summary.
    pub fn write(&mut self, rows: &[EndpointReport]) -> Result<(), Error> {
        let text = match self.format {
            SummaryFormat::Table => render_table(rows),
            SummaryFormat::Json => render_json(rows),
        };
        match &self.target {
            Target::Std => {
                let mut out = io::stdout().lock();
                let separator = if self.writes > 0 && self.format == SummaryFormat::Table {
                    "\n"
                } else {
                    ""
                };
                out.write_all(separator.as_bytes())
                    .and_then(|()| out.write_all(text.as_bytes()))
                    .and_then(|()| out.flush())
                    .map_err(|source| Error::Output {
                        what: "summary",
                        path: PathBuf::from("-"),
                        source,
                    })?;
            }
            Target::File(path) => {
                replace_file(path, text.as_bytes()).map_err(|source| Error::Output {
                    what: "summary",
                    path: path.clone(),
                    source,
                })?;
            }
        }
        self.writes += 1;
        Ok(())
    }
}

/// Creates or truncates `path` for writing, readable by its owner only when it is created:
/// summaries and alerts name endpoints, clients and masked samples (R-OPS-3).
fn create_private(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)
}

/// Writes `bytes` to a temporary file beside `path` and renames it over `path`. A `path`
/// that exists and is not a regular file (`/dev/null`, a FIFO) is written in place instead:
/// renaming over it would replace the device with a file.
fn replace_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    if fs::metadata(path).is_ok_and(|m| !m.file_type().is_file()) {
        let mut file = fs::OpenOptions::new().write(true).open(path)?;
        return file.write_all(bytes);
    }
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(path.file_name().unwrap_or_else(|| "summary".as_ref()));
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    let result = (|| {
        let mut file = create_private(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// The alert stream: JSON lines, one alert per line (R-BUS-3).
///
/// It carries every [`Alert`] — detections, weak points and the inventory's change events
/// ([`crate::inventory::ocsf`], `docs/inventory.md`) — rendered by [`Alerts`]. The sink is
/// opened (a file created or truncated) at start, so it exists even when nothing is
/// written.
pub struct AlertSink {
    out: Box<dyn Write + Send>,
    target: Target,
}

impl std::fmt::Debug for AlertSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlertSink")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl AlertSink {
    /// Opens the alert output: creates or truncates a file, or uses standard output.
    pub fn open(target: Target) -> Result<Self, Error> {
        let out: Box<dyn Write + Send> = match &target {
            Target::Std => Box::new(io::stdout()),
            Target::File(path) => {
                Box::new(create_private(path).map_err(|source| Error::Output {
                    what: "alerts",
                    path: path.clone(),
                    source,
                })?)
            }
        };
        Ok(AlertSink { out, target })
    }

    /// Writes one alert (a JSON document on one line) and a newline.
    pub fn write_line(&mut self, json: &str) -> Result<(), Error> {
        let result = self
            .out
            .write_all(json.as_bytes())
            .and_then(|()| self.out.write_all(b"\n"));
        result.map_err(|source| self.error(source))
    }

    fn error(&self, source: io::Error) -> Error {
        Error::Output {
            what: "alerts",
            path: self.target.path(),
            source,
        }
    }

    /// Flushes buffered alerts.
    pub fn flush(&mut self) -> Result<(), Error> {
        let result = self.out.flush();
        result.map_err(|source| self.error(source))
    }
}

/// How long a flush waits for the broker to acknowledge alerts before the events behind
/// them stay unacknowledged until the next flush.
pub const ALERT_FLUSH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Every destination of alerts: the JSON-lines file and/or the Kafka alert topic (R-BUS-3).
/// Both receive the same documents.
#[derive(Default)]
pub struct Alerts {
    file: Option<AlertSink>,
    bus: Option<Box<dyn apitap_bus::AlertPublisher>>,
    format: crate::ecs::AlertFormat,
    /// The console's ring of recent alerts (issue 20).
    ring: Option<std::sync::Arc<crate::console::AlertRing>>,
}

impl std::fmt::Debug for Alerts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Alerts")
            .field("file", &self.file)
            .field("bus", &self.bus.is_some())
            .field("format", &self.format)
            .field("ring", &self.ring.is_some())
            .finish()
    }
}

impl Alerts {
    /// Alerts to `file` (if any) and to `bus` (if any).
    pub fn new(
        file: Option<AlertSink>,
        bus: Option<Box<dyn apitap_bus::AlertPublisher>>,
    ) -> Alerts {
        Alerts {
            file,
            bus,
            format: crate::ecs::AlertFormat::Ocsf,
            ring: None,
        }
    }

    /// Also keeps every alert in `ring` (the console's alerts page, issue 20).
    pub fn with_ring(mut self, ring: std::sync::Arc<crate::console::AlertRing>) -> Alerts {
        self.ring = Some(ring);
        self
    }

    /// Writes documents in `format` from now on.
    pub fn with_format(mut self, format: crate::ecs::AlertFormat) -> Alerts {
        self.format = format;
        self
    }

    /// Whether alerts go anywhere.
    pub fn is_enabled(&self) -> bool {
        self.file.is_some() || self.bus.is_some() || self.ring.is_some()
    }

    /// Writes one alert to every destination, rendered in the configured format (OCSF, or
    /// ECS from the same typed alert); on the topic it is keyed by [`Alert::uid`] (the OCSF
    /// `finding_info.uid`).
    pub fn write(&mut self, alert: &Alert) -> Result<(), Error> {
        if let Some(ring) = &self.ring {
            ring.push(alert);
        }
        if self.file.is_none() && self.bus.is_none() {
            return Ok(());
        }
        let (doc, format) = match self.format {
            crate::ecs::AlertFormat::Ocsf => (
                apitap_detect::ocsf::render(alert),
                format!("ocsf/{}", apitap_detect::ocsf::OCSF_VERSION),
            ),
            crate::ecs::AlertFormat::Ecs => (
                crate::ecs::render(alert),
                format!("ecs/{}", crate::ecs::ECS_VERSION),
            ),
        };
        // Serialised once for every destination.
        let json = doc.to_string();
        if let Some(file) = self.file.as_mut() {
            file.write_line(&json)?;
        }
        if let Some(bus) = self.bus.as_mut() {
            bus.publish(apitap_bus::AlertDocument {
                key: &alert.uid,
                json: json.as_bytes(),
                format: &format,
            })?;
        }
        Ok(())
    }

    /// Flushes the file and waits (at most [`ALERT_FLUSH_TIMEOUT`]) until the broker holds
    /// every alert written so far.
    pub fn flush(&mut self) -> Result<(), Error> {
        if let Some(file) = self.file.as_mut() {
            file.flush()?;
        }
        if let Some(bus) = self.bus.as_mut() {
            bus.flush(ALERT_FLUSH_TIMEOUT)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::summary::Summary;
    use crate::summary::tests::event;

    #[test]
    fn formats_timestamps_in_utc() {
        assert_eq!(format_unix_us(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_unix_us(951_782_400_000_000), "2000-02-29T00:00:00Z");
        assert_eq!(
            format_unix_us(1_700_000_000_123_456),
            "2023-11-14T22:13:20Z"
        );
        assert_eq!(
            format_unix_us(4_102_444_799_000_000),
            "2099-12-31T23:59:59Z"
        );
    }

    #[test]
    fn table_is_aligned_and_sorted() {
        let mut s = Summary::default();
        s.record(&event(Some("b"), "GET", "/a/long/path"));
        s.record(&event(Some("a"), "DELETE", "/x"));
        let text = render_table(&s.reports());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("SERVICE  METHOD  PATH"), "{text}");
        assert!(lines[1].starts_with("a        DELETE  /x  "), "{text}");
        assert!(
            lines[2].starts_with("b        GET     /a/long/path"),
            "{text}"
        );
        // Right-aligned numeric columns end at the same offset.
        let col = |l: &str| {
            l.find("1970-01-01T00:00:01Z")
                .or_else(|| l.find("FIRST_SEEN"))
        };
        assert_eq!(col(lines[1]), col(lines[2]));
        assert!(lines[1].contains("2.000"), "{text}");
    }

    #[test]
    fn table_escapes_control_characters_and_marks_estimated_clients() {
        let mut s = Summary::default();
        s.record(&event(Some("evil\u{1b}[2J\nhost"), "GET", "/"));
        let mut rows = s.reports();
        rows[0].distinct_clients = 10_000;
        rows[0].distinct_clients_estimated = true;
        let text = render_table(&rows);
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(text.contains("evil\\u{1b}[2J\\u{a}host"), "{text}");
        assert!(text.contains("~10000"), "{text}");
        assert!(!text.contains('\u{1b}'));
    }

    #[test]
    fn empty_table_says_so() {
        assert!(render_table(&[]).ends_with("(no events)\n"));
        assert_eq!(render_json(&[]), "[]\n");
    }

    #[test]
    fn json_rows_use_documented_names() {
        let mut s = Summary::default();
        s.record(&event(Some("api"), "GET", "/x"));
        let v: serde_json::Value = serde_json::from_str(&render_json(&s.reports())).unwrap();
        let row = &v[0];
        for field in [
            "service",
            "method",
            "path",
            "requests",
            "status_1xx",
            "status_2xx",
            "status_3xx",
            "status_4xx",
            "status_5xx",
            "status_other",
            "no_response",
            "distinct_clients",
            "distinct_clients_estimated",
            "latency_samples",
            "latency_p50_ms",
            "latency_p95_ms",
            "latency_max_ms",
            "request_body_bytes",
            "response_body_bytes",
            "first_seen_unix_us",
            "last_seen_unix_us",
            "served_by",
            "served_by_other",
        ] {
            assert!(row.get(field).is_some(), "missing {field}");
        }
        assert_eq!(row.as_object().unwrap().len(), 23);
    }

    #[test]
    fn special_files_are_written_not_replaced() {
        use std::os::unix::fs::FileTypeExt as _;
        let dir = std::env::temp_dir().join(format!("apitap-analyzer-fifo-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("summary.fifo");
        let _ = fs::remove_file(&fifo);
        let ok = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("SKIPPED special_files_are_written_not_replaced: mkfifo unavailable");
            return;
        }
        let reader_path = fifo.clone();
        let reader = std::thread::spawn(move || fs::read(&reader_path).unwrap());
        replace_file(&fifo, b"[]\n").unwrap();
        assert_eq!(reader.join().unwrap(), b"[]\n");
        assert!(fs::metadata(&fifo).unwrap().file_type().is_fifo());
        fs::remove_dir_all(&dir).unwrap();
    }

    /// Alert and summary files are created 0600 whatever the umask (issue 22).
    #[test]
    fn alert_and_summary_files_are_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = std::env::temp_dir().join(format!("apitap-analyzer-mode-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let alerts = dir.join("alerts.jsonl");
        let mut sink = AlertSink::open(Target::File(alerts.clone())).unwrap();
        sink.write_line("{}").unwrap();
        assert_eq!(mode(&alerts), 0o600);
        let summary = dir.join("summary.json");
        let mut w = SummaryWriter::new(Target::File(summary.clone()), SummaryFormat::Json).unwrap();
        assert_eq!(mode(&summary), 0o600);
        w.write(&Summary::default().reports()).unwrap();
        assert_eq!(mode(&summary), 0o600, "the replacement too");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn file_summary_is_replaced_not_appended() {
        let dir = std::env::temp_dir().join(format!("apitap-analyzer-out-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("summary.json");
        let mut w = SummaryWriter::new(Target::File(path.clone()), SummaryFormat::Json).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "");
        let mut s = Summary::default();
        s.record(&event(Some("api"), "GET", "/x"));
        w.write(&s.reports()).unwrap();
        w.write(&s.reports()).unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(v.as_array().unwrap().len(), 1);
        assert_eq!(
            fs::read_dir(&dir).unwrap().count(),
            1,
            "no temporary file left"
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
