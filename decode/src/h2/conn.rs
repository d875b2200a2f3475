//! One HTTP/2 connection: both directions' frames and header blocks turned into one
//! [`H2Message`] per stream (RFC 9113 §5, §8), with gRPC on top ([`crate::grpc`]).
//!
//! A client stream's request (pseudo-headers, fields, DATA, trailers) is paired with the
//! server's response on the same stream id; interim 1xx responses are skipped (§8.1); a stream
//! ends when both sides sent END_STREAM, on RST_STREAM (§6.4), when a GOAWAY says it was not
//! processed (§6.8), or when the connection closes. Server push (§8.4) yields a message per
//! promised stream, flagged. Everything is bounded by [`H2Config`]: open streams (the oldest is
//! reported, flagged, when a new one would exceed the limit), header block bytes, fields, body
//! bytes kept per direction (the rest counted, the body flagged truncated), frame payloads held.
//! Every give-up is counted in [`H2Stats`] (R-CAP-7).
//!
//! Joining mid-connection ([`Connection::new`] with `midstream`): both frame parsers look for
//! a frame boundary, both HPACK decoders start in join mode ([`super::hpack`]); streams opened
//! before the join are reported from the frames seen, flagged
//! [`H2Anomaly::RequestHeadersMissing`].

use std::collections::{HashMap, VecDeque};

use bytes::{Bytes, BytesMut};

use super::frame::{FrameHeader, FrameParser, Item, flag, kind};
use super::hpack::{self, Field};
use crate::content;
use crate::grpc::{self, MessageFramer, Rpc};
use crate::session::Side;

/// Limits of one connection's decoder.
#[derive(Debug, Clone)]
pub struct H2Config {
    /// Non-DATA frame payload buffered at most; larger frames are skipped (DATA is streamed).
    pub max_frame_bytes: u32,
    /// Header block (HEADERS/PUSH_PROMISE plus CONTINUATION) bytes buffered at most; a larger
    /// block is dropped and the direction's HPACK state treated as lost.
    pub max_header_block_bytes: usize,
    /// Fields kept per header block at most.
    pub max_headers: usize,
    /// Body bytes kept per direction of a stream at most; the rest is counted, not kept.
    pub max_body_bytes: usize,
    /// Open streams tracked at most.
    pub max_streams: usize,
    /// Dynamic table bytes stored per direction at most.
    pub max_table_bytes: usize,
}

impl Default for H2Config {
    fn default() -> Self {
        H2Config {
            max_frame_bytes: 64 * 1024,
            max_header_block_bytes: 64 * 1024,
            max_headers: 128,
            max_body_bytes: 64 * 1024,
            max_streams: 128,
            max_table_bytes: 64 * 1024,
        }
    }
}

crate::stats::counters!(@struct H2Stats, "HTTP/2 decoder counters (exported as `apitap_decode_h2_<name>_total`).";
    /// Frames parsed (DATA counted once per frame).
    frames,
    /// Frames of unknown type, ignored (RFC 9113 §5.5).
    frames_unknown,
    /// Non-DATA frames larger than the buffer cap, skipped unread (drop).
    frames_skipped,
    /// Framing errors (bad preface, oversized frame, bad padding); the parser resynchronised (drop).
    framing_errors,
    /// Bytes skipped while looking for a frame boundary (drop).
    resync_bytes,
    /// Header blocks decoded.
    header_blocks,
    /// Header blocks that failed HPACK decoding; the direction's table state was then treated as unknown (drop).
    hpack_errors,
    /// Header blocks over the size limit, dropped (drop).
    header_blocks_too_large,
    /// Header fields referring to dynamic table entries the decoder does not know (joined late or lost state).
    hpack_unknown_fields,
    /// Header fields decoded but not kept (field count or byte limits).
    header_fields_dropped,
    /// Frames violating the stream or CONTINUATION rules (RFC 9113 §5.1, §6.10).
    protocol_errors,
    /// Streams reported as messages.
    streams,
    /// Streams reported early because too many were open (drop).
    streams_evicted,
    /// Streams ended by RST_STREAM.
    streams_reset,
    /// Streams a GOAWAY reported as not processed.
    streams_refused,
    /// Streams first seen after they opened (joined mid-connection).
    streams_midstream,
    /// Client streams opened beyond the server's SETTINGS_MAX_CONCURRENT_STREAMS.
    streams_over_peer_limit,
    /// Frames for closed or unknown streams, ignored.
    frames_closed_stream,
    /// Body bytes seen but not kept because of the body cap (drop).
    body_bytes_truncated,
    /// Bodies whose content coding was removed.
    bodies_decoded,
    /// Bodies whose content coding was corrupt.
    body_decode_failures,
    /// GOAWAY frames.
    goaways,
    /// DATA frames beyond the receiver's flow-control window (RFC 9113 §6.9.1).
    flow_control_violations,
    /// Gaps (lost bytes) in either direction (drop).
    gaps,
    /// Connections upgraded from HTTP/1.1 (`Upgrade: h2c`, RFC 7540 §3.2).
    upgrades,
    /// Upgrades whose `HTTP2-Settings` was missing or not a base64url SETTINGS payload (RFC 7540 §3.2.1); the client's settings were then unknown.
    upgrade_settings_invalid,
);

