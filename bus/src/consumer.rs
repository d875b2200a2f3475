//! The analyzer side of the bus (R-BUS-1, R-OPS-1): an [`EventConsumer`] over a transport
//! (Kafka consumer group, or the in-memory channel of the embedded mode), with the same
//! decoding, rejection, deduplication and acknowledgment logic for both.
//!
//! ## Contract (at-least-once)
//!
//! - [`EventSource::poll`] returns the next event with an [`AckToken`]. Messages that are not
//!   valid events of a readable schema version (garbage, truncated JSON, unknown major version)
//!   are counted by cause in `apitap_bus_rejected_messages_total{cause}`, logged with partition,
//!   offset, cause and size only (never content, R-OPS-3), and skipped; the consumer keeps
//!   going. Events whose `event_id` was already handed out within the last
//!   `consumer.dedupe_window_events` events are skipped as duplicates
//!   (`apitap_bus_duplicate_events_total`).
//! - The caller calls [`EventSource::ack`] once the event's effects are durable (written to the
//!   inventory store, alerts delivered). Acknowledgments may come in any order.
//! - Offsets are committed per partition up to (not including) the lowest unacknowledged
//!   event: every `consumer.commit_interval_ms` from within `poll`, on [`EventSource::commit`],
//!   before partitions are revoked in a rebalance, and on [`EventSource::close`]. A consumer
//!   that dies re-reads from there: no event is skipped, some may be seen again.
//! - Skipped messages (rejected, duplicates) are acknowledged internally.
//! - Memory is bounded: the dedupe window by its size, unacknowledged events by
//!   `consumer.max_unacked_events` (the consumer pauses its partitions beyond it).

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use apitap_schema::{
    ApiEvent, EventEncoding, SCHEMA_MAJOR, SchemaError, decode_event, decode_event_msgpack,
};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tracing::{info, warn};

use crate::config::{ClientRole, ConsumerConfig, KafkaConfig};
use crate::kafka::{client_config, describe};
use crate::metrics::{BusMetrics, LogLimiter, RejectCause};
use crate::producer::{HEADER_CONTENT_TYPE, HEADER_SCHEMA_VERSION};
use crate::{BusError, EventSource};

/// Identifies one handed-out event for [`EventSource::ack`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AckToken {
    partition: i32,
    offset: i64,
    generation: u64,
}

impl AckToken {
    /// Partition the event was read from.
    pub fn partition(&self) -> i32 {
        self.partition
    }

    /// Its offset in that partition.
    pub fn offset(&self) -> i64 {
        self.offset
    }
}

/// An event handed to the caller.
#[derive(Debug, Clone)]
pub struct Received {
    /// The decoded event.
    pub event: ApiEvent,
    /// Pass to [`EventSource::ack`] once the event's effects are durable.
    pub ack: AckToken,
}

/// Told, from within [`EventSource::poll`] and before any event of the new assignment is
/// handed out (assignments after librdkafka's rebalance callback has returned, so that the
/// member goes on heartbeating while the hook reads state), when partitions move between the members of the consumer group (issue 18):
/// the analyzer checkpoints the detection state of revoked partitions before their new owner
/// reads it, and restores the state of assigned ones.
pub trait RebalanceHook: Send + Sync {
    /// `partitions` are now this consumer's.
    fn assigned(&self, partitions: &[i32]);
    /// `partitions` are being taken away (called before their offsets are committed).
    fn revoked(&self, partitions: &[i32]);
}

/// Where the consumer's callbacks find the hook.
type HookSlot = Arc<Mutex<Option<Arc<dyn RebalanceHook>>>>;

/// One message as a transport delivers it.
#[derive(Debug, Clone, Default)]
pub struct RawMessage {
    /// Partition (0 for the in-memory transport).
    pub partition: i32,
    /// Offset in the partition.
    pub offset: i64,
    /// The value, if any.
    pub payload: Option<Vec<u8>>,
    /// The `apitap-schema-version` header, if present.
    pub schema_header: Option<Vec<u8>>,
    /// The `content-type` header (the event's encoding), if present; absent means JSON.
    pub content_type: Option<Vec<u8>>,
}

