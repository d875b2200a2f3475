//! The `[kafka]` section shared by the sensor's and the analyzer's configuration files
//! (R-BUS-1, R-BUS-2, R-OPS-2): brokers, topics, producer, spool and consumer settings, and the
//! `librdkafka_options` passthrough for everything the product does not own (TLS, SASL,
//! timeouts, …).
//!
//! Every struct is `deny_unknown_fields`, field names carry their unit, and
//! [`KafkaConfig::validate`] names the offending field (`kafka.spool.max_bytes`, or
//! `kafka.librdkafka_options."acks"`) in its error. Option *values* never appear in errors:
//! the map carries secrets such as `sasl.password` (R-OPS-3).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

/// Default topic of API events (R-BUS-1).
pub const DEFAULT_EVENTS_TOPIC: &str = "apitap.events.v1";
/// Default topic of alerts (R-BUS-3).
pub const DEFAULT_ALERTS_TOPIC: &str = "apitap.alerts.v1";
/// Default consumer group of the analyzer (R-OPS-1).
pub const DEFAULT_GROUP_ID: &str = "apitap-analyzer";
/// Largest record the spool accepts (an event is far smaller: bodies are capped at the sensor).
pub const MAX_RECORD_BYTES: usize = 16 * 1024 * 1024;

/// `[kafka]`: where the bus connects and how it behaves.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap brokers, `host:port` each (librdkafka `bootstrap.servers`). Required.
    pub brokers: Vec<String>,
    /// Topic API events are produced to and consumed from.
    #[serde(default = "default_events_topic")]
    pub events_topic: String,
    /// Topic alerts are produced to.
    #[serde(default = "default_alerts_topic")]
    pub alerts_topic: String,
    /// Extra librdkafka properties passed through verbatim (TLS, SASL, timeouts, partitioner,
    /// …; see librdkafka's CONFIGURATION.md). Values may be strings, integers or booleans.
    /// Properties the product sets itself, or that would break its guarantees, are rejected
    /// with an error naming the key and the setting to use instead.
    #[serde(default)]
    pub librdkafka_options: LibrdkafkaOptions,
    /// Secret librdkafka properties read from files at start, e.g.
    /// `"sasl.password" = "/run/secrets/kafka/password"` (a Kubernetes Secret volume, or a
    /// systemd credential): the value stays out of the TOML file and the ConfigMap. Each key
    /// must be a secret property (password, key, token, JAAS/OAuth configuration) not also in
    /// `librdkafka_options`; each file must be its owner's alone (`chmod 600`, or
    /// `defaultMode: 0400`); surrounding whitespace is trimmed. Issue 22, R-OPS-3.
    #[serde(default)]
    pub librdkafka_secret_files: BTreeMap<String, PathBuf>,
    /// `[kafka.producer]`: the sensor's event producer (and the analyzer's alert producer).
    #[serde(default)]
    pub producer: ProducerConfig,
    /// `[kafka.spool]`: the sensor's on-disk spool for events the broker cannot take now.
    #[serde(default)]
    pub spool: SpoolConfig,
    /// `[kafka.consumer]`: the analyzer's consumer group.
    #[serde(default)]
    pub consumer: ConsumerConfig,
}

/// The `librdkafka_options` map. Its `Debug` output (e.g. `check-config`) hides the values of
/// secret-looking keys (passwords, keys, tokens, JAAS/OAuth settings).
#[derive(Clone, Default, Deserialize, PartialEq)]
#[serde(transparent)]
pub struct LibrdkafkaOptions(pub BTreeMap<String, OptionValue>);

impl std::ops::Deref for LibrdkafkaOptions {
    type Target = BTreeMap<String, OptionValue>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for LibrdkafkaOptions {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl<'a> IntoIterator for &'a LibrdkafkaOptions {
    type Item = (&'a String, &'a OptionValue);
    type IntoIter = std::collections::btree_map::Iter<'a, String, OptionValue>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// True for librdkafka keys whose values are credentials.
pub fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    [
        "password",
        "secret",
        "key",
        "token",
        "jaas",
        "oauthbearer.config",
        "credential",
    ]
    .iter()
    .any(|s| k.contains(s))
}

impl std::fmt::Debug for LibrdkafkaOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut m = f.debug_map();
        for (k, v) in &self.0 {
            if is_secret_key(k) {
                m.entry(k, &"<redacted>");
            } else {
                m.entry(k, v);
            }
        }
        m.finish()
    }
}

