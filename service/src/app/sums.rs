//! One way to read a window's usage sums, for quotas and digests: whole
//! UTC days from the current runs' daily sums when those answer exactly,
//! and the partial days at the edges (or everything, when current runs
//! overlap) from each row's newest current verdict. Either way the caller
//! sees groups of the same shape, so the two readings cannot diverge.

use tally_reconcile::SideKind;
use tally_reconcile::report::Class;
use tally_reconcile::time::DAY_MS;

use crate::db::{AnyConnection, DbError, repo};

/// Rows of one class, key, owner and model: a day's sum, or one row.
#[derive(Debug, Clone, Copy)]
pub struct Group<'a> {
    pub class: Class,
    /// Canonical key name.
    pub key_name: &'a str,
    /// Owner: team.
    pub team: &'a str,
    /// Owner: service.
    pub service: &'a str,
    /// Owner: environment.
    pub env: &'a str,
    /// Model family.
    pub model_family: &'a str,
    pub rows: u64,
    /// Of those, rows without a price.
    pub unpriced: u64,
    /// Tally's price of the priced rows, nano-dollars.
    pub computed_nanos: i64,
    /// Input plus output tokens.
    pub tokens: i64,
}

/// Calls `each` with every group of `side` in `[from, to)`; `use_sums`
/// false reads row by row (the two agree; a test checks it).
pub fn each_group(
    conn: &mut AnyConnection,
    side: SideKind,
    (from, to): (i64, i64),
    use_sums: bool,
    mut each: impl FnMut(Group<'_>),
) -> Result<(), DbError> {
    let inner = (
        from.div_euclid(DAY_MS) * DAY_MS
            + if from.rem_euclid(DAY_MS) == 0 {
                0
            } else {
                DAY_MS
            },
        to.div_euclid(DAY_MS) * DAY_MS,
    );
    let runs = if use_sums && inner.0 < inner.1 {
        repo::rollup_runs(conn, inner)?
    } else {
        None
    };
    let mut by_row = |j: repo::Judged| {
        let v = &j.verdict;
        each(Group {
            class: *v.class,
            key_name: &v.key_name,
            team: &v.team,
            service: &v.service,
            env: &v.env,
            model_family: &v.model_family,
            rows: 1,
            unpriced: u64::from(v.computed_cost_nanos.is_none()),
            computed_nanos: v.computed_cost_nanos.unwrap_or(0),
            tokens: j.tokens.unwrap_or(0),
        });
    };
    let Some(run_ids) = runs else {
        return repo::each_current_verdict(conn, Some(side), (from, to), &mut by_row);
    };
    repo::each_current_verdict(conn, Some(side), (from, inner.0), &mut by_row)?;
    repo::each_current_verdict(conn, Some(side), (inner.1, to), &mut by_row)?;
    repo::each_rollup(conn, &run_ids, None, inner, |r| {
        if *r.side != side {
            return;
        }
        each(Group {
            class: *r.class,
            key_name: &r.key_name,
            team: &r.team,
            service: &r.service,
            env: &r.env,
            model_family: &r.model_family,
            rows: u64::try_from(r.row_count).unwrap_or(0),
            unpriced: u64::try_from(r.unpriced_rows).unwrap_or(0),
            computed_nanos: r.computed_nanos,
            tokens: r.tokens,
        });
    })
}
