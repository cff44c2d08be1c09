//! The command line.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};

use crate::app;

/// Tally reconciles LLM usage: what your applications logged against what
/// your gateway billed.
#[derive(Debug, Parser)]
#[command(
    name = "tally",
    version,
    about = "Tally reconciles LLM usage: what your applications logged against what your gateway billed.",
    long_about = None
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Reconcile client usage logs against gateway exports and write a report.
    Reconcile(Box<ReconcileArgs>),
    /// Generate a seeded synthetic dataset with ground truth.
    Generate(GenerateArgs),
    /// List the gateway sources Tally reads without a mapping file.
    Sources,
    /// Add usage files to the store (idempotent: the same file or rows
    /// twice add nothing).
    #[command(subcommand)]
    Ingest(IngestCommand),
    /// Manage the store itself.
    #[command(subcommand)]
    Db(DbCommand),
}

/// Where the store is and whether to bring its schema up to date.
#[derive(Debug, Clone, clap::Args)]
pub struct StoreArgs {
    /// The store: a SQLite file (`tally.db`, `sqlite://PATH`) or a
    /// PostgreSQL URL (`postgres://user:pass@host/db`).
    #[arg(
        long,
        env = "TALLY_DATABASE_URL",
        default_value = "tally.db",
        value_name = "URL"
    )]
    pub db: String,
    /// Do not run pending migrations; refuse a store that has any.
    #[arg(long, env = "TALLY_NO_MIGRATE")]
    pub no_migrate: bool,
}

/// `tally ingest ...`.
#[derive(Debug, Subcommand)]
pub enum IngestCommand {
    /// Client-side usage logs (Tally JSON Lines or CSV).
    Client(IngestClientArgs),
    /// Gateway usage exports.
    Gateway(IngestGatewayArgs),
}

/// `tally ingest client`.
#[derive(Debug, clap::Args)]
pub struct IngestClientArgs {
    /// Files, each stored as one batch.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Client log encoding, detected when not given.
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub client_format: Option<ClientFormatArg>,
    /// The store.
    #[command(flatten)]
    pub store: StoreArgs,
}

/// `tally ingest gateway`.
#[derive(Debug, clap::Args)]
pub struct IngestGatewayArgs {
    /// Files, each stored as one batch.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Gateway source: a built-in name (see `tally sources`) or a mapping
    /// file. Detected from each file's header or shape when not given.
    #[arg(long, value_name = "NAME|FILE")]
    pub source: Option<String>,
    /// The store.
    #[command(flatten)]
    pub store: StoreArgs,
}

/// `tally db ...`.
#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Run pending migrations (every command that opens the store does this
    /// too, unless --no-migrate).
    Migrate {
        /// The store: a SQLite file or a PostgreSQL URL.
        #[arg(
            long,
            env = "TALLY_DATABASE_URL",
            default_value = "tally.db",
            value_name = "URL"
        )]
        db: String,
    },
}

/// How the summary is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// A summary for people.
    Table,
    /// The summary as JSON (the `report.json` summary fields).
    Json,
}

/// Client log encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ClientFormatArg {
    /// JSON Lines.
    Jsonl,
    /// CSV.
    Csv,
}

impl ClientFormatArg {
    /// The engine's format.
    pub fn format(self) -> tally_reconcile::parse::client::ClientFormat {
        match self {
            ClientFormatArg::Jsonl => tally_reconcile::parse::client::ClientFormat::Jsonl,
            ClientFormatArg::Csv => tally_reconcile::parse::client::ClientFormat::Csv,
        }
    }
}

