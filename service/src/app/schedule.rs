//! Scheduled jobs of `tally serve`: reconcile the trailing window,
//! evaluate quotas, send the outbox, and the daily digest. Each job runs on
//! its own thread at the times its cron expression gives (UTC), never
//! overlaps itself, and with several replicas on one PostgreSQL runs on one
//! of them at a time (a lock in the store: [`repo::try_lock_job`]).

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use cron::Schedule;
use tally_reconcile::time::DAY_MS;

use super::{alerts, quotas};
use crate::db::{AnyConnection, Pool, repo};
use crate::mail;
use crate::settings::Settings;

/// Parses a cron expression (with a seconds field).
pub fn parse(expr: &str) -> Result<Schedule, cron::error::Error> {
    Schedule::from_str(expr)
}

/// A clock: UTC milliseconds now.
pub type Clock = fn() -> Result<i64>;

fn now_of(clock: Clock) -> Result<DateTime<Utc>> {
    let ms = clock()?;
    DateTime::from_timestamp_millis(ms).context("clock out of range")
}

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
    config: &Settings,
    window: (i64, i64),
    slice_rows: i64,
    engine: tally_reconcile::report::Settings,
    clock: Clock,
) -> Result<(super::run::RunOutcome, FollowUp), super::error::AppError> {
    let o = super::run::run(conn, window, slice_rows, engine, clock)?;
    let now = now_of(clock).map_err(|e| super::error::AppError::Internal(format!("{e:#}")))?;
    let said = after_run(conn, config, o.run.id, window, now);
    Ok((o, said))
}

/// Reconciles each UTC day of the trailing window as its own run (so a
/// day's new run supersedes that day's last one and runs never overlap).
pub fn reconcile_trailing(
    conn: &mut AnyConnection,
    settings: &Settings,
    clock: Clock,
) -> Result<usize> {
    let now = clock()?;
    let back = i64::try_from(settings.schedule.reconcile_window_h)
        .unwrap_or(48)
        .saturating_mul(3_600_000);
    let first = (now - back) - (now - back).rem_euclid(DAY_MS);
    let mut day = first;
    let mut runs = 0;
    while day <= now {
        let engine = super::reconcile::settings(None, None, None)?;
        run_and_alert(
            conn,
            settings,
            (day, day + DAY_MS),
            super::run::DEFAULT_SLICE_ROWS,
            engine,
            clock,
        )?;
        runs += 1;
        day += DAY_MS;
    }
    Ok(runs)
}

/// Runs one job now, under its lock; `Ok(false)` when another process
/// holds the lock (it is running there).
pub fn run_job(
    pool: &Pool,
    name: &str,
    settings: &Settings,
    clock: Clock,
    holder: &str,
) -> Result<bool> {
    let mut lock = pool.get().context("store connection for the job lock")?;
    let now = now_of(clock)?;
    let until = now + chrono::Duration::hours(1);
    if !repo::try_lock_job(&mut lock, name, holder, now.naive_utc(), until.naive_utc())? {
        tracing::debug!(job = name, "held by another process");
        return Ok(false);
    }
    let job = || -> Result<()> {
        let mut conn = pool.get().context("store connection")?;
        match name {
            "reconcile" => {
                let n = reconcile_trailing(&mut conn, settings, clock)?;
                tracing::info!(job = name, runs = n, "done");
            }
            "quotas" => {
                let q = quotas::evaluate(&mut conn, settings, now_of(clock)?)?;
                tracing::info!(
                    job = name,
                    quotas = q.quotas,
                    fired = q.fired,
                    queued = q.queued,
                    "done"
                );
            }
            "outbox" => {
                let mailer = mail::Mailer::new(&settings.email)?;
                let f = mail::flush(&mut conn, &mailer, now_of(clock)?.naive_utc())?;
                if f.sent + f.failed > 0 {
                    tracing::info!(
                        job = name,
                        sent = f.sent,
                        failed = f.failed,
                        waiting = f.waiting,
                        "done"
                    );
                }
            }
            "digest" => {
                let n = alerts::digest(&mut conn, settings, now_of(clock)?)?;
                tracing::info!(job = name, queued = n, "done");
            }
            other => anyhow::bail!("no job named {other}"),
        }
        Ok(())
    };
    // A panicking job is a failed run: its lock is released and the
    // schedule goes on (its connection, if inside a transaction, is closed
    // by the pool, rolling back).
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).unwrap_or_else(|p| {
        Err(anyhow::anyhow!(
            "the job panicked: {}",
            super::panic_message(p.as_ref())
        ))
    });
    repo::unlock_job(&mut lock, name, holder)?;
    result.map(|()| true)
}

/// The running jobs; dropping it does not stop them, [`Scheduler::stop`] does.
pub struct Scheduler {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Scheduler {
    /// Starts a thread per configured job.
    pub fn start(pool: Pool, settings: Settings, clock: Clock) -> Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut salt = [0_u8; 8];
        getrandom::fill(&mut salt).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
        let holder = format!(
            "pid{}-{:016x}",
            std::process::id(),
            u64::from_le_bytes(salt)
        );
        let mut threads = Vec::new();
        for (name, expr) in settings.schedule.jobs() {
            if expr.trim().is_empty() {
                continue;
            }
            let schedule = parse(expr).map_err(|e| anyhow::anyhow!("schedule.{name}: {e}"))?;
            let (pool, settings, stop, holder) =
                (pool.clone(), settings.clone(), stop.clone(), holder.clone());
            tracing::info!(job = name, cron = expr, "scheduled");
            threads.push(
                std::thread::Builder::new()
                    .name(format!("job-{name}"))
                    .spawn(move || {
                        job_loop(name, &schedule, &pool, &settings, clock, &holder, &stop)
                    })?,
            );
        }
        Ok(Self { stop, threads })
    }

    /// Stops every job after the run in progress, and waits for them.
    pub fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

fn job_loop(
    name: &str,
    schedule: &Schedule,
    pool: &Pool,
    settings: &Settings,
    clock: Clock,
    holder: &str,
    stop: &AtomicBool,
) {
    while !stop.load(Ordering::SeqCst) {
        let Ok(now) = now_of(clock) else { return };
        let Some(next) = schedule.after(&now).next() else {
            return;
        };
        // Sleep in short steps so a stop is seen within half a second.
        loop {
            if stop.load(Ordering::SeqCst) {
                return;
            }
            let Ok(now) = now_of(clock) else { return };
            let left = (next - now).num_milliseconds();
            if left <= 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(
                u64::try_from(left.min(500)).unwrap_or(500),
            ));
        }
        // The job's own errors are logged here, once; the schedule goes on.
        if let Err(e) = run_job(pool, name, settings, clock, holder) {
            tracing::error!(job = name, error = format!("{e:#}"), "job failed");
        }
    }
}
