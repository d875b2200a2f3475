//! The sensor's Kafka event producer (R-BUS-1, R-BUS-2): idempotent, batched, compressed,
//! keyed, with a bounded on-disk spool behind it, never blocking the capture loop.
//!
//! ## Paths of an event
//!
//! - **Direct** (normal): [`KafkaEventPublisher::publish`] encodes the event and hands it to
//!   librdkafka's memory queue (`rd_kafka_producev`, which never blocks). librdkafka batches,
//!   compresses and retries it forever (`message.timeout.ms = 0`) with the idempotent
//!   producer, so retries neither duplicate nor reorder.
//! - **Spooled**: when the memory queue is full, the broker is unreachable (librdkafka reports
//!   all brokers down, or nothing was delivered for `producer.stall_timeout_ms` while events
//!   were outstanding), or the spool still holds events, the event is handed to the spool
//!   thread through a bounded in-memory backlog and appended to the spool. While the spool is
//!   not empty, *every* new event goes there, behind the older ones: events leave in the order
//!   they were published.
//! - **Replay**: the spool thread feeds spooled events back to librdkafka, in order, as fast as
//!   deliveries allow (one probe event at a time while the broker is unreachable). A spooled
//!   event is released from the spool only once the broker acknowledged it; a crash replays
//!   from the last released position (duplicates are possible, loss is not).
//!
//! ## Errors
//!
//! [`crate::kafka::classify`]: *retryable* errors (queue full, broker down, leader moving,
//! purge on shutdown) keep the event (spool); *rejected* ones (message too large, invalid)
//! drop it, counted; *fatal* ones (idempotence state lost, authentication or authorisation
//! failed) keep the event, log an error and rebuild the producer.
//!
//! ## Key
//!
//! [`event_key`]: `"<client ip>|<server ip>|<server port>"`. With the default partitioner (a
//! hash of the key) one client's traffic to one service lands on one partition and stays in
//! order there (R-THR detections read sequences per client and API); different clients and
//! services spread over the partitions. The client port is left out on purpose: a client's
//! successive connections must not scatter.
//!
//! ## Shutdown
//!
//! [`KafkaEventPublisher::close`] keeps delivering for up to `producer.close_timeout_ms`
//! (the sensor passes it on SIGTERM), then writes whatever is still in librdkafka's queue
//! into a segment placed *in front of* the spool (those events are older than the spooled
//! ones), so the next start sends everything in order.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use apitap_schema::{ApiEvent, EventEncoding, SCHEMA_VERSION};
use rdkafka::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use tracing::{debug, error, info, warn};

use crate::config::{ClientRole, KafkaConfig};
use crate::kafka::{ErrorClass, classify, client_config, describe};
use crate::metrics::{BusMetrics, DropCause, ErrorLabel, LogLimiter};
use crate::spool::{Appended, Position, Spool, SpoolError, SpoolLimits, SpoolRecord};
use crate::{BusError, CloseReport, EventPublisher, Publish};

/// Header carrying the event's schema version (`MAJOR.MINOR`), so consumers can route or
/// reject without parsing the value.
pub const HEADER_SCHEMA_VERSION: &str = "apitap-schema-version";
/// Header carrying the id of the sensor that produced the event.
pub const HEADER_SENSOR_ID: &str = "apitap-sensor-id";
/// Header naming the event's encoding ([`apitap_schema::EventEncoding::content_type`]);
/// absent means JSON.
pub const HEADER_CONTENT_TYPE: &str = "content-type";

/// Writes the message key of `event` into `out` (cleared first): see the module docs.
pub fn event_key(event: &ApiEvent, out: &mut String) {
    out.clear();
    let _ = write!(
        out,
        "{}|{}|{}",
        event.client.ip, event.server.ip, event.server.port
    );
}

/// Delivery-opaque flag of direct events (the rest of the value is their publish sequence, so
/// failed ones are spooled in publish order); without it, the value is a spool sequence.
const DIRECT: u64 = 1 << 62;

/// Spooled events handed to librdkafka at most at once while the broker is reachable.
const DRAIN_IN_FLIGHT: usize = 20_000;
/// Records read from the spool per loop iteration.
const DRAIN_BATCH: usize = 2_000;
/// How often the spool's cursor is saved while replaying.
const RELEASE_INTERVAL: Duration = Duration::from_millis(200);
/// Wait between producer rebuild attempts after a fatal error.
const REBUILD_BACKOFF: Duration = Duration::from_secs(5);

static DROP_LOG: LogLimiter = LogLimiter::new(10, 10_000);
static REJECT_LOG: LogLimiter = LogLimiter::new(10, 1_000);
static CLIENT_ERROR_LOG: LogLimiter = LogLimiter::new(20, 100);

/// What librdkafka reported back, collected in its callbacks (run on the spool thread, inside
/// `poll`), consumed by the spool thread.
#[derive(Default)]
struct Reports {
    /// Spool sequence numbers delivered (or rejected for good).
    done_seqs: Vec<u64>,
    /// Spool sequence numbers whose delivery failed and must be re-read.
    failed_seqs: Vec<u64>,
    /// Direct events whose delivery failed, with their publish sequence: to be spooled.
    failed_direct: Vec<(u64, SpoolRecord)>,
}

