//! The route table: every route, the roles that may call it, and the one
//! middleware that enforces it and logs each request.
//!
//! Access is denied by default: a request whose route is not in [`ROUTES`]
//! never reaches a handler, so a handler registered without a table entry
//! is unreachable rather than open.

use std::time::Instant;

use actix_web::body::BoxBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::{Next, from_fn};
use actix_web::{HttpMessage, HttpResponse, ResponseError, web};

use super::error::ApiError;
use super::{State, api};
use crate::app::tokens::{self, Principal, Role};

/// One route.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    /// HTTP method.
    pub method: &'static str,
    /// Path pattern, as actix matches it (`/v1/runs/{id}`).
    pub path: &'static str,
    /// Roles that may call it; empty: no token needed.
    pub roles: &'static [Role],
    /// What it does.
    pub summary: &'static str,
}

use Role::{Admin, Finance, Ingest, Platform};

const READERS: &[Role] = &[Admin, Finance, Platform];
const MANAGERS: &[Role] = &[Admin, Platform];
const PUSHERS: &[Role] = &[Admin, Ingest];
const ANYONE: &[Role] = &[Admin, Finance, Platform, Ingest];

/// Every route of the server.
pub const ROUTES: &[Route] = &[
    Route {
        method: "GET",
        path: "/healthz",
        roles: &[],
        summary: "the process is up",
    },
    Route {
        method: "GET",
        path: "/readyz",
        roles: ANYONE,
        summary: "the store is reachable",
    },
    Route {
        method: "GET",
        path: "/metrics",
        roles: MANAGERS,
        summary: "Prometheus metrics",
    },
    Route {
        method: "GET",
        path: "/v1/openapi.json",
        roles: ANYONE,
        summary: "this API's OpenAPI document",
    },
    Route {
        method: "POST",
        path: "/v1/usage/client",
        roles: PUSHERS,
        summary: "push client usage (NDJSON, or CSV)",
    },
    Route {
        method: "POST",
        path: "/v1/usage/gateway",
        roles: PUSHERS,
        summary: "upload a gateway export (CSV or JSON)",
    },
    Route {
        method: "POST",
        path: "/v1/runs",
        roles: MANAGERS,
        summary: "reconcile a window",
    },
    Route {
        method: "GET",
        path: "/v1/runs",
        roles: READERS,
        summary: "list runs",
    },
    Route {
        method: "GET",
        path: "/v1/runs/{id}",
        roles: READERS,
        summary: "one run with its counts",
    },
    Route {
        method: "GET",
        path: "/v1/reports/{kind}",
        roles: READERS,
        summary: "costs, missing, unattributed or discrepancies",
    },
    Route {
        method: "GET",
        path: "/v1/owners",
        roles: READERS,
        summary: "list owners",
    },
    Route {
        method: "POST",
        path: "/v1/owners",
        roles: MANAGERS,
        summary: "create an owner (or set its contact)",
    },
    Route {
        method: "GET",
        path: "/v1/owners/{id}",
        roles: READERS,
        summary: "one owner",
    },
    Route {
        method: "PUT",
        path: "/v1/owners/{id}",
        roles: MANAGERS,
        summary: "update an owner",
    },
    Route {
        method: "DELETE",
        path: "/v1/owners/{id}",
        roles: MANAGERS,
        summary: "delete an owner (its keys stay, unowned)",
    },
    Route {
        method: "GET",
        path: "/v1/keys",
        roles: READERS,
        summary: "list keys",
    },
    Route {
        method: "GET",
        path: "/v1/keys/{key_id}",
        roles: READERS,
        summary: "one key",
    },
    Route {
        method: "PUT",
        path: "/v1/keys/{key_id}",
        roles: MANAGERS,
        summary: "create or replace a key",
    },
    Route {
        method: "DELETE",
        path: "/v1/keys/{key_id}",
        roles: MANAGERS,
        summary: "delete a key",
    },
    Route {
        method: "GET",
        path: "/v1/aliases",
        roles: READERS,
        summary: "list model aliases",
    },
    Route {
        method: "PUT",
        path: "/v1/aliases/{alias}",
        roles: MANAGERS,
        summary: "create or repoint an alias",
    },
    Route {
        method: "DELETE",
        path: "/v1/aliases/{alias}",
        roles: MANAGERS,
        summary: "delete an alias",
    },
    Route {
        method: "GET",
        path: "/v1/prices",
        roles: READERS,
        summary: "list prices",
    },
    Route {
        method: "POST",
        path: "/v1/prices",
        roles: MANAGERS,
        summary: "add or replace a price (model + effective_from)",
    },
    Route {
        method: "DELETE",
        path: "/v1/prices/{id}",
        roles: MANAGERS,
        summary: "delete a price",
    },
];

