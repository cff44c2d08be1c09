//! `tally reconcile`: files in, report out, no database.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use rust_decimal::Decimal;
use std::sync::{Arc, Mutex};
use tally_reconcile::keys::KeyRegistry;
use tally_reconcile::models::AliasTable;
use tally_reconcile::parse::client::{ClientFormat, read_client};

use tally_reconcile::parse::mapping::{Encoding, Profile, ProfileSide, choose, names, read_mapped};
use tally_reconcile::parse::peek;
use tally_reconcile::prices::PriceBook;
use tally_reconcile::report::{EngineSettings, reconcile};
use tally_reconcile::{Side, SideKind};

use crate::app::error::{AppError, AppResult as Result, Context, refuse};
use crate::app::split;
use crate::export;

/// Reads a whole small input (catalog, registry, mapping), naming it in
/// the error.
pub(crate) fn read_text(path: &Path, what: &str) -> Result<String> {
    std::fs::read_to_string(path).or_invalid(|| format!("cannot read {what} `{}`", path.display()))
}

/// Opens an input for streaming, naming it in the error.
pub(crate) fn open(path: &Path, what: &str) -> Result<BufReader<File>> {
    open_as(path, &path.display().to_string(), what)
}

/// [`open`], naming the input `name` (an upload's name, not the server's
/// temporary file).
fn open_as(path: &Path, name: &str, what: &str) -> Result<BufReader<File>> {
    let f = File::open(path).or_invalid(|| format!("cannot open {what} `{name}`"))?;
    Ok(BufReader::with_capacity(1 << 20, f))
}

/// Whether a path ends in `.ext` (any case): CSV and JSON variants of an
/// input are told apart by it.
pub(crate) fn has_ext(path: &Path, ext: &str) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case(ext))
}

/// Loads the key registry: LiteLLM's key table (recognised by its columns;
/// teams named through its team table `teams` when given), TOML, or CSV
/// when the file ends in `.csv`.
pub fn load_keys(path: &Path, teams: Option<&Path>) -> Result<KeyRegistry> {
    use tally_reconcile::gateway_keys::{
        is_litellm_keys, is_openrouter_keys, litellm_keys, litellm_teams, openrouter_keys,
    };
    let name = path.display().to_string();
    let text = read_text(path, "key registry")?;
    if is_openrouter_keys(text.as_bytes()) {
        if teams.is_some() {
            refuse!("--teams goes with LiteLLM's key table; `{name}` is OpenRouter's key list");
        }
        return Ok(KeyRegistry::new(openrouter_keys(&text, &name)?, &name)?);
    }
    if is_litellm_keys(text.as_bytes()) {
        let teams = match teams {
            Some(t) => litellm_teams(&read_text(t, "team table")?, &t.display().to_string())?,
            None => Default::default(),
        };
        return Ok(KeyRegistry::new(
            litellm_keys(&text, &name, &teams)?,
            &name,
        )?);
    }
    if teams.is_some() {
        refuse!("--teams goes with LiteLLM's key table; `{name}` is a registry of Tally's own");
    }
    if has_ext(path, "csv") {
        Ok(KeyRegistry::from_csv(open(path, "key registry")?, &name)?)
    } else {
        Ok(KeyRegistry::from_toml(
            &read_text(path, "key registry")?,
            &name,
        )?)
    }
}

/// Reads a price catalog for a one-shot reconcile: Tally's TOML, or
/// LiteLLM's price map (`.json`), which has no dates and so needs
/// `effective_from` (refused without: today's date would leave every past
/// row unpriced and every owner at $0).
pub fn load_prices(path: &Path, effective_from: Option<&str>) -> Result<PriceBook> {
    let name = path.display().to_string();
    let text = read_text(path, "price catalog")?;
    if has_ext(path, "json") {
        let Some(from) = effective_from else {
            refuse!(
                "`{name}` is LiteLLM's price map, which has no dates: say from when its prices \
                 apply with --prices-effective-from YYYY-MM-DD (on or before the rows' first day)"
            );
        };
        let from_ms = tally_reconcile::time::parse_date_or_iso(from)
            .or_invalid(|| format!("--prices-effective-from `{from}`"))?;
        return Ok(PriceBook::from_litellm_json(&text, &name, from_ms)?.0);
    }
    if effective_from.is_some() {
        refuse!(
            "--prices-effective-from goes with LiteLLM's price map; `{name}` dates its own prices"
        );
    }
    Ok(PriceBook::from_toml(&text, &name)?)
}

