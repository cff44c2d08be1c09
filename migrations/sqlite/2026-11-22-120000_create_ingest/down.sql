DROP TABLE rejects;
DROP TABLE usage_rows;
DROP TABLE ingest_batches;
