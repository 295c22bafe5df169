"""The executive page's state, cached computations and presentation helpers.

Every computation is cached on the store URL, the data version and the chosen filters, so a
rerun with the same view is served from memory and a new load shows up on the next rerun.
Filters live in ``st.session_state`` under ``executive_*`` keys and are mirrored into
``st.query_params`` so a view can be shared as a link.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

import pandas as pd
import streamlit as st

from cxdash import metrics
from cxdash.config import database_url
from cxdash.exporting import safe_csv
from cxdash.governance import privacy
from cxdash.jobs import summaries, views
from cxdash.metrics.churn import Definition
from cxdash.ui import data, period
from cxdash.ui import formatting as fmt
from cxdash.ui.formatting import plain

# Session-state keys (page-prefixed) and the query parameter each one is shared as.
KEY_FROM = period.FROM  # the period is shared with Journeys (cxdash/ui/period.py)
KEY_TO = period.TO
KEY_REPEAT_DAYS = "executive_repeat_days"
KEY_HORIZON = "executive_clv_horizon"
FILTER_KEYS = {name: f"executive_{name}" for name in ("segment", "region", "plan", "channel", "campaign", "department")}
QUERY_NAMES = {KEY_FROM: "from", KEY_TO: "to", KEY_REPEAT_DAYS: "repeat_days", KEY_HORIZON: "horizon"} | {
    key: name for name, key in FILTER_KEYS.items()
}
HORIZONS = (6, 12, 24, 36)


@dataclass(frozen=True)
class View:
    """What the executive is looking at: a period, filters and the two adjustable parameters."""

    first: date
    last: date
    filters: metrics.Filters
    repeat_days: int
    horizon_months: int
    churn: str | None = None  # the churn definition in force (its name, cxdash.metrics.churn)

    @property
    def period(self) -> metrics.Period:
        return metrics.Period.from_dates(self.first, self.last)


# ---------------------------------------------------------------------------------- cached data


@st.cache_data(show_spinner=False, max_entries=4)
def _options(url: str, version: int) -> dict[str, list[str]]:
    with data.store_at(url).connect() as conn:
        return summaries.get(conn, "filter_options", version)


@st.cache_data(show_spinner=False, max_entries=16)
def _clv(url: str, version: int, end: datetime, horizon: int) -> metrics.ClvForecast:
    with data.store_at(url).connect() as conn:
        return metrics.predicted_clv(conn, end, horizon_months=horizon)


@st.cache_data(show_spinner=False, max_entries=32)
def _report(url: str, version: int, view: View) -> metrics.KpiReport:
    params = views.report_params(view.first, view.last, view.filters, view.repeat_days, view.horizon_months, view.churn)
    report = data.stored(url, version, "executive.report", params)
    if report is summaries.MISSING and as_of() is None:  # no dates at all: the snapshot report, not a period
        with data.store_at(url).connect() as conn:
            report = metrics.kpi_report(
                conn,
                None,
                view.filters,
                repeat_days=view.repeat_days,
                with_clv=False,
                churn=Definition.parse(view.churn) if view.churn else None,
            )
    elif report is summaries.MISSING:
        period = view.period
        clv = _clv(url, version, period.end, view.horizon_months)
        clv_prev = _clv(url, version, period.previous.end, view.horizon_months)
        with data.store_at(url).connect() as conn:
            report = metrics.kpi_report(
                conn,
                period,
                view.filters,
                repeat_days=view.repeat_days,
                clv=clv,
                clv_previous=clv_prev,
                churn=Definition.parse(view.churn) if view.churn else None,
            )
    return metrics.attach_activation(report, data.store_at(url))


@st.cache_data(show_spinner=False, max_entries=16)
def _trends(
    url: str, version: int, filters: metrics.Filters, repeat_days: int, months: int, churn: str | None
) -> pd.DataFrame:
    return data.view(url, version, "executive.trends", views.trends_params(filters, repeat_days, months, churn))


@st.cache_data(show_spinner=False, max_entries=16)
def _cohorts(url: str, version: int, filters: metrics.Filters, churn: str | None) -> pd.DataFrame:
    return data.view(url, version, "executive.cohorts", views.cohorts_params(filters, churn))


@st.cache_data(show_spinner=False, max_entries=16)
def _conflicts(url: str, version: int, filters: metrics.Filters, repeat_days: int, churn: str | None) -> pd.DataFrame:
    return data.view(url, version, "executive.conflicts", views.conflicts_params(filters, repeat_days, churn))


@st.cache_data(show_spinner=False, max_entries=4)
def _holdout(url: str, version: int) -> dict:
    with data.store_at(url).connect() as conn:
        return metrics.holdout_check(conn)


@st.cache_data(show_spinner=False, max_entries=32)
def _differencing(url: str, version: int, filters: metrics.Filters, k: int) -> privacy.DifferencingCheck:
    with data.store_at(url).connect() as conn:
        return privacy.differencing_check(conn, filters, k)


def differencing(view: View, k: int | None) -> privacy.DifferencingCheck | None:
    """``privacy.differencing_check`` for the view's filters, or None for a role that sees individuals."""
    if k is None:
        return None
    return _differencing(database_url(), data.version(), view.filters, k)


