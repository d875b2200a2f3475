//! HTTP/1.x message framing for one direction of a connection (RFC 9112).
//!
//! [`MessageParser`] consumes the ordered bytes of one direction and yields message heads, body
//! bytes and message ends. It never blocks on or copies more than it keeps: the header block is
//! parsed in place by `httparse` from the receive buffer, body bytes are handed out as slices of
//! it, and only the head and the capped body sample (in the session) are retained. The head
//! keeps its header fields as ranges of one copy of the header block ([`Headers`], issue 21):
//! two allocations per message whatever its number of fields, both freed with the event. The
//! block is copied rather than split off the receive buffer because a split would keep the
//! whole receive allocation (up to a reassembled burst) alive for as long as a pipelined
//! request waits for its response, beyond what [`Head::retained_bytes`] accounts.
//!
//! "Need more bytes" ([`Step::NeedMore`]) and "invalid" ([`Step::Invalid`]) are distinct: the
//! first waits, the second resynchronises on the next message start.

use std::mem::MaybeUninit;

use std::ops::Range;

use bytes::{Buf, Bytes, BytesMut};

use apitap_schema::{Anomaly, FieldSpan, Header, Headers};

/// Which kind of message a parser reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Client-to-server bytes.
    Request,
    /// Server-to-client bytes.
    Response,
}

/// Limits for one parser.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Header block size at most (request/status line + fields + CRLF).
    pub max_header_bytes: usize,
    /// Header fields at most.
    pub max_headers: usize,
}

/// A parsed start line and header block, owned.
#[derive(Debug, Clone, PartialEq)]
pub struct Head {
    /// Request method (requests only).
    pub method: String,
    /// Request target as sent (requests only).
    pub target: String,
    /// Status code (responses only).
    pub status: u16,
    /// Reason phrase (responses only).
    pub reason: String,
    /// Minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    /// Header fields in wire order: ranges of the header block when every value is UTF-8,
    /// else owned with invalid bytes replaced (and [`Anomaly::NonUtf8Header`]).
    pub headers: Headers,
    /// Anomalies found in the head itself.
    pub anomalies: Vec<Anomaly>,
}

impl Head {
    /// Heap and inline bytes this head keeps alive, for memory accounting: its strings and
    /// header table (a pipelined request waits in memory with its head until answered).
    pub fn retained_bytes(&self) -> usize {
        let fields = self.headers.heap_bytes();
        std::mem::size_of::<Head>()
            + self.method.len()
            + self.target.len()
            + self.reason.len()
            + fields
            + self.anomalies.len() * std::mem::size_of::<Anomaly>()
    }

    /// First value of a header field, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)
    }

    /// True when `name` has `token` among its comma-separated values (case-insensitive).
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .fields()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }
}

/// How the body of a message is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    None,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked transfer coding (RFC 9112 §7.1).
    Chunked,
    /// Until the connection closes (responses only, RFC 9112 §6.3 ¶8).
    UntilClose,
    /// The connection switched protocols: nothing after the head is HTTP/1.
    Upgrade,
}

impl Framing {
    /// Framing of a request (RFC 9112 §6.3 ¶3–6): chunked wins over Content-Length (flagged);
    /// otherwise Content-Length; otherwise no body.
    pub fn for_request(head: &Head, anomalies: &mut Vec<Anomaly>) -> Framing {
        Self::from_headers(head, anomalies, Framing::None)
    }

    /// Framing of a response to a request with `request_method` (RFC 9112 §6.3 ¶1–2, 7–8):
    /// HEAD, 1xx, 204 and 304 have no body; 101 and 2xx to CONNECT switch protocols.
    pub fn for_response(
        head: &Head,
        request_method: Option<&str>,
        anomalies: &mut Vec<Anomaly>,
    ) -> Framing {
        let status = head.status;
        if status == 101 || (request_method == Some("CONNECT") && (200..300).contains(&status)) {
            return Framing::Upgrade;
        }
        if request_method == Some("HEAD")
            || (100..200).contains(&status)
            || status == 204
            || status == 304
        {
            return Framing::None;
        }
        Self::from_headers(head, anomalies, Framing::UntilClose)
    }

