CREATE TABLE verdicts_wide (
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
INSERT INTO verdicts_wide (run_id, usage_row_id, class, partner_row_id, key_name, registered,
    team, service, env, model_family, computed_cost_nanos, reported_cost_nanos, detail)
SELECT v.run_id, v.usage_row_id, v.class, v.partner_row_id, a.key_name, a.registered,
    a.team, a.service, a.env, a.model_family, v.computed_cost_nanos, v.reported_cost_nanos,
    v.detail
FROM verdicts v
JOIN run_attributions a ON a.run_id = v.run_id AND a.id = v.attribution_id;
DROP TABLE verdicts;
ALTER TABLE verdicts_wide RENAME TO verdicts;
CREATE INDEX verdicts_by_class ON verdicts (run_id, class, usage_row_id)
    WHERE class <> 'matched';
DROP TABLE run_attributions;
