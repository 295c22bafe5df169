"""Activation: the at-risk list a CRM can read, and who acted on it.

``at_risk`` and ``customer_score`` read the app-state ``scores`` table, which
``cxdash.risk.scoring.store_scores`` writes (one row per customer, ranked by risk x value).
``mark`` appends to the ``activation`` log (contacted / actioned, by whom, when); the latest entry
per customer is its status. ``export_csv`` writes the list for a CRM with spreadsheet formulas
neutralised. Nothing here scores: this module reads the scores, it does not make them.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pandas as pd
import sqlalchemy as sa

from cxdash.exporting import safe_csv
from cxdash.metrics.activation import activation_stats, latest_activation, risk_threshold
from cxdash.store.database import Store, activation_table, scores_table

__all__ = [
    "STATUSES",
    "activation_stats",
    "at_risk",
    "customer_score",
    "export_csv",
    "follow_up",
    "list_version",
    "mark",
]

STATUSES = ("contacted", "actioned")


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def list_version(store: Store) -> tuple[str, int, int, int]:
    """A fingerprint of what the at-risk list reads besides the data: when customers were last
    scored (and how many), and the activation log's size and newest entry. It changes the moment
    anyone marks a customer, from any session or the CLI, so a cache keyed on it is never stale."""
    s, a = scores_table, activation_table
    with store.app_begin() as conn:
        scored_at, scored, logged, newest = conn.execute(
            sa.select(
                sa.select(sa.func.max(s.c.scored_at)).scalar_subquery(),
                sa.select(sa.func.count()).select_from(s).scalar_subquery(),
                sa.select(sa.func.count()).select_from(a).scalar_subquery(),
                sa.select(sa.func.coalesce(sa.func.max(a.c.id), 0)).scalar_subquery(),
            )
        ).one()
    return str(scored_at), int(scored or 0), int(logged or 0), int(newest or 0)


def at_risk(
    store: Store,
    *,
    departments: list[str] | None = None,
    min_risk: float = 0.0,
    status: str | None = None,
    only_top_decile: bool = True,
    limit: int = 500,
) -> pd.DataFrame:
    """The at-risk list, highest priority (risk x value) first, filtered in the database.

    Out: ``position, cx_id, customer_id, risk, value, priority, top_reason, department, action,
    reasons`` (list of dicts), ``status`` ("open", "contacted", "actioned"), ``actor, updated_at``.
    ``status="open"`` keeps customers nobody has acted on yet.
    """
    s = scores_table
    la = latest_activation()
    with store.app_begin() as conn:
        q = (
            sa.select(
                s.c.position,
                s.c.cx_id,
                s.c.customer_id,
                s.c.risk,
                s.c.value,
                s.c.priority,
                s.c.top_reason,
                s.c.department,
                s.c.action,
                s.c.reasons_json,
                la.c.status,
                la.c.actor,
                la.c.updated_at,
            )
            .select_from(s.outerjoin(la, la.c.cx_id == s.c.cx_id))
            .where(s.c.risk >= min_risk)
            .order_by(s.c.position)
            .limit(limit)
        )
        if only_top_decile:
            threshold = risk_threshold(conn)
            if threshold is not None:
                q = q.where(s.c.risk >= threshold)
        if departments:
            q = q.where(s.c.department.in_(departments))
        if status == "open":
            q = q.where(la.c.status.is_(None))
        elif status:
            q = q.where(la.c.status == status)
        rows = conn.execute(q).fetchall()
    frame = pd.DataFrame(
        rows,
        columns=[
            "position",
            "cx_id",
            "customer_id",
            "risk",
            "value",
            "priority",
            "top_reason",
            "department",
            "action",
            "reasons_json",
            "status",
            "actor",
            "updated_at",
        ],
    )
    frame["reasons"] = frame.pop("reasons_json").map(lambda t: json.loads(t) if t else [])
    frame["status"] = frame["status"].fillna("open")
    # value is NULL when no basis is known (cxdash.risk.aggregates.value_basis): NaN, not None, so it stays numeric
    for col in ("risk", "value", "priority"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype("float64")
    return frame


def customer_score(store: Store, cx_id: str) -> dict | None:
    """The stored score of one customer (with reasons and activation status), or None."""
    s = scores_table
    la = latest_activation()
    with store.app_begin() as conn:
        row = (
            conn.execute(
                sa.select(s, la.c.status, la.c.actor, la.c.updated_at)
                .select_from(s.outerjoin(la, la.c.cx_id == s.c.cx_id))
                .where(s.c.cx_id == cx_id)
            )
            .mappings()
            .first()
        )
    if row is None:
        return None
    out = dict(row)
    out["reasons"] = json.loads(out.pop("reasons_json") or "[]")
    out["status"] = out["status"] or "open"
    return out


def follow_up(store: Store, cx_id: str) -> dict:
    """One customer's follow-up status from the activation log, scored or not (a customer who has
    left can be marked too): ``status`` ("open" when nobody has acted), ``actor`` and ``updated_at``
    (None while open)."""
    la = latest_activation()
    with store.app_begin() as conn:
        row = conn.execute(sa.select(la.c.status, la.c.actor, la.c.updated_at).where(la.c.cx_id == cx_id)).first()
    if row is None:
        return {"status": "open", "actor": None, "updated_at": None}
    return {"status": row.status, "actor": row.actor, "updated_at": row.updated_at}


def mark(store: Store, cx_ids: list[str], status: str, *, actor: str) -> int:
    """Record that ``actor`` contacted or actioned these customers (appends to the log)."""
    if status not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}, not {status!r}")
    if not actor or not actor.strip():
        raise ValueError("say who acted (actor), so the CRM knows whom to ask")
    if not cx_ids:
        return 0
    s, a = scores_table, activation_table
    with store.app_begin() as conn:
        scored = {r.cx_id: r for r in conn.execute(sa.select(s).where(s.c.cx_id.in_(list(cx_ids))))}
        next_id = int(conn.execute(sa.select(sa.func.coalesce(sa.func.max(a.c.id), 0))).scalar()) + 1
        now = _now()
        rows = []
        for i, cx in enumerate(cx_ids):
            r = scored.get(cx)
            reasons = json.loads(r.reasons_json or "[]") if r is not None else []
            rows.append(
                {
                    "id": next_id + i,
                    "cx_id": cx,
                    "customer_id": r.customer_id if r is not None else cx,
                    "model_version": r.model_version if r is not None else None,
                    "risk": r.risk if r is not None else None,
                    "reasons": "; ".join(x["label"] for x in reasons),
                    "department": r.department if r is not None else None,
                    "action": r.action if r is not None else None,
                    "status": status,
                    "actor": actor.strip(),
                    "updated_at": now,
                }
            )
        conn.execute(a.insert(), rows)
    return len(rows)


def export_csv(frame: pd.DataFrame) -> bytes:
    """The at-risk list as CSV for a CRM import; cells that a spreadsheet would run as a formula
    (starting with = + - @ or a tab) are prefixed with a quote."""
    out = pd.DataFrame(
        {
            "customer_id": frame["customer_id"],
            "risk": frame["risk"].round(4),
            "value": frame["value"].round(2),
            "priority": frame["priority"].round(2),
            "reasons": frame["reasons"].map(
                lambda rs: "; ".join(f"{r['label']} ({r['detail']})" if r.get("detail") else r["label"] for r in rs)
            ),
            "owning_department": frame["department"],
            "next_best_action": frame["action"],
            "status": frame["status"],
        }
    )
    return safe_csv(out)  # formulas neutralised, and a carriage return in a cell cannot start a row
