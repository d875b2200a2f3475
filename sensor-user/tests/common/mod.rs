//! Shared by the replay tests: a recorded capture through `replay_with` with a configuration's
//! `[payload]` section, into an event file.

use std::path::Path;

use apitap_schema::SensorInfo;
use apitap_sensor::config::{Config, SinkKind, SinkSection};
use apitap_sensor::minimise::Minimiser;
use apitap_sensor::replay::{ReplaySummary, replay_with};
use apitap_sensor::sink::Sink;

/// Replays `tests/fixtures/pcap/<fixture>.pcapng` with `cfg` (sensor id `id`) into
/// `dir/events.jsonl`; returns the file's text and the summary.
pub fn replay_fixture(
    dir: &Path,
    fixture: &str,
    cfg: &Config,
    id: &str,
) -> (String, ReplaySummary) {
    cfg.validate_offline().unwrap();
    let mut minimiser = Minimiser::from_config(&cfg.payload).unwrap();
    let out = dir.join("events.jsonl");
    let mut sink = Sink::open(&SinkSection {
        kind: SinkKind::File,
        path: Some(out.clone()),
    })
    .unwrap();
    let sensor = SensorInfo {
        id: id.into(),
        host: id.into(),
        node: None,
    };
    let pcap = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/pcap")
        .join(format!("{fixture}.pcapng"));
    let summary = replay_with(&pcap, cfg.reassembly(), sensor, &mut minimiser, &mut sink).unwrap();
    drop(sink);
    (std::fs::read_to_string(&out).unwrap(), summary)
}
