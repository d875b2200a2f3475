//! The recorded httpbin capture (real sensor events, every httpbin operation) shared by the
//! analyzer benches.

use std::io::Read as _;

use apitap_schema::{ApiEvent, decode_event};

/// The events of `tests/data/httpbin/events.jsonl.gz`.
pub fn httpbin_events() -> Vec<ApiEvent> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/httpbin/events.jsonl.gz"
    );
    let gz = std::fs::read(path).expect("fixture");
    let mut text = String::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_string(&mut text)
        .expect("gzip");
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|l| decode_event(l.as_bytes()).expect("event"))
        .collect()
}
