//! PostgreSQL inventory store: one inventory shared by several analyzer instances.
//!
//! Every write transaction first takes a transaction-level advisory lock
//! ([`FLUSH_LOCK_KEY`]), so flushes from different instances run one after the other; each
//! reads the current record, merges its own delta and writes it back, and counts add up.
//! Migrations run under the same lock.
//!
//! The `postgres` client drives its connection with a Tokio runtime of its own, which cannot
//! be entered from a thread already running one (the analyzer's service loop): every call —
//! connecting, each query, the transaction and closing the connection on drop — runs through
//! [`off_runtime`], in a scoped thread when the caller is inside a runtime.

use std::path::Path;
use std::str::FromStr as _;

use postgres::Client;
use postgres::config::{Host, SslMode};
use postgres::types::ToSql;

use super::{
    MIGRATIONS, Row, ServiceCounts, Store, StoreError, Tx, change_where, common_sql, decode_record,
    endpoint_where, latest_version, service_counts, services_sql, to_i64,
};
use crate::record::{Change, ChangeFilter, EndpointFilter, EndpointKey, EndpointRecord};

/// Advisory lock key serialising inventory writes (`apit` in ASCII).
pub const FLUSH_LOCK_KEY: i64 = 0x6170_6974;

/// A PostgreSQL connection.
pub struct PgStore {
    /// Always `Some` but while dropping (the connection is closed off the runtime too).
    client: Option<Client>,
}

/// Runs `f` where the synchronous client may block on its own runtime: inline on a plain
/// thread, in a scoped thread (waited for) on a thread that runs or belongs to a Tokio
/// runtime. A panic in `f` is resumed in the caller.
pub fn off_runtime<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if tokio::runtime::Handle::try_current().is_err() {
        return f();
    }
    std::thread::scope(|s| match s.spawn(f).join() {
        Ok(r) => r,
        Err(panic) => std::panic::resume_unwind(panic),
    })
}

impl Drop for PgStore {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            // Closing sends a Terminate message through the client's runtime.
            off_runtime(move || drop(client));
        }
    }
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The connection string may hold a password: never printed.
        f.debug_struct("PgStore").finish_non_exhaustive()
    }
}

fn ph(i: usize) -> String {
    format!("${i}")
}

fn refs(args: &[String]) -> Vec<&(dyn ToSql + Sync)> {
    args.iter().map(|a| a as &(dyn ToSql + Sync)).collect()
}

/// How to reach a PostgreSQL server beyond its connection string (issue 22, R-OPS-3). The
/// inventory store and the trace-back store (`[trace.postgres]`) connect the same way.
#[derive(Debug, Clone, Copy)]
pub struct PgAccess<'a> {
    /// Owner-only file holding the password (`inventory.store_password_file`), so that it
    /// stays out of the store URL, the TOML file and the ConfigMap.
    pub password_file: Option<&'a Path>,
    /// PEM CA bundle the server's certificate must chain to (`inventory.store_ca_file`);
    /// absent: the system's trust store.
    pub ca_file: Option<&'a Path>,
    /// The configuration field errors about the password file name.
    pub password_field: &'static str,
}

impl Default for PgAccess<'_> {
    fn default() -> Self {
        PgAccess {
            password_file: None,
            ca_file: None,
            password_field: "inventory.store_password_file",
        }
    }
}

