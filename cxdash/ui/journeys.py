"""UI helpers for the Journeys & friction page: filters kept in session state and the URL,
cached queries (keyed on the data version and the filter set), sentences and plotly figures."""

from __future__ import annotations

from dataclasses import asdict
from datetime import date

import pandas as pd
import streamlit as st

from cxdash import journeys as jr
from cxdash.config import database_url
from cxdash.governance import privacy, sources
from cxdash.governance.sources import DEPARTMENT_NAMES, department_name, responsible
from cxdash.jobs import views
from cxdash.journeys import ranking_note, significance_counts
from cxdash.ui import data, disclosure, period
from cxdash.ui.formatting import UNKNOWN, count, day, duration, money_exact, percent, plain
from cxdash.ui.formatting import money as fmt_money

# ----------------------------------------------------------------------------- filters

KEY_PREFIX = "journeys_"
MIN_SHARE = "journeys_min_share"
TOP_N = "journeys_top_n"
COLLAPSE = "journeys_collapse"
BY_DEPARTMENT = "journeys_by_department"
RENAME = "journeys_rename"
ANCHOR = "journeys_anchor"
DIRECTION = "journeys_direction"
STEPS = "journeys_steps"
REPEAT_DAYS = "journeys_repeat_days"
HOTSPOT = "journeys_hotspot"
CUSTOMER = "journeys_customer"
EDGE = "journeys_edge"
FUNNEL_STEPS = "journeys_funnel_steps"
FUNNEL_DAYS = "journeys_funnel_days"
COHORT_PAGE = "journeys_cohort_page"
EDGE_PAGE = "journeys_edge_page"

_D = views.JOURNEY_DEFAULTS  # shared with the default view stored after each load
DEFAULTS: dict[str, object] = {
    MIN_SHARE: _D["min_share"],
    TOP_N: _D["top_n"],
    COLLAPSE: _D["collapse"],
    BY_DEPARTMENT: _D["by_department"],
    RENAME: "",
    ANCHOR: _D["anchor"],
    DIRECTION: _D["direction"],
    STEPS: _D["steps"],
    REPEAT_DAYS: _D["repeat_days"],
    FUNNEL_STEPS: "",
    FUNNEL_DAYS: _D["funnel_days"],
}
VARIANT_STEPS = int(_D["variant_steps"])
_URL_KEYS = (MIN_SHARE, TOP_N, COLLAPSE, BY_DEPARTMENT, ANCHOR, DIRECTION, STEPS, REPEAT_DAYS, HOTSPOT)


def _parse(key: str, raw: str):
    default = DEFAULTS.get(key)
    if isinstance(default, bool):
        return raw.lower() in ("1", "true", "yes")
    if isinstance(default, int):
        return int(float(raw))
    if isinstance(default, float):
        return float(raw)
    return raw


def init_filters() -> None:
    """Seed the page's session-state keys: from the URL when a shared link carries them, else
    the defaults. Call before the widgets are drawn."""
    for key, default in DEFAULTS.items():
        if key in st.session_state:
            continue
        short = key.removeprefix(KEY_PREFIX)
        if short in st.query_params:
            try:
                st.session_state[key] = _parse(key, st.query_params[short])
                continue
            except ValueError:
                pass
        st.session_state[key] = default
    if HOTSPOT not in st.session_state and "hotspot" in st.query_params:
        st.session_state[HOTSPOT] = st.query_params["hotspot"]


def sync_url() -> None:
    """Write the chosen filters into the URL so the view can be shared as a link."""
    for key in _URL_KEYS:
        value = st.session_state.get(key)
        if value is None:
            continue
        st.query_params[key.removeprefix(KEY_PREFIX)] = str(value).lower() if isinstance(value, bool) else str(value)


def parse_rename(text: str) -> tuple[tuple[str, str], ...]:
    """``"contact: billing => contact\\nresolved: billing => resolved"`` -> pairs (old, new)."""
    pairs = []
    for line in (text or "").splitlines():
        if "=>" in line:
            old, new = (part.strip() for part in line.split("=>", 1))
            if old and new:
                pairs.append((old, new))
    return tuple(pairs)


