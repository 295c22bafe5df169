"""Periods: the data's date, the default and monthly periods, each one's comparison period, and
the period spine every period KPI is joined to.

Periods are half-open: ``p_start <= ts < p_end``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cxdash.metrics.definitions import DEFAULT_PERIOD_DAYS
from cxdash.metrics.timeline import TIMELINE_TIME_COLUMNS
from cxdash.store import steady
from cxdash.store.database import KIND_TABLES

__all__ = [
    "MAX_DAY_SPINE_ROWS",
    "Period",
    "as_of",
    "day_spine",
    "default_period",
    "monthly_periods",
    "moves_as_of",
    "period_spine",
]

# A day spine longer than this is not built (the KPIs join on the period bounds instead): its rows go to
# the database as parameters, three per row (PostgreSQL takes at most 65,535 in one statement).
MAX_DAY_SPINE_ROWS = 20_000


def as_of(conn: Connection) -> datetime | None:
    """The data's "now": the latest time of any timeline step (``max(ts)`` over ``timeline()``).

    Read as one ``max`` per time column of the source tables, without the timeline's joins: every
    stored row's source is registered (a load registers it first), so the joins drop no row, and the
    pages ask for this date several times per view (issue 17: 55 ms -> 5 ms at 200k customers).
    Read once per refresh (``cxdash.store.steady``)."""
    return steady.kept(conn, ("as_of",), lambda: _latest_time(conn))


def _latest_time(conn: Connection) -> datetime | None:
    parts = [sa.select(sa.func.max(KIND_TABLES[kind].c[column]).label("ts")) for kind, column in TIMELINE_TIME_COLUMNS]
    latest = sa.union_all(*parts).subquery("latest")
    return conn.execute(sa.select(sa.func.max(latest.c.ts))).scalar()


def moves_as_of(conn: Connection, loads: list[int]) -> bool:
    """Whether the rows the loads ``loads`` stored set the data's date (``as_of``) where the other
    rows would not: a time later than any other row's. A few rows are read by their loads, then at
    most one lookup of the latest time among the others. Read once per refresh (``cxdash.store.steady``)."""
    return steady.kept(conn, ("moves_as_of", tuple(loads)), lambda: _moves_as_of(conn, loads))


def _moves_as_of(conn: Connection, loads: list[int]) -> bool:
    parts = [
        sa.select(sa.func.max(KIND_TABLES[kind].c[column]).label("ts")).where(KIND_TABLES[kind].c.load_id.in_(loads))
        for kind, column in TIMELINE_TIME_COLUMNS
    ]
    latest = sa.union_all(*parts).subquery("appended")
    added = conn.execute(sa.select(sa.func.max(latest.c.ts))).scalar()
    now = as_of(conn)
    if added is None or now is None or added < now:
        return False
    others = [
        sa.select(sa.literal(1)).where(KIND_TABLES[kind].c[column] == now, KIND_TABLES[kind].c.load_id.not_in(loads))
        for kind, column in TIMELINE_TIME_COLUMNS
    ]
    return conn.execute(sa.union_all(*others).limit(1)).first() is None


@dataclass(frozen=True)
class Period:
    """A half-open period ``[start, end)``; ``previous`` is the period of the same length before it."""

    start: datetime
    end: datetime

    def __post_init__(self):
        if self.end <= self.start:
            raise ValueError(f"a period must end after it starts (got {self.start} to {self.end})")

    @property
    def previous(self) -> Period:
        return Period(self.start - (self.end - self.start), self.start)

    @property
    def days(self) -> float:
        return (self.end - self.start).total_seconds() / 86400

    @classmethod
    def from_dates(cls, first: date, last: date) -> Period:
        """The days ``first`` to ``last``, both included."""
        return cls(
            datetime(first.year, first.month, first.day), datetime(last.year, last.month, last.day) + timedelta(days=1)
        )

    def label(self) -> str:
        last = self.end - timedelta(days=1)
        return f"{self.start:%d %b %Y} - {last:%d %b %Y}"


def default_period(now: datetime | None, days: int = DEFAULT_PERIOD_DAYS) -> Period | None:
    """The ``days`` days up to and including the day of ``now`` (the data's latest date)."""
    if now is None:
        return None
    end = datetime(now.year, now.month, now.day) + timedelta(days=1)
    return Period(end - timedelta(days=days), end)


def monthly_periods(now: datetime | None, months: int = 12) -> list[Period]:
    """The last ``months`` calendar months up to the month of ``now`` (the last one may be partial)."""
    if now is None:
        return []
    out = []
    y, m = now.year, now.month
    for _ in range(months):
        start = datetime(y, m, 1)
        ny, nm = (y + 1, 1) if m == 12 else (y, m + 1)
        out.append(Period(start, datetime(ny, nm, 1)))
        y, m = (y - 1, 12) if m == 1 else (y, m - 1)
    return out[::-1]


def period_spine(periods: list[Period]) -> sa.Subquery:
    """A derived table with one row per period: ``bucket`` (its index), ``p_start``, ``p_end``, ``prev_start``."""
    rows = [
        sa.select(
            sa.literal(i, sa.Integer).label("bucket"),
            sa.cast(sa.literal(p.start, sa.DateTime), sa.DateTime).label("p_start"),
            sa.cast(sa.literal(p.end, sa.DateTime), sa.DateTime).label("p_end"),
            sa.cast(sa.literal(p.previous.start, sa.DateTime), sa.DateTime).label("prev_start"),
        )
        for i, p in enumerate(periods)
    ]
    return (sa.union_all(*rows) if len(rows) > 1 else rows[0]).subquery("spine")


def day_spine(periods: list[Period], *, previous: bool = False) -> sa.Subquery | None:
    """A derived table with one row per period and day in it: ``bucket``, ``day`` (midnight) and
    ``cur`` (1; with ``previous``, the days of each period's comparison period too, with ``cur`` 0).
    Rows dated by their day join it on equality, where joining ``period_spine`` compares every row
    with every period's bounds. Only for periods that start and end at midnight; None when it would
    have more than ``MAX_DAY_SPINE_ROWS`` rows."""
    rows = []
    for i, p in enumerate(periods):
        first = p.previous.start if previous else p.start
        days = (p.end - first).days
        if len(rows) + days > MAX_DAY_SPINE_ROWS:
            return None
        rows.extend((i, first + timedelta(days=d), int(first + timedelta(days=d) >= p.start)) for d in range(days))
    if not rows:
        return None
    values = sa.values(
        sa.column("bucket", sa.Integer), sa.column("day", sa.DateTime), sa.column("cur", sa.Integer), name="day_rows"
    ).data(rows)
    return sa.select(
        sa.cast(values.c.bucket, sa.Integer).label("bucket"),
        sa.cast(values.c.day, sa.DateTime).label("day"),
        sa.cast(values.c.cur, sa.Integer).label("cur"),
    ).subquery("days")
