//! What the pages show: the month's overview, one run, one owner. Each is
//! one pass over the stored verdicts, built into a view the templates
//! only lay out (rows never reach a template).

use std::collections::BTreeMap;

use chrono::{Datelike, NaiveDate};
use rust_decimal::Decimal;
use serde::Serialize;
use tally_reconcile::SideKind;
use tally_reconcile::report::Class;
use tally_schema::convert::nanos_to_usd;

use crate::app::memo::{self, Memo};
use crate::app::report::{self, CostLine, Costs, GroupBy, Kind, VerdictLine};
use crate::app::run::{RunView, view};
use crate::db::{AnyConnection, DbError, repo};

/// Rows a page lists in one table; the CSV download has them all.
pub const PAGE_ROWS: usize = 200;
/// Runs the overview lists.
pub const LATEST_RUNS: usize = 10;

/// Errors of the page use cases.
#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    /// The store failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// A parameter is wrong.
    #[error("{0}")]
    Invalid(String),
    /// No such thing.
    #[error("{0}")]
    NotFound(String),
}

/// A calendar month, UTC.
#[derive(Debug, Clone, Serialize)]
pub struct Month {
    /// `2026-11`.
    pub key: String,
    /// `November 2026`.
    pub label: String,
    /// The month before, `2026-10`.
    pub prev: String,
    /// The month after.
    pub next: String,
    /// First instant, UTC ms.
    pub from_ms: i64,
    /// First instant of the next month, UTC ms.
    pub to_ms: i64,
    /// The first day, `2026-11-01` (for links to the same window).
    pub from: String,
    /// The day after the last, `2026-12-01`.
    pub to: String,
    /// Its days, `2026-11-01` ...
    pub days: Vec<String>,
}

fn first_of(y: i32, m: u32) -> Option<NaiveDate> {
    NaiveDate::from_ymd_opt(y, m, 1)
}

