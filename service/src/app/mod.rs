//! Use cases: each one orchestrates I/O around the pure engine.

pub mod alerts;
pub mod chart;
pub mod dashboard;
pub mod error;
pub mod generate;
pub mod ingest;
pub mod page;
pub mod quotas;
pub mod reconcile;
pub mod reference;
pub mod registry;
pub mod report;
pub mod run;
pub mod schedule;
pub mod split;
pub mod sums;
pub mod tokens;

/// The message a panic carried, for the one line that reports it.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".to_owned())
}