/// The connection settings of `conninfo` with `access` applied. TLS is required for a
/// server that is not on loopback or a Unix socket, unless the URL says `sslmode=disable`
/// (libpq's default `prefer` would fall back to clear text for anyone who can answer on the
/// network path); certificates and host names are always verified when TLS is used.
pub fn connection_config(
    conninfo: &str,
    access: &PgAccess<'_>,
) -> Result<postgres::Config, StoreError> {
    let mut config = postgres::Config::from_str(conninfo)?;
    if let Some(path) = access.password_file {
        let secret =
            apitap_secret::read_secret_file(path, 1).map_err(|source| StoreError::Secret {
                field: access.password_field,
                source,
            })?;
        config.password(secret.expose());
    }
    let local = config.get_hosts().iter().all(|h| match h {
        Host::Tcp(name) => {
            name == "localhost"
                || name
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
        Host::Unix(_) => true,
    });
    if !local && config.get_ssl_mode() == SslMode::Prefer {
        config.ssl_mode(SslMode::Require);
    }
    Ok(config)
}

/// The TLS connector: OpenSSL, peer and host name verification on.
pub fn tls_connector(
    access: &PgAccess<'_>,
) -> Result<postgres_openssl::MakeTlsConnector, StoreError> {
    let mut builder = openssl::ssl::SslConnector::builder(openssl::ssl::SslMethod::tls())
        .map_err(StoreError::Tls)?;
    if let Some(ca) = access.ca_file {
        builder.set_ca_file(ca).map_err(StoreError::Tls)?;
    }
    Ok(postgres_openssl::MakeTlsConnector::new(builder.build()))
}

impl PgStore {
    /// Connects (URL or key-value connection string) and applies migrations.
    pub fn open(conninfo: &str) -> Result<PgStore, StoreError> {
        PgStore::open_with(conninfo, &PgAccess::default())
    }

    /// Connects with a password file and CA bundle (see [`connection_config`]) and applies
    /// migrations.
    pub fn open_with(conninfo: &str, access: &PgAccess<'_>) -> Result<PgStore, StoreError> {
        let config = connection_config(conninfo, access)?;
        let tls = tls_connector(access)?;
        let client = off_runtime(move || connect_and_migrate(&config, tls))?;
        Ok(PgStore {
            client: Some(client),
        })
    }

    /// Runs `f` on the connection, off any runtime ([`off_runtime`]).
    fn with<R: Send>(
        &mut self,
        f: impl FnOnce(&mut Client) -> Result<R, StoreError> + Send,
    ) -> Result<R, StoreError> {
        let client = self.client.as_mut().ok_or(StoreError::Closed)?;
        off_runtime(move || f(client))
    }
}

fn connect_and_migrate(
    config: &postgres::Config,
    tls: postgres_openssl::MakeTlsConnector,
) -> Result<Client, StoreError> {
    let mut client = config.connect(tls)?;
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&FLUSH_LOCK_KEY])?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS apitap_schema_migrations (
                version BIGINT PRIMARY KEY,
                applied_unix_us BIGINT NOT NULL)",
    )?;
    let current: i64 = tx
        .query_one(
            "SELECT COALESCE(MAX(version), 0)::BIGINT FROM apitap_schema_migrations",
            &[],
        )?
        .get(0);
    if current > latest_version() {
        return Err(StoreError::SchemaTooNew {
            found: current,
            known: latest_version(),
        });
    }
    for m in MIGRATIONS.iter().filter(|m| m.version > current) {
        tx.batch_execute(common_sql(m.version))?;
        tx.batch_execute(m.postgres)?;
        tx.execute(
            "INSERT INTO apitap_schema_migrations (version, applied_unix_us) VALUES ($1, $2)",
            &[&m.version, &to_i64(super::sqlite::now_us())],
        )?;
    }
    tx.commit()?;
    Ok(client)
}

fn records(rows: Vec<postgres::Row>) -> Result<Vec<EndpointRecord>, StoreError> {
    rows.iter()
        .map(|r| decode_record(r.get::<_, &str>(0), r.get::<_, &str>(1)))
        .collect()
}

struct PgTx<'a, 'b> {
    tx: &'a mut postgres::Transaction<'b>,
}

impl Tx for PgTx<'_, '_> {
    fn get(&mut self, id: &str) -> Result<Option<EndpointRecord>, StoreError> {
        let row = self.tx.query_opt(
            "SELECT id, record FROM inventory_endpoints WHERE id = $1",
            &[&id],
        )?;
        row.map(|r| decode_record(id, r.get::<_, &str>(1)))
            .transpose()
    }

    fn put(&mut self, record: &EndpointRecord) -> Result<(), StoreError> {
        let r = Row::of(record);
        self.tx.execute(
            "INSERT INTO inventory_endpoints (id, service, method, template, operation, style,
                auth, lifecycle, lifecycle_since_unix_us, spec_status, exposure, sensitivity, hits,
                first_seen_unix_us, last_seen_unix_us, updated_unix_us, record, function_class,
                data_labels)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)
             ON CONFLICT (id) DO UPDATE SET style = EXCLUDED.style, auth = EXCLUDED.auth,
                lifecycle = EXCLUDED.lifecycle,
                lifecycle_since_unix_us = EXCLUDED.lifecycle_since_unix_us,
                spec_status = EXCLUDED.spec_status, exposure = EXCLUDED.exposure,
                sensitivity = EXCLUDED.sensitivity, hits = EXCLUDED.hits,
                first_seen_unix_us = EXCLUDED.first_seen_unix_us,
                last_seen_unix_us = EXCLUDED.last_seen_unix_us,
                updated_unix_us = EXCLUDED.updated_unix_us, record = EXCLUDED.record,
                function_class = EXCLUDED.function_class, data_labels = EXCLUDED.data_labels",
            &[
                &r.id,
                &r.service,
                &r.method,
                &r.template,
                &r.operation,
                &r.style,
                &r.auth,
                &r.lifecycle,
                &r.lifecycle_since,
                &r.spec_status,
                &r.exposure,
                &r.sensitivity,
                &r.hits,
                &r.first_seen,
                &r.last_seen,
                &r.updated,
                &r.record,
                &r.function_class,
                &r.data_labels,
            ],
        )?;
        Ok(())
    }

    fn delete(&mut self, id: &str) -> Result<(), StoreError> {
        self.tx
            .execute("DELETE FROM inventory_endpoints WHERE id = $1", &[&id])?;
        Ok(())
    }

    fn due(
        &mut self,
        inactive_before_us: u64,
        settled_before_us: u64,
    ) -> Result<Vec<EndpointRecord>, StoreError> {
        let rows = self.tx.query(
            "SELECT id, record FROM inventory_endpoints
             WHERE (lifecycle <> 'inactive' AND last_seen_unix_us < $1)
                OR (lifecycle IN ('new', 'revived') AND lifecycle_since_unix_us < $2)
             ORDER BY id",
            &[&to_i64(inactive_before_us), &to_i64(settled_before_us)],
        )?;
        records(rows)
    }

    fn add_change(&mut self, c: &Change) -> Result<i64, StoreError> {
        let row = self.tx.query_one(
            "INSERT INTO inventory_changes (at_unix_us, endpoint_id, service, method, template,
                operation, kind, detail) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING seq",
            &[
                &to_i64(c.at_unix_us),
                &c.endpoint_id,
                &c.key.service,
                &c.key.method,
                &c.key.template,
                &c.key.operation,
                &c.kind,
                &c.detail.to_string(),
            ],
        )?;
        Ok(row.get(0))
    }
}

