//! Inventory throughput (issue 5): events per second per core for discovery + shape
//! learning (`Inventory::observe`: service, auth, style, templating, parameter/body/response
//! shape learning, exposure, latency and size sketches), next to the Akto templating rule
//! (path templating only) on the same events.
//!
//! Two workloads: the recorded httpbin traffic (real sensor events, every operation of
//! httpbin, bodies up to images) replayed in a loop, and synthetic banking traffic (JSON
//! APIs, 100 000 distinct identifiers). `cargo bench -p apitap-analyzer --bench inventory`;
//! after criterion's report, a summary line per workload prints both rates and their ratio.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

#[path = "../tests/common/akto.rs"]
#[allow(dead_code)]
mod akto;

use std::time::{Duration, Instant};

use apitap_analyzer::inventory::{Inventory, InventoryConfig};
use apitap_schema::ApiEvent;
use apitap_schema::test_support::{DEFAULT_START_US, EventBuilder};
use criterion::{Criterion, Throughput};

#[path = "common/httpbin.rs"]
mod httpbin;
use httpbin::{fixture_events, httpbin_events};

fn synthetic_events(n: usize) -> Vec<ApiEvent> {
    let base = EventBuilder::get("/")
        .latency_us(2000)
        .client("203.0.113.7:50000")
        .server("10.0.0.5:8080")
        .host("api.bank.example")
        .headers(&[
            ("Host", "api.bank.example"),
            ("User-Agent", "okhttp/4.12.0"),
            ("Accept", "application/json"),
            (
                "Authorization",
                "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjMifQ.c2lnbmF0dXJl",
            ),
            ("X-Request-Id", "5f0c1e7a9b2d4c3e8a1f6b7d0e9c2a41"),
        ])
        .response_headers(&[
            ("Content-Type", "application/json"),
            ("Content-Length", "120"),
        ]);
    let mut out = Vec::with_capacity(n);
    let mut x: u64 = 0x5eed;
    for i in 0..n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let id = x % 100_000;
        let (method, path, query, req, resp) = match x % 6 {
            0 => (
                "GET",
                format!("/api/v1/users/{id}"),
                None,
                "",
                r#"{"id":1,"name":"Ada Lovelace","email":"ada@example.com","phone":"+4412345678","addresses":[{"city":"London","zip":"N1"}]}"#,
            ),
            1 => (
                "GET",
                format!("/api/v1/accounts/{id:08x}-1111-4222-8333-{id:012x}/transactions"),
                Some(format!("page={}&size=20", id % 9)),
                "",
                r#"{"items":[{"id":1,"amount":12.5,"currency":"EUR","at":"2024-01-05T10:00:00Z"},{"id":2,"amount":7,"currency":"EUR","at":"2024-01-05T11:00:00Z"}],"next":null}"#,
            ),
            2 => (
                "POST",
                format!("/api/v1/accounts/{id:08x}-1111-4222-8333-{id:012x}/transfers"),
                None,
                r#"{"to":"GB00EXAMPLE0001","amount":125,"reference":"rent"}"#,
                r#"{"transfer_id":"t-1","status":"pending"}"#,
            ),
            3 => (
                "GET",
                "/api/v1/health".into(),
                None,
                "",
                r#"{"status":"up"}"#,
            ),
            4 => (
                "POST",
                "/api/v1/login".into(),
                None,
                r#"{"username":"ada","password":"x"}"#,
                r#"{"token":"abc","expires_in":3600}"#,
            ),
            _ => (
                "GET",
                format!("/api/v1/cards/{:024x}", id * 7919),
                Some("fields=pan,expiry".into()),
                "",
                r#"{"pan":"4111********1111","expiry":"12/30","status":"active"}"#,
            ),
        };
        let mut e = base
            .clone()
            .method(method)
            .path(path)
            .at_us(DEFAULT_START_US + i as u64 * 100)
            .client_ip([203, 0, 113, (id % 200) as u8])
            .response_body_bytes(resp);
        if let Some(q) = query {
            e = e.query(q);
        }
        if !req.is_empty() {
            e = e.body("application/json", req);
        }
        out.push(e.build());
    }
    out
}

