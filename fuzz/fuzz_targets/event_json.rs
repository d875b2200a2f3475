//! The sensor's hand-written JSON encoder (`encode_event_into`, unsafe word-at-a-time string
//! escaping) against serde_json on arbitrary text in every string position: the outputs must
//! be byte-identical (RFC 8259 §7 escaping with serde_json's choices) and never overrun.
#![no_main]
use apitap_schema::{Header, decode_event, encode_event_into};
use libfuzzer_sys::fuzz_target;

/// A recorded event (tests/fixtures/pcap/keepalive.events.jsonl, first line) to vary.
const TEMPLATE: &str = include_str!("../../tests/fixtures/pcap/keepalive.events.jsonl");

fuzz_target!(|data: &[u8]| {
    let line = TEMPLATE.lines().next().expect("fixture has events");
    let mut e = decode_event(line.as_bytes()).expect("fixture decodes");
    let text = String::from_utf8_lossy(data).into_owned();
    // Split at a char boundary chosen by the input so short and long strings both occur.
    let cut = (0..=text.len())
        .rev()
        .find(|&i| text.is_char_boundary(i) && i <= usize::from(data.first().copied().unwrap_or(0)))
        .unwrap_or(0);
    let (a, b) = text.split_at(cut);
    e.request.path = a.to_owned();
    e.request.query = Some(b.to_owned());
    e.request.headers.push(Header { name: b.to_owned(), value: a.to_owned() });
    e.request.body.data = text.clone();
    if let Some(r) = e.response.as_mut() {
        r.reason = b.to_owned();
        r.body.data = format!("{b}{a}");
    }
    let mut fast = Vec::new();
    encode_event_into(&e, &mut fast);
    assert_eq!(fast, serde_json::to_vec(&e).expect("serde encodes"));
});
