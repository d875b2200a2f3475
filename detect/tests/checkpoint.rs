//! Durable detection state (issue 18, R-THR-5): an engine that stops mid-campaign and a new
//! engine restored from its checkpoint records together report the campaign once (one Create,
//! then Updates and a Close with the same uid), as one engine over the whole input does; the
//! endpoint baselines come back with their sample counts; bad records are refused, never a
//! panic.
//!
//! Input: the httrack crawl of `detect/tests/data/crawl/httrack.events.jsonl.gz` (real tool
//! traffic, 201 requests one a second; see `crawl_tools.rs`), split after 120 s.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use std::collections::HashMap;

use apitap_detect::checkpoint::{Restored, StateError};
use apitap_detect::{Activity, DetectConfig, Detector, Engine, EventContext, Finding};
use apitap_labels::HashKey;
use apitap_schema::ApiEvent;

mod common;
use common::events;

fn config() -> DetectConfig {
    let mut cfg = DetectConfig::default();
    // Short baseline buckets, so that 200 s of traffic learn some.
    cfg.baseline.bucket_secs = 10;
    cfg
}

fn engine() -> Engine {
    Engine::with_hash_key(config(), &HashKey::from_secret(b"checkpoint")).expect("engine")
}

/// Feeds `evs`, ticking every second of stream time from `*next_tick`.
fn feed(eng: &mut Engine, evs: &[ApiEvent], next_tick: &mut u64, out: &mut Vec<Finding>) {
    for e in evs {
        while e.request_start_unix_us >= *next_tick {
            out.extend(eng.tick(*next_tick));
            *next_tick += 1_000_000;
        }
        eng.set_partition(Some(3));
        eng.observe(e, &EventContext::default());
    }
}

fn crawls(out: &[Finding]) -> Vec<(Activity, String)> {
    out.iter()
        .filter(|f| f.detector == Detector::Crawling)
        .map(|f| (f.activity, f.uid.clone()))
        .collect()
}

#[test]
fn a_restored_engine_continues_the_campaign_with_one_create() {
    let evs = events("httrack");
    let start = evs[0].request_start_unix_us;
    let split = evs
        .iter()
        .position(|e| e.request_start_unix_us >= start + 120_000_000)
        .unwrap();

    // One engine over everything: the reference.
    let mut whole = engine();
    let mut tick = start;
    let mut ref_out = Vec::new();
    feed(&mut whole, &evs, &mut tick, &mut ref_out);
    ref_out.extend(whole.finish());
    let reference = crawls(&ref_out);
    assert_eq!(
        reference
            .iter()
            .filter(|(a, _)| *a == Activity::Create)
            .count(),
        1,
        "{reference:?}"
    );

    // The first engine stops after 120 s; its records go to a "topic" (latest per key).
    let mut a = engine();
    let mut tick = start;
    let mut out_a = Vec::new();
    feed(&mut a, &evs[..split], &mut tick, &mut out_a);
    let mut topic: HashMap<String, Vec<u8>> = HashMap::new();
    let changes = a.checkpoint(true);
    assert!(changes.baseline_samples > 0, "baselines learnt something");
    for (k, v) in changes.put {
        topic.insert(k, v);
    }
    let held = a.baseline_samples();
    assert_eq!(held, changes.baseline_samples);
    drop(a);
    let first = crawls(&out_a);
    assert_eq!(first[0].0, Activity::Create, "{first:?}");
    assert!(
        first[1..]
            .iter()
            .all(|(a, uid)| *a == Activity::Update && *uid == first[0].1),
        "open at the stop: {first:?}"
    );

    // A new engine restores them and gets the rest of the input.
    let mut b = engine();
    let mut samples = 0;
    let mut campaigns = 0;
    for (k, v) in &topic {
        match b.restore(k, v, &|p| p == Some(3)).unwrap() {
            Restored::Campaign => campaigns += 1,
            Restored::Baseline(n) => samples += n,
            other => panic!("{k}: {other:?}"),
        }
    }
    assert_eq!(campaigns, 1);
    assert_eq!(samples, held, "every baseline sample restored");
    assert_eq!(b.baseline_samples(), held);
    let mut out_b = Vec::new();
    feed(&mut b, &evs[split..], &mut tick, &mut out_b);
    out_b.extend(b.finish());
    let second = crawls(&out_b);
    assert!(
        second
            .iter()
            .all(|(a, uid)| *a != Activity::Create && *uid == first[0].1),
        "no second Create, same uid: {second:?}"
    );
    assert!(
        second.iter().any(|(a, _)| *a == Activity::Update),
        "{second:?}"
    );
    assert_eq!(second.last().map(|x| x.0), Some(Activity::Close));
    // The same campaign as the single engine's.
    assert_eq!(first[0].1, reference[0].1);

    // A partition not owned: its campaigns are left to their owner.
    let mut c = engine();
    for (k, v) in &topic {
        let r = c.restore(k, v, &|p| p == Some(4)).unwrap();
        assert!(r != Restored::Campaign, "{k}");
    }
    // Revoking the partition forgets its campaigns, without a Close.
    let mut d = engine();
    for (k, v) in &topic {
        d.restore(k, v, &|_| true).unwrap();
    }
    assert_eq!(d.forget_partitions(&[3]), 1);
    assert!(crawls(&d.finish()).is_empty());
}

#[test]
fn bad_records_are_refused_not_a_panic() {
    let mut e = engine();
    let all = |_: Option<i32>| true;
    assert_eq!(
        e.restore("c/00000000000000ab", b"\x00\x01garbage", &all),
        Err(StateError::Corrupt)
    );
    assert_eq!(e.restore("b/zz", b"", &all), Err(StateError::Corrupt));
    assert_eq!(e.restore("other", b"", &all), Ok(Restored::UnknownKey));
    // Truncations of a real record are all refused.
    let evs = events("httrack");
    let mut tick = evs[0].request_start_unix_us;
    let mut out = Vec::new();
    feed(&mut e, &evs, &mut tick, &mut out);
    let changes = e.checkpoint(true);
    let mut fresh = engine();
    for (k, v) in &changes.put {
        for cut in [0, 1, v.len() / 3, v.len() - 1] {
            assert!(
                fresh.restore(k, &v[..cut], &all).is_err(),
                "{k} cut at {cut}"
            );
        }
    }
    // A checkpoint after nothing changed writes no campaign again.
    assert!(e.checkpoint(false).put.is_empty());
    // Closing every campaign deletes its record.
    e.finish();
    assert!(!e.checkpoint(false).delete.is_empty());
}
