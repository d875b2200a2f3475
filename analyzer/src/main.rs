//! `apitap-analyzer`: command line of the apitap analyzer (see the library crate).

/// mimalloc instead of glibc malloc, as in `apitap-sensor`: every event decoded here is a
/// few KiB allocated next to dozens of small strings, the pattern that made glibc consolidate
/// its fast bins on every event in the sensor.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod cli_help;

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use apitap_analyzer::ecs::AlertFormat;
use apitap_analyzer::inventory::record::{ChangeFilter, EndpointFilter, EndpointKey};
use apitap_analyzer::inventory::store::postgres::PgAccess;
use apitap_analyzer::inventory::{Store, openapi, report, store, text};
use apitap_analyzer::logging::{self, LogFormat};
use apitap_analyzer::{Config, ProcessOptions, SummaryFormat, Target};
use clap::{CommandFactory as _, Parser, Subcommand, ValueEnum};

/// apitap analyzer: reads API events, summarises them per endpoint and keeps the API
/// inventory.
#[derive(Debug, Parser)]
#[command(
    name = "apitap-analyzer",
    version,
    long_version = apitap_cli_doc::long_version(),
    about,
    long_about = cli_help::ABOUT,
    after_long_help = cli_help::ANALYZER.render()
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
    /// Read JSON-lines events to their end and write the per-endpoint summary; with a store,
    /// update the API inventory.
    #[command(long_about = cli_help::PROCESS_ABOUT, after_long_help = cli_help::PROCESS.render())]
    Process {
        /// Events file (JSON lines), or `-` for standard input.
        #[arg(long, value_name = "FILE|-")]
        input: String,
        /// Alerts output (JSON lines), or `-` for standard output: inventory changes as OCSF
        /// findings. Default: alerts are not written.
        #[arg(long, value_name = "FILE|-")]
        alerts: Option<String>,
        /// Alert document format (default: the config's `output.alert_format`, else ocsf).
        #[arg(long, value_enum)]
        alert_format: Option<AlertFormat>,
        /// Summary output, or `-` for standard output.
        #[arg(long, value_name = "FILE|-", default_value = "-")]
        summary: String,
        /// Summary format.
        #[arg(long, value_enum, default_value_t = SummaryFormat::Table)]
        format: SummaryFormat,
        /// Inventory store to update: `sqlite:PATH`, a file path, or `postgres://…`.
        #[arg(long, value_name = "URL")]
        store: Option<String>,
        /// Analyzer configuration whose `[inventory]` table (specs, overrides, client ranges,
        /// templating) and `[labels]` table (hash key) apply; its `[input]` is ignored.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Check a configuration as `run` would (every value, the hash key, token and Kafka
    /// secret files, specs and overrides) without starting; print what it would run with.
    #[command(long_about = cli_help::CHECK_CONFIG_ABOUT, after_long_help = cli_help::CHECK_CONFIG.render())]
    CheckConfig {
        /// Configuration file.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Run the analyzer service with a TOML configuration.
    #[command(long_about = cli_help::RUN_ABOUT, after_long_help = cli_help::RUN.render())]
    Run {
        /// Configuration file (see deploy/config/analyzer.example.toml, docs/inventory.md).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Query the API inventory.
    #[command(long_about = cli_help::INVENTORY_ABOUT, after_long_help = cli_help::INVENTORY.render())]
    Inventory {
        /// PostgreSQL store: file holding the password (owner-only, like
        /// `inventory.store_password_file`).
        #[arg(long, global = true, value_name = "FILE")]
        store_password_file: Option<PathBuf>,
        /// PostgreSQL store: PEM CA bundle the server certificate must chain to (like
        /// `inventory.store_ca_file`); default: the system trust store.
        #[arg(long, global = true, value_name = "FILE")]
        store_ca_file: Option<PathBuf>,
        #[command(subcommand)]
        command: Box<InventoryCommand>,
    },
    /// Trace-back: the API calls that carried a sensitive value, or came from an address,
    /// account or User-Agent, or hit an endpoint (R-THR-6).
    #[command(long_about = cli_help::TRACE_ABOUT, after_long_help = cli_help::TRACE.render())]
    Trace {
        /// Analyzer configuration: its `[trace]` path and `[labels]` hash key.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        #[command(flatten)]
        question: TraceArgs,
        /// Output format.
        #[arg(long, value_enum, default_value_t = ListFormat::Table)]
        format: ListFormat,
    },
    /// Write the man pages of every command into DIR (`cargo xtask man`).
    #[command(name = apitap_cli_doc::MAN_SUBCOMMAND, hide = true)]
    Man {
        /// Output directory.
        dir: PathBuf,
    },
}

/// What `trace` asks: exactly one selector.
#[derive(Debug, clap::Args)]
struct TraceArgs {
    /// A sensitive value as typed (an ID number, a phone, a card, an e-mail): hashed here
    /// with the site key, never sent or stored.
    #[arg(long, value_name = "V")]
    value: Option<String>,
    /// Hash --value only as this label (prc_id, mobile, …); default: every label's form.
    #[arg(long, value_parser = parse_label, requires = "value")]
    label: Option<String>,
    /// A value hash (32 hex digits) as findings carry it.
    #[arg(long, value_name = "H")]
    value_hash: Option<String>,
    /// A client address.
    #[arg(long)]
    ip: Option<std::net::IpAddr>,
    /// An account: `kind:hash` as alerts render it, or a user name, JWT subject, API key or
    /// session token (hashed here).
    #[arg(long)]
    account: Option<String>,
    /// An exact User-Agent value (hashed here).
    #[arg(long)]
    ua: Option<String>,
    /// A User-Agent key (16 hex digits) as trace answers show it.
    #[arg(long)]
    ua_key: Option<String>,
    /// An endpoint: `METHOD service template`, e.g. `GET shop /customers/{id}`.
    #[arg(long)]
    endpoint: Option<String>,
    /// Earliest request time: UTC `YYYY-MM-DDTHH:MM:SSZ` or `YYYY-MM-DD`.
    #[arg(long, value_parser = parse_time)]
    since: Option<u64>,
    /// Latest request time, as --since.
    #[arg(long, value_parser = parse_time)]
    until: Option<u64>,
    /// Most transactions listed (at most 10000).
    #[arg(long, default_value_t = apitap_analyzer::trace::DEFAULT_LIMIT)]
    limit: usize,
}

fn parse_time(s: &str) -> Result<u64, String> {
    apitap_schema::time::parse_unix_us(s)
        .ok_or_else(|| "expected UTC YYYY-MM-DDTHH:MM:SSZ or YYYY-MM-DD".to_owned())
}

impl TraceArgs {
    fn question(self) -> apitap_analyzer::trace::Question {
        apitap_analyzer::trace::Question {
            value: self.value,
            label: self
                .label
                .as_deref()
                .and_then(apitap_labels::Label::from_name),
            value_hash: self.value_hash,
            ip: self.ip,
            account: self.account,
            ua: self.ua,
            ua_key: self.ua_key,
            endpoint: self.endpoint,
            since_us: self.since,
            until_us: self.until,
            limit: Some(self.limit),
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ListFormat {
    /// Aligned text table.
    Table,
    /// JSON array of endpoint summaries.
    Json,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ExportFormat {
    /// JSON array of endpoint summaries.
    Json,
    /// One OpenAPI 3.1 document per service.
    Openapi,
}

#[derive(Debug, clap::Args)]
struct Filters {
    /// Only this service.
    #[arg(long)]
    service: Option<String>,
    /// Only this method.
    #[arg(long)]
    method: Option<String>,
    /// Only templates containing this text.
    #[arg(long)]
    template: Option<String>,
    /// Only this lifecycle state (new, active, inactive, revived).
    #[arg(long)]
    lifecycle: Option<String>,
    /// Only this API style (rest, graphql, soap, grpc, json_rpc, websocket).
    #[arg(long)]
    style: Option<String>,
    /// Only endpoints using this auth scheme.
    #[arg(long)]
    auth: Option<String>,
    /// Only this spec status (documented, undocumented, deprecated, unseen, …).
    #[arg(long)]
    spec_status: Option<String>,
    /// Only endpoints carrying this data label in some field (prc_id, mobile, email, …).
    #[arg(long, value_parser = parse_label)]
    label: Option<String>,
    /// Only this sensitivity (none, low, medium, high, unknown).
    #[arg(long, value_parser = ["none", "low", "medium", "high", "unknown"])]
    sensitivity: Option<String>,
    /// Only endpoints at least this sensitive (none, low, medium, high).
    #[arg(long, value_parser = ["none", "low", "medium", "high"])]
    min_sensitivity: Option<String>,
}

fn parse_label(s: &str) -> Result<String, String> {
    apitap_labels::Label::from_name(s)
        .map(|l| l.name().to_owned())
        .ok_or_else(|| format!("unknown data label `{s}` (see docs/sensitive-data.md)"))
}

impl Filters {
    fn filter(&self) -> EndpointFilter {
        EndpointFilter {
            service: self.service.clone(),
            method: self.method.clone(),
            template: self.template.clone(),
            lifecycle: self.lifecycle.clone(),
            style: self.style.clone(),
            auth: self.auth.clone(),
            spec_status: self.spec_status.clone(),
            label: self.label.clone(),
            sensitivity: self.sensitivity.clone(),
            min_sensitivity: self.min_sensitivity.clone(),
            ..EndpointFilter::default()
        }
    }
}

#[derive(Debug, Subcommand)]
enum InventoryCommand {
    /// List endpoints.
    #[command(after_long_help = cli_help::LIST.render())]
    List {
        /// Store URL.
        #[arg(long, value_name = "URL")]
        store: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t = ListFormat::Table)]
        format: ListFormat,
        #[command(flatten)]
        filters: Filters,
    },
    /// Show one endpoint in full, with its change log.
    #[command(after_long_help = cli_help::SHOW.render())]
    Show {
        /// Store URL.
        #[arg(long, value_name = "URL")]
        store: String,
        /// Endpoint id (from `list --format json`); or give --service, --method, --template.
        id: Option<String>,
        /// Service of the endpoint.
        #[arg(long)]
        service: Option<String>,
        /// Method of the endpoint.
        #[arg(long)]
        method: Option<String>,
        /// Template of the endpoint.
        #[arg(long)]
        template: Option<String>,
        /// GraphQL/JSON-RPC/SOAP operation of the endpoint.
        #[arg(long, default_value = "")]
        operation: String,
        /// `json`: summary, record and change log; `table`: the summary line and the
        /// field-level data map.
        #[arg(long, value_enum, default_value_t = ListFormat::Json)]
        format: ListFormat,
    },
    /// Export the inventory.
    #[command(after_long_help = cli_help::EXPORT.render())]
    Export {
        /// Store URL.
        #[arg(long, value_name = "URL")]
        store: String,
        /// `json`: array of endpoint summaries; `openapi`: OpenAPI 3.1 per service.
        #[arg(long, value_enum, default_value_t = ExportFormat::Json)]
        format: ExportFormat,
        /// For `openapi`: write `<service>.openapi.json` files into this directory instead
        /// of standard output.
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
        #[command(flatten)]
        filters: Filters,
    },
    /// Print the change log as JSON lines.
    #[command(after_long_help = cli_help::CHANGES.render())]
    Changes {
        /// Store URL.
        #[arg(long, value_name = "URL")]
        store: String,
        /// Only changes after this sequence number.
        #[arg(long)]
        after_seq: Option<i64>,
        /// Only this endpoint's changes.
        #[arg(long)]
        endpoint_id: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 1000)]
        limit: u64,
    },
}

fn open_store(url: &str, access: &PgAccess<'_>) -> anyhow::Result<Box<dyn Store>> {
    store::open_with(url, access).with_context(|| "opening the inventory store".to_string())
}

/// A service name as a file name.
fn file_name(service: &str) -> String {
    let s: String = service
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{s}.openapi.json")
}

fn inventory(command: InventoryCommand, access: &PgAccess<'_>) -> anyhow::Result<()> {
    match command {
        InventoryCommand::List {
            store,
            format,
            filters,
        } => {
            let mut store = open_store(&store, access)?;
            let rows: Vec<_> = store
                .endpoints(&filters.filter())
                .context("listing endpoints")?
                .iter()
                .map(|r| r.summary())
                .collect();
            match format {
                ListFormat::Table => print!("{}", report::render_table(&rows)),
                ListFormat::Json => println!("{}", serde_json::to_string(&rows)?),
            }
        }
        InventoryCommand::Show {
            store,
            id,
            service,
            method,
            template,
            operation,
            format,
        } => {
            let id = match (id, service, method, template) {
                (Some(id), None, None, None) => id,
                (None, Some(service), Some(method), Some(template)) => EndpointKey {
                    service,
                    method: method.to_ascii_uppercase(),
                    template,
                    operation,
                }
                .id(),
                _ => bail!("give an endpoint id, or --service, --method and --template"),
            };
            let mut store = open_store(&store, access)?;
            let Some(record) = store.endpoint(&id).context("reading the endpoint")? else {
                bail!("no endpoint with id {id}");
            };
            let changes = store
                .changes(&ChangeFilter {
                    endpoint_id: Some(id),
                    ..ChangeFilter::default()
                })
                .context("reading the change log")?;
            let summary = record.summary();
            match format {
                ListFormat::Table => {
                    print!("{}", report::render_table(std::slice::from_ref(&summary)));
                    println!(
                        "\ndata map ({} labelled events):",
                        record.data.sensitive.events
                    );
                    print!("{}", report::render_data_map(&summary.data_labels));
                    println!(
                        "\n{} change-log entries (--format json lists them)",
                        changes.len()
                    );
                }
                ListFormat::Json => {
                    let out = serde_json::json!({
                        "summary": summary,
                        "record": record,
                        "changes": changes,
                    });
                    println!("{}", serde_json::to_string_pretty(&out)?);
                }
            }
        }
        InventoryCommand::Export {
            store,
            format,
            out_dir,
            filters,
        } => {
            let mut store = open_store(&store, access)?;
            let records = store
                .endpoints(&filters.filter())
                .context("reading endpoints")?;
            match format {
                ExportFormat::Json => {
                    let rows: Vec<_> = records.iter().map(|r| r.summary()).collect();
                    println!("{}", serde_json::to_string_pretty(&rows)?);
                }
                ExportFormat::Openapi => {
                    let docs = openapi::documents(&records);
                    match out_dir {
                        Some(dir) => {
                            std::fs::create_dir_all(&dir)
                                .with_context(|| format!("creating {}", dir.display()))?;
                            for (service, doc) in &docs {
                                let path = dir.join(file_name(service));
                                std::fs::write(&path, text::portable_json(doc)?)
                                    .with_context(|| format!("writing {}", path.display()))?;
                                println!("{}", path.display());
                            }
                        }
                        None if docs.len() == 1 => {
                            let doc = docs.values().next().context("one document")?;
                            println!("{}", text::portable_json(doc)?);
                        }
                        None => println!("{}", text::portable_json(&docs)?),
                    }
                }
            }
        }
        InventoryCommand::Changes {
            store,
            after_seq,
            endpoint_id,
            limit,
        } => {
            let mut store = open_store(&store, access)?;
            let changes = store
                .changes(&ChangeFilter {
                    after_seq,
                    endpoint_id,
                    limit: Some(limit),
                    ..ChangeFilter::default()
                })
                .context("reading the change log")?;
            for c in changes {
                println!("{}", serde_json::to_string(&c)?);
            }
        }
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    logging::init(cli.log_format);
    apitap_labels::install_redacting_panic_hook();
    match cli.command {
        Command::Process {
            input,
            alerts,
            summary,
            format,
            store,
            config,
            alert_format,
        } => {
            let mut options = ProcessOptions::new(Target::parse(&input));
            options.alerts = alerts.as_deref().map(Target::parse);
            options.summary = Target::parse(&summary);
            options.format = format;
            options.store = store;
            if let Some(path) = config {
                let config = Config::load(&path).context("loading the configuration")?;
                options.inventory = config.inventory;
                options.labels = config.labels;
                options.detect = config.detect;
                options.alert_format = config.output.alert_format;
                options.ingest = config.ingest;
                options.trace = config.trace;
            }
            if let Some(format) = alert_format {
                options.alert_format = format;
            }
            apitap_analyzer::process(&options).context("processing events")?;
        }
        Command::Run { config } => {
            let config = Config::load(&config).context("loading the configuration")?;
            apitap_analyzer::run(&config).context("running the analyzer")?;
        }
        Command::CheckConfig { config } => {
            let loaded = Config::load(&config).context("loading the configuration")?;
            let c = apitap_analyzer::app::check(&loaded).context("checking the configuration")?;
            println!("{}: ok", config.display());
            println!("  events from   {}", c.source);
            println!("  inventory     {}", c.store);
            println!("  specs         {} (overrides {})", c.specs, c.overrides);
            println!("  hash key id   {}", c.hash_key);
            let or_none = |v: &[String]| {
                if v.is_empty() {
                    "none".to_owned()
                } else {
                    v.join(", ")
                }
            };
            println!("  listeners     {}", or_none(&c.listeners));
            let tokens: Vec<String> = c.tokens.iter().map(|t| (*t).to_owned()).collect();
            println!("  token files   {}", or_none(&tokens));
        }
        Command::Inventory {
            store_password_file,
            store_ca_file,
            command,
        } => inventory(
            *command,
            &PgAccess {
                password_file: store_password_file.as_deref(),
                ca_file: store_ca_file.as_deref(),
                ..PgAccess::default()
            },
        )?,
        Command::Trace {
            config,
            question,
            format,
        } => {
            let config = Config::load(&config).context("loading the configuration")?;
            let answer = apitap_analyzer::trace::ask(&config, &question.question())
                .context("asking the trace-back store")?;
            match format {
                ListFormat::Table => print!("{}", apitap_analyzer::trace::render_table(&answer)),
                ListFormat::Json => {
                    println!("{}", apitap_analyzer::trace::answer_json(&answer))
                }
            }
        }
        Command::Man { dir } => {
            for file in apitap_cli_doc::write_man_pages(Cli::command(), cli_help::PAGES, &dir)? {
                println!("{}", file.display());
            }
        }
    }
    Ok(())
}
