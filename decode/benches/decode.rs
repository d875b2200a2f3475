//! Decoder hot paths (R-CAP-7): throughput of the whole pipeline (TCP reassembly, HTTP/1.x
//! framing, pairing, event JSON encoding) and of its parts, each next to a baseline on the
//! same bytes so the numbers read as ratios:
//! - `parse/httparse_only`: httparse on each message head, nothing else — the floor;
//! - `parse/message_parser`: our framing on the same stream;
//! - `pipeline/decode_and_encode`: segments in, JSON events out.
//!
//! `cargo xtask bench decode` runs this and prints the table with GB/s, transactions/s and
//! ratios.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use std::net::IpAddr;

use apitap_decode::http1::{Framing, Kind, Limits, MessageParser, Step};
use apitap_decode::{Reassembler, ReassemblyConfig, Segment};
use apitap_schema::{SensorInfo, encode_event_into};
use criterion::{Criterion, Throughput, black_box, criterion_group, criterion_main};

const CONNS: u32 = 64;
const TX_PER_CONN: u32 = 50;
const MSS: usize = 1448;

fn body(i: u32) -> String {
    let mut s = format!("{{\"id\":{i},\"items\":[");
    let mut k = 0;
    while s.len() < 1000 {
        s.push_str(&format!("{{\"sku\":\"A-{k:04}\",\"qty\":{}}},", k % 7));
        k += 1;
    }
    s.pop();
    s.push_str("]}");
    s
}

fn request(i: u32) -> Vec<u8> {
    format!(
        "GET /api/v1/orders/{i}?page=2&size=50 HTTP/1.1\r\nHost: api.bank.example\r\nUser-Agent: okhttp/4.12.0\r\nAccept: application/json\r\nAuthorization: Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig\r\nX-Request-Id: {i:08x}\r\n\r\n"
    )
    .into_bytes()
}

fn response(i: u32) -> Vec<u8> {
    let b = body(i);
    format!(
        "HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Type: application/json\r\nContent-Length: {}\r\nCache-Control: no-store\r\n\r\n{b}",
        b.len()
    )
    .into_bytes()
}

struct Pkt {
    ts: u64,
    from_client: bool,
    conn: u32,
    seq: u32,
    ack: u32,
    flags: u8,
    data: Vec<u8>,
}

/// Interleaved keep-alive connections, MSS-segmented, with handshakes and FINs.
fn traffic() -> (Vec<Pkt>, u64, u64) {
    let mut pkts = Vec::new();
    let mut bytes = 0u64;
    let mut ts = 1_700_000_000_000_000u64;
    let mut seqs: Vec<(u32, u32)> = (0..CONNS)
        .map(|c| (c.wrapping_mul(7919), c.wrapping_mul(104729)))
        .collect();
    for c in 0..CONNS {
        let (cs, ss) = seqs[c as usize];
        pkts.push(Pkt {
            ts,
            from_client: true,
            conn: c,
            seq: cs,
            ack: 0,
            flags: 0x02,
            data: vec![],
        });
        pkts.push(Pkt {
            ts,
            from_client: false,
            conn: c,
            seq: ss,
            ack: cs + 1,
            flags: 0x12,
            data: vec![],
        });
        seqs[c as usize] = (cs + 1, ss + 1);
    }
    for t in 0..TX_PER_CONN {
        for c in 0..CONNS {
            ts += 20;
            let i = t * CONNS + c;
            for (from_client, msg) in [(true, request(i)), (false, response(i))] {
                bytes += msg.len() as u64;
                for part in msg.chunks(MSS) {
                    let (cs, ss) = &mut seqs[c as usize];
                    let (seq, ack) = if from_client { (*cs, *ss) } else { (*ss, *cs) };
                    pkts.push(Pkt {
                        ts,
                        from_client,
                        conn: c,
                        seq,
                        ack,
                        flags: 0x18,
                        data: part.to_vec(),
                    });
                    if from_client {
                        *cs = cs.wrapping_add(part.len() as u32);
                    } else {
                        *ss = ss.wrapping_add(part.len() as u32);
                    }
                }
            }
        }
    }
    for c in 0..CONNS {
        let (cs, ss) = seqs[c as usize];
        pkts.push(Pkt {
            ts,
            from_client: true,
            conn: c,
            seq: cs,
            ack: ss,
            flags: 0x11,
            data: vec![],
        });
        pkts.push(Pkt {
            ts,
            from_client: false,
            conn: c,
            seq: ss,
            ack: cs + 1,
            flags: 0x11,
            data: vec![],
        });
    }
    (pkts, bytes, u64::from(CONNS * TX_PER_CONN))
}

