DROP INDEX usage_rows_stream_no_usage;
DROP INDEX usage_rows_billed_zero;
