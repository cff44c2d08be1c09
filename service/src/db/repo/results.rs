//! Runs, their verdicts, counts and daily sums.

// The parent's imports and helpers: these files are sections of one repository.
use super::*;

/// Calls `each` with a side's stored rows with `from_ms <= ts_ms < to_ms`,
/// in time then id order (so a run sees them in a deterministic order).
/// Streamed: only the caller's copy of each row is kept. Stops at the
/// first error `each` returns.
///
/// A row's names come as SQLite's one JSON array or PostgreSQL's nine
/// columns ([`tally_schema::rows::StoredNames`]), and PostgreSQL's rows are streamed.
pub fn each_usage_in<E: From<DbError>>(
    conn: &mut AnyConnection,
    side: &str,
    (from_ms, to_ms): (i64, i64),
    mut each: impl FnMut(UsageRow) -> Result<(), E>,
) -> Result<(), E> {
    macro_rules! each_row {
        ($c:expr, $names:expr, $mode:ty) => {{
            let query = usage_rows::table
                .filter(usage_rows::side.eq(side))
                .filter(usage_rows::ts_ms.ge(from_ms))
                .filter(usage_rows::ts_ms.lt(to_ms))
                .order((usage_rows::ts_ms, usage_rows::id))
                .select((
                    usage_rows::id,
                    usage_rows::ts_ms,
                    $names,
                    usage_rows::request_id,
                    usage_rows::response_id,
                    usage_rows::input_tokens,
                    usage_rows::cached_input_tokens,
                    usage_rows::cache_write_tokens,
                    usage_rows::output_tokens,
                    usage_rows::reasoning_tokens,
                    usage_rows::reported_cost_nanos,
                    usage_rows::reported_cost_exact,
                    usage_rows::stream,
                    usage_rows::cache_hit,
                    usage_rows::failed,
                ));
            for row in query
                .load_iter::<UsageRow, $mode>($c)
                .map_err(DbError::from)?
            {
                each(row.map_err(DbError::from)?)?;
            }
        }};
    }
    // Measured at 1M rows a side: SQLite's `json_array` of the nine costs
    // it 0.35 s a side and saves diesel more; PostgreSQL's
    // `json_build_array` costs the server 1 s a side, more than it saves.
    match conn {
        #[cfg(feature = "sqlite")]
        AnyConnection::Sqlite(c) => each_row!(
            c,
            diesel::dsl::sql::<diesel::sql_types::Text>(
                "json_array(usage_rows.key_name, usage_rows.model, usage_rows.served_model, \
                 usage_rows.route, usage_rows.team, usage_rows.service, usage_rows.env, \
                 usage_rows.tags, usage_rows.key_alias)"
            ),
            diesel::connection::DefaultLoadingMode
        ),
        // Row by row: libpq's default holds the whole result (a slice's
        // rows) in memory before the first is decoded, beside the engine's
        // copy of them.
        #[cfg(feature = "postgres")]
        AnyConnection::Postgresql(c) => each_row!(
            c,
            (
                usage_rows::key_name,
                usage_rows::model,
                usage_rows::served_model,
                usage_rows::route,
                usage_rows::team,
                usage_rows::service,
                usage_rows::env,
                usage_rows::tags,
                usage_rows::key_alias,
            ),
            diesel::pg::PgRowByRowLoadingMode
        ),
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

/// Verdicts per INSERT: 8 columns x 4,000 stays under both backends'
/// bind parameter limits.
#[cfg(feature = "sqlite")]
pub(super) const VERDICT_CHUNK: usize = 4_000;

/// Adds a run (its counts are filled in by [`finish_run`]). Call inside a
/// transaction with [`insert_verdicts`] and [`finish_run`], so a report
/// sees the old run or the new one, never a mix.
pub fn begin_run(conn: &mut AnyConnection, run: &NewRun<'_>) -> Result<i64, DbError> {
    Ok(on_backend!(conn, c => diesel::insert_into(runs::table)
        .values(run)
        .returning(runs::id)
        .get_result(c))?)
}

/// Adds verdicts to a run (their `run_id` is set here). Their
/// attributions go in with [`insert_attributions`], in the same
/// transaction.
pub fn insert_verdicts(
    conn: &mut AnyConnection,
    run_id: i64,
    verdicts: &mut [NewVerdict],
) -> Result<(), DbError> {
    for v in verdicts.iter_mut() {
        v.run_id = run_id;
    }
    on_backend!(conn, c => BulkInsert::insert_verdicts(c, verdicts))?;
    Ok(())
}

/// Adds a run's attributions (their `run_id` is set here): whom its
/// verdicts are charged to.
pub fn insert_attributions(
    conn: &mut AnyConnection,
    run_id: i64,
    mut rows: Vec<AttributionRow>,
) -> Result<(), DbError> {
    for r in &mut rows {
        r.run_id = run_id;
    }
    // 8 values a row: well under SQLite's 32,766 bound parameters.
    for chunk in rows.chunks(2000) {
        on_backend!(conn, c => diesel::insert_into(run_attributions::table).values(chunk).execute(c))?;
    }
    Ok(())
}

/// Brings PostgreSQL's statistics of `run_attributions` up to date once a
/// run is stored; nothing on SQLite, whose planner keeps none unless told.
///
/// Every read of verdicts joins a run's attributions on `(run_id,
/// attribution_id)`. Statistics taken while the table held no run, or only
/// runs that are all among its most common values (its first hundred),
/// estimate one attribution for any newer run, and the planner then joins
/// them without probing: the run alerts' read of a 10M-row day's 49,095
/// unattributed rows took 3.0 s scanning all 1,200 attributions for every
/// verdict, and 151.2 s scanning the verdicts for every attribution
/// (0.25 s planned right).
/// Autovacuum re-analyzes only after a tenth of the table has changed,
/// and the alerts read the run the moment it is stored. The table holds a
/// few thousand rows a run, so this samples at most 30,000 of them.
///
/// It waits at most five seconds for the table's lock (another replica's
/// ANALYZE, a vacuum that cannot be cancelled), then gives up with an error.
pub fn refresh_run_statistics(conn: &mut AnyConnection) -> Result<(), DbError> {
    match conn {
        #[cfg(feature = "postgres")]
        AnyConnection::Postgresql(c) => {
            use diesel::connection::SimpleConnection;
            c.transaction(|c| {
                c.batch_execute("SET LOCAL lock_timeout = '5s'; ANALYZE run_attributions")
            })?;
        }
        #[cfg(feature = "sqlite")]
        AnyConnection::Sqlite(_) => {}
    }
    Ok(())
}

/// `run_attributions` joined to `verdicts` on the run and the number: a
/// verdict's key, owner and model family, which [`VerdictRow`] selects.
macro_rules! attribution {
    () => {
        run_attributions::table.on(run_attributions::run_id
            .eq(verdicts::run_id)
            .and(run_attributions::id.eq(verdicts::attribution_id)))
    };
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

/// When the latest run of exactly the window `[from, to)` started, if any
/// did: how a replica knows a day was already reconciled this tick.
pub fn latest_run_start(
    conn: &mut AnyConnection,
    (from, to): (NaiveDateTime, NaiveDateTime),
) -> Result<Option<NaiveDateTime>, DbError> {
    Ok(runs::table
        .filter(runs::window_from.eq(from))
        .filter(runs::window_to.eq(to))
        .select(diesel::dsl::max(runs::started_at))
        .first(conn)?)
}

/// One page of runs, newest first, and how many there are.
pub fn runs_page(
    conn: &mut AnyConnection,
    offset: i64,
    limit: i64,
) -> Result<(Vec<RunRow>, i64), DbError> {
    let total: i64 = runs::table.count().get_result(conn)?;
    let rows = runs::table
        .order(runs::id.desc())
        .offset(offset)
        .limit(limit)
        .select(RunRow::as_select())
        .load(conn)?;
    Ok((rows, total))
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
    /// Which side the row is on.
    pub side: EnumCol<SideKind>,
    /// The row's time, UTC ms.
    pub ts_ms: i64,
    /// Requested model as the source named it.
    pub model: String,
    /// Its route (`chat`, `embeddings`, …).
    pub route: String,
    /// Its request id.
    pub request_id: String,
    /// Input plus output tokens (`None` when the source had no usage).
    pub tokens: Option<i64>,
    /// The gateway's own name for the row's key ("" when none).
    pub key_alias: String,
}

/// The columns a [`JudgedRow`] is read from, in its order.
macro_rules! judged_columns {
    () => {
        (
            VerdictRow::as_select(),
            usage_rows::side,
            usage_rows::ts_ms,
            usage_rows::model,
            usage_rows::route,
            usage_rows::request_id,
            usage_rows::input_tokens,
            usage_rows::output_tokens,
            usage_rows::key_alias,
        )
    };
}

/// A verdict row joined with the columns of its usage row that reports show.
type JudgedRow = (
    VerdictRow,
    EnumCol<SideKind>,
    i64,
    String,
    String,
    String,
    Option<i64>,
    Option<i64>,
    String,
);

impl From<JudgedRow> for Judged {
    fn from(
        (verdict, side, ts_ms, model, route, request_id, input, output, key_alias): JudgedRow,
    ) -> Self {
        let tokens = match (input, output) {
            (None, None) => None,
            (i, o) => Some(i.unwrap_or(0).saturating_add(o.unwrap_or(0))),
        };
        Judged {
            verdict,
            side,
            ts_ms,
            model,
            route,
            request_id,
            tokens,
            key_alias,
        }
    }
}

/// A gateway row's verdict with everything needed to price it again.
#[derive(Debug, Clone)]
pub struct Billed {
    /// The verdict (owner, model family, Tally's price then).
    pub verdict: VerdictRow,
    /// The row's time, UTC ms.
    pub ts_ms: i64,
    /// Input, cached input, cache write, output and reasoning tokens, as
    /// stored (`None`: not reported).
    pub tokens: [Option<i64>; 5],
    /// The served model as the source named it ("" when not said).
    pub served_model: String,
    /// The batch that stored the row.
    pub batch_id: i64,
}

/// Calls `each` with every gateway row in `[from_ms, to_ms)` and the
/// verdict of the newest current run on it, in row id order, streamed.
pub fn each_current_billed(
    conn: &mut AnyConnection,
    (from_ms, to_ms): (i64, i64),
    mut each: impl FnMut(Billed),
) -> Result<(), DbError> {
    type Row = (
        VerdictRow,
        i64,
        Option<i64>,
        Option<i64>,
        Option<i64>,
        Option<i64>,
        Option<i64>,
        String,
        i64,
    );
    let query = verdicts::table
        .inner_join(runs::table)
        .inner_join(usage_rows::table)
        .inner_join(attribution!())
        .filter(runs::status.eq("current"))
        .filter(usage_rows::side.eq(EnumCol(SideKind::Gateway)))
        .filter(usage_rows::ts_ms.ge(from_ms))
        .filter(usage_rows::ts_ms.lt(to_ms))
        .order((verdicts::usage_row_id, verdicts::run_id.desc()))
        .select((
            VerdictRow::as_select(),
            usage_rows::ts_ms,
            usage_rows::input_tokens,
            usage_rows::cached_input_tokens,
            usage_rows::cache_write_tokens,
            usage_rows::output_tokens,
            usage_rows::reasoning_tokens,
            usage_rows::served_model,
            usage_rows::batch_id,
        ));
    newest_per_row(
        query.load_iter::<Row, _>(conn)?,
        |r| r.0.usage_row_id,
        |row| {
            let (verdict, ts_ms, i, c, w, o, r, served_model, batch_id) = row;
            each(Billed {
                verdict,
                ts_ms,
                tokens: [i, c, w, o, r],
                served_model,
                batch_id,
            });
        },
    )
}

/// Calls `each` with the verdict of the newest current run on every row
/// with `from_ms <= ts_ms < to_ms` (of one side, when given), in row id
/// order. Streamed: a report over ten million rows holds one at a time.
pub fn each_current_verdict(
    conn: &mut AnyConnection,
    side: Option<SideKind>,
    (from_ms, to_ms): (i64, i64),
    mut each: impl FnMut(Judged),
) -> Result<(), DbError> {
    let mut query = verdicts::table
        .inner_join(runs::table)
        .inner_join(usage_rows::table)
        .inner_join(attribution!())
        .filter(runs::status.eq("current"))
        .filter(usage_rows::ts_ms.ge(from_ms))
        .filter(usage_rows::ts_ms.lt(to_ms))
        .order((verdicts::usage_row_id, verdicts::run_id.desc()))
        .select(judged_columns!())
        .into_boxed();
    if let Some(side) = side {
        query = query.filter(usage_rows::side.eq(EnumCol(side)));
    }
    newest_per_row(
        query.load_iter::<JudgedRow, _>(conn)?,
        |r| r.0.usage_row_id,
        |r| each(Judged::from(r)),
    )
}

/// Streams verdicts that come in row order, newest run first, keeping the
/// first (the newest current run's) verdict of each row.
fn newest_per_row<T>(
    rows: impl Iterator<Item = diesel::QueryResult<T>>,
    row_id: impl Fn(&T) -> i64,
    mut each: impl FnMut(T),
) -> Result<(), DbError> {
    let mut last: Option<i64> = None;
    for row in rows {
        let row = row?;
        let id = row_id(&row);
        if last != Some(id) {
            last = Some(id);
            each(row);
        }
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
    classes: &[Class],
    mut each: impl FnMut(Judged),
) -> Result<(), DbError> {
    let query = verdicts::table
        .inner_join(usage_rows::table)
        .inner_join(attribution!())
        .filter(verdicts::run_id.eq(run_id))
        .filter(verdicts::class.eq_any(stored(classes)))
        .filter(not_matched())
        .order((usage_rows::ts_ms, verdicts::usage_row_id))
        .select(judged_columns!());
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

/// Calls `each` with every rollup of `run_ids` in `[from_ms, to_ms)`, or
/// only those of one owner (team, service, env) when given.
pub fn each_rollup(
    conn: &mut AnyConnection,
    run_ids: &[i64],
    owner: Option<(&str, &str, &str)>,
    (from_ms, to_ms): (i64, i64),
    mut each: impl FnMut(RollupRow),
) -> Result<(), DbError> {
    let mut query = run_rollups::table
        .filter(run_rollups::run_id.eq_any(run_ids))
        .filter(run_rollups::day_ms.ge(from_ms))
        .filter(run_rollups::day_ms.lt(to_ms))
        .select(RollupRow::as_select())
        .into_boxed();
    if let Some((team, service, env)) = owner {
        query = query
            .filter(run_rollups::team.eq(team.to_owned()))
            .filter(run_rollups::service.eq(service.to_owned()))
            .filter(run_rollups::env.eq(env.to_owned()));
    }
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
    classes: &[Class],
    owner: Option<(&str, &str, &str)>,
    (from_ms, to_ms): (i64, i64),
    limit: i64,
    mut each: impl FnMut(Judged),
) -> Result<(), DbError> {
    let mut query = verdicts::table
        .inner_join(usage_rows::table)
        .inner_join(attribution!())
        .filter(verdicts::run_id.eq_any(run_ids))
        .filter(verdicts::class.eq_any(stored(classes)))
        .filter(not_matched())
        .filter(usage_rows::ts_ms.ge(from_ms))
        .filter(usage_rows::ts_ms.lt(to_ms))
        .order((verdicts::run_id, verdicts::class, verdicts::usage_row_id))
        .limit(limit)
        .select(judged_columns!())
        .into_boxed();
    if let Some((team, service, env)) = owner {
        query = query
            .filter(run_attributions::team.eq(team.to_owned()))
            .filter(run_attributions::service.eq(service.to_owned()))
            .filter(run_attributions::env.eq(env.to_owned()));
    }
    for row in query.load_iter::<JudgedRow, _>(conn)? {
        each(Judged::from(row?));
    }
    Ok(())
}

/// Classes as their column values.
fn stored(classes: &[Class]) -> Vec<EnumCol<Class>> {
    classes.iter().copied().map(EnumCol).collect()
}

/// Current runs overlapping `[from_ms, to_ms)`: (window from, window to,
/// finished), in ms, by start.
pub fn current_run_windows(
    conn: &mut AnyConnection,
    (from_ms, to_ms): (i64, i64),
) -> Result<Vec<(i64, i64, i64)>, DbError> {
    let (Ok(from), Ok(to)) = (
        tally_schema::convert::naive_from_ms(from_ms),
        tally_schema::convert::naive_from_ms(to_ms),
    ) else {
        return Ok(Vec::new());
    };
    let rows: Vec<(NaiveDateTime, NaiveDateTime, NaiveDateTime)> = runs::table
        .filter(runs::status.eq("current"))
        .filter(runs::window_from.lt(to))
        .filter(runs::window_to.gt(from))
        .order(runs::window_from)
        .select((runs::window_from, runs::window_to, runs::finished_at))
        .load(conn)?;
    let ms = |t: NaiveDateTime| t.and_utc().timestamp_millis();
    Ok(rows
        .into_iter()
        .map(|(a, b, f)| (ms(a), ms(b), ms(f)))
        .collect())
}

/// Stored rows (both sides) with `from_ms <= ts_ms < to_ms`; with
/// `ingested_after_ms`, only those whose batch was stored after it.
pub fn count_rows_in(
    conn: &mut AnyConnection,
    (from_ms, to_ms): (i64, i64),
    ingested_after_ms: Option<i64>,
) -> Result<i64, DbError> {
    // Usually no batch came after the run: say so from the batch table
    // alone, without counting the window's rows (a month page asks this on
    // every view).
    if let Some(after) = ingested_after_ms
        && let Ok(after) = tally_schema::convert::naive_from_ms(after)
    {
        let later: i64 = ingest_batches::table
            .filter(ingest_batches::ingested_at.gt(after))
            .count()
            .get_result(conn)?;
        if later == 0 {
            return Ok(0);
        }
    }
    let mut n = 0;
    for side in [SideKind::Client, SideKind::Gateway] {
        let mut q = usage_rows::table
            .inner_join(ingest_batches::table)
            .filter(usage_rows::side.eq(EnumCol(side)))
            .filter(usage_rows::ts_ms.ge(from_ms))
            .filter(usage_rows::ts_ms.lt(to_ms))
            .into_boxed();
        if let Some(after) = ingested_after_ms
            && let Ok(after) = tally_schema::convert::naive_from_ms(after)
        {
            q = q.filter(ingest_batches::ingested_at.gt(after));
        }
        n += q.count().get_result::<i64>(conn)?;
    }
    Ok(n)
}

/// The first and last row time (ms) stored in `[from_ms, to_ms)`, both
/// sides, if any.
pub fn rows_span(
    conn: &mut AnyConnection,
    (from_ms, to_ms): (i64, i64),
) -> Result<Option<(i64, i64)>, DbError> {
    use diesel::dsl::{max, min};
    let mut span: Option<(i64, i64)> = None;
    for side in [SideKind::Client, SideKind::Gateway] {
        let (lo, hi): (Option<i64>, Option<i64>) = usage_rows::table
            .filter(usage_rows::side.eq(EnumCol(side)))
            .filter(usage_rows::ts_ms.ge(from_ms))
            .filter(usage_rows::ts_ms.lt(to_ms))
            .select((min(usage_rows::ts_ms), max(usage_rows::ts_ms)))
            .first(conn)?;
        if let (Some(lo), Some(hi)) = (lo, hi) {
            span = Some(span.map_or((lo, hi), |(a, b)| (a.min(lo), b.max(hi))));
        }
    }
    Ok(span)
}

/// Calls `each` with every gateway row in `[from_ms, to_ms)`, the verdict
/// of the newest current run on it, and the tags of the client row it was
/// paired with ("" when none), in row id order, streamed.
pub fn each_current_billed_with_tags(
    conn: &mut AnyConnection,
    (from_ms, to_ms): (i64, i64),
    mut each: impl FnMut(VerdictRow, String),
) -> Result<(), DbError> {
    let client = diesel::alias!(usage_rows as client);
    let query = verdicts::table
        .inner_join(runs::table)
        .inner_join(usage_rows::table)
        .inner_join(attribution!())
        .left_join(client.on(verdicts::partner_row_id.eq(client.field(usage_rows::id).nullable())))
        .filter(runs::status.eq("current"))
        .filter(usage_rows::side.eq(EnumCol(SideKind::Gateway)))
        .filter(usage_rows::ts_ms.ge(from_ms))
        .filter(usage_rows::ts_ms.lt(to_ms))
        .order((verdicts::usage_row_id, verdicts::run_id.desc()))
        .select((
            VerdictRow::as_select(),
            client.field(usage_rows::tags).nullable(),
        ));
    newest_per_row(
        query.load_iter::<(VerdictRow, Option<String>), _>(conn)?,
        |r| r.0.usage_row_id,
        |(v, tags)| each(v, tags.unwrap_or_default()),
    )
}