/// librdkafka callbacks of one producer instance.
struct Ctx {
    metrics: Arc<BusMetrics>,
    reports: Mutex<Reports>,
    delivered: AtomicBool,
    unreachable: AtomicBool,
    /// Set on any client error: the spool thread then asks librdkafka whether the instance
    /// hit a fatal error (the error event carries the underlying code, not "fatal").
    check_fatal: AtomicBool,
}

impl Ctx {
    fn new(metrics: Arc<BusMetrics>) -> Ctx {
        Ctx {
            metrics,
            reports: Mutex::new(Reports::default()),
            delivered: AtomicBool::new(false),
            unreachable: AtomicBool::new(false),
            check_fatal: AtomicBool::new(false),
        }
    }

    fn reports(&self) -> MutexGuard<'_, Reports> {
        self.reports.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl ClientContext for Ctx {
    fn error(&self, error: KafkaError, reason: &str) {
        let code = error.rdkafka_error_code();
        if code == Some(RDKafkaErrorCode::AllBrokersDown) {
            self.unreachable.store(true, Ordering::Release);
        }
        self.check_fatal.store(true, Ordering::Release);
        let (log, n) = CLIENT_ERROR_LOG.tick();
        if log {
            // librdkafka's reasons name brokers and error codes, never message contents.
            warn!(error = %describe(&error), reason, occurrence = n, "kafka producer");
        }
    }
}

impl ProducerContext for Ctx {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, seq: usize) {
        let seq = seq as u64;
        match result {
            Ok(_) => {
                self.metrics
                    .events_delivered
                    .fetch_add(1, Ordering::Relaxed);
                self.delivered.store(true, Ordering::Release);
                if seq & DIRECT == 0 {
                    self.reports().done_seqs.push(seq);
                }
            }
            Err((e, msg)) => {
                let code = e.rdkafka_error_code().unwrap_or(RDKafkaErrorCode::Unknown);
                match classify(code) {
                    ErrorClass::Rejected => {
                        self.metrics.produce_error(ErrorLabel::Rejected);
                        self.metrics.dropped(DropCause::Rejected, 1);
                        let (log, n) = REJECT_LOG.tick();
                        if log {
                            warn!(error = ?code, dropped = n, "kafka refused an event for good; dropped (counted)");
                        }
                        if seq & DIRECT == 0 {
                            self.reports().done_seqs.push(seq);
                        }
                        return;
                    }
                    ErrorClass::Fatal => {
                        self.metrics.produce_error(ErrorLabel::Fatal);
                        self.check_fatal.store(true, Ordering::Release);
                    }
                    ErrorClass::Retryable => {
                        if !matches!(
                            code,
                            RDKafkaErrorCode::PurgeQueue | RDKafkaErrorCode::PurgeInflight
                        ) {
                            self.metrics.produce_error(ErrorLabel::Retryable);
                        }
                    }
                }
                if seq & DIRECT != 0 {
                    let mut headers = Vec::new();
                    if let Some(h) = msg.headers() {
                        for hd in h.iter() {
                            headers
                                .push((hd.key.to_owned(), hd.value.unwrap_or_default().to_vec()));
                        }
                    }
                    let rec = SpoolRecord {
                        key: msg.key().unwrap_or_default().to_vec(),
                        headers,
                        value: msg.payload().unwrap_or_default().to_vec(),
                    };
                    self.reports().failed_direct.push((seq & !DIRECT, rec));
                } else {
                    self.reports().failed_seqs.push(seq);
                }
            }
        }
    }
}

type Client = BaseProducer<Ctx>;

fn build_producer(cfg: &KafkaConfig, metrics: &Arc<BusMetrics>) -> Result<Client, BusError> {
    client_config(cfg, ClientRole::Producer)?
        .create_with_context(Ctx::new(metrics.clone()))
        .map_err(|e| BusError::kafka("creating the event producer", &e))
}

/// An event on its way from the capture loop to the spool.
struct Pending {
    key: Vec<u8>,
    value: Vec<u8>,
}

struct Shared {
    producer: RwLock<Arc<Client>>,
    /// True while new events must go to the spool (see the module docs).
    spooling: AtomicBool,
    /// Serialises entering spooling mode (capture loop) with leaving it (spool thread).
    mode: Mutex<()>,
    backlog_events: AtomicU64,
    backlog_bytes: AtomicU64,
    stop: AtomicBool,
    close_timeout_ms: AtomicU64,
    metrics: Arc<BusMetrics>,
    topic: String,
    sensor_id: String,
    /// Encoding of every event this publisher produces (and spools).
    encoding: EventEncoding,
}

