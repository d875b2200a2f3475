//! The two ways to run the analyzer: `process` (one input to its end) and `run` (the
//! long-running service, driven by a [`Config`]).

use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};

use crate::config::{Config, LabelsConfig};
use crate::error::{self, Error};
use crate::ingest::{Ingestor, RunStats};
use crate::inventory::{Inventory, InventoryConfig, Store, api, ocsf, store};
use crate::labelling::{Labelling, weak_finding_ocsf};
use crate::output::{AlertSink, SummaryFormat, SummaryWriter, Target};
use crate::reader::{DEFAULT_MAX_LINE_BYTES, Line, LineReader};
use crate::summary::{DEFAULT_MAX_ENDPOINTS, EndpointReport, Summary};

/// Read buffer size for the input.
const READ_BUFFER_BYTES: usize = 256 * 1024;

/// Options of `apitap-analyzer process`.
#[derive(Debug, Clone)]
pub struct ProcessOptions {
    /// JSON-lines events: a file or standard input.
    pub input: Target,
    /// Where alert JSON lines go (inventory changes as OCSF findings); `None`: nowhere.
    pub alerts: Option<Target>,
    /// Where the summary goes.
    pub summary: Target,
    /// Summary format.
    pub format: SummaryFormat,
    /// Longest accepted input line in bytes.
    pub max_line_bytes: usize,
    /// Endpoints tracked at most.
    pub max_endpoints: usize,
    /// Inventory store URL; `None`: `inventory.store` of `inventory`, else no inventory.
    pub store: Option<String>,
    /// Inventory settings (specs, overrides, client ranges, templating).
    pub inventory: InventoryConfig,
    /// Sensitive-data labelling settings (hash key).
    pub labels: LabelsConfig,
}

impl ProcessOptions {
    /// Options with default limits: summary as a table on standard output, no alerts.
    pub fn new(input: Target) -> Self {
        ProcessOptions {
            input,
            alerts: None,
            summary: Target::Std,
            format: SummaryFormat::Table,
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            max_endpoints: DEFAULT_MAX_ENDPOINTS,
            store: None,
            inventory: InventoryConfig::default(),
            labels: LabelsConfig::default(),
        }
    }
}

fn target_path(target: &Target) -> PathBuf {
    match target {
        Target::Std => PathBuf::from("-"),
        Target::File(p) => p.clone(),
    }
}

fn open_input(target: &Target) -> Result<Box<dyn BufRead + Send>, Error> {
    Ok(match target {
        Target::Std => Box::new(BufReader::with_capacity(READ_BUFFER_BYTES, io::stdin())),
        Target::File(path) => {
            let file = File::open(path).map_err(|source| Error::OpenInput {
                path: path.clone(),
                source,
            })?;
            Box::new(BufReader::with_capacity(READ_BUFFER_BYTES, file))
        }
    })
}

/// Reads `input` to its end, handing each line with its number to `on_line`.
fn ingest_all(
    input: impl BufRead,
    max_line_bytes: usize,
    mut on_line: impl FnMut(u64, Line<'_>),
) -> io::Result<()> {
    let mut reader = LineReader::new(input, max_line_bytes);
    while let Some((number, line)) = reader.next_line()? {
        on_line(number, line);
    }
    Ok(())
}

fn store_backend(url: &str) -> &'static str {
    if url.starts_with("postgres") {
        "postgres"
    } else {
        "sqlite"
    }
}

/// Opens the inventory store and an inventory seeded from it (templates and parameter names
/// stay stable across restarts).
pub fn open_inventory(
    url: &str,
    config: &InventoryConfig,
) -> Result<(Inventory, Box<dyn Store>), Error> {
    let mut store = store::open(url).map_err(|source| Error::Store {
        backend: store_backend(url),
        source,
    })?;
    let mut inventory = Inventory::new(config.clone()).map_err(Error::Spec)?;
    let seeded = inventory
        .seed(store.as_mut())
        .map_err(|source| Error::Store {
            backend: store.backend(),
            source,
        })?;
    tracing::info!(
        backend = store.backend(),
        seeded_endpoints = seeded,
        specs = config.specs.len(),
        overrides = config.overrides.len(),
        "inventory store open"
    );
    Ok((inventory, store))
}

