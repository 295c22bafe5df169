"""Paths into and out of one activity: the steps before (after) each case's first visit of an
anchor, as whole paths and as the links of a Sankey diagram.
"""

from __future__ import annotations

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cxdash.journeys.log import LogSpec, _frame, _numeric, _positions, prepare_log

__all__ = [
    "OTHER_PATHS",
    "PATH_COLUMNS",
    "anchor_paths",
    "path_links",
    "path_steps",
    "paths_from",
    "paths_to",
]


def _paths(conn, events, anchor: str, steps: int, spec, keys, *, before: bool) -> pd.DataFrame:
    log = prepare_log(events, spec, cases_with=anchor, **keys)
    p = _positions(log)
    first = (
        sa.select(p.c.case_id, sa.func.min(p.c.pos).label("anchor_pos"))
        .where(p.c.activity == anchor)
        .group_by(p.c.case_id)
        .subquery("anchor")
    )
    offset = (p.c.pos - first.c.anchor_pos).label("offset")
    window = offset.between(-steps, 0) if before else offset.between(0, steps)
    near = (
        sa.select(p.c.case_id, p.c.activity, p.c.pos, offset)
        .join(first, first.c.case_id == p.c.case_id)
        .where(window)
        .subquery("near")
    )
    w = dict(partition_by=near.c.case_id, order_by=near.c.pos)
    pairs = sa.select(
        near.c.case_id,
        near.c.offset.label("source_offset"),
        near.c.activity.label("source"),
        sa.func.lead(near.c.offset).over(**w).label("target_offset"),
        sa.func.lead(near.c.activity).over(**w).label("target"),
    ).subquery("pairs")
    q = (
        sa.select(
            pairs.c.source_offset,
            pairs.c.source,
            pairs.c.target_offset,
            pairs.c.target,
            sa.func.count(sa.distinct(pairs.c.case_id)),
        )
        .where(pairs.c.target.is_not(None))
        .group_by(pairs.c.source_offset, pairs.c.source, pairs.c.target_offset, pairs.c.target)
        .order_by(
            pairs.c.source_offset, sa.func.count(sa.distinct(pairs.c.case_id)).desc(), pairs.c.source, pairs.c.target
        )
    )
    cols = ["source_offset", "source", "target_offset", "target", "customers"]
    return _numeric(_frame(conn, q, cols), ints=("source_offset", "target_offset", "customers"))


def paths_to(
    conn: Connection, events: sa.FromClause, end: str, *, steps: int = 5, spec: LogSpec | None = None, **keys
) -> pd.DataFrame:
    """Sankey links of the ``steps`` steps before each case's first ``end``.

    Out: ``source_offset, source, target_offset, target, customers``; offsets count steps from
    the anchor (``-2`` = two steps before it, ``0`` = the anchor itself).
    """
    return _paths(conn, events, end, steps, spec, keys, before=True)


def paths_from(
    conn: Connection, events: sa.FromClause, start: str, *, steps: int = 5, spec: LogSpec | None = None, **keys
) -> pd.DataFrame:
    """Sankey links of the ``steps`` steps after each case's first ``start`` (offsets 0..steps)."""
    return _paths(conn, events, start, steps, spec, keys, before=False)


OTHER_PATHS = "(other paths)"


_PATH_SEPARATOR = "\x1f"  # the unit separator: no activity name holds it


PATH_COLUMNS = ["path", "steps", "customers", "paths"]


