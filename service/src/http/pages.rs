//! The pages: server-rendered HTML for people, from `templates/pages/`.
//!
//! Sign-in with a token makes a session whose id lives only in an
//! HttpOnly, SameSite=Strict cookie; every form that changes state carries
//! the session's form token (CSRF), and the login form a double-submit
//! token of its own. Templates escape every value (autoescape by the
//! `.html` name), and the guard adds a policy under which no script runs.

use std::sync::OnceLock;

use actix_web::cookie::{Cookie, SameSite, time::Duration as CookieAge};
use actix_web::http::StatusCode;
use actix_web::http::header::LOCATION;
use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use minijinja::Environment;
use serde::{Deserialize, Serialize};

use super::State;
use super::error::{ApiError, PageError};
use super::routes::{MANAGERS, READERS, SessionCsrf, principal};
use crate::app::dashboard::{self, RowFilter};
use crate::app::tokens::{self, Principal, SignIn};

type Data = web::Data<State>;
type Page = Result<HttpResponse, PageError>;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "tally_session";
/// The login form's double-submit cookie.
const LOGIN_COOKIE: &str = "tally_login";

/// Every page template, compiled into the binary.
const TEMPLATES: &[(&str, &str)] = &[
    (
        "base.html",
        include_str!("../../../templates/pages/base.html"),
    ),
    (
        "macros.html",
        include_str!("../../../templates/pages/macros.html"),
    ),
    (
        "login.html",
        include_str!("../../../templates/pages/login.html"),
    ),
    (
        "error.html",
        include_str!("../../../templates/pages/error.html"),
    ),
    (
        "overview.html",
        include_str!("../../../templates/pages/overview.html"),
    ),
    (
        "run.html",
        include_str!("../../../templates/pages/run.html"),
    ),
    (
        "owner.html",
        include_str!("../../../templates/pages/owner.html"),
    ),
    (
        "quotas.html",
        include_str!("../../../templates/pages/quotas.html"),
    ),
    (
        "month_end.html",
        include_str!("../../../templates/pages/month_end.html"),
    ),
];

fn usd(v: minijinja::Value) -> String {
    let text = v.to_string();
    text.parse::<rust_decimal::Decimal>()
        .map(crate::export::money)
        .unwrap_or(text)
}

fn build_env() -> Result<Environment<'static>, String> {
    let mut env = Environment::new();
    env.add_filter("usd", usd);
    env.add_filter("short_key", crate::export::short_key);
    for (name, source) in TEMPLATES {
        env.add_template(name, source)
            .map_err(|e| format!("templates/pages/{name}: {e}"))?;
    }
    Ok(env)
}

static ENV: OnceLock<Result<Environment<'static>, String>> = OnceLock::new();

fn env() -> Result<&'static Environment<'static>, String> {
    ENV.get_or_init(build_env).as_ref().map_err(Clone::clone)
}

/// Compiles every template: `tally serve` checks this before it listens,
/// so a broken template stops the start, not a page view.
pub fn check() -> anyhow::Result<()> {
    env().map(|_| ()).map_err(anyhow::Error::msg)
}

fn render(name: &str, ctx: minijinja::Value) -> Result<String, ApiError> {
    let env = env().map_err(|e| ApiError::internal(anyhow::anyhow!(e)))?;
    env.get_template(name)
        .and_then(|t| t.render(ctx))
        .map_err(|e| ApiError::internal(anyhow::anyhow!("rendering {name}: {e:#}")))
}

fn html(status: StatusCode, body: String) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .body(body)
}

/// The HTML of an error page. Never fails: a template error falls back to
/// plain escaped text.
pub fn error_page(status: StatusCode, message: &str) -> String {
    let title = match status.as_u16() {
        400 | 422 => "That request is not right",
        403 => "Not allowed",
        404 => "Not found",
        405 => "Not here",
        _ => "Something went wrong",
    };
    let ctx = minijinja::context! { status => status.as_u16(), title, message };
    render("error.html", ctx).unwrap_or_else(|_| {
        let text: String = message
            .chars()
            .filter(|c| c.is_alphanumeric() || " .,:;()-_'".contains(*c))
            .collect();
        format!("<!doctype html><title>{title}</title><p>{text}</p>")
    })
}

fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((LOCATION, location))
        .finish()
}