MapFilters = jr.MapFilters


def map_filters() -> MapFilters:
    s = st.session_state
    return MapFilters(
        min_share=float(s[MIN_SHARE]),
        top_n=int(s[TOP_N]) or None,
        collapse=bool(s[COLLAPSE]),
        by_department=bool(s[BY_DEPARTMENT]),
        rename=parse_rename(str(s[RENAME])),
    )


# ----------------------------------------------------------------------------- cached queries

# The period every journey computation runs on: ``(first, last)`` day (both included), or None for
# all history (a store without dates). Hashable, so the cached functions are keyed on it.
Days = tuple[date, date] | None


def _key() -> tuple[str, int]:
    return database_url(), data.version()


def days() -> Days:
    """The shared period (``cxdash.ui.period``) when the data has dates, else None (all history)."""
    if data.overview_headline().as_of is None:
        return None
    return period.current()


def _p(chosen: Days) -> dict:
    return views.period_params(*chosen) if chosen else {}


@st.cache_data(show_spinner=False, max_entries=16)
def _dfg(url: str, version: int, filters: MapFilters, chosen: Days) -> pd.DataFrame:
    return data.view(url, version, "journeys.dfg", views.map_params(filters, _p(chosen)))


@st.cache_data(show_spinner=False, max_entries=16)
def _nodes(url: str, version: int, filters: MapFilters, chosen: Days) -> pd.DataFrame:
    return data.view(url, version, "journeys.nodes", views.map_params(filters, _p(chosen)))


@st.cache_data(show_spinner=False, max_entries=16)
def _activities(url: str, version: int, filters: MapFilters, chosen: Days) -> list[str]:
    return data.view(url, version, "journeys.activities", views.map_params(filters, _p(chosen)))


@st.cache_data(show_spinner=False, max_entries=16)
def _people(url: str, version: int, chosen: Days) -> dict[str, int]:
    return data.view(url, version, "journeys.people", views.people_params(_p(chosen)))


@st.cache_data(show_spinner=False, max_entries=16)
def _positions(url: str, version: int, filters: MapFilters, chosen: Days) -> pd.DataFrame:
    return data.view(url, version, "journeys.positions", views.map_params(filters, _p(chosen)))


@st.cache_data(show_spinner=False, max_entries=16)
def _paths(
    url: str, version: int, filters: MapFilters, anchor: str, direction: str, steps: int, chosen: Days
) -> pd.DataFrame:
    return data.view(url, version, "journeys.paths", views.paths_params(filters, anchor, direction, steps, _p(chosen)))


@st.cache_data(show_spinner=False, max_entries=8)
def _hotspots(url: str, version: int, repeat_days: int, churn: str | None, chosen: Days) -> pd.DataFrame:
    return data.view(url, version, "journeys.hotspots", views.hotspots_params(repeat_days, churn, _p(chosen)))


@st.cache_data(show_spinner=False, max_entries=16)
def _hotspot_customers(
    url: str, version: int, hotspot: str, repeat_days: int, churn: str | None, chosen: Days
) -> pd.DataFrame:
    return data.view(
        url, version, "journeys.hotspot_customers", views.hotspot_params(hotspot, repeat_days, churn, _p(chosen))
    )


@st.cache_data(show_spinner=False, max_entries=32)
def _customer_journey(url: str, version: int, cx_id: str) -> pd.DataFrame:
    with data.store_at(url).connect() as conn:
        return jr.customer_journey(conn, cx_id)


@st.cache_data(show_spinner=False, max_entries=16)
def _edge_customers(
    url: str, version: int, filters: MapFilters, source: str, target: str, chosen: Days
) -> pd.DataFrame:
    return data.view(url, version, "journeys.edge_customers", views.edge_params(filters, source, target, _p(chosen)))


@st.cache_data(show_spinner=False, max_entries=8)
def _variants(
    url: str,
    version: int,
    filters: MapFilters,
    max_steps: int,
    rarest: bool,
    contains: str,
    churn: str | None,
    chosen: Days,
) -> pd.DataFrame:
    return data.view(
        url,
        version,
        "journeys.variants",
        views.variants_params(filters, max_steps, rarest, contains, churn, _p(chosen)),
    )


