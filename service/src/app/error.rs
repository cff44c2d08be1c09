//! The application layer's error: why a use case refused or failed.
//!
//! Policy (see the README's development section): use cases return
//! `AppError` (or a typed error of their own area that converts into it);
//! each front end maps it in one place, HTTP in `http/error.rs` (invalid →
//! 422, not found → 404, conflict → 409, store unavailable → 503, anything
//! else → 500 logged once) and the command line in `main` (a message on
//! standard error, exit 1). `anyhow` stays in `main`, the command line and
//! the jobs.

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
