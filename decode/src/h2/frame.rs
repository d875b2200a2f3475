//! HTTP/2 framing (RFC 9113 §4) for one direction of a connection, fed in arbitrary pieces.
//!
//! [`FrameParser`] yields [`Item`]s: the client connection preface (§3.4), whole non-DATA
//! frames (their payload is at most the receiver's SETTINGS_MAX_FRAME_SIZE, §4.2, and this
//! parser's own cap), and DATA frames *streamed* as content pieces with the padding removed
//! (§6.1), so a 16 MiB DATA frame is never buffered. "Need more bytes" ([`Item::NeedMore`]) is
//! distinct from "invalid" ([`Item::Invalid`]): after invalid framing, or when created
//! mid-stream, the parser resynchronises on the next offset where two consecutive plausible
//! frame headers chain, and counts the bytes it skipped.
//!
//! Payload bytes are [`Bytes`] split off the receive buffer: no copy beyond the one into the
//! buffer.

use bytes::{Buf, Bytes, BytesMut};

/// The client connection preface (RFC 9113 §3.4).
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Whether a client byte stream starts with the connection preface (RFC 9113 §3.4): how a
/// session recognises prior-knowledge h2c (and h2 over TLS, whose client also sends it first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrefaceMatch {
    /// The bytes start with the whole preface.
    Yes,
    /// They cannot start with it.
    No,
    /// Too few bytes to tell (all of them match the preface's start).
    NeedMore,
}

/// Compares the start of a client stream with [`PREFACE`].
pub fn preface_match(start: &[u8]) -> PrefaceMatch {
    let n = start.len().min(PREFACE.len());
    if start[..n] != PREFACE[..n] {
        PrefaceMatch::No
    } else if n < PREFACE.len() {
        PrefaceMatch::NeedMore
    } else {
        PrefaceMatch::Yes
    }
}

/// Frame types (RFC 9113 §6).
pub mod kind {
    /// §6.1
    pub const DATA: u8 = 0x0;
    /// §6.2
    pub const HEADERS: u8 = 0x1;
    /// §6.3
    pub const PRIORITY: u8 = 0x2;
    /// §6.4
    pub const RST_STREAM: u8 = 0x3;
    /// §6.5
    pub const SETTINGS: u8 = 0x4;
    /// §6.6
    pub const PUSH_PROMISE: u8 = 0x5;
    /// §6.7
    pub const PING: u8 = 0x6;
    /// §6.8
    pub const GOAWAY: u8 = 0x7;
    /// §6.9
    pub const WINDOW_UPDATE: u8 = 0x8;
    /// §6.10
    pub const CONTINUATION: u8 = 0x9;
}

/// Frame flags (RFC 9113 §6).
pub mod flag {
    /// DATA, HEADERS: last frame of the stream's side.
    pub const END_STREAM: u8 = 0x1;
    /// SETTINGS, PING: acknowledgment.
    pub const ACK: u8 = 0x1;
    /// HEADERS, PUSH_PROMISE, CONTINUATION: the header block is complete.
    pub const END_HEADERS: u8 = 0x4;
    /// DATA, HEADERS, PUSH_PROMISE: a pad length byte and padding are present.
    pub const PADDED: u8 = 0x8;
    /// HEADERS: stream dependency and weight are present.
    pub const PRIORITY: u8 = 0x20;
}

/// SETTINGS_MAX_FRAME_SIZE's initial value and lower bound (RFC 9113 §6.5.2).
pub const DEFAULT_MAX_FRAME_SIZE: u32 = 16_384;
/// SETTINGS_MAX_FRAME_SIZE's upper bound (RFC 9113 §6.5.2).
pub const MAX_MAX_FRAME_SIZE: u32 = (1 << 24) - 1;

/// A frame header (RFC 9113 §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Payload length.
    pub len: u32,
    /// Frame type.
    pub kind: u8,
    /// Flags.
    pub flags: u8,
    /// Stream identifier (reserved bit cleared).
    pub stream: u32,
}

impl FrameHeader {
    fn parse(b: &[u8]) -> (FrameHeader, bool) {
        let h = FrameHeader {
            len: u32::from_be_bytes([0, b[0], b[1], b[2]]),
            kind: b[3],
            flags: b[4],
            stream: u32::from_be_bytes([b[5] & 0x7f, b[6], b[7], b[8]]),
        };
        (h, b[5] & 0x80 != 0)
    }

    /// The flag is set.
    pub fn has(&self, f: u8) -> bool {
        self.flags & f != 0
    }
}

