//! A direct JSON writer for [`ApiEvent`]: the sensor encodes one event per transaction, and
//! serde_json's byte-at-a-time string escaping was two thirds of the decode pipeline's cost.
//! Output is byte-for-byte what `serde_json::to_vec` produces for the same event (field order,
//! skipped optional fields, RFC 8259 §7 escaping with serde_json's choices: `\b \f \n \r \t`,
//! other controls as lowercase `\u00xx`, DEL and non-ASCII verbatim); a test enforces it.

use std::io::Write as _;
use std::net::IpAddr;

use crate::{
    ApiEvent, Body, BodyShape, Endpoint, Headers, LabelFinding, LabelSummary, Request, Response,
    ScanCounters, Workload,
};

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// Bit 7 of each byte of `w` that is `"`, `\` or below 0x20 — exact for the lowest flagged
/// byte (a borrow only propagates upwards, past a byte that already matched), which is the
/// only one [`string`] reads.
#[inline(always)]
pub(crate) fn escape_mask(w: u64) -> u64 {
    let zero = |v: u64| v.wrapping_sub(LO) & !v & HI;
    let quote = zero(w ^ (LO * u64::from(b'"')));
    let bslash = zero(w ^ (LO * u64::from(b'\\')));
    let ctrl = w.wrapping_sub(LO * 0x20) & !w & HI;
    quote | bslash | ctrl
}

/// For each byte JSON requires escaping (RFC 8259 §7: `"`, `\\` and controls below 0x20):
/// the character after the backslash of its two-character escape, or [`UNICODE`] for the
/// controls written as `\u00xx`; 0 for the bytes that stand for themselves.
static SECOND: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = UNICODE;
        i += 1;
    }
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t[b'\n' as usize] = b'n';
    t[b'\r' as usize] = b'r';
    t[b'\t' as usize] = b't';
    t[0x08] = b'b';
    t[0x0c] = b'f';
    t
};

/// Marks the controls of [`SECOND`] that have no two-character escape.
const UNICODE: u8 = 1;

/// Writes the escape sequence of `b` (a byte [`SECOND`] marks) at `dst`; returns its length.
/// A table lookup, not a `match`: the jump table it compiled to mispredicted on every quote.
///
/// # Safety
/// `dst` must be valid for writing 6 bytes.
#[inline(always)]
unsafe fn put_escaped(dst: *mut u8, b: u8) -> usize {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let second = SECOND[usize::from(b)];
    // SAFETY: the caller guarantees 6 writable bytes.
    unsafe {
        dst.write(b'\\');
        if second != UNICODE {
            dst.add(1).write(second);
            return 2;
        }
        let rest = [
            b'u',
            b'0',
            b'0',
            HEX[usize::from(b >> 4)],
            HEX[usize::from(b & 0xf)],
        ];
        std::ptr::copy_nonoverlapping(rest.as_ptr(), dst.add(1), 5);
    }
    6
}

/// Writes `s` as a JSON string. Space for the worst case is reserved once; the input is
/// copied a word at a time and each word is stored whole before looking at it, then the
/// output resumes right after the first byte that needs escaping. JSON bodies inside a JSON
/// string have a quote every few bytes, so the cost is per escape, not per byte.
pub(crate) fn string(out: &mut Vec<u8>, s: &str) {
    let src = s.as_bytes();
    // Worst case: every byte becomes `\u00xx`, plus the quotes, plus one word of slack for
    // the whole-word store.
    out.reserve(src.len() * 6 + 2 + 8);
    let start = out.len();
    let len = src.len();
    // SAFETY: `dst` has `len * 6 + 10` writable bytes. Every input byte consumed adds at most
    // 6 output bytes, so before consuming byte `i` the output position is `n <= 1 + 6 * i`;
    // the word store at `n` ends at `n + 8 <= 6 * len + 9`, the escape at `n + 6`, the closing
    // quote at `6 * len + 2`. Reads stay in `src` (`i + 8 <= len` for words, `i < len` else).
    // Bytes are written before `set_len` covers them, and only up to the final `n`.
    unsafe {
        let dst = out.as_mut_ptr().add(start);
        let p = src.as_ptr();
        dst.write(b'"');
        let mut n = 1;
        let mut i = 0;
        while i + 8 <= len {
            let w = p.add(i).cast::<u64>().read_unaligned();
            dst.add(n).cast::<u64>().write_unaligned(w);
            let m = escape_mask(u64::from_le(w));
            if m == 0 {
                i += 8;
                n += 8;
                continue;
            }
            let k = (m.trailing_zeros() / 8) as usize;
            n += k;
            i += k;
            n += put_escaped(dst.add(n), *p.add(i));
            i += 1;
        }
        while i < len {
            let b = *p.add(i);
            if SECOND[usize::from(b)] == 0 {
                dst.add(n).write(b);
                n += 1;
            } else {
                n += put_escaped(dst.add(n), b);
            }
            i += 1;
        }
        dst.add(n).write(b'"');
        n += 1;
        out.set_len(start + n);
    }
}

