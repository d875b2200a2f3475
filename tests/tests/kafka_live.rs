//! Sensor → Kafka on the real kernel (R-BUS-1, R-BUS-2, R-CAP-1): the sensor's eBPF programs
//! on a veth in a network namespace, nginx serving a JSON API, curl sending real requests from
//! another namespace, the sensor's Kafka sink producing to a real broker process (tansu, in the
//! server namespace), and the bus consumer reading the topic back.
//!
//! - every request is on the topic, exactly once after dedupe, in JSON and in MessagePack
//!   (`kafka.producer.event_encoding`), with the `content-type` header naming the encoding;
//! - with the broker stopped for 30 s while traffic flows and then restarted, no event is lost
//!   (ids compared) and the spool drains.
//!
//! Privileged (root, netns, BPF) and needs `tansu`; both are required under `CI=true`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use apitap_bus::config::OptionValue;
use apitap_bus::{BusMetrics, EventSource, KafkaConfig, KafkaEventConsumer};
use apitap_schema::{ApiEvent, EventEncoding};
use apitap_tests::broker::{
    Broker, ConfiguredSensor, in_netns, kafka_sensor_config, require_broker,
};
use apitap_tests::{Nginx, Topology, require_privileges};

const TOPIC: &str = "apitap.events.v1";

fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("apitap-kafka-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// Reads the topic from inside the broker's namespace until `want` distinct events arrived or
/// nothing came for 15 s. Returns every event returned (after dedupe) and the duplicates seen.
fn read_back(ns: &str, bootstrap: String, want: usize) -> anyhow::Result<(Vec<ApiEvent>, u64)> {
    in_netns(ns, move || -> anyhow::Result<(Vec<ApiEvent>, u64)> {
        let mut cfg = KafkaConfig::new(vec![bootstrap]);
        cfg.consumer.group_id = "kafka-live-check".into();
        cfg.librdkafka_options
            .insert("session.timeout.ms".into(), OptionValue::Int(6000));
        let metrics = Arc::new(BusMetrics::default());
        let mut c = KafkaEventConsumer::kafka(&cfg, metrics.clone())?;
        let mut got = Vec::new();
        let mut last = Instant::now();
        let start = Instant::now();
        while got.len() < want
            && last.elapsed() < Duration::from_secs(15)
            && start.elapsed() < Duration::from_secs(180)
        {
            if let Some(r) = c.poll(Duration::from_millis(200))? {
                got.push(r.event);
                c.ack(r.ack);
                last = Instant::now();
            }
        }
        c.close()?;
        Ok((got, BusMetrics::get(&metrics.duplicate_events)))
    })?
}

fn uri(e: &ApiEvent) -> String {
    match &e.request.query {
        Some(q) => format!("{}?{q}", e.request.path),
        None => e.request.path.clone(),
    }
}

#[test]
fn live_capture_to_kafka_delivers_every_event_once() -> anyhow::Result<()> {
    every_event_once(
        "live_capture_to_kafka_delivers_every_event_once",
        "once",
        EventEncoding::Json,
    )
}

/// The same with `kafka.producer.event_encoding = "msgpack"` (issue 21): every message on the
/// topic carries the MessagePack content-type and a MessagePack payload (not JSON), and the
/// bus consumer — the analyzer's — reads every event exactly once.
#[test]
fn live_capture_to_kafka_in_msgpack_delivers_every_event_once() -> anyhow::Result<()> {
    every_event_once(
        "live_capture_to_kafka_in_msgpack_delivers_every_event_once",
        "mpk",
        EventEncoding::Msgpack,
    )
}

fn every_event_once(name: &str, tag: &str, encoding: EventEncoding) -> anyhow::Result<()> {
    if !require_privileges(name) || !require_broker(name) {
        return Ok(());
    }
    let dir = tempdir(tag);
    let topo = Topology::new(&format!("kfk{tag}"))?;
    let _nginx = Nginx::start(&topo.server, &dir.join("nginx"))?;
    let broker = Broker::start_in(&topo.server, &dir.join("broker"))?;
    broker.create_topic(TOPIC, 3)?;
    let config = kafka_sensor_config(
        "kafka-live",
        &topo.server_if,
        &broker,
        &dir.join("spool"),
        100_000,
    );
    let config = match encoding {
        EventEncoding::Json => config,
        EventEncoding::Msgpack => config.replacen(
            "[kafka.producer]\n",
            "[kafka.producer]\nevent_encoding = \"msgpack\"\n",
            1,
        ),
    };
    let mut sensor = ConfiguredSensor::start(&topo.server, &config, &dir.join("sensor"))?;

    let mut expect: Vec<String> = Vec::new();
    for i in 0..30 {
        let u = format!("/api/v1/users/{i}?probe=sep{i}");
        topo.curl(&["-o", "/dev/null", &topo.url(&u)])?;
        expect.push(u);
    }
    // Keep-alive: one connection, several requests.
    let ka: Vec<String> = (0..10)
        .map(|i| format!("/api/v1/users?page={i}&probe=ka"))
        .collect();
    let mut args: Vec<String> = Vec::new();
    for u in &ka {
        args.extend(["-o".into(), "/dev/null".into(), topo.url(u)]);
    }
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    topo.curl(&argv)?;
    expect.extend(ka);
    topo.curl(&[
        "-o",
        "/dev/null",
        "--data-binary",
        "{\"item\":\"x\"}",
        &topo.url("/api/v1/orders?probe=post"),
    ])?;
    expect.push("/api/v1/orders?probe=post".into());

    sensor.wait_metric(
        "apitap_bus_events_delivered_total",
        Duration::from_secs(60),
        |v| v >= expect.len() as u64,
    )?;
    sensor.stop()?;
    assert!(
        !sensor.log_text().contains("probe=sep"),
        "the sensor must not log event contents"
    );

    let (events, duplicates) = read_back(&topo.server.name, broker.bootstrap(), expect.len())?;
    let mut count: BTreeMap<String, usize> = BTreeMap::new();
    for e in &events {
        *count.entry(uri(e)).or_default() += 1;
        assert_eq!(e.sensor.id, "kafka-live");
    }
    for u in &expect {
        assert_eq!(
            count.get(u),
            Some(&1),
            "{u}: expected exactly once; got {count:?}"
        );
    }
    assert_eq!(events.len(), expect.len(), "no extra events: {count:?}");
    let ids: BTreeSet<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(ids.len(), events.len());
    eprintln!("{} events, {duplicates} duplicates skipped", events.len());

    // What any Kafka client sees: the content-type header and a payload in that encoding.
    let raw = broker.read_messages(TOPIC, expect.len(), Duration::from_secs(30), "content-type")?;
    assert!(raw.len() >= expect.len(), "{} raw messages", raw.len());
    for (_, content_type, payload) in &raw {
        assert_eq!(content_type, encoding.content_type());
        let event = encoding.decode(payload)?;
        assert_eq!(event.sensor.id, "kafka-live");
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(payload).is_ok(),
            encoding == EventEncoding::Json,
            "payload is JSON exactly when the encoding is"
        );
    }
    Ok(())
}

