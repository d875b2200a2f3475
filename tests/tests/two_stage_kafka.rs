//! Two-stage processing on a real broker (tansu), issue 18, R-THR-3, R-OPS-1: the recorded
//! distributed credential stuffing (`tests/fixtures/attacks/stuffing_distributed`: curl from
//! 60 addresses, replayed through the real sensor decoder) on an events topic of 4, 3 and 8
//! partitions, consumed by 1, 2 and 4 analyzer processes in one consumer group with
//! `[scale_out]` on: exactly one Create of the `distributed` campaign across all processes,
//! with the actor set and endpoint of one engine's campaign on the same events (stage 1 raises
//! no `distributed` kind; stage 2, one owner per global key, raises it from every member's
//! partials); the same for the recorded distributed crawl (`crawl_distributed`, a wget fleet
//! from 24 addresses) and for brute force `distributed_on_account` (patator re-addressed). Then the stage-2 owner is SIGKILLed after the Create and
//! restarted: its campaign is restored from the `g/…` records and goes on (Updates, same
//! uid) without a second Create.
//!
//! Then a rebalance: a third member joins a group of two, and the stage-2 owner of the
//! campaign is SIGKILLed as soon as its revocation starts (inside the rebalance): the survivors
//! restore the campaign (Updates, same uid, no second Create) and the endpoint baselines.
//!
//! Needs `tansu` (required under `CI=true`) and the built `apitap-sensor` and
//! `apitap-analyzer`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use apitap_tests::analyzer::AnalyzerProcess;
use apitap_tests::broker::{Broker, free_port, require_broker, steady_group};
use apitap_tests::state_kafka::{
    analyzer_sections, creates, detections, fixture_events, metric, publish, stuffing_events,
    tempdir, wait_for,
};

/// An analyzer config: `[kafka]` as `group`, `[state]` and `[scale_out]` on (partials topic
/// of 4 partitions), 1 s flushes.
fn sections(dir: &Path, bootstrap: &str, topic: &str, group: &str, metrics: &str) -> String {
    let scale_out = format!(
        "[scale_out]\nenabled = true\npartials_topic = \"{topic}.partials\"\npartials_partitions = 4\n"
    );
    analyzer_sections(dir, [bootstrap, topic, group, metrics], "", &scale_out).unwrap()
}

fn distributed(broker: &Broker, topic: &str) -> anyhow::Result<Vec<(String, String)>> {
    detections(broker, topic, "credential_stuffing", Some("distributed"))
}

/// The single engine's campaigns of `detector`'s `kind` on `evs` (the analyzers' hash key
/// and lifecycle, `analyzer_sections`): (actor, endpoint) of each Create, as alerts render
/// them (`unmapped.apitap`).
fn reference(
    dir: &Path,
    evs: &[apitap_schema::ApiEvent],
    (detector, kind): (&str, &str),
) -> anyhow::Result<Vec<(serde_json::Value, serde_json::Value)>> {
    use apitap_detect::{DetectConfig, Engine};
    // Every member writes the same key (`analyzer_sections`).
    let key = apitap_labels::HashKey::from_secret_file(&dir.join("m0").join("hash.key"))?;
    let mut cfg = DetectConfig::default();
    cfg.lifecycle.update_interval_secs = 10;
    cfg.lifecycle.quiet_secs = 120;
    let out = Engine::with_hash_key(cfg, &key)?.run(evs);
    Ok(out
        .iter()
        .filter(|f| f.activity == apitap_detect::finding::Activity::Create && f.kind == kind)
        .map(apitap_detect::ocsf::detection_finding)
        .filter(|d| d["unmapped"]["apitap"]["detector"] == detector)
        .map(|d| {
            let a = &d["unmapped"]["apitap"];
            (a["actor"].clone(), a["endpoint"].clone())
        })
        .collect())
}

