//! `cargo xtask bench tls`: what HTTPS capture (uprobes on OpenSSL 3, issue 16, R-CAP-4,
//! R-CAP-7) costs, in one table and one run:
//!
//! - at fixed HTTPS request rates (`hey -q`, keep-alive, TLS 1.3 to nginx), nginx's rate and
//!   p50/p99 latency without the sensor and with it (`[tls] enabled`, nginx selected by
//!   command name), alternating; the sensor's CPU per 10k HTTPS transactions; and the share
//!   of nginx's logged requests the sensor reported as `tls: true` events (a bench of a
//!   sensor that captures nothing would measure nothing);
//! - the same sensor on the same API in cleartext at the highest fixed rate, for the
//!   sensor's CPU per 10k cleartext transactions next to the HTTPS figure;
//! - hey at its maximum over HTTPS with nginx and hey pinned to core 0 and the sensor on
//!   core 1: the ratio of requests per second with to without (hey, not wrk: wrk links
//!   OpenSSL, and its own calls would trap into the uprobes on nginx's core). The uprobes run in nginx's
//!   own thread (each `SSL_read`/`SSL_write` enters the kernel twice and copies its plaintext
//!   into the ring), so this ratio is what the application pays.
//!
//! Every figure is the median of `ROUNDS` alternations.

use std::time::Duration;

use anyhow::{Context as _, bail};
use apitap_tests::{
    HTTPS_PORT, Nginx, SERVER_IP, SERVER_PORT, Sensor, Topology, make_test_certificate,
    workspace_root,
};

use crate::bench::{USER_HZ, count_log, cpu_ticks, find_pid, perf_record, truncate_log};
use crate::bench_overhead::{Hey, hey_url, median, parse_hey, pin};
use crate::cargo;

/// Alternations per measurement.
const ROUNDS: usize = 3;
/// The fixed HTTPS rates.
const RATES: [u32; 2] = [1_000, 5_000];
/// The sensor's configuration besides the capture defaults.
const TLS_CONFIG: &str = "\n[tls]\nenabled = true\nprocesses = [\"nginx\"]\n";

