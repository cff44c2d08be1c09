//! The one error shape of the API, and the one place errors become HTTP:
//! `{"error": {"code", "message", "details"}}`. A server-side failure is
//! logged here, once, with its cause; the client gets its code and a
//! generic message, never a stack trace, a path or SQL.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::db::DbError;

/// An API error.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    details: serde_json::Value,
    /// What went wrong inside, for the log only.
    cause: Option<anyhow::Error>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    code: &'a str,
    message: &'a str,
    details: &'a serde_json::Value,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            details: serde_json::Value::Null,
            cause: None,
        }
    }

    /// 400: the request is malformed (a parameter, a body).
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 422: the request is well-formed but its content cannot be used.
    pub fn unprocessable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_input", message)
    }

    /// 401: no token, or not a live one.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid bearer token is required (Authorization: Bearer tally_...)",
        )
    }

    /// 403: the token's role may not do this.
    pub fn forbidden(role: &str) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("the `{role}` role may not do this"),
        )
    }

    /// 403 for a reason other than the role (a stale form).
    pub fn forbidden_because(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 405: the path exists, not with this method.
    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "this path does not take this method",
        )
    }

    /// 409: a uniqueness rule.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    /// 413: the body is over the configured limit.
    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("the body is over the limit of {limit} bytes (server.body_limit_mb)"),
        )
    }

    /// 408: the client stopped sending its body.
    pub fn body_timeout(idle_s: u64) -> Self {
        Self::new(
            StatusCode::REQUEST_TIMEOUT,
            "timeout",
            format!("no byte of the body arrived for {idle_s} s (server.body_idle_timeout_s)"),
        )
    }

    /// 429: this token has as many uploads under way as it may.
    pub fn too_many_uploads(limit: usize) -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_uploads",
            format!(
                "this token has {limit} upload(s) under way already (server.uploads_per_token); \
                 send the next when one ends"
            ),
        )
    }

    /// 503: the store cannot be reached.
    pub fn unavailable(cause: impl Into<anyhow::Error>) -> Self {
        Self {
            cause: Some(cause.into()),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the store is not reachable",
            )
        }
    }

    /// 500: a failure on our side; `cause` goes to the log only.
    pub fn internal(cause: impl Into<anyhow::Error>) -> Self {
        Self {
            cause: Some(cause.into()),
            ..Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error; the server log has the cause",
            )
        }
    }

    /// Adds structured details (e.g. each rejected field).
    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }

    /// The code, for tests and logs.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// Logs a server-side cause, once, where the error becomes a response.
    fn log(&self) {
        if let Some(cause) = &self.cause {
            let cause = format!("{cause:#}");
            tracing::error!(code = self.code, error = %cause, "request failed");
        }
    }
}

/// The same errors for the pages: an HTML page with the status and the
/// message a person can act on (and the same nothing from inside).
#[derive(Debug)]
pub struct PageError(pub ApiError);

impl std::fmt::Display for PageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl<E: Into<ApiError>> From<E> for PageError {
    fn from(e: E) -> Self {
        PageError(e.into())
    }
}

impl ResponseError for PageError {
    fn status_code(&self) -> StatusCode {
        self.0.status
    }

    fn error_response(&self) -> HttpResponse {
        self.0.log();
        let html = super::pages::error_page(self.0.status, &self.0.message);
        HttpResponse::build(self.0.status)
            .content_type("text/html; charset=utf-8")
            .body(html)
    }
}

impl From<crate::app::dashboard::ViewError> for ApiError {
    fn from(e: crate::app::dashboard::ViewError) -> Self {
        use crate::app::dashboard::ViewError;
        match e {
            ViewError::Db(e) => e.into(),
            ViewError::Invalid(m) => ApiError::bad_request(m),
            ViewError::NotFound(m) => ApiError::not_found(m),
        }
    }
}

impl From<crate::app::error::AppError> for ApiError {
    fn from(e: crate::app::error::AppError) -> Self {
        use crate::app::error::AppError;
        match e {
            AppError::Invalid(m) => ApiError::unprocessable(m),
            AppError::NotFound(m) => ApiError::not_found(m),
            AppError::Conflict(m) => ApiError::conflict(m),
            AppError::Store(e) => e.into(),
            e @ (AppError::Internal(_) | AppError::Io(_)) => ApiError::internal(e),
        }
    }
}

impl From<crate::app::alerts::AlertError> for ApiError {
    fn from(e: crate::app::alerts::AlertError) -> Self {
        use crate::app::alerts::AlertError;
        match e {
            AlertError::Db(e) => e.into(),
            AlertError::Invalid(m) => ApiError::bad_request(m),
            AlertError::NotFound(name) => ApiError::not_found(format!("no quota named `{name}`")),
            e @ AlertError::Mail(_) => ApiError::internal(e),
            AlertError::Period(e) => (*e).into(),
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        self.log();
        HttpResponse::build(self.status).json(Body {
            error: Inner {
                code: self.code,
                message: &self.message,
                details: &self.details,
            },
        })
    }
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::Conflict(m) => ApiError::conflict(m),
            e @ (DbError::Pool(_) | DbError::Connect { .. }) => ApiError::unavailable(e),
            e => ApiError::internal(e),
        }
    }
}

impl From<diesel::result::Error> for ApiError {
    fn from(e: diesel::result::Error) -> Self {
        DbError::from(e).into()
    }
}

impl From<actix_web::error::BlockingError> for ApiError {
    fn from(e: actix_web::error::BlockingError) -> Self {
        ApiError::internal(anyhow::anyhow!("blocking task: {e}"))
    }
}