fn uint(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

fn key(out: &mut Vec<u8>, k: &str, first: bool) {
    if !first {
        out.push(b',');
    }
    out.push(b'"');
    out.extend_from_slice(k.as_bytes());
    out.extend_from_slice(b"\":");
}

fn ip(out: &mut Vec<u8>, addr: &IpAddr) {
    out.push(b'"');
    match addr {
        IpAddr::V4(a) => {
            for (i, o) in a.octets().iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                uint(out, u64::from(*o));
            }
        }
        // Display gives the RFC 5952 form serde uses; IPv6 is rare enough for fmt.
        IpAddr::V6(a) => {
            let _ = write!(out, "{a}");
        }
    }
    out.push(b'"');
}

fn endpoint(out: &mut Vec<u8>, e: &Endpoint) {
    out.push(b'{');
    key(out, "ip", true);
    ip(out, &e.ip);
    key(out, "port", false);
    uint(out, u64::from(e.port));
    out.push(b'}');
}

/// Straight from the header block's ranges when the fields are kept that way (no owned copy).
fn headers(out: &mut Vec<u8>, hs: &Headers) {
    out.push(b'[');
    for (i, (name, value)) in hs.fields().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.push(b'{');
        key(out, "name", true);
        string(out, name);
        key(out, "value", false);
        string(out, value);
        out.push(b'}');
    }
    out.push(b']');
}

fn body(out: &mut Vec<u8>, b: &Body) {
    out.push(b'{');
    key(out, "length_bytes", true);
    uint(out, b.length_bytes);
    key(out, "captured_bytes", false);
    uint(out, b.captured_bytes);
    key(out, "truncated", false);
    out.extend_from_slice(if b.truncated { b"true" } else { b"false" });
    key(out, "encoding", false);
    string(out, b.encoding.as_str());
    key(out, "data", false);
    string(out, &b.data);
    if let Some(c) = &b.content_encoding {
        key(out, "content_encoding", false);
        string(out, c);
    }
    if let Some(n) = b.decoded_length_bytes {
        key(out, "decoded_length_bytes", false);
        uint(out, n);
    }
    out.push(b'}');
}

fn request(out: &mut Vec<u8>, r: &Request) {
    out.push(b'{');
    key(out, "method", true);
    string(out, &r.method);
    if let Some(h) = &r.host {
        key(out, "host", false);
        string(out, h);
    }
    key(out, "path", false);
    string(out, &r.path);
    if let Some(q) = &r.query {
        key(out, "query", false);
        string(out, q);
    }
    key(out, "headers", false);
    headers(out, &r.headers);
    key(out, "body", false);
    body(out, &r.body);
    out.push(b'}');
}

fn response(out: &mut Vec<u8>, r: &Response) {
    out.push(b'{');
    key(out, "status", true);
    uint(out, u64::from(r.status));
    key(out, "reason", false);
    string(out, &r.reason);
    key(out, "headers", false);
    headers(out, &r.headers);
    key(out, "body", false);
    body(out, &r.body);
    out.push(b'}');
}

