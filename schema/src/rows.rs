//! Row structs: what diesel reads (`Foo`) and inserts (`NewFoo`). Rows stay
//! in the store layers; the service turns them into its own views.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::schema::{ingest_batches, rejects, usage_rows};

/// A stored ingest batch.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = ingest_batches)]
pub struct Batch {
    /// Row id.
    pub id: i64,
    /// `client` or `gateway`.
    pub side: String,
    /// Format or gateway profile.
    pub source: String,
    /// File name as given.
    pub file_name: String,
    /// SHA-256 hex of the file's bytes.
    pub sha256: String,
    /// When (UTC).
    pub ingested_at: NaiveDateTime,
    /// Rows read.
    pub rows_read: i64,
    /// Rows stored by this batch.
    pub rows_new: i64,
    /// Rows already stored.
    pub rows_duplicate: i64,
    /// Rows refused.
    pub rows_rejected: i64,
}

/// A batch to insert (its counts are set when its rows are in).
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = ingest_batches)]
pub struct NewBatch<'a> {
    /// `client` or `gateway`.
    pub side: &'a str,
    /// Format or gateway profile.
    pub source: &'a str,
    /// File name as given.
    pub file_name: &'a str,
    /// SHA-256 hex of the file's bytes.
    pub sha256: &'a str,
    /// When (UTC).
    pub ingested_at: NaiveDateTime,
    /// Rows read.
    pub rows_read: i64,
    /// Rows stored by this batch.
    pub rows_new: i64,
    /// Rows already stored.
    pub rows_duplicate: i64,
    /// Rows refused.
    pub rows_rejected: i64,
}

/// A usage row to insert, borrowing its text from the parsed side.
///
/// `None` is written as NULL (not DEFAULT), so SQLite takes many rows in one
/// INSERT.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = usage_rows, treat_none_as_default_value = false)]
pub struct NewUsageRow<'a> {
    /// `client` or `gateway`.
    pub side: &'a str,
    /// Batch that stores it.
    pub batch_id: i64,
    /// Line in the batch's file.
    pub line: i64,
    /// Identity across exports.
    pub dedup_key: &'a str,
    /// UTC ms since the epoch.
    pub ts_ms: i64,
    /// Key as named by the source.
    pub key_name: &'a str,
    /// Requested model.
    pub model: &'a str,
    /// Served model ("" when not said).
    pub served_model: &'a str,
    /// Route or operation.
    pub route: &'a str,
    /// Owner label: team.
    pub team: &'a str,
    /// Owner label: service.
    pub service: &'a str,
    /// Owner label: environment.
    pub env: &'a str,
    /// Free-form tags.
    pub tags: &'a str,
    /// Request id ("" when none).
    pub request_id: &'a str,
    /// Response id ("" when none).
    pub response_id: &'a str,
    /// Total input tokens.
    pub input_tokens: Option<i64>,
    /// Cached input tokens.
    pub cached_input_tokens: Option<i64>,
    /// Cache write tokens.
    pub cache_write_tokens: Option<i64>,
    /// Output tokens.
    pub output_tokens: Option<i64>,
    /// Reasoning tokens.
    pub reasoning_tokens: Option<i64>,
    /// Reported cost, nano-dollars.
    pub reported_cost_nanos: Option<i64>,
    /// Exact reported cost when finer than a nano-dollar.
    pub reported_cost_exact: Option<String>,
    /// Streamed, when said.
    pub stream: Option<bool>,
    /// Gateway cache hit.
    pub cache_hit: bool,
    /// Failed or cancelled.
    pub failed: bool,
    /// Source text, secrets masked.
    pub raw: &'a str,
}

/// A reject to insert.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = rejects)]
pub struct NewReject<'a> {
    /// `client` or `gateway`.
    pub side: &'a str,
    /// Batch it came in.
    pub batch_id: i64,
    /// Line in the batch's file.
    pub line: i64,
    /// Field at fault.
    pub field: &'a str,
    /// Why.
    pub reason: &'a str,
    /// Source text, secrets masked.
    pub raw: &'a str,
}

/// A stored reject.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = rejects)]
pub struct Reject {
    /// Row id.
    pub id: i64,
    /// `client` or `gateway`.
    pub side: String,
    /// Batch it came in.
    pub batch_id: i64,
    /// Line in the batch's file.
    pub line: i64,
    /// Field at fault.
    pub field: String,
    /// Why.
    pub reason: String,
    /// Source text, secrets masked.
    pub raw: String,
}
