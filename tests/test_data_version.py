"""The data version (cxdash/store/version.py): one committed change, one step; an old store keeps its number."""

from __future__ import annotations

from datetime import datetime

import pytest
import sqlalchemy as sa

from cxdash.ingest.load import IngestError, ingest_file
from cxdash.ingest.mapping import Mapping
from cxdash.store.database import changes_table, loads_table, open_store
from cxdash.store.version import data_version, record_change

CRM = "id,mail\nC1,ann@x.org\nC2,bob@x.org\n"
CRM_MAP = Mapping.from_dict({"kind": "customers", "columns": {"customer_id": "id", "email": "mail"}})


def _load(store, tmp_path, name: str, text: str, **options):
    p = tmp_path / name
    p.write_text(text)
    return ingest_file(store, p, source="crm", mapping=CRM_MAP, **options)


def _changes(store) -> list[tuple]:
    with store.connect() as conn:
        return [
            tuple(r) for r in conn.execute(sa.select(changes_table.c.id, changes_table.c.kind, changes_table.c.load_id))
        ]


def test_each_committed_load_moves_the_version_once_and_a_check_or_a_refused_load_does_not(store, tmp_path):
    with store.connect() as conn:
        assert data_version(conn) == 0
    first = _load(store, tmp_path, "a.csv", CRM)
    _load(store, tmp_path, "a.csv", CRM, dry_run=True)
    with pytest.raises(IngestError):
        _load(store, tmp_path, "bad.csv", "id,mail\n,\n")  # no valid row: nothing stored
    second = _load(store, tmp_path, "b.csv", "id,mail\nC3,cy@x.org\n", mode="replace")
    assert _changes(store) == [(1, "load", first.load_id), (2, "replace", second.load_id)]
    with store.connect() as conn:
        assert data_version(conn) == 2


def test_a_change_outside_a_load_moves_it_in_the_callers_transaction(store):
    with store.begin() as conn:
        assert record_change(conn, "erasure") == 1

    def change_then_fail():
        with store.begin() as conn:
            record_change(conn, "erasure")
            raise RuntimeError("the change failed")  # rolled back: the version did not move

    with pytest.raises(RuntimeError):
        change_then_fail()
    with store.connect() as conn:
        assert data_version(conn) == 1
    with pytest.raises(ValueError, match="a change is one of"), store.begin() as conn:
        record_change(conn, "whim")


def test_a_store_that_kept_its_version_in_the_load_log_keeps_that_number(tmp_path):
    url = f"duckdb:///{tmp_path / 'old.duckdb'}"
    store = open_store(url)
    _load(store, tmp_path, "a.csv", CRM)
    now = datetime(2026, 1, 1)
    with store.begin() as conn:  # the old scheme: an erasure added a pretend load (id 2), no changes table
        conn.execute(
            loads_table.insert().values(
                load_id=2, source="(erasure)", kind="erasure", mode="erase", started_at=now, finished_at=now,
                rows_read=0, rows_loaded=0, rows_rejected=0, rows_duplicate=0,
            )
        )  # fmt: skip
        conn.exec_driver_sql("DROP TABLE changes")
    store.dispose()

    upgraded = open_store(url, create=False)
    assert "data version 2 kept (now in the changes table)" in upgraded.create_schema()
    assert upgraded.create_schema() == []  # once
    with upgraded.connect() as conn:
        assert data_version(conn) == 2  # never back: caches keyed on 2 or less stay unused
    third = _load(upgraded, tmp_path, "b.csv", "id,mail\nC3,cy@x.org\n")
    assert third.load_id == 3
    assert _changes(upgraded)[-1] == (3, "load", 3)
    upgraded.dispose()