/// Appends `e` as compact JSON.
pub(crate) fn event(out: &mut Vec<u8>, e: &ApiEvent) {
    out.push(b'{');
    key(out, "schema_version", true);
    string(out, &e.schema_version);
    key(out, "event_id", false);
    string(out, &e.event_id);
    key(out, "sensor", false);
    out.push(b'{');
    key(out, "id", true);
    string(out, &e.sensor.id);
    key(out, "host", false);
    string(out, &e.sensor.host);
    if let Some(n) = &e.sensor.node {
        key(out, "node", false);
        string(out, n);
    }
    out.push(b'}');
    key(out, "connection_id", false);
    string(out, &e.connection_id);
    key(out, "transaction_index", false);
    uint(out, e.transaction_index);
    key(out, "request_start_unix_us", false);
    uint(out, e.request_start_unix_us);
    if let Some(t) = e.response_end_unix_us {
        key(out, "response_end_unix_us", false);
        uint(out, t);
    }
    if let Some(t) = e.latency_us {
        key(out, "latency_us", false);
        uint(out, t);
    }
    key(out, "client", false);
    endpoint(out, &e.client);
    key(out, "server", false);
    endpoint(out, &e.server);
    key(out, "tls", false);
    out.extend_from_slice(if e.tls { b"true" } else { b"false" });
    key(out, "http_version", false);
    string(out, &e.http_version);
    key(out, "request", false);
    request(out, &e.request);
    if let Some(r) = &e.response {
        key(out, "response", false);
        response(out, r);
    }
    if !e.anomalies.is_empty() {
        key(out, "anomalies", false);
        out.push(b'[');
        for (i, a) in e.anomalies.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            string(out, a.as_str());
        }
        out.push(b']');
    }
    if !e.payload.is_full() {
        key(out, "payload", false);
        string(out, e.payload.as_str());
    }
    if let Some(l) = &e.labels {
        key(out, "labels", false);
        labels(out, l);
    }
    if e.bodies_sampled_out {
        key(out, "bodies_sampled_out", false);
        out.extend_from_slice(b"true");
    }
    if let Some(w) = &e.server_workload {
        key(out, "server_workload", false);
        workload(out, w);
    }
    if let Some(w) = &e.client_workload {
        key(out, "client_workload", false);
        workload(out, w);
    }
    opt_string(out, "tls_library", &e.tls_library);
    opt_string(out, "tls_sni", &e.tls_sni);
    if let Some(p) = &e.process {
        key(out, "process", false);
        out.push(b'{');
        key(out, "pid", true);
        uint(out, u64::from(p.pid));
        opt_string(out, "executable", &p.executable);
        key(out, "comm", false);
        string(out, &p.comm);
        out.push(b'}');
    }
    if let Some(id) = e.stream_id {
        key(out, "stream_id", false);
        uint(out, u64::from(id));
    }
    if e.unknown_header_fields > 0 {
        key(out, "unknown_header_fields", false);
        uint(out, u64::from(e.unknown_header_fields));
    }
    if let Some(g) = &e.grpc {
        key(out, "grpc", false);
        out.push(b'{');
        key(out, "service", true);
        string(out, &g.service);
        key(out, "method", false);
        string(out, &g.method);
        if let Some(s) = g.status {
            key(out, "status", false);
            uint(out, u64::from(s));
        }
        opt_string(out, "message", &g.message);
        key(out, "request_messages", false);
        uint(out, u64::from(g.request_messages));
        key(out, "response_messages", false);
        uint(out, u64::from(g.response_messages));
        if g.compressed_messages > 0 {
            key(out, "compressed_messages", false);
            uint(out, u64::from(g.compressed_messages));
        }
        if g.web {
            key(out, "web", false);
            out.extend_from_slice(b"true");
        }
        if g.text {
            key(out, "text", false);
            out.extend_from_slice(b"true");
        }
        out.push(b'}');
    }
    out.push(b'}');
}

fn opt_string(out: &mut Vec<u8>, name: &str, v: &Option<String>) {
    if let Some(v) = v {
        key(out, name, false);
        string(out, v);
    }
}

fn workload(out: &mut Vec<u8>, w: &Workload) {
    out.push(b'{');
    key(out, "cgroup", true);
    string(out, &w.cgroup);
    key(out, "uid", false);
    uint(out, u64::from(w.uid));
    opt_string(out, "unit", &w.unit);
    if !w.processes.is_empty() {
        key(out, "processes", false);
        strings(out, &w.processes);
    }
    opt_string(out, "container_id", &w.container_id);
    opt_string(out, "container_runtime", &w.container_runtime);
    opt_string(out, "pod_uid", &w.pod_uid);
    if let Some(k) = &w.kubernetes {
        key(out, "kubernetes", false);
        out.push(b'{');
        key(out, "namespace", true);
        string(out, &k.namespace);
        key(out, "pod", false);
        string(out, &k.pod);
        opt_string(out, "container", &k.container);
        opt_string(out, "workload_kind", &k.workload_kind);
        opt_string(out, "workload_name", &k.workload_name);
        out.push(b'}');
    }
    out.push(b'}');
}

fn strings(out: &mut Vec<u8>, v: &[String]) {
    out.push(b'[');
    for (i, s) in v.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        string(out, s);
    }
    out.push(b']');
}

