"""The Spark column of `make bench` (bench/spark.py): "not run" without a server, ratios from the two
measured times, and the Spark URL kept away from the bench's DuckDB steps. No Spark needed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from bench import spark as bench_spark

REPO = Path(__file__).resolve().parents[1]


def _results(url: str | None) -> dict:
    """bench.run's results shape with made-up times: DuckDB 2.5 s and Spark 40 s for the graph,
    DuckDB 3.0 s and Spark 96 s for the KPI view (parts 1.0 / 30.0 and 2.0 / 66.0)."""
    return {
        "spark": {"url": url},
        "dfg": {
            "events": 2_000_000,
            "steps": [
                {"step": "DFG cxdash (SQL)", "seconds": 2.5, "edges": 625, "transitions": 1_950_000},
                {"step": "DFG Spark", "seconds": 40.0, "copy_seconds": 12.0, "edges": 625, "transitions": 1_950_000},
            ],
        },
        "sizes": [
            {
                "customers": 10_000,
                "views": {
                    "kpis": {
                        "cold_seconds": 3.0,
                        "cold_parts": {"KPI report": 1.0, "  of which RFM query (both ends)": 0.2, "cohorts": 2.0},
                    }
                },
                "spark_kpis": {
                    "step": "Shared KPIs view Spark",
                    "seconds": 96.0,
                    "copy_seconds": 20.0,
                    "parts": {"KPI report": 30.0, "cohorts": 66.0},
                },
            }
        ],
    }


def test_without_a_server_the_column_says_not_run():
    for url in (None, ""):
        rows = bench_spark.column(_results(url))
        assert [r["ratio"] for r in rows] == [bench_spark.NOT_RUN]
        assert "scripts/with_spark.sh" in rows[0]["ratio"]
        assert rows[0]["spark_s"] is None and rows[0]["duckdb_s"] is None


def test_the_ratio_is_spark_seconds_over_duckdb_seconds_of_the_same_run():
    rows = {(r["measure"], r["size"]): r for r in bench_spark.column(_results("sparkthrift://x@h:1/default"))}
    graph = rows[("journey graph (discover_dfg)", "2M ev")]
    assert (graph["spark_s"], graph["duckdb_s"], graph["ratio"]) == (40.0, 2.5, 16.0)
    assert graph["same_result"] is True
    view = rows[("Shared KPIs live view", 10_000)]
    assert (view["spark_s"], view["duckdb_s"], view["ratio"]) == (96.0, 3.0, 32.0)
    assert rows[("  KPI report", 10_000)]["ratio"] == 30.0
    assert rows[("  cohorts", 10_000)]["ratio"] == 33.0
    # copies have no DuckDB counterpart: seconds, no ratio
    copy = rows[("event log copy into Spark", "2M ev")]
    assert (copy["spark_s"], copy["duckdb_s"], copy["ratio"]) == (12.0, None, None)
    assert rows[("analytical tables copy into Spark", 10_000)]["spark_s"] == 20.0


def test_a_changed_time_changes_the_ratio_and_a_differing_graph_is_flagged():
    results = _results("sparkthrift://x@h:1/default")
    results["dfg"]["steps"][0]["seconds"] = 5.0
    results["dfg"]["steps"][1]["transitions"] = 1
    graph = next(r for r in bench_spark.column(results) if r["measure"].startswith("journey graph"))
    assert graph["ratio"] == 8.0
    assert graph["same_result"] is False


def test_a_failed_or_missing_measure_is_reported_not_divided():
    results = _results("sparkthrift://x@h:1/default")
    results["dfg"]["steps"][1] = {"step": "dfg-spark 2000000", "failed": ["OutOfMemoryError"], "seconds": None}
    results["sizes"][0]["views"]["kpis"] = {"step": "kpis", "failed": "boom"}
    rows = bench_spark.column(results)
    assert rows[0]["ratio"].startswith("FAILED") and "OutOfMemoryError" in rows[0]["ratio"]
    view = next(r for r in rows if r["measure"] == "Shared KPIs live view")
    assert view["spark_s"] == 96.0 and view["duckdb_s"] is None and view["ratio"] is None
    assert bench_spark.ratio(None, 2.0) is None and bench_spark.ratio(3.0, 0) is None


def test_the_spark_url_is_moved_out_of_the_analytics_variable():
    env = {"CXDASH_ANALYTICS_URL": "sparkthrift://cxdash@127.0.0.1:1/default"}
    assert bench_spark.take_spark_url(env) == "sparkthrift://cxdash@127.0.0.1:1/default"
    assert "CXDASH_ANALYTICS_URL" not in env  # the DuckDB steps open whole stores
    other = {"CXDASH_ANALYTICS_URL": "duckdb:///elsewhere.duckdb"}
    assert bench_spark.take_spark_url(other) is None
    assert other["CXDASH_ANALYTICS_URL"] == "duckdb:///elsewhere.duckdb"  # not ours to move


def test_a_bench_run_without_spark_writes_not_run(tmp_path):
    """The bench's own entry point with nothing to run but the report: the column is "not run"."""
    out = tmp_path / "results.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CXDASH_ANALYTICS", "CXDASH_BENCH"))}
    proc = subprocess.run(
        [sys.executable, "-m", "bench.run", "--sizes", "", "--spark-only", "--dfg-events", "0", "--out", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert bench_spark.NOT_RUN in proc.stdout
    saved = json.loads(out.read_text())
    assert saved["spark_column"][0]["ratio"] == bench_spark.NOT_RUN
    assert saved["spark"] == {"url": None}
