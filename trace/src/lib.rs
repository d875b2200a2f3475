//! The trace-back store of apitap (R-THR-6): one compact access record per transaction —
//! time, endpoint, status, client address, account, User-Agent, record count and the keyed
//! hashes of the sensitive values sent and served, never the values — so an analyst can ask
//! "which API calls served this leaked value, this account, this address, this User-Agent,
//! when".
//!
//! This crate owns the record ([`AccessRecord`]), the two stores behind one writer interface
//! ([`TraceSink`]): the embedded default ([`TraceStore`], a directory of SQLite files, one per
//! time partition) and PostgreSQL at scale ([`PgTraceStore`], tables partitioned by day,
//! shared by several analyzers), retention ([`Retention`]: days and bytes, oldest partitions
//! first, evictions counted), the background writer the analyzer feeds ([`TraceWriter`]:
//! bounded queue, batches, drops counted) and the questions ([`TraceReader::query`], the same
//! answer from either store). The analyzer builds the records from its event facts and serves
//! the questions on its CLI (`apitap-analyzer trace`) and HTTP API (`GET /v1/trace`).

pub mod postgres;
pub mod record;
pub mod store;
pub mod writer;

pub use postgres::{Connect, PgTraceStore};
pub use record::{
    AccessRecord, AccountRef, Answer, EndpointRef, Hit, MAX_LIMIT, MatchedValue, Query, Selector,
    TracedValue, value_key,
};
pub use store::{Evicted, TraceReader, TraceStore};
pub use writer::{TraceWriter, WriterStats};

use std::path::PathBuf;
use std::time::SystemTime;

/// What the writer thread writes to: the embedded store or PostgreSQL.
pub trait TraceSink: Send + 'static {
    /// Appends records in one transaction; returns how many were left out because their
    /// time is outside what retention keeps (PostgreSQL, whose partitions are by record
    /// time; the embedded store, partitioned by arrival, keeps them: 0).
    fn append_batch(&mut self, batch: &[AccessRecord]) -> Result<u64, TraceError>;
    /// Starts new partitions as due and applies retention at `now`; called between batches.
    fn maintain(&mut self, now: SystemTime) -> Result<Evicted, TraceError>;
    /// Records and bytes held now.
    fn usage(&self) -> (u64, u64);
}

/// How long and how much the store keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Partitions whose newest record is older than this are deleted.
    pub max_age_days: u64,
    /// The directory is kept under this many bytes by deleting the oldest partitions.
    pub max_bytes: u64,
    /// A partition is sealed after this many seconds of wall time (embedded store;
    /// PostgreSQL partitions by the record's day).
    pub partition_secs: u64,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            max_age_days: 30,
            max_bytes: 4 << 30,
            partition_secs: 3600,
        }
    }
}

/// Store errors. Messages name the file and operation, never stored content.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// The directory or a partition file could not be created or listed.
    #[error("trace store {path}: {source}")]
    Dir {
        /// The path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// SQLite failed.
    #[error("trace store SQLite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL failed (connection, statement, COPY).
    #[error("trace store PostgreSQL: {0}")]
    Postgres(#[from] ::postgres::Error),
    /// PostgreSQL is unreachable; the next connection is tried after a pause.
    #[error("trace store PostgreSQL unavailable; retrying in {retry_secs} s")]
    Unavailable {
        /// Seconds until the next attempt.
        retry_secs: u64,
    },
    /// The PostgreSQL schema was written by a newer build.
    #[error("trace store PostgreSQL schema has format {found}, newer than this build's")]
    SchemaTooNew {
        /// Its format version.
        found: i64,
    },
    /// A partition was written by a newer build.
    #[error("trace partition {path} has format {found}, newer than this build's")]
    FormatTooNew {
        /// The partition file.
        path: PathBuf,
        /// Its format version.
        found: i64,
    },
}
