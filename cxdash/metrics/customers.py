"""Which customers the KPIs look at: the filters, the customer base, the customers in view with
their churn, and their tickets and paid transactions.

Customers are their integer keys (``customer_keys.cx_key``): every query joins and groups rows on
the ``cx_key`` stamped on them, never on the text identifier.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import sqlalchemy as sa
from sqlalchemy.engine import Connection

import cxdash.metrics.churn as churn_defs
from cxdash.metrics.churn import Definition
from cxdash.metrics.queries import count_rows
from cxdash.metrics.signals import file_order, is_repeat, matches, previous_same_topic
from cxdash.metrics.timeline import timeline
from cxdash.store.database import KIND_TABLES, sources_table
from cxdash.store.dialect import among
from cxdash.store.rollups import appended_kinds

__all__ = [
    "ATTRIBUTE_FILTERS",
    "Filters",
    "customer_base",
    "customers_in_view",
    "department_of_ticket",
    "filter_options",
    "filter_options_after",
    "not_churned_by",
    "paid_transactions",
    "tickets_in_view",
]

# Filter name -> CRM field it restricts.
ATTRIBUTE_FILTERS = {
    "segment": "segment",
    "region": "region",
    "plan": "plan",
    "channel": "acquisition_channel",
    "campaign": "campaign",
}


@dataclass(frozen=True)
class Filters:
    """Which customers (CRM attributes) and which department's activity the KPIs look at.

    Each attribute filter is a tuple of accepted values; empty means no restriction. The
    department restricts activity (active customers) and contacts (the team that handled them);
    churn, revenue and CLV are about the customers and ignore it.
    """

    segment: tuple[str, ...] = ()
    region: tuple[str, ...] = ()
    plan: tuple[str, ...] = ()
    channel: tuple[str, ...] = ()
    campaign: tuple[str, ...] = ()
    department: tuple[str, ...] = ()

    def __post_init__(self):
        for f in fields(self):  # normalise lists / None into sorted tuples so the object hashes well
            object.__setattr__(self, f.name, tuple(sorted({str(v) for v in (getattr(self, f.name) or ())})))

    @property
    def active(self) -> bool:
        return any(getattr(self, f.name) for f in fields(self))

    def describe(self) -> str:
        parts = [f"{f.name}: {', '.join(getattr(self, f.name))}" for f in fields(self) if getattr(self, f.name)]
        return "; ".join(parts) if parts else "all customers"


def filter_options(conn: Connection) -> dict[str, list[str]]:
    """The values each filter can take in the stored data (for the page's pickers)."""
    crm = KIND_TABLES["customers"]
    out: dict[str, list[str]] = {}
    for name, col in ATTRIBUTE_FILTERS.items():
        rows = conn.execute(sa.select(crm.c[col]).where(crm.c[col].is_not(None)).distinct()).scalars()
        out[name] = sorted(str(v) for v in rows)
    tl = timeline(("department",))
    rows = conn.execute(sa.select(tl.c.department).where(tl.c.department.is_not(None)).distinct()).scalars()
    out["department"] = sorted(str(v) for v in rows)
    return out


def filter_options_after(
    conn: Connection, before: dict[str, list[str]], loads: list[int]
) -> dict[str, list[str]] | None:
    """``filter_options`` after appends that only added rows (``cxdash.store.rollups.appends_since``:
    never a source's department), from ``before``: the departments of their steps join the list.
    None (compute it whole) when they hold CRM records, whose attributes are the other filters."""
    if "customers" in appended_kinds(conn, loads):
        return None
    tl = timeline(("department", "load_id"))
    rows = conn.execute(
        sa.select(tl.c.department).where(tl.c.load_id.in_(loads), tl.c.department.is_not(None)).distinct()
    ).scalars()
    return {**before, "department": sorted({*before.get("department", []), *(str(v) for v in rows)})}


def customer_base(conn: Connection, attributes: bool = True, cases: list[int] | None = None) -> sa.Select:
    """Every customer the KPIs are about, one row per ``cx_key``: those with a CRM record, or,
    without any CRM rows, everyone on the timeline. With ``attributes``: ``signup_at`` and the CRM
    attributes too (``ATTRIBUTE_FILTERS``); without, the keys alone. ``cases``: of those keys alone."""
    crm = KIND_TABLES["customers"]
    if count_rows(conn, crm):
        extra = (
            [
                sa.func.min(crm.c.signup_date).label("signup_at"),
                *[sa.func.max(crm.c[col]).label(col) for col in ATTRIBUTE_FILTERS.values()],
            ]
            if attributes
            else []
        )
        theirs = [among(crm.c.cx_key, cases)] if cases is not None else []
        return sa.select(crm.c.cx_key, *extra).where(crm.c.cx_key.is_not(None), *theirs).group_by(crm.c.cx_key)
    tl = timeline(("cx_key", "ts"))
    extra = (
        [
            sa.func.min(tl.c.ts).label("signup_at"),
            *[sa.cast(sa.null(), sa.String).label(col) for col in ATTRIBUTE_FILTERS.values()],
        ]
        if attributes
        else []
    )
    theirs = [among(tl.c.cx_key, cases)] if cases is not None else []
    return sa.select(tl.c.cx_key, *extra).where(tl.c.cx_key.is_not(None), *theirs).group_by(tl.c.cx_key)


def customers_in_view(
    conn: Connection, filters: Filters, churn: Definition | None = None, cases: list[int] | None = None
) -> tuple[sa.Subquery, str]:
    """One row per customer in view: ``cx_key, signup_at, churn_at, label_churned`` (0/1) and the CRM
    attributes, and how churn is known: ``dated``, ``snapshot`` (an undated label) or ``none``.

    Customers are their integer keys (``customer_keys.cx_key``): every query below joins and groups
    rows on the ``cx_key`` stamped on them, never on the text identifier. Churn follows ``churn``
    (``cxdash.metrics.churn``; default the suggested definition): ``churn_at`` is when a customer churned
    under a dated definition; ``label_churned`` is 1 for customers an undated label says churned.
    ``cases``: those customers alone (each one's churn reads their own rows).
    """
    definition = churn_defs.in_force(conn, churn)
    base_sq = customer_base(conn, cases=cases).subquery("crm_customers")
    if definition is None:
        mode = "none"
        churn_at, label_churned, joined = sa.cast(sa.null(), sa.DateTime), sa.literal(0, sa.Integer), base_sq
    else:
        theirs = (lambda t: (among(t.c.cx_key, cases),)) if cases is not None else (lambda t: ())
        gone = churn_defs.churned(conn, definition, rows=theirs).subquery("gone")
        joined = base_sq.outerjoin(gone, gone.c.cx_key == base_sq.c.cx_key)
        if churn_defs.is_dated(conn, definition):
            mode = "dated"
            churn_at, label_churned = gone.c.churn_at, sa.literal(0, sa.Integer)
        else:
            mode = "snapshot"
            churn_at = sa.cast(sa.null(), sa.DateTime)
            label_churned = sa.case((gone.c.cx_key.is_not(None), 1), else_=0)
    q = sa.select(
        base_sq.c.cx_key,
        base_sq.c.signup_at,
        sa.cast(churn_at, sa.DateTime).label("churn_at"),
        label_churned.label("label_churned"),
        *[base_sq.c[col] for col in ATTRIBUTE_FILTERS.values()],
    ).select_from(joined)
    for name, col in ATTRIBUTE_FILTERS.items():
        values = getattr(filters, name)
        if values:
            q = q.where(base_sq.c[col].in_(values))
    return q.subquery("cust"), mode


def not_churned_by(cust: sa.Subquery, moment) -> sa.ColumnElement:
    return sa.and_(sa.or_(cust.c.churn_at.is_(None), cust.c.churn_at >= moment), cust.c.label_churned == 0)


def department_of_ticket() -> sa.ColumnElement:
    k = KIND_TABLES["tickets"]
    return sa.func.coalesce(k.c.department, sources_table.c.department)


def tickets_in_view(cust: sa.Subquery, filters: Filters, repeat_days: int) -> sa.Subquery:
    """Tickets of the customers in view: ``cx_key, opened_at, closed_at, transfers, satisfaction, department,
    is_repeat`` (1 when the ticket repeats the customer's previous one on the same topic within
    ``repeat_days``: ``cxdash.metrics.signals``' repeat contact, the same one the friction hotspot counts)."""
    k = KIND_TABLES["tickets"]
    prev_opened = previous_same_topic(k.c.opened_at, k.c.cx_key, k.c.topic, *file_order(k))
    inner = (
        sa.select(
            k.c.cx_key,
            k.c.opened_at,
            k.c.closed_at,
            k.c.transfers,
            k.c.satisfaction,
            sa.cast(department_of_ticket(), sa.String).label("department"),
            prev_opened.label("prev_opened"),
        )
        .select_from(k.join(cust, cust.c.cx_key == k.c.cx_key).join(sources_table, sources_table.c.name == k.c.source))
        .subquery("tickets_w")
    )
    q = sa.select(
        inner.c.cx_key,
        inner.c.opened_at,
        inner.c.closed_at,
        inner.c.transfers,
        inner.c.satisfaction,
        inner.c.department,
        sa.case((is_repeat(inner.c.opened_at, inner.c.prev_opened, repeat_days), 1), else_=0).label("is_repeat"),
    )
    if filters.department:
        q = q.where(inner.c.department.in_(filters.department))
    return q.subquery("tickets")


def paid_transactions(cust: sa.Subquery) -> sa.Subquery:
    x = KIND_TABLES["transactions"]
    return (
        sa.select(x.c.cx_key, x.c.timestamp.label("ts"), x.c.amount)
        .select_from(x.join(cust, cust.c.cx_key == x.c.cx_key))
        .where(sa.not_(matches("failed_payment", x.c.status)), x.c.amount.is_not(None))
        .subquery("paid")
    )
