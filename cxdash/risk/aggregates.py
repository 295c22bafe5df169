"""The feature SQL: per-customer aggregates of every kind as of a cutoff, computed in the database.

Only rows *before* the cutoff are read, so a snapshot never sees its own future. The heavy work
(counts, sums, latest timestamps, repeat contacts via a window function) runs as portable
SQLAlchemy Core aggregates, one query per source kind, each returning one row per customer
(``cx_id``, its integer ``cx_key`` and the aggregates); ``cxdash.risk.features`` joins them.
``Sample`` draws a deterministic 1-in-k customer sample in the database; ``Customers`` names the
customers to read (the ones a load touched, rescored after it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cxdash.metrics import signals
from cxdash.metrics.signals import (
    INTENT,
    REPEAT_WINDOW_DAYS,
    file_order,
    is_repeat,
    matches,
    previous_same_topic,
    product_event,
)
from cxdash.risk.attributes import CRM_CATEGORIES
from cxdash.store.database import KIND_TABLES, customer_keys_table, loads_table, read_frame, sources_table
from cxdash.store.dialect import among, epoch_seconds

__all__ = [
    "INTENT_SIGNALS",
    "MARKETING_WINDOW_DAYS",
    "VALUE_BASES",
    "Customers",
    "Sample",
    "crm_records",
    "data_as_of",
    "event_aggregates",
    "has_rows",
    "mapped_label_columns",
    "subscription_state",
    "ticket_aggregates",
    "transaction_aggregates",
    "value_basis",
]

MARKETING_WINDOW_DAYS = 90

# The intent signals the model reads, from the registry (``cxdash.metrics.signals``): feature stem ->
# (source kind, LIKE patterns). Each stem gives ``{stem}_7d``, ``{stem}_30d`` and ``days_since_{stem}``.
INTENT_SIGNALS: dict[str, tuple[str, tuple[str, ...]]] = {
    s.name: (s.kind, s.patterns) for kind in ("events", "tickets") for s in signals.of_kind(kind, strength=INTENT)
}

# What a customer's ``value`` is, by basis (``value_basis``), in words for the pages.
VALUE_BASES = {
    "revenue": "value = revenue in the last 12 months",
    "mrr": "value = 12 × MRR of live subscriptions (no transactions loaded)",
}


def value_basis(conn: Connection) -> str | None:
    """Where customers' value comes from: ``"revenue"`` when transactions are loaded (last 12
    months' revenue), else ``"mrr"`` when subscriptions carry an MRR (12 × the MRR live at the
    cutoff), else None (unknown). One basis for every customer, so values compare."""
    if has_rows(conn, "transactions"):
        return "revenue"
    u = KIND_TABLES["subscriptions"]
    if conn.execute(sa.select(sa.literal(1)).where(u.c.mrr.is_not(None)).limit(1)).first() is not None:
        return "mrr"
    return None


def _epoch(col) -> sa.ColumnElement:
    return epoch_seconds(col)


def _since(cutoff: datetime, days: float) -> datetime:
    return cutoff - timedelta(days=days)


def _count_if(cond) -> sa.ColumnElement:
    return sa.func.sum(sa.case((cond, 1), else_=0))


def _max_if(cond, col) -> sa.ColumnElement:
    return sa.func.max(sa.case((cond, col), else_=None))


def _frame(conn: Connection, query) -> pd.DataFrame:
    # columnar on DuckDB: building a frame from Python row tuples took 2/3 of a snapshot's time
    return read_frame(conn, query)


@dataclass(frozen=True)
class Sample:
    """A deterministic customer sample: the customers whose integer key ``cx_key`` leaves
    ``offset`` when divided by ``every`` (1 in ``every`` customers; keys follow the customer id
    order, so this is a systematic sample across the customer base)."""

    every: int
    offset: int = 0

    def __post_init__(self):
        if self.every < 1 or not 0 <= self.offset < self.every:
            raise ValueError(f"a sample needs every >= 1 and 0 <= offset < every, not {self}")

    @property
    def everyone(self) -> bool:
        return self.every == 1

    def where(self, cx_key) -> sa.ColumnElement:
        return (cx_key % self.every) == self.offset

    def keeps(self, keys: pd.Index) -> np.ndarray:
        """Which of the integer ``keys`` are in the sample (the same rule as ``where``, in pandas)."""
        return np.asarray((keys % self.every) == self.offset)


@dataclass(frozen=True)
class Customers:
    """The customers with the given integer keys ``cx_key`` (the ones a load touched): read like a
    ``Sample``, so a snapshot of a few customers reads only their rows."""

    keys: tuple[int, ...]

    everyone = False

    def where(self, cx_key) -> sa.ColumnElement:
        return among(cx_key, self.keys)

    def keeps(self, keys: pd.Index) -> np.ndarray:
        return np.asarray(keys.isin(self.keys))


def _key(cx_key) -> sa.ColumnElement:
    """The customer's integer key beside its ``cx_id`` in a per-customer aggregate (one key per
    id): pandas then joins the kinds' results on integers, not on a million strings."""
    return sa.func.min(cx_key).label("cx_key")


