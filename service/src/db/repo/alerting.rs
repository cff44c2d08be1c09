//! Quotas, alerts, the outbox and job locks.

// The parent's imports and helpers: these files are sections of one repository.
use super::*;
use diesel::dsl::sql;
use diesel::sql_types::Bool;

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

/// Gives the firing alert of this cause new figures (title and detail);
/// a resolved one stays as it was.
pub fn update_open_alert(
    conn: &mut AnyConnection,
    rule: &str,
    scope: &str,
    period: &str,
    threshold: i64,
    title: &str,
    detail: &str,
) -> Result<(), DbError> {
    diesel::update(
        alerts::table
            .filter(alerts::rule.eq(rule))
            .filter(alerts::scope.eq(scope))
            .filter(alerts::period.eq(period))
            .filter(alerts::threshold.eq(threshold))
            .filter(alerts::state.eq("firing")),
    )
    .set((alerts::title.eq(title), alerts::detail.eq(detail)))
    .execute(conn)?;
    Ok(())
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
        // As the partial index `usage_rows_billed_zero` is defined.
        .filter(sql::<Bool>("usage_rows.reported_cost_nanos = 0"))
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
///
/// Two steps, the candidates by their partial index and then their
/// verdicts by primary key, not one join: joined, PostgreSQL statistics
/// that had not yet seen the run (one verdict estimated for it) gave both
/// join orders the same cost, and starting from the run's verdicts walked
/// all 19.8M of a 10M-row day's, probing the partial index for each:
/// 9.85 s against milliseconds. No statistics change this plan.
pub fn streamed_without_usage(
    conn: &mut AnyConnection,
    run_id: i64,
    (from_ms, to_ms): (i64, i64),
) -> Result<Vec<i64>, DbError> {
    let candidates: Vec<(i64, i64)> = usage_rows::table
        .filter(usage_rows::side.eq("client"))
        .filter(usage_rows::ts_ms.ge(from_ms))
        .filter(usage_rows::ts_ms.lt(to_ms))
        // As the partial index `usage_rows_stream_no_usage` is defined.
        .filter(sql::<Bool>(
            "usage_rows.stream IS TRUE AND usage_rows.input_tokens IS NULL \
             AND usage_rows.output_tokens IS NULL",
        ))
        .select((usage_rows::id, usage_rows::ts_ms))
        .load(conn)?;
    let mut times = Vec::new();
    // Ids per lookup as rows per insert: well under both bind limits.
    for chunk in candidates.chunks(CHUNK) {
        let ids: Vec<i64> = chunk.iter().map(|&(id, _)| id).collect();
        let paired: std::collections::HashSet<i64> = verdicts::table
            .filter(verdicts::run_id.eq(run_id))
            .filter(verdicts::usage_row_id.eq_any(&ids))
            .filter(verdicts::class.eq_any([
                "matched",
                "token_mismatch",
                "model_mismatch",
                "cost_variance",
            ]))
            .select(verdicts::usage_row_id)
            .load::<i64>(conn)?
            .into_iter()
            .collect();
        times.extend(
            chunk
                .iter()
                .filter(|(id, _)| paired.contains(id))
                .map(|&(_, ts)| ts),
        );
    }
    Ok(times)
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
