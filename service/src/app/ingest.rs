//! `tally ingest`: files into the store, idempotently.
//!
//! A file is a batch, identified by the SHA-256 of its bytes: the same file
//! again adds nothing. Rows are identified by their dedup key (request id,
//! else content hash, plus the occurrence ordinal; see
//! [`tally_reconcile::identity`]), so an export overlapping an earlier one
//! adds only its new rows. Each batch is one transaction.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use tally_reconcile::identity::dedup_keys;
use tally_reconcile::parse::client::{ClientFormat, read_client};
use tally_reconcile::{Side, SideKind};
use tally_schema::convert::{new_usage_row, side_name};
use tally_schema::rows::{NewBatch, NewReject, NewUsageRow};

use crate::app::reconcile::{ReadPlan, read_side};
use crate::db::AnyConnection;
use crate::db::repo::{self, Stored};
use crate::progress::Progress;

/// What ingesting one file did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// File name as given.
    pub file: String,
    /// The batch holding it.
    pub batch_id: i64,
    /// Whether the same bytes had been ingested before (nothing was added).
    pub already: bool,
    /// Rows read (= new + duplicate + rejected).
    pub read: i64,
    /// Rows stored.
    pub new: i64,
    /// Rows already in the store.
    pub duplicate: i64,
    /// Rows refused (kept as rejects).
    pub rejected: i64,
    /// Format or gateway profile it was read as.
    pub source: String,
}

/// SHA-256 hex of a file's bytes, streamed; `read` is told the bytes
/// read so far.
pub fn file_sha256(path: &Path, read: &mut dyn FnMut(u64)) -> Result<String> {
    let mut f =
        std::fs::File::open(path).with_context(|| format!("cannot open `{}`", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = f
            .read(&mut buf)
            .with_context(|| format!("cannot read `{}`", path.display()))?;
        if n == 0 {
            break;
        }
        h.update(buf.get(..n).unwrap_or_default());
        total += u64::try_from(n).unwrap_or(0);
        read(total);
    }
    Ok(tally_reconcile::keys::hex(&h.finalize()))
}

/// Ingests one file of `kind` as one batch. Each row's source text is
/// kept whatever `plan` says: the store keeps every row's provenance.
///
/// `label` names the batch (the file name as the user gave it, or an
/// upload's name); `now` is the batch's ingest time (UTC), read once by the
/// caller.
pub fn ingest_file(
    conn: &mut AnyConnection,
    kind: SideKind,
    path: &Path,
    label: &str,
    plan: ReadPlan<'_>,
    now: chrono::NaiveDateTime,
) -> Result<Outcome> {
    let name = label.to_owned();
    let bytes = std::fs::metadata(path)
        .with_context(|| format!("cannot open `{name}`"))?
        .len();
    let mut progress = Progress::for_file(&name, bytes);
    let sha = file_sha256(path, &mut |n| progress.show("hashing bytes", n, bytes))?;
    let side_str = side_name(kind);
    // Same bytes as an earlier batch: no need to even parse.
    if let Some(b) = repo::batch_by_hash(conn, side_str, &sha)? {
        progress.finish();
        return Ok(already(&name, &b));
    }
    progress.show("parsing", 0, 0);
    let side = read_side(
        kind,
        &[PathBuf::from(path)],
        ReadPlan {
            keep_raw: true,
            ..plan
        },
    )?;
    store_side(conn, &side, &name, &sha, now, &mut progress)
}

/// Reads through to another reader, hashing and counting the bytes.
struct Hashing<R> {
    inner: R,
    hash: Sha256,
    bytes: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(buf.get(..n).unwrap_or_default());
        self.bytes += u64::try_from(n).unwrap_or(0);
        Ok(n)
    }
}

/// An upload with no bytes: nothing to store, not even an empty batch.
#[derive(Debug, thiserror::Error)]
#[error("the body is empty")]
pub struct EmptyBody;

/// Ingests client usage from `r` as its bytes arrive (an HTTP body): rows
/// are parsed while it is read, the bytes hashed on the way, and the batch
/// stored (or found already stored) once it ends. The same batch as
/// [`ingest_file`] would make of those bytes. A read error (a body over
/// its limit, a client gone) fails the whole batch before anything is
/// stored.
pub fn ingest_stream(
    conn: &mut AnyConnection,
    r: impl Read,
    format: ClientFormat,
    label: &str,
    now: chrono::NaiveDateTime,
) -> Result<Outcome> {
    let mut body = Hashing {
        inner: r,
        hash: Sha256::new(),
        bytes: 0,
    };
    let mut side = Side::keeping_raw(SideKind::Client);
    read_client(&mut body, label, Some(format), &mut side)?;
    if body.bytes == 0 {
        return Err(EmptyBody.into());
    }
    let sha = tally_reconcile::keys::hex(&body.hash.finalize());
    if let Some(b) = repo::batch_by_hash(conn, side_name(SideKind::Client), &sha)? {
        return Ok(already(label, &b));
    }
    store_side(
        conn,
        &side,
        label,
        &sha,
        now,
        &mut Progress::for_file(label, 0),
    )
}

