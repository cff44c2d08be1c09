-- Quotas and alerts (issue 5).
--
-- A quota's scope is owner labels (any of team, service, env: all given
-- must match) or one key. Its limit is in the metric's unit: nano-dollars
-- for cost, tokens, or requests.
CREATE TABLE quotas (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    scope_team TEXT,
    scope_service TEXT,
    scope_env TEXT,
    scope_key TEXT,
    metric TEXT NOT NULL,
    limit_units BIGINT NOT NULL,
    period TEXT NOT NULL,
    time_zone TEXT NOT NULL,
    thresholds TEXT NOT NULL,
    recipients TEXT NOT NULL,
    basis TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);

-- Every alert that fired. The unique constraint is the "fires once"
-- guarantee: evaluators on several replicas race to insert, one wins, and
-- only the winner queues email (in the same transaction).
CREATE TABLE alerts (
    id INTEGER PRIMARY KEY,
    rule TEXT NOT NULL,
    scope TEXT NOT NULL,
    period TEXT NOT NULL,
    threshold BIGINT NOT NULL,
    kind TEXT NOT NULL,
    state TEXT NOT NULL,
    title TEXT NOT NULL,
    detail TEXT NOT NULL,
    fired_at TIMESTAMP NOT NULL,
    resolved_at TIMESTAMP,
    UNIQUE (rule, scope, period, threshold)
);
CREATE INDEX alerts_by_state ON alerts (state, fired_at);

-- Every message until the SMTP server accepts it.
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY,
    alert_id BIGINT REFERENCES alerts (id),
    recipients TEXT NOT NULL,
    subject TEXT NOT NULL,
    body_text TEXT NOT NULL,
    body_html TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    attempts BIGINT NOT NULL,
    next_attempt_at TIMESTAMP NOT NULL,
    sent_at TIMESTAMP,
    last_error TEXT
);
CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE sent_at IS NULL;

-- Scheduled jobs' leases on SQLite (PostgreSQL uses advisory locks; the
-- table exists on both so the schema is one).
CREATE TABLE job_locks (
    job TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at TIMESTAMP NOT NULL
);
