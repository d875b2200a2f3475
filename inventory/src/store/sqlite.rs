//! SQLite inventory store: the embedded default (one analyzer, one file).
//!
//! WAL journal, so the HTTP API's reader connection does not block the writer; writes run in
//! `BEGIN IMMEDIATE` transactions.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params, params_from_iter};

use super::{
    MIGRATIONS, Row, ServiceCounts, Store, StoreError, Tx, change_where, common_sql, decode_record,
    endpoint_where, latest_version, service_counts, services_sql, to_i64,
};
use crate::record::{Change, ChangeFilter, EndpointFilter, EndpointKey, EndpointRecord};

/// A SQLite database file (or an in-memory database).
#[derive(Debug)]
pub struct SqliteStore {
    conn: Connection,
}

const ENDPOINT_COLUMNS: &str = "id, record";

impl SqliteStore {
    /// Opens (creating if needed) the database file and applies migrations.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        // Created 0600 before SQLite opens it: SQLite gives its -wal and -shm files the
        // database file's mode, and the inventory names clients and masked samples (R-OPS-3).
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(path)
                .map_err(|source| StoreError::File {
                    path: path.to_path_buf(),
                    source,
                })?;
        }
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        SqliteStore::init(conn)
    }

    /// An in-memory database (tests, throwaway runs).
    pub fn open_in_memory() -> Result<SqliteStore, StoreError> {
        SqliteStore::init(Connection::open_in_memory()?)
    }

    fn init(mut conn: Connection) -> Result<SqliteStore, StoreError> {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute_batch(
            "CREATE TABLE IF NOT EXISTS apitap_schema_migrations (
                version INTEGER PRIMARY KEY,
                applied_unix_us BIGINT NOT NULL)",
        )?;
        let current: i64 = tx.query_row(
            "SELECT COALESCE(MAX(version), 0) FROM apitap_schema_migrations",
            [],
            |r| r.get(0),
        )?;
        if current > latest_version() {
            return Err(StoreError::SchemaTooNew {
                found: current,
                known: latest_version(),
            });
        }
        for m in MIGRATIONS.iter().filter(|m| m.version > current) {
            tx.execute_batch(common_sql(m.version))?;
            tx.execute_batch(m.sqlite)?;
            tx.execute(
                "INSERT INTO apitap_schema_migrations (version, applied_unix_us) VALUES (?1, ?2)",
                params![m.version, to_i64(now_us())],
            )?;
        }
        tx.commit()?;
        Ok(SqliteStore { conn })
    }
}

pub(crate) fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

fn ph(i: usize) -> String {
    format!("?{i}")
}

fn read_records(
    conn: &Connection,
    sql: &str,
    args: &[String],
) -> Result<Vec<EndpointRecord>, StoreError> {
    let mut stmt = conn.prepare(sql)?;
    let rows = stmt.query_map(params_from_iter(args.iter()), |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (id, json) = row?;
        out.push(decode_record(&id, &json)?);
    }
    Ok(out)
}

struct SqliteTx<'a> {
    tx: &'a rusqlite::Transaction<'a>,
}

