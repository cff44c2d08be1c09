-- Request ids are unique per UTC day, not forever (issue 19): a row's id
-- key carries its day, so an id an app uses again on another day is a new
-- row, not a "duplicate" dropped at ingest. Stored keys get their day from
-- the row's own time, exactly as `tally_reconcile::identity` writes them
-- (`id:2026-11-20:abc#0`); content-hash keys (`h:`) are unchanged.
UPDATE usage_rows
SET dedup_key = 'id:' || to_char(to_timestamp(ts_ms / 1000) AT TIME ZONE 'UTC', 'YYYY-MM-DD') || ':' || substr(dedup_key, 4)
WHERE dedup_key LIKE 'id:%';