/// A librdkafka property value as written in TOML.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum OptionValue {
    /// `true` / `false`.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A float (some timeouts and ratios).
    Float(f64),
    /// Anything else, verbatim.
    Str(String),
}

impl OptionValue {
    /// The value as librdkafka expects it.
    pub fn to_librdkafka(&self) -> String {
        match self {
            OptionValue::Bool(b) => b.to_string(),
            OptionValue::Int(i) => i.to_string(),
            OptionValue::Float(f) => f.to_string(),
            OptionValue::Str(s) => s.clone(),
        }
    }
}

/// Compression codec of produced batches.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    /// LZ4: fast, moderate ratio (default).
    #[default]
    Lz4,
    /// Zstandard: better ratio, more CPU.
    Zstd,
}

impl Compression {
    /// librdkafka `compression.type` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

/// `[kafka.producer]`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ProducerConfig {
    /// Batch compression: `lz4` (default) or `zstd`.
    pub compression: Compression,
    /// How long the producer waits to fill a batch (librdkafka `linger.ms`).
    pub linger_ms: u32,
    /// Largest batch per partition request (librdkafka `batch.size`).
    pub batch_max_bytes: u32,
    /// Events held in the producer's memory queue at most (librdkafka
    /// `queue.buffering.max.messages`); beyond it events go to the spool.
    pub queue_max_events: u32,
    /// Bytes held in the producer's memory queue at most (librdkafka
    /// `queue.buffering.max.kbytes`, rounded up to KiB); beyond it events go to the spool.
    pub queue_max_bytes: u64,
    /// With events outstanding, no delivery for this long marks the broker unreachable: new
    /// events then go to the spool instead of memory until a delivery succeeds again.
    pub stall_timeout_ms: u64,
    /// On shutdown, how long to keep delivering before the rest is written to the spool.
    pub close_timeout_ms: u64,
    /// Client id reported to the brokers (librdkafka `client.id`).
    pub client_id: String,
    /// Encoding of the events the sensor produces: `json` (default) or `msgpack` (the same
    /// fields as MessagePack maps, bodies unescaped: about half the sensor's encoding work,
    /// a fifth of the analyzer's decoding; docs/event-schema.md). Each message's
    /// `content-type` header names it, so analyzers read both.
    pub event_encoding: apitap_schema::EventEncoding,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            compression: Compression::Lz4,
            linger_ms: 20,
            batch_max_bytes: 1024 * 1024,
            queue_max_events: 100_000,
            queue_max_bytes: 64 * 1024 * 1024,
            stall_timeout_ms: 15_000,
            close_timeout_ms: 5_000,
            client_id: "apitap".into(),
            event_encoding: apitap_schema::EventEncoding::Json,
        }
    }
}

/// What the spool does when it is full.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum SpoolFullPolicy {
    /// Delete the oldest segment (its events are counted as dropped) to make room: recent
    /// traffic matters most to detection (default).
    #[default]
    DropOldest,
    /// Refuse the new event (counted as dropped): keeps the start of an outage intact.
    DropNewest,
}

/// `[kafka.spool]`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SpoolConfig {
    /// Directory of the spool's segment files (created if missing; one sensor per directory).
    pub dir: PathBuf,
    /// Size cap of all segments together; at least twice `segment_bytes`.
    pub max_bytes: u64,
    /// Size at which a segment is closed and a new one started (at least 1 MiB).
    pub segment_bytes: u64,
    /// `drop_oldest` (default) or `drop_newest` when `max_bytes` is reached.
    pub on_full: SpoolFullPolicy,
    /// How often written segments are fsynced (0: never; the OS writes them back). Without
    /// fsync a host crash may lose the last seconds of spooled events; a process crash does not.
    pub fsync_interval_ms: u64,
    /// Events waiting in memory for the spool writer at most, in bytes (they are dropped and
    /// counted beyond it: the capture loop never waits for the disk).
    pub backlog_max_bytes: u64,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        SpoolConfig {
            dir: PathBuf::from("/var/lib/apitap-sensor/spool"),
            max_bytes: 1024 * 1024 * 1024,
            segment_bytes: 16 * 1024 * 1024,
            on_full: SpoolFullPolicy::DropOldest,
            fsync_interval_ms: 1000,
            backlog_max_bytes: 32 * 1024 * 1024,
        }
    }
}