/// Why the byte stream is not valid HTTP/2 framing here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The client's first bytes are not the connection preface (§3.4).
    #[error("not the HTTP/2 connection preface")]
    BadPreface,
    /// A frame longer than SETTINGS_MAX_FRAME_SIZE (§4.2: FRAME_SIZE_ERROR).
    #[error("frame larger than the maximum frame size")]
    TooLarge,
    /// DATA padding not shorter than the payload (§6.1: PROTOCOL_ERROR).
    #[error("padding exceeds the frame payload")]
    Padding,
    /// A DATA frame on stream 0 (§6.1: PROTOCOL_ERROR).
    #[error("DATA on stream 0")]
    DataStreamZero,
}

/// One step of parsing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// No complete next item is buffered; feed more bytes.
    NeedMore,
    /// The client connection preface (§3.4).
    Preface,
    /// A complete non-DATA frame.
    Frame {
        /// Its header.
        header: FrameHeader,
        /// Its whole payload (padding, if any, still in it).
        payload: Bytes,
    },
    /// A piece of a DATA frame's content, padding removed (§6.1).
    Data {
        /// The frame's stream.
        stream: u32,
        /// Content bytes.
        bytes: Bytes,
    },
    /// The DATA frame whose content was just streamed ended (its flags tell END_STREAM);
    /// `header.len` is what it counts against flow control (§6.9.1, padding included).
    DataEnd {
        /// Its header.
        header: FrameHeader,
    },
    /// A non-DATA frame larger than this parser's buffer cap was skipped whole, unread.
    Skipped {
        /// Its header.
        header: FrameHeader,
    },
    /// Invalid framing; the parser resynchronises on later bytes.
    Invalid(FrameError),
    /// Bytes dropped while looking for the next frame boundary (mid-stream start, or after
    /// invalid framing).
    Resynced {
        /// Bytes skipped.
        skipped: u64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Preface,
    Header,
    Payload(FrameHeader),
    DataPadLen(FrameHeader),
    Data {
        header: FrameHeader,
        left: u32,
        pad: u32,
    },
    Skip {
        header: FrameHeader,
        left: u32,
        data: bool,
    },
    Resync,
}

/// Frame parser for one direction.
#[derive(Debug)]
pub struct FrameParser {
    buf: BytesMut,
    state: State,
    /// The receiver's SETTINGS_MAX_FRAME_SIZE (§4.2).
    max_frame_size: u32,
    /// Largest non-DATA payload buffered; larger ones are skipped.
    max_buffered: u32,
    /// Bytes consumed so far (stream offset of the buffer's start).
    consumed: u64,
    skipped: u64,
}

impl FrameParser {
    /// A parser. `client` expects the connection preface first, unless `midstream` (capture
    /// began after the connection opened), in which case it looks for a frame boundary.
    /// `max_buffered` caps the non-DATA payloads it holds.
    pub fn new(client: bool, midstream: bool, max_buffered: u32) -> Self {
        FrameParser {
            buf: BytesMut::new(),
            state: if midstream {
                State::Resync
            } else if client {
                State::Preface
            } else {
                State::Header
            },
            max_frame_size: DEFAULT_MAX_FRAME_SIZE,
            max_buffered,
            consumed: 0,
            skipped: 0,
        }
    }

    /// The receiver advertised SETTINGS_MAX_FRAME_SIZE `n` (§6.5.2). Values outside the legal
    /// range are clamped into it. The parser accepts the larger of the old and new limits
    /// (the new one applies once acknowledged, and frames in flight may still use the old).
    pub fn set_max_frame_size(&mut self, n: u32) {
        self.max_frame_size = n.clamp(DEFAULT_MAX_FRAME_SIZE, MAX_MAX_FRAME_SIZE);
    }

    /// Appends bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes buffered.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Stream offset of the next unread byte.
    pub fn position(&self) -> u64 {
        self.consumed
    }

    /// Total bytes skipped while resynchronising.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// Between items: not inside a frame or the preface.
    pub fn at_boundary(&self) -> bool {
        matches!(self.state, State::Header) && self.buf.is_empty()
    }

    /// Bytes were lost: drop what is buffered and look for the next frame boundary.
    pub fn gap(&mut self) {
        self.consumed += self.buf.len() as u64;
        self.buf.clear();
        self.state = State::Resync;
    }

    fn take(&mut self, n: usize) -> Bytes {
        self.consumed += n as u64;
        self.buf.split_to(n).freeze()
    }

