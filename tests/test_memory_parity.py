"""Issue 17 (memory): the friction moments read the timeline as a subquery, no longer as one CTE
shared by every part (materialised whole, it was most of the hotspots' peak memory). The results
must not change: each is compared here with the previous formulation, the same query with the
timeline as a CTE, on the demo store and on PostgreSQL."""

from __future__ import annotations

from datetime import datetime

import pandas as pd
import pytest
import sqlalchemy as sa

from cxdash import journeys as jr
from cxdash.jobs import summaries, views
from cxdash.journeys import friction
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
