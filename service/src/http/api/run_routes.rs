//! Runs: start one, list them, read one.

// The parent's imports and helpers: these files are sections of one API.
use super::*;

/// `POST /v1/runs` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
    /// Window start (YYYY-MM-DD or RFC 3339).
    from: String,
    /// Window end, exclusive.
    to: String,
    /// Matching window (default `2s`).
    tolerance: Option<String>,
    /// Relative cost tolerance (default `1%`).
    cost_tolerance: Option<String>,
    /// Absolute cost tolerance, USD (default `0.000001`).
    cost_tolerance_abs: Option<String>,
}

/// `POST /v1/runs`: reconciles a window now and answers with the run.
pub async fn create_run(state: Data, body: web::Json<RunRequest>) -> Reply {
    let r = body.into_inner();
    let w = window(&r.from, &r.to)?;
    let settings = crate::app::reconcile::settings(
        r.tolerance.as_deref(),
        r.cost_tolerance.as_deref(),
        r.cost_tolerance_abs.as_deref(),
    )
    .map_err(|e| ApiError::bad_request(format!("{e:#}")))?;
    let o = state.run_window(w, settings).await?;
    Ok(HttpResponse::Created().json(crate::app::run::view(o.run, Some(o.counts))))
}

/// `GET /v1/runs`: newest first.
pub async fn list_runs(state: Data, q: web::Query<PageQuery>) -> Reply {
    let page = q.page()?;
    let runs = state
        .db(move |c| Ok(crate::app::run::list(c, page)?))
        .await?;
    Ok(HttpResponse::Ok().json(Paged::from_store(runs, |r| crate::app::run::view(r, None))))
}

/// `GET /v1/runs/{id}`.
pub async fn get_run(state: Data, id: web::Path<i64>) -> Reply {
    let id = id.into_inner();
    let (run, counts) = state.db(move |c| Ok(crate::app::run::get(c, id)?)).await?;
    Ok(HttpResponse::Ok().json(crate::app::run::view(run, Some(counts))))
}
