//! `tally serve`'s configuration: one TOML file plus `TALLY_...`
//! environment overrides, typed, unknown keys refused, checked at start.
//!
//! Every key is in [`KEYS`], which drives the environment overrides and is
//! what the README's configuration table lists.

use std::net::SocketAddr;
use std::path::Path;

use serde::Deserialize;

/// What a configuration can be wrong with.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The file cannot be read.
    #[error("cannot read `{path}`: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file or an override is not valid TOML of the right shape
    /// (unknown keys included).
    #[error("{origin}: {message}")]
    Invalid {
        /// The file, or the environment.
        origin: String,
        /// What is wrong, with the key.
        message: String,
    },
}

/// A value that is never printed: `Debug` and `Display` show `***`.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// The value itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// Everything `tally serve` is configured with.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// The HTTP server.
    pub server: ServerSettings,
    /// The store.
    pub database: DatabaseSettings,
    pub log: LogSettings,
    /// Alert email.
    pub email: EmailSettings,
    /// What fires alerts.
    pub alerts: AlertSettings,
    /// Scheduled jobs.
    pub schedule: ScheduleSettings,
    /// Who bills, in FOCUS exports.
    pub focus: FocusSettings,
}

/// `[focus]`: the billing columns every FOCUS row shares.
pub type FocusSettings = tally_reconcile::focus::Account;

/// `[email]`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct EmailSettings {
    /// `smtp://[user:pass@]host[:port]` (STARTTLS required; add
    /// `?tls=none` for a plain local relay) or `smtps://...` (TLS from the
    /// start). Unset: messages are written to `outbox_dir` as `.eml` files.
    pub smtp_url: Option<Secret>,
    /// The From address.
    pub from: String,
    /// SMTP connect and command timeout, seconds.
    pub timeout_s: u64,
    /// PEM file of root certificates to trust besides the web's (a mail
    /// relay with a private CA).
    pub ca_file: Option<String>,
    /// Where messages go as `.eml` files when no SMTP is configured.
    pub outbox_dir: String,
    /// How people reach the pages, for links in messages.
    pub base_url: String,
}

impl Default for EmailSettings {
    fn default() -> Self {
        Self {
            smtp_url: None,
            from: "Tally <tally@localhost>".to_owned(),
            timeout_s: 30,
            ca_file: None,
            outbox_dir: "outbox".to_owned(),
            base_url: "http://127.0.0.1:8080".to_owned(),
        }
    }
}

/// `[alerts]`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct AlertSettings {
    /// Who hears of unregistered keys, and of anything whose owner has no
    /// contact (comma-separated addresses).
    pub platform_contact: String,
    /// Who hears that late rows changed a closed month (comma-separated
    /// addresses); empty: the platform contact.
    pub finance_contact: String,
    /// A tie-out gap (USD, either way) per provider that alerts finance;
    /// 0 turns the alert off.
    pub tieout_min_gap: rust_decimal::Decimal,
    /// Unattributed traffic on a key in a day alerts from this many rows...
    pub unattributed_min_rows: u64,
    /// ...or from this cost, USD.
    pub unattributed_min_cost: rust_decimal::Decimal,
    /// A quota forecast needs this much of the period behind it, hours.
    pub forecast_min_elapsed_h: u64,
    /// Causes a run's message to one recipient details in full, costliest
    /// first; the rest are listed by title in the same message.
    pub max_per_run: usize,
}

impl Default for AlertSettings {
    fn default() -> Self {
        Self {
            platform_contact: String::new(),
            finance_contact: String::new(),
            tieout_min_gap: rust_decimal::Decimal::ONE,
            unattributed_min_rows: 1,
            unattributed_min_cost: rust_decimal::Decimal::ZERO,
            forecast_min_elapsed_h: 6,
            max_per_run: 20,
        }
    }
}

/// A job's schedule: a cron expression with a seconds field (`sec min
/// hour day-of-month month day-of-week`), UTC, parsed when the
/// configuration is read; "" turns the job off.
#[derive(Debug, Clone)]
pub struct JobSchedule {
    text: String,
    schedule: Option<cron::Schedule>,
}

