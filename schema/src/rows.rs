//! Row structs: what diesel reads (`Foo`) and inserts (`NewFoo`). Rows stay
//! in the store layers; the service turns them into its own views.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use tally_reconcile::SideKind;
use tally_reconcile::quota::{Metric, Period};
use tally_reconcile::report::Class;

use crate::enums::{AlertKind, Basis, EnumCol};

use crate::schema::{
    alerts, api_keys, api_tokens, closed_charges, closed_periods, contracts, ingest_batches,
    model_aliases, outbox, owners, prices, quotas, rejects, run_attributions, run_counts,
    run_rollups, runs, tieouts, usage_rows, verdicts, web_sessions,
};

/// A stored ingest batch.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = ingest_batches)]
pub struct Batch {
    /// Row id.
    pub id: i64,
    /// `client` or `gateway`.
    pub side: EnumCol<SideKind>,
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
    /// Accepted rows whose request id the side holds on another UTC day.
    pub rows_id_reused: i64,
}

/// A batch to insert (its counts are set when its rows are in).
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = ingest_batches)]
pub struct NewBatch<'a> {
    /// `client` or `gateway`.
    pub side: EnumCol<SideKind>,
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
    /// Accepted rows whose request id the side holds on another UTC day.
    pub rows_id_reused: i64,
}

/// A usage row to insert, borrowing its text from the parsed side.
///
/// `None` is written as NULL (not DEFAULT), so SQLite takes many rows in one
/// INSERT.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = usage_rows, treat_none_as_default_value = false)]
pub struct NewUsageRow<'a> {
    /// `client` or `gateway`.
    pub side: EnumCol<SideKind>,
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
    /// The gateway's own name for the key ("" when none).
    pub key_alias: &'a str,
}

/// A reject to insert.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = rejects)]
pub struct NewReject<'a> {
    /// `client` or `gateway`.
    pub side: EnumCol<SideKind>,
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
    pub side: EnumCol<SideKind>,
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

/// A stored usage row, as a run reads it (the raw text is left in the
/// store: matching does not need it).
///
/// Its key, models, route, labels and alias are read as [`StoredNames`]:
/// a run sees the same few hundred of them on millions of rows, and
/// decoding nine text columns a row was a large part of the time a run
/// spent reading.
#[derive(Debug, Clone, PartialEq, Eq, Queryable)]
pub struct UsageRow {
    /// Row id.
    pub id: i64,
    /// UTC ms since the epoch.
    pub ts_ms: i64,
    /// The row's names.
    pub names: StoredNames,
    /// Request id.
    pub request_id: String,
    /// Response id.
    pub response_id: String,
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
}

/// How a row's names were read: whichever costs a backend less, measured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredNames {
    /// One JSON array of the nine, in [`UsageNames`]' order, built by the
    /// database (SQLite's `json_array` costs it less than handing over
    /// nine columns costs diesel); parsed once per distinct array.
    Json(String),
    /// The nine columns (PostgreSQL builds JSON slower than it sends
    /// columns).
    Columns(UsageNames),
}

/// SQLite's form: the JSON array, one text column.
impl<DB> Queryable<diesel::sql_types::Text, DB> for StoredNames
where
    DB: diesel::backend::Backend,
    String: diesel::deserialize::FromSql<diesel::sql_types::Text, DB>,
{
    type Row = String;

    fn build(row: String) -> diesel::deserialize::Result<Self> {
        Ok(Self::Json(row))
    }
}

/// Nine text columns.
type NineTexts = (
    diesel::sql_types::Text,
    diesel::sql_types::Text,
    diesel::sql_types::Text,
    diesel::sql_types::Text,
    diesel::sql_types::Text,
    diesel::sql_types::Text,
    diesel::sql_types::Text,
    diesel::sql_types::Text,
    diesel::sql_types::Text,
);

