//! The analyzer library's error type.

use std::io;
use std::path::PathBuf;

/// Everything that can stop the analyzer. Messages name files and config fields, never event
/// contents (R-OPS-3).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The config file could not be read.
    #[error("cannot read config file {}", .path.display())]
    ConfigRead {
        /// The config file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The config file is not valid TOML or does not match the config structure.
    #[error("invalid config{}{}{}: {message}",
        .path.as_ref().map(|p| format!(" {}", p.display())).unwrap_or_default(),
        .field.as_ref().map(|f| format!(": field `{f}`")).unwrap_or_default(),
        .line.map(|l| format!(" (line {l})")).unwrap_or_default())]
    ConfigParse {
        /// The config file, when read from one.
        path: Option<PathBuf>,
        /// Dotted path of the offending field, e.g. `output.summary_interval_secs`; `None` for
        /// TOML syntax errors.
        field: Option<String>,
        /// 1-based line of the error in the file, when known.
        line: Option<usize>,
        /// What is wrong.
        message: String,
    },
    /// A config value has the right type but is out of range.
    #[error("invalid config: field `{field}`: {reason}")]
    ConfigValue {
        /// Dotted path of the offending field.
        field: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
    /// The labelling hash key file could not be read.
    #[error("cannot read labels.hash_key_file {}", .path.display())]
    HashKeyRead {
        /// The key file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The labelling hash key file is empty, or no random key could be made.
    #[error("labels: {0}")]
    HashKey(&'static str),
    /// A protobuf descriptor set could not be read or decoded.
    #[error("invalid config: field `labels.protobuf_descriptor_sets`")]
    Descriptor(#[source] apitap_labels::protobuf::DescriptorError),
    /// The sensitive-data labeller could not be built.
    #[error("cannot build the sensitive-data labeller")]
    Labeller(#[source] apitap_labels::LabelError),
    /// The input could not be opened.
    #[error("cannot open input {}", .path.display())]
    OpenInput {
        /// The input file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// Reading the input failed part-way.
    #[error("error reading input {}", .path.display())]
    ReadInput {
        /// The input file (`-` for standard input).
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// An output (summary or alerts) could not be written.
    #[error("cannot write {what} to {}", .path.display())]
    Output {
        /// `summary` or `alerts`.
        what: &'static str,
        /// The output file (`-` for standard output).
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The async runtime, the signal handlers or the ingest thread could not be started.
    #[error("cannot start {what}")]
    Start {
        /// What failed to start.
        what: &'static str,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The ingest thread ended without reporting (it panicked).
    #[error("the ingest thread stopped unexpectedly")]
    IngestThread,
    /// A config value is invalid (fields named at run time, e.g. `inventory.overrides[2]`).
    #[error("invalid config: field `{field}`: {reason}")]
    ConfigInvalid {
        /// Dotted path of the offending field.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// The inventory store failed.
    #[error("inventory store ({backend}) failed")]
    Store {
        /// `sqlite` or `postgres` (or `url`).
        backend: &'static str,
        /// The store error.
        #[source]
        source: crate::inventory::StoreError,
    },
    /// An OpenAPI document of `inventory.specs` could not be loaded.
    #[error("cannot load an OpenAPI document of inventory.specs")]
    Spec(#[source] crate::inventory::spec::SpecError),
    /// The detection engine could not start (configuration or GeoIP database).
    #[error("detections")]
    Detect(#[source] apitap_detect::DetectError),
    /// The event bus (Kafka consumer, alert producer) failed.
    #[error("event bus")]
    Bus(#[from] apitap_bus::BusError),
    /// The metrics endpoint could not listen.
    #[error("cannot listen on {addr} for metrics")]
    MetricsListen {
        /// The address.
        addr: std::net::SocketAddr,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The inventory API's TLS files (`inventory.api_tls_*`, `inventory.api_client_ca_file`)
    /// cannot be used; the message names the file, never key material.
    #[error("inventory.api_tls_cert_file, api_tls_key_file or api_client_ca_file")]
    ApiTls(#[source] apitap_admin_http::TlsError),
    /// A bearer token file of an HTTP endpoint is refused (unreadable, too short, or
    /// accessible to others); the message names the field, never the token.
    #[error("{field}: {} cannot be used as a bearer token file", path.display())]
    TokenFile {
        /// The configuration field, e.g. `metrics.token_file`.
        field: &'static str,
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: apitap_admin_http::KeyFileError,
    },
    /// `[trace.postgres]` cannot be used (password file, CA bundle, URL); the message of the
    /// source names the field.
    #[error("trace-back store PostgreSQL settings (`[trace.postgres]`)")]
    TracePostgres(#[source] crate::inventory::StoreError),
    /// The trace-back store failed (`[trace]`).
    #[error("trace-back store")]
    Trace(#[source] apitap_trace::TraceError),
    /// A trace-back question is not understood.
    #[error("trace question: {0}")]
    TraceQuestion(#[source] crate::trace::BadQuestion),
    /// The inventory API could not listen.
    #[error("cannot listen on {addr} for the inventory API")]
    ApiListen {
        /// The address.
        addr: std::net::SocketAddr,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
}

pub use apitap_inventory::text::error_chain as chain;
