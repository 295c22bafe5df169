"""Handoffs: who hands the customer to whom, when a journey moves from one department to another."""

from __future__ import annotations

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cxdash.journeys import percentile_runs
from cxdash.journeys.log import (
    LogSpec,
    _epoch,
    _frame,
    _median_and_p90,
    _numeric,
    _spec,
    _step_order,
    _tiebreaks,
    name_codes,
    prepare_log,
)

__all__ = [
    "HANDOFF_COLUMNS",
    "WAIT_FRACTIONS",
    "case_handoffs",
    "discover_handoffs",
    "handoff_matrix",
    "handoffs_frame",
]


# The percentiles of the waits the handoffs report (median and 90th).
WAIT_FRACTIONS = (0.5, 0.9)
HANDOFF_COLUMNS = ["source_department", "target_department", "count", "customers", "median_seconds", "p90_seconds"]


def discover_handoffs(
    conn: Connection, events: sa.FromClause, spec: LogSpec | None = None, *, waits: bool = False, **keys
) -> pd.DataFrame:
    """Who hands the customer to whom: transitions whose two steps belong to different departments.

    Out: ``source_department, target_department, count, customers, median_seconds,
    p90_seconds`` (the wait between the last step of one department and the first of the next),
    most handoffs first.

    The steps are those of ``prepare_log(...)`` in the journey's step order; the window
    runs once over integer codes (activities for the order, departments for the pair), as the
    directly-follows graph does: on a large log that is several times less work than carrying
    three text columns through a partitioned window.

    ``waits=True`` (the stored default view) also keeps, per pair, the waits near each
    percentile's rank in ``attrs["waits"]`` (``[source, target, customers, runs]``, see
    ``percentile_runs``), so an append can move the percentiles exactly. The handoffs are then
    numbered by wait within their pair and the percentiles read from the ranks near their
    positions (``percentile_cont``'s formula, the same figures); that numbering sorts every
    handoff, which an aggregate's selection does not (at 1M customers 2.8-3.1 s -> 3.5-3.7 s), so
    the pages' views, which never take an append, do without.
    """
    depts, steps = _handoff_steps(events, spec, keys)
    if waits:
        return _handoffs_with_waits(conn, depts, steps)
    both = _median_and_p90(steps.c.seconds)
    pairs = (
        sa.select(
            steps.c.source,
            steps.c.target,
            sa.func.count().label("n"),
            sa.func.count(sa.distinct(steps.c.case_id)).label("customers"),
            both.label("pct"),
        )
        .where(steps.c.target.is_not(None), steps.c.source != steps.c.target)
        .group_by(steps.c.source, steps.c.target)
        .subquery("handoff_pairs")
    )
    src, dst = depts.alias("source_dept"), depts.alias("target_dept")
    q = (
        sa.select(src.c.department, dst.c.department, pairs.c.n, pairs.c.customers, pairs.c.pct[1], pairs.c.pct[2])
        .select_from(pairs.join(src, src.c.code == pairs.c.source).join(dst, dst.c.code == pairs.c.target))
        .order_by(pairs.c.n.desc(), src.c.department, dst.c.department)
    )
    return _numeric(
        _frame(conn, q, HANDOFF_COLUMNS), ints=("count", "customers"), floats=("median_seconds", "p90_seconds")
    )


def _handoffs_with_waits(conn: Connection, depts: sa.CTE, steps: sa.Subquery) -> pd.DataFrame:
    """``discover_handoffs(..., waits=True)``."""
    handoffs = (
        sa.select(steps.c.case_id, steps.c.source, steps.c.target, steps.c.seconds)
        .where(steps.c.target.is_not(None), steps.c.source != steps.c.target)
        .cte("handoffs")
    )
    pair = (handoffs.c.source, handoffs.c.target)
    ranked = sa.select(
        *pair,
        handoffs.c.seconds,
        (sa.func.row_number().over(partition_by=pair, order_by=handoffs.c.seconds) - 1).label("rk"),
        sa.func.count().over(partition_by=pair).label("n"),
    ).subquery("ranked_waits")
    customers = (
        sa.select(*pair, sa.func.count(sa.distinct(handoffs.c.case_id)).label("customers"))
        .group_by(*pair)
        .subquery("pair_customers")
    )
    src, dst = depts.alias("source_dept"), depts.alias("target_dept")
    q = (
        sa.select(src.c.department, dst.c.department, ranked.c.n, customers.c.customers, ranked.c.rk, ranked.c.seconds)
        .select_from(
            ranked.join(
                customers, sa.and_(customers.c.source == ranked.c.source, customers.c.target == ranked.c.target)
            )
            .join(src, src.c.code == ranked.c.source)
            .join(dst, dst.c.code == ranked.c.target)
        )
        .where(percentile_runs.near_positions(ranked.c.rk, ranked.c.n, WAIT_FRACTIONS))
    )
    rows = conn.execute(q).all()
    groups: dict[tuple[str, str], tuple[int, int, list]] = {}
    for source, target, n, customers_n, rank, seconds in rows:
        groups.setdefault((source, target), (int(n), int(customers_n), []))[2].append((int(rank), float(seconds)))
    waits = [
        [source, target, customers_n, percentile_runs.runs_from_ranks(n, ranked_waits)]
        for (source, target), (n, customers_n, ranked_waits) in groups.items()
    ]
    return handoffs_frame(waits)


