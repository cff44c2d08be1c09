//! Month-end: a month's FOCUS export, its close and reopening, repricing.

// The parent's imports and helpers: these files are sections of one API.
use super::*;

use crate::app::periods;

fn month_of(spec: &str) -> Result<crate::app::dashboard::Month, ApiError> {
    periods::billing_month(spec).map_err(|e| ApiError::bad_request(e.to_string()))
}

/// `GET /v1/periods/{YYYY-MM}/focus` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FocusQuery {
    /// `csv` (default) or `parquet`.
    pub format: Option<String>,
}

/// `GET /v1/periods/{YYYY-MM}/focus`: the FOCUS 1.2 CSV, frozen when the
/// month is closed, or Parquet made from it. The CSV's SHA-256 is in
/// `Tally-Sha256`, and `Tally-Closed` says whether it is final.
pub async fn get_focus(state: Data, period: web::Path<String>, q: web::Query<FocusQuery>) -> Reply {
    let month = month_of(&period)?;
    let parquet = match q.format.as_deref() {
        None | Some("csv") => false,
        Some("parquet") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "`format` is csv or parquet, not `{other}`"
            )));
        }
    };
    let account = state.settings.focus.clone();
    let e = state
        .db(move |c| Ok(periods::focus_export(c, &month, &account)?))
        .await?;
    if parquet {
        let mut bytes = Vec::new();
        crate::focus_parquet::write(&mut bytes, &e.csv).map_err(ApiError::internal)?;
        let r = HttpResponse::Ok()
            .insert_header((CONTENT_TYPE, "application/vnd.apache.parquet"))
            .insert_header((
                CONTENT_DISPOSITION,
                format!("attachment; filename=\"focus-{}.parquet\"", e.period),
            ))
            .insert_header(("Tally-Sha256", e.sha256.clone()))
            .insert_header((
                "Tally-Closed",
                if e.closed.is_some() { "true" } else { "false" },
            ))
            .body(bytes);
        return with_coverage(r, &e.coverage);
    }
    let r = HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, "text/csv; charset=utf-8"))
        .insert_header((
            CONTENT_DISPOSITION,
            format!("attachment; filename=\"focus-{}.csv\"", e.period),
        ))
        .insert_header(("Tally-Sha256", e.sha256.clone()))
        .insert_header((
            "Tally-Closed",
            if e.closed.is_some() { "true" } else { "false" },
        ))
        .body(e.csv);
    with_coverage(r, &e.coverage)
}

/// `GET /v1/closes`: every close, reopened ones too.
pub async fn list_closes(state: Data) -> Reply {
    let closes = state.db(move |c| Ok(periods::closes(c)?)).await?;
    Ok(HttpResponse::Ok().json(closes))
}

/// `POST /v1/closes` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloseRequest {
    /// `YYYY-MM`.
    pub period: String,
}

/// `POST /v1/closes`: closes a month (409 when closed already; 422 when
/// it is not over or has unreconciled rows).
pub async fn create_close(req: HttpRequest, state: Data, body: web::Json<CloseRequest>) -> Reply {
    let month = month_of(&body.period)?;
    let by = principal(&req).map_or_else(|| "-".to_owned(), |p| p.name);
    let account = state.settings.focus.clone();
    let now = crate::clock::utc_now()
        .map_err(ApiError::internal)?
        .naive_utc();
    let view = state
        .db(move |c| Ok(periods::close(c, &month, &account, &by, now)?))
        .await?;
    Ok(HttpResponse::Created().json(view))
}

/// `POST /v1/closes/{YYYY-MM}/reopen` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReopenRequest {
    /// Why the month is reopened (kept with the close).
    pub reason: String,
}

/// `POST /v1/closes/{YYYY-MM}/reopen`.
pub async fn reopen_close(
    req: HttpRequest,
    state: Data,
    period: web::Path<String>,
    body: web::Json<ReopenRequest>,
) -> Reply {
    let month = month_of(&period)?;
    let by = principal(&req).map_or_else(|| "-".to_owned(), |p| p.name);
    let reason = body.into_inner().reason;
    let now = crate::clock::utc_now()
        .map_err(ApiError::internal)?
        .naive_utc();
    state
        .db(move |c| Ok(periods::reopen(c, &month, &reason, &by, now)?))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `GET /v1/periods/{YYYY-MM}/reprice` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepriceQuery {
    /// The date whose prices apply.
    pub as_of: String,
}

/// `GET /v1/periods/{YYYY-MM}/reprice?as_of=`: the month at another
/// date's prices, per model and per owner.
pub async fn get_reprice(
    state: Data,
    period: web::Path<String>,
    q: web::Query<RepriceQuery>,
) -> Reply {
    let month = month_of(&period)?;
    let as_of = time_param("as_of", &q.as_of)?;
    let r = state
        .db(move |c| Ok(crate::app::reprice::reprice(c, &month, as_of)?))
        .await?;
    let cov = r.coverage.clone();
    with_coverage(HttpResponse::Ok().json(r), &cov)
}
