//! Project automation (`cargo xtask …`): the README's two commands and what they need.
//!
//! - `setup`: installs what a fresh Debian machine lacks (idempotent; seconds when present).
//! - `demo`: sets up, builds, and runs the end-to-end demo in network namespaces.
//! - `test`: sets up, builds once, checks formatting and lints, runs the whole test suite.
mod attacks;
mod bench;
mod bench_analyzer;
mod bench_h2;
mod bench_hostile;
mod bench_kafka;
mod bench_overhead;
mod bench_tls;
mod demo;
mod demo_data;
mod disk;
mod fixtures;
mod image;
mod setup;
mod thirdparty;

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install Debian packages, the nightly rust-src component, bpf-linker and tansu (the
    /// tests' Kafka broker) if missing.
    Setup,
    /// Set up what the demo needs, build, and run it: a customer API with personal data in a
    /// network namespace, benign users and ffuf attacking it, apitap watching; then the
    /// inventory, the data map, the detections, one OCSF alert and the counters.
    Demo {
        /// Through a real Kafka-protocol broker (tansu): apitap-sensor → Kafka →
        /// apitap-analyzer run, instead of the single-process `apitap run`.
        #[arg(long)]
        kafka: bool,
        /// Assert the results (templated customer endpoint with prc_id/mobile fields,
        /// stuffing and enumeration detections naming the attacker, a valid OCSF alert).
        #[arg(long)]
        check: bool,
    },
    /// Set up, build, check formatting and lints, and run every test (privileged ones too).
    Test,
    /// Assemble the container image roots (and OCI image layouts) of apitap-sensor,
    /// apitap-analyzer and apitap without a container engine: the binary, exactly the shared
    /// libraries ldd resolves, the loader, users, CA bundle, /tmp, a provenance list.
    /// `deploy/image/Dockerfile` runs this in its builder stage.
    Image {
        /// Receives one image root per image: DIR/apitap-sensor, DIR/apitap-analyzer,
        /// DIR/apitap.
        #[arg(long, value_name = "DIR")]
        root: PathBuf,
        /// Build the binaries with --release.
        #[arg(long)]
        release: bool,
        /// Take the binaries from DIR (e.g. target/debug) instead of building them.
        #[arg(long, value_name = "DIR", conflicts_with = "release")]
        bin_dir: Option<PathBuf>,
        /// Also write an OCI image layout per image: DIR/<image>, tag = the version.
        #[arg(long, value_name = "DIR")]
        oci: Option<PathBuf>,
        /// Only these images (comma-separated: apitap-sensor, apitap-analyzer, apitap).
        #[arg(long, value_delimiter = ',')]
        image: Vec<String>,
    },
    /// Regenerate the man pages in deploy/man/ (one per binary and subcommand) from the
    /// binaries' clap definitions: builds them and runs each one's hidden `__man DIR`.
    Man,
    /// Record the pcap fixtures for the golden replay tests (needs root, tshark).
    RecordFixtures {
        /// Only these fixtures (comma-separated names: sensitive, keepalive, ...; keepalive
        /// also records pipelining, lossy and missing; httpbin, the analyzer's capture, is
        /// recorded only when named).
        #[arg(long)]
        scenario: Option<String>,
    },
    /// Record the attack-tool pcap fixtures of issue 7 (root; installs hydra, ffuf, ...).
    RecordAttacks {
        /// Only these scenarios (comma-separated names).
        #[arg(long)]
        scenario: Option<String>,
    },
    /// Record real attack tools against third-party applications (httpbin, Django admin,
    /// Flask-AppBuilder, Datasette, deluge-web) for issue 14 (root; installs a venv and tools).
    RecordThirdparty {
        /// Only these applications (comma-separated: httpbin, django, fab, datasette, deluge).
        #[arg(long)]
        app: Option<String>,
        /// Only these scenarios (comma-separated names).
        #[arg(long)]
        scenario: Option<String>,
    },
    /// Run the attack scenarios live through the sensor, print what it captured and the
    /// detections the analyzer raised on it.
    AttackDemo {
        /// Only these scenarios (comma-separated names).
        #[arg(long)]
        scenario: Option<String>,
        /// Length of the benign scenario (the recording uses 600).
        #[arg(long, default_value_t = 60)]
        benign_seconds: u64,
    },
    /// Benchmarks: `decode` (criterion, one core), `decode-instructions` (the same pipeline
    /// under callgrind: instructions per transaction, deterministic on a noisy machine, next to
    /// the previous run), `analyzer-instructions` (the analyzer's per-event path under
    /// callgrind, by part, next to the previous run), `analyzer` (the whole analyzer per core with
    /// every detector, in process and from a real broker, state bytes per (actor, template),
    /// next to the previous run), `analyzer-scaling` (its 1 vs 2 instances part alone), `capture`
    /// (live, netns, load tools), `overhead` (nginx's latency
    /// at fixed rates and its rate pinned to one core, with and without the sensor),
    /// `overhead-kafka` (only its phase with the Kafka sink), `tls` (the same
    /// over HTTPS with TLS capture on, and the sensor's CPU per 10k HTTPS transactions), `h2` (the
    /// sensor's CPU per 10k HTTP/2 requests next to HTTP/1 on the same nginx, h2load-driven, with
    /// the events per request, and the h2 decode throughput), `kafka` (bus throughput
    /// against a real broker, next to `tansu perf`) or `hostile` (the sensor and analyzer
    /// under a SYN flood, 1-byte segments, a pipelined-head flood and random hosts/paths).
    Bench {
        /// Which benchmark.
        #[arg(value_parser = [
            "decode",
            "decode-instructions",
            "analyzer-instructions",
            "analyzer",
            "analyzer-scaling",
            "capture",
            "overhead",
            "overhead-kafka",
            "tls",
            "h2",
            "kafka",
            "hostile"
        ])]
        which: String,
        /// Seconds per load phase (capture) or of the `tansu perf` run (kafka).
        #[arg(long, default_value_t = 10)]
        seconds: u32,
    },
}