fn finding(out: &mut Vec<u8>, f: &LabelFinding) {
    out.push(b'{');
    key(out, "label", true);
    string(out, &f.label);
    key(out, "confidence", false);
    uint(out, u64::from(f.confidence));
    key(out, "location", false);
    out.push(b'{');
    key(out, "direction", true);
    string(out, &f.location.direction);
    key(out, "part", false);
    string(out, &f.location.part);
    key(out, "path", false);
    string(out, &f.location.path);
    out.push(b'}');
    key(out, "count", false);
    uint(out, u64::from(f.count));
    key(out, "masked_sample", false);
    string(out, &f.masked_sample);
    if let Some(m) = &f.mask {
        key(out, "mask", false);
        out.push(b'{');
        key(out, "len", true);
        uint(out, u64::from(m.len));
        key(out, "kept", false);
        out.push(b'[');
        for (i, [a, b]) in m.kept.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.push(b'[');
            uint(out, u64::from(*a));
            out.push(b',');
            uint(out, u64::from(*b));
            out.push(b']');
        }
        out.push(b']');
        out.push(b'}');
    }
    if !f.notes.is_empty() {
        key(out, "notes", false);
        strings(out, &f.notes);
    }
    if !f.hashes.is_empty() {
        key(out, "hashes", false);
        strings(out, &f.hashes);
    }
    out.push(b'}');
}

fn shape(out: &mut Vec<u8>, s: &BodyShape) {
    out.push(b'{');
    key(out, "kind", true);
    string(out, &s.kind);
    if !s.fields.is_empty() {
        key(out, "fields", false);
        strings(out, &s.fields);
    }
    for (k, v) in [
        ("fields_dropped", s.fields_dropped),
        ("array_records", s.array_records),
        ("sensitive_records", s.sensitive_records),
        ("sensitive_fields", s.sensitive_fields),
    ] {
        if v != 0 {
            key(out, k, false);
            uint(out, u64::from(v));
        }
    }
    out.push(b'}');
}

fn counters(out: &mut Vec<u8>, c: &ScanCounters) {
    out.push(b'{');
    key(out, "scanned_bytes", true);
    uint(out, c.scanned_bytes);
    if c.unscanned_bytes != 0 {
        key(out, "unscanned_bytes", false);
        uint(out, c.unscanned_bytes);
    }
    key(out, "values", false);
    uint(out, c.values);
    if c.dropped_findings != 0 {
        key(out, "dropped_findings", false);
        uint(out, u64::from(c.dropped_findings));
    }
    out.push(b'}');
}

fn labels(out: &mut Vec<u8>, l: &LabelSummary) {
    out.push(b'{');
    key(out, "findings", true);
    out.push(b'[');
    for (i, f) in l.findings.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        finding(out, f);
    }
    out.push(b']');
    if !l.query_params.is_empty() {
        key(out, "query_params", false);
        strings(out, &l.query_params);
    }
    key(out, "request", false);
    shape(out, &l.request);
    if let Some(r) = &l.response {
        key(out, "response", false);
        shape(out, r);
    }
    if !l.auth.is_empty() {
        key(out, "auth", false);
        strings(out, &l.auth);
    }
    key(out, "stats", false);
    counters(out, &l.stats);
    if let Some(id) = &l.hash_key_id {
        key(out, "hash_key_id", false);
        string(out, id);
    }
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::string;

    /// Every escapable byte at every offset of a word, next to clean words and to multi-byte
    /// UTF-8, against serde_json (which the event encoder must match byte for byte).
    #[test]
    fn string_escapes_like_serde_json_at_every_position() {
        let mut specials: Vec<char> = (0u8..0x20).map(char::from).collect();
        specials.extend(['"', '\\', '/', '\u{7f}', 'é', '中', '😀']);
        for len in 0..40 {
            for pos in 0..len.max(1) {
                for &c in &specials {
                    let mut s: String = (0..len)
                        .map(|k| char::from(b'a' + (k % 26) as u8))
                        .collect();
                    if len > 0 {
                        s.replace_range(pos..=pos, c.encode_utf8(&mut [0; 4]));
                    }
                    let mut out = b"prefix".to_vec();
                    string(&mut out, &s);
                    assert_eq!(
                        &out[6..],
                        serde_json::to_string(&s).unwrap().as_bytes(),
                        "{s:?}"
                    );
                }
            }
        }
        let dense = "\"\\\n\u{1}".repeat(50);
        let mut out = Vec::new();
        string(&mut out, &dense);
        assert_eq!(out, serde_json::to_vec(&dense).unwrap());
    }
}