/// Parses `1%` or `0.01`.
pub fn parse_ratio(s: &str) -> Result<Decimal> {
    let t = s.trim();
    let d = match t.strip_suffix('%') {
        Some(p) => p.trim().parse::<Decimal>().map(|d| d / Decimal::from(100)),
        None => t.parse::<Decimal>(),
    }
    .or_invalid(|| format!("`{t}` is not a ratio (e.g. 1% or 0.01)"))?;
    if d.is_sign_negative() {
        refuse!("`{t}` is negative");
    }
    Ok(d)
}

/// The gateway profiles to try: the named one, or all built-ins.
pub fn profiles_for(source: Option<&str>) -> Result<Vec<Profile>> {
    let builtins = Profile::builtins().or_internal(|| "built-in profiles")?;
    named_profile(source, builtins, ProfileSide::Gateway)
}

/// The client-log profiles to try: the named one, or all built-ins (Tally's
/// own format is tried after them).
pub fn client_profiles_for(source: Option<&str>) -> Result<Vec<Profile>> {
    let builtins = Profile::client_builtins().or_internal(|| "built-in client profiles")?;
    named_profile(source, builtins, ProfileSide::Client)
}

fn named_profile(
    source: Option<&str>,
    builtins: Vec<Profile>,
    side: ProfileSide,
) -> Result<Vec<Profile>> {
    let (flag, other_flag) = match side {
        ProfileSide::Gateway => ("--source", "--client-source"),
        ProfileSide::Client => ("--client-source", "--source"),
    };
    let Some(src) = source else {
        return Ok(builtins);
    };
    if let Some(p) = builtins.iter().find(|p| p.name == src) {
        return Ok(vec![p.clone()]);
    }
    let path = PathBuf::from(src);
    if path.exists() {
        let text = read_text(&path, "mapping file")?;
        let p = Profile::from_toml(&text, &path.display().to_string())?;
        if p.side != side {
            let (what, name) = match p.side {
                ProfileSide::Client => ("client log", "client"),
                ProfileSide::Gateway => ("gateway export", "gateway"),
            };
            refuse!(
                "mapping file `{src}` describes a {what} (side = \"{name}\"): give it with {other_flag}"
            );
        }
        return Ok(vec![p]);
    }
    refuse!(
        "unknown {flag} `{src}`: not a built-in ({}) and no such mapping file",
        names(&builtins)
    )
}

/// What a parse job reads its part as.
#[derive(Clone)]
enum Reader {
    /// Tally's own client log.
    Client(Option<ClientFormat>),
    /// A gateway export or a client log through a mapping profile.
    Mapped(Profile),
}

/// One part of one input file.
struct Job {
    side: SideKind,
    file: usize,
    part: usize,
    path: PathBuf,
    /// How messages name the file.
    name: String,
    header: Arc<Vec<u8>>,
    range: split::Part,
    reader: Reader,
    /// Keep each accepted row's source text (the store does; a one-shot
    /// reconcile does not need it).
    keep_raw: bool,
}

/// How one side's files are to be read.
#[derive(Clone, Copy)]
pub struct ReadPlan<'a> {
    /// Client log encoding, detected when `None`.
    pub client_format: Option<ClientFormat>,
    /// Gateway profiles to choose from.
    pub profiles: &'a [Profile],
    /// Whether the user named the source (then `profiles` is that one).
    pub named: bool,
    /// Client-log profiles to choose from before Tally's own format.
    pub client_profiles: &'a [Profile],
    /// Whether the user named the client source (then `client_profiles`
    /// is that one).
    pub client_named: bool,
    /// Files at least this large are parsed in parts.
    pub min_split_bytes: u64,
    /// Keep each accepted row's source text ([`Side::raws`]).
    pub keep_raw: bool,
}

/// How a file read through a profile is cut into parts.
fn mapped_reader(profile: Profile) -> (Reader, Option<split::Layout>) {
    let layout = match profile.format {
        Encoding::Csv => Some(split::Layout::Csv),
        Encoding::Jsonl | Encoding::Otlp => Some(split::Layout::Lines),
        // One JSON document: read whole.
        Encoding::Json => None,
    };
    (Reader::Mapped(profile), layout)
}

