// The database shape, as `diesel print-schema` writes it from the PostgreSQL
// migrations, reviewed by hand: only types diesel's `MultiBackend` covers.

diesel::table! {
    /// One ingested file.
    ingest_batches (id) {
        /// Row id.
        id -> BigInt,
        /// `client` or `gateway`.
        side -> Text,
        /// Format or gateway profile it was read as.
        source -> Text,
        /// File name as the user gave it.
        file_name -> Text,
        /// SHA-256 (hex) of the file's bytes: the batch's identity.
        sha256 -> Text,
        /// When it was ingested (UTC).
        ingested_at -> Timestamp,
        /// Rows read (accepted + duplicate + rejected).
        rows_read -> BigInt,
        /// Rows stored by this batch.
        rows_new -> BigInt,
        /// Rows already in the store (an overlapping export).
        rows_duplicate -> BigInt,
        /// Rows refused.
        rows_rejected -> BigInt,
    }
}

diesel::table! {
    /// One accepted usage row of either side, normalised.
    usage_rows (id) {
        /// Row id.
        id -> BigInt,
        /// `client` or `gateway`.
        side -> Text,
        /// The batch that first stored it.
        batch_id -> BigInt,
        /// 1-based line (or JSON array element) in that batch's file.
        line -> BigInt,
        /// Identity across exports (see `tally_schema::rows::dedup_key`).
        dedup_key -> Text,
        /// Request start, UTC milliseconds since the Unix epoch.
        ts_ms -> BigInt,
        /// Key as the source named it (never a raw secret).
        key_name -> Text,
        /// Requested model as the source named it.
        model -> Text,
        /// Served model, "" when the source did not say.
        served_model -> Text,
        /// Route or operation as the source named it.
        route -> Text,
        /// Owner label: team.
        team -> Text,
        /// Owner label: service.
        service -> Text,
        /// Owner label: environment.
        env -> Text,
        /// Free-form tags.
        tags -> Text,
        /// Request id, "" when none.
        request_id -> Text,
        /// Response id, "" when none.
        response_id -> Text,
        /// Total input tokens (cached and cache writes included).
        input_tokens -> Nullable<BigInt>,
        /// Input tokens read from the prompt cache.
        cached_input_tokens -> Nullable<BigInt>,
        /// Input tokens written to the prompt cache.
        cache_write_tokens -> Nullable<BigInt>,
        /// Output tokens (reasoning included).
        output_tokens -> Nullable<BigInt>,
        /// Reasoning tokens.
        reasoning_tokens -> Nullable<BigInt>,
        /// Gateway-reported cost, nano-dollars.
        reported_cost_nanos -> Nullable<BigInt>,
        /// The reported cost's exact decimal text, only when it has more
        /// than nine decimal places (float exports); `reported_cost_nanos`
        /// then holds it rounded, for sums.
        reported_cost_exact -> Nullable<Text>,
        /// Whether the call was streamed, when the source said.
        stream -> Nullable<Bool>,
        /// Served from the gateway's response cache.
        cache_hit -> Bool,
        /// Cancelled or failed according to the source.
        failed -> Bool,
        /// The source text of the row, raw secrets masked.
        raw -> Text,
    }
}

diesel::table! {
    /// One refused row.
    rejects (id) {
        /// Row id.
        id -> BigInt,
        /// `client` or `gateway`.
        side -> Text,
        /// The batch it came in.
        batch_id -> BigInt,
        /// 1-based line (or JSON array element).
        line -> BigInt,
        /// Field at fault, as named in the input.
        field -> Text,
        /// Why it was refused.
        reason -> Text,
        /// The source text, raw secrets masked.
        raw -> Text,
    }
}

diesel::joinable!(usage_rows -> ingest_batches (batch_id));
diesel::joinable!(rejects -> ingest_batches (batch_id));
diesel::allow_tables_to_appear_in_same_query!(ingest_batches, usage_rows, rejects);