/// Registers every route's handler, behind [`guard`].
pub fn configure(cfg: &mut web::ServiceConfig) {
    let json = web::JsonConfig::default()
        .limit(1 << 20)
        .error_handler(|e, _| ApiError::bad_request(format!("JSON body: {e}")).into());
    let query = web::QueryConfig::default()
        .error_handler(|e, _| ApiError::bad_request(format!("query: {e}")).into());
    let path = web::PathConfig::default()
        .error_handler(|e, _| ApiError::bad_request(format!("path: {e}")).into());
    cfg.app_data(json).app_data(query).app_data(path).service(
        web::scope("")
            .wrap(from_fn(guard))
            .service(web::resource("/healthz").route(web::get().to(api::healthz)))
            .service(web::resource("/metrics").route(web::get().to(api::metrics)))
            .service(web::resource("/v1/openapi.json").route(web::get().to(api::openapi)))
            .service(web::resource("/readyz").route(web::get().to(api::readyz)))
            .service(web::resource("/v1/usage/client").route(web::post().to(api::push_client)))
            .service(web::resource("/v1/usage/gateway").route(web::post().to(api::push_gateway)))
            .service(
                web::resource("/v1/runs")
                    .route(web::get().to(api::list_runs))
                    .route(web::post().to(api::create_run)),
            )
            .service(web::resource("/v1/runs/{id}").route(web::get().to(api::get_run)))
            .service(web::resource("/v1/reports/{kind}").route(web::get().to(api::get_report)))
            .service(
                web::resource("/v1/owners")
                    .route(web::get().to(api::list_owners))
                    .route(web::post().to(api::create_owner)),
            )
            .service(
                web::resource("/v1/owners/{id}")
                    .route(web::get().to(api::get_owner))
                    .route(web::put().to(api::update_owner))
                    .route(web::delete().to(api::delete_owner)),
            )
            .service(web::resource("/v1/keys").route(web::get().to(api::list_keys)))
            .service(
                web::resource("/v1/keys/{key_id}")
                    .route(web::get().to(api::get_key))
                    .route(web::put().to(api::put_key))
                    .route(web::delete().to(api::delete_key)),
            )
            .service(web::resource("/v1/aliases").route(web::get().to(api::list_aliases)))
            .service(
                web::resource("/v1/aliases/{alias}")
                    .route(web::put().to(api::put_alias))
                    .route(web::delete().to(api::delete_alias)),
            )
            .service(
                web::resource("/v1/prices")
                    .route(web::get().to(api::list_prices))
                    .route(web::post().to(api::create_price)),
            )
            .service(web::resource("/v1/prices/{id}").route(web::delete().to(api::delete_price)))
            .default_service(web::to(api::not_found)),
    );
}

/// The table entry of a request, and whether its path exists at all.
fn lookup(method: &Method, pattern: Option<&str>) -> (Option<&'static Route>, bool) {
    let Some(pattern) = pattern else {
        return (None, false);
    };
    let same_path = ROUTES.iter().filter(|r| r.path == pattern);
    let mut any = false;
    for r in same_path {
        any = true;
        if r.method == method.as_str() {
            return (Some(r), true);
        }
    }
    (None, any)
}

/// The bearer token of a request, if it carries one.
fn bearer(req: &ServiceRequest) -> Option<String> {
    let h = req.headers().get(actix_web::http::header::AUTHORIZATION)?;
    let v = h.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}

/// Authenticates, authorises against [`ROUTES`], and writes one log line
/// per request (route, status, duration, token name; never the token).
async fn guard(
    req: ServiceRequest,
    next: Next<BoxBody>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let start = Instant::now();
    let pattern = req.match_pattern();
    let method = req.method().clone();
    let (route, path_known) = lookup(&method, pattern.as_deref());
    let mut who: Option<Principal> = None;
    let denied: Option<ApiError> = match route {
        Some(r) if r.roles.is_empty() => None,
        _ => match authenticate(&req).await {
            Err(e) => Some(e),
            Ok(None) => Some(ApiError::unauthorized()),
            Ok(Some(p)) => {
                let verdict = match route {
                    Some(r) if r.roles.contains(&p.role) => None,
                    Some(_) => Some(ApiError::forbidden(p.role.as_str())),
                    None if path_known => Some(ApiError::method_not_allowed()),
                    None => Some(ApiError::not_found("no such route")),
                };
                req.extensions_mut().insert(p.clone());
                who = Some(p);
                verdict
            }
        },
    };
    let res = match denied {
        Some(e) => req.into_response(e.error_response()),
        None => next.call(req).await?,
    };
    let status = res.status().as_u16();
    let route = pattern.as_deref().unwrap_or("(unmatched)");
    if let Some(state) = res.request().app_data::<web::Data<State>>() {
        state.metrics.observe(
            method.as_str(),
            route,
            status,
            start.elapsed().as_secs_f64(),
        );
    }
    tracing::info!(
        method = %method,
        route,
        status,
        duration_ms = %format!("{:.3}", start.elapsed().as_secs_f64() * 1000.0),
        token = who.as_ref().map_or("-", |p| p.name.as_str()),
        "request"
    );
    Ok(res)
}

/// The principal of a request's token: `None` without a live token.
async fn authenticate(req: &ServiceRequest) -> Result<Option<Principal>, ApiError> {
    let Some(token) = bearer(req) else {
        return Ok(None);
    };
    let Some(state) = req.app_data::<web::Data<State>>() else {
        return Err(ApiError::internal(anyhow::anyhow!("no app state")));
    };
    state
        .db(move |c| tokens::authenticate(c, &token).map_err(ApiError::from))
        .await
}

/// A handler's caller (the guard put it there).
pub fn principal(req: &actix_web::HttpRequest) -> Option<Principal> {
    req.extensions().get::<Principal>().cloned()
}

/// A response for an unknown path (also the default service).
pub fn not_found_response() -> HttpResponse {
    ApiError::not_found("no such route").error_response()
}
