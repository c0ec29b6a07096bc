"""DuckDB's side of `klaxon bench`'s lake-scaling section: runs the same SQL
klaxon runs over the same lake and prints, per query, the result and the time
of each run, as JSON.

usage: duckdb_queries.py LAKE_DIR RUNS < queries.json   (a JSON list of SQL)

Each run opens a new connection, so nothing is cached between runs (DuckDB's
Parquet metadata cache is off by default), as each klaxon run opens a new
session. `metrics` in the SQL becomes a `read_parquet` of the lake's files,
hive-partitioned and with the columns of every file (tag columns come and go
between files), as klaxon reads it; inline rather than a view, whose
creation would read every footer once more.
"""

import json
import sys
import time

import duckdb

lake, runs = sys.argv[1], int(sys.argv[2])
queries = json.load(sys.stdin)
files = f"{lake}/metrics/*/*/*.parquet".replace("'", "''")
table = f"read_parquet('{files}', hive_partitioning = true, union_by_name = true)"
results = []
for sql in queries:
    times_ms = []
    rows = None
    for _ in range(runs):
        started = time.perf_counter()
        con = duckdb.connect()
        con.execute("SET TimeZone = 'UTC'")
        rows = con.execute(sql.replace("FROM metrics", f"FROM {table}")).fetchall()
        times_ms.append((time.perf_counter() - started) * 1e3)
        con.close()
    results.append({"rows": [list(row) for row in rows], "times_ms": times_ms})
json.dump(results, sys.stdout)
