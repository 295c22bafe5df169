"""The next best action for one customer: the newest strong signal wins, else the top reason.

A customer who asked to cancel nine days ago needs the retention team, whatever the model's top
driver is ("uses the product less"), so the card, the at-risk list and the CLI all take their next
action from ``next_action``:

1. a *strong* signal (an intent signal such as a cancellation ticket, or a churn record) seen in
   the last ``RECENT_SIGNAL_DAYS`` days: the newest one's action from ``cxdash.metrics.signals``, with its
   age beside it ("Route to the retention team today — asked to cancel 9 days ago");
2. otherwise the action of the first reason shown for the score (``cxdash.risk.reasons.explain``);
3. otherwise the regular cadence.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import pandas as pd

from cxdash.metrics.signals import CHURN, INTENT, SIGNALS

__all__ = ["DEFAULT_ACTION", "RECENT_SIGNAL_DAYS", "STRONG", "age_words", "next_action"]

# An intent or churn signal older than this no longer decides the next action (the model's
# reasons do): a cancel-page visit last quarter is history, not a call to make today.
RECENT_SIGNAL_DAYS = 30.0
STRONG = (INTENT, CHURN)
DEFAULT_ACTION = "Keep in the regular success cadence"
# On the same day, a churn record comes before an intent signal (the customer has already left:
# the call is a win-back), then signals in the registry's order.
_RANK = {name: (0 if s.strength == CHURN else 1, i) for i, (name, s) in enumerate(SIGNALS.items())}


def age_words(days: float | None) -> str:
    """``0.4`` -> "today", ``1.2`` -> "yesterday", ``9.7`` -> "9 days ago" (whole days elapsed);
    None/NaN -> "at an unknown date"."""
    if days is None or (isinstance(days, float) and math.isnan(days)):
        return "at an unknown date"
    if days < 1:
        return "today"
    if days < 2:
        return "yesterday"
    return f"{int(days)} days ago"


def _seen(signals) -> list[tuple[str, float]]:
    """``(name, age_days)`` pairs from a frame with ``signal, age_days`` columns or from pairs."""
    if signals is None:
        return []
    if isinstance(signals, pd.DataFrame):
        if signals.empty:
            return []
        return list(zip(signals["signal"].astype(str), signals["age_days"].astype(float), strict=True))
    return [(str(n), float(a)) for n, a in signals]


def next_action(
    signals: pd.DataFrame | Iterable[tuple[str, float]] | None,
    reasons: list[Mapping] | None,
    *,
    recent_days: float = RECENT_SIGNAL_DAYS,
) -> dict:
    """The next best action for one customer.

    In: ``signals`` (a frame with ``signal`` = a ``cxdash.metrics.signals`` name and ``age_days``, as
    ``cxdash.risk.recent.recent_signals`` gives it, or ``(name, age_days)`` pairs) and the score's
    ``reasons`` (structured, as ``cxdash.risk.reasons.explain`` gives them; shown ones only).
    Out: ``action`` (the words to show, with the signal's age when a signal decides),
    ``department``, ``signal`` (the deciding signal or reason, None for the default), ``age_days``
    (None unless a signal decides), ``because`` (why: "asked to cancel 9 days ago", or the reason's
    label) and ``basis`` ("signal", "reason" or "default").
    """
    strong = [
        (n, a)
        for n, a in _seen(signals)
        if n in SIGNALS and SIGNALS[n].strength in STRONG and not math.isnan(a) and a <= recent_days
    ]
    if strong:
        name, age = min(strong, key=lambda s: (s[1], _RANK[s[0]]))
        sig = SIGNALS[name]
        because = f"{sig.noun} {age_words(age)}"
        return {
            "action": f"{sig.action} — {because}",
            "department": sig.department,
            "signal": name,
            "age_days": round(age, 2),
            "because": because,
            "basis": "signal",
        }
    if reasons:
        top = reasons[0]
        return {
            "action": top["action"],
            "department": top.get("department") or "",
            "signal": top.get("signal"),
            "age_days": None,
            "because": top.get("label", ""),
            "basis": "reason",
        }
    return {
        "action": DEFAULT_ACTION,
        "department": "",
        "signal": None,
        "age_days": None,
        "because": "no recent intent signal and no reason above the typical retained customer",
        "basis": "default",
    }