/// (actor, endpoint) of the Creates of `detector`'s `kind` on `<topic>.alerts`.
fn created(
    broker: &Broker,
    topic: &str,
    (detector, kind): (&str, &str),
) -> anyhow::Result<Vec<(serde_json::Value, serde_json::Value)>> {
    let msgs =
        broker.read_json_messages(&format!("{topic}.alerts"), 10_000, Duration::from_secs(5))?;
    Ok(msgs
        .iter()
        .map(|(_, _, d)| d)
        .filter(|d| d["activity_name"] == "Create")
        .map(|d| &d["unmapped"]["apitap"])
        .filter(|a| a["detector"] == detector && a["kind"] == kind)
        .map(|a| (a["actor"].clone(), a["endpoint"].clone()))
        .collect())
}

/// Sum of metric `name` over the members' `/metrics`.
fn total(addrs: &[String], name: &str) -> u64 {
    addrs.iter().filter_map(|a| metric(a, name).ok()).sum()
}

/// The recording through `members` analyzers in one group: one Create across all.
fn through_members(members: usize, partitions: u32) -> anyhow::Result<()> {
    let tag = format!("twostage{members}");
    let dir = tempdir(&tag);
    let evs = stuffing_events(&dir)?;
    through(
        &tag,
        &dir,
        (members, partitions),
        &evs,
        ("credential_stuffing", "distributed"),
    )
}

/// `evs` on an events topic of `partitions` through `members` analyzers in one group: one
/// engine's Create of `detector`'s `kind` (same actor set and endpoint), once across all,
/// every partial merged once or counted.
fn through(
    tag: &str,
    dir: &Path,
    (members, partitions): (usize, u32),
    evs: &[apitap_schema::ApiEvent],
    (detector, kind): (&str, &str),
) -> anyhow::Result<()> {
    let distributed =
        |broker: &Broker, topic: &str| detections(broker, topic, detector, Some(kind));
    let broker = Broker::start(&dir.join("broker"))?;
    let topic = format!("{tag}.events");
    broker.create_topic(&topic, partitions)?;
    broker.create_topic(&format!("{topic}.alerts"), 1)?;
    let mut addrs = Vec::new();
    let mut procs = Vec::new();
    for i in 0..members {
        let m = format!("127.0.0.1:{}", free_port()?);
        let d = dir.join(format!("m{i}"));
        std::fs::create_dir_all(&d)?;
        let cfg = steady_group(&sections(&d, &broker.bootstrap(), &topic, tag, &m));
        procs.push(AnalyzerProcess::start(None, &d, &cfg, "")?);
        addrs.push(m);
    }
    // Every member in the group (each assigned some events partitions) before the traffic.
    for p in &procs {
        p.wait_log("kafka partitions assigned", 1, Duration::from_secs(60))?;
    }
    publish(&broker, dir, &topic, evs)?;
    let logs = || {
        procs
            .iter()
            .map(|p| p.log_text())
            .collect::<Vec<_>>()
            .join("\n-----\n")
    };
    let consumed = || total(&addrs, "apitap_bus_events_consumed_total");
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while consumed() < evs.len() as u64 {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "{} of {} events consumed: {}",
            consumed(),
            evs.len(),
            logs()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let alerts = wait_for(
        Duration::from_secs(60),
        || distributed(&broker, &topic),
        |a| !creates(a).is_empty(),
    )
    .with_context(logs)?;
    // Every partial merged and a few more flushes: a second Create would be out by now.
    let produced = || total(&addrs, "apitap_analyzer_partials_produced_total");
    let merged = || total(&addrs, "apitap_analyzer_partials_merged_total");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let accounted = || merged() + total(&addrs, "apitap_analyzer_partials_late_dropped_total");
    while accounted() < produced() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(300));
    }
    std::thread::sleep(Duration::from_secs(3));
    let (p, m) = (produced(), merged());
    let redelivered = total(&addrs, "apitap_analyzer_partials_redelivered_total");
    let late = total(&addrs, "apitap_analyzer_partials_late_total");
    let dropped = total(&addrs, "apitap_analyzer_partials_late_dropped_total");
    let refused = total(
        &addrs,
        "apitap_analyzer_partials_rejected_total{cause=\"refused\"}",
    );
    let rejected = total(
        &addrs,
        "apitap_analyzer_partials_rejected_total{cause=\"corrupt\"}",
    );
    for mut p in procs {
        p.stop()?;
    }
    let all = distributed(&broker, &topic)?;
    // The same campaign as one engine: kind, actor set and endpoint.
    let want = reference(dir, evs, (detector, kind))?;
    let got = created(&broker, &topic, (detector, kind))?;
    assert_eq!(
        want.len(),
        1,
        "one engine raises one {kind} campaign: {want:?}"
    );
    assert_eq!(
        got, want,
        "{members} members give one engine's {kind} campaign"
    );
    if detector == "brute_force" {
        // Accounts are keyed hashes in alerts: never bob in clear.
        let raw = broker.read_json_messages(
            &format!("{topic}.alerts"),
            10_000,
            Duration::from_secs(5),
        )?;
        assert!(
            raw.iter()
                .all(|(_, _, d)| !d.to_string().contains("\"bob\"")),
            "a clear user name in an alert"
        );
    }
    eprintln!(
        "{kind}, {members} members: partials produced {p}, merged {m}, redelivered {redelivered}, late {late} (dropped {dropped}), refused {refused}; \
         first Create after {} alerts; distributed alerts {all:?}",
        alerts.len()
    );
    assert_eq!(
        creates(&all).len(),
        1,
        "one {kind} Create across {members} members: {all:?}"
    );
    assert_eq!(rejected, 0);
    // Every partial is merged or, outside every window of its key, dropped and counted (stage
    // 1 reads a backlog's partitions out of event-time order: a key's later slice can be
    // produced before an earlier one).
    assert!(p > 0 && refused == 0);
    assert_eq!(m + dropped, p, "every partial merged or counted");
    Ok(())
}

