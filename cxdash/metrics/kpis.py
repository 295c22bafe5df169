"""The shared KPI definitions: one definition each, used by every page, the CLI and the tests.

Each KPI is computed inside the database from the stored sources. Definitions are written
out in ``DEFINITIONS`` so the pages can show them next to the numbers.

Two entry points besides ``headline``:

* :func:`kpi_report` - every shared KPI for a period against the previous period of the same
  length, with its coverage (share of customers that have the data it needs);
* :func:`kpi_table` - the same KPIs for any list of periods in one pass (monthly trends).

Every KPI is written once, as SQL parameterised by a *period spine*: a small derived table of
``(bucket, p_start, p_end, prev_start)`` rows. The fact tables are joined to the spine on their
timestamp, so the same query gives the current period, the previous one and each month.
Periods are half-open: ``p_start <= ts < p_end``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cxdash.metrics import churn as churn_defs
from cxdash.metrics.churn import Definition
from cxdash.metrics.signals import file_order, is_repeat, matches, next_same_topic, previous_same_topic
from cxdash.metrics.timeline import TIMELINE_TIME_COLUMNS, timeline
from cxdash.store.database import KIND_TABLES, customer_keys_table, sources_table

__all__ = [
    "ACTIVE_WINDOW_DAYS",
    "ATTRIBUTE_FILTERS",
    "CLI_KEYS",
    "DEFINITIONS",
    "ClvForecast",
    "Filters",
    "Headline",
    "KpiReport",
    "Period",
    "as_of",
    "cohort_retention",
    "default_period",
    "filter_options",
    "headline",
    "kpi_report",
    "kpi_table",
    "monthly_periods",
    "predicted_clv",
    "money_currency",
    "snapshot_splits",
]

log = logging.getLogger(__name__)

ACTIVE_WINDOW_DAYS = 30
DEFAULT_PERIOD_DAYS = 90
DEFAULT_REPEAT_DAYS = 7
DEFAULT_CLV_HORIZON_MONTHS = 12
MIN_REPEAT_BUYERS = 20  # fewer customers with a repeat purchase than this: no CLV forecast
_FAR_FUTURE = datetime(9999, 1, 1)

DEFINITIONS: dict[str, dict[str, str]] = {
    "customers": {
        "definition": "Distinct stitched customers with a CRM record; when no CRM source is loaded, "
        "every distinct identified customer in any source. For a period: those who had signed up by its end.",
        "owner": "Customer operations",
    },
    "active_customers": {
        "definition": f"Customers with any activity (event, contact, purchase) in the period (the headline uses the "
        f"{ACTIVE_WINDOW_DAYS} days up to the data's latest date), who had not churned by its end.",
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
    "churn_rate": {
        "definition": "Logo churn: customers who churned in the period (their last subscription ended) over the "
        "customers at its start. With only a churn label (no dates) it is the labelled share, a snapshot.",
        "owner": "Customer success",
    },
    "retention_rate": {
        "definition": "Customers at the start of the period still customers at its end (1 - logo churn).",
        "owner": "Customer success",
    },
    "revenue_churn_rate": {
        "definition": "Monthly recurring revenue of subscriptions that ended in the period over the MRR of the "
        "subscriptions running at its start.",
        "owner": "Finance",
    },
    "renewal_rate": {
        "definition": "Subscriptions due for renewal in the period (running at its start; monthly billing, so each "
        "comes due at least once in a period of a month or more) that were still running at its end.",
        "owner": "Billing",
    },
    "net_revenue_retention": {
        "definition": "Revenue in the period from customers who paid in the previous period of the same length, "
        "over what they paid then (expansion minus contraction and churn).",
        "owner": "Finance",
    },
    "silence_rate": {
        "definition": "The silence metric: share of active customers who did not have to contact the company "
        "(no ticket opened) in the period. It depends on the period's length: over 90 days more customers have "
        "had a reason to contact us than in any one month, so a 90-day figure is lower than the monthly ones.",
        "owner": "Shared (all departments)",
    },
    "contacts_per_active_customer": {
        "definition": "Tickets opened in the period by the customers in view, over the active customers.",
        "owner": "Support",
    },
    "repeat_contact_rate": {
        "definition": "Share of the period's contacts that come within N days of the same customer's previous "
        "contact on the same topic (topics compared ignoring case and blanks; contacts without a topic count as one "
        "topic). The friction page's repeat-contact hotspot counts the same contacts.",
        "owner": "Shared (all departments)",
    },
    "transfer_rate": {
        "definition": "Share of the period's contacts transferred at least once (of contacts with a transfer count).",
        "owner": "Support",
    },
    "handoffs_per_resolved": {
        "definition": "Transfers per ticket resolved in the period.",
        "owner": "Support",
    },
    "median_hours_to_resolution": {
        "definition": "Median hours from opening to resolution of the tickets resolved in the period.",
        "owner": "Support",
    },
    "satisfaction": {
        "definition": "Mean satisfaction score of the tickets resolved in the period that were rated.",
        "owner": "Support",
    },
    "clv_historical_total": {
        "definition": "Historical customer lifetime value: revenue to date (refunds negative, failed payments "
        "excluded) from the customers in view, up to the end of the period. Per customer: over customers.",
        "owner": "Finance",
    },
    "clv_predicted_total": {
        "definition": "Predicted customer lifetime value: expected discounted revenue over the horizon from BG/NBD "
        "(purchases, P(alive)) and Gamma-Gamma (spend), fitted on daily purchases up to the end of the period.",
        "owner": "Finance",
    },
    "activation_rate": {
        "definition": "Share of the customers in the top churn-risk decile of the latest scoring whose latest entry "
        "in the activation log says someone contacted them or acted. Empty until customers are scored.",
        "owner": "Customer success",
    },
}

# The keys `python -m cxdash kpis --json` prints (at least).
CLI_KEYS = (
    "customers",
    "active_customers",
    "churn_rate",
    "retention_rate",
    "repeat_contact_rate",
    "silence_rate",
    "contacts_per_active_customer",
    "transfer_rate",
    "clv_historical_total",
    "clv_predicted_total",
)

# Filter name -> CRM field it restricts.
ATTRIBUTE_FILTERS = {
    "segment": "segment",
    "region": "region",
    "plan": "plan",
    "channel": "acquisition_channel",
    "campaign": "campaign",
}


# ---------------------------------------------------------------------------------- headline


@dataclass(frozen=True)
class Headline:
    as_of: datetime | None
    customers: int
    active_customers: int
    churned_customers: int
    churn_basis: str  # the definition's basis: "label", "subscriptions", "events", "inactivity", or "none"
    revenue: float
    churn_definition: str | None = None  # the churn definition's name (cxdash.metrics.churn)
    currency: str | None = None  # the transactions' currency (``money_currency``)

    def to_dict(self) -> dict:
        return {
            "currency": self.currency,
            "as_of": self.as_of.isoformat() if self.as_of else None,
            "customers": self.customers,
            "active_customers": self.active_customers,
            "churned_customers": self.churned_customers,
            "churn_basis": self.churn_basis,
            "churn_definition": self.churn_definition,
            "revenue": self.revenue,
        }


def as_of(conn: Connection) -> datetime | None:
    """The data's "now": the latest timestamp of any stored row."""
    tl = timeline(("ts",))
    return conn.execute(sa.select(sa.func.max(tl.c.ts))).scalar()


def _count(conn: Connection, table: sa.Table, *where) -> int:
    return int(conn.execute(sa.select(sa.func.count()).select_from(table).where(*where)).scalar() or 0)


def _customer_universe(conn: Connection, by: str = "cx_id") -> sa.Select:
    """The customers the KPIs are about (see ``cxdash.metrics.churn.customer_universe``)."""
    return churn_defs.customer_universe(conn, by=by)


def churn_basis(conn: Connection, churn: Definition | None = None) -> str:
    """The basis of the churn definition in force (``label``, ``subscriptions``, ``events``,
    ``inactivity``), or ``none`` when the data supports no definition."""
    definition = churn_defs.in_force(conn, churn)
    return definition.basis if definition else "none"


def _churned(
    conn: Connection, now: datetime | None, by: str = "cx_id", churn: Definition | None = None
) -> tuple[sa.Select, str]:
    """Select of churned customers (``by``: ``cx_id`` or the integer ``cx_key``) under the definition
    in force (``churn``, default the suggestion), and its basis (see ``churn_basis``)."""
    definition = churn_defs.in_force(conn, churn)
    if definition is None:
        return sa.select(customer_keys_table.c[by]).where(sa.false()), "none"
    gone = churn_defs.churned(conn, definition, now=now, by=by).subquery("gone")
    return sa.select(gone.c[by]), definition.basis


def headline(conn: Connection, churn: Definition | None = None) -> Headline:
    """Customers, active, churned (under ``churn``, default the suggested definition) and revenue
    over everything stored."""
    now = as_of(conn)
    churn = churn_defs.in_force(conn, churn)
    # counted on the integer customer keys every row carries: no text joins over the event rows
    universe = _customer_universe(conn, by="cx_key").subquery()
    customers = conn.execute(sa.select(sa.func.count()).select_from(universe)).scalar() or 0
    churned_q, basis = _churned(conn, now, by="cx_key", churn=churn)
    churned_sq = churned_q.subquery()
    churned = (
        conn.execute(
            sa.select(sa.func.count()).select_from(universe.join(churned_sq, churned_sq.c.cx_key == universe.c.cx_key))
        ).scalar()
        or 0
    )
    active = 0
    if now is not None:
        since = now - timedelta(days=ACTIVE_WINDOW_DAYS)
        parts = []
        for kind, col in TIMELINE_TIME_COLUMNS:
            t = KIND_TABLES[kind]
            parts.append(sa.select(t.c.cx_key).where(t.c[col] > since, t.c.cx_key.is_not(None)))
        recent = sa.union(*parts).subquery()
        active = (
            conn.execute(
                sa.select(sa.func.count())
                .select_from(universe.join(recent, recent.c.cx_key == universe.c.cx_key))
                .where(universe.c.cx_key.not_in(sa.select(churned_sq.c.cx_key)))
            ).scalar()
            or 0
        )
    tx = KIND_TABLES["transactions"]
    revenue = conn.execute(
        sa.select(sa.func.coalesce(sa.func.sum(tx.c.amount), 0.0)).where(
            sa.not_(matches("failed_payment", tx.c.status))
        )
    ).scalar()
    return Headline(
        now,
        int(customers),
        int(active),
        int(churned),
        basis,
        float(revenue or 0.0),
        churn.name if churn else None,
        money_currency(conn),
    )


