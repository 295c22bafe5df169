"""The customer card: one customer's profile, timeline, recent signals and contacts.

Every function takes a stitched ``cx_id`` (found with ``find_customers`` from a customer id,
email or phone) and reads only that customer's rows, so the card opens in well under a second
on a large store.
"""

from __future__ import annotations

import json
import re
from datetime import datetime

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cxdash.churn import Definition, churned
from cxdash.features import INTENT_SIGNALS, data_as_of
from cxdash.kinds import IDENTITY_FIELDS
from cxdash.privacy import mask_email, mask_phone
from cxdash.signals import occurrences
from cxdash.store import KIND_TABLES, customer_keys_table, identity_map_table
from cxdash.timeline import timeline

__all__ = [
    "find_customers",
    "mask_email",
    "mask_phone",
    "open_tickets",
    "profile",
    "recent_contacts",
    "recent_signals",
    "customer_timeline",
]


def _candidate_keys(query: str) -> list[str]:
    q = query.strip()
    keys = [f"{f}:{q}" for f in IDENTITY_FIELDS if f not in ("email", "phone")]
    if "@" in q:
        keys.append(f"email:{q.lower()}")
    digits = re.sub(r"\D", "", q)
    if len(digits) >= 7:
        keys.append(f"phone:{digits[-10:]}")
    return keys


def find_customers(conn: Connection, query: str, *, limit: int = 20) -> pd.DataFrame:
    """Customers matching an exact id, email or phone (any format), or a customer id prefix.

    Out: ``cx_id, customer_id, name, matched`` (which identifier matched).
    """
    query = (query or "").strip()
    if not query:
        return pd.DataFrame(columns=["cx_id", "customer_id", "name", "matched"])
    im, ck, c = identity_map_table, customer_keys_table, KIND_TABLES["customers"]
    exact = conn.execute(
        sa.select(im.c.cx_id, im.c.id_key).where(im.c.id_key.in_(_candidate_keys(query))).limit(limit)
    ).fetchall()
    found = {r.cx_id: r.id_key.split(":", 1)[0] for r in exact}
    if len(found) < limit:
        prefix = conn.execute(
            sa.select(ck.c.cx_id)
            .select_from(c.join(ck, ck.c.cx_key == c.c.cx_key))
            .where(c.c.customer_id.like(query.replace("%", "").replace("_", r"\_") + "%", escape="\\"))
            .order_by(c.c.customer_id)
            .limit(limit - len(found))
        ).fetchall()
        for r in prefix:
            found.setdefault(r.cx_id, "customer_id prefix")
    if not found:
        return pd.DataFrame(columns=["cx_id", "customer_id", "name", "matched"])
    names = conn.execute(
        sa.select(ck.c.cx_id, c.c.customer_id, c.c.name)
        .select_from(c.join(ck, ck.c.cx_key == c.c.cx_key))
        .where(ck.c.cx_id.in_(list(found)))
    ).fetchall()
    crm = {r.cx_id: (r.customer_id, r.name) for r in names}
    return pd.DataFrame(
        [{"cx_id": cx, "customer_id": crm.get(cx, (cx, None))[0], "name": crm.get(cx, (None, None))[1], "matched": m}
         for cx, m in found.items()]
    )


def profile(conn: Connection, cx_id: str, *, mask: bool = True) -> dict:
    """The CRM record (masked email/phone unless ``mask=False``), consent and other attributes."""
    im, c = customer_keys_table, KIND_TABLES["customers"]
    row = conn.execute(
        sa.select(c).select_from(c.join(im, im.c.cx_key == c.c.cx_key)).where(im.c.cx_id == cx_id)
        .order_by(c.c.load_id.desc()).limit(1)
    ).mappings().first()
    if row is None:
        return {"cx_id": cx_id, "known": False}
    out = {k: row[k] for k in ("customer_id", "account_id", "name", "email", "phone", "signup_date", "segment",
                               "region", "plan", "acquisition_channel", "campaign", "consent_marketing", "source")}
    out["cx_id"], out["known"] = cx_id, True
    if mask:
        out["email"], out["phone"] = mask_email(out["email"]), mask_phone(out["phone"])
    try:
        out["attributes"] = {k: v for k, v in json.loads(row["attrs"] or "{}").items() if v not in (None, "")}
    except ValueError:
        out["attributes"] = {}
    return out


def churn_status(conn: Connection, cx_id: str, definition: Definition | None) -> dict:
    """Whether the customer has churned under the churn definition in force and when, and every
    churn or cancellation record on file for them (with its reason), whatever the definition.

    Out: ``definition`` (its name or None), ``churned`` (bool, None when no definition fits the
    data), ``churned_at`` (None for an undated label), ``records`` (frame ``churned_at, reason,
    source``, newest first).
    """
    im, ch = customer_keys_table, KIND_TABLES["churn"]
    key = conn.execute(sa.select(im.c.cx_key).where(im.c.cx_id == cx_id)).scalar()
    rows = conn.execute(
        sa.select(ch.c.churned_at, ch.c.reason, ch.c.source).where(ch.c.cx_key == key).order_by(ch.c.churned_at.desc())
    ).fetchall() if key is not None else []
    records = pd.DataFrame(rows, columns=["churned_at", "reason", "source"])
    if definition is None or key is None:
        return {"definition": None, "churned": None, "churned_at": None, "records": records}
    gone = churned(conn, definition).subquery("gone")
    hit = conn.execute(sa.select(gone.c.churn_at).where(gone.c.cx_key == key)).first()
    return {"definition": definition.name, "churned": hit is not None, "churned_at": hit.churn_at if hit else None,
            "records": records}


