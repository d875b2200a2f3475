//! Per-event cost of data minimisation at the sensor (R-CAP-8): the events of the recorded
//! fixtures (`tests/fixtures/pcap`: the golden keep-alive traffic and the sensitive-data
//! traffic, decoded by `replay`) through the sensor's [`Minimiser`] and the event encoder, as
//! the sink sees them, once per `[payload]` mode. `full` is the baseline (no scan); `labels`
//! and `sample` add one labeller pass and the rewrite per event.
//!
//! `cargo bench -p apitap-sensor --bench payload` prints criterion's figures and then one
//! line per mode with events/s and µs/event side by side, and one for `full` with every
//! event's bodies sampled out (`payload.max_bodies_per_endpoint_per_sec`, issue 21).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use std::path::Path;
use std::time::{Duration, Instant};

use apitap_labels::{HashKey, MinimiseOptions, PayloadMode};
use apitap_schema::{ApiEvent, SensorInfo, decode_event, encode_event_into};
use apitap_sensor::config::{SinkKind, SinkSection};
use apitap_sensor::minimise::Minimiser;
use apitap_sensor::replay::replay;
use apitap_sensor::sink::Sink;
use criterion::{Criterion, Throughput, black_box, criterion_group, criterion_main};

const MODES: [(&str, PayloadMode); 3] = [
    ("full", PayloadMode::Full),
    ("sample", PayloadMode::Sample),
    ("labels", PayloadMode::Labels),
];

/// The fixtures' events as the decoder produced them (`payload = full`).
fn events() -> Vec<ApiEvent> {
    let dir = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/pcap"
    ));
    let out = std::env::temp_dir().join(format!("apitap-bench-payload-{}", std::process::id()));
    let mut all = Vec::new();
    for name in ["keepalive", "pipelining", "sensitive"] {
        let _ = std::fs::remove_file(&out);
        let mut sink = Sink::open(&SinkSection {
            kind: SinkKind::File,
            path: Some(out.clone()),
        })
        .expect("event file");
        let cfg = apitap_decode::ReassemblyConfig {
            server_ports: vec![8080],
            ..Default::default()
        };
        let sensor = SensorInfo {
            id: "bench".into(),
            host: "bench".into(),
            node: None,
        };
        replay(&dir.join(format!("{name}.pcapng")), cfg, sensor, &mut sink).expect("replay");
        drop(sink);
        let text = std::fs::read_to_string(&out).expect("events");
        all.extend(
            text.lines()
                .map(|l| decode_event(l.as_bytes()).expect("event")),
        );
    }
    let _ = std::fs::remove_file(&out);
    all
}

fn minimiser(mode: PayloadMode) -> Minimiser {
    Minimiser::new(
        mode,
        MinimiseOptions {
            sample_bytes: 1024,
            attach_labels: false,
        },
        HashKey::from_secret(b"bench"),
    )
    .expect("labeller")
}

/// One pass over `events` as the pipeline does it: minimise, then encode for the sink.
fn pass(m: &mut Minimiser, events: &[ApiEvent], line: &mut Vec<u8>) -> usize {
    let mut bytes = 0;
    for e in events {
        let e = m.apply(e.clone());
        line.clear();
        encode_event_into(&e, line);
        bytes += line.len();
    }
    bytes
}

fn bench(c: &mut Criterion) {
    let events = events();
    let mut g = c.benchmark_group("payload");
    g.throughput(Throughput::Elements(events.len() as u64));
    let mut line = Vec::with_capacity(64 * 1024);
    for (name, mode) in MODES {
        let mut m = minimiser(mode);
        g.bench_function(name, |b| {
            b.iter(|| black_box(pass(&mut m, black_box(&events), &mut line)))
        });
    }
    // Bodies sampled out (issue 21): every event over its endpoint's rate, metadata only.
    let mut m = sampled();
    g.bench_function("full_sampled_out", |b| {
        b.iter(|| black_box(pass(&mut m, black_box(&events), &mut line)))
    });
    g.finish();

    // Side by side: events/s and output bytes per event of each mode over ~1 s each.
    println!(
        "\npayload minimisation, {} fixture events per pass (minimise + encode):",
        events.len()
    );
    let rows = MODES
        .iter()
        .map(|(name, mode)| (format!("payload={name}"), minimiser(*mode)))
        .chain([("full, bodies sampled out".to_owned(), sampled())]);
    let mut base = None;
    for (name, mut m) in rows {
        let (mut n, mut out) = (0u64, 0usize);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(1) {
            out += pass(&mut m, &events, &mut line);
            n += events.len() as u64;
        }
        let per_s = n as f64 / start.elapsed().as_secs_f64();
        // The first row, `full`, is the baseline.
        let base = *base.get_or_insert(per_s);
        println!(
            "  {name:<24} {per_s:>12.0} events/s  {:>7.2} µs/event  {:>5.2}x full  {:>6} output bytes/event",
            1e6 / per_s,
            base / per_s,
            out as u64 / n
        );
    }
}

/// `full` with `max_bodies_per_endpoint_per_sec = 1`: the fixtures' times repeat every pass,
/// so after the first pass every event is over its endpoint's rate.
fn sampled() -> Minimiser {
    Minimiser::full().with_sampling(1, 16_384)
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