def as_of() -> datetime | None:
    return data.overview_headline().as_of  # the headline stored after the load carries it


def options() -> dict[str, list[str]]:
    return _options(database_url(), data.version())


def report(view: View) -> metrics.KpiReport:
    return _report(database_url(), data.version(), view)


def trends(view: View, months: int = 12) -> pd.DataFrame:
    return _trends(database_url(), data.version(), view.filters, view.repeat_days, months, view.churn)


def cohorts(view: View) -> pd.DataFrame:
    return _cohorts(database_url(), data.version(), view.filters, view.churn)


def conflicts(view: View) -> pd.DataFrame:
    return _conflicts(database_url(), data.version(), view.filters, view.repeat_days, view.churn)


def holdout() -> dict:
    return _holdout(database_url(), data.version())


# ---------------------------------------------------------------------------------- state and sharing


def init_state(now: datetime | None) -> None:
    """Fill the page's session state once per session: from the link's query parameters, else defaults."""
    if st.session_state.get("executive_initialised"):
        return
    qp = st.query_params
    period.init(now)
    try:
        st.session_state[KEY_REPEAT_DAYS] = min(max(int(qp.get("repeat_days", metrics.DEFAULT_REPEAT_DAYS)), 1), 60)
    except ValueError:
        st.session_state[KEY_REPEAT_DAYS] = metrics.DEFAULT_REPEAT_DAYS
    try:
        horizon = int(qp.get("horizon", metrics.DEFAULT_CLV_HORIZON_MONTHS))
    except ValueError:
        horizon = metrics.DEFAULT_CLV_HORIZON_MONTHS
    st.session_state[KEY_HORIZON] = horizon if horizon in HORIZONS else metrics.DEFAULT_CLV_HORIZON_MONTHS
    known = options()
    for name, key in FILTER_KEYS.items():
        chosen = qp.get_all(name)
        st.session_state[key] = [v for v in chosen if v in known.get(name, [])]
    st.session_state["executive_initialised"] = True


def current_view() -> View:
    first, last = st.session_state[KEY_FROM], st.session_state[KEY_TO]
    if last < first:
        first, last = last, first
    filters = metrics.Filters(**{name: tuple(st.session_state.get(key) or ()) for name, key in FILTER_KEYS.items()})
    return View(
        first,
        last,
        filters,
        int(st.session_state[KEY_REPEAT_DAYS]),
        int(st.session_state[KEY_HORIZON]),
        data.churn_name(),
    )


