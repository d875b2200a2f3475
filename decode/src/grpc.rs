//! gRPC over HTTP/2 ([PROTOCOL-HTTP2]) and gRPC-Web ([PROTOCOL-WEB]) on top of [`crate::h2`]:
//! service and method from `:path`, status from `grpc-status`/`grpc-message` (trailers, or a
//! trailers-only response), and the length-prefixed message framing counted incrementally as
//! DATA arrives, so message counts stay exact when the captured body is truncated (R-CAP-3,
//! R-INV-2). Message payloads in a captured body are listed by [`messages`] for
//! [`crate::protobuf`]. gRPC-Web text (`application/grpc-web-text`) is the same framing in
//! base64, decoded incrementally in 4-character quanta (each chunk may be padded) with a
//! fixed-size buffer.
//!
//! [PROTOCOL-HTTP2]: https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md
//! [PROTOCOL-WEB]: https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-WEB.md

use crate::h2::hpack::Field;

/// gRPC-Web trailer bytes kept at most.
pub const MAX_WEB_TRAILER_BYTES: usize = 4096;

/// Counts length-prefixed messages (`Compressed-Flag` 1 byte, `Message-Length` 4 bytes big
/// endian, then the message) across DATA frames of one direction of one stream.
#[derive(Debug, Clone, Default)]
pub struct MessageFramer {
    hdr: [u8; 5],
    have: usize,
    left: u64,
    in_message: bool,
    in_trailer: bool,
    web: bool,
    /// Messages seen whole.
    pub messages: u32,
    /// Of those, with the compressed flag set.
    pub compressed: u32,
    /// Message payload bytes (lengths declared by the prefixes).
    pub message_bytes: u64,
    /// A prefix had a flag byte other than 0 or 1 (or 0x80/0x81 for gRPC-Web): counting
    /// stopped there.
    pub invalid: bool,
    /// gRPC-Web trailers frame (flag 0x80) content, capped at [`MAX_WEB_TRAILER_BYTES`].
    pub web_trailer: Option<Vec<u8>>,
    /// gRPC-Web text: the DATA is base64 of the framing (PROTOCOL-WEB "Text-encoded
    /// (response) streams"); `None` for binary.
    text: Option<Base64Quantum>,
}

/// Base64 characters (RFC 4648 §4) of an unfinished 4-character quantum.
#[derive(Debug, Clone, Copy, Default)]
struct Base64Quantum {
    chars: [u8; 4],
    have: usize,
}

/// RFC 4648 §4 alphabet value of `c`, `None` for `=` and anything else.
fn base64_value(c: u8) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

/// Decodes one quantum (RFC 4648 §4: `xxxx` is 3 bytes, `xxx=` 2, `xx==` 1; a pad may end
/// any quantum since each gRPC-Web text chunk is padded on its own); `None` when invalid.
fn decode_quantum(q: [u8; 4], out: &mut [u8; 3]) -> Option<usize> {
    let pads = q.iter().rev().take_while(|&&c| c == b'=').count();
    if pads > 2 {
        return None;
    }
    let mut v = [0u8; 4];
    for (i, &c) in q[..4 - pads].iter().enumerate() {
        v[i] = base64_value(c)?;
    }
    let n = (u32::from(v[0]) << 18)
        | (u32::from(v[1]) << 12)
        | (u32::from(v[2]) << 6)
        | u32::from(v[3]);
    *out = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
    Some(3 - pads)
}

/// A gRPC-Web text body decoded by [`decode_web_text`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebText {
    /// The message framing (binary), at most the cap.
    pub bytes: Vec<u8>,
    /// Base64 characters not decoded because a quantum was invalid (RFC 4648 §4) at that
    /// point: everything from it on.
    pub invalid_chars: u64,
    /// Decoding stopped at the cap.
    pub capped: bool,
}