@st.cache_data(show_spinner=False, max_entries=8)
def _funnel(url: str, version: int, steps: tuple[str, ...], days: int, by_segment: bool, chosen: Days) -> pd.DataFrame:
    return data.view(url, version, "journeys.funnel", views.funnel_params(steps, days, by_segment, _p(chosen)))


@st.cache_data(show_spinner=False, max_entries=8)
def _handoffs(url: str, version: int, chosen: Days) -> pd.DataFrame:
    return data.view(url, version, "journeys.handoffs", views.handoffs_params(_p(chosen)))


def dfg(filters: MapFilters) -> pd.DataFrame:
    return _dfg(*_key(), filters, days())


def nodes(filters: MapFilters) -> pd.DataFrame:
    return _nodes(*_key(), filters, days())


def paths(filters: MapFilters, anchor: str, direction: str, steps: int) -> pd.DataFrame:
    """Whole paths around ``anchor`` (``journeys.anchor_paths``); every activity can be the anchor,
    so top-N does not apply."""
    return _paths(*_key(), views.path_filters(filters), anchor, direction, int(steps), days())


def all_activities(filters: MapFilters) -> list[str]:
    """Every activity after rename/department grouping (not cut to top N), most frequent first.
    A plain count (no journey ordering), keyed only on the filters that change the names."""
    return _activities(*_key(), views.activity_filters(filters), days())


def journey_people() -> dict[str, int]:
    """``{"identified": n, "anonymous": m}``: who has a step in the period (``journeys.journey_people``)."""
    return _people(*_key(), days())


def default_funnel(filters: MapFilters, activities: list[str]) -> tuple[list[str], str]:
    """The funnel's default steps and a sentence saying how they were chosen."""
    steps = views.default_funnel(activities, _positions(*_key(), views.activity_filters(filters), days()))
    return steps, views.default_funnel_note(activities, steps)


def hotspot_table(repeat_days: int) -> pd.DataFrame:
    return _hotspots(*_key(), int(repeat_days), data.churn_name(), days())


@st.cache_data(show_spinner=False, max_entries=4, ttl=300)
def _source_owners(url: str, version: int) -> pd.DataFrame:
    with data.store_at(url).connect() as conn:
        return sources.source_owners(conn)


def source_owners() -> pd.DataFrame:
    """The loaded sources' ``name, kind, department, owner`` (who to call about a hotspot)."""
    return _source_owners(*_key())


def hotspot_cohort(hotspot: str, repeat_days: int) -> pd.DataFrame:
    """Every customer the hotspot counts in the period (no row limit)."""
    return _hotspot_customers(*_key(), hotspot, int(repeat_days), data.churn_name(), days())


def customer_timeline(cx_id: str) -> pd.DataFrame:
    return _customer_journey(*_key(), cx_id)


def edge_cohort(filters: MapFilters, edge: str) -> pd.DataFrame:
    source, _, target = edge.partition(" → ")
    return _edge_customers(*_key(), filters, source, target, days())


def variants(filters: MapFilters, max_steps: int, rarest: bool, contains: str) -> pd.DataFrame:
    return _variants(*_key(), filters, int(max_steps), bool(rarest), contains or "", data.churn_name(), days())


def funnel(steps: list[str], days_window: int, by_segment: bool) -> pd.DataFrame:
    return _funnel(*_key(), tuple(steps), int(days_window), bool(by_segment), days())


def handoffs() -> pd.DataFrame:
    return _handoffs(*_key(), days())


def has_journeys() -> bool:
    return not data.sources().empty


def cohort_csv(frame: pd.DataFrame) -> bytes:
    return jr.cohort_csv(frame)


@st.cache_data(show_spinner=False, max_entries=16)
def _hotspot_outreach(
    url: str, version: int, hotspot: str, repeat_days: int, churn: str | None, chosen: Days
) -> tuple[pd.DataFrame, int]:
    cohort = _hotspot_customers(url, version, hotspot, repeat_days, churn, chosen)
    return privacy.keep_consented(cohort, disclosure.consented_set(url, version))


