//! A direct JSON reader for the events the sensor writes ([`crate::fastjson`]'s compact
//! output), the analyzer's side of the bus (issue 18: serde_json's derived decode was a third
//! of the analyzer's instructions per event).
//!
//! It reads a *subset* and answers `None` for anything outside it, and [`crate::decode_event`]
//! then parses the document with serde_json as before. Whatever it accepts, it decodes to the
//! very value serde_json's derived `Deserialize` gives; the subset is what makes that easy to
//! be sure of:
//!
//! - the compact form only: no whitespace between tokens (RFC 8259 §2 allows it; the sensor
//!   writes none), nothing after the top-level object;
//! - the fields of the event, its endpoints, sensor, request, response, bodies, headers,
//!   anomalies and gRPC call; a document with any other key (a field of a newer minor
//!   version, `labels`, a workload, a process), a key written with escapes, a key given twice
//!   (serde_json refuses it) or a required field missing is left to serde_json, and so is a
//!   header field written other than `{"name":…,"value":…}`;
//! - values of the fields' own types: `null` (RFC 8259 §3), numbers with a fraction, an
//!   exponent, a sign, a leading zero or out of their type's range (§6), string escapes other
//!   than those of §7, a lone surrogate, or a control character inside a string are left to
//!   serde_json (which either refuses them or reads them its own way).
//!
//! The input is a `&str`: the caller checked that the document is UTF-8 (§8.1), so every
//! string between two ASCII quotes is text. Nothing here panics on any input, and nothing
//! is allocated beyond the decoded values.

use std::borrow::Cow;
use std::net::IpAddr;

use crate::fastjson::escape_mask;
use crate::{
    Anomaly, ApiEvent, Body, BodyEncoding, Endpoint, Grpc, Header, Headers, PayloadMode, Request,
    Response, SensorInfo,
};

/// The event in `text`, or `None` when the document is outside the subset (module docs).
pub(crate) fn event(text: &str) -> Option<ApiEvent> {
    let mut p = Parser {
        s: text,
        b: text.as_bytes(),
        i: 0,
    };
    let e = p.event()?;
    (p.i == p.b.len()).then_some(e)
}

struct Parser<'a> {
    /// The document; `b` is its bytes.
    s: &'a str,
    b: &'a [u8],
    i: usize,
}

/// Stores a field's value, refusing a second one (serde_json: "duplicate field").
fn set<T>(slot: &mut Option<T>, v: T) -> Option<()> {
    if slot.is_some() {
        return None;
    }
    *slot = Some(v);
    Some(())
}

impl<'a> Parser<'a> {
    #[inline]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    #[inline]
    fn eat(&mut self, c: u8) -> Option<()> {
        (self.peek()? == c).then(|| self.i += 1)
    }

