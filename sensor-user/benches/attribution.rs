//! Per-event cost of attribution in the agent (R-CAP-5): [`Attributor::attribute`] on events
//! of 64 keep-alive connections (16 transactions each), owners from a table standing in for
//! the kernel map (the map is read once per connection; a lookup there is one `bpf()` call,
//! ≈ 1 µs, which this bench does not include), cgroups on this machine's real hierarchy.
//! The baseline is the sink's own per-event work, encoding; the attribution row adds the
//! lookups and the workload's fields in the output.
//!
//! `cargo bench -p apitap-sensor --bench attribution` prints criterion's figures, then events/s
//! of both side by side with their ratio.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use std::collections::HashMap;
use std::time::{Duration, Instant};

use apitap_common::FlowOwner;
use apitap_schema::test_support::EventBuilder;
use apitap_schema::{ApiEvent, Endpoint, encode_event_into};
use apitap_sensor::attribution::{Attributor, cgroup, flow_key};
use criterion::{Criterion, Throughput, black_box, criterion_group, criterion_main};

const CONNECTIONS: usize = 64;
const PER_CONNECTION: usize = 16;

fn events() -> Vec<ApiEvent> {
    let mut out = Vec::new();
    for t in 0..PER_CONNECTION {
        for c in 0..CONNECTIONS {
            let mut e = EventBuilder::get(format!("/api/v1/users/{t}"))
                .status(200)
                .build();
            e.connection_id = format!("{c:016x}");
            e.client = Endpoint {
                ip: [10, 1, 0, c as u8].into(),
                port: 40_000 + c as u16,
            };
            out.push(e);
        }
    }
    out
}

fn attributor(events: &[ApiEvent]) -> Attributor<HashMap<apitap_common::FlowKey, FlowOwner>> {
    let root = cgroup::find_root(None).expect("a cgroup v2 hierarchy");
    let id = cgroup::id_of(&root).unwrap();
    let mut owners = HashMap::new();
    for e in events {
        owners.insert(
            flow_key(&e.server, &e.client),
            FlowOwner {
                cgroup_id: id,
                uid: 33,
                _pad: 0,
            },
        );
    }
    Attributor::new(owners, cgroup::Resolver::new(root), None, 65_536)
}

fn pass(
    a: Option<&mut Attributor<HashMap<apitap_common::FlowKey, FlowOwner>>>,
    events: &[ApiEvent],
    line: &mut Vec<u8>,
) -> usize {
    let mut bytes = 0;
    let mut a = a;
    for e in events {
        let mut e = e.clone();
        if let Some(a) = a.as_deref_mut() {
            a.attribute(&mut e);
        }
        line.clear();
        encode_event_into(&e, line);
        bytes += line.len();
    }
    bytes
}

fn bench(c: &mut Criterion) {
    let events = events();
    let mut g = c.benchmark_group("attribution");
    g.throughput(Throughput::Elements(events.len() as u64));
    let mut line = Vec::with_capacity(4096);
    g.bench_function("encode_only", |b| {
        b.iter(|| black_box(pass(None, black_box(&events), &mut line)))
    });
    let mut a = attributor(&events);
    g.bench_function("attribute_and_encode", |b| {
        b.iter(|| black_box(pass(Some(&mut a), black_box(&events), &mut line)))
    });
    g.finish();

    println!(
        "\nattribution, {} events on {CONNECTIONS} connections per pass:",
        events.len()
    );
    let mut base = 0.0;
    for (name, on) in [("encode only", false), ("attribute + encode", true)] {
        let mut a = attributor(&events);
        let mut n = 0u64;
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(1) {
            pass(on.then_some(&mut a), &events, &mut line);
            n += events.len() as u64;
        }
        let per_s = n as f64 / start.elapsed().as_secs_f64();
        if !on {
            base = per_s;
        }
        println!(
            "  {name:<20} {per_s:>12.0} events/s  {:>7.3} µs/event  {:>5.2}x encode only",
            1e6 / per_s,
            base / per_s
        );
    }
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