/// Flushes the inventory to the store and writes each change as an OCSF finding to `alerts`.
/// A store failure is logged and the deltas are kept for the next flush unless `fatal`.
fn flush_inventory(
    inventory: &mut Inventory,
    store: &mut dyn Store,
    alerts: Option<&mut AlertSink>,
    fatal: bool,
) -> Result<(), Error> {
    // The final flush stores everything; periodic ones let new endpoints settle first.
    let result = if fatal {
        inventory.flush(store)
    } else {
        inventory.flush_settled(store)
    };
    match result {
        Ok(changes) => {
            if let Some(alerts) = alerts {
                for c in &changes {
                    alerts.write_json(&ocsf::finding(c))?;
                }
                alerts.flush()?;
            }
            let c = inventory.counters;
            let t = inventory.tree_counters();
            tracing::info!(
                changes = changes.len(),
                apitap_inventory_events_total = c.events,
                apitap_inventory_overflow_events_total = c.overflow_events,
                apitap_inventory_overflow_service_events_total = c.overflow_service_events,
                apitap_inventory_spec_events_total = c.spec_events,
                apitap_inventory_override_events_total = c.override_events,
                apitap_inventory_params_created_total = t.params_created,
                apitap_inventory_folded_children_total = t.folded_children,
                apitap_inventory_split_out_total = t.split_out,
                apitap_inventory_changes_total = c.changes,
                "inventory flushed"
            );
            Ok(())
        }
        Err(source) if !fatal => {
            tracing::warn!(error = %error::chain(&source), "inventory flush failed; will retry");
            Ok(())
        }
        Err(source) => Err(Error::Store {
            backend: store.backend(),
            source,
        }),
    }
}

/// Writes the weak findings raised since the last call to `alerts` as OCSF findings (without
/// an alerts output they are only counted).
fn write_weak_findings(
    ingestor: &mut Ingestor,
    alerts: Option<&mut AlertSink>,
) -> Result<(), Error> {
    let Some(labelling) = ingestor.labelling.as_mut() else {
        return Ok(());
    };
    let findings = labelling.take_findings();
    if findings.is_empty() {
        return Ok(());
    }
    if let Some(alerts) = alerts {
        for (f, time_us) in &findings {
            alerts.write_json(&weak_finding_ocsf(f, *time_us))?;
        }
        alerts.flush()?;
    }
    Ok(())
}

fn log_labelling(ingestor: &Ingestor) {
    if let Some(l) = &ingestor.labelling {
        tracing::info!(
            apitap_weak_points_total = l.raised(),
            apitap_weak_points_dropped_total = l.dropped_findings,
            "sensitive-data labelling"
        );
    }
}

/// `apitap-analyzer process`: reads every event of `options.input`, then writes the summary
/// and logs the run statistics. Bad lines are counted, not fatal; only I/O errors are. With a
/// store, the inventory is updated and its changes written to the alerts output.
pub fn process(options: &ProcessOptions) -> Result<RunStats, Error> {
    let mut alerts = options.alerts.clone().map(AlertSink::open).transpose()?;
    let mut summary_out = SummaryWriter::new(options.summary.clone(), options.format)?;
    let input = open_input(&options.input)?;
    let store_url = options.store.clone().or(options.inventory.store.clone());
    let mut ingestor = Ingestor::new(Summary::new(options.max_endpoints));
    ingestor.labelling = Some(Labelling::from_config(&options.labels)?);
    let mut store = None;
    if let Some(url) = &store_url {
        let (inventory, s) = open_inventory(url, &options.inventory)?;
        ingestor.inventory = Some(inventory);
        store = Some(s);
    }
    tracing::info!(input = %target_path(&options.input).display(), "processing events");

    let mut alert_error = None;
    let read = ingest_all(input, options.max_line_bytes, |number, line| {
        ingestor.ingest_line(number, line);
        if alert_error.is_none()
            && let Err(e) = write_weak_findings(&mut ingestor, alerts.as_mut())
        {
            alert_error = Some(e);
        }
    });
    if let Some(e) = alert_error {
        return Err(e);
    }

    // Whatever was read is summarised, even if reading failed part-way.
    summary_out.write(&ingestor.summary.reports())?;
    if let (Some(inventory), Some(store)) = (ingestor.inventory.as_mut(), store.as_mut()) {
        flush_inventory(inventory, store.as_mut(), alerts.as_mut(), true)?;
    }
    if let Some(alerts) = alerts.as_mut() {
        alerts.flush()?;
    }
    log_labelling(&ingestor);
    ingestor.stats.log("input finished");
    read.map_err(|source| Error::ReadInput {
        path: target_path(&options.input),
        source,
    })?;
    Ok(ingestor.stats)
}