fn seg(p: &Pkt) -> Segment<'_> {
    let client: IpAddr = [10, 1, (p.conn >> 8) as u8, p.conn as u8].into();
    let server: IpAddr = [10, 0, 0, 1].into();
    let cport = 30000 + p.conn as u16;
    let (src_ip, src_port, dst_ip, dst_port) = if p.from_client {
        (client, cport, server, 443)
    } else {
        (server, 443, client, cport)
    };
    Segment {
        ts_us: p.ts,
        src_ip,
        src_port,
        dst_ip,
        dst_port,
        seq: p.seq,
        ack: p.ack,
        flags: p.flags,
        payload: &p.data,
        wire_len: p.data.len() as u32,
    }
}

fn benches(c: &mut Criterion) {
    let (pkts, bytes, txs) = traffic();
    let sensor = SensorInfo {
        id: "bench".into(),
        host: "bench".into(),
        node: None,
    };

    // Per-direction streams for the parser benches.
    let mut client_stream = Vec::new();
    let mut server_stream = Vec::new();
    for i in 0..txs as u32 {
        client_stream.extend_from_slice(&request(i));
        server_stream.extend_from_slice(&response(i));
    }
    let stream_bytes = (client_stream.len() + server_stream.len()) as u64;

    let mut g = c.benchmark_group("parse");
    g.throughput(Throughput::Bytes(stream_bytes));
    g.bench_function("httparse_only", |b| {
        b.iter(|| {
            let mut n = 0;
            for (stream, is_req) in [(&client_stream, true), (&server_stream, false)] {
                let mut off = 0;
                while off < stream.len() {
                    let mut h = [httparse::EMPTY_HEADER; 32];
                    let (len, cl) = if is_req {
                        let mut r = httparse::Request::new(&mut h);
                        let httparse::Status::Complete(l) = r.parse(&stream[off..]).unwrap() else {
                            break;
                        };
                        (l, 0)
                    } else {
                        let mut r = httparse::Response::new(&mut h);
                        let httparse::Status::Complete(l) = r.parse(&stream[off..]).unwrap() else {
                            break;
                        };
                        let cl = r
                            .headers
                            .iter()
                            .find(|x| x.name.eq_ignore_ascii_case("content-length"))
                            .map_or(0, |x| {
                                std::str::from_utf8(x.value)
                                    .unwrap()
                                    .parse::<usize>()
                                    .unwrap()
                            });
                        (l, cl)
                    };
                    off += len + cl;
                    n += 1;
                }
            }
            black_box(n)
        })
    });
    g.bench_function("message_parser", |b| {
        let limits = Limits {
            max_header_bytes: 65536,
            max_headers: 128,
        };
        b.iter(|| {
            let mut n = 0;
            for (stream, kind) in [
                (&client_stream, Kind::Request),
                (&server_stream, Kind::Response),
            ] {
                let mut p = MessageParser::new(kind, limits);
                for part in stream.chunks(MSS) {
                    p.push(part);
                    loop {
                        match p.step() {
                            Step::NeedMore => break,
                            Step::Head(h) => {
                                let mut an = Vec::new();
                                let f = match kind {
                                    Kind::Request => Framing::for_request(&h, &mut an),
                                    Kind::Response => {
                                        Framing::for_response(&h, Some("GET"), &mut an)
                                    }
                                };
                                p.start_body(f);
                                n += 1;
                            }
                            Step::Body(b) => {
                                black_box(b);
                            }
                            _ => {}
                        }
                    }
                }
            }
            black_box(n)
        })
    });
    g.finish();

    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Bytes(bytes));
    g.sample_size(20);
    g.bench_function("decode_only", |b| {
        b.iter(|| {
            let mut r = Reassembler::new(ReassemblyConfig::default(), sensor.clone());
            let mut out = Vec::with_capacity(1024);
            for p in &pkts {
                r.segment(&seg(p), &mut out);
                out.clear();
            }
            r.finish(&mut out);
            black_box(r.stats().transactions)
        })
    });
    g.bench_function("decode_and_encode", |b| {
        b.iter(|| {
            let mut r = Reassembler::new(ReassemblyConfig::default(), sensor.clone());
            let mut out = Vec::with_capacity(1024);
            let mut encoded = 0usize;
            let mut line = Vec::with_capacity(16 * 1024);
            for p in &pkts {
                r.segment(&seg(p), &mut out);
                for e in out.drain(..) {
                    line.clear();
                    encode_event_into(&e, &mut line);
                    encoded += line.len();
                }
            }
            r.finish(&mut out);
            assert_eq!(r.stats().transactions, txs);
            black_box(encoded)
        })
    });
    g.finish();
    eprintln!(
        "apitap-bench-meta transactions={txs} wire_bytes={bytes} stream_bytes={stream_bytes} packets={}",
        pkts.len()
    );
}

criterion_group!(decode, benches);
criterion_main!(decode);
