"""Spark SQL parity: the same extract files loaded through the one ingest path into a DuckDB store
and into a Spark-backed store give the same tables and the same KPI, journey, churn-feature and
customer-card reads; a failed load, a killed load and an erasure leave the cluster as they leave
DuckDB.

The demo company's extracts are written once and loaded into both stores with ``ingest_file`` (the
Spark store holds its analytical tables on the Spark server and its app state in a DuckDB file, as
the app opens one with ``CXDASH_ANALYTICS_URL`` set). Each read then runs once on each store and the
results are compared (rows sorted, floats to 1e-6). The tests that write run last, in file order.

Runs under ``make test`` (``scripts/with_spark.sh`` starts a throwaway Spark server when Java is
present); skips when no Spark Thrift server is given. Spark costs about a second per statement
whatever the size, so the company is small and each function runs once.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from cxdash import journeys as jr
from cxdash import metrics
from cxdash.demo import load_demo_extracts, write_demo_extracts
from cxdash.governance import health
from cxdash.governance.erasure import erase_customer
from cxdash.ingest import load as ingest_load
from cxdash.ingest.load import ingest_file
from cxdash.ingest.mapping import Mapping
from cxdash.jobs import open_store
from cxdash.jobs import summaries as sm
from cxdash.jobs.loads import update_rollups
from cxdash.metrics.overview import TIME_FIELDS
from cxdash.metrics.timeline import timeline
from cxdash.risk import customer_features, data_as_of
from cxdash.risk.card import customer_summary
from cxdash.store import KIND_TABLES, read_frame, rollups
from cxdash.store.database import customer_keys_table, identity_map_table, loads_table, make_engine
from tests.spark_support import spark_url
from tests.test_parity import _plain, assert_same_frame, assert_same_mapping

pytestmark = [pytest.mark.spark, pytest.mark.slow]

N_CUSTOMERS, SEED = 200, 5
PAGE_SPEC = jr.LogSpec(department_key="department", top_n=15, collapse_repeats=True)
REPO = Path(__file__).resolve().parents[1]


@dataclasses.dataclass
class Company:
    duck: object
    spark: object
    spark_url: str
    spark_app_url: str
    extracts: list
    root: Path

    def __iter__(self):  # (duck, spark), as the read tests take them
        return iter((self.duck, self.spark))


@pytest.fixture(scope="module")
def company(tmp_path_factory):
    """The demo company's files loaded into a DuckDB store and a Spark-backed store."""
    url = spark_url()
    root = tmp_path_factory.mktemp("spark_parity")
    extracts = write_demo_extracts(root / "extracts", N_CUSTOMERS, SEED)
    duck_url = f"duckdb:///{root / 'company.duckdb'}"
    duck = open_store(duck_url, duck_url)
    load_demo_extracts(duck, extracts)

    # a fresh Spark database per run, so a server kept between runs starts empty
    name = f"cxdash_parity_{uuid.uuid4().hex[:8]}"
    admin = make_engine(url)
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    db_url = sa.engine.make_url(url).set(database=name).render_as_string(hide_password=False)
    app_url = f"duckdb:///{root / 'spark_app.duckdb'}"
    spark = open_store(db_url, app_url)  # analytical tables on Spark, app state in a DuckDB file
    load_demo_extracts(spark, extracts)
    yield Company(duck, spark, db_url, app_url, extracts, root)
    spark.dispose()
    duck.dispose()
    with admin.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} CASCADE")
    admin.dispose()


@pytest.fixture(scope="module")
def stores(company):
    return company.duck, company.spark


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


