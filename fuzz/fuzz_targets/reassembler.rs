//! Arbitrary segment sequences (floods, overlaps, wild sequence numbers, RST/FIN/SYN mixes)
//! through the connection table: never panics, never holds more than the configured limits.
#![no_main]
use std::net::IpAddr;

use apitap_decode::{Reassembler, ReassemblyConfig, Segment, SessionConfig};
use apitap_schema::SensorInfo;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let cfg = ReassemblyConfig {
        max_connections: 8,
        max_buffered_bytes_per_connection: 2048,
        max_buffered_bytes_total: 16 * 1024,
        gap_timeout_us: 50,
        idle_timeout_us: 1000,
        handshake_timeout_us: 100,
        server_ports: vec![80],
        session: SessionConfig { max_body_bytes: 256, max_header_bytes: 512, max_headers: 16, max_pending_requests: 4, max_pending_bytes: 4096 },
    };
    let mut r = Reassembler::new(cfg, SensorInfo { id: "f".into(), host: "f".into(), node: None });
    let mut out = Vec::new();
    let mut i = 0;
    let mut ts = 0u64;
    while i + 8 <= data.len() {
        let h = &data[i..i + 8];
        i += 8;
        let len = usize::from(h[7] & 0x7f);
        let end = (i + len).min(data.len());
        let payload = &data[i..end];
        i = end;
        ts += u64::from(h[0] & 0x0f);
        let client: IpAddr = [10, 0, 0, 2 + (h[0] >> 6)].into();
        let server: IpAddr = [10, 0, 0, 1].into();
        let cport = 40000 + u16::from(h[1] & 0x07);
        let from_client = h[1] & 0x80 == 0;
        let (src_ip, src_port, dst_ip, dst_port) =
            if from_client { (client, cport, server, 80) } else { (server, 80, client, cport) };
        let seg = Segment {
            ts_us: ts,
            src_ip,
            src_port,
            dst_ip,
            dst_port,
            seq: u32::from_be_bytes([h[2], h[3], h[4], 0]).wrapping_mul(if h[1] & 0x40 != 0 { 251 } else { 1 }),
            ack: u32::from(h[5]) << 4,
            flags: h[6],
            payload,
            wire_len: payload.len() as u32 + if h[7] & 0x80 != 0 { 7 } else { 0 },
        };
        r.segment(&seg, &mut out);
        if h[0] & 0x30 == 0x30 {
            r.tick(ts, &mut out);
        }
        assert!(r.connections() <= 8);
        assert!(r.held_bytes() <= 16 * 1024 + 2048 + 512 + 4 * 256 + 4096, "held {}", r.held_bytes());
    }
    r.finish(&mut out);
    assert_eq!(r.connections(), 0);
    assert_eq!(r.held_bytes(), 0);
});
