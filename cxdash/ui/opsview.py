"""Words, tables and charts for the data-health page (from small, aggregated frames)."""

from __future__ import annotations

import math

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from cxdash.governance.health import LATENCY_WINDOW_DAYS
from cxdash.governance.sources import DEPARTMENT_NAMES, department_code
from cxdash.ui.charts import _colour_map
from cxdash.ui.figures import memoised_figure
from cxdash.ui.formatting import (
    UNKNOWN,
    count,
    day,
    department_and_owner,
    department_words,
    duration,
    percent,
    plain,
)

FRESHNESS_WARN_HOURS = 48

GOVERNANCE_COLUMNS = {
    "rows passing": st.column_config.ProgressColumn(
        "valid",
        format="percent",
        min_value=0,
        max_value=1,
        width="small",
        help="Share of the rows read in the source's last load that passed validation.",
    ),
    "linked": st.column_config.ProgressColumn(
        "linked",
        format="percent",
        min_value=0,
        max_value=1,
        width="small",
        help="Share of the source's rows linked to a CRM customer.",
    ),
    "rows": st.column_config.NumberColumn("rows", format="localized", width=70),
    "department and owner": st.column_config.TextColumn(
        "department and owner",
        width=215,
        help="The department the source belongs to (spelled out, with the code the data uses) and the team or "
        "person to call about it; with no owner named, the department's team. Change both at the foot of the page.",
    ),
    "newest record": st.column_config.TextColumn(
        "newest record",
        width=110,
        help="How old the source's newest record is (when it happened, not when it was loaded).",
    ),
    "loaded": st.column_config.TextColumn("loaded", width=110, help="How long ago the source's last load finished."),
    "activation": st.column_config.TextColumn(
        "activation",
        help="Time from an event to its being on the customer's card (its load finished), for the newest "
        "record of the newest load. — : no dated record.",
    ),
    "activation 95%": st.column_config.TextColumn(
        "95% within",
        help="Over the records that were new in their load (happened after the previous load, within "
        f"{LATENCY_WINDOW_DAYS} days before it): 95% reached the card within this time; median in brackets. "
        "— : no such record yet (one backfill of older records so far).",
    ),
}

# Taller than 4rem: Streamlit wraps a cell's text only then, so "department and owner" shows whole on
# up to three lines instead of being cut at the column's edge (the widths above fit 1440 px).
GOVERNANCE_ROW_HEIGHT = 74


def _missing(x) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x)) or x is pd.NA or x is pd.NaT


def hours(x) -> str:
    """Hours as a person reads a span of time (``45 min``, ``5.2 h``, ``32.4 days``), ``—`` if unknown."""
    return UNKNOWN if _missing(x) else duration(float(x) * 3600)


def weighted_quality(gov: pd.DataFrame) -> float | None:
    q = gov.dropna(subset=["quality"])
    return float((q["quality"] * q["rows"]).sum() / q["rows"].sum()) if q["rows"].sum() else None


def weighted_stitch(gov: pd.DataFrame) -> float | None:
    q = gov.dropna(subset=["stitched_share"])
    return float((q["stitched_share"] * q["rows"]).sum() / q["rows"].sum()) if q["rows"].sum() else None


def record_age(age_hours) -> str:
    """How old a source's newest record is: ``3.0 days old``, ``45 min old``; ``no dated record``
    when none has a date, ``dated 2.0 h ahead`` for a record dated after now (a clock or time zone
    off in the file)."""
    if _missing(age_hours):
        return "no dated record"
    if float(age_hours) < 0:
        return f"dated {hours(-float(age_hours))} ahead"
    return f"{hours(age_hours)} old"


def loaded_ago(loaded_hours) -> str:
    """How long ago a source's last load finished: ``loaded 71 s ago``, ``loaded 2.0 h ago``;
    ``never loaded`` when no load finished."""
    if _missing(loaded_hours):
        return "never loaded"
    return f"loaded {hours(max(float(loaded_hours), 0.0))} ago"


def slowest_activation(gov: pd.DataFrame) -> tuple[str, str]:
    """The slowest source's activation latency as ``(value, which source and reading)``; ``—`` and the
    reason when no source has a dated record."""
    frame = gov.dropna(subset=["latency_newest_hours"])
    if frame.empty:
        return UNKNOWN, "No source has a dated record, so no activation latency is known."
    row = frame.loc[frame["latency_newest_hours"].astype(float).idxmax()]
    return hours(row["latency_newest_hours"]), (
        f"{row['name']}: its newest record reached the customer's card this long after it happened "
        "(the time from the event to the end of the load that brought it)."
    )