def test_the_rfm_of_two_ends(stores):
    """The CLV forecast's purchase summary (one aggregation, the first day's amount picked with
    ``min_by`` on Spark) is the same on both engines."""

    def rfm(conn):
        period = metrics.default_period(metrics.as_of(conn))
        return metrics.rfm_at_ends(conn, [period.end, period.previous.end])

    duck, spark = _both(stores, rfm)
    assert len(duck) == 2
    for end, frame in duck.items():
        assert len(frame) > 20 and frame["frequency"].sum() > 0
        pd.testing.assert_frame_equal(frame, spark[end], check_exact=False, rtol=1e-9, atol=1e-6)


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
    # the graph and the nodes from one query, as the Journeys page reads them
    duck_map, spark_map = _both(stores, lambda c: jr.journey_map(c, jr.journey_log(), PAGE_SPEC, min_share=0.005))
    assert_same_frame(duck_map[0], duck, "journey_map graph (DuckDB)")
    assert_same_frame(duck_map[0], spark_map[0], "journey_map graph")
    assert len(duck_map[1]) > 3
    assert_same_frame(duck_map[1], spark_map[1], "journey_map nodes")
    # as the refresh stores them: with the edges before pooling, the cases and the departments kept
    kept_duck, kept_spark = _both(
        stores, lambda c: jr.journey_map(c, jr.journey_log(), PAGE_SPEC, min_share=0.005, waits=True)
    )
    for kept in (kept_duck, kept_spark):
        assert_same_frame(kept[0], duck_map[0], "journey_map(waits=True) graph")
        assert_same_frame(kept[1], duck_map[1], "journey_map(waits=True) nodes")
    assert sorted(kept_spark[0].attrs["map"]["edges"]) == sorted(kept_duck[0].attrs["map"]["edges"])
    assert kept_spark[0].attrs["map"]["cases"] == kept_duck[0].attrs["map"]["cases"]
    assert sorted(kept_spark[1].attrs["departments"]) == sorted(kept_duck[1].attrs["departments"])
    duck, spark = _both(
        stores,
        lambda c: jr.discover_variants(
            c, jr.journey_log(), PAGE_SPEC, outcomes=jr.customer_outcomes(c), max_steps=5, limit=1000
        ),
    )
    assert len(duck) > 5
    assert_same_frame(duck, spark, "discover_variants")
    # as the refresh stores them: the most common variants kept whole, on each engine
    page = dict(outcomes=None, max_steps=5, limit=30)
    shown, kept_duck, kept_spark = (
        _both(stores, lambda c: jr.discover_variants(c, jr.journey_log(), PAGE_SPEC, **page))[0],
        *_both(stores, lambda c: jr.discover_variants(c, jr.journey_log(), PAGE_SPEC, **page, waits=True)),
    )
    assert_same_frame(kept_duck, shown, "discover_variants(waits=True), DuckDB")
    assert_same_frame(kept_spark, shown, "discover_variants(waits=True), Spark")
    assert kept_spark.attrs["waits"] == kept_duck.attrs["waits"]
    duck, spark = _both(stores, lambda c: jr.discover_handoffs(c, jr.journey_log(), department_key="department"))
    assert len(duck)
    assert_same_frame(duck, spark, "discover_handoffs")
    # as the refresh stores them: the percentiles read from the waits kept near them, on each engine
    kept_duck, kept_spark = _both(
        stores, lambda c: jr.discover_handoffs(c, jr.journey_log(), department_key="department", waits=True)
    )
    assert_same_frame(kept_duck, duck, "discover_handoffs(waits=True), DuckDB")
    assert_same_frame(kept_spark, duck, "discover_handoffs(waits=True), Spark")
    assert [w[:3] for w in kept_spark.attrs["waits"]] == [w[:3] for w in kept_duck.attrs["waits"]]
    duck, spark = _both(stores, lambda c: jr.first_positions(c, jr.journey_log(), waits=True))
    assert len(duck) > 3
    assert_same_frame(duck, spark, "first_positions(waits=True)")
    assert duck.attrs["waits"] == spark.attrs["waits"]  # whole positions: the same values each side


