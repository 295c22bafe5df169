"""Words, tables and charts for the data-health page (from small, aggregated frames)."""

from __future__ import annotations

import math

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from cxdash.ui.charts import _colour_map
from cxdash.ui.figures import memoised_figure
from cxdash.ui.formatting import plain

FRESHNESS_WARN_HOURS = 48

GOVERNANCE_COLUMNS = {
    "quality": st.column_config.ProgressColumn("rows passing", format="percent", min_value=0, max_value=1),
    "linked": st.column_config.ProgressColumn("linked to customers", format="percent", min_value=0, max_value=1),
    "rows": st.column_config.NumberColumn("rows", format="localized"),
}


def _missing(x) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x)) or x is pd.NA or x is pd.NaT


def pct(x) -> str:
    return "n/a" if _missing(x) else f"{x:.1%}"


def hours(x) -> str:
    if _missing(x):
        return "n/a"
    if x < 1:
        return f"{x * 60:.0f} min"
    if x < 48:
        return f"{x:.1f} h"
    return f"{x / 24:.1f} days"


def weighted_quality(gov: pd.DataFrame) -> float | None:
    q = gov.dropna(subset=["quality"])
    return float((q["quality"] * q["rows"]).sum() / q["rows"].sum()) if q["rows"].sum() else None


def weighted_stitch(gov: pd.DataFrame) -> float | None:
    q = gov.dropna(subset=["stitched_share"])
    return float((q["stitched_share"] * q["rows"]).sum() / q["rows"].sum()) if q["rows"].sum() else None


def problems(gov: pd.DataFrame) -> list[str]:
    out = []
    stale = gov[gov["freshness_hours"].astype(float) > FRESHNESS_WARN_HOURS]
    if len(stale):
        ages = stale["freshness_hours"].astype(float)
        span = hours(ages.min()) if len(stale) == 1 else f"{hours(ages.min())} to {hours(ages.max())}"
        names = ", ".join(f"**{plain(n)}**" for n in stale["name"])
        out.append(f"{names} {'has' if len(stale) == 1 else 'have'} no record newer than {span}")
    for r in gov.itertuples():
        if not _missing(r.quality) and r.quality < 0.99:
            out.append(f"**{plain(r.name)}** rejected {1 - r.quality:.1%} of its last load")
        if r.latency_ok is False:
            out.append(
                f"**{plain(r.name)}** activation p95 {hours(r.latency_p95_hours)} is over its target {hours(r.latency_target_hours)}"
            )
        if not _missing(r.stitched_share) and r.stitched_share < 0.8:
            out.append(f"only {r.stitched_share:.0%} of **{plain(r.name)}** rows are linked to a known customer")
    return out


def verdict(gov: pd.DataFrame) -> str:
    found = problems(gov)
    if not found:
        return f"All {len(gov)} sources are clean, fresh and linked to customers."
    head = f"{len(found)} thing{'s need' if len(found) != 1 else ' needs'} attention: "
    return head + "; ".join(found[:4]) + ("; ..." if len(found) > 4 else ".")


def governance_table(gov: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "source": gov["name"],
            "kind": gov["kind"],
            "department": gov["department"],
            "owner": gov["owner"] if "owner" in gov else gov["department"],
            "rows": gov["rows"],
            "quality": gov["quality"],
            "linked": gov["stitched_share"],
            "newest record": gov["freshness_hours"].map(lambda h: f"{hours(h)} ago" if not _missing(h) else "n/a"),
            "activation p50": gov["latency_p50_hours"].map(hours),
            "activation p95": gov["latency_p95_hours"].map(hours),
            "target p95": gov["latency_target_hours"].map(hours),
            "duplicate keys": gov["duplicate_keys"],
            "loads": gov["loads"],
            "mapping version": gov.get("mapping_version"),
            "last load": gov["last_load_at"].map(
                lambda t: "" if _missing(t) else pd.Timestamp(t).strftime("%Y-%m-%d %H:%M")
            ),
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
        labels={"share": "share of customers", "measure": ""},
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
