-- A month's pages read every daily rollup of the month's runs (issue 21).
-- The table is already read through its primary key by run and day (the
-- SQLite side of this version clusters it on that key). The owner index
-- serves an owner's page, which reads one owner's rollups rather than all.
CREATE INDEX run_rollups_owner ON run_rollups (run_id, team, service, env, day_ms);
