"""Summaries stored after a load equal the live computations and are never served stale."""

from __future__ import annotations

import pandas as pd
import pytest
import sqlalchemy as sa

from cxdash.ingest.load import ingest_file
from cxdash.ingest.mapping import Mapping
from cxdash.jobs import summaries
from cxdash.store.database import summaries_table
from cxdash.store.version import data_version

CRM = """id,mail,joined
C1,ann@x.org,2024-01-01
C2,bob@x.org,2024-01-02
C3,cy@x.org,2024-03-02
"""
WEB = """visitor,mail,at,page
v1,ann@x.org,2024-02-01 10:00,home
v3,cy@x.org,2024-03-02 09:00,home
v3,cy@x.org,2024-03-09 09:00,cancel
"""
CRM_MAP = Mapping.from_dict(
    {"kind": "customers", "columns": {"customer_id": "id", "email": "mail", "signup_date": "joined"}}
)
WEB_MAP = Mapping.from_dict(
    {"kind": "events", "columns": {"visitor_id": "visitor", "email": "mail", "timestamp": "at", "activity": "page"}}
)


def _load(store, tmp_path, name, text, source, mapping):
    p = tmp_path / name
    p.write_text(text)
    ingest_file(store, p, source=source, mapping=mapping)


def _same(a, b):
    if isinstance(a, pd.DataFrame):
        pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True), check_dtype=False)
    elif hasattr(a, "to_dict"):
        _same_state(a.to_dict(), b.to_dict(), type(a).__name__)
    else:
        assert a == b


def test_stored_summaries_equal_the_live_ones_and_a_new_load_is_never_served_stale(store, tmp_path):
    _load(store, tmp_path, "crm.csv", CRM, "crm", CRM_MAP)
    took = summaries.refresh(store)
    assert set(summaries.LANDING) <= set(took)
    with store.connect() as conn:
        version = data_version(conn)
        stored = dict(conn.execute(sa.select(summaries_table.c.name, summaries_table.c.data_version)).fetchall())
        assert {n: v for n, v in stored.items() if n in summaries.LANDING} == dict.fromkeys(summaries.LANDING, version)
        live = summaries._computations()
        for name in summaries.LANDING:
            _same(summaries.get(conn, name), live[name](conn))
        assert summaries.get(conn, "headline").customers == 3

    # A load without a refresh (a crash in between, another tool): the stored rows are for the old
    # version, so the pages compute live and see the web source.
    _load(store, tmp_path, "web.csv", WEB, "web", WEB_MAP)
    with store.connect() as conn:
        got = summaries.get(conn, "source_summary")
        assert set(got["name"]) == {"crm", "web"}
        assert int(got.set_index("name").loc["web", "customers"]) == 2
        # a tampered payload of the current version is a miss, not an error
    with store.begin() as conn:
        conn.execute(summaries_table.delete())
        conn.execute(
            summaries_table.insert().values(
                name="headline",
                data_version=data_version(conn),
                computed_at=pd.Timestamp("2026-01-01").to_pydatetime(),
                payload=b"Pnot parquet",
            )
        )
    with store.connect() as conn:
        assert summaries.get(conn, "headline").customers == 3


@pytest.mark.parametrize("store", ["duckdb"], indirect=True)
def test_an_erasure_clears_the_stored_summaries(store, tmp_path):
    from cxdash.governance.erasure import erase_customer

    _load(store, tmp_path, "crm.csv", CRM, "crm", CRM_MAP)
    summaries.refresh(store)
    erase_customer(store, "C2", actor="pytest")
    with store.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(summaries_table)).scalar() == 0
        assert summaries.get(conn, "headline").customers == 2


@pytest.mark.parametrize("store", ["duckdb"], indirect=True)
def test_governance_from_stored_scans_equals_governance_computed_live(store, tmp_path):
    from datetime import datetime

    from cxdash.governance.health import governance

    _load(store, tmp_path, "crm.csv", CRM, "crm", CRM_MAP)
    _load(store, tmp_path, "web.csv", WEB, "web", WEB_MAP)
    summaries.refresh(store)
    now = datetime(2024, 4, 1)
    with store.connect() as conn:
        live = governance(conn, now)
        stored = governance(
            conn, now, stats=summaries.get(conn, "source_stats"), latency=summaries.get(conn, "source_latency")
        )
    _same(stored, live)
    assert live.set_index("name").loc["web", "rows"] == 3


