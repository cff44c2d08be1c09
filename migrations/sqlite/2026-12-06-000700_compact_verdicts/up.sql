-- Verdicts as compact rows (issue 21). A verdict used to carry its key,
-- owner and model family as six text columns, the same few hundred
-- combinations repeated on every one of a run's millions of rows: writing
-- them was a third of `tally run`. Now a run stores each distinct
-- (key, registered, team, service, env, model family) once, in
-- run_attributions, and a verdict points at it by a per-run number. Read
-- paths join the two on (run_id, attribution_id), a primary-key probe.
CREATE TABLE run_attributions (
    run_id BIGINT NOT NULL REFERENCES runs (id),
    id BIGINT NOT NULL,
    key_name TEXT NOT NULL,
    registered BOOLEAN NOT NULL,
    team TEXT NOT NULL,
    service TEXT NOT NULL,
    env TEXT NOT NULL,
    model_family TEXT NOT NULL,
    PRIMARY KEY (run_id, id),
    UNIQUE (run_id, key_name, registered, team, service, env, model_family)
) WITHOUT ROWID;
INSERT INTO run_attributions (run_id, id, key_name, registered, team, service, env, model_family)
SELECT run_id,
    ROW_NUMBER() OVER (PARTITION BY run_id
        ORDER BY key_name, registered, team, service, env, model_family),
    key_name, registered, team, service, env, model_family
FROM (SELECT DISTINCT run_id, key_name, registered, team, service, env, model_family
      FROM verdicts) AS distinct_attributions;
-- No foreign keys on this bulk table, as before: checked row by row they
-- multiplied the time of a run's COPY on PostgreSQL.
CREATE TABLE verdicts_compact (
    run_id BIGINT NOT NULL,
    usage_row_id BIGINT NOT NULL,
    class TEXT NOT NULL,
    partner_row_id BIGINT,
    attribution_id BIGINT NOT NULL,
    computed_cost_nanos BIGINT,
    reported_cost_nanos BIGINT,
    detail TEXT NOT NULL,
    PRIMARY KEY (run_id, usage_row_id)
) WITHOUT ROWID;
INSERT INTO verdicts_compact (run_id, usage_row_id, class, partner_row_id, attribution_id,
    computed_cost_nanos, reported_cost_nanos, detail)
SELECT v.run_id, v.usage_row_id, v.class, v.partner_row_id, a.id,
    v.computed_cost_nanos, v.reported_cost_nanos, v.detail
FROM verdicts v
JOIN run_attributions a ON a.run_id = v.run_id AND a.key_name = v.key_name
    AND a.registered = v.registered AND a.team = v.team AND a.service = v.service
    AND a.env = v.env AND a.model_family = v.model_family;
DROP TABLE verdicts;
ALTER TABLE verdicts_compact RENAME TO verdicts;
CREATE INDEX verdicts_by_class ON verdicts (run_id, class, usage_row_id)
    WHERE class <> 'matched';
