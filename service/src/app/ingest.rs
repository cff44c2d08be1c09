//! `tally ingest`: files into the store, idempotently.
//!
//! A file is a batch, identified by the SHA-256 of its bytes: the same file
//! again adds nothing. Rows are identified by their dedup key (request id,
//! else content hash, plus the occurrence ordinal; see
//! [`tally_reconcile::identity`]), so an export overlapping an earlier one
//! adds only its new rows. Each batch is one transaction.

use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};
use tally_reconcile::identity::Ordinals;
use tally_reconcile::{Side, SideKind};
use tally_schema::convert::new_usage_row;
use tally_schema::rows::{NewBatch, NewReject, NewUsageRow};

use crate::app::error::AppError;
use crate::app::reconcile::{PartError, ReadPlan, parts};
use crate::db::repo::{self, Stored};
use crate::db::{AnyConnection, DbError};
use tally_schema::enums::EnumCol;

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
    /// Stored rows whose request id the side also has on another UTC day:
    /// kept as rows of their own (ids are unique per day, not forever).
    pub id_reused: i64,
    /// Format or gateway profile it was read as.
    pub source: String,
}

/// Why an ingest stored nothing.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The input: unreadable, of no known format, or with no readable row.
    /// The message names the file as the caller named it (never a
    /// server's temporary file), and the line and field where there is one.
    #[error("{0}")]
    Input(String),
    /// The store.
    #[error(transparent)]
    Store(#[from] DbError),
    /// Anything else (a worker thread that died, stored data that cannot
    /// be read back).
    #[error(transparent)]
    Other(AppError),
}

impl From<IngestError> for AppError {
    fn from(e: IngestError) -> Self {
        match e {
            IngestError::Input(m) => AppError::Invalid(m),
            IngestError::Store(e) => AppError::Store(e),
            IngestError::Other(e) => e,
        }
    }
}

impl From<AppError> for IngestError {
    fn from(e: AppError) -> Self {
        match e {
            AppError::Invalid(m) => IngestError::Input(m),
            AppError::Store(e) => IngestError::Store(e),
            other => IngestError::Other(other),
        }
    }
}

/// An ingest step's failure, before it is told apart for the caller.
enum Failed {
    Input(PartError),
    Store(DbError),
}

/// Where an ingest is, for whatever display the caller supplies (the
/// command line draws a progress line; the server shows nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Hashing the file: bytes read so far, of the total.
    Hashing {
        /// Bytes read.
        done: u64,
        /// The file's size.
        total: u64,
    },
    /// Storing rows: how many so far.
    Storing {
        /// Rows stored.
        rows: u64,
    },
    /// Done, stored or not.
    Finished,
}

/// SHA-256 hex of a file's bytes, streamed; `read` is told the bytes
/// read so far. The caller names the file in its error.
pub fn file_sha256(path: &Path, read: &mut dyn FnMut(u64)) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(buf.get(..n).unwrap_or_default());
        total += u64::try_from(n).unwrap_or(0);
        read(total);
    }
    Ok(tally_reconcile::keys::hex(&h.finalize()))
}

/// Bytes of a file parsed and stored at a time: what bounds an ingest's
/// memory, whatever the file's size (issue 16: a 200 MB push once took
/// 933 MB). Large enough that per-part costs do not show.
pub const PART_BYTES: u64 = 2 << 20;

/// Ingests one file of `kind` as one batch, in parts of [`PART_BYTES`]
/// (see [`repo::store_batch_parts`]). Each row's source text is kept
/// whatever `plan` says: the store keeps every row's provenance.
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
    progress: &mut dyn FnMut(Step),
) -> Result<Outcome, IngestError> {
    let name = label.to_owned();
    let unreadable = |e: std::io::Error| IngestError::Input(format!("cannot read `{name}`: {e}"));
    let bytes = std::fs::metadata(path).map_err(unreadable)?.len();
    let sha = file_sha256(path, &mut |n| {
        progress(Step::Hashing {
            done: n,
            total: bytes,
        });
    })
    .map_err(unreadable)?;
    // Same bytes as an earlier batch: no need to even parse.
    if let Some(b) = repo::batch_by_hash(conn, kind, &sha)? {
        progress(Step::Finished);
        return Ok(already(&name, &b));
    }
    let plan = ReadPlan {
        keep_raw: true,
        ..plan
    };
    let mut store = |part_bytes| {
        store_in_parts(
            conn,
            kind,
            path,
            &name,
            &sha,
            plan,
            now,
            part_bytes,
            &mut *progress,
        )
    };
    let stored = match store(PART_BYTES) {
        // A CSV record with a newline inside quotes straddled a cut: the
        // transaction was rolled back; read the file as one part.
        Err(Failed::Input(PartError::CutInQuotes)) => store(u64::MAX),
        other => other,
    };
    progress(Step::Finished);
    let stored = stored.map_err(|e| match e {
        Failed::Store(e) => IngestError::Store(e),
        Failed::Input(PartError::Failed(e)) => e.into(),
        Failed::Input(e @ PartError::CutInQuotes) => IngestError::Input(e.to_string()),
    })?;
    match stored {
        Stored::New(b) => Ok(Outcome {
            file: name,
            batch_id: b.id,
            already: false,
            read: b.rows_read,
            new: b.rows_new,
            duplicate: b.rows_duplicate,
            rejected: b.rows_rejected,
            id_reused: b.rows_id_reused,
            source: b.source,
        }),
        Stored::Already(b) => Ok(already(&name, &b)),
    }
}