def _sampled(query, cx_key, sample: Sample | Customers | None):
    return query if sample is None or sample.everyone else query.where(sample.where(cx_key))


def has_rows(conn: Connection, kind: str) -> bool:
    t = KIND_TABLES[kind]
    return conn.execute(sa.select(sa.literal(1)).select_from(t).limit(1)).first() is not None


def data_as_of(conn: Connection) -> datetime | None:
    """The latest timestamp among event-like rows (the data's "now")."""
    candidates = []
    for kind, col in (
        ("events", "timestamp"),
        ("tickets", "opened_at"),
        ("transactions", "timestamp"),
        ("subscriptions", "start"),
        ("subscriptions", "end"),
        ("customers", "signup_date"),
    ):
        candidates.append(conn.execute(sa.select(sa.func.max(KIND_TABLES[kind].c[col]))).scalar())
    found = [pd.Timestamp(c).to_pydatetime() for c in candidates if c is not None and not pd.isna(c)]
    return max(found) if found else None


# ----------------------------------------------------------------------------- the customer record
def crm_records(conn: Connection, source: str | None, sample: Sample | Customers | None = None) -> pd.DataFrame:
    """One CRM row per customer (of ``sample``, when given): canonical fields, attrs, source."""
    c, im = KIND_TABLES["customers"], customer_keys_table
    cols = [
        im.c.cx_id,
        im.c.cx_key,
        c.c.source,
        c.c.load_id,
        c.c.row_number,
        c.c.customer_id,
        c.c.signup_date,
        *[c.c[n] for n in CRM_CATEGORIES],
        c.c.consent_marketing,
        c.c.churn_label,
        c.c.attrs,
    ]
    q = sa.select(*cols).select_from(c.join(im, im.c.cx_key == c.c.cx_key))
    if source:
        q = q.where(c.c.source == source)
    crm = _frame(conn, _sampled(q, c.c.cx_key, sample))
    if crm.empty:
        return crm
    crm = crm.sort_values(["load_id", "row_number"]).drop_duplicates("cx_id", keep="last")
    return crm.set_index("cx_id")


# ----------------------------------------------------------------------------- per-kind aggregates
def event_aggregates(conn: Connection, cutoff: datetime, sample: Sample | None = None) -> pd.DataFrame:
    e, im, s = KIND_TABLES["events"], customer_keys_table, sources_table
    product = product_event(sa.func.coalesce(e.c.department, s.c.department))
    marketing = sa.not_(product)
    act = sa.func.lower(sa.func.coalesce(e.c.activity, ""))
    checkout_error = sa.and_(product, matches("checkout_error", e.c.activity))
    d7, d30, d90 = _since(cutoff, 7), _since(cutoff, 30), _since(cutoff, MARKETING_WINDOW_DAYS)
    cols = [
        _count_if(product).label("web_events"),
        _count_if(sa.and_(product, e.c.timestamp >= d30)).label("web_events_30d"),
        _count_if(sa.and_(product, e.c.timestamp >= d90)).label("web_events_90d"),
        _max_if(product, e.c.timestamp).label("last_web_ts"),
        _count_if(checkout_error).label("checkout_errors"),
        _count_if(sa.and_(checkout_error, e.c.timestamp >= d30)).label("checkout_errors_30d"),
        _max_if(checkout_error, e.c.timestamp).label("last_checkout_errors_ts"),
        _count_if(sa.and_(marketing, e.c.timestamp >= d90)).label("marketing_touches_90d"),
        _count_if(sa.and_(marketing, e.c.timestamp >= d90, sa.or_(act.like("%open%"), act.like("%click%")))).label(
            "marketing_engaged_90d"
        ),
        _max_if(sa.and_(marketing, sa.or_(act.like("%open%"), act.like("%click%"))), e.c.timestamp).label(
            "last_marketing_engaged_ts"
        ),
    ]
    for stem, (kind, _) in INTENT_SIGNALS.items():
        if kind != "events":
            continue
        hit = sa.and_(product, matches(stem, e.c.activity))
        cols += [
            _max_if(hit, e.c.timestamp).label(f"last_{stem}_ts"),
            _count_if(sa.and_(hit, e.c.timestamp >= d7)).label(f"{stem}_7d"),
            _count_if(sa.and_(hit, e.c.timestamp >= d30)).label(f"{stem}_30d"),
        ]
    q = (
        sa.select(im.c.cx_id, _key(im.c.cx_key), *cols)
        .select_from(e.join(im, im.c.cx_key == e.c.cx_key).join(s, s.c.name == e.c.source))
        .where(e.c.timestamp < cutoff)
        .group_by(im.c.cx_id)
    )
    return _frame(conn, _sampled(q, e.c.cx_key, sample))


