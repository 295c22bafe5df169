"""Small SQL and frame helpers the KPI modules share: counts, epochs, days, ratios, result frames."""

from __future__ import annotations

from datetime import datetime

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cxdash.store.database import customer_keys_table
from cxdash.store.rollups import day_of

__all__ = ["at_midnight", "count_rows", "day_of", "epoch", "ratio", "read_frame", "with_cx_id"]


def count_rows(conn: Connection, table: sa.Table, *where) -> int:
    return int(conn.execute(sa.select(sa.func.count()).select_from(table).where(*where)).scalar() or 0)


def epoch(col) -> sa.ColumnElement:
    return sa.cast(sa.extract("epoch", col), sa.Double)


def with_cx_id(per_key: sa.Subquery, columns: tuple[str, ...] | None = None) -> sa.Select:
    """``cx_id`` and ``columns`` (default: all but ``cx_key``) of a per-customer result keyed on ``cx_key``:
    the text identifier is joined once, on the small per-customer result, for outputs that name customers."""
    im = customer_keys_table
    names = [c.name for c in per_key.c if c.name != "cx_key"] if columns is None else list(columns)
    return sa.select(im.c.cx_id, *[per_key.c[n] for n in names]).select_from(
        per_key.join(im, im.c.cx_key == per_key.c.cx_key)
    )


def at_midnight(moment: datetime) -> bool:
    return moment == datetime(moment.year, moment.month, moment.day)


def read_frame(conn: Connection, q, index: str = "bucket") -> pd.DataFrame:
    res = conn.execute(q)
    # plain tuples: pandas probes every SQLAlchemy Row for attributes it lacks, each probe a raised
    # and caught KeyError (0.6 s of a 1 s RFM summary at 100k customers); the values are the same
    frame = pd.DataFrame([tuple(r) for r in res.all()], columns=list(res.keys()))
    return frame.set_index(index) if index in frame.columns else frame


def ratio(num, den) -> pd.Series:
    num = pd.to_numeric(num, errors="coerce").astype(float)
    den = pd.to_numeric(den, errors="coerce").astype(float)
    return (num / den.where(den > 0)).astype(float)