/// The month `spec` names (`YYYY-MM`), or the one `now_ms` falls in.
pub fn month(spec: Option<&str>, now_ms: i64) -> Result<Month, ViewError> {
    let bad = || ViewError::Invalid("`month` is YYYY-MM, e.g. 2026-11".to_owned());
    let start = match spec.filter(|s| !s.is_empty()) {
        Some(s) => {
            let (y, m) = s.split_once('-').ok_or_else(bad)?;
            let (y, m) = (y.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
            if !(1970..=9998).contains(&y) {
                return Err(bad());
            }
            first_of(y, m).ok_or_else(bad)?
        }
        None => {
            let now = chrono::DateTime::from_timestamp_millis(now_ms)
                .ok_or_else(bad)?
                .date_naive();
            first_of(now.year(), now.month()).ok_or_else(bad)?
        }
    };
    let next = start
        .checked_add_months(chrono::Months::new(1))
        .ok_or_else(bad)?;
    let prev = start
        .checked_sub_months(chrono::Months::new(1))
        .ok_or_else(bad)?;
    let ms = |d: NaiveDate| {
        d.and_hms_opt(0, 0, 0)
            .map(|t| t.and_utc().timestamp_millis())
    };
    Ok(Month {
        from: start.format("%Y-%m-%d").to_string(),
        to: next.format("%Y-%m-%d").to_string(),
        key: start.format("%Y-%m").to_string(),
        label: start.format("%B %Y").to_string(),
        prev: prev.format("%Y-%m").to_string(),
        next: next.format("%Y-%m").to_string(),
        from_ms: ms(start).ok_or_else(bad)?,
        to_ms: ms(next).ok_or_else(bad)?,
        days: start
            .iter_days()
            .take_while(|d| *d < next)
            .map(|d| d.format("%Y-%m-%d").to_string())
            .collect(),
    })
}

/// Any run of whole UTC days, `from` to `to` (exclusive, `YYYY-MM-DD`), at
/// most 366 of them, as the pages show a month: its label says the dates,
/// and the month links lead around the month it starts in.
pub fn range(from: &str, to: &str) -> Result<Month, ViewError> {
    let bad =
        || ViewError::Invalid("`from` and `to` are dates, YYYY-MM-DD, from before to".to_owned());
    let day = |s: &str| NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").map_err(|_| bad());
    let (a, b) = (day(from)?, day(to)?);
    if a >= b || (b - a).num_days() > 366 {
        return Err(ViewError::Invalid(
            "`from` must be before `to`, at most 366 days apart".to_owned(),
        ));
    }
    let around = month(Some(&a.format("%Y-%m").to_string()), 0)?;
    let ms = |d: NaiveDate| {
        d.and_hms_opt(0, 0, 0)
            .map(|t| t.and_utc().timestamp_millis())
            .ok_or_else(bad)
    };
    Ok(Month {
        label: format!(
            "{} to {} (UTC)",
            a.format("%Y-%m-%d"),
            (b - chrono::Days::new(1)).format("%Y-%m-%d")
        ),
        from_ms: ms(a)?,
        to_ms: ms(b)?,
        from: a.format("%Y-%m-%d").to_string(),
        to: b.format("%Y-%m-%d").to_string(),
        days: a
            .iter_days()
            .take_while(|d| *d < b)
            .map(|d| d.format("%Y-%m-%d").to_string())
            .collect(),
        ..around
    })
}

/// Spend of one owner in the overview.
#[derive(Debug, Clone, Serialize)]
pub struct OwnerSpend {
    /// Its page, when the registry has it.
    pub id: Option<i64>,
    /// Its costs.
    #[serde(flatten)]
    pub line: CostLine,
}

/// Unattributed traffic of one key.
#[derive(Debug, Clone, Default, Serialize)]
pub struct KeyTraffic {
    /// Canonical key name.
    pub key: String,
    /// Whether any registry knows it (if not: possibly leaked).
    pub registered: bool,
    /// Its owner, `team/service/env`.
    pub owner: String,
    /// Gateway rows no client logged.
    pub rows: i64,
    /// What the gateway billed for them.
    pub reported: Decimal,
}

/// The month's overview.
#[derive(Debug, Serialize)]
pub struct Overview {
    /// The month.
    pub month: Month,
    /// All owners together.
    pub total: CostLine,
    /// Per owner, most expensive first.
    pub owners: Vec<OwnerSpend>,
    /// Unattributed traffic by key, most billed first.
    pub unattributed: Vec<KeyTraffic>,
    /// The first rows missing on the gateway.
    pub missing: Vec<VerdictLine>,
    /// The latest runs.
    pub runs: Vec<RunView>,
    /// What the month's figures leave out (rows no run covers).
    pub coverage: report::Coverage,
}

fn most_first(a: &CostLine, b: &CostLine) -> std::cmp::Ordering {
    b.computed_cost
        .max(b.reported_cost)
        .cmp(&a.computed_cost.max(a.reported_cost))
        .then_with(|| a.group.cmp(&b.group))
}

/// Adds one cost line into a running total.
fn add_into(total: &mut CostLine, l: &CostLine) {
    total.billed_rows += l.billed_rows;
    total.computed_cost += l.computed_cost;
    total.reported_cost += l.reported_cost;
    total.variance += l.variance;
    total.unpriced_rows += l.unpriced_rows;
    total.unpriced_reported += l.unpriced_reported;
    total.missing_rows += l.missing_rows;
    total.missing_cost += l.missing_cost;
    total.unattributed_rows += l.unattributed_rows;
    total.unattributed_reported += l.unattributed_reported;
}

/// Adds a key's unattributed rows and what they were billed.
fn add_traffic(
    keys: &mut BTreeMap<String, KeyTraffic>,
    key: &str,
    registered: bool,
    owner: String,
    rows: i64,
    nanos: i64,
) {
    let k = keys.entry(key.to_owned()).or_insert_with(|| KeyTraffic {
        key: key.to_owned(),
        registered,
        owner,
        ..KeyTraffic::default()
    });
    k.rows += rows;
    k.reported += nanos_to_usd(nanos, None);
}

/// The overview of `month`. Its sums of rollups are kept in `memo` by the
/// runs they came from.
pub fn overview(
    conn: &mut AnyConnection,
    memo: &Memo,
    month: Month,
) -> Result<Overview, ViewError> {
    let ids: BTreeMap<String, i64> = repo::owners(conn)?
        .into_iter()
        .map(|o| {
            let name = tally_reconcile::keys::Owner {
                team: o.team,
                service: o.service,
                env: o.env,
            }
            .display();
            (name, o.id)
        })
        .collect();
    let mut missing = Vec::new();
    let window = (month.from_ms, month.to_ms);
    let (mut lines, keys) = match repo::rollup_runs(conn, window)? {
        // The runs' daily sums (kept by the runs they came from), and the
        // missing rows through the class index: a few thousand rows read,
        // not every verdict.
        Some(runs) => {
            let sums = memo.get_or(memo::key("overview", window, &runs), || {
                let mut by_owner = Costs::new(GroupBy::Owner);
                let mut keys = BTreeMap::new();
                repo::each_rollup(conn, &runs, None, window, |r| {
                    by_owner.add_rollup(&r);
                    if *r.class == Class::Unattributed {
                        let owner = report::owner_label(&r.team, &r.service, &r.env);
                        add_traffic(
                            &mut keys,
                            &r.key_name,
                            r.registered,
                            owner,
                            r.row_count,
                            r.reported_nanos,
                        );
                    }
                })?;
                Ok::<_, ViewError>((by_owner.lines(), keys))
            })?;
            let limit = i64::try_from(PAGE_ROWS).unwrap_or(i64::MAX);
            let classes = [Class::MissingUsage];
            repo::each_verdict_of_classes(conn, &runs, &classes, None, window, limit, |j| {
                missing.push(report::row_line(j));
            })?;
            sums.as_ref().clone()
        }
        None => {
            let mut by_owner = Costs::new(GroupBy::Owner);
            let mut keys = BTreeMap::new();
            repo::each_current_verdict(conn, None, window, |j| {
                by_owner.add(&j);
                let class = *j.verdict.class;
                if class == Class::Unattributed {
                    let v = &j.verdict;
                    let nanos = v.reported_cost_nanos.unwrap_or(0);
                    add_traffic(
                        &mut keys,
                        &v.key_name,
                        v.registered,
                        report::owner_name(v),
                        1,
                        nanos,
                    );
                } else if class == Class::MissingUsage && missing.len() < PAGE_ROWS {
                    missing.push(report::row_line(j));
                }
            })?;
            (by_owner.lines(), keys)
        }
    };
    missing.sort_by(|a, b| a.ts.cmp(&b.ts));
    let mut total = CostLine {
        group: "all owners".to_owned(),
        ..CostLine::default()
    };
    lines.sort_by(most_first);
    for l in &lines {
        add_into(&mut total, l);
    }
    let owners = lines
        .into_iter()
        .map(|line| OwnerSpend {
            id: ids.get(&line.group).copied(),
            line,
        })
        .collect();
    let mut unattributed: Vec<KeyTraffic> = keys.into_values().collect();
    unattributed.sort_by(|a, b| b.reported.cmp(&a.reported).then(b.rows.cmp(&a.rows)));
    let runs = repo::runs(conn)?
        .into_iter()
        .take(LATEST_RUNS)
        .map(|r| view(r, None))
        .collect();
    let coverage = report::coverage(conn, window)?;
    Ok(Overview {
        coverage,
        month,
        total,
        owners,
        unattributed,
        missing,
        runs,
    })
}

/// Which rows of a run a table or download lists.
#[derive(Debug, Clone, Default, serde::Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RowFilter {
    /// Owner contains this (case-insensitive).
    #[serde(default)]
    pub owner: String,
    /// Key contains this.
    #[serde(default)]
    pub key: String,
    /// Model contains this.
    #[serde(default)]
    pub model: String,
}

