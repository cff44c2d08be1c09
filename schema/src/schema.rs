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
        /// Accepted rows whose request id the side holds on another UTC day
        /// (kept as rows of their own).
        rows_id_reused -> BigInt,
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
        /// The gateway's own name for the key (LiteLLM's key alias), "" when
        /// the source gives none.
        key_alias -> Text,
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

diesel::table! {
    /// An owner: team, service, environment, and who to tell.
    owners (id) {
        /// Row id.
        id -> BigInt,
        team -> Text,
        service -> Text,
        env -> Text,
        /// Contact email(s).
        contact -> Nullable<Text>,
    }
}

diesel::table! {
    /// A registered API key and every way a source may name it.
    api_keys (id) {
        /// Row id.
        id -> BigInt,
        /// Tally's id for the key.
        key_id -> Text,
        /// Alias (LiteLLM `key_alias`).
        alias -> Nullable<Text>,
        /// Last four characters of the secret.
        last4 -> Nullable<Text>,
        /// Labels, a JSON array of strings.
        labels -> Text,
        /// SHA-256 hex digests of the secret, a JSON array of strings.
        sha256 -> Text,
        owner_id -> Nullable<BigInt>,
        /// Contact for this key (else the owner's).
        contact -> Nullable<Text>,
    }
}

diesel::table! {
    /// A user model alias.
    model_aliases (alias) {
        /// Name a source uses (lowercase).
        alias -> Text,
        /// Family it stands for.
        model -> Text,
    }
}

diesel::table! {
    /// One price of a model from a date: nano-dollars per million tokens.
    prices (id) {
        /// Row id.
        id -> BigInt,
        /// Family name or glob.
        model -> Text,
        /// From when (UTC).
        effective_from -> Timestamp,
        /// Currency (USD).
        currency -> Text,
        /// Uncached input.
        input_nanos -> BigInt,
        /// Cached input.
        cached_input_nanos -> BigInt,
        /// Cache writes.
        cache_write_nanos -> BigInt,
        output_nanos -> BigInt,
        /// Reasoning, when priced apart from output.
        reasoning_nanos -> Nullable<BigInt>,
        /// When it was imported (UTC).
        imported_at -> Timestamp,
    }
}

diesel::table! {
    /// A reconciliation run over a window of stored rows.
    runs (id) {
        /// Row id.
        id -> BigInt,
        /// Window start (UTC, inclusive).
        window_from -> Timestamp,
        /// Window end (UTC, exclusive).
        window_to -> Timestamp,
        /// Started (UTC).
        started_at -> Timestamp,
        /// Finished (UTC).
        finished_at -> Timestamp,
        /// `current` or `superseded`.
        status -> Text,
        /// The run that replaced it.
        superseded_by -> Nullable<BigInt>,
        /// Matching tolerance, ms.
        tolerance_ms -> BigInt,
        /// How far outside the window partners were looked for, ms.
        margin_ms -> BigInt,
        /// Client rows in the window.
        client_rows -> BigInt,
        /// Gateway rows in the window.
        gateway_rows -> BigInt,
        /// Learned global offset (gateway minus client), ms.
        global_offset_ms -> BigInt,
        /// Learned per-key offsets, a JSON object key -> ms.
        key_offsets -> Text,
    }
}

diesel::table! {
    /// Rows per class of a run.
    run_counts (run_id, class) {
        run_id -> BigInt,
        /// Class name.
        class -> Text,
        /// Client rows in it.
        client_rows -> BigInt,
        /// Gateway rows in it.
        gateway_rows -> BigInt,
    }
}

diesel::table! {
    /// Whom a run's verdicts are charged to: each distinct key, owner and
    /// model family of the run once, numbered within the run.
    run_attributions (run_id, id) {
        run_id -> BigInt,
        /// Number within the run.
        id -> BigInt,
        /// Canonical key name.
        key_name -> Text,
        /// Whether the registry knows the key.
        registered -> Bool,
        /// Owner: team.
        team -> Text,
        /// Owner: service.
        service -> Text,
        /// Owner: environment.
        env -> Text,
        /// Model family priced.
        model_family -> Text,
    }
}

diesel::table! {
    /// A row's verdict in a run.
    verdicts (run_id, usage_row_id) {
        run_id -> BigInt,
        /// The row.
        usage_row_id -> BigInt,
        /// Class name.
        class -> Text,
        /// Its partner on the other side, for pairs.
        partner_row_id -> Nullable<BigInt>,
        /// Whom the row is charged to: `run_attributions.id` of this run.
        attribution_id -> BigInt,
        /// Tally's price, nano-dollars; NULL when unpriced (never 0).
        computed_cost_nanos -> Nullable<BigInt>,
        /// Gateway-reported cost, nano-dollars.
        reported_cost_nanos -> Nullable<BigInt>,
        /// What differs, in words ("" when nothing).
        detail -> Text,
    }
}

