"""What is loaded: one row per source with its size, reach, time span, owner and freshness."""

from __future__ import annotations

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cxdash.metrics.timeline import timeline
from cxdash.store.database import KIND_TABLES, customer_keys_table, loads_table, read_frame, sources_table
from cxdash.store.dialect import among
from cxdash.store.kinds import KINDS
from cxdash.store.rollups import appended_keys, appended_kinds, kinds_holding

__all__ = [
    "SOURCE_COLUMNS",
    "TIME_FIELDS",
    "activity_by_month",
    "activity_by_month_after",
    "source_summary",
    "source_summary_after",
]

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
    stats = pd.DataFrame(conn.execute(sa.union_all(*parts)).fetchall(), columns=list(_STATS))
    return _with_sources(conn, stats.set_index("name"))


# the per-source figures read from the rows (the rest of a source's row comes from the registry)
_STATS = ("name", "rows", "customers", "identified", "first_at", "last_at")


def _with_sources(conn: Connection, stats: pd.DataFrame) -> pd.DataFrame:
    """``source_summary``'s frame: every registered source (by name) with its ``stats`` (indexed by
    name; a source without rows has none), its loads and its kind and department as registered now."""
    loads = pd.DataFrame(
        conn.execute(
            sa.select(
                loads_table.c.source,
                sa.func.max(loads_table.c.finished_at).label("loaded_at"),
                sa.func.count().label("loads"),
                sa.func.sum(loads_table.c.rows_rejected).label("rows_rejected"),
            ).group_by(loads_table.c.source)
        ).fetchall(),
        columns=["name", "loaded_at", "loads", "rows_rejected"],
    ).set_index("name")
    s = sources_table
    frame = pd.DataFrame(
        conn.execute(sa.select(s.c.name, s.c.kind, s.c.department).order_by(s.c.name)).fetchall(),
        columns=["name", "kind", "department"],
    )
    for c in _STATS[1:]:
        frame[c] = frame["name"].map(stats[c]) if len(stats) else None
    for c in ("loaded_at", "loads", "rows_rejected"):
        frame[c] = frame["name"].map(loads[c]) if len(loads) else None
    for c in ("rows", "customers", "identified", "loads", "rows_rejected"):
        frame[c] = pd.to_numeric(frame[c]).fillna(0).astype("int64")
    for c in ("first_at", "last_at", "loaded_at"):
        frame[c] = pd.to_datetime(frame[c])
    crm = KIND_TABLES["customers"]
    if conn.execute(sa.select(sa.literal(1)).select_from(crm).limit(1)).first() is None:
        # No CRM to check ids against: every stitched person is a customer (as cxdash.metrics.churn's universe).
        frame["identified"] = frame["customers"]
    frame["unmatched"] = frame["customers"] - frame["identified"]
    return frame[SOURCE_COLUMNS]


def activity_by_month(conn: Connection) -> pd.DataFrame:
    """Timeline rows and distinct customers per calendar month and department.

    Out: ``month`` (first day, Timestamp), ``department``, ``rows``, ``customers``.
    Computed in the database with portable EXTRACT (no engine-only date functions).
    """
    tl = timeline(("ts", "department", "cx_key"))
    year, month = _year_month(tl)
    q = sa.select(
        year,
        month,
        tl.c.department,
        sa.func.count().label("rows"),
        sa.func.count(sa.distinct(tl.c.cx_key)).label("customers"),
    ).group_by(year, month, tl.c.department)
    return _by_month(
        pd.DataFrame(conn.execute(q).fetchall(), columns=["year", "month", "department", "rows", "customers"])
    )


def _year_month(tl: sa.Subquery) -> tuple[sa.Label, sa.Label]:
    return sa.extract("year", tl.c.ts).label("year"), sa.extract("month", tl.c.ts).label("month")


def _by_month(frame: pd.DataFrame) -> pd.DataFrame:
    """``activity_by_month``'s frame from its rows per ``year, month, department``."""
    if frame.empty:
        return pd.DataFrame(columns=["month", "department", "rows", "customers"])
    frame["month"] = pd.to_datetime({"year": frame["year"].astype(int), "month": frame["month"].astype(int), "day": 1})
    frame["department"] = frame["department"].fillna("unknown")
    for c in ("rows", "customers"):
        frame[c] = frame[c].astype("int64")
    return frame[["month", "department", "rows", "customers"]].sort_values(["month", "department"], ignore_index=True)


# ----------------------------------------------------------------------------- after appends
# Both summaries above scan every stored row. After appends that only added rows (no earlier row,
# customer key or CRM record changed: ``cxdash.store.rollups.appends_since``), the summary kept
# from before them is brought up to date from the new rows and their customers' earlier rows alone.


def _earlier_keys(conn: Connection, kinds: list[str], columns: dict, keys: list, loads: list[int]) -> pd.DataFrame:
    """The distinct ``columns`` (label -> function of a kind's table) of the rows of ``kinds``, not
    stored by ``loads``, whose customer key is among ``keys``."""
    parts = [
        sa.select(*[fn(KIND_TABLES[kind]).label(label) for label, fn in columns.items()])
        .where(among(KIND_TABLES[kind].c.cx_key, keys), KIND_TABLES[kind].c.load_id.not_in(loads))
        .distinct()
        for kind in kinds
    ]
    if not parts or not keys:
        return pd.DataFrame(columns=list(columns))
    return read_frame(conn, sa.union(*parts))


