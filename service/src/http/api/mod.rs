//! The `/v1` handlers and their views. Each extracts, calls one use case
//! on a pooled connection, and returns a view: rows never reach JSON.
//!
//! Pagination and health here; a module per resource: usage pushes
//! (`pushes`), runs, reports, the reference data (`reference`: owners,
//! keys, aliases, prices), quotas and alerts. Routes name them all as
//! `api::…`.

use std::io::Write;
use std::path::Path;

use actix_web::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::StreamExt;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use tally_reconcile::SideKind;
use tally_reconcile::parse::client::ClientFormat;
use tally_schema::rows::{KeyRow, NewOwner, OwnerRow, PriceRow, Reject};

use super::State;
use super::error::ApiError;
use super::routes::{not_found_response, principal};
use crate::app::ingest::{self, Outcome};
use crate::app::reconcile::ReadPlan;
use crate::app::registry;
use crate::app::report::{self, GroupBy, Kind};

type Data = web::Data<State>;
type Reply = Result<HttpResponse, ApiError>;

use crate::app::run::utc;

fn time_param(name: &str, value: &str) -> Result<i64, ApiError> {
    crate::clock::parse_time(value).map_err(|e| ApiError::bad_request(format!("`{name}`: {e}")))
}

pub(crate) fn window(from: &str, to: &str) -> Result<(i64, i64), ApiError> {
    let w = (time_param("from", from)?, time_param("to", to)?);
    if w.0 >= w.1 {
        return Err(ApiError::bad_request("`from` must be before `to`"));
    }
    Ok(w)
}

// ---- Pagination ---------------------------------------------------------

/// The most items a page may hold.
pub const MAX_PER_PAGE: usize = crate::app::page::Page::MAX_SIZE;

/// One page of a list.
#[derive(Debug, Serialize)]
pub struct Paged<T> {
    /// The items of this page.
    pub items: Vec<T>,
    /// 1-based page number.
    pub page: usize,
    /// Items per page.
    pub per_page: usize,
    /// Items in the whole list.
    pub total: usize,
}

/// A malformed page in a query string is the request's fault (400).
fn checked_page(
    page: Option<usize>,
    per_page: Option<usize>,
) -> Result<crate::app::page::Page, ApiError> {
    crate::app::page::Page::new(page, per_page).map_err(|e| ApiError::bad_request(e.to_string()))
}

fn page_of<T>(
    items: Vec<T>,
    page: Option<usize>,
    per_page: Option<usize>,
) -> Result<Paged<T>, ApiError> {
    let p = checked_page(page, per_page)?;
    let total = items.len();
    let items = items
        .into_iter()
        .skip((p.number - 1).saturating_mul(p.size))
        .take(p.size)
        .collect();
    Ok(Paged {
        items,
        page: p.number,
        per_page: p.size,
        total,
    })
}

impl<T> Paged<T> {
    /// A page the use case read from the store, as the API shows it.
    fn from_store<U>(p: crate::app::page::Paged<U>, view: impl FnMut(U) -> T) -> Self {
        Paged {
            items: p.items.into_iter().map(view).collect(),
            page: p.page.number,
            per_page: p.page.size,
            total: p.total,
        }
    }
}

impl PageQuery {
    /// The page asked for, checked.
    fn page(&self) -> Result<crate::app::page::Page, ApiError> {
        checked_page(self.page, self.per_page)
    }
}

/// `?page=&per_page=`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    page: Option<usize>,
    per_page: Option<usize>,
}

// ---- Health -------------------------------------------------------------

/// `GET /healthz`: the process answers.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

/// `GET /readyz`: the store can take a write within two seconds (a
/// store that answers reads but holds its write lock is not ready: every
/// push would wait and fail).
pub async fn readyz(state: Data) -> Reply {
    state
        .db(|c| crate::db::probe_write(c).map_err(ApiError::unavailable))
        .await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({"status": "ready"})))
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(state: Data) -> Reply {
    let figures = state
        .db(|c| {
            let st = crate::app::dashboard::store_state(c)?;
            let mut figures =
                super::metrics::StoreFigures::new(&st.batches, &st.runs, st.latest_counts);
            figures.firing = st.firing;
            figures.outbox = st.outbox;
            Ok(figures)
        })
        .await?;
    Ok(HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8"))
        .body(state.metrics.render(&figures)))
}

/// `GET /v1/openapi.json`.
pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok().json(super::openapi::document())
}

/// Any path not in the route table.
pub async fn not_found() -> HttpResponse {
    not_found_response()
}

mod period_routes;
mod pushes;
mod quota_routes;
mod reference;
mod report_routes;
mod run_routes;

pub use period_routes::*;
pub use pushes::*;
pub use quota_routes::*;
pub use reference::*;
pub use report_routes::*;
pub use run_routes::*;

#[cfg(test)]
mod tests {

    use super::*;

    #[test]
    fn pages_cut_lists_and_refuse_nonsense() {
        let p = page_of((1..=250).collect::<Vec<_>>(), Some(3), None).unwrap();
        assert_eq!((p.items.len(), p.total, p.items[0]), (50, 250, 201));
        assert!(page_of(vec![1], Some(0), None).is_err());
        assert!(page_of(vec![1], None, Some(MAX_PER_PAGE + 1)).is_err());
        assert!(page_of(vec![1], Some(9), None).unwrap().items.is_empty());
    }
}
