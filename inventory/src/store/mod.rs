//! The inventory store: one interface ([`Store`]), two databases (R-INV-5).
//!
//! * SQLite ([`sqlite::SqliteStore`]): a file, the embedded default for a single analyzer;
//!   `sqlite::memory:` for a throwaway in-memory store.
//! * PostgreSQL ([`postgres::PgStore`]): shared by several analyzer instances; flushes are
//!   serialised by a transaction-level advisory lock and each instance merges its *delta*
//!   into the stored record, so counts add up across instances.
//!
//! Both get the same schema from the same ordered migrations ([`MIGRATIONS`]), applied at
//! open and recorded in `apitap_schema_migrations`. Endpoint rows keep the columns the CLI and
//! the HTTP API filter on, plus the full [`EndpointRecord`] as JSON.

pub mod postgres;
pub mod sqlite;

use super::record::{Change, ChangeFilter, EndpointFilter, EndpointRecord};

/// Store errors. Messages name the backend and operation, never stored content.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store URL is not understood.
    #[error("invalid store URL: {0}")]
    Url(String),
    /// The database file could not be created.
    #[error("store file {path}: {source}")]
    File {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// SQLite failed.
    #[error("SQLite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL failed.
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] ::postgres::Error),
    /// A credential file was refused (permissions, length) or unreadable.
    #[error("{field}: {source}")]
    Secret {
        /// The config field naming the file.
        field: &'static str,
        /// Why (never the contents).
        source: apitap_secret::SecretFileError,
    },
    /// TLS to PostgreSQL could not be set up (e.g. an unreadable `inventory.store_ca_file`).
    #[error("PostgreSQL TLS: {0}")]
    Tls(openssl::error::ErrorStack),
    /// The connection is closed (only while the store is dropped).
    #[error("store connection closed")]
    Closed,
    /// A stored record does not decode.
    #[error("stored record {id} does not decode: {reason}")]
    Corrupt {
        /// Endpoint id.
        id: String,
        /// Decoder message (position and kind).
        reason: String,
    },
    /// The database has a newer schema than this build knows.
    #[error("store schema version {found} is newer than this build's {known}")]
    SchemaTooNew {
        /// Version in the database.
        found: i64,
        /// Latest version this build knows.
        known: i64,
    },
}

/// One migration: the same schema in both dialects.
#[derive(Debug)]
pub struct Migration {
    /// Version (1, 2, …).
    pub version: i64,
    /// Statements for SQLite.
    pub sqlite: &'static str,
    /// Statements for PostgreSQL.
    pub postgres: &'static str,
}

const SCHEMA_V1_COMMON: &str = "
CREATE TABLE inventory_endpoints (
    id TEXT PRIMARY KEY,
    service TEXT NOT NULL,
    method TEXT NOT NULL,
    template TEXT NOT NULL,
    operation TEXT NOT NULL,
    style TEXT NOT NULL,
    auth TEXT NOT NULL,
    lifecycle TEXT NOT NULL,
    lifecycle_since_unix_us BIGINT NOT NULL,
    spec_status TEXT NOT NULL,
    exposure TEXT NOT NULL,
    sensitivity TEXT NOT NULL,
    hits BIGINT NOT NULL,
    first_seen_unix_us BIGINT NOT NULL,
    last_seen_unix_us BIGINT NOT NULL,
    updated_unix_us BIGINT NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX inventory_endpoints_by_service ON inventory_endpoints (service, template, method);
CREATE INDEX inventory_endpoints_by_lifecycle ON inventory_endpoints (lifecycle, last_seen_unix_us);
";

/// Version 2: sensitive-data columns (R-SEN-1, R-SEN-2), for filtering; the record JSON
/// holds the details. Existing rows keep `unknown` / no labels until next written.
const SCHEMA_V2_COMMON: &str = "
ALTER TABLE inventory_endpoints ADD COLUMN function_class TEXT NOT NULL DEFAULT 'unknown';
ALTER TABLE inventory_endpoints ADD COLUMN data_labels TEXT NOT NULL DEFAULT ',';
CREATE INDEX inventory_endpoints_by_sensitivity ON inventory_endpoints (sensitivity);
";

/// The schema, in order.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        sqlite: "
CREATE TABLE inventory_changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at_unix_us BIGINT NOT NULL,
    endpoint_id TEXT NOT NULL,
    service TEXT NOT NULL,
    method TEXT NOT NULL,
    template TEXT NOT NULL,
    operation TEXT NOT NULL,
    kind TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX inventory_changes_by_endpoint ON inventory_changes (endpoint_id, seq);
",
        postgres: "
CREATE TABLE inventory_changes (
    seq BIGSERIAL PRIMARY KEY,
    at_unix_us BIGINT NOT NULL,
    endpoint_id TEXT NOT NULL,
    service TEXT NOT NULL,
    method TEXT NOT NULL,
    template TEXT NOT NULL,
    operation TEXT NOT NULL,
    kind TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX inventory_changes_by_endpoint ON inventory_changes (endpoint_id, seq);
",
    },
    Migration {
        version: 2,
        sqlite: "",
        postgres: "",
    },
];