def test_the_per_source_scans_of_an_empty_store_are_empty_frames_with_their_columns(store):
    # `sources --json` reads them before anything is loaded (an invalid first file, say)
    with store.connect() as conn:
        stats = summaries.get(conn, "source_stats")
        latency = summaries.get(conn, "source_latency")
    assert stats.empty and list(stats.columns) == ["name", "rows", "newest", "stitched", "duplicate_keys"]
    assert latency.empty and list(latency.columns) == ["source", "p50", "p95", "newest"]


def test_source_latency_after_appends_equals_it_computed_whole(store, tmp_path):
    # the newest record's delay is the newest load's that holds a record dated by its end; a load
    # of records dated after it (planned renewals, say) leaves the delay kept
    from datetime import UTC, datetime, timedelta

    from cxdash.governance import health
    from cxdash.store.database import loads_table

    _load(store, tmp_path, "crm.csv", CRM, "crm", CRM_MAP)
    _load(store, tmp_path, "web.csv", WEB, "web", WEB_MAP)
    now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    appends = {
        "future": f"visitor,mail,at,page\nv1,ann@x.org,{now + timedelta(days=400):%Y-%m-%d %H:%M},renewal\n",
        "recent": f"visitor,mail,at,page\nv3,cy@x.org,{now - timedelta(hours=2):%Y-%m-%d %H:%M},home\n",
    }
    with store.connect() as conn:
        before = health.source_latency(conn)
    first_web = before.set_index("source").loc["web", "newest"]
    for name, text in appends.items():
        p = tmp_path / f"{name}.csv"
        p.write_text(text)
        ingest_file(store, p, source="web", mapping=WEB_MAP, mode="append")
        with store.connect() as conn:
            load = conn.execute(sa.select(sa.func.max(loads_table.c.load_id))).scalar()
            after = health.source_latency_after(conn, before, [load])
            whole = health.source_latency(conn)
        _same(after, whole)
        web = after.set_index("source").loc["web"]
        if name == "future":
            assert web["newest"] == first_web  # nothing of the new load was news by its end
        else:
            assert 1.9 < web["newest"] < 3.0  # two hours before the load ended
        before = after


# ----------------------------------------------------------------------------- payloads


def test_a_frame_payload_keeps_its_index_column_names_and_types():
    from datetime import datetime

    matrix = pd.DataFrame(
        {"customers": [12, 30], 0: [1.0, 0.9], 1: [0.75, float("nan")]},
        index=pd.DatetimeIndex([datetime(2024, 1, 1), datetime(2024, 2, 1)], name="cohort"),
    )
    back = summaries._decode("x", summaries._encode(matrix))
    pd.testing.assert_frame_equal(back, matrix, check_index_type=False)
    assert list(back.columns) == ["customers", 0, 1]  # the month numbers stay integers

    table = pd.DataFrame(
        {"period_start": pd.to_datetime(["2024-01-01", "2024-02-01"]), "churn_rate": [0.1, None], "label": ["a", None]},
        index=pd.RangeIndex(2, name="bucket"),
    )
    back = summaries._decode("x", summaries._encode(table))
    pd.testing.assert_frame_equal(back, table)
    assert back.index.name == "bucket"


def test_a_frame_payload_holds_its_attrs_once_and_payloads_stored_as_parquet_still_read():
    import io
    import json

    frame = pd.DataFrame({"activity": ["a", "b", None], "count": [3, 2, 1]})
    frame.attrs["map"] = {"edges": [[f"step {i}", f"step {i + 1}", i] for i in range(4000)]}
    frame.attrs["not_kept"] = "dropped"  # only the attrs increments read are kept
    attrs = len(json.dumps(frame.attrs["map"]))
    payload = summaries._encode(frame)
    assert len(payload) < attrs * 1.2  # Arrow's pandas metadata held them three times over
    back = summaries._decode("x", payload)
    pd.testing.assert_frame_equal(back, frame, check_dtype=False)
    assert back.attrs == {"map": frame.attrs["map"]}

    # a payload as stores before Arrow IPC hold it: the same header, then Parquet
    flat = frame.set_axis(["c0", "c1"], axis=1)
    flat.attrs = {}
    buf = io.BytesIO()
    flat.to_parquet(buf, index=False)
    header = {
        "columns": ["activity", "count"],
        "index": None,
        "index_names": [None],
        "attrs": {"map": frame.attrs["map"]},
    }
    head = json.dumps(header).encode()
    old = summaries._decode("x", b"F" + len(head).to_bytes(4, "big") + head + buf.getvalue())
    pd.testing.assert_frame_equal(old, back)
    assert old.attrs == back.attrs


