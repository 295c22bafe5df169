"""Plotly figures for the pages (built from small, already-aggregated frames)."""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

from cxdash.governance import department_name
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


def _named_departments(frame: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, str]]:
    """``frame`` with its ``department`` codes spelled out for a legend ("Technology (tech)", by
    ``governance.department_name``) and the colour of each spelled-out name (chosen by its code, so a
    department keeps its colour). A missing department reads "unknown"."""
    codes = frame["department"].fillna("unknown").astype(str)
    colours = _colour_map(codes)
    out = frame.assign(department=codes.map(department_name))
    return out, {department_name(code): colour for code, colour in colours.items()}


@memoised_figure
def monthly_customers_by_department(frame: pd.DataFrame) -> go.Figure:
    named, colours = _named_departments(frame)
    fig = px.line(
        named,
        x="month",
        y="customers",
        color="department",
        color_discrete_map=colours,
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
    named, colours = _named_departments(frame)
    fig = px.bar(
        named.sort_values("rows"),
        x="rows",
        y="name",
        color="department",
        orientation="h",
        color_discrete_map=colours,
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
