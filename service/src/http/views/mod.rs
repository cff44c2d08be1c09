//! What the pages draw, made from the use cases' data: chart geometry and
//! quota bars. The use cases return figures; pixels live here.

pub mod chart;
pub mod quota_bars;

use crate::app::dashboard::{Overview, OwnerPage};
use chart::Chart;

/// Series of the spend charts.
const SERIES: &[&str] = &["computed", "reported"];

/// Owners the overview's chart draws a bar for; the rest are one bar.
const CHART_OWNERS: usize = 15;

/// The overview's chart: computed and reported spend per owner, most
/// expensive first, each label linking to the owner's page; past
/// the 15 largest, one bar for the others (the table lists them all).
pub fn overview_chart(o: &Overview) -> Chart {
    let values = o
        .owners
        .iter()
        .map(|s| {
            (
                s.line.group.clone(),
                s.id.map(|id| format!("/owners/{id}")),
                vec![s.line.computed_cost, s.line.reported_cost],
            )
        })
        .collect::<Vec<_>>();
    chart::horizontal(&chart::largest_and_rest(values, CHART_OWNERS), SERIES, 760)
}

/// An owner's chart: computed and reported spend per day of the month.
pub fn owner_chart(p: &OwnerPage) -> Chart {
    chart::columns(
        &p.days
            .iter()
            .map(|d| {
                (
                    d.day.get(8..).unwrap_or(&d.day).to_owned(),
                    None,
                    vec![d.computed_cost, d.reported_cost],
                )
            })
            .collect::<Vec<_>>(),
        SERIES,
        760,
    )
}
