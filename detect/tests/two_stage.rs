//! Two-stage processing in process (issue 18, R-THR-3): the recorded distributed credential
//! stuffing (`tests/fixtures/attacks/stuffing_distributed`: curl from 60 addresses, 240
//! attempts beside 240 benign logins, replayed through the real sensor decoder) split across
//! 1, 2 and 4 simulated stage-1 engines — each event to the partition of its real bus key
//! (`client ip|server ip|server port`, `apitap_bus::producer::event_key`) as librdkafka's
//! default partitioner picks it (CRC32 of the key modulo 4 partitions), partitions dealt to
//! the engines like a consumer group's range assignment — and their partials merged by 1, 2
//! or 4 stage-2 [`GlobalEngine`]s (each owning the partials keys of its partitions) give the
//! same campaigns (detector, kind, actor keys, endpoint) with one Create each as one engine
//! without two-stage; without stage 2 the split engines miss the campaign (the problem the
//! two stages solve). The recorded distributed crawl (`crawl_distributed`: one wget fleet
//! from 24 addresses, 163 requests beside 139 benign ones) goes the same way.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use std::collections::BTreeMap;

use apitap_detect::global::GlobalEngine;
use apitap_detect::{Activity, DetectConfig, Detector, Engine, EventContext, Finding};
use apitap_labels::HashKey;
use apitap_schema::ApiEvent;

mod common;

const PARTITIONS: u32 = 4;
const SLICE_SECS: u64 = 10;

fn key() -> HashKey {
    HashKey::from_secret(b"two-stage")
}

/// The partition of a message key, as librdkafka's default `consistent_random`
/// partitioner picks it for a non-empty key.
fn partition_of(key: &str, partitions: u32) -> u32 {
    crc32fast::hash(key.as_bytes()) % partitions
}

fn event_partition(e: &ApiEvent) -> u32 {
    let k = format!("{}|{}|{}", e.client.ip, e.server.ip, e.server.port);
    partition_of(&k, PARTITIONS)
}

