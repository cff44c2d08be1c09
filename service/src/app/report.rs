//! `tally report costs|missing|unattributed|discrepancies`: read from the
//! latest runs' verdicts over a period.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::Serialize;
use tally_reconcile::SideKind;
use tally_reconcile::report::Class;
use tally_reconcile::report_lines::{RecordSink, Tabular};
use tally_reconcile::time::{DAY_MS, format_ms};
use tally_schema::convert::nanos_to_usd;

use crate::app::memo::{self, Memo};
use crate::db::{AnyConnection, repo};

/// Which report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Cost per group: computed and gateway-reported, variance, missing and
    /// unattributed.
    Costs,
    /// Client rows with no gateway row.
    Missing,
    /// Gateway rows with no client row.
    Unattributed,
    /// Pairs that disagree, duplicates and unpriced rows.
    Discrepancies,
}

/// How `costs` groups rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupBy {
    /// team/service/env.
    Owner,
    Team,
    Service,
    Env,
    Key,
    /// Model family.
    Model,
    /// UTC day.
    Day,
    /// Each tag of the client row a billed row was paired with (a row with
    /// two tags counts in both; rows with none in `(no tag)`). Billed
    /// figures only: the client's own rows carry the tags.
    Tag,
}

/// The group of billed rows whose client row has no tag (or none at all).
pub const NO_TAG: &str = "(no tag)";

/// One group of the costs report.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CostLine {
    /// The group's name.
    pub group: String,
    /// Gateway rows billed (pairs, unattributed, duplicates).
    pub billed_rows: i64,
    /// Tally's price of the billed rows that have one.
    pub computed_cost: Decimal,
    /// What the gateway reported for them all.
    pub reported_cost: Decimal,
    /// Reported minus computed, over rows with both.
    pub variance: Decimal,
    /// Billed rows with no price in the catalog (never priced at zero).
    pub unpriced_rows: i64,
    /// What the gateway billed for those: so that reported = computed +
    /// variance + this, on every line (a page adds up).
    pub unpriced_reported: Decimal,
    /// Client rows with no gateway row.
    pub missing_rows: i64,
    /// Tally's price of those.
    pub missing_cost: Decimal,
    /// Gateway rows with no client row.
    pub unattributed_rows: i64,
    /// What the gateway reported for those.
    pub unattributed_reported: Decimal,
}

impl Tabular for CostLine {
    fn headers() -> &'static [&'static str] {
        &[
            "group",
            "billed_rows",
            "computed_cost",
            "reported_cost",
            "variance",
            "unpriced_rows",
            "unpriced_reported",
            "missing_rows",
            "missing_cost",
            "unattributed_rows",
            "unattributed_reported",
        ]
    }

    fn write(&self, out: &mut dyn RecordSink) {
        out.text(&self.group);
        out.plain(&self.billed_rows.to_string());
        out.plain(&self.computed_cost.to_string());
        out.plain(&self.reported_cost.to_string());
        out.plain(&self.variance.to_string());
        out.plain(&self.unpriced_rows.to_string());
        out.plain(&self.unpriced_reported.to_string());
        out.plain(&self.missing_rows.to_string());
        out.plain(&self.missing_cost.to_string());
        out.plain(&self.unattributed_rows.to_string());
        out.plain(&self.unattributed_reported.to_string());
    }
}

/// One row of the row reports, as its stored verdict lists it (the engine's
/// `report_lines::RowLine` is the same row straight from a reconcile).
#[derive(Debug, Clone, Serialize)]
pub struct VerdictLine {
    /// Request start, UTC.
    pub ts: String,
    /// `client` or `gateway`.
    pub side: String,
    /// Its class.
    pub class: String,
    pub key: String,
    /// Whether the registry knows the key.
    pub registered: bool,
    /// Owner `team/service/env`.
    pub owner: String,
    /// Model as the source named it.
    pub model: String,
    /// Request id.
    pub request_id: String,
    /// Tally's price (`null`: unpriced).
    pub computed_cost: Option<Decimal>,
    /// Gateway-reported cost.
    pub reported_cost: Option<Decimal>,
    /// What differs.
    pub detail: String,
}

