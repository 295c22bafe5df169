"""A load writes its rows in whole row groups (cxdash.store.database.ROW_GROUP_ROWS, lowered
here with ``write_rows``): every row of the file is stored exactly once whatever the file's size
against the group's, each write but the last is a whole number of groups, and a failure while
writing a later group leaves the store as it was."""

from __future__ import annotations

import pandas as pd
import pytest
import sqlalchemy as sa

import cxdash.ingest.load as ingest_module
from cxdash.ingest.load import ingest_file
from cxdash.ingest.mapping import Mapping
from cxdash.store.database import ANALYTICS, KIND_TABLES, ROW_GROUP_ROWS
from tests.test_ingest_fast_path import in_pieces

MAPPING = {"customer_id": "user", "timestamp": "when", "activity": "what"}


def events_file(path, n: int):
    """``n`` distinct event lines: user Un, day n of January, activity a<n>."""
    lines = ["user,when,what"] + [f"U{i},2024-01-{i:02d} 10:00:00,a{i}" for i in range(1, n + 1)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_sizes(monkeypatch) -> list[int]:
    """The number of rows of each write of the load's rows (the calls of ``bulk_insert`` in the load)."""
    sizes: list[int] = []
    real = ingest_module.bulk_insert

    def counting(conn, table, frame):
        if table is KIND_TABLES["events"]:
            sizes.append(len(frame))
        return real(conn, table, frame)

    monkeypatch.setattr(ingest_module, "bulk_insert", counting)
    return sizes


def stored_events(store) -> pd.DataFrame:
    t = KIND_TABLES["events"]
    with store.connect() as conn:
        rows = conn.execute(sa.select(t.c.row_number, t.c.customer_id, t.c.activity).order_by(t.c.row_number)).all()
    return pd.DataFrame([tuple(r) for r in rows], columns=["row_number", "customer_id", "activity"])


def test_the_default_group_is_duckdbs_row_group():
    assert ROW_GROUP_ROWS == 122_880  # DuckDB's default row_group_size


# (rows in the file, writes expected): chunks of 2 rows, groups of 4 rows
@pytest.mark.parametrize(
    ("n", "writes"),
    [(3, [3]), (4, [4]), (5, [4, 1]), (8, [8]), (9, [8, 1]), (11, [8, 3])],
)
def test_every_row_is_stored_once_below_at_and_above_the_group_size(duck, tmp_path, monkeypatch, n, writes):
    in_pieces(monkeypatch)
    sizes = write_sizes(monkeypatch)
    path = events_file(tmp_path / "events.csv", n)
    result = ingest_file(duck, path, source="web", mapping=Mapping("events", dict(MAPPING)), write_rows=4)
    assert sizes == writes
    got = stored_events(duck)
    expected = pd.DataFrame(
        {
            "row_number": list(range(2, n + 2)),  # the header is line 1
            "customer_id": [f"U{i}" for i in range(1, n + 1)],
            "activity": [f"a{i}" for i in range(1, n + 1)],
        }
    )
    pd.testing.assert_frame_equal(got.astype(object), expected.astype(object))
    assert (result.rows_read, result.rows_loaded) == (n, n)


def test_a_file_within_one_chunk_is_written_in_whole_groups_too(duck, tmp_path, monkeypatch):
    sizes = write_sizes(monkeypatch)
    path = events_file(tmp_path / "events.csv", 7)
    ingest_file(duck, path, source="web", mapping=Mapping("events", dict(MAPPING)), write_rows=3)
    assert sizes == [6, 1]
    assert stored_events(duck)["customer_id"].tolist() == [f"U{i}" for i in range(1, 8)]


def counts(store) -> dict[str, int]:
    with store.connect() as conn:
        return {
            t.name: conn.execute(sa.select(sa.func.count()).select_from(t)).scalar() for t in ANALYTICS.sorted_tables
        }


def test_a_failure_writing_the_second_group_stores_nothing(store, tmp_path, monkeypatch):
    m = Mapping("events", dict(MAPPING))
    ingest_file(store, events_file(tmp_path / "first.csv", 3), source="web", mapping=m)
    before, rows_before = counts(store), stored_events(store)
    in_pieces(monkeypatch)
    real = ingest_module.bulk_insert
    calls = {"n": 0}

    def fails_on_the_second_group(conn, table, frame):
        if table is KIND_TABLES["events"]:
            calls["n"] += 1
            if calls["n"] == 2:
                raise OSError("disk full (simulated)")
        return real(conn, table, frame)

    monkeypatch.setattr(ingest_module, "bulk_insert", fails_on_the_second_group)
    with pytest.raises(OSError, match="disk full"):
        ingest_file(store, events_file(tmp_path / "second.csv", 5), source="web2", mapping=m, write_rows=2)
    assert calls["n"] == 2  # the first group was written before the failure
    assert counts(store) == before
    pd.testing.assert_frame_equal(stored_events(store), rows_before)


def test_a_group_size_below_one_row_is_refused(duck, tmp_path):
    with pytest.raises(ValueError, match="at least 1 row"):
        ingest_file(
            duck,
            events_file(tmp_path / "e.csv", 2),
            source="web",
            mapping=Mapping("events", dict(MAPPING)),
            write_rows=0,
        )