def test_funnel(stores):
    duck, _ = stores
    with duck.connect() as conn:
        top = jr.activity_counts(conn, jr.journey_log(), PAGE_SPEC)
    steps = [str(a) for a in top.sort_values("count", ascending=False)["activity"].head(3)]
    duck, spark = _both(stores, lambda c: jr.funnel(c, jr.journey_log(), steps, spec=PAGE_SPEC))
    assert int(duck.iloc[0]["customers"]) > 10
    assert_same_frame(duck, spark, "funnel")
    # as the refresh stores it: the medians read from the seconds kept near them, on each engine
    kept_duck, kept_spark = _both(stores, lambda c: jr.funnel(c, jr.journey_log(), steps, spec=PAGE_SPEC, waits=True))
    assert_same_frame(kept_duck, duck, "funnel(waits=True), DuckDB")
    assert_same_frame(kept_spark, duck, "funnel(waits=True), Spark")
    assert [[*w[:2], w[2]["n"]] for w in kept_spark.attrs["waits"]] == [
        [*w[:2], w[2]["n"]] for w in kept_duck.attrs["waits"]
    ]


def test_hotspots_and_friction_moments(stores):
    duck, spark = _both(stores, lambda c: jr.hotspots(c, repeat_days=7))
    assert len(duck) >= 3
    assert_same_frame(duck, spark, "hotspots")
    moments = jr.friction_moments(repeat_days=7)
    duck, spark = _both(stores, lambda c: read_frame(c, sa.select(moments)))
    assert len(duck) > 10
    assert_same_frame(duck, spark, "friction_moments")
    # a period that ends a month before the data: its dead ends look at the steps after it
    with stores[0].connect() as conn:
        period = metrics.default_period(metrics.as_of(conn))
    shift = timedelta(days=30)
    inside = jr.friction_moments(repeat_days=7, since=period.start - shift, until=period.end - shift)
    duck, spark = _both(stores, lambda c: read_frame(c, sa.select(inside)))
    assert len(duck) > 10
    assert_same_frame(duck, spark, "friction_moments of a period")


# ----------------------------------------------------------------------------- data health


def test_data_health(company):
    """Data health's per-source figures; latency (hours from event to load) depends on when each
    store loaded, so it is checked against each store's own load times, recomputed here."""
    for fn in (health.source_stats, health.null_rates, health.stitch_coverage):
        duck, spark = _both(company, fn)
        assert len(duck)
        assert_same_frame(duck, spark, fn.__name__)
    with company.spark.connect() as conn:
        latency = health.source_latency(conn).set_index("source")
        loads = read_frame(conn, sa.select(loads_table.c.source, loads_table.c.finished_at, loads_table.c.kind))
        newest = {}
        for row in loads.itertuples():
            t = KIND_TABLES[row.kind]
            ts = t.c[TIME_FIELDS[row.kind]]
            newest[row.source] = conn.execute(
                sa.select(sa.func.max(ts)).where(t.c.source == row.source, ts <= row.finished_at)
            ).scalar()
    assert sum(v is not None for v in newest.values()) >= 3
    for source, finished in zip(loads["source"], loads["finished_at"], strict=True):
        if newest[source] is None:
            continue
        expected = (pd.Timestamp(finished) - pd.Timestamp(newest[source])).total_seconds() / 3600
        assert latency.loc[source, "newest"] == pytest.approx(expected, abs=1e-6), source
    with company.duck.connect() as conn:
        duck_latency = health.source_latency(conn).set_index("source")
    assert list(latency.index) == list(duck_latency.index)
    # the spread counts rows recent when loaded: the same rows on both stores (loaded minutes apart)
    assert list(latency["p50"].isna()) == list(duck_latency["p50"].isna())


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


# ----------------------------------------------------------------------------- the write path
# These change the stores (the same change on both), so they come after every read above.

# columns that hold when a row was written, not what it says
_WHEN = {"started_at", "finished_at"}
_COMPARED = [*KIND_TABLES.values(), identity_map_table, customer_keys_table, loads_table]


