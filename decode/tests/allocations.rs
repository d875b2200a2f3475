//! Heap allocations per transaction of the decoder's hot path (issue 21, R-CAP-7): TCP
//! reassembly, HTTP/1 framing, event build, JSON encoding into a reused buffer and the event's
//! drop, counted by a counting global allocator (this file is its own test binary). Header
//! fields are ranges of one copy of each header block, so the count must not grow with the
//! number of fields. `cargo test -p apitap-decode --test allocations -- --nocapture` prints
//! the counts (docs/cpu-profile.md, "Allocations").
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::IpAddr;

use apitap_decode::{Reassembler, ReassemblyConfig, Segment};
use apitap_schema::{SensorInfo, encode_event_into};

thread_local! {
    /// Allocations (and reallocations) made by this thread.
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

struct Counting;

fn count() {
    let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
}

// SAFETY: every call is forwarded to the system allocator unchanged; counting touches only
// a const-initialised thread-local `Cell` (which never allocates).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocs() -> u64 {
    ALLOCS.with(Cell::get)
}

/// The `pipeline/decode_and_encode` bench's request (5 fields) with `extra` more fields.
fn request(i: u32, extra: usize) -> Vec<u8> {
    let mut s = format!(
        "GET /api/v1/orders/{i}?page=2&size=50 HTTP/1.1\r\nHost: api.bank.example\r\nUser-Agent: okhttp/4.12.0\r\nAccept: application/json\r\nAuthorization: Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig\r\nX-Request-Id: {i:08x}\r\n"
    );
    for k in 0..extra {
        s.push_str(&format!("X-Extra-{k}: value {k}\r\n"));
    }
    s.push_str("\r\n");
    s.into_bytes()
}

/// The bench's response (4 fields, ≈ 1 KiB JSON body) with `extra` more fields.
fn response(i: u32, extra: usize) -> Vec<u8> {
    let mut body = format!("{{\"id\":{i},\"items\":[");
    let mut k = 0;
    while body.len() < 1000 {
        body.push_str(&format!("{{\"sku\":\"A-{k:04}\",\"qty\":{}}},", k % 7));
        k += 1;
    }
    body.pop();
    body.push_str("]}");
    let mut s = format!(
        "HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Type: application/json\r\nContent-Length: {}\r\nCache-Control: no-store\r\n",
        body.len()
    );
    for k in 0..extra {
        s.push_str(&format!("X-Extra-{k}: value {k}\r\n"));
    }
    s.push_str("\r\n");
    s.push_str(&body);
    s.into_bytes()
}

struct Conn {
    client_seq: u32,
    server_seq: u32,
}

fn seg<'a>(ts_us: u64, from_client: bool, c: &Conn, flags: u8, payload: &'a [u8]) -> Segment<'a> {
    let client: IpAddr = [10, 1, 0, 2].into();
    let server: IpAddr = [10, 0, 0, 1].into();
    let (src_ip, src_port, dst_ip, dst_port, seq, ack) = if from_client {
        (client, 30000, server, 443, c.client_seq, c.server_seq)
    } else {
        (server, 443, client, 30000, c.server_seq, c.client_seq)
    };
    Segment {
        ts_us,
        src_ip,
        src_port,
        dst_ip,
        dst_port,
        seq,
        ack,
        flags,
        payload,
        wire_len: payload.len() as u32,
    }
}

/// Allocations per transaction in steady state: one keep-alive connection, `warmup`
/// transactions first (buffers reach their size), then `measured` ones counted; each
/// message is one segment, each event is encoded into a reused buffer and dropped.
fn per_transaction(extra_fields: usize) -> f64 {
    let sensor = SensorInfo {
        id: "bench".into(),
        host: "bench".into(),
        node: None,
    };
    let (warmup, measured) = (50u32, 400u32);
    let msgs: Vec<(Vec<u8>, Vec<u8>)> = (0..warmup + measured)
        .map(|i| (request(i, extra_fields), response(i, extra_fields)))
        .collect();
    let mut r = Reassembler::new(ReassemblyConfig::default(), sensor);
    let mut out = Vec::with_capacity(64);
    let mut line = Vec::with_capacity(64 * 1024);
    let mut c = Conn {
        client_seq: 1000,
        server_seq: 5000,
    };
    let mut ts = 1_700_000_000_000_000u64;
    r.segment(&seg(ts, true, &c, 0x02, &[]), &mut out);
    c.client_seq += 1;
    r.segment(&seg(ts, false, &c, 0x12, &[]), &mut out);
    c.server_seq += 1;
    let mut encoded = 0usize;
    let mut start = 0;
    for (i, (req, res)) in msgs.iter().enumerate() {
        if i == warmup as usize {
            start = allocs();
        }
        ts += 20;
        r.segment(&seg(ts, true, &c, 0x18, req), &mut out);
        c.client_seq = c.client_seq.wrapping_add(req.len() as u32);
        r.segment(&seg(ts + 5, false, &c, 0x18, res), &mut out);
        c.server_seq = c.server_seq.wrapping_add(res.len() as u32);
        for e in out.drain(..) {
            line.clear();
            encode_event_into(&e, &mut line);
            encoded += line.len();
        }
    }
    let spent = allocs() - start;
    assert_eq!(r.stats().transactions, u64::from(warmup + measured));
    assert!(encoded > 0);
    spent as f64 / f64::from(measured)
}

/// The count of allocations per transaction does not depend on the number of header fields
/// (9 fields against 89): no per-field allocation anywhere between the segment and the
/// encoded event.
#[test]
fn allocations_do_not_grow_with_header_fields() {
    let small = per_transaction(0);
    let large = per_transaction(40);
    println!(
        "allocations per transaction: {small:.2} with 9 header fields, {large:.2} with 89 \
         (decode, build, JSON encode into a reused buffer, drop)"
    );
    assert!(
        (large - small).abs() < 0.5,
        "{small:.2} allocations per transaction with 9 fields, {large:.2} with 89"
    );
}