/// `tally reconcile`.
#[derive(Debug, clap::Args)]
pub struct ReconcileArgs {
    /// Client-side usage logs (Tally JSON Lines or CSV).
    #[arg(long, required = true, num_args = 1.., value_name = "FILE")]
    pub client: Vec<PathBuf>,
    /// Gateway usage exports.
    #[arg(long, required = true, num_args = 1.., value_name = "FILE")]
    pub gateway: Vec<PathBuf>,
    /// Key registry (TOML or CSV).
    #[arg(long, value_name = "FILE")]
    pub keys: Option<PathBuf>,
    /// Price catalog (TOML). Without it every row is unpriced.
    #[arg(long, value_name = "FILE")]
    pub prices: Option<PathBuf>,
    /// Model alias table (TOML).
    #[arg(long, value_name = "FILE")]
    pub aliases: Option<PathBuf>,
    /// Gateway source: a built-in name (see `tally sources`) or a mapping
    /// file. Detected from each file's header or shape when not given.
    #[arg(long, value_name = "NAME|FILE")]
    pub source: Option<String>,
    /// Client log encoding, detected when not given.
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub client_format: Option<ClientFormatArg>,
    /// Matching window around the learned clock offset (e.g. 2s, 1500ms).
    #[arg(long, default_value = "2s", value_name = "DURATION")]
    pub tolerance: String,
    /// Cost variance tolerance: relative (1%) and absolute (USD), whichever is larger.
    #[arg(long, default_value = "1%", value_name = "PERCENT")]
    pub cost_tolerance: String,
    /// Absolute cost variance tolerance, USD.
    #[arg(long, default_value = "0.000001", value_name = "USD")]
    pub cost_tolerance_abs: String,
    /// Write matches.csv, missing_usage.csv, unattributed.csv,
    /// discrepancies.csv, costs_by_owner.csv, rejects.csv, report.json and
    /// report.html into this directory.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// With --out: do not write matches.csv (every pair). The exception files,
    /// report.json and report.html are still written; at ten million pairs
    /// matches.csv is most of the run's time and disk.
    #[arg(long, requires = "out")]
    pub no_matches: bool,
    /// Summary format on standard output.
    #[arg(long, value_enum, default_value = "table")]
    pub format: OutputFormat,
    /// Any rejected row is fatal.
    #[arg(long)]
    pub strict: bool,
    /// Print how long each phase took to standard error.
    #[arg(long)]
    pub timings: bool,
    /// Files at least this large are parsed in parts on every core (tests
    /// set it low to exercise splitting on small files).
    #[arg(long, hide = true, default_value_t = crate::app::split::MIN_SPLIT_BYTES)]
    pub split_min_bytes: u64,
    /// The report's "generated at" time (RFC 3339), for reproducible reports.
    #[arg(long, value_name = "TIME")]
    pub now: Option<String>,
}

/// `tally generate`.
#[derive(Debug, clap::Args)]
pub struct GenerateArgs {
    /// Client rows to generate.
    #[arg(long, default_value_t = 100_000)]
    pub rows: u64,
    /// Seed: the same seed gives the same bytes.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Number of keys (Zipf-distributed traffic).
    #[arg(long, default_value_t = 200)]
    pub keys: u32,
    /// Output directory: client.csv, gateway.csv, keys.toml, prices.toml, truth.csv.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Reconcile(args) => app::reconcile::run(&args),
        Command::Generate(args) => {
            app::generate::run(&args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Ingest(cmd) => app::ingest::run_cli(&cmd),
        Command::Db(DbCommand::Migrate { db }) => {
            let mut conn = crate::db::connect(&db)?;
            let applied = crate::db::migrate(&mut conn)?;
            let text = if applied.is_empty() {
                "The store is up to date.\n".to_owned()
            } else {
                format!(
                    "Applied {} migration(s): {}\n",
                    applied.len(),
                    applied.join(", ")
                )
            };
            app::reconcile::print(&text)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Sources => {
            let profiles = tally_reconcile::parse::mapping::Profile::builtins()
                .context("built-in profiles")?;
            let mut out = String::new();
            for p in profiles {
                out.push_str(&format!("{:<14} {}\n", p.name, p.description));
            }
            app::reconcile::print(&out)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn verify_cli() {
        super::Cli::command().debug_assert();
    }
}