def anchor_paths(
    conn: Connection,
    events: sa.FromClause,
    anchor: str,
    *,
    direction: str = "before",
    steps: int = 5,
    top: int = 12,
    spec: LogSpec | None = None,
    **keys,
) -> pd.DataFrame:
    """Whole paths into (``direction="before"``) or out of (``"after"``) each case's first
    ``anchor``: the up to ``steps`` steps before it and the anchor, or the anchor and the up to
    ``steps`` steps after it, counted per distinct path.

    Out (``PATH_COLUMNS``): ``path`` (the activities in journey order joined by ``\x1f``; split
    with ``path_steps``), ``steps`` (activities on it, the anchor included), ``customers``
    (cases taking exactly that path), ``paths`` (1); the ``top`` busiest paths, most customers
    first (then by path), and when more exist one last row ``path = OTHER_PATHS``, ``steps`` NA,
    pooling the rest: their customers and how many distinct paths. A path of one step is a case
    with nothing before (after) the anchor. ``customers`` adds up to every case that reaches the
    anchor.
    """
    log = prepare_log(events, spec, cases_with=anchor, **keys)
    p = _positions(log)
    first = (
        sa.select(p.c.case_id, sa.func.min(p.c.pos).label("anchor_pos"))
        .where(p.c.activity == anchor)
        .group_by(p.c.case_id)
        .subquery("anchor")
    )
    offset = p.c.pos - first.c.anchor_pos
    window = offset.between(-steps, 0) if direction == "before" else offset.between(0, steps)
    near = (
        sa.select(p.c.case_id, p.c.activity, p.c.pos)
        .join(first, first.c.case_id == p.c.case_id)
        .where(window)
        .subquery("near")
    )
    per_case = (
        sa.select(
            near.c.case_id,
            sa.func.aggregate_strings(near.c.activity, _PATH_SEPARATOR).aggregate_order_by(near.c.pos).label("path"),
            sa.func.count().label("steps"),
        )
        .group_by(near.c.case_id)
        .cte("anchor_path_cases")
    )
    customers = sa.func.count()
    q = (
        sa.select(per_case.c.path, sa.func.min(per_case.c.steps), customers)
        .group_by(per_case.c.path)
        .order_by(customers.desc(), per_case.c.path)
    )
    every = _numeric(_frame(conn, q, ["path", "steps", "customers"]), ints=("steps", "customers"))
    shown = every.head(top).assign(paths=1)
    rest = every.iloc[top:]
    if len(rest):
        other = pd.DataFrame(
            {"path": [OTHER_PATHS], "steps": [pd.NA], "customers": [int(rest["customers"].sum())], "paths": [len(rest)]}
        )
        shown = pd.concat([shown, other], ignore_index=True)
    shown["steps"] = shown["steps"].astype("Int64")
    shown["customers"] = shown["customers"].astype("int64")
    shown["paths"] = shown["paths"].astype("int64")
    return shown[PATH_COLUMNS].reset_index(drop=True)


def path_steps(path: str) -> list[str]:
    """The activities of one ``anchor_paths`` path, in journey order."""
    return path.split(_PATH_SEPARATOR)


def path_links(paths: pd.DataFrame, anchor: str, direction: str = "before") -> pd.DataFrame:
    """Sankey links of ``anchor_paths``: each path's consecutive steps, placed by their offset from
    the anchor (``-2`` = two steps before it, ``0`` = the anchor), summed over paths; the pooled
    ``OTHER_PATHS`` row becomes one link ``(other paths) -> anchor`` (``anchor -> (other paths)``
    after it). Every link lies on a whole path that ends (starts) at the anchor, so every ribbon
    reaches it. Out: ``source_offset, source, target_offset, target, customers``."""
    rows: list[tuple[int, str, int, str, int]] = []
    before = direction == "before"
    for path, n in zip(paths["path"], paths["customers"], strict=True):
        if path == OTHER_PATHS:
            rows.append((-1, OTHER_PATHS, 0, anchor) if before else (0, anchor, 1, OTHER_PATHS))
            rows[-1] = (*rows[-1], int(n))
            continue
        acts = path_steps(path)
        start = -(len(acts) - 1) if before else 0
        for i in range(len(acts) - 1):
            rows.append((start + i, acts[i], start + i + 1, acts[i + 1], int(n)))
    cols = ["source_offset", "source", "target_offset", "target", "customers"]
    links = pd.DataFrame(rows, columns=cols)
    if links.empty:
        return links.astype({"source_offset": "int64", "target_offset": "int64", "customers": "int64"})
    return (
        links.groupby(cols[:4], as_index=False, sort=False)["customers"]
        .sum()
        .sort_values(["source_offset", "customers", "source", "target"], ascending=[True, False, True, True])
        .reset_index(drop=True)
    )