/// PostgreSQL's form: the nine columns.
impl<DB> Queryable<NineTexts, DB> for StoredNames
where
    DB: diesel::backend::Backend,
    UsageNames: Queryable<NineTexts, DB>,
{
    type Row = <UsageNames as Queryable<NineTexts, DB>>::Row;

    fn build(row: Self::Row) -> diesel::deserialize::Result<Self> {
        UsageNames::build(row).map(Self::Columns)
    }
}

/// A stored row's names: the nine columns, or the JSON array of
/// [`StoredNames::Json`] parsed (a sequence in this field order).
#[derive(Debug, Clone, Default, PartialEq, Eq, Queryable, serde::Deserialize)]
pub struct UsageNames {
    /// Key as named by the source.
    pub key_name: String,
    /// Requested model.
    pub model: String,
    /// Served model.
    pub served_model: String,
    /// Route or operation.
    pub route: String,
    /// Owner label: team.
    pub team: String,
    /// Owner label: service.
    pub service: String,
    /// Owner label: environment.
    pub env: String,
    /// Free-form tags.
    pub tags: String,
    /// The gateway's own name for the key ("" when none).
    pub key_alias: String,
}

/// A stored owner.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = owners)]
pub struct OwnerRow {
    /// Row id.
    pub id: i64,
    pub team: String,
    pub service: String,
    pub env: String,
    pub contact: Option<String>,
}

/// An owner to insert.
#[derive(Debug, Clone, Insertable, AsChangeset)]
#[diesel(table_name = owners, treat_none_as_null = true)]
pub struct NewOwner<'a> {
    pub team: &'a str,
    pub service: &'a str,
    pub env: &'a str,
    pub contact: Option<&'a str>,
}

/// A stored key.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = api_keys)]
pub struct KeyRow {
    /// Row id.
    pub id: i64,
    /// Tally's id.
    pub key_id: String,
    pub alias: Option<String>,
    /// Last four.
    pub last4: Option<String>,
    /// Labels, JSON array.
    pub labels: String,
    /// SHA-256 digests, JSON array.
    pub sha256: String,
    pub owner_id: Option<i64>,
    pub contact: Option<String>,
}

/// A key to insert or replace.
#[derive(Debug, Clone, Insertable, AsChangeset)]
#[diesel(table_name = api_keys, treat_none_as_null = true)]
pub struct NewKey<'a> {
    /// Tally's id.
    pub key_id: &'a str,
    pub alias: Option<&'a str>,
    /// Last four.
    pub last4: Option<&'a str>,
    /// Labels, JSON array.
    pub labels: String,
    /// SHA-256 digests, JSON array.
    pub sha256: String,
    pub owner_id: Option<i64>,
    pub contact: Option<&'a str>,
}

/// A model alias.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = model_aliases)]
pub struct AliasRow {
    /// Name a source uses.
    pub alias: String,
    /// Family.
    pub model: String,
}

/// A stored price.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = prices)]
pub struct PriceRow {
    /// Row id.
    pub id: i64,
    /// Family or glob.
    pub model: String,
    /// From when.
    pub effective_from: NaiveDateTime,
    pub currency: String,
    /// Nano-dollars per million uncached input tokens.
    pub input_nanos: i64,
    /// ... cached input tokens.
    pub cached_input_nanos: i64,
    /// ... cache-write tokens.
    pub cache_write_nanos: i64,
    /// ... output tokens.
    pub output_nanos: i64,
    /// ... reasoning tokens, when priced apart.
    pub reasoning_nanos: Option<i64>,
    /// Imported when.
    pub imported_at: NaiveDateTime,
}

/// A price to insert or replace.
#[derive(Debug, Clone, Insertable, AsChangeset)]
#[diesel(table_name = prices, treat_none_as_null = true)]
pub struct NewPrice<'a> {
    /// Family or glob.
    pub model: &'a str,
    /// From when.
    pub effective_from: NaiveDateTime,
    pub currency: &'a str,
    /// Uncached input.
    pub input_nanos: i64,
    /// Cached input.
    pub cached_input_nanos: i64,
    /// Cache writes.
    pub cache_write_nanos: i64,
    pub output_nanos: i64,
    pub reasoning_nanos: Option<i64>,
    /// Imported when.
    pub imported_at: NaiveDateTime,
}

