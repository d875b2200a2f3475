//! `apitap-analyzer`: command line of the apitap analyzer (see the library crate).

use std::path::PathBuf;

use anyhow::Context as _;
use apitap_analyzer::logging::{self, LogFormat};
use apitap_analyzer::{Config, ProcessOptions, SummaryFormat, Target};
use clap::{Parser, Subcommand};

/// apitap analyzer: reads API events and summarises them per endpoint.
#[derive(Debug, Parser)]
#[command(name = "apitap-analyzer", version, about)]
struct Cli {
    /// Log format on standard error.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Read JSON-lines events to their end and write the per-endpoint summary.
    Process {
        /// Events file (JSON lines), or `-` for standard input.
        #[arg(long, value_name = "FILE|-")]
        input: String,
        /// Alerts output (JSON lines), or `-` for standard output. No detections exist yet:
        /// the file is created empty. Default: alerts are not written.
        #[arg(long, value_name = "FILE|-")]
        alerts: Option<String>,
        /// Summary output, or `-` for standard output.
        #[arg(long, value_name = "FILE|-", default_value = "-")]
        summary: String,
        /// Summary format.
        #[arg(long, value_enum, default_value_t = SummaryFormat::Table)]
        format: SummaryFormat,
    },
    /// Run the analyzer service with a TOML configuration.
    Run {
        /// Configuration file (see deploy/config/analyzer.example.toml).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    logging::init(cli.log_format);
    match cli.command {
        Command::Process {
            input,
            alerts,
            summary,
            format,
        } => {
            let mut options = ProcessOptions::new(Target::parse(&input));
            options.alerts = alerts.as_deref().map(Target::parse);
            options.summary = Target::parse(&summary);
            options.format = format;
            apitap_analyzer::process(&options).context("processing events")?;
        }
        Command::Run { config } => {
            let config = Config::load(&config).context("loading the configuration")?;
            apitap_analyzer::run(&config).context("running the analyzer")?;
        }
    }
    Ok(())
}
