"""Churn model commands: ``train``, ``score`` (who is most at risk) and ``card`` (one customer)."""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime

import sqlalchemy as sa

from cxdash.cli.common import churn_in_force, jsonable, store_of
from cxdash.risk import age_words, at_risk, latest_model, store_scores
from cxdash.risk.card import REASON_KEYS, customer_summary, find_customers
from cxdash.risk.training import train
from cxdash.store.database import models_table

__all__ = [
    "TRAIN_JSON_KEYS",
    "cmd_card",
    "cmd_score",
    "cmd_train",
    "newest_model",
    "train_summary",
    "train_with_progress",
]


def newest_model(store) -> int | None:
    """The newest saved model's version, or None when no model has been trained."""

    with store.app_begin() as conn:
        return conn.execute(sa.select(sa.func.max(models_table.c.version))).scalar()


def train_with_progress(store, **kwargs):
    """``cxdash.risk.training.train`` with each step and the time so far on stderr (stdout stays for the
    result, which may be JSON)."""
    started = time.perf_counter()

    def progress(share: float, text: str) -> None:
        print(f"  {100 * share:3.0f}%  {time.perf_counter() - started:5.1f} s  {text}", file=sys.stderr, flush=True)

    model = train(store, progress=progress, **kwargs)
    print(f"  trained in {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
    return model


# ``train --json``: the held-out report (cxdash.risk.evaluation.model_metrics) and how it was obtained.
TRAIN_JSON_KEYS = (
    "validation",
    "evaluated_on",
    "n_valid",
    "n_positive_valid",
    "base_rate",
    "roc_auc",
    "roc_auc_ci_low",
    "roc_auc_ci_high",
    "roc_auc_ci_level",
    "roc_auc_ci_method",
    "pr_auc",
    "brier",
    "top_decile_n",
    "top_decile_positive",
    "top_decile_rate",
    "top_decile_lift",
    "top_decile_capture",
    "valid_cutoffs",
    "valid_customers",
    "selection",
    "select_cutoffs",
    "n_select",
    "n_positive_select",
    "n_train",
    "train_cutoffs",
    "candidates",
    "chosen",
    "fitted_with",
)


def cmd_train(args) -> int:
    store = store_of(args)
    if args.if_missing:
        newest = newest_model(store)
        if newest is not None:
            print(f"churn model version {newest} exists; not retrained (drop --if-missing to retrain)")
            return 0
    cutoff = datetime.fromisoformat(args.cutoff) if args.cutoff else None
    model = train_with_progress(
        store,
        label_column=args.label_column,
        source=args.source,
        cutoff=cutoff,
        horizon_days=args.horizon_days,
    )
    m = model.metrics
    out = {k: m.get(k) for k in TRAIN_JSON_KEYS}
    out.update(
        model_version=model.version,
        kind=model.kind,
        label_column=model.label_column,
        cutoff=model.cutoff,
        horizon_days=model.horizon_days,
        top_drivers=[d["label"] for d in m.get("importance", [])[:8]],
    )
    if args.json:
        print(json.dumps(out, indent=2, default=str))
    else:
        print(train_summary(model))
    return 0


def train_summary(model) -> str:
    m = model.metrics
    return (
        f"model version {model.version} ({model.name}, {m['validation'].replace('_', ' ')}), measured on "
        f"{m['evaluated_on']}: {m['n_positive_valid']:,} of {m['n_valid']:,} churned "
        f"(base rate {m['base_rate']:.1%}); ROC AUC {m['roc_auc']:.3f} "
        f"(95% CI {m['roc_auc_ci_low']:.3f}-{m['roc_auc_ci_high']:.3f}, bootstrap), "
        f"PR AUC {m['pr_auc']:.3f} against a base rate of {m['base_rate']:.3f}, top-decile lift "
        f"{m['top_decile_lift']:.2f} ({m['top_decile_positive']:,} churned in the riskiest {m['top_decile_n']:,}); "
        f"{m['n_train']:,} training rows, {m['n_select']:,} rows to choose and calibrate"
    )


def _reason_record(reason: dict) -> dict:
    return {k: reason.get(k) for k in REASON_KEYS}


def cmd_score(args) -> int:
    store = store_of(args)
    model = latest_model(store)
    if args.rescore:
        store_scores(store, model)
    frame = at_risk(store, only_top_decile=False, limit=args.top)
    if frame.empty:  # trained before scores were kept, or scores cleared: score now
        store_scores(store, model)
        frame = at_risk(store, only_top_decile=False, limit=args.top)
    records = [
        # value is unknown (None) when neither transactions nor subscription MRR are loaded
        {
            "cx_id": r.cx_id,
            "customer_id": r.customer_id,
            "risk": float(r.risk),
            "value": None if r.value is None or r.value != r.value else float(r.value),
            "priority": float(r.priority),
            "department": r.department,
            "action": r.action,
            "reasons": [_reason_record(x) for x in r.reasons],
        }
        for r in frame.itertuples()
    ]
    if args.json:
        print(json.dumps({"model_version": model.version, "customers": records}, indent=2, default=str))
    else:
        for r in records:
            reasons = "; ".join(x["label"] for x in r["reasons"])
            print(f"{r['customer_id']:20} risk {r['risk']:.3f}  {reasons}  -> {r['action']}")
    return 0


def cmd_card(args) -> int:
    store = store_of(args)
    with store.connect() as conn:
        matches = find_customers(conn, args.identifier)
    if matches.empty:
        print(
            f"cxdash card: no customer matches {args.identifier!r}; give a full customer id, email or phone "
            "(a customer id prefix also works)",
            file=sys.stderr,
        )
        return 1
    exact = matches[matches["matched"] != "customer_id prefix"]
    pick = exact if len(exact) == 1 else matches
    if len(pick) > 1:
        listed = ", ".join(f"{r.customer_id} ({r.matched})" for r in pick.itertuples())
        print(
            f"cxdash card: {len(pick)} customers match {args.identifier!r}: {listed}; give one of them in full",
            file=sys.stderr,
        )
        return 2
    definition = churn_in_force(store).definition
    out = customer_summary(store, str(pick["cx_id"].iloc[0]), mask=not args.unmasked, definition=definition)
    if args.json:
        print(json.dumps(out, indent=2, default=jsonable))
        return 0
    print(f"{out['customer_id'] or out['cx_id']}  {out['name'] or ''}  (cx_id {out['cx_id']})")
    print("identifiers: " + ", ".join(f"{i['field']}={i['value']}" for i in out["identifiers"]))
    print(f"risk: {out['risk']:.0%}" if out["risk"] is not None else f"risk: n/a. {out['risk_note']}")
    print(f"next action: {out['next_action']['action']} (owner: {out['next_action']['department'] or 'n/a'})")
    for r in out["reasons"]:
        print(f"  why: {r['label']} — {r['detail']}")
    if not out["signals"]:
        print("signals: none on record")
    for sig in out["signals"]:
        detail = f" ({sig['detail']})" if sig["detail"] else ""
        print(f"  signal: {sig['label']} {age_words(sig['age_days'])}{detail}")
    return 0