/// Why a stream's message ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Both sides sent END_STREAM.
    Complete,
    /// RST_STREAM (§6.4) from `by` with this error code.
    Reset {
        /// Who reset it.
        by: Side,
        /// Error code (§7).
        code: u32,
    },
    /// The server's GOAWAY last-stream-id is below it: not processed (§6.8).
    Refused {
        /// The GOAWAY error code.
        code: u32,
    },
    /// The connection closed (or the capture ended) first.
    ConnectionClosed,
    /// Reported early to stay within [`H2Config::max_streams`].
    Evicted,
}

/// Something unusual about one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum H2Anomaly {
    /// Some header field referred to a dynamic table entry the decoder does not know (joined
    /// mid-connection or lost state): it is reported unknown, never guessed.
    UnknownHpackIndex,
    /// A header block failed HPACK decoding.
    HeaderBlockInvalid,
    /// A header block exceeded the size limit and was dropped.
    HeadersTooLarge,
    /// Fields beyond the field limit were dropped.
    TooManyHeaders,
    /// The stream opened before the decoder joined: its request headers were not seen.
    RequestHeadersMissing,
    /// Bytes of this connection were lost while the stream was open.
    Gap,
    /// Pushed by the server (§8.4): the request is the PUSH_PROMISE's.
    Pushed,
    /// `content-length` disagrees with the DATA received (§8.1.1: malformed).
    ContentLengthMismatch,
    /// Missing or misplaced pseudo-header fields (§8.3).
    MalformedHeaders,
    /// A frame broke the stream state rules (e.g. DATA before HEADERS, §5.1).
    ProtocolError,
    /// DATA beyond the flow-control window the receiver granted (§6.9.1).
    FlowControlViolation,
    /// The body's content coding was corrupt.
    BodyDecodeFailed,
    /// Decompression hit the cap at a bomb-like ratio.
    DecompressionBomb,
}

/// A body as captured.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Body {
    /// Bytes kept (content coding removed when `decoded`), at most the cap.
    pub data: Vec<u8>,
    /// DATA content bytes seen on the wire (padding excluded).
    pub wire_len: u64,
    /// `data` is not the whole body.
    pub truncated: bool,
    /// The `content-encoding` was removed from `data`.
    pub decoded: bool,
}

/// One side of a stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Part {
    /// Header fields, pseudo-headers first (as sent).
    pub headers: Vec<Field>,
    /// Trailer fields.
    pub trailers: Vec<Field>,
    /// DATA content.
    pub body: Body,
    /// END_STREAM was seen.
    pub ended: bool,
    /// First frame seen, microseconds.
    pub start_us: u64,
    /// Last frame seen, microseconds.
    pub end_us: u64,
    /// Some frame of this side was seen.
    pub seen: bool,
}

impl Part {
    /// A frame of this side was seen at `ts_us`.
    fn touch(&mut self, ts_us: u64) {
        if !self.seen {
            self.seen = true;
            self.start_us = ts_us;
        }
        self.end_us = ts_us;
    }

    /// First value of a field, by exact (lowercase) name.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|f| f.name.as_deref() == Some(name.as_bytes()))
            .and_then(|f| f.value.as_deref())
    }

    /// Fields with an unknown name or value (headers and trailers).
    pub fn unknown_fields(&self) -> usize {
        self.headers
            .iter()
            .chain(&self.trailers)
            .filter(|f| !f.is_complete())
            .count()
    }
}

/// One stream's exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct H2Message {
    /// Stream identifier.
    pub stream_id: u32,
    /// The request (for a stream joined mid-way, only what was seen of it).
    pub request: Part,
    /// The response, when its headers (or data) were seen.
    pub response: Option<Part>,
    /// Why it ended.
    pub end: End,
    /// Anomalies, each once, in the order seen.
    pub anomalies: Vec<H2Anomaly>,
    /// gRPC summary, when the stream is gRPC.
    pub grpc: Option<Rpc>,
}

impl H2Message {
    /// `:method`.
    pub fn method(&self) -> Option<&[u8]> {
        self.request.header(":method")
    }

    /// `:path`.
    pub fn path(&self) -> Option<&[u8]> {
        self.request.header(":path")
    }

    /// `:authority`.
    pub fn authority(&self) -> Option<&[u8]> {
        self.request.header(":authority")
    }

    /// `:status` of the final response.
    pub fn status(&self) -> Option<u16> {
        let v = self.response.as_ref()?.header(":status")?;
        std::str::from_utf8(v).ok()?.parse().ok()
    }

    /// Fields with an unknown name or value, both sides.
    pub fn unknown_fields(&self) -> usize {
        self.request.unknown_fields() + self.response.as_ref().map_or(0, Part::unknown_fields)
    }
}

/// One side's sending window (RFC 9113 §6.9): the connection window and the initial stream
/// window its peer granted.
#[derive(Debug)]
struct Flow {
    connection: i64,
    initial: i64,
    /// SETTINGS_INITIAL_WINDOW_SIZE the peer sent, applied when this side acknowledges it.
    pending_initial: Option<u32>,
}

/// §6.9.2: 65,535 octets until SETTINGS say otherwise.
const DEFAULT_WINDOW: i64 = 65_535;

impl Default for Flow {
    fn default() -> Self {
        Flow {
            connection: DEFAULT_WINDOW,
            initial: DEFAULT_WINDOW,
            pending_initial: None,
        }
    }
}

#[derive(Debug, Default)]
struct StreamState {
    req: Part,
    resp: Part,
    /// Final response headers seen.
    resp_started: bool,
    /// Request headers seen.
    req_started: bool,
    grpc: Option<(MessageFramer, MessageFramer)>,
    anomalies: Vec<H2Anomaly>,
    /// Declared `content-length`, per side.
    declared: [Option<u64>; 2],
    /// Flow-control window left for each side's DATA on this stream (§6.9).
    window: [i64; 2],
}