impl RowFilter {
    fn keeps(&self, l: &VerdictLine) -> bool {
        let has = |hay: &str, needle: &str| {
            needle.is_empty() || hay.to_lowercase().contains(&needle.trim().to_lowercase())
        };
        has(&l.owner, &self.owner) && has(&l.key, &self.key) && has(&l.model, &self.model)
    }
}

/// One table of a run's rows.
#[derive(Debug, Serialize)]
pub struct RowTable {
    /// `missing` or `unattributed`.
    pub kind: &'static str,
    /// The first [`PAGE_ROWS`] rows the filter keeps.
    pub rows: Vec<VerdictLine>,
    /// All rows the filter keeps.
    pub total: usize,
}

/// A run's page.
#[derive(Debug, Serialize)]
pub struct RunPage {
    /// The run and its counts per class.
    pub run: RunView,
    /// The filter applied to the tables.
    pub filter: RowFilter,
    /// Client rows with no gateway row, then gateway rows with no client row.
    pub tables: Vec<RowTable>,
}

/// The class a row table lists.
pub fn table_class(kind: &str) -> Option<(&'static str, Class)> {
    match kind {
        "missing" => Some(("missing", Class::MissingUsage)),
        "unattributed" => Some(("unattributed", Class::Unattributed)),
        _ => None,
    }
}