impl Tabular for VerdictLine {
    fn headers() -> &'static [&'static str] {
        &[
            "ts",
            "side",
            "class",
            "key",
            "registered",
            "owner",
            "model",
            "request_id",
            "computed_cost",
            "reported_cost",
            "detail",
        ]
    }

    fn write(&self, out: &mut dyn RecordSink) {
        let money = |d: Option<Decimal>| d.map_or_else(String::new, |d| d.to_string());
        out.plain(&self.ts);
        out.plain(&self.side);
        out.plain(&self.class);
        out.text(&self.key);
        out.plain(if self.registered {
            "yes"
        } else {
            "NOT IN REGISTRY"
        });
        out.text(&self.owner);
        out.text(&self.model);
        out.text(&self.request_id);
        out.plain(&money(self.computed_cost));
        out.plain(&money(self.reported_cost));
        out.text(&self.detail);
    }
}

/// `team/service/env` of a verdict, or the unknown owner's name.
pub(crate) fn owner_name(v: &tally_schema::rows::VerdictRow) -> String {
    owner_label(&v.team, &v.service, &v.env)
}

/// `team/service/env`, or the unknown owner's name when all are empty.
pub fn owner_label(team: &str, service: &str, env: &str) -> String {
    let owner = tally_reconcile::keys::Owner {
        team: team.to_owned(),
        service: service.to_owned(),
        env: env.to_owned(),
    };
    if owner.is_empty() {
        tally_reconcile::report::UNKNOWN_OWNER.to_owned()
    } else {
        owner.display()
    }
}

fn usd(n: Option<i64>) -> Option<Decimal> {
    n.map(|n| nanos_to_usd(n, None))
}

/// The group of rows with no team, service, env, key or model.
pub const NO_GROUP: &str = "(none)";

/// The dimensions of a row (or of a rollup) that reports group by.
#[derive(Debug, Clone, Copy)]
struct Dims<'a> {
    team: &'a str,
    service: &'a str,
    env: &'a str,
    key: &'a str,
    model: &'a str,
    ts_ms: i64,
}

impl<'a> Dims<'a> {
    fn of(v: &'a tally_schema::rows::VerdictRow, ts_ms: i64) -> Self {
        Self {
            team: &v.team,
            service: &v.service,
            env: &v.env,
            key: &v.key_name,
            model: &v.model_family,
            ts_ms,
        }
    }
}

/// One row's amounts, or the sums of many (a rollup).
#[derive(Debug, Clone, Copy)]
struct Sums {
    rows: i64,
    unpriced: i64,
    /// Over priced rows.
    computed: Decimal,
    reported: Decimal,
    /// Reported minus computed over rows with both.
    variance: Decimal,
}

impl CostLine {
    /// Adds rows of one side and class. Billed rows are the gateway's;
    /// the client side only counts its rows missing on the gateway.
    fn add(&mut self, gateway: bool, class: Option<Class>, s: &Sums) {
        if gateway {
            self.billed_rows += s.rows;
            self.reported_cost += s.reported;
            self.computed_cost += s.computed;
            self.variance += s.variance;
            self.unpriced_rows += s.unpriced;
            if class == Some(Class::Unattributed) {
                self.unattributed_rows += s.rows;
                self.unattributed_reported += s.reported;
            }
        } else if class == Some(Class::MissingUsage) {
            self.missing_rows += s.rows;
            self.missing_cost += s.computed;
        }
    }
}

/// The costs report, built one verdict (or rollup) at a time.
pub(crate) struct Costs {
    by: GroupBy,
    groups: BTreeMap<String, CostLine>,
    /// Only this owner's rows (team, service, env), when set.
    only: Option<(String, String, String)>,
}

impl Costs {
    pub(crate) fn new(by: GroupBy) -> Self {
        Self {
            by,
            groups: BTreeMap::new(),
            only: None,
        }
    }