impl StreamState {
    fn flag(&mut self, a: H2Anomaly) {
        if !self.anomalies.contains(&a) {
            self.anomalies.push(a);
        }
    }

    fn part(&mut self, side: Side) -> &mut Part {
        match side {
            Side::Client => &mut self.req,
            Side::Server => &mut self.resp,
        }
    }

    fn held(&self) -> usize {
        let part = |p: &Part| {
            p.body.data.len()
                + p.headers
                    .iter()
                    .chain(&p.trailers)
                    .map(|f| f.len() + std::mem::size_of::<Field>())
                    .sum::<usize>()
        };
        let web = self.grpc.as_ref().map_or(0, |(a, b)| {
            a.web_trailer.as_ref().map_or(0, Vec::len) + b.web_trailer.as_ref().map_or(0, Vec::len)
        });
        part(&self.req) + part(&self.resp) + web + std::mem::size_of::<Self>()
    }
}

/// A header block being assembled from HEADERS/PUSH_PROMISE and CONTINUATION frames.
#[derive(Debug)]
struct Assembly {
    stream: u32,
    /// For PUSH_PROMISE, the promised stream.
    promised: Option<u32>,
    end_stream: bool,
    buf: BytesMut,
    too_large: bool,
}

#[derive(Debug)]
struct Dir {
    parser: FrameParser,
    hpack: hpack::Decoder,
    block: Option<Assembly>,
}

/// Decoder state of one HTTP/2 connection.
#[derive(Debug)]
pub struct Connection {
    cfg: H2Config,
    dirs: [Dir; 2],
    streams: HashMap<u32, StreamState>,
    /// Open stream ids in the order they were first seen (for eviction).
    order: VecDeque<u32>,
    /// Highest stream id seen opened by each side (client: odd, server push: even).
    highest: [u32; 2],
    /// Joined mid-connection: the first new client stream id seen with request headers.
    midstream: bool,
    first_new: Option<u32>,
    /// Recently ended ids (a late frame on them must not re-open them), bounded.
    recently_ended: VecDeque<u32>,
    /// A gRPC stream was seen on this connection (used when a joined decoder cannot read a
    /// stream's content-type).
    grpc_seen: bool,
    /// SETTINGS_MAX_CONCURRENT_STREAMS each side may open, as its peer advertised (§5.1.2).
    max_concurrent: [Option<u32>; 2],
    /// Flow-control state of each side's sending (§6.9); `None` after a mid-stream join.
    flow: [Flow; 2],
    flow_known: bool,
    stats: H2Stats,
}

fn idx(side: Side) -> usize {
    match side {
        Side::Client => 0,
        Side::Server => 1,
    }
}

fn other(side: Side) -> Side {
    match side {
        Side::Client => Side::Server,
        Side::Server => Side::Client,
    }
}

const RECENT_ENDED: usize = 256;

impl Connection {
    /// A connection decoder. `midstream` when the capture began after the connection opened
    /// (no preface expected, frame boundaries and HPACK state unknown).
    pub fn new(cfg: H2Config, midstream: bool) -> Self {
        let limits = hpack::Limits {
            max_fields: cfg.max_headers,
            max_field_bytes: cfg.max_header_block_bytes,
            max_table_bytes: cfg.max_table_bytes,
        };
        let dir = |client: bool| Dir {
            parser: FrameParser::new(client, midstream, cfg.max_frame_bytes),
            hpack: if midstream {
                hpack::Decoder::joined(limits)
            } else {
                hpack::Decoder::new(limits)
            },
            block: None,
        };
        Connection {
            dirs: [dir(true), dir(false)],
            cfg,
            streams: HashMap::new(),
            order: VecDeque::new(),
            highest: [0, 0],
            midstream,
            first_new: None,
            recently_ended: VecDeque::new(),
            grpc_seen: false,
            max_concurrent: [None, None],
            flow: [Flow::default(), Flow::default()],
            flow_known: !midstream,
            stats: H2Stats::default(),
        }
    }

    /// A connection upgraded from HTTP/1.1 by `Upgrade: h2c` and `101 Switching Protocols`
    /// (RFC 7540 §3.2; RFC 9113 §3.1 deprecates the mechanism, clients still use it). The
    /// upgrade request is stream 1, half-closed by the client: `request` its fields as
    /// HTTP/2 would carry them (pseudo-headers first), `body` its content. The client then
    /// sends the connection preface; the server's frames (its SETTINGS, then stream 1's
    /// response) follow the 101 directly. `settings` is the decoded `HTTP2-Settings` header, a
    /// SETTINGS payload (§3.2.1) acknowledged by the 101 itself; `None` when absent or not
    /// base64url (counted in `upgrade_settings_invalid`, as is a payload not of 6-byte
    /// parameters).
    pub fn upgraded(
        cfg: H2Config,
        request: Vec<Field>,
        body: Body,
        (start_us, end_us): (u64, u64),
        settings: Option<&[u8]>,
    ) -> Self {
        let mut c = Connection::new(cfg, false);
        c.stats.upgrades += 1;
        match settings {
            // §6.5.1: a whole number of 6-byte parameters.
            Some(p) if p.len().is_multiple_of(6) => {
                c.settings(Side::Client, p);
                // §3.2.1: the 101 is the acknowledgement.
                if let Some(v) = c.flow[1].pending_initial.take() {
                    c.set_initial_window(Side::Server, v);
                }
            }
            _ => c.stats.upgrade_settings_invalid += 1,
        }
        c.highest[0] = 1;
        let mut out = Vec::new();
        let s = c.open(1, start_us, &mut out);
        s.req_started = true;
        s.req.headers = request;
        s.declared[0] = Some(body.wire_len);
        s.req.body = body;
        s.req.ended = true;
        s.req.end_us = end_us;
        if !pseudo_ok(&s.req.headers, true) {
            s.flag(H2Anomaly::MalformedHeaders);
        }
        c
    }

