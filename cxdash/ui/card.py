"""UI helpers for the customer card: search by any identifier, the card's tiles, signals, timeline and contacts in words."""

from __future__ import annotations

from datetime import datetime

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from cxdash.config import database_url
from cxdash.governance import privacy
from cxdash.metrics.churn import Definition
from cxdash.risk import (
    AGE_CAP_DAYS,
    VALUE_BASES,
    activation,
    age_words,
    card,
    data_as_of,
    next_action,
    recent_signals,
)
from cxdash.ui import auth as ui_auth
from cxdash.ui import data
from cxdash.ui.charts import _named_departments
from cxdash.ui.formatting import UNKNOWN, count, day, department_words, percent, plain
from cxdash.ui.risk import is_blank, list_version, newest_model_version

# ----------------------------------------------------------------------------- customer card
SEARCH_LIMIT = 20


def search(query: str) -> pd.DataFrame:
    """Customers matching ``query`` by name, email, phone or any id (``cxdash.risk.card.find_customers``),
    names masked for a role that may not see personal data."""
    with data.store().connect() as conn:
        found = card.find_customers(conn, query, limit=SEARCH_LIMIT)
    if not privacy.sees_personal_data(ui_auth.current_role()):
        found = found.assign(name=found["name"].map(privacy.mask_name))
    return found


def match_label(row) -> str:
    """One search match for the pick list: name, customer id, and what matched."""
    name = UNKNOWN if is_blank(row.name) else str(row.name)
    return f"{name} · {row.customer_id} (matched by {card.MATCH_WORDS.get(row.matched, row.matched)})"


def example_customer() -> str | None:
    """The highest-priority scored customer (what the card shows before a search)."""
    top = activation.at_risk(data.store(), only_top_decile=False, limit=1)
    return None if top.empty else str(top["cx_id"].iloc[0])


# Keyed on the list version too: a mark (here or anywhere) changes the follow-up status the card shows.
@st.cache_data(show_spinner=False, max_entries=64)
def _card(
    url: str, version: int, model_version: int, list_version: tuple, cx_id: str, churn_name: str | None, mask: bool
) -> dict:
    store = data.store()
    with store.connect() as conn:
        now = data_as_of(conn)
        definition = Definition.parse(churn_name) if churn_name else None
        out = {
            "churn": card.churn_status(conn, cx_id, definition),
            "now": now,
            "profile": card.profile(conn, cx_id, mask=mask),
            "timeline": card.customer_timeline(conn, cx_id, limit=200),
            "signals": recent_signals(conn, cx_id, now=now),
            "open_tickets": card.open_tickets(conn, cx_id),
            "contacts": card.recent_contacts(conn, cx_id),
        }
    out["score"] = activation.customer_score(store, cx_id)
    out["follow_up"] = activation.follow_up(store, cx_id)
    out["next"] = next_action(out["signals"], (out["score"] or {}).get("reasons", []))
    out["masked"] = mask
    return out


def customer_card(cx_id: str) -> dict:
    """Everything the card shows for one customer; email and phone in full only for a role whose job
    needs them (``cxdash.governance.privacy.PERSONAL_DATA_ROLES``: agents and admins), masked for the others."""
    mask = not privacy.sees_personal_data(ui_auth.current_role())
    return _card(database_url(), data.version(), newest_model_version(), list_version(), cx_id, data.churn_name(), mask)


def card_title(c: dict, cx_id: str) -> str:
    """The card's heading: the CRM name, else the customer id, else the customer key (escaped)."""
    p = c["profile"]
    for key in ("name", "customer_id"):
        if not is_blank(p.get(key)):
            return plain(p[key])
    return plain(cx_id)


def risk_tile(c: dict) -> tuple[str, str]:
    """The churn-risk figure and its help (why it is unknown when it is)."""
    score = c["score"]
    if score:
        return percent(score["risk"], 0), "Chance of leaving in the model's horizon, from the newest churn model."
    if c["churn"]["churned"]:
        return UNKNOWN, "Not scored: this customer has already left (only current customers are scored)."
    return UNKNOWN, "Not scored: the newest churn model did not score this customer (not a current customer)."


