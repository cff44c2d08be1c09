//! The Tally application: command line, use cases and exports.
#![forbid(unsafe_code)]

pub mod app;
pub mod cli;
pub mod db;
pub mod export;
pub mod http;
pub mod progress;
pub mod settings;
