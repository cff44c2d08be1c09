//! `tally tieout`: the providers' own reports against the stored gateway
//! rows of a window, bucket by bucket (see [`tally_reconcile::tieout`]).

use std::collections::HashMap;
use std::path::Path;

use rust_decimal::Decimal;
use serde::Serialize;
use tally_reconcile::record::TokenKind;
use tally_reconcile::tieout::{self, GatewayRow, Provider, Reported, Sums, TieOut};
use tally_schema::convert::nanos_to_usd;

use crate::app::error::{AppError, AppResult};
use crate::app::report::{Coverage, coverage};
use crate::db::AnyConnection;
use crate::db::repo;

/// One report file as read.
#[derive(Debug, Clone, Serialize)]
pub struct PageInfo {
    /// The file as named.
    pub file: String,
    /// What it is (`openai_usage`, `anthropic_cost`, ...).
    pub kind: String,
    /// Results in it.
    pub results: usize,
    /// The cursor of the page that follows it, when it says `has_more`.
    pub next_page: Option<String>,
}

/// A tie-out over a window.
#[derive(Debug, Clone, Serialize)]
pub struct TieOutView {
    /// The window, RFC 3339.
    pub from: String,
    /// Its end (exclusive).
    pub to: String,
    /// The report files.
    pub pages: Vec<PageInfo>,
    /// Reports whose last page says more follow: their figures are short.
    pub incomplete: Vec<String>,
    /// The comparison.
    #[serde(flatten)]
    pub tieout: TieOut,
    /// What the stored figures leave out (rows no run judged).
    pub coverage: Coverage,
    /// Gap alerts raised (fired now) and messages queued.
    pub alerts_fired: usize,
}

impl TieOutView {
    /// Whether everything agrees and every report is whole.
    pub fn clean(&self) -> bool {
        self.incomplete.is_empty()
            && self
                .tieout
                .lines
                .iter()
                .all(|l| l.verdict == tieout::Verdict::Agrees)
    }
}

/// Reads the report pages in `files` and ties them to the stored gateway
/// rows in `[from_ms, to_ms)`. Costs agree within `tolerance` USD. A
/// provider whose gap reaches `alerts.tieout_min_gap` alerts finance.
pub fn tie_out(
    conn: &mut AnyConnection,
    settings: &crate::settings::Settings,
    (from_ms, to_ms): (i64, i64),
    files: &[&Path],
    tolerance: Decimal,
    now: chrono::DateTime<chrono::Utc>,
) -> AppResult<TieOutView> {
    let mut pages = Vec::new();
    let mut reported: Vec<Reported> = Vec::new();
    // Per report kind, whether its last page (in the order given) is whole.
    let mut last_next: HashMap<&'static str, (String, Option<String>)> = HashMap::new();
    for path in files {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| AppError::Invalid(format!("cannot read `{name}`: {e}")))?;
        let page = tieout::read_page(&text, &name)?;
        last_next.insert(page.kind, (name.clone(), page.next_page.clone()));
        pages.push(PageInfo {
            file: name,
            kind: page.kind.to_owned(),
            results: page.results.len(),
            next_page: page.next_page,
        });
        // Only results inside the window: a report may cover more days.
        reported.extend(
            page.results
                .into_iter()
                .filter(|r| r.bucket.0 < to_ms && from_ms < r.bucket.1),
        );
    }
    let mut incomplete: Vec<String> = last_next
        .into_iter()
        .filter_map(|(kind, (file, next))| {
            next.map(|n| {
                format!("{kind}: `{file}` says more pages follow (next_page {n}): fetch them")
            })
        })
        .collect();
    incomplete.sort();
    let sources: HashMap<i64, String> = repo::batches(conn)?
        .into_iter()
        .map(|b| (b.id, b.source))
        .collect();
    let mut rows = Vec::new();
    repo::each_current_billed(conn, (from_ms, to_ms), |b| {
        let v = &b.verdict;
        let source = sources.get(&b.batch_id).map_or("", String::as_str);
        let Some(provider) = Provider::of_row(source, &b.served_model, &v.model_family) else {
            return;
        };
        let t = |k: TokenKind| {
            b.tokens
                .get(k as usize)
                .copied()
                .flatten()
                .and_then(|n| u64::try_from(n).ok())
                .unwrap_or(0)
        };
        rows.push(GatewayRow {
            provider,
            ts_ms: b.ts_ms,
            model: v.model_family.clone(),
            sums: Sums {
                requests: Some(1),
                input_tokens: t(TokenKind::Input),
                cached_tokens: t(TokenKind::CachedInput),
                cache_write_tokens: t(TokenKind::CacheWrite),
                output_tokens: t(TokenKind::Output),
                cost: Some(nanos_to_usd(v.reported_cost_nanos.unwrap_or(0), None)),
            },
        });
    })?;
    let aliases = crate::app::reference::load(conn)?.aliases;
    let tieout = tieout::tie_out(&reported, rows, &aliases, tolerance);
    // Short reports would alert on the pages not fetched: they do not.
    let alerts_fired = if incomplete.is_empty() {
        crate::app::alerts::raise_tieout_gaps(conn, settings, &tieout, (from_ms, to_ms), now)
            .map_err(|e| match e {
                crate::app::alerts::AlertError::Db(d) => AppError::Store(d),
                e => AppError::Internal(e.to_string()),
            })?
            .fired
    } else {
        0
    };
    Ok(TieOutView {
        alerts_fired,
        from: tally_reconcile::time::format_ms(from_ms),
        to: tally_reconcile::time::format_ms(to_ms),
        pages,
        incomplete,
        tieout,
        coverage: coverage(conn, (from_ms, to_ms))?,
    })
}