def value_tile(c: dict, basis: str | None, currency: str | None) -> tuple[str, str]:
    score = c["score"]
    if not score:
        return UNKNOWN, "Not scored, so no value was worked out for this customer."
    if basis is None or is_blank(score.get("value")):
        return UNKNOWN, "Unknown: no transactions and no subscription MRR are loaded."
    return count(round(float(score["value"]))), VALUE_BASES[basis].capitalize() + "."


def follow_up_tile(c: dict) -> tuple[str, str | None]:
    """The follow-up status and, once someone acted, who and when ("by agent · 2 Dec 2026 08:14")."""
    f = c["follow_up"]
    if f["status"] == "open":
        return "open", "Nobody has contacted or actioned them yet."
    when = pd.Timestamp(f["updated_at"])
    return str(f["status"]), f"by {plain(f['actor'])} · {day(when)} {when:%H:%M} UTC"


def contact_rows(profile: dict) -> list[tuple[str, str, str | None]]:
    """Email, phone and marketing consent for the card's contact block: ``(label, value, help)``,
    values as stored (masked when the role may not see them), "—" with a reason when unknown."""
    out = []
    for label, key in (("Email", "email"), ("Phone", "phone")):
        v = profile.get(key)
        out.append((label, UNKNOWN, f"No {key} on the CRM record.") if is_blank(v) else (label, str(v), None))
    c = profile.get("consent_marketing")
    if c is None or pd.isna(c):
        out.append(("Marketing consent", "unknown", "The CRM record does not say: ask before any marketing."))
    elif bool(c):
        out.append(("Marketing consent", "yes", "Opted in to marketing."))
    else:
        out.append(("Marketing consent", "no", "Service contact only: no marketing offers."))
    return out


def churn_sentence(status: dict) -> str:
    """The customer's churn status under the company's definition, and what their churn records say."""
    records = status["records"]
    said = ""
    if not records.empty:
        latest = records.iloc[0]
        when = "" if pd.isna(latest["churned_at"]) else f" on {pd.Timestamp(latest['churned_at']):%d %b %Y}"
        reason = f", reason: {plain(str(latest['reason']))}" if pd.notna(latest["reason"]) else ""
        said = f" A churn record says they left{when}{reason}."
    if status["churned"] is None:
        return "Whether this customer has churned is unknown: no churn definition fits the loaded data." + said
    if status["churned"]:
        when = (
            f" on {pd.Timestamp(status['churned_at']):%d %b %Y}"
            if status["churned_at"] is not None and not pd.isna(status["churned_at"])
            else ""
        )
        return f"**Churned{when}** under the company's definition ({plain(status['definition'])})." + said
    return f"Still a customer under the company's definition ({plain(status['definition'])})." + said


def signals_table(signals: pd.DataFrame) -> pd.DataFrame:
    """The card's signal list: what, how strong, when, how often lately, and the record's own words."""
    return pd.DataFrame(
        {
            "signal": signals["noun"],
            "kind": signals["strength"],
            "when": signals["age_days"].map(_age_words),
            "last 30 days": signals["count_30d"],
            "detail": signals["detail"],
            "owner": signals["department"].map(lambda d: department_words(d, missing=UNKNOWN)),
        }
    )


# The signal table sits in the card's left column (about 570 px at 1440 px): widths that fit it, and
# rows tall enough (over 4rem: only then does Streamlit wrap a cell) for "Customer support (support)"
# and a long signal or detail to show whole on two or three lines instead of being cut.
SIGNALS_COLUMNS = {
    "signal": st.column_config.TextColumn(width=115),
    "kind": st.column_config.TextColumn(width=58),
    "when": st.column_config.TextColumn(width=85),
    "last 30 days": st.column_config.NumberColumn(width=78, help="How many times in the last 30 days"),
    "detail": st.column_config.TextColumn(width=100, help="The record's own words (as the source has them)."),
    "owner": st.column_config.TextColumn(width=126, help="The department that owns the signal and its next action."),
}
SIGNALS_ROW_HEIGHT = 68


def _age_words(days: float) -> str:
    if days is not None and not pd.isna(days) and days >= AGE_CAP_DAYS:
        return "over a year ago"
    return age_words(days)


