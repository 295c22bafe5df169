"""UI helpers for the at-risk list, the customer card and the churn-model page: cached reads
(keyed on the data version and the model version), sentences, tables and plotly figures."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import sqlalchemy as sa
import streamlit as st
from sqlalchemy import func, select

from cxdash.config import database_url
from cxdash.governance import privacy
from cxdash.governance.auth import may_open
from cxdash.metrics import money_currency
from cxdash.risk import (
    VALUE_BASES,
    ChurnModel,
    NotEnoughChurnError,
    activation,
    attribute_columns,
    card,
    model_versions,
    parse_label,
    training,
    value_basis,
    version_problem,
)
from cxdash.store.database import KIND_TABLES, models_table
from cxdash.ui import auth as ui_auth
from cxdash.ui import data
from cxdash.ui.charts import _colour_map
from cxdash.ui.figures import memoised_figure
from cxdash.ui.formatting import UNKNOWN, count, department_words, label, money, percent, plain, plot_text
from cxdash.ui.frame import PAGES_DIR

# session-state keys, prefixed by page
AT_RISK_DEPARTMENTS = "at_risk_departments"
AT_RISK_STATUS = "at_risk_status"
AT_RISK_MIN_RISK = "at_risk_min_risk"
AT_RISK_TOP_DECILE = "at_risk_top_decile"
AT_RISK_BULK = "at_risk_bulk"
AT_RISK_TABLE = "at_risk_table"
AT_RISK_FLASH = "at_risk_flash"  # what the last mark did, shown once on the next run
CARD_QUERY = "card_query"
CARD_PICK = "card_pick"
CARD_CUSTOMER = "card_customer"  # the cx_id the at-risk list opened the card on
CARD_FLASH = "card_flash"
MODEL_HORIZON = "model_horizon"
MODEL_LABEL = "model_label"

STATUS_CHOICES = {"all": None, "not yet acted on": "open", "contacted": "contacted", "actioned": "actioned"}


# ----------------------------------------------------------------------------- model registry
def model_info() -> dict | None:
    """The newest model's registry row (version, estimator, cutoff, metrics...), or None."""
    versions = _versions(database_url(), data.version(), newest_model_version())
    return None if versions.empty else versions.iloc[0].to_dict()


def _fixed(value, digits: int, unit: str = "") -> str:
    """A measure to ``digits`` decimals (``0.799``, ``6.22×``), or "—" when it was not measured."""
    return UNKNOWN if value is None or pd.isna(value) else f"{value:.{digits}f}{unit}"


def model_history() -> pd.DataFrame:
    v = _versions(database_url(), data.version(), newest_model_version())
    if v.empty:
        return v
    return pd.DataFrame(
        {
            "version": v["version"],
            "trained": v["created_at"].map(lambda t: pd.Timestamp(t).strftime("%Y-%m-%d %H:%M")),
            "model": v["estimator"].str.replace("_", " "),
            "validation": v["metrics"].map(
                lambda m: m.get("validation", "").replace("_", " ") + ("" if held_out(m) else " (not held out)")
            ),
            "held-out churned": v["metrics"].map(
                lambda m: f"{m['n_positive_valid']:,} of {m['n_valid']:,}" if held_out(m) else "not measured"
            ),
            "ROC AUC": v["metrics"].map(lambda m: _fixed(m.get("roc_auc"), 3)),
            "95% interval": v["metrics"].map(
                lambda m: f"{m['roc_auc_ci_low']:.3f}–{m['roc_auc_ci_high']:.3f}" if held_out(m) else "not measured"
            ),
            "top-decile lift": v["metrics"].map(lambda m: _fixed(m.get("top_decile_lift"), 2, "×")),
            "training rows": v["metrics"].map(lambda m: count(m.get("n_train"))),
            "data version": v["data_version"],
        }
    )


def newest_model_version() -> int:

    with data.store().app_begin() as conn:
        return int(conn.execute(select(func.coalesce(func.max(models_table.c.version), 0))).scalar())


@st.cache_data(show_spinner=False, max_entries=4)
def _versions(url: str, data_version: int, model_version: int) -> pd.DataFrame:
    return model_versions(data.store())


def label_choices() -> list[str]:
    """Columns of the customer table that could be a label: churn_label and yes/no attributes."""
    return _label_choices(database_url(), data.version())


