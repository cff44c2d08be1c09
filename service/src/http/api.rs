//! The `/v1` handlers and their views. Each extracts, calls one use case
//! on a pooled connection, and returns a view: rows never reach JSON.

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

fn window(from: &str, to: &str) -> Result<(i64, i64), ApiError> {
    let w = (time_param("from", from)?, time_param("to", to)?);
    if w.0 >= w.1 {
        return Err(ApiError::bad_request("`from` must be before `to`"));
    }
    Ok(w)
}

// ---- Pagination ---------------------------------------------------------

/// Items per page when not asked.
pub const PER_PAGE: usize = 100;
/// The most items a page may hold.
pub const MAX_PER_PAGE: usize = 10_000;

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

fn page_of<T>(
    items: Vec<T>,
    page: Option<usize>,
    per_page: Option<usize>,
) -> Result<Paged<T>, ApiError> {
    let page = page.unwrap_or(1);
    let per_page = per_page.unwrap_or(PER_PAGE);
    if page == 0 || per_page == 0 || per_page > MAX_PER_PAGE {
        return Err(ApiError::bad_request(format!(
            "`page` starts at 1 and `per_page` is 1 to {MAX_PER_PAGE}"
        )));
    }
    let total = items.len();
    let items = items
        .into_iter()
        .skip((page - 1).saturating_mul(per_page))
        .take(per_page)
        .collect();
    Ok(Paged {
        items,
        page,
        per_page,
        total,
    })
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

// ---- Ingest -------------------------------------------------------------

/// `?name=&format=&source=` of an upload.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushQuery {
    /// The batch's name (default `http:<token name>`).
    name: Option<String>,
    /// Client uploads: `jsonl` or `csv` (default from Content-Type, else
    /// detected).
    format: Option<String>,
    /// Gateway uploads: a built-in source name (default detected).
    source: Option<String>,
}

/// One refused row of an upload.
#[derive(Debug, Serialize)]
pub struct RejectView {
    /// 1-based line (or JSON array element).
    pub line: i64,
    /// Field at fault.
    pub field: String,
    /// Why.
    pub reason: String,
}

impl From<Reject> for RejectView {
    fn from(r: Reject) -> Self {
        Self {
            line: r.line,
            field: r.field,
            reason: r.reason,
        }
    }
}

/// What an upload did: `read = new + duplicate + rejected`.
#[derive(Debug, Serialize)]
pub struct IngestView {
    /// The batch holding it.
    pub batch_id: i64,
    /// The same bytes were uploaded before: nothing was added.
    pub already: bool,
    /// Rows read.
    pub read: i64,
    /// Rows stored.
    pub new: i64,
    /// Rows the store had already.
    pub duplicate: i64,
    /// Rows refused (kept as rejects).
    pub rejected: i64,
    /// Format or gateway source it was read as.
    pub source: String,
    /// The first rejects, with line, field and reason.
    pub rejects: Vec<RejectView>,
}

/// Rejects listed in an upload's response (all are kept in the store).
pub const REJECTS_LISTED: usize = 1_000;

/// `POST /v1/usage/client`: NDJSON (the client log format) or CSV.
pub async fn push_client(
    state: Data,
    req: HttpRequest,
    q: web::Query<PushQuery>,
    body: web::Payload,
) -> Reply {
    push(state, req, q.into_inner(), body, SideKind::Client).await
}

/// `POST /v1/usage/gateway`: a gateway export, CSV or JSON.
pub async fn push_gateway(
    state: Data,
    req: HttpRequest,
    q: web::Query<PushQuery>,
    body: web::Payload,
) -> Reply {
    push(state, req, q.into_inner(), body, SideKind::Gateway).await
}

