//! The event bus against a real Kafka-protocol broker process (tansu on 127.0.0.1; the product
//! itself speaks plain Kafka): delivery exactly once after dedupe and in order per key
//! (R-BUS-1), no loss across a broker outage with the spool drained afterwards (R-BUS-2), bad
//! input counted and never logged with its content (R-OPS-3), consumers of one group splitting
//! the partitions and a killed consumer's uncommitted events read again (R-OPS-1), topic
//! creation through the admin API.
//!
//! Unprivileged; needs `tansu` (`cargo xtask setup`), which CI requires.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use apitap_bus::admin::{TopicOutcome, TopicSpec, ensure_topics};
use apitap_bus::config::OptionValue;
use apitap_bus::{
    BusMetrics, EventPublisher, EventSource, KafkaConfig, KafkaEventConsumer, KafkaEventPublisher,
    RejectCause,
};
use apitap_schema::ApiEvent;
use apitap_tests::analyzer::{SYNTHETIC_BASE_US, synthetic_event};
use apitap_tests::broker::{Broker, require_broker};

fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("apitap-bus-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

fn event(i: u64, client: &str) -> ApiEvent {
    synthetic_event(i, client, "api.example", &format!("/api/v1/users/{i}"))
}

fn number(e: &ApiEvent) -> u64 {
    e.request_start_unix_us - SYNTHETIC_BASE_US
}

fn clients() -> Vec<String> {
    (0..12).map(|c| format!("10.8.0.{c}")).collect()
}

fn config(broker: &Broker, dir: &std::path::Path, topic: &str, group: &str) -> KafkaConfig {
    let mut cfg = KafkaConfig::new(vec![broker.bootstrap()]);
    cfg.events_topic = topic.into();
    cfg.alerts_topic = format!("{topic}.alerts");
    cfg.spool.dir = dir.join("spool");
    cfg.producer.linger_ms = 5;
    cfg.producer.stall_timeout_ms = 3000;
    cfg.consumer.group_id = group.into();
    cfg.consumer.commit_interval_ms = 200;
    // tansu serves a group's heartbeats behind its (slow, SQLite) fetches: a short session
    // timeout would make the group churn.
    cfg.librdkafka_options
        .insert("session.timeout.ms".into(), OptionValue::Int(30_000));
    cfg
}

/// Reads events until `want` distinct ids arrived, or nothing new came for `idle`.
fn consume_until(
    c: &mut KafkaEventConsumer,
    want: usize,
    idle: Duration,
    limit: Duration,
) -> Vec<ApiEvent> {
    let mut got = Vec::new();
    let mut ids = HashSet::new();
    let start = Instant::now();
    let mut last = Instant::now();
    while ids.len() < want && last.elapsed() < idle && start.elapsed() < limit {
        match c.poll(Duration::from_millis(200)) {
            Ok(Some(r)) => {
                ids.insert(r.event.event_id.clone());
                got.push(r.event);
                c.ack(r.ack);
                last = Instant::now();
            }
            Ok(None) => {}
            Err(e) => panic!("consumer: {e}"),
        }
    }
    got
}

fn assert_per_key_order(events: &[ApiEvent]) {
    let mut last: BTreeMap<String, u64> = BTreeMap::new();
    for e in events {
        let k = e.client.ip.to_string();
        let n = number(e);
        if let Some(prev) = last.insert(k.clone(), n) {
            assert!(prev < n, "client {k}: event {n} after {prev}");
        }
    }
}

#[test]
fn events_reach_the_topic_once_and_in_order_per_key() -> anyhow::Result<()> {
    if !require_broker("events_reach_the_topic_once_and_in_order_per_key") {
        return Ok(());
    }
    let dir = tempdir("once");
    let broker = Broker::start(&dir.join("broker"))?;
    let cfg = config(&broker, &dir, "once.events", "once-group");
    // Topic creation through the Kafka admin API (what operators' tooling and the demo use).
    let created = ensure_topics(
        &cfg,
        &[TopicSpec {
            name: cfg.events_topic.clone(),
            partitions: 4,
            replication: 1,
        }],
        Duration::from_secs(10),
    )?;
    assert_eq!(
        created,
        vec![(cfg.events_topic.clone(), TopicOutcome::Created)]
    );
    let again = ensure_topics(
        &cfg,
        &[TopicSpec {
            name: cfg.events_topic.clone(),
            partitions: 4,
            replication: 1,
        }],
        Duration::from_secs(10),
    )?;
    assert_eq!(again[0].1, TopicOutcome::Existed);

    let metrics = Arc::new(BusMetrics::default());
    let mut p = KafkaEventPublisher::start(&cfg, "bus-test", metrics.clone())?;
    let cl = clients();
    let n = 3000u64;
    for i in 0..n {
        p.publish(&event(i, &cl[(i % 12) as usize]));
    }
    // Publish a few again, as a spool replay after a crash would: dedupe must absorb them.
    for i in 0..50 {
        p.publish(&event(i * 7, &cl[((i * 7) % 12) as usize]));
    }
    let report = p.close(Duration::from_secs(60))?;
    assert_eq!(report.delivered, n + 50, "{report:?}");
    assert_eq!(report.left_in_spool, 0);
    assert_eq!(report.dropped, 0);

    let cm = Arc::new(BusMetrics::default());
    let mut c = KafkaEventConsumer::kafka(&cfg, cm.clone())?;
    let got = consume_until(
        &mut c,
        n as usize,
        Duration::from_secs(20),
        Duration::from_secs(120),
    );
    // Give late duplicates a moment to arrive and be skipped.
    let extra = consume_until(
        &mut c,
        usize::MAX,
        Duration::from_secs(2),
        Duration::from_secs(5),
    );
    c.close()?;
    assert!(extra.is_empty(), "duplicates must not be returned");
    let ids: Vec<u64> = got.iter().map(number).collect();
    let set: BTreeSet<u64> = ids.iter().copied().collect();
    assert_eq!(ids.len(), n as usize, "every event exactly once");
    assert_eq!(set, (0..n).collect::<BTreeSet<_>>());
    assert_eq!(BusMetrics::get(&cm.duplicate_events), 50);
    assert_per_key_order(&got);
    Ok(())
}

#[test]
fn broker_outage_spools_and_replays_without_loss() -> anyhow::Result<()> {
    if !require_broker("broker_outage_spools_and_replays_without_loss") {
        return Ok(());
    }
    let dir = tempdir("outage");
    let mut broker = Broker::start(&dir.join("broker"))?;
    broker.create_topic("outage.events", 3)?;
    let mut cfg = config(&broker, &dir, "outage.events", "outage-group");
    cfg.producer.queue_max_events = 100;
    let metrics = Arc::new(BusMetrics::default());
    let mut p = KafkaEventPublisher::start(&cfg, "bus-test", metrics.clone())?;
    let cl = clients();
    let mut i = 0u64;
    let mut publish_for = |p: &mut KafkaEventPublisher, d: Duration| {
        let until = Instant::now() + d;
        while Instant::now() < until {
            for _ in 0..5 {
                p.publish(&event(i, &cl[(i % 12) as usize]));
                i += 1;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        i
    };
    publish_for(&mut p, Duration::from_secs(3));
    // Stop the broker between requests. tansu 0.6 cannot take the idempotent producer's epoch
    // bump that follows a produce request cut off mid-flight (it panics in its SQLite
    // storage; Kafka brokers accept it, KIP-360), so the test avoids cutting one.
    let deadline = Instant::now() + Duration::from_secs(10);
    while BusMetrics::get(&metrics.producer_queue_events) > 0 {
        assert!(Instant::now() < deadline, "producer queue did not empty");
        std::thread::sleep(Duration::from_millis(10));
    }
    broker.stop()?;
    publish_for(&mut p, Duration::from_secs(10));
    assert!(
        BusMetrics::get(&metrics.events_spooled) > 0,
        "the outage must have sent events to the spool"
    );
    broker.restart()?;
    let total = publish_for(&mut p, Duration::from_secs(3));
    let deadline = Instant::now() + Duration::from_secs(90);
    while BusMetrics::get(&metrics.events_delivered) < total
        || BusMetrics::get(&metrics.spool_events) > 0
    {
        assert!(
            Instant::now() < deadline,
            "not drained: delivered {} of {total}, spool {}",
            BusMetrics::get(&metrics.events_delivered),
            BusMetrics::get(&metrics.spool_events)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let report = p.close(Duration::from_secs(10))?;
    assert_eq!(report.left_in_spool, 0, "spool drained");
    assert_eq!(report.dropped, 0);
    assert!(BusMetrics::get(&metrics.events_replayed) > 0);

    let mut c = KafkaEventConsumer::kafka(&cfg, Arc::new(BusMetrics::default()))?;
    let got = consume_until(
        &mut c,
        total as usize,
        Duration::from_secs(20),
        Duration::from_secs(120),
    );
    c.close()?;
    let set: BTreeSet<u64> = got.iter().map(number).collect();
    eprintln!(
        "consumed {} events, {} distinct, of {total}",
        got.len(),
        set.len()
    );
    let missing: Vec<u64> = (0..total).filter(|n| !set.contains(n)).collect();
    assert!(
        missing.is_empty(),
        "{} events lost: {missing:?}",
        missing.len()
    );
    assert_per_key_order(&got);
    Ok(())
}

/// A `tracing` writer into a shared buffer, to check what was logged.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn bad_messages_are_counted_not_logged_and_the_consumer_keeps_going() -> anyhow::Result<()> {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    if !require_broker("bad_messages_are_counted_not_logged_and_the_consumer_keeps_going") {
        return Ok(());
    }
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::DEBUG)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let dir = tempdir("bad");
    let broker = Broker::start(&dir.join("broker"))?;
    broker.create_topic("bad.events", 1)?;
    let cfg = config(&broker, &dir, "bad.events", "bad-group");

    let secret = "SECRET-4111111111111111";
    let good = |i: u64| {
        let mut e = event(i, "10.8.0.1");
        e.request.query = Some(format!("token={secret}"));
        apitap_schema::encode_event(&e)
    };
    let mut v2 = serde_json::to_value(event(100, "10.8.0.1"))?;
    v2["schema_version"] = "2.0".into();
    v2["request"]["path"] = format!("/{secret}").into();
    let wrong_version = serde_json::to_vec(&v2)?;
    let truncated = good(101)[..120].to_vec();
    let mut garbage = b"\x00\x01garbage ".to_vec();
    garbage.extend_from_slice(secret.as_bytes());
    let not_an_event = format!("{{\"schema_version\":\"1.1\",\"note\":\"{secret}\"}}").into_bytes();
    let payloads: Vec<(Vec<u8>, Option<&str>)> = vec![
        (good(0), Some("1.1")),
        (garbage, None),
        (good(1), Some("1.1")),
        (wrong_version.clone(), None),
        (wrong_version, Some("2.0")),
        (truncated, None),
        (not_an_event, Some("1.1")),
        (Vec::new(), None),
        (good(2), Some("1.1")),
    ];
    let raw: BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .create()?;
    for (payload, version) in &payloads {
        let mut rec: BaseRecord<'_, [u8], [u8]> = BaseRecord::to("bad.events").key(b"k".as_slice());
        if !payload.is_empty() {
            rec = rec.payload(payload.as_slice());
        }
        if let Some(v) = version {
            rec = rec.headers(rdkafka::message::OwnedHeaders::new().insert(
                rdkafka::message::Header {
                    key: "apitap-schema-version",
                    value: Some(*v),
                },
            ));
        }
        raw.send(rec).map_err(|(e, _)| e)?;
    }
    raw.flush(Duration::from_secs(20))?;

    let cm = Arc::new(BusMetrics::default());
    let mut c = KafkaEventConsumer::kafka(&cfg, cm.clone())?;
    let got = consume_until(&mut c, 3, Duration::from_secs(15), Duration::from_secs(60));
    c.close()?;
    let nums: Vec<u64> = got.iter().map(number).collect();
    assert_eq!(
        nums,
        vec![0, 1, 2],
        "the good events around the bad ones all arrive"
    );
    assert_eq!(cm.rejected_total(RejectCause::NotJson), 1);
    assert_eq!(cm.rejected_total(RejectCause::UnsupportedVersion), 2);
    assert_eq!(cm.rejected_total(RejectCause::TruncatedJson), 1);
    assert_eq!(cm.rejected_total(RejectCause::InvalidEvent), 1);
    assert_eq!(cm.rejected_total(RejectCause::Empty), 1);
    let logs = String::from_utf8_lossy(&captured.0.lock().expect("lock")).into_owned();
    assert!(
        logs.contains("not a readable event"),
        "rejections are logged: {logs}"
    );
    assert!(
        !logs.contains(secret) && !logs.contains("4111111111111111"),
        "logs must not carry message content: {logs}"
    );
    Ok(())
}

#[test]
fn two_consumers_in_one_group_split_the_partitions() -> anyhow::Result<()> {
    if !require_broker("two_consumers_in_one_group_split_the_partitions") {
        return Ok(());
    }
    let dir = tempdir("split");
    let broker = Broker::start(&dir.join("broker"))?;
    broker.create_topic("split.events", 4)?;
    let cfg = config(&broker, &dir, "split.events", "split-group");
    let mut a = KafkaEventConsumer::kafka(&cfg, Arc::new(BusMetrics::default()))?;
    let mut b = KafkaEventConsumer::kafka(&cfg, Arc::new(BusMetrics::default()))?;
    // Both join; wait until the group settled on a split of all four partitions.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(a.poll(Duration::from_millis(100))?.is_none());
        assert!(b.poll(Duration::from_millis(100))?.is_none());
        let (pa, pb) = (a.transport().assignment(), b.transport().assignment());
        if !pa.is_empty() && !pb.is_empty() && pa.len() + pb.len() == 4 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "group did not settle: {pa:?} / {pb:?}"
        );
    }
    let mut p = KafkaEventPublisher::start(&cfg, "bus-test", Arc::new(BusMetrics::default()))?;
    let cl = clients();
    let n = 600u64;
    for i in 0..n {
        p.publish(&event(i, &cl[(i % 12) as usize]));
    }
    p.close(Duration::from_secs(30))?;
    let ta = std::thread::spawn(move || {
        let mut parts = BTreeSet::new();
        let mut ids = Vec::new();
        let mut last = Instant::now();
        while last.elapsed() < Duration::from_secs(8) {
            if let Some(r) = a.poll(Duration::from_millis(200)).expect("poll a") {
                parts.insert(r.ack.partition());
                ids.push(number(&r.event));
                a.ack(r.ack);
                last = Instant::now();
            }
        }
        a.close().expect("close a");
        (parts, ids)
    });
    let mut parts_b = BTreeSet::new();
    let mut ids_b = Vec::new();
    let mut last = Instant::now();
    while last.elapsed() < Duration::from_secs(8) {
        if let Some(r) = b.poll(Duration::from_millis(200))? {
            parts_b.insert(r.ack.partition());
            ids_b.push(number(&r.event));
            b.ack(r.ack);
            last = Instant::now();
        }
    }
    b.close()?;
    let (parts_a, ids_a) = ta.join().expect("consumer a");
    assert!(
        !parts_a.is_empty() && !parts_b.is_empty(),
        "{parts_a:?} {parts_b:?}"
    );
    assert!(
        parts_a.is_disjoint(&parts_b),
        "each partition has one owner: {parts_a:?} / {parts_b:?}"
    );
    assert!(!ids_a.is_empty() && !ids_b.is_empty());
    let all: BTreeSet<u64> = ids_a.iter().chain(&ids_b).copied().collect();
    assert_eq!(all, (0..n).collect::<BTreeSet<_>>());
    assert_eq!(
        ids_a.len() + ids_b.len(),
        n as usize,
        "no event read by both"
    );
    Ok(())
}