@st.cache_data(show_spinner=False, max_entries=4)
def _label_choices(url: str, version: int) -> list[str]:
    c = KIND_TABLES["customers"]
    with data.store().connect() as conn:
        has_label = conn.execute(sa.select(sa.func.count(c.c.churn_label))).scalar()
        attrs = pd.Series([r[0] for r in conn.execute(sa.select(c.c.attrs).limit(2000))])
    out = ["churn_label"] if has_label else []
    if len(attrs):
        cols = attribute_columns(attrs)
        for name in cols.columns:
            parsed = parse_label(cols[name])
            if parsed.notna().mean() > 0.8 and parsed.nunique() == 2:
                out.append(name)
    return out


def train(*, label_column: str | None, horizon_days: float) -> ChurnModel:
    """Train with a progress bar on the page; clears the cached registry."""
    bar = st.progress(0.0, text="Starting")

    def progress(share: float, text: str) -> None:
        bar.progress(min(max(share, 0.0), 1.0), text=text)

    try:
        model = training.train(
            data.store(), label_column=label_column or None, horizon_days=horizon_days, progress=progress
        )
    finally:
        bar.empty()  # a half-full bar must not outlive a failed run
    _versions.clear()
    return model


def no_model_notice(what: str) -> None:
    """Say that no churn model exists yet and who can train one, in words the signed-in role can act
    on: someone who may open the Churn model page gets a link to it, anyone else is told to ask an
    admin. ``what``: what the missing model holds back ("the at-risk list")."""
    role = ui_auth.current_role()
    if may_open(role, "model.py"):
        st.info(
            f"No churn model yet, so {what} is empty. Train the first one on the Churn model page "
            "(under a minute on the 10,000-customer demo), or run `python -m cxdash train`.",
            icon=":material/model_training:",
        )
        if st.button("Open the Churn model page", icon=":material/arrow_forward:", key="no_model_open"):
            st.switch_page(str(PAGES_DIR / "model.py"))
    else:
        st.info(
            f"No churn model yet, so {what} is empty. Ask an admin to train the churn model "
            "(Churn model page, or `python -m cxdash train`).",
            icon=":material/model_training:",
        )


# ----------------------------------------------------------------------------- model page
def model_churn_caption(metrics: dict) -> str:
    return (
        f"Its labels follow the churn definition {plain(metrics['churn_definition'])} "
        f"({plain(metrics.get('churn_definition_text', ''))}), as it stood when it was trained."
    )


def held_out(metrics: dict) -> bool:
    """Were this model's figures measured on customers that neither chose nor calibrated it? (Models
    trained before held-out evaluation were reported on the rows that chose them.)"""
    return "n_positive_valid" in metrics


def model_sentence(info: dict) -> str:
    m = info["metrics"]
    label = (
        f"churn within {m.get('horizon_days'):g} days"
        if info["kind"] == "events"
        else f"the label column {plain(info.get('label_column'))}"
    )
    head = f"Model **v{info['version']}** ({info['estimator'].replace('_', ' ')}) predicts {label}"
    if not held_out(m):
        how = (
            "time-based validation on later cutoffs"
            if m.get("validation") == "time_based"
            else f"{m.get('validation', '').replace('_', ' ')} cross-validation"
        )
        return f"{head} with **ROC AUC {m['roc_auc']:.3f}** by {how}, measured on the rows that also chose it."
    how = "time-based validation" if m.get("validation") == "time_based" else "a stratified hold-out"
    lift = m.get("top_decile_lift")
    tail = (
        (
            f" The riskiest {m['top_decile_n']:,} of them hold **{m['top_decile_positive']:,}** of the "
            f"{m['n_positive_valid']:,} who left (lift **{lift:.1f}×**)."
        )
        if lift is not None
        else ""
    )
    return (
        f"{head}: **ROC AUC {m['roc_auc']:.3f}** (95% interval {m['roc_auc_ci_low']:.3f}–"
        f"{m['roc_auc_ci_high']:.3f}) by {how}, measured on {plain(m['evaluated_on'])}.{tail}"
    )