def money_currency(conn: Connection) -> str | None:
    """The currency of the money figures: the transactions' one currency code, ``mixed: A, B`` when
    they hold several (amounts are then summed as recorded), None when no currency is known."""
    x = KIND_TABLES["transactions"]
    code = sa.func.upper(sa.func.trim(x.c.currency))
    found = sorted(
        r for (r,) in conn.execute(sa.select(code).where(x.c.currency.is_not(None)).distinct().limit(4)) if r
    )
    if not found:
        return None
    return found[0] if len(found) == 1 else "mixed: " + ", ".join(found[:3]) + (", ..." if len(found) > 3 else "")


# ---------------------------------------------------------------------------------- periods and filters


@dataclass(frozen=True)
class Period:
    """A half-open period ``[start, end)``; ``previous`` is the period of the same length before it."""

    start: datetime
    end: datetime

    def __post_init__(self):
        if self.end <= self.start:
            raise ValueError(f"a period must end after it starts (got {self.start} to {self.end})")

    @property
    def previous(self) -> Period:
        return Period(self.start - (self.end - self.start), self.start)

    @property
    def days(self) -> float:
        return (self.end - self.start).total_seconds() / 86400

    @classmethod
    def from_dates(cls, first: date, last: date) -> Period:
        """The days ``first`` to ``last``, both included."""
        return cls(
            datetime(first.year, first.month, first.day), datetime(last.year, last.month, last.day) + timedelta(days=1)
        )

    def label(self) -> str:
        last = self.end - timedelta(days=1)
        return f"{self.start:%d %b %Y} - {last:%d %b %Y}"


def default_period(now: datetime | None, days: int = DEFAULT_PERIOD_DAYS) -> Period | None:
    """The ``days`` days up to and including the day of ``now`` (the data's latest date)."""
    if now is None:
        return None
    end = datetime(now.year, now.month, now.day) + timedelta(days=1)
    return Period(end - timedelta(days=days), end)


def monthly_periods(now: datetime | None, months: int = 12) -> list[Period]:
    """The last ``months`` calendar months up to the month of ``now`` (the last one may be partial)."""
    if now is None:
        return []
    out = []
    y, m = now.year, now.month
    for _ in range(months):
        start = datetime(y, m, 1)
        ny, nm = (y + 1, 1) if m == 12 else (y, m + 1)
        out.append(Period(start, datetime(ny, nm, 1)))
        y, m = (y - 1, 12) if m == 1 else (y, m - 1)
    return out[::-1]


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


# ---------------------------------------------------------------------------------- building blocks


def _spine(periods: list[Period]) -> sa.Subquery:
    """A derived table with one row per period: ``bucket`` (its index), ``p_start``, ``p_end``, ``prev_start``."""
    rows = [
        sa.select(
            sa.literal(i, sa.Integer).label("bucket"),
            sa.cast(sa.literal(p.start, sa.DateTime), sa.DateTime).label("p_start"),
            sa.cast(sa.literal(p.end, sa.DateTime), sa.DateTime).label("p_end"),
            sa.cast(sa.literal(p.previous.start, sa.DateTime), sa.DateTime).label("prev_start"),
        )
        for i, p in enumerate(periods)
    ]
    return (sa.union_all(*rows) if len(rows) > 1 else rows[0]).subquery("spine")


def _customer_base(conn: Connection, attributes: bool = True) -> sa.Select:
    """Every customer the KPIs are about, one row per ``cx_key``: those with a CRM record, or,
    without any CRM rows, everyone on the timeline. With ``attributes``: ``signup_at`` and the CRM
    attributes too (``ATTRIBUTE_FILTERS``); without, the keys alone."""
    crm = KIND_TABLES["customers"]
    if _count(conn, crm):
        extra = (
            [
                sa.func.min(crm.c.signup_date).label("signup_at"),
                *[sa.func.max(crm.c[col]).label(col) for col in ATTRIBUTE_FILTERS.values()],
            ]
            if attributes
            else []
        )
        return sa.select(crm.c.cx_key, *extra).where(crm.c.cx_key.is_not(None)).group_by(crm.c.cx_key)
    tl = timeline(("cx_key", "ts"))
    extra = (
        [
            sa.func.min(tl.c.ts).label("signup_at"),
            *[sa.cast(sa.null(), sa.String).label(col) for col in ATTRIBUTE_FILTERS.values()],
        ]
        if attributes
        else []
    )
    return sa.select(tl.c.cx_key, *extra).where(tl.c.cx_key.is_not(None)).group_by(tl.c.cx_key)


def _customers(conn: Connection, filters: Filters, churn: Definition | None = None) -> tuple[sa.Subquery, str]:
    """One row per customer in view: ``cx_key, signup_at, churn_at, label_churned`` (0/1) and the CRM
    attributes, and how churn is known: ``dated``, ``snapshot`` (an undated label) or ``none``.

    Customers are their integer keys (``customer_keys.cx_key``): every query below joins and groups
    rows on the ``cx_key`` stamped on them, never on the text identifier. Churn follows ``churn``
    (``cxdash.metrics.churn``; default the suggested definition): ``churn_at`` is when a customer churned
    under a dated definition; ``label_churned`` is 1 for customers an undated label says churned.
    """
    definition = churn_defs.in_force(conn, churn)
    base_sq = _customer_base(conn).subquery("crm_customers")
    if definition is None:
        mode = "none"
        churn_at, label_churned, joined = sa.cast(sa.null(), sa.DateTime), sa.literal(0, sa.Integer), base_sq
    else:
        gone = churn_defs.churned(conn, definition).subquery("gone")
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


def _not_churned_by(cust: sa.Subquery, moment) -> sa.ColumnElement:
    return sa.and_(sa.or_(cust.c.churn_at.is_(None), cust.c.churn_at >= moment), cust.c.label_churned == 0)


def _department_of_ticket() -> sa.ColumnElement:
    k = KIND_TABLES["tickets"]
    return sa.func.coalesce(k.c.department, sources_table.c.department)


def _epoch(col) -> sa.ColumnElement:
    return sa.cast(sa.extract("epoch", col), sa.Double)


def _tickets(cust: sa.Subquery, filters: Filters, repeat_days: int) -> sa.Subquery:
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
            sa.cast(_department_of_ticket(), sa.String).label("department"),
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


def _paid_transactions(cust: sa.Subquery) -> sa.Subquery:
    x = KIND_TABLES["transactions"]
    return (
        sa.select(x.c.cx_key, x.c.timestamp.label("ts"), x.c.amount)
        .select_from(x.join(cust, cust.c.cx_key == x.c.cx_key))
        .where(sa.not_(matches("failed_payment", x.c.status)), x.c.amount.is_not(None))
        .subquery("paid")
    )


def _with_cx_id(per_key: sa.Subquery, columns: tuple[str, ...] | None = None) -> sa.Select:
    """``cx_id`` and ``columns`` (default: all but ``cx_key``) of a per-customer result keyed on ``cx_key``:
    the text identifier is joined once, on the small per-customer result, for outputs that name customers."""
    im = customer_keys_table
    names = [c.name for c in per_key.c if c.name != "cx_key"] if columns is None else list(columns)
    return sa.select(im.c.cx_id, *[per_key.c[n] for n in names]).select_from(
        per_key.join(im, im.c.cx_key == per_key.c.cx_key)
    )


def _at_midnight(moment: datetime) -> bool:
    return moment == datetime(moment.year, moment.month, moment.day)


def _day(ts) -> sa.ColumnElement:
    """The timestamp truncated to its day (portable: via a DATE cast)."""
    return sa.cast(sa.cast(ts, sa.Date), sa.DateTime)


def _frame(conn: Connection, q, index: str = "bucket") -> pd.DataFrame:
    res = conn.execute(q)
    # plain tuples: pandas probes every SQLAlchemy Row for attributes it lacks, each probe a raised
    # and caught KeyError (0.6 s of a 1 s RFM summary at 100k customers); the values are the same
    frame = pd.DataFrame([tuple(r) for r in res.all()], columns=list(res.keys()))
    return frame.set_index(index) if index in frame.columns else frame


def _ratio(num, den) -> pd.Series:
    num = pd.to_numeric(num, errors="coerce").astype(float)
    den = pd.to_numeric(den, errors="coerce").astype(float)
    return (num / den.where(den > 0)).astype(float)


# ---------------------------------------------------------------------------------- the KPI table


KPI_COLUMNS = (
    "customers",
    "active_customers",
    "customers_at_start",
    "churned_in_period",
    "churn_rate",
    "retention_rate",
    "revenue_churn_rate",
    "renewal_rate",
    "net_revenue_retention",
    "revenue",
    "contacts",
    "silent_customers",
    "silence_rate",
    "contacts_per_active_customer",
    "repeat_contact_rate",
    "transfer_rate",
    "handoffs_per_resolved",
    "median_hours_to_resolution",
    "satisfaction",
    "clv_historical_total",
    "clv_historical_per_customer",
)


COUNT_COLUMNS = (
    "customers",
    "active_customers",
    "customers_at_start",
    "churned_in_period",
    "contacts",
    "silent_customers",
)


