"""The steps of the customers an append touched, read once for the increments that look at them
(``view_increments._their_steps``), and ``among``, the key list those reads filter on."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from cxdash import journeys as jr
from cxdash.jobs import view_increments
from cxdash.store.database import open_store, read_frame
from cxdash.store.dialect import among
from tests.conftest import make_store


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    cols = ["cx_key", "ts", "load_id", "row_number", "row_step"]
    return frame.sort_values(cols, kind="stable").reset_index(drop=True)


def test_the_steps_read_once_are_those_customers_own_whatever_was_read_before(demo_store):
    store = open_store(demo_store["url"])
    log = jr.journey_log()
    with store.connect() as conn:
        keys = conn.execute(sa.select(log.c.cx_key).distinct().order_by(log.c.cx_key).limit(12)).scalars().all()
        first, second = keys[:6], keys[6:]
        for cases in (first, second, first):  # each set its own, after another was registered
            conn.execute(sa.select(log)).first()  # a result left unread on the connection
            theirs = read_frame(conn, sa.select(view_increments._their_steps(conn, cases)))
            expected = read_frame(conn, sa.select(log).where(log.c.cx_key.in_(cases)))
            assert len(expected) > len(cases)  # each customer has steps
            assert set(theirs["cx_key"]) == set(cases)
            pd.testing.assert_frame_equal(_sorted(theirs), _sorted(expected), check_dtype=False)
    with store.connect() as conn:  # a new connection: the steps kept are registered on it too
        theirs = read_frame(conn, sa.select(view_increments._their_steps(conn, first)))
        assert set(theirs["cx_key"]) == set(first)
    store.dispose()


@pytest.mark.parametrize("backend", ["duckdb", "postgresql"])
def test_among_keeps_the_rows_in_keeps_as_in_does(backend, tmp_path):
    store = make_store(backend, tmp_path)
    t = sa.table("among_probe", sa.column("k", sa.BigInteger), sa.column("name", sa.String))
    try:
        with store.begin() as conn:
            conn.exec_driver_sql("DROP TABLE IF EXISTS among_probe")
            conn.exec_driver_sql("CREATE TABLE among_probe (k BIGINT, name VARCHAR(20))")
            conn.execute(t.insert(), [{"k": i % 50 or None, "name": f"n{i % 7}"} for i in range(300)])
        with store.connect() as conn:
            # NumPy values too (a frame's column): DuckDB's client takes none inside a list
            for keys in ([3], [1, 2, 49, 500], list(range(0, 60, 3)), [], np.array([4, 5, 200])):
                plain_in = t.c.k.in_([int(k) for k in keys])
                for cond, plain in ((among(t.c.k, keys), plain_in), (~among(t.c.k, keys), ~plain_in)):
                    got = conn.execute(sa.select(sa.func.count()).select_from(t).where(cond)).scalar()
                    assert got == conn.execute(sa.select(sa.func.count()).select_from(t).where(plain)).scalar()
            names = conn.execute(sa.select(t.c.name).where(among(t.c.name, ["n1", "n3"])).distinct()).scalars()
            assert sorted(names) == ["n1", "n3"]
    finally:
        with store.begin() as conn:
            conn.exec_driver_sql("DROP TABLE IF EXISTS among_probe")
        store.dispose()


def test_among_sends_duckdb_one_parameter_whatever_the_number_of_values():
    # binding one parameter per value cost DuckDB 0.04 s for 4,000 keys before the query ran
    store = open_store("duckdb:///:memory:")
    t = sa.table("probe", sa.column("k", sa.BigInteger), sa.column("name", sa.String))
    sent = []
    sa.event.listen(store.engine, "before_cursor_execute", lambda *a: sent.append(a[3]))
    with store.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE probe AS SELECT range AS k, 'n' || range AS name FROM range(5000)")
        sent.clear()
        for keys in (list(range(0, 4000, 2)), [7, 9]):  # the second run reuses the compiled statement
            q = sa.select(sa.func.count()).where(among(t.c.k, keys), among(t.c.name, ["n7", "n8", "x"]))
            assert conn.execute(q).scalar() == sum(1 for k in keys if k in (7, 8))
    assert [len(params) for params in sent] == [2, 2]
    store.dispose()


@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(st.one_of(st.none(), st.integers(-5, 40)), max_size=60),
    keys=st.lists(st.integers(-5, 40), max_size=30),
)
def test_among_matches_python_membership(rows, keys):
    store = open_store("duckdb:///:memory:")
    t = sa.table("probe", sa.column("k", sa.BigInteger))
    with store.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS probe (k BIGINT)")
        conn.exec_driver_sql("DELETE FROM probe")
        if rows:
            conn.execute(t.insert(), [{"k": r} for r in rows])
        got = sorted(conn.execute(sa.select(t.c.k).where(among(t.c.k, keys))).scalars())
    assert got == sorted(r for r in rows if r is not None and r in set(keys))


def test_activity_names_follow_the_counts_and_the_database_orders_ties(monkeypatch):
    # the picker's names after an append, most steps first, as jr.activity_counts orders them
    from cxdash.jobs import views

    filters = views.map_params(views.activity_filters(views.DEFAULT_MAP_FILTERS))["filters"]
    store = open_store("duckdb:///:memory:")
    cases = (
        ({"b": 3, "a": 5, "c": 1}, ["a", "b", "c"]),
        ({"b": 2, "a": 2, "Z": 2, "c": 9, "gone": 0}, ["c", "Z", "a", "b"]),  # binary order: upper case first
    )
    with store.connect() as conn:
        for counts, expected in cases:
            now = pd.Series(counts, dtype="int64")
            monkeypatch.setattr(view_increments, "_period_counts", lambda *a, now=now, **k: (now, now))
            assert view_increments._activities_after(conn, ["x"], [1], filters) == expected
            kept = list(expected)
            assert view_increments._activities_after(conn, kept, [1], filters) is kept  # stored again as it was
    store.dispose()


def test_the_headline_of_a_store_without_dated_rows_stands(tmp_path):
    # the active window is counted back from the data's date: without one, nobody is active
    from cxdash import metrics

    store = make_store("duckdb", tmp_path)
    before = metrics.Headline(None, 3, 0, 0, "none", 0.0)
    log = jr.journey_log()
    with store.connect() as conn:
        steps = sa.select(log).where(sa.false()).subquery()
        assert metrics.headline_after(conn, before, [1, 2], [7], steps) is before
    store.dispose()