    fn wanted(&self, team: &str, service: &str, env: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|(t, s, e)| t == team && s == service && e == env)
    }

    /// The group a row with these dimensions falls in.
    fn group(&self, d: Dims<'_>) -> String {
        let group = match self.by {
            GroupBy::Owner => owner_label(d.team, d.service, d.env),
            GroupBy::Team => d.team.to_owned(),
            GroupBy::Service => d.service.to_owned(),
            GroupBy::Env => d.env.to_owned(),
            GroupBy::Key => d.key.to_owned(),
            GroupBy::Model => d.model.to_owned(),
            GroupBy::Day => format_ms(d.ts_ms).get(..10).unwrap_or_default().to_owned(),
            // Tags are not a dimension of a verdict: see `cost_lines_of`.
            GroupBy::Tag => NO_TAG.to_owned(),
        };
        // Rows nobody labels (a key no registry knows) get a name a person
        // can read, not a blank cell.
        if group.is_empty() {
            NO_GROUP.to_owned()
        } else {
            group
        }
    }

    /// The line of a group named outright.
    fn named(&mut self, group: &str) -> &mut CostLine {
        self.groups
            .entry(group.to_owned())
            .or_insert_with(|| CostLine {
                group: group.to_owned(),
                ..CostLine::default()
            })
    }

    fn line(&mut self, d: Dims<'_>) -> &mut CostLine {
        let group = self.group(d);
        self.groups
            .entry(group.clone())
            .or_insert_with(|| CostLine {
                group,
                ..CostLine::default()
            })
    }

    /// Adds one row's verdict.
    pub(crate) fn add(&mut self, j: &repo::Judged) {
        let v = &j.verdict;
        if !self.wanted(&v.team, &v.service, &v.env) {
            return;
        }
        let gateway = is_gateway(j);
        let class = Some(*v.class);
        let line = self.line(Dims::of(v, j.ts_ms));
        let computed = usd(v.computed_cost_nanos);
        let reported = usd(v.reported_cost_nanos);
        let mut sums = Sums {
            rows: 1,
            unpriced: i64::from(computed.is_none()),
            computed: computed.unwrap_or_default(),
            reported: reported.unwrap_or_default(),
            variance: Decimal::ZERO,
        };
        if let (Some(c), Some(r)) = (computed, reported) {
            sums.variance = r - c;
        }
        line.add(gateway, class, &sums);
    }

    /// Adds a run's sums for one day and group of dimensions.
    pub(crate) fn add_rollup(&mut self, r: &tally_schema::rows::RollupRow) {
        if !self.wanted(&r.team, &r.service, &r.env) {
            return;
        }
        let d = Dims {
            team: &r.team,
            service: &r.service,
            env: &r.env,
            key: &r.key_name,
            model: &r.model_family,
            ts_ms: r.day_ms,
        };
        let gateway = *r.side == SideKind::Gateway;
        let class = Some(*r.class);
        let sums = Sums {
            rows: r.row_count,
            unpriced: r.unpriced_rows,
            computed: nanos_to_usd(r.computed_nanos, None),
            reported: nanos_to_usd(r.reported_nanos, None),
            variance: nanos_to_usd(r.variance_nanos, None),
        };
        self.line(d).add(gateway, class, &sums);
    }

    pub(crate) fn lines(self) -> Vec<CostLine> {
        self.groups
            .into_values()
            .map(|mut l| {
                // Reported covers every billed row; computed and the
                // variance only the priced ones: the rest is what the
                // unpriced rows were billed.
                l.unpriced_reported = l.reported_cost - l.computed_cost - l.variance;
                for d in [
                    &mut l.unpriced_reported,
                    &mut l.computed_cost,
                    &mut l.reported_cost,
                    &mut l.variance,
                    &mut l.missing_cost,
                    &mut l.unattributed_reported,
                ] {
                    *d = d.normalize();
                }
                l
            })
            .collect()
    }
}

pub(crate) fn is_gateway(j: &repo::Judged) -> bool {
    *j.side == SideKind::Gateway
}

