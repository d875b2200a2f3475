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
    // The `Upgrade: h2c` path (RFC 7540 §3.2) from the start when bit 0x40 is set: the upgrade
    // request, and with 0x20 the server's 101 too, so the fuzzer drives the held bytes, the
    // switch and the upgraded HTTP/2 connection.
    if data.first().is_some_and(|b| b & 0x40 != 0) {
        let req = b"GET /u HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n";
        s.data(Side::Client, 0, req, None, &mut st, &mut out);
        if data[0] & 0x20 != 0 {
            s.data(Side::Server, 0, b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n", None, &mut st, &mut out);
        }
    }
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
        // HTTP/1: a header block, a chunk, pending requests. HTTP/2 (preface or upgrade): the
        // h2 limits the session gives its decoder (64 KiB frames and tables, 128 streams of
        // capped bodies and fields).
        let bound = if s.h2().is_some() {
            let per_stream = 2 * 256 + 4 * 512 + 4 * 16 * 128 + 2 * 4096 + 1024;
            2 * (65_536 + 18 + 2040 + 16_384) + 2 * 512 + 2 * 65_536 + 128 * per_stream
        } else {
            512 + 255 + 2 + 6 * 256 + 4096
        };
        assert!(s.buffered() <= bound, "held {} > {bound}", s.buffered());
    }
    s.close(ts + 1, false, &mut st, &mut out);
    for e in &out {
        assert!(e.request.body.captured_bytes <= 256);
        assert!(e.request.body.captured_bytes <= e.request.body.length_bytes);
        assert_eq!(e.event_id.len(), 32);
    }
});
