//! The analyzer as a Kafka consumer group against a real broker process (tansu), R-BUS-1,
//! R-BUS-3, R-OPS-1:
//!
//! - the live path end to end: eBPF sensor on a veth → Kafka → `apitap-analyzer run` with
//!   `[kafka]`: every request counted exactly once, inventory changes on the alert topic as
//!   OCSF findings keyed by their uid;
//! - SIGKILL mid-stream, restart: no event skipped (at-least-once: offsets are committed only
//!   after the inventory store holds the events' effects);
//! - two analyzers in one consumer group split the partitions and together count every event
//!   once.
//!
//! All need `tansu` (required under `CI=true`); the live one is privileged too.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use apitap_bus::{BusMetrics, EventPublisher, KafkaConfig, KafkaEventPublisher};
use apitap_tests::analyzer::{AnalyzerProcess, synthetic_event};
use apitap_tests::broker::{
    Broker, ConfiguredSensor, analyzer_kafka_section as kafka_section, http_get,
    kafka_sensor_config, require_broker,
};
use apitap_tests::{Nginx, Topology, require_privileges, workspace_bin};

fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "apitap-analyzer-kafka-{tag}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

fn inventory_section(dir: &Path) -> String {
    format!(
        "[inventory]\nstore = \"sqlite:{}\"\nflush_interval_secs = 1\ndiscovery_grace_secs = 0\n",
        dir.join("inventory.db").display()
    )
}

fn publisher_config(broker: &Broker, dir: &Path, topic: &str) -> KafkaConfig {
    let mut cfg = KafkaConfig::new(vec![broker.bootstrap()]);
    cfg.events_topic = topic.into();
    cfg.alerts_topic = format!("{topic}.alerts");
    cfg.spool.dir = dir.join("spool");
    cfg.producer.linger_ms = 5;
    cfg.producer.stall_timeout_ms = 3000;
    cfg
}

/// Hits per service in the inventory store (`apitap-analyzer inventory export`).
fn stored_hits(store_dir: &Path) -> anyhow::Result<BTreeMap<String, u64>> {
    let out = std::process::Command::new(workspace_bin("apitap-analyzer")?)
        .args(["inventory", "export", "--format", "json", "--store"])
        .arg(format!(
            "sqlite:{}",
            store_dir.join("inventory.db").display()
        ))
        .output()?;
    if !out.status.success() {
        bail!("inventory export: {}", String::from_utf8_lossy(&out.stderr));
    }
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout)?;
    let mut hits = BTreeMap::new();
    for r in rows {
        *hits
            .entry(r["service"].as_str().unwrap_or_default().to_owned())
            .or_default() += r["hits"].as_u64().unwrap_or_default();
    }
    Ok(hits)
}

const SERVICES: u64 = 20;

fn service(i: u64) -> String {
    format!("svc{}.example", i % SERVICES)
}