    fn from_headers(head: &Head, anomalies: &mut Vec<Anomaly>, otherwise: Framing) -> Framing {
        let mut te_seen = false;
        let mut chunked_last = false;
        let mut length: Option<u64> = None;
        let mut bad_length = false;
        // One pass over the fields for both (each keeps its own wire order).
        for (name, value) in head.headers.fields() {
            if name.eq_ignore_ascii_case("transfer-encoding") {
                for coding in value.split(',').map(str::trim).filter(|c| !c.is_empty()) {
                    te_seen = true;
                    chunked_last = coding.eq_ignore_ascii_case("chunked");
                }
            } else if name.eq_ignore_ascii_case("content-length") {
                // RFC 9110 §8.6: a list of identical values may be accepted; anything else is
                // invalid.
                for v in value.split(',').map(str::trim) {
                    match (v.bytes().all(|b| b.is_ascii_digit()) && !v.is_empty())
                        .then(|| v.parse::<u64>().ok())
                        .flatten()
                    {
                        Some(n) if length.is_none() || length == Some(n) => length = Some(n),
                        _ => bad_length = true,
                    }
                }
            }
        }
        if te_seen {
            if length.is_some() || bad_length {
                anomalies.push(Anomaly::ContentLengthWithChunked);
            }
            if chunked_last {
                return Framing::Chunked;
            }
            // RFC 9112 §6.3 ¶4: a request with a final coding other than chunked is invalid;
            // a response is read until close.
            anomalies.push(Anomaly::UnsupportedTransferEncoding);
            return if otherwise == Framing::UntilClose {
                Framing::UntilClose
            } else {
                Framing::None
            };
        }
        if bad_length {
            anomalies.push(Anomaly::InvalidContentLength);
            return otherwise;
        }
        match length {
            Some(0) => Framing::None,
            Some(n) => Framing::Length(n),
            None => otherwise,
        }
    }
}

/// One step of parsing.
#[derive(Debug, PartialEq)]
pub enum Step<'a> {
    /// The buffer holds no complete next element; feed more bytes.
    NeedMore,
    /// A message head. The caller must answer with [`MessageParser::start_body`].
    Head(Head),
    /// Body bytes (chunk framing removed), borrowed from the receive buffer.
    Body(&'a [u8]),
    /// The current message is complete.
    End,
    /// The bytes are not HTTP/1.x here; the parser discards up to the next plausible message
    /// start and reports why.
    Invalid(Anomaly),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    Size,
    Data(u64),
    DataEnd,
    Trailers,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Head,
    AwaitFraming,
    Length(u64),
    Chunked(ChunkState),
    UntilClose,
    /// After a gap or an error: discard until a message start.
    Resync,
    /// Protocol switched: discard everything.
    Opaque,
}

/// Longest chunk-size line accepted (size, extensions, CRLF).
const MAX_CHUNK_LINE: usize = 4096;

/// Incremental HTTP/1.x parser for one direction.
#[derive(Debug)]
pub struct MessageParser {
    kind: Kind,
    limits: Limits,
    buf: BytesMut,
    state: State,
    /// Bytes to drop from the front of `buf` before the next step (body slices handed out).
    consumed: usize,
    /// Stream bytes pushed so far, gaps included.
    pushed: u64,
    /// Where an unfinished header block (or trailer section) was last looked at, so bytes
    /// arriving one segment at a time are scanned once, not from the start each time.
    probe: Probe,
    /// Times `httparse` ran on a header block (for tests and benchmarks).
    head_parses: u64,
}

/// Progress on an unfinished header block at the front of the buffer. Invalidated whenever
/// the front of the buffer moves.
#[derive(Debug, Default, Clone, Copy)]
struct Probe {
    /// Buffer length when `httparse` last answered "partial" (0: not parsed yet).
    parsed: usize,
    /// Bytes already searched for the end of the block.
    scanned: usize,
}

impl MessageParser {
    /// A parser expecting a message start.
    pub fn new(kind: Kind, limits: Limits) -> Self {
        MessageParser {
            kind,
            limits,
            buf: BytesMut::new(),
            state: State::Head,
            consumed: 0,
            pushed: 0,
            probe: Probe::default(),
            head_parses: 0,
        }
    }

    /// Times a header block was handed to `httparse`: about log2 of its size when it arrives
    /// one byte at a time, not its size (quadratic re-parsing was a CPU attack, issue 22).
    pub fn head_parses(&self) -> u64 {
        self.head_parses
    }

