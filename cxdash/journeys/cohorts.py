"""What the journeys are compared with, per customer: churn and revenue (``customer_outcomes``) and
a CRM field such as the segment (``customer_segments``). Both are keyed like the journey log
(``case_id`` = the integer ``cx_key``), so they join its cases without naming anyone.
"""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cxdash.metrics import as_of
from cxdash.metrics import churn as churn_defs
from cxdash.metrics.signals import FAILED_PAYMENT_STATUSES
from cxdash.store.database import KIND_TABLES

__all__ = ["customer_outcomes", "customer_segments"]


def customer_outcomes(
    conn: Connection, *, churn: churn_defs.Definition | None = None, revenue: bool = True
) -> sa.Subquery:
    """Per customer of the KPI universe: ``case_id`` (the integer cx_key, as the journey log's
    cases), ``churned`` under the churn definition in force (``churn``, a
    ``cxdash.metrics.churn.Definition``; default the suggested one), ``churned_at`` (when, NULL for an
    undated label), ``churn_known`` (the definition judges the customer: ``churn.covered``; false
    for everyone when no definition fits the data), ``revenue_12m`` (revenue in the 365 days up to
    the data's latest date, same rule as the revenue KPI). ``revenue=False`` leaves the revenue out
    (no pass over the transactions; ``revenue_12m`` is NULL) for readers of churn alone."""
    by = "cx_key"
    now = as_of(conn)
    universe = churn_defs.customer_universe(conn, by=by).subquery("universe")
    definition = churn_defs.in_force(conn, churn)
    if definition is None:
        churned = (
            sa.select(universe.c[by], sa.cast(sa.null(), sa.DateTime).label("churn_at"))
            .where(sa.false())
            .subquery("churned")
        )
        judged = sa.select(universe.c[by]).where(sa.false()).subquery("judged")
    else:
        churned = churn_defs.churned(conn, definition, now=now, by=by).subquery("churned")
        judged = churn_defs.covered(conn, definition, by=by).subquery("judged")
    tx = KIND_TABLES["transactions"]
    paid = sa.func.lower(sa.func.coalesce(tx.c.status, "")).not_in(FAILED_PAYMENT_STATUSES)
    recent = (tx.c.timestamp > now - timedelta(days=365),) if now else ()
    rev = (
        sa.select(tx.c.cx_key.label(by), sa.func.sum(tx.c.amount).label("revenue"))
        .where(tx.c.cx_key.is_not(None), paid, *recent)
        .group_by(tx.c.cx_key)
        .subquery("revenue")
    )
    is_churned = churned.c[by].is_not(None)
    joined = universe.outerjoin(churned, churned.c[by] == universe.c[by]).outerjoin(
        judged, judged.c[by] == universe.c[by]
    )
    if revenue:
        joined = joined.outerjoin(rev, rev.c[by] == universe.c[by])
    return (
        sa.select(
            universe.c[by].label("case_id"),
            is_churned.label("churned"),
            sa.cast(churned.c.churn_at, sa.DateTime).label("churned_at"),
            # a churned customer is judged by definition, whatever covered() says of them
            sa.or_(judged.c[by].is_not(None), is_churned).label("churn_known"),
            (sa.func.coalesce(rev.c.revenue, 0.0) if revenue else sa.cast(sa.null(), sa.Double)).label("revenue_12m"),
        )
        .select_from(joined)
        .subquery("outcomes")
    )


def customer_segments(field_name: str = "segment") -> sa.Subquery:
    """``case_id, segment``: each customer's CRM ``segment`` (or another CRM field, e.g. ``plan``
    or ``region``), for funnel breakdowns; ``case_id`` is the cx_key, as the journey log's cases."""
    crm = KIND_TABLES["customers"]
    return (
        sa.select(crm.c.cx_key.label("case_id"), sa.func.min(crm.c[field_name]).label("segment"))
        .where(crm.c.cx_key.is_not(None))
        .group_by(crm.c.cx_key)
        .subquery("segments")
    )
