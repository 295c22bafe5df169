"""After an append: score again the customers it touched, so its signals reach the at-risk list.

A one-row append of a cancel-page visit is on the customer card as soon as the load commits (the
card reads the rows live), but the at-risk list is the stored ``scores`` table: without this, the
signal reached the list only with the next full scoring (``python -m cxdash score``, the Model page).
``rescore_touched`` finds the customers whose rows the loads added and rescores just them with the
model the list came from (``cxdash.risk.rescore_customers``): seconds, whatever the store's size.

It declines, and says why in words, whenever a partial rescore would mix what it should not: no
model or no list yet, a list scored by another model version than the newest, a model trained on a
label column (it scores the whole customer table), a replace load (the customers it removed are not
known any more), or more touched customers than a partial rescore is worth.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cxdash.risk import load_model, rescore_customers
from cxdash.store.database import (
    KIND_TABLES,
    Store,
    customer_keys_table,
    loads_table,
    models_table,
    rescores_table,
    scores_table,
)

__all__ = ["RESCORE_MAX_CUSTOMERS", "activation_times", "followup_words", "rescore_touched", "touched_customers"]

# Past this many touched customers the full scoring is the right tool (and about as fast).
RESCORE_MAX_CUSTOMERS = 50_000


def touched_customers(conn: Connection, load_id: int) -> list[int] | None:
    """The integer keys of the known customers whose rows the append ``load_id`` stored, or None
    when it is not an append (or not recorded)."""
    row = conn.execute(
        sa.select(loads_table.c.kind, loads_table.c.mode).where(loads_table.c.load_id == load_id)
    ).first()
    if row is None or row.mode != "append" or row.kind not in KIND_TABLES:
        return None
    t, ck = KIND_TABLES[row.kind], customer_keys_table
    # known customers only: an anonymous visitor is on no list
    q = (
        sa.select(t.c.cx_key)
        .select_from(t.join(ck, ck.c.cx_key == t.c.cx_key))
        .where(t.c.load_id == load_id, ck.c.known)
        .distinct()
    )
    return [int(k) for k in conn.execute(q).scalars()]


def _declined(why: str) -> dict:
    return {"rescored": False, "why": why}


def rescore_touched(store: Store, load_ids: tuple[int, ...]) -> dict:
    """Rescore the customers the loads ``load_ids`` touched (see the module's text), and record for
    each load when its signals reached the card and the list, or why not (``activation_times``).

    Out: ``rescored`` (bool); when True ``customers`` (touched), ``scored``, ``removed`` (touched
    customers who left the list), ``model_version``, ``seconds``; when False ``why`` (words).
    """
    report = _rescore(store, load_ids)
    _record(store, load_ids, report)
    return report


def _record(store: Store, load_ids: tuple[int, ...], report: dict) -> None:
    lt, r = loads_table, rescores_table
    with store.connect() as conn:
        loads = conn.execute(
            sa.select(lt.c.load_id, lt.c.source, lt.c.started_at, lt.c.finished_at).where(lt.c.load_id.in_(load_ids))
        ).fetchall()
    now = datetime.now(UTC).replace(tzinfo=None)
    rows = [
        {
            "load_id": int(x.load_id),
            "source": x.source,
            "load_started_at": x.started_at,
            "stored_at": x.finished_at,
            "listed_at": now if report["rescored"] else None,
            "customers": report.get("customers"),
            "why": report.get("why"),
        }
        for x in loads
    ]
    if rows:
        with store.app_begin() as conn:
            conn.execute(r.delete().where(r.c.load_id.in_([row["load_id"] for row in rows])))
            conn.execute(r.insert(), rows)


def followup_words(store: Store, load_id: int) -> str | None:
    """What happened to the at-risk list after load ``load_id``, in one sentence (None: nothing
    recorded, e.g. a load made before this existed)."""
    r = rescores_table
    with store.app_begin() as conn:
        row = conn.execute(sa.select(r).where(r.c.load_id == load_id)).first()
    if row is None:
        return None
    if row.listed_at is None:
        return f"The at-risk list was not updated: {row.why}."
    took = (row.listed_at - row.load_started_at).total_seconds()
    if not row.customers:
        return "The at-risk list is unchanged: the file holds no known customer."
    return (
        f"{row.customers:,} customer{'s' if row.customers != 1 else ''} in this file "
        f"{'were' if row.customers != 1 else 'was'} scored again: the at-risk list shows their new signals "
        f"({took:.0f} s after the load began)."
    )


def activation_times(store: Store) -> pd.DataFrame:
    """Per source, its newest recorded load: ``source, load_id, card_seconds`` (from the load's start
    to its rows stored: on the card), ``list_seconds`` (to its customers rescored: in the at-risk
    list; NaN when not), ``customers`` and ``why`` (why the list was not updated)."""
    r = rescores_table
    newest = sa.select(r.c.source, sa.func.max(r.c.load_id).label("load_id")).group_by(r.c.source).subquery()
    with store.app_begin() as conn:
        rows = conn.execute(
            sa.select(r).join(newest, sa.and_(newest.c.source == r.c.source, newest.c.load_id == r.c.load_id))
        ).fetchall()
    out = pd.DataFrame(
        [
            {
                "source": x.source,
                "load_id": int(x.load_id),
                "card_seconds": (x.stored_at - x.load_started_at).total_seconds(),
                "list_seconds": (x.listed_at - x.load_started_at).total_seconds() if x.listed_at else np.nan,
                "customers": x.customers,
                "why": x.why,
            }
            for x in rows
        ],
        columns=["source", "load_id", "card_seconds", "list_seconds", "customers", "why"],
    )
    return out.sort_values("source", ignore_index=True)


def _rescore(store: Store, load_ids: tuple[int, ...]) -> dict:
    started = time.perf_counter()
    with store.app_begin() as conn:
        newest = conn.execute(sa.select(sa.func.max(models_table.c.version))).scalar()
        listed = conn.execute(
            sa.select(sa.func.min(scores_table.c.model_version), sa.func.max(scores_table.c.model_version))
        ).one()
    if newest is None:
        return _declined("no churn model has been trained yet, so there is no at-risk list to update")
    if listed[0] is None:
        return _declined(f"model v{newest} has not scored the customers yet: run `python -m cxdash score`")
    if listed[0] != newest or listed[1] != newest:
        return _declined(
            f"the at-risk list is from model v{listed[1]}, not the newest (v{newest}): "
            "run `python -m cxdash score` to score everyone with it"
        )
    keys: set[int] = set()
    with store.connect() as conn:
        for load_id in load_ids:
            touched = touched_customers(conn, load_id)
            if touched is None:
                return _declined(
                    f"load {load_id} replaced a source's rows; the customers it removed are not known "
                    "any more: run `python -m cxdash score`"
                )
            keys.update(touched)
    if not keys:
        return {
            "rescored": True,
            "customers": 0,
            "scored": 0,
            "removed": 0,
            "model_version": int(newest),
            "seconds": 0.0,
        }
    if len(keys) > RESCORE_MAX_CUSTOMERS:
        return _declined(
            f"the load touched {len(keys):,} customers, more than a partial rescore is for: "
            "run `python -m cxdash score`"
        )
    model = load_model(store, int(newest))
    if model.kind == "labelled":
        return _declined(
            f"model v{newest} was trained on the label column {model.label_column!r} and scores the whole "
            "customer table: run `python -m cxdash score`"
        )
    report = rescore_customers(store, model, sorted(keys))
    return {
        "rescored": True,
        **report,
        "model_version": int(newest),
        "seconds": round(time.perf_counter() - started, 3),
    }