#[test]
fn broker_outage_of_30s_while_traffic_flows_loses_no_event() -> anyhow::Result<()> {
    let name = "broker_outage_of_30s_while_traffic_flows_loses_no_event";
    if !require_privileges(name) || !require_broker(name) {
        return Ok(());
    }
    let dir = tempdir("outage");
    let topo = Topology::new("kout")?;
    let _nginx = Nginx::start(&topo.server, &dir.join("nginx"))?;
    let mut broker = Broker::start_in(&topo.server, &dir.join("broker"))?;
    broker.create_topic(TOPIC, 3)?;
    // A small memory queue so the outage overflows into the on-disk spool.
    let config = kafka_sensor_config(
        "kafka-live",
        &topo.server_if,
        &broker,
        &dir.join("spool"),
        50,
    );
    let mut sensor = ConfiguredSensor::start(&topo.server, &config, &dir.join("sensor"))?;

    let sent = AtomicU64::new(0);
    let failed = AtomicU64::new(0);
    let done = AtomicBool::new(false);
    let paused = AtomicBool::new(false);
    let idle = AtomicBool::new(false);
    std::thread::scope(|s| -> anyhow::Result<()> {
        s.spawn(|| {
            let mut i = 0u64;
            while !done.load(Ordering::Acquire) {
                if paused.load(Ordering::Acquire) {
                    idle.store(true, Ordering::Release);
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
                idle.store(false, Ordering::Release);
                let u = topo.url(&format!("/api/v1/users/{i}?seq={i}"));
                match topo.curl(&["-o", "/dev/null", &u]) {
                    Ok(_) => {
                        sent.fetch_add(1, Ordering::AcqRel);
                    }
                    Err(_) => {
                        failed.fetch_add(1, Ordering::AcqRel);
                    }
                }
                i += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        std::thread::sleep(Duration::from_secs(5));
        // Stop the broker between two produce requests, then let traffic flow again at once.
        // tansu 0.6 cannot take the idempotent producer's epoch bump that follows a produce
        // request cut off mid-flight (its SQLite storage panics; Kafka brokers accept it,
        // KIP-360), so the test avoids cutting one: a pause of about a second.
        paused.store(true, Ordering::Release);
        while !idle.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(10));
        }
        sensor.wait_metric(
            "apitap_bus_producer_queue_events",
            Duration::from_secs(10),
            |v| v == 0,
        )?;
        broker.stop()?;
        paused.store(false, Ordering::Release);
        let stopped_at = Instant::now();
        std::thread::sleep(Duration::from_secs(30));
        let spooled = sensor.metric("apitap_bus_events_spooled_total")?;
        broker.restart()?;
        eprintln!(
            "broker down for {:?}; {spooled} events spooled meanwhile",
            stopped_at.elapsed()
        );
        std::thread::sleep(Duration::from_secs(5));
        done.store(true, Ordering::Release);
        anyhow::ensure!(spooled > 0, "the outage must have used the spool");
        Ok(())
    })?;
    let total = sent.load(Ordering::Acquire);
    assert_eq!(failed.load(Ordering::Acquire), 0, "nginx kept serving");
    // Everything delivered and the spool drained, with the sensor still running.
    sensor.wait_metric(
        "apitap_bus_events_delivered_total",
        Duration::from_secs(120),
        |v| v >= total,
    )?;
    sensor.wait_metric("apitap_bus_spool_events", Duration::from_secs(60), |v| {
        v == 0
    })?;
    let dropped: u64 = [
        "spool_full_oldest",
        "spool_full_newest",
        "spool_backlog",
        "spool_io",
        "spool_corrupt",
        "rejected",
    ]
    .iter()
    .map(|c| {
        sensor
            .metric(&format!("apitap_bus_events_dropped_total{{cause=\"{c}\"}}"))
            .unwrap_or(0)
    })
    .sum();
    assert_eq!(dropped, 0, "no event dropped");
    sensor.stop()?;

    let (events, duplicates) = read_back(&topo.server.name, broker.bootstrap(), total as usize)?;
    let seqs: BTreeSet<u64> = events
        .iter()
        .filter_map(|e| {
            e.request
                .query
                .as_deref()?
                .strip_prefix("seq=")?
                .parse()
                .ok()
        })
        .collect();
    let missing: Vec<u64> = (0..total).filter(|i| !seqs.contains(i)).collect();
    assert!(
        missing.is_empty(),
        "{} of {total} events lost: {missing:?}",
        missing.len()
    );
    assert_eq!(events.len() as u64, total, "exactly once after dedupe");
    eprintln!("{total} requests, all on the topic; {duplicates} duplicates skipped");
    Ok(())
}