fn content_type(req: &HttpRequest) -> String {
    req.headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// The client format an upload says it is, if it says.
fn client_format(q: &PushQuery, ct: &str) -> Result<Option<ClientFormat>, ApiError> {
    Ok(match q.format.as_deref() {
        Some("jsonl" | "ndjson") => Some(ClientFormat::Jsonl),
        Some("csv") => Some(ClientFormat::Csv),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "`format`: `{other}` is not jsonl or csv"
            )));
        }
        None => match ct {
            "application/x-ndjson" | "application/jsonl" | "application/jsonlines" => {
                Some(ClientFormat::Jsonl)
            }
            "text/csv" => Some(ClientFormat::Csv),
            _ => None,
        },
    })
}

/// The gateway profiles an upload may be read as: only built-ins (a
/// mapping file path from a request would read the server's files).
fn upload_profiles(
    source: Option<&str>,
) -> Result<Vec<tally_reconcile::parse::mapping::Profile>, ApiError> {
    let builtins = tally_reconcile::parse::mapping::Profile::builtins()
        .map_err(|e| ApiError::internal(anyhow::anyhow!("built-in profiles: {e}")))?;
    let Some(src) = source else {
        return Ok(builtins);
    };
    match builtins.iter().find(|p| p.name == src) {
        Some(p) => Ok(vec![p.clone()]),
        None => Err(ApiError::bad_request(format!(
            "`source`: `{src}` is not a built-in source ({})",
            builtins
                .iter()
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// Writes the body to `path` as it arrives, refusing more than `limit`
/// bytes, and a body whose next bytes do not come within `idle`: a stalled
/// upload ends instead of holding its slot. No store connection is held
/// meanwhile. The writes are small and go to the page cache, so they are
/// done in place rather than on the blocking pool.
async fn spool(
    mut body: web::Payload,
    path: &Path,
    limit: usize,
    idle: std::time::Duration,
) -> Result<(), ApiError> {
    let mut f = std::io::BufWriter::with_capacity(
        1 << 20,
        std::fs::File::create(path).map_err(ApiError::internal)?,
    );
    let mut n = 0usize;
    loop {
        let next = actix_web::rt::time::timeout(idle, body.next())
            .await
            .map_err(|_| ApiError::body_timeout(idle.as_secs()))?;
        let Some(chunk) = next else { break };
        let chunk = chunk.map_err(|e| ApiError::bad_request(format!("body: {e}")))?;
        n = n.saturating_add(chunk.len());
        if n > limit {
            return Err(ApiError::too_large(limit));
        }
        f.write_all(&chunk).map_err(ApiError::internal)?;
    }
    f.flush().map_err(ApiError::internal)?;
    if n == 0 {
        return Err(ApiError::bad_request("the body is empty"));
    }
    Ok(())
}

/// An ingest failure: the store's is ours (500, or 503 when it cannot be
/// reached), the input's is the upload's (422); the use case names the
/// file by the upload's name, never the server's temporary file.
fn ingest_error(e: ingest::IngestError) -> ApiError {
    match e {
        ingest::IngestError::Input(m) => ApiError::unprocessable(m),
        ingest::IngestError::Store(e) => e.into(),
    }
}

async fn push(
    state: Data,
    req: HttpRequest,
    q: PushQuery,
    body: web::Payload,
    kind: SideKind,
) -> Reply {
    let ct = content_type(&req);
    let (client_format, profiles) = match kind {
        SideKind::Client => (client_format(&q, &ct)?, Vec::new()),
        SideKind::Gateway => (None, upload_profiles(q.source.as_deref())?),
    };
    let who = principal(&req).map_or_else(|| "-".to_owned(), |p| p.name);
    // Held until the answer: a token's uploads under way are bounded, so
    // one client's stalled or slow bodies cannot take every slot.
    let _slot = state
        .uploads
        .enter(&who)
        .ok_or_else(|| ApiError::too_many_uploads(state.settings.server.uploads_per_token))?;
    let label = q.name.clone().unwrap_or_else(|| format!("http:{who}"));
    let now = state.now()?;
    // Every upload is spooled to a private temporary file first and read
    // as `tally ingest` reads one: a store connection is taken only once
    // the whole body is in, and memory stays bounded whatever its size.
    let (o, rejects) = spooled(
        &state,
        kind,
        body,
        client_format,
        profiles,
        &ct,
        &q,
        label,
        now,
    )
    .await?;
    if o.new > 0 {
        evaluate_soon(&state);
    }
    let status = if o.already {
        actix_web::http::StatusCode::OK
    } else {
        actix_web::http::StatusCode::CREATED
    };
    Ok(HttpResponse::build(status).json(IngestView {
        batch_id: o.batch_id,
        already: o.already,
        read: o.read,
        new: o.new,
        duplicate: o.duplicate,
        rejected: o.rejected,
        source: o.source,
        rejects: rejects
            .into_iter()
            .take(REJECTS_LISTED)
            .map(Into::into)
            .collect(),
    }))
}

/// Evaluates quotas after new usage, off the request: its answer does not
/// wait, and a burst of pushes is one or two evaluations.
fn evaluate_soon(state: &Data) {
    let state = state.clone();
    actix_web::rt::spawn(async move {
        let pool = state.pool.clone();
        let work = web::block(move || {
            state.evaluations.run(|| {
                let now = (state.clock)()
                    .ok()
                    .and_then(chrono::DateTime::from_timestamp_millis);
                match (pool.get(), now) {
                    (Ok(mut c), Some(now)) => {
                        crate::app::schedule::after_ingest(&mut c, &state.settings, now);
                    }
                    (Err(e), _) => {
                        tracing::error!(error = %e, "quota evaluation: no store connection")
                    }
                    (_, None) => tracing::error!("quota evaluation: clock out of range"),
                }
            });
        });
        let _ = work.await;
    });
}

/// An upload spooled to a temporary file, then ingested as a file.
#[expect(clippy::too_many_arguments, reason = "one private step of `push`")]
async fn spooled(
    state: &Data,
    kind: SideKind,
    body: web::Payload,
    client_format: Option<ClientFormat>,
    profiles: Vec<tally_reconcile::parse::mapping::Profile>,
    ct: &str,
    q: &PushQuery,
    label: String,
    now: chrono::NaiveDateTime,
) -> Result<(Outcome, Vec<Reject>), ApiError> {
    let ext = match (kind, client_format, ct) {
        (SideKind::Client, Some(ClientFormat::Csv), _) | (SideKind::Gateway, _, "text/csv") => {
            "csv"
        }
        (SideKind::Client, _, _) => "jsonl",
        (SideKind::Gateway, _, "application/json") => "json",
        (SideKind::Gateway, _, _) => "upload",
    };
    let dir = tempfile::Builder::new()
        .prefix("tally-upload")
        .tempdir()
        .map_err(ApiError::internal)?;
    let path = dir.path().join(format!("upload.{ext}"));
    spool(
        body,
        &path,
        state.settings.body_limit(),
        std::time::Duration::from_secs(state.settings.server.body_idle_timeout_s),
    )
    .await?;
    let named = q.source.is_some();
    state
        .db(move |c| {
            let plan = ReadPlan {
                client_format,
                profiles: &profiles,
                named,
                client_profiles: &[],
                client_named: false,
                min_split_bytes: crate::app::split::MIN_SPLIT_BYTES,
                keep_raw: true,
            };
            let o: Outcome = ingest::ingest_file(c, kind, &path, &label, plan, now, &mut |_| {})
                .map_err(ingest_error)?;
            let rejects = ingest::rejects_of(c, o.batch_id, REJECTS_LISTED)?;
            drop(dir);
            Ok((o, rejects))
        })
        .await
}

// ---- Runs ---------------------------------------------------------------

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
    let runs = state.db(|c| Ok(crate::app::run::list(c)?)).await?;
    let views = runs
        .into_iter()
        .map(|r| crate::app::run::view(r, None))
        .collect();
    Ok(HttpResponse::Ok().json(page_of(views, q.page, q.per_page)?))
}

/// `GET /v1/runs/{id}`.
pub async fn get_run(state: Data, id: web::Path<i64>) -> Reply {
    let id = id.into_inner();
    let (run, counts) = state.db(move |c| Ok(crate::app::run::get(c, id)?)).await?;
    Ok(HttpResponse::Ok().json(crate::app::run::view(run, Some(counts))))
}

// ---- Reports ------------------------------------------------------------

/// Lines as a spreadsheet-safe CSV download named `file`.
pub fn csv_download<T: tally_reconcile::lines::Tabular>(lines: &[T], file: &str) -> Reply {
    let text = report::csv(lines).map_err(ApiError::internal)?;
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

fn report_page<T: Serialize + tally_reconcile::lines::Tabular>(
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
        let lines = state.db(move |c| Ok(report::cost_lines(c, w, by)?)).await?;
        return report_page(lines, &q, &name);
    }
    if q.group_by.is_some() {
        return Err(ApiError::bad_request("`group_by` is for the costs report"));
    }
    let lines = state
        .db(move |c| Ok(report::row_lines(c, kind, w)?))
        .await?;
    report_page(lines, &q, &name)
}

// ---- Owners -------------------------------------------------------------

/// An owner.
#[derive(Debug, Serialize)]
pub struct OwnerView {
    /// Id.
    pub id: i64,
    /// Team.
    pub team: String,
    /// Service.
    pub service: String,
    /// Environment.
    pub env: String,
    /// Contact email(s).
    pub contact: Option<String>,
}

impl From<OwnerRow> for OwnerView {
    fn from(o: OwnerRow) -> Self {
        Self {
            id: o.id,
            team: o.team,
            service: o.service,
            env: o.env,
            contact: o.contact,
        }
    }
}

/// An owner as sent.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OwnerInput {
    team: String,
    #[serde(default)]
    service: String,
    #[serde(default)]
    env: String,
    contact: Option<String>,
}

impl OwnerInput {
    fn owner(&self) -> NewOwner<'_> {
        NewOwner {
            team: self.team.trim(),
            service: self.service.trim(),
            env: self.env.trim(),
            contact: self
                .contact
                .as_deref()
                .map(str::trim)
                .filter(|c| !c.is_empty()),
        }
    }
}

/// `GET /v1/owners`.
pub async fn list_owners(state: Data, q: web::Query<PageQuery>) -> Reply {
    let list: Vec<OwnerView> = state
        .db(|c| Ok(registry::owners(c)?.into_iter().map(Into::into).collect()))
        .await?;
    Ok(HttpResponse::Ok().json(page_of(list, q.page, q.per_page)?))
}

/// `GET /v1/owners/{id}`.
pub async fn get_owner(state: Data, id: web::Path<i64>) -> Reply {
    let id = id.into_inner();
    let o = state.db(move |c| Ok(registry::owner(c, id)?)).await?;
    Ok(HttpResponse::Ok().json(OwnerView::from(o)))
}

/// `POST /v1/owners`: adds an owner, or sets the contact of the owner
/// with the same team, service and env.
pub async fn create_owner(state: Data, body: web::Json<OwnerInput>) -> Reply {
    let o = state
        .db(move |c| Ok(registry::put_owner(c, &body.owner())?))
        .await?;
    Ok(HttpResponse::Created().json(OwnerView::from(o)))
}

/// `PUT /v1/owners/{id}`.
pub async fn update_owner(state: Data, id: web::Path<i64>, body: web::Json<OwnerInput>) -> Reply {
    let id = id.into_inner();
    let o = state
        .db(move |c| Ok(registry::update_owner(c, id, &body.owner())?))
        .await?;
    Ok(HttpResponse::Ok().json(OwnerView::from(o)))
}

/// `DELETE /v1/owners/{id}`.
pub async fn delete_owner(state: Data, id: web::Path<i64>) -> Reply {
    let id = id.into_inner();
    state
        .db(move |c| Ok(registry::delete_owner(c, id)?))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

// ---- Keys ---------------------------------------------------------------

/// A registered key: how sources name it, never a secret.
#[derive(Debug, Serialize)]
pub struct KeyView {
    /// Tally's id.
    pub key_id: String,
    /// Alias.
    pub alias: Option<String>,
    /// Labels.
    pub labels: Vec<String>,
    /// Last four characters of the secret.
    pub last4: Option<String>,
    /// SHA-256 fingerprints of the secret known.
    pub fingerprints: usize,
    /// Owner.
    pub owner: Option<OwnerView>,
    /// Contact for this key (else the owner's).
    pub contact: Option<String>,
}

fn key_view(k: KeyRow, owners: &[OwnerRow]) -> KeyView {
    let list = |json: &str| serde_json::from_str::<Vec<String>>(json).unwrap_or_default();
    KeyView {
        labels: list(&k.labels),
        fingerprints: list(&k.sha256).len(),
        owner: k
            .owner_id
            .and_then(|id| owners.iter().find(|o| o.id == id))
            .cloned()
            .map(Into::into),
        key_id: k.key_id,
        alias: k.alias,
        last4: k.last4,
        contact: k.contact,
    }
}

fn key_views(c: &mut crate::db::AnyConnection) -> Result<Vec<KeyView>, ApiError> {
    let (keys, owners) = registry::keys(c)?;
    Ok(keys.into_iter().map(|k| key_view(k, &owners)).collect())
}

/// A key as sent.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyInput {
    alias: Option<String>,
    #[serde(default)]
    labels: Vec<String>,
    last4: Option<String>,
    /// SHA-256 hex digests of the secret (never the secret).
    #[serde(default)]
    sha256: Vec<String>,
    #[serde(default)]
    team: String,
    #[serde(default)]
    service: String,
    #[serde(default)]
    env: String,
    contact: Option<String>,
}

impl KeyInput {
    fn entry(self, id: String) -> Result<tally_reconcile::keys::KeyEntry, ApiError> {
        if id.trim().is_empty() {
            return Err(ApiError::unprocessable("the key id is empty"));
        }
        if let Some(l) = &self.last4
            && l.chars().count() != 4
        {
            return Err(ApiError::unprocessable("`last4` is not four characters"));
        }
        let mut sha256 = Vec::with_capacity(self.sha256.len());
        for h in self.sha256 {
            let h = h.trim().to_ascii_lowercase();
            if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(ApiError::unprocessable(
                    "`sha256`: each fingerprint is 64 hex digits (the SHA-256 of the secret, never the secret)",
                ));
            }
            sha256.push(h);
        }
        if self.team.trim().is_empty() && !(self.service.is_empty() && self.env.is_empty()) {
            return Err(ApiError::unprocessable("an owner needs a `team`"));
        }
        for (field, name) in self
            .alias
            .iter()
            .map(|a| ("alias", a))
            .chain(self.labels.iter().map(|l| ("labels", l)))
        {
            if tally_reconcile::keys::contains_raw_secret(name) {
                return Err(ApiError::unprocessable(format!(
                    "`{field}`: `{}` is a raw API key; name keys by id, alias, label or the SHA-256 of the secret",
                    tally_reconcile::keys::mask_secrets(name)
                )));
            }
        }
        Ok(tally_reconcile::keys::KeyEntry {
            id,
            alias: self.alias,
            labels: self.labels,
            last4: self.last4,
            sha256,
            team: self.team.trim().to_owned(),
            service: self.service.trim().to_owned(),
            env: self.env.trim().to_owned(),
            contact: self.contact,
        })
    }
}

/// `GET /v1/keys`.
pub async fn list_keys(state: Data, q: web::Query<PageQuery>) -> Reply {
    let list = state.db(key_views).await?;
    Ok(HttpResponse::Ok().json(page_of(list, q.page, q.per_page)?))
}

/// `GET /v1/keys/{key_id}`.
pub async fn get_key(state: Data, id: web::Path<String>) -> Reply {
    let id = id.into_inner();
    let k = state
        .db(move |c| {
            key_views(c)?
                .into_iter()
                .find(|k| k.key_id == id)
                .ok_or_else(|| ApiError::not_found(format!("no key `{id}`")))
        })
        .await?;
    Ok(HttpResponse::Ok().json(k))
}

/// `PUT /v1/keys/{key_id}`: adds or replaces the key (and adds its owner).
pub async fn put_key(state: Data, id: web::Path<String>, body: web::Json<KeyInput>) -> Reply {
    let entry = body.into_inner().entry(id.into_inner())?;
    let k = state
        .db(move |c| {
            registry::put_keys(c, std::slice::from_ref(&entry))?;
            key_views(c)?
                .into_iter()
                .find(|k| k.key_id == entry.id)
                .ok_or_else(|| ApiError::internal(anyhow::anyhow!("key vanished after upsert")))
        })
        .await?;
    Ok(HttpResponse::Ok().json(k))
}

/// `DELETE /v1/keys/{key_id}`.
pub async fn delete_key(state: Data, id: web::Path<String>) -> Reply {
    let id = id.into_inner();
    state.db(move |c| Ok(registry::delete_key(c, &id)?)).await?;
    Ok(HttpResponse::NoContent().finish())
}

// ---- Aliases ------------------------------------------------------------

/// A model alias.
#[derive(Debug, Serialize)]
pub struct AliasView {
    /// The name a source uses.
    pub alias: String,
    /// The family it stands for.
    pub model: String,
}

/// `PUT /v1/aliases/{alias}` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AliasInput {
    model: String,
}