/// hey at its maximum (no rate limit) on `url`, pinned to core 0 with nginx; requests per
/// second. hey's TLS is Go's own, so the client does not trip the uprobes on `libssl.so.3`
/// (wrk would: it links OpenSSL, and its calls would trap on the same core as nginx's).
fn hey_max_pinned(topo: &Topology, secs: u32, url: &str) -> anyhow::Result<f64> {
    let out = topo
        .client
        .cmd(
            "taskset",
            &[
                "-c",
                "0",
                "hey",
                "-z",
                &format!("{secs}s"),
                "-c",
                "50",
                "-disable-compression",
                url,
            ],
        )
        .output()?;
    if !out.status.success() {
        bail!("hey failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(parse_hey(&String::from_utf8_lossy(&out.stdout))?.rps)
}

/// Events in `path` that came from TLS plaintext.
fn tls_events(path: &std::path::Path) -> anyhow::Result<u64> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
    Ok(text.lines().filter(|l| l.contains("\"tls\":true")).count() as u64)
}

/// One "with sensor" run: what the load tool saw, the sensor's CPU ms per 10k transactions,
/// and the events it reported per request nginx logged.
struct With<T> {
    load: T,
    cpu_per_10k: f64,
    captured: f64,
}

/// Starts the TLS-enabled sensor, runs `load` (which returns its result and the number of
/// transactions it made), stops the sensor and counts what it reported.
fn with_sensor<T>(
    secs: u32,
    topo: &Topology,
    nginx: &Nginx,
    dir: &std::path::Path,
    pin_to: Option<&str>,
    load: impl FnOnce() -> anyhow::Result<(T, f64)>,
    tls: bool,
) -> anyhow::Result<With<T>> {
    let mut sensor = Sensor::start_with(
        &topo.server,
        &topo.server_if,
        &[SERVER_PORT],
        TLS_CONFIG,
        dir,
    )?;
    let pid = find_pid("apitap-sensor").context("sensor pid")?;
    if let Some(cpus) = pin_to {
        pin(pid, cpus, false)?;
        std::thread::sleep(Duration::from_millis(200));
    }
    truncate_log(nginx, topo)?;
    // APITAP_BENCH_PERF=<file>: a system-wide profile of the run (the last run's is kept).
    let perf = perf_record(secs)?;
    let t0 = cpu_ticks(pid);
    let (out, transactions) = load()?;
    if let Some(mut p) = perf {
        p.wait()?;
    }
    let ms = (cpu_ticks(pid) - t0) as f64 / USER_HZ * 1000.0;
    sensor.stop()?;
    let (_, served) = count_log(nginx)?;
    let reported = if tls {
        tls_events(&sensor.events)?
    } else {
        let text = std::fs::read_to_string(&sensor.events)?;
        text.lines()
            .filter(|l| l.contains("\"/api/v1/bench\""))
            .count() as u64
    };
    let _ = std::fs::remove_file(&sensor.events);
    Ok(With {
        load: out,
        cpu_per_10k: ms / (transactions / 10_000.0).max(1e-9),
        captured: reported as f64 / served.max(1) as f64,
    })
}

/// `bench tls`.
pub fn run(secs: u32) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the TLS benchmark needs root");
    }
    crate::setup::install_tools(
        &[
            ("hey", "hey"),
            ("taskset", "util-linux"),
            ("openssl", "openssl"),
        ],
        "for the TLS benchmark",
    )?;
    cargo(&["build", "--release", "-p", "apitap-sensor"])?;
    // SAFETY: single-threaded here; the testbed reads it when starting the sensor.
    unsafe { std::env::set_var("APITAP_BIN_DIR", workspace_root().join("target/release")) };
    let dir = workspace_root().join("target/bench-tls");
    let _ = std::fs::remove_dir_all(&dir);
    let certs = dir.join("certs");
    make_test_certificate(&certs)?;
    let topo = Topology::new("tlsb")?;
    let nginx = Nginx::start_https(&topo.server, &dir.join("nginx"), &certs)?;
    let https = format!("https://{SERVER_IP}:{HTTPS_PORT}/api/v1/bench");

    println!(
        "\nTLS benchmark: nginx 1 KiB JSON over HTTPS (OpenSSL 3, keep-alive), {secs} s per run, median of {ROUNDS} alternations (without, with)"
    );
    println!(
        "{:<26} {:>8} {:>7} {:>7} | {:>8} {:>7} {:>7} | {:>6} {:>6} {:>10} {:>9}",
        "phase",
        "req/s",
        "p50 ms",
        "p99 ms",
        "req/s",
        "p50 ms",
        "p99 ms",
        "p50 ×",
        "p99 ×",
        "cpu ms/10k",
        "captured"
    );
    println!(
        "{:<26} {:^24} | {:^24} |",
        "", "without sensor", "with sensor ([tls])"
    );
    let row = |label: String, url: &str, rate: u32, tls: bool| -> anyhow::Result<()> {
        let (mut base, mut with) = (Vec::<Hey>::new(), Vec::<With<Hey>>::new());
        for round in 0..ROUNDS {
            base.push(hey_url(&topo, rate, secs, url)?);
            with.push(with_sensor(
                secs,
                &topo,
                &nginx,
                &dir.join(format!(
                    "{}-{rate}-{round}",
                    if tls { "tls" } else { "http" }
                )),
                None,
                || {
                    let h = hey_url(&topo, rate, secs, url)?;
                    Ok((h, h.rps * f64::from(secs)))
                },
                tls,
            )?);
        }
        let m = |v: Vec<f64>| median(v);
        let ratio = |f: fn(&Hey) -> f64| {
            median(
                base.iter()
                    .zip(&with)
                    .map(|(b, w)| f(&w.load) / f(b))
                    .collect(),
            )
        };
        println!(
            "{:<26} {:>8.0} {:>7.2} {:>7.2} | {:>8.0} {:>7.2} {:>7.2} | {:>6.2} {:>6.2} {:>10.1} {:>9.3}",
            label,
            m(base.iter().map(|h| h.rps).collect()),
            m(base.iter().map(|h| h.p50_ms).collect()),
            m(base.iter().map(|h| h.p99_ms).collect()),
            m(with.iter().map(|w| w.load.rps).collect()),
            m(with.iter().map(|w| w.load.p50_ms).collect()),
            m(with.iter().map(|w| w.load.p99_ms).collect()),
            ratio(|h| h.p50_ms),
            ratio(|h| h.p99_ms),
            m(with.iter().map(|w| w.cpu_per_10k).collect()),
            m(with.iter().map(|w| w.captured).collect()),
        );
        Ok(())
    };
    for rate in RATES {
        row(format!("https {rate} req/s"), &https, rate, true)?;
    }
    let top = RATES[RATES.len() - 1];
    row(
        format!("http {top} req/s (cleartext)"),
        &topo.url("/api/v1/bench"),
        top,
        false,
    )?;

    // Pinned: nginx (master and worker) and wrk on core 0, the sensor on core 1.
    let master = std::fs::read_to_string(dir.join("nginx/nginx.pid"))
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .context("nginx.pid")?;
    pin(master, "0", true)?;
    let (mut ratios, mut rows) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let base = hey_max_pinned(&topo, secs, &https)?;
        let w = with_sensor(
            secs,
            &topo,
            &nginx,
            &dir.join(format!("pinned-{round}")),
            Some("1"),
            || {
                let r = hey_max_pinned(&topo, secs, &https)?;
                Ok((r, r * f64::from(secs)))
            },
            true,
        )?;
        ratios.push(w.load / base);
        rows.push((base, w));
    }
    let r = median(ratios.clone());
    let i = ratios.iter().position(|x| *x == r).unwrap_or(0);
    println!(
        "{:<26} {:>8.0} {:>7} {:>7} | {:>8.0} {:>7} {:>7} | ratio {:.3} (rounds: {}) {:>10.1} {:>9.3}",
        "https hey max, pinned",
        rows[i].0,
        "",
        "",
        rows[i].1.load,
        "",
        "",
        r,
        ratios
            .iter()
            .map(|x| format!("{x:.3}"))
            .collect::<Vec<_>>()
            .join(", "),
        rows[i].1.cpu_per_10k,
        rows[i].1.captured,
    );
    drop(nginx);
    Ok(())
}
