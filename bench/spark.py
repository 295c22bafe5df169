"""The Spark column of `make bench` (issue 18): the journey graph and one live Shared KPIs view on
an Apache Spark SQL Thrift server, against DuckDB's time for the same work in the same run.

Runs when the bench is started under ``scripts/with_spark.sh`` (``make bench-spark``), which
exports ``CXDASH_ANALYTICS_URL=sparkthrift://...``. The bench moves that URL to
``CXDASH_BENCH_SPARK_URL`` at start (``take_spark_url``), so every DuckDB step keeps its
analytical tables in its own file; only the steps here use the server. Without a server the
column says so (``NOT_RUN``) instead of showing blanks or zeros.

Two steps, each in its own process and in a fresh Spark database (dropped afterwards):

* ``dfg-spark N``: the same synthetic N-event log as ``dfg-ours`` (``bench.steps._event_log``),
  copied into a Parquet table with ``insert_via_parquet`` (the copy is timed: pandas to Arrow,
  Parquet file, one ``INSERT ... SELECT``), then ``journeys.discover_dfg`` on it, once.
* ``kpis-spark DUCKDB_URL``: the analytical tables of a demo store (``ANALYTICS``: source rows,
  identity, customer keys, loads, summaries...) copied into Spark (schema creation and copy timed
  apart), then the Shared KPIs view ``bench.views`` measures (another period than the stored
  default and one segment filter: not precomputed) computed live on Spark, part by part, once.

The ratio is Spark's seconds over DuckDB's (how many times longer Spark takes), from the two
measured times of the same run: DuckDB's first (cold) run of the same call, since Spark's single
run is a first run too.
"""

from __future__ import annotations

import os
import time
import uuid
from contextlib import contextmanager

SPARK_ENV = "CXDASH_BENCH_SPARK_URL"
NOT_RUN = "not run (no Spark server: run under scripts/with_spark.sh)"


def take_spark_url(environ=os.environ) -> str | None:
    """Move a ``sparkthrift://`` ``CXDASH_ANALYTICS_URL`` (exported by ``with_spark.sh``) to
    ``CXDASH_BENCH_SPARK_URL``, so the bench's DuckDB stores stay whole; the Spark URL, or None."""
    url = environ.get("CXDASH_ANALYTICS_URL", "")
    if url.startswith("sparkthrift://"):
        environ[SPARK_ENV] = environ.pop("CXDASH_ANALYTICS_URL")
    found = environ.get(SPARK_ENV, "")
    return found if found.startswith("sparkthrift://") else None


# ----------------------------------------------------------------------------- the report


def ratio(spark_seconds: float | None, duckdb_seconds: float | None) -> float | None:
    """Spark's time over DuckDB's, or None when either was not measured."""
    if not spark_seconds or not duckdb_seconds:
        return None
    return round(spark_seconds / duckdb_seconds, 1)


def column(results: dict) -> list[dict]:
    """The Spark column: one row per measure (copy, journey graph, KPI view), each with Spark's
    seconds, DuckDB's seconds in the same run and the ratio; ``NOT_RUN`` rows without a server.

    ``results`` is bench.run's results: ``results["spark"]`` is ``{"url": ...}`` when a server was
    given (else absent or ``{"url": None}``), ``results["dfg"]["steps"]`` holds the ``dfg-ours`` and
    ``dfg-spark`` steps, and each ``results["sizes"][i]`` holds ``views`` (DuckDB's ``kpis``) and
    ``spark_kpis``."""
    if not (results.get("spark") or {}).get("url"):
        return [{"measure": "Spark column", "size": None, "spark_s": None, "duckdb_s": None, "ratio": NOT_RUN}]
    rows: list[dict] = []
    dfg = results.get("dfg") or {}
    ours, spark = _dfg_step(dfg, "DFG cxdash (SQL)", "dfg-ours"), _dfg_step(dfg, "DFG Spark", "dfg-spark")
    if dfg:
        size = f"{dfg['events'] / 1e6:g}M ev"
        if spark.get("failed") or not spark:
            rows.append(_failed("journey graph", size, spark))
        else:
            rows.append(_row("event log copy into Spark", size, spark.get("copy_seconds"), None))
            rows.append(_row("journey graph (discover_dfg)", size, spark.get("seconds"), ours.get("seconds")))
            if ours.get("edges") is not None:
                same = (ours.get("edges"), ours.get("transitions")) == (spark.get("edges"), spark.get("transitions"))
                rows[-1]["same_result"] = same
    for sz in results.get("sizes", []):
        n = sz["customers"]
        step = sz.get("spark_kpis") or {}
        duck = (sz.get("views") or {}).get("kpis") or {}
        if step.get("failed") or not step:
            rows.append(_failed("Shared KPIs live view", n, step))
            continue
        rows.append(_row("analytical tables copy into Spark", n, step.get("copy_seconds"), None))
        rows.append(_row("Shared KPIs live view", n, step.get("seconds"), duck.get("cold_seconds")))
        for part, took in (step.get("parts") or {}).items():
            rows.append(_row(f"  {part}", n, took, (duck.get("cold_parts") or {}).get(part)))
    return rows


def _dfg_step(dfg: dict, name: str, command: str) -> dict:
    """The graph step called ``name`` when it ran, or its failure (bench.run names a failed step
    by its command, e.g. ``dfg-spark 10000000``); {} when absent."""
    for s in dfg.get("steps", []):
        if s.get("step") == name or str(s.get("step", "")).startswith(command):
            return s
    return {}


