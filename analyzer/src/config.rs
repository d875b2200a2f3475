//! The `run` service's TOML configuration (R-OPS-2).
//!
//! Every table rejects unknown fields, so a typo is an error rather than a silently ignored
//! setting, and errors name the offending field (`output.summary_interval_secs`) and line
//! without quoting the file's content. `deploy/config/analyzer.example.toml` documents every
//! field.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use apitap_bus::KafkaConfig;
use apitap_detect::{DetectConfig, DetectError};

use crate::ecs::AlertFormat;
use crate::error::Error;
use crate::inventory::InventoryConfig;
use crate::output::SummaryFormat;
use crate::reader::DEFAULT_MAX_LINE_BYTES;
use crate::summary::DEFAULT_MAX_ENDPOINTS;

/// The analyzer service configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Events from a JSON-lines file or standard input. Exactly one of `[input]` and `[kafka]`
    /// is required by `run`; the embedded single-process mode (`apitap`) takes neither.
    #[serde(default)]
    pub input: Option<InputConfig>,
    /// Events from the Kafka events topic as consumer group `kafka.consumer.group_id`, alerts
    /// to `kafka.alerts_topic` (R-BUS-1, R-BUS-3, R-OPS-1; fields in `apitap_bus::config`).
    #[serde(default)]
    pub kafka: Option<KafkaConfig>,
    /// Where the summary and alerts go.
    #[serde(default)]
    pub output: OutputConfig,
    /// Limits of the in-memory per-endpoint summary.
    #[serde(default)]
    pub summary: SummaryConfig,
    /// How each event is taken in: clock skew allowed, and where events that fail go.
    #[serde(default)]
    pub ingest: IngestConfig,
    /// The API inventory (`docs/inventory.md`); off unless `inventory.store` is set.
    #[serde(default)]
    pub inventory: InventoryConfig,
    /// Sensitive-data labelling (`docs/sensitive-data.md`).
    #[serde(default)]
    pub labels: LabelsConfig,
    /// Prometheus metrics and health endpoint.
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// Threat detections (`docs/detections.md`): thresholds, baselines, trusted proxies,
    /// working hours, GeoIP, login outcome rules. Every field has a default.
    #[serde(default)]
    pub detect: DetectConfig,
    /// Trace-back store (`[trace]`, R-THR-6): one access record per transaction, for
    /// `apitap-analyzer trace` and `GET /v1/trace`.
    #[serde(default)]
    pub trace: TraceConfig,
    /// The web console (`[console]`, issue 20, `docs/console.md`): HTML pages on the inventory
    /// API's listener, behind its token.
    #[serde(default)]
    pub console: ConsoleConfig,
    /// Durable detection state (`[state]`, issue 18, `docs/scale-out.md`): open campaigns and
    /// baselines checkpointed to a compacted Kafka topic, restored on start and on partition
    /// assignment.
    #[serde(default)]
    pub state: StateConfig,
    /// Two-stage processing (`[scale_out]`, issue 18, `docs/scale-out.md`): the global
    /// detectors (distributed stuffing and crawling) run on merged partial aggregates, so that
    /// a consumer group of several analyzers raises what one analyzer would.
    #[serde(default)]
    pub scale_out: ScaleOutConfig,
}

/// `[scale_out]`: two-stage processing on Kafka (issue 18). Stage 1 (every analyzer, on its
/// events partitions) produces partial aggregates per global key to `partials_topic`; stage 2
/// (a second consumer group in the same processes) merges them, one owner per key, and raises
/// the distributed campaigns. Needs `[kafka]` and `[state]` (stage 2's campaigns are
/// checkpointed there as `g/…` records).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScaleOutConfig {
    /// Two-stage processing on; stage 1 then stops raising the `distributed` kinds itself.
    /// Default false.
    #[serde(default)]
    pub enabled: bool,
    /// The topic of partial aggregates (created when missing, delete policy). Default
    /// `apitap.analyzer-partials.v1`.
    #[serde(default = "default_partials_topic")]
    pub partials_topic: String,
    /// Partitions when the analyzer creates the partials topic: as many stage-2 owners as
    /// can share the global keys. Default 4.
    #[serde(default = "default_partials_partitions")]
    pub partials_partitions: i32,
    /// Replication factor when the analyzer creates the partials topic. Default 1.
    #[serde(default = "default_partials_replication")]
    pub topic_replication: i32,
    /// Stage 2's consumer group. Default: `kafka.consumer.group_id` + `-global`.
    #[serde(default)]
    pub group_id: Option<String>,
    /// Seconds of event time per partial slice (at most the shortest `window_secs` of
    /// `detect.credential_stuffing`, `crawling`, `abnormal_access` and `brute_force`).
    /// Default 10.
    #[serde(default = "default_slice_secs")]
    pub slice_secs: u64,
    /// Seconds after which a partial is counted late (`apitap_analyzer_partials_late_total`;
    /// still merged while inside its window). Default 20.
    #[serde(default = "default_grace_secs")]
    pub grace_secs: u64,
    /// Milliseconds producing a flush's partials may take (the events stay unacknowledged
    /// and the partials are retried when it fails). Default 10000.
    #[serde(default = "default_partials_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_partials_topic() -> String {
    "apitap.analyzer-partials.v1".into()
}
fn default_partials_partitions() -> i32 {
    4
}
fn default_partials_replication() -> i32 {
    1
}
fn default_slice_secs() -> u64 {
    10
}
fn default_grace_secs() -> u64 {
    20
}
fn default_partials_timeout_ms() -> u64 {
    10_000
}

impl Default for ScaleOutConfig {
    fn default() -> Self {
        ScaleOutConfig {
            enabled: false,
            partials_topic: default_partials_topic(),
            partials_partitions: default_partials_partitions(),
            topic_replication: default_partials_replication(),
            group_id: None,
            slice_secs: default_slice_secs(),
            grace_secs: default_grace_secs(),
            timeout_ms: default_partials_timeout_ms(),
        }
    }
}

