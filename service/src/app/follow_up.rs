//! What follows a run or an ingest: the run's alerts, then the quotas.
//! Every way a run starts (the command line, the API, a page, the
//! schedule) comes through [`run_and_alert`], so each raises the same
//! alerts and queues the same messages.

use chrono::{DateTime, NaiveDateTime, Utc};
use tally_reconcile::time::{DAY_MS, format_ms};
use tally_schema::convert::naive_from_ms;

use super::error::AppError;
use super::{alerts, quotas};
use crate::clock::{Clock, utc_of};
use crate::db::{AnyConnection, repo};
use crate::settings::Settings;

/// What a run or an ingest set off: the run's alerts, then the quotas.
/// A failure of either is logged where it happens and kept here as text:
/// it never fails the run or ingest that is already stored.
#[derive(Debug, Default)]
pub struct FollowUp {
    /// The run's alerts (`None` after an ingest).
    pub alerts: Option<Result<alerts::RunAlerts, String>>,
    /// The quotas measured.
    pub quotas: Option<Result<quotas::Evaluated, String>>,
}

/// A run's alerts, then the quotas.
pub fn after_run(
    conn: &mut AnyConnection,
    settings: &Settings,
    run_id: i64,
    window: (i64, i64),
    now: DateTime<Utc>,
) -> FollowUp {
    // Before the alerts read the run: stale statistics can make that read
    // take minutes. A failure only costs time, so it does not stop them.
    if let Err(e) = repo::refresh_run_statistics(conn) {
        tracing::warn!(run_id, error = %e, "refreshing the store's statistics failed");
    }
    let alerts = match alerts::raise_for_run(conn, settings, run_id, window, now) {
        Ok(a) => {
            tracing::info!(
                run_id,
                fired = a.fired,
                resolved = a.resolved,
                queued = a.queued,
                "run alerts"
            );
            Ok(a)
        }
        Err(e) => {
            tracing::error!(run_id, error = %e, "run alerts failed");
            Err(e.to_string())
        }
    };
    FollowUp {
        alerts: Some(alerts),
        ..after_ingest(conn, settings, now)
    }
}

/// The quotas, after new usage.
pub fn after_ingest(conn: &mut AnyConnection, settings: &Settings, now: DateTime<Utc>) -> FollowUp {
    let quotas = match quotas::evaluate(conn, settings, now) {
        Ok(q) => {
            tracing::info!(
                quotas = q.quotas,
                fired = q.fired,
                resolved = q.resolved,
                queued = q.queued,
                "quotas evaluated"
            );
            Ok(q)
        }
        Err(e) => {
            tracing::error!(error = %e, "quota evaluation failed");
            Err(e.to_string())
        }
    };
    FollowUp {
        alerts: None,
        quotas: Some(quotas),
    }
}

/// Reconciles a window, then raises what it found: the run's alerts, then
/// quotas. Every way a run starts (CLI, API, page, schedule) comes here.
/// Returns the run and what its alerts and the quotas did.
pub fn run_and_alert(
    conn: &mut AnyConnection,
    readers: &mut [&mut AnyConnection],
    config: &Settings,
    window: (i64, i64),
    slice_rows: i64,
    engine: tally_reconcile::report::EngineSettings,
    clock: Clock,
) -> Result<(super::run::RunOutcome, FollowUp), AppError> {
    let mut o = super::run::run(conn, readers, window, slice_rows, engine, clock)?;
    let now = utc_of(clock()?)?;
    let t0 = std::time::Instant::now();
    let said = after_run(conn, config, o.run.id, window, now);
    o.timings.follow_up = Some(t0.elapsed());
    Ok((o, said))
}

/// What one replica's scheduled reconcile did with the trailing days.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Trailing {
    /// Days this replica reconciled.
    pub ran: usize,
    /// Days another replica was reconciling.
    pub elsewhere: usize,
    /// Days some replica had already reconciled at or after this tick.
    pub done: usize,
}

/// How long a day's lease lasts on SQLite, where a crashed holder cannot
/// release it (PostgreSQL's advisory lock goes with its connection).
const DAY_LEASE_MS: i64 = 3_600_000;

/// Reconciles each UTC day of the trailing window as its own run (so a
/// day's new run supersedes that day's last one and runs never overlap).
///
/// Sharded by day across replicas: each day has its own lock, held on
/// `lock` while the day runs on `conn`, so replicas sharing a store split
/// the days between them instead of queueing for one job lock. A day whose
/// latest run started at or after `tick` (the schedule's time for this
/// round, the same on every replica) was reconciled this round already and
/// is skipped: each day runs once per tick however many replicas wake. A
/// replica that dies mid-run rolls its run back and, on PostgreSQL, drops
/// its lock with its connection; the next tick reconciles the day again.
pub fn reconcile_trailing(
    lock: &mut AnyConnection,
    conn: &mut AnyConnection,
    readers: &mut [&mut AnyConnection],
    settings: &Settings,
    clock: Clock,
    tick: i64,
    holder: &str,
) -> Result<Trailing, AppError> {
    let now = clock()?;
    let back = i64::try_from(settings.schedule.reconcile_window_h)
        .unwrap_or(48)
        .saturating_mul(3_600_000);
    let first = (now - back) - (now - back).rem_euclid(DAY_MS);
    let tick_at = naive_from_ms(tick)?;
    let mut done = Trailing::default();
    let mut day = first;
    while day <= now {
        let window = (day, day + DAY_MS);
        let date = format_ms(day);
        let date = date.get(..10).unwrap_or(&date);
        let name = format!("reconcile {date}");
        let at = clock()?;
        if !repo::try_lock_job(
            lock,
            &name,
            holder,
            naive_from_ms(at)?,
            naive_from_ms(at + DAY_LEASE_MS)?,
        )? {
            tracing::debug!(day = %date, "another replica has the day");
            done.elsewhere += 1;
            day += DAY_MS;
            continue;
        }
        let ran = reconcile_day(conn, &mut *readers, settings, clock, window, tick_at, date);
        repo::unlock_job(lock, &name, holder)?;
        match ran? {
            true => done.ran += 1,
            false => done.done += 1,
        }
        day += DAY_MS;
    }
    Ok(done)
}

/// One day of [`reconcile_trailing`], its lock held: false when a run of
/// it started at or after `tick` already.
fn reconcile_day(
    conn: &mut AnyConnection,
    readers: &mut [&mut AnyConnection],
    settings: &Settings,
    clock: Clock,
    window: (i64, i64),
    tick: NaiveDateTime,
    date: &str,
) -> Result<bool, AppError> {
    let bounds = (naive_from_ms(window.0)?, naive_from_ms(window.1)?);
    if repo::latest_run_start(conn, bounds)?.is_some_and(|t| t >= tick) {
        return Ok(false);
    }
    tracing::info!(day = %date, "reconciling day");
    let engine = super::reconcile::settings(None, None, None)?;
    let (o, _) = run_and_alert(
        conn,
        readers,
        settings,
        window,
        super::run::DEFAULT_SLICE_ROWS,
        engine,
        clock,
    )?;
    tracing::info!(day = %date, run_id = o.run.id, "day reconciled");
    Ok(true)
}
