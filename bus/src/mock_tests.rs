//! Producer and consumer against librdkafka's in-process mock cluster (unit tests only; the
//! integration tests in `tests/` use a real broker process): delivery, key ordering, spooling
//! while the broker is down, replay, restart recovery, acknowledgments.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::mocking::MockCluster;

use crate::config::KafkaConfig;
use crate::metrics::BusMetrics;
use crate::producer::tests::event;
use crate::{EventPublisher, EventSource, KafkaEventConsumer, KafkaEventPublisher, Publish};

fn config(
    mock: &MockCluster<'_, impl rdkafka::ClientContext>,
    dir: &std::path::Path,
) -> KafkaConfig {
    let mut cfg = KafkaConfig::new(
        mock.bootstrap_servers()
            .split(',')
            .map(str::to_owned)
            .collect(),
    );
    cfg.spool.dir = dir.to_path_buf();
    cfg.producer.stall_timeout_ms = 2000;
    cfg.producer.linger_ms = 5;
    cfg.consumer.commit_interval_ms = 100;
    // A consumer replaced within a test must not hold its partitions for the default 45 s.
    cfg.librdkafka_options.insert(
        "session.timeout.ms".into(),
        crate::config::OptionValue::Int(6000),
    );
    cfg
}

fn logs() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .try_init();
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Reads until `n` events arrived; returns (client ip, event number) in arrival order.
fn consume(cfg: &KafkaConfig, n: usize) -> Vec<(String, u64)> {
    let metrics = Arc::new(BusMetrics::default());
    let mut c = KafkaEventConsumer::kafka(cfg, metrics).unwrap();
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while got.len() < n {
        assert!(
            Instant::now() < deadline,
            "only {} of {n} events arrived",
            got.len()
        );
        if let Some(r) = c.poll(Duration::from_millis(200)).unwrap() {
            got.push((
                r.event.client.ip.to_string(),
                r.event.request_start_unix_us - 1_700_000_000_000_000,
            ));
            c.ack(r.ack);
        }
    }
    c.close().unwrap();
    got
}

fn assert_per_key_order(got: &[(String, u64)]) {
    let mut last: BTreeMap<&str, u64> = BTreeMap::new();
    for (k, i) in got {
        if let Some(prev) = last.insert(k, *i) {
            assert!(prev < *i, "key {k}: {i} after {prev}");
        }
    }
}

fn clients() -> Vec<String> {
    (0..8).map(|c| format!("10.7.0.{c}")).collect()
}

#[test]
fn events_arrive_once_in_order_per_key() {
    logs();
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic("apitap.events.v1", 4, 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&mock, dir.path());
    let metrics = Arc::new(BusMetrics::default());
    let mut p = KafkaEventPublisher::start(&cfg, "s1", metrics.clone()).unwrap();
    let cl = clients();
    for i in 0..2000u64 {
        let out = p.publish(&event(i, &cl[(i % 8) as usize]));
        assert!(matches!(out, Publish::Queued | Publish::Spooled), "{out:?}");
    }
    let report = p.close(Duration::from_secs(20)).unwrap();
    assert_eq!(report.delivered, 2000);
    assert_eq!(report.left_in_spool, 0);
    assert_eq!(report.dropped, 0);
    let got = consume(&cfg, 2000);
    let ids: HashSet<u64> = got.iter().map(|g| g.1).collect();
    assert_eq!(ids.len(), 2000);
    assert_per_key_order(&got);
}

#[test]
fn a_full_memory_queue_spills_to_the_spool_and_keeps_order() {
    logs();
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic("apitap.events.v1", 3, 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&mock, dir.path());
    cfg.producer.queue_max_events = 20;
    let metrics = Arc::new(BusMetrics::default());
    let mut p = KafkaEventPublisher::start(&cfg, "s1", metrics.clone()).unwrap();
    let cl = clients();
    for i in 0..3000u64 {
        p.publish(&event(i, &cl[(i % 8) as usize]));
    }
    let report = p.close(Duration::from_secs(30)).unwrap();
    assert!(
        BusMetrics::get(&metrics.events_spooled) > 0,
        "the tiny queue must have overflowed into the spool"
    );
    assert_eq!(report.delivered, 3000, "{report:?}");
    assert_eq!(report.left_in_spool, 0);
    let got = consume(&cfg, 3000);
    assert_per_key_order(&got);
}