    /// Counters.
    pub fn stats(&self) -> &H2Stats {
        &self.stats
    }

    /// The HPACK decoder of one direction (for its join state).
    pub fn hpack(&self, side: Side) -> &hpack::Decoder {
        &self.dirs[idx(side)].hpack
    }

    /// Bytes held: frame buffers, header blocks in assembly, streams, HPACK tables.
    pub fn buffered(&self) -> usize {
        self.dirs
            .iter()
            .map(|d| {
                d.parser.buffered()
                    + d.block.as_ref().map_or(0, |b| b.buf.len())
                    + d.hpack.held_bytes()
            })
            .sum::<usize>()
            + self.streams.values().map(StreamState::held).sum::<usize>()
    }

    /// Open streams.
    pub fn open_streams(&self) -> usize {
        self.streams.len()
    }

    /// In-order bytes from one side at `ts_us`; completed streams are appended to `out`.
    pub fn data(&mut self, side: Side, ts_us: u64, bytes: &[u8], out: &mut Vec<H2Message>) {
        let d = idx(side);
        self.dirs[d].parser.push(bytes);
        loop {
            let item = self.dirs[d].parser.next_item();
            match item {
                Item::NeedMore => return,
                Item::Preface => {}
                Item::Frame { header, payload } => {
                    self.stats.frames += 1;
                    self.frame(side, ts_us, header, payload, out);
                }
                Item::Data { stream, bytes } => self.data_piece(side, ts_us, stream, &bytes, out),
                Item::DataEnd { header } => {
                    self.stats.frames += 1;
                    if self.dirs[d].block.is_some() {
                        self.continuation_broken(side);
                    }
                    self.flow_consume(side, &header);
                    if header.has(flag::END_STREAM) {
                        self.end_side(side, ts_us, header.stream, out);
                    }
                }
                Item::Skipped { header } => {
                    self.stats.frames_skipped += 1;
                    if matches!(
                        header.kind,
                        kind::HEADERS | kind::PUSH_PROMISE | kind::CONTINUATION
                    ) {
                        // The block's table updates are lost.
                        self.stats.header_blocks_too_large += 1;
                        self.dirs[d].hpack.desync();
                        self.dirs[d].block = None;
                        if let Some(s) = self.streams.get_mut(&header.stream) {
                            s.flag(H2Anomaly::HeadersTooLarge);
                        }
                    }
                }
                Item::Invalid(_) => {
                    self.stats.framing_errors += 1;
                    self.lost(side);
                }
                Item::Resynced { skipped } => {
                    // The skipped bytes may have held header blocks: their inserts are lost.
                    self.stats.resync_bytes += skipped;
                    self.lost(side);
                }
            }
        }
    }

    /// `len` bytes from one side are missing.
    pub fn gap(&mut self, side: Side, _len: u64) {
        self.stats.gaps += 1;
        self.dirs[idx(side)].parser.gap();
        self.lost(side);
    }

    /// The direction lost sync (gap or invalid framing): its HPACK state and any block in
    /// assembly are gone, and every open stream may have lost frames.
    fn lost(&mut self, side: Side) {
        let d = &mut self.dirs[idx(side)];
        d.hpack.desync();
        d.block = None;
        // Windows can no longer be followed.
        self.flow_known = false;
        for s in self.streams.values_mut() {
            s.flag(H2Anomaly::Gap);
        }
    }

    /// The connection is over: every open stream is reported.
    pub fn close(&mut self, out: &mut Vec<H2Message>) {
        while let Some(id) = self.order.pop_front() {
            if self.streams.contains_key(&id) {
                self.emit(id, End::ConnectionClosed, out);
            }
        }
    }

    fn continuation_broken(&mut self, side: Side) {
        // §6.10: anything but CONTINUATION inside a header block is a PROTOCOL_ERROR; the
        // block's table updates are lost.
        self.stats.protocol_errors += 1;
        let d = &mut self.dirs[idx(side)];
        d.block = None;
        d.hpack.desync();
    }

