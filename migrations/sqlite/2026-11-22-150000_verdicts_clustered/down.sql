CREATE TABLE verdicts_rowid (
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

INSERT INTO verdicts_rowid SELECT
    run_id, usage_row_id, class, partner_row_id, key_name, registered, team,
    service, env, model_family, computed_cost_nanos, reported_cost_nanos, detail
FROM verdicts;

DROP TABLE verdicts;

ALTER TABLE verdicts_rowid RENAME TO verdicts;
