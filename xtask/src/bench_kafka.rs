//! `cargo xtask bench kafka`: event throughput through the bus against a real broker process,
//! printed next to the broker's own `tansu perf` figure measured in the same run, so every
//! number reads as a ratio (R-BUS-1).
//!
//! 1. `tansu perf produce` into a fresh topic for `--seconds`, with records the size of our
//!    events: the broker's own ceiling on this machine.
//! 2. Agent → broker: `KafkaEventPublisher::publish` (JSON encoding, key, headers, librdkafka
//!    batching and lz4, spool if the queue fills) for about as many events as tansu took in
//!    the same time; timed until the last one is acknowledged.
//! 3. Broker → consumer: `KafkaEventConsumer::poll` (fetch, schema check, decode, dedupe,
//!    ack) over the same events; timed from the first event to the last.
//!
//! 2 and 3 run in `apitap-bus`'s `throughput` example, built in release mode like the sensor.

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context as _, bail};
use apitap_tests::broker::{Broker, tansu_bin};
use apitap_tests::workspace_root;

use crate::cargo;

const PARTITIONS: u32 = 4;
const CONSUME_PARTITIONS: u32 = 8;

/// Runs `tansu perf produce`; returns its mean records/s over the reporting intervals.
fn tansu_perf(
    broker: &Broker,
    topic: &str,
    record: usize,
    batch: u32,
    secs: u32,
) -> anyhow::Result<f64> {
    let bin = tansu_bin().context("tansu is not installed")?;
    let url = format!("tcp://127.0.0.1:{}", broker.port);
    let args = [
        "perf".to_string(),
        "--broker".into(),
        url,
        topic.into(),
        "produce".into(),
        "--record-size".into(),
        record.to_string(),
        "--batch-size".into(),
        batch.to_string(),
        "--duration".into(),
        format!("{secs}s"),
    ];
    eprintln!("+ tansu {}", args.join(" "));
    let out = Command::new(bin)
        .args(&args)
        // tansu perf prints its figures when its OpenTelemetry reader exports (default: 60 s).
        .env("OTEL_METRIC_EXPORT_INTERVAL", "1000")
        .output()
        .context("running tansu perf")?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // One line per one-second interval ("elapsed: 1 s, 12600 records sent, 12600.0
    // records/s, …"), then usually one over the whole run. tansu perf 0.6 sometimes panics
    // while shutting its metrics down; the interval figures are still good then.
    let rate_of = |l: &str| {
        l.split(", ")
            .find_map(|f| f.strip_suffix(" records/s"))
            .and_then(|v| v.trim().parse::<f64>().ok())
    };
    let intervals: Vec<f64> = text
        .lines()
        .filter(|l| l.starts_with("elapsed: 1 s,"))
        .filter_map(rate_of)
        .collect();
    if intervals.len() >= 2 {
        return Ok(intervals.iter().sum::<f64>() / intervals.len() as f64);
    }
    if !out.status.success() {
        bail!("tansu perf failed ({}): {text}", out.status);
    }
    match text.lines().rev().find_map(rate_of) {
        Some(r) if r > 0.0 => Ok(r),
        _ => bail!("no throughput in tansu perf's output: {text}"),
    }
}

/// Runs the release-built `throughput` example of apitap-bus; returns (events/s, spooled,
/// event bytes).
fn throughput(args: &[&str]) -> anyhow::Result<(f64, u64, u64, f64)> {
    throughput_in(args, "json")
}

/// [`throughput`] producing events in `encoding` (`json` or `msgpack`).
fn throughput_in(args: &[&str], encoding: &str) -> anyhow::Result<(f64, u64, u64, f64)> {
    eprintln!(
        "+ APITAP_BENCH_ENCODING={encoding} throughput {}",
        args.join(" ")
    );
    let r = run_example("throughput", args, &[("APITAP_BENCH_ENCODING", encoding)])?;
    let field = |k: &str| r.get(k).copied().unwrap_or(0.0);
    Ok((
        field("events_per_sec"),
        field("spooled") as u64,
        field("event_bytes") as u64,
        field("decode_per_sec"),
    ))
}

/// Runs the release-built example `name` with `args` and `env`; returns the numeric fields of
/// the `RESULT key=value …` line it prints.
pub(crate) fn run_example(
    name: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> anyhow::Result<std::collections::HashMap<String, f64>> {
    let bin = workspace_root().join("target/release/examples").join(name);
    let out = Command::new(&bin)
        .args(args)
        .envs(env.iter().copied())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", bin.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!("{name} {} failed ({}): {text}", args.join(" "), out.status);
    }
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .with_context(|| format!("{name} printed no RESULT line"))?;
    Ok(line
        .split(' ')
        .filter_map(|kv| kv.split_once('='))
        .filter_map(|(k, v)| Some((k.to_owned(), v.parse().ok()?)))
        .collect())
}

