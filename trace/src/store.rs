//! The embedded store: a directory of SQLite files, one per time partition.
//!
//! Records are appended to the newest partition (`trace-<seq>.db`, `seq` increasing). A
//! partition is sealed and a new one started when it has covered `partition_secs` of wall
//! time or grown past an eighth of the byte budget, so retention can drop whole files,
//! oldest first: deleting a file frees its disk at once, with no `DELETE` scan and no
//! `VACUUM`. Each partition indexes its records by value hash, client address, account,
//! User-Agent and endpoint, each with the time, so a question is one index range per
//! partition whose time range meets it.
//!
//! Readers ([`TraceReader`]) open the partitions read-only; SQLite's WAL mode lets them read
//! while the writer appends (the CLI and the HTTP API read the same directory as the
//! running analyzer).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OpenFlags, OptionalExtension as _, params};

use crate::record::{
    AccessRecord, Answer, EndpointRef, Hit, MAX_LIMIT, Query, Rows, Selector, account_of,
    matched_of, stored_values, value_key,
};
use crate::{Retention, TraceError};

const SCHEMA: &str = "
PRAGMA journal_mode = WAL;
PRAGMA synchronous = NORMAL;
CREATE TABLE IF NOT EXISTS trace_meta (
    version INTEGER NOT NULL,
    created_unix_s INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS trace_endpoints (
    id INTEGER PRIMARY KEY,
    service TEXT NOT NULL,
    method TEXT NOT NULL,
    template TEXT NOT NULL,
    UNIQUE (service, method, template)
);
CREATE TABLE IF NOT EXISTS trace_access (
    id INTEGER PRIMARY KEY,
    time_us INTEGER NOT NULL,
    event_id TEXT NOT NULL,
    endpoint INTEGER NOT NULL,
    status INTEGER,
    client_ip BLOB NOT NULL,
    account_kind INTEGER,
    account INTEGER,
    ua_family TEXT NOT NULL,
    ua_key INTEGER NOT NULL,
    records INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS trace_access_time ON trace_access (time_us);
CREATE INDEX IF NOT EXISTS trace_access_ip ON trace_access (client_ip, time_us);
CREATE INDEX IF NOT EXISTS trace_access_account ON trace_access (account, time_us)
    WHERE account IS NOT NULL;
CREATE INDEX IF NOT EXISTS trace_access_ua ON trace_access (ua_key, time_us);
CREATE INDEX IF NOT EXISTS trace_access_endpoint ON trace_access (endpoint, time_us);
CREATE TABLE IF NOT EXISTS trace_values (
    hash INTEGER NOT NULL,
    access INTEGER NOT NULL,
    label INTEGER NOT NULL,
    direction INTEGER NOT NULL,
    PRIMARY KEY (hash, access, label, direction)
) WITHOUT ROWID;
";

/// Writer settings (not stored in the file).
const WRITER_PRAGMAS: &str = "PRAGMA cache_size = -65536; PRAGMA temp_store = MEMORY;";

/// The store format version, in each partition's `trace_meta`.
pub const FORMAT_VERSION: i64 = 1;

/// Endpoints remembered per partition for their ids; beyond, ids are looked up.
const ENDPOINT_CACHE_MAX: usize = 65_536;

/// Partition file name prefix and suffix.
const PREFIX: &str = "trace-";
const SUFFIX: &str = ".db";

/// What retention removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Evicted {
    /// Partitions deleted.
    pub partitions: u64,
    /// Records they held.
    pub records: u64,
    /// Bytes they used on disk.
    pub bytes: u64,
}

/// The writer of a trace directory (one per directory: the analyzer's writer thread).
#[derive(Debug)]
pub struct TraceStore {
    dir: PathBuf,
    retention: Retention,
    current: Partition,
    /// Sealed partitions, oldest first: sequence number, records, bytes.
    sealed: Vec<(u64, u64, u64)>,
}

#[derive(Debug)]
struct Partition {
    seq: u64,
    conn: Connection,
    opened: SystemTime,
    records: u64,
    endpoints: HashMap<EndpointRef, i64>,
}

fn partition_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{PREFIX}{seq:010}{SUFFIX}"))
}

