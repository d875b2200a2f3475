//! Throughput of the bus against a running broker, for `cargo xtask bench kafka` (which starts
//! the broker, runs `tansu perf` next to it, and builds this in release mode).
//!
//! ```text
//! throughput produce <bootstrap> <topic> <events> <spool dir>   # encoder → broker ack
//! throughput consume <bootstrap> <topic> <events>               # broker → decode+dedupe+ack
//! throughput size                                                # bytes of one encoded event
//! throughput memory <events>          # no broker: encode, then decode+dedupe+ack (in-memory bus)
//! ```
//!
//! Prints one line `RESULT events_per_sec=<f> spooled=<n> event_bytes=<n>`. For experiments,
//! `APITAP_BENCH_QUEUE_MAX_BYTES` (a memory queue large enough to bypass the spool) and
//! `APITAP_BENCH_COMPRESSION=zstd` change the producer's settings; `APITAP_BENCH_ENCODING=msgpack`
//! produces MessagePack events (`kafka.producer.event_encoding`), which the consumer decodes by
//! their `content-type` header.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use std::sync::Arc;
use std::time::{Duration, Instant};

use apitap_bus::{
    BusMetrics, EventPublisher, EventSource, KafkaConfig, KafkaEventConsumer, KafkaEventPublisher,
};
use apitap_schema::ApiEvent;
use apitap_schema::test_support::EventBuilder;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn template() -> ApiEvent {
    let mut body = String::from("{\"transactions\":[");
    let mut k = 0;
    while body.len() < 1000 {
        body.push_str(&format!(
            "{{\"id\":{k},\"amount\":{},\"currency\":\"EUR\",\"iban\":\"DE89370400440532013{k:03}\"}},",
            k * 37 % 1000
        ));
        k += 1;
    }
    body.pop();
    body.push_str("]}");
    EventBuilder::get("/v1/accounts/1024/transactions")
        .sensor("bench", "bench-host")
        .at_us(1_700_000_000_000_000)
        .latency_us(4000)
        .client("203.0.113.7:51544")
        .server("10.1.2.3:8080")
        .host("api.bank.example")
        .query("page=3&size=20")
        .headers(&[
            ("Host", "api.bank.example"),
            ("User-Agent", "okhttp/4.12.0"),
            ("Accept", "application/json"),
            ("Authorization", "Bearer eyJhbGciOiJIUzI1NiJ9.e30.ZmFrZQ"),
            ("X-Request-Id", "7f7c6b1e-6f7e-4c4e-9a43-0c1c8f2d9a11"),
        ])
        .response_headers(&[
            ("Content-Type", "application/json"),
            ("Content-Length", &body.len().to_string()),
            ("Cache-Control", "no-store"),
        ])
        .response_body_bytes(&body)
        .build()
}

/// The `i`th benchmark event: distinct id, 64 clients, 8 services.
fn event(t: &ApiEvent, i: u64) -> ApiEvent {
    let mut e = t.clone();
    e.event_id = format!("{:032x}", 0xbe0c_0000_0000u64 + i);
    e.transaction_index = i;
    e.request_start_unix_us += i;
    e.client.ip = std::net::Ipv4Addr::new(203, 0, 113, (i % 64) as u8).into();
    e.server.port = 8080 + (i % 8) as u16;
    e
}

