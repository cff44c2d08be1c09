//! The Tally application: command line, use cases and exports.
#![forbid(unsafe_code)]
// Text is sliced only through `get`/`split_at_checked`: a byte offset
// inside a multibyte model name once panicked every run (issue 16).
#![deny(clippy::string_slice)]

pub mod app;
pub mod cli;
pub mod clock;
pub mod db;
pub mod export;
pub mod files;
pub mod focus_parquet;
pub mod http;
pub mod jobs;
pub mod mail;
pub mod output;
pub mod settings;
pub mod text;