def source_summary_after(conn: Connection, before: pd.DataFrame, loads: list[int]) -> pd.DataFrame | None:
    """``source_summary`` after the appends ``loads``, from ``before`` (the summary before them): the
    rows, customers and time span of the sources they loaded grow by their rows. None (compute it
    whole) when ``before`` is not such a summary, the appends hold CRM records or touch more than
    ``rollups.INCREMENT_MAX_KEYS`` customers."""
    if list(before.columns) != SOURCE_COLUMNS or before["name"].duplicated().any():
        return None
    if "customers" in appended_kinds(conn, loads):  # CRM records decide who counts as identified
        return None
    appended = appended_keys(conn, loads)
    if appended is None:
        return None
    ck = customer_keys_table
    added, kinds = [], []
    for kind in kinds_holding(conn, loads):
        t = KIND_TABLES[kind]
        ts = t.c[TIME_FIELDS[kind]]
        frame = read_frame(
            conn,
            sa.select(
                t.c.source.label("name"),
                t.c.cx_key,
                ck.c.known,
                sa.func.count().label("rows"),
                sa.func.min(ts).label("first_at"),
                sa.func.max(ts).label("last_at"),
            )
            .select_from(t.outerjoin(ck, ck.c.cx_key == t.c.cx_key))
            .where(t.c.load_id.in_(loads))
            .group_by(t.c.source, t.c.cx_key, ck.c.known),
        )
        if len(frame):
            added.append(frame)
            kinds.append(kind)
    new = pd.concat(added, ignore_index=True) if added else pd.DataFrame(columns=["name", "cx_key", "known"])
    people = new.dropna(subset=["cx_key"]).drop_duplicates(["name", "cx_key"])
    columns = {"name": lambda t: t.c.source, "cx_key": lambda t: t.c.cx_key}
    earlier = _earlier_keys(conn, kinds, columns, appended, loads)
    first_seen = people.merge(earlier, on=["name", "cx_key"], how="left", indicator=True)
    first_seen = first_seen[first_seen["_merge"] == "left_only"]
    grown = pd.DataFrame(
        {
            "rows": new.groupby("name")["rows"].sum() if len(new) else pd.Series(dtype="int64"),
            "first_at": new.groupby("name")["first_at"].min() if len(new) else pd.Series(dtype="datetime64[us]"),
            "last_at": new.groupby("name")["last_at"].max() if len(new) else pd.Series(dtype="datetime64[us]"),
            "customers": first_seen.groupby("name").size(),
            "identified": first_seen[first_seen["known"].fillna(False).astype(bool)].groupby("name").size(),
        }
    )
    stats = before.set_index("name")[list(_STATS[1:])]
    both = stats.index.union(grown.index)
    stats, grown = stats.reindex(both), grown.reindex(both)
    summed = {c: stats[c].fillna(0) + grown[c].fillna(0) for c in ("rows", "customers", "identified")}
    spans = {
        "first_at": pd.concat([stats["first_at"], grown["first_at"]], axis=1).min(axis=1),
        "last_at": pd.concat([stats["last_at"], grown["last_at"]], axis=1).max(axis=1),
    }
    return _with_sources(conn, pd.DataFrame({**summed, **spans}))


def activity_by_month_after(conn: Connection, before: pd.DataFrame, loads: list[int]) -> pd.DataFrame | None:
    """``activity_by_month`` after the appends ``loads``, from ``before`` (the frame before them): the
    months and departments of their steps gain their rows, and the customers for whom the step is
    their first in that month and department. None (compute it whole) as ``source_summary_after``,
    or when ``before`` holds a month and department twice (a department named "unknown" beside
    steps with none)."""
    if list(before.columns) != ["month", "department", "rows", "customers"]:
        return None
    if before.duplicated(["month", "department"]).any():
        return None
    keys = appended_keys(conn, loads)
    if keys is None:
        return None
    tl = timeline(("ts", "department", "cx_key", "load_id"))
    year, month = _year_month(tl)
    new = read_frame(
        conn,
        sa.select(year, month, tl.c.department, tl.c.cx_key, sa.func.count().label("rows"))
        .where(tl.c.load_id.in_(loads))
        .group_by(year, month, tl.c.department, tl.c.cx_key),
    )
    group = ["year", "month", "department"]
    if keys:
        earlier = read_frame(
            conn,
            sa.select(year, month, tl.c.department, tl.c.cx_key)
            .where(among(tl.c.cx_key, keys), tl.c.load_id.not_in(loads))
            .distinct(),
        )
    else:
        earlier = pd.DataFrame(columns=[*group, "cx_key"])
    people = new.dropna(subset=["cx_key"])
    for frame in (people, earlier):  # EXTRACT's type differs by engine: compare as integers
        frame[["year", "month"]] = frame[["year", "month"]].astype("int64")
    seen = people.merge(earlier, on=[*group, "cx_key"], how="left", indicator=True)
    first = seen[seen["_merge"] == "left_only"]
    rows = new.groupby(group, dropna=False)["rows"].sum()
    customers = first.groupby(group, dropna=False).size().reindex(rows.index, fill_value=0)
    grown = _by_month(pd.DataFrame({"rows": rows, "customers": customers}).reset_index())
    if grown.duplicated(["month", "department"]).any():
        return None
    both = pd.concat([before, grown], ignore_index=True)
    summed = both.groupby(["month", "department"], as_index=False)[["rows", "customers"]].sum()
    return _by_month(
        summed.assign(year=summed["month"].dt.year, month=summed["month"].dt.month)[
            ["year", "month", "department", "rows", "customers"]
        ]
    )