/// Stores a parsed side as one batch named `name` with bytes hashing to
/// `sha`: its new rows, and its rejects (kept, never dropped).
fn store_side(
    conn: &mut AnyConnection,
    side: &Side,
    name: &str,
    sha: &str,
    now: chrono::NaiveDateTime,
    progress: &mut Progress<std::io::Stderr>,
) -> Result<Outcome> {
    let side_str = side_name(side.kind);
    let source = side
        .files
        .first()
        .map_or_else(String::new, |f| f.format.clone());
    let keys = dedup_keys(side);
    let (mut rows, extra_rejects) = new_rows(side, &keys)?;
    let mut rejects: Vec<NewReject<'_>> = side
        .rejects
        .iter()
        .map(|e| NewReject {
            side: side_str,
            batch_id: 0,
            line: i64::try_from(e.line).unwrap_or(i64::MAX),
            field: &e.field,
            reason: &e.reason,
            raw: &e.raw,
        })
        .collect();
    rejects.extend(extra_rejects.iter().map(|(line, reason, raw)| NewReject {
        side: side_str,
        batch_id: 0,
        line: *line,
        field: "cost",
        reason,
        raw,
    }));
    let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    let batch = NewBatch {
        side: side_str,
        source: &source,
        file_name: name,
        sha256: sha,
        ingested_at: now,
        rows_read: count(rows.len() + rejects.len()),
        rows_new: 0,
        rows_duplicate: 0,
        rows_rejected: count(rejects.len()),
    };
    let total = u64::try_from(rows.len()).unwrap_or(u64::MAX);
    let stored = repo::store_batch(conn, &batch, &mut rows, &rejects, &mut |n| {
        progress.show("storing rows", u64::try_from(n).unwrap_or(0), total);
    });
    progress.finish();
    match stored? {
        Stored::New(b) => Ok(Outcome {
            file: name.to_owned(),
            batch_id: b.id,
            already: false,
            read: b.rows_read,
            new: b.rows_new,
            duplicate: b.rows_duplicate,
            rejected: b.rows_rejected,
            source,
        }),
        Stored::Already(b) => Ok(already(name, &b)),
    }
}

fn already(name: &str, b: &tally_schema::rows::Batch) -> Outcome {
    Outcome {
        file: name.to_owned(),
        batch_id: b.id,
        already: true,
        read: b.rows_read,
        new: 0,
        duplicate: b.rows_read - b.rows_rejected,
        rejected: b.rows_rejected,
        source: b.source.clone(),
    }
}

/// Rows to insert, and the rows that cannot be stored as they are (line,
/// reason, raw text): they become rejects rather than being rounded.
#[expect(clippy::type_complexity, reason = "a private pair of result lists")]
fn new_rows<'a>(
    side: &'a Side,
    keys: &'a [String],
) -> Result<(Vec<NewUsageRow<'a>>, Vec<(i64, String, &'a str)>)> {
    let mut rows = Vec::with_capacity(side.rows.len());
    let mut bad = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let raw = side.raw(i).unwrap_or("");
        match new_usage_row(side, i, 0, key, raw) {
            Some(Ok(r)) => rows.push(r),
            Some(Err(e)) => {
                let line = side.rows.get(i).map_or(0, |r| i64::from(r.line));
                bad.push((line, e.to_string(), raw));
            }
            None => anyhow::bail!("internal error: row {i} has no dedup key"),
        }
    }
    Ok((rows, bad))
}

/// Runs `tally ingest client|gateway`: one batch per file, a line of counts
/// per file. Exits non-zero only when a file cannot be read or stored; bad
/// rows are counted and kept as rejects.
pub fn run_cli(cmd: &crate::cli::IngestCommand) -> Result<std::process::ExitCode> {
    use crate::cli::IngestCommand;
    let (kind, files, store, client_format, source) = match cmd {
        IngestCommand::Client(a) => (
            SideKind::Client,
            &a.files,
            &a.store,
            a.client_format.map(crate::cli::ClientFormatArg::format),
            None,
        ),
        IngestCommand::Gateway(a) => (
            SideKind::Gateway,
            &a.files,
            &a.store,
            None,
            a.source.as_deref(),
        ),
    };
    let profiles = crate::app::reconcile::profiles_for(source)?;
    let mut conn = crate::db::open(&store.db, store.no_migrate)?;
    let now_ms = crate::app::reconcile::now_ms()?;
    let now = tally_schema::convert::naive_from_ms(now_ms)?;
    let mut out = String::new();
    let mut added = 0;
    for path in files {
        let plan = ReadPlan {
            client_format,
            profiles: &profiles,
            named: source.is_some(),
            min_split_bytes: crate::app::split::MIN_SPLIT_BYTES,
            keep_raw: true,
        };
        let o = ingest_file(
            &mut conn,
            kind,
            path,
            &path.display().to_string(),
            plan,
            now,
        )?;
        out.push_str(&describe(&o));
        added += o.new;
    }
    if added > 0 {
        let settings = crate::cli::load_settings(None)?;
        out.push_str(&crate::app::schedule::after_ingest(
            &mut conn,
            &settings,
            crate::cli::utc_now()?,
        ));
    }
    crate::app::reconcile::print(&out)?;
    Ok(std::process::ExitCode::SUCCESS)
}

/// One line per file: `read = new + duplicate + rejected`.
pub fn describe(o: &Outcome) -> String {
    let what = if o.already {
        format!(
            "already ingested as batch {} (same bytes): nothing added",
            o.batch_id
        )
    } else {
        format!("batch {}", o.batch_id)
    };
    format!(
        "{}: {} read = {} new + {} duplicate + {} rejected ({}; {})\n",
        o.file, o.read, o.new, o.duplicate, o.rejected, o.source, what
    )
}