/// Percent-encodes a query value (RFC 3986 unreserved characters stay).
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Only a local path may be a sign-in's destination: `/x`, never
/// `//host` or `https://host` (an open redirect).
fn local(next: &str) -> &str {
    let ok = next.starts_with('/') && !next.starts_with("//") && !next.contains('\\');
    if ok { next } else { "/" }
}

/// The answer to a page request without a live session: to the sign-in
/// page, coming back to `target` after.
pub fn to_sign_in(target: &str) -> HttpResponse {
    see_other(&format!("/login?next={}", encode(local(target))))
}

fn cookie<'c>(name: &'c str, value: String, path: &'c str, secure: bool) -> Cookie<'c> {
    Cookie::build(name, value)
        .path(path)
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(secure)
        .finish()
}

fn removal(name: &str, path: &str) -> Cookie<'static> {
    let mut c = Cookie::build(name.to_owned(), "")
        .path(path.to_owned())
        .finish();
    c.make_removal();
    c
}

/// Who is signed in, and the form token, for the header of every page.
#[derive(Serialize)]
struct Who {
    name: String,
    role: &'static str,
}

fn caller(req: &HttpRequest) -> Result<(Principal, Option<String>), PageError> {
    let p = principal(req).ok_or_else(ApiError::unauthorized)?;
    let csrf = req.extensions().get::<SessionCsrf>().map(|c| c.0.clone());
    Ok((p, csrf))
}

/// Refuses a state-changing form whose token is not the session's. A
/// request signed with a bearer token has no session (and no cookie a
/// third party could ride), so it needs none.
fn check_csrf(req: &HttpRequest, sent: &str) -> Result<(), PageError> {
    match req.extensions().get::<SessionCsrf>() {
        Some(SessionCsrf(expected)) if !same(expected, sent) => Err(ApiError::forbidden_because(
            "the form is stale or was not sent from Tally: reload the page and try again",
        )
        .into()),
        _ => Ok(()),
    }
}

/// Compares in time independent of where the strings differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn with_who(req: &HttpRequest, ctx: minijinja::Value) -> Result<minijinja::Value, PageError> {
    let (p, csrf) = caller(req)?;
    let who = Who {
        name: p.name.clone(),
        role: p.role.as_str(),
    };
    Ok(minijinja::context! {
        who, csrf, can_run => MANAGERS.contains(&p.role), ..ctx
    })
}

// ---- Sign-in ------------------------------------------------------------

/// `?next=` of the sign-in page.
#[derive(Debug, Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

fn login_page(
    state: &State,
    status: StatusCode,
    next: &str,
    error: Option<&str>,
) -> Result<HttpResponse, PageError> {
    let login_csrf = tokens::random_hex().map_err(ApiError::internal)?;
    let body = render(
        "login.html",
        minijinja::context! {
            next => local(next), error, login_csrf => &login_csrf, hours => tokens::SESSION_HOURS,
        },
    )?;
    let secure = state.settings.server.secure_cookies;
    Ok(HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .cookie(cookie(LOGIN_COOKIE, login_csrf, "/login", secure))
        .body(body))
}

/// `GET /login`.
pub async fn login_form(state: Data, q: web::Query<NextQuery>) -> Page {
    login_page(
        &state,
        StatusCode::OK,
        q.next.as_deref().unwrap_or("/"),
        None,
    )
}

/// The sign-in form.
#[derive(Debug, Deserialize)]
pub struct LoginForm {
    token: String,
    csrf: String,
    #[serde(default)]
    next: String,
}