def ticket_aggregates(conn: Connection, cutoff: datetime, sample: Sample | None = None) -> pd.DataFrame:
    k, im = KIND_TABLES["tickets"], customer_keys_table
    base = _sampled(
        sa.select(
            im.c.cx_id,
            im.c.cx_key,
            k.c.opened_at,
            k.c.closed_at,
            k.c.transfers,
            k.c.satisfaction,
            k.c.topic,
            # the cutoff drops only tickets after it, which a look back never reads
            previous_same_topic(k.c.opened_at, k.c.cx_key, k.c.topic, *file_order(k)).label("prev_at"),
        )
        .select_from(k.join(im, im.c.cx_key == k.c.cx_key))
        .where(k.c.opened_at < cutoff),
        k.c.cx_key,
        sample,
    ).subquery("t")
    t = base.c
    d7, d30, d90 = _since(cutoff, 7), _since(cutoff, 30), _since(cutoff, 90)
    repeat = is_repeat(t.opened_at, t.prev_at, REPEAT_WINDOW_DAYS)
    closed = sa.and_(t.closed_at.is_not(None), t.closed_at < cutoff)
    transferred = matches("transfer", t.transfers)
    cols = [
        sa.func.count().label("contacts"),
        _count_if(t.opened_at >= d30).label("contacts_30d"),
        _count_if(t.opened_at >= d90).label("contacts_90d"),
        sa.func.max(t.opened_at).label("last_contact_ts"),
        _count_if(sa.not_(closed)).label("open_tickets"),
        _count_if(repeat).label("repeat_contacts"),
        _count_if(sa.and_(repeat, t.opened_at >= d90)).label("repeat_contacts_90d"),
        _max_if(repeat, t.opened_at).label("last_repeat_contacts_ts"),
        sa.func.sum(sa.func.coalesce(t.transfers, 0)).label("transfers"),
        _count_if(sa.and_(transferred, t.opened_at >= d90)).label("transferred_contacts_90d"),
        _max_if(transferred, t.opened_at).label("last_transfers_ts"),
        # satisfaction only once the contact is closed before the cutoff (it is given at closing)
        sa.func.avg(sa.case((closed, t.satisfaction), else_=None)).label("satisfaction_avg"),
        sa.func.min(sa.case((closed, t.satisfaction), else_=None)).label("satisfaction_min"),
        sa.func.avg(sa.case((closed, _epoch(t.closed_at) - _epoch(t.opened_at)), else_=None)).label("resolution_s_avg"),
    ]
    for stem, (kind, _) in INTENT_SIGNALS.items():
        if kind != "tickets":
            continue
        # a rating counts once the contact was closed before the cutoff (it is given at closing)
        hit = matches(stem, t.topic, satisfaction=t.satisfaction, closed=closed)
        cols += [
            _max_if(hit, t.opened_at).label(f"last_{stem}_ts"),
            _count_if(sa.and_(hit, t.opened_at >= d7)).label(f"{stem}_7d"),
            _count_if(sa.and_(hit, t.opened_at >= d30)).label(f"{stem}_30d"),
        ]
    return _frame(conn, sa.select(t.cx_id, _key(t.cx_key), *cols).group_by(t.cx_id))


