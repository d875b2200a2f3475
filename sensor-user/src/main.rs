//! `apitap-sensor`: see the `apitap_sensor` crate docs.

/// mimalloc instead of glibc malloc: the per-event allocations (a body of a few KiB after
/// dozens of small header strings are freed) made glibc consolidate its fast bins on every
/// event, a fifth of the sensor's CPU at full load.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod cli_help;

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use apitap_sensor::config::{Config, SinkKind};
use clap::{CommandFactory as _, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "apitap-sensor",
    version,
    long_version = apitap_cli_doc::long_version(),
    about = "apitap capture agent",
    long_about = cli_help::ABOUT,
    after_long_help = cli_help::SENSOR.render()
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Capture live traffic and write API events.
    #[command(long_about = cli_help::RUN_ABOUT, after_long_help = cli_help::RUN.render())]
    Run {
        /// Configuration file (TOML).
        #[arg(long)]
        config: PathBuf,
        /// Interface to capture on (repeatable; replaces `capture.interfaces`).
        #[arg(long = "interface")]
        interfaces: Vec<String>,
        /// TCP port to capture (repeatable; replaces `capture.ports`).
        #[arg(long = "port")]
        ports: Vec<u16>,
        /// Write events as JSON lines to this file instead of the configured sink.
        #[arg(long)]
        events_file: Option<PathBuf>,
        /// Serve metrics on this address (replaces `metrics.listen`).
        #[arg(long)]
        metrics_listen: Option<SocketAddr>,
    },
    /// Decode a pcap or pcapng file with the same decoder and write API events (JSON lines on
    /// stdout unless told otherwise); a summary goes to stderr.
    #[command(long_about = cli_help::REPLAY_ABOUT, after_long_help = cli_help::REPLAY.render())]
    Replay {
        /// Capture file (pcap or pcapng).
        file: PathBuf,
        /// Configuration file (decoder limits, sensor id, payload mode, sink); optional.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Write events to this file instead of the configured sink.
        #[arg(long)]
        events_file: Option<PathBuf>,
        /// Sensor id written into events (replaces `sensor.id`).
        #[arg(long)]
        sensor_id: Option<String>,
    },
    /// Validate a configuration file and print the effective settings.
    #[command(
        long_about = cli_help::CHECK_CONFIG_ABOUT,
        after_long_help = cli_help::CHECK_CONFIG.render()
    )]
    CheckConfig {
        /// Configuration file (TOML).
        #[arg(long)]
        config: PathBuf,
    },
    /// Write the man pages of every command into DIR (`cargo xtask man`).
    #[command(name = apitap_cli_doc::MAN_SUBCOMMAND, hide = true)]
    Man {
        /// Output directory.
        dir: PathBuf,
    },
}

fn main() -> anyhow::Result<()> {
    apitap_labels::install_redacting_panic_hook();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    match Cli::parse().command {
        Command::Run {
            config,
            interfaces,
            ports,
            events_file,
            metrics_listen,
        } => {
            let mut cfg = Config::load(&config)?;
            if !interfaces.is_empty() {
                cfg.capture.interfaces = interfaces;
            }
            if !ports.is_empty() {
                cfg.capture.ports = ports;
            }
            if let Some(path) = events_file {
                cfg.sink.kind = SinkKind::File;
                cfg.sink.path = Some(path);
            }
            if metrics_listen.is_some() {
                cfg.metrics.listen = metrics_listen;
            }
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            rt.block_on(apitap_sensor::live::run(cfg))
        }
        Command::Replay {
            file,
            config,
            events_file,
            sensor_id,
        } => {
            let mut cfg = match config {
                Some(path) => Config::load(&path)?,
                None => Config::default(),
            };
            if let Some(path) = events_file {
                cfg.sink.kind = SinkKind::File;
                cfg.sink.path = Some(path);
            }
            if sensor_id.is_some() {
                cfg.sensor.id = sensor_id;
            }
            cfg.validate_offline()?;
            let sensor = apitap_sensor::live::sensor_info(&cfg);
            let mut minimiser = apitap_sensor::minimise::Minimiser::from_config(&cfg.payload)?;
            let mut sink = apitap_sensor::sink::Sink::from_config(&cfg, &sensor.id)?;
            let summary = apitap_sensor::replay::replay_with(
                &file,
                cfg.reassembly(),
                sensor,
                &mut minimiser,
                &mut sink,
            )?;
            sink.close()?;
            eprint!("{}", summary.render());
            Ok(())
        }
        Command::CheckConfig { config } => {
            let cfg = Config::load(&config)?;
            cfg.validate()?;
            println!("{cfg:#?}");
            Ok(())
        }
        Command::Man { dir } => {
            for file in apitap_cli_doc::write_man_pages(Cli::command(), cli_help::PAGES, &dir)? {
                println!("{}", file.display());
            }
            Ok(())
        }
    }
}