/// `[kafka.consumer]`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ConsumerConfig {
    /// Consumer group id; instances with the same id split the partitions (R-OPS-1).
    pub group_id: String,
    /// Event ids remembered for deduplication; a repeat within this many events is skipped.
    pub dedupe_window_events: usize,
    /// How often acknowledged offsets are committed while polling (0: only on explicit
    /// `commit()` and on close).
    pub commit_interval_ms: u64,
    /// Events handed out but not yet acknowledged at most; beyond it the consumer pauses
    /// fetching (bounded memory) until acknowledgments catch up.
    pub max_unacked_events: usize,
    /// Messages larger than this are rejected unread (counted).
    pub max_message_bytes: usize,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            group_id: DEFAULT_GROUP_ID.into(),
            dedupe_window_events: 200_000,
            commit_interval_ms: 1000,
            max_unacked_events: 100_000,
            max_message_bytes: MAX_RECORD_BYTES,
        }
    }
}

fn default_events_topic() -> String {
    DEFAULT_EVENTS_TOPIC.into()
}
fn default_alerts_topic() -> String {
    DEFAULT_ALERTS_TOPIC.into()
}

/// A configuration value that cannot work, naming the field (never an option's value).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: `{field}`: {reason}")]
pub struct ConfigError {
    /// Dotted field path, e.g. `kafka.spool.max_bytes`.
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        field: field.into(),
        reason: reason.into(),
    }
}

/// Which client a librdkafka property is checked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientRole {
    /// Event or alert producer.
    Producer,
    /// Event consumer.
    Consumer,
}

/// Properties the product sets from typed settings: naming them in `librdkafka_options` is an
/// error that points at the setting to use.
const OWNED: &[(&str, &str)] = &[
    ("bootstrap.servers", "kafka.brokers"),
    ("metadata.broker.list", "kafka.brokers"),
    ("group.id", "kafka.consumer.group_id"),
    ("compression.type", "kafka.producer.compression"),
    ("compression.codec", "kafka.producer.compression"),
    ("linger.ms", "kafka.producer.linger_ms"),
    ("queue.buffering.max.ms", "kafka.producer.linger_ms"),
    ("batch.size", "kafka.producer.batch_max_bytes"),
    (
        "queue.buffering.max.messages",
        "kafka.producer.queue_max_events",
    ),
    (
        "queue.buffering.max.kbytes",
        "kafka.producer.queue_max_bytes",
    ),
    ("client.id", "kafka.producer.client_id"),
    (
        "message.timeout.ms",
        "kafka.producer.stall_timeout_ms (the sensor retries forever and spools instead)",
    ),
    (
        "delivery.timeout.ms",
        "kafka.producer.stall_timeout_ms (the sensor retries forever and spools instead)",
    ),
    (
        "enable.partition.eof",
        "nothing: the consumer does not use partition EOF events",
    ),
];

/// Checks one passthrough property against what the product must enforce. Returns the error
/// for `kafka.librdkafka_options."key"`.
pub fn check_option(key: &str, value: &OptionValue) -> Result<(), ConfigError> {
    let field = format!("kafka.librdkafka_options.\"{key}\"");
    let v = value.to_librdkafka().trim().to_ascii_lowercase();
    if let Some((_, instead)) = OWNED.iter().find(|(k, _)| *k == key) {
        return Err(invalid(
            field,
            format!("set by apitap itself; use {instead}"),
        ));
    }
    let conflict = |why: &str| Err(invalid(field.clone(), why.to_owned()));
    match key {
        "enable.idempotence" if v != "true" => conflict(
            "the event producer must be idempotent (no duplicates or reordering on retry); remove it",
        ),
        "acks" | "request.required.acks" if v != "all" && v != "-1" => conflict(
            "only `all` (-1) is accepted: an event acknowledged by one replica can be lost (R-BUS-2)",
        ),
        "enable.auto.commit" if v != "false" => conflict(
            "offsets are committed only after the analyzer's effects are durable (at-least-once); remove it",
        ),
        "enable.auto.offset.store" if v != "false" => {
            conflict("offsets are stored only after the analyzer acknowledges an event; remove it")
        }
        "max.in.flight.requests.per.connection" | "max.in.flight" => match v.parse::<u32>() {
            Ok(1..=5) => Ok(()),
            _ => conflict("must be 1..=5 with the idempotent producer"),
        },
        "retries" | "message.send.max.retries" => match v.parse::<u64>() {
            Ok(n) if n > 0 => Ok(()),
            _ => conflict("must be greater than 0 with the idempotent producer"),
        },
        "transactional.id" => conflict("transactions are not used; remove it"),
        "enable.gapless.guarantee" if v != "false" => conflict(
            "a gapless guarantee would make a single failed event fatal to the producer; remove it",
        ),
        _ => Ok(()),
    }
}