/// `POST /login`: a session for a live token of a reading role.
pub async fn login(state: Data, req: HttpRequest, form: web::Form<LoginForm>) -> Page {
    let form = form.into_inner();
    let expected = req.cookie(LOGIN_COOKIE).map(|c| c.value().to_owned());
    if !expected.is_some_and(|e| same(&e, &form.csrf)) {
        return login_page(
            &state,
            StatusCode::FORBIDDEN,
            &form.next,
            Some("The sign-in form expired or did not come from Tally. Please try again."),
        );
    }
    let now = state.now()?;
    let now_ms = now.and_utc().timestamp_millis();
    let ip = req
        .peer_addr()
        .map_or(std::net::IpAddr::from([0, 0, 0, 0]), |a| a.ip());
    if let Some(wait) = state.sign_ins.locked_for(ip, now_ms) {
        tracing::warn!(client = %ip, retry_in_s = wait, "sign-in refused: too many failures");
        let mut page = login_page(
            &state,
            StatusCode::TOO_MANY_REQUESTS,
            &form.next,
            Some(&format!(
                "Too many failed sign-ins from this address. Try again in {wait} s."
            )),
        )?;
        if let Ok(v) = actix_web::http::header::HeaderValue::from_str(&wait.to_string()) {
            page.headers_mut()
                .insert(actix_web::http::header::RETRY_AFTER, v);
        }
        return Ok(page);
    }
    let token = form.token;
    let outcome = state
        .db(move |c| tokens::sign_in(c, &token, READERS, now).map_err(ApiError::internal))
        .await?;
    if !matches!(outcome, SignIn::Signed(..)) {
        let n = state.sign_ins.failed(ip, now_ms);
        tracing::warn!(client = %ip, failures_in_window = n, "sign-in failed");
    }
    match outcome {
        SignIn::Signed(p, session) => {
            state.sign_ins.succeeded(ip);
            tracing::info!(token = %p.name, "signed in");
            let secure = state.settings.server.secure_cookies;
            let mut c = cookie(SESSION_COOKIE, session.id, "/", secure);
            c.set_max_age(CookieAge::hours(tokens::SESSION_HOURS));
            Ok(HttpResponse::SeeOther()
                .insert_header((LOCATION, local(&form.next)))
                .cookie(c)
                .cookie(removal(LOGIN_COOKIE, "/login"))
                .finish())
        }
        SignIn::NotLive => login_page(
            &state,
            StatusCode::UNAUTHORIZED,
            &form.next,
            Some("That token is not valid (mistyped, or revoked)."),
        ),
        SignIn::RoleRefused(role) => login_page(
            &state,
            StatusCode::FORBIDDEN,
            &form.next,
            Some(&format!(
                "The `{}` role cannot read the pages: sign in with an admin, finance or platform token.",
                role.as_str()
            )),
        ),
    }
}

/// A form that carries only its token.
#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    csrf: String,
}

/// `POST /logout`: ends the session.
pub async fn logout(state: Data, req: HttpRequest, form: web::Form<CsrfForm>) -> Page {
    check_csrf(&req, &form.csrf)?;
    if let Some(id) = req.cookie(SESSION_COOKIE).map(|c| c.value().to_owned()) {
        let now = state.now()?;
        state
            .db(move |c| Ok(tokens::sign_out(c, &id, now)?))
            .await?;
    }
    Ok(HttpResponse::SeeOther()
        .insert_header((LOCATION, "/login"))
        .cookie(removal(SESSION_COOKIE, "/"))
        .finish())
}

// ---- Pages --------------------------------------------------------------

/// `?month=YYYY-MM`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MonthQuery {
    month: Option<String>,
    /// Any dates instead of a month: the first day...
    from: Option<String>,
    /// ...and the day after the last.
    to: Option<String>,
}

impl MonthQuery {
    /// The month asked for, any run of days (`from` and `to`), or the
    /// month `now_ms` falls in.
    fn window(&self, now_ms: i64) -> Result<dashboard::Month, ApiError> {
        match (&self.from, &self.to) {
            (Some(f), Some(t)) => dashboard::range(f, t).map_err(ApiError::from),
            (None, None) => dashboard::month(self.month.as_deref(), now_ms).map_err(ApiError::from),
            _ => Err(ApiError::bad_request("give `from` and `to` together")),
        }
    }
}

/// `GET /`: the month's overview.
pub async fn overview(state: Data, req: HttpRequest, q: web::Query<MonthQuery>) -> Page {
    let now = (state.clock)().map_err(ApiError::internal)?;
    let month = q.window(now)?;
    let memo = state.memo.clone();
    let o = state
        .db(move |c| Ok(dashboard::overview(c, &memo, month)?))
        .await?;
    let chart = super::views::overview_chart(&o);
    let ctx = with_who(&req, minijinja::context! { o, chart })?;
    Ok(html(StatusCode::OK, render("overview.html", ctx)?))
}

/// The start-a-run form.
#[derive(Debug, Deserialize)]
pub struct RunForm {
    csrf: String,
    from: String,
    to: String,
}

