"""Words and numbers as the pages show them."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pandas as pd

from cxdash.kpis import DEFINITIONS, Headline

_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~:$])")


def plain(text: str) -> str:
    """``text`` with every markdown character escaped: names and values from loaded files (a source
    name, a ticket topic) show as typed, never as a link, an image or emphasis."""
    return _MARKDOWN.sub(r"\\\1", str(text))


def definition(name: str) -> str:
    d = DEFINITIONS[name]
    return f"{d['definition']} Owner: {d['owner']}."


def share(part: int, whole: int) -> str | None:
    return f"{part / whole:.1%} of customers" if whole else None


def money(value: float, currency: str | None = None) -> str:
    unit = f" {currency}" if currency else ""
    if abs(value) >= 1e6:
        return f"{value / 1e6:,.2f} M{unit}"
    if abs(value) >= 1e4:
        return f"{value / 1e3:,.1f} k{unit}"
    return f"{value:,.2f}{unit}"


def age(ts, now: datetime | None = None) -> str:
    if ts is None or pd.isna(ts):
        return "never"
    now = now or datetime.now(UTC).replace(tzinfo=None)
    seconds = (now - pd.Timestamp(ts).to_pydatetime()).total_seconds()
    if seconds < 3600:
        return f"{max(seconds, 0) / 60:.0f} min ago"
    if seconds < 86400 * 2:
        return f"{seconds / 3600:.0f} h ago"
    return f"{seconds / 86400:.0f} days ago"


def overview_sentence(head: Headline, sources: pd.DataFrame) -> str:
    n_sources = len(sources)
    departments = plain(", ".join(sorted(sources["department"].dropna().unique())))
    as_of = head.as_of.strftime("%d %b %Y") if head.as_of else "n/a"
    churn = (
        f"**{head.churned_customers:,}** have churned ({plain(head.churn_definition or head.churn_basis)})"
        if head.churn_basis != "none"
        else "churn is unknown (no churn label, subscriptions, churn records or dated activity loaded)"
    )
    return (
        f"**{head.customers:,} customers** joined across **{n_sources} sources** ({departments}); "
        f"**{head.active_customers:,}** were active in the 30 days to {as_of}, {churn}."
    )


def sources_table(sources: pd.DataFrame) -> pd.DataFrame:
    now = datetime.now(UTC).replace(tzinfo=None)
    out = pd.DataFrame(
        {
            "source": sources["name"],
            "kind": sources["kind"],
            "owner": sources["department"],
            "rows": sources["rows"],
            "customers": sources["customers"],
            "from": sources["first_at"].map(lambda t: "" if pd.isna(t) else pd.Timestamp(t).strftime("%Y-%m-%d")),
            "to": sources["last_at"].map(lambda t: "" if pd.isna(t) else pd.Timestamp(t).strftime("%Y-%m-%d")),
            "newest record": sources["last_at"].map(lambda t: age(t, now)),
            "last load": sources["loaded_at"].map(lambda t: age(t, now)),
            "rejected": sources["rows_rejected"],
        }
    )
    return out
