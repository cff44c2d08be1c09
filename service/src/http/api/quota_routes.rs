//! Quotas and alerts.

// The parent's imports and helpers: these files are sections of one API.
use super::*;

/// `GET /v1/quotas`: every quota with its use this period.
pub async fn list_quotas(state: Data) -> Reply {
    let now = state.utc_now()?;
    let settings = state.settings.clone();
    let list = state
        .db(move |c| Ok(crate::app::quotas::current(c, &settings, now)?))
        .await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "items": list })))
}

/// `PUT /v1/quotas/{name}`: creates or replaces it (the body is a quota,
/// its name taken from the path), answers with its status.
pub async fn put_quota(
    state: Data,
    name: web::Path<String>,
    body: web::Json<crate::app::quotas::QuotaSpec>,
) -> Reply {
    use crate::app::quotas;
    let name = name.into_inner();
    let mut spec = body.into_inner();
    if !spec.name.is_empty() && spec.name != name {
        return Err(ApiError::bad_request(
            "`name` in the body differs from the path",
        ));
    }
    spec.name = name;
    let now = state.utc_now()?;
    let min = state.settings.forecast_min_elapsed();
    let status = state
        .db(move |c| {
            quotas::set(c, &spec, now.naive_utc())?;
            Ok(quotas::measure(c, vec![spec], now, min)?)
        })
        .await?;
    // A quota set already over alerts now, not at the next schedule.
    evaluate_soon(&state);
    Ok(HttpResponse::Ok().json(status.first()))
}

/// `DELETE /v1/quotas/{name}`.
pub async fn delete_quota(state: Data, name: web::Path<String>) -> Reply {
    let name = name.into_inner();
    state
        .db(move |c| Ok(crate::app::quotas::delete(c, &name)?))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `GET /v1/quotas/status` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusQuery {
    key: Option<String>,
    owner: Option<String>,
}

/// `GET /v1/quotas/status?key=|owner=`: `over` is true when any quota of
/// the key (its own, or its owner's) or owner is at or over its limit.
pub async fn quota_status(state: Data, q: web::Query<StatusQuery>) -> Reply {
    let q = q.into_inner();
    let now = state.utc_now()?;
    let settings = state.settings.clone();
    let list = state
        .db(move |c| {
            Ok(crate::app::quotas::status(
                c,
                q.key.as_deref(),
                q.owner.as_deref(),
                now,
                &settings,
            )?)
        })
        .await?;
    let over: Vec<&str> = list
        .iter()
        .filter(|s| s.over)
        .map(|s| s.quota.name.as_str())
        .collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "over": !over.is_empty(),
        "over_quotas": over,
        "quotas": list,
    })))
}

/// `GET /v1/alerts` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsQuery {
    state: Option<String>,
    kind: Option<String>,
    limit: Option<i64>,
}

/// `GET /v1/alerts`: newest first.
pub async fn list_alerts(state: Data, q: web::Query<AlertsQuery>) -> Reply {
    let q = q.into_inner();
    let list = state
        .db(move |c| {
            Ok(crate::app::alerts::list(
                c,
                q.state.as_deref(),
                q.kind.as_deref(),
                q.limit.unwrap_or(100),
            )?)
        })
        .await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "items": list })))
}