fn run_or_404(conn: &mut AnyConnection, id: i64) -> Result<tally_schema::rows::RunRow, ViewError> {
    repo::run(conn, id)?.ok_or_else(|| ViewError::NotFound(format!("There is no run {id}.")))
}

/// The rows of run `id` in one table class that `filter` keeps; at most
/// `limit` of them, and how many there are.
pub fn run_rows(
    conn: &mut AnyConnection,
    id: i64,
    class: Class,
    filter: &RowFilter,
    limit: usize,
) -> Result<(Vec<VerdictLine>, usize), ViewError> {
    run_or_404(conn, id)?;
    let mut rows = Vec::new();
    let mut total = 0;
    repo::each_verdict_of_run(conn, id, &[class], |j| {
        let line = report::row_line(j);
        if filter.keeps(&line) {
            total += 1;
            if rows.len() < limit {
                rows.push(line);
            }
        }
    })?;
    Ok((rows, total))
}

/// Run `id`'s page.
pub fn run_page(
    conn: &mut AnyConnection,
    id: i64,
    filter: RowFilter,
) -> Result<RunPage, ViewError> {
    let run = run_or_404(conn, id)?;
    let counts = repo::run_counts(conn, id)?;
    let mut tables = Vec::new();
    for kind in ["missing", "unattributed"] {
        let Some((kind, class)) = table_class(kind) else {
            continue;
        };
        let (rows, total) = run_rows(conn, id, class, &filter, PAGE_ROWS)?;
        tables.push(RowTable { kind, rows, total });
    }
    Ok(RunPage {
        run: view(run, Some(counts)),
        filter,
        tables,
    })
}

/// Rows of one class for one owner.
#[derive(Debug, Clone, Serialize)]
pub struct ClassRows {
    pub class: String,
    /// Client rows.
    pub client_rows: i64,
    /// Gateway rows.
    pub gateway_rows: i64,
}

/// One of an owner's keys.
#[derive(Debug, Clone, Serialize)]
pub struct OwnerKey {
    /// Tally's key id.
    pub key_id: String,
    pub alias: String,
    /// Last four characters.
    pub last4: String,
    /// Its costs this month.
    pub line: CostLine,
}

/// One day's spend.
#[derive(Debug, Clone, Serialize)]
pub struct DaySpend {
    /// `YYYY-MM-DD`.
    pub day: String,
    /// Tally's price.
    pub computed_cost: Decimal,
    /// What the gateway billed.
    pub reported_cost: Decimal,
}

