//! The analyzer's whole per-event path with all detections on (issue 7's "benchmark of the
//! analyzer"): `Ingestor::ingest_event` = sensitive-data labelling + inventory templating and
//! shape learning + weak points + the detection engine, next to the same path without the
//! detection engine, on the recorded httpbin traffic (real sensor events).
//!
//! `cargo bench -p apitap-analyzer --bench pipeline`; after criterion's report one summary
//! line prints both rates per core and their ratio (the detection engine's share). The
//! engine alone: `cargo bench -p apitap-detect`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use std::time::{Duration, Instant};

use apitap_analyzer::detection::Detection;
use apitap_analyzer::ingest::Ingestor;
use apitap_analyzer::inventory::{Inventory, InventoryConfig};
use apitap_analyzer::labelling::Labelling;
use apitap_analyzer::summary::Summary;
use apitap_schema::ApiEvent;
use criterion::{Criterion, Throughput};

#[path = "common/httpbin.rs"]
mod httpbin;

fn ingestor(detect: bool) -> Ingestor {
    let key = apitap_labels::HashKey::from_secret(b"bench");
    let mut ing = Ingestor::new(Summary::new(100_000));
    ing.inventory = Some(Inventory::new(InventoryConfig::default()).expect("inventory"));
    ing.labelling = Some(Labelling::new(key.clone()).expect("labelling"));
    if detect {
        ing.detect =
            Some(Detection::new(&apitap_detect::DetectConfig::default(), &key).expect("detection"));
    }
    ing
}

/// Events per second over `events` replayed for at least `min`, with the event time moving
/// forward each round so windows and campaigns roll as in a live stream.
fn rate(events: &[ApiEvent], min: Duration, ing: &mut Ingestor) -> f64 {
    let start = Instant::now();
    let mut n = 0u64;
    let mut round = 0u64;
    let mut e2 = events.to_vec();
    while start.elapsed() < min {
        round += 1;
        for (e, orig) in e2.iter_mut().zip(events) {
            e.request_start_unix_us = orig.request_start_unix_us + round * 60_000_000;
            ing.ingest_event(e);
        }
        n += events.len() as u64;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// `APITAP_BENCH_PASSES=n` (`cargo xtask bench analyzer-instructions`, under callgrind):
/// exactly `n` passes over the events with every detection on, event time moving as in
/// [`rate`], and nothing else — a fixed amount of work, so instruction counts compare.
fn fixed_passes() -> Option<u64> {
    std::env::var("APITAP_BENCH_PASSES").ok()?.parse().ok()
}

fn main() {
    let events = httpbin::httpbin_events();
    if let Some(passes) = fixed_passes() {
        let mut ing = ingestor(true);
        let mut e2 = events.clone();
        for round in 1..=passes {
            for (e, orig) in e2.iter_mut().zip(&events) {
                e.request_start_unix_us = orig.request_start_unix_us + round * 60_000_000;
                ing.ingest_event(e);
            }
        }
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    let mut g = c.benchmark_group("analyzer/httpbin_fixture");
    g.throughput(Throughput::Elements(events.len() as u64));
    for (name, detect) in [
        ("ingest_all_detections", true),
        ("ingest_no_detections", false),
    ] {
        let mut ing = ingestor(detect);
        g.bench_function(name, |b| {
            b.iter(|| {
                for e in &events {
                    ing.ingest_event(e);
                }
            })
        });
    }
    g.finish();
    c.final_summary();
    let with = rate(&events, Duration::from_secs(3), &mut ingestor(true));
    let without = rate(&events, Duration::from_secs(3), &mut ingestor(false));
    println!(
        "analyzer per core: {with:.0} events/s with all detections, {without:.0} without; \
         ratio {:.2} (detection engine's share of the per-event cost: {:.0} %)",
        with / without,
        (1.0 - with / without) * 100.0
    );
}
