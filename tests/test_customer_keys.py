"""Every row carries its stitched customer as an integer key; keys survive rebuilds; old stores upgrade."""

from __future__ import annotations

import pandas as pd
import pytest
import sqlalchemy as sa

from cxdash.identity.stitch import assign_customer_keys
from cxdash.ingest.load import ingest_file
from cxdash.ingest.mapping import Mapping
from cxdash.jobs.stores import open_store as jobs_open_store
from cxdash.jobs.stores import upgrade_store
from cxdash.store.database import (
    IDENTITY_REBUILD,
    KIND_TABLES,
    customer_keys_table,
    identity_map_table,
    open_store,
    work_pending,
)

CRM = """id,mail,joined
C1,ann@x.org,2024-01-01
C2,bob@x.org,2024-01-02
"""
WEB = """visitor,mail,at,page
v1,ann@x.org,2024-02-01 10:00,home
v2,,2024-02-01 11:00,pricing
v3,cy@x.org,2024-02-02 09:00,home
"""
TICKETS = """ticket,mail,opened
T1,cy@x.org,2024-03-01 10:00
"""
CRM_LATER = """id,mail,joined
C3,cy@x.org,2024-03-05
"""

CRM_MAP = Mapping.from_dict(
    {"kind": "customers", "columns": {"customer_id": "id", "email": "mail", "signup_date": "joined"}}
)
WEB_MAP = Mapping.from_dict(
    {"kind": "events", "columns": {"visitor_id": "visitor", "email": "mail", "timestamp": "at", "activity": "page"}}
)
TICKET_MAP = Mapping.from_dict(
    {"kind": "tickets", "columns": {"ticket_id": "ticket", "email": "mail", "opened_at": "opened"}}
)


def test_new_customers_get_new_keys_and_old_ones_keep_theirs():
    id_map = pd.DataFrame(
        {
            "id_key": ["customer_id:C1", "email:a", "customer_id:C2", "visitor:v9"],
            "cx_id": ["C1", "C1", "C2", "visitor:v9"],
            "known": [True, True, True, False],
        }
    )
    previous = pd.DataFrame({"cx_id": ["C2", "gone"], "cx_key": [7, 9]})
    got = assign_customer_keys(id_map, previous).set_index("cx_id")
    assert got.loc["C2", "cx_key"] == 7  # kept
    # new customers numbered after the largest key ever handed out, in cx_id order
    assert got.loc["C1", "cx_key"] == 10 and got.loc["visitor:v9", "cx_key"] == 11
    assert got["known"].to_dict() == {"C1": True, "C2": True, "visitor:v9": False}
    assert assign_customer_keys(id_map.iloc[:0], previous.iloc[:0]).empty


def _rows_with_keys(conn) -> pd.DataFrame:
    im, ck = identity_map_table, customer_keys_table
    parts = []
    for name, t in KIND_TABLES.items():
        q = sa.select(
            sa.literal(name).label("kind"),
            t.c.id_key,
            t.c.cx_key.label("row_key_int"),
            im.c.cx_key.label("map_key"),
            ck.c.cx_id,
        ).select_from(t.outerjoin(im, im.c.id_key == t.c.id_key).outerjoin(ck, ck.c.cx_key == t.c.cx_key))
        parts.append(
            pd.DataFrame(conn.execute(q).fetchall(), columns=["kind", "id_key", "row_key_int", "map_key", "cx_id"])
        )
    return pd.concat(parts, ignore_index=True)


def _load(store, tmp_path, name, text, source, mapping):
    p = tmp_path / name
    p.write_text(text)
    ingest_file(store, p, source=source, mapping=mapping)


def test_every_row_carries_its_customers_key_after_each_load(store, tmp_path):
    _load(store, tmp_path, "crm.csv", CRM, "crm", CRM_MAP)
    _load(store, tmp_path, "web.csv", WEB, "web", WEB_MAP)
    _load(store, tmp_path, "tickets.csv", TICKETS, "desk", TICKET_MAP)
    with store.connect() as conn:
        rows = _rows_with_keys(conn)
        keys_before = dict(
            conn.execute(sa.select(customer_keys_table.c.cx_id, customer_keys_table.c.cx_key)).fetchall()
        )
    with_id = rows[rows["id_key"].notna()]
    assert (with_id["row_key_int"] == with_id["map_key"]).all()
    assert rows["row_key_int"].notna().all()
    by_id = dict(zip(with_id["id_key"], with_id["cx_id"], strict=False))
    assert by_id["email:ann@x.org"] == "C1" and by_id["customer_id:C2"] == "C2"  # ann's web visit is C1's
    cy = by_id["email:cy@x.org"]
    assert cy not in ("C1", "C2") and (rows["cx_id"] == cy).sum() == 2  # cy's web visit and ticket: one customer

    _load(store, tmp_path, "crm_later.csv", CRM_LATER, "crm2", CRM_MAP)  # cy becomes CRM customer C3
    with store.connect() as conn:
        rows = _rows_with_keys(conn)
        keys_after = dict(conn.execute(sa.select(customer_keys_table.c.cx_id, customer_keys_table.c.cx_key)).fetchall())
    with_id = rows[rows["id_key"].notna()]
    assert (with_id["row_key_int"] == with_id["map_key"]).all()
    assert (with_id["cx_id"] == "C3").sum() == 3  # cy's CRM record, web visit and ticket
    assert keys_after["C1"] == keys_before["C1"] and keys_after["C2"] == keys_before["C2"]
    assert keys_after["C3"] > max(keys_before.values())
    assert cy not in keys_after


