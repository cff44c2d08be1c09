//! Repository functions: plain synchronous diesel over [`AnyConnection`].
//!
//! One module per resource: usage rows and batches here, then owners, keys,
//! aliases and prices (`reference`), tokens and sessions (`access`), runs
//! and verdicts (`results`), quotas, alerts, the outbox and job locks
//! (`alerting`). Callers name them all as `repo::…`.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use tally_reconcile::SideKind;
use tally_reconcile::report::Class;
use tally_schema::enums::EnumCol;
use tally_schema::rows::{
    AlertRow, AliasRow, AttributionRow, Batch, ClosedCharge, ClosedPeriod, ContractRow, KeyRow,
    NewAlert, NewBatch, NewClosedPeriod, NewContract, NewKey, NewOutbox, NewOwner, NewPrice,
    NewQuota, NewReject, NewRun, NewSession, NewTieout, NewToken, NewUsageRow, NewVerdict,
    OutboxRow, OwnerRow, PriceRow, QuotaRow, Reject, RollupRow, RunCount, RunRow, TieoutRow,
    TokenRow, UsageRow, VerdictRow,
};
use tally_schema::schema::{
    alerts, api_keys, api_tokens, closed_charges, closed_periods, contracts, ingest_batches,
    model_aliases, outbox, owners, prices, quotas, rejects, run_attributions, run_counts,
    run_rollups, runs, tieouts, usage_rows, verdicts, web_sessions,
};
// SQLite's job leases; PostgreSQL locks jobs with advisory locks.
#[cfg(feature = "sqlite")]
use tally_schema::schema::job_locks;

use super::{AnyConnection, DbError, on_backend};

/// Rows per multi-row INSERT: 26 columns x 1,000 stays under both SQLite's
/// (32,766) and PostgreSQL's (65,535) bind parameter limits.
const CHUNK: usize = 1_000;

/// Whether a row's dedup key is made from its request id: the rows an
/// ingest counts reused ids among (an id seen on another UTC day).
fn is_id_keyed(r: &NewUsageRow<'_>) -> bool {
    !r.request_id.is_empty() && r.dedup_key.starts_with("id:")
}