/// A stored run.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = runs)]
pub struct RunRow {
    /// Row id.
    pub id: i64,
    /// Window start.
    pub window_from: NaiveDateTime,
    /// Window end.
    pub window_to: NaiveDateTime,
    pub started_at: NaiveDateTime,
    pub finished_at: NaiveDateTime,
    /// `current` or `superseded`.
    pub status: String,
    /// Replaced by.
    pub superseded_by: Option<i64>,
    /// Tolerance, ms.
    pub tolerance_ms: i64,
    /// Margin, ms.
    pub margin_ms: i64,
    /// Client rows in the window.
    pub client_rows: i64,
    /// Gateway rows in the window.
    pub gateway_rows: i64,
    /// Global offset, ms.
    pub global_offset_ms: i64,
    /// Per-key offsets, JSON.
    pub key_offsets: String,
}

/// A run to insert.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = runs)]
pub struct NewRun<'a> {
    /// Window start.
    pub window_from: NaiveDateTime,
    /// Window end.
    pub window_to: NaiveDateTime,
    pub started_at: NaiveDateTime,
    pub finished_at: NaiveDateTime,
    /// `current`.
    pub status: &'a str,
    /// Tolerance, ms.
    pub tolerance_ms: i64,
    /// Margin, ms.
    pub margin_ms: i64,
    /// Client rows in the window.
    pub client_rows: i64,
    /// Gateway rows in the window.
    pub gateway_rows: i64,
    /// Global offset, ms.
    pub global_offset_ms: i64,
    /// Per-key offsets, JSON.
    pub key_offsets: &'a str,
}

/// Rows per class of a run.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = run_counts)]
pub struct RunCount {
    pub run_id: i64,
    pub class: EnumCol<Class>,
    /// Client rows.
    pub client_rows: i64,
    /// Gateway rows.
    pub gateway_rows: i64,
}

/// A verdict as read: the compact stored verdict with its run's
/// attribution (key, owner, model family) joined in. Select it with
/// `VerdictRow::as_select()` from `verdicts` joined to `run_attributions`
/// on `(run_id, attribution_id)`.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = verdicts)]
pub struct VerdictRow {
    pub run_id: i64,
    /// Row.
    pub usage_row_id: i64,
    pub class: EnumCol<Class>,
    /// Partner row.
    pub partner_row_id: Option<i64>,
    /// Canonical key.
    #[diesel(select_expression = run_attributions::key_name)]
    pub key_name: String,
    /// Registered key.
    #[diesel(select_expression = run_attributions::registered)]
    pub registered: bool,
    #[diesel(select_expression = run_attributions::team)]
    pub team: String,
    #[diesel(select_expression = run_attributions::service)]
    pub service: String,
    #[diesel(select_expression = run_attributions::env)]
    pub env: String,
    /// Model family.
    #[diesel(select_expression = run_attributions::model_family)]
    pub model_family: String,
    /// Tally's price; `None` = unpriced.
    pub computed_cost_nanos: Option<i64>,
    /// Reported cost.
    pub reported_cost_nanos: Option<i64>,
    pub detail: String,
}

/// A verdict to insert: eight numbers and, for rows that disagree, a few
/// words. Whom it is charged to is `attribution_id`, a row of
/// [`AttributionRow`] in the same run.
#[derive(Debug, Clone, PartialEq, Eq, Insertable)]
#[diesel(table_name = verdicts, treat_none_as_default_value = false)]
pub struct NewVerdict {
    pub run_id: i64,
    /// Row.
    pub usage_row_id: i64,
    pub class: EnumCol<Class>,
    /// Partner row.
    pub partner_row_id: Option<i64>,
    /// `run_attributions.id` within the run.
    pub attribution_id: i64,
    /// Tally's price; `None` = unpriced.
    pub computed_cost_nanos: Option<i64>,
    /// Reported cost.
    pub reported_cost_nanos: Option<i64>,
    pub detail: String,
}