/// A client log Tally cannot place: name the built-in client sources too.
fn with_client_sources(
    e: tally_reconcile::Error,
    client_profiles: &[Profile],
) -> tally_reconcile::Error {
    match e {
        tally_reconcile::Error::UnknownFormat { file, detail } if !client_profiles.is_empty() => {
            tally_reconcile::Error::UnknownFormat {
                file,
                detail: format!(
                    "{detail}, nor a known client source ({}); describe it with a mapping \
                     file and --client-source FILE",
                    names(client_profiles)
                ),
            }
        }
        other => other,
    }
}

/// Plans the parse jobs of one side: CSV files large enough are cut in two.
fn plan_side(side: SideKind, paths: &[PathBuf], plan: ReadPlan<'_>) -> Result<Vec<Job>> {
    plan_parts(side, paths, plan, None, None)
}

/// Plans the parse jobs of one side: with `part_bytes`, each line-based
/// file is cut into parts of about that size; without, files large enough
/// are cut in two (one per core).
fn plan_parts(
    side: SideKind,
    paths: &[PathBuf],
    plan: ReadPlan<'_>,
    part_bytes: Option<u64>,
    label: Option<&str>,
) -> Result<Vec<Job>> {
    let ReadPlan {
        client_format,
        profiles,
        named,
        client_profiles,
        client_named,
        min_split_bytes: min_bytes,
        keep_raw,
    } = plan;
    let what = match side {
        SideKind::Client => "client log",
        SideKind::Gateway => "gateway export",
    };
    let mut jobs = Vec::new();
    for (file, path) in paths.iter().enumerate() {
        // Messages name the file as the user knows it.
        let name = label.map_or_else(|| path.display().to_string(), str::to_owned);
        let (head, _) = peek(open_as(path, &name, what)?, &name)?;
        let (reader, layout) = match side {
            SideKind::Client => {
                let mapped = match client_profiles.first() {
                    Some(only) if client_named => Some(only.clone()),
                    _ if client_format.is_some() => None,
                    _ => client_profiles.iter().find(|p| p.matches(&head)).cloned(),
                };
                match mapped {
                    Some(profile) => mapped_reader(profile),
                    None => {
                        let f = match client_format {
                            Some(f) => f,
                            None => tally_reconcile::parse::client::detect_or_refuse(&head, &name)
                                .map_err(|e| with_client_sources(e, client_profiles))?,
                        };
                        let layout = match f {
                            ClientFormat::Csv => split::Layout::Csv,
                            ClientFormat::Jsonl => split::Layout::Lines,
                        };
                        (Reader::Client(Some(f)), Some(layout))
                    }
                }
            }
            SideKind::Gateway => {
                let profile = match profiles.first() {
                    Some(only) if named => only.clone(),
                    _ => choose(profiles, &head, &name)?.clone(),
                };
                mapped_reader(profile)
            }
        };
        let (parts, min_bytes) = match part_bytes {
            Some(b) => {
                let len = std::fs::metadata(path)
                    .or_invalid(|| format!("cannot read {what} `{name}`"))?
                    .len();
                (len.div_ceil(b.max(1)).max(1), 0)
            }
            None => (2, min_bytes),
        };
        let (header, parts) = match layout {
            Some(layout) => split::plan(path, parts, layout, min_bytes)
                .or_invalid(|| format!("cannot read {what} `{name}`"))?,
            None => {
                let len = std::fs::metadata(path)
                    .or_invalid(|| format!("cannot read {what} `{name}`"))?
                    .len();
                (Vec::new(), vec![split::Part { start: 0, end: len }])
            }
        };
        let header = Arc::new(header);
        for (part, range) in parts.into_iter().enumerate() {
            jobs.push(Job {
                side,
                file,
                part,
                path: path.clone(),
                name: name.clone(),
                header: Arc::clone(&header),
                range,
                reader: reader.clone(),
                keep_raw,
            });
        }
    }
    Ok(jobs)
}

fn run_job(job: &Job) -> Result<Side> {
    let name = job.name.clone();
    let r = split::open_part(&job.path, &job.header, &job.range)
        .or_invalid(|| format!("cannot read `{name}`"))?;
    let mut side = if job.keep_raw {
        Side::keeping_raw(job.side)
    } else {
        Side::new(job.side)
    };
    match &job.reader {
        Reader::Client(f) => {
            read_client(r, &name, *f, &mut side)?;
        }
        Reader::Mapped(p) => read_mapped(r, &name, p, &mut side)?,
    }
    Ok(side)
}