/// Events per second of `f` over `events`, repeated for at least `min`.
fn rate(events: &[ApiEvent], min: Duration, mut f: impl FnMut(&ApiEvent)) -> f64 {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < min {
        for e in events {
            f(e);
        }
        n += events.len() as u64;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn workloads() -> Vec<(&'static str, Vec<ApiEvent>)> {
    vec![
        ("httpbin_fixture", httpbin_events()),
        ("synthetic_bank", synthetic_events(20_000)),
        // schemathesis against json-server: every method on every path, most answers 404 or
        // 405, i.e. the probe path (issue 15) on real fuzzer traffic.
        (
            "jsonserver_schemathesis",
            fixture_events("inventory_apps/jsonserver/events.jsonl.gz"),
        ),
    ]
}

/// The probe path against the served path on the same requests: the probes of the
/// json-server/schemathesis capture (`405`, `404` on never-served paths, automatic `OPTIONS`,
/// …) observed by a warm inventory, and the same requests answered `200` (so they are counted
/// as endpoints: the ordinary path, the baseline). Returns (probe rate, served rate, probes).
fn probe_rates(events: &[ApiEvent]) -> (f64, f64, usize) {
    use apitap_analyzer::inventory::probe::probe_reason;
    use apitap_labels::facts::EventFacts;
    let probes: Vec<ApiEvent> = events
        .iter()
        .filter(|e| probe_reason(&e.request.method, &EventFacts::new(e, 1 << 20)).is_some())
        .cloned()
        .collect();
    let served: Vec<ApiEvent> = probes
        .iter()
        .cloned()
        .map(|mut e| {
            if let Some(r) = e.response.as_mut() {
                r.status = 200;
            }
            if e.request.method == "HEAD" || e.request.method == "OPTIONS" {
                e.request.method = "GET".into();
            }
            e
        })
        .collect();
    let warm = |extra: &[ApiEvent]| {
        let mut inv = Inventory::new(InventoryConfig::default()).expect("inventory");
        for e in events.iter().chain(extra) {
            inv.observe(e);
        }
        inv
    };
    let mut inv = warm(&[]);
    let probe = rate(&probes, Duration::from_secs(2), |e| inv.observe(e));
    let mut inv = warm(&served);
    let ordinary = rate(&served, Duration::from_secs(2), |e| inv.observe(e));
    (probe, ordinary, probes.len())
}

fn bench(c: &mut Criterion) {
    for (name, events) in workloads() {
        let mut g = c.benchmark_group(format!("inventory/{name}"));
        g.throughput(Throughput::Elements(events.len() as u64));
        let mut inv = Inventory::new(InventoryConfig::default()).expect("inventory");
        for e in &events {
            inv.observe(e);
        }
        g.bench_function("apitap_observe", |b| {
            b.iter(|| {
                for e in &events {
                    inv.observe(e);
                }
            })
        });
        let mut akto = akto::Akto::new();
        g.bench_function("akto_rule", |b| {
            b.iter(|| {
                for e in &events {
                    akto.observe(&e.request.method, &e.request.path);
                }
            })
        });
        g.finish();
    }
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
    // One line per workload for the report: steady-state rates on one core, and the ratio.
    for (name, events) in workloads() {
        let mut inv = Inventory::new(InventoryConfig::default()).expect("inventory");
        let ours = rate(&events, Duration::from_secs(3), |e| inv.observe(e));
        let mut akto = akto::Akto::new();
        let theirs = rate(&events, Duration::from_secs(3), |e| {
            akto.observe(&e.request.method, &e.request.path)
        });
        println!(
            "{name}: apitap discovery+shape {:.0} events/s per core; akto rule (templating \
             only) {:.0} events/s; ratio apitap/akto {:.2}",
            ours,
            theirs,
            ours / theirs
        );
    }
    let events = fixture_events("inventory_apps/jsonserver/events.jsonl.gz");
    let (probe, served, probes) = probe_rates(&events);
    println!(
        "probe path on json-server/schemathesis ({probes} probes of {} events): {probe:.0} \
         events/s; the same requests answered 200 (served path, baseline) {served:.0} events/s; \
         ratio probe/served {:.2}",
        events.len(),
        probe / served
    );
}
