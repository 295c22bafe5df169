"""The customer card: one customer's profile, timeline, recent signals and contacts.

Every function takes a stitched ``cx_id`` (found with ``find_customers`` from a customer id,
email or phone) and reads only that customer's rows, so the card opens in well under a second
on a large store.
"""

from __future__ import annotations

import json
import re

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cxdash.governance.privacy import mask_email, mask_phone
from cxdash.ingest.identifiers import normalise_identity
from cxdash.metrics.churn import Definition, churned
from cxdash.metrics.timeline import step_order, timeline
from cxdash.risk.activation import customer_score
from cxdash.risk.next_action import next_action
from cxdash.risk.recent import recent_signals
from cxdash.store.database import KIND_TABLES, customer_keys_table, identity_map_table, models_table
from cxdash.store.kinds import IDENTITY_FIELDS

__all__ = [
    "MATCH_WORDS",
    "REASON_KEYS",
    "churn_status",
    "customer_names",
    "customer_summary",
    "customer_timeline",
    "find_customers",
    "identifiers",
    "mask_email",
    "mask_phone",
    "open_tickets",
    "profile",
    "recent_contacts",
]


def _candidate_keys(query: str) -> list[str]:
    """The identity-map keys ``query`` could be, normalised the way loads normalise identifiers
    (``cxdash.ingest.identifiers.normalise_identity``): any id field as typed, an email lower-cased, a phone
    by its last 10 digits (so "+1 555 123 4567" and "5551234567" are the same key)."""
    q = query.strip()
    keys = []
    for f in IDENTITY_FIELDS:
        if f == "email" and "@" not in q:
            continue
        if f == "phone" and len(re.sub(r"\D", "", q)) < 7:
            continue
        v = normalise_identity(f, pd.Series([q])).iloc[0]
        if not pd.isna(v):
            keys.append(f"{f}:{v}")
    return keys


# How a match is named on the card's pick list, best first: an exact identifier, then a name.
MATCH_WORDS = {
    "cx_id": "customer key",
    "customer_id": "customer id",
    "account_id": "account id",
    "email": "email",
    "phone": "phone",
    "visitor_id": "visitor id",
    "customer id prefix": "customer id starts so",
    "name": "name",
}


def _like_any_case(column, text: str, *, anywhere: bool) -> sa.ColumnElement:
    """``column`` contains (or starts with) ``text``, ignoring case, with LIKE's wildcards in ``text``
    taken literally (portable: DuckDB and PostgreSQL both read ``ESCAPE``)."""
    escaped = text.lower().replace("\\", "\\\\").replace("%", r"\%").replace("_", r"\_")
    pattern = ("%" if anywhere else "") + escaped + "%"
    return sa.func.lower(column).like(pattern, escape="\\")


def find_customers(conn: Connection, query: str, *, limit: int = 20) -> pd.DataFrame:
    """Customers matching ``query`` by any identifier or by name, exact identifiers first.

    Matches, in this order: any stitched identifier (customer id, account, email in any case, phone
    in any format by its digits, visitor id) exactly; the customer key itself; a customer id that
    starts with the query (any case); a CRM name that contains it (any case: "abbott" finds every
    Abbott). At most ``limit`` customers.

    Out: ``cx_id, customer_id, name, matched`` (which identifier matched: a ``MATCH_WORDS`` key).
    """
    columns = ["cx_id", "customer_id", "name", "matched"]
    query = (query or "").strip()
    if not query:
        return pd.DataFrame(columns=columns)
    im, ck, c = identity_map_table, customer_keys_table, KIND_TABLES["customers"]
    found: dict[str, str] = {}
    exact = conn.execute(
        sa.select(im.c.cx_id, im.c.id_key)
        .where(im.c.id_key.in_(_candidate_keys(query)))
        .order_by(im.c.id_key)
        .limit(limit)
    ).fetchall()
    for r in exact:
        found.setdefault(r.cx_id, r.id_key.split(":", 1)[0])
    # the key itself (shown in exports and the audit log); often equal to a customer id found above
    if conn.execute(sa.select(ck.c.cx_id).where(ck.c.cx_id == query).limit(1)).first() is not None:
        found.setdefault(query, "cx_id")
    crm = sa.select(ck.c.cx_id, c.c.customer_id, c.c.name).select_from(c.join(ck, ck.c.cx_key == c.c.cx_key))
    for matched, cond, order in (
        ("customer id prefix", _like_any_case(c.c.customer_id, query, anywhere=False), c.c.customer_id),
        ("name", _like_any_case(c.c.name, query, anywhere=True), c.c.name),
    ):
        if len(found) >= limit:
            break
        rows = conn.execute(
            crm.where(cond, ck.c.cx_id.not_in(list(found)) if found else sa.true())
            .order_by(order, c.c.customer_id)
            .limit(limit - len(found))
        ).fetchall()
        for r in rows:
            found.setdefault(r.cx_id, matched)
    if not found:
        return pd.DataFrame(columns=columns)
    names = conn.execute(crm.where(ck.c.cx_id.in_(list(found))).order_by(c.c.load_id.desc())).fetchall()
    known: dict[str, tuple] = {}
    for r in names:  # the newest CRM record names the customer
        known.setdefault(r.cx_id, (r.customer_id, r.name))
    return pd.DataFrame(
        [
            {
                "cx_id": cx,
                "customer_id": known.get(cx, (cx, None))[0],
                "name": known.get(cx, (None, None))[1],
                "matched": m,
            }
            for cx, m in found.items()
        ],
        columns=columns,
    )