/// `POST /runs`: reconciles a window, then shows the run.
pub async fn start_run(state: Data, req: HttpRequest, form: web::Form<RunForm>) -> Page {
    check_csrf(&req, &form.csrf)?;
    let parse = |name: &str, v: &str| {
        crate::clock::parse_time(v.trim())
            .map_err(|e| ApiError::bad_request(format!("`{name}`: {e}")))
    };
    let w = (parse("from", &form.from)?, parse("to", &form.to)?);
    if w.0 >= w.1 {
        return Err(ApiError::bad_request("`from` must be before `to`").into());
    }
    let settings = crate::app::reconcile::settings(None, None, None).map_err(ApiError::internal)?;
    let o = state.run_window(w, settings).await?;
    Ok(see_other(&format!("/runs/{}", o.run.id)))
}

/// `GET /runs/{id}`.
pub async fn run(
    state: Data,
    req: HttpRequest,
    id: web::Path<i64>,
    q: web::Query<RowFilter>,
) -> Page {
    let id = id.into_inner();
    let filter = q.into_inner();
    let p = state
        .db(move |c| Ok(dashboard::run_page(c, id, filter)?))
        .await?;
    let ctx = with_who(&req, minijinja::context! { p })?;
    Ok(html(StatusCode::OK, render("run.html", ctx)?))
}

/// `?class=&owner=&key=&model=` of a download.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    class: String,
    #[serde(default)]
    owner: String,
    #[serde(default)]
    key: String,
    #[serde(default)]
    model: String,
}

/// `GET /runs/{id}/export`: every row of a table, as CSV.
pub async fn export(state: Data, id: web::Path<i64>, q: web::Query<ExportQuery>) -> Page {
    let id = id.into_inner();
    let q = q.into_inner();
    let (kind, class) = dashboard::table_class(&q.class)
        .ok_or_else(|| ApiError::bad_request("`class` is missing or unattributed"))?;
    let filter = RowFilter {
        owner: q.owner,
        key: q.key,
        model: q.model,
    };
    let rows = state
        .db(move |c| Ok(dashboard::run_rows(c, id, class, &filter, usize::MAX)?.0))
        .await?;
    Ok(super::api::csv_download(
        &rows,
        &format!("tally-run-{id}-{kind}.csv"),
    )?)
}

/// `GET /export/costs.csv` query: any window, any grouping.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CostsCsvQuery {
    from: String,
    to: String,
    group_by: Option<crate::app::report::GroupBy>,
    /// One owner only: its team, service and env, all three.
    team: Option<String>,
    service: Option<String>,
    env: Option<String>,
}

/// The API's window, from form fields (which may carry blanks).
fn page_window(from: &str, to: &str) -> Result<(i64, i64), ApiError> {
    super::api::window(from.trim(), to.trim())
}

/// One owner from query fields: team, service and env, all three or none.
fn one_owner(
    team: Option<String>,
    service: Option<String>,
    env: Option<String>,
) -> Result<Option<(String, String, String)>, ApiError> {
    match (team, service, env) {
        (None, None, None) => Ok(None),
        (Some(t), Some(s), Some(e)) => Ok(Some((t, s, e))),
        _ => Err(ApiError::bad_request(
            "one owner is `team`, `service` and `env`, all three",
        )),
    }
}

/// `GET /export/costs.csv`: the costs report of a window as a download,
/// grouped by owner, team, service, env, key, model or day.
pub async fn costs_csv(state: Data, q: web::Query<CostsCsvQuery>) -> Page {
    let w = page_window(&q.from, &q.to)?;
    let by = q.group_by.unwrap_or(crate::app::report::GroupBy::Owner);
    let q = q.into_inner();
    let owner = one_owner(q.team, q.service, q.env)?;
    let memo = state.memo.clone();
    let lines = state
        .db(move |c| Ok(crate::app::report::cost_lines_of(c, &memo, w, by, owner)?))
        .await?;
    let name = format!(
        "tally-costs-by-{}.csv",
        format!("{by:?}").to_ascii_lowercase()
    );
    Ok(super::api::csv_download(&lines, &name)?)
}

/// `GET /export/rows.csv` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RowsCsvQuery {
    kind: String,
    from: String,
    to: String,
    /// One owner only: its team, service and env, all three.
    team: Option<String>,
    service: Option<String>,
    env: Option<String>,
}

