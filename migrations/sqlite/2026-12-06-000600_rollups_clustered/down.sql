DROP INDEX run_rollups_owner;
CREATE TABLE run_rollups_rowid (
    run_id BIGINT NOT NULL REFERENCES runs (id),
    day_ms BIGINT NOT NULL,
    side TEXT NOT NULL,
    class TEXT NOT NULL,
    key_name TEXT NOT NULL,
    registered BOOLEAN NOT NULL,
    team TEXT NOT NULL,
    service TEXT NOT NULL,
    env TEXT NOT NULL,
    model_family TEXT NOT NULL,
    row_count BIGINT NOT NULL,
    unpriced_rows BIGINT NOT NULL,
    computed_nanos BIGINT NOT NULL,
    reported_nanos BIGINT NOT NULL,
    variance_nanos BIGINT NOT NULL,
    tokens BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (run_id, day_ms, side, class, key_name, registered, team, service, env, model_family)
);
INSERT INTO run_rollups_rowid SELECT * FROM run_rollups;
DROP TABLE run_rollups;
ALTER TABLE run_rollups_rowid RENAME TO run_rollups;
