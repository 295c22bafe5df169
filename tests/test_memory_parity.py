"""Issue 17 (memory): the friction moments read the timeline as a subquery, no longer as one CTE
shared by every part (materialised whole, it was most of the hotspots' peak memory); the journey
views' prepared log stages (``cxdash.journeys.log._log_part``) are CTEs DuckDB inlines (``NOT
MATERIALIZED``), no longer materialised ones. The results must not change: each is compared here
with the previous formulation, the same query with those parts as plain CTEs, on the demo store
and on PostgreSQL."""

from __future__ import annotations

import re
from datetime import datetime

import pandas as pd
import pytest
import sqlalchemy as sa

from cxdash import journeys as jr
from cxdash.jobs import summaries, views
from cxdash.journeys import friction
from cxdash.journeys import log as journey_log_module
from cxdash.store.database import open_store

MOMENT_COLUMNS = ["cx_key", "ts", "hotspot", "leaked_department", "absorbed_department"]


class _TimelineAsCte:
    """``journey_log()`` whose ``.element.subquery(name)`` is a CTE: the previous formulation."""

    def __init__(self, log: sa.Subquery):
        self.element = self
        self._select = log.element

    def subquery(self, name: str) -> sa.CTE:
        return self._select.cte(name)


@pytest.fixture
def previous(monkeypatch):
    """Switches ``friction_moments`` to the previous formulation while active."""

    def use() -> None:
        real = friction.journey_log
        monkeypatch.setattr(friction, "journey_log", lambda **kw: _TimelineAsCte(real(**kw)))

    return use


def _moments(conn, **kw) -> pd.DataFrame:
    m = jr.friction_moments(**kw)
    frame = pd.DataFrame(conn.execute(sa.select(*(m.c[c] for c in MOMENT_COLUMNS))).all(), columns=MOMENT_COLUMNS)
    return frame.sort_values(MOMENT_COLUMNS, ignore_index=True)


def _compare_moments(conn, previous) -> None:
    period = {"since": datetime(2026, 1, 1), "until": datetime(2026, 4, 1)}
    now_all, now_period = _moments(conn, repeat_days=7), _moments(conn, repeat_days=3, **period)
    previous()
    before_all, before_period = _moments(conn, repeat_days=7), _moments(conn, repeat_days=3, **period)
    assert len(before_all) > len(before_period) > 0
    assert set(before_all["hotspot"]) >= {"rework", "checkout error", "repeat contact", "help page then contact"}
    pd.testing.assert_frame_equal(now_all, before_all)
    pd.testing.assert_frame_equal(now_period, before_period)


def test_friction_moments_equal_the_previous_formulation_on_the_demo(demo_store, previous):
    store = open_store(demo_store["url"], create=False)
    try:
        with store.connect() as conn:
            _compare_moments(conn, previous)
    finally:
        store.dispose()


def test_the_stored_hotspot_views_equal_the_previous_formulation(demo_store, previous):
    """The default hotspots view and its customer list (every customer of the top hotspot),
    frame for frame, as the refresh stores them."""
    store = open_store(demo_store["url"], create=False)
    try:
        with store.connect() as conn:
            computed: dict = {}
            run = views.COMPUTATIONS

            def both() -> tuple[pd.DataFrame, pd.DataFrame]:
                params = views.default_params(conn, "journeys.hotspots", computed)
                spots = run["journeys.hotspots"](conn, **params)
                cohort_params = views.default_params(conn, "journeys.hotspot_customers", {"journeys.hotspots": spots})
                return spots, run["journeys.hotspot_customers"](conn, **cohort_params)

            spots, cohort = both()
            previous()
            spots_before, cohort_before = both()
    finally:
        store.dispose()
    assert len(spots_before) >= 3 and len(cohort_before) == int(spots_before["customers"].iloc[0])
    pd.testing.assert_frame_equal(spots, spots_before)
    pd.testing.assert_frame_equal(cohort, cohort_before)


