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
from cxdash.metrics.timeline import timeline

__all__ = ["Period", "as_of", "default_period", "monthly_periods", "period_spine"]


def as_of(conn: Connection) -> datetime | None:
    """The data's "now": the latest timestamp of any stored row."""
    tl = timeline(("ts",))
    return conn.execute(sa.select(sa.func.max(tl.c.ts))).scalar()


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
