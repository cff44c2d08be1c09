#!/usr/bin/env python3
"""Polars reading the two CSV files as text only: no types, no join.

Usage: polars_load.py DATA_DIR

A second floor beside duckdb_load.py: Polars' multi-threaded CSV reader
loading every column as a string, the least any dataframe job over these
files must do before it can match anything.
"""
import sys, polars as pl

data = sys.argv[1]
c = pl.read_csv(f"{data}/client.csv", infer_schema=False)
g = pl.read_csv(f"{data}/gateway.csv", infer_schema=False)
print(c.height, g.height, file=sys.stderr)
