DROP INDEX usage_rows_request;
CREATE INDEX usage_rows_request ON usage_rows (side, request_id, ts_ms);
