"""The data version: a number that moves with every change to the analytical data.

Pages and stored summaries key their caches on it (``cxdash.jobs.summaries``, ``cxdash.ui.data``),
and a trained model records the version it was trained on. It lives in the ``changes`` table of
the analytical store: one row per committed change (a load, a replace, an erasure, a source
moved to another department), numbered ``1, 2, 3...``; the version is the highest number.
``record_change`` is called inside the change's own transaction, so the version moves exactly
when the change commits.

A store written before this table existed moved its version by ``loads.load_id`` (and an
erasure added a pretend load to move it): its upgrade (``Store.create_schema``) starts the table
at that number, so the version never goes back and no cache keyed on it is reused.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cxdash.store import steady
from cxdash.store.database import CHANGE_KINDS, changes_table

__all__ = ["CHANGE_KINDS", "changes_table", "data_stamp", "data_version", "record_change"]


def data_version(conn: Connection) -> int:
    """The current data version (0 for a store that never changed)."""
    return int(conn.execute(sa.select(sa.func.coalesce(sa.func.max(changes_table.c.id), 0))).scalar())


def data_stamp(conn: Connection) -> tuple[int, str]:
    """The data version and when that change was made. Unlike the version alone it differs between
    a store and the same store emptied and filled again (its versions start over): a key for
    results kept in memory across stores at one URL (``cxdash.jobs.views``). Read once per refresh
    (``cxdash.store.steady``)."""
    return steady.kept(conn, ("data_stamp",), lambda: _data_stamp(conn))


def _data_stamp(conn: Connection) -> tuple[int, str]:
    c = changes_table.c
    row = conn.execute(sa.select(c.id, c.changed_at).order_by(c.id.desc()).limit(1)).first()
    return (0, "") if row is None else (int(row.id), str(row.changed_at))


def record_change(conn: Connection, kind: str, *, load_id: int | None = None) -> int:
    """Move the version for a change made in ``conn``'s transaction; returns the new version."""
    if kind not in CHANGE_KINDS:
        raise ValueError(f"a change is one of {CHANGE_KINDS}, not {kind!r}")
    version = data_version(conn) + 1
    conn.execute(
        changes_table.insert().values(
            id=version, kind=kind, changed_at=datetime.now(UTC).replace(tzinfo=None), load_id=load_id
        )
    )
    return version
