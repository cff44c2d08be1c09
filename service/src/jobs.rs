//! Scheduled jobs of `tally serve`: reconcile the trailing window,
//! evaluate quotas, send the outbox, and the daily digest. Each job runs on
//! its own thread at the times its cron expression gives (UTC), never
//! overlaps itself, and with several replicas on one PostgreSQL runs on one
//! of them at a time (a lock in the store: [`repo::try_lock_job`]).
//!
//! A driver like the command line and the server: it calls use cases and
//! logs their failures, once, here.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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

/// The jobs a schedule may name, in the order `/metrics` lists them.
pub const JOBS: [&str; 4] = ["reconcile", "quotas", "outbox", "digest"];

/// How this process's job runs ended, per job of [`JOBS`]: done, failed,
/// or left to another replica that held the lock. Counted here, read by
/// `/metrics`, so on-call (and a test) can see the schedule turning.
static RUNS: [[AtomicU64; 3]; 4] = [const { [const { AtomicU64::new(0) }; 3] }; 4];

/// How a job run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// It ran to the end.
    Done = 0,
    /// It failed (logged where it failed).
    Failed = 1,
    /// Another process held its lock.
    Skipped = 2,
}

impl Ended {
    /// Every way, with its `/metrics` label.
    pub const ALL: [(Ended, &'static str); 3] = [
        (Ended::Done, "done"),
        (Ended::Failed, "failed"),
        (Ended::Skipped, "skipped"),
    ];
}

fn counter(job: &str, ended: Ended) -> Option<&'static AtomicU64> {
    let i = JOBS.iter().position(|j| *j == job)?;
    RUNS.get(i)?.get(ended as usize)
}

fn count_run(job: &str, ended: Ended) {
    if let Some(c) = counter(job, ended) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// This process's job runs of `job` that ended so.
pub fn runs(job: &str, ended: Ended) -> u64 {
    counter(job, ended).map_or(0, |c| c.load(Ordering::Relaxed))
}

fn now_of(clock: Clock) -> Result<DateTime<Utc>> {
    Ok(crate::clock::utc_of(clock()?)?)
}

/// Runs one job now, under its lock; `Ok(false)` when another process
/// holds the lock (it is running there). `tick` is the schedule's time for
/// this round: the reconcile job runs each trailing day once per tick
/// across all replicas, under a lock per day instead of the job's.
pub fn run_job(
    pool: &Pool,
    name: &str,
    settings: &Settings,
    clock: Clock,
    holder: &str,
    tick: DateTime<Utc>,
) -> Result<bool> {
    // The reconcile job is sharded by day, each day under its own lock;
    // every other job runs on one replica at a time.
    let mut lock = if name == "reconcile" {
        None
    } else {
        let mut lock = pool.get().context("store connection for the job lock")?;
        let now = now_of(clock)?;
        let until = now + chrono::Duration::hours(1);
        if !repo::try_lock_job(&mut lock, name, holder, now.naive_utc(), until.naive_utc())? {
            tracing::debug!(job = name, "held by another process");
            return Ok(false);
        }
        Some(lock)
    };
    let job = || -> Result<()> {
        let mut conn = pool.get().context("store connection")?;
        match name {
            "reconcile" => {
                // Its own lock connection: a panic drops it unreturned
                // (diesel's pool discards a connection dropped while
                // panicking), and with it any day lock it held.
                let mut day_lock = pool.get().context("store connection for the day locks")?;
                // Readers beside the run's connection when the pool has them
                // to spare, never waiting for them (see `app::run::run`).
                let mut spare = crate::db::spare_readers(pool, crate::app::run::READERS);
                let mut readers: Vec<_> = spare.iter_mut().map(|c| &mut **c).collect();
                let t = follow_up::reconcile_trailing(
                    &mut day_lock,
                    &mut conn,
                    &mut readers,
                    settings,
                    clock,
                    tick.timestamp_millis(),
                    holder,
                )?;
                tracing::info!(
                    job = name,
                    ran = t.ran,
                    elsewhere = t.elsewhere,
                    done_already = t.done,
                    "done"
                );
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
    if let Some(lock) = &mut lock {
        repo::unlock_job(lock, name, holder)?;
    }
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
        for (name, job) in settings.schedule.jobs() {
            let Some(schedule) = job.schedule().cloned() else {
                continue;
            };
            tracing::info!(job = name, cron = job.as_str(), "scheduled");
            let (pool, settings, stop, holder) =
                (pool.clone(), settings.clone(), stop.clone(), holder.clone());
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
        match run_job(pool, name, settings, clock, holder, next) {
            Ok(true) => count_run(name, Ended::Done),
            Ok(false) => count_run(name, Ended::Skipped),
            Err(e) => {
                count_run(name, Ended::Failed);
                tracing::error!(job = name, error = format!("{e:#}"), "job failed");
            }
        }
    }
}
