//! `cargo xtask bench analyzer` (issue 18): the whole analyzer per core, every detector and
//! labelling on, on the recorded httpbin events (real sensor output) replayed as a stream.
//!
//! 1. In process, no broker: JSON decode → inventory → labels → detections → OCSF alerts (the
//!    ceiling).
//! 2. From the bus: the events are produced to a fresh tansu broker first, then timed from the
//!    first event consumed to the last: consumer fetch, schema check, decode, dedupe → the
//!    same path → ack.
//!
//! Each figure is events per second of wall time and per CPU-second of the whole process (all
//! threads: librdkafka's included), the detection state's bytes per active (actor, template)
//! pair, and the 1-minute load average when it was taken (the machine is shared). Printed next
//! to the previous run (`target/bench-analyzer/last.json`), as the other benches do.
//! 3. Scaling: the same backlog drained by 1, then by 2 instances (processes) of one consumer
//!    group; wall time from the group's first event to its last, events/s and the ratio of
//!    2 over 1 (on a machine with spare cores and a broker that keeps up it approaches 2×).
//!    The recording has one client and one server, i.e. one bus key: the scaling backlog is
//!    re-addressed over [`SCALE_CLIENTS`] clients so that it spreads over the partitions.
//!    `cargo xtask bench analyzer-scaling` runs this part alone.
//!
//! The runs are `apitap-analyzer`'s `bus_pipeline` example, built in release mode.

use std::collections::HashMap;

use apitap_tests::broker::Broker;
use apitap_tests::workspace_root;

use crate::cargo;

const PARTITIONS: u32 = 4;
/// Events through the broker (tansu's fetch slows with the size of its backlog: bounded, as
/// in `bench kafka`).
const KAFKA_EVENTS: u64 = 16_000;
const MEMORY_EVENTS: u64 = 100_000;
/// A member stops after this long without an event (tansu pauses for seconds in the middle
/// of a backlog: measured, a 5 s idle end stopped a drain half-way).
const IDLE_END_MS: &str = "20000";
/// Time given to the members of the scaling run to form their group.
const GROUP_FORM_SECS: u64 = 15;
/// Backlog of the scaling run (its own topic, same partitions).
const SCALE_EVENTS: u64 = 4_000;
/// Client addresses of the scaling backlog (distinct bus keys; 16 consecutive events each).
const SCALE_CLIENTS: &str = "64";

/// The 1-minute load average.
fn load() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