    /// Drops `n` bytes from the front of the buffer.
    fn advance(&mut self, n: usize) {
        self.buf.advance(n);
        self.probe = Probe::default();
    }

    /// Empties the buffer.
    fn clear(&mut self) {
        self.buf.clear();
        self.probe = Probe::default();
    }

    /// Whether the unfinished header block at the front can have ended since the last look:
    /// only the new bytes are searched for the empty line that ends it (RFC 9112 §2.1; a bare
    /// LF is accepted as a line terminator, §2.2). Past the header limit, or after the buffer
    /// doubled since the last parse (so invalid bytes are still found early, at linear total
    /// cost), the block is parsed again anyway.
    fn head_may_be_complete(&mut self) -> bool {
        let len = self.buf.len();
        if self.probe.parsed == 0 || len > self.limits.max_header_bytes {
            return true;
        }
        let from = self.probe.scanned.saturating_sub(2);
        let ended = has_empty_line(&self.buf[from..]);
        self.probe.scanned = len;
        ended || len >= self.probe.parsed.saturating_mul(2)
    }

    /// Stream offset of the next unparsed byte (bytes pushed and gap lengths, minus what is
    /// still buffered). After a message ends this is the offset just past it.
    pub fn position(&self) -> u64 {
        self.pushed - (self.buf.len() - self.consumed) as u64
    }

    /// Appends in-order bytes.
    pub fn push(&mut self, data: &[u8]) {
        self.settle();
        self.pushed += data.len() as u64;
        if matches!(self.state, State::Opaque) {
            return;
        }
        self.buf.extend_from_slice(data);
    }

    /// Bytes held in the receive buffer (for memory accounting).
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// True between messages (nothing of a message is pending).
    pub fn idle(&self) -> bool {
        matches!(self.state, State::Head | State::Resync | State::Opaque)
            && self.buf.len() == self.consumed
    }

    /// True while a body delimited by connection close is being read.
    pub fn reading_until_close(&self) -> bool {
        matches!(self.state, State::UntilClose)
    }

    /// Bytes are missing from the stream: abandon the current message and resynchronise on
    /// the next message start.
    pub fn gap(&mut self, len: u64) {
        self.settle();
        self.pushed += len;
        self.clear();
        if !matches!(self.state, State::Opaque) {
            self.state = State::Resync;
        }
    }

    /// Capture started mid-stream: look for a message start before parsing.
    pub fn resync(&mut self) {
        if !matches!(self.state, State::Opaque) {
            self.state = State::Resync;
        }
    }

    /// Sets the framing of the message whose head was just returned.
    pub fn start_body(&mut self, framing: Framing) {
        self.state = match framing {
            Framing::None => State::Head,
            Framing::Length(n) => State::Length(n),
            Framing::Chunked => State::Chunked(ChunkState::Size),
            Framing::UntilClose => State::UntilClose,
            Framing::Upgrade => {
                self.clear();
                self.consumed = 0;
                State::Opaque
            }
        };
    }

    fn settle(&mut self) {
        if self.consumed > 0 {
            let n = self.consumed;
            self.consumed = 0;
            self.advance(n);
        }
    }

    /// Takes the bytes buffered past the last element returned and stops parsing (the parser
    /// is opaque from here): after a switch to another protocol (`Upgrade: h2c`, RFC 7540
    /// §3.2) they are the new protocol's first bytes.
    pub fn take_rest(&mut self) -> BytesMut {
        self.settle();
        let rest = self.buf.split();
        self.probe = Probe::default();
        self.consumed = 0;
        self.state = State::Opaque;
        rest
    }

