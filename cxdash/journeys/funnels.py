"""Funnels: how many cases go through an ordered list of steps within a window, by segment."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cxdash.journeys import percentile_runs
from cxdash.journeys.log import LogSpec, _epoch, _frame, _median, _numeric, _positions, prepare_log

__all__ = ["FUNNEL_COLUMNS", "case_funnel", "funnel", "funnel_frame"]


FUNNEL_COLUMNS = [
    "segment",
    "step",
    "activity",
    "customers",
    "conversion",
    "step_conversion",
    "dropped",
    "median_seconds_to_convert",
]


def _per_case(
    events: sa.FromClause,
    steps: Sequence[str],
    window_days: float,
    segments: sa.FromClause | None,
    spec: LogSpec | None,
    keys,
) -> sa.Subquery:
    """``segment, step, case_id, seconds``: a row for each step (1-based) each case reaches, with
    the seconds from its entry; ``segment`` is "all" without segments."""
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
        parts.append(
            sa.select(
                seg.label("segment"),
                sa.literal_column(str(k)).label("step"),
                sq.c.case_id.label("case_id"),
                (_epoch(sq.c[f"t{k}"]) - _epoch(sq.c.t1)).label("seconds"),
            ).select_from(base)
        )
    return sa.union_all(*parts).subquery("funnel_cases")


def funnel(
    conn: Connection,
    events: sa.FromClause,
    steps: Sequence[str],
    *,
    window_days: float = 30.0,
    segments: sa.FromClause | None = None,
    spec: LogSpec | None = None,
    waits: bool = False,
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

    ``waits=True`` (the stored default view) keeps, per segment and step, the seconds near the
    median's rank in ``attrs["waits"]`` (``[segment, step, runs]``, see ``percentile_runs``), so an
    append can move the counts and medians exactly; the medians are then read from them.
    """
    cases = _per_case(events, steps, window_days, segments, spec, keys)
    if waits:
        ranked = sa.select(
            cases.c.segment,
            cases.c.step,
            cases.c.seconds,
            (
                sa.func.row_number().over(partition_by=(cases.c.segment, cases.c.step), order_by=cases.c.seconds) - 1
            ).label("rk"),
            sa.func.count().over(partition_by=(cases.c.segment, cases.c.step)).label("n"),
        ).subquery("ranked_funnel")
        near = percentile_runs.near_positions(ranked.c.rk, ranked.c.n, (0.5,))
        got = conn.execute(
            sa.select(ranked.c.segment, ranked.c.step, ranked.c.n, ranked.c.rk, ranked.c.seconds).where(near)
        )
        groups: dict[tuple[str, int], tuple[int, list]] = {}
        for segment, step, n, rank, seconds in got:
            groups.setdefault((str(segment), int(step)), (int(n), []))[1].append((int(rank), float(seconds)))
        return funnel_frame(
            [[seg, step, percentile_runs.runs_from_ranks(n, ranked)] for (seg, step), (n, ranked) in groups.items()],
            steps,
        )
    q = (
        sa.select(cases.c.segment, cases.c.step, sa.func.count(), _median(cases.c.seconds))
        .group_by(cases.c.segment, cases.c.step)
        .order_by(cases.c.segment, cases.c.step)
    )
    rows = _numeric(
        _frame(conn, q, ["segment", "step", "customers", "median_seconds"]),
        ints=("step", "customers"),
        floats=("median_seconds",),
    )
    return _shaped(rows, steps)


def funnel_frame(waits: list[list], steps: Sequence[str]) -> pd.DataFrame:
    """The funnel from each segment's and step's ``[segment, step, runs]`` (the seconds from entry of
    the customers reaching it): ``funnel``'s frame, the runs kept in ``attrs["waits"]``."""
    kept = sorted(([str(seg), int(step), runs] for seg, step, runs in waits if runs["n"] > 0), key=lambda w: w[:2])
    rows = pd.DataFrame(
        [[seg, step, runs["n"], percentile_runs.percentile(runs, 0.5)] for seg, step, runs in kept],
        columns=["segment", "step", "customers", "median_seconds"],
    )
    rows = _numeric(rows, ints=("step", "customers"), floats=("median_seconds",))
    frame = _shaped(rows, steps)
    frame.attrs["waits"] = percentile_runs.kept(kept)
    return frame


def _shaped(rows: pd.DataFrame, steps: Sequence[str]) -> pd.DataFrame:
    """``segment, step, customers, median_seconds`` rows (steps no one reached left out) as the
    funnel's frame: every segment's every step, with conversions and drops."""
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
    return out[FUNNEL_COLUMNS]


def case_funnel(
    conn: Connection,
    events: sa.FromClause,
    steps: Sequence[str],
    *,
    window_days: float = 30.0,
    segments: sa.FromClause | None = None,
    spec: LogSpec | None = None,
    **keys,
) -> pd.DataFrame:
    """Each case's steps reached, as ``funnel`` counts them: ``segment, step, case_id, seconds``,
    sorted (what a view of a few cases compares)."""
    cases = _per_case(events, steps, window_days, segments, spec, keys)
    q = sa.select(cases).order_by(cases.c.case_id, cases.c.step)
    frame = _frame(conn, q, ["segment", "step", "case_id", "seconds"])
    return _numeric(frame, ints=("step",), floats=("seconds",))