/// Whether a row report lists a verdict.
pub(crate) fn wanted(j: &repo::Judged, kind: Kind) -> bool {
    let class = *j.verdict.class;
    match kind {
        Kind::Missing => class == Class::MissingUsage,
        Kind::Unattributed => class == Class::Unattributed,
        Kind::Discrepancies => {
            (class.is_pair() && class != Class::Matched && is_gateway(j))
                || class == Class::Duplicate
                || (is_gateway(j) && j.verdict.computed_cost_nanos.is_none())
        }
        Kind::Costs => false,
    }
}

/// A verdict as a row report line.
pub(crate) fn row_line(j: repo::Judged) -> VerdictLine {
    let v = j.verdict;
    let detail = if v.detail.is_empty() && v.computed_cost_nanos.is_none() {
        format!("no price for `{}`", v.model_family)
    } else {
        v.detail.clone()
    };
    VerdictLine {
        ts: format_ms(j.ts_ms),
        owner: owner_name(&v),
        side: j.side.to_string(),
        class: v.class.to_string(),
        key: v.key_name,
        registered: v.registered,
        model: j.model,
        request_id: j.request_id,
        computed_cost: usd(v.computed_cost_nanos),
        reported_cost: usd(v.reported_cost_nanos),
        detail,
    }
}

/// The costs report over `[from_ms, to_ms)`, one line per group, in group
/// order.
pub fn cost_lines(
    conn: &mut AnyConnection,
    memo: &Memo,
    window: (i64, i64),
    by: GroupBy,
) -> Result<Vec<CostLine>, crate::db::DbError> {
    cost_lines_of(conn, memo, window, by, None)
}

/// [`cost_lines`] of one owner's rows only (team, service, env), when given.
/// Sums of rollups are kept in `memo` by the runs they came from.
pub fn cost_lines_of(
    conn: &mut AnyConnection,
    memo: &Memo,
    (from_ms, to_ms): (i64, i64),
    by: GroupBy,
    owner: Option<(String, String, String)>,
) -> Result<Vec<CostLine>, crate::db::DbError> {
    let mut costs = Costs::new(by);
    costs.only = owner.clone();
    if by == GroupBy::Tag {
        // Through each billed row's pair: the tags are the client's.
        repo::each_current_billed_with_tags(conn, (from_ms, to_ms), |v, tags| {
            if !costs.wanted(&v.team, &v.service, &v.env) {
                return;
            }
            let computed = usd(v.computed_cost_nanos);
            let reported = usd(v.reported_cost_nanos);
            let sums = Sums {
                rows: 1,
                unpriced: i64::from(computed.is_none()),
                computed: computed.unwrap_or_default(),
                reported: reported.unwrap_or_default(),
                variance: match (computed, reported) {
                    (Some(c), Some(r)) => r - c,
                    _ => Decimal::ZERO,
                },
            };
            let mut any = false;
            for tag in tags.split(',').map(str::trim).filter(|t| !t.is_empty()) {
                any = true;
                costs.named(tag).add(true, Some(*v.class), &sums);
            }
            if !any {
                costs.named(NO_TAG).add(true, Some(*v.class), &sums);
            }
        })?;
        return Ok(costs.lines());
    }
    // The runs' daily sums when they answer exactly; the verdicts
    // themselves otherwise (a window off midnight UTC, overlapping runs).
    match repo::rollup_runs(conn, (from_ms, to_ms))? {
        Some(runs) => {
            let question = format!("costs {by:?} {owner:?}");
            let lines = memo.get_or(memo::key(&question, (from_ms, to_ms), &runs), || {
                let owner = owner
                    .as_ref()
                    .map(|(t, s, e)| (t.as_str(), s.as_str(), e.as_str()));
                repo::each_rollup(conn, &runs, owner, (from_ms, to_ms), |r| {
                    costs.add_rollup(&r)
                })?;
                Ok::<_, crate::db::DbError>(costs.lines())
            })?;
            Ok(lines.as_ref().clone())
        }
        None => {
            repo::each_current_verdict(conn, None, (from_ms, to_ms), |j| costs.add(&j))?;
            Ok(costs.lines())
        }
    }
}