    fn advance(&mut self, n: usize) {
        self.consumed += n as u64;
        self.buf.advance(n);
    }

    /// The next item.
    pub fn next_item(&mut self) -> Item {
        loop {
            match self.state {
                State::Preface => match preface_match(&self.buf) {
                    PrefaceMatch::No => {
                        self.state = State::Resync;
                        return Item::Invalid(FrameError::BadPreface);
                    }
                    PrefaceMatch::NeedMore => return Item::NeedMore,
                    PrefaceMatch::Yes => {
                        self.advance(PREFACE.len());
                        self.state = State::Header;
                        return Item::Preface;
                    }
                },
                State::Header => {
                    if self.buf.len() < 9 {
                        return Item::NeedMore;
                    }
                    let (h, _reserved) = FrameHeader::parse(&self.buf[..9]);
                    // §4.2: larger than the receiver's maximum is a FRAME_SIZE_ERROR.
                    if h.len > self.max_frame_size {
                        self.state = State::Resync;
                        return Item::Invalid(FrameError::TooLarge);
                    }
                    if h.kind == kind::DATA && h.stream == 0 {
                        self.state = State::Resync;
                        return Item::Invalid(FrameError::DataStreamZero);
                    }
                    self.advance(9);
                    self.state = if h.kind == kind::DATA {
                        if h.has(flag::PADDED) {
                            State::DataPadLen(h)
                        } else {
                            State::Data {
                                header: h,
                                left: h.len,
                                pad: 0,
                            }
                        }
                    } else if h.len > self.max_buffered {
                        State::Skip {
                            header: h,
                            left: h.len,
                            data: false,
                        }
                    } else {
                        State::Payload(h)
                    };
                }
                State::Payload(h) => {
                    if self.buf.len() < h.len as usize {
                        return Item::NeedMore;
                    }
                    let payload = self.take(h.len as usize);
                    self.state = State::Header;
                    return Item::Frame { header: h, payload };
                }
                State::DataPadLen(h) => {
                    if h.len == 0 {
                        self.state = State::Resync;
                        return Item::Invalid(FrameError::Padding);
                    }
                    let Some(&pad) = self.buf.first() else {
                        return Item::NeedMore;
                    };
                    // §6.1: padding as long as the payload or longer is a PROTOCOL_ERROR.
                    if u32::from(pad) >= h.len {
                        // The frame length is still trustworthy: skip the frame, stay in sync.
                        self.state = State::Skip {
                            header: h,
                            left: h.len,
                            data: true,
                        };
                        return Item::Invalid(FrameError::Padding);
                    }
                    self.advance(1);
                    self.state = State::Data {
                        header: h,
                        left: h.len - 1 - u32::from(pad),
                        pad: u32::from(pad),
                    };
                }
                State::Data { header, left, pad } => {
                    if left == 0 {
                        if pad > 0 {
                            self.state = State::Skip {
                                header,
                                left: pad,
                                data: true,
                            };
                            continue;
                        }
                        self.state = State::Header;
                        return Item::DataEnd { header };
                    }
                    if self.buf.is_empty() {
                        return Item::NeedMore;
                    }
                    let n = self.buf.len().min(left as usize);
                    let bytes = self.take(n);
                    self.state = State::Data {
                        header,
                        left: left - n as u32,
                        pad,
                    };
                    return Item::Data {
                        stream: header.stream,
                        bytes,
                    };
                }
                State::Skip { header, left, data } => {
                    if left > 0 {
                        if self.buf.is_empty() {
                            return Item::NeedMore;
                        }
                        let n = self.buf.len().min(left as usize);
                        self.advance(n);
                        self.state = State::Skip {
                            header,
                            left: left - n as u32,
                            data,
                        };
                        continue;
                    }
                    self.state = State::Header;
                    return if data {
                        Item::DataEnd { header }
                    } else {
                        Item::Skipped { header }
                    };
                }
                State::Resync => {
                    // Candidates are confirmed by the header after them: only frames this
                    // parser would buffer anyway qualify, so resync holds at most that much.
                    let max = self
                        .max_frame_size
                        .min(self.max_buffered.max(DEFAULT_MAX_FRAME_SIZE));
                    return match find_boundary(&self.buf, max) {
                        Boundary::At(off) => {
                            self.advance(off);
                            self.skipped += off as u64;
                            self.state = State::Header;
                            if off == 0 {
                                continue;
                            }
                            Item::Resynced {
                                skipped: off as u64,
                            }
                        }
                        Boundary::NeedMore(keep_from) => {
                            if keep_from > 0 {
                                self.advance(keep_from);
                                self.skipped += keep_from as u64;
                                return Item::Resynced {
                                    skipped: keep_from as u64,
                                };
                            }
                            Item::NeedMore
                        }
                    };
                }
            }
        }
    }
}