def problems(gov: pd.DataFrame) -> list[str]:
    out = []
    stale = gov[gov["freshness_hours"].astype(float) > FRESHNESS_WARN_HOURS]
    if len(stale):
        ages = stale["freshness_hours"].astype(float)
        span = hours(ages.min()) if len(stale) == 1 else f"{hours(ages.min())} to {hours(ages.max())}"
        names = ", ".join(f"**{plain(n)}**" for n in stale["name"])
        if len(stale) == 1:
            out.append(f"the newest record of {names} is {span} old")
        else:
            out.append(f"the newest records of {names} are {span} old")
    for r in gov.itertuples():
        if not _missing(r.quality) and r.quality < 0.99:
            out.append(f"**{plain(r.name)}** rejected {percent(1 - r.quality)} of its last load")
        if r.latency_ok is False:
            out.append(
                f"95% of **{plain(r.name)}** records took up to {hours(r.latency_p95_hours)} to reach the card, "
                f"over its target of {hours(r.latency_target_hours)}"
            )
        if not _missing(r.stitched_share) and r.stitched_share < 0.8:
            out.append(
                f"only {percent(r.stitched_share, 0)} of **{plain(r.name)}** rows are linked to a known customer"
            )
    return out


def verdict(gov: pd.DataFrame) -> str:
    found = problems(gov)
    if not found:
        return f"All {count(len(gov), 'source')} are clean, fresh and linked to customers."
    head = f"{count(len(found), 'thing')} {'needs' if len(found) == 1 else 'need'} attention: "
    return head + "; ".join(found[:4]) + ("; and more below." if len(found) > 4 else ".")


def _latency_spread(p50, p95) -> str:
    if _missing(p95):
        return UNKNOWN
    return f"{hours(p95)} (median {hours(p50)})"


def governance_table(gov: pd.DataFrame) -> pd.DataFrame:
    """One row per source, in words and units (the keys of ``GOVERNANCE_COLUMNS`` configure them):
    ``source, department and owner`` (``department_and_owner``), ``rows``, ``rows passing``, ``linked``
    (shares), ``newest record`` (``record_age``), ``loaded`` (``loaded_ago``), ``activation``,
    ``activation 95%``."""
    owners = gov["owner"] if "owner" in gov else pd.Series(None, index=gov.index, dtype=object)
    return pd.DataFrame(
        {
            "source": gov["name"],
            "department and owner": [
                department_and_owner(d, o) for d, o in zip(gov["department"], owners, strict=True)
            ],
            "rows": gov["rows"],
            "rows passing": gov["quality"],
            "linked": gov["stitched_share"],
            "newest record": gov["freshness_hours"].map(record_age),
            "loaded": gov["loaded_hours"].map(loaded_ago),
            "activation": gov["latency_newest_hours"].map(hours),
            "activation 95%": [
                _latency_spread(a, b) for a, b in zip(gov["latency_p50_hours"], gov["latency_p95_hours"], strict=True)
            ],
        }
    )


def upkeep_table(gov: pd.DataFrame) -> pd.DataFrame:
    """Per source: its latency target, repeated keys, loads and saved mapping, in words."""
    versions = gov["mapping_version"] if "mapping_version" in gov else pd.Series([None] * len(gov), index=gov.index)
    return pd.DataFrame(
        {
            "source": gov["name"],
            "kind": gov["kind"],
            "target": gov["latency_target_hours"].map(lambda h: "none set" if _missing(h) else hours(h)),
            "duplicate keys": gov["duplicate_keys"].map(count),
            "loads": gov["loads"].map(count),
            "last load": gov["last_load_at"].map(day),
            "mapping": versions.map(lambda v: "not saved" if _missing(v) else f"version {int(v)}"),
        }
    )


@memoised_figure
def coverage_chart(cov: pd.DataFrame) -> go.Figure:
    frame = cov.assign(share=cov["share"].fillna(0))
    fig = px.bar(
        frame,
        x="share",
        y="measure",
        orientation="h",
        text="share",
        hover_data=["needs", "customers_covered"],
        range_x=[0, 1.08],
        labels={"share": "share of customers", "measure": "", "customers_covered": "customers covered"},
    )
    fig.update_traces(texttemplate="%{text:.0%}", textposition="outside", marker_color="#0f766e", cliponaxis=False)
    fig.update_layout(margin=dict(l=10, r=30, t=10, b=10), height=300, xaxis_tickformat=".0%")
    return fig


@memoised_figure
def stitch_chart(stitch: pd.DataFrame) -> go.Figure:
    frame = stitch.groupby(["source", "status"], as_index=False)["rows"].sum()
    frame["share"] = frame["rows"] / frame.groupby("source")["rows"].transform("sum")
    colours = {"crm customer": "#0f766e", "unmatched": "#f59e0b", "hub": "#dc2626", "anonymous": "#94a3b8"}
    fig = px.bar(
        frame,
        x="share",
        y="source",
        color="status",
        orientation="h",
        color_discrete_map=colours,
        hover_data=["rows"],
        labels={"share": "share of rows", "source": ""},
    )
    fig.update_layout(
        margin=dict(l=10, r=10, t=10, b=10),
        height=300,
        xaxis_tickformat=".0%",
        legend=dict(orientation="h", yanchor="bottom", y=1.02, x=0, title_text=""),
    )
    return fig


