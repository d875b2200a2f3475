//! What the analyzer's durable-state and two-stage tests on a real broker share (issue 18):
//! the recorded distributed stuffing as events, publishing them, reading the detections off
//! the alert topic, metrics.
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use apitap_bus::{BusMetrics, EventPublisher, KafkaConfig, KafkaEventPublisher};
use apitap_schema::ApiEvent;
use serde_json::Value;

use crate::attacks::{fixture_pcap, replay_to};
use crate::broker::Broker;

/// A fresh temporary directory for `tag`.
pub fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("apitap-state-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    let _ = std::fs::create_dir_all(&d);
    d
}

/// The recorded distributed stuffing (`tests/fixtures/attacks/stuffing_distributed`: curl
/// from 60 addresses) through the real sensor decoder, in time order.
pub fn stuffing_events(dir: &Path) -> anyhow::Result<Vec<ApiEvent>> {
    fixture_events(dir, "stuffing_distributed.pcapng")
}

/// The recorded attack fixture `pcap` (`tests/fixtures/attacks/`) through the real sensor
/// decoder, in time order.
pub fn fixture_events(dir: &Path, pcap: &str) -> anyhow::Result<Vec<ApiEvent>> {
    let events = dir.join(format!("{pcap}.events.jsonl"));
    let pcap = fixture_pcap(pcap, dir)?;
    replay_to(&pcap, &events, "state-test")?;
    let mut evs: Vec<ApiEvent> = std::fs::read_to_string(&events)?
        .lines()
        .map(|l| serde_json::from_str(l).context("event"))
        .collect::<anyhow::Result<_>>()?;
    evs.sort_by_key(|e| e.request_start_unix_us);
    Ok(evs)
}

/// Publishes `evs` to `topic` with the sensor's producer (keyed like the sensor's events).
pub fn publish(broker: &Broker, dir: &Path, topic: &str, evs: &[ApiEvent]) -> anyhow::Result<()> {
    let mut cfg = KafkaConfig::new(vec![broker.bootstrap()]);
    cfg.events_topic = topic.into();
    cfg.alerts_topic = format!("{topic}.alerts");
    cfg.spool.dir = dir.join("spool");
    cfg.producer.linger_ms = 5;
    let mut p = KafkaEventPublisher::start(&cfg, "state-test", Arc::new(BusMetrics::default()))?;
    for e in evs {
        p.publish(e);
    }
    let delivered = p.close(Duration::from_secs(60))?.delivered;
    if delivered != evs.len() as u64 {
        bail!("{delivered} of {} events delivered", evs.len());
    }
    Ok(())
}

/// The detections of `detector` (and `kind`, when given) on `<topic>.alerts`:
/// (activity, uid).
pub fn detections(
    broker: &Broker,
    topic: &str,
    detector: &str,
    kind: Option<&str>,
) -> anyhow::Result<Vec<(String, String)>> {
    let msgs =
        broker.read_json_messages(&format!("{topic}.alerts"), 10_000, Duration::from_secs(5))?;
    Ok(msgs
        .iter()
        .map(|(_, _, doc)| doc)
        .filter(|d| d["unmapped"]["apitap"]["detector"] == detector)
        .filter(|d| kind.is_none_or(|k| d["unmapped"]["apitap"]["kind"] == k))
        .map(|d: &Value| {
            (
                d["activity_name"].as_str().unwrap_or_default().to_owned(),
                d["finding_info"]["uid"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect())
}

/// The credential-stuffing detections on the alert topic: (activity, uid).
pub fn stuffing_alerts(broker: &Broker, topic: &str) -> anyhow::Result<Vec<(String, String)>> {
    detections(broker, topic, "credential_stuffing", None)
}

/// Polls `fetch` every half second until `done` holds (an error after `timeout`).
pub fn wait_for(
    timeout: Duration,
    fetch: impl Fn() -> anyhow::Result<Vec<(String, String)>>,
    done: impl Fn(&[(String, String)]) -> bool,
) -> anyhow::Result<Vec<(String, String)>> {
    let deadline = Instant::now() + timeout;
    loop {
        let a = fetch()?;
        if done(&a) {
            return Ok(a);
        }
        if Instant::now() > deadline {
            bail!("alerts so far: {a:?}");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// [`wait_for`] over [`stuffing_alerts`].
pub fn wait_alerts(
    broker: &Broker,
    topic: &str,
    timeout: Duration,
    done: impl Fn(&[(String, String)]) -> bool,
) -> anyhow::Result<Vec<(String, String)>> {
    wait_for(timeout, || stuffing_alerts(broker, topic), done)
}

/// The value of metric `name` (a sample with its labels, if any) on `/metrics` at `addr`.
pub fn metric(addr: &str, name: &str) -> anyhow::Result<u64> {
    crate::broker::http_get(addr, "/metrics")?
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .with_context(|| format!("{name} not on /metrics"))
}

/// The uids of the Creates among `a`.
pub fn creates(a: &[(String, String)]) -> Vec<&str> {
    a.iter()
        .filter(|(act, _)| act == "Create")
        .map(|(_, uid)| uid.as_str())
        .collect()
}

/// Writes the site hash key (mode 0600) into `dir` and returns its path.
pub fn hash_key_file(dir: &Path) -> anyhow::Result<PathBuf> {
    let key = dir.join("hash.key");
    std::fs::write(&key, "apitap detect state test key\n")?;
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))?;
    Ok(key)
}

/// An analyzer config for these tests: `[kafka]` as `group`, the hash key, 1 s flushes,
/// metrics on `metrics`, `[state]` on (topic `<topic>.state`, plus `state_extra` lines), a
/// short lifecycle (Updates every 10 s, Close after 120 s quiet), then `extra` tables.
pub fn analyzer_sections(
    dir: &Path,
    [bootstrap, topic, group, metrics]: [&str; 4],
    state_extra: &str,
    extra: &str,
) -> anyhow::Result<String> {
    let key = hash_key_file(dir)?;
    let kafka = crate::broker::analyzer_kafka_section(bootstrap, topic, group);
    Ok(format!(
        r#"{kafka}[labels]
hash_key_file = {key:?}
[inventory]
flush_interval_secs = 1
[metrics]
listen = "{metrics}"
[state]
enabled = true
topic = "{topic}.state"
{state_extra}[detect.lifecycle]
update_interval_secs = 10
quiet_secs = 120
{extra}"#
    ))
}
