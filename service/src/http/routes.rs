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

use super::error::{ApiError, PageError};
use super::openapi::fields;
use super::{State, api, pages};
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
    /// A page for people (HTML, session cookie or token, sign-in
    /// redirect) rather than an API route.
    pub page: bool,
    /// The query parameters its handler takes: the fields of its query
    /// struct, read from the struct itself ([`fields`]).
    pub query: Option<fn() -> &'static [&'static str]>,
    /// What its body is.
    pub body: Option<BodyKind>,
}

/// A request body, for the OpenAPI document.
#[derive(Debug, Clone, Copy)]
pub enum BodyKind {
    /// A JSON object with these fields (of the handler's body struct).
    Json(fn() -> &'static [&'static str]),
    /// Any JSON object (checked by the handler's own rules).
    JsonObject,
    /// An HTML form with these fields.
    Form(fn() -> &'static [&'static str]),
    /// An upload in one of these content types.
    Upload(&'static [&'static str]),
}

use Role::{Admin, Finance, Ingest, Platform};

/// Roles that read reports (and the pages).
pub const READERS: &[Role] = &[Admin, Finance, Platform];
/// Roles that manage reference data and start runs.
pub const MANAGERS: &[Role] = &[Admin, Platform];
const PUSHERS: &[Role] = &[Admin, Ingest];
/// Roles that close and reopen billing months.
const CLOSERS: &[Role] = &[Admin, Finance];
const ANYONE: &[Role] = &[Admin, Finance, Platform, Ingest];