/// The partitions of a directory, oldest first.
fn list_partitions(dir: &Path) -> Result<Vec<(u64, PathBuf)>, TraceError> {
    let mut out = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|source| TraceError::Dir {
        path: dir.to_path_buf(),
        source,
    })?;
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(seq) = name
            .strip_prefix(PREFIX)
            .and_then(|s| s.strip_suffix(SUFFIX))
            .and_then(|s| s.parse::<u64>().ok())
        else {
            continue;
        };
        out.push((seq, e.path()));
    }
    out.sort_unstable_by_key(|(s, _)| *s);
    Ok(out)
}

/// Bytes a partition uses on disk (database, WAL and shared-memory files).
fn partition_bytes(path: &Path) -> u64 {
    let mut total = 0;
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        if let Ok(m) = std::fs::metadata(PathBuf::from(p)) {
            total += m.len();
        }
    }
    total
}

fn remove_partition(path: &Path) {
    for suffix in ["-wal", "-shm", ""] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        // A missing file is fine: SQLite removes the WAL on a clean close.
        let _ = std::fs::remove_file(PathBuf::from(p));
    }
}

fn open_private(path: &Path) -> Result<Connection, TraceError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    // Created 0600 before SQLite opens it: the records are personal data (hashed, but linked
    // to addresses and accounts).
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(|source| TraceError::Dir {
            path: path.to_path_buf(),
            source,
        })?;
    let conn = Connection::open(path)?;
    conn.execute_batch(SCHEMA)?;
    // The writer's page cache holds a partition's index pages (random keys: with SQLite's
    // 2 MiB default every insert missed it, 25 000 records/s instead of ~100 000).
    conn.execute_batch(WRITER_PRAGMAS)?;
    let have: Option<i64> = conn
        .query_row("SELECT version FROM trace_meta LIMIT 1", [], |r| r.get(0))
        .optional()?;
    match have {
        None => {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs() as i64;
            conn.execute(
                "INSERT INTO trace_meta (version, created_unix_s) VALUES (?1, ?2)",
                params![FORMAT_VERSION, now],
            )?;
        }
        Some(v) if v > FORMAT_VERSION => {
            return Err(TraceError::FormatTooNew {
                path: path.to_path_buf(),
                found: v,
            });
        }
        Some(_) => {}
    }
    Ok(conn)
}

fn count_records(conn: &Connection) -> Result<u64, TraceError> {
    let n: i64 = conn.query_row("SELECT count(*) FROM trace_access", [], |r| r.get(0))?;
    Ok(n as u64)
}

