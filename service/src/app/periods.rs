//! Month-end: the FOCUS export of a billing period, closing it, and the
//! corrections late rows make to a closed one.
//!
//! A closed month is final: its export is the bytes frozen at the close,
//! with their SHA-256, whatever runs later. Rows that arrive for it later
//! change only the live figures; the difference (per UTC day, owner, key,
//! model and verdict) is carried by the first open month after it as
//! FOCUS `ChargeClass = Correction` rows, and frozen in turn when that
//! month closes. Reopening is explicit, with a reason, and kept.

use std::collections::{BTreeMap, BTreeSet};

use chrono::NaiveDateTime;
use rust_decimal::Decimal;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tally_reconcile::SideKind;
use tally_reconcile::focus::{self, Account, Charge, FocusRow};
use tally_schema::convert::{charge_of, closed_charge, nanos_to_usd, usd_to_nanos};
use tally_schema::rows::{ClosedPeriod, NewClosedPeriod};

use crate::app::dashboard::{Month, month};
use crate::app::error::{AppError, AppResult, refuse};
use crate::app::report::{Coverage, coverage};
use crate::db::AnyConnection;
use crate::db::repo;

/// A billing month named `YYYY-MM`.
pub fn billing_month(spec: &str) -> AppResult<Month> {
    month(Some(spec), 0).map_err(|e| AppError::Invalid(format!("--period: {e}")))
}

/// A close, as people and the API see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CloseView {
    /// `YYYY-MM`.
    pub period: String,
    /// When (UTC, RFC 3339).
    pub closed_at: String,
    /// Who.
    pub closed_by: String,
    /// SHA-256 (hex) of the frozen FOCUS export.
    pub sha256: String,
    /// Regular FOCUS rows.
    pub charges: i64,
    /// Correction rows it carries for earlier closed months.
    pub corrections: i64,
    /// Sum of BilledCost, USD.
    pub billed: Decimal,
    /// Sum of ListCost, USD.
    pub list: Decimal,
    /// When it was reopened, if it was.
    pub reopened_at: Option<String>,
    /// By whom.
    pub reopened_by: Option<String>,
    /// Why.
    pub reopen_reason: Option<String>,
    /// The corrections this close carries for earlier closed months (only
    /// in the answer to the close itself).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub carried: Vec<Carried>,
}

/// A correction a close carries: late rows of an earlier closed month.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Carried {
    /// The UTC day of the rows.
    pub day: String,
    /// `team/service/env`, or "" when none.
    pub owner: String,
    /// The key.
    pub key: String,
    /// Model family.
    pub model: String,
    /// Tally's verdict on them.
    pub verdict: String,
    /// Requests (negative when rows went away).
    pub requests: i64,
    /// BilledCost of the correction, USD.
    pub billed: Decimal,
}

impl From<&ClosedPeriod> for CloseView {
    fn from(c: &ClosedPeriod) -> Self {
        let at = |t: NaiveDateTime| t.and_utc().format("%Y-%m-%dT%H:%M:%SZ").to_string();
        CloseView {
            period: c.period.clone(),
            closed_at: at(c.closed_at),
            closed_by: c.closed_by.clone(),
            sha256: c.sha256.clone(),
            charges: c.charges,
            corrections: c.corrections,
            billed: nanos_to_usd(c.billed_nanos, None).normalize(),
            list: nanos_to_usd(c.list_nanos, None).normalize(),
            reopened_at: c.reopened_at.map(at),
            reopened_by: c.reopened_by.clone(),
            reopen_reason: c.reopen_reason.clone(),
            carried: Vec::new(),
        }
    }
}

/// A period's FOCUS 1.2 export.
#[derive(Debug, Clone)]
pub struct FocusExport {
    /// `YYYY-MM`.
    pub period: String,
    /// The CSV.
    pub csv: String,
    /// SHA-256 (hex) of `csv`.
    pub sha256: String,
    /// The close it was frozen by, when the period is closed.
    pub closed: Option<CloseView>,
    /// Regular rows.
    pub charges: i64,
    /// Correction rows (for earlier closed months).
    pub corrections: i64,
    /// Sum of BilledCost, USD.
    pub billed: Decimal,
    /// Sum of ListCost, USD.
    pub list: Decimal,
    /// What the live figures leave out (open periods only).
    pub coverage: Coverage,
}