/// Runs `bus_pipeline args` with `env`; returns its RESULT fields.
fn pipeline(args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<HashMap<String, f64>> {
    eprintln!("+ bus_pipeline {}", args.join(" "));
    let mut env = env.to_vec();
    env.push(("RUST_LOG", "warn"));
    crate::bench_kafka::run_example("bus_pipeline", args, &env)
}

/// Entry point: the three parts.
pub fn run() -> anyhow::Result<()> {
    in_temp_dir(bench)
}

/// Entry point of `bench analyzer-scaling`: the scaling part alone.
pub fn run_scaling() -> anyhow::Result<()> {
    in_temp_dir(|dir| {
        build()?;
        let broker = Broker::start(&dir.join("broker"))?;
        let mut loads = Vec::new();
        let scaling = scaling_runs(&broker, dir, &mut loads)?;
        drop(broker);
        let mut now = Vec::new();
        let ratio = scaling_rows(&scaling, &mut now);
        crate::bench::print_against_previous(
            "analyzer scaling",
            "value",
            "event",
            2.0 * SCALE_EVENTS as f64,
            &now,
            &workspace_root().join("target/bench-analyzer-scaling"),
        )?;
        print_scaling(&scaling, &loads, ratio);
        Ok(())
    })
}

fn in_temp_dir(f: impl FnOnce(&std::path::Path) -> anyhow::Result<()>) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("apitap-bench-analyzer-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let result = f(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn build() -> anyhow::Result<()> {
    cargo(&[
        "build",
        "--release",
        "-p",
        "apitap-analyzer",
        "--example",
        "bus_pipeline",
    ])
}

fn bench(dir: &std::path::Path) -> anyhow::Result<()> {
    build()?;
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mut now: Vec<(String, f64)> = Vec::new();
    let mut loads = Vec::new();

    let load_mem = load();
    let mem = pipeline(&["memory", &MEMORY_EVENTS.to_string()], &[])?;
    loads.push(("in process", load_mem));

    let broker = Broker::start(&dir.join("broker"))?;
    let bootstrap = broker.bootstrap();
    let topic = "bench.analyzer";
    broker.create_topic(topic, PARTITIONS)?;
    let n = KAFKA_EVENTS.to_string();
    pipeline(
        &[
            "produce",
            &bootstrap,
            topic,
            &n,
            &dir.join("spool").to_string_lossy(),
        ],
        &[],
    )?;
    let load_kafka = load();
    let kafka = pipeline(&["consume", &bootstrap, topic, &n], &[])?;
    loads.push(("from the bus", load_kafka));
    let scaling = scaling_runs(&broker, dir, &mut loads)?;
    drop(broker);

    for (label, r) in [("in process", &mem), ("from the bus", &kafka)] {
        now.push((format!("{label}: events/s"), r["events_per_sec"]));
        now.push((format!("{label}: events/CPU-s"), r["events_per_cpu_sec"]));
        now.push((format!("{label}: state B/pair"), r["bytes_per_pair"]));
    }
    let ratio = scaling_rows(&scaling, &mut now);
    println!(
        "\nanalyzer bench: recorded httpbin events ({} distinct (actor, template) pairs), every \
         detector and labelling on; tansu on 127.0.0.1, {PARTITIONS} partitions; {cores} cores shared",
        kafka["pairs"]
    );
    crate::bench::print_against_previous(
        "analyzer",
        "value",
        "event",
        MEMORY_EVENTS as f64 + KAFKA_EVENTS as f64 + 2.0 * SCALE_EVENTS as f64,
        &now,
        &workspace_root().join("target/bench-analyzer"),
    )?;
    println!(
        "alerts rendered: {} in process, {} from the bus; state bytes {} / {}",
        mem["alerts"], kafka["alerts"], mem["state_bytes"], kafka["state_bytes"]
    );
    print_scaling(&scaling, &loads, ratio);
    Ok(())
}

/// The scaling part: 1, then 2 instances of a fresh group, each on its own topic.
fn scaling_runs(
    broker: &Broker,
    dir: &std::path::Path,
    loads: &mut Vec<(&'static str, f64)>,
) -> anyhow::Result<Vec<Drain>> {
    let bootstrap = broker.bootstrap();
    let mut scaling = Vec::new();
    for instances in [1usize, 2] {
        loads.push((
            if instances == 1 {
                "1 instance"
            } else {
                "2 instances"
            },
            load(),
        ));
        let scale_topic = format!("bench.analyzer.scale{instances}");
        broker.create_topic(&scale_topic, PARTITIONS)?;
        let spool = dir.join(format!("spool-scale{instances}"));
        let r = group_drain(&bootstrap, &scale_topic, instances, &spool)?;
        if r.events < SCALE_EVENTS {
            anyhow::bail!(
                "{instances} instance(s) consumed {} of {SCALE_EVENTS} events",
                r.events
            );
        }
        scaling.push(r);
    }
    Ok(scaling)
}

/// The scaling rows of the table; returns the 2 / 1 ratio.
fn scaling_rows(scaling: &[Drain], now: &mut Vec<(String, f64)>) -> f64 {
    for (i, r) in scaling.iter().enumerate() {
        let label = format!("{} instance(s)", i + 1);
        now.push((format!("{label}: events/s"), r.events_per_sec()));
        now.push((
            format!("{label}: events/CPU-s"),
            r.events as f64 / r.cpu_secs.max(1e-9),
        ));
    }
    let ratio = scaling[1].events_per_sec() / scaling[0].events_per_sec().max(1e-9);
    now.push(("scaling 2 / 1 instances (wall, %)".into(), 100.0 * ratio));
    ratio
}

fn print_scaling(scaling: &[Drain], loads: &[(&str, f64)], ratio: f64) {
    for (label, l) in loads {
        println!("load average (1 min) when {label} was measured: {l:.2}");
    }
    for (i, r) in scaling.iter().enumerate() {
        println!(
            "{} instance(s): {} events in {:.1} s (shares {:?}, partitions {:?}; {} redelivered \
             at the rebalance), {:.2} CPU-s; 2/1 ratio {ratio:.2}",
            i + 1,
            r.events,
            r.wall_secs,
            r.shares,
            r.partitions,
            r.events.saturating_sub(SCALE_EVENTS),
            r.cpu_secs
        );
    }
}

/// A group's drain of the backlog (scaling run).
struct Drain {
    /// Events processed by all members (at least the backlog; more when a rebalance
    /// redelivered unacknowledged ones).
    events: u64,
    /// Events per member.
    shares: Vec<u64>,
    /// Partitions each member was last assigned.
    partitions: Vec<Vec<u32>>,
    /// From the group's first event to its last.
    wall_secs: f64,
    /// CPU of all members over their first to last event.
    cpu_secs: f64,
}

impl Drain {
    fn events_per_sec(&self) -> f64 {
        SCALE_EVENTS as f64 / self.wall_secs.max(1e-9)
    }
}

/// `instances` processes of a fresh consumer group on the empty `topic`; once the group has
/// formed ([`GROUP_FORM_SECS`]), the backlog is produced and they drain it.
fn group_drain(
    bootstrap: &str,
    topic: &str,
    instances: usize,
    spool: &std::path::Path,
) -> anyhow::Result<Drain> {
    let group = format!("apitap-bench-scale-{instances}");
    let results: Vec<anyhow::Result<HashMap<String, f64>>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..instances)
            .map(|_| {
                let group = group.as_str();
                s.spawn(move || pipeline(&["member", bootstrap, topic, group, IDLE_END_MS], &[]))
            })
            .collect();
        // Every member joined and assigned its partitions before the first event exists
        // (otherwise the first to join drains a small backlog alone).
        std::thread::sleep(std::time::Duration::from_secs(GROUP_FORM_SECS));
        let produced = pipeline(
            &[
                "produce",
                bootstrap,
                topic,
                &SCALE_EVENTS.to_string(),
                &spool.to_string_lossy(),
                SCALE_CLIENTS,
            ],
            &[],
        );
        if let Err(e) = produced {
            return vec![Err(e)];
        }
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("member thread panicked")))
            })
            .collect()
    });
    let results = results.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
    let shares: Vec<u64> = results.iter().map(|r| r["events"] as u64).collect();
    let active = || results.iter().filter(|r| r["events"] > 0.0);
    let first = active()
        .map(|r| r["first_unix_us"])
        .fold(f64::MAX, f64::min);
    let last = active().map(|r| r["last_unix_us"]).fold(0.0, f64::max);
    let partitions = results
        .iter()
        .map(|r| {
            let mask = r["partitions_mask"] as u64;
            (0..64).filter(|p| mask & (1 << p) != 0).collect()
        })
        .collect();
    Ok(Drain {
        events: shares.iter().sum(),
        shares,
        partitions,
        wall_secs: ((last - first) / 1e6).max(0.0),
        cpu_secs: results.iter().map(|r| r["cpu_secs"]).sum(),
    })
}