impl TraceStore {
    /// Opens (or creates, 0700) the directory and continues its newest partition.
    pub fn open(dir: &Path, retention: Retention) -> Result<TraceStore, TraceError> {
        use std::os::unix::fs::DirBuilderExt as _;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| TraceError::Dir {
                path: dir.to_path_buf(),
                source,
            })?;
        let mut parts = list_partitions(dir)?;
        let newest = parts.pop();
        let mut sealed = Vec::with_capacity(parts.len());
        for (seq, path) in parts {
            let records = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY)
                .map_err(TraceError::from)
                .and_then(|c| count_records(&c))
                .unwrap_or(0);
            sealed.push((seq, records, partition_bytes(&path)));
        }
        let seq = newest.map_or(0, |(s, _)| s);
        let conn = open_private(&partition_path(dir, seq))?;
        let records = count_records(&conn)?;
        Ok(TraceStore {
            dir: dir.to_path_buf(),
            retention,
            current: Partition {
                seq,
                conn,
                opened: SystemTime::now(),
                records,
                endpoints: HashMap::new(),
            },
            sealed,
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends records in one transaction.
    pub fn append(&mut self, batch: &[AccessRecord]) -> Result<(), TraceError> {
        if batch.is_empty() {
            return Ok(());
        }
        let p = &mut self.current;
        let tx = p.conn.transaction()?;
        {
            let mut ins_ep = tx.prepare_cached(
                "INSERT INTO trace_endpoints (service, method, template) VALUES (?1, ?2, ?3)
                 ON CONFLICT (service, method, template) DO UPDATE SET service = excluded.service
                 RETURNING id",
            )?;
            let mut ins = tx.prepare_cached(
                "INSERT INTO trace_access (time_us, event_id, endpoint, status, client_ip,
                     account_kind, account, ua_family, ua_key, records)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )?;
            let mut ins_v = tx.prepare_cached(
                "INSERT OR IGNORE INTO trace_values (hash, access, label, direction)
                 VALUES (?1, ?2, ?3, ?4)",
            )?;
            for r in batch {
                let ep = match p.endpoints.get(&r.endpoint) {
                    Some(id) => *id,
                    None => {
                        let e = &r.endpoint;
                        let id: i64 = ins_ep
                            .query_row(params![e.service, e.method, e.template], |row| {
                                row.get(0)
                            })?;
                        if p.endpoints.len() >= ENDPOINT_CACHE_MAX {
                            p.endpoints.clear();
                        }
                        p.endpoints.insert(r.endpoint.clone(), id);
                        id
                    }
                };
                ins.execute(params![
                    r.time_us as i64,
                    r.event_id,
                    ep,
                    r.status,
                    ip_bytes(r.client_ip),
                    r.account.map(|a| a.code()),
                    r.account.map(|a| a.key as i64),
                    r.ua_family,
                    r.ua_key as i64,
                    r.records,
                ])?;
                let access = tx.last_insert_rowid();
                for v in stored_values(r) {
                    ins_v.execute(params![v.0, access, v.1, v.2])?;
                }
            }
        }
        tx.commit()?;
        p.records += batch.len() as u64;
        Ok(())
    }

    /// Seals the current partition when it is old or large enough, then applies retention
    /// at `now`. Call it between batches (the writer does, about once a second).
    pub fn maintain(&mut self, now: SystemTime) -> Result<Evicted, TraceError> {
        let age = now
            .duration_since(self.current.opened)
            .unwrap_or(Duration::ZERO);
        let bytes = partition_bytes(&partition_path(&self.dir, self.current.seq));
        let part_cap = (self.retention.max_bytes / 8).max(1);
        if self.current.records > 0
            && (age.as_secs() >= self.retention.partition_secs || bytes >= part_cap)
        {
            self.rotate()?;
        }
        self.evict(now)
    }

    /// Seals the current partition and starts the next.
    pub fn rotate(&mut self) -> Result<(), TraceError> {
        let seq = self.current.seq + 1;
        let conn = open_private(&partition_path(&self.dir, seq))?;
        let old = std::mem::replace(
            &mut self.current,
            Partition {
                seq,
                conn,
                opened: SystemTime::now(),
                records: 0,
                endpoints: HashMap::new(),
            },
        );
        // Fold the WAL into the file so the sealed partition is one file.
        let _ = old
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
        let (old_seq, old_records) = (old.seq, old.records);
        drop(old.conn);
        let bytes = partition_bytes(&partition_path(&self.dir, old_seq));
        self.sealed.push((old_seq, old_records, bytes));
        Ok(())
    }

    /// Deletes sealed partitions past the retention days, then the oldest ones while the
    /// directory is over its byte budget (the current partition is never deleted).
    fn evict(&mut self, now: SystemTime) -> Result<Evicted, TraceError> {
        let mut out = Evicted::default();
        let horizon = now
            .checked_sub(Duration::from_secs(
                self.retention.max_age_days.saturating_mul(86_400),
            ))
            .unwrap_or(UNIX_EPOCH);
        let horizon_us = horizon
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_micros() as i64;
        let current_bytes = partition_bytes(&partition_path(&self.dir, self.current.seq));
        let mut total: u64 = current_bytes + self.sealed.iter().map(|s| s.2).sum::<u64>();
        while let Some(&(seq, records, bytes)) = self.sealed.first() {
            let path = partition_path(&self.dir, seq);
            let newest = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY)
                .and_then(|c| {
                    c.query_row("SELECT max(time_us) FROM trace_access", [], |r| {
                        r.get::<_, Option<i64>>(0)
                    })
                })
                .ok()
                .flatten()
                .unwrap_or(i64::MIN);
            let too_old = newest < horizon_us;
            if !(too_old || total > self.retention.max_bytes) {
                break;
            }
            remove_partition(&path);
            self.sealed.remove(0);
            total = total.saturating_sub(bytes);
            out.partitions += 1;
            out.records += records;
            out.bytes += bytes;
        }
        Ok(out)
    }

    /// Records and bytes held now.
    pub fn usage(&self) -> (u64, u64) {
        let current_bytes = partition_bytes(&partition_path(&self.dir, self.current.seq));
        (
            self.current.records + self.sealed.iter().map(|s| s.1).sum::<u64>(),
            current_bytes + self.sealed.iter().map(|s| s.2).sum::<u64>(),
        )
    }
}

