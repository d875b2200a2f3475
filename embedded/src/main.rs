//! `apitap`: the single-process mode (sensor + analyzer, no broker); see the crate docs.

/// mimalloc instead of glibc malloc, as in `apitap-sensor` (whose CPU at full load was a fifth
/// glibc consolidating its fast bins on every event) and `apitap-analyzer`.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod cli_help;

use std::path::PathBuf;

use anyhow::Context as _;
use apitap_analyzer::logging::{self, LogFormat};
use clap::{CommandFactory as _, Parser, Subcommand};

/// apitap in one process: live capture and analysis joined in memory, no Kafka broker.
#[derive(Debug, Parser)]
#[command(
    name = "apitap",
    version,
    long_version = apitap_cli_doc::long_version(),
    about,
    long_about = cli_help::ABOUT,
    after_long_help = cli_help::APITAP.render()
)]
struct Cli {
    /// Log format on standard error.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Capture and analyse until SIGINT/SIGTERM, then write the final summary.
    #[command(long_about = cli_help::RUN_ABOUT, after_long_help = cli_help::RUN.render())]
    Run {
        /// Sensor configuration (deploy/config/sensor.example.toml) without [sink]/[kafka].
        #[arg(long, value_name = "FILE")]
        sensor_config: PathBuf,
        /// Analyzer configuration (deploy/config/analyzer.example.toml) without
        /// [input]/[kafka].
        #[arg(long, value_name = "FILE")]
        analyzer_config: PathBuf,
        /// Events in flight between sensor and analyzer at most; beyond it new events are
        /// dropped and counted rather than blocking capture.
        #[arg(long, default_value_t = 100_000)]
        channel_events: usize,
    },
    /// Write the man pages of every command into DIR (`cargo xtask man`).
    #[command(name = apitap_cli_doc::MAN_SUBCOMMAND, hide = true)]
    Man {
        /// Output directory.
        dir: PathBuf,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    logging::init(cli.log_format);
    apitap_labels::install_redacting_panic_hook();
    match cli.command {
        Command::Run {
            sensor_config,
            analyzer_config,
            channel_events,
        } => {
            let sensor = apitap_sensor::config::Config::load(&sensor_config)?;
            let analyzer = apitap_analyzer::Config::load(&analyzer_config)
                .with_context(|| format!("loading {}", analyzer_config.display()))?;
            apitap_embedded::run(sensor, analyzer, channel_events)?;
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