    /// Produces the next step from the buffered bytes.
    pub fn step(&mut self) -> Step<'_> {
        self.settle();
        loop {
            match self.state {
                State::Opaque => {
                    self.clear();
                    return Step::NeedMore;
                }
                State::AwaitFraming => return Step::NeedMore,
                State::Resync => match find_message_start(&self.buf, self.kind) {
                    Some(at) => {
                        self.advance(at);
                        self.state = State::Head;
                    }
                    None => {
                        // Keep a tail that may hold the beginning of a start line.
                        let keep = self.buf.len().min(32);
                        self.advance(self.buf.len() - keep);
                        return Step::NeedMore;
                    }
                },
                State::Head => {
                    // RFC 9112 §2.2: a recipient SHOULD ignore at least one empty line before
                    // a request line.
                    while self.buf.starts_with(b"\r\n") {
                        self.advance(2);
                    }
                    while self.buf.first() == Some(&b'\n') {
                        self.advance(1);
                    }
                    if self.buf.is_empty() {
                        return Step::NeedMore;
                    }
                    if !self.head_may_be_complete() {
                        return Step::NeedMore;
                    }
                    self.head_parses += 1;
                    return match parse_head(&self.buf, self.kind, self.limits) {
                        HeadResult::Partial => {
                            if self.buf.len() > self.limits.max_header_bytes {
                                self.clear();
                                self.state = State::Resync;
                                Step::Invalid(Anomaly::HeadersTooLarge)
                            } else {
                                let len = self.buf.len();
                                self.probe = Probe {
                                    parsed: len,
                                    scanned: len,
                                };
                                Step::NeedMore
                            }
                        }
                        HeadResult::Complete(len, head) => {
                            if len > self.limits.max_header_bytes {
                                self.advance(len);
                                self.state = State::Resync;
                                return Step::Invalid(Anomaly::HeadersTooLarge);
                            }
                            self.advance(len);
                            self.state = State::AwaitFraming;
                            Step::Head(head)
                        }
                        HeadResult::Invalid(anomaly) => {
                            // Skip this start line and resynchronise after it.
                            self.advance(1);
                            self.state = State::Resync;
                            Step::Invalid(anomaly)
                        }
                    };
                }
                State::Length(remaining) => {
                    if remaining == 0 {
                        self.state = State::Head;
                        return Step::End;
                    }
                    if self.buf.is_empty() {
                        return Step::NeedMore;
                    }
                    let n = (remaining.min(self.buf.len() as u64)) as usize;
                    self.state = State::Length(remaining - n as u64);
                    self.consumed = n;
                    return Step::Body(&self.buf[..n]);
                }
                State::UntilClose => {
                    if self.buf.is_empty() {
                        return Step::NeedMore;
                    }
                    self.consumed = self.buf.len();
                    return Step::Body(&self.buf[..]);
                }
                State::Chunked(cs) => match cs {
                    ChunkState::Size => match parse_chunk_size(&self.buf) {
                        ChunkLine::Partial => {
                            if self.buf.len() > MAX_CHUNK_LINE {
                                return self.chunk_error();
                            }
                            return Step::NeedMore;
                        }
                        ChunkLine::Invalid => return self.chunk_error(),
                        ChunkLine::Size(line_len, 0) => {
                            self.advance(line_len);
                            self.state = State::Chunked(ChunkState::Trailers);
                        }
                        ChunkLine::Size(line_len, size) => {
                            self.advance(line_len);
                            self.state = State::Chunked(ChunkState::Data(size));
                        }
                    },
                    ChunkState::Data(remaining) => {
                        if self.buf.is_empty() {
                            return Step::NeedMore;
                        }
                        let n = (remaining.min(self.buf.len() as u64)) as usize;
                        self.state = State::Chunked(if remaining == n as u64 {
                            ChunkState::DataEnd
                        } else {
                            ChunkState::Data(remaining - n as u64)
                        });
                        self.consumed = n;
                        return Step::Body(&self.buf[..n]);
                    }
                    ChunkState::DataEnd => {
                        if self.buf.len() < 2 {
                            return Step::NeedMore;
                        }
                        if &self.buf[..2] != b"\r\n" {
                            return self.chunk_error();
                        }
                        self.advance(2);
                        self.state = State::Chunked(ChunkState::Size);
                    }
                    ChunkState::Trailers => {
                        // RFC 9112 §7.1.2: trailer fields, then an empty line. A long field
                        // arriving in pieces is searched from where the last look stopped.
                        let from = self.probe.scanned.saturating_sub(1);
                        match find_crlf(&self.buf[from..]).map(|i| i + from) {
                            None => {
                                if self.buf.len() > self.limits.max_header_bytes {
                                    return self.chunk_error();
                                }
                                self.probe.scanned = self.buf.len();
                                return Step::NeedMore;
                            }
                            Some(0) => {
                                self.advance(2);
                                self.state = State::Head;
                                return Step::End;
                            }
                            Some(i) => self.advance(i + 2),
                        }
                    }
                },
            }
        }
    }

    fn chunk_error(&mut self) -> Step<'_> {
        self.clear();
        self.state = State::Resync;
        Step::Invalid(Anomaly::InvalidChunk)
    }
}

