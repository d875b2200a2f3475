//! The MessagePack encoding (issue 21) carries every recorded event of the repository
//! unchanged: each event of the pcap goldens (`tests/fixtures/pcap/*.events.jsonl`) and of the
//! crawl recordings (`detect/tests/data/crawl/*.events.jsonl.gz`, real wget/httrack/browser
//! traffic), decoded from JSON, encoded as MessagePack and decoded back, is the same event;
//! read generically it is the same document as the JSON; and it is never larger.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use std::io::Read as _;
use std::path::{Path, PathBuf};

use apitap_schema::{EventEncoding, decode_event, encode_event, encode_event_msgpack_into};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn files(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    v.sort();
    v
}

#[test]
fn every_recorded_event_round_trips_through_msgpack() {
    let mut texts = Vec::new();
    for p in files(&root().join("tests/fixtures/pcap"), ".events.jsonl") {
        texts.push((p.clone(), std::fs::read_to_string(&p).unwrap()));
    }
    for p in files(&root().join("detect/tests/data/crawl"), ".events.jsonl.gz") {
        let mut s = String::new();
        flate2::read::GzDecoder::new(std::fs::File::open(&p).unwrap())
            .read_to_string(&mut s)
            .unwrap();
        texts.push((p, s));
    }
    let (mut events, mut json_bytes, mut msgpack_bytes) = (0, 0, 0);
    let mut out = Vec::new();
    for (path, text) in &texts {
        for (i, line) in text.lines().filter(|l| !l.trim().is_empty()).enumerate() {
            let e = decode_event(line.as_bytes())
                .unwrap_or_else(|err| panic!("{}:{}: {err}", path.display(), i + 1));
            out.clear();
            encode_event_msgpack_into(&e, &mut out);
            let back = EventEncoding::Msgpack.decode(&out).unwrap();
            assert_eq!(back, e, "{}:{}", path.display(), i + 1);
            let generic: serde_json::Value = rmp_serde::from_slice(&out).unwrap();
            let json = encode_event(&e);
            assert_eq!(
                generic,
                serde_json::from_slice::<serde_json::Value>(&json).unwrap(),
                "{}:{}",
                path.display(),
                i + 1
            );
            assert!(out.len() <= json.len(), "{}:{}", path.display(), i + 1);
            events += 1;
            json_bytes += json.len();
            msgpack_bytes += out.len();
        }
    }
    assert!(events > 500, "only {events} recorded events found");
    eprintln!(
        "{events} events: JSON {json_bytes} bytes, MessagePack {msgpack_bytes} bytes ({:.3}×)",
        msgpack_bytes as f64 / json_bytes as f64
    );
}