impl Store for PgStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    fn transaction(
        &mut self,
        work: &mut (dyn FnMut(&mut dyn Tx) -> Result<(), StoreError> + Send),
    ) -> Result<(), StoreError> {
        self.with(|client| {
            let mut tx = client.transaction()?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&FLUSH_LOCK_KEY])?;
            work(&mut PgTx { tx: &mut tx })?;
            tx.commit()?;
            Ok(())
        })
    }

    fn endpoints(&mut self, filter: &EndpointFilter) -> Result<Vec<EndpointRecord>, StoreError> {
        let (clause, args) = endpoint_where(filter, &ph);
        self.with(|client| {
            records(client.query(
                &format!("SELECT id, record FROM inventory_endpoints{clause}"),
                &refs(&args),
            )?)
        })
    }

    fn endpoint(&mut self, id: &str) -> Result<Option<EndpointRecord>, StoreError> {
        self.with(|client| {
            client
                .query_opt(
                    "SELECT id, record FROM inventory_endpoints WHERE id = $1",
                    &[&id],
                )?
                .map(|r| decode_record(id, r.get::<_, &str>(1)))
                .transpose()
        })
    }

    fn changes(&mut self, filter: &ChangeFilter) -> Result<Vec<Change>, StoreError> {
        let (clause, args) = change_where(filter, &ph);
        let rows = self.with(|client| {
            Ok(client.query(
                &format!(
                    "SELECT seq, at_unix_us, endpoint_id, service, method, template, operation,
                    kind, detail FROM inventory_changes{clause}"
                ),
                &refs(&args),
            )?)
        })?;
        Ok(rows
            .iter()
            .map(|r| Change {
                seq: r.get(0),
                at_unix_us: r.get::<_, i64>(1).max(0) as u64,
                endpoint_id: r.get(2),
                key: EndpointKey {
                    service: r.get(3),
                    method: r.get(4),
                    template: r.get(5),
                    operation: r.get(6),
                },
                kind: r.get(7),
                detail: serde_json::from_str(r.get::<_, &str>(8))
                    .unwrap_or(serde_json::Value::Null),
            })
            .collect())
    }

    fn schema_version(&mut self) -> Result<i64, StoreError> {
        self.with(|client| {
            Ok(client
                .query_one(
                    "SELECT COALESCE(MAX(version), 0)::BIGINT FROM apitap_schema_migrations",
                    &[],
                )?
                .get(0))
        })
    }

    fn services(&mut self, limit: u64, offset: u64) -> Result<Vec<ServiceCounts>, StoreError> {
        self.with(|client| {
            Ok(client
                .query(&services_sql(limit, offset), &[])?
                .iter()
                .map(|r| service_counts(r.get(0), [r.get(1), r.get(2), r.get(3), r.get(4)]))
                .collect())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_is_required_for_remote_servers_unless_disabled() {
        let none = PgAccess::default();
        let mode = |url: &str| connection_config(url, &none).unwrap().get_ssl_mode();
        assert_eq!(
            mode("postgres://apitap@db.internal:5432/inv"),
            SslMode::Require
        );
        assert_eq!(
            mode("host=10.0.0.7 user=apitap dbname=inv"),
            SslMode::Require
        );
        assert_eq!(mode("postgres://apitap@127.0.0.1/inv"), SslMode::Prefer);
        assert_eq!(mode("postgres://apitap@localhost/inv"), SslMode::Prefer);
        assert_eq!(mode("host=/run/postgresql user=apitap"), SslMode::Prefer);
        // One remote host among several is enough to require TLS.
        assert_eq!(
            mode("host=127.0.0.1,db.internal user=apitap"),
            SslMode::Require
        );
        // An explicit choice is kept.
        assert_eq!(
            mode("postgres://apitap@db.internal/inv?sslmode=disable"),
            SslMode::Disable
        );
    }
}
