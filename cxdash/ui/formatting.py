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
