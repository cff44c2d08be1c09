//! Errors of the engine: whole-input errors stop a run, row errors are data.

use serde::Serialize;

/// An error that makes a whole input unusable (unknown format, bad mapping
/// file, bad catalog). Bad rows are never this: they are [`RowError`]s.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The input's format could not be recognised from its header or shape.
    #[error("{file}: unrecognised format ({detail}); name it with --source")]
    UnknownFormat {
        /// File name as the user gave it.
        file: String,
        /// What was seen.
        detail: String,
    },
    /// A configuration-like input (mapping file, key registry, price catalog,
    /// alias table) is invalid.
    #[error("{file}: {detail}")]
    Invalid {
        /// File name as the user gave it.
        file: String,
        /// What is wrong, naming the entry or field.
        detail: String,
    },
    /// The input could not be read at all (I/O error from the reader, or a
    /// file that is not text).
    #[error("{file}: cannot read: {detail}")]
    Read {
        /// File name as the user gave it.
        file: String,
        /// The underlying error.
        detail: String,
    },
}

impl Error {
    /// Shorthand for [`Error::Invalid`].
    pub fn invalid(file: &str, detail: impl Into<String>) -> Self {
        Self::Invalid {
            file: file.to_owned(),
            detail: detail.into(),
        }
    }
}

/// A row that could not be accepted. It is kept (written to `rejects.csv`)
/// with enough context for a person to find and fix it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RowError {
    /// File name as the user gave it.
    pub file: String,
    /// 1-based line (CSV, JSON Lines) or 1-based element index (JSON array).
    pub line: u64,
    /// The field at fault, as named in the input.
    pub field: String,
    /// Why the value was refused.
    pub reason: String,
    /// The raw text of the row, with any raw API key masked.
    pub raw: String,
}

impl std::fmt::Display for RowError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}: field `{}`: {}",
            self.file, self.line, self.field, self.reason
        )
    }
}
