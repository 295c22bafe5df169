"""Words and numbers as the pages show them."""

from __future__ import annotations

import html
import os
import re
from datetime import UTC, datetime

import pandas as pd

from cxdash.governance import DEPARTMENT_NAMES, department_name
from cxdash.metrics import DEFINITIONS, Headline

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
    """The Overview's opening sentence (markdown; source names escaped): customers, sources, active,
    churned, and the people sources saw who are not customers (anonymous visitors and other ids no CRM
    customer claims), so no source reads as having more customers than exist."""
    n_sources = len(sources)
    # department codes come from the files: spelled out ("Technology (tech)"), then escaped
    departments = plain(", ".join(department_name(d) for d in sorted(sources["department"].dropna().unique())))
    as_of = day(head.as_of) if head.as_of else UNKNOWN
    churn = (
        f"**{head.churned_customers:,}** have churned ({plain(head.churn_definition or head.churn_basis)})"
        if head.churn_basis != "none"
        else "churn is unknown (no churn label, subscriptions, churn records or dated activity loaded)"
    )
    out = (
        f"**{count(head.customers, 'customer')}** joined across **{n_sources} sources** ({departments}); "
        f"**{head.active_customers:,}** were active in the 30 days to {as_of}, {churn}."
    )
    if "unmatched" in sources.columns and sources["unmatched"].sum() > 0:
        others = sources[sources["unmatched"] > 0].sort_values("unmatched", ascending=False)
        parts = [
            f"{count(r.unmatched, 'anonymous visitor' if r.kind == 'events' else 'unmatched id')} in {plain(r.name)}"
            for r in others.itertuples()
        ]
        out += (
            " Not counted as customers: " + ", ".join(parts) + " (people a source knows only by its own ids, "
            "never matched to a CRM customer)."
        )
    return out


def overview_cards(head: Headline, sources: pd.DataFrame) -> list[tuple[str, str, str | None, str, str]]:
    """The Overview's four headline cards as ``(title, value, context, caption, help)``: each value with
    its unit, ``context`` what it is a share of (shown under the value, or None), ``caption`` the period
    it covers, ``help`` its definition, owner and anything unknown about it (plain text)."""
    as_of = day(head.as_of) if head.as_of else None
    churn_known = head.churn_basis != "none"
    sales = sources[sources["kind"] == "transactions"]
    customers = (
        "Customers",
        count(head.customers),
        None,
        "every customer, all time",
        definition("customers"),
    )
    active = (
        "Active (last 30 days)",
        count(head.active_customers) if as_of else UNKNOWN,
        share(head.active_customers, head.customers) if as_of else None,
        f"in the 30 days to {as_of}" if as_of else "the data has no dates",
        definition("active_customers") + ("" if as_of else " The loaded data has no dates, so activity is unknown."),
    )
    churned = (
        "Churned",
        count(head.churned_customers) if churn_known else UNKNOWN,
        share(head.churned_customers, head.customers) if churn_known else None,
        f"by {as_of}" if churn_known and as_of else ("all time" if churn_known else "churn is unknown"),
        definition("churned_customers")
        + ("" if churn_known else " No churn label, subscriptions, churn records or dated activity are loaded."),
    )
    if sales.empty:  # no transactions loaded: revenue is unknown, not zero
        revenue = (
            "Revenue",
            UNKNOWN,
            None,
            "no transactions loaded",
            definition("revenue") + " No transactions are loaded.",
        )
    else:
        code = currency(head.currency)
        revenue = (
            "Revenue",
            money(head.revenue, code),
            None if code else NO_CURRENCY,
            "paid transactions, " + span(sales["first_at"].min(), sales["last_at"].max()),
            definition("revenue") + " " + currency_note(head.currency),
        )
    return [customers, active, churned, revenue]


SOURCES_COLUMNS_HELP = {
    "owner": (
        "The department the source belongs to, spelled out with the code the data uses. The team or person "
        "to call about it is on Data health."
    ),
    "customers": "Customers (stitched to a CRM customer record) with at least one row in this source.",
    "anonymous or unmatched": (
        "People this source knows only by its own ids (a web cookie, an email, a phone number, an account) "
        "that no CRM customer record claims: anonymous web visitors, for example. They are counted on no page "
        "as customers."
    ),
}