def handoffs_frame(waits: list[list]) -> pd.DataFrame:
    """The handoffs table from each pair's ``[source, target, customers, runs]`` (pairs without a
    handoff left out), most handoffs first, then by departments; the waits kept in ``attrs``."""
    waits = sorted((w for w in waits if w[3]["n"] > 0), key=lambda w: (-w[3]["n"], w[0], w[1]))
    frame = pd.DataFrame(
        [
            [source, target, runs["n"], customers, *(percentile_runs.percentile(runs, f) for f in WAIT_FRACTIONS)]
            for source, target, customers, runs in waits
        ],
        columns=HANDOFF_COLUMNS,
    )
    frame = _numeric(frame, ints=("count", "customers"), floats=("median_seconds", "p90_seconds"))
    for col in ("source_department", "target_department"):
        frame[col] = frame[col].astype("string")
    frame.attrs["waits"] = percentile_runs.kept(waits)
    return frame


def case_handoffs(conn: Connection, events: sa.FromClause, spec: LogSpec | None = None, **keys) -> pd.DataFrame:
    """Every handoff of every case, as ``discover_handoffs`` counts them: ``case_id,
    source_department, target_department, seconds``, sorted (what a view of a few cases compares)."""
    depts, steps = _handoff_steps(events, spec, keys)
    src, dst = depts.alias("source_dept"), depts.alias("target_dept")
    q = (
        sa.select(steps.c.case_id, src.c.department, dst.c.department, steps.c.seconds)
        .select_from(steps.join(src, src.c.code == steps.c.source).join(dst, dst.c.code == steps.c.target))
        .where(steps.c.source != steps.c.target)
        .order_by(steps.c.case_id, src.c.department, dst.c.department, steps.c.seconds)
    )
    cols = ["case_id", "source_department", "target_department", "seconds"]
    return _numeric(_frame(conn, q, cols), floats=("seconds",))


def _handoff_steps(events: sa.FromClause, spec: LogSpec | None, keys) -> tuple[sa.CTE, sa.Subquery]:
    """``(departments, steps)``: the departments' codes, and each step's department code beside the
    next step's (``case_id, source, target, seconds``; ``target`` NULL on a case's last step)."""
    s = _spec(spec, **keys)
    if not s.department_key:
        s = LogSpec(**{**s.__dict__, "department_key": "department"})
    log = prepare_log(events, s)
    acts = name_codes(log, "activity", "handoff_activity_names").cte("handoff_activities")
    depts = name_codes(log, "department", "handoff_department_names").cte("handoff_departments")
    coded = (
        sa.select(log.c.case_id, log.c.ts, *_tiebreaks(log), acts.c.code, depts.c.code.label("dept"))
        .select_from(
            log.join(acts, acts.c.activity == log.c.activity).join(depts, depts.c.department == log.c.department)
        )
        .cte("handoff_log")
    )
    w = dict(partition_by=coded.c.case_id, order_by=_step_order(coded, coded.c.code))  # codes sort like the names
    steps = sa.select(
        coded.c.case_id,
        coded.c.dept.label("source"),
        sa.func.lead(coded.c.dept).over(**w).label("target"),
        (_epoch(sa.func.lead(coded.c.ts).over(**w)) - _epoch(coded.c.ts)).label("seconds"),
    ).subquery("handoff_steps")
    return depts, steps


def handoff_matrix(handoffs: pd.DataFrame, value: str = "customers") -> pd.DataFrame:
    """``discover_handoffs`` as a department-by-department table: rows the department handing the
    customer over (``source_department``), columns the one receiving them, cells ``value``
    (``count``, ``customers``, ``median_seconds`` or ``p90_seconds``), NA where no handoff happened.
    Departments are sorted by name on both axes, and a department that only hands over or only
    receives still gets its row and column, so the table is square."""
    departments = sorted(set(handoffs["source_department"]) | set(handoffs["target_department"]))
    matrix = handoffs.pivot(index="source_department", columns="target_department", values=value)
    matrix = matrix.reindex(index=departments, columns=departments)
    matrix.index.name, matrix.columns.name = "from", "to"
    return matrix