/// The charges of gateway rows on days in `[from_ms, to_ms)` as the current
/// runs judged them, one per UTC day, owner, key, model and verdict.
pub fn live_charges(conn: &mut AnyConnection, window: (i64, i64)) -> AppResult<Vec<Charge>> {
    let mut by: BTreeMap<focus::Grain, Charge> = BTreeMap::new();
    let mut add = |c: Charge| {
        by.entry(c.grain())
            .or_insert_with(|| c.empty_like())
            .add(&c, 1);
    };
    let usd = |n: i64| nanos_to_usd(n, None);
    match repo::rollup_runs(conn, window)? {
        Some(runs) => repo::each_rollup(conn, &runs, None, window, |r| {
            if *r.side != SideKind::Gateway {
                return;
            }
            add(Charge {
                day_ms: r.day_ms,
                team: r.team,
                service: r.service,
                env: r.env,
                key: r.key_name,
                model: r.model_family,
                verdict: r.class.to_string(),
                requests: r.row_count,
                tokens: r.tokens,
                billed: usd(r.reported_nanos),
                computed: usd(r.computed_nanos),
                unpriced_rows: r.unpriced_rows,
                // Reported covers every row, computed and the variance the
                // priced ones: the rest is what the unpriced were billed.
                unpriced_billed: usd(r.reported_nanos - r.computed_nanos - r.variance_nanos),
                run_id: Some(r.run_id),
                correction: false,
            });
        })?,
        None => repo::each_current_verdict(conn, Some(SideKind::Gateway), window, |j| {
            let v = j.verdict;
            let reported = usd(v.reported_cost_nanos.unwrap_or(0));
            let day = j.ts_ms - j.ts_ms.rem_euclid(tally_reconcile::time::DAY_MS);
            add(Charge {
                day_ms: day,
                team: v.team,
                service: v.service,
                env: v.env,
                key: v.key_name,
                model: v.model_family,
                verdict: v.class.to_string(),
                requests: 1,
                tokens: j.tokens.unwrap_or(0),
                billed: reported,
                computed: v.computed_cost_nanos.map_or(Decimal::ZERO, usd),
                unpriced_rows: i64::from(v.computed_cost_nanos.is_none()),
                unpriced_billed: if v.computed_cost_nanos.is_none() {
                    reported
                } else {
                    Decimal::ZERO
                },
                run_id: Some(v.run_id),
                correction: false,
            });
        })?,
    }
    Ok(by.into_values().collect())
}

/// Months closed now, by key.
fn closed_months(conn: &mut AnyConnection) -> AppResult<BTreeSet<String>> {
    Ok(repo::closes(conn)?
        .into_iter()
        .filter(|c| c.reopened_at.is_none())
        .map(|c| c.period)
        .collect())
}

/// The first month after `m` that is not closed.
fn first_open_after(m: &Month, closed: &BTreeSet<String>) -> AppResult<Month> {
    let mut next = billing_month(&m.next)?;
    while closed.contains(&next.key) {
        next = billing_month(&next.next)?;
    }
    Ok(next)
}

/// The corrections month `p` carries: for every closed month whose first
/// open month after it is `p`, what its charges are now less what was
/// frozen for it.
fn corrections_for(
    conn: &mut AnyConnection,
    p: &Month,
    closed: &BTreeSet<String>,
) -> AppResult<(Vec<Charge>, Vec<Charge>)> {
    let mut out = Vec::new();
    let mut frozen_all = Vec::new();
    for key in closed.iter().filter(|k| k.as_str() < p.key.as_str()) {
        let c = billing_month(key)?;
        if first_open_after(&c, closed)?.key != p.key {
            continue;
        }
        let window = (c.from_ms, c.to_ms);
        let now = live_charges(conn, window)?;
        let frozen: Vec<Charge> = repo::frozen_charges(conn, window)?
            .iter()
            .map(charge_of)
            .collect();
        out.extend(focus::corrections(&now, &frozen));
        frozen_all.extend(frozen);
    }
    Ok((out, frozen_all))
}

