//! `tally run --from T --to T`: the engine over the stored rows of a
//! window, its verdicts kept.
//!
//! Rows up to a margin outside the window are loaded too, so a row whose
//! partner sits a second across the boundary is matched, not reported
//! missing; only rows inside the window get a verdict from this run (the
//! neighbouring window's run judges the others). A new run supersedes,
//! in the same transaction that stores it, every current run whose window
//! lies within its own; older runs stay readable as history.

use std::collections::HashMap;

use anyhow::{Context, Result, bail};
use chrono::{DateTime, NaiveDateTime};
use tally_reconcile::record::FileInfo;
use tally_reconcile::report::{Class, Settings, reconcile};
use tally_reconcile::{Side, SideKind};
use tally_schema::convert::{atto_to_nanos, normalised, side_name};
use tally_schema::rows::{NewRun, RunCount, RunRow, UsageRow, VerdictRow};

use crate::app::reference;
use crate::db::{AnyConnection, repo};

/// How far outside the window partners are looked for, beyond the
/// matching tolerance: learned clock offsets of a few minutes are common
/// (a host with a drifting clock), hours are not.
pub const MARGIN_BEYOND_TOLERANCE_MS: i64 = 15 * 60 * 1000;

/// What a run did.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    /// The stored run.
    pub run: RunRow,
    /// Its rows per class.
    pub counts: Vec<RunCount>,
    /// Runs it superseded.
    pub superseded: Vec<i64>,
}

/// A side's stored rows as the engine's side; the store id of each row.
fn side_of(kind: SideKind, rows: &[UsageRow]) -> Result<(Side, Vec<i64>)> {
    let mut side = Side::new(kind);
    let mut ids = Vec::with_capacity(rows.len());
    for (k, r) in rows.iter().enumerate() {
        // The row's place in (time, id) order is its ordinal: ties between
        // equally good partners break the same way on every run.
        let line = u32::try_from(k + 1).context("more than 4 billion rows in one run")?;
        if !side.push_normalised(&normalised(r, line)?) {
            bail!(
                "stored usage row {} cannot be read back (id too long)",
                r.id
            );
        }
        ids.push(r.id);
    }
    side.files.push(FileInfo {
        name: "store".to_owned(),
        format: "store".to_owned(),
        first_row: 0,
        read: u64::try_from(rows.len()).unwrap_or(u64::MAX),
        rejected: 0,
        lines: 0,
        open_quote_at_end: false,
    });
    Ok((side, ids))
}

fn naive(ms: i64) -> Result<NaiveDateTime> {
    DateTime::from_timestamp_millis(ms)
        .map(|t| t.naive_utc())
        .context("time out of range")
}

