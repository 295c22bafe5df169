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
    return {
        "step": "make extract",
        "size": n,
        "rows": n,
        "seconds": time.perf_counter() - t0,
        "bytes": Path(path).stat().st_size,
    }


def ingest(path: str, url: str) -> dict:
    from cxdash.ingest.load import ingest_file
    from cxdash.ingest.mapping import Mapping
    from cxdash.store.database import open_store

    store = open_store(url)
    mapping = Mapping(
        "events",
        {
            "customer_id": "user_id",
            "timestamp": "event_time",
            "activity": "event_name",
            "case_id": "session",
            "channel": "device",
        },
    )
    t0 = time.perf_counter()
    # the command's own chunking (ingest.load.CHUNK_ROWS), as a user's load runs
    result = ingest_file(store, path, source="bench", mapping=mapping)
    return {
        "step": "cxdash ingest",
        "size": result.rows_read,
        "rows": result.rows_loaded,
        "seconds": time.perf_counter() - t0,
    }


def duckdb_read_csv(path: str, db: str) -> dict:
    import duckdb

    con = duckdb.connect(db)
    t0 = time.perf_counter()
    con.execute("CREATE TABLE t AS SELECT * FROM read_csv(?, header = true)", [path])
    rows = con.execute("SELECT count(*) FROM t").fetchone()[0]
    con.close()
    return {"step": "duckdb read_csv", "size": rows, "rows": rows, "seconds": time.perf_counter() - t0}


def demo(n: str, url: str, out: str) -> dict:
    from bench.memory import PhaseSampler
    from cxdash.demo.build import build_demo
    from cxdash.store.database import open_store

    store = open_store(url)
    t0 = time.perf_counter()
    with PhaseSampler() as sampler:
        summary = build_demo(store, n_customers=int(n), seed=7, out_dir=Path(out), phase=sampler.phase)
    return {
        "step": "demo generate + load",
        "size": int(n),
        "rows": summary["rows"],
        "seconds": time.perf_counter() - t0,
        "generate_seconds": summary["generate_seconds"],
        "load_seconds": summary["load_seconds"],
        "summary_seconds": summary["summary_seconds"],
        "summaries": summary["summaries"],
        "phases": sampler.grouped(),
        "phase_detail": sampler.phases,
    }


def train(url: str) -> dict:
    """Train the churn model the way the model page does (time-based validation, 30-day horizon) and
    score every customer, so the at-risk and card pages have something to show."""
    from cxdash.risk import training
    from cxdash.store.database import open_store

    store = open_store(url)
    t0 = time.perf_counter()
    trained = training.train(store)
    return {"step": "model train + score", "seconds": time.perf_counter() - t0, "version": trained.version}


def page_compute(url: str, page: str) -> dict:
    """Each computation of one page, cold (first call in a fresh process) then warm (second call)."""
    from bench.pages import PAGES
    from cxdash.store.database import open_store

    store = open_store(url)
    calls = PAGES[page]()
    out: dict = {"step": f"compute {page}", "page": page, "calls": {}}
    for phase in ("cold", "warm"):
        total = 0.0
        for label, fn in calls:
            t0 = time.perf_counter()
            try:
                fn(store)
                took = time.perf_counter() - t0
            except Exception as exc:  # noqa: BLE001 - a page's failure is a result to report, not a reason to stop the run
                took = time.perf_counter() - t0
                out.setdefault("errors", {})[label] = f"{type(exc).__name__}: {exc}"[:300]
            out["calls"].setdefault(label, {})[phase] = round(took, 3)
            total += took
        out[f"{phase}_seconds"] = round(total, 3)
    out["seconds"] = out["cold_seconds"]
    return out


def apptest(url: str, page: str) -> dict:
    """The Streamlit rerun of one page headless: first run with empty caches, then a rerun."""
    import os
    import warnings

    os.environ["CXDASH_DB_URL"] = url
    os.environ["CXDASH_AUTH"] = "off"  # time the page, not the sign-in form (a session check is negligible)
    warnings.simplefilter("ignore")
    from streamlit.testing.v1 import AppTest

    # import the UI layer first: a running server has done so before the first visitor arrives
    import cxdash.ui.executive
    import cxdash.ui.journeys
    import cxdash.ui.ops
    import cxdash.ui.risk  # noqa: F401

    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "pages" / f"{page}.py"), default_timeout=1800)
    t0 = time.perf_counter()
    at.run()
    cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    at.run()
    warm = time.perf_counter() - t0
    errors = [str(e.value)[:300] for e in at.exception]  # st.error callouts are content, not failures
    return {
        "step": f"apptest {page}",
        "page": page,
        "seconds": cold,
        "cold_seconds": round(cold, 3),
        "warm_seconds": round(warm, 3),
        "errors": errors or None,
    }