impl JobSchedule {
    /// A job that never runs.
    pub fn off() -> Self {
        Self {
            text: String::new(),
            schedule: None,
        }
    }

    /// Parses an expression ("" or blanks: off).
    pub fn parse(expr: &str) -> Result<Self, String> {
        let text = expr.trim().to_owned();
        if text.is_empty() {
            return Ok(Self::off());
        }
        let schedule = <cron::Schedule as std::str::FromStr>::from_str(&text).map_err(|e| {
            // cron's message ends with its reason, after the
            // expression underlined.
            let why = e.to_string();
            format!(
                "`{text}` is not a cron expression with seconds \
                     (sec min hour day-of-month month day-of-week): {}",
                why.lines().last().unwrap_or_default().trim()
            )
        })?;
        Ok(Self {
            text,
            schedule: Some(schedule),
        })
    }

    /// The schedule, unless the job is off.
    pub fn schedule(&self) -> Option<&cron::Schedule> {
        self.schedule.as_ref()
    }

    /// The expression as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl PartialEq for JobSchedule {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for JobSchedule {}

impl<'de> Deserialize<'de> for JobSchedule {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// `[schedule]`: when each job runs (see [`JobSchedule`]).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ScheduleSettings {
    /// Reconcile the trailing window.
    pub reconcile: JobSchedule,
    /// The trailing window, hours (from a UTC midnight: the window starts at
    /// the midnight at or before now minus this).
    pub reconcile_window_h: u64,
    /// Evaluate quotas.
    pub quotas: JobSchedule,
    /// Send what the outbox holds.
    pub outbox: JobSchedule,
    /// Each owner's daily digest of yesterday (UTC).
    pub digest: JobSchedule,
}

impl ScheduleSettings {
    /// Each job's name and schedule.
    pub fn jobs(&self) -> [(&'static str, &JobSchedule); 4] {
        [
            ("reconcile", &self.reconcile),
            ("quotas", &self.quotas),
            ("outbox", &self.outbox),
            ("digest", &self.digest),
        ]
    }
}

impl Default for ScheduleSettings {
    fn default() -> Self {
        // A default that did not parse would be a job silently off: a
        // test reads them all.
        let every = |expr: &str| JobSchedule::parse(expr).unwrap_or_else(|_| JobSchedule::off());
        Self {
            reconcile: JobSchedule::off(),
            reconcile_window_h: 48,
            quotas: every("0 */5 * * * *"),
            outbox: every("*/30 * * * * *"),
            digest: every("0 0 7 * * *"),
        }
    }
}

/// `[server]`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    /// Address and port to listen on.
    pub listen: SocketAddr,
    /// HTTP worker threads; 0 means one per core.
    pub workers: usize,
    /// Largest request body accepted (an upload), in MiB.
    pub body_limit_mb: u64,
    /// How long in-flight requests get to finish after SIGTERM, seconds.
    pub shutdown_timeout_s: u64,
    /// Mark the session cookie `Secure` (send it over HTTPS only): on
    /// whenever users reach Tally through TLS (a proxy in front).
    pub secure_cookies: bool,
    /// Seconds a client gets to send a request's headers.
    pub header_timeout_s: u64,
    /// Seconds an upload's body may go without a byte before it is refused
    /// (408): a stalled upload frees its slot.
    pub body_idle_timeout_s: u64,
    /// Uploads one token may have under way at once (429 beyond).
    pub uploads_per_token: usize,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            workers: 0,
            body_limit_mb: 256,
            shutdown_timeout_s: 30,
            secure_cookies: false,
            header_timeout_s: 10,
            body_idle_timeout_s: 30,
            uploads_per_token: 2,
        }
    }
}

/// `[database]`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseSettings {
    /// A SQLite file (`tally.db`, `sqlite://PATH`) or a `postgres://` URL;
    /// secret because a URL may hold a password.
    pub url: Secret,
    /// Connections in the pool.
    pub pool_size: u32,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: Secret::new("tally.db"),
            pool_size: 8,
        }
    }
}

/// `[log]`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    /// `text` or `json`.
    pub format: LogFormat,
    /// A `tracing` filter: `info`, `tally=debug,info`, ...
    pub level: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".to_owned(),
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One human-readable line per event.
    Text,
    /// One JSON object per event.
    Json,
}