/// A source of raw messages with committable positions.
pub trait Transport: Send {
    /// The next message, waiting at most `timeout`. `Err(BusError::Closed)` when the source
    /// has ended for good (the in-memory publisher is gone).
    fn recv(&mut self, timeout: Duration) -> Result<Option<RawMessage>, BusError>;
    /// Commits `(partition, next offset to read)` pairs.
    fn commit(&mut self, offsets: &[(i32, i64)], sync: bool) -> Result<(), BusError>;
    /// Stops (true) or resumes (false) fetching.
    fn pause(&mut self, paused: bool);
    /// Installs the rebalance hook; false when the transport has no rebalances.
    fn set_rebalance_hook(&mut self, _hook: Arc<dyn RebalanceHook>) -> bool {
        false
    }
}

/// Per-partition acknowledgment state.
#[derive(Debug, Default)]
struct PartitionState {
    generation: u64,
    outstanding: BTreeSet<i64>,
    /// One past the highest offset handed out.
    next: i64,
    /// Last offset sent in a commit.
    committed: i64,
}

/// Which positions may be committed, shared with the rebalance callback.
#[derive(Debug, Default)]
pub(crate) struct Tracker {
    partitions: HashMap<i32, PartitionState>,
    generation: u64,
    unacked: usize,
}

impl Tracker {
    fn polled(&mut self, partition: i32, offset: i64) -> AckToken {
        let generation = self.generation;
        let st = self
            .partitions
            .entry(partition)
            .or_insert_with(|| PartitionState {
                generation,
                committed: -1,
                ..Default::default()
            });
        if st.outstanding.insert(offset) {
            self.unacked += 1;
        }
        st.next = st.next.max(offset + 1);
        AckToken {
            partition,
            offset,
            generation: st.generation,
        }
    }

    fn ack(&mut self, t: AckToken) {
        if let Some(st) = self.partitions.get_mut(&t.partition)
            && st.generation == t.generation
            && st.outstanding.remove(&t.offset)
        {
            self.unacked -= 1;
        }
    }

    fn committable_of(st: &PartitionState) -> Option<i64> {
        let upto = st.outstanding.first().copied().unwrap_or(st.next);
        (upto > st.committed && upto > 0).then_some(upto)
    }

    /// `(partition, offset)` pairs that advanced since the last commit.
    fn committable(&self) -> Vec<(i32, i64)> {
        let mut v: Vec<(i32, i64)> = self
            .partitions
            .iter()
            .filter_map(|(p, st)| Self::committable_of(st).map(|o| (*p, o)))
            .collect();
        v.sort_unstable();
        v
    }

    fn mark_committed(&mut self, offsets: &[(i32, i64)]) {
        for (p, o) in offsets {
            if let Some(st) = self.partitions.get_mut(p) {
                st.committed = st.committed.max(*o);
            }
        }
    }

    fn commit_failed(&mut self, offsets: &[(i32, i64)]) {
        for (p, o) in offsets {
            if let Some(st) = self.partitions.get_mut(p)
                && st.committed == *o
            {
                st.committed = -1;
            }
        }
    }

    /// Forgets `partitions` (revoked); returns what may still be committed for them.
    fn revoke(&mut self, partitions: &[i32]) -> Vec<(i32, i64)> {
        let mut out = Vec::new();
        for p in partitions {
            if let Some(st) = self.partitions.remove(p) {
                if let Some(o) = Self::committable_of(&st) {
                    out.push((*p, o));
                }
                self.unacked -= st.outstanding.len();
            }
        }
        // Tokens handed out before the revocation are ignored from now on.
        self.generation += 1;
        out
    }
}

fn lock(t: &Mutex<Tracker>) -> MutexGuard<'_, Tracker> {
    t.lock().unwrap_or_else(|e| e.into_inner())
}