/// Decodes a captured gRPC-Web text body (base64 of the framing, PROTOCOL-WEB; each chunk
/// the server flushed is padded on its own, so a pad may end any quantum) into at most `cap`
/// bytes. A last unfinished quantum (the capture was cut) is left out, not invalid; an
/// invalid quantum stops decoding, the rest is counted in [`WebText::invalid_chars`].
pub fn decode_web_text(text: &[u8], cap: usize) -> WebText {
    let mut out = WebText {
        bytes: Vec::with_capacity((text.len() / 4 * 3).min(cap)),
        ..WebText::default()
    };
    for (i, q) in text.chunks_exact(4).enumerate() {
        let mut b = [0u8; 3];
        let Some(n) = decode_quantum([q[0], q[1], q[2], q[3]], &mut b) else {
            out.invalid_chars = (text.len() - i * 4) as u64;
            break;
        };
        if out.bytes.len() + n > cap {
            out.capped = true;
            break;
        }
        out.bytes.extend_from_slice(&b[..n]);
    }
    out
}

impl MessageFramer {
    /// A framer; `web` accepts the gRPC-Web trailers frame (flag bit 0x80).
    pub fn new(web: bool) -> Self {
        MessageFramer {
            web,
            ..MessageFramer::default()
        }
    }

    /// Switches to gRPC-Web text (`application/grpc-web-text`): DATA is base64 from here.
    pub fn set_text(&mut self) {
        self.text.get_or_insert_with(Base64Quantum::default);
    }

    /// Text (`true`) or binary from here (a response's own content type, before its DATA).
    pub fn set_text_mode(&mut self, text: bool) {
        if text {
            self.set_text();
        } else {
            self.text = None;
        }
    }

    /// Ended inside a message, a prefix or a base64 quantum.
    pub fn partial(&self) -> bool {
        self.have > 0 || self.in_message || self.text.is_some_and(|t| t.have > 0)
    }

    /// Feeds DATA content (base64 text in text mode).
    pub fn feed(&mut self, data: &[u8]) {
        let Some(mut q) = self.text else {
            return self.feed_binary(data);
        };
        // Decoded bytes go to the binary framer through a fixed buffer: nothing of the body is
        // held here (R-CAP-7: bounded).
        let mut buf = [0u8; 768];
        let mut len = 0;
        for &c in data {
            if self.invalid {
                break;
            }
            q.chars[q.have] = c;
            q.have += 1;
            if q.have < 4 {
                continue;
            }
            q.have = 0;
            let mut out = [0u8; 3];
            let Some(n) = decode_quantum(q.chars, &mut out) else {
                self.invalid = true;
                break;
            };
            buf[len..len + n].copy_from_slice(&out[..n]);
            len += n;
            if len + 3 > buf.len() {
                self.feed_binary(&buf[..len]);
                len = 0;
            }
        }
        self.feed_binary(&buf[..len]);
        self.text = Some(q);
    }

    fn feed_binary(&mut self, mut data: &[u8]) {
        while !data.is_empty() && !self.invalid {
            if self.in_message {
                let n = data
                    .len()
                    .min(usize::try_from(self.left).unwrap_or(usize::MAX));
                if self.in_trailer
                    && let Some(t) = self.web_trailer.as_mut()
                {
                    let room = MAX_WEB_TRAILER_BYTES.saturating_sub(t.len());
                    t.extend_from_slice(&data[..n.min(room)]);
                }
                data = &data[n..];
                self.left -= n as u64;
                if self.left == 0 {
                    self.finish_message();
                }
                continue;
            }
            let n = data.len().min(5 - self.have);
            self.hdr[self.have..self.have + n].copy_from_slice(&data[..n]);
            self.have += n;
            data = &data[n..];
            if self.have < 5 {
                return;
            }
            self.have = 0;
            let flag = self.hdr[0];
            let trailer = self.web && flag & 0x80 != 0;
            if flag & !(0x01 | if self.web { 0x80 } else { 0 }) != 0 {
                self.invalid = true;
                return;
            }
            self.left = u64::from(u32::from_be_bytes([
                self.hdr[1],
                self.hdr[2],
                self.hdr[3],
                self.hdr[4],
            ]));
            self.in_trailer = trailer;
            if trailer {
                self.web_trailer = Some(Vec::new());
            } else {
                self.message_bytes += self.left;
                if flag & 1 != 0 {
                    self.compressed += 1;
                }
            }
            self.in_message = true;
            if self.left == 0 {
                self.finish_message();
            }
        }
    }

