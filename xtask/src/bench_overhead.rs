//! `cargo xtask bench overhead`: what the sensor costs the application (issue 21, R-CAP-7),
//! measured the way this 2-core machine allows, in one table:
//!
//! - at **fixed** request rates (1k, 5k, 10k req/s, `hey -q`), nginx's p50/p99 latency and the
//!   rate achieved without the sensor and with it, alternating in the same run, and the
//!   sensor's CPU per 10k transactions;
//! - at wrk's maximum with **nginx and wrk pinned to core 0** (the application and its
//!   clients) and the sensor alone on core 1, so that what nginx loses is the sensor's work on
//!   the application's core — the eBPF programs run in the packet's context, and the ring
//!   buffer's wake-ups — rather than the scheduler sharing cores: the ratio of requests per
//!   second with to without. (With wrk on the sensor's core instead, the sensor would starve
//!   the client and the ratio would measure that.)
//!
//! hey reports latencies to 0.1 ms, which bounds the precision of the p50/p99 ratios.
//!
//! - at 10k req/s, the sensor's CPU with `payload.max_bodies_per_endpoint_per_sec = 100`
//!   (body sampling: every transaction's metadata, 100 bodies a second on the one endpoint);
//! - at 2k req/s, the sensor's CPU with the Kafka sink into a real broker (tansu), events in
//!   JSON and in MessagePack (`kafka.producer.event_encoding`).
//!
//! Every figure is the median of `ROUNDS` alternations, each "with" run against the baseline
//! run just before it (the VM drifts by ±15 % over minutes).

use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, bail};
use apitap_tests::{Nginx, SERVER_PORT, Sensor, Topology, workspace_root};

use crate::bench::{USER_HZ, cpu_ticks, find_pid, hey_cmd_url};
use crate::cargo;

/// Alternations per measurement.
const ROUNDS: usize = 3;
/// The fixed rates.
const RATES: [u32; 3] = [1_000, 5_000, 10_000];

/// One hey run: achieved rate and latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Hey {
    pub(crate) rps: f64,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
}

fn hey(topo: &Topology, rate: u32, secs: u32) -> anyhow::Result<Hey> {
    hey_url(topo, rate, secs, &topo.url("/api/v1/bench"))
}

/// [`hey`] on another URL.
pub(crate) fn hey_url(topo: &Topology, rate: u32, secs: u32, url: &str) -> anyhow::Result<Hey> {
    let out = hey_cmd_url(topo, rate, secs, url).output()?;
    if !out.status.success() {
        bail!("hey failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    parse_hey(&String::from_utf8_lossy(&out.stdout))
}

/// `Requests/sec:` and the `50% in X secs` / `99% in Y secs` lines of hey's report.
pub(crate) fn parse_hey(text: &str) -> anyhow::Result<Hey> {
    let rps = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .context("hey printed no Requests/sec")?;
    let pct = |p: &str| -> anyhow::Result<f64> {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(&format!("{p}% in ")))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<f64>().ok())
            .map(|s| s * 1e3)
            .with_context(|| format!("hey printed no {p}% latency"))
    };
    Ok(Hey {
        rps,
        p50_ms: pct("50")?,
        p99_ms: pct("99")?,
    })
}