/// `GET /v1/aliases`.
pub async fn list_aliases(state: Data, q: web::Query<PageQuery>) -> Reply {
    let list: Vec<AliasView> = state
        .db(|c| {
            Ok(registry::aliases(c)?
                .into_iter()
                .map(|a| AliasView {
                    alias: a.alias,
                    model: a.model,
                })
                .collect())
        })
        .await?;
    Ok(HttpResponse::Ok().json(page_of(list, q.page, q.per_page)?))
}

/// `PUT /v1/aliases/{alias}`.
pub async fn put_alias(
    state: Data,
    alias: web::Path<String>,
    body: web::Json<AliasInput>,
) -> Reply {
    let alias = alias.into_inner();
    let row = state
        .db(move |c| Ok(registry::put_alias(c, &alias, &body.model)?))
        .await?;
    Ok(HttpResponse::Ok().json(AliasView {
        alias: row.alias,
        model: row.model,
    }))
}

/// `DELETE /v1/aliases/{alias}`.
pub async fn delete_alias(state: Data, alias: web::Path<String>) -> Reply {
    let alias = alias.into_inner();
    state
        .db(move |c| Ok(registry::delete_alias(c, &alias)?))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

// ---- Prices -------------------------------------------------------------

/// A price: USD per million tokens, as decimal strings.
#[derive(Debug, Serialize)]
pub struct PriceView {
    /// Id.
    pub id: i64,
    /// Family or glob.
    pub model: String,
    /// From when (UTC).
    pub effective_from: String,
    /// Currency.
    pub currency: String,
    /// Uncached input.
    pub input: Decimal,
    /// Cached input.
    pub cached_input: Decimal,
    /// Cache writes.
    pub cache_write: Decimal,
    /// Output.
    pub output: Decimal,
    /// Reasoning, when priced apart from output.
    pub reasoning: Option<Decimal>,
}

fn per_million(nanos: i64) -> Decimal {
    Decimal::new(nanos, 9).normalize()
}

impl From<PriceRow> for PriceView {
    fn from(p: PriceRow) -> Self {
        Self {
            id: p.id,
            model: p.model,
            effective_from: utc(p.effective_from),
            currency: p.currency,
            input: per_million(p.input_nanos),
            cached_input: per_million(p.cached_input_nanos),
            cache_write: per_million(p.cache_write_nanos),
            output: per_million(p.output_nanos),
            reasoning: p.reasoning_nanos.map(per_million),
        }
    }
}

/// `GET /v1/prices`.
pub async fn list_prices(state: Data, q: web::Query<PageQuery>) -> Reply {
    let list: Vec<PriceView> = state
        .db(|c| Ok(registry::prices(c)?.into_iter().map(Into::into).collect()))
        .await?;
    Ok(HttpResponse::Ok().json(page_of(list, q.page, q.per_page)?))
}

/// A JSON value as the TOML the catalog parser reads: numbers keep their
/// exact text (as strings, so no float rounding on the way).
fn toml_value(v: &serde_json::Value) -> Option<toml::Value> {
    match v {
        serde_json::Value::String(s) => Some(toml::Value::String(s.clone())),
        serde_json::Value::Number(n) => Some(toml::Value::String(n.to_string())),
        _ => None,
    }
}

/// `POST /v1/prices`: one catalog entry, the fields of a `[[price]]` of
/// the TOML catalog (`model`, `effective_from`, `input`, `output`, and
/// optionally `cached_input`, `cache_write`, `reasoning`), read by the same
/// parser so the same rules hold.
pub async fn create_price(
    state: Data,
    body: web::Json<serde_json::Map<String, serde_json::Value>>,
) -> Reply {
    let mut entry = toml::Table::new();
    for (k, v) in body.into_inner() {
        let v = toml_value(&v)
            .ok_or_else(|| ApiError::unprocessable(format!("`{k}`: a string or a number")))?;
        entry.insert(k, v);
    }
    let mut doc = toml::Table::new();
    doc.insert(
        "price".to_owned(),
        toml::Value::Array(vec![toml::Value::Table(entry)]),
    );
    let text = toml::to_string(&doc).map_err(ApiError::internal)?;
    let book = tally_reconcile::prices::PriceBook::from_toml(&text, "request body")
        .map_err(|e| ApiError::unprocessable(e.to_string()))?;
    let price = book
        .entries
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::unprocessable("no price in the body"))?;
    let now = state.now()?;
    let view = state
        .db(move |c| Ok(PriceView::from(registry::put_price(c, &price, now)?)))
        .await?;
    Ok(HttpResponse::Created().json(view))
}