/// One configuration key: its section, name, the environment variable that
/// overrides it, and what it is, for the README and `tally config check`.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    /// `[section]`.
    pub section: &'static str,
    /// Key within it.
    pub name: &'static str,
    /// What it sets.
    pub doc: &'static str,
}

impl Key {
    /// The environment variable: `TALLY_SECTION_NAME`.
    pub fn env(&self) -> String {
        format!("TALLY_{}_{}", self.section, self.name).to_uppercase()
    }
}

/// Every key, in file order.
pub const KEYS: &[Key] = &[
    Key {
        section: "server",
        name: "listen",
        doc: "address:port to listen on (default 127.0.0.1:8080)",
    },
    Key {
        section: "server",
        name: "workers",
        doc: "HTTP worker threads, 0 = one per core (default 0)",
    },
    Key {
        section: "server",
        name: "body_limit_mb",
        doc: "largest upload accepted, MiB (default 256)",
    },
    Key {
        section: "server",
        name: "shutdown_timeout_s",
        doc: "seconds in-flight requests get after SIGTERM (default 30)",
    },
    Key {
        section: "server",
        name: "secure_cookies",
        doc: "session cookie only over HTTPS: true behind a TLS proxy (default false)",
    },
    Key {
        section: "server",
        name: "header_timeout_s",
        doc: "seconds a client gets to send a request's headers (default 10)",
    },
    Key {
        section: "server",
        name: "body_idle_timeout_s",
        doc: "seconds an upload may send no byte before it is refused, 408 (default 30)",
    },
    Key {
        section: "server",
        name: "uploads_per_token",
        doc: "uploads one token may have under way at once, 429 beyond (default 2)",
    },
    Key {
        section: "database",
        name: "url",
        doc: "the store: SQLite file or postgres:// URL (default tally.db)",
    },
    Key {
        section: "database",
        name: "pool_size",
        doc: "store connections (default 8)",
    },
    Key {
        section: "log",
        name: "format",
        doc: "text or json (default text)",
    },
    Key {
        section: "log",
        name: "level",
        doc: "tracing filter, e.g. info or tally=debug,info (default info)",
    },
    Key {
        section: "email",
        name: "smtp_url",
        doc: "smtp://[user:pass@]host[:port] (STARTTLS; ?tls=none for a plain local relay) or smtps://; unset: .eml files in outbox_dir",
    },
    Key {
        section: "email",
        name: "from",
        doc: "From address (default Tally <tally@localhost>)",
    },
    Key {
        section: "email",
        name: "timeout_s",
        doc: "SMTP timeout, seconds (default 30)",
    },
    Key {
        section: "email",
        name: "ca_file",
        doc: "PEM root certificates to trust besides the web's, for a relay with a private CA (default none)",
    },
    Key {
        section: "email",
        name: "outbox_dir",
        doc: "folder for .eml files when no SMTP is set (default outbox)",
    },
    Key {
        section: "email",
        name: "base_url",
        doc: "where people reach the pages, for links in email (default http://127.0.0.1:8080)",
    },
    Key {
        section: "alerts",
        name: "platform_contact",
        doc: "addresses told of unregistered keys and of owners without a contact",
    },
    Key {
        section: "alerts",
        name: "finance_contact",
        doc: "addresses told when late rows change a closed month (default: the platform contact)",
    },
    Key {
        section: "alerts",
        name: "tieout_min_gap",
        doc: "a provider's tie-out gap, USD either way, that alerts finance; 0 = off (default 1)",
    },
    Key {
        section: "alerts",
        name: "unattributed_min_rows",
        doc: "unattributed rows on a key in a day that alert (default 1)",
    },
    Key {
        section: "alerts",
        name: "max_per_run",
        doc: "causes a run's message to one recipient details in full; the rest by title (default 20)",
    },
    Key {
        section: "alerts",
        name: "unattributed_min_cost",
        doc: "or their cost, USD, that alerts (default 0: any)",
    },
    Key {
        section: "alerts",
        name: "forecast_min_elapsed_h",
        doc: "hours of a period before a forecast may alert (default 6)",
    },
    Key {
        section: "schedule",
        name: "reconcile",
        doc: "cron (sec min hour dom mon dow, UTC) for runs over the trailing window; \"\" = off (default off)",
    },
    Key {
        section: "schedule",
        name: "reconcile_window_h",
        doc: "the trailing window, hours back to a UTC midnight (default 48)",
    },
    Key {
        section: "schedule",
        name: "quotas",
        doc: "cron for quota evaluation (default every 5 minutes)",
    },
    Key {
        section: "schedule",
        name: "outbox",
        doc: "cron for sending the outbox (default every 30 s)",
    },
    Key {
        section: "schedule",
        name: "digest",
        doc: "cron for each owner's daily digest (default 07:00 UTC)",
    },
    Key {
        section: "focus",
        name: "billing_account_id",
        doc: "FOCUS BillingAccountId: the account the gateway or provider bills (default \"default\")",
    },
    Key {
        section: "focus",
        name: "billing_account_name",
        doc: "FOCUS BillingAccountName (default none)",
    },
    Key {
        section: "focus",
        name: "provider_name",
        doc: "FOCUS ProviderName, e.g. OpenRouter (default: each model's publisher)",
    },
    Key {
        section: "focus",
        name: "invoice_issuer_name",
        doc: "FOCUS InvoiceIssuerName (default: the provider)",
    },
];

