-- Provider tie-outs (issue 20): each `tally tieout` is kept, so the
-- month-end page shows the buckets of the latest one over a month.
CREATE TABLE tieouts (
    id INTEGER PRIMARY KEY,
    from_ms BIGINT NOT NULL,
    to_ms BIGINT NOT NULL,
    ran_at TIMESTAMP NOT NULL,
    clean BOOLEAN NOT NULL,
    result TEXT NOT NULL
);

CREATE INDEX tieouts_window ON tieouts (from_ms, to_ms);
