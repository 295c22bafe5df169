"""Words and numbers as the pages show them."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime

import pandas as pd

from cxdash.kpis import DEFINITIONS, Headline

# Every ASCII punctuation character can be backslash-escaped in CommonMark, and escaping all of them
# is simpler to trust than a list of the ones some markdown feature happens to use today.
_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")
# Line breaks would let a value start its own block (a "===" underline makes a heading, "---" a rule).
_LINE_BREAKS = re.compile(r"[\r\n\v\f\x1c-\x1e\x85\u2028\u2029]+")
# Streamlit's markdown links bare URLs ("http://"), www. names and emails, and turns ":material/x:" into
# an icon, on the parsed text (after escapes are gone), so escaping cannot stop them: an invisible
# word joiner (U+2060) after a colon that a slash follows (after any letters: "http:/", ":material/"),
# before each "@" and inside "www." breaks those patterns without changing what the reader sees.
# (":red[x]" and ":smile:" are stopped by the escapes; a browser test checks all of them.)
WORD_JOINER = "\u2060"
_AUTOLINK_PARTS = re.compile(r"(:)(?=[A-Za-z]*\\/)|(\\@)|(?i:(w)(ww\\\.))")


def _break_autolinks(match: re.Match) -> str:
    colon, at, w, ww = match.groups()
    if colon:
        return colon + WORD_JOINER
    if at:
        return WORD_JOINER + at
    return w + WORD_JOINER + ww


def plain(text: object) -> str:
    """``text`` (any value; str() of it) made safe for every place Streamlit reads markdown: st.markdown,
    captions, headers, alerts, metric labels and help, expander and widget labels.

    The reader sees the value as typed: no link, image, emphasis, heading, list, table, LaTeX ($...$),
    colour (:red[...]), icon or emoji shortcode, HTML or entity. Line breaks become one space, leading and
    trailing blanks are dropped, and invisible word joiners (U+2060) sit after a colon that a slash
    follows, before "@" and in "www." (see above): strip ``WORD_JOINER`` to compare what a page shows
    with the stored value.
    """
    # Leading blanks would make an indented code block where the value starts a paragraph.
    one_line = _LINE_BREAKS.sub(" ", str(text)).strip()
    escaped = _PUNCTUATION.sub(r"\\\1", one_line)
    return _AUTOLINK_PARTS.sub(_break_autolinks, escaped)


def plot_text(text: object) -> str:
    """``text`` (any value) for a plotly title, label, tick or hover text: plotly reads a few HTML tags
    there (``<a href>``, ``<b>``, ``<br>``) and entities, so ``<``, ``>`` and ``&`` are escaped."""
    return html.escape(str(text), quote=False)


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


# ----------------------------------------------------------------------------- one formatting layer
# Every figure a page shows goes through these, so a number reads the same everywhere: its unit, its
# thousands separators, and a dash (never "None", "nan" or 0) where it is not known.
UNKNOWN = "—"

# Column names as the code knows them -> as a person reads them. ``label`` falls back to the name
# with underscores as spaces, so a new column is never shown in snake_case.
LABELS: dict[str, str] = {
    "cx_id": "customer key",
    "customer_id": "customer id",
    "cohort_by": "cohort by",
    "departmental_kpi": "departmental KPI",
    "median_seconds": "median wait",
    "median_hours": "median wait (hours)",
    "median_days": "median wait (days)",
    "rows_rejected": "rows rejected",
    "first_at": "first record",
    "last_at": "newest record",
    "loaded_at": "last load",
    "n": "customers",
    # data health and admin (issue 16, access/upload/health part)
    "id_key": "shared identifier",
    "degree": "records it links",
    "load_id": "load",
    "row_number": "line",
    "column_name": "column",
    "null_share": "share missing",
    "customers_covered": "customers covered",
    "matched_via": "matched on",
    "occurred_at": "when",
}


def label(column: object) -> str:
    """A column name as a person reads it: ``LABELS`` first, else underscores as spaces."""
    name = str(column)
    return LABELS.get(name, name.replace("_", " ").strip())


def labelled(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with its columns renamed by ``label`` (values untouched)."""
    return frame.rename(columns={c: label(c) for c in frame.columns})


def _missing(value: object) -> bool:
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def count(value: object, noun: str | None = None) -> str:
    """``1,426`` (``1,426 customers`` with a noun; singular for 1), or ``—`` when unknown."""
    if _missing(value):
        return UNKNOWN
    n = int(value)
    if noun is None:
        return f"{n:,}"
    return f"{n:,} {noun if n == 1 else plural(noun)}"


def plural(noun: str) -> str:
    """The plural of a simple English noun ("thing" -> "things", "customer" -> "customers")."""
    if noun.endswith(("s", "x", "ch", "sh")):
        return noun + "es"
    if noun.endswith("y") and noun[-2:-1] not in "aeiou":
        return noun[:-1] + "ies"
    return noun + "s"


def percent(value: object, digits: int = 1) -> str:
    """A share (0.123) as ``12.3%``, or ``—`` when unknown."""
    if _missing(value):
        return UNKNOWN
    return f"{float(value):.{digits}%}"


def money_exact(value: object, currency: str | None = None) -> str:
    """Money to the cent with its currency (``5,531.73 USD``), or ``—`` when unknown; ``money``
    rounds to k / M for headline figures."""
    if _missing(value):
        return UNKNOWN
    unit = f" {currency}" if currency else ""
    return f"{float(value):,.2f}{unit}"


def duration(seconds: object) -> str:
    """A length of time in the unit a person would use: ``45 min``, ``5.2 h``, ``17.8 days``; ``—`` when
    unknown."""
    if _missing(seconds):
        return UNKNOWN
    s = float(seconds)
    if abs(s) < 3600:
        return f"{s / 60:.0f} min"
    if abs(s) < 86400 * 2:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:,.1f} days"


def day(ts: object) -> str:
    """A date as ``2 Dec 2026``, or ``—`` when unknown."""
    if _missing(ts):
        return UNKNOWN
    t = pd.Timestamp(ts)
    return f"{t.day} {t.strftime('%b %Y')}"


def versus(days: int | float | None = None, words: str | None = None) -> str:
    """What a change is measured against, for a delta's caption: ``vs the previous 90 days``."""
    if words:
        return f"vs {words}"
    if days is None:
        return "vs the previous period"
    return f"vs the previous {int(days):,} days"