impl KafkaConfig {
    /// A configuration with defaults for everything but the brokers.
    pub fn new(brokers: Vec<String>) -> KafkaConfig {
        KafkaConfig {
            brokers,
            events_topic: default_events_topic(),
            alerts_topic: default_alerts_topic(),
            librdkafka_options: LibrdkafkaOptions::default(),
            librdkafka_secret_files: BTreeMap::new(),
            producer: ProducerConfig::default(),
            spool: SpoolConfig::default(),
            consumer: ConsumerConfig::default(),
        }
    }

    /// `librdkafka_options` with the properties of `librdkafka_secret_files` read in. Errors
    /// name the key and the file, never the value.
    pub fn resolved_options(&self) -> Result<LibrdkafkaOptions, ConfigError> {
        let mut options = self.librdkafka_options.clone();
        for (key, path) in &self.librdkafka_secret_files {
            let field = format!("kafka.librdkafka_secret_files.\"{key}\"");
            let secret = apitap_secret::read_secret_file(path, 1)
                .map_err(|e| invalid(field.clone(), format!("{}: {e}", path.display())))?;
            let Some(text) = secret.expose_str() else {
                return Err(invalid(field, format!("{}: not UTF-8", path.display())));
            };
            options.insert(key.clone(), OptionValue::Str(text.to_owned()));
        }
        Ok(options)
    }

