DROP TABLE verdicts;
DROP TABLE run_counts;
DROP TABLE runs;
