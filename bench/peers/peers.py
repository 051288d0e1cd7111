"""The issue-12 bench cases on Daft and DuckDB (`npm run bench:peers` runs this, then fanout's side).

Usage: python3 peers.py FILE [OUT_DIR]. Prints one JSON object per line:
{"engine": ..., "version": ..., "case": ..., "ms": median, "cpu_ms": median, "runs": [...]} or {"engine": ..., "skipped": why},
and for the write case {"engine": ..., "written": {...}}: what the engine wrote (files, bytes, row groups, each column's
encodings and compression), so that the write is compared on comparable files.
Each case is materialized to Arrow (or written), warmed up BENCH_WARMUP times (default 1), then timed BENCH_REPEAT times (default 3).
cpu_ms is the process's CPU time (user + system, all threads) per run: under load, wall times measure the neighbours.
Engines that are not installed are skipped with a message; nothing here is part of `npm test`.
"""

import glob
import json
import os
import resource
import shutil
import statistics
import sys
import time

FILE = sys.argv[1]
OUT = sys.argv[2] if len(sys.argv) > 2 else "/tmp/fanout-peers-out"
REPEAT = int(os.environ.get("BENCH_REPEAT", "3"))
WARMUP = int(os.environ.get("BENCH_WARMUP", "1"))
ONLY = set(filter(None, os.environ.get("PEERS_ENGINES", "duckdb,daft").split(",")))


def emit(obj):
    print(json.dumps(obj), flush=True)


def cpu_ms():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return (r.ru_utime + r.ru_stime) * 1000


def timed(engine, version, case, fn):
    for _ in range(WARMUP):
        fn()
    runs = []
    cpu = []
    for _ in range(REPEAT):
        c0 = cpu_ms()
        t0 = time.perf_counter()
        fn()
        runs.append((time.perf_counter() - t0) * 1000)
        cpu.append(cpu_ms() - c0)
    emit({"engine": engine, "version": version, "case": case, "ms": statistics.median(runs), "cpu_ms": statistics.median(cpu), "runs": runs})


def describe_written(engine, path):
    """Files, bytes, row groups, and each column's encodings and compression of what an engine wrote under `path`."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        return
    files = sorted(glob.glob(os.path.join(path, "**", "*.parquet"), recursive=True))
    columns = {}
    row_groups = 0
    for f in files:
        md = pq.ParquetFile(f).metadata
        row_groups += md.num_row_groups
        for g in range(md.num_row_groups):
            for c in range(md.num_columns):
                cc = md.row_group(g).column(c)
                e = columns.setdefault(cc.path_in_schema, {"encodings": [], "compression": cc.compression})
                for enc in cc.encodings:
                    if enc not in e["encodings"]:
                        e["encodings"].append(enc)
    emit({"engine": engine, "written": {"files": len(files), "bytes": sum(os.path.getsize(f) for f in files), "row_groups": row_groups, "columns": columns}})


def fresh_out(name):
    path = os.path.join(OUT, name)
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path, exist_ok=True)
    return path


def duck_table(rel):
    """Materialize a DuckDB relation as a pyarrow Table.

    In DuckDB 2.0 `.arrow()` returns a lazy RecordBatchReader: timing it measures nothing (4-9 ms for
    the whole file). `to_arrow_table()` (1.1+) reads every row; older versions spell it
    `fetch_arrow_table()`, or `.arrow()` already returns a Table.
    """
    for name in ("to_arrow_table", "fetch_arrow_table"):
        fn = getattr(rel, name, None)
        if fn is not None:
            return fn()
    res = rel.arrow()
    return res.read_all() if hasattr(res, "read_all") else res


def bench_duckdb():
    try:
        import duckdb
    except ImportError as e:
        emit({"engine": "duckdb", "skipped": f"duckdb is not installed ({e}); pip install duckdb pyarrow"})
        return
    v = duckdb.__version__
    con = duckdb.connect()
    src = f"read_parquet('{FILE}')"
    timed("duckdb", v, "scan all columns", lambda: duck_table(con.sql(f"SELECT * FROM {src}")))
    timed("duckdb", v, "scan 2 columns", lambda: duck_table(con.sql(f"SELECT id, x FROM {src}")))
    timed("duckdb", v, "filter x > 0.5, project x*2+1", lambda: duck_table(con.sql(f"SELECT id, x * 2 + 1 AS y FROM {src} WHERE x > 0.5")))
    timed("duckdb", v, "limit 1", lambda: duck_table(con.sql(f"SELECT * FROM {src} LIMIT 1")))

    def write():
        out = fresh_out("duckdb")
        con.sql(f"COPY (SELECT id, x * 2 + 1 AS y FROM {src}) TO '{out}/part.parquet' (FORMAT parquet, COMPRESSION snappy)")

    timed("duckdb", v, "read -> x*2+1 -> write", write)
    describe_written("duckdb", os.path.join(OUT, "duckdb"))
    emit({"engine": "duckdb", "case": "batch UDF x*2+1", "skipped": "no batch UDF in DuckDB's SQL (the issue's table has none)"})
    emit({"engine": "duckdb", "case": "row-wise UDF x*2+1", "skipped": "not measured (the issue's table has none)"})


def bench_daft():
    try:
        import daft
        import pyarrow.compute as pc
    except ImportError as e:
        emit({"engine": "daft", "skipped": f"daft is not installed ({e}); pip install daft pyarrow"})
        return
    v = daft.__version__
    col = daft.col

    @daft.func.batch(return_dtype=daft.DataType.float64())
    def batch_udf(x: daft.Series) -> daft.Series:
        return daft.Series.from_arrow(pc.add(pc.multiply(x.to_arrow(), 2.0), 1.0))

    @daft.func
    def row_udf(x: float) -> float:
        return x * 2 + 1

    rd = lambda: daft.read_parquet(FILE)  # noqa: E731
    timed("daft", v, "scan all columns", lambda: rd().to_arrow())
    timed("daft", v, "scan 2 columns", lambda: rd().select("id", "x").to_arrow())
    timed("daft", v, "filter x > 0.5, project x*2+1", lambda: rd().where(col("x") > 0.5).select(col("id"), (col("x") * 2 + 1).alias("y")).to_arrow())
    timed("daft", v, "batch UDF x*2+1", lambda: rd().select(batch_udf(col("x")).alias("y")).to_arrow())
    timed("daft", v, "row-wise UDF x*2+1", lambda: rd().select(row_udf(col("x")).alias("y")).to_arrow())
    timed("daft", v, "limit 1", lambda: rd().limit(1).to_arrow())

    def write():
        out = fresh_out("daft")
        rd().select(col("id"), batch_udf(col("x")).alias("y")).write_parquet(out)

    timed("daft", v, "read -> x*2+1 -> write", write)
    describe_written("daft", os.path.join(OUT, "daft"))


if "duckdb" in ONLY:
    bench_duckdb()
if "daft" in ONLY:
    try:
        bench_daft()
    except Exception as e:  # a Daft API change must not hide the DuckDB numbers
        emit({"engine": "daft", "skipped": f"failed: {type(e).__name__}: {e}"})
