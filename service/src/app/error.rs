//! The application layer's error: why a use case refused or failed.
//!
//! Policy (see the README's development section): use cases return
//! `AppError` (or a typed error of their own area that converts into it);
//! each front end maps it in one place, HTTP in `http/error.rs` (invalid →
//! 422, not found → 404, conflict → 409, store unavailable → 503, anything
//! else → 500 logged once) and the command line in `main` (a message on
//! standard error, exit 1). `anyhow` stays in `main` and the command line.

use crate::db::DbError;

/// Why a use case refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The request is not acceptable: the message names the field.
    #[error("{0}")]
    Invalid(String),
    /// What the request names does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request clashes with what is stored (a name two keys would share).
    #[error("{0}")]
    Conflict(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] DbError),
    /// The machine refused: a report file that cannot be written, a
    /// worker thread that died. Not the request's fault, not a bug.
    #[error("{0}")]
    Io(String),
    /// Something that should not happen did (stored data that cannot be
    /// read back, a clock out of range): the message says what.
    #[error("{0}")]
    Internal(String),
}

impl From<tally_schema::convert::ConvertError> for AppError {
    fn from(e: tally_schema::convert::ConvertError) -> Self {
        AppError::Internal(e.to_string())
    }
}

impl From<diesel::result::Error> for AppError {
    fn from(e: diesel::result::Error) -> Self {
        AppError::Store(e.into())
    }
}

impl From<tally_reconcile::error::Error> for AppError {
    fn from(e: tally_reconcile::error::Error) -> Self {
        // The engine refuses whole inputs (a bad catalog, an unknown
        // format); its message already names the file.
        AppError::Invalid(e.to_string())
    }
}

impl From<crate::export::ExportError> for AppError {
    fn from(e: crate::export::ExportError) -> Self {
        AppError::Io(e.to_string())
    }
}

/// The use cases' result.
pub type AppResult<T, E = AppError> = Result<T, E>;

/// Says what was being done when an error happened, and whose fault it is:
/// the `anyhow::Context` of the application layer, typed.
pub trait Context<T> {
    /// The request's input is at fault (a file that cannot be read, a
    /// value that does not parse): [`AppError::Invalid`].
    fn or_invalid<M: std::fmt::Display>(self, what: impl FnOnce() -> M) -> AppResult<T>;
    /// The machine refused (a file that cannot be written): [`AppError::Io`].
    fn or_io<M: std::fmt::Display>(self, what: impl FnOnce() -> M) -> AppResult<T>;
    /// Something that should not happen did: [`AppError::Internal`].
    fn or_internal<M: std::fmt::Display>(self, what: impl FnOnce() -> M) -> AppResult<T>;
}

impl<T, E: std::fmt::Display> Context<T> for Result<T, E> {
    fn or_invalid<M: std::fmt::Display>(self, what: impl FnOnce() -> M) -> AppResult<T> {
        self.map_err(|e| AppError::Invalid(format!("{}: {e}", what())))
    }
    fn or_io<M: std::fmt::Display>(self, what: impl FnOnce() -> M) -> AppResult<T> {
        self.map_err(|e| AppError::Io(format!("{}: {e}", what())))
    }
    fn or_internal<M: std::fmt::Display>(self, what: impl FnOnce() -> M) -> AppResult<T> {
        self.map_err(|e| AppError::Internal(format!("{}: {e}", what())))
    }
}

/// Refuses a request: an [`AppError::Invalid`] with a formatted message.
macro_rules! refuse {
    ($($arg:tt)*) => {
        return Err($crate::app::error::AppError::Invalid(format!($($arg)*)))
    };
}
pub(crate) use refuse;

impl From<crate::clock::ClockError> for AppError {
    fn from(e: crate::clock::ClockError) -> Self {
        AppError::Internal(e.to_string())
    }
}
