//! One connection's HTTP conversation: pairs requests with responses and builds events.
//!
//! The client's first bytes tell the protocol: the HTTP/2 connection preface (RFC 9113 §3.4:
//! prior-knowledge h2c, and h2 over TLS, whose client sends it first too) hands the
//! connection to [`crate::h2::Connection`], one event per stream; anything else is HTTP/1.x.
//! A session that begins mid-connection is HTTP/2 when its first bytes are a plausible frame
//! header. Until the client has spoken, the server's bytes wait (bounded: past
//! [`SNIFF_SERVER_MAX_BYTES`] the session is HTTP/1.x). An HTTP/1.1 request with `Upgrade:
//! h2c` holds the client's later bytes (up to the header limit) until its response: a `101` naming `h2c`
//! hands the connection to HTTP/2, the request becoming stream 1 (RFC 7540 §3.2,
//! [`crate::h2::upgrade`]); any other answer resumes HTTP/1.
//!
//! A [`Session`] is the source-independent stage of the pipeline (R-CAP-3, R-CAP-6, R-CAP-4):
//! it consumes *ordered bytes of one direction of one connection, with timestamps and gaps
//! marked* through [`Session::data`], [`Session::gap`], [`Session::fin`] and [`Session::close`].
//! TCP reassembly of captured packets ([`crate::tcp`]) feeds it today; pcap replay feeds it
//! through the same reassembler, and TLS uprobes will call it directly with plaintext.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::Arc;

use apitap_schema::{
    Anomaly, ApiEvent, Body, Endpoint, PayloadMode, Request, Response, SCHEMA_VERSION, SensorInfo,
};
use xxhash_rust::xxh3::{Xxh3, xxh3_64, xxh3_128};

use crate::content;
use crate::grpc;
use crate::h2;
use crate::http1::{Framing, Head, Kind, Limits, MessageParser, Step};
use crate::stats::Stats;

/// Server bytes held at most while the client's first bytes are awaited (see the module doc).
pub const SNIFF_SERVER_MAX_BYTES: usize = 64 * 1024;
/// SETTINGS_MAX_FRAME_SIZE assumed for a connection joined mid-way (RFC 9113 §6.5.2 allows
/// up to 2^24 - 1; peers rarely raise the 16 KiB default much).
const MIDSTREAM_MAX_FRAME: u32 = 1 << 20;

/// Which protocol the connection speaks.
#[derive(Debug)]
enum Proto {
    /// Not known yet: the client's bytes so far (a prefix of the preface, or fewer than a
    /// frame header mid-connection) and the server's, with their times.
    Sniffing {
        client: Vec<u8>,
        client_us: u64,
        server: Vec<(u64, Vec<u8>)>,
        server_bytes: usize,
    },
    Http1,
    H2(Box<h2::Connection>),
}

/// Direction of bytes within a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Bytes sent by the client (requests).
    Client,
    /// Bytes sent by the server (responses).
    Server,
}

/// Decoder settings shared by all sessions.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Body bytes kept per message at most; the rest is counted, not kept.
    pub max_body_bytes: usize,
    /// Header block size at most.
    pub max_header_bytes: usize,
    /// Header fields per message at most.
    pub max_headers: usize,
    /// Requests awaiting a response per connection at most (pipelining depth); beyond it the
    /// oldest is reported without a response.
    pub max_pending_requests: usize,
    /// Bytes held by requests awaiting a response per connection at most (heads and body
    /// samples); beyond it the oldest is reported without a response, like the depth limit.
    pub max_pending_bytes: usize,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            max_body_bytes: 64 * 1024,
            max_header_bytes: 64 * 1024,
            max_headers: 128,
            max_pending_requests: 64,
            max_pending_bytes: 1024 * 1024,
        }
    }
}

/// Identity of a connection, fixed when it is first seen.
#[derive(Debug, Clone)]
pub struct ConnMeta {
    /// Sensor that saw it.
    pub sensor: Arc<SensorInfo>,
    /// Client side.
    pub client: Endpoint,
    /// Server side.
    pub server: Endpoint,
    /// First packet time, nanoseconds since the Unix epoch (part of the stable ids).
    pub first_seen_ns: u64,
    /// Bytes came from a TLS library rather than the wire.
    pub tls: bool,
}

/// What every id of a connection hashes first (sensor id, a 0 byte, client and server
/// address and port, first-seen time), serialised once per connection: a streaming XXH3
/// state per event cost more than the rest of building the event's ids.
#[derive(Debug)]
struct IdSeed(Vec<u8>);

impl IdSeed {
    fn of(meta: &ConnMeta) -> Self {
        let mut b = Vec::with_capacity(meta.sensor.id.len() + 1 + 2 * 18 + 8);
        b.extend_from_slice(meta.sensor.id.as_bytes());
        b.push(0);
        for ep in [meta.client, meta.server] {
            match ep.ip {
                IpAddr::V4(a) => b.extend_from_slice(&a.octets()),
                IpAddr::V6(a) => b.extend_from_slice(&a.octets()),
            }
            b.extend_from_slice(&ep.port.to_be_bytes());
        }
        b.extend_from_slice(&meta.first_seen_ns.to_be_bytes());
        IdSeed(b)
    }

    /// 16 hex digits, stable for the same connection seen by the same sensor.
    fn connection_id(&self) -> String {
        hex(u128::from(xxh3_64(&self.0)), 16)
    }

    /// 32 hex digits, stable for the same transaction: XXH3-128 of the seed and the index,
    /// one-shot from a stack copy when it fits (the same digest as streaming both parts).
    fn event_id(&self, index: u64) -> String {
        const STACK: usize = 128;
        let n = self.0.len();
        let digest = if n + 8 <= STACK {
            let mut buf = [0u8; STACK];
            buf[..n].copy_from_slice(&self.0);
            buf[n..n + 8].copy_from_slice(&index.to_be_bytes());
            xxh3_128(&buf[..n + 8])
        } else {
            let mut h = Xxh3::new();
            h.update(&self.0);
            h.update(&index.to_be_bytes());
            h.digest128()
        };
        hex(digest, 32)
    }
}

/// The low `digits` hex digits of `v`, lowercase and zero-padded (`format!("{v:0digits$x}")`
/// without the formatting machinery: this runs once per event).
fn hex(v: u128, digits: usize) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digits = digits.min(32);
    // Into a stack buffer, a byte per digit from the right, then one allocation.
    let mut buf = [0u8; 32];
    let mut rest = v;
    for b in buf[..digits].iter_mut().rev() {
        *b = HEX[(rest & 0xf) as usize];
        rest >>= 4;
    }
    // ASCII by construction.
    std::str::from_utf8(&buf[..digits])
        .map(str::to_owned)
        .unwrap_or_default()
}

#[derive(Debug, Default)]
struct Capture {
    data: Vec<u8>,
    /// Body bytes seen.
    len: u64,
    /// Length the framing declared (Content-Length), when it did.
    declared: Option<u64>,
    /// gRPC-Web over HTTP/1.1 (PROTOCOL-WEB): the message framing counted over every body
    /// byte, past the capture cap too.
    grpc: Option<Box<grpc::MessageFramer>>,
}

impl Capture {
    /// The body's length as sent: the declared length when known (bytes may have been lost),
    /// else what was seen.
    fn wire_len(&self) -> u64 {
        self.declared.map_or(self.len, |d| d.max(self.len))
    }
}

impl Capture {
    fn add(&mut self, bytes: &[u8], cap: usize) {
        if self.data.capacity() == 0 {
            // One allocation of the right size when the length is declared.
            let want = self
                .declared
                .map_or(bytes.len(), |d| usize::try_from(d).unwrap_or(usize::MAX));
            self.data.reserve(want.min(cap));
        }
        self.len += bytes.len() as u64;
        if let Some(f) = self.grpc.as_mut() {
            f.feed(bytes);
        }
        let room = cap.saturating_sub(self.data.len());
        self.data.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }
}

#[derive(Debug)]
struct PendingRequest {
    /// Bytes its head keeps alive ([`Head::retained_bytes`]), fixed when it is parsed.
    head_bytes: usize,
    index: u64,
    /// Client-stream offset just past the request's header block: the server cannot answer
    /// before it received that much (it may answer before the body, RFC 9112 §9.3).
    head_end: u64,
    start_us: u64,
    head: Head,
    body: Capture,
    anomalies: Vec<Anomaly>,
}

impl PendingRequest {
    /// Bytes this request keeps alive while it waits.
    fn held(&self) -> usize {
        self.head_bytes + self.body.data.len()
    }
}

#[derive(Debug)]
struct PartialResponse {
    head: Head,
    body: Capture,
    anomalies: Vec<Anomaly>,
    /// The request it answers; `None` for an unsolicited response, or for one that answers
    /// the request still being read (`answers_reading`).
    request: Option<PendingRequest>,
    /// Sent before its request finished (RFC 9112 §9.3, e.g. 413 or a `return` directive):
    /// pairs with the request still being read.
    answers_reading: bool,
    /// Answers a request already reported without a response (pipeline overflow): read to
    /// keep framing, then discarded (counted).
    orphan: bool,
}

