"""Data health's "from a load to the front line": per source, how long its newest load took to reach
the customer card (the load stored its rows) and the at-risk list (the customers it touched scored
again, ``cxdash.jobs.rescore``), or why the list was not updated."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from cxdash.jobs import activation_times
from cxdash.ui import data
from cxdash.ui.formatting import UNKNOWN, count, duration

COLUMNS = {
    "source": st.column_config.TextColumn("source", width="small"),
    "newest load": st.column_config.TextColumn("newest load", width="small"),
    "on the card": st.column_config.TextColumn(
        "on the card", width="small", help="From the start of the load to its rows being stored: the card reads them."
    ),
    "in the at-risk list": st.column_config.TextColumn(
        "in the at-risk list",
        width="medium",
        help="From the start of the load to the customers it touched being scored again, or why the list "
        "was not updated.",
    ),
    "customers scored again": st.column_config.TextColumn("customers scored again", width="small"),
}


def followup_table(times: pd.DataFrame) -> pd.DataFrame:
    """``activation_times`` in words, one row per source."""
    return pd.DataFrame(
        {
            "source": times["source"].astype(str),
            "newest load": [f"load {int(x)}" for x in times["load_id"]],
            "on the card": times["card_seconds"].map(duration),
            "in the at-risk list": [
                f"not updated: {why}" if pd.isna(sec) else duration(sec)
                for sec, why in zip(times["list_seconds"], times["why"], strict=True)
            ],
            "customers scored again": [UNKNOWN if pd.isna(n) else count(n) for n in times["customers"]],
        }
    )


def headline(times: pd.DataFrame) -> str:
    """The sentence above the table: the slowest source to the list, or what keeps the list still."""
    listed = times.dropna(subset=["list_seconds"])
    if listed.empty:
        return (
            "No load has updated the at-risk list yet: the front line sees new signals on the customer card, "
            "and in the list only after the next full scoring (the reasons are in the table)."
        )
    slowest = listed.loc[listed["list_seconds"].idxmax()]
    return (
        f"New records reach the at-risk list within {duration(slowest['list_seconds'])} of their load starting "
        f"(slowest: {slowest['source']}, load {int(slowest['load_id'])})."
    )


def render() -> None:
    times = activation_times(data.store())
    st.subheader("From a load to the front line")
    if times.empty:
        st.caption(
            "No append has been loaded since the at-risk list was first scored: once one is, this shows how "
            "long its signals took to reach the customer card and the at-risk list."
        )
        return
    st.text(headline(times))
    st.dataframe(followup_table(times), hide_index=True, width="stretch", column_config=COLUMNS)
    st.caption(
        "After an append, the customers it touched are scored again with the model the list came from, so a "
        "cancel-page visit or a failed payment is in the at-risk list seconds after its load. A replace load, a "
        "list from an older model, or a very large load waits for the next full scoring "
        "(`python -m cxdash score` or the Model page)."
    )