impl ScaleOutConfig {
    fn validate(&self, kafka: bool, state: bool, window_secs: u64) -> Result<(), Error> {
        let bad = |field, reason| Err(Error::ConfigValue { field, reason });
        if self.partials_topic.is_empty() {
            return bad("scale_out.partials_topic", "must not be empty");
        }
        if self.partials_partitions < 1 {
            return bad("scale_out.partials_partitions", "must be at least 1");
        }
        if self.topic_replication < 1 {
            return bad("scale_out.topic_replication", "must be at least 1");
        }
        if self.group_id.as_deref().is_some_and(str::is_empty) {
            return bad("scale_out.group_id", "must not be empty");
        }
        if self.slice_secs == 0 || self.slice_secs > window_secs {
            return bad(
                "scale_out.slice_secs",
                "must be at least 1 and at most the shortest window_secs of detect.credential_stuffing, crawling, abnormal_access and brute_force",
            );
        }
        if self.timeout_ms == 0 {
            return bad("scale_out.timeout_ms", "must be at least 1");
        }
        if self.enabled && !kafka {
            return bad("scale_out.enabled", "needs the [kafka] event source");
        }
        if self.enabled && !state {
            return bad(
                "scale_out.enabled",
                "needs [state] (stage 2's campaigns are checkpointed there)",
            );
        }
        Ok(())
    }
}

/// `[state]`: checkpoints of the detection state (R-THR-5, issue 18) on a compacted topic of
/// the `[kafka]` brokers, so that a restarted or rebalanced consumer group keeps one Create
/// per campaign and its baselines.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    /// Checkpoint and restore the detection state. Needs `[kafka]` and
    /// `labels.hash_key_file` (campaign keys are keyed hashes: another key finds nothing).
    /// Default false.
    #[serde(default)]
    pub enabled: bool,
    /// The compacted topic (created with `cleanup.policy=compact` when missing). Default
    /// `apitap.analyzer-state.v1`.
    #[serde(default = "default_state_topic")]
    pub topic: String,
    /// Replication factor when the analyzer creates the topic (use 3 in production).
    /// Default 1.
    #[serde(default = "default_state_topic_replication")]
    pub topic_replication: i32,
    /// Seconds between two checkpoints of the baselines (campaigns are checkpointed at every
    /// inventory flush, before the events' offsets are committed, and on shutdown and
    /// revocation). Default 60.
    #[serde(default = "default_state_baseline_interval_secs")]
    pub baseline_interval_secs: u64,
    /// Milliseconds a checkpoint write or a restore read may take; a restore that does not
    /// reach the topic's end in time goes on with what it read (logged). Default 10000.
    #[serde(default = "default_state_timeout_ms")]
    pub timeout_ms: u64,
    /// Records a restore keeps at most (memory bound); further keys are dropped and counted
    /// in `apitap_detect_state_records_rejected_total{cause="over_limit"}`. Default 1000000.
    #[serde(default = "default_state_max_records")]
    pub max_records: usize,
}

fn default_state_topic() -> String {
    "apitap.analyzer-state.v1".into()
}
fn default_state_topic_replication() -> i32 {
    1
}
fn default_state_baseline_interval_secs() -> u64 {
    60
}
fn default_state_timeout_ms() -> u64 {
    10_000
}
fn default_state_max_records() -> usize {
    1_000_000
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            enabled: false,
            topic: default_state_topic(),
            topic_replication: default_state_topic_replication(),
            baseline_interval_secs: default_state_baseline_interval_secs(),
            timeout_ms: default_state_timeout_ms(),
            max_records: default_state_max_records(),
        }
    }
}

impl StateConfig {
    fn validate(&self, kafka: bool, hash_key: bool) -> Result<(), Error> {
        let bad = |field, reason| Err(Error::ConfigValue { field, reason });
        if self.topic.is_empty() {
            return bad("state.topic", "must not be empty");
        }
        if self.topic_replication < 1 {
            return bad("state.topic_replication", "must be at least 1");
        }
        if self.baseline_interval_secs == 0 {
            return bad("state.baseline_interval_secs", "must be at least 1");
        }
        if self.timeout_ms == 0 {
            return bad("state.timeout_ms", "must be at least 1");
        }
        if self.max_records == 0 {
            return bad("state.max_records", "must be at least 1");
        }
        if self.enabled && !kafka {
            return bad(
                "state.enabled",
                "the state topic needs the [kafka] event source",
            );
        }
        if self.enabled && !hash_key {
            return bad(
                "state.enabled",
                "needs labels.hash_key_file: campaign keys are keyed hashes",
            );
        }
        Ok(())
    }
}

/// `[console]`: the web console on `inventory.api_listen` (issue 20, R-INV-5, R-THR-6,
/// `docs/console.md`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleConfig {
    /// Serve the console under `/console` on `inventory.api_listen`. Needs
    /// `inventory.api_token_file` (logging in takes that token) or
    /// `inventory.api_client_ca_file` (mutual TLS: the certificate is the login; with both,
    /// both are needed). Default false.
    #[serde(default)]
    pub enabled: bool,
    /// Seconds a login session lasts (server-side, and the cookie's `Max-Age`). Default 3600.
    #[serde(default = "default_console_session_ttl_secs")]
    pub session_ttl_secs: u64,
    /// Sessions live at once at most; a login beyond ends the oldest. Default 32.
    #[serde(default = "default_console_max_sessions")]
    pub max_sessions: usize,
    /// Alerts kept in memory for the alerts page (the most recent; older ones are evicted
    /// and counted). Default 500.
    #[serde(default = "default_console_max_alerts")]
    pub max_alerts: usize,
    /// Endpoints with a traffic series (hits per hour, 48 hours, event time) at most; hits
    /// of further endpoints are counted, not kept. Default 4096.
    #[serde(default = "default_console_max_series_endpoints")]
    pub max_series_endpoints: usize,
    /// Mark the session cookie `Secure` (sent over HTTPS only): keep it true with
    /// `inventory.api_tls_cert_file` or a TLS proxy in front; false only for plain HTTP on
    /// loopback. Default true.
    #[serde(default = "default_true")]
    pub secure_cookie: bool,
    /// Failed logins one client address may make per minute; further attempts are
    /// answered `429` unread and counted (`apitap_console_logins_throttled_total`).
    /// Default 10.
    #[serde(default = "default_console_max_failed_logins_per_minute")]
    pub max_failed_logins_per_minute: u32,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        ConsoleConfig {
            enabled: false,
            session_ttl_secs: default_console_session_ttl_secs(),
            max_sessions: default_console_max_sessions(),
            max_alerts: default_console_max_alerts(),
            max_series_endpoints: default_console_max_series_endpoints(),
            secure_cookie: true,
            max_failed_logins_per_minute: default_console_max_failed_logins_per_minute(),
        }
    }
}

fn default_console_max_failed_logins_per_minute() -> u32 {
    10
}

fn default_console_session_ttl_secs() -> u64 {
    3600
}