/// Entry point of `cargo xtask bench kafka --seconds S`.
pub fn run(secs: u32) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("apitap-bench-kafka-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let result = bench(&dir, secs.max(3));
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn bench(dir: &Path, secs: u32) -> anyhow::Result<()> {
    cargo(&[
        "build",
        "--release",
        "-p",
        "apitap-bus",
        "--example",
        "throughput",
    ])?;
    let broker = Broker::start(&dir.join("broker"))?;
    broker.create_topic("bench.perf", 1)?;
    broker.create_topic("bench.events", PARTITIONS)?;
    // The size of our events, for tansu perf's records.
    let probe = throughput(&["size"])?;
    let record = probe.2.max(1) as usize;
    let batch = 200;
    let perf = tansu_perf(&broker, "bench.perf", record, batch, secs)?;

    let n = ((perf * f64::from(secs)) as u64).clamp(10_000, 1_000_000);
    let bootstrap = broker.bootstrap();
    let (produced, spooled, avg, _) = throughput(&[
        "produce",
        &bootstrap,
        "bench.events",
        &n.to_string(),
        &dir.join("spool").to_string_lossy(),
    ])?;
    eprintln!("agent → broker: {produced:.0} events/s ({spooled} spooled)");
    broker.create_topic("bench.events.msgpack", PARTITIONS)?;
    let (produced_mp, spooled_mp, _, _) = throughput_in(
        &[
            "produce",
            &bootstrap,
            "bench.events.msgpack",
            &n.to_string(),
            &dir.join("spool-mp").to_string_lossy(),
        ],
        "msgpack",
    )?;
    eprintln!("agent → broker, MessagePack: {produced_mp:.0} events/s ({spooled_mp} spooled)");
    // tansu's fetch scans a partition's whole backlog on every request (an SQLite window
    // query) and slows down with the size of its database: the consumer reads a bounded
    // backlog, spread over more partitions, from a fresh broker (one per encoding).
    drop(broker);
    let m: u64 = 16_000;
    let mut consumed_by = Vec::new();
    for encoding in ["json", "msgpack"] {
        let broker = Broker::start(&dir.join(format!("broker-{encoding}")))?;
        let bootstrap = broker.bootstrap();
        broker.create_topic("bench.consume", CONSUME_PARTITIONS)?;
        throughput_in(
            &[
                "produce",
                &bootstrap,
                "bench.consume",
                &m.to_string(),
                &dir.join(format!("spool-c-{encoding}")).to_string_lossy(),
            ],
            encoding,
        )?;
        let (consumed, _, _, _) =
            throughput(&["consume", &bootstrap, "bench.consume", &m.to_string()])?;
        eprintln!("broker → consumer ({encoding}): {consumed:.0} events/s");
        consumed_by.push(consumed);
    }
    let (consumed, consumed_mp) = (consumed_by[0], consumed_by[1]);
    let (encode_only, _, _, decode_only) = throughput(&["memory", "50000"])?;

    let mb = |eps: f64| eps * avg as f64 / 1e6;
    println!(
        "\nkafka bench: tansu 0.6 on 127.0.0.1 (SQLite storage), events ~{avg} B of JSON, lz4; {} cores shared",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "{:<58} {:>10} {:>8} {:>8}",
        "path", "events/s", "MB/s", "vs perf"
    );
    let rows = [
        (
            format!("tansu perf produce ({record} B records, batch {batch}, 1 partition)"),
            perf,
        ),
        (
            format!("agent encode → broker ack ({n} events, {PARTITIONS} partitions)"),
            produced,
        ),
        (
            format!("  the same, MessagePack events ({spooled_mp} spooled)"),
            produced_mp,
        ),
        (
            format!("broker → consumer decode+dedupe+ack ({m}, {CONSUME_PARTITIONS} partitions)"),
            consumed,
        ),
        ("  the same, MessagePack events".to_string(), consumed_mp),
        (
            "in-process: encode + publish only (no broker)".to_string(),
            encode_only,
        ),
        (
            "in-process: decode+dedupe+ack only (memory transport)".to_string(),
            decode_only,
        ),
    ];
    for (name, eps) in rows {
        println!(
            "{name:<58} {eps:>10.0} {:>8.1} {:>8.2}",
            mb(eps),
            eps / perf
        );
    }
    println!(
        "({spooled} of the agent's {n} events went through the on-disk spool when its memory queue was full)"
    );
    Ok(())
}