def customer_names(conn: Connection, cx_ids: list[str]) -> dict[str, str | None]:
    """The CRM name of each customer key (the newest CRM record's; None when it has none).

    In: up to a few thousand ``cx_id``. Out: ``{cx_id: name}`` for the keys that have a CRM record.
    """
    if not cx_ids:
        return {}
    ck, c = customer_keys_table, KIND_TABLES["customers"]
    rows = conn.execute(
        sa.select(ck.c.cx_id, c.c.name)
        .select_from(c.join(ck, ck.c.cx_key == c.c.cx_key))
        .where(ck.c.cx_id.in_(list(cx_ids)))
        .order_by(c.c.load_id.desc())
    ).fetchall()
    out: dict[str, str | None] = {}
    for r in rows:
        out.setdefault(r.cx_id, r.name)
    return out


def profile(conn: Connection, cx_id: str, *, mask: bool = True) -> dict:
    """The CRM record (masked email/phone unless ``mask=False``), consent and other attributes."""
    im, c = customer_keys_table, KIND_TABLES["customers"]
    row = (
        conn.execute(
            sa.select(c)
            .select_from(c.join(im, im.c.cx_key == c.c.cx_key))
            .where(im.c.cx_id == cx_id)
            .order_by(c.c.load_id.desc())
            .limit(1)
        )
        .mappings()
        .first()
    )
    if row is None:
        return {"cx_id": cx_id, "known": False}
    out = {
        k: row[k]
        for k in (
            "customer_id",
            "account_id",
            "name",
            "email",
            "phone",
            "signup_date",
            "segment",
            "region",
            "plan",
            "acquisition_channel",
            "campaign",
            "consent_marketing",
            "source",
        )
    }
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
    rows = (
        conn.execute(
            sa.select(ch.c.churned_at, ch.c.reason, ch.c.source)
            .where(ch.c.cx_key == key)
            .order_by(ch.c.churned_at.desc())
        ).fetchall()
        if key is not None
        else []
    )
    records = pd.DataFrame(rows, columns=["churned_at", "reason", "source"])
    if definition is None or key is None:
        return {"definition": None, "churned": None, "churned_at": None, "records": records}
    gone = churned(conn, definition).subquery("gone")
    hit = conn.execute(sa.select(gone.c.churn_at).where(gone.c.cx_key == key)).first()
    return {
        "definition": definition.name,
        "churned": hit is not None,
        "churned_at": hit.churn_at if hit else None,
        "records": records,
    }


def customer_timeline(conn: Connection, cx_id: str, *, limit: int = 200) -> pd.DataFrame:
    """The customer's steps across departments, newest first (steps at the same time in the files' order,
    reversed): ``ts, activity, department, channel, source, value``."""
    tl = timeline()
    rows = conn.execute(
        sa.select(tl.c.ts, tl.c.activity, tl.c.department, tl.c.channel, tl.c.source, tl.c.value)
        .where(tl.c.cx_id == cx_id)
        .order_by(*step_order(tl, descending=True))  # same-time steps: the files' order, reversed
        .limit(limit)
    ).fetchall()
    return pd.DataFrame(rows, columns=["ts", "activity", "department", "channel", "source", "value"])