@st.cache_data(show_spinner=False, max_entries=16)
def _edge_outreach(
    url: str, version: int, filters: MapFilters, source: str, target: str, chosen: Days
) -> tuple[pd.DataFrame, int]:
    cohort = _edge_customers(url, version, filters, source, target, chosen)
    return privacy.keep_consented(cohort, disclosure.consented_set(url, version), cx_column="case_id")


def hotspot_outreach(hotspot: str, repeat_days: int) -> tuple[pd.DataFrame, int]:
    """The hotspot's customers who consented to marketing (what the export holds) and how many
    were left out; cached with the cohort, so a rerun does not filter it again."""
    return _hotspot_outreach(*_key(), hotspot, int(repeat_days), data.churn_name(), days())


def edge_outreach(filters: MapFilters, edge: str) -> tuple[pd.DataFrame, int]:
    source, _, target = edge.partition(" → ")
    return _edge_outreach(*_key(), filters, source, target, days())


# ----------------------------------------------------------------------------- words


def _of(part, whole, rate) -> str:
    """``"12 of 340 (3.5%)"``; empty when the group is empty."""
    if whole is None or pd.isna(whole) or int(whole) == 0:
        return ""
    return f"{int(part):,} of {int(whole):,} ({float(rate):.1%})"


def p_text(p) -> str:
    if p is None or pd.isna(p):
        return ""
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def _ci_text(row) -> str:
    """A hotspot's 95% interval in words; not known when every customer of a group churned."""
    if pd.isna(row["ci_low"]):
        return "95% CI not known: every customer of one group churned"
    return f"95% CI {row['ci_low']:.2f}–{row['ci_high']:.2f}"


def _p_relation(p) -> str:
    text = p_text(p)
    return text if text.startswith("<") else f"= {text}"


def lead_sentence(spots: pd.DataFrame, edges: pd.DataFrame) -> str:
    """The page's answer: the biggest leak that holds up statistically, else what the hotspots
    cannot show and the main path."""
    significant, tested = significance_counts(spots)
    if significant:
        top = spots[spots["significant"].astype(bool)].iloc[0]

        route = f"a step of {plain(department_name(top['leaked_department']))} leaked them"
        if top["absorbed_department"] and top["absorbed_department"] != jr.NONE:
            route += f", {plain(department_name(top['absorbed_department']))} absorbed them"
        return (
            f"The biggest leak is **{plain(top['hotspot'])}**: **{int(top['customers']):,} customers** "
            f"({top['customer_share']:.1%}), churn lift **{top['lift']:.2f}** ({_ci_text(top)}, "
            f"adjusted p {_p_relation(top['p_adjusted'])}): "
            f"{_of(top['churned'], top['customers_judged'], top['churn_rate'])} churned after it vs "
            f"{_of(top['baseline_churned'], top['baseline_customers'], top['baseline_churn_rate'])} of customers "
            f"who never hit it; {route}. Revenue at stake: {money(top['revenue_at_stake'])} a year."
        )
    if tested:
        most = spots.sort_values(["customers", "hotspot"], ascending=[False, True]).iloc[0]
        return (
            f"No friction hotspot comes with significantly more churn: none of the {tested} tested has a lift above 1 "
            f"with a Benjamini–Hochberg-adjusted p below 0.05. The most common is **{plain(most['hotspot'])}** "
            f"({int(most['customers']):,} customers, {most['customer_share']:.1%})."
        )
    if len(edges):
        top = edges.iloc[0]
        why = ranking_note(spots) or "No churn data is loaded, so friction is not ranked by churn."
        return (
            f"The most travelled step is **{plain(top['source'])} → {plain(top['target'])}**: {int(top['count']):,} times by "
            f"{int(top['customers']):,} customers ({top['customer_share']:.0%}), median {duration(top['median_seconds'])}"
            f" between them. {why}"
        )
    return "No journeys yet: load extracts with customer identifiers and timestamps."


