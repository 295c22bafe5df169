"""The audit log: who signed in, uploaded, exported, erased or changed a role, and when.

Call ``record(store, actor, action, detail)`` from anywhere (the UI, the CLI, a job). ``detail``
is a small dict stored as JSON; it must never hold personal data (an erasure records a salted
hash of the customer id, not the id). Admins read the log with ``recent``.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

import pandas as pd
import sqlalchemy as sa

from cxdash.store.database import Store, audit_table

__all__ = ["ACTIONS", "amend", "recent", "record", "record_in"]

log = logging.getLogger(__name__)

# The actions the app writes; others may be added (the column is free text).
ACTIONS = (
    "sign_in",
    "sign_in_failed",
    "sign_out",
    "account_locked",
    "access_denied",
    "user_added",
    "role_changed",
    "user_disabled",
    "user_enabled",
    "password_reset",
    "user_unlocked",
    "upload",
    "export",
    "erasure",
)


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _text(detail: dict | None) -> str:
    return json.dumps(detail or {}, default=str, sort_keys=True)


def record_in(
    conn: sa.Connection, actor: str, action: str, detail: dict | None = None, *, at: datetime | None = None
) -> int:
    """Append one entry on ``conn`` (the caller's transaction on the app-state database) and return
    its id (max + 1: a concurrent writer's clash raises ``IntegrityError``; ``record`` retries)."""
    next_id = int(conn.execute(sa.select(sa.func.coalesce(sa.func.max(audit_table.c.id), 0))).scalar()) + 1
    conn.execute(
        audit_table.insert().values(
            id=next_id, occurred_at=at or _now(), actor=actor or "unknown", action=action, detail=_text(detail)
        )
    )
    return next_id


def amend(conn: sa.Connection, entry_id: int, detail: dict) -> None:
    """Replace the detail of entry ``entry_id`` on ``conn``: how a load's ``upload`` entry, written
    as started before the load, says how it ended inside the load's own transaction (an update of
    one committed row, so no id is chosen inside a long transaction; see ``cxdash.ingest.load``)."""
    conn.execute(audit_table.update().where(audit_table.c.id == entry_id).values(detail=_text(detail)))


def record(store: Store, actor: str, action: str, detail: dict | None = None, *, at: datetime | None = None) -> int:
    """Append one entry and return its id. Ids are explicit (max + 1, retried on a clash with a
    concurrent writer), so the log reads in order on every engine."""
    for attempt in range(5):
        try:
            with store.app_begin() as conn:
                return record_in(conn, actor, action, detail, at=at)
        except sa.exc.IntegrityError:
            if attempt == 4:
                raise
    raise AssertionError("unreachable")


def recent(store: Store, *, limit: int = 500, action: str | None = None, actor: str | None = None) -> pd.DataFrame:
    """The newest entries first. Out: ``id, occurred_at, actor, action, detail`` (detail as JSON text)."""
    t = audit_table
    q = sa.select(t.c.id, t.c.occurred_at, t.c.actor, t.c.action, t.c.detail).order_by(t.c.id.desc()).limit(limit)
    if action:
        q = q.where(t.c.action == action)
    if actor:
        q = q.where(t.c.actor == actor)
    with store.app_begin() as conn:
        rows = conn.execute(q).fetchall()
    return pd.DataFrame([tuple(r) for r in rows], columns=["id", "occurred_at", "actor", "action", "detail"])