impl Shared {
    fn mode(&self) -> MutexGuard<'_, ()> {
        self.mode.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The Kafka implementation of [`EventPublisher`].
pub struct KafkaEventPublisher {
    shared: Arc<Shared>,
    tx: Option<Sender<Pending>>,
    worker: Option<JoinHandle<CloseReport>>,
    backlog_max_bytes: u64,
    key: String,
    value: Vec<u8>,
    report: Option<CloseReport>,
    direct_seq: u64,
}

enum Direct {
    Sent,
    Rejected,
    Spool,
}

impl KafkaEventPublisher {
    /// Validates `cfg`, opens (and recovers) the spool, creates the producer and starts the
    /// spool thread. Connecting to the brokers happens in the background: an unreachable
    /// cluster is not an error here (events spool until it is reachable).
    pub fn start(
        cfg: &KafkaConfig,
        sensor_id: &str,
        metrics: Arc<BusMetrics>,
    ) -> Result<KafkaEventPublisher, BusError> {
        cfg.validate()?;
        let spool = SpoolSlot::open(
            &cfg.spool.dir,
            SpoolLimits {
                max_bytes: cfg.spool.max_bytes,
                segment_bytes: cfg.spool.segment_bytes,
                on_full: cfg.spool.on_full,
            },
            &metrics,
        );
        let producer = Arc::new(build_producer(cfg, &metrics)?);
        let recovered = spool.unread();
        let shared = Arc::new(Shared {
            producer: RwLock::new(producer.clone()),
            spooling: AtomicBool::new(recovered > 0),
            mode: Mutex::new(()),
            backlog_events: AtomicU64::new(0),
            backlog_bytes: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            close_timeout_ms: AtomicU64::new(0),
            metrics: metrics.clone(),
            topic: cfg.events_topic.clone(),
            sensor_id: sensor_id.to_owned(),
            encoding: cfg.producer.event_encoding,
        });
        let (tx, rx) = std::sync::mpsc::channel();
        let worker = Worker {
            shared: shared.clone(),
            cfg: cfg.clone(),
            producer,
            spool,
            rx,
            outstanding: BTreeMap::new(),
            next_seq: 1,
            held: None,
            failed_min: None,
            healthy: true,
            last_progress: Instant::now(),
            last_release: Instant::now(),
            last_sync: Instant::now(),
            rebuild_after: None,
            damage_counted: 0,
            fatal: false,
            probe_after: Instant::now(),
        };
        let handle = std::thread::Builder::new()
            .name("apitap-bus-spool".into())
            .spawn(move || worker.run())
            .map_err(|e| BusError::Thread(format!("starting the spool thread: {e}")))?;
        info!(
            brokers = ?cfg.brokers,
            topic = %cfg.events_topic,
            spool = %cfg.spool.dir.display(),
            recovered_events = recovered,
            "kafka event producer started"
        );
        Ok(KafkaEventPublisher {
            shared,
            tx: Some(tx),
            worker: Some(handle),
            backlog_max_bytes: cfg.spool.backlog_max_bytes,
            key: String::with_capacity(96),
            value: Vec::with_capacity(16 * 1024),
            report: None,
            direct_seq: 0,
        })
    }

    /// The current librdkafka handle (tests inject faults through it).
    #[cfg(test)]
    pub(crate) fn native_for_test(&self) -> *mut rdkafka::bindings::rd_kafka_t {
        match self.shared.producer.read() {
            Ok(g) => g.client().native_ptr(),
            Err(_) => std::ptr::null_mut(),
        }
    }

    fn headers(&self) -> OwnedHeaders {
        OwnedHeaders::new_with_capacity(3)
            .insert(Header {
                key: HEADER_SCHEMA_VERSION,
                value: Some(SCHEMA_VERSION),
            })
            .insert(Header {
                key: HEADER_SENSOR_ID,
                value: Some(self.shared.sensor_id.as_str()),
            })
            .insert(Header {
                key: HEADER_CONTENT_TYPE,
                value: Some(self.shared.encoding.content_type()),
            })
    }

    fn try_direct(&mut self) -> Direct {
        let m = &self.shared.metrics;
        // The read guard is held across the send so a rebuild (write lock) cannot retire the
        // producer between our choice of it and the send.
        let guard = match self.shared.producer.read() {
            Ok(g) => g,
            Err(_) => return Direct::Spool,
        };
        self.direct_seq = (self.direct_seq + 1) & !DIRECT;
        let record =
            BaseRecord::with_opaque_to(&self.shared.topic, (DIRECT | self.direct_seq) as usize)
                .key(self.key.as_bytes())
                .payload(self.value.as_slice())
                .headers(self.headers());
        match guard.send(record) {
            Ok(()) => {
                m.events_enqueued.fetch_add(1, Ordering::Relaxed);
                Direct::Sent
            }
            Err((e, _)) => {
                let code = e.rdkafka_error_code().unwrap_or(RDKafkaErrorCode::Unknown);
                match classify(code) {
                    ErrorClass::Rejected => {
                        m.produce_error(ErrorLabel::Rejected);
                        m.dropped(DropCause::Rejected, 1);
                        let (log, n) = REJECT_LOG.tick();
                        if log {
                            warn!(error = ?code, bytes = self.value.len(), dropped = n, "kafka client refused an event; dropped (counted)");
                        }
                        Direct::Rejected
                    }
                    ErrorClass::Fatal => {
                        m.produce_error(ErrorLabel::Fatal);
                        Direct::Spool
                    }
                    ErrorClass::Retryable => {
                        if code != RDKafkaErrorCode::QueueFull {
                            m.produce_error(ErrorLabel::Retryable);
                        }
                        Direct::Spool
                    }
                }
            }
        }
    }

