//! The sensor side of the embedded single-process mode (R-BUS-1): the sensor's sink over the
//! in-memory bus (`Sink::from_publisher`) feeding an `EventSource` in the same process, with
//! the same decoding, checks and acknowledgments as Kafka. Driven by a recorded capture so it
//! runs without privileges; the events that come out are exactly the golden ones.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use apitap_bus::config::ConsumerConfig;
use apitap_bus::{BusError, BusMetrics, EventSource};
use apitap_decode::ReassemblyConfig;
use apitap_schema::{ApiEvent, SensorInfo, decode_event};
use apitap_sensor::replay::replay;
use apitap_sensor::sink::Sink;

fn fixtures() -> PathBuf {
    Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/pcap"
    ))
    .to_path_buf()
}

#[test]
fn replayed_capture_crosses_the_in_memory_bus_unchanged() {
    let metrics = Arc::new(BusMetrics::default());
    let (publisher, mut source) =
        apitap_bus::memory::channel(10_000, &ConsumerConfig::default(), metrics.clone());
    let producer = std::thread::spawn(move || {
        let mut sink = Sink::from_publisher(Box::new(publisher));
        let sensor = SensorInfo {
            id: "golden".into(),
            host: "golden".into(),
            node: None,
        };
        let cfg = ReassemblyConfig {
            server_ports: vec![8080],
            ..ReassemblyConfig::default()
        };
        let summary = replay(&fixtures().join("keepalive.pcapng"), cfg, sensor, &mut sink).unwrap();
        let report = sink.close().unwrap().unwrap();
        (summary.events, report)
    });
    let mut got: Vec<ApiEvent> = Vec::new();
    loop {
        match source.poll(Duration::from_millis(200)) {
            Ok(Some(r)) => {
                got.push(r.event);
                source.ack(r.ack);
            }
            Ok(None) => {}
            Err(BusError::Closed) => break,
            Err(e) => panic!("{e}"),
        }
    }
    source.close().unwrap();
    let (written, report) = producer.join().unwrap();
    assert_eq!(report.dropped, 0);
    assert_eq!(got.len() as u64, written);
    let golden: Vec<ApiEvent> = std::fs::read_to_string(fixtures().join("keepalive.events.jsonl"))
        .unwrap()
        .lines()
        .map(|l| decode_event(l.as_bytes()).unwrap())
        .collect();
    assert_eq!(
        got, golden,
        "same events, same order, as the file sink writes"
    );
    assert_eq!(BusMetrics::get(&metrics.events_consumed), written);
    assert!(
        metrics
            .render_string()
            .contains("apitap_bus_events_consumed_total")
    );
}
