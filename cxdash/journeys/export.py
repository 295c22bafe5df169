"""Drill-downs that list customers, and their exports: the one place where the journey log's
integer keys become customer ids (``cx_id``), contact details are masked with the app's one
masker (``cxdash.governance.privacy``) and a cohort becomes a spreadsheet-safe CSV.
"""

from __future__ import annotations

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cxdash.exporting import safe_csv
from cxdash.governance.privacy import mask_email, mask_phone
from cxdash.journeys.cohorts import customer_outcomes
from cxdash.journeys.friction import friction_moments
from cxdash.journeys.log import _frame, _numeric, case_names, journey_log
from cxdash.metrics import churn as churn_defs
from cxdash.metrics.timeline import step_order
from cxdash.store.database import KIND_TABLES, customer_keys_table

__all__ = ["cohort_csv", "customer_journey", "hotspot_customers", "mask_email", "mask_phone"]

_COHORT_COLUMNS = [
    "cx_id",
    "moments",
    "first_at",
    "last_at",
    "leaked_department",
    "absorbed_department",
    "churned",
    "revenue_12m",
    "email",
    "phone",
]


def hotspot_customers(
    conn: Connection,
    hotspot: str,
    *,
    repeat_days: float = 7.0,
    dead_end_days: float = 30.0,
    limit: int | None = 500,
    moments: sa.FromClause | None = None,
    churn: churn_defs.Definition | None = None,
) -> pd.DataFrame:
    """The customers in one hotspot, most moments first (then by ``cx_id``), with masked contact
    details (``churned`` under ``churn``, default the suggested definition).

    Out: ``cx_id, moments, first_at, last_at, leaked_department, absorbed_department, churned,
    revenue_12m, email, phone`` (email and phone masked: cohorts leave the app as files). The
    moments are counted on customer keys; the customers are named on the (small) result.
    """
    m = moments if moments is not None else friction_moments(repeat_days=repeat_days, dead_end_days=dead_end_days)
    out = customer_outcomes(conn, churn=churn)
    crm = KIND_TABLES["customers"]
    contact = (
        sa.select(crm.c.cx_key, sa.func.min(crm.c.email).label("email"), sa.func.min(crm.c.phone).label("phone"))
        .where(crm.c.cx_key.is_not(None))
        .group_by(crm.c.cx_key)
        .subquery("contact")
    )
    per_cx = (
        sa.select(
            m.c.cx_key,
            sa.func.count().label("moments"),
            sa.func.min(m.c.ts).label("first_at"),
            sa.func.max(m.c.ts).label("last_at"),
            sa.func.min(m.c.leaked_department).label("leaked"),
            sa.func.min(m.c.absorbed_department).label("absorbed"),
        )
        .where(m.c.hotspot == hotspot)
        .group_by(m.c.cx_key)
        .subquery("per_cx")
    )
    names = case_names()
    joined = (
        per_cx.join(out, out.c.case_id == per_cx.c.cx_key)
        .outerjoin(contact, contact.c.cx_key == per_cx.c.cx_key)
        .join(names, names.c.case_id == per_cx.c.cx_key)
    )
    rest = [c for c in per_cx.c if c.name != "cx_key"]
    q = (
        sa.select(names.c.name, *rest, out.c.churned, out.c.revenue_12m, contact.c.email, contact.c.phone)
        .select_from(joined)
        .order_by(per_cx.c.moments.desc(), names.c.name)
    )
    if limit:
        q = q.limit(limit)
    frame = _numeric(_frame(conn, q, _COHORT_COLUMNS), ints=("moments",), floats=("revenue_12m",))
    frame["churned"] = frame["churned"].astype("bool")
    frame["email"] = pd.array([mask_email(v) for v in frame["email"]], dtype="string")
    frame["phone"] = pd.array([mask_phone(v) for v in frame["phone"]], dtype="string")
    return frame


def customer_journey(conn: Connection, cx_id: str, *, limit: int = 500) -> pd.DataFrame:
    """One customer's timeline, oldest first (steps at the same time in the files' order):
    ``ts, activity, department, channel, value``. The customer is named by ``cx_id``, looked up
    once among the keys."""
    jl = journey_log()
    im = customer_keys_table
    q = (
        sa.select(jl.c.ts, jl.c.activity, jl.c.department, jl.c.channel, jl.c.value)
        .where(jl.c.cx_key.in_(sa.select(im.c.cx_key).where(im.c.cx_id == cx_id)))
        .order_by(*step_order(jl), jl.c.activity)
        .limit(limit)
    )
    return _numeric(_frame(conn, q, ["ts", "activity", "department", "channel", "value"]), floats=("value",))


def cohort_csv(frame: pd.DataFrame) -> bytes:
    """The cohort as a spreadsheet-safe CSV (``cxdash.exporting.safe_csv``): formulas neutralised,
    and a cell holding a carriage return quoted so it cannot start a row of its own."""
    return safe_csv(frame)