def _tables(store) -> dict[str, pd.DataFrame]:
    out = {}
    with store.connect() as conn:
        for table in _COMPARED:
            out[table.name] = read_frame(conn, sa.select(*[c for c in table.c if c.name not in _WHEN]))
    return out


def assert_same_tables(company: Company) -> dict[str, int]:
    """Every source table, the identity map, the customer keys and the load log hold the same rows
    (every column) on both stores; the row counts by table."""
    duck, spark = _tables(company.duck), _tables(company.spark)
    for name, frame in duck.items():
        assert_same_frame(frame, spark[name], name)
    return {name: len(frame) for name, frame in duck.items()}


def test_loads_wrote_the_same_rows_keys_and_customers(company):
    """The loads themselves (bulk insert into one partition per load, duplicates removed by a
    partition rewrite, customer keys set by rewrites in place of UPDATE) match DuckDB row for row."""
    counts = assert_same_tables(company)
    assert counts["src_events"] > 1000 and counts["customer_keys"] >= N_CUSTOMERS
    assert counts["loads"] == len(company.extracts)
    with company.spark.connect() as conn:
        partitions = {r[0] for r in conn.exec_driver_sql("SHOW PARTITIONS src_events")}
        event_loads = conn.execute(sa.select(loads_table.c.load_id).where(loads_table.c.kind == "events")).scalars()
        assert partitions == {f"load_id={n}" for n in event_loads}  # one partition per load


def _stored_headline(store):
    with store.connect() as conn:
        payloads = sm.stored_payloads(conn, sm.data_version(conn))
    (key,) = [k for k in payloads if k == "headline" or k.startswith("headline?")]
    params = json.loads(key.split("?", 1)[1]) if "?" in key else None
    return key, sm.decode("headline", params, payloads)


def test_a_summary_is_stored_and_read_back(company):
    """The summaries refresh (a DELETE, then binary payloads) works against the Spark store and
    stores what it stores on DuckDB."""
    for store in company:
        assert set(sm.refresh(store, ("headline",))) == {"headline"}
    (dkey, duck), (skey, spark) = (_stored_headline(store) for store in company)
    assert dkey == skey
    assert duck is not sm.MISSING and spark is not sm.MISSING
    assert duck.customers == N_CUSTOMERS
    assert_same_mapping(dataclasses.asdict(duck), dataclasses.asdict(spark), "stored headline")


def _extract(company, source: str):
    return next(ex for ex in company.extracts if ex.source == source)


def test_a_failed_load_leaves_the_cluster_as_it_was(company, monkeypatch):
    """A load that fails after its rows were written (Spark has no rollback: each statement commits)
    is undone: its partition, quarantine, load-log entry and version row are removed."""
    before = _tables(company.spark)
    ex = _extract(company, "helpdesk")

    def boom(*args, **kwargs):
        raise RuntimeError("disk full (injected)")

    monkeypatch.setattr(ingest_load, "deduplicate", boom)
    with pytest.raises(RuntimeError, match="injected"):
        ingest_file(company.spark, ex.path, source="helpdesk_again", mapping=Mapping.from_dict(ex.mapping))
    after = _tables(company.spark)
    for name, frame in before.items():
        assert_same_frame(frame, after[name], f"{name} after a failed load")
    with company.spark.connect() as conn:
        assert (
            conn.execute(sa.select(sa.func.count()).where(KIND_TABLES["tickets"].c.source == "helpdesk_again")).scalar()
            == 0
        )


_KILLED_LOAD = """
import sys
from cxdash.ingest.load import ingest_file
from cxdash.ingest.mapping import Mapping
from cxdash.jobs import open_store
import json
store = open_store(sys.argv[1], sys.argv[2])
ingest_file(store, sys.argv[3], source="web_replay", mapping=Mapping.from_dict(json.loads(sys.argv[4])), chunk_rows=300)
"""