/// The CSV of `charges` in billing period `p`, its hash and totals;
/// `ContractedCost` from the contract in force on each charge's day.
fn render(
    p: &Month,
    account: &Account,
    contracts: &tally_reconcile::contracts::ContractBook,
    charges: &[Charge],
    already: &[Charge],
) -> AppResult<FocusExport> {
    // Charges come by day: a tier applies to the month's spend past it.
    let mut meter = tally_reconcile::contracts::Meter::default();
    // A correction continues its closed month's spend (frozen charges),
    // so a tier that month crossed still applies.
    for c in already {
        if let Some(k) = contracts.at(&c.model, c.day_ms) {
            meter.spent_before(k, c.day_ms, c.list());
        }
    }
    let priced: Vec<Option<(&str, Decimal)>> = charges
        .iter()
        .map(|c| {
            contracts
                .at(&c.model, c.day_ms)
                .map(|k| (k.name.as_str(), meter.charge(k, c.day_ms, c.list())))
        })
        .collect();
    let rows = charges.iter().zip(priced).map(|(c, contract)| FocusRow {
        charge: c,
        period: (p.from_ms, p.to_ms),
        account,
        contract,
    });
    let mut bytes = Vec::new();
    crate::export::write_csv(&mut bytes, rows)?;
    let csv = String::from_utf8(bytes).map_err(|e| AppError::Internal(e.to_string()))?;
    let sha256 = tally_reconcile::keys::hex(&Sha256::digest(csv.as_bytes()));
    let corrections = charges.iter().filter(|c| c.correction).count();
    let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    Ok(FocusExport {
        period: p.key.clone(),
        csv,
        sha256,
        closed: None,
        charges: count(charges.len() - corrections),
        corrections: count(corrections),
        billed: charges
            .iter()
            .map(|c| c.billed)
            .sum::<Decimal>()
            .normalize(),
        list: charges
            .iter()
            .map(Charge::list)
            .sum::<Decimal>()
            .normalize(),
        coverage: Coverage::default(),
    })
}

/// The live export of an open month: its charges, then the corrections it
/// carries for closed months before it.
fn live_export(
    conn: &mut AnyConnection,
    p: &Month,
    account: &Account,
) -> AppResult<(FocusExport, Vec<Charge>)> {
    let closed = closed_months(conn)?;
    let mut charges = live_charges(conn, (p.from_ms, p.to_ms))?;
    let (corrections, frozen) = corrections_for(conn, p, &closed)?;
    charges.extend(corrections);
    let contracts = crate::app::reference::contract_book(conn)?;
    let mut e = render(p, account, &contracts, &charges, &frozen)?;
    e.coverage = coverage(conn, (p.from_ms, p.to_ms))?;
    Ok((e, charges))
}

/// The FOCUS 1.2 export of month `p`: the frozen bytes when it is closed,
/// the live figures (and the corrections it carries) when it is open.
pub fn focus_export(
    conn: &mut AnyConnection,
    p: &Month,
    account: &Account,
) -> AppResult<FocusExport> {
    if let Some(c) = repo::close_in_force(conn, &p.key)? {
        let view = CloseView::from(&c);
        return Ok(FocusExport {
            period: c.period.clone(),
            csv: c.focus_csv,
            sha256: c.sha256,
            charges: c.charges,
            corrections: c.corrections,
            billed: view.billed,
            list: view.list,
            closed: Some(view),
            coverage: Coverage::default(),
        });
    }
    Ok(live_export(conn, p, account)?.0)
}