PM4PY_KEYS = {"case_key": "case:concept:name", "activity_key": "concept:name", "timestamp_key": "time:timestamp"}


def _event_log(n: int):
    """A synthetic event log of ``n`` events (about 40 per case, 25 activities), the same for a seed."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(8)
    cases = rng.integers(0, max(n // 40, 1), n)
    acts = np.array([f"activity_{i:02d}" for i in range(25)])
    ts = np.datetime64("2025-01-01T00:00:00") + rng.integers(0, 365 * 86400, n).astype("timedelta64[s]")
    return pd.DataFrame(
        {
            "case:concept:name": pd.array(np.char.add("C", cases.astype(str)), dtype="string"),
            "concept:name": pd.array(acts[rng.zipf(1.6, n) % len(acts)], dtype="string"),
            "time:timestamp": pd.to_datetime(ts),
        }
    )


def _timed(fn):
    """``fn()``'s result, wall seconds and CPU seconds of this process (all its threads): on a
    shared machine the CPU time shows the work done even when the wall clock waits for a core."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t0, time.process_time() - c0


def dfg_ours(n: str, db: str) -> dict:
    """cxdash's directly-follows graph in the database on an ``n``-event log (loading not timed):
    the full graph the journeys page shows (counts, customers, median, p90, mean) and the counts
    alone (what pm4py's ``discover_dfg`` computes)."""
    import sqlalchemy as sa

    from cxdash import journeys as jr

    frame = _event_log(int(n))
    engine = sa.create_engine(f"duckdb:///{db}")
    with engine.begin() as conn:
        table = jr.event_log_table(conn, frame, "bench_log")
    del frame
    with engine.connect() as conn:
        dfg, took, cpu = _timed(lambda: jr.discover_dfg(conn, table, **PM4PY_KEYS))
        counts, counts_took, counts_cpu = _timed(lambda: jr.dfg_counts(conn, table, **PM4PY_KEYS))
        # the first query also reads the table into DuckDB's buffers; a rerun shows the query alone
        _, warm, _ = _timed(lambda: jr.discover_dfg(conn, table, **PM4PY_KEYS))
    if counts["count"].tolist() != dfg["count"].tolist():
        raise RuntimeError("the counts-only graph differs from the full graph: the timing compares different work")
    return {
        "step": "DFG cxdash (SQL)",
        "size": int(n),
        "rows": int(n),
        "seconds": took,
        "cpu_seconds": cpu,
        "warm_seconds": warm,
        "counts_seconds": counts_took,
        "counts_cpu_seconds": counts_cpu,
        "edges": len(dfg),
        "transitions": int(dfg["count"].sum()),
    }


def dfg_pm4py(n: str) -> dict:
    """pm4py's ``discover_dfg`` on the same log as a pandas frame (counts only: less than ours computes)."""
    import warnings

    warnings.simplefilter("ignore")
    import pm4py

    frame = _event_log(int(n)).sort_values(["case:concept:name", "time:timestamp"], kind="stable")
    frame["case:concept:name"] = frame["case:concept:name"].astype(str)
    frame["concept:name"] = frame["concept:name"].astype(str)
    (dfg, _, _), took, cpu = _timed(
        lambda: pm4py.discover_dfg(
            frame,
            case_id_key=PM4PY_KEYS["case_key"],
            activity_key=PM4PY_KEYS["activity_key"],
            timestamp_key=PM4PY_KEYS["timestamp_key"],
        )
    )
    return {
        "step": "DFG pm4py",
        "size": int(n),
        "rows": int(n),
        "seconds": took,
        "cpu_seconds": cpu,
        "edges": len(dfg),
        "transitions": int(sum(dfg.values())),
    }


from bench.latency import append_latency, cli_startup, ingest_cli, ingest_stages  # noqa: E402
from bench.spark import dfg_spark, kpis_spark  # noqa: E402

STEPS = {
    "cli-startup": cli_startup,
    "ingest-cli": ingest_cli,
    "ingest-stages": ingest_stages,
    "append-latency": append_latency,
    "make-extract": make_extract,
    "ingest": ingest,
    "duckdb-read-csv": duckdb_read_csv,
    "demo": demo,
    "train": train,
    "page-compute": page_compute,
    "apptest": apptest,
    "dfg-ours": dfg_ours,
    "dfg-pm4py": dfg_pm4py,
    "dfg-spark": dfg_spark,
    "kpis-spark": kpis_spark,
}

if __name__ == "__main__":
    import resource

    result = STEPS[sys.argv[1]](*sys.argv[2:])
    # this process's own high-water mark, or that of the command it ran (the CLI steps); Linux reports KiB
    peak = max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    result["peak_rss_mb"] = round(peak / 1024, 1)
    print(json.dumps(result, default=str))
