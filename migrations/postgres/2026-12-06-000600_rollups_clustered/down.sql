DROP INDEX run_rollups_owner;