/// Runs the engine over `[from_ms, to_ms)` and stores the run.
///
/// `started` and `now` are the wall clock at the start and end, read by
/// the caller (the engine never reads a clock).
pub fn run(
    conn: &mut AnyConnection,
    from_ms: i64,
    to_ms: i64,
    settings: Settings,
    now: impl Fn() -> Result<i64>,
) -> Result<RunOutcome> {
    if from_ms >= to_ms {
        bail!("--from must be before --to");
    }
    let started = now()?;
    let tolerance_ms = settings.matching.tolerance_ms;
    let margin = tolerance_ms.saturating_add(MARGIN_BEYOND_TOLERANCE_MS);
    let (lo, hi) = (from_ms.saturating_sub(margin), to_ms.saturating_add(margin));
    let client_rows = repo::usage_in(conn, side_name(SideKind::Client), lo, hi)?;
    let gateway_rows = repo::usage_in(conn, side_name(SideKind::Gateway), lo, hi)?;
    let (client, client_ids) = side_of(SideKind::Client, &client_rows)?;
    let (gateway, gateway_ids) = side_of(SideKind::Gateway, &gateway_rows)?;
    let refs = reference::load(conn)?;
    let rec = reconcile(
        &client,
        &gateway,
        &refs.registry,
        &refs.aliases,
        &refs.prices,
        settings,
    );
    // What differs, in words, by (side, ordinal).
    let mut details: HashMap<(SideKind, u32), String> = HashMap::new();
    for d in rec.discrepancies() {
        if let Some(s) = d.client {
            details.insert((SideKind::Client, s.line), d.detail.clone());
        }
        if let Some(s) = d.gateway {
            details.insert((SideKind::Gateway, s.line), d.detail.clone());
        }
    }
    let inside = |ts: i64| ts >= from_ms && ts < to_ms;
    let mut counts: HashMap<Class, (i64, i64)> = HashMap::new();
    let mut verdicts = Vec::new();
    for (kind, side, ids, partner_ids) in [
        (SideKind::Client, &client, &client_ids, &gateway_ids),
        (SideKind::Gateway, &gateway, &gateway_ids, &client_ids),
    ] {
        for (i, row) in side.rows.iter().enumerate() {
            if !inside(row.ts_ms) {
                continue;
            }
            let v = rec
                .verdict(kind, i)
                .with_context(|| format!("internal error: no verdict for {kind:?} row {i}"))?;
            let c = counts.entry(v.class).or_default();
            match kind {
                SideKind::Client => c.0 += 1,
                SideKind::Gateway => c.1 += 1,
            }
            let owner = v.owner.cloned().unwrap_or_default();
            let nanos = |u: Option<tally_reconcile::prices::Usd>| -> Result<Option<i64>> {
                u.map(|u| atto_to_nanos(u.0).context("a cost does not fit the store"))
                    .transpose()
            };
            verdicts.push(VerdictRow {
                run_id: 0,
                usage_row_id: ids.get(i).copied().context("row without a store id")?,
                class: v.class.name().to_owned(),
                partner_row_id: v.partner.and_then(|p| partner_ids.get(p).copied()),
                key_name: v.key.to_owned(),
                registered: v.registered,
                team: owner.team,
                service: owner.service,
                env: owner.env,
                model_family: v.family.to_owned(),
                computed_cost_nanos: nanos(v.computed)?,
                reported_cost_nanos: nanos(v.reported)?,
                detail: details.remove(&(kind, row.line)).unwrap_or_default(),
            });
        }
    }
    let counts: Vec<RunCount> = Class::ALL
        .iter()
        .map(|c| {
            let (client_rows, gateway_rows) = counts.get(c).copied().unwrap_or_default();
            RunCount {
                run_id: 0,
                class: c.name().to_owned(),
                client_rows,
                gateway_rows,
            }
        })
        .collect();
    let summary = rec.summary(started);
    let global = summary.offsets.first().map_or(0, |o| o.offset_ms);
    let key_offsets = serde_json::to_string(&summary.offsets)?;
    let in_window = |side: SideKind| {
        counts
            .iter()
            .map(|c| match side {
                SideKind::Client => c.client_rows,
                SideKind::Gateway => c.gateway_rows,
            })
            .sum::<i64>()
    };
    let before: Vec<i64> = repo::runs(conn)?
        .iter()
        .filter(|r| r.status == "current")
        .map(|r| r.id)
        .collect();
    let new = NewRun {
        window_from: naive(from_ms)?,
        window_to: naive(to_ms)?,
        started_at: naive(started)?,
        finished_at: naive(now()?)?,
        status: "current",
        tolerance_ms,
        margin_ms: margin,
        client_rows: in_window(SideKind::Client),
        gateway_rows: in_window(SideKind::Gateway),
        global_offset_ms: global,
        key_offsets: &key_offsets,
    };
    let run = repo::store_run(conn, &new, &counts, verdicts.into_iter())?;
    let superseded = repo::runs(conn)?
        .iter()
        .filter(|r| before.contains(&r.id) && r.superseded_by == Some(run.id))
        .map(|r| r.id)
        .collect();
    let counts = repo::run_counts(conn, run.id)?;
    Ok(RunOutcome {
        run,
        counts,
        superseded,
    })
}

/// The outcome for people.
pub fn describe(o: &RunOutcome) -> String {
    let r = &o.run;
    let mut out = format!(
        "Run {} over [{}, {}) UTC: {} client rows, {} gateway rows (tolerance {} ms, global offset {:+} ms)\n",
        r.id,
        r.window_from.format("%Y-%m-%d %H:%M:%S"),
        r.window_to.format("%Y-%m-%d %H:%M:%S"),
        r.client_rows,
        r.gateway_rows,
        r.tolerance_ms,
        r.global_offset_ms
    );
    out.push_str(&format!(
        "  {:<16} {:>12} {:>12}\n",
        "class", "client", "gateway"
    ));
    for c in Class::ALL {
        if let Some(k) = o.counts.iter().find(|k| k.class == c.name()) {
            out.push_str(&format!(
                "  {:<16} {:>12} {:>12}\n",
                k.class, k.client_rows, k.gateway_rows
            ));
        }
    }
    if !o.superseded.is_empty() {
        let ids: Vec<String> = o.superseded.iter().map(ToString::to_string).collect();
        out.push_str(&format!("Supersedes run(s) {}\n", ids.join(", ")));
    }
    out
}