/// What identifies a campaign across runs: detector, kind, actor keys, endpoint.
type CampaignId = (Detector, &'static str, Vec<(String, String)>, String);

fn id_of(f: &Finding) -> CampaignId {
    (
        f.detector,
        f.kind,
        f.actor
            .iter()
            .map(|a| (a.kind.to_owned(), a.value.clone()))
            .collect(),
        format!(
            "{} {} {}",
            f.endpoint.service, f.endpoint.method, f.endpoint.template
        ),
    )
}

/// Creates per campaign, and every uid's activities.
fn creates(out: &[Finding]) -> BTreeMap<CampaignId, usize> {
    let mut m = BTreeMap::new();
    for f in out.iter().filter(|f| f.activity == Activity::Create) {
        *m.entry(id_of(f)).or_insert(0) += 1;
    }
    m
}

/// One engine over everything, without two-stage.
fn reference(evs: &[ApiEvent]) -> Vec<Finding> {
    let mut eng = Engine::with_hash_key(DetectConfig::default(), &key()).unwrap();
    eng.run(evs)
}

/// `members` stage-1 engines (range assignment of the partitions) and `members` stage-2
/// engines; partials flushed every second of stream time (the analyzer's flush). Returns
/// the stage-1 findings, the stage-2 findings and the partials merged.
fn two_stage(evs: &[ApiEvent], members: u32, stage2: bool) -> (Vec<Finding>, Vec<Finding>, u64) {
    let cfg = DetectConfig::default();
    let mut s1: Vec<Engine> = (0..members)
        .map(|_| {
            let mut e = Engine::with_hash_key(cfg.clone(), &key()).unwrap();
            if stage2 {
                e.enable_partials(SLICE_SECS);
            }
            e
        })
        .collect();
    let mut s2: Vec<GlobalEngine> = (0..members)
        .map(|_| GlobalEngine::new(cfg.clone(), &key(), SLICE_SECS, 20).unwrap())
        .collect();
    // Range assignment: partition p to member p * members / PARTITIONS.
    let owner = |p: u32| (p * members / PARTITIONS) as usize;
    let (mut out1, mut out2) = (Vec::new(), Vec::new());
    let mut merged = 0;
    let mut flush = |s1: &mut Vec<Engine>,
                     s2: &mut Vec<GlobalEngine>,
                     now: u64,
                     out1: &mut Vec<Finding>,
                     out2: &mut Vec<Finding>| {
        for e in s1.iter_mut() {
            out1.extend(e.tick(now));
            for p in e.take_partials() {
                // Round trip through the wire form, to the owner of the key's partition.
                let p = apitap_detect::partial::Partial::decode(&p.encode().unwrap()).unwrap();
                let part = partition_of(&p.message_key(), PARTITIONS);
                s2[owner(part)].merge(&p, Some(part as i32));
                merged += 1;
            }
        }
        for g in s2.iter_mut() {
            out2.extend(g.tick(now));
        }
    };
    let mut next = evs[0].request_start_unix_us;
    for e in evs {
        while e.request_start_unix_us >= next {
            flush(&mut s1, &mut s2, next, &mut out1, &mut out2);
            next += 1_000_000;
        }
        let p = event_partition(e);
        let m = &mut s1[owner(p)];
        m.set_partition(Some(p as i32));
        m.observe(e, &EventContext::default());
    }
    flush(&mut s1, &mut s2, next, &mut out1, &mut out2);
    for e in &mut s1 {
        out1.extend(e.finish());
    }
    for g in &mut s2 {
        out2.extend(g.finish());
    }
    (out1, out2, merged)
}

/// Sources of the distributed campaign's Close.
fn close_sources(out: &[Finding]) -> u64 {
    out.iter()
        .filter(|f| f.kind == "distributed" && f.activity == Activity::Close)
        .map(|f| f.source_count)
        .max()
        .unwrap()
}

fn distributed(out: &[Finding]) -> Vec<Finding> {
    out.iter()
        .filter(|f| f.kind == "distributed")
        .cloned()
        .collect()
}

/// `evs` (a recording of one distributed campaign of `detector`) through 1, 2 and 4 members:
/// the single engine's `distributed` campaign (detector, kind, actor keys, endpoint), one
/// Create and a last Close under one uid, at least 9/10 of its sources, the per-client
/// campaigns unchanged; without stage 2 four engines do not raise it as one engine does.
/// Returns the sources of each run's Close (`[1, 2, 4]` members) beside the reference's.
fn same_distributed_campaign(evs: &[ApiEvent], detector: Detector) -> ([u64; 3], u64) {
    let parts: std::collections::BTreeSet<u32> = evs.iter().map(event_partition).collect();
    assert_eq!(
        parts.len(),
        PARTITIONS as usize,
        "the recording spreads over every partition"
    );

    let whole = reference(evs);
    let want = creates(&distributed(&whole));
    assert_eq!(want.len(), 1, "{want:#?}");
    let (id, _) = want.iter().next().unwrap();
    assert_eq!(id.0, detector);
    let ref_sources = close_sources(&whole);
    let ref_create = whole
        .iter()
        .find(|f| f.kind == "distributed" && f.activity == Activity::Create)
        .unwrap()
        .time_us;
    // The per-client campaigns (none here, or the same) come from stage 1 as before.
    let want_local = creates(
        &whole
            .iter()
            .filter(|f| f.kind != "distributed")
            .cloned()
            .collect::<Vec<_>>(),
    );

    let mut sources = [0; 3];
    for (k, members) in [1, 2, 4].into_iter().enumerate() {
        let (out1, out2, merged) = two_stage(evs, members, true);
        assert!(merged > 0);
        assert!(
            distributed(&out1).is_empty(),
            "{members}: stage 1 raises no distributed kind"
        );
        assert_eq!(creates(&out2), want, "{members} members");
        // Every uid has one Create and ends with one Close.
        let mut by_uid: BTreeMap<&str, Vec<Activity>> = BTreeMap::new();
        for f in &out2 {
            by_uid.entry(&f.uid).or_default().push(f.activity);
        }
        assert_eq!(by_uid.len(), 1, "{members}: {by_uid:?}");
        for acts in by_uid.values() {
            assert_eq!(acts.iter().filter(|a| **a == Activity::Create).count(), 1);
            assert_eq!(acts.last(), Some(&Activity::Close));
        }
        let close = out2.iter().find(|f| f.activity == Activity::Close).unwrap();
        let create = out2
            .iter()
            .find(|f| f.activity == Activity::Create)
            .unwrap();
        eprintln!(
            "{detector:?}, {members} members: {merged} partials, Create {} s after the \
             reference's, {} sources (reference {ref_sources}), {} events",
            (create.time_us as i64 - ref_create as i64) / 1_000_000,
            close.source_count,
            close.events
        );
        assert!(
            close.source_count >= ref_sources * 9 / 10,
            "{members}: {} sources against {ref_sources}",
            close.source_count
        );
        assert_eq!(
            creates(&out1),
            want_local,
            "{members} members: per-client campaigns"
        );
        sources[k] = close.source_count;
    }

    // Without stage 2, four engines see a quarter of the sources each: the campaign is
    // raised several times (or missed).
    let (out1, _, _) = two_stage(evs, 4, false);
    let split = creates(&distributed(&out1));
    eprintln!("{detector:?}, 4 engines without stage 2: {split:?}");
    assert_ne!(split, want, "four engines alone raise {split:?}");
    (sources, ref_sources)
}

#[test]
fn split_stage_one_engines_with_stage_two_give_the_single_engine_campaigns() {
    let evs = common::events_of("stuffing/distributed");
    assert_eq!(evs.len(), 480);
    same_distributed_campaign(&evs, Detector::CredentialStuffing);
}

/// The stage-2 owner stops after the Create (a SIGKILL: only its last checkpoint survives)
/// and a new owner restores its `g/…` records: the campaign goes on with the same uid and
/// no second Create.
#[test]
fn a_restored_stage_two_owner_continues_the_campaign_without_a_second_create() {
    let evs = common::events_of("stuffing/distributed");
    let cfg = DetectConfig::default();
    let mut s1 = Engine::with_hash_key(cfg.clone(), &key()).unwrap();
    s1.enable_partials(SLICE_SECS);
    let mut owner = GlobalEngine::new(cfg.clone(), &key(), SLICE_SECS, 20).unwrap();
    let mut store: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let (mut before, mut after) = (Vec::new(), Vec::new());
    let mut restored = None::<GlobalEngine>;
    let mut created_at = None;
    let mut next = evs[0].request_start_unix_us;
    let mut i = 0;
    while i <= evs.len() {
        let due = evs.get(i).is_none_or(|e| e.request_start_unix_us >= next);
        if !due {
            s1.observe(&evs[i], &EventContext::default());
            i += 1;
            continue;
        }
        let killed = restored.is_some();
        let g = restored.as_mut().unwrap_or(&mut owner);
        for p in s1.take_partials() {
            g.merge(&p, Some(0));
        }
        let out = g.tick(next);
        if !killed && created_at.is_none() && out.iter().any(|f| f.activity == Activity::Create) {
            created_at = Some(next);
        }
        if killed {
            after.extend(out)
        } else {
            before.extend(out)
        }
        // The analyzer's flush: checkpoint after the alerts are out.
        let changes = g.checkpoint();
        for k in &changes.delete {
            store.remove(k);
        }
        store.extend(changes.put);
        if !killed && created_at.is_some_and(|t| next >= t + 20_000_000) {
            // SIGKILL; the new owner reads the state topic.
            let mut g = GlobalEngine::new(cfg.clone(), &key(), SLICE_SECS, 20).unwrap();
            for (k, v) in &store {
                use apitap_detect::checkpoint::Restored;
                let r = g.restore(k, v, &|p| p == Some(0)).unwrap();
                if k.starts_with("g/c/") {
                    assert_eq!(r, Restored::Campaign);
                } else if k.starts_with("g/b/") {
                    // The login endpoint's stage-2 failure-ratio baseline.
                    assert!(matches!(r, Restored::Baseline(_)), "{k}: {r:?}");
                } else {
                    assert!(k.starts_with("g/w/"), "{k}");
                    assert!(matches!(r, Restored::Window), "{k}: {r:?}");
                }
            }
            g.restore_done();
            assert_eq!(g.open_campaigns(), 1);
            restored = Some(g);
        }
        if i == evs.len() {
            break;
        }
        next += 1_000_000;
    }
    let g = restored.as_mut().expect("killed mid-campaign");
    after.extend(g.finish());
    let creates_before: Vec<&Finding> = before
        .iter()
        .filter(|f| f.activity == Activity::Create)
        .collect();
    assert_eq!(creates_before.len(), 1, "{before:#?}");
    let uid = &creates_before[0].uid;
    assert!(!after.is_empty());
    assert!(
        after.iter().all(|f| f.activity != Activity::Create),
        "{after:#?}"
    );
    assert!(after.iter().all(|f| &f.uid == uid), "{after:#?}");
    assert_eq!(after.last().map(|f| f.activity), Some(Activity::Close));
    // Garbage under the stage-2 prefix is an error, never a panic.
    assert!(
        g.restore("g/c/0000000000000001", b"\x00garbage", &|_| true)
            .is_err()
    );
}

/// The recorded distributed crawl (`tests/fixtures/attacks/crawl_distributed`: one wget fleet
/// from 24 addresses of 10.213.1.0/24, 6–10 pages each, 163 requests beside 139 of 4 benign
/// users, replayed through the real sensor decoder into
/// `data/crawl/distributed.events.jsonl.gz`) routed by its real bus keys: every address
/// alone under the per-source thresholds (the single engine raises no `per_source`
/// crawling), the fleet's one Wget fingerprint over the distributed ones; the single
/// engine's crawling `distributed` campaign is raised once by the two stages with 1, 2 and 4
/// members, never counting more sources than the fleet has. (It replaces the wget --mirror
/// recording re-addressed over 24 addresses, which added nothing this does not: the same
/// fingerprint fleet through the same partials, from one tool run squeezed into 0.5 s
/// instead of 24 real sources over 28 s and several slices.)
#[test]
fn the_recorded_distributed_crawl_gives_the_single_engine_campaign() {
    let evs = common::events_of("crawl/distributed");
    assert_eq!(evs.len(), 302);
    let fleet = |e: &ApiEvent| match e.client.ip {
        std::net::IpAddr::V4(v) => v.octets()[..3] == [10, 213, 1],
        std::net::IpAddr::V6(_) => false,
    };
    let addrs: std::collections::BTreeSet<_> = evs
        .iter()
        .filter(|e| fleet(e))
        .map(|e| e.client.ip)
        .collect();
    assert_eq!(addrs.len(), 24);
    let whole = reference(&evs);
    let per_source: Vec<&Finding> = whole
        .iter()
        .filter(|f| f.detector == Detector::Crawling && f.kind != "distributed")
        .collect();
    assert!(per_source.is_empty(), "{per_source:#?}");
    let (sources, ref_sources) = same_distributed_campaign(&evs, Detector::Crawling);
    // Source counts past 8 are sketch estimates (256 HyperLogLog registers, ~6.5 % standard
    // error): the 24 addresses within 10 %.
    let fleet_size = 22..=26;
    assert!(fleet_size.contains(&ref_sources), "{ref_sources}");
    for (members, n) in [1, 2, 4].into_iter().zip(sources) {
        // The window's sources, those before the trigger included (≥ the single engine's,
        // which counts from its campaign's first hit), never more than the fleet's.
        assert!(
            n >= ref_sources && fleet_size.contains(&n),
            "{members}: {n}"
        );
    }
}

/// Campaigns of the account kinds stage 2 raises.
fn on_account(out: &[Finding]) -> Vec<Finding> {
    out.iter()
        .filter(|f| matches!(f.kind, "account_sharing" | "distributed_on_account"))
        .cloned()
        .collect()
}

/// `evs` with the attacker's (10.213.0.2) events re-addressed in turn over `addresses`.
fn re_addressed(mut evs: Vec<ApiEvent>, addresses: &[std::net::IpAddr]) -> Vec<ApiEvent> {
    let attacker: std::net::IpAddr = "10.213.0.2".parse().unwrap();
    let mut i = 0;
    for e in evs.iter_mut().filter(|e| e.client.ip == attacker) {
        e.client.ip = addresses[i % addresses.len()];
        i += 1;
    }
    assert!(i > 0, "the recording has attacker events");
    evs
}

/// One account from many sources, through 1, 2 and 4 members: stage 2 raises the single
/// engine's account campaign (same detector, kind, actor — the account alone — and
/// endpoint), one Create and one Close under one uid; stage 1 raises no account kind and
/// the rest as one engine does; no clear user name in any partial or finding.
fn same_account_campaign(evs: &[ApiEvent], kind: &str, clear: &str) {
    let parts: std::collections::BTreeSet<u32> = evs.iter().map(event_partition).collect();
    assert!(parts.len() > 1, "the sources spread over partitions");
    let whole = reference(evs);
    let want = creates(&on_account(&whole));
    assert_eq!(want.len(), 1, "{want:#?}");
    let (id, _) = want.iter().next().unwrap();
    assert_eq!(id.1, kind);
    assert_eq!(id.2.len(), 1, "the actor is the account alone: {:?}", id.2);
    let ref_sources = whole
        .iter()
        .filter(|f| f.kind == kind && f.activity == Activity::Close)
        .map(|f| f.source_count)
        .max()
        .unwrap();
    let want_local = creates(
        &whole
            .iter()
            .filter(|f| f.kind != kind)
            .cloned()
            .collect::<Vec<_>>(),
    );
    for members in [1, 2, 4] {
        let (out1, out2, merged) = two_stage(evs, members, true);
        assert!(on_account(&out1).is_empty(), "{members}: {out1:#?}");
        assert_eq!(creates(&on_account(&out2)), want, "{members} members");
        let mut by_uid: BTreeMap<&str, Vec<Activity>> = BTreeMap::new();
        let mine = on_account(&out2);
        for f in &mine {
            by_uid.entry(&f.uid).or_default().push(f.activity);
        }
        assert_eq!(by_uid.len(), 1, "{members}: {by_uid:?}");
        let close = out2
            .iter()
            .find(|f| f.kind == kind && f.activity == Activity::Close)
            .unwrap();
        eprintln!(
            "{kind}, {members} members: {merged} partials, {} sources (reference {ref_sources}), {} events",
            close.source_count, close.events
        );
        assert_eq!(close.source_count, ref_sources, "{members} members");
        assert_eq!(
            creates(&out1),
            want_local,
            "{members}: per-client campaigns"
        );
        let json = serde_json::to_string(&out2).unwrap();
        assert!(!json.contains(clear), "clear user name in {json}");
    }
    // Without stage 2, the split engines see a part of the sources each.
    let (out1, _, _) = two_stage(evs, 4, false);
    let split = creates(&on_account(&out1));
    eprintln!("{kind}, 4 engines without stage 2: {split:?}");
    assert_ne!(split, want, "four engines alone raise {split:?}");
}

/// The recorded patator run guessing bob's password (`brute_patator_json`, real sensor
/// output in `data/brute/patator.events.jsonl.gz`), the attacker's 400 attempts
/// **re-addressed** over 24 sources in turn (no distributed recording exists): brute force
/// `distributed_on_account`.
#[test]
fn a_re_addressed_brute_force_on_one_account_gives_the_single_engine_campaign() {
    let sources: Vec<std::net::IpAddr> = (0..24u8)
        .map(|i| std::net::IpAddr::from([10, 77, i / 8, i % 8 + 1]))
        .collect();
    let evs = re_addressed(common::events_of("brute/patator"), &sources);
    same_account_campaign(&evs, "distributed_on_account", "\"bob\"");
}

/// The recorded bulk export (`bulk_export`: curl with bob's session pulls 20 pages), the
/// attacker's events **re-addressed** over 10 addresses in 10 /24 subnets: the account used
/// from many subnets, abnormal access `account_sharing`.
#[test]
fn a_re_addressed_account_gives_the_single_engine_account_sharing_campaign() {
    let sources: Vec<std::net::IpAddr> = (0..10u8)
        .map(|i| std::net::IpAddr::from([10, 77, 10 + i, 5]))
        .collect();
    let evs = re_addressed(common::events_of("sharing/bulk_export"), &sources);
    same_account_campaign(&evs, "account_sharing", "\"bob\"");
}

/// One stage-1 engine, stage 2 checkpointed every second of stream time into a store (the
/// state topic); with `handover = Some((at, restore))`, at stream time `at` the owner is
/// replaced by a new engine which restores every record of the store when `restore` (the
/// next owner's assignment) or starts empty. Returns stage 2's findings and the window
/// buckets restored.
fn with_hand_over(evs: &[ApiEvent], handover: Option<(u64, bool)>) -> (Vec<Finding>, u64) {
    let cfg = DetectConfig::default();
    let mut s1 = Engine::with_hash_key(cfg.clone(), &key()).unwrap();
    s1.enable_partials(SLICE_SECS);
    let mut g = GlobalEngine::new(cfg.clone(), &key(), SLICE_SECS, 20).unwrap();
    let mut store: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut out = Vec::new();
    let mut restored = 0;
    let mut next = evs[0].request_start_unix_us;
    let mut flush = |g: &mut GlobalEngine, s1: &mut Engine, now: u64| {
        for p in s1.take_partials() {
            g.merge(&p, Some(0));
        }
        out.extend(g.tick(now));
        let changes = g.checkpoint();
        for k in &changes.delete {
            store.remove(k);
        }
        store.extend(changes.put);
        if let Some((at, restore)) = handover
            && now == at
        {
            let mut new = GlobalEngine::new(cfg.clone(), &key(), SLICE_SECS, 20).unwrap();
            if restore {
                for (k, v) in &store {
                    new.restore(k, v, &|p| p == Some(0)).unwrap();
                }
                new.restore_done();
                restored = new.metrics().window_buckets_restored;
            }
            *g = new;
        }
    };
    for e in evs {
        while e.request_start_unix_us >= next {
            flush(&mut g, &mut s1, next);
            next += 1_000_000;
        }
        s1.observe(e, &EventContext::default());
    }
    flush(&mut g, &mut s1, next);
    out.extend(g.finish());
    (out, restored)
}

/// A hand-over of stage 2 mid-window — halfway between the campaign's first partial and its
/// Create, the condition not holding yet — to a new owner that restores the `g/w/…`
/// window records: the Create comes at the same stream second with the same uid as without
/// a hand-over. A new owner starting with empty windows raises it later or not at all. Both
/// distributed recordings: the stuffing and the crawl.
#[test]
fn a_hand_over_mid_window_restores_the_windows_and_raises_on_time() {
    // The recorded patator and bulk-export runs last under two seconds: their Create comes
    // within the second of their first event, there is no mid-window hand-over to make.
    // Both distributed recordings come from 10.213.1.0/24.
    let kind = "distributed";
    for recording in ["stuffing/distributed", "crawl/distributed"] {
        let evs = common::events_of(recording);
        let create = |out: &[Finding]| {
            out.iter()
                .find(|f| f.kind == kind && f.activity == Activity::Create)
                .map(|f| (f.uid.clone(), f.time_us))
        };
        let (whole, _) = with_hand_over(&evs, None);
        let (uid, at) = create(&whole).expect("a campaign");
        // The attack's first event (the window's start) and halfway to the Create, on the
        // second grid.
        let first = evs
            .iter()
            .find(|e| match e.client.ip {
                std::net::IpAddr::V4(v) => v.octets()[..3] == [10, 213, 1],
                std::net::IpAddr::V6(_) => false,
            })
            .map(|e| e.request_start_unix_us)
            .unwrap();
        let t0 = evs[0].request_start_unix_us;
        let mid = first + (at - first) / 2;
        let handover = t0 + (mid - t0) / 1_000_000 * 1_000_000;
        assert!(handover > first && handover < at, "{recording}: mid-window");
        let (out, restored) = with_hand_over(&evs, Some((handover, true)));
        eprintln!(
            "{recording}: hand-over {} s after the first event, {} s before the Create; {restored} \
             buckets restored",
            (handover - first) / 1_000_000,
            (at - handover) / 1_000_000
        );
        assert!(restored > 0, "{recording}");
        assert_eq!(
            create(&out),
            Some((uid.clone(), at)),
            "{recording}: on time"
        );
        let creates = out
            .iter()
            .filter(|f| f.activity == Activity::Create && f.kind == kind)
            .count();
        assert_eq!(creates, 1, "{recording}");
        let (cold, _) = with_hand_over(&evs, Some((handover, false)));
        let late = create(&cold);
        eprintln!("{recording}: without the windows: {late:?} (reference at {at})");
        assert!(
            late.as_ref().is_none_or(|(_, t)| *t > at),
            "{recording}: {late:?}"
        );
    }
}