@pytest.mark.slow
def test_friction_moments_equal_the_previous_formulation_on_both_backends(store, tmp_path, previous):
    """The same comparison on a small demo company loaded into DuckDB and into PostgreSQL (small:
    on PostgreSQL the previous formulation took over five minutes on 800 customers)."""
    from cxdash.demo.build import build_demo

    build_demo(store, n_customers=120, seed=5, out_dir=tmp_path / "extracts")
    with store.connect() as conn:
        _compare_moments(conn, previous)


def test_the_refresh_keeps_only_the_results_another_view_reads():
    """Every result a view's default parameters read is kept; the rest are freed once encoded."""
    read = {name for names in views.DEPENDS_ON.values() for name in names}
    assert read | {"churn_candidates"} == summaries.READ_LATER
    assert "journeys.hotspot_customers" not in summaries.READ_LATER
    assert summaries.READ_LATER.issubset(summaries.SUMMARIES)


# ----------------------------------------------------------------------------- the journey log's stages


@pytest.fixture
def log_as_ctes(monkeypatch):
    """Switches the prepared log's stages (base, top N, collapsed repeats, positions) back to plain CTEs,
    the previous formulation, while active."""

    def use() -> None:
        monkeypatch.setattr(journey_log_module, "_log_part", lambda select, name, shared=False: select.cte(name))

    return use


# In COMPUTATIONS order: a view's default parameters may read the results before it.
JOURNEY_VIEWS = (
    "journeys.dfg",
    "journeys.nodes",
    "journeys.customers",
    "journeys.activities",
    "journeys.positions",
    "journeys.paths",
    "journeys.variants",
    "journeys.funnel",
    "journeys.handoffs",
    "journeys.edge_customers",
)


def _views(conn, params: dict[str, dict] | None = None) -> tuple[dict[str, object], dict[str, dict]]:
    """Every journey view of ``JOURNEY_VIEWS`` as the refresh computes it; with ``params`` (the
    parameters a first call used) the same views again, so both runs compute the same thing."""
    computed: dict[str, object] = {}
    used: dict[str, dict] = {}
    for name in JOURNEY_VIEWS:
        p = params[name] if params is not None else views.default_params(conn, name, computed)
        assert p is not None, f"{name} has no default view on this store"
        computed[name], used[name] = views.COMPUTATIONS[name](conn, **p), p
    return computed, used


def _assert_same(now, before, name: str) -> None:
    if isinstance(now, pd.DataFrame):
        pd.testing.assert_frame_equal(now, before, obj=name)
    else:
        assert now == before, name


# Noise controls the default views leave out: renaming, a small top N with the renamed names,
# grouping by department; each function below goes through prepare_log's stages differently.
OTHER_SPECS = (
    jr.LogSpec(department_key="department", rename={"checkout": "buy", "purchase": "buy"}, top_n=4),
    jr.LogSpec(department_key="department", top_n=6, collapse_repeats=True),
    jr.LogSpec(department_key="department", by_department=True, collapse_repeats=True),
)


def _functions(conn, spec: jr.LogSpec) -> dict[str, object]:
    log = jr.journey_log()
    top = jr.activity_counts(conn, log, spec)["activity"].tolist()
    return {
        "activity_counts": jr.activity_counts(conn, log, spec),
        "dfg": jr.discover_dfg(conn, log, spec, min_share=0.01),
        "dfg_counts": jr.dfg_counts(conn, log, spec),
        "nodes": jr.activity_nodes(conn, log, spec),
        "starts": jr.start_activities(conn, log, spec),
        "ends": jr.end_activities(conn, log, spec),
        "variants": jr.discover_variants(conn, log, spec, max_steps=4, limit=None),
        "positions": jr.first_positions(conn, log, spec),
        "paths_to": jr.paths_to(conn, log, top[0], steps=3, spec=spec),
        "paths_from": jr.paths_from(conn, log, top[1], steps=3, spec=spec),
        "funnel": jr.funnel(conn, log, top[:3], window_days=60, segments=jr.customer_segments(), spec=spec),
        "handoffs": jr.discover_handoffs(conn, log, spec),
        "customers": jr.journey_customers(conn, log, spec),
    }