def significance_metric(spots: pd.DataFrame) -> tuple[str, str]:
    """The headline figure on significant hotspots and its help text: ``(value, help)``."""
    significant, tested = significance_counts(spots)
    if not tested:
        note = ranking_note(spots) or "No friction moments found."
        return UNKNOWN, note + " No hotspot could be tested."
    return (
        f"{significant} of {tested}",
        "BH: p-values adjusted by Benjamini–Hochberg. Hotspots with more churn among the customers who hit them "
        "than among those who never did: lift above 1 and a p-value below 0.05 (Fisher's exact test) after the "
        f"Benjamini–Hochberg adjustment across the {tested} hotspots tested, which keeps chance findings out when "
        "many hotspots are ranked at once.",
    )


def hotspot_caption(spots: pd.DataFrame) -> str:
    """What the hotspot chart and table show, in words (the test, the adjustment, what is not drawn)."""
    _, tested = significance_counts(spots)
    text = (
        "Ranked by excess churned customers: customers judged × (churn after the moment - churn of customers who "
        "never hit it). Lift = churn rate of those who hit it ÷ churn rate of those who never did (95% CI); "
        f"p from Fisher's exact test (two-sided), adjusted by Benjamini–Hochberg across the {tested} hotspots "
        "tested. Red: significantly more churn (adjusted p < 0.05, lift > 1); green: significantly less; grey: "
        "not significant."
    )
    missing = spots[spots["lift"].isna()]
    if len(missing):
        text += (
            " No lift, so not drawn: "
            + "; ".join(f"{plain(h)} ({plain(w)})" for h, w in zip(missing["hotspot"], missing["why"], strict=True))
            + "."
        )
    return text


def money(value: float) -> str:
    return fmt_money(float(value))


def _verdict(significant, tested, p_adjusted, lift) -> str:
    if significant:
        return "yes: more churn"
    if not tested:
        return "not tested"
    if p_adjusted < 0.05 and lift < 1:  # friction that comes with less churn is not a leak, but it is a finding
        return "no: less churn"
    return "no"


def _lift_text(lift, lo, hi, why=None) -> str:
    if pd.isna(lift):
        return f"{UNKNOWN} ({why})" if isinstance(why, str) and why else UNKNOWN
    if pd.isna(lo):
        return f"{lift:.2f} (CI not known)"
    return f"{lift:.2f} ({lo:.2f}–{hi:.2f})"


def who_to_call(departments, owners: pd.DataFrame) -> list[str]:
    """``cxdash.governance.sources.responsible`` for each department code."""
    return [responsible(str(d), owners)[0] for d in departments]


def owners_note(spots: pd.DataFrame, owners: pd.DataFrame) -> str:
    """What "who to call" is, for the caption under the hotspots (markdown; department codes escaped)."""
    missing = sorted({str(d) for d in spots["leaked_department"] if not responsible(str(d), owners)[1]})
    text = (
        "Who to call: the owner recorded on the loaded sources of the department whose step leaked the customer "
        "(set on Data health, or with python -m cxdash sources set)."
    )
    if missing:
        text += (
            " Owner not recorded for "
            + ", ".join(plain(department_name(d)) for d in missing)  # department codes come from the files
            + ": no loaded source belongs to that department (its rows name the department themselves, such as "
            "tickets routed to a team), so nobody can be named; record an owner for it to fill this in."
        )
    return text


def hotspot_display(spots: pd.DataFrame, owners: pd.DataFrame | None = None) -> pd.DataFrame:
    """The hotspot table as shown (every cell text, through ``cxdash.ui.formatting``), narrow enough
    for the page at 1440 px: customers with their share, churn after it, the lift with its interval
    (or why there is none), the verdict and who to call. Without any churn data
    the churn columns are left out (the page says why). ``owners``
    (``cxdash.governance.sources.source_owners``) names who to call for the department that leaked the
    customers (``cxdash.governance.sources.responsible``); the comparison group, p, revenue at stake and routes
    are in ``hotspot_detail``."""
    owners = owners if owners is not None else pd.DataFrame(columns=["name", "kind", "department", "owner"])
    churn_known = bool(spots["churn_definition"].notna().any()) if len(spots) else False
    out = {
        "hotspot": spots["hotspot"].astype(str),
        "customers": [
            f"{count(n)} ({percent(v)})" for n, v in zip(spots["customers"], spots["customer_share"], strict=True)
        ],
    }
    if churn_known:
        out.update(
            {
                "churned after it": [
                    _of(a, n, r) or UNKNOWN
                    for a, n, r in zip(spots["churned"], spots["customers_judged"], spots["churn_rate"], strict=True)
                ],
                "lift (95% CI)": [
                    _lift_text(lift, lo, hi, why)
                    for lift, lo, hi, why in zip(
                        spots["lift"], spots["ci_low"], spots["ci_high"], spots["why"], strict=True
                    )
                ],
                "significant": [
                    _verdict(sig, tested, p, lift)
                    for sig, tested, p, lift in zip(
                        spots["significant"], spots["tested"], spots["p_adjusted"], spots["lift"], strict=True
                    )
                ],
            }
        )
    out["who to call"] = who_to_call(spots["leaked_department"], owners)
    return pd.DataFrame(out)