/// Every route of the server.
pub const ROUTES: &[Route] = &[
    Route {
        method: "GET",
        path: "/healthz",
        roles: &[],
        summary: "the process is up",
        page: false,
        query: None,
        body: None,
    },
    Route {
        method: "GET",
        path: "/readyz",
        roles: ANYONE,
        summary: "the store is reachable",
        page: false,
        query: None,
        body: None,
    },
    Route {
        method: "GET",
        path: "/metrics",
        roles: MANAGERS,
        summary: "Prometheus metrics",
        page: false,
        query: None,
        body: None,
    },
    Route {
        method: "GET",
        path: "/v1/openapi.json",
        roles: ANYONE,
        summary: "this API's OpenAPI document",
        page: false,
        query: None,
        body: None,
    },
    Route {
        method: "POST",
        path: "/v1/usage/client",
        roles: PUSHERS,
        summary: "push client usage (NDJSON, or CSV)",
        page: false,
        query: Some(fields::<api::PushQuery>),
        body: Some(BodyKind::Upload(&["application/x-ndjson", "text/csv"])),
    },
    Route {
        method: "POST",
        path: "/v1/usage/gateway",
        roles: PUSHERS,
        summary: "upload a gateway export (CSV or JSON)",
        page: false,
        query: Some(fields::<api::PushQuery>),
        body: Some(BodyKind::Upload(&[
            "text/csv",
            "application/json",
            "application/x-ndjson",
        ])),
    },
    Route {
        method: "POST",
        path: "/v1/runs",
        roles: MANAGERS,
        summary: "reconcile a window",
        page: false,
        query: None,
        body: Some(BodyKind::Json(fields::<api::RunRequest>)),
    },
    Route {
        method: "GET",
        path: "/v1/runs",
        roles: READERS,
        summary: "list runs",
        page: false,
        query: Some(fields::<api::PageQuery>),
        body: None,
    },
    Route {
        method: "GET",
        path: "/v1/runs/{id}",
        roles: READERS,
        summary: "one run with its counts",
        page: false,
        query: None,
        body: None,
    },
    Route {
        method: "GET",
        path: "/v1/periods/{period}/focus",
        roles: READERS,
        summary: "a month as FOCUS 1.2 CSV or Parquet (frozen once closed; Tally-Sha256, Tally-Closed)",
        page: false,
        query: Some(fields::<api::FocusQuery>),
        body: None,
    },
    Route {
        method: "GET",
        path: "/v1/periods/{period}/reprice",
        roles: READERS,
        summary: "a month at the prices in force at another date, per model and owner",
        page: false,
        query: Some(fields::<api::RepriceQuery>),
        body: None,
    },
    Route {
        method: "GET",
        path: "/v1/closes",
        roles: READERS,
        summary: "closed months, reopened ones too",
        page: false,
        query: None,
        body: None,
    },
    Route {
        method: "POST",
        path: "/v1/closes",
        roles: CLOSERS,
        summary: "close a month: its FOCUS export becomes final",
        page: false,
        query: None,
        body: Some(BodyKind::Json(fields::<api::CloseRequest>)),
    },
    Route {
        method: "POST",
        path: "/v1/closes/{period}/reopen",
        roles: CLOSERS,
        summary: "reopen a closed month, with a reason",
        page: false,
        query: None,
        body: Some(BodyKind::Json(fields::<api::ReopenRequest>)),
    },
    Route {
        method: "GET",
        path: "/v1/reports/{kind}",
        roles: READERS,
        summary: "costs, missing, unattributed or discrepancies",
        page: false,
        query: Some(fields::<api::ReportQuery>),
        body: None,
    },
    Route {
        method: "GET",
        path: "/v1/owners",
        roles: READERS,
        summary: "list owners",
        page: false,
        query: Some(fields::<api::PageQuery>),
        body: None,
    },
    Route {
        method: "POST",
        path: "/v1/owners",
        roles: MANAGERS,
        summary: "create an owner (or set its contact)",
        page: false,
        query: None,
        body: Some(BodyKind::Json(fields::<api::OwnerInput>)),
    },
    Route {
        method: "GET",
        path: "/v1/owners/{id}",
        roles: READERS,
        summary: "one owner",
        page: false,
        query: None,
        body: None,
    },
    Route {
        method: "PUT",
        path: "/v1/owners/{id}",
        roles: MANAGERS,
        summary: "update an owner",
        page: false,
        query: None,
        body: Some(BodyKind::Json(fields::<api::OwnerInput>)),
    },
    Route {
        method: "DELETE",
        path: "/v1/owners/{id}",
        roles: MANAGERS,
        summary: "delete an owner (its keys stay, unowned)",
        page: false,
        query: None,
        body: None,
    },
    Route {
        method: "GET",
        path: "/v1/keys",
        roles: READERS,
        summary: "list keys",
        page: false,
        query: Some(fields::<api::PageQuery>),
        body: None,
    },
    Route {
        method: "GET",
        path: "/v1/keys/{key_id}",
        roles: READERS,
        summary: "one key",
        page: false,
        query: None,
        body: None,
    },
    Route {
        method: "PUT",
        path: "/v1/keys/{key_id}",
        roles: MANAGERS,
        summary: "create or replace a key",
        page: false,
        query: None,
        body: Some(BodyKind::Json(fields::<api::KeyInput>)),
    },
    Route {
        method: "DELETE",
        path: "/v1/keys/{key_id}",
        roles: MANAGERS,
        summary: "delete a key",
        page: false,
        query: None,
        body: None,
    },
    Route {
        method: "GET",
        path: "/v1/aliases",
        roles: READERS,
        summary: "list model aliases",
        page: false,
        query: Some(fields::<api::PageQuery>),
        body: None,
    },
    Route {
        method: "PUT",
        path: "/v1/aliases/{alias}",
        roles: MANAGERS,
        summary: "create or repoint an alias",
        page: false,
        query: None,
        body: Some(BodyKind::Json(fields::<api::AliasInput>)),
    },
    Route {
        method: "DELETE",
        path: "/v1/aliases/{alias}",
        roles: MANAGERS,
        summary: "delete an alias",
        page: false,
        query: None,
        body: None,
    },
    Route {
        method: "GET",
        path: "/v1/prices",
        roles: READERS,
        summary: "list prices",
        page: false,
        query: Some(fields::<api::PageQuery>),
        body: None,
    },
    Route {
        method: "POST",
        path: "/v1/prices",
        roles: MANAGERS,
        summary: "add or replace a price (model + effective_from)",
        page: false,
        query: None,
        body: Some(BodyKind::JsonObject),
    },
    Route {
        method: "DELETE",
        path: "/v1/prices/{id}",
        roles: MANAGERS,
        summary: "delete a price",
        page: false,
        query: None,
        body: None,
    },
    Route {
        method: "GET",
        path: "/v1/quotas",
        roles: READERS,
        summary: "every quota with its use this period",
        page: false,
        query: None,
        body: None,
    },
    Route {
        method: "GET",
        path: "/v1/quotas/status",
        roles: ANYONE,
        summary: "whether a key or owner is over a quota (?key= or ?owner=team/service/env)",
        page: false,
        query: Some(fields::<api::StatusQuery>),
        body: None,
    },
    Route {
        method: "PUT",
        path: "/v1/quotas/{name}",
        roles: MANAGERS,
        summary: "create or replace a quota",
        page: false,
        query: None,
        body: Some(BodyKind::Json(fields::<crate::app::quotas::QuotaSpec>)),
    },
    Route {
        method: "DELETE",
        path: "/v1/quotas/{name}",
        roles: MANAGERS,
        summary: "delete a quota (its alerts stay)",
        page: false,
        query: None,
        body: None,
    },
    Route {
        method: "GET",
        path: "/v1/alerts",
        roles: READERS,
        summary: "the alert history, newest first (?state=firing|resolved&limit=)",
        page: false,
        query: Some(fields::<api::AlertsQuery>),
        body: None,
    },
    Route {
        method: "GET",
        path: "/login",
        roles: &[],
        summary: "page: sign in with a token",
        page: true,
        query: Some(fields::<pages::NextQuery>),
        body: None,
    },
    Route {
        method: "POST",
        path: "/login",
        roles: &[],
        summary: "page: sign in (form: token, csrf, next)",
        page: true,
        query: None,
        body: Some(BodyKind::Form(fields::<pages::LoginForm>)),
    },
    Route {
        method: "POST",
        path: "/logout",
        roles: ANYONE,
        summary: "page: sign out (form: csrf)",
        page: true,
        query: None,
        body: Some(BodyKind::Form(fields::<pages::CsrfForm>)),
    },
    Route {
        method: "GET",
        path: "/",
        roles: READERS,
        summary: "page: the month's overview (?month=YYYY-MM)",
        page: true,
        query: Some(fields::<pages::MonthQuery>),
        body: None,
    },
    Route {
        method: "POST",
        path: "/runs",
        roles: MANAGERS,
        summary: "page: start a run (form: csrf, from, to)",
        page: true,
        query: None,
        body: Some(BodyKind::Form(fields::<pages::RunForm>)),
    },
    Route {
        method: "GET",
        path: "/runs/{id}",
        roles: READERS,
        summary: "page: one run, its counts and row tables (?owner=&key=&model=)",
        page: true,
        query: Some(fields::<crate::app::dashboard::RowFilter>),
        body: None,
    },
    Route {
        method: "GET",
        path: "/runs/{id}/export",
        roles: READERS,
        summary: "page: a run's rows of one class as CSV (?class=missing|unattributed&owner=&key=&model=)",
        page: true,
        query: Some(fields::<pages::ExportQuery>),
        body: None,
    },
    Route {
        method: "GET",
        path: "/owners/{id}",
        roles: READERS,
        summary: "page: one owner's month (?month=YYYY-MM)",
        page: true,
        query: Some(fields::<pages::MonthQuery>),
        body: None,
    },
    Route {
        method: "GET",
        path: "/quotas",
        roles: READERS,
        summary: "page: quotas as bars against their limits, and the alert history",
        page: true,
        query: None,
        body: None,
    },
    Route {
        method: "GET",
        path: "/month-end",
        roles: READERS,
        summary: "page: closed months with their FOCUS exports, and a month's state",
        page: true,
        query: Some(fields::<pages::MonthQuery>),
        body: None,
    },
    Route {
        method: "GET",
        path: "/export/costs.csv",
        roles: READERS,
        summary: "download: the costs of any window, by owner, team, service, env, key, model or day",
        page: true,
        query: Some(fields::<pages::CostsCsvQuery>),
        body: None,
    },
    Route {
        method: "GET",
        path: "/export/rows.csv",
        roles: READERS,
        summary: "download: a window's missing, unattributed or discrepancy rows",
        page: true,
        query: Some(fields::<pages::RowsCsvQuery>),
        body: None,
    },
    Route {
        method: "GET",
        path: "/export/focus.csv",
        roles: READERS,
        summary: "download: a month as FOCUS 1.2 CSV",
        page: true,
        query: Some(fields::<pages::FocusCsvQuery>),
        body: None,
    },
    Route {
        method: "GET",
        path: "/export/runs.csv",
        roles: READERS,
        summary: "download: every run, newest first",
        page: true,
        query: None,
        body: None,
    },
    Route {
        method: "GET",
        path: "/owners/{id}/classes.csv",
        roles: READERS,
        summary: "download: an owner's rows per class over a month or days",
        page: true,
        query: Some(fields::<pages::MonthQuery>),
        body: None,
    },
];