// Returned once per head and matched at once: boxing the head would cost an allocation per
// message, which is what the head's representation avoids (issue 21).
#[allow(clippy::large_enum_variant)]
enum HeadResult {
    Partial,
    Complete(usize, Head),
    Invalid(Anomaly),
}

fn parse_head(buf: &[u8], kind: Kind, limits: Limits) -> HeadResult {
    // Uninitialised slots: zeroing 128 headers (4 KiB) cost more than parsing a typical head.
    let mut storage = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; 128];
    let n = limits.max_headers.min(storage.len());
    let headers = &mut storage[..n];
    let config = httparse::ParserConfig::default();
    let malformed = match kind {
        Kind::Request => Anomaly::MalformedRequest,
        Kind::Response => Anomaly::MalformedResponse,
    };
    let invalid = |e: httparse::Error| {
        HeadResult::Invalid(if e == httparse::Error::TooManyHeaders {
            Anomaly::TooManyHeaders
        } else {
            malformed
        })
    };
    match kind {
        Kind::Request => {
            let mut req = httparse::Request::new(&mut []);
            match config.parse_request_with_uninit_headers(&mut req, buf, headers) {
                Ok(httparse::Status::Partial) => HeadResult::Partial,
                Ok(httparse::Status::Complete(len)) => {
                    let mut anomalies = Vec::new();
                    let headers = block_headers(buf, len, req.headers, &mut anomalies);
                    HeadResult::Complete(
                        len,
                        Head {
                            method: req.method.unwrap_or_default().to_owned(),
                            target: req.path.unwrap_or_default().to_owned(),
                            status: 0,
                            reason: String::new(),
                            minor_version: req.version.unwrap_or(1),
                            headers,
                            anomalies,
                        },
                    )
                }
                Err(e) => invalid(e),
            }
        }
        Kind::Response => {
            let mut res = httparse::Response::new(&mut []);
            match config.parse_response_with_uninit_headers(&mut res, buf, headers) {
                Ok(httparse::Status::Partial) => HeadResult::Partial,
                Ok(httparse::Status::Complete(len)) => {
                    let mut anomalies = Vec::new();
                    let headers = block_headers(buf, len, res.headers, &mut anomalies);
                    HeadResult::Complete(
                        len,
                        Head {
                            method: String::new(),
                            target: String::new(),
                            status: res.code.unwrap_or_default(),
                            reason: res.reason.unwrap_or_default().to_owned(),
                            minor_version: res.version.unwrap_or(1),
                            headers,
                            anomalies,
                        },
                    )
                }
                Err(e) => invalid(e),
            }
        }
    }
}