def metric_tiles(metrics: dict) -> list[dict]:
    """The model page's headline figures: ``label, value, help, caption`` per tile, held-out ones
    when the model has them (older models: the figures they reported, see ``model_warnings``)."""
    m = metrics
    base, lift, capture = m.get("base_rate"), m.get("top_decile_lift"), m.get("top_decile_capture")
    auc_help = "Chance a leaver is ranked above a stayer (0.5 = coin toss)."
    pr_help = "Average precision: how pure the list is as you go down it. A random ranking scores the base rate."
    lift_help = "Churn rate among the riskiest 10% divided by the overall churn rate."
    capture_help = "Share of all leavers found in the riskiest 10%."
    if not held_out(m):
        return [
            {"label": "ROC AUC", "value": f"{m['roc_auc']:.3f}", "help": auc_help, "caption": "not held out"},
            {
                "label": "PR AUC",
                "value": f"{m['pr_auc']:.3f}",
                "help": pr_help,
                "caption": f"base rate {base:.1%}" if base is not None else "",
            },
            {
                "label": "Top-decile lift",
                "value": f"{lift:.1f}×" if lift is not None else "n/a",
                "help": lift_help,
                "caption": "",
            },
            {
                "label": "Top-decile capture",
                "value": f"{capture:.0%}" if capture is not None else "n/a",
                "help": capture_help,
                "caption": "",
            },
        ]
    return [
        {
            "label": "Held-out churned",
            "value": f"{m['n_positive_valid']:,}",
            "help": "Churned customers among the held-out rows every figure here is measured on.",
            "caption": f"of {m['n_valid']:,} held-out rows: base rate {base:.1%}",
        },
        {
            "label": "ROC AUC",
            "value": f"{m['roc_auc']:.3f}",
            "help": f"{auc_help} Interval: {m.get('roc_auc_ci_method', 'bootstrap')}.",
            "caption": f"95% interval {m['roc_auc_ci_low']:.3f}–{m['roc_auc_ci_high']:.3f}",
        },
        {"label": "PR AUC", "value": f"{m['pr_auc']:.3f}", "help": pr_help, "caption": f"random ranking: {base:.3f}"},
        {
            "label": "Top-decile lift",
            "value": f"{lift:.1f}×" if lift is not None else "n/a",
            "help": lift_help,
            "caption": f"{m['top_decile_positive']:,} churned among the riskiest {m['top_decile_n']:,}",
        },
        {
            "label": "Top-decile capture",
            "value": f"{capture:.0%}" if capture is not None else "n/a",
            "help": capture_help,
            "caption": f"{m['top_decile_positive']:,} of {m['n_positive_valid']:,} who churned",
        },
    ]


def model_warnings(info: dict) -> list[str]:
    """What a reader of the newest model's figures must know first (plain text, escaped for markdown):
    figures not held out, an interval that reaches a coin toss, library versions that differ from
    the running ones (the model can then not be loaded to score again)."""
    m = info["metrics"]
    out = []
    if not held_out(m):
        out.append(
            f"Version {info['version']} was trained before held-out evaluation: its figures were measured on "
            "the same rows that chose and calibrated it, so they flatter it. Retrain for figures measured on "
            "customers the model never saw."
        )
    elif m["roc_auc_ci_low"] <= 0.5:
        out.append(
            f"The ROC AUC's 95% interval reaches {m['roc_auc_ci_low']:.3f}: on these "
            f"{m['n_positive_valid']:,} held-out leavers the model may rank no better than a coin toss."
        )
    problem = version_problem(m.get("fitted_with"), version=info["version"])
    if problem:
        out.append(problem)
    return [plain(t) for t in out]


def training_error(exc: Exception) -> str:
    """A failed training run in words for the page (escaped: messages can name columns from files)."""
    if isinstance(exc, NotEnoughChurnError):
        return f"**Too little churn to measure a model: no model was saved.** {plain(str(exc))}"
    return f"Training failed: {plain(str(exc))}"


@memoised_figure
def candidates_figure(metrics: dict) -> go.Figure:
    cand = metrics.get("candidates", {})
    names = list(cand)
    colours = ["#0ea5e9" if n == metrics.get("chosen") else "#cbd5e1" for n in names]
    fig = go.Figure(
        go.Bar(
            x=[cand[n] for n in names],
            y=[n.replace("_", " ") for n in names],
            orientation="h",
            marker_color=colours,
            text=[f"{cand[n]:.3f}" for n in names],
            textposition="outside",
            cliponaxis=False,
        )
    )
    lo = min(cand.values()) if cand else 0.5
    fig.update_layout(
        height=90 + 40 * len(names),
        margin=dict(l=10, r=50, t=10, b=10),
        xaxis=dict(
            title=f"ROC AUC on the {_selection_words(metrics)} (chooses; not the report)",
            range=[max(0.5, lo - 0.05), 1.0],
        ),
    )
    return fig


