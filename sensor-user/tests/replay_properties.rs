//! Property (R-CAP-3): any re-segmentation, any reordering within the window a capture can
//! produce (same direction, between the packets of the other direction that acknowledge them,
//! within 50 ms), and any duplication of the recorded fixture streams yield exactly the events
//! of the stream as captured.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use std::net::IpAddr;
use std::path::Path;

use apitap_decode::packet::{Link, parse_frame};
use apitap_decode::{Reassembler, ReassemblyConfig, Segment};
use apitap_schema::{SensorInfo, encode_event};
use pcap_parser::{Block, PcapBlockOwned, PcapError, create_reader};
use proptest::prelude::*;

#[derive(Clone, Debug)]
struct Seg {
    ts: u64,
    src: (IpAddr, u16),
    dst: (IpAddr, u16),
    seq: u32,
    ack: u32,
    flags: u8,
    payload: Vec<u8>,
}

const SYN: u8 = 0x02;
/// Reordering window in capture time.
const WINDOW_US: u64 = 50_000;
const FIN: u8 = 0x01;

fn load(name: &str) -> Vec<Seg> {
    let path = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/pcap"
    ))
    .join(format!("{name}.pcapng"));
    let mut reader = create_reader(1 << 20, std::fs::File::open(path).unwrap()).unwrap();
    let mut out = Vec::new();
    let mut link = None;
    let mut resolution = 1_000_000u64;
    loop {
        match reader.next() {
            Ok((off, block)) => {
                match block {
                    PcapBlockOwned::NG(Block::InterfaceDescription(i)) => {
                        link = Link::from_linktype(i.linktype.0);
                        resolution = i.ts_resolution().unwrap_or(1_000_000);
                    }
                    PcapBlockOwned::NG(Block::EnhancedPacket(p)) => {
                        let raw = (u128::from(p.ts_high) << 32) | u128::from(p.ts_low);
                        let ts = (raw * 1_000_000 / u128::from(resolution)) as u64;
                        if let Ok(Some(s)) =
                            parse_frame(link.unwrap(), &p.data[..p.caplen as usize], ts)
                        {
                            assert_eq!(s.payload.len(), s.wire_len as usize);
                            out.push(Seg {
                                ts,
                                src: (s.src_ip, s.src_port),
                                dst: (s.dst_ip, s.dst_port),
                                seq: s.seq,
                                ack: s.ack,
                                flags: s.flags,
                                payload: s.payload.to_vec(),
                            });
                        }
                    }
                    _ => {}
                }
                reader.consume(off);
            }
            Err(PcapError::Eof) => break,
            Err(PcapError::Incomplete(_)) => reader.refill().unwrap(),
            Err(e) => panic!("{e:?}"),
        }
    }
    out
}

fn decode(segs: &[Seg]) -> Vec<String> {
    let cfg = ReassemblyConfig {
        server_ports: vec![8080],
        ..ReassemblyConfig::default()
    };
    let mut r = Reassembler::new(
        cfg,
        SensorInfo {
            id: "p".into(),
            host: "p".into(),
            node: None,
        },
    );
    let mut out = Vec::new();
    for s in segs {
        r.segment(
            &Segment {
                ts_us: s.ts,
                src_ip: s.src.0,
                src_port: s.src.1,
                dst_ip: s.dst.0,
                dst_port: s.dst.1,
                seq: s.seq,
                ack: s.ack,
                flags: s.flags,
                payload: &s.payload,
                wire_len: s.payload.len() as u32,
            },
            &mut out,
        );
    }
    r.finish(&mut out);
    out.iter()
        .map(|e| String::from_utf8(encode_event(e)).unwrap())
        .collect()
}