/// `GET /export/rows.csv`: a window's missing, unattributed or
/// discrepancy rows as a download.
pub async fn rows_csv(state: Data, q: web::Query<RowsCsvQuery>) -> Page {
    use crate::app::report::Kind;
    let kind = match q.kind.as_str() {
        "missing" => Kind::Missing,
        "unattributed" => Kind::Unattributed,
        "discrepancies" => Kind::Discrepancies,
        _ => {
            return Err(
                ApiError::bad_request("`kind` is missing, unattributed or discrepancies").into(),
            );
        }
    };
    let w = page_window(&q.from, &q.to)?;
    let owner = one_owner(q.team.clone(), q.service.clone(), q.env.clone())?
        .map(|(t, s, e)| crate::app::report::owner_label(&t, &s, &e));
    let mut lines = state
        .db(move |c| Ok(crate::app::report::row_lines(c, kind, w)?))
        .await?;
    if let Some(o) = owner {
        lines.retain(|l| l.owner == o);
    }
    Ok(super::api::csv_download(
        &lines,
        &format!("tally-{}.csv", q.kind),
    )?)
}

/// `GET /export/focus.csv?period=YYYY-MM`: a month's FOCUS 1.2 export.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FocusCsvQuery {
    period: String,
}

/// `GET /export/focus.csv`.
pub async fn focus_csv(state: Data, q: web::Query<FocusCsvQuery>) -> Page {
    let month = crate::app::periods::billing_month(&q.period)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let account = state.settings.focus.clone();
    let e = state
        .db(move |c| Ok(crate::app::periods::focus_export(c, &month, &account)?))
        .await?;
    Ok(HttpResponse::Ok()
        .insert_header((
            actix_web::http::header::CONTENT_TYPE,
            "text/csv; charset=utf-8",
        ))
        .insert_header((
            actix_web::http::header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"focus-{}.csv\"", e.period),
        ))
        .insert_header(("Tally-Sha256", e.sha256))
        .body(e.csv))
}

/// `GET /month-end`: closed months, their FOCUS exports, and the months
/// that are open.
pub async fn month_end(state: Data, req: HttpRequest, q: web::Query<MonthQuery>) -> Page {
    let now = (state.clock)().map_err(ApiError::internal)?;
    // Closing and FOCUS are by calendar month: no other window here.
    let month = dashboard::month(q.month.as_deref(), now).map_err(ApiError::from)?;
    let account = state.settings.focus.clone();
    let (closes, open, tieout) = state
        .db(move |c| {
            let closes = crate::app::periods::closes(c)?;
            let tieout = crate::app::tieout::latest(c, (month.from_ms, month.to_ms))?;
            let open = crate::app::periods::focus_export(c, &month, &account)?;
            Ok((closes, (month, open), tieout))
        })
        .await?;
    let (month, e) = open;
    let ctx = with_who(
        &req,
        minijinja::context! {
            closes, month, tieout,
            closed => e.closed.is_some(),
            charges => e.charges,
            corrections => e.corrections,
            billed => e.billed,
            list => e.list,
            sha256 => e.sha256,
        },
    )?;
    Ok(html(StatusCode::OK, render("month_end.html", ctx)?))
}

/// A run as a CSV line.
struct RunLine(crate::app::run::RunView);

impl tally_reconcile::report_lines::Tabular for RunLine {
    fn headers() -> &'static [&'static str] {
        &[
            "run",
            "from",
            "to",
            "started_at",
            "finished_at",
            "status",
            "superseded_by",
            "client_rows",
            "gateway_rows",
            "offset_ms",
        ]
    }

    fn write(&self, out: &mut dyn tally_reconcile::report_lines::RecordSink) {
        let r = &self.0;
        for v in [
            r.id.to_string(),
            r.from.clone(),
            r.to.clone(),
            r.started_at.clone(),
            r.finished_at.clone(),
            r.status.clone(),
            r.superseded_by.map(|i| i.to_string()).unwrap_or_default(),
            r.client_rows.to_string(),
            r.gateway_rows.to_string(),
            r.global_offset_ms.to_string(),
        ] {
            out.plain(&v);
        }
    }
}

