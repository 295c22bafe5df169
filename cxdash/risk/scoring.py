"""Scoring: risk, value, reasons and next action per customer, and the stored at-risk list.

``score_frame`` scores a feature snapshot; ``current_features`` builds today's snapshot the way the
model was trained; ``store_scores`` scores today's customers and replaces the app-state ``scores``
table (one row per customer, ranked by risk x value), which ``cxdash.risk.activation`` reads;
``rescore_customers`` scores again only the customers a load touched and ranks them among the others,
so a fresh signal reaches the at-risk list in seconds, not after the next full scoring.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cxdash.identity import customer_label
from cxdash.metrics.churn import Definition
from cxdash.metrics.signals import SIGNALS
from cxdash.risk.aggregates import Customers, data_as_of
from cxdash.risk.drivers import INTENT_DRIVERS
from cxdash.risk.features import AGE_CAP_DAYS, FeatureFrame, SnapshotReader, labelled_features
from cxdash.risk.model import ChurnModel, few_threads
from cxdash.risk.next_action import RECENT_SIGNAL_DAYS, STRONG, next_action
from cxdash.risk.reasons import explain
from cxdash.risk.recent import row_signals
from cxdash.store.database import (
    Store,
    bulk_insert,
    customer_keys_table,
    identity_map_table,
    read_frame,
    scores_table,
)

__all__ = [
    "current_features",
    "reader_definition",
    "renumber_scores",
    "rescore_customers",
    "score_frame",
    "store_scores",
]


@few_threads
def score_frame(
    model: ChurnModel,
    ff: FeatureFrame,
    *,
    reasons_for: int | None = None,
    seen: pd.DataFrame | None = None,
    has_value: bool | None = None,
) -> pd.DataFrame:
    """Risk, value, reasons and next action per customer of a feature snapshot.

    ``seen``: the customers' recent strong signals (``cx_id, signal, age_days``, as
    ``cxdash.risk.recent.row_signals`` gives them); without it they are read from the snapshot's
    ``days_since_<intent signal>`` features. The next action follows ``cxdash.risk.next_action``.
    Out (sorted by priority = risk x value, highest first; by risk when no value is known):
    ``cx_id, customer_id, risk, value, priority, reasons`` (list of dicts, see ``cxdash.risk.reasons.explain``),
    ``top_reason, department, action``. ``reasons_for`` limits the (slower) explanation to the
    riskiest rows. ``has_value``: whether priority weighs risk by value (default: when any
    customer of ``ff`` is worth something; a few rescored customers take the whole list's answer).
    """
    frame = ff.frame
    out = pd.DataFrame({"cx_id": frame.index.astype(str), "customer_id": frame["customer_id"].astype(str).to_numpy()})
    out["risk"] = model.predict_proba(frame)
    out["value"] = frame["value"].to_numpy(dtype=float)
    if has_value is None:
        has_value = bool((out["value"] > 0).any())
    out["priority"] = out["risk"] * (out["value"] if has_value else 1.0)
    out = out.sort_values(["priority", "risk"], ascending=False, kind="stable").reset_index(drop=True)
    n = len(out) if reasons_for is None else min(reasons_for, len(out))
    reasons = explain(model, frame.loc[out["cx_id"].iloc[:n]]) + [[] for _ in range(len(out) - n)]
    out["reasons"] = reasons
    out["top_reason"] = [r[0]["label"] if r else "" for r in reasons]
    by_customer = _seen_by_customer(frame, seen)
    nexts = [next_action(by_customer.get(cx, ()), r) for cx, r in zip(out["cx_id"], reasons, strict=True)]
    out["department"] = [a["department"] for a in nexts]
    out["action"] = [a["action"] for a in nexts]
    return out


def _seen_by_customer(frame: pd.DataFrame, seen: pd.DataFrame | None) -> dict[str, list[tuple[str, float]]]:
    """``cx_id -> [(signal, age_days)]``: from ``seen`` when given, else from the snapshot's
    intent-signal ages (a signal older than ``AGE_CAP_DAYS`` is none)."""
    out: dict[str, list[tuple[str, float]]] = {}
    if seen is not None:
        for cx, name, age in zip(seen["cx_id"].astype(str), seen["signal"], seen["age_days"], strict=True):
            out.setdefault(cx, []).append((name, float(age)))
        return out
    for stem in INTENT_DRIVERS:
        col = f"days_since_{stem}"
        if col not in frame:
            continue
        ages = frame[col]
        hit = ages.notna() & (ages < AGE_CAP_DAYS)
        for cx, age in zip(frame.index[hit].astype(str), ages[hit], strict=True):
            out.setdefault(cx, []).append((stem, float(age)))
    return out


def current_features(conn: Connection, model: ChurnModel, *, reader: SnapshotReader | None = None) -> FeatureFrame:
    """Features for today's customers, the way the model was trained (as of the data's end).
    ``reader``: one already open on ``conn`` (training's), so the customer table is not read again."""
    if model.kind == "labelled":
        ff = labelled_features(conn, label_column=model.label_column or "churn_label", source=model.source)
        # customers the label already marks as gone are not at risk any more
        ff.frame = ff.frame[ff.frame["label"] != 1]
        return ff
    now = data_as_of(conn)
    if reader is None:
        reader = SnapshotReader(conn, source=model.source, churn=reader_definition(model.churn_definition))
    return reader.features(now + timedelta(seconds=1))


def reader_definition(name: str | None) -> Definition | None:
    """The definition a snapshot reads labels and leavers from: None for subscriptions (their own
    columns), else the dated definition."""
    if not name:
        return None
    d = Definition.parse(name)
    return None if d.basis == "subscriptions" else d


def store_scores(
    store: Store, model: ChurnModel, *, reasons_for: int = 20_000, features: FeatureFrame | None = None
) -> int:
    """Score today's customers with ``model`` and replace the ``scores`` table with the result.

    Reasons are worked out for the ``reasons_for`` highest-priority customers (the others are
    stored without reasons: the explanation costs a couple dozen model evaluations per customer).
    ``features``: today's ``FeatureFrame`` when the caller has it already (training does).
    Returns the number of customers scored.
    """
    with store.connect() as conn:
        if features is None:
            features = current_features(conn, model)
        # the recent intent signals and churn records decide the next action (cxdash.risk.next_action)
        seen = row_signals(conn, names=_strong_signals(), since_days=RECENT_SIGNAL_DAYS)
    scored = score_frame(model, features, reasons_for=reasons_for, seen=seen)
    del features
    out = _score_rows(model, scored)
    with store.app_begin() as conn:
        conn.execute(scores_table.delete())
        bulk_insert(conn, scores_table, out)
    return len(out)


_SCORED = ("cx_id", "customer_id", "risk", "value", "priority", "top_reason", "department", "action")


def _strong_signals() -> list[str]:
    return [s.name for s in SIGNALS.values() if s.strength in STRONG]


def _score_rows(model: ChurnModel, scored: pd.DataFrame, first_position: int = 1) -> pd.DataFrame:
    """``score_frame``'s result as ``scores`` table rows, numbered from ``first_position``."""
    return pd.DataFrame(
        {
            "model_version": model.version or 0,
            "position": np.arange(first_position, first_position + len(scored)),
            "cx_id": scored["cx_id"],
            "customer_id": scored["customer_id"],
            "risk": scored["risk"].astype(float),
            "value": scored["value"].astype(float),
            "priority": scored["priority"].astype(float),
            "top_reason": scored["top_reason"],
            "department": scored["department"],
            "action": scored["action"],
            "reasons_json": [json.dumps(r) for r in scored["reasons"]],
            "scored_at": datetime.now(UTC).replace(tzinfo=None),
        }
    )


def _chunks(values: list[str], size: int = 5_000) -> list[list[str]]:
    return [values[i : i + size] for i in range(0, len(values), size)]


def renumber_scores(conn: Connection) -> int:
    """Number the stored list again in ``store_scores``'s order (priority, then risk, highest first;
    ties by cx_id, the snapshot's order), in the database: only rows whose place changed are
    written. Returns how many moved."""
    s = scores_table
    rank = sa.func.row_number().over(
        order_by=(s.c.priority.desc().nulls_last(), s.c.risk.desc().nulls_last(), s.c.cx_id)
    )
    ranked = sa.select(s.c.cx_id, rank.label("rank")).subquery("ranked")
    moved = conn.execute(
        s.update().where(s.c.cx_id == ranked.c.cx_id, s.c.position != ranked.c.rank).values(position=ranked.c.rank)
    )
    return int(moved.rowcount or 0)


def rescore_customers(store: Store, model: ChurnModel, cx_keys: list[int]) -> dict:
    """Score again, with ``model`` and as of the data's end, only the customers with the integer keys
    ``cx_keys`` (the ones a load touched), replace their rows in ``scores`` and number the whole list
    again: their new signals reach the at-risk list without a full scoring.

    The others keep the scores of their last scoring (``scored_at`` says when). A touched customer
    no longer live (gone) loses their row, and so does a customer the load merged into a touched
    one. The caller decides when this is right (``cxdash.jobs.rescore``): the stored list must come
    from ``model``.
    Returns ``{"customers": touched, "scored": rows written, "removed": rows dropped}``.
    """
    keys = sorted({int(k) for k in cx_keys})
    if not keys:
        return {"customers": 0, "scored": 0, "removed": 0}
    with store.connect() as conn:
        ids = read_frame(conn, sa.select(customer_keys_table.c.cx_id).where(customer_keys_table.c.cx_key.in_(keys)))[
            "cx_id"
        ].astype(str)
        # A customer merged into a touched one by the load is gone: their id was the label of one
        # of the touched customers' identifiers (cxdash.identity.stitch), and their row goes too.
        im = identity_map_table
        labels = {
            customer_label(k) for k in conn.execute(sa.select(im.c.id_key).where(im.c.cx_key.in_(keys))).scalars()
        }
        gone = sorted(labels - set(ids))
        if model.kind == "labelled":
            raise ValueError("a model trained on a label column scores the whole customer table: use store_scores")
        now = data_as_of(conn)
        reader = SnapshotReader(
            conn,
            source=model.source,
            churn=reader_definition(model.churn_definition),
            customers=Customers(tuple(keys)),
            schema=(list(model.numeric), list(model.categorical)),
        )
        features = reader.features(now + timedelta(seconds=1))
        seen = row_signals(
            conn, names=_strong_signals(), since_days=RECENT_SIGNAL_DAYS, cx_ids=list(features.frame.index)
        )
    s = scores_table
    with store.app_begin() as conn:
        valued = conn.execute(sa.select(s.c.cx_id).where(s.c.value > 0).limit(1)).first() is not None
    if features.frame.empty:
        out = _score_rows(model, pd.DataFrame(columns=[*_SCORED, "reasons"]))
    else:
        scored = score_frame(model, features, seen=seen, has_value=valued)
        out = _score_rows(model, scored, first_position=0)  # numbered below, among everyone
    with store.app_begin() as conn:
        had: set[str] = set()
        for part in _chunks([*ids, *gone]):
            had |= set(conn.execute(sa.select(s.c.cx_id).where(s.c.cx_id.in_(part))).scalars())
            conn.execute(s.delete().where(s.c.cx_id.in_(part)))
        bulk_insert(conn, s, out)
        renumber_scores(conn)
    return {"customers": len(keys), "scored": len(out), "removed": len(had - set(out["cx_id"]))}
