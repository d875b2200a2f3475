//! Events built by the decoder keep their header fields as ranges of the header block
//! (issue 21); these tests prove they encode byte for byte as the same events with owned
//! fields, in JSON (the sensor's encoder and serde_json) and in MessagePack, on hostile input:
//! invalid UTF-8, non-ASCII text, characters JSON escapes, duplicate, many and huge fields,
//! obs-fold, bare LF line ends, absolute-form targets, one-byte segments. The field values
//! are also checked against `httparse` on the same bytes with invalid UTF-8 replaced, which
//! is what the decoder stored before (R-CAP-3, R-CAP-7).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use std::sync::Arc;

use apitap_decode::{ConnMeta, Session, SessionConfig, Side, Stats};
use apitap_schema::{
    Anomaly, ApiEvent, Endpoint, Header, Headers, SensorInfo, decode_event, decode_event_msgpack,
    encode_event, encode_event_msgpack_into,
};

fn meta() -> ConnMeta {
    ConnMeta {
        sensor: Arc::new(SensorInfo {
            id: "s".into(),
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

/// Feeds all of `client`, then all of `server`, in pieces of `piece` bytes; closes.
fn run(client: &[u8], server: &[u8], piece: usize) -> (Vec<ApiEvent>, Stats) {
    let mut s = Session::new(meta(), Arc::new(SessionConfig::default()), false);
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
    let parsed: Vec<(String, Vec<u8>)> = if request {
        let mut r = httparse::Request::new(&mut h);
        assert!(r.parse(msg).unwrap().is_complete());
        r.headers
            .iter()
            .map(|h| (h.name.to_owned(), h.value.to_vec()))
            .collect()
    } else {
        let mut r = httparse::Response::new(&mut h);
        assert!(r.parse(msg).unwrap().is_complete());
        r.headers
            .iter()
            .map(|h| (h.name.to_owned(), h.value.to_vec()))
            .collect()
    };
    let utf8 = parsed.iter().all(|(_, v)| std::str::from_utf8(v).is_ok());
    let fields = parsed
        .into_iter()
        .map(|(name, v)| Header {
            name,
            value: String::from_utf8_lossy(&v).into_owned(),
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