fn default_console_max_sessions() -> usize {
    32
}

fn default_console_max_alerts() -> usize {
    500
}

fn default_console_max_series_endpoints() -> usize {
    4096
}

fn default_true() -> bool {
    true
}

impl ConsoleConfig {
    fn validate(&self, inventory: &InventoryConfig) -> Result<(), Error> {
        let bad = |field, reason| Err(Error::ConfigValue { field, reason });
        if !self.enabled {
            return Ok(());
        }
        if inventory.api_listen.is_none() || inventory.store.is_none() {
            return bad(
                "console.enabled",
                "the console is served on inventory.api_listen from inventory.store: set both",
            );
        }
        if inventory.api_token_file.is_none() && inventory.api_client_ca_file.is_none() {
            return bad(
                "console.enabled",
                "needs inventory.api_token_file (logging in takes that token) or \
                 inventory.api_client_ca_file (mutual TLS: the client certificate is the login)",
            );
        }
        if self.session_ttl_secs == 0 {
            return bad("console.session_ttl_secs", "must be at least 1");
        }
        if self.max_sessions == 0 {
            return bad("console.max_sessions", "must be at least 1");
        }
        if self.max_alerts == 0 {
            return bad("console.max_alerts", "must be at least 1");
        }
        if self.max_series_endpoints == 0 {
            return bad("console.max_series_endpoints", "must be at least 1");
        }
        if self.max_failed_logins_per_minute == 0 {
            return bad("console.max_failed_logins_per_minute", "must be at least 1");
        }
        Ok(())
    }
}

/// `[labels]`: sensitive-data labelling of every event.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelsConfig {
    /// File holding the site secret that keys the value hashes of findings, so that hashes
    /// correlate across restarts and analyzer instances. Absent: a random key per process
    /// (hashes do not correlate across restarts). The key is never logged.
    #[serde(default)]
    pub hash_key_file: Option<PathBuf>,
    /// Protobuf descriptor sets (`protoc --include_imports --descriptor_set_out=FILE`, a
    /// serialised `google.protobuf.FileDescriptorSet`) naming the fields of gRPC bodies in
    /// inventory shapes and label locations (issue 17): a call whose `service/method` one of
    /// them declares gets field names and types; anything else keeps field numbers. Read at
    /// start; a missing or invalid file stops the analyzer. Default: none.
    #[serde(default)]
    pub protobuf_descriptor_sets: Vec<PathBuf>,
}

/// `[metrics]`: the Prometheus endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Address serving `GET /metrics` (Prometheus text: `apitap_analyzer_*`,
    /// `apitap_inventory_*`, `apitap_detect_*`, `apitap_bus_*`) and `GET /healthz`; absent:
    /// no endpoint. Keep it on loopback or a management network (R-OPS-3).
    #[serde(default)]
    pub listen: Option<std::net::SocketAddr>,
    /// File holding a bearer token that `/metrics` then requires (`Authorization: Bearer
    /// <token>`, RFC 6750); `/healthz` stays open. Refused at start unless the file is its
    /// owner's alone (mode 0600 or stricter) and holds at least 16 bytes. Absent: no
    /// authentication. The token is never logged. TLS or mTLS: terminate them in a proxy in
    /// front (e.g. kube-rbac-proxy).
    #[serde(default)]
    pub token_file: Option<PathBuf>,
}

/// `[input]`: the event source.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputConfig {
    /// JSON-lines file of events, or `-` for standard input.
    pub path: PathBuf,
    /// Longest accepted line in bytes; longer lines are discarded as bad without being
    /// buffered. Default 16 MiB.
    #[serde(default = "default_max_line_bytes")]
    pub max_line_bytes: usize,
}

/// `[output]`: where results go.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputConfig {
    /// File for alert JSON lines, or `-` for standard output; absent: alerts are not written.
    /// Carries the inventory's change events (OCSF findings, `docs/inventory.md`); created
    /// (or truncated) at start.
    #[serde(default)]
    pub alerts_path: Option<PathBuf>,
    /// Alert document format on every alert output (file and Kafka topic): `ocsf` (default,
    /// OCSF 1.x findings) or `ecs` (the same findings mapped to Elastic Common Schema 8.x).
    #[serde(default)]
    pub alert_format: AlertFormat,
    /// File for the per-endpoint summary (replaced atomically on each write), or `-` for
    /// standard output (each summary appended). Default `-`.
    #[serde(default = "default_summary_path")]
    pub summary_path: PathBuf,
    /// `table` (aligned text, default) or `json` (one JSON array per summary).
    #[serde(default)]
    pub summary_format: SummaryFormat,
    /// Seconds between periodic summaries while running; 0 (default) writes only the final
    /// summary at end of input or on SIGINT/SIGTERM.
    #[serde(default)]
    pub summary_interval_secs: u64,
}

impl Default for OutputConfig {
    fn default() -> Self {
        OutputConfig {
            alerts_path: None,
            alert_format: AlertFormat::default(),
            summary_path: default_summary_path(),
            summary_format: SummaryFormat::default(),
            summary_interval_secs: 0,
        }
    }
}

/// `[ingest]`: guards around each event (issue 22).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestConfig {
    /// Seconds an event's time may be ahead of this host's clock. A later event is taken in
    /// with its times moved back to the clock plus this skew and counted
    /// (`apitap_analyzer_events_future_clamped_total`): one forged or mis-clocked event must
    /// not move the inventory's clock ahead and mark every endpoint inactive. Default 300.
    #[serde(default = "default_max_future_skew_secs")]
    pub max_future_skew_secs: u64,
    /// JSON-lines file (created 0600, appended) for events whose analysis failed (a bug hit
    /// by that event): each is skipped, counted (`apitap_analyzer_events_failed_total`) and
    /// written here for the developers, instead of crash-looping the analyzer on redelivery.
    /// It holds whole events, the same data as the events topic: keep it in the state
    /// directory. Absent: failed events are counted and logged by `event_id` only.
    #[serde(default)]
    pub dead_letter_path: Option<PathBuf>,
    /// Bytes written to `dead_letter_path` at most; later failed events are only counted
    /// (`apitap_analyzer_events_dead_letter_dropped_total`). Default 64 MiB.
    #[serde(default = "default_dead_letter_max_bytes")]
    pub dead_letter_max_bytes: u64,
    /// With `dead_letter_path`: processes that may die (abort, stack overflow, OOM kill)
    /// while analysing one event before that event, redelivered, is dead-lettered unanalysed
    /// (`apitap_analyzer_events_crash_skipped_total`) rather than killing the next one too.
    /// Tracked in `<dead_letter_path>.inflight`. Default 2.
    #[serde(default = "default_max_event_crashes")]
    pub max_event_crashes: u8,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            max_future_skew_secs: default_max_future_skew_secs(),
            dead_letter_path: None,
            dead_letter_max_bytes: default_dead_letter_max_bytes(),
            max_event_crashes: default_max_event_crashes(),
        }
    }
}