/// Closes month `p`: refuses a month not over at `now`, one closed already,
/// and one whose stored rows some run has not judged (with the `tally run`
/// that would); otherwise freezes its export and charges.
pub fn close(
    conn: &mut AnyConnection,
    p: &Month,
    account: &Account,
    by: &str,
    now: NaiveDateTime,
) -> AppResult<CloseView> {
    let now_ms = now.and_utc().timestamp_millis();
    if now_ms < p.to_ms {
        refuse!(
            "{} is not over until {}: close it after",
            p.key,
            tally_reconcile::time::format_ms(p.to_ms)
        );
    }
    if let Some(c) = repo::close_in_force(conn, &p.key)? {
        return Err(AppError::Conflict(format!(
            "{} was closed at {} (sha256 {}); reopen it first, with a reason",
            p.key,
            CloseView::from(&c).closed_at,
            c.sha256
        )));
    }
    let (e, charges) = live_export(conn, p, account)?;
    if let Some(w) = e.coverage.warning() {
        refuse!("{} cannot close: {w}", p.key);
    }
    let nanos = |d: Decimal| usd_to_nanos(d).map(|(n, _)| n);
    let mut rows = charges
        .iter()
        .map(|c| closed_charge(0, c))
        .collect::<Result<Vec<_>, _>>()?;
    let stored = repo::insert_close(
        conn,
        &NewClosedPeriod {
            period: &p.key,
            start_ms: p.from_ms,
            end_ms: p.to_ms,
            closed_at: now,
            closed_by: by,
            sha256: &e.sha256,
            focus_csv: &e.csv,
            charges: e.charges,
            corrections: e.corrections,
            billed_nanos: nanos(e.billed)?,
            list_nanos: nanos(e.list)?,
        },
        &mut rows,
    )
    .map_err(|e| match e {
        crate::db::DbError::Conflict(m) => AppError::Conflict(m),
        e => AppError::Store(e),
    })?;
    let mut view = CloseView::from(&stored);
    view.carried = charges
        .iter()
        .filter(|c| c.correction)
        .map(|c| Carried {
            day: tally_reconcile::time::format_ms(c.day_ms)
                .get(..10)
                .unwrap_or_default()
                .to_owned(),
            owner: [&c.team, &c.service, &c.env]
                .into_iter()
                .filter(|s| !s.is_empty())
                .cloned()
                .collect::<Vec<_>>()
                .join("/"),
            key: c.key.clone(),
            model: c.model.clone(),
            verdict: c.verdict.clone(),
            requests: c.requests,
            billed: c.billed.normalize(),
        })
        .collect();
    Ok(view)
}

/// Reopens month `p`, with a reason; its close stays on record, marked.
pub fn reopen(
    conn: &mut AnyConnection,
    p: &Month,
    reason: &str,
    by: &str,
    now: NaiveDateTime,
) -> AppResult<()> {
    if reason.trim().is_empty() {
        refuse!("reopening {} needs a reason (--reason)", p.key);
    }
    if !repo::reopen_close(conn, &p.key, by, reason.trim(), now)? {
        return Err(AppError::NotFound(format!("{} is not closed", p.key)));
    }
    Ok(())
}

/// Every close, reopened ones too.
pub fn closes(conn: &mut AnyConnection) -> AppResult<Vec<CloseView>> {
    Ok(repo::closes(conn)?.iter().map(CloseView::from).collect())
}

/// The closes in force of months that overlap `[from_ms, to_ms)`.
pub fn closed_touching(
    conn: &mut AnyConnection,
    (from_ms, to_ms): (i64, i64),
) -> AppResult<Vec<CloseView>> {
    Ok(repo::closes(conn)?
        .iter()
        .filter(|c| c.reopened_at.is_none() && c.start_ms < to_ms && from_ms < c.end_ms)
        .map(CloseView::from)
        .collect())
}

/// What late rows changed in a closed month, not yet frozen by any close.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Late {
    /// Requests (net: late rows less rows gone).
    pub requests: i64,
    /// BilledCost of the corrections, USD.
    pub billed: Decimal,
    /// ListCost of the corrections, USD.
    pub list: Decimal,
    /// The open month that carries them (`YYYY-MM`).
    pub carried_by: String,
}

/// The corrections closed month `c` has waiting, if any.
pub fn pending_corrections(conn: &mut AnyConnection, c: &CloseView) -> AppResult<Option<Late>> {
    let m = billing_month(&c.period)?;
    let closed = closed_months(conn)?;
    let window = (m.from_ms, m.to_ms);
    let now = live_charges(conn, window)?;
    let frozen: Vec<Charge> = repo::frozen_charges(conn, window)?
        .iter()
        .map(charge_of)
        .collect();
    let corr = focus::corrections(&now, &frozen);
    if corr.is_empty() {
        return Ok(None);
    }
    Ok(Some(Late {
        requests: corr.iter().map(|c| c.requests).sum(),
        billed: corr.iter().map(|c| c.billed).sum(),
        list: corr.iter().map(Charge::list).sum(),
        carried_by: first_open_after(&m, &closed)?.key,
    }))
}