@memoised_figure
def null_chart(nulls: pd.DataFrame) -> go.Figure:
    fig = px.bar(
        nulls,
        x="null_share",
        y="field",
        color="source",
        orientation="h",
        barmode="group",
        color_discrete_map=_colour_map(nulls["source"]),
        labels={"null_share": "share missing", "field": ""},
    )
    fig.update_layout(margin=dict(l=10, r=10, t=10, b=10), height=360, xaxis_tickformat=".0%")
    return fig


# ----------------------------------------------------------------------------- department and owner form
# The department choice that reveals a box for a department not in the list. Blank: never a known
# department's code (known_departments leaves blanks out), so it cannot stand for one.
ANOTHER_DEPARTMENT = ""
ANOTHER_DEPARTMENT_WORDS = "Another department…"
OWNER_SAVED_KEY = "health_owner_saved"  # what the last save changed, said once after the rerun
OWNER_FORM_KEY = "health_owner_form"  # how many saves this session made: part of the form's widget keys


def owner_form_keys(source: str, saves: int) -> tuple[str, str, str]:
    """The keys of the form's department choice, new department box and owner box for ``source``.
    Per source: a widget keeps its value across reruns, so one key for every source would carry the
    first source's department over to the next one chosen. Per save (``saves``, ``OWNER_FORM_KEY``):
    after a save, new widgets show what is stored; the browser would keep showing what was typed in
    the old ones (emptying their session state does not reach it)."""
    return tuple(f"health_owner_{part}_{source}_{saves}" for part in ("department", "new_department", "owner"))


def department_choices(known: list[str], current: object) -> tuple[list[str], int | None]:
    """The department selectbox's options and the one to select.

    In: ``known``, the company's department codes (``ops.departments``), and the source's current
    department. Out: ``(options, index)``: the known codes, the current one too when the list was read
    before it was set (a source changed from the command line), then ``ANOTHER_DEPARTMENT``; ``index``
    that of the current department, None when the source has none."""
    options = list(known)
    now = None if current is None or current != current or not str(current).strip() else str(current)
    if now is not None and now not in options:
        options.append(now)
    options.append(ANOTHER_DEPARTMENT)
    return options, None if now is None else options.index(now)


def department_choice_words(code: str) -> str:
    """A department option as the selectbox shows it: ``"Customer support (support)"``, or
    ``ANOTHER_DEPARTMENT_WORDS`` for the way to a new one."""
    return ANOTHER_DEPARTMENT_WORDS if code == ANOTHER_DEPARTMENT else department_words(code)


def department_to_save(choice: str | None, typed: str) -> str | None:
    """The department code to store: the chosen known one, the typed one as a code
    (``cxdash.governance.sources.department_code``: ``" Customer Care"`` -> ``"customer care"``) when
    ``ANOTHER_DEPARTMENT`` is chosen, None (keep the stored one) when nothing is chosen.
    Raises ``ValueError`` when another department is chosen but none typed."""
    if choice is None:
        return None
    return department_code(typed) if choice == ANOTHER_DEPARTMENT else choice


def owner_box(department: object, owner: object) -> tuple[str, str]:
    """The owner box's text and its grey placeholder, ``(value, placeholder)``.

    An owner a person named is shown as typed. No owner, or a department's code as owner (what a
    load records when nobody named one), leaves the box empty and says in the placeholder who
    answers now, in words (``"now the Customer support team (support): type a team or a person"``):
    the box never shows a bare code, and saving it blank keeps the owner as it is."""
    dept = "" if department is None or department != department else str(department).strip()
    who = "" if owner is None or owner != owner else str(owner).strip()
    if not who:
        team = DEPARTMENT_NAMES.get(dept.lower(), dept)
        return "", f"not set: the {team} team answers for it; type a team or a person" if dept else "not set"
    code = who.lower()
    if code in DEPARTMENT_NAMES or code == dept.lower():
        team = DEPARTMENT_NAMES.get(code, who)
        return "", f"now the {team} team ({who}): type a team or a person to name one"
    return who, ""


def owner_saved_words(source: str, after: dict) -> str:
    """The sentence after a save: ``"Saved: helpdesk now belongs to Customer support (support), owner
    Maya."`` (``after``: what ``set_source_owner`` returns). Plain text: it quotes a source and an owner
    name. When the department changed (``after["moved"]``), it says where that shows."""
    saved = f"Saved: {source} now belongs to {department_and_owner(after['department'], after['owner'])}."
    if after.get("moved"):
        saved += (
            " Journeys, handoffs, hotspots and conflicts show its rows under that department from now on"
            " (their default views are being prepared again)."
        )
    return saved


def owner_not_saved_words(source: str, department: str | None, reason: str) -> str:
    """The sentence when a save is refused, naming the department in words when one was chosen:
    ``"Not saved: helpdesk stays as it was, not moved to Billing (billing). <Reason>."`` Plain text."""
    moved = f", not moved to {department_words(department)}" if department else ""
    reason = reason.strip().rstrip(".")
    return f"Not saved: {source} stays as it was{moved}. {reason[:1].upper()}{reason[1:]}."
