"""The churn definition on the pages: the caption under every churn figure, and the chooser (ops, admin)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from cxdash.jobs import summaries
from cxdash.metrics import churn
from cxdash.ui import data
from cxdash.ui import formatting as fmt
from cxdash.ui.formatting import plain

CHOICE_KEY = "health_churn_definition"
DONE_KEY = "health_churn_done"


def caption(where=None) -> churn.Resolution:
    """Say under a churn figure which definition it follows; when another reading of the loaded data
    disagrees by more than the threshold, a warning with both figures instead of a caption."""
    where = where if where is not None else st
    res = data.churn_resolution()
    text = plain(res.caption())
    if res.definition is not None and res.others_disagreeing():
        where.warning(text, icon=":material/compare_arrows:")
    elif res.definition is None or not res.chosen:
        where.info(text, icon=":material/help:")
    else:
        where.caption(text)
    return res


def model_mismatch(metrics: dict, where=None) -> None:
    """Warn when the newest model learned another churn definition than the one in force now."""
    trained = metrics.get("churn_definition")
    current = data.churn_name()
    if trained and current and trained != current:
        (where or st).warning(
            plain(
                f"The churn model learned churn as {trained}; the company's definition is now {current}. Its risks "
                "answer the old question until it is retrained (Churn model page)."
            ),
            icon=":material/update:",
        )


def candidates_table(res: churn.Resolution) -> pd.DataFrame:
    """One row per definition the data supports, with its figures, the one in force marked."""
    rows = []
    for c in res.candidates:
        rows.append(
            {
                "in force": "●" if c.name == res.name else "",
                "definition": c.name,
                "what counts as churn": c.definition.describe(),
                "customers judged": c.customers,
                "churned": c.churned,
                "churn rate": c.rate,
                "dated": "yes" if c.dated else "no (snapshot)",
                "note": c.note,
                "subscription churn": fmt.percent(c.extra.get("subscription_churn_rate"), 0),
            }
        )
    return pd.DataFrame(rows)


# Widths that add up to the page's width at 1440 px (about 980 px beside the sidebar); the long
# columns wrap in taller rows (TABLE_ROW_HEIGHT) instead of hiding the last ones behind a scroll.
TABLE_COLUMNS = {
    "in force": st.column_config.TextColumn(width=58),
    "definition": st.column_config.TextColumn(width=125),
    "what counts as churn": st.column_config.TextColumn(width=205),
    "customers judged": st.column_config.NumberColumn(format="localized", width=110),
    "churned": st.column_config.NumberColumn(format="localized", width=68),
    "churn rate": st.column_config.NumberColumn(format="percent", width=68),
    "dated": st.column_config.TextColumn(width=92),
    "note": st.column_config.TextColumn(width=160),
    "subscription churn": st.column_config.TextColumn(
        width=80,
        help="Subscriptions ended over all subscriptions (subscription churn, not customer churn)",
    ),
}
TABLE_ROW_HEIGHT = 74


def choose(name: str, actor: str) -> churn.Resolution:
    """Store the company's churn definition, then prepare the pages' stored views for it in the
    background (pages compute live until then)."""
    store = data.store()
    res = churn.choose(store, name, actor=actor)
    data.forget_churn_choice()
    summaries.refresh_in_background(store, summaries.CHURN_REFRESH)
    st.session_state[DONE_KEY] = res.name
    return res


def flash() -> None:
    """After a choice (and the rerun that shows it): say once what changed."""
    name = st.session_state.pop(DONE_KEY, None)
    if name:
        st.success(
            plain(
                f"Churn now follows {name}. Every page uses it from now on; their stored views are being "
                "prepared in the background."
            ),
            icon=":material/check_circle:",
        )