/// Remembers the last `cap` event ids handed out.
#[derive(Debug)]
pub(crate) struct DedupeWindow {
    set: HashSet<u128>,
    order: VecDeque<u128>,
    cap: usize,
}

impl DedupeWindow {
    pub(crate) fn new(cap: usize) -> Self {
        DedupeWindow {
            set: HashSet::with_capacity(cap.min(1 << 20)),
            order: VecDeque::with_capacity(cap.min(1 << 20)),
            cap: cap.max(1),
        }
    }

    fn id_of(event_id: &str) -> u128 {
        if event_id.len() == 32
            && let Ok(v) = u128::from_str_radix(event_id, 16)
        {
            return v;
        }
        let mut h = std::collections::hash_map::DefaultHasher::new();
        event_id.hash(&mut h);
        u128::from(h.finish()) | (1 << 127)
    }

    /// True when `event_id` is new (and remembers it).
    pub(crate) fn insert(&mut self, event_id: &str) -> bool {
        let id = Self::id_of(event_id);
        if !self.set.insert(id) {
            return false;
        }
        self.order.push_back(id);
        if self.order.len() > self.cap
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        true
    }
}

static REJECT_LOG: LogLimiter = LogLimiter::new(20, 1000);
static ERROR_LOG: LogLimiter = LogLimiter::new(20, 100);

/// Why a message is not an event, by cause; no content involved.
pub fn check_message(raw: &RawMessage, max_bytes: usize) -> Result<ApiEvent, RejectCause> {
    let payload = match &raw.payload {
        Some(p) if !p.is_empty() => p,
        _ => return Err(RejectCause::Empty),
    };
    if payload.len() > max_bytes {
        return Err(RejectCause::TooLarge);
    }
    if let Some(h) = &raw.schema_header {
        let major = std::str::from_utf8(h)
            .ok()
            .and_then(|v| v.split('.').next())
            .and_then(|m| m.parse::<u32>().ok());
        if major != Some(SCHEMA_MAJOR) {
            return Err(RejectCause::UnsupportedVersion);
        }
    }
    let encoding = match &raw.content_type {
        None => EventEncoding::Json,
        Some(v) => EventEncoding::from_content_type(v).ok_or(RejectCause::UnknownEncoding)?,
    };
    if encoding == EventEncoding::Msgpack {
        return decode_event_msgpack(payload).map_err(|e| match e {
            SchemaError::UnsupportedVersion { .. } => RejectCause::UnsupportedVersion,
            SchemaError::Malformed(m) if m.starts_with("wrong field type") => {
                RejectCause::InvalidEvent
            }
            SchemaError::Malformed(_) => RejectCause::NotMsgpack,
            _ => RejectCause::InvalidEvent,
        });
    }
    decode_event(payload).map_err(|e| match e {
        SchemaError::UnsupportedVersion { .. } => RejectCause::UnsupportedVersion,
        SchemaError::Malformed(m) if m.starts_with("truncated") => RejectCause::TruncatedJson,
        SchemaError::Malformed(m) if m.starts_with("syntax") || m.starts_with("io") => {
            RejectCause::NotJson
        }
        _ => RejectCause::InvalidEvent,
    })
}

/// Decoding, dedupe and acknowledgment over any [`Transport`].
pub struct EventConsumer<T: Transport> {
    transport: T,
    tracker: Arc<Mutex<Tracker>>,
    dedupe: DedupeWindow,
    metrics: Arc<BusMetrics>,
    cfg: ConsumerConfig,
    last_commit: Instant,
    paused: bool,
}

impl<T: Transport> EventConsumer<T> {
    pub(crate) fn with_transport(
        transport: T,
        tracker: Arc<Mutex<Tracker>>,
        cfg: &ConsumerConfig,
        metrics: Arc<BusMetrics>,
    ) -> Self {
        EventConsumer {
            transport,
            tracker,
            dedupe: DedupeWindow::new(cfg.dedupe_window_events),
            metrics,
            cfg: cfg.clone(),
            last_commit: Instant::now(),
            paused: false,
        }
    }

