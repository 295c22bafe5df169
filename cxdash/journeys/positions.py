"""Where in their journeys customers first reach each activity: the order a funnel's steps are
taken in, and what an append moves (``first_positions(waits=True)``)."""

from __future__ import annotations

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cxdash.journeys import percentile_runs
from cxdash.journeys.log import LogSpec, _frame, _median, _numeric, _positions, prepare_log

__all__ = ["POSITION_COLUMNS", "case_first_positions", "first_positions", "positions_frame"]


POSITION_COLUMNS = ["activity", "customers", "median_first_position"]


def _first_per_case(events: sa.FromClause, spec: LogSpec | None, keys) -> sa.Subquery:
    """``case_id, activity, first_pos``: each case's first position (1-based, in the journey's step
    order) of each activity it takes."""
    p = _positions(prepare_log(events, spec, **keys))
    return (
        sa.select(p.c.case_id, p.c.activity, sa.func.min(p.c.pos).label("first_pos"))
        .group_by(p.c.case_id, p.c.activity)
        .subquery("first_pos")
    )


def first_positions(
    conn: Connection, events: sa.FromClause, spec: LogSpec | None = None, *, waits: bool = False, **keys
) -> pd.DataFrame:
    """Where in their journeys customers first reach each activity.

    Out: ``activity, customers`` (cases reaching it), ``median_first_position`` (the median,
    over those cases, of the 1-based position of the case's first step with that activity, in
    the journey's step order), sorted by that median, then most customers first, then name.
    Used to put a funnel's steps in the order customers take them rather than by frequency.

    ``waits=True`` (the stored default view) keeps, per activity, the first positions near the
    median's rank in ``attrs["waits"]`` (``[activity, customers, runs]``, see ``percentile_runs``),
    so an append can move the medians exactly; the median is then read from them.
    """
    first = _first_per_case(events, spec, keys)
    if waits:
        ranked = sa.select(
            first.c.activity,
            first.c.first_pos,
            (sa.func.row_number().over(partition_by=first.c.activity, order_by=first.c.first_pos) - 1).label("rk"),
            sa.func.count().over(partition_by=first.c.activity).label("n"),
        ).subquery("ranked_positions")
        near = percentile_runs.near_positions(ranked.c.rk, ranked.c.n, (0.5,))
        rows = conn.execute(sa.select(ranked.c.activity, ranked.c.n, ranked.c.rk, ranked.c.first_pos).where(near))
        groups: dict[str, tuple[int, list]] = {}
        for activity, n, rank, pos in rows:
            groups.setdefault(activity, (int(n), []))[1].append((int(rank), float(pos)))
        return positions_frame(
            [[activity, n, percentile_runs.runs_from_ranks(n, ranked)] for activity, (n, ranked) in groups.items()]
        )
    median = _median(first.c.first_pos)
    q = (
        sa.select(first.c.activity, sa.func.count().label("customers"), median.label("median_first_position"))
        .group_by(first.c.activity)
        .order_by(median, sa.func.count().desc(), first.c.activity)
    )
    return _numeric(_frame(conn, q, POSITION_COLUMNS), ints=("customers",), floats=("median_first_position",))


def positions_frame(waits: list[list]) -> pd.DataFrame:
    """The first positions from each activity's ``[activity, customers, runs]`` (activities no one
    reaches left out), in ``first_positions``' order; the runs kept in ``attrs["waits"]``."""
    rows = [[a, c, percentile_runs.percentile(runs, 0.5), runs] for a, c, runs in waits if runs["n"] > 0]
    rows.sort(key=lambda r: (r[2], -r[1], r[0]))
    frame = pd.DataFrame([r[:3] for r in rows], columns=POSITION_COLUMNS)
    frame = _numeric(frame, ints=("customers",), floats=("median_first_position",))
    frame["activity"] = frame["activity"].astype("string")
    frame.attrs["waits"] = percentile_runs.kept([[a, c, runs] for a, c, _, runs in rows])
    return frame


def case_first_positions(conn: Connection, events: sa.FromClause, spec: LogSpec | None = None, **keys) -> pd.DataFrame:
    """Each case's first position of each activity, as ``first_positions`` counts them:
    ``case_id, activity, first_pos``, sorted (what a view of a few cases compares)."""
    first = _first_per_case(events, spec, keys)
    q = sa.select(first).order_by(first.c.case_id, first.c.activity)
    return _numeric(_frame(conn, q, ["case_id", "activity", "first_pos"]), ints=("first_pos",))