/// Whom a run's verdicts are charged to, numbered within the run.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = run_attributions)]
pub struct AttributionRow {
    pub run_id: i64,
    /// Number within the run.
    pub id: i64,
    /// Canonical key.
    pub key_name: String,
    /// Registered key.
    pub registered: bool,
    pub team: String,
    pub service: String,
    pub env: String,
    /// Model family.
    pub model_family: String,
}

/// A stored service token (its hash, never the token).
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = api_tokens)]
pub struct TokenRow {
    /// Row id.
    pub id: i64,
    pub name: String,
    pub role: String,
    /// SHA-256 hex of the token.
    pub token_sha256: String,
    /// Last four characters.
    pub last4: String,
    pub created_at: NaiveDateTime,
    pub revoked_at: Option<NaiveDateTime>,
}

/// A token to insert.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = api_tokens)]
pub struct NewToken<'a> {
    pub name: &'a str,
    pub role: &'a str,
    /// SHA-256 hex of the token.
    pub token_sha256: &'a str,
    /// Last four characters.
    pub last4: &'a str,
    pub created_at: NaiveDateTime,
}

/// A browser session to insert.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = web_sessions)]
pub struct NewSession<'a> {
    /// SHA-256 hex of the session id.
    pub session_sha256: &'a str,
    pub token_id: i64,
    /// CSRF token.
    pub csrf: &'a str,
    pub created_at: NaiveDateTime,
    pub expires_at: NaiveDateTime,
}

/// A run's sums for one UTC day and one combination of dimensions.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = run_rollups)]
pub struct RollupRow {
    pub run_id: i64,
    /// UTC day (its midnight), ms.
    pub day_ms: i64,
    /// `client` or `gateway`.
    pub side: EnumCol<SideKind>,
    pub class: EnumCol<Class>,
    /// Canonical key name.
    pub key_name: String,
    /// Whether the registry knows the key.
    pub registered: bool,
    /// Owner: team.
    pub team: String,
    /// Owner: service.
    pub service: String,
    /// Owner: environment.
    pub env: String,
    /// Model family.
    pub model_family: String,
    /// Rows.
    pub row_count: i64,
    /// Rows without a price.
    pub unpriced_rows: i64,
    /// Tally's price of the priced rows, nano-dollars.
    pub computed_nanos: i64,
    /// Gateway-reported cost, nano-dollars.
    pub reported_nanos: i64,
    /// Reported minus computed over rows with both, nano-dollars.
    pub variance_nanos: i64,
    /// Input plus output tokens.
    pub tokens: i64,
}

/// A stored quota.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = quotas)]
pub struct QuotaRow {
    /// Row id.
    pub id: i64,
    /// Unique name.
    pub name: String,
    /// Scope: team.
    pub scope_team: Option<String>,
    /// Scope: service.
    pub scope_service: Option<String>,
    /// Scope: environment.
    pub scope_env: Option<String>,
    /// Scope: one key.
    pub scope_key: Option<String>,
    /// `cost`, `tokens` or `requests`.
    pub metric: EnumCol<Metric>,
    /// Limit in the metric's unit (nano-dollars for cost).
    pub limit_units: i64,
    /// `day`, `week` or `month`.
    pub period: EnumCol<Period>,
    /// IANA zone.
    pub time_zone: String,
    /// Thresholds, percent, comma-separated.
    pub thresholds: String,
    /// Recipients, comma-separated ("" for the owner's contacts).
    pub recipients: String,
    /// `billed` or `client`.
    pub basis: EnumCol<Basis>,
    pub created_at: NaiveDateTime,
    /// Last changed.
    pub updated_at: NaiveDateTime,
}

