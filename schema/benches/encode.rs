//! The sensor's per-transaction JSON encoding (`encode_event_into`), next to serde_json as the
//! baseline it must match byte for byte, and the binary encoding (MessagePack, issue 21) next to
//! both; then decoding, which is the analyzer's side (`decode/…`: JSON vs MessagePack):
//! `cargo bench -p apitap-schema --bench encode`.
//! The event is the capture benchmark's (`cargo xtask bench capture`): a wrk GET and nginx's
//! 1 KiB JSON answer, whose quotes all need escaping inside the event's JSON string.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use apitap_schema::test_support::EventBuilder;
use apitap_schema::{
    ApiEvent, decode_event, decode_event_msgpack, encode_event_into, encode_event_msgpack_into,
};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn event(body: &str) -> ApiEvent {
    EventBuilder::get("/api/v1/bench")
        .event_id("5f2b0c8e1d7a4b3c9e6f0a1b2c3d4e5f")
        .sensor("bench", "bench-host")
        .transaction_index(41)
        .at_us(1_763_884_800_123_456)
        .latency_us(333)
        .client("10.77.0.2:48312")
        .server("10.77.0.1:8080")
        .host("10.77.0.1:8080")
        .header("Host", "10.77.0.1:8080")
        .response_headers(&[
            ("Server", "nginx/1.26.3"),
            ("Date", "Sun, 23 Nov 2026 07:40:00 GMT"),
            ("Content-Type", "application/json"),
            ("Content-Length", &body.len().to_string()),
            ("Connection", "keep-alive"),
        ])
        .response_body_bytes(body)
        .build()
}

/// The same 1 KiB document nginx serves in the capture benchmark.
fn json_body() -> String {
    let mut s = String::from("{\"accounts\":[");
    let mut k = 0;
    while s.len() < 1024 - 40 {
        s.push_str(&format!("{{\"id\":{k},\"bal\":{}}},", k * 37 % 1000));
        k += 1;
    }
    s.pop();
    s.push_str("]}");
    s
}

fn benches(c: &mut Criterion) {
    let text = "Lorem ipsum dolor sit amet, consectetur adipiscing elit. ".repeat(18);
    for (name, body) in [("json_1k", json_body()), ("text_1k", text)] {
        let e = event(&body);
        let mut out = Vec::with_capacity(8192);
        encode_event_into(&e, &mut out);
        let mut g = c.benchmark_group(format!("encode/{name}"));
        g.throughput(Throughput::Bytes(out.len() as u64));
        g.bench_function("fastjson", |b| {
            b.iter(|| {
                out.clear();
                encode_event_into(&e, &mut out);
                out.len()
            })
        });
        g.bench_function("serde_json", |b| {
            b.iter(|| {
                out.clear();
                serde_json::to_writer(&mut out, &e).expect("encode");
                out.len()
            })
        });
        g.bench_function("msgpack", |b| {
            b.iter(|| {
                out.clear();
                encode_event_msgpack_into(&e, &mut out);
                out.len()
            })
        });
        g.finish();

        let mut json = Vec::new();
        encode_event_into(&e, &mut json);
        let mut msgpack = Vec::new();
        encode_event_msgpack_into(&e, &mut msgpack);
        eprintln!(
            "{name}: JSON {} bytes, MessagePack {} bytes",
            json.len(),
            msgpack.len()
        );
        let mut g = c.benchmark_group(format!("decode/{name}"));
        g.bench_function("json", |b| {
            b.iter(|| decode_event(&json).expect("decode").transaction_index)
        });
        g.bench_function("msgpack", |b| {
            b.iter(|| {
                decode_event_msgpack(&msgpack)
                    .expect("decode")
                    .transaction_index
            })
        });
        g.finish();
    }
}

criterion_group!(benches_group, benches);
criterion_main!(benches_group);