fn lock(state: &Mutex<Ingestor>) -> MutexGuard<'_, Ingestor> {
    // A panic while holding the lock cannot leave the counters inconsistent in a way that
    // matters for a summary, so keep going with the data.
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

fn snapshot(state: &Mutex<Ingestor>) -> (Vec<EndpointReport>, RunStats) {
    let ingestor = lock(state);
    (ingestor.summary.reports(), ingestor.stats.clone())
}

/// Why the service stopped.
enum Stop {
    EndOfInput(io::Result<()>),
    Signal(&'static str),
}

/// `apitap-analyzer run`: the long-running service. Reads the configured input until its end
/// or SIGINT/SIGTERM, writing the summary every `summary_interval_secs` (if not 0) and at the
/// end.
pub fn run(config: &Config) -> Result<RunStats, Error> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| Error::Start {
            what: "the async runtime",
            source,
        })?;
    runtime.block_on(run_service(config))
}

async fn run_service(config: &Config) -> Result<RunStats, Error> {
    let mut alerts = config
        .output
        .alerts_path
        .as_deref()
        .map(|p| AlertSink::open(Target::from(p)))
        .transpose()?;
    let mut summary_out = SummaryWriter::new(
        Target::from(config.output.summary_path.as_path()),
        config.output.summary_format,
    )?;
    let input_target = Target::from(config.input.path.as_path());
    let input = open_input(&input_target)?;
    let signal_error = |source| Error::Start {
        what: "signal handling",
        source,
    };
    let mut sigint = signal(SignalKind::interrupt()).map_err(signal_error)?;
    let mut sigterm = signal(SignalKind::terminate()).map_err(signal_error)?;

    // Reading stdin or a file blocks, so it runs on its own thread. On a signal the service
    // writes the final summary and returns without waiting for that thread: returning from
    // main ends the process even if the thread is blocked in a read.
    let mut ingestor = Ingestor::new(Summary::new(config.summary.max_endpoints));
    ingestor.labelling = Some(Labelling::from_config(&config.labels)?);
    let mut store = None;
    if let Some(url) = &config.inventory.store {
        let (inventory, s) = open_inventory(url, &config.inventory)?;
        ingestor.inventory = Some(inventory);
        store = Some(s);
        if let Some(addr) = config.inventory.api_listen {
            let api_store = store::open(url).map_err(|source| Error::Store {
                backend: store_backend(url),
                source,
            })?;
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| Error::ApiListen { addr, source })?;
            let local = listener.local_addr().unwrap_or(addr);
            tracing::info!(listen = %local, "inventory API listening");
            tokio::spawn(api::serve(listener, Arc::new(Mutex::new(api_store))));
        }
    }
    let state = Arc::new(Mutex::new(ingestor));
    let (done_tx, mut done_rx) = tokio::sync::oneshot::channel();
    let worker_state = Arc::clone(&state);
    let max_line_bytes = config.input.max_line_bytes;
    std::thread::Builder::new()
        .name("apitap-ingest".into())
        .spawn(move || {
            let result = ingest_all(input, max_line_bytes, |number, line| {
                lock(&worker_state).ingest_line(number, line);
            });
            // The receiver is gone only if the service already stopped.
            let _ = done_tx.send(result);
        })
        .map_err(|source| Error::Start {
            what: "the ingest thread",
            source,
        })?;
    tracing::info!(
        input = %config.input.path.display(),
        summary_interval_secs = config.output.summary_interval_secs,
        "analyzer running"
    );

    let interval_secs = config.output.summary_interval_secs;
    let mut ticker = tokio::time::interval(Duration::from_secs(interval_secs.max(1)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await; // The first tick completes at once.

    let flush_secs = config.inventory.flush_interval_secs.max(1);
    let mut flush_ticker = tokio::time::interval(Duration::from_secs(flush_secs));
    flush_ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    flush_ticker.tick().await;

    let stop = loop {
        tokio::select! {
            _ = flush_ticker.tick(), if store.is_some() || alerts.is_some() => {
                let mut guard = lock(&state);
                write_weak_findings(&mut guard, alerts.as_mut())?;
                if let (Some(inventory), Some(store)) = (guard.inventory.as_mut(), store.as_mut()) {
                    flush_inventory(inventory, store.as_mut(), alerts.as_mut(), false)?;
                }
            }
            done = &mut done_rx => match done {
                Ok(result) => break Stop::EndOfInput(result),
                Err(_) => return Err(Error::IngestThread),
            },
            _ = sigint.recv() => break Stop::Signal("SIGINT"),
            _ = sigterm.recv() => break Stop::Signal("SIGTERM"),
            _ = ticker.tick(), if interval_secs > 0 => {
                let (rows, stats) = snapshot(&state);
                if let Err(e) = summary_out.write(&rows) {
                    tracing::warn!(error = %error::chain(&e), "cannot write periodic summary");
                }
                stats.log("periodic stats");
            }
        }
    };

    let (rows, stats) = snapshot(&state);
    summary_out.write(&rows)?;
    {
        let mut guard = lock(&state);
        write_weak_findings(&mut guard, alerts.as_mut())?;
        if let (Some(inventory), Some(store)) = (guard.inventory.as_mut(), store.as_mut()) {
            flush_inventory(inventory, store.as_mut(), alerts.as_mut(), true)?;
        }
        log_labelling(&guard);
    }
    if let Some(alerts) = alerts.as_mut() {
        alerts.flush()?;
    }
    match stop {
        Stop::Signal(name) => {
            stats.log(&format!("stopped by {name}"));
            Ok(stats)
        }
        Stop::EndOfInput(result) => {
            stats.log("input finished");
            result.map_err(|source| Error::ReadInput {
                path: config.input.path.clone(),
                source,
            })?;
            Ok(stats)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::BadLineCause;
    use crate::summary::tests::event;
    use apitap_schema::encode_event;

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("apitap-analyzer-app-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn fixture(dir: &std::path::Path) -> PathBuf {
        let mut text = Vec::new();
        for path in ["/a", "/a", "/b"] {
            text.extend(encode_event(&event(Some("api"), "GET", path)));
            text.push(b'\n');
        }
        text.extend_from_slice(b"not json\n\n");
        let input = dir.join("events.jsonl");
        std::fs::write(&input, text).unwrap();
        input
    }

    #[test]
    fn process_reads_a_file_and_writes_json_summary() {
        let dir = temp_dir("process");
        let mut options = ProcessOptions::new(Target::File(fixture(&dir)));
        options.summary = Target::File(dir.join("summary.json"));
        options.format = SummaryFormat::Json;
        options.alerts = Some(Target::File(dir.join("alerts.jsonl")));
        let stats = process(&options).unwrap();
        assert_eq!((stats.events, stats.blank_lines), (3, 1));
        assert_eq!(stats.bad(BadLineCause::NotJson), 1);
        let rows: Vec<EndpointReport> =
            serde_json::from_slice(&std::fs::read(dir.join("summary.json")).unwrap()).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].path.as_str(), rows[0].requests), ("/a", 2));
        assert_eq!(std::fs::read(dir.join("alerts.jsonl")).unwrap().len(), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn process_reports_a_missing_input() {
        let options = ProcessOptions::new(Target::File("/nonexistent/apitap/events".into()));
        let err = process(&options).unwrap_err();
        assert!(matches!(err, Error::OpenInput { .. }), "{err}");
    }

    #[test]
    fn run_service_stops_at_end_of_input() {
        let dir = temp_dir("run");
        let config = Config::parse(&format!(
            "[input]\npath = {:?}\n[output]\nsummary_path = {:?}\nsummary_format = \"json\"\n\
             summary_interval_secs = 1\nalerts_path = {:?}\n",
            fixture(&dir),
            dir.join("summary.json"),
            dir.join("alerts.jsonl"),
        ))
        .unwrap();
        let stats = run(&config).unwrap();
        assert_eq!(stats.events, 3);
        let rows: Vec<EndpointReport> =
            serde_json::from_slice(&std::fs::read(dir.join("summary.json")).unwrap()).unwrap();
        assert_eq!(rows.iter().map(|r| r.requests).sum::<u64>(), 3);
        assert!(dir.join("alerts.jsonl").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
