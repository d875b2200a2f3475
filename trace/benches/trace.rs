//! Trace-back at scale (issue 20: "answers in well under a second on 10 M records"): fills a
//! store with synthetic records — 10 M by default (`APITAP_TRACE_BENCH_RECORDS`), ten
//! partitions, 100 000 client addresses, 1 M distinct sensitive values (two per record),
//! 50 000 accounts, 1 000 User-Agents, 500 endpoints — then asks 200 questions of each kind
//! (limit 100) and prints their latency next to the baseline: the same question answered by
//! a scan of the records without the store's indexes (`NOT INDEXED`, or `+column` for the values table whose key is the hash; on one partition, so
//! the baseline's time is per tenth of the data).
//!
//! With `APITAP_TRACE_BENCH_PG_URL=postgres://…` the same records go to the PostgreSQL store
//! too ([`PgTraceStore`]: day partitions, binary `COPY` in batches of 4096), the records'
//! times spread over ten days (ten day partitions), and the same questions are timed
//! against it; its table follows the embedded one. `APITAP_TRACE_BENCH_BACKENDS=postgres`
//! (or `embedded`) measures one only.
//!
//! `cargo bench -p apitap-trace --bench trace`. The store goes under `CARGO_TARGET_DIR` (or
//! `target/`) and is deleted afterwards; it needs about 2.4 GB of disk at 10 M records (the
//! PostgreSQL tables, dropped afterwards, about as much again).
#![allow(clippy::unwrap_used, clippy::expect_used)] // bench code

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use apitap_labels::{Direction, Label, ValueHash};
use apitap_trace::{
    AccessRecord, AccountRef, EndpointRef, PgTraceStore, Query, Retention, Selector, TraceReader,
    TraceSink, TraceStore, TracedValue, value_key,
};

const IPS: u64 = 100_000;
const VALUES: u64 = 1_000_000;
const ACCOUNTS: u64 = 50_000;
const UAS: u64 = 1_000;
const ENDPOINTS: u64 = 500;
const PARTITIONS: u64 = 10;
const QUESTIONS: usize = 200;

/// SplitMix64: deterministic, so runs compare.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn value_hash(v: u64) -> ValueHash {
    let mut h = [0u8; 16];
    h[..8].copy_from_slice(&v.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_be_bytes());
    h[8..].copy_from_slice(&v.to_le_bytes());
    ValueHash(h)
}

fn ip(i: u64) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0x0A00_0000 + i as u32))
}

fn endpoint(i: u64) -> EndpointRef {
    EndpointRef {
        service: format!("svc{}", i % 20),
        method: if i.is_multiple_of(3) { "POST" } else { "GET" }.into(),
        template: format!("/api/v1/resource{i}/{{id}}"),
    }
}

/// Ten days, over which the records' times are spread (ten PostgreSQL day partitions).
const SPAN_US: u64 = 10 * 86_400_000_000;

