//! The quota page's bars: figures as text, geometry in whole pixels.

use rust_decimal::Decimal;
use serde::Serialize;
use tally_schema::enums::StoredName;

use crate::app::quotas::{QuotaStatus, show};

/// Width of a quota bar on the page, pixels.
pub const BAR_PX: u32 = 300;

/// A quota as the page draws it: figures as text, geometry in whole pixels.
#[derive(Debug, Clone, Serialize)]
pub struct QuotaBar {
    pub name: String,
    /// Scope in words.
    pub scope: String,
    /// Period in words and zone.
    pub period: String,
    pub basis: String,
    /// Used, for people.
    pub used: String,
    /// Limit, for people.
    pub limit: String,
    /// Percent used.
    pub percent: String,
    /// Filled width (at most [`BAR_PX`]).
    pub fill_px: u32,
    /// Threshold marks.
    pub ticks_px: Vec<u32>,
    /// `ok`, `warn` (a threshold reached) or `over`.
    pub level: &'static str,
    /// Forecast, for people.
    pub forecast: Option<String>,
    /// Rows without a price.
    pub unpriced_rows: u64,
}

fn px_of(percent: Decimal) -> u32 {
    let p = percent.clamp(Decimal::ZERO, Decimal::from(100));
    u32::try_from((p * Decimal::from(BAR_PX) / Decimal::from(100)).round()).unwrap_or(0)
}

/// The page's bars.
pub fn bars(statuses: &[QuotaStatus]) -> Vec<QuotaBar> {
    statuses
        .iter()
        .map(|s| {
            let q = &s.quota;
            QuotaBar {
                name: q.name.clone(),
                scope: s.scope_label.clone(),
                period: format!("{} ({})", s.period_label, q.time_zone),
                basis: q.basis.stored_name().to_owned(),
                used: show(q.metric, s.used),
                limit: show(q.metric, q.limit),
                percent: format!("{} %", s.percent),
                fill_px: px_of(s.percent),
                ticks_px: q
                    .thresholds
                    .iter()
                    .filter(|t| **t < 100)
                    .map(|t| px_of(Decimal::from(*t)))
                    .collect(),
                level: if s.over {
                    "over"
                } else if s.reached.is_empty() {
                    "ok"
                } else {
                    "warn"
                },
                forecast: s.forecast_at.map(|t| {
                    t.with_timezone(&q.tz().unwrap_or(chrono_tz::UTC))
                        .format("%Y-%m-%d %H:%M %Z")
                        .to_string()
                }),
                unpriced_rows: s.unpriced_rows,
            }
        })
        .collect()
}