def sources_table(sources: pd.DataFrame) -> pd.DataFrame:
    """One row per source for the Overview table, headed in words: counts stay numbers (the page gives
    them thousands separators), dates are ``2 Dec 2026`` (the newest with its age: ``31 Oct 2026 (31 days
    ago)``), the owning department is spelled out with its code (``Technology (tech)``); when each source
    was last loaded is on Data health. Customers and the ids no CRM customer claims are two columns
    (``source_summary``'s ``identified`` and ``unmatched``)."""
    now = datetime.now(UTC).replace(tzinfo=None)
    identified = sources["identified"] if "identified" in sources.columns else sources["customers"]
    unmatched = sources["unmatched"] if "unmatched" in sources.columns else pd.Series(0, index=sources.index)
    out = pd.DataFrame(
        {
            "source": sources["name"],
            "kind": sources["kind"],
            "owner": sources["department"].map(lambda d: UNKNOWN if _missing(d) else department_name(d)),
            "rows": sources["rows"],
            "customers": identified,
            "anonymous or unmatched": unmatched,
            "from": sources["first_at"].map(day),
            "to (newest record)": sources["last_at"].map(
                lambda t: UNKNOWN if _missing(t) else f"{day(t)} ({age(t, now)})"
            ),
            "rejected rows": sources["rows_rejected"],
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
    # the kinds' fields, as the upload page names them (the others read well with spaces)
    "consent_marketing": "marketing consent",
    "mrr": "monthly recurring revenue",
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
    """A length of time in the unit a person would use: ``2.4 s``, ``38 s``, ``45 min``, ``5.2 h``,
    ``17.8 days``; ``—`` when unknown."""
    if _missing(seconds):
        return UNKNOWN
    s = float(seconds)
    if abs(s) < 10:
        return f"{s:.1f} s"
    if abs(s) < 90:
        return f"{s:.0f} s"
    if abs(s) < 3600:
        return f"{s / 60:.0f} min"
    if abs(s) < 86400 * 2:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:,.1f} days"


def signed(value: object, kind: str = "count", currency: str | None = None) -> str | None:
    """A change with its sign and unit: ``+1,022``, ``-2.0 pts`` (shares, in percentage points),
    ``+4.52 M USD``, ``+0.1 h``; None when unknown (no delta shown)."""
    if _missing(value):
        return None
    v = float(value)
    sign = "+" if v >= 0 else "-"
    if kind == "share":
        return f"{v * 100:+.1f} pts"
    if kind == "money":
        return sign + money(abs(v), currency)
    if kind == "count":
        return f"{v:+,.0f}"
    if kind == "hours":
        return f"{v:+,.1f} h"
    return f"{v:+,.2f}"


def span(first: object, last: object) -> str:
    """Two dates as a range, ``2 Nov 2023 – 31 Oct 2026``; ``—`` when either is unknown."""
    if _missing(first) or _missing(last):
        return UNKNOWN
    return f"{day(first)} – {day(last)}"


def period_words(start: object, end: object) -> str:
    """A half-open period ``[start, end)`` in words: ``the 90 days to 31 Oct 2026`` (the last day is
    the one before ``end``); ``—`` when unknown."""
    if _missing(start) or _missing(end):
        return UNKNOWN
    first, stop = pd.Timestamp(start), pd.Timestamp(end)
    days = round((stop - first).total_seconds() / 86400)
    last = stop - pd.Timedelta(days=1)
    return f"the {count(days, 'day')} to {day(last)}"


# ----------------------------------------------------------------------------- departments
DEPARTMENT_NOT_SET = "department not set"


def department_words(code: object, missing: str = DEPARTMENT_NOT_SET) -> str:
    """A department as every page names it: spelled out with the code the data uses
    (``"support"`` -> ``"Customer support (support)"``), a code the house does not know as written,
    ``missing`` (words, never blank) when none is recorded. Plain text: a value from a file, so escape
    it (``plain``, ``plot_text``) before markdown or a chart shows it."""
    if _missing(code) or not str(code).strip():
        return missing
    return department_name(str(code).strip())


def department_and_owner(department: object, owner: object) -> str:
    """Whose a source is, in one phrase: ``"Technology (tech), owner Dana"``. An owner that is a
    department code reads as that department's team (``"owner Customer support team (support)"``);
    with no owner, or the source's own department code as owner (what a load records when nobody
    named one), the department's team answers for it: ``"Sales (sales), owner not set: the Sales
    team"``. Missing parts are said in words, never left blank."""
    dept = None if _missing(department) or not str(department).strip() else str(department).strip()
    who = None if _missing(owner) or not str(owner).strip() else str(owner).strip()
    if dept is None and who is None:
        return "department and owner not set"
    if who is not None and who.lower() != (dept or "").lower():
        code = who.lower()
        named = f"{DEPARTMENT_NAMES[code]} team ({who})" if code in DEPARTMENT_NAMES else who
        return f"{department_words(dept)}, owner {named}"
    team = DEPARTMENT_NAMES.get(dept.lower(), dept)
    return f"{department_words(dept)}, owner not set: the {team} team"


# ----------------------------------------------------------------------------- currency
CURRENCY_ENV = "CXDASH_CURRENCY"
NO_CURRENCY = "currency not recorded"


def currency(recorded: str | None) -> str | None:
    """The currency of the money figures: the one the data records (``metrics.money_currency``: the
    transactions' currency column), else the company's setting ``CXDASH_CURRENCY`` (e.g. ``EUR``),
    else None (say ``NO_CURRENCY``; never guess one)."""
    if recorded:
        return recorded
    setting = os.environ.get(CURRENCY_ENV, "").strip().upper()
    return setting or None


def currency_note(recorded: str | None) -> str:
    """Where the money figures' currency comes from, as a sentence for a help text."""
    if recorded and recorded.startswith("mixed"):
        return (
            f"The transactions hold several currencies ({recorded.removeprefix('mixed: ')}); amounts are summed "
            "as recorded, without conversion."
        )
    if recorded:
        return f"Currency {recorded}, as the transactions record it."
    if currency(None):
        return f"Currency {currency(None)}: the company's setting ({CURRENCY_ENV}); the data records none."
    return f"The data records no currency ({NO_CURRENCY}); set {CURRENCY_ENV} (e.g. EUR) to name it."


def money_with_unit(value: object, recorded: str | None) -> str:
    """A headline amount (k / M) with its currency (``28.81 M USD``), ``28.81 M (currency not
    recorded)`` when neither the data nor the company setting names one, ``—`` when unknown."""
    if _missing(value):
        return UNKNOWN
    code = currency(recorded)
    return money(float(value), code) if code else f"{money(float(value))} ({NO_CURRENCY})"


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