def _compare(conn, log_as_ctes) -> tuple[dict[str, object], list[dict[str, object]]]:
    """The journey views and the functions under ``OTHER_SPECS``, now and in the previous
    formulation, asserted equal; returns the previous formulation's results."""
    views_now, params = _views(conn)
    functions_now = [_functions(conn, spec) for spec in OTHER_SPECS]
    log_as_ctes()
    views_before, _ = _views(conn, params)
    functions_before = [_functions(conn, spec) for spec in OTHER_SPECS]
    for name in JOURNEY_VIEWS:
        _assert_same(views_now[name], views_before[name], name)
    for spec, now, before in zip(OTHER_SPECS, functions_now, functions_before, strict=True):
        for name in now:
            _assert_same(now[name], before[name], f"{name} with {spec}")
    return views_before, functions_before


def test_the_log_stages_are_inlined_on_duckdb_and_unchanged_on_postgresql(log_as_ctes):
    """The comparisons below compare two different queries on DuckDB: the log's stages (but
    positions) are ``NOT MATERIALIZED`` there, plain CTEs in the previous formulation. On
    PostgreSQL the SQL is the previous formulation's, character for character."""
    duckdb, postgresql = (sa.create_engine(url).dialect for url in ("duckdb:///:memory:", "postgresql+psycopg://"))

    def sql(dialect) -> str:
        spec = jr.LogSpec(top_n=5, collapse_repeats=True)
        positions = journey_log_module._positions(jr.prepare_log(jr.journey_log(), spec))
        queries = (sa.select(positions), jr.dfg_query(jr.journey_log(), spec))
        return "\n".join(str(q.compile(dialect=dialect)) for q in queries)

    duck_now, pg_now = sql(duckdb), sql(postgresql)
    log_as_ctes()
    duck_before, pg_before = sql(duckdb), sql(postgresql)
    for stage in ("log_base", "log_top", "log_collapsed", "coded_collapsed"):
        assert re.search(rf"\b{stage} AS NOT MATERIALIZED\s*\(", duck_now), stage
        assert re.search(rf"\b{stage} AS\s*\(", duck_before), stage
    assert re.search(r"\bpositions AS\s*\(", duck_now), "positions stays materialised (read once per funnel step)"
    assert "NOT MATERIALIZED" not in duck_before and "MATERIALIZED" not in pg_now
    assert pg_now == pg_before


def test_the_journey_views_equal_the_previous_formulation_on_the_demo(demo_store, log_as_ctes):
    """Every journey view of the refresh's default page, frame for frame, and every function
    reading the log under renaming, top N, collapsed repeats and departments."""
    store = open_store(demo_store["url"], create=False)
    try:
        with store.connect() as conn:
            views_before, functions_before = _compare(conn, log_as_ctes)
    finally:
        store.dispose()
    assert len(views_before["journeys.dfg"]) >= 20 and len(views_before["journeys.variants"]) == 30
    assert len(views_before["journeys.handoffs"]) >= 4 and views_before["journeys.customers"]["customers"] > 1000
    funnel = views_before["journeys.funnel"]["customers"]
    assert funnel.iloc[0] > funnel.iloc[-1] > 0
    renamed, _, by_department = functions_before
    assert "buy" in set(renamed["activity_counts"]["activity"]) and jr.OTHER in set(renamed["dfg"]["source"])
    assert set(by_department["nodes"]["activity"]) == set(by_department["nodes"]["department"])
    assert all(len(f) > 0 for spec in functions_before for f in spec.values() if isinstance(f, pd.DataFrame))


@pytest.mark.slow
def test_the_journey_views_equal_the_previous_formulation_on_both_backends(store, tmp_path, log_as_ctes):
    """The same comparisons on a small demo company loaded into DuckDB and into PostgreSQL."""
    from cxdash.demo.build import build_demo

    build_demo(store, n_customers=150, seed=5, out_dir=tmp_path / "extracts")
    with store.connect() as conn:
        views_before, functions_before = _compare(conn, log_as_ctes)
    assert len(views_before["journeys.dfg"]) >= 5 and views_before["journeys.customers"]["customers"] > 50
    assert all(len(f) > 0 for spec in functions_before for f in spec.values() if isinstance(f, pd.DataFrame))
