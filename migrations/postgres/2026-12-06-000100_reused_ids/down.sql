DROP INDEX usage_rows_request;
ALTER TABLE ingest_batches DROP COLUMN rows_id_reused;
