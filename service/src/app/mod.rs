//! Use cases: each one orchestrates I/O around the pure engine.

pub mod chart;
pub mod dashboard;
pub mod generate;
pub mod ingest;
pub mod reconcile;
pub mod reference;
pub mod report;
pub mod run;
pub mod split;
pub mod tokens;
