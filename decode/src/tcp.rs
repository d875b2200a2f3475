//! TCP reassembly (RFC 9293): turns captured segments into ordered byte streams per connection
//! and direction, and drives one [`Session`] per connection.
//!
//! - Ordering: segments are placed by sequence number relative to the next expected byte, with
//!   32-bit wraparound handled by signed distance (RFC 9293 §3.4); out-of-order segments wait in
//!   a bounded buffer.
//! - Retransmissions and overlaps: the first copy of a byte wins; wholly old segments are
//!   counted and dropped.
//! - Gaps: when out-of-order data waits longer than `gap_timeout`, or the connection's buffer
//!   is full, or a captured segment was truncated, the missing range is declared a gap and the
//!   session resynchronises.
//! - Lifecycle: SYN fixes the initial sequence number and the client role; FIN ends a
//!   direction once reached in order; RST, idle timeout and eviction end the connection.
//! - Bounds: at most `max_connections` connections and `max_buffered_bytes_total` bytes held;
//!   every refusal or eviction is counted in [`Stats`] (R-CAP-7). A full table makes room for a
//!   new connection by evicting the oldest one not yet established (payload seen from one side
//!   at most): a spoofed SYN flood churns through its own half-open entries while established
//!   conversations keep their state; only a table full of established connections refuses.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::Arc;

use apitap_schema::{Anomaly, ApiEvent, Endpoint, SensorInfo};

use crate::h2::H2Stats;
use crate::http1::{Kind, find_message_start};
use crate::session::{ConnMeta, Session, SessionConfig, Side};
use crate::stats::Stats;

const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const ACK: u8 = 0x10;

/// Out-of-order data further ahead than this is not plausible for one connection's window
/// (RFC 7323 allows 1 GiB windows; real stacks stay far below) and is ignored.
const MAX_AHEAD_BYTES: u64 = 64 * 1024 * 1024;

/// One captured TCP segment (or a chunk of one).
#[derive(Debug, Clone, Copy)]
pub struct Segment<'a> {
    /// Capture time, microseconds since the Unix epoch.
    pub ts_us: u64,
    /// Source address.
    pub src_ip: IpAddr,
    /// Source port.
    pub src_port: u16,
    /// Destination address.
    pub dst_ip: IpAddr,
    /// Destination port.
    pub dst_port: u16,
    /// Sequence number of `payload[0]`.
    pub seq: u32,
    /// Acknowledgment number (meaningful when `flags` has ACK).
    pub ack: u32,
    /// TCP flags byte.
    pub flags: u8,
    /// Captured payload bytes.
    pub payload: &'a [u8],
    /// Payload length on the wire from `seq` (≥ `payload.len()`); bytes beyond the captured
    /// ones are declared a gap.
    pub wire_len: u32,
}

/// Reassembly limits and timeouts.
#[derive(Debug, Clone)]
pub struct ReassemblyConfig {
    /// Connections tracked at most; new ones beyond are counted and ignored.
    pub max_connections: usize,
    /// Out-of-order bytes held per connection before a gap is forced.
    pub max_buffered_bytes_per_connection: usize,
    /// Bytes held across all connections (out-of-order data, parser buffers, body samples)
    /// before the connection being fed is evicted.
    pub max_buffered_bytes_total: usize,
    /// How long out-of-order data waits for missing bytes before they are declared a gap (µs).
    pub gap_timeout_us: u64,
    /// Connections without packets for this long are closed (µs).
    pub idle_timeout_us: u64,
    /// Connections that never carried payload are closed after this long (µs); bounds SYN floods.
    pub handshake_timeout_us: u64,
    /// Ports known to be servers: decides roles for connections seen without their handshake.
    pub server_ports: Vec<u16>,
    /// HTTP session settings.
    pub session: SessionConfig,
}

impl Default for ReassemblyConfig {
    fn default() -> Self {
        ReassemblyConfig {
            max_connections: 65_536,
            max_buffered_bytes_per_connection: 1024 * 1024,
            max_buffered_bytes_total: 256 * 1024 * 1024,
            gap_timeout_us: 2_000_000,
            idle_timeout_us: 300_000_000,
            handshake_timeout_us: 10_000_000,
            server_ports: Vec::new(),
            session: SessionConfig::default(),
        }
    }
}

type Addr = (IpAddr, u16);

/// Endpoint pair, ordered, so both directions map to one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ConnKey(Addr, Addr);

/// Two 128-bit addresses and the ports in three writes, instead of the derived per-field
/// writes (enum tags, address bytes one slice at a time), which made hashing a third of the
/// table's cost. The input is injective apart from an IPv4 address hashing like its
/// IPv4-mapped IPv6 form (RFC 4291 §2.5.5.2), a pairing `Eq` resolves, so every collision
/// depends on the seed.
impl Hash for ConnKey {
    fn hash<H: Hasher>(&self, h: &mut H) {
        let bits = |ip: IpAddr| match ip {
            IpAddr::V4(a) => a.to_ipv6_mapped().to_bits(),
            IpAddr::V6(a) => a.to_bits(),
        };
        h.write_u128(bits(self.0.0));
        h.write_u128(bits(self.1.0));
        h.write_u32(u32::from(self.0.1) << 16 | u32::from(self.1.1));
    }
}

/// The connection table's hasher: foldhash with a per-table random seed. Peers choose the
/// 4-tuples, so the seed keeps collisions from being computed offline (hash flooding);
/// SipHash gave the same protection at several times the cost per segment.
type ConnHasher = foldhash::quality::RandomState;

impl ConnKey {
    fn of(a: Addr, b: Addr) -> Self {
        if a <= b { ConnKey(a, b) } else { ConnKey(b, a) }
    }
}

#[derive(Debug)]
struct Held {
    peer_offset: Option<u64>,
    data: Vec<u8>,
    wire_len: u64,
    ts_us: u64,
}

/// What the flow hands to the session, in order.
enum Chunk<'a> {
    /// Capture time, acknowledged offset of the other direction, bytes.
    Data(u64, Option<u64>, &'a [u8]),
    Gap(u64),
}