def share_view(view: View) -> None:
    """Mirror the view into the URL's query parameters (only what differs from an empty filter)."""
    params: dict[str, str | list[str]] = {
        "from": view.first.isoformat(),
        "to": view.last.isoformat(),
        "repeat_days": str(view.repeat_days),
        "horizon": str(view.horizon_months),
    }
    for name in FILTER_KEYS:
        values = list(getattr(view.filters, name))
        if values:
            params[name] = values
    if {k: st.query_params.get_all(k) for k in params} != {
        k: (v if isinstance(v, list) else [v]) for k, v in params.items()
    } or set(st.query_params.keys()) - set(params):
        st.query_params.from_dict(params)


def filter_label(name: str) -> str:
    return {"channel": "Acquisition channel"}.get(name, name.capitalize())


def refusal_text(check: privacy.DifferencingCheck) -> str:
    """Why a view is refused, in words (markdown; filter values escaped, they come from loaded files):
    which filter, how many customers it would expose, and what to change."""
    k = check.k
    parts = []
    for r in check.refusals:
        values = ", ".join(plain(v) for v in r.values)
        label = filter_label(r.dimension) if r.dimension else ""
        if r.kind == "view":
            parts.append(f"These filters leave {r.customers:,} customers, fewer than {k}.")
        elif r.kind == "complement":
            parts.append(
                f"The {label} filter ({values}) removes only {r.customers:,} customer"
                f"{'' if r.customers == 1 else 's'} from the otherwise-same view: comparing this view with the one "
                f"without the {label} filter would give their figures away. Drop the {label} filter, or keep fewer "
                f"{label.lower()} values so that it removes at least {k} customers."
            )
        else:
            parts.append(
                f"{label} {values} holds only {r.customers:,} customer{'' if r.customers == 1 else 's'} of this "
                f"view: comparing views with and without it would give their figures away. Remove {values} from "
                f"the {label} filter, or widen the other filters."
            )
    return (
        "This view cannot be shown: it could single out a customer (groups of fewer than "
        f"{k} customers are hidden, including by comparing two views). " + " ".join(parts)
    )


# ---------------------------------------------------------------------------------- words and numbers

# (key, card label, kind of number, True when a rise is good)
CARDS: list[tuple[str, str, str, bool]] = [
    ("customers", "Customers", "count", True),
    ("active_customers", "Active customers", "count", True),
    ("churn_rate", "Churn rate (logo)", "share", False),
    ("retention_rate", "Retention", "share", True),
    ("revenue_churn_rate", "Revenue churn", "share", False),
    ("renewal_rate", "Renewal rate", "share", True),
    ("net_revenue_retention", "Net revenue retention", "share", True),
    ("silence_rate", "Silence metric", "share", True),
    ("contacts_per_active_customer", "Contacts per active customer", "ratio", False),
    ("repeat_contact_rate", "Repeat contacts", "share", False),
    ("transfer_rate", "Transferred contacts", "share", False),
    ("handoffs_per_resolved", "Handoffs per resolved issue", "ratio", False),
    ("median_hours_to_resolution", "Median time to resolution", "hours", False),
    ("satisfaction", "Satisfaction", "score", True),
    ("clv_historical_total", "Historical CLV (to date)", "money", True),
    ("clv_historical_per_customer", "Historical CLV per customer", "money", True),
    ("clv_predicted_total", "Predicted CLV", "money", True),
    ("clv_predicted_per_customer", "Predicted CLV per customer", "money", True),
    ("activation_rate", "Activation (high-risk acted on)", "share", True),
]
CARD_ROWS = (
    ("Retention and renewal", CARDS[0:7]),
    ("The silence metric", CARDS[7:14]),
    ("Customer lifetime value and activation", CARDS[14:19]),
)
_DEFINITION_OF = {
    "clv_historical_per_customer": "clv_historical_total",
    "clv_predicted_per_customer": "clv_predicted_total",
}


# Three to a row: at 1440 px a card then has room for its title and its change with the comparison.
CARDS_PER_ROW = 3