/// Child half of the SIGKILL test: consumes, acknowledges and prints each event number;
/// commits once after 100 events, never again. Runs only when the parent sets the variable.
#[test]
#[ignore = "child process: run (with --ignored) by a_consumer_killed_without_committing_rereads_none_skipped"]
fn child_consumer_process() {
    let Ok(bootstrap) = std::env::var("APITAP_CHILD_BOOTSTRAP") else {
        return;
    };
    let mut cfg = KafkaConfig::new(vec![bootstrap]);
    cfg.events_topic = "kill.events".into();
    cfg.alerts_topic = "kill.alerts".into();
    cfg.consumer.group_id = "kill-group".into();
    cfg.consumer.commit_interval_ms = 0;
    cfg.librdkafka_options
        .insert("session.timeout.ms".into(), OptionValue::Int(6000));
    let mut c = KafkaEventConsumer::kafka(&cfg, Arc::new(BusMetrics::default())).expect("consumer");
    let mut n = 0;
    loop {
        if let Some(r) = c.poll(Duration::from_millis(100)).expect("poll") {
            c.ack(r.ack);
            n += 1;
            if n == 100 {
                c.commit().expect("commit");
            }
            println!("EVENT {}", number(&r.event));
            // Slow enough that the parent kills us mid-stream.
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

#[test]
fn a_consumer_killed_without_committing_rereads_none_skipped() -> anyhow::Result<()> {
    if !require_broker("a_consumer_killed_without_committing_rereads_none_skipped") {
        return Ok(());
    }
    let dir = tempdir("kill");
    let broker = Broker::start(&dir.join("broker"))?;
    broker.create_topic("kill.events", 1)?;
    let mut cfg = config(&broker, &dir, "kill.events", "kill-group");
    cfg.alerts_topic = "kill.alerts".into();
    let mut p = KafkaEventPublisher::start(&cfg, "bus-test", Arc::new(BusMetrics::default()))?;
    let n = 400u64;
    for i in 0..n {
        p.publish(&event(i, "10.8.0.3"));
    }
    p.close(Duration::from_secs(30))?;

    let mut child = Command::new(std::env::current_exe()?)
        .args([
            "--exact",
            "child_consumer_process",
            "--ignored",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env("APITAP_CHILD_BOOTSTRAP", broker.bootstrap())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = child.stdout.take().expect("stdout");
    let mut seen_by_child = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        // The harness prints "test child_consumer_process ... " without a newline first.
        if let Some((_, v)) = line.split_once("EVENT ") {
            seen_by_child.push(v.parse::<u64>()?);
            if seen_by_child.len() == 200 {
                // SAFETY: killing our own child.
                unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
                break;
            }
        }
    }
    child.wait()?;
    assert_eq!(
        seen_by_child.len(),
        200,
        "the child consumed before being killed"
    );
    assert_eq!(seen_by_child, (0..200).collect::<Vec<_>>());

    let mut c = KafkaEventConsumer::kafka(&cfg, Arc::new(BusMetrics::default()))?;
    let got = consume_until(
        &mut c,
        300,
        Duration::from_secs(30),
        Duration::from_secs(120),
    );
    c.close()?;
    let nums: Vec<u64> = got.iter().map(number).collect();
    assert_eq!(
        nums,
        (100..n).collect::<Vec<_>>(),
        "resumes at the last commit (100): 100..200 are read again, none skipped"
    );
    Ok(())
}

/// SASL with the password in a secret file (issue 22, R-OPS-3): a broker that requires
/// SCRAM-SHA-512 accepts the publisher and the consumer whose `sasl.password` comes from
/// `librdkafka_secret_files` (a 0600 file, as a Kubernetes Secret volume mounts it), and the
/// password never appears in the configuration's debug rendering. With a wrong password in
/// the file nothing is delivered and nothing is lost: every event stays in the spool.
#[test]
fn sasl_scram_password_from_a_secret_file() -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    if !require_broker("sasl_scram_password_from_a_secret_file") {
        return Ok(());
    }
    let dir = tempdir("sasl");
    let password = "s3cret-Kafka-pw-42";
    let broker = Broker::start_with_scram_user(&dir.join("broker"), "apitap", password)?;
    let secret = |name: &str, value: &str| -> anyhow::Result<PathBuf> {
        let p = dir.join(name);
        std::fs::write(&p, format!("{value}\n"))?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600))?;
        Ok(p)
    };
    let with_password_file = |file: &std::path::Path, tag: &str| -> anyhow::Result<KafkaConfig> {
        let text = format!(
            "brokers = [\"{}\"]\nevents_topic = \"sasl.events\"\n\
             [librdkafka_options]\n\"security.protocol\" = \"sasl_plaintext\"\n\
             \"sasl.mechanisms\" = \"SCRAM-SHA-512\"\n\"sasl.username\" = \"apitap\"\n\
             \"session.timeout.ms\" = 30000\n\
             [librdkafka_secret_files]\n\"sasl.password\" = {:?}\n\
             [spool]\ndir = {:?}\n[producer]\nlinger_ms = 5\nstall_timeout_ms = 3000\n\
             [consumer]\ngroup_id = \"sasl-group\"\ncommit_interval_ms = 200\n",
            broker.bootstrap(),
            file.display().to_string(),
            dir.join(format!("spool-{tag}")).display().to_string(),
        );
        let cfg: KafkaConfig = toml::from_str(&text)?;
        cfg.validate()?;
        assert!(!format!("{cfg:?}").contains(password), "{cfg:?}");
        Ok(cfg)
    };
    let good = with_password_file(&secret("kafka-password", password)?, "good")?;
    ensure_topics(
        &good,
        &[TopicSpec {
            name: good.events_topic.clone(),
            partitions: 2,
            replication: 1,
        }],
        Duration::from_secs(15),
    )?;
    let n = 200u64;
    let mut p = KafkaEventPublisher::start(&good, "sasl-test", Arc::new(BusMetrics::default()))?;
    for i in 0..n {
        p.publish(&event(i, "10.8.0.1"));
    }
    let report = p.close(Duration::from_secs(60))?;
    assert_eq!((report.delivered, report.dropped), (n, 0), "{report:?}");
    let mut c = KafkaEventConsumer::kafka(&good, Arc::new(BusMetrics::default()))?;
    let got = consume_until(
        &mut c,
        n as usize,
        Duration::from_secs(20),
        Duration::from_secs(120),
    );
    c.close()?;
    assert_eq!(got.len(), n as usize);

    // The wrong password: refused by the broker, nothing delivered, nothing lost.
    let bad = with_password_file(&secret("wrong-password", "not-the-password")?, "bad")?;
    let mut p = KafkaEventPublisher::start(&bad, "sasl-test", Arc::new(BusMetrics::default()))?;
    for i in 0..20 {
        p.publish(&event(i, "10.8.0.2"));
    }
    let r = p.close(Duration::from_secs(10))?;
    assert_eq!(
        (r.delivered, r.dropped, r.left_in_spool),
        (0, 0, 20),
        "{r:?}"
    );
    Ok(())
}