def _tickets(conn: Connection, cx_id: str, where, limit: int) -> pd.DataFrame:
    k, im = KIND_TABLES["tickets"], customer_keys_table
    rows = conn.execute(
        sa.select(
            k.c.ticket_id,
            k.c.opened_at,
            k.c.closed_at,
            k.c.channel,
            k.c.topic,
            k.c.transfers,
            k.c.status,
            k.c.satisfaction,
            k.c.department,
        )
        .select_from(k.join(im, im.c.cx_key == k.c.cx_key))
        .where(im.c.cx_id == cx_id, where)
        .order_by(k.c.opened_at.desc())
        .limit(limit)
    ).fetchall()
    return pd.DataFrame(
        rows,
        columns=[
            "ticket_id",
            "opened_at",
            "closed_at",
            "channel",
            "topic",
            "transfers",
            "status",
            "satisfaction",
            "team",
        ],
    )


def open_tickets(conn: Connection, cx_id: str) -> pd.DataFrame:
    """Tickets not closed yet (no close time, or a status saying open/pending)."""
    k = KIND_TABLES["tickets"]
    status = sa.func.lower(sa.func.coalesce(k.c.status, ""))
    return _tickets(conn, cx_id, sa.or_(k.c.closed_at.is_(None), status.in_(("open", "pending", "new"))), 50)


def recent_contacts(conn: Connection, cx_id: str, *, limit: int = 10) -> pd.DataFrame:
    """What the customer already told us: their latest contacts with topic, channel and transfers."""
    return _tickets(conn, cx_id, sa.true(), limit)


REASON_KEYS = ("signal", "label", "value", "reference", "direction", "department", "action", "detail")


def identifiers(conn: Connection, cx_id: str, *, mask: bool = True) -> list[dict]:
    """Every identifier stitched into the customer: ``[{"field", "value"}]`` sorted by field, emails
    and phones masked unless ``mask=False``."""
    im = identity_map_table
    keys = conn.execute(sa.select(im.c.id_key).where(im.c.cx_id == cx_id).order_by(im.c.id_key)).scalars().all()
    out = []
    for key in keys:
        field, _, value = key.partition(":")
        if mask and field == "email":
            value = mask_email(value)
        elif mask and field == "phone":
            value = mask_phone(value)
        out.append({"field": field, "value": value})
    return out


def customer_summary(store, cx_id: str, *, mask: bool = True, definition: Definition | None = None) -> dict:
    """The stitched customer as the front line needs it, for the CLI (``python -m cxdash card``).

    Out: ``cx_id, customer_id, name, identifiers`` (see ``identifiers``), ``identifiers_masked``,
    ``churn`` (the churn records with their reasons, and the status under ``definition``),
    ``signals`` (newest first: ``signal, label, strength, age_days, last_at, count_30d, detail``),
    ``risk`` (None when not scored), ``risk_note`` (why there is no risk, else None),
    ``model_version``, ``reasons`` (structured, ``REASON_KEYS``), ``next_action`` (see
    ``cxdash.risk.next_action.next_action``).
    """
    with store.connect() as conn:
        prof = profile(conn, cx_id, mask=mask)
        ids = identifiers(conn, cx_id, mask=mask)
        seen = recent_signals(conn, cx_id)
        status = churn_status(conn, cx_id, definition)
    with store.app_begin() as conn:
        newest = conn.execute(sa.select(sa.func.max(models_table.c.version))).scalar()
    score = customer_score(store, cx_id) if newest is not None else None
    if newest is None:
        note = (
            "No churn model has been trained yet, so there is no risk score: train one with `python -m cxdash train`."
        )
    elif score is None:
        note = (
            f"Model v{newest} did not score this customer: only customers live at scoring time are scored "
            "(this one has left, or is not a current customer)."
        )
    else:
        note = None
    reasons = [{k: r.get(k) for k in REASON_KEYS} for r in (score or {}).get("reasons", [])]
    records = status["records"]
    return {
        "cx_id": cx_id,
        "customer_id": prof.get("customer_id"),
        "name": prof.get("name"),
        "identifiers": ids,
        "identifiers_masked": mask,
        "churn": {
            "definition": status["definition"],
            "churned": status["churned"],
            "churned_at": status["churned_at"],
            "records": [
                {"churned_at": r.churned_at, "reason": r.reason, "source": r.source} for r in records.itertuples()
            ],
        },
        "signals": [
            {
                "signal": r.signal,
                "label": r.noun,
                "strength": r.strength,
                "age_days": _round(r.age_days),
                "last_at": r.last_at,
                "count_30d": int(r.count_30d),
                "detail": r.detail,
            }
            for r in seen.itertuples()
        ],
        "risk": None if score is None else float(score["risk"]),
        "risk_note": note,
        "model_version": None if score is None else int(score["model_version"]),
        "reasons": reasons,
        "next_action": next_action(seen, reasons),
    }


def _round(v) -> float | None:
    return None if v is None or pd.isna(v) else round(float(v), 2)