def test_a_kpi_report_read_back_has_every_number_but_no_per_customer_forecast(small_demo):
    from cxdash import metrics
    from cxdash.store.database import open_store

    store = open_store(small_demo)
    with store.connect() as conn:
        report = metrics.kpi_report(conn)
    store.dispose()
    assert report.clv is not None and report.clv.ok and len(report.clv.per_customer)
    back = summaries._decode("executive.report", summaries._encode(report))
    assert back.to_state() == report.to_state()
    assert back.period == report.period and back.filters == report.filters
    assert back.current["clv_predicted_total"] == pytest.approx(report.clv.total())
    # the totals are kept; a read-back forecast cannot be re-summed over other customers
    assert back.clv.total() is None and back.clv.message == report.clv.message


# ----------------------------------------------------------------------------- the pages' default views


def test_every_default_view_is_stored_after_a_load_and_equals_the_live_computation(small_demo):
    from datetime import timedelta

    from cxdash.jobs import views
    from cxdash.metrics import Filters
    from cxdash.store.database import open_store

    store = open_store(small_demo)  # build_demo refreshed the summaries after loading
    try:
        churn = summaries.effective_churn(store)
        assert churn == "subscriptions", "the demo company's churn is its subscriptions' ends"
        with store.connect() as conn:
            version = data_version(conn)
            computed: dict = {}
            for name in summaries.VIEWS:
                params = views.default_params(conn, name, computed, churn)
                assert params is not None, f"{name}: the demo company has every part of the default views"
                found = summaries.lookup(conn, name, version, params)
                assert found is not summaries.MISSING, f"{name} was not stored with its default parameters"
                live = views.COMPUTATIONS[name](conn, **params)
                computed[name] = live
                if hasattr(live, "to_state"):
                    _same_state(found.to_state(), live.to_state(), name)
                elif isinstance(live, pd.DataFrame):
                    assert len(live), f"{name}: an empty default view proves nothing"
                    pd.testing.assert_frame_equal(found, live, check_dtype=False, check_index_type=False, obj=name)
                else:
                    assert found == live, name
            # another view is not stored: the page computes it live
            period = computed["executive.report"].period
            other = views.report_params(
                period.start.date() - timedelta(days=30), period.end.date() - timedelta(days=31), Filters(), 7, 12
            )
            assert summaries.lookup(conn, "executive.report", version, other) is summaries.MISSING
            # a stored view of an older data version is not served
            assert summaries.lookup(conn, "journeys.handoffs", version - 1, {}) is summaries.MISSING
    finally:
        store.dispose()


def _same_state(a, b, where: str) -> None:
    """Equal, floats to 1e-9 relative: DuckDB sums in parallel, so the last digits of a total
    depend on the order its threads finish in."""
    if isinstance(a, dict):
        assert set(a) == set(b), where
        for k in a:
            _same_state(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, float) and isinstance(b, float):
        assert a == pytest.approx(b, rel=1e-9), where
    else:
        assert a == b, where


def _refuse(name):
    def refuse(*args, **kwargs):
        raise AssertionError(f"{name} was computed live")

    return refuse


PAGE_COMPUTATIONS = {
    "executive.py": ("metrics", ("kpi_report", "kpi_table", "cohort_retention", "conflicts", "predicted_clv")),
    "journeys.py": (
        "journeys",
        (
            "discover_dfg",
            "activity_nodes",
            "activity_counts",
            "journey_customers",
            "journey_people",
            "first_positions",
            "anchor_paths",
            "hotspots",
            "discover_variants",
            "funnel",
            "discover_handoffs",
            "hotspot_customers",
            "edge_customers",
        ),
    ),
}


@pytest.mark.parametrize("page", sorted(PAGE_COMPUTATIONS))
def test_a_page_opens_on_its_stored_default_view_and_computes_any_other_view_live(small_demo, monkeypatch, page):
    import importlib
    from pathlib import Path

    import streamlit as st
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("CXDASH_DB_URL", small_demo)
    st.cache_data.clear()
    module_name, functions = PAGE_COMPUTATIONS[page]
    module = importlib.import_module(f"cxdash.{module_name}")
    for fn in functions:
        monkeypatch.setattr(module, fn, _refuse(fn))
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "pages" / page), default_timeout=120)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.get("plotly_chart")) >= 2  # the page drew its charts from the stored view

    # another view is not stored: the page computes it (here: refused, so the page reports it)
    if page == "executive.py":
        at.slider(key="executive_repeat_days").set_value(14).run()
    else:
        at.toggle(key="journeys_collapse").set_value(False).run()
    assert at.exception and "was computed live" in str(at.exception[0].value)