fn default_max_future_skew_secs() -> u64 {
    300
}

fn default_max_event_crashes() -> u8 {
    2
}

fn default_dead_letter_max_bytes() -> u64 {
    64 * 1024 * 1024
}

/// `[trace]`: the trace-back store (R-THR-6, `docs/trace-back.md`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraceConfig {
    /// Directory of the embedded store (created 0700; one SQLite file per partition, each
    /// 0600). It holds, per transaction, the time, endpoint, status, client address, account
    /// and User-Agent keyed hashes, record count and the keyed hashes of the sensitive
    /// values, never a value: keep it in the analyzer's state directory. Absent (and no
    /// `[trace.postgres]`): no trace-back.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// The store in PostgreSQL instead of `path` (several analyzers, more than one host's
    /// disk): tables partitioned by day, see `docs/trace-back.md`.
    #[serde(default)]
    pub postgres: Option<TracePostgresConfig>,
    /// Days a record is kept (whole partitions are deleted once their newest record is
    /// older; counted in `apitap_trace_records_evicted_total`). Default 30.
    #[serde(default = "default_trace_retention_days")]
    pub retention_days: u64,
    /// Bytes the store may use on disk (PostgreSQL: `pg_total_relation_size` of the day
    /// partitions); the oldest partitions are deleted beyond it (counted). At least 1 MiB.
    /// Default 4 GiB.
    #[serde(default = "default_trace_max_bytes")]
    pub max_bytes: u64,
    /// Embedded store: seconds of wall time one partition covers before the next starts
    /// (partitions also start when one reaches an eighth of `max_bytes`). PostgreSQL
    /// partitions by the record's UTC day instead. Default 3600.
    #[serde(default = "default_trace_partition_secs")]
    pub partition_secs: u64,
    /// Records waiting for the writer thread at most; when the disk cannot keep up, further
    /// records are dropped and counted (`apitap_trace_records_dropped_total{cause="queue_full"}`),
    /// never slowing the analysis. Default 65536.
    #[serde(default = "default_trace_queue_records")]
    pub queue_records: usize,
    /// Distinct sensitive values (keyed hashes) kept per record at most, so the thousandth
    /// ID of a bulk export is traceable too; further ones are counted
    /// (`apitap_trace_values_dropped_total`). Default 4096.
    #[serde(default = "default_trace_max_values_per_record")]
    pub max_values_per_record: usize,
}

/// `[trace.postgres]`: where the PostgreSQL trace-back store is and how to reach it, with
/// the inventory's rules (`inventory.store`, `store_password_file`, `store_ca_file`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TracePostgresConfig {
    /// Connection URL or key-value string (`postgres://apitap@db.internal/apitap`), without
    /// the password. TLS is required for a server not on loopback (unless it says
    /// `sslmode=disable`); certificates and host names are always verified. It may be the
    /// inventory's database: the tables are `apitap_trace_*`.
    pub url: String,
    /// Owner-only file (`chmod 600`, or a Kubernetes Secret with `defaultMode: 0400`) holding
    /// the password.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// PEM CA bundle the server certificate must chain to; absent: the system trust store.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

impl Default for TraceConfig {
    fn default() -> Self {
        TraceConfig {
            path: None,
            postgres: None,
            retention_days: default_trace_retention_days(),
            max_bytes: default_trace_max_bytes(),
            partition_secs: default_trace_partition_secs(),
            queue_records: default_trace_queue_records(),
            max_values_per_record: default_trace_max_values_per_record(),
        }
    }
}

impl TraceConfig {
    /// The retention of the store.
    pub fn retention(&self) -> apitap_trace::Retention {
        apitap_trace::Retention {
            max_age_days: self.retention_days,
            max_bytes: self.max_bytes,
            partition_secs: self.partition_secs,
        }
    }

    fn validate(&self) -> Result<(), Error> {
        let bad = |field, reason| Err(Error::ConfigValue { field, reason });
        if self.retention_days == 0 {
            return bad("trace.retention_days", "must be at least 1");
        }
        if self.max_bytes < 1 << 20 {
            return bad("trace.max_bytes", "must be at least 1 MiB (1048576)");
        }
        if self.partition_secs == 0 {
            return bad("trace.partition_secs", "must be at least 1");
        }
        if self.queue_records == 0 {
            return bad("trace.queue_records", "must be at least 1");
        }
        if self.max_values_per_record == 0 {
            return bad("trace.max_values_per_record", "must be at least 1");
        }
        if let Some(pg) = &self.postgres {
            if self.path.is_some() {
                return bad(
                    "trace.postgres",
                    "set together with `trace.path`: the store is one or the other",
                );
            }
            if !pg.url.trim_start().starts_with("postgres") && !pg.url.contains('=') {
                return bad(
                    "trace.postgres.url",
                    "must be a postgres:// URL or a key=value connection string",
                );
            }
        }
        Ok(())
    }
}

fn default_trace_retention_days() -> u64 {
    30
}

fn default_trace_max_bytes() -> u64 {
    4 << 30
}

fn default_trace_partition_secs() -> u64 {
    3600
}

fn default_trace_queue_records() -> usize {
    65_536
}

fn default_trace_max_values_per_record() -> usize {
    4096
}

/// `[summary]`: bounds of the in-memory summary.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SummaryConfig {
    /// Endpoints tracked at most; events of further endpoints are counted in the run
    /// statistics but not summarised. Default 100000.
    #[serde(default = "default_max_endpoints")]
    pub max_endpoints: usize,
}

impl Default for SummaryConfig {
    fn default() -> Self {
        SummaryConfig {
            max_endpoints: default_max_endpoints(),
        }
    }
}

fn default_max_line_bytes() -> usize {
    DEFAULT_MAX_LINE_BYTES
}

fn default_summary_path() -> PathBuf {
    PathBuf::from("-")
}

fn default_max_endpoints() -> usize {
    DEFAULT_MAX_ENDPOINTS
}