/// Parses both sides: every file part is a job, run largest first on as
/// many workers as cores, then merged in file and part order.
fn read_sides(args: &ReconcileRequest, profiles: &[Profile]) -> Result<(Side, Side)> {
    let client_profiles = client_profiles_for(args.client_source.as_deref())?;
    let plan = ReadPlan {
        client_format: args.client_format,
        profiles,
        named: args.source.is_some(),
        client_profiles: &client_profiles,
        client_named: args.client_source.is_some(),
        min_split_bytes: args.split_min_bytes,
        keep_raw: false,
    };
    let (cj, gj) = std::thread::scope(|s| {
        let c = s.spawn(|| plan_side(SideKind::Client, &args.client, plan));
        let g = plan_side(SideKind::Gateway, &args.gateway, plan);
        (
            c.join()
                .map_err(|_| AppError::Internal("planning panicked".to_owned())),
            g,
        )
    });
    let jobs: Vec<Job> = cj??.into_iter().chain(gj?).collect();
    let (client, gateway) = parse_jobs(jobs)?;
    let expected = |paths: &[PathBuf]| paths.len();
    if client.files.len() != expected(&args.client)
        || gateway.files.len() != expected(&args.gateway)
    {
        return Err(AppError::Internal(
            "a file's parts were not all parsed".to_owned(),
        ));
    }
    Ok((client, gateway))
}

/// Why a part of a file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PartError {
    /// A file cut into parts had a cut inside a quoted CSV field (a record
    /// spanning lines there): it must be read whole.
    #[error("a part of the file ended inside a quoted field")]
    CutInQuotes,
    /// The part could not be read or parsed.
    #[error(transparent)]
    Failed(#[from] AppError),
}

/// One file's parts, parsed one at a time as they are asked for, each with
/// its real line numbers (see [`parts`]).
pub struct Parts {
    jobs: std::iter::Enumerate<std::vec::IntoIter<Job>>,
    last: usize,
    lines_before: u64,
    failed: bool,
}

/// The parts of one file of about `part_bytes` each, parsed lazily: only
/// the part being read is in memory. JSON documents are one part. A part
/// fails with [`PartError::CutInQuotes`] (after the parts before it) when a CSV cut
/// fell inside a quoted field; the caller then reads the file whole.
pub fn parts(
    kind: SideKind,
    path: &Path,
    label: &str,
    plan: ReadPlan<'_>,
    part_bytes: u64,
) -> Result<Parts> {
    let jobs = plan_parts(
        kind,
        &[path.to_path_buf()],
        plan,
        Some(part_bytes),
        Some(label),
    )?;
    Ok(Parts {
        last: jobs.len().saturating_sub(1),
        jobs: jobs.into_iter().enumerate(),
        lines_before: 0,
        failed: false,
    })
}

impl Iterator for Parts {
    type Item = std::result::Result<Side, PartError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let (k, job) = self.jobs.next()?;
        let part = (|| {
            let mut side = run_job(&job)?;
            let (lines, open_quote) = side
                .files
                .first()
                .map_or((0, false), |f| (f.lines, f.open_quote_at_end));
            if open_quote && k < self.last {
                return Err(PartError::CutInQuotes);
            }
            // As in `merge_parts`: a later part numbers its header copy line 1.
            if job.part == 0 {
                self.lines_before = lines;
            } else {
                let header_lines = u64::from(!job.header.is_empty());
                side.shift_lines(
                    u32::try_from(self.lines_before.saturating_sub(header_lines))
                        .unwrap_or(u32::MAX),
                );
                self.lines_before += lines.saturating_sub(header_lines);
            }
            Ok(side)
        })();
        self.failed = part.is_err();
        Some(part)
    }
}

/// Parses one side's files (the store's ingest reads one file at a time).
pub fn read_side(kind: SideKind, paths: &[PathBuf], plan: ReadPlan<'_>) -> Result<Side> {
    let (client, gateway) = parse_jobs(plan_side(kind, paths, plan)?)?;
    let side = match kind {
        SideKind::Client => client,
        SideKind::Gateway => gateway,
    };
    if side.files.len() != paths.len() {
        return Err(AppError::Internal(
            "a file's parts were not all parsed".to_owned(),
        ));
    }
    Ok(side)
}