def card_rows(
    report: metrics.KpiReport, per_row: int = CARDS_PER_ROW
) -> list[tuple[str, list[list[tuple[str, str, str, bool]]]]]:
    """The card sections with only the KPIs the data can answer, ``per_row`` cards to a row.

    The activation slot stays (empty, with its reason) because it is a KPI the company is missing,
    not one its data cannot answer.
    """
    out = []
    for title, cards in CARD_ROWS:
        shown = [c for c in cards if report.current.get(c[0]) is not None or c[0] == "activation_rate"]
        if shown:
            out.append((title, [shown[i : i + per_row] for i in range(0, len(shown), per_row)]))
    return out


def unanswered(report: metrics.KpiReport) -> str | None:
    """One sentence naming the KPIs the loaded data cannot answer, with the data each one needs."""
    needs = {
        "churn_rate": "a churn label, subscriptions, churn records or dated activity",
        "retention_rate": "a churn label, subscriptions, churn records or dated activity",
        "revenue_churn_rate": "subscriptions with MRR",
        "renewal_rate": "subscriptions",
        "net_revenue_retention": "transactions in two periods",
        "silence_rate": "tickets",
        "contacts_per_active_customer": "tickets",
        "repeat_contact_rate": "tickets",
        "transfer_rate": "tickets with transfer counts",
        "handoffs_per_resolved": "resolved tickets",
        "median_hours_to_resolution": "resolved tickets",
        "satisfaction": "rated tickets",
        "clv_historical_total": "transactions",
        "clv_historical_per_customer": "transactions",
        "clv_predicted_total": "repeat purchases",
        "clv_predicted_per_customer": "repeat purchases",
        "active_customers": "dated activity",
        "customers": "customers",
    }
    if report.period is None:  # no dates at all: everything over a period needs them
        needs = {key: "dated data" for key in needs if key not in ("customers", "churn_rate", "retention_rate")} | {
            key: needs[key] for key in ("churn_rate", "retention_rate")
        }
    missing = [
        f"{label} (needs {needs.get(key, 'more data')})"
        for key, label, _, _ in CARDS
        if report.current.get(key) is None and key != "activation_rate"
    ]
    return "Not answerable from the loaded data: " + "; ".join(missing) + "." if missing else None


SPLIT_COLUMNS = {
    "customers": st.column_config.NumberColumn(format="localized"),
    "churned": st.column_config.NumberColumn(format="localized"),
    "churn rate": st.column_config.NumberColumn(format="percent"),
}


def churn_splits(report: metrics.KpiReport, k: int | None) -> pd.DataFrame | None:
    """Churn per customer group for a snapshot report (no dates), groups under ``k`` customers left
    out; None when the report has none."""
    splits = report.splits
    if splits is None or splits.empty:
        return None
    shown = splits[splits["customers"] >= (k or 1)]
    return shown.rename(columns={"attribute": "group by", "churn_rate": "churn rate"})


def number(value: float | None, kind: str, currency: str | None = None) -> str:
    """One KPI value with its unit: ``1,426``, ``71.1%``, ``3.5 h``, ``28.81 M USD`` (``currency`` as
    recorded; the company's ``CXDASH_CURRENCY`` when the data names none); ``—`` when unknown."""
    if value is None or pd.isna(value):
        return fmt.UNKNOWN
    if kind == "money":
        code = fmt.currency(currency)
        return fmt.money(value, code) if abs(value) >= 1e4 else f"{value:,.0f}" + (f" {code}" if code else "")
    if kind == "count":
        return f"{value:,.0f}"
    if kind == "share":
        return f"{value:.1%}"
    if kind == "hours":
        return fmt.duration(value * 3600)
    return f"{value:,.2f}"


def comparison(report: metrics.KpiReport) -> str:
    """What every delta on the page is measured against: ``vs the previous 90 days`` (the period of
    the same length just before the chosen one)."""
    if report.period is None:
        return fmt.versus()
    return fmt.versus(round(report.period.days))