    fn spool_event(&mut self) -> Publish {
        let size = (self.key.len() + self.value.len() + 64) as u64;
        let s = &self.shared;
        let _mode = s.mode();
        s.spooling.store(true, Ordering::Release);
        let Some(tx) = &self.tx else {
            s.metrics.dropped(DropCause::SpoolBacklog, 1);
            return Publish::Dropped(DropCause::SpoolBacklog);
        };
        if s.backlog_bytes.load(Ordering::Acquire) + size > self.backlog_max_bytes {
            s.metrics.dropped(DropCause::SpoolBacklog, 1);
            let (log, n) = DROP_LOG.tick();
            if log {
                warn!(
                    dropped = n,
                    "spool writer behind by more than kafka.spool.backlog_max_bytes: event dropped (counted)"
                );
            }
            return Publish::Dropped(DropCause::SpoolBacklog);
        }
        s.backlog_bytes.fetch_add(size, Ordering::AcqRel);
        s.backlog_events.fetch_add(1, Ordering::AcqRel);
        let pending = Pending {
            key: self.key.as_bytes().to_vec(),
            value: self.value.clone(),
        };
        if tx.send(pending).is_err() {
            s.backlog_bytes.fetch_sub(size, Ordering::AcqRel);
            s.backlog_events.fetch_sub(1, Ordering::AcqRel);
            s.metrics.dropped(DropCause::SpoolIo, 1);
            return Publish::Dropped(DropCause::SpoolIo);
        }
        Publish::Spooled
    }
}

impl EventPublisher for KafkaEventPublisher {
    fn publish(&mut self, event: &ApiEvent) -> Publish {
        let m = self.shared.metrics.clone();
        m.events_published.fetch_add(1, Ordering::Relaxed);
        self.value.clear();
        self.shared.encoding.encode_into(event, &mut self.value);
        if self.value.is_empty() {
            m.dropped(DropCause::Encode, 1);
            return Publish::Dropped(DropCause::Encode);
        }
        event_key(event, &mut self.key);
        if !self.shared.spooling.load(Ordering::Acquire) {
            match self.try_direct() {
                Direct::Sent => return Publish::Queued,
                Direct::Rejected => return Publish::Dropped(DropCause::Rejected),
                Direct::Spool => {}
            }
        }
        self.spool_event()
    }

    fn close(&mut self, timeout: Duration) -> Result<CloseReport, BusError> {
        if let Some(r) = self.report {
            return Ok(r);
        }
        self.shared.stop.store(true, Ordering::Release);
        self.shared
            .close_timeout_ms
            .store(timeout.as_millis() as u64, Ordering::Release);
        self.tx = None;
        let report = match self.worker.take() {
            Some(h) => h
                .join()
                .map_err(|_| BusError::Thread("the spool thread panicked".into()))?,
            None => CloseReport::default(),
        };
        self.report = Some(report);
        Ok(report)
    }

    fn metrics(&self) -> Arc<BusMetrics> {
        self.shared.metrics.clone()
    }
}

impl Drop for KafkaEventPublisher {
    fn drop(&mut self) {
        if self.report.is_none()
            && let Err(e) = self.close(Duration::ZERO)
        {
            error!(error = %e, "closing the kafka event producer");
        }
    }
}

/// How long a spool that could not be opened waits before the next attempt.
const SPOOL_REOPEN_INTERVAL: Duration = Duration::from_secs(30);

/// The spool, or the place where it should be. A spool that cannot be opened (read-only or
/// full disk, wrong owner) must not stop capture (issue 22): the producer then runs without
/// one — events go to the Kafka client directly, and those it cannot take now are dropped and
/// counted as `spool_io` — and opening is retried every [`SPOOL_REOPEN_INTERVAL`]
/// (`apitap_bus_spool_unavailable` is 1 meanwhile).
struct SpoolSlot {
    dir: std::path::PathBuf,
    limits: SpoolLimits,
    spool: Option<Spool>,
    retry_at: Instant,
    metrics: Arc<BusMetrics>,
}

impl SpoolSlot {
    fn open(dir: &std::path::Path, limits: SpoolLimits, metrics: &Arc<BusMetrics>) -> SpoolSlot {
        let mut slot = SpoolSlot {
            dir: dir.to_path_buf(),
            limits,
            spool: None,
            retry_at: Instant::now(),
            metrics: metrics.clone(),
        };
        slot.try_open();
        slot
    }

    /// Opens the spool if it is not open and an attempt is due.
    fn try_open(&mut self) {
        if self.spool.is_some() || Instant::now() < self.retry_at {
            return;
        }
        match Spool::open(&self.dir, self.limits) {
            Ok(spool) => {
                if self.metrics.spool_open_failures.load(Ordering::Relaxed) > 0 {
                    info!(dir = %self.dir.display(), "spool opened after earlier failures");
                }
                self.spool = Some(spool);
                self.metrics.spool_unavailable.store(0, Ordering::Relaxed);
            }
            Err(e) => {
                self.metrics
                    .spool_open_failures
                    .fetch_add(1, Ordering::Relaxed);
                self.metrics.spool_unavailable.store(1, Ordering::Relaxed);
                self.retry_at = Instant::now() + SPOOL_REOPEN_INTERVAL;
                error!(error = %e, retry_secs = SPOOL_REOPEN_INTERVAL.as_secs(), "spool unavailable: running without it; events the broker cannot take now are dropped (counted as spool_io)");
            }
        }
    }

    fn get(&mut self) -> Result<&mut Spool, SpoolError> {
        self.try_open();
        let dir = &self.dir;
        self.spool
            .as_mut()
            .ok_or_else(|| SpoolError::Unavailable(dir.clone()))
    }