/// A quota to insert or replace (by name).
#[derive(Debug, Clone, Insertable, AsChangeset)]
#[diesel(table_name = quotas, treat_none_as_null = true)]
pub struct NewQuota<'a> {
    /// Unique name.
    pub name: &'a str,
    /// Scope: team.
    pub scope_team: Option<&'a str>,
    /// Scope: service.
    pub scope_service: Option<&'a str>,
    /// Scope: environment.
    pub scope_env: Option<&'a str>,
    /// Scope: one key.
    pub scope_key: Option<&'a str>,
    pub metric: EnumCol<Metric>,
    /// Limit in the metric's unit.
    pub limit_units: i64,
    pub period: EnumCol<Period>,
    /// IANA zone.
    pub time_zone: &'a str,
    /// Thresholds, comma-separated.
    pub thresholds: &'a str,
    /// Recipients, comma-separated.
    pub recipients: &'a str,
    pub basis: EnumCol<Basis>,
    /// Created (kept on replace).
    #[diesel(skip_update)]
    pub created_at: NaiveDateTime,
    /// Last changed.
    pub updated_at: NaiveDateTime,
}

/// A stored alert.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = alerts)]
pub struct AlertRow {
    /// Row id.
    pub id: i64,
    pub rule: String,
    pub scope: String,
    pub period: String,
    /// Threshold, percent (0 when none).
    pub threshold: i64,
    pub kind: EnumCol<AlertKind>,
    /// `firing` or `resolved`.
    pub state: String,
    /// One line.
    pub title: String,
    /// Figures, JSON.
    pub detail: String,
    pub fired_at: NaiveDateTime,
    pub resolved_at: Option<NaiveDateTime>,
}

/// An alert to insert.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = alerts)]
pub struct NewAlert<'a> {
    pub rule: &'a str,
    pub scope: &'a str,
    pub period: &'a str,
    pub threshold: i64,
    pub kind: EnumCol<AlertKind>,
    pub state: &'a str,
    /// One line.
    pub title: &'a str,
    /// Figures, JSON.
    pub detail: &'a str,
    pub fired_at: NaiveDateTime,
}

/// A queued message.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = outbox)]
pub struct OutboxRow {
    /// Row id.
    pub id: i64,
    pub alert_id: Option<i64>,
    /// Recipients, comma-separated.
    pub recipients: String,
    pub subject: String,
    /// Plain text.
    pub body_text: String,
    /// HTML.
    pub body_html: String,
    /// Queued.
    pub created_at: NaiveDateTime,
    /// Attempts so far.
    pub attempts: i64,
    /// Not before.
    pub next_attempt_at: NaiveDateTime,
    /// Accepted by the server.
    pub sent_at: Option<NaiveDateTime>,
    /// Last failure.
    pub last_error: Option<String>,
}

/// A message to queue.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = outbox)]
pub struct NewOutbox<'a> {
    pub alert_id: Option<i64>,
    /// Recipients, comma-separated.
    pub recipients: &'a str,
    pub subject: &'a str,
    /// Plain text.
    pub body_text: &'a str,
    /// HTML.
    pub body_html: &'a str,
    /// Queued.
    pub created_at: NaiveDateTime,
    /// Zero.
    pub attempts: i64,
    /// Not before.
    pub next_attempt_at: NaiveDateTime,
}

/// A close of a billing period.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = closed_periods)]
pub struct ClosedPeriod {
    /// Row id.
    pub id: i64,
    /// `YYYY-MM`.
    pub period: String,
    /// Start, UTC ms.
    pub start_ms: i64,
    /// End (exclusive), UTC ms.
    pub end_ms: i64,
    /// When (UTC).
    pub closed_at: NaiveDateTime,
    /// Who.
    pub closed_by: String,
    /// SHA-256 of the frozen export.
    pub sha256: String,
    /// The frozen FOCUS export.
    pub focus_csv: String,
    /// Regular rows.
    pub charges: i64,
    /// Correction rows.
    pub corrections: i64,
    /// Sum of BilledCost, nano-dollars.
    pub billed_nanos: i64,
    /// Sum of ListCost, nano-dollars.
    pub list_nanos: i64,
    /// When reopened.
    pub reopened_at: Option<NaiveDateTime>,
    /// By whom.
    pub reopened_by: Option<String>,
    /// Why.
    pub reopen_reason: Option<String>,
}

