"""What is loaded: one row per source with its size, reach, time span, owner and freshness."""

from __future__ import annotations

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cxdash.metrics.timeline import timeline
from cxdash.store.database import KIND_TABLES, customer_keys_table, loads_table, sources_table
from cxdash.store.kinds import KINDS

__all__ = ["SOURCE_COLUMNS", "TIME_FIELDS", "source_summary"]

# The field that places a kind's rows in time (for the time span and freshness).
TIME_FIELDS = {
    "customers": "signup_date",
    "events": "timestamp",
    "tickets": "opened_at",
    "transactions": "timestamp",
    "subscriptions": "start",
    "opportunities": "created_at",
    "churn": "churned_at",
}

SOURCE_COLUMNS = [
    "name",
    "kind",
    "department",
    "rows",
    "customers",
    "identified",
    "unmatched",
    "first_at",
    "last_at",
    "loaded_at",
    "loads",
    "rows_rejected",
]


def source_summary(conn: Connection) -> pd.DataFrame:
    """One row per loaded source.

    Out: ``name, kind, department, rows, customers`` (distinct stitched people with at least one
    row), ``identified`` (of those, the customers the KPIs count: stitched to a CRM customer when a
    customer source is loaded, else every one), ``unmatched`` (the rest: people the source knows
    only by its own ids, such as anonymous web visitors never tied to a CRM customer; ``customers =
    identified + unmatched``), ``first_at, last_at`` (time span of the rows), ``loaded_at`` (last
    load), ``loads``, ``rows_rejected`` (over all loads).
    """
    keys = customer_keys_table
    parts = []
    for kind in KINDS:
        t = KIND_TABLES[kind]
        ts = t.c[TIME_FIELDS[kind]]
        parts.append(
            sa.select(
                t.c.source.label("name"),
                sa.func.count().label("rows"),
                # every row carries its person's integer key: one join to the key table tells CRM
                # customers from ids no CRM record claims
                sa.func.count(sa.distinct(t.c.cx_key)).label("customers"),
                sa.func.count(sa.distinct(sa.case((keys.c.known.is_(True), t.c.cx_key)))).label("identified"),
                sa.func.min(ts).label("first_at"),
                sa.func.max(ts).label("last_at"),
            )
            .select_from(t.outerjoin(keys, keys.c.cx_key == t.c.cx_key))
            .group_by(t.c.source)
        )
    stats = sa.union_all(*parts).subquery("stats")
    loads = (
        sa.select(
            loads_table.c.source,
            sa.func.max(loads_table.c.finished_at).label("loaded_at"),
            sa.func.count().label("loads"),
            sa.func.sum(loads_table.c.rows_rejected).label("rows_rejected"),
        )
        .group_by(loads_table.c.source)
        .subquery("l")
    )
    s = sources_table
    q = (
        sa.select(
            s.c.name,
            s.c.kind,
            s.c.department,
            sa.func.coalesce(stats.c.rows, 0).label("rows"),
            sa.func.coalesce(stats.c.customers, 0).label("customers"),
            sa.func.coalesce(stats.c.identified, 0).label("identified"),
            sa.literal(0).label("unmatched"),
            stats.c.first_at,
            stats.c.last_at,
            loads.c.loaded_at,
            loads.c.loads,
            loads.c.rows_rejected,
        )
        .select_from(s.outerjoin(stats, stats.c.name == s.c.name).outerjoin(loads, loads.c.source == s.c.name))
        .order_by(s.c.name)
    )
    frame = pd.DataFrame(conn.execute(q).fetchall(), columns=SOURCE_COLUMNS)
    for c in ("rows", "customers", "identified", "loads", "rows_rejected"):
        frame[c] = frame[c].fillna(0).astype("int64")
    crm = KIND_TABLES["customers"]
    if conn.execute(sa.select(sa.literal(1)).select_from(crm).limit(1)).first() is None:
        # No CRM to check ids against: every stitched person is a customer (as cxdash.metrics.churn's universe).
        frame["identified"] = frame["customers"]
    frame["unmatched"] = frame["customers"] - frame["identified"]
    return frame


def activity_by_month(conn: Connection) -> pd.DataFrame:
    """Timeline rows and distinct customers per calendar month and department.

    Out: ``month`` (first day, Timestamp), ``department``, ``rows``, ``customers``.
    Computed in the database with portable EXTRACT (no engine-only date functions).
    """
    tl = timeline()
    year = sa.extract("year", tl.c.ts).label("year")
    month = sa.extract("month", tl.c.ts).label("month")
    q = sa.select(
        year,
        month,
        tl.c.department,
        sa.func.count().label("rows"),
        sa.func.count(sa.distinct(tl.c.cx_key)).label("customers"),
    ).group_by(year, month, tl.c.department)
    frame = pd.DataFrame(conn.execute(q).fetchall(), columns=["year", "month", "department", "rows", "customers"])
    if frame.empty:
        return pd.DataFrame(columns=["month", "department", "rows", "customers"])
    frame["month"] = pd.to_datetime({"year": frame["year"].astype(int), "month": frame["month"].astype(int), "day": 1})
    frame["department"] = frame["department"].fillna("unknown")
    return frame[["month", "department", "rows", "customers"]].sort_values(["month", "department"], ignore_index=True)