/// Where `run` reads events from.
#[derive(Debug, Clone, Copy)]
pub enum EventInput<'a> {
    /// A JSON-lines file or standard input.
    Lines(&'a InputConfig),
    /// The Kafka events topic.
    Kafka(&'a KafkaConfig),
}

impl Config {
    /// The event source of `run`: `[input]` or `[kafka]`.
    pub fn event_input(&self) -> Result<EventInput<'_>, Error> {
        match (&self.input, &self.kafka) {
            (Some(input), None) => Ok(EventInput::Lines(input)),
            (None, Some(kafka)) => Ok(EventInput::Kafka(kafka)),
            (None, None) => Err(Error::ConfigValue {
                field: "input",
                reason: "an event source is required: [input] (file or stdin) or [kafka]",
            }),
            (Some(_), Some(_)) => Err(Error::ConfigValue {
                field: "kafka",
                reason: "[input] and [kafka] are alternative event sources: keep one",
            }),
        }
    }

    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::ConfigRead {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(&text).map_err(|e| match e {
            Error::ConfigParse {
                field,
                line,
                message,
                ..
            } => Error::ConfigParse {
                path: Some(path.to_path_buf()),
                field,
                line,
                message,
            },
            other => other,
        })
    }

    /// Parses and validates config text.
    pub fn parse(text: &str) -> Result<Config, Error> {
        let deserializer = toml::Deserializer::new(text);
        let config: Config = serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let field = Some(e.path().to_string()).filter(|p| p != "." && !p.is_empty());
            let inner = e.inner();
            let line = inner
                .span()
                .map(|span| text[..span.start.min(text.len())].matches('\n').count() + 1);
            Error::ConfigParse {
                path: None,
                field,
                line,
                // The message alone, not toml's rendering, which quotes the offending line.
                message: inner.message().to_string(),
            }
        })?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), Error> {
        if self.input.as_ref().is_some_and(|i| i.max_line_bytes == 0) {
            return Err(Error::ConfigValue {
                field: "input.max_line_bytes",
                reason: "must be at least 1",
            });
        }
        if self.input.is_some() && self.kafka.is_some() {
            return Err(Error::ConfigValue {
                field: "kafka",
                reason: "[input] and [kafka] are alternative event sources: keep one",
            });
        }
        self.detect.validate().map_err(|e| match e {
            DetectError::Config { field, reason } => Error::ConfigInvalid {
                field: format!("detect.{field}"),
                reason,
            },
            other => Error::Detect(other),
        })?;
        if let Some(kafka) = &self.kafka {
            kafka.validate().map_err(|e| Error::ConfigInvalid {
                field: e.field,
                reason: e.reason,
            })?;
        }
        self.console.validate(&self.inventory)?;
        if self.summary.max_endpoints == 0 {
            return Err(Error::ConfigValue {
                field: "summary.max_endpoints",
                reason: "must be at least 1",
            });
        }
        self.trace.validate()?;
        self.state
            .validate(self.kafka.is_some(), self.labels.hash_key_file.is_some())?;
        let d = &self.detect;
        let shortest_window_secs = [
            d.credential_stuffing.window_secs,
            d.crawling.window_secs,
            d.abnormal_access.window_secs,
            d.brute_force.window_secs,
        ]
        .into_iter()
        .min()
        .unwrap_or(0);
        self.scale_out.validate(
            self.kafka.is_some(),
            self.state.enabled,
            shortest_window_secs,
        )?;
        self.inventory
            .validate()
            .map_err(|(field, reason)| Error::ConfigInvalid { field, reason })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_scale_out_values_name_their_field() {
        let base = "[kafka]\nbrokers = [\"k:1\"]\n[labels]\nhash_key_file = \"/k\"\n";
        let state = "[state]\nenabled = true\n";
        for (text, field) in [
            (
                format!("{base}[scale_out]\nenabled = true\n"),
                "scale_out.enabled",
            ),
            (
                "[scale_out]\nenabled = true\n".to_owned(),
                "scale_out.enabled",
            ),
            (
                format!("{base}{state}[scale_out]\nslice_secs = 0\n"),
                "scale_out.slice_secs",
            ),
            (
                format!("{base}{state}[scale_out]\nslice_secs = 301\n"),
                "scale_out.slice_secs",
            ),
            (
                // Longer than the crawling window.
                format!(
                    "{base}{state}[scale_out]\nslice_secs = 30\n[detect.crawling]\nwindow_secs = 20\n"
                ),
                "scale_out.slice_secs",
            ),
            (
                format!("{base}{state}[scale_out]\npartials_partitions = 0\n"),
                "scale_out.partials_partitions",
            ),
            (
                format!("{base}{state}[scale_out]\npartials_topic = \"\"\n"),
                "scale_out.partials_topic",
            ),
            (
                format!("{base}{state}[scale_out]\ngroup_id = \"\"\n"),
                "scale_out.group_id",
            ),
            (
                format!("{base}{state}[scale_out]\ntimeout_ms = 0\n"),
                "scale_out.timeout_ms",
            ),
        ] {
            let err = Config::parse(&text).unwrap_err().to_string();
            assert!(err.contains(field), "{text}: {err}");
        }
        let ok = Config::parse(&format!("{base}{state}[scale_out]\nenabled = true\n")).unwrap();
        assert!(ok.scale_out.enabled);
        assert_eq!(ok.scale_out.slice_secs, 10);
        // Unknown fields are refused.
        let err = Config::parse("[scale_out]\nslices = 3\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("slices"), "{err}");
    }

    #[test]
    fn bad_state_values_name_their_field() {
        let kafka = "[kafka]\nbrokers = [\"k:1\"]\n[labels]\nhash_key_file = \"/k\"\n";
        for (text, field) in [
            ("[state]\nenabled = true\n".to_owned(), "state.enabled"),
            (
                "[kafka]\nbrokers = [\"k:1\"]\n[state]\nenabled = true\n".to_owned(),
                "state.enabled",
            ),
            (format!("{kafka}[state]\ntopic = \"\"\n"), "state.topic"),
            (
                format!("{kafka}[state]\ntimeout_ms = 0\n"),
                "state.timeout_ms",
            ),
            (
                format!("{kafka}[state]\nmax_records = 0\n"),
                "state.max_records",
            ),
            (
                format!("{kafka}[state]\nbaseline_interval_secs = 0\n"),
                "state.baseline_interval_secs",
            ),
            (format!("{kafka}[state]\ncheckpoint = 1\n"), "state"),
        ] {
            let e = Config::parse(&text).unwrap_err().to_string();
            assert!(e.contains(field), "{text}: {e}");
        }
        let ok = Config::parse(&format!("{kafka}[state]\nenabled = true\n")).unwrap();
        assert!(ok.state.enabled);
        assert_eq!(ok.state.topic, "apitap.analyzer-state.v1");
    }

    #[test]
    fn bad_trace_values_name_their_field() {
        for (text, field) in [
            ("[trace]\nretention_days = 0\n", "trace.retention_days"),
            ("[trace]\nmax_bytes = 1000\n", "trace.max_bytes"),
            ("[trace]\npartition_secs = 0\n", "trace.partition_secs"),
            ("[trace]\nqueue_records = 0\n", "trace.queue_records"),
            (
                "[trace]\nmax_values_per_record = 0\n",
                "trace.max_values_per_record",
            ),
            (
                "[trace]\npath = \"/tmp/t\"\n[trace.postgres]\nurl = \"postgres://db/apitap\"\n",
                "trace.postgres",
            ),
            (
                "[trace.postgres]\nurl = \"sqlite:/tmp/t.db\"\n",
                "trace.postgres.url",
            ),
            ("[trace.postgres]\nuri = \"postgres://db\"\n", "uri"),
        ] {
            let e = Config::parse(text).unwrap_err().to_string();
            assert!(e.contains(field), "{text}: {e}");
        }
        let e = Config::parse("[trace]\nretention = 3\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("retention"), "{e}");
        let c = Config::parse(
            "[trace.postgres]\nurl = \"postgres://apitap@db/apitap\"\npassword_file = \"/p\"\n",
        )
        .unwrap();
        let pg = c.trace.postgres.unwrap();
        assert_eq!(pg.url, "postgres://apitap@db/apitap");
        assert_eq!(pg.password_file.as_deref(), Some(Path::new("/p")));
        assert!(c.trace.path.is_none());
    }

    #[test]
    fn example_config_is_valid_and_complete() {
        let text = include_str!("../../deploy/config/analyzer.example.toml");
        let c = Config::parse(text).unwrap();
        assert!(c.output.alerts_path.is_some());
        // Every field is spelled out in the example.
        for field in [
            "path",
            "max_line_bytes",
            "alerts_path",
            "alert_format",
            "summary_path",
            "summary_format",
            "summary_interval_secs",
            "max_endpoints",
            "max_future_skew_secs",
            "dead_letter_path",
            "dead_letter_max_bytes",
            "max_event_crashes",
            "retention_days",
            "max_bytes",
            "partition_secs",
            "queue_records",
            "max_values_per_record",
            "enabled",
            "session_ttl_secs",
            "max_sessions",
            "max_alerts",
            "max_series_endpoints",
            "secure_cookie",
            "topic",
            "topic_replication",
            "baseline_interval_secs",
            "timeout_ms",
            "max_records",
        ] {
            assert!(
                text.lines().any(|l| l.starts_with(&format!("{field} ="))),
                "{field} missing from the example"
            );
        }
    }

    #[test]
    fn console_needs_the_listener_store_and_token() {
        let c = Config::parse("").unwrap();
        assert!(!c.console.enabled);
        assert!(c.console.secure_cookie);
        let base = "[inventory]\nstore = \"sqlite:/tmp/inv.db\"\napi_listen = \"127.0.0.1:1\"\n";
        for (text, field) in [
            ("[console]\nenabled = true\n".to_owned(), "console.enabled"),
            (
                format!("{base}[console]\nenabled = true\n"),
                "console.enabled",
            ),
            (
                format!(
                    "{base}api_token_file = \"/t\"\n[console]\nenabled = true\nmax_alerts = 0\n"
                ),
                "console.max_alerts",
            ),
        ] {
            let e = Config::parse(&text).unwrap_err().to_string();
            assert!(e.contains(field), "{text}: {e}");
        }
        let ok = format!("{base}api_token_file = \"/t\"\n[console]\nenabled = true\n");
        assert!(Config::parse(&ok).unwrap().console.enabled);
        assert!(Config::parse("[console]\nbogus = 1\n").is_err());
    }

    #[test]
    fn kubernetes_config_map_consumes_kafka() {
        let yaml = include_str!("../../deploy/kubernetes/analyzer-deployment.yaml");
        let start = yaml.find("analyzer.toml: |\n").expect("ConfigMap entry") + 17;
        let text: String = yaml[start..]
            .lines()
            .take_while(|l| l.is_empty() || l.starts_with("    "))
            .map(|l| format!("{}\n", l.strip_prefix("    ").unwrap_or(l)))
            .collect();
        let c = Config::parse(&text).unwrap();
        assert!(
            matches!(c.event_input(), Ok(EventInput::Kafka(k)) if k.consumer.group_id == "apitap-analyzer")
        );
    }

    /// Each workload manifest carries a NetworkPolicy selecting its pods that admits ingress
    /// only from Prometheus pods, only to the workload's metrics port (issue 22, R-OPS-3);
    /// the host-network sensor binds the node's IP, never every interface.
    #[test]
    fn kubernetes_manifests_restrict_ingress_to_prometheus() {
        use serde::Deserialize as _;
        for (file, text, kind) in [
            (
                "analyzer-deployment.yaml",
                include_str!("../../deploy/kubernetes/analyzer-deployment.yaml"),
                "Deployment",
            ),
            (
                "sensor-daemonset.yaml",
                include_str!("../../deploy/kubernetes/sensor-daemonset.yaml"),
                "DaemonSet",
            ),
        ] {
            let docs: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(text)
                .map(|d| serde_yaml::Value::deserialize(d).unwrap())
                .collect();
            let of_kind = |k: &str| -> Vec<&serde_yaml::Value> {
                docs.iter()
                    .filter(|d| d["kind"].as_str() == Some(k))
                    .collect()
            };
            let workload = of_kind(kind)[0];
            let container = &workload["spec"]["template"]["spec"]["containers"][0];
            let metrics_port = container["ports"]
                .as_sequence()
                .unwrap()
                .iter()
                .find(|p| p["name"].as_str() == Some("metrics"))
                .unwrap_or_else(|| panic!("{file}: no metrics port"))["containerPort"]
                .as_u64()
                .unwrap();
            let policies = of_kind("NetworkPolicy");
            assert_eq!(policies.len(), 1, "{file}: one NetworkPolicy");
            let spec = &policies[0]["spec"];
            assert_eq!(
                spec["podSelector"]["matchLabels"], workload["spec"]["selector"]["matchLabels"],
                "{file}: the policy selects the workload's pods"
            );
            assert_eq!(
                policies[0]["metadata"]["namespace"], workload["metadata"]["namespace"],
                "{file}"
            );
            assert_eq!(
                spec["policyTypes"],
                serde_yaml::Value::from(vec!["Ingress"]),
                "{file}"
            );
            let rules = spec["ingress"].as_sequence().unwrap();
            assert!(!rules.is_empty(), "{file}: no rule would deny everything");
            for rule in rules {
                let from = rule["from"].as_sequence().unwrap();
                assert!(
                    !from.is_empty(),
                    "{file}: a rule without `from` admits anyone"
                );
                for peer in from {
                    assert_eq!(
                        peer["podSelector"]["matchLabels"]["app.kubernetes.io/name"].as_str(),
                        Some("prometheus"),
                        "{file}: {peer:?}"
                    );
                    assert!(peer.get("ipBlock").is_none(), "{file}");
                }
                let ports = rule["ports"].as_sequence().unwrap();
                assert_eq!(ports.len(), 1, "{file}");
                assert_eq!(ports[0]["port"].as_u64(), Some(metrics_port), "{file}");
                assert_eq!(ports[0]["protocol"].as_str(), Some("TCP"), "{file}");
            }
            if kind == "DaemonSet" {
                let command: Vec<&str> = container["command"]
                    .as_sequence()
                    .unwrap()
                    .iter()
                    .filter_map(|v| v.as_str())
                    .collect();
                let at = command.iter().position(|a| *a == "--metrics-listen");
                assert_eq!(
                    at.map(|i| command[i + 1]),
                    Some("$(HOST_IP):9464"),
                    "{file}: the host-network sensor binds the node's IP: {command:?}"
                );
                assert!(container["env"].as_sequence().unwrap().iter().any(|e| {
                    e["name"].as_str() == Some("HOST_IP")
                        && e["valueFrom"]["fieldRef"]["fieldPath"].as_str() == Some("status.hostIP")
                }));
            }
        }
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let c = Config::parse("[input]\npath = \"-\"\n").unwrap();
        let input = c.input.as_ref().unwrap();
        assert_eq!(input.path, PathBuf::from("-"));
        assert_eq!(input.max_line_bytes, 16 * 1024 * 1024);
        assert!(matches!(c.event_input(), Ok(EventInput::Lines(_))));
        assert_eq!(c.output, OutputConfig::default());
        assert_eq!(c.output.summary_path, PathBuf::from("-"));
        assert_eq!(c.output.summary_interval_secs, 0);
        assert_eq!(c.summary.max_endpoints, 100_000);
        assert_eq!(c.ingest, IngestConfig::default());
        assert_eq!(c.ingest.max_future_skew_secs, 300);
    }

    #[test]
    fn full_config_parses() {
        let c = Config::parse(
            r#"
            [input]
            path = "/var/lib/apitap/events.jsonl"
            max_line_bytes = 1024
            [output]
            alerts_path = "/var/lib/apitap/alerts.jsonl"
            summary_path = "/var/lib/apitap/summary.json"
            summary_format = "json"
            summary_interval_secs = 60
            [summary]
            max_endpoints = 10
            "#,
        )
        .unwrap();
        assert_eq!(c.output.summary_format, SummaryFormat::Json);
        assert_eq!(c.output.summary_interval_secs, 60);
        assert_eq!(
            c.output.alerts_path,
            Some(PathBuf::from("/var/lib/apitap/alerts.jsonl"))
        );
        assert_eq!(
            (c.input.unwrap().max_line_bytes, c.summary.max_endpoints),
            (1024, 10)
        );
    }

    #[test]
    fn unknown_field_is_rejected_by_name() {
        let err = Config::parse("[input]\npath = \"-\"\n[output]\nsummary_intervall_secs = 5\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("summary_intervall_secs"), "{err}");
        assert!(err.contains("output"), "{err}");
        assert!(err.contains("line 4"), "{err}");
    }

    #[test]
    fn unknown_table_is_rejected() {
        let err = Config::parse("[input]\npath = \"-\"\n[kafak]\nbrokers = \"x\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("kafak"), "{err}");
    }

    #[test]
    fn wrong_type_is_rejected_with_field_path() {
        let err =
            Config::parse("[input]\npath = \"-\"\n[output]\nsummary_interval_secs = \"soon\"\n")
                .unwrap_err()
                .to_string();
        assert!(err.contains("output.summary_interval_secs"), "{err}");
        assert!(err.contains("line 4"), "{err}");
    }

    #[test]
    fn missing_input_and_bad_values_are_rejected() {
        let err = Config::parse("")
            .unwrap()
            .event_input()
            .unwrap_err()
            .to_string();
        assert!(err.contains("input"), "{err}");
        let err = Config::parse("[input]\n").unwrap_err().to_string();
        assert!(err.contains("path"), "{err}");
        let err = Config::parse("[input]\npath = \"-\"\n[summary]\nmax_endpoints = 0\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("summary.max_endpoints"), "{err}");
        let err = Config::parse("[input]\npath = \"-\"\n[output]\nsummary_format = \"xml\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("output.summary_format"), "{err}");
    }

    #[test]
    fn inventory_section_parses_and_names_bad_fields() {
        let c = Config::parse(
            r#"
            [input]
            path = "-"
            [inventory]
            store = "sqlite:/var/lib/apitap/inventory.db"
            api_listen = "127.0.0.1:9480"
            service_by = "host_and_server"
            internal_cidrs = ["10.0.0.0/8"]
            [[inventory.partners]]
            name = "acme"
            cidrs = ["198.51.100.0/24"]
            [[inventory.overrides]]
            kind = "split"
            paths = ["/users/me"]
            [inventory.templating]
            opaque_min_distinct = 4
            "#,
        )
        .unwrap();
        assert_eq!(c.inventory.templating.opaque_min_distinct, 4);
        assert_eq!(c.inventory.partners[0].name, "acme");
        let err = Config::parse("[input]\npath = \"-\"\n[inventory.templating]\nopaque_min = 2\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("inventory.templating"), "{err}");
        assert!(err.contains("opaque_min"), "{err}");
        let err = Config::parse(
            "[input]\npath = \"-\"\n[[inventory.overrides]]\nkind = \"merge\"\npaths = [\"/a\"]\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("inventory.overrides[0]"), "{err}");
        let err =
            Config::parse("[input]\npath = \"-\"\n[inventory]\napi_listen = \"127.0.0.1:1\"\n")
                .unwrap_err()
                .to_string();
        assert!(err.contains("inventory.api_listen"), "{err}");
        let err = Config::parse(
            "[input]\npath = \"-\"\n[inventory]\ninternal_cidrs = [\"10.0.0.0/33\"]\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("inventory.internal_cidrs"), "{err}");
    }

    #[test]
    fn token_files_parse_and_need_their_listener() {
        let c = Config::parse(
            "[input]\npath = \"-\"\n[metrics]\nlisten = \"127.0.0.1:1\"\ntoken_file = \"/etc/apitap/metrics-token\"\n\
             [inventory]\nstore = \"sqlite:/tmp/x.db\"\napi_listen = \"127.0.0.1:2\"\napi_token_file = \"/etc/apitap/api-token\"\n",
        )
        .unwrap();
        assert_eq!(
            c.metrics.token_file,
            Some(PathBuf::from("/etc/apitap/metrics-token"))
        );
        assert_eq!(
            c.inventory.api_token_file,
            Some(PathBuf::from("/etc/apitap/api-token"))
        );
        let err = Config::parse(
            "[input]\npath = \"-\"\n[inventory]\nstore = \"sqlite:/tmp/x.db\"\napi_token_file = \"/t\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("inventory.api_token_file"), "{err}");
    }

    #[test]
    fn api_tls_fields_pair_up_and_other_addresses_need_authentication() {
        let base = "[input]\npath = \"-\"\n[inventory]\nstore = \"sqlite:/tmp/x.db\"\n";
        let lo = "api_listen = \"127.0.0.1:2\"\n";
        let any = "api_listen = \"0.0.0.0:2\"\n";
        let (crt, key, ca) = (
            "api_tls_cert_file = \"/c\"\n",
            "api_tls_key_file = \"/k\"\n",
            "api_client_ca_file = \"/ca\"\n",
        );
        let tok = "api_token_file = \"/t\"\n";
        for (extra, field) in [
            (format!("{lo}{crt}"), "inventory.api_tls_key_file"),
            (format!("{lo}{key}"), "inventory.api_tls_cert_file"),
            (format!("{lo}{ca}"), "inventory.api_client_ca_file"),
            (format!("{crt}{key}"), "inventory.api_tls_cert_file"),
            (any.to_owned(), "inventory.api_listen"),
            (format!("{any}{crt}{key}"), "inventory.api_listen"),
            (
                format!("{lo}{crt}{key}[console]\nenabled = true\n"),
                "console.enabled",
            ),
        ] {
            let text = format!("{base}{extra}");
            let e = Config::parse(&text).unwrap_err().to_string();
            assert!(e.contains(field), "{text}: {e}");
        }
        for extra in [
            format!("{lo}{crt}{key}"),
            format!("{any}{tok}"),
            format!("{any}{crt}{key}{ca}"),
            format!("{any}{crt}{key}{ca}[console]\nenabled = true\n"),
        ] {
            let text = format!("{base}{extra}");
            Config::parse(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
        }
    }

    #[test]
    fn documented_inventory_example_is_valid() {
        // The `[inventory]` example of docs/inventory.md parses and validates.
        let doc = include_str!("../../docs/inventory.md");
        let start = doc
            .find("```toml\n[inventory]")
            .expect("example in docs/inventory.md");
        let body = &doc[start + 8..];
        let example = &body[..body.find("```").expect("closing fence")];
        let c = Config::parse(&format!("[input]\npath = \"-\"\n{example}")).unwrap();
        assert!(c.inventory.store.is_some());
    }

    #[test]
    fn labels_section_parses_and_rejects_unknown_fields() {
        let c =
            Config::parse("[input]\npath = \"-\"\n[labels]\nhash_key_file = \"/etc/k\"\n").unwrap();
        assert_eq!(c.labels.hash_key_file, Some(PathBuf::from("/etc/k")));
        assert_eq!(
            Config::parse("[input]\npath = \"-\"\n").unwrap().labels,
            LabelsConfig::default()
        );
        let err = Config::parse("[input]\npath = \"-\"\n[labels]\nhash_key = \"x\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("labels"), "{err}");
        assert!(err.contains("hash_key"), "{err}");
    }

    #[test]
    fn kafka_section_is_the_alternative_event_source() {
        let c = Config::parse("[kafka]\nbrokers = [\"k1:9092\"]\n").unwrap();
        match c.event_input().unwrap() {
            EventInput::Kafka(k) => {
                assert_eq!(k.consumer.group_id, "apitap-analyzer");
                assert_eq!(k.events_topic, "apitap.events.v1");
                assert_eq!(k.alerts_topic, "apitap.alerts.v1");
            }
            other => panic!("{other:?}"),
        }
        let both = "[input]\npath = \"-\"\n[kafka]\nbrokers = [\"k1:9092\"]\n";
        let err = Config::parse(both).unwrap_err().to_string();
        assert!(err.contains("`kafka`"), "{err}");
        let err = Config::parse("[kafka]\nbrokers = [\"nohost\"]\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("kafka.brokers"), "{err}");
        let err = Config::parse(
            "[kafka]\nbrokers = [\"k:1\"]\n[kafka.librdkafka_options]\n\"enable.auto.commit\" = \"true\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("enable.auto.commit"), "{err}");
        let err = Config::parse("[kafka]\nbrokers = [\"k:1\"]\n[kafka.consumer]\ngroup = \"x\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("kafka.consumer"), "{err}");
    }

    #[test]
    fn detect_section_parses_and_names_bad_fields() {
        let c =
            Config::parse("[input]\npath = \"-\"\n[detect]\ntrusted_proxies = [\"10.0.0.0/8\"]\n")
                .unwrap();
        assert_eq!(c.detect.trusted_proxies, vec!["10.0.0.0/8".to_string()]);
        let err = Config::parse("[input]\npath = \"-\"\n[detect]\ntrusted_proxies = [\"x/99\"]\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("detect.trusted_proxies"), "{err}");
        let err = Config::parse("[input]\npath = \"-\"\n[detect]\nthresholds = 1\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("thresholds"), "{err}");
    }

    #[test]
    fn syntax_errors_do_not_quote_the_file() {
        let err = Config::parse("[input]\npath = \"-\"\nsecret = \"hunter2\n")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("hunter2"), "{err}");
        assert!(err.contains("line 3"), "{err}");
    }
}