/// Runs parse jobs largest first on as many workers as cores, then merges
/// the parts of each file in order.
fn parse_jobs(mut jobs: Vec<Job>) -> Result<(Side, Side)> {
    // Largest last, so workers pop the largest first.
    jobs.sort_by_key(|j| j.range.end - j.range.start);
    let keep_raw = jobs.iter().any(|j| j.keep_raw);
    let queue = Mutex::new(jobs);
    let done: Mutex<Vec<(Job, Result<Side>)>> = Mutex::new(Vec::new());
    let workers = std::thread::available_parallelism()
        .map_or(2, usize::from)
        .clamp(1, 8);
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                loop {
                    let job = match queue.lock() {
                        Ok(mut q) => q.pop(),
                        Err(_) => None,
                    };
                    let Some(job) = job else { break };
                    let result = run_job(&job);
                    if let Ok(mut d) = done.lock() {
                        d.push((job, result));
                    }
                }
            });
        }
    });
    let mut done = done
        .into_inner()
        .map_err(|_| AppError::Internal("a parser panicked".to_owned()))?;
    done.sort_by_key(|(j, _)| (j.side == SideKind::Gateway, j.file, j.part));
    let empty = |kind| {
        if keep_raw {
            Side::keeping_raw(kind)
        } else {
            Side::new(kind)
        }
    };
    let mut client = empty(SideKind::Client);
    let mut gateway = empty(SideKind::Gateway);
    let mut done = done.into_iter().peekable();
    while let Some((first, result)) = done.next() {
        let (side, file) = (first.side, first.file);
        let mut parts = vec![(first, result)];
        while let Some((job, result)) = done.next_if(|(j, _)| (j.side, j.file) == (side, file)) {
            parts.push((job, result));
        }
        let target = match side {
            SideKind::Client => &mut client,
            SideKind::Gateway => &mut gateway,
        };
        merge_parts(target, parts)?;
    }
    Ok((client, gateway))
}

/// Joins one file's parts into `target`, in order. A cut is speculative
/// (see [`split`]): if a part before the last ended inside a quoted field,
/// the cut split a record, and the file is parsed again whole.
fn merge_parts(target: &mut Side, parts: Vec<(Job, Result<Side>)>) -> Result<()> {
    let before_last = parts.len().saturating_sub(1);
    let cut_in_quotes = parts.iter().take(before_last).any(|(_, r)| {
        r.as_ref()
            .is_ok_and(|s| s.files.first().is_some_and(|f| f.open_quote_at_end))
    });
    let parts: Vec<(Job, Side)> = if cut_in_quotes {
        // What the later parts made of a record's middle is thrown away,
        // errors included.
        let Some((mut job, _)) = parts.into_iter().next() else {
            return Ok(());
        };
        let len = std::fs::metadata(&job.path)
            .or_invalid(|| format!("cannot read `{}`", job.name))?
            .len();
        job.range = split::Part { start: 0, end: len };
        let whole = run_job(&job)?;
        vec![(job, whole)]
    } else {
        parts
            .into_iter()
            .map(|(job, r)| r.map(|side| (job, side)))
            .collect::<Result<_>>()?
    };
    // Parsed alone, a later part numbers its header copy line 1 (CSV) and
    // its first row from there; its rows really come after every line of
    // the parts before it.
    let mut lines_before = 0u64;
    for (job, part) in parts {
        let lines = part.files.first().map_or(0, |f| f.lines);
        if job.part == 0 {
            target.append(part);
            lines_before = lines;
        } else {
            let header_lines = u64::from(!job.header.is_empty());
            let shift =
                u32::try_from(lines_before.saturating_sub(header_lines)).unwrap_or(u32::MAX);
            target.append_continuation(part, shift);
            lines_before += lines.saturating_sub(header_lines);
        }
    }
    Ok(())
}

/// Engine settings from the tolerance flags (or API fields): each one left
/// out keeps the engine's own default (`report::EngineSettings::default()`:
/// 2 s, 1 %, $0.000001), the one place those defaults live.
pub fn settings(
    tolerance: Option<&str>,
    cost_tolerance: Option<&str>,
    cost_tolerance_abs: Option<&str>,
) -> Result<EngineSettings> {
    let mut s = EngineSettings::default();
    if let Some(t) = tolerance {
        s.matching.tolerance_ms =
            tally_reconcile::time::parse_duration_ms(t).or_invalid(|| "--tolerance")?;
    }
    if let Some(r) = cost_tolerance {
        s.cost_tolerance_relative = parse_ratio(r).or_invalid(|| "--cost-tolerance")?;
    }
    if let Some(a) = cost_tolerance_abs {
        s.cost_tolerance_absolute = parse_ratio(a).or_invalid(|| "--cost-tolerance-abs")?;
    }
    Ok(s)
}

