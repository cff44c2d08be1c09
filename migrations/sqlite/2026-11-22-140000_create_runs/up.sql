-- Reconciliation runs over a window of stored rows, and each row's verdict
-- per run (issue 3). A newer run over the same window supersedes the older
-- one, which stays readable as history.

CREATE TABLE runs (
    id INTEGER PRIMARY KEY,
    window_from TIMESTAMP NOT NULL,
    window_to TIMESTAMP NOT NULL,
    started_at TIMESTAMP NOT NULL,
    finished_at TIMESTAMP NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('current', 'superseded')),
    superseded_by BIGINT REFERENCES runs (id),
    tolerance_ms BIGINT NOT NULL,
    margin_ms BIGINT NOT NULL,
    client_rows BIGINT NOT NULL,
    gateway_rows BIGINT NOT NULL,
    global_offset_ms BIGINT NOT NULL,
    key_offsets TEXT NOT NULL
);

CREATE INDEX runs_window ON runs (status, window_from, window_to);

CREATE TABLE run_counts (
    run_id BIGINT NOT NULL REFERENCES runs (id),
    class TEXT NOT NULL,
    client_rows BIGINT NOT NULL,
    gateway_rows BIGINT NOT NULL,
    PRIMARY KEY (run_id, class)
);

-- Money in nano-dollars; computed_cost_nanos NULL means unpriced (never 0).
-- No foreign keys: a run writes a verdict per row (millions) inside the
-- transaction that creates the run, for rows it has just read, and checking
-- three references per verdict made PostgreSQL's COPY of 2M verdicts take
-- 38.6 s instead of 6.3 s. Whatever deletes runs or usage rows must delete
-- their verdicts in the same transaction.
CREATE TABLE verdicts (
    run_id BIGINT NOT NULL,
    usage_row_id BIGINT NOT NULL,
    class TEXT NOT NULL,
    partner_row_id BIGINT,
    key_name TEXT NOT NULL,
    registered BOOLEAN NOT NULL,
    team TEXT NOT NULL,
    service TEXT NOT NULL,
    env TEXT NOT NULL,
    model_family TEXT NOT NULL,
    computed_cost_nanos BIGINT,
    reported_cost_nanos BIGINT,
    detail TEXT NOT NULL,
    PRIMARY KEY (run_id, usage_row_id)
);