/// The recorded patator run guessing bob's password (`brute_patator_json`), its attacker's
/// attempts **re-addressed** over 24 sources in turn (no distributed recording exists; as in
/// `detect/tests/two_stage.rs`), through two analyzers: brute force `distributed_on_account`
/// raised once, by stage 2 (the account kind's partials keyed by the user name tried).
#[test]
fn brute_force_on_one_account_through_two_analyzers_is_one_campaign() -> anyhow::Result<()> {
    if !require_broker("brute_force_on_one_account_through_two_analyzers_is_one_campaign") {
        return Ok(());
    }
    let tag = "twostagebrute";
    let dir = tempdir(tag);
    let attacker: std::net::IpAddr = "10.213.0.2".parse()?;
    let mut evs = fixture_events(&dir, "brute_patator_json.pcapng")?;
    let mut i = 0u8;
    for e in evs.iter_mut().filter(|e| e.client.ip == attacker) {
        e.client.ip = std::net::IpAddr::from([10, 77, i / 8 % 3, i % 8 + 1]);
        i = (i + 1) % 24;
    }
    through(
        tag,
        &dir,
        (2, 4),
        &evs,
        ("brute_force", "distributed_on_account"),
    )
}

/// The recorded distributed crawl (`crawl_distributed`: one wget fleet from 24 addresses,
/// each under the per-source floors) on `partitions` through `members` analyzers: one
/// engine's crawling `distributed` campaign (fingerprint Wget), once.
fn crawl_through(members: usize, partitions: u32) -> anyhow::Result<()> {
    let tag = format!("twostagecrawl{members}");
    let dir = tempdir(&tag);
    let evs = fixture_events(&dir, "crawl_distributed.pcapng")?;
    through(
        &tag,
        &dir,
        (members, partitions),
        &evs,
        ("crawling", "distributed"),
    )
}

#[test]
fn distributed_crawl_through_one_analyzer_is_one_campaign() -> anyhow::Result<()> {
    if !require_broker("distributed_crawl_through_one_analyzer_is_one_campaign") {
        return Ok(());
    }
    crawl_through(1, 4)
}

#[test]
fn distributed_crawl_through_two_analyzers_is_one_campaign() -> anyhow::Result<()> {
    if !require_broker("distributed_crawl_through_two_analyzers_is_one_campaign") {
        return Ok(());
    }
    crawl_through(2, 3)
}

#[test]
fn distributed_crawl_through_four_analyzers_is_one_campaign() -> anyhow::Result<()> {
    if !require_broker("distributed_crawl_through_four_analyzers_is_one_campaign") {
        return Ok(());
    }
    crawl_through(4, 8)
}