def _row(measure: str, size, spark_s: float | None, duckdb_s: float | None) -> dict:
    return {
        "measure": measure,
        "size": size,
        "spark_s": None if spark_s is None else round(spark_s, 2),
        "duckdb_s": None if duckdb_s is None else round(duckdb_s, 2),
        "ratio": ratio(spark_s, duckdb_s),
    }


def _failed(measure: str, size, step: dict) -> dict:
    why = step.get("failed") if step else "not measured"
    return {"measure": measure, "size": size, "spark_s": None, "duckdb_s": None, "ratio": f"FAILED: {why}"}


def print_column(rows: list[dict]) -> None:
    print(f"\n{'Spark column':<40}{'size':>10}{'Spark s':>10}{'DuckDB s':>10}  Spark / DuckDB")
    for r in rows:
        spark = "" if r["spark_s"] is None else f"{r['spark_s']:.2f}"
        duck = "" if r["duckdb_s"] is None else f"{r['duckdb_s']:.2f}"
        ratio_text = r["ratio"] if isinstance(r["ratio"], str) else ("" if r["ratio"] is None else f"{r['ratio']}x")
        same = "" if "same_result" not in r else ("  (same graph)" if r["same_result"] else "  (GRAPHS DIFFER)")
        print(f"{r['measure']:<40}{r['size'] or '':>10}{spark:>10}{duck:>10}  {ratio_text}{same}")


# ----------------------------------------------------------------------------- steps (own process each)


@contextmanager
def _spark_database():
    """A fresh Spark database on the bench's server: its URL; dropped (CASCADE) afterwards."""
    import sqlalchemy as sa

    from cxdash.store.database import make_engine

    base = os.environ[SPARK_ENV]
    name = f"cxdash_bench_{uuid.uuid4().hex[:8]}"
    admin = make_engine(base)
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    try:
        yield sa.engine.make_url(base).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} CASCADE")
        admin.dispose()


def _staging() -> str:
    staging = os.environ.get("CXDASH_SPARK_STAGING")
    if not staging:
        raise SystemExit("CXDASH_SPARK_STAGING is not set: run under scripts/with_spark.sh")
    return staging


def dfg_spark(n: str) -> dict:
    """The journey graph of ``dfg-ours``'s ``n``-event log on Spark: copy (timed), then
    ``discover_dfg`` once."""
    import sqlalchemy as sa

    from bench.steps import PM4PY_KEYS, _event_log
    from cxdash import journeys as jr
    from cxdash.store.database import make_engine
    from cxdash.store.spark import insert_via_parquet

    frame = _event_log(int(n))
    log = sa.Table(
        "bench_log",
        sa.MetaData(),
        sa.Column("case:concept:name", sa.String),
        sa.Column("concept:name", sa.String),
        sa.Column("time:timestamp", sa.DateTime),
    )
    with _spark_database() as url:
        engine = make_engine(url)
        with engine.connect() as conn:
            log.create(conn)
            t0 = time.perf_counter()
            copied = insert_via_parquet(conn, log, frame, _staging())
            copy_s = time.perf_counter() - t0
            del frame
            t0 = time.perf_counter()
            dfg = jr.discover_dfg(conn, log, **PM4PY_KEYS)
            took = time.perf_counter() - t0
        engine.dispose()
    return {
        "step": "DFG Spark",
        "size": int(n),
        "rows": copied,
        "seconds": took,
        "copy_seconds": copy_s,
        "edges": len(dfg),
        "transitions": int(dfg["count"].sum()),
    }


def kpis_spark(duck_url: str) -> dict:
    """The Shared KPIs live view of ``bench.views`` on Spark, over a copy of ``duck_url``'s
    analytical tables (app state stays on the DuckDB file, as the app runs with
    ``CXDASH_ANALYTICS_URL``)."""
    import sqlalchemy as sa

    from bench.views import kpi_parts, view_parameters
    from cxdash.store import ANALYTICS, read_frame
    from cxdash.store.database import open_store
    from cxdash.store.spark import insert_via_parquet

    duck = open_store(duck_url, duck_url, create=False)
    with duck.connect() as conn:
        p = view_parameters(conn)  # the parameters DuckDB's run used, from the same data
    out: dict = {"step": "Shared KPIs view Spark", "parameters": {k: str(v) for k, v in p.items()}}
    with _spark_database() as url:
        t0 = time.perf_counter()
        spark = open_store(url, duck_url)  # creates the analytical tables on Spark
        out["schema_seconds"] = time.perf_counter() - t0
        rows = 0
        t0 = time.perf_counter()
        with duck.connect() as src, spark.begin() as dst:
            for table in ANALYTICS.sorted_tables:
                frame = read_frame(src, sa.select(table))
                if len(frame):
                    rows += insert_via_parquet(dst, table, frame, _staging())
        out["copy_seconds"] = time.perf_counter() - t0
        out["rows_copied"] = rows
        parts: dict[str, float] = {}
        t0 = time.perf_counter()
        with spark.connect() as conn:
            for label, fn in kpi_parts(conn, p):
                t1 = time.perf_counter()
                fn()
                parts[label] = round(time.perf_counter() - t1, 3)
        out["seconds"] = time.perf_counter() - t0
        out["parts"] = parts
        spark.dispose()
    duck.dispose()
    return out
