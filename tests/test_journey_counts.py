"""The Journeys page's headline counts and default funnel say what the data shows: "Customers with
journeys" is every customer with a step (not the reach of the busiest activity), and the default
funnel puts its steps in the order customers take them (not by frequency)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd
import pytest
import sqlalchemy as sa

from cxdash import journeys as jr
from cxdash.ingest.load import ingest_file
from cxdash.ingest.mapping import Mapping
from cxdash.jobs import views
from cxdash.store.database import KIND_TABLES, open_store

EVENTS_MAP = Mapping("events", {"customer_id": "customer_id", "timestamp": "timestamp", "activity": "activity"})


def _store_with(tmp_path, csv: str):
    (tmp_path / "web.csv").write_text(csv)
    store = open_store(f"duckdb:///{tmp_path / 'cx.duckdb'}")
    ingest_file(store, tmp_path / "web.csv", source="web", kind="events", department="web", mapping=EVENTS_MAP)
    return store


def test_customers_with_journeys_counts_every_customer_with_a_step_not_the_busiest_activitys_reach(tmp_path):
    """Five customers, no activity reached by more than two: the count is 5, the old figure 2."""
    csv = (
        "customer_id,timestamp,activity\n"
        "A,2024-01-01 10:00,view\nB,2024-01-01 10:00,view\n"
        "C,2024-01-02 10:00,search\nD,2024-01-02 11:00,search\n"
        "E,2024-01-03 09:00,help_page\nA,2024-01-04 09:00,cart\n"
    )
    store = _store_with(tmp_path, csv)
    try:
        with store.connect() as conn:
            f = views.DEFAULT_MAP_FILTERS
            page = views.COMPUTATIONS["journeys.customers"](conn, **views.map_params(views.activity_filters(f)))
            nodes = views.COMPUTATIONS["journeys.nodes"](conn, **views.map_params(f))
            collapsed = jr.journey_customers(conn, jr.journey_log(), jr.LogSpec(top_n=1, collapse_repeats=True))
    finally:
        store.dispose()
    assert page == {"customers": 5}
    assert collapsed == 5  # top N and collapsing never remove a customer
    assert int(nodes["customers"].max()) == 2


def test_customers_with_journeys_on_the_demo_equal_a_pandas_count_of_customers_with_a_dated_row(demo_store):
    """Independently: every kind table's rows with a customer key and a date in one of the
    timeline's time columns, their distinct customer keys counted in pandas."""
    from cxdash.metrics.timeline import TIMELINE_TIME_COLUMNS

    store = open_store(demo_store["url"], create=False)
    try:
        with store.connect() as conn:
            keys: set[int] = set()
            for kind, column in TIMELINE_TIME_COLUMNS:
                t = KIND_TABLES[kind]
                frame = pd.DataFrame(conn.execute(sa.select(t.c.cx_key, t.c[column])).all(), columns=["cx_key", "ts"])
                keys |= set(frame.dropna()["cx_key"].astype("int64"))
            f = views.DEFAULT_MAP_FILTERS
            page = views.COMPUTATIONS["journeys.customers"](conn, **views.map_params(views.activity_filters(f)))
            reach = int(views.COMPUTATIONS["journeys.nodes"](conn, **views.map_params(f))["customers"].max())
    finally:
        store.dispose()
    assert page["customers"] == len(keys) > 1000
    assert reach < len(keys)  # the busiest activity's reach was not the count


FUNNEL_LOG = (
    # cart lines outnumber views and purchases: by frequency the funnel read cart -> view -> purchase
    "customer_id,timestamp,activity\n"
    "A,2024-01-01 10:00,view\nA,2024-01-01 10:01,cart\nA,2024-01-01 10:02,cart\nA,2024-01-01 10:03,cart\n"
    "A,2024-01-01 10:09,purchase\n"
    "B,2024-01-02 10:00,view\nB,2024-01-02 10:05,cart\nB,2024-01-02 10:06,cart\n"
    "C,2024-01-03 10:00,view\nC,2024-01-03 10:02,view\nC,2024-01-03 10:05,cart\nC,2024-01-03 10:07,cart\n"
    "C,2024-01-03 10:09,purchase\n"
)


def test_the_default_funnel_orders_its_steps_as_customers_reach_them_not_by_frequency(tmp_path):
    store = _store_with(tmp_path, FUNNEL_LOG)
    try:
        with store.connect() as conn:
            f = views.activity_filters(views.DEFAULT_MAP_FILTERS)
            activities = views.COMPUTATIONS["journeys.activities"](conn, **views.map_params(f))
            positions = views.COMPUTATIONS["journeys.positions"](conn, **views.map_params(f))
            computed = {"journeys.activities": activities, "journeys.positions": positions}
            stored_default = views.default_params(conn, "journeys.funnel", computed)
    finally:
        store.dispose()
    assert activities == ["cart", "view", "purchase"]  # 7, 4 and 2 steps: frequency order is wrong
    # by hand: first positions view 1,1,1; cart 2,2,3; purchase 5,5 (A: v c c c p; B: v c c; C: v v c c p)
    assert positions.set_index("activity")["median_first_position"].to_dict() == {
        "view": 1.0,
        "cart": 2.0,
        "purchase": 5.0,
    }
    assert positions.set_index("activity")["customers"].to_dict() == {"view": 3, "cart": 3, "purchase": 2}
    assert views.default_funnel(activities, positions) == ["view", "cart", "purchase"]
    assert stored_default["steps"] == ["view", "cart", "purchase"]  # the view stored after a load agrees
    assert "order customers first reach" in views.default_funnel_note(activities, ["view", "cart", "purchase"])


def test_a_known_purchase_path_keeps_its_own_order():
    positions = pd.DataFrame(
        {
            "activity": ["purchase", "checkout", "pricing"],
            "customers": [3, 3, 3],
            "median_first_position": [1.0, 2.0, 3.0],
        }
    )
    assert views.default_funnel(["purchase", "checkout", "pricing", "x"], positions) == [
        "pricing",
        "checkout",
        "purchase",
    ]


@pytest.mark.parametrize("repeat_purchases", [False, True])
def test_cart_comes_before_purchase_whether_purchase_is_rarer_or_more_frequent(tmp_path, repeat_purchases):
    rows = ["customer_id,timestamp,activity"]
    t0 = datetime(2024, 1, 1)
    for i in range(6):
        t = t0 + timedelta(days=i)
        rows += [f"C{i},{t:%Y-%m-%d %H:%M},view", f"C{i},{t + timedelta(minutes=2):%Y-%m-%d %H:%M},cart"]
        if i % 2 == 0 or repeat_purchases:
            n = 4 if repeat_purchases else 1
            rows += [f"C{i},{t + timedelta(minutes=5 + k):%Y-%m-%d %H:%M},purchase" for k in range(n)]
    store = _store_with(tmp_path, "\n".join(rows) + "\n")
    try:
        with store.connect() as conn:
            f = views.activity_filters(views.DEFAULT_MAP_FILTERS)
            activities = views.COMPUTATIONS["journeys.activities"](conn, **views.map_params(f))
            positions = views.COMPUTATIONS["journeys.positions"](conn, **views.map_params(f))
    finally:
        store.dispose()
    assert views.default_funnel(activities, positions) == ["view", "cart", "purchase"]