    fn frame(
        &mut self,
        side: Side,
        ts_us: u64,
        h: FrameHeader,
        payload: Bytes,
        out: &mut Vec<H2Message>,
    ) {
        let d = idx(side);
        if self.dirs[d].block.is_some() && h.kind != kind::CONTINUATION {
            self.continuation_broken(side);
        }
        match h.kind {
            kind::HEADERS => {
                let Some(frag) = strip_padding(&h, &payload, 0) else {
                    self.stats.protocol_errors += 1;
                    self.dirs[d].hpack.desync();
                    return;
                };
                let frag = if h.has(flag::PRIORITY) {
                    if frag.len() < 5 {
                        self.stats.protocol_errors += 1;
                        self.dirs[d].hpack.desync();
                        return;
                    }
                    frag.slice(5..)
                } else {
                    frag
                };
                self.start_block(
                    side,
                    ts_us,
                    h.stream,
                    None,
                    h.has(flag::END_STREAM),
                    h,
                    frag,
                    out,
                );
            }
            kind::PUSH_PROMISE => {
                let Some(frag) = strip_padding(&h, &payload, 0) else {
                    self.stats.protocol_errors += 1;
                    self.dirs[d].hpack.desync();
                    return;
                };
                if frag.len() < 4 {
                    self.stats.protocol_errors += 1;
                    self.dirs[d].hpack.desync();
                    return;
                }
                let promised = u32::from_be_bytes([frag[0] & 0x7f, frag[1], frag[2], frag[3]]);
                self.start_block(
                    side,
                    ts_us,
                    h.stream,
                    Some(promised),
                    false,
                    h,
                    frag.slice(4..),
                    out,
                );
            }
            kind::CONTINUATION => {
                let Some(mut a) = self.dirs[d].block.take() else {
                    // The block's start was not seen (joined or resynchronised inside it, or a
                    // protocol error): its inserts are lost, so later indices are unknown.
                    if !self.midstream {
                        self.stats.protocol_errors += 1;
                    }
                    self.dirs[d].hpack.desync();
                    return;
                };
                if a.stream != h.stream {
                    self.stats.protocol_errors += 1;
                    self.dirs[d].hpack.desync();
                    return;
                }
                if a.buf.len() + payload.len() > self.cfg.max_header_block_bytes {
                    a.too_large = true;
                    a.buf.clear();
                } else if !a.too_large {
                    a.buf.extend_from_slice(&payload);
                }
                if h.has(flag::END_HEADERS) {
                    let block = a.buf.split().freeze();
                    self.finish_block(side, ts_us, &a, block, out);
                } else {
                    self.dirs[d].block = Some(a);
                }
            }
            kind::RST_STREAM => {
                if payload.len() == 4 && self.streams.contains_key(&h.stream) {
                    let code = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]);
                    self.stats.streams_reset += 1;
                    if let Some(s) = self.streams.get_mut(&h.stream) {
                        s.part(side).touch(ts_us);
                    }
                    self.emit(h.stream, End::Reset { by: side, code }, out);
                } else if payload.len() != 4 {
                    self.stats.protocol_errors += 1;
                } else {
                    self.stats.frames_closed_stream += 1;
                }
            }
            kind::SETTINGS => {
                if h.stream != 0
                    || !payload.len().is_multiple_of(6)
                    || (h.has(flag::ACK) && !payload.is_empty())
                {
                    // §6.5: PROTOCOL_ERROR / FRAME_SIZE_ERROR.
                    self.stats.protocol_errors += 1;
                    return;
                }
                if h.has(flag::ACK) {
                    // §6.5.3: this side applies the peer's settings from here on.
                    if let Some(v) = self.flow[d].pending_initial.take() {
                        self.set_initial_window(side, v);
                    }
                    return;
                }
                self.settings(side, &payload);
            }
            kind::GOAWAY => {
                self.stats.goaways += 1;
                if payload.len() >= 8 {
                    let last =
                        u32::from_be_bytes([payload[0] & 0x7f, payload[1], payload[2], payload[3]]);
                    let code = u32::from_be_bytes([payload[4], payload[5], payload[6], payload[7]]);
                    // Streams the *receiver* of the GOAWAY initiated above `last` were not
                    // processed (§6.8): client streams for a server GOAWAY, pushes otherwise.
                    let initiated_by_peer = |id: u32| match side {
                        Side::Server => id % 2 == 1,
                        Side::Client => id.is_multiple_of(2),
                    };
                    let refused: Vec<u32> = self
                        .order
                        .iter()
                        .copied()
                        .filter(|&id| id > last && initiated_by_peer(id))
                        .collect();
                    for id in refused {
                        self.stats.streams_refused += 1;
                        self.emit(id, End::Refused { code }, out);
                    }
                }
            }
            // §6.3, §6.7, §6.9: fixed lengths (FRAME_SIZE_ERROR); a zero window increment is a
            // PROTOCOL_ERROR. Otherwise they carry nothing the messages need.
            kind::PRIORITY if payload.len() != 5 || h.stream == 0 => {
                self.stats.protocol_errors += 1
            }
            kind::PING if payload.len() != 8 || h.stream != 0 => self.stats.protocol_errors += 1,
            kind::WINDOW_UPDATE
                if payload.len() != 4
                    || u32::from_be_bytes([
                        payload[0] & 0x7f,
                        payload[1],
                        payload[2],
                        payload[3],
                    ]) == 0 =>
            {
                self.stats.protocol_errors += 1
            }
            kind::WINDOW_UPDATE => {
                let inc =
                    u32::from_be_bytes([payload[0] & 0x7f, payload[1], payload[2], payload[3]]);
                // §6.9: credit for the peer's sending.
                let sender = idx(other(side));
                if h.stream == 0 {
                    self.flow[sender].connection += i64::from(inc);
                } else if let Some(s) = self.streams.get_mut(&h.stream) {
                    s.window[sender] += i64::from(inc);
                }
            }
            kind::PRIORITY | kind::PING => {}
            _ => self.stats.frames_unknown += 1,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn start_block(
        &mut self,
        side: Side,
        ts_us: u64,
        stream: u32,
        promised: Option<u32>,
        end_stream: bool,
        h: FrameHeader,
        frag: Bytes,
        out: &mut Vec<H2Message>,
    ) {
        let a = Assembly {
            stream,
            promised,
            end_stream,
            buf: BytesMut::new(),
            too_large: frag.len() > self.cfg.max_header_block_bytes,
        };
        if h.has(flag::END_HEADERS) {
            // The common case: the block is the frame's payload, no copy.
            self.finish_block(side, ts_us, &a, frag, out);
        } else {
            let mut a = a;
            if !a.too_large {
                a.buf.extend_from_slice(&frag);
            }
            self.dirs[idx(side)].block = Some(a);
        }
    }

