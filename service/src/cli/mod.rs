//! The command line.

pub mod progress;
mod reconcile;
mod render;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};

use crate::app;
use crate::clock::{parse_time, utc_now};

/// A time flag's value, or an error naming the flag.
fn time_flag(flag: &str, value: &str) -> Result<i64> {
    parse_time(value).map_err(|e| anyhow::anyhow!("{flag}: {e}"))
}

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
    /// Key registry in the store.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Owners and their contacts in the store.
    #[command(subcommand)]
    Owners(ImportCommand),
    /// Price catalog in the store.
    #[command(subcommand)]
    Prices(PricesCommand),
    /// Model aliases in the store.
    #[command(subcommand)]
    Aliases(ImportCommand),
    /// Contracted rates in the store: a share off list prices per model
    /// family and dates.
    #[command(subcommand)]
    Contracts(ImportCommand),
    /// Reconcile the stored rows of a window and keep the verdicts.
    Run(RunArgs),
    /// Report from the latest runs over a period.
    Report(ReportArgs),
    /// A billing month as FOCUS 1.2 CSV: frozen when the month is closed,
    /// with correction rows for closed months before it.
    Focus(FocusArgs),
    /// Close a billing month (its FOCUS export becomes final), reopen it
    /// with a reason, or list the closes.
    Close(CloseArgs),
    /// What a month's billed rows would cost under the prices in force at
    /// another date, per model and per owner.
    Reprice(RepriceArgs),
    /// Tie the providers' own usage and cost reports (OpenAI, Anthropic,
    /// OpenRouter JSON pages) to the stored gateway rows, bucket by bucket.
    Tieout(TieoutArgs),
    /// Run the HTTP API until SIGTERM.
    Serve(ServeArgs),
    /// Quotas: limits on an owner's or a key's usage per period.
    #[command(subcommand)]
    Quota(QuotaCommand),
    /// Alerts and their email.
    #[command(subcommand)]
    Alerts(AlertsCommand),
    /// The server's configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Service tokens for the HTTP API.
    #[command(subcommand)]
    Token(TokenCommand),
}

/// `tally serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Configuration file (TOML); `TALLY_...` variables override it.
    #[arg(long, env = "TALLY_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Do not run pending migrations; refuse a store that has any.
    #[arg(long, env = "TALLY_NO_MIGRATE")]
    pub no_migrate: bool,
    /// Run no scheduled jobs (reconcile, quotas, outbox, digest): for
    /// replicas that only serve HTTP.
    #[arg(long, env = "TALLY_NO_SCHEDULER")]
    pub no_scheduler: bool,
}