/// A TOML error as "line L, column C: message", without the source line
/// that `toml`'s own text quotes (`smtp_url = "smtp://u:PASSWORD@..."`).
fn toml_error(text: &str, e: &toml::de::Error) -> String {
    let at = e.span().map(|s| s.start).unwrap_or(0);
    let before = text.get(..at).unwrap_or("");
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    // The key is named with its section (it is no secret); its value is
    // not quoted.
    let section = text
        .lines()
        .take(line - 1)
        .filter_map(|l| l.trim().strip_prefix('[').and_then(|l| l.strip_suffix(']')))
        .last()
        .map(|s| format!("{}.", s.trim()))
        .unwrap_or_default();
    let key = text
        .lines()
        .nth(line - 1)
        .and_then(|l| l.split_once('='))
        .map(|(k, _)| format!(" (key `{section}{}`)", k.trim()))
        .unwrap_or_default();
    format!(
        "line {line}, column {column}{key}: {}",
        crate::db::redact(e.message())
    )
}

impl Settings {
    /// Reads `file` (when given) and applies the environment's `TALLY_...`
    /// overrides from `env`, then checks the result.
    pub fn load(
        file: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, SettingsError> {
        let (origin, text) = match file {
            Some(p) => (
                p.display().to_string(),
                std::fs::read_to_string(p).map_err(|source| SettingsError::Read {
                    path: p.display().to_string(),
                    source,
                })?,
            ),
            None => ("defaults".to_owned(), String::new()),
        };
        let invalid = |origin: &str, message: String| SettingsError::Invalid {
            origin: origin.to_owned(),
            message,
        };
        // The file alone first: its errors then come with line, column and
        // key, but never the line itself (it may hold a password).
        toml::from_str::<Settings>(&text).map_err(|e| invalid(&origin, toml_error(&text, &e)))?;
        let mut table: toml::Table =
            toml::from_str(&text).map_err(|e| invalid(&origin, toml_error(&text, &e)))?;
        for key in KEYS {
            let var = key.env();
            let Some(raw) = env(&var) else { continue };
            // A number or boolean where the key is one; a string otherwise.
            let value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
                .ok()
                .and_then(|mut t| t.remove("v"))
                .filter(|v| !v.is_str())
                .unwrap_or(toml::Value::String(raw));
            let mut section = table
                .get(key.section)
                .and_then(toml::Value::as_table)
                .cloned()
                .unwrap_or_default();
            section.insert(key.name.to_owned(), value);
            let mut with = table.clone();
            with.insert(key.section.to_owned(), toml::Value::Table(section));
            // Each override is checked as it is applied, so an error names it.
            toml::Value::Table(with.clone())
                .try_into::<Settings>()
                .map_err(|e| {
                    invalid(
                        "environment",
                        format!("{var} ({}.{}): {}", key.section, key.name, e.message()),
                    )
                })?;
            table = with;
        }
        let settings: Settings = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| invalid(&origin, e.message().to_owned()))?;
        settings.check().map_err(|m| invalid(&origin, m))?;
        Ok(settings)
    }