def kpi_table(
    conn: Connection,
    periods: list[Period],
    filters: Filters | None = None,
    *,
    repeat_days: int = DEFAULT_REPEAT_DAYS,
    churn: Definition | None = None,
) -> pd.DataFrame:
    """Every period-based shared KPI for each period, computed in the database (churn under ``churn``,
    default the suggested definition).

    In: periods (any lengths, may overlap). Out: one row per period, indexed ``0..len-1`` like
    ``periods``, columns ``period_start, period_end`` and ``KPI_COLUMNS`` (NaN where the data has no
    answer: no subscriptions, no tickets...). Rates are fractions (0.25 = 25%).
    """
    filters = filters or Filters()
    if repeat_days < 0:
        raise ValueError("repeat_days must be >= 0")
    out = pd.DataFrame(
        {"period_start": [p.start for p in periods], "period_end": [p.end for p in periods]},
        index=pd.RangeIndex(len(periods), name="bucket"),
    )
    for col in KPI_COLUMNS:
        out[col] = np.nan
    if not periods:
        return out
    spine = _spine(periods)
    cust, basis = _customers(conn, filters, churn)

    # -- customers, base at start, churn -------------------------------------------------
    signed_by_end = sa.or_(cust.c.signup_at.is_(None), cust.c.signup_at < spine.c.p_end)
    at_start = sa.and_(
        sa.or_(cust.c.signup_at.is_(None), cust.c.signup_at < spine.c.p_start), _not_churned_by(cust, spine.c.p_start)
    )
    churned_in = sa.and_(at_start, cust.c.churn_at.is_not(None), cust.c.churn_at < spine.c.p_end)
    q = (
        sa.select(
            spine.c.bucket,
            sa.func.sum(sa.case((signed_by_end, 1), else_=0)).label("customers"),
            sa.func.sum(sa.case((at_start, 1), else_=0)).label("customers_at_start"),
            sa.func.sum(sa.case((churned_in, 1), else_=0)).label("churned_in_period"),
            sa.func.sum(cust.c.label_churned).label("label_churned"),
        )
        .select_from(spine.join(cust, sa.true()))
        .group_by(spine.c.bucket)
    )
    f = _frame(conn, q)
    out["customers"] = f["customers"].reindex(out.index).fillna(0).astype(int)
    if basis == "dated":
        out["customers_at_start"] = f["customers_at_start"]
        out["churned_in_period"] = f["churned_in_period"]
        out["churn_rate"] = _ratio(f["churned_in_period"], f["customers_at_start"])
    elif basis == "snapshot":
        out["churned_in_period"] = f["label_churned"]
        out["churn_rate"] = _ratio(f["label_churned"], f["customers"])
    out["retention_rate"] = 1.0 - out["churn_rate"]

    # -- subscriptions: revenue churn and renewal -------------------------------------------
    subs = KIND_TABLES["subscriptions"]
    running = sa.and_(subs.c.start < spine.c.p_start, sa.or_(subs.c.end.is_(None), subs.c.end >= spine.c.p_start))
    ended_in = sa.and_(running, subs.c.end.is_not(None), subs.c.end < spine.c.p_end)
    kept = sa.and_(running, sa.or_(subs.c.end.is_(None), subs.c.end >= spine.c.p_end))
    q = (
        sa.select(
            spine.c.bucket,
            sa.func.sum(sa.case((running, 1), else_=0)).label("due"),
            sa.func.sum(sa.case((kept, 1), else_=0)).label("renewed"),
            sa.func.sum(sa.case((running, subs.c.mrr), else_=0.0)).label("mrr_start"),
            sa.func.sum(sa.case((ended_in, subs.c.mrr), else_=0.0)).label("mrr_lost"),
        )
        .select_from(spine.join(subs, sa.true()).join(cust, cust.c.cx_key == subs.c.cx_key))
        .group_by(spine.c.bucket)
    )
    f = _frame(conn, q)
    if not f.empty:
        out["renewal_rate"] = _ratio(f["renewed"], f["due"])
        out["revenue_churn_rate"] = _ratio(f["mrr_lost"], f["mrr_start"])

    # -- active customers and the silence metric ---------------------------------------------
    tl = timeline(("cx_key", "ts", "department"))
    tk = _tickets(cust, filters, repeat_days)
    # With periods on day boundaries, the timeline is first reduced to one row per customer and day
    # (several times fewer rows to join against the periods; the same answer).
    day_aligned = all(_at_midnight(p.start) and _at_midnight(p.end) for p in periods)
    steps = sa.select(tl.c.cx_key, (_day(tl.c.ts) if day_aligned else tl.c.ts).label("ts")).where(
        tl.c.cx_key.is_not(None),
        tl.c.ts >= min(p.start for p in periods),
        tl.c.ts < max(p.end for p in periods),
    )
    if filters.department:
        steps = steps.where(tl.c.department.in_(filters.department))
    steps = steps.distinct().subquery("steps")
    act = (
        sa.select(spine.c.bucket, steps.c.cx_key)
        .select_from(
            spine.join(steps, sa.and_(steps.c.ts >= spine.c.p_start, steps.c.ts < spine.c.p_end)).join(
                cust, cust.c.cx_key == steps.c.cx_key
            )
        )
        .where(_not_churned_by(cust, spine.c.p_end))
        .distinct()
        .subquery("act")
    )
    contacted = (
        sa.select(spine.c.bucket, tk.c.cx_key)
        .select_from(spine.join(tk, sa.and_(tk.c.opened_at >= spine.c.p_start, tk.c.opened_at < spine.c.p_end)))
        .distinct()
        .subquery("contacted")
    )
    q = (
        sa.select(
            act.c.bucket,
            sa.func.count().label("active"),
            sa.func.count(contacted.c.cx_key).label("contacted"),
        )
        .select_from(
            act.outerjoin(contacted, sa.and_(contacted.c.bucket == act.c.bucket, contacted.c.cx_key == act.c.cx_key))
        )
        .group_by(act.c.bucket)
    )
    f = _frame(conn, q).reindex(out.index)
    out["active_customers"] = f["active"].fillna(0).astype(int)
    out["silent_customers"] = (f["active"] - f["contacted"]).fillna(0).astype(int)
    has_tickets = _count(conn, KIND_TABLES["tickets"]) > 0
    if has_tickets:
        out["silence_rate"] = _ratio(out["silent_customers"], out["active_customers"])

    # -- contacts -----------------------------------------------------------------------------
    if has_tickets:
        opened_in = sa.and_(tk.c.opened_at >= spine.c.p_start, tk.c.opened_at < spine.c.p_end)
        q = (
            sa.select(
                spine.c.bucket,
                sa.func.count().label("contacts"),
                sa.func.sum(tk.c.is_repeat).label("repeats"),
                sa.func.count(tk.c.transfers).label("with_transfers"),
                sa.func.sum(sa.case((matches("transfer", tk.c.transfers), 1), else_=0)).label("transferred"),
            )
            .select_from(spine.join(tk, opened_in))
            .group_by(spine.c.bucket)
        )
        f = _frame(conn, q).reindex(out.index)
        out["contacts"] = f["contacts"].fillna(0).astype(int)
        out["contacts_per_active_customer"] = _ratio(out["contacts"], out["active_customers"])
        out["repeat_contact_rate"] = _ratio(f["repeats"], f["contacts"])
        out["transfer_rate"] = _ratio(f["transferred"], f["with_transfers"])
        closed_in = sa.and_(tk.c.closed_at >= spine.c.p_start, tk.c.closed_at < spine.c.p_end)
        hours = (_epoch(tk.c.closed_at) - _epoch(tk.c.opened_at)) / 3600.0
        q = (
            sa.select(
                spine.c.bucket,
                sa.func.count().label("resolved"),
                sa.func.sum(sa.func.coalesce(tk.c.transfers, 0)).label("handoffs"),
                sa.func.percentile_cont(0.5).within_group(hours).label("median_hours"),
                sa.func.avg(tk.c.satisfaction).label("satisfaction"),
            )
            .select_from(spine.join(tk, closed_in))
            .group_by(spine.c.bucket)
        )
        f = _frame(conn, q).reindex(out.index)
        out["handoffs_per_resolved"] = _ratio(f["handoffs"], f["resolved"])
        out["median_hours_to_resolution"] = pd.to_numeric(f["median_hours"], errors="coerce").astype(float)
        out["satisfaction"] = pd.to_numeric(f["satisfaction"], errors="coerce").astype(float)

    # -- revenue, net revenue retention, historical CLV ---------------------------------------
    if _count(conn, KIND_TABLES["transactions"]):
        paid = _paid_transactions(cust)
        in_cur = sa.and_(paid.c.ts >= spine.c.p_start, paid.c.ts < spine.c.p_end)
        in_prev = sa.and_(paid.c.ts >= spine.c.prev_start, paid.c.ts < spine.c.p_start)
        per = (
            sa.select(
                spine.c.bucket,
                paid.c.cx_key,
                sa.func.sum(sa.case((in_cur, paid.c.amount), else_=0.0)).label("cur"),
                sa.func.sum(sa.case((in_prev, paid.c.amount), else_=0.0)).label("prev"),
            )
            .select_from(spine.join(paid, sa.and_(paid.c.ts >= spine.c.prev_start, paid.c.ts < spine.c.p_end)))
            .group_by(spine.c.bucket, paid.c.cx_key)
            .subquery("per")
        )
        q = sa.select(
            per.c.bucket,
            sa.func.sum(per.c.cur).label("revenue"),
            sa.func.sum(sa.case((per.c.prev > 0, per.c.cur), else_=0.0)).label("kept"),
            sa.func.sum(sa.case((per.c.prev > 0, per.c.prev), else_=0.0)).label("base"),
        ).group_by(per.c.bucket)
        f = _frame(conn, q).reindex(out.index)
        out["revenue"] = pd.to_numeric(f["revenue"], errors="coerce").fillna(0.0).astype(float)
        out["net_revenue_retention"] = _ratio(f["kept"], f["base"])
        ts = _day(paid.c.ts) if day_aligned else paid.c.ts
        by_time = sa.select(ts.label("ts"), sa.func.sum(paid.c.amount).label("amount")).group_by(ts).subquery("by_time")
        q = (
            sa.select(spine.c.bucket, sa.func.sum(by_time.c.amount).label("to_date"))
            .select_from(spine.join(by_time, by_time.c.ts < spine.c.p_end))
            .group_by(spine.c.bucket)
        )
        f = _frame(conn, q).reindex(out.index)
        out["clv_historical_total"] = pd.to_numeric(f["to_date"], errors="coerce").fillna(0.0).astype(float)
        out["clv_historical_per_customer"] = _ratio(out["clv_historical_total"], out["customers"])
    return out