/// The rows a row report (`missing`, `unattributed`, `discrepancies`)
/// lists over `[from_ms, to_ms)`, in time then row order.
pub fn row_lines(
    conn: &mut AnyConnection,
    kind: Kind,
    (from_ms, to_ms): (i64, i64),
) -> Result<Vec<VerdictLine>, crate::db::DbError> {
    // Only the listed rows are kept.
    let mut lines: Vec<(i64, i64, VerdictLine)> = Vec::new();
    repo::each_current_verdict(conn, None, (from_ms, to_ms), |j| {
        if wanted(&j, kind) {
            lines.push((j.ts_ms, j.verdict.usage_row_id, row_line(j)));
        }
    })?;
    lines.sort_by_key(|(t, id, _)| (*t, *id));
    Ok(lines.into_iter().map(|(_, _, l)| l).collect())
}

/// What a report over a window leaves out: stored rows no current run
/// judged (outside every current run's window), and rows stored after the
/// run that covers them finished (late rows it never saw). A report is
/// only as complete as its runs: finance must not read "$0" where nothing
/// was reconciled.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Coverage {
    /// Stored rows in the window that no current run covers.
    pub unreconciled_rows: i64,
    /// Stored rows in a run's window, stored after that run finished.
    pub late_rows: i64,
    /// The `tally run` that would cover them (whole UTC days).
    pub run_command: Option<String>,
}

impl Coverage {
    /// Whether every stored row in the window is in the report.
    pub fn complete(&self) -> bool {
        self.unreconciled_rows == 0 && self.late_rows == 0
    }

    /// One line for people: what is left out and what to run.
    pub fn warning(&self) -> Option<String> {
        if self.complete() {
            return None;
        }
        let mut parts = Vec::new();
        if self.unreconciled_rows > 0 {
            parts.push(format!(
                "{} stored row(s) in this window were never reconciled",
                self.unreconciled_rows
            ));
        }
        if self.late_rows > 0 {
            parts.push(format!(
                "{} row(s) arrived after the run that covers them",
                self.late_rows
            ));
        }
        Some(format!(
            "{}; this report leaves them out. Run `{}` first.",
            parts.join(", and "),
            self.run_command.as_deref().unwrap_or("tally run")
        ))
    }
}

/// What a report over `[from_ms, to_ms)` leaves out (see [`Coverage`]).
pub fn coverage(
    conn: &mut AnyConnection,
    (from_ms, to_ms): (i64, i64),
) -> Result<Coverage, crate::db::DbError> {
    let runs = repo::current_run_windows(conn, (from_ms, to_ms))?;
    // The parts of the window no current run covers.
    let mut gaps = Vec::new();
    let mut at = from_ms;
    for (a, b, _) in &runs {
        if *a > at {
            gaps.push((at, (*a).min(to_ms)));
        }
        at = at.max(*b);
    }
    if at < to_ms {
        gaps.push((at, to_ms));
    }
    let mut c = Coverage::default();
    let (mut lo, mut hi) = (i64::MAX, i64::MIN);
    for g in gaps {
        let n = repo::count_rows_in(conn, g, None)?;
        if n > 0 {
            c.unreconciled_rows += n;
            // The days the rows are on, not the whole gap: a month with
            // one day ingested asks for a run over that day.
            if let Some((a, b)) = repo::rows_span(conn, g)? {
                (lo, hi) = (lo.min(a), hi.max(b + 1));
            }
        }
    }
    for (a, b, finished) in runs {
        let w = (a.max(from_ms), b.min(to_ms));
        let n = repo::count_rows_in(conn, w, Some(finished))?;
        if n > 0 {
            c.late_rows += n;
            (lo, hi) = (lo.min(w.0), hi.max(w.1));
        }
    }
    if lo < hi {
        let day = |ms: i64| format_ms(ms).get(..10).map(str::to_owned);
        let start = lo - lo.rem_euclid(DAY_MS);
        let end = hi + (DAY_MS - hi.rem_euclid(DAY_MS)) % DAY_MS;
        if let (Some(f), Some(t)) = (day(start), day(end)) {
            c.run_command = Some(format!("tally run --from {f} --to {t}"));
        }
    }
    Ok(c)
}