/// A response that completed before its request did.
#[derive(Debug)]
struct EarlyResponse {
    head: Head,
    body: Capture,
    end_us: u64,
    anomalies: Vec<Anomaly>,
}

/// Decoder state of one connection.
#[derive(Debug)]
pub struct Session {
    meta: ConnMeta,
    ids: IdSeed,
    connection_id: String,
    cfg: Arc<SessionConfig>,
    req: MessageParser,
    res: MessageParser,
    /// Request whose head was seen and whose body is still arriving.
    reading: Option<PendingRequest>,
    /// Complete requests awaiting a response, oldest first.
    pending: VecDeque<PendingRequest>,
    response: Option<PartialResponse>,
    next_index: u64,
    /// When the first byte of the message now being read arrived, per side.
    msg_start_us: [Option<u64>; 2],
    /// Anomalies to attach to the next request seen (e.g. a gap between messages).
    carry: Vec<Anomaly>,
    upgraded: bool,
    /// Response bytes were lost since the last response head: the next head may answer a
    /// later request than the oldest pending one.
    resynced: bool,
    /// A complete response waiting for the request it answered early to finish.
    early: Option<EarlyResponse>,
    /// Requests reported without a response because the pipeline limits were exceeded, whose
    /// responses are still to come: HTTP/1.1 answers in order (RFC 9112 §9.3.2), so the next
    /// this many responses are theirs and are discarded rather than paired with later requests.
    orphaned: u32,
    /// HTTP/1.x or HTTP/2 (see the module doc).
    proto: Proto,
    /// Capture began after the connection opened.
    midstream: bool,
    /// An `Upgrade: h2c` request was read: the client's later bytes wait in the request
    /// parser until its response says whether the connection switches (RFC 7540 §3.2).
    h2c_wait: bool,
}

impl Session {
    /// A session for a new connection. `midstream` when capture began after the connection
    /// opened: both parsers first look for a message start.
    pub fn new(meta: ConnMeta, cfg: Arc<SessionConfig>, midstream: bool) -> Self {
        let limits = Limits {
            max_header_bytes: cfg.max_header_bytes,
            max_headers: cfg.max_headers,
        };
        let mut req = MessageParser::new(Kind::Request, limits);
        let mut res = MessageParser::new(Kind::Response, limits);
        let mut carry = Vec::new();
        if midstream {
            req.resync();
            res.resync();
            carry.push(Anomaly::MidstreamStart);
        }
        let ids = IdSeed::of(&meta);
        Session {
            connection_id: ids.connection_id(),
            ids,
            meta,
            cfg,
            req,
            res,
            reading: None,
            pending: VecDeque::new(),
            response: None,
            next_index: 0,
            msg_start_us: [None; 2],
            carry,
            upgraded: false,
            resynced: midstream,
            early: None,
            orphaned: 0,
            proto: Proto::Sniffing {
                client: Vec::new(),
                client_us: 0,
                server: Vec::new(),
                server_bytes: 0,
            },
            midstream,
            h2c_wait: false,
        }
    }

    /// The HTTP/2 decoder of this connection, once it speaks HTTP/2.
    pub fn h2(&self) -> Option<&h2::Connection> {
        match &self.proto {
            Proto::H2(c) => Some(c),
            _ => None,
        }
    }

    /// Holds `bytes` until the client's first bytes tell the protocol, then replays
    /// everything held into the chosen decoder.
    fn sniff(
        &mut self,
        side: Side,
        ts_us: u64,
        bytes: &[u8],
        stats: &mut Stats,
        out: &mut Vec<ApiEvent>,
    ) {
        let Proto::Sniffing {
            client,
            client_us,
            server,
            server_bytes,
        } = &mut self.proto
        else {
            return;
        };
        // Whether this call's bytes are among those held (else they follow the replay).
        let mut held = true;
        let h2 = match side {
            Side::Server => {
                if self.midstream && bytes.len() >= 9 {
                    // Mid-connection, either side's frames tell.
                    held = false;
                    Some(h2::frame::plausible(&bytes[..9], MIDSTREAM_MAX_FRAME))
                } else if *server_bytes + bytes.len() <= SNIFF_SERVER_MAX_BYTES {
                    server.push((ts_us, bytes.to_vec()));
                    *server_bytes += bytes.len();
                    None
                } else {
                    held = false;
                    Some(false)
                }
            }
            Side::Client => {
                if client.is_empty() {
                    *client_us = ts_us;
                }
                client.extend_from_slice(bytes);
                if self.midstream {
                    (client.len() >= 9)
                        .then(|| h2::frame::plausible(&client[..9], MIDSTREAM_MAX_FRAME))
                } else {
                    match h2::frame::preface_match(client) {
                        h2::frame::PrefaceMatch::Yes => Some(true),
                        h2::frame::PrefaceMatch::No => Some(false),
                        h2::frame::PrefaceMatch::NeedMore => None,
                    }
                }
            }
        };
        let Some(h2) = h2 else {
            return;
        };
        let chosen = if h2 {
            stats.h2_connections += 1;
            Proto::H2(Box::new(h2::Connection::new(
                self.h2_config(),
                self.midstream,
            )))
        } else {
            Proto::Http1
        };
        self.settle(chosen, stats, out);
        if !held {
            self.data(side, ts_us, bytes, None, stats, out);
        }
    }

    fn h2_config(&self) -> h2::H2Config {
        h2::H2Config {
            max_header_block_bytes: self.cfg.max_header_bytes,
            max_headers: self.cfg.max_headers,
            max_body_bytes: self.cfg.max_body_bytes,
            ..h2::H2Config::default()
        }
    }

    /// Events for the HTTP/2 streams that ended.
    fn h2_events(&mut self, msgs: Vec<h2::H2Message>, stats: &mut Stats, out: &mut Vec<ApiEvent>) {
        for m in msgs {
            let s = h2::event::stream_event(&m);
            let index = self.next_index;
            self.next_index += 1;
            stats.transactions += 1;
            if s.response.is_none() {
                stats.requests_without_response += 1;
            }
            out.push(ApiEvent {
                schema_version: SCHEMA_VERSION.to_owned(),
                event_id: self.ids.event_id(index),
                sensor: (*self.meta.sensor).clone(),
                connection_id: self.connection_id.clone(),
                transaction_index: index,
                request_start_unix_us: s.start_us,
                response_end_unix_us: s.end_us,
                latency_us: s.end_us.map(|e| e - s.start_us),
                client: self.meta.client,
                server: self.meta.server,
                tls: self.meta.tls,
                http_version: "2".to_owned(),
                request: s.request,
                response: s.response,
                anomalies: s.anomalies,
                payload: PayloadMode::Full,
                labels: None,
                bodies_sampled_out: false,
                server_workload: None,
                client_workload: None,
                tls_library: None,
                tls_sni: None,
                process: None,
                stream_id: Some(s.stream_id),
                unknown_header_fields: s.unknown_fields,
                grpc: s.grpc,
            });
        }
    }

    /// The connection's identity.
    pub fn meta(&self) -> &ConnMeta {
        &self.meta
    }

    /// Bytes held by this session (parser buffers, the heads of requests waiting for their
    /// response, body samples), for memory accounting.
    pub fn buffered(&self) -> usize {
        let proto = match &self.proto {
            Proto::Sniffing {
                client,
                server_bytes,
                ..
            } => client.len() + server_bytes,
            Proto::Http1 => 0,
            Proto::H2(c) => c.buffered(),
        };
        proto + self.http1_buffered()
    }

    fn http1_buffered(&self) -> usize {
        let messages = self.pending_bytes()
            + self.reading.as_ref().map_or(0, PendingRequest::held)
            + self.response.as_ref().map_or(0, |r| {
                r.head.retained_bytes()
                    + r.body.data.len()
                    + r.request.as_ref().map_or(0, PendingRequest::held)
            });
        self.req.buffered() + self.res.buffered() + messages
    }

    /// Bytes held by the complete requests awaiting a response.
    fn pending_bytes(&self) -> usize {
        self.pending.iter().map(PendingRequest::held).sum()
    }

