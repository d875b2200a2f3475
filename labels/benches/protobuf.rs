//! gRPC protobuf bodies (issue 17): wire walk and labelling throughput on a server-streaming
//! body of 50 `kyc.v1.Person` messages (tests/fixtures/h2/kyc.proto; fake people), with and
//! without the fixture's descriptor set `kyc.pb`. `cargo bench -p apitap-labels --bench
//! protobuf`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use apitap_labels::facts::EventFacts;
use apitap_labels::protobuf::{ProtoSchema, walk_body};
use apitap_labels::{HashKey, LabelConfig, Labeller, Scanner};
use criterion::{Criterion, Throughput};

fn field(out: &mut Vec<u8>, number: u8, value: &[u8]) {
    out.push(number << 3 | 2);
    out.push(u8::try_from(value.len()).unwrap());
    out.extend_from_slice(value);
}

/// One `Person`: name, PRC id, mobile, address {province, city, street}, two e-mails, age.
fn person(i: usize) -> Vec<u8> {
    let mut addr = Vec::new();
    field(&mut addr, 1, "浙江省".as_bytes());
    field(&mut addr, 2, "杭州市".as_bytes());
    field(&mut addr, 3, format!("文三路{i}号").as_bytes());
    let mut p = Vec::new();
    field(&mut p, 1, "王秀英".as_bytes());
    field(&mut p, 2, b"11010519491231002X");
    field(&mut p, 3, format!("1381234{:04}", i % 10_000).as_bytes());
    field(&mut p, 4, &addr);
    field(&mut p, 5, format!("user{i}@example.com").as_bytes());
    field(&mut p, 5, format!("u{i}@corp.example.cn").as_bytes());
    p.extend_from_slice(&[6 << 3, u8::try_from(20 + i % 60).unwrap()]);
    p
}

fn body() -> Vec<u8> {
    let mut b = Vec::new();
    for i in 0..50 {
        let m = person(i);
        b.push(0);
        b.extend_from_slice(&u32::try_from(m.len()).unwrap().to_be_bytes());
        b.extend_from_slice(&m);
    }
    b
}

fn main() {
    let body = body();
    let schema = Arc::new(
        ProtoSchema::load(&[concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/h2/kyc.pb"
        )])
        .unwrap(),
    );
    let mut ev = apitap_schema::test_support::EventBuilder::post("/kyc.v1.Kyc/ListCustomers")
        .header("content-type", "application/grpc")
        .body_bytes(b"\0\0\0\0\x02\x08\x32")
        .response_header("content-type", "application/grpc")
        .response_body_bytes(&body)
        .build();
    ev.grpc = Some(apitap_schema::Grpc {
        service: "kyc.v1.Kyc".into(),
        method: "ListCustomers".into(),
        ..apitap_schema::Grpc::default()
    });
    let lab = Labeller::new(HashKey::from_secret(b"bench"), LabelConfig::default()).unwrap();
    let mut sc = Scanner::new(Arc::new(lab));
    let mut crit = Criterion::default()
        .configure_from_args()
        .measurement_time(Duration::from_secs(3));
    let mut g = crit.benchmark_group("protobuf");
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("walk/numbers", |b| {
        b.iter(|| {
            let mut n = 0usize;
            walk_body(black_box(&body), None, None, None, &mut |_| n += 1);
            n
        })
    });
    g.bench_function("walk/names", |b| {
        b.iter(|| {
            let mut n = 0usize;
            let root = Some("kyc.v1.Person");
            walk_body(black_box(&body), None, root, Some(&schema), &mut |_| n += 1);
            n
        })
    });
    g.bench_function("label_event/numbers", |b| {
        b.iter(|| {
            sc.label_facts(&EventFacts::new(&ev, 1 << 20))
                .findings
                .len()
        })
    });
    g.bench_function("label_event/names", |b| {
        b.iter(|| {
            let f = EventFacts::new(&ev, 1 << 20).with_protobuf(Some(schema.clone()));
            sc.label_facts(&f).findings.len()
        })
    });
    g.finish();
    crit.final_summary();
}