    fn unread(&self) -> u64 {
        self.spool.as_ref().map_or(0, Spool::unread)
    }

    fn is_drained(&self) -> bool {
        self.spool.as_ref().is_none_or(Spool::is_drained)
    }

    fn bytes(&self) -> u64 {
        self.spool.as_ref().map_or(0, Spool::bytes)
    }

    fn damage(&self) -> crate::spool::SpoolDamage {
        self.spool.as_ref().map(Spool::damage).unwrap_or_default()
    }

    fn read_position(&self) -> Position {
        self.spool
            .as_ref()
            .map(Spool::read_position)
            .unwrap_or_default()
    }

    fn append(&mut self, rec: &SpoolRecord) -> Result<Appended, SpoolError> {
        self.get()?.append(rec)
    }

    fn prepend(&mut self, recs: &[SpoolRecord]) -> Result<u64, SpoolError> {
        self.get()?.prepend(recs)
    }

    fn read_next(&mut self) -> Result<Option<(Position, SpoolRecord)>, SpoolError> {
        match self.spool.as_mut() {
            Some(s) => s.read_next(),
            None => Ok(None),
        }
    }

    fn release(&mut self, upto: Position) -> Result<(), SpoolError> {
        self.spool.as_mut().map_or(Ok(()), |s| s.release(upto))
    }

    fn rewind(&mut self) -> Result<(), SpoolError> {
        self.spool.as_mut().map_or(Ok(()), Spool::rewind)
    }

    fn flush(&mut self) -> Result<(), SpoolError> {
        self.spool.as_mut().map_or(Ok(()), Spool::flush)
    }

    fn sync(&mut self) -> Result<(), SpoolError> {
        self.spool.as_mut().map_or(Ok(()), Spool::sync)
    }
}

/// The spool thread: owns the spool, serves librdkafka's callbacks, replays, switches modes.
struct Worker {
    shared: Arc<Shared>,
    cfg: KafkaConfig,
    producer: Arc<Client>,
    spool: SpoolSlot,
    rx: Receiver<Pending>,
    /// Spool records handed to librdkafka and not yet delivered: sequence → position.
    outstanding: BTreeMap<u64, Position>,
    next_seq: u64,
    /// A record read from the spool that librdkafka did not take yet (queue full).
    held: Option<(Position, SpoolRecord)>,
    /// Lowest position of a spool record whose delivery failed (re-read after a rewind).
    failed_min: Option<Position>,
    healthy: bool,
    last_progress: Instant,
    last_release: Instant,
    last_sync: Instant,
    rebuild_after: Option<Instant>,
    /// Damaged spool regions already counted as dropped events.
    damage_counted: u64,
    /// The current producer instance hit a fatal error and must be replaced.
    fatal: bool,
    /// While unreachable, when the next probe event may be sent.
    probe_after: Instant,
}

impl Worker {
    fn run(mut self) -> CloseReport {
        let mut close_deadline: Option<Instant> = None;
        loop {
            if close_deadline.is_none() && self.shared.stop.load(Ordering::Acquire) {
                let t = self.shared.close_timeout_ms.load(Ordering::Acquire);
                close_deadline = Some(Instant::now() + Duration::from_millis(t));
            }
            let took = self.take_backlog();
            self.producer.poll(Duration::ZERO);
            // A fatal error first: its salvage takes the failed events in publish order.
            self.maybe_rebuild();
            self.handle_reports();
            self.update_health();
            self.maybe_rewind();
            let drained = self.drain();
            self.release(false);
            self.maybe_sync();
            self.update_mode();
            self.publish_gauges();
            if let Some(deadline) = close_deadline {
                let done = self.spool.is_drained()
                    && self.held.is_none()
                    && self.outstanding.is_empty()
                    && self.producer.in_flight_count() == 0
                    && self.shared.backlog_events.load(Ordering::Acquire) == 0;
                if done || Instant::now() >= deadline {
                    break;
                }
            }
            if took == 0 && drained == 0 {
                // Nothing to do: serve librdkafka's callbacks for a moment.
                self.producer.poll(Duration::from_millis(5));
            }
        }
        self.shutdown()
    }

    /// Moves what the capture loop handed over into the spool; returns how many.
    fn take_backlog(&mut self) -> usize {
        let mut n = 0;
        while n < 10_000 {
            match self.rx.try_recv() {
                Ok(p) => {
                    self.append(p);
                    n += 1;
                }
                Err(_) => break,
            }
        }
        n
    }

    fn append(&mut self, p: Pending) {
        let size = (p.key.len() + p.value.len() + 64) as u64;
        let rec = SpoolRecord {
            key: p.key,
            headers: vec![
                (
                    HEADER_SCHEMA_VERSION.into(),
                    SCHEMA_VERSION.as_bytes().to_vec(),
                ),
                (
                    HEADER_SENSOR_ID.into(),
                    self.shared.sensor_id.as_bytes().to_vec(),
                ),
                (
                    HEADER_CONTENT_TYPE.into(),
                    self.shared.encoding.content_type().as_bytes().to_vec(),
                ),
            ],
            value: p.value,
        };
        self.append_record(&rec);
        self.shared.backlog_bytes.fetch_sub(size, Ordering::AcqRel);
        self.shared.backlog_events.fetch_sub(1, Ordering::AcqRel);
    }

