"""Spark SQL parity: the KPI, journey, churn-feature and customer-card reads give on a Spark-backed
store what they give on DuckDB over the same company.

A small demo company is built in DuckDB, its analytical tables are copied into a fresh Spark
database with ``insert_via_parquet``, and a store is opened the way the app opens one with
``CXDASH_ANALYTICS_URL`` set: analytical tables on Spark, app state on the DuckDB file. Each read
then runs once on each store and the results are compared (rows sorted, floats to 1e-6).

Runs under ``make test-spark`` (``scripts/with_spark.sh``); skips when no Spark Thrift server is
given. Spark costs seconds per query whatever the size, so the company is small and each function
runs once.
"""

from __future__ import annotations

import dataclasses
import os
import uuid
from datetime import timedelta

import pandas as pd
import pytest
import sqlalchemy as sa

from cxdash import journeys as jr
from cxdash import metrics
from cxdash.demo.build import build_demo
from cxdash.jobs import open_store
from cxdash.metrics.timeline import timeline
from cxdash.risk import customer_features, data_as_of
from cxdash.risk.card import customer_summary
from cxdash.store import ANALYTICS, read_frame
from cxdash.store.database import make_engine
from tests.test_parity import _plain, assert_same_frame, assert_same_mapping

pytestmark = [pytest.mark.spark, pytest.mark.slow]

SPARK_URL = os.environ.get("CXDASH_SPARK_TEST_URL", "")
N_CUSTOMERS, SEED = 200, 5
PAGE_SPEC = jr.LogSpec(department_key="department", top_n=15, collapse_repeats=True)


def copy_analytics(duck_conn, spark_conn, staging_dir: str) -> int:
    """Copy every analytical table's rows from a DuckDB store into a Spark store whose schema
    exists; the rows copied."""
    from cxdash.store.spark import insert_via_parquet

    copied = 0
    for table in ANALYTICS.sorted_tables:
        frame = read_frame(duck_conn, sa.select(table))
        if len(frame):
            copied += insert_via_parquet(spark_conn, table, frame, staging_dir)
    return copied


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """(DuckDB store, Spark-backed store) holding the same company; app state on one DuckDB file."""
    if not SPARK_URL.startswith("sparkthrift://"):
        pytest.skip("no Spark Thrift server (run under scripts/with_spark.sh: make test-spark)")
    root = tmp_path_factory.mktemp("spark_parity")
    duck_url = f"duckdb:///{root / 'company.duckdb'}"
    duck = open_store(duck_url, duck_url)
    build_demo(duck, n_customers=N_CUSTOMERS, seed=SEED, out_dir=root / "extracts")

    # a fresh Spark database per run, so a server kept between runs starts empty
    name = f"cxdash_parity_{uuid.uuid4().hex[:8]}"
    admin = make_engine(SPARK_URL)
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    spark_url = sa.engine.make_url(SPARK_URL).set(database=name).render_as_string(hide_password=False)
    spark = open_store(spark_url, duck_url)  # analytical tables on Spark, app state on the DuckDB file
    staging = os.environ.get("CXDASH_SPARK_STAGING") or str(root / "staging")
    with duck.connect() as src, spark.begin() as dst:
        assert copy_analytics(src, dst, staging) > 10_000
    yield duck, spark
    spark.dispose()
    duck.dispose()
    with admin.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} CASCADE")
    admin.dispose()


def _both(stores, fn):
    out = []
    for store in stores:
        with store.connect() as conn:
            out.append(fn(conn))
    return out


def test_the_spark_store_is_spark_and_keeps_app_state_apart(stores):
    duck, spark = stores
    assert spark.engine.dialect.name == "sparkthrift"
    assert spark.app_engine.dialect.name == "duckdb"
    assert duck.engine is duck.app_engine
    with spark.connect() as conn:
        tables = set(sa.inspect(conn).get_table_names())
    assert {"src_events", "identity_map", "customer_keys", "loads"} <= tables
    assert "users" not in tables and "audit_log" not in tables  # app state is not on Spark


def test_equal_timestamp_events_are_in_the_compared_data(stores):
    """The comparison covers steps of one customer logged at the same instant (ordered by the
    files' order, not by time): the company holds some."""
    tl = timeline(("cx_key", "ts"))
    q = sa.select(sa.func.count()).select_from(
        sa.select(tl.c.cx_key, tl.c.ts).group_by(tl.c.cx_key, tl.c.ts).having(sa.func.count() > 1).subquery()
    )
    duck, spark = _both(stores, lambda c: c.execute(q).scalar())
    assert duck > 0
    assert duck == spark


# ----------------------------------------------------------------------------- KPIs


