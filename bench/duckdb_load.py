#!/usr/bin/env python3
"""DuckDB reading the two CSV files only: no key mapping, no join.

Usage: duckdb_load.py DATA_DIR

The first two statements of duckdb_asof.py without their casts and
mapping: a floor for any DuckDB job over these files, printed beside the
full job so the time target (a quarter of the full job) can be read
against what loading alone costs.
"""
import sys, duckdb

data = sys.argv[1]
con = duckdb.connect()
con.execute("SET preserve_insertion_order = false")
con.execute(f"CREATE TABLE c AS SELECT * FROM read_csv('{data}/client.csv', header = true, all_varchar = true)")
con.execute(f"CREATE TABLE g AS SELECT * FROM read_csv('{data}/gateway.csv', header = true, all_varchar = true)")
