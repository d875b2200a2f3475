//! The analyzer's event decoder (`decode_event`: a direct reader of the sensor's compact
//! events, serde_json for every other document) against serde_json's derived decode alone, on
//! arbitrary documents and on recorded sensor events edited by the input (so that most runs
//! reach the direct reader's paths): the same event, or an error, from both. The direct reader
//! must never accept what serde_json refuses, nor read a value differently.
#![no_main]
use apitap_schema::{ApiEvent, SCHEMA_MAJOR, decode_event};
use libfuzzer_sys::fuzz_target;

/// Recorded events (tests/fixtures/pcap/keepalive.events.jsonl) to edit.
const TEMPLATE: &str = include_str!("../../tests/fixtures/pcap/keepalive.events.jsonl");

fn check(doc: &[u8]) {
    let ours = decode_event(doc);
    let theirs = serde_json::from_slice::<ApiEvent>(doc);
    match (ours, theirs) {
        (Ok(a), Ok(b)) => assert_eq!(a, b),
        (Ok(a), Err(e)) => panic!("decoded what serde_json refuses ({e}): {a:?}"),
        // Only an event of a major version this analyzer cannot read is refused.
        (Err(_), Ok(b)) => assert!(
            !b.schema_version.starts_with(&format!("{SCHEMA_MAJOR}.")),
            "refused a readable event: {b:?}"
        ),
        (Err(_), Err(_)) => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        check(rest);
        return;
    }
    // Edit a recorded event: replace `cut` bytes at `at` with the rest of the input.
    let lines: Vec<&str> = TEMPLATE.lines().collect();
    let mut doc = lines[usize::from(mode >> 1) % lines.len()].as_bytes().to_vec();
    let [a, b, cut, edit @ ..] = rest else {
        check(&doc);
        return;
    };
    let at = usize::from(u16::from_le_bytes([*a, *b])) % (doc.len() + 1);
    let end = (at + usize::from(*cut % 16)).min(doc.len());
    doc.splice(at..end, edit.iter().copied());
    check(&doc);
});