def test_headline_and_kpi_report(stores):
    duck, spark = _both(stores, metrics.headline)
    assert duck.customers == N_CUSTOMERS
    assert_same_mapping(dataclasses.asdict(duck), dataclasses.asdict(spark), "headline")

    def report(conn):
        return metrics.kpi_report(conn, metrics.default_period(metrics.as_of(conn)), metrics.Filters(), with_clv=False)

    duck, spark = _both(stores, report)
    assert duck.churn_basis == spark.churn_basis and duck.as_of == spark.as_of
    assert sum(v is not None for v in duck.current.values()) >= 5
    for part in ("current", "previous", "coverage"):
        assert_same_mapping(getattr(duck, part), getattr(spark, part), f"kpi_report.{part}")


def test_kpi_table_cohorts_and_conflicts(stores):
    def table(conn):
        return metrics.kpi_table(
            conn, metrics.monthly_periods(metrics.as_of(conn), 3), metrics.Filters(), repeat_days=7
        )

    duck, spark = _both(stores, table)
    assert len(duck) == 3
    assert_same_frame(duck, spark, "kpi_table")
    duck, spark = _both(stores, lambda c: metrics.cohort_retention(c, metrics.Filters()))
    assert len(duck)
    assert_same_frame(duck, spark, "cohort_retention")
    duck, spark = _both(stores, lambda c: metrics.conflicts(c, metrics.Filters(), repeat_days=7))
    assert len(duck)
    assert_same_frame(duck, spark, "conflicts")


# ----------------------------------------------------------------------------- journeys


def test_journey_graph_variants_and_handoffs(stores):
    duck, spark = _both(stores, lambda c: jr.discover_dfg(c, jr.journey_log(), PAGE_SPEC, min_share=0.005))
    assert duck["count"].sum() > 500
    assert_same_frame(duck, spark, "discover_dfg")
    duck, spark = _both(
        stores,
        lambda c: jr.discover_variants(
            c, jr.journey_log(), PAGE_SPEC, outcomes=jr.customer_outcomes(c), max_steps=5, limit=1000
        ),
    )
    assert len(duck) > 5
    assert_same_frame(duck, spark, "discover_variants")
    duck, spark = _both(stores, lambda c: jr.discover_handoffs(c, jr.journey_log(), department_key="department"))
    assert len(duck)
    assert_same_frame(duck, spark, "discover_handoffs")


def test_funnel(stores):
    duck, _ = stores
    with duck.connect() as conn:
        top = jr.activity_counts(conn, jr.journey_log(), PAGE_SPEC)
    steps = [str(a) for a in top.sort_values("count", ascending=False)["activity"].head(3)]
    duck, spark = _both(stores, lambda c: jr.funnel(c, jr.journey_log(), steps, spec=PAGE_SPEC))
    assert int(duck.iloc[0]["customers"]) > 10
    assert_same_frame(duck, spark, "funnel")


def test_hotspots_and_friction_moments(stores):
    duck, spark = _both(stores, lambda c: jr.hotspots(c, repeat_days=7))
    assert len(duck) >= 3
    assert_same_frame(duck, spark, "hotspots")
    moments = jr.friction_moments(repeat_days=7)
    duck, spark = _both(stores, lambda c: read_frame(c, sa.select(moments)))
    assert len(duck) > 10
    assert_same_frame(duck, spark, "friction_moments")


# ----------------------------------------------------------------------------- churn features, the card


def test_churn_features(stores):
    def features(conn):
        return customer_features(conn, cutoff=data_as_of(conn) - timedelta(days=60), horizon_days=30)

    duck, spark = _both(stores, features)
    assert duck.numeric == spark.numeric and duck.categorical == spark.categorical
    assert len(duck.frame) > N_CUSTOMERS / 3
    assert_same_frame(duck.frame.sort_index(), spark.frame.sort_index(), "customer_features")


def _plain_tree(value):
    if isinstance(value, dict):
        return {k: _plain_tree(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain_tree(v) for v in value]
    if isinstance(value, pd.DataFrame):
        return _plain_tree(value.to_dict("records"))
    plain = _plain(value)
    return round(plain, 6) if isinstance(plain, float) else plain


def test_customer_card(stores):
    duck, spark = stores
    with duck.connect() as conn:
        moments = read_frame(conn, sa.select(jr.friction_moments(repeat_days=7)))
        cx_key = int(moments["cx_key"].value_counts().index[0])
        names = jr.case_names()
        cx_id = conn.execute(sa.select(names.c.name).where(names.c.case_id == cx_key)).scalar()
    d, s = (customer_summary(store, cx_id) for store in (duck, spark))
    assert d["customer_id"] and d["signals"]
    assert _plain_tree(d) == _plain_tree(s)
