"""Per-customer daily rollups, kept with the data: the KPIs for any period read these, not every raw row.

``activity_days``: one row per customer, day, source and row department on which any step of the
unified timeline happened (``ACTIVITY_COLUMNS``: a signup, an event, a ticket opened or closed, a
payment...). ``revenue_days``: per customer, day and transaction status, the sum of the amounts.
``active_keys``: the customers of ``activity_days`` per source (the KPI coverage's "has any
activity" without a pass over every customer's days).
A day is the timestamp's calendar day (``day_of``), so a period that starts and ends at midnight
counts the same customers and amounts from the rollups as from the rows.

The rollups hold the data version they were built for (``rollup_state``). Readers use them only
when ``current`` (that version is the store's); otherwise they compute from the raw rows, slower
and never stale. ``maintain`` brings them up to date after changes, inside the caller's
transaction: loads noted in ``rollup_appends`` (appends that changed no earlier row's customer key;
``cxdash.ingest`` notes them) are added as they are, in a few milliseconds for a small file; any
other change since (a replace, an erasure, an append that restitched customers) rebuilds them from
every row. A rebuild of the identity map (``cxdash.identity``) ``invalidate``s them; an erasure ``clear``s them.

Rows without a customer key are left out, as every KPI leaves them out. Departments are kept as
the row's own (events and tickets carry one) and joined to the source's at read time, so changing
a source's department on Data health needs no rebuild.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cxdash.store import steady
from cxdash.store.database import (
    KIND_TABLES,
    active_keys_table,
    activity_days_table,
    changes_table,
    loads_table,
    revenue_days_table,
    rollup_appends_table,
    rollup_state_table,
    sources_table,
)
from cxdash.store.version import data_version

__all__ = [
    "ACTIVITY_COLUMNS",
    "INCREMENT_MAX_KEYS",
    "activity_days_table",
    "appended_keys",
    "appended_kinds",
    "appends_since",
    "clear",
    "current",
    "customers_with_activity",
    "day_of",
    "held_version",
    "invalidate",
    "maintain",
    "note_append",
    "revenue_days_table",
]

# (kind, time column, the row's own department column or None) of every timeline step:
# cxdash.metrics.timeline builds its steps from the same list.
ACTIVITY_COLUMNS = (
    ("customers", "signup_date", None),
    ("events", "timestamp", "department"),
    ("tickets", "opened_at", "department"),
    ("tickets", "closed_at", "department"),
    ("transactions", "timestamp", None),
    ("subscriptions", "start", None),
    ("subscriptions", "end", None),
    ("opportunities", "created_at", None),
    ("opportunities", "closed_at", None),
    ("churn", "churned_at", None),
    ("customers", "churned_at", None),
)


def day_of(ts) -> sa.ColumnElement:
    """The timestamp truncated to its day (portable: via a DATE cast)."""
    return sa.cast(sa.cast(ts, sa.Date), sa.DateTime)


def _activity(load_id: int | None = None) -> sa.Select:
    parts = []
    for kind, column, department in ACTIVITY_COLUMNS:
        t = KIND_TABLES[kind]
        ts = t.c[column]
        where = [ts.is_not(None), t.c.cx_key.is_not(None)]
        if load_id is not None:
            where.append(t.c.load_id == load_id)
        own = t.c[department] if department else sa.null()
        parts.append(
            sa.select(
                t.c.cx_key, day_of(ts).label("day"), t.c.source, sa.cast(own, sa.String).label("department")
            ).where(*where)
        )
    steps = sa.union(*parts).subquery("activity")  # UNION: one row per customer, day, source, department
    return sa.select(steps.c.cx_key, steps.c.day, steps.c.source, steps.c.department)


def _revenue(load_id: int | None = None) -> sa.Select:
    x = KIND_TABLES["transactions"]
    day = day_of(x.c.timestamp)
    where = [x.c.cx_key.is_not(None), x.c.timestamp.is_not(None), x.c.amount.is_not(None)]
    if load_id is not None:
        where.append(x.c.load_id == load_id)
    return (
        sa.select(x.c.cx_key, day.label("day"), x.c.status, sa.func.sum(x.c.amount).label("amount"))
        .where(*where)
        .group_by(x.c.cx_key, day, x.c.status)
    )


def _add(conn: Connection, load_id: int | None = None) -> None:
    a, r, k = activity_days_table, revenue_days_table, active_keys_table
    conn.execute(a.insert().from_select(["cx_key", "day", "source", "department"], _activity(load_id)))
    conn.execute(r.insert().from_select(["cx_key", "day", "status", "amount"], _revenue(load_id)))
    # A whole build reads the customers off the days just stored; a load adds its own (a customer
    # already there comes again: readers take each once).
    days = sa.select(a.c.cx_key, a.c.source) if load_id is None else _activity(load_id)
    keys = days.subquery("keyed_days")
    conn.execute(k.insert().from_select(["cx_key", "source"], sa.select(keys.c.cx_key, keys.c.source).distinct()))


def customers_with_activity() -> sa.Subquery:
    """``cx_key`` of every customer with any timeline step (of a known source), once each: read from
    ``active_keys`` (a row per customer and source), not from every customer's days."""
    k = active_keys_table
    return (
        sa.select(k.c.cx_key).where(k.c.source.in_(sa.select(sources_table.c.name))).distinct().subquery("active_keys")
    )


def held_version(conn: Connection) -> int | None:
    """The data version the rollups were built for (None: not built, or cleared)."""
    return conn.execute(sa.select(sa.func.max(rollup_state_table.c.data_version))).scalar()