    fn append_record(&mut self, rec: &SpoolRecord) {
        let m = &self.shared.metrics;
        match self.spool.append(rec) {
            Ok(Appended::Written { dropped_oldest }) => {
                m.events_spooled.fetch_add(1, Ordering::Relaxed);
                if dropped_oldest > 0 {
                    m.dropped(DropCause::SpoolFullOldest, dropped_oldest);
                }
            }
            Ok(Appended::RefusedFull) => {
                m.dropped(DropCause::SpoolFullNewest, 1);
                let (log, n) = DROP_LOG.tick();
                if log {
                    warn!(
                        dropped = n,
                        "spool full: event dropped (kafka.spool.on_full = \"drop_newest\"; counted)"
                    );
                }
            }
            Err(e) => {
                m.dropped(DropCause::SpoolIo, 1);
                let (log, n) = DROP_LOG.tick();
                if log {
                    error!(error = %e, dropped = n, "spool write failed: event dropped (counted)");
                }
            }
        }
    }

    fn handle_reports(&mut self) {
        let r = std::mem::take(&mut *self.producer.context().reports());
        for seq in r.done_seqs {
            self.outstanding.remove(&seq);
        }
        let failures = r.failed_seqs.len() + r.failed_direct.len();
        for seq in r.failed_seqs {
            if let Some(pos) = self.outstanding.remove(&seq) {
                self.failed_min = Some(self.failed_min.map_or(pos, |m| m.min(pos)));
            }
        }
        let mut failed_direct = r.failed_direct;
        failed_direct.sort_unstable_by_key(|(seq, _)| *seq);
        for (_, rec) in &failed_direct {
            self.append_record(rec);
        }
        if failures > 0 {
            // Deliveries are failing (e.g. authorisation): spool and probe, with a pause
            // between probes, until one succeeds.
            self.probe_after = Instant::now() + Duration::from_secs(1);
            if self.healthy {
                self.healthy = false;
                self.shared
                    .metrics
                    .broker_unreachable
                    .fetch_add(1, Ordering::Relaxed);
                warn!(
                    failures,
                    "kafka deliveries failing: new events go to the spool"
                );
            }
        }
    }

    fn update_health(&mut self) {
        let ctx = self.producer.context();
        let now = Instant::now();
        if ctx.delivered.swap(false, Ordering::AcqRel) {
            self.last_progress = now;
            ctx.unreachable.store(false, Ordering::Release);
            if !self.healthy {
                self.healthy = true;
                info!("kafka reachable again: replaying the spool");
            }
        }
        let in_flight = self.producer.in_flight_count();
        self.shared
            .metrics
            .producer_queue_events
            .store(in_flight.max(0) as u64, Ordering::Relaxed);
        if in_flight <= 0 {
            self.last_progress = now;
        }
        if !self.healthy {
            return;
        }
        let stall = Duration::from_millis(self.cfg.producer.stall_timeout_ms);
        let reason = if ctx.unreachable.swap(false, Ordering::AcqRel) {
            Some("all brokers down")
        } else if in_flight > 0 && now.duration_since(self.last_progress) > stall {
            Some("no delivery within kafka.producer.stall_timeout_ms")
        } else {
            None
        };
        if let Some(reason) = reason {
            self.healthy = false;
            self.shared
                .metrics
                .broker_unreachable
                .fetch_add(1, Ordering::Relaxed);
            warn!(
                reason,
                in_flight, "kafka unreachable: new events go to the spool"
            );
        }
    }

    fn maybe_rebuild(&mut self) {
        if self.rebuild_after.is_some_and(|t| Instant::now() < t) {
            return;
        }
        if !self.fatal {
            if !self
                .producer
                .context()
                .check_fatal
                .swap(false, Ordering::AcqRel)
            {
                return;
            }
            self.fatal = self.producer.client().fatal_error().is_some();
            if !self.fatal {
                return;
            }
        }
        {
            let _mode = self.shared.mode();
            self.shared.spooling.store(true, Ordering::Release);
        }
        let reason = self
            .producer
            .client()
            .fatal_error()
            .map(|(code, _)| format!("{code:?}"))
            .unwrap_or_default();
        let new = match build_producer(&self.cfg, &self.shared.metrics) {
            Ok(p) => Arc::new(p),
            Err(e) => {
                error!(error = %e, "rebuilding the kafka producer failed; retrying");
                self.rebuild_after = Some(Instant::now() + REBUILD_BACKOFF);
                return;
            }
        };
        let old = {
            let mut g = self
                .shared
                .producer
                .write()
                .unwrap_or_else(|e| e.into_inner());
            std::mem::replace(&mut *g, new.clone())
        };
        self.producer = new;
        self.fatal = false;
        let salvaged = self.salvage(&old);
        self.shared
            .metrics
            .producer_rebuilds
            .fetch_add(1, Ordering::Relaxed);
        error!(
            error = %reason,
            respooled = salvaged,
            "kafka producer hit a fatal error and was rebuilt; its queued events were spooled"
        );
        self.rebuild_after = Some(Instant::now() + REBUILD_BACKOFF);
    }