/// `tally quota ...`.
#[derive(Debug, Subcommand)]
pub enum QuotaCommand {
    /// Add a quota or replace the one with this name.
    Set(Box<QuotaSetArgs>),
    /// Every quota with its use in the current period.
    List {
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: OutputFormat,
        /// The store.
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Delete a quota (its alerts stay in the history).
    Delete {
        /// The quota's name.
        name: String,
        /// The store.
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Measure every quota now and fire what is due (the scheduler does
    /// this on its own).
    Evaluate {
        /// Evaluate as at this time instead of now (benchmarks, replays).
        #[arg(long, hide = true, value_name = "TIME")]
        now: Option<String>,
        /// The store.
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// `tally quota set`.
#[derive(Debug, clap::Args)]
pub struct QuotaSetArgs {
    /// Unique name.
    pub name: String,
    /// Scope: owner team.
    #[arg(long)]
    pub team: Option<String>,
    /// Scope: owner service.
    #[arg(long)]
    pub service: Option<String>,
    /// Scope: owner environment.
    #[arg(long)]
    pub env: Option<String>,
    /// Scope: one key (instead of owner labels).
    #[arg(long)]
    pub key: Option<String>,
    /// cost (USD), tokens or requests.
    #[arg(long, default_value = "cost")]
    pub metric: String,
    /// The limit, in the metric's unit.
    #[arg(long)]
    pub limit: rust_decimal::Decimal,
    /// day, week (from Monday) or month.
    #[arg(long, default_value = "month")]
    pub period: String,
    /// IANA time zone the period starts at local midnight in.
    #[arg(long = "tz", default_value = "UTC")]
    pub time_zone: String,
    /// Thresholds, percent of the limit.
    #[arg(long, value_delimiter = ',', default_value = "50,80,100")]
    pub thresholds: Vec<u32>,
    /// Recipients (default: the owner's or key's contacts).
    #[arg(long, value_delimiter = ',')]
    pub recipients: Vec<String>,
    /// billed (gateway rows) or client (client-logged rows).
    #[arg(long, default_value = "billed")]
    pub basis: String,
    /// The store.
    #[command(flatten)]
    pub store: StoreArgs,
}

/// `tally alerts ...`.
#[derive(Debug, Subcommand)]
pub enum AlertsCommand {
    /// The alert history, newest first.
    List {
        /// Only `firing` or `resolved` alerts.
        #[arg(long)]
        state: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: i64,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: OutputFormat,
        /// The store.
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Send a test message now, through the configured SMTP (or outbox
    /// folder), to check the setup.
    TestEmail {
        /// Who gets it.
        #[arg(long, value_name = "ADDRESS")]
        to: String,
        /// Configuration file; `TALLY_...` variables override it.
        #[arg(long, env = "TALLY_CONFIG", value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Send the alert messages held for want of a recipient (alerts that
    /// fired when no contact and no `alerts.platform_contact` was set).
    Resend {
        /// Send them here (default: `alerts.platform_contact`).
        #[arg(long, value_name = "ADDRESS")]
        to: Option<String>,
        /// The store.
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Send what the outbox holds that is due (the scheduler does this).
    Flush {
        /// The store.
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// `tally config ...`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Check a configuration (with the environment's overrides) and print
    /// it, secrets hidden.
    Check {
        /// Configuration file (TOML).
        #[arg(long, env = "TALLY_CONFIG", value_name = "FILE")]
        config: Option<PathBuf>,
    },
}

/// `tally token ...`.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Make a token and print it, once: only its hash is stored.
    Create {
        /// Who or what holds it.
        #[arg(long)]
        name: String,
        /// What it may do.
        #[arg(long, value_enum)]
        role: crate::app::tokens::Role,
        /// The store.
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List tokens (names, roles, last four characters; never a token).
    List {
        /// The store.
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Revoke the live token with this name.
    Revoke {
        /// Its name.
        name: String,
        /// The store.
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// `tally keys import FILE [--teams FILE]`.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Add or replace keys from a registry file (TOML, or CSV by extension),
    /// or from LiteLLM's key table (CSV from `psql \copy` of
    /// `LiteLLM_VerificationToken`, or the JSON of
    /// `/key/list?return_full_object=true`), recognised by its columns.
    Import {
        /// The file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// LiteLLM's team table (`LiteLLM_TeamTable` CSV, or `/team/list`
        /// JSON): keys' teams are named by `team_alias`, not their id.
        #[arg(long, value_name = "FILE")]
        teams: Option<PathBuf>,
        /// The store.
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// `tally owners|aliases import FILE`.
#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// Add or replace entries from a file (TOML, or CSV by extension).
    Import {
        /// The file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// The store.
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// `tally prices import FILE`.
#[derive(Debug, Subcommand)]
pub enum PricesCommand {
    /// Add or replace prices: Tally's TOML catalog, or LiteLLM's
    /// `model_prices_and_context_window.json`.
    Import {
        /// The file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// For LiteLLM's JSON (which has no dates): from when its prices
        /// apply (YYYY-MM-DD or RFC 3339, UTC). Default: today, 00:00 UTC.
        #[arg(long, value_name = "TIME")]
        effective_from: Option<String>,
        /// The store.
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// `tally run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Window start, inclusive (YYYY-MM-DD or RFC 3339; UTC unless an
    /// offset is given).
    #[arg(long, value_name = "TIME")]
    pub from: String,
    /// Window end, exclusive.
    #[arg(long, value_name = "TIME")]
    pub to: String,
    /// Matching window around the learned clock offset [default: 2s].
    #[arg(long, value_name = "DURATION")]
    pub tolerance: Option<String>,
    /// Cost variance tolerance, relative [default: 1%].
    #[arg(long, value_name = "PERCENT")]
    pub cost_tolerance: Option<String>,
    /// Cost variance tolerance, absolute USD [default: 0.000001].
    #[arg(long, value_name = "USD")]
    pub cost_tolerance_abs: Option<String>,
    /// The window is reconciled in slices of about this many rows per side
    /// (memory stays bounded by a slice); partners are still found across
    /// slice edges.
    #[arg(long, default_value_t = crate::app::run::DEFAULT_SLICE_ROWS, value_name = "ROWS")]
    pub slice_rows: i64,
    /// Print where the run's time went to standard error.
    #[arg(long)]
    pub timings: bool,
    /// The store.
    #[command(flatten)]
    pub store: StoreArgs,
}

/// `tally report`.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// Which report.
    #[arg(value_enum)]
    pub kind: crate::app::report::Kind,
    /// Period start, inclusive (YYYY-MM-DD or RFC 3339).
    #[arg(long, value_name = "TIME")]
    pub from: String,
    /// Period end, exclusive.
    #[arg(long, value_name = "TIME")]
    pub to: String,
    /// How `costs` groups rows.
    #[arg(long, value_enum, default_value = "owner")]
    pub group_by: crate::app::report::GroupBy,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: render::Format,
    /// Exit 1 when stored rows in the window were never reconciled (or
    /// arrived after their run): the report would leave them out.
    #[arg(long)]
    pub strict: bool,
    /// The store.
    #[command(flatten)]
    pub store: StoreArgs,
}

/// `tally focus`.
#[derive(Debug, clap::Args)]
pub struct FocusArgs {
    /// The billing month, YYYY-MM (UTC).
    #[arg(long, value_name = "YYYY-MM")]
    pub period: String,
    /// Write the export here instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// CSV, or Parquet (typed columns; needs --out).
    #[arg(long, value_enum, default_value = "csv")]
    pub format: FocusFormat,
    /// Exit 1 when stored rows in an open month were never reconciled.
    #[arg(long)]
    pub strict: bool,
    /// The store.
    #[command(flatten)]
    pub store: StoreArgs,
}

/// `tally reprice`.
#[derive(Debug, clap::Args)]
pub struct RepriceArgs {
    /// The billing month, YYYY-MM (UTC).
    #[arg(long, value_name = "YYYY-MM")]
    pub period: String,
    /// The date whose prices apply (YYYY-MM-DD or RFC 3339, UTC).
    #[arg(long, value_name = "TIME")]
    pub as_of: String,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: render::Format,
    /// The store.
    #[command(flatten)]
    pub store: StoreArgs,
}

/// `tally tieout`.
#[derive(Debug, clap::Args)]
pub struct TieoutArgs {
    /// Window start, inclusive (YYYY-MM-DD or RFC 3339).
    #[arg(long, value_name = "TIME")]
    pub from: String,
    /// Window end, exclusive.
    #[arg(long, value_name = "TIME")]
    pub to: String,
    /// Provider report pages, as the APIs returned them (all pages).
    #[arg(long = "report", value_name = "FILE", required = true, num_args = 1..)]
    pub reports: Vec<PathBuf>,
    /// Which provider keys or projects go with which gateway keys
    /// (`[[group]] name, provider, provider_ids, gateway_keys`): each group
    /// is tied out apart. The reports must be grouped by key or project.
    #[arg(long, value_name = "FILE")]
    pub key_map: Option<PathBuf>,
    /// Cost difference (USD) within which a bucket agrees.
    #[arg(long, default_value = "0.000001", value_name = "USD")]
    pub tolerance: String,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: render::Format,
    /// Exit 1 unless every bucket agrees and every report is whole.
    #[arg(long)]
    pub strict: bool,
    /// The store.
    #[command(flatten)]
    pub store: StoreArgs,
}

/// The file format of `tally focus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FocusFormat {
    /// CSV, the bytes a close freezes.
    Csv,
    /// Parquet made from those bytes.
    Parquet,
}

/// `tally close`.
#[derive(Debug, clap::Args)]
pub struct CloseArgs {
    /// The billing month, YYYY-MM (UTC). Without it: list the closes.
    #[arg(long, value_name = "YYYY-MM")]
    pub period: Option<String>,
    /// Reopen the month instead (its close stays on record).
    #[arg(long, requires = "reason")]
    pub reopen: bool,
    /// Why it is reopened.
    #[arg(long, requires = "reopen")]
    pub reason: Option<String>,
    /// Output format of the list.
    #[arg(long, value_enum, default_value = "table")]
    pub format: render::Format,
    /// The store.
    #[command(flatten)]
    pub store: StoreArgs,
}

/// The configuration and the store: every command that touches the store
/// reads the same settings `tally serve` does (file, then `TALLY_...`
/// variables), so alerts raised from the command line reach the same
/// recipients with the same links.
#[derive(Debug, Clone, clap::Args)]
pub struct StoreArgs {
    /// Configuration file (TOML), as `tally serve` reads it; `TALLY_...`
    /// variables override it.
    #[arg(long, env = "TALLY_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The store: a SQLite file (`tally.db`, `sqlite://PATH`) or a
    /// PostgreSQL URL (`postgres://user:pass@host/db`). Default: the
    /// configuration's `database.url` (`TALLY_DATABASE_URL`), else tally.db.
    #[arg(long, value_name = "URL")]
    pub db: Option<String>,
    /// Do not run pending migrations; refuse a store that has any.
    #[arg(long, env = "TALLY_NO_MIGRATE")]
    pub no_migrate: bool,
}

impl StoreArgs {
    /// The settings, with `--db` in place of `database.url` when given.
    pub fn settings(&self) -> Result<crate::settings::Settings> {
        let mut s = load_settings(self.config.as_deref())?;
        if let Some(db) = &self.db {
            s.database.url = crate::settings::Secret::new(db.clone());
        }
        Ok(s)
    }

    /// Opens the store the settings name (migrating it unless told not to).
    pub fn open(&self) -> Result<crate::db::AnyConnection> {
        self.open_with_settings().map(|(_, c)| c)
    }

    /// The settings and the store they name.
    pub fn open_with_settings(
        &self,
    ) -> Result<(crate::settings::Settings, crate::db::AnyConnection)> {
        let s = self.settings()?;
        let conn = crate::db::open(s.database.url.expose(), self.no_migrate)?;
        Ok((s, conn))
    }
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
    /// Client log source: a built-in client profile (see `tally sources`)
    /// or a mapping file with side = "client". Detected when not given.
    #[arg(long, value_name = "NAME|FILE", conflicts_with = "client_format")]
    pub client_source: Option<String>,
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
        /// Configuration file (TOML); `TALLY_...` variables override it.
        #[arg(long, env = "TALLY_CONFIG", value_name = "FILE")]
        config: Option<PathBuf>,
        /// The store: a SQLite file or a PostgreSQL URL. Default: the
        /// configuration's `database.url`, else tally.db.
        #[arg(long, value_name = "URL")]
        db: Option<String>,
    },
}

/// Use cases' enums as flag values: the command line knows clap, the use
/// cases do not.
macro_rules! flag_values {
    ($t:ty { $($v:ident => $name:literal),+ $(,)? }) => {
        impl ValueEnum for $t {
            fn value_variants<'a>() -> &'a [Self] {
                &[$(<$t>::$v),+]
            }

            fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
                Some(clap::builder::PossibleValue::new(match self {
                    $(<$t>::$v => $name),+
                }))
            }
        }
    };
}

flag_values!(app::report::Kind {
    Costs => "costs",
    Missing => "missing",
    Unattributed => "unattributed",
    Discrepancies => "discrepancies",
});
flag_values!(app::report::GroupBy {
    Owner => "owner",
    Team => "team",
    Service => "service",
    Env => "env",
    Key => "key",
    Model => "model",
    Day => "day",
    Tag => "tag",
});
flag_values!(app::tokens::Role {
    Admin => "admin",
    Finance => "finance",
    Platform => "platform",
    Ingest => "ingest",
});

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
    /// Key registry: Tally's TOML or CSV, LiteLLM's key table (CSV from
    /// `psql \copy` or `/key/list` JSON) or OpenRouter's key list (JSON).
    #[arg(long, value_name = "FILE")]
    pub keys: Option<PathBuf>,
    /// With LiteLLM's key table: its team table, to name teams.
    #[arg(long, value_name = "FILE", requires = "keys")]
    pub teams: Option<PathBuf>,
    /// Price catalog: Tally's TOML, or LiteLLM's
    /// `model_prices_and_context_window.json` (with --prices-effective-from).
    /// Without it every row is unpriced.
    #[arg(long, value_name = "FILE")]
    pub prices: Option<PathBuf>,
    /// For LiteLLM's price map (which has no dates): from when its prices
    /// apply (YYYY-MM-DD or RFC 3339, UTC).
    #[arg(long, value_name = "TIME", requires = "prices")]
    pub prices_effective_from: Option<String>,
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
    /// Client log source: a built-in client profile (see `tally sources`)
    /// or a mapping file with side = "client". Detected when not given.
    #[arg(long, value_name = "NAME|FILE", conflicts_with = "client_format")]
    pub client_source: Option<String>,
    /// Matching window around the learned clock offset (e.g. 2s, 1500ms)
    /// [default: 2s].
    #[arg(long, value_name = "DURATION")]
    pub tolerance: Option<String>,
    /// Cost variance tolerance: relative and absolute (USD), whichever is
    /// larger [default: 1%].
    #[arg(long, value_name = "PERCENT")]
    pub cost_tolerance: Option<String>,
    /// Absolute cost variance tolerance, USD [default: 0.000001].
    #[arg(long, value_name = "USD")]
    pub cost_tolerance_abs: Option<String>,
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
    /// Output directory: client.csv (or client.jsonl), gateway.csv,
    /// keys.toml, prices.toml, truth.csv.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Write the client log as JSON Lines (client.jsonl), each row with the
    /// OpenAI SDK's `usage` object as returned.
    #[arg(long)]
    pub jsonl: bool,
    /// The gateway bills this many percent over the price catalog: every
    /// priced pair then disagrees on cost (the worst case for the report).
    #[arg(long, value_name = "PCT", default_value_t = 0)]
    pub gateway_markup: u32,
    /// The day to generate (`YYYY-MM-DD`, UTC; default 2026-11-20).
    #[arg(long, value_name = "DATE")]
    pub day: Option<String>,
}

/// A UTC time as its day, `YYYY-MM-DD`.
fn day_text(ms: i64) -> String {
    let t = tally_reconcile::time::format_ms(ms);
    t.get(..10).unwrap_or(&t).to_owned()
}

/// Runs `tally ingest client|gateway`: one batch per file, a line of counts
/// per file. Exits non-zero only when a file cannot be read or stored; bad
/// rows are counted and kept as rejects.
fn ingest(cmd: &IngestCommand) -> Result<std::process::ExitCode> {
    let (kind, files, store, client_format, source, client_source) = match cmd {
        IngestCommand::Client(a) => (
            tally_reconcile::SideKind::Client,
            &a.files,
            &a.store,
            a.client_format.map(ClientFormatArg::format),
            None,
            a.client_source.as_deref(),
        ),
        IngestCommand::Gateway(a) => (
            tally_reconcile::SideKind::Gateway,
            &a.files,
            &a.store,
            None,
            a.source.as_deref(),
            None,
        ),
    };
    let profiles = crate::app::reconcile::profiles_for(source)?;
    let client_profiles = crate::app::reconcile::client_profiles_for(client_source)?;
    let (settings, mut conn) = store.open_with_settings()?;
    let now_ms = crate::clock::now_ms()?;
    let now = tally_schema::convert::naive_from_ms(now_ms)?;
    // Each file is its own batch: its line is printed as soon as it is
    // stored, and a file that fails does not stop the ones after it.
    let mut added = 0;
    let mut failed = Vec::new();
    for path in files {
        let plan = app::reconcile::ReadPlan {
            client_format,
            profiles: &profiles,
            named: source.is_some(),
            client_profiles: &client_profiles,
            client_named: client_source.is_some(),
            min_split_bytes: crate::app::split::MIN_SPLIT_BYTES,
            keep_raw: true,
        };
        let label = path.display().to_string();
        let bytes = std::fs::metadata(path).map_or(0, |m| m.len());
        let mut bar = progress::Progress::for_file(&label, bytes);
        let o = app::ingest::ingest_file(&mut conn, kind, path, &label, plan, now, &mut |step| {
            match step {
                app::ingest::Step::Hashing { done, total } => {
                    bar.show("hashing bytes", done, total)
                }
                app::ingest::Step::Storing { rows } => bar.show("storing rows", rows, 0),
                app::ingest::Step::Finished => bar.finish(),
            }
        });
        match o {
            Ok(o) => {
                crate::output::print(&render::describe_ingest(&o))?;
                added += o.new;
            }
            // The store itself failing stops everything: the next file
            // would fail the same way.
            Err(e @ app::ingest::IngestError::Store(_)) => {
                return Err(anyhow::Error::new(e).context(format!("{label}: not stored")));
            }
            Err(e) => {
                crate::output::notice(&format!("error: {label}: not stored: {e}\n"));
                failed.push(label);
            }
        }
    }
    let mut out = String::new();
    if added > 0 {
        out.push_str(&render::describe_follow_up(
            &crate::app::follow_up::after_ingest(&mut conn, &settings, utc_now()?),
        ));
        out.push_str(&render::describe_held(crate::app::alerts::held(&mut conn)));
    }
    crate::output::print(&out)?;
    if !failed.is_empty() {
        crate::output::notice(&format!(
            "{} of {} file(s) not stored ({}); the others are stored as printed above\n",
            failed.len(),
            files.len(),
            failed.join(", ")
        ));
        return Ok(std::process::ExitCode::FAILURE);
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// Runs one reference import against the store and says how many entries.
fn import(
    file: &std::path::Path,
    store: &StoreArgs,
    what: &str,
    f: fn(&mut crate::db::AnyConnection, &std::path::Path) -> Result<usize, app::error::AppError>,
) -> Result<ExitCode> {
    let mut conn = store.open()?;
    let n = f(&mut conn, file)?;
    done(&format!(
        "{}: {n} {what} added or replaced\n",
        file.display()
    ))
}

/// Prints a command's output; success.
fn done(text: &str) -> Result<ExitCode> {
    crate::output::print(text)?;
    Ok(ExitCode::SUCCESS)
}

/// The server configuration from `file` and the process environment.
pub(crate) fn load_settings(file: Option<&std::path::Path>) -> Result<crate::settings::Settings> {
    Ok(crate::settings::Settings::load(file, |k| {
        std::env::var(k).ok()
    })?)
}

/// `tally quota set|list|delete|evaluate`.
fn quota(cmd: QuotaCommand) -> Result<ExitCode> {
    use crate::app::quotas::{self, QuotaSpec, parse_name};
    match cmd {
        QuotaCommand::Set(a) => {
            let spec = QuotaSpec {
                name: a.name.clone(),
                scope: quotas::Scope {
                    team: a.team.clone(),
                    service: a.service.clone(),
                    env: a.env.clone(),
                    key: a.key.clone(),
                },
                metric: parse_name("--metric", &a.metric)?,
                limit: a.limit,
                period: parse_name("--period", &a.period)?,
                time_zone: a.time_zone.clone(),
                thresholds: a.thresholds.clone(),
                recipients: a.recipients.clone(),
                basis: parse_name("--basis", &a.basis)?,
            };
            let mut conn = a.store.open()?;
            quotas::set(&mut conn, &spec, utc_now()?.naive_utc())?;
            done(&format!(
                "quota `{}` set: {} {} per {} ({})\n",
                spec.name,
                spec.scope.label(),
                quotas::show(spec.metric, spec.limit),
                a.period,
                spec.time_zone
            ))
        }
        QuotaCommand::List { format, store } => {
            let (settings, mut conn) = store.open_with_settings()?;
            let st = quotas::current(&mut conn, &settings, utc_now()?)?;
            match format {
                OutputFormat::Table => done(&render::describe_quotas(&st)),
                OutputFormat::Json => done(&format!("{}\n", serde_json::to_string_pretty(&st)?)),
            }
        }
        QuotaCommand::Delete { name, store } => {
            let mut conn = store.open()?;
            quotas::delete(&mut conn, &name)?;
            done(&format!("quota `{name}` deleted\n"))
        }
        QuotaCommand::Evaluate { now, store } => {
            let (settings, mut conn) = store.open_with_settings()?;
            let at = match now {
                Some(t) => chrono::DateTime::from_timestamp_millis(time_flag("--now", &t)?)
                    .context("--now out of range")?,
                None => utc_now()?,
            };
            let e = quotas::evaluate(&mut conn, &settings, at)?;
            let held = render::describe_held(crate::app::alerts::held(&mut conn));
            done(&format!(
                "{} quota(s) measured: {} alert(s) fired, {} resolved, {} message(s) queued\n{held}",
                e.quotas, e.fired, e.resolved, e.queued
            ))
        }
    }
}

/// `tally alerts list|test-email|flush`.
fn alerts(cmd: AlertsCommand) -> Result<ExitCode> {
    use crate::app::alerts;
    use crate::mail;
    match cmd {
        AlertsCommand::List {
            state,
            limit,
            format,
            store,
        } => {
            let mut conn = store.open()?;
            let list = alerts::list(&mut conn, state.as_deref(), None, limit)?;
            match format {
                OutputFormat::Json => done(&format!("{}\n", serde_json::to_string_pretty(&list)?)),
                OutputFormat::Table => {
                    let mut out = String::new();
                    for a in &list {
                        out.push_str(&format!(
                            "{:>5}  {:<8}  {:<16}  {}  {}\n",
                            a.id, a.state, a.kind, a.fired_at, a.title
                        ));
                    }
                    if list.is_empty() {
                        out.push_str("no alerts\n");
                    }
                    done(&out)
                }
            }
        }
        AlertsCommand::TestEmail { to, config } => {
            let settings = load_settings(config.as_deref())?;
            let mailer = mail::Mailer::new(&settings.email)?;
            alerts::test_email(&mailer, &to, utc_now()?)
                .with_context(|| format!("test message to {to} through {}", mailer.describe()))?;
            done(&format!(
                "test message to {to} accepted by {}\n",
                mailer.describe()
            ))
        }
        AlertsCommand::Resend { to, store } => {
            let (settings, mut conn) = store.open_with_settings()?;
            let n = alerts::resend(&mut conn, &settings, to.as_deref(), utc_now()?.naive_utc())?;
            done(&format!(
                "{n} held message(s) released; `tally alerts flush` (or the server) sends them\n"
            ))
        }
        AlertsCommand::Flush { store } => {
            let (settings, mut conn) = store.open_with_settings()?;
            let mailer = mail::Mailer::new(&settings.email)?;
            let f = mail::flush(&mut conn, &mailer, utc_now()?.naive_utc())?;
            done(&format!(
                "{} sent, {} failed (retried later), {} waiting\n",
                f.sent, f.failed, f.waiting
            ))
        }
    }
}

/// `tally token create|list|revoke`.
fn token(cmd: TokenCommand) -> Result<ExitCode> {
    use crate::app::tokens;
    let now = || -> Result<chrono::NaiveDateTime> {
        Ok(tally_schema::convert::naive_from_ms(
            crate::clock::now_ms()?
        )?)
    };
    match cmd {
        TokenCommand::Create { name, role, store } => {
            let mut conn = store.open()?;
            let token = tokens::create(&mut conn, &name, role, now()?)?;
            // The token alone on standard output, so `TOKEN=$(tally token
            // create ...)` captures exactly it; the notice is for the person.
            crate::output::notice(&format!(
                "The token for `{}` ({}) is on standard output. It is shown this once: \
                 only its hash is stored.\n",
                name.trim(),
                role.as_str()
            ));
            done(&format!("{token}\n"))
        }
        TokenCommand::List { store } => {
            let mut conn = store.open()?;
            done(&render::describe_tokens(&tokens::list(&mut conn)?))
        }
        TokenCommand::Revoke { name, store } => {
            let mut conn = store.open()?;
            if tokens::revoke(&mut conn, &name, now()?)? {
                done(&format!("revoked the token `{name}`\n"))
            } else {
                anyhow::bail!("no live token named `{name}`")
            }
        }
    }
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Reconcile(args) => reconcile::run(&args),
        Command::Generate(args) => generate(&args),
        Command::Ingest(cmd) => ingest(&cmd),
        Command::Keys(KeysCommand::Import { file, teams, store }) => {
            let mut conn = store.open()?;
            let n = app::reference::import_keys(&mut conn, &file, teams.as_deref())?;
            done(&format!(
                "{}: {n} key(s) added or replaced\n",
                file.display()
            ))
        }
        Command::Owners(ImportCommand::Import { file, store }) => {
            import(&file, &store, "owner(s)", app::reference::import_owners)
        }
        Command::Aliases(ImportCommand::Import { file, store }) => {
            import(&file, &store, "alias(es)", app::reference::import_aliases)
        }
        Command::Contracts(ImportCommand::Import { file, store }) => import(
            &file,
            &store,
            "contract(s)",
            app::reference::import_contracts,
        ),
        Command::Prices(PricesCommand::Import {
            file,
            effective_from,
            store,
        }) => import_prices(&file, effective_from.as_deref(), &store),
        Command::Run(args) => run_window(&args),
        Command::Report(args) => report(&args),
        Command::Focus(args) => focus(&args),
        Command::Close(args) => close(&args),
        Command::Reprice(args) => reprice(&args),
        Command::Tieout(args) => tieout(&args),
        Command::Db(DbCommand::Migrate { config, db }) => migrate(config.as_deref(), db),
        Command::Serve(args) => {
            let settings = load_settings(args.config.as_deref())?;
            crate::http::serve(settings, args.no_migrate, args.no_scheduler)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Config(ConfigCommand::Check { config }) => {
            let settings = load_settings(config.as_deref())?;
            done(&format!("configuration is valid:\n{settings:#?}\n"))
        }
        Command::Token(cmd) => token(cmd),
        Command::Quota(cmd) => quota(cmd),
        Command::Alerts(cmd) => alerts(cmd),
        Command::Sources => sources(),
    }
}

/// `tally generate`.
fn generate(args: &GenerateArgs) -> Result<ExitCode> {
    let truth = app::generate::run(&app::generate::Request {
        rows: args.rows,
        seed: args.seed,
        keys: args.keys,
        out: args.out.clone(),
        client_jsonl: args.jsonl,
        gateway_markup_pct: args.gateway_markup,
        start_ms: args
            .day
            .as_deref()
            .map(|d| time_flag("--day", d))
            .transpose()?,
    })?;
    done(&format!(
        "generated {} client rows, {} gateway rows: {} true pairs, {} missing on the gateway, {} extra gateway rows, {} token mismatches -> {}\n",
        truth.client_rows,
        truth.gateway_rows,
        truth.pairs,
        truth.missing,
        truth.extra,
        truth.token_mismatches,
        args.out.display()
    ))
}

/// `tally prices import`.
fn import_prices(
    file: &std::path::Path,
    effective_from: Option<&str>,
    store: &StoreArgs,
) -> Result<ExitCode> {
    let now_ms = crate::clock::now_ms()?;
    let dated = effective_from.is_some();
    let from_ms = match effective_from {
        Some(t) => time_flag("--effective-from", t)?,
        None => now_ms - now_ms.rem_euclid(tally_reconcile::time::DAY_MS),
    };
    let mut conn = store.open()?;
    let now = tally_schema::convert::naive_from_ms(now_ms)?;
    let r = app::reference::import_prices(&mut conn, file, from_ms, now)?;
    let skipped = if r.skipped > 0 {
        format!(" ({} entries without per-token prices left out)", r.skipped)
    } else {
        String::new()
    };
    // LiteLLM's map has no dates: say from when its prices count,
    // and how to make them count for earlier rows.
    let from = if r.dated_by_file {
        String::new()
    } else if dated {
        format!(", effective from {}", day_text(from_ms))
    } else {
        format!(
            ", effective from {} (today: the file has no dates; rows before it stay \
             unpriced; to price them, import again with --effective-from YYYY-MM-DD)",
            day_text(from_ms)
        )
    };
    if r.rows_before > 0 {
        crate::output::notice(&format!(
            "warning: {} stored row(s) are older than {}: a model only this file prices \
             stays unpriced for them (never priced at zero); to price them, import again \
             with --effective-from on or before their first day\n",
            r.rows_before,
            day_text(from_ms)
        ));
    }
    done(&format!(
        "{}: {} price(s) added or replaced{from}{skipped}\n",
        file.display(),
        r.prices
    ))
}

/// `tally run`: reconciles a window of the store, then its alerts and quotas.
fn run_window(args: &RunArgs) -> Result<ExitCode> {
    let from = time_flag("--from", &args.from)?;
    let to = time_flag("--to", &args.to)?;
    let settings = app::reconcile::settings(
        args.tolerance.as_deref(),
        args.cost_tolerance.as_deref(),
        args.cost_tolerance_abs.as_deref(),
    )?;
    let (config, mut conn) = args.store.open_with_settings()?;
    let mut spare = crate::db::readers(config.database.url.expose(), app::run::READERS)?;
    let mut readers: Vec<_> = spare.iter_mut().collect();
    // Alerts and quotas as the server would (recipients and links
    // from the same configuration); messages wait in the outbox.
    let (o, alerts) = app::follow_up::run_and_alert(
        &mut conn,
        &mut readers,
        &config,
        (from, to),
        args.slice_rows,
        settings,
        crate::clock::now_ms,
    )?;
    if args.timings {
        crate::output::notice(&render::describe_timings(&o.timings));
    }
    let held = render::describe_held(crate::app::alerts::held(&mut conn));
    done(&(render::describe_run(&o) + &render::describe_follow_up(&alerts) + &held))
}

/// `tally report`.
fn report(args: &ReportArgs) -> Result<ExitCode> {
    let from = time_flag("--from", &args.from)?;
    let to = time_flag("--to", &args.to)?;
    let mut conn = args.store.open()?;
    // Said before the figures, on standard error: a table of "$0" over a
    // window nobody ran is not a finding.
    let coverage = app::report::coverage(&mut conn, (from, to))?;
    if let Some(w) = coverage.warning() {
        crate::output::notice(&format!("warning: {w}\n"));
    }
    let text = match args.kind {
        app::report::Kind::Costs => render::report_text(
            // One report: nothing to keep between views.
            &app::report::cost_lines(
                &mut conn,
                &app::memo::Memo::default(),
                (from, to),
                args.group_by,
            )?,
            args.format,
        )?,
        kind => render::report_text(
            &app::report::row_lines(&mut conn, kind, (from, to))?,
            args.format,
        )?,
    };
    crate::output::print(&text)?;
    if args.strict && !coverage.complete() {
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// `tally focus`.
fn focus(args: &FocusArgs) -> Result<ExitCode> {
    let settings = args.store.settings()?;
    let month = app::periods::billing_month(&args.period)?;
    let mut conn = args.store.open()?;
    let e = app::periods::focus_export(&mut conn, &month, &settings.focus)?;
    if let Some(w) = e.coverage.warning() {
        crate::output::notice(&format!("warning: {w}\n"));
    }
    match (&args.out, args.format) {
        (Some(path), FocusFormat::Csv) => std::fs::write(path, &e.csv)
            .with_context(|| format!("cannot write {}", path.display()))?,
        (Some(path), FocusFormat::Parquet) => {
            let f = std::fs::File::create(path)
                .with_context(|| format!("cannot write {}", path.display()))?;
            crate::focus_parquet::write(std::io::BufWriter::new(f), &e.csv)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        (None, FocusFormat::Csv) => crate::output::print(&e.csv)?,
        (None, FocusFormat::Parquet) => {
            anyhow::bail!("--format parquet writes a file: give it --out FILE")
        }
    }
    crate::output::notice(&render::describe_focus(&e));
    if args.strict && !e.coverage.complete() {
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// `tally reprice`.
fn reprice(args: &RepriceArgs) -> Result<ExitCode> {
    let month = app::periods::billing_month(&args.period)?;
    let as_of = time_flag("--as-of", &args.as_of)?;
    let mut conn = args.store.open()?;
    let r = app::reprice::reprice(&mut conn, &month, as_of)?;
    if let Some(w) = r.coverage.warning() {
        crate::output::notice(&format!("warning: {w}\n"));
    }
    crate::output::print(&render::describe_reprice(&r, args.format)?)?;
    Ok(ExitCode::SUCCESS)
}

/// `tally tieout`.
fn tieout(args: &TieoutArgs) -> Result<ExitCode> {
    let from = time_flag("--from", &args.from)?;
    let to = time_flag("--to", &args.to)?;
    let tolerance: rust_decimal::Decimal = args
        .tolerance
        .parse()
        .map_err(|_| anyhow::anyhow!("--tolerance: `{}` is not an amount", args.tolerance))?;
    let settings = args.store.settings()?;
    let mut conn = args.store.open()?;
    let files: Vec<&std::path::Path> = args.reports.iter().map(PathBuf::as_path).collect();
    let t = app::tieout::tie_out(
        &mut conn,
        &settings,
        (from, to),
        &files,
        args.key_map.as_deref(),
        tolerance,
        utc_now()?,
    )?;
    if t.alerts_fired > 0 {
        crate::output::notice(&format!(
            "{} tie-out gap alert(s) raised for finance\n",
            t.alerts_fired
        ));
    }
    if let Some(w) = t.coverage.warning() {
        crate::output::notice(&format!("warning: {w}\n"));
    }
    for m in &t.incomplete {
        crate::output::notice(&format!("warning: {m}\n"));
    }
    crate::output::print(&render::describe_tieout(&t, args.format)?)?;
    if args.strict && !t.clean() {
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// `tally close`.
fn close(args: &CloseArgs) -> Result<ExitCode> {
    let settings = args.store.settings()?;
    let mut conn = args.store.open()?;
    let Some(period) = &args.period else {
        let closes = app::periods::closes(&mut conn)?;
        crate::output::print(&render::describe_closes(&closes, args.format)?)?;
        return Ok(ExitCode::SUCCESS);
    };
    let month = app::periods::billing_month(period)?;
    let now = utc_now()?.naive_utc();
    if args.reopen {
        let reason = args.reason.as_deref().unwrap_or_default();
        app::periods::reopen(&mut conn, &month, reason, "cli", now)?;
        return done(&format!(
            "{} reopened: {reason}\nIts close stays on record (`tally close`); close it again when it is final.\n",
            month.key
        ));
    }
    let c = app::periods::close(&mut conn, &month, &settings.focus, "cli", now)?;
    done(&render::describe_close(&c))
}

/// `tally db migrate`.
fn migrate(config: Option<&std::path::Path>, db: Option<String>) -> Result<ExitCode> {
    let url = match db {
        Some(db) => db,
        None => load_settings(config)?.database.url.expose().to_owned(),
    };
    let mut conn = crate::db::connect(&url)?;
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
    crate::output::print(&text)?;
    Ok(ExitCode::SUCCESS)
}

/// `tally sources`: the built-in profiles.
fn sources() -> Result<ExitCode> {
    let profiles =
        tally_reconcile::parse::mapping::Profile::builtins().context("built-in profiles")?;
    let clients = tally_reconcile::parse::mapping::Profile::client_builtins()
        .context("built-in client profiles")?;
    let mut out = String::from("gateway exports (--source):\n");
    for p in profiles {
        out.push_str(&format!("  {:<14} {}\n", p.name, p.description));
    }
    out.push_str("client logs (--client-source; Tally's own JSON Lines and CSV need none):\n");
    for p in clients {
        out.push_str(&format!("  {:<14} {}\n", p.name, p.description));
    }
    crate::output::print(&out)?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn verify_cli() {
        super::Cli::command().debug_assert();
    }
}
