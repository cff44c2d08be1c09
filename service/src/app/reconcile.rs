//! `tally reconcile`: files in, report out, no database.

use std::fs::File;
use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use rust_decimal::Decimal;
use tally_reconcile::keys::KeyRegistry;
use tally_reconcile::models::AliasTable;
use tally_reconcile::parse::client::{ClientFormat, read_client};
use tally_reconcile::parse::mapping::{Profile, choose, read_gateway};
use tally_reconcile::parse::peek;
use tally_reconcile::prices::PriceBook;
use tally_reconcile::report::{Settings, reconcile};
use tally_reconcile::{Side, SideKind, matching};

use crate::cli::{ClientFormatArg, OutputFormat, ReconcileArgs};
use crate::export;

/// Writes to standard output (a closed pipe is not an error worth a trace).
pub fn print(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("writing to standard output"),
    }
}

fn read_text(path: &Path, what: &str) -> Result<String> {
    std::fs::read_to_string(path)
        .with_context(|| format!("cannot read {what} `{}`", path.display()))
}

fn open(path: &Path, what: &str) -> Result<BufReader<File>> {
    let f = File::open(path).with_context(|| format!("cannot open {what} `{}`", path.display()))?;
    Ok(BufReader::with_capacity(1 << 20, f))
}

/// Loads the key registry: TOML, or CSV when the file ends in `.csv`.
pub fn load_keys(path: &Path) -> Result<KeyRegistry> {
    let name = path.display().to_string();
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"))
    {
        Ok(KeyRegistry::from_csv(open(path, "key registry")?, &name)?)
    } else {
        Ok(KeyRegistry::from_toml(
            &read_text(path, "key registry")?,
            &name,
        )?)
    }
}

/// Parses `1%` or `0.01`.
pub fn parse_ratio(s: &str) -> Result<Decimal> {
    let t = s.trim();
    let d = match t.strip_suffix('%') {
        Some(p) => p.trim().parse::<Decimal>().map(|d| d / Decimal::from(100)),
        None => t.parse::<Decimal>(),
    }
    .with_context(|| format!("`{t}` is not a ratio (e.g. 1% or 0.01)"))?;
    if d.is_sign_negative() {
        bail!("`{t}` is negative");
    }
    Ok(d)
}

/// The gateway profiles to try: the named one, or all built-ins.
pub fn profiles_for(source: Option<&str>) -> Result<Vec<Profile>> {
    let builtins = Profile::builtins().context("built-in profiles")?;
    let Some(src) = source else {
        return Ok(builtins);
    };
    if let Some(p) = builtins.iter().find(|p| p.name == src) {
        return Ok(vec![p.clone()]);
    }
    let path = PathBuf::from(src);
    if path.exists() {
        let text = read_text(&path, "mapping file")?;
        return Ok(vec![Profile::from_toml(
            &text,
            &path.display().to_string(),
        )?]);
    }
    bail!(
        "unknown source `{src}`: not a built-in ({}) and no such mapping file",
        builtins
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    )
}

fn read_clients(paths: &[PathBuf], format: Option<ClientFormatArg>) -> Result<Side> {
    let mut side = Side::new(SideKind::Client);
    let format = format.map(|f| match f {
        ClientFormatArg::Jsonl => ClientFormat::Jsonl,
        ClientFormatArg::Csv => ClientFormat::Csv,
    });
    for p in paths {
        read_client(
            open(p, "client log")?,
            &p.display().to_string(),
            format,
            &mut side,
        )?;
    }
    Ok(side)
}

fn read_gateways(paths: &[PathBuf], profiles: &[Profile], named: bool) -> Result<Side> {
    let mut side = Side::new(SideKind::Gateway);
    for p in paths {
        let name = p.display().to_string();
        let (head, reader) = peek(open(p, "gateway export")?, &name)?;
        let profile = match profiles.first() {
            Some(only) if named => only,
            _ => choose(profiles, &head, &name)?,
        };
        read_gateway(reader, &name, profile, &mut side)?;
    }
    Ok(side)
}

