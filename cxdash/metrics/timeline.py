"""The unified customer timeline: every source's rows as (customer, time, activity, department).

``timeline()`` returns a SQLAlchemy selectable (no rows are loaded) so pages and KPIs can
aggregate it inside the database. Columns:

==========  =================================================================
cx_id       stitched customer (``customer_keys``); NULL when the row has no identifier
known       the customer has a CRM record
ts          when it happened (naive UTC)
activity    what happened (``checkout_error``, ``ticket: billing``, ``payment failed``...)
department  the department the step belongs to
channel     web, chat, phone... where known
source      the source the row came from
kind        the source kind
value       amount or value where the step has one
cx_key      the customer's integer key (``customer_keys.cx_key``): count and group on this
load_id     the load that stored the row (loads are numbered in the order they ran)
row_number  the line of the file the row was read from
row_step    0 for a row's first step, 1 for its second (a ticket's closing, a subscription's end)
==========  =================================================================

Steps at the same time keep the order of the files: ``STEP_ORDER`` (``load_id, row_number,
row_step``) after ``ts`` is the order pm4py's stable sort gives a log read from those files.
"""

from __future__ import annotations

import functools

import sqlalchemy as sa

from cxdash.metrics.signals import FAILED_PAYMENT_STATUSES, matches
from cxdash.store.database import KIND_TABLES, customer_keys_table, sources_table
from cxdash.store.rollups import ACTIVITY_COLUMNS

__all__ = [
    "FAILED_PAYMENT_STATUSES",
    "FAILED_PAYMENT_STEP",
    "STEP_ORDER",
    "TIMELINE_COLUMNS",
    "TIMELINE_TIME_COLUMNS",
    "step_order",
    "timeline",
]

TIMELINE_COLUMNS = (
    "cx_id",
    "known",
    "ts",
    "activity",
    "department",
    "channel",
    "source",
    "kind",
    "value",
    "cx_key",
    "load_id",
    "row_number",
    "row_step",
)
# How steps at the same time are ordered: as the files held them (load, then line, then the
# row's first step before its second).
STEP_ORDER = ("load_id", "row_number", "row_step")
# (kind, time column) of every timeline step: a query that needs only "who did anything when"
# reads these columns directly, with the rows' integer customer key, instead of the whole timeline.
# The list is the daily rollups' (cxdash.store.rollups), which keep per customer and day what these steps say.
TIMELINE_TIME_COLUMNS = tuple((kind, column) for kind, column, _ in ACTIVITY_COLUMNS)
# FAILED_PAYMENT_STATUSES is declared in cxdash.metrics.signals; it stays importable from here for the
# callers that read it with the timeline (journeys.customer_outcomes).
FAILED_PAYMENT_STEP = "payment failed"  # the activity of a transaction that shows a failed payment


def _part(
    kind: str, ts, activity, *, columns=TIMELINE_COLUMNS, channel=None, value=None, department=None, step: int = 0
) -> sa.Select:
    t = KIND_TABLES[kind]
    im = customer_keys_table
    s = sources_table
    dept = sa.func.coalesce(department, s.c.department) if department is not None else s.c.department
    exprs = {
        "cx_id": lambda: im.c.cx_id,
        "known": lambda: im.c.known,
        "ts": lambda: ts,
        "activity": lambda: sa.cast(activity, sa.String),
        "department": lambda: sa.cast(dept, sa.String),
        "channel": lambda: sa.cast(channel if channel is not None else sa.null(), sa.String),
        "source": lambda: t.c.source,
        "kind": lambda: sa.literal(kind, sa.String),
        "value": lambda: sa.cast(value if value is not None else sa.null(), sa.Double),
        "cx_key": lambda: t.c.cx_key,
        "load_id": lambda: t.c.load_id,
        "row_number": lambda: t.c.row_number,
        "row_step": lambda: sa.literal(step, sa.Integer),
    }
    joined = t.join(s, s.c.name == t.c.source)
    if {"cx_id", "known"} & set(columns):
        joined = t.outerjoin(im, im.c.cx_key == t.c.cx_key).join(s, s.c.name == t.c.source)
    return sa.select(*[exprs[c]().label(c) for c in columns]).select_from(joined).where(ts.is_not(None))


def timeline(columns: tuple[str, ...] = TIMELINE_COLUMNS) -> sa.Subquery:
    """The timeline's steps with ``columns`` (default all, see the module docstring). Leaving out
    ``cx_id`` and ``known`` leaves out the join to ``customer_keys``: group and join on ``cx_key``."""
    unknown = set(columns) - set(TIMELINE_COLUMNS)
    if unknown:
        raise ValueError(f"unknown timeline columns {sorted(unknown)}; choose from {TIMELINE_COLUMNS}")
    c, e, k, x, u, o, ch = (
        KIND_TABLES[n]
        for n in ("customers", "events", "tickets", "transactions", "subscriptions", "opportunities", "churn")
    )
    failed = matches("failed_payment", x.c.status)
    tx_activity = sa.case(
        (failed, FAILED_PAYMENT_STEP),
        (x.c.amount < 0, "refund"),
        else_="purchase",
    )
    topic = sa.func.coalesce(k.c.topic, "other")
    part = functools.partial(_part, columns=tuple(columns))
    parts = [
        part("customers", c.c.signup_date, sa.literal("signup")),
        part("events", e.c.timestamp, e.c.activity, channel=e.c.channel, value=e.c.value, department=e.c.department),
        part("tickets", k.c.opened_at, sa.literal("contact: ") + topic, channel=k.c.channel, department=k.c.department),
        part(
            "tickets",
            k.c.closed_at,
            sa.literal("resolved: ") + topic,
            channel=k.c.channel,
            department=k.c.department,
            step=1,
        ),
        part("transactions", x.c.timestamp, tx_activity, value=x.c.amount),
        part("subscriptions", u.c.start, sa.literal("subscription started"), value=u.c.mrr),
        part("subscriptions", u.c.end, sa.literal("subscription ended"), value=u.c.mrr, step=1),
        part("opportunities", o.c.created_at, sa.literal("opportunity created"), value=o.c.amount),
        part(
            "opportunities",
            o.c.closed_at,
            sa.literal("opportunity ") + sa.func.coalesce(sa.func.lower(o.c.stage), "closed"),
            value=o.c.amount,
            step=1,
        ),
        # a churn record, and the date a CRM's churn label carries: the journey's last step
        part("churn", ch.c.churned_at, sa.literal("churned")),
        part("customers", c.c.churned_at, sa.literal("churned"), step=1),
    ]
    return sa.union_all(*parts).subquery("timeline")


def step_order(steps: sa.FromClause, *, descending: bool = False) -> tuple:
    """The ORDER BY of timeline steps (``steps`` has ``ts`` and the ``STEP_ORDER`` columns): time,
    then the files' order; ``descending`` for newest first."""
    cols = (steps.c.ts, *(steps.c[name] for name in STEP_ORDER))
    return tuple(c.desc() for c in cols) if descending else cols