/// A close to insert.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = closed_periods)]
pub struct NewClosedPeriod<'a> {
    /// `YYYY-MM`.
    pub period: &'a str,
    /// Start, UTC ms.
    pub start_ms: i64,
    /// End (exclusive), UTC ms.
    pub end_ms: i64,
    /// When (UTC).
    pub closed_at: NaiveDateTime,
    /// Who.
    pub closed_by: &'a str,
    /// SHA-256 of the frozen export.
    pub sha256: &'a str,
    /// The frozen FOCUS export.
    pub focus_csv: &'a str,
    /// Regular rows.
    pub charges: i64,
    /// Correction rows.
    pub corrections: i64,
    /// Sum of BilledCost, nano-dollars.
    pub billed_nanos: i64,
    /// Sum of ListCost, nano-dollars.
    pub list_nanos: i64,
}

/// A frozen charge.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = closed_charges)]
pub struct ClosedCharge {
    /// The close.
    pub close_id: i64,
    /// UTC day, ms.
    pub day_ms: i64,
    /// Owner: team.
    pub team: String,
    /// Owner: service.
    pub service: String,
    /// Owner: environment.
    pub env: String,
    /// Canonical key name.
    pub key_name: String,
    /// Model family.
    pub model_family: String,
    /// Tally's verdict.
    pub verdict: String,
    /// Requests.
    pub requests: i64,
    /// Tokens.
    pub tokens: i64,
    /// Billed, nano-dollars.
    pub billed_nanos: i64,
    /// Tally's price of priced rows, nano-dollars.
    pub computed_nanos: i64,
    /// Unpriced rows.
    pub unpriced_rows: i64,
    /// What they were billed, nano-dollars.
    pub unpriced_billed_nanos: i64,
    /// The run.
    pub run_id: Option<i64>,
    /// A correction.
    pub correction: bool,
}

/// A stored contract.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = contracts)]
pub struct ContractRow {
    /// Row id.
    pub id: i64,
    /// Unique name.
    pub name: String,
    /// Model families.
    pub models: String,
    /// Share off list, decimal text.
    pub discount: String,
    /// From, UTC ms.
    pub effective_from_ms: i64,
    /// To (exclusive), UTC ms.
    pub effective_to_ms: Option<i64>,
    /// Tiers, JSON.
    pub tiers: String,
}

/// A contract to insert.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = contracts)]
pub struct NewContract {
    /// Unique name.
    pub name: String,
    /// Model families.
    pub models: String,
    /// Share off list, decimal text.
    pub discount: String,
    /// From, UTC ms.
    pub effective_from_ms: i64,
    /// To (exclusive), UTC ms.
    pub effective_to_ms: Option<i64>,
    /// Tiers, JSON.
    pub tiers: String,
}

/// A stored tie-out.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = tieouts)]
pub struct TieoutRow {
    /// Row id.
    pub id: i64,
    /// Window start, UTC ms.
    pub from_ms: i64,
    /// Window end, UTC ms.
    pub to_ms: i64,
    /// When it ran.
    pub ran_at: NaiveDateTime,
    /// Whether it was clean.
    pub clean: bool,
    /// The result, JSON.
    pub result: String,
}

/// A tie-out to insert.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = tieouts)]
pub struct NewTieout<'a> {
    /// Window start, UTC ms.
    pub from_ms: i64,
    /// Window end, UTC ms.
    pub to_ms: i64,
    /// When it ran.
    pub ran_at: NaiveDateTime,
    /// Whether it was clean.
    pub clean: bool,
    /// The result, JSON.
    pub result: &'a str,
}