impl Tx for SqliteTx<'_> {
    fn get(&mut self, id: &str) -> Result<Option<EndpointRecord>, StoreError> {
        let json: Option<String> = self
            .tx
            .query_row(
                "SELECT record FROM inventory_endpoints WHERE id = ?1",
                [id],
                |r| r.get(0),
            )
            .optional()?;
        json.map(|j| decode_record(id, &j)).transpose()
    }

    fn put(&mut self, record: &EndpointRecord) -> Result<(), StoreError> {
        let r = Row::of(record);
        self.tx.execute(
            "INSERT INTO inventory_endpoints (id, service, method, template, operation, style,
                auth, lifecycle, lifecycle_since_unix_us, spec_status, exposure, sensitivity, hits,
                first_seen_unix_us, last_seen_unix_us, updated_unix_us, record, function_class,
                data_labels)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)
             ON CONFLICT (id) DO UPDATE SET style = excluded.style, auth = excluded.auth,
                lifecycle = excluded.lifecycle,
                lifecycle_since_unix_us = excluded.lifecycle_since_unix_us,
                spec_status = excluded.spec_status, exposure = excluded.exposure,
                sensitivity = excluded.sensitivity, hits = excluded.hits,
                first_seen_unix_us = excluded.first_seen_unix_us,
                last_seen_unix_us = excluded.last_seen_unix_us,
                updated_unix_us = excluded.updated_unix_us, record = excluded.record,
                function_class = excluded.function_class, data_labels = excluded.data_labels",
            params![
                r.id,
                r.service,
                r.method,
                r.template,
                r.operation,
                r.style,
                r.auth,
                r.lifecycle,
                r.lifecycle_since,
                r.spec_status,
                r.exposure,
                r.sensitivity,
                r.hits,
                r.first_seen,
                r.last_seen,
                r.updated,
                r.record,
                r.function_class,
                r.data_labels
            ],
        )?;
        Ok(())
    }

    fn delete(&mut self, id: &str) -> Result<(), StoreError> {
        self.tx
            .execute("DELETE FROM inventory_endpoints WHERE id = ?1", [id])?;
        Ok(())
    }

    fn due(
        &mut self,
        inactive_before_us: u64,
        settled_before_us: u64,
    ) -> Result<Vec<EndpointRecord>, StoreError> {
        read_records(
            self.tx,
            &format!(
                "SELECT {ENDPOINT_COLUMNS} FROM inventory_endpoints
                 WHERE (lifecycle <> 'inactive' AND last_seen_unix_us < ?1)
                    OR (lifecycle IN ('new', 'revived') AND lifecycle_since_unix_us < ?2)
                 ORDER BY id"
            ),
            &[
                to_i64(inactive_before_us).to_string(),
                to_i64(settled_before_us).to_string(),
            ],
        )
    }

    fn add_change(&mut self, c: &Change) -> Result<i64, StoreError> {
        self.tx.execute(
            "INSERT INTO inventory_changes (at_unix_us, endpoint_id, service, method, template,
                operation, kind, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                to_i64(c.at_unix_us),
                c.endpoint_id,
                c.key.service,
                c.key.method,
                c.key.template,
                c.key.operation,
                c.kind,
                c.detail.to_string()
            ],
        )?;
        Ok(self.tx.last_insert_rowid())
    }
}

impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    fn transaction(
        &mut self,
        work: &mut (dyn FnMut(&mut dyn Tx) -> Result<(), StoreError> + Send),
    ) -> Result<(), StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        work(&mut SqliteTx { tx: &tx })?;
        tx.commit()?;
        Ok(())
    }

    fn endpoints(&mut self, filter: &EndpointFilter) -> Result<Vec<EndpointRecord>, StoreError> {
        let (clause, args) = endpoint_where(filter, &ph);
        read_records(
            &self.conn,
            &format!("SELECT {ENDPOINT_COLUMNS} FROM inventory_endpoints{clause}"),
            &args,
        )
    }

    fn endpoint(&mut self, id: &str) -> Result<Option<EndpointRecord>, StoreError> {
        let json: Option<String> = self
            .conn
            .query_row(
                "SELECT record FROM inventory_endpoints WHERE id = ?1",
                [id],
                |r| r.get(0),
            )
            .optional()?;
        json.map(|j| decode_record(id, &j)).transpose()
    }

    fn changes(&mut self, filter: &ChangeFilter) -> Result<Vec<Change>, StoreError> {
        let (clause, args) = change_where(filter, &ph);
        let mut stmt = self.conn.prepare(&format!(
            "SELECT seq, at_unix_us, endpoint_id, service, method, template, operation, kind,
                detail FROM inventory_changes{clause}"
        ))?;
        let rows = stmt.query_map(params_from_iter(args.iter()), |r| {
            Ok(Change {
                seq: r.get(0)?,
                at_unix_us: r.get::<_, i64>(1)?.max(0) as u64,
                endpoint_id: r.get(2)?,
                key: EndpointKey {
                    service: r.get(3)?,
                    method: r.get(4)?,
                    template: r.get(5)?,
                    operation: r.get(6)?,
                },
                kind: r.get(7)?,
                detail: serde_json::from_str(&r.get::<_, String>(8)?)
                    .unwrap_or(serde_json::Value::Null),
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    fn schema_version(&mut self) -> Result<i64, StoreError> {
        Ok(self.conn.query_row(
            "SELECT COALESCE(MAX(version), 0) FROM apitap_schema_migrations",
            [],
            |r| r.get(0),
        )?)
    }

    fn services(&mut self, limit: u64, offset: u64) -> Result<Vec<ServiceCounts>, StoreError> {
        let mut stmt = self.conn.prepare(&services_sql(limit, offset))?;
        let rows = stmt.query_map([], |r| {
            Ok(service_counts(
                r.get(0)?,
                [r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?],
            ))
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::EndpointKey;
    use crate::spec::SpecStatus;

    #[test]
    fn file_store_round_trips_and_reopens_without_reapplying_migrations() {
        let dir = std::env::temp_dir().join(format!("apitap-sqlite-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("inv.db");
        let _ = std::fs::remove_file(&path);
        let rec = EndpointRecord::new(
            EndpointKey {
                service: "api".into(),
                method: "GET".into(),
                template: "/x".into(),
                operation: String::new(),
            },
            SpecStatus::NoSpec,
            1,
        );
        {
            let mut s = SqliteStore::open(&path).unwrap();
            s.transaction(&mut |tx| tx.put(&rec)).unwrap();
        }
        let mut s = SqliteStore::open(&path).unwrap();
        assert_eq!(s.schema_version().unwrap(), latest_version());
        assert_eq!(s.endpoint(&rec.id).unwrap(), Some(rec));
        {
            // Issue 22: the database and its WAL are private whatever the umask.
            use std::os::unix::fs::PermissionsExt as _;
            let wal = dir.join("inv.db-wal");
            assert!(wal.exists());
            for f in [&path, &wal] {
                let mode = std::fs::metadata(f).unwrap().permissions().mode() & 0o777;
                assert_eq!(mode, 0o600, "{}", f.display());
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn version_1_database_is_migrated_and_old_records_read_as_unknown() {
        let dir = std::env::temp_dir().join(format!("apitap-sqlite-v1-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("inv.db");
        let _ = std::fs::remove_file(&path);
        let rec = EndpointRecord::new(
            EndpointKey {
                service: "api".into(),
                method: "GET".into(),
                template: "/old".into(),
                operation: String::new(),
            },
            SpecStatus::NoSpec,
            1,
        );
        // A record as version 1 wrote it: no function_class, no sensitive data.
        let mut old = serde_json::to_value(&rec).unwrap();
        old.as_object_mut().unwrap().remove("function_class");
        old["data"].as_object_mut().unwrap().remove("sensitive");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE apitap_schema_migrations (version INTEGER PRIMARY KEY,
                    applied_unix_us BIGINT NOT NULL)",
            )
            .unwrap();
            conn.execute_batch(common_sql(1)).unwrap();
            conn.execute_batch(MIGRATIONS[0].sqlite).unwrap();
            conn.execute_batch(
                "INSERT INTO apitap_schema_migrations (version, applied_unix_us) VALUES (1, 1)",
            )
            .unwrap();
            conn.execute(
                "INSERT INTO inventory_endpoints (id, service, method, template, operation,
                    style, auth, lifecycle, lifecycle_since_unix_us, spec_status, exposure,
                    sensitivity, hits, first_seen_unix_us, last_seen_unix_us, updated_unix_us,
                    record)
                 VALUES (?1, 'api', 'GET', '/old', '', 'rest', ',,', 'new', 1, 'no_spec',
                    'unknown', 'unknown', 0, 0, 0, 1, ?2)",
                params![rec.id, old.to_string()],
            )
            .unwrap();
        }
        let mut s = SqliteStore::open(&path).unwrap();
        assert_eq!(s.schema_version().unwrap(), 2);
        let back = s.endpoint(&rec.id).unwrap().unwrap();
        assert_eq!(back.function_class, "unknown");
        assert_eq!(back.sensitivity, "unknown");
        assert_eq!(back, rec);
        let (fc, labels): (String, String) = s
            .conn
            .query_row(
                "SELECT function_class, data_labels FROM inventory_endpoints WHERE id = ?1",
                [&rec.id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((fc.as_str(), labels.as_str()), ("unknown", ","));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
