"""Activation: how much of the at-risk list (the top churn-risk decile of the latest scoring) has been
acted on, and how fast, read from the app-state ``scores`` table and the ``activation`` log.

The risk package writes both (``cxdash.risk.activation``); the activation-rate KPI reads them here.
"""

from __future__ import annotations

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cxdash.store.database import Store, activation_table, scores_table

__all__ = ["AT_RISK_SHARE", "activation_stats", "latest_activation", "risk_threshold"]

AT_RISK_SHARE = 0.10  # the top decile by risk is "at risk" (the same decile the lift is measured on)


def latest_activation() -> sa.Subquery:
    """Each customer's latest entry in the activation log: ``cx_id, status, actor, updated_at``."""
    a = activation_table
    newest = sa.select(a.c.cx_id, sa.func.max(a.c.id).label("id")).group_by(a.c.cx_id).subquery("newest")
    return (
        sa.select(a.c.cx_id, a.c.status, a.c.actor, a.c.updated_at)
        .select_from(a.join(newest, newest.c.id == a.c.id))
        .subquery("latest_activation")
    )


def risk_threshold(conn: Connection) -> float | None:
    """The lowest risk in the top decile of the latest scoring, None before any scoring."""
    s = scores_table
    n = conn.execute(sa.select(sa.func.count()).select_from(s)).scalar() or 0
    if not n:
        return None
    k = max(1, int(np.ceil(AT_RISK_SHARE * n)))
    return conn.execute(sa.select(s.c.risk).order_by(s.c.risk.desc()).offset(k - 1).limit(1)).scalar()


def activation_stats(store: Store) -> dict:
    """How much of the at-risk list has been acted on, and how fast.

    ``at_risk`` (top-decile customers), ``contacted``, ``actioned`` (latest status among them),
    ``share_acted`` and ``median_hours_to_first_action`` (from scoring to the first log entry).
    """
    s, a = scores_table, activation_table
    la = latest_activation()
    with store.app_begin() as conn:
        threshold = risk_threshold(conn)
        if threshold is None:
            return {
                "at_risk": 0,
                "contacted": 0,
                "actioned": 0,
                "share_acted": None,
                "median_hours_to_first_action": None,
            }
        counts = conn.execute(
            sa.select(
                sa.func.count().label("at_risk"),
                sa.func.sum(sa.case((la.c.status == "contacted", 1), else_=0)).label("contacted"),
                sa.func.sum(sa.case((la.c.status == "actioned", 1), else_=0)).label("actioned"),
            )
            .select_from(s.outerjoin(la, la.c.cx_id == s.c.cx_id))
            .where(s.c.risk >= threshold)
        ).one()
        first = (
            sa.select(a.c.cx_id, sa.func.min(a.c.updated_at).label("first_at")).group_by(a.c.cx_id).subquery("first")
        )
        waits = conn.execute(
            sa.select(s.c.scored_at, first.c.first_at).select_from(s.join(first, first.c.cx_id == s.c.cx_id))
        ).fetchall()
    at_risk_n = int(counts.at_risk or 0)
    acted = int(counts.contacted or 0) + int(counts.actioned or 0)
    hours = [max((f - sc).total_seconds(), 0) / 3600 for sc, f in waits if f is not None and sc is not None]
    return {
        "at_risk": at_risk_n,
        "contacted": int(counts.contacted or 0),
        "actioned": int(counts.actioned or 0),
        "share_acted": acted / at_risk_n if at_risk_n else None,
        "median_hours_to_first_action": float(np.median(hours)) if hours else None,
    }
