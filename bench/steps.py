"""One benchmark step per process (so peak RSS is per step). Prints one JSON line."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def make_extract(path: str, rows: str) -> dict:
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pacsv

    n = int(rows)
    rng = np.random.default_rng(42)
    start = np.datetime64("2025-01-01T00:00:00")
    ts = start + rng.integers(0, 365 * 86400, n).astype("timedelta64[s]")
    table = pa.table(
        {
            "user_id": pa.array(np.char.add("U", rng.integers(0, n // 30 + 1, n).astype(str))),
            "event_time": pa.array(np.datetime_as_string(np.sort(ts), unit="s")),
            "event_name": pa.array(rng.choice(["home", "pricing", "login", "checkout", "help_page"], n)),
            "session": pa.array(np.char.add("s", rng.integers(0, n // 5 + 1, n).astype(str))),
            "device": pa.array(rng.choice(["web", "ios", "android"], n)),
        }
    )
    t0 = time.perf_counter()
    pacsv.write_csv(table, path)
    return {"step": "make extract", "size": n, "rows": n, "seconds": time.perf_counter() - t0,
            "bytes": Path(path).stat().st_size}


def ingest(path: str, url: str) -> dict:
    from cxdash.ingest import ingest_file
    from cxdash.mapping import Mapping
    from cxdash.store import open_store

    store = open_store(url)
    mapping = Mapping("events", {"customer_id": "user_id", "timestamp": "event_time", "activity": "event_name",
                                 "case_id": "session", "channel": "device"})
    t0 = time.perf_counter()
    result = ingest_file(store, path, source="bench", mapping=mapping, chunk_rows=500_000)
    return {"step": "cxdash ingest", "size": result.rows_read, "rows": result.rows_loaded,
            "seconds": time.perf_counter() - t0}


def duckdb_read_csv(path: str, db: str) -> dict:
    import duckdb

    con = duckdb.connect(db)
    t0 = time.perf_counter()
    con.execute("CREATE TABLE t AS SELECT * FROM read_csv(?, header = true)", [path])
    rows = con.execute("SELECT count(*) FROM t").fetchone()[0]
    con.close()
    return {"step": "duckdb read_csv", "size": rows, "rows": rows, "seconds": time.perf_counter() - t0}


def demo(n: str, url: str, out: str) -> dict:
    from cxdash.demo import build_demo
    from cxdash.store import open_store

    store = open_store(url)
    t0 = time.perf_counter()
    summary = build_demo(store, n_customers=int(n), seed=7, out_dir=Path(out))
    return {"step": "demo generate + load", "size": int(n), "rows": summary["rows"],
            "seconds": time.perf_counter() - t0, "generate_seconds": summary["generate_seconds"],
            "load_seconds": summary["load_seconds"]}


STEPS = {"make-extract": make_extract, "ingest": ingest, "duckdb-read-csv": duckdb_read_csv, "demo": demo}

if __name__ == "__main__":
    result = STEPS[sys.argv[1]](*sys.argv[2:])
    print(json.dumps(result))