    /// The transport (tests and tools).
    pub fn transport(&self) -> &T {
        &self.transport
    }

    fn flow_control(&mut self) {
        let unacked = lock(&self.tracker).unacked;
        self.metrics
            .unacked_events
            .store(unacked as u64, Ordering::Relaxed);
        let max = self.cfg.max_unacked_events;
        if !self.paused && unacked >= max {
            warn!(
                unacked,
                "kafka.consumer.max_unacked_events reached: pausing until events are acknowledged"
            );
            self.transport.pause(true);
            self.paused = true;
        } else if self.paused && unacked < max / 2 + 1 {
            self.transport.pause(false);
            self.paused = false;
        } else if self.paused {
            // New partitions may have been assigned since: keep them paused too.
            self.transport.pause(true);
        }
    }

    fn commit_inner(&mut self, sync: bool) -> Result<(), BusError> {
        self.last_commit = Instant::now();
        let offsets = lock(&self.tracker).committable();
        if offsets.is_empty() {
            return Ok(());
        }
        lock(&self.tracker).mark_committed(&offsets);
        match self.transport.commit(&offsets, sync) {
            Ok(()) => {
                self.metrics.commits.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                self.metrics.commit_errors.fetch_add(1, Ordering::Relaxed);
                lock(&self.tracker).commit_failed(&offsets);
                Err(e)
            }
        }
    }
}

impl<T: Transport> EventSource for EventConsumer<T> {
    fn poll(&mut self, timeout: Duration) -> Result<Option<Received>, BusError> {
        let deadline = Instant::now() + timeout;
        loop {
            let interval = self.cfg.commit_interval_ms;
            if interval > 0
                && self.last_commit.elapsed() >= Duration::from_millis(interval)
                && let Err(e) = self.commit_inner(false)
            {
                let (log, n) = ERROR_LOG.tick();
                if log {
                    warn!(error = %e, occurrence = n, "offset commit failed; retried at the next interval");
                }
            }
            self.flow_control();
            let remaining = deadline.saturating_duration_since(Instant::now());
            let Some(raw) = self.transport.recv(remaining)? else {
                return Ok(None);
            };
            self.metrics
                .messages_received
                .fetch_add(1, Ordering::Relaxed);
            let token = lock(&self.tracker).polled(raw.partition, raw.offset);
            match check_message(&raw, self.cfg.max_message_bytes) {
                Ok(event) => {
                    if self.dedupe.insert(&event.event_id) {
                        self.metrics.events_consumed.fetch_add(1, Ordering::Relaxed);
                        return Ok(Some(Received { event, ack: token }));
                    }
                    self.metrics
                        .duplicate_events
                        .fetch_add(1, Ordering::Relaxed);
                    lock(&self.tracker).ack(token);
                }
                Err(cause) => {
                    self.metrics.rejected(cause);
                    lock(&self.tracker).ack(token);
                    let (log, n) = REJECT_LOG.tick();
                    if log {
                        // Position, cause and size only: the payload may carry sensitive data.
                        warn!(
                            partition = raw.partition,
                            offset = raw.offset,
                            cause = cause.as_str(),
                            bytes = raw.payload.as_ref().map_or(0, Vec::len),
                            rejected = n,
                            "message on the events topic is not a readable event; skipped (counted)"
                        );
                    }
                }
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
        }
    }

    fn ack(&mut self, token: AckToken) {
        lock(&self.tracker).ack(token);
    }

    fn set_rebalance_hook(&mut self, hook: Arc<dyn RebalanceHook>) -> bool {
        self.transport.set_rebalance_hook(hook)
    }

    fn commit(&mut self) -> Result<(), BusError> {
        self.commit_inner(true)
    }

    fn close(&mut self) -> Result<(), BusError> {
        self.commit_inner(true)
    }

    fn metrics(&self) -> Arc<BusMetrics> {
        self.metrics.clone()
    }
}

/// librdkafka callbacks of the consumer: commits acknowledged offsets before partitions are
/// revoked, counts rebalances and errors.
pub struct ConsumerCtx {
    tracker: Arc<Mutex<Tracker>>,
    metrics: Arc<BusMetrics>,
    hook: HookSlot,
    /// Partitions assigned whose hook has not run yet: it runs from [`Transport::recv`],
    /// after librdkafka's rebalance callback has returned.
    pending_assign: Mutex<BTreeSet<i32>>,
    /// Whether `pending_assign` may hold partitions: the poll of every message looks at this
    /// flag only, not at the locks.
    assign_due: AtomicBool,
}

impl ConsumerCtx {
    fn new(tracker: Arc<Mutex<Tracker>>, metrics: Arc<BusMetrics>) -> ConsumerCtx {
        ConsumerCtx {
            tracker,
            metrics,
            hook: HookSlot::default(),
            pending_assign: Mutex::new(BTreeSet::new()),
            assign_due: AtomicBool::new(false),
        }
    }

