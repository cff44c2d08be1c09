-- Tokens in the per-run daily sums (issue 5): a tokens quota over a month
-- reads these sums instead of every row. Existing sums are rebuilt from
-- the verdicts, the way a run writes them.

ALTER TABLE run_rollups ADD COLUMN tokens BIGINT NOT NULL DEFAULT 0;

DELETE FROM run_rollups;

INSERT INTO run_rollups (run_id, day_ms, side, class, key_name, registered, team, service, env,
                         model_family, row_count, unpriced_rows, computed_nanos, reported_nanos,
                         variance_nanos, tokens)
SELECT v.run_id, (u.ts_ms / 86400000) * 86400000, u.side, v.class, v.key_name,
       v.registered, v.team, v.service, v.env, v.model_family,
       COUNT(*),
       SUM(CASE WHEN v.computed_cost_nanos IS NULL THEN 1 ELSE 0 END),
       COALESCE(SUM(v.computed_cost_nanos), 0),
       COALESCE(SUM(v.reported_cost_nanos), 0),
       COALESCE(SUM(CASE WHEN v.computed_cost_nanos IS NOT NULL AND v.reported_cost_nanos IS NOT NULL
                         THEN v.reported_cost_nanos - v.computed_cost_nanos ELSE 0 END), 0),
       COALESCE(SUM(COALESCE(u.input_tokens, 0) + COALESCE(u.output_tokens, 0)), 0)
FROM verdicts v JOIN usage_rows u ON u.id = v.usage_row_id
GROUP BY v.run_id, (u.ts_ms / 86400000) * 86400000, u.side, v.class, v.key_name,
         v.registered, v.team, v.service, v.env, v.model_family;