/// A file none of whose rows could be read is not a day with no traffic:
/// every request would read as missing. Fail, saying what the file has.
fn refuse_unreadable_files(client: &Side, gateway: &Side) -> Result<()> {
    let sources = client_sources();
    let refused: Vec<String> = [client, gateway]
        .into_iter()
        .flat_map(|side| {
            tally_reconcile::parse::hint::all_rejected(side)
                .map(|f| tally_reconcile::parse::hint::explain(side, f, &sources))
        })
        .collect();
    if refused.is_empty() {
        Ok(())
    } else {
        refuse!("{}", refused.join("\n"))
    }
}

/// The built-in client sources' names, for messages (no profile parsed).
pub fn client_sources() -> String {
    tally_reconcile::parse::mapping::BUILTIN_CLIENT
        .iter()
        .map(|(name, _)| *name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A one-shot reconciliation of files, as `tally reconcile` asks for it.
#[derive(Debug, Clone)]
pub struct ReconcileRequest {
    /// Client logs.
    pub client: Vec<PathBuf>,
    /// Gateway exports.
    pub gateway: Vec<PathBuf>,
    /// Key registry (Tally's, LiteLLM's key table, OpenRouter's key list).
    pub keys: Option<PathBuf>,
    /// LiteLLM's team table, with its key table.
    pub teams: Option<PathBuf>,
    /// Price catalog.
    pub prices: Option<PathBuf>,
    /// From when a LiteLLM price map's prices apply.
    pub prices_effective_from: Option<String>,
    /// Model alias table.
    pub aliases: Option<PathBuf>,
    /// Gateway source (built-in name or mapping file); detected when none.
    pub source: Option<String>,
    /// Client source (built-in client profile or mapping file).
    pub client_source: Option<String>,
    /// Tally's own client format, detected when none.
    pub client_format: Option<ClientFormat>,
    /// Matching and cost tolerances.
    pub engine: EngineSettings,
    /// Where to write the report files.
    pub out: Option<PathBuf>,
    /// Whether to write matches.csv (every pair).
    pub with_matches: bool,
    /// Whether any rejected row is fatal.
    pub strict: bool,
    /// Files at least this large are parsed in parts.
    pub split_min_bytes: u64,
    /// The report's "generated at", UTC ms.
    pub now_ms: i64,
}

/// Reconciles files into a summary (and the report files when asked);
/// `lap` is told when each phase ends, for timings.
pub fn reconcile_files(
    req: &ReconcileRequest,
    lap: &mut dyn FnMut(&str),
) -> Result<tally_reconcile::report::Summary> {
    let registry = req
        .keys
        .as_deref()
        .map(|p| load_keys(p, req.teams.as_deref()))
        .transpose()?
        .unwrap_or_default();
    let aliases = match &req.aliases {
        Some(p) => AliasTable::from_toml(&read_text(p, "alias table")?, &p.display().to_string())?,
        None => AliasTable::default(),
    };
    let prices = match &req.prices {
        Some(p) => load_prices(p, req.prices_effective_from.as_deref())?,
        None => PriceBook::default(),
    };
    let profiles = profiles_for(req.source.as_deref())?;
    let (client, gateway) = read_sides(req, &profiles)?;
    lap("parse");
    refuse_unreadable_files(&client, &gateway)?;
    if req.strict {
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
            refuse!("--strict: {} rejected row(s):\n  {shown}", rejects.len());
        }
    }
    let rec = reconcile(
        &client,
        &gateway,
        &registry,
        &aliases,
        &prices,
        req.engine.clone(),
    );
    lap("match+classify");
    Ok(match &req.out {
        Some(dir) => {
            let summary =
                export::write_all(dir, &rec, req.with_matches, || rec.summary(req.now_ms))?;
            lap("summary+export");
            summary
        }
        None => {
            let summary = rec.summary(req.now_ms);
            lap("summary");
            summary
        }
    })
}
