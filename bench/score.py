#!/usr/bin/env python3
"""Scores pairs against the generator's truth: score.py TRUTH PAIRS [CLIENT_COL GATEWAY_COL]

Prints: true_pairs found_pairs right wrong missed gateway_rows_claimed_twice
"""
import sys, duckdb
truth, pairs = sys.argv[1], sys.argv[2]
cc, gc = (sys.argv[3], sys.argv[4]) if len(sys.argv) > 4 else ("client_line", "gateway_line")
con = duckdb.connect()
con.execute(f"CREATE TABLE t AS SELECT client_line AS c, gateway_line AS g FROM read_csv('{truth}', header = true)")
con.execute(f"CREATE TABLE p AS SELECT CAST({cc} AS BIGINT) AS c, CAST({gc} AS BIGINT) AS g FROM read_csv('{pairs}', header = true, all_varchar = true)")
tp = con.execute("SELECT count(*) FROM t").fetchone()[0]
fp = con.execute("SELECT count(*) FROM p").fetchone()[0]
right = con.execute("SELECT count(*) FROM p JOIN t USING (c, g)").fetchone()[0]
twice = con.execute("SELECT count(*) FROM (SELECT g FROM p GROUP BY g HAVING count(*) > 1)").fetchone()[0]
print(tp, fp, right, fp - right, tp - right, twice)