impl crate::TraceSink for TraceStore {
    fn append_batch(&mut self, batch: &[AccessRecord]) -> Result<u64, TraceError> {
        self.append(batch).map(|()| 0)
    }

    fn maintain(&mut self, now: SystemTime) -> Result<Evicted, TraceError> {
        TraceStore::maintain(self, now)
    }

    fn usage(&self) -> (u64, u64) {
        TraceStore::usage(self)
    }
}

fn ip_bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v) => v.octets().to_vec(),
        IpAddr::V6(v) => match v.to_ipv4_mapped() {
            Some(v4) => v4.octets().to_vec(),
            None => v.octets().to_vec(),
        },
    }
}

fn ip_of(bytes: &[u8]) -> IpAddr {
    match bytes.len() {
        4 => {
            let mut b = [0u8; 4];
            b.copy_from_slice(bytes);
            IpAddr::V4(Ipv4Addr::from(b))
        }
        16 => {
            let mut b = [0u8; 16];
            b.copy_from_slice(bytes);
            IpAddr::V6(Ipv6Addr::from(b))
        }
        _ => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    }
}

/// Answers questions over a trace store (read-only; any number at once): a trace directory
/// or a PostgreSQL database, with the same answers.
#[derive(Debug, Clone)]
pub struct TraceReader {
    backend: ReaderBackend,
}

#[derive(Debug, Clone)]
enum ReaderBackend {
    Dir(PathBuf),
    Postgres(std::sync::Arc<crate::postgres::PgReader>),
}

impl TraceReader {
    /// Over this directory (it must exist).
    pub fn open(dir: &Path) -> Result<TraceReader, TraceError> {
        if !dir.is_dir() {
            return Err(TraceError::Dir {
                path: dir.to_path_buf(),
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            });
        }
        Ok(TraceReader {
            backend: ReaderBackend::Dir(dir.to_path_buf()),
        })
    }

    /// Over a PostgreSQL database ([`crate::PgTraceStore`]'s tables), connecting on the first
    /// question and again after a failure.
    pub fn postgres(connect: crate::Connect) -> TraceReader {
        TraceReader {
            backend: ReaderBackend::Postgres(std::sync::Arc::new(crate::postgres::PgReader::new(
                connect,
            ))),
        }
    }

    /// Answers a question: the matching transactions in the time window, oldest first.
    pub fn query(&self, q: &Query) -> Result<Answer, TraceError> {
        match &self.backend {
            ReaderBackend::Dir(dir) => query_dir(dir, q),
            ReaderBackend::Postgres(pg) => pg.query(q),
        }
    }
}

fn query_dir(dir: &Path, q: &Query) -> Result<Answer, TraceError> {
    let limit = q.limit.clamp(1, MAX_LIMIT);
    let mut answer = Answer::default();
    let since = i64::try_from(q.since_us).unwrap_or(i64::MAX);
    let until = i64::try_from(q.until_us).unwrap_or(i64::MAX);
    for (_, path) in list_partitions(dir)? {
        let conn = match Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        ) {
            Ok(c) => c,
            // Deleted by retention between the listing and the open.
            Err(_) if !path.exists() => continue,
            Err(e) => return Err(e.into()),
        };
        let range: (Option<i64>, Option<i64>) = match conn.query_row(
            // Two subqueries: min() and max() together would scan the whole index.
            "SELECT (SELECT min(time_us) FROM trace_access),
                        (SELECT max(time_us) FROM trace_access)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        ) {
            Ok(r) => r,
            // A partition created but not yet initialised by the writer.
            Err(rusqlite::Error::SqliteFailure(_, _)) => continue,
            Err(e) => return Err(e.into()),
        };
        let (Some(lo), Some(hi)) = range else {
            continue;
        };
        if hi < since || lo > until {
            continue;
        }
        answer.partitions_searched += 1;
        let want = limit + 1 - answer.hits.len();
        search_partition(&conn, &q.selector, since, until, want, &mut answer.hits)?;
        if answer.hits.len() > limit {
            break;
        }
    }
    // Partitions are by arrival: a late event can sit after newer ones.
    answer.finish(limit);
    Ok(answer)
}