/// An owner's page.
#[derive(Debug, Serialize)]
pub struct OwnerPage {
    /// Owner id.
    pub id: i64,
    /// `team/service/env`.
    pub name: String,
    /// Its labels: team, service, env (for downloads of its rows).
    pub labels: (String, String, String),
    /// Contact address.
    pub contact: String,
    /// The month.
    pub month: Month,
    /// The month's total.
    pub total: CostLine,
    /// Spend per day of the month (every day, zero where nothing).
    pub days: Vec<DaySpend>,
    /// What the month's figures leave out (rows no run covers).
    pub coverage: report::Coverage,
    /// Its keys with their spend.
    pub keys: Vec<OwnerKey>,
    /// Models, most expensive first.
    pub models: Vec<CostLine>,
    /// Rows per class.
    pub classes: Vec<ClassRows>,
    /// Its rows that are not plain matches: missing, unattributed,
    /// discrepancies (the first [`PAGE_ROWS`]).
    pub rows: Vec<VerdictLine>,
}

/// An owner's month, summed: lines by day, model and key, rows per class,
/// and the rows the page lists (at most [`PAGE_ROWS`]).
#[derive(Debug, Clone)]
struct OwnerSums {
    by_day: Vec<CostLine>,
    by_model: Vec<CostLine>,
    by_key: Vec<CostLine>,
    classes: BTreeMap<String, ClassRows>,
    rows: Vec<report::VerdictLine>,
}

/// [`OwnerSums`] of `mine` (team, service, env) over `window`: from the
/// rollups of `runs` when they answer for it, from every current verdict
/// otherwise.
fn owner_sums(
    conn: &mut AnyConnection,
    runs: Option<&[i64]>,
    mine: (&str, &str, &str),
    window: (i64, i64),
) -> Result<OwnerSums, ViewError> {
    let mut by_day = Costs::new(GroupBy::Day);
    let mut by_model = Costs::new(GroupBy::Model);
    let mut by_key = Costs::new(GroupBy::Key);
    let mut classes: BTreeMap<String, ClassRows> = BTreeMap::new();
    let mut count = |class: Class, gateway: bool, n: i64| {
        let c = classes
            .entry(class.name().to_owned())
            .or_insert_with(|| ClassRows {
                class: class.name().to_owned(),
                client_rows: 0,
                gateway_rows: 0,
            });
        if gateway {
            c.gateway_rows += n;
        } else {
            c.client_rows += n;
        }
    };
    let mut rows = Vec::new();
    let listed = |j: &repo::Judged| {
        [Kind::Missing, Kind::Unattributed, Kind::Discrepancies]
            .into_iter()
            .any(|k| report::wanted(j, k))
    };
    match runs {
        Some(runs) => {
            repo::each_rollup(conn, runs, Some(mine), window, |r| {
                by_day.add_rollup(&r);
                by_model.add_rollup(&r);
                by_key.add_rollup(&r);
                count(*r.class, *r.side == SideKind::Gateway, r.row_count);
            })?;
            // Every class but plain matches (a matched row without a price
            // is in the models table's unpriced count).
            let classes: Vec<Class> = Class::ALL
                .into_iter()
                .filter(|c| *c != Class::Matched)
                .collect();
            let limit = i64::try_from(PAGE_ROWS).unwrap_or(i64::MAX);
            repo::each_verdict_of_classes(conn, runs, &classes, Some(mine), window, limit, |j| {
                if listed(&j) {
                    rows.push(report::row_line(j));
                }
            })?;
        }
        None => repo::each_current_verdict(conn, None, window, |j| {
            let v = &j.verdict;
            if (v.team.as_str(), v.service.as_str(), v.env.as_str()) != mine {
                return;
            }
            by_day.add(&j);
            by_model.add(&j);
            by_key.add(&j);
            count(*v.class, report::is_gateway(&j), 1);
            if listed(&j) && rows.len() < PAGE_ROWS {
                rows.push(report::row_line(j));
            }
        })?,
    }
    Ok(OwnerSums {
        by_day: by_day.lines(),
        by_model: by_model.lines(),
        by_key: by_key.lines(),
        classes,
        rows,
    })
}