/// The request ids of the id-keyed rows.
fn request_ids<'r>(rows: &'r [NewUsageRow<'_>]) -> Vec<&'r str> {
    rows.iter()
        .filter(|r| is_id_keyed(r))
        .map(|r| r.request_id)
        .collect()
}

/// Every stored row with one of `ids` as its request id, either side:
/// (side, request id, time, dedup key). By id alone: with a condition on
/// `side` PostgreSQL planned this from statistics that had seen none of a
/// first big file's rows (they are all in the ingesting transaction) and
/// scanned the side's every row per chunk (issue 21). Only the id index
/// can serve this.
macro_rules! stored_with_ids {
    ($c:expr, $ids:expr) => {
        usage_rows::table
            .filter(usage_rows::request_id.eq_any($ids))
            .select((
                usage_rows::side,
                usage_rows::request_id,
                usage_rows::ts_ms,
                usage_rows::dedup_key,
            ))
            .load::<(EnumCol<SideKind>, String, i64, String)>($c)
    };
}

/// What storing one chunk of usage rows did.
struct Inserted {
    /// Rows added (the others' dedup keys were stored already).
    new: usize,
    /// (request id, time) of every row of the chunk's side stored once the
    /// chunk is in, that shares a request id with its id-keyed rows: what
    /// [`reused_elsewhere`] counts from.
    held: Vec<(String, i64)>,
}

/// Inserting many usage rows, each backend its fastest way; rows whose
/// dedup key is stored already are skipped.
trait BulkInsert {
    /// Rows per call.
    fn chunk(&self) -> usize;
    /// Stores `rows`, all of `side`.
    fn insert_usage(
        &mut self,
        side: SideKind,
        rows: &[NewUsageRow<'_>],
    ) -> Result<Inserted, DieselError>;
    /// Verdicts of a new run (nothing to skip).
    fn insert_verdicts(&mut self, rows: &[NewVerdict]) -> Result<usize, DieselError>;
}

#[cfg(feature = "sqlite")]
impl BulkInsert for diesel::SqliteConnection {
    fn chunk(&self) -> usize {
        CHUNK
    }

    /// Multi-row INSERT ... ON CONFLICT DO NOTHING; full chunks as a
    /// fixed-size array, so diesel caches the prepared statement instead
    /// of parsing and planning it for every chunk.
    ///
    /// The ids are looked up after the insert, so ids the chunk itself
    /// uses on two days count too.
    fn insert_usage(
        &mut self,
        side: SideKind,
        rows: &[NewUsageRow<'_>],
    ) -> Result<Inserted, DieselError> {
        let new = match <&[NewUsageRow<'_>; CHUNK]>::try_from(rows) {
            Ok(full) => diesel::insert_into(usage_rows::table)
                .values(full)
                .on_conflict_do_nothing()
                .execute(self),
            Err(_) => diesel::insert_into(usage_rows::table)
                .values(rows)
                .on_conflict_do_nothing()
                .execute(self),
        }?;
        let ids = request_ids(rows);
        let held = if ids.is_empty() {
            Vec::new()
        } else {
            stored_with_ids!(self, &ids)?
                .into_iter()
                .filter(|(s, ..)| **s == side)
                .map(|(_, id, ts, _)| (id, ts))
                .collect()
        };
        Ok(Inserted { new, held })
    }

    fn insert_verdicts(&mut self, rows: &[NewVerdict]) -> Result<usize, DieselError> {
        // Fixed-size arrays again, for the statement cache.
        let mut n = 0;
        for chunk in rows.chunks(VERDICT_CHUNK) {
            n += match <&[NewVerdict; VERDICT_CHUNK]>::try_from(chunk) {
                Ok(full) => diesel::insert_into(verdicts::table)
                    .values(full)
                    .execute(self)?,
                Err(_) => diesel::insert_into(verdicts::table)
                    .values(chunk)
                    .execute(self)?,
            };
        }
        Ok(n)
    }
}

/// Rows per COPY on PostgreSQL.
#[cfg(feature = "postgres")]
const PG_CHUNK: usize = 50_000;

#[cfg(feature = "postgres")]
impl BulkInsert for diesel::PgConnection {
    fn chunk(&self) -> usize {
        PG_CHUNK
    }

    /// COPY (binary), the bulk path PostgreSQL is built for. COPY cannot
    /// skip conflicts, so the chunk's keys already stored are looked up
    /// first and left out. Another ingest committing the same rows in
    /// between makes this batch fail whole on the unique key, never store
    /// a row twice.
    ///
    /// An id-keyed row's dedup key is made of its request id, so the one
    /// lookup by request id that reused ids are counted from also finds
    /// which of those keys are stored: only the other rows' keys are looked
    /// up by key (at 1M rows the two lookups took 7.4 s of a 31.6 s ingest
    /// against 19.3 s for `\copy`). The ids are looked up before the COPY;
    /// the chunk's own id-keyed rows are then added to what is held, which
    /// is what a lookup after it would find.
    fn insert_usage(
        &mut self,
        side: SideKind,
        rows: &[NewUsageRow<'_>],
    ) -> Result<Inserted, DieselError> {
        use std::collections::HashSet;
        let ids = request_ids(rows);
        let mut held = Vec::new();
        let mut stored: HashSet<String> = HashSet::new();
        if !ids.is_empty() {
            for (s, id, ts, key) in stored_with_ids!(self, &ids)? {
                if *s == side {
                    held.push((id, ts));
                    stored.insert(key);
                }
            }
        }
        let unkeyed: Vec<&str> = rows
            .iter()
            .filter(|r| !is_id_keyed(r))
            .map(|r| r.dedup_key)
            .collect();
        if !unkeyed.is_empty() {
            stored.extend(
                usage_rows::table
                    .filter(usage_rows::side.eq(EnumCol(side)))
                    .filter(usage_rows::dedup_key.eq_any(&unkeyed))
                    .select(usage_rows::dedup_key)
                    .load::<String>(self)?,
            );
        }
        let new: Vec<NewUsageRow<'_>> = rows
            .iter()
            .filter(|r| !stored.contains(r.dedup_key))
            .cloned()
            .collect();
        held.extend(
            new.iter()
                .filter(|r| is_id_keyed(r))
                .map(|r| (r.request_id.to_owned(), r.ts_ms)),
        );
        if new.is_empty() {
            return Ok(Inserted { new: 0, held });
        }
        let added = diesel::copy_from(usage_rows::table)
            .from_insertable(&new)
            .execute(self)?;
        Ok(Inserted { new: added, held })
    }

    fn insert_verdicts(&mut self, rows: &[NewVerdict]) -> Result<usize, DieselError> {
        diesel::copy_from(verdicts::table)
            .from_insertable(rows)
            .execute(self)
    }
}

/// What storing a batch did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    /// The batch is new: its row, counts filled in.
    New(Batch),
    /// A file with the same bytes was ingested before: that batch.
    Already(Batch),
}

/// The batch of `side` whose file had these bytes, if any.
pub fn batch_by_hash(
    conn: &mut AnyConnection,
    side: SideKind,
    sha256: &str,
) -> Result<Option<Batch>, DbError> {
    Ok(ingest_batches::table
        .filter(ingest_batches::side.eq(EnumCol(side)))
        .filter(ingest_batches::sha256.eq(sha256))
        .select(Batch::as_select())
        .first(conn)
        .optional()?)
}

/// Every batch, oldest first.
pub fn batches(conn: &mut AnyConnection) -> Result<Vec<Batch>, DbError> {
    Ok(ingest_batches::table
        .order(ingest_batches::id)
        .select(Batch::as_select())
        .load(conn)?)
}

/// Receives one part of a batch: its accepted rows (given the batch's id
/// here) and its rejects.
pub type PartSink<'s> =
    dyn FnMut(&mut [NewUsageRow<'_>], &[NewReject<'_>]) -> Result<(), DbError> + 's;

/// What storing a batch in parts failed with: the store, or the producer
/// of the parts (a parse or read error), passed through unchanged.
#[derive(Debug, thiserror::Error)]
pub enum PartsError<E> {
    /// The store.
    #[error(transparent)]
    Db(#[from] DbError),
    /// The producer.
    #[error("{0}")]
    Source(E),
}

/// How a producer of parts ended: the batch's source format.
pub struct Produced {
    /// Format or gateway profile the parts were read as.
    pub source: String,
}

/// Stores one file as one transaction: the batch, then its parts as
/// `produce` hands them to the sink (rows whose dedup key is already stored
/// are skipped and counted as duplicates; rejects are kept), then the
/// batch's counts. Only one part is in memory at a time, whatever the
/// file's size; a crash or an error part-way leaves all of it or none.
///
/// If the same bytes were stored before, nothing is written and that batch
/// is returned. `stored` is told the rows written so far after each chunk.
pub fn store_batch_parts<E>(
    conn: &mut AnyConnection,
    batch: &NewBatch<'_>,
    produce: &mut dyn FnMut(&mut PartSink<'_>) -> Result<Produced, E>,
    stored: &mut dyn FnMut(usize),
) -> Result<Stored, PartsError<E>> {
    if let Some(b) = batch_by_hash(conn, *batch.side, batch.sha256)? {
        return Ok(Stored::Already(b));
    }
    // The transaction's error: diesel's, or the producer's carried out.
    enum TxError<E> {
        Diesel(DieselError),
        Source(E),
    }
    impl<E> From<DieselError> for TxError<E> {
        fn from(e: DieselError) -> Self {
            TxError::Diesel(e)
        }
    }
    let result = on_backend!(conn, c => c.transaction(|c| {
        // The first statement writes, so a SQLite writer waits for the lock
        // (busy timeout) instead of failing on a stale read snapshot.
        let id: i64 = diesel::insert_into(ingest_batches::table)
            .values(batch)
            .returning(ingest_batches::id)
            .get_result(c)?;
        let (mut new, mut accepted, mut rejected, mut reused) = (0usize, 0usize, 0usize, 0usize);
        let size = BulkInsert::chunk(c);
        let mut sink = |rows: &mut [NewUsageRow<'_>], rejects: &[NewReject<'_>]| -> Result<(), DbError> {
            for chunk in rows.chunks_mut(size) {
                for r in chunk.iter_mut() {
                    r.batch_id = id;
                }
                let done = BulkInsert::insert_usage(c, *batch.side, chunk)?;
                new += done.new;
                reused += reused_elsewhere(chunk, &done.held);
                accepted += chunk.len();
                stored(accepted);
            }
            for chunk in rejects.chunks(CHUNK) {
                let chunk: Vec<NewReject<'_>> = chunk
                    .iter()
                    .map(|r| NewReject { batch_id: id, ..r.clone() })
                    .collect();
                diesel::insert_into(rejects::table).values(&chunk).execute(c)?;
            }
            rejected += rejects.len();
            Ok(())
        };
        let produced = match produce(&mut sink) {
            Ok(p) => p,
            Err(e) => return Err(TxError::Source(e)),
        };
        let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        diesel::update(ingest_batches::table.find(id))
            .set((
                ingest_batches::source.eq(&produced.source),
                ingest_batches::rows_read.eq(count(accepted + rejected)),
                ingest_batches::rows_new.eq(count(new)),
                ingest_batches::rows_duplicate.eq(count(accepted - new)),
                ingest_batches::rows_rejected.eq(count(rejected)),
                ingest_batches::rows_id_reused.eq(count(reused)),
            ))
            .execute(c)?;
        ingest_batches::table
            .find(id)
            .select(Batch::as_select())
            .first(c)
            .map_err(TxError::Diesel)
    }));
    match result {
        Ok(b) => Ok(Stored::New(b)),
        // Another process stored the same file between our check and our
        // insert: theirs stands.
        Err(TxError::Diesel(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _))) => {
            batch_by_hash(conn, *batch.side, batch.sha256)?
                .map(Stored::Already)
                .ok_or(PartsError::Db(DbError::Query(DieselError::NotFound)))
        }
        Err(TxError::Diesel(e)) => Err(PartsError::Db(e.into())),
        Err(TxError::Source(e)) => Err(PartsError::Source(e)),
    }
}

/// How many of `rows` have a request id that `held` (request id, time) has
/// on another UTC day.
fn reused_elsewhere(rows: &[NewUsageRow<'_>], held: &[(String, i64)]) -> usize {
    use std::collections::HashMap;
    use tally_reconcile::time::DAY_MS;
    // Each id's first day, and whether it has a second.
    let mut days: HashMap<&str, (i64, bool)> = HashMap::new();
    for (id, ts) in held {
        let d = ts.div_euclid(DAY_MS);
        days.entry(id.as_str())
            .and_modify(|(first, more)| *more |= *first != d)
            .or_insert((d, false));
    }
    rows.iter()
        .filter(|r| is_id_keyed(r))
        .filter(|r| {
            days.get(r.request_id)
                .is_some_and(|(first, more)| *more || *first != r.ts_ms.div_euclid(DAY_MS))
        })
        .count()
}

/// Stored usage rows of a side.
pub fn count_usage(conn: &mut AnyConnection, side: SideKind) -> Result<i64, DbError> {
    Ok(usage_rows::table
        .filter(usage_rows::side.eq(EnumCol(side)))
        .count()
        .get_result(conn)?)
}

/// The dedup keys of a side's stored rows, sorted (for checks and tests).
pub fn dedup_keys(conn: &mut AnyConnection, side: &str) -> Result<Vec<String>, DbError> {
    Ok(usage_rows::table
        .filter(usage_rows::side.eq(side))
        .order(usage_rows::dedup_key)
        .select(usage_rows::dedup_key)
        .load(conn)?)
}

/// The first `limit` rejects of a batch, in line order (an upload's answer
/// lists some; all are kept).
pub fn rejects_listed(
    conn: &mut AnyConnection,
    batch_id: i64,
    limit: usize,
) -> Result<Vec<Reject>, DbError> {
    Ok(rejects::table
        .filter(rejects::batch_id.eq(batch_id))
        .order((rejects::line, rejects::id))
        .limit(i64::try_from(limit).unwrap_or(i64::MAX))
        .select(Reject::as_select())
        .load(conn)?)
}

mod access;
mod alerting;
mod periods;
mod reference;
mod results;

pub use access::*;
pub use alerting::*;
pub use periods::*;
pub use reference::*;
pub use results::*;
