//! Connection-level tests: hand-built frames, and real captures of nghttp2 and gRPC peers
//! (`tests/fixtures/h2/`, produced by `capture.sh` there).

use super::frame::{PREFACE, flag, kind, tests::frame};
use super::*;
use crate::session::Side;

/// Records of a capture dump: (side, bytes) in capture order.
pub(crate) fn dump(name: &str) -> Vec<(Side, Vec<u8>)> {
    let path = format!(
        "{}/../tests/fixtures/h2/{name}.h2dump",
        env!("CARGO_MANIFEST_DIR")
    );
    let b = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    super::dump::records(&b)
        .map(|r| r.map(|(side, bytes)| (side, bytes.to_vec())))
        .collect::<Result<_, _>>()
        .unwrap()
}

pub(crate) fn log(name: &str) -> String {
    let path = format!(
        "{}/../tests/fixtures/h2/{name}.log",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(path).unwrap()
}

pub(crate) fn run(
    records: &[(Side, Vec<u8>)],
    midstream: bool,
    piece: usize,
) -> (Vec<H2Message>, Connection) {
    let mut c = Connection::new(H2Config::default(), midstream);
    let mut out = Vec::new();
    for (i, (side, bytes)) in records.iter().enumerate() {
        for p in bytes.chunks(piece.max(1)) {
            c.data(*side, i as u64 + 1, p, &mut out);
        }
    }
    c.close(&mut out);
    (out, c)
}

/// (stream id, status) as nghttp's log of capture `name` printed them, in its order.
pub(crate) fn printed_statuses(name: &str) -> Vec<(u32, u16)> {
    log(name)
        .lines()
        .filter_map(|l| {
            let rest = l.split("recv (stream_id=").nth(1)?;
            let (id, rest) = rest.split_once(") :status: ")?;
            Some((id.parse().ok()?, rest.trim().parse().ok()?))
        })
        .collect()
}

fn s(b: Option<&[u8]>) -> String {
    String::from_utf8_lossy(b.unwrap_or(b"<none>")).into_owned()
}

/// nghttp's own log lists the streams it opened and the statuses it received.
#[test]
fn nghttp_get_matches_client_log() {
    let (msgs, c) = run(&dump("nghttp_get"), false, usize::MAX);
    let log = log("nghttp_get");
    let mut want = printed_statuses("nghttp_get");
    want.sort();
    let mut got: Vec<(u32, u16)> = msgs
        .iter()
        .map(|m| (m.stream_id, m.status().unwrap()))
        .collect();
    got.sort();
    assert_eq!(got, want);
    assert_eq!(want.len(), 15);
    for m in &msgs {
        assert_eq!(m.end, End::Complete, "{}", m.stream_id);
        assert!(m.anomalies.is_empty(), "{:?}", m.anomalies);
        assert_eq!(s(m.method()), "GET");
        assert_eq!(s(m.authority()), "127.0.0.1:18081");
        let resp = m.response.as_ref().unwrap();
        let cl: u64 = s(resp.header("content-length")).parse().unwrap_or(0);
        assert_eq!(resp.body.wire_len, cl, "{}", s(m.path()));
        assert!(!resp.body.truncated);
        // Records are numbered from 1: the request is in the first, responses later.
        assert!(m.request.start_us == 1 && resp.start_us >= 2 && resp.start_us <= resp.end_us);
    }
    // Every response field nghttp2's own decoder printed, per stream, in order.
    for m in &msgs {
        let tag = format!("recv (stream_id={}) ", m.stream_id);
        let printed: Vec<String> = log
            .lines()
            .filter_map(|l| l.split(tag.as_str()).nth(1))
            .map(str::to_owned)
            .collect();
        let ours: Vec<String> = m
            .response
            .as_ref()
            .unwrap()
            .headers
            .iter()
            .map(|f| format!("{}: {}", s(f.name.as_deref()), s(f.value.as_deref())))
            .collect();
        assert_eq!(ours, printed, "stream {}", m.stream_id);
    }
    let big = msgs
        .iter()
        .find(|m| m.path() == Some(&b"/big.bin"[..]))
        .unwrap();
    assert_eq!(big.response.as_ref().unwrap().body.data.len(), 40_000);
    let o7 = msgs
        .iter()
        .find(|m| m.path() == Some(&b"/api/v1/orders-7.json"[..]))
        .unwrap();
    let body = String::from_utf8(o7.response.as_ref().unwrap().body.data.clone()).unwrap();
    assert!(
        body.starts_with("{\"id\": 7, \"items\": [{\"sku\": \"A-0000\""),
        "{body}"
    );
    assert_eq!(
        c.stats().hpack_errors + c.stats().framing_errors + c.stats().protocol_errors,
        0
    );
    assert_eq!(c.stats().flow_control_violations, 0);
    assert_eq!(c.stats().goaways, 1);
    assert!(c.hpack(Side::Client).synchronised());
}

#[test]
fn nghttp_post_echo() {
    let (msgs, _) = run(&dump("nghttp_post"), false, usize::MAX);
    assert_eq!(msgs.len(), 1);
    let m = &msgs[0];
    let upload = std::fs::read(format!(
        "{}/../tests/fixtures/h2/upload.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    assert_eq!(s(m.method()), "POST");
    assert_eq!(s(m.path()), "/api/v1/transfers");
    assert_eq!(m.request.body.data, upload);
    assert_eq!(m.status(), Some(200));
    assert_eq!(m.response.as_ref().unwrap().body.data, upload);
    assert_eq!(m.end, End::Complete);
}

/// h2load: 30 requests, 10 concurrent streams, one connection; its report says 30 2xx.
#[test]
fn h2load_concurrent_streams() {
    let log = log("h2load");
    assert!(log.contains("requests: 30 total, 30 started, 30 done, 30 succeeded"));
    assert!(log.contains("status codes: 30 2xx"));
    let (msgs, c) = run(&dump("h2load"), false, usize::MAX);
    assert_eq!(msgs.len(), 30);
    assert!(msgs.iter().all(|m| m.status() == Some(200)
        && m.end == End::Complete
        && m.path() == Some(&b"/api/v1/orders-3.json"[..])
        && m.anomalies.is_empty()));
    let ids: Vec<u32> = msgs.iter().map(|m| m.stream_id).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(sorted, (0..30).map(|i| 1 + 2 * i).collect::<Vec<u32>>());
    assert_eq!(c.open_streams(), 0);
}

/// Builds a client request on `stream` with literal fields (no indexing).
fn lit_headers(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut b = Vec::new();
    for (n, v) in fields {
        b.push(0x00);
        b.push(n.len() as u8);
        b.extend_from_slice(n.as_bytes());
        b.push(v.len() as u8);
        b.extend_from_slice(v.as_bytes());
    }
    b
}

#[test]
fn continuation_padding_trailers_and_rst() {
    let req = lit_headers(&[
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/p"),
        (":authority", "a"),
        ("content-length", "5"),
    ]);
    let mut client = PREFACE.to_vec();
    client.extend(frame(kind::SETTINGS, 0, 0, &[]));
    // HEADERS split over a padded HEADERS and a CONTINUATION.
    let (a, b) = req.split_at(10);
    let mut padded = vec![4];
    padded.extend_from_slice(a);
    padded.extend_from_slice(&[0; 4]);
    client.extend(frame(kind::HEADERS, flag::PADDED, 1, &padded));
    client.extend(frame(kind::CONTINUATION, flag::END_HEADERS, 1, b));
    client.extend(frame(kind::DATA, 0, 1, b"hel"));
    client.extend(frame(kind::DATA, flag::END_STREAM, 1, b"lo"));
    // Stream 3: reset by the client after its headers.
    client.extend(frame(
        kind::HEADERS,
        flag::END_HEADERS,
        3,
        &lit_headers(&[(":method", "GET"), (":scheme", "http"), (":path", "/r")]),
    ));
    client.extend(frame(kind::RST_STREAM, 0, 3, &8u32.to_be_bytes()));
    let mut server = frame(kind::SETTINGS, 0, 0, &[]);
    server.extend(frame(
        kind::HEADERS,
        flag::END_HEADERS,
        1,
        &lit_headers(&[(":status", "100")]),
    ));
    server.extend(frame(
        kind::HEADERS,
        flag::END_HEADERS,
        1,
        &lit_headers(&[(":status", "201")]),
    ));
    server.extend(frame(kind::DATA, 0, 1, b"ok"));
    server.extend(frame(
        kind::HEADERS,
        flag::END_HEADERS | flag::END_STREAM,
        1,
        &lit_headers(&[("x-trailer", "t")]),
    ));
    for piece in [1, 7, usize::MAX] {
        let (msgs, c) = run(
            &[
                (Side::Client, client.clone()),
                (Side::Server, server.clone()),
            ],
            false,
            piece,
        );
        assert_eq!(msgs.len(), 2);
        let r = msgs.iter().find(|m| m.stream_id == 3).unwrap();
        assert_eq!(
            r.end,
            End::Reset {
                by: Side::Client,
                code: 8
            }
        );
        assert!(r.response.is_none());
        let m = msgs.iter().find(|m| m.stream_id == 1).unwrap();
        assert_eq!(m.end, End::Complete);
        assert_eq!(m.request.body.data, b"hello");
        assert_eq!(m.status(), Some(201), "1xx skipped");
        let resp = m.response.as_ref().unwrap();
        assert_eq!(resp.body.data, b"ok");
        assert_eq!(resp.trailers[0].value.as_deref(), Some(&b"t"[..]));
        assert!(m.anomalies.is_empty(), "{:?}", m.anomalies);
        assert_eq!(c.stats().protocol_errors, 0);
    }
}

#[test]
fn limits_streams_bodies_goaway() {
    let cfg = H2Config {
        max_streams: 4,
        max_body_bytes: 10,
        ..H2Config::default()
    };
    let mut c = Connection::new(cfg, false);
    let mut out = Vec::new();
    let mut client = PREFACE.to_vec();
    for i in 0..10u32 {
        client.extend(frame(
            kind::HEADERS,
            flag::END_HEADERS,
            2 * i + 1,
            &lit_headers(&[(":method", "POST"), (":scheme", "http"), (":path", "/x")]),
        ));
        client.extend(frame(kind::DATA, flag::END_STREAM, 2 * i + 1, &[b'a'; 25]));
    }
    c.data(Side::Client, 1, &client, &mut out);
    assert_eq!(out.len(), 6);
    assert!(out.iter().all(|m| m.end == End::Evicted));
    assert_eq!(c.open_streams(), 4);
    assert_eq!(c.stats().streams_evicted, 6);
    assert_eq!(out[0].request.body.data.len(), 10);
    assert!(out[0].request.body.truncated);
    assert_eq!(out[0].request.body.wire_len, 25);
    // GOAWAY with last-stream-id 15: 17 and 19 were not processed.
    let mut ga = 15u32.to_be_bytes().to_vec();
    ga.extend_from_slice(&0u32.to_be_bytes());
    out.clear();
    c.data(Side::Server, 2, &frame(kind::SETTINGS, 0, 0, &[]), &mut out);
    c.data(Side::Server, 2, &frame(kind::GOAWAY, 0, 0, &ga), &mut out);
    let refused: Vec<u32> = out
        .iter()
        .filter(|m| m.end == End::Refused { code: 0 })
        .map(|m| m.stream_id)
        .collect();
    assert_eq!(refused, vec![17, 19]);
    assert!(c.buffered() < 4096, "{}", c.buffered());
}

/// A gzip response body is inflated with the HTTP/1 content decoder (caps included); a
/// content-length that disagrees with the DATA is flagged (§8.1.1).
#[test]
fn content_coding_and_length_mismatch() {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(&br#"{"iban":"DE89370400440532013000"}"#.repeat(50))
        .unwrap();
    let gz = e.finish().unwrap();
    let mut client = PREFACE.to_vec();
    client.extend(frame(
        kind::HEADERS,
        flag::END_HEADERS | flag::END_STREAM,
        1,
        &lit_headers(&[(":method", "GET"), (":scheme", "http"), (":path", "/a")]),
    ));
    client.extend(frame(
        kind::HEADERS,
        flag::END_HEADERS,
        3,
        &lit_headers(&[
            (":method", "POST"),
            (":scheme", "http"),
            (":path", "/b"),
            ("content-length", "10"),
        ]),
    ));
    client.extend(frame(kind::DATA, flag::END_STREAM, 3, b"short"));
    let cl = gz.len().to_string();
    let mut server = frame(
        kind::HEADERS,
        flag::END_HEADERS,
        1,
        &lit_headers(&[
            (":status", "200"),
            ("content-encoding", "gzip"),
            ("content-length", &cl),
        ]),
    );
    server.extend(frame(kind::DATA, flag::END_STREAM, 1, &gz));
    server.extend(frame(
        kind::HEADERS,
        flag::END_HEADERS | flag::END_STREAM,
        3,
        &lit_headers(&[(":status", "400")]),
    ));
    let (msgs, c) = run(
        &[(Side::Client, client), (Side::Server, server)],
        false,
        usize::MAX,
    );
    let a = msgs.iter().find(|m| m.stream_id == 1).unwrap();
    let body = &a.response.as_ref().unwrap().body;
    assert!(body.decoded && !body.truncated);
    assert_eq!(body.data.len(), 33 * 50);
    assert_eq!(body.wire_len, gz.len() as u64);
    assert!(a.anomalies.is_empty());
    let b = msgs.iter().find(|m| m.stream_id == 3).unwrap();
    assert_eq!(b.anomalies, vec![H2Anomaly::ContentLengthMismatch]);
    assert_eq!(c.stats().bodies_decoded, 1);
}

/// A header block larger than the cap is dropped whole (the table is then treated as
/// unknown), and a later request is still decoded.
#[test]
fn oversized_header_block_is_flagged() {
    let cfg = H2Config {
        max_header_block_bytes: 64,
        ..H2Config::default()
    };
    let mut c = Connection::new(cfg, false);
    let mut out = Vec::new();
    let mut client = PREFACE.to_vec();
    let big = lit_headers(&[
        (":method", "GET"),
        (":scheme", "http"),
        (":path", "/big"),
        ("x-big", &"v".repeat(100)),
    ]);
    client.extend(frame(kind::HEADERS, flag::END_STREAM, 1, &big[..50]));
    client.extend(frame(kind::CONTINUATION, flag::END_HEADERS, 1, &big[50..]));
    client.extend(frame(
        kind::HEADERS,
        flag::END_HEADERS | flag::END_STREAM,
        3,
        &lit_headers(&[(":method", "GET"), (":scheme", "http"), (":path", "/ok")]),
    ));
    c.data(Side::Client, 1, &client, &mut out);
    c.close(&mut out);
    assert_eq!(c.stats().header_blocks_too_large, 1);
    let ok = out.iter().find(|m| m.stream_id == 3).unwrap();
    assert_eq!(s(ok.path()), "/ok");
}

/// The client's own report (`grpc_client.py` prints one line per RPC, in call order).
/// (method, status, (request, response) message counts, grpc-message) per reported RPC.
type ReportedRpc = (String, u32, Option<(u32, u32)>, Option<String>);

fn client_rpcs(name: &str) -> Vec<ReportedRpc> {
    log(name)
        .lines()
        .filter(|l| l.starts_with("rpc "))
        .map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            let kv = |k: &str| w.iter().find_map(|x| x.strip_prefix(k)).map(str::to_owned);
            let counts = kv("req_msgs=")
                .zip(kv("resp_msgs="))
                .map(|(a, b)| (a.parse().unwrap(), b.parse().unwrap()));
            let message = l
                .split("message='")
                .nth(1)
                .map(|m| m.trim_end_matches('\'').to_owned());
            (
                w[2].to_owned(),
                kv("status=").unwrap().parse().unwrap(),
                counts,
                message,
            )
        })
        .collect()
}

/// Python grpcio client and server: every RPC the client reports (unary, the NOT_FOUND error
/// as a trailers-only response, server/client/bidi streaming, a gzip call) with its status and
/// message counts, in order, and the protobuf body decoded at the wire level.
#[test]
fn grpc_matches_client_report() {
    for name in ["grpc", "grpc_many"] {
        let want = client_rpcs(name);
        let (mut msgs, c) = run(&dump(name), false, usize::MAX);
        msgs.sort_by_key(|m| m.stream_id);
        assert_eq!(msgs.len(), want.len(), "{name}");
        for (m, (method, status, counts, message)) in msgs.iter().zip(&want) {
            let g = m.grpc.as_ref().unwrap();
            assert_eq!(g.service, "bank.v1.Accounts");
            assert_eq!(&g.method, method);
            assert_eq!(g.status, Some(*status));
            if let Some((req, resp)) = counts {
                assert_eq!(
                    (g.request_messages, g.response_messages),
                    (*req, *resp),
                    "{method}"
                );
            }
            if let Some(msg) = message {
                assert_eq!(g.message.as_deref(), Some(msg.as_str()));
                assert!(g.trailers_only);
            }
            assert_eq!(m.end, End::Complete);
            assert!(m.anomalies.is_empty() && !g.framing_error);
        }
        assert_eq!(
            msgs.last()
                .unwrap()
                .grpc
                .as_ref()
                .unwrap()
                .encoding
                .as_deref(),
            Some("gzip")
        );
        assert_eq!(c.stats().hpack_unknown_fields, 0);
    }
    let (msgs, _) = run(&dump("grpc"), false, usize::MAX);
    let body = &msgs[0].response.as_ref().unwrap().body.data;
    let m: Vec<_> = crate::grpc::messages(body).collect();
    assert_eq!(m.len(), 1);
    use crate::protobuf::{Value, decode, shape};
    let f = decode(m[0].data, crate::protobuf::Limits::default()).unwrap();
    assert!(matches!(f[0].value, Value::Len { raw, text: true, .. } if raw == b"acc-0000"));
    assert!(matches!(f[1].value, Value::Len { raw, text: true, .. } if raw == b"Alice Example"));
    assert_eq!(shape(&f), crate::protobuf::tests::account_shape());
    let texts: Vec<(String, &str)> = crate::protobuf::strings(&f);
    assert_eq!(
        texts,
        [
            ("1", "acc-0000"),
            ("2", "Alice Example"),
            ("3.1", "EUR"),
            ("4", "retail"),
            ("4", "premium")
        ]
        .map(|(p, v)| (p.to_owned(), v))
        .to_vec()
    );

    assert!(
        f.iter()
            .any(|x| x.value == Value::Fixed64(0.0125f64.to_bits()))
    );
}

/// Every field a joined decoder reports known equals the from-the-start decode's field at the
/// same position (never an invented value); returns per stream the unknown field counts
/// (request, response).
fn assert_join_exact(
    name: &str,
    from_stream: u32,
) -> (Vec<(u32, usize, usize)>, Vec<H2Message>, Connection) {
    let records = dump(name);
    let (full, _) = run(&records, false, usize::MAX);
    let start = record_opening(&records, from_stream);
    let (joined, c) = run(&records[start..], true, usize::MAX);
    let mut counts = Vec::new();
    for m in &joined {
        let f = full.iter().find(|x| x.stream_id == m.stream_id).unwrap();
        for (a, b) in [
            (&m.request.headers, &f.request.headers),
            (
                &m.response.as_ref().unwrap().headers,
                &f.response.as_ref().unwrap().headers,
            ),
        ] {
            assert_eq!(a.len(), b.len(), "stream {}", m.stream_id);
            for (x, y) in a.iter().zip(b) {
                if let Some(n) = &x.name {
                    assert_eq!(Some(n), y.name.as_ref());
                }
                if let Some(v) = &x.value {
                    assert_eq!(Some(v), y.value.as_ref());
                }
            }
        }
        assert_eq!(m.end, End::Complete);
        assert_eq!(m.status(), f.status());
        assert_eq!(m.request.body, f.request.body);
        assert_eq!(
            m.response.as_ref().unwrap().body,
            f.response.as_ref().unwrap().body
        );
        counts.push((
            m.stream_id,
            m.request.unknown_fields(),
            m.response.as_ref().unwrap().unknown_fields(),
        ));
    }
    assert_eq!(
        joined.len(),
        full.iter().filter(|x| x.stream_id >= from_stream).count()
    );
    (counts, joined, c)
}

/// Joining a real connection after its first 10 requests (Python `h2` client, whose encoder
/// indexes everything, against nghttpd): everything reported is exact; the request fields
/// inserted before the join are unknown until the per-request ids churn the 4096-byte table
/// and the client sends them again; from then on each request has one unknown part (the
/// `x-request-id` *name*, which every later insert references by index from the first,
/// pre-join entry), its value exact.
#[test]
fn join_mid_connection_h2_relearns() {
    let (counts, joined, c) = assert_join_exact("h2py_churn", 21);
    assert_eq!(joined.len(), 140);
    // Statuses and :method/:scheme (static table) are exact from the first joined event.
    assert!(
        joined
            .iter()
            .all(|m| m.status() == Some(200) && m.method() == Some(&b"GET"[..]))
    );
    let first_relearnt = counts.iter().find(|(_, req, _)| *req == 1).unwrap().0;
    assert_eq!(first_relearnt, 97, "{counts:?}");
    assert!(
        counts
            .iter()
            .filter(|(id, _, _)| *id >= 97)
            .all(|(_, req, _)| *req == 1)
    );
    let last = joined.last().unwrap();
    let rid = last
        .request
        .headers
        .iter()
        .find(|f| !f.is_complete())
        .unwrap();
    assert!(rid.name.is_none() && rid.value.as_deref().unwrap().starts_with(b"req-00000149"));
    assert_eq!(rid.unknown_slot, Some(0));
    // Paths: exact for the paths first requested after the join (orders-10/11 at 21, 23),
    // unknown for the ten requested before it until they are sent again.
    assert_eq!(s(joined[0].path()), "/api/v1/orders-10.json");
    assert_eq!(joined[2].path(), None);
    assert!(
        joined
            .iter()
            .skip_while(|m| m.stream_id < 97)
            .all(|m| m.path().is_some())
    );
    // The server's response table does not churn: nghttpd's indexed fields stay unknown.
    // The server's response table barely churns: nghttpd's fixed fields (server,
    // cache-control, …) indexed before the join stay unknown to the end.
    assert!(
        counts.iter().all(|(_, _, resp)| (4..=5).contains(resp)),
        "{counts:?}"
    );
    assert!(!c.hpack(Side::Client).synchronised());
    assert!(c.stats().hpack_unknown_fields > 0);
}

/// Joining a gRPC connection after 10 RPCs: gRPC C-core indexes its fixed fields and never
/// sends them again, so the 30 later GetAccount calls stay with an unknown `:path` — all the
/// same pre-join table entries — and no gRPC summary; the RPCs with methods first called after
/// the join have exact service, method and message counts (as the client reports), but their
/// `grpc-status: 0` trailer refers to a pre-join entry and is reported unknown.
#[test]
fn join_mid_connection_grpc() {
    let (_, joined, _) = assert_join_exact("grpc_many", 21);
    let want = client_rpcs("grpc_many");
    let unknown_path: Vec<_> = joined.iter().filter(|m| m.path().is_none()).collect();
    assert_eq!(
        unknown_path.len(),
        32,
        "30 GetAccount, the NOT_FOUND one, the gzip one"
    );
    let slots: std::collections::HashSet<_> = unknown_path
        .iter()
        .map(|m| {
            m.request
                .headers
                .iter()
                .filter(|f| !f.is_complete())
                .map(|f| f.unknown_slot)
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(
        slots.len(),
        1,
        "the same unknown entries on every call: {slots:?}"
    );
    for m in joined.iter().filter(|m| m.path().is_some()) {
        let g = m.grpc.as_ref().unwrap();
        let (method, status, counts, _) = want.iter().find(|w| w.0 == g.method).unwrap();
        assert_eq!(&g.method, method);
        assert_eq!(g.service, "bank.v1.Accounts");
        // `grpc-status: 0` was indexed before the join: unknown, not assumed.
        assert_eq!(*status, 0);
        assert_eq!(g.status, None);
        assert_eq!(Some((g.request_messages, g.response_messages)), *counts);
    }
    // Once the connection is known to carry gRPC, the last (gzip) GetAccount is framed as gRPC
    // though its path is unknown: counts exact, service and method empty, never guessed.
    assert_eq!(joined.iter().filter(|m| m.grpc.is_some()).count(), 4);
    let anon = joined
        .iter()
        .find(|m| m.path().is_none() && m.grpc.is_some())
        .unwrap();
    let g = anon.grpc.as_ref().unwrap();
    assert_eq!((g.service.as_str(), g.method.as_str()), ("", ""));
    assert_eq!((g.request_messages, g.response_messages), (1, 1));
    assert_eq!(anon.stream_id, joined.last().unwrap().stream_id);
    // The NOT_FOUND call's trailers-only response was the first status 5: sent literally,
    // so exact, though its path (and so its gRPC summary) is not.
    let nf = joined
        .iter()
        .find(|m| m.response.as_ref().unwrap().header("grpc-status") == Some(&b"5"[..]))
        .unwrap();
    assert_eq!(
        nf.response.as_ref().unwrap().header("grpc-message"),
        Some(&b"no such account: missing"[..])
    );
    assert!(nf.grpc.is_none() && nf.path().is_none());
}

/// Index of the first record that starts with a client HEADERS frame on `stream`.
pub(crate) fn record_opening(records: &[(Side, Vec<u8>)], stream: u32) -> usize {
    records
        .iter()
        .position(|(side, b)| {
            *side == Side::Client
                && b.len() >= 9
                && b[3] == kind::HEADERS
                && u32::from_be_bytes([b[5], b[6], b[7], b[8]]) == stream
        })
        .unwrap()
}

mod segmentation {
    use super::*;
    use proptest::prelude::*;

    /// Feeds every record cut at the given piece sizes (cycled).
    fn run_cut(records: &[(Side, Vec<u8>)], midstream: bool, pieces: &[usize]) -> Vec<H2Message> {
        let mut c = Connection::new(H2Config::default(), midstream);
        let mut out = Vec::new();
        let mut k = 0;
        for (i, (side, bytes)) in records.iter().enumerate() {
            let mut rest = &bytes[..];
            while !rest.is_empty() {
                let n = pieces[k % pieces.len()].min(rest.len());
                k += 1;
                c.data(*side, i as u64 + 1, &rest[..n], &mut out);
                rest = &rest[n..];
            }
        }
        c.close(&mut out);
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

        /// Any segmentation of the same byte streams gives the same messages, from the start
        /// and when joining mid-connection.
        #[test]
        fn any_segmentation_same_messages(pieces in proptest::collection::vec(1usize..3000, 1..40)) {
            for name in ["grpc", "nghttp_get", "h2load", "h2py_churn"] {
                let records = dump(name);
                let (whole, _) = run(&records, false, usize::MAX);
                prop_assert_eq!(&run_cut(&records, false, &pieces), &whole, "{}", name);
            }
            let records = dump("grpc_many");
            let start = record_opening(&records, 21);
            let (whole, _) = run(&records[start..], true, usize::MAX);
            prop_assert_eq!(&run_cut(&records[start..], true, &pieces), &whole);
        }
    }
}

/// Joining at an arbitrary byte offset (inside frames, as a capture that starts mid-connection
/// does): both parsers resynchronise on a frame boundary, the streams whose start was missed
/// are flagged, and everything reported about the others matches the full decode.
#[test]
fn join_inside_frames_resyncs() {
    let records = dump("h2py_churn");
    let (full, _) = run(&records, false, usize::MAX);
    let start = record_opening(&records, 41);
    let mut cut: Vec<(Side, Vec<u8>)> = records[start..].to_vec();
    cut[0].1.drain(..7);
    let first_server = cut.iter().position(|r| r.0 == Side::Server).unwrap();
    cut[first_server].1.drain(..3);
    let (joined, c) = run(&cut, true, usize::MAX);
    assert!(c.stats().resync_bytes > 0);
    assert_eq!(c.stats().hpack_errors, 0);
    let mut exact = 0;
    for m in &joined {
        let f = full.iter().find(|x| x.stream_id == m.stream_id).unwrap();
        if m.anomalies.contains(&H2Anomaly::RequestHeadersMissing) || m.request.headers.is_empty() {
            continue;
        }
        for (x, y) in m.request.headers.iter().zip(&f.request.headers) {
            if let (Some(a), Some(b)) = (&x.name, &x.value) {
                assert_eq!((Some(a), Some(b)), (y.name.as_ref(), y.value.as_ref()));
            }
        }
        assert_eq!(m.status(), f.status());
        assert_eq!(
            m.response.as_ref().unwrap().body,
            f.response.as_ref().unwrap().body
        );
        exact += 1;
    }
    // The request cut in its HEADERS frame is lost; every later one is reported.
    assert_eq!(exact, full.iter().filter(|x| x.stream_id > 41).count());
}

/// Flow control (§6.9): real peers never exceed their windows; a sender that ignores the
/// window, or a reduced SETTINGS_INITIAL_WINDOW_SIZE once acknowledged, is flagged.
#[test]
fn flow_control_accounting() {
    for name in [
        "nghttp_get",
        "nghttp_post",
        "h2load",
        "h2py_churn",
        "grpc",
        "grpc_many",
    ] {
        let (_, c) = run(&dump(name), false, usize::MAX);
        assert_eq!(c.stats().flow_control_violations, 0, "{name}");
        assert_eq!(c.stats().protocol_errors, 0, "{name}");
    }
    let get = lit_headers(&[(":method", "GET"), (":scheme", "http"), (":path", "/")]);
    let mut client = PREFACE.to_vec();
    // The client allows 100 bytes per stream, and the server acknowledges.
    client.extend(frame(kind::SETTINGS, 0, 0, &[0, 4, 0, 0, 0, 100]));
    client.extend(frame(
        kind::HEADERS,
        flag::END_HEADERS | flag::END_STREAM,
        1,
        &get,
    ));
    client.extend(frame(
        kind::HEADERS,
        flag::END_HEADERS | flag::END_STREAM,
        3,
        &get,
    ));
    let ok = lit_headers(&[(":status", "200")]);
    // Before its ACK the server may still use 65,535 on stream 1.
    let mut server = frame(kind::SETTINGS, 0, 0, &[]);
    server.extend(frame(kind::HEADERS, flag::END_HEADERS, 1, &ok));
    server.extend(frame(kind::DATA, flag::END_STREAM, 1, &[b'x'; 150]));
    server.extend(frame(kind::SETTINGS, flag::ACK, 0, &[]));
    server.extend(frame(kind::HEADERS, flag::END_HEADERS, 3, &ok));
    server.extend(frame(kind::DATA, 0, 3, &[b'y'; 100]));
    server.extend(frame(kind::DATA, flag::END_STREAM, 3, &[b'z'; 1]));
    let (msgs, c) = run(
        &[(Side::Client, client), (Side::Server, server)],
        false,
        usize::MAX,
    );
    assert_eq!(c.stats().flow_control_violations, 1);
    let s3 = msgs.iter().find(|m| m.stream_id == 3).unwrap();
    assert_eq!(s3.anomalies, vec![H2Anomaly::FlowControlViolation]);
    let s1 = msgs.iter().find(|m| m.stream_id == 1).unwrap();
    assert!(s1.anomalies.is_empty(), "{:?}", s1.anomalies);
}

/// A CONTINUATION whose HEADERS was not seen (joined inside a block) may hold inserts: the
/// table is treated as unknown afterwards, so a later index is marked, not resolved to a stale
/// entry.
#[test]
fn orphan_continuation_desynchronises_hpack() {
    let mut c = Connection::new(H2Config::default(), true);
    let mut out = Vec::new();
    // Learn "x-a: 1" at index 62, then lose a block fragment inserting "x-b: 2".
    let mut client = frame(
        kind::HEADERS,
        flag::END_HEADERS,
        1,
        &[0x82, 0x86, 0x84, 0x40, 3, b'x', b'-', b'a', 1, b'1'],
    );
    client.extend(frame(
        kind::CONTINUATION,
        flag::END_HEADERS,
        3,
        &[0x40, 3, b'x', b'-', b'b', 1, b'2'],
    ));
    client.extend(frame(
        kind::HEADERS,
        flag::END_HEADERS | flag::END_STREAM,
        5,
        &[0x82, 0x86, 0x84, 0xbe],
    ));
    c.data(Side::Client, 1, &client, &mut out);
    c.close(&mut out);
    let m5 = out.iter().find(|m| m.stream_id == 5).unwrap();
    let last = m5.request.headers.last().unwrap();
    assert!(last.name.is_none() && last.value.is_none(), "{last:?}");
    assert!(m5.anomalies.contains(&H2Anomaly::UnknownHpackIndex));
}

/// The captures through [`crate::Session`] (the sensor's path): the preface makes the session
/// HTTP/2, one event per stream, in any segmentation; gRPC calls carry their summary; the
/// encoders write the new fields as serde does.
/// `Connection::upgraded` (RFC 7540 §3.2.1): the HTTP2-Settings payload is the client's
/// SETTINGS, acknowledged by the 101: a small SETTINGS_INITIAL_WINDOW_SIZE applies to the
/// server's DATA on stream 1 at once; an undecodable one is counted.
#[test]
fn upgraded_connection_applies_http2_settings() {
    let request = vec![
        hpack::Field::known(":method".into(), "GET".into()),
        hpack::Field::known(":scheme".into(), "http".into()),
        hpack::Field::known(":path".into(), "/".into()),
    ];
    // :status 200 (static index 8), then 20 bytes of DATA ending the stream.
    let mut server = frame(kind::SETTINGS, 0, 0, &[]);
    server.extend(frame(kind::HEADERS, flag::END_HEADERS, 1, &[0x88]));
    server.extend(frame(kind::DATA, flag::END_STREAM, 1, &[b'x'; 20]));
    for (settings, violations, invalid) in [
        (Some(&[0u8, 4, 0, 0, 0, 10][..]), 1, 0),
        (Some(&[0u8, 4, 0, 0][..]), 0, 1),
        (None, 0, 1),
    ] {
        let mut c = Connection::upgraded(
            H2Config::default(),
            request.clone(),
            conn::Body::default(),
            (1, 1),
            settings,
        );
        let mut out = Vec::new();
        c.data(Side::Client, 2, PREFACE, &mut out);
        c.data(Side::Client, 2, &frame(kind::SETTINGS, 0, 0, &[]), &mut out);
        c.data(Side::Server, 3, &server, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].stream_id, out[0].status()), (1, Some(200)));
        assert_eq!(s(out[0].path()), "/");
        assert_eq!(out[0].end, End::Complete);
        assert_eq!(
            c.stats().flow_control_violations,
            violations,
            "{settings:?}"
        );
        assert_eq!(c.stats().upgrade_settings_invalid, invalid);
        assert_eq!(c.stats().upgrades, 1);
    }
}

/// gRPC-Web text on a connection (hand-built frames; PROTOCOL-WEB): the request's
/// `content-type: application/grpc-web-text` makes its DATA base64, and the response's unless
/// the response's own content type says binary; padded chunks split across DATA frames;
/// service, method, status and counts as for binary.
#[test]
fn grpc_web_text_stream() {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let lit = |idx: u8, v: &[u8]| {
        // §6.2.2 literal without indexing, indexed name (4-bit prefix), raw value.
        let mut b = if idx < 15 {
            vec![idx]
        } else {
            vec![0x0f, idx - 15]
        };
        b.push(v.len() as u8);
        b.extend_from_slice(v);
        b
    };
    let ct = b"application/grpc-web-text";
    let mut req = vec![0x83, 0x86];
    req.extend(lit(4, b"/bank.v1.Accounts/ListTransfers"));
    req.extend(lit(31, ct));
    let lpm = |flag: u8, p: &[u8]| {
        let mut v = vec![flag];
        v.extend_from_slice(&(p.len() as u32).to_be_bytes());
        v.extend_from_slice(p);
        v
    };
    let req_body = b64.encode(lpm(0, b"\x0a\x04acc1"));
    // The answer in text, or in binary when its own content type says so (a server answering
    // by `Accept`).
    for binary_answer in [false, true] {
        let mut resp = vec![0x88];
        resp.extend(lit(
            31,
            if binary_answer {
                b"application/grpc-web+proto"
            } else {
                ct
            },
        ));
        let mut frames: Vec<Vec<u8>> = (0..3u8)
            .map(|i| lpm(0, &[0x08, i, 0x12, 0x01, b'x']))
            .collect();
        frames.push(lpm(0x80, b"grpc-status:0\r\n"));
        let resp_body: Vec<u8> = if binary_answer {
            frames.concat()
        } else {
            frames
                .iter()
                .flat_map(|f| b64.encode(f).into_bytes())
                .collect()
        };
        let mut client = PREFACE.to_vec();
        client.extend(frame(kind::SETTINGS, 0, 0, &[]));
        client.extend(frame(kind::HEADERS, flag::END_HEADERS, 1, &req));
        client.extend(frame(kind::DATA, flag::END_STREAM, 1, req_body.as_bytes()));
        let mut server = frame(kind::SETTINGS, 0, 0, &[]);
        server.extend(frame(kind::HEADERS, flag::END_HEADERS, 1, &resp));
        let (a, b) = resp_body.split_at(13);
        server.extend(frame(kind::DATA, 0, 1, a));
        server.extend(frame(kind::DATA, flag::END_STREAM, 1, b));
        let recs = vec![(Side::Client, client), (Side::Server, server)];
        for piece in [1, 4, usize::MAX] {
            let (msgs, _) = run(&recs, false, piece);
            assert_eq!(msgs.len(), 1);
            let g = msgs[0].grpc.as_ref().expect("gRPC");
            assert_eq!(
                (g.service.as_str(), g.method.as_str()),
                ("bank.v1.Accounts", "ListTransfers")
            );
            assert_eq!(
                (g.request_messages, g.response_messages),
                (1, 3),
                "piece {piece}, binary answer {binary_answer}"
            );
            assert_eq!(g.status, Some(0));
            assert!(g.web && g.text && !g.framing_error);
        }
    }
}

/// gRPC-Web text over h2c from a real peer: curl `--http2-prior-knowledge` with the base64
/// body built per PROTOCOL-WEB → sonora 0.2.3's WSGI app under hypercorn 0.18
/// (`grpcweb_h2c_text`): ListTransfers answered by two messages and FAILED_PRECONDITION in
/// the base64 trailers frame (each frame padded on its own), as the client logged.
#[test]
fn grpc_web_text_over_h2c_from_sonora() {
    assert!(
        log("grpcweb").contains(
            "rpc server-stream ListTransfers mode=h2c-text status=9 req_msgs=1 resp_msgs=2"
        )
    );
    for piece in [1, 3, usize::MAX] {
        let (msgs, c) = run(&dump("grpcweb_h2c_text"), false, piece);
        assert_eq!(msgs.len(), 1);
        let g = msgs[0].grpc.as_ref().expect("gRPC-Web");
        assert_eq!(
            (g.service.as_str(), g.method.as_str(), g.status),
            ("bank.v1.Accounts", "ListTransfers", Some(9))
        );
        assert_eq!(
            g.message.as_deref(),
            Some("account frozen: transfers withheld")
        );
        assert_eq!((g.request_messages, g.response_messages), (1, 2), "{piece}");
        assert!(g.web && g.text && !g.framing_error);
        assert_eq!(c.stats().framing_errors, 0);
    }
}

mod session_events {
    use std::sync::Arc;

    use apitap_schema::{Anomaly, ApiEvent, Endpoint, SensorInfo};

    use super::{client_rpcs, dump};
    use crate::session::tests::meta;
    use crate::session::{ConnMeta, Session, SessionConfig, Side};
    use crate::stats::Stats;

    fn events(name: &str, piece: usize, skip_records: usize) -> (Vec<ApiEvent>, Stats) {
        let records = dump(name);
        session_of(&records[skip_records..], piece, skip_records > 0)
    }

    #[test]
    fn grpc_calls_are_events_with_their_summary_in_any_segmentation() {
        let want = client_rpcs("grpc");
        for piece in [1, 7, 1448, usize::MAX] {
            let (evs, stats) = events("grpc", piece, 0);
            assert_eq!(stats.h2_connections, 1);
            assert_eq!(evs.len(), want.len(), "piece {piece}");
            for (e, (method, status, _, _)) in evs.iter().zip(&want) {
                assert_eq!(e.http_version, "2");
                assert_eq!(e.request.method, "POST");
                assert_eq!(e.request.path, format!("/bank.v1.Accounts/{method}"));
                let g = e.grpc.as_ref().expect("grpc");
                assert_eq!(
                    (g.service.as_str(), &g.method),
                    ("bank.v1.Accounts", method)
                );
                assert_eq!(g.status, Some(*status));
                assert_eq!(e.response.as_ref().map(|r| r.status), Some(200));
                assert!(e.stream_id.is_some_and(|id| id % 2 == 1));
                assert!(e.anomalies.is_empty(), "{:?}", e.anomalies);
                assert_eq!(e.unknown_header_fields, 0);
                // The hand-written JSON encoder writes the new fields exactly as serde does.
                let fast = apitap_schema::encode_event(e);
                let serde: serde_json::Value = serde_json::to_value(e).unwrap();
                let back: serde_json::Value = serde_json::from_slice(&fast).unwrap();
                assert_eq!(back, serde);
                assert_eq!(apitap_schema::decode_event(&fast).unwrap(), *e);
            }
        }
    }

    #[test]
    fn plain_h2_streams_pair_and_http1_is_still_http1() {
        let (evs, _) = events("nghttp_get", 3, 0);
        assert_eq!(evs.len(), 15);
        assert!(evs.iter().all(|e| e.http_version == "2"
            && e.request.method == "GET"
            && e.request.host.is_some()));
        // As nghttp printed them: 14 × 200 and one 404.
        let mut statuses: Vec<u16> = evs
            .iter()
            .filter_map(|e| e.response.as_ref())
            .map(|r| r.status)
            .collect();
        statuses.sort();
        assert_eq!(statuses, [vec![200; 14], vec![404]].concat());
        // An HTTP/1 request whose first segment is one byte of the preface ("P").
        let (evs, stats) = {
            let meta = ConnMeta {
                sensor: Arc::new(SensorInfo {
                    id: "h1".into(),
                    host: "h".into(),
                    node: None,
                }),
                client: Endpoint {
                    ip: "10.0.0.2".parse().unwrap(),
                    port: 1,
                },
                server: Endpoint {
                    ip: "10.0.0.1".parse().unwrap(),
                    port: 80,
                },
                first_seen_ns: 1,
                tls: false,
            };
            let mut s = Session::new(meta, Arc::new(SessionConfig::default()), false);
            let (mut out, mut stats) = (Vec::new(), Stats::default());
            let req = b"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi";
            s.data(Side::Client, 1, &req[..1], None, &mut stats, &mut out);
            s.data(Side::Client, 2, &req[1..], None, &mut stats, &mut out);
            let res = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
            s.data(Side::Server, 3, res, None, &mut stats, &mut out);
            (out, stats)
        };
        assert_eq!(stats.h2_connections, 0);
        assert_eq!(evs.len(), 1);
        assert_eq!(
            (evs[0].http_version.as_str(), evs[0].request.path.as_str()),
            ("1.1", "/p")
        );
        assert_eq!(evs[0].stream_id, None);
    }

    /// A connection closed with a stream still open: the close reports it (HTTP/2 state is
    /// kept through the close, not dropped with the sniffing state).
    #[test]
    fn close_reports_streams_still_open() {
        // The first half of the capture: requests sent, some responses not yet.
        let mut records = dump("nghttp_get");
        records.truncate(records.len() / 2);
        let meta = meta("h2");
        let mut s = Session::new(meta, Arc::new(SessionConfig::default()), false);
        let (mut out, mut stats) = (Vec::new(), Stats::default());
        for (i, (side, bytes)) in records.into_iter().enumerate() {
            s.data(side, 1_000 + i as u64, &bytes, None, &mut stats, &mut out);
        }
        let before_close = out.len();
        s.close(9_999_999, false, &mut stats, &mut out);
        assert!(
            out.len() > before_close,
            "the open streams are reported at the close"
        );
        assert!(out[before_close..].iter().all(|e| e.http_version == "2"
            && (e.anomalies.contains(&Anomaly::NoResponse)
                || e.anomalies.contains(&Anomaly::ResponseIncomplete))));
    }

    #[test]
    fn joined_mid_connection_streams_are_marked_not_invented() {
        // Start after the first requests' records: frames are recognised mid-way.
        let (evs, stats) = events("h2py_churn", 1448, 40);
        assert_eq!(stats.h2_connections, 1);
        assert!(!evs.is_empty());
        let marked: Vec<&ApiEvent> = evs
            .iter()
            .filter(|e| e.anomalies.contains(&Anomaly::HpackUnknownField))
            .collect();
        assert!(!marked.is_empty(), "some fields refer to pre-join state");
        for e in &marked {
            assert!(e.unknown_header_fields > 0);
        }
        // No header name or value of the unknown kind leaks in as text.
        assert!(evs.iter().all(|e| e.http_version == "2"));
    }

    /// The events of one session fed `records` in `piece`-byte pieces, then closed.
    fn session_of(
        records: &[(Side, Vec<u8>)],
        piece: usize,
        midstream: bool,
    ) -> (Vec<ApiEvent>, Stats) {
        let meta = meta("h2");
        let mut s = Session::new(meta, Arc::new(SessionConfig::default()), midstream);
        let (mut out, mut stats) = (Vec::new(), Stats::default());
        for (i, (side, bytes)) in records.iter().enumerate() {
            for chunk in bytes.chunks(piece) {
                s.data(*side, 1_000 + i as u64, chunk, None, &mut stats, &mut out);
            }
        }
        s.close(9_999_999, false, &mut stats, &mut out);
        out.sort_by_key(|e| e.stream_id);
        (out, stats)
    }

    /// `nghttp -u` → hypercorn (RFC 7540 §3.2): the upgrade request is stream 1, answered in
    /// HTTP/2 after the 101; the later streams follow the client's preface. Any segmentation,
    /// and the client's whole stream delivered before the server's, give the same events.
    #[test]
    fn upgrade_h2c_request_is_stream_1_then_h2() {
        let records = dump("nghttp_upgrade");
        let want = super::printed_statuses("nghttp_upgrade");
        assert_eq!(want, [(1, 200), (13, 404), (15, 200), (17, 200)]);
        let mut client_first: Vec<(Side, Vec<u8>)> = records
            .iter()
            .filter(|r| r.0 == Side::Client)
            .cloned()
            .collect();
        client_first.extend(records.iter().filter(|r| r.0 == Side::Server).cloned());
        for (recs, piece) in [
            (&records, 1),
            (&records, 7),
            (&records, usize::MAX),
            (&client_first, 13),
        ] {
            let (evs, stats) = session_of(recs, piece, false);
            assert_eq!((stats.h2_connections, stats.upgrades), (1, 1));
            let got: Vec<(u32, u16)> = evs
                .iter()
                .map(|e| (e.stream_id.unwrap(), e.response.as_ref().unwrap().status))
                .collect();
            assert_eq!(got, want, "piece {piece}");
            let paths: Vec<&str> = evs.iter().map(|e| e.request.path.as_str()).collect();
            assert_eq!(
                paths,
                [
                    "/api/user1.json",
                    "/missing",
                    "/api/user2.json",
                    "/api/user3.json"
                ]
            );
            let mut idx: Vec<u64> = evs.iter().map(|e| e.transaction_index).collect();
            idx.sort();
            assert_eq!(
                idx,
                [0, 1, 2, 3],
                "stream 1 takes the upgrade request's index"
            );
            for e in &evs {
                assert_eq!(e.http_version, "2");
                assert_eq!(e.request.method, "GET");
                assert_eq!(e.request.host.as_deref(), Some("127.0.0.1:18084"));
                assert!(e.anomalies.is_empty(), "{:?}", e.anomalies);
                // The upgrade's own fields are not HTTP/2 fields (RFC 9113 §8.2.2).
                assert!(e.request.headers.get("upgrade").is_none());
            }
            let one = &evs[0];
            assert_eq!(
                one.request.headers.get("user-agent"),
                Some("nghttp2/1.52.0")
            );
            assert_eq!(
                one.response.as_ref().unwrap().body.bytes().unwrap(),
                br#"{"id":1,"name":"user1"}"#.to_vec()
            );
        }
    }

    /// curl `--http2` on `http://` (curl 7.88) upgrades too; its HTTP2-Settings (with
    /// SETTINGS_INITIAL_WINDOW_SIZE 32 MiB) initialise the server-side flow control.
    #[test]
    fn curl_upgrade_h2c() {
        let (evs, stats) = session_of(&dump("curl_upgrade"), 5, false);
        assert_eq!(stats.upgrades, 1);
        assert_eq!(evs.len(), 1);
        let e = &evs[0];
        assert_eq!(e.stream_id, Some(1));
        assert_eq!(e.request.path, "/api/user4.json");
        assert_eq!(e.request.headers.get("user-agent"), Some("curl/7.88.1"));
        let r = e.response.as_ref().unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(
            r.body.bytes().unwrap(),
            br#"{"id":4,"name":"user4"}"#.to_vec()
        );
        assert!(e.anomalies.is_empty(), "{:?}", e.anomalies);
    }

    /// A server that ignores `Upgrade: h2c` answers in HTTP/1.1: the connection stays HTTP/1,
    /// the request pipelined behind the upgrade request (held meanwhile) is parsed afterwards.
    #[test]
    fn upgrade_refused_stays_http1() {
        let curl = &dump("curl_upgrade")[0].1;
        assert!(curl.starts_with(b"GET /api/user4.json HTTP/1.1\r\n"));
        let mut client = curl.clone();
        client.extend_from_slice(b"GET /next HTTP/1.1\r\nHost: a\r\n\r\n");
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec();
        let records = vec![
            (Side::Client, client),
            (Side::Server, ok.clone()),
            (Side::Server, ok),
        ];
        for piece in [1, 9, usize::MAX] {
            let (evs, stats) = session_of(&records, piece, false);
            assert_eq!((stats.h2_connections, stats.upgrades), (0, 0));
            let got: Vec<(&str, &str, u16)> = evs
                .iter()
                .map(|e| {
                    (
                        e.http_version.as_str(),
                        e.request.path.as_str(),
                        e.response.as_ref().unwrap().status,
                    )
                })
                .collect();
            assert_eq!(
                got,
                [("1.1", "/api/user4.json", 200), ("1.1", "/next", 200)],
                "piece {piece}"
            );
        }
        // No answer while the client goes on sending: the wait is bounded by the header limit
        // (counted), then the bytes are read as HTTP/1.
        let mut flood = curl.clone();
        flood.extend(std::iter::repeat_n(
            b'x',
            SessionConfig::default().max_header_bytes + 1,
        ));
        let (_, stats) = session_of(&[(Side::Client, flood)], 4096, false);
        assert_eq!(stats.h2c_wait_overflow, 1);
    }
}