/// Owner `id`'s page for `month`. Its sums are kept in `memo` by the runs
/// they came from.
pub fn owner_page(
    conn: &mut AnyConnection,
    memo: &Memo,
    id: i64,
    month: Month,
) -> Result<OwnerPage, ViewError> {
    let owner = repo::owners(conn)?
        .into_iter()
        .find(|o| o.id == id)
        .ok_or_else(|| ViewError::NotFound(format!("There is no owner {id}.")))?;
    let window = (month.from_ms, month.to_ms);
    let mine = (
        owner.team.as_str(),
        owner.service.as_str(),
        owner.env.as_str(),
    );
    let sums = match repo::rollup_runs(conn, window)? {
        // Kept by the runs they came from: an owner's listed rows are read
        // through the class index, which holds every owner's.
        Some(runs) => {
            let question = format!("owner {mine:?}");
            memo.get_or(memo::key(&question, window, &runs), || {
                owner_sums(conn, Some(&runs), mine, window)
            })?
            .as_ref()
            .clone()
        }
        None => owner_sums(conn, None, mine, window)?,
    };
    let OwnerSums {
        by_day,
        by_model,
        by_key,
        classes,
        mut rows,
    } = sums;
    let days: BTreeMap<String, CostLine> =
        by_day.into_iter().map(|l| (l.group.clone(), l)).collect();
    let mut total = CostLine {
        group: "month".to_owned(),
        ..CostLine::default()
    };
    for l in days.values() {
        add_into(&mut total, l);
    }
    let by_day = month
        .days
        .iter()
        .map(|d| {
            let l = days.get(d);
            DaySpend {
                day: d.clone(),
                computed_cost: l.map_or(Decimal::ZERO, |l| l.computed_cost),
                reported_cost: l.map_or(Decimal::ZERO, |l| l.reported_cost),
            }
        })
        .collect();
    let spend: BTreeMap<String, CostLine> =
        by_key.into_iter().map(|l| (l.group.clone(), l)).collect();
    let keys = repo::keys(conn)?
        .into_iter()
        .filter(|k| k.owner_id == Some(id))
        .map(|k| OwnerKey {
            line: spend.get(&k.key_id).cloned().unwrap_or_default(),
            key_id: k.key_id,
            alias: k.alias.unwrap_or_default(),
            last4: k.last4.unwrap_or_default(),
        })
        .collect();
    let mut models = by_model;
    models.sort_by(most_first);
    rows.sort_by(|a, b| a.ts.cmp(&b.ts));
    let mut classes: Vec<ClassRows> = classes.into_values().collect();
    classes.sort_by_key(|c| Class::from_name(&c.class));
    let coverage = report::coverage(conn, window)?;
    Ok(OwnerPage {
        coverage,
        id,
        labels: (owner.team.clone(), owner.service.clone(), owner.env.clone()),
        name: tally_reconcile::keys::Owner {
            team: owner.team,
            service: owner.service,
            env: owner.env,
        }
        .display(),
        contact: owner.contact.unwrap_or_default(),
        month,
        total,
        days: by_day,
        keys,
        models,
        classes,
        rows,
    })
}

/// What the store holds, for the server's metrics.
pub struct StoreState {
    /// Every batch.
    pub batches: Vec<tally_schema::rows::Batch>,
    /// Every run, newest first.
    pub runs: Vec<tally_schema::rows::RunRow>,
    /// The newest run's counts per side and class.
    pub latest_counts: Vec<tally_schema::rows::RunCount>,
    /// Firing alerts per kind.
    pub firing: Vec<(String, i64)>,
    /// Messages waiting, and of those retrying after a failure.
    pub outbox: (u64, u64),
}

