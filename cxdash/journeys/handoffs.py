"""Handoffs: who hands the customer to whom, when a journey moves from one department to another."""

from __future__ import annotations

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cxdash.journeys.log import (
    LogSpec,
    _epoch,
    _frame,
    _median_and_p90,
    _numeric,
    _spec,
    _step_order,
    _tiebreaks,
    prepare_log,
)

__all__ = ["case_handoffs", "discover_handoffs", "handoff_matrix"]


def discover_handoffs(conn: Connection, events: sa.FromClause, spec: LogSpec | None = None, **keys) -> pd.DataFrame:
    """Who hands the customer to whom: transitions whose two steps belong to different departments.

    Out: ``source_department, target_department, count, customers, median_seconds,
    p90_seconds`` (the wait between the last step of one department and the first of the next).

    The steps are those of ``prepare_log(...)`` in the journey's step order; the window
    runs once over integer codes (activities for the order, departments for the pair), as the
    directly-follows graph does: on a large log that is several times less work than carrying
    three text columns through a partitioned window.
    """
    depts, steps = _handoff_steps(events, spec, keys)
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
    cols = ["source_department", "target_department", "count", "customers", "median_seconds", "p90_seconds"]
    return _numeric(_frame(conn, q, cols), ints=("count", "customers"), floats=("median_seconds", "p90_seconds"))


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
    acts = (
        sa.select(log.c.activity, sa.func.dense_rank().over(order_by=log.c.activity).label("code"))
        .distinct()
        .cte("handoff_activities")
    )
    depts = (
        sa.select(log.c.department, sa.func.dense_rank().over(order_by=log.c.department).label("code"))
        .distinct()
        .cte("handoff_departments")
    )
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