def signal_sentence(signals: pd.DataFrame) -> str:
    """The newest signal in words (markdown; the record's detail escaped), or that there is none."""
    if signals.empty:
        return "No intent, friction or churn signals on record."
    s = signals.iloc[0]
    detail = f" ({plain(s['detail'])})" if s["detail"] else ""
    return f"Most recent signal: **{plain(s['noun'])}**{detail}, {_age_words(s['age_days'])}."


def next_action_sentence(nxt: dict) -> str:
    """The card's lead action (markdown): the action and its owner."""
    owner = f" (owner: {plain(department_words(nxt['department']))})" if not is_blank(nxt.get("department")) else ""
    return f"next best action: **{plain(nxt['action'])}**{owner}"


def timeline_figure(tl: pd.DataFrame) -> go.Figure:
    """The customer's records as dots, one row per department named in words ("Customer support
    (support)", "Unknown department (unknown)" where a record names none), each in its department's
    colour (as on every chart)."""
    frame, colours = _named_departments(tl.dropna(subset=["ts"]))
    fig = go.Figure()
    for dept, g in frame.groupby("department"):
        fig.add_trace(
            go.Scatter(
                x=g["ts"],
                y=g["department"],
                mode="markers",
                name=dept,
                text=g["activity"],
                marker=dict(color=colours[dept], size=9, opacity=0.8),
                hovertemplate="%{x|%Y-%m-%d %H:%M}<br>%{text}<extra></extra>",
            )
        )
    fig.update_layout(height=260, margin=dict(l=10, r=10, t=10, b=10), showlegend=False)
    return fig


def timeline_table(tl: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "when": tl["ts"].map(lambda t: pd.Timestamp(t).strftime("%Y-%m-%d %H:%M")),
            "what": tl["activity"],
            # as the timeline's rows name them: a record naming no department is "Unknown department (unknown)"
            "department": tl["department"].fillna("unknown").map(department_words),
            "channel": tl["channel"].map(lambda v: UNKNOWN if is_blank(v) else v),
            "source": tl["source"],
        }
    )


def contacts_table(contacts: pd.DataFrame) -> pd.DataFrame:
    """Tickets as the card lists them; an unknown topic, channel, transfer count, rating or status is "—"."""

    def known(v, fmt=str):
        return UNKNOWN if is_blank(v) else fmt(v)

    return pd.DataFrame(
        {
            "opened": contacts["opened_at"].map(day),
            "topic": contacts["topic"].map(known),
            "channel": contacts["channel"].map(known),
            "transfers": contacts["transfers"].map(lambda v: known(v, lambda x: f"{int(x):,}")),
            "satisfaction": contacts["satisfaction"].map(lambda v: known(v, lambda x: f"{float(x):g}")),
            "status": contacts["status"].map(known),
        }
    )


def told_us_sentence(contacts: pd.DataFrame) -> str:
    if contacts.empty:
        return "They have not contacted us."
    topics = contacts["topic"].fillna("other").value_counts()
    parts = ", ".join(f"{plain(t)} ({n}×)" for t, n in topics.items())
    last = pd.Timestamp(contacts["opened_at"].iloc[0]).strftime("%d %b %Y")
    return f"Their last {len(contacts)} contacts were about {parts}; the latest on {last}. Don't ask again."


def profile_rows(profile: dict) -> pd.DataFrame:
    """The CRM record's other fields (contact details are in ``contact_rows``): ``field, value``,
    fields the record leaves empty left out."""
    keys = [
        ("customer id", "customer_id"),
        ("name", "name"),
        ("signed up", "signup_date"),
        ("segment", "segment"),
        ("region", "region"),
        ("plan", "plan"),
        ("acquired via", "acquisition_channel"),
        ("campaign", "campaign"),
    ]
    rows = []
    for label, key in keys:
        v = profile.get(key)
        if v is None or (not isinstance(v, str) and pd.isna(v)):
            continue
        if isinstance(v, datetime | pd.Timestamp):
            v = pd.Timestamp(v).strftime("%Y-%m-%d")
        rows.append({"field": label, "value": str(v)})
    for k, v in (profile.get("attributes") or {}).items():
        rows.append({"field": k.replace("_", " "), "value": str(v)})
    return pd.DataFrame(rows, columns=["field", "value"])