    fn finish_message(&mut self) {
        self.in_message = false;
        if !self.in_trailer {
            self.messages += 1;
        }
        self.in_trailer = false;
    }
}

/// One message of a captured body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message<'a> {
    /// Compressed flag set (the payload is in the `grpc-encoding` coding).
    pub compressed: bool,
    /// A gRPC-Web trailers frame rather than a message.
    pub trailer: bool,
    /// The payload (or its captured prefix).
    pub data: &'a [u8],
    /// The whole payload is in `data` (false when the capture was truncated).
    pub complete: bool,
}

/// The messages of a captured body, in order; stops at the first invalid prefix.
pub fn messages(body: &[u8]) -> impl Iterator<Item = Message<'_>> {
    let mut rest = body;
    std::iter::from_fn(move || {
        if rest.len() < 5 || rest[0] & !0x81 != 0 {
            return None;
        }
        let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
        let avail = rest.len() - 5;
        let take = len.min(avail);
        let m = Message {
            compressed: rest[0] & 1 != 0,
            trailer: rest[0] & 0x80 != 0,
            data: &rest[5..5 + take],
            complete: take == len,
        };
        rest = &rest[5 + take..];
        Some(m)
    })
}

/// A message's payload without its `grpc-encoding` (gzip, deflate; PROTOCOL-HTTP2
/// "Message-Encoding") when its compressed flag is set, at most `cap` bytes
/// ([`crate::content::decode`]'s bomb cap applies).
pub fn payload<'a>(
    message: &Message<'a>,
    encoding: Option<&str>,
    cap: usize,
) -> Result<std::borrow::Cow<'a, [u8]>, crate::content::DecodeError> {
    if !message.compressed {
        return Ok(std::borrow::Cow::Borrowed(message.data));
    }
    let coding = encoding.unwrap_or("identity");
    let d = crate::content::decode(coding, message.data, cap, message.complete)?;
    Ok(std::borrow::Cow::Owned(d.data))
}

/// `/{service}/{method}` (PROTOCOL-HTTP2 "Path"), both non-empty.
pub fn parse_path(path: &[u8]) -> Option<(&str, &str)> {
    let p = std::str::from_utf8(path).ok()?.strip_prefix('/')?;
    let (service, method) = p.split_once('/')?;
    (!service.is_empty() && !method.is_empty() && !method.contains('/'))
        .then_some((service, method))
}

/// `application/grpc`, `application/grpc+proto`, `application/grpc-web+json`, …: is it gRPC,
/// and is it gRPC-Web.
pub fn content_type(ct: &[u8]) -> Option<bool> {
    let ct = ct.get(..ct.iter().position(|&b| b == b';').unwrap_or(ct.len()))?;
    let ct = ct.trim_ascii();
    let lower = ct.to_ascii_lowercase();
    let rest = lower.strip_prefix(b"application/grpc")?;
    if rest.is_empty() || rest.starts_with(b"+") {
        return Some(false);
    }
    let web = rest.strip_prefix(b"-web")?;
    (web.is_empty() || web.starts_with(b"+") || web.starts_with(b"-text")).then_some(true)
}

/// `application/grpc-web-text` (optionally `+proto`, parameters): the body is base64
/// (PROTOCOL-WEB).
pub fn is_web_text(ct: &[u8]) -> bool {
    let ct = &ct[..ct.iter().position(|&b| b == b';').unwrap_or(ct.len())];
    let lower = ct.trim_ascii().to_ascii_lowercase();
    lower
        .strip_prefix(b"application/grpc-web-text")
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(b"+"))
}

