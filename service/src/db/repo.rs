//! Repository functions: plain synchronous diesel over [`AnyConnection`].

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use tally_schema::rows::{
    AlertRow, AliasRow, Batch, KeyRow, NewAlert, NewBatch, NewKey, NewOutbox, NewOwner, NewPrice,
    NewQuota, NewReject, NewRun, NewSession, NewToken, NewUsageRow, OutboxRow, OwnerRow, PriceRow,
    QuotaRow, Reject, RollupRow, RunCount, RunRow, TokenRow, UsageRow, VerdictRow,
};
use tally_schema::schema::{
    alerts, api_keys, api_tokens, ingest_batches, model_aliases, outbox, owners, prices, quotas,
    rejects, run_counts, run_rollups, runs, usage_rows, verdicts, web_sessions,
};
// SQLite's job leases; PostgreSQL locks jobs with advisory locks.
#[cfg(feature = "sqlite")]
use tally_schema::schema::job_locks;

use super::{AnyConnection, DbError, on_backend};

/// Rows per multi-row INSERT: 26 columns x 1,000 stays under both SQLite's
/// (32,766) and PostgreSQL's (65,535) bind parameter limits.
const CHUNK: usize = 1_000;

/// Inserting many usage rows, each backend its fastest way; rows whose
/// dedup key is stored already are skipped. Returns the rows added.
trait BulkInsert {
    /// Rows per call.
    fn chunk(&self) -> usize;
    fn insert_usage(&mut self, rows: &[NewUsageRow<'_>]) -> Result<usize, DieselError>;
    /// Verdicts of a new run (nothing to skip).
    fn insert_verdicts(&mut self, rows: &[VerdictRow]) -> Result<usize, DieselError>;
}

#[cfg(feature = "sqlite")]
impl BulkInsert for diesel::SqliteConnection {
    fn chunk(&self) -> usize {
        CHUNK
    }

    /// Multi-row INSERT ... ON CONFLICT DO NOTHING; full chunks as a
    /// fixed-size array, so diesel caches the prepared statement instead
    /// of parsing and planning it for every chunk.
    fn insert_usage(&mut self, rows: &[NewUsageRow<'_>]) -> Result<usize, DieselError> {
        match <&[NewUsageRow<'_>; CHUNK]>::try_from(rows) {
            Ok(full) => diesel::insert_into(usage_rows::table)
                .values(full)
                .on_conflict_do_nothing()
                .execute(self),
            Err(_) => diesel::insert_into(usage_rows::table)
                .values(rows)
                .on_conflict_do_nothing()
                .execute(self),
        }
    }

    fn insert_verdicts(&mut self, rows: &[VerdictRow]) -> Result<usize, DieselError> {
        // Fixed-size arrays again, for the statement cache.
        let mut n = 0;
        for chunk in rows.chunks(VERDICT_CHUNK) {
            n += match <&[VerdictRow; VERDICT_CHUNK]>::try_from(chunk) {
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
    /// first (one `= ANY` query) and left out. Another ingest committing
    /// the same rows in between makes this batch fail whole on the unique
    /// key, never store a row twice.
    fn insert_usage(&mut self, rows: &[NewUsageRow<'_>]) -> Result<usize, DieselError> {
        let Some(first) = rows.first() else {
            return Ok(0);
        };
        let keys: Vec<&str> = rows.iter().map(|r| r.dedup_key).collect();
        let stored: std::collections::HashSet<String> = usage_rows::table
            .filter(usage_rows::side.eq(first.side))
            .filter(usage_rows::dedup_key.eq_any(&keys))
            .select(usage_rows::dedup_key)
            .load::<String>(self)?
            .into_iter()
            .collect();
        let new: Vec<NewUsageRow<'_>> = rows
            .iter()
            .filter(|r| !stored.contains(r.dedup_key))
            .cloned()
            .collect();
        if new.is_empty() {
            return Ok(0);
        }
        diesel::copy_from(usage_rows::table)
            .from_insertable(&new)
            .execute(self)
    }

    fn insert_verdicts(&mut self, rows: &[VerdictRow]) -> Result<usize, DieselError> {
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
    if let Some(b) = batch_by_hash(conn, batch.side, batch.sha256)? {
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
        let (mut new, mut accepted, mut rejected) = (0usize, 0usize, 0usize);
        let size = BulkInsert::chunk(c);
        let mut sink = |rows: &mut [NewUsageRow<'_>], rejects: &[NewReject<'_>]| -> Result<(), DbError> {
            for chunk in rows.chunks_mut(size) {
                for r in chunk.iter_mut() {
                    r.batch_id = id;
                }
                new += BulkInsert::insert_usage(c, chunk)?;
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
            batch_by_hash(conn, batch.side, batch.sha256)?
                .map(Stored::Already)
                .ok_or(PartsError::Db(DbError::Query(DieselError::NotFound)))
        }
        Err(TxError::Diesel(e)) => Err(PartsError::Db(e.into())),
        Err(TxError::Source(e)) => Err(PartsError::Source(e)),
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

// ---- Owners, keys, aliases, prices -------------------------------------

/// Adds an owner or updates its contact; its id.
pub fn upsert_owner(conn: &mut AnyConnection, o: &NewOwner<'_>) -> Result<i64, DbError> {
    Ok(on_backend!(conn, c => diesel::insert_into(owners::table)
        .values(o)
        .on_conflict((owners::team, owners::service, owners::env))
        .do_update()
        .set(owners::contact.eq(o.contact))
        .returning(owners::id)
        .get_result(c))?)
}

/// The id of an owner, added without a contact if new; an existing
/// owner's contact is left as it is (keys name owners, `tally owners
/// import` sets their contacts).
pub fn owner_id(
    conn: &mut AnyConnection,
    team: &str,
    service: &str,
    env: &str,
) -> Result<i64, DbError> {
    let new = NewOwner {
        team,
        service,
        env,
        contact: None,
    };
    on_backend!(conn, c => diesel::insert_into(owners::table)
        .values(&new)
        .on_conflict((owners::team, owners::service, owners::env))
        .do_nothing()
        .execute(c))?;
    Ok(owners::table
        .filter(owners::team.eq(team))
        .filter(owners::service.eq(service))
        .filter(owners::env.eq(env))
        .select(owners::id)
        .first(conn)?)
}

/// Every owner, by team, service, env.
pub fn owners(conn: &mut AnyConnection) -> Result<Vec<OwnerRow>, DbError> {
    Ok(owners::table
        .order((owners::team, owners::service, owners::env))
        .select(OwnerRow::as_select())
        .load(conn)?)
}

/// Adds a key or replaces every field of the key with the same id.
pub fn upsert_key(conn: &mut AnyConnection, k: &NewKey<'_>) -> Result<(), DbError> {
    on_backend!(conn, c => diesel::insert_into(api_keys::table)
        .values(k)
        .on_conflict(api_keys::key_id)
        .do_update()
        .set(k)
        .execute(c))?;
    Ok(())
}

/// Every key, by id.
pub fn keys(conn: &mut AnyConnection) -> Result<Vec<KeyRow>, DbError> {
    Ok(api_keys::table
        .order(api_keys::key_id)
        .select(KeyRow::as_select())
        .load(conn)?)
}

/// Adds an alias or points it at another family.
pub fn upsert_alias(conn: &mut AnyConnection, a: &AliasRow) -> Result<(), DbError> {
    on_backend!(conn, c => diesel::insert_into(model_aliases::table)
        .values(a)
        .on_conflict(model_aliases::alias)
        .do_update()
        .set(model_aliases::model.eq(&a.model))
        .execute(c))?;
    Ok(())
}

/// Every alias, by name.
pub fn aliases(conn: &mut AnyConnection) -> Result<Vec<AliasRow>, DbError> {
    Ok(model_aliases::table
        .order(model_aliases::alias)
        .select(AliasRow::as_select())
        .load(conn)?)
}

/// Adds a price or replaces the price of the same model from the same time.
pub fn upsert_price(conn: &mut AnyConnection, p: &NewPrice<'_>) -> Result<(), DbError> {
    on_backend!(conn, c => diesel::insert_into(prices::table)
        .values(p)
        .on_conflict((prices::model, prices::effective_from))
        .do_update()
        .set(p)
        .execute(c))?;
    Ok(())
}

/// Every price, by model and date.
pub fn prices(conn: &mut AnyConnection) -> Result<Vec<PriceRow>, DbError> {
    Ok(prices::table
        .order((prices::model, prices::effective_from))
        .select(PriceRow::as_select())
        .load(conn)?)
}

/// Renames the owner `id` or sets its contact; whether it existed. Another
/// owner with the same team, service and env is a [`DbError::Conflict`].
pub fn update_owner(conn: &mut AnyConnection, id: i64, o: &NewOwner<'_>) -> Result<bool, DbError> {
    diesel::update(owners::table.find(id))
        .set(o)
        .execute(conn)
        .map(|n| n > 0)
        .map_err(|e| match e {
            DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => DbError::Conflict(
                format!("an owner {}/{}/{} exists", o.team, o.service, o.env),
            ),
            e => DbError::Query(e),
        })
}

/// Deletes the owner `id`; its keys keep existing, owned by nobody.
/// Whether it existed.
pub fn delete_owner(conn: &mut AnyConnection, id: i64) -> Result<bool, DbError> {
    conn.transaction(|c| {
        diesel::update(api_keys::table.filter(api_keys::owner_id.eq(id)))
            .set(api_keys::owner_id.eq(None::<i64>))
            .execute(c)?;
        Ok(diesel::delete(owners::table.find(id)).execute(c)? > 0)
    })
}

/// Deletes the key with Tally id `key_id`; whether it existed.
pub fn delete_key(conn: &mut AnyConnection, key_id: &str) -> Result<bool, DbError> {
    Ok(diesel::delete(api_keys::table.filter(api_keys::key_id.eq(key_id))).execute(conn)? > 0)
}

/// Deletes an alias; whether it existed.
pub fn delete_alias(conn: &mut AnyConnection, alias: &str) -> Result<bool, DbError> {
    Ok(diesel::delete(model_aliases::table.find(alias)).execute(conn)? > 0)
}

/// Deletes the price `id`; whether it existed.
pub fn delete_price(conn: &mut AnyConnection, id: i64) -> Result<bool, DbError> {
    Ok(diesel::delete(prices::table.find(id)).execute(conn)? > 0)
}

// ---- Service tokens -----------------------------------------------------

/// Stores a new token's hash. A live token with the same name is a
/// [`DbError::Conflict`].
pub fn insert_token(conn: &mut AnyConnection, t: &NewToken<'_>) -> Result<i64, DbError> {
    diesel::insert_into(api_tokens::table)
        .values(t)
        .returning(api_tokens::id)
        .get_result(conn)
        .map_err(|e| match e {
            DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => {
                DbError::Conflict(format!("a live token named `{}` exists", t.name))
            }
            e => DbError::Query(e),
        })
}

/// The live token with this hash, if any.
pub fn live_token(conn: &mut AnyConnection, sha256: &str) -> Result<Option<TokenRow>, DbError> {
    Ok(api_tokens::table
        .filter(api_tokens::token_sha256.eq(sha256))
        .filter(api_tokens::revoked_at.is_null())
        .select(TokenRow::as_select())
        .first(conn)
        .optional()?)
}

/// Every token, live and revoked, oldest first.
pub fn tokens(conn: &mut AnyConnection) -> Result<Vec<TokenRow>, DbError> {
    Ok(api_tokens::table
        .order(api_tokens::id)
        .select(TokenRow::as_select())
        .load(conn)?)
}

/// Revokes the live token named `name` at `now`; whether there was one.
pub fn revoke_token(
    conn: &mut AnyConnection,
    name: &str,
    now: chrono::NaiveDateTime,
) -> Result<bool, DbError> {
    Ok(diesel::update(
        api_tokens::table
            .filter(api_tokens::name.eq(name))
            .filter(api_tokens::revoked_at.is_null()),
    )
    .set(api_tokens::revoked_at.eq(Some(now)))
    .execute(conn)?
        > 0)
}

/// Stores a new browser session.
pub fn insert_session(conn: &mut AnyConnection, s: &NewSession<'_>) -> Result<(), DbError> {
    diesel::insert_into(web_sessions::table)
        .values(s)
        .execute(conn)?;
    Ok(())
}

/// The live token and CSRF token of an unexpired session whose token is
/// not revoked.
pub fn live_session(
    conn: &mut AnyConnection,
    sha256: &str,
    now: chrono::NaiveDateTime,
) -> Result<Option<(TokenRow, String)>, DbError> {
    Ok(web_sessions::table
        .inner_join(api_tokens::table)
        .filter(web_sessions::session_sha256.eq(sha256))
        .filter(web_sessions::expires_at.gt(now))
        .filter(api_tokens::revoked_at.is_null())
        .select((TokenRow::as_select(), web_sessions::csrf))
        .first(conn)
        .optional()?)
}

/// Ends a session, and any that expired before `now`.
pub fn delete_session(
    conn: &mut AnyConnection,
    sha256: &str,
    now: chrono::NaiveDateTime,
) -> Result<(), DbError> {
    diesel::delete(
        web_sessions::table.filter(
            web_sessions::session_sha256
                .eq(sha256)
                .or(web_sessions::expires_at.le(now)),
        ),
    )
    .execute(conn)?;
    Ok(())
}

/// Runs `f` in one transaction: all of it is stored, or none (an import,
/// a run). Any error that a query error converts into rolls it back.
pub fn in_transaction<T, E: From<DieselError>>(
    conn: &mut AnyConnection,
    f: impl FnOnce(&mut AnyConnection) -> Result<T, E>,
) -> Result<T, E> {
    conn.transaction(f)
}

// ---- Runs and verdicts --------------------------------------------------

/// Calls `each` with a side's stored rows with `from_ms <= ts_ms < to_ms`,
/// in time then id order (so a run sees them in a deterministic order).
/// Streamed: only the caller's copy of each row is kept. Stops at the
/// first error `each` returns.
pub fn each_usage_in<E: From<DbError>>(
    conn: &mut AnyConnection,
    side: &str,
    (from_ms, to_ms): (i64, i64),
    mut each: impl FnMut(UsageRow) -> Result<(), E>,
) -> Result<(), E> {
    let query = usage_rows::table
        .filter(usage_rows::side.eq(side))
        .filter(usage_rows::ts_ms.ge(from_ms))
        .filter(usage_rows::ts_ms.lt(to_ms))
        .order((usage_rows::ts_ms, usage_rows::id))
        .select(UsageRow::as_select());
    for row in query
        .load_iter::<UsageRow, _>(conn)
        .map_err(DbError::from)?
    {
        each(row.map_err(DbError::from)?)?;
    }
    Ok(())
}

/// The time of a side's `n`-th stored row (0-based) at or after `from_ms`
/// and before `to_ms`, if there are that many: where a run's slice of `n`
/// rows ends. An index-only walk of `(side, ts_ms)`.
pub fn nth_ts(
    conn: &mut AnyConnection,
    side: &str,
    (from_ms, to_ms): (i64, i64),
    n: i64,
) -> Result<Option<i64>, DbError> {
    Ok(usage_rows::table
        .filter(usage_rows::side.eq(side))
        .filter(usage_rows::ts_ms.ge(from_ms))
        .filter(usage_rows::ts_ms.lt(to_ms))
        .order(usage_rows::ts_ms)
        .select(usage_rows::ts_ms)
        .offset(n)
        .first(conn)
        .optional()?)
}

/// Verdicts per INSERT: 13 columns x 2,000 stays under both backends'
/// bind parameter limits.
#[cfg(feature = "sqlite")]
const VERDICT_CHUNK: usize = 2_000;

/// Adds a run (its counts are filled in by [`finish_run`]). Call inside a
/// transaction with [`insert_verdicts`] and [`finish_run`], so a report
/// sees the old run or the new one, never a mix.
pub fn begin_run(conn: &mut AnyConnection, run: &NewRun<'_>) -> Result<i64, DbError> {
    Ok(on_backend!(conn, c => diesel::insert_into(runs::table)
        .values(run)
        .returning(runs::id)
        .get_result(c))?)
}

/// Adds verdicts to a run.
pub fn insert_verdicts(
    conn: &mut AnyConnection,
    run_id: i64,
    verdicts: Vec<VerdictRow>,
) -> Result<(), DbError> {
    let rows: Vec<VerdictRow> = verdicts
        .into_iter()
        .map(|v| VerdictRow { run_id, ..v })
        .collect();
    on_backend!(conn, c => BulkInsert::insert_verdicts(c, &rows))?;
    Ok(())
}

/// What a run found, once all its verdicts are in.
#[derive(Debug, Clone)]
pub struct RunTotals<'a> {
    /// Rows per class (`run_id` is set here).
    pub counts: &'a [RunCount],
    /// Client rows in the window.
    pub client_rows: i64,
    /// Gateway rows in the window.
    pub gateway_rows: i64,
    /// Learned global offset, ms.
    pub global_offset_ms: i64,
    /// Learned offsets, JSON.
    pub key_offsets: &'a str,
    /// When it finished.
    pub finished_at: chrono::NaiveDateTime,
}

/// Completes a run: its counts, and every current run whose window lies
/// within its own marked superseded by it. Returns the run and the ids of
/// the runs it superseded.
pub fn finish_run(
    conn: &mut AnyConnection,
    run_id: i64,
    t: &RunTotals<'_>,
) -> Result<(RunRow, Vec<i64>), DbError> {
    let counts: Vec<RunCount> = t
        .counts
        .iter()
        .map(|k| RunCount {
            run_id,
            ..k.clone()
        })
        .collect();
    on_backend!(conn, c => diesel::insert_into(run_counts::table).values(&counts).execute(c))?;
    diesel::update(runs::table.find(run_id))
        .set((
            runs::client_rows.eq(t.client_rows),
            runs::gateway_rows.eq(t.gateway_rows),
            runs::global_offset_ms.eq(t.global_offset_ms),
            runs::key_offsets.eq(t.key_offsets),
            runs::finished_at.eq(t.finished_at),
        ))
        .execute(conn)?;
    let run: RunRow = runs::table
        .find(run_id)
        .select(RunRow::as_select())
        .first(conn)?;
    let covered = runs::table
        .filter(runs::status.eq("current"))
        .filter(runs::id.ne(run_id))
        .filter(runs::window_from.ge(run.window_from))
        .filter(runs::window_to.le(run.window_to));
    let superseded: Vec<i64> = covered.select(runs::id).order(runs::id).load(conn)?;
    diesel::update(runs::table.filter(runs::id.eq_any(&superseded)))
        .set((
            runs::status.eq("superseded"),
            runs::superseded_by.eq(Some(run_id)),
        ))
        .execute(conn)?;
    Ok((run, superseded))
}

/// Every run, newest first.
pub fn runs(conn: &mut AnyConnection) -> Result<Vec<RunRow>, DbError> {
    Ok(runs::table
        .order(runs::id.desc())
        .select(RunRow::as_select())
        .load(conn)?)
}

/// The run `id`, if any.
pub fn run(conn: &mut AnyConnection, id: i64) -> Result<Option<RunRow>, DbError> {
    Ok(runs::table
        .find(id)
        .select(RunRow::as_select())
        .first(conn)
        .optional()?)
}

/// A run's rows per class.
pub fn run_counts(conn: &mut AnyConnection, run_id: i64) -> Result<Vec<RunCount>, DbError> {
    Ok(run_counts::table
        .filter(run_counts::run_id.eq(run_id))
        .order(run_counts::class)
        .select(RunCount::as_select())
        .load(conn)?)
}

/// A verdict with the row it judges.
#[derive(Debug, Clone)]
pub struct Judged {
    /// The verdict.
    pub verdict: VerdictRow,
    /// `client` or `gateway`.
    pub side: String,
    /// The row's time, UTC ms.
    pub ts_ms: i64,
    /// Requested model as the source named it.
    pub model: String,
    /// Its request id.
    pub request_id: String,
    /// Input plus output tokens (`None` when the source had no usage).
    pub tokens: Option<i64>,
}

/// A verdict row joined with the columns of its usage row that reports show.
type JudgedRow = (
    VerdictRow,
    String,
    i64,
    String,
    String,
    Option<i64>,
    Option<i64>,
);

impl From<JudgedRow> for Judged {
    fn from((verdict, side, ts_ms, model, request_id, input, output): JudgedRow) -> Self {
        let tokens = match (input, output) {
            (None, None) => None,
            (i, o) => Some(i.unwrap_or(0).saturating_add(o.unwrap_or(0))),
        };
        Judged {
            verdict,
            side,
            ts_ms,
            model,
            request_id,
            tokens,
        }
    }
}

/// Calls `each` with the verdict of the newest current run on every row
/// with `from_ms <= ts_ms < to_ms` (of one side, when given), in row id
/// order. Streamed: a report over ten million rows holds one at a time.
pub fn each_current_verdict(
    conn: &mut AnyConnection,
    side: Option<&str>,
    (from_ms, to_ms): (i64, i64),
    mut each: impl FnMut(Judged),
) -> Result<(), DbError> {
    let mut query = verdicts::table
        .inner_join(runs::table)
        .inner_join(usage_rows::table)
        .filter(runs::status.eq("current"))
        .filter(usage_rows::ts_ms.ge(from_ms))
        .filter(usage_rows::ts_ms.lt(to_ms))
        .order((verdicts::usage_row_id, verdicts::run_id.desc()))
        .select((
            VerdictRow::as_select(),
            usage_rows::side,
            usage_rows::ts_ms,
            usage_rows::model,
            usage_rows::request_id,
            usage_rows::input_tokens,
            usage_rows::output_tokens,
        ))
        .into_boxed();
    if let Some(side) = side {
        query = query.filter(usage_rows::side.eq(side.to_owned()));
    }
    let mut last: Option<i64> = None;
    for row in query.load_iter::<JudgedRow, _>(conn)? {
        let j = Judged::from(row?);
        // Rows come newest run first: the first verdict of a row wins.
        if last == Some(j.verdict.usage_row_id) {
            continue;
        }
        last = Some(j.verdict.usage_row_id);
        each(j);
    }
    Ok(())
}

/// Calls `each` with every verdict of run `run_id` whose class is one of
/// `classes` (never `matched`: see `not_matched`), in time then row order. Streamed, like
/// [`each_current_verdict`]; for a run's own page, whatever has superseded
/// it since.
pub fn each_verdict_of_run(
    conn: &mut AnyConnection,
    run_id: i64,
    classes: &[&str],
    mut each: impl FnMut(Judged),
) -> Result<(), DbError> {
    let query = verdicts::table
        .inner_join(usage_rows::table)
        .filter(verdicts::run_id.eq(run_id))
        .filter(verdicts::class.eq_any(classes))
        .filter(not_matched())
        .order((usage_rows::ts_ms, verdicts::usage_row_id))
        .select((
            VerdictRow::as_select(),
            usage_rows::side,
            usage_rows::ts_ms,
            usage_rows::model,
            usage_rows::request_id,
            usage_rows::input_tokens,
            usage_rows::output_tokens,
        ));
    for row in query.load_iter::<JudgedRow, _>(conn)? {
        each(Judged::from(row?));
    }
    Ok(())
}

/// `class <> 'matched'` as literal SQL: the term the partial index
/// `verdicts_by_class` is defined by, which a planner needs to see as
/// written (a bound parameter does not prove it). Lists of matched rows
/// are never asked for.
fn not_matched() -> diesel::expression::SqlLiteral<diesel::sql_types::Bool> {
    diesel::dsl::sql::<diesel::sql_types::Bool>("verdicts.class <> 'matched'")
}

/// Stores a run's rollups (in the run's transaction).
pub fn insert_rollups(conn: &mut AnyConnection, rows: &[RollupRow]) -> Result<(), DbError> {
    // 15 values a row: well under SQLite's 32,766 bound parameters.
    for chunk in rows.chunks(1000) {
        on_backend!(conn, c => diesel::insert_into(run_rollups::table).values(chunk).execute(c))?;
    }
    Ok(())
}

/// The current runs whose rollups answer for `[from_ms, to_ms)` exactly:
/// `Some` when the window starts and ends at midnight UTC and no two current
/// runs overlap inside it (then every row there has at most one current
/// verdict, and a day's sums are that day's rows). `None` otherwise:
/// read the verdicts instead.
pub fn rollup_runs(
    conn: &mut AnyConnection,
    (from_ms, to_ms): (i64, i64),
) -> Result<Option<Vec<i64>>, DbError> {
    use tally_reconcile::time::DAY_MS;
    if from_ms.rem_euclid(DAY_MS) != 0 || to_ms.rem_euclid(DAY_MS) != 0 {
        return Ok(None);
    }
    let (Ok(from), Ok(to)) = (
        tally_schema::convert::naive_from_ms(from_ms),
        tally_schema::convert::naive_from_ms(to_ms),
    ) else {
        return Ok(None);
    };
    let mut windows: Vec<(i64, chrono::NaiveDateTime, chrono::NaiveDateTime)> = runs::table
        .filter(runs::status.eq("current"))
        .filter(runs::window_from.lt(to))
        .filter(runs::window_to.gt(from))
        .order(runs::window_from)
        .select((runs::id, runs::window_from, runs::window_to))
        .load(conn)?;
    windows.sort_by_key(|w| w.1);
    let disjoint = windows.windows(2).all(|w| w[0].2 <= w[1].1);
    Ok(disjoint.then(|| windows.into_iter().map(|w| w.0).collect()))
}

/// Calls `each` with every rollup of `run_ids` in `[from_ms, to_ms)`.
pub fn each_rollup(
    conn: &mut AnyConnection,
    run_ids: &[i64],
    (from_ms, to_ms): (i64, i64),
    mut each: impl FnMut(RollupRow),
) -> Result<(), DbError> {
    let query = run_rollups::table
        .filter(run_rollups::run_id.eq_any(run_ids))
        .filter(run_rollups::day_ms.ge(from_ms))
        .filter(run_rollups::day_ms.lt(to_ms))
        .select(RollupRow::as_select());
    for row in query.load_iter::<RollupRow, _>(conn)? {
        each(row?);
    }
    Ok(())
}

/// Calls `each` with the verdicts of `run_ids` in `[from_ms, to_ms)` whose
/// class is one of `classes` (and, when given, whose owner is `owner`:
/// team, service, env), in row order, at most `limit` of them: the rows a
/// page lists, read through the class index rather than every verdict.
/// Only exact when the runs do not overlap ([`rollup_runs`]).
pub fn each_verdict_of_classes(
    conn: &mut AnyConnection,
    run_ids: &[i64],
    classes: &[&str],
    owner: Option<(&str, &str, &str)>,
    (from_ms, to_ms): (i64, i64),
    limit: i64,
    mut each: impl FnMut(Judged),
) -> Result<(), DbError> {
    let mut query = verdicts::table
        .inner_join(usage_rows::table)
        .filter(verdicts::run_id.eq_any(run_ids))
        .filter(verdicts::class.eq_any(classes))
        .filter(not_matched())
        .filter(usage_rows::ts_ms.ge(from_ms))
        .filter(usage_rows::ts_ms.lt(to_ms))
        .order((verdicts::run_id, verdicts::class, verdicts::usage_row_id))
        .limit(limit)
        .select((
            VerdictRow::as_select(),
            usage_rows::side,
            usage_rows::ts_ms,
            usage_rows::model,
            usage_rows::request_id,
            usage_rows::input_tokens,
            usage_rows::output_tokens,
        ))
        .into_boxed();
    if let Some((team, service, env)) = owner {
        query = query
            .filter(verdicts::team.eq(team.to_owned()))
            .filter(verdicts::service.eq(service.to_owned()))
            .filter(verdicts::env.eq(env.to_owned()));
    }
    for row in query.load_iter::<JudgedRow, _>(conn)? {
        each(Judged::from(row?));
    }
    Ok(())
}

// ---- Quotas, alerts, outbox, job locks (issue 5) -------------------------

/// Adds a quota or replaces the one with the same name; returns its id.
pub fn upsert_quota(conn: &mut AnyConnection, q: &NewQuota<'_>) -> Result<i64, DbError> {
    Ok(on_backend!(conn, c => diesel::insert_into(quotas::table)
        .values(q)
        .on_conflict(quotas::name)
        .do_update()
        .set(q)
        .returning(quotas::id)
        .get_result(c))?)
}

/// Every quota, by name.
pub fn quotas(conn: &mut AnyConnection) -> Result<Vec<QuotaRow>, DbError> {
    Ok(quotas::table
        .order(quotas::name)
        .select(QuotaRow::as_select())
        .load(conn)?)
}

/// Deletes the quota `name`; false when there is none. Its alerts stay as
/// history.
pub fn delete_quota(conn: &mut AnyConnection, name: &str) -> Result<bool, DbError> {
    Ok(diesel::delete(quotas::table.filter(quotas::name.eq(name))).execute(conn)? > 0)
}

/// Inserts an alert unless one with its (rule, scope, period, threshold)
/// exists; returns the new id, or `None` when it had fired already. The
/// unique constraint decides, so evaluators racing on several replicas
/// get one `Some` between them.
pub fn insert_alert_once(
    conn: &mut AnyConnection,
    a: &NewAlert<'_>,
) -> Result<Option<i64>, DbError> {
    Ok(on_backend!(conn, c => diesel::insert_into(alerts::table)
        .values(a)
        .on_conflict((alerts::rule, alerts::scope, alerts::period, alerts::threshold))
        .do_nothing()
        .returning(alerts::id)
        .get_result::<i64>(c)
        .optional())?)
}

/// Alerts newest first, at most `limit`, only `state` when given, never
/// `digest`s unless asked by kind.
pub fn alerts(
    conn: &mut AnyConnection,
    state: Option<&str>,
    kind: Option<&str>,
    limit: i64,
) -> Result<Vec<AlertRow>, DbError> {
    let mut q = alerts::table
        .order(alerts::id.desc())
        .limit(limit)
        .select(AlertRow::as_select())
        .into_boxed();
    if let Some(s) = state {
        q = q.filter(alerts::state.eq(s.to_owned()));
    }
    q = match kind {
        Some(k) => q.filter(alerts::kind.eq(k.to_owned())),
        None => q.filter(alerts::kind.ne("digest")),
    };
    Ok(q.load(conn)?)
}

/// Firing alerts whose rule starts with `rule_prefix`.
pub fn firing_alerts(
    conn: &mut AnyConnection,
    rule_prefix: &str,
) -> Result<Vec<AlertRow>, DbError> {
    Ok(alerts::table
        .filter(alerts::state.eq("firing"))
        .filter(alerts::rule.like(format!("{rule_prefix}%")))
        .order(alerts::id)
        .select(AlertRow::as_select())
        .load(conn)?)
}

/// Marks an alert resolved (once).
pub fn resolve_alert(
    conn: &mut AnyConnection,
    id: i64,
    at: NaiveDateTime,
) -> Result<bool, DbError> {
    Ok(diesel::update(
        alerts::table
            .filter(alerts::id.eq(id))
            .filter(alerts::state.eq("firing")),
    )
    .set((
        alerts::state.eq("resolved"),
        alerts::resolved_at.eq(Some(at)),
    ))
    .execute(conn)?
        > 0)
}

/// Queues a message.
pub fn enqueue(conn: &mut AnyConnection, m: &NewOutbox<'_>) -> Result<i64, DbError> {
    Ok(on_backend!(conn, c => diesel::insert_into(outbox::table)
        .values(m)
        .returning(outbox::id)
        .get_result(c))?)
}

/// Unsent messages due at `now`, oldest first.
pub fn due_messages(
    conn: &mut AnyConnection,
    now: NaiveDateTime,
    limit: i64,
) -> Result<Vec<OutboxRow>, DbError> {
    Ok(outbox::table
        .filter(outbox::sent_at.is_null())
        .filter(outbox::recipients.ne(HELD))
        .filter(outbox::next_attempt_at.le(now))
        .order(outbox::id)
        .limit(limit)
        .select(OutboxRow::as_select())
        .load(conn)?)
}

/// Messages newest first, at most `limit`.
pub fn messages(conn: &mut AnyConnection, limit: i64) -> Result<Vec<OutboxRow>, DbError> {
    Ok(outbox::table
        .order(outbox::id.desc())
        .limit(limit)
        .select(OutboxRow::as_select())
        .load(conn)?)
}

/// Firing alerts per kind.
pub fn firing_by_kind(conn: &mut AnyConnection) -> Result<Vec<(String, i64)>, DbError> {
    use diesel::dsl::count_star;
    Ok(alerts::table
        .filter(alerts::state.eq("firing"))
        .group_by(alerts::kind)
        .select((alerts::kind, count_star()))
        .order(alerts::kind)
        .load(conn)?)
}

/// Unsent messages that have failed at least once.
pub fn retrying_count(conn: &mut AnyConnection) -> Result<u64, DbError> {
    let n: i64 = outbox::table
        .filter(outbox::sent_at.is_null())
        .filter(outbox::attempts.gt(0))
        .count()
        .get_result(conn)?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Unsent messages that have someone to go to.
pub fn unsent_count(conn: &mut AnyConnection) -> Result<u64, DbError> {
    // Held messages wait for a recipient, not for the mail server.
    let n: i64 = outbox::table
        .filter(outbox::sent_at.is_null())
        .filter(outbox::recipients.ne(HELD))
        .count()
        .get_result(conn)?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// The recipients of a message held for want of any: an alert fired when
/// neither its owner nor `alerts.platform_contact` had an address.
pub const HELD: &str = "";

/// Messages held for want of a recipient, oldest first: id and subject.
pub fn held_messages(conn: &mut AnyConnection) -> Result<Vec<(i64, String)>, DbError> {
    Ok(outbox::table
        .filter(outbox::sent_at.is_null())
        .filter(outbox::recipients.eq(HELD))
        .order(outbox::id)
        .select((outbox::id, outbox::subject))
        .load(conn)?)
}

/// Gives every held message recipients `to` and makes it due at `now`;
/// returns how many.
pub fn release_held(
    conn: &mut AnyConnection,
    to: &str,
    now: NaiveDateTime,
) -> Result<usize, DbError> {
    Ok(diesel::update(
        outbox::table
            .filter(outbox::sent_at.is_null())
            .filter(outbox::recipients.eq(HELD)),
    )
    .set((outbox::recipients.eq(to), outbox::next_attempt_at.eq(now)))
    .execute(conn)?)
}

/// Records that the server accepted message `id`.
pub fn mark_sent(conn: &mut AnyConnection, id: i64, at: NaiveDateTime) -> Result<(), DbError> {
    diesel::update(outbox::table.filter(outbox::id.eq(id)))
        .set((
            outbox::sent_at.eq(Some(at)),
            outbox::attempts.eq(outbox::attempts + 1),
        ))
        .execute(conn)?;
    Ok(())
}

/// Records a failed attempt and when to try again.
pub fn mark_failed(
    conn: &mut AnyConnection,
    id: i64,
    error: &str,
    retry_at: NaiveDateTime,
) -> Result<(), DbError> {
    diesel::update(outbox::table.filter(outbox::id.eq(id)))
        .set((
            outbox::attempts.eq(outbox::attempts + 1),
            outbox::next_attempt_at.eq(retry_at),
            outbox::last_error.eq(Some(error)),
        ))
        .execute(conn)?;
    Ok(())
}

/// Times of the gateway rows in `[from_ms, to_ms)` billed at zero cost
/// though they carry tokens and were not served from a cache.
pub fn billed_at_zero_cost(
    conn: &mut AnyConnection,
    (from_ms, to_ms): (i64, i64),
) -> Result<Vec<i64>, DbError> {
    Ok(usage_rows::table
        .filter(usage_rows::side.eq("gateway"))
        .filter(usage_rows::ts_ms.ge(from_ms))
        .filter(usage_rows::ts_ms.lt(to_ms))
        .filter(usage_rows::reported_cost_nanos.eq(0))
        .filter(usage_rows::cache_hit.eq(false))
        .filter(
            usage_rows::input_tokens
                .gt(0)
                .or(usage_rows::output_tokens.gt(0)),
        )
        .select(usage_rows::ts_ms)
        .load(conn)?)
}

/// Times of the client rows in `[from_ms, to_ms)` that were streamed,
/// logged without usage, and paired with a billed gateway row by run
/// `run_id`.
pub fn streamed_without_usage(
    conn: &mut AnyConnection,
    run_id: i64,
    (from_ms, to_ms): (i64, i64),
) -> Result<Vec<i64>, DbError> {
    Ok(usage_rows::table
        .inner_join(verdicts::table)
        .filter(verdicts::run_id.eq(run_id))
        .filter(verdicts::class.eq_any([
            "matched",
            "token_mismatch",
            "model_mismatch",
            "cost_variance",
        ]))
        .filter(usage_rows::side.eq("client"))
        .filter(usage_rows::ts_ms.ge(from_ms))
        .filter(usage_rows::ts_ms.lt(to_ms))
        .filter(usage_rows::stream.eq(true))
        .filter(usage_rows::input_tokens.is_null())
        .filter(usage_rows::output_tokens.is_null())
        .select(usage_rows::ts_ms)
        .load(conn)?)
}

#[cfg(feature = "postgres")]
#[derive(QueryableByName)]
struct Locked {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    locked: bool,
}

/// The advisory lock key of a job: the first 8 bytes of SHA-256 of its
/// name, so every replica computes the same key.
#[cfg(feature = "postgres")]
fn job_key(job: &str) -> i64 {
    use sha2::Digest;
    let d = sha2::Sha256::digest(format!("tally-job:{job}").as_bytes());
    let mut b = [0_u8; 8];
    b.copy_from_slice(&d[..8]);
    i64::from_be_bytes(b)
}

/// Takes job `job`'s lock for `holder`, or returns false when another
/// holds it. PostgreSQL: a session advisory lock on this connection (keep
/// the connection until [`unlock_job`]; a crashed holder's lock goes with
/// its connection). SQLite: a lease row until `until`, taken over only
/// once expired.
pub fn try_lock_job(
    conn: &mut AnyConnection,
    job: &str,
    holder: &str,
    now: NaiveDateTime,
    until: NaiveDateTime,
) -> Result<bool, DbError> {
    match conn {
        #[cfg(feature = "postgres")]
        AnyConnection::Postgresql(c) => {
            // The lock lives with the session: no holder, no lease.
            let _ = (holder, now, until);
            let r: Locked = diesel::sql_query("SELECT pg_try_advisory_lock($1) AS locked")
                .bind::<diesel::sql_types::BigInt, _>(job_key(job))
                .get_result(c)?;
            Ok(r.locked)
        }
        #[cfg(feature = "sqlite")]
        AnyConnection::Sqlite(c) => {
            // An upsert that only takes over an expired lease.
            let n = diesel::sql_query(
                "INSERT INTO job_locks (job, holder, expires_at) VALUES (?, ?, ?) \
                 ON CONFLICT (job) DO UPDATE SET holder = excluded.holder, \
                 expires_at = excluded.expires_at WHERE job_locks.expires_at < ?",
            )
            .bind::<diesel::sql_types::Text, _>(job)
            .bind::<diesel::sql_types::Text, _>(holder)
            .bind::<diesel::sql_types::Timestamp, _>(until)
            .bind::<diesel::sql_types::Timestamp, _>(now)
            .execute(c)?;
            Ok(n == 1)
        }
    }
}

/// Releases what [`try_lock_job`] took.
pub fn unlock_job(conn: &mut AnyConnection, job: &str, holder: &str) -> Result<(), DbError> {
    match conn {
        #[cfg(feature = "postgres")]
        AnyConnection::Postgresql(c) => {
            let _ = holder;
            let _: Locked = diesel::sql_query("SELECT pg_advisory_unlock($1) AS locked")
                .bind::<diesel::sql_types::BigInt, _>(job_key(job))
                .get_result(c)?;
        }
        #[cfg(feature = "sqlite")]
        AnyConnection::Sqlite(c) => {
            diesel::delete(
                job_locks::table
                    .filter(job_locks::job.eq(job))
                    .filter(job_locks::holder.eq(holder)),
            )
            .execute(c)?;
        }
    }
    Ok(())
}