/// wrk at its maximum on `url`, pinned to core 0 with nginx; requests per second.
pub(crate) fn wrk_pinned(topo: &Topology, secs: u32, url: &str) -> anyhow::Result<f64> {
    let out = topo
        .client
        .cmd(
            "taskset",
            &[
                "-c",
                "0",
                "wrk",
                "-t",
                "1",
                "-c",
                "50",
                "-d",
                &format!("{secs}s"),
                url,
            ],
        )
        .output()?;
    if !out.status.success() {
        bail!("wrk failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .context("wrk printed no Requests/sec")
}

/// Pins process `pid` and all its threads (and, with `children`, its child processes: nginx's
/// workers) to the CPUs in `cpus` (`taskset -c` syntax).
pub(crate) fn pin(pid: u32, cpus: &str, children: bool) -> anyhow::Result<()> {
    let mut pids = vec![pid];
    if children {
        let out = std::process::Command::new("pgrep")
            .args(["-P", &pid.to_string()])
            .output()?;
        pids.extend(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter_map(|l| l.trim().parse::<u32>().ok()),
        );
    }
    for p in pids {
        let status = std::process::Command::new("taskset")
            .args(["-a", "-p", "-c", cpus, &p.to_string()])
            .stdout(Stdio::null())
            .status()?;
        if !status.success() {
            bail!("taskset failed for pid {p}");
        }
    }
    Ok(())
}

/// hey at `rate` against the running sensor: its report and the sensor's CPU milliseconds per
/// 10k transactions meanwhile.
fn hey_with_sensor_cpu(topo: &Topology, rate: u32, secs: u32) -> anyhow::Result<(Hey, f64)> {
    let pid = find_pid("apitap-sensor").context("sensor pid")?;
    let t0 = cpu_ticks(pid);
    let h = hey(topo, rate, secs)?;
    let ms = (cpu_ticks(pid) - t0) as f64 / USER_HZ * 1000.0;
    Ok((h, ms / (h.rps * f64::from(secs) / 10_000.0).max(1e-9)))
}

/// A table row with only the sensor's CPU per 10k transactions.
fn cpu_row(label: &str, per_10k: f64) {
    println!(
        "{label:<22} {:>9} {:>8} {:>8} | {:>9} {:>8} {:>8} | {:>7} {:>7} {:>11.1}",
        "", "", "", "", "", "", "", "", per_10k
    );
}

pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// What both overhead benches need: see [`prepare_bench`].
fn prepare(dir_name: &str) -> anyhow::Result<std::path::PathBuf> {
    prepare_bench(
        "overhead",
        &[("hey", "hey"), ("wrk", "wrk"), ("taskset", "util-linux")],
        dir_name,
    )
}

/// What a live bench needs: root, its `(tool, Debian package)` load tools, the release sensor
/// (used by the testbed), and an empty `target/<dir_name>`, returned.
pub(crate) fn prepare_bench(
    what: &str,
    tools: &[(&str, &str)],
    dir_name: &str,
) -> anyhow::Result<std::path::PathBuf> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the {what} benchmark needs root");
    }
    crate::setup::install_tools(tools, &format!("for the {what} benchmark"))?;
    cargo(&["build", "--release", "-p", "apitap-sensor"])?;
    // SAFETY: single-threaded here; the testbed reads it when starting the sensor.
    unsafe { std::env::set_var("APITAP_BIN_DIR", workspace_root().join("target/release")) };
    let dir = workspace_root().join("target").join(dir_name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// `bench overhead`.
pub fn run(secs: u32) -> anyhow::Result<()> {
    let dir = prepare("bench-overhead")?;
    let topo = Topology::new("ovh")?;
    let nginx = Nginx::start(&topo.server, &dir.join("nginx"))?;
    let start_sensor = |tag: &str| {
        Sensor::start(
            &topo.server,
            &topo.server_if,
            &[SERVER_PORT],
            &dir.join(tag),
        )
    };

    println!(
        "\noverhead benchmark: nginx 1 KiB JSON, {secs} s per run, median of {ROUNDS} alternations (without, with)"
    );
    println!(
        "{:<22} {:>9} {:>8} {:>8} | {:>9} {:>8} {:>8} | {:>7} {:>7} {:>11}",
        "phase",
        "req/s",
        "p50 ms",
        "p99 ms",
        "req/s",
        "p50 ms",
        "p99 ms",
        "p50 ×",
        "p99 ×",
        "cpu ms/10k"
    );
    println!(
        "{:<22} {:^27} | {:^27} |",
        "", "without sensor", "with sensor (full)"
    );
    for rate in RATES {
        let (mut base, mut with, mut cpu) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..ROUNDS {
            base.push(hey(&topo, rate, secs)?);
            let mut sensor = start_sensor(&format!("r{rate}-{round}"))?;
            let (h, per_10k) = hey_with_sensor_cpu(&topo, rate, secs)?;
            cpu.push(per_10k);
            with.push(h);
            sensor.stop()?;
            let _ = std::fs::remove_file(&sensor.events);
        }
        let m = |v: &[Hey], f: fn(&Hey) -> f64| median(v.iter().map(f).collect());
        let ratio =
            |f: fn(&Hey) -> f64| median(base.iter().zip(&with).map(|(b, w)| f(w) / f(b)).collect());
        println!(
            "{:<22} {:>9.0} {:>8.3} {:>8.3} | {:>9.0} {:>8.3} {:>8.3} | {:>7.2} {:>7.2} {:>11.1}",
            format!("{rate} req/s"),
            m(&base, |h| h.rps),
            m(&base, |h| h.p50_ms),
            m(&base, |h| h.p99_ms),
            m(&with, |h| h.rps),
            m(&with, |h| h.p50_ms),
            m(&with, |h| h.p99_ms),
            ratio(|h| h.p50_ms),
            ratio(|h| h.p99_ms),
            median(cpu)
        );
    }

    // Body sampling (payload.max_bodies_per_endpoint_per_sec = 100) at 10k req/s on the one
    // bench endpoint: what an operator's cap saves the sensor, same rate, same rounds.
    let mut capped = Vec::new();
    for round in 0..ROUNDS {
        let mut sensor = Sensor::start_with(
            &topo.server,
            &topo.server_if,
            &[SERVER_PORT],
            "\n[payload]\nmax_bodies_per_endpoint_per_sec = 100\n",
            &dir.join(format!("sampled-{round}")),
        )?;
        capped.push(hey_with_sensor_cpu(&topo, 10_000, secs)?.1);
        sensor.stop()?;
        let _ = std::fs::remove_file(&sensor.events);
    }
    cpu_row("10000 req/s, bodies ≤ 100/s", median(capped));

    // The Kafka sink, JSON against MessagePack events (issue 21, `kafka.producer
    // .event_encoding`): the sensor's CPU with a real broker (tansu, in the server's
    // namespace) taking the events, at a rate tansu keeps up with here (so nothing spools).
    kafka_encodings(&topo, &dir, secs)?;

    // Pinned layout: nginx (master and its worker) and wrk on core 0, the sensor on core 1.
    let master = std::fs::read_to_string(dir.join("nginx/nginx.pid"))
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .context("nginx.pid")?;
    pin(master, "0", true)?;
    let mut ratios = Vec::new();
    let mut rows = Vec::new();
    for round in 0..ROUNDS {
        let base = wrk_pinned(&topo, secs, &topo.url("/api/v1/bench"))?;
        let mut sensor = start_sensor(&format!("pinned-{round}"))?;
        let pid = find_pid("apitap-sensor").context("sensor pid")?;
        pin(pid, "1", false)?;
        std::thread::sleep(Duration::from_millis(200));
        let with = wrk_pinned(&topo, secs, &topo.url("/api/v1/bench"))?;
        sensor.stop()?;
        let _ = std::fs::remove_file(&sensor.events);
        ratios.push(with / base);
        rows.push((base, with));
    }
    let r = median(ratios.clone());
    let i = ratios.iter().position(|x| *x == r).unwrap_or(0);
    println!(
        "{:<22} {:>9.0} {:>8} {:>8} | {:>9.0} {:>8} {:>8} | ratio {:.3} (rounds: {})",
        "wrk max, pinned",
        rows[i].0,
        "",
        "",
        rows[i].1,
        "",
        "",
        r,
        ratios
            .iter()
            .map(|x| format!("{x:.3}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    drop(nginx);
    Ok(())
}

/// At [`KAFKA_RATE`], the sensor's CPU per 10k transactions with the file sink and with the
/// Kafka sink: events in JSON at the tests' `linger_ms = 5` (what this phase measured until
/// issue 21's producer check), then in JSON and in MessagePack at the producer's default
/// linger (what an operator runs); alternating, median of [`ROUNDS`].
/// Request rate of the Kafka phase: below what tansu (SQLite storage) takes on this machine
/// (≈ 5k events/s, `cargo xtask bench kafka`), so the producer never spools.
const KAFKA_RATE: u32 = 2_000;

/// The sinks of the Kafka phase: row label, event encoding (`None`: the file sink), and
/// whether the tests' 5 ms linger stays in the producer configuration.
const KAFKA_SINKS: [(&str, Option<&str>, bool); 4] = [
    ("file (JSON lines)", None, false),
    ("Kafka json, linger 5 ms", Some("json"), true),
    ("Kafka json, default linger", Some("json"), false),
    ("Kafka msgpack, default linger", Some("msgpack"), false),
];

fn kafka_encodings(topo: &Topology, dir: &std::path::Path, secs: u32) -> anyhow::Result<()> {
    use apitap_tests::broker::{Broker, ConfiguredSensor, kafka_sensor_config, tansu_bin};
    if tansu_bin().is_none() {
        bail!("tansu is not installed (run `cargo xtask setup`)");
    }
    let broker = Broker::start_in(&topo.server, &dir.join("broker"))?;
    broker.create_topic("apitap.events.v1", 3)?;
    let mut cpu: Vec<Vec<f64>> = vec![Vec::new(); KAFKA_SINKS.len()];
    for round in 0..ROUNDS {
        for (i, (_, encoding, short_linger)) in KAFKA_SINKS.into_iter().enumerate() {
            let tag = format!("kafka-{i}-{round}");
            let Some(encoding) = encoding else {
                let mut sensor = Sensor::start(
                    &topo.server,
                    &topo.server_if,
                    &[SERVER_PORT],
                    &dir.join(&tag),
                )?;
                cpu[i].push(hey_with_sensor_cpu(topo, KAFKA_RATE, secs)?.1);
                sensor.stop()?;
                let _ = std::fs::remove_file(&sensor.events);
                continue;
            };
            let mut config = kafka_sensor_config(
                "bench-overhead",
                &topo.server_if,
                &broker,
                &dir.join(format!("spool-{tag}")),
                1_000_000,
            )
            .replacen(
                "[kafka.producer]\n",
                &format!("[kafka.producer]\nevent_encoding = \"{encoding}\"\n"),
                1,
            );
            if !short_linger {
                let with = config.clone();
                config = config.replacen("linger_ms = 5\n", "", 1);
                if config == with {
                    bail!("the tests' sensor configuration no longer sets linger_ms = 5");
                }
            }
            let mut sensor = ConfiguredSensor::start(&topo.server, &config, &dir.join(&tag))?;
            cpu[i].push(hey_with_sensor_cpu(topo, KAFKA_RATE, secs)?.1);
            sensor.stop()?;
        }
    }
    for (i, (label, _, _)) in KAFKA_SINKS.into_iter().enumerate() {
        cpu_row(
            &format!("{KAFKA_RATE} req/s, {label}"),
            median(cpu[i].clone()),
        );
    }
    Ok(())
}

/// `bench overhead-kafka`: only the Kafka phase of `bench overhead` (the sensor's CPU per
/// 10k transactions at [`KAFKA_RATE`] by sink and producer configuration).
pub fn run_kafka(secs: u32) -> anyhow::Result<()> {
    let dir = prepare("bench-overhead-kafka")?;
    let topo = Topology::new("ovk")?;
    let nginx = Nginx::start(&topo.server, &dir.join("nginx"))?;
    println!("\nKafka phase of the overhead benchmark: {secs} s per run, median of {ROUNDS}");
    kafka_encodings(&topo, &dir, secs)?;
    drop(nginx);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_heys_report() {
        let text = "Summary:\n  Total:\t5.0012 secs\n  Requests/sec:\t998.7501\n\nLatency distribution:\n  10% in 0.0002 secs\n  50% in 0.0004 secs\n  99% in 0.0021 secs\n";
        let h = parse_hey(text).unwrap();
        assert!((h.rps - 998.7501).abs() < 1e-9);
        assert!((h.p50_ms - 0.4).abs() < 1e-9 && (h.p99_ms - 2.1).abs() < 1e-9);
        assert!(parse_hey("Requests/sec: 3\n").is_err());
    }
}