/// What one RPC did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rpc {
    /// Fully qualified service, e.g. `bank.v1.Accounts`.
    pub service: String,
    /// Method, e.g. `GetAccount`.
    pub method: String,
    /// gRPC-Web rather than native gRPC.
    pub web: bool,
    /// gRPC-Web text (`application/grpc-web-text`, base64) in either direction.
    pub text: bool,
    /// `grpc-status`, when seen.
    pub status: Option<u32>,
    /// `grpc-message`, percent-decoded.
    pub message: Option<String>,
    /// The status came in the response headers (trailers-only response).
    pub trailers_only: bool,
    /// Request messages seen whole.
    pub request_messages: u32,
    /// Response messages seen whole.
    pub response_messages: u32,
    /// Messages with the compressed flag, both directions.
    pub compressed_messages: u32,
    /// `grpc-encoding` of the request, when sent.
    pub encoding: Option<String>,
    /// A message prefix was invalid or a message was cut short.
    pub framing_error: bool,
}

fn find<'a>(fields: &'a [Field], name: &str) -> Option<&'a [u8]> {
    fields
        .iter()
        .find(|f| f.name.as_deref() == Some(name.as_bytes()))
        .and_then(|f| f.value.as_deref())
}

/// `grpc-status` and percent-decoded `grpc-message` as `field` finds them.
fn status_of<'b>(field: impl Fn(&str) -> Option<&'b [u8]>) -> (Option<u32>, Option<String>) {
    let status = field("grpc-status")
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.trim().parse().ok());
    (status, field("grpc-message").map(percent_decode))
}

/// Builds the RPC summary from the stream's parts and the two framers (HTTP/2 fields).
pub fn rpc(
    path: &[u8],
    request_headers: &[Field],
    response_headers: &[Field],
    response_trailers: &[Field],
    request: &MessageFramer,
    response: &MessageFramer,
) -> Rpc {
    rpc_of(
        path,
        |n| find(request_headers, n),
        |n| find(response_headers, n),
        |n| find(response_trailers, n),
        request,
        response,
    )
}

/// Builds the RPC summary with header lookups by lowercase name (`request`, the response's
/// `headers` and `trailers`), for HTTP/2 fields and HTTP/1.1 heads alike. The status comes
/// from the trailers, else the headers (trailers-only), else the gRPC-Web trailers frame.
pub fn rpc_of<'a>(
    path: &[u8],
    request_header: impl Fn(&str) -> Option<&'a [u8]>,
    response_header: impl Fn(&str) -> Option<&'a [u8]>,
    response_trailer: impl Fn(&str) -> Option<&'a [u8]>,
    request: &MessageFramer,
    response: &MessageFramer,
) -> Rpc {
    let (service, method) = parse_path(path).unwrap_or(("", ""));
    let ((status, message), trailers_only) = if response_trailer("grpc-status").is_some() {
        (status_of(&response_trailer), false)
    } else if response_header("grpc-status").is_some() {
        (status_of(&response_header), true)
    } else if let Some(t) = &response.web_trailer {
        let fields = web_trailer_fields(t);
        (status_of(|n| find(&fields, n)), false)
    } else {
        ((None, None), false)
    };
    let ct = request_header("content-type");
    let web = ct.and_then(content_type).unwrap_or(request.web);
    Rpc {
        service: service.to_owned(),
        method: method.to_owned(),
        web,
        text: request.text.is_some() || response.text.is_some(),
        status,
        message,
        trailers_only,
        request_messages: request.messages,
        response_messages: response.messages,
        compressed_messages: request.compressed + response.compressed,
        encoding: request_header("grpc-encoding").map(|v| String::from_utf8_lossy(v).into_owned()),
        framing_error: request.invalid
            || response.invalid
            || request.partial()
            || response.partial(),
    }
}

impl Rpc {
    /// The event's `grpc` object.
    pub fn to_event(&self) -> apitap_schema::Grpc {
        apitap_schema::Grpc {
            service: self.service.clone(),
            method: self.method.clone(),
            status: self.status,
            message: self.message.clone(),
            request_messages: self.request_messages,
            response_messages: self.response_messages,
            compressed_messages: self.compressed_messages,
            web: self.web,
            text: self.text,
        }
    }
}