def delta(report: metrics.KpiReport, key: str, kind: str) -> str | None:
    """The change since the previous period with its unit and what it is compared with
    (``+1,022 vs the previous 90 days``, ``-2.0 pts vs ...``); None when there is nothing to compare."""
    if report.as_of is None:  # undated data: every period is the same snapshot
        return None
    d = report.delta(key)
    if d is None or pd.isna(d):
        return None
    if kind == "money":
        change = ("+" if d >= 0 else "-") + number(abs(d), "money", report.currency)
    elif kind == "hours":
        change = ("+" if d >= 0 else "-") + fmt.duration(abs(d) * 3600)
    else:
        change = fmt.signed(d, kind)
    return f"{change} {comparison(report)}"


def window(report: metrics.KpiReport, key: str) -> str:
    """The time a card's figure covers, in words: the period for most, revenue up to its end for
    historical CLV, the months after it for predicted CLV."""
    if report.period is None:
        return "all the loaded data (it has no dates)"
    last = fmt.day(report.period.end - timedelta(days=1))
    if key.startswith("clv_historical"):
        return f"all revenue up to {last}"
    if key.startswith("clv_predicted"):
        months = report.clv.horizon_months if report.clv is not None else metrics.DEFAULT_CLV_HORIZON_MONTHS
        return f"the {months} months after {last}"
    if key == "customers":
        return f"customers at {last}"
    return fmt.period_words(report.period.start, report.period.end)


def card_help(report: metrics.KpiReport, key: str) -> str:
    name = _DEFINITION_OF.get(key, key)
    d = metrics.DEFINITIONS[name]
    cov = report.coverage.get(name)
    parts = [d["definition"], f"Owner: {d['owner']}.", f"Covers {window(report, key)}."]
    if report.as_of is not None and report.period is not None:
        parts.append(f"The change is {comparison(report)} (the period of the same length just before).")
    if cov is not None:
        parts.append(f"Coverage: {cov:.0%} of the customers in view have the data it needs.")
    if key.startswith("clv"):
        parts.append(fmt.currency_note(report.currency))
    if key == "silence_rate":
        parts.append(SILENCE_WINDOWS)
    note = report.notes.get(name)
    if note:
        parts.append(note)
    elif report.current.get(key) is None:
        parts.append("Not known for this view (shown as —).")
    if key == "repeat_contact_rate":
        parts.append(f"N = {report.repeat_days} days.")
    return " ".join(parts)


def clv_caption(report: metrics.KpiReport) -> str | None:
    """How the predicted CLV is made, in plain words (from the forecast's fields, so a report stored
    before the wording changed reads the same), or None when there is no forecast."""
    clv = report.clv
    if clv is None or not clv.ok:
        return None
    spend = (
        "a spend model that pulls each customer's average spend toward everyone's"
        if any(k.startswith("gg_") for k in clv.params)
        else "each customer's own average spend (it hardly varies from one purchase to the next)"
    )
    text = (
        "Predicted CLV is a forecast from each customer's own purchase history: how often, how recently and "
        "how much they bought. A standard model of customers who buy until they quietly stop (BG/NBD) gives "
        f"each one's expected purchases in the next {clv.horizon_months} months, from {fmt.count(clv.repeat_buyers)} "
        f"customers who bought more than once; {spend} prices them; future revenue is discounted 1% a month. "
        "The holdout check below shows how well it predicts on this data."
    )
    if "penalty" in clv.message:
        text += (
            " The model's plain fit did not settle on these purchases, so it was held back by a small penalty: "
            "the forecast is a little cautious."
        )
    return text


SILENCE_WINDOWS = (
    "The silence metric card counts the whole period: a customer who opened one ticket at any time in it is "
    "not silent. "
    "The trend below counts each calendar month on its own, in which fewer customers need us, so its monthly "
    "figures run higher than the period's."
)