/// One transaction: the batch, then each part's rows and rejects as it is
/// parsed.
#[expect(
    clippy::too_many_arguments,
    reason = "one private step of `ingest_file`"
)]
fn store_in_parts(
    conn: &mut AnyConnection,
    kind: SideKind,
    path: &Path,
    name: &str,
    sha: &str,
    plan: ReadPlan<'_>,
    now: chrono::NaiveDateTime,
    part_bytes: u64,
    progress: &mut dyn FnMut(Step),
) -> Result<Stored, Failed> {
    let side_col = EnumCol(kind);
    let batch = NewBatch {
        side: side_col,
        source: "",
        file_name: name,
        sha256: sha,
        ingested_at: now,
        rows_read: 0,
        rows_new: 0,
        rows_duplicate: 0,
        rows_rejected: 0,
        rows_id_reused: 0,
    };
    let mut ordinals = Ordinals::default();
    let parts = parts(kind, path, name, plan, part_bytes)
        .map_err(|e| Failed::Input(PartError::Failed(e)))?;
    std::thread::scope(|scope| {
        // The next part is parsed on the second core while this one is
        // stored (at most one waits between them, so memory stays a few
        // parts), and the first before the write transaction opens: the
        // store's write lock is held for inserting, not for parsing.
        let (tx, rx) = std::sync::mpsc::sync_channel::<Result<Side, PartError>>(1);
        scope.spawn(move || {
            for part in parts {
                if tx.send(part).is_err() {
                    break;
                }
            }
        });
        let mut rx = rx.into_iter().peekable();
        rx.peek();
        let mut produce = |sink: &mut repo::PartSink<'_>| -> Result<repo::Produced, PartError> {
            let mut source = String::new();
            let (mut read, mut accepted) = (0u64, 0u64);
            let mut first_rejects: Vec<tally_reconcile::RowError> = Vec::new();
            for side in rx.by_ref() {
                let side = side?;
                read += side.files.iter().map(|f| f.read).sum::<u64>();
                accepted += u64::try_from(side.rows.len()).unwrap_or(u64::MAX);
                if first_rejects.len() < 3 {
                    first_rejects.extend(side.rejects.iter().take(3).cloned());
                }
                if source.is_empty() {
                    source = side
                        .files
                        .first()
                        .map_or_else(String::new, |f| f.format.clone());
                }
                let keys = ordinals.keys(&side);
                let (mut rows, extra_rejects) = new_rows(&side, &keys)?;
                let mut rejects: Vec<NewReject<'_>> = side
                    .rejects
                    .iter()
                    .map(|e| NewReject {
                        side: side_col,
                        batch_id: 0,
                        line: i64::try_from(e.line).unwrap_or(i64::MAX),
                        field: &e.field,
                        reason: &e.reason,
                        raw: &e.raw,
                    })
                    .collect();
                rejects.extend(extra_rejects.iter().map(|(line, reason, raw)| NewReject {
                    side: side_col,
                    batch_id: 0,
                    line: *line,
                    field: "cost",
                    reason,
                    raw,
                }));
                sink(&mut rows, &rejects).map_err(AppError::from)?;
            }
            // Nothing readable: refused whole (the transaction rolls back),
            // so the same bytes can be ingested again once described.
            if read > 0 && accepted == 0 {
                let sources = crate::app::reconcile::client_sources();
                return Err(
                    AppError::Invalid(tally_reconcile::parse::hint::explain_counts(
                        kind,
                        name,
                        (read, read),
                        &first_rejects,
                        &sources,
                    ))
                    .into(),
                );
            }
            Ok(repo::Produced { source })
        };
        let stored = repo::store_batch_parts(conn, &batch, &mut produce, &mut |n| {
            progress(Step::Storing {
                rows: u64::try_from(n).unwrap_or(0),
            });
        });
        match stored {
            Ok(s) => Ok(s),
            Err(repo::PartsError::Db(e)) => Err(Failed::Store(e)),
            Err(repo::PartsError::Source(e)) => Err(Failed::Input(e)),
        }
    })
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
        id_reused: 0,
        source: b.source.clone(),
    }
}

/// Rows to insert, and the rows that cannot be stored as they are (line,
/// reason, raw text): they become rejects rather than being rounded.
#[expect(clippy::type_complexity, reason = "a private pair of result lists")]
fn new_rows<'a>(
    side: &'a Side,
    keys: &'a [String],
) -> Result<(Vec<NewUsageRow<'a>>, Vec<(i64, String, &'a str)>), AppError> {
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
            None => return Err(AppError::Internal(format!("row {i} has no dedup key"))),
        }
    }
    Ok((rows, bad))
}

/// The first `limit` rejects of batch `batch_id`, as an upload's answer
/// lists them.
pub fn rejects_of(
    c: &mut AnyConnection,
    batch_id: i64,
    limit: usize,
) -> Result<Vec<tally_schema::rows::Reject>, AppError> {
    Ok(repo::rejects_listed(c, batch_id, limit)?)
}