    fn finish_block(
        &mut self,
        side: Side,
        ts_us: u64,
        a: &Assembly,
        block: Bytes,
        out: &mut Vec<H2Message>,
    ) {
        let d = idx(side);
        let mut fields = Vec::new();
        let mut anomalies = Vec::new();
        if a.too_large {
            self.stats.header_blocks_too_large += 1;
            self.dirs[d].hpack.desync();
            anomalies.push(H2Anomaly::HeadersTooLarge);
        } else {
            self.stats.header_blocks += 1;
            match self.dirs[d].hpack.decode(&block, &mut fields) {
                Ok(info) => {
                    if info.unknown > 0 {
                        self.stats.hpack_unknown_fields += u64::from(info.unknown);
                        anomalies.push(H2Anomaly::UnknownHpackIndex);
                    }
                    if info.dropped > 0 {
                        self.stats.header_fields_dropped += u64::from(info.dropped);
                        anomalies.push(H2Anomaly::TooManyHeaders);
                    }
                }
                Err(_) => {
                    self.stats.hpack_errors += 1;
                    anomalies.push(H2Anomaly::HeaderBlockInvalid);
                }
            }
        }
        if let Some(promised) = a.promised {
            // §8.4: the promised request; its response comes on `promised` from the server.
            if side == Side::Server && promised.is_multiple_of(2) && promised > self.highest[1] {
                self.highest[1] = promised;
                let s = self.open(promised, ts_us, out);
                s.req.headers = fields;
                s.req.ended = true;
                s.req_started = true;
                s.flag(H2Anomaly::Pushed);
                for an in anomalies {
                    s.flag(an);
                }
            } else {
                self.stats.protocol_errors += 1;
            }
            return;
        }
        let id = a.stream;
        let Some(s) = self.stream_for(side, id, true, ts_us, out) else {
            return;
        };
        for an in anomalies {
            s.flag(an);
        }
        match side {
            Side::Client => {
                if s.req_started {
                    // §8.1: a second block is the trailers (it must end the stream).
                    s.req.trailers = fields;
                } else {
                    s.req_started = true;
                    s.req.headers = fields;
                    s.declared[0] = declared_length(&s.req.headers);
                    if !pseudo_ok(&s.req.headers, true) {
                        s.flag(H2Anomaly::MalformedHeaders);
                    }
                }
            }
            Side::Server => {
                if s.resp_started {
                    s.resp.trailers = fields;
                } else {
                    let status = fields
                        .iter()
                        .find(|f| f.name.as_deref() == Some(&b":status"[..]))
                        .and_then(|f| f.value.clone());
                    // §8.1: 1xx are interim responses, the final one follows.
                    if status
                        .as_deref()
                        .is_some_and(|v| v.first() == Some(&b'1') && v.len() == 3)
                    {
                        return;
                    }
                    s.resp_started = true;
                    s.resp.headers = fields;
                    s.declared[1] = declared_length(&s.resp.headers);
                    // gRPC-Web: the response is text or binary by its own content type
                    // when it says (PROTOCOL-WEB; servers may answer by `Accept`).
                    if let Some((_, resp)) = s.grpc.as_mut()
                        && let Some(ct) = s.resp.header("content-type")
                        && grpc::content_type(ct) == Some(true)
                    {
                        resp.set_text_mode(grpc::is_web_text(ct));
                    }
                    if !pseudo_ok(&s.resp.headers, false) {
                        s.flag(H2Anomaly::MalformedHeaders);
                    }
                }
            }
        }
        let grpc_seen = self.grpc_seen;
        if side == Side::Client
            && let Some(s) = self.streams.get_mut(&id)
            && s.grpc.is_none()
        {
            let ct = s.req.header("content-type").map(grpc::content_type);
            let grpc_like = match ct {
                Some(Some(web)) => Some(web),
                Some(None) => None,
                // Content-type not readable (an unknown table entry after a join): gRPC if
                // the connection already carried gRPC, or the path has gRPC's shape
                // (`/package.Service/Method`).
                None => (grpc_seen
                    || s.req
                        .header(":path")
                        .and_then(grpc::parse_path)
                        .is_some_and(|(service, _)| service.contains('.')))
                .then_some(false),
            };
            if let Some(web) = grpc_like {
                let mut framers = (MessageFramer::new(web), MessageFramer::new(web));
                // gRPC-Web text: base64 both ways (PROTOCOL-WEB) until the response's own
                // content type says otherwise.
                if s.req.header("content-type").is_some_and(grpc::is_web_text) {
                    framers.0.set_text();
                    framers.1.set_text();
                }
                s.grpc = Some(framers);
                self.grpc_seen = true;
            }
        }
        if a.end_stream {
            self.end_side(side, ts_us, id, out);
        }
    }