/// Statements shared by both dialects, run before a migration's own.
fn common_sql(version: i64) -> &'static str {
    match version {
        1 => SCHEMA_V1_COMMON,
        2 => SCHEMA_V2_COMMON,
        _ => "",
    }
}

/// Latest schema version this build knows.
pub fn latest_version() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// Work inside one store transaction.
pub trait Tx {
    /// The record with this id.
    fn get(&mut self, id: &str) -> Result<Option<EndpointRecord>, StoreError>;
    /// Inserts or replaces a record.
    fn put(&mut self, record: &EndpointRecord) -> Result<(), StoreError>;
    /// Deletes a record.
    fn delete(&mut self, id: &str) -> Result<(), StoreError>;
    /// Records due a lifecycle transition: not inactive and last seen before
    /// `inactive_before_us`, or new/revived since before `settled_before_us`.
    fn due(
        &mut self,
        inactive_before_us: u64,
        settled_before_us: u64,
    ) -> Result<Vec<EndpointRecord>, StoreError>;
    /// Appends to the change log; returns the change's `seq`.
    fn add_change(&mut self, change: &Change) -> Result<i64, StoreError>;
}

/// An inventory database.
pub trait Store: Send {
    /// `sqlite` or `postgres`.
    fn backend(&self) -> &'static str;
    /// Runs `work` in one transaction (committed when it returns `Ok`).
    fn transaction(
        &mut self,
        work: &mut (dyn FnMut(&mut dyn Tx) -> Result<(), StoreError> + Send),
    ) -> Result<(), StoreError>;
    /// Endpoints matching `filter`, ordered by service, template, method, operation.
    fn endpoints(&mut self, filter: &EndpointFilter) -> Result<Vec<EndpointRecord>, StoreError>;
    /// One endpoint.
    fn endpoint(&mut self, id: &str) -> Result<Option<EndpointRecord>, StoreError>;
    /// Change-log entries matching `filter`, oldest first.
    fn changes(&mut self, filter: &ChangeFilter) -> Result<Vec<Change>, StoreError>;
    /// Applied schema version.
    fn schema_version(&mut self) -> Result<i64, StoreError>;
    /// Per-service counts, by service name, one page: computed by the database from the
    /// indexed columns, without reading the records.
    fn services(&mut self, limit: u64, offset: u64) -> Result<Vec<ServiceCounts>, StoreError>;
}

/// Endpoint counts of one service (`GET /v1/services`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ServiceCounts {
    /// Service name.
    pub service: String,
    /// Endpoints stored.
    pub endpoints: u64,
    /// Requests over them.
    pub hits: u64,
    /// Endpoints observed but not in the spec.
    pub shadow: u64,
    /// Endpoints deprecated but used, or documented but never seen.
    pub zombie_candidates: u64,
}

