"""Recent signals per customer: the latest occurrence of every row-level signal, its age and detail.

Read with the ``cxdash.metrics.signals`` predicates from each customer's own rows (a churn record's
reason, a ticket's topic, an event's name). The customer card lists them (``recent_signals``); the
scoring reads every customer's recent strong ones to choose the next action (``row_signals``).
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cxdash.metrics import signals
from cxdash.risk.aggregates import data_as_of
from cxdash.store.database import KIND_TABLES, customer_keys_table, sources_table

__all__ = ["ROW_KINDS", "SIGNAL_COLUMNS", "recent_signals", "row_signals"]


# Row-level signals the card lists: every registry signal read from one source row (or, for a
# repeat contact, from the customer's previous ticket). Journey-shaped ones (a long wait, a dead
# end) need the whole journey log and are on the Journeys page instead.
ROW_KINDS = ("events", "tickets", "transactions", "churn")
SIGNAL_COLUMNS = [
    "signal",
    "noun",
    "label",
    "strength",
    "department",
    "action",
    "last_at",
    "age_days",
    "count_30d",
    "count",
    "detail",
]


def _signal_selects(now: datetime, where_customer, names: list[str], since: datetime | None) -> list[sa.Select]:
    """One select per signal of ``names``: ``cx_id, signal, ts, detail`` for every row showing it,
    up to ``now`` (and from ``since``), for the customers ``where_customer(cx_id column)`` keeps."""
    e, k, x, ch = (KIND_TABLES[n] for n in ("events", "tickets", "transactions", "churn"))
    im = customer_keys_table
    parts = []

    def rows(table, ts, cond, name, detail):
        parts.append(
            sa.select(
                im.c.cx_id.label("cx_id"),
                sa.cast(sa.literal(name), sa.String).label("signal"),
                sa.cast(ts, sa.DateTime).label("ts"),
                sa.cast(detail, sa.String).label("detail"),
            )
            .select_from(table.join(im, im.c.cx_key == table.c.cx_key))
            .where(where_customer(im.c.cx_id), cond, sa.or_(ts.is_(None), ts <= now))
        )
        if since is not None:
            parts[-1] = parts[-1].where(ts >= since)

    closed = sa.and_(k.c.closed_at.is_not(None), k.c.closed_at <= now)
    src = sources_table
    # event signals are read from the customer's own steps, never from a marketing send or click
    product = (
        sa.select(e.c.cx_key, e.c.timestamp, e.c.activity)
        .select_from(e.join(src, src.c.name == e.c.source))
        .where(signals.product_event(sa.func.coalesce(e.c.department, src.c.department)))
        .subquery("product_events")
    )
    for name in names:
        sig = signals.SIGNALS[name]
        if sig.kind == "events":
            rows(product, product.c.timestamp, signals.matches(sig, product.c.activity), name, product.c.activity)
        elif sig.kind == "transactions":
            rows(x, x.c.timestamp, signals.matches(sig, x.c[sig.column]), name, x.c.status)
        elif name == "repeat_contact":
            t = (
                sa.select(
                    k.c.cx_key,
                    k.c.opened_at,
                    k.c.topic,
                    signals.previous_same_topic(
                        k.c.opened_at, k.c.cx_key, k.c.topic, k.c.load_id, k.c.row_number
                    ).label("prev_at"),
                )
                .select_from(k.join(im, im.c.cx_key == k.c.cx_key))
                .where(where_customer(im.c.cx_id))
                .subquery("repeat_candidates")
            )
            rows(t, t.c.opened_at, signals.is_repeat(t.c.opened_at, t.c.prev_at), name, t.c.topic)
        elif sig.kind == "tickets":
            if name == "transfer":
                cond = signals.matches(sig, k.c.transfers)
            elif name == "low_satisfaction":
                cond = signals.matches(sig, None, satisfaction=k.c.satisfaction, closed=closed)
            else:
                cond = signals.matches(sig, k.c[sig.column], satisfaction=k.c.satisfaction, closed=closed)
            rows(k, k.c.opened_at, cond, name, k.c.topic if name != "low_satisfaction" else k.c.satisfaction)
        elif sig.kind == "churn":
            # a churn record, and an event named like a cancellation ("subscription cancelled")
            rows(ch, ch.c.churned_at, sa.true(), name, ch.c.reason)
            rows(e, e.c.timestamp, signals.matches(sig, e.c.activity), name, e.c.activity)
        elif sig.kind in ROW_KINDS:  # a signal declared later on a kind handled above is a bug here
            raise ValueError(f"signal {name!r} of kind {sig.kind!r} has no card query")
    return parts


def row_signals(
    conn: Connection,
    *,
    now: datetime | None = None,
    cx_id: str | None = None,
    names: list[str] | None = None,
    since_days: float | None = None,
    cx_ids: list[str] | None = None,
) -> pd.DataFrame:
    """Per customer and signal: the latest occurrence, its age and its detail (a churn record's
    reason, the ticket's topic, the event's name), read with the ``cxdash.metrics.signals`` predicates.

    In: one customer (``cx_id``), some (``cx_ids``) or all; ``names`` (default: every row-level signal);
    ``since_days``: only rows of the last that many days before ``now`` (``now``: the data's end;
    the counts then cover that window only).
    Out: ``cx_id`` plus ``SIGNAL_COLUMNS``, newest first per customer (undated records last).
    """
    now = now or data_as_of(conn)
    if now is None:  # nothing loaded
        return pd.DataFrame(columns=["cx_id", *SIGNAL_COLUMNS])
    names = names or [s.name for s in signals.SIGNALS.values() if s.kind in ROW_KINDS]

    def where_customer(col):
        if cx_ids is not None:
            return col.in_(cx_ids)
        return sa.true() if cx_id is None else col == cx_id

    since = None if since_days is None else now - timedelta(days=since_days)
    u = sa.union_all(*_signal_selects(now, where_customer, names, since)).subquery("signal_rows")
    by = [u.c.cx_id, u.c.signal]
    d30 = now - timedelta(days=30)
    ranked = sa.select(
        u.c.cx_id,
        u.c.signal,
        u.c.ts,
        u.c.detail,
        sa.func.row_number().over(partition_by=by, order_by=[u.c.ts.desc().nulls_last(), u.c.detail]).label("rn"),
        sa.func.count().over(partition_by=by).label("n"),
        sa.func.sum(sa.case((u.c.ts >= d30, 1), else_=0)).over(partition_by=by).label("n30"),
    ).subquery("ranked")
    q = sa.select(ranked.c.cx_id, ranked.c.signal, ranked.c.ts, ranked.c.detail, ranked.c.n, ranked.c.n30).where(
        ranked.c.rn == 1
    )
    frame = pd.DataFrame(
        conn.execute(q).fetchall(), columns=["cx_id", "signal", "last_at", "detail", "count", "count_30d"]
    )
    reg = [signals.SIGNALS[n] for n in frame["signal"]]
    frame["noun"] = [s.noun for s in reg]
    frame["label"] = [s.label for s in reg]
    frame["strength"] = [s.strength for s in reg]
    frame["department"] = [s.department for s in reg]
    frame["action"] = [s.action for s in reg]
    last = pd.to_datetime(frame["last_at"])
    frame["age_days"] = ((pd.Timestamp(now) - last).dt.total_seconds() / 86400).astype(float)
    frame["count"] = frame["count"].fillna(0).astype(int)
    frame["count_30d"] = frame["count_30d"].fillna(0).astype(int)
    frame["detail"] = [_signal_detail(n, d) for n, d in zip(frame["signal"], frame["detail"], strict=True)]
    # same age: the registry's order (intent before friction)
    frame["_order"] = frame["signal"].map({n: i for i, n in enumerate(signals.SIGNALS)})
    frame = frame.sort_values(["cx_id", "age_days", "_order"], na_position="last", kind="stable")
    return frame.reset_index(drop=True)[["cx_id", *SIGNAL_COLUMNS]]


def _signal_detail(name: str, raw) -> str:
    if raw is None or (isinstance(raw, float) and pd.isna(raw)) or str(raw).strip() == "":
        return ""
    raw = str(raw).strip()
    if name == "churn_event":
        return f"reason: {raw}" if raw.lower() not in signals.CHURN_ACTIVITIES else f"recorded as {raw!r}"
    if name == "low_satisfaction":
        return f"rated {float(raw):g}"
    if name == "failed_payment":
        return f"status {raw}"
    return raw


def recent_signals(conn: Connection, cx_id: str, *, now: datetime | None = None) -> pd.DataFrame:
    """Every row-level signal on record for one customer (intent, friction and churn records, as
    ``cxdash.metrics.signals`` declares them), newest first, with its age in days as of ``now`` (default:
    the data's end).

    Out: ``signal`` (the registry name), ``noun`` (words for a list), ``label``, ``strength``
    (intent / friction / churn), ``department``, ``action``, ``last_at``, ``age_days`` (NaN for an
    undated record), ``count_30d``, ``count``, ``detail`` (a churn record's reason, a ticket's topic).
    """
    return row_signals(conn, now=now, cx_id=cx_id).drop(columns="cx_id")
