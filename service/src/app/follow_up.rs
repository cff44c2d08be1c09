//! What follows a run or an ingest: the run's alerts, then the quotas.
//! Every way a run starts (the command line, the API, a page, the
//! schedule) comes through [`run_and_alert`], so each raises the same
//! alerts and queues the same messages.

use chrono::{DateTime, Utc};
use tally_reconcile::time::DAY_MS;

use super::error::AppError;
use super::{alerts, quotas};
use crate::clock::{Clock, utc_of};
use crate::db::AnyConnection;
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
    engine: tally_reconcile::report::EngineSettings,
    clock: Clock,
) -> Result<(super::run::RunOutcome, FollowUp), AppError> {
    let o = super::run::run(conn, window, slice_rows, engine, clock)?;
    let now = utc_of(clock()?)?;
    let said = after_run(conn, config, o.run.id, window, now);
    Ok((o, said))
}

/// Reconciles each UTC day of the trailing window as its own run (so a
/// day's new run supersedes that day's last one and runs never overlap).
pub fn reconcile_trailing(
    conn: &mut AnyConnection,
    settings: &Settings,
    clock: Clock,
) -> Result<usize, AppError> {
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