/// Registers every route's handler, behind `guard`.
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
                web::resource("/v1/periods/{period}/focus").route(web::get().to(api::get_focus)),
            )
            .service(
                web::resource("/v1/periods/{period}/reprice")
                    .route(web::get().to(api::get_reprice)),
            )
            .service(
                web::resource("/v1/closes")
                    .route(web::get().to(api::list_closes))
                    .route(web::post().to(api::create_close)),
            )
            .service(
                web::resource("/v1/closes/{period}/reopen")
                    .route(web::post().to(api::reopen_close)),
            )
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
            .service(web::resource("/v1/quotas").route(web::get().to(api::list_quotas)))
            // Before `{name}`, which would otherwise take `status`.
            .service(web::resource("/v1/quotas/status").route(web::get().to(api::quota_status)))
            .service(
                web::resource("/v1/quotas/{name}")
                    .route(web::put().to(api::put_quota))
                    .route(web::delete().to(api::delete_quota)),
            )
            .service(web::resource("/v1/alerts").route(web::get().to(api::list_alerts)))
            .service(
                page("/login")
                    .route(web::get().to(pages::login_form))
                    .route(web::post().to(pages::login)),
            )
            .service(page("/logout").route(web::post().to(pages::logout)))
            .service(page("/").route(web::get().to(pages::overview)))
            .service(page("/runs").route(web::post().to(pages::start_run)))
            .service(page("/runs/{id}").route(web::get().to(pages::run)))
            .service(page("/runs/{id}/export").route(web::get().to(pages::export)))
            .service(page("/owners/{id}").route(web::get().to(pages::owner)))
            .service(page("/quotas").route(web::get().to(pages::quotas)))
            .service(page("/month-end").route(web::get().to(pages::month_end)))
            .service(page("/export/costs.csv").route(web::get().to(pages::costs_csv)))
            .service(page("/export/rows.csv").route(web::get().to(pages::rows_csv)))
            .service(page("/export/focus.csv").route(web::get().to(pages::focus_csv)))
            .service(page("/export/runs.csv").route(web::get().to(pages::runs_csv)))
            .service(
                page("/owners/{id}/classes.csv").route(web::get().to(pages::owner_classes_csv)),
            )
            .default_service(web::to(api::not_found)),
    );
}

