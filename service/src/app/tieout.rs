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
    key_map: Option<&Path>,
    tolerance: Decimal,
    now: chrono::DateTime<chrono::Utc>,
) -> AppResult<TieOutView> {
    let map = match key_map {
        Some(path) => {
            let name = path.display().to_string();
            let text = std::fs::read_to_string(path)
                .map_err(|e| AppError::Invalid(format!("cannot read `{name}`: {e}")))?;
            tieout::AccountMap::from_toml(&text, &name)?
        }
        None => tieout::AccountMap::default(),
    };
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
            key: v.key_name.clone(),
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
    let tieout = tieout::tie_out(&reported, rows, &aliases, &map, tolerance);
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
    let view = TieOutView {
        alerts_fired,
        from: tally_reconcile::time::format_ms(from_ms),
        to: tally_reconcile::time::format_ms(to_ms),
        pages,
        incomplete,
        tieout,
        coverage: coverage(conn, (from_ms, to_ms))?,
    };
    let result = serde_json::to_string(&Kept {
        tieout: view.tieout.clone(),
        incomplete: view.incomplete.clone(),
    })
    .map_err(|e| AppError::Internal(e.to_string()))?;
    repo::insert_tieout(
        conn,
        &tally_schema::rows::NewTieout {
            from_ms,
            to_ms,
            ran_at: now.naive_utc(),
            clean: view.clean(),
            result: &result,
        },
    )?;
    Ok(view)
}

/// What a tie-out keeps: its buckets, and the reports that were short.
#[derive(Serialize, serde::Deserialize)]
struct Kept {
    tieout: TieOut,
    incomplete: Vec<String>,
}

/// A tie-out as it was kept, for the pages.
#[derive(Debug, Clone, Serialize)]
pub struct StoredTieOut {
    /// When it ran (UTC, RFC 3339).
    pub ran_at: String,
    /// Its window, RFC 3339.
    pub from: String,
    /// Its end (exclusive).
    pub to: String,
    /// Whether every bucket agreed and every report was whole.
    pub clean: bool,
    /// Its buckets, those that disagree first (largest gap first).
    pub lines: Vec<LineView>,
    /// Gap per provider, USD.
    pub gap_by_provider: Vec<(String, Decimal)>,
    /// Reports whose pages were short (their figures are too).
    pub incomplete: Vec<String>,
}

/// One bucket, for people.
#[derive(Debug, Clone, Serialize)]
pub struct LineView {
    /// Provider.
    pub provider: &'static str,
    /// UTC day of the bucket's start.
    pub day: String,
    /// Model family.
    pub model: String,
    /// The key map's group ("" without one).
    pub group: String,
    /// `agrees`, `gateway_under_reports`, ...
    pub verdict: String,
    /// Requests, provider then gateway (`None`: not counted).
    pub requests: (Option<u64>, Option<u64>),
    /// Input and output tokens, provider then gateway.
    pub tokens: (u64, u64),
    /// Cost, provider then gateway.
    pub cost: (Option<Decimal>, Option<Decimal>),
    /// Provider less gateway, USD.
    pub gap: Option<Decimal>,
}

/// The newest tie-out over any part of `[from_ms, to_ms)`.
pub fn latest(conn: &mut AnyConnection, window: (i64, i64)) -> AppResult<Option<StoredTieOut>> {
    let Some(row) = repo::latest_tieout(conn, window)? else {
        return Ok(None);
    };
    let Kept {
        tieout: t,
        incomplete,
    } = serde_json::from_str(&row.result)
        .map_err(|e| AppError::Internal(format!("stored tie-out {}: {e}", row.id)))?;
    let mut lines: Vec<LineView> = t
        .lines
        .iter()
        .map(|l| LineView {
            provider: l.provider.name(),
            day: tally_reconcile::time::format_ms(l.start_ms)
                .get(..10)
                .unwrap_or_default()
                .to_owned(),
            model: l.model.clone(),
            group: l.group.clone(),
            verdict: l.verdict.name().to_owned(),
            requests: (l.provider_sums.requests, l.gateway_sums.requests),
            tokens: (
                l.provider_sums.input_tokens + l.provider_sums.output_tokens,
                l.gateway_sums.input_tokens + l.gateway_sums.output_tokens,
            ),
            cost: (l.provider_sums.cost, l.gateway_sums.cost),
            gap: l.gap,
        })
        .collect();
    lines.sort_by_key(|l| {
        (
            l.verdict == "agrees",
            std::cmp::Reverse(l.gap.map(|g| g.abs())),
        )
    });
    Ok(Some(StoredTieOut {
        ran_at: row
            .ran_at
            .and_utc()
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string(),
        from: tally_reconcile::time::format_ms(row.from_ms),
        to: tally_reconcile::time::format_ms(row.to_ms),
        clean: row.clean,
        lines,
        gap_by_provider: t.gap_by_provider.into_iter().collect(),
        incomplete,
    }))
}