    /// The stream a frame from `side` on `id` belongs to, opening it when this frame may
    /// start it; `None` (counted) for frames on closed or impossible streams.
    fn stream_for(
        &mut self,
        side: Side,
        id: u32,
        headers: bool,
        ts_us: u64,
        out: &mut Vec<H2Message>,
    ) -> Option<&mut StreamState> {
        if self.streams.contains_key(&id) {
            let s = self.streams.get_mut(&id)?;
            s.part(side).touch(ts_us);
            return Some(s);
        }
        if id == 0 || self.recently_ended.contains(&id) {
            self.stats.frames_closed_stream += 1;
            return None;
        }
        let client_stream = id % 2 == 1;
        // A new client stream: request HEADERS above every client id seen (§5.1.1).
        if side == Side::Client && headers && client_stream && id > self.highest[0] {
            self.highest[0] = id;
            if self.first_new.is_none() {
                self.first_new = Some(id);
            }
            // §5.1.2: more open client streams than the server allows (the server refuses
            // them; the decoder reports them, flagged).
            let open_client = self.streams.keys().filter(|k| *k % 2 == 1).count();
            let over = self.max_concurrent[0].is_some_and(|m| open_client as u64 >= u64::from(m));
            if over {
                self.stats.streams_over_peer_limit += 1;
            }
            let s = self.open(id, ts_us, out);
            if over {
                s.flag(H2Anomaly::ProtocolError);
            }
            return self.streams.get_mut(&id);
        }
        // Joined mid-connection: frames of a stream opened before the first new one seen.
        let before_join = self.midstream && self.first_new.is_none_or(|f| id < f);
        if before_join && (client_stream || id > self.highest[1]) {
            self.stats.streams_midstream += 1;
            if client_stream {
                self.highest[0] = self.highest[0].max(id);
            } else {
                self.highest[1] = id;
            }
            let s = self.open(id, ts_us, out);
            s.flag(H2Anomaly::RequestHeadersMissing);
            s.req_started = true;
            s.part(side).touch(ts_us);
            return self.streams.get_mut(&id);
        }
        self.stats.frames_closed_stream += 1;
        None
    }

    /// Opens stream `id`, evicting the oldest open one when at the limit.
    fn open(&mut self, id: u32, ts_us: u64, out: &mut Vec<H2Message>) -> &mut StreamState {
        while self.streams.len() >= self.cfg.max_streams.max(1) {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            if self.streams.contains_key(&oldest) {
                self.stats.streams_evicted += 1;
                self.emit(oldest, End::Evicted, out);
            }
        }
        self.order.push_back(id);
        let window = [self.flow[0].initial, self.flow[1].initial];
        let s = self.streams.entry(id).or_default();
        s.window = window;
        s.req.touch(ts_us);
        s
    }

    fn data_piece(
        &mut self,
        side: Side,
        ts_us: u64,
        id: u32,
        bytes: &[u8],
        out: &mut Vec<H2Message>,
    ) {
        let cap = self.cfg.max_body_bytes;
        let Some(s) = self.stream_for(side, id, false, ts_us, out) else {
            return;
        };
        if side == Side::Server && !s.resp_started {
            if s.anomalies.contains(&H2Anomaly::RequestHeadersMissing) {
                s.resp_started = true;
            } else {
                // §8.1: DATA before the response HEADERS.
                s.flag(H2Anomaly::ProtocolError);
            }
        }
        if let Some((req, resp)) = s.grpc.as_mut() {
            match side {
                Side::Client => req.feed(bytes),
                Side::Server => resp.feed(bytes),
            }
        }
        let part = s.part(side);
        part.body.wire_len += bytes.len() as u64;
        let room = cap.saturating_sub(part.body.data.len());
        let keep = bytes.len().min(room);
        part.body.data.extend_from_slice(&bytes[..keep]);
        if keep < bytes.len() {
            part.body.truncated = true;
            self.stats.body_bytes_truncated += (bytes.len() - keep) as u64;
        }
    }

    /// A DATA frame from `side` used its flow-control windows (§6.9.1: the whole payload,
    /// padding included); going below zero is a FLOW_CONTROL_ERROR by the sender.
    fn flow_consume(&mut self, side: Side, h: &FrameHeader) {
        if !self.flow_known {
            return;
        }
        let d = idx(side);
        let len = i64::from(h.len);
        self.flow[d].connection -= len;
        let mut violated = self.flow[d].connection < 0;
        if let Some(s) = self.streams.get_mut(&h.stream) {
            s.window[d] -= len;
            if s.window[d] < 0 || violated {
                violated = true;
                s.flag(H2Anomaly::FlowControlViolation);
            }
        }
        if violated {
            self.stats.flow_control_violations += 1;
            // Count once, then track from a clean state rather than flag every later frame.
            self.flow[d].connection = self.flow[d].connection.max(0);
            if let Some(s) = self.streams.get_mut(&h.stream) {
                s.window[d] = s.window[d].max(0);
            }
        }
    }

    /// A SETTINGS payload sent by `side` (§6.5.1: 6-byte parameters): the parameters its
    /// peer must respect when sending to it (§6.5.2). SETTINGS_INITIAL_WINDOW_SIZE waits for
    /// the peer's acknowledgement.
    fn settings(&mut self, side: Side, payload: &[u8]) {
        let peer = idx(other(side));
        for p in payload.chunks_exact(6) {
            let id = u16::from_be_bytes([p[0], p[1]]);
            let v = u32::from_be_bytes([p[2], p[3], p[4], p[5]]);
            let dir = &mut self.dirs[peer];
            match id {
                0x1 => dir.hpack.set_protocol_max(v as usize),
                0x3 => self.max_concurrent[peer] = Some(v),
                0x4 => self.flow[peer].pending_initial = Some(v),
                0x5 => dir.parser.set_max_frame_size(v),
                _ => {}
            }
        }
    }

