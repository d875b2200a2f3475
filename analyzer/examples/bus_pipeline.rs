//! The whole analyzer per core from the bus (issue 18, `cargo xtask bench analyzer`): events
//! produced to a real broker first, then timed: consumer fetch and decode → inventory →
//! labels → detections → findings rendered as OCSF alerts, every detector and labelling on.
//! The same path in process (events decoded from their JSON bytes, no broker) is the
//! ceiling.
//!
//! `bus_pipeline produce <bootstrap> <topic> <events> <spool dir> [clients]` (`clients` > 1
//! re-addresses the events over that many client addresses, 16 consecutive events each: the
//! recording has one client and one server, hence one bus key and one partition),
//! `bus_pipeline consume <bootstrap> <topic> <events>`, `bus_pipeline memory <events>`,
//! `bus_pipeline member <bootstrap> <topic> <group> <idle ms>` (one instance of a consumer
//! group sharing a backlog with others: consumes until nothing came for `idle ms`, prints its
//! share, the partitions it was last assigned (`partitions_mask`, bit p = partition p), its
//! CPU time and the wall-clock times of its first and last event, for the scaling run); each prints one `RESULT key=value …` line. `APITAP_BENCH_KAFKA_<OPTION>=v` (dots as
//! underscores, e.g. `APITAP_BENCH_KAFKA_FETCH_WAIT_MAX_MS=10`) passes a librdkafka option
//! to the consumer; `APITAP_BENCH_LINGER_MS` sets the producer's `linger_ms`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // bench code

/// The allocator of the `apitap-analyzer` binary (mimalloc, `analyzer/src/main.rs`): the
/// bench measures the path as it ships (issue 18: with glibc malloc, allocation was a tenth
/// of the in-process instructions).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use apitap_analyzer::detection::Detection;
use apitap_analyzer::ingest::Ingestor;
use apitap_analyzer::inventory::{Inventory, InventoryConfig};
use apitap_analyzer::labelling::Labelling;
use apitap_analyzer::summary::Summary;
use apitap_bus::config::OptionValue;
use apitap_bus::{BusMetrics, EventPublisher, EventSource, KafkaConfig, KafkaEventPublisher};
use apitap_schema::ApiEvent;

#[path = "../benches/common/httpbin.rs"]
mod httpbin;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn ingestor() -> Ingestor {
    let key = apitap_labels::HashKey::from_secret(b"bench");
    let mut ing = Ingestor::new(Summary::new(100_000));
    ing.inventory = Some(Inventory::new(InventoryConfig::default()).expect("inventory"));
    ing.labelling = Some(Labelling::new(key.clone()).expect("labelling"));
    ing.detect =
        Some(Detection::new(&apitap_detect::DetectConfig::default(), &key).expect("detection"));
    ing
}

/// Event `i` of the stream: the recorded httpbin events over and over, each round a minute
/// later in event time (windows and campaigns roll as in a live stream), each with its own id.
fn event(events: &[ApiEvent], i: u64) -> ApiEvent {
    let n = events.len() as u64;
    let mut e = events[(i % n) as usize].clone();
    e.request_start_unix_us += (i / n) * 60_000_000;
    e.event_id = format!("bench-{i:012}");
    e
}

/// Process CPU time (user + system, all threads), from /proc/self/stat (clock ticks of
/// 1/100 s).
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // Fields 14 and 15 of proc(5) (utime, stime) are the 12th and 13th after the name.
    (ticks(11) + ticks(12)) / 100.0
}

/// Distinct (client address, endpoint template) pairs of the recording: the active
/// (actor, template) keys.
fn pairs(events: &[ApiEvent]) -> usize {
    events
        .iter()
        .map(|e| {
            (
                e.client.ip,
                apitap_detect::template::fallback_template(&e.request.path).into_owned(),
            )
        })
        .collect::<HashSet<_>>()
        .len()
}

/// Drains the findings as OCSF alert documents (what goes on the alert topic): (count, bytes).
fn alerts(ing: &mut Ingestor) -> (u64, u64) {
    let Some(d) = ing.detect.as_mut() else {
        return (0, 0);
    };
    let mut n = 0;
    let mut bytes = 0;
    for f in d.take_findings() {
        let doc = apitap_detect::ocsf::detection_finding(&f);
        bytes += serde_json::to_vec(&doc).map_or(0, |v| v.len() as u64);
        n += 1;
    }
    (n, bytes)
}