    /// Checks what the types cannot.
    fn check(&self) -> Result<(), String> {
        crate::db::backend_of(self.database.url.expose()).map_err(|e| e.to_string())?;
        if self.database.pool_size == 0 {
            return Err("database.pool_size must be at least 1".to_owned());
        }
        if self.server.body_limit_mb == 0 {
            return Err("server.body_limit_mb must be at least 1".to_owned());
        }
        for (name, v) in [
            (
                "alerts.max_per_run",
                u64::try_from(self.alerts.max_per_run).unwrap_or(u64::MAX),
            ),
            ("server.header_timeout_s", self.server.header_timeout_s),
            ("body_idle_timeout_s", self.server.body_idle_timeout_s),
            (
                "uploads_per_token",
                u64::try_from(self.server.uploads_per_token).unwrap_or(u64::MAX),
            ),
        ] {
            if v == 0 {
                return Err(format!("server.{name} must be at least 1"));
            }
        }
        tracing_subscriber::EnvFilter::try_new(&self.log.level)
            .map_err(|e| format!("log.level `{}`: {e}", self.log.level))?;
        crate::mail::check(&self.email).map_err(|e| e.to_string())?;
        crate::mail::check_contact(&self.alerts.platform_contact)
            .map_err(|e| format!("alerts.platform_contact: {e}"))?;
        crate::mail::check_contact(&self.alerts.finance_contact)
            .map_err(|e| format!("alerts.finance_contact: {e}"))?;
        if self.focus.billing_account_id.trim().is_empty() {
            return Err("focus.billing_account_id must not be empty".to_owned());
        }
        if self.alerts.tieout_min_gap.is_sign_negative() {
            return Err("alerts.tieout_min_gap must not be negative".to_owned());
        }
        if self.alerts.unattributed_min_cost.is_sign_negative() {
            return Err("alerts.unattributed_min_cost must not be negative".to_owned());
        }
        Ok(())
    }

    /// How much of a period must pass before its burn rate may forecast.
    pub fn forecast_min_elapsed(&self) -> chrono::Duration {
        i64::try_from(self.alerts.forecast_min_elapsed_h)
            .ok()
            .and_then(chrono::Duration::try_hours)
            .unwrap_or(chrono::Duration::MAX)
    }

    /// The upload limit in bytes.
    pub fn body_limit(&self) -> usize {
        usize::try_from(self.server.body_limit_mb.saturating_mul(1 << 20)).unwrap_or(usize::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn write(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut f, text.as_bytes()).unwrap();
        f
    }

    #[test]
    fn the_example_file_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/tally.toml");
        let s = Settings::load(Some(&path), no_env).unwrap();
        assert_eq!(s.server.listen.to_string(), "127.0.0.1:8080");
    }