# ---------------------------------------------------------------------------------- cohorts


def cohort_retention(
    conn: Connection, filters: Filters | None = None, *, now: datetime | None = None, churn: Definition | None = None
) -> pd.DataFrame:
    """Monthly signup-cohort retention matrix (dated churn definitions only, see ``cxdash.metrics.churn``).

    Out: index ``cohort`` (first day of the signup month), columns ``0, 1, 2, ...`` (months since
    signup), values the share of the cohort not churned at the end of that month since signup
    (calendar months: a customer who signed up in March and left in May is retained at months 0 and 1).
    Cells after the data's latest month are NaN. Also a ``customers`` column (cohort size).
    Empty when churn dates are unknown (an undated label, or no churn data).
    """
    filters = filters or Filters()
    now = now or as_of(conn)
    cust, basis = _customers(conn, filters, churn)
    if basis != "dated" or now is None:
        return pd.DataFrame()
    sy, sm = sa.extract("year", cust.c.signup_at), sa.extract("month", cust.c.signup_at)
    cy, cm = sa.extract("year", cust.c.churn_at), sa.extract("month", cust.c.churn_at)
    q = (
        sa.select(sy.label("sy"), sm.label("sm"), cy.label("cy"), cm.label("cm"), sa.func.count().label("n"))
        .where(cust.c.signup_at.is_not(None))
        .group_by(sy, sm, cy, cm)
    )
    f = _frame(conn, q, index="")
    if f.empty:
        return pd.DataFrame()
    f["start"] = f["sy"].astype(int) * 12 + f["sm"].astype(int) - 1
    f["left"] = (f["cy"].astype(float) * 12 + f["cm"].astype(float) - 1).fillna(np.inf)  # month index of churn
    last = now.year * 12 + now.month - 1
    cohorts = np.sort(f["start"].unique())
    horizon = int(last - cohorts.min())
    rows = {}
    sizes = {}
    for c in cohorts:
        part = f[f["start"] == c]
        size = part["n"].sum()
        months_alive = part["left"] - c  # churned during month k since signup -> retained for k < that
        row = []
        for k in range(horizon + 1):
            if c + k > last:
                row.append(np.nan)
            else:
                row.append(float(part.loc[months_alive > k, "n"].sum()) / size)
        rows[pd.Timestamp(year=int(c // 12), month=int(c % 12) + 1, day=1)] = row
        sizes[pd.Timestamp(year=int(c // 12), month=int(c % 12) + 1, day=1)] = int(size)
    matrix = pd.DataFrame.from_dict(rows, orient="index", columns=list(range(horizon + 1)))
    matrix.index.name = "cohort"
    matrix.insert(0, "customers", pd.Series(sizes))
    return matrix


# ---------------------------------------------------------------------------------- predicted CLV


@dataclass
class ClvForecast:
    """Predicted CLV per customer, or the reason there is none (``ok`` False, ``message`` says why)."""

    ok: bool
    message: str
    horizon_months: int
    per_customer: pd.Series = field(default_factory=lambda: pd.Series(dtype=float))
    params: dict = field(default_factory=dict)
    repeat_buyers: int = 0

    def total(self, customers=None) -> float | None:
        """The forecast summed over ``customers`` (default all); None without per-customer values
        (a forecast read back from a stored report keeps only its totals)."""
        if not self.ok or self.per_customer.empty:
            return None
        values = self.per_customer if customers is None else self.per_customer.reindex(list(customers)).dropna()
        return float(values.sum())


def rfm_in_database(conn: Connection, end: datetime, cust: sa.Subquery | None = None) -> pd.DataFrame:
    """Per-customer RFM on calendar days, computed in SQL (the conventions of ``cxdash.metrics.clv.rfm_summary``).

    Purchases are paid transactions with a positive amount before ``end``; several on one day count
    as one purchase of their summed amount. Out (index ``cx_id``): ``frequency`` (repeat purchase
    days), ``recency`` and ``T`` in days (first to last purchase day; first purchase day to the day
    before ``end``), ``monetary_value`` (mean amount of the repeat purchase days, 0 with none).
    """
    if cust is None:
        # Every customer (no filter): only their keys matter here, so the churn definition, which
        # the full customer set would work out and join, is left out (same rows, less work).
        cust = _customer_base(conn, attributes=False).subquery("cust")
    paid = _paid_transactions(cust)
    day = sa.cast(paid.c.ts, sa.Date)
    daily = (
        sa.select(paid.c.cx_key, day.label("day"), sa.func.sum(paid.c.amount).label("amount"))
        .where(paid.c.ts < end, paid.c.amount > 0)
        .group_by(paid.c.cx_key, day)
        .subquery("daily")
    )
    ranked = sa.select(
        daily,
        sa.func.row_number().over(partition_by=daily.c.cx_key, order_by=daily.c.day).label("rn"),
    ).subquery("ranked")
    per_key = (
        sa.select(
            ranked.c.cx_key,
            (sa.func.count() - 1).label("frequency"),
            sa.func.min(ranked.c.day).label("first_day"),
            sa.func.max(ranked.c.day).label("last_day"),
            sa.func.sum(sa.case((ranked.c.rn > 1, ranked.c.amount), else_=0.0)).label("repeat_amount"),
            sa.func.sum(sa.case((ranked.c.rn > 1, ranked.c.amount * ranked.c.amount), else_=0.0)).label(
                "repeat_amount_sq"
            ),
        )
        .group_by(ranked.c.cx_key)
        .subquery("per_key")
    )
    return _rfm_frame(_frame(conn, _with_cx_id(per_key), index="cx_id"), end)


def rfm_at_ends(conn: Connection, ends: Sequence[datetime]) -> dict[datetime, pd.DataFrame]:
    """``rfm_in_database(conn, end)`` for several ``ends`` at once (every customer), in one pass
    over the transactions: the purchase days before an earlier end are the first ones before a
    later end, so one ranking of the days serves every end. Ends at midnight only (a day is then
    wholly before an end or not); others are computed one by one. Out: ``{end: frame}``."""
    ends = list(dict.fromkeys(ends))
    if len(ends) < 2 or not all(_at_midnight(e) for e in ends):
        return {e: rfm_in_database(conn, e) for e in ends}
    cust = _customer_base(conn, attributes=False).subquery("cust")
    paid = _paid_transactions(cust)
    day = sa.cast(paid.c.ts, sa.Date)
    daily = (
        sa.select(paid.c.cx_key, day.label("day"), sa.func.sum(paid.c.amount).label("amount"))
        .where(paid.c.ts < max(ends), paid.c.amount > 0)
        .group_by(paid.c.cx_key, day)
        .subquery("daily")
    )
    ranked = sa.select(
        daily,
        sa.func.row_number().over(partition_by=daily.c.cx_key, order_by=daily.c.day).label("rn"),
    ).subquery("ranked")
    r = ranked.c
    columns = []
    for i, e in enumerate(ends):
        before = r.day < e.date()

        def when(condition, value, otherwise=None):
            return sa.case((condition, value), else_=otherwise)

        columns += [
            sa.func.count(when(before, 1)).label(f"days_{i}"),
            sa.func.max(when(before, r.day)).label(f"last_day_{i}"),
            sa.func.sum(when(sa.and_(before, r.rn > 1), r.amount, 0.0)).label(f"repeat_amount_{i}"),
            sa.func.sum(when(sa.and_(before, r.rn > 1), r.amount * r.amount, 0.0)).label(f"repeat_amount_sq_{i}"),
        ]
    per_key = (
        sa.select(r.cx_key, sa.func.min(r.day).label("first_day"), *columns).group_by(r.cx_key).subquery("per_key")
    )
    wide = _frame(conn, _with_cx_id(per_key), index="cx_id")
    out = {}
    for i, e in enumerate(ends):
        days = wide[f"days_{i}"].astype(np.int64)
        f = wide.loc[days > 0, ["first_day"]].copy()
        f["frequency"] = days[days > 0] - 1
        f["last_day"] = wide.loc[days > 0, f"last_day_{i}"]
        f["repeat_amount"] = wide.loc[days > 0, f"repeat_amount_{i}"]
        f["repeat_amount_sq"] = wide.loc[days > 0, f"repeat_amount_sq_{i}"]
        out[e] = _rfm_frame(f, e)
    return out


def _rfm_frame(f: pd.DataFrame, end: datetime) -> pd.DataFrame:
    """Per-customer ``frequency, first_day, last_day, repeat_amount, repeat_amount_sq`` (index
    ``cx_id``) -> the RFM frame of ``rfm_in_database``."""
    if f.empty:
        return pd.DataFrame(columns=["frequency", "recency", "T", "monetary_value", "spend_cv"])
    obs_day = pd.Timestamp((end - timedelta(microseconds=1)).date())
    first = pd.to_datetime(f["first_day"])
    last = pd.to_datetime(f["last_day"])
    out = pd.DataFrame(index=f.index)
    out["frequency"] = f["frequency"].astype(np.int64)
    out["recency"] = (last - first).dt.days.astype(float)
    out["T"] = (obs_day - first).dt.days.astype(float)
    n = out["frequency"].clip(lower=1).astype(float)
    mean = np.where(out["frequency"] > 0, f["repeat_amount"].astype(float) / n, 0.0)
    out["monetary_value"] = mean
    # Coefficient of variation of the repeat purchases' spend (customers with two or more of them).
    var = (f["repeat_amount_sq"].astype(float) / n - mean**2).clip(lower=0.0)
    out["spend_cv"] = np.where(
        (out["frequency"] >= 2) & (mean > 0), np.sqrt(var) / np.where(mean > 0, mean, 1.0), np.nan
    )
    return out.sort_index()


FALLBACK_PENALIZER = 0.001  # L2 penalty tried when the plain BG/NBD MLE is on the boundary (as lifetimes advises)
# The purchase model's four population parameters are fitted on at most this many customers (a fixed
# random sample); every customer is then scored. 100k customers: ~10 s for the full fit, ~2 s sampled.
MAX_FIT_CUSTOMERS = 20_000


def _fit_bgnbd(rfm: pd.DataFrame):
    """BG/NBD by plain maximum likelihood; when that has no interior optimum (typically dropout
    a -> 0 on a short calibration window), refit with a small L2 penalty. Returns (model, penalizer).
    Large bases are fitted on a fixed random sample of ``MAX_FIT_CUSTOMERS``."""
    from cxdash.metrics.clv import BGNBD, ConvergenceError

    if len(rfm) > MAX_FIT_CUSTOMERS:
        rfm = rfm.sample(MAX_FIT_CUSTOMERS, random_state=0)

    try:
        return BGNBD().fit(rfm["frequency"], rfm["recency"], rfm["T"]), 0.0
    except ConvergenceError as exc:
        log.info("plain BG/NBD fit failed (%s); refitting with penalizer %s", exc, FALLBACK_PENALIZER)
        model = BGNBD(penalizer_coef=FALLBACK_PENALIZER).fit(rfm["frequency"], rfm["recency"], rfm["T"])
        return model, FALLBACK_PENALIZER


def _penalty_note(penalizer: float) -> str:
    if not penalizer:
        return ""
    return (
        " The model's plain fit did not settle on these purchases, so it was fitted with a small "
        f"penalty that keeps its parameters from running to extremes (L2 penalty {penalizer}); the "
        "forecast is a little more cautious for it."
    )


class _OwnAverageSpend:
    """The Gamma-Gamma limit for p -> infinity: a repeat buyer's expected spend is their own mean, a
    one-time buyer's the mean over repeat buyers."""

    params_: dict = {}

    def __init__(self, frequency: pd.Series, monetary_value: pd.Series):
        repeat = np.asarray(frequency) > 0
        self.population_mean = float(np.mean(np.asarray(monetary_value, dtype=float)[repeat]))

    def conditional_expected_average_profit(self, frequency, monetary_value) -> np.ndarray:
        x = np.asarray(frequency, dtype=float)
        return np.where(x > 0, np.asarray(monetary_value, dtype=float), self.population_mean)


def predicted_clv(
    conn: Connection,
    end: datetime,
    *,
    horizon_months: int = DEFAULT_CLV_HORIZON_MONTHS,
    discount_rate_monthly: float = 0.01,
    rfm: pd.DataFrame | None = None,
) -> ClvForecast:
    """BG/NBD + Gamma-Gamma fitted on every customer's daily purchases before ``end``
    (``rfm``: their ``rfm_in_database(conn, end)`` when already computed).

    Guards: no transactions, fewer than ``MIN_REPEAT_BUYERS`` repeat buyers, a fit that does not
    converge, or a non-finite forecast each give ``ok=False`` with a message instead of numbers.
    Customers whose first purchase is on the last day (T = 0) cannot be scored and get none.
    """
    from cxdash.metrics.clv import ConvergenceError, GammaGamma, customer_lifetime_value

    rfm = rfm_in_database(conn, end) if rfm is None else rfm
    if rfm.empty:
        return ClvForecast(False, "No purchases loaded: predicted CLV needs transactions.", horizon_months)
    rfm = rfm[rfm["T"] > 0]
    repeaters = int((rfm["frequency"] > 0).sum())
    if repeaters < MIN_REPEAT_BUYERS:
        return ClvForecast(
            False,
            f"Only {repeaters} customers bought more than once (at least {MIN_REPEAT_BUYERS} are needed): "
            "the purchase model cannot be fitted on so few repeat buyers.",
            horizon_months,
            repeat_buyers=repeaters,
        )
    spend_note = "a spend model (Gamma-Gamma) that pulls each customer's average spend toward everyone's"
    try:
        bg, penalizer = _fit_bgnbd(rfm)
        constant_spend = float(np.nanmedian(rfm["spend_cv"])) < 0.01 if rfm["spend_cv"].notna().any() else False
        gg = None
        if not constant_spend:
            try:
                gg = GammaGamma().fit(rfm["frequency"], rfm["monetary_value"])
            except ConvergenceError as exc:
                if "'p'" not in str(exc) or "ran off" not in str(exc):
                    raise
        if gg is None:
            # Gamma-Gamma's p -> infinity: a customer's spend per purchase barely varies, so its posterior
            # mean tends to the customer's own average (the repeat buyers' mean for one-time buyers).
            gg = _OwnAverageSpend(rfm["frequency"], rfm["monetary_value"])
            spend_note = (
                "each customer's own average spend (their spend per purchase hardly varies, so it needs "
                "no pulling toward everyone's)"
            )
        clv = customer_lifetime_value(
            bg,
            gg,
            rfm["frequency"],
            rfm["recency"],
            rfm["T"],
            rfm["monetary_value"],
            horizon_months=horizon_months,
            discount_rate_monthly=discount_rate_monthly,
            freq="D",
        )
    except (ConvergenceError, ValueError, FloatingPointError) as exc:
        return ClvForecast(
            False,
            "The purchase model found no stable fit on these purchases, so no forecast is shown "
            "(revenue to date is unaffected). A longer purchase history or more customers who buy "
            f"more than once usually fixes this. Details: {exc}",
            horizon_months,
            repeat_buyers=repeaters,
        )
    clv = pd.Series(np.asarray(clv, dtype=float), index=rfm.index, name="clv")
    if not np.all(np.isfinite(clv)):
        return ClvForecast(
            False,
            "The purchase model gave impossible (infinite) values on these purchases, so no forecast is "
            "shown (revenue to date is unaffected). A longer purchase history usually fixes this.",
            horizon_months,
            repeat_buyers=repeaters,
        )
    return ClvForecast(
        True,
        f"Forecast from each customer's own purchase history (how often, how recently and how much they "
        f"bought) by a standard model of customers who buy until they quietly stop (BG/NBD), fitted on "
        f"{len(rfm):,} buyers, {repeaters:,} of whom bought more than once"
        + (f" (its parameters on a random {MAX_FIT_CUSTOMERS:,} of them)" if len(rfm) > MAX_FIT_CUSTOMERS else "")
        + f", with {spend_note}; the next {horizon_months} months, future revenue discounted 1% a month."
        + _penalty_note(penalizer),
        horizon_months,
        clv,
        {**{f"bgnbd_{k}": v for k, v in bg.params_.items()}, **{f"gg_{k}": v for k, v in gg.params_.items()}},
        repeaters,
    )


def holdout_check(conn: Connection, *, holdout_share: float = 0.4, max_holdout_days: int = 365) -> dict:
    """Calibration/holdout check of the purchase model on the loaded transactions.

    The last ``holdout_share`` of the transaction span (at most ``max_holdout_days``) is held out;
    BG/NBD is fitted on the purchases before it and predicts each calibration customer's purchase
    days in the holdout. Out: ``ok``, ``message``, ``calibration_end``, ``holdout_days``,
    ``predicted_total``, ``actual_total``, and ``by_frequency`` (one row per calibration repeat-purchase
    count, capped at 7+: ``customers, actual, predicted`` mean purchases per customer).
    """
    from cxdash.metrics.clv import ConvergenceError

    cust, _ = _customers(conn, Filters())
    paid = _paid_transactions(cust)
    lo, hi = conn.execute(sa.select(sa.func.min(paid.c.ts), sa.func.max(paid.c.ts)).where(paid.c.amount > 0)).one()
    if lo is None:
        return {"ok": False, "message": "No purchases loaded: nothing to check."}
    first = datetime(lo.year, lo.month, lo.day)
    end = datetime(hi.year, hi.month, hi.day) + timedelta(days=1)
    span = (end - first).days
    holdout_days = min(int(round(span * holdout_share)), max_holdout_days)
    if span < 30 or holdout_days < 7:
        return {"ok": False, "message": f"The purchases span only {span} days: too short to hold any out."}
    cal_end = end - timedelta(days=holdout_days)
    rfm = rfm_in_database(conn, cal_end, cust)
    rfm = rfm[rfm["T"] > 0]
    repeaters = int((rfm["frequency"] > 0).sum())
    base = {"calibration_end": cal_end, "holdout_days": holdout_days}
    if repeaters < MIN_REPEAT_BUYERS:
        return {
            **base,
            "ok": False,
            "message": f"Only {repeaters} repeat buyers before {cal_end:%d %b %Y}: too few to fit.",
        }
    try:
        bg, penalizer = _fit_bgnbd(rfm)
    except (ConvergenceError, ValueError) as exc:
        return {**base, "ok": False, "message": f"The purchase model did not converge on the calibration data: {exc}"}
    day = sa.cast(paid.c.ts, sa.Date)
    per_key = (
        sa.select(paid.c.cx_key, sa.func.count(sa.distinct(day)).label("actual"))
        .where(paid.c.ts >= cal_end, paid.c.ts < end, paid.c.amount > 0)
        .group_by(paid.c.cx_key)
        .subquery("actual")
    )
    actual = _frame(conn, _with_cx_id(per_key), index="cx_id")["actual"]
    frame = rfm.copy()
    frame["actual"] = actual.reindex(frame.index).fillna(0).astype(float)
    frame["predicted"] = np.asarray(
        bg.expected_purchases(float(holdout_days), frame["frequency"], frame["recency"], frame["T"]), dtype=float
    )
    frame["bucket"] = frame["frequency"].clip(upper=7)
    by = frame.groupby("bucket").agg(
        customers=("actual", "size"), actual=("actual", "mean"), predicted=("predicted", "mean")
    )
    by.index = [f"{int(i)}+" if i == 7 else str(int(i)) for i in by.index]
    by.index.name = "repeat purchases in calibration"
    return {
        **base,
        "ok": True,
        "message": f"Fitted on {len(frame):,} customers' purchases up to {cal_end - timedelta(days=1):%d %b %Y}; "
        f"predicted their purchase days in the next {holdout_days} days." + _penalty_note(penalizer),
        "penalizer": penalizer,
        "predicted_total": float(frame["predicted"].sum()),
        "actual_total": float(frame["actual"].sum()),
        "customers": len(frame),
        "by_frequency": by.reset_index(),
        "params": dict(bg.params_),
    }


# ---------------------------------------------------------------------------------- snapshot splits

SPLIT_COLUMNS = ("attribute", "value", "customers", "churned", "churn_rate")


def snapshot_splits(conn: Connection, filters: Filters | None = None, churn: Definition | None = None) -> pd.DataFrame:
    """Churn per value of each CRM attribute filter (segment, region, plan, channel, campaign) under
    the definition in force, over everything stored: what a customer table without dates can show.

    Out: ``SPLIT_COLUMNS``, one row per attribute value (attributes with one value or none left
    out), the most customers first within each attribute.
    """
    cust, mode = _customers(conn, filters or Filters(), churn)
    frames = []
    if mode == "none":
        return pd.DataFrame(columns=list(SPLIT_COLUMNS))
    gone = cust.c.label_churned if mode == "snapshot" else sa.case((cust.c.churn_at.is_not(None), 1), else_=0)
    for name, col in ATTRIBUTE_FILTERS.items():
        q = (
            sa.select(
                cust.c[col].label("value"), sa.func.count().label("customers"), sa.func.sum(gone).label("churned")
            )
            .where(cust.c[col].is_not(None))
            .group_by(cust.c[col])
        )
        f = _frame(conn, q, index="")
        if len(f) < 2:
            continue
        f.insert(0, "attribute", name)
        frames.append(f.sort_values(["customers", "value"], ascending=[False, True], kind="stable"))
    if not frames:
        return pd.DataFrame(columns=list(SPLIT_COLUMNS))
    out = pd.concat(frames, ignore_index=True)
    out["value"] = out["value"].astype(str)
    out["customers"] = out["customers"].astype(int)
    out["churned"] = out["churned"].astype(int)
    out["churn_rate"] = out["churned"] / out["customers"]
    return out[list(SPLIT_COLUMNS)]


# ---------------------------------------------------------------------------------- coverage and the report


def coverage(
    conn: Connection, filters: Filters | None = None, churn: Definition | None = None
) -> dict[str, float | None]:
    """Per KPI, the share of the customers in view that have the data it needs (for churn: the
    customers the definition in force can judge)."""
    filters = filters or Filters()
    churn = churn_defs.in_force(conn, churn)
    cust, basis = _customers(conn, filters, churn)

    def ids(kind: str, *where) -> sa.Subquery:
        t = KIND_TABLES[kind]
        return sa.select(t.c.cx_key).where(t.c.cx_key.is_not(None), *where).distinct().subquery()

    k = KIND_TABLES["tickets"]
    x = KIND_TABLES["transactions"]
    u = KIND_TABLES["subscriptions"]
    crm = KIND_TABLES["customers"]
    tl = timeline(("cx_key", "ts"))
    sets = {
        "activity": sa.select(tl.c.cx_key).where(tl.c.cx_key.is_not(None)).distinct().subquery(),
        "subscription": ids("subscriptions"),
        "mrr": ids("subscriptions", u.c.mrr.is_not(None)),
        "label": ids("customers", crm.c.churn_label.is_not(None)),
        "churn": churn_defs.covered(conn, churn).subquery() if churn is not None else ids("customers", sa.false()),
        "ticket": ids("tickets"),
        "transfers": ids("tickets", k.c.transfers.is_not(None)),
        "closed": ids("tickets", k.c.closed_at.is_not(None)),
        "rated": ids("tickets", k.c.satisfaction.is_not(None)),
        "transaction": ids("transactions", x.c.amount.is_not(None)),
    }
    cols = [sa.func.count().label("n")]
    joined = cust
    for name, sq in sets.items():
        a = sq.alias(f"cov_{name}")
        joined = joined.outerjoin(a, a.c.cx_key == cust.c.cx_key)
        cols.append(sa.func.count(a.c.cx_key).label(name))
    row = conn.execute(sa.select(*cols).select_from(joined)).mappings().one()
    n = row["n"]

    def share(name: str) -> float | None:
        return (row[name] / n) if n else None

    churn_cov = share("churn") if basis != "none" else 0.0
    return {
        "customers": 1.0 if n else None,
        "active_customers": share("activity"),
        "churn_rate": churn_cov,
        "retention_rate": churn_cov,
        "revenue_churn_rate": share("mrr"),
        "renewal_rate": share("subscription"),
        "net_revenue_retention": share("transaction"),
        "silence_rate": share("ticket"),
        "contacts_per_active_customer": share("ticket"),
        "repeat_contact_rate": share("ticket"),
        "transfer_rate": share("transfers"),
        "handoffs_per_resolved": share("closed"),
        "median_hours_to_resolution": share("closed"),
        "satisfaction": share("rated"),
        "clv_historical_total": share("transaction"),
        "clv_predicted_total": share("transaction"),
        "activation_rate": 0.0,
    }


@dataclass
class KpiReport:
    """The shared KPIs for one period, the previous one, and how much of the customer base each covers."""

    as_of: datetime | None
    period: Period | None
    filters: Filters
    churn_basis: str
    repeat_days: int
    current: dict[str, float | None]
    previous: dict[str, float | None]
    coverage: dict[str, float | None]
    clv: ClvForecast | None = None
    clv_previous: ClvForecast | None = None
    notes: dict[str, str] = field(default_factory=dict)
    churn_definition: str | None = None  # the churn definition's name (cxdash.metrics.churn)
    churn_dated: bool = False  # churn has dates: period figures; else a snapshot
    # With no dates at all: churn per CRM attribute value (``snapshot_splits``), else empty.
    splits: pd.DataFrame | None = None
    currency: str | None = None  # the money figures' currency (``money_currency``)

    def value(self, name: str) -> float | None:
        return self.current.get(name)

    def delta(self, name: str) -> float | None:
        a, b = self.current.get(name), self.previous.get(name)
        if a is None or b is None:
            return None
        return a - b

    def to_state(self) -> dict:
        """Everything but the per-customer forecasts, as JSON values (``from_state`` reads it back).
        The totals those forecasts give are already in ``current`` and ``previous``."""

        def forecast(f: ClvForecast | None) -> dict | None:
            if f is None:
                return None
            return {
                "ok": f.ok,
                "message": f.message,
                "horizon_months": f.horizon_months,
                "params": {k: float(v) for k, v in f.params.items()},
                "repeat_buyers": int(f.repeat_buyers),
            }

        return {
            "as_of": self.as_of.isoformat() if self.as_of else None,
            "period": [self.period.start.isoformat(), self.period.end.isoformat()] if self.period else None,
            "filters": {f.name: list(getattr(self.filters, f.name)) for f in fields(self.filters)},
            "churn_basis": self.churn_basis,
            "repeat_days": self.repeat_days,
            "current": self.current,
            "previous": self.previous,
            "coverage": self.coverage,
            "clv": forecast(self.clv),
            "clv_previous": forecast(self.clv_previous),
            "notes": self.notes,
            "churn_definition": self.churn_definition,
            "churn_dated": self.churn_dated,
            "splits": None if self.splits is None else self.splits.to_dict(orient="records"),
            "currency": self.currency,
        }

    @classmethod
    def from_state(cls, state: dict) -> KpiReport:
        def forecast(d: dict | None) -> ClvForecast | None:
            return (
                None
                if d is None
                else ClvForecast(
                    d["ok"], d["message"], d["horizon_months"], params=d["params"], repeat_buyers=d["repeat_buyers"]
                )
            )

        period = state["period"]
        return cls(
            datetime.fromisoformat(state["as_of"]) if state["as_of"] else None,
            Period(datetime.fromisoformat(period[0]), datetime.fromisoformat(period[1])) if period else None,
            Filters(**state["filters"]),
            state["churn_basis"],
            state["repeat_days"],
            dict(state["current"]),
            dict(state["previous"]),
            dict(state["coverage"]),
            forecast(state["clv"]),
            forecast(state["clv_previous"]),
            dict(state["notes"]),
            state.get("churn_definition"),
            bool(state.get("churn_dated")),
            None if state.get("splits") is None else pd.DataFrame(state["splits"], columns=list(SPLIT_COLUMNS)),
            state.get("currency"),
        )

    def to_dict(self) -> dict:
        """Flat JSON-ready dict: every KPI under its own key, plus ``previous``, ``coverage`` and context."""
        out: dict = {
            "as_of": self.as_of.isoformat() if self.as_of else None,
            "period_start": self.period.start.date().isoformat() if self.period else None,
            "period_end": (self.period.end - timedelta(days=1)).date().isoformat() if self.period else None,
            "filters": {f.name: list(getattr(self.filters, f.name)) for f in fields(self.filters)},
            "churn_basis": self.churn_basis,
            "churn_definition": self.churn_definition,
            "churn_dated": self.churn_dated,
            "repeat_days": self.repeat_days,
        }
        out.update(self.current)
        out["previous"] = dict(self.previous)
        out["coverage"] = dict(self.coverage)
        out["notes"] = dict(self.notes)
        return out


def _clean(value) -> float | None:
    if value is None:
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) or math.isinf(v) else v


def kpi_report(
    conn: Connection,
    period: Period | None = None,
    filters: Filters | None = None,
    *,
    repeat_days: int = DEFAULT_REPEAT_DAYS,
    horizon_months: int = DEFAULT_CLV_HORIZON_MONTHS,
    clv: ClvForecast | None = None,
    clv_previous: ClvForecast | None = None,
    with_clv: bool = True,
    churn: Definition | None = None,
) -> KpiReport:
    """Every shared KPI for ``period`` (default: the 90 days to the data's latest date) and the previous period.

    ``clv`` / ``clv_previous`` may be passed in (a cached fit); otherwise they are fitted here unless
    ``with_clv`` is False. The predicted total covers the customers in view.
    """
    filters = filters or Filters()
    now = as_of(conn)
    period = period or default_period(now)
    churn = churn_defs.in_force(conn, churn)
    basis = churn.basis if churn else "none"
    dated = churn_defs.is_dated(conn, churn)
    cov = coverage(conn, filters, churn)
    if churn is None:
        churn_note = "No churn label, subscriptions, churn records or dated activity loaded: churn is unknown."
    else:
        churn_note = f"Churn = {churn.describe()} [{churn.name}]." + (
            "" if dated else " The definition has no dates: a snapshot, the same for every period."
        )
    notes = {
        "churn_rate": churn_note,
        "activation_rate": "Not available yet: no customers have been scored for churn risk.",
    }
    if period is None:
        # No dates at all (a customer table with a label): every figure a snapshot allows.
        empty = {name: None for name in DEFINITIONS}
        current = dict(empty)
        cust, mode = _customers(conn, filters, churn)
        n, gone = conn.execute(sa.select(sa.func.count(), sa.func.sum(cust.c.label_churned))).one()
        current["customers"] = int(n or 0)
        if mode == "snapshot" and n:
            current["churned_in_period"] = int(gone or 0)
            current["churn_rate"] = float(gone or 0) / n
            current["retention_rate"] = 1.0 - current["churn_rate"]
        notes["period"] = (
            "The loaded data has no dates, so these are a snapshot. Figures over a period (active "
            "customers, the silence metric, contacts, revenue, renewal and CLV) need dated data: "
            "events, tickets, transactions or subscriptions."
        )
        return KpiReport(
            now,
            None,
            filters,
            basis,
            repeat_days,
            current,
            dict(empty),
            cov,
            notes=notes,
            churn_definition=churn.name if churn else None,
            churn_dated=dated,
            splits=snapshot_splits(conn, filters, churn),
            currency=money_currency(conn),
        )
    table = kpi_table(conn, [period, period.previous], filters, repeat_days=repeat_days, churn=churn)
    current = {c: _clean(table.at[0, c]) for c in KPI_COLUMNS}
    previous = {c: _clean(table.at[1, c]) for c in KPI_COLUMNS}
    for values in (current, previous):
        for c in COUNT_COLUMNS:
            if values[c] is not None:
                values[c] = int(values[c])
        if not cov.get("active_customers"):  # no dated activity at all: unknown, not zero
            values["active_customers"] = values["silent_customers"] = None
    if not dated:
        previous["churn_rate"] = previous["retention_rate"] = None  # a snapshot has no previous period
    customers_in_view = None
    if with_clv and (clv is None or clv_previous is None):
        # both forecasts' purchase summaries from one pass over the transactions
        rfms = rfm_at_ends(conn, [e for e, f in ((period.end, clv), (period.previous.end, clv_previous)) if f is None])
        clv = clv or predicted_clv(conn, period.end, horizon_months=horizon_months, rfm=rfms[period.end])
        clv_previous = clv_previous or predicted_clv(
            conn, period.previous.end, horizon_months=horizon_months, rfm=rfms[period.previous.end]
        )
    any_forecast = any(f is not None and f.ok for f in (clv, clv_previous))
    if any_forecast and filters.active:
        cust, _ = _customers(conn, filters, churn)
        customers_in_view = list(conn.execute(_with_cx_id(cust, columns=())).scalars())
    for forecast, target in ((clv, current), (clv_previous, previous)):
        if forecast is None:
            target["clv_predicted_total"] = None
            target["clv_predicted_per_customer"] = None
            continue
        total = forecast.total(customers_in_view)
        target["clv_predicted_total"] = total
        n = target.get("customers") or 0
        target["clv_predicted_per_customer"] = (total / n) if (total is not None and n) else None
    if clv is not None and not clv.ok:
        notes["clv_predicted_total"] = clv.message
    current["activation_rate"] = previous["activation_rate"] = None
    return KpiReport(
        now,
        period,
        filters,
        basis,
        repeat_days,
        current,
        previous,
        cov,
        clv,
        clv_previous,
        notes,
        churn_definition=churn.name if churn else None,
        churn_dated=dated,
        currency=money_currency(conn),
    )


def attach_activation(report: KpiReport, store) -> KpiReport:
    """Fill the activation slot from the at-risk list (``cxdash.risk.activation``), when one has been scored.

    The list covers every scored customer, so filters do not apply to it (the note says so). Without
    scores the slot stays empty with the reason.
    """
    try:
        from cxdash.risk.activation import activation_stats

        stats = activation_stats(store)
    except Exception as exc:  # app-state tables missing or unreadable: keep the slot honestly empty
        log.info("activation stats unavailable: %s", exc)
        return report
    if stats.get("share_acted") is None:
        report.notes["activation_rate"] = (
            "No customers have been scored for churn risk yet (train and score on the Churn model page)."
        )
        return report
    acted = stats["contacted"] + stats["actioned"]
    wait = stats.get("median_hours_to_first_action")
    report.current["activation_rate"] = float(stats["share_acted"])
    report.coverage["activation_rate"] = 1.0
    report.notes["activation_rate"] = (
        f"{acted:,} of the {stats['at_risk']:,} customers in the top risk decile were contacted or actioned"
        + (f" (median {wait:,.1f} h from scoring to first action)" if wait is not None else "")
        + "; the at-risk list covers all customers, so filters do not apply."
    )
    return report


# ---------------------------------------------------------------------------------- departmental conflicts

DEPARTMENTAL_DEFINITIONS: dict[str, dict[str, str]] = {
    "new_customers": {
        "definition": "Customers acquired (CRM records) per campaign or acquisition channel, all time.",
        "owner": "Marketing",
    },
    "revenue_closed": {
        "definition": "Amount of won opportunities per sales owner.",
        "owner": "Sales",
    },
    "tickets_closed": {
        "definition": "Tickets resolved per team (the median hours to close is shown beside it).",
        "owner": "Support",
    },
    "collections": {
        "definition": "Payments collected (paid transactions, refunds negative) per region.",
        "owner": "Billing",
    },
    "retention_90d": {
        "definition": "Share of the cohort's customers who signed up at least 90 days before the data's latest date "
        "and were still customers 90 days after signing up (with only a churn label: share not labelled churned).",
        "owner": "Shared (all departments)",
    },
    "repeat_after_close": {
        "definition": "Share of the team's resolved tickets followed by a repeat contact: the same customer's next "
        "contact on the same topic within N days (the issue was not really solved).",
        "owner": "Shared (all departments)",
    },
}
DEFINITIONS.update(DEPARTMENTAL_DEFINITIONS)

MIN_COHORT_CUSTOMERS = 20  # smaller cohorts are shown but not ranked (their shares are noise)
# A flagged cohort's shared outcome must also be worse than the other cohorts' beyond chance
# (one-sided z-test at this level, Bonferroni-corrected for the number of cohorts compared).
CONFLICT_ALPHA = 0.01
CONFLICT_COLUMNS = (
    "department",
    "cohort_by",
    "cohort",
    "customers",
    "departmental_kpi",
    "departmental_value",
    "shared_kpi",
    "shared_value",
    "clv_per_customer",
    "repeat_contact_rate",
    "departmental_top_quartile",
    "shared_bottom_quartile",
    "p_value",
    "shared_significantly_worse",
    "conflict",
)


def _customer_outcomes(conn: Connection, cust: sa.Subquery, basis: str, now: datetime, repeat_days: int) -> sa.Subquery:
    """Per customer in view: ``cx_key``, the CRM attributes, ``retained_90`` (1/0, NULL when too recent or
    unknown), ``revenue`` to date, ``contacts`` and ``repeats``."""
    if basis == "dated":
        lived = _epoch(cust.c.churn_at) - _epoch(cust.c.signup_at)
        retained = sa.case(
            (sa.or_(cust.c.signup_at.is_(None), cust.c.signup_at > now - timedelta(days=90)), sa.null()),
            (sa.or_(cust.c.churn_at.is_(None), lived >= 90 * 86400.0), 1),
            else_=0,
        )
    elif basis == "snapshot":
        retained = 1 - cust.c.label_churned
    else:
        retained = sa.cast(sa.null(), sa.Integer)
    paid = _paid_transactions(cust)
    revenue = (
        sa.select(paid.c.cx_key, sa.func.sum(paid.c.amount).label("revenue")).group_by(paid.c.cx_key).subquery("rev")
    )
    tk = _tickets(cust, Filters(), repeat_days)
    contacts = (
        sa.select(tk.c.cx_key, sa.func.count().label("contacts"), sa.func.sum(tk.c.is_repeat).label("repeats"))
        .group_by(tk.c.cx_key)
        .subquery("con")
    )
    return (
        sa.select(
            cust.c.cx_key,
            *[cust.c[col] for col in ATTRIBUTE_FILTERS.values()],
            sa.cast(retained, sa.Integer).label("retained_90"),
            sa.func.coalesce(revenue.c.revenue, 0.0).label("revenue"),
            sa.func.coalesce(contacts.c.contacts, 0).label("contacts"),
            sa.func.coalesce(contacts.c.repeats, 0).label("repeats"),
        )
        .select_from(
            cust.outerjoin(revenue, revenue.c.cx_key == cust.c.cx_key).outerjoin(
                contacts, contacts.c.cx_key == cust.c.cx_key
            )
        )
        .subquery("outcomes")
    )


def _shared_by(group_col, oc: sa.Subquery) -> list:
    return [
        sa.func.count(sa.distinct(oc.c.cx_key)).label("customers"),
        sa.func.avg(sa.cast(oc.c.retained_90, sa.Double)).label("retention_90d"),
        sa.func.count(oc.c.retained_90).label("ranked_customers"),
        (sa.func.sum(oc.c.revenue) / sa.func.count(sa.distinct(oc.c.cx_key))).label("clv_per_customer"),
        (sa.cast(sa.func.sum(oc.c.repeats), sa.Double) / sa.func.nullif(sa.func.sum(oc.c.contacts), 0)).label(
            "repeat_contact_rate"
        ),
    ]


def conflicts(
    conn: Connection,
    filters: Filters | None = None,
    *,
    now: datetime | None = None,
    repeat_days: int = DEFAULT_REPEAT_DAYS,
    churn: Definition | None = None,
) -> pd.DataFrame:
    """Departmental KPIs per cohort beside the shared outcome of the same customers.

    Cohorts: campaign and acquisition channel (marketing: new customers), sales owner (revenue
    closed), support team (tickets closed; shared: repeat contacts after its tickets), region
    (billing: collections). Within each department's cohorts, ``departmental_top_quartile`` marks
    values at or above the 75th percentile and ``shared_bottom_quartile`` shared values at or below
    the 25th; ``conflict`` is both. Only cohorts with at least ``MIN_COHORT_CUSTOMERS`` customers
    behind the shared number are ranked, and only when at least four such cohorts exist.

    Out: ``CONFLICT_COLUMNS``, sorted with the conflicts first.
    """
    filters = filters or Filters()
    now = now or as_of(conn)
    if now is None:
        return pd.DataFrame(columns=list(CONFLICT_COLUMNS))
    cust, basis = _customers(conn, filters, churn)
    oc = _customer_outcomes(conn, cust, basis, now, repeat_days)
    frames = []

    # marketing: new customers per campaign and per acquisition channel -> 90-day retention
    for col, label in (("campaign", "campaign"), ("acquisition_channel", "channel")):
        q = (
            sa.select(oc.c[col].label("cohort"), *_shared_by(oc.c[col], oc))
            .where(oc.c[col].is_not(None))
            .group_by(oc.c[col])
        )
        f = _frame(conn, q, index="")
        if not f.empty:
            f["department"], f["cohort_by"] = "marketing", label
            f["departmental_kpi"], f["departmental_value"] = "new_customers", f["customers"].astype(float)
            f["shared_kpi"], f["shared_value"] = "retention_90d", f["retention_90d"]
            frames.append(f)

    # sales: revenue closed per owner -> 90-day retention of the customers they won
    o = KIND_TABLES["opportunities"]
    won = sa.func.lower(sa.func.coalesce(o.c.stage, "")).in_(("won", "closed won", "closed_won"))
    per_owner = (
        sa.select(o.c.owner.label("cohort"), sa.func.sum(o.c.amount).label("departmental_value"))
        .where(won, o.c.owner.is_not(None))
        .group_by(o.c.owner)
        .subquery("per_owner")
    )
    owner_customers = (
        sa.select(o.c.owner, o.c.cx_key)
        .where(won, o.c.owner.is_not(None), o.c.cx_key.is_not(None))
        .distinct()
        .subquery("owner_customers")
    )
    q = (
        sa.select(
            per_owner.c.cohort,
            sa.func.max(per_owner.c.departmental_value).label("departmental_value"),
            *_shared_by(None, oc),
        )
        .select_from(
            per_owner.join(owner_customers, owner_customers.c.owner == per_owner.c.cohort).join(
                oc, oc.c.cx_key == owner_customers.c.cx_key
            )
        )
        .group_by(per_owner.c.cohort)
    )
    f = _frame(conn, q, index="")
    if not f.empty:
        f["department"], f["cohort_by"] = "sales", "owner"
        f["departmental_kpi"] = "revenue_closed"
        f["shared_kpi"], f["shared_value"] = "retention_90d", f["retention_90d"]
        frames.append(f)

    # support: tickets closed per team -> share of them followed by a repeat contact
    k = KIND_TABLES["tickets"]
    next_opened = next_same_topic(k.c.opened_at, k.c.cx_key, k.c.topic, *file_order(k))
    tw = (
        sa.select(
            k.c.cx_key,
            sa.cast(_department_of_ticket(), sa.String).label("team"),
            k.c.opened_at,
            k.c.closed_at,
            next_opened.label("next_opened"),
        )
        .select_from(k.join(cust, cust.c.cx_key == k.c.cx_key).join(sources_table, sources_table.c.name == k.c.source))
        .subquery("tw")
    )
    again = is_repeat(tw.c.next_opened, tw.c.opened_at, repeat_days)  # the next ticket on the topic repeats this one
    q = (
        sa.select(
            tw.c.team.label("cohort"),
            sa.func.count(sa.distinct(tw.c.cx_key)).label("customers"),
            sa.func.count().label("departmental_value"),
            sa.func.avg(sa.case((again, 1.0), else_=0.0)).label("shared_value"),
            sa.func.count().label("ranked_customers"),
            sa.func.percentile_cont(0.5)
            .within_group((_epoch(tw.c.closed_at) - _epoch(tw.c.opened_at)) / 3600.0)
            .label("median_hours_to_close"),
        )
        .where(tw.c.closed_at.is_not(None), tw.c.team.is_not(None))
        .group_by(tw.c.team)
    )
    f = _frame(conn, q, index="")
    if not f.empty:
        f["department"], f["cohort_by"] = "support", "team"
        f["departmental_kpi"], f["shared_kpi"] = "tickets_closed", "repeat_after_close"
        frames.append(f)

    # billing: collections per region -> 90-day retention
    paid = _paid_transactions(cust)
    per_region = (
        sa.select(cust.c.region.label("cohort"), sa.func.sum(paid.c.amount).label("departmental_value"))
        .select_from(paid.join(cust, cust.c.cx_key == paid.c.cx_key))
        .where(cust.c.region.is_not(None))
        .group_by(cust.c.region)
        .subquery("per_region")
    )
    q = (
        sa.select(
            per_region.c.cohort,
            sa.func.max(per_region.c.departmental_value).label("departmental_value"),
            *_shared_by(None, oc),
        )
        .select_from(per_region.join(oc, oc.c.region == per_region.c.cohort))
        .group_by(per_region.c.cohort)
    )
    f = _frame(conn, q, index="")
    if not f.empty:
        f["department"], f["cohort_by"] = "billing", "region"
        f["departmental_kpi"] = "collections"
        f["shared_kpi"], f["shared_value"] = "retention_90d", f["retention_90d"]
        frames.append(f)

    if not frames:
        return pd.DataFrame(columns=list(CONFLICT_COLUMNS))
    out = pd.concat(frames, ignore_index=True)
    for col in (
        "departmental_value",
        "shared_value",
        "clv_per_customer",
        "repeat_contact_rate",
        "median_hours_to_close",
    ):
        if col not in out.columns:
            out[col] = np.nan
        out[col] = pd.to_numeric(out[col], errors="coerce").astype(float)
    out["cohort"] = out["cohort"].astype(str)
    out["customers"] = out["customers"].astype(int)
    out["ranked_customers"] = pd.to_numeric(out["ranked_customers"], errors="coerce").fillna(0).astype(int)
    # Higher is better for every departmental KPI here; for the shared outcome, retention is better
    # high and repeat-after-close better low.
    out["shared_score"] = np.where(out["shared_kpi"] == "repeat_after_close", -out["shared_value"], out["shared_value"])
    out["departmental_top_quartile"] = False
    out["shared_bottom_quartile"] = False
    out["p_value"] = np.nan
    for _, idx in out.groupby(["department", "cohort_by"]).groups.items():
        part = out.loc[idx]
        rankable = part[(part["ranked_customers"] >= MIN_COHORT_CUSTOMERS) & part["shared_score"].notna()]
        if len(rankable) < 4:
            continue
        top = rankable["departmental_value"] >= rankable["departmental_value"].quantile(0.75)
        bottom = rankable["shared_score"] <= rankable["shared_score"].quantile(0.25)
        out.loc[rankable.index, "departmental_top_quartile"] = top
        out.loc[rankable.index, "shared_bottom_quartile"] = bottom
        out.loc[rankable.index, "p_value"] = _worse_than_rest_p(rankable)
    out["shared_significantly_worse"] = out["p_value"] < CONFLICT_ALPHA / out.groupby(["department", "cohort_by"])[
        "cohort"
    ].transform("size")
    out["conflict"] = (
        out["departmental_top_quartile"] & out["shared_bottom_quartile"] & out["shared_significantly_worse"]
    )
    # the cohort name breaks ties, so equal values come out in the same order on every run and engine
    out = out.sort_values(
        ["conflict", "department", "cohort_by", "departmental_value", "cohort"],
        ascending=[False, True, True, False, True],
        ignore_index=True,
        kind="stable",
    )
    return out[[*CONFLICT_COLUMNS, "median_hours_to_close"]]


def _worse_than_rest_p(part: pd.DataFrame) -> np.ndarray:
    """One-sided two-proportion z-test per cohort: is its shared outcome worse than the other cohorts' pooled?"""
    from scipy.stats import norm

    n = part["ranked_customers"].to_numpy(dtype=float)
    share = part["shared_value"].to_numpy(dtype=float)
    hits = share * n
    worse_sign = np.where(part["shared_kpi"].to_numpy() == "repeat_after_close", 1.0, -1.0)  # worse = higher / lower
    n_rest = n.sum() - n
    p_rest = (hits.sum() - hits) / np.where(n_rest > 0, n_rest, np.nan)
    pooled = hits.sum() / n.sum()
    se = np.sqrt(pooled * (1 - pooled) * (1 / n + 1 / np.where(n_rest > 0, n_rest, np.nan)))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = worse_sign * (share - p_rest) / se
    return norm.sf(z)