    /// In-order bytes from one side. `peer_offset`, when the source knows it, is how many bytes
    /// of the *other* direction's stream the sender had received when it sent these (the TCP
    /// acknowledgment, as a stream offset): it keeps responses paired with the right request
    /// after bytes were lost (a response cannot answer a request the server had not received).
    pub fn data(
        &mut self,
        side: Side,
        ts_us: u64,
        bytes: &[u8],
        peer_offset: Option<u64>,
        stats: &mut Stats,
        out: &mut Vec<ApiEvent>,
    ) {
        if bytes.is_empty() {
            return;
        }
        match &mut self.proto {
            Proto::Http1 => {}
            Proto::H2(c) => {
                let mut msgs = Vec::new();
                c.data(side, ts_us, bytes, &mut msgs);
                return self.h2_events(msgs, stats, out);
            }
            Proto::Sniffing { .. } => return self.sniff(side, ts_us, bytes, stats, out),
        }
        let slot = side_index(side);
        match side {
            Side::Client => {
                if self.req.idle() && self.msg_start_us[slot].is_none() {
                    self.msg_start_us[slot] = Some(ts_us);
                }
                self.req.push(bytes);
                if self.h2c_wait && self.req.buffered() > self.cfg.max_header_bytes {
                    // No answer to the upgrade within the bound (what the parser may hold of a
                    // message start anyway): carry on as HTTP/1.
                    self.h2c_wait = false;
                    stats.h2c_wait_overflow += 1;
                }
                self.drive_requests(ts_us, stats, out);
            }
            Side::Server => {
                if self.res.idle() && self.msg_start_us[slot].is_none() {
                    self.msg_start_us[slot] = Some(ts_us);
                }
                self.res.push(bytes);
                self.drive_responses(ts_us, peer_offset, stats, out);
            }
        }
    }

    /// `len` bytes from one side are missing (lost or not captured).
    pub fn gap(
        &mut self,
        side: Side,
        ts_us: u64,
        len: u64,
        stats: &mut Stats,
        out: &mut Vec<ApiEvent>,
    ) {
        stats.stream_gaps += 1;
        stats.stream_gap_bytes += len;
        self.h2c_wait = false;
        match &mut self.proto {
            Proto::H2(c) => return c.gap(side, len),
            // A gap before the protocol is known: HTTP/1.x's resynchronisation handles it.
            Proto::Sniffing { .. } => self.sniff_done(stats, out),
            Proto::Http1 => {}
        }
        match side {
            Side::Client => {
                self.req.gap(len);
                self.msg_start_us[0] = None;
                if let Some(mut r) = self.reading.take() {
                    r.anomalies.push(Anomaly::RequestGap);
                    r.anomalies.push(Anomaly::RequestIncomplete);
                    self.enqueue(r, stats, out);
                } else if !self.carry.contains(&Anomaly::RequestGap) {
                    self.carry.push(Anomaly::RequestGap);
                }
            }
            Side::Server => {
                self.res.gap(len);
                self.resynced = true;
                self.msg_start_us[1] = None;
                if let Some(mut r) = self.response.take() {
                    r.anomalies.push(Anomaly::ResponseGap);
                    r.anomalies.push(Anomaly::ResponseIncomplete);
                    self.emit_response(r, ts_us, stats, out);
                } else if let Some(p) = self.pending.front_mut() {
                    // The missing bytes may have held this request's response head.
                    if !p.anomalies.contains(&Anomaly::ResponseGap) {
                        p.anomalies.push(Anomaly::ResponseGap);
                    }
                }
            }
        }
    }

    /// Records an anomaly observed below HTTP (e.g. by TCP reassembly) on the message now being
    /// read on `side`, or on the next transaction if none is.
    pub fn anomaly(&mut self, side: Side, anomaly: Anomaly) {
        let target = match side {
            Side::Client => self.reading.as_mut().map(|r| &mut r.anomalies),
            Side::Server => self.response.as_mut().map(|r| &mut r.anomalies),
        };
        let list = target.unwrap_or(&mut self.carry);
        if !list.contains(&anomaly) {
            list.push(anomaly);
        }
    }

    /// One side finished sending (TCP FIN reached in order).
    pub fn fin(&mut self, side: Side, ts_us: u64, stats: &mut Stats, out: &mut Vec<ApiEvent>) {
        if side == Side::Server && self.res.reading_until_close() {
            // RFC 9112 §6.3 ¶8: the close delimits the body.
            if let Some(r) = self.response.take() {
                self.res.gap(0);
                self.emit_response(r, ts_us, stats, out);
            }
        }
    }

    /// The connection is over (both FINs, RST, idle timeout or eviction): everything still
    /// pending is reported.
    pub fn close(&mut self, ts_us: u64, evicted: bool, stats: &mut Stats, out: &mut Vec<ApiEvent>) {
        self.sniff_done(stats, out);
        if let Proto::H2(c) = &mut self.proto {
            let mut msgs = Vec::new();
            c.close(&mut msgs);
            return self.h2_events(msgs, stats, out);
        }
        self.fin(Side::Server, ts_us, stats, out);
        if let Some(mut r) = self.response.take() {
            r.anomalies.push(Anomaly::ResponseIncomplete);
            if evicted {
                r.anomalies.push(Anomaly::StateEvicted);
            }
            self.emit_response(r, ts_us, stats, out);
        }
        if let Some(mut r) = self.reading.take() {
            r.anomalies.push(Anomaly::RequestIncomplete);
            self.enqueue(r, stats, out);
        }
        while let Some(mut r) = self.pending.pop_front() {
            r.anomalies.push(Anomaly::NoResponse);
            if evicted {
                r.anomalies.push(Anomaly::StateEvicted);
            }
            stats.requests_without_response += 1;
            out.push(self.build(r, None, stats));
        }
    }

    /// Ends sniffing as HTTP/1.x (a gap or the close came first), replaying what was held.
    fn sniff_done(&mut self, stats: &mut Stats, out: &mut Vec<ApiEvent>) {
        self.settle(Proto::Http1, stats, out);
    }

    /// While sniffing: switches to `chosen` and replays the bytes that were held into it,
    /// client first (it spoke first, or the server's wait was for it), then the server's in
    /// order. Once the protocol is known, nothing.
    fn settle(&mut self, chosen: Proto, stats: &mut Stats, out: &mut Vec<ApiEvent>) {
        if !matches!(self.proto, Proto::Sniffing { .. }) {
            return;
        }
        let Proto::Sniffing {
            client,
            client_us,
            server,
            ..
        } = std::mem::replace(&mut self.proto, chosen)
        else {
            return;
        };
        if !client.is_empty() {
            self.data(Side::Client, client_us, &client, None, stats, out);
        }
        for (t, b) in server {
            self.data(Side::Server, t, &b, None, stats, out);
        }
    }

    fn drive_requests(&mut self, ts_us: u64, stats: &mut Stats, out: &mut Vec<ApiEvent>) {
        loop {
            if self.h2c_wait && self.reading.is_none() {
                // The upgrade request is complete: what follows is HTTP/2 or HTTP/1
                // depending on its response.
                return;
            }
            match self.req.step() {
                Step::NeedMore => return,
                Step::Head(head) => {
                    let mut anomalies = std::mem::take(&mut self.carry);
                    anomalies.extend_from_slice(&head.anomalies);
                    let framing = Framing::for_request(&head, &mut anomalies);
                    let start_us = self.msg_start_us[0].take().unwrap_or(ts_us);
                    let mut r = PendingRequest {
                        head_bytes: head.retained_bytes(),
                        head_end: self.req.position(),
                        index: self.next_index,
                        start_us,
                        head,
                        body: Capture::default(),
                        anomalies,
                    };
                    self.next_index += 1;
                    if let Framing::Length(n) = framing {
                        r.body.declared = Some(n);
                    }
                    r.body.grpc = web_framer(&r.head);
                    self.h2c_wait = h2::upgrade::requested(&r.head);
                    self.req.start_body(framing);
                    if framing == Framing::None {
                        self.enqueue(r, stats, out);
                    } else {
                        self.reading = Some(r);
                    }
                }
                Step::Body(b) => {
                    if let Some(r) = self.reading.as_mut() {
                        r.body.add(b, self.cfg.max_body_bytes);
                    }
                }
                Step::End => {
                    if let Some(r) = self.reading.take() {
                        self.enqueue(r, stats, out);
                    }
                }
                Step::Invalid(anomaly) => {
                    stats.request_parse_errors += 1;
                    self.msg_start_us[0] = None;
                    if let Some(mut r) = self.reading.take() {
                        r.anomalies.push(anomaly);
                        r.anomalies.push(Anomaly::RequestIncomplete);
                        self.enqueue(r, stats, out);
                    } else if !self.carry.contains(&anomaly) {
                        self.carry.push(anomaly);
                    }
                }
            }
        }
    }

    fn enqueue(&mut self, mut r: PendingRequest, stats: &mut Stats, out: &mut Vec<ApiEvent>) {
        if let Some(early) = self.early.take() {
            // The response already came: this request is complete (or cut short) now.
            r.anomalies.extend(early.anomalies);
            let event = self.build(r, Some((early.head, early.body, early.end_us)), stats);
            out.push(event);
            return;
        }
        // Depth and bytes are both bounded: a flood of pipelined heads (64 KiB each) must not
        // hold megabytes per connection outside the buffer limits (issue 22).
        let mut held = self.pending_bytes() + r.held();
        while (self.pending.len() >= self.cfg.max_pending_requests
            || held > self.cfg.max_pending_bytes)
            && let Some(mut oldest) = self.pending.pop_front()
        {
            held -= oldest.held();
            oldest.anomalies.push(Anomaly::NoResponse);
            stats.requests_without_response += 1;
            stats.pipeline_overflow += 1;
            self.orphaned = self.orphaned.saturating_add(1);
            out.push(self.build(oldest, None, stats));
        }
        self.pending.push_back(r);
    }

