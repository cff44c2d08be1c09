-- The reused-id lookup at ingest (issue 19) asks for `request_id = ANY(ids)`
-- within a side. With `side` first in the index, PostgreSQL planned it on a
-- side's first big file from statistics that had seen none of its rows
-- (they are all in the ingesting transaction): an index scan on `side`
-- alone, filtering every row of the side for every chunk, O(n²). A 10M-row
-- LiteLLM file had run 17 minutes at 100 % CPU in that one query when it
-- was stopped (issue 21). With the id first, the ids are the index's
-- condition whatever the statistics say.
DROP INDEX usage_rows_request;
CREATE INDEX usage_rows_request ON usage_rows (request_id, side, ts_ms);
