-- A month's pages read every daily rollup of the month's runs (issue 21).
-- As a rowid table, each rollup found through the primary key's index cost
-- a second seek into the table: half of a month's costs report went to
-- those seeks. Clustered on its key (WITHOUT ROWID), a run's days are one
-- range of pages. The owner index serves an owner's page, which reads one
-- owner's rollups rather than all of them.
CREATE TABLE run_rollups_clustered (
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
) WITHOUT ROWID;
INSERT INTO run_rollups_clustered (run_id, day_ms, side, class, key_name, registered, team,
    service, env, model_family, row_count, unpriced_rows, computed_nanos, reported_nanos,
    variance_nanos, tokens)
SELECT run_id, day_ms, side, class, key_name, registered, team, service, env, model_family,
    row_count, unpriced_rows, computed_nanos, reported_nanos, variance_nanos, tokens
FROM run_rollups;
DROP TABLE run_rollups;
ALTER TABLE run_rollups_clustered RENAME TO run_rollups;
CREATE INDEX run_rollups_owner ON run_rollups (run_id, team, service, env, day_ms);