    /// Picks the request a response head answers, using the acknowledged client-stream offset
    /// when known: requests the server had not fully received cannot be answered yet; after
    /// lost response bytes, older requests that a later fully-received one overtook are
    /// reported without a response.
    fn request_for_response(
        &mut self,
        peer_offset: Option<u64>,
        stats: &mut Stats,
        out: &mut Vec<ApiEvent>,
    ) -> Option<PendingRequest> {
        if let Some(acked) = peer_offset {
            if self.resynced {
                while self.pending.len() > 1 && self.pending[1].head_end <= acked {
                    if let Some(mut lost) = self.pending.pop_front() {
                        lost.anomalies.push(Anomaly::NoResponse);
                        stats.requests_without_response += 1;
                        out.push(self.build(lost, None, stats));
                    }
                }
            }
            if self.pending.front().is_some_and(|r| r.head_end > acked) {
                return None;
            }
        }
        self.resynced = false;
        self.pending.pop_front()
    }

    fn drive_responses(
        &mut self,
        ts_us: u64,
        peer_offset: Option<u64>,
        stats: &mut Stats,
        out: &mut Vec<ApiEvent>,
    ) {
        let mut resume_requests = false;
        loop {
            match self.res.step() {
                Step::NeedMore => break,
                Step::Head(head) => {
                    let mut anomalies = head.anomalies.clone();
                    if (100..200).contains(&head.status) && head.status != 101 {
                        // Interim response (RFC 9110 §15.2): the final one follows.
                        self.res.start_body(Framing::None);
                        self.msg_start_us[1] = None;
                        continue;
                    }
                    if self.resynced {
                        // Response bytes were lost: the acknowledgment-based pairing below
                        // decides which request this answers.
                        self.orphaned = 0;
                    }
                    let orphan = self.orphaned > 0;
                    let mut request = if orphan {
                        self.orphaned -= 1;
                        None
                    } else {
                        self.request_for_response(peer_offset, stats, out)
                    };
                    if let Some(r) = request.take_if(|r| {
                        h2::upgrade::requested(&r.head) && h2::upgrade::accepted(&head)
                    }) {
                        return self.switch_to_h2c(r, ts_us, stats, out);
                    }
                    if self.h2c_wait && request.is_some() {
                        // Answered without switching: the connection stays HTTP/1.
                        self.h2c_wait = false;
                        resume_requests = true;
                    }
                    // With nothing complete outstanding, it may answer the request still being
                    // read, if the server had received that request's head.
                    let answers_reading = !orphan
                        && request.is_none()
                        && self.pending.is_empty()
                        && self
                            .reading
                            .as_ref()
                            .is_some_and(|r| peer_offset.is_none_or(|a| r.head_end <= a));
                    // The request this response answers: the oldest complete one, else the
                    // one still being read.
                    let answered = request.as_ref().or(if answers_reading {
                        self.reading.as_ref()
                    } else {
                        None
                    });
                    let method = answered.map(|r| r.head.method.as_str());
                    let framing = Framing::for_response(&head, method, &mut anomalies);
                    self.res.start_body(framing);
                    let declared = match framing {
                        Framing::Length(n) => Some(n),
                        _ => None,
                    };
                    // gRPC-Web: the response of a gRPC-Web request, or one that says it is.
                    let grpc_request = answered.is_some_and(|r| r.body.grpc.is_some());
                    let grpc = web_framer(&head)
                        .or_else(|| grpc_request.then(|| Box::new(grpc::MessageFramer::new(true))));
                    let r = PartialResponse {
                        head,
                        body: Capture {
                            declared,
                            grpc,
                            ..Capture::default()
                        },
                        anomalies,
                        request,
                        answers_reading,
                        orphan,
                    };
                    match framing {
                        Framing::None => self.emit_response(r, ts_us, stats, out),
                        Framing::Upgrade => {
                            let mut r = r;
                            r.anomalies.push(Anomaly::ProtocolUpgrade);
                            self.upgraded = true;
                            self.req.start_body(Framing::Upgrade);
                            self.emit_response(r, ts_us, stats, out);
                            stats.upgrades += 1;
                        }
                        _ => self.response = Some(r),
                    }
                }
                Step::Body(b) => {
                    if let Some(r) = self.response.as_mut() {
                        r.body.add(b, self.cfg.max_body_bytes);
                    }
                }
                Step::End => {
                    if let Some(r) = self.response.take() {
                        self.emit_response(r, ts_us, stats, out);
                    }
                }
                Step::Invalid(anomaly) => {
                    stats.response_parse_errors += 1;
                    self.msg_start_us[1] = None;
                    if let Some(mut r) = self.response.take() {
                        r.anomalies.push(anomaly);
                        r.anomalies.push(Anomaly::ResponseIncomplete);
                        self.emit_response(r, ts_us, stats, out);
                    } else if let Some(p) = self.pending.front_mut() {
                        p.anomalies.push(anomaly);
                    }
                }
            }
        }
        if resume_requests {
            self.drive_requests(ts_us, stats, out);
        }
    }

    /// The server accepted `Upgrade: h2c` (RFC 7540 §3.2): request `r` becomes stream 1 of
    /// an HTTP/2 connection, which gets the bytes either side sent after the switch (the
    /// client's connection preface, the server's frames after the 101).
    fn switch_to_h2c(
        &mut self,
        r: PendingRequest,
        ts_us: u64,
        stats: &mut Stats,
        out: &mut Vec<ApiEvent>,
    ) {
        let client_rest = self.req.take_rest();
        let server_rest = self.res.take_rest();
        self.h2c_wait = false;
        stats.h2_connections += 1;
        stats.upgrades += 1;
        // Stream 1's event takes the upgrade request's place in the connection's numbering.
        if r.index + 1 == self.next_index {
            self.next_index = r.index;
        }
        let settings = h2::upgrade::settings(&r.head);
        let body = h2::conn::Body {
            truncated: (r.body.data.len() as u64) < r.body.wire_len(),
            wire_len: r.body.wire_len(),
            data: r.body.data,
            decoded: false,
        };
        let conn = h2::Connection::upgraded(
            self.h2_config(),
            h2::upgrade::request_fields(&r.head),
            body,
            (r.start_us, r.start_us),
            settings.as_deref(),
        );
        self.proto = Proto::H2(Box::new(conn));
        self.data(Side::Client, ts_us, &client_rest, None, stats, out);
        self.data(Side::Server, ts_us, &server_rest, None, stats, out);
    }

    fn emit_response(
        &mut self,
        r: PartialResponse,
        end_us: u64,
        stats: &mut Stats,
        out: &mut Vec<ApiEvent>,
    ) {
        self.msg_start_us[1] = None;
        let PartialResponse {
            head,
            body,
            anomalies,
            request,
            answers_reading,
            orphan,
        } = r;
        if orphan {
            stats.responses_after_overflow += 1;
            return;
        }
        let request = match request {
            Some(r) => r,
            None if answers_reading && self.reading.is_some() => {
                // Its request is still arriving: pair when it completes (see `enqueue`).
                self.early = Some(EarlyResponse {
                    head,
                    body,
                    end_us,
                    anomalies,
                });
                return;
            }
            // The request finished while the response was being read.
            None if answers_reading && !self.pending.is_empty() => match self.pending.pop_front() {
                Some(r) => r,
                None => return,
            },
            None => {
                stats.unsolicited_responses += 1;
                return;
            }
        };
        let mut request = request;
        request.anomalies.extend(anomalies);
        let event = self.build(request, Some((head, body, end_us)), stats);
        out.push(event);
    }

    fn build(
        &self,
        r: PendingRequest,
        response: Option<(Head, Capture, u64)>,
        stats: &mut Stats,
    ) -> ApiEvent {
        stats.transactions += 1;
        let PendingRequest {
            index,
            head_bytes: _,
            head_end: _,
            start_us,
            head,
            body,
            mut anomalies,
        } = r;
        let host = head.header("host").map(str::to_owned);
        let (mut body, mut response) = (body, response);
        let grpc = web_rpc(
            &head,
            body.grpc.take(),
            response
                .as_mut()
                .map(|(h, b, _)| (&*h, b.grpc.take()))
                .unzip(),
        );
        if grpc.is_some() {
            stats.grpc_web_calls += 1;
        }
        if grpc.as_ref().is_some_and(|g| g.framing_error) {
            stats.grpc_web_framing_errors += 1;
        }
        let request_body = self.body(&head, body, &mut anomalies, stats);
        let (path, query) = split_target_owned(head.target);
        let http_version = match head.minor_version {
            1 => "1.1".to_owned(),
            0 => "1.0".to_owned(),
            m => format!("1.{m}"),
        };
        let request = Request {
            method: head.method,
            host,
            path,
            query,
            headers: head.headers,
            body: request_body,
        };
        let (response, end_us) = match response {
            Some((h, b, end)) => {
                let body = self.body(&h, b, &mut anomalies, stats);
                (
                    Some(Response {
                        status: h.status,
                        reason: h.reason,
                        headers: h.headers,
                        body,
                    }),
                    Some(end.max(start_us)),
                )
            }
            None => (None, None),
        };
        let mut seen = Vec::with_capacity(anomalies.len());
        anomalies.retain(|a| {
            let new = !seen.contains(a);
            seen.push(*a);
            new
        });
        ApiEvent {
            schema_version: SCHEMA_VERSION.to_owned(),
            event_id: self.ids.event_id(index),
            sensor: (*self.meta.sensor).clone(),
            connection_id: self.connection_id.clone(),
            transaction_index: index,
            request_start_unix_us: start_us,
            response_end_unix_us: end_us,
            latency_us: end_us.map(|e| e - start_us),
            client: self.meta.client,
            server: self.meta.server,
            tls: self.meta.tls,
            http_version,
            request,
            response,
            anomalies,
            payload: PayloadMode::Full,
            labels: None,
            bodies_sampled_out: false,
            server_workload: None,
            client_workload: None,
            tls_library: None,
            tls_sni: None,
            stream_id: None,
            unknown_header_fields: 0,
            grpc: grpc.as_ref().map(grpc::Rpc::to_event),
            process: None,
        }
    }
}