/// `GET /export/runs.csv`: every run, newest first (the overview's table).
pub async fn runs_csv(state: Data) -> Page {
    let runs = state
        .db(move |c| {
            let mut all = Vec::new();
            let mut n = 1;
            loop {
                let page =
                    crate::app::page::Page::new(Some(n), Some(crate::app::page::Page::MAX_SIZE))?;
                let p = crate::app::run::list(c, page)?;
                let got = p.items.len();
                all.extend(
                    p.items
                        .into_iter()
                        .map(|r| RunLine(crate::app::run::view(r, None))),
                );
                if got == 0 || all.len() >= p.total {
                    break;
                }
                n += 1;
            }
            Ok(all)
        })
        .await?;
    Ok(super::api::csv_download(&runs, "tally-runs.csv")?)
}

/// An owner's rows per class as a CSV line.
struct ClassLine(dashboard::ClassRows);

impl tally_reconcile::report_lines::Tabular for ClassLine {
    fn headers() -> &'static [&'static str] {
        &["class", "client_rows", "gateway_rows"]
    }

    fn write(&self, out: &mut dyn tally_reconcile::report_lines::RecordSink) {
        out.plain(&self.0.class);
        out.plain(&self.0.client_rows.to_string());
        out.plain(&self.0.gateway_rows.to_string());
    }
}

/// Owner `id`'s page over the query's window (its month by default).
async fn owner_page_of(
    state: &Data,
    id: i64,
    q: &MonthQuery,
) -> Result<dashboard::OwnerPage, ApiError> {
    let now = (state.clock)().map_err(ApiError::internal)?;
    let month = q.window(now)?;
    let memo = state.memo.clone();
    state
        .db(move |c| Ok(dashboard::owner_page(c, &memo, id, month)?))
        .await
}

/// `GET /owners/{id}/classes.csv`: the owner page's rows per class.
pub async fn owner_classes_csv(state: Data, id: web::Path<i64>, q: web::Query<MonthQuery>) -> Page {
    let id = id.into_inner();
    let p = owner_page_of(&state, id, &q).await?;
    let lines: Vec<ClassLine> = p.classes.into_iter().map(ClassLine).collect();
    Ok(super::api::csv_download(
        &lines,
        &format!("tally-owner-{id}-classes.csv"),
    )?)
}

/// `GET /owners/{id}`.
pub async fn owner(
    state: Data,
    req: HttpRequest,
    id: web::Path<i64>,
    q: web::Query<MonthQuery>,
) -> Page {
    let p = owner_page_of(&state, id.into_inner(), &q).await?;
    let chart = super::views::owner_chart(&p);
    let ctx = with_who(&req, minijinja::context! { p, chart })?;
    Ok(html(StatusCode::OK, render("owner.html", ctx)?))
}

/// `GET /quotas`: every quota as a bar against its limit, and the alerts.
pub async fn quotas(state: Data, req: HttpRequest) -> Page {
    let now = state.utc_now()?;
    let settings = state.settings.clone();
    let (bars, alerts) = state
        .db(move |c| {
            let st = crate::app::quotas::current(c, &settings, now)?;
            let alerts = crate::app::alerts::list(c, None, None, 200)?;
            Ok((super::views::quota_bars::bars(&st), alerts))
        })
        .await?;
    let ctx = with_who(
        &req,
        minijinja::context! { bars, alerts, bar_px => super::views::quota_bars::BAR_PX },
    )?;
    Ok(html(StatusCode::OK, render("quotas.html", ctx)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_compiles() {
        assert_eq!(check().map_err(|e| e.to_string()), Ok(()));
    }

    #[test]
    fn sign_in_only_returns_to_local_paths() {
        assert_eq!(local("/runs/3?owner=a"), "/runs/3?owner=a");
        for bad in [
            "//evil.example",
            "https://evil.example",
            "/\\evil",
            "",
            "runs",
        ] {
            assert_eq!(local(bad), "/", "{bad}");
        }
        assert_eq!(encode("/runs/3?a=b c"), "%2Fruns%2F3%3Fa%3Db%20c");
    }

    #[test]
    fn error_pages_escape_the_message() {
        let page = error_page(StatusCode::NOT_FOUND, "no owner <script>alert(1)</script>");
        assert!(!page.contains("<script>alert"), "{page}");
        assert!(page.contains("&lt;script&gt;"), "{page}");
        assert!(page.contains("Not found"));
    }

    #[test]
    fn form_tokens_compare_whole() {
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "ab"));
        assert!(!same("", "a"));
    }
}
