"""The shared KPI definitions: one definition each, used by every page, the CLI and the tests.

Each KPI is computed inside the database from the stored sources. Definitions are written
out in ``DEFINITIONS`` so the pages can show them next to the numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cxdash.store import KIND_TABLES, identity_map_table
from cxdash.timeline import FAILED_PAYMENT_STATUSES, timeline

__all__ = ["ACTIVE_WINDOW_DAYS", "DEFINITIONS", "Headline", "as_of", "headline"]

ACTIVE_WINDOW_DAYS = 30

DEFINITIONS: dict[str, dict[str, str]] = {
    "customers": {
        "definition": "Distinct stitched customers with a CRM record; when no CRM source is loaded, "
        "every distinct identified customer in any source.",
        "owner": "Customer operations",
    },
    "active_customers": {
        "definition": f"Customers with any activity (event, contact, purchase) in the {ACTIVE_WINDOW_DAYS} days "
        "up to the data's latest date, who had not churned by then.",
        "owner": "Customer operations",
    },
    "churned_customers": {
        "definition": "Customers whose every subscription has ended by the data's latest date; where no "
        "subscriptions are loaded, customers whose churn label says so.",
        "owner": "Customer success",
    },
    "revenue": {
        "definition": "Sum of transaction amounts (refunds negative), excluding failed payments.",
        "owner": "Finance",
    },
}


@dataclass(frozen=True)
class Headline:
    as_of: datetime | None
    customers: int
    active_customers: int
    churned_customers: int
    churn_basis: str  # "subscriptions", "label" or "none"
    revenue: float

    def to_dict(self) -> dict:
        return {
            "as_of": self.as_of.isoformat() if self.as_of else None,
            "customers": self.customers,
            "active_customers": self.active_customers,
            "churned_customers": self.churned_customers,
            "churn_basis": self.churn_basis,
            "revenue": self.revenue,
        }


def as_of(conn: Connection) -> datetime | None:
    """The data's "now": the latest timestamp of any stored row."""
    tl = timeline()
    return conn.execute(sa.select(sa.func.max(tl.c.ts))).scalar()


def _customer_universe(conn: Connection) -> sa.Select:
    im = identity_map_table
    has_crm = conn.execute(sa.select(sa.func.count()).select_from(KIND_TABLES["customers"])).scalar()
    q = sa.select(im.c.cx_id).distinct()
    if has_crm:
        q = q.where(im.c.known.is_(True))
    return q


def _churned(conn: Connection, now: datetime | None) -> tuple[sa.Select, str]:
    """Select of churned cx_ids and the basis used."""
    im = identity_map_table
    subs = KIND_TABLES["subscriptions"]
    if conn.execute(sa.select(sa.func.count()).select_from(subs)).scalar():
        ended = sa.func.coalesce(subs.c.end, sa.literal(datetime(9999, 1, 1)))
        per_customer = (
            sa.select(im.c.cx_id, sa.func.max(ended).label("last_end"))
            .select_from(subs.join(im, im.c.id_key == subs.c.id_key))
            .group_by(im.c.cx_id)
            .subquery()
        )
        return sa.select(per_customer.c.cx_id).where(per_customer.c.last_end <= now), "subscriptions"
    crm = KIND_TABLES["customers"]
    if conn.execute(sa.select(sa.func.count()).select_from(crm).where(crm.c.churn_label.is_not(None))).scalar():
        q = (
            sa.select(im.c.cx_id)
            .select_from(crm.join(im, im.c.id_key == crm.c.id_key))
            .where(crm.c.churn_label.is_(True))
            .distinct()
        )
        return q, "label"
    return sa.select(im.c.cx_id).where(sa.false()), "none"


def headline(conn: Connection) -> Headline:
    """Customers, active, churned and revenue over everything stored."""
    now = as_of(conn)
    universe = _customer_universe(conn).subquery()
    customers = conn.execute(sa.select(sa.func.count()).select_from(universe)).scalar() or 0
    churned_q, basis = _churned(conn, now)
    churned_sq = churned_q.subquery()
    churned = (
        conn.execute(
            sa.select(sa.func.count()).select_from(universe.join(churned_sq, churned_sq.c.cx_id == universe.c.cx_id))
        ).scalar()
        or 0
    )
    active = 0
    if now is not None:
        tl = timeline()
        recent = (
            sa.select(tl.c.cx_id)
            .where(tl.c.ts > now - timedelta(days=ACTIVE_WINDOW_DAYS), tl.c.cx_id.is_not(None))
            .distinct()
            .subquery()
        )
        active = (
            conn.execute(
                sa.select(sa.func.count())
                .select_from(universe.join(recent, recent.c.cx_id == universe.c.cx_id))
                .where(universe.c.cx_id.not_in(sa.select(churned_sq.c.cx_id)))
            ).scalar()
            or 0
        )
    tx = KIND_TABLES["transactions"]
    revenue = conn.execute(
        sa.select(sa.func.coalesce(sa.func.sum(tx.c.amount), 0.0)).where(
            sa.func.lower(sa.func.coalesce(tx.c.status, "")).not_in(FAILED_PAYMENT_STATUSES)
        )
    ).scalar()
    return Headline(now, int(customers), int(active), int(churned), basis, float(revenue or 0.0))
