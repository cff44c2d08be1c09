//! Scheduled jobs of `tally serve`: reconcile the trailing window,
//! evaluate quotas, send the outbox, and the daily digest. Each job runs on
//! its own thread at the times its cron expression gives (UTC), never
//! overlaps itself, and with several replicas on one PostgreSQL runs on one
//! of them at a time (a lock in the store: [`repo::try_lock_job`]).
//!
//! A driver like the command line and the server: it calls use cases and
//! logs their failures, once, here.

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use cron::Schedule;

use crate::app::{alerts, follow_up, quotas};
use crate::clock::Clock;
use crate::db::{Pool, repo};
use crate::mail;
use crate::settings::Settings;

fn now_of(clock: Clock) -> Result<DateTime<Utc>> {
    Ok(crate::clock::utc_of(clock()?)?)
}

/// Parses a cron expression (with a seconds field).
pub fn parse(expr: &str) -> Result<Schedule, cron::error::Error> {
    Schedule::from_str(expr)
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
                let n = follow_up::reconcile_trailing(&mut conn, settings, clock)?;
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
            crate::app::panic_message(p.as_ref())
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