def filled(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` (after ``SmallGroups.blank``) with every missing cell shown as "—" and the
    suppression column folded into the customers cell ("fewer than 10 customers"), so no table
    shows None or nan and a suppressed row costs no extra column."""
    out = frame.astype(object).where(frame.notna(), UNKNOWN)
    if "suppression" in out:
        why = frame["suppression"].fillna("").astype(str)
        if "customers" in out:
            hidden = why.ne("")
            out.loc[hidden, "customers"] = (
                why[hidden].str.replace("suppressed: ", "", regex=False).str.replace(" customers", "", regex=False)
            )
            out = out.drop(columns="suppression")
        else:
            out["suppression"] = why
    return out


def hotspot_detail(spots: pd.DataFrame) -> pd.DataFrame:
    """The hotspots' second table: the comparison group, the adjusted p, the ranking key, and where
    customers were leaked and went next. Every cell text."""
    out: dict[str, object] = {"hotspot": spots["hotspot"].astype(str)}
    if len(spots) and spots["churn_definition"].notna().any():
        out.update(
            {
                "never hit it: churned": [
                    _of(c, n, r) or UNKNOWN
                    for c, n, r in zip(
                        spots["baseline_churned"],
                        spots["baseline_customers"],
                        spots["baseline_churn_rate"],
                        strict=True,
                    )
                ],
                "p (BH-adjusted)": [p_text(p) or UNKNOWN for p in spots["p_adjusted"]],
                "excess churned": [UNKNOWN if pd.isna(v) else f"{v:,.0f}" for v in spots["excess_churned"]],
                "revenue at stake": [money_exact(v) for v in spots["revenue_at_stake"]],
            }
        )
    out.update(
        {
            "customers": [count(n) for n in spots["customers"]],
            "moments": [count(n) for n in spots["moments"]],
            "leaked by": [department_name(d) for d in spots["leaked_department"]],
            "absorbed by": [
                "nobody (no contact followed)" if d == jr.NONE else department_name(d)
                for d in spots["absorbed_department"]
            ],
        }
    )
    return pd.DataFrame(out)


def hotspot_definitions(spots: pd.DataFrame) -> str:
    """What each hotspot is, one markdown bullet each (values escaped)."""
    return "\n".join(
        f"- **{plain(h)}**: {plain(d) if isinstance(d, str) and d else UNKNOWN}"
        for h, d in zip(spots["hotspot"], spots["description"], strict=True)
    )


def people_metrics(people: dict[str, int], customers_total: int | None, has_crm: bool) -> list[tuple[str, str, str]]:
    """The headcount metrics as ``(label, value, help)``: identified customers (comparable with
    the CRM's ``customers_total``) and anonymous visitors (cases with steps but no customer record)
    apart; without a customer (CRM) source, one "cases" figure that says why it cannot be split."""
    if not has_crm:
        return [
            (
                "Cases with journeys",
                count(people["identified"] + people["anonymous"]),
                "Cases with at least one step in the period. No customer records are loaded, so cases cannot be "
                "told apart into customers and anonymous visitors.",
            )
        ]
    return [
        (
            "Identified customers",
            count(people["identified"]),
            "Customers with a customer record and at least one step in the period"
            + (f", of the {count(customers_total, 'customer')} in total." if customers_total else "."),
        ),
        (
            "Anonymous visitors",
            count(people["anonymous"]),
            "Cases with steps in the period but no customer record (such as web visitors never linked to a "
            "customer): they have journeys but are not customers, so they are counted apart.",
        ),
    ]


def paths_sentence(paths_frame: pd.DataFrame, anchor: str, direction: str, hidden_small: int = 0) -> str:
    """What the paths diagram draws, in words (markdown, names escaped): how many customers reached
    the step, how many paths are drawn, how many customers the "(other paths)" bucket pools and
    how many had no step before (after) it."""
    total = int(paths_frame["customers"].sum()) + hidden_small
    if not total:
        return f"No customer reached **{plain(anchor)}** in the period."
    real = paths_frame[paths_frame["path"] != jr.OTHER_PATHS]
    alone = int(real.loc[real["steps"] == 1, "customers"].sum())
    drawn = real[real["steps"] > 1]
    other = paths_frame[paths_frame["path"] == jr.OTHER_PATHS]
    side = "before" if direction == "before" else "after"
    text = (
        f"{count(total, 'customer')} reached **{plain(anchor)}** in the period (their first time). "
        f"Drawn: the {count(len(drawn), 'busiest path')} {side} it, {count(int(drawn['customers'].sum()), 'customer')}"
        f" ({percent(drawn['customers'].sum() / total)}); every ribbon runs whole to the step."
    )
    if len(other):
        text += (
            f" **(other paths)** pools {count(int(other['customers'].iloc[0]), 'customer')} on "
            f"{count(int(other['paths'].iloc[0]), 'rarer path')}."
        )
    if alone:
        text += f" {count(alone, 'customer')} had no step {side} it in the period, so no ribbon."
    if hidden_small:
        text += f" {count(hidden_small, 'customer')} on paths too small to show are left out."
    return text


def path_links(paths_frame: pd.DataFrame, anchor: str, direction: str) -> pd.DataFrame:
    """The Sankey's links for the paths drawn (``journeys.path_links``)."""
    return jr.path_links(paths_frame, anchor, direction)


def pool_small_paths(paths_frame: pd.DataFrame, k: int | None) -> tuple[pd.DataFrame, int]:
    """Paths of fewer than ``k`` customers merged into the "(other paths)" row (a path so rare
    could single someone out); the pooled row itself dropped when it stays under ``k``. Out: the
    frame to draw and how many customers were dropped."""
    if not k or paths_frame.empty:
        return paths_frame, 0
    small = (paths_frame["customers"] < k) & (paths_frame["path"] != jr.OTHER_PATHS)
    other = paths_frame["path"] == jr.OTHER_PATHS
    pooled_customers = int(paths_frame.loc[small | other, "customers"].sum())
    pooled_paths = int(paths_frame.loc[small | other, "paths"].sum())
    kept = paths_frame[~small & ~other]
    if pooled_customers == 0:
        return kept.reset_index(drop=True), 0
    if pooled_customers < k:
        return kept.reset_index(drop=True), pooled_customers
    row = pd.DataFrame(
        {"path": [jr.OTHER_PATHS], "steps": [pd.NA], "customers": [pooled_customers], "paths": [pooled_paths]}
    )
    out = pd.concat([kept, row], ignore_index=True)
    out["steps"] = out["steps"].astype("Int64")
    return out, 0


def handoff_table(handoffs_frame: pd.DataFrame, k: int | None = None) -> pd.DataFrame:
    """Handoffs as a department-by-department table for the page: rows the department handing the
    customer over, columns the one receiving them (named without their code, to fit), each cell
    ``"1,234 · 2.3 days"``
    (customers handed over, median wait until the receiving department's first step), "—" where
    nobody was handed over, and "fewer than k" for a cell of 1 to k-1 customers."""
    customers = jr.handoff_matrix(handoffs_frame, "customers")
    median = jr.handoff_matrix(handoffs_frame, "median_seconds")
    cells = {}
    for to in customers.columns:
        column = []
        for frm in customers.index:
            n = customers.loc[frm, to]
            if pd.isna(n):
                column.append(UNKNOWN)
            elif k and int(n) < k:
                column.append(f"fewer than {k}")
            else:
                column.append(f"{count(n)} · {duration(median.loc[frm, to])}")
        cells[f"to {_short_department(to)}"] = column
    table = pd.DataFrame(cells)
    table.insert(0, "from", [department_name(d) for d in customers.index])
    return table


def _short_department(code: str) -> str:
    return DEPARTMENT_NAMES.get(str(code).lower(), str(code))


def cohort_display(cohort: pd.DataFrame) -> pd.DataFrame:
    """A hotspot's customers as shown: every cell text, human column names."""
    return pd.DataFrame(
        {
            "customer": cohort["cx_id"].astype(str),
            "friction moments": [count(n) for n in cohort["moments"]],
            "first": [day(t) for t in cohort["first_at"]],
            "last": [day(t) for t in cohort["last_at"]],
            "leaked by": [department_name(d) for d in cohort["leaked_department"]],
            "churned": ["yes" if bool(c) else "no" for c in cohort["churned"]],
            "revenue (12 months)": [money_exact(v) for v in cohort["revenue_12m"]],
            "email": cohort["email"].fillna(UNKNOWN).astype(str),
            "phone": cohort["phone"].fillna(UNKNOWN).astype(str),
        }
    )


def export_sentence(counted: int, exported: int, left_out: int, *, masked: bool = False) -> str:
    """What the export holds against the count shown: the rows in the file, exactly who was left
    out and why, and (``masked``) that emails and phones leave masked."""
    text = f"The export holds {count(exported, 'customer')} of the {count(counted, 'customer')} counted here"
    if left_out:
        text += (
            f": {count(left_out, 'customer')} left out because they have not given marketing consent "
            "(an exported cohort is for outreach; only customers who opted in may be contacted)"
        )
    return text + (". Emails and phones in it are masked." if masked else ".")


def timeline_display(frame: pd.DataFrame) -> pd.DataFrame:
    """One customer's timeline as shown: when (day and time), step, department spelled out."""
    return pd.DataFrame(
        {
            "when": [UNKNOWN if pd.isna(t) else f"{day(t)} {pd.Timestamp(t):%H:%M}" for t in frame["ts"]],
            "step": frame["activity"].astype(str),
            "department": [department_name(d) for d in frame["department"]],
            "channel": frame["channel"].fillna(UNKNOWN).astype(str),
            "value": [UNKNOWN if pd.isna(v) else f"{v:,.2f}" for v in frame["value"]],
        }
    )


def edge_display(frame: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer": frame["case_id"].astype(str),
            "times": [count(n) for n in frame["times"]],
            "first time": [day(t) for t in frame["first_at"]],
            "median wait": [duration(s) for s in frame["median_seconds"]],
        }
    )


def variants_display(frame: pd.DataFrame) -> pd.DataFrame:
    """Variants as shown (``SmallGroups.pooled`` output): every cell text, the pooled row's
    ``suppression`` note kept."""
    extra = {"suppression": frame["suppression"].fillna("").astype(str)} if "suppression" in frame else {}
    return pd.DataFrame(
        {
            "journey": frame["variant"].astype(str),
            **extra,
            "steps": [count(n) for n in frame["steps"]],
            "customers": [count(n) for n in frame["customers"]],
            "share": [percent(v) for v in frame["share"]],
            "churn rate": [percent(v) for v in frame["churn_rate"]],
            "median first to last step": [duration(s) for s in frame["median_seconds"]],
        }
    )


def edge_labels(edges: pd.DataFrame, limit: int = 60) -> list[str]:
    return [f"{s} → {t}" for s, t in views.edge_labels(edges, limit)]


def filters_as_dict(filters: MapFilters) -> dict:
    return asdict(filters)


def funnel_display(frame: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "segment": frame["segment"],
            "step": frame["step"],
            "activity": frame["activity"],
            "customers": [count(n) for n in frame["customers"]],
            "conversion": [percent(v) for v in frame["conversion"]],
            "from previous step": [percent(v) for v in frame["step_conversion"]],
            "dropped": [count(n) for n in frame["dropped"]],
            "median time to convert": [duration(s) for s in frame["median_seconds_to_convert"]],
        }
    )