#[test]
fn analyzer_killed_mid_stream_restarts_without_skipping_an_event() -> anyhow::Result<()> {
    if !require_broker("analyzer_killed_mid_stream_restarts_without_skipping_an_event") {
        return Ok(());
    }
    let dir = tempdir("kill");
    let mut broker = Broker::start(&dir.join("broker"))?;
    let topic = "kill.events";
    broker.create_topic(topic, 3)?;
    broker.create_topic(&format!("{topic}.alerts"), 1)?;
    let sections = format!(
        "{}{}",
        kafka_section(&broker.bootstrap(), topic, "kill-group"),
        inventory_section(&dir)
    );
    let n = 3000u64;
    let cfg = publisher_config(&broker, &dir, topic);
    let mut p = KafkaEventPublisher::start(&cfg, "kill-test", Arc::new(BusMetrics::default()))?;
    for i in 0..n {
        let client = format!("10.8.0.{}", i % 12);
        p.publish(&synthetic_event(i, &client, &service(i), "/api/orders"));
    }
    assert_eq!(p.close(Duration::from_secs(60))?.delivered, n);

    // Killed while working through the backlog: no chance to flush or commit.
    let mut analyzer = AnalyzerProcess::start(None, &dir.join("a"), &sections, "")?;
    analyzer.wait_total(300, Duration::from_secs(90))?;
    analyzer.kill();
    let stored_at_kill: u64 = stored_hits(&dir)?.values().sum();
    assert!(
        stored_at_kill < n,
        "killed mid-stream ({stored_at_kill} of {n} stored)"
    );
    // tansu never evicts a dead member from a group (Apache Kafka does after
    // `session.timeout.ms`), so a new member would wait forever for the dead one's partitions:
    // restart the broker (committed offsets are in its storage) to clear the membership.
    broker.restart()?;

    let mut analyzer = AnalyzerProcess::start(None, &dir.join("a"), &sections, "")?;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        // Every service caught up (replays after the kill may double some counts, so the
        // sum alone reaches `n` before the backlog is done).
        let hits = stored_hits(&dir)?;
        if (0..SERVICES).all(|s| hits.get(&service(s)).copied().unwrap_or(0) >= n / SERVICES) {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "store holds {hits:?} after restart: {}",
                analyzer.log_text()
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    analyzer.stop()?;
    let hits = stored_hits(&dir)?;
    let total: u64 = hits.values().sum();
    for s in 0..SERVICES {
        let want = n / SERVICES;
        let got = hits.get(&service(s)).copied().unwrap_or(0);
        assert!(
            got >= want,
            "{}: {got} < {want}: an event was skipped",
            service(s)
        );
    }
    // At-least-once: only events the killed process had stored but not yet committed (its
    // alerts were still on their way to the broker) can be stored twice.
    let duplicates = total - n;
    assert!(
        duplicates <= stored_at_kill,
        "{duplicates} double-counted events, more than the {stored_at_kill} stored: {hits:?}"
    );
    eprintln!(
        "stored at kill: {stored_at_kill}; final: {total} of {n} ({duplicates} replayed into the store)"
    );
    Ok(())
}

#[test]
fn two_analyzers_in_one_group_split_the_partitions() -> anyhow::Result<()> {
    if !require_broker("two_analyzers_in_one_group_split_the_partitions") {
        return Ok(());
    }
    let dir = tempdir("split");
    let broker = Broker::start(&dir.join("broker"))?;
    let topic = "split2.events";
    broker.create_topic(topic, 4)?;
    broker.create_topic(&format!("{topic}.alerts"), 1)?;
    let sections = kafka_section(&broker.bootstrap(), topic, "split-analyzers");
    let metrics_a = format!("127.0.0.1:{}", apitap_tests::broker::free_port()?);
    let metrics_b = format!("127.0.0.1:{}", apitap_tests::broker::free_port()?);
    let with_metrics = |addr: &str| format!("{sections}[metrics]\nlisten = \"{addr}\"\n");
    let a = AnalyzerProcess::start(None, &dir.join("a"), &with_metrics(&metrics_a), "")?;
    a.wait_log("kafka partitions assigned", 1, Duration::from_secs(60))?;
    let b = AnalyzerProcess::start(None, &dir.join("b"), &with_metrics(&metrics_b), "")?;
    // The second member's join makes the first give up partitions: wait for the split.
    b.wait_log("kafka partitions assigned", 1, Duration::from_secs(90))?;
    a.wait_log("kafka partitions assigned", 2, Duration::from_secs(90))?;

    // Bad input between the events: counted, never logged, the group keeps going.
    let secret = "SECRET-4111111111111111";
    let mut wrong_major = serde_json::to_value(synthetic_event(9999, "10.9.0.1", "x", "/"))?;
    wrong_major["schema_version"] = "9.0".into();
    wrong_major["request"]["path"] = format!("/{secret}").into();
    produce_raw(
        &broker.bootstrap(),
        topic,
        &[
            format!("\u{1}garbage {secret}").into_bytes(),
            serde_json::to_vec(&wrong_major)?,
            br#"{"schema_version":"1.1","event_id":"#.to_vec(),
        ],
    )?;

    let n = 800u64;
    let cfg = publisher_config(&broker, &dir, topic);
    let mut p = KafkaEventPublisher::start(&cfg, "split-test", Arc::new(BusMetrics::default()))?;
    for i in 0..n {
        // 40 clients: the key (client|server|port) spreads them over the partitions. Each
        // client has its own Host, so the summaries (keyed by service and template) tell
        // which instance saw whose traffic.
        let client = format!("10.9.0.{}", i % 40);
        p.publish(&synthetic_event(
            i,
            &client,
            &format!("c{}.split.example", i % 40),
            "/c",
        ));
    }
    assert_eq!(p.close(Duration::from_secs(30))?.delivered, n);

    let (mut a, mut b) = (a, b);
    let deadline = Instant::now() + Duration::from_secs(90);
    while a.total_requests()? + b.total_requests()? < n {
        if Instant::now() > deadline {
            bail!(
                "a {} + b {} < {n}\n--- a ---\n{}\n--- b ---\n{}",
                a.total_requests()?,
                b.total_requests()?,
                a.log_text(),
                b.log_text()
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    // Settle: nothing more may arrive (each event is counted by one analyzer only).
    std::thread::sleep(Duration::from_secs(3));
    let (ra, rb) = (a.requests()?, b.requests()?);
    // The bus counters on each instance's Prometheus endpoint: the bad messages were rejected
    // (once across the group) and every event consumed once.
    let scrape = |addr: &str, prefix: &str| -> anyhow::Result<u64> {
        Ok(http_get(addr, "/metrics")?
            .lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<u64>().ok())
            .sum())
    };
    let rejected_metric = scrape(&metrics_a, "apitap_bus_rejected_messages_total")?
        + scrape(&metrics_b, "apitap_bus_rejected_messages_total")?;
    assert_eq!(rejected_metric, 3, "rejections on /metrics");
    let consumed = scrape(&metrics_a, "apitap_bus_events_consumed_total ")?
        + scrape(&metrics_b, "apitap_bus_events_consumed_total ")?;
    assert_eq!(consumed, n, "events consumed across the group");
    assert_eq!(http_get(&metrics_a, "/healthz")?.trim(), "ok");
    a.stop()?;
    b.stop()?;
    let (ta, tb): (u64, u64) = (ra.values().sum(), rb.values().sum());
    assert!(ta > 0 && tb > 0, "both instances consume: a={ta} b={tb}");
    assert_eq!(
        ta + tb,
        n,
        "every event counted once across the group: a={ta} b={tb}"
    );
    // A client's traffic is on one partition, so one instance sees all of it.
    for key in ra.keys() {
        assert!(
            !rb.contains_key(key),
            "{key} was consumed by both instances"
        );
    }
    let rejected = last_logged(&a.log_text(), "apitap_bus_rejected_messages_total")
        + last_logged(&b.log_text(), "apitap_bus_rejected_messages_total");
    assert_eq!(rejected, 3, "bad messages counted once across the group");
    for log in [a.log_text(), b.log_text()] {
        assert!(!log.contains(secret), "no message content in logs: {log}");
    }
    eprintln!(
        "split: a={ta} b={tb} events, {} / {} clients",
        ra.len(),
        rb.len()
    );
    Ok(())
}

/// Produces raw messages (not events) to `topic`.
fn produce_raw(bootstrap: &str, topic: &str, payloads: &[Vec<u8>]) -> anyhow::Result<()> {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer as _};
    let raw: BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?;
    for payload in payloads {
        let rec: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic)
            .key(b"bad".as_slice())
            .payload(payload.as_slice());
        raw.send(rec).map_err(|(e, _)| e)?;
    }
    raw.flush(Duration::from_secs(20))?;
    Ok(())
}

/// The value of `name=…` in the last log line that has it (0 if none).
fn last_logged(log: &str, name: &str) -> u64 {
    log.lines()
        .rev()
        .find_map(|l| {
            let rest = &l[l.find(&format!("{name}="))? + name.len() + 1..];
            rest.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

#[test]
fn live_traffic_through_kafka_reaches_the_analyzer_once() -> anyhow::Result<()> {
    let name = "live_traffic_through_kafka_reaches_the_analyzer_once";
    if !require_privileges(name) || !require_broker(name) {
        return Ok(());
    }
    let dir = tempdir("e2e");
    let topo = Topology::new("akf")?;
    let _nginx = Nginx::start(&topo.server, &dir.join("nginx"))?;
    let broker = Broker::start_in(&topo.server, &dir.join("broker"))?;
    let topic = "apitap.events.v1";
    broker.create_topic(topic, 3)?;
    broker.create_topic("apitap.alerts.v1", 1)?;
    let sections = format!(
        "{}{}",
        kafka_section(&broker.bootstrap(), topic, "apitap-analyzer").replace(
            &format!("alerts_topic = \"{topic}.alerts\""),
            "alerts_topic = \"apitap.alerts.v1\""
        ),
        inventory_section(&dir)
    );
    let mut analyzer = AnalyzerProcess::start(
        Some(&topo.server),
        &dir.join("analyzer"),
        &sections,
        &format!(
            "alerts_path = {:?}",
            dir.join("alerts.jsonl").display().to_string()
        ),
    )?;
    analyzer.wait_log("kafka partitions assigned", 1, Duration::from_secs(60))?;
    let mut sensor = ConfiguredSensor::start(
        &topo.server,
        &kafka_sensor_config("e2e", &topo.server_if, &broker, &dir.join("spool"), 100_000),
        &dir.join("sensor"),
    )?;

    let mut expect: BTreeMap<String, u64> = BTreeMap::new();
    for i in 0..20 {
        topo.curl(&[
            "-o",
            "/dev/null",
            &topo.url(&format!("/api/v1/users/{i}?probe=e2e")),
        ])?;
        *expect.entry(format!("/api/v1/users/{i}")).or_default() += 1;
    }
    let mut args: Vec<String> = Vec::new();
    for _ in 0..10 {
        args.extend([
            "-o".into(),
            "/dev/null".into(),
            topo.url("/api/v1/orders?page=2"),
        ]);
    }
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    topo.curl(&argv)?;
    *expect.entry("/api/v1/orders".into()).or_default() += 10;
    let n: u64 = expect.values().sum();

    analyzer.wait_total(n, Duration::from_secs(90))?;
    std::thread::sleep(Duration::from_secs(3));
    let got = analyzer.requests()?;
    sensor.stop()?;
    analyzer.stop()?;
    let mut by_path: BTreeMap<String, u64> = BTreeMap::new();
    for (key, count) in &got {
        let path = users_folded(key.rsplit(' ').next().unwrap_or_default());
        *by_path.entry(path).or_default() += count;
    }
    // The summary shows the inventory's templates (issue 22): user ids fold into one path.
    assert!(
        got.keys().any(|k| k.ends_with("/api/v1/users/{user_id}")),
        "ids templated: {got:?}"
    );
    let expect: BTreeMap<String, u64> = expect.iter().fold(BTreeMap::new(), |mut m, (k, v)| {
        *m.entry(users_folded(k)).or_default() += v;
        m
    });
    assert_eq!(by_path, expect, "every request exactly once");

    // The inventory's new endpoints went to the alert topic as OCSF findings, keyed by uid,
    // the same documents as in the alerts file.
    let file_alerts: Vec<serde_json::Value> = std::fs::read_to_string(dir.join("alerts.jsonl"))?
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    assert!(!file_alerts.is_empty(), "inventory changes raise findings");
    let alerts = broker.read_json_messages(
        "apitap.alerts.v1",
        file_alerts.len(),
        Duration::from_secs(60),
    )?;
    assert_eq!(
        alerts.len(),
        file_alerts.len(),
        "the topic has the file's alerts"
    );
    for ((key, format, doc), file_doc) in alerts.iter().zip(&file_alerts) {
        assert_eq!(doc, file_doc);
        assert_eq!(key, doc["finding_info"]["uid"].as_str().unwrap_or("?"));
        assert!(format.starts_with("ocsf/1."), "{format}");
        assert!(doc["class_uid"].as_u64().is_some());
    }
    let log = analyzer.log_text();
    assert!(
        !log.contains("probe=e2e"),
        "the analyzer must not log event contents"
    );
    assert!(log.contains("apitap_bus_duplicate_events_total"), "{log}");
    Ok(())
}

/// `/api/v1/users/<anything>` as one path: the summary lists the endpoint's template once the
/// ids fold into a parameter, and the literal paths seen before.
fn users_folded(path: &str) -> String {
    match path.strip_prefix("/api/v1/users/") {
        Some(_) => "/api/v1/users/*".to_owned(),
        None => path.to_owned(),
    }
}