const HIT_COLUMNS: &str = "a.id, a.time_us, a.event_id, e.service, e.method, e.template, a.status,
    a.client_ip, a.account_kind, a.account, a.ua_family, a.ua_key, a.records";

fn hit_of(row: &rusqlite::Row<'_>) -> rusqlite::Result<(i64, Hit)> {
    let ip: Vec<u8> = row.get(7)?;
    let kind: Option<i64> = row.get(8)?;
    let key: Option<i64> = row.get(9)?;
    let ua_key: i64 = row.get(11)?;
    Ok((
        row.get(0)?,
        Hit {
            time_us: row.get::<_, i64>(1)? as u64,
            event_id: row.get(2)?,
            endpoint: EndpointRef {
                service: row.get(3)?,
                method: row.get(4)?,
                template: row.get(5)?,
            },
            status: row.get(6)?,
            client_ip: ip_of(&ip),
            account: account_of(kind, key),
            ua_family: row.get(10)?,
            ua_key: format!("{:016x}", ua_key as u64),
            records: row.get(12)?,
            matched: Vec::new(),
        },
    ))
}

/// Appends to `rows` the hits whose `column` equals each of `values` in turn (one index range
/// each), oldest first, at most `want` per value.
#[allow(clippy::too_many_arguments)]
fn by_column(
    conn: &Connection,
    base: &str,
    column: &str,
    values: &[&dyn rusqlite::ToSql],
    since: i64,
    until: i64,
    want: i64,
    rows: &mut Rows,
) -> Result<(), TraceError> {
    let mut st = conn.prepare(&format!(
        "{base} WHERE {column} = ?1 AND a.time_us BETWEEN ?2 AND ?3
         ORDER BY a.time_us, a.id LIMIT ?4"
    ))?;
    for v in values {
        for r in st.query_map(params![v, since, until, want], hit_of)? {
            let (id, hit) = r?;
            rows.push(id, hit);
        }
    }
    Ok(())
}

