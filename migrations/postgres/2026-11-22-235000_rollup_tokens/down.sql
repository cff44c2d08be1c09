ALTER TABLE run_rollups DROP COLUMN tokens;