def _selection_words(metrics: dict) -> str:
    if not held_out(metrics):
        return "validation rows"
    return "selection snapshots" if metrics.get("validation") == "time_based" else "cross-validation folds"


def candidates_heading(metrics: dict) -> str:
    if not held_out(metrics):
        return "Candidates compared on the same validation"
    return f"Candidates compared on the {_selection_words(metrics)}"


@memoised_figure
def calibration_figure(metrics: dict) -> go.Figure:
    cal = metrics.get("calibration", {"predicted": [], "observed": []})
    top = max([*cal["predicted"], *cal["observed"], 0.05]) * 1.05
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(x=[0, top], y=[0, top], mode="lines", name="perfect", line=dict(dash="dot", color="#94a3b8"))
    )
    fig.add_trace(
        go.Scatter(
            x=cal["predicted"], y=cal["observed"], mode="lines+markers", name="model", line=dict(color="#0ea5e9")
        )
    )
    fig.update_layout(
        height=340,
        margin=dict(l=10, r=10, t=10, b=10),
        xaxis_title="predicted churn probability",
        yaxis_title="observed churn rate",
        legend=dict(orientation="h", y=1.05, x=0),
    )
    return fig


def importance_figure(metrics: dict, top: int = 12) -> go.Figure:
    imp = pd.DataFrame(metrics.get("importance", [])).head(top)
    if imp.empty:
        return go.Figure()
    imp = imp.iloc[::-1]
    colours = _colour_map(imp["department"])
    fig = go.Figure(
        go.Bar(
            x=imp["importance"],
            y=imp["label"],
            orientation="h",
            marker_color=[colours[d] for d in imp["department"]],
            error_x=dict(type="data", array=imp["std"], visible=True),
            customdata=imp["department"].map(lambda d: plot_text(department_words(d))),
            hovertemplate="%{y}<br>owner: %{customdata}<br>AUC drop %{x:.3f}<extra></extra>",
        )
    )
    fig.update_layout(
        height=90 + 28 * len(imp), margin=dict(l=10, r=10, t=10, b=10), xaxis_title="AUC drop when shuffled"
    )
    return fig


# ----------------------------------------------------------------------------- at-risk list
def departments() -> list[str]:
    """The departments the list can be filtered by (codes: show them with ``department_words``)."""
    return ["support", "web", "billing", "sales", "marketing"]


def at_risk_list(*, departments: list[str], status: str, min_risk: float, top_decile: bool) -> pd.DataFrame:
    """The filtered list (``cxdash.risk.activation.at_risk`` columns plus ``name``, the CRM name, masked
    for a role that may not see personal data)."""
    frame = _at_risk(
        database_url(),
        data.version(),
        list_version(),
        tuple(sorted(departments or ())),
        STATUS_CHOICES[status],
        float(min_risk),
        bool(top_decile),
    )
    if not privacy.sees_personal_data(ui_auth.current_role()):
        frame = frame.assign(name=frame["name"].map(privacy.mask_name))
    return frame


def stats() -> dict:
    return _stats(database_url(), data.version(), list_version())


@st.cache_data(show_spinner=False, max_entries=4)
def _value_basis(url: str, version: int) -> str | None:
    with data.store().connect() as conn:
        return value_basis(conn)


def customer_value_basis() -> str | None:
    """Where the list's value comes from (``cxdash.risk.value_basis``): "revenue", "mrr" or
    None (unknown)."""
    return _value_basis(database_url(), data.version())


def list_version() -> tuple:
    return activation.list_version(data.store())


# Keyed on the data version and the list's own version (new scores, any mark from any session),
# and cleared by ``mark`` as well, so a customer marked here shows its new status at once.
@st.cache_data(show_spinner=False, max_entries=32)
def _at_risk(
    url: str,
    version: int,
    list_version: tuple,
    departments: tuple[str, ...],
    status: str | None,
    min_risk: float,
    top_decile: bool,
) -> pd.DataFrame:
    store = data.store()
    frame = activation.at_risk(
        store,
        departments=list(departments) or None,
        status=status,
        min_risk=min_risk,
        only_top_decile=top_decile,
        limit=1000,
    )
    with store.connect() as conn:
        names = card.customer_names(conn, frame["cx_id"].tolist())
    frame["name"] = frame["cx_id"].map(names)
    return frame