/// The wall clock, read once per command (the engine never reads it).
pub fn now_ms() -> Result<i64> {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .context("system clock is before 1970")?;
    Ok(i64::try_from(d.as_millis())?)
}

/// Phase timer for `--timings` (stderr, so reports on stdout stay clean).
struct Phases {
    on: bool,
    last: std::time::Instant,
}

impl Phases {
    fn lap(&mut self, what: &str) {
        if self.on {
            let now = std::time::Instant::now();
            let ms = now.duration_since(self.last).as_millis();
            let _ = writeln!(std::io::stderr(), "timing {what}: {ms} ms");
            self.last = now;
        }
    }
}

/// Runs `tally reconcile`.
pub fn run(args: &ReconcileArgs) -> Result<ExitCode> {
    let mut phases = Phases {
        on: args.timings,
        last: std::time::Instant::now(),
    };
    let now_ms = match &args.now {
        Some(s) => tally_reconcile::time::parse_iso(s, None)
            .map_err(|e| anyhow::anyhow!("--now `{s}`: {e}"))?,
        None => now_ms()?,
    };
    let tolerance_ms = tally_reconcile::time::parse_duration_ms(&args.tolerance)
        .map_err(|e| anyhow::anyhow!("--tolerance: {e}"))?;
    let settings = Settings {
        matching: matching::Params {
            tolerance_ms,
            ..matching::Params::default()
        },
        cost_tolerance_relative: parse_ratio(&args.cost_tolerance).context("--cost-tolerance")?,
        cost_tolerance_absolute: parse_ratio(&args.cost_tolerance_abs)
            .context("--cost-tolerance-abs")?,
    };
    let registry = args
        .keys
        .as_deref()
        .map(load_keys)
        .transpose()?
        .unwrap_or_default();
    let aliases = match &args.aliases {
        Some(p) => AliasTable::from_toml(&read_text(p, "alias table")?, &p.display().to_string())?,
        None => AliasTable::default(),
    };
    let prices = match &args.prices {
        Some(p) => PriceBook::from_toml(&read_text(p, "price catalog")?, &p.display().to_string())?,
        None => PriceBook::default(),
    };
    let profiles = profiles_for(args.source.as_deref())?;
    // The two sides are independent: parse them on two threads.
    let (client, gateway) = std::thread::scope(|s| {
        let c = s.spawn(|| read_clients(&args.client, args.client_format));
        let g = read_gateways(&args.gateway, &profiles, args.source.is_some());
        let c = c
            .join()
            .map_err(|_| anyhow::anyhow!("client parser panicked"))?;
        anyhow::Ok((c?, g?))
    })?;
    phases.lap("parse");
    if args.strict {
        let rejects: Vec<String> = client
            .rejects
            .iter()
            .chain(&gateway.rejects)
            .map(ToString::to_string)
            .collect();
        if !rejects.is_empty() {
            let shown = rejects
                .iter()
                .take(20)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n  ");
            bail!("--strict: {} rejected row(s):\n  {shown}", rejects.len());
        }
    }
    let rec = reconcile(&client, &gateway, &registry, &aliases, &prices, settings);
    phases.lap("match+classify");
    let summary = rec.summary(now_ms);
    phases.lap("summary");
    if let Some(dir) = &args.out {
        export::write_all(dir, &rec, &summary)?;
        phases.lap("export");
    }
    match args.format {
        OutputFormat::Table => {
            let mut text = export::render_table(&summary);
            if let Some(dir) = &args.out {
                text.push_str(&format!("\nReport written to {}\n", dir.display()));
            }
            print(&text)?;
        }
        OutputFormat::Json => print(&(serde_json::to_string_pretty(&summary)? + "\n"))?,
    }
    Ok(ExitCode::SUCCESS)
}
