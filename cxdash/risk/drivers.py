"""What drives a churn score, in words: driver groups, their owners and next actions, their main feature.

Each feature belongs to a driver *group* (for example "cancel page visit": its age and its 7/30-day
counts). A group has a label, an owning department and a next best action; a group that is a signal
takes them from ``cxdash.metrics.signals``. ``main_feature`` names the value a reason shows and the
side on which risk rises; ``reason_baseline`` learns a typical retained customer to compare with.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from cxdash.metrics import signals

__all__ = [
    "INTENT_DRIVERS",
    "SIGNAL_GROUPS",
    "Driver",
    "directed",
    "driver_info",
    "group_of",
    "main_feature",
    "reason_baseline",
]


@dataclass(frozen=True)
class Driver:
    group: str
    label: str
    department: str
    action: str
    signal: str | None = None  # the cxdash.metrics.signals name when the driver is a signal


# Driver groups that are signals: their words, owner and next action are the registry's. The
# intent signals' groups carry the signal's own name (their features are ``cancel_page_30d``...).
SIGNAL_GROUPS = {
    "checkout_errors": "checkout_error",
    "failed_payments": "failed_payment",
    "repeat_contacts": "repeat_contact",
    "transfers": "transfer",
    "satisfaction": "low_satisfaction",
    **{s.name: s.name for s in signals.SIGNALS.values() if s.strength == signals.INTENT},
}
INTENT_DRIVERS = tuple(s.name for s in signals.SIGNALS.values() if s.strength == signals.INTENT)
# Drivers that are not signals: what the customer is (tenure, plan) or does (usage, purchases).
_FIXED_DRIVERS: dict[str, tuple[str, str, str]] = {
    "support_contacts": (
        "More support contacts than retained customers",
        "support",
        "Proactive check-in on the open issues",
    ),
    "usage": ("Product usage", "web", "Success team re-onboards the key features"),
    "marketing": ("Marketing engagement", "marketing", "Move to a relevant nurture track"),
    "purchases": ("Purchase pattern and value", "billing", "Review billing and offer annual pricing"),
    "tenure": ("Tenure", "sales", "Onboarding check-in for new customers"),
    "campaign": ("Acquisition campaign", "marketing", "Campaign cohort gets the onboarding nurture"),
    "acquisition_channel": ("Acquisition channel", "marketing", "Review the channel's onboarding"),
    "plan": ("Plan / contract", "sales", "Offer a longer contract with a discount"),
    "segment": ("Segment", "sales", "Segment-specific success play"),
    "region": ("Region", "sales", "Regional team reviews the account"),
    "consent": ("Marketing consent", "marketing", "Ask for consent at the next contact"),
}
_ATTR_DEPARTMENTS = (
    (("pay", "charge", "bill", "invoice", "price", "cost"), "billing", "Review billing and payment terms"),
    (
        ("support", "ticket", "complain", "security", "protection", "backup"),
        "support",
        "Offer the support add-on and check open issues",
    ),
    (
        ("stream", "internet", "service", "device", "usage", "login", "online"),
        "web",
        "Success team reviews how the product is used",
    ),
    (("email", "campaign", "marketing", "newsletter"), "marketing", "Move to a relevant nurture track"),
)
# A driver's *main feature*: the value a reason shows and compares with retained customers. The
# first one the model has wins. Its risky side: "higher"/"lower" as declared, ``"signal"`` for the
# signal's own direction, None when the training data tells (``reason_baseline``).
_MAIN_FEATURES: dict[str, tuple[tuple[str, str | None], ...]] = {
    **{
        stem: ((f"{stem}_30d", "signal"), (f"{stem}_7d", "signal"), (f"days_since_{stem}", "lower"))
        for stem in INTENT_DRIVERS
    },
    "checkout_errors": (
        ("checkout_errors_30d", "signal"),
        ("checkout_errors", "signal"),
        ("days_since_checkout_errors", "lower"),
    ),
    "failed_payments": (
        ("failed_payments_90d", "signal"),
        ("failed_payments_30d", "signal"),
        ("failed_payments", "signal"),
        ("days_since_failed_payments", "lower"),
    ),
    "repeat_contacts": (
        ("repeat_contacts_90d", "signal"),
        ("repeat_contacts", "signal"),
        ("days_since_repeat_contacts", "lower"),
    ),
    "transfers": (("transferred_contacts_90d", "signal"), ("transfers", "signal"), ("days_since_transfers", "lower")),
    "satisfaction": (("satisfaction_min", "signal"), ("satisfaction_avg", "signal")),
    "support_contacts": (
        ("contacts_90d", "higher"),
        ("contacts_30d", "higher"),
        ("contacts", "higher"),
        ("open_tickets", "higher"),
    ),
    "usage": (("web_events_30d", None), ("web_events_90d", None), ("web_events", None)),
    "marketing": (("marketing_engaged_90d", None), ("marketing_touches_90d", None)),
    "purchases": (("revenue_90d", None), ("purchases_90d", None), ("mrr", None), ("revenue", None)),
    "tenure": (("tenure_days", None), ("ended_subscriptions", None)),
    "consent": (("consent_marketing", None),),
}


def group_of(feature: str) -> str:
    for stem in INTENT_DRIVERS:
        if stem in feature:
            return stem
    name = feature
    rules = (
        ("checkout_errors", "checkout_errors"),
        ("failed_payments", "failed_payments"),
        ("repeat_contacts", "repeat_contacts"),
        ("transfer", "transfers"),
        ("satisfaction", "satisfaction"),
        ("contact", "support_contacts"),
        ("open_tickets", "support_contacts"),
        ("resolution", "support_contacts"),
        ("marketing", "marketing"),
        ("web", "usage"),
        ("purchase", "purchases"),
        ("revenue", "purchases"),
        ("refund", "purchases"),
        ("mrr", "purchases"),
        ("tenure", "tenure"),
        ("consent", "consent"),
        ("ended_subscriptions", "tenure"),
    )
    if name.startswith("attr_"):
        return name
    for needle, group in rules:
        if needle in name:
            return group
    return name


def driver_info(group: str) -> Driver:
    """Label, owning department and next best action for a driver group; a signal's come from
    ``cxdash.metrics.signals``."""
    if group in SIGNAL_GROUPS:
        s = signals.signal(SIGNAL_GROUPS[group])
        return Driver(group, s.label, s.department, s.action, s.name)
    if group in _FIXED_DRIVERS:
        return Driver(group, *_FIXED_DRIVERS[group])
    if group.startswith("attr_"):
        raw = group[5:]
        label = raw.replace("_", " ").capitalize()
        if "tenure" in raw:
            return Driver(group, "Tenure", "sales", "Onboarding check-in for new customers")
        if "contract" in raw:
            return Driver(group, label, "sales", "Offer a longer contract with a discount")
        for needles, dept, action in _ATTR_DEPARTMENTS:
            if any(n in raw for n in needles):
                return Driver(group, label, dept, action)
        return Driver(group, label, "sales", "Account manager reviews the account")
    return Driver(group, group.replace("_", " ").capitalize(), "sales", "Account manager reviews the account")


def main_feature(group: str, features: list[str]) -> tuple[str | None, str | None]:
    """The feature a driver group's reason shows (the first of its declared ones the model has,
    else its first feature) and its declared risky side ("higher", "lower", or None: learned)."""
    have = set(features)
    for feature, side in _MAIN_FEATURES.get(group, ()):
        if feature in have:
            if side == "signal":
                side = signals.signal(SIGNAL_GROUPS[group]).direction
            return feature, side
    own = [f for f in features if group_of(f) == group]
    return (own[0], None) if own else (None, None)


def reason_baseline(rows: pd.DataFrame, y: np.ndarray, numeric: list[str], categorical: list[str]) -> dict:
    """What a retained customer typically looks like, per feature, for the reasons' comparison.

    In: training rows, their labels (1 = churned), the feature names. Out: ``{feature:
    {"reference": median (number) or most frequent value (category) among the retained rows,
    "learned": "higher"/"lower"/None}}``; ``learned`` is the side where the churned rows' mean lies
    (None when equal, for a category, or with no churned or no retained rows).
    """
    y = np.asarray(y, dtype=float)
    kept, gone = rows[y == 0], rows[y == 1]
    out: dict[str, dict] = {}
    for c in numeric:
        v = pd.to_numeric(kept[c], errors="coerce")
        ref = float(v.median()) if v.notna().any() else None
        m0, m1 = v.mean(), pd.to_numeric(gone[c], errors="coerce").mean()
        learned = None if pd.isna(m0) or pd.isna(m1) or m0 == m1 else ("higher" if m1 > m0 else "lower")
        out[c] = {"reference": ref, "learned": learned}
    for c in categorical:
        mode = kept[c].dropna().astype(str).mode()
        out[c] = {"reference": mode.iloc[0] if len(mode) else None, "learned": None}
    return out


# Non-signal drivers whose risky side the data decides: their words depend on that side (the
# label must not say "uses the product less" of a customer who uses it more than retained ones).
_DIRECTED_WORDS = {
    ("usage", "lower"): ("Uses the product less than retained customers", "Success team re-onboards the key features"),
    ("usage", "higher"): (
        "More web activity than retained customers",
        "Success team asks what they came for (help, billing or cancel pages)",
    ),
    ("marketing", "lower"): ("Less marketing engagement than retained customers", "Move to a relevant nurture track"),
    ("marketing", "higher"): (
        "More marketing engagement than retained customers",
        "Check the messages they open; move to a relevant nurture track",
    ),
    ("purchases", "lower"): ("Buys less than retained customers", "Review billing and offer annual pricing"),
    ("purchases", "higher"): ("Spends more than retained customers", "Account manager reviews value for money"),
    ("tenure", "lower"): ("Newer than retained customers", "Onboarding check-in for new customers"),
    ("tenure", "higher"): (
        "Longer-standing than retained customers",
        "Account manager's loyalty check-in: review usage and renewal terms",
    ),
}


def directed(d: Driver, direction: str | None) -> Driver:
    words = _DIRECTED_WORDS.get((d.group, direction or ""))
    return d if words is None else Driver(d.group, words[0], d.department, words[1], d.signal)
