"""Summaries stored after a load equal the live computations and are never served stale."""

from __future__ import annotations

import pandas as pd
import pytest
import sqlalchemy as sa

from cxdash import summaries
from cxdash.ingest import ingest_file
from cxdash.mapping import Mapping
from cxdash.overview import data_version
from cxdash.store import summaries_table

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
CRM_MAP = Mapping.from_dict({"kind": "customers", "columns": {"customer_id": "id", "email": "mail", "signup_date": "joined"}})
WEB_MAP = Mapping.from_dict({"kind": "events", "columns": {"visitor_id": "visitor", "email": "mail", "timestamp": "at",
                                                            "activity": "page"}})


def _load(store, tmp_path, name, text, source, mapping):
    p = tmp_path / name
    p.write_text(text)
    ingest_file(store, p, source=source, mapping=mapping)


def _same(a, b):
    if isinstance(a, pd.DataFrame):
        pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True), check_dtype=False)
    else:
        assert a == b


def test_stored_summaries_equal_the_live_ones_and_a_new_load_is_never_served_stale(store, tmp_path):
    _load(store, tmp_path, "crm.csv", CRM, "crm", CRM_MAP)
    took = summaries.refresh(store)
    assert set(took) == set(summaries.SUMMARIES)
    with store.connect() as conn:
        version = data_version(conn)
        stored = dict(conn.execute(sa.select(summaries_table.c.name, summaries_table.c.data_version)).fetchall())
        assert stored == dict.fromkeys(summaries.SUMMARIES, version)
        live = summaries._computations()
        for name in summaries.SUMMARIES:
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
        conn.execute(summaries_table.insert().values(name="headline", data_version=data_version(conn),
                                                     computed_at=pd.Timestamp("2026-01-01").to_pydatetime(),
                                                     payload=b"Pnot parquet"))
    with store.connect() as conn:
        assert summaries.get(conn, "headline").customers == 3


@pytest.mark.parametrize("store", ["duckdb"], indirect=True)
def test_an_erasure_clears_the_stored_summaries(store, tmp_path):
    from cxdash.erasure import erase_customer

    _load(store, tmp_path, "crm.csv", CRM, "crm", CRM_MAP)
    summaries.refresh(store)
    erase_customer(store, "C2", actor="pytest")
    with store.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(summaries_table)).scalar() == 0
        assert summaries.get(conn, "headline").customers == 2


@pytest.mark.parametrize("store", ["duckdb"], indirect=True)
def test_governance_from_stored_scans_equals_governance_computed_live(store, tmp_path):
    from datetime import datetime

    from cxdash.health import governance

    _load(store, tmp_path, "crm.csv", CRM, "crm", CRM_MAP)
    _load(store, tmp_path, "web.csv", WEB, "web", WEB_MAP)
    summaries.refresh(store)
    now = datetime(2024, 4, 1)
    with store.connect() as conn:
        live = governance(conn, now)
        stored = governance(conn, now, stats=summaries.get(conn, "source_stats"),
                            latency=summaries.get(conn, "source_latency"))
    _same(stored, live)
    assert live.set_index("name").loc["web", "rows"] == 3