def coverage_caption(report: metrics.KpiReport, key: str) -> str:
    """The line under a card: the time its figure covers and the share of customers it rests on."""
    cov = report.coverage.get(_DEFINITION_OF.get(key, key))
    covered = "coverage not known" if cov is None else f"coverage {cov:.0%}"
    money = ""
    if key.startswith("clv") and fmt.currency(report.currency) is None:
        money = f" · {fmt.NO_CURRENCY}"
    return f"{window(report, key)} · {covered}{money}"


def silence_explained(report: metrics.KpiReport, monthly: pd.DataFrame) -> str | None:
    """Why the silence card and the monthly trend show different figures (plain text), or None when
    either is missing. Both are the same measure (active customers who opened no ticket) over
    different windows: the period, and each calendar month."""
    card = report.current.get("silence_rate")
    if card is None or report.period is None or "silence_rate" not in monthly.columns:
        return None
    months = monthly["silence_rate"].dropna()
    if months.empty:
        return None
    days = round(report.period.days)
    return (
        f"The silence metric is {fmt.percent(card)} over the {days:,} days of the period and "
        f"{fmt.percent(months.min())}–{fmt.percent(months.max())} in each month of the trend: the same measure "
        "(active customers who opened no ticket) over a longer window. A customer who opened one ticket in the "
        f"{days:,} days is not silent over the period, but is silent in every month without a ticket."
    )


DEFINITION_COLUMNS = {
    "KPI": st.column_config.TextColumn(width=180),
    "value": st.column_config.TextColumn(width=95),
    "previous period": st.column_config.TextColumn(width=100, help="The period of the same length just before."),
    "coverage": st.column_config.TextColumn(
        width=90, help="Share of the customers in view with the data the KPI needs (—: not answerable)."
    ),
    "owner": st.column_config.TextColumn(width=130),
    "definition": st.column_config.TextColumn(width=320, help="Hover or widen the column to read it whole."),
}


def definitions_table(report: metrics.KpiReport) -> pd.DataFrame:
    rows = []
    for key, label, kind, _ in CARDS:
        name = _DEFINITION_OF.get(key, key)
        rows.append(
            {
                "KPI": label,
                "value": number(report.current.get(key), kind, report.currency),
                "previous period": number(report.previous.get(key), kind, report.currency),
                "coverage": fmt.percent(report.coverage.get(name), 0),
                "owner": metrics.DEFINITIONS[name]["owner"],
                "definition": metrics.DEFINITIONS[name]["definition"],
            }
        )
    return pd.DataFrame(rows)


def kpi_csv(report: metrics.KpiReport) -> bytes:
    frame = pd.DataFrame(
        {
            "kpi": [k for k, *_ in CARDS],
            "value": [report.current.get(k) for k, *_ in CARDS],
            "previous": [report.previous.get(k) for k, *_ in CARDS],
            "coverage": [report.coverage.get(_DEFINITION_OF.get(k, k)) for k, *_ in CARDS],
        }
    )
    return safe_csv(frame)


def csv(frame: pd.DataFrame, index: bool = False) -> bytes:
    """CSV for a download button; cohort and campaign names come from user data, so formula-looking
    cells are neutralised like every other export."""
    return safe_csv(frame.reset_index() if index else frame)


