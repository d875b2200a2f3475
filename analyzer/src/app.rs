//! The two ways to run the analyzer: `process` (one input to its end) and `run` (the
//! long-running service, driven by a [`Config`]).

use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use apitap_admin_http::{HttpStats, Limits, Options, Token};
use apitap_bus::{
    AckToken, AlertPublisher, BusError, BusMetrics, EventSource, KafkaAlertPublisher,
    KafkaEventConsumer,
};
use tokio::signal::unix::{SignalKind, signal};

use apitap_detect::DetectConfig;

use crate::config::{Config, EventInput, IngestConfig, InputConfig, LabelsConfig, TraceConfig};
use crate::detection::Detection;
use crate::error::{self, Error};
use crate::ingest::{EventGuard, Ingestor, RunStats};
use crate::inventory::{Inventory, InventoryConfig, Store, api, ocsf, store};
use crate::labelling::{Labelling, hash_key, weak_alert};
use crate::output::{AlertSink, Alerts, SummaryFormat, SummaryWriter, Target};
use crate::reader::{DEFAULT_MAX_LINE_BYTES, Line, LineReader};
use crate::summary::{DEFAULT_MAX_ENDPOINTS, EndpointReport, Summary};
use crate::trace::Tracer;

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
    /// Detection settings.
    pub detect: DetectConfig,
    /// Alert document format.
    pub alert_format: crate::ecs::AlertFormat,
    /// Clock skew allowed and the dead-letter file (`[ingest]`).
    pub ingest: IngestConfig,
    /// The trace-back store (`[trace]`).
    pub trace: TraceConfig,
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
            detect: DetectConfig::default(),
            alert_format: crate::ecs::AlertFormat::default(),
            ingest: IngestConfig::default(),
            trace: TraceConfig::default(),
        }
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
    let mut store =
        store::open_with(url, &config.store_access()).map_err(|source| Error::Store {
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

/// Which inventory flush: periodic ones let new endpoints settle first and survive store
/// errors (retried next time); a forced one stores everything but still survives errors;
/// the final one stores everything and fails on error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FlushKind {
    Periodic,
    Forced,
    Final,
}

/// An inventory without a store: it is never flushed, but templates every event's path, so
/// detections and weak points key on endpoints (`/users/{user_id}`), not on raw paths.
fn memory_inventory(config: &InventoryConfig) -> Result<Inventory, Error> {
    Inventory::new(config.clone()).map_err(Error::Spec)
}

/// Flushes the inventory to the store and writes each change as an OCSF finding to `alerts`.
/// Returns the event time before which every observed event is now durable in the store
/// (`u64::MAX`: all of them), or `None` when a tolerated store failure kept the deltas for
/// the next flush.
fn flush_inventory(
    inventory: &mut Inventory,
    store: &mut dyn Store,
    alerts: &mut Alerts,
    kind: FlushKind,
) -> Result<Option<u64>, Error> {
    let (result, durable_before) = if kind == FlushKind::Periodic {
        let before = inventory.settled_before_us();
        (inventory.flush_settled(store), before)
    } else {
        (inventory.flush(store), u64::MAX)
    };
    match result {
        Ok(changes) => {
            for c in &changes {
                alerts.write(&ocsf::alert(c))?;
            }
            let c = inventory.counters;
            let t = inventory.tree_counters();
            tracing::info!(
                changes = changes.len(),
                apitap_inventory_events_total = c.events,
                apitap_inventory_overflow_events_total = c.overflow_events,
                apitap_inventory_overflow_service_events_total = c.overflow_service_events,
                apitap_inventory_services_evicted_total = c.services_evicted,
                apitap_inventory_spec_events_total = c.spec_events,
                apitap_inventory_override_events_total = c.override_events,
                apitap_inventory_params_created_total = t.params_created,
                apitap_inventory_folded_children_total = t.folded_children,
                apitap_inventory_split_out_total = t.split_out,
                apitap_inventory_changes_total = c.changes,
                apitap_inventory_probe_events_total = c.probe_events,
                apitap_inventory_probe_unrouted_events_total = c.probe_unrouted_events,
                "inventory flushed"
            );
            Ok(Some(durable_before))
        }
        Err(source) if kind != FlushKind::Final => {
            tracing::warn!(error = %error::chain(&source), "inventory flush failed; will retry");
            Ok(None)
        }
        Err(source) => Err(Error::Store {
            backend: store.backend(),
            source,
        }),
    }
}

/// Writes the weak-point and detection findings raised since the last call to `alerts`, each
/// as one [`apitap_detect::Alert`] (without an alerts output they are only counted).
fn write_findings(ingestor: &mut Ingestor, alerts: &mut Alerts) -> Result<(), Error> {
    if let Some(labelling) = ingestor.labelling.as_mut() {
        let findings = labelling.take_findings();
        if alerts.is_enabled() {
            for (f, time_us) in &findings {
                alerts.write(&weak_alert(f, *time_us))?;
            }
        }
    }
    if let Some(detect) = ingestor.detect.as_mut() {
        let findings = detect.take_findings();
        if alerts.is_enabled() {
            for f in &findings {
                alerts.write(&apitap_detect::Alert::from(f))?;
            }
        }
    }
    Ok(())
}

/// The labelling and detection state every mode starts with, sharing one hash key.
fn analysis(
    ingestor: &mut Ingestor,
    labels: &LabelsConfig,
    detect: &DetectConfig,
    trace: &TraceConfig,
) -> Result<(), Error> {
    let key = hash_key(labels)?;
    ingestor.detect = Some(Detection::new(detect, &key)?);
    ingestor.trace = Tracer::open(trace)?;
    let traced = if ingestor.trace.is_some() {
        trace.max_values_per_record
    } else {
        0
    };
    ingestor.labelling = Some(
        Labelling::with_traced_hashes(key, traced)?
            .with_protobuf(crate::labelling::protobuf_schema(labels)?),
    );
    Ok(())
}

/// Writes the trace records still queued (end of input or of the service).
fn finish_trace(ingestor: &mut Ingestor) {
    if let Some(t) = ingestor.trace.take() {
        t.finish();
    }
}

fn log_labelling(ingestor: &Ingestor) {
    if let Some(l) = &ingestor.labelling {
        tracing::info!(
            apitap_weak_points_total = l.raised(),
            apitap_weak_points_dropped_total = l.dropped_findings,
            "sensitive-data labelling"
        );
    }
    if let Some(d) = &ingestor.detect {
        d.log();
    }
}

/// End of a finite input: open campaigns are reported and closed.
fn finish_detections(ingestor: &mut Ingestor) {
    if let Some(d) = ingestor.detect.as_mut() {
        d.finish();
    }
}

/// `apitap-analyzer process`: reads every event of `options.input`, then writes the summary
/// and logs the run statistics. Bad lines are counted, not fatal; only I/O errors are. With a
/// store, the inventory is updated and its changes written to the alerts output.
pub fn process(options: &ProcessOptions) -> Result<RunStats, Error> {
    let file = options.alerts.clone().map(AlertSink::open).transpose()?;
    let mut alerts = Alerts::new(file, None).with_format(options.alert_format);
    let mut summary_out = SummaryWriter::new(options.summary.clone(), options.format)?;
    let input = open_input(&options.input)?;
    let store_url = options.store.clone().or(options.inventory.store.clone());
    let mut ingestor = Ingestor::new(Summary::new(options.max_endpoints));
    ingestor.guard = EventGuard::from_config(&options.ingest)?;
    analysis(
        &mut ingestor,
        &options.labels,
        &options.detect,
        &options.trace,
    )?;
    let mut store = None;
    if let Some(url) = &store_url {
        let (inventory, s) = open_inventory(url, &options.inventory)?;
        ingestor.inventory = Some(inventory);
        store = Some(s);
    } else {
        ingestor.inventory = Some(memory_inventory(&options.inventory)?);
    }
    tracing::info!(input = %options.input.path().display(), "processing events");

    let mut alert_error = None;
    let read = ingest_all(input, options.max_line_bytes, |number, line| {
        ingestor.ingest_line(number, line);
        if alert_error.is_none()
            && let Err(e) = write_findings(&mut ingestor, &mut alerts)
        {
            alert_error = Some(e);
        }
        // Near the inventory's memory budget, store what was learned instead of shedding it
        // (issue 22); looked at once per 1024 lines.
        if alert_error.is_none()
            && number % 1024 == 0
            && let (Some(inventory), Some(store)) = (ingestor.inventory.as_mut(), store.as_mut())
            && inventory.memory_pressure()
            && let Err(e) =
                flush_inventory(inventory, store.as_mut(), &mut alerts, FlushKind::Forced)
        {
            alert_error = Some(e);
        }
    });
    if let Some(e) = alert_error {
        return Err(e);
    }
    finish_detections(&mut ingestor);
    finish_trace(&mut ingestor);
    write_findings(&mut ingestor, &mut alerts)?;

    // Whatever was read is summarised, even if reading failed part-way.
    summary_out.write(&ingestor.summary.reports())?;
    if let (Some(inventory), Some(store)) = (ingestor.inventory.as_mut(), store.as_mut()) {
        flush_inventory(inventory, store.as_mut(), &mut alerts, FlushKind::Final)?;
    }
    alerts.flush()?;
    log_labelling(&ingestor);
    ingestor.stats.log("input finished");
    read.map_err(|source| Error::ReadInput {
        path: options.input.path(),
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

/// What `check-config` found: the settings `run` would start with, for the operator to read.
#[derive(Debug)]
pub struct ConfigCheck {
    /// `file:PATH`, `stdin` or `kafka:BROKERS/TOPIC (group G)`.
    pub source: String,
    /// Inventory store backend and target (`sqlite:…`, `postgres` with the host only), or
    /// `memory` without a store.
    pub store: String,
    /// Public id of the labels hash key (never the key), or `random per process`.
    pub hash_key: String,
    /// Operator specs and overrides loaded.
    pub specs: usize,
    /// Overrides compiled.
    pub overrides: usize,
    /// Token files checked (field names).
    pub tokens: Vec<&'static str>,
    /// Listeners `run` would open.
    pub listeners: Vec<String>,
}

/// `apitap-analyzer check-config`: everything `run` checks before it starts — the file and
/// every value (errors name the field), the hash key file, the token files and the Kafka
/// secret files (presence, owner-only permissions, never their contents), the operator specs
/// and overrides, the ingest guard and the detections — without opening a store, a
/// listener or a broker connection.
pub fn check(config: &Config) -> Result<ConfigCheck, Error> {
    // `Config::load` already checked the Kafka values and read its secret files.
    let source = match config.event_input()? {
        EventInput::Lines(i) if i.path.as_os_str() == "-" => "stdin".to_owned(),
        EventInput::Lines(i) => format!("file:{}", i.path.display()),
        EventInput::Kafka(k) => format!(
            "kafka:{}/{} (group {})",
            k.brokers.join(","),
            k.events_topic,
            k.consumer.group_id
        ),
    };
    EventGuard::from_config(&config.ingest)?;
    let mut ingestor = Ingestor::new(Summary::new(config.summary.max_endpoints));
    let key = crate::labelling::hash_key(&config.labels)?;
    let hash_key = if config.labels.hash_key_file.is_some() {
        key.id()
    } else {
        "random per process (labels.hash_key_file not set)".to_owned()
    };
    // The trace store is not opened: `check` creates nothing.
    analysis(
        &mut ingestor,
        &config.labels,
        &config.detect,
        &TraceConfig::default(),
    )?;
    let mut tokens = Vec::new();
    for (field, file) in [
        (
            "inventory.api_token_file",
            config.inventory.api_token_file.as_deref(),
        ),
        ("metrics.token_file", config.metrics.token_file.as_deref()),
    ] {
        if token(field, file)?.is_some() {
            tokens.push(field);
        }
    }
    // The TLS files are loaded as `run` would load them (a refused key is found here).
    if api_tls(&config.inventory)?.is_some() {
        tokens.push(if config.inventory.api_client_ca_file.is_some() {
            "inventory.api_client_ca_file"
        } else {
            "inventory.api_tls_cert_file"
        });
    }
    Inventory::new(config.inventory.clone()).map_err(Error::Spec)?;
    let store = match config.inventory.store.as_deref() {
        Some(url) if url.starts_with("postgres") => "postgres".to_owned(),
        Some(url) => url.to_owned(),
        None => "memory (no inventory.store)".to_owned(),
    };
    let mut listeners = Vec::new();
    if let Some(a) = config.metrics.listen {
        listeners.push(format!("metrics {a}"));
    }
    if let Some(a) = config.inventory.api_listen {
        listeners.push(format!("inventory API {a}"));
    }
    Ok(ConfigCheck {
        source,
        store,
        hash_key,
        specs: config.inventory.specs.len(),
        overrides: config.inventory.overrides.len(),
        tokens,
        listeners,
    })
}

/// Why the service stopped.
enum Stop {
    /// The input ended (end of file, or the embedded sensor stopped).
    EndOfInput(Result<(), Error>),
    /// SIGINT or SIGTERM.
    Signal(&'static str),
}

/// `apitap-analyzer run`: the long-running service. Reads the configured event source
/// (`[input]` to its end, or `[kafka]` until SIGINT/SIGTERM), writing the summary every
/// `summary_interval_secs` (if not 0) and at the end.
pub fn run(config: &Config) -> Result<RunStats, Error> {
    let input = config.event_input()?;
    runtime()?.block_on(async {
        match input {
            EventInput::Lines(lines) => run_lines(config, lines).await,
            EventInput::Kafka(kafka) => {
                let metrics = Arc::new(BusMetrics::default());
                let source = KafkaEventConsumer::kafka(kafka, metrics.clone())?;
                let publisher = KafkaAlertPublisher::new(kafka, metrics.clone())?;
                let bus = BusSource {
                    source: Box::new(source),
                    alerts: Some(Box::new(publisher)),
                    metrics,
                    stop_on_signal: true,
                    max_pending_events: kafka.consumer.max_unacked_events / 2,
                    kafka: Some(kafka.clone()),
                };
                run_bus(config, bus).await
            }
        }
    })
}

/// An [`EventSource`] and how to run over it.
pub struct BusSource {
    /// Where events come from.
    pub source: Box<dyn EventSource>,
    /// Where alerts go besides `output.alerts_path` (the Kafka alert topic).
    pub alerts: Option<Box<dyn AlertPublisher>>,
    /// The counters the source (and publisher) update; logged with the run statistics.
    pub metrics: Arc<BusMetrics>,
    /// Stop on SIGINT/SIGTERM (Kafka). The embedded mode runs until the source closes
    /// instead: the sensor stops on the signal and closes the channel, so nothing in flight
    /// is lost.
    pub stop_on_signal: bool,
    /// Unacknowledged events at most before a forced flush stores everything (it must stay
    /// below the consumer's `max_unacked_events`, which pauses fetching).
    pub max_pending_events: usize,
    /// The `[kafka]` section when the source is the Kafka consumer group: the brokers of the
    /// detection-state topic (`[state]`, issue 18).
    pub kafka: Option<apitap_bus::KafkaConfig>,
}

/// Runs the analyzer service over an event source until it closes (or, if
/// `bus.stop_on_signal`, until SIGINT/SIGTERM): the embedded single-process mode's analyzer
/// half (over `apitap_bus::memory::channel`), and `run` with `[kafka]`.
pub fn run_with_source(config: &Config, bus: BusSource) -> Result<RunStats, Error> {
    runtime()?.block_on(run_bus(config, bus))
}

fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| Error::Start {
            what: "the async runtime",
            source,
        })
}

/// What every way of running the service shares: outputs, state, store, inventory API,
/// signals.
struct Service {
    alerts: Alerts,
    summary_out: SummaryWriter,
    state: Arc<Mutex<Ingestor>>,
    store: Option<Box<dyn Store>>,
    sigint: tokio::signal::unix::Signal,
    sigterm: tokio::signal::unix::Signal,
}

/// The bearer token of an admin HTTP endpoint from `file` (field `field`), if set.
fn token(field: &'static str, file: Option<&std::path::Path>) -> Result<Option<Token>, Error> {
    file.map(|path| {
        Token::from_file(path).map_err(|source| Error::TokenFile {
            field,
            path: path.to_owned(),
            source,
        })
    })
    .transpose()
}

/// The inventory API's TLS (issue 20), if `inventory.api_tls_cert_file` is set.
fn api_tls(inventory: &InventoryConfig) -> Result<Option<Arc<apitap_admin_http::Tls>>, Error> {
    let (Some(cert), Some(key)) = (&inventory.api_tls_cert_file, &inventory.api_tls_key_file)
    else {
        return Ok(None);
    };
    apitap_admin_http::Tls::from_files(cert, key, inventory.api_client_ca_file.as_deref())
        .map(|t| Some(Arc::new(t)))
        .map_err(Error::ApiTls)
}

impl Service {
    async fn start(
        config: &Config,
        bus_alerts: Option<Box<dyn AlertPublisher>>,
        bus_metrics: Option<Arc<BusMetrics>>,
    ) -> Result<Service, Error> {
        let file = config
            .output
            .alerts_path
            .as_deref()
            .map(|p| AlertSink::open(Target::from(p)))
            .transpose()?;
        let alerts = Alerts::new(file, bus_alerts).with_format(config.output.alert_format);
        let summary_out = SummaryWriter::new(
            Target::from(config.output.summary_path.as_path()),
            config.output.summary_format,
        )?;
        let signal_error = |source| Error::Start {
            what: "signal handling",
            source,
        };
        let sigint = signal(SignalKind::interrupt()).map_err(signal_error)?;
        let sigterm = signal(SignalKind::terminate()).map_err(signal_error)?;
        let mut ingestor = Ingestor::new(Summary::new(config.summary.max_endpoints));
        ingestor.guard = EventGuard::from_config(&config.ingest)?;
        analysis(&mut ingestor, &config.labels, &config.detect, &config.trace)?;
        // Both token files are checked before anything listens.
        let mut api_token = token(
            "inventory.api_token_file",
            config.inventory.api_token_file.as_deref(),
        )?;
        let metrics_token = token("metrics.token_file", config.metrics.token_file.as_deref())?;
        let mut store = None;
        let mut console: Option<Arc<crate::console::Console>> = None;
        let mut http: crate::metrics::HttpServers = Vec::new();
        if let Some(url) = &config.inventory.store {
            let (inventory, s) = open_inventory(url, &config.inventory)?;
            ingestor.inventory = Some(inventory);
            store = Some(s);
            if let Some(addr) = config.inventory.api_listen {
                let token = api_token.take();
                let api_store =
                    store::open_with(url, &config.inventory.store_access()).map_err(|source| {
                        Error::Store {
                            backend: store_backend(url),
                            source,
                        }
                    })?;
                let tls = api_tls(&config.inventory)?;
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|source| Error::ApiListen { addr, source })?;
                let local = listener.local_addr().unwrap_or(addr);
                tracing::info!(
                    listen = %local,
                    token = token.is_some(),
                    tls = tls.is_some(),
                    mutual_tls = tls.as_ref().is_some_and(|t| t.mutual()),
                    "inventory API listening"
                );
                let stats = Arc::new(HttpStats::default());
                http.push(("inventory_api", Arc::clone(&stats)));
                let mut options = Options {
                    name: "inventory_api",
                    limits: Limits::default(),
                    token,
                    stats,
                    self_authenticated: &[],
                    tls,
                };
                // `/v1/trace` on the same listener and token as the inventory (R-THR-6).
                let shared: api::SharedStore = Arc::new(Mutex::new(api_store));
                let mut handler = api::handler(Arc::clone(&shared));
                let reader = crate::trace::reader(&config.trace)?;
                if let Some(reader) = &reader {
                    handler = crate::trace::with_trace(reader.clone(), handler);
                }
                // The console on the same listener and credentials (issue 20): with a token
                // its pages authenticate by session cookie (the JSON API keeps the bearer
                // header); with mutual TLS alone the certificate is the login.
                if config.console.enabled {
                    let secret = config
                        .inventory
                        .api_token_file
                        .as_deref()
                        .map(|path| {
                            apitap_secret::read_secret_file(
                                path,
                                apitap_admin_http::MIN_TOKEN_BYTES,
                            )
                            .map_err(|source| Error::TokenFile {
                                field: "inventory.api_token_file",
                                path: path.to_owned(),
                                source,
                            })
                        })
                        .transpose()?;
                    let c = Arc::new(crate::console::Console::new(
                        &config.console,
                        secret,
                        shared,
                        reader,
                    ));
                    options.limits.max_body_bytes = crate::console::MAX_FORM_BYTES;
                    options.self_authenticated = &[crate::console::PREFIX];
                    handler = crate::console::with_console(Arc::clone(&c), handler);
                    tracing::info!(listen = %local, "console at /console/");
                    console = Some(c);
                }
                tokio::spawn(apitap_admin_http::serve(listener, handler, options));
            }
        } else {
            ingestor.inventory = Some(memory_inventory(&config.inventory)?);
        }
        let mut alerts = alerts;
        if let Some(c) = &console {
            ingestor.console = Some(Arc::clone(c));
            alerts = alerts.with_ring(Arc::clone(&c.alerts));
        }
        let state = Arc::new(Mutex::new(ingestor));
        if let Some(addr) = config.metrics.listen {
            let token = metrics_token;
            let stats = Arc::new(HttpStats::default());
            http.insert(0, ("metrics", Arc::clone(&stats)));
            let options = Options {
                name: "metrics",
                limits: Limits::default(),
                token,
                stats,
                self_authenticated: &[],
                tls: None,
            };
            crate::metrics::serve(addr, Arc::clone(&state), bus_metrics, http, options).await?;
        }
        Ok(Service {
            alerts,
            summary_out,
            state,
            store,
            sigint,
            sigterm,
        })
    }

    /// Writes the final summary and logs the statistics.
    fn finish(mut self, stop: Stop, extra: impl Fn()) -> Result<RunStats, Error> {
        finish_trace(&mut lock(&self.state));
        let (rows, stats) = snapshot(&self.state);
        self.summary_out.write(&rows)?;
        log_labelling(&lock(&self.state));
        extra();
        match stop {
            Stop::Signal(name) => {
                stats.log(&format!("stopped by {name}"));
                Ok(stats)
            }
            Stop::EndOfInput(result) => {
                stats.log("input finished");
                result?;
                Ok(stats)
            }
        }
    }
}

fn summary_ticker(interval_secs: u64) -> tokio::time::Interval {
    let mut ticker = tokio::time::interval(Duration::from_secs(interval_secs.max(1)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker
}

fn write_periodic_summary(service: &mut Service) {
    let (rows, stats) = snapshot(&service.state);
    if let Err(e) = service.summary_out.write(&rows) {
        tracing::warn!(error = %error::chain(&e), "cannot write periodic summary");
    }
    stats.log("periodic stats");
}

/// `run` over `[input]`: reads the file or stdin until its end or SIGINT/SIGTERM.
async fn run_lines(config: &Config, input_cfg: &InputConfig) -> Result<RunStats, Error> {
    let mut service = Service::start(config, None, None).await?;
    let input = open_input(&Target::from(input_cfg.path.as_path()))?;

    // Reading stdin or a file blocks, so it runs on its own thread. On a signal the service
    // writes the final summary and returns without waiting for that thread: returning from
    // main ends the process even if the thread is blocked in a read.
    let (done_tx, mut done_rx) = tokio::sync::oneshot::channel();
    let worker_state = Arc::clone(&service.state);
    let max_line_bytes = input_cfg.max_line_bytes;
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
        input = %input_cfg.path.display(),
        summary_interval_secs = config.output.summary_interval_secs,
        "analyzer running"
    );

    let interval_secs = config.output.summary_interval_secs;
    let mut ticker = summary_ticker(interval_secs);
    ticker.tick().await; // The first tick completes at once.
    let mut flush_ticker = summary_ticker(config.inventory.flush_interval_secs);
    flush_ticker.tick().await;

    let stop = loop {
        tokio::select! {
            _ = flush_ticker.tick(), if service.store.is_some() || service.alerts.is_enabled() => {
                let mut guard = lock(&service.state);
                if let Some(detect) = guard.detect.as_mut() {
                    detect.idle_tick();
                }
                write_findings(&mut guard, &mut service.alerts)?;
                if let (Some(inventory), Some(store)) = (guard.inventory.as_mut(), service.store.as_mut()) {
                    flush_inventory(inventory, store.as_mut(), &mut service.alerts, FlushKind::Periodic)?;
                }
                drop(guard);
                service.alerts.flush()?;
            }
            done = &mut done_rx => match done {
                Ok(result) => break Stop::EndOfInput(result.map_err(|source| Error::ReadInput {
                    path: input_cfg.path.clone(),
                    source,
                })),
                Err(_) => return Err(Error::IngestThread),
            },
            _ = service.sigint.recv() => break Stop::Signal("SIGINT"),
            _ = service.sigterm.recv() => break Stop::Signal("SIGTERM"),
            _ = ticker.tick(), if interval_secs > 0 => write_periodic_summary(&mut service),
        }
    };

    {
        let mut guard = lock(&service.state);
        if matches!(stop, Stop::EndOfInput(_)) {
            finish_detections(&mut guard);
        }
        write_findings(&mut guard, &mut service.alerts)?;
        if let (Some(inventory), Some(store)) = (guard.inventory.as_mut(), service.store.as_mut()) {
            flush_inventory(
                inventory,
                store.as_mut(),
                &mut service.alerts,
                FlushKind::Final,
            )?;
        }
    }
    service.alerts.flush()?;
    service.finish(stop, || {})
}

/// How long the consumer waits for an event before looking at its flush deadline and the
/// stop flag.
const POLL_TIMEOUT: Duration = Duration::from_millis(200);

/// The consumer thread's side of [`run_bus`]: events in, effects made durable, then
/// acknowledged (R-BUS-1, at-least-once: an offset is committed only once the event's
/// inventory changes are in the store and the alerts it raised are on the alert topic).
struct Consumer {
    source: Box<dyn EventSource>,
    state: Arc<Mutex<Ingestor>>,
    store: Option<Box<dyn Store>>,
    alerts: Alerts,
    /// Acknowledgments waiting for their event's effects to be durable, with the event time.
    pending: Vec<(u64, AckToken)>,
    /// The detection-state checkpoints (`[state]`), written before offsets are committed.
    detect_state: Option<Arc<crate::state::DetectState>>,
    /// Two-stage processing (`[scale_out]`, issue 18).
    scale_out: Option<crate::scale_out::ScaleOut>,
    max_pending: usize,
    flush_every: Duration,
}

/// Shortest time between two flushes asked for by the inventory's memory budget.
const MEMORY_FLUSH_MIN_INTERVAL: Duration = Duration::from_secs(1);

impl Consumer {
    /// Consumes until the source closes (`Ok(true)`) or `stop` is set (`Ok(false)`), then
    /// makes everything durable, acknowledges it and commits.
    fn run(&mut self, stop: &AtomicBool) -> Result<bool, Error> {
        let mut last_flush = Instant::now();
        let closed = loop {
            if stop.load(Ordering::Relaxed) {
                break false;
            }
            match self.source.poll(POLL_TIMEOUT) {
                Ok(Some(received)) => {
                    let mut guard = lock(&self.state);
                    if let Some(detect) = guard.detect.as_mut() {
                        detect.set_partition(Some(received.ack.partition()));
                    }
                    guard.ingest_event(&received.event);
                    drop(guard);
                    self.pending
                        .push((received.event.request_start_unix_us, received.ack));
                }
                Ok(None) => {}
                Err(BusError::Closed) => break true,
                Err(e) => return Err(e.into()),
            }
            if let Some(so) = self.scale_out.as_mut() {
                so.drain(&self.state)?;
            }
            // Near the inventory's memory budget, flush early (at most once a second): the
            // learning moves to the store instead of being shed (issue 22).
            let full = self.pending.len() >= self.max_pending
                || (last_flush.elapsed() >= MEMORY_FLUSH_MIN_INTERVAL
                    && lock(&self.state)
                        .inventory
                        .as_ref()
                        .is_some_and(Inventory::memory_pressure));
            if full || last_flush.elapsed() >= self.flush_every {
                self.flush(if full {
                    FlushKind::Forced
                } else {
                    FlushKind::Periodic
                })?;
                last_flush = Instant::now();
            }
        };
        if closed {
            // A finite source (the embedded sensor stopped): close open campaigns. A stopped
            // service keeps them open; they are raised again after a restart if the activity
            // goes on.
            finish_detections(&mut lock(&self.state));
        }
        self.flush(FlushKind::Final)?;
        self.source.close()?;
        Ok(closed)
    }

    /// Writes findings and inventory changes, waits for the alerts to be delivered, then
    /// acknowledges every event whose effects are now durable and commits.
    fn flush(&mut self, kind: FlushKind) -> Result<(), Error> {
        let durable_before = {
            let mut guard = lock(&self.state);
            if let Some(detect) = guard.detect.as_mut() {
                detect.idle_tick();
            }
            write_findings(&mut guard, &mut self.alerts)?;
            match (guard.inventory.as_mut(), self.store.as_mut()) {
                (Some(inventory), Some(store)) => {
                    flush_inventory(inventory, store.as_mut(), &mut self.alerts, kind)?
                }
                _ => Some(u64::MAX),
            }
        };
        if let Err(e) = self.alerts.flush() {
            if kind == FlushKind::Final {
                return Err(e);
            }
            // Not delivered yet: the events stay unacknowledged until a later flush.
            tracing::warn!(error = %error::chain(&e), "alerts not delivered yet; will retry");
            return Ok(());
        }
        // Stage 1's partials are on their topic before the events behind them are
        // acknowledged (issue 18).
        if let Some(so) = self.scale_out.as_mut()
            && let Err(e) = so.produce(&self.state)
        {
            if kind == FlushKind::Final {
                return Err(e.into());
            }
            tracing::warn!(error = %e, "partials not produced; will retry");
            return Ok(());
        }
        // The state the alerts reflect (a Create sent) is durable before the events behind
        // them are acknowledged (issue 18).
        if let Some(st) = &self.detect_state
            && let Err(e) = st.checkpoint(kind == FlushKind::Final)
        {
            if kind == FlushKind::Final {
                return Err(e.into());
            }
            tracing::warn!(error = %e, "detection state checkpoint failed; will retry");
            return Ok(());
        }
        // Stage 2's alerts and records are durable: its partials are done with.
        if let Some(so) = self.scale_out.as_mut() {
            so.commit();
        }
        let Some(before) = durable_before else {
            return Ok(());
        };
        let mut acked = 0usize;
        let source = &mut self.source;
        self.pending.retain(|&(time_us, token)| {
            // Only endpoints first seen after `before` are held back: an event at or before
            // it is in the store.
            if time_us <= before {
                source.ack(token);
                acked += 1;
                false
            } else {
                true
            }
        });
        if acked > 0
            && let Err(e) = self.source.commit()
        {
            if kind == FlushKind::Final {
                return Err(e.into());
            }
            tracing::warn!(error = %error::chain(&e), "offset commit failed; will retry");
        }
        Ok(())
    }
}

/// `run` over an [`EventSource`]: a consumer thread ingests, flushes and acknowledges; this
/// task writes summaries and handles signals.
async fn run_bus(config: &Config, bus: BusSource) -> Result<RunStats, Error> {
    let mut service = Service::start(config, bus.alerts, Some(Arc::clone(&bus.metrics))).await?;
    let stop_flag = Arc::new(AtomicBool::new(false));
    let mut source = bus.source;
    let detect_state = match (&config.state, &bus.kafka) {
        (st, Some(kafka)) if st.enabled => {
            let ds = crate::state::DetectState::open(st, kafka, Arc::clone(&service.state))?;
            // Restores happen on assignment, from within the consumer's first polls.
            source.set_rebalance_hook(Arc::clone(&ds) as Arc<dyn apitap_bus::RebalanceHook>);
            Some(ds)
        }
        (st, None) if st.enabled => {
            return Err(Error::ConfigValue {
                field: "state.enabled",
                reason: "the state topic needs the [kafka] event source",
            });
        }
        _ => None,
    };
    let scale_out = match (&bus.kafka, &detect_state) {
        (Some(kafka), Some(ds)) if config.scale_out.enabled => {
            let so = &config.scale_out;
            let key = hash_key(&config.labels)?;
            if let Some(d) = lock(&service.state).detect.as_mut() {
                d.enable_scale_out(&config.detect, &key, so.slice_secs, so.grace_secs)?;
            }
            Some(crate::scale_out::ScaleOut::open(
                so,
                kafka,
                Arc::clone(&bus.metrics),
                Arc::clone(ds),
            )?)
        }
        _ if config.scale_out.enabled => {
            return Err(Error::ConfigValue {
                field: "scale_out.enabled",
                reason: "needs the [kafka] event source and [state]",
            });
        }
        _ => None,
    };
    let mut consumer = Consumer {
        detect_state,
        scale_out,
        source,
        state: Arc::clone(&service.state),
        store: service.store.take(),
        alerts: std::mem::take(&mut service.alerts),
        pending: Vec::new(),
        max_pending: bus.max_pending_events.max(1),
        flush_every: Duration::from_secs(config.inventory.flush_interval_secs.max(1)),
    };
    let (done_tx, mut done_rx) = tokio::sync::oneshot::channel();
    let thread_stop = Arc::clone(&stop_flag);
    std::thread::Builder::new()
        .name("apitap-consume".into())
        .spawn(move || {
            let result = consumer.run(&thread_stop);
            let _ = done_tx.send(result);
        })
        .map_err(|source| Error::Start {
            what: "the consumer thread",
            source,
        })?;
    tracing::info!(
        summary_interval_secs = config.output.summary_interval_secs,
        "analyzer running"
    );
    let metrics = bus.metrics;
    let log_bus = || {
        tracing::info!(
            apitap_bus_messages_received_total = BusMetrics::get(&metrics.messages_received),
            apitap_bus_events_consumed_total = BusMetrics::get(&metrics.events_consumed),
            apitap_bus_duplicate_events_total = BusMetrics::get(&metrics.duplicate_events),
            apitap_bus_rejected_messages_total = metrics.rejected_all(),
            apitap_bus_commits_total = BusMetrics::get(&metrics.commits),
            apitap_bus_alerts_delivered_total = BusMetrics::get(&metrics.alerts_delivered),
            "event bus"
        );
    };

    let interval_secs = config.output.summary_interval_secs;
    let mut ticker = summary_ticker(interval_secs);
    ticker.tick().await;
    let mut signal = None;
    let result = loop {
        tokio::select! {
            done = &mut done_rx => break done.map_err(|_| Error::IngestThread)?,
            _ = service.sigint.recv() => signal = Some("SIGINT"),
            _ = service.sigterm.recv() => signal = Some("SIGTERM"),
            _ = ticker.tick(), if interval_secs > 0 => {
                write_periodic_summary(&mut service);
                log_bus();
            }
        }
        if bus.stop_on_signal
            && let Some(name) = signal
        {
            // The consumer makes its work durable, commits and leaves the group.
            tracing::info!(signal = name, "stopping");
            stop_flag.store(true, Ordering::Relaxed);
        }
    };
    let stop = match (result, signal) {
        (Ok(false), Some(name)) if bus.stop_on_signal => Stop::Signal(name),
        (result, _) => Stop::EndOfInput(result.map(|_| ())),
    };
    service.finish(stop, log_bus)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::BadLineCause;
    use crate::summary::tests::event;
    use apitap_schema::encode_event;
    use std::path::PathBuf;

    #[test]
    fn token_files_open_to_others_are_refused_naming_the_field() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = temp_dir("token");
        let p = dir.join("token");
        std::fs::write(&p, "a-bearer-token-of-32-bytes-00000\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = token("metrics.token_file", Some(&p)).unwrap_err();
        let text = error::chain(&e);
        assert!(text.starts_with("metrics.token_file: "), "{text}");
        assert!(text.contains("chmod 600"), "{text}");
        assert!(!text.contains("a-bearer-token"), "{text}");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(
            token("inventory.api_token_file", Some(&p))
                .unwrap()
                .is_some()
        );
        assert!(token("metrics.token_file", None).unwrap().is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }

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
    fn run_with_source_consumes_until_the_channel_closes_and_stores_everything() {
        use apitap_bus::EventPublisher as _;
        let dir = temp_dir("bus");
        let config = Config::parse(&format!(
            "[output]\nsummary_path = {:?}\nsummary_format = \"json\"\n\
             [inventory]\nstore = \"sqlite:{}\"\n",
            dir.join("summary.json"),
            dir.join("inv.db").display()
        ))
        .unwrap();
        let metrics = Arc::new(BusMetrics::default());
        let (mut publisher, source) = apitap_bus::memory::channel(
            1000,
            &apitap_bus::config::ConsumerConfig::default(),
            metrics.clone(),
        );
        for i in 0..50u64 {
            let mut e = event(Some("api"), "GET", &format!("/items/{}", i % 5));
            e.event_id = format!("{i:032x}");
            e.request_start_unix_us = 1_700_000_000_000_000 + i;
            publisher.publish(&e);
        }
        // A replay of event 7: deduplicated by the consumer.
        let mut dup = event(Some("api"), "GET", "/items/2");
        dup.event_id = format!("{:032x}", 7);
        publisher.publish(&dup);
        publisher.close(Duration::from_secs(1)).unwrap();
        let bus = BusSource {
            source: Box::new(source),
            alerts: None,
            metrics: metrics.clone(),
            stop_on_signal: false,
            max_pending_events: 8,
            kafka: None,
        };
        let stats = run_with_source(&config, bus).unwrap();
        assert_eq!(stats.events, 50);
        assert_eq!(BusMetrics::get(&metrics.duplicate_events), 1);
        let rows: Vec<EndpointReport> =
            serde_json::from_slice(&std::fs::read(dir.join("summary.json")).unwrap()).unwrap();
        assert_eq!(rows.iter().map(|r| r.requests).sum::<u64>(), 50);
        let mut store = store::open(&format!("sqlite:{}", dir.join("inv.db").display())).unwrap();
        let stored = store
            .endpoints(&crate::inventory::record::EndpointFilter::default())
            .unwrap();
        assert_eq!(stored.iter().map(|r| r.data.hits).sum::<u64>(), 50);
        std::fs::remove_dir_all(&dir).unwrap();
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
