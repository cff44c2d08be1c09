-- After every run its data-quality checks look for two kinds of row: gateway
-- rows billed at zero though they carry tokens, and streamed client rows
-- logged without usage. Found by walking the window's time index, they cost
-- a second of a 1M-row day's run (every row's table page read to test a
-- column); these partial indexes hold only the candidate rows, so on a
-- normal day they are nearly empty and cost an ingest nearly nothing. The
-- queries repeat each WHERE term as written: a planner uses a partial index
-- only when it can see the query implies its condition.
CREATE INDEX usage_rows_billed_zero ON usage_rows (side, ts_ms)
    WHERE reported_cost_nanos = 0;
CREATE INDEX usage_rows_stream_no_usage ON usage_rows (side, ts_ms)
    WHERE stream IS TRUE AND input_tokens IS NULL AND output_tokens IS NULL;
