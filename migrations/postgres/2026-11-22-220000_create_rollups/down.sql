DROP INDEX verdicts_by_class;
DROP TABLE run_rollups;