    /// Purges `old`'s queue, writes its direct events in front of the spool, and rewinds the
    /// spool over its spool-originated ones. Returns how many events were salvaged.
    fn salvage(&mut self, old: &Client) -> u64 {
        use rdkafka::producer::PurgeConfig;
        old.purge(PurgeConfig::default().queue().inflight());
        let deadline = Instant::now() + Duration::from_secs(5);
        while old.in_flight_count() > 0 && Instant::now() < deadline {
            old.poll(Duration::from_millis(20));
        }
        old.poll(Duration::ZERO);
        let r = std::mem::take(&mut *old.context().reports());
        for seq in r.done_seqs {
            self.outstanding.remove(&seq);
        }
        for seq in r.failed_seqs {
            if let Some(pos) = self.outstanding.remove(&seq) {
                self.failed_min = Some(self.failed_min.map_or(pos, |m| m.min(pos)));
            }
        }
        // Whatever is still outstanding was lost with the old instance: re-read it.
        if let Some((_, pos)) = self.outstanding.first_key_value() {
            let pos = *pos;
            self.failed_min = Some(self.failed_min.map_or(pos, |m| m.min(pos)));
        }
        self.outstanding.clear();
        let mut failed_direct = r.failed_direct;
        failed_direct.sort_unstable_by_key(|(seq, _)| *seq);
        let failed_direct: Vec<SpoolRecord> = failed_direct.into_iter().map(|(_, r)| r).collect();
        let n = failed_direct.len() as u64;
        if let Some((pos, _)) = self.held.take() {
            self.failed_min = Some(self.failed_min.map_or(pos, |m| m.min(pos)));
        }
        if n > 0 {
            match self.spool.prepend(&failed_direct) {
                Ok(_) => {
                    self.shared
                        .metrics
                        .events_spooled
                        .fetch_add(n, Ordering::Relaxed);
                    // prepend rewound the spool already.
                    self.failed_min = None;
                }
                Err(e) => {
                    self.shared.metrics.dropped(DropCause::SpoolIo, n);
                    error!(error = %e, events = n, "spooling the producer's queue failed: events dropped (counted)");
                }
            }
        }
        self.maybe_rewind();
        n
    }

    fn maybe_rewind(&mut self) {
        if self.failed_min.is_none() || !self.outstanding.is_empty() {
            return;
        }
        self.release(true);
        if let Err(e) = self.spool.rewind() {
            error!(error = %e, "rewinding the spool failed");
            return;
        }
        self.held = None;
        self.failed_min = None;
        debug!("spool rewound over undelivered events");
    }

    /// Hands spooled events to librdkafka; returns how many.
    fn drain(&mut self) -> usize {
        if self.failed_min.is_some() {
            return 0;
        }
        let limit = if self.healthy {
            DRAIN_IN_FLIGHT
        } else if self.outstanding.is_empty()
            && self.producer.in_flight_count() == 0
            && Instant::now() >= self.probe_after
        {
            // One probe event finds out when the broker is back.
            1
        } else {
            0
        };
        let m = self.shared.metrics.clone();
        let mut n = 0;
        while self.outstanding.len() < limit && n < DRAIN_BATCH {
            let (pos, rec) = match self.held.take() {
                Some(h) => h,
                None => match self.spool.read_next() {
                    Ok(Some(x)) => x,
                    Ok(None) => break,
                    Err(e) => {
                        let (log, _) = DROP_LOG.tick();
                        if log {
                            error!(error = %e, "reading the spool failed");
                        }
                        break;
                    }
                },
            };
            let seq = self.next_seq;
            let mut headers = OwnedHeaders::new_with_capacity(rec.headers.len());
            for (k, v) in &rec.headers {
                headers = headers.insert(Header {
                    key: k.as_str(),
                    value: Some(v.as_slice()),
                });
            }
            let record = BaseRecord::with_opaque_to(&self.cfg.events_topic, seq as usize)
                .key(rec.key.as_slice())
                .payload(rec.value.as_slice())
                .headers(headers);
            match self.producer.send(record) {
                Ok(()) => {
                    self.next_seq += 1;
                    self.outstanding.insert(seq, pos);
                    m.events_enqueued.fetch_add(1, Ordering::Relaxed);
                    m.events_replayed.fetch_add(1, Ordering::Relaxed);
                    n += 1;
                }
                Err((e, _)) => {
                    let code = e.rdkafka_error_code().unwrap_or(RDKafkaErrorCode::Unknown);
                    if classify(code) == ErrorClass::Rejected {
                        m.produce_error(ErrorLabel::Rejected);
                        m.dropped(DropCause::Rejected, 1);
                        continue;
                    }
                    self.held = Some((pos, rec));
                    break;
                }
            }
        }
        let damage = self.spool.damage().corrupt_regions;
        if damage > self.damage_counted {
            m.dropped(DropCause::SpoolCorrupt, damage - self.damage_counted);
            self.damage_counted = damage;
        }
        n
    }

    /// The position before which every spool record is delivered.
    fn release_target(&self) -> Position {
        let mut t = self.spool.read_position();
        if let Some((_, p)) = self.outstanding.first_key_value() {
            t = t.min(*p);
        }
        if let Some((p, _)) = &self.held {
            t = t.min(*p);
        }
        if let Some(p) = self.failed_min {
            t = t.min(p);
        }
        t
    }

    fn release(&mut self, force: bool) {
        if !force && self.last_release.elapsed() < RELEASE_INTERVAL {
            return;
        }
        self.last_release = Instant::now();
        let target = self.release_target();
        if let Err(e) = self.spool.release(target) {
            error!(error = %e, "saving the spool cursor failed");
        }
    }