    /// Checks values that parse but cannot work (no network access). Reads the secret files
    /// (permissions, presence) but never shows their contents.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.brokers.is_empty() {
            return Err(invalid("kafka.brokers", "at least one broker is required"));
        }
        for b in &self.brokers {
            let ok = b
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
            if !ok || b.contains([',', ' ']) {
                return Err(invalid("kafka.brokers", format!("{b:?} is not host:port")));
            }
        }
        for (field, topic) in [
            ("kafka.events_topic", &self.events_topic),
            ("kafka.alerts_topic", &self.alerts_topic),
        ] {
            let legal = !topic.is_empty()
                && topic.len() <= 249
                && topic != "."
                && topic != ".."
                && topic
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
            if !legal {
                return Err(invalid(
                    field,
                    "a Kafka topic name: 1-249 of [a-zA-Z0-9._-]",
                ));
            }
        }
        if self.events_topic == self.alerts_topic {
            return Err(invalid(
                "kafka.alerts_topic",
                "must differ from kafka.events_topic",
            ));
        }
        for (k, v) in &self.librdkafka_options {
            check_option(k, v)?;
        }
        for key in self.librdkafka_secret_files.keys() {
            let field = format!("kafka.librdkafka_secret_files.\"{key}\"");
            if !is_secret_key(key) {
                return Err(invalid(
                    field,
                    "not a secret property: set it in kafka.librdkafka_options",
                ));
            }
            if self.librdkafka_options.contains_key(key) {
                return Err(invalid(
                    field,
                    "also set in kafka.librdkafka_options: keep one",
                ));
            }
        }
        let p = &self.producer;
        if p.linger_ms > 60_000 {
            return Err(invalid("kafka.producer.linger_ms", "at most 60000"));
        }
        if !(1024..=1024 * 1024 * 1024).contains(&p.batch_max_bytes) {
            return Err(invalid(
                "kafka.producer.batch_max_bytes",
                "must be 1024..=1073741824",
            ));
        }
        if !(1..=10_000_000).contains(&p.queue_max_events) {
            return Err(invalid(
                "kafka.producer.queue_max_events",
                "must be 1..=10000000",
            ));
        }
        if !(1024..=2 * 1024 * 1024 * 1024).contains(&p.queue_max_bytes) {
            return Err(invalid(
                "kafka.producer.queue_max_bytes",
                "must be 1024..=2147483648",
            ));
        }
        if p.stall_timeout_ms < 100 {
            return Err(invalid("kafka.producer.stall_timeout_ms", "at least 100"));
        }
        if p.client_id.trim().is_empty() {
            return Err(invalid("kafka.producer.client_id", "must not be empty"));
        }
        let s = &self.spool;
        if s.dir.as_os_str().is_empty() {
            return Err(invalid("kafka.spool.dir", "must not be empty"));
        }
        if s.segment_bytes < 1024 * 1024 {
            return Err(invalid("kafka.spool.segment_bytes", "at least 1048576"));
        }
        if s.max_bytes < 2 * s.segment_bytes {
            return Err(invalid(
                "kafka.spool.max_bytes",
                "at least twice kafka.spool.segment_bytes",
            ));
        }
        if s.backlog_max_bytes < MAX_RECORD_BYTES as u64 / 16 {
            return Err(invalid(
                "kafka.spool.backlog_max_bytes",
                format!("at least {}", MAX_RECORD_BYTES / 16),
            ));
        }
        let c = &self.consumer;
        if c.group_id.trim().is_empty() {
            return Err(invalid("kafka.consumer.group_id", "must not be empty"));
        }
        if c.dedupe_window_events == 0 {
            return Err(invalid(
                "kafka.consumer.dedupe_window_events",
                "must be greater than 0",
            ));
        }
        if c.max_unacked_events == 0 {
            return Err(invalid(
                "kafka.consumer.max_unacked_events",
                "must be greater than 0",
            ));
        }
        if c.max_message_bytes < 1024 {
            return Err(invalid("kafka.consumer.max_message_bytes", "at least 1024"));
        }
        // Let librdkafka check names and values of the passthrough options (offline).
        crate::kafka::check_passthrough(self)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<KafkaConfig, toml::de::Error> {
        toml::from_str(text)
    }

    #[test]
    fn minimal_section_gets_defaults() {
        let c = parse("brokers = [\"k1:9092\"]\n").unwrap();
        c.validate().unwrap();
        assert_eq!(c.events_topic, "apitap.events.v1");
        assert_eq!(c.alerts_topic, "apitap.alerts.v1");
        assert_eq!(c.consumer.group_id, "apitap-analyzer");
        assert_eq!(c.producer.compression, Compression::Lz4);
        assert_eq!(c.spool.on_full, SpoolFullPolicy::DropOldest);
    }

    #[test]
    fn unknown_fields_are_named() {
        let e = parse("brokers = [\"k:1\"]\n[spool]\nmax_size = 3\n").unwrap_err();
        assert!(e.to_string().contains("max_size"), "{e}");
        let e = parse("brokers = [\"k:1\"]\n[producer]\ncompression = \"gzip\"\n").unwrap_err();
        assert!(e.to_string().contains("compression"), "{e}");
    }

    #[test]
    fn conflicting_passthrough_options_are_rejected_by_key_without_value() {
        let cases = [
            ("\"enable.idempotence\" = false", "enable.idempotence"),
            ("acks = 1", "acks"),
            ("\"request.required.acks\" = \"0\"", "request.required.acks"),
            ("\"enable.auto.commit\" = true", "enable.auto.commit"),
            (
                "\"enable.auto.offset.store\" = \"true\"",
                "enable.auto.offset.store",
            ),
            ("\"bootstrap.servers\" = \"x:1\"", "bootstrap.servers"),
            ("\"group.id\" = \"g\"", "group.id"),
            ("\"compression.type\" = \"gzip\"", "compression.type"),
            ("\"linger.ms\" = 5", "linger.ms"),
            ("\"message.timeout.ms\" = 1000", "message.timeout.ms"),
            (
                "\"max.in.flight.requests.per.connection\" = 10",
                "max.in.flight",
            ),
            ("\"transactional.id\" = \"t\"", "transactional.id"),
        ];
        for (line, key) in cases {
            let text = format!("brokers = [\"k:1\"]\n[librdkafka_options]\n{line}\n");
            let err = parse(&text).unwrap().validate().unwrap_err();
            assert!(err.field.contains(key), "{line}: {err}");
            assert!(err.field.starts_with("kafka.librdkafka_options."), "{err}");
        }
        // Accepted: settings that agree with what the product enforces.
        let ok = "brokers = [\"k:1\"]\n[librdkafka_options]\nacks = \"all\"\n\"enable.idempotence\" = true\n\"enable.auto.commit\" = false\n\"security.protocol\" = \"plaintext\"\n\"socket.timeout.ms\" = 30000\n";
        parse(ok).unwrap().validate().unwrap();
    }

    #[test]
    fn secret_properties_come_from_private_files() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = std::env::temp_dir().join(format!("apitap-bus-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("password");
        std::fs::write(&file, "hunter2-but-longer\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let text = format!(
            "brokers = [\"k:1\"]\n[librdkafka_options]\n\"security.protocol\" = \"sasl_plaintext\"\n\"sasl.mechanisms\" = \"PLAIN\"\n\"sasl.username\" = \"apitap\"\n[librdkafka_secret_files]\n\"sasl.password\" = \"{}\"\n",
            file.display()
        );
        let c = parse(&text).unwrap();
        c.validate().unwrap();
        let resolved = c.resolved_options().unwrap();
        assert_eq!(
            resolved.get("sasl.password"),
            Some(&OptionValue::Str("hunter2-but-longer".into()))
        );
        assert!(!format!("{resolved:?}").contains("hunter2"));
        assert!(!format!("{c:?}").contains("hunter2"));
        // A world-readable file is refused, naming the key and the file, not the value.
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = c.validate().unwrap_err();
        assert_eq!(err.field, "kafka.librdkafka_secret_files.\"sasl.password\"");
        assert!(err.to_string().contains("chmod 600"), "{err}");
        assert!(!err.to_string().contains("hunter2"), "{err}");
        // A missing file is an error naming it.
        let missing = text.replace("password\"\n", "nope\"\n");
        let err = parse(&missing).unwrap().validate().unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
        // Not a secret, or set twice: refused by key.
        let not_secret =
            "brokers = [\"k:1\"]\n[librdkafka_secret_files]\n\"socket.timeout.ms\" = \"/x\"\n";
        let err = parse(not_secret).unwrap().validate().unwrap_err();
        assert!(err.reason.contains("not a secret"), "{err}");
        let twice = format!("{text}[librdkafka_options]\n");
        assert!(parse(&twice).is_err(), "duplicate table");
        let twice = text.replace(
            "\"sasl.username\" = \"apitap\"\n",
            "\"sasl.username\" = \"apitap\"\n\"sasl.password\" = \"inline\"\n",
        );
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let err = parse(&twice).unwrap().validate().unwrap_err();
        assert!(err.reason.contains("keep one"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn librdkafka_rejects_unknown_properties_without_echoing_values() {
        let text = "brokers = [\"k:1\"]\n[librdkafka_options]\n\"no.such.property\" = \"s3cr3t\"\n";
        let err = parse(text).unwrap().validate().unwrap_err();
        assert_eq!(err.field, "kafka.librdkafka_options.\"no.such.property\"");
        assert!(!err.to_string().contains("s3cr3t"), "{err}");
        let text = "brokers = [\"k:1\"]\n[librdkafka_options]\n\"sasl.password\" = \"hunter2\"\n\"security.protocol\" = \"bogus\"\n";
        let err = parse(text).unwrap().validate().unwrap_err();
        assert!(err.field.contains("security.protocol"), "{err}");
        assert!(!err.to_string().contains("hunter2") && !err.to_string().contains("bogus"));
    }

    #[test]
    fn debug_output_hides_secrets() {
        let c = parse("brokers = [\"k:1\"]\n[librdkafka_options]\n\"sasl.password\" = \"hunter2\"\n\"ssl.key.pem\" = \"PEM\"\n\"security.protocol\" = \"sasl_ssl\"\n").unwrap();
        let d = format!("{c:?}");
        assert!(!d.contains("hunter2") && !d.contains("PEM"), "{d}");
        assert!(d.contains("sasl_ssl"), "{d}");
    }

    #[test]
    fn impossible_values_name_the_field() {
        let cases = [
            ("brokers = []\n", "kafka.brokers"),
            ("brokers = [\"nohost\"]\n", "kafka.brokers"),
            (
                "brokers = [\"k:1\"]\nevents_topic = \"a b\"\n",
                "kafka.events_topic",
            ),
            (
                "brokers = [\"k:1\"]\nalerts_topic = \"apitap.events.v1\"\n",
                "kafka.alerts_topic",
            ),
            (
                "brokers = [\"k:1\"]\n[spool]\nsegment_bytes = 1048576\nmax_bytes = 1048576\n",
                "kafka.spool.max_bytes",
            ),
            (
                "brokers = [\"k:1\"]\n[spool]\nsegment_bytes = 10\n",
                "kafka.spool.segment_bytes",
            ),
            (
                "brokers = [\"k:1\"]\n[consumer]\ngroup_id = \" \"\n",
                "kafka.consumer.group_id",
            ),
            (
                "brokers = [\"k:1\"]\n[producer]\nqueue_max_events = 0\n",
                "kafka.producer.queue_max_events",
            ),
        ];
        for (text, field) in cases {
            let err = parse(text).unwrap().validate().unwrap_err();
            assert_eq!(err.field, field, "{text}");
            assert!(err.to_string().contains(field));
        }
    }
}