@st.cache_data(show_spinner=False, max_entries=4)
def _currency(url: str, version: int) -> str | None:
    with data.store().connect() as conn:
        return money_currency(conn)


def currency() -> str | None:
    """The money figures' currency (the transactions' code, ``cxdash.metrics.money_currency``), or None."""
    return _currency(database_url(), data.version())


def value_label(basis: str | None, currency: str | None = None) -> str:
    """The value column's header, short enough for the list at 1440 px: the period and the currency
    ("12-month value (USD)"; ``value_help`` says it is the last 12 months' revenue)."""
    what = {"revenue": "12-month value", "mrr": "12 × MRR"}.get(basis or "", "value")
    return f"{what} ({currency})" if currency else what


@st.cache_data(show_spinner=False, max_entries=8)
def _stats(url: str, version: int, list_version: tuple) -> dict:
    return activation.activation_stats(data.store())


def reason_words(r: dict) -> str:
    """What a reason is about, in words: its label ("Visited the cancel page"); a reason stored without
    one names its signal or driver in words ("cancel_page" -> "Cancel page"), never as a column name."""
    for key in ("label", "signal", "driver"):
        if not is_blank(r.get(key)):
            words = label(r[key])
            return words[:1].upper() + words[1:]
    return "A driver of the score"


def reason_line(r: dict) -> str:
    """One reason as a markdown list item: the signal in words, the customer's own figures, the owning
    department spelled out ("Customer support (support)") and the next action; every part escaped (a
    detail can hold a category from a file)."""
    detail = f" — {plain(r['detail'])}" if not is_blank(r.get("detail")) else ""
    owner = f" · owner **{plain(department_words(r.get('department')))}**"
    action = f" · {plain(r['action'])}" if not is_blank(r.get("action")) else ""
    return f"- **{plain(reason_words(r))}**{detail}{owner}{action}"


def no_reasons_text(score: dict | None) -> str:
    if score is None:
        return "Not scored, so no model reasons."
    return (
        "No driver puts this customer on the risky side of the typical retained customer "
        "(reasons are shown only where the customer's own data is worse)."
    )


def reasons_text(reasons: list[dict], n: int = 3) -> str:
    return "; ".join(f"{r['label']} ({r['detail']})" if r.get("detail") else r["label"] for r in reasons[:n])


def at_risk_table(frame: pd.DataFrame, basis: str | None = "revenue", currency: str | None = None) -> pd.DataFrame:
    """The list as shown, one row per customer: name, customer id, risk (whole percent), value (whole
    currency units, headed by ``value_label``), top reason, next best action, owner, follow-up
    status ("open" until someone contacts or actions them). The owning department, spelled out,
    follows the action ("... · Customer support (support)"), so the list fits a 1440 px screen
    without scrolling sideways.
    Without a value basis the value column is left out (the sentence says the value is unknown)
    rather than shown as blanks or zeros; an unknown name or reason is "—"."""
    names = frame["name"] if "name" in frame else pd.Series(None, index=frame.index, dtype=object)
    value = {value_label(basis, currency): frame["value"].round(0)} if basis else {}
    return pd.DataFrame(
        {
            "customer": names.map(lambda n: UNKNOWN if is_blank(n) else str(n)),
            "customer id": frame["customer_id"],
            "risk": (frame["risk"] * 100).round(0),
            **value,
            # the first reason's words only: the card lists every reason with the customer's own figures
            "top reason": [_top_reason(r, t) for r, t in zip(frame["reasons"], frame["top_reason"], strict=True)],
            "next best action · owner": [
                _action_with_owner(a, d) for a, d in zip(frame["action"], frame["department"], strict=True)
            ],
            "status": frame["status"].fillna("open"),
        }
    )


def value_help(basis: str | None) -> str | None:
    """What the list's value column means (its header names the period and currency)."""
    return None if basis is None else VALUE_BASES[basis].capitalize() + ", rounded to whole units."


