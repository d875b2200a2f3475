//! The apitap analyzer library.
//!
//! This crate owns everything the analyzer does with [`apitap_schema::ApiEvent`]s once they are
//! read: the bounded JSON-lines reader ([`reader`]), decoding and bad-line accounting
//! ([`ingest`]), the per-endpoint traffic summary ([`summary`]), result outputs ([`output`]),
//! the service configuration ([`config`]) and the `process`/`run` drivers ([`app`]). The
//! `apitap-analyzer` binary is a thin command line over [`app::process`] and [`app::run`].
//!
//! Not here yet: path templating and the API inventory (R-INV-1…5), sensitive-data labels
//! (R-SEN-*), threat detections and alerts (R-THR-*, R-BUS-3), and the Kafka consumer
//! (R-BUS-1, R-OPS-1); each arrives with its own issue. The summary groups by raw path until
//! then.
//!
//! Events carry sensitive values; nothing here logs header values, query strings, bodies or
//! input lines (R-OPS-3).

pub mod app;
pub mod config;
pub mod error;
pub mod ingest;
pub mod logging;
pub mod output;
pub mod reader;
pub mod summary;

pub use app::{ProcessOptions, process, run};
pub use config::Config;
pub use error::Error;
pub use output::{SummaryFormat, Target};