fn produce(cfg: &KafkaConfig, n: u64) -> Result<(f64, u64, u64)> {
    let metrics = Arc::new(BusMetrics::default());
    let mut p = KafkaEventPublisher::start(cfg, "bench", metrics.clone())?;
    let t = template();
    let sample = n.min(1000);
    let bytes: u64 = (0..sample)
        .map(|i| apitap_schema::encode_event(&event(&t, i)).len() as u64)
        .sum();
    let start = Instant::now();
    for i in 0..n {
        p.publish(&event(&t, i));
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    while BusMetrics::get(&metrics.events_delivered) < n {
        if Instant::now() > deadline {
            return Err(format!(
                "only {} of {n} events delivered",
                BusMetrics::get(&metrics.events_delivered)
            )
            .into());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let secs = start.elapsed().as_secs_f64();
    let report = p.close(Duration::from_secs(30))?;
    if report.dropped > 0 {
        return Err(format!("{} events dropped during the benchmark", report.dropped).into());
    }
    Ok((
        n as f64 / secs,
        BusMetrics::get(&metrics.events_spooled),
        bytes / sample.max(1),
    ))
}

fn consume(cfg: &KafkaConfig, n: u64) -> Result<f64> {
    let mut c = KafkaEventConsumer::kafka(cfg, Arc::new(BusMetrics::default()))?;
    let mut got = 0u64;
    let mut start = None;
    let deadline = Instant::now() + Duration::from_secs(600);
    while got < n {
        if Instant::now() > deadline {
            return Err(format!("only {got} of {n} events consumed").into());
        }
        if let Some(r) = c.poll(Duration::from_millis(200))? {
            start.get_or_insert_with(Instant::now);
            got += 1;
            c.ack(r.ack);
        }
    }
    let secs = start.map_or(1.0, |s| s.elapsed().as_secs_f64());
    c.close()?;
    // The first event started the clock: n - 1 intervals.
    Ok((n - 1) as f64 / secs)
}

/// The in-memory transport (embedded mode): the same encode and decode+dedupe+ack code as
/// Kafka, without a broker. Returns (encode events/s, decode events/s).
fn memory(n: u64) -> Result<(f64, f64)> {
    use apitap_bus::config::ConsumerConfig;
    let metrics = Arc::new(BusMetrics::default());
    let (mut p, mut c) =
        apitap_bus::memory::channel(n as usize, &ConsumerConfig::default(), metrics.clone());
    let t = template();
    let events: Vec<ApiEvent> = (0..n).map(|i| event(&t, i)).collect();
    let start = Instant::now();
    for e in &events {
        p.publish(e);
    }
    let encode = n as f64 / start.elapsed().as_secs_f64();
    p.close(Duration::ZERO)?;
    drop(events);
    let start = Instant::now();
    let mut got = 0u64;
    loop {
        match c.poll(Duration::from_millis(100)) {
            Ok(Some(r)) => {
                got += 1;
                c.ack(r.ack);
            }
            Ok(None) => {}
            Err(apitap_bus::BusError::Closed) => break,
            Err(e) => return Err(e.into()),
        }
    }
    let decode = got as f64 / start.elapsed().as_secs_f64();
    if got != n {
        return Err(format!("memory transport: {got} of {n} events").into());
    }
    Ok((encode, decode))
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).is_some_and(|a| a == "size") {
        let bytes = apitap_schema::encode_event(&event(&template(), 1)).len();
        println!("RESULT events_per_sec=0 spooled=0 event_bytes={bytes}");
        return Ok(());
    }
    if args.get(1).is_some_and(|a| a == "memory") {
        let n: u64 = args
            .get(2)
            .ok_or("usage: throughput memory <events>")?
            .parse()?;
        let (encode, decode) = memory(n)?;
        println!(
            "RESULT events_per_sec={encode:.1} spooled=0 event_bytes=0 decode_per_sec={decode:.1}"
        );
        return Ok(());
    }
    let usage = "usage: throughput produce|consume <bootstrap> <topic> <events> [spool dir]";
    if args.len() < 5 {
        return Err(usage.into());
    }
    let mut cfg = KafkaConfig::new(vec![args[2].clone()]);
    cfg.events_topic = args[3].clone();
    cfg.alerts_topic = format!("{}.alerts", args[3]);
    cfg.consumer.group_id = "apitap-bench".into();
    let n: u64 = args[4].parse()?;
    match args[1].as_str() {
        "produce" => {
            cfg.spool.dir = args.get(5).ok_or(usage)?.into();
            if let Ok(v) = std::env::var("APITAP_BENCH_QUEUE_MAX_BYTES") {
                cfg.producer.queue_max_bytes = v.parse()?;
                cfg.producer.queue_max_events = 1_000_000;
            }
            if std::env::var("APITAP_BENCH_ENCODING").as_deref() == Ok("msgpack") {
                cfg.producer.event_encoding = apitap_schema::EventEncoding::Msgpack;
            }
            if let Ok(v) = std::env::var("APITAP_BENCH_COMPRESSION") {
                cfg.producer.compression = if v == "zstd" {
                    apitap_bus::config::Compression::Zstd
                } else {
                    apitap_bus::config::Compression::Lz4
                };
            }
            let (eps, spooled, bytes) = produce(&cfg, n)?;
            println!("RESULT events_per_sec={eps:.1} spooled={spooled} event_bytes={bytes}");
        }
        "consume" => {
            let eps = consume(&cfg, n)?;
            println!("RESULT events_per_sec={eps:.1} spooled=0 event_bytes=0");
        }
        _ => return Err(usage.into()),
    }
    Ok(())
}
