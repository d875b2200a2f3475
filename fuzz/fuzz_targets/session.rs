//! A connection's conversation driven by arbitrary operations (data either way, gaps, FIN,
//! close): never panics, every event is well-formed and held memory stays bounded.
#![no_main]
use std::sync::Arc;

use apitap_decode::{ConnMeta, Session, SessionConfig, Side, Stats};
use apitap_schema::{Endpoint, SensorInfo};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let cfg = SessionConfig { max_body_bytes: 256, max_header_bytes: 512, max_headers: 16, max_pending_requests: 4, max_pending_bytes: 4096 };
    let meta = ConnMeta {
        sensor: Arc::new(SensorInfo { id: "f".into(), host: "f".into(), node: None }),
        client: Endpoint { ip: [10, 0, 0, 2].into(), port: 1 },
        server: Endpoint { ip: [10, 0, 0, 1].into(), port: 80 },
        first_seen_ns: 0,
        tls: false,
    };
    let mut s = Session::new(meta, Arc::new(cfg.clone()), data.first().is_some_and(|b| b & 0x80 != 0));
    let mut st = Stats::default();
    let mut out = Vec::new();
    let mut i = 0;
    let mut ts = 0;
    while i + 2 <= data.len() {
        let op = data[i];
        let len = usize::from(data[i + 1]);
        i += 2;
        let end = (i + len).min(data.len());
        let chunk = &data[i..end];
        i = end;
        ts += 1;
        let side = if op & 1 == 0 { Side::Client } else { Side::Server };
        match (op >> 1) % 8 {
            0..=4 => s.data(side, ts, chunk, (op & 0x40 != 0).then_some(u64::from(op)), &mut st, &mut out),
            5 => s.gap(side, ts, len as u64 + 1, &mut st, &mut out),
            6 => s.fin(side, ts, &mut st, &mut out),
            _ => s.close(ts, op & 0x20 != 0, &mut st, &mut out),
        }
        assert!(s.buffered() <= 512 + 255 + 2 + 6 * 256 + 4096, "held {}", s.buffered());
    }
    s.close(ts + 1, false, &mut st, &mut out);
    for e in &out {
        assert!(e.request.body.captured_bytes <= 256);
        assert!(e.request.body.captured_bytes <= e.request.body.length_bytes);
        assert_eq!(e.event_id.len(), 32);
    }
});