fn search_partition(
    conn: &Connection,
    selector: &Selector,
    since: i64,
    until: i64,
    want: usize,
    out: &mut Vec<Hit>,
) -> Result<(), TraceError> {
    let want = want as i64;
    let base = format!(
        "SELECT {HIT_COLUMNS} FROM trace_access a JOIN trace_endpoints e ON e.id = a.endpoint"
    );
    let mut rows = Rows::default();
    match selector {
        Selector::Ip(ip) => {
            by_column(
                conn,
                &base,
                "a.client_ip",
                &[&ip_bytes(*ip)],
                since,
                until,
                want,
                &mut rows,
            )?;
        }
        Selector::UserAgent(key) => {
            by_column(
                conn,
                &base,
                "a.ua_key",
                &[&(*key as i64)],
                since,
                until,
                want,
                &mut rows,
            )?;
        }
        Selector::Accounts(keys) => {
            let keys: Vec<i64> = keys.iter().map(|k| *k as i64).collect();
            let keys: Vec<&dyn rusqlite::ToSql> =
                keys.iter().map(|k| k as &dyn rusqlite::ToSql).collect();
            by_column(
                conn,
                &base,
                "a.account",
                &keys,
                since,
                until,
                want,
                &mut rows,
            )?;
        }
        Selector::Endpoint(ep) => {
            let mut st = conn.prepare(&format!(
                "{base} WHERE e.service = ?1 AND e.method = ?2 AND e.template = ?3
                 AND a.time_us BETWEEN ?4 AND ?5 ORDER BY a.time_us, a.id LIMIT ?6"
            ))?;
            for r in st.query_map(
                params![ep.service, ep.method, ep.template, since, until, want],
                hit_of,
            )? {
                let (id, hit) = r?;
                rows.push(id, hit);
            }
        }
        Selector::Values(hashes) => {
            // One index range per asked hash; a transaction that carried several of them
            // (or one in both directions) is one hit listing each.
            let mut st = conn.prepare(&format!(
                "SELECT {HIT_COLUMNS}, v.label, v.direction FROM trace_values v
                 JOIN trace_access a ON a.id = v.access
                 JOIN trace_endpoints e ON e.id = a.endpoint
                 WHERE v.hash = ?1 AND a.time_us BETWEEN ?2 AND ?3
                 ORDER BY a.time_us, a.id LIMIT ?4"
            ))?;
            for h in hashes {
                let mapped = st.query_map(params![value_key(h), since, until, want], |row| {
                    let (id, hit) = hit_of(row)?;
                    Ok((id, hit, row.get::<_, i64>(13)?, row.get::<_, i64>(14)?))
                })?;
                for r in mapped {
                    let (id, hit, label, dir) = r?;
                    rows.push_value(id, hit, matched_of(label, dir));
                }
            }
        }
    }
    rows.finish(usize::try_from(want).unwrap_or(usize::MAX), out);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{AccountRef, TracedValue};
    use apitap_labels::{Direction, Label, ValueHash};

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("apitap-trace-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn rec(i: u64, ip: &str, value: Option<u8>) -> AccessRecord {
        AccessRecord {
            time_us: 1_700_000_000_000_000 + i * 1_000_000,
            event_id: format!("{i:032x}"),
            endpoint: EndpointRef {
                service: "api".into(),
                method: "GET".into(),
                template: if i.is_multiple_of(2) { "/a/{id}" } else { "/b" }.into(),
            },
            status: Some(200),
            client_ip: ip.parse().unwrap(),
            account: i.is_multiple_of(3).then_some(AccountRef {
                kind: "jwt_sub",
                key: 7,
            }),
            ua_family: "curl".into(),
            ua_key: 40 + i % 2,
            records: 1,
            values: value
                .map(|v| TracedValue {
                    hash: ValueHash([v; 16]),
                    label: Label::ALL[0],
                    direction: Direction::Response,
                })
                .into_iter()
                .collect(),
        }
    }

    fn q(selector: Selector) -> Query {
        Query {
            selector,
            since_us: 0,
            until_us: u64::MAX,
            limit: 100,
        }
    }

    fn ids(a: &Answer) -> Vec<String> {
        a.hits
            .iter()
            .map(|h| h.event_id[28..].to_string())
            .collect()
    }

    #[test]
    fn every_selector_finds_exactly_its_records() {
        let d = dir("sel");
        let mut s = TraceStore::open(&d, Retention::default()).unwrap();
        let batch: Vec<_> = (0..10)
            .map(|i| {
                rec(
                    i,
                    if i < 5 { "10.0.0.1" } else { "::ffff:10.0.0.2" },
                    (i % 4 == 1).then_some(9),
                )
            })
            .collect();
        s.append(&batch[..6]).unwrap();
        s.rotate().unwrap();
        s.append(&batch[6..]).unwrap();
        let r = TraceReader::open(&d).unwrap();
        let ip = r
            .query(&q(Selector::Ip("10.0.0.2".parse().unwrap())))
            .unwrap();
        assert_eq!(ids(&ip), ["0005", "0006", "0007", "0008", "0009"]);
        assert_eq!(ip.partitions_searched, 2);
        let v = r
            .query(&q(Selector::Values(vec![ValueHash([9; 16])])))
            .unwrap();
        assert_eq!(ids(&v), ["0001", "0005", "0009"]);
        assert_eq!(v.hits[0].matched[0].direction, "response");
        assert!(
            r.query(&q(Selector::Values(vec![ValueHash([8; 16])])))
                .unwrap()
                .hits
                .is_empty()
        );
        let a = r.query(&q(Selector::Accounts(vec![7]))).unwrap();
        assert_eq!(ids(&a), ["0000", "0003", "0006", "0009"]);
        assert_eq!(
            a.hits[0].account.as_deref(),
            Some("jwt_sub:0000000000000007")
        );
        let ua = r.query(&q(Selector::UserAgent(41))).unwrap();
        assert_eq!(ids(&ua), ["0001", "0003", "0005", "0007", "0009"]);
        let ep = r
            .query(&q(Selector::Endpoint(EndpointRef {
                service: "api".into(),
                method: "GET".into(),
                template: "/b".into(),
            })))
            .unwrap();
        assert_eq!(ep.hits.len(), 5);
        // Time window and limit.
        let mut w = q(Selector::Ip("10.0.0.1".parse().unwrap()));
        w.since_us = rec(1, "10.0.0.1", None).time_us;
        w.until_us = rec(3, "10.0.0.1", None).time_us;
        assert_eq!(ids(&r.query(&w).unwrap()), ["0001", "0002", "0003"]);
        w.limit = 2;
        let t = r.query(&w).unwrap();
        assert_eq!(ids(&t), ["0001", "0002"]);
        assert!(t.truncated);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn reopening_continues_the_newest_partition() {
        let d = dir("reopen");
        let mut s = TraceStore::open(&d, Retention::default()).unwrap();
        s.append(&[rec(0, "10.0.0.1", None)]).unwrap();
        s.rotate().unwrap();
        s.append(&[rec(1, "10.0.0.1", None)]).unwrap();
        drop(s);
        let mut s = TraceStore::open(&d, Retention::default()).unwrap();
        assert_eq!(s.usage().0, 2);
        s.append(&[rec(2, "10.0.0.1", None)]).unwrap();
        assert_eq!(list_partitions(&d).unwrap().len(), 2);
        let r = TraceReader::open(&d).unwrap();
        assert_eq!(
            r.query(&q(Selector::Ip("10.0.0.1".parse().unwrap())))
                .unwrap()
                .hits
                .len(),
            3
        );
        use std::os::unix::fs::PermissionsExt as _;
        for (_, p) in list_partitions(&d).unwrap() {
            assert_eq!(
                std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        assert_eq!(
            std::fs::metadata(&d).unwrap().permissions().mode() & 0o777,
            0o700
        );
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn retention_deletes_oldest_partitions_by_bytes_and_by_age() {
        let d = dir("ret");
        let retention = Retention {
            max_age_days: 10_000,
            max_bytes: 1 << 20,
            partition_secs: 3600,
        };
        let mut s = TraceStore::open(&d, retention).unwrap();
        let now = SystemTime::now();
        // Bytes: 40 000 records with values in batches; partitions seal at 128 KiB.
        let mut evicted = Evicted::default();
        for b in 0..40u64 {
            let batch: Vec<_> = (0..1000)
                .map(|i| rec(b * 1000 + i, "10.0.0.1", Some((i % 200) as u8)))
                .collect();
            s.append(&batch).unwrap();
            let e = s.maintain(now).unwrap();
            evicted.partitions += e.partitions;
            evicted.records += e.records;
        }
        let (held, bytes) = s.usage();
        assert!(evicted.partitions > 0, "{evicted:?}");
        assert_eq!(held + evicted.records, 40_000);
        assert!(bytes <= (1 << 20) + (1 << 20) / 8 + 65_536, "{bytes}");
        // The newest records are kept, the oldest gone.
        let r = TraceReader::open(&d).unwrap();
        let all = r
            .query(&q(Selector::Ip("10.0.0.1".parse().unwrap())))
            .unwrap();
        assert!(all.hits[0].time_us > rec(0, "10.0.0.1", None).time_us);
        // Age: every record is from 2023, so a day's retention keeps only the current partition.
        let later = UNIX_EPOCH + Duration::from_secs(1_700_000_000 + 40 * 86_400);
        s.retention.max_age_days = 1;
        s.rotate().unwrap();
        s.maintain(later).unwrap();
        assert_eq!(s.usage().0, 0);
        let _ = std::fs::remove_dir_all(&d);
    }
}
