//! The recorded captures shared by the analyzer benches: httpbin (real sensor events, every
//! httpbin operation) and the third-party inventory apps (`tests/data/inventory_apps`).

use std::io::Read as _;

use apitap_schema::{ApiEvent, decode_event};

/// The events of `tests/data/httpbin/events.jsonl.gz`.
pub fn httpbin_events() -> Vec<ApiEvent> {
    fixture_events("httpbin/events.jsonl.gz")
}

/// The events of a gzipped JSON-lines fixture under `tests/data/`.
pub fn fixture_events(rel: &str) -> Vec<ApiEvent> {
    let path = format!("{}/tests/data/{rel}", env!("CARGO_MANIFEST_DIR"));
    let gz = std::fs::read(&path).expect("fixture");
    let mut text = String::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_string(&mut text)
        .expect("gzip");
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|l| decode_event(l.as_bytes()).expect("event"))
        .collect()
}
