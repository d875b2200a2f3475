//! The recorded fixtures (real clients and nginx, `tests/fixtures/pcap`) replayed through the
//! sensor's decoder, whose events keep header fields as ranges of each header block (issue 21),
//! encode byte for byte as before: the JSON lines equal the committed golden files (written
//! by the encoder of owned fields), and each event's MessagePack equals that of the golden
//! event read back into owned fields (R-BUS-1, R-CAP-7). Events reach the test through the
//! bus sink, the path a Kafka sink takes.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apitap_bus::{BusError, BusMetrics, CloseReport, EventPublisher, Publish};
use apitap_decode::ReassemblyConfig;
use apitap_schema::{
    ApiEvent, SensorInfo, decode_event, encode_event_into, encode_event_msgpack_into,
};
use apitap_sensor::replay::replay;
use apitap_sensor::sink::Sink;

fn fixtures() -> PathBuf {
    Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/pcap"
    ))
    .to_path_buf()
}

#[derive(Default)]
struct Seen {
    json_lines: Vec<u8>,
    msgpack: Vec<Vec<u8>>,
    events: u64,
    /// Events whose request and response fields were all ranges of their blocks.
    in_block: u64,
}

/// Encodes each event as the sinks do, from the event as the decoder built it.
struct Capture(Arc<Mutex<Seen>>, Arc<BusMetrics>);

impl EventPublisher for Capture {
    fn publish(&mut self, e: &ApiEvent) -> Publish {
        let mut s = self.0.lock().unwrap();
        encode_event_into(e, &mut s.json_lines);
        s.json_lines.push(b'\n');
        let mut mp = Vec::new();
        encode_event_msgpack_into(e, &mut mp);
        s.msgpack.push(mp);
        s.events += 1;
        if e.request.headers.is_in_block()
            && e.response.as_ref().is_none_or(|r| r.headers.is_in_block())
        {
            s.in_block += 1;
        }
        Publish::Queued
    }

    fn close(&mut self, _timeout: Duration) -> Result<CloseReport, BusError> {
        Ok(CloseReport::default())
    }

    fn metrics(&self) -> Arc<BusMetrics> {
        self.1.clone()
    }
}

#[test]
fn fixtures_encode_as_the_golden_events() {
    for name in ["keepalive", "pipelining", "lossy", "missing"] {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let mut sink = Sink::from_publisher(Box::new(Capture(
            seen.clone(),
            Arc::new(BusMetrics::default()),
        )));
        let sensor = SensorInfo {
            id: "golden".into(),
            host: "golden".into(),
            node: None,
        };
        let cfg = ReassemblyConfig {
            server_ports: vec![8080],
            ..ReassemblyConfig::default()
        };
        replay(
            &fixtures().join(format!("{name}.pcapng")),
            cfg,
            sensor,
            &mut sink,
        )
        .unwrap();
        sink.close().unwrap();
        let s = seen.lock().unwrap();
        let golden =
            std::fs::read_to_string(fixtures().join(format!("{name}.events.jsonl"))).unwrap();
        assert!(s.events > 0, "{name}");
        assert_eq!(
            s.in_block, s.events,
            "{name}: every event of this clean traffic keeps its fields in the block"
        );
        assert!(
            s.json_lines == golden.as_bytes(),
            "{name}: JSON differs from the golden events"
        );
        let lines: Vec<&str> = golden.lines().collect();
        assert_eq!(lines.len(), s.msgpack.len(), "{name}");
        for (i, (line, mp)) in lines.iter().zip(&s.msgpack).enumerate() {
            let owned = decode_event(line.as_bytes()).unwrap();
            assert!(!owned.request.headers.is_in_block());
            let mut want = Vec::new();
            encode_event_msgpack_into(&owned, &mut want);
            assert!(*mp == want, "{name}: MessagePack of event {i} differs");
        }
    }
}