/// `DELETE /v1/prices/{id}`.
pub async fn delete_price(state: Data, id: web::Path<i64>) -> Reply {
    let id = id.into_inner();
    state
        .db(move |c| Ok(registry::delete_price(c, id)?))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

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

    #[test]
    fn ingest_errors_name_the_upload_never_the_temporary_file() {
        // The spooled body lives in a server-side temporary folder; what
        // the client is told names only the upload.
        let tmp = tempfile::tempdir().unwrap();
        let spooled = tmp.path().join("upload.csv");
        std::fs::write(&spooled, "a,b,c\n1,2,3\n").unwrap();
        let mut c = crate::db::open(
            &format!("sqlite://{}", tmp.path().join("t.db").display()),
            false,
        )
        .unwrap();
        let profiles = tally_reconcile::parse::mapping::Profile::builtins().unwrap();
        let plan = ReadPlan {
            client_format: None,
            profiles: &profiles,
            named: false,
            client_profiles: &[],
            client_named: false,
            min_split_bytes: u64::MAX,
            keep_raw: true,
        };
        let now = chrono::DateTime::from_timestamp(1_795_000_000, 0)
            .unwrap()
            .naive_utc();
        let e = ingest::ingest_file(
            &mut c,
            SideKind::Gateway,
            &spooled,
            "nightly.csv",
            plan,
            now,
            &mut |_| {},
        )
        .unwrap_err();
        let e = ingest_error(e);
        assert_eq!(e.code(), "invalid_input");
        let text = e.to_string();
        assert!(text.contains("nightly.csv"), "{text}");
        assert!(!text.contains(&tmp.path().display().to_string()), "{text}");
    }
}

// ---- Quotas and alerts ----------------------------------------------------

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
