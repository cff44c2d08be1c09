#!/usr/bin/env python3
"""The same reconciliation job through DuckDB's ASOF JOIN, for comparison.

Usage: duckdb_asof.py DATA_DIR OUT_CSV [TOLERANCE_MS]

Reads the generated client.csv (Tally CSV) or client.jsonl (JSON Lines)
and gateway.csv (LiteLLM spend
logs), maps keys through keys.toml, joins on request id first, learns the
median gateway-minus-client offset from the id pairs, then pairs the rest by
key + model + route family with the nearest gateway row in time (one
backward and one forward ASOF join) within the tolerance. Writes
client_line,gateway_line. This is what ASOF joins can do; they are not
one-to-one, so a gateway row may be claimed twice (kept: that is the
comparison).
"""
import sys, tomllib, duckdb

data, out = sys.argv[1], sys.argv[2]
tol = int(sys.argv[3]) if len(sys.argv) > 3 else 2000
keys = tomllib.load(open(f"{data}/keys.toml", "rb"))["key"]
con = duckdb.connect()
con.execute("SET preserve_insertion_order = false")
con.execute("CREATE TABLE keymap (key_id VARCHAR, hash VARCHAR)")
con.executemany("INSERT INTO keymap VALUES (?, ?)", [(k["id"], h) for k in keys for h in k.get("sha256", [])])
# Timestamps are normalised to UTC in SQL (DuckDB drops offsets when casting
# a '+02:00' string to TIMESTAMP, see matching.md); the generator writes Z.
# The client log is client.csv (first row on line 2) or client.jsonl (line
# 1), read with only the columns the join needs.
import os
if os.path.exists(f"{data}/client.jsonl"):
    client, first = (f"""read_json('{data}/client.jsonl', format = 'newline_delimited',
        columns = {{ts: 'VARCHAR', key: 'VARCHAR', model: 'VARCHAR', route: 'VARCHAR', response_id: 'VARCHAR'}})""", 0)
else:
    client, first = f"read_csv('{data}/client.csv', header = true, all_varchar = true)", 1
con.execute(f"""
CREATE TABLE c AS
SELECT row_number() OVER () + {first} AS line, CAST(replace(ts, 'Z', '') AS TIMESTAMP) AS ts, key, model,
       CASE WHEN route LIKE '%embed%' THEN 'embeddings' WHEN route LIKE '%responses%' THEN 'responses' ELSE 'chat' END AS route,
       NULLIF(response_id, '') AS rid
FROM {client}
""")
con.execute(f"""
CREATE TABLE g AS
SELECT row_number() OVER () + 1 AS line, CAST("startTime" AS TIMESTAMP) AS ts, k.key_id AS key, model_group AS model,
       CASE WHEN call_type LIKE '%embed%' THEN 'embeddings' WHEN call_type LIKE '%responses%' THEN 'responses' ELSE 'chat' END AS route,
       request_id AS rid
FROM read_csv('{data}/gateway.csv', header = true, all_varchar = true) r LEFT JOIN keymap k ON k.hash = r.api_key
""")
con.execute("CREATE TABLE idp AS SELECT c.line AS cl, g.line AS gl, epoch_ms(g.ts) - epoch_ms(c.ts) AS dt FROM c JOIN g ON c.rid = g.rid")
offset = con.execute("SELECT coalesce(median(dt), 0) FROM idp").fetchone()[0]
con.execute(f"""
CREATE TABLE cr AS SELECT line, ts + INTERVAL ({int(offset)}) MILLISECOND AS ts, key, model, route FROM c WHERE line NOT IN (SELECT cl FROM idp)
""")
con.execute("CREATE TABLE gr AS SELECT line, ts, key, model, route FROM g WHERE line NOT IN (SELECT gl FROM idp)")
con.execute(f"""
CREATE TABLE near AS
WITH back AS (
  SELECT cr.line AS cl, gr.line AS gl, abs(epoch_ms(cr.ts) - epoch_ms(gr.ts)) AS d
  FROM cr ASOF JOIN gr ON cr.key = gr.key AND cr.model = gr.model AND cr.route = gr.route AND cr.ts >= gr.ts
), fwd AS (
  SELECT cr.line AS cl, gr.line AS gl, abs(epoch_ms(gr.ts) - epoch_ms(cr.ts)) AS d
  FROM cr ASOF JOIN gr ON cr.key = gr.key AND cr.model = gr.model AND cr.route = gr.route AND gr.ts >= cr.ts
), both_ AS (SELECT * FROM back UNION ALL SELECT * FROM fwd)
SELECT cl, arg_min(gl, d) AS gl FROM both_ WHERE d <= {tol} GROUP BY cl
""")
con.execute(f"COPY (SELECT cl AS client_line, gl AS gateway_line FROM idp UNION ALL SELECT cl, gl FROM near) TO '{out}' (HEADER)")