    /// `{`, then `f(key)` for each member until `}`; `f` reads the member's value.
    fn object(&mut self, mut f: impl FnMut(&mut Self, &'a str) -> Option<()>) -> Option<()> {
        self.eat(b'{')?;
        if self.eat(b'}').is_some() {
            return Some(());
        }
        loop {
            let k = self.key()?;
            f(self, k)?;
            match self.peek()? {
                b',' => self.i += 1,
                b'}' => {
                    self.i += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// `[`, then `f` for each element until `]`.
    fn array(&mut self, mut f: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        self.eat(b'[')?;
        if self.eat(b']').is_some() {
            return Some(());
        }
        loop {
            f(self)?;
            match self.peek()? {
                b',' => self.i += 1,
                b']' => {
                    self.i += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// A member name up to the next quote, and its `:`. Every reader matches the name against
    /// its own plain ASCII field names and answers `None` for any other: a name with an
    /// escape or a control character (whose text would run to another quote) never equals
    /// one, so it needs no check of its own. Names are short: a byte loop.
    #[inline]
    fn key(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let start = self.i;
        let len = self.b.get(start..)?.iter().position(|&c| c == b'"')?;
        self.i = start + len + 1;
        self.eat(b':')?;
        self.s.get(start..start + len)
    }

    /// `lit` verbatim.
    #[inline]
    fn literal(&mut self, lit: &[u8]) -> Option<()> {
        if self.b.get(self.i..)?.starts_with(lit) {
            self.i += lit.len();
            Some(())
        } else {
            None
        }
    }

    /// The text of a string up to its closing quote (RFC 8259 §7), and whether it stopped
    /// at a backslash (the quote is then not consumed).
    #[inline]
    fn raw_string(&mut self) -> Option<(&'a str, bool)> {
        self.eat(b'"')?;
        let start = self.i;
        let end = self.scan(start)?;
        // `start` and `end` sit next to ASCII bytes (a quote, a backslash): character
        // boundaries, so this is a slice of the document without a second UTF-8 check.
        let s = self.s.get(start..end)?;
        match self.b.get(end)? {
            b'"' => {
                self.i = end + 1;
                Some((s, false))
            }
            b'\\' => {
                self.i = end;
                Some((s, true))
            }
            // A control character inside a string (§7: must be escaped).
            _ => None,
        }
    }

    /// Position of the first `"`, `\` or control character from `i`: eight bytes at a time.
    #[inline]
    fn scan(&self, mut i: usize) -> Option<usize> {
        while let Some(w) = self.b.get(i..i + 8) {
            let mut a = [0u8; 8];
            a.copy_from_slice(w);
            let m = escape_mask(u64::from_le_bytes(a));
            if m != 0 {
                return Some(i + (m.trailing_zeros() / 8) as usize);
            }
            i += 8;
        }
        while let Some(&c) = self.b.get(i) {
            if c == b'"' || c == b'\\' || c < 0x20 {
                return Some(i);
            }
            i += 1;
        }
        None
    }

    /// A string value, unescaped (§7). An escaped one is built as bytes: each run between
    /// two escapes is copied eight bytes at a time as it is scanned ([`Parser::copy_run`]),
    /// each escape appends its character (issue 18: a `push_str` per run was a third of the
    /// decode of the bodies, whose JSON quotes and line ends are all escaped).
    fn string(&mut self) -> Option<Cow<'a, str>> {
        let (s, escaped) = self.raw_string()?;
        if !escaped {
            return Some(Cow::Borrowed(s));
        }
        let mut out: Vec<u8> = Vec::with_capacity(s.len() + 64);
        out.extend_from_slice(s.as_bytes());
        loop {
            // At a backslash.
            self.i += 1;
            let e = self.peek()?;
            self.i += 1;
            match e {
                b'"' | b'\\' | b'/' => out.push(e),
                b'b' => out.push(0x08),
                b'f' => out.push(0x0c),
                b'n' => out.push(b'\n'),
                b'r' => out.push(b'\r'),
                b't' => out.push(b'\t'),
                b'u' => {
                    let hi = self.hex4()?;
                    let c = match hi {
                        0xD800..=0xDBFF => {
                            // A surrogate pair (§7); a lone half is left to serde_json.
                            self.eat(b'\\')?;
                            self.eat(b'u')?;
                            let lo = self.hex4()?;
                            if !(0xDC00..=0xDFFF).contains(&lo) {
                                return None;
                            }
                            0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                        }
                        0xDC00..=0xDFFF => return None,
                        c => c,
                    };
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(char::from_u32(c)?.encode_utf8(&mut buf).as_bytes());
                }
                _ => return None,
            }
            let end = self.copy_run(&mut out)?;
            match self.b.get(end)? {
                b'"' => {
                    self.i = end + 1;
                    break;
                }
                b'\\' => self.i = end,
                _ => return None,
            }
        }
        debug_assert!(std::str::from_utf8(&out).is_ok());
        // SAFETY: `out` is the concatenation of runs of the document (a `&str`) that begin
        // and end next to ASCII bytes (a backslash escape, a quote), hence on character
        // boundaries, each copied whole (`copy_run` truncates the eight bytes it stores to
        // the run), and of the escapes' characters: ASCII bytes and `char::encode_utf8`.
        Some(Cow::Owned(unsafe { String::from_utf8_unchecked(out) }))
    }

    /// Appends to `out` the document's bytes from `self.i` up to the first `"`, `\` or
    /// control character, and answers that position (`None`: the document ends first).
    /// Eight bytes at a time: each word is stored whole (a fixed-size copy, no `memcpy` call)
    /// and `out` then cut back to the bytes before the delimiter.
    #[inline]
    fn copy_run(&self, out: &mut Vec<u8>) -> Option<usize> {
        let mut i = self.i;
        while let Some(w) = self.b.get(i..i + 8) {
            let mut a = [0u8; 8];
            a.copy_from_slice(w);
            let m = escape_mask(u64::from_le_bytes(a));
            let len = out.len();
            out.extend_from_slice(&a);
            if m != 0 {
                let n = (m.trailing_zeros() / 8) as usize;
                out.truncate(len + n);
                return Some(i + n);
            }
            i += 8;
        }
        // The document's last bytes.
        let end = self.scan(i)?;
        out.extend_from_slice(self.b.get(i..end)?);
        Some(end)
    }

    fn hex4(&mut self) -> Option<u32> {
        let h = self.b.get(self.i..self.i + 4)?;
        let mut v = 0u32;
        for &c in h {
            v = v * 16 + char::from(c).to_digit(16)?;
        }
        self.i += 4;
        Some(v)
    }

    fn owned(&mut self) -> Option<String> {
        self.string().map(Cow::into_owned)
    }

    /// A non-negative integer without sign, fraction, exponent or leading zero (§6).
    fn u64(&mut self) -> Option<u64> {
        let start = self.i;
        let mut v: u64 = 0;
        while let Some(c) = self.peek().filter(u8::is_ascii_digit) {
            v = v.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
            self.i += 1;
        }
        let len = self.i - start;
        let leading_zero = len > 1 && self.b.get(start) == Some(&b'0');
        if len == 0 || leading_zero || matches!(self.peek(), Some(b'.' | b'e' | b'E')) {
            return None;
        }
        Some(v)
    }

    fn u32(&mut self) -> Option<u32> {
        u32::try_from(self.u64()?).ok()
    }

    fn u16(&mut self) -> Option<u16> {
        u16::try_from(self.u64()?).ok()
    }

    fn bool(&mut self) -> Option<bool> {
        let rest = self.b.get(self.i..)?;
        if rest.starts_with(b"true") {
            self.i += 4;
            Some(true)
        } else if rest.starts_with(b"false") {
            self.i += 5;
            Some(false)
        } else {
            None
        }
    }

    fn endpoint(&mut self) -> Option<Endpoint> {
        let (mut ip, mut port) = (None, None);
        self.object(|p, k| match k {
            "ip" => set(&mut ip, p.string()?.parse::<IpAddr>().ok()?),
            "port" => set(&mut port, p.u16()?),
            _ => None,
        })?;
        Some(Endpoint {
            ip: ip?,
            port: port?,
        })
    }

    fn sensor(&mut self) -> Option<SensorInfo> {
        let (mut id, mut host, mut node) = (None, None, None);
        self.object(|p, k| match k {
            "id" => set(&mut id, p.owned()?),
            "host" => set(&mut host, p.owned()?),
            "node" => set(&mut node, p.owned()?),
            _ => None,
        })?;
        Some(SensorInfo {
            id: id?,
            host: host?,
            node,
        })
    }

    fn headers(&mut self) -> Option<Headers> {
        let mut v = Vec::with_capacity(8);
        // Each field as the sensor writes it, `{"name":…,"value":…}`; another order or
        // another key is serde_json's.
        self.array(|p| {
            p.literal(br#"{"name":"#)?;
            let name = p.owned()?;
            p.literal(br#","value":"#)?;
            let value = p.owned()?;
            p.eat(b'}')?;
            v.push(Header { name, value });
            Some(())
        })?;
        Some(Headers::from(v))
    }

    fn body(&mut self) -> Option<Body> {
        let (mut length, mut captured, mut truncated, mut encoding, mut data) =
            (None, None, None, None, None);
        let (mut content_encoding, mut decoded_length) = (None, None);
        self.object(|p, k| match k {
            "length_bytes" => set(&mut length, p.u64()?),
            "captured_bytes" => set(&mut captured, p.u64()?),
            "truncated" => set(&mut truncated, p.bool()?),
            "encoding" => set(
                &mut encoding,
                match &*p.string()? {
                    "utf8" => BodyEncoding::Utf8,
                    "base64" => BodyEncoding::Base64,
                    _ => BodyEncoding::Unknown,
                },
            ),
            "data" => set(&mut data, p.owned()?),
            "content_encoding" => set(&mut content_encoding, p.owned()?),
            "decoded_length_bytes" => set(&mut decoded_length, p.u64()?),
            _ => None,
        })?;
        Some(Body {
            length_bytes: length?,
            captured_bytes: captured?,
            truncated: truncated?,
            encoding: encoding?,
            data: data?,
            content_encoding,
            decoded_length_bytes: decoded_length,
        })
    }

    fn request(&mut self) -> Option<Request> {
        let (mut method, mut host, mut path, mut query, mut headers, mut body) =
            (None, None, None, None, None, None);
        self.object(|p, k| match k {
            "method" => set(&mut method, p.owned()?),
            "host" => set(&mut host, p.owned()?),
            "path" => set(&mut path, p.owned()?),
            "query" => set(&mut query, p.owned()?),
            "headers" => set(&mut headers, p.headers()?),
            "body" => set(&mut body, p.body()?),
            _ => None,
        })?;
        Some(Request {
            method: method?,
            host,
            path: path?,
            query,
            headers: headers?,
            body: body?,
        })
    }

    fn response(&mut self) -> Option<Response> {
        let (mut status, mut reason, mut headers, mut body) = (None, None, None, None);
        self.object(|p, k| match k {
            "status" => set(&mut status, p.u16()?),
            "reason" => set(&mut reason, p.owned()?),
            "headers" => set(&mut headers, p.headers()?),
            "body" => set(&mut body, p.body()?),
            _ => None,
        })?;
        Some(Response {
            status: status?,
            reason: reason?,
            headers: headers?,
            body: body?,
        })
    }

    fn anomalies(&mut self) -> Option<Vec<Anomaly>> {
        let mut v = Vec::new();
        self.array(|p| {
            let name = p.string()?;
            // `#[serde(other)]`: a code from a newer minor version reads as `Unknown`.
            let a = Anomaly::ALL
                .iter()
                .copied()
                .find(|a| a.as_str() == name)
                .unwrap_or(Anomaly::Unknown);
            v.push(a);
            Some(())
        })?;
        Some(v)
    }

    fn grpc(&mut self) -> Option<Grpc> {
        let (mut service, mut method, mut status, mut message) = (None, None, None, None);
        let (mut req, mut resp, mut compressed, mut web, mut text) = (None, None, None, None, None);
        self.object(|p, k| match k {
            "service" => set(&mut service, p.owned()?),
            "method" => set(&mut method, p.owned()?),
            "status" => set(&mut status, p.u32()?),
            "message" => set(&mut message, p.owned()?),
            "request_messages" => set(&mut req, p.u32()?),
            "response_messages" => set(&mut resp, p.u32()?),
            "compressed_messages" => set(&mut compressed, p.u32()?),
            "web" => set(&mut web, p.bool()?),
            "text" => set(&mut text, p.bool()?),
            _ => None,
        })?;
        Some(Grpc {
            service: service?,
            method: method?,
            status,
            message,
            request_messages: req?,
            response_messages: resp?,
            compressed_messages: compressed.unwrap_or_default(),
            web: web.unwrap_or_default(),
            text: text.unwrap_or_default(),
        })
    }

    fn event(&mut self) -> Option<ApiEvent> {
        let (mut version, mut id, mut sensor, mut conn, mut index, mut start) =
            (None, None, None, None, None, None);
        let (mut end, mut latency, mut client, mut server, mut tls, mut http) =
            (None, None, None, None, None, None);
        let (mut request, mut response, mut anomalies, mut payload, mut sampled_out) =
            (None, None, None, None, None);
        let (mut tls_library, mut tls_sni, mut stream_id, mut unknown_fields, mut grpc) =
            (None, None, None, None, None);
        self.object(|p, k| match k {
            "schema_version" => set(&mut version, p.owned()?),
            "event_id" => set(&mut id, p.owned()?),
            "sensor" => set(&mut sensor, p.sensor()?),
            "connection_id" => set(&mut conn, p.owned()?),
            "transaction_index" => set(&mut index, p.u64()?),
            "request_start_unix_us" => set(&mut start, p.u64()?),
            "response_end_unix_us" => set(&mut end, p.u64()?),
            "latency_us" => set(&mut latency, p.u64()?),
            "client" => set(&mut client, p.endpoint()?),
            "server" => set(&mut server, p.endpoint()?),
            "tls" => set(&mut tls, p.bool()?),
            "http_version" => set(&mut http, p.owned()?),
            "request" => set(&mut request, p.request()?),
            "response" => set(&mut response, p.response()?),
            "anomalies" => set(&mut anomalies, p.anomalies()?),
            "payload" => set(
                &mut payload,
                match &*p.string()? {
                    "full" => PayloadMode::Full,
                    "sample" => PayloadMode::Sample,
                    "labels" => PayloadMode::Labels,
                    _ => PayloadMode::Unknown,
                },
            ),
            "bodies_sampled_out" => set(&mut sampled_out, p.bool()?),
            "tls_library" => set(&mut tls_library, p.owned()?),
            "tls_sni" => set(&mut tls_sni, p.owned()?),
            "stream_id" => set(&mut stream_id, p.u32()?),
            "unknown_header_fields" => set(&mut unknown_fields, p.u32()?),
            "grpc" => set(&mut grpc, p.grpc()?),
            // `labels`, the workloads, `process`, fields of newer versions: serde_json's.
            _ => None,
        })?;
        Some(ApiEvent {
            schema_version: version?,
            event_id: id?,
            sensor: sensor?,
            connection_id: conn?,
            transaction_index: index?,
            request_start_unix_us: start?,
            response_end_unix_us: end,
            latency_us: latency,
            client: client?,
            server: server?,
            tls: tls?,
            http_version: http?,
            request: request?,
            response,
            anomalies: anomalies.unwrap_or_default(),
            payload: payload.unwrap_or_default(),
            labels: None,
            bodies_sampled_out: sampled_out.unwrap_or_default(),
            server_workload: None,
            client_workload: None,
            tls_library,
            tls_sni,
            process: None,
            stream_id,
            unknown_header_fields: unknown_fields.unwrap_or_default(),
            grpc,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use super::*;
    use crate::test_support::EventBuilder;
    use crate::{Anomaly, Body, Grpc, PayloadMode, encode_event};

    /// What serde_json's derived decode makes of `text` (the reference).
    fn serde(text: &str) -> Option<ApiEvent> {
        serde_json::from_str::<ApiEvent>(text).ok()
    }

    /// The fast reader agrees with serde_json on `text` whenever it answers.
    fn agrees(text: &str) -> bool {
        match event(text) {
            None => true,
            Some(fast) => serde(text).as_ref() == Some(&fast),
        }
    }

    /// The recorded sensor events of the analyzer's fixtures (real sensor output).
    fn recorded() -> Vec<String> {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../analyzer/tests/data");
        let mut files = vec![format!("{dir}/httpbin/events.jsonl.gz")];
        for e in std::fs::read_dir(format!("{dir}/inventory_apps")).unwrap() {
            let p = e.unwrap().path();
            if p.to_string_lossy().ends_with(".jsonl.gz") {
                files.push(p.to_string_lossy().into_owned());
            }
        }
        let mut out = Vec::new();
        for f in files {
            let gz = std::fs::read(&f).unwrap();
            let mut text = String::new();
            flate2::read::GzDecoder::new(&gz[..])
                .read_to_string(&mut text)
                .unwrap();
            out.extend(text.lines().filter(|l| !l.is_empty()).map(str::to_owned));
        }
        assert!(out.len() > 1000, "{} recorded events", out.len());
        out
    }

    /// Events with every field the reader knows (and ones it leaves to serde_json).
    fn built() -> Vec<ApiEvent> {
        let mut grpc = EventBuilder::post("/bank.v1.Accounts/Get")
            .http_version("2")
            .header("content-type", "application/grpc")
            .body_raw(Body::from_bytes(&[0, 0, 0, 0, 2, 8, 1, 0xff], 8))
            .anomalies([Anomaly::StreamReset, Anomaly::HpackUnknownField])
            .payload(PayloadMode::Sample)
            .tls(true)
            .build();
        grpc.stream_id = Some(7);
        grpc.unknown_header_fields = 3;
        grpc.tls_library = Some("openssl".into());
        grpc.tls_sni = Some("api.bank.example".into());
        grpc.bodies_sampled_out = true;
        grpc.sensor.node = Some("node-1".into());
        grpc.grpc = Some(Grpc {
            service: "bank.v1.Accounts".into(),
            method: "Get".into(),
            status: Some(5),
            message: Some("not found: é \u{1F600}".into()),
            request_messages: 1,
            response_messages: 0,
            compressed_messages: 1,
            web: true,
            text: false,
        });
        let mut gz = EventBuilder::get("/r")
            .query("q=\"x\"&t=\t")
            .header("X-Ctl", "a\u{1}b\u{7f}c")
            .response_body("application/json", "{\"a\":\"\\u00e9\\n\"}\r\n\u{8}\u{c}")
            .build();
        if let Some(r) = gz.response.as_mut() {
            r.body.content_encoding = Some("gzip".into());
            r.body.decoded_length_bytes = Some(19);
        }
        vec![
            grpc,
            gz,
            EventBuilder::delete("/u/7").no_response().no_host().build(),
            EventBuilder::get("/ipv6")
                .client("[2001:db8::1]:65535")
                .server("[::1]:0")
                .reason("")
                .build(),
        ]
    }

    #[test]
    fn reads_the_sensors_events_as_serde_json_does() {
        let recorded = recorded();
        for line in &recorded {
            let fast = event(line).expect("a sensor event is in the fast subset");
            assert_eq!(Some(fast), serde(line), "{line}");
        }
        for e in built() {
            let text = String::from_utf8(encode_event(&e)).unwrap();
            assert_eq!(event(&text).as_ref(), Some(&e), "{text}");
            assert_eq!(serde(&text).as_ref(), Some(&e));
        }
    }

    #[test]
    fn leaves_other_documents_to_serde_json() {
        let e = EventBuilder::get("/a").header("H", "v").build();
        let text = String::from_utf8(encode_event(&e)).unwrap();
        assert!(event(&text).is_some());
        let others = [
            // Whitespace, a trailing newline, a newer field, a null, an escaped key.
            text.replacen(",", ", ", 1),
            format!("{text}\n"),
            text.replacen("{", "{\"future\":1,", 1),
            text.replacen("\"tls\":false", "\"tls\":false,\"tls_sni\":null", 1),
            text.replacen("\"tls\"", "\"tl\\u0073\"", 1),
            // A number with a fraction, one out of range, a leading zero, a duplicate key.
            text.replacen("\"port\":8080", "\"port\":8080.0", 1),
            text.replacen("\"port\":8080", "\"port\":80800", 1),
            text.replacen("\"transaction_index\":0", "\"transaction_index\":00", 1),
            text.replacen("\"tls\":false", "\"tls\":false,\"tls\":true", 1),
            // A lone surrogate, an unknown escape, a raw control character.
            text.replacen("\"v\"", "\"\\ud800\"", 1),
            text.replacen("\"v\"", "\"\\x\"", 1),
            text.replacen("\"v\"", "\"\u{1}\"", 1),
            // A missing required field, a key with an escaped quote, a header field in
            // another order.
            text.replacen("\"tls\":false,", "", 1),
            text.replacen("\"tls\"", "\"t\\\"ls\"", 1),
            text.replacen(
                "{\"name\":\"H\",\"value\":\"v\"}",
                "{\"value\":\"v\",\"name\":\"H\"}",
                1,
            ),
        ];
        for o in &others {
            assert_eq!(event(o), None, "{o}");
        }
        assert!(serde(&others[others.len() - 1]).is_some());
        // Escapes it does read, as serde_json does.
        let escaped = text.replacen("\"v\"", r#""\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00""#, 1);
        let fast = event(&escaped).unwrap();
        assert_eq!(
            fast.request.headers.get("h"),
            Some("\"\\/\u{8}\u{c}\n\r\té😀")
        );
        assert_eq!(Some(fast), serde(&escaped));
    }

    /// Escaped values whose runs between escapes have every length around the eight-byte
    /// words `copy_run` stores, with multi-byte characters across the words' edges and a
    /// control character at every place after an escape: read as serde_json reads them, or
    /// refused.
    #[test]
    fn escaped_runs_of_every_length_decode_as_serde_json_does() {
        let e = EventBuilder::get("/a").header("H", "v").build();
        let text = String::from_utf8(encode_event(&e)).unwrap();
        let mut read = 0;
        for len in 0..20 {
            for (fill, escape) in [
                ("a", r"\n"),
                ("é", r#"\""#),
                ("😀", r"\u00e9"),
                ("ab", r"\/"),
            ] {
                let run: String = fill.repeat(len);
                let value = format!("{run}{escape}{run}{escape}{run}");
                let doc = text.replacen("\"v\"", &format!("\"{value}\""), 1);
                let fast = event(&doc).unwrap();
                assert_eq!(Some(&fast), serde(&doc).as_ref(), "{doc}");
                read += 1;
                for cut in 0..=run.len() {
                    let Some((a, b)) = run.split_at_checked(cut) else {
                        continue;
                    };
                    let bad = format!("{escape}{a}\u{1f}{b}");
                    let doc = text.replacen("\"v\"", &format!("\"{bad}\""), 1);
                    assert_eq!(event(&doc), None, "{doc}");
                }
            }
        }
        assert_eq!(read, 80);
    }

    /// Every truncation and many one-byte changes of real events: whatever the fast reader
    /// accepts, serde_json reads to the same value.
    #[test]
    fn mutated_events_decode_alike_or_fall_back() {
        let recorded = recorded();
        let mut docs: Vec<String> = recorded.iter().step_by(97).take(6).cloned().collect();
        docs.extend(
            built()
                .iter()
                .map(|e| String::from_utf8(encode_event(e)).unwrap()),
        );
        let mut accepted = 0;
        for d in &docs {
            for cut in 0..d.len() {
                if let Some(t) = d.get(..cut) {
                    assert_eq!(event(t), None, "a truncated event is never read");
                }
            }
            let b = d.as_bytes();
            for i in 0..b.len() {
                for &c in b"\"\\0-1.e,:}]{[ nt9" {
                    let mut m = b.to_vec();
                    m[i] = c;
                    let Ok(t) = std::str::from_utf8(&m) else {
                        continue;
                    };
                    assert!(agrees(t), "{t}");
                    accepted += usize::from(event(t).is_some());
                }
            }
        }
        assert!(accepted > 1000, "{accepted} mutated documents read");
    }
}
