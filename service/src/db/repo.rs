//! Repository functions: plain synchronous diesel over [`AnyConnection`].

use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use tally_schema::rows::{Batch, NewBatch, NewReject, NewUsageRow, Reject};
use tally_schema::schema::{ingest_batches, rejects, usage_rows};

use super::{AnyConnection, DbError, on_backend};

/// Rows per multi-row INSERT: 26 columns x 1,000 stays under both SQLite's
/// (32,766) and PostgreSQL's (65,535) bind parameter limits.
const CHUNK: usize = 1_000;

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
    side: &str,
    sha256: &str,
) -> Result<Option<Batch>, DbError> {
    Ok(ingest_batches::table
        .filter(ingest_batches::side.eq(side))
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

/// Stores one file as one transaction: the batch, its new rows (rows whose
/// dedup key is already stored are skipped and counted as duplicates) and
/// its rejects. A crash part-way leaves all of it or none.
///
/// `rows` get the new batch's id. If the same bytes were stored before,
/// nothing is written and that batch is returned.
pub fn store_batch(
    conn: &mut AnyConnection,
    batch: &NewBatch<'_>,
    rows: &mut [NewUsageRow<'_>],
    rejects: &[NewReject<'_>],
) -> Result<Stored, DbError> {
    if let Some(b) = batch_by_hash(conn, batch.side, batch.sha256)? {
        return Ok(Stored::Already(b));
    }
    let result = on_backend!(conn, c => c.transaction(|c| {
        // The first statement writes, so a SQLite writer waits for the lock
        // (busy timeout) instead of failing on a stale read snapshot.
        let id: i64 = diesel::insert_into(ingest_batches::table)
            .values(batch)
            .returning(ingest_batches::id)
            .get_result(c)?;
        let mut new = 0usize;
        for chunk in rows.chunks_mut(CHUNK) {
            for r in chunk.iter_mut() {
                r.batch_id = id;
            }
            new += diesel::insert_into(usage_rows::table)
                .values(&*chunk)
                .on_conflict_do_nothing()
                .execute(c)?;
        }
        for chunk in rejects.chunks(CHUNK) {
            let chunk: Vec<NewReject<'_>> = chunk
                .iter()
                .map(|r| NewReject { batch_id: id, ..r.clone() })
                .collect();
            diesel::insert_into(rejects::table).values(&chunk).execute(c)?;
        }
        let new = i64::try_from(new).unwrap_or(i64::MAX);
        let accepted = i64::try_from(rows.len()).unwrap_or(i64::MAX);
        diesel::update(ingest_batches::table.find(id))
            .set((
                ingest_batches::rows_new.eq(new),
                ingest_batches::rows_duplicate.eq(accepted - new),
            ))
            .execute(c)?;
        ingest_batches::table
            .find(id)
            .select(Batch::as_select())
            .first(c)
    }));
    match result {
        Ok(b) => Ok(Stored::New(b)),
        // Another process stored the same file between our check and our
        // insert: theirs stands.
        Err(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _)) => {
            batch_by_hash(conn, batch.side, batch.sha256)?
                .map(Stored::Already)
                .ok_or(DbError::Query(DieselError::NotFound))
        }
        Err(e) => Err(e.into()),
    }
}

/// Stored usage rows of a side.
pub fn count_usage(conn: &mut AnyConnection, side: &str) -> Result<i64, DbError> {
    Ok(usage_rows::table
        .filter(usage_rows::side.eq(side))
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

/// The rejects of a batch, in line order.
pub fn rejects_of(conn: &mut AnyConnection, batch_id: i64) -> Result<Vec<Reject>, DbError> {
    Ok(rejects::table
        .filter(rejects::batch_id.eq(batch_id))
        .order((rejects::line, rejects::id))
        .select(Reject::as_select())
        .load(conn)?)
}