def transaction_aggregates(conn: Connection, cutoff: datetime, sample: Sample | None = None) -> pd.DataFrame:
    x, im = KIND_TABLES["transactions"], customer_keys_table
    failed = matches("failed_payment", x.c.status)
    paid = sa.and_(sa.not_(failed), x.c.amount >= 0)
    refund = sa.and_(sa.not_(failed), x.c.amount < 0)
    d30, d90, d365 = _since(cutoff, 30), _since(cutoff, 90), _since(cutoff, 365)
    q = (
        sa.select(
            im.c.cx_id,
            _key(im.c.cx_key),
            _count_if(paid).label("purchases"),
            _count_if(sa.and_(paid, x.c.timestamp >= d90)).label("purchases_90d"),
            sa.func.sum(sa.case((sa.not_(failed), x.c.amount), else_=0.0)).label("revenue"),
            sa.func.sum(sa.case((sa.and_(sa.not_(failed), x.c.timestamp >= d365), x.c.amount), else_=0.0)).label(
                "revenue_365d"
            ),
            sa.func.sum(sa.case((sa.and_(sa.not_(failed), x.c.timestamp >= d90), x.c.amount), else_=0.0)).label(
                "revenue_90d"
            ),
            _max_if(paid, x.c.timestamp).label("last_purchase_ts"),
            _count_if(refund).label("refunds"),
            _count_if(failed).label("failed_payments"),
            _count_if(sa.and_(failed, x.c.timestamp >= d30)).label("failed_payments_30d"),
            _count_if(sa.and_(failed, x.c.timestamp >= d90)).label("failed_payments_90d"),
            _max_if(failed, x.c.timestamp).label("last_failed_payments_ts"),
        )
        .select_from(x.join(im, im.c.cx_key == x.c.cx_key))
        .where(x.c.timestamp < cutoff)
        .group_by(im.c.cx_id)
    )
    return _frame(conn, _sampled(q, x.c.cx_key, sample))


def subscription_state(
    conn: Connection, cutoff: datetime, horizon_days: float | None, sample: Sample | None = None
) -> pd.DataFrame:
    """Per customer with a subscription started before the cutoff: first start, MRR live at the
    cutoff, whether anything is live at the cutoff, and (with a horizon) whether the last live
    subscription ended within it."""
    u, im = KIND_TABLES["subscriptions"], customer_keys_table
    live = sa.and_(u.c.start < cutoff, sa.or_(u.c.end.is_(None), u.c.end > cutoff))
    far = datetime(9999, 1, 1)
    cols = [
        im.c.cx_id,
        _key(im.c.cx_key),
        sa.func.min(u.c.start).label("first_start_ts"),
        sa.func.sum(sa.case((live, sa.func.coalesce(u.c.mrr, 0.0)), else_=0.0)).label("mrr"),
        _count_if(live).label("live_subscriptions"),
        _count_if(sa.and_(u.c.end.is_not(None), u.c.end <= cutoff)).label("ended_subscriptions"),
        # latest end among subscriptions live at the cutoff (far future when one has no end)
        sa.func.max(sa.case((live, sa.func.coalesce(u.c.end, sa.literal(far, sa.DateTime))), else_=None)).label(
            "live_until"
        ),
    ]
    q = (
        sa.select(*cols)
        .select_from(u.join(im, im.c.cx_key == u.c.cx_key))
        .where(u.c.start < cutoff)
        .group_by(im.c.cx_id)
    )
    return _frame(conn, _sampled(q, u.c.cx_key, sample))


def mapped_label_columns(conn: Connection, source: str | None) -> set[str]:
    """The file column names that customer loads mapped to ``churn_label``."""
    q = sa.select(loads_table.c.mapping_json).where(loads_table.c.kind == "customers")
    if source:
        q = q.where(loads_table.c.source == source)
    names = set()
    for (text,) in conn.execute(q):
        try:
            column = json.loads(text or "{}").get("columns", {}).get("churn_label")
        except (ValueError, AttributeError):
            column = None
        if column:
            names.add(column)
    return names