/// `apitap_detect_state_bytes` of the engine.
fn state_bytes(ing: &Ingestor) -> u64 {
    let mut out = apitap_metrics::Exposition::new();
    if let Some(d) = &ing.detect {
        d.render(&mut out);
    }
    out.finish()
        .lines()
        .find_map(|l| {
            l.strip_prefix("apitap_detect_state_bytes ")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

fn produce(cfg: &KafkaConfig, n: u64, clients: u64) -> Result<()> {
    let events = httpbin::httpbin_events();
    let mut p = KafkaEventPublisher::start(cfg, "bench-analyzer", Arc::new(BusMetrics::default()))?;
    for i in 0..n {
        let mut e = event(&events, i);
        if clients > 1 {
            // Another bus key per client (`client ip|server ip|server port`): the events
            // spread over the partitions as a site's many clients do.
            let c = (i / 16) % clients;
            e.client.ip =
                std::net::IpAddr::V4(std::net::Ipv4Addr::new(10, 214, (c >> 8) as u8, c as u8));
        }
        p.publish(&e);
    }
    let r = p.close(Duration::from_secs(120))?;
    if r.delivered != n {
        return Err(format!("{} of {n} events delivered", r.delivered).into());
    }
    println!("RESULT produced={n}");
    Ok(())
}

fn report(kind: &str, n: u64, wall: f64, cpu: f64, ing: &Ingestor, a: (u64, u64)) {
    let pairs = pairs(&httpbin::httpbin_events());
    let bytes = state_bytes(ing);
    println!(
        "RESULT kind={kind} events={n} events_per_sec={:.1} events_per_cpu_sec={:.1} \
         state_bytes={bytes} pairs={pairs} bytes_per_pair={:.0} alerts={} alert_bytes={}",
        n as f64 / wall,
        n as f64 / cpu.max(1e-9),
        bytes as f64 / pairs.max(1) as f64,
        a.0,
        a.1
    );
}

fn add(total: &mut (u64, u64), a: (u64, u64)) {
    total.0 += a.0;
    total.1 += a.1;
}

/// One consumed event through the analysis, acknowledged; the findings drained every 1024.
fn take(
    c: &mut apitap_bus::KafkaEventConsumer,
    ing: &mut Ingestor,
    r: apitap_bus::Received,
    got: &mut u64,
    alerts_out: &mut (u64, u64),
) {
    if let Some(d) = ing.detect.as_mut() {
        d.set_partition(Some(r.ack.partition()));
    }
    ing.ingest_event(&r.event);
    c.ack(r.ack);
    *got += 1;
    if got.is_multiple_of(1024) {
        add(alerts_out, alerts(ing));
    }
}

fn consume(cfg: &KafkaConfig, n: u64) -> Result<()> {
    let mut c = apitap_bus::KafkaEventConsumer::kafka(cfg, Arc::new(BusMetrics::default()))?;
    let mut ing = ingestor();
    let mut got = 0u64;
    let mut start = None;
    let mut alerts_out = (0, 0);
    let deadline = Instant::now() + Duration::from_secs(900);
    while got < n {
        if Instant::now() > deadline {
            return Err(format!("only {got} of {n} events consumed").into());
        }
        if let Some(r) = c.poll(Duration::from_millis(200))? {
            start.get_or_insert_with(|| (Instant::now(), cpu_secs()));
            take(&mut c, &mut ing, r, &mut got, &mut alerts_out);
        }
    }
    add(&mut alerts_out, alerts(&mut ing));
    let (t0, c0) = start.unwrap_or((Instant::now(), cpu_secs()));
    let (wall, cpu) = (t0.elapsed().as_secs_f64(), cpu_secs() - c0);
    c.close()?;
    // The first event started the clock: n - 1 intervals.
    report("kafka", n - 1, wall, cpu, &ing, alerts_out);
    Ok(())
}

fn unix_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// One member of a group draining a backlog with others: consumes until idle for `idle`
/// after its first event (the idle tail is not counted: the times are of the first and the
/// last event).
fn member(cfg: &KafkaConfig, idle: Duration) -> Result<()> {
    let mut c = apitap_bus::KafkaEventConsumer::kafka(cfg, Arc::new(BusMetrics::default()))?;
    let mut ing = ingestor();
    let mut got = 0u64;
    let mut first = None;
    let mut last = (0u64, Instant::now(), 0.0);
    let mut alerts_out = (0, 0);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(900);
    while Instant::now() < deadline {
        match c.poll(Duration::from_millis(100))? {
            Some(r) => {
                first.get_or_insert_with(|| (unix_us(), cpu_secs()));
                take(&mut c, &mut ing, r, &mut got, &mut alerts_out);
                last = (unix_us(), Instant::now(), cpu_secs());
            }
            None if first.is_some() && last.1.elapsed() >= idle => break,
            // A member the group gave no partition (or that joined after the drain).
            None if first.is_none() && started.elapsed() > Duration::from_secs(60) => break,
            None => {}
        }
    }
    add(&mut alerts_out, alerts(&mut ing));
    let mask: u64 = c
        .transport()
        .assignment()
        .iter()
        .filter(|p| (0..64).contains(*p))
        .map(|p| 1u64 << p)
        .sum();
    c.close()?;
    let (first_us, c0) = first.unwrap_or((0, 0.0));
    println!(
        "RESULT kind=member events={got} partitions_mask={mask} first_unix_us={first_us} \
         last_unix_us={} cpu_secs={:.3} alerts={}",
        last.0,
        (last.2 - c0).max(0.0),
        alerts_out.0
    );
    Ok(())
}

fn memory(n: u64) -> Result<()> {
    let events = httpbin::httpbin_events();
    let encoded: Vec<Vec<u8>> = (0..n)
        .map(|i| apitap_schema::encode_event(&event(&events, i)))
        .collect();
    let mut ing = ingestor();
    let mut alerts_out = (0, 0);
    let (t0, c0) = (Instant::now(), cpu_secs());
    for (i, bytes) in encoded.iter().enumerate() {
        let ev = apitap_schema::decode_event(bytes)?;
        ing.ingest_event(&ev);
        if i % 1024 == 1023 {
            add(&mut alerts_out, alerts(&mut ing));
        }
    }
    add(&mut alerts_out, alerts(&mut ing));
    let (wall, cpu) = (t0.elapsed().as_secs_f64(), cpu_secs() - c0);
    report("memory", n, wall, cpu, &ing, alerts_out);
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: bus_pipeline produce|consume <bootstrap> <topic> <events> [spool [clients]] | \
                 member <bootstrap> <topic> <group> <idle ms> | memory <events>";
    if args.get(1).is_some_and(|a| a == "memory") {
        return memory(args.get(2).ok_or(usage)?.parse()?);
    }
    if args.len() < 5 {
        return Err(usage.into());
    }
    let mut cfg = KafkaConfig::new(vec![args[2].clone()]);
    cfg.events_topic = args[3].clone();
    cfg.alerts_topic = format!("{}.alerts", args[3]);
    cfg.consumer.group_id = "apitap-bench-analyzer".into();
    for (k, v) in std::env::vars() {
        if let Some(opt) = k.strip_prefix("APITAP_BENCH_KAFKA_") {
            let opt = opt.to_ascii_lowercase().replace('_', ".");
            cfg.librdkafka_options.insert(opt, OptionValue::Str(v));
        }
    }
    if args[1] == "member" {
        cfg.consumer.group_id = args[4].clone();
        let idle_ms: u64 = args.get(5).ok_or(usage)?.parse()?;
        return member(&cfg, Duration::from_millis(idle_ms));
    }
    let n: u64 = args[4].parse()?;
    match args[1].as_str() {
        "produce" => {
            cfg.spool.dir = args.get(5).ok_or(usage)?.into();
            // The sensor's batching (what each fetch then returns): `APITAP_BENCH_LINGER_MS`.
            if let Ok(v) = std::env::var("APITAP_BENCH_LINGER_MS") {
                cfg.producer.linger_ms = v.parse()?;
            }
            let clients = args.get(6).map_or(Ok(1), |c| c.parse())?;
            produce(&cfg, n, clients)
        }
        "consume" => consume(&cfg, n),
        _ => Err(usage.into()),
    }
}
