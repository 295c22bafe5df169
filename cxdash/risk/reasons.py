"""Each customer's reasons for a churn score, which never contradict the customer's own values.

Each driver *group* (for example "cancel page visit": its age and its 7/30-day counts) is reset to
the value of a typical training customer, and the change in log-odds is the driver's contribution.
Positive contributions are the customer's reasons when the customer's own value is on the risky side
of the typical *retained* training customer's (``cxdash.risk.drivers.reason_baseline``), each with
its value, that reference, the side on which risk rises, the owning department and a next best
action; a driver that is a signal takes its words, owner and action from ``cxdash.metrics.signals``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cxdash.metrics import signals
from cxdash.risk.attributes import MISSING_CATEGORY
from cxdash.risk.drivers import INTENT_DRIVERS, SIGNAL_GROUPS, directed, driver_info, main_feature
from cxdash.risk.features import AGE_CAP_DAYS
from cxdash.risk.model import ChurnModel, few_threads, logit

__all__ = ["N_REASONS", "explain"]

N_REASONS = 3


@few_threads
def explain(
    model: ChurnModel, frame: pd.DataFrame, *, top: int = N_REASONS, risky_side_only: bool = True
) -> list[list[dict]]:
    """The top reasons for each row's score, in the structured form the card, the at-risk list and
    the CLI show.

    For every driver group, the row's group features are set to the typical training customer's
    values and the row is scored again; the drop in log-odds is the group's contribution. A driver
    is a reason when it adds over ~5% to the odds *and* the customer's own value of its main
    feature (``main_feature``) is strictly on the risky side of the typical retained customer's
    (``ChurnModel.reason_baseline``): more support contacts than retained customers have, a lowest
    rating below theirs and at most ``signals.COMPLAINT_MAX_SATISFACTION``, never a count of 0. A
    category is a reason when it differs from the retained customers' most frequent one. A number
    whose risky side is neither declared nor learned is not shown (the model's contribution alone
    could contradict the customer's own data). ``risky_side_only=False`` keeps every driver above
    the threshold (to study the model, not to show).

    Returns, per row, up to ``top`` reasons, largest contribution first: ``signal`` (the signal's
    name, or the driver's for a non-signal driver), ``driver``, ``label``, ``feature``, ``value``,
    ``reference``, ``direction`` ("higher"/"lower": the side on which risk rises; None for a
    category), ``department``, ``action``, ``contribution``, ``detail`` (words).
    """
    if frame.empty:
        return []
    x = model._x(frame)
    base = logit(model.estimator.predict_proba(x)[:, 1])
    groups = model.groups()
    contrib = np.zeros((len(x), len(groups)))
    names = list(groups)
    for j, g in enumerate(names):
        # Only rows whose driver differs from the typical customer's can change score when it is
        # reset (most customers never visited the cancel page): score just those (exact).
        rows = _differs_from(x, groups[g], model.reference)
        if not rows.any():
            continue
        xr = x.loc[rows].copy()
        for c in groups[g]:
            xr[c] = float(model.reference.get(c)) if c in model.numeric else model.reference.get(c)
        contrib[rows, j] = base[rows] - logit(model.estimator.predict_proba(xr)[:, 1])
    infos = [driver_info(n) for n in names]
    mains = [_main_spec(model, n) for n in names]
    # the largest contributions of every row at once; words only for the rows and drivers that are reasons
    order = np.argsort(-contrib, axis=1, kind="stable")
    above = np.take_along_axis(contrib, order, axis=1) > 0.05  # under ~5% change in the odds is not a reason
    n_above = above.sum(axis=1)  # sorted: a prefix
    columns, values = list(x.columns), x.to_numpy(dtype=object)
    out = []
    for i in range(len(x)):
        n = int(n_above[i])
        if n == 0:
            out.append([])
            continue
        row = dict(zip(columns, values[i], strict=True))
        reasons = []
        for j in order[i, :n]:
            feature, reference, direction = mains[j]
            value = _plain(row.get(feature)) if feature else None
            if risky_side_only and not _on_risky_side(
                names[j], feature, value, reference, direction, feature in model.categorical
            ):
                continue
            d = directed(infos[j], direction)
            action = d.action
            if names[j] in ("tenure", "attr_tenure") and _tenure_days(row, names[j]) > 365:
                action = "Account manager's loyalty check-in: review usage and renewal terms"
            reasons.append(
                {
                    "signal": d.signal or names[j],
                    "driver": names[j],
                    "label": d.label,
                    "feature": feature,
                    "value": value,
                    "reference": _plain(reference),
                    "direction": direction,
                    "department": d.department,
                    "action": action,
                    "contribution": round(float(contrib[i, j]), 3),
                    "detail": _detail(
                        names[j], row, groups[names[j]], feature=feature, reference=reference, direction=direction
                    ),
                }
            )
            if len(reasons) == top:
                break
        out.append(reasons)
    return out


def _main_spec(model: ChurnModel, group: str) -> tuple[str | None, object, str | None]:
    """A driver group's main feature, the typical retained customer's value of it, and the side on
    which risk rises (declared, else learned from the training data; None for a category or when
    neither tells). A model saved before ``reason_baseline`` existed compares with its typical
    training customer and shows no number whose side is not declared."""
    feature, side = main_feature(group, model.groups()[group])
    if feature is None:
        return None, None, None
    baseline = (getattr(model, "reason_baseline", None) or {}).get(feature)
    if baseline is None:
        reference, learned = model.reference.get(feature), None
    else:
        reference, learned = baseline.get("reference"), baseline.get("learned")
    if feature in model.categorical:
        return feature, reference, None
    return feature, reference, side or learned


def _plain(v):
    """A feature value as JSON holds it: float, str or None (NaN and missing are None)."""
    if v is None:
        return None
    if isinstance(v, str):
        return v
    if isinstance(v, bool | np.bool_):
        return float(v)
    if isinstance(v, int | float | np.integer | np.floating):
        return None if np.isnan(float(v)) else float(v)
    return str(v)


def _on_risky_side(group: str, feature: str | None, value, reference, direction: str | None, categorical: bool) -> bool:
    """Is the customer's value strictly on the side of the retained customers' typical value where
    risk rises? Missing values and unknown sides are not."""
    if feature is None or value is None or reference is None:
        return False
    if categorical:
        return str(value) != str(reference)
    if direction == "higher":
        risky = value > reference
    elif direction == "lower":
        risky = value < reference
    else:
        return False
    if group in SIGNAL_GROUPS:
        if feature.startswith("days_since_"):
            risky = risky and value < AGE_CAP_DAYS  # the cap means never
        elif group == "satisfaction":
            risky = risky and value <= signals.COMPLAINT_MAX_SATISFACTION
        else:  # a count of a signal: none on record is never a reason
            risky = risky and value > 0
    return bool(risky)


def _differs_from(x: pd.DataFrame, cols: list[str], reference: dict) -> np.ndarray:
    """Per row of ``x``: does any of ``cols`` differ from its ``reference`` value (missing = missing)?"""
    out = np.zeros(len(x), dtype=bool)
    for c in cols:
        ref, v = reference.get(c), x[c]
        if ref is None or (isinstance(ref, float) and np.isnan(ref)):
            out |= v.notna().to_numpy()
        else:
            out |= (v.isna() | (v != ref)).to_numpy(dtype=bool)
    return out


def _tenure_days(row: dict, group: str) -> float:
    if group == "tenure":
        v = row.get("tenure_days")
    else:  # a customer table's own tenure column is usually in months
        v = row.get("attr_tenure")
        v = v * 30.44 if v is not None and not pd.isna(v) else v
    return float(v) if v is not None and not pd.isna(v) else 0.0


def _detail(
    group: str, row: dict, cols: list[str], *, feature: str | None = None, reference=None, direction: str | None = None
) -> str:
    """Words for the customer's own values of a driver ("most recently 3 days ago", "2 in 90 days") and, but
    for an intent signal, how the main ``feature`` compares with the typical retained customer's
    value; ``row`` maps feature names to the customer's values, ``cols`` are the driver group's
    features."""
    own = _own_words(group, row, cols)
    if group in INTENT_DRIVERS or feature is None or reference is None:
        return own
    value = _plain(row.get(feature))
    own = own or _feature_words(feature, value)
    than = {"higher": "more than", "lower": "less than"}.get(direction or "", "unlike")
    return f"{own}; {than} a typical retained customer ({_feature_words(feature, _plain(reference))})"


# how a feature's value reads ("{} web visits in 30 days")
_FEATURE_WORDS = {
    "web_events_30d": "{:,.0f} web visits in 30 days",
    "web_events_90d": "{:,.0f} web visits in 90 days",
    "web_events": "{:,.0f} web visits in all",
    "marketing_engaged_90d": "{:,.0f} marketing opens or clicks in 90 days",
    "marketing_touches_90d": "{:,.0f} marketing messages in 90 days",
    "revenue_90d": "{:,.0f} revenue in 90 days",
    "purchases_90d": "{:,.0f} purchases in 90 days",
    "mrr": "MRR {:,.0f}",
    "revenue": "{:,.0f} revenue in all",
    "contacts_90d": "{:,.0f} contacts in 90 days",
    "contacts_30d": "{:,.0f} contacts in 30 days",
    "contacts": "{:,.0f} contacts in all",
    "open_tickets": "{:,.0f} open tickets",
    "ended_subscriptions": "{:,.0f} ended subscriptions",
    "consent_marketing": "consent {:.0f} (1 = yes)",
    "checkout_errors_30d": "{:,.0f} in 30 days",
    "checkout_errors": "{:,.0f} in all",
    "failed_payments_90d": "{:,.0f} in 90 days",
    "failed_payments_30d": "{:,.0f} in 30 days",
    "failed_payments": "{:,.0f} in all",
    "repeat_contacts_90d": "{:,.0f} in 90 days",
    "repeat_contacts": "{:,.0f} in all",
    "transferred_contacts_90d": "{:,.0f} transferred contacts in 90 days",
    "transfers": "{:,.0f} transfers in all",
}


def _feature_words(feature: str, v) -> str:
    """One feature value in words: months of tenure, days ago, a rating, a count."""
    if v is None:
        return "none recorded"
    if isinstance(v, str):
        return "none recorded" if v == MISSING_CATEGORY else v
    if feature == "tenure_days":
        return f"{v / 30.44:.0f} months"
    if feature.startswith("days_since_"):
        if v >= AGE_CAP_DAYS:
            return "none in a year"
        return "today" if v < 1 else ("yesterday" if v < 2 else f"{int(v)} days ago")
    if feature.startswith("satisfaction"):
        return f"lowest rating {v:.3g}" if feature == "satisfaction_min" else f"average rating {v:.3g}"
    if feature in _FEATURE_WORDS:
        return _FEATURE_WORDS[feature].format(v)
    return f"{v:,.4g}"


def _own_words(group: str, row: dict, cols: list[str]) -> str:
    def age(col):
        v = row.get(col)
        if v is None or pd.isna(v) or v >= AGE_CAP_DAYS:
            return None
        # whole days elapsed, as the card's signals
        return "today" if v < 1 else ("yesterday" if v < 2 else f"{int(v)} days ago")

    if group in INTENT_DRIVERS:
        a = age(f"days_since_{group}")
        n = row.get(f"{group}_30d")
        if a:
            return f"most recently {a}" + (f", {n:.0f}× in 30 days" if n and not pd.isna(n) and n > 1 else "")
        return "not recently"
    counts = {
        "checkout_errors": ("checkout_errors_30d", "days_since_checkout_errors", "in 30 days"),
        "failed_payments": ("failed_payments_90d", "days_since_failed_payments", "in 90 days"),
        "repeat_contacts": ("repeat_contacts_90d", "days_since_repeat_contacts", "in 90 days"),
        "transfers": ("transferred_contacts_90d", "days_since_transfers", "transferred contacts in 90 days"),
        "support_contacts": ("contacts_90d", "days_since_contact", "contacts in 90 days"),
    }
    if group in counts:
        n_col, age_col, what = counts[group]
        n, a = row.get(n_col), age(age_col)
        parts = []
        if n is not None and not pd.isna(n):
            parts.append(f"{n:.0f} {what}")
        if a:
            parts.append(f"most recently {a}")
        return ", ".join(parts)
    if group == "tenure":
        v = row.get("tenure_days")
        return f"{v / 30.44:.0f} months" if v is not None and not pd.isna(v) else ""
    if group == "purchases":
        v, n = row.get("revenue_90d"), row.get("purchases_90d")
        if v is not None and not pd.isna(v):
            return f"{n:.0f} purchases worth {v:,.0f} in 90 days"
        return ""
    if group == "usage":
        v = row.get("web_events_30d")
        return f"{v:.0f} web visit{'' if v == 1 else 's'} in 30 days" if v is not None and not pd.isna(v) else ""
    if group == "satisfaction":
        v = row.get("satisfaction_min")
        return f"lowest rating {v:.0f}" if v is not None and not pd.isna(v) else ""
    if len(cols) == 1:
        v = _plain(row[cols[0]])
        return "" if v is None else _feature_words(cols[0], v)
    return ""