#[test]
fn distributed_stuffing_through_one_analyzer_is_one_campaign() -> anyhow::Result<()> {
    if !require_broker("distributed_stuffing_through_one_analyzer_is_one_campaign") {
        return Ok(());
    }
    through_members(1, 4)
}

#[test]
fn distributed_stuffing_through_two_analyzers_is_one_campaign() -> anyhow::Result<()> {
    if !require_broker("distributed_stuffing_through_two_analyzers_is_one_campaign") {
        return Ok(());
    }
    through_members(2, 3)
}

#[test]
fn distributed_stuffing_through_four_analyzers_is_one_campaign() -> anyhow::Result<()> {
    if !require_broker("distributed_stuffing_through_four_analyzers_is_one_campaign") {
        return Ok(());
    }
    through_members(4, 8)
}

#[test]
fn stage_two_owner_killed_mid_campaign_raises_no_second_create() -> anyhow::Result<()> {
    if !require_broker("stage_two_owner_killed_mid_campaign_raises_no_second_create") {
        return Ok(());
    }
    let tag = "twostagekill";
    let dir = tempdir(tag);
    let evs = stuffing_events(&dir)?;
    let half = evs.len() / 2;
    let mut broker = Broker::start(&dir.join("broker"))?;
    let topic = format!("{tag}.events");
    broker.create_topic(&topic, 4)?;
    broker.create_topic(&format!("{topic}.alerts"), 1)?;
    let m = format!("127.0.0.1:{}", free_port()?);
    let cfg = sections(&dir, &broker.bootstrap(), &topic, tag, &m);
    publish(&broker, &dir, &topic, &evs[..half])?;
    let mut a = AnalyzerProcess::start(None, &dir.join("a"), &cfg, "")?;
    let first = wait_for(
        Duration::from_secs(90),
        || distributed(&broker, &topic),
        |a| !creates(a).is_empty(),
    )
    .with_context(|| a.log_text())?;
    let uid = creates(&first)[0].to_owned();
    // Two more flushes: the campaign's record says its Create went out.
    std::thread::sleep(Duration::from_secs(2));
    a.kill();
    let at_kill = distributed(&broker, &topic)?.len();
    // tansu keeps a dead member in the group (see analyzer_kafka.rs): restart it.
    broker.restart()?;
    publish(&broker, &dir, &topic, &evs[half..])?;
    let mut b = AnalyzerProcess::start(None, &dir.join("b"), &cfg, "")?;
    b.wait_log(
        "stage-2 detection state restored",
        1,
        Duration::from_secs(60),
    )?;
    assert!(metric(&m, "apitap_detect_state_campaigns_restored_total")? >= 1);
    wait_for(
        Duration::from_secs(90),
        || distributed(&broker, &topic),
        |a| {
            a[at_kill.min(a.len())..]
                .iter()
                .any(|(act, u)| act == "Update" && *u == uid)
        },
    )
    .with_context(|| b.log_text())?;
    b.stop()?;
    let all = distributed(&broker, &topic)?;
    eprintln!("kill: uid {uid}; distributed alerts {all:?}");
    assert_eq!(
        creates(&all),
        vec![uid.as_str()],
        "one Create across both runs: {all:?}"
    );
    Ok(())
}