def test_migrate_upgrades_a_store_written_before_rows_had_keys(tmp_path):
    url = f"duckdb:///{tmp_path / 'old.duckdb'}"
    store = open_store(url)
    _load(store, tmp_path, "crm.csv", CRM, "crm", CRM_MAP)
    _load(store, tmp_path, "web.csv", WEB, "web", WEB_MAP)
    with store.begin() as conn:  # make it look like the schema before this change
        for t in KIND_TABLES.values():
            conn.exec_driver_sql(f'ALTER TABLE "{t.name}" DROP COLUMN cx_key')
        conn.exec_driver_sql("ALTER TABLE identity_map DROP COLUMN cx_key")
        conn.exec_driver_sql("DROP TABLE customer_keys")
    store.dispose()

    upgraded = open_store(url, create=False)
    changes = upgrade_store(upgraded)
    assert "added column src_events.cx_key" in changes and "added column identity_map.cx_key" in changes
    assert any(c.startswith("identity map rebuilt") for c in changes)
    with upgraded.connect() as conn:
        rows = _rows_with_keys(conn)
    with_id = rows[rows["id_key"].notna()]
    assert len(with_id) == 5 and with_id["row_key_int"].notna().all()  # 2 CRM rows + 3 web visits
    assert (with_id["row_key_int"] == with_id["map_key"]).all()
    assert upgrade_store(upgraded) == []  # idempotent


def test_a_rebuild_a_migration_asked_for_survives_until_the_store_is_opened_for_the_app(tmp_path):
    """The store cannot rebuild identities itself: the migration notes it, and the first open
    through cxdash.jobs (the app, the command line) does it, even when the process that migrated
    the schema stopped before."""
    url = f"duckdb:///{tmp_path / 'old.duckdb'}"
    store = open_store(url)
    _load(store, tmp_path, "crm.csv", CRM, "crm", CRM_MAP)
    _load(store, tmp_path, "web.csv", WEB, "web", WEB_MAP)
    with store.begin() as conn:
        for t in KIND_TABLES.values():
            conn.exec_driver_sql(f'ALTER TABLE "{t.name}" DROP COLUMN cx_key')
        conn.exec_driver_sql("ALTER TABLE identity_map DROP COLUMN cx_key")
        conn.exec_driver_sql("DROP TABLE customer_keys")
    store.dispose()

    migrated = open_store(url)  # the store's own open: schema upgraded, rebuild only noted
    with migrated.connect() as conn:
        assert work_pending(conn, IDENTITY_REBUILD)
        assert _rows_with_keys(conn)["row_key_int"].isna().all()
    migrated.dispose()
    opened = jobs_open_store(url)
    with opened.connect() as conn:
        assert not work_pending(conn, IDENTITY_REBUILD)
        rows = _rows_with_keys(conn)
    with_id = rows[rows["id_key"].notna()]
    assert len(with_id) == 5 and (with_id["row_key_int"] == with_id["map_key"]).all()
    opened.dispose()


def test_the_timeline_time_columns_list_every_step_of_the_timeline():
    """Queries that read TIMELINE_TIME_COLUMNS directly must see exactly the steps of timeline()."""
    from cxdash.metrics.timeline import TIMELINE_TIME_COLUMNS, timeline

    tl = timeline()
    parts = tl.element.selects
    got = []
    for part in parts:
        ts = part.selected_columns.ts
        table = next(iter(ts.base_columns)).table
        got.append((table.name.removeprefix("src_"), next(iter(ts.base_columns)).name))
    assert sorted(got) == sorted(TIMELINE_TIME_COLUMNS)


@pytest.mark.postgres
def test_migrate_on_postgresql_also_creates_the_key_index(tmp_path):
    from tests.conftest import make_store

    store = make_store("postgresql", tmp_path)  # skips without a server
    _load(store, tmp_path, "crm.csv", CRM, "crm", CRM_MAP)
    with store.begin() as conn:  # the schema before rows carried keys (dropping the column drops its index)
        for t in KIND_TABLES.values():
            conn.exec_driver_sql(f'ALTER TABLE "{t.name}" DROP COLUMN cx_key')
        conn.exec_driver_sql("ALTER TABLE identity_map DROP COLUMN cx_key")

    def key_indexes():
        with store.connect() as conn:
            names = conn.execute(sa.text("SELECT indexname FROM pg_indexes WHERE indexname LIKE :p"), {"p": "ix_src_%"})
            return {n for n in names.scalars() if n.endswith("_cx_key")}

    assert key_indexes() == set()
    assert "added column src_customers.cx_key" in store.create_schema()
    assert key_indexes() == {f"ix_src_{name}_cx_key" for name in KIND_TABLES}
    store.dispose()