/// Names the differing fields (recursively) with short scalar values; never whole bodies.
fn diff(a: &str, b: &str) -> String {
    fn walk(path: &str, a: &serde_json::Value, b: &serde_json::Value, out: &mut Vec<String>) {
        match (a, b) {
            (serde_json::Value::Object(x), serde_json::Value::Object(y)) => {
                for k in x.keys().chain(y.keys()) {
                    let (va, vb) = (
                        x.get(k).unwrap_or(&serde_json::Value::Null),
                        y.get(k).unwrap_or(&serde_json::Value::Null),
                    );
                    if va != vb {
                        walk(&format!("{path}.{k}"), va, vb, out);
                    }
                }
            }
            _ => {
                let short =
                    |v: &serde_json::Value| v.to_string().chars().take(60).collect::<String>();
                out.push(format!("{path}: {} vs {}", short(a), short(b)));
            }
        }
    }
    let (a, b): (serde_json::Value, serde_json::Value) = (
        serde_json::from_str(a).unwrap(),
        serde_json::from_str(b).unwrap(),
    );
    let mut out = Vec::new();
    walk("", &a, &b, &mut out);
    out.dedup();
    out.join("; ")
}

struct Rng(u64);
impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n.max(1) as u64) as usize
    }
}

/// Splits data segments into random pieces, shuffles each same-direction burst of a
/// connection (its first packet stays first), and duplicates some packets.
fn mangle(segs: &[Seg], seed: u64) -> Vec<Seg> {
    let mut rng = Rng(seed | 1);
    let mut split = Vec::new();
    for s in segs {
        if s.payload.len() < 2 || rng.below(3) == 0 {
            split.push(s.clone());
            continue;
        }
        let mut cuts: Vec<usize> = (0..rng.below(4) + 1)
            .map(|_| 1 + rng.below(s.payload.len() - 1))
            .collect();
        cuts.push(0);
        cuts.push(s.payload.len());
        cuts.sort_unstable();
        cuts.dedup();
        let base = if s.flags & SYN != 0 {
            s.seq.wrapping_add(1)
        } else {
            s.seq
        };
        for w in cuts.windows(2) {
            let mut p = s.clone();
            p.payload = s.payload[w[0]..w[1]].to_vec();
            let first = w[0] == 0;
            let last = w[1] == s.payload.len();
            p.seq = if first {
                s.seq
            } else {
                base.wrapping_add(w[0] as u32)
            };
            if !first {
                p.flags &= !SYN;
            }
            if !last {
                p.flags &= !FIN;
            }
            split.push(p);
        }
    }
    // Bursts: maximal runs of packets with the same (src, dst); the very first packet of each
    // connection keeps its place (it carries the SYN and fixes the roles).
    let mut out = Vec::with_capacity(split.len());
    let mut seen_conns: Vec<((IpAddr, u16), (IpAddr, u16))> = Vec::new();
    let mut i = 0;
    while i < split.len() {
        let key = (split[i].src, split[i].dst);
        let mut j = i + 1;
        // A burst ends at the other direction, or at a pause longer than the reordering window
        // (a retransmission after a timeout is not reordered with its original).
        while j < split.len()
            && (split[j].src, split[j].dst) == key
            && split[j].ts - split[j - 1].ts <= WINDOW_US
        {
            j += 1;
        }
        let mut burst: Vec<Seg> = split[i..j].to_vec();
        let conn = if key.0 < key.1 { key } else { (key.1, key.0) };
        let start = if seen_conns.contains(&conn) { 0 } else { 1 };
        seen_conns.push(conn);
        for k in (start + 1..burst.len()).rev() {
            let m = start + rng.below(k - start + 1);
            burst.swap(k, m);
        }
        if burst.len() > start && rng.below(4) == 0 {
            let d = burst[start + rng.below(burst.len() - start)].clone();
            burst.push(d);
        }
        out.extend(burst);
        i = j;
    }
    out
}

fn check(name: &str, seed: u64) {
    let segs = load(name);
    let want = decode(&segs);
    assert!(!want.is_empty());
    let got = decode(&mangle(&segs, seed));
    assert_eq!(got.len(), want.len(), "{name} seed {seed}: event count");
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        if g != w {
            let v: serde_json::Value = serde_json::from_str(w).unwrap();
            panic!(
                "{name} seed {seed}: event {i} (client port {}, {}?{}) differs in {}",
                v["client"]["port"],
                v["request"]["path"],
                v["request"]["query"],
                diff(g, w)
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn keepalive_is_invariant(seed in any::<u64>()) {
        check("keepalive", seed);
    }

    #[test]
    fn pipelining_is_invariant(seed in any::<u64>()) {
        check("pipelining", seed);
    }

    #[test]
    fn lossy_is_invariant(seed in any::<u64>()) {
        check("lossy", seed);
    }
}