    fn maybe_sync(&mut self) {
        let every = self.cfg.spool.fsync_interval_ms;
        if self.last_sync.elapsed() < Duration::from_millis(every.max(50)) {
            return;
        }
        self.last_sync = Instant::now();
        let r = if every == 0 {
            self.spool.flush()
        } else {
            self.spool.sync()
        };
        if let Err(e) = r {
            error!(error = %e, "flushing the spool failed");
        }
    }

    fn update_mode(&mut self) {
        let s = &self.shared;
        let want = !self.healthy
            || !self.spool.is_drained()
            || self.held.is_some()
            || self.failed_min.is_some()
            || s.backlog_events.load(Ordering::Acquire) > 0;
        if want {
            if !s.spooling.swap(true, Ordering::AcqRel) {
                debug!("spooling new events");
            }
        } else if s.spooling.load(Ordering::Acquire) {
            let _mode = s.mode();
            if s.backlog_events.load(Ordering::Acquire) == 0 {
                s.spooling.store(false, Ordering::Release);
                info!("spool drained: events go to kafka directly again");
            }
        }
    }

    fn publish_gauges(&self) {
        let m = &self.shared.metrics;
        m.spool_bytes.store(self.spool.bytes(), Ordering::Relaxed);
        let pending =
            self.spool.unread() + self.outstanding.len() as u64 + u64::from(self.held.is_some());
        m.spool_events.store(pending, Ordering::Relaxed);
        m.spooling.store(
            u64::from(self.shared.spooling.load(Ordering::Relaxed)),
            Ordering::Relaxed,
        );
    }

    fn shutdown(mut self) -> CloseReport {
        // Everything the capture loop handed over goes to the spool first.
        while let Ok(p) = self.rx.try_recv() {
            self.append(p);
        }
        let producer = self.producer.clone();
        let salvaged = self.salvage(&producer);
        self.release(true);
        if let Err(e) = self.spool.sync() {
            error!(error = %e, "syncing the spool on shutdown failed");
        }
        self.update_mode();
        self.publish_gauges();
        let m = &self.shared.metrics;
        let report = CloseReport {
            delivered: BusMetrics::get(&m.events_delivered),
            left_in_spool: self.spool.unread(),
            dropped: m.dropped_all(),
        };
        info!(
            delivered = report.delivered,
            left_in_spool = report.left_in_spool,
            salvaged_from_queue = salvaged,
            dropped = report.dropped,
            "kafka event producer stopped"
        );
        report
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use apitap_schema::test_support::{DEFAULT_START_US, EventBuilder};

    /// Issue 22: a spool that could not be opened is opened again once its directory is
    /// usable, and the gauge says so (the retry is due at once here instead of 30 s).
    #[test]
    fn an_unavailable_spool_is_reopened_when_its_directory_is_usable() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("blocked");
        std::fs::write(&blocker, b"not a directory").unwrap();
        let metrics = Arc::new(BusMetrics::default());
        let limits = SpoolLimits {
            max_bytes: 1 << 20,
            segment_bytes: 64 << 10,
            on_full: crate::config::SpoolFullPolicy::DropOldest,
        };
        let mut slot = SpoolSlot::open(&blocker.join("spool"), limits, &metrics);
        assert!(matches!(slot.get(), Err(SpoolError::Unavailable(_))));
        assert_eq!(BusMetrics::get(&metrics.spool_unavailable), 1);
        assert_eq!(BusMetrics::get(&metrics.spool_open_failures), 1);
        // Not due yet: no new attempt, no new failure counted.
        assert!(slot.get().is_err());
        assert_eq!(BusMetrics::get(&metrics.spool_open_failures), 1);
        // The operator fixes the directory; at the next due attempt the spool opens.
        std::fs::remove_file(&blocker).unwrap();
        slot.retry_at = Instant::now();
        let spool = slot.get().expect("reopened");
        assert!(spool.is_drained());
        assert_eq!(BusMetrics::get(&metrics.spool_unavailable), 0);
        assert_eq!(BusMetrics::get(&metrics.spool_open_failures), 1);
    }

    /// Event number `i` (its id and connection id, request time `DEFAULT_START_US + i`)
    /// from `client` to `10.0.0.1:8080`: `GET /api/v1/users/{i}`, no `Host`, no response.
    pub(crate) fn event(i: u64, client: &str) -> ApiEvent {
        EventBuilder::get(format!("/api/v1/users/{i}"))
            .id(i)
            .at_us(DEFAULT_START_US + i)
            .client(client)
            .client_port(40000 + (i % 1000) as u16)
            .no_host()
            .no_response()
            .build()
    }

    #[test]
    fn key_groups_a_clients_traffic_to_one_service_whatever_its_port() {
        let mut a = String::new();
        let mut b = String::new();
        event_key(&event(1, "10.9.0.1"), &mut a);
        event_key(&event(2, "10.9.0.1"), &mut b);
        assert_eq!(a, b, "client port must not change the key");
        assert_eq!(a, "10.9.0.1|10.0.0.1|8080");
        event_key(&event(3, "10.9.0.2"), &mut b);
        assert_ne!(a, b);
        event_key(&event(3, "2001:db8::7"), &mut b);
        assert_eq!(b, "2001:db8::7|10.0.0.1|8080");
    }
}
