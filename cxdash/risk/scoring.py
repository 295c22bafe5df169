"""Scoring: risk, value, reasons and next action per customer, and the stored at-risk list.

``score_frame`` scores a feature snapshot; ``current_features`` builds today's snapshot the way the
model was trained; ``store_scores`` scores today's customers and replaces the app-state ``scores``
table (one row per customer, ranked by risk x value), which ``cxdash.risk.activation`` reads.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
from sqlalchemy.engine import Connection

from cxdash.metrics.churn import Definition
from cxdash.metrics.signals import SIGNALS
from cxdash.risk.aggregates import data_as_of
from cxdash.risk.drivers import INTENT_DRIVERS
from cxdash.risk.features import AGE_CAP_DAYS, FeatureFrame, SnapshotReader, labelled_features
from cxdash.risk.model import ChurnModel, few_threads
from cxdash.risk.next_action import RECENT_SIGNAL_DAYS, STRONG, next_action
from cxdash.risk.reasons import explain
from cxdash.risk.recent import row_signals
from cxdash.store.database import Store, bulk_insert, scores_table

__all__ = ["current_features", "reader_definition", "score_frame", "store_scores"]


@few_threads
def score_frame(
    model: ChurnModel, ff: FeatureFrame, *, reasons_for: int | None = None, seen: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Risk, value, reasons and next action per customer of a feature snapshot.

    ``seen``: the customers' recent strong signals (``cx_id, signal, age_days``, as
    ``cxdash.risk.recent.row_signals`` gives them); without it they are read from the snapshot's
    ``days_since_<intent signal>`` features. The next action follows ``cxdash.risk.next_action``.
    Out (sorted by priority = risk x value, highest first; by risk when no value is known):
    ``cx_id, customer_id, risk, value, priority, reasons`` (list of dicts, see ``cxdash.risk.reasons.explain``),
    ``top_reason, department, action``. ``reasons_for`` limits the (slower) explanation to the
    riskiest rows.
    """
    frame = ff.frame
    out = pd.DataFrame({"cx_id": frame.index.astype(str), "customer_id": frame["customer_id"].astype(str).to_numpy()})
    out["risk"] = model.predict_proba(frame)
    out["value"] = frame["value"].to_numpy(dtype=float)
    has_value = (out["value"] > 0).any()
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
        strong = [s.name for s in SIGNALS.values() if s.strength in STRONG]
        seen = row_signals(conn, names=strong, since_days=RECENT_SIGNAL_DAYS)
    scored = score_frame(model, features, reasons_for=reasons_for, seen=seen)
    del features
    out = pd.DataFrame(
        {
            "model_version": model.version or 0,
            "position": np.arange(1, len(scored) + 1),
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
    with store.app_begin() as conn:
        conn.execute(scores_table.delete())
        bulk_insert(conn, scores_table, out)
    return len(out)
