//! An HTTP/2 connection driven by arbitrary bytes either way (from the start, joined
//! mid-stream, or upgraded from HTTP/1.1 with arbitrary HTTP2-Settings; with gaps and closes): never panics, held memory stays bounded by the limits,
//! every message is well-formed (bodies within the cap, stream ids non-zero).
#![no_main]
use apitap_decode::Side;
use apitap_decode::h2::conn::Body;
use apitap_decode::h2::hpack::Field;
use apitap_decode::h2::{Connection, H2Config};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, rest)) = data.split_first() else { return };
    let cfg = H2Config {
        max_frame_bytes: 4096,
        max_header_block_bytes: 2048,
        max_headers: 16,
        max_body_bytes: 256,
        max_streams: 8,
        max_table_bytes: 1024,
    };
    let mut out = Vec::new();
    // A quarter of the time, a connection upgraded from HTTP/1.1 (`Upgrade: h2c`, RFC 7540
    // §3.2): stream 1 open with a request, the client's SETTINGS from HTTP2-Settings taken
    // from the input (any length, any parameters).
    let (mut c, rest) = if ctl & 0x0c == 0x0c {
        let n = usize::from(rest.first().copied().unwrap_or(0) % 64);
        let rest = rest.get(1..).unwrap_or_default();
        let (settings, rest) = rest.split_at(n.min(rest.len()));
        let request = vec![
            Field::known(":method".into(), "POST".into()),
            Field::known(":scheme".into(), "http".into()),
            Field::known(":path".into(), "/u".into()),
        ];
        let body = Body { data: b"up".to_vec(), wire_len: 2, truncated: false, decoded: false };
        let c = Connection::upgraded(cfg.clone(), request, body, (0, 0), (ctl & 0x10 != 0).then_some(settings));
        (c, rest)
    } else {
        (Connection::new(cfg.clone(), ctl & 1 != 0), rest)
    };
    // With a valid preface first half the time, so the fuzzer gets past it.
    if ctl & 2 != 0 {
        c.data(Side::Client, 0, apitap_decode::h2::frame::PREFACE, &mut out);
    }
    let mut i = 0;
    let mut ts = 0;
    while i + 2 <= rest.len() {
        let op = rest[i];
        let len = usize::from(rest[i + 1]) * if op & 0x80 != 0 { 8 } else { 1 };
        i += 2;
        let end = (i + len).min(rest.len());
        let chunk = &rest[i..end];
        i = end;
        ts += 1;
        let side = if op & 1 == 0 { Side::Client } else { Side::Server };
        match (op >> 1) % 16 {
            0 => c.gap(side, len as u64),
            1 => c.close(&mut out),
            _ => c.data(side, ts, chunk, &mut out),
        }
        // Frame buffers (a frame each, ≤ 16 KiB while resynchronising, plus a header and a
        // chunk), header blocks in assembly, two tables, and the open streams' bodies, fields
        // (four blocks of ≤ 16 fields) and gRPC-Web trailers.
        let per_stream = 2 * 256 + 4 * 2048 + 4 * 16 * 128 + 2 * 4096 + 1024;
        let bound = 2 * (16_384 + 18 + 2040) + 2 * 2048 + 2 * 1024 + 8 * per_stream;
        assert!(c.buffered() <= bound, "held {} > {bound}", c.buffered());
        assert!(c.open_streams() <= 8);
    }
    c.close(&mut out);
    for m in &out {
        assert!(m.stream_id != 0);
        assert!(m.request.body.data.len() <= 256);
        assert!(m.request.body.data.len() as u64 <= m.request.body.wire_len || m.request.body.decoded);
        if let Some(r) = &m.response {
            assert!(r.body.data.len() <= 256);
        }
    }
});