diesel::table! {
    /// A service token of `tally serve`: only its hash is kept.
    api_tokens (id) {
        /// Row id.
        id -> BigInt,
        /// Who or what holds it (unique among live tokens).
        name -> Text,
        /// `admin`, `finance`, `platform` or `ingest`.
        role -> Text,
        /// SHA-256 hex of the token.
        token_sha256 -> Text,
        /// Last four characters, to tell tokens apart in lists.
        last4 -> Text,
        /// Created (UTC).
        created_at -> Timestamp,
        /// Revoked (UTC); NULL while live.
        revoked_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    /// A signed-in browser session: only the hash of its id is kept.
    web_sessions (id) {
        /// Row id.
        id -> BigInt,
        /// SHA-256 hex of the session id (the cookie's value).
        session_sha256 -> Text,
        /// The token it was signed in with.
        token_id -> BigInt,
        /// The token forms must carry (CSRF).
        csrf -> Text,
        /// Created (UTC).
        created_at -> Timestamp,
        /// Expires (UTC).
        expires_at -> Timestamp,
    }
}

diesel::table! {
    /// A run's sums per UTC day and per every dimension a costs report
    /// groups by.
    run_rollups (run_id, day_ms, side, class, key_name, registered, team, service, env, model_family) {
        run_id -> BigInt,
        /// The rows' UTC day (its midnight), ms.
        day_ms -> BigInt,
        /// `client` or `gateway`.
        side -> Text,
        class -> Text,
        /// Canonical key name.
        key_name -> Text,
        /// Whether the registry knows the key.
        registered -> Bool,
        /// Owner: team.
        team -> Text,
        /// Owner: service.
        service -> Text,
        /// Owner: environment.
        env -> Text,
        /// Model family.
        model_family -> Text,
        /// Rows.
        row_count -> BigInt,
        /// Rows without a price.
        unpriced_rows -> BigInt,
        /// Tally's price of the priced rows, nano-dollars.
        computed_nanos -> BigInt,
        /// Gateway-reported cost, nano-dollars.
        reported_nanos -> BigInt,
        /// Reported minus computed over rows with both, nano-dollars.
        variance_nanos -> BigInt,
        /// Input plus output tokens.
        tokens -> BigInt,
    }
}

diesel::table! {
    /// A quota: a limit on an owner's or a key's usage per calendar period.
    quotas (id) {
        /// Row id.
        id -> BigInt,
        /// Unique name.
        name -> Text,
        /// Scope: team (owner labels; all given must match).
        scope_team -> Nullable<Text>,
        /// Scope: service.
        scope_service -> Nullable<Text>,
        /// Scope: environment.
        scope_env -> Nullable<Text>,
        /// Scope: one key (instead of owner labels).
        scope_key -> Nullable<Text>,
        /// `cost`, `tokens` or `requests`.
        metric -> Text,
        /// The limit: nano-dollars for cost, else tokens or requests.
        limit_units -> BigInt,
        /// `day`, `week` or `month`.
        period -> Text,
        /// IANA zone the period is calendar-aligned in.
        time_zone -> Text,
        /// Thresholds, percent, comma-separated.
        thresholds -> Text,
        /// Recipients, comma-separated; "" for the owner's contacts.
        recipients -> Text,
        /// `billed` (gateway rows) or `client` (client-logged rows).
        basis -> Text,
        /// Created (UTC).
        created_at -> Timestamp,
        /// Last changed (UTC).
        updated_at -> Timestamp,
    }
}

diesel::table! {
    /// An alert that fired: once per (rule, scope, period, threshold).
    alerts (id) {
        /// Row id.
        id -> BigInt,
        /// What rule fired (`quota:NAME`, `unattributed`, ...).
        rule -> Text,
        /// For whom (an owner, a key, a model).
        scope -> Text,
        /// Which period (a local date, a UTC day).
        period -> Text,
        /// Threshold, percent (0 when the rule has none).
        threshold -> BigInt,
        /// Kind: `quota_threshold`, `quota_forecast`, `unattributed`,
        /// `unregistered_key`, `data_quality`, `digest`.
        kind -> Text,
        /// `firing` or `resolved`.
        state -> Text,
        /// One line: what and for whom.
        title -> Text,
        /// Figures, a JSON object.
        detail -> Text,
        /// Fired (UTC).
        fired_at -> Timestamp,
        /// Resolved (UTC).
        resolved_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    /// A message kept until the SMTP server accepts it.
    outbox (id) {
        /// Row id.
        id -> BigInt,
        /// The alert it tells of.
        alert_id -> Nullable<BigInt>,
        /// Recipients, comma-separated.
        recipients -> Text,
        subject -> Text,
        /// Plain-text part.
        body_text -> Text,
        /// HTML part.
        body_html -> Text,
        /// Queued (UTC).
        created_at -> Timestamp,
        /// Delivery attempts so far.
        attempts -> BigInt,
        /// Not before (UTC): the retry backoff.
        next_attempt_at -> Timestamp,
        /// Accepted by the server (UTC).
        sent_at -> Nullable<Timestamp>,
        /// The last failure.
        last_error -> Nullable<Text>,
    }
}

diesel::table! {
    /// A scheduled job's lease (SQLite; PostgreSQL uses advisory locks).
    job_locks (job) {
        /// Job name.
        job -> Text,
        /// Who holds it.
        holder -> Text,
        /// Until when (UTC).
        expires_at -> Timestamp,
    }
}

diesel::joinable!(outbox -> alerts (alert_id));
diesel::joinable!(run_rollups -> runs (run_id));
diesel::joinable!(web_sessions -> api_tokens (token_id));
diesel::joinable!(usage_rows -> ingest_batches (batch_id));
diesel::joinable!(rejects -> ingest_batches (batch_id));
diesel::joinable!(api_keys -> owners (owner_id));
diesel::joinable!(run_counts -> runs (run_id));
diesel::joinable!(verdicts -> runs (run_id));
diesel::joinable!(verdicts -> usage_rows (usage_row_id));
diesel::joinable!(run_attributions -> runs (run_id));
diesel::allow_tables_to_appear_in_same_query!(
    ingest_batches,
    usage_rows,
    rejects,
    owners,
    api_keys,
    model_aliases,
    prices,
    runs,
    run_counts,
    verdicts,
    run_attributions,
    api_tokens,
    web_sessions,
    run_rollups,
    quotas,
    alerts,
    outbox,
    job_locks,
    closed_periods,
    closed_charges,
    contracts,
    tieouts
);

diesel::table! {
    /// A billing period closed: its frozen FOCUS export and totals.
    closed_periods (id) {
        /// Row id.
        id -> BigInt,
        /// `YYYY-MM`.
        period -> Text,
        /// The period's start, UTC ms.
        start_ms -> BigInt,
        /// Its end (exclusive), UTC ms.
        end_ms -> BigInt,
        /// When it was closed (UTC).
        closed_at -> Timestamp,
        /// Who closed it (a token's name, or `cli`).
        closed_by -> Text,
        /// SHA-256 (hex) of `focus_csv`.
        sha256 -> Text,
        /// The FOCUS 1.2 export as it was at the close.
        focus_csv -> Text,
        /// Charges (regular rows).
        charges -> BigInt,
        /// Correction rows (for earlier closed periods).
        corrections -> BigInt,
        /// Sum of BilledCost, nano-dollars.
        billed_nanos -> BigInt,
        /// Sum of ListCost, nano-dollars.
        list_nanos -> BigInt,
        /// When it was reopened, if it was.
        reopened_at -> Nullable<Timestamp>,
        /// Who reopened it.
        reopened_by -> Nullable<Text>,
        /// Why.
        reopen_reason -> Nullable<Text>,
    }
}

diesel::table! {
    /// A charge frozen by a close.
    closed_charges (close_id, day_ms, team, service, env, key_name, model_family, verdict, correction) {
        /// The close.
        close_id -> BigInt,
        /// The charge's UTC day (its midnight), ms.
        day_ms -> BigInt,
        /// Owner: team.
        team -> Text,
        /// Owner: service.
        service -> Text,
        /// Owner: environment.
        env -> Text,
        /// Canonical key name.
        key_name -> Text,
        /// Model family.
        model_family -> Text,
        /// Tally's verdict.
        verdict -> Text,
        /// Requests.
        requests -> BigInt,
        /// Input plus output tokens.
        tokens -> BigInt,
        /// Gateway-billed, nano-dollars.
        billed_nanos -> BigInt,
        /// Tally's price of the priced rows, nano-dollars.
        computed_nanos -> BigInt,
        /// Rows without a price.
        unpriced_rows -> BigInt,
        /// What they were billed, nano-dollars.
        unpriced_billed_nanos -> BigInt,
        /// The run the figures came from.
        run_id -> Nullable<BigInt>,
        /// A correction to an earlier closed period.
        correction -> Bool,
    }
}

diesel::joinable!(closed_charges -> closed_periods (close_id));

diesel::table! {
    /// A contracted rate: a share off list prices.
    contracts (id) {
        /// Row id.
        id -> BigInt,
        /// Unique name.
        name -> Text,
        /// Model families: a name or a glob.
        models -> Text,
        /// The share off the list price, a decimal from 0 to 1.
        discount -> Text,
        /// First millisecond it applies, UTC.
        effective_from_ms -> BigInt,
        /// First millisecond it no longer applies.
        effective_to_ms -> Nullable<BigInt>,
        /// Committed-spend tiers, JSON `[["from_spend", "share"], ...]`.
        tiers -> Text,
    }
}

diesel::table! {
    /// A provider tie-out as it ran.
    tieouts (id) {
        /// Row id.
        id -> BigInt,
        /// Window start, UTC ms.
        from_ms -> BigInt,
        /// Window end (exclusive), UTC ms.
        to_ms -> BigInt,
        /// When it ran (UTC).
        ran_at -> Timestamp,
        /// Whether every bucket agreed and every report was whole.
        clean -> Bool,
        /// The result as JSON (buckets, gaps, pages).
        result -> Text,
    }
}