def _top_reason(reasons: list[dict], top_reason) -> str:
    if reasons:
        return str(reasons[0]["label"])
    return UNKNOWN if is_blank(top_reason) else str(top_reason)


def _action_with_owner(action, department) -> str:
    if is_blank(action):
        return UNKNOWN
    return f"{action} · {department_words(department)}" if not is_blank(department) else str(action)


def is_blank(v) -> bool:
    return v is None or (not isinstance(v, str) and pd.isna(v)) or (isinstance(v, str) and not v.strip())


def flash(key: str, text: str) -> None:
    """Keep ``text`` for the next run of the page (``show_flash``): a message written just before
    ``st.rerun`` would vanish with the rerun."""
    st.session_state[key] = text


def show_flash(key: str) -> None:
    text = st.session_state.pop(key, None)
    if text:
        st.success(text, icon=":material/check_circle:")


def clear_list_selection() -> None:
    """``on_change`` of the bulk toggle: rows ticked for marking must not open a card once a click
    opens one again (nor stay ticked unseen)."""
    st.session_state[AT_RISK_TABLE] = {"selection": {"rows": [], "columns": [], "cells": []}}


def open_card(cx_id: str) -> None:
    """Go to the customer card showing ``cx_id`` (the search box emptied so it does not win)."""
    st.session_state[CARD_CUSTOMER] = cx_id
    st.session_state[CARD_QUERY] = ""
    st.session_state.pop(CARD_PICK, None)
    st.switch_page(str(PAGES_DIR / "customer_card.py"))


def at_risk_sentence(frame: pd.DataFrame, st_: dict, basis: str | None = "revenue", currency: str | None = None) -> str:
    """The list in one sentence: how many customers, the expected revenue at risk (sum of risk ×
    value, with what value means) or, without a value basis, that the value is unknown."""
    if frame.empty:
        return "No customer matches these filters."
    acted = st_.get("share_acted")
    acted_txt = (
        f"; **{percent(acted)}** of the top-risk decile has been contacted or actioned" if acted is not None else ""
    )
    top = frame["top_reason"].replace("", pd.NA).dropna().value_counts()
    why = (
        f" The most common first reason: **{plain(top.index[0].lower())}** ({top.iloc[0]:,} customers)."
        if len(top)
        else ""
    )
    if basis is None:
        return (
            f"**{len(frame):,} customers** on this list. Their value is unknown (no transactions and no "
            f"subscription MRR loaded), so no revenue at risk is shown and the list is ranked by risk "
            f"alone{acted_txt}.{why}"
        )
    value = frame["priority"].sum()
    return (
        f"**{len(frame):,} customers** on this list put **{money(value, currency)}** of expected revenue at risk "
        f"(risk × value; {VALUE_BASES[basis]}){acted_txt}.{why}"
    )


def department_figure(frame: pd.DataFrame, basis: str | None = "revenue", currency: str | None = None) -> go.Figure:
    """Risk at stake per owning department, one bar each, named in words ("Customer support (support)")
    in the department's colour."""
    g = (
        frame.groupby(frame["department"].fillna("").replace("", "unknown"), as_index=False)
        .agg(customers=("cx_id", "size"), at_stake=("priority", "sum"))
        .sort_values("at_stake")
    )
    colours = _colour_map(g["department"])
    fig = go.Figure(
        go.Bar(
            x=g["at_stake"],
            y=g["department"].map(department_words),
            orientation="h",
            marker_color=[colours[d] for d in g["department"]],
            text=[f"{n:,} customers" for n in g["customers"]],
            textposition="outside",
            cliponaxis=False,
        )
    )
    fig.update_layout(
        height=80 + 40 * len(g),
        margin=dict(l=10, r=90, t=10, b=10),
        xaxis_title=(f"revenue at risk (risk × value{', ' + plot_text(currency) if currency else ''})")
        if basis
        else "expected leavers (sum of risk; value unknown)",
    )
    return fig


def mark(cx_ids: list[str], status: str, actor: str | None = None) -> int:
    """Record ``status`` for these customers as the signed-in user (``actor`` only for tests and
    scripts) and drop every cached read that shows a status: the list, its figures and the cards."""
    n = activation.mark(data.store(), cx_ids, status, actor=actor or ui_auth.current_user())
    _at_risk.clear()
    _stats.clear()
    return n


def export(frame: pd.DataFrame) -> bytes:
    return activation.export_csv(frame)