/// The query of [`Store::services`] (portable SQL; `LIMIT`/`OFFSET` are numbers).
pub(crate) fn services_sql(limit: u64, offset: u64) -> String {
    format!(
        "SELECT service, COUNT(*), CAST(COALESCE(SUM(hits), 0) AS BIGINT),
            CAST(SUM(CASE WHEN spec_status IN ('undocumented', 'undocumented_method')
                THEN 1 ELSE 0 END) AS BIGINT),
            CAST(SUM(CASE WHEN spec_status IN ('deprecated', 'unseen') THEN 1 ELSE 0 END)
                AS BIGINT)
         FROM inventory_endpoints GROUP BY service ORDER BY service LIMIT {} OFFSET {}",
        limit.min(i64::MAX as u64),
        offset.min(i64::MAX as u64)
    )
}

/// A row of [`services_sql`], from signed database integers.
pub(crate) fn service_counts(service: String, n: [i64; 4]) -> ServiceCounts {
    let u = |v: i64| u64::try_from(v).unwrap_or(0);
    ServiceCounts {
        service,
        endpoints: u(n[0]),
        hits: u(n[1]),
        shadow: u(n[2]),
        zombie_candidates: u(n[3]),
    }
}

/// Opens a store by URL: `sqlite:PATH`, `sqlite://PATH`, `sqlite::memory:`, a plain file path
/// (SQLite), or `postgres://…` / `postgresql://…` (libpq-style URL; also `host=… user=…`
/// key-value strings after `postgres:`). Migrations are applied.
pub fn open(url: &str) -> Result<Box<dyn Store>, StoreError> {
    open_with(url, &postgres::PgAccess::default())
}

/// [`open`], with a password file and CA bundle for PostgreSQL (ignored by SQLite: the
/// configuration refuses them there).
pub fn open_with(url: &str, access: &postgres::PgAccess<'_>) -> Result<Box<dyn Store>, StoreError> {
    let url = url.trim();
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Box::new(postgres::PgStore::open_with(url, access)?));
    }
    if let Some(kv) = url.strip_prefix("postgres:") {
        return Ok(Box::new(postgres::PgStore::open_with(kv, access)?));
    }
    if url == "sqlite::memory:" {
        return Ok(Box::new(sqlite::SqliteStore::open_in_memory()?));
    }
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    if path.is_empty() || path.contains("://") {
        return Err(StoreError::Url(
            "expected sqlite:PATH, sqlite::memory:, a file path, or postgres://…".into(),
        ));
    }
    Ok(Box::new(sqlite::SqliteStore::open(std::path::Path::new(
        path,
    ))?))
}

/// Column values of a record row.
pub(crate) struct Row {
    pub id: String,
    pub service: String,
    pub method: String,
    pub template: String,
    pub operation: String,
    pub style: String,
    pub auth: String,
    pub lifecycle: &'static str,
    pub lifecycle_since: i64,
    pub spec_status: &'static str,
    pub exposure: &'static str,
    pub sensitivity: String,
    pub function_class: String,
    /// Label names as `,a,b,` (matched with LIKE like `auth`).
    pub data_labels: String,
    pub hits: i64,
    pub first_seen: i64,
    pub last_seen: i64,
    pub updated: i64,
    pub record: String,
}

pub(crate) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Row {
    pub(crate) fn of(r: &EndpointRecord) -> Row {
        Row {
            id: r.id.clone(),
            service: r.key.service.clone(),
            method: r.key.method.clone(),
            template: r.key.template.clone(),
            operation: r.key.operation.clone(),
            style: r.data.style(),
            auth: format!(",{},", r.data.auth_schemes().join(",")),
            lifecycle: r.lifecycle.as_str(),
            lifecycle_since: to_i64(r.lifecycle_since_unix_us),
            spec_status: r.spec_status.as_str(),
            exposure: r.data.exposure_class(),
            sensitivity: r.sensitivity.clone(),
            function_class: r.function_class.clone(),
            data_labels: format!(",{},", r.data_labels.join(",")),
            hits: to_i64(r.data.hits),
            first_seen: to_i64(r.data.first_seen_unix_us),
            last_seen: to_i64(r.data.last_seen_unix_us),
            updated: to_i64(r.updated_unix_us),
            // Serialising plain structs with string keys cannot fail.
            record: serde_json::to_string(r).unwrap_or_default(),
        }
    }
}