def lead_sentence(report: metrics.KpiReport) -> str:
    cur = report.current
    if report.period is None:
        n = cur.get("customers")
        if not n:
            return "No dated activity is loaded, so there is no period to report on."
        head = f"The loaded data has no dates, so this is a snapshot of all **{n:,} customers** ({plain(report.filters.describe())})"
        if cur.get("churn_rate") is None:
            return head + "; churn is unknown."
        return (
            head + f": **{cur['churned_in_period']:,}** have churned, **{number(cur['churn_rate'], 'share')}**, "
            f"and **{number(cur['retention_rate'], 'share')}** are kept."
        )
    if report.as_of is None:
        parts = [
            f"The loaded data has no dates, so only snapshot KPIs can be shown ({plain(report.filters.describe())}):"
        ]
    else:
        parts = [
            f"**{fmt.span(report.period.start, report.period.end - timedelta(days=1))}** "
            f"({round(report.period.days):,} days), {plain(report.filters.describe())}:"
        ]
    if cur.get("retention_rate") is not None:
        basis = "" if report.churn_dated else " (from an undated churn label, a snapshot)"
        parts.append(f"**{number(cur['retention_rate'], 'share')}** of customers kept{basis}")
    if cur.get("silence_rate") is not None:
        parts.append(f"**{number(cur['silence_rate'], 'share')}** of active customers never had to contact us")
    if cur.get("repeat_contact_rate") is not None:
        parts.append(f"**{number(cur['repeat_contact_rate'], 'share')}** of contacts were repeats")
    if cur.get("clv_predicted_total") is not None:
        parts.append(
            f"predicted {report.clv.horizon_months}-month CLV "
            f"**{number(cur['clv_predicted_total'], 'money', report.currency)}**"
        )
    elif cur.get("clv_historical_total") is not None:
        parts.append(f"revenue to date **{number(cur['clv_historical_total'], 'money', report.currency)}**")
    return parts[0] + " " + "; ".join(parts[1:]) + "." if len(parts) > 1 else parts[0] + " no KPI has data yet."


DEPARTMENTAL_KPIS = {
    "new_customers": ("new customers", "count"),
    "revenue_closed": ("revenue closed", "money"),
    "tickets_closed": ("tickets closed", "count"),
    "collections": ("collected", "money"),
}
SHARED_KPIS = {
    "retention_90d": "kept at 90 days",
    "repeat_after_close": "repeat after close",
}
# How a department groups its customers for its KPI, in words (``metrics.conflicts``' ``cohort_by``).
COHORT_BY = {
    "campaign": "campaign",
    "channel": "acquisition channel",
    "owner": "owner",
    "team": "team",
    "region": "region",
}


def cohort_group(department: object, cohort_by: object) -> str:
    """A cohort's group as the conflicts show it: the department spelled out, then how it groups its
    customers ("Marketing (marketing): campaign"; a grouping not in ``COHORT_BY`` in words too)."""
    return f"{fmt.department_words(department)}: {_grouping(cohort_by)}"


def _grouping(cohort_by: object) -> str:
    return COHORT_BY.get(str(cohort_by), fmt.label(cohort_by))


def _departmental(kpi: str, value: object, currency: str | None) -> str:
    name, kind = DEPARTMENTAL_KPIS.get(kpi, (fmt.label(kpi), "count"))
    if value is None or pd.isna(value):
        return fmt.UNKNOWN
    return f"{number(float(value), kind, currency)} {name}"


def conflict_sentences(frame: pd.DataFrame, currency: str | None = None) -> list[str]:
    out = []
    for row in frame[frame["conflict"]].itertuples():
        dept_fmt = _departmental(row.departmental_kpi, row.departmental_value, currency)
        same = frame[
            (frame["department"] == row.department) & (frame["cohort_by"] == row.cohort_by) & ~frame["conflict"]
        ]
        others = same["shared_value"].median()
        shared = (
            f"90-day retention {row.shared_value:.0%} (others: {others:.0%})"
            if row.shared_kpi == "retention_90d"
            else f"{row.shared_value:.0%} of its tickets followed by a repeat contact (others: {others:.0%})"
        )
        out.append(
            f"**{plain(row.cohort)}**, {plain(_grouping(row.cohort_by))} of {plain(fmt.department_words(row.department))}: "
            f"top quartile for its department ({dept_fmt}) but bottom quartile for the shared outcome: {shared}."
        )
    return out


CONFLICT_LABELS = ("department", "cohort_by", "cohort", "departmental_kpi", "shared_kpi")


def p_value(p: object) -> str:
    """A p-value to two digits, ``< 0.001`` below that (never ``0`` or ``1e-82``), ``—`` when unknown."""
    if p is None or pd.isna(p):
        return fmt.UNKNOWN
    p = float(p)
    if p < 0.001:
        return "< 0.001"
    return f"{p:.3f}" if p < 0.01 else f"{p:.2f}"