/// gRPC-Web trailers: HTTP/1-style `name: value` lines (PROTOCOL-WEB), names lowercased.
pub fn web_trailer_fields(block: &[u8]) -> Vec<Field> {
    block
        .split(|&b| b == b'\n')
        .filter_map(|line| {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let colon = line.iter().position(|&b| b == b':')?;
            let name = line[..colon].trim_ascii().to_ascii_lowercase();
            let value = line[colon + 1..].trim_ascii().to_vec();
            Some(Field {
                name: Some(name.into()),
                value: Some(value.into()),
                unknown_slot: None,
                never_indexed: false,
            })
        })
        .collect()
}

/// PROTOCOL-HTTP2 "Status-Message": percent-encoded UTF-8.
fn percent_decode(v: &[u8]) -> String {
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        let hexval = |b: u8| (b as char).to_digit(16);
        if v[i] == b'%'
            && i + 2 < v.len()
            && let (Some(h), Some(l)) = (hexval(v[i + 1]), hexval(v[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(v[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lpm(flag: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![flag];
        v.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn framer_counts_across_any_split() {
        let mut wire = lpm(0, b"\x0a\x03abc");
        wire.extend(lpm(1, &[0x1f; 300]));
        wire.extend(lpm(0, b""));
        for piece in [1, 3, 5, 7, wire.len()] {
            let mut f = MessageFramer::new(false);
            for c in wire.chunks(piece) {
                f.feed(c);
            }
            assert_eq!((f.messages, f.compressed, f.message_bytes), (3, 1, 305));
            assert!(!f.partial() && !f.invalid);
        }
        let mut f = MessageFramer::new(false);
        f.feed(&wire[..20]);
        assert!(f.partial());
        let mut f = MessageFramer::new(false);
        f.feed(&lpm(0x80, b"x"));
        assert!(f.invalid, "0x80 is only gRPC-Web");
    }

    #[test]
    fn grpc_web_trailer_frame() {
        let mut body = lpm(0, b"\x08\x01");
        body.extend(lpm(
            0x80,
            b"grpc-status: 7\r\ngrpc-message: permission%20denied\r\n",
        ));
        let mut f = MessageFramer::new(true);
        f.feed(&body);
        assert_eq!(f.messages, 1);
        let req = MessageFramer::new(true);
        let ct = [Field {
            name: Some("content-type".into()),
            value: Some("application/grpc-web+proto".into()),
            unknown_slot: None,
            never_indexed: false,
        }];
        let r = rpc(b"/pkg.S/M", &ct, &[], &[], &req, &f);
        assert_eq!(r.status, Some(7));
        assert_eq!(r.message.as_deref(), Some("permission denied"));
        assert!(r.web && !r.trailers_only);
        let listed: Vec<_> = messages(&body).collect();
        assert_eq!(listed.len(), 2);
        assert!(listed[1].trailer && listed[0].complete);
    }

    /// gRPC-Web text (hand-built from the framing: no offline grpc-web-text peer was
    /// found): base64 chunks, each padded, cut at any point, count like the binary framing.
    #[test]
    fn web_text_chunks_decode_incrementally() {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let m1 = lpm(0, b"\x0a\x07acc-001");
        let m2 = lpm(1, &[0x55; 1000]);
        let t = lpm(
            0x80,
            b"grpc-status: 5\r\ngrpc-message: no%20such%20account\r\n",
        );
        // One base64 chunk per frame, as a server flushing each message would send them.
        let text: Vec<u8> = [&m1, &m2, &t]
            .iter()
            .flat_map(|c| b64.encode(c).into_bytes())
            .collect();
        assert!(
            text.windows(2).any(|w| w[0] == b'=' && w[1] != b'='),
            "padding inside"
        );
        for piece in [1, 2, 3, 5, 767, text.len()] {
            let mut f = MessageFramer::new(true);
            f.set_text();
            for c in text.chunks(piece) {
                f.feed(c);
            }
            assert_eq!(
                (f.messages, f.compressed, f.message_bytes),
                (2, 1, 1009),
                "{piece}"
            );
            assert!(!f.partial() && !f.invalid);
            let req = MessageFramer::new(true);
            let ct = [Field {
                name: Some("content-type".into()),
                value: Some("application/grpc-web-text".into()),
                unknown_slot: None,
                never_indexed: false,
            }];
            let r = rpc(b"/bank.v1.Accounts/GetAccount", &ct, &[], &[], &req, &f);
            assert_eq!(
                (r.status, r.message.as_deref()),
                (Some(5), Some("no such account"))
            );
            assert!(r.web && !r.framing_error);
        }
        let mut f = MessageFramer::new(true);
        f.set_text();
        f.feed(b"AA=A");
        assert!(f.invalid, "a pad then a character");
        let mut f = MessageFramer::new(true);
        f.set_text();
        f.feed(b"AA\r\n");
        assert!(f.invalid, "not base64");
        let mut f = MessageFramer::new(true);
        f.set_text();
        f.feed(&text[..10]);
        assert!(f.partial());
        assert!(is_web_text(b"application/grpc-web-text+proto; charset=x"));
        assert!(!is_web_text(b"application/grpc-web+proto"));
        assert!(!is_web_text(b"application/grpc-web-textual"));
    }

    #[test]
    fn web_text_bodies_decode_whole_with_padding_inside() {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let (m, t) = (lpm(0, b"\x0a\x02ab"), lpm(0x80, b"grpc-status: 0\r\n"));
        let text = format!("{}{}", b64.encode(&m), b64.encode(&t));
        let d = decode_web_text(text.as_bytes(), 1 << 20);
        assert_eq!(d.bytes, [m.clone(), t].concat());
        assert_eq!((d.invalid_chars, d.capped), (0, false));
        // Cut mid-quantum: the whole quanta only, nothing invalid.
        let d = decode_web_text(&text.as_bytes()[..10], 1 << 20);
        assert_eq!((d.bytes.len(), d.invalid_chars), (6, 0));
        // An invalid quantum: the prefix, the rest counted.
        let d = decode_web_text(b"AAAAAAAA*AAAAAAA", 1 << 20);
        assert_eq!((d.bytes, d.invalid_chars), (vec![0; 6], 8));
        let d = decode_web_text(text.as_bytes(), 4);
        assert_eq!((d.bytes.len(), d.capped), (3, true));
    }

    #[test]
    fn compressed_messages_are_inflated() {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(b"\x0a\x08acc-0001").unwrap();
        let body = lpm(1, &e.finish().unwrap());
        let m = messages(&body).next().unwrap();
        assert!(m.compressed && m.complete);
        assert_eq!(
            &*payload(&m, Some("gzip"), 1024).unwrap(),
            b"\x0a\x08acc-0001"
        );
        assert!(
            payload(&m, None, 1024).is_err(),
            "compressed without an encoding"
        );
        let plain = lpm(0, b"\x08\x01");
        let m = messages(&plain).next().unwrap();
        assert_eq!(&*payload(&m, Some("gzip"), 1024).unwrap(), b"\x08\x01");
    }

    #[test]
    fn paths_and_content_types() {
        assert_eq!(
            parse_path(b"/bank.v1.Accounts/GetAccount"),
            Some(("bank.v1.Accounts", "GetAccount"))
        );
        assert_eq!(parse_path(b"/a/b/c"), None);
        assert_eq!(parse_path(b"/a"), None);
        assert_eq!(content_type(b"application/grpc"), Some(false));
        assert_eq!(content_type(b"application/grpc+proto; x=y"), Some(false));
        assert_eq!(content_type(b"application/grpc-web-text"), Some(true));
        assert_eq!(content_type(b"application/grpcfoo"), None);
        assert_eq!(content_type(b"application/json"), None);
        assert_eq!(percent_decode(b"a%2Fb%zz%4"), "a/b%zz%4");
    }
}