@pytest.mark.parametrize("store", ["duckdb"], indirect=True)
def test_a_background_refresh_stores_the_views_and_one_overtaken_by_a_load_stores_nothing(store, tmp_path):
    _load(store, tmp_path, "crm.csv", CRM, "crm", CRM_MAP)
    _load(store, tmp_path, "web.csv", WEB, "web", WEB_MAP)
    summaries.refresh_in_background(store, ("journeys.handoffs", "executive.cohorts")).join(timeout=300)
    from cxdash.jobs import views

    with store.connect() as conn:
        version = data_version(conn)
        handoffs = views.default_params(conn, "journeys.handoffs", {})  # the default period's
        assert summaries.lookup(conn, "journeys.handoffs", version, handoffs) is not summaries.MISSING
        from cxdash.metrics import Filters

        cohorts = views.cohorts_params(Filters(), summaries.effective_churn(store))
        assert summaries.lookup(conn, "executive.cohorts", version, cohorts) is not summaries.MISSING

    # A load lands while a refresh computes: what it computed describes data that is gone, so it
    # stores nothing (and its earlier results, of an older version, are never served).
    more = "id,mail,joined\nC4,dee@x.org,2024-03-05\n"

    def load_meanwhile(name):
        if name == "headline":
            _load(store, tmp_path, "crm2.csv", more, "crm2", CRM_MAP)

    summaries.refresh(store, summaries.LANDING, progress=load_meanwhile)
    with store.connect() as conn:
        new_version = data_version(conn)
        assert new_version > version
        assert summaries.lookup(conn, "headline", new_version) is summaries.MISSING
        assert summaries.lookup(conn, "journeys.handoffs", new_version, handoffs) is summaries.MISSING
        assert summaries.get(conn, "headline").customers == 4  # computed live: the new customer counts


def test_a_view_whose_parameters_follow_from_other_results_is_refreshed_after_them():
    from cxdash.jobs import views

    for name, needs in views.DEPENDS_ON.items():
        assert name in summaries.VIEWS and all(n in summaries.VIEWS for n in needs)
        assert all(summaries.VIEWS.index(n) < summaries.VIEWS.index(name) for n in needs), name


@pytest.mark.parametrize("store", ["duckdb"], indirect=True)
def test_a_view_stored_after_a_page_read_the_stored_results_is_still_found(store, tmp_path):
    """The upload page stores the views in the background, after the first visitor's page read
    what was stored for the version: a later lookup must see them, not a cached absence."""
    from cxdash.jobs import views
    from cxdash.ui import data

    _load(store, tmp_path, "crm.csv", CRM, "crm", CRM_MAP)
    _load(store, tmp_path, "web.csv", WEB, "web", WEB_MAP)
    url = str(store.engine.url)
    with store.connect() as conn:
        version = data_version(conn)
        params = views.default_params(conn, "journeys.handoffs", {})  # the default period's
    assert data.stored(url, version, "journeys.handoffs", params) is summaries.MISSING
    summaries.refresh(store, ("journeys.handoffs",))
    found = data.stored(url, version, "journeys.handoffs", params)
    assert found is not summaries.MISSING and len(found)
    with store.connect() as conn:
        pd.testing.assert_frame_equal(found, views.COMPUTATIONS["journeys.handoffs"](conn, **params), check_dtype=False)
    data.store_at.clear()


def test_a_summary_that_fails_leaves_the_ones_after_it_computed_and_stored(store, tmp_path, monkeypatch):
    """The refresh's summaries share a connection while it is young; one whose query fails (on
    PostgreSQL that aborts the connection's transaction) must not take the next ones down with it."""
    _load(store, tmp_path, "crm.csv", CRM, "crm", CRM_MAP)
    _load(store, tmp_path, "web.csv", WEB, "web", WEB_MAP)
    computations = summaries._computations()

    def broken(conn, **params):
        conn.execute(sa.text("SELECT no_such_column FROM summaries"))

    monkeypatch.setattr(summaries, "_computations", lambda: {**computations, "source_summary": broken})
    monkeypatch.setattr(summaries, "_HOLD_SECONDS", 3600.0)  # every summary on the held connection
    monkeypatch.setattr(summaries, "_FILE_HOLD_SECONDS", 3600.0)
    took = summaries.refresh(store, ("source_summary", "activity_by_month", "null_rates"))
    assert set(took) == {"activity_by_month", "null_rates"}
    with store.connect() as conn:
        version = data_version(conn)
        assert summaries.lookup(conn, "source_summary", version) is summaries.MISSING
        for name in ("activity_by_month", "null_rates"):
            _same(summaries.lookup(conn, name, version), computations[name](conn))