/// The fields `httparse` found in `buf[..len]` (the header block), as ranges of one copy of
/// the block. When a value is not UTF-8 (obs-text, RFC 9110 §5.5) the fields are owned
/// instead, invalid bytes replaced, and the anomaly recorded.
fn block_headers(
    buf: &[u8],
    len: usize,
    headers: &[httparse::Header<'_>],
    anomalies: &mut Vec<Anomaly>,
) -> Headers {
    // One allocation of the right size (collecting into `Option<Vec>` would grow it).
    let mut spans = Vec::with_capacity(headers.len());
    let all_spans = headers.iter().all(|h| {
        FieldSpan::new(range_in(buf, h.name.as_bytes()), range_in(buf, h.value))
            .map(|s| spans.push(s))
            .is_some()
    });
    let block = || Bytes::copy_from_slice(&buf[..len.min(buf.len())]);
    match all_spans.then(|| Headers::in_block(block(), spans)) {
        Some(Ok(h)) => h,
        // Not UTF-8 (or, never with httparse, not inside the block): owned, replaced.
        _ => Headers::from(own_headers(headers, anomalies)),
    }
}

/// Where `part` (a sub-slice of `buf`, as `httparse` returns) lies in `buf`. A slice that is
/// not inside `buf` gives a range that [`Headers::in_block`] refuses.
fn range_in(buf: &[u8], part: &[u8]) -> Range<usize> {
    let start = (part.as_ptr() as usize).wrapping_sub(buf.as_ptr() as usize);
    start..start.saturating_add(part.len())
}

fn own_headers(headers: &[httparse::Header<'_>], anomalies: &mut Vec<Anomaly>) -> Vec<Header> {
    headers
        .iter()
        .map(|h| {
            let value = match std::str::from_utf8(h.value) {
                Ok(v) => v.to_owned(),
                Err(_) => {
                    if !anomalies.contains(&Anomaly::NonUtf8Header) {
                        anomalies.push(Anomaly::NonUtf8Header);
                    }
                    String::from_utf8_lossy(h.value).into_owned()
                }
            };
            Header {
                name: h.name.to_owned(),
                value,
            }
        })
        .collect()
}

enum ChunkLine {
    Partial,
    Invalid,
    /// Line length including CRLF, and the chunk size.
    Size(usize, u64),
}

/// `chunk-size [ chunk-ext ] CRLF` (RFC 9112 §7.1, §7.1.1).
fn parse_chunk_size(buf: &[u8]) -> ChunkLine {
    let Some(eol) = find_crlf(buf) else {
        return ChunkLine::Partial;
    };
    let line = &buf[..eol];
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 16 {
        return ChunkLine::Invalid;
    }
    let rest = &line[digits..];
    // Extensions start with optional whitespace and ';' (BWS ";" ext-name ...).
    let rest_ok = rest.iter().all(|b| *b == b' ' || *b == b'\t') || {
        let t = rest.iter().position(|b| *b != b' ' && *b != b'\t');
        matches!(t, Some(i) if rest[i] == b';')
    };
    if !rest_ok {
        return ChunkLine::Invalid;
    }
    let mut size: u64 = 0;
    for b in &line[..digits] {
        let d = (*b as char).to_digit(16).unwrap_or(0) as u64;
        size = match size.checked_mul(16).and_then(|s| s.checked_add(d)) {
            Some(s) => s,
            None => return ChunkLine::Invalid,
        };
    }
    ChunkLine::Size(eol + 2, size)
}

/// Whether `buf` holds an empty line: LF, optionally CR, LF (RFC 9112 §2.1, §2.2).
fn has_empty_line(buf: &[u8]) -> bool {
    buf.iter().enumerate().any(|(i, b)| {
        *b == b'\n'
            && match buf.get(i + 1) {
                Some(b'\n') => true,
                Some(b'\r') => buf.get(i + 2) == Some(&b'\n'),
                _ => false,
            }
    })
}

fn find_crlf(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\r\n")
}

/// Offset of the first plausible start line of a `kind` message in `buf`: a line beginning with
/// `HTTP/1.` followed by a status code for responses, or `TOKEN SP target SP HTTP/1.` for
/// requests (RFC 9112 §3, §4).
pub fn find_message_start(buf: &[u8], kind: Kind) -> Option<usize> {
    let mut start = 0;
    while start < buf.len() {
        let line_end = buf[start..]
            .iter()
            .position(|b| *b == b'\n')
            .map(|i| start + i);
        let line = &buf[start..line_end.unwrap_or(buf.len())];
        let complete = line_end.is_some();
        if looks_like_start(line, kind, complete) {
            return Some(start);
        }
        match line_end {
            Some(e) => start = e + 1,
            None => return None,
        }
    }
    None
}

fn looks_like_start(line: &[u8], kind: Kind, complete: bool) -> bool {
    match kind {
        Kind::Response => {
            line.len() >= 12
                && line.starts_with(b"HTTP/1.")
                && line[8] == b' '
                && line[9..12].iter().all(u8::is_ascii_digit)
        }
        Kind::Request => {
            if !complete {
                return false;
            }
            let method_len = line.iter().take_while(|b| is_tchar(**b)).count();
            if method_len == 0 || method_len > 32 || line.get(method_len) != Some(&b' ') {
                return false;
            }
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            line.len() > method_len + 10
                && line[line.len() - 8..].starts_with(b"HTTP/1.")
                && line[line.len() - 9] == b' '
        }
    }
}

/// `tchar` from RFC 9110 §5.6.2.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_header_bytes: 8192,
        max_headers: 64,
    };

    /// Drives a parser over `input` fed in pieces of `piece` bytes; returns a trace.
    fn run(kind: Kind, input: &[u8], piece: usize, method: Option<&str>) -> Vec<String> {
        let mut p = MessageParser::new(kind, LIMITS);
        let mut out = Vec::new();
        let mut body = Vec::new();
        for part in input.chunks(piece.max(1)) {
            p.push(part);
            loop {
                match p.step() {
                    Step::NeedMore => break,
                    Step::Head(h) => {
                        let mut an = Vec::new();
                        let f = match kind {
                            Kind::Request => Framing::for_request(&h, &mut an),
                            Kind::Response => Framing::for_response(&h, method, &mut an),
                        };
                        out.push(format!(
                            "head {} {} {} {:?} {:?}",
                            h.method, h.target, h.status, f, an
                        ));
                        p.start_body(f);
                        if f == Framing::None {
                            out.push("end ".into());
                        }
                    }
                    Step::Body(b) => body.extend_from_slice(b),
                    Step::End => out.push(format!(
                        "end {}",
                        String::from_utf8_lossy(&std::mem::take(&mut body))
                    )),
                    Step::Invalid(a) => out.push(format!("invalid {a:?}")),
                }
            }
        }
        out
    }

    #[test]
    fn content_length_body_any_segmentation() {
        let msg = b"POST /a?x=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhelloGET /b HTTP/1.1\r\n\r\n";
        let want = run(Kind::Request, msg, msg.len(), None);
        assert_eq!(
            want,
            vec![
                "head POST /a?x=1 0 Length(5) []",
                "end hello",
                "head GET /b 0 None []",
                "end ",
            ]
        );
        for piece in 1..msg.len() {
            assert_eq!(run(Kind::Request, msg, piece, None), want, "piece {piece}");
        }
    }

    #[test]
    fn chunked_with_extensions_and_trailers() {
        let msg = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n";
        let want = vec![
            "head   200 Chunked []".to_string(),
            "end hello world".to_string(),
        ];
        for piece in 1..=msg.len() {
            assert_eq!(
                run(Kind::Response, msg, piece, Some("GET")),
                want,
                "piece {piece}"
            );
        }
    }

    #[test]
    fn responses_without_body() {
        for (status, method) in [(204, "GET"), (304, "GET"), (200, "HEAD"), (100, "POST")] {
            let msg = format!("HTTP/1.1 {status} X\r\nContent-Length: 10\r\n\r\n");
            let t = run(Kind::Response, msg.as_bytes(), 7, Some(method));
            assert_eq!(t.len(), 2, "{t:?}");
            assert!(t[0].contains("None"), "{t:?}");
        }
    }

    #[test]
    fn response_until_close_and_upgrade() {
        let t = run(
            Kind::Response,
            b"HTTP/1.0 200 OK\r\n\r\nabc",
            4,
            Some("GET"),
        );
        assert_eq!(t, vec!["head   200 UntilClose []"]);
        let t = run(
            Kind::Response,
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x05hello",
            5,
            Some("GET"),
        );
        assert_eq!(t, vec!["head   101 Upgrade []"]);
    }

    #[test]
    fn smuggling_shapes_are_flagged() {
        let t = run(
            Kind::Request,
            b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            100,
            None,
        );
        assert_eq!(t[0], "head POST / 0 Chunked [ContentLengthWithChunked]");
        let t = run(
            Kind::Request,
            b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
            100,
            None,
        );
        assert_eq!(t[0], "head POST / 0 None [InvalidContentLength]");
        let t = run(
            Kind::Request,
            b"POST / HTTP/1.1\r\nContent-Length: 3, 3\r\n\r\nabc",
            100,
            None,
        );
        assert_eq!(t, vec!["head POST / 0 Length(3) []", "end abc"]);
    }

    #[test]
    fn garbage_then_valid_request_resynchronises() {
        let t = run(
            Kind::Request,
            b"\x16\x03\x01garbage\r\nGET /ok HTTP/1.1\r\n\r\n",
            3,
            None,
        );
        assert_eq!(
            t.first().map(String::as_str),
            Some("invalid MalformedRequest")
        );
        assert_eq!(t.last().map(String::as_str), Some("end "));
        assert!(t.iter().any(|l| l.starts_with("head GET /ok")), "{t:?}");
    }

    #[test]
    fn bad_chunk_is_invalid_not_a_hang() {
        let t = run(
            Kind::Response,
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            100,
            Some("GET"),
        );
        assert_eq!(t[1], "invalid InvalidChunk");
    }

    #[test]
    fn position_tracks_stream_offsets_across_gaps() {
        let mut p = MessageParser::new(Kind::Request, LIMITS);
        p.push(b"GET /a HTTP/1.1\r\n\r\nGET /b");
        assert!(matches!(p.step(), Step::Head(_)));
        p.start_body(Framing::None);
        assert_eq!(p.position(), 19);
        p.gap(100);
        assert_eq!(p.position(), 125);
    }

    #[test]
    fn oversized_header_block_is_bounded() {
        let mut p = MessageParser::new(Kind::Request, LIMITS);
        p.push(b"GET / HTTP/1.1\r\n");
        let filler = vec![b'a'; 1000];
        let mut saw_invalid = false;
        for _ in 0..20 {
            p.push(b"X-Pad: ");
            p.push(&filler);
            p.push(b"\r\n");
            if let Step::Invalid(Anomaly::HeadersTooLarge) = p.step() {
                saw_invalid = true;
            }
            assert!(p.buffered() <= LIMITS.max_header_bytes + 1100);
        }
        assert!(saw_invalid);
    }

    #[test]
    fn finds_message_starts() {
        assert_eq!(
            find_message_start(b"xx\r\nGET / HTTP/1.1\r\n", Kind::Request),
            Some(4)
        );
        assert_eq!(
            find_message_start(b"body\nHTTP/1.1 200 OK\r\n", Kind::Response),
            Some(5)
        );
        assert_eq!(find_message_start(b"GET / HTTP/1.1", Kind::Request), None);
        assert_eq!(find_message_start(b"{\"a\":1}\n", Kind::Request), None);
    }

    /// A header block that arrives one byte per segment is parsed a logarithmic number of
    /// times, not once per byte (issue 22: 1-byte segments made parsing quadratic), and gives
    /// the same result as the block in one piece; a malformed field is still found before the
    /// block ends.
    #[test]
    fn one_byte_segments_parse_the_head_a_few_times() {
        let mut head = String::from("GET /a HTTP/1.1\r\nHost: h\r\n");
        for i in 0..60 {
            head.push_str(&format!("X-Field-{i}: {}\r\n", "v".repeat(100)));
        }
        head.push_str("\r\n");
        let whole = run(Kind::Request, head.as_bytes(), head.len(), None);
        assert_eq!(run(Kind::Request, head.as_bytes(), 1, None), whole);
        assert_eq!(whole.len(), 2, "{whole:?}");

        let mut p = MessageParser::new(Kind::Request, LIMITS);
        let mut heads = 0;
        for b in head.as_bytes() {
            p.push(std::slice::from_ref(b));
            while let Step::Head(h) = p.step() {
                heads += 1;
                p.start_body(Framing::for_request(&h, &mut Vec::new()));
            }
        }
        assert_eq!(heads, 1);
        // 6.6 KB in 1-byte pieces: 2^13 > 6.6k, so at most 13 doublings and the final parse.
        assert!(p.head_parses() <= 16, "{} parses", p.head_parses());

        // Garbage in the middle of a long block is still reported, at the latest when the
        // buffer doubles, and the parser resynchronises on the next request.
        let bad = format!(
            "GET /a HTTP/1.1\r\nHost: h\r\nBad Field: x\r\n{}\r\nGET /b HTTP/1.1\r\n\r\n",
            "X-Pad: y\r\n".repeat(300)
        );
        let trace = run(Kind::Request, bad.as_bytes(), 1, None);
        assert_eq!(trace[0], "invalid MalformedRequest", "{trace:?}");
        assert!(trace.last().unwrap().starts_with("end"), "{trace:?}");
        assert!(
            trace.iter().any(|t| t.starts_with("head GET /b")),
            "{trace:?}"
        );
    }

    /// A trailer field arriving one byte at a time is searched once, and the message still ends.
    #[test]
    fn one_byte_trailers_end_the_message() {
        let msg = format!(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-T: {}\r\n\r\n",
            "t".repeat(4000)
        );
        let trace = run(Kind::Response, msg.as_bytes(), 1, Some("GET"));
        assert_eq!(
            trace,
            run(Kind::Response, msg.as_bytes(), msg.len(), Some("GET"))
        );
        assert_eq!(
            trace.last().map(String::as_str),
            Some("end abc"),
            "{trace:?}"
        );
    }
}
