"""Funnels: how many cases go through an ordered list of steps within a window, by segment."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cxdash.journeys.log import LogSpec, _epoch, _frame, _median, _numeric, _positions, prepare_log

__all__ = ["funnel"]


def funnel(
    conn: Connection,
    events: sa.FromClause,
    steps: Sequence[str],
    *,
    window_days: float = 30.0,
    segments: sa.FromClause | None = None,
    spec: LogSpec | None = None,
    **keys,
) -> pd.DataFrame:
    """An ordered funnel: each case enters at its first ``steps[0]`` and converts through step
    k when it does ``steps[k]`` after step k-1 and within ``window_days`` of entering. "After"
    is by the journey's step order (time, then the files' order), so a step logged at the same
    second but on a later line still follows.

    ``segments`` (optional selectable ``case_id, segment``) breaks the funnel down by segment.
    Out: one row per (segment, step): ``segment`` ("all" without segments), ``step`` (1-based),
    ``activity, customers, conversion`` (of those entering), ``step_conversion`` (of the
    previous step), ``dropped`` (lost since the previous step), ``median_seconds_to_convert``
    (from entering to this step).
    """
    if not steps:
        raise ValueError("funnel() needs at least one step, e.g. steps=['checkout', 'purchase']")
    log = _positions(prepare_log(events, spec, **keys))
    window_s = window_days * 86400.0
    # Within a case time never decreases with the position, so the earliest qualifying position
    # and the earliest qualifying time belong to the same step.
    entry = (
        sa.select(log.c.case_id, sa.func.min(log.c.pos).label("p1"), sa.func.min(log.c.ts).label("t1"))
        .where(log.c.activity == steps[0])
        .group_by(log.c.case_id)
        .subquery("f1")
    )
    reached = [entry]
    prev = entry
    for k, name in enumerate(steps[1:], start=2):
        nxt = (
            sa.select(
                prev.c.case_id, prev.c.t1, sa.func.min(log.c.pos).label(f"p{k}"), sa.func.min(log.c.ts).label(f"t{k}")
            )
            .select_from(prev.join(log, log.c.case_id == prev.c.case_id))
            .where(
                log.c.activity == name,
                log.c.pos > prev.c[f"p{k - 1}"],
                _epoch(log.c.ts) - _epoch(prev.c.t1) <= window_s,
            )
            .group_by(prev.c.case_id, prev.c.t1)
            .subquery(f"f{k}")
        )
        reached.append(nxt)
        prev = nxt
    parts = []
    for k, sq in enumerate(reached, start=1):
        seg = sa.literal_column("'all'", sa.String)
        base = sq
        if segments is not None:
            base = sq.outerjoin(segments, segments.c.case_id == sq.c.case_id)
            seg = sa.func.coalesce(sa.cast(segments.c.segment, sa.String), "unknown")
        secs = _epoch(sq.c[f"t{k}"]) - _epoch(sq.c.t1)
        part = sa.select(
            seg.label("segment"),
            sa.literal_column(str(k)).label("step"),
            sa.func.count().label("customers"),
            _median(secs).label("median_seconds"),
        ).select_from(base)
        # Without segments, one group: PostgreSQL refuses GROUP BY a text constant ('all'). A step
        # nobody reached then gives a row of 0 rather than none; the grid below fills 0 either way.
        parts.append(part.group_by(seg) if segments is not None else part)
    u = sa.union_all(*parts).subquery("funnel")
    rows = _frame(
        conn, sa.select(u).order_by(u.c.segment, u.c.step), ["segment", "step", "customers", "median_seconds"]
    )
    rows = _numeric(rows, ints=("step", "customers"), floats=("median_seconds",))
    segs = sorted(rows["segment"].unique()) if len(rows) else ["all"]
    grid = pd.MultiIndex.from_product([segs, range(1, len(steps) + 1)], names=["segment", "step"])
    out = rows.set_index(["segment", "step"]).reindex(grid).reset_index()
    out["customers"] = out["customers"].fillna(0).astype("int64")
    out["activity"] = pd.array([steps[s - 1] for s in out["step"]], dtype="string")
    out["segment"] = out["segment"].astype("string")
    first = out.groupby("segment")["customers"].transform("first")
    previous = out.groupby("segment")["customers"].shift(1).fillna(out["customers"])
    out["conversion"] = (out["customers"] / first.where(first > 0)).astype("float64")
    out["step_conversion"] = (out["customers"] / previous.where(previous > 0)).astype("float64")
    out["dropped"] = (previous - out["customers"]).astype("int64")
    out = out.rename(columns={"median_seconds": "median_seconds_to_convert"})
    return out[
        [
            "segment",
            "step",
            "activity",
            "customers",
            "conversion",
            "step_conversion",
            "dropped",
            "median_seconds_to_convert",
        ]
    ]