#[derive(Debug, Default)]
struct Flow {
    started: bool,
    /// Sequence number of stream offset 0.
    base: u32,
    /// Next expected stream offset.
    next: u64,
    held: BTreeMap<u64, Held>,
    held_bytes: usize,
    held_since_us: u64,
    fin_at: Option<u64>,
    finished: bool,
}

enum Outcome {
    Delivered,
    Overlapped,
    Retransmitted,
    Buffered,
    OutOfWindow,
    /// Bytes overlapping held out-of-order data differ from it; the first copy was kept.
    Conflict,
}

impl Flow {
    fn start(&mut self, base: u32) {
        self.started = true;
        self.base = base;
        self.next = 0;
    }

    /// Stream offset of `seq`, by signed 32-bit distance from the next expected byte.
    fn offset_of(&self, seq: u32) -> i64 {
        let expected = self.base.wrapping_add(self.next as u32);
        self.next as i64 + seq.wrapping_sub(expected) as i32 as i64
    }

    fn accept(
        &mut self,
        seq: u32,
        data: &[u8],
        wire_len: u64,
        ts_us: u64,
        peer_offset: Option<u64>,
        sink: &mut dyn FnMut(Chunk<'_>),
    ) -> Outcome {
        let off = self.offset_of(seq);
        let next = self.next as i64;
        if off + wire_len as i64 <= next {
            return Outcome::Retransmitted;
        }
        if off > next {
            if (off - next) as u64 > MAX_AHEAD_BYTES {
                return Outcome::OutOfWindow;
            }
            let off = off as u64;
            if self.conflicts_with_held(off, data) {
                return Outcome::Conflict;
            }
            if self.held.contains_key(&off) {
                return Outcome::Retransmitted;
            }
            if self.held.is_empty() {
                self.held_since_us = ts_us;
            }
            self.held_bytes += data.len();
            self.held.insert(
                off,
                Held {
                    peer_offset,
                    data: data.to_vec(),
                    wire_len,
                    ts_us,
                },
            );
            return Outcome::Buffered;
        }
        let skip = (next - off) as u64;
        self.deliver(skip, data, wire_len, ts_us, peer_offset, sink);
        self.drain(sink);
        if skip > 0 {
            Outcome::Overlapped
        } else {
            Outcome::Delivered
        }
    }

    /// True when `data` at stream offset `off` disagrees with any held (out-of-order) bytes it
    /// overlaps. Overlaps with bytes already delivered are not compared: keeping a copy of
    /// delivered data for every connection would cost more memory than it is worth.
    fn conflicts_with_held(&self, off: u64, data: &[u8]) -> bool {
        let end = off + data.len() as u64;
        for (&h_off, held) in self.held.range(..end).rev() {
            let h_end = h_off + held.data.len() as u64;
            if h_end <= off {
                break;
            }
            let from = off.max(h_off);
            let to = end.min(h_end);
            let ours = &data[(from - off) as usize..(to - off) as usize];
            let theirs = &held.data[(from - h_off) as usize..(to - h_off) as usize];
            if ours != theirs {
                return true;
            }
        }
        false
    }

    /// Delivers bytes `[skip, wire_len)` of a segment starting at `self.next - skip`.
    fn deliver(
        &mut self,
        skip: u64,
        data: &[u8],
        wire_len: u64,
        ts_us: u64,
        peer_offset: Option<u64>,
        sink: &mut dyn FnMut(Chunk<'_>),
    ) {
        let captured = data.len() as u64;
        if skip < captured {
            sink(Chunk::Data(ts_us, peer_offset, &data[skip as usize..]));
        }
        let missing = wire_len.saturating_sub(skip.max(captured));
        if missing > 0 {
            sink(Chunk::Gap(missing));
        }
        self.next += wire_len - skip;
    }

    fn drain(&mut self, sink: &mut dyn FnMut(Chunk<'_>)) {
        while let Some(entry) = self.held.first_entry() {
            let off = *entry.key();
            if off > self.next {
                break;
            }
            let held = entry.remove();
            self.held_bytes -= held.data.len();
            if off + held.wire_len <= self.next {
                continue;
            }
            let skip = self.next - off;
            self.deliver(
                skip,
                &held.data,
                held.wire_len,
                held.ts_us,
                held.peer_offset,
                sink,
            );
        }
        if self.held.is_empty() {
            self.held_since_us = 0;
        }
    }

    /// Declares the bytes before the first held segment missing and delivers what follows.
    fn force_gap(&mut self, sink: &mut dyn FnMut(Chunk<'_>)) -> bool {
        let Some((&off, _)) = self.held.first_key_value() else {
            return false;
        };
        if off > self.next {
            sink(Chunk::Gap(off - self.next));
            self.next = off;
        }
        self.drain(sink);
        true
    }

    /// Declares everything before stream offset `to` that has not arrived missing, then
    /// delivers held segments that follow.
    fn skip_to(&mut self, to: u64, sink: &mut dyn FnMut(Chunk<'_>)) {
        while self.next < to {
            match self.held.first_key_value() {
                Some((&off, _)) if off <= to => {
                    if off > self.next {
                        sink(Chunk::Gap(off - self.next));
                        self.next = off;
                    }
                    self.drain(sink);
                }
                _ => {
                    sink(Chunk::Gap(to - self.next));
                    self.next = to;
                    self.drain(sink);
                }
            }
        }
    }

    fn check_fin(&mut self) -> bool {
        if !self.finished && self.fin_at.is_some_and(|f| self.next >= f) {
            self.finished = true;
            return true;
        }
        false
    }
}

#[derive(Debug)]
struct Conn {
    serial: u64,
    client: Addr,
    /// Index 0: client→server, 1: server→client.
    flows: [Flow; 2],
    session: SessionSlot,
    last_seen_us: u64,
    saw_payload: bool,
    /// Payload seen from the client, from the server.
    spoke: [bool; 2],
    /// Bytes this connection holds, as last accounted in `Reassembler::held_total`.
    accounted: usize,
}

/// The HTTP session of a connection, made when its first stream byte or gap arrives. A
/// connection that never carries payload (a SYN flood's, a health check's) costs its table
/// slot and the small identity, not a session with its parsers (issue 22: 65,536 spoofed
/// SYNs held 367 MB with sessions inline in the table, see `cargo xtask bench hostile`).
#[derive(Debug)]
struct SessionSlot {
    /// What the session is made from.
    meta: ConnMeta,
    cfg: Arc<SessionConfig>,
    midstream: bool,
    /// The session, once payload (or a gap) arrived.
    live: Option<Box<Session>>,
}

impl SessionSlot {
    /// The session, made now if this is the first use.
    fn get(&mut self) -> &mut Session {
        self.live.get_or_insert_with(|| {
            Box::new(Session::new(
                self.meta.clone(),
                self.cfg.clone(),
                self.midstream,
            ))
        })
    }

    /// The live session, if any: a session that never saw payload has nothing to report.
    fn live(&mut self) -> Option<&mut Session> {
        self.live.as_deref_mut()
    }

    /// The live session, if any, read-only.
    fn peek(&self) -> Option<&Session> {
        self.live.as_deref()
    }

    fn buffered(&self) -> usize {
        self.live.as_ref().map_or(0, |s| s.buffered())
    }
}

impl Conn {
    /// Both sides sent payload: a real conversation, which a newcomer never evicts. A spoofed
    /// source cannot get here (it never sees the server's sequence numbers to send data the
    /// server answers).
    fn established(&self) -> bool {
        self.spoke[0] && self.spoke[1]
    }
}

/// What [`settle`] decided for a connection.
enum Verdict {
    Keep,
    /// Both directions finished.
    Close,
    /// Over the total memory budget (counted).
    Evict,
}

/// After progress on `conn`: reports FINs reached in order, re-accounts held bytes, and
/// decides whether the connection closes (both directions finished) or is evicted (the total
/// is over budget).
fn settle(
    conn: &mut Conn,
    held_total: &mut usize,
    max_total: usize,
    stats: &mut Stats,
    ts_us: u64,
    out: &mut Vec<ApiEvent>,
) -> Verdict {
    for side in [Side::Client, Side::Server] {
        if conn.flows[side as usize].check_fin()
            && let Some(session) = conn.session.live()
        {
            session.fin(side, ts_us, stats, out);
        }
    }
    let held = conn.flows[0].held_bytes + conn.flows[1].held_bytes + conn.session.buffered();
    *held_total = *held_total - conn.accounted + held;
    conn.accounted = held;
    if conn.flows[0].finished && conn.flows[1].finished {
        Verdict::Close
    } else if *held_total > max_total {
        stats.connections_evicted_memory += 1;
        Verdict::Evict
    } else {
        Verdict::Keep
    }
}

/// Which endpoint is the client of a connection first seen with `seg`.
fn decide_client(server_ports: &[u16], seg: &Segment<'_>, src: Addr, dst: Addr) -> Addr {
    if seg.flags & SYN != 0 {
        return if seg.flags & ACK == 0 { src } else { dst };
    }
    if server_ports.contains(&dst.1) && !server_ports.contains(&src.1) {
        return src;
    }
    if server_ports.contains(&src.1) && !server_ports.contains(&dst.1) {
        return dst;
    }
    if find_message_start(seg.payload, Kind::Request) == Some(0) {
        return src;
    }
    if seg.payload.starts_with(b"HTTP/1.") {
        return dst;
    }
    // Without better evidence, the lower port is the server's.
    if src.1 > dst.1 { src } else { dst }
}

/// Connection table and reassembly engine.
#[derive(Debug)]
pub struct Reassembler {
    cfg: ReassemblyConfig,
    session_cfg: Arc<SessionConfig>,
    sensor: Arc<SensorInfo>,
    conns: HashMap<ConnKey, Conn, ConnHasher>,
    /// Connections in the order they were opened, as `(serial, key)`, for evicting the oldest
    /// not yet established one when the table is full. Entries of closed or established
    /// connections are skipped when met and dropped in bulk when the queue reaches twice the
    /// table size, so it stays bounded at amortised O(1) per connection.
    young: VecDeque<(u64, ConnKey)>,
    next_serial: u64,
    held_total: usize,
    stats: Stats,
    /// HTTP/2 decoder counters of the connections closed so far.
    h2_closed: H2Stats,
}

impl Reassembler {
    /// An empty table for `sensor`.
    pub fn new(cfg: ReassemblyConfig, sensor: SensorInfo) -> Self {
        Reassembler {
            session_cfg: Arc::new(cfg.session.clone()),
            cfg,
            sensor: Arc::new(sensor),
            conns: HashMap::default(),
            young: VecDeque::new(),
            next_serial: 0,
            held_total: 0,
            stats: Stats::default(),
            h2_closed: H2Stats::default(),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// HTTP/2 decoder counters summed over every connection, closed and open (exported as
    /// `apitap_decode_h2_<name>_total`). Visits the open connections: O(connections), for
    /// the periodic metrics snapshot, not per packet.
    pub fn h2_stats(&self) -> H2Stats {
        let mut total = self.h2_closed.clone();
        for c in self.conns.values() {
            if let Some(h2) = c.session.peek().and_then(Session::h2) {
                total.add(h2.stats());
            }
        }
        total
    }

    /// Connections currently tracked.
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// Bytes currently held across all connections.
    pub fn held_bytes(&self) -> usize {
        self.held_total
    }

    /// Feeds one segment; completed transactions are appended to `out`.
    pub fn segment(&mut self, seg: &Segment<'_>, out: &mut Vec<ApiEvent>) {
        self.stats.segments += 1;
        self.stats.segment_bytes += seg.payload.len() as u64;
        let src = (seg.src_ip, seg.src_port);
        let dst = (seg.dst_ip, seg.dst_port);
        let key = ConnKey::of(src, dst);
        let syn_only = seg.flags & SYN != 0 && seg.flags & ACK == 0;

        // A new SYN on a tuple whose client flow began with a different ISN: port reuse.
        if syn_only {
            let reused = self.conns.get(&key).is_some_and(|c| {
                c.client == src && c.flows[0].started && c.flows[0].base != seg.seq.wrapping_add(1)
            });
            if reused {
                self.close(key, seg.ts_us, false, out);
            }
        }

        // One lookup per segment, which also serves everything after. `entry` may grow the
        // table, so it is used only where an insert is allowed; otherwise a plain lookup.
        let opens = (seg.flags & SYN != 0 || seg.wire_len > 0) && seg.flags & RST == 0;
        if opens && self.conns.len() >= self.cfg.max_connections && !self.conns.contains_key(&key) {
            // A full table must not blind the sensor to new connections (a spoofed SYN flood
            // fills it with handshakes that never complete): the oldest connection that is not
            // established gives way.
            self.make_room(seg.ts_us, out);
        }
        if opens {
            self.compact_young();
        }
        let may_insert = opens && self.conns.len() < self.cfg.max_connections;
        let found = if may_insert {
            match self.conns.entry(key) {
                Entry::Occupied(e) => Ok(e.into_mut()),
                Entry::Vacant(e) => Err(e),
            }
        } else {
            match self.conns.get_mut(&key) {
                Some(conn) => Ok(conn),
                None => {
                    if opens {
                        self.stats.connections_table_full += 1;
                    } else {
                        self.stats.segments_untracked += 1;
                    }
                    return;
                }
            }
        };
        let conn = match found {
            Ok(conn) => conn,
            Err(e) => {
                let client = decide_client(&self.cfg.server_ports, seg, src, dst);
                let server = if client == src { dst } else { src };
                let midstream = seg.flags & SYN == 0;
                let meta = ConnMeta {
                    sensor: self.sensor.clone(),
                    client: Endpoint {
                        ip: client.0,
                        port: client.1,
                    },
                    server: Endpoint {
                        ip: server.0,
                        port: server.1,
                    },
                    first_seen_ns: seg.ts_us.saturating_mul(1000),
                    tls: false,
                };
                self.stats.connections_opened += 1;
                if midstream {
                    self.stats.connections_midstream += 1;
                }
                let conn = Conn {
                    serial: self.next_serial,
                    client,
                    flows: [Flow::default(), Flow::default()],
                    session: SessionSlot {
                        meta,
                        cfg: self.session_cfg.clone(),
                        midstream,
                        live: None,
                    },
                    last_seen_us: seg.ts_us,
                    saw_payload: false,
                    spoke: [false; 2],
                    accounted: 0,
                };
                self.young.push_back((self.next_serial, key));
                self.next_serial += 1;
                e.insert(conn)
            }
        };
        conn.last_seen_us = conn.last_seen_us.max(seg.ts_us);
        let side = if src == conn.client {
            Side::Client
        } else {
            Side::Server
        };
        let Conn {
            flows,
            session,
            saw_payload,
            spoke,
            ..
        } = &mut *conn;
        let other = &flows[1 - side as usize];
        let peer_offset = (seg.flags & ACK != 0 && other.started)
            .then(|| other.offset_of(seg.ack))
            .and_then(|o| u64::try_from(o).ok());
        let stats = &mut self.stats;
        // The sender acknowledges bytes of the other direction that were never captured: they
        // are lost to us (the peer has them), so declare the gap now rather than at timeout.
        if let Some(acked) = peer_offset {
            let other_side = if side == Side::Client {
                Side::Server
            } else {
                Side::Client
            };
            let other = &mut flows[other_side as usize];
            // A FIN occupies one sequence number that is not a stream byte.
            let acked = other.fin_at.map_or(acked, |f| acked.min(f));
            if acked > other.next && acked - other.next <= MAX_AHEAD_BYTES {
                let mut sink = |chunk: Chunk<'_>| match chunk {
                    Chunk::Data(t, peer, bytes) => {
                        session.get().data(other_side, t, bytes, peer, stats, out)
                    }
                    Chunk::Gap(len) => session.get().gap(other_side, seg.ts_us, len, stats, out),
                };
                other.skip_to(acked, &mut sink);
                stats.gaps_acked_unseen += 1;
            }
        }
        let flow = &mut flows[side as usize];

        if !flow.started {
            // SYN consumes one sequence number (RFC 9293 §3.4).
            flow.start(if seg.flags & SYN != 0 {
                seg.seq.wrapping_add(1)
            } else {
                seg.seq
            });
        }
        let ts = seg.ts_us;
        let seq = if seg.flags & SYN != 0 {
            seg.seq.wrapping_add(1)
        } else {
            seg.seq
        };
        let mut sink = |chunk: Chunk<'_>| match chunk {
            Chunk::Data(t, peer, bytes) => session.get().data(side, t, bytes, peer, stats, out),
            Chunk::Gap(len) => session.get().gap(side, ts, len, stats, out),
        };
        let mut outcome = None;
        if seg.wire_len > 0 {
            *saw_payload = true;
            spoke[side as usize] = true;
            outcome = Some(flow.accept(
                seq,
                seg.payload,
                seg.wire_len as u64,
                ts,
                peer_offset,
                &mut sink,
            ));
        }
        let mut forced = false;
        while flow.held_bytes > self.cfg.max_buffered_bytes_per_connection
            && flow.force_gap(&mut sink)
        {
            forced = true;
        }
        if seg.flags & FIN != 0 && flow.fin_at.is_none() {
            let at = flow.offset_of(seq) + seg.wire_len as i64;
            if at >= 0 {
                flow.fin_at = Some(at as u64);
            }
        }
        match outcome {
            Some(Outcome::Overlapped) => self.stats.segments_overlapping += 1,
            Some(Outcome::Retransmitted) => self.stats.segments_retransmitted += 1,
            Some(Outcome::Buffered) => self.stats.segments_out_of_order += 1,
            Some(Outcome::OutOfWindow) => self.stats.segments_out_of_window += 1,
            Some(Outcome::Conflict) => {
                self.stats.segments_conflicting += 1;
                session.get().anomaly(side, Anomaly::OverlapConflict);
            }
            Some(Outcome::Delivered) | None => {}
        }
        if forced {
            self.stats.gaps_buffer_full += 1;
        }
        if seg.flags & RST != 0 {
            self.close(key, ts, false, out);
            return;
        }
        let verdict = settle(
            conn,
            &mut self.held_total,
            self.cfg.max_buffered_bytes_total,
            &mut self.stats,
            ts,
            out,
        );
        self.apply(key, verdict, ts, out);
    }

    /// Evicts the oldest connection that is not established, if any (counted); compacts the
    /// queue of candidates when it has grown to twice the table.
    fn make_room(&mut self, ts_us: u64, out: &mut Vec<ApiEvent>) {
        while let Some((serial, key)) = self.young.pop_front() {
            let candidate = self
                .conns
                .get(&key)
                .is_some_and(|c| c.serial == serial && !c.established());
            if candidate {
                self.stats.connections_evicted_table_full += 1;
                self.close(key, ts_us, true, out);
                return;
            }
        }
    }

    /// Drops queue entries that can no longer be evicted once the queue is twice the table.
    fn compact_young(&mut self) {
        if self.young.len() >= 2 * self.cfg.max_connections.max(64) {
            let conns = &self.conns;
            self.young.retain(|(serial, key)| {
                conns
                    .get(key)
                    .is_some_and(|c| c.serial == *serial && !c.established())
            });
        }
    }

    fn apply(&mut self, key: ConnKey, verdict: Verdict, ts_us: u64, out: &mut Vec<ApiEvent>) {
        match verdict {
            Verdict::Keep => {}
            Verdict::Close => self.close(key, ts_us, false, out),
            Verdict::Evict => self.close(key, ts_us, true, out),
        }
    }

    fn close(&mut self, key: ConnKey, ts_us: u64, evicted: bool, out: &mut Vec<ApiEvent>) {
        let Some(mut conn) = self.conns.remove(&key) else {
            return;
        };
        self.held_total -= conn.accounted;
        let stats = &mut self.stats;
        for (idx, side) in [(0, Side::Client), (1, Side::Server)] {
            let Conn { flows, session, .. } = &mut conn;
            let flow = &mut flows[idx];
            let mut sink = |chunk: Chunk<'_>| match chunk {
                Chunk::Data(t, peer, bytes) => session.get().data(side, t, bytes, peer, stats, out),
                Chunk::Gap(len) => session.get().gap(side, ts_us, len, stats, out),
            };
            while flow.force_gap(&mut sink) {}
        }
        if let Some(session) = conn.session.live() {
            session.close(ts_us, evicted, stats, out);
            if let Some(h2) = session.h2() {
                self.h2_closed.add(h2.stats());
            }
        }
        stats.connections_closed += 1;
    }

    /// Applies timeouts at stream time `now_us`: declares gaps for out-of-order data that
    /// waited too long and closes idle connections.
    pub fn tick(&mut self, now_us: u64, out: &mut Vec<ApiEvent>) {
        let mut keys: Vec<(u64, ConnKey)> =
            self.conns.iter().map(|(k, c)| (c.serial, *k)).collect();
        keys.sort_unstable_by_key(|(serial, _)| *serial);
        for (_, key) in keys {
            let Some(conn) = self.conns.get(&key) else {
                continue;
            };
            let limit = if conn.saw_payload {
                self.cfg.idle_timeout_us
            } else {
                self.cfg.handshake_timeout_us
            };
            if now_us.saturating_sub(conn.last_seen_us) >= limit {
                self.stats.connections_idle_timeout += 1;
                let ts = conn.last_seen_us;
                self.close(key, ts, false, out);
                continue;
            }
            let stale = conn.flows.iter().any(|f| {
                !f.held.is_empty()
                    && now_us.saturating_sub(f.held_since_us) >= self.cfg.gap_timeout_us
            });
            if stale {
                self.flush_held(key, now_us, out);
                self.stats.gaps_timeout += 1;
            }
        }
    }

    /// Ends every connection (end of input or shutdown), in the order they were opened.
    pub fn finish(&mut self, out: &mut Vec<ApiEvent>) {
        let mut keys: Vec<(u64, ConnKey, u64)> = self
            .conns
            .iter()
            .map(|(k, c)| (c.serial, *k, c.last_seen_us))
            .collect();
        keys.sort_unstable_by_key(|(serial, _, _)| *serial);
        for (_, key, ts) in keys {
            self.close(key, ts, false, out);
        }
    }

    fn flush_held(&mut self, key: ConnKey, ts_us: u64, out: &mut Vec<ApiEvent>) {
        let Some(conn) = self.conns.get_mut(&key) else {
            return;
        };
        let stats = &mut self.stats;
        for (idx, side) in [(0, Side::Client), (1, Side::Server)] {
            let Conn { flows, session, .. } = &mut *conn;
            let flow = &mut flows[idx];
            let mut sink = |chunk: Chunk<'_>| match chunk {
                Chunk::Data(t, peer, bytes) => session.get().data(side, t, bytes, peer, stats, out),
                Chunk::Gap(len) => session.get().gap(side, ts_us, len, stats, out),
            };
            flow.force_gap(&mut sink);
        }
        let verdict = settle(
            conn,
            &mut self.held_total,
            self.cfg.max_buffered_bytes_total,
            stats,
            ts_us,
            out,
        );
        self.apply(key, verdict, ts_us, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use apitap_schema::Anomaly;

    const C: (&str, u16) = ("10.0.0.2", 40000);
    const S: (&str, u16) = ("10.0.0.1", 80);

    #[test]
    fn conn_keys_hash_by_content_and_keep_mapped_addresses_apart() {
        use std::hash::BuildHasher;
        let v4: IpAddr = "10.0.0.2".parse().unwrap();
        let mapped: IpAddr = "::ffff:10.0.0.2".parse().unwrap();
        let server: IpAddr = "10.0.0.1".parse().unwrap();
        let state = ConnHasher::default();
        let a = ConnKey::of((v4, 40000), (server, 80));
        let b = ConnKey::of((server, 80), (v4, 40000));
        assert_eq!(a, b);
        assert_eq!(state.hash_one(a), state.hash_one(b));
        // Same hash input by design, still two connections.
        let m = ConnKey::of((mapped, 40000), (server, 80));
        assert_ne!(a, m);
        let mut table: HashMap<ConnKey, u8, ConnHasher> = HashMap::default();
        table.insert(a, 1);
        table.insert(m, 2);
        assert_eq!((table[&a], table[&m]), (1, 2));
        // Ports are part of the key's hash, each in its own position.
        let swapped = ConnKey::of((v4, 80), (server, 40000));
        assert_ne!(state.hash_one(a), state.hash_one(swapped));
    }

    fn sensor() -> SensorInfo {
        SensorInfo {
            id: "t".into(),
            host: "t".into(),
            node: None,
        }
    }

    struct Pkt {
        from_client: bool,
        seq: u32,
        ack: u32,
        flags: u8,
        data: Vec<u8>,
        ts: u64,
    }

    fn seg(p: &Pkt) -> Segment<'_> {
        let (a, b) = if p.from_client { (C, S) } else { (S, C) };
        Segment {
            ts_us: p.ts,
            src_ip: a.0.parse().unwrap(),
            src_port: a.1,
            dst_ip: b.0.parse().unwrap(),
            dst_port: b.1,
            seq: p.seq,
            ack: p.ack,
            flags: p.flags,
            payload: &p.data,
            wire_len: p.data.len() as u32,
        }
    }

    /// A full connection: handshake, `reqs` requests each answered, FIN both ways, as groups
    /// of packets (one group per message; handshake first, FINs last). Data is split into
    /// `mss`-byte segments. Sequence numbers start near wraparound.
    fn conversation_groups(reqs: &[(&str, &str)], mss: usize) -> Vec<Vec<Pkt>> {
        let (mut cs, mut ss) = (u32::MAX - 10, 7u32);
        let mut ts = 1_000;
        let mut groups = vec![vec![
            Pkt {
                from_client: true,
                seq: cs,
                ack: 0,
                flags: SYN,
                data: vec![],
                ts,
            },
            Pkt {
                from_client: false,
                seq: ss,
                ack: cs.wrapping_add(1),
                flags: SYN | ACK,
                data: vec![],
                ts,
            },
        ]];
        cs = cs.wrapping_add(1);
        ss = ss.wrapping_add(1);
        for (req, res) in reqs {
            let mut g = Vec::new();
            for part in req.as_bytes().chunks(mss) {
                ts += 10;
                g.push(Pkt {
                    from_client: true,
                    seq: cs,
                    ack: ss,
                    flags: ACK,
                    data: part.to_vec(),
                    ts,
                });
                cs = cs.wrapping_add(part.len() as u32);
            }
            groups.push(g);
            let mut g = Vec::new();
            for part in res.as_bytes().chunks(mss) {
                ts += 10;
                g.push(Pkt {
                    from_client: false,
                    seq: ss,
                    ack: cs,
                    flags: ACK,
                    data: part.to_vec(),
                    ts,
                });
                ss = ss.wrapping_add(part.len() as u32);
            }
            groups.push(g);
        }
        ts += 10;
        groups.push(vec![
            Pkt {
                from_client: true,
                seq: cs,
                ack: ss,
                flags: FIN | ACK,
                data: vec![],
                ts,
            },
            Pkt {
                from_client: false,
                seq: ss,
                ack: cs.wrapping_add(1),
                flags: FIN | ACK,
                data: vec![],
                ts,
            },
        ]);
        groups
    }

    fn conversation(reqs: &[(&str, &str)], mss: usize) -> Vec<Pkt> {
        conversation_groups(reqs, mss)
            .into_iter()
            .flatten()
            .collect()
    }

    fn run(pkts: &[Pkt], cfg: ReassemblyConfig) -> (Vec<ApiEvent>, Reassembler) {
        let mut r = Reassembler::new(cfg, sensor());
        let mut out = Vec::new();
        for p in pkts {
            r.segment(&seg(p), &mut out);
        }
        r.finish(&mut out);
        (out, r)
    }

    fn summary(events: &[ApiEvent]) -> Vec<(String, Option<u16>, String, Vec<Anomaly>)> {
        events
            .iter()
            .map(|e| {
                (
                    e.request.path.clone(),
                    e.response.as_ref().map(|r| r.status),
                    e.response
                        .as_ref()
                        .map(|r| r.body.data.clone())
                        .unwrap_or_default(),
                    e.anomalies.clone(),
                )
            })
            .collect()
    }

    fn reqs() -> Vec<(&'static str, &'static str)> {
        vec![
            (
                "GET /one HTTP/1.1\r\nHost: a\r\n\r\n",
                "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst",
            ),
            (
                "POST /two HTTP/1.1\r\nContent-Length: 11\r\n\r\nhello world",
                "HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nsecond\r\n0\r\n\r\n",
            ),
            (
                "GET /three HTTP/1.1\r\n\r\n",
                "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
            ),
        ]
    }

    #[test]
    fn in_order_conversation_across_seq_wraparound() {
        let (events, r) = run(&conversation(&reqs(), 7), ReassemblyConfig::default());
        assert_eq!(
            summary(&events),
            vec![
                ("/one".into(), Some(200), "first".into(), vec![]),
                ("/two".into(), Some(201), "second".into(), vec![]),
                ("/three".into(), Some(404), "".into(), vec![]),
            ]
        );
        assert_eq!(events[1].request.body.data, "hello world");
        assert_eq!(r.connections(), 0, "closed by FINs");
        assert_eq!(r.stats().connections_closed, 1);
        assert_eq!(r.held_bytes(), 0);
        assert_eq!(events[0].client.port, 40000);
    }

    #[test]
    fn any_reordering_and_duplication_of_segments_gives_identical_events() {
        let (want, _) = run(&conversation(&reqs(), 5), ReassemblyConfig::default());
        // Deterministic pseudo-random permutations of each message's segments, with
        // retransmitted duplicates. Causality across directions is kept: a response is never
        // captured before the request it answers was sent.
        let mut state = 0x9e3779b97f4a7c15u64;
        let mut rand = move |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        for round in 0..300 {
            let groups = conversation_groups(&reqs(), 5);
            let mut order: Vec<&Pkt> = Vec::new();
            for g in &groups {
                let mut g: Vec<&Pkt> = g.iter().collect();
                for i in (1..g.len()).rev() {
                    g.swap(i, rand(i + 1));
                }
                if round % 2 == 0 && !g.is_empty() {
                    let dup = g[rand(g.len())];
                    g.insert(rand(g.len() + 1), dup);
                }
                order.extend(g);
            }
            let mut r = Reassembler::new(ReassemblyConfig::default(), sensor());
            let mut out = Vec::new();
            for p in &order {
                r.segment(&seg(p), &mut out);
            }
            r.finish(&mut out);
            assert_eq!(summary(&out), summary(&want), "round {round}");
            let ids = |v: &[ApiEvent]| v.iter().map(|e| e.event_id.clone()).collect::<Vec<_>>();
            assert_eq!(ids(&out), ids(&want));
            assert_eq!(out[1].request.body.data, "hello world");
        }
    }

    #[test]
    fn lost_request_does_not_shift_pairing() {
        let mut pkts = conversation(&reqs(), 1000);
        let lost = pkts.remove(2); // the request for /one
        assert!(lost.from_client);
        let mut r = Reassembler::new(ReassemblyConfig::default(), sensor());
        let mut out = Vec::new();
        let mut last = 0;
        for p in &pkts {
            r.segment(&seg(p), &mut out);
            r.tick(p.ts, &mut out);
            last = p.ts;
        }
        r.tick(last + 3_000_000, &mut out);
        r.finish(&mut out);
        let s = summary(&out);
        assert_eq!(
            s.iter().map(|e| (e.0.as_str(), e.1)).collect::<Vec<_>>(),
            vec![("/two", Some(201)), ("/three", Some(404))],
            "{s:?}"
        );
        assert_eq!(r.stats().unsolicited_responses, 1);
    }

    #[test]
    fn missing_segment_becomes_a_gap_after_timeout_then_resyncs() {
        let mut pkts = conversation(&reqs(), 1000);
        // Drop the first response entirely (index 3: the response to /one).
        let lost = pkts.remove(3);
        assert!(!lost.from_client);
        let mut r = Reassembler::new(ReassemblyConfig::default(), sensor());
        let mut out = Vec::new();
        let mut last = 0;
        for p in &pkts {
            r.segment(&seg(p), &mut out);
            last = p.ts;
        }
        r.tick(last + 3_000_000, &mut out);
        r.finish(&mut out);
        let s = summary(&out);
        assert_eq!(s.len(), 3, "{s:?}");
        // The client's next request acknowledges the lost response: the gap is declared then.
        assert_eq!(r.stats().gaps_acked_unseen, 1);
        assert_eq!(r.stats().stream_gaps, 1);
        // /one loses its response; the rest pair correctly after resync.
        assert_eq!(s[0].1, None);
        assert!(
            s[0].3.contains(&Anomaly::NoResponse) || s[0].3.contains(&Anomaly::ResponseGap),
            "{s:?}"
        );
        assert_eq!(s[1].1, Some(201));
        assert_eq!(s[2].1, Some(404));
    }

    #[test]
    fn midstream_attach_reports_following_transactions() {
        let pkts = conversation(&reqs(), 1000);
        // Skip handshake and the first exchange.
        let (events, r) = run(
            &pkts[4..],
            ReassemblyConfig {
                server_ports: vec![80],
                ..ReassemblyConfig::default()
            },
        );
        let s = summary(&events);
        assert_eq!(s.len(), 2, "{s:?}");
        assert_eq!(s[0].0, "/two");
        assert_eq!(s[0].3, vec![Anomaly::MidstreamStart]);
        assert_eq!(s[1].0, "/three");
        assert_eq!(r.stats().connections_midstream, 1);
    }

    #[test]
    fn rst_closes_and_reports_pending() {
        let mut pkts = conversation(&reqs()[..1], 1000);
        pkts.truncate(3); // handshake + request
        pkts.push(Pkt {
            from_client: false,
            seq: 8,
            ack: 0,
            flags: RST,
            data: vec![],
            ts: 99_999,
        });
        let (events, r) = run(&pkts, ReassemblyConfig::default());
        assert_eq!(events.len(), 1);
        assert!(events[0].anomalies.contains(&Anomaly::NoResponse));
        assert_eq!(r.stats().connections_closed, 1);
    }

    #[test]
    fn conflicting_retransmission_keeps_first_copy_and_is_flagged() {
        // Evasion shape: the tail of a request arrives early, then again with other bytes.
        let pkts = conversation(&reqs()[..1], 8);
        let mut r = Reassembler::new(ReassemblyConfig::default(), sensor());
        let mut out = Vec::new();
        // Handshake, then request segments 2.. before segment 1, with one forged duplicate.
        r.segment(&seg(&pkts[0]), &mut out);
        r.segment(&seg(&pkts[1]), &mut out);
        let data: Vec<&Pkt> = pkts[2..]
            .iter()
            .filter(|p| p.from_client && !p.data.is_empty())
            .collect();
        r.segment(&seg(data[1]), &mut out);
        let mut forged = clone_pkt(data[1]);
        forged.data = b"XXXXXXXX".to_vec();
        r.segment(&seg(&forged), &mut out);
        for p in &pkts[2..] {
            r.segment(&seg(p), &mut out);
        }
        r.finish(&mut out);
        assert_eq!(r.stats().segments_conflicting, 1);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].request.path, "/one", "first copy won");
        assert!(
            out[0].anomalies.contains(&Anomaly::OverlapConflict),
            "{:?}",
            out[0].anomalies
        );
    }

    fn clone_pkt(p: &Pkt) -> Pkt {
        Pkt {
            from_client: p.from_client,
            seq: p.seq,
            ack: p.ack,
            flags: p.flags,
            data: p.data.clone(),
            ts: p.ts,
        }
    }

    #[test]
    fn segments_that_cannot_open_a_connection_are_counted_not_tracked() {
        let mut r = Reassembler::new(ReassemblyConfig::default(), sensor());
        let mut out = Vec::new();
        // Pure ACK, FIN without data, and RST with data on unknown tuples.
        for (i, (flags, payload)) in [(ACK, &b""[..]), (FIN | ACK, b""), (RST, b"x")]
            .into_iter()
            .enumerate()
        {
            let s = Segment {
                ts_us: i as u64,
                src_ip: "10.9.0.1".parse().unwrap(),
                src_port: 40000 + i as u16,
                dst_ip: "10.0.0.1".parse().unwrap(),
                dst_port: 80,
                seq: 1,
                ack: 1,
                flags,
                payload,
                wire_len: payload.len() as u32,
            };
            r.segment(&s, &mut out);
        }
        assert_eq!(r.connections(), 0);
        assert_eq!(r.stats().segments_untracked, 3);
        assert_eq!(r.stats().connections_table_full, 0);
        assert!(out.is_empty());
    }

    /// A spoofed SYN flood (issue 22) fills the table with handshakes that never complete: each
    /// new SYN evicts the oldest half-open one, so established conversations keep their state
    /// and a real client connecting during the flood is still decoded; every eviction counted.
    #[test]
    fn syn_flood_is_bounded_and_counted() {
        let cfg = ReassemblyConfig {
            max_connections: 100,
            ..ReassemblyConfig::default()
        };
        let mut r = Reassembler::new(cfg, sensor());
        let mut out = Vec::new();
        let flood = |r: &mut Reassembler, out: &mut Vec<ApiEvent>, from: u32, n: u32| {
            for i in from..from + n {
                let s = Segment {
                    ts_us: 1_000 + i as u64,
                    src_ip: IpAddr::from([10, 9, (i >> 8) as u8, i as u8]),
                    src_port: 1024 + (i % 60000) as u16,
                    dst_ip: "10.0.0.1".parse().unwrap(),
                    dst_port: 80,
                    seq: i,
                    ack: 0,
                    flags: SYN,
                    payload: &[],
                    wire_len: 0,
                };
                r.segment(&s, out);
            }
        };
        // Ten established conversations (client ports 40000..40010), each with its request
        // sent and only the first byte of its response.
        let req = [(
            "GET /kept HTTP/1.1\r\nHost: h\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        )];
        let conv = conversation(&req, 1400);
        let at = conv
            .iter()
            .position(|p| p.data.starts_with(b"HTTP"))
            .unwrap();
        let mut first = clone_pkt(&conv[at]);
        first.data.truncate(1);
        let mut rest = clone_pkt(&conv[at]);
        rest.data.drain(..1);
        rest.seq = rest.seq.wrapping_add(1);
        fn on_port(p: &Pkt, port: u16) -> Segment<'_> {
            let mut s = seg(p);
            if p.from_client {
                s.src_port = port;
            } else {
                s.dst_port = port;
            }
            s
        }
        for port in 40000..40010 {
            for p in &conv[..at] {
                r.segment(&on_port(p, port), &mut out);
            }
            r.segment(&on_port(&first, port), &mut out);
        }
        assert_eq!(r.connections(), 10);
        flood(&mut r, &mut out, 0, 1000);
        assert_eq!(r.connections(), 100);
        // Only the ten conversations carry a session; the flood's slots hold none.
        let live = r
            .conns
            .values()
            .filter(|c| c.session.live.is_some())
            .count();
        assert_eq!(live, 10);
        assert_eq!(r.stats().connections_evicted_table_full, 910);
        assert_eq!(r.stats().connections_table_full, 0);
        assert!(out.is_empty(), "evicted handshakes carry no transaction");

        // A new client connects during the flood and is decoded.
        for p in &conv {
            r.segment(&on_port(p, 50000), &mut out);
        }
        assert_eq!(out.len(), 1, "{:?}", summary(&out));
        flood(&mut r, &mut out, 1000, 200);
        // The established ones survived the flood: the rest of their responses completes them.
        for port in 40000..40010 {
            r.segment(&on_port(&rest, port), &mut out);
        }
        assert_eq!(out.len(), 11, "{:?}", summary(&out));
        assert!(
            out.iter().all(|e| e.anomalies.is_empty()),
            "{:?}",
            summary(&out)
        );

        // Only a table full of established connections refuses newcomers.
        let full = ReassemblyConfig {
            max_connections: 10,
            ..ReassemblyConfig::default()
        };
        let mut r2 = Reassembler::new(full, sensor());
        for port in 40000..40010 {
            for p in &conv[..at] {
                r2.segment(&on_port(p, port), &mut out);
            }
            r2.segment(&on_port(&first, port), &mut out);
        }
        flood(&mut r2, &mut out, 0, 5);
        assert_eq!(r2.stats().connections_table_full, 5);
        assert_eq!(r2.stats().connections_evicted_table_full, 0);
        r.tick(60_000_000, &mut out);
        assert_eq!(
            r.connections(),
            10,
            "handshake timeout frees the half-open entries, not the conversations"
        );
    }

    #[test]
    fn out_of_order_buffer_is_bounded() {
        let cfg = ReassemblyConfig {
            max_buffered_bytes_per_connection: 10_000,
            ..ReassemblyConfig::default()
        };
        let mut r = Reassembler::new(cfg, sensor());
        let mut out = Vec::new();
        let base = conversation(&[], 1);
        r.segment(&seg(&base[0]), &mut out);
        // Never send byte 0; keep sending later segments.
        for i in 1..100u32 {
            let p = Pkt {
                from_client: true,
                seq: (u32::MAX - 9).wrapping_add(i * 1000),
                ack: 0,
                flags: ACK,
                data: vec![b'x'; 1000],
                ts: i as u64,
            };
            r.segment(&seg(&p), &mut out);
            assert!(
                r.held_bytes() <= 11_000 + 64 * 1024,
                "held {}",
                r.held_bytes()
            );
        }
        assert!(r.stats().gaps_buffer_full > 0);
    }

    #[test]
    fn truncated_capture_declares_a_gap_immediately() {
        let pkts = conversation(&reqs()[..1], 1000);
        let mut r = Reassembler::new(ReassemblyConfig::default(), sensor());
        let mut out = Vec::new();
        for (i, p) in pkts.iter().enumerate() {
            let mut s = seg(p);
            if i == 3 {
                // Response captured only in part (snap length).
                s.payload = &p.data[..20];
            }
            r.segment(&s, &mut out);
        }
        r.finish(&mut out);
        assert_eq!(out.len(), 1);
        assert!(out[0].anomalies.contains(&Anomaly::ResponseGap));
        assert_eq!(r.stats().stream_gaps, 1, "{:?}", r.stats());
    }
}