def current(conn: Connection) -> bool:
    """Whether the rollups hold the store's data as it is now."""
    held = held_version(conn)
    return held is not None and held == data_version(conn)


def invalidate(conn: Connection) -> None:
    """Note that the rollups no longer hold the data (customer keys moved): readers use the raw rows
    and the next ``maintain`` rebuilds them."""
    conn.execute(rollup_state_table.delete())


def clear(conn: Connection) -> None:
    """Forget the rollups (the next ``maintain`` rebuilds them; readers use the raw rows till then)."""
    for table in (rollup_state_table, activity_days_table, revenue_days_table, active_keys_table, rollup_appends_table):
        conn.execute(table.delete())


def note_append(conn: Connection, load_id: int) -> None:
    """Note, in the load's transaction, that load ``load_id`` only added rows: no earlier row changed
    (its customer key included), so the rollups can take its rows as they are."""
    conn.execute(rollup_appends_table.insert().values(load_id=load_id))


# The most customers an append's rows may touch for a summary kept from before it to be brought
# up to date from its rows (their earlier rows are looked up by value); more, and it is computed whole.
INCREMENT_MAX_KEYS = 2_000


def appends_since(conn: Connection, version: int, *, departments: bool = False) -> list[int] | None:
    """The loads (ids, in order) of every change after data ``version`` when each is an append noted
    by ``note_append`` (it added rows and changed no earlier row: no row's customer key, no earlier
    customer's CRM flag, no hub, no link), else None. Such a load may hold CRM records of new
    customers (``appended_kinds``). ``departments``: a source's department change counts as
    nothing (for readers that keep rows' own departments). The notes are kept until the rollups
    are cleared (a rebuild, an erasure), so a change whose note is gone reads as not an append."""
    return steady.kept(
        conn, ("appends_since", version, departments), lambda: _appends_since(conn, version, departments)
    )


def _appends_since(conn: Connection, version: int, departments: bool) -> list[int] | None:
    c, ap = changes_table, rollup_appends_table
    since = conn.execute(
        sa.select(c.c.kind, c.c.load_id, ap.c.load_id.label("noted"))
        .select_from(c.outerjoin(ap, ap.c.load_id == c.c.load_id))
        .where(c.c.id > version)
        .order_by(c.c.id)
    ).all()
    ignored = {"department"} if departments else set()
    if not all((kind == "load" and noted is not None) or kind in ignored for kind, _, noted in since):
        return None
    return [load_id for kind, load_id, _ in since if kind == "load"]


def appended_keys(conn: Connection, loads: list[int]) -> list[int] | None:
    """The customer keys of the rows the loads ``loads`` stored (sorted), or None when there are
    more than ``INCREMENT_MAX_KEYS`` (read without reading the rest)."""
    return steady.kept(conn, ("appended_keys", tuple(loads)), lambda: _appended_keys(conn, loads))


def _appended_keys(conn: Connection, loads: list[int]) -> list[int] | None:
    parts = [
        sa.select(t.c.cx_key).where(t.c.load_id.in_(loads), t.c.cx_key.is_not(None))
        for t in (KIND_TABLES[kind] for kind in kinds_holding(conn, loads))
    ]
    if not parts:
        return []
    keys = conn.execute(sa.union(*parts).limit(INCREMENT_MAX_KEYS + 1)).scalars().all()
    return None if len(keys) > INCREMENT_MAX_KEYS else sorted(int(k) for k in keys)


def appended_kinds(conn: Connection, loads: list[int]) -> set[str]:
    """The kinds of the sources the loads ``loads`` stored into."""
    return steady.kept(conn, ("appended_kinds", tuple(loads)), lambda: _appended_kinds(conn, loads))


def kinds_holding(conn: Connection, loads: list[int] | None) -> list[str]:
    """The kinds (in ``KIND_TABLES``' order) whose tables hold rows of the loads ``loads``, which a
    reader of those rows alone need not look past: a load stores into the kind the load log names.
    Every kind when ``loads`` is None (every row) or the log names none of them."""
    if loads is None:
        return list(KIND_TABLES)
    if not loads:
        return []
    lt = loads_table
    named = steady.kept(
        conn,
        ("kinds_holding", tuple(loads)),
        lambda: set(conn.execute(sa.select(lt.c.kind).where(lt.c.load_id.in_(loads)).distinct()).scalars()),
    )
    return [kind for kind in KIND_TABLES if kind in named] or list(KIND_TABLES)


def _appended_kinds(conn: Connection, loads: list[int]) -> set[str]:
    s, lt = sources_table, loads_table
    q = sa.select(s.c.kind).select_from(s.join(lt, lt.c.source == s.c.name)).where(lt.c.load_id.in_(loads))
    return set(conn.execute(q.distinct()).scalars())


def maintain(conn: Connection) -> str:
    """Bring the rollups to the store's data version in ``conn``'s transaction. Returns what it did:
    ``current`` (no row changed: nothing to do, or only departments moved), ``added N loads`` or
    ``rebuilt``."""
    version = data_version(conn)
    held = held_version(conn)
    if held == version:
        return "current"
    # a department change moves no row (the rollups keep rows' own departments): nothing to add
    added = None if held is None or held > version else appends_since(conn, held, departments=True)
    if added is None:
        clear(conn)
        _add(conn)
    else:
        for load_id in added:
            _add(conn, load_id)
        conn.execute(rollup_state_table.delete())
    conn.execute(
        rollup_state_table.insert().values(data_version=version, built_at=datetime.now(UTC).replace(tzinfo=None))
    )
    if added is None:
        return "rebuilt"
    return f"added {len(added)} load{'s' if len(added) != 1 else ''}" if added else "current"