fn record(rng: &mut Rng, i: u64, n: u64) -> AccessRecord {
    AccessRecord {
        // 2023-11-15 00:00 UTC, the start of a day.
        time_us: 1_700_006_400_000_000 + i * (SPAN_US / n.max(1)),
        event_id: format!("{:032x}", rng.next() as u128 | ((i as u128) << 64)),
        endpoint: endpoint(rng.below(ENDPOINTS)),
        status: Some(200),
        client_ip: ip(rng.below(IPS)),
        account: Some(AccountRef {
            kind: "jwt_sub",
            key: rng.below(ACCOUNTS),
        }),
        ua_family: "browser".into(),
        ua_key: rng.below(UAS),
        records: 1,
        values: (0..2)
            .map(|_| TracedValue {
                hash: value_hash(rng.below(VALUES)),
                label: Label::PrcId,
                direction: Direction::Response,
            })
            .collect(),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p) as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let n: u64 = std::env::var("APITAP_TRACE_BENCH_RECORDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000_000);
    let backends = std::env::var("APITAP_TRACE_BENCH_BACKENDS")
        .unwrap_or_else(|_| "embedded,postgres".to_owned());
    let retention = Retention {
        max_age_days: 100_000,
        max_bytes: u64::MAX / 2,
        partition_secs: u64::MAX / 2,
    };
    if backends.contains("embedded") {
        embedded(n, retention);
    }
    match std::env::var("APITAP_TRACE_BENCH_PG_URL") {
        Ok(url) if backends.contains("postgres") => postgres(n, retention, &url),
        _ => println!(
            "PostgreSQL: not measured (set APITAP_TRACE_BENCH_PG_URL=postgres://… to a \
             database the bench may fill and empty)"
        ),
    }
}

/// Writes `n` records in batches of 4096, calling `seal` at every tenth; the time taken.
fn fill<S: TraceSink>(store: &mut S, n: u64, seal: fn(&mut S)) -> Duration {
    let mut rng = Rng(42);
    let started = Instant::now();
    let per_partition = n.div_ceil(PARTITIONS);
    let mut batch = Vec::with_capacity(4096);
    for i in 0..n {
        batch.push(record(&mut rng, i, n));
        if batch.len() == 4096 || i + 1 == n {
            assert_eq!(store.append_batch(&batch).unwrap(), 0);
            batch.clear();
        }
        if (i + 1) % per_partition == 0 && i + 1 < n {
            seal(store);
        }
    }
    started.elapsed()
}

fn report_fill(name: &str, held: u64, bytes: u64, took: Duration) {
    println!(
        "trace bench ({name}): {held} records, {:.0} MB ({:.0} B/record), written in {:.0} s \
         at {:.0} records/s",
        bytes as f64 / 1e6,
        bytes as f64 / held.max(1) as f64,
        took.as_secs_f64(),
        held as f64 / took.as_secs_f64()
    );
}

fn embedded(n: u64, retention: Retention) {
    let root = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let dir = root.join(format!("bench-trace-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut store = TraceStore::open(&dir, retention).unwrap();
    let took = fill(&mut store, n, |s| s.rotate().unwrap());
    let (held, bytes) = store.usage();
    drop(store);
    report_fill("embedded", held, bytes, took);
    let reader = TraceReader::open(&dir).unwrap();
    // One partition, opened directly, for the unindexed baseline.
    let first = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "db"))
        .min()
        .unwrap();
    let raw =
        rusqlite::Connection::open_with_flags(&first, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    questions(&reader, Some(&raw));
    if std::env::var_os("APITAP_TRACE_BENCH_KEEP").is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        println!("kept {}", dir.display());
    }
}

fn postgres(n: u64, retention: Retention, url: &str) {
    let connect = {
        let url = url.to_owned();
        std::sync::Arc::new(move || postgres::Client::connect(&url, postgres::NoTls))
            as apitap_trace::Connect
    };
    let drop_tables = || {
        let mut c = connect().unwrap();
        c.batch_execute(
            "DROP TABLE IF EXISTS apitap_trace_access, apitap_trace_values, \
             apitap_trace_endpoints, apitap_trace_meta; \
             DROP SEQUENCE IF EXISTS apitap_trace_access_ids",
        )
        .unwrap();
    };
    drop_tables();
    let mut store = PgTraceStore::new(connect.clone(), retention);
    let took = fill(&mut store, n, |_| {});
    store.maintain(std::time::SystemTime::now()).unwrap();
    let (held, bytes) = store.usage();
    drop(store);
    report_fill("PostgreSQL", held, bytes, took);
    // Fresh statistics, as autovacuum would have them after a load.
    connect()
        .unwrap()
        .batch_execute("ANALYZE apitap_trace_access; ANALYZE apitap_trace_values")
        .unwrap();
    questions(&TraceReader::postgres(connect.clone()), None);
    if std::env::var_os("APITAP_TRACE_BENCH_KEEP").is_none() {
        drop_tables();
    }
}

/// Times 200 questions of each kind (and, for the embedded store, the unindexed scan).
fn questions(reader: &TraceReader, raw: Option<&rusqlite::Connection>) {
    let mut q = Rng(7);
    type Kind = (&'static str, Box<dyn Fn(&mut Rng) -> (Selector, String)>);
    let kinds: Vec<Kind> = vec![
        (
            "value hash",
            Box::new(|r: &mut Rng| {
                let h = value_hash(r.below(VALUES));
                (
                    Selector::Values(vec![h]),
                    format!(
                        "SELECT count(*) FROM trace_values WHERE +hash = {}",
                        value_key(&h)
                    ),
                )
            }),
        ),
        (
            "client address",
            Box::new(|r: &mut Rng| {
                let i = r.below(IPS);
                let IpAddr::V4(v4) = ip(i) else {
                    unreachable!()
                };
                let hex: String = v4.octets().iter().map(|b| format!("{b:02X}")).collect();
                (
                    Selector::Ip(ip(i)),
                    format!(
                        "SELECT count(*) FROM trace_access NOT INDEXED WHERE client_ip = x'{hex}'"
                    ),
                )
            }),
        ),
        (
            "account",
            Box::new(|r: &mut Rng| {
                let k = r.below(ACCOUNTS);
                (
                    Selector::Accounts(vec![k]),
                    format!("SELECT count(*) FROM trace_access NOT INDEXED WHERE account = {k}"),
                )
            }),
        ),
        (
            "User-Agent",
            Box::new(|r: &mut Rng| {
                let k = r.below(UAS);
                (
                    Selector::UserAgent(k),
                    format!("SELECT count(*) FROM trace_access NOT INDEXED WHERE ua_key = {k}"),
                )
            }),
        ),
        (
            "endpoint",
            Box::new(|r: &mut Rng| {
                let i = r.below(ENDPOINTS);
                (
                    Selector::Endpoint(endpoint(i)),
                    format!(
                        "SELECT count(*) FROM trace_access NOT INDEXED WHERE endpoint = \
                         (SELECT id FROM trace_endpoints WHERE template = '/api/v1/resource{i}/{{id}}')"
                    ),
                )
            }),
        ),
    ];
    println!(
        "{:<15} {:>9} {:>9} {:>9} {:>7} | {:>16} {:>8}",
        "question", "p50 ms", "p99 ms", "max ms", "hits", "baseline p50 ms", "ratio"
    );
    for (name, make) in &kinds {
        let mut times = Vec::with_capacity(QUESTIONS);
        let mut hits = 0usize;
        let mut base = Vec::new();
        for k in 0..QUESTIONS {
            let (selector, scan) = make(&mut q);
            let query = Query {
                selector,
                since_us: 0,
                until_us: u64::MAX,
                limit: 100,
            };
            let t = Instant::now();
            let a = reader.query(&query).unwrap();
            times.push(t.elapsed());
            hits += a.hits.len();
            // The scan is slow: ten of them give its median.
            if k < 10
                && let Some(raw) = raw
            {
                let t = Instant::now();
                let _: i64 = raw.query_row(&scan, [], |r| r.get(0)).unwrap();
                base.push(t.elapsed() * PARTITIONS as u32);
            }
        }
        times.sort_unstable();
        base.sort_unstable();
        let p50 = percentile(&times, 0.5);
        let baseline = if base.is_empty() {
            format!("{:>16} {:>8}", "-", "-")
        } else {
            let b50 = percentile(&base, 0.5);
            format!(
                "{:>16.1} {:>7.4}×",
                ms(b50),
                p50.as_secs_f64() / b50.as_secs_f64()
            )
        };
        println!(
            "{:<15} {:>9.2} {:>9.2} {:>9.2} {:>7.1} | {baseline}",
            name,
            ms(p50),
            ms(percentile(&times, 0.99)),
            ms(*times.last().unwrap()),
            hits as f64 / QUESTIONS as f64,
        );
    }
}