def conflict_table(frame: pd.DataFrame, currency: str | None = None) -> pd.DataFrame:
    """The conflicts (``metrics.conflicts``, possibly with suppressed rows blanked) as a person reads them:
    one column per idea, headed in words, every figure with its unit and ``—`` where it is not shown.

    Out: ``flag, group`` (the department and its grouping: "Marketing (marketing): campaign"), ``cohort, customers,
    departmental KPI, shared outcome, revenue / customer, repeats, time to close, p`` and, when rows were
    suppressed, ``suppression``."""
    f = frame.reset_index(drop=True)

    def each(column: str, render) -> pd.Series:
        return pd.Series([render(v) for v in f[column]], index=f.index, dtype=object)

    out = pd.DataFrame(
        {
            "flag": f["conflict"].map(lambda c: "⚠" if c is True or c == 1 else ""),
            "group": [cohort_group(d, c) for d, c in zip(f["department"], f["cohort_by"], strict=True)],
            "cohort": f["cohort"],
            "customers": f["customers"],
            "departmental KPI": [
                _departmental(k, v, currency)
                for k, v in zip(f["departmental_kpi"], f["departmental_value"], strict=True)
            ],
            "shared outcome": [
                fmt.UNKNOWN if v is None or pd.isna(v) else f"{fmt.percent(v)} {SHARED_KPIS.get(k, fmt.label(k))}"
                for k, v in zip(f["shared_kpi"], f["shared_value"], strict=True)
            ],
            "revenue / customer": each("clv_per_customer", lambda v: number(v, "money", currency)),
            "repeats": each("repeat_contact_rate", fmt.percent),
            "time to close": each(
                "median_hours_to_close", lambda v: fmt.duration(None if v is None or pd.isna(v) else v * 3600)
            ),
            "p": each("p_value", p_value),
        }
    )
    if "suppression" in f.columns:
        out.insert(4, "suppression", f["suppression"])
    out["customers"] = out["customers"].map(fmt.count)
    return out


CONFLICT_COLUMN_CONFIG = {
    "flag": st.column_config.TextColumn(
        "flag",
        width=40,
        help="⚠: a conflict (top quartile for the department, bottom quartile for the shared outcome)",
    ),
    "group": st.column_config.TextColumn(
        width=150, help="The department (spelled out, with the code the data uses) and how it groups its customers."
    ),
    "cohort": st.column_config.TextColumn(width=90),
    "customers": st.column_config.TextColumn(width=75),
    "departmental KPI": st.column_config.TextColumn(
        width=130, help="What the department is judged on, for this cohort."
    ),
    "shared outcome": st.column_config.TextColumn(
        width=135,
        help="The same customers' shared outcome: the share kept at 90 days, or the share of the team's tickets "
        "followed by a repeat contact after closing.",
    ),
    "revenue / customer": st.column_config.TextColumn(width=120, help="Revenue to date per customer of the cohort."),
    "repeats": st.column_config.TextColumn(width=70, help="Share of the cohort's contacts that were repeat contacts."),
    "time to close": st.column_config.TextColumn(width=90, help="Median time from opening to closing a ticket."),
    "p": st.column_config.TextColumn(
        width=55,
        help="p-value: how likely a shared outcome this much worse than the rest of the department's is by chance "
        "alone (small: unlikely to be chance).",
    ),
}
# Over 4rem (Streamlit wraps a cell's text only then): the group ("Customer support (support): team")
# shows whole on two or three lines in its column.
CONFLICT_ROW_HEIGHT = 68


def conflict_table_height(rows: int, shown: int = 10) -> int:
    """The conflicts table's height in pixels: its header and up to ``shown`` of its (wrapped, taller)
    rows, the rest a scroll away, as Streamlit's default shows ten rows of one line."""
    return 40 + CONFLICT_ROW_HEIGHT * max(min(rows, shown), 1)
