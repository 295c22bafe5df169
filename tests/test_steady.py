"""Answers about the data kept while the summaries refresh holds it still (``cxdash.store.steady``):
read once inside, afresh outside, and dropped when the refresh lets go of its connection."""

from __future__ import annotations

import concurrent.futures
from datetime import datetime

import sqlalchemy as sa

from cxdash.ingest.load import ingest_file
from cxdash.ingest.mapping import Mapping
from cxdash.jobs import summaries
from cxdash.metrics.periods import as_of
from cxdash.store import steady
from cxdash.store.database import KIND_TABLES, loads_table, open_store
from cxdash.store.rollups import appended_keys, kinds_holding

WEB_MAP = Mapping.from_dict(
    {"kind": "events", "columns": {"visitor_id": "visitor", "email": "mail", "timestamp": "at", "activity": "page"}}
)


def _load_web(store, path, rows: str) -> None:
    path.write_text("visitor,mail,at,page\n" + rows)
    ingest_file(store, path, source="web", mapping=WEB_MAP, mode="append")


def _load_elsewhere(store, path, rows: str) -> None:
    """A load from another thread: outside the refresh's held answers, as another process's is."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(_load_web, store, path, rows).result()  # raises what the load raised


def test_answers_are_read_once_while_held_still_afresh_outside_and_after_forget(tmp_path):
    store = open_store(f"duckdb:///{tmp_path / 'steady.duckdb'}")
    _load_web(store, tmp_path / "a.csv", "v1,ann@x.org,2024-02-01 10:00,home\nv2,bob@x.org,2024-03-09 09:00,cancel\n")
    statements: list[str] = []
    sa.event.listen(store.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    try:
        with store.connect() as conn:
            load = conn.execute(sa.select(sa.func.max(loads_table.c.load_id))).scalar()
            assert as_of(conn) == datetime(2024, 3, 9, 9, 0)
            # readers of the load's rows alone look at the events table alone
            assert kinds_holding(conn, [load]) == ["events"]
            assert kinds_holding(conn, None) == list(KIND_TABLES)
            with steady.held_still():
                statements.clear()
                assert as_of(conn) == datetime(2024, 3, 9, 9, 0)
                read = len(statements)
                assert read >= 1
                keys = appended_keys(conn, [load])
                assert len(keys) == 2
                read = len(statements)
                keys.append(-1)  # a caller changing its answer changes no one else's
                assert appended_keys(conn, [load]) == keys[:2]
                assert as_of(conn) == datetime(2024, 3, 9, 9, 0)
                assert len(statements) == read  # both kept

                _load_elsewhere(store, tmp_path / "b.csv", "v3,cy@x.org,2024-04-01 08:00,home\n")
                assert as_of(conn) == datetime(2024, 3, 9, 9, 0)  # held still: the answer kept
                conn.rollback()  # a new transaction sees the load (as the refresh's new connection does)
                assert as_of(conn) == datetime(2024, 3, 9, 9, 0)  # still the answer kept
                steady.forget()
                assert as_of(conn) == datetime(2024, 4, 1, 8, 0)
            statements.clear()
            assert as_of(conn) == as_of(conn) == datetime(2024, 4, 1, 8, 0)
            assert len(statements) == 2  # outside: read every time
    finally:
        store.dispose()


def test_the_refresh_forgets_its_answers_when_it_opens_a_new_connection(tmp_path, monkeypatch):
    store = open_store(f"duckdb:///{tmp_path / 'held.duckdb'}")
    _load_web(store, tmp_path / "a.csv", "v1,ann@x.org,2024-02-01 10:00,home\n")
    monkeypatch.setattr(summaries, "_FILE_HOLD_SECONDS", 0.0)  # a new connection for every summary
    held = summaries._HeldConnection(store)
    try:
        with steady.held_still():
            with held() as conn:
                assert as_of(conn) == datetime(2024, 2, 1, 10, 0)
            _load_elsewhere(store, tmp_path / "b.csv", "v2,bob@x.org,2024-05-01 10:00,home\n")
            with held() as conn:
                assert as_of(conn) == datetime(2024, 5, 1, 10, 0)
    finally:
        held.close()
        store.dispose()