    fn hook(&self) -> Option<Arc<dyn RebalanceHook>> {
        self.hook
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn pending(&self) -> MutexGuard<'_, BTreeSet<i32>> {
        self.pending_assign
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs the hook of the partitions assigned since the last call (the restore of their
    /// state reads the state topic: seconds, during which librdkafka, back in its steady
    /// state, goes on heartbeating — inside the rebalance callback it does not, and a broker
    /// with a short session timeout expels the member and rebalances again).
    fn run_assigned(&self) {
        if !self.assign_due.load(Ordering::Acquire) {
            return;
        }
        let Some(hook) = self.hook() else {
            return;
        };
        self.assign_due.store(false, Ordering::Release);
        let parts: Vec<i32> = std::mem::take(&mut *self.pending()).into_iter().collect();
        if !parts.is_empty() {
            hook.assigned(&parts);
        }
    }
}

impl ClientContext for ConsumerCtx {
    fn error(&self, error: KafkaError, reason: &str) {
        self.metrics.consume_errors.fetch_add(1, Ordering::Relaxed);
        let (log, n) = ERROR_LOG.tick();
        if log {
            warn!(error = %describe(&error), reason, occurrence = n, "kafka consumer");
        }
    }
}

impl ConsumerContext for ConsumerCtx {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        self.metrics.rebalances.fetch_add(1, Ordering::Relaxed);
        match rebalance {
            Rebalance::Revoke(tpl) => {
                let parts: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
                info!(partitions = ?parts, "kafka partitions revoked");
                self.pending().retain(|p| !parts.contains(p));
                if let Some(hook) = self.hook() {
                    hook.revoked(&parts);
                }
                let offsets = lock(&self.tracker).revoke(&parts);
                if offsets.is_empty() {
                    return;
                }
                let topic = tpl
                    .elements()
                    .first()
                    .map(|e| e.topic().to_owned())
                    .unwrap_or_default();
                match offsets_tpl(&topic, &offsets) {
                    Ok(list) => {
                        if let Err(e) = consumer.commit(&list, CommitMode::Sync) {
                            self.metrics.commit_errors.fetch_add(1, Ordering::Relaxed);
                            warn!(error = %describe(&e), "committing before revocation failed; those events will be read again");
                        } else {
                            self.metrics.commits.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Err(e) => warn!(error = %e, "building the commit list failed"),
                }
            }
            Rebalance::Assign(tpl) => {
                let parts: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
                info!(partitions = ?parts, "kafka partitions assigned");
                self.pending().extend(parts);
                self.assign_due.store(true, Ordering::Release);
            }
            Rebalance::Error(e) => {
                warn!(error = %describe(e), "kafka rebalance error");
            }
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        if let Err(e) = result {
            // Rebalances make commits of revoked partitions fail; they are read again.
            if e.rdkafka_error_code() == Some(RDKafkaErrorCode::NoOffset) {
                return;
            }
            self.metrics.commit_errors.fetch_add(1, Ordering::Relaxed);
            let failed: Vec<(i32, i64)> = offsets
                .elements()
                .iter()
                .filter_map(|e| match e.offset() {
                    Offset::Offset(o) => Some((e.partition(), o)),
                    _ => None,
                })
                .collect();
            lock(&self.tracker).commit_failed(&failed);
            let (log, n) = ERROR_LOG.tick();
            if log {
                warn!(error = %describe(&e), occurrence = n, "offset commit failed; retried at the next interval");
            }
        }
    }
}

fn offsets_tpl(topic: &str, offsets: &[(i32, i64)]) -> Result<TopicPartitionList, BusError> {
    let mut list = TopicPartitionList::with_capacity(offsets.len());
    for (p, o) in offsets {
        list.add_partition_offset(topic, *p, Offset::Offset(*o))
            .map_err(|e| BusError::kafka("building the commit list", &e))?;
    }
    Ok(list)
}

/// The Kafka consumer-group transport.
pub struct KafkaTransport {
    consumer: BaseConsumer<ConsumerCtx>,
    topic: String,
    metrics: Arc<BusMetrics>,
}

impl KafkaTransport {
    /// Partitions currently assigned to this consumer.
    pub fn assignment(&self) -> Vec<i32> {
        self.consumer
            .assignment()
            .map(|t| t.elements().iter().map(|e| e.partition()).collect())
            .unwrap_or_default()
    }
}

impl Transport for KafkaTransport {
    fn recv(&mut self, timeout: Duration) -> Result<Option<RawMessage>, BusError> {
        let polled = self.consumer.poll(timeout);
        // Before any message of a new assignment is handed out.
        self.consumer.context().run_assigned();
        match polled {
            None => Ok(None),
            Some(Ok(m)) => {
                let header = |name: &str| {
                    m.headers().and_then(|h| {
                        h.iter()
                            .find(|x| x.key == name)
                            .and_then(|x| x.value.map(<[u8]>::to_vec))
                    })
                };
                Ok(Some(RawMessage {
                    partition: m.partition(),
                    offset: m.offset(),
                    payload: m.payload().map(<[u8]>::to_vec),
                    schema_header: header(HEADER_SCHEMA_VERSION),
                    content_type: header(HEADER_CONTENT_TYPE),
                }))
            }
            Some(Err(e)) => {
                if e.rdkafka_error_code() == Some(RDKafkaErrorCode::Fatal) {
                    return Err(BusError::kafka("consuming", &e));
                }
                self.metrics.consume_errors.fetch_add(1, Ordering::Relaxed);
                let (log, n) = ERROR_LOG.tick();
                if log {
                    warn!(error = %describe(&e), occurrence = n, "kafka consume error; continuing");
                }
                Ok(None)
            }
        }
    }

    fn commit(&mut self, offsets: &[(i32, i64)], sync: bool) -> Result<(), BusError> {
        let list = offsets_tpl(&self.topic, offsets)?;
        let mode = if sync {
            CommitMode::Sync
        } else {
            CommitMode::Async
        };
        self.consumer
            .commit(&list, mode)
            .map_err(|e| BusError::kafka("committing offsets", &e))
    }

    fn set_rebalance_hook(&mut self, hook: Arc<dyn RebalanceHook>) -> bool {
        *self
            .consumer
            .context()
            .hook
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(hook);
        true
    }

    fn pause(&mut self, paused: bool) {
        let Ok(assigned) = self.consumer.assignment() else {
            return;
        };
        let r = if paused {
            self.consumer.pause(&assigned)
        } else {
            self.consumer.resume(&assigned)
        };
        if let Err(e) = r {
            warn!(error = %describe(&e), "pausing/resuming partitions failed");
        }
    }
}

impl KafkaTransport {
    /// A raw consumer of `topic` in the consumer group `group` (the brokers and security of
    /// `cfg`): the analyzer's stage 2 reads the partial aggregates with it (issue 18). The
    /// caller commits what it processed ([`Transport::commit`]); a revocation calls the
    /// hook and commits nothing itself.
    pub fn subscribe(
        cfg: &KafkaConfig,
        topic: &str,
        group: &str,
        metrics: Arc<BusMetrics>,
    ) -> Result<KafkaTransport, BusError> {
        let mut cfg = cfg.clone();
        cfg.consumer.group_id = group.to_owned();
        cfg.validate()?;
        let ctx = ConsumerCtx::new(Arc::new(Mutex::new(Tracker::default())), metrics.clone());
        let consumer: BaseConsumer<ConsumerCtx> = client_config(&cfg, ClientRole::Consumer)?
            .create_with_context(ctx)
            .map_err(|e| BusError::kafka("creating a consumer", &e))?;
        consumer
            .subscribe(&[topic])
            .map_err(|e| BusError::kafka("subscribing", &e))?;
        info!(topic, group, "kafka consumer started");
        Ok(KafkaTransport {
            consumer,
            topic: topic.to_owned(),
            metrics,
        })
    }
}

/// The Kafka implementation of [`EventSource`].
pub type KafkaEventConsumer = EventConsumer<KafkaTransport>;

impl EventConsumer<KafkaTransport> {
    /// Joins the consumer group `consumer.group_id` and subscribes to the events topic.
    /// Connecting happens in the background.
    pub fn kafka(
        cfg: &KafkaConfig,
        metrics: Arc<BusMetrics>,
    ) -> Result<KafkaEventConsumer, BusError> {
        cfg.validate()?;
        let tracker = Arc::new(Mutex::new(Tracker::default()));
        let ctx = ConsumerCtx::new(tracker.clone(), metrics.clone());
        let consumer: BaseConsumer<ConsumerCtx> = client_config(cfg, ClientRole::Consumer)?
            .create_with_context(ctx)
            .map_err(|e| BusError::kafka("creating the event consumer", &e))?;
        consumer
            .subscribe(&[cfg.events_topic.as_str()])
            .map_err(|e| BusError::kafka("subscribing to the events topic", &e))?;
        info!(
            brokers = ?cfg.brokers,
            topic = %cfg.events_topic,
            group = %cfg.consumer.group_id,
            "kafka event consumer started"
        );
        Ok(EventConsumer::with_transport(
            KafkaTransport {
                consumer,
                topic: cfg.events_topic.clone(),
                metrics: metrics.clone(),
            },
            tracker,
            &cfg.consumer,
            metrics,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_position_is_the_lowest_unacknowledged_offset() {
        let mut t = Tracker::default();
        let a = t.polled(0, 10);
        let b = t.polled(0, 11);
        let c = t.polled(0, 12);
        let d = t.polled(1, 5);
        assert_eq!(t.committable(), vec![(0, 10), (1, 5)]);
        t.ack(b);
        t.ack(c);
        assert_eq!(t.committable(), vec![(0, 10), (1, 5)], "10 still pending");
        t.ack(a);
        t.ack(d);
        assert_eq!(t.committable(), vec![(0, 13), (1, 6)]);
        t.mark_committed(&[(0, 13), (1, 6)]);
        assert!(t.committable().is_empty());
        assert_eq!(t.unacked, 0);
    }

    #[test]
    fn revocation_forgets_partitions_and_ignores_stale_tokens() {
        let mut t = Tracker::default();
        let a = t.polled(0, 1);
        let _b = t.polled(0, 2);
        t.ack(a);
        assert_eq!(t.revoke(&[0]), vec![(0, 2)]);
        assert_eq!(t.unacked, 0);
        let again = t.polled(0, 2);
        t.ack(a); // stale: ignored
        assert_eq!(t.committable(), vec![(0, 2)]);
        t.ack(again);
        assert_eq!(t.committable(), vec![(0, 3)]);
    }

    #[test]
    fn dedupe_window_is_bounded() {
        let mut w = DedupeWindow::new(3);
        for i in 0..3 {
            assert!(w.insert(&format!("{i:032x}")));
        }
        assert!(!w.insert(&format!("{:032x}", 1)));
        assert!(w.insert(&format!("{:032x}", 3)));
        // 0 fell out of the window.
        assert!(w.insert(&format!("{:032x}", 0)));
        assert!(w.set.len() <= 3 && w.order.len() <= 3);
        assert!(w.insert("not-hex"));
        assert!(!w.insert("not-hex"));
    }

    #[test]
    fn bad_messages_are_classified_by_cause() {
        let ev = crate::producer::tests::event(1, "10.0.0.9");
        let good = apitap_schema::encode_event(&ev);
        let raw = |p: &[u8], h: Option<&str>| RawMessage {
            partition: 0,
            offset: 0,
            payload: Some(p.to_vec()),
            schema_header: h.map(|s| s.as_bytes().to_vec()),
            content_type: None,
        };
        assert!(check_message(&raw(&good, Some("1.1")), 1 << 20).is_ok());
        assert!(check_message(&raw(&good, None), 1 << 20).is_ok());
        let cases: Vec<(RawMessage, RejectCause)> = vec![
            (RawMessage::default(), RejectCause::Empty),
            (raw(b"\x00\xff garbage", None), RejectCause::NotJson),
            (
                raw(&good[..good.len() / 2], None),
                RejectCause::TruncatedJson,
            ),
            (raw(&good, Some("2.0")), RejectCause::UnsupportedVersion),
            (
                raw(
                    &String::from_utf8(good.clone())
                        .unwrap()
                        .replace(
                            &format!("\"schema_version\":\"{}\"", apitap_schema::SCHEMA_VERSION),
                            "\"schema_version\":\"7.0\"",
                        )
                        .into_bytes(),
                    None,
                ),
                RejectCause::UnsupportedVersion,
            ),
            (
                raw(b"{\"schema_version\":\"1.0\"}", None),
                RejectCause::InvalidEvent,
            ),
            (raw(&good, None), RejectCause::TooLarge),
        ];
        for (i, (m, want)) in cases.into_iter().enumerate() {
            let max = if want == RejectCause::TooLarge {
                10
            } else {
                1 << 20
            };
            assert_eq!(check_message(&m, max).unwrap_err(), want, "case {i}");
        }

        // MessagePack, named by its content-type header (issue 21).
        let mut packed = Vec::new();
        apitap_schema::encode_event_msgpack_into(&ev, &mut packed);
        let typed = |p: &[u8], ct: &str| RawMessage {
            partition: 0,
            offset: 0,
            payload: Some(p.to_vec()),
            schema_header: Some(apitap_schema::SCHEMA_VERSION.as_bytes().to_vec()),
            content_type: Some(ct.as_bytes().to_vec()),
        };
        let msgpack = EventEncoding::Msgpack.content_type();
        assert_eq!(
            check_message(&typed(&packed, msgpack), 1 << 20).unwrap(),
            ev
        );
        assert!(check_message(&typed(&good, "application/json"), 1 << 20).is_ok());
        for (i, (m, want)) in [
            (
                typed(&packed[..packed.len() / 2], msgpack),
                RejectCause::NotMsgpack,
            ),
            (typed(b"\xc1\xc1\xc1", msgpack), RejectCause::NotMsgpack),
            (typed(&good, msgpack), RejectCause::NotMsgpack),
            (
                typed(&packed, "application/cbor"),
                RejectCause::UnknownEncoding,
            ),
            // Without the header a MessagePack payload is read as JSON, and is not JSON.
            (raw(&packed, None), RejectCause::NotJson),
        ]
        .into_iter()
        .enumerate()
        {
            assert_eq!(
                check_message(&m, 1 << 20).unwrap_err(),
                want,
                "msgpack case {i}"
            );
        }
    }
}
