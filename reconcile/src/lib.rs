//! Tally's reconciliation engine.
//!
//! Pure values in, values out: parsers take `impl Read` and return rows plus
//! row errors; matching, costing and classification take rows and return a
//! report. Nothing here reads a file, the clock or the environment (the
//! crate's `clippy.toml` enforces it), so every result depends only on the
//! arguments and is reproducible in tests and benchmarks.
#![forbid(unsafe_code)]
// Text is sliced only through `get`/`split_at_checked`: a byte offset
// inside a multibyte model name once panicked every run (issue 16).
#![deny(clippy::string_slice)]

pub mod contracts;
pub mod error;
pub mod focus;
pub mod gateway_keys;
pub mod identity;
pub mod intern;
pub mod keys;
pub mod matching;
pub mod models;
mod par;
pub mod parse;
pub mod prices;
pub mod quota;
pub mod record;
pub mod report;
pub mod report_lines;
pub mod routes;
pub mod synth;
pub mod tieout;
pub mod time;

pub use error::{Error, RowError};
pub use record::{Row, Side, SideKind, Tokens};