    /// §6.9.2: a new SETTINGS_INITIAL_WINDOW_SIZE moves every open stream's window of
    /// `side` by the difference.
    fn set_initial_window(&mut self, side: Side, v: u32) {
        let d = idx(side);
        let delta = i64::from(v) - self.flow[d].initial;
        self.flow[d].initial = i64::from(v);
        for s in self.streams.values_mut() {
            s.window[d] += delta;
        }
    }

    fn end_side(&mut self, side: Side, ts_us: u64, id: u32, out: &mut Vec<H2Message>) {
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        let p = s.part(side);
        p.ended = true;
        p.end_us = ts_us;
        if s.req.ended && s.resp.ended {
            self.emit(id, End::Complete, out);
        }
    }

    fn emit(&mut self, id: u32, end: End, out: &mut Vec<H2Message>) {
        let Some(mut s) = self.streams.remove(&id) else {
            return;
        };
        if let Some(pos) = self.order.iter().position(|&x| x == id) {
            self.order.remove(pos);
        }
        if self.recently_ended.len() >= RECENT_ENDED {
            self.recently_ended.pop_front();
        }
        self.recently_ended.push_back(id);
        self.stats.streams += 1;
        for (i, part) in [&s.req, &s.resp].into_iter().enumerate() {
            // §8.1.1: content-length must equal the DATA received, for a complete side.
            if part.ended
                && let Some(n) = s.declared[i]
                && n != part.body.wire_len
            {
                s.anomalies.push(H2Anomaly::ContentLengthMismatch);
            }
        }
        let grpc = s.grpc.take().map(|(req, resp)| {
            grpc::rpc(
                s.req.header(":path").unwrap_or_default(),
                &s.req.headers,
                &s.resp.headers,
                &s.resp.trailers,
                &req,
                &resp,
            )
        });
        let mut anomalies = std::mem::take(&mut s.anomalies);
        if grpc.is_none() {
            for part in [&mut s.req, &mut s.resp] {
                self.decode_body(part, &mut anomalies);
            }
        }
        let mut seen = Vec::new();
        anomalies.retain(|a| {
            let new = !seen.contains(a);
            seen.push(*a);
            new
        });
        let response =
            (s.resp_started || s.resp.ended || !s.resp.body.data.is_empty()).then_some(s.resp);
        out.push(H2Message {
            stream_id: id,
            request: s.req,
            response,
            end,
            anomalies,
            grpc,
        });
    }

    /// Removes a `content-encoding` the crate knows (RFC 9110 §8.4) within the body cap.
    fn decode_body(&mut self, part: &mut Part, anomalies: &mut Vec<H2Anomaly>) {
        let Some(coding) = part
            .header("content-encoding")
            .and_then(|c| std::str::from_utf8(c).ok())
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(str::to_owned)
        else {
            return;
        };
        if part.body.wire_len == 0 {
            return;
        }
        let complete = part.ended && !part.body.truncated;
        match content::decode(&coding, &part.body.data, self.cfg.max_body_bytes, complete) {
            Ok(d) => {
                self.stats.bodies_decoded += 1;
                if d.bomb {
                    anomalies.push(H2Anomaly::DecompressionBomb);
                }
                part.body.truncated = !d.complete;
                part.body.data = d.data;
                part.body.decoded = true;
            }
            Err(content::DecodeError::Unsupported) => {}
            Err(content::DecodeError::Corrupt) => {
                self.stats.body_decode_failures += 1;
                anomalies.push(H2Anomaly::BodyDecodeFailed);
            }
        }
    }
}

/// A HEADERS or PUSH_PROMISE payload without its padding (§6.2, §6.6); `None` when the pad
/// length does not fit.
fn strip_padding(h: &FrameHeader, payload: &Bytes, _min: usize) -> Option<Bytes> {
    if !h.has(flag::PADDED) {
        return Some(payload.clone());
    }
    let pad = usize::from(*payload.first()?);
    let end = payload.len().checked_sub(pad)?;
    (end >= 1).then(|| payload.slice(1..end))
}

fn declared_length(fields: &[Field]) -> Option<u64> {
    fields
        .iter()
        .find(|f| f.name.as_deref() == Some(&b"content-length"[..]))
        .and_then(|f| f.value.as_deref())
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.trim().parse().ok())
}

/// §8.3: pseudo-headers first, the required ones present (requests: `:method`, and `:scheme`
/// and `:path` unless CONNECT; responses: `:status`). Unknown fields give the benefit of the
/// doubt.
fn pseudo_ok(fields: &[Field], request: bool) -> bool {
    if fields.iter().any(|f| f.name.is_none()) {
        return true;
    }
    let mut regular = false;
    for f in fields {
        let pseudo = f.name.as_deref().is_some_and(|n| n.first() == Some(&b':'));
        if pseudo && regular {
            return false;
        }
        regular |= !pseudo;
    }
    let has = |n: &str| {
        fields
            .iter()
            .any(|f| f.name.as_deref() == Some(n.as_bytes()))
    };
    if request {
        let connect = fields.iter().any(|f| {
            f.name.as_deref() == Some(&b":method"[..])
                && f.value.as_deref() == Some(&b"CONNECT"[..])
        });
        has(":method") && (connect || (has(":scheme") && has(":path")))
    } else {
        has(":status")
    }
}