    #[test]
    fn every_key_is_in_the_readme_and_the_example_file() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
        let example = std::fs::read_to_string(root.join("fixtures/tally.toml")).unwrap();
        for k in KEYS {
            let row = format!("| `{}.{}` | `{}` |", k.section, k.name, k.env());
            assert!(readme.contains(&row), "README lacks {row}");
            assert!(
                example.contains(&format!("{} =", k.name)),
                "fixtures/tally.toml lacks {}.{}",
                k.section,
                k.name
            );
        }
    }

    #[test]
    fn unknown_keys_are_refused_with_their_name() {
        let f = write("[server]\nlisten = \"127.0.0.1:1\"\nlisen = 3\n");
        let e = Settings::load(Some(f.path()), no_env)
            .unwrap_err()
            .to_string();
        assert!(e.contains("lisen"), "{e}");
        let f = write("[sever]\n");
        let e = Settings::load(Some(f.path()), no_env)
            .unwrap_err()
            .to_string();
        assert!(e.contains("sever"), "{e}");
    }

    #[test]
    fn environment_overrides_the_file_with_typed_values() {
        let f = write("[server]\nlisten = \"127.0.0.1:1\"\nworkers = 1\n");
        let env = |k: &str| match k {
            "TALLY_SERVER_WORKERS" => Some("3".to_owned()),
            "TALLY_DATABASE_URL" => Some("postgres://u:hunter2@h/db".to_owned()),
            _ => None,
        };
        let s = Settings::load(Some(f.path()), env).unwrap();
        assert_eq!(s.server.workers, 3);
        assert_eq!(s.server.listen.to_string(), "127.0.0.1:1");
        assert_eq!(s.database.url.expose(), "postgres://u:hunter2@h/db");
        // The password never shows in what is printed.
        assert!(!format!("{s:?}").contains("hunter2"));
        let bad = |k: &str| (k == "TALLY_SERVER_WORKERS").then(|| "many".to_owned());
        let e = Settings::load(Some(f.path()), bad).unwrap_err().to_string();
        assert!(e.contains("TALLY_SERVER_WORKERS (server.workers)"), "{e}");
        // A wrong type in the file names its key and line.
        let f = write("[server]\nworkers = \"many\"\n");
        let e = Settings::load(Some(f.path()), no_env)
            .unwrap_err()
            .to_string();
        assert!(e.contains("workers") && e.contains("line 2"), "{e}");
    }

    #[test]
    fn email_settings_are_checked_and_the_smtp_password_never_printed() {
        let env = |k: &str| {
            (k == "TALLY_EMAIL_SMTP_URL")
                .then(|| "smtp://alerts:hunter2@mail.example.com:587".to_owned())
        };
        let s = Settings::load(None, env).unwrap();
        assert!(!format!("{s:?}").contains("hunter2"));
        for (text, key) in [
            (
                "[email]\nsmtp_url = \"http://mail.example.com\"\n",
                "smtp_url",
            ),
            ("[email]\nfrom = \"not an address\"\n", "not an address"),
            (
                "[schedule]\nquotas = \"every five minutes\"\n",
                "schedule.quotas",
            ),
            (
                "[alerts]\nunattributed_min_cost = \"ten\"\n",
                "unattributed_min_cost",
            ),
        ] {
            let f = write(text);
            let e = Settings::load(Some(f.path()), no_env)
                .unwrap_err()
                .to_string();
            assert!(e.contains(key), "{e}");
        }
    }

    #[test]
    fn values_become_runtime_values_once_and_defaults_parse() {
        let d = Settings::default();
        // Every default schedule but reconcile's (off) is a live schedule.
        for (name, job) in d.schedule.jobs() {
            assert_eq!(job.schedule().is_some(), name != "reconcile", "{name}");
        }
        let f = write(
            "[schedule]\nreconcile = \"0 15 * * * *\"\noutbox = \"\"\n\
             [alerts]\nunattributed_min_cost = \"0.25\"\n[server]\nlisten = \"0.0.0.0:9000\"\n",
        );
        let s = Settings::load(Some(f.path()), no_env).unwrap();
        assert!(s.schedule.reconcile.schedule().is_some());
        assert!(
            s.schedule.outbox.schedule().is_none(),
            "\"\" turns a job off"
        );
        assert_eq!(
            s.alerts.unattributed_min_cost,
            rust_decimal::Decimal::new(25, 2)
        );
        assert_eq!(s.server.listen.port(), 9000);
        // An override in the environment is parsed the same way.
        let env = |k: &str| (k == "TALLY_ALERTS_UNATTRIBUTED_MIN_COST").then(|| "1.5".to_owned());
        let s = Settings::load(None, env).unwrap();
        assert_eq!(
            s.alerts.unattributed_min_cost,
            rust_decimal::Decimal::new(15, 1)
        );
    }

    #[test]
    fn values_are_checked_at_load() {
        let f = write("[server]\nlisten = \"localhost\"\n");
        let e = Settings::load(Some(f.path()), no_env)
            .unwrap_err()
            .to_string();
        assert!(e.contains("server.listen"), "{e}");
        let f = write("[database]\nurl = \"mysql://x\"\n");
        assert!(Settings::load(Some(f.path()), no_env).is_err());
        let f = write("[database]\npool_size = 0\n");
        assert!(Settings::load(Some(f.path()), no_env).is_err());
    }
}
