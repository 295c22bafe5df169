"""Plotly figures for the pages (built from small, already-aggregated frames)."""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

from cxdash.ui.figures import memoised_figure

DEPARTMENT_COLOURS = {
    "marketing": "#7c3aed",
    "web": "#0ea5e9",
    "sales": "#16a34a",
    "support": "#f97316",
    "billing": "#dc2626",
    "unknown": "#94a3b8",
}


def _colour_map(departments) -> dict[str, str]:
    palette = px.colors.qualitative.Safe
    out = {}
    for i, d in enumerate(sorted({str(x) for x in departments})):
        out[d] = DEPARTMENT_COLOURS.get(d.lower(), palette[i % len(palette)])
    return out


@memoised_figure
def monthly_customers_by_department(frame: pd.DataFrame) -> go.Figure:
    fig = px.line(
        frame,
        x="month",
        y="customers",
        color="department",
        color_discrete_map=_colour_map(frame["department"]),
        labels={"customers": "customers with activity", "month": ""},
        markers=False,
    )
    fig.update_layout(
        margin=dict(l=10, r=10, t=30, b=10),
        height=360,
        legend=dict(orientation="h", yanchor="bottom", y=1.02, x=0, title_text=""),
    )
    fig.update_yaxes(tickformat=",d")
    return fig


@memoised_figure
def rows_by_source(frame: pd.DataFrame) -> go.Figure:
    fig = px.bar(
        frame.sort_values("rows"),
        x="rows",
        y="name",
        color="department",
        orientation="h",
        color_discrete_map=_colour_map(frame["department"]),
        labels={"name": "", "rows": "rows loaded"},
        text="rows",
    )
    fig.update_traces(texttemplate="%{text:,}", textposition="outside", cliponaxis=False)
    fig.update_layout(
        margin=dict(l=10, r=60, t=30, b=10),
        height=90 + 34 * max(len(frame), 1),
        legend=dict(orientation="h", yanchor="bottom", y=1.02, x=0, title_text=""),
    )
    return fig
