-- Back to ids unique forever: drop the day (`id:YYYY-MM-DD:` is 14 characters).
UPDATE usage_rows
SET dedup_key = 'id:' || substr(dedup_key, 15)
WHERE dedup_key LIKE 'id:____-__-__:%';