impl Session {
    /// The event body for a captured message body, with its content coding removed when the
    /// head declares one this decoder knows (RFC 9110 §8.4), capped at `max_body_bytes`.
    fn body(
        &self,
        head: &Head,
        capture: Capture,
        anomalies: &mut Vec<Anomaly>,
        stats: &mut Stats,
    ) -> Body {
        let coding = head
            .header("content-encoding")
            .map(str::trim)
            .filter(|c| !c.is_empty());
        let wire_len = capture.wire_len();
        let Some(coding) = coding else {
            return Body::from_vec(capture.data, wire_len);
        };
        if wire_len == 0 {
            // No content, nothing coded: a 304 or a HEAD answer carries the coding of the
            // representation it stands for (RFC 9110 §15.4.5, §9.3.2; TwistedWeb sends
            // `Content-Encoding: gzip` on its 304s), and an empty body is not a corrupt one.
            return Body::from_vec(capture.data, 0);
        }
        let input_complete = capture.data.len() as u64 == wire_len;
        match content::decode(
            coding,
            &capture.data,
            self.cfg.max_body_bytes,
            input_complete,
        ) {
            Ok(d) => {
                stats.bodies_decoded += 1;
                if d.bomb {
                    stats.decompression_bombs += 1;
                    anomalies.push(Anomaly::DecompressionBomb);
                }
                Body::from_decoded(&d.data, wire_len, coding, d.complete)
            }
            Err(content::DecodeError::Unsupported) => Body::from_vec(capture.data, wire_len),
            Err(content::DecodeError::Corrupt) => {
                stats.body_decode_failures += 1;
                anomalies.push(Anomaly::BodyDecodeFailed);
                Body::from_vec(capture.data, wire_len)
            }
        }
    }
}

/// The message framer of a gRPC-Web body over HTTP/1.x (PROTOCOL-WEB: gRPC-Web is the
/// HTTP/1.1 form of gRPC; native gRPC needs HTTP/2), base64 for `application/grpc-web-text`.
fn web_framer(head: &Head) -> Option<Box<grpc::MessageFramer>> {
    let ct = head.header("content-type")?.as_bytes();
    if grpc::content_type(ct) != Some(true) {
        return None;
    }
    let mut f = grpc::MessageFramer::new(true);
    if grpc::is_web_text(ct) {
        f.set_text();
    }
    Some(Box::new(f))
}

/// The gRPC-Web call of an HTTP/1.x exchange whose request or response body was framed:
/// service and method from the request target, the status from the response's trailers
/// frame (or its headers, trailers-only). `response` is the response head with its framer.
fn web_rpc(
    head: &Head,
    request: Option<Box<grpc::MessageFramer>>,
    response: (Option<&Head>, Option<Option<Box<grpc::MessageFramer>>>),
) -> Option<grpc::Rpc> {
    let (response_head, response) = (response.0, response.1.flatten());
    if request.is_none() && response.is_none() {
        return None;
    }
    let none = grpc::MessageFramer::new(true);
    let path = head.target.split('?').next().unwrap_or_default();
    fn hdr<'h>(h: Option<&'h Head>, n: &str) -> Option<&'h [u8]> {
        h.and_then(|h| h.header(n)).map(str::as_bytes)
    }
    Some(grpc::rpc_of(
        path.as_bytes(),
        |n| hdr(Some(head), n),
        |n| hdr(response_head, n),
        |_| None,
        request.as_deref().unwrap_or(&none),
        response.as_deref().unwrap_or(&none),
    ))
}

fn side_index(side: Side) -> usize {
    match side {
        Side::Client => 0,
        Side::Server => 1,
    }
}

/// Splits a request target (RFC 9112 §3.2) into path and raw query. Absolute-form targets
/// (`http://host/p?q`) are reduced to their path; authority-form (`CONNECT host:443`) and
/// asterisk-form (`*`) are kept whole as the path.
pub fn split_target(target: &str) -> (String, Option<String>) {
    let mut t = target;
    if let Some(rest) = t
        .strip_prefix("http://")
        .or_else(|| t.strip_prefix("https://"))
    {
        t = rest.find('/').map_or("/", |i| &rest[i..]);
    }
    // A fragment is never sent, but strip one if a client did (RFC 3986 §3.5).
    let t = t.split('#').next().unwrap_or(t);
    match t.split_once('?') {
        Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
        None => (t.to_owned(), None),
    }
}