def customer_timeline(conn: Connection, cx_id: str, *, limit: int = 200) -> pd.DataFrame:
    """The customer's steps across departments, newest first: ``ts, activity, department, channel, source, value``."""
    tl = timeline()
    rows = conn.execute(
        sa.select(tl.c.ts, tl.c.activity, tl.c.department, tl.c.channel, tl.c.source, tl.c.value)
        .where(tl.c.cx_id == cx_id)
        .order_by(tl.c.ts.desc())
        .limit(limit)
    ).fetchall()
    return pd.DataFrame(rows, columns=["ts", "activity", "department", "channel", "source", "value"])


def recent_signals(conn: Connection, cx_id: str, *, now: datetime | None = None) -> pd.DataFrame:
    """The latest intent and friction signals with their age in days, newest first.

    Out: ``signal, last_at, age_days, count_30d``.
    """
    now = now or data_as_of(conn)
    e, k = KIND_TABLES["events"], KIND_TABLES["tickets"]
    im = customer_keys_table
    patterns = {stem: pats for stem, (kind, pats) in INTENT_SIGNALS.items()}
    parts = []

    def add(kind_table, ts, cond, name):
        parts.append(
            sa.select(sa.literal(name).label("signal"), sa.func.max(ts).label("last_at"),
                      sa.func.sum(sa.case((ts >= now - pd.Timedelta(days=30).to_pytimedelta(), 1), else_=0)).label("n30"))
            .select_from(kind_table.join(im, im.c.cx_key == kind_table.c.cx_key))
            .where(im.c.cx_id == cx_id, cond)
        )

    def like_any(col, pats):
        low = sa.func.lower(sa.func.coalesce(col, ""))
        return sa.or_(*[low.like(p) for p in pats])

    labels = {
        "cancel_page": "cancel page visit", "competitor_compare": "competitor comparison",
        "downgrade_page": "downgrade page visit", "cancellation_ticket": "asked to cancel", "complaint": "complaint",
    }
    for stem, (kind, pats) in INTENT_SIGNALS.items():
        if kind == "events":
            add(e, e.c.timestamp, like_any(e.c.activity, pats), labels[stem])
        else:
            add(k, k.c.opened_at, like_any(k.c.topic, patterns[stem]), labels[stem])
    for name, label in (("checkout_error", "checkout error"), ("failed_payment", "failed payment")):
        rows = occurrences(name).subquery(name)
        add(rows, rows.c.ts, sa.true(), label)
    add(k, k.c.opened_at, sa.func.coalesce(k.c.transfers, 0) > 0, "transferred contact")
    rows = conn.execute(sa.union_all(*parts)).fetchall()
    frame = pd.DataFrame(rows, columns=["signal", "last_at", "count_30d"])
    frame = frame[frame["last_at"].notna()].copy()
    frame["age_days"] = [(now - pd.Timestamp(t).to_pydatetime()).total_seconds() / 86400 for t in frame["last_at"]]
    frame["count_30d"] = frame["count_30d"].fillna(0).astype(int)
    return frame.sort_values("age_days").reset_index(drop=True)[["signal", "last_at", "age_days", "count_30d"]]


def _tickets(conn: Connection, cx_id: str, where, limit: int) -> pd.DataFrame:
    k, im = KIND_TABLES["tickets"], customer_keys_table
    rows = conn.execute(
        sa.select(k.c.ticket_id, k.c.opened_at, k.c.closed_at, k.c.channel, k.c.topic, k.c.transfers, k.c.status,
                  k.c.satisfaction, k.c.department)
        .select_from(k.join(im, im.c.cx_key == k.c.cx_key))
        .where(im.c.cx_id == cx_id, where)
        .order_by(k.c.opened_at.desc())
        .limit(limit)
    ).fetchall()
    return pd.DataFrame(rows, columns=["ticket_id", "opened_at", "closed_at", "channel", "topic", "transfers", "status",
                                       "satisfaction", "team"])


def open_tickets(conn: Connection, cx_id: str) -> pd.DataFrame:
    """Tickets not closed yet (no close time, or a status saying open/pending)."""
    k = KIND_TABLES["tickets"]
    status = sa.func.lower(sa.func.coalesce(k.c.status, ""))
    return _tickets(conn, cx_id, sa.or_(k.c.closed_at.is_(None), status.in_(("open", "pending", "new"))), 50)


def recent_contacts(conn: Connection, cx_id: str, *, limit: int = 10) -> pd.DataFrame:
    """What the customer already told us: their latest contacts with topic, channel and transfers."""
    return _tickets(conn, cx_id, sa.true(), limit)