enum Boundary {
    /// A frame starts at this offset.
    At(usize),
    /// No boundary before this offset; decide later.
    NeedMore(usize),
}

/// Whether 9 bytes could be a frame header a real peer sends: a registered type (or a common
/// extension), only flags defined for it, reserved bit clear, the stream id rules and fixed
/// lengths of §6.
pub fn plausible(b: &[u8], max_frame_size: u32) -> bool {
    let (h, reserved) = FrameHeader::parse(b);
    if reserved || h.len > max_frame_size {
        return false;
    }
    let s0 = h.stream == 0;
    match h.kind {
        kind::DATA => !s0 && h.flags & !0x09 == 0,
        kind::HEADERS => !s0 && h.flags & !0x2d == 0,
        kind::PRIORITY => !s0 && h.flags == 0 && h.len == 5,
        kind::RST_STREAM => !s0 && h.flags == 0 && h.len == 4,
        kind::SETTINGS => {
            s0 && h.flags & !0x01 == 0 && h.len.is_multiple_of(6) && (h.flags == 0 || h.len == 0)
        }
        kind::PUSH_PROMISE => !s0 && h.flags & !0x0c == 0 && h.len >= 4,
        kind::PING => s0 && h.flags & !0x01 == 0 && h.len == 8,
        kind::GOAWAY => s0 && h.flags == 0 && h.len >= 8,
        kind::WINDOW_UPDATE => h.flags == 0 && h.len == 4,
        kind::CONTINUATION => !s0 && h.flags & !0x04 == 0,
        // ALTSVC (RFC 7838), ORIGIN (RFC 8336), PRIORITY_UPDATE (RFC 9218).
        0x0a | 0x0c | 0x10 => h.flags == 0,
        _ => false,
    }
}