def test_a_killed_load_is_removed_before_the_next_one(company):
    """A load process killed midway leaves rows its statements committed; the next load removes
    them before it takes the load id, and then both stores hold the same rows again."""
    ex = _extract(company, "web")
    events = KIND_TABLES["events"]
    with company.spark.connect() as conn:
        next_id = int(conn.execute(sa.select(sa.func.max(loads_table.c.load_id))).scalar()) + 1
    # The killed process loads the web extract eight times over (each copy a second later, so no
    # row repeats another): many chunks, so the kill lands while chunks are still being written. With
    # the extract alone, a slow poll could see its last chunk and the load finish before the kill.
    rows = pd.read_csv(ex.path, dtype=str, keep_default_na=False)
    time_column = ex.mapping["columns"]["timestamp"]
    stamps = pd.to_datetime(rows[time_column])
    copies = []
    for i in range(8):
        copy = rows.copy()
        copy[time_column] = (stamps + pd.Timedelta(seconds=i)).dt.strftime("%Y-%m-%d %H:%M:%S")
        copies.append(copy)
    longer = company.root / "web_eight_times.csv"
    pd.concat(copies, ignore_index=True).to_csv(longer, index=False)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _KILLED_LOAD,
            company.spark_url,
            company.spark_app_url,
            str(longer),
            json.dumps(ex.mapping),
        ],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        start_new_session=True,
    )
    seen = 0
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            with company.spark.connect() as conn:
                seen = conn.execute(sa.select(sa.func.count()).where(events.c.load_id == next_id)).scalar()
            if seen:
                break
            time.sleep(0.5)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert seen > 0, "the load was not caught midway (it wrote nothing, or finished first)"
    with company.spark.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).where(loads_table.c.load_id == next_id)).scalar() == 0
        assert conn.execute(sa.select(sa.func.count()).where(events.c.load_id == next_id)).scalar() > 0  # orphans

    for store in company:  # the next load, the same on both stores
        result = ingest_file(store, ex.path, source="web_replay", mapping=Mapping.from_dict(ex.mapping))
        assert result.load_id == next_id
    counts = assert_same_tables(company)
    assert counts["loads"] == len(company.extracts) + 1


def test_an_erasure_removes_the_customer_from_the_cluster(company):
    """Erasing a customer on both stores leaves the same rows, and none of the customer's on Spark."""
    with company.duck.connect() as conn:
        ck = customer_keys_table
        cx_key, cx_id = conn.execute(
            sa.select(ck.c.cx_key, ck.c.cx_id).where(ck.c.known).order_by(ck.c.cx_key).limit(1)
        ).one()
    results = [erase_customer(store, cx_id, actor="test") for store in company]
    assert results[0].total_rows > 0
    assert results[0].rows_deleted == results[1].rows_deleted
    assert_same_tables(company)
    with company.spark.connect() as conn:
        left = sum(
            conn.execute(sa.select(sa.func.count()).where(t.c.cx_key == cx_key)).scalar() for t in KIND_TABLES.values()
        )
        assert left == 0
        assert conn.execute(sa.select(sa.func.count()).where(customer_keys_table.c.cx_id == cx_id)).scalar() == 0


def test_kpi_table_from_the_daily_rollups(company):
    """The daily rollups built on the cluster hold the current data and give the KPIs the DuckDB
    store's rollups give, and the cluster's own raw rows."""
    assert [update_rollups(store) for store in company] == ["rebuilt", "rebuilt"]

    def table(use_rollups):
        def run(conn):
            assert rollups.current(conn)
            periods = metrics.monthly_periods(metrics.as_of(conn), 3)
            return metrics.kpi_table(conn, periods, metrics.Filters(department=("support",)), use_rollups=use_rollups)

        return run

    duck, spark = _both(company, table(True))
    assert duck["active_customers"].sum() > 0
    assert_same_frame(duck, spark, "kpi_table from the rollups")
    (raw,) = _both((company.spark,), table(False))
    assert_same_frame(raw, spark, "kpi_table on Spark: rollups against raw rows")