/// Reads [`StoreState`].
pub fn store_state(c: &mut AnyConnection) -> Result<StoreState, crate::app::error::AppError> {
    let batches = repo::batches(c)?;
    let runs = repo::runs(c)?;
    let latest_counts = match runs.first() {
        Some(r) => repo::run_counts(c, r.id)?,
        None => Vec::new(),
    };
    Ok(StoreState {
        batches,
        runs,
        latest_counts,
        firing: repo::firing_by_kind(c)?,
        outbox: (repo::unsent_count(c)?, repo::retrying_count(c)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The month's sums kept between views answer as a fresh reading
    /// does, before and after a run that changes the month.
    #[cfg(feature = "sqlite")]
    #[test]
    fn kept_sums_are_the_store_s_after_every_run() {
        use crate::app::run::{DEFAULT_SLICE_ROWS, run};
        use crate::app::testing::{DAY, fixture, fixture_store, ingest};
        use tally_reconcile::report::EngineSettings;
        let dir = tempfile::tempdir().unwrap();
        let mut c = fixture_store(dir.path());
        let clock = || Ok(DAY.1 + 3_600_000);
        let run_day = |c: &mut AnyConnection| {
            run(
                c,
                &mut [],
                DAY,
                DEFAULT_SLICE_ROWS,
                EngineSettings::default(),
                clock,
            )
            .unwrap();
        };
        run_day(&mut c);
        let m = month(Some("2026-11"), 0).unwrap();
        let owners: Vec<i64> = repo::owners(&mut c).unwrap().iter().map(|o| o.id).collect();
        let memo = Memo::default();
        let views = |c: &mut AnyConnection, memo: &Memo| {
            let o = overview(c, memo, m.clone()).unwrap();
            let pages: Vec<serde_json::Value> = owners
                .iter()
                .map(|id| {
                    serde_json::to_value(owner_page(c, memo, *id, m.clone()).unwrap()).unwrap()
                })
                .collect();
            (serde_json::to_value(&o).unwrap(), pages)
        };
        let first = views(&mut c, &memo);
        assert_eq!(views(&mut c, &memo), first);
        assert_eq!(views(&mut c, &Memo::default()), first);
        // Calls the gateway billed that no client logged: the fixture's
        // calls under new ids, on every owner's keys.
        let text = std::fs::read_to_string(fixture("gateway/litellm_spendlogs.csv"))
            .unwrap()
            .replace("chatcmpl-", "rogue-");
        let file = dir.path().join("rogue.csv");
        std::fs::write(&file, text).unwrap();
        let now = chrono::DateTime::from_timestamp_millis(DAY.1)
            .unwrap()
            .naive_utc();
        ingest(&mut c, SideKind::Gateway, &file, "rogue.csv", now);
        run_day(&mut c);
        let after = views(&mut c, &memo);
        assert_ne!(after.0["owners"], first.0["owners"]);
        assert!(
            after
                .1
                .iter()
                .zip(&first.1)
                .any(|(a, f)| a["classes"] != f["classes"])
        );
        assert_eq!(after, views(&mut c, &Memo::default()));
    }

    #[test]
    fn a_month_is_its_utc_calendar_days() {
        let m = month(Some("2024-02"), 0).unwrap();
        assert_eq!(
            (m.key.as_str(), m.prev.as_str(), m.next.as_str()),
            ("2024-02", "2024-01", "2024-03")
        );
        assert_eq!(m.label, "February 2024");
        assert_eq!(m.days.len(), 29);
        assert_eq!(m.to_ms - m.from_ms, 29 * 86_400_000);
        // Without a month: the one "now" falls in (2026-11-22T10:00Z).
        let now = month(None, 1_795_341_600_000).unwrap();
        assert_eq!(now.key, "2026-11");
        assert_eq!(month(Some("2026-12"), 0).unwrap().next, "2027-01");
        for bad in ["2026-13", "2026", "x-01", "0000-01"] {
            assert!(month(Some(bad), 0).is_err(), "{bad}");
        }
    }

    #[test]
    fn filters_are_case_insensitive_substrings() {
        let line = VerdictLine {
            ts: String::new(),
            side: "client".into(),
            class: "missing_usage".into(),
            key: "key-Support".into(),
            registered: true,
            owner: "support/bot/prod".into(),
            model: "gpt-4o".into(),
            request_id: String::new(),
            computed_cost: None,
            reported_cost: None,
            detail: String::new(),
        };
        let f = |o: &str, k: &str, m: &str| RowFilter {
            owner: o.into(),
            key: k.into(),
            model: m.into(),
        };
        assert!(f("", "", "").keeps(&line));
        assert!(f("SUPPORT", "support", "4o").keeps(&line));
        assert!(!f("search", "", "").keeps(&line));
        assert!(!f("", "", "claude").keeps(&line));
    }
}