#[test]
fn stage_two_owner_killed_during_a_rebalance_raises_no_second_create() -> anyhow::Result<()> {
    if !require_broker("stage_two_owner_killed_during_a_rebalance_raises_no_second_create") {
        return Ok(());
    }
    let tag = "twostagerebalance";
    let dir = tempdir(tag);
    let evs = stuffing_events(&dir)?;
    let half = evs.len() / 2;
    let broker = Broker::start(&dir.join("broker"))?;
    let topic = format!("{tag}.events");
    broker.create_topic(&topic, 4)?;
    broker.create_topic(&format!("{topic}.alerts"), 1)?;
    // Baselines checkpointed every second, on 5 s buckets: the first half teaches them.
    let member = |i: usize| -> anyhow::Result<(String, AnalyzerProcess)> {
        let m = format!("127.0.0.1:{}", free_port()?);
        let d = dir.join(format!("m{i}"));
        std::fs::create_dir_all(&d)?;
        let scale_out = format!(
            "[detect.baseline]\nbucket_secs = 5\n[scale_out]\nenabled = true\npartials_topic = \"{topic}.partials\"\npartials_partitions = 4\n"
        );
        // 6 s sessions (not `steady_group`): tansu must drop the killed member soon after
        // its last heartbeat. With 15 s it kept the dead member's partitions assigned to it
        // after the round that dropped it (1 of 2 runs), with 6 s the survivors took them in
        // every run.
        let cfg = analyzer_sections(
            &d,
            [&broker.bootstrap(), &topic, tag, &m],
            "baseline_interval_secs = 1\n",
            &scale_out,
        )?;
        Ok((m.clone(), AnalyzerProcess::start(None, &d, &cfg, "")?))
    };
    let mut members = vec![member(0)?, member(1)?];
    for (_, p) in &members {
        p.wait_log("kafka partitions assigned", 2, Duration::from_secs(60))?;
    }
    publish(&broker, &dir, &topic, &evs[..half])?;
    let logs = |ms: &[(String, AnalyzerProcess)]| {
        ms.iter()
            .map(|(_, p)| p.log_text())
            .collect::<Vec<_>>()
            .join("\n-----\n")
    };
    let first = wait_for(
        Duration::from_secs(90),
        || distributed(&broker, &topic),
        |a| !creates(a).is_empty(),
    )
    .with_context(|| logs(&members))?;
    let uid = creates(&first)[0].to_owned();
    // The campaign's stage-2 owner, and two more flushes and baseline checkpoints.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let owner = loop {
        if let Some(i) = (members.iter())
            .position(|(m, _)| metric(m, "apitap_analyzer_global_open_campaigns").unwrap_or(0) > 0)
        {
            break i;
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "no stage-2 owner: {}",
            logs(&members)
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    std::thread::sleep(Duration::from_secs(2));
    let revoked = |p: &AnalyzerProcess| p.log_text().matches("kafka partitions revoked").count();
    // Between a revocation and the next assignment of one of its groups: in a rebalance.
    let in_rebalance = |p: &AnalyzerProcess| {
        let log = p.log_text();
        log.rfind("kafka partitions revoked") > log.rfind("kafka partitions assigned")
    };
    let before = revoked(&members[owner].1);
    // A third member joins: both groups rebalance; the owner dies in its revocation (or at
    // once if it is in a rebalance already, which the join then joins: 6 s sessions on tansu
    // rebalance now and then by themselves, see `steady_group`).
    members.push(member(2)?);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while revoked(&members[owner].1) == before && !in_rebalance(&members[owner].1) {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "no rebalance: {}",
            logs(&members)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    members[owner].1.kill();
    let (_, killed) = members.remove(owner);
    drop(killed);
    let at_kill = distributed(&broker, &topic)?.len();
    // No broker restart: tansu drops a member `session.timeout.ms` past its last heartbeat
    // at the group's next request (the survivors' heartbeats), and the group settles.
    publish(&broker, &dir, &topic, &evs[half..])?;
    wait_for(
        Duration::from_secs(120),
        || distributed(&broker, &topic),
        |a| {
            a[at_kill.min(a.len())..]
                .iter()
                .any(|(act, u)| act == "Update" && *u == uid)
        },
    )
    .with_context(|| logs(&members))?;
    let addrs: Vec<String> = members.iter().map(|(m, _)| m.clone()).collect();
    let campaigns = total(&addrs, "apitap_detect_state_campaigns_restored_total");
    let samples = total(
        &addrs,
        "apitap_detect_state_baseline_samples_restored_total",
    );
    let redelivered = total(&addrs, "apitap_analyzer_partials_redelivered_total");
    for (_, p) in &mut members {
        p.stop()?;
    }
    let all = distributed(&broker, &topic)?;
    eprintln!(
        "rebalance kill: uid {uid}; campaigns restored {campaigns}, baseline samples restored {samples}, \
         partials redelivered {redelivered}; distributed alerts {all:?}"
    );
    assert_eq!(
        creates(&all),
        vec![uid.as_str()],
        "one Create across the rebalance and the kill: {all:?}"
    );
    assert!(campaigns >= 1, "the campaign was restored by a survivor");
    assert!(samples > 0, "the survivors restored the endpoint baselines");
    Ok(())
}