pub(crate) fn decode_record(id: &str, json: &str) -> Result<EndpointRecord, StoreError> {
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt {
        id: id.to_owned(),
        reason: format!("line {} column {}", e.line(), e.column()),
    })
}

/// The WHERE clause and arguments of an endpoint filter, with placeholders from `ph` (1-based).
pub(crate) fn endpoint_where(
    filter: &EndpointFilter,
    ph: &dyn Fn(usize) -> String,
) -> (String, Vec<String>) {
    let mut clauses = Vec::new();
    let mut args = Vec::new();
    let mut add = |clause: &str, arg: String, args: &mut Vec<String>| {
        args.push(arg);
        clauses.push(clause.replace('?', &ph(args.len())));
    };
    if let Some(v) = &filter.service {
        add("service = ?", v.clone(), &mut args);
    }
    if let Some(v) = &filter.method {
        add("method = ?", v.to_ascii_uppercase(), &mut args);
    }
    if let Some(v) = &filter.template {
        add(
            "template LIKE ? ESCAPE '\\'",
            format!("%{}%", like_escape(v)),
            &mut args,
        );
    }
    if let Some(v) = &filter.lifecycle {
        add("lifecycle = ?", v.clone(), &mut args);
    }
    if let Some(v) = &filter.style {
        add("style = ?", v.clone(), &mut args);
    }
    if let Some(v) = &filter.auth {
        add(
            "auth LIKE ? ESCAPE '\\'",
            format!("%,{},%", like_escape(v)),
            &mut args,
        );
    }
    if let Some(v) = &filter.spec_status {
        add("spec_status = ?", v.clone(), &mut args);
    }
    if let Some(v) = &filter.exposure {
        add("exposure = ?", v.clone(), &mut args);
    }
    if let Some(v) = &filter.label {
        add(
            "data_labels LIKE ? ESCAPE '\\'",
            format!("%,{},%", like_escape(v)),
            &mut args,
        );
    }
    if let Some(v) = &filter.sensitivity {
        add("sensitivity = ?", v.clone(), &mut args);
    }
    if let Some(v) = &filter.min_sensitivity {
        // The levels are a closed list; an unknown one matches nothing (callers validate).
        let levels = crate::sensitive::levels_at_least(v);
        let mut alts = Vec::new();
        for l in levels {
            args.push((*l).to_owned());
            alts.push(ph(args.len()));
        }
        clauses.push(if alts.is_empty() {
            "1 = 0".to_owned()
        } else {
            format!("sensitivity IN ({})", alts.join(", "))
        });
    }
    let mut sql = if clauses.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", clauses.join(" AND "))
    };
    sql.push_str(" ORDER BY service, template, method, operation");
    if let Some(l) = filter.limit {
        sql.push_str(&format!(" LIMIT {}", l.min(i64::MAX as u64)));
    }
    if let Some(o) = filter.offset {
        if filter.limit.is_none() {
            sql.push_str(&format!(" LIMIT {}", i64::MAX));
        }
        sql.push_str(&format!(" OFFSET {}", o.min(i64::MAX as u64)));
    }
    (sql, args)
}

/// The WHERE clause and arguments of a change filter; integers are passed as text and cast.
pub(crate) fn change_where(
    filter: &ChangeFilter,
    ph: &dyn Fn(usize) -> String,
) -> (String, Vec<String>) {
    let mut clauses = Vec::new();
    let mut args: Vec<String> = Vec::new();
    if let Some(s) = filter.after_seq {
        clauses.push(format!("seq > {s}"));
    }
    if let Some(t) = filter.since_unix_us {
        clauses.push(format!("at_unix_us >= {}", to_i64(t)));
    }
    if let Some(id) = &filter.endpoint_id {
        args.push(id.clone());
        clauses.push(format!("endpoint_id = {}", ph(args.len())));
    }
    if let Some(k) = &filter.kind {
        args.push(k.clone());
        clauses.push(format!("kind = {}", ph(args.len())));
    }
    let mut sql = if clauses.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", clauses.join(" AND "))
    };
    sql.push_str(&format!(
        " ORDER BY seq LIMIT {}",
        filter.limit.unwrap_or(1000).min(100_000)
    ));
    (sql, args)
}

fn like_escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}
