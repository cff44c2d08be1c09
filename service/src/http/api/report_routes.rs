//! Reports and exports over the latest runs.

// The parent's imports and helpers: these files are sections of one API.
use super::*;

/// Lines as a spreadsheet-safe CSV download named `file`.
pub fn csv_download<T: tally_reconcile::report_lines::Tabular>(lines: &[T], file: &str) -> Reply {
    let text = crate::export::csv_string(lines).map_err(ApiError::internal)?;
    Ok(HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, "text/csv; charset=utf-8"))
        .insert_header((
            CONTENT_DISPOSITION,
            format!("attachment; filename=\"{file}\""),
        ))
        .body(text))
}

/// Report formats over HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReportFormat {
    /// A page of JSON.
    Json,
    /// CSV, spreadsheet-safe: the whole report unless a page is asked.
    Csv,
}

/// `GET /v1/reports/{kind}` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportQuery {
    from: String,
    to: String,
    group_by: Option<GroupBy>,
    format: Option<ReportFormat>,
    page: Option<usize>,
    per_page: Option<usize>,
}

fn report_page<T: Serialize + tally_reconcile::report_lines::Tabular>(
    lines: Vec<T>,
    q: &ReportQuery,
    file: &str,
) -> Reply {
    match q.format.unwrap_or(ReportFormat::Json) {
        ReportFormat::Json => Ok(HttpResponse::Ok().json(page_of(lines, q.page, q.per_page)?)),
        ReportFormat::Csv => {
            let lines = if q.page.is_some() || q.per_page.is_some() {
                page_of(lines, q.page, q.per_page)?.items
            } else {
                lines
            };
            csv_download(&lines, file)
        }
    }
}

/// `GET /v1/reports/{costs|missing|unattributed|discrepancies}`.
pub async fn get_report(state: Data, kind: web::Path<String>, q: web::Query<ReportQuery>) -> Reply {
    let kind = <Kind as clap::ValueEnum>::from_str(&kind, false)
        .map_err(|_| ApiError::not_found(format!("no report `{kind}`")))?;
    let q = q.into_inner();
    let w = window(&q.from, &q.to)?;
    let name = format!("tally-{kind:?}.csv").to_ascii_lowercase();
    if kind == Kind::Costs {
        let by = q.group_by.unwrap_or(GroupBy::Owner);
        let memo = state.memo.clone();
        let (lines, cov) = state
            .db(move |c| {
                Ok((
                    report::cost_lines(c, &memo, w, by)?,
                    report::coverage(c, w)?,
                ))
            })
            .await?;
        return with_coverage(report_page(lines, &q, &name)?, &cov);
    }
    if q.group_by.is_some() {
        return Err(ApiError::bad_request("`group_by` is for the costs report"));
    }
    let (lines, cov) = state
        .db(move |c| Ok((report::row_lines(c, kind, w)?, report::coverage(c, w)?)))
        .await?;
    with_coverage(report_page(lines, &q, &name)?, &cov)
}

/// Says on every report what it leaves out (JSON and CSV alike, so a
/// script can refuse an incomplete one): `Tally-Unreconciled-Rows` (stored
/// rows no current run covers), `Tally-Late-Rows` (rows stored after their
/// run) and, when either is not 0, `Tally-Run-Command`.
pub(super) fn with_coverage(mut r: HttpResponse, c: &report::Coverage) -> Reply {
    let h = r.headers_mut();
    let num = |n: i64| actix_web::http::header::HeaderValue::from(n);
    h.insert(
        actix_web::http::header::HeaderName::from_static("tally-unreconciled-rows"),
        num(c.unreconciled_rows),
    );
    h.insert(
        actix_web::http::header::HeaderName::from_static("tally-late-rows"),
        num(c.late_rows),
    );
    if let Some(cmd) = c.run_command.as_deref()
        && let Ok(v) = actix_web::http::header::HeaderValue::from_str(cmd)
    {
        h.insert(
            actix_web::http::header::HeaderName::from_static("tally-run-command"),
            v,
        );
    }
    Ok(r)
}