/// A page resource: its query, path and form errors are pages too.
fn page(path: &str) -> actix_web::Resource {
    fn bad(what: &str, e: impl std::fmt::Display) -> actix_web::Error {
        PageError(ApiError::bad_request(format!("{what}: {e}"))).into()
    }
    web::resource(path)
        .app_data(web::QueryConfig::default().error_handler(|e, _| bad("query", e)))
        .app_data(web::PathConfig::default().error_handler(|e, _| bad("path", e)))
        .app_data(
            web::FormConfig::default()
                .limit(64 * 1024)
                .error_handler(|e, _| bad("form", e)),
        )
}

/// What the table says of a request's path and method.
struct Found {
    /// Its entry, when the method is in the table for the path.
    route: Option<&'static Route>,
    /// Whether the path is in the table at all (else 404, not 405).
    path_known: bool,
    /// Whether the path is a page (errors as HTML, sign-in redirect).
    page: bool,
    /// The methods the table has for the path (`Allow` of a 405).
    allow: String,
}

fn lookup(method: &Method, pattern: Option<&str>) -> Found {
    let mut found = Found {
        route: None,
        path_known: false,
        page: false,
        allow: String::new(),
    };
    let Some(pattern) = pattern else {
        return found;
    };
    let mut allow: Vec<&str> = Vec::new();
    for r in ROUTES.iter().filter(|r| r.path == pattern) {
        found.path_known = true;
        found.page |= r.page;
        if r.method == method.as_str() {
            found.route = Some(r);
        }
        allow.push(r.method);
        if r.method == "GET" {
            allow.push("HEAD");
        }
    }
    allow.sort_unstable();
    found.allow = allow.join(", ");
    found
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

/// The form token of the session a page request signed in with; absent
/// when it came with a bearer token (no ambient credential, nothing to
/// forge).
#[derive(Debug, Clone)]
pub struct SessionCsrf(pub String);

/// Headers every API answer carries: figures and tokens are not cached
/// by a proxy or a browser, and no answer is sniffed into another type.
const API_HEADERS: &[(&str, &str)] = &[
    ("x-content-type-options", "nosniff"),
    ("cache-control", "no-store"),
];

/// Headers every page carries: no script may run at all (so even a value
/// that escaped escaping could not execute), no framing, no caching of
/// figures on shared machines.
const PAGE_HEADERS: &[(&str, &str)] = &[
    (
        "content-security-policy",
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; \
         form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "same-origin"),
    ("cache-control", "no-store"),
];

/// Authenticates, authorises against [`ROUTES`], and writes one log line
/// per request (route, status, duration, token name; never the token).
async fn guard(
    mut req: ServiceRequest,
    next: Next<BoxBody>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let start = Instant::now();
    let pattern = req.match_pattern();
    let mut method = req.method().clone();
    // HEAD is GET without the body: routed and authorised as GET (the
    // connection, which read the request as HEAD, sends no body).
    if method == Method::HEAD && lookup(&Method::GET, pattern.as_deref()).route.is_some() {
        req.head_mut().method = Method::GET;
        method = Method::GET;
    }
    let found = lookup(&method, pattern.as_deref());
    let allow = found.allow.clone();
    let mut who: Option<Principal> = None;
    let denied: Option<ApiError> = match found.route {
        Some(r) if r.roles.is_empty() => None,
        _ => match authenticate(&req, found.page).await {
            Err(e) => Some(e),
            Ok(None) => Some(ApiError::unauthorized()),
            Ok(Some((p, csrf))) => {
                let verdict = match found.route {
                    Some(r) if r.roles.contains(&p.role) => None,
                    Some(_) => Some(ApiError::forbidden(p.role.as_str())),
                    None if found.path_known => Some(ApiError::method_not_allowed()),
                    None => Some(ApiError::not_found("no such route")),
                };
                req.extensions_mut().insert(p.clone());
                if let Some(csrf) = csrf {
                    req.extensions_mut().insert(SessionCsrf(csrf));
                }
                who = Some(p);
                verdict
            }
        },
    };
    let mut res = match denied {
        Some(e) if found.page && e.code() == "unauthorized" => {
            let target = req
                .uri()
                .path_and_query()
                .map_or("/", actix_web::http::uri::PathAndQuery::as_str)
                .to_owned();
            req.into_response(pages::to_sign_in(&target))
        }
        Some(e) if found.page => req.into_response(PageError::from(e).error_response()),
        Some(e) => req.into_response(e.error_response()),
        None => next.call(req).await?,
    };
    let headers = if found.page {
        PAGE_HEADERS
    } else {
        API_HEADERS
    };
    for (name, value) in headers {
        res.headers_mut().insert(
            actix_web::http::header::HeaderName::from_static(name),
            actix_web::http::header::HeaderValue::from_static(value),
        );
    }
    if res.status() == actix_web::http::StatusCode::METHOD_NOT_ALLOWED
        && let Ok(v) = actix_web::http::header::HeaderValue::from_str(&allow)
    {
        res.headers_mut().insert(actix_web::http::header::ALLOW, v);
    }
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

/// The principal of a request: its bearer token, or for a page its
/// session cookie (with the session's form token). `None` without a live
/// one.
async fn authenticate(
    req: &ServiceRequest,
    page: bool,
) -> Result<Option<(Principal, Option<String>)>, ApiError> {
    let Some(state) = req.app_data::<web::Data<State>>() else {
        return Err(ApiError::internal(anyhow::anyhow!("no app state")));
    };
    if let Some(token) = bearer(req) {
        return Ok(state
            .db(move |c| tokens::authenticate(c, &token).map_err(ApiError::from))
            .await?
            .map(|p| (p, None)));
    }
    let cookie = page
        .then(|| req.cookie(pages::SESSION_COOKIE))
        .flatten()
        .map(|c| c.value().to_owned());
    let Some(id) = cookie else {
        return Ok(None);
    };
    let now = state.now()?;
    Ok(state
        .db(move |c| tokens::session(c, &id, now).map_err(ApiError::from))
        .await?
        .map(|(p, csrf)| (p, Some(csrf))))
}

/// A handler's caller (the guard put it there).
pub fn principal(req: &actix_web::HttpRequest) -> Option<Principal> {
    req.extensions().get::<Principal>().cloned()
}

/// A response for an unknown path (also the default service).
pub fn not_found_response() -> HttpResponse {
    ApiError::not_found("no such route").error_response()
}
