//! Use cases: each one orchestrates I/O around the pure engine.

pub mod alerts;
pub mod chart;
pub mod dashboard;
pub mod generate;
pub mod ingest;
pub mod mail;
pub mod quotas;
pub mod reconcile;
pub mod reference;
pub mod report;
pub mod run;
pub mod schedule;
pub mod split;
pub mod sums;
pub mod tokens;