/// The first offset in `buf` where a plausible frame header is followed by another one (or
/// by the end of the buffered bytes exactly, a write boundary).
fn find_boundary(buf: &[u8], max: u32) -> Boundary {
    let mut off = 0;
    while off + 9 <= buf.len() {
        if plausible(&buf[off..off + 9], max) {
            let len = u32::from_be_bytes([0, buf[off], buf[off + 1], buf[off + 2]]) as usize;
            let next = off + 9 + len;
            if next == buf.len() {
                return Boundary::At(off);
            }
            if next + 9 <= buf.len() {
                if plausible(&buf[next..next + 9], max) {
                    return Boundary::At(off);
                }
            } else {
                // Cannot confirm yet: keep from here.
                return Boundary::NeedMore(off);
            }
        }
        off += 1;
    }
    Boundary::NeedMore(off)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A frame's bytes.
    pub(crate) fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len() as u32;
        let mut v = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
        v.extend_from_slice(&stream.to_be_bytes());
        v.extend_from_slice(payload);
        v
    }

    fn all(p: &mut FrameParser) -> Vec<Item> {
        let mut v = Vec::new();
        loop {
            match p.next_item() {
                Item::NeedMore => return v,
                i => v.push(i),
            }
        }
    }

    #[test]
    fn preface_frames_and_padded_data_in_any_pieces() {
        let mut wire = PREFACE.to_vec();
        wire.extend(frame(kind::SETTINGS, 0, 0, &[0, 4, 0, 0, 0xff, 0xff]));
        let mut padded = vec![3];
        padded.extend_from_slice(b"hello");
        padded.extend_from_slice(&[0, 0, 0]);
        wire.extend(frame(
            kind::DATA,
            flag::PADDED | flag::END_STREAM,
            1,
            &padded,
        ));
        wire.extend(frame(0xee, 0, 0, b"unknown type")); // §5.5: ignored by the caller
        for piece in [1, 2, 5, 9, 10, wire.len()] {
            let mut p = FrameParser::new(true, false, 1 << 20);
            let mut items = Vec::new();
            for c in wire.chunks(piece) {
                p.push(c);
                items.extend(all(&mut p));
            }
            let mut data = Vec::new();
            let mut kinds = Vec::new();
            for i in &items {
                match i {
                    Item::Data { bytes, .. } => data.extend_from_slice(bytes),
                    Item::Frame { header, .. } => kinds.push(header.kind),
                    Item::DataEnd { header } => {
                        assert!(header.has(flag::END_STREAM));
                        assert_eq!(header.len, 9);
                        kinds.push(0);
                    }
                    Item::Preface => kinds.push(0xff),
                    other => panic!("{other:?}"),
                }
            }
            assert_eq!(data, b"hello", "piece {piece}");
            assert_eq!(kinds, vec![0xff, kind::SETTINGS, kind::DATA, 0xee]);
            assert!(p.at_boundary());
            assert_eq!(p.position(), wire.len() as u64);
        }
    }

    #[test]
    fn preface_detection() {
        assert_eq!(preface_match(b""), PrefaceMatch::NeedMore);
        assert_eq!(preface_match(b"PRI * HTTP/2"), PrefaceMatch::NeedMore);
        assert_eq!(
            preface_match(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0"),
            PrefaceMatch::Yes
        );
        assert_eq!(preface_match(b"POST / HTTP/1.1\r\n"), PrefaceMatch::No);
        assert_eq!(preface_match(b"PRI * HTTP/1.1"), PrefaceMatch::No);
    }

    #[test]
    fn invalid_is_not_need_more() {
        let mut p = FrameParser::new(true, false, 1 << 20);
        p.push(b"PRI * HTTP/2.0\r\n");
        assert_eq!(p.next_item(), Item::NeedMore);
        let mut p = FrameParser::new(true, false, 1 << 20);
        p.push(b"GET / HTTP/1.1\r\n");
        assert_eq!(p.next_item(), Item::Invalid(FrameError::BadPreface));
        // Frame over SETTINGS_MAX_FRAME_SIZE.
        let mut p = FrameParser::new(false, false, 1 << 20);
        p.push(&frame(kind::HEADERS, 0, 1, &vec![0; 16_385])[..9]);
        assert_eq!(p.next_item(), Item::Invalid(FrameError::TooLarge));
        let mut p = FrameParser::new(false, false, 1 << 20);
        p.set_max_frame_size(1 << 20);
        p.push(&frame(kind::HEADERS, 0, 1, &vec![0; 16_385])[..9]);
        assert_eq!(p.next_item(), Item::NeedMore);
        // Padding longer than the payload: skipped, in sync after it.
        let mut p = FrameParser::new(false, false, 1 << 20);
        p.push(&frame(kind::DATA, flag::PADDED, 1, &[5, 1, 2]));
        p.push(&frame(kind::PING, 0, 0, &[0; 8]));
        let items = all(&mut p);
        assert_eq!(items[0], Item::Invalid(FrameError::Padding));
        assert!(matches!(items[1], Item::DataEnd { .. }));
        assert!(matches!(items[2], Item::Frame { header, .. } if header.kind == kind::PING));
    }

    #[test]
    fn oversized_control_frames_are_skipped_not_buffered() {
        let mut p = FrameParser::new(false, false, 100);
        let f = frame(kind::HEADERS, flag::END_HEADERS, 1, &[0x82; 1000]);
        for c in f.chunks(64) {
            p.push(c);
            let _ = all(&mut p);
            assert!(p.buffered() < 100);
        }
        p.push(&frame(kind::PING, 0, 0, &[0; 8]));
        let items = all(&mut p);
        assert!(matches!(items[0], Item::Frame { header, .. } if header.kind == kind::PING));
    }

    #[test]
    fn midstream_resyncs_on_chained_headers() {
        let mut wire = b"\x00\x13tail of a frame".to_vec();
        let junk = wire.len() as u64;
        wire.extend(frame(kind::WINDOW_UPDATE, 0, 0, &[0, 0, 1, 0]));
        wire.extend(frame(kind::DATA, 0, 3, b"abc"));
        let mut p = FrameParser::new(false, true, 1 << 20);
        p.push(&wire);
        let items = all(&mut p);
        assert_eq!(items[0], Item::Resynced { skipped: junk });
        assert!(
            matches!(items[1], Item::Frame { header, .. } if header.kind == kind::WINDOW_UPDATE)
        );
        assert_eq!(
            items[2],
            Item::Data {
                stream: 3,
                bytes: Bytes::from_static(b"abc")
            }
        );
        // Bounded while nothing plausible arrives.
        let mut p = FrameParser::new(false, true, 1 << 20);
        for _ in 0..100 {
            p.push(&[0xff; 1000]);
            let _ = all(&mut p);
            assert!(p.buffered() < 16);
        }
        assert!(p.skipped() > 99_000);
    }
}