fn main() -> anyhow::Result<()> {
    setup::export_cargo_bin_path();
    setup::ci_build_env();
    match Cli::parse().command {
        Cmd::Setup => setup::run(),
        Cmd::Demo { kafka, check } => {
            demo::start_clock();
            demo::announce_build();
            setup::demo(kafka)?;
            // Only the binaries the chosen mode runs.
            let mut build = vec!["build", "-p", "apitap-embedded", "-p", "apitap-analyzer"];
            if kafka {
                build.extend(["-p", "apitap-sensor"]);
            }
            build.push("--bins");
            cargo(&build)?;
            demo::run(&demo::Opts { kafka, check })
        }
        Cmd::Bench { which, seconds } => {
            setup::run()?;
            match which.as_str() {
                "decode" => bench::decode(),
                "decode-instructions" => bench::decode_instructions(),
                "analyzer-instructions" => bench::analyzer_instructions(),
                "analyzer" => bench_analyzer::run(),
                "analyzer-scaling" => bench_analyzer::run_scaling(),
                "kafka" => bench_kafka::run(seconds),
                "hostile" => bench_hostile::run(),
                "overhead" => bench_overhead::run(seconds),
                "overhead-kafka" => bench_overhead::run_kafka(seconds),
                "tls" => bench_tls::run(seconds),
                "h2" => bench_h2::run(),
                _ => bench::capture(seconds),
            }
        }
        Cmd::RecordFixtures { scenario } => {
            setup::run()?;
            fixtures::run(scenario.as_deref())
        }
        Cmd::RecordAttacks { scenario } => attacks::record(scenario.as_deref()),
        Cmd::RecordThirdparty { app, scenario } => {
            thirdparty::record(app.as_deref(), scenario.as_deref())
        }
        Cmd::AttackDemo {
            scenario,
            benign_seconds,
        } => {
            setup::run()?;
            cargo(&["build", "--bins"])?;
            let runs = attacks::demo(scenario.as_deref(), benign_seconds)?;
            attacks::detect(&runs)
        }
        Cmd::Image {
            root,
            release,
            bin_dir,
            oci,
            image,
        } => image::run(&image::Opts {
            root,
            release,
            bin_dir,
            oci,
            images: image,
        }),
        Cmd::Man => man(),
        Cmd::Test => {
            disk::check_before_test()?;
            setup::run()?;
            cargo(&["fmt", "--all", "--", "--check"])
                .context("run `cargo fmt --all` to fix formatting")?;
            cargo(&["build", "--bins", "--tests"])?;
            cargo(&["clippy", "--all-targets", "--", "-D", "warnings"])?;
            cargo(&["test", "--no-fail-fast"])?;
            demo_check()
        }
    }
}

/// The demo's real run with its assertions (`cargo xtask demo --check`, ≈ 30 s): privileged
/// like the end-to-end tests, so under `CI=true` a missing privilege fails, elsewhere it skips.
fn demo_check() -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        if apitap_tests::in_ci() {
            bail!("demo --check cannot run in CI: not running as root");
        }
        eprintln!(
            "SKIPPED demo --check: not running as root (runs in CI, where this is a failure)"
        );
        return Ok(());
    }
    demo::start_clock();
    demo::run(&demo::Opts {
        kafka: false,
        check: true,
    })
}

/// The binaries whose man pages are in deploy/man/, with their packages.
const MAN_BINARIES: &[(&str, &str)] = &[
    ("apitap-sensor", "apitap-sensor"),
    ("apitap-analyzer", "apitap-analyzer"),
    ("apitap", "apitap-embedded"),
];

/// `cargo xtask man`: rewrites deploy/man/*.1 (tests/tests/man_pages.rs fails when stale).
fn man() -> anyhow::Result<()> {
    setup::build_tools()?;
    let mut build = vec!["build"];
    for (_, package) in MAN_BINARIES {
        build.extend(["-p", package]);
    }
    build.push("--bins");
    cargo(&build)?;
    let dir = apitap_tests::workspace_root().join("deploy/man");
    if dir.is_dir() {
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "1") {
                std::fs::remove_file(&path)?;
            }
        }
    }
    for (bin, _) in MAN_BINARIES {
        let status = Command::new(apitap_tests::workspace_bin(bin)?)
            .arg("__man")
            .arg(&dir)
            .status()
            .with_context(|| format!("running {bin} __man"))?;
        if !status.success() {
            bail!("{bin} __man failed ({status})");
        }
    }
    Ok(())
}

/// Runs the cargo that runs us, in the workspace root, inheriting output.
pub fn cargo(args: &[&str]) -> anyhow::Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!("+ cargo {}", args.join(" "));
    let status = Command::new(cargo)
        .args(args)
        .current_dir(apitap_tests::workspace_root())
        .status()
        .context("running cargo")?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}
