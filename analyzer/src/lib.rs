//! The apitap analyzer library.
//!
//! This crate owns everything the analyzer does with [`apitap_schema::ApiEvent`]s once they are
//! read: the bounded JSON-lines reader ([`reader`]), decoding and bad-line accounting
//! ([`ingest`]), the per-endpoint traffic summary ([`summary`]), the API inventory with path
//! templating, shape learning, lifecycle, store, OpenAPI export and HTTP API ([`inventory`],
//! R-INV-1…5, `docs/inventory.md`), result outputs ([`output`]), the service configuration
//! ([`config`]) and the `process`/`run` drivers ([`app`]). The `apitap-analyzer` binary is a
//! thin command line over [`app::process`], [`app::run`] and the inventory queries.
//!
//! Every event is labelled once for sensitive data ([`labelling`], R-SEN-1..3): the inventory
//! records labels, function class and sensitivity per endpoint, and weak points go to the
//! alerts output as OCSF findings.
//!
//! Events arrive from a JSON-lines file or from any [`apitap_bus::EventSource`]: the Kafka
//! consumer group (`[kafka]`, R-BUS-1, R-OPS-1) or the embedded mode's in-memory channel
//! ([`app::run_with_source`]). Offsets are acknowledged only once an event's inventory changes
//! are in the store and the alerts it raised are delivered (at-least-once). Alerts go to the
//! alert topic and/or a file ([`output::Alerts`], R-BUS-3). The summary still groups by raw
//! path (it is the raw traffic view; the inventory is the templated one).
//!
//! Each analysed event also becomes a trace-back record ([`trace`], `[trace]`, R-THR-6): who
//! got which sensitive value (by keyed hash), from which endpoint, when.
//!
//! Events carry sensitive values; nothing here logs header values, query strings, bodies or
//! input lines (R-OPS-3).

pub mod app;
pub mod config;
pub mod console;
pub mod dead_letter;
pub mod detection;
pub mod ecs;
pub mod error;
pub mod ingest;
/// The API inventory ([`apitap_inventory`]).
pub use apitap_inventory as inventory;
pub mod labelling;
pub mod logging;
pub mod metrics;
pub mod output;
pub mod reader;
pub mod scale_out;
pub mod state;
pub mod summary;
pub mod trace;

pub use app::{ProcessOptions, process, run};
pub use config::Config;
pub use error::Error;
pub use output::{SummaryFormat, Target};
