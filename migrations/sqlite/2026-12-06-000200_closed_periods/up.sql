-- Closed billing periods (issue 20). Closing a month freezes its FOCUS
-- export: the bytes and their SHA-256, the totals, and every charge (UTC
-- day, owner, key, model, verdict) with its amounts. Rows that arrive later
-- never change a closed month: the first open month after it carries the
-- difference as correction charges, frozen in turn when that month closes.
-- Reopening is an explicit act with a reason: the close stays, marked.
CREATE TABLE closed_periods (
    id INTEGER PRIMARY KEY,
    period TEXT NOT NULL,
    start_ms BIGINT NOT NULL,
    end_ms BIGINT NOT NULL,
    closed_at TIMESTAMP NOT NULL,
    closed_by TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    focus_csv TEXT NOT NULL,
    charges BIGINT NOT NULL,
    corrections BIGINT NOT NULL,
    billed_nanos BIGINT NOT NULL,
    list_nanos BIGINT NOT NULL,
    reopened_at TIMESTAMP,
    reopened_by TEXT,
    reopen_reason TEXT
);

-- One close in force per period.
CREATE UNIQUE INDEX closed_periods_in_force ON closed_periods (period) WHERE reopened_at IS NULL;

CREATE TABLE closed_charges (
    close_id BIGINT NOT NULL REFERENCES closed_periods (id),
    day_ms BIGINT NOT NULL,
    team TEXT NOT NULL,
    service TEXT NOT NULL,
    env TEXT NOT NULL,
    key_name TEXT NOT NULL,
    model_family TEXT NOT NULL,
    verdict TEXT NOT NULL,
    requests BIGINT NOT NULL,
    tokens BIGINT NOT NULL,
    billed_nanos BIGINT NOT NULL,
    computed_nanos BIGINT NOT NULL,
    unpriced_rows BIGINT NOT NULL,
    unpriced_billed_nanos BIGINT NOT NULL,
    run_id BIGINT,
    correction BOOLEAN NOT NULL,
    PRIMARY KEY (close_id, day_ms, team, service, env, key_name, model_family, verdict, correction)
);

CREATE INDEX closed_charges_day ON closed_charges (day_ms);
