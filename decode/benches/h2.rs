//! HTTP/2 decode throughput (R-CAP-7, issue 17) on real captures (`tests/fixtures/h2/`):
//! frames, HPACK, stream pairing, gRPC framing, per connection, fed as the segments were
//! captured. Each benchmark is one whole connection:
//! - `h2/h2py_churn`: 150 sequential GETs with a churning HPACK table (Python `h2` → nghttpd);
//! - `h2/nghttp_get`: 15 concurrent streams, one 40 kB body (nghttp → nghttpd);
//! - `h2/h2load`: 30 requests over 10 concurrent streams;
//! - `h2/grpc_many`: 45 RPCs, unary and streaming (grpcio);
//! - `grpc_framer/{binary,web_text}`: message counting over a 256 KiB body of 1 KiB
//!   messages in 16 KiB DATA pieces, binary and gRPC-Web text (base64, one padded chunk per
//!   message; hand-built framing);
//! - `grpc_framer/web_text_decode`: that text body decoded whole (`decode_web_text`, what
//!   the labeller and the inventory read before the protobuf walk).
//!
//! Run: `cargo bench -p apitap-decode --bench h2`; next to `--bench decode` (HTTP/1).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use apitap_decode::Side;
use apitap_decode::h2::{Connection, H2Config};
use criterion::{Criterion, Throughput, black_box, criterion_group, criterion_main};

fn dump(name: &str) -> Vec<(Side, Vec<u8>)> {
    let path = format!(
        "{}/../tests/fixtures/h2/{name}.h2dump",
        env!("CARGO_MANIFEST_DIR")
    );
    let b = std::fs::read(path).unwrap();
    apitap_decode::h2::dump::records(&b)
        .map(|r| r.map(|(side, bytes)| (side, bytes.to_vec())))
        .collect::<Result<_, _>>()
        .unwrap()
}

fn decode(records: &[(Side, Vec<u8>)]) -> usize {
    let mut c = Connection::new(H2Config::default(), false);
    let mut out = Vec::with_capacity(64);
    let mut n = 0;
    for (i, (side, bytes)) in records.iter().enumerate() {
        c.data(*side, i as u64, bytes, &mut out);
        n += out.len();
        out.clear();
    }
    c.close(&mut out);
    n + out.len()
}

fn benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("h2");
    for name in ["h2py_churn", "nghttp_get", "h2load", "grpc_many"] {
        let records = dump(name);
        let bytes: usize = records.iter().map(|r| r.1.len()).sum();
        let streams = decode(&records);
        eprintln!("apitap-bench-meta h2/{name} bytes={bytes} streams={streams}");
        g.throughput(Throughput::Bytes(bytes as u64));
        g.bench_function(name, |b| b.iter(|| black_box(decode(&records))));
    }
    g.finish();
    let mut g = c.benchmark_group("grpc_framer");
    let mut binary = Vec::new();
    for i in 0..256u32 {
        binary.push(0);
        binary.extend_from_slice(&1019u32.to_be_bytes());
        binary.extend((0..1019u32).map(|k| (k * 31 + i) as u8));
    }
    let text = {
        use base64::Engine as _;
        binary
            .chunks(1024)
            .flat_map(|m| {
                base64::engine::general_purpose::STANDARD
                    .encode(m)
                    .into_bytes()
            })
            .collect::<Vec<u8>>()
    };
    for (name, body, is_text) in [("binary", &binary, false), ("web_text", &text, true)] {
        let count = |body: &[u8]| {
            let mut f = apitap_decode::grpc::MessageFramer::new(true);
            if is_text {
                f.set_text();
            }
            for piece in body.chunks(16 * 1024) {
                f.feed(piece);
            }
            assert_eq!(f.messages, 256);
            f.messages
        };
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_function(name, |b| b.iter(|| black_box(count(body))));
    }
    // The kept text body decoded whole for the protobuf walk (labels, inventory).
    g.throughput(Throughput::Bytes(text.len() as u64));
    g.bench_function("web_text_decode", |b| {
        b.iter(|| {
            let d = apitap_decode::grpc::decode_web_text(black_box(&text), 1 << 20);
            assert_eq!(d.bytes.len(), binary.len());
            d.bytes.len()
        })
    });
    g.finish();
}

criterion_group!(h2, benches);
criterion_main!(h2);