#[test]
fn broker_down_spools_then_replays_everything_when_back() {
    logs();
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic("apitap.events.v1", 2, 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&mock, dir.path());
    let metrics = Arc::new(BusMetrics::default());
    let mut p = KafkaEventPublisher::start(&cfg, "s1", metrics.clone()).unwrap();
    let cl = clients();
    for i in 0..100u64 {
        p.publish(&event(i, &cl[(i % 8) as usize]));
    }
    wait_for("first delivery", Duration::from_secs(10), || {
        BusMetrics::get(&metrics.events_delivered) == 100
    });
    mock.broker_down(1).unwrap();
    // Keep publishing while the broker is down: the producer notices and spools.
    let mut i = 100u64;
    let deadline = Instant::now() + Duration::from_secs(15);
    while BusMetrics::get(&metrics.events_spooled) < 200 {
        assert!(Instant::now() < deadline, "never spooled");
        p.publish(&event(i, &cl[(i % 8) as usize]));
        i += 1;
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(BusMetrics::get(&metrics.broker_unreachable) >= 1);
    mock.broker_up(1).unwrap();
    for _ in 0..100 {
        p.publish(&event(i, &cl[(i % 8) as usize]));
        i += 1;
    }
    wait_for("spool drained", Duration::from_secs(30), || {
        BusMetrics::get(&metrics.events_delivered) >= i
            && BusMetrics::get(&metrics.spool_events) == 0
    });
    let report = p.close(Duration::from_secs(5)).unwrap();
    assert_eq!(report.dropped, 0);
    assert_eq!(report.left_in_spool, 0);
    let got = consume(&cfg, i as usize);
    let ids: HashSet<u64> = got.iter().map(|g| g.1).collect();
    assert_eq!(ids, (0..i).collect::<HashSet<_>>(), "every id exactly once");
    assert_per_key_order(&got);
}

/// A spool that cannot be opened (here its directory would be inside a regular file; in
/// production a read-only or full disk) does not stop the sensor (issue 22): events go to the
/// broker directly, the gauge says the spool is unavailable, and while the broker is down the
/// events it cannot take are dropped and counted, never lost silently.
#[test]
fn an_unopenable_spool_degrades_to_direct_delivery_and_counts_drops() {
    logs();
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic("apitap.events.v1", 2, 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("not-a-directory");
    std::fs::write(&blocker, b"x").unwrap();
    let cfg = config(&mock, &blocker.join("spool"));
    let metrics = Arc::new(BusMetrics::default());
    let mut p = KafkaEventPublisher::start(&cfg, "s1", metrics.clone()).unwrap();
    assert_eq!(BusMetrics::get(&metrics.spool_unavailable), 1);
    assert_eq!(BusMetrics::get(&metrics.spool_open_failures), 1);
    let cl = clients();
    for i in 0..100u64 {
        p.publish(&event(i, &cl[(i % 8) as usize]));
    }
    wait_for("direct delivery", Duration::from_secs(10), || {
        BusMetrics::get(&metrics.events_delivered) == 100
    });
    mock.broker_down(1).unwrap();
    let mut i = 100u64;
    let deadline = Instant::now() + Duration::from_secs(15);
    while metrics.dropped_total(crate::metrics::DropCause::SpoolIo) == 0 {
        assert!(Instant::now() < deadline, "nothing was counted as dropped");
        p.publish(&event(i, &cl[(i % 8) as usize]));
        i += 1;
        std::thread::sleep(Duration::from_millis(2));
    }
    mock.broker_up(1).unwrap();
    let report = p.close(Duration::from_secs(10)).unwrap();
    assert_eq!(report.left_in_spool, 0);
    assert!(report.dropped > 0);
    assert_eq!(
        report.delivered + report.dropped,
        i,
        "every event delivered or counted: {report:?}"
    );
    assert!(
        metrics
            .render_string()
            .contains("apitap_bus_spool_unavailable 1")
    );
}

#[test]
fn undelivered_events_survive_a_restart_of_the_publisher() {
    logs();
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic("apitap.events.v1", 2, 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&mock, dir.path());
    mock.broker_down(1).unwrap();
    {
        let metrics = Arc::new(BusMetrics::default());
        let mut p = KafkaEventPublisher::start(&cfg, "s1", metrics.clone()).unwrap();
        let cl = clients();
        for i in 0..300u64 {
            p.publish(&event(i, &cl[(i % 8) as usize]));
            if i == 150 {
                // Let the producer notice the broker is down: the rest goes to the spool.
                wait_for("unreachable", Duration::from_secs(10), || {
                    BusMetrics::get(&metrics.spooling) == 1
                });
            }
        }
        let report = p.close(Duration::ZERO).unwrap();
        assert_eq!(report.delivered, 0);
        assert_eq!(report.left_in_spool, 300, "{report:?}");
    }
    mock.broker_up(1).unwrap();
    let metrics = Arc::new(BusMetrics::default());
    let mut p = KafkaEventPublisher::start(&cfg, "s1", metrics.clone()).unwrap();
    wait_for("replay after restart", Duration::from_secs(30), || {
        BusMetrics::get(&metrics.events_delivered) >= 300
    });
    let report = p.close(Duration::from_secs(5)).unwrap();
    assert_eq!(report.left_in_spool, 0);
    let got = consume(&cfg, 300);
    // In publish order, including the queue salvaged on shutdown (written in front).
    assert_eq!(got.iter().map(|g| g.1).collect::<Vec<_>>().len(), 300);
    let ids: HashSet<u64> = got.iter().map(|g| g.1).collect();
    assert_eq!(ids.len(), 300);
    assert_per_key_order(&got);
}

#[test]
fn unacknowledged_events_are_read_again_by_the_next_consumer() {
    logs();
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic("apitap.events.v1", 1, 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&mock, dir.path());
    let metrics = Arc::new(BusMetrics::default());
    let mut p = KafkaEventPublisher::start(&cfg, "s1", metrics).unwrap();
    for i in 0..50u64 {
        p.publish(&event(i, "10.7.0.1"));
    }
    p.close(Duration::from_secs(10)).unwrap();
    {
        let mut c = KafkaEventConsumer::kafka(&cfg, Arc::new(BusMetrics::default())).unwrap();
        let mut n = 0;
        let deadline = Instant::now() + Duration::from_secs(30);
        while n < 30 {
            assert!(Instant::now() < deadline);
            if let Some(r) = c.poll(Duration::from_millis(100)).unwrap() {
                // Acknowledge the first 20 only; 20..30 were seen but their effects not durable.
                if n < 20 {
                    c.ack(r.ack);
                }
                n += 1;
            }
        }
        c.close().unwrap();
    }
    let got = consume(&cfg, 30);
    let first = got.iter().map(|g| g.1).min().unwrap();
    assert_eq!(first, 20, "resumes at the first unacknowledged event");
}

#[test]
fn a_fatal_producer_error_rebuilds_the_producer_and_loses_nothing() {
    logs();
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic("apitap.events.v1", 2, 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&mock, dir.path());
    let metrics = Arc::new(BusMetrics::default());
    let mut p = KafkaEventPublisher::start(&cfg, "s1", metrics.clone()).unwrap();
    let cl = clients();
    for i in 0..100u64 {
        p.publish(&event(i, &cl[(i % 8) as usize]));
    }
    wait_for("first delivery", Duration::from_secs(10), || {
        BusMetrics::get(&metrics.events_delivered) == 100
    });
    // Queue events the broker cannot take yet, then make the producer instance unusable.
    mock.broker_down(1).unwrap();
    for i in 100..200u64 {
        p.publish(&event(i, &cl[(i % 8) as usize]));
    }
    let reason = std::ffi::CString::new("injected by the test").unwrap();
    // SAFETY: a valid client handle and NUL-terminated reason; librdkafka's test hook.
    unsafe {
        rdkafka::bindings::rd_kafka_test_fatal_error(
            p.native_for_test(),
            rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER,
            reason.as_ptr(),
        );
    }
    wait_for("rebuild", Duration::from_secs(10), || {
        BusMetrics::get(&metrics.producer_rebuilds) == 1
    });
    mock.broker_up(1).unwrap();
    for i in 200..300u64 {
        p.publish(&event(i, &cl[(i % 8) as usize]));
    }
    wait_for("everything delivered", Duration::from_secs(30), || {
        BusMetrics::get(&metrics.events_delivered) >= 300
            && BusMetrics::get(&metrics.spool_events) == 0
    });
    let report = p.close(Duration::from_secs(5)).unwrap();
    assert_eq!(report.dropped, 0);
    let got = consume(&cfg, 300);
    let ids: HashSet<u64> = got.iter().map(|g| g.1).collect();
    assert_eq!(ids, (0..300).collect::<HashSet<_>>());
    assert_per_key_order(&got);
}
