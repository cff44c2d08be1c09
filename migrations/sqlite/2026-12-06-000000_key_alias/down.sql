ALTER TABLE usage_rows DROP COLUMN key_alias;
