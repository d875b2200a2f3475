//! What the detection integration tests share: the recorded events (crawl tools; the
//! distributed stuffing of `tests/fixtures/attacks/stuffing_distributed.pcapng` and the
//! distributed crawl of `crawl_distributed.pcapng` through `apitap-sensor replay
//! --sensor-id recorded`, in `data/stuffing/distributed.events.jsonl.gz` and
//! `data/crawl/distributed.events.jsonl.gz`, `gzip -9 -n`).

use std::io::Read as _;

use apitap_schema::ApiEvent;

/// The events of `detect/tests/data/crawl/<name>.events.jsonl.gz` (real sensor output of a
/// recorded tool run, see `crawl_tools.rs`), in time order.
#[allow(dead_code)] // not every test crate reads every fixture
pub fn events(name: &str) -> Vec<ApiEvent> {
    events_of(&format!("crawl/{name}"))
}

/// The events of `detect/tests/data/<path>.events.jsonl.gz`, in time order.
#[allow(dead_code)] // not every test crate reads every fixture
pub fn events_of(path: &str) -> Vec<ApiEvent> {
    let path = format!(
        "{}/tests/data/{path}.events.jsonl.gz",
        env!("CARGO_MANIFEST_DIR")
    );
    let gz = std::fs::File::open(&path).expect("fixture");
    let mut text = String::new();
    flate2::read::GzDecoder::new(gz)
        .read_to_string(&mut text)
        .expect("gzip");
    let mut evs: Vec<ApiEvent> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("event"))
        .collect();
    evs.sort_by_key(|e| e.request_start_unix_us);
    evs
}