/// [`split_target`] of an owned target, reusing its buffer for the path when the target is
/// in origin form without a fragment (the usual case: one allocation fewer per request).
fn split_target_owned(mut target: String) -> (String, Option<String>) {
    if target.starts_with("http://") || target.starts_with("https://") || target.contains('#') {
        return split_target(&target);
    }
    match target.find('?') {
        Some(i) => {
            let query = target[i + 1..].to_owned();
            target.truncate(i);
            (target, Some(query))
        }
        None => (target, None),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A connection 10.0.0.2:5555 → 10.0.0.1:80 (also used by `h2::tests`).
    pub(crate) fn meta(sensor_id: &str) -> ConnMeta {
        ConnMeta {
            sensor: Arc::new(SensorInfo {
                id: sensor_id.into(),
                host: "h".into(),
                node: None,
            }),
            client: Endpoint {
                ip: "10.0.0.2".parse().unwrap(),
                port: 5555,
            },
            server: Endpoint {
                ip: "10.0.0.1".parse().unwrap(),
                port: 80,
            },
            first_seen_ns: 1,
            tls: false,
        }
    }

    pub(super) fn session(midstream: bool) -> Session {
        Session::new(meta("s"), Arc::new(SessionConfig::default()), midstream)
    }

    /// Replays a capture dump (`tests/fixtures/h2/*.h2dump`) through one session, cut into
    /// `piece`-byte writes; the events and counters.
    fn replay(name: &str, piece: usize) -> (Vec<ApiEvent>, Stats) {
        let (mut s, mut st, mut out) = (session(false), Stats::default(), Vec::new());
        for (i, (side, bytes)) in crate::h2::tests::dump(name).iter().enumerate() {
            for p in bytes.chunks(piece) {
                s.data(*side, i as u64 + 1, p, None, &mut st, &mut out);
            }
        }
        s.close(1000, false, &mut st, &mut out);
        (out, st)
    }

    /// `(method, status, message, request messages, response messages, text)` of each event.
    type Call = (String, Option<u32>, Option<String>, u32, u32, bool);
    fn calls(events: &[ApiEvent]) -> Vec<Call> {
        events
            .iter()
            .map(|e| {
                let g = e.grpc.as_ref().expect("a gRPC-Web event");
                assert_eq!(g.service, "bank.v1.Accounts");
                assert!(g.web);
                (
                    g.method.clone(),
                    g.status,
                    g.message.clone(),
                    g.request_messages,
                    g.response_messages,
                    g.text,
                )
            })
            .collect()
    }

    /// gRPC-Web over HTTP/1.1 from a real peer (issue 17, PROTOCOL-WEB): sonora 0.2.3's own
    /// client → its WSGI app under hypercorn (`grpcweb_binary`, one keep-alive connection):
    /// three GetAccount, a NOT_FOUND, ListTransfers streaming 4, one streaming 2 then
    /// FAILED_PRECONDITION; the status and message come from the trailers frame in the
    /// (chunked, for streams) body. The counts are the client's (`grpcweb.log`).
    #[test]
    fn grpc_web_binary_over_http1_from_sonora() {
        let log = crate::h2::tests::log("grpcweb");
        for piece in [1, 7, 100_000] {
            let (events, st) = replay("grpcweb_binary", piece);
            let ok = |m: &str, r| (m.to_owned(), Some(0), None, 1, r, false);
            assert_eq!(
                calls(&events),
                vec![
                    ok("GetAccount", 1),
                    ok("GetAccount", 1),
                    ok("GetAccount", 1),
                    (
                        "GetAccount".into(),
                        Some(5),
                        Some("no such account: missing".into()),
                        1,
                        0,
                        false
                    ),
                    ok("ListTransfers", 4),
                    (
                        "ListTransfers".into(),
                        Some(9),
                        Some("account frozen: transfers withheld".into()),
                        1,
                        2,
                        false
                    ),
                ],
                "{piece}"
            );
            assert!(log.contains(
                "rpc server-stream ListTransfers mode=binary status=9 req_msgs=1 resp_msgs=2"
            ));
            assert_eq!((st.grpc_web_calls, st.grpc_web_framing_errors), (6, 0));
            assert!(events.iter().all(|e| e.http_version == "1.1"));
        }
    }

    /// gRPC-Web text over HTTP/1.1: the request is base64 built per PROTOCOL-WEB, the answer is
    /// sonora's own base64 (each frame padded on its own): two messages and the trailers frame
    /// with FAILED_PRECONDITION; any segmentation gives the same call.
    #[test]
    fn grpc_web_text_over_http1_from_sonora() {
        for piece in [1, 2, 3, 5, 100_000] {
            let (events, st) = replay("grpcweb_text", piece);
            assert_eq!(
                calls(&events),
                vec![(
                    "ListTransfers".into(),
                    Some(9),
                    Some("account frozen: transfers withheld".into()),
                    1,
                    2,
                    true
                )],
                "{piece}"
            );
            assert_eq!((st.grpc_web_calls, st.grpc_web_framing_errors), (1, 0));
            let resp = events[0].response.as_ref().unwrap();
            assert_eq!(
                resp.headers.get("content-type"),
                Some("application/grpc-web-text")
            );
        }
        // Invalid base64 in a text body: counting stops there, counted, nothing invented.
        let (mut s, mut st, mut out) = (session(false), Stats::default(), Vec::new());
        let req = b"POST /bank.v1.Accounts/GetAccount HTTP/1.1\r\nHost: x\r\ncontent-type: application/grpc-web-text\r\nContent-Length: 8\r\n\r\nAA*AAAAA";
        s.data(Side::Client, 1, req, None, &mut st, &mut out);
        s.data(Side::Server, 2, b"HTTP/1.1 200 OK\r\ncontent-type: application/grpc-web-text\r\nContent-Length: 0\r\n\r\n", None, &mut st, &mut out);
        let g = out[0].grpc.as_ref().unwrap();
        assert_eq!((g.request_messages, g.status, g.text), (0, None, true));
        assert_eq!((st.grpc_web_calls, st.grpc_web_framing_errors), (1, 1));
    }

    #[test]
    fn coded_but_empty_bodies_are_not_decode_failures() {
        let mut s = session(false);
        let mut st = Stats::default();
        let mut out = Vec::new();
        s.data(Side::Client, 10, b"GET /a.css HTTP/1.1\r\nIf-Modified-Since: x\r\n\r\nHEAD /b HTTP/1.1\r\n\r\nGET /c HTTP/1.1\r\n\r\n", None, &mut st, &mut out);
        s.data(Side::Server, 20, b"HTTP/1.1 304 Not Modified\r\nContent-Encoding: gzip\r\n\r\nHTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 20\r\n\r\nHTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 3\r\n\r\nbad", None, &mut st, &mut out);
        let got: Vec<_> = out
            .iter()
            .map(|e| {
                (
                    e.request.path.clone(),
                    e.response.as_ref().unwrap().status,
                    e.anomalies.clone(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("/a.css".into(), 304, vec![]),
                ("/b".into(), 200, vec![]),
                // A body that is there and is not gzip still is one.
                ("/c".into(), 200, vec![Anomaly::BodyDecodeFailed]),
            ]
        );
        assert_eq!(st.body_decode_failures, 1);
    }

    #[test]
    fn pipelined_requests_pair_in_order() {
        let mut s = session(false);
        let mut st = Stats::default();
        let mut out = Vec::new();
        s.data(Side::Client, 10, b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\nPOST /c HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi", None, &mut st, &mut out);
        assert!(out.is_empty());
        s.data(Side::Server, 20, b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nAHTTP/1.1 404 NF\r\nContent-Length: 1\r\n\r\nB", None, &mut st, &mut out);
        s.data(
            Side::Server,
            30,
            b"HTTP/1.1 201 C\r\nContent-Length: 1\r\n\r\nC",
            None,
            &mut st,
            &mut out,
        );
        let got: Vec<_> = out
            .iter()
            .map(|e| {
                (
                    e.request.path.clone(),
                    e.response.as_ref().unwrap().status,
                    e.response.as_ref().unwrap().body.data.clone(),
                    e.transaction_index,
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("/a".into(), 200, "A".into(), 0),
                ("/b".into(), 404, "B".into(), 1),
                ("/c".into(), 201, "C".into(), 2)
            ]
        );
        assert_eq!(out[2].request.body.data, "hi");
        assert_eq!(out[2].latency_us, Some(20));
        assert_ne!(out[0].event_id, out[1].event_id);
    }

    /// A flood of pipelined requests with large heads and no responses (issue 22): the heads
    /// waiting for a response count in `buffered()` (so the decoder's total budget sees them)
    /// and stay under `max_pending_bytes`; the oldest are reported without a response, counted.
    #[test]
    fn pipelined_head_flood_is_accounted_and_bounded() {
        let cfg = SessionConfig {
            max_pending_bytes: 100_000,
            ..SessionConfig::default()
        };
        let mut s = Session::new(meta("s"), Arc::new(cfg), false);
        let mut st = Stats::default();
        let mut out = Vec::new();
        let head = format!("GET /a HTTP/1.1\r\nX-Big: {}\r\n\r\n", "b".repeat(10_000));
        s.data(Side::Client, 1, head.as_bytes(), None, &mut st, &mut out);
        assert!(
            s.buffered() >= 10_000,
            "a waiting head is held memory: {}",
            s.buffered()
        );
        for t in 2..=50 {
            s.data(Side::Client, t, head.as_bytes(), None, &mut st, &mut out);
            assert!(s.buffered() <= 100_000, "{} bytes held", s.buffered());
        }
        assert!(st.pipeline_overflow >= 40, "{st:?}");
        assert_eq!(out.len() as u64, st.pipeline_overflow);
        assert!(
            out.iter()
                .all(|e| e.anomalies.contains(&Anomaly::NoResponse))
        );
        // The first response answers the first request sent, already reported: it is
        // discarded, not paired with the oldest request still waiting.
        let reported = out.len();
        s.data(
            Side::Server,
            60,
            b"HTTP/1.1 204 N\r\n\r\n",
            None,
            &mut st,
            &mut out,
        );
        assert_eq!(out.len(), reported);
        assert_eq!(st.responses_after_overflow, 1);
    }

    /// More requests pipelined than `max_pending_requests`: the oldest are reported without a
    /// response, and when their responses come they are discarded (counted), so every later
    /// response still pairs with its own request (HTTP/1.1 answers in order).
    #[test]
    fn pipeline_overflow_keeps_later_pairs_aligned() {
        let mut s = session(false);
        let mut st = Stats::default();
        let mut out = Vec::new();
        let reqs: String = (0..100)
            .map(|i| format!("GET /r{i} HTTP/1.1\r\nHost: h\r\n\r\n"))
            .collect();
        s.data(Side::Client, 1, reqs.as_bytes(), None, &mut st, &mut out);
        assert_eq!(st.pipeline_overflow, 36);
        assert_eq!(out.len(), 36);
        let resps: String = (0..100)
            .map(|i| {
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\nr{i}",
                    1 + format!("{i}").len()
                )
            })
            .collect();
        s.data(Side::Server, 2, resps.as_bytes(), None, &mut st, &mut out);
        assert_eq!(st.responses_after_overflow, 36);
        assert_eq!(out.len(), 100);
        for e in &out[36..] {
            let body = &e.response.as_ref().unwrap().body.data;
            assert_eq!(
                format!("/{body}"),
                e.request.path,
                "paired with its own request"
            );
        }
        assert_eq!(st.unsolicited_responses, 0);
    }

    #[test]
    fn continue_and_head_and_close_delimited() {
        let mut s = session(false);
        let mut st = Stats::default();
        let mut out = Vec::new();
        s.data(
            Side::Client,
            1,
            b"PUT /u HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n",
            None,
            &mut st,
            &mut out,
        );
        s.data(
            Side::Server,
            2,
            b"HTTP/1.1 100 Continue\r\n\r\n",
            None,
            &mut st,
            &mut out,
        );
        s.data(Side::Client, 3, b"abc", None, &mut st, &mut out);
        s.data(
            Side::Server,
            4,
            b"HTTP/1.1 204 No Content\r\n\r\n",
            None,
            &mut st,
            &mut out,
        );
        s.data(
            Side::Client,
            5,
            b"HEAD /h HTTP/1.1\r\n\r\nGET /x HTTP/1.0\r\n\r\n",
            None,
            &mut st,
            &mut out,
        );
        s.data(
            Side::Server,
            6,
            b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\nHTTP/1.0 200 OK\r\n\r\nuntil close",
            None,
            &mut st,
            &mut out,
        );
        assert_eq!(out.len(), 2);
        s.fin(Side::Server, 7, &mut st, &mut out);
        assert_eq!(out.len(), 3);
        assert_eq!(out[0].request.body.data, "abc");
        assert_eq!(out[0].response.as_ref().unwrap().status, 204);
        assert_eq!(out[1].request.method, "HEAD");
        assert_eq!(out[1].response.as_ref().unwrap().body.length_bytes, 0);
        assert_eq!(out[2].response.as_ref().unwrap().body.data, "until close");
        assert_eq!(out[2].http_version, "1.0");
    }

    #[test]
    fn body_cap_keeps_length_and_flags_truncation() {
        let mut s = session(false);
        s.cfg = Arc::new(SessionConfig {
            max_body_bytes: 4,
            ..SessionConfig::default()
        });
        let mut st = Stats::default();
        let mut out = Vec::new();
        s.data(
            Side::Client,
            1,
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            None,
            &mut st,
            &mut out,
        );
        s.data(
            Side::Server,
            2,
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789",
            None,
            &mut st,
            &mut out,
        );
        let e = &out[0];
        assert_eq!(
            (
                e.request.body.length_bytes,
                e.request.body.captured_bytes,
                e.request.body.truncated
            ),
            (5, 4, true)
        );
        assert_eq!(e.request.body.data, "hell");
        assert_eq!(e.response.as_ref().unwrap().body.length_bytes, 10);
    }

    #[test]
    fn close_reports_unanswered_and_midstream_resyncs() {
        let mut s = session(true);
        let mut st = Stats::default();
        let mut out = Vec::new();
        s.data(
            Side::Server,
            1,
            b"tail of an old body\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
            None,
            &mut st,
            &mut out,
        );
        s.data(
            Side::Client,
            2,
            b"ld body\r\nGET /next?q=1 HTTP/1.1\r\nHost: api\r\n\r\n",
            None,
            &mut st,
            &mut out,
        );
        s.close(3, false, &mut st, &mut out);
        assert_eq!(st.unsolicited_responses, 1);
        assert_eq!(out.len(), 1);
        let e = &out[0];
        assert_eq!(e.request.path, "/next");
        assert_eq!(e.request.query.as_deref(), Some("q=1"));
        assert_eq!(e.request.host.as_deref(), Some("api"));
        assert_eq!(
            e.anomalies,
            vec![Anomaly::MidstreamStart, Anomaly::NoResponse]
        );
    }

    #[test]
    fn gap_inside_response_body_is_reported() {
        let mut s = session(false);
        let mut st = Stats::default();
        let mut out = Vec::new();
        s.data(
            Side::Client,
            1,
            b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n",
            None,
            &mut st,
            &mut out,
        );
        s.data(
            Side::Server,
            2,
            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial",
            None,
            &mut st,
            &mut out,
        );
        s.gap(Side::Server, 3, 93, &mut st, &mut out);
        s.data(
            Side::Server,
            4,
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
            None,
            &mut st,
            &mut out,
        );
        assert_eq!(out.len(), 2);
        assert!(out[0].anomalies.contains(&Anomaly::ResponseGap));
        let body = &out[0].response.as_ref().unwrap().body;
        assert_eq!(
            (body.length_bytes, body.captured_bytes, body.truncated),
            (100, 7, true),
            "declared length kept"
        );
        assert_eq!(out[1].request.path, "/b");
        assert!(out[1].anomalies.is_empty());
    }

    #[test]
    fn websocket_upgrade_stops_parsing() {
        let mut s = session(false);
        let mut st = Stats::default();
        let mut out = Vec::new();
        s.data(
            Side::Client,
            1,
            b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
            None,
            &mut st,
            &mut out,
        );
        s.data(
            Side::Server,
            2,
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x02hi",
            None,
            &mut st,
            &mut out,
        );
        s.data(
            Side::Client,
            3,
            b"\x81\x82abcdGET /not-http HTTP/1.1\r\n\r\n",
            None,
            &mut st,
            &mut out,
        );
        s.close(4, false, &mut st, &mut out);
        assert_eq!(out.len(), 1);
        assert!(out[0].anomalies.contains(&Anomaly::ProtocolUpgrade));
        assert_eq!(st.request_parse_errors, 0);
    }

    #[test]
    fn early_response_before_body_received_still_pairs() {
        // RFC 9112 §9.3: a server may answer before the body arrived (e.g. 413, or nginx's
        // `return`); its acknowledgment then covers the head only.
        let mut s = session(false);
        let mut st = Stats::default();
        let mut out = Vec::new();
        let head = b"POST /up HTTP/1.1\r\nContent-Length: 10\r\n\r\n";
        s.data(Side::Client, 1, head, None, &mut st, &mut out);
        s.data(Side::Client, 2, b"0123456789", None, &mut st, &mut out);
        s.data(
            Side::Server,
            3,
            b"HTTP/1.1 413 Too Large\r\nContent-Length: 0\r\n\r\n",
            Some(head.len() as u64),
            &mut st,
            &mut out,
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].response.as_ref().unwrap().status, 413);
        assert_eq!(st.unsolicited_responses, 0);
        // Response before the body: the pair waits for the body, which is kept whole.
        s.data(Side::Client, 6, head, None, &mut st, &mut out);
        s.data(
            Side::Server,
            7,
            b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n",
            Some(head.len() as u64 * 2 + 10),
            &mut st,
            &mut out,
        );
        assert_eq!(out.len(), 1, "held until the request completes");
        s.data(Side::Client, 8, b"abcdefghij", None, &mut st, &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].response.as_ref().unwrap().status, 201);
        assert_eq!(out[1].request.body.data, "abcdefghij");
        assert!(!out[1].request.body.truncated);
        // A response acknowledging less than the next request's head cannot answer it.
        s.data(
            Side::Client,
            4,
            b"GET /later HTTP/1.1\r\n\r\n",
            None,
            &mut st,
            &mut out,
        );
        s.data(
            Side::Server,
            5,
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
            Some(head.len() as u64 + 10),
            &mut st,
            &mut out,
        );
        assert_eq!(st.unsolicited_responses, 1);
    }

    #[test]
    fn event_ids_one_shot_equal_streaming_for_any_seed_length() {
        for id_len in [0, 1, 83, 84, 119, 120, 121, 500] {
            let mut meta = meta(&"x".repeat(id_len));
            meta.client.ip = "2001:db8::2".parse().unwrap();
            meta.first_seen_ns = 1_700_000_000_123_456_789;
            let seed = IdSeed::of(&meta);
            let mut h = Xxh3::new();
            h.update(&seed.0);
            assert_eq!(seed.connection_id(), format!("{:016x}", h.digest()));
            for index in [0, 1, u64::MAX] {
                let mut h = Xxh3::new();
                h.update(&seed.0);
                h.update(&index.to_be_bytes());
                assert_eq!(
                    seed.event_id(index),
                    format!("{:032x}", h.digest128()),
                    "id_len {id_len} index {index}"
                );
            }
        }
    }

    #[test]
    fn hex_ids_match_format() {
        for v in [
            0u128,
            1,
            0xabc,
            u128::from(u64::MAX),
            u128::MAX,
            0x0123_4567_89ab_cdef_u128 << 60,
        ] {
            assert_eq!(hex(v, 32), format!("{v:032x}"));
            assert_eq!(
                hex(v & u128::from(u64::MAX), 16),
                format!("{:016x}", v as u64)
            );
        }
    }

    #[test]
    fn targets_split() {
        assert_eq!(
            split_target("/a/b?x=1&y"),
            ("/a/b".into(), Some("x=1&y".into()))
        );
        assert_eq!(
            split_target("http://h:8/p?q"),
            ("/p".into(), Some("q".into()))
        );
        assert_eq!(split_target("http://h"), ("/".into(), None));
        assert_eq!(split_target("*"), ("*".into(), None));
        assert_eq!(split_target("/p?"), ("/p".into(), Some(String::new())));
    }

    /// The owned split reusing the target's buffer gives what the borrowed one gives.
    #[test]
    fn owned_target_split_matches() {
        for t in [
            "/a/b?x=1&y",
            "http://h:8/p?q",
            "https://h",
            "*",
            "/p?",
            "/p#f?x",
            "/p?x#f",
            "host:443",
            "",
            "/ü?ä=1",
        ] {
            assert_eq!(split_target_owned(t.to_owned()), split_target(t), "{t:?}");
        }
    }
}

/// Events built here keep their header fields as ranges of the header block (issue 21):
/// they encode byte for byte as the same events with owned fields, in JSON (the sensor's
/// encoder and serde_json) and in MessagePack, on hostile input (invalid UTF-8, non-ASCII
/// text, characters JSON escapes, duplicate, many and huge fields, obs-fold, bare LF line
/// ends, absolute-form targets, one-byte segments); the field values are `httparse`'s on the
/// same bytes with invalid UTF-8 replaced, what the decoder stored before (R-CAP-3, R-CAP-7).
#[cfg(test)]
mod encoding_tests {
    use apitap_schema::{
        Header, Headers, decode_event, decode_event_msgpack, encode_event,
        encode_event_msgpack_into,
    };

    use super::tests::session;
    use super::*;

    /// Feeds all of `client`, then all of `server`, in pieces of `piece` bytes; closes.
    fn run(client: &[u8], server: &[u8], piece: usize) -> (Vec<ApiEvent>, Stats) {
        let mut s = session(false);
        let mut st = Stats::default();
        let mut out = Vec::new();
        for p in client.chunks(piece) {
            s.data(Side::Client, 10, p, None, &mut st, &mut out);
        }
        for p in server.chunks(piece) {
            s.data(Side::Server, 20, p, None, &mut st, &mut out);
        }
        s.close(30, false, &mut st, &mut out);
        (out, st)
    }

    /// The event with its header fields owned (what the decoder built before issue 21).
    fn owned(e: &ApiEvent) -> ApiEvent {
        let mut o = e.clone();
        o.request.headers = Headers::from(e.request.headers.to_vec());
        if let Some(r) = &mut o.response {
            r.headers = Headers::from(r.headers.to_vec());
        }
        o
    }

    fn msgpack(e: &ApiEvent) -> Vec<u8> {
        let mut out = Vec::new();
        encode_event_msgpack_into(e, &mut out);
        assert!(!out.is_empty());
        out
    }

    /// Both encodings of `e` equal those of its owned copy; both read back as the owned copy.
    fn assert_encodes_as_owned(e: &ApiEvent) {
        let o = owned(e);
        assert!(!o.request.headers.is_in_block());
        let json = encode_event(e);
        assert_eq!(json, encode_event(&o), "JSON of {:?}", e.request.path);
        assert_eq!(
            json,
            serde_json::to_vec(&o).unwrap(),
            "serde_json of {:?}",
            e.request.path
        );
        let mp = msgpack(e);
        assert_eq!(mp, msgpack(&o), "MessagePack of {:?}", e.request.path);
        assert_eq!(decode_event(&json).unwrap(), o);
        assert_eq!(decode_event_msgpack(&mp).unwrap(), o);
    }

    /// The fields of the first head in `msg` per `httparse`, invalid UTF-8 replaced, and whether
    /// every value was UTF-8.
    fn reference_fields(msg: &[u8], request: bool) -> (Vec<Header>, bool) {
        let mut h = vec![httparse::EMPTY_HEADER; 128];
        let parsed: &[httparse::Header<'_>] = if request {
            let mut r = httparse::Request::new(&mut h);
            assert!(r.parse(msg).unwrap().is_complete());
            r.headers
        } else {
            let mut r = httparse::Response::new(&mut h);
            assert!(r.parse(msg).unwrap().is_complete());
            r.headers
        };
        let utf8 = parsed.iter().all(|h| std::str::from_utf8(h.value).is_ok());
        let fields = parsed
            .iter()
            .map(|h| Header {
                name: h.name.to_owned(),
                value: String::from_utf8_lossy(h.value).into_owned(),
            })
            .collect();
        (fields, utf8)
    }

    /// One request/response pair per case, each checked at several segmentations.
    #[test]
    fn hostile_heads_encode_as_owned_fields_did() {
        let big = "v".repeat(60_000);
        let many: String = (0..120).map(|i| format!("X-F{i}: {i}\r\n")).collect();
        let dups: String = (0..50)
            .map(|i| format!("Set-Cookie: s{i}=\"q\\{i}\"\r\n"))
            .collect();
        let cases: Vec<(&str, Vec<u8>, Vec<u8>)> = vec![
            (
                "invalid utf-8",
                b"GET /bin HTTP/1.1\r\nHost: h\r\nX-Bin: \xff\xfe ok \xc3\r\nX-Ok: fine\r\n\r\n".to_vec(),
                b"HTTP/1.1 200 OK\r\nX-R: \x80\x81\r\nContent-Length: 2\r\n\r\nhi".to_vec(),
            ),
            (
                "non-ascii text and escapes",
                "GET /t?x=\"1\" HTTP/1.1\r\nHost: h\r\nX-Name: Zoë 🚀 \"quoted\" back\\slash\ttab\r\n\r\n"
                    .as_bytes()
                    .to_vec(),
                "HTTP/1.1 200 Très bien \"ok\"\r\nX-Uni: 日本語\r\nContent-Length: 0\r\n\r\n"
                    .as_bytes()
                    .to_vec(),
            ),
            (
                "duplicates",
                b"POST /d HTTP/1.1\r\nHost: a\r\nHost: b\r\nContent-Length: 3, 3\r\n\r\nabc".to_vec(),
                format!("HTTP/1.1 200 OK\r\n{dups}Content-Length: 0\r\n\r\n").into_bytes(),
            ),
            (
                "many and huge fields",
                format!("GET /many HTTP/1.1\r\nHost: h\r\n{many}X-Big: {big}\r\n\r\n").into_bytes(),
                format!("HTTP/1.1 200 OK\r\nX-Big: {big}\r\n{many}Content-Length: 0\r\n\r\n")
                    .into_bytes(),
            ),
            (
                "empty values and odd case",
                b"GET /e HTTP/1.1\r\nhOsT: h\r\nX-Empty:\r\nX-Spaces:    \r\nx-lower: v \r\n\r\n"
                    .to_vec(),
                b"HTTP/1.1 204 \r\nX-Empty:\r\n\r\n".to_vec(),
            ),
            (
                "bare LF line ends",
                b"GET /lf HTTP/1.1\nHost: h\nX-A: 1\n\n".to_vec(),
                b"HTTP/1.1 200 OK\nContent-Length: 1\nX-B: 2\n\nz".to_vec(),
            ),
            (
                "absolute form and fragment",
                b"GET http://h:8/p/q?a=1#frag HTTP/1.1\r\nHost: h:8\r\n\r\nGET /f#x HTTP/1.1\r\n\r\n"
                    .to_vec(),
                b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
                    .to_vec(),
            ),
            (
                "obs-fold is malformed, the next request still decodes",
                b"GET /fold HTTP/1.1\r\nX-Fold: a\r\n b\r\n\r\nGET /after HTTP/1.1\r\nHost: h\r\n\r\n"
                    .to_vec(),
                b"HTTP/1.1 200 OK\r\nX-Fold: a\r\n b\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
                    .to_vec(),
            ),
            (
                "too many fields",
                format!(
                    "GET /toomany HTTP/1.1\r\n{}\r\nGET /ok HTTP/1.1\r\nHost: h\r\n\r\n",
                    (0..200).map(|i| format!("X-{i}: {i}\r\n")).collect::<String>()
                )
                .into_bytes(),
                b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".to_vec(),
            ),
        ];
        for (name, client, server) in &cases {
            let (whole, stats) = run(client, server, client.len().max(server.len()));
            assert!(!whole.is_empty(), "{name}: no event");
            for piece in [1, 7, 1448] {
                let (evs, _) = run(client, server, piece);
                assert_eq!(evs, whole, "{name}: piece {piece}");
            }
            for e in &whole {
                assert_encodes_as_owned(e);
            }
            // The first transaction's fields are httparse's, invalid bytes replaced; they stay
            // ranges of the block exactly when they were all UTF-8.
            if let Ok(httparse::Status::Complete(_)) =
                httparse::Request::new(&mut [httparse::EMPTY_HEADER; 128]).parse(client)
            {
                let first = &whole[0];
                let (fields, utf8) = reference_fields(client, true);
                assert_eq!(first.request.headers, fields, "{name}");
                assert_eq!(first.request.headers.is_in_block(), utf8, "{name}");
                if let (Some(r), Ok(httparse::Status::Complete(_))) = (
                    &first.response,
                    httparse::Response::new(&mut [httparse::EMPTY_HEADER; 128]).parse(server),
                ) {
                    let (fields, utf8) = reference_fields(server, false);
                    assert_eq!(r.headers, fields, "{name}");
                    assert_eq!(r.headers.is_in_block(), utf8, "{name}");
                }
            }
            println!("{name}: {} events, stats {stats:?}", whole.len());
        }
    }

    /// Non-UTF-8 values are the only ones kept owned, replaced as before, and flagged.
    #[test]
    fn invalid_utf8_fields_are_replaced_and_flagged() {
        let (evs, _) = run(
            b"GET /bin HTTP/1.1\r\nHost: h\r\nX-Bin: a\xffb\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
            1448,
        );
        let e = &evs[0];
        assert!(!e.request.headers.is_in_block());
        assert_eq!(e.request.headers.get("x-bin"), Some("a\u{fffd}b"));
        assert_eq!(e.anomalies, vec![Anomaly::NonUtf8Header]);
        let r = e.response.as_ref().unwrap();
        assert!(r.headers.is_in_block(), "a clean response keeps its block");
        assert_encodes_as_owned(e);
    }
}
